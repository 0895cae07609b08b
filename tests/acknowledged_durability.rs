//! Every acknowledged durable append is vouched for on disk before its
//! appender hears of it: a process killed right after an acknowledgement,
//! plus one damaged byte in the acknowledged events, must give a typed
//! corruption report at open, never a store that silently ends before them.
//!
//! Appenders in several threads each take a process-crash image (every
//! write kept, synced or not) the moment their append returns, damage one
//! byte of the record they were just told is durable, and open the image.

use evstore::storage::{CrashPlan, SimDisk};
use evstore::{Direction, Error, EventData, ExpectedVersion, Options, Store, Uuid};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

const THREADS: u64 = 8;
const APPENDS: u64 = 40;

fn dir() -> PathBuf {
    PathBuf::from("/sim/store")
}

fn options(disk: &SimDisk) -> Options {
    Options::default()
        .segment_size(1 << 20)
        .flush_interval(Duration::from_secs(3600))
        .storage(Arc::new(disk.clone()))
}

/// The segment file holding the record of `id`, and the record's offset.
fn find_record(disk: &SimDisk, id: Uuid) -> Option<(PathBuf, usize)> {
    let needle = id.as_u128().to_be_bytes();
    disk.files()
        .into_iter()
        .filter(|p| p.extension().is_some_and(|x| x == "log"))
        .find_map(|path| {
            let bytes = disk.read_file(&path).ok()?;
            let at = bytes.windows(16).position(|w| w == needle)?;
            Some((path, at))
        })
}

fn damage(disk: &SimDisk, path: &Path, at: usize) {
    let mut bytes = disk.read_file(path).unwrap();
    bytes[at] ^= 0x40;
    disk.write_file(path, &bytes).unwrap();
}

#[test]
fn damage_in_an_acknowledged_group_is_reported_after_a_process_crash() {
    let disk = SimDisk::new();
    let store = Store::open(dir(), options(&disk)).unwrap();
    let threads: Vec<_> = (0..THREADS)
        .map(|t| {
            let (store, disk) = (store.clone(), disk.clone());
            std::thread::spawn(move || {
                for i in 0..APPENDS {
                    let id = Uuid::from_u128(u128::from(t) << 64 | u128::from(i) | 1 << 127);
                    let event = EventData::new("Acked", vec![t as u8; 64]).with_id(id);
                    store
                        .append(&format!("s-{t}"), ExpectedVersion::Any, &[event])
                        .unwrap();
                    // What a kill right now leaves.
                    let image = disk.crash(CrashPlan::KeepAll);
                    let (path, at) = find_record(&image, id).expect("acknowledged record on disk");
                    damage(&image, &path, at);
                    match Store::open(dir(), options(&image)) {
                        Err(Error::Corrupted { file, .. }) => assert_eq!(file, path),
                        Err(other) => panic!("untyped report {other:?}"),
                        Ok(reopened) => {
                            // Recovery may only cut what it can prove was
                            // never durable: the acknowledged event is not that.
                            let events = reopened
                                .read_stream(&format!("s-{t}"), 0, Direction::Forward, usize::MAX)
                                .unwrap();
                            panic!(
                                "thread {t} append {i}: open accepted damage in an acknowledged append and kept {} of its stream's events",
                                events.len()
                            );
                        }
                    }
                }
            })
        })
        .collect();
    for t in threads {
        t.join().unwrap();
    }
    store.close().unwrap();
}

#[test]
fn a_lone_appender_is_vouched_for_too() {
    let disk = SimDisk::new();
    let store = Store::open(dir(), options(&disk)).unwrap();
    for i in 0..5u128 {
        let id = Uuid::from_u128(i + 1);
        store
            .append(
                "lone",
                ExpectedVersion::Any,
                &[EventData::new("E", vec![1; 32]).with_id(id)],
            )
            .unwrap();
        let image = disk.crash(CrashPlan::KeepAll);
        let (path, at) = find_record(&image, id).unwrap();
        damage(&image, &path, at);
        assert!(
            matches!(
                Store::open(dir(), options(&image)),
                Err(Error::Corrupted { .. })
            ),
            "append {i}"
        );
    }
}
