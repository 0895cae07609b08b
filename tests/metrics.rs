//! `Store::metrics`: each counter moves when, and only when, the thing it
//! counts happens.
//!
//! - appends by durability, refusals (expected version, condition),
//!   idempotent retries, call latency counts;
//! - group commit: every command in exactly one group, bytes per group;
//! - back-pressure: a caller waiting for room in a full queue while the
//!   writer is stuck in a held `fdatasync`, seen waiting, then counted;
//! - fsync: one per lone durable append, the bytes each made durable, a
//!   failed sync counted as a write error and the store reported poisoned;
//! - segments: rollovers, sealed segments, index files written and repaired;
//! - subscribers: a stalled subscription's lag in positions and bytes, its
//!   wake-ups and deliveries; projections: position, lag, retries, failures;
//! - reads: calls, events, bytes, index lookups.

mod common;

use common::FaultyStorage;
use evstore::format::BATCH_HEADER_LEN;
use evstore::{
    AppendCondition, Commit, Direction, Durability, Error, EventData, ExpectedVersion, Filter,
    OnError, Options, ProjectionOptions, Query, Store,
};
use std::sync::atomic::Ordering;
use std::sync::{Arc, Mutex};
use std::time::Duration;

fn event(payload_len: usize) -> EventData {
    EventData::new("Noted", vec![7u8; payload_len])
}

fn open(dir: &std::path::Path) -> Store {
    Store::open(dir, Options::default()).unwrap()
}

/// Waits until `done` holds: the tests wait for states the store reaches by
/// itself, never for time to pass. The minute is only there so that a
/// store that never gets there fails the test instead of hanging it.
fn wait_until(mut done: impl FnMut() -> bool) {
    let deadline = std::time::Instant::now() + Duration::from_secs(60);
    while !done() {
        assert!(std::time::Instant::now() < deadline, "never got there");
        std::thread::yield_now();
    }
}

#[test]
fn appends_are_counted_by_durability_with_their_events_bytes_and_latency() {
    let dir = tempfile::tempdir().unwrap();
    let store = open(dir.path());
    let before = store.metrics();
    assert_eq!(before.appends.durable.commits, 0);

    store
        .append("a", ExpectedVersion::Any, &[event(100), event(100)])
        .unwrap();
    for _ in 0..2 {
        store
            .append_with_durability(
                "b",
                ExpectedVersion::Any,
                &[event(10)],
                Durability::Buffered,
            )
            .unwrap();
    }

    let m = store.metrics();
    let (durable, buffered) = (m.appends.durable, m.appends.buffered);
    assert_eq!((durable.commits, durable.events), (1, 2));
    assert_eq!((buffered.commits, buffered.events), (2, 2));
    // Each commit's bytes hold its payloads plus headers.
    assert!(durable.bytes > 200 + BATCH_HEADER_LEN as u64, "{durable:?}");
    assert!(
        buffered.bytes > 20 + 2 * BATCH_HEADER_LEN as u64,
        "{buffered:?}"
    );
    assert_eq!((durable.latency.count, buffered.latency.count), (1, 2));
    assert!(durable.latency.max > 0 && durable.latency.p50 <= durable.latency.max);
    assert_eq!(m.written_position, 4);
    store.flush().unwrap();
    assert_eq!(store.metrics().durable_position, 4);
    assert!(!m.poisoned);
}

#[test]
fn refusals_and_idempotent_retries_are_counted_and_write_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let store = open(dir.path());
    let first = event(8);
    store
        .append("s", ExpectedVersion::NoStream, std::slice::from_ref(&first))
        .unwrap();

    // The same event again: the original result, nothing written.
    store
        .append("s", ExpectedVersion::NoStream, std::slice::from_ref(&first))
        .unwrap();
    let stale = store.append("s", ExpectedVersion::NoStream, &[event(8)]);
    assert!(matches!(stale, Err(Error::WrongExpectedVersion { .. })));

    let claim = |stream: &str| {
        Commit::new()
            .append(
                stream.to_string(),
                ExpectedVersion::Any,
                [EventData::new("Claimed", &b""[..]).with_tags(["name:ada"])],
            )
            .condition(AppendCondition::new(Query::tagged(["name:ada"]), None))
    };
    store.commit(&claim("c1")).unwrap();
    let lost = store.commit(&claim("c2"));
    assert!(matches!(lost, Err(Error::AppendConditionFailed { .. })));

    let m = store.metrics();
    assert_eq!(m.appends.idempotent_retries, 1);
    assert_eq!(m.appends.wrong_expected_version, 1);
    assert_eq!(m.appends.condition_failed, 1);
    assert_eq!(m.appends.other_refusals, 0);
    // Two commits written; five calls answered.
    assert_eq!(m.appends.durable.commits, 2);
    assert_eq!(m.appends.durable.latency.count, 5);
    assert_eq!(m.written_position, 2);
}

#[test]
fn every_command_is_in_exactly_one_group_and_every_written_byte_in_one_sync() {
    let dir = tempfile::tempdir().unwrap();
    let store = open(dir.path());
    let threads = 4;
    let per_thread = 50;
    std::thread::scope(|scope| {
        for t in 0..threads {
            let store = &store;
            scope.spawn(move || {
                for _ in 0..per_thread {
                    store
                        .append(&format!("s-{t}"), ExpectedVersion::Any, &[event(64)])
                        .unwrap();
                }
            });
        }
    });
    let m = store.metrics();
    let commits = threads * per_thread;
    assert_eq!(m.appends.durable.commits, commits);
    let groups = m.group_commit.commands_per_group;
    assert_eq!(groups.sum, commits, "{groups:?}");
    assert!(groups.count >= 1 && groups.count <= commits);
    assert_eq!(m.group_commit.bytes_per_group.sum, m.appends.durable.bytes);
    // Every acknowledged byte was made durable by some sync; the syncs
    // also cover the durable marks written between groups.
    let syncs = m.sync.latency;
    assert_eq!(syncs.count, m.sync.bytes_per_sync.count);
    assert!(syncs.count >= 1);
    assert!(m.sync.bytes_per_sync.sum >= m.appends.durable.bytes);
    assert_eq!(
        (m.group_commit.queued_commands, m.group_commit.queued_bytes),
        (0, 0)
    );
}

#[test]
fn a_lone_durable_append_costs_one_sync_of_its_own_bytes() {
    let dir = tempfile::tempdir().unwrap();
    // The background flusher, which syncs whatever is written and not yet
    // durable, must not race the writer here.
    let options = Options::default().flush_interval(Duration::from_secs(3600));
    let store = Store::open(dir.path(), options).unwrap();
    store
        .append("s", ExpectedVersion::Any, &[event(10)])
        .unwrap();
    let before = store.metrics();
    store
        .append("s", ExpectedVersion::Any, &[event(500)])
        .unwrap();
    let after = store.metrics();
    assert_eq!(after.sync.latency.count, before.sync.latency.count + 1);
    let appended = after.appends.durable.bytes - before.appends.durable.bytes;
    let synced = after.sync.bytes_per_sync.sum - before.sync.bytes_per_sync.sum;
    // Its batch, plus the durable mark left after the previous sync.
    assert_eq!(synced, appended + BATCH_HEADER_LEN as u64);
    // A buffered append costs no sync of its own.
    store
        .append_with_durability("s", ExpectedVersion::Any, &[event(1)], Durability::Buffered)
        .unwrap();
    assert_eq!(store.metrics().sync.latency.count, after.sync.latency.count);
}

#[test]
fn a_caller_waiting_for_room_in_a_full_queue_is_seen_waiting_then_counted() {
    let dir = tempfile::tempdir().unwrap();
    let (storage, faults) = FaultyStorage::new();
    let options = Options::default()
        .storage(storage)
        .max_queue_bytes(1_000)
        .max_linger(None);
    let store = Store::open(dir.path(), options).unwrap();
    store
        .append("warm", ExpectedVersion::Any, &[event(1)])
        .unwrap();
    assert_eq!(store.metrics().group_commit.back_pressure.count, 0);

    faults.hold_log_syncs(true);
    std::thread::scope(|scope| {
        // Leads its group and is stuck in its sync.
        scope.spawn(|| {
            store
                .append("a", ExpectedVersion::Any, &[event(600)])
                .unwrap()
        });
        wait_until(|| faults.held_log_syncs.load(Ordering::SeqCst) == 1);
        // Queued behind it.
        scope.spawn(|| {
            store
                .append("b", ExpectedVersion::Any, &[event(600)])
                .unwrap()
        });
        wait_until(|| store.metrics().group_commit.queued_commands == 1);
        let queued = store.metrics().group_commit;
        assert!(queued.queued_bytes > 600, "{queued:?}");
        // No room for it: it waits.
        scope.spawn(|| {
            store
                .append("c", ExpectedVersion::Any, &[event(600)])
                .unwrap()
        });
        wait_until(|| store.metrics().group_commit.waiting_for_room == 1);
        faults.hold_log_syncs(false);
    });
    let m = store.metrics();
    assert_eq!(m.group_commit.back_pressure.count, 1);
    assert!(m.group_commit.back_pressure.max > 0);
    assert_eq!(m.group_commit.waiting_for_room, 0);
    assert_eq!(m.appends.durable.commits, 4);
}

#[test]
fn a_failed_sync_counts_as_a_write_error_and_reports_the_store_poisoned() {
    let dir = tempfile::tempdir().unwrap();
    let (storage, faults) = FaultyStorage::new();
    let store = Store::open(dir.path(), Options::default().storage(storage)).unwrap();
    store
        .append("s", ExpectedVersion::Any, &[event(1)])
        .unwrap();
    assert_eq!(store.metrics().sync.write_errors, 0);
    faults.set_log_sync_eio(true);
    let failed = store.append("s", ExpectedVersion::Any, &[event(1)]);
    assert!(
        matches!(failed, Err(Error::StorePoisoned { .. })),
        "{failed:?}"
    );
    let again = store.append("s", ExpectedVersion::Any, &[event(1)]);
    assert!(again.is_err());
    let m = store.metrics();
    assert!(m.poisoned);
    assert_eq!(m.sync.write_errors, 1);
    // The second commit was written, then not made durable: not
    // acknowledged, so not a commit; the third was refused before reaching
    // the writer.
    assert_eq!(m.appends.durable.commits, 1);
    assert_eq!(m.appends.other_refusals, 1, "{:?}", m.appends);
}

#[test]
fn rollovers_sealed_segments_and_index_files_are_counted() {
    let dir = tempfile::tempdir().unwrap();
    let options = || {
        Options::default()
            .segment_size(16 << 10)
            .background_index_writes(false)
    };
    let store = Store::open(dir.path(), options()).unwrap();
    let fresh = store.metrics().segments;
    assert_eq!(
        (fresh.segments, fresh.sealed, fresh.rollovers.count),
        (1, 0, 0)
    );
    for _ in 0..60 {
        store
            .append("s", ExpectedVersion::Any, &[event(900)])
            .unwrap();
    }
    let m = store.metrics().segments;
    assert!(m.rollovers.count >= 2, "{m:?}");
    assert_eq!(m.sealed, m.rollovers.count);
    assert_eq!(m.segments, m.sealed + 1);
    assert_eq!(m.index_files_written, m.sealed);
    assert!(m.preallocation_waits.count == m.rollovers.count);
    assert!(m.rollovers.sum >= m.preallocation_waits.sum);
    assert_eq!(m.index_files_repaired, 0);
    store.close().unwrap();

    // Damage the body of an index file: the first read that uses it
    // rebuilds it.
    let mut index_files: Vec<_> = std::fs::read_dir(dir.path().join(evstore::SEGMENTS_DIR))
        .unwrap()
        .map(|entry| entry.unwrap().path())
        .filter(|path| path.extension().is_some_and(|e| e == "idx"))
        .collect();
    index_files.sort();
    let damaged = index_files.first().expect("an index file");
    let mut bytes = std::fs::read(damaged).unwrap();
    *bytes.last_mut().unwrap() ^= 0x40;
    std::fs::write(damaged, bytes).unwrap();
    let store = Store::open(dir.path(), options()).unwrap();
    assert_eq!(
        store
            .read_stream("s", 0, Direction::Forward, 1000)
            .unwrap()
            .len(),
        60
    );
    assert_eq!(store.metrics().segments.index_files_repaired, 1);
}

#[test]
fn a_stalled_subscriber_lags_by_the_positions_and_bytes_it_has_not_read() {
    let dir = tempfile::tempdir().unwrap();
    let store = open(dir.path());
    let mut subscription = store.subscribe_all(0, Filter::all());
    let events: Vec<EventData> = (0..10).map(|_| event(100)).collect();
    store.append("s", ExpectedVersion::Any, &events).unwrap();

    let m = store.metrics();
    let s = &m.subscribers[0];
    assert_eq!(s.source, "$all");
    assert_eq!((s.position, s.lag, s.events), (0, 10, 0));
    // The ten records, without their batch's header.
    assert_eq!(
        s.lag_bytes,
        m.appends.durable.bytes - BATCH_HEADER_LEN as u64
    );

    for _ in 0..4 {
        subscription.next_event().unwrap().unwrap();
    }
    let s = store.metrics().subscribers[0].clone();
    assert_eq!((s.position, s.lag, s.events), (4, 6, 4));
    assert!(s.lag_bytes > 0 && s.lag_bytes < m.subscribers[0].lag_bytes);
    assert_eq!(s.lag_bytes * 10, m.subscribers[0].lag_bytes * 6);

    while subscription.try_next().unwrap().is_some() {}
    let caught_up = store.metrics().subscribers[0].clone();
    assert_eq!((caught_up.lag, caught_up.lag_bytes), (0, 0));
    assert_eq!(caught_up.wakeups, 0);
    // Waiting for more wakes it once the wait ends.
    assert!(subscription.next_timeout(Duration::ZERO).unwrap().is_none());
    assert_eq!(store.metrics().subscribers[0].wakeups, 1);

    // A stream subscription is listed by its stream; dropped ones go.
    let stream_sub = store.subscribe_stream("s", 0);
    let m = store.metrics();
    assert_eq!(m.subscribers.len(), 2);
    assert_eq!(m.subscribers[1].source, "s");
    drop(subscription);
    drop(stream_sub);
    assert!(store.metrics().subscribers.is_empty());
}

#[test]
fn a_projection_reports_its_position_lag_retries_and_failures() {
    let dir = tempfile::tempdir().unwrap();
    let store = open(dir.path());
    for _ in 0..5 {
        store
            .append("s", ExpectedVersion::Any, &[event(10)])
            .unwrap();
    }
    let failures_left = Arc::new(Mutex::new(2));
    let left = Arc::clone(&failures_left);
    let projection = store
        .run_projection(
            "counter",
            ProjectionOptions::default().on_error(OnError::Retry {
                first_delay: Duration::ZERO,
                max_delay: Duration::ZERO,
                max_attempts: None,
            }),
            move |_| {
                let mut left = left.lock().unwrap();
                if *left > 0 {
                    *left -= 1;
                    return Err("not yet".into());
                }
                Ok(())
            },
        )
        .unwrap();
    wait_until(|| store.metrics().projections[0].position == 5);
    assert_eq!(projection.position(), 5);
    let m = store.metrics();
    let p = &m.projections[0];
    assert_eq!(p.name, "counter");
    assert_eq!((p.position, p.lag, p.lag_bytes), (5, 0, 0));
    assert_eq!((p.events_handled, p.retries, p.failures), (5, 2, 2));
    assert!(!p.finished);
    // Its own subscription is listed too.
    assert_eq!(m.subscribers.len(), 1);
    let stats = projection.stop().unwrap();
    assert_eq!(stats.retries, 2);
    assert!(store.metrics().projections.is_empty());
}

#[test]
fn reads_count_calls_events_bytes_and_index_lookups() {
    let dir = tempfile::tempdir().unwrap();
    let store = open(dir.path());
    store
        .append("s", ExpectedVersion::Any, &[event(30), event(30)])
        .unwrap();
    store
        .append("t", ExpectedVersion::Any, &[event(5)])
        .unwrap();
    assert_eq!(store.metrics().reads.reads, 0);

    assert_eq!(
        store
            .read_stream("s", 0, Direction::Forward, 10)
            .unwrap()
            .len(),
        2
    );
    let m = store.metrics().reads;
    assert_eq!((m.reads, m.events, m.bytes, m.index_lookups), (1, 2, 60, 1));

    assert_eq!(store.read_all(0, Direction::Forward, 10).unwrap().len(), 3);
    let m = store.metrics().reads;
    assert_eq!(
        (m.reads, m.events, m.bytes, m.index_lookups),
        (2, 5, 125, 1)
    );

    let none = store
        .read_stream("nobody", 0, Direction::Forward, 10)
        .unwrap();
    assert!(none.is_empty());
    let m = store.metrics().reads;
    assert_eq!((m.reads, m.events, m.index_lookups), (3, 5, 2));
}

#[test]
fn checkpoint_lags_are_the_same_from_the_writer_and_from_a_fresh_read_only_open() {
    let dir = tempfile::tempdir().unwrap();
    let options = || {
        Options::default()
            .segment_size(16 << 10)
            .background_index_writes(false)
    };
    let store = Store::open(dir.path(), options()).unwrap();
    for _ in 0..60 {
        store
            .append("s", ExpectedVersion::Any, &[event(900)])
            .unwrap();
    }
    assert!(store.metrics().segments.sealed >= 2);
    store.save_checkpoint("early", 3).unwrap();
    store.save_checkpoint("late", 50).unwrap();
    store.save_checkpoint("done", 60).unwrap();
    let from_writer = store.checkpoint_lags().unwrap();
    store.close().unwrap();

    let names: Vec<_> = from_writer.iter().map(|c| c.name.as_str()).collect();
    assert_eq!(names, ["done", "early", "late"]);
    let lag = |name: &str| from_writer.iter().find(|c| c.name == name).unwrap().clone();
    assert_eq!(
        (lag("early").lag, lag("late").lag, lag("done").lag),
        (57, 10, 0)
    );
    // Each event holds 900 payload bytes; the early checkpoint's lag spans
    // sealed segments, whose index files a fresh open has not checked yet.
    assert!(lag("late").lag_bytes >= 10 * 900 && lag("late").lag_bytes < 11 * 1000);
    assert!(lag("early").lag_bytes >= 57 * 900);
    assert_eq!(lag("done").lag_bytes, 0);

    let reader = Store::open_read_only(dir.path(), Options::default()).unwrap();
    assert_eq!(reader.checkpoint_lags().unwrap(), from_writer);
}

#[test]
fn commits_acknowledged_across_rollovers_in_mid_group_are_each_counted_once() {
    let dir = tempfile::tempdir().unwrap();
    let options = Options::default().segment_size(16 << 10);
    let store = Store::open(dir.path(), options).unwrap();
    let threads = 8;
    let per_thread = 40;
    std::thread::scope(|scope| {
        for t in 0..threads {
            let store = &store;
            scope.spawn(move || {
                for _ in 0..per_thread {
                    store
                        .append(&format!("s-{t}"), ExpectedVersion::Any, &[event(700)])
                        .unwrap();
                }
            });
        }
    });
    let m = store.metrics();
    assert!(m.segments.rollovers.count >= 10, "{:?}", m.segments);
    assert_eq!(m.appends.durable.commits, threads * per_thread);
    assert_eq!(m.appends.durable.events, threads * per_thread);
    assert_eq!(m.group_commit.commands_per_group.sum, threads * per_thread);
    assert_eq!(m.group_commit.bytes_per_group.sum, m.appends.durable.bytes);
}

#[test]
fn racing_retries_of_one_append_are_one_commit_and_each_command_one_group_entry() {
    let dir = tempfile::tempdir().unwrap();
    let store = open(dir.path());
    let once = event(10);
    let threads = 8;
    std::thread::scope(|scope| {
        for _ in 0..threads {
            let (store, once) = (&store, &once);
            scope.spawn(move || {
                store
                    .append("s", ExpectedVersion::Any, std::slice::from_ref(once))
                    .unwrap()
            });
        }
    });
    let m = store.metrics();
    assert_eq!(m.appends.durable.commits, 1);
    assert_eq!(m.appends.idempotent_retries, threads - 1);
    // A retry met in the same group as its original waits for the next
    // group: it counts there only.
    assert_eq!(m.group_commit.commands_per_group.sum, threads);
    assert_eq!(m.written_position, 1);
}

#[test]
fn a_projection_whose_handler_panics_is_reported_finished() {
    let dir = tempfile::tempdir().unwrap();
    let store = open(dir.path());
    store
        .append("s", ExpectedVersion::Any, &[event(1)])
        .unwrap();
    let projection = store
        .run_projection("fragile", ProjectionOptions::default(), |_| {
            panic!("the handler gives up")
        })
        .unwrap();
    wait_until(|| store.metrics().projections[0].finished);
    let p = store.metrics().projections[0].clone();
    assert_eq!((p.position, p.lag, p.events_handled), (0, 1, 0));
    assert!(projection.join().is_err());
}
