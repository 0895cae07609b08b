//! The `lifecycle` target: arbitrary appends, stream metadata, deletes,
//! truncations, forgotten subjects, scavenges (which remove the segments
//! whose events are all gone) and reopens on a store that seals payloads. What reads return never changes across a scavenge or a
//! reopen (an erased event may lose its type and tags to a marker, nothing
//! else), deleted streams read empty and take no appends, a stream never
//! returns more events than its metadata keeps, and nothing errs but the
//! typed refusals.

use super::{sim_options, store_dir};
use arbitrary::{Arbitrary, Unstructured};
use evstore::storage::SimDisk;
use evstore::{
    DeleteMode, Direction, Durability, Error, EventData, ExpectedVersion, Filter, Query,
    RecordedEvent, Store, StreamMetadata,
};
use std::collections::BTreeMap;
use std::time::Duration;

const STREAMS: u8 = 4;

/// One step of the workload.
#[derive(Arbitrary, Debug, Clone)]
pub enum LifecycleOp {
    /// `count % 4 + 1` events of `size` bytes to stream `stream % 4`,
    /// sealed for subject `subject % 4` when given (else the stream).
    Append {
        stream: u8,
        count: u8,
        size: u8,
        subject: Option<u8>,
    },
    /// Metadata: keep `max_count % 8` events, everything older than a
    /// nanosecond expired (`Some(true)`) or nothing (`Some(false)`), drop
    /// versions below `truncate_before % 16`.
    SetMetadata {
        stream: u8,
        max_count: Option<u8>,
        expire_all: Option<bool>,
        truncate_before: Option<u8>,
    },
    Delete {
        stream: u8,
        hard: bool,
    },
    Truncate {
        stream: u8,
        before: u8,
    },
    Forget {
        subject: u8,
    },
    /// Erases versions `first % 16` to `first % 16 + len % 4`.
    Erase {
        stream: u8,
        first: u8,
        len: u8,
    },
    Scavenge,
    Reopen,
}

fn stream_name(stream: u8) -> String {
    format!("s{}", stream % STREAMS)
}

/// What every read path returns, with erased events reduced to what a
/// marker keeps of them (an erased event's type and tags may go when it is
/// scavenged); reads by tag leave erased events out for the same reason.
fn reads(store: &Store) -> Vec<String> {
    let show = |e: &RecordedEvent| {
        if e.erased {
            format!("{} {}@{} erased", e.position, &*e.stream, e.version)
        } else {
            format!(
                "{} {}@{} {} {:?} {:?} {:?}",
                e.position, &*e.stream, e.version, &*e.event_type, e.tags, e.metadata, e.payload
            )
        }
    };
    let mut out: Vec<String> = store
        .read_all(0, Direction::Forward, usize::MAX)
        .expect("read_all")
        .iter()
        .map(show)
        .collect();
    for s in 0..STREAMS {
        let stream = stream_name(s);
        let events = store
            .read_stream(&stream, 0, Direction::Forward, usize::MAX)
            .expect("read_stream");
        out.extend(events.iter().map(|e| format!("stream {}", show(e))));
        let query = Query::tagged([format!("tag-{s}")]);
        let tagged = store
            .read_query(&query, 0, Direction::Forward, usize::MAX)
            .expect("read_query");
        out.extend(
            tagged
                .events
                .iter()
                .filter(|e| !e.erased)
                .map(|e| format!("query {}", show(e))),
        );
    }
    let mut subscription = store.subscribe_all(0, Filter::all());
    while let Some(event) = subscription.try_next().expect("subscription") {
        out.push(format!("sub {}", show(&event)));
    }
    out
}

/// Deletes, metadata and keys as the workload set them, for the checks.
#[derive(Default)]
struct Expected {
    closed: BTreeMap<String, bool>,
    max_count: BTreeMap<String, u64>,
}

fn check(store: &Store, expected: &Expected) {
    for s in 0..STREAMS {
        let stream = stream_name(s);
        let events = store
            .read_stream(&stream, 0, Direction::Forward, usize::MAX)
            .expect("read_stream");
        if expected.closed.get(&stream) == Some(&true) {
            assert!(events.is_empty(), "{stream} was deleted: {events:?}");
        }
        if let Some(&max) = expected.max_count.get(&stream) {
            assert!(
                events.len() as u64 <= max,
                "{stream} keeps {max}: {}",
                events.len()
            );
        }
        let versions: Vec<u64> = events.iter().map(|e| e.version).collect();
        assert!(
            versions.windows(2).all(|w| w[0] < w[1]),
            "{stream}: {versions:?}"
        );
    }
}

fn open(disk: &SimDisk) -> Store {
    // Retries are recognised among the last few events only, so that a
    // scavenge may remove the segments whose events are all gone.
    let options = sim_options(disk, Durability::Sync)
        .crypto_shredding(true)
        .idempotency_window(4);
    Store::open(store_dir(), options).expect("open")
}

/// A refusal the workload may meet; anything else is a bug.
fn refusal(result: Result<impl Sized, Error>) {
    match result {
        Ok(_)
        | Err(
            Error::StreamDeleted { .. }
            | Error::WrongExpectedVersion { .. }
            | Error::InvalidRequest { .. },
        ) => {}
        Err(other) => panic!("unexpected error: {other:?}"),
    }
}

/// Runs the target on `data`.
pub fn lifecycle(data: &[u8]) {
    let mut u = Unstructured::new(data);
    // Op after op until the input runs out: every byte counts.
    let mut ops = Vec::new();
    while !u.is_empty() && ops.len() < 64 {
        match LifecycleOp::arbitrary(&mut u) {
            Ok(op) => ops.push(op),
            Err(_) => break,
        }
    }
    let disk = SimDisk::new();
    let mut store = open(&disk);
    let mut expected = Expected::default();
    let mut serial = 0u32;
    for op in &ops {
        match op {
            LifecycleOp::Append {
                stream,
                count,
                size,
                subject,
            } => {
                let name = stream_name(*stream);
                let events: Vec<EventData> = (0..count % 4 + 1)
                    .map(|_| {
                        serial += 1;
                        let mut payload = format!("<{serial}>").into_bytes();
                        payload.resize(payload.len() + usize::from(*size), b'.');
                        let event = EventData::new("E", payload)
                            .with_tags([format!("tag-{}", stream % STREAMS)]);
                        match subject {
                            Some(s) => event.with_subject(format!("who-{}", s % 4)),
                            None => event,
                        }
                    })
                    .collect();
                let result = store.append(&name, ExpectedVersion::Any, &events);
                if expected.closed.get(&name) == Some(&true) {
                    assert!(
                        matches!(result, Err(Error::StreamDeleted { .. })),
                        "{name} was deleted: {result:?}"
                    );
                }
                refusal(result);
            }
            LifecycleOp::SetMetadata {
                stream,
                max_count,
                expire_all,
                truncate_before,
            } => {
                let name = stream_name(*stream);
                let mut metadata = StreamMetadata::new();
                if let Some(count) = max_count {
                    metadata = metadata.max_count(u64::from(count % 8));
                }
                if let Some(all) = expire_all {
                    metadata = metadata.max_age(if *all {
                        Duration::from_nanos(1)
                    } else {
                        Duration::from_secs(86_400)
                    });
                }
                if let Some(before) = truncate_before {
                    metadata = metadata.truncate_before(u64::from(before % 16));
                }
                let result = store.set_stream_metadata(&name, ExpectedVersion::Any, metadata);
                if result.is_ok() {
                    match metadata.max_count {
                        Some(count) => expected.max_count.insert(name, count),
                        None => expected.max_count.remove(&name),
                    };
                }
                refusal(result);
            }
            LifecycleOp::Delete { stream, hard } => {
                let name = stream_name(*stream);
                let mode = if *hard {
                    DeleteMode::Hard
                } else {
                    DeleteMode::Soft
                };
                let result = store.delete_stream(&name, ExpectedVersion::Any, mode);
                if result.is_ok() && *hard {
                    expected.closed.insert(name, true);
                }
                refusal(result);
            }
            LifecycleOp::Truncate { stream, before } => {
                refusal(store.truncate_stream(&stream_name(*stream), u64::from(*before % 16)));
            }
            LifecycleOp::Forget { subject } => {
                store
                    .forget(&format!("who-{}", subject % 4))
                    .expect("forget");
            }
            LifecycleOp::Erase { stream, first, len } => {
                let first = u64::from(first % 16);
                let name = stream_name(*stream);
                refusal(store.erase_events(&name, first, first + u64::from(len % 4)));
                let read = store
                    .read_stream(&name, first, Direction::Forward, usize::from(len % 4) + 1)
                    .expect("read_stream");
                let last = first + u64::from(len % 4);
                assert!(
                    read.iter()
                        .filter(|e| e.version <= last)
                        .all(|e| e.erased && e.payload.is_empty()),
                    "{name} {first}..={last} erased: {read:?}"
                );
            }
            LifecycleOp::Scavenge => {
                let before = reads(&store);
                store.scavenge().expect("scavenge");
                assert_eq!(
                    reads(&store),
                    before,
                    "a scavenge changed what reads return"
                );
            }
            LifecycleOp::Reopen => {
                let before = reads(&store);
                store.close().expect("close");
                store = open(&disk);
                assert_eq!(reads(&store), before, "a reopen changed what reads return");
            }
        }
        check(&store, &expected);
    }
    let before = reads(&store);
    store.scavenge().expect("final scavenge");
    assert_eq!(
        reads(&store),
        before,
        "the final scavenge changed what reads return"
    );
    let report =
        evstore::verify::verify_store_on(&disk, &store_dir(), &mut |_| {}).expect("verify");
    assert!(report.is_clean(), "{report:?}");
}
