//! Persisted indexes: open reads only the unsealed tail, damaged or missing
//! index files are rebuilt with identical reads, colliding stream hashes are
//! told apart, reads span many segments in both directions, retries are
//! recognised through index files across restarts and crashes, and the
//! stream catalogue pages through every stream.

mod common;

use common::{flip_byte, Rng};
use evstore::storage::{CrashPlan, SimDisk};
use evstore::{
    Direction, Durability, Error, EventData, ExpectedVersion, Options, RecordedEvent, Store,
    StreamInfo, Uuid,
};
use std::collections::BTreeMap;
use std::fs::{self, OpenOptions};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

const SEGMENT: u64 = 16 << 10;

fn options() -> Options {
    Options::default().segment_size(SEGMENT)
}

fn event(id: u128, size: usize) -> EventData {
    EventData::new("Happened", vec![(id % 251) as u8; size]).with_id(Uuid::from_u128(id))
}

/// Appends `appends` batches of 1..=3 events to `streams` streams chosen at
/// random, so every stream's events are spread over many segments.
fn fill(store: &Store, streams: usize, appends: usize, seed: u64) {
    let mut rng = Rng(seed);
    let mut id = u128::from(seed) << 64;
    for _ in 0..appends {
        let stream = format!("stream-{:03}", rng.below(streams as u64));
        let events: Vec<_> = (0..1 + rng.below(3))
            .map(|_| {
                id += 1;
                event(id, 20 + rng.below(200) as usize)
            })
            .collect();
        store
            .append(&stream, ExpectedVersion::Any, &events)
            .unwrap();
    }
}

fn all(store: &Store) -> Vec<RecordedEvent> {
    store.read_all(0, Direction::Forward, usize::MAX).unwrap()
}

fn by_stream(events: &[RecordedEvent]) -> BTreeMap<String, Vec<RecordedEvent>> {
    let mut map: BTreeMap<String, Vec<RecordedEvent>> = BTreeMap::new();
    for e in events {
        map.entry(e.stream.to_string()).or_default().push(e.clone());
    }
    map
}

fn files_with(dir: &Path, suffix: &str) -> Vec<PathBuf> {
    let mut files: Vec<PathBuf> = fs::read_dir(dir.join("segments"))
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.to_string_lossy().ends_with(suffix))
        .collect();
    files.sort();
    files
}

/// Every read a user can make gives what `expected` says: `$all`, each
/// stream whole in both directions, slices at random, versions and the
/// stream list.
fn assert_reads(store: &Store, expected: &[RecordedEvent], seed: u64) {
    assert_eq!(all(store), expected);
    let streams = by_stream(expected);
    for (name, events) in &streams {
        assert_eq!(
            &store
                .read_stream(name, 0, Direction::Forward, usize::MAX)
                .unwrap(),
            events
        );
        let mut backward = events.clone();
        backward.reverse();
        assert_eq!(
            store
                .read_stream(name, u64::MAX, Direction::Backward, usize::MAX)
                .unwrap(),
            backward
        );
        assert_eq!(
            store.stream_version(name).unwrap(),
            Some(events.len() as u64 - 1)
        );
    }
    let mut rng = Rng(seed);
    let names: Vec<&String> = streams.keys().collect();
    for _ in 0..200 {
        let name = names[rng.below(names.len() as u64) as usize];
        let events = &streams[name];
        let len = events.len() as u64;
        let from = rng.below(len + 2);
        let max = 1 + rng.below(len + 1) as usize;
        let forward = store
            .read_stream(name, from, Direction::Forward, max)
            .unwrap();
        let want: Vec<_> = events
            .iter()
            .skip(from as usize)
            .take(max)
            .cloned()
            .collect();
        assert_eq!(forward, want, "{name} forward from {from} max {max}");
        let backward = store
            .read_stream(name, from, Direction::Backward, max)
            .unwrap();
        let top = from.min(len - 1) as usize + 1;
        let want: Vec<_> = events[top.saturating_sub(max)..top]
            .iter()
            .rev()
            .cloned()
            .collect();
        assert_eq!(backward, want, "{name} backward from {from} max {max}");
        let position = rng.below(expected.len() as u64 + 1);
        let window = store.read_all(position, Direction::Backward, max).unwrap();
        let top = position.min(expected.len() as u64 - 1) as usize + 1;
        let want: Vec<_> = expected[top.saturating_sub(max)..top]
            .iter()
            .rev()
            .cloned()
            .collect();
        assert_eq!(window, want, "$all backward from {position} max {max}");
    }
    let listed: Vec<(String, u64)> = store
        .streams()
        .map(Result::unwrap)
        .map(|info| (info.name, info.version))
        .collect();
    let want: Vec<(String, u64)> = streams
        .iter()
        .map(|(name, events)| (name.clone(), events.len() as u64 - 1))
        .collect();
    assert_eq!(listed, want);
}

#[test]
fn reopen_reads_only_the_unsealed_tail() {
    let dir = tempfile::tempdir().unwrap();
    let store = Store::open(dir.path(), options()).unwrap();
    fill(&store, 40, 1500, 1);
    let expected = all(&store);
    store.close().unwrap();
    let segments = files_with(dir.path(), ".log").len();
    assert!(segments > 20, "only {segments} segments");

    let store = Store::open(dir.path(), options()).unwrap();
    let stats = store.recovery_stats();
    assert_eq!(stats.segments, segments);
    assert_eq!(stats.index_files_loaded, segments - 1);
    assert_eq!(stats.index_files_rebuilt, 0);
    assert!(!stats.catalog_rebuilt);
    assert_eq!(stats.events, expected.len() as u64);
    assert!(
        stats.bytes_scanned <= SEGMENT,
        "scanned {} bytes, more than the tail segment",
        stats.bytes_scanned
    );
    assert_eq!(store.index_repairs(), 0);
    assert_reads(&store, &expected, 2);
}

#[test]
fn background_index_writes_are_done_by_close() {
    let dir = tempfile::tempdir().unwrap();
    let options = options().background_index_writes(true);
    let store = Store::open(dir.path(), options.clone()).unwrap();
    fill(&store, 10, 600, 3);
    let expected = all(&store);
    assert_eq!(store.index_write_failures(), 0);
    store.close().unwrap();
    let store = Store::open(dir.path(), options).unwrap();
    let stats = store.recovery_stats();
    assert_eq!(stats.index_files_loaded, stats.segments - 1);
    assert_eq!(
        (stats.index_files_rebuilt, stats.catalog_rebuilt),
        (0, false)
    );
    assert_reads(&store, &expected, 4);
}

#[test]
fn missing_or_damaged_index_files_are_rebuilt_with_identical_reads() {
    let dir = tempfile::tempdir().unwrap();
    let store = Store::open(dir.path(), options()).unwrap();
    fill(&store, 25, 900, 5);
    let expected = all(&store);
    store.close().unwrap();
    let indexes = files_with(dir.path(), ".idx");
    assert!(indexes.len() >= 8);
    let len = |p: &Path| fs::metadata(p).unwrap().len();

    // Missing, header damaged, cut short: found at open.
    fs::remove_file(&indexes[0]).unwrap();
    flip_byte(&indexes[2], 20);
    let short = OpenOptions::new().write(true).open(&indexes[4]).unwrap();
    short.set_len(len(&indexes[4]) - 8).unwrap();
    // Body damaged: found by its checksum when first used.
    flip_byte(&indexes[6], len(&indexes[6]) / 2);

    let store = Store::open(dir.path(), options()).unwrap();
    let stats = store.recovery_stats();
    assert_eq!(stats.index_files_rebuilt, 3);
    assert_eq!(stats.index_files_loaded, indexes.len() - 3);
    assert_eq!(store.index_repairs(), 0);
    assert_reads(&store, &expected, 6);
    assert_eq!(store.index_repairs(), 1);
    store.close().unwrap();

    // Every file was rewritten: the next open trusts them all.
    let store = Store::open(dir.path(), options()).unwrap();
    let stats = store.recovery_stats();
    assert_eq!(stats.index_files_rebuilt, 0);
    assert_eq!(stats.index_files_loaded, indexes.len());
    assert_reads(&store, &expected, 7);
    assert_eq!(store.index_repairs(), 0);
}

#[test]
fn a_missing_or_damaged_catalogue_is_rebuilt() {
    let dir = tempfile::tempdir().unwrap();
    let store = Store::open(dir.path(), options()).unwrap();
    fill(&store, 30, 700, 8);
    let expected = all(&store);
    store.close().unwrap();
    let catalog = dir.path().join("segments/streams.catalog");
    for damage in ["flip", "remove", "empty"] {
        match damage {
            "flip" => flip_byte(&catalog, fs::metadata(&catalog).unwrap().len() - 30),
            "remove" => fs::remove_file(&catalog).unwrap(),
            _ => fs::write(&catalog, b"").unwrap(),
        }
        let store = Store::open(dir.path(), options()).unwrap();
        assert!(store.recovery_stats().catalog_rebuilt, "{damage}");
        assert_reads(&store, &expected, 9);
        drop(store);
        let store = Store::open(dir.path(), options()).unwrap();
        assert!(!store.recovery_stats().catalog_rebuilt, "{damage}");
    }
}

/// Each seal merges the sealed segment into the previous catalogue; the
/// result must be what a rebuild from the segments gives. A catalogue lost
/// while the store runs is not guessed at: it stays behind until the next
/// open rebuilds it.
#[test]
fn the_catalogue_written_at_each_seal_equals_a_rebuild_and_a_lost_one_waits_for_open() {
    let dir = tempfile::tempdir().unwrap();
    let inline = || options().background_index_writes(false);
    let catalog = dir.path().join("segments/streams.catalog");
    let store = Store::open(dir.path(), inline()).unwrap();
    fill(&store, 40, 900, 21);
    let written = fs::read(&catalog).unwrap();
    store.close().unwrap();
    fs::remove_file(&catalog).unwrap();
    let store = Store::open(dir.path(), inline()).unwrap();
    assert!(store.recovery_stats().catalog_rebuilt);
    assert_eq!(
        fs::read(&catalog).unwrap(),
        written,
        "merged and rebuilt differ"
    );

    // Lost while open: later seals leave it missing rather than write one
    // from a guess; reads are unaffected, and the next open rebuilds it.
    fs::remove_file(&catalog).unwrap();
    let sealed_before = store.log_info().segments.len();
    fill(&store, 40, 600, 22);
    assert!(store.log_info().segments.len() > sealed_before + 1);
    assert!(!catalog.exists());
    let expected = all(&store);
    store.close().unwrap();
    let store = Store::open(dir.path(), inline()).unwrap();
    assert!(store.recovery_stats().catalog_rebuilt);
    assert_reads(&store, &expected, 23);
    // From then on, seals merge again.
    fill(&store, 40, 600, 24);
    let merged = fs::read(&catalog).unwrap();
    store.close().unwrap();
    fs::remove_file(&catalog).unwrap();
    let store = Store::open(dir.path(), inline()).unwrap();
    assert_eq!(fs::read(&catalog).unwrap(), merged);
    drop(store);
}

#[test]
fn streams_whose_hashes_collide_are_told_apart() {
    let dir = tempfile::tempdir().unwrap();
    let colliding = options().collide_stream_hashes(true);
    let store = Store::open(dir.path(), colliding.clone()).unwrap();
    fill(&store, 120, 1200, 10);
    // Names that differ only in their last byte, or are prefixes of each
    // other, must not be confused either.
    for (i, name) in ["x", "xx", "xy", "x\u{e9}"].into_iter().enumerate() {
        store
            .append(
                name,
                ExpectedVersion::NoStream,
                &[event(1000 + i as u128, 8)],
            )
            .unwrap();
    }
    let expected = all(&store);
    assert_reads(&store, &expected, 11);
    assert!(store
        .read_stream("stream-9999", 0, Direction::Forward, 10)
        .unwrap()
        .is_empty());
    assert_eq!(store.stream_version("xz").unwrap(), None);
    store.close().unwrap();
    for reopen in [colliding, options()] {
        let store = Store::open(dir.path(), reopen).unwrap();
        assert_eq!(store.recovery_stats().index_files_rebuilt, 0);
        assert_reads(&store, &expected, 12);
        assert!(matches!(
            store.append("xx", ExpectedVersion::NoStream, &[event(1, 1)]),
            Err(Error::WrongExpectedVersion {
                actual: Some(0),
                ..
            })
        ));
    }
}

#[test]
fn reads_span_many_segments_in_both_directions_before_and_after_reopen() {
    let dir = tempfile::tempdir().unwrap();
    let store = Store::open(dir.path(), options()).unwrap();
    fill(&store, 7, 2000, 13);
    let expected = all(&store);
    assert!(files_with(dir.path(), ".log").len() > 25);
    // Sealed segments in memory, in index files, and the active one.
    assert_reads(&store, &expected, 14);
    store.close().unwrap();
    let store = Store::open(dir.path(), options()).unwrap();
    assert_reads(&store, &expected, 15);
    // New events after reopen continue every stream.
    fill(&store, 7, 300, 16);
    let expected = all(&store);
    assert_reads(&store, &expected, 17);
}

#[test]
fn retries_are_recognised_through_index_files_after_restart() {
    let dir = tempfile::tempdir().unwrap();
    let store = Store::open(dir.path(), options()).unwrap();
    let original = store
        .append(
            "acct",
            ExpectedVersion::NoStream,
            &[event(7, 100), event(8, 100)],
        )
        .unwrap();
    fill(&store, 5, 400, 18);
    store.close().unwrap();
    let store = Store::open(dir.path(), options()).unwrap();
    assert!(store.recovery_stats().index_files_loaded > 5);
    let before = all(&store).len();
    assert_eq!(
        store
            .append(
                "acct",
                ExpectedVersion::NoStream,
                &[event(7, 100), event(8, 100)]
            )
            .unwrap(),
        original
    );
    assert!(matches!(
        store.append(
            "acct",
            ExpectedVersion::Any,
            &[event(7, 100), event(9, 100)]
        ),
        Err(Error::IdempotencyConflict { .. })
    ));
    assert!(matches!(
        store.append("other", ExpectedVersion::Any, &[event(8, 100)]),
        Err(Error::IdempotencyConflict { .. })
    ));
    assert_eq!(all(&store).len(), before);
}

/// A store on a simulated disk, with segments rolling over often.
fn sim_store(disk: &SimDisk, durability: Durability) -> Store {
    Store::open(
        "/store",
        options()
            .durability(durability)
            .background_preallocation(false)
            .background_index_writes(false)
            .flush_interval(Duration::from_secs(3600))
            .storage(Arc::new(disk.clone())),
    )
    .unwrap()
}

#[test]
fn a_retry_after_a_crash_right_after_the_write_returns_the_original() {
    for (durability, plan) in [
        (Durability::Sync, CrashPlan::LoseAll),
        (Durability::Buffered, CrashPlan::KeepAll),
    ] {
        let disk = SimDisk::new();
        let store = sim_store(&disk, durability);
        fill(&store, 5, 300, 19);
        let retried = [event(70, 50), event(71, 50), event(72, 50)];
        let original = store
            .append("acct", ExpectedVersion::Any, &retried)
            .unwrap();
        // The process dies right after the write (nothing closed, no
        // durable mark for a buffered write).
        let image = disk.crash(plan);
        drop(store);
        let store = sim_store(&image, durability);
        let before = all(&store);
        assert_eq!(
            store
                .append("acct", ExpectedVersion::Any, &retried)
                .unwrap(),
            original,
            "{durability:?}"
        );
        assert_eq!(all(&store), before);
    }
    // Lost before it was durable: the retry writes it, once.
    let disk = SimDisk::new();
    let store = sim_store(&disk, Durability::Buffered);
    fill(&store, 5, 300, 20);
    store.flush().unwrap();
    let retried = [event(80, 50)];
    store
        .append("acct", ExpectedVersion::Any, &retried)
        .unwrap();
    let image = disk.crash(CrashPlan::LoseAll);
    drop(store);
    let store = sim_store(&image, Durability::Buffered);
    let count = all(&store).len();
    let again = store
        .append("acct", ExpectedVersion::Any, &retried)
        .unwrap();
    assert_eq!(again.first_position, count as u64);
    assert_eq!(
        store
            .append("acct", ExpectedVersion::Any, &retried)
            .unwrap(),
        again
    );
}

#[test]
fn the_stream_catalogue_pages_through_thousands_of_streams() {
    let dir = tempfile::tempdir().unwrap();
    let store = Store::open(dir.path(), options()).unwrap();
    for i in 0..1500u32 {
        let stream = format!("s-{:05}", (i * 7919) % 1500);
        let events: Vec<_> = (0..1 + i % 3)
            .map(|j| event((i * 4 + j) as u128, 16))
            .collect();
        store
            .append(&stream, ExpectedVersion::NoStream, &events)
            .unwrap();
    }
    let check = |store: &Store| {
        let listed: Vec<StreamInfo> = store.streams().map(Result::unwrap).collect();
        assert_eq!(listed.len(), 1500);
        assert!(listed.windows(2).all(|w| w[0].name < w[1].name));
        for info in &listed {
            assert_eq!(
                store.stream_version(&info.name).unwrap(),
                Some(info.version)
            );
        }
    };
    check(&store);
    // Streams created while iterating appear when they sort after the
    // cursor.
    let mut iter = store.streams();
    let first = iter.next().unwrap().unwrap();
    assert_eq!(first.name, "s-00000");
    store
        .append("t-new", ExpectedVersion::NoStream, &[event(1 << 40, 8)])
        .unwrap();
    let rest: Vec<_> = iter.map(Result::unwrap).collect();
    assert_eq!(rest.last().unwrap().name, "t-new");
    store.close().unwrap();
    let store = Store::open(dir.path(), options()).unwrap();
    assert!(store.recovery_stats().index_files_loaded > 0);
    let listed: Vec<_> = store.streams().map(Result::unwrap).collect();
    assert_eq!(listed.len(), 1501);
}

#[test]
fn a_sync_store_does_not_count_buffered_events_that_are_not_durable() {
    let dir = tempfile::tempdir().unwrap();
    let store = Store::open(
        dir.path(),
        options().flush_interval(Duration::from_secs(3600)),
    )
    .unwrap();
    store
        .append("s", ExpectedVersion::NoStream, &[event(1, 8)])
        .unwrap();
    store
        .append_with_durability(
            "s",
            ExpectedVersion::Exact(0),
            &[event(2, 8)],
            Durability::Buffered,
        )
        .unwrap();
    assert_eq!(store.stream_version("s").unwrap(), Some(0));
    assert_eq!(
        store
            .read_stream("s", 0, Direction::Forward, 10)
            .unwrap()
            .len(),
        1
    );
    assert_eq!(store.streams().next().unwrap().unwrap().version, 0);
    store.flush().unwrap();
    assert_eq!(store.stream_version("s").unwrap(), Some(1));
    assert_eq!(
        store
            .read_stream("s", 0, Direction::Forward, 10)
            .unwrap()
            .len(),
        2
    );
}
