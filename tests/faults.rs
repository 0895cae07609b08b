//! Injected I/O faults through the public `Storage` seam (see
//! `common::FaultyStorage`): a failed fsync poisons writes but never reads, a
//! full disk fails one append cleanly, short writes are completed, and the
//! directory lock keeps a second handle out.
//!
//! - `sync_eio_*`: EIO from `fdatasync` of a segment poisons appends and
//!   flushes (also once the disk is healthy again), wakes every waiter, keeps
//!   reads working; a healthy reopen has every acknowledged event.
//! - `enospc_*`: ENOSPC from a write (whole, after a partial write, on the
//!   seal, on a rollover write carrying another append) or from `allocate`
//!   fails exactly the appends concerned with `NoSpace`, leaves no bytes
//!   behind, and the store carries on.
//! - `full_disk_*`: on a full `SimDisk`, snapshot and checkpoint saves fail
//!   with `NoSpace` like appends, leave no temporary file, keep the previous
//!   snapshot or checkpoint, and work again once there is room.
//! - `short_writes_*`: every write cut to 7 bytes, across rollover, in both
//!   durability modes.
//! - `buffered_store_does_not_fsync_after_every_group`: the background flush
//!   cadence of a Buffered store.
//! - `second_open_of_the_same_directory_is_locked`: `Error::Locked` while any
//!   clone lives.

mod common;

use common::{
    assert_no_space, assert_poisoned, assert_store_holds_acked, assert_store_holds_acked_and_maybe,
    segment_files, AckedAppend, FaultyStorage, TestRng, UncertainAppend, WriteTarget,
    SEAL_BATCH_KIND,
};
use evstore::format::{BATCH_HEADER_LEN, RECORD_HEADER_LEN, SEGMENT_HEADER_LEN};
use evstore::storage::{SimDisk, Storage};
use evstore::{Direction, Durability, Error, EventData, ExpectedVersion, Options, Store, Uuid};
use std::path::Path;
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::thread;
use std::time::Duration;

const TINY_SEGMENT: u64 = 4096;

/// Options using `storage` (fault injection) on top of `base`.
fn with_faults(base: Options, storage: &Arc<FaultyStorage>) -> Options {
    base.storage(Arc::clone(storage) as Arc<dyn evstore::storage::Storage>)
}

/// An event whose id, type and payload are derived from `n` only.
fn numbered_event(n: u64, payload_len: usize) -> EventData {
    let mut payload = n.to_le_bytes().to_vec();
    payload.extend((0..payload_len.saturating_sub(8)).map(|k| (k as u64 ^ n) as u8));
    EventData::new(format!("Numbered{}", n % 3), payload)
        .with_id(Uuid::from_u128(0xFA17_0000_0000 + u128::from(n)))
        .with_metadata(format!("n={n}").into_bytes())
}

/// Bytes an append takes in a segment: batch header plus padded records.
fn encoded_append_len(stream: &str, events: &[EventData]) -> u64 {
    let records: usize = events
        .iter()
        .map(|e| {
            (RECORD_HEADER_LEN
                + stream.len()
                + e.event_type().len()
                + e.metadata().len()
                + e.payload().len())
            .next_multiple_of(8)
        })
        .sum();
    (BATCH_HEADER_LEN + records) as u64
}

/// Appends and records the acknowledgement, panicking on any error.
fn append_acked(
    store: &Store,
    acked: &mut Vec<AckedAppend>,
    stream: &str,
    expected: ExpectedVersion,
    events: Vec<EventData>,
    durability: Durability,
) {
    let result = store
        .append_with_durability(stream, expected, &events, durability)
        .unwrap_or_else(|e| panic!("append to {stream} failed: {e:?}"));
    acked.push(AckedAppend {
        stream: stream.to_string(),
        result,
        events,
    });
}

/// The exact expectation for the next append to `stream` by the only
/// appender: its last acknowledged version, whether or not readers see it yet.
fn next_expected(acked: &[AckedAppend], stream: &str) -> ExpectedVersion {
    acked
        .iter()
        .rev()
        .find(|a| a.stream == stream)
        .map_or(ExpectedVersion::NoStream, |a| {
            ExpectedVersion::Exact(a.result.last_version)
        })
}

/// Appends `count` single-event appends round-robin over three streams with
/// exact expected versions, returning the next event number.
fn fill(
    store: &Store,
    acked: &mut Vec<AckedAppend>,
    mut n: u64,
    count: u64,
    payload_len: usize,
    durability: Durability,
) -> u64 {
    for _ in 0..count {
        let stream = format!("s{}", n % 3);
        let expected = next_expected(acked, &stream);
        append_acked(
            store,
            acked,
            &stream,
            expected,
            vec![numbered_event(n, payload_len)],
            durability,
        );
        n += 1;
    }
    n
}

/// Reopens `dir` on the real file system and checks it holds `acked` (plus,
/// possibly, whole `uncertain` appends), then that it takes appends again.
fn reopen_healthy_and_check(
    dir: &Path,
    options: Options,
    acked: &[AckedAppend],
    uncertain: &[UncertainAppend],
) {
    let store = Store::open(dir, options).expect("reopen on healthy storage");
    assert_store_holds_acked_and_maybe(&store, acked, uncertain);
    let version = store.stream_version("s0").unwrap();
    let expected = version.map_or(ExpectedVersion::NoStream, ExpectedVersion::Exact);
    let after = store
        .append("s0", expected, &[numbered_event(999_999, 16)])
        .expect("append after reopen");
    assert_eq!(after.first_version, version.map_or(0, |v| v + 1));
    assert_eq!(
        Some(after.first_position),
        store.last_position(),
        "the new event is the last one"
    );
}

// ---------------------------------------------------------------------------
// fsync fails with EIO
// ---------------------------------------------------------------------------

#[test]
fn sync_eio_poisons_writes_but_reads_keep_working() {
    let dir = tempfile::tempdir().expect("tempdir");
    let (storage, faults) = FaultyStorage::new();
    let store = Store::open(dir.path(), with_faults(Options::default(), &storage)).expect("open");
    let mut acked = Vec::new();
    let n = fill(&store, &mut acked, 0, 30, 100, Durability::Sync);
    assert!(
        faults.log_syncs.load(Ordering::SeqCst) > 0,
        "syncs reach the wrapper"
    );

    faults.set_log_sync_eio(true);
    let doomed = vec![numbered_event(n, 100), numbered_event(n + 1, 100)];
    assert_poisoned(store.append("s0", ExpectedVersion::Any, &doomed));
    assert_eq!(faults.injected_sync_eio.load(Ordering::SeqCst), 1);
    let mut uncertain = vec![UncertainAppend {
        stream: "s0".into(),
        events: doomed,
    }];

    // Even with the disk healthy again, the store refuses writes: a retried
    // fsync cannot be trusted.
    faults.set_log_sync_eio(false);
    for (i, durability) in [Durability::Sync, Durability::Buffered]
        .into_iter()
        .enumerate()
    {
        let events = vec![numbered_event(n + 2 + i as u64, 10)];
        assert_poisoned(store.append_with_durability(
            "s1",
            ExpectedVersion::Any,
            &events,
            durability,
        ));
        uncertain.push(UncertainAppend {
            stream: "s1".into(),
            events,
        });
    }
    assert_poisoned(store.flush());
    assert_poisoned(store.append(
        "fresh",
        ExpectedVersion::NoStream,
        &[numbered_event(n + 4, 1)],
    ));
    assert_eq!(
        faults.injected_sync_eio.load(Ordering::SeqCst),
        1,
        "no further fsync is attempted"
    );

    // Reads still work and show exactly what was acknowledged.
    assert_store_holds_acked(&store, &acked);
    assert!(store
        .read_stream("fresh", 0, Direction::Forward, 10)
        .expect("read_stream")
        .is_empty());

    // Closing reports the poison rather than pretending to have flushed.
    let clone = store.clone();
    assert_poisoned(store.close());
    drop(clone);
    reopen_healthy_and_check(dir.path(), Options::default(), &acked, &uncertain);
}

#[test]
fn sync_eio_wakes_every_waiting_appender_with_the_error() {
    const THREADS: u64 = 8;
    const APPENDS: u64 = 5;
    let dir = tempfile::tempdir().expect("tempdir");
    let (storage, faults) = FaultyStorage::new();
    let store = Store::open(dir.path(), with_faults(Options::default(), &storage)).expect("open");
    let mut acked = Vec::new();
    fill(&store, &mut acked, 0, 10, 50, Durability::Sync);

    faults.set_log_sync_eio(true);
    let handles: Vec<_> = (0..THREADS)
        .map(|t| {
            let store = store.clone();
            thread::spawn(move || {
                (0..APPENDS)
                    .map(|i| {
                        let stream = format!("s{}", t % 3);
                        let events = vec![numbered_event(1000 + t * APPENDS + i, 64)];
                        let result = store.append(&stream, ExpectedVersion::Any, &events);
                        assert_poisoned(result);
                        UncertainAppend { stream, events }
                    })
                    .collect::<Vec<_>>()
            })
        })
        .collect();
    // Every appender returns (joining would hang if a waiter were lost).
    let uncertain: Vec<UncertainAppend> = handles
        .into_iter()
        .flat_map(|h| h.join().expect("appender panicked"))
        .collect();
    assert!(faults.injected_sync_eio.load(Ordering::SeqCst) >= 1);
    assert_store_holds_acked(&store, &acked);
    drop(store);
    reopen_healthy_and_check(dir.path(), Options::default(), &acked, &uncertain);
}

#[test]
fn sync_eio_in_a_buffered_store_poisons_flush_and_appends() {
    let dir = tempfile::tempdir().expect("tempdir");
    let (storage, faults) = FaultyStorage::new();
    let options = || {
        Options::default()
            .durability(Durability::Buffered)
            .segment_size(TINY_SEGMENT)
    };
    let store = Store::open(dir.path(), with_faults(options(), &storage)).expect("open");
    let mut acked = Vec::new();
    let n = fill(&store, &mut acked, 0, 20, 300, Durability::Buffered);
    store.flush().expect("flush while healthy");

    faults.set_log_sync_eio(true);
    // A buffered append may be acknowledged before the fsync fails (it only
    // promises the page cache); whether it is depends on when the background
    // flush runs. Either way the next flush must report the failed fsync.
    let maybe = vec![numbered_event(n, 300)];
    let mut uncertain = Vec::new();
    match store.append("s0", ExpectedVersion::Any, &maybe) {
        Ok(_) | Err(Error::StorePoisoned { .. }) => {}
        Err(other) => panic!("unexpected error {other:?}"),
    }
    uncertain.push(UncertainAppend {
        stream: "s0".into(),
        events: maybe,
    });
    assert_poisoned(store.flush());
    assert!(faults.injected_sync_eio.load(Ordering::SeqCst) >= 1);
    assert_poisoned(store.append("s1", ExpectedVersion::Any, &[numbered_event(n + 1, 3)]));
    assert_poisoned(store.flush());

    // Reads keep working: the acknowledged events, and nothing but whole
    // appends after them.
    assert_store_holds_acked_and_maybe(&store, &acked, &uncertain);
    drop(store);
    reopen_healthy_and_check(dir.path(), options(), &acked, &uncertain);
}

// ---------------------------------------------------------------------------
// The disk is full (ENOSPC)
// ---------------------------------------------------------------------------

#[test]
fn enospc_on_write_fails_the_append_cleanly_and_the_store_carries_on() {
    let dir = tempfile::tempdir().expect("tempdir");
    let (storage, faults) = FaultyStorage::new();
    let store = Store::open(dir.path(), with_faults(Options::default(), &storage)).expect("open");
    let mut acked = Vec::new();
    let mut n = fill(&store, &mut acked, 0, 12, 80, Durability::Sync);

    for (round, durability) in [Durability::Sync, Durability::Buffered, Durability::Sync]
        .into_iter()
        .enumerate()
    {
        let ExpectedVersion::Exact(version) = next_expected(&acked, "s0") else {
            panic!("s0 exists");
        };
        faults.fail_write_with_enospc_after(0, WriteTarget::LongerThan(BATCH_HEADER_LEN));
        let failed = vec![
            numbered_event(500 + round as u64, 80),
            numbered_event(600, 8),
        ];
        assert_no_space(store.append_with_durability(
            "s0",
            ExpectedVersion::Exact(version),
            &failed,
            durability,
        ));
        assert!(!faults.write_enospc_pending(), "the fault fired");
        assert_eq!(
            faults.injected_write_enospc.load(Ordering::SeqCst),
            round as u64 + 1
        );
        // Not poisoned: the same expectation now succeeds, at the positions
        // and versions the failed append would have had.
        let next_position = store.last_position().map_or(0, |p| p + 1);
        append_acked(
            &store,
            &mut acked,
            "s0",
            ExpectedVersion::Exact(version),
            vec![numbered_event(n, 40)],
            durability,
        );
        let last = acked.last().expect("just pushed").result;
        assert_eq!(last.first_version, version + 1);
        assert_eq!(last.first_position, next_position);
        n += 1;
        store.flush().expect("flush after ENOSPC");
        n = fill(&store, &mut acked, n, 3, 80, durability);
        store.flush().expect("flush");
    }
    assert_store_holds_acked(&store, &acked);
    store.close().expect("close");

    let store = Store::open(dir.path(), with_faults(Options::default(), &storage)).expect("reopen");
    assert_eq!(store.recovery_stats().torn_bytes, 0);
    drop(store);
    reopen_healthy_and_check(dir.path(), Options::default(), &acked, &[]);
}

#[test]
fn enospc_after_a_partial_write_leaves_no_trace() {
    let dir = tempfile::tempdir().expect("tempdir");
    let (storage, faults) = FaultyStorage::new();
    let store = Store::open(dir.path(), with_faults(Options::default(), &storage)).expect("open");
    let mut acked = Vec::new();
    let mut n = fill(&store, &mut acked, 0, 5, 100, Durability::Sync);

    // 3 x 512 bytes of a ~4 KiB append reach the file, then the disk is full.
    faults.set_short_writes(512);
    faults.fail_write_with_enospc_after(3, WriteTarget::LongerThan(BATCH_HEADER_LEN));
    let failed: Vec<EventData> = (0..3).map(|i| numbered_event(700 + i, 1300)).collect();
    assert!(encoded_append_len("s1", &failed) > 3 * 512);
    assert_no_space(store.append("s1", ExpectedVersion::Any, &failed));
    assert_eq!(faults.injected_write_enospc.load(Ordering::SeqCst), 1);
    assert!(faults.injected_short_writes.load(Ordering::SeqCst) >= 3);
    faults.set_short_writes(0);

    // A much smaller append goes where the failed one started; if the
    // partial bytes were left behind, they would follow it on disk.
    n = fill(&store, &mut acked, n, 1, 8, Durability::Sync);
    fill(&store, &mut acked, n, 2, 8, Durability::Buffered);
    store.flush().expect("flush");
    assert_store_holds_acked(&store, &acked);
    store.close().expect("close");

    let store = Store::open(dir.path(), Options::default()).expect("reopen");
    assert_eq!(
        store.recovery_stats().torn_bytes,
        0,
        "bytes of the failed append were left in the segment"
    );
    drop(store);
    reopen_healthy_and_check(dir.path(), Options::default(), &acked, &[]);
}

#[test]
fn enospc_on_the_seal_write_fails_the_rollover_append_cleanly() {
    let dir = tempfile::tempdir().expect("tempdir");
    let (storage, faults) = FaultyStorage::new();
    let options = || Options::default().segment_size(TINY_SEGMENT);
    let store = Store::open(dir.path(), with_faults(options(), &storage)).expect("open");
    let mut acked = Vec::new();
    let mut n = 0;
    // One appender, so one append per group: the seal is written on behalf
    // of the append that no longer fits, and only that append may fail.
    for round in 0..3u64 {
        faults.fail_write_with_enospc_after(0, WriteTarget::BatchOfKind(SEAL_BATCH_KIND));
        loop {
            let stream = format!("s{}", n % 3);
            let events = vec![numbered_event(n, 200 + (n as usize * 37) % 500)];
            let expected = next_expected(&acked, &stream);
            let segments_before = segment_files(dir.path()).len();
            let fired_before = faults.injected_write_enospc.load(Ordering::SeqCst);
            n += 1;
            match store.append(&stream, expected, &events) {
                Ok(result) => {
                    assert_eq!(
                        faults.injected_write_enospc.load(Ordering::SeqCst),
                        fired_before,
                        "an append was acknowledged although its rollover failed"
                    );
                    acked.push(AckedAppend {
                        stream,
                        result,
                        events,
                    });
                }
                Err(Error::NoSpace { .. }) => {
                    assert_eq!(
                        faults.injected_write_enospc.load(Ordering::SeqCst),
                        round + 1,
                        "NoSpace without a failed seal write"
                    );
                    assert_eq!(segment_files(dir.path()).len(), segments_before);
                    // Not poisoned: the same append, retried, rolls over.
                    append_acked(
                        &store,
                        &mut acked,
                        &stream,
                        expected,
                        events,
                        Durability::Sync,
                    );
                    assert_eq!(segment_files(dir.path()).len(), segments_before + 1);
                    break;
                }
                Err(other) => panic!("unexpected error {other:?}"),
            }
        }
    }
    assert_store_holds_acked(&store, &acked);
    store.close().expect("close");
    let store = Store::open(dir.path(), options()).expect("reopen");
    assert_eq!(store.recovery_stats().segments, 4);
    assert_eq!(store.recovery_stats().torn_bytes, 0);
    drop(store);
    reopen_healthy_and_check(dir.path(), options(), &acked, &[]);
}

/// Two appends in one group: the first fits in the active segment, the
/// second needs a new one. The rollover writes the first append's batch
/// together with the seal; when that write fails for lack of space, neither
/// append was written, so neither may be acknowledged.
#[test]
fn enospc_on_a_rollover_write_fails_every_append_it_carried() {
    let dir = tempfile::tempdir().expect("tempdir");
    let (storage, faults) = FaultyStorage::new();
    // Either order of the two appends puts one in the fresh segment and
    // makes the other roll over.
    let small = vec![numbered_event(1, 150)];
    let large = vec![numbered_event(2, 3700)];
    let small_len = encoded_append_len("small", &small);
    let large_len = encoded_append_len("large", &large);
    let room = TINY_SEGMENT - SEGMENT_HEADER_LEN as u64 - 2 * BATCH_HEADER_LEN as u64;
    assert!(large_len <= room && small_len + large_len > room);
    // The writer lingers until both appends are queued, so they form one
    // group whatever the thread scheduling (the linger ends as soon as
    // `max_batch_bytes` are queued; the 60 s are only a bound).
    let options = Options::default()
        .segment_size(TINY_SEGMENT)
        .max_linger(Some(Duration::from_secs(60)))
        .max_batch_bytes((small_len + large_len) as usize);
    let store = Store::open(dir.path(), with_faults(options, &storage)).expect("open");

    // The first write carrying a batch is the rollover's (batch + seal).
    faults.fail_write_with_enospc_after(0, WriteTarget::LongerThan(BATCH_HEADER_LEN));
    let handles: Vec<_> = [("small", small), ("large", large)]
        .into_iter()
        .map(|(stream, events)| {
            let store = store.clone();
            thread::spawn(move || {
                let result = store.append(stream, ExpectedVersion::NoStream, &events);
                (stream, events, result)
            })
        })
        .collect();
    let mut acked = Vec::new();
    let mut refused = Vec::new();
    for handle in handles {
        let (stream, events, result) = handle.join().expect("appender panicked");
        match result {
            Ok(result) => acked.push(AckedAppend {
                stream: stream.to_string(),
                result,
                events,
            }),
            Err(Error::NoSpace { .. }) => refused.push(stream),
            Err(other) => panic!("{stream}: unexpected error {other:?}"),
        }
    }
    assert_eq!(faults.injected_write_enospc.load(Ordering::SeqCst), 1);
    assert!(!refused.is_empty(), "the failed rollover refused nothing");
    let visible = store
        .read_all(0, Direction::Forward, usize::MAX)
        .expect("read_all");
    for a in &acked {
        assert!(
            visible.iter().any(|e| e.id == a.events[0].id()),
            "append to '{}' was acknowledged with {:?} but is not in the store \
             (the rollover write that carried it failed with ENOSPC); \
             the store holds {} events",
            a.stream,
            a.result,
            visible.len()
        );
    }
    assert_store_holds_acked(&store, &acked);
    // Dropping (rather than closing, which would flush and linger) ends the
    // lingering writer at once.
    drop(store);

    // Reopened without the linger, the store holds what it acknowledged and
    // carries on.
    let options = || Options::default().segment_size(TINY_SEGMENT);
    let store = Store::open(dir.path(), with_faults(options(), &storage)).expect("reopen");
    assert_store_holds_acked(&store, &acked);
    fill(&store, &mut acked, 10, 5, 300, Durability::Sync);
    assert_store_holds_acked(&store, &acked);
    store.close().expect("close");
    reopen_healthy_and_check(dir.path(), options(), &acked, &[]);
}

#[test]
fn enospc_on_allocate_fails_only_the_append_that_needs_a_new_segment() {
    let dir = tempfile::tempdir().expect("tempdir");
    let (storage, faults) = FaultyStorage::new();
    let options = || Options::default().segment_size(TINY_SEGMENT);
    let mut acked = Vec::new();
    let mut n = 0;

    // A first session writes part of a segment.
    let store = Store::open(dir.path(), with_faults(options(), &storage)).expect("open");
    n = fill(&store, &mut acked, n, 2, 300, Durability::Sync);
    store.close().expect("close");
    let mut bytes_in_segment: u64 = acked
        .iter()
        .map(|a| encoded_append_len(&a.stream, &a.events))
        .sum();

    // Reopened with a full disk: the active segment is already allocated and
    // stays usable, but the background preallocation of the next one fails,
    // and so does the writer's own retry at rollover.
    faults.set_allocate_enospc(true);
    let store = Store::open(dir.path(), with_faults(options(), &storage)).expect("reopen");
    let (stream, events) = loop {
        let stream = format!("s{}", n % 3);
        let events = vec![numbered_event(n, 300 + (n as usize * 53) % 400)];
        let expected = next_expected(&acked, &stream);
        n += 1;
        match store.append(&stream, expected, &events) {
            Ok(result) => {
                bytes_in_segment += encoded_append_len(&stream, &events);
                assert!(
                    bytes_in_segment + SEGMENT_HEADER_LEN as u64 <= TINY_SEGMENT,
                    "acknowledged appends overflow one segment, yet none could be allocated"
                );
                acked.push(AckedAppend {
                    stream,
                    result,
                    events,
                });
            }
            Err(Error::NoSpace { .. }) => {
                let needed = bytes_in_segment + encoded_append_len(&stream, &events);
                assert!(
                    needed + (SEGMENT_HEADER_LEN + BATCH_HEADER_LEN) as u64 > TINY_SEGMENT / 2,
                    "NoSpace long before the segment was full ({needed} bytes)"
                );
                break (stream, events);
            }
            Err(other) => panic!("expected NoSpace, got {other:?}"),
        }
    };
    // Retries keep failing cleanly while the disk is full, in both modes.
    for durability in [Durability::Buffered, Durability::Sync] {
        assert_no_space(store.append_with_durability(
            &stream,
            next_expected(&acked, &stream),
            &events,
            durability,
        ));
    }
    assert!(faults.injected_allocate_enospc.load(Ordering::SeqCst) >= 3);
    assert_eq!(segment_files(dir.path()).len(), 1, "no segment was added");
    // A failed preallocation keeps none of the space it got: the file it
    // was growing is gone, so checkpoints and index files can still be
    // written on the nearly full disk.
    assert!(
        !dir.path().join("segments").join("next.tmp").exists(),
        "a failed preallocation left its file behind"
    );
    store.flush().expect("not poisoned: flush works");
    assert_store_holds_acked(&store, &acked);

    // Space is back: the same append goes through, and many more after it.
    faults.set_allocate_enospc(false);
    let expected = next_expected(&acked, &stream);
    append_acked(
        &store,
        &mut acked,
        &stream,
        expected,
        events,
        Durability::Sync,
    );
    assert_eq!(segment_files(dir.path()).len(), 2);
    fill(&store, &mut acked, n, 40, 500, Durability::Sync);
    assert!(segment_files(dir.path()).len() > 3);
    assert_store_holds_acked(&store, &acked);
    store.close().expect("close");
    reopen_healthy_and_check(dir.path(), options(), &acked, &[]);
}

#[test]
fn full_disk_fails_snapshot_and_checkpoint_saves_with_no_space() {
    let disk = SimDisk::new();
    let storage = Arc::new(disk.clone()) as Arc<dyn Storage>;
    let store =
        Store::open(Path::new("/store"), Options::default().storage(storage)).expect("open");
    for (k, stream) in [(0, "acct-1"), (3, "acct-2")] {
        let events: Vec<EventData> = (k..k + 3).map(|n| numbered_event(n, 16)).collect();
        store
            .append(stream, ExpectedVersion::NoStream, &events)
            .expect("append");
    }
    store.save_snapshot("acct-1", 0, b"v0").expect("snapshot");
    store.save_checkpoint("reader", 2).expect("checkpoint");

    disk.set_full(true);
    // A newer snapshot, and the first one of another stream (its directory
    // is made on the way).
    assert_no_space(store.save_snapshot("acct-1", 2, b"v2"));
    assert_no_space(store.save_snapshot("acct-2", 1, b"w1"));
    assert_no_space(store.save_checkpoint("reader", 5));
    assert_no_space(store.save_checkpoint("fresh", 1));
    let temps: Vec<_> = disk
        .files()
        .into_iter()
        .filter(|f| !f.starts_with(Path::new("/store").join(evstore::SEGMENTS_DIR)))
        .filter(|f| f.extension().is_some_and(|x| x == "tmp"))
        .collect();
    assert_eq!(
        temps,
        Vec::<std::path::PathBuf>::new(),
        "no temporary file holds space"
    );
    // What was saved before is untouched, and the store still reads.
    let snapshot = store.load_snapshot("acct-1").expect("load").expect("saved");
    assert_eq!((snapshot.version, &snapshot.data[..]), (0, &b"v0"[..]));
    assert!(store.load_snapshot("acct-2").expect("load").is_none());
    assert_eq!(store.load_checkpoint("reader").expect("load"), Some(2));
    assert_eq!(store.load_checkpoint("fresh").expect("load"), None);
    assert_eq!(
        store
            .read_all(0, Direction::Forward, 10)
            .expect("read")
            .len(),
        6
    );

    // Room again: the same saves go through.
    disk.set_full(false);
    store.save_snapshot("acct-1", 2, b"v2").expect("snapshot");
    store.save_snapshot("acct-2", 1, b"w1").expect("snapshot");
    store.save_checkpoint("reader", 5).expect("checkpoint");
    store.save_checkpoint("fresh", 1).expect("checkpoint");
    let snapshot = store.load_snapshot("acct-1").expect("load").expect("saved");
    assert_eq!((snapshot.version, &snapshot.data[..]), (2, &b"v2"[..]));
    let snapshot = store.load_snapshot("acct-2").expect("load").expect("saved");
    assert_eq!((snapshot.version, &snapshot.data[..]), (1, &b"w1"[..]));
    assert_eq!(store.load_checkpoint("reader").expect("load"), Some(5));
    assert_eq!(store.load_checkpoint("fresh").expect("load"), Some(1));
}

/// Open writes too: the first segment of a new store. On a full disk it
/// fails with `NoSpace`, leaves no file holding space, and opens once there
/// is room.
#[test]
fn open_on_a_full_disk_fails_with_no_space() {
    let disk = SimDisk::new();
    let storage = Arc::new(disk.clone()) as Arc<dyn Storage>;
    let options = || Options::default().storage(Arc::clone(&storage));
    disk.set_full(true);
    assert_no_space(Store::open(Path::new("/store"), options()));
    let holding: Vec<_> = disk
        .files()
        .into_iter()
        .filter(|f| disk.read_file(f).is_ok_and(|bytes| !bytes.is_empty()))
        .collect();
    assert_eq!(holding, Vec::<std::path::PathBuf>::new());

    disk.set_full(false);
    let store = Store::open(Path::new("/store"), options()).expect("open");
    store
        .append(
            "acct-1",
            ExpectedVersion::NoStream,
            &[numbered_event(0, 16)],
        )
        .expect("append");
    assert_eq!(store.stream_version("acct-1").expect("version"), Some(0));
}

/// A store whose disk filled before the index files of its sealed segments
/// were written (their background write failed) still opens on the full
/// disk: those segments are served from memory and the stream catalogue
/// is left behind, every event reads back, appends that need room fail
/// with `NoSpace`, and the open after room returns writes the files.
#[test]
fn a_store_missing_index_files_opens_on_a_full_disk() {
    let disk = SimDisk::new();
    let storage = Arc::new(disk.clone()) as Arc<dyn Storage>;
    let options = || {
        Options::default()
            .segment_size(4096)
            .background_index_writes(false)
            .storage(Arc::clone(&storage))
    };
    let store = Store::open(Path::new("/store"), options()).expect("open");
    for n in 0..60 {
        store
            .append(
                &format!("acct-{}", n % 3),
                ExpectedVersion::Any,
                &[numbered_event(n, 48)],
            )
            .expect("append");
    }
    let before = store.read_all(0, Direction::Forward, 1000).expect("read");
    store.close().expect("close");
    let index_files: Vec<_> = disk
        .files()
        .into_iter()
        .filter(|f| f.extension().is_some_and(|e| e == "idx"))
        .collect();
    assert!(index_files.len() >= 2, "{index_files:?}");
    for file in &index_files {
        storage.remove_file(file).expect("removing an index file");
    }
    // The stream catalogue goes too: rebuilding it is a write as well.
    let catalogue = disk
        .files()
        .into_iter()
        .find(|f| f.file_name().is_some_and(|n| n == "streams.catalog"))
        .expect("a stream catalogue");
    storage
        .remove_file(&catalogue)
        .expect("removing the catalogue");

    disk.set_full(true);
    let store = Store::open(Path::new("/store"), options()).expect("open on a full disk");
    assert_eq!(
        store.read_all(0, Direction::Forward, 1000).expect("read"),
        before
    );
    assert_eq!(
        store
            .read_stream("acct-1", 0, Direction::Forward, 1000)
            .expect("read")
            .len(),
        20
    );
    let missing = index_files
        .iter()
        .filter(|f| disk.read_file(f).is_err())
        .count();
    assert_eq!(
        missing,
        index_files.len(),
        "nothing was written on the full disk"
    );
    let filler = EventData::new("Filler", vec![0u8; 3000]);
    let mut refused = false;
    for _ in 0..4 {
        match store.append(
            "filler",
            ExpectedVersion::Any,
            std::slice::from_ref(&filler),
        ) {
            Ok(_) => {}
            Err(Error::NoSpace { .. }) => {
                refused = true;
                break;
            }
            Err(other) => panic!("expected NoSpace, got {other:?}"),
        }
    }
    assert!(refused, "appends past the active segment need room");
    store.close().expect("close");

    disk.set_full(false);
    let store = Store::open(Path::new("/store"), options()).expect("open with room");
    assert_eq!(
        &store.read_all(0, Direction::Forward, 1000).expect("read")[..before.len()],
        &before[..]
    );
    for file in index_files.iter().chain([&catalogue]) {
        assert!(disk.read_file(file).is_ok(), "{} rewritten", file.display());
    }
}

// ---------------------------------------------------------------------------
// Short writes
// ---------------------------------------------------------------------------

fn short_writes_always(mode: Durability) {
    let dir = tempfile::tempdir().expect("tempdir");
    let (storage, faults) = FaultyStorage::new();
    faults.set_short_writes(7);
    let options = || {
        Options::default()
            .segment_size(TINY_SEGMENT)
            .durability(mode)
    };
    let other = match mode {
        Durability::Sync => Durability::Buffered,
        Durability::Buffered => Durability::Sync,
    };
    // Even creating the store (segment header) goes 7 bytes at a time.
    let store = Store::open(dir.path(), with_faults(options(), &storage)).expect("open");
    let mut acked = Vec::new();
    let mut rng = TestRng::new(7);
    for n in 0..150u64 {
        let stream = format!("s{}", rng.below(4));
        let count = 1 + rng.below(3);
        let events: Vec<EventData> = (0..count)
            .map(|i| numbered_event(n * 10 + i, 1 + rng.below(900) as usize))
            .collect();
        let durability = if n.is_multiple_of(3) { other } else { mode };
        let expected = next_expected(&acked, &stream);
        append_acked(&store, &mut acked, &stream, expected, events, durability);
    }
    assert!(faults.injected_short_writes.load(Ordering::SeqCst) > 1000);
    store.flush().expect("flush");
    assert_store_holds_acked(&store, &acked);
    store.close().expect("close");

    let store = Store::open(dir.path(), with_faults(options(), &storage)).expect("reopen");
    assert!(
        store.recovery_stats().segments > 10,
        "rollover happened: {:?}",
        store.recovery_stats()
    );
    assert_eq!(store.recovery_stats().torn_bytes, 0);
    assert_store_holds_acked(&store, &acked);
    drop(store);
    reopen_healthy_and_check(dir.path(), options(), &acked, &[]);
}

#[test]
fn short_writes_are_completed_in_a_sync_store() {
    short_writes_always(Durability::Sync);
}

#[test]
fn short_writes_are_completed_in_a_buffered_store() {
    short_writes_always(Durability::Buffered);
}

// ---------------------------------------------------------------------------
// Buffered durability does not fsync per group
// ---------------------------------------------------------------------------

/// A Buffered store acknowledges on write and makes appends durable in the
/// background "when idle, and at least every flush interval under
/// continuous load" (src/log/writer.rs, `Writer::run`). With an hour-long
/// interval and a steady stream of appends, the writer must not fsync after
/// every group.
#[test]
fn buffered_store_does_not_fsync_after_every_group() {
    const APPENDS: u64 = 200;
    let dir = tempfile::tempdir().expect("tempdir");
    let (storage, faults) = FaultyStorage::new();
    let options = Options::default()
        .durability(Durability::Buffered)
        .flush_interval(Duration::from_secs(3600));
    let store = Store::open(dir.path(), with_faults(options, &storage)).expect("open");
    let mut acked = Vec::new();
    let before = faults.log_syncs.load(Ordering::SeqCst);
    fill(&store, &mut acked, 0, APPENDS, 64, Durability::Buffered);
    let syncs = faults.log_syncs.load(Ordering::SeqCst) - before;
    store.flush().expect("flush");
    assert_store_holds_acked(&store, &acked);
    assert!(
        syncs < APPENDS / 10,
        "{syncs} fdatasyncs for {APPENDS} buffered appends from one thread: \
         the writer syncs after every group"
    );
}

// ---------------------------------------------------------------------------
// Locking
// ---------------------------------------------------------------------------

#[test]
fn second_open_of_the_same_directory_is_locked() {
    let dir = tempfile::tempdir().expect("tempdir");
    let (storage, _faults) = FaultyStorage::new();
    let store = Store::open(dir.path(), with_faults(Options::default(), &storage)).expect("open");
    let mut acked = Vec::new();
    fill(&store, &mut acked, 0, 3, 10, Durability::Sync);

    let expect_locked = |options: Options| match Store::open(dir.path(), options) {
        Err(Error::Locked {
            dir: locked,
            holder,
        }) => {
            assert_eq!(locked, dir.path());
            assert_eq!(holder, Some(std::process::id().to_string()));
        }
        other => panic!("expected Locked, got {other:?}"),
    };
    expect_locked(Options::default());
    expect_locked(with_faults(Options::default(), &storage));

    // The lock lives as long as any clone; closing one clone is not enough.
    let clone = store.clone();
    store.close().expect("close");
    expect_locked(Options::default());
    // The failed opens disturbed nothing.
    assert_store_holds_acked(&clone, &acked);
    drop(clone);

    let store = Store::open(dir.path(), Options::default()).expect("open after release");
    assert_store_holds_acked(&store, &acked);
    expect_locked(Options::default());
}

#[test]
fn a_poisoned_store_wakes_waiting_subscribers_with_the_error() {
    let dir = tempfile::tempdir().expect("tempdir");
    let (storage, faults) = FaultyStorage::new();
    let store = Store::open(dir.path(), with_faults(Options::default(), &storage)).expect("open");
    let mut acked = Vec::new();
    let n = fill(&store, &mut acked, 0, 10, 50, Durability::Sync);
    // One subscriber waits at the head, one has everything still to read.
    let mut at_head = store.subscribe_all(n, evstore::Filter::all());
    let behind = store.subscribe_all(0, evstore::Filter::all());
    let waiting = thread::spawn(move || at_head.next_timeout(Duration::from_secs(60)));

    faults.set_log_sync_eio(true);
    assert_poisoned(store.append("s0", ExpectedVersion::Any, &[numbered_event(n, 10)]));
    let woken = waiting.join().expect("subscriber thread");
    assert!(
        matches!(woken, Err(Error::StorePoisoned { .. })),
        "{woken:?}"
    );
    // A subscriber behind still reads every acknowledged event first.
    let mut seen = 0;
    let mut behind = behind;
    let end = loop {
        match behind.next_timeout(Duration::from_secs(60)) {
            Ok(Some(_)) => seen += 1,
            other => break other,
        }
    };
    assert_eq!(seen, n);
    assert!(matches!(end, Err(Error::StorePoisoned { .. })), "{end:?}");
}

/// A scavenge on a full disk fails with `NoSpace`, leaves no temporary file
/// holding space, changes nothing a read returns, and does not stop the
/// store: once there is room, appends and the same scavenge go through.
#[test]
fn a_scavenge_on_a_full_disk_fails_with_no_space_and_harms_nothing() {
    let disk = SimDisk::new();
    let storage = Arc::new(disk.clone()) as Arc<dyn Storage>;
    let options = Options::default()
        .segment_size(4096)
        .background_index_writes(false)
        .storage(storage);
    let store = Store::open(Path::new("/store"), options).expect("open");
    for n in 0..60 {
        let stream = if n % 2 == 0 { "kept" } else { "gone" };
        store
            .append(stream, ExpectedVersion::Any, &[numbered_event(n, 48)])
            .expect("append");
    }
    store
        .delete_stream("gone", ExpectedVersion::Any, evstore::DeleteMode::Hard)
        .expect("delete");
    let before = store.read_all(0, Direction::Forward, 1000).expect("read");

    disk.set_full(true);
    assert_no_space(store.scavenge());
    // The rewritten segment's temporary file (a segment's name and
    // `.tmp`) is gone.
    let temps: Vec<_> = disk
        .files()
        .into_iter()
        .filter(|f| f.to_string_lossy().ends_with(".log.tmp"))
        .collect();
    assert_eq!(
        temps,
        Vec::<std::path::PathBuf>::new(),
        "no temporary file holds space"
    );
    assert_eq!(
        store.read_all(0, Direction::Forward, 1000).expect("read"),
        before
    );

    disk.set_full(false);
    store
        .append("kept", ExpectedVersion::Any, &[numbered_event(60, 48)])
        .expect("append after the failed scavenge");
    let report = store.scavenge().expect("scavenge with room");
    assert!(report.events_redacted >= 20, "{report:?}");
    let after = store.read_all(0, Direction::Forward, 1000).expect("read");
    assert_eq!(&after[..before.len()], &before[..]);
}

/// Sealing an all-dead segment being written needs room for the next one:
/// on a full disk the scavenge fails with `NoSpace` alone, the store goes
/// on, and the seal happens once there is room.
#[test]
fn sealing_the_segment_being_written_on_a_full_disk_fails_alone() {
    let disk = SimDisk::new();
    let storage = Arc::new(disk.clone()) as Arc<dyn Storage>;
    let options = Options::default()
        .segment_size(1 << 20)
        .background_preallocation(false)
        .storage(storage);
    let store = Store::open(Path::new("/store"), options).expect("open");
    for n in 0..20 {
        store
            .append("gone", ExpectedVersion::Any, &[numbered_event(n, 48)])
            .expect("append");
    }
    store
        .delete_stream("gone", ExpectedVersion::Any, evstore::DeleteMode::Hard)
        .expect("delete");
    let segments = || store.log_info().segments.len();
    let before = segments();

    disk.set_full(true);
    assert_no_space(store.scavenge());
    assert_eq!(segments(), before, "nothing sealed");
    store.flush().expect("a flush is not the roll's failure");

    disk.set_full(false);
    let report = store.scavenge().expect("scavenge with room");
    assert_eq!(report.events_redacted, 20, "{report:?}");
    assert_eq!(segments(), before + 1);
    store
        .append("other", ExpectedVersion::NoStream, &[numbered_event(99, 8)])
        .expect("append after");
}
