//! Subscriptions as `futures::Stream`s (cargo feature `async`), under a
//! multi-threaded tokio runtime, with writers on plain threads.
//!
//! - `a_stream_delivers_history_then_live_*`: history, then events appended
//!   while the stream waits, in order, exactly once.
//! - `several_streams_*`: streams with different filters and starting
//!   points follow the same writers concurrently; each ends at the close
//!   with exactly what the log holds for it.
//! - `a_filter_that_skips_*`: long runs of skipped events, in history and
//!   live, between the few that pass.
//! - `streams_end_after_close`: pending streams are woken by the close and
//!   end after delivering what became visible.
//! - `dropped_pending_streams_*`: streams dropped while waiting leave the
//!   store usable and releasable.
//!
//! Every wait for the next item is bounded by [`GUARD`]: a missed wake-up
//! fails the test instead of hanging it.

#![cfg(feature = "async")]

mod common;

use common::TestRng;
use evstore::{
    Direction, Durability, Error, EventData, ExpectedVersion, Filter, Options, RecordedEvent,
    Store, SubscriptionStream, Uuid, Visibility,
};
use futures_util::StreamExt;
use std::sync::mpsc;
use std::thread;
use std::time::Duration;

/// How long to wait for the next item before calling the stream stuck. Far
/// beyond what any delivery takes.
const GUARD: Duration = Duration::from_secs(60);

// ---------------------------------------------------------------------------
// Helpers
// ---------------------------------------------------------------------------

const EVENT_TYPES: [&str; 4] = ["Acct.Opened", "Acct.Credited", "Order.Placed", "Audit"];

fn event_id(writer: u32, seq: u32, index: u32) -> Uuid {
    Uuid::from_u128((u128::from(writer) << 96) | (u128::from(seq) << 32) | u128::from(index))
}

/// Event `index` of append `seq` of `writer`, which its payload (three
/// little-endian u32s, then a filler) and its id both encode.
fn event(writer: u32, seq: u32, index: u32) -> EventData {
    let tag = writer.wrapping_mul(31) ^ seq.wrapping_mul(7) ^ index.wrapping_mul(13);
    let mut payload = Vec::with_capacity(32);
    payload.extend_from_slice(&writer.to_le_bytes());
    payload.extend_from_slice(&seq.to_le_bytes());
    payload.extend_from_slice(&index.to_le_bytes());
    payload.extend((0..tag % 20).map(|k| (k ^ tag) as u8));
    let event_type = EVENT_TYPES[(tag.wrapping_mul(0x9E37_79B9) >> 30) as usize];
    EventData::new(event_type, payload).with_id(event_id(writer, seq, index))
}

/// `(writer, seq, index)` of `event`, checked against its id.
fn origin(event: &RecordedEvent) -> (u32, u32, u32) {
    let word = |i: usize| {
        u32::from_le_bytes(
            event.payload[i * 4..i * 4 + 4]
                .try_into()
                .expect("payload too short"),
        )
    };
    let triple = (word(0), word(1), word(2));
    assert_eq!(event.id, event_id(triple.0, triple.1, triple.2));
    triple
}

fn stream_names() -> Vec<String> {
    (0..25)
        .map(|i| format!("acct-{i}"))
        .chain((0..25).map(|i| format!("order-{i}")))
        .collect()
}

/// The appends one writer will make: `(stream, events)`, decided up front
/// so that the test knows how many events are coming.
fn plan(writer: u32, appends: u32, batch: (u64, u64)) -> Vec<(String, Vec<EventData>)> {
    let streams = stream_names();
    let mut rng = TestRng::new(u64::from(writer) + 1);
    (0..appends)
        .map(|seq| {
            let n = rng.range(batch.0, batch.1) as u32;
            let stream = streams[rng.range(0, streams.len() as u64 - 1) as usize].clone();
            (stream, (0..n).map(|i| event(writer, seq, i)).collect())
        })
        .collect()
}

fn planned_events(plan: &[(String, Vec<EventData>)]) -> u64 {
    plan.iter().map(|(_, events)| events.len() as u64).sum()
}

/// Runs `plan` on a plain thread, pausing now and then so that readers
/// catch up and wait; returns the thread.
fn write_plan(
    store: &Store,
    plan: Vec<(String, Vec<EventData>)>,
    start: Option<mpsc::Receiver<()>>,
) -> thread::JoinHandle<()> {
    let store = store.clone();
    thread::spawn(move || {
        if let Some(start) = start {
            start.recv().unwrap();
        }
        for (i, (stream, events)) in plan.iter().enumerate() {
            store.append(stream, ExpectedVersion::Any, events).unwrap();
            if i % 40 == 39 {
                thread::sleep(Duration::from_millis(2));
            }
        }
    })
}

/// Joins a plain thread without blocking the runtime.
async fn join(handle: thread::JoinHandle<()>) {
    tokio::task::spawn_blocking(move || handle.join().unwrap())
        .await
        .unwrap();
}

/// Closes `store` (which flushes and syncs) without blocking the runtime.
async fn close(store: Store) {
    tokio::task::spawn_blocking(move || store.close().unwrap())
        .await
        .unwrap();
}

/// The next item of `stream`, failing the test if none comes within
/// [`GUARD`]. The stream is not polled again once the guard has expired, so
/// a missed wake-up cannot be rescued by the guard's own wake-up.
async fn next(stream: &mut SubscriptionStream) -> Option<RecordedEvent> {
    let guard = tokio::time::sleep(GUARD);
    tokio::pin!(guard);
    tokio::select! {
        biased;
        () = &mut guard => panic!(
            "no item within {GUARD:?}; checkpoint {}",
            stream.checkpoint()
        ),
        item = stream.next() => item.map(|item| item.unwrap()),
    }
}

/// Every item of `stream` until it ends.
async fn until_end(mut stream: SubscriptionStream) -> Vec<RecordedEvent> {
    let mut delivered = Vec::new();
    while let Some(event) = next(&mut stream).await {
        delivered.push(event);
    }
    // Ended streams stay ended.
    assert!(next(&mut stream).await.is_none());
    delivered
}

fn whole_log(store: &Store) -> Vec<RecordedEvent> {
    let log = store.read_all(0, Direction::Forward, usize::MAX).unwrap();
    for (i, event) in log.iter().enumerate() {
        assert_eq!(event.position, i as u64);
    }
    log
}

/// Asserts that `got` is exactly `expected`: same events, same order.
fn assert_same_events(label: &str, got: &[RecordedEvent], expected: &[RecordedEvent]) {
    for pair in got.windows(2) {
        assert!(
            pair[0].position < pair[1].position,
            "{label}: position {} delivered after position {}",
            pair[1].position,
            pair[0].position
        );
    }
    if let Some(i) = (0..got.len().min(expected.len())).find(|&i| got[i] != expected[i]) {
        panic!(
            "{label}: delivery {i} is the event at position {} ({:?}), expected the one at \
             position {} ({:?})",
            got[i].position,
            origin(&got[i]),
            expected[i].position,
            origin(&expected[i]),
        );
    }
    assert_eq!(
        got.len(),
        expected.len(),
        "{label}: {} events delivered, {} expected",
        got.len(),
        expected.len()
    );
}

// ---------------------------------------------------------------------------
// Tests
// ---------------------------------------------------------------------------

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_stream_delivers_history_then_live_events_in_order_exactly_once() {
    let dir = tempfile::tempdir().unwrap();
    let store = Store::open(dir.path(), Options::default().segment_size(64 << 10)).unwrap();
    let history = plan(100, 150, (1, 4));
    let live = plan(0, 600, (1, 5));
    let total = planned_events(&history) + planned_events(&live);
    for (stream, events) in &history {
        store.append(stream, ExpectedVersion::Any, events).unwrap();
    }

    let mut events = store.subscribe_all(0, Filter::all()).into_stream();
    assert_eq!(events.checkpoint(), 0);
    let (start_tx, start) = mpsc::channel();
    let writer = write_plan(&store, live, Some(start));
    let mut delivered = Vec::new();
    while (delivered.len() as u64) < total {
        if delivered.len() as u64 == planned_events(&history) {
            // History delivered: from here on the events are appended while
            // the stream waits.
            start_tx.send(()).unwrap();
        }
        delivered.push(next(&mut events).await.expect("the stream ended early"));
    }
    join(writer).await;
    assert_eq!(events.checkpoint(), total);
    assert_eq!(store.last_position(), Some(total - 1));
    assert_same_events("history then live", &delivered, &whole_log(&store));
    // Nothing more: the stream waits (and a short wait ends without an item).
    assert!(
        tokio::time::timeout(Duration::from_millis(20), events.next())
            .await
            .is_err()
    );
    // And a new event still reaches it.
    let tail = store
        .append("acct-0", ExpectedVersion::Any, &[event(9, 0, 0)])
        .unwrap();
    assert_eq!(
        next(&mut events).await.unwrap().position,
        tail.first_position
    );
    close(store).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn several_streams_follow_concurrent_writers_and_end_at_the_close() {
    const WRITERS: u32 = 4;
    let dir = tempfile::tempdir().unwrap();
    let store = Store::open(dir.path(), Options::default().segment_size(64 << 10)).unwrap();
    for (stream, events) in plan(100, 100, (1, 4)) {
        store
            .append(&stream, ExpectedVersion::Any, &events)
            .unwrap();
    }
    let middle = store.last_position().unwrap() / 2;

    type Passes = fn(&RecordedEvent) -> bool;
    let mut tasks: Vec<(
        String,
        u64,
        Passes,
        tokio::task::JoinHandle<Vec<RecordedEvent>>,
    )> = Vec::new();
    let mut spawn = |label: &str, from: u64, passes: Passes, stream: SubscriptionStream| {
        tasks.push((
            label.to_string(),
            from,
            passes,
            tokio::spawn(until_end(stream)),
        ));
    };
    spawn(
        "all from 0",
        0,
        |_| true,
        store.subscribe_all(0, Filter::all()).into_stream(),
    );
    spawn(
        "order- from 0",
        0,
        |e| e.stream.starts_with("order-"),
        store
            .subscribe_all(0, Filter::stream_prefix("order-"))
            .into_stream(),
    );
    spawn(
        "Acct. types from the middle",
        middle,
        |e| e.event_type.starts_with("Acct."),
        store
            .subscribe_all(middle, Filter::event_type_prefix("Acct."))
            .into_stream(),
    );
    spawn(
        "written, Audit, from 0",
        0,
        |e| &*e.event_type == "Audit",
        store
            .subscribe_all(0, Filter::event_types(["Audit"]))
            .with_visibility(Visibility::Written)
            .into_stream(),
    );
    let head = store.last_position().unwrap() + 1;
    spawn(
        "odd writers from the head",
        head,
        |e| origin(e).0 % 2 == 1,
        store
            .subscribe_all(head, Filter::predicate(|e| origin(e).0 % 2 == 1))
            .into_stream(),
    );
    spawn(
        "stream acct-3 from version 0",
        0,
        |e| &*e.stream == "acct-3",
        store.subscribe_stream("acct-3", 0).unwrap().into_stream(),
    );

    let writers: Vec<_> = (0..WRITERS)
        .map(|w| write_plan(&store, plan(w, 300, (1, 5)), None))
        .collect();
    for writer in writers {
        join(writer).await;
    }
    let reader = store.clone();
    close(store).await;

    let log = whole_log(&reader);
    for (label, from, passes, task) in tasks {
        let delivered = task.await.unwrap();
        let expected: Vec<_> = log
            .iter()
            .filter(|e| e.position >= from && passes(e))
            .cloned()
            .collect();
        assert!(!expected.is_empty(), "{label}: nothing to deliver");
        assert_same_events(&label, &delivered, &expected);
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_filter_that_skips_almost_everything_still_delivers_each_match_once() {
    let dir = tempfile::tempdir().unwrap();
    let store = Store::open(dir.path(), Options::default()).unwrap();
    // Long runs of other events (far more than one poll reads) around the
    // few that pass, in history and then live.
    let append_run = |store: &Store, seq: u32, run: u32| {
        for chunk in 0..run / 500 {
            let events: Vec<_> = (0..500).map(|i| event(1, seq * 1_000 + chunk, i)).collect();
            store
                .append_with_durability(
                    "noise",
                    ExpectedVersion::Any,
                    &events,
                    Durability::Buffered,
                )
                .unwrap();
        }
    };
    let mut rare = Vec::new();
    for seq in 0..4 {
        append_run(&store, seq, 10_000);
        rare.push(
            store
                .append("rare-1", ExpectedVersion::Any, &[event(2, seq, 0)])
                .unwrap()
                .first_position,
        );
    }
    append_run(&store, 4, 10_000);
    store.flush().unwrap();

    let mut events = store
        .subscribe_all(0, Filter::stream_prefix("rare-"))
        .into_stream();
    for &position in &rare {
        assert_eq!(next(&mut events).await.unwrap().position, position);
    }
    let caught_up = store.last_position().unwrap() + 1;

    let writer_store = store.clone();
    let writer = thread::spawn(move || {
        let mut positions = Vec::new();
        for seq in 10..13 {
            append_run(&writer_store, seq, 9_000);
            writer_store.flush().unwrap();
            thread::sleep(Duration::from_millis(5));
            positions.push(
                writer_store
                    .append("rare-2", ExpectedVersion::Any, &[event(2, seq, 0)])
                    .unwrap()
                    .first_position,
            );
        }
        positions
    });
    let mut delivered = Vec::new();
    for _ in 0..3 {
        delivered.push(next(&mut events).await.unwrap());
    }
    let positions = tokio::task::spawn_blocking(move || writer.join().unwrap())
        .await
        .unwrap();
    assert_eq!(
        delivered.iter().map(|e| e.position).collect::<Vec<_>>(),
        positions
    );
    assert!(positions[0] > caught_up);
    assert!(delivered.iter().all(|e| &*e.stream == "rare-2"));
    assert_eq!(events.checkpoint(), positions[2] + 1);
    let reader = store.clone();
    close(store).await;
    assert!(next(&mut events).await.is_none());
    let log = whole_log(&reader);
    assert_eq!(
        log.iter().filter(|e| e.stream.starts_with("rare-")).count(),
        rare.len() + positions.len()
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn streams_end_after_close() {
    let dir = tempfile::tempdir().unwrap();
    let store = Store::open(
        dir.path(),
        Options::default()
            .durability(Durability::Buffered)
            .flush_interval(Duration::from_secs(3600)),
    )
    .unwrap();
    for seq in 0..5 {
        store
            .append("acct-1", ExpectedVersion::Any, &[event(0, seq, 0)])
            .unwrap();
    }
    store.flush().unwrap();

    // Pending on nothing at all.
    let idle = tokio::spawn(until_end(
        store
            .subscribe_all(0, Filter::stream_prefix("never-"))
            .into_stream(),
    ));
    let idle_stream = tokio::spawn(until_end(
        store.subscribe_stream("never-1", 0).unwrap().into_stream(),
    ));
    // Durable, with buffered events waiting for the close to flush them.
    let durable = tokio::spawn(until_end(
        store.subscribe_all(0, Filter::all()).into_stream(),
    ));
    let written = tokio::spawn(until_end(
        store
            .subscribe_all(0, Filter::all())
            .with_visibility(Visibility::Written)
            .into_stream(),
    ));
    // Let them all go pending.
    tokio::time::sleep(Duration::from_millis(20)).await;
    for seq in 5..10 {
        store
            .append("acct-2", ExpectedVersion::Any, &[event(0, seq, 0)])
            .unwrap();
    }
    let reader = store.clone();
    close(store).await;

    let log = whole_log(&reader);
    assert_eq!(log.len(), 10);
    assert!(idle.await.unwrap().is_empty());
    assert!(idle_stream.await.unwrap().is_empty());
    assert_same_events("durable", &durable.await.unwrap(), &log);
    assert_same_events("written", &written.await.unwrap(), &log);
    // Created after the close: history, then the end.
    let late = until_end(reader.subscribe_all(3, Filter::all()).into_stream()).await;
    assert_same_events("after close", &late, &log[3..]);
    assert!(matches!(
        reader.append("acct-1", ExpectedVersion::Any, &[event(0, 99, 0)]),
        Err(Error::Closed)
    ));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn dropped_pending_streams_leave_the_store_usable_and_releasable() {
    let dir = tempfile::tempdir().unwrap();
    let store = Store::open(dir.path(), Options::default()).unwrap();
    store
        .append("acct-1", ExpectedVersion::Any, &[event(0, 0, 0)])
        .unwrap();
    for i in 0..200u64 {
        let mut stream = if i % 2 == 0 {
            store.subscribe_all(1, Filter::all()).into_stream()
        } else {
            store.subscribe_stream("acct-1", 1).unwrap().into_stream()
        };
        // Pending, with its waker registered, then dropped.
        assert!(
            tokio::time::timeout(Duration::from_millis(1), stream.next())
                .await
                .is_err()
        );
    }
    let mut live = store.subscribe_all(1, Filter::all()).into_stream();
    let waiter = tokio::spawn(async move {
        let event = next(&mut live).await.unwrap();
        (live, event)
    });
    tokio::time::sleep(Duration::from_millis(10)).await;
    let appended = store
        .append("acct-1", ExpectedVersion::Any, &[event(0, 1, 0)])
        .unwrap();
    let (live, got) = waiter.await.unwrap();
    assert_eq!(got.position, appended.first_position);
    drop(live);
    close(store).await;
    // Every handle is gone: the directory can be opened again.
    let store = Store::open(dir.path(), Options::default()).unwrap();
    assert_eq!(store.last_position(), Some(1));
    close(store).await;
}
