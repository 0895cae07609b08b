//! Dynamic Consistency Boundaries: conditional appends, a contended guard,
//! reads by tag and multi-stream commits, evstore against tephra and SQLite
//! on the same workloads.
//!
//! Every event has a 256-byte payload and every append is durable: evstore
//! with `Durability::Sync` (the default), tephra through
//! `WriteHandle::append` (answered once its group's `fdatasync` is done; it
//! has no other kind of append), SQLite (rusqlite, bundled) in WAL mode with
//! `synchronous=FULL`. Groups (one per workload, ids `<system>/<parameters>`
//! as `evstore/threads=16`, `tephra/threads=16`, `sqlite/threads=16`; every
//! group reports `Throughput::Elements`, so criterion prints events/s, and
//! `benches/summarize_dcb.py` tabulates the ratios):
//!
//! * `dcb_append`: conditional appends of one event each, every thread
//!   guarding its own tag `t:<thread>`: the condition is that no event with
//!   that tag lies after the last position the thread saw (the end of its
//!   previous append; the whole log before its first). No append ever
//!   conflicts; a conflict would stop the benchmark. Threads 1, 16 and 64.
//!   evstore: `Store::commit` of one event tagged `t:<thread>` to the
//!   thread's stream (`ExpectedVersion::Any`: the condition is the only
//!   guard) with `AppendCondition::new(Query::tagged([tag]), after)`.
//!   tephra: `append` of one event tagged `t:<thread>` with
//!   `AppendCondition::new(query).after(position)`. SQLite: the events
//!   table plus a tags table `(event_position, tag)` indexed on
//!   `(tag, event_position)` (so that "a tagged event after position p" is
//!   one index probe), and per append one `BEGIN IMMEDIATE` transaction that
//!   selects whether such an event exists, then inserts the event and its
//!   tag.
//! * `dcb_contended`: 16 threads guarding one shared tag. Each decision
//!   reads the tag's events after what the thread last read (evstore
//!   `read_query_after`, tephra `read`, SQLite a join of tags and events
//!   under the connection's mutex), folds their payloads, and appends one
//!   event with the condition that nothing tagged came after the head the
//!   read was served at; most fail. The elements are successful appends
//!   only: `iter_custom` times from the release of the threads to the
//!   moment the iteration's last required success returns (appends still in
//!   flight then complete untimed). After every run, outside the
//!   measurement, the benchmark reads the shared tag and checks that it
//!   holds exactly the events of the successful appends and that each of
//!   them was decided at a head at or after the tagged event before it (so
//!   no two succeeded against the same head). The ratio of attempts to
//!   successes is printed to stderr.
//! * `dcb_read`: the 1,000 events of one tag (`target-tag`) from a log of
//!   10,000,000 events (`EVSTORE_BENCH_EVENTS` overrides the size, e.g.
//!   `EVSTORE_BENCH_EVENTS=1000000` for a quick run); the other events each
//!   carry one of up to 100,000 other tags (events / 100 of them), chosen
//!   pseudo-randomly, and the target events are spread evenly over the
//!   whole log (the first at position 0, then one every events / 1,000).
//!   evstore: `read_query(&Query::tagged(["target-tag"]), 0, Forward,
//!   1000)`; tephra: `read(&query, Position::ZERO, Some(1000))`, streamed
//!   (its lending iterator, no copy out); SQLite: `SELECT ... FROM tags JOIN
//!   events ... WHERE tag = ?1 ORDER BY event_position LIMIT ?2` into owned
//!   rows, with a 256 MiB page cache and the file memory-mapped up to the
//!   bundled build's 2 GiB limit (the tuned setup of `benches/read.rs`).
//!   Each reads one byte of every 64 of every payload. All three are read
//!   warm: every file is read through once before the group. Stores are
//!   built once under `target/bench-data/dcb` (see below). The open of
//!   evstore and tephra and evstore's first query after open (which loads
//!   or builds the postings of every segment it touches) are timed and
//!   printed to stderr, outside the measurement.
//! * `dcb_commit`: one thread, 10 events per commit, cycling through 16
//!   pairs of streams: `streams=1` appends all 10 to one stream, `streams=2`
//!   splits them 5 + 5 over the two streams of the pair in one atomic
//!   commit, both guarded by the exact expected version of every stream
//!   written. evstore: `Store::append` against `Store::commit` with two
//!   `append` parts. tephra (no streams: each event carries a tag naming its
//!   stream): one append whose condition queries the stream's tag, or both
//!   tags, after the pair's last position. SQLite: the stream schema of
//!   `benches/append.rs` and one `BEGIN IMMEDIATE` transaction checking the
//!   last version of each stream written before inserting.
//!   Unlike the other groups, this one runs each system's two variants
//!   back to back (evstore 1, 2, tephra 1, 2, SQLite 1, 2).
//!
//! SQLite runs with one connection shared by every thread behind a mutex,
//! as in `benches/append.rs` (SQLite admits one writer at a time; a
//! connection per thread leaves the losers sleeping in the busy handler).
//! In `dcb_contended` the read and the conditional append take the mutex
//! separately, so other threads interleave between a decision and its
//! write as they do with the other systems.
//!
//! In `dcb_append` and `dcb_commit` one criterion iteration is every thread
//! making a fixed number of appends, calibrated per benchmark (outside the
//! measurement) to take about [`TARGET_ITERATION`]; in `dcb_contended` it is
//! a calibrated number of successful appends. Stores written by the append
//! groups are replaced by fresh ones between samples after 1 GiB, and
//! everything lives under `target/bench-data` (`EVSTORE_BENCH_DIR`
//! overrides it) so it is on the real disk, not a tmpfs.
//!
//! After the criterion groups, the workloads of `dcb_append` and
//! `dcb_commit` that were selected run again with their three systems in
//! alternating rounds (see `interleave`), whose per-round ratios do not
//! move with the disk's speed between groups; `benches/summarize_dcb.py`
//! prints them from `target/bench-data/dcb/interleaved.json`.
//!
//! `dcb_read` data: three stores per log size, `evstore-N`, `tephra-N` and
//! `sqlite-N.db` under `target/bench-data/dcb`, each with a `.complete`
//! marker recording the parameters it was made with (and the evstore format
//! version, the tephra release and the SQLite version); a store whose marker
//! is missing or different is deleted and made again. They are built fast,
//! not durably: evstore with `Durability::Buffered` and appends of 1,000
//! events, tephra with appends of 10,000 events, SQLite with no journal and
//! no syncs, its tag index made after the rows. Building prints its
//! progress to stderr. At 10M events the three take about 10 GB.
//!
//! `cargo bench --bench dcb` then `python3 benches/summarize_dcb.py`. A
//! filter selects benchmarks as usual (e.g. `cargo bench --bench dcb --
//! dcb_read`); unselected benchmarks are not prepared and their data is not
//! built. Run as a test (`cargo test --benches`) everything is small and
//! temporary.

#[path = "common/cli.rs"]
mod cli;
#[path = "common/data.rs"]
#[allow(dead_code)]
mod data;

use bytes::Bytes;
use cli::Cli;
use criterion::{criterion_group, criterion_main, Criterion, SamplingMode, Throughput};
use data::bench_root;
use evstore::{Commit, Direction, Durability, EventData, ExpectedVersion, Options, Store};
use parking_lot::Mutex;
use rusqlite::{params, Connection, TransactionBehavior};
use std::fs;
use std::hint::black_box;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Barrier;
use std::thread;
use std::time::{Duration, Instant};
use tempfile::TempDir;
use tephra::{
    AppendError, Event, EventType, Position, QueryItem, SegmentConfig, SegmentSet, Tag, Tags,
    WriteCoordinator, WriteHandle, WriterConfig,
};

/// Payload bytes of every event.
const PAYLOAD_LEN: usize = 256;
/// Event type of every event.
const EVENT_TYPE: &str = "BenchEvent";
/// Segment size of both evstore and tephra: evstore's default, set
/// explicitly so the two cannot drift apart.
const SEGMENT_SIZE: usize = 64 << 20;
/// What one iteration should take; the work per iteration is calibrated to
/// it.
const TARGET_ITERATION: Duration = Duration::from_millis(50);
/// A calibration probe shorter than this is repeated with more work.
const PROBE_MIN: Duration = Duration::from_millis(25);
/// Upper bound on the events one iteration appends.
const MAX_ITERATION_EVENTS: u64 = 1 << 18;
/// A store written by the append groups is replaced by a fresh one, between
/// samples, once about this many bytes have been appended to it.
const MAX_STORE_BYTES: u64 = 1 << 30;
/// Bytes an appended event is counted as towards [`MAX_STORE_BYTES`]: its
/// payload and a generous allowance for framing, names and tags.
const EVENT_BYTES: u64 = 384;

/// Thread counts of `dcb_append`.
const APPEND_THREADS: [usize; 3] = [1, 16, 64];
/// Threads of `dcb_contended`.
const CONTENDED_THREADS: usize = 16;
/// The tag every `dcb_contended` thread guards.
const SHARED_TAG: &str = "shared";
/// Events per commit in `dcb_commit`.
const COMMIT_EVENTS: usize = 10;
/// Stream pairs `dcb_commit` cycles through.
const COMMIT_PAIRS: usize = 16;

/// Log size of `dcb_read` unless `EVSTORE_BENCH_EVENTS` says otherwise.
const READ_EVENTS: u64 = 10_000_000;
/// Events of [`TARGET_TAG`] (fewer only in a log of under 10,000 events).
const TARGET_EVENTS: u64 = 1_000;
/// The tag `dcb_read` reads; as long as the other tags' names.
const TARGET_TAG: &str = "target-tag";
/// Most tags besides [`TARGET_TAG`] in a `dcb_read` log.
const MAX_OTHER_TAGS: u64 = 100_000;
/// Changing how the `dcb_read` data is generated must change this, so that
/// stores made by an older version are not reused.
const GENERATOR_VERSION: u32 = 1;
/// The tephra release the `dcb_read` store is made with (its marker).
const TEPHRA_RELEASE: &str = "0.4";
/// Events per evstore append while building.
const EVSTORE_BUILD_BATCH: usize = 1_000;
/// Streams the evstore build appends take turns over.
const EVSTORE_BUILD_STREAMS: u64 = 100;
/// Events per tephra append while building (about 3 MB, under its 8 MiB
/// batch limit).
const TEPHRA_BUILD_BATCH: usize = 10_000;
/// Events per SQLite transaction while building.
const SQLITE_BUILD_TX: u64 = 500_000;
/// Seed of the payload bytes of `dcb_read`.
const PAYLOAD_SEED: u64 = 0x0dcb_5eed_0f0a_11ad;

// ---------------------------------------------------------------- helpers

/// Payload bytes that are not all alike (a constant payload could hide
/// bugs).
fn payload(seed: usize) -> Vec<u8> {
    let mut x = 0x9e37_79b9_7f4a_7c15u64 ^ (seed as u64);
    (0..PAYLOAD_LEN)
        .map(|_| {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            x as u8
        })
        .collect()
}

/// Reads one byte of every 64 of `payload` (every cache line) and returns
/// them summed with the length, so that nothing can skip the bytes.
fn touch(payload: &[u8]) -> u64 {
    payload.len() as u64
        + payload
            .iter()
            .step_by(64)
            .map(|&b| u64::from(b))
            .sum::<u64>()
}

/// SplitMix64's finalizer: a well-mixed value for each event number.
fn mix(mut x: u64) -> u64 {
    x = x.wrapping_add(0x9e37_79b9_7f4a_7c15);
    x = (x ^ (x >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
    x = (x ^ (x >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
    x ^ (x >> 31)
}

fn fresh_dir(root: &Path) -> TempDir {
    tempfile::tempdir_in(root).expect("creating a temporary directory")
}

/// Writes back every dirty page (outside the measurement), so one
/// benchmark's data is not flushed during the next one's syncs.
fn settle() {
    rustix::fs::sync();
}

fn tephra_tags(tags: &[&str]) -> Tags {
    Tags::new(tags.iter().map(|t| Tag::new(*t).expect("tephra tag"))).expect("tephra tags")
}

fn tephra_query(tags: &[&str]) -> tephra::Query {
    tephra::Query::item(QueryItem::with_tags(tephra_tags(tags)))
}

fn tephra_event_type() -> EventType {
    EventType::new(EVENT_TYPE).expect("tephra event type")
}

/// The expectation for a stream holding `len` events.
fn expected_version(len: u64) -> ExpectedVersion {
    match len {
        0 => ExpectedVersion::NoStream,
        n => ExpectedVersion::Exact(n - 1),
    }
}

/// Spawns `threads` threads, releases them together and runs `work(t)` on
/// each; returns when all are done, with the instant they were released.
fn run_threads(threads: usize, work: impl Fn(usize) + Sync) -> Instant {
    let barrier = Barrier::new(threads + 1);
    thread::scope(|scope| {
        for t in 0..threads {
            let (barrier, work) = (&barrier, &work);
            scope.spawn(move || {
                barrier.wait();
                work(t);
            });
        }
        barrier.wait();
        Instant::now()
    })
}

/// The units of work (appends per thread, successes) that make one
/// iteration take about [`TARGET_ITERATION`], from probes `run(units)`.
fn calibrate(max: u64, mut run: impl FnMut(u64) -> Duration) -> u64 {
    let max = max.max(1);
    let mut units = 1u64;
    loop {
        let elapsed = run(units).max(Duration::from_micros(1));
        if elapsed >= PROBE_MIN || units >= max {
            let scaled = units as f64 * TARGET_ITERATION.as_secs_f64() / elapsed.as_secs_f64();
            return (scaled.round() as u64).clamp(1, max);
        }
        let factor = (PROBE_MIN.as_secs_f64() * 1.5 / elapsed.as_secs_f64()).ceil() as u64;
        units = (units * factor.clamp(2, 64)).min(max);
    }
}

fn zeroed(n: usize) -> Vec<AtomicU64> {
    (0..n).map(|_| AtomicU64::new(0)).collect()
}

fn reset(counters: &mut [AtomicU64]) {
    for counter in counters {
        *counter.get_mut() = 0;
    }
}

// ---------------------------------------------------------------- systems

/// Something the append groups open in a fresh directory and close.
trait Shut {
    fn shut(self);
}

impl Shut for Store {
    fn shut(self) {
        self.close().expect("closing the store");
    }
}

/// A running tephra log: the coordinator that owns the writer thread and a
/// handle the appenders share (a channel sender into the single writer, so
/// sharing it is what its API intends).
struct TephraLog {
    coordinator: WriteCoordinator,
    handle: WriteHandle,
}

impl TephraLog {
    fn open(dir: &Path) -> Self {
        let set = SegmentSet::open(dir, SegmentConfig::new(SEGMENT_SIZE))
            .expect("opening the tephra segment set");
        let (coordinator, handle) = WriteCoordinator::start(set, WriterConfig::default())
            .expect("starting the tephra writer");
        TephraLog {
            coordinator,
            handle,
        }
    }
}

impl Shut for TephraLog {
    /// Stops the writer thread (joining it) and closes the segments.
    fn shut(self) {
        drop(self.handle);
        drop(self.coordinator.shutdown());
    }
}

/// One SQLite connection shared by every thread.
struct SqliteDb(Mutex<Connection>);

impl Shut for SqliteDb {
    fn shut(self) {}
}

/// The DCB schema: events, and their tags in a table of their own. The tag
/// index holds the position too, so that whether an event with a tag lies
/// after a position is one probe of it.
const SQLITE_DCB_SCHEMA: &str = "
    CREATE TABLE events (
        position INTEGER PRIMARY KEY,
        type TEXT NOT NULL,
        payload BLOB NOT NULL
    );
    CREATE TABLE tags (
        event_position INTEGER NOT NULL,
        tag TEXT NOT NULL
    );
    CREATE INDEX tags_tag ON tags (tag, event_position);
";

/// The stream schema of `benches/append.rs`.
const SQLITE_STREAM_SCHEMA: &str = "
    CREATE TABLE events (
        position INTEGER PRIMARY KEY,
        stream TEXT NOT NULL,
        version INTEGER NOT NULL,
        type TEXT NOT NULL,
        payload BLOB NOT NULL
    );
    CREATE UNIQUE INDEX events_stream_version ON events (stream, version);
";

fn open_sqlite(dir: &Path, schema: &str) -> SqliteDb {
    let conn = Connection::open(dir.join("events.db")).expect("opening SQLite");
    conn.busy_timeout(Duration::from_secs(60))
        .expect("busy_timeout");
    let mode: String = conn
        .query_row("PRAGMA journal_mode = WAL", [], |r| r.get(0))
        .expect("journal_mode");
    assert_eq!(mode.to_lowercase(), "wal", "SQLite refused WAL mode");
    conn.pragma_update(None, "synchronous", "FULL")
        .expect("synchronous");
    conn.execute_batch(schema).expect("creating the schema");
    SqliteDb(Mutex::new(conn))
}

fn open_sqlite_dcb(dir: &Path) -> SqliteDb {
    open_sqlite(dir, SQLITE_DCB_SCHEMA)
}

fn open_sqlite_streams(dir: &Path) -> SqliteDb {
    open_sqlite(dir, SQLITE_STREAM_SCHEMA)
}

fn open_evstore(dir: &Path) -> Store {
    // Default options (durability Sync, no linger); the segment size is the
    // default too, spelled out so that tephra gets the same one.
    Store::open(dir, Options::default().segment_size(SEGMENT_SIZE as u64))
        .expect("opening the store")
}

/// A store (or log, or database) in a fresh directory, replaced by another
/// once about [`MAX_STORE_BYTES`] have been appended to it, so the disk
/// footprint and the in-memory indexes stay bounded.
struct Fresh<S: Shut> {
    root: PathBuf,
    open: fn(&Path) -> S,
    /// Dropped in this order: the store closes before its directory goes.
    current: Option<(S, TempDir)>,
    written: u64,
}

impl<S: Shut> Fresh<S> {
    fn new(root: &Path, open: fn(&Path) -> S) -> Self {
        Fresh {
            root: root.to_path_buf(),
            open,
            current: None,
            written: 0,
        }
    }

    /// Outside the measurement: room for `bytes` more. Returns whether the
    /// store is a new, empty one.
    fn begin(&mut self, bytes: u64) -> bool {
        let renew =
            self.current.is_none() || (self.written > 0 && self.written + bytes > MAX_STORE_BYTES);
        if renew {
            self.close();
            let dir = fresh_dir(&self.root);
            let store = (self.open)(dir.path());
            self.current = Some((store, dir));
            self.written = 0;
        }
        self.written += bytes;
        renew
    }

    fn get(&self) -> &S {
        &self.current.as_ref().expect("used before begin").0
    }

    fn close(&mut self) {
        if let Some((store, dir)) = self.current.take() {
            store.shut();
            drop(dir);
            settle();
        }
    }
}

impl<S: Shut> Drop for Fresh<S> {
    fn drop(&mut self) {
        self.close();
    }
}

// ---------------------------------------------------------------- fixed work

/// A system under test in `dcb_append` or `dcb_commit`.
trait Target: Sync {
    /// Outside the measurement: get ready for a run in which each of
    /// `threads` threads makes `appends_per_thread` appends.
    fn begin(&mut self, threads: usize, appends_per_thread: u64);
    /// The `n`-th append of thread `t` in the current run.
    fn append(&self, t: usize, n: u64);
}

/// One run: every thread makes `appends_per_thread` appends.
fn timed_run<T: Target + ?Sized>(
    target: &mut T,
    threads: usize,
    appends_per_thread: u64,
) -> Duration {
    target.begin(threads, appends_per_thread);
    let shared: &T = target;
    let start = run_threads(threads, |t| {
        for n in 0..appends_per_thread {
            shared.append(t, n);
        }
    });
    start.elapsed()
}

/// Calibrates `target` and benchmarks it as `group/id`, `threads` threads
/// appending `events_per_append` events per append.
fn bench_target<T: Target>(
    c: &mut Criterion,
    cli: &Cli,
    (group, id): (&str, &str),
    threads: usize,
    events_per_append: usize,
    make: impl FnOnce() -> T,
) {
    if !cli.selects(&format!("{group}/{id}")) {
        return;
    }
    let mut target = make();
    let per_append = (threads * events_per_append) as u64;
    let appends = if cli.list || cli.test {
        1
    } else {
        calibrate(MAX_ITERATION_EVENTS / per_append, |n| {
            timed_run(&mut target, threads, n)
        })
    };
    let mut g = c.benchmark_group(group);
    g.sampling_mode(SamplingMode::Flat);
    g.throughput(Throughput::Elements(appends * per_append));
    g.bench_function(id, |b| {
        b.iter_custom(|iters| timed_run(&mut target, threads, appends * iters));
    });
    g.finish();
    drop(target);
    settle();
}

// ------------------------------------------------ dcb_append: own tag each

/// The tag thread `t` guards.
fn thread_tag(t: usize) -> String {
    format!("t:{t:02}")
}

struct EvstoreGuarded {
    store: Fresh<Store>,
    streams: Vec<String>,
    tags: Vec<String>,
    queries: Vec<evstore::Query>,
    /// Per thread: the position after its last event (0: none yet).
    seen: Vec<AtomicU64>,
    /// One payload per thread, shared by its events.
    payloads: Vec<Bytes>,
}

impl EvstoreGuarded {
    fn new(root: &Path, threads: usize) -> Self {
        let tags: Vec<String> = (0..threads).map(thread_tag).collect();
        EvstoreGuarded {
            store: Fresh::new(root, open_evstore),
            streams: (0..threads).map(|t| format!("dcb-{t:02}")).collect(),
            queries: tags
                .iter()
                .map(|tag| evstore::Query::tagged([tag.as_str()]))
                .collect(),
            tags,
            seen: zeroed(threads),
            payloads: (0..threads).map(|t| Bytes::from(payload(t))).collect(),
        }
    }
}

impl Target for EvstoreGuarded {
    fn begin(&mut self, threads: usize, appends_per_thread: u64) {
        if self
            .store
            .begin(threads as u64 * appends_per_thread * EVENT_BYTES)
        {
            reset(&mut self.seen);
        }
    }

    fn append(&self, t: usize, _n: u64) {
        let seen = &self.seen[t];
        // Each event made as an application makes it, with its default
        // (fresh, time-ordered) id.
        let event =
            EventData::new(EVENT_TYPE, self.payloads[t].clone()).with_tags([self.tags[t].as_str()]);
        let condition = evstore::AppendCondition::new(
            self.queries[t].clone(),
            seen.load(Ordering::Relaxed).checked_sub(1),
        );
        let commit = Commit::new()
            .append(self.streams[t].as_str(), ExpectedVersion::Any, [event])
            .condition(condition);
        let result = self
            .store
            .get()
            .commit(&commit)
            .expect("evstore conditional append (a conflict means the benchmark is wrong)");
        seen.store(result.last_position + 1, Ordering::Relaxed);
    }
}

/// tephra: a tephra event carries its tags in its encoding, so each thread
/// clones an encoded template (copying its bytes); tephra assigns no ids.
struct TephraGuarded {
    log: Fresh<TephraLog>,
    templates: Vec<Event>,
    queries: Vec<tephra::Query>,
    /// Per thread: the position of its last event (0: none yet; tephra's
    /// positions start at 1).
    seen: Vec<AtomicU64>,
}

impl TephraGuarded {
    fn new(root: &Path, threads: usize) -> Self {
        let event_type = tephra_event_type();
        TephraGuarded {
            log: Fresh::new(root, TephraLog::open),
            templates: (0..threads)
                .map(|t| {
                    let tags = tephra_tags(&[&thread_tag(t)]);
                    Event::new(&event_type, &tags, &payload(t)).expect("tephra event")
                })
                .collect(),
            queries: (0..threads)
                .map(|t| tephra_query(&[&thread_tag(t)]))
                .collect(),
            seen: zeroed(threads),
        }
    }
}

impl Target for TephraGuarded {
    fn begin(&mut self, threads: usize, appends_per_thread: u64) {
        if self
            .log
            .begin(threads as u64 * appends_per_thread * EVENT_BYTES)
        {
            reset(&mut self.seen);
        }
    }

    fn append(&self, t: usize, _n: u64) {
        let seen = &self.seen[t];
        let condition = tephra::AppendCondition::new(self.queries[t].clone())
            .after(Position::new(seen.load(Ordering::Relaxed)));
        let range = self
            .log
            .get()
            .handle
            .append(vec![self.templates[t].clone()], Some(condition))
            .expect("tephra conditional append (a conflict means the benchmark is wrong)");
        seen.store(range.last.get(), Ordering::Relaxed);
    }
}

/// In one `BEGIN IMMEDIATE` transaction: unless an event tagged `guard`
/// lies after position `after`, inserts one event tagged `guard`. Returns
/// its position, or `None` (nothing written) if the condition failed.
fn sqlite_conditional_append(
    conn: &mut Connection,
    guard: &str,
    after: u64,
    payload: &[u8],
) -> rusqlite::Result<Option<u64>> {
    let tx = conn.transaction_with_behavior(TransactionBehavior::Immediate)?;
    let conflict: bool = tx
        .prepare_cached(
            "SELECT EXISTS (SELECT 1 FROM tags WHERE tag = ?1 AND event_position > ?2)",
        )?
        .query_row(params![guard, after as i64], |r| r.get(0))?;
    if conflict {
        // Dropping the transaction rolls it back.
        return Ok(None);
    }
    tx.prepare_cached("INSERT INTO events (type, payload) VALUES (?1, ?2)")?
        .execute(params![EVENT_TYPE, payload])?;
    let position = tx.last_insert_rowid();
    tx.prepare_cached("INSERT INTO tags (event_position, tag) VALUES (?1, ?2)")?
        .execute(params![position, guard])?;
    tx.commit()?;
    Ok(Some(position as u64))
}

struct SqliteGuarded {
    db: Fresh<SqliteDb>,
    tags: Vec<String>,
    /// Per thread: the position of its last event (0: none yet; rowids
    /// start at 1).
    seen: Vec<AtomicU64>,
    payloads: Vec<Vec<u8>>,
}

impl SqliteGuarded {
    fn new(root: &Path, threads: usize) -> Self {
        SqliteGuarded {
            db: Fresh::new(root, open_sqlite_dcb),
            tags: (0..threads).map(thread_tag).collect(),
            seen: zeroed(threads),
            payloads: (0..threads).map(payload).collect(),
        }
    }
}

impl Target for SqliteGuarded {
    fn begin(&mut self, threads: usize, appends_per_thread: u64) {
        if self
            .db
            .begin(threads as u64 * appends_per_thread * EVENT_BYTES)
        {
            reset(&mut self.seen);
        }
    }

    fn append(&self, t: usize, _n: u64) {
        let seen = &self.seen[t];
        let mut conn = self.db.get().0.lock();
        let position = sqlite_conditional_append(
            &mut conn,
            &self.tags[t],
            seen.load(Ordering::Relaxed),
            &self.payloads[t],
        )
        .expect("SQLite conditional append")
        .expect("SQLite conditional append failed (a conflict means the benchmark is wrong)");
        seen.store(position, Ordering::Relaxed);
    }
}

fn append_benches(c: &mut Criterion, cli: &Cli, root: &Path) {
    const GROUP: &str = "dcb_append";
    for threads in APPEND_THREADS {
        let id = |system: &str| format!("{system}/threads={threads}");
        bench_target(c, cli, (GROUP, &id("evstore")), threads, 1, || {
            EvstoreGuarded::new(root, threads)
        });
        bench_target(c, cli, (GROUP, &id("tephra")), threads, 1, || {
            TephraGuarded::new(root, threads)
        });
        bench_target(c, cli, (GROUP, &id("sqlite")), threads, 1, || {
            SqliteGuarded::new(root, threads)
        });
    }
}

// ------------------------------------------------ dcb_contended: one tag

/// A system under test in `dcb_contended`. Positions here are 1-based
/// whatever the system (evstore's plus one), 0 meaning none.
trait Contender: Sync {
    /// Outside the measurement: room for `wins` more events. Returns whether
    /// the store is a new, empty one.
    fn begin(&mut self, wins: u64) -> bool;
    /// One decision of thread `t`: reads the shared tag's events after what
    /// the thread last read, then appends one event on the condition that
    /// no tagged event follows the head the read was served at. Returns
    /// that head and the new event's position, or `None` if the condition
    /// failed.
    fn attempt(&self, t: usize) -> Option<(u64, u64)>;
    /// The positions of every event with the shared tag, in order.
    fn tagged(&self) -> Vec<u64>;
}

/// Runs a contender and checks every run's outcome.
struct Contended<T: Contender> {
    target: T,
    /// Every success on the current store: (head it was decided at,
    /// position of its event).
    wins: Vec<(u64, u64)>,
    attempts: u64,
    successes: u64,
}

impl<T: Contender> Contended<T> {
    fn new(target: T) -> Self {
        Contended {
            target,
            wins: Vec::new(),
            attempts: 0,
            successes: 0,
        }
    }

    /// Runs the threads until `wins` appends have succeeded; returns the
    /// time from their release to the success that made the count.
    fn run(&mut self, wins: u64) -> Duration {
        if self.target.begin(wins) {
            self.wins.clear();
        }
        let won = AtomicU64::new(0);
        let attempts = AtomicU64::new(0);
        let finished = Mutex::new(None::<Instant>);
        let logs = Mutex::new(Vec::new());
        let target = &self.target;
        let start = run_threads(CONTENDED_THREADS, |t| {
            let (mut log, mut tries) = (Vec::new(), 0u64);
            while won.load(Ordering::Relaxed) < wins {
                tries += 1;
                if let Some(win) = target.attempt(t) {
                    log.push(win);
                    if won.fetch_add(1, Ordering::Relaxed) + 1 == wins {
                        *finished.lock() = Some(Instant::now());
                    }
                }
            }
            attempts.fetch_add(tries, Ordering::Relaxed);
            logs.lock().extend(log);
        });
        let end = finished.into_inner().expect("the last success was timed");
        let logs = logs.into_inner();
        self.attempts += attempts.into_inner();
        self.successes += logs.len() as u64;
        self.wins.extend(logs);
        self.check();
        end.saturating_duration_since(start)
    }

    /// Outside the measurement: the shared tag holds exactly the events of
    /// the successful appends, and each was decided at a head at or after
    /// the tagged event before it, so no two were decided at the same head
    /// and none overlooked an event it should have seen.
    fn check(&mut self) {
        self.wins.sort_unstable_by_key(|&(_, position)| position);
        let tagged = self.target.tagged();
        assert_eq!(
            tagged.len(),
            self.wins.len(),
            "events with the shared tag against successful appends"
        );
        assert!(
            tagged
                .iter()
                .eq(self.wins.iter().map(|(_, position)| position)),
            "the shared tag's events are not those of the successful appends"
        );
        for pair in self.wins.windows(2) {
            let ((_, before), (head, position)) = (pair[0], pair[1]);
            assert!(
                before <= head,
                "the event at {position} was decided at head {head}, before the tagged event at \
                 {before}"
            );
        }
    }
}

struct EvstoreContender {
    store: Fresh<Store>,
    query: evstore::Query,
    streams: Vec<String>,
    /// Per thread: the (1-based) head of its last read.
    cursors: Vec<AtomicU64>,
    payloads: Vec<Bytes>,
}

impl EvstoreContender {
    fn new(root: &Path) -> Self {
        EvstoreContender {
            store: Fresh::new(root, open_evstore),
            query: evstore::Query::tagged([SHARED_TAG]),
            streams: (0..CONTENDED_THREADS)
                .map(|t| format!("contender-{t:02}"))
                .collect(),
            cursors: zeroed(CONTENDED_THREADS),
            payloads: (0..CONTENDED_THREADS)
                .map(|t| Bytes::from(payload(t)))
                .collect(),
        }
    }
}

impl Contender for EvstoreContender {
    fn begin(&mut self, wins: u64) -> bool {
        let renew = self.store.begin(wins * EVENT_BYTES);
        if renew {
            reset(&mut self.cursors);
        }
        renew
    }

    fn attempt(&self, t: usize) -> Option<(u64, u64)> {
        let store = self.store.get();
        let cursor = &self.cursors[t];
        let read = store
            .read_query_after(
                &self.query,
                cursor.load(Ordering::Relaxed).checked_sub(1),
                usize::MAX,
            )
            .expect("evstore read_query_after");
        black_box(read.events.iter().map(|e| touch(&e.payload)).sum::<u64>());
        let head = read.head.map_or(0, |h| h + 1);
        cursor.store(head, Ordering::Relaxed);
        let event = EventData::new(EVENT_TYPE, self.payloads[t].clone()).with_tags([SHARED_TAG]);
        let commit = Commit::new()
            .append(self.streams[t].as_str(), ExpectedVersion::Any, [event])
            .condition(evstore::AppendCondition::new(self.query.clone(), read.head));
        match store.commit(&commit) {
            Ok(result) => Some((head, result.last_position + 1)),
            Err(evstore::Error::AppendConditionFailed { .. }) => None,
            Err(e) => panic!("evstore commit: {e}"),
        }
    }

    fn tagged(&self) -> Vec<u64> {
        self.store
            .get()
            .read_query(&self.query, 0, Direction::Forward, usize::MAX)
            .expect("evstore read_query")
            .events
            .iter()
            .map(|e| e.position + 1)
            .collect()
    }
}

struct TephraContender {
    log: Fresh<TephraLog>,
    query: tephra::Query,
    templates: Vec<Event>,
    cursors: Vec<AtomicU64>,
}

impl TephraContender {
    fn new(root: &Path) -> Self {
        let (event_type, tags) = (tephra_event_type(), tephra_tags(&[SHARED_TAG]));
        TephraContender {
            log: Fresh::new(root, TephraLog::open),
            query: tephra_query(&[SHARED_TAG]),
            templates: (0..CONTENDED_THREADS)
                .map(|t| Event::new(&event_type, &tags, &payload(t)).expect("tephra event"))
                .collect(),
            cursors: zeroed(CONTENDED_THREADS),
        }
    }
}

impl Contender for TephraContender {
    fn begin(&mut self, wins: u64) -> bool {
        let renew = self.log.begin(wins * EVENT_BYTES);
        if renew {
            reset(&mut self.cursors);
        }
        renew
    }

    fn attempt(&self, t: usize) -> Option<(u64, u64)> {
        let handle = &self.log.get().handle;
        let cursor = &self.cursors[t];
        let mut reads = handle.read(
            &self.query,
            Position::new(cursor.load(Ordering::Relaxed)),
            None,
        );
        let mut state = 0u64;
        while let Some(item) = reads.next() {
            state += touch(item.expect("tephra read").event.data());
        }
        black_box(state);
        let head = reads.watermark();
        cursor.store(head.get(), Ordering::Relaxed);
        let condition = tephra::AppendCondition::new(self.query.clone()).after(head);
        match handle.append(vec![self.templates[t].clone()], Some(condition)) {
            Ok(range) => Some((head.get(), range.last.get())),
            // Durable or with an event earlier in the same group: lost
            // either way, and the next read shows the winner.
            Err(AppendError::Conflict { .. }) => None,
            Err(e) => panic!("tephra append: {e}"),
        }
    }

    fn tagged(&self) -> Vec<u64> {
        self.log
            .get()
            .handle
            .read(&self.query, Position::ZERO, None)
            .collect_owned()
            .expect("tephra read")
            .into_iter()
            .map(|(position, _)| position.get())
            .collect()
    }
}

struct SqliteContender {
    db: Fresh<SqliteDb>,
    cursors: Vec<AtomicU64>,
    payloads: Vec<Vec<u8>>,
}

impl SqliteContender {
    fn new(root: &Path) -> Self {
        SqliteContender {
            db: Fresh::new(root, open_sqlite_dcb),
            cursors: zeroed(CONTENDED_THREADS),
            payloads: (0..CONTENDED_THREADS).map(payload).collect(),
        }
    }

    /// The head and the tag's events after `cursor`, folded; every write
    /// goes through the same locked connection, so the two statements see
    /// the same database.
    fn read(conn: &Connection, cursor: u64) -> rusqlite::Result<u64> {
        let head: i64 = conn
            .prepare_cached("SELECT coalesce(max(position), 0) FROM events")?
            .query_row([], |r| r.get(0))?;
        let mut stmt = conn.prepare_cached(
            "SELECT e.payload FROM tags t JOIN events e ON e.position = t.event_position \
             WHERE t.tag = ?1 AND t.event_position > ?2 ORDER BY t.event_position",
        )?;
        let mut rows = stmt.query(params![SHARED_TAG, cursor as i64])?;
        let mut state = 0u64;
        while let Some(row) = rows.next()? {
            let payload: Vec<u8> = row.get(0)?;
            state += touch(&payload);
        }
        black_box(state);
        Ok(head as u64)
    }
}

impl Contender for SqliteContender {
    fn begin(&mut self, wins: u64) -> bool {
        let renew = self.db.begin(wins * EVENT_BYTES);
        if renew {
            reset(&mut self.cursors);
        }
        renew
    }

    fn attempt(&self, t: usize) -> Option<(u64, u64)> {
        let conn = &self.db.get().0;
        let cursor = &self.cursors[t];
        // The decision and the write take the connection separately, so
        // other threads can commit in between, as with the other systems.
        let head = Self::read(&conn.lock(), cursor.load(Ordering::Relaxed)).expect("SQLite read");
        cursor.store(head, Ordering::Relaxed);
        sqlite_conditional_append(&mut conn.lock(), SHARED_TAG, head, &self.payloads[t])
            .expect("SQLite conditional append")
            .map(|position| (head, position))
    }

    fn tagged(&self) -> Vec<u64> {
        let conn = self.db.get().0.lock();
        let mut stmt = conn
            .prepare("SELECT event_position FROM tags WHERE tag = ?1 ORDER BY event_position")
            .expect("prepare");
        stmt.query_map([SHARED_TAG], |r| r.get::<_, i64>(0))
            .expect("query")
            .map(|p| p.expect("row") as u64)
            .collect()
    }
}

fn bench_contender<T: Contender>(
    c: &mut Criterion,
    cli: &Cli,
    system: &str,
    make: impl FnOnce() -> T,
) {
    const GROUP: &str = "dcb_contended";
    let id = format!("{system}/threads={CONTENDED_THREADS}");
    if !cli.selects(&format!("{GROUP}/{id}")) {
        return;
    }
    let mut contended = Contended::new(make());
    let wins = if cli.list || cli.test {
        1
    } else {
        calibrate(MAX_ITERATION_EVENTS, |n| contended.run(n))
    };
    let mut g = c.benchmark_group(GROUP);
    g.sampling_mode(SamplingMode::Flat);
    g.throughput(Throughput::Elements(wins));
    g.bench_function(&id, |b| b.iter_custom(|iters| contended.run(wins * iters)));
    g.finish();
    if contended.successes > 0 {
        eprintln!(
            "{GROUP}/{id}: {} attempts for {} successful appends ({:.1} per success), checked",
            contended.attempts,
            contended.successes,
            contended.attempts as f64 / contended.successes as f64
        );
    }
    drop(contended);
    settle();
}

fn contended_benches(c: &mut Criterion, cli: &Cli, root: &Path) {
    bench_contender(c, cli, "evstore", || EvstoreContender::new(root));
    bench_contender(c, cli, "tephra", || TephraContender::new(root));
    bench_contender(c, cli, "sqlite", || SqliteContender::new(root));
}

// ------------------------------------------------ dcb_commit: two streams

/// Stream `s` (0 or 1) of pair `k`; every name has the same length.
fn pair_stream(k: usize, s: usize) -> String {
    format!("pair-{k:02}-{}", ["a", "b"][s])
}

struct EvstoreCommit {
    streams: usize,
    store: Fresh<Store>,
    names: Vec<[String; 2]>,
    /// Events in each stream of each pair, for the exact expected version.
    lens: Vec<[AtomicU64; 2]>,
    payload: Bytes,
}

impl EvstoreCommit {
    fn new(root: &Path, streams: usize) -> Self {
        EvstoreCommit {
            streams,
            store: Fresh::new(root, open_evstore),
            names: (0..COMMIT_PAIRS)
                .map(|k| [pair_stream(k, 0), pair_stream(k, 1)])
                .collect(),
            lens: (0..COMMIT_PAIRS)
                .map(|_| [AtomicU64::new(0), AtomicU64::new(0)])
                .collect(),
            payload: Bytes::from(payload(0)),
        }
    }
}

impl Target for EvstoreCommit {
    fn begin(&mut self, threads: usize, appends_per_thread: u64) {
        let bytes = (threads * COMMIT_EVENTS) as u64 * appends_per_thread * EVENT_BYTES;
        if self.store.begin(bytes) {
            self.lens.iter_mut().for_each(|l| reset(l));
        }
    }

    fn append(&self, _t: usize, n: u64) {
        let k = n as usize % COMMIT_PAIRS;
        let (names, lens) = (&self.names[k], &self.lens[k]);
        let store = self.store.get();
        let mut events: Vec<EventData> = (0..COMMIT_EVENTS)
            .map(|_| EventData::new(EVENT_TYPE, self.payload.clone()))
            .collect();
        let expected = |s: usize| expected_version(lens[s].load(Ordering::Relaxed));
        if self.streams == 1 {
            let result = store
                .append(&names[0], expected(0), &events)
                .expect("evstore append");
            lens[0].store(result.last_version + 1, Ordering::Relaxed);
        } else {
            let second = events.split_off(COMMIT_EVENTS / 2);
            let commit = Commit::new()
                .append(names[0].as_str(), expected(0), events)
                .append(names[1].as_str(), expected(1), second);
            let result = store.commit(&commit).expect("evstore commit");
            for (len, written) in lens.iter().zip(&result.streams) {
                len.store(written.last_version + 1, Ordering::Relaxed);
            }
        }
    }
}

struct TephraCommit {
    log: Fresh<TephraLog>,
    /// Per pair: the events of one commit (each tagged with its stream).
    events: Vec<Vec<Event>>,
    /// Per pair: the query for the tags of the streams written.
    queries: Vec<tephra::Query>,
    /// Per pair: the position of its last event.
    last: Vec<AtomicU64>,
}

impl TephraCommit {
    fn new(root: &Path, streams: usize) -> Self {
        let event_type = tephra_event_type();
        let tag = |k: usize, s: usize| format!("stream:{}", pair_stream(k, s));
        let body = payload(0);
        TephraCommit {
            log: Fresh::new(root, TephraLog::open),
            events: (0..COMMIT_PAIRS)
                .map(|k| {
                    (0..COMMIT_EVENTS)
                        .map(|i| {
                            let s = if streams == 1 {
                                0
                            } else {
                                i * 2 / COMMIT_EVENTS
                            };
                            Event::new(&event_type, &tephra_tags(&[&tag(k, s)]), &body)
                                .expect("tephra event")
                        })
                        .collect()
                })
                .collect(),
            queries: (0..COMMIT_PAIRS)
                .map(|k| {
                    tephra::Query::items(
                        (0..streams)
                            .map(|s| QueryItem::with_tags(tephra_tags(&[&tag(k, s)])))
                            .collect::<Vec<_>>(),
                    )
                })
                .collect(),
            last: zeroed(COMMIT_PAIRS),
        }
    }
}

impl Target for TephraCommit {
    fn begin(&mut self, threads: usize, appends_per_thread: u64) {
        let bytes = (threads * COMMIT_EVENTS) as u64 * appends_per_thread * EVENT_BYTES;
        if self.log.begin(bytes) {
            reset(&mut self.last);
        }
    }

    fn append(&self, _t: usize, n: u64) {
        let k = n as usize % COMMIT_PAIRS;
        let last = &self.last[k];
        // Nothing tagged with a stream written may follow the pair's
        // previous commit: the DCB form of exact expected versions.
        let condition = tephra::AppendCondition::new(self.queries[k].clone())
            .after(Position::new(last.load(Ordering::Relaxed)));
        let range = self
            .log
            .get()
            .handle
            .append(self.events[k].clone(), Some(condition))
            .expect("tephra append (a conflict means the benchmark is wrong)");
        last.store(range.last.get(), Ordering::Relaxed);
    }
}

struct SqliteCommit {
    streams: usize,
    db: Fresh<SqliteDb>,
    names: Vec<[String; 2]>,
    lens: Vec<[AtomicU64; 2]>,
    payload: Vec<u8>,
}

impl SqliteCommit {
    fn new(root: &Path, streams: usize) -> Self {
        SqliteCommit {
            streams,
            db: Fresh::new(root, open_sqlite_streams),
            names: (0..COMMIT_PAIRS)
                .map(|k| [pair_stream(k, 0), pair_stream(k, 1)])
                .collect(),
            lens: (0..COMMIT_PAIRS)
                .map(|_| [AtomicU64::new(0), AtomicU64::new(0)])
                .collect(),
            payload: payload(0),
        }
    }

    fn commit_tx(&self, conn: &mut Connection, k: usize) -> rusqlite::Result<()> {
        let (names, lens) = (&self.names[k], &self.lens[k]);
        let per_stream = COMMIT_EVENTS / self.streams;
        let tx = conn.transaction_with_behavior(TransactionBehavior::Immediate)?;
        for s in 0..self.streams {
            let actual: Option<i64> = tx
                .prepare_cached("SELECT max(version) FROM events WHERE stream = ?1")?
                .query_row([&names[s]], |r| r.get(0))?;
            let (actual, expected) = (
                actual.map(|v| v as u64),
                expected_version(lens[s].load(Ordering::Relaxed)),
            );
            assert!(
                expected.matches(actual),
                "SQLite: stream {} is at version {actual:?}, expected {expected}",
                names[s]
            );
            let first = actual.map_or(0, |v| v + 1);
            let mut insert = tx.prepare_cached(
                "INSERT INTO events (stream, version, type, payload) VALUES (?1, ?2, ?3, ?4)",
            )?;
            for i in 0..per_stream as u64 {
                insert.execute(params![
                    &names[s],
                    (first + i) as i64,
                    EVENT_TYPE,
                    &self.payload
                ])?;
            }
        }
        tx.commit()?;
        for len in &lens[..self.streams] {
            len.fetch_add(per_stream as u64, Ordering::Relaxed);
        }
        Ok(())
    }
}

impl Target for SqliteCommit {
    fn begin(&mut self, threads: usize, appends_per_thread: u64) {
        let bytes = (threads * COMMIT_EVENTS) as u64 * appends_per_thread * EVENT_BYTES;
        if self.db.begin(bytes) {
            self.lens.iter_mut().for_each(|l| reset(l));
        }
    }

    fn append(&self, _t: usize, n: u64) {
        let mut conn = self.db.get().0.lock();
        self.commit_tx(&mut conn, n as usize % COMMIT_PAIRS)
            .expect("SQLite commit");
    }
}

fn commit_benches(c: &mut Criterion, cli: &Cli, root: &Path) {
    const GROUP: &str = "dcb_commit";
    // Each system's two variants run back to back, so the ratio this group
    // is for is measured under the same machine load.
    let id =
        |system: &str, streams: usize| format!("{system}/streams={streams}/events={COMMIT_EVENTS}");
    for streams in [1, 2] {
        bench_target(
            c,
            cli,
            (GROUP, &id("evstore", streams)),
            1,
            COMMIT_EVENTS,
            || EvstoreCommit::new(root, streams),
        );
    }
    for streams in [1, 2] {
        bench_target(
            c,
            cli,
            (GROUP, &id("tephra", streams)),
            1,
            COMMIT_EVENTS,
            || TephraCommit::new(root, streams),
        );
    }
    for streams in [1, 2] {
        bench_target(
            c,
            cli,
            (GROUP, &id("sqlite", streams)),
            1,
            COMMIT_EVENTS,
            || SqliteCommit::new(root, streams),
        );
    }
}

// ------------------------------------------------ dcb_read: data

/// The parameters of one `dcb_read` log.
#[derive(Debug, Clone, Copy)]
struct ReadSpec {
    events: u64,
    /// Tags besides [`TARGET_TAG`].
    tags: u64,
    /// Events of [`TARGET_TAG`].
    target_events: u64,
}

impl ReadSpec {
    fn new(events: u64) -> Self {
        ReadSpec {
            events,
            tags: (events / 100).clamp(1, MAX_OTHER_TAGS),
            target_events: TARGET_EVENTS.min(events / 10).max(1),
        }
    }

    /// Walks the events in order: `step(n, None)` for an event of
    /// [`TARGET_TAG`], `step(n, Some(k))` for one of other tag `k`. The
    /// target events are at `j * events / target_events`, the others' tags
    /// pseudo-random.
    fn plan(&self, mut step: impl FnMut(u64, Option<u64>)) {
        let mut j = 0u64;
        for n in 0..self.events {
            if j < self.target_events && n == j * self.events / self.target_events {
                step(n, None);
                j += 1;
            } else {
                step(n, Some(mix(n) % self.tags));
            }
        }
    }

    /// The event numbers (0-based) of the target events.
    fn targets(&self) -> Vec<u64> {
        (0..self.target_events)
            .map(|j| j * self.events / self.target_events)
            .collect()
    }

    /// The text of a store's `.complete` marker.
    fn marker(&self, kind: &str) -> String {
        let format = match kind {
            "evstore" => evstore::format::FORMAT_VERSION.to_string(),
            "tephra" => TEPHRA_RELEASE.to_string(),
            _ => rusqlite::version().to_string(),
        };
        format!(
            "{kind} generator={GENERATOR_VERSION} format={format} events={} tags={} \
             target_events={} payload={PAYLOAD_LEN}\n",
            self.events, self.tags, self.target_events
        )
    }
}

/// The name of other tag `k`; as long as [`TARGET_TAG`].
fn tag_name(k: u64) -> String {
    format!("tag-{k:06}")
}

/// Sixteen different payloads; event `n` has payload `n % 16`.
fn read_payloads() -> Vec<Bytes> {
    let mut rng = data::Rng(PAYLOAD_SEED);
    (0..16)
        .map(|_| {
            Bytes::from(
                (0..PAYLOAD_LEN)
                    .map(|_| rng.next() as u8)
                    .collect::<Vec<u8>>(),
            )
        })
        .collect()
}

/// Prints progress of a long job to stderr about every 10%.
struct Progress {
    what: String,
    total: u64,
    next: u64,
    started: Instant,
}

impl Progress {
    fn new(what: String, total: u64) -> Self {
        eprintln!("{what}: starting ({total} events)");
        Progress {
            what,
            total,
            next: total / 10,
            started: Instant::now(),
        }
    }

    fn update(&mut self, done: u64) {
        if done >= self.next && done < self.total {
            let secs = self.started.elapsed().as_secs_f64();
            eprintln!(
                "{}: {done}/{} events, {secs:.0} s, {:.0} events/s",
                self.what,
                self.total,
                done as f64 / secs
            );
            self.next = done + self.total / 10;
        }
    }

    fn finish(&self) {
        eprintln!(
            "{}: done in {:.1} s",
            self.what,
            self.started.elapsed().as_secs_f64()
        );
    }
}

/// Whether `path` and its marker say a complete store made for `spec` is
/// there; otherwise removes whatever is left of an older one.
fn reusable(path: &Path, marker: &Path, expected: &str) -> bool {
    if fs::read_to_string(marker).is_ok_and(|text| text == expected) {
        eprintln!("reusing {}", path.display());
        return true;
    }
    let _ = fs::remove_file(marker);
    if path.is_dir() {
        fs::remove_dir_all(path).expect("removing an incomplete store");
    }
    for suffix in ["", "-wal", "-shm", "-journal"] {
        let mut name = path.as_os_str().to_owned();
        name.push(suffix);
        let _ = fs::remove_file(name);
    }
    false
}

fn ensure_evstore(root: &Path, spec: &ReadSpec) -> PathBuf {
    let dir = root.join(format!("evstore-{}", spec.events));
    let marker = root.join(format!("evstore-{}.complete", spec.events));
    let expected = spec.marker("evstore");
    if reusable(&dir, &marker, &expected) {
        return dir;
    }
    let mut progress = Progress::new(format!("building {}", dir.display()), spec.events);
    let store = Store::open(&dir, Options::default().durability(Durability::Buffered))
        .expect("creating the store");
    let payloads = read_payloads();
    let tags: Vec<String> = (0..spec.tags).map(tag_name).collect();
    let streams: Vec<String> = (0..EVSTORE_BUILD_STREAMS)
        .map(|s| format!("load-{s:02}"))
        .collect();
    let mut batch = Vec::with_capacity(EVSTORE_BUILD_BATCH);
    let mut batches = 0u64;
    let mut flush = |batch: &mut Vec<EventData>| {
        let stream = &streams[(batches % EVSTORE_BUILD_STREAMS) as usize];
        store
            .append(stream, ExpectedVersion::Any, batch)
            .expect("appending");
        batch.clear();
        batches += 1;
    };
    spec.plan(|n, tag| {
        let tag = tag.map_or(TARGET_TAG, |k| tags[k as usize].as_str());
        batch.push(
            EventData::new(EVENT_TYPE, payloads[n as usize % payloads.len()].clone())
                .with_tags([tag]),
        );
        if batch.len() == EVSTORE_BUILD_BATCH {
            flush(&mut batch);
            progress.update(n + 1);
        }
    });
    if !batch.is_empty() {
        flush(&mut batch);
    }
    store.close().expect("closing the built store");
    fs::write(&marker, expected).expect("writing the marker");
    progress.finish();
    dir
}

fn ensure_tephra(root: &Path, spec: &ReadSpec) -> PathBuf {
    let dir = root.join(format!("tephra-{}", spec.events));
    let marker = root.join(format!("tephra-{}.complete", spec.events));
    let expected = spec.marker("tephra");
    if reusable(&dir, &marker, &expected) {
        return dir;
    }
    let mut progress = Progress::new(format!("building {}", dir.display()), spec.events);
    fs::create_dir_all(&dir).expect("creating the tephra directory");
    let log = TephraLog::open(&dir);
    let event_type = tephra_event_type();
    let payloads = read_payloads();
    let tags: Vec<Tags> = (0..spec.tags)
        .map(|k| tephra_tags(&[&tag_name(k)]))
        .collect();
    let target = tephra_tags(&[TARGET_TAG]);
    // Events are encoded here while the previous batch is being written.
    thread::scope(|scope| {
        let (tx, rx) = std::sync::mpsc::sync_channel::<Vec<Event>>(2);
        let handle = &log.handle;
        let writer = scope.spawn(move || {
            for batch in rx {
                handle.append(batch, None).expect("tephra append");
            }
        });
        let mut batch = Vec::with_capacity(TEPHRA_BUILD_BATCH);
        spec.plan(|n, tag| {
            let tags = tag.map_or(&target, |k| &tags[k as usize]);
            batch.push(
                Event::new(&event_type, tags, &payloads[n as usize % payloads.len()])
                    .expect("tephra event"),
            );
            if batch.len() == TEPHRA_BUILD_BATCH {
                let full = std::mem::replace(&mut batch, Vec::with_capacity(TEPHRA_BUILD_BATCH));
                tx.send(full).expect("the tephra loader stopped");
                progress.update(n + 1);
            }
        });
        if !batch.is_empty() {
            tx.send(batch).expect("the tephra loader stopped");
        }
        drop(tx);
        writer.join().expect("the tephra loader panicked");
    });
    assert_eq!(log.handle.head().get(), spec.events);
    log.shut();
    fs::write(&marker, expected).expect("writing the marker");
    progress.finish();
    dir
}

fn ensure_sqlite(root: &Path, spec: &ReadSpec) -> PathBuf {
    let path = root.join(format!("sqlite-{}.db", spec.events));
    let marker = root.join(format!("sqlite-{}.complete", spec.events));
    let expected = spec.marker("sqlite");
    if reusable(&path, &marker, &expected) {
        return path;
    }
    let mut progress = Progress::new(format!("building {}", path.display()), spec.events);
    let conn = Connection::open(&path).expect("creating the SQLite database");
    // No journal and no syncs while loading (an interrupted load has no
    // marker and is redone); WAL from then on.
    let mode: String = conn
        .query_row("PRAGMA journal_mode = OFF", [], |r| r.get(0))
        .expect("journal_mode");
    assert_eq!(mode.to_lowercase(), "off");
    conn.pragma_update(None, "synchronous", "OFF")
        .expect("synchronous");
    conn.pragma_update(None, "cache_size", -(512 << 10))
        .expect("cache_size");
    let (tables, index) = SQLITE_DCB_SCHEMA
        .split_once("CREATE INDEX")
        .expect("the schema ends with its index");
    conn.execute_batch(tables).expect("creating the tables");
    let payloads = read_payloads();
    let tags: Vec<String> = (0..spec.tags).map(tag_name).collect();
    conn.execute_batch("BEGIN").expect("begin");
    {
        let mut event = conn
            .prepare("INSERT INTO events (position, type, payload) VALUES (?1, ?2, ?3)")
            .expect("preparing the insert");
        let mut tag = conn
            .prepare("INSERT INTO tags (event_position, tag) VALUES (?1, ?2)")
            .expect("preparing the insert");
        spec.plan(|n, k| {
            let position = (n + 1) as i64;
            let payload = &payloads[n as usize % payloads.len()][..];
            event
                .execute(params![position, EVENT_TYPE, payload])
                .expect("insert");
            let name = k.map_or(TARGET_TAG, |k| tags[k as usize].as_str());
            tag.execute(params![position, name]).expect("insert");
            if (n + 1).is_multiple_of(SQLITE_BUILD_TX) {
                conn.execute_batch("COMMIT; BEGIN").expect("commit");
                progress.update(n + 1);
            }
        });
    }
    conn.execute_batch("COMMIT").expect("commit");
    conn.execute_batch(&format!("CREATE INDEX{index}"))
        .expect("creating the tag index");
    let mode: String = conn
        .query_row("PRAGMA journal_mode = WAL", [], |r| r.get(0))
        .expect("journal_mode");
    assert_eq!(mode.to_lowercase(), "wal", "SQLite refused WAL mode");
    drop(conn);
    fs::write(&marker, expected).expect("writing the marker");
    progress.finish();
    path
}

/// Reads every file under `path` from start to end, so it is in the page
/// cache; returns the bytes read.
fn read_through(path: &Path) -> u64 {
    if path.is_dir() {
        fs::read_dir(path)
            .expect("listing a directory to read through")
            .map(|entry| read_through(&entry.expect("a directory entry").path()))
            .sum()
    } else {
        let mut file = fs::File::open(path).expect("opening a file to read through");
        std::io::copy(&mut file, &mut std::io::sink()).expect("reading through")
    }
}

// ------------------------------------------------ dcb_read: reads

const SQL_READ_TAG: &str = "SELECT e.position, e.type, e.payload FROM tags t \
     JOIN events e ON e.position = t.event_position \
     WHERE t.tag = ?1 ORDER BY t.event_position LIMIT ?2";

/// An event read from SQLite, owned, as evstore's `RecordedEvent` is.
struct SqlEvent {
    position: i64,
    event_type: String,
    payload: Vec<u8>,
}

fn sqlite_read_tag(conn: &Connection, tag: &str, max: u64) -> Vec<SqlEvent> {
    conn.prepare_cached(SQL_READ_TAG)
        .expect("prepare")
        .query_map(params![tag, max as i64], |row| {
            Ok(SqlEvent {
                position: row.get(0)?,
                event_type: row.get(1)?,
                payload: row.get(2)?,
            })
        })
        .expect("query")
        .collect::<rusqlite::Result<_>>()
        .expect("row")
}

/// Everything `dcb_read` needs, opened and warm.
struct ReadFixture {
    spec: ReadSpec,
    store: Store,
    query: evstore::Query,
    tephra: TephraLog,
    tephra_query: tephra::Query,
    sqlite: Connection,
}

impl ReadFixture {
    fn new(spec: ReadSpec, evstore_dir: &Path, tephra_dir: &Path, sqlite: &Path) -> Self {
        // Opening reads little of a store, and the writers that made them
        // handed their pages back: read every file of all three once, so
        // all start with their data in the page cache.
        for path in [evstore_dir, tephra_dir, sqlite] {
            let started = Instant::now();
            let bytes = read_through(path);
            eprintln!(
                "read {} ({bytes} bytes) in {:.1} s",
                path.display(),
                started.elapsed().as_secs_f64()
            );
        }
        let started = Instant::now();
        let store = Store::open(evstore_dir, Options::default()).expect("opening the store");
        eprintln!("evstore open: {:.2} s", started.elapsed().as_secs_f64());
        let query = evstore::Query::tagged([TARGET_TAG]);
        let started = Instant::now();
        let first = store
            .read_query(&query, 0, Direction::Forward, spec.target_events as usize)
            .expect("read_query");
        eprintln!(
            "evstore first read_query after open (loads or builds the postings of every \
             segment it touches): {:.3} s for {} events",
            started.elapsed().as_secs_f64(),
            first.events.len()
        );
        let started = Instant::now();
        let tephra = TephraLog::open(tephra_dir);
        eprintln!(
            "tephra open (segments and index): {:.2} s",
            started.elapsed().as_secs_f64()
        );
        let conn = Connection::open(sqlite).expect("opening SQLite");
        conn.pragma_update(None, "cache_size", -(256 << 10))
            .expect("cache_size");
        let _: i64 = conn
            .query_row("PRAGMA mmap_size = 2147418112", [], |r| r.get(0))
            .expect("mmap_size");
        let fixture = ReadFixture {
            spec,
            store,
            query,
            tephra,
            tephra_query: tephra_query(&[TARGET_TAG]),
            sqlite: conn,
        };
        fixture.check();
        fixture
    }

    /// Outside the measurement: all three return the target events, at the
    /// planned places, with the same payloads.
    fn check(&self) {
        let n = self.spec.target_events;
        let payloads = read_payloads();
        let targets = self.spec.targets();
        let expected = |i: usize| &payloads[targets[i] as usize % payloads.len()][..];

        let events = self
            .store
            .read_query(&self.query, 0, Direction::Forward, usize::MAX)
            .expect("read_query")
            .events;
        assert_eq!(events.len() as u64, n, "evstore target events");
        for (i, e) in events.iter().enumerate() {
            assert_eq!(e.position, targets[i], "evstore position");
            assert_eq!(&e.payload[..], expected(i), "evstore payload");
            assert!(e.tags.len() == 1 && &*e.tags[0] == TARGET_TAG);
        }
        let mut lent = Vec::new();
        self.store
            .visit_query(&self.query, 0, Direction::Forward, usize::MAX, |e| {
                lent.push(e.to_owned_event());
            })
            .expect("visit_query");
        assert!(lent == events, "evstore visit");

        let events = self
            .tephra
            .handle
            .read(&self.tephra_query, Position::ZERO, None)
            .collect_owned()
            .expect("tephra read");
        assert_eq!(events.len() as u64, n, "tephra target events");
        for (i, (position, e)) in events.iter().enumerate() {
            assert_eq!(position.get(), targets[i] + 1, "tephra position");
            assert_eq!(e.data(), expected(i), "tephra payload");
        }

        let rows = sqlite_read_tag(&self.sqlite, TARGET_TAG, u64::MAX >> 1);
        assert_eq!(rows.len() as u64, n, "SQLite target events");
        for (i, row) in rows.iter().enumerate() {
            assert_eq!(row.position as u64, targets[i] + 1, "SQLite position");
            assert_eq!(row.event_type, EVENT_TYPE);
            assert_eq!(&row.payload[..], expected(i), "SQLite payload");
        }
    }
}

fn bench_read(c: &mut Criterion, cli: &Cli, f: &ReadFixture) {
    const GROUP: &str = "dcb_read";
    let n = f.spec.target_events;
    let id = |system: &str| format!("{system}/events={}", f.spec.events);
    let mut g = c.benchmark_group(GROUP);
    g.throughput(Throughput::Elements(n));
    if cli.selects(&format!("{GROUP}/{}", id("evstore"))) {
        g.bench_function(id("evstore"), |b| {
            b.iter(|| {
                let read = f
                    .store
                    .read_query(black_box(&f.query), 0, Direction::Forward, n as usize)
                    .expect("read_query");
                let sum: u64 = read.events.iter().map(|e| touch(&e.payload)).sum();
                (read, sum)
            })
        });
    }
    if cli.selects(&format!("{GROUP}/{}", id("evstore_visit"))) {
        // The same events lent to a visitor: nothing built per event.
        g.bench_function(id("evstore_visit"), |b| {
            b.iter(|| {
                let (mut sum, mut count) = (0u64, 0u64);
                f.store
                    .visit_query(
                        black_box(&f.query),
                        0,
                        Direction::Forward,
                        n as usize,
                        |e| {
                            sum += touch(e.payload);
                            count += 1;
                        },
                    )
                    .expect("visit_query");
                (sum, count)
            })
        });
    }
    if cli.selects(&format!("{GROUP}/{}", id("tephra"))) {
        g.bench_function(id("tephra"), |b| {
            b.iter(|| {
                let mut reads =
                    f.tephra
                        .handle
                        .read(black_box(&f.tephra_query), Position::ZERO, Some(n));
                let (mut sum, mut count) = (0u64, 0u64);
                while let Some(item) = reads.next() {
                    sum += touch(item.expect("tephra read").event.data());
                    count += 1;
                }
                (sum, count)
            })
        });
    }
    if cli.selects(&format!("{GROUP}/{}", id("sqlite"))) {
        g.bench_function(id("sqlite"), |b| {
            b.iter(|| {
                let rows = sqlite_read_tag(&f.sqlite, black_box(TARGET_TAG), n);
                let sum: u64 = rows.iter().map(|r| touch(&r.payload)).sum();
                (rows, sum)
            })
        });
    }
    g.finish();
}

/// The `dcb_read` log size: `EVSTORE_BENCH_EVENTS`, else [`READ_EVENTS`].
fn read_events() -> u64 {
    match std::env::var("EVSTORE_BENCH_EVENTS") {
        Ok(v) if !v.is_empty() => {
            let events: u64 = v
                .replace('_', "")
                .parse()
                .expect("EVSTORE_BENCH_EVENTS must be a number of events");
            assert!(events >= 100, "EVSTORE_BENCH_EVENTS must be at least 100");
            events
        }
        _ => READ_EVENTS,
    }
}

fn read_benches(c: &mut Criterion, cli: &Cli) {
    const GROUP: &str = "dcb_read";
    let spec = ReadSpec::new(if cli.test { 20_000 } else { read_events() });
    let systems = ["evstore", "evstore_visit", "tephra", "sqlite"];
    let ids: Vec<String> = systems
        .iter()
        .map(|s| format!("{s}/events={}", spec.events))
        .collect();
    if !ids.iter().any(|id| cli.selects(&format!("{GROUP}/{id}"))) {
        return;
    }
    if cli.list {
        let mut g = c.benchmark_group(GROUP);
        for id in ids
            .iter()
            .filter(|id| cli.selects(&format!("{GROUP}/{id}")))
        {
            g.bench_function(id, |b| b.iter(|| unreachable!("listing only")));
        }
        g.finish();
        return;
    }
    // Test runs use throwaway data.
    let _temp: Option<TempDir>;
    let root = if cli.test {
        let temp = fresh_dir(&bench_root());
        let root = temp.path().to_path_buf();
        _temp = Some(temp);
        root
    } else {
        _temp = None;
        let root = bench_root().join("dcb");
        fs::create_dir_all(&root).expect("creating the dcb benchmark directory");
        root
    };
    let started = Instant::now();
    let evstore_dir = ensure_evstore(&root, &spec);
    let tephra_dir = ensure_tephra(&root, &spec);
    let sqlite = ensure_sqlite(&root, &spec);
    eprintln!("data ready after {:.1} s", started.elapsed().as_secs_f64());
    settle();
    let fixture = ReadFixture::new(spec, &evstore_dir, &tephra_dir, &sqlite);
    bench_read(c, cli, &fixture);
    let ReadFixture { store, tephra, .. } = fixture;
    store.close().expect("closing the store");
    tephra.shut();
}

// ---------------------------------------------------------------- driver

fn dcb_benches(c: &mut Criterion) {
    let cli = Cli::parse();
    let root = bench_root();
    settle();
    append_benches(c, &cli, &root);
    contended_benches(c, &cli, &root);
    commit_benches(c, &cli, &root);
    read_benches(c, &cli);
    interleave(&cli, &root);
}

// ---------------------------------------------------------------- rounds

/// Runs per system in [`interleave`].
const INTERLEAVED_ROUNDS: usize = 15;

/// One workload of [`interleave`]: its name, its threads and events per
/// append, and its systems in the order of [`SYSTEMS_IN_ROUNDS`].
struct Rounds<'a> {
    id: String,
    threads: usize,
    events_per_append: usize,
    systems: Vec<Box<dyn Target + 'a>>,
}

/// The systems of every [`Rounds`], in order.
const SYSTEMS_IN_ROUNDS: [&str; 3] = ["evstore", "tephra", "sqlite"];

/// After criterion: the workloads of `dcb_append` and `dcb_commit` again,
/// their three systems in rounds, one run each per round (in order, then in
/// reverse), and each round's ratios taken between runs made within a
/// fraction of a second of one another. The criterion groups measure the
/// systems of a workload a minute or so apart, and the speed of syncs on a
/// shared virtual disk can change by half in that time; the medians of
/// per-round ratios do not move with it. Printed, and written to
/// `target/bench-data/dcb/interleaved.json` for `benches/summarize_dcb.py`.
fn interleave(cli: &Cli, root: &Path) {
    if cli.list || cli.test {
        return;
    }
    let mut workloads: Vec<Rounds> = Vec::new();
    for threads in APPEND_THREADS {
        let id = format!("dcb_append/threads={threads}");
        if cli.selects(&id) || cli.selects(&format!("interleaved/{id}")) {
            workloads.push(Rounds {
                id,
                threads,
                events_per_append: 1,
                systems: vec![
                    Box::new(EvstoreGuarded::new(root, threads)),
                    Box::new(TephraGuarded::new(root, threads)),
                    Box::new(SqliteGuarded::new(root, threads)),
                ],
            });
        }
    }
    for streams in [1, 2] {
        let id = format!("dcb_commit/streams={streams}/events={COMMIT_EVENTS}");
        if cli.selects(&id) || cli.selects(&format!("interleaved/{id}")) {
            workloads.push(Rounds {
                id,
                threads: 1,
                events_per_append: COMMIT_EVENTS,
                systems: vec![
                    Box::new(EvstoreCommit::new(root, streams)),
                    Box::new(TephraCommit::new(root, streams)),
                    Box::new(SqliteCommit::new(root, streams)),
                ],
            });
        }
    }
    let mut rows = Vec::new();
    for mut w in workloads {
        let per_append = (w.threads * w.events_per_append) as u64;
        let threads = w.threads;
        let appends: Vec<u64> = w
            .systems
            .iter_mut()
            .map(|system| {
                calibrate(MAX_ITERATION_EVENTS / per_append, |n| {
                    timed_run(system.as_mut(), threads, n)
                })
            })
            .collect();
        let mut rates = vec![Vec::with_capacity(INTERLEAVED_ROUNDS); w.systems.len()];
        for round in 0..INTERLEAVED_ROUNDS {
            let mut order: Vec<usize> = (0..w.systems.len()).collect();
            if round % 2 == 1 {
                order.reverse();
            }
            for i in order {
                let elapsed = timed_run(w.systems[i].as_mut(), threads, appends[i]);
                let events = (appends[i] * per_append) as f64;
                rates[i].push(events / elapsed.as_secs_f64().max(1e-9));
            }
        }
        drop(w.systems);
        settle();
        let over = |a: usize, b: usize| -> Vec<f64> {
            (0..INTERLEAVED_ROUNDS)
                .map(|r| rates[a][r] / rates[b][r])
                .collect()
        };
        let (vs_tephra, vs_sqlite) = (over(0, 1), over(0, 2));
        let (low, high) = vs_tephra
            .iter()
            .fold((f64::INFINITY, 0f64), |(lo, hi), &x| (lo.min(x), hi.max(x)));
        eprintln!(
            "interleaved {}, {INTERLEAVED_ROUNDS} rounds: evstore {:.0}, tephra {:.0}, sqlite {:.0} \
             events/s (medians); per round evstore/tephra {:.2} (from {low:.2} to {high:.2}), \
             evstore/sqlite {:.2}",
            w.id,
            median(&rates[0]),
            median(&rates[1]),
            median(&rates[2]),
            median(&vs_tephra),
            median(&vs_sqlite),
        );
        let list = |v: &[f64]| {
            v.iter()
                .map(|x| format!("{x:.0}"))
                .collect::<Vec<_>>()
                .join(", ")
        };
        let systems = SYSTEMS_IN_ROUNDS
            .iter()
            .zip(&rates)
            .map(|(name, r)| format!("\"{name}\": [{}]", list(r)))
            .collect::<Vec<_>>()
            .join(", ");
        rows.push(format!(
            "    {{\"workload\": \"{}\", {systems}, \"evstore_over_tephra\": {:.4}, \
             \"evstore_over_tephra_low\": {low:.4}, \"evstore_over_tephra_high\": {high:.4}, \
             \"evstore_over_sqlite\": {:.4}}}",
            w.id,
            median(&vs_tephra),
            median(&vs_sqlite),
        ));
    }
    if rows.is_empty() {
        return;
    }
    let dir = root.join("dcb");
    fs::create_dir_all(&dir).expect("creating the dcb benchmark directory");
    let json = format!(
        "{{\n  \"rounds\": {INTERLEAVED_ROUNDS},\n  \"workloads\": [\n{}\n  ]\n}}\n",
        rows.join(",\n")
    );
    fs::write(dir.join("interleaved.json"), json).expect("writing the interleaved results");
}

/// The median of `values` (the upper one of an even count).
fn median(values: &[f64]) -> f64 {
    let mut v = values.to_vec();
    v.sort_by(f64::total_cmp);
    v.get(v.len() / 2).copied().unwrap_or(f64::NAN)
}

criterion_group! {
    name = benches;
    config = Criterion::default()
        .warm_up_time(Duration::from_secs(1))
        .measurement_time(Duration::from_secs(3))
        .sample_size(10);
    targets = dcb_benches
}
criterion_main!(benches);
