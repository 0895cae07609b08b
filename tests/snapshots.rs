//! Snapshot files: round trips across restart and crash, pruning, damage
//! and fallback, and their tie to the log they were taken from.

mod common;

use evstore::storage::{CrashPlan, SimDisk};
use evstore::{Durability, Error, EventData, ExpectedVersion, Options, Store, Uuid, SNAPSHOTS_DIR};
use std::path::{Path, PathBuf};
use std::sync::Arc;

fn fill(store: &Store, stream: &str, count: usize) -> u64 {
    let events: Vec<_> = (0..count)
        .map(|i| EventData::new("Tick", (i as u64).to_le_bytes().to_vec()))
        .collect();
    store
        .append(stream, ExpectedVersion::Any, &events)
        .unwrap()
        .last_version
}

fn state(stream: &str, version: u64) -> Vec<u8> {
    format!("state of {stream} at {version}").into_bytes()
}

/// The snapshot files (`*.snap`) of every stream, by stream directory.
fn snapshot_files(dir: &Path) -> Vec<PathBuf> {
    let mut files = Vec::new();
    for stream_dir in std::fs::read_dir(dir.join(SNAPSHOTS_DIR)).unwrap() {
        for file in std::fs::read_dir(stream_dir.unwrap().path()).unwrap() {
            files.push(file.unwrap().path());
        }
    }
    files.sort();
    files
}

fn with_suffix(files: &[PathBuf], suffix: &str) -> Vec<PathBuf> {
    files
        .iter()
        .filter(|f| f.to_string_lossy().ends_with(suffix))
        .cloned()
        .collect()
}

fn newest_file(dir: &Path) -> PathBuf {
    with_suffix(&snapshot_files(dir), ".snap").pop().unwrap()
}

#[test]
fn snapshots_round_trip_across_restart() {
    let dir = tempfile::tempdir().unwrap();
    let streams = ["order-1", "Order-1", "üñí/cødé stream", &"long".repeat(60)];
    {
        let store = Store::open(dir.path(), Options::default()).unwrap();
        for stream in streams {
            fill(&store, stream, 50);
            for version in [9, 29, 49] {
                store
                    .save_snapshot(stream, version, state(stream, version))
                    .unwrap();
            }
        }
        store.close().unwrap();
    }
    let store = Store::open(dir.path(), Options::default()).unwrap();
    for stream in streams {
        let newest = store.load_snapshot(stream).unwrap().unwrap();
        assert_eq!(newest.version, 49);
        assert_eq!(newest.data, state(stream, 49));
        assert!(newest.timestamp_nanos > 0);
        let older = store
            .load_snapshot_at_or_below(stream, 48)
            .unwrap()
            .unwrap();
        assert_eq!((older.version, older.data), (29, state(stream, 29).into()));
        // Only the two newest are kept.
        assert!(store
            .load_snapshot_at_or_below(stream, 28)
            .unwrap()
            .is_none());
    }
    assert!(store.load_snapshot("never-snapshotted").unwrap().is_none());
    assert!(store.damaged_snapshots().is_empty());
}

#[test]
fn pruning_keeps_the_newest_by_version() {
    let dir = tempfile::tempdir().unwrap();
    let store = Store::open(dir.path(), Options::default().snapshots_kept(3)).unwrap();
    fill(&store, "s", 100);
    for version in [10, 20, 30, 40, 50] {
        store
            .save_snapshot("s", version, state("s", version))
            .unwrap();
    }
    let kept = snapshot_files(dir.path());
    assert_eq!(kept.len(), 3, "{kept:?}");
    assert!(kept[0].ends_with("00000000000000000030.snap"));
    // An older version than those kept is pruned at once.
    store.save_snapshot("s", 5, state("s", 5)).unwrap();
    assert_eq!(snapshot_files(dir.path()), kept);
    assert!(store.load_snapshot_at_or_below("s", 25).unwrap().is_none());
    // Saving a version again replaces it.
    store.save_snapshot("s", 50, b"second take").unwrap();
    assert_eq!(
        &store.load_snapshot("s").unwrap().unwrap().data[..],
        b"second take"
    );
    assert_eq!(snapshot_files(dir.path()).len(), 3);
    drop(store);

    // The count is an option of the open store, applied at the next save.
    let store = Store::open(dir.path(), Options::default().snapshots_kept(1)).unwrap();
    store.save_snapshot("s", 60, state("s", 60)).unwrap();
    assert_eq!(snapshot_files(dir.path()).len(), 1);
    assert_eq!(store.load_snapshot("s").unwrap().unwrap().version, 60);
    assert!(matches!(
        Store::open(
            tempfile::tempdir().unwrap().path(),
            Options::default().snapshots_kept(0)
        ),
        Err(Error::InvalidOption(_))
    ));
}

#[test]
fn snapshots_of_unreached_versions_and_bad_names_are_refused() {
    let dir = tempfile::tempdir().unwrap();
    let store = Store::open(dir.path(), Options::default()).unwrap();
    let err = store.save_snapshot("empty", 0, b"x").unwrap_err();
    assert!(
        matches!(&err, Error::SnapshotAhead { stream, version: 0, stream_version: None } if stream == "empty"),
        "{err}"
    );
    fill(&store, "s", 3);
    let err = store.save_snapshot("s", 3, b"x").unwrap_err();
    assert!(matches!(
        err,
        Error::SnapshotAhead {
            version: 3,
            stream_version: Some(2),
            ..
        }
    ));
    assert!(matches!(
        store.save_snapshot("$all", 0, b"x"),
        Err(Error::InvalidStreamName { .. })
    ));
    assert!(matches!(
        store.load_snapshot(""),
        Err(Error::InvalidStreamName { .. })
    ));
    assert!(snapshot_files(dir.path()).is_empty());
    // Empty state is a valid snapshot.
    store.save_snapshot("s", 2, b"").unwrap();
    assert!(store.load_snapshot("s").unwrap().unwrap().data.is_empty());
}

#[test]
fn a_damaged_snapshot_falls_back_to_the_previous_one_and_is_reported() {
    let dir = tempfile::tempdir().unwrap();
    let store = Store::open(dir.path(), Options::default()).unwrap();
    fill(&store, "acct", 20);
    store.save_snapshot("acct", 9, state("acct", 9)).unwrap();
    store.save_snapshot("acct", 19, state("acct", 19)).unwrap();
    let newest = newest_file(dir.path());
    // The last byte is state data, covered by the body checksum.
    common::flip_byte(&newest, std::fs::metadata(&newest).unwrap().len() - 1);

    let loaded = store.load_snapshot("acct").unwrap().unwrap();
    assert_eq!((loaded.version, loaded.data), (9, state("acct", 9).into()));
    let damaged = store.damaged_snapshots();
    assert_eq!(damaged.len(), 1);
    assert_eq!(
        (damaged[0].stream.as_str(), damaged[0].version),
        ("acct", 19)
    );
    assert!(matches!(damaged[0].error, Error::Corrupted { .. }));
    assert!(damaged[0].file.to_string_lossy().ends_with(".snap.damaged"));
    assert!(damaged[0].file.exists() && !newest.exists());

    // Set aside once: a second load neither rereads nor re-reports it.
    assert_eq!(store.load_snapshot("acct").unwrap().unwrap().version, 9);
    assert_eq!(store.damaged_snapshots().len(), 1);

    // Both damaged: no snapshot, never the damaged bytes.
    common::flip_byte(&newest_file(dir.path()), 70);
    assert!(store.load_snapshot("acct").unwrap().is_none());
    assert_eq!(store.damaged_snapshots().len(), 2);

    // A new save works and is not counted against the damaged files.
    store.save_snapshot("acct", 19, state("acct", 19)).unwrap();
    assert_eq!(store.load_snapshot("acct").unwrap().unwrap().version, 19);
}

#[test]
fn truncated_renamed_and_foreign_snapshot_files_are_rejected() {
    let dir = tempfile::tempdir().unwrap();
    let store = Store::open(dir.path(), Options::default().snapshots_kept(5)).unwrap();
    fill(&store, "a", 10);
    fill(&store, "b", 10);
    for version in [1, 2, 3, 4] {
        store
            .save_snapshot("a", version, state("a", version))
            .unwrap();
    }
    store.save_snapshot("b", 8, state("b", 8)).unwrap();
    let a_dir = stream_dir(dir.path(), "a.");
    let a_files: Vec<_> = (1..=4)
        .map(|v| a_dir.join(format!("{v:020}.snap")))
        .collect();
    let b_file = stream_dir(dir.path(), "b.").join(format!("{:020}.snap", 8));

    // Version 9: a copy of b's snapshot placed in a's directory.
    std::fs::copy(&b_file, a_dir.join("00000000000000000009.snap")).unwrap();
    // Version 4: truncated. Version 3: empty.
    let len = std::fs::metadata(&a_files[3]).unwrap().len();
    std::fs::OpenOptions::new()
        .write(true)
        .open(&a_files[3])
        .unwrap()
        .set_len(len - 3)
        .unwrap();
    std::fs::write(&a_files[2], b"").unwrap();
    // Version 2's file renamed as if it were version 5.
    std::fs::rename(&a_files[1], a_dir.join("00000000000000000005.snap")).unwrap();

    let loaded = store.load_snapshot("a").unwrap().unwrap();
    assert_eq!((loaded.version, loaded.data), (1, state("a", 1).into()));
    let mut rejected: Vec<u64> = store
        .damaged_snapshots()
        .iter()
        .map(|d| d.version)
        .collect();
    rejected.sort();
    assert_eq!(rejected, [3, 4, 5, 9]);
    assert_eq!(store.load_snapshot("b").unwrap().unwrap().version, 8);
}

/// The snapshot directory of the stream whose directory name starts with
/// `prefix`.
fn stream_dir(dir: &Path, prefix: &str) -> PathBuf {
    std::fs::read_dir(dir.join(SNAPSHOTS_DIR))
        .unwrap()
        .map(|d| d.unwrap().path())
        .find(|p| p.file_name().unwrap().to_string_lossy().starts_with(prefix))
        .unwrap()
}

#[test]
fn a_snapshot_of_another_history_is_not_used() {
    // Two stores whose streams share a name but not their events: a
    // snapshot copied from one to the other must not be trusted.
    let first = tempfile::tempdir().unwrap();
    let second = tempfile::tempdir().unwrap();
    let a = Store::open(first.path(), Options::default()).unwrap();
    let b = Store::open(second.path(), Options::default()).unwrap();
    fill(&a, "shared", 10);
    fill(&b, "shared", 10);
    a.save_snapshot("shared", 9, b"from a").unwrap();
    b.save_snapshot("shared", 5, b"from b").unwrap();
    let a_file = newest_file(first.path());
    let b_dir = newest_file(second.path()).parent().unwrap().to_path_buf();
    std::fs::copy(&a_file, b_dir.join(a_file.file_name().unwrap())).unwrap();

    let loaded = b.load_snapshot("shared").unwrap().unwrap();
    assert_eq!((loaded.version, &loaded.data[..]), (5, &b"from b"[..]));
    let damaged = b.damaged_snapshots();
    assert_eq!(damaged.len(), 1);
    assert!(damaged[0]
        .error
        .to_string()
        .contains("was taken after event"));
}

#[test]
fn a_leftover_temporary_file_leaves_the_old_snapshot_standing() {
    // What a crash after writing the new snapshot but before renaming it
    // leaves behind.
    let dir = tempfile::tempdir().unwrap();
    {
        let store = Store::open(dir.path(), Options::default()).unwrap();
        fill(&store, "s", 10);
        store.save_snapshot("s", 4, state("s", 4)).unwrap();
    }
    let old = newest_file(dir.path());
    let temp = old.with_file_name("00000000000000000009.snap.tmp");
    std::fs::write(&temp, b"half of a new snapshot").unwrap();

    let store = Store::open(dir.path(), Options::default()).unwrap();
    let loaded = store.load_snapshot("s").unwrap().unwrap();
    assert_eq!((loaded.version, loaded.data), (4, state("s", 4).into()));
    assert!(store.damaged_snapshots().is_empty());
    // The next save of the stream clears it.
    store.save_snapshot("s", 9, state("s", 9)).unwrap();
    assert!(!temp.exists());
    assert_eq!(store.load_snapshot("s").unwrap().unwrap().version, 9);
}

fn sim_options(disk: &SimDisk, durability: Durability) -> Options {
    Options::default()
        .storage(Arc::new(disk.clone()))
        .durability(durability)
        .segment_size(64 << 10)
        .background_preallocation(false)
        .background_index_writes(false)
        .flush_interval(std::time::Duration::from_secs(3600))
}

#[test]
fn a_crash_at_any_point_of_a_save_leaves_the_old_or_the_new_snapshot() {
    for plan in [
        CrashPlan::LoseAll,
        CrashPlan::KeepAll,
        CrashPlan::Torn { seed: 7 },
    ] {
        let disk = SimDisk::new();
        let store = Store::open("/db", sim_options(&disk, Durability::Sync)).unwrap();
        fill(&store, "s", 20);
        store.save_snapshot("s", 9, state("s", 9)).unwrap();
        let before = disk.mutations();
        store.save_snapshot("s", 19, state("s", 19)).unwrap();
        let save_mutations = disk.mutations() - before;
        drop(store);
        assert!(save_mutations >= 4, "a save writes, syncs, renames, syncs");

        for crash_after in 0..=save_mutations {
            let disk = SimDisk::new();
            let store = Store::open("/db", sim_options(&disk, Durability::Sync)).unwrap();
            fill(&store, "s", 20);
            store.save_snapshot("s", 9, state("s", 9)).unwrap();
            disk.fail_after(Some(disk.mutations() + crash_after));
            let saved = store.save_snapshot("s", 19, state("s", 19));
            let image = disk.crash(plan);
            drop(store);

            let store = Store::open("/db", sim_options(&image, Durability::Sync)).unwrap();
            let loaded = store.load_snapshot("s").unwrap().unwrap();
            if saved.is_ok() {
                assert_eq!(
                    loaded.version, 19,
                    "acknowledged save lost ({plan:?}, {crash_after})"
                );
            }
            let expected = state("s", loaded.version);
            assert!(
                loaded.version == 9 || loaded.version == 19,
                "{plan:?} after {crash_after}: version {}",
                loaded.version
            );
            assert_eq!(loaded.data, expected, "{plan:?} after {crash_after}");
            // A torn new file is set aside, never returned; the old one stands.
            for damaged in store.damaged_snapshots() {
                assert_eq!(damaged.version, 19);
            }
        }
    }
}

#[test]
fn a_buffered_store_makes_the_events_durable_before_their_snapshot() {
    let disk = SimDisk::new();
    let store = Store::open("/db", sim_options(&disk, Durability::Buffered)).unwrap();
    fill(&store, "s", 10);
    store.save_snapshot("s", 9, state("s", 9)).unwrap();
    fill(&store, "s", 5);
    let image = disk.crash(CrashPlan::LoseAll);
    drop(store);

    let store = Store::open("/db", sim_options(&image, Durability::Buffered)).unwrap();
    assert!(store.stream_version("s").unwrap() >= Some(9));
    let loaded = store.load_snapshot("s").unwrap().unwrap();
    assert_eq!((loaded.version, loaded.data), (9, state("s", 9).into()));
}

#[test]
fn concurrent_saves_of_one_stream_keep_the_newest() {
    let dir = tempfile::tempdir().unwrap();
    let store = Store::open(dir.path(), Options::default()).unwrap();
    fill(&store, "hot", 400);
    std::thread::scope(|scope| {
        for thread in 0..4u64 {
            let store = store.clone();
            scope.spawn(move || {
                for i in 0..25u64 {
                    let version = i * 16 + thread * 4;
                    store
                        .save_snapshot("hot", version, state("hot", version))
                        .unwrap();
                    let loaded = store.load_snapshot("hot").unwrap().unwrap();
                    assert_eq!(loaded.data, state("hot", loaded.version));
                    assert!(loaded.version >= version);
                }
            });
        }
    });
    let files = snapshot_files(dir.path());
    assert_eq!(files.len(), 2, "{files:?}");
    let loaded = store.load_snapshot("hot").unwrap().unwrap();
    assert_eq!(loaded.version, 24 * 16 + 3 * 4);
    assert!(store.damaged_snapshots().is_empty());
}

#[test]
fn snapshot_ids_follow_the_event_they_were_taken_after() {
    // The tie to the log is the event id: appending more events, or other
    // streams, does not invalidate a snapshot.
    let dir = tempfile::tempdir().unwrap();
    let store = Store::open(dir.path(), Options::default().segment_size(4096)).unwrap();
    let ids: Vec<Uuid> = (0..5).map(|i| Uuid::from_u128(100 + i)).collect();
    let events: Vec<_> = ids
        .iter()
        .map(|id| EventData::new("E", &b"payload"[..]).with_id(*id))
        .collect();
    store
        .append("s", ExpectedVersion::NoStream, &events)
        .unwrap();
    store.save_snapshot("s", 2, b"two").unwrap();
    for i in 0..200 {
        fill(&store, &format!("other-{}", i % 7), 3);
    }
    fill(&store, "s", 10);
    drop(store);
    let store = Store::open(dir.path(), Options::default().segment_size(4096)).unwrap();
    assert_eq!(&store.load_snapshot("s").unwrap().unwrap().data[..], b"two");
}

#[test]
fn a_snapshot_of_a_newer_format_is_skipped_but_left_in_place() {
    let dir = tempfile::tempdir().unwrap();
    let store = Store::open(dir.path(), Options::default()).unwrap();
    fill(&store, "s", 20);
    store.save_snapshot("s", 9, state("s", 9)).unwrap();
    store.save_snapshot("s", 19, state("s", 19)).unwrap();
    let newest = newest_file(dir.path());
    let mut bytes = std::fs::read(&newest).unwrap();
    bytes[8..12].copy_from_slice(&2u32.to_le_bytes());
    let header_crc = crc32fast::hash(&bytes[..56]);
    bytes[56..60].copy_from_slice(&header_crc.to_le_bytes());
    std::fs::write(&newest, &bytes).unwrap();

    for _ in 0..2 {
        assert_eq!(store.load_snapshot("s").unwrap().unwrap().version, 9);
    }
    let reports = store.damaged_snapshots();
    assert_eq!(reports.len(), 1);
    assert!(matches!(
        reports[0].error,
        Error::UnsupportedFormat {
            found: 2,
            supported: 1,
            ..
        }
    ));
    assert_eq!(reports[0].file, newest);
    assert_eq!(std::fs::read(&newest).unwrap(), bytes);
}
