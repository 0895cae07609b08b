//! The async write API (cargo feature `async`): `append_async`,
//! `commit_async` and `flush_async`.
//!
//! - `futures_give_the_results_*`: the same results and errors as the
//!   blocking calls.
//! - `a_current_thread_runtime_keeps_running_*`: 1,000 appends in flight on
//!   a single-threaded runtime while every `fdatasync` is held, with a queue
//!   too small for them: a timer task still runs (it is the one that
//!   releases the disk), so no append ever blocked the executor.
//! - `a_future_dropped_once_queued_*`, `a_future_dropped_before_*`: what
//!   cancellation means.
//!
//! A test that hangs is failed by [`within_a_minute`], never by a timing
//! assertion.

#![cfg(feature = "async")]

mod common;

use common::FaultyStorage;
use evstore::{
    AppendCondition, Commit, Direction, Error, EventData, ExpectedVersion, Options, Query, Store,
};
use futures_util::FutureExt;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{mpsc, Arc};
use std::time::Duration;

fn event(len: usize) -> EventData {
    EventData::new("Noted", vec![3u8; len])
}

/// Runs `test` on a thread of its own and fails if it has not finished
/// within a minute: a lost wake-up fails instead of hanging.
fn within_a_minute(test: impl FnOnce() + Send + 'static) {
    let (done, finished) = mpsc::channel();
    let thread = std::thread::spawn(move || {
        test();
        let _ = done.send(());
    });
    match finished.recv_timeout(Duration::from_secs(60)) {
        Ok(()) => thread.join().unwrap(),
        Err(mpsc::RecvTimeoutError::Disconnected) => {
            // The test panicked: report its panic.
            if let Err(panic) = thread.join() {
                std::panic::resume_unwind(panic);
            }
        }
        Err(mpsc::RecvTimeoutError::Timeout) => panic!("the test hung"),
    }
}

fn current_thread_runtime() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_current_thread()
        .enable_time()
        .build()
        .unwrap()
}

#[test]
fn futures_give_the_results_and_errors_of_the_blocking_calls() {
    let dir = tempfile::tempdir().unwrap();
    let store = Store::open(dir.path(), Options::default()).unwrap();
    current_thread_runtime().block_on(async {
        let first = store
            .append_async("s", ExpectedVersion::NoStream, &[event(5), event(6)])
            .await
            .unwrap();
        assert_eq!((first.first_version, first.last_version), (0, 1));
        let stale = store
            .append_async("s", ExpectedVersion::Exact(0), &[event(1)])
            .await;
        assert!(matches!(
            stale,
            Err(Error::WrongExpectedVersion {
                actual: Some(1),
                ..
            })
        ));
        let invalid = store
            .append_async("", ExpectedVersion::Any, &[event(1)])
            .await;
        assert!(
            matches!(invalid, Err(Error::InvalidStreamName { .. })),
            "{invalid:?}"
        );

        let claim = |stream: &str| {
            Commit::new()
                .append(
                    stream.to_string(),
                    ExpectedVersion::NoStream,
                    [EventData::new("Claimed", &b""[..]).with_tags(["name:ada"])],
                )
                .condition(AppendCondition::new(Query::tagged(["name:ada"]), None))
        };
        let won = store.commit_async(&claim("c1")).await.unwrap();
        assert_eq!(won.first_position, 2);
        let lost = store.commit_async(&claim("c2")).await;
        assert!(matches!(
            lost,
            Err(Error::AppendConditionFailed { position: 2 })
        ));
        store.flush_async().await.unwrap();
    });
    let events = store.read_all(0, Direction::Forward, 10).unwrap();
    assert_eq!(events.len(), 3);
    let m = store.metrics();
    assert_eq!(m.appends.durable.commits, 2);
    assert_eq!(m.appends.durable.latency.count, 4);

    let reader = Store::open_read_only(dir.path(), Options::default()).unwrap();
    let refused = current_thread_runtime().block_on(reader.append_async(
        "s",
        ExpectedVersion::Any,
        &[event(1)],
    ));
    assert!(matches!(refused, Err(Error::ReadOnly { .. })));
}

#[test]
fn a_current_thread_runtime_keeps_running_while_a_thousand_appends_wait_for_the_disk() {
    within_a_minute(|| {
        let dir = tempfile::tempdir().unwrap();
        let (storage, faults) = FaultyStorage::new();
        // Far too small for a thousand appends: most futures wait for room.
        let options = Options::default()
            .storage(storage)
            .max_queue_bytes(16 << 10);
        let store = Store::open(dir.path(), options).unwrap();
        faults.hold_log_syncs(true);
        let answered = Arc::new(AtomicUsize::new(0));
        let runtime = current_thread_runtime();
        runtime.block_on(async {
            let mut appends = Vec::new();
            for i in 0..1000 {
                let append = store.append_async(
                    &format!("s-{}", i % 10),
                    ExpectedVersion::Any,
                    &[event(300)],
                );
                let answered = Arc::clone(&answered);
                appends.push(tokio::spawn(async move {
                    let result = append.await;
                    answered.fetch_add(1, Ordering::SeqCst);
                    result
                }));
            }
            // The only thread of the runtime runs this timer task while
            // every append waits: on the disk, or for room behind those
            // that do.
            let faults = Arc::clone(&faults);
            let store_ref = &store;
            // It wakes until it sees appends queued behind the held sync
            // (how soon depends on how the thread is scheduled, not on
            // evstore), then lets the disk go on.
            let timer = async move {
                loop {
                    tokio::time::sleep(Duration::from_millis(1)).await;
                    let in_flight = store_ref.metrics();
                    if in_flight.group_commit.queued_commands > 0 {
                        faults.hold_log_syncs(false);
                        return in_flight;
                    }
                }
            };
            let in_flight = timer.await;
            assert_eq!(in_flight.appends.durable.commits, 0);
            for append in appends {
                append.await.unwrap().unwrap();
            }
        });
        assert_eq!(answered.load(Ordering::SeqCst), 1000);
        let m = store.metrics();
        assert_eq!(m.appends.durable.commits, 1000);
        assert!(
            m.group_commit.back_pressure.count > 0,
            "{:?}",
            m.group_commit
        );
        assert_eq!(
            store.read_all(0, Direction::Forward, 2000).unwrap().len(),
            1000
        );
    });
}

#[test]
fn a_future_dropped_once_queued_still_appends_and_its_retry_finds_it() {
    within_a_minute(|| {
        let dir = tempfile::tempdir().unwrap();
        let (storage, faults) = FaultyStorage::new();
        let store = Store::open(dir.path(), Options::default().storage(storage)).unwrap();
        let once = event(10);
        faults.hold_log_syncs(true);
        // Polled once: queued (the commit thread takes it and waits on the
        // disk), then dropped.
        let dropped = store
            .append_async("s", ExpectedVersion::NoStream, std::slice::from_ref(&once))
            .now_or_never();
        assert!(dropped.is_none());
        faults.hold_log_syncs(false);
        store.flush().unwrap();
        let events = store.read_stream("s", 0, Direction::Forward, 10).unwrap();
        assert_eq!(events.len(), 1);
        assert_eq!(events[0].id, once.id());
        // The retry is answered with the original result.
        let retried = current_thread_runtime()
            .block_on(store.append_async(
                "s",
                ExpectedVersion::NoStream,
                std::slice::from_ref(&once),
            ))
            .unwrap();
        assert_eq!((retried.first_position, retried.last_version), (0, 0));
        assert_eq!(store.metrics().appends.idempotent_retries, 1);
    });
}

#[test]
fn a_future_dropped_before_it_was_queued_appends_nothing() {
    within_a_minute(|| {
        let dir = tempfile::tempdir().unwrap();
        let (storage, faults) = FaultyStorage::new();
        let options = Options::default().storage(storage).max_queue_bytes(1_000);
        let store = Store::open(dir.path(), options).unwrap();
        faults.hold_log_syncs(true);
        std::thread::scope(|scope| {
            // Leads its group and waits on the disk.
            scope.spawn(|| {
                store
                    .append("a", ExpectedVersion::Any, &[event(600)])
                    .unwrap()
            });
            let held = || faults.held_log_syncs.load(Ordering::SeqCst) == 1;
            while !held() {
                std::thread::yield_now();
            }
            // Fills the queue.
            scope.spawn(|| {
                store
                    .append("b", ExpectedVersion::Any, &[event(600)])
                    .unwrap()
            });
            while store.metrics().group_commit.queued_commands != 1 {
                std::thread::yield_now();
            }
            // No room: the future is not queued, and is dropped.
            let dropped = store
                .append_async("c", ExpectedVersion::Any, &[event(600)])
                .now_or_never();
            assert!(dropped.is_none());
            faults.hold_log_syncs(false);
        });
        store.flush().unwrap();
        assert!(store
            .read_stream("c", 0, Direction::Forward, 10)
            .unwrap()
            .is_empty());
        assert_eq!(store.read_all(0, Direction::Forward, 10).unwrap().len(), 2);
    });
}
