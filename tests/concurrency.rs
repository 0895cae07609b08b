//! Many appenders at once: what they are told must be what the log holds.
//!
//! - `stress_*`: 32 threads x 2,000 appends over 100 streams with mixed
//!   expected versions and durabilities; the log is exactly the acknowledged
//!   appends, before and after reopen.
//! - `optimistic_concurrency_race_*`: racing `Exact(v)` appends on one stream,
//!   exactly one winner per version.
//! - `rollover_under_concurrent_load_with_tiny_segments`: hundreds of 4 KiB
//!   segments, reads across every boundary in both directions.
//! - `back_pressure_with_a_small_queue_completes`: a queue far smaller than
//!   the load (and single appends larger than the queue) never deadlocks.
//! - `a_linger_too_long_for_a_deadline_*`: `max_linger(Duration::MAX)`
//!   lingers until a group is full, without overflowing a deadline.

mod common;

use common::{assert_store_holds_acked, expected_log_of_acked, AckedAppend, TestRng};
use evstore::{
    Direction, Durability, Error, EventData, ExpectedVersion, Options, RecordedEvent, Store, Uuid,
};
use std::collections::{BTreeMap, HashMap};
use std::sync::mpsc;
use std::thread;
use std::time::Duration;

/// The other durability mode.
fn other_mode(mode: Durability) -> Durability {
    match mode {
        Durability::Sync => Durability::Buffered,
        Durability::Buffered => Durability::Sync,
    }
}

/// An event that says who wrote it: the payload starts with
/// `(thread, seq, index)` as little-endian u32s, then a filler of varied
/// length; the id encodes the same triple.
fn identifiable_event(thread: u32, seq: u32, index: u32, filler_len: usize) -> EventData {
    let mut payload = Vec::with_capacity(12 + filler_len);
    payload.extend_from_slice(&thread.to_le_bytes());
    payload.extend_from_slice(&seq.to_le_bytes());
    payload.extend_from_slice(&index.to_le_bytes());
    payload.extend((0..filler_len).map(|k| (k as u32 ^ thread ^ seq.rotate_left(3)) as u8));
    let id =
        Uuid::from_u128((u128::from(thread) << 96) | (u128::from(seq) << 32) | u128::from(index));
    let event = EventData::new(format!("Stress{index}"), payload).with_id(id);
    if seq.is_multiple_of(5) {
        event.with_metadata(format!("{{\"t\":{thread},\"s\":{seq}}}").into_bytes())
    } else {
        event
    }
}

/// What one stress thread saw.
struct StressOutcome {
    /// Acknowledged appends, in acknowledgement order.
    acked: Vec<AckedAppend>,
    /// Appends refused with `WrongExpectedVersion`.
    rejected: usize,
}

const STRESS_THREADS: u32 = 32;
const STRESS_APPENDS_PER_THREAD: u32 = 2_000;
const STRESS_STREAMS: u64 = 100;

fn stress_thread(store: Store, thread: u32, other: Durability) -> StressOutcome {
    let mut rng = TestRng::new(u64::from(thread) + 1);
    // The last version of each stream this thread knows of; often stale.
    let mut known: HashMap<u64, Option<u64>> = HashMap::new();
    let mut acked = Vec::new();
    let mut rejected = 0;
    for seq in 0..STRESS_APPENDS_PER_THREAD {
        let s = rng.below(STRESS_STREAMS);
        let stream = format!("stress-{s}");
        let known_version = known.get(&s).copied().flatten();
        let expected = match rng.below(4) {
            0 | 1 => known_version.map_or(ExpectedVersion::NoStream, ExpectedVersion::Exact),
            2 => ExpectedVersion::Any,
            _ => ExpectedVersion::NoStream,
        };
        let count = 1 + rng.below(3) as u32;
        let events: Vec<EventData> = (0..count)
            .map(|i| identifiable_event(thread, seq, i, rng.below(48) as usize))
            .collect();
        let result = if rng.below(4) == 0 {
            store.append_with_durability(&stream, expected, &events, other)
        } else {
            store.append(&stream, expected, &events)
        };
        match result {
            Ok(result) => {
                match expected {
                    ExpectedVersion::Exact(v) => assert_eq!(result.first_version, v + 1),
                    ExpectedVersion::NoStream => assert_eq!(result.first_version, 0),
                    _ => {}
                }
                assert_eq!(
                    result.last_version - result.first_version + 1,
                    u64::from(count)
                );
                known.insert(s, Some(result.last_version));
                acked.push(AckedAppend {
                    stream,
                    result,
                    events,
                });
            }
            Err(Error::WrongExpectedVersion {
                stream: refused_stream,
                expected: refused_expected,
                actual,
            }) => {
                assert_eq!(refused_stream, stream);
                assert_eq!(refused_expected, expected);
                assert_ne!(expected, ExpectedVersion::Any, "Any can never be refused");
                assert!(
                    !expected.matches(actual),
                    "refused {expected:?} although the stream was at {actual:?}"
                );
                if let (ExpectedVersion::Exact(v), Some(a)) = (expected, actual) {
                    assert!(a > v, "a stream went back from {v} to {a}");
                }
                known.insert(s, actual);
                rejected += 1;
            }
            Err(other) => panic!("thread {thread} append {seq}: unexpected error {other:?}"),
        }
    }
    StressOutcome { acked, rejected }
}

fn stress(mode: Durability) {
    let dir = tempfile::tempdir().expect("tempdir");
    let store = Store::open(dir.path(), Options::default().durability(mode)).expect("open");
    let handles: Vec<_> = (0..STRESS_THREADS)
        .map(|t| {
            let store = store.clone();
            thread::spawn(move || stress_thread(store, t, other_mode(mode)))
        })
        .collect();
    let outcomes: Vec<StressOutcome> = handles
        .into_iter()
        .map(|h| h.join().expect("stress thread panicked"))
        .collect();

    for (thread, outcome) in outcomes.iter().enumerate() {
        for pair in outcome.acked.windows(2) {
            assert!(
                pair[0].result.last_position < pair[1].result.first_position,
                "thread {thread}: acknowledged appends out of position order: {:?} then {:?}",
                pair[0].result,
                pair[1].result
            );
        }
    }
    let rejected: usize = outcomes.iter().map(|o| o.rejected).sum();
    let acked: Vec<AckedAppend> = outcomes.into_iter().flat_map(|o| o.acked).collect();
    assert!(rejected > 0, "the workload is meant to provoke refusals");
    let total_events: u64 = acked.iter().map(|a| a.events.len() as u64).sum();

    // Appends of the other durability only become visible (Sync store) or
    // durable (Buffered store) with a flush.
    store.flush().expect("flush");
    assert_store_holds_acked(&store, &acked);
    store.close().expect("close");

    let store = Store::open(dir.path(), Options::default().durability(mode)).expect("reopen");
    assert_eq!(store.recovery_stats().events, total_events);
    assert_eq!(store.recovery_stats().torn_bytes, 0);
    assert_store_holds_acked(&store, &acked);

    // The store carries on where it stopped.
    let last = store
        .stream_version("stress-0")
        .unwrap()
        .expect("stream exists");
    let next = store
        .append(
            "stress-0",
            ExpectedVersion::Exact(last),
            &[EventData::new("After", &b"reopen"[..])],
        )
        .expect("append after reopen");
    assert_eq!(next.first_version, last + 1);
    assert_eq!(next.first_position, total_events);
}

#[test]
fn stress_sync_store_with_mixed_expected_versions() {
    stress(Durability::Sync);
}

#[test]
fn stress_buffered_store_with_mixed_expected_versions() {
    stress(Durability::Buffered);
}

const RACE_THREADS: u32 = 8;
const RACE_LAST_VERSION: u64 = 200;

/// `RACE_THREADS` threads race `Exact(current)` appends until the stream
/// reaches `RACE_LAST_VERSION`.
fn optimistic_race(mode: Durability) {
    let dir = tempfile::tempdir().expect("tempdir");
    let store = Store::open(dir.path(), Options::default().durability(mode)).expect("open");
    let stream = "race";
    store
        .append(
            stream,
            ExpectedVersion::NoStream,
            &[EventData::new("Start", &b""[..])],
        )
        .expect("first append");

    let handles: Vec<_> = (0..RACE_THREADS)
        .map(|t| {
            let store = store.clone();
            thread::spawn(move || {
                let mut wins = Vec::new();
                let mut losses = 0usize;
                loop {
                    let current = store
                        .stream_version(stream)
                        .unwrap()
                        .expect("stream exists");
                    if current >= RACE_LAST_VERSION {
                        return (wins, losses);
                    }
                    let mut payload = t.to_le_bytes().to_vec();
                    payload.extend_from_slice(&current.to_le_bytes());
                    let event = EventData::new("Won", payload);
                    match store.append(stream, ExpectedVersion::Exact(current), &[event]) {
                        Ok(result) => {
                            assert_eq!(result.first_version, current + 1);
                            assert_eq!(result.last_version, current + 1);
                            wins.push((current + 1, result.first_position));
                        }
                        Err(Error::WrongExpectedVersion {
                            expected, actual, ..
                        }) => {
                            assert_eq!(expected, ExpectedVersion::Exact(current));
                            let actual = actual.expect("the stream exists");
                            assert!(
                                actual > current && actual <= RACE_LAST_VERSION,
                                "expected {current} lost against version {actual}"
                            );
                            losses += 1;
                        }
                        Err(other) => panic!("unexpected error {other:?}"),
                    }
                }
            })
        })
        .collect();

    let mut winner_of_version: BTreeMap<u64, (u32, u64)> = BTreeMap::new();
    let mut losses = 0;
    for (t, handle) in handles.into_iter().enumerate() {
        let (wins, lost) = handle.join().expect("race thread panicked");
        losses += lost;
        for (version, position) in wins {
            let previous = winner_of_version.insert(version, (t as u32, position));
            assert!(
                previous.is_none(),
                "version {version} was won twice: by {previous:?} and by thread {t}"
            );
        }
    }
    assert_eq!(
        winner_of_version.keys().copied().collect::<Vec<_>>(),
        (1..=RACE_LAST_VERSION).collect::<Vec<_>>(),
        "exactly one winner for every version"
    );

    store.flush().expect("flush");
    let check = |store: &Store| {
        let events = store
            .read_stream(stream, 0, Direction::Forward, usize::MAX)
            .expect("read_stream");
        assert_eq!(events.len() as u64, RACE_LAST_VERSION + 1);
        for (version, event) in events.iter().enumerate().skip(1) {
            let version = version as u64;
            let (thread, position) = winner_of_version[&version];
            assert_eq!(event.version, version);
            assert_eq!(event.position, position, "version {version}");
            assert_eq!(position, version, "one stream: positions equal versions");
            let mut payload = thread.to_le_bytes().to_vec();
            payload.extend_from_slice(&(version - 1).to_le_bytes());
            assert_eq!(
                &event.payload[..],
                &payload[..],
                "winner of version {version}"
            );
        }
        assert_eq!(store.last_position(), Some(RACE_LAST_VERSION));
    };
    check(&store);
    // Losers are reported, not written.
    eprintln!("race ({mode:?}): {losses} refused appends");
    store.close().expect("close");
    let store = Store::open(dir.path(), Options::default().durability(mode)).expect("reopen");
    check(&store);
}

#[test]
fn optimistic_concurrency_race_sync() {
    optimistic_race(Durability::Sync);
}

#[test]
fn optimistic_concurrency_race_buffered() {
    optimistic_race(Durability::Buffered);
}

/// Asserts that every short read of the log, in both directions, from every
/// position returns the right slice of `all`.
fn assert_windowed_reads(store: &Store, all: &[RecordedEvent]) {
    const WINDOW: usize = 3;
    for p in 0..all.len() {
        let forward = store
            .read_all(p as u64, Direction::Forward, WINDOW)
            .expect("read_all forward");
        let want = &all[p..(p + WINDOW).min(all.len())];
        assert_eq!(forward, want, "read_all forward from {p}");
        let backward = store
            .read_all(p as u64, Direction::Backward, WINDOW)
            .expect("read_all backward");
        let want: Vec<_> = all[(p + 1).saturating_sub(WINDOW)..=p]
            .iter()
            .rev()
            .cloned()
            .collect();
        assert_eq!(backward, want, "read_all backward from {p}");
    }
    let mut streams: BTreeMap<&str, Vec<&RecordedEvent>> = BTreeMap::new();
    for event in all {
        streams.entry(&*event.stream).or_default().push(event);
    }
    for (stream, events) in streams {
        for v in 0..events.len() {
            let forward = store
                .read_stream(stream, v as u64, Direction::Forward, 2)
                .expect("read_stream forward");
            let want: Vec<RecordedEvent> = events[v..(v + 2).min(events.len())]
                .iter()
                .map(|e| (*e).clone())
                .collect();
            assert_eq!(forward, want, "read_stream {stream} forward from {v}");
            let backward = store
                .read_stream(stream, v as u64, Direction::Backward, 2)
                .expect("read_stream backward");
            let want: Vec<RecordedEvent> = events[v.saturating_sub(1)..=v]
                .iter()
                .rev()
                .map(|e| (*e).clone())
                .collect();
            assert_eq!(backward, want, "read_stream {stream} backward from {v}");
        }
    }
}

#[test]
fn rollover_under_concurrent_load_with_tiny_segments() {
    const THREADS: u32 = 8;
    const APPENDS: u32 = 60;
    let dir = tempfile::tempdir().expect("tempdir");
    let options = || Options::default().segment_size(4096);
    let store = Store::open(dir.path(), options()).expect("open");
    let handles: Vec<_> = (0..THREADS)
        .map(|t| {
            let store = store.clone();
            thread::spawn(move || {
                let mut rng = TestRng::new(1000 + u64::from(t));
                let mut acked = Vec::new();
                for seq in 0..APPENDS {
                    let stream = format!("roll-{}", t % 4);
                    let count = if rng.below(4) == 0 { 2 } else { 1 };
                    let events: Vec<EventData> = (0..count)
                        .map(|i| {
                            // Payloads of 1..=1500 bytes in all.
                            identifiable_event(t, seq, i, rng.below(1489) as usize)
                        })
                        .collect();
                    let durability = if rng.below(3) == 0 {
                        Durability::Buffered
                    } else {
                        Durability::Sync
                    };
                    let result = store
                        .append_with_durability(&stream, ExpectedVersion::Any, &events, durability)
                        .unwrap_or_else(|e| panic!("thread {t} append {seq}: {e:?}"));
                    acked.push(AckedAppend {
                        stream,
                        result,
                        events,
                    });
                }
                acked
            })
        })
        .collect();
    let acked: Vec<AckedAppend> = handles
        .into_iter()
        .flat_map(|h| h.join().expect("appender panicked"))
        .collect();
    let total: u64 = acked.iter().map(|a| a.events.len() as u64).sum();

    store.flush().expect("flush");
    assert_store_holds_acked(&store, &acked);
    let all = store
        .read_all(0, Direction::Forward, usize::MAX)
        .expect("read_all");
    assert_windowed_reads(&store, &all);
    store.close().expect("close");

    let store = Store::open(dir.path(), options()).expect("reopen");
    let stats = store.recovery_stats();
    assert!(
        stats.segments > 10,
        "expected many segments, recovery found {}",
        stats.segments
    );
    assert_eq!(stats.segments, common::segment_files(dir.path()).len());
    assert_eq!(stats.events, total);
    assert_store_holds_acked(&store, &acked);
    let reread = store
        .read_all(0, Direction::Forward, usize::MAX)
        .expect("read_all after reopen");
    assert_eq!(reread, all);
    assert_windowed_reads(&store, &all);
}

#[test]
fn back_pressure_with_a_small_queue_completes() {
    const THREADS: u32 = 16;
    const APPENDS: u32 = 64;
    let dir = tempfile::tempdir().expect("tempdir");
    let path = dir.path().to_path_buf();
    let (done, finished) = mpsc::channel();
    // The workload runs on its own thread so that a deadlock fails the test
    // with a message instead of hanging it forever.
    let workload = thread::spawn(move || {
        let store =
            Store::open(&path, Options::default().max_queue_bytes(64 * 1024)).expect("open");
        let handles: Vec<_> = (0..THREADS)
            .map(|t| {
                let store = store.clone();
                thread::spawn(move || {
                    let mut acked = Vec::new();
                    for seq in 0..APPENDS {
                        // Thread 0 now and then sends a single append larger
                        // than the whole queue; it must still go through.
                        let filler = if t == 0 && seq.is_multiple_of(16) {
                            96 * 1024
                        } else {
                            4096 - 12
                        };
                        let events = vec![identifiable_event(t, seq, 0, filler)];
                        let stream = format!("bp-{}", t % 5);
                        let durability = if seq.is_multiple_of(4) {
                            Durability::Buffered
                        } else {
                            Durability::Sync
                        };
                        let result = store
                            .append_with_durability(
                                &stream,
                                ExpectedVersion::Any,
                                &events,
                                durability,
                            )
                            .unwrap_or_else(|e| panic!("thread {t} append {seq}: {e:?}"));
                        acked.push(AckedAppend {
                            stream,
                            result,
                            events,
                        });
                    }
                    acked
                })
            })
            .collect();
        let acked: Vec<AckedAppend> = handles
            .into_iter()
            .flat_map(|h| h.join().expect("appender panicked"))
            .collect();
        store.flush().expect("flush");
        let _ = done.send(());
        (store, acked)
    });
    // A generous guard, not a timing assertion: the workload takes seconds.
    if let Err(mpsc::RecvTimeoutError::Timeout) = finished.recv_timeout(Duration::from_secs(600)) {
        panic!("appenders did not finish within 10 minutes: back-pressure deadlock?");
    }
    let (store, acked) = workload.join().expect("workload panicked");
    assert_eq!(
        expected_log_of_acked(&acked).len(),
        (THREADS * APPENDS) as usize
    );
    assert_store_holds_acked(&store, &acked);
    store.close().expect("close");
    let store = Store::open(dir.path(), Options::default()).expect("reopen");
    assert_store_holds_acked(&store, &acked);
}

#[test]
fn a_linger_too_long_for_a_deadline_still_writes_full_groups() {
    let dir = tempfile::tempdir().expect("tempdir");
    let path = dir.path().to_path_buf();
    let (done, finished) = mpsc::channel();
    // With no deadline the leader lingers until `max_batch_bytes` are
    // queued; one byte makes every append a full group on its own. On a
    // thread of its own, so that a wait that never ends fails the test.
    let workload = thread::spawn(move || {
        let options = Options::default()
            .max_linger(Some(Duration::MAX))
            .max_batch_bytes(1);
        let store = Store::open(&path, options).expect("open");
        let mut acked = Vec::new();
        for seq in 0..5 {
            let events = vec![identifiable_event(0, seq, 0, 40)];
            let result = store
                .append("lingering", ExpectedVersion::Any, &events)
                .unwrap_or_else(|e| panic!("append {seq}: {e:?}"));
            acked.push(AckedAppend {
                stream: "lingering".into(),
                result,
                events,
            });
        }
        let _ = done.send(());
        (store, acked)
    });
    // A guard against a hang, not a timing assertion.
    if let Err(mpsc::RecvTimeoutError::Timeout) = finished.recv_timeout(Duration::from_secs(120)) {
        panic!("appends with max_linger(Duration::MAX) did not finish");
    }
    let (store, acked) = workload.join().expect("the group-commit leader panicked");
    assert_eq!(acked.last().map(|a| a.result.last_version), Some(4));
    assert_store_holds_acked(&store, &acked);
    // A flush ends the linger: close (which flushes) returns.
    let (closed, close_done) = mpsc::channel();
    let closer = thread::spawn(move || {
        let result = store.close();
        let _ = closed.send(());
        result
    });
    if let Err(mpsc::RecvTimeoutError::Timeout) = close_done.recv_timeout(Duration::from_secs(120))
    {
        panic!("close with max_linger(Duration::MAX) did not finish");
    }
    closer.join().expect("close panicked").expect("close");
    let store = Store::open(dir.path(), Options::default()).expect("reopen");
    assert_store_holds_acked(&store, &acked);
}

/// A call refused before its command reaches the queue (here an invalid
/// event type), while other threads keep groups going: every later call
/// of the same thread is told its own result, never the one before's, and
/// a commit that loses its condition is told so.
#[test]
fn a_refused_call_leaves_nothing_behind_for_the_threads_next_calls() {
    let dir = tempfile::tempdir().unwrap();
    let store = Store::open(dir.path(), Options::default()).unwrap();
    let stop = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
    let background: Vec<_> = (0..2)
        .map(|t| {
            let (store, stop) = (store.clone(), stop.clone());
            thread::spawn(move || {
                while !stop.load(std::sync::atomic::Ordering::Relaxed) {
                    store
                        .append(
                            &format!("background-{t}"),
                            ExpectedVersion::Any,
                            &[EventData::new("B", &b"x"[..])],
                        )
                        .unwrap();
                }
            })
        })
        .collect();
    // The others are appending before this thread starts.
    while store.last_position().is_none_or(|p| p < 20) {
        thread::yield_now();
    }
    for round in 0..5u64 {
        let refused = store.append(
            "mine",
            ExpectedVersion::Any,
            &[EventData::new("$reserved", &b""[..])],
        );
        assert!(
            matches!(refused, Err(Error::InvalidEventType { .. })),
            "{refused:?}"
        );
        for i in 0..10u64 {
            let version = round * 10 + i;
            let told = store
                .append(
                    "mine",
                    version
                        .checked_sub(1)
                        .map_or(ExpectedVersion::NoStream, ExpectedVersion::Exact),
                    &[EventData::new("Mine", version.to_le_bytes().to_vec())],
                )
                .unwrap_or_else(|e| panic!("append {version}: {e:?}"));
            let read = store
                .read_stream("mine", version, Direction::Forward, 1)
                .unwrap();
            assert_eq!(
                (told.first_version, told.first_position),
                (version, read[0].position),
                "append {version}"
            );
        }
    }
    // Two claims on one tag from this thread: the second is told it lost.
    let claim = |n: u8| {
        store.commit(
            &evstore::Commit::new()
                .append(
                    format!("claim-{n}"),
                    ExpectedVersion::NoStream,
                    vec![EventData::new("Claimed", vec![n]).with_tags(["name:ada"])],
                )
                .condition(evstore::AppendCondition {
                    fail_if_events_match: evstore::Query::tagged(["name:ada"]),
                    after: None,
                }),
        )
    };
    let _ = store.append(
        "mine",
        ExpectedVersion::Any,
        &[EventData::new("$x", &b""[..])],
    );
    assert!(claim(1).is_ok());
    assert!(matches!(claim(2), Err(Error::AppendConditionFailed { .. })));
    stop.store(true, std::sync::atomic::Ordering::Relaxed);
    for handle in background {
        handle.join().unwrap();
    }
}
