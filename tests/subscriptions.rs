//! Subscriptions against a live store: every matching event exactly once, in
//! global order, from history into live delivery, whatever the writers do.
//!
//! - `all_subscriptions_*`: 8 writers over 50 streams while subscribers with
//!   every kind of filter follow the log from its start, from a middle
//!   position and from its head; each receives exactly what a final
//!   `read_all` filtered the same way holds from its starting point.
//! - `stream_subscriptions_*`: `subscribe_stream` from version 0, from a
//!   middle version and on streams that do not exist yet, during the same
//!   kind of load.
//! - `a_stalled_subscriber_*`: writers append tens of thousands of events
//!   while subscribers do not read; the writers finish, then the subscribers
//!   catch up with everything.
//! - `checkpoint_*`: resuming from any checkpoint yields exactly the rest.
//! - `*visib*`: durable versus written visibility in `Buffered` and `Sync`
//!   stores.
//! - `next_timeout_*`, `try_next_*`: waiting with and without a bound, and
//!   with a bound too long to be a deadline.
//! - `close_*`: a blocked subscriber drains what is visible and ends.
//! - `dropping_*`: dropped subscriptions leave the store usable and
//!   releasable.
//!
//! Threads that could block forever if a wake-up were lost are run through
//! [`Bounded`], which fails the test instead of hanging it.

mod common;

use common::TestRng;
use evstore::{
    Direction, Durability, Error, EventData, ExpectedVersion, Filter, Options, RecordedEvent,
    Store, Subscription, Uuid, Visibility,
};
use std::panic::{catch_unwind, resume_unwind, AssertUnwindSafe};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::mpsc::{self, RecvTimeoutError, TryRecvError};
use std::sync::Arc;
use std::thread;
use std::time::Duration;

/// How long a thread may take before the test calls it hung. Far beyond
/// what any of them needs; only a lost wake-up or a deadlock reaches it.
const HANG_GUARD: Duration = Duration::from_secs(90);

/// A wait that only a bug exhausts: longer than [`HANG_GUARD`], so a
/// `next_timeout(LONG)` that misses its wake-up fails the test instead of
/// returning late.
const LONG: Duration = Duration::from_secs(600);

/// A short wait used where nothing is expected to arrive.
const SHORT: Duration = Duration::from_millis(20);

// ---------------------------------------------------------------------------
// Helpers
// ---------------------------------------------------------------------------

/// A thread whose result is awaited with [`HANG_GUARD`] as the limit.
struct Bounded<T> {
    label: String,
    result: mpsc::Receiver<thread::Result<T>>,
}

fn bounded<T: Send + 'static>(
    label: impl Into<String>,
    work: impl FnOnce() -> T + Send + 'static,
) -> Bounded<T> {
    let (tx, rx) = mpsc::channel();
    thread::spawn(move || {
        let _ = tx.send(catch_unwind(AssertUnwindSafe(work)));
    });
    Bounded {
        label: label.into(),
        result: rx,
    }
}

impl<T> Bounded<T> {
    /// The thread's result; panics if it panicked or did not finish in time.
    fn join(self) -> T {
        match self.result.recv_timeout(HANG_GUARD) {
            Ok(Ok(value)) => value,
            Ok(Err(panic)) => resume_unwind(panic),
            Err(RecvTimeoutError::Timeout) => {
                panic!("{} did not finish within {HANG_GUARD:?}", self.label)
            }
            Err(RecvTimeoutError::Disconnected) => unreachable!("the thread always sends"),
        }
    }

    /// Whether the thread has finished (without taking its result).
    fn finished(&self) -> bool {
        !matches!(self.result.try_recv(), Err(TryRecvError::Empty))
    }
}

const EVENT_TYPES: [&str; 5] = [
    "Acct.Opened",
    "Acct.Credited",
    "Order.Placed",
    "Order.Shipped",
    "Audit",
];

/// The writer ids used for events not appended by a numbered writer.
const SEEDER: u32 = 1_000;
const PROBE: u32 = 2_000;

fn event_id(writer: u32, seq: u32, index: u32) -> Uuid {
    Uuid::from_u128((u128::from(writer) << 96) | (u128::from(seq) << 32) | u128::from(index))
}

/// Event `index` of append `seq` of `writer`: the payload starts with the
/// three numbers (little-endian u32s) and goes on with a filler of varied
/// length; the id encodes the same triple; the type varies with it.
fn event(writer: u32, seq: u32, index: u32) -> EventData {
    let tag = writer.wrapping_mul(31) ^ seq.wrapping_mul(7) ^ index.wrapping_mul(13);
    let filler = (tag.wrapping_mul(2_654_435_761) >> 7) % 40;
    let mut payload = Vec::with_capacity(12 + filler as usize);
    payload.extend_from_slice(&writer.to_le_bytes());
    payload.extend_from_slice(&seq.to_le_bytes());
    payload.extend_from_slice(&index.to_le_bytes());
    payload.extend((0..filler).map(|k| (k ^ tag) as u8));
    let event_type =
        EVENT_TYPES[(tag.wrapping_mul(0x9E37_79B9) >> 29) as usize % EVENT_TYPES.len()];
    EventData::new(event_type, payload).with_id(event_id(writer, seq, index))
}

/// Who wrote `event`: `(writer, seq, index)` read from its payload, checked
/// against its id.
fn origin(event: &RecordedEvent) -> (u32, u32, u32) {
    let word = |i: usize| {
        u32::from_le_bytes(
            event.payload[i * 4..i * 4 + 4]
                .try_into()
                .expect("payload too short"),
        )
    };
    let triple = (word(0), word(1), word(2));
    assert_eq!(
        event.id,
        event_id(triple.0, triple.1, triple.2),
        "id and payload of the event at position {} disagree",
        event.position
    );
    triple
}

/// The 50 streams the writers spread their appends over.
fn stream_names() -> Vec<String> {
    (0..25)
        .map(|i| format!("acct-{i}"))
        .chain((0..25).map(|i| format!("order-{i}")))
        .collect()
}

/// A stream that only writer 0 appends to, and only once a third of its
/// appends are done: subscriptions to it start before it exists.
const LATE_STREAM: &str = "late-0";

fn open(dir: &std::path::Path, options: Options) -> Store {
    Store::open(dir, options).expect("open")
}

/// Appends `count` events (as `SEEDER`) spread over the streams, so that
/// subscribers from the start have history to catch up through; buffered,
/// then flushed, so that they are all visible when it returns.
fn seed(store: &Store, count: u32) {
    let streams = stream_names();
    let mut rng = TestRng::new(0x5EED);
    let mut seq = 0;
    let mut written = 0;
    while written < count {
        let n = (rng.range(1, 5) as u32).min(count - written);
        let stream = &streams[rng.range(0, streams.len() as u64 - 1) as usize];
        let events: Vec<_> = (0..n).map(|i| event(SEEDER, seq, i)).collect();
        store
            .append_with_durability(stream, ExpectedVersion::Any, &events, Durability::Buffered)
            .unwrap();
        written += n;
        seq += 1;
    }
    store.flush().unwrap();
}

/// Starts `writers` threads of `appends` appends each, of `batch` events,
/// with `ExpectedVersion::Any` and the store's durability. Writer 0 sends
/// 1 on `marks` a third of the way through and 2 two thirds of the way
/// through. Each thread returns how many events it appended.
fn start_writers(
    store: &Store,
    writers: u32,
    appends: u32,
    batch: (u64, u64),
    marks: Option<mpsc::Sender<u32>>,
) -> Vec<Bounded<u64>> {
    let streams = Arc::new(stream_names());
    let mut marks = marks;
    (0..writers)
        .map(|w| {
            let store = store.clone();
            let streams = Arc::clone(&streams);
            let marks = if w == 0 { marks.take() } else { None };
            bounded(format!("writer {w}"), move || {
                let mut rng = TestRng::new(u64::from(w) + 1);
                let mut total = 0;
                for seq in 0..appends {
                    if let Some(marks) = &marks {
                        if seq == appends / 3 {
                            marks.send(1).unwrap();
                        }
                        if seq == 2 * appends / 3 {
                            marks.send(2).unwrap();
                        }
                    }
                    let n = rng.range(batch.0, batch.1) as u32;
                    let events: Vec<_> = (0..n).map(|i| event(w, seq, i)).collect();
                    let stream = if w == 0 && seq > appends / 3 && seq % 8 == 0 {
                        LATE_STREAM
                    } else {
                        &streams[rng.range(0, streams.len() as u64 - 1) as usize]
                    };
                    let result = store.append(stream, ExpectedVersion::Any, &events).unwrap();
                    assert_eq!(
                        result.last_position - result.first_position + 1,
                        u64::from(n),
                        "writer {w} append {seq}"
                    );
                    total += u64::from(n);
                }
                total
            })
        })
        .collect()
}

/// The whole visible log, checked: positions dense from 0, every event's
/// origin unique, and `expected_len` events in all.
fn whole_log(store: &Store, expected_len: u64) -> Vec<RecordedEvent> {
    let log = store.read_all(0, Direction::Forward, usize::MAX).unwrap();
    assert_eq!(log.len() as u64, expected_len, "events in the log");
    let mut origins = std::collections::HashSet::new();
    for (i, event) in log.iter().enumerate() {
        assert_eq!(event.position, i as u64, "the log's positions are dense");
        assert!(
            origins.insert(origin(event)),
            "event {:?} is in the log twice",
            origin(event)
        );
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
             position {} ({:?}); {} delivered, {} expected",
            got[i].position,
            origin(&got[i]),
            expected[i].position,
            origin(&expected[i]),
            got.len(),
            expected.len()
        );
    }
    assert_eq!(
        got.len(),
        expected.len(),
        "{label}: {} events delivered, {} expected (next expected: {:?}, next extra: {:?})",
        got.len(),
        expected.len(),
        expected.get(got.len()).map(|e| e.position),
        got.get(expected.len()).map(|e| e.position),
    );
}

/// How a follower asks for events.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Receive {
    /// `next_timeout` with a short timeout, until the checkpoint reaches the end.
    NextTimeout,
    /// `try_next`, pausing when it has nothing, until the checkpoint
    /// reaches the end.
    TryNext,
    /// Blocking `next`, until it returns `None` once the store is closed.
    Next,
}

impl Receive {
    fn nth(i: usize) -> Receive {
        [Receive::NextTimeout, Receive::TryNext, Receive::Next][i % 3]
    }
}

/// Sentinel for "the end is not known yet".
const UNKNOWN: u64 = u64::MAX;

/// Reads `subscription` until its checkpoint reaches `end` (set once the
/// writers are done) or, with [`Receive::Next`], until the store closes;
/// returns what it delivered.
fn follow(mut subscription: Subscription, end: &AtomicU64, receive: Receive) -> Vec<RecordedEvent> {
    let mut delivered = Vec::new();
    loop {
        let end = end.load(Ordering::SeqCst);
        if receive != Receive::Next && end != UNKNOWN && subscription.checkpoint() >= end {
            return delivered;
        }
        let next = match receive {
            Receive::NextTimeout => subscription.next_timeout(SHORT),
            Receive::TryNext => subscription.try_next(),
            Receive::Next => subscription.next_event(),
        };
        match next.unwrap() {
            Some(event) => delivered.push(event),
            None if receive == Receive::Next => return delivered,
            None if receive == Receive::TryNext => thread::sleep(Duration::from_millis(1)),
            None => {}
        }
    }
}

/// A filter together with an independent statement of what it passes.
struct Case {
    name: &'static str,
    filter: Filter,
    passes: fn(&RecordedEvent) -> bool,
}

fn cases() -> Vec<Case> {
    vec![
        Case {
            name: "all",
            filter: Filter::all(),
            passes: |_| true,
        },
        Case {
            name: "stream_prefix(order-)",
            filter: Filter::stream_prefix("order-"),
            passes: |e| e.stream.starts_with("order-"),
        },
        Case {
            name: "event_types",
            // "Order" is the prefix of two types but not a type: it matches nothing.
            filter: Filter::event_types(["Acct.Opened", "Order.Shipped", "Order"]),
            passes: |e| matches!(&*e.event_type, "Acct.Opened" | "Order.Shipped"),
        },
        Case {
            name: "event_type_prefix(Order.)",
            filter: Filter::event_type_prefix("Order."),
            passes: |e| e.event_type.starts_with("Order."),
        },
        Case {
            name: "predicate(writer % 3 == 0)",
            filter: Filter::predicate(|e| origin(e).0.is_multiple_of(3)),
            passes: |e| origin(e).0.is_multiple_of(3),
        },
        Case {
            name: "stream_prefix(acct-1) + event_type_prefix(Acct.) + predicate",
            filter: Filter::stream_prefix("acct-1")
                .with_event_type_prefix("Acct.")
                .with_predicate(|e| e.payload.len() >= 30),
            passes: |e| {
                e.stream.starts_with("acct-1")
                    && e.event_type.starts_with("Acct.")
                    && e.payload.len() >= 30
            },
        },
    ]
}

// ---------------------------------------------------------------------------
// 1. Concurrent writers, subscribers of the global log
// ---------------------------------------------------------------------------

/// One subscriber of the concurrent test.
struct Follower {
    label: String,
    from: u64,
    passes: fn(&RecordedEvent) -> bool,
    delivered: Bounded<Vec<RecordedEvent>>,
}

#[test]
fn all_subscriptions_deliver_each_matching_event_once_in_order_across_catch_up_and_live() {
    const WRITERS: u32 = 8;
    const APPENDS: u32 = 1_000;
    const SEEDED: u32 = 400;
    let dir = tempfile::tempdir().unwrap();
    // Small segments: delivery crosses segment boundaries, live and in history.
    let store = open(dir.path(), Options::default().segment_size(128 << 10));
    seed(&store, SEEDED);

    let end = Arc::new(AtomicU64::new(UNKNOWN));
    let mut followers = Vec::new();
    let mut start = |label: String, from: u64, case: &Case, receive: Receive| {
        let subscription = store.subscribe_all(from, case.filter.clone());
        assert_eq!(
            subscription.checkpoint(),
            from,
            "{label}: checkpoint before reading"
        );
        let end = Arc::clone(&end);
        followers.push(Follower {
            label: label.clone(),
            from,
            passes: case.passes,
            delivered: bounded(label, move || follow(subscription, &end, receive)),
        });
    };
    let receive = Receive::nth;

    // From the start, with history to catch up through before going live.
    for (i, case) in cases().iter().enumerate() {
        start(format!("{} from 0", case.name), 0, case, receive(i));
    }
    let (marks_tx, marks) = mpsc::channel();
    let writers = start_writers(&store, WRITERS, APPENDS, (1, 5), Some(marks_tx));
    assert_eq!(marks.recv().unwrap(), 1);
    // A position in the middle of the log, captured while the writers run;
    // subscribers start from it later, with history behind them again.
    let middle = store.last_position().unwrap();
    assert_eq!(marks.recv().unwrap(), 2);
    for (i, case) in cases().iter().enumerate() {
        start(
            format!("{} from the middle ({middle})", case.name),
            middle,
            case,
            receive(i + 1),
        );
    }
    // At the head: only events appended from now on.
    for (i, case) in cases().iter().enumerate() {
        let head = store.last_position().map_or(0, |p| p + 1);
        start(
            format!("{} from the head ({head})", case.name),
            head,
            case,
            receive(i + 2),
        );
    }

    let appended: u64 = writers.into_iter().map(Bounded::join).sum();
    let final_end = store.last_position().unwrap() + 1;
    assert_eq!(final_end, u64::from(SEEDED) + appended);
    end.store(final_end, Ordering::SeqCst);
    // Ends the followers that block in next().
    let reader = store.clone();
    store.close().unwrap();

    let log = whole_log(&reader, final_end);
    for follower in followers {
        let delivered = follower.delivered.join();
        let expected: Vec<_> = log[follower.from as usize..]
            .iter()
            .filter(|e| (follower.passes)(e))
            .cloned()
            .collect();
        assert!(
            !expected.is_empty(),
            "{}: the workload gives this filter nothing to deliver",
            follower.label
        );
        assert_same_events(&follower.label, &delivered, &expected);
    }
}

// ---------------------------------------------------------------------------
// 2. Concurrent writers, stream subscribers
// ---------------------------------------------------------------------------

#[test]
fn stream_subscriptions_deliver_the_stream_in_version_order_during_concurrent_appends() {
    const WRITERS: u32 = 8;
    const APPENDS: u32 = 600;
    let dir = tempfile::tempdir().unwrap();
    let store = open(dir.path(), Options::default().segment_size(128 << 10));
    seed(&store, 300);

    let ends: Arc<std::collections::HashMap<&str, AtomicU64>> = Arc::new(
        ["acct-1", "acct-3", "order-17", LATE_STREAM]
            .into_iter()
            .map(|s| (s, AtomicU64::new(UNKNOWN)))
            .collect(),
    );
    let mut followers: Vec<(String, &str, u64, Bounded<Vec<RecordedEvent>>)> = Vec::new();
    let mut start = |stream: &'static str, from: u64, receive: Receive| {
        let label = format!("{stream} from version {from}");
        let subscription = store.subscribe_stream(stream, from).unwrap();
        assert_eq!(
            subscription.checkpoint(),
            from,
            "{label}: checkpoint before reading"
        );
        let ends = Arc::clone(&ends);
        let delivered = bounded(label.clone(), move || {
            follow(subscription, &ends[stream], receive)
        });
        followers.push((label, stream, from, delivered));
    };

    // "acct-1" is a prefix of "acct-10".."acct-19": none of theirs may leak in.
    start("acct-1", 0, Receive::NextTimeout);
    start("acct-3", 0, Receive::TryNext);
    start("order-17", 0, Receive::Next);
    // Streams that do not exist yet.
    assert_eq!(store.stream_version(LATE_STREAM).unwrap(), None);
    start(LATE_STREAM, 0, Receive::NextTimeout);
    start(LATE_STREAM, 2, Receive::TryNext);
    start(LATE_STREAM, 1, Receive::Next);

    let (marks_tx, marks) = mpsc::channel();
    let writers = start_writers(&store, WRITERS, APPENDS, (1, 5), Some(marks_tx));
    assert_eq!(marks.recv().unwrap(), 1);
    let middle_3 = store.stream_version("acct-3").unwrap().unwrap();
    let middle_17 = store.stream_version("order-17").unwrap().unwrap();
    let middle_1 = store.stream_version("acct-1").unwrap().unwrap();
    assert_eq!(marks.recv().unwrap(), 2);
    // From versions captured earlier: history first, then live.
    start("acct-3", middle_3, Receive::NextTimeout);
    start("order-17", middle_17 / 2, Receive::TryNext);
    start("acct-1", middle_1, Receive::Next);

    for writer in writers {
        writer.join();
    }
    for (stream, end) in ends.iter() {
        let version = store.stream_version(stream).unwrap().unwrap();
        end.store(version + 1, Ordering::SeqCst);
    }
    let reader = store.clone();
    store.close().unwrap();
    let store = reader;
    for (label, stream, from, delivered) in followers {
        let delivered = delivered.join();
        let expected = store
            .read_stream(stream, from, Direction::Forward, usize::MAX)
            .unwrap();
        assert!(!expected.is_empty(), "{label}: nothing to deliver");
        for (i, event) in delivered.iter().enumerate() {
            assert_eq!(&*event.stream, stream, "{label}: delivery {i}");
            assert_eq!(event.version, from + i as u64, "{label}: delivery {i}");
        }
        assert_same_events(&label, &delivered, &expected);
    }
}

// ---------------------------------------------------------------------------
// 3. A stalled subscriber
// ---------------------------------------------------------------------------

#[test]
fn a_stalled_subscriber_never_holds_writers_back_and_later_catches_up_exactly_once() {
    const WRITERS: u32 = 4;
    const APPENDS: u32 = 500;
    let dir = tempfile::tempdir().unwrap();
    let store = open(dir.path(), Options::default().segment_size(256 << 10));
    seed(&store, 100);

    // Subscribers that have started (and, some, filled their buffers) but
    // then stop reading.
    let mut all = store.subscribe_all(0, Filter::all());
    let first: Vec<_> = (0..10)
        .map(|_| all.next_event().unwrap().unwrap())
        .collect();
    let mut orders = store.subscribe_all(0, Filter::event_type_prefix("Order."));
    let first_order = orders.next_event().unwrap().unwrap();
    let mut written = store
        .subscribe_all(0, Filter::all())
        .with_visibility(Visibility::Written);
    let first_written = written.try_next().unwrap().unwrap();
    let mut stream = store.subscribe_stream("order-4", 0).unwrap();
    let never_read = store.subscribe_all(0, Filter::stream_prefix("acct-"));

    // If a writer waited for any of them, joining would hit the hang guard.
    let writers = start_writers(&store, WRITERS, APPENDS, (5, 15), None);
    let appended: u64 = writers.into_iter().map(Bounded::join).sum();
    assert!(appended >= 10_000, "only {appended} events appended");
    let final_end = store.last_position().unwrap() + 1;
    let log = whole_log(&store, final_end);
    assert!(
        store
            .path()
            .join(evstore::SEGMENTS_DIR)
            .read_dir()
            .unwrap()
            .count()
            > 2,
        "the log should span several segments"
    );

    let mut got = first;
    got.extend(drain(&mut all));
    assert_same_events("all", &got, &log);
    assert_eq!(all.checkpoint(), final_end);

    let mut got = vec![first_order];
    got.extend(drain(&mut orders));
    let expected: Vec<_> = log
        .iter()
        .filter(|e| e.event_type.starts_with("Order."))
        .cloned()
        .collect();
    assert_same_events("event_type_prefix(Order.)", &got, &expected);
    assert_eq!(orders.checkpoint(), final_end);

    let mut got = vec![first_written];
    got.extend(drain(&mut written));
    assert_same_events("written visibility", &got, &log);

    let got = drain(&mut stream);
    let expected = store
        .read_stream("order-4", 0, Direction::Forward, usize::MAX)
        .unwrap();
    assert_same_events("stream order-4", &got, &expected);
    assert_eq!(stream.checkpoint(), expected.len() as u64);

    // Never read at all until now; read on another thread, bounded.
    let got = bounded("never_read", move || {
        let mut never_read = never_read;
        let mut delivered = Vec::new();
        while never_read.checkpoint() < final_end {
            delivered.extend(never_read.next_timeout(SHORT).unwrap());
        }
        delivered
    })
    .join();
    let expected: Vec<_> = log
        .iter()
        .filter(|e| e.stream.starts_with("acct-"))
        .cloned()
        .collect();
    assert_same_events("stream_prefix(acct-)", &got, &expected);
    store.close().unwrap();
}

// ---------------------------------------------------------------------------
// 4. Checkpoints
// ---------------------------------------------------------------------------

/// Appends without waiting for a sync: history set up quickly, made
/// visible by a flush.
fn append_buffered(store: &Store, stream: &str, events: &[EventData]) {
    store
        .append_with_durability(stream, ExpectedVersion::Any, events, Durability::Buffered)
        .unwrap();
}

/// Every event `subscription` has ready now.
fn drain(subscription: &mut Subscription) -> Vec<RecordedEvent> {
    std::iter::from_fn(|| subscription.try_next().unwrap()).collect()
}

#[test]
fn checkpoint_of_a_global_subscription_resumes_with_exactly_the_remaining_events() {
    let dir = tempfile::tempdir().unwrap();
    let store = open(dir.path(), Options::default());
    // More than one read's worth of events (so checkpoints fall inside and
    // between reads), with runs of filtered-out events in between and a run
    // of them at the end.
    let mut rng = TestRng::new(44);
    let mut seq = 0;
    while store.last_position().map_or(0, |p| p + 1) < 1_400 {
        let stream = if rng.range(0, 2) == 0 {
            format!("order-{}", rng.range(0, 3))
        } else {
            format!("user-{}", rng.range(0, 2))
        };
        let events: Vec<_> = (0..rng.range(1, 6) as u32)
            .map(|i| event(SEEDER, seq, i))
            .collect();
        append_buffered(&store, &stream, &events);
        seq += 1;
    }
    let tail: Vec<_> = (0..7).map(|i| event(SEEDER, seq, i)).collect();
    append_buffered(&store, "user-9", &tail);
    store.flush().unwrap();
    seq += 1;
    let end = store.last_position().unwrap() + 1;

    let filter = Filter::stream_prefix("order-");
    let log = whole_log(&store, end);
    let expected: Vec<_> = log
        .iter()
        .filter(|e| e.stream.starts_with("order-"))
        .cloned()
        .collect();

    let mut full = store.subscribe_all(0, filter.clone());
    assert_eq!(full.checkpoint(), 0);
    for k in 0..=expected.len() {
        if k > 0 {
            let event = full.try_next().unwrap().unwrap();
            assert_eq!(event, expected[k - 1]);
        }
        let checkpoint = full.checkpoint();
        // Everything below the checkpoint was delivered or skipped, and
        // nothing at or above it was delivered.
        if k > 0 {
            assert!(
                checkpoint > expected[k - 1].position,
                "after {k} deliveries the checkpoint {checkpoint} is not past the last one"
            );
        }
        if let Some(next) = expected.get(k) {
            assert!(
                checkpoint <= next.position,
                "after {k} deliveries the checkpoint {checkpoint} is past the next one"
            );
        }
        if k % 7 == 0 || k + 3 >= expected.len() {
            let mut resumed = store.subscribe_all(checkpoint, filter.clone());
            assert_same_events(
                &format!("resumed after {k} from {checkpoint}"),
                &drain(&mut resumed),
                &expected[k..],
            );
        }
    }
    // Caught up: the filtered-out tail counts as delivered.
    assert_eq!(full.try_next().unwrap(), None);
    let checkpoint = full.checkpoint();
    assert_eq!(checkpoint, end);
    drop(full);

    // Live, from that checkpoint: more skipped events, then matching ones.
    let mut resumed = store.subscribe_all(checkpoint, filter.clone());
    assert_eq!(resumed.try_next().unwrap(), None);
    store
        .append("user-0", ExpectedVersion::Any, &[event(SEEDER, seq, 0)])
        .unwrap();
    let placed = store
        .append(
            "order-0",
            ExpectedVersion::Any,
            &[event(SEEDER, seq + 1, 0), event(SEEDER, seq + 1, 1)],
        )
        .unwrap();
    let live = drain(&mut resumed);
    assert_eq!(
        live.iter().map(|e| e.position).collect::<Vec<_>>(),
        (placed.first_position..=placed.last_position).collect::<Vec<_>>()
    );
    assert_eq!(resumed.checkpoint(), placed.last_position + 1);

    // Checkpoints outlive the store handle: resume after a reopen.
    let middle = expected[expected.len() / 2].position + 1;
    drop(resumed);
    store.close().unwrap();
    let store = open(dir.path(), Options::default());
    let mut reopened = store.subscribe_all(middle, filter);
    let log = whole_log(&store, placed.last_position + 1);
    let expected: Vec<_> = log[middle as usize..]
        .iter()
        .filter(|e| e.stream.starts_with("order-"))
        .cloned()
        .collect();
    assert_same_events("after reopen", &drain(&mut reopened), &expected);
    store.close().unwrap();
}

#[test]
fn checkpoint_of_a_stream_subscription_is_a_version() {
    let dir = tempfile::tempdir().unwrap();
    let store = open(dir.path(), Options::default());
    // The stream's events far apart in the log, and more than one read's worth.
    let mut rng = TestRng::new(7);
    let mut seq = 0;
    for _ in 0..160 {
        for stream in ["other-a", "cart-1", "other-b", "cart-10"] {
            let n = rng.range(1, 8) as u32;
            let events: Vec<_> = (0..n).map(|i| event(SEEDER, seq, i)).collect();
            append_buffered(&store, stream, &events);
            seq += 1;
        }
    }
    store.flush().unwrap();
    let history = store
        .read_stream("cart-1", 0, Direction::Forward, usize::MAX)
        .unwrap();
    assert!(history.len() > 512);

    for bad in ["", "$all", "cart\n1"] {
        assert!(
            matches!(
                store.subscribe_stream(bad, 0),
                Err(Error::InvalidStreamName { .. })
            ),
            "{bad:?} accepted"
        );
    }

    let mut subscription = store.subscribe_stream("cart-1", 0).unwrap();
    for (k, expected) in history.iter().enumerate() {
        assert_eq!(subscription.checkpoint(), k as u64);
        if k % 97 == 0 {
            let mut resumed = store.subscribe_stream("cart-1", k as u64).unwrap();
            assert_same_events(
                &format!("cart-1 resumed at version {k}"),
                &drain(&mut resumed),
                &history[k..],
            );
        }
        assert_eq!(&subscription.try_next().unwrap().unwrap(), expected);
    }
    assert_eq!(subscription.try_next().unwrap(), None);
    assert_eq!(subscription.checkpoint(), history.len() as u64);

    // From a middle version, then live.
    let from = history.len() as u64 / 3;
    let mut middle = store.subscribe_stream("cart-1", from).unwrap();
    assert_eq!(middle.checkpoint(), from);
    let first = middle.try_next().unwrap().unwrap();
    assert_eq!(first.version, from);
    assert_eq!(middle.checkpoint(), from + 1);
    let rest = drain(&mut middle);
    assert_same_events(
        "cart-1 from the middle",
        &rest,
        &history[from as usize + 1..],
    );
    store
        .append("cart-10", ExpectedVersion::Any, &[event(PROBE, 0, 0)])
        .unwrap();
    store
        .append("cart-1", ExpectedVersion::Any, &[event(PROBE, 1, 0)])
        .unwrap();
    let live = middle.try_next().unwrap().unwrap();
    assert_eq!(
        (&*live.stream, live.version, origin(&live)),
        ("cart-1", history.len() as u64, (PROBE, 1, 0))
    );
    assert_eq!(middle.checkpoint(), history.len() as u64 + 1);
    assert_eq!(subscription.try_next().unwrap(), Some(live));

    // Past the stream's end: nothing until the stream reaches that version.
    let ahead = history.len() as u64 + 3;
    let mut early = store.subscribe_stream("cart-1", ahead).unwrap();
    assert_eq!(early.try_next().unwrap(), None);
    assert_eq!(early.checkpoint(), ahead);
    let more: Vec<_> = (0..4).map(|i| event(PROBE, 2, i)).collect();
    store.append("cart-1", ExpectedVersion::Any, &more).unwrap();
    let got = drain(&mut early);
    assert_eq!(
        got.iter().map(|e| e.version).collect::<Vec<_>>(),
        [ahead, ahead + 1]
    );
    assert_eq!(early.checkpoint(), ahead + 2);
    store.close().unwrap();
}

// ---------------------------------------------------------------------------
// 5. Visibility
// ---------------------------------------------------------------------------

#[test]
fn durable_subscribers_of_a_buffered_store_see_appends_once_flushed_written_ones_at_once() {
    let dir = tempfile::tempdir().unwrap();
    let store = open(
        dir.path(),
        Options::default()
            .durability(Durability::Buffered)
            .flush_interval(Duration::from_secs(3600)),
    );
    let mut durable = store.subscribe_all(0, Filter::all());
    let mut durable_stream = store.subscribe_stream("acct-1", 0).unwrap();
    let mut written = store
        .subscribe_all(0, Filter::all())
        .with_visibility(Visibility::Written);
    let mut written_stream = store
        .subscribe_stream("acct-1", 0)
        .unwrap()
        .with_visibility(Visibility::Written);

    let first = store
        .append(
            "acct-1",
            ExpectedVersion::NoStream,
            &[event(PROBE, 0, 0), event(PROBE, 0, 1)],
        )
        .unwrap();
    // Acknowledged, readable, but not durable.
    assert_eq!(store.read_all(0, Direction::Forward, 10).unwrap().len(), 2);
    assert_eq!(durable.try_next().unwrap(), None);
    assert_eq!(durable_stream.try_next().unwrap(), None);
    assert_eq!(durable.next_timeout(SHORT).unwrap(), None);
    assert_eq!(durable.checkpoint(), 0);
    assert_eq!(durable_stream.checkpoint(), 0);

    for subscription in [&mut written, &mut written_stream] {
        let got = drain(subscription);
        assert_eq!(
            got.iter().map(|e| (e.position, e.id)).collect::<Vec<_>>(),
            [
                (first.first_position, event_id(PROBE, 0, 0)),
                (first.last_position, event_id(PROBE, 0, 1))
            ]
        );
    }

    store.flush().unwrap();
    for subscription in [&mut durable, &mut durable_stream] {
        let got = drain(subscription);
        assert_eq!(
            got.iter().map(|e| e.id).collect::<Vec<_>>(),
            [event_id(PROBE, 0, 0), event_id(PROBE, 0, 1)]
        );
    }

    // A durable subscriber blocked in next() is woken by the flush, not by
    // the buffered append.
    let waiter = bounded("durable waiter", move || {
        let event = durable.next_event().unwrap();
        (durable, event)
    });
    let second = store
        .append("acct-2", ExpectedVersion::Any, &[event(PROBE, 1, 0)])
        .unwrap();
    assert_eq!(written.next_timeout(LONG).unwrap().unwrap().position, 2);
    // Give the waiter time to (wrongly) return before the flush.
    thread::sleep(Duration::from_millis(50));
    assert!(
        !waiter.finished(),
        "a durable subscriber returned an event that was only buffered"
    );
    store.flush().unwrap();
    let (mut durable, got) = waiter.join();
    assert_eq!(got.map(|e| e.position), Some(second.first_position));

    // A `Sync` append in a `Buffered` store makes everything before it durable.
    store
        .append("acct-3", ExpectedVersion::Any, &[event(PROBE, 2, 0)])
        .unwrap();
    assert_eq!(durable.try_next().unwrap(), None);
    let synced = store
        .append_with_durability(
            "acct-3",
            ExpectedVersion::Any,
            &[event(PROBE, 3, 0)],
            Durability::Sync,
        )
        .unwrap();
    let got = drain(&mut durable);
    assert_eq!(
        got.iter().map(|e| e.id).collect::<Vec<_>>(),
        [event_id(PROBE, 2, 0), event_id(PROBE, 3, 0)]
    );
    assert_eq!(durable.checkpoint(), synced.last_position + 1);
    assert_eq!(drain(&mut written).len(), 2);
    store.close().unwrap();
}

#[test]
fn subscribers_of_a_sync_store_see_every_acknowledged_append_at_once() {
    let dir = tempfile::tempdir().unwrap();
    let store = open(dir.path(), Options::default());
    let mut durable = store.subscribe_all(0, Filter::all());
    let mut written = store
        .subscribe_all(0, Filter::all())
        .with_visibility(Visibility::Written);
    let mut stream = store.subscribe_stream("acct-5", 0).unwrap();
    let mut other = store.subscribe_all(0, Filter::stream_prefix("acct-6"));
    let mut rng = TestRng::new(5);
    for seq in 0..60 {
        let n = rng.range(1, 3) as u32;
        let events: Vec<_> = (0..n).map(|i| event(PROBE, seq, i)).collect();
        let name = if seq % 2 == 0 { "acct-5" } else { "acct-6" };
        let result = store.append(name, ExpectedVersion::Any, &events).unwrap();
        let positions: Vec<_> = (result.first_position..=result.last_position).collect();
        for (label, subscription) in [("durable", &mut durable), ("written", &mut written)] {
            let got = drain(subscription);
            assert_eq!(
                got.iter().map(|e| e.position).collect::<Vec<_>>(),
                positions,
                "{label} after append {seq}"
            );
        }
        let (hit, miss) = if seq % 2 == 0 {
            (&mut stream, &mut other)
        } else {
            (&mut other, &mut stream)
        };
        let got = drain(hit);
        assert_eq!(
            got.iter().map(origin).collect::<Vec<_>>(),
            (0..n).map(|i| (PROBE, seq, i)).collect::<Vec<_>>(),
            "append {seq}"
        );
        assert_eq!(miss.try_next().unwrap(), None);
    }
    store.close().unwrap();
}

// ---------------------------------------------------------------------------
// 6. next_timeout and try_next
// ---------------------------------------------------------------------------

/// `subscription.next_timeout(LONG)` on another thread; the subscription
/// comes back with the result.
fn wait_for_next(
    label: &str,
    mut subscription: Subscription,
) -> Bounded<(Subscription, Option<RecordedEvent>)> {
    bounded(format!("next_timeout of {label}"), move || {
        let next = subscription.next_timeout(LONG).unwrap();
        (subscription, next)
    })
}

#[test]
fn next_timeout_returns_none_when_nothing_comes_and_the_event_when_one_does() {
    let dir = tempfile::tempdir().unwrap();
    let store = open(dir.path(), Options::default());

    // An empty store.
    let mut all = store.subscribe_all(0, Filter::all());
    assert_eq!(all.next_timeout(SHORT).unwrap(), None);
    assert_eq!(all.next_timeout(Duration::ZERO).unwrap(), None);
    assert_eq!(all.try_next().unwrap(), None);
    let mut stream = store.subscribe_stream("acct-1", 0).unwrap();
    assert_eq!(stream.next_timeout(SHORT).unwrap(), None);

    // Caught up with history; events the filter skips do not count.
    store
        .append("acct-1", ExpectedVersion::Any, &[event(PROBE, 0, 0)])
        .unwrap();
    store
        .append("acct-2", ExpectedVersion::Any, &[event(PROBE, 1, 0)])
        .unwrap();
    assert_eq!(all.next_timeout(SHORT).unwrap().unwrap().position, 0);
    assert_eq!(all.next_timeout(SHORT).unwrap().unwrap().position, 1);
    assert_eq!(all.next_timeout(SHORT).unwrap(), None);
    assert_eq!(stream.next_timeout(SHORT).unwrap().unwrap().position, 0);
    assert_eq!(stream.next_timeout(SHORT).unwrap(), None);
    let mut filtered = store.subscribe_all(0, Filter::stream_prefix("order-"));
    assert_eq!(filtered.next_timeout(SHORT).unwrap(), None);
    assert_eq!(filtered.checkpoint(), 2);

    // Events appended while they wait, on other threads: the wait ends
    // with the event (a missed wake-up would hit the hang guard first).
    for round in 0..5u32 {
        let filtered_waiter = wait_for_next("filtered", filtered);
        let all_waiter = wait_for_next("all", all);
        // Give them time to block.
        thread::sleep(Duration::from_millis(10));
        store
            .append(
                "acct-3",
                ExpectedVersion::Any,
                &[event(PROBE, 10 + round, 1)],
            )
            .unwrap();
        let placed = store
            .append(
                "order-1",
                ExpectedVersion::Any,
                &[event(PROBE, 10 + round, 2)],
            )
            .unwrap();
        let (back, got) = filtered_waiter.join();
        filtered = back;
        let got = got.expect("an event");
        assert_eq!(got.position, placed.first_position);
        assert_eq!(origin(&got), (PROBE, 10 + round, 2));
        let (back, got) = all_waiter.join();
        all = back;
        assert_eq!(origin(&got.unwrap()), (PROBE, 10 + round, 1));
        let got = all.next_timeout(SHORT).unwrap().unwrap();
        assert_eq!(origin(&got), (PROBE, 10 + round, 2));
    }
    assert_eq!(filtered.next_timeout(SHORT).unwrap(), None);
    assert_eq!(all.next_timeout(SHORT).unwrap(), None);

    // The same through a stream subscription with written visibility.
    let written = store
        .subscribe_stream("acct-9", 0)
        .unwrap()
        .with_visibility(Visibility::Written);
    let waiter = wait_for_next("written stream", written);
    thread::sleep(Duration::from_millis(10));
    store
        .append("acct-8", ExpectedVersion::NoStream, &[event(PROBE, 20, 0)])
        .unwrap();
    store
        .append("acct-9", ExpectedVersion::NoStream, &[event(PROBE, 20, 1)])
        .unwrap();
    let (mut written, got) = waiter.join();
    let got = got.expect("an event");
    assert_eq!((&*got.stream, got.version), ("acct-9", 0));
    assert_eq!(written.next_timeout(SHORT).unwrap(), None);
    store.close().unwrap();
}

/// A timeout too long for a deadline waits like `next_event`: it returns
/// what is there, then what is appended, then `None` once the store closes.
#[test]
fn next_timeout_of_duration_max_waits_without_a_deadline() {
    let dir = tempfile::tempdir().unwrap();
    let store = open(dir.path(), Options::default());
    store
        .append("acct-1", ExpectedVersion::Any, &[event(PROBE, 0, 0)])
        .unwrap();
    let mut all = store.subscribe_all(0, Filter::all());
    assert_eq!(
        all.next_timeout(Duration::MAX).unwrap().unwrap().position,
        0
    );

    let waiter = bounded("next_timeout(Duration::MAX)", move || {
        let next = all.next_timeout(Duration::MAX).unwrap();
        let end = all.next_timeout(Duration::MAX).unwrap();
        (next, end)
    });
    store
        .append("acct-2", ExpectedVersion::Any, &[event(PROBE, 1, 0)])
        .unwrap();
    // Closing ends the second wait once the appended event was delivered.
    let closing = store.clone();
    let closer = bounded("close", move || closing.close());
    let (next, end) = waiter.join();
    assert_eq!(origin(&next.expect("the appended event")), (PROBE, 1, 0));
    assert_eq!(end, None);
    closer.join().unwrap();
}

#[test]
fn try_next_never_waits_for_writers() {
    let dir = tempfile::tempdir().unwrap();
    let store = open(dir.path(), Options::default());
    seed(&store, 50);
    // Following the log with try_next alone while writers append: it
    // returns what is there or None, and misses nothing.
    let end = Arc::new(AtomicU64::new(UNKNOWN));
    let filtered = store.subscribe_all(0, Filter::stream_prefix("order-"));
    let reader_end = Arc::clone(&end);
    let reader = bounded("try_next reader", move || {
        follow(filtered, &reader_end, Receive::TryNext)
    });
    let stream = store.subscribe_stream("acct-0", 0).unwrap();
    let stream_end = Arc::new(AtomicU64::new(UNKNOWN));
    let stream_reader_end = Arc::clone(&stream_end);
    let stream_reader = bounded("try_next stream reader", move || {
        follow(stream, &stream_reader_end, Receive::TryNext)
    });
    let writers = start_writers(&store, 2, 100, (1, 3), None);
    let appended: u64 = writers.into_iter().map(Bounded::join).sum();
    let final_end = store.last_position().unwrap() + 1;
    assert_eq!(final_end, 50 + appended);
    end.store(final_end, Ordering::SeqCst);
    stream_end.store(
        store.stream_version("acct-0").unwrap().unwrap() + 1,
        Ordering::SeqCst,
    );
    let log = whole_log(&store, final_end);
    let expected: Vec<_> = log
        .iter()
        .filter(|e| e.stream.starts_with("order-"))
        .cloned()
        .collect();
    assert_same_events("try_next", &reader.join(), &expected);
    let expected = store
        .read_stream("acct-0", 0, Direction::Forward, usize::MAX)
        .unwrap();
    assert_same_events("try_next on a stream", &stream_reader.join(), &expected);

    // Caught up on an idle store: None at once, however often it is asked.
    let idle = store.clone();
    bounded("idle try_next", move || {
        let mut all = idle.subscribe_all(0, Filter::all());
        let mut stream = idle.subscribe_stream("acct-0", 0).unwrap();
        assert_eq!(drain(&mut all).len() as u64, final_end);
        drain(&mut stream);
        for _ in 0..1_000 {
            assert_eq!(all.try_next().unwrap(), None);
            assert_eq!(stream.try_next().unwrap(), None);
        }
    })
    .join();
    store.close().unwrap();
}

// ---------------------------------------------------------------------------
// 7. Close
// ---------------------------------------------------------------------------

#[test]
fn close_ends_a_blocked_subscriber_after_it_drains_what_was_visible() {
    let dir = tempfile::tempdir().unwrap();
    let store = open(dir.path(), Options::default());
    seed(&store, 20);

    let (progress_tx, progress) = mpsc::channel();
    let subscriber_store = store.clone();
    let all = bounded("blocked next()", move || {
        let mut subscription = subscriber_store.subscribe_all(0, Filter::all());
        let mut delivered = Vec::new();
        while let Some(event) = subscription.next_event().unwrap() {
            delivered.push(event);
            let _ = progress_tx.send(delivered.len());
        }
        // Ended: stays ended.
        assert_eq!(subscription.next_event().unwrap(), None);
        assert_eq!(subscription.next_timeout(SHORT).unwrap(), None);
        assert_eq!(subscription.try_next().unwrap(), None);
        drop(subscriber_store);
        delivered
    });
    // An idle subscriber, blocked with nothing coming: only the close ends it.
    let idle_store = store.clone();
    let idle = bounded("idle next()", move || {
        let mut subscription = idle_store.subscribe_all(0, Filter::stream_prefix("never-"));
        subscription.next_event().unwrap()
    });
    let stream_store = store.clone();
    let stream = bounded("stream next()", move || {
        let mut subscription = stream_store.subscribe_stream("never-1", 0).unwrap();
        subscription.next_event().unwrap()
    });
    let written_store = store.clone();
    let written = bounded("written next()", move || {
        let subscription = written_store
            .subscribe_all(0, Filter::all())
            .with_visibility(Visibility::Written);
        // The Iterator impl: ends at the close.
        subscription.collect::<evstore::Result<Vec<_>>>().unwrap()
    });
    // Wait until the history was delivered, so the subscriber is live.
    while progress.recv().unwrap() < 20 {}
    // Then events right before the close.
    for seq in 0..5 {
        store
            .append("acct-1", ExpectedVersion::Any, &[event(PROBE, seq, 0)])
            .unwrap();
    }
    let reader = store.clone();
    store.close().unwrap();

    let log = whole_log(&reader, 25);
    assert_same_events("blocked next()", &all.join(), &log);
    assert_same_events("Iterator", &written.join(), &log);
    assert_eq!(idle.join(), None);
    assert_eq!(stream.join(), None);

    // Created after the close, from a clone: history, then the end.
    let mut late = reader.subscribe_all(10, Filter::all());
    let got: Vec<_> = (&mut late).collect::<evstore::Result<_>>().unwrap();
    assert_same_events("after close", &got, &log[10..]);
    let (_, next) = wait_for_next("after close", late).join();
    assert_eq!(next, None);
    assert!(matches!(
        reader.append("acct-1", ExpectedVersion::Any, &[event(PROBE, 9, 0)]),
        Err(Error::Closed)
    ));
}

#[test]
fn close_of_a_buffered_store_makes_buffered_events_visible_to_durable_subscribers_first() {
    let dir = tempfile::tempdir().unwrap();
    let store = open(
        dir.path(),
        Options::default()
            .durability(Durability::Buffered)
            .flush_interval(Duration::from_secs(3600)),
    );
    let subscriber_store = store.clone();
    let (ready_tx, ready) = mpsc::channel();
    let durable = bounded("durable next()", move || {
        let mut subscription = subscriber_store.subscribe_all(0, Filter::all());
        let mut stream = subscriber_store.subscribe_stream("acct-1", 0).unwrap();
        assert_eq!(subscription.try_next().unwrap(), None);
        ready_tx.send(()).unwrap();
        let all: Vec<_> = (&mut subscription).collect::<evstore::Result<_>>().unwrap();
        let stream: Vec<_> = (&mut stream).collect::<evstore::Result<_>>().unwrap();
        (all, stream)
    });
    ready.recv().unwrap();
    for seq in 0..10 {
        let name = if seq % 2 == 0 { "acct-1" } else { "acct-2" };
        store
            .append(name, ExpectedVersion::Any, &[event(PROBE, seq, 0)])
            .unwrap();
    }
    let reader = store.clone();
    store.close().unwrap();
    let (all, stream) = durable.join();
    let log = whole_log(&reader, 10);
    assert_same_events("durable, buffered store", &all, &log);
    let expected: Vec<_> = log
        .iter()
        .filter(|e| &*e.stream == "acct-1")
        .cloned()
        .collect();
    assert_same_events("durable stream, buffered store", &stream, &expected);
}

// ---------------------------------------------------------------------------
// 8. Dropping subscriptions
// ---------------------------------------------------------------------------

#[test]
fn dropping_subscriptions_leaves_the_store_usable_and_releasable() {
    let dir = tempfile::tempdir().unwrap();
    let store = open(dir.path(), Options::default());
    seed(&store, 700);

    for i in 0..400u32 {
        let mut subscription = match i % 4 {
            0 => store.subscribe_all(u64::from(i), Filter::all()),
            1 => store
                .subscribe_all(0, Filter::event_type_prefix("Acct."))
                .with_visibility(Visibility::Written),
            2 => store.subscribe_stream("acct-1", 0).unwrap(),
            _ => store.subscribe_all(700, Filter::all()),
        };
        // Dropped unread, with a full buffer, or after waiting.
        match i % 3 {
            0 => {}
            1 => {
                subscription.try_next().unwrap();
            }
            _ => {
                subscription.next_timeout(Duration::ZERO).unwrap();
            }
        }
        drop(subscription);
    }
    // Some dropped on other threads, some after having waited in vain.
    let handles: Vec<_> = (0..8)
        .map(|i| {
            let subscription = store.subscribe_all(700, Filter::stream_prefix(format!("x{i}")));
            bounded(format!("dropper {i}"), move || {
                let mut subscription = subscription;
                assert_eq!(subscription.next_timeout(SHORT).unwrap(), None);
            })
        })
        .collect();
    for handle in handles {
        handle.join();
    }

    // Still fully usable: appends, reads, and a new subscription, live.
    let mut fresh = store.subscribe_all(0, Filter::all());
    assert_eq!(drain(&mut fresh).len(), 700);
    let result = store
        .append("acct-1", ExpectedVersion::Any, &[event(PROBE, 0, 0)])
        .unwrap();
    assert_eq!(result.first_position, 700);
    assert_eq!(fresh.try_next().unwrap().unwrap().position, 700);
    drop(fresh);

    // A subscription holds the store: after close, the directory stays
    // locked until it is dropped.
    let lingering = store.subscribe_stream("acct-1", 0).unwrap();
    store.close().unwrap();
    assert!(matches!(
        Store::open(dir.path(), Options::default()),
        Err(Error::Locked { .. })
    ));
    drop(lingering);
    let store = open(dir.path(), Options::default());
    assert_eq!(store.last_position(), Some(700));
    let mut reopened = store.subscribe_all(0, Filter::all());
    assert_eq!(drain(&mut reopened).len(), 701);
    drop(reopened);
    store.close().unwrap();
    open(dir.path(), Options::default()).close().unwrap();
}

#[test]
fn next_timeout_looks_up_from_a_long_scan_of_skipped_events() {
    let dir = tempfile::tempdir().unwrap();
    let store = open(
        dir.path(),
        Options::default().durability(Durability::Buffered),
    );
    for _ in 0..100 {
        // Fresh events each time: the same ids again would be a retry.
        let batch: Vec<EventData> = (0..1000)
            .map(|i| EventData::new("Noise", vec![i as u8]))
            .collect();
        store.append("noise", ExpectedVersion::Any, &batch).unwrap();
    }
    store
        .append(
            "signal",
            ExpectedVersion::Any,
            &[EventData::new("Wanted", &b"!"[..])],
        )
        .unwrap();
    // Durable, so the subscription sees all of it whenever the background
    // flush runs.
    store.flush().unwrap();
    let mut subscription = store.subscribe_all(0, Filter::event_types(["Wanted"]));
    // A deadline already past: the scan stops after a bounded stretch of
    // skipped events instead of reading the whole log first...
    assert!(subscription.next_timeout(Duration::ZERO).unwrap().is_none());
    let scanned = subscription.checkpoint();
    assert!(scanned > 0 && scanned < 100_000, "scanned {scanned}");
    // ...and every further call goes on from there, losing nothing.
    let mut calls = 1;
    let found = loop {
        calls += 1;
        if let Some(event) = subscription.next_timeout(Duration::ZERO).unwrap() {
            break event;
        }
        assert!(calls < 10_000, "no progress");
    };
    assert_eq!((found.position, &*found.event_type), (100_000, "Wanted"));
    assert!(calls > 2);
}
