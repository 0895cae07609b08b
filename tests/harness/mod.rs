//! The logic shared by the fuzz targets (`fuzz/fuzz_targets/*.rs` include
//! this file) and the regression tests that replay them on stable.
//!
//! A workload is a list of [`Op`]s decoded from arbitrary bytes. It runs
//! against a store on a [`SimDisk`] while a [`Model`] records what every
//! append, snapshot save, checkpoint save and projection run was told;
//! after a simulated crash the recovered store is checked against the
//! model (DESIGN §7).

#![allow(dead_code)]

pub mod lifecycle;

use arbitrary::{Arbitrary, Unstructured};
use evstore::storage::{CrashPlan, SimDisk};
use evstore::{
    AppendCondition, AppendResult, Commit, CommitResult, Direction, Durability, Error, EventData,
    ExpectedVersion, Filter, Options, ProjectionOptions, Query, QueryItem, RecordedEvent, Store,
    Uuid,
};
use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{mpsc, Arc};
use std::time::{Duration, Instant};

/// Where the store lives on the simulated disk.
pub fn store_dir() -> PathBuf {
    PathBuf::from("/sim/store")
}

/// Options that keep the simulation small and its operation order
/// deterministic: tiny segments, no helper thread, no timed flushes.
pub fn sim_options(disk: &SimDisk, durability: Durability) -> Options {
    Options::default()
        .segment_size(4096)
        .durability(durability)
        .background_preallocation(false)
        .background_index_writes(false)
        .flush_interval(Duration::from_secs(3600))
        .snapshots_kept(SNAPSHOTS_KEPT)
        .storage(Arc::new(disk.clone()))
}

/// One event to append, in a compact form the fuzzer mutates well.
#[derive(Arbitrary, Debug, Clone)]
pub struct EventSpec {
    pub type_index: u8,
    pub payload_len: u16,
    pub metadata_len: u8,
    pub fill: u8,
}

/// What an append expects.
#[derive(Arbitrary, Debug, Clone, Copy)]
pub enum ExpectedSpec {
    Any,
    NoStream,
    StreamExists,
    /// `Exact` of the stream's current version (per the model), shifted by
    /// `delta - 2`, so most are right and some are off by one or two.
    Exact {
        delta: u8,
    },
}

/// An event of a commit: an [`EventSpec`] (its payload cut shorter than an
/// append's, so that commits of several streams fit a segment more often)
/// and its tags: those of [`TAGS`] whose bit is set in the low five bits of
/// `tags`, given in the order bits 5-6 choose (the store sorts them).
/// `0xFF` adds an empty tag and `0xFE` gives one tag twice: both refused.
#[derive(Arbitrary, Debug, Clone)]
pub struct TaggedEventSpec {
    pub event: EventSpec,
    pub tags: u8,
}

/// One stream's part of a commit; a part without events is left out.
#[derive(Arbitrary, Debug, Clone)]
pub struct PartSpec {
    pub stream: u8,
    pub expected: ExpectedSpec,
    pub events: Vec<TaggedEventSpec>,
}

/// A stream a commit only checks.
#[derive(Arbitrary, Debug, Clone, Copy)]
pub struct CheckSpec {
    pub stream: u8,
    pub expected: ExpectedSpec,
}

/// A commit's append condition: the query [`ModelQuery::of`] builds from
/// `tag` and `shape`, after a position [`Model::condition_after`] draws
/// from the positions the model knows, so that it sometimes holds and
/// sometimes fails.
#[derive(Arbitrary, Debug, Clone, Copy)]
pub struct ConditionSpec {
    pub tag: u8,
    pub shape: u8,
    pub after: u8,
}

/// One step of a workload.
#[derive(Debug, Clone)]
pub enum Op {
    Append {
        stream: u8,
        events: Vec<EventSpec>,
        expected: ExpectedSpec,
        sync: bool,
    },
    Flush,
    Reopen,
    ReadStream {
        stream: u8,
        from: u8,
        backward: bool,
        max: u8,
    },
    ReadAll {
        from: u16,
        backward: bool,
        max: u8,
    },
    /// Sends an earlier append again, same stream, same events, same ids,
    /// with `ExpectedVersion::Any`: a client retrying after a lost answer.
    Retry {
        of: u16,
        sync: bool,
    },
    /// Saves a snapshot of a stream: at its version per the model, less
    /// `back % 8 - 3` when that is positive, or one past it when `back` is
    /// 255 (refused); at version `back % 2` of a stream the model has no
    /// version for. The data is derived from the stream, the version and
    /// `size` (see [`snapshot_data`]). Then checks what loads return.
    Snapshot {
        stream: u8,
        back: u8,
        size: u8,
    },
    /// Saves the checkpoint [`CHECKPOINT_NAMES`]`[name % 5]` (the last of
    /// which is invalid, and refused) at the end of what readers see, less
    /// `back % 16`. Then checks what a load returns.
    Checkpoint {
        name: u8,
        back: u8,
    },
    /// Runs the projection [`PROJECTIONS`]`[name % 3]` from its checkpoint,
    /// saving one every `every % 4 + 1` events, until it has handled every
    /// durable event its filter passes, then stops it; see [`project`].
    Project {
        name: u8,
        every: u8,
    },
    /// One commit: the first three parts with events (at most four each),
    /// an optional check-only stream and an optional condition, all or
    /// nothing in one batch. Streams named twice are refused, as are
    /// invalid tags and queries.
    Commit {
        parts: Vec<PartSpec>,
        check: Option<CheckSpec>,
        condition: Option<ConditionSpec>,
        sync: bool,
    },
}

/// Selector values from here up decode as [`Op::Snapshot`]. Below it the
/// selector chooses among the other variants exactly as `derive(Arbitrary)`
/// chose before `Snapshot` existed (which gave these values to `Retry`), so
/// inputs written for those variants decode as before unless they used the
/// top sixteenth of `Retry`'s values.
pub const SNAPSHOT_SELECTOR: u32 = 0xF000_0000;

/// Selector values from here up to [`PROJECT_SELECTOR`] decode as
/// [`Op::Checkpoint`], and from there up to [`PROJECT_SELECTOR_END`] as
/// [`Op::Project`]: a band inside [`Op::Snapshot`]'s values that no input
/// of the checked-in corpora used, so those all decode as before.
pub const CHECKPOINT_SELECTOR: u32 = 0xF400_0000;
/// See [`CHECKPOINT_SELECTOR`].
pub const PROJECT_SELECTOR: u32 = 0xF800_0000;
/// See [`CHECKPOINT_SELECTOR`].
pub const PROJECT_SELECTOR_END: u32 = 0xFA00_0000;

/// Selector values from here up to [`COMMIT_SELECTOR_END`] decode as
/// [`Op::Commit`]: like [`CHECKPOINT_SELECTOR`]'s band, one inside
/// [`Op::Snapshot`]'s values that no input of the checked-in corpora used.
pub const COMMIT_SELECTOR: u32 = 0xFB00_0000;
/// See [`COMMIT_SELECTOR`].
pub const COMMIT_SELECTOR_END: u32 = 0xFC00_0000;

impl<'a> Arbitrary<'a> for Op {
    fn arbitrary(u: &mut Unstructured<'a>) -> arbitrary::Result<Self> {
        let selector = u32::arbitrary(u)?;
        if (CHECKPOINT_SELECTOR..PROJECT_SELECTOR).contains(&selector) {
            return Ok(Op::Checkpoint {
                name: u.arbitrary()?,
                back: u.arbitrary()?,
            });
        }
        if (PROJECT_SELECTOR..PROJECT_SELECTOR_END).contains(&selector) {
            return Ok(Op::Project {
                name: u.arbitrary()?,
                every: u.arbitrary()?,
            });
        }
        if (COMMIT_SELECTOR..COMMIT_SELECTOR_END).contains(&selector) {
            return Ok(Op::Commit {
                parts: u.arbitrary()?,
                check: u.arbitrary()?,
                condition: u.arbitrary()?,
                sync: u.arbitrary()?,
            });
        }
        if selector >= SNAPSHOT_SELECTOR {
            return Ok(Op::Snapshot {
                stream: u.arbitrary()?,
                back: u.arbitrary()?,
                size: u.arbitrary()?,
            });
        }
        Ok(match (u64::from(selector) * 6) >> 32 {
            0 => Op::Append {
                stream: u.arbitrary()?,
                events: u.arbitrary()?,
                expected: u.arbitrary()?,
                sync: u.arbitrary()?,
            },
            1 => Op::Flush,
            2 => Op::Reopen,
            3 => Op::ReadStream {
                stream: u.arbitrary()?,
                from: u.arbitrary()?,
                backward: u.arbitrary()?,
                max: u.arbitrary()?,
            },
            4 => Op::ReadAll {
                from: u.arbitrary()?,
                backward: u.arbitrary()?,
                max: u.arbitrary()?,
            },
            _ => Op::Retry {
                of: u.arbitrary()?,
                sync: u.arbitrary()?,
            },
        })
    }
}

impl Op {
    /// The bytes [`Op::arbitrary`] decodes as this op.
    pub fn encode(&self, out: &mut Vec<u8>) {
        // The smallest selector `(selector * 6) >> 32` maps to variant `k`.
        let variant = |k: u64| (k << 32).div_ceil(6) as u32;
        match self {
            Op::Append {
                stream,
                events,
                expected,
                sync,
            } => {
                out.extend(variant(0).to_le_bytes());
                out.push(*stream);
                for e in events {
                    out.push(1);
                    e.encode(out);
                }
                out.push(0);
                expected.encode(out);
                out.push(u8::from(*sync));
            }
            Op::Flush => out.extend(variant(1).to_le_bytes()),
            Op::Reopen => out.extend(variant(2).to_le_bytes()),
            Op::ReadStream {
                stream,
                from,
                backward,
                max,
            } => {
                out.extend(variant(3).to_le_bytes());
                out.extend([*stream, *from, u8::from(*backward), *max]);
            }
            Op::ReadAll {
                from,
                backward,
                max,
            } => {
                out.extend(variant(4).to_le_bytes());
                out.extend(from.to_le_bytes());
                out.extend([u8::from(*backward), *max]);
            }
            Op::Retry { of, sync } => {
                out.extend(variant(5).to_le_bytes());
                out.extend(of.to_le_bytes());
                out.push(u8::from(*sync));
            }
            Op::Snapshot { stream, back, size } => {
                out.extend(SNAPSHOT_SELECTOR.to_le_bytes());
                out.extend([*stream, *back, *size]);
            }
            Op::Checkpoint { name, back } => {
                out.extend(CHECKPOINT_SELECTOR.to_le_bytes());
                out.extend([*name, *back]);
            }
            Op::Project { name, every } => {
                out.extend(PROJECT_SELECTOR.to_le_bytes());
                out.extend([*name, *every]);
            }
            Op::Commit {
                parts,
                check,
                condition,
                sync,
            } => {
                out.extend(COMMIT_SELECTOR.to_le_bytes());
                for part in parts {
                    out.push(1);
                    out.push(part.stream);
                    part.expected.encode(out);
                    for e in &part.events {
                        out.push(1);
                        e.event.encode(out);
                        out.push(e.tags);
                    }
                    out.push(0);
                }
                out.push(0);
                match check {
                    None => out.push(0),
                    Some(c) => {
                        out.push(1);
                        out.push(c.stream);
                        c.expected.encode(out);
                    }
                }
                match condition {
                    None => out.push(0),
                    Some(c) => out.extend([1, c.tag, c.shape, c.after]),
                }
                out.push(u8::from(*sync));
            }
        }
    }
}

impl EventSpec {
    /// The bytes `derive(Arbitrary)` decodes as this spec.
    fn encode(&self, out: &mut Vec<u8>) {
        out.push(self.type_index);
        out.extend(self.payload_len.to_le_bytes());
        out.extend([self.metadata_len, self.fill]);
    }
}

impl ExpectedSpec {
    /// The bytes `derive(Arbitrary)` decodes as this spec: the smallest
    /// selector of its variant, then its field.
    fn encode(&self, out: &mut Vec<u8>) {
        let (k, delta) = match self {
            ExpectedSpec::Any => (0u32, None),
            ExpectedSpec::NoStream => (1, None),
            ExpectedSpec::StreamExists => (2, None),
            ExpectedSpec::Exact { delta } => (3, Some(*delta)),
        };
        out.extend((k << 30).to_le_bytes());
        out.extend(delta);
    }
}

const STREAMS: [&str; 6] = [
    "order-1",
    "order-2",
    "cart-7",
    "user-ada",
    "a",
    "x-long-stream-name",
];
const TYPES: [&str; 4] = ["Created", "Updated", "Deleted", "SomethingHappened"];

fn stream_name(i: u8) -> &'static str {
    STREAMS[i as usize % STREAMS.len()]
}

/// The tags commits put on events: plain ones that share a prefix, one
/// that sorts after every ASCII one, and a one-letter one.
pub const TAGS: [&str; 5] = ["course:c1", "course:c2", "student:s7", "ünï:名前", "t"];

/// The tags of a [`TaggedEventSpec`], in the order given.
fn tags_for(bits: u8) -> Vec<&'static str> {
    match bits {
        0xFF => vec![TAGS[0], ""],
        0xFE => vec![TAGS[4], TAGS[4]],
        _ => {
            let mut tags: Vec<&'static str> = TAGS
                .iter()
                .enumerate()
                .filter(|(i, _)| bits >> i & 1 == 1)
                .map(|(_, t)| *t)
                .collect();
            match (bits >> 5) & 3 {
                1 => tags.reverse(),
                2 if !tags.is_empty() => tags.rotate_left(1),
                _ => {}
            }
            tags
        }
    }
}

/// Whether the store takes these tags on one event (the harness's invalid
/// ones are an empty tag and a tag given twice).
fn valid_tags(tags: &[String]) -> bool {
    let mut sorted: Vec<&str> = tags.iter().map(String::as_str).collect();
    sorted.sort_unstable();
    sorted.dedup();
    sorted.len() == tags.len() && tags.iter().all(|t| !t.is_empty())
}

/// A query as the model builds and evaluates it: items of an optional
/// event type and the tags an event must all carry; `None` is
/// [`Query::all`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ModelQuery(pub Option<Vec<(Option<&'static str>, Vec<&'static str>)>>);

impl ModelQuery {
    /// The query of a [`ConditionSpec`]: of one tag, of two tags together,
    /// of a type and a tag, of either of two tags, or of a type alone;
    /// `shape` 0xFF gives a query of no item and 0xFE one of an item naming
    /// nothing, both refused.
    pub fn of(tag: u8, shape: u8) -> ModelQuery {
        let t1 = TAGS[usize::from(tag) % TAGS.len()];
        let t2 = TAGS[usize::from(tag) / TAGS.len() % TAGS.len()];
        let ty = TYPES[usize::from(tag) / 25 % TYPES.len()];
        ModelQuery(Some(match shape {
            0xFF => vec![],
            0xFE => vec![(None, vec![])],
            _ => match shape % 5 {
                0 => vec![(None, vec![t1])],
                1 => vec![(None, vec![t1, t2])],
                2 => vec![(Some(ty), vec![t1])],
                3 => vec![(None, vec![t1]), (None, vec![t2])],
                _ => vec![(Some(ty), vec![])],
            },
        }))
    }

    /// The store's query.
    pub fn query(&self) -> Query {
        match &self.0 {
            None => Query::all(),
            Some(items) => Query::items(
                items
                    .iter()
                    .map(|(ty, tags)| QueryItem::new().types(*ty).tags(tags.iter().copied())),
            ),
        }
    }

    /// Whether the store takes it.
    pub fn valid(&self) -> bool {
        self.0.as_ref().is_none_or(|items| {
            !items.is_empty()
                && items
                    .iter()
                    .all(|(ty, tags)| ty.is_some() || !tags.is_empty())
        })
    }

    /// Whether an event of `event_type` with `tags` matches, decided
    /// without the store's code.
    pub fn matches<S: AsRef<str>>(&self, event_type: &str, tags: &[S]) -> bool {
        self.0.as_ref().is_none_or(|items| {
            items.iter().any(|(ty, wanted)| {
                ty.is_none_or(|t| t == event_type)
                    && wanted.iter().all(|w| tags.iter().any(|t| t.as_ref() == *w))
            })
        })
    }
}

/// The queries checked against a scan of the log after recovery (see
/// [`check_query_reads`]): every tag, pairs, types with tags, either of two
/// tags, types alone, and every event.
pub fn checked_queries() -> Vec<ModelQuery> {
    let mut queries: Vec<ModelQuery> = (0..TAGS.len() as u8)
        .map(|t| ModelQuery::of(t, 0))
        .collect();
    for (tag, shape) in [
        (5, 1),
        (11, 1),
        (27, 2),
        (60, 2),
        (7, 3),
        (19, 3),
        (0, 4),
        (75, 4),
    ] {
        queries.push(ModelQuery::of(tag, shape));
    }
    queries.push(ModelQuery(None));
    queries
}

/// The names [`Op::Checkpoint`] saves under: plain, non-ASCII, one
/// character, the longest allowed (256 bytes), and one with a control
/// character, which is refused. Their file names' readable prefixes differ,
/// which [`checkpoint_file`] relies on.
pub const CHECKPOINT_NAMES: [&str; 5] = [
    "balances",
    "Ünïcode-名前",
    "a",
    concat!(
        "long-",
        "zzzzzzzzzzzzzzzzzzzzzzzzzzzzzzzzzzzzzzzzzzzzzzzzzzzzzzzzzzzzzzzzzzzzzzzzzzzzzzzzzzzzzzzzzzzzzzzzzzzzzzzzzzzzzzzzzzzzzzzzz",
        "zzzzzzzzzzzzzzzzzzzzzzzzzzzzzzzzzzzzzzzzzzzzzzzzzzzzzzzzzzzzzzzzzzzzzzzzzzzzzzzzzzzzzzzzzzzzzzzzzzzzzzzzzzzzzzzzzzzzzzzzzz",
        "zzzzzzzz"
    ),
    "bad\nname",
];

/// The projections [`Op::Project`] runs, each with a filter of its own
/// (see [`projection_filter`]).
pub const PROJECTIONS: [&str; 3] = ["proj-orders", "proj-all", "proj-created"];

/// The events a projection of [`PROJECTIONS`] handles.
pub fn projection_filter(name: &str) -> fn(&RecordedEvent) -> bool {
    match name {
        "proj-orders" => |e| e.stream.starts_with("order-"),
        "proj-created" => |e| &*e.event_type == "Created",
        _ => |_| true,
    }
}

/// The stream [`check_appendable`] appends to.
const AFTER_RECOVERY: &str = "after-recovery";

/// How many snapshots per stream the simulated stores keep.
pub const SNAPSHOTS_KEPT: usize = 2;

/// The data a snapshot of `stream` at `version` holds: `3 * size` bytes
/// that start with the stream and the version, so that a snapshot handed
/// back for the wrong stream or version, or a mix of two saves, shows.
pub fn snapshot_data(stream: &str, version: u64, size: u8) -> Vec<u8> {
    let len = usize::from(size) * 3;
    let mut data = format!("{stream}@{version}/{len}:").into_bytes();
    let seed = version.wrapping_mul(0x9E37_79B9) ^ len as u64;
    data.extend((0..len as u64).map(|i| (seed.wrapping_add(i.wrapping_mul(131)) >> 3) as u8));
    data.truncate(len);
    data
}

/// What an append or commit wrote: its positions, and each stream's
/// versions and positions, in the order of its parts.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Written {
    pub first_position: u64,
    pub last_position: u64,
    pub streams: Vec<AppendResult>,
}

impl From<AppendResult> for Written {
    fn from(r: AppendResult) -> Written {
        Written {
            first_position: r.first_position,
            last_position: r.last_position,
            streams: vec![r],
        }
    }
}

impl From<CommitResult> for Written {
    fn from(r: CommitResult) -> Written {
        Written {
            first_position: r.first_position,
            last_position: r.last_position,
            streams: r.streams,
        }
    }
}

/// What one append or commit was told.
#[derive(Debug, Clone)]
pub enum Outcome {
    /// Acknowledged with this result.
    Acked(Written),
    /// Refused before anything was written (wrong expected version, bad
    /// input): must never appear.
    Rejected,
    /// Failed with an I/O error, poisoning or close: may or may not exist.
    Unknown,
    /// Not recovered after a crash (it was allowed to be lost): must never
    /// come back.
    Lost,
}

/// What a commit sent besides its events, resolved against the model as it
/// was then: a retry sends it again.
#[derive(Debug, Clone)]
pub struct SentCommit {
    /// The expected version of each part.
    pub expected: Vec<ExpectedVersion>,
    /// The stream only checked.
    pub check: Option<(&'static str, ExpectedVersion)>,
    /// The condition's query and its `after`.
    pub condition: Option<(ModelQuery, Option<u64>)>,
}

/// An append or commit as the model remembers it.
#[derive(Debug, Clone)]
pub struct Attempt {
    /// The streams written, in order, each with how many of `events` (the
    /// next ones) are its: one part for an append.
    pub parts: Vec<(&'static str, usize)>,
    pub events: Vec<EventData>,
    /// For a commit, the rest of what it sent.
    pub commit: Option<SentCommit>,
    pub durability: Durability,
    pub outcome: Outcome,
    /// When its events were (or may have been) written, in the order of
    /// the model's writes: a retry that wrote them moves this.
    pub seq: u64,
    /// False when a failed retry left it unknown whether the events were
    /// written at the first try or at the retry.
    pub order_known: bool,
}

impl Attempt {
    /// The stream of each event, in order.
    pub fn event_streams(&self) -> impl Iterator<Item = &'static str> + '_ {
        self.parts
            .iter()
            .flat_map(|&(stream, n)| std::iter::repeat_n(stream, n))
    }

    /// Whether it wrote (or may have written) more than one stream.
    pub fn is_multi_stream(&self) -> bool {
        self.parts.len() > 1
    }

    /// The commit it sent (for a commit), to send again with `durability`.
    pub fn resend(&self, durability: Durability) -> Option<Commit> {
        let sent = self.commit.as_ref()?;
        let mut commit = Commit::new().durability(durability);
        let mut at = 0;
        for (&(stream, n), &expected) in self.parts.iter().zip(&sent.expected) {
            commit = commit.append(stream, expected, self.events[at..at + n].to_vec());
            at += n;
        }
        if let Some((stream, expected)) = sent.check {
            commit = commit.check(stream, expected);
        }
        if let Some((query, after)) = &sent.condition {
            commit = commit.condition(AppendCondition::new(query.query(), *after));
        }
        Some(commit)
    }
}

/// Why the model expects an append or commit to be refused.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Refusal {
    Empty,
    TooLarge,
    /// The first stream, written or checked, not at its expected version,
    /// and its version.
    WrongVersion(&'static str, Option<u64>),
    /// The first event at a position after the condition's that matches
    /// its query.
    ConditionFailed(u64),
    /// A stream named twice, no event over several parts, a bad query.
    InvalidRequest,
    InvalidTag,
}

/// Whether an error refuses before anything is written.
fn is_refusal(e: &Error) -> bool {
    matches!(
        e,
        Error::WrongExpectedVersion { .. }
            | Error::EmptyBatch
            | Error::BatchTooLarge { .. }
            | Error::EventTooLarge { .. }
            | Error::AppendConditionFailed { .. }
            | Error::InvalidRequest { .. }
            | Error::InvalidTag { .. }
    )
}

/// Checks an answer against the model's prediction, when no fault is
/// injected.
fn check_answer(
    what: &str,
    result: &evstore::Result<Written>,
    predicted: &Result<Written, Refusal>,
) {
    match (result, predicted) {
        (Ok(r), Ok(p)) => assert_eq!(r, p, "{what}"),
        (
            Err(Error::WrongExpectedVersion { stream, actual, .. }),
            Err(Refusal::WrongVersion(s, a)),
        ) => assert_eq!((stream.as_str(), *actual), (*s, *a), "{what}"),
        (Err(Error::AppendConditionFailed { position }), Err(Refusal::ConditionFailed(p))) => {
            assert_eq!(position, p, "{what}")
        }
        (Err(Error::EmptyBatch), Err(Refusal::Empty))
        | (Err(Error::BatchTooLarge { .. }), Err(Refusal::TooLarge))
        | (Err(Error::InvalidRequest { .. }), Err(Refusal::InvalidRequest))
        | (Err(Error::InvalidTag { .. }), Err(Refusal::InvalidTag)) => {}
        (r, p) => panic!("{what}: got {r:?}, model says {p:?}"),
    }
}

/// Bytes one event takes in a batch: its record's header, stream name,
/// type, tags, metadata and payload, padded to 8.
fn encoded_len(stream: &str, e: &EventData) -> usize {
    let tags: usize = e.tags().iter().map(|t| 2 + t.len()).sum();
    (64 + stream.len() + e.event_type().len() + tags + e.metadata().len() + e.payload().len() + 7)
        & !7
}

/// Whether a batch of `encoded` bytes of records is too large: a 4 KiB
/// segment less its header and the room kept for a mark and a seal.
fn too_large(encoded: usize) -> bool {
    32 + encoded > 4096 - 64 - 64
}

/// What the store has been told and must honour.
#[derive(Debug, Default, Clone)]
pub struct Model {
    pub attempts: Vec<Attempt>,
    /// Every acknowledged attempt whose `seq` is below this is durable (a
    /// later sync append or flush covered it).
    pub durable_seq: u64,
    /// The `seq` of the next write.
    pub next_seq: u64,
    /// Stream versions as the acknowledged appends left them.
    pub versions: HashMap<&'static str, u64>,
    /// The next position as the acknowledged appends left it.
    pub next_position: u64,
    /// Whether the store runs in `Durability::Buffered` mode, where an
    /// acknowledged snapshot save flushed every append before it.
    pub buffered_store: bool,
    /// What the snapshot saves of each stream were told.
    pub snapshots: BTreeMap<&'static str, StreamSnapshots>,
    /// What the saves of each checkpoint name ([`Op::Checkpoint`]) were
    /// told.
    pub checkpoints: BTreeMap<&'static str, CheckpointModel>,
    /// What each projection's runs did.
    pub projections: BTreeMap<&'static str, ProjectionModel>,
    /// The files a bit was flipped in, after a clean close.
    pub flipped: Vec<PathBuf>,
    /// Each refused append or commit (and retry): its attempt and the
    /// error's name.
    pub refusals: Vec<(usize, &'static str)>,
}

/// The name of a refusal's error, as [`Model::refusals`] lists it.
fn refusal_name(e: &Error) -> &'static str {
    match e {
        Error::WrongExpectedVersion { .. } => "WrongExpectedVersion",
        Error::AppendConditionFailed { .. } => "AppendConditionFailed",
        Error::InvalidRequest { .. } => "InvalidRequest",
        Error::InvalidTag { .. } => "InvalidTag",
        Error::EmptyBatch => "EmptyBatch",
        Error::BatchTooLarge { .. } | Error::EventTooLarge { .. } => "TooLarge",
        _ => "other",
    }
}

/// The checkpoint file of one name, as the model knows it.
#[derive(Debug, Clone, Default)]
pub struct CheckpointModel {
    /// The value of the last acknowledged save: durable, so a load returns
    /// it unless a later save may have replaced it.
    pub acked: Option<u64>,
    /// Inclusive ranges of the values saves since then may have left (a
    /// failed save may have got as far as the rename, durable or not).
    pub may: Vec<(u64, u64)>,
    /// Saves acknowledged.
    pub saves_acked: usize,
    /// Saves that failed after they may have written.
    pub saves_failed: usize,
}

impl CheckpointModel {
    /// Whether a load may return `value`.
    pub fn allows(&self, value: Option<u64>) -> bool {
        value == self.acked
            || value.is_some_and(|v| self.may.iter().any(|&(lo, hi)| (lo..=hi).contains(&v)))
    }

    fn saved(&mut self, value: u64) {
        self.acked = Some(value);
        self.may.clear();
        self.saves_acked += 1;
    }

    fn failed(&mut self, lo: u64, hi: u64) {
        self.may.push((lo, hi));
        self.saves_failed += 1;
    }

    /// After a crash nothing is pending: what loads now is durable.
    fn settled(&mut self, value: Option<u64>) {
        self.acked = value;
        self.may.clear();
    }
}

/// What the runs of one projection did.
#[derive(Debug, Clone, Default)]
pub struct ProjectionModel {
    /// Its checkpoint.
    pub checkpoint: CheckpointModel,
    /// Every event any run handled: position and id.
    pub handled: BTreeMap<u64, Uuid>,
    /// Events handled, over all runs (more than `handled` holds when some
    /// were handled again).
    pub calls: usize,
    /// Runs that stopped cleanly, and runs that failed.
    pub runs_ok: usize,
    pub runs_failed: usize,
    /// Runs that handled an event a run before had handled.
    pub repeats: usize,
}

/// The snapshot file of one version of a stream, as the model knows it.
#[derive(Debug, Clone, Default)]
pub struct SnapshotFile {
    /// What the file may hold: the data of the last acknowledged save at
    /// this version, then that of every save attempted since, each with
    /// the id of the stream's event at this version when it was saved
    /// (`None` if there was none to read).
    pub candidates: Vec<(Vec<u8>, Option<Uuid>)>,
}

/// The snapshot files of one stream, as the model knows them.
#[derive(Debug, Clone, Default)]
pub struct StreamSnapshots {
    /// Every version a save may have left a file of, whether it was
    /// acknowledged or not. A file the store pruned may come back after a
    /// crash (removals are not synced), so only files set aside as damaged
    /// leave this map.
    pub files: BTreeMap<u64, SnapshotFile>,
    /// The versions whose file must be there: acknowledged saves that no
    /// prune can have removed, because fewer than [`SNAPSHOTS_KEPT`] newer
    /// versions may exist.
    pub kept: BTreeSet<u64>,
    /// The newest version an acknowledged save wrote. Pruning never removes
    /// a stream's newest file, so a load returns this version or a newer
    /// one.
    pub newest_acked: Option<u64>,
    /// Saves acknowledged.
    pub acked: usize,
    /// Saves that failed after they may have written.
    pub failed: usize,
}

fn event_id(attempt: usize, index: usize) -> Uuid {
    Uuid::from_u128(((attempt as u128) << 32) | index as u128 | (0xE5u128 << 120))
}

fn decode_id(id: Uuid) -> Option<(usize, usize)> {
    let v = id.as_u128();
    if v >> 120 != 0xE5 {
        return None;
    }
    Some((
        ((v >> 32) & 0xFFFF_FFFF) as usize,
        (v & 0xFFFF_FFFF) as usize,
    ))
}

impl Model {
    /// An empty model of a store opened with `durability`.
    pub fn for_store(durability: Durability) -> Model {
        Model {
            buffered_store: durability == Durability::Buffered,
            ..Model::default()
        }
    }

    /// Builds the events of an append so their ids name the attempt.
    pub fn events_for(&self, specs: &[EventSpec]) -> Vec<EventData> {
        let attempt = self.attempts.len();
        specs
            .iter()
            .take(8)
            .enumerate()
            .map(|(i, spec)| {
                let payload: Vec<u8> = (0..spec.payload_len % 1200)
                    .map(|b| spec.fill.wrapping_add(b as u8))
                    .collect();
                let metadata = vec![spec.fill ^ 0x5A; (spec.metadata_len % 40) as usize];
                EventData::new(TYPES[spec.type_index as usize % TYPES.len()], payload)
                    .with_metadata(metadata)
                    .with_id(event_id(attempt, i))
            })
            .collect()
    }

    fn expected(&self, stream: &'static str, spec: ExpectedSpec) -> ExpectedVersion {
        match spec {
            ExpectedSpec::Any => ExpectedVersion::Any,
            ExpectedSpec::NoStream => ExpectedVersion::NoStream,
            ExpectedSpec::StreamExists => ExpectedVersion::StreamExists,
            ExpectedSpec::Exact { delta } => {
                let current = self.versions.get(stream).map_or(-1i64, |&v| v as i64);
                let v = current + (delta % 5) as i64 - 2;
                ExpectedVersion::Exact(v.max(0) as u64)
            }
        }
    }

    /// What the store must answer an append, when the store has not failed.
    fn predict(
        &self,
        stream: &'static str,
        expected: ExpectedVersion,
        events: &[EventData],
    ) -> Result<Written, Refusal> {
        if events.is_empty() {
            return Err(Refusal::Empty);
        }
        if too_large(events.iter().map(|e| encoded_len(stream, e)).sum()) {
            return Err(Refusal::TooLarge);
        }
        let actual = self.versions.get(stream).copied();
        if !expected.matches(actual) {
            return Err(Refusal::WrongVersion(stream, actual));
        }
        let count = events.len() as u64;
        let first_version = actual.map_or(0, |v| v + 1);
        Ok(AppendResult::new(
            first_version,
            first_version + count - 1,
            self.next_position,
            self.next_position + count - 1,
        )
        .into())
    }

    /// Builds the parts, events and the rest of an [`Op::Commit`] against
    /// the model as it is: ids naming the attempt, expected versions from
    /// the streams' versions, the condition's `after` from the positions
    /// of the events it matches.
    pub fn commit_for(
        &self,
        parts: &[PartSpec],
        check: Option<&CheckSpec>,
        condition: Option<&ConditionSpec>,
    ) -> (Vec<(&'static str, usize)>, Vec<EventData>, SentCommit) {
        let attempt = self.attempts.len();
        let mut placed = Vec::new();
        let mut events = Vec::new();
        let mut expected = Vec::new();
        for part in parts.iter().filter(|p| !p.events.is_empty()).take(3) {
            let stream = stream_name(part.stream);
            let specs = &part.events[..part.events.len().min(4)];
            for spec in specs {
                let e = &spec.event;
                let payload: Vec<u8> = (0..e.payload_len % 400)
                    .map(|b| e.fill.wrapping_add(b as u8))
                    .collect();
                let metadata = vec![e.fill ^ 0x3C; (e.metadata_len % 24) as usize];
                events.push(
                    EventData::new(TYPES[e.type_index as usize % TYPES.len()], payload)
                        .with_metadata(metadata)
                        .with_tags(tags_for(spec.tags))
                        .with_id(event_id(attempt, events.len())),
                );
            }
            placed.push((stream, specs.len()));
            expected.push(self.expected(stream, part.expected));
        }
        let check = check.map(|c| {
            let stream = stream_name(c.stream);
            (stream, self.expected(stream, c.expected))
        });
        let condition = condition.map(|c| {
            let query = ModelQuery::of(c.tag, c.shape);
            let after = self.condition_after(&query, c.after);
            (query, after)
        });
        let sent = SentCommit {
            expected,
            check,
            condition,
        };
        (placed, events, sent)
    }

    /// The `after` of a condition on `query`, drawn from what the model
    /// knows: by `choice % 4`, the end of the log (the condition holds
    /// unless something the model does not know of was written), the start
    /// (it fails at the first match, if any), a matching position some
    /// matches back (`choice / 4` of them: it holds at the last one, fails
    /// at the next match otherwise), or just before one (it fails there).
    pub fn condition_after(&self, query: &ModelQuery, choice: u8) -> Option<u64> {
        let head = self.next_position.checked_sub(1);
        let matching: Vec<u64> = acked_log(self, self.next_position)
            .into_iter()
            .filter(|(_, _, e)| query.matches(e.event_type(), e.tags()))
            .map(|(_, p, _)| p)
            .collect();
        let back = usize::from(choice / 4);
        let pick = |k: usize| matching[matching.len() - 1 - k % matching.len()];
        match choice % 4 {
            0 => head,
            1 => None,
            _ if matching.is_empty() => head.map(|h| h.saturating_sub(back as u64)),
            2 => Some(pick(back)),
            _ => pick(back).checked_sub(1),
        }
    }

    /// What the store must answer a commit, when the store has not failed:
    /// refusals in the order the store checks (streams named twice or a bad
    /// query, no event, invalid tags, the size, each stream's expected
    /// version in order, then the condition), else the positions and
    /// versions it writes.
    pub fn predict_commit(
        &self,
        parts: &[(&'static str, usize)],
        events: &[EventData],
        sent: &SentCommit,
    ) -> Result<Written, Refusal> {
        if parts.len() > 1 || sent.check.is_some() {
            let mut names: Vec<&str> = parts.iter().map(|p| p.0).collect();
            names.extend(sent.check.map(|c| c.0));
            names.sort_unstable();
            if names.windows(2).any(|w| w[0] == w[1]) {
                return Err(Refusal::InvalidRequest);
            }
        }
        if sent.condition.as_ref().is_some_and(|(q, _)| !q.valid()) {
            return Err(Refusal::InvalidRequest);
        }
        if events.is_empty() {
            return Err(if parts.len() == 1 {
                Refusal::Empty
            } else {
                Refusal::InvalidRequest
            });
        }
        if events.iter().any(|e| !valid_tags(e.tags())) {
            return Err(Refusal::InvalidTag);
        }
        let attempt = Attempt {
            parts: parts.to_vec(),
            events: events.to_vec(),
            commit: None,
            durability: Durability::Sync,
            outcome: Outcome::Unknown,
            seq: 0,
            order_known: true,
        };
        let encoded = attempt
            .event_streams()
            .zip(events)
            .map(|(s, e)| encoded_len(s, e))
            .sum();
        if too_large(encoded) {
            return Err(Refusal::TooLarge);
        }
        let checked = parts
            .iter()
            .map(|p| p.0)
            .zip(sent.expected.iter().copied())
            .chain(sent.check);
        for (stream, expected) in checked {
            let actual = self.versions.get(stream).copied();
            if !expected.matches(actual) {
                return Err(Refusal::WrongVersion(stream, actual));
            }
        }
        if let Some((query, after)) = &sent.condition {
            let first = acked_log(self, self.next_position)
                .into_iter()
                .find(|(_, p, e)| {
                    after.is_none_or(|a| *p > a) && query.matches(e.event_type(), e.tags())
                });
            if let Some((_, position, _)) = first {
                return Err(Refusal::ConditionFailed(position));
            }
        }
        let mut streams = Vec::new();
        let mut position = self.next_position;
        for &(stream, n) in parts {
            let n = n as u64;
            let first_version = self.versions.get(stream).map_or(0, |v| v + 1);
            streams.push(AppendResult::new(
                first_version,
                first_version + n - 1,
                position,
                position + n - 1,
            ));
            position += n;
        }
        Ok(Written {
            first_position: self.next_position,
            last_position: position - 1,
            streams,
        })
    }

    /// Records what an append (`commit` `None`) or a commit was told.
    fn record(
        &mut self,
        parts: Vec<(&'static str, usize)>,
        events: Vec<EventData>,
        commit: Option<SentCommit>,
        durability: Durability,
        result: &evstore::Result<Written>,
    ) {
        let outcome = match result {
            Ok(w) => {
                self.wrote(&parts, w);
                self.next_position = w.last_position + 1;
                Outcome::Acked(w.clone())
            }
            Err(e) if is_refusal(e) => {
                self.refusals.push((self.attempts.len(), refusal_name(e)));
                Outcome::Rejected
            }
            Err(_) => Outcome::Unknown,
        };
        self.attempts.push(Attempt {
            parts,
            events,
            commit,
            durability,
            outcome,
            seq: self.next_seq,
            order_known: true,
        });
        self.next_seq += 1;
        if result.is_ok() && durability == Durability::Sync {
            self.durable_seq = self.next_seq;
        }
    }

    /// The streams' versions and the next position after `parts` were
    /// written as `w` says.
    fn wrote(&mut self, parts: &[(&'static str, usize)], w: &Written) {
        for (&(stream, _), r) in parts.iter().zip(&w.streams) {
            self.versions.insert(stream, r.last_version);
        }
        self.next_position = self.next_position.max(w.last_position + 1);
    }

    /// Records what a retry of attempt `k` was told.
    fn record_retry(
        &mut self,
        k: usize,
        durability: Durability,
        result: &evstore::Result<Written>,
    ) {
        let already_written = matches!(self.attempts[k].outcome, Outcome::Acked(_));
        match result {
            Ok(w) => {
                if !already_written {
                    // The original never made it: the retry wrote the events.
                    let parts = self.attempts[k].parts.clone();
                    self.wrote(&parts, w);
                    self.attempts[k].outcome = Outcome::Acked(w.clone());
                    self.attempts[k].seq = self.next_seq;
                    self.next_seq += 1;
                }
                if durability == Durability::Sync {
                    // The retry is durable, and so is everything written before it.
                    let covered = self.attempts[k].seq + 1;
                    self.durable_seq = self.durable_seq.max(covered);
                }
            }
            // Refused before anything was written.
            Err(e) if is_refusal(e) => self.refusals.push((k, refusal_name(e))),
            // An I/O failure: the retry may or may not have written them.
            Err(_) if !already_written => {
                let attempt = &mut self.attempts[k];
                attempt.order_known &= matches!(attempt.outcome, Outcome::Rejected | Outcome::Lost);
                attempt.outcome = Outcome::Unknown;
                attempt.seq = self.next_seq;
                self.next_seq += 1;
            }
            Err(_) => {}
        }
    }

    fn flushed(&mut self) {
        self.durable_seq = self.next_seq;
    }

    /// The version an [`Op::Snapshot`] saves at.
    fn snapshot_version(&self, stream: &'static str, back: u8) -> u64 {
        match (self.versions.get(stream).copied(), back) {
            (None, _) => u64::from(back % 2),
            (Some(v), u8::MAX) => v + 1,
            (Some(v), _) => v.saturating_sub(u64::from((back % 8).saturating_sub(3))),
        }
    }

    /// Records what a snapshot save was told. `event_id` is the stream's
    /// event at `version` just before the save.
    pub fn record_snapshot(
        &mut self,
        stream: &'static str,
        version: u64,
        data: Vec<u8>,
        event_id: Option<Uuid>,
        result: &evstore::Result<()>,
    ) {
        if let Err(Error::SnapshotAhead { .. } | Error::InvalidStreamName { .. }) = result {
            // Refused before anything was written.
            return;
        }
        let acked = result.is_ok();
        let snaps = self.snapshots.entry(stream).or_default();
        let file = snaps.files.entry(version).or_default();
        let candidate = (data, event_id);
        if acked {
            // Renamed over whatever was there, durably.
            file.candidates = vec![candidate];
            snaps.kept.insert(version);
            snaps.newest_acked = snaps.newest_acked.max(Some(version));
            snaps.acked += 1;
        } else {
            if !file.candidates.contains(&candidate) {
                file.candidates.push(candidate);
            }
            snaps.failed += 1;
        }
        // The prune after the write (which a failed save may have reached)
        // keeps the newest files of the directory, which may hold any file
        // the model knows of.
        let versions: Vec<u64> = snaps.files.keys().copied().collect();
        snaps
            .kept
            .retain(|v| versions.iter().filter(|w| *w > v).count() < SNAPSHOTS_KEPT);
        if acked && self.buffered_store {
            // The save flushed the store first.
            self.flushed();
        }
    }

    /// After a store set snapshot files aside as damaged: they are gone.
    pub fn forget_snapshots(&mut self, set_aside: &[(&'static str, u64)]) {
        for (stream, version) in set_aside {
            if let Some(snaps) = self.snapshots.get_mut(stream) {
                snaps.files.remove(version);
                snaps.kept.remove(version);
                if snaps.newest_acked.is_some_and(|v| v >= *version) {
                    // Only what must be there vouches for a bound now.
                    snaps.newest_acked = snaps.kept.last().copied();
                }
            }
        }
    }
}

/// Runs `ops` against `store` (reopening through `reopen`), recording every
/// outcome in `model`. With `strict`, the store must behave exactly as the
/// model predicts (no faults are being injected).
pub fn run_ops(
    ops: &[Op],
    model: &mut Model,
    store: &mut Option<Store>,
    reopen: &mut dyn FnMut() -> evstore::Result<Store>,
    strict: bool,
) {
    for op in ops {
        let Some(current) = store.as_ref() else {
            return;
        };
        match op {
            Op::Append {
                stream,
                events,
                expected,
                sync,
            } => {
                let stream = stream_name(*stream);
                let events = model.events_for(events);
                let expected = model.expected(stream, *expected);
                let durability = if *sync {
                    Durability::Sync
                } else {
                    Durability::Buffered
                };
                let predicted = model.predict(stream, expected, &events);
                let result = current
                    .append_with_durability(stream, expected, &events, durability)
                    .map(Written::from);
                if strict {
                    check_answer(
                        &format!("append to {stream} with {expected:?}"),
                        &result,
                        &predicted,
                    );
                }
                let parts = vec![(stream, events.len())];
                model.record(parts, events, None, durability, &result);
            }
            Op::Commit {
                parts,
                check,
                condition,
                sync,
            } => {
                let durability = if *sync {
                    Durability::Sync
                } else {
                    Durability::Buffered
                };
                let (parts, events, sent) =
                    model.commit_for(parts, check.as_ref(), condition.as_ref());
                let predicted = model.predict_commit(&parts, &events, &sent);
                let attempt = Attempt {
                    parts,
                    events,
                    commit: Some(sent),
                    durability,
                    outcome: Outcome::Unknown,
                    seq: 0,
                    order_known: true,
                };
                let commit = attempt.resend(durability).expect("a commit");
                let result = current.commit(&commit).map(Written::from);
                if strict {
                    check_answer(&format!("{commit:?}"), &result, &predicted);
                }
                let Attempt {
                    parts,
                    events,
                    commit,
                    ..
                } = attempt;
                model.record(parts, events, commit, durability, &result);
            }
            Op::Retry { of, sync } => {
                if model.attempts.is_empty() {
                    continue;
                }
                let k = *of as usize % model.attempts.len();
                let durability = if *sync {
                    Durability::Sync
                } else {
                    Durability::Buffered
                };
                let attempt = &model.attempts[k];
                // A commit is sent again as it was, expected versions and
                // condition included: if it was written, the store must
                // recognise it by its ids before checking anything.
                let (predicted, result) = match attempt.resend(durability) {
                    Some(commit) => {
                        let predicted = match &attempt.outcome {
                            Outcome::Acked(w) => Ok(w.clone()),
                            _ => model.predict_commit(
                                &attempt.parts,
                                &attempt.events,
                                attempt.commit.as_ref().expect("a commit"),
                            ),
                        };
                        (predicted, current.commit(&commit).map(Written::from))
                    }
                    None => {
                        let stream = attempt.parts[0].0;
                        let predicted = match &attempt.outcome {
                            Outcome::Acked(w) => Ok(w.clone()),
                            _ => model.predict(stream, ExpectedVersion::Any, &attempt.events),
                        };
                        let result = current.append_with_durability(
                            stream,
                            ExpectedVersion::Any,
                            &attempt.events,
                            durability,
                        );
                        (predicted, result.map(Written::from))
                    }
                };
                if strict {
                    check_answer(
                        &format!("retry of attempt {k} ({:?})", attempt.parts),
                        &result,
                        &predicted,
                    );
                }
                model.record_retry(k, durability, &result);
            }
            Op::Flush => {
                let result = current.flush();
                if strict {
                    result.as_ref().expect("flush");
                }
                if result.is_ok() {
                    model.flushed();
                }
            }
            Op::Reopen => {
                let closed = store.take().map(Store::close);
                if strict {
                    closed.as_ref().expect("a store").as_ref().expect("close");
                }
                if let Some(Ok(())) = closed {
                    model.flushed();
                }
                match reopen() {
                    Ok(s) => *store = Some(s),
                    Err(e) if strict => panic!("reopen: {e}"),
                    Err(_) => return,
                }
            }
            Op::ReadStream {
                stream,
                from,
                backward,
                max,
            } => {
                let stream = stream_name(*stream);
                let direction = if *backward {
                    Direction::Backward
                } else {
                    Direction::Forward
                };
                let read = current.read_stream(stream, *from as u64, direction, *max as usize);
                if strict {
                    let read = read.expect("read_stream");
                    let end = visible_end(model, current);
                    check_stream_read(
                        model,
                        end,
                        stream,
                        *from as u64,
                        direction,
                        *max as usize,
                        &read,
                    );
                }
            }
            Op::ReadAll {
                from,
                backward,
                max,
            } => {
                let direction = if *backward {
                    Direction::Backward
                } else {
                    Direction::Forward
                };
                let read = current.read_all(*from as u64, direction, *max as usize);
                if strict {
                    let read = read.expect("read_all");
                    let end = visible_end(model, current);
                    check_all_read(model, end, *from as u64, direction, *max as usize, &read);
                }
            }
            Op::Snapshot { stream, back, size } => {
                let stream = stream_name(*stream);
                let version = model.snapshot_version(stream, *back);
                let data = snapshot_data(stream, version, *size);
                let event_id = current
                    .read_stream(stream, version, Direction::Forward, 1)
                    .ok()
                    .and_then(|events| events.first().map(|e| e.id));
                let visible = strict.then(|| visible_version(model, current, stream));
                let result = current.save_snapshot(stream, version, &data);
                if let Some(visible) = visible {
                    match &result {
                        Ok(()) if visible.is_some_and(|last| version <= last) => {}
                        Err(Error::SnapshotAhead { stream_version, .. })
                            if visible.is_none_or(|last| version > last) =>
                        {
                            assert_eq!(*stream_version, visible, "snapshot of {stream}");
                        }
                        r => panic!(
                            "snapshot of {stream} at {version}: got {r:?}, the stream is at {visible:?}"
                        ),
                    }
                }
                model.record_snapshot(stream, version, data, event_id, &result);
                // Without faults every load must work; with them a load
                // may fail, but what it returns must still be right.
                match check_stream_snapshots(model, current, stream, false) {
                    Ok(_) => {}
                    Err(SnapshotCheck::LoadFailed(_)) if !strict => {}
                    Err(e) => panic!("after a snapshot of {stream} at {version}: {e}"),
                }
            }
            Op::Checkpoint { name, back } => {
                let name = CHECKPOINT_NAMES[*name as usize % CHECKPOINT_NAMES.len()];
                let end = current.last_position().map_or(0, |p| p + 1);
                let position = end.saturating_sub(u64::from(*back % 16));
                if let Err(e) = save_checkpoint_checked(model, current, name, position, strict) {
                    panic!("checkpoint {name:?} at {position}: {e}");
                }
            }
            Op::Project { name, every } => {
                let name = PROJECTIONS[*name as usize % PROJECTIONS.len()];
                let every = u64::from(*every % 4) + 1;
                let bounds = strict.then(|| (model_durable_end(model), model.next_position));
                if let Err(e) = project(model, current, name, every, strict, bounds) {
                    panic!("projection {name} (every {every}): {e}");
                }
            }
        }
    }
}

/// Whether the store accepts `name` as a checkpoint name.
fn valid_checkpoint_name(name: &str) -> bool {
    !name.is_empty()
        && name.len() <= evstore::MAX_CHECKPOINT_NAME_LEN
        && !name.chars().any(char::is_control)
}

/// Saves checkpoint `name` at `position`, records what the save was told,
/// and checks what a load returns then: exactly the value saved without
/// faults, one the model allows with them. An invalid name must be refused
/// by both.
pub fn save_checkpoint_checked(
    model: &mut Model,
    store: &Store,
    name: &'static str,
    position: u64,
    strict: bool,
) -> Result<(), String> {
    let result = store.save_checkpoint(name, position);
    if !valid_checkpoint_name(name) {
        return match (result, store.load_checkpoint(name)) {
            (
                Err(Error::InvalidCheckpointName { .. }),
                Err(Error::InvalidCheckpointName { .. }),
            ) => Ok(()),
            other => Err(format!("an invalid name was not refused: {other:?}")),
        };
    }
    let checkpoint = model.checkpoints.entry(name).or_default();
    match &result {
        Ok(()) => checkpoint.saved(position),
        Err(e) if strict => return Err(format!("save: {e:?}")),
        Err(_) => checkpoint.failed(position, position),
    }
    match store.load_checkpoint(name) {
        Ok(v) if result.is_ok() && v != Some(position) => {
            Err(format!("load returned {v:?} after a save of {position}"))
        }
        Ok(v) if !checkpoint.allows(v) => Err(format!(
            "load returned {v:?}; the model allows {checkpoint:?}"
        )),
        Ok(_) => Ok(()),
        Err(e) if !strict && !is_damage_report(&e) => Ok(()),
        Err(e) => Err(format!("load: {e:?}")),
    }
}

/// Where the events a durable subscription sees end, reading from `from`.
fn durable_end(store: &Store, from: u64) -> evstore::Result<u64> {
    let mut probe = store.subscribe_all(from, Filter::predicate(|_| false));
    match probe.try_next()? {
        None => Ok(probe.checkpoint()),
        Some(e) => panic!("a filter that passes nothing passed {e:?}"),
    }
}

/// The durable events from `from` on that `matches` selects, as (position,
/// id), and where the durable events end.
fn durable_events(
    store: &Store,
    from: u64,
    matches: fn(&RecordedEvent) -> bool,
) -> evstore::Result<(u64, Vec<(u64, Uuid)>)> {
    let end = durable_end(store, from)?;
    let events = if end > from {
        store.read_all(from, Direction::Forward, (end - from) as usize)?
    } else {
        Vec::new()
    };
    let selected = events
        .iter()
        .filter(|e| e.position < end && matches(e))
        .map(|e| (e.position, e.id))
        .collect();
    Ok((end, selected))
}

/// One run of the projection `name`: from its checkpoint, saving one every
/// `every` events (and no timed saves), until it has handled the last
/// durable event its filter passes, then stopped. What it handled must be
/// exactly those events from the checkpoint on, in order, each once (a
/// prefix of them if it failed, which only faults permit). A clean stop
/// leaves the checkpoint where the run stopped, which without faults is
/// the durable end, and saves as often as `every` says.
/// With `bounds`, the durable end must lie between those (the model's
/// durable end and its next position).
pub fn project(
    model: &mut Model,
    store: &Store,
    name: &'static str,
    every: u64,
    strict: bool,
    bounds: Option<(u64, u64)>,
) -> Result<(), String> {
    let matches = projection_filter(name);
    let projection = model.projections.entry(name).or_default();
    let loaded = match store.load_checkpoint(name) {
        Ok(v) => v,
        Err(e) if !strict && !is_damage_report(&e) => return Ok(()),
        Err(e) => return Err(format!("load: {e:?}")),
    };
    if !projection.checkpoint.allows(loaded) {
        return Err(format!(
            "loaded {loaded:?}; the model allows {:?}",
            projection.checkpoint
        ));
    }
    let from = loaded.unwrap_or(0);
    let (end, expected) = match durable_events(store, from, matches) {
        Ok(found) => found,
        Err(_) if !strict => return Ok(()),
        Err(e) => return Err(format!("reading the durable events from {from}: {e:?}")),
    };
    if let Some((low, high)) = bounds {
        if end < low.max(from) || end > high {
            return Err(format!(
                "durable events end at {end}, from {from}; the model says {low}..={high}"
            ));
        }
    }
    // The filter notes how far the projection has read, so that it is
    // stopped only once it read to the end: it then stops at the end, and
    // a run's saves (and so the crash points of a workload) do not depend
    // on when the stop came.
    let read_to = Arc::new(AtomicU64::new(from));
    let filter = {
        let read_to = Arc::clone(&read_to);
        Filter::predicate(move |e| {
            read_to.fetch_max(e.position + 1, Ordering::AcqRel);
            matches(e)
        })
    };
    let (tx, rx) = mpsc::channel();
    let options = ProjectionOptions::default()
        .filter(filter)
        .checkpoint_every(every)
        .checkpoint_interval(Duration::from_secs(3600));
    let handle = match store.run_projection(name, options, move |e| {
        let _ = tx.send((e.position, e.id));
        Ok(())
    }) {
        Ok(handle) => handle,
        Err(e) if !strict && !is_damage_report(&e) => return Ok(()),
        Err(e) => return Err(format!("run_projection: {e:?}")),
    };
    let mut handled: Vec<(u64, Uuid)> = Vec::new();
    let deadline = Instant::now() + Duration::from_secs(60);
    if let Some(&(last, _)) = expected.last() {
        while handled.last().is_none_or(|&(p, _)| p < last) {
            match rx.recv_timeout(deadline.saturating_duration_since(Instant::now())) {
                Ok(event) => handled.push(event),
                // The run ended on its own: it failed.
                Err(mpsc::RecvTimeoutError::Disconnected) => break,
                Err(mpsc::RecvTimeoutError::Timeout) => {
                    handle.request_stop();
                    return Err(format!(
                        "from {from}: stuck after {:?}, waiting for {last} (durable end {end})",
                        handled.last()
                    ));
                }
            }
        }
    }
    while read_to.load(Ordering::Acquire) < end && !handle.is_finished() {
        if Instant::now() > deadline {
            handle.request_stop();
            return Err(format!(
                "from {from}: read to {}, not to the durable end {end}",
                read_to.load(Ordering::Acquire)
            ));
        }
        std::thread::yield_now();
    }
    let result = handle.stop();
    handled.extend(rx.try_iter());
    if handled.len() > expected.len() || handled[..] != expected[..handled.len()] {
        return Err(format!(
            "from {from} to {end}: handled {handled:?}; the durable events it passes are {expected:?}"
        ));
    }
    let mut repeated = false;
    for &(position, id) in &handled {
        match projection.handled.insert(position, id) {
            Some(before) if before != id => {
                return Err(format!(
                    "handled {id} at {position}, where an earlier run handled {before}"
                ))
            }
            Some(_) => repeated = true,
            None => {}
        }
    }
    projection.calls += handled.len();
    projection.repeats += usize::from(repeated);
    let stats = match result {
        Ok(stats) => stats,
        Err(e) if strict => return Err(format!("from {from}: the run failed: {e:?}")),
        Err(_) => {
            // Any save of the run may have been the last to get anywhere.
            projection.runs_failed += 1;
            projection.checkpoint.failed(from, end);
            return Ok(());
        }
    };
    projection.runs_ok += 1;
    let n = handled.len() as u64;
    if strict && n != expected.len() as u64 {
        return Err(format!("stopped cleanly after {n} of {expected:?}"));
    }
    if stats.events_handled != n || !(from..=end).contains(&stats.position) {
        return Err(format!("from {from} to {end}, {n} handled: {stats:?}"));
    }
    if strict && stats.position != end {
        return Err(format!(
            "stopped at {}, not at the durable end {end}: {stats:?}",
            stats.position
        ));
    }
    if strict && !(n / every..=n / every + 1).contains(&stats.checkpoints_saved) {
        return Err(format!("{n} events, one save every {every}: {stats:?}"));
    }
    if stats.checkpoints_saved > 0 {
        projection.checkpoint.saved(stats.position);
    } else if stats.position != from {
        return Err(format!("moved from {from} without a save: {stats:?}"));
    }
    match store.load_checkpoint(name) {
        Ok(v) if stats.checkpoints_saved > 0 && v != Some(stats.position) => Err(format!(
            "stopped with {stats:?}, but its checkpoint loads as {v:?}"
        )),
        Ok(v) if !projection.checkpoint.allows(v) => Err(format!(
            "after a run its checkpoint loads as {v:?}; the model allows {:?}",
            projection.checkpoint
        )),
        Ok(_) => Ok(()),
        Err(e) if !strict && !is_damage_report(&e) => Ok(()),
        Err(e) => Err(format!("load after the run: {e:?}")),
    }
}

/// The readable part of a name's file-name stem (see the store's
/// `name_stem`).
fn readable_stem(name: &str) -> String {
    name.chars()
        .take(48)
        .map(|c| match c {
            'a'..='z' | '0'..='9' | '-' | '_' => c,
            'A'..='Z' => c.to_ascii_lowercase(),
            _ => '_',
        })
        .collect()
}

/// The file on `disk` named after checkpoint `name` with `suffix`
/// (`"ckpt"` or `"ckpt.tmp"`): its readable stem, a dot, 32 hex digits.
/// The harness's names have distinct readable stems.
pub fn checkpoint_file(disk: &SimDisk, name: &str, suffix: &str) -> Option<PathBuf> {
    let dir = store_dir().join(evstore::CHECKPOINTS_DIR);
    let prefix = format!("{}.", readable_stem(name));
    let suffix = format!(".{suffix}");
    disk.files().into_iter().find(|p| {
        p.parent() == Some(dir.as_path())
            && p.file_name()
                .and_then(|n| n.to_str())
                .and_then(|n| n.strip_prefix(&prefix))
                .and_then(|n| n.strip_suffix(&suffix))
                .is_some_and(|h| h.len() == 32 && h.bytes().all(|b| b.is_ascii_hexdigit()))
    })
}

/// Whether a load's answer for a file with a flipped bit is the typed
/// report of damage naming it.
fn reports_damage_of(result: &evstore::Result<impl std::fmt::Debug>, file: &Path) -> bool {
    matches!(result, Err(Error::Corrupted { file: f, .. }) if f == file)
}

/// Checks every checkpoint name's load against the model, after a crash
/// or a clean close: a value the model allows (which, as nothing is pending
/// any more, becomes what the model expects from here), or, for a file with
/// a flipped bit, the typed report of its damage. Also every projection's
/// checkpoint the same way, and none for a projection that never ran.
pub fn check_checkpoints(model: &mut Model, store: &Store, disk: &SimDisk) -> Result<(), String> {
    let flipped = |name: &str| {
        checkpoint_file(disk, name, "ckpt").filter(|file| model.flipped.contains(file))
    };
    let mut damaged = Vec::new();
    for name in CHECKPOINT_NAMES.iter().chain(&PROJECTIONS).copied() {
        if !valid_checkpoint_name(name) {
            continue;
        }
        let result = store.load_checkpoint(name);
        if let Some(file) = flipped(name) {
            if !reports_damage_of(&result, &file) {
                return Err(format!(
                    "checkpoint {name:?}: a bit of {} was flipped, yet the load returned {result:?}",
                    file.display()
                ));
            }
            damaged.push(name);
            continue;
        }
        let value = result.map_err(|e| format!("load of checkpoint {name:?}: {e:?}"))?;
        let model_of = match model.projections.get_mut(name) {
            Some(projection) => Some(&mut projection.checkpoint),
            None => model.checkpoints.get_mut(name),
        };
        match model_of {
            Some(checkpoint) if value < checkpoint.acked => {
                return Err(format!(
                    "checkpoint {name:?} loads as {value:?}, before its last acknowledged save: {checkpoint:?}"
                ))
            }
            Some(checkpoint) if checkpoint.allows(value) => checkpoint.settled(value),
            Some(checkpoint) => {
                return Err(format!(
                    "checkpoint {name:?} loads as {value:?}; the model allows {checkpoint:?}"
                ))
            }
            None if value.is_none() => {}
            None => {
                return Err(format!(
                    "checkpoint {name:?}, never saved, loads as {value:?}"
                ))
            }
        }
    }
    Ok(())
}

/// After a recovery, each projection that ran is started again: from a
/// checkpoint the model allows, within the log (every event it passes
/// below that was handled by an earlier run), or, if a flipped bit damaged
/// its checkpoint,
/// not at all (the typed error) until its checkpoint is saved again, at 0.
/// The run handles every durable event it passes from its checkpoint on
/// (see [`project`]), so that every one of them has been handled at least
/// once.
pub fn check_projections_after_recovery(
    model: &mut Model,
    store: &Store,
    disk: &SimDisk,
) -> Result<(), String> {
    let names: Vec<&'static str> = model.projections.keys().copied().collect();
    for name in names {
        let matches = projection_filter(name);
        let context = |e: String| format!("projection {name} after recovery: {e}");
        if let Some(file) =
            checkpoint_file(disk, name, "ckpt").filter(|file| model.flipped.contains(file))
        {
            let started = store
                .run_projection(name, ProjectionOptions::default(), |_| Ok(()))
                .map(|handle| handle.stop());
            if !reports_damage_of(&started, &file) {
                return Err(context(format!(
                    "started on a damaged checkpoint: {started:?}"
                )));
            }
            store
                .save_checkpoint(name, 0)
                .map_err(|e| context(format!("save over the damage: {e:?}")))?;
            model
                .projections
                .get_mut(name)
                .expect("a projection the model knows")
                .checkpoint
                .saved(0);
        }
        let loaded = store
            .load_checkpoint(name)
            .map_err(|e| context(format!("load: {e:?}")))?
            .unwrap_or(0);
        let (end, all) = durable_events(store, 0, matches)
            .map_err(|e| context(format!("reading the log: {e:?}")))?;
        if loaded > end {
            // The events appended next would be skipped.
            return Err(context(format!(
                "the checkpoint is {loaded}, past the end of the log at {end}"
            )));
        }
        let projection = &model.projections[name];
        if let Some((p, id)) = all
            .iter()
            .find(|(p, id)| *p < loaded && projection.handled.get(p) != Some(id))
        {
            return Err(context(format!(
                "the checkpoint is {loaded}, but the event {id} at {p} was never handled"
            )));
        }
        project(model, store, name, 3, true, None).map_err(context)?;
        let projection = &model.projections[name];
        if let Some((p, id)) = all
            .iter()
            .find(|(p, id)| projection.handled.get(p) != Some(id))
        {
            return Err(context(format!("the event {id} at {p} was never handled")));
        }
    }
    Ok(())
}

/// After recovery, a save of every checkpoint name the workload used must
/// be acknowledged, load back, and leave no temporary file of that name.
pub fn check_checkpoint_saves_after_recovery(
    model: &mut Model,
    store: &Store,
    disk: &SimDisk,
) -> Result<(), String> {
    let end = store.last_position().map_or(0, |p| p + 1);
    let names: Vec<&'static str> = model.checkpoints.keys().copied().collect();
    for name in names {
        save_checkpoint_checked(model, store, name, end, true)
            .map_err(|e| format!("checkpoint {name:?} at {end} after recovery: {e}"))?;
        if let Some(temp) = checkpoint_file(disk, name, "ckpt.tmp") {
            return Err(format!(
                "checkpoint {name:?}: {} is left after a save",
                temp.display()
            ));
        }
    }
    Ok(())
}

/// The stream's last version readers see, per the model.
fn visible_version(model: &Model, store: &Store, stream: &str) -> Option<u64> {
    let end = visible_end(model, store);
    let events = acked_log(model, end)
        .iter()
        .filter(|(s, _, _)| *s == stream)
        .count() as u64;
    events.checked_sub(1)
}

/// The acknowledged events below position `end`, in position order.
fn acked_log(model: &Model, end: u64) -> Vec<(&'static str, u64, &EventData)> {
    let mut log = Vec::new();
    for attempt in &model.attempts {
        if let Outcome::Acked(r) = &attempt.outcome {
            for (i, (stream, e)) in attempt.event_streams().zip(&attempt.events).enumerate() {
                if r.first_position + (i as u64) < end {
                    log.push((stream, r.first_position + i as u64, e));
                }
            }
        }
    }
    // A retry that wrote a refused append puts it after later ones.
    log.sort_by_key(|(_, position, _)| *position);
    log
}

/// Where the store's readers stop, checked against the model: at least
/// every durable acknowledged event, at most every acknowledged one.
fn visible_end(model: &Model, store: &Store) -> u64 {
    let end = store.last_position().map_or(0, |p| p + 1);
    let durable_end = model_durable_end(model);
    assert!(
        end >= durable_end && end <= model.next_position,
        "readers see up to {end}, durable {durable_end}, written {}",
        model.next_position
    );
    end
}

/// The end of the acknowledged appends the model knows to be durable.
fn model_durable_end(model: &Model) -> u64 {
    model
        .attempts
        .iter()
        .filter(|a| a.seq < model.durable_seq)
        .filter_map(|a| match &a.outcome {
            Outcome::Acked(r) => Some(r.last_position + 1),
            _ => None,
        })
        .max()
        .unwrap_or(0)
}

fn same_event(recorded: &RecordedEvent, stream: &str, version: u64, sent: &EventData) -> bool {
    let mut tags: Vec<&str> = sent.tags().iter().map(String::as_str).collect();
    tags.sort_unstable();
    &*recorded.stream == stream
        && recorded.version == version
        && recorded.id == sent.id()
        && &*recorded.event_type == sent.event_type()
        && recorded.tags.iter().map(|t| &**t).eq(tags)
        && recorded.payload == sent.payload()
        && recorded.metadata == sent.metadata()
}

fn window(len: u64, from: u64, direction: Direction, max: usize) -> Vec<u64> {
    match direction {
        Direction::Forward => (from..len).take(max).collect(),
        Direction::Backward if len == 0 => Vec::new(),
        Direction::Backward => (0..=from.min(len - 1)).rev().take(max).collect(),
    }
}

fn check_stream_read(
    model: &Model,
    end: u64,
    stream: &'static str,
    from: u64,
    direction: Direction,
    max: usize,
    read: &[RecordedEvent],
) {
    let log: Vec<_> = acked_log(model, end)
        .into_iter()
        .filter(|(s, _, _)| *s == stream)
        .collect();
    let versions = window(log.len() as u64, from, direction, max);
    assert_eq!(
        read.len(),
        versions.len(),
        "read_stream({stream}, {from}, {direction:?}, {max})"
    );
    for (recorded, v) in read.iter().zip(versions) {
        let (s, position, sent) = log[v as usize];
        assert_eq!(recorded.position, position);
        assert!(
            same_event(recorded, s, v, sent),
            "{recorded:?} at version {v}"
        );
    }
}

fn check_all_read(
    model: &Model,
    end: u64,
    from: u64,
    direction: Direction,
    max: usize,
    read: &[RecordedEvent],
) {
    let log = acked_log(model, end);
    let positions = window(log.len() as u64, from, direction, max);
    assert_eq!(
        read.len(),
        positions.len(),
        "read_all({from}, {direction:?}, {max})"
    );
    for (recorded, p) in read.iter().zip(positions) {
        let (s, position, sent) = log[p as usize];
        assert_eq!(position, p);
        assert_eq!(recorded.position, p);
        assert!(
            same_event(recorded, s, recorded.version, sent),
            "{recorded:?} at position {p}"
        );
    }
}

/// Checks a store recovered after a crash against what the model was told:
/// every durable acknowledged append present and byte-identical at its
/// acknowledged position, every append whole or absent, in order, with no
/// holes before an acknowledged one, and nothing that was never appended.
pub fn check_recovered(model: &Model, store: &Store) -> Result<Vec<bool>, String> {
    let events = store
        .read_all(0, Direction::Forward, usize::MAX)
        .map_err(|e| format!("read_all after recovery: {e}"))?;
    let mut stream_counts: HashMap<&str, u64> = HashMap::new();
    let mut present = vec![false; model.attempts.len()];
    let mut i = 0;
    let mut last_seq: Option<u64> = None;
    while i < events.len() {
        let e = &events[i];
        if e.position != i as u64 {
            return Err(format!("event at index {i} has position {}", e.position));
        }
        let (a, idx) = decode_id(e.id).ok_or_else(|| format!("invented event {e:?}"))?;
        let attempt = model
            .attempts
            .get(a)
            .ok_or_else(|| format!("event of unknown append {a}: {e:?}"))?;
        if idx != 0 {
            return Err(format!(
                "append {a} starts with its event {idx}: half a batch"
            ));
        }
        if matches!(attempt.outcome, Outcome::Rejected | Outcome::Lost) {
            return Err(format!("append {a} ({:?}) is present", attempt.outcome));
        }
        if present[a] {
            return Err(format!("append {a} is present twice"));
        }
        if attempt.order_known && last_seq.is_some_and(|l| l >= attempt.seq) {
            return Err(format!(
                "append {a} (write {}) recovered after write {last_seq:?}",
                attempt.seq
            ));
        }
        // Every event of it, in order, each in its own stream at the next
        // version: a commit cut anywhere, or missing one stream's part,
        // fails here.
        let mut j = 0;
        for (k, &(stream, n)) in attempt.parts.iter().enumerate() {
            let first_version = stream_counts.get(stream).copied().unwrap_or(0);
            for sent in &attempt.events[j..j + n] {
                let recorded = events.get(i + j).ok_or_else(|| {
                    format!(
                        "append {a} ({:?}) cut after {j} of {} events",
                        attempt.parts,
                        attempt.events.len()
                    )
                })?;
                let version = stream_counts.get(stream).copied().unwrap_or(0);
                if !same_event(recorded, stream, version, sent) {
                    return Err(format!(
                        "append {a} event {j} differs: {recorded:?} vs {sent:?} in {stream} at version {version}"
                    ));
                }
                stream_counts.insert(stream, version + 1);
                j += 1;
            }
            if let Outcome::Acked(w) = &attempt.outcome {
                let acked = w
                    .streams
                    .get(k)
                    .map(|r| (r.first_version, r.first_position));
                let found = (first_version, (i + j - n) as u64);
                if acked != Some(found) {
                    return Err(format!(
                        "append {a}: {stream} acknowledged at (version, position) {acked:?}, recovered at {found:?}"
                    ));
                }
            }
        }
        if let Outcome::Acked(r) = &attempt.outcome {
            if r.first_position != i as u64 {
                return Err(format!(
                    "append {a} acknowledged at {} but recovered at {i}",
                    r.first_position
                ));
            }
        }
        present[a] = true;
        if attempt.order_known {
            last_seq = Some(attempt.seq);
        }
        i += attempt.events.len();
    }
    for (a, attempt) in model.attempts.iter().enumerate() {
        if !matches!(attempt.outcome, Outcome::Acked(_)) || present[a] {
            continue;
        }
        if attempt.seq < model.durable_seq {
            return Err(format!(
                "durable acknowledged append {a} ({:?}) lost",
                attempt.outcome
            ));
        }
        if last_seq.is_some_and(|l| l > attempt.seq) {
            return Err(format!(
                "acknowledged append {a} missing before present write {last_seq:?}"
            ));
        }
    }
    Ok(present)
}

/// Why a check of snapshot loads failed.
#[derive(Debug)]
pub enum SnapshotCheck {
    /// A load or a read failed with this error.
    LoadFailed(String),
    /// A load returned what the model rules out.
    Wrong(String),
}

impl std::fmt::Display for SnapshotCheck {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            SnapshotCheck::LoadFailed(e) => write!(f, "{e}"),
            SnapshotCheck::Wrong(e) => write!(f, "{e}"),
        }
    }
}

/// Checks `load_snapshot(stream)` and `load_snapshot_at_or_below` at every
/// version the model knows of, one below and one above each, and 0:
///
/// - a snapshot returned is at or below the bound, is of a version some
///   save may have written, holds exactly the data of one of those saves,
///   and the stream's event at its version is the one it was saved after;
/// - one is returned at or above the newest version that must be there
///   at or below the bound (and, without a bound, at or above the newest
///   acknowledged save), unless a file in between was set aside as
///   damaged, which only `damage_allowed` permits;
/// - every file set aside is reported with a typed damage error, under a
///   `.damaged` name, and is one some save may have written;
/// - `load_snapshot` answers the same after all that.
///
/// Returns the versions set aside.
pub fn check_stream_snapshots(
    model: &Model,
    store: &Store,
    stream: &'static str,
    damage_allowed: bool,
) -> Result<Vec<u64>, SnapshotCheck> {
    let wrong = SnapshotCheck::Wrong;
    let failed = |what: &str, e: Error| SnapshotCheck::LoadFailed(format!("{what}: {e:?}"));
    let none = StreamSnapshots::default();
    let snaps = model.snapshots.get(stream).unwrap_or(&none);
    let mut bounds = vec![u64::MAX, 0];
    for &v in snaps.files.keys() {
        bounds.extend([v + 1, v, v.saturating_sub(1)]);
    }
    bounds.sort_unstable_by(|a, b| b.cmp(a));
    bounds.dedup();
    let mut first = None;
    for bound in bounds {
        let got = if bound == u64::MAX {
            store.load_snapshot(stream)
        } else {
            store.load_snapshot_at_or_below(stream, bound)
        }
        .map_err(|e| failed(&format!("load of {stream} at or below {bound}"), e))?;
        if bound == u64::MAX && first.is_none() {
            first = Some(got.clone());
        }
        let got_version = got.as_ref().map(|s| s.version);
        if let Some(snapshot) = &got {
            let v = snapshot.version;
            if v > bound {
                return Err(wrong(format!(
                    "{stream}: the load at or below {bound} returned version {v}"
                )));
            }
            let file = snaps.files.get(&v).ok_or_else(|| {
                wrong(format!(
                    "{stream}: returned a snapshot at {v}, which no save wrote (saves: {:?})",
                    snaps.files.keys().collect::<Vec<_>>()
                ))
            })?;
            let event = store
                .read_stream(stream, v, Direction::Forward, 1)
                .map_err(|e| failed(&format!("read of {stream} at {v}"), e))?
                .first()
                .map(|e| e.id);
            let matches = file
                .candidates
                .iter()
                .any(|(data, id)| *data == snapshot.data && id.is_some() && *id == event);
            if !matches {
                return Err(wrong(format!(
                    "{stream}: the snapshot at {v} holds {:?} after event {event:?}, which no save wrote (saves: {:?})",
                    String::from_utf8_lossy(&snapshot.data[..snapshot.data.len().min(40)]),
                    file.candidates
                        .iter()
                        .map(|(d, id)| (String::from_utf8_lossy(&d[..d.len().min(40)]).into_owned(), *id))
                        .collect::<Vec<_>>()
                )));
            }
        }
        let mut floor = snaps.kept.range(..=bound).next_back().copied();
        if bound == u64::MAX {
            floor = floor.max(snaps.newest_acked);
        }
        if let Some(floor) = floor {
            if got_version.is_none_or(|v| v < floor) {
                let excused = damage_allowed
                    && store.damaged_snapshots().iter().any(|d| {
                        d.stream == stream
                            && d.version <= bound
                            && got_version.is_none_or(|v| d.version > v)
                    });
                if !excused {
                    return Err(wrong(format!(
                        "{stream}: the load at or below {bound} returned {got_version:?}, but {floor} must be there (must: {:?}, may: {:?}, newest acknowledged: {:?})",
                        snaps.kept,
                        snaps.files.keys().collect::<Vec<_>>(),
                        snaps.newest_acked
                    )));
                }
            }
        }
    }
    let again = store
        .load_snapshot(stream)
        .map_err(|e| failed(&format!("second load of {stream}"), e))?;
    if Some(&again) != first.as_ref() {
        return Err(wrong(format!(
            "{stream}: load_snapshot returned {:?}, then {:?}",
            first.flatten().map(|s| s.version),
            again.map(|s| s.version)
        )));
    }
    let mut set_aside = Vec::new();
    for report in store.damaged_snapshots() {
        if report.stream != stream {
            continue;
        }
        if !damage_allowed {
            return Err(wrong(format!(
                "{stream}: a sound snapshot was set aside: {report:?}"
            )));
        }
        if !is_damage_report(&report.error) {
            return Err(wrong(format!("{stream}: untyped damage report {report:?}")));
        }
        if !snaps.files.contains_key(&report.version) {
            return Err(wrong(format!(
                "{stream}: set aside version {}, which no save wrote",
                report.version
            )));
        }
        if !report.file.to_string_lossy().ends_with(".damaged") {
            return Err(wrong(format!("{stream}: not renamed aside: {report:?}")));
        }
        set_aside.push(report.version);
    }
    Ok(set_aside)
}

/// [`check_stream_snapshots`] for every stream a workload can touch.
/// Returns the files set aside.
pub fn check_snapshots(
    model: &Model,
    store: &Store,
    damage_allowed: bool,
) -> Result<Vec<(&'static str, u64)>, String> {
    let mut set_aside = Vec::new();
    for stream in STREAMS.iter().copied().chain([AFTER_RECOVERY]) {
        let versions = check_stream_snapshots(model, store, stream, damage_allowed)
            .map_err(|e| format!("snapshots: {e}"))?;
        set_aside.extend(versions.into_iter().map(|v| (stream, v)));
    }
    Ok(set_aside)
}

/// The snapshot files of `stream` on `disk`: its directory is named after
/// the stream (lower-cased, which the harness's names already are), a dot
/// and 32 hex digits.
pub fn snapshot_files(disk: &SimDisk, stream: &str) -> Vec<PathBuf> {
    let root = store_dir().join(evstore::SNAPSHOTS_DIR);
    disk.files()
        .into_iter()
        .filter(|p| {
            let Some(dir) = p.parent() else {
                return false;
            };
            dir.parent() == Some(root.as_path())
                && dir
                    .file_name()
                    .and_then(|n| n.to_str())
                    .and_then(|n| n.strip_prefix(stream))
                    .and_then(|n| n.strip_prefix('.'))
                    .is_some_and(|h| h.len() == 32 && h.bytes().all(|b| b.is_ascii_hexdigit()))
        })
        .collect()
}

/// After recovery, a snapshot of every stream that had any, at the
/// stream's version, must be acknowledged, be what loads return, and leave
/// at most [`SNAPSHOTS_KEPT`] snapshot files and no temporary file in the
/// stream's directory (the save prunes what interrupted saves left).
pub fn check_snapshot_after_recovery(
    model: &mut Model,
    store: &Store,
    disk: &SimDisk,
) -> Result<(), String> {
    let streams: Vec<&'static str> = model.snapshots.keys().copied().collect();
    for stream in streams {
        let Some(version) = store
            .stream_version(stream)
            .map_err(|e| format!("stream_version({stream}): {e}"))?
        else {
            continue;
        };
        let data = snapshot_data(stream, version, 0xA5);
        let event_id = store
            .read_stream(stream, version, Direction::Forward, 1)
            .map_err(|e| format!("read of {stream} at {version}: {e}"))?
            .first()
            .map(|e| e.id);
        let result = store.save_snapshot(stream, version, &data);
        model.record_snapshot(stream, version, data.clone(), event_id, &result);
        result.map_err(|e| format!("snapshot of {stream} at {version} after recovery: {e:?}"))?;
        let loaded = store
            .load_snapshot(stream)
            .map_err(|e| format!("load of {stream} after recovery: {e:?}"))?
            .map(|s| (s.version, s.data));
        if loaded != Some((version, data.into())) {
            return Err(format!(
                "{stream}: the snapshot saved at {version} after recovery loads as {:?}",
                loaded.map(|(v, _)| v)
            ));
        }
        let files = snapshot_files(disk, stream);
        let names: Vec<String> = files
            .iter()
            .filter_map(|p| p.file_name().and_then(|n| n.to_str()).map(String::from))
            .collect();
        let snaps = names.iter().filter(|n| n.ends_with(".snap")).count();
        if snaps > SNAPSHOTS_KEPT || names.iter().any(|n| n.ends_with(".tmp")) {
            return Err(format!(
                "{stream}: after a save its snapshot directory holds {names:?}"
            ));
        }
    }
    Ok(())
}

impl Model {
    /// After a recovery: what did not come back is gone for good.
    pub fn forget_lost(&mut self, present: &[bool]) {
        for (attempt, &here) in self.attempts.iter_mut().zip(present) {
            if !here && !matches!(attempt.outcome, Outcome::Rejected) {
                attempt.outcome = Outcome::Lost;
            }
        }
    }
}

/// After recovery the store must take appends again and keep them; the
/// append joins the model so later checks expect it.
pub fn check_appendable(model: &mut Model, store: &Store) -> Result<(), String> {
    let before = store.last_position();
    let spec = EventSpec {
        type_index: 0,
        payload_len: 2,
        metadata_len: 0,
        fill: b'k',
    };
    let events = model.events_for(&[spec]);
    let result = store.append(AFTER_RECOVERY, ExpectedVersion::Any, &events);
    let r = result
        .as_ref()
        .map_err(|e| format!("append after recovery: {e}"))?;
    if r.first_position != before.map_or(0, |p| p + 1) {
        return Err(format!(
            "append after recovery at {} after {before:?}",
            r.first_position
        ));
    }
    let back = store
        .read_all(r.first_position, Direction::Forward, 1)
        .map_err(|e| format!("read after recovery: {e}"))?;
    if back.first().map(|e| &e.payload) != Some(events[0].payload()) {
        return Err("the append after recovery did not read back".into());
    }
    // Recovery may have dropped unacknowledged appends the model still
    // counts; the model follows the store from here.
    model.next_position = r.last_position + 1;
    let result = result.map(Written::from);
    let parts = vec![(AFTER_RECOVERY, events.len())];
    model.record(parts, events, None, Durability::Sync, &result);
    Ok(())
}

/// The second stream [`check_commit_after_recovery`] commits to.
const AFTER_RECOVERY_B: &str = "after-recovery-b";

/// After recovery the store must take a tagged commit over two streams and
/// check its condition against the recovered log: counting every event,
/// it fails at the first event carrying the tag, if there is one; after
/// the end of the log, it holds. The commits join the model.
pub fn check_commit_after_recovery(model: &mut Model, store: &Store) -> Result<(), String> {
    let query = ModelQuery::of(0, 0);
    let all = store
        .read_all(0, Direction::Forward, usize::MAX)
        .map_err(|e| format!("read_all before a commit after recovery: {e:?}"))?;
    let mut first = all
        .iter()
        .find(|e| query.matches(&e.event_type, &e.tags))
        .map(|e| e.position);
    let mut head = all.last().map(|e| e.position);
    for after in [None, head] {
        let attempt = model.attempts.len();
        let tags: [&[&str]; 3] = [&[TAGS[0]], &[TAGS[3], TAGS[0]], &[]];
        let events: Vec<EventData> = tags
            .iter()
            .enumerate()
            .map(|(i, tags)| {
                EventData::new(TYPES[i], vec![b'c'; i])
                    .with_tags(tags.iter().copied())
                    .with_id(event_id(attempt, i))
            })
            .collect();
        let sent = SentCommit {
            expected: vec![ExpectedVersion::Any; 2],
            check: None,
            condition: Some((query.clone(), after)),
        };
        let parts = vec![(AFTER_RECOVERY, 1), (AFTER_RECOVERY_B, 2)];
        let attempt = Attempt {
            parts,
            events,
            commit: Some(sent),
            durability: Durability::Sync,
            outcome: Outcome::Unknown,
            seq: 0,
            order_known: true,
        };
        let commit = attempt.resend(Durability::Sync).expect("a commit");
        let result = store.commit(&commit).map(Written::from);
        let fails_at = first.filter(|&p| after.is_none_or(|a| p > a));
        let start = head.map_or(0, |h| h + 1);
        match (&result, fails_at) {
            (Err(Error::AppendConditionFailed { position }), Some(p)) if *position == p => {}
            (Ok(w), None) if (w.first_position, w.last_position) == (start, start + 2) => {
                first = first.or(Some(start));
                head = Some(w.last_position);
            }
            (r, _) => {
                return Err(format!(
                    "a commit after recovery with its condition after {after:?} (the first match at {first:?}, the log ending at {head:?}): {r:?}"
                ))
            }
        }
        let Attempt {
            parts,
            events,
            commit,
            ..
        } = attempt;
        model.record(parts, events, commit, Durability::Sync, &result);
    }
    Ok(())
}

/// Reads by every query of [`checked_queries`], forward and backward,
/// whole and in windows, and after positions, must return exactly the
/// events of a scan of the log (`read_all`) that the query matches, with
/// the log's head; `Query::matches` must agree with the model's own
/// matching. With `damage_allowed` (bits were flipped) a typed damage
/// report is an answer too.
pub fn check_query_reads(store: &Store, damage_allowed: bool) -> Result<(), String> {
    let damage = |e: Error, what: &str| -> Result<(), String> {
        if damage_allowed && is_damage_report(&e) {
            Ok(())
        } else {
            Err(format!("{what}: {e:?}"))
        }
    };
    let all = match store.read_all(0, Direction::Forward, usize::MAX) {
        Ok(all) => all,
        Err(e) => return damage(e, "read_all"),
    };
    let head = all.last().map(|e| e.position);
    let mid = all.len() as u64 / 2;
    for model_query in checked_queries() {
        let query = model_query.query();
        let mut scan = Vec::new();
        for e in &all {
            let matches = query.matches(e);
            if matches != model_query.matches(&e.event_type, &e.tags) {
                return Err(format!("{query:?}: Query::matches says {matches} of {e:?}"));
            }
            if matches {
                scan.push(e);
            }
        }
        if scan.is_empty() {
            // Nothing matches: one read says so for every window.
            match store.read_query(&query, 0, Direction::Forward, usize::MAX) {
                Ok(read) if read.events.is_empty() && read.head == head => {}
                Ok(read) => {
                    return Err(format!(
                        "read_query({query:?}) returned {:?} at head {:?}; a scan of the log finds nothing at head {head:?}",
                        read.events, read.head
                    ))
                }
                Err(e) => damage(e, &format!("read_query({query:?})"))?,
            }
            continue;
        }
        let positions = |events: &mut dyn Iterator<Item = &RecordedEvent>| {
            events.map(|e| e.position).collect::<Vec<u64>>()
        };
        let backward: Vec<&RecordedEvent> = scan.iter().rev().copied().collect();
        let reads: [(&str, u64, Direction, usize, Vec<&RecordedEvent>); 4] = [
            ("forward", 0, Direction::Forward, usize::MAX, scan.clone()),
            (
                "backward",
                u64::MAX,
                Direction::Backward,
                usize::MAX,
                backward,
            ),
            (
                "forward from the middle",
                mid,
                Direction::Forward,
                3,
                scan.iter()
                    .filter(|e| e.position >= mid)
                    .take(3)
                    .copied()
                    .collect(),
            ),
            (
                "backward from the middle",
                mid,
                Direction::Backward,
                3,
                scan.iter()
                    .rev()
                    .filter(|e| e.position <= mid)
                    .take(3)
                    .copied()
                    .collect(),
            ),
        ];
        for (what, from, direction, max, want) in reads {
            let read = match store.read_query(&query, from, direction, max) {
                Ok(read) => read,
                Err(e) => {
                    damage(e, &format!("read_query({query:?}) {what}"))?;
                    continue;
                }
            };
            if read.head != head || !read.events.iter().eq(want.iter().copied()) {
                return Err(format!(
                    "read_query({query:?}) {what} returned positions {:?} at head {:?}; a scan of the log finds {:?} at head {head:?}",
                    positions(&mut read.events.iter()),
                    read.head,
                    positions(&mut want.iter().copied()),
                ));
            }
        }
        let after = head.map(|h| h / 3);
        match store.read_query_after(&query, after, usize::MAX) {
            Ok(read) => {
                let want: Vec<&RecordedEvent> = scan
                    .iter()
                    .filter(|e| after.is_none_or(|a| e.position > a))
                    .copied()
                    .collect();
                if read.head != head || !read.events.iter().eq(want.iter().copied()) {
                    return Err(format!(
                        "read_query_after({query:?}, {after:?}) returned positions {:?}; a scan finds {:?}",
                        positions(&mut read.events.iter()),
                        positions(&mut want.iter().copied()),
                    ));
                }
            }
            Err(e) => damage(e, &format!("read_query_after({query:?})"))?,
        }
    }
    Ok(())
}

/// Opens (or reopens) the store on `disk`.
pub fn open_on(disk: &SimDisk, durability: Durability) -> evstore::Result<Store> {
    Store::open(store_dir(), sim_options(disk, durability))
}

/// Whether an error is one of the typed reports of damage.
pub fn is_damage_report(e: &Error) -> bool {
    matches!(e, Error::Corrupted { .. } | Error::UnsupportedFormat { .. })
}

// ---------------------------------------------------------------- targets

/// `api`: arbitrary calls against the model; the store must agree exactly.
pub fn api(data: &[u8]) {
    let mut u = Unstructured::new(data);
    let Ok(buffered) = bool::arbitrary(&mut u) else {
        return;
    };
    let Ok(ops) = Vec::<Op>::arbitrary(&mut u) else {
        return;
    };
    let durability = if buffered {
        Durability::Buffered
    } else {
        Durability::Sync
    };
    let disk = SimDisk::new();
    let mut model = Model::for_store(durability);
    let mut store = Some(open_on(&disk, durability).expect("open a fresh store"));
    let mut reopen = || open_on(&disk, durability);
    run_ops(&ops, &mut model, &mut store, &mut reopen, true);
    if let Some(store) = store {
        store.flush().expect("flush");
        model.flushed();
        check_recovered(&model, &store).expect("final state");
        if let Err(e) = check_query_reads(&store, false) {
            panic!("final state: {e}");
        }
        if let Err(e) = check_snapshots(&model, &store, false) {
            panic!("final state: {e}");
        }
        if let Err(e) = check_checkpoints(&mut model, &store, &disk) {
            panic!("final state: {e}");
        }
    }
}

/// How the fuzzer chooses a crash.
#[derive(Arbitrary, Debug, Clone, Copy)]
pub enum PlanSpec {
    LoseAll,
    KeepAll,
    Torn(u64),
    Garbled(u64),
}

impl PlanSpec {
    pub fn plan(self) -> CrashPlan {
        match self {
            PlanSpec::LoseAll => CrashPlan::LoseAll,
            PlanSpec::KeepAll => CrashPlan::KeepAll,
            PlanSpec::Torn(seed) => CrashPlan::Torn { seed },
            PlanSpec::Garbled(seed) => CrashPlan::Garbled { seed },
        }
    }
}

/// A bit to flip after a clean close: file chosen by index, bit by offset.
#[derive(Arbitrary, Debug, Clone, Copy)]
pub struct Flip {
    pub file: u8,
    pub bit: u32,
}

/// `crash_recovery`: a workload, optionally a crash at the N-th storage
/// operation, then a power loss resolved by the plan; or a clean close with
/// a single bit flip in a segment, index file, catalogue, snapshot file or
/// checkpoint file (one flip is always detectable; several can hit both the
/// data and the mark that vouches for it). The recovered store must honour
/// the model (appends, snapshots, see [`check_stream_snapshots`],
/// checkpoints and projections, see [`check_checkpoints`] and
/// [`check_projections_after_recovery`]), or report damage with a typed
/// error when bits were flipped; a damaged snapshot is set aside and an
/// older one returned, a damaged checkpoint is reported by every load.
pub fn crash_recovery(data: &[u8]) {
    let Some(input) = CrashInput::decode(data) else {
        return;
    };
    let CrashInput {
        durability,
        ops,
        fail_at,
        plan,
        flip,
    } = input;
    if let Err(message) = crash_cycle(
        &ops,
        durability,
        fail_at.map(u64::from),
        plan.plan(),
        flip.as_slice(),
    ) {
        panic!("{message}\nops: {ops:?}\nfail_at: {fail_at:?} plan: {plan:?} flip: {flip:?}");
    }
}

/// A decoded [`crash_recovery`] input: a byte choosing `Buffered` (odd) or
/// `Sync`, the ops, the crash point, the crash plan and the bit flip.
#[derive(Debug, Clone)]
pub struct CrashInput {
    pub durability: Durability,
    pub ops: Vec<Op>,
    pub fail_at: Option<u16>,
    pub plan: PlanSpec,
    pub flip: Option<Flip>,
}

impl CrashInput {
    /// Decodes a `crash_recovery` input; `None` if the bytes run out in a
    /// way `arbitrary` refuses.
    pub fn decode(data: &[u8]) -> Option<CrashInput> {
        let mut u = Unstructured::new(data);
        let buffered = bool::arbitrary(&mut u).ok()?;
        let ops = Vec::<Op>::arbitrary(&mut u).ok()?;
        let fail_at = Option::<u16>::arbitrary(&mut u).ok()?;
        let plan = PlanSpec::arbitrary(&mut u).ok()?;
        let flip = Option::<Flip>::arbitrary(&mut u).ok()?;
        let durability = if buffered {
            Durability::Buffered
        } else {
            Durability::Sync
        };
        Some(CrashInput {
            durability,
            ops,
            fail_at,
            plan,
            flip,
        })
    }
}

impl CrashInput {
    /// The bytes [`CrashInput::decode`] decodes as this input.
    pub fn encode(&self) -> Vec<u8> {
        let mut out = vec![u8::from(self.durability == Durability::Buffered)];
        for op in &self.ops {
            out.push(1);
            op.encode(&mut out);
        }
        out.push(0);
        match self.fail_at {
            None => out.push(0),
            Some(n) => {
                out.push(1);
                out.extend(n.to_le_bytes());
            }
        }
        let (k, seed) = match self.plan {
            PlanSpec::LoseAll => (0u32, None),
            PlanSpec::KeepAll => (1, None),
            PlanSpec::Torn(seed) => (2, Some(seed)),
            PlanSpec::Garbled(seed) => (3, Some(seed)),
        };
        out.extend((k << 30).to_le_bytes());
        out.extend(seed.map(u64::to_le_bytes).into_iter().flatten());
        match self.flip {
            None => out.push(0),
            Some(flip) => {
                out.push(1);
                out.push(flip.file);
                out.extend(flip.bit.to_le_bytes());
            }
        }
        out
    }
}

/// One crash-and-recover cycle; returns what went wrong.
pub fn crash_cycle(
    ops: &[Op],
    durability: Durability,
    fail_at: Option<u64>,
    plan: CrashPlan,
    flips: &[Flip],
) -> Result<(), String> {
    let disk = SimDisk::new();
    let mut model = Model::for_store(durability);
    let mut store = Some(open_on(&disk, durability).map_err(|e| format!("open: {e}"))?);
    if let Some(n) = fail_at {
        disk.fail_after(Some(disk.mutations() + n));
    }
    let mut reopen = || open_on(&disk, durability);
    run_ops(ops, &mut model, &mut store, &mut reopen, false);
    let crashed = if flips.is_empty() {
        // Power loss now; the old handle is dropped after the image is taken.
        let image = disk.crash(plan);
        drop(store);
        image
    } else {
        // Bit flips hit a cleanly closed store, where every byte is covered
        // by a durable mark. A store that cannot close cleanly (poisoned by
        // the crash point) just loses power instead.
        disk.fail_after(None);
        let closed = store.take().map(Store::close);
        let image = disk.crash(CrashPlan::LoseAll);
        // Without a clean close (no store because a reopen failed at the
        // crash point, or a failed close) nothing vouches for the synced
        // bytes, so no flips then.
        if let Some(Ok(())) = closed {
            model.flushed();
            model.flipped = flip_bits(&image, flips);
        }
        image
    };
    recover_and_check(&crashed, model, durability, !flips.is_empty())
}

/// Reads the whole log, then every stream in both directions.
fn read_everything(store: &Store) -> evstore::Result<()> {
    let all = store.read_all(0, Direction::Forward, usize::MAX)?;
    let mut streams: Vec<&str> = all.iter().map(|e| &*e.stream).collect();
    streams.sort_unstable();
    streams.dedup();
    for stream in streams {
        store.read_stream(stream, 0, Direction::Forward, usize::MAX)?;
        store.read_stream(stream, u64::MAX, Direction::Backward, usize::MAX)?;
    }
    for listed in store.streams() {
        listed?;
    }
    Ok(())
}

/// Flips the chosen bits in the store's files; returns the files flipped.
pub fn flip_bits(disk: &SimDisk, flips: &[Flip]) -> Vec<PathBuf> {
    let mut files: Vec<PathBuf> = disk
        .files()
        .into_iter()
        .filter(|p| {
            // Segments, their index files and the stream catalogue; then
            // snapshot files, which sort after them.
            let name = p.to_string_lossy();
            (p.parent().is_some_and(|d| d.ends_with("segments")) && !name.ends_with(".tmp"))
                || (p
                    .parent()
                    .and_then(Path::parent)
                    .is_some_and(|d| d.ends_with(evstore::SNAPSHOTS_DIR))
                    && name.ends_with(".snap"))
        })
        .collect();
    // Then checkpoint files, after the others so that a workload without
    // checkpoints chooses among the same files as before they existed.
    files.extend(disk.files().into_iter().filter(|p| {
        p.parent()
            .is_some_and(|d| d.ends_with(evstore::CHECKPOINTS_DIR))
            && p.extension().is_some_and(|x| x == "ckpt")
    }));
    let mut flipped = Vec::new();
    for flip in flips {
        let Some(path) = files.get(flip.file as usize % files.len().max(1)) else {
            break;
        };
        flip_bit(disk, path, flip.bit as u64);
        flipped.push(path.clone());
    }
    flipped
}

/// Flips bit `bit` (modulo the file's size) of `path`.
pub fn flip_bit(disk: &SimDisk, path: &Path, bit: u64) {
    let Ok(mut bytes) = disk.read_file(path) else {
        return;
    };
    if bytes.is_empty() {
        return;
    }
    let bit = bit % (bytes.len() as u64 * 8);
    bytes[(bit / 8) as usize] ^= 1 << (bit % 8);
    let _ = disk.write_file(path, &bytes);
}

/// `record_decode`: arbitrary bytes as the only segment of a store, or
/// written over a real segment from just past its first batch (one tagged
/// event): opening and reading either work or report damage with a typed
/// error, and never panic or hang. Each input is tried twice: as it is, and
/// with every checksum it holds made to match ([`reseal_segment`]), so that
/// the decoding of what the checksums guard (field lengths, tags, UTF-8,
/// positions) is reached without the fuzzer having to find checksums.
pub fn record_decode(data: &[u8]) {
    let (raw, rest) = match data.split_first() {
        Some((&mode, rest)) => (mode % 2 == 0, rest),
        None => return,
    };
    for resealed in [false, true] {
        let disk = SimDisk::new();
        {
            let store = open_on(&disk, Durability::Sync).expect("fresh store");
            if !raw {
                store
                    .append(
                        "s",
                        ExpectedVersion::Any,
                        &[EventData::new("T", &b"valid"[..]).with_tags(["t", "course:c1"])],
                    )
                    .expect("append");
            }
        }
        let segment = store_dir().join("segments").join(format!("{:020}.log", 0));
        let mut bytes = disk.read_file(&segment).expect("segment exists");
        if raw {
            bytes = rest.to_vec();
        } else {
            // Overwrite the segment from just past the first batch.
            let first_batch = u32::from_le_bytes(bytes[68..72].try_into().expect("4 bytes"));
            let at = 64 + first_batch as usize;
            let end = (at + rest.len()).min(bytes.len());
            bytes[at..end].copy_from_slice(&rest[..end - at]);
        }
        if resealed {
            reseal_segment(&mut bytes);
        }
        disk.write_file(&segment, &bytes).expect("write");
        match open_on(&disk, Durability::Sync) {
            Ok(store) => {
                let read = store.read_all(0, Direction::Forward, usize::MAX);
                if let Err(e) = read {
                    assert!(is_damage_report(&e), "untyped read error {e:?}");
                }
                let query = Query::tagged(["t"]);
                let by_tag = store.read_query(&query, 0, Direction::Forward, 64);
                // Lent views are checked as decoded events are: the same
                // events, or damage.
                let mut lent = Vec::new();
                let visited = store.visit_query(&query, 0, Direction::Forward, 64, |e| {
                    lent.push(e.to_owned_event());
                });
                match (&by_tag, &visited) {
                    (Ok(read), Ok(_)) => assert!(read.events == lent, "a visit lent other events"),
                    (Err(read), Err(visit)) => {
                        assert!(is_damage_report(read), "untyped read_query error {read:?}");
                        assert!(
                            is_damage_report(visit),
                            "untyped visit_query error {visit:?}"
                        );
                    }
                    (read, visit) => {
                        panic!("a read and a visit judged the log apart: {read:?} {visit:?}")
                    }
                }
            }
            Err(e) => assert!(
                is_damage_report(&e) || matches!(e, Error::Io { .. }),
                "unexpected open error {e:?}"
            ),
        }
    }
}

/// Gives a segment image valid checksums for whatever it holds (a forgery
/// the checksums cannot catch): the header's, then, walking the batches
/// its headers chain from offset 64, each batch header's and each record's
/// of an events batch, seeded from the base position the header names.
pub fn reseal_segment(bytes: &mut [u8]) {
    if bytes.len() < 64 {
        return;
    }
    let header = crc32_seeded(0, &bytes[..60]);
    bytes[60..64].copy_from_slice(&header.to_le_bytes());
    let u32_at = |bytes: &[u8], at: usize| {
        u32::from_le_bytes(bytes[at..at + 4].try_into().expect("4 bytes")) as usize
    };
    let mut base = [0u8; 8];
    base.copy_from_slice(&bytes[16..24]);
    let seed = segment_crc_seed(u64::from_le_bytes(base));
    let mut at = 64;
    while at + 32 <= bytes.len() {
        let len = u32_at(bytes, at + 4);
        if len < 32 || len % 8 != 0 {
            break;
        }
        let crc = crc32_seeded(seed, &bytes[at + 4..at + 32]);
        bytes[at..at + 4].copy_from_slice(&crc.to_le_bytes());
        let end = (at + len).min(bytes.len());
        if u32_at(bytes, at + 8) == 1 {
            let mut record = at + 32;
            while record + 64 <= end {
                let record_len = u32_at(bytes, record + 4);
                if record_len < 64 || record + record_len > end {
                    break;
                }
                let crc = crc32_seeded(seed, &bytes[record + 4..record + record_len]);
                bytes[record..record + 4].copy_from_slice(&crc.to_le_bytes());
                record += (record_len + 7) & !7;
            }
        }
        at += len;
    }
}

/// Storage mutations a fault-free run of `ops` performs after open.
pub fn count_mutations(ops: &[Op], durability: Durability) -> u64 {
    let disk = SimDisk::new();
    let mut model = Model::for_store(durability);
    let mut store = Some(open_on(&disk, durability).expect("open"));
    let start = disk.mutations();
    let mut reopen = || open_on(&disk, durability);
    run_ops(ops, &mut model, &mut store, &mut reopen, true);
    let end = disk.mutations();
    drop(store);
    end - start
}

/// For each op of a fault-free run of `ops`, the storage mutations it
/// performs, counted from after open as `fail_at` counts them: a crash at
/// any `n` in an op's range happens while that op runs.
pub fn op_mutations(ops: &[Op], durability: Durability) -> Vec<std::ops::Range<u64>> {
    let disk = SimDisk::new();
    let mut model = Model::for_store(durability);
    let mut store = Some(open_on(&disk, durability).expect("open"));
    let start = disk.mutations();
    let mut reopen = || open_on(&disk, durability);
    let mut ranges = Vec::new();
    for op in ops {
        let before = disk.mutations() - start;
        run_ops(
            std::slice::from_ref(op),
            &mut model,
            &mut store,
            &mut reopen,
            true,
        );
        ranges.push(before..disk.mutations() - start);
    }
    ranges
}

/// A crash while a workload runs, then a second crash while the store
/// recovers from the first (at its `recovery_fail_at`-th mutation): the
/// store opened after both must still honour the model.
pub fn recovery_crash_cycle(
    ops: &[Op],
    durability: Durability,
    fail_at: u64,
    first: CrashPlan,
    recovery_fail_at: u64,
    second: CrashPlan,
) -> Result<(), String> {
    let disk = SimDisk::new();
    let mut model = Model::for_store(durability);
    let mut store = Some(open_on(&disk, durability).map_err(|e| format!("open: {e}"))?);
    disk.fail_after(Some(disk.mutations() + fail_at));
    let mut reopen = || open_on(&disk, durability);
    run_ops(ops, &mut model, &mut store, &mut reopen, false);
    let image = disk.crash(first);
    drop(store);
    image.fail_after(Some(recovery_fail_at));
    let interrupted = open_on(&image, durability);
    let image2 = image.crash(second);
    drop(interrupted);
    recover_and_check(&image2, model, durability, false)
        .map_err(|e| format!("after an interrupted recovery: {e}"))
}

/// Runs `ops` with the disk refusing everything after `fail_at` further
/// mutations, then recovers one crash image per plan from that same moment
/// and checks each. Returns how many cycles ran.
pub fn crash_point(
    ops: &[Op],
    durability: Durability,
    fail_at: u64,
    plans: &[CrashPlan],
) -> Result<usize, String> {
    let (disk, model, store) = run_to_crash_point(ops, durability, fail_at)?;
    for plan in plans {
        let image = disk.crash(*plan);
        recover_and_check(&image, model.clone(), durability, false)
            .map_err(|e| format!("{plan:?}: {e}"))?;
    }
    drop(store);
    Ok(plans.len())
}

/// Runs `ops` on a fresh store whose disk refuses everything after
/// `fail_at` further mutations. Returns the disk as the process left it
/// (take crash images of it with [`SimDisk::crash`]), what the model was
/// told, and the store if it is still open.
pub fn run_to_crash_point(
    ops: &[Op],
    durability: Durability,
    fail_at: u64,
) -> Result<(SimDisk, Model, Option<Store>), String> {
    let disk = SimDisk::new();
    let mut model = Model::for_store(durability);
    let mut store = Some(open_on(&disk, durability).map_err(|e| format!("open: {e}"))?);
    disk.fail_after(Some(disk.mutations() + fail_at));
    let mut reopen = || open_on(&disk, durability);
    run_ops(ops, &mut model, &mut store, &mut reopen, false);
    Ok((disk, model, store))
}

/// Opens a crash image, checks it against the model (see
/// [`check_recovered`]) and its reads by query against a scan of the log
/// ([`check_query_reads`]), appends, commits, reopens and checks again.
pub fn recover_and_check(
    image: &SimDisk,
    model: Model,
    durability: Durability,
    damage_allowed: bool,
) -> Result<(), String> {
    recover_and_check_commits(image, model, durability, damage_allowed).map(|_| ())
}

/// What a recovery found of the multi-stream commits whose outcome was in
/// doubt at the crash (failed, or acknowledged but not yet durable): each
/// whole or absent, never part of it (see [`check_recovered`]).
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct InDoubt {
    pub present: usize,
    pub absent: usize,
}

/// [`recover_and_check`], also telling what became of the commits in doubt
/// (none counted when flipped bits made the store report damage).
pub fn recover_and_check_commits(
    image: &SimDisk,
    mut model: Model,
    durability: Durability,
    damage_allowed: bool,
) -> Result<InDoubt, String> {
    let verified = verify_image(image)?;
    if !damage_allowed && !verified.is_clean() {
        return Err(format!(
            "verify found damage in a crashed store: {:#?}",
            verified.findings
        ));
    }
    let missed = |e: &Error| {
        format!(
            "verify found nothing, yet recovery reports {e:?}; notes: {:?}",
            verified.notes
        )
    };
    let read_only = read_only_views(image, damage_allowed)?;
    let store = match open_on(image, durability) {
        Ok(store) => store,
        // Bits were flipped: a typed report of the damage is a right answer.
        Err(e) if damage_allowed && is_damage_report(&e) && verified.is_clean() => {
            return Err(missed(&e))
        }
        Err(e) if damage_allowed && is_damage_report(&e) => return Ok(InDoubt::default()),
        Err(e) => return Err(format!("recovery failed: {e:?}")),
    };
    if let (Some([durable_view, written_view]), false) = (read_only, damage_allowed) {
        let recovered = store
            .read_all(0, Direction::Forward, usize::MAX)
            .map_err(|e| format!("read after recovery: {e:?}"))?;
        let same = |a: &[RecordedEvent], b: &[RecordedEvent]| {
            a.len() <= b.len()
                && a.iter().zip(b).all(|(x, y)| {
                    (
                        x.position,
                        &x.stream,
                        x.version,
                        x.id,
                        &x.tags,
                        &x.payload,
                        &x.metadata,
                    ) == (
                        y.position,
                        &y.stream,
                        y.version,
                        y.id,
                        &y.tags,
                        &y.payload,
                        &y.metadata,
                    )
                })
        };
        // Recovery keeps every whole batch: exactly what a read-only store
        // that sees written events saw, of which the durable view is a prefix.
        if written_view.len() != recovered.len() || !same(&written_view, &recovered) {
            return Err(format!(
                "a read-only store saw {} written events, recovery kept {}",
                written_view.len(),
                recovered.len()
            ));
        }
        if !same(&durable_view, &recovered) {
            return Err("a read-only store's durable view is not a prefix of the log".into());
        }
    }
    if damage_allowed {
        // Sealed segments are checked as they are read, not at open.
        if let Some(e) = read_everything(&store).err() {
            if is_damage_report(&e) && verified.is_clean() {
                return Err(missed(&e));
            }
            if is_damage_report(&e) {
                return Ok(InDoubt::default());
            }
            return Err(format!("read after recovery: {e:?}"));
        }
    }
    let present = check_recovered(&model, &store)?;
    let mut in_doubt = InDoubt::default();
    for (attempt, &here) in model.attempts.iter().zip(&present) {
        let doubtful = match attempt.outcome {
            Outcome::Unknown => true,
            Outcome::Acked(_) => attempt.seq >= model.durable_seq,
            Outcome::Rejected | Outcome::Lost => false,
        };
        if doubtful && attempt.is_multi_stream() {
            if here {
                in_doubt.present += 1;
            } else {
                in_doubt.absent += 1;
            }
        }
    }
    check_query_reads(&store, damage_allowed).map_err(|e| format!("after recovery: {e}"))?;
    model.forget_lost(&present);
    let set_aside = check_snapshots(&model, &store, damage_allowed)?;
    model.forget_snapshots(&set_aside);
    check_checkpoints(&mut model, &store, image)?;
    check_projections_after_recovery(&mut model, &store, image)?;
    check_appendable(&mut model, &store)?;
    check_commit_after_recovery(&mut model, &store)?;
    check_snapshot_after_recovery(&mut model, &store, image)?;
    check_checkpoint_saves_after_recovery(&mut model, &store, image)?;
    // Every damaged checkpoint file was saved over.
    model.flipped.clear();
    drop(store);
    let again = open_on(image, durability).map_err(|e| format!("second reopen: {e}"))?;
    check_recovered(&model, &again).map_err(|e| format!("after second reopen: {e}"))?;
    check_snapshots(&model, &again, false)
        .map(|_| ())
        .map_err(|e| format!("after second reopen: {e}"))?;
    check_checkpoints(&mut model, &again, image)
        .map_err(|e| format!("after second reopen: {e}"))?;
    Ok(in_doubt)
}

/// Verifies the crashed `image` before any recovery, on the frozen disk:
/// verification must not change it.
fn verify_image(image: &SimDisk) -> Result<evstore::verify::VerifyReport, String> {
    let before = image.mutations();
    image.fail_after(Some(before));
    let report = evstore::verify::verify_store_on(image, &store_dir(), &mut |_| {});
    image.fail_after(None);
    if image.mutations() != before {
        return Err("verify changed the disk".into());
    }
    report.map_err(|e| format!("verify failed: {e:?}"))
}

/// Opens the crashed `image` read-only, before any recovery, twice: seeing
/// durable events, and seeing every written one. Neither may change the
/// disk (it is frozen meanwhile, so an attempt fails the open). Returns the
/// two views of `$all`, or `None` when they report damage, which only
/// flipped bits allow.
fn read_only_views(
    image: &SimDisk,
    damage_allowed: bool,
) -> Result<Option<[Vec<RecordedEvent>; 2]>, String> {
    let before = image.mutations();
    image.fail_after(Some(before));
    let views = [Durability::Sync, Durability::Buffered].map(|visibility| {
        let store = Store::open_read_only(store_dir(), sim_options(image, visibility))?;
        let all = store.read_all(0, Direction::Forward, usize::MAX)?;
        store.close()?;
        Ok::<_, Error>(all)
    });
    image.fail_after(None);
    if image.mutations() != before {
        return Err("a read-only open changed the disk".into());
    }
    let [durable, written] = views;
    match (durable, written) {
        (Ok(durable), Ok(written)) => Ok(Some([durable, written])),
        (Err(e), _) | (_, Err(e)) if damage_allowed && is_damage_report(&e) => Ok(None),
        (Err(e), _) | (_, Err(e)) => Err(format!("read-only open before recovery: {e:?}")),
    }
}

// ------------------------------------------------- index files, catalogue

/// CRC-32 (IEEE) continued from `seed`, as the store seeds its checksums.
fn crc32_seeded(seed: u32, bytes: &[u8]) -> u32 {
    let mut crc = !seed;
    for &b in bytes {
        crc ^= u32::from(b);
        for _ in 0..8 {
            crc = if crc & 1 != 0 {
                (crc >> 1) ^ 0xEDB8_8320
            } else {
                crc >> 1
            };
        }
    }
    !crc
}

/// The checksum seed of the segment (and index file) at `base`.
fn segment_crc_seed(base: u64) -> u32 {
    let mixed = base ^ 0x9E37_79B9_7F4A_7C15;
    (mixed as u32) ^ ((mixed >> 32) as u32) ^ 0x5EED_0001
}

/// Gives an index file valid checksums for whatever it now holds (a forgery
/// the checksums cannot catch): the body CRC, then the header CRC, both
/// seeded from the base position its header names.
pub fn reseal_index_file(bytes: &mut [u8]) {
    if bytes.len() < 64 {
        return;
    }
    let mut base = [0u8; 8];
    base.copy_from_slice(&bytes[16..24]);
    let seed = segment_crc_seed(u64::from_le_bytes(base));
    let body = crc32_seeded(seed, &bytes[64..]);
    bytes[52..56].copy_from_slice(&body.to_le_bytes());
    let header = crc32_seeded(seed, &bytes[..60]);
    bytes[60..64].copy_from_slice(&header.to_le_bytes());
}

/// A cleanly closed store with several sealed segments, and what reading it
/// returned.
pub struct IndexBaseline {
    /// The closed store: copy it with `disk.crash(CrashPlan::KeepAll)`.
    pub disk: SimDisk,
    /// Whether stream names were hashed to one value (colliding tables).
    pub collide: bool,
    /// `read_all` of everything, forward.
    pub all: Vec<RecordedEvent>,
    /// Every stream with its events, forward, plus one that has none.
    pub streams: Vec<(String, Vec<RecordedEvent>)>,
    /// `streams()`.
    pub listed: Vec<evstore::StreamInfo>,
    /// The index files of the sealed segments, in position order.
    pub index_files: Vec<PathBuf>,
    /// The stream catalogue.
    pub catalog: PathBuf,
}

/// Options of the index baselines.
fn baseline_options(disk: &SimDisk, collide: bool) -> Options {
    sim_options(disk, Durability::Sync).collide_stream_hashes(collide)
}

fn open_baseline(disk: &SimDisk, collide: bool) -> evstore::Result<Store> {
    Store::open(store_dir(), baseline_options(disk, collide))
}

/// Builds the store behind [`index_decode`]: streams that span several
/// segments, one that lives in a single segment, batches of one to three
/// events with distinct ids, at least three sealed segments.
pub fn build_index_baseline(collide: bool) -> IndexBaseline {
    let disk = SimDisk::new();
    let store = open_baseline(&disk, collide).expect("fresh store");
    let names = ["order-1", "cart-7", "user-ada", "a", "x-long-stream-name"];
    let mut id = 0u128;
    for i in 0..48usize {
        let stream = if i == 20 || i == 22 {
            "solo"
        } else {
            names[(i * 3 + i / 5) % names.len()]
        };
        let events: Vec<EventData> = (0..1 + i % 3)
            .map(|j| {
                id += 1;
                let payload: Vec<u8> = (0..40 + (i * 37 + j * 11) % 260)
                    .map(|b| (b as u8).wrapping_mul(7) ^ i as u8)
                    .collect();
                EventData::new(TYPES[(i + j) % TYPES.len()], payload)
                    .with_metadata(vec![j as u8; i % 5])
                    .with_id(Uuid::from_u128((0x1D << 120) | id))
            })
            .collect();
        store
            .append(stream, ExpectedVersion::Any, &events)
            .expect("baseline append");
    }
    let all = store
        .read_all(0, Direction::Forward, usize::MAX)
        .expect("baseline read_all");
    let listed: Vec<evstore::StreamInfo> = store
        .streams()
        .collect::<evstore::Result<_>>()
        .expect("baseline streams");
    let mut streams = Vec::new();
    for info in &listed {
        let events = store
            .read_stream(&info.name, 0, Direction::Forward, usize::MAX)
            .expect("baseline read_stream");
        assert_eq!(events.len() as u64, info.version + 1, "{}", info.name);
        streams.push((info.name.clone(), events));
    }
    streams.push(("nobody".to_string(), Vec::new()));
    store.close().expect("close the baseline");
    let disk = disk.crash(CrashPlan::LoseAll);
    let segments = store_dir().join(evstore::SEGMENTS_DIR);
    let index_files: Vec<PathBuf> = disk
        .files()
        .into_iter()
        .filter(|p| p.parent() == Some(segments.as_path()))
        .filter(|p| p.extension().is_some_and(|e| e == "idx"))
        .collect();
    assert!(
        index_files.len() >= 3,
        "the baseline has {} sealed segments",
        index_files.len()
    );
    for path in &index_files {
        // The forger computes the store's checksums: resealing a sound
        // file must leave it as it is.
        let bytes = disk.read_file(path).expect("index file");
        let mut resealed = bytes.clone();
        reseal_index_file(&mut resealed);
        assert_eq!(bytes, resealed, "resealing {} changed it", path.display());
    }
    IndexBaseline {
        disk,
        collide,
        all,
        streams,
        listed,
        index_files,
        catalog: segments.join("streams.catalog"),
    }
}

fn index_baseline(collide: bool) -> &'static IndexBaseline {
    static PLAIN: std::sync::OnceLock<IndexBaseline> = std::sync::OnceLock::new();
    static COLLIDING: std::sync::OnceLock<IndexBaseline> = std::sync::OnceLock::new();
    let cell = if collide { &COLLIDING } else { &PLAIN };
    cell.get_or_init(|| build_index_baseline(collide))
}

/// What a store opened on damaged files may answer besides exactly what
/// the baseline recorded.
#[derive(Debug, Clone, Copy, Default)]
struct Leeway {
    /// A typed report of damage.
    damage: bool,
}

fn shorten(mut text: String) -> String {
    if text.len() > 2000 {
        let mut cut = 2000;
        while !text.is_char_boundary(cut) {
            cut -= 1;
        }
        text.truncate(cut);
        text.push_str("...");
    }
    text
}

/// Compares one answer with what the baseline recorded. Returns whether it
/// was exact.
fn same_or_damage<T: PartialEq + std::fmt::Debug>(
    what: &str,
    got: evstore::Result<T>,
    want: &T,
    leeway: Leeway,
) -> Result<bool, String> {
    match got {
        Ok(got) if got == *want => Ok(true),
        Ok(got) => Err(shorten(format!(
            "{what} answered otherwise than before\n got: {got:?}\nwant: {want:?}"
        ))),
        Err(e) if leeway.damage && is_damage_report(&e) => Ok(false),
        Err(e) => Err(format!("{what}: {e:?}")),
    }
}

/// Every read of the baseline against a store opened on a damaged copy.
/// Returns whether all of them answered exactly as before.
fn check_index_reads(store: &Store, base: &IndexBaseline, leeway: Leeway) -> Result<bool, String> {
    let mut exact = true;
    exact &= same_or_damage(
        "read_all forward",
        store.read_all(0, Direction::Forward, usize::MAX),
        &base.all,
        leeway,
    )?;
    let mut backward = base.all.clone();
    backward.reverse();
    exact &= same_or_damage(
        "read_all backward",
        store.read_all(u64::MAX, Direction::Backward, usize::MAX),
        &backward,
        leeway,
    )?;
    let mid = base.all.len() / 2;
    exact &= same_or_damage(
        "read_all from the middle",
        store.read_all(mid as u64, Direction::Forward, 7),
        &base.all[mid..(mid + 7).min(base.all.len())].to_vec(),
        leeway,
    )?;
    for (name, events) in &base.streams {
        exact &= same_or_damage(
            &format!("read_stream({name}) forward"),
            store.read_stream(name, 0, Direction::Forward, usize::MAX),
            events,
            leeway,
        )?;
        let mut backward = events.clone();
        backward.reverse();
        exact &= same_or_damage(
            &format!("read_stream({name}) backward"),
            store.read_stream(name, u64::MAX, Direction::Backward, usize::MAX),
            &backward,
            leeway,
        )?;
        // From the middle: finds the segment holding a version.
        let from = events.len() / 2;
        let window = events[from..(from + 3).min(events.len())].to_vec();
        exact &= same_or_damage(
            &format!("read_stream({name}) from version {from}"),
            store.read_stream(name, from as u64, Direction::Forward, 3),
            &window,
            leeway,
        )?;
        let last = events.last().map(|e| e.version);
        exact &= same_or_damage(
            &format!("stream_version({name})"),
            store.stream_version(name),
            &last,
            leeway,
        )?;
    }
    exact &= same_or_damage(
        "streams()",
        store.streams().collect::<evstore::Result<Vec<_>>>(),
        &base.listed,
        leeway,
    )?;
    Ok(exact)
}

/// Overwrites `bytes` from `at` (modulo its length plus one) with `with`,
/// growing it if the write runs past the end.
fn overwrite(bytes: &mut Vec<u8>, at: usize, with: &[u8]) {
    let at = at % (bytes.len() + 1);
    if bytes.len() < at + with.len() {
        bytes.resize(at + with.len(), 0);
    }
    bytes[at..at + with.len()].copy_from_slice(with);
}

/// `index_decode`: a store with sealed segments whose index files or stream
/// catalogue were replaced, overwritten in part or removed, by bytes from
/// the fuzzer:
///
/// - byte 0: bits 0-1 choose the damage: 0 replace an index file with the
///   rest, 1 overwrite part of an index file, 2 overwrite part of the
///   catalogue, 3 remove files (bits 3-4: 0 the index file, 1 the
///   catalogue, 2 or 3 both) and overwrite the next index file; bit 2 gives
///   the damaged index files valid checksums (a forgery); bit 5 uses a
///   store whose stream names all hash alike.
/// - byte 1: which index file;
/// - bytes 2-3 (not for 0): where to overwrite, little-endian;
/// - the rest: the bytes written.
///
/// Damage the checksums catch must be repaired: the store opens and reads
/// exactly as before. A forgery may instead be reported as damage with a
/// typed error, but no read may return other events than were written.
/// The store is then reopened and checked again; a store that read back
/// exactly must not find anything left to rebuild.
pub fn index_decode(data: &[u8]) {
    let Some((&mode, rest)) = data.split_first() else {
        return;
    };
    let Some((&choice, rest)) = rest.split_first() else {
        return;
    };
    let op = mode & 3;
    let forge = mode & 4 != 0;
    let base = index_baseline(mode & 0x20 != 0);
    let (at, payload) = match (op, rest) {
        (0, rest) => (0, rest),
        (_, [lo, hi, rest @ ..]) => (usize::from(u16::from_le_bytes([*lo, *hi])), rest),
        _ => return,
    };
    let disk = base.disk.crash(CrashPlan::KeepAll);
    let files = &base.index_files;
    let chosen = &files[usize::from(choice) % files.len()];
    let damage_index = |path: &Path, edit: &dyn Fn(&mut Vec<u8>)| {
        let mut bytes = disk.read_file(path).expect("index file");
        edit(&mut bytes);
        if forge {
            reseal_index_file(&mut bytes);
        }
        disk.write_file(path, &bytes).expect("write index file");
    };
    match op {
        0 => damage_index(chosen, &|bytes| *bytes = payload.to_vec()),
        1 => damage_index(chosen, &|bytes| overwrite(bytes, at, payload)),
        2 => {
            let mut bytes = disk.read_file(&base.catalog).expect("catalogue");
            overwrite(&mut bytes, at, payload);
            disk.write_file(&base.catalog, &bytes)
                .expect("write catalogue");
        }
        _ => {
            use evstore::storage::Storage;
            let (remove_index, remove_catalog) = match (mode >> 3) & 3 {
                0 => (true, false),
                1 => (false, true),
                _ => (true, true),
            };
            if remove_index {
                disk.remove_file(chosen).expect("remove index file");
            }
            if remove_catalog {
                disk.remove_file(&base.catalog).expect("remove catalogue");
            }
            let other = &files[(usize::from(choice) + 1) % files.len()];
            if other != chosen {
                damage_index(other, &|bytes| overwrite(bytes, at, payload));
            }
            let segments = store_dir().join(evstore::SEGMENTS_DIR);
            disk.sync_dir(&segments)
                .expect("sync the segments directory");
        }
    }
    // Without a forgery every change is caught by a checksum, or is a
    // missing file: the store repairs it from the segments.
    let leeway = Leeway { damage: forge };
    let mut previous_exact = false;
    for round in ["first open", "reopen"] {
        let store = match open_baseline(&disk, base.collide) {
            Ok(store) => store,
            Err(e) if leeway.damage && is_damage_report(&e) => {
                assert!(!previous_exact, "{round}: {e:?} after reading exactly");
                continue;
            }
            Err(e) => panic!("{round}: open failed: {e:?}"),
        };
        let stats = store.recovery_stats();
        let exact = check_index_reads(&store, base, leeway)
            .unwrap_or_else(|e| panic!("{round}: {e}\nstats: {stats:?}"));
        if previous_exact {
            // Whatever the first open and its reads repaired was written
            // back and is sound now.
            assert_eq!(stats.index_files_rebuilt, 0, "{round}: {stats:?}");
            assert!(!stats.catalog_rebuilt, "{round}: {stats:?}");
            assert_eq!(store.index_repairs(), 0, "{round}: lazy repairs again");
        }
        previous_exact = exact;
        drop(store);
    }
}

// ------------------------------------------------ crashes while sealing

/// Appends of two 300-byte events, synced, round the streams: a seal every
/// few appends.
fn sealing_workload() -> Vec<Op> {
    (0..14u8)
        .map(|i| Op::Append {
            stream: i % 4,
            events: vec![
                EventSpec {
                    type_index: i,
                    payload_len: 300,
                    metadata_len: i % 7,
                    fill: i,
                };
                2
            ],
            expected: ExpectedSpec::Any,
            sync: true,
        })
        .collect()
}

fn index_file_count(disk: &SimDisk) -> usize {
    disk.files()
        .iter()
        .filter(|p| p.extension().is_some_and(|e| e == "idx"))
        .count()
}

/// Every stream of the store read forward and backward through
/// `read_stream`, against its events in `read_all`; then `streams()`.
fn check_stream_reads(store: &Store) -> Result<(), String> {
    let all = store
        .read_all(0, Direction::Forward, usize::MAX)
        .map_err(|e| format!("read_all: {e:?}"))?;
    let mut by_stream: std::collections::BTreeMap<&str, Vec<&RecordedEvent>> =
        std::collections::BTreeMap::new();
    for e in &all {
        by_stream.entry(&e.stream).or_default().push(e);
    }
    for (stream, events) in &by_stream {
        let forward = store
            .read_stream(stream, 0, Direction::Forward, usize::MAX)
            .map_err(|e| format!("read_stream({stream}): {e:?}"))?;
        if !forward.iter().eq(events.iter().copied()) {
            return Err(format!("read_stream({stream}) differs from read_all"));
        }
        let backward = store
            .read_stream(stream, u64::MAX, Direction::Backward, usize::MAX)
            .map_err(|e| format!("read_stream({stream}) backward: {e:?}"))?;
        if !backward.iter().eq(events.iter().rev().copied()) {
            return Err(format!("read_stream({stream}) backward differs"));
        }
    }
    let listed = store
        .streams()
        .collect::<evstore::Result<Vec<_>>>()
        .map_err(|e| format!("streams(): {e:?}"))?;
    let want: Vec<(String, u64)> = by_stream
        .iter()
        .map(|(name, events)| (name.to_string(), events.len() as u64 - 1))
        .collect();
    let got: Vec<(String, u64)> = listed.into_iter().map(|s| (s.name, s.version)).collect();
    if got != want {
        return Err(format!("streams() lists {got:?}, the log holds {want:?}"));
    }
    Ok(())
}

/// Recovers a crash image taken while a segment was being sealed: the
/// store opens, holds every acknowledged append, reads every stream, takes
/// an append, and a second open finds nothing left to rebuild.
fn check_sealing_recovery(image: &SimDisk, mut model: Model) -> Result<(), String> {
    let store = open_on(image, Durability::Sync).map_err(|e| format!("recovery: {e:?}"))?;
    let present = check_recovered(&model, &store)?;
    model.forget_lost(&present);
    check_stream_reads(&store)?;
    check_appendable(&mut model, &store)?;
    drop(store);
    let again = open_on(image, Durability::Sync).map_err(|e| format!("second open: {e:?}"))?;
    let stats = again.recovery_stats();
    if stats.index_files_rebuilt != 0 || stats.catalog_rebuilt {
        return Err(format!(
            "the second open rebuilt an index file or the catalogue: {stats:?}"
        ));
    }
    check_recovered(&model, &again).map_err(|e| format!("after the second open: {e}"))?;
    check_stream_reads(&again).map_err(|e| format!("after the second open: {e}"))?;
    if again.index_repairs() != 0 {
        return Err("the second open repaired an index file".into());
    }
    Ok(())
}

/// For every storage operation around each segment seal of a fixed
/// workload (the seal itself, the index file and the catalogue written to
/// temporary files, synced, renamed, the directory synced, the next
/// segment installed), stops the process at that operation, then recovers
/// the image each crash plan leaves and checks it. Returns the number of
/// images checked; panics on the first that fails.
pub fn crash_during_sealing_cases() -> usize {
    let ops = sealing_workload();
    // A fault-free run finds the operations of the appends that seal.
    let disk = SimDisk::new();
    let mut model = Model::default();
    let mut store = Some(open_on(&disk, Durability::Sync).expect("open"));
    let mut reopen = || open_on(&disk, Durability::Sync);
    let mut windows = Vec::new();
    for op in &ops {
        let (before, indexed) = (disk.mutations(), index_file_count(&disk));
        run_ops(
            std::slice::from_ref(op),
            &mut model,
            &mut store,
            &mut reopen,
            true,
        );
        if index_file_count(&disk) > indexed {
            windows.push(before..disk.mutations() + 1);
        }
    }
    drop(store);
    assert!(windows.len() >= 2, "the workload sealed {windows:?}");
    let mut cases = 0;
    for n in windows.into_iter().flatten() {
        let plans = [
            CrashPlan::LoseAll,
            CrashPlan::KeepAll,
            CrashPlan::Torn { seed: n },
            CrashPlan::Torn { seed: n ^ 0x5EA1 },
            CrashPlan::Garbled { seed: n },
            CrashPlan::Garbled { seed: n ^ 0x5EA1 },
        ];
        let disk = SimDisk::new();
        let mut model = Model::default();
        let mut store = Some(open_on(&disk, Durability::Sync).expect("open"));
        disk.fail_after(Some(n));
        let mut reopen = || open_on(&disk, Durability::Sync);
        run_ops(&ops, &mut model, &mut store, &mut reopen, false);
        for plan in plans {
            let image = disk.crash(plan);
            if let Err(e) = check_sealing_recovery(&image, model.clone()) {
                panic!("crash at operation {n}, {plan:?}: {e}");
            }
            cases += 1;
        }
        drop(store);
    }
    cases
}
