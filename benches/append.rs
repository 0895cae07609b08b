//! Append throughput: evstore against the physical limit of the disk,
//! against SQLite and against tephra, for the same workloads.
//!
//! Groups (one criterion group per system, so ratios can be read directly;
//! every group reports `Throughput::Elements` = events, so criterion prints
//! events/s, and `benches/summarize.py` derives MB/s and the ratios):
//!
//! * `evstore_sync`: `Store::append_with_durability(.., Durability::Sync)`,
//!   acknowledged after the `fdatasync` that covers the append; concurrent
//!   appenders share one sync through the group-commit writer.
//! * `evstore_buffered`: the same with `Durability::Buffered` (acknowledged
//!   once written to the page cache; the writer syncs in the background).
//! * `raw_file`: the same bytes (evstore's own framing sizes, see
//!   [`Workload::append_len`]) appended to a plain file with `pwrite` +
//!   `fdatasync`, batched the same way: one thread writes and syncs per append,
//!   N threads hand their bytes to one writer thread that writes everything
//!   pending with one `pwrite` and one `fdatasync`, then wakes exactly the
//!   appenders it covered.
//! * `sqlite`: rusqlite (bundled), WAL, `synchronous=FULL`, one transaction
//!   per append including the expected-version check.
//! * `tephra`: the `tephra` crate, an embedded DCB event log whose single
//!   writer thread group-commits the queued appends under one `fdatasync`
//!   and answers each once it is durable (the counterpart of
//!   `Durability::Sync`). It has no streams: each event carries one tag
//!   naming its stream (`stream:bench-TT-KK`), and the guard is the
//!   condition that no event with that tag lies after the position where
//!   the stream's previous append ended. Same segment size as evstore
//!   ([`SEGMENT_SIZE`]), default writer settings.
//!
//! Benchmark ids are the same in every group,
//! `threads=T/size=S/batch=B`: T appender threads, each appending B events of
//! S payload bytes per append to its own streams. Every append is guarded,
//! so each system pays for its concurrency check: evstore and SQLite expect
//! the exact version the thread last saw for the stream
//! (`ExpectedVersion::Exact`, `NoStream` for the first append), tephra the
//! tag condition above. No append ever conflicts (each stream has one
//! writer); a conflict would stop the benchmark.
//!
//! One criterion iteration is every thread doing a fixed number of appends,
//! calibrated per workload (outside the measurement) so that an iteration
//! takes about [`TARGET_ITERATION`]. Each `iter_custom` call (one sample)
//! spawns the threads once, releases them together through a barrier and
//! times until the last one is done; each thread runs all of the sample's
//! iterations back to back, so the measurement is steady state.
//!
//! The default run is a representative subset (72 benchmarks, about 9
//! minutes on a 2-core machine, plus compilation); set
//! `EVSTORE_BENCH_FULL=1` for the whole matrix (threads 1/4/16/64 x payload
//! 64 B/256 B/4 KiB x batch 1/10/100 for every group). Workloads run
//! interleaved (evstore_sync, raw_file, sqlite, tephra for one workload, then
//! the next) so the ratios of one workload are measured under the same
//! machine load. Data lives under `target/bench-data` (override with
//! `EVSTORE_BENCH_DIR`) so it is on the real disk, not a tmpfs.
//!
//! After the criterion groups, an interleaved comparison runs evstore, the
//! raw file and tephra in alternating rounds for every durable workload
//! selected (see [`interleave`]; about a minute), and writes the medians of
//! the per-round ratios to `target/bench-data/append/interleaved.json`; the
//! filter `'^interleaved/'` runs only that.
//!
//! `cargo bench --bench append` then `python3 benches/summarize.py` (tables)
//! or `python3 benches/chart_append.py` (`docs/append-chart.svg`). A
//! filter selects benchmarks as usual, e.g. `cargo bench --bench append --
//! 'threads=16/size=256/batch=1$'` (plain text, `|` and `^`/`$` are
//! understood here too, so unselected benchmarks are not even calibrated).
//!
//! Besides the dev-dependencies this uses `bytes`, `parking_lot` and `rustix`
//! (`fallocate`, `sync`), which are dependencies of the crate itself.

#[path = "common/cli.rs"]
mod cli;
#[path = "common/data.rs"]
#[allow(dead_code)]
mod data;

use bytes::Bytes;
use cli::Cli;
use criterion::{
    criterion_group, criterion_main, BenchmarkId, Criterion, SamplingMode, Throughput,
};
use data::bench_root;
use evstore::format::{BATCH_HEADER_LEN, RECORD_HEADER_LEN};
use evstore::{Durability, EventData, ExpectedVersion, Options, Store};
use parking_lot::{Condvar, Mutex};
use rusqlite::{params, Connection, OptionalExtension, TransactionBehavior};
use std::fs::{self, File, OpenOptions};
use std::os::unix::fs::FileExt;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Barrier};
use std::thread::{self, JoinHandle, Thread};
use std::time::{Duration, Instant};
use tempfile::TempDir;
use tephra::{
    AppendCondition, Event, EventType, Position, Query, QueryItem, SegmentConfig, SegmentSet, Tag,
    Tags, WriteCoordinator, WriteHandle, WriterConfig,
};

/// What one iteration should take; the per-thread append count is calibrated
/// to it.
const TARGET_ITERATION: Duration = Duration::from_millis(50);
/// Rounds of the interleaved comparison that follows criterion, and how
/// long each system's run in a round takes.
const INTERLEAVED_ROUNDS: usize = 15;
const INTERLEAVED_RUN: Duration = Duration::from_millis(100);
/// A calibration probe shorter than this is repeated with more appends.
const PROBE_MIN: Duration = Duration::from_millis(25);
/// Upper bound on the bytes one iteration writes.
const MAX_ITERATION_BYTES: u64 = 256 << 20;
/// A store (or SQLite database) is replaced by a fresh one, between samples,
/// once this many bytes have been appended to it, so the disk footprint and
/// the in-memory index stay bounded however long the benchmark runs.
const MAX_STORE_BYTES: u64 = 1 << 30;
/// Streams each thread cycles through.
const STREAMS_PER_THREAD: usize = 16;
/// Event type of every benchmark event.
const EVENT_TYPE: &str = "BenchEvent";
/// Segment size of both evstore and tephra: evstore's default, set
/// explicitly so the two cannot drift apart.
const SEGMENT_SIZE: usize = 64 << 20;

const THREADS: [usize; 4] = [1, 4, 16, 64];
const SIZES: [usize; 3] = [64, 256, 4096];
const BATCHES: [usize; 3] = [1, 10, 100];

/// One point of the matrix.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Workload {
    threads: usize,
    size: usize,
    batch: usize,
}

impl Workload {
    const fn new(threads: usize, size: usize, batch: usize) -> Self {
        Workload {
            threads,
            size,
            batch,
        }
    }

    /// The benchmark id, identical across groups.
    fn id(&self) -> String {
        format!(
            "threads={}/size={}/batch={}",
            self.threads, self.size, self.batch
        )
    }

    /// Bytes one append occupies in an evstore segment: a batch header plus
    /// one 8-aligned record (header, stream name, event type, payload) per
    /// event. For 256-byte payloads that is 88 bytes of framing per event plus
    /// 32 per append. `raw_file` writes exactly this many bytes per append.
    fn append_len(&self) -> usize {
        let record = RECORD_HEADER_LEN + stream_name(0, 0).len() + EVENT_TYPE.len() + self.size;
        BATCH_HEADER_LEN + self.batch * record.next_multiple_of(8)
    }

    fn events_per_iteration(&self, appends_per_thread: u64) -> u64 {
        appends_per_thread * (self.threads * self.batch) as u64
    }

    fn bytes_per_iteration(&self, appends_per_thread: u64) -> u64 {
        appends_per_thread * (self.threads * self.append_len()) as u64
    }
}

/// The `k`-th stream of thread `t`; every name has the same length.
fn stream_name(t: usize, k: usize) -> String {
    format!("bench-{t:02}-{k:02}")
}

/// Payload bytes that are not all alike (nothing here compresses, but a
/// constant payload could hide bugs).
fn payload(t: usize, size: usize) -> Vec<u8> {
    let mut x = 0x9e37_79b9_7f4a_7c15u64 ^ (t as u64);
    (0..size)
        .map(|_| {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            x as u8
        })
        .collect()
}

/// A system under test.
trait Target: Sync {
    /// Outside the measurement: get ready for a run in which every thread
    /// makes `appends_per_thread` appends.
    fn begin(&mut self, appends_per_thread: u64);
    /// The `n`-th append of thread `t` in the current run.
    fn append(&self, t: usize, n: u64);
    /// Outside the measurement: the run is over.
    fn end(&mut self) {}
}

/// Spawns `threads` threads, releases them together, runs `work(t)` on each
/// and returns the wall time from the release to the last one finishing.
fn run_threads(threads: usize, work: impl Fn(usize) + Sync) -> Duration {
    let barrier = Barrier::new(threads + 1);
    let start = thread::scope(|scope| {
        for t in 0..threads {
            let (barrier, work) = (&barrier, &work);
            scope.spawn(move || {
                barrier.wait();
                work(t);
            });
        }
        barrier.wait();
        Instant::now()
    });
    start.elapsed()
}

/// One run: every thread makes `appends_per_thread` appends.
fn timed_run<T: Target + ?Sized>(
    target: &mut T,
    w: &Workload,
    appends_per_thread: u64,
) -> Duration {
    target.begin(appends_per_thread);
    let shared: &T = target;
    let elapsed = run_threads(w.threads, |t| {
        for n in 0..appends_per_thread {
            shared.append(t, n);
        }
    });
    target.end();
    elapsed
}

/// Appends per thread that make one iteration take about
/// [`TARGET_ITERATION`] (at least one append per thread, so a slow system
/// with many threads gets a long iteration rather than none).
fn calibrate<T: Target + ?Sized>(target: &mut T, w: &Workload) -> u64 {
    calibrate_to(target, w, TARGET_ITERATION)
}

/// Appends per thread that make one run take about `aim`.
fn calibrate_to<T: Target + ?Sized>(target: &mut T, w: &Workload, aim: Duration) -> u64 {
    let max = (MAX_ITERATION_BYTES / w.bytes_per_iteration(1)).max(1);
    let mut appends = 1u64;
    loop {
        let elapsed = timed_run(target, w, appends).max(Duration::from_micros(1));
        if elapsed >= PROBE_MIN || appends >= max {
            let scaled = appends as f64 * aim.as_secs_f64() / elapsed.as_secs_f64();
            return (scaled.round() as u64).clamp(1, max);
        }
        let factor = (PROBE_MIN.as_secs_f64() * 1.5 / elapsed.as_secs_f64()).ceil() as u64;
        appends = (appends * factor.clamp(2, 64)).min(max);
    }
}

/// One counter per stream of every thread, all zero. Row `t` is only touched
/// by thread `t` (its appends are sequential), so relaxed loads and stores
/// are enough; the counters are per stream because a thread cycles through
/// its streams and must know where each one is.
fn stream_counters(threads: usize) -> Vec<Vec<AtomicU64>> {
    (0..threads)
        .map(|_| (0..STREAMS_PER_THREAD).map(|_| AtomicU64::new(0)).collect())
        .collect()
}

/// Zeroes every counter, for a fresh store.
fn reset_counters(counters: &mut [Vec<AtomicU64>]) {
    for counter in counters.iter_mut().flatten() {
        *counter.get_mut() = 0;
    }
}

/// The expectation for a stream holding `len` events: no stream at all, or
/// exactly the version of its last event.
fn expected_version(len: u64) -> ExpectedVersion {
    match len {
        0 => ExpectedVersion::NoStream,
        n => ExpectedVersion::Exact(n - 1),
    }
}

fn fresh_dir(root: &Path) -> TempDir {
    tempfile::tempdir_in(root).expect("creating a temporary directory")
}

/// Writes back every dirty page (outside the measurement), so one
/// benchmark's buffered data is not flushed during the next one's syncs.
fn settle() {
    rustix::fs::sync();
}

// ---------------------------------------------------------------- evstore

struct EvstoreTarget {
    w: Workload,
    durability: Durability,
    root: PathBuf,
    /// The open store and its directory (dropped in this order: the store
    /// closes before its directory is removed).
    store: Option<(Store, TempDir)>,
    /// Bytes appended to the current store.
    written: u64,
    streams: Vec<Vec<String>>,
    /// Events in each stream of the current store, for the exact expected
    /// version of the next append.
    lens: Vec<Vec<AtomicU64>>,
    /// One payload per thread, shared by its events: no refcount is shared
    /// across threads.
    payloads: Vec<Bytes>,
}

impl EvstoreTarget {
    fn new(w: Workload, durability: Durability, root: &Path) -> Self {
        EvstoreTarget {
            w,
            durability,
            root: root.to_path_buf(),
            store: None,
            written: 0,
            streams: (0..w.threads)
                .map(|t| (0..STREAMS_PER_THREAD).map(|k| stream_name(t, k)).collect())
                .collect(),
            lens: stream_counters(w.threads),
            payloads: (0..w.threads)
                .map(|t| Bytes::from(payload(t, w.size)))
                .collect(),
        }
    }
}

impl Target for EvstoreTarget {
    fn begin(&mut self, appends_per_thread: u64) {
        let bytes = self.w.bytes_per_iteration(appends_per_thread);
        if self.store.is_none() || (self.written > 0 && self.written + bytes > MAX_STORE_BYTES) {
            if let Some((store, dir)) = self.store.take() {
                store.close().expect("closing the store");
                drop(dir);
                settle();
            }
            let dir = fresh_dir(&self.root);
            // Default options (no linger); the segment size is the default
            // too, spelled out so that tephra gets the same one. Only the
            // store's default durability follows the group, which also
            // decides what readers see (nothing reads here).
            let options = Options::default()
                .segment_size(SEGMENT_SIZE as u64)
                .durability(self.durability);
            let store = Store::open(dir.path(), options).expect("opening the store");
            self.store = Some((store, dir));
            self.written = 0;
            reset_counters(&mut self.lens);
        }
        self.written += bytes;
    }

    fn append(&self, t: usize, n: u64) {
        let Some((store, _)) = &self.store else {
            panic!("append before begin");
        };
        // Each event made as an application makes it, with its default
        // (fresh, time-ordered) id.
        let events: Vec<EventData> = (0..self.w.batch)
            .map(|_| EventData::new(EVENT_TYPE, self.payloads[t].clone()))
            .collect();
        let k = n as usize % STREAMS_PER_THREAD;
        let len = &self.lens[t][k];
        let result = store
            .append_with_durability(
                &self.streams[t][k],
                expected_version(len.load(Ordering::Relaxed)),
                &events,
                self.durability,
            )
            .expect("evstore append (a version conflict means the benchmark is wrong)");
        len.store(result.last_version + 1, Ordering::Relaxed);
    }
}

// ---------------------------------------------------------------- raw file

/// Group commit reduced to its bare bones: appenders add their bytes to a
/// shared buffer and park; one writer thread takes everything pending, writes
/// it with one `pwrite`, issues one `fdatasync`, publishes the durable ticket
/// and unparks exactly the appenders that group covered.
struct GroupCommit {
    state: Mutex<GroupState>,
    work: Condvar,
    durable: AtomicU64,
}

#[derive(Default)]
struct GroupState {
    pending: Vec<u8>,
    waiters: Vec<Thread>,
    enqueued: u64,
    closed: bool,
}

impl GroupCommit {
    fn new() -> Self {
        GroupCommit {
            state: Mutex::new(GroupState::default()),
            work: Condvar::new(),
            durable: AtomicU64::new(0),
        }
    }

    /// Appends `bytes` and returns once they are durable.
    fn commit(&self, bytes: &[u8]) {
        let ticket = {
            let mut state = self.state.lock();
            state.pending.extend_from_slice(bytes);
            state.waiters.push(thread::current());
            state.enqueued += 1;
            state.enqueued
        };
        self.work.notify_one();
        while self.durable.load(Ordering::Acquire) < ticket {
            thread::park();
        }
    }

    fn close(&self) {
        self.state.lock().closed = true;
        self.work.notify_one();
    }

    /// The writer thread's loop.
    fn run_writer(&self, file: &File) {
        let mut buf = Vec::new();
        let mut waiters = Vec::new();
        let mut offset = 0u64;
        loop {
            let last = {
                let mut state = self.state.lock();
                while state.pending.is_empty() && !state.closed {
                    self.work.wait(&mut state);
                }
                if state.pending.is_empty() {
                    return;
                }
                std::mem::swap(&mut state.pending, &mut buf);
                std::mem::swap(&mut state.waiters, &mut waiters);
                state.enqueued
            };
            file.write_all_at(&buf, offset).expect("raw pwrite");
            file.sync_data().expect("raw fdatasync");
            offset += buf.len() as u64;
            buf.clear();
            self.durable.store(last, Ordering::Release);
            for waiter in waiters.drain(..) {
                waiter.unpark();
            }
        }
    }
}

struct RawRun {
    file: Arc<File>,
    path: PathBuf,
    /// Next write offset when there is one thread (no writer thread).
    offset: AtomicU64,
    group: Option<(Arc<GroupCommit>, JoinHandle<()>)>,
}

struct RawTarget {
    w: Workload,
    dir: TempDir,
    /// The bytes of one append, per thread.
    appends: Vec<Vec<u8>>,
    run: Option<RawRun>,
    runs: u64,
}

impl RawTarget {
    fn new(w: Workload, root: &Path) -> Self {
        let len = w.append_len();
        RawTarget {
            w,
            dir: fresh_dir(root),
            appends: (0..w.threads).map(|t| payload(t, len)).collect(),
            run: None,
            runs: 0,
        }
    }
}

impl Target for RawTarget {
    /// Each run writes a fresh file that is preallocated, before the clock
    /// starts, to exactly the run's bytes with `fallocate` and then synced
    /// (file and directory): the same state as an evstore segment, which is
    /// `fallocate`d and synced ahead of use, so every write lands in allocated
    /// but unwritten extents and `fdatasync` pays for converting them, just as
    /// evstore's does. (Overwriting already-written blocks would be cheaper
    /// and would flatter the baseline.)
    fn begin(&mut self, appends_per_thread: u64) {
        let path = self.dir.path().join(format!("raw-{}.log", self.runs));
        self.runs += 1;
        let file = OpenOptions::new()
            .read(true)
            .write(true)
            .create_new(true)
            .open(&path)
            .expect("creating the raw file");
        let len = self.w.bytes_per_iteration(appends_per_thread);
        rustix::fs::fallocate(&file, rustix::fs::FallocateFlags::empty(), 0, len)
            .expect("fallocate of the raw file");
        file.sync_all().expect("fsync of the raw file");
        File::open(self.dir.path())
            .and_then(|d| d.sync_all())
            .expect("fsync of the raw directory");
        let file = Arc::new(file);
        let group = (self.w.threads > 1).then(|| {
            let group = Arc::new(GroupCommit::new());
            let (g, f) = (Arc::clone(&group), Arc::clone(&file));
            let handle = thread::Builder::new()
                .name("raw-writer".into())
                .spawn(move || g.run_writer(&f))
                .expect("starting the raw writer");
            (group, handle)
        });
        self.run = Some(RawRun {
            file,
            path,
            offset: AtomicU64::new(0),
            group,
        });
    }

    fn append(&self, t: usize, _n: u64) {
        let Some(run) = &self.run else {
            panic!("append before begin");
        };
        let bytes = &self.appends[t];
        match &run.group {
            Some((group, _)) => group.commit(bytes),
            None => {
                // One appender: write + fdatasync per append, in its thread.
                let offset = run.offset.fetch_add(bytes.len() as u64, Ordering::Relaxed);
                run.file.write_all_at(bytes, offset).expect("raw pwrite");
                run.file.sync_data().expect("raw fdatasync");
            }
        }
    }

    fn end(&mut self) {
        if let Some(run) = self.run.take() {
            if let Some((group, handle)) = run.group {
                group.close();
                handle.join().expect("raw writer panicked");
            }
            drop(run.file);
            fs::remove_file(&run.path).expect("removing the raw file");
        }
    }
}

// ---------------------------------------------------------------- SQLite

/// SQLite with one connection shared by every thread behind a mutex.
///
/// SQLite admits one writer at a time whatever the number of connections. With
/// a connection per thread the losers of the WAL write lock get `SQLITE_BUSY`
/// and the busy handler sleeps (1, 2, 5, 10, ... ms) before retrying, leaving
/// the disk idle; a mutex hands the connection over as soon as the commit
/// returns, so it is the faster and fairer setup for SQLite. (Measured here
/// at 16 threads, 256 B, batch 1: about 25 events/s with a connection per
/// thread against about 3,900 with the shared one.) Neither shares an fsync
/// between transactions: SQLite has no group commit.
struct SqliteTarget {
    w: Workload,
    root: PathBuf,
    db: Option<(Mutex<Connection>, TempDir)>,
    written: u64,
    streams: Vec<Vec<String>>,
    /// Events in each stream of the current database, as for evstore.
    lens: Vec<Vec<AtomicU64>>,
    payloads: Vec<Vec<u8>>,
}

const SQLITE_SCHEMA: &str = "
    CREATE TABLE events (
        position INTEGER PRIMARY KEY,
        stream TEXT NOT NULL,
        version INTEGER NOT NULL,
        type TEXT NOT NULL,
        payload BLOB NOT NULL
    );
    CREATE UNIQUE INDEX events_stream_version ON events (stream, version);
";

impl SqliteTarget {
    fn new(w: Workload, root: &Path) -> Self {
        SqliteTarget {
            w,
            root: root.to_path_buf(),
            db: None,
            written: 0,
            streams: (0..w.threads)
                .map(|t| (0..STREAMS_PER_THREAD).map(|k| stream_name(t, k)).collect())
                .collect(),
            lens: stream_counters(w.threads),
            payloads: (0..w.threads).map(|t| payload(t, w.size)).collect(),
        }
    }

    fn open(dir: &Path) -> rusqlite::Result<Connection> {
        let conn = Connection::open(dir.join("events.db"))?;
        conn.busy_timeout(Duration::from_secs(60))?;
        let mode: String = conn.query_row("PRAGMA journal_mode = WAL", [], |r| r.get(0))?;
        assert_eq!(mode.to_lowercase(), "wal", "SQLite refused WAL mode");
        conn.pragma_update(None, "synchronous", "FULL")?;
        conn.execute_batch(SQLITE_SCHEMA)?;
        Ok(conn)
    }

    fn append_tx(&self, conn: &mut Connection, t: usize, n: u64) -> rusqlite::Result<()> {
        let k = n as usize % STREAMS_PER_THREAD;
        let stream = &self.streams[t][k];
        let expected = expected_version(self.lens[t][k].load(Ordering::Relaxed));
        let tx = conn.transaction_with_behavior(TransactionBehavior::Immediate)?;
        let actual: Option<i64> = tx
            .prepare_cached("SELECT max(version) FROM events WHERE stream = ?1")?
            .query_row([stream], |r| r.get(0))
            .optional()?
            .flatten();
        let actual = actual.map(|v| v as u64);
        assert!(
            expected.matches(actual),
            "SQLite: stream {stream} is at version {actual:?}, expected {expected}"
        );
        let first = actual.map_or(0, |v| v + 1);
        {
            let mut insert = tx.prepare_cached(
                "INSERT INTO events (stream, version, type, payload) VALUES (?1, ?2, ?3, ?4)",
            )?;
            for i in 0..self.w.batch as u64 {
                insert.execute(params![
                    stream,
                    (first + i) as i64,
                    EVENT_TYPE,
                    &self.payloads[t]
                ])?;
            }
        }
        tx.commit()?;
        self.lens[t][k].store(first + self.w.batch as u64, Ordering::Relaxed);
        Ok(())
    }
}

impl Target for SqliteTarget {
    fn begin(&mut self, appends_per_thread: u64) {
        let bytes = self.w.bytes_per_iteration(appends_per_thread);
        if self.db.is_none() || (self.written > 0 && self.written + bytes > MAX_STORE_BYTES) {
            if let Some((conn, dir)) = self.db.take() {
                drop(conn);
                drop(dir);
                settle();
            }
            let dir = fresh_dir(&self.root);
            let conn = Self::open(dir.path()).expect("opening SQLite");
            self.db = Some((Mutex::new(conn), dir));
            self.written = 0;
            reset_counters(&mut self.lens);
        }
        self.written += bytes;
    }

    fn append(&self, t: usize, n: u64) {
        let Some((conn, _)) = &self.db else {
            panic!("append before begin");
        };
        let mut conn = conn.lock();
        self.append_tx(&mut conn, t, n).expect("SQLite append");
    }
}

// ---------------------------------------------------------------- tephra

/// A running tephra log: the coordinator that owns the writer thread, a
/// handle the appenders share, and the data directory.
struct TephraLog {
    coordinator: WriteCoordinator,
    handle: WriteHandle,
    dir: TempDir,
}

impl TephraLog {
    fn open(root: &Path) -> Self {
        let dir = fresh_dir(root);
        let set = SegmentSet::open(dir.path(), SegmentConfig::new(SEGMENT_SIZE))
            .expect("opening the tephra segment set");
        let (coordinator, handle) = WriteCoordinator::start(set, WriterConfig::default())
            .expect("starting the tephra writer");
        TephraLog {
            coordinator,
            handle,
            dir,
        }
    }

    /// Stops the writer thread (joining it) and closes the segments before
    /// the directory is removed.
    fn close(self) {
        let TephraLog {
            coordinator,
            handle,
            dir,
        } = self;
        drop(handle);
        drop(coordinator.shutdown());
        drop(dir);
    }
}

/// tephra with one `WriteHandle` shared by every thread (it is a channel
/// sender into the single writer, so sharing it is what its API intends).
///
/// A tephra event carries its tags in its encoding, so the template events
/// are per stream, not just per thread. Cloning one copies its bytes (an
/// evstore clone shares the payload), but that is the cheapest way to get
/// an owned, encoded tephra event. tephra assigns no event ids.
struct TephraTarget {
    w: Workload,
    root: PathBuf,
    log: Option<TephraLog>,
    /// Bytes appended to the current log, counted as for evstore.
    written: u64,
    /// One event per stream of every thread, to clone for every event.
    templates: Vec<Vec<Event>>,
    /// Per stream: the query for its tag, which the guard is built from.
    queries: Vec<Vec<Query>>,
    /// Per stream: the position of its last event in the current log
    /// (`Position::ZERO`, i.e. 0, before its first append).
    last: Vec<Vec<AtomicU64>>,
}

impl TephraTarget {
    fn new(w: Workload, root: &Path) -> Self {
        let event_type = EventType::new(EVENT_TYPE).expect("tephra event type");
        let tags = |t: usize, k: usize| {
            let tag = Tag::new(format!("stream:{}", stream_name(t, k))).expect("tephra tag");
            Tags::new([tag]).expect("tephra tags")
        };
        TephraTarget {
            w,
            root: root.to_path_buf(),
            log: None,
            written: 0,
            templates: (0..w.threads)
                .map(|t| {
                    let payload = payload(t, w.size);
                    (0..STREAMS_PER_THREAD)
                        .map(|k| {
                            Event::new(&event_type, &tags(t, k), &payload).expect("tephra event")
                        })
                        .collect()
                })
                .collect(),
            queries: (0..w.threads)
                .map(|t| {
                    (0..STREAMS_PER_THREAD)
                        .map(|k| Query::item(QueryItem::with_tags(tags(t, k))))
                        .collect()
                })
                .collect(),
            last: stream_counters(w.threads),
        }
    }
}

impl Target for TephraTarget {
    fn begin(&mut self, appends_per_thread: u64) {
        let bytes = self.w.bytes_per_iteration(appends_per_thread);
        if self.log.is_none() || (self.written > 0 && self.written + bytes > MAX_STORE_BYTES) {
            if let Some(log) = self.log.take() {
                log.close();
                settle();
            }
            self.log = Some(TephraLog::open(&self.root));
            self.written = 0;
            reset_counters(&mut self.last);
        }
        self.written += bytes;
    }

    fn append(&self, t: usize, n: u64) {
        let Some(log) = &self.log else {
            panic!("append before begin");
        };
        let k = n as usize % STREAMS_PER_THREAD;
        let events = vec![self.templates[t][k].clone(); self.w.batch];
        let last = &self.last[t][k];
        // Nothing tagged with this stream may follow its previous append:
        // the DCB form of an exact expected version.
        let condition = AppendCondition::new(self.queries[t][k].clone())
            .after(Position::new(last.load(Ordering::Relaxed)));
        let range = log
            .handle
            .append(events, Some(condition))
            .expect("tephra append (a conflict means the benchmark is wrong)");
        last.store(range.last.get(), Ordering::Relaxed);
    }
}

impl Drop for TephraTarget {
    fn drop(&mut self) {
        if let Some(log) = self.log.take() {
            log.close();
        }
    }
}

// ---------------------------------------------------------------- driver

fn full_matrix() -> bool {
    std::env::var("EVSTORE_BENCH_FULL").is_ok_and(|v| !v.is_empty() && v != "0")
}

fn all_workloads() -> Vec<Workload> {
    let mut out = Vec::new();
    for &size in &SIZES {
        for &threads in &THREADS {
            for &batch in &BATCHES {
                out.push(Workload::new(threads, size, batch));
            }
        }
    }
    out
}

/// Workloads for `evstore_sync`, `raw_file`, `sqlite` and `tephra`.
fn sync_workloads() -> Vec<Workload> {
    if full_matrix() {
        return all_workloads();
    }
    let mut out = Vec::new();
    // 256-byte events: every thread count, single events and batches of 100.
    for &threads in &THREADS {
        for batch in [1, 100] {
            out.push(Workload::new(threads, 256, batch));
        }
    }
    // Batches of 10, and the other payload sizes, at 16 appenders.
    out.push(Workload::new(16, 256, 10));
    for size in [64, 4096] {
        for &batch in &BATCHES {
            out.push(Workload::new(16, size, batch));
        }
    }
    out
}

/// Workloads for `evstore_buffered`.
fn buffered_workloads() -> Vec<Workload> {
    if full_matrix() {
        return all_workloads();
    }
    let mut out = Vec::new();
    for &threads in &THREADS {
        for batch in [1, 100] {
            out.push(Workload::new(threads, 256, batch));
        }
    }
    for size in [64, 4096] {
        out.push(Workload::new(1, size, 100));
        out.push(Workload::new(16, size, 10));
    }
    out
}

/// Calibrates `target` for `w` and benchmarks it as `group/w.id()`.
fn bench_target<T: Target>(
    c: &mut Criterion,
    cli: &Cli,
    group: &str,
    w: &Workload,
    make: impl FnOnce() -> T,
) {
    let id = w.id();
    if !cli.selects(&format!("{group}/{id}")) {
        return;
    }
    let mut target = make();
    let appends_per_thread = if cli.list || cli.test {
        1
    } else {
        calibrate(&mut target, w)
    };
    let mut g = c.benchmark_group(group);
    g.sampling_mode(SamplingMode::Flat);
    g.throughput(Throughput::Elements(
        w.events_per_iteration(appends_per_thread),
    ));
    g.bench_function(BenchmarkId::from_parameter(&id), |b| {
        b.iter_custom(|iters| timed_run(&mut target, w, appends_per_thread * iters));
    });
    g.finish();
    drop(target);
    settle();
}

/// After criterion: for every durable workload selected, evstore, the raw
/// file and tephra run in rounds, one run each per round (in order, then in
/// reverse, so that a drift in the disk's speed hits all alike), and each
/// round's ratios are taken between runs made within a second of one
/// another. The criterion groups run one workload's systems a minute or so
/// apart, and on a shared virtual disk the speed of syncs can change by a
/// third in that time; the medians of per-round ratios do not move with it.
/// Printed, and written to `target/bench-data/append/interleaved.json` for
/// `benches/summarize.py`.
fn interleave(cli: &Cli, root: &Path) {
    if cli.list || cli.test {
        return;
    }
    let median = |v: &[f64]| {
        let mut v = v.to_vec();
        v.sort_by(f64::total_cmp);
        v.get(v.len() / 2).copied().unwrap_or(f64::NAN)
    };
    let mut rows = Vec::new();
    for w in sync_workloads() {
        let id = w.id();
        let selected = ["evstore_sync", "raw_file", "tephra", "interleaved"]
            .iter()
            .any(|group| cli.selects(&format!("{group}/{id}")));
        if !selected {
            continue;
        }
        let mut targets: Vec<Box<dyn Target>> = vec![
            Box::new(EvstoreTarget::new(w, Durability::Sync, root)),
            Box::new(RawTarget::new(w, root)),
            Box::new(TephraTarget::new(w, root)),
        ];
        let appends: Vec<u64> = targets
            .iter_mut()
            .map(|t| calibrate_to(t.as_mut(), &w, INTERLEAVED_RUN))
            .collect();
        let mut rates = vec![Vec::new(); targets.len()];
        for round in 0..INTERLEAVED_ROUNDS {
            let mut order: Vec<usize> = (0..targets.len()).collect();
            if round % 2 == 1 {
                order.reverse();
            }
            for i in order {
                let elapsed = timed_run(targets[i].as_mut(), &w, appends[i]);
                let events = w.events_per_iteration(appends[i]) as f64;
                rates[i].push(events / elapsed.as_secs_f64().max(1e-9));
            }
        }
        drop(targets);
        settle();
        let per_round =
            |f: &dyn Fn(usize) -> f64| -> Vec<f64> { (0..INTERLEAVED_ROUNDS).map(f).collect() };
        let (evstore, raw, tephra) = (&rates[0], &rates[1], &rates[2]);
        let vs_tephra = per_round(&|r| evstore[r] / tephra[r]);
        let raw_over = per_round(&|r| raw[r] / evstore[r]);
        let (low, high) = vs_tephra
            .iter()
            .fold((f64::INFINITY, 0f64), |(lo, hi), &x| (lo.min(x), hi.max(x)));
        eprintln!(
            "interleaved {id}, {INTERLEAVED_ROUNDS} rounds: evstore {:.0}, raw {:.0}, tephra {:.0} \
             events/s (medians); per round raw/evstore {:.2}, evstore/tephra {:.2} \
             (from {low:.2} to {high:.2})",
            median(evstore),
            median(raw),
            median(tephra),
            median(&raw_over),
            median(&vs_tephra),
        );
        let list = |v: &[f64]| {
            v.iter()
                .map(|x| format!("{x:.0}"))
                .collect::<Vec<_>>()
                .join(", ")
        };
        rows.push(format!(
            "    {{\"workload\": \"{id}\", \"evstore\": [{}], \"raw\": [{}], \"tephra\": [{}], \
             \"raw_over_evstore\": {:.4}, \"evstore_over_tephra\": {:.4}, \
             \"evstore_over_tephra_low\": {low:.4}, \"evstore_over_tephra_high\": {high:.4}}}",
            list(evstore),
            list(raw),
            list(tephra),
            median(&raw_over),
            median(&vs_tephra),
        ));
    }
    if rows.is_empty() {
        return;
    }
    let dir = root.join("append");
    fs::create_dir_all(&dir).expect("creating the append benchmark directory");
    let path = dir.join("interleaved.json");
    let json = format!(
        "{{\n  \"rounds\": {INTERLEAVED_ROUNDS},\n  \"run_ms\": {},\n  \"workloads\": [\n{}\n  ]\n}}\n",
        INTERLEAVED_RUN.as_millis(),
        rows.join(",\n")
    );
    fs::write(&path, json).expect("writing the interleaved results");
    eprintln!("wrote {}", path.display());
}

/// With the `metrics` feature, the store's figures go to a Prometheus
/// recorder whose upkeep runs and which is scraped, as in a service that
/// exports them; with `tracing`, spans go to a subscriber that keeps
/// `INFO` and above, as production services usually do. The cost of the
/// features is then measured on, not off.
fn install_observability() {
    #[cfg(feature = "metrics")]
    if let Ok(handle) = metrics_exporter_prometheus::PrometheusBuilder::new().install_recorder() {
        std::thread::spawn(move || loop {
            std::thread::sleep(Duration::from_secs(1));
            handle.run_upkeep();
            drop(handle.render());
        });
    }
    #[cfg(feature = "tracing")]
    drop(tracing::subscriber::set_global_default({
        use tracing_subscriber::layer::SubscriberExt;
        tracing_subscriber::registry().with(tracing::level_filters::LevelFilter::INFO)
    }));
}

fn append_benches(c: &mut Criterion) {
    let cli = Cli::parse();
    let root = bench_root();
    install_observability();
    settle();
    for w in sync_workloads() {
        bench_target(c, &cli, "evstore_sync", &w, || {
            EvstoreTarget::new(w, Durability::Sync, &root)
        });
        bench_target(c, &cli, "raw_file", &w, || RawTarget::new(w, &root));
        bench_target(c, &cli, "sqlite", &w, || SqliteTarget::new(w, &root));
        bench_target(c, &cli, "tephra", &w, || TephraTarget::new(w, &root));
    }
    for w in buffered_workloads() {
        bench_target(c, &cli, "evstore_buffered", &w, || {
            EvstoreTarget::new(w, Durability::Buffered, &root)
        });
    }
    interleave(&cli, &root);
}

criterion_group! {
    name = benches;
    config = Criterion::default()
        .warm_up_time(Duration::from_secs(1))
        .measurement_time(Duration::from_secs(3))
        .sample_size(10);
    targets = append_benches
}
criterion_main!(benches);
