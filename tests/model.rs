//! The public API checked against an in-memory model with proptest: random
//! sequences of appends, reads, flushes and reopens run against a real store
//! in a temporary directory, and the model predicts every answer exactly —
//! append results (versions and positions), the exact error of a refused
//! append (`WrongExpectedVersion` with the right `actual`, `EmptyBatch`,
//! `EventTooLarge`, `BatchTooLarge`), every event every read returns, byte
//! for byte, `stream_version`, `last_position` and `stream_count`, and
//! which snapshot each load returns (saves, refusals and pruning included).
//!
//! # Keeping predictions exact: what readers see
//!
//! Readers of a `Sync` store see only durable events. A `Buffered` append in
//! such a store becomes visible after a flush, a later `Sync` append, a
//! reopen, a segment rollover (whose seal is synced) or the background flush
//! (within `flush_interval`). Rollovers depend on the byte layout of segments
//! and the background flush on timing, so the model cannot predict those
//! two. Each configuration therefore removes them:
//!
//! - [`BUFFERED_SMALL`]: a `Buffered` store with 4 KiB segments. Readers see
//!   every written event, so neither rollovers (frequent here) nor flush
//!   timing matter; appends mix both durabilities.
//! - [`SYNC_SMALL`]: a `Sync` store with 4 KiB segments and only `Sync`
//!   appends: every acknowledged event is durable, hence visible, at once.
//! - [`SYNC_MIXED`]: a `Sync` store with mixed durabilities, segments far
//!   larger than a whole case writes (no rollover) and a flush interval of an
//!   hour (no background flush). The model tracks the visible end exactly: it
//!   moves to the written end on a successful `Sync` append, a flush and a
//!   reopen, and nowhere else. Expected-version checks see every written
//!   event, visible or not, so the model checks them against the written
//!   versions while `stream_version` and reads follow the visible ones.
//!
//! Ops are plain data (indexes and small numbers resolved against the model
//! when they run), so proptest shrinks failing sequences well.

use evstore::{
    AppendResult, Direction, Durability, Error, EventData, ExpectedVersion, Options, RecordedEvent,
    Store, Uuid,
};
use proptest::prelude::*;
use proptest::test_runner::Config as ProptestConfig;
use std::collections::HashMap;
use std::path::Path;
use std::time::Duration;

// ---------------------------------------------------------------- ops

/// Streams appended to: several share prefixes, one has a multi-byte char.
const STREAMS: [&str; 7] = [
    "o",
    "or",
    "order",
    "order-1",
    "order-10",
    "order-1-a",
    "ordér-1",
];
/// Streams only ever read: missing, and prefixes or extensions of real ones.
const MISSING_STREAMS: [&str; 4] = ["ord", "order-", "order-2", "order-1-a-b"];

fn any_stream(i: usize) -> &'static str {
    let all = STREAMS.len() + MISSING_STREAMS.len();
    let i = i % all;
    if i < STREAMS.len() {
        STREAMS[i]
    } else {
        MISSING_STREAMS[i - STREAMS.len()]
    }
}

fn event_type(i: u8) -> String {
    match i % 5 {
        0 => "A".to_string(),
        1 => "OrderPlaced".to_string(),
        2 => "Ünïcødé-Typ€".to_string(),
        3 => "OrderPlaced.v2".to_string(),
        // The longest type the default options accept.
        _ => "T".repeat(256),
    }
}

/// A payload size.
#[derive(Debug, Clone, Copy)]
enum Payload {
    /// `len` bytes, at most 300, so any batch of 5 fits a 4 KiB segment.
    Len(u16),
    /// One byte more than a whole segment: `EventTooLarge` at any size.
    Oversize,
}

#[derive(Debug, Clone, Copy)]
struct EventSpec {
    type_index: u8,
    payload: Payload,
    metadata_len: u8,
    fill: u8,
}

#[derive(Debug, Clone, Copy)]
enum ExpectedSpec {
    Any,
    NoStream,
    StreamExists,
    /// `Exact` of the stream's current version shifted by this (clamped at
    /// 0; a missing stream counts as version -1).
    Near(i8),
    /// `Exact` of a version far from any the stream reaches.
    Far(u64),
}

/// A starting version or position.
#[derive(Debug, Clone, Copy)]
enum Start {
    At(u64),
    /// The visible length of what is read, shifted by this.
    FromEnd(i8),
    Max,
}

#[derive(Debug, Clone)]
enum Op {
    Append {
        stream: usize,
        events: Vec<EventSpec>,
        expected: ExpectedSpec,
        sync: bool,
    },
    /// `count` events of 55% of a segment each: each fits alone, together
    /// they do not.
    AppendTooBig {
        stream: usize,
        count: usize,
        expected: ExpectedSpec,
    },
    ReadStream {
        stream: usize,
        from: Start,
        backward: bool,
        max: usize,
    },
    ReadAll {
        from: Start,
        backward: bool,
        max: usize,
    },
    StreamVersion {
        stream: usize,
    },
    LastPosition,
    StreamCount,
    Flush,
    /// Close (cleanly, or by dropping the handle) and open again.
    Reopen {
        clean: bool,
    },
    /// Snapshot the stream `back` versions below its last visible one; past
    /// its first, one version beyond its last (refused).
    SaveSnapshot {
        stream: usize,
        back: u8,
    },
    /// Load the newest snapshot at or below `below` versions under the
    /// stream's visible count, or the newest of all.
    LoadSnapshot {
        stream: usize,
        below: Option<u8>,
    },
}

fn event_spec() -> impl Strategy<Value = EventSpec> {
    let payload = prop_oneof![
        6 => Just(Payload::Len(0)),
        8 => (1u16..=16).prop_map(Payload::Len),
        24 => (17u16..=300).prop_map(Payload::Len),
        // Rare: a batch holding one is refused whole.
        1 => Just(Payload::Oversize),
    ];
    let metadata = prop_oneof![Just(0u8), 1u8..=64];
    (any::<u8>(), payload, metadata, any::<u8>()).prop_map(
        |(type_index, payload, metadata_len, fill)| EventSpec {
            type_index,
            payload,
            metadata_len,
            fill,
        },
    )
}

fn expected_spec() -> impl Strategy<Value = ExpectedSpec> {
    prop_oneof![
        10 => Just(ExpectedSpec::Any),
        2 => Just(ExpectedSpec::NoStream),
        2 => Just(ExpectedSpec::StreamExists),
        5 => Just(ExpectedSpec::Near(0)),
        3 => (-2i8..=2).prop_map(ExpectedSpec::Near),
        1 => prop_oneof![
            Just(u64::MAX),
            Just(u64::MAX - 1),
            Just(1u64 << 32),
            100u64..10_000,
        ]
        .prop_map(ExpectedSpec::Far),
    ]
}

fn from_spec() -> impl Strategy<Value = Start> {
    prop_oneof![
        3 => (0u64..=40).prop_map(Start::At),
        3 => (-3i8..=3).prop_map(Start::FromEnd),
        1 => Just(Start::Max),
    ]
}

fn max_count() -> impl Strategy<Value = usize> {
    prop_oneof![4 => 0usize..=20, 1 => Just(usize::MAX)]
}

fn op() -> impl Strategy<Value = Op> {
    let streams = STREAMS.len() + MISSING_STREAMS.len();
    prop_oneof![
        16 => (
            0..STREAMS.len(),
            prop_oneof![
                1 => Just(Vec::new()),
                9 => prop::collection::vec(event_spec(), 1..=5),
            ],
            expected_spec(),
            any::<bool>()
        )
            .prop_map(|(stream, events, expected, sync)| Op::Append {
                stream,
                events,
                expected,
                sync
            }),
        1 => (0..STREAMS.len(), 2usize..=4, expected_spec()).prop_map(
            |(stream, count, expected)| Op::AppendTooBig {
                stream,
                count,
                expected
            }
        ),
        5 => (0..streams, from_spec(), any::<bool>(), max_count()).prop_map(
            |(stream, from, backward, max)| Op::ReadStream {
                stream,
                from,
                backward,
                max
            }
        ),
        3 => (from_spec(), any::<bool>(), max_count())
            .prop_map(|(from, backward, max)| Op::ReadAll { from, backward, max }),
        2 => (0..streams).prop_map(|stream| Op::StreamVersion { stream }),
        1 => Just(Op::LastPosition),
        1 => Just(Op::StreamCount),
        2 => Just(Op::Flush),
        1 => any::<bool>().prop_map(|clean| Op::Reopen { clean }),
        2 => (0..streams, 0u8..6).prop_map(|(stream, back)| Op::SaveSnapshot { stream, back }),
        2 => (0..streams, prop::option::of(0u8..6))
            .prop_map(|(stream, below)| Op::LoadSnapshot { stream, below }),
    ]
}

fn ops() -> impl Strategy<Value = Vec<Op>> {
    prop::collection::vec(op(), 1..=60)
}

// ---------------------------------------------------------------- model

/// How the store under test is opened.
#[derive(Debug, Clone, Copy)]
struct Config {
    durability: Durability,
    segment_size: u64,
    /// Whether appends may be `Buffered`; when not, every append is `Sync`.
    buffered_appends: bool,
}

const BUFFERED_SMALL: Config = Config {
    durability: Durability::Buffered,
    segment_size: 4096,
    buffered_appends: true,
};
const SYNC_SMALL: Config = Config {
    durability: Durability::Sync,
    segment_size: 4096,
    buffered_appends: false,
};
const SYNC_MIXED: Config = Config {
    durability: Durability::Sync,
    segment_size: 1 << 20,
    buffered_appends: true,
};

impl Config {
    fn options(&self) -> Options {
        Options::default()
            .durability(self.durability)
            .segment_size(self.segment_size)
            // No background flush in a case: what a `Sync` store shows stays
            // exactly predictable (see the module comment).
            .flush_interval(Duration::from_secs(3600))
    }

    fn open(&self, dir: &Path) -> Store {
        Store::open(dir, self.options()).unwrap_or_else(|e| panic!("open {dir:?}: {e:?}"))
    }
}

/// An event the model knows was written.
#[derive(Debug, Clone)]
struct Written {
    stream: &'static str,
    version: u64,
    data: EventData,
    /// The timestamp the store first reported; it must never change.
    timestamp: Option<u64>,
}

#[derive(Debug, Default)]
struct Model {
    /// Every written event, by position.
    log: Vec<Written>,
    /// Positions of each stream's written events, by version.
    streams: HashMap<&'static str, Vec<u64>>,
    /// Readers see positions below this.
    visible: u64,
    /// Ids handed out so far.
    next_id: u128,
    /// The snapshots each stream should have kept: version to data.
    snapshots: HashMap<&'static str, std::collections::BTreeMap<u64, Vec<u8>>>,
}

/// `Options::snapshots_kept` of the stores under test (the default).
const SNAPSHOTS_KEPT: usize = 2;

/// What the model expects of an append.
#[derive(Debug, PartialEq, Eq)]
enum Predicted {
    Ok(AppendResult),
    Empty,
    EventTooLarge { size: usize },
    BatchTooLarge,
    WrongVersion { actual: Option<u64> },
}

impl Model {
    fn written_version(&self, stream: &str) -> Option<u64> {
        self.streams
            .get(stream)
            .and_then(|p| (p.len() as u64).checked_sub(1))
    }

    /// Positions of the visible events of `stream`, by version.
    fn visible_positions(&self, stream: &str) -> Vec<u64> {
        self.streams
            .get(stream)
            .map(|p| p.iter().copied().filter(|&p| p < self.visible).collect())
            .unwrap_or_default()
    }

    fn expected(&self, stream: &str, spec: ExpectedSpec) -> ExpectedVersion {
        match spec {
            ExpectedSpec::Any => ExpectedVersion::Any,
            ExpectedSpec::NoStream => ExpectedVersion::NoStream,
            ExpectedSpec::StreamExists => ExpectedVersion::StreamExists,
            ExpectedSpec::Near(d) => {
                let current = self.written_version(stream).map_or(-1, |v| v as i64);
                ExpectedVersion::Exact((current + i64::from(d)).max(0) as u64)
            }
            ExpectedSpec::Far(v) => ExpectedVersion::Exact(v),
        }
    }

    fn fresh_id(&mut self) -> Uuid {
        self.next_id += 1;
        Uuid::from_u128((0x6d6f_6465_6c00_u128 << 64) | self.next_id)
    }

    fn events(&mut self, specs: &[EventSpec], segment_size: u64) -> Vec<EventData> {
        specs
            .iter()
            .map(|spec| {
                let len = match spec.payload {
                    Payload::Len(n) => n as usize,
                    Payload::Oversize => segment_size as usize + 1,
                };
                let payload: Vec<u8> = (0..len)
                    .map(|k| spec.fill.wrapping_add((k as u8).wrapping_mul(31)))
                    .collect();
                let metadata = vec![spec.fill ^ 0xa5; spec.metadata_len as usize];
                EventData::new(event_type(spec.type_index), payload)
                    .with_metadata(metadata)
                    .with_id(self.fresh_id())
            })
            .collect()
    }

    /// What the store must answer. Sizes are generated clear of the exact
    /// limits, which depend on the encoding: an ordinary event (at most 300
    /// bytes of payload, 64 of metadata) fits five to a 4 KiB segment with
    /// room to spare, an `Oversize` one is larger than a whole segment, and
    /// the events of an `AppendTooBig` add up to more than a segment.
    fn predict(
        &self,
        stream: &str,
        expected: ExpectedVersion,
        events: &[EventData],
        segment_size: u64,
    ) -> Predicted {
        if events.is_empty() {
            return Predicted::Empty;
        }
        if let Some(e) = events.iter().find(|e| e.size() as u64 > segment_size) {
            return Predicted::EventTooLarge { size: e.size() };
        }
        let total: u64 = events.iter().map(|e| e.size() as u64).sum();
        if total > segment_size {
            return Predicted::BatchTooLarge;
        }
        let actual = self.written_version(stream);
        if !expected.matches(actual) {
            return Predicted::WrongVersion { actual };
        }
        let count = events.len() as u64;
        let first_version = actual.map_or(0, |v| v + 1);
        let first_position = self.log.len() as u64;
        Predicted::Ok(AppendResult::new(
            first_version,
            first_version + count - 1,
            first_position,
            first_position + count - 1,
        ))
    }

    fn record(&mut self, stream: &'static str, events: Vec<EventData>, r: AppendResult) {
        for (i, data) in events.into_iter().enumerate() {
            let position = self.log.len() as u64;
            self.streams.entry(stream).or_default().push(position);
            self.log.push(Written {
                stream,
                version: r.first_version + i as u64,
                data,
                timestamp: None,
            });
        }
    }

    fn all_visible(&mut self) {
        self.visible = self.log.len() as u64;
    }

    /// Checks one event a read returned against the model's event at
    /// `position`, pinning its timestamp the first time it is seen.
    fn check_event(&mut self, recorded: &RecordedEvent, position: u64, context: &str) {
        let Some(w) = self.log.get_mut(position as usize) else {
            panic!("{context}: returned position {position}, which was never written");
        };
        assert_eq!(recorded.position, position, "{context}: position");
        assert_eq!(
            &*recorded.stream, w.stream,
            "{context}: stream at {position}"
        );
        assert_eq!(
            recorded.version, w.version,
            "{context}: version at {position}"
        );
        assert_eq!(recorded.id, w.data.id(), "{context}: id at {position}");
        assert_eq!(
            &*recorded.event_type,
            w.data.event_type(),
            "{context}: type at {position}"
        );
        assert_eq!(
            &recorded.metadata,
            w.data.metadata(),
            "{context}: metadata at {position}"
        );
        assert_eq!(
            &recorded.payload,
            w.data.payload(),
            "{context}: payload at {position}"
        );
        match w.timestamp {
            None => w.timestamp = Some(recorded.timestamp_nanos),
            Some(t) => assert_eq!(
                recorded.timestamp_nanos, t,
                "{context}: the timestamp of position {position} changed"
            ),
        }
    }
}

/// The indexes a read of `len` visible items returns, in order.
fn window(len: u64, from: u64, direction: Direction, max: usize) -> Vec<u64> {
    match direction {
        Direction::Forward => (from.min(len)..len).take(max).collect(),
        Direction::Backward if len == 0 => Vec::new(),
        Direction::Backward => (0..=from.min(len - 1)).rev().take(max).collect(),
    }
}

fn resolve_from(from: Start, len: u64) -> u64 {
    match from {
        Start::At(v) => v,
        Start::FromEnd(d) => (len as i64 + i64::from(d)).max(0) as u64,
        Start::Max => u64::MAX,
    }
}

fn direction(backward: bool) -> Direction {
    if backward {
        Direction::Backward
    } else {
        Direction::Forward
    }
}

// ---------------------------------------------------------------- runner

/// Runs `ops` against a fresh store and the model, checking every answer.
fn run(config: Config, ops: &[Op]) {
    let tmp = tempfile::tempdir().expect("tempdir");
    let dir = tmp.path().join("store");
    let mut store = config.open(&dir);
    let mut model = Model::default();
    for (step, op) in ops.iter().enumerate() {
        let context = format!("step {step}: {op:?}");
        match op {
            Op::Append {
                stream,
                events,
                expected,
                sync,
            } => {
                let stream = STREAMS[*stream % STREAMS.len()];
                let events = model.events(events, config.segment_size);
                let expected = model.expected(stream, *expected);
                let durability = if *sync || !config.buffered_appends {
                    Durability::Sync
                } else {
                    Durability::Buffered
                };
                let predicted = model.predict(stream, expected, &events, config.segment_size);
                let result = store.append_with_durability(stream, expected, &events, durability);
                check_append(&context, stream, expected, &predicted, &result);
                if let Ok(r) = result {
                    model.record(stream, events, r);
                    if durability == Durability::Sync || config.durability == Durability::Buffered {
                        // A `Sync` append's sync covers everything written
                        // before it; a `Buffered` store shows what is written.
                        model.all_visible();
                    }
                }
            }
            Op::AppendTooBig {
                stream,
                count,
                expected,
            } => {
                let stream = STREAMS[*stream % STREAMS.len()];
                let size = (config.segment_size * 55 / 100) as usize;
                let events: Vec<EventData> = (0..*count)
                    .map(|i| EventData::new("Big", vec![i as u8; size]).with_id(model.fresh_id()))
                    .collect();
                let expected = model.expected(stream, *expected);
                let predicted = model.predict(stream, expected, &events, config.segment_size);
                assert_eq!(
                    predicted,
                    Predicted::BatchTooLarge,
                    "{context}: the test's own plan"
                );
                let result = store.append(stream, expected, &events);
                check_append(&context, stream, expected, &predicted, &result);
            }
            Op::ReadStream {
                stream,
                from,
                backward,
                max,
            } => {
                let stream = any_stream(*stream);
                let positions = model.visible_positions(stream);
                let from = resolve_from(*from, positions.len() as u64);
                let direction = direction(*backward);
                let read = store
                    .read_stream(stream, from, direction, *max)
                    .unwrap_or_else(|e| panic!("{context}: {e:?}"));
                let versions = window(positions.len() as u64, from, direction, *max);
                let context = format!("{context} (from {from})");
                assert_eq!(
                    read.iter().map(|e| e.version).collect::<Vec<_>>(),
                    versions,
                    "{context}: versions returned"
                );
                for (recorded, version) in read.iter().zip(versions) {
                    model.check_event(recorded, positions[version as usize], &context);
                }
            }
            Op::ReadAll {
                from,
                backward,
                max,
            } => {
                let from = resolve_from(*from, model.visible);
                let direction = direction(*backward);
                let read = store
                    .read_all(from, direction, *max)
                    .unwrap_or_else(|e| panic!("{context}: {e:?}"));
                let positions = window(model.visible, from, direction, *max);
                let context = format!("{context} (from {from})");
                assert_eq!(
                    read.iter().map(|e| e.position).collect::<Vec<_>>(),
                    positions,
                    "{context}: positions returned"
                );
                for (recorded, position) in read.iter().zip(positions) {
                    model.check_event(recorded, position, &context);
                }
            }
            Op::StreamVersion { stream } => {
                let stream = any_stream(*stream);
                assert_eq!(
                    store.stream_version(stream).unwrap(),
                    (model.visible_positions(stream).len() as u64).checked_sub(1),
                    "{context}: stream_version({stream})"
                );
            }
            Op::LastPosition => {
                assert_eq!(
                    store.last_position(),
                    model.visible.checked_sub(1),
                    "{context}"
                );
            }
            Op::StreamCount => {
                assert_eq!(store.stream_count(), model.streams.len(), "{context}");
            }
            Op::Flush => {
                store.flush().unwrap_or_else(|e| panic!("{context}: {e:?}"));
                model.all_visible();
            }
            Op::Reopen { clean } => {
                if *clean {
                    store
                        .close()
                        .unwrap_or_else(|e| panic!("{context}: close: {e:?}"));
                } else {
                    drop(store);
                }
                store = config.open(&dir);
                let stats = store.recovery_stats();
                assert_eq!(
                    stats.events,
                    model.log.len() as u64,
                    "{context}: events recovered"
                );
                assert_eq!(stats.torn_bytes, 0, "{context}: torn bytes after a close");
                model.all_visible();
            }
            Op::SaveSnapshot { stream, back } => {
                let stream = any_stream(*stream);
                let count = model.visible_positions(stream).len() as u64;
                let version = count.checked_sub(1 + u64::from(*back)).unwrap_or(count);
                let data = format!("{stream} at {version}, step {step}").into_bytes();
                let result = store.save_snapshot(stream, version, &data);
                if version < count {
                    result.unwrap_or_else(|e| panic!("{context}: save_snapshot: {e:?}"));
                    let kept = model.snapshots.entry(stream).or_default();
                    kept.insert(version, data);
                    while kept.len() > SNAPSHOTS_KEPT {
                        kept.pop_first();
                    }
                } else {
                    assert!(
                        matches!(result, Err(Error::SnapshotAhead { version: v, stream_version, .. })
                            if v == version && stream_version == count.checked_sub(1)),
                        "{context}: save_snapshot ahead: {result:?}"
                    );
                }
            }
            Op::LoadSnapshot { stream, below } => {
                let stream = any_stream(*stream);
                let count = model.visible_positions(stream).len() as u64;
                let max = below.map_or(u64::MAX, |b| count.saturating_sub(u64::from(b)));
                let loaded = store
                    .load_snapshot_at_or_below(stream, max)
                    .unwrap_or_else(|e| panic!("{context}: load_snapshot: {e:?}"));
                let expected = model
                    .snapshots
                    .get(stream)
                    .and_then(|kept| kept.range(..=max).next_back());
                assert_eq!(
                    loaded.map(|s| (s.version, s.data.to_vec())),
                    expected.map(|(v, d)| (*v, d.clone())),
                    "{context}: load_snapshot_at_or_below({stream}, {max})"
                );
            }
        }
    }
    for (stream, kept) in &model.snapshots {
        let newest = kept.iter().next_back();
        let loaded = store.load_snapshot(stream).expect("final snapshot load");
        assert_eq!(
            loaded.map(|s| (s.version, s.data.to_vec())),
            newest.map(|(v, d)| (*v, d.clone())),
            "final snapshot of {stream}"
        );
    }
    assert!(store.damaged_snapshots().is_empty());
    // Everything written, whole, in order; then once more after a reopen.
    store.flush().expect("final flush");
    model.all_visible();
    check_everything(&store, &mut model, "after the last op");
    store.close().expect("final close");
    let store = config.open(&dir);
    check_everything(&store, &mut model, "after the final reopen");
}

fn check_append(
    context: &str,
    stream: &str,
    expected: ExpectedVersion,
    predicted: &Predicted,
    result: &evstore::Result<AppendResult>,
) {
    match (predicted, result) {
        (Predicted::Ok(p), Ok(r)) => assert_eq!(r, p, "{context}: append result"),
        (Predicted::Empty, Err(Error::EmptyBatch)) => {}
        (Predicted::EventTooLarge { size }, Err(Error::EventTooLarge { size: s, max })) => {
            assert_eq!(s, size, "{context}: size of the event too large");
            assert!(max < s, "{context}: EventTooLarge limit {max} >= size {s}");
        }
        (Predicted::BatchTooLarge, Err(Error::BatchTooLarge { size, max })) => {
            assert!(
                size > max,
                "{context}: BatchTooLarge of {size} <= limit {max}"
            );
        }
        (
            Predicted::WrongVersion { actual },
            Err(Error::WrongExpectedVersion {
                stream: s,
                expected: e,
                actual: a,
            }),
        ) => {
            assert_eq!(s, stream, "{context}: stream of the error");
            assert_eq!(*e, expected, "{context}: expected of the error");
            assert_eq!(a, actual, "{context}: actual of the error");
        }
        (p, r) => panic!("{context}: the store answered {r:?}, the model predicts {p:?}"),
    }
}

/// Reads the whole log and every stream, both ways, against the model.
fn check_everything(store: &Store, model: &mut Model, context: &str) {
    let all = store
        .read_all(0, Direction::Forward, usize::MAX)
        .expect("read_all");
    assert_eq!(all.len() as u64, model.visible, "{context}: events in $all");
    for (p, e) in all.iter().enumerate() {
        model.check_event(e, p as u64, context);
    }
    let backward = store
        .read_all(u64::MAX, Direction::Backward, usize::MAX)
        .expect("read_all backward");
    assert_eq!(
        backward.iter().map(|e| e.position).collect::<Vec<_>>(),
        (0..model.visible).rev().collect::<Vec<_>>(),
        "{context}: positions of $all backward"
    );
    for e in &backward {
        model.check_event(e, e.position, context);
    }
    for i in 0..STREAMS.len() + MISSING_STREAMS.len() {
        let stream = any_stream(i);
        let positions = model.visible_positions(stream);
        let read = store
            .read_stream(stream, 0, Direction::Forward, usize::MAX)
            .expect("read_stream");
        assert_eq!(
            read.iter().map(|e| e.position).collect::<Vec<_>>(),
            positions,
            "{context}: positions of {stream}"
        );
        for e in &read {
            model.check_event(e, e.position, context);
        }
    }
    assert_eq!(
        store.last_position(),
        model.visible.checked_sub(1),
        "{context}"
    );
    assert_eq!(store.stream_count(), model.streams.len(), "{context}");
}

fn proptest_config() -> ProptestConfig {
    ProptestConfig {
        cases: 64,
        // A failure is reported with its shrunk sequence; no regression
        // file is written into the source tree.
        failure_persistence: None,
        max_shrink_time: 120_000,
        ..ProptestConfig::default()
    }
}

proptest! {
    #![proptest_config(proptest_config())]

    /// Buffered store, 4 KiB segments (frequent rollovers), mixed durability.
    #[test]
    fn model_buffered_store_small_segments(ops in ops()) {
        run(BUFFERED_SMALL, &ops);
    }

    /// Sync store, 4 KiB segments, `Sync` appends only.
    #[test]
    fn model_sync_store_small_segments(ops in ops()) {
        run(SYNC_SMALL, &ops);
    }

    /// Sync store with buffered appends: visibility follows syncs exactly.
    #[test]
    fn model_sync_store_mixed_durability(ops in ops()) {
        run(SYNC_MIXED, &ops);
    }
}

/// The ops above never retry, so every event id is fresh. DESIGN §7.4: "A
/// retried append with the same event ids does not duplicate events" (and
/// `EventData::with_id`: "Give a retried append the same ids as the first
/// try"). A client whose acknowledgement was lost (a timeout, a dropped
/// connection) retries the very same append; with `ExpectedVersion::Any` the
/// version check cannot catch the retry, only the ids can.
#[test]
fn retried_append_with_the_same_ids_does_not_duplicate_events() {
    for config in [BUFFERED_SMALL, SYNC_SMALL] {
        let tmp = tempfile::tempdir().expect("tempdir");
        let store = config.open(tmp.path());
        let events: Vec<EventData> = (0..3u128)
            .map(|i| EventData::new("Paid", vec![i as u8; 10]).with_id(Uuid::from_u128(0xabc0 + i)))
            .collect();
        let first = store
            .append("order-1", ExpectedVersion::Any, &events)
            .expect("first try");
        let retry = store.append("order-1", ExpectedVersion::Any, &events);
        let all = store
            .read_all(0, Direction::Forward, usize::MAX)
            .expect("read_all");
        let ids: Vec<Uuid> = all.iter().map(|e| e.id).collect();
        assert_eq!(
            ids,
            events.iter().map(EventData::id).collect::<Vec<_>>(),
            "{config:?}: the retry of an acknowledged append ({first:?}) was answered \
             {retry:?} and the log now holds the ids {ids:?}"
        );
    }
}
