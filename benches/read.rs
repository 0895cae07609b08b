//! Reading a large store: evstore's open (recovery) time, and stream reads
//! and point lookups against SQLite, on the same data.
//!
//! Data (generated once, reused by later runs; see below):
//!
//! * two evstore stores of 1,000,000 and 10,000,000 events of 256-byte
//!   payloads over 100,000 streams. Each append writes a batch of events
//!   (1 for the 1M store, 10 for the 10M store) to one stream; the streams
//!   take turns in rounds, in a different pseudo-random order every round,
//!   so every stream's events are spread over the whole log (10 runs each,
//!   about a tenth of the log apart). The 10M store also has `target-stream`
//!   (one of its 100,000 streams) with exactly 1,000 single-event appends,
//!   one every 9,999 events of the others, from the first position to the
//!   last percent of the log.
//! * a SQLite database (rusqlite, bundled) with the same 10M events (same
//!   positions, versions and payloads): table `events(position INTEGER
//!   PRIMARY KEY, stream TEXT, version INTEGER, event_type TEXT, payload
//!   BLOB)`, a unique index on `(stream, version)`, WAL mode.
//!
//! Groups (one id per system in the read groups, so ratios can be read
//! directly; every group reports `Throughput::Elements`, so criterion prints
//! events/s, and `benches/summarize_read.py` tabulates the ratios):
//!
//! * `open`: `Store::open` + `Store::close` of the 1M and the 10M stores
//!   (ids `events=1000000`, `events=10000000`; evstore only). Open loads the
//!   stream catalogue, checks each sealed segment's header, seal and index
//!   file header, and scans only the unsealed tail (a store written before
//!   index files existed gets them on its first open, during criterion's
//!   warm-up); the pair also includes
//!   the next segment that the writer preallocates in the background when it
//!   starts (64 MiB, `fallocate` + sync; close waits for it and the next
//!   open deletes it).
//! * `read_stream`: all 1,000 events of `target-stream` in the 10M store.
//!   `evstore`: `read_stream("target-stream", 0, Forward, 1000)`; `sqlite`:
//!   `SELECT position, version, event_type, payload FROM events WHERE
//!   stream = ?1 AND version >= ?2 ORDER BY version LIMIT ?3` through a
//!   cached prepared statement, collected into owned rows.
//! * `lookup`: 1,000 single-event lookups by (stream, version) per
//!   iteration, walking a fixed pseudo-random sequence of 1,048,576 pairs
//!   that exist in the 10M store. `evstore`: `read_stream(stream, version,
//!   Forward, 1)`; `sqlite`: `... WHERE stream = ?1 AND version = ?2`.
//!
//! Both systems return every payload in memory and the benchmark reads one
//! byte of every 64 of it, so neither can defer the work. Both read warm:
//! every file of the store and the SQLite file are read through once
//! before the read groups, and with RAM for the 7 GB of data the page cache
//! holds all of it. SQLite runs twice: `sqlite` with the settings that suit
//! it best here, a 256 MiB page cache (`PRAGMA cache_size`) and the file
//! memory-mapped up to the bundled build's 2 GiB maximum (`PRAGMA
//! mmap_size`, three fifths of the file), and `sqlite_defaults` as an
//! application gets it (a 2 MiB cache, a system call per page it does not
//! hold).
//!
//! Data lives under `target/bench-data/read` (`EVSTORE_BENCH_DIR/read` if
//! set). A `.complete` marker next to each store records the parameters it
//! was made with (and evstore's format version); a store whose marker is
//! missing or different is deleted and made again. Generation prints its
//! progress to stderr.
//!
//! On a 2-core KVM guest (23 GiB RAM, ext4 on virtio) shared with other
//! work, generating everything took about a minute (1M store 5 s, 10M store
//! 22 s, SQLite 27 s with its index), and the benchmarks 3 to 4 minutes after
//! it, half of that in `open`: criterion takes at least 10 samples and the
//! 10M open took 8 to 10 s, so its "unable to complete 10 samples" warning
//! is expected while open is that slow. The data takes about 7 GB of disk.
//!
//! `cargo bench --bench read` then `python3 benches/summarize_read.py`. A
//! filter selects benchmarks as usual (e.g. `cargo bench --bench read --
//! lookup`); only the data the selected benchmarks need is generated. Run
//! as a test (`cargo test --benches`) it uses small stores in a temporary
//! directory.

#[path = "common/cli.rs"]
mod cli;
#[path = "common/data.rs"]
#[allow(dead_code)]
mod data;

use bytes::Bytes;
use cli::Cli;
use criterion::{criterion_group, criterion_main, Criterion, SamplingMode, Throughput};
use data::bench_root;
use data::Rng;
use evstore::{Direction, Durability, EventData, ExpectedVersion, Options, Store, Uuid};
use rusqlite::{params, Connection};
use std::fs;
use std::hint::black_box;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};
use tempfile::TempDir;

/// Payload bytes of every event.
const PAYLOAD_LEN: usize = 256;
/// Event type of every event.
const EVENT_TYPE: &str = "BenchEvent";
/// The stream `read_stream` reads; as long as the other names.
const TARGET_STREAM: &str = "target-stream";
/// Events of [`TARGET_STREAM`] (in the store that has it).
const TARGET_EVENTS: u64 = 1_000;
/// Lookups per `lookup` iteration.
const LOOKUPS_PER_ITER: u64 = 1_000;
/// Length of the fixed sequence of (stream, version) pairs `lookup` walks.
const LOOKUP_PAIRS: usize = 1 << 20;
/// Changing how the data is generated must change this, so that stores made
/// by an older version are not reused.
const GENERATOR_VERSION: u32 = 2;
/// Events per SQLite transaction while loading.
const SQLITE_LOAD_TX: u64 = 500_000;
/// Ids are `Uuid::from_u64_pair(ID_SALT, n)` for the `n`-th event appended.
const ID_SALT: u64 = 0x7265_6164_2d62_656e;
/// Seed of the payload bytes.
const PAYLOAD_SEED: u64 = 0x005e_ed0f_0a1f_10ad;
/// Seed of the lookup sequence.
const LOOKUP_SEED: u64 = 0x100c_0b5e_ed00_0001;
/// Multiplier of the per-round permutation of the streams: a prime larger
/// than any stream count used here, so coprime with it.
const PERMUTATION_PRIME: u64 = 1_000_003;

/// The name of regular stream `i`; every name has the length of
/// [`TARGET_STREAM`].
fn stream_name(i: u64) -> String {
    format!("stream-{i:06}")
}

/// SplitMix64's finalizer: a well-mixed value for each round number.
fn mix(mut x: u64) -> u64 {
    x = x.wrapping_add(0x9e37_79b9_7f4a_7c15);
    x = (x ^ (x >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
    x = (x ^ (x >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
    x ^ (x >> 31)
}

/// Sixteen different payloads; events take them in turn.
fn payloads() -> Vec<Bytes> {
    let mut rng = Rng(PAYLOAD_SEED);
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

// ---------------------------------------------------------------- data

/// One append of the generated log.
#[derive(Debug, Clone, Copy)]
enum Step {
    /// `count` events to regular stream `stream`.
    Regular { stream: u64, count: u64 },
    /// One event to [`TARGET_STREAM`].
    Target,
}

/// The parameters of one generated store.
#[derive(Debug, Clone, Copy)]
struct Spec {
    /// Events in the store, [`TARGET_STREAM`]'s included.
    events: u64,
    /// Streams in the store, [`TARGET_STREAM`] included if it has events.
    streams: u64,
    /// Events per append to a regular stream.
    batch: u64,
    /// Events of [`TARGET_STREAM`] (0: the store has no such stream).
    target_events: u64,
}

impl Spec {
    fn regular_streams(&self) -> u64 {
        self.streams - u64::from(self.target_events > 0)
    }

    fn regular_events(&self) -> u64 {
        self.events - self.target_events
    }

    /// Walks the appends of the log in order. Regular appends go round the
    /// regular streams in rounds, each round in another pseudo-random order
    /// (`i * PERMUTATION_PRIME + mix(round)` modulo the stream count); the
    /// target stream's single-event appends are spread evenly between them.
    fn plan(&self, mut step: impl FnMut(Step)) {
        let streams = self.regular_streams();
        let regular = self.regular_events();
        let targets = self.target_events;
        let (mut written, mut target, mut k) = (0u64, 0u64, 0u64);
        while written < regular {
            if target < targets
                && u128::from(written) * u128::from(targets)
                    >= u128::from(target) * u128::from(regular)
            {
                step(Step::Target);
                target += 1;
            }
            let (round, i) = (k / streams, k % streams);
            let stream = ((u128::from(i) * u128::from(PERMUTATION_PRIME) + u128::from(mix(round)))
                % u128::from(streams)) as u64;
            let count = self.batch.min(regular - written);
            step(Step::Regular { stream, count });
            written += count;
            k += 1;
        }
        for _ in target..targets {
            step(Step::Target);
        }
    }

    /// Events per regular stream.
    fn stream_counts(&self) -> Vec<u32> {
        let mut counts = vec![0u32; self.regular_streams() as usize];
        self.plan(|step| {
            if let Step::Regular { stream, count } = step {
                counts[stream as usize] += count as u32;
            }
        });
        counts
    }

    /// The text of a store's `.complete` marker.
    fn marker(&self, kind: &str) -> String {
        let format = match kind {
            "evstore" => evstore::format::FORMAT_VERSION,
            _ => 0,
        };
        format!(
            "{kind} generator={GENERATOR_VERSION} format={format} events={} streams={} \
             batch={} target_events={} payload={PAYLOAD_LEN}\n",
            self.events, self.streams, self.batch, self.target_events
        )
    }
}

fn store_options() -> Options {
    Options::default().durability(Durability::Buffered)
}

/// Whether the marker at `marker` says the data was made for `spec`.
fn complete(marker: &Path, expected: &str) -> bool {
    fs::read_to_string(marker).is_ok_and(|text| text == expected)
}

/// Prints progress of a long job to stderr about every 5%.
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
            next: total / 20,
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
            self.next = done + self.total / 20;
        }
    }

    fn finish(&self, what: &str) {
        eprintln!(
            "{}: {what} in {:.1} s",
            self.what,
            self.started.elapsed().as_secs_f64()
        );
    }
}

/// The evstore store for `spec` under `root`, generated unless a complete one
/// with the same parameters is there.
fn ensure_store(root: &Path, spec: &Spec) -> PathBuf {
    let dir = root.join(format!("evstore-{}", spec.events));
    let marker = root.join(format!("evstore-{}.complete", spec.events));
    let expected = spec.marker("evstore");
    if complete(&marker, &expected) {
        eprintln!("reusing {}", dir.display());
        return dir;
    }
    let _ = fs::remove_file(&marker);
    if dir.exists() {
        fs::remove_dir_all(&dir).expect("removing an incomplete store");
    }
    let mut progress = Progress::new(format!("generating {}", dir.display()), spec.events);
    let store = Store::open(&dir, store_options()).expect("creating the store");
    let templates: Vec<EventData> = payloads()
        .into_iter()
        .map(|p| EventData::new(EVENT_TYPE, p))
        .collect();
    let names: Vec<String> = (0..spec.regular_streams()).map(stream_name).collect();
    let mut n = 0u64;
    let mut events = Vec::with_capacity(spec.batch as usize);
    spec.plan(|step| {
        let (stream, count) = match step {
            Step::Regular { stream, count } => (names[stream as usize].as_str(), count),
            Step::Target => (TARGET_STREAM, 1),
        };
        events.clear();
        events.extend((n..n + count).map(|i| {
            templates[i as usize % templates.len()]
                .clone()
                .with_id(Uuid::from_u64_pair(ID_SALT, i))
        }));
        store
            .append(stream, ExpectedVersion::Any, &events)
            .expect("appending");
        n += count;
        progress.update(n);
    });
    assert_eq!(n, spec.events);
    store.close().expect("closing the generated store");
    fs::write(&marker, expected).expect("writing the marker");
    progress.finish("generated");
    dir
}

const SQLITE_SCHEMA: &str = "
    CREATE TABLE events (
        position INTEGER PRIMARY KEY,
        stream TEXT NOT NULL,
        version INTEGER NOT NULL,
        event_type TEXT NOT NULL,
        payload BLOB NOT NULL
    );
";
const SQLITE_INDEX: &str = "CREATE UNIQUE INDEX events_stream_version ON events (stream, version);";

/// The SQLite database holding the events of the store made for `spec`,
/// loaded unless a complete one with the same parameters is there. It is
/// filled from the same plan, not from the store (the benchmark checks that
/// both hold the same events before it measures).
fn ensure_sqlite(root: &Path, spec: &Spec) -> PathBuf {
    let path = root.join(format!("sqlite-{}.db", spec.events));
    let marker = root.join(format!("sqlite-{}.complete", spec.events));
    let expected = spec.marker("sqlite");
    if complete(&marker, &expected) {
        eprintln!("reusing {}", path.display());
        return path;
    }
    let _ = fs::remove_file(&marker);
    for suffix in ["", "-wal", "-shm", "-journal"] {
        let mut name = path.clone().into_os_string();
        name.push(suffix);
        let _ = fs::remove_file(name);
    }
    let mut progress = Progress::new(format!("loading {}", path.display()), spec.events);
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
    conn.execute_batch(SQLITE_SCHEMA)
        .expect("creating the table");
    let payloads = payloads();
    let names: Vec<String> = (0..spec.regular_streams()).map(stream_name).collect();
    let mut versions = vec![0u64; names.len()];
    let mut target_version = 0u64;
    let mut position = 0u64;
    conn.execute_batch("BEGIN").expect("begin");
    spec.plan(|step| {
        let (stream, versions_of_step) = match step {
            Step::Regular { stream, count } => {
                let version = versions[stream as usize];
                versions[stream as usize] += count;
                (names[stream as usize].as_str(), version..version + count)
            }
            Step::Target => {
                target_version += 1;
                (TARGET_STREAM, target_version - 1..target_version)
            }
        };
        {
            let mut insert = conn
                .prepare_cached(
                    "INSERT INTO events (position, stream, version, event_type, payload) \
                     VALUES (?1, ?2, ?3, ?4, ?5)",
                )
                .expect("preparing the insert");
            for version in versions_of_step {
                insert
                    .execute(params![
                        position as i64,
                        stream,
                        version as i64,
                        EVENT_TYPE,
                        &payloads[position as usize % payloads.len()][..]
                    ])
                    .expect("insert");
                position += 1;
                if position.is_multiple_of(SQLITE_LOAD_TX) {
                    conn.execute_batch("COMMIT; BEGIN").expect("commit");
                    progress.update(position);
                }
            }
        }
    });
    conn.execute_batch("COMMIT").expect("commit");
    assert_eq!(position, spec.events);
    progress.finish("rows inserted");
    conn.execute_batch(SQLITE_INDEX)
        .expect("creating the index");
    let mode: String = conn
        .query_row("PRAGMA journal_mode = WAL", [], |r| r.get(0))
        .expect("journal_mode");
    assert_eq!(mode.to_lowercase(), "wal", "SQLite refused WAL mode");
    drop(conn);
    fs::write(&marker, expected).expect("writing the marker");
    progress.finish("loaded and indexed");
    path
}

/// Reads the file at `path` from start to end and discards the bytes.
fn read_through(path: &Path) {
    let started = Instant::now();
    let mut file = fs::File::open(path).expect("opening a file to read through");
    let bytes = std::io::copy(&mut file, &mut std::io::sink()).expect("reading through");
    eprintln!(
        "read {} ({bytes} bytes) in {:.1} s",
        path.display(),
        started.elapsed().as_secs_f64()
    );
}

/// Opens the SQLite copy for reading: WAL (already the database's mode),
/// and when `tuned`, a 256 MiB page cache and the file memory-mapped up to
/// the bundled build's 2 GiB limit (otherwise SQLite's defaults).
fn open_sqlite(path: &Path, tuned: bool) -> Connection {
    let conn = Connection::open(path).expect("opening SQLite");
    if tuned {
        conn.pragma_update(None, "cache_size", -(256 << 10))
            .expect("cache_size");
        let _: i64 = conn
            .query_row("PRAGMA mmap_size = 2147418112", [], |r| r.get(0))
            .expect("mmap_size");
    }
    let mode: String = conn
        .query_row("PRAGMA journal_mode", [], |r| r.get(0))
        .expect("journal_mode");
    assert_eq!(mode.to_lowercase(), "wal");
    conn
}

// ---------------------------------------------------------------- reads

/// An event read from SQLite, owned, as `RecordedEvent` is.
struct SqlEvent {
    position: i64,
    version: i64,
    event_type: String,
    payload: Vec<u8>,
}

impl SqlEvent {
    fn from_row(row: &rusqlite::Row<'_>) -> rusqlite::Result<Self> {
        Ok(SqlEvent {
            position: row.get(0)?,
            version: row.get(1)?,
            event_type: row.get(2)?,
            payload: row.get(3)?,
        })
    }
}

const SQL_READ_STREAM: &str = "SELECT position, version, event_type, payload FROM events \
     WHERE stream = ?1 AND version >= ?2 ORDER BY version LIMIT ?3";
const SQL_LOOKUP: &str = "SELECT position, version, event_type, payload FROM events \
     WHERE stream = ?1 AND version = ?2";

fn sqlite_read_stream(
    stmt: &mut rusqlite::CachedStatement<'_>,
    stream: &str,
    from: u64,
    max: u64,
) -> Vec<SqlEvent> {
    stmt.query_map(params![stream, from as i64, max as i64], SqlEvent::from_row)
        .expect("query")
        .collect::<rusqlite::Result<_>>()
        .expect("row")
}

/// Everything `read_stream` and `lookup` need.
struct ReadFixture {
    store: Store,
    conn: Connection,
    /// The same database with SQLite's default settings.
    conn_defaults: Connection,
    /// Regular stream names, by index.
    names: Vec<String>,
    /// The (stream index, version) pairs `lookup` walks.
    pairs: Vec<(u32, u32)>,
}

impl ReadFixture {
    fn new(store_dir: &Path, sqlite: &Path, spec: &Spec) -> Self {
        // Opening the store reads only its catalogue and headers, and the
        // writer that made it handed its pages back to the kernel: read
        // every file of both once, so that both start with all their data
        // in the page cache.
        read_through(sqlite);
        let mut store_files: Vec<_> = fs::read_dir(store_dir.join("segments"))
            .expect("listing the segments")
            .map(|entry| entry.expect("a directory entry").path())
            .filter(|path| path.is_file())
            .collect();
        store_files.sort();
        let started = Instant::now();
        for path in &store_files {
            let mut file = fs::File::open(path).expect("opening a segment to read through");
            std::io::copy(&mut file, &mut std::io::sink()).expect("reading through");
        }
        eprintln!(
            "read the {} files of {} in {:.1} s",
            store_files.len(),
            store_dir.display(),
            started.elapsed().as_secs_f64()
        );
        let store = Store::open(store_dir, store_options()).expect("opening the store");
        let conn = open_sqlite(sqlite, true);
        let conn_defaults = open_sqlite(sqlite, false);
        let counts = spec.stream_counts();
        let mut rng = Rng(LOOKUP_SEED);
        let pairs = (0..LOOKUP_PAIRS)
            .map(|_| {
                let stream = rng.below(counts.len() as u64) as usize;
                let version = rng.below(u64::from(counts[stream]));
                (stream as u32, version as u32)
            })
            .collect();
        let fixture = ReadFixture {
            store,
            conn,
            conn_defaults,
            names: (0..spec.regular_streams()).map(stream_name).collect(),
            pairs,
        };
        fixture.check(spec);
        fixture
    }

    /// Outside the measurement: both systems hold the same events, and the
    /// target stream is as documented.
    fn check(&self, spec: &Spec) {
        let events = self
            .store
            .read_stream(TARGET_STREAM, 0, Direction::Forward, TARGET_EVENTS as usize)
            .expect("read_stream");
        assert_eq!(events.len() as u64, TARGET_EVENTS);
        assert!(events
            .iter()
            .enumerate()
            .all(|(i, e)| e.version == i as u64));
        let (first, last) = (events[0].position, events[events.len() - 1].position);
        assert!(
            first < spec.events / 100 && last >= spec.events - spec.events / 100,
            "{TARGET_STREAM} spans positions {first}..={last} only"
        );
        let mut stmt = self.conn.prepare_cached(SQL_READ_STREAM).expect("prepare");
        let rows = sqlite_read_stream(&mut stmt, TARGET_STREAM, 0, TARGET_EVENTS);
        assert_eq!(rows.len(), events.len());
        for (e, r) in events.iter().zip(&rows) {
            assert_eq!(
                (
                    e.position as i64,
                    e.version as i64,
                    &*e.event_type,
                    &e.payload[..]
                ),
                (r.position, r.version, r.event_type.as_str(), &r.payload[..])
            );
        }
        let mut stmt = self.conn.prepare_cached(SQL_LOOKUP).expect("prepare");
        for &(s, v) in self.pairs.iter().step_by(LOOKUP_PAIRS / 1000) {
            let name = &self.names[s as usize];
            let e = &self
                .store
                .read_stream(name, u64::from(v), Direction::Forward, 1)
                .expect("read_stream")[0];
            let r = stmt
                .query_row(params![name, i64::from(v)], SqlEvent::from_row)
                .expect("lookup");
            assert_eq!(
                (
                    e.position as i64,
                    &*e.stream,
                    e.version as i64,
                    &e.payload[..]
                ),
                (r.position, name.as_str(), r.version, &r.payload[..])
            );
        }
    }
}

fn bench_read_stream(c: &mut Criterion, cli: &Cli, f: &ReadFixture) {
    let mut g = c.benchmark_group("read_stream");
    g.throughput(Throughput::Elements(TARGET_EVENTS));
    if cli.selects("read_stream/evstore") {
        g.bench_function("evstore", |b| {
            b.iter(|| {
                let events = f
                    .store
                    .read_stream(
                        black_box(TARGET_STREAM),
                        0,
                        Direction::Forward,
                        TARGET_EVENTS as usize,
                    )
                    .expect("read_stream");
                let sum: u64 = events.iter().map(|e| touch(&e.payload)).sum();
                (events, sum)
            })
        });
    }
    if cli.selects("read_stream/evstore_visit") {
        // The same events lent to a visitor: nothing built per event.
        g.bench_function("evstore_visit", |b| {
            b.iter(|| {
                let mut sum = 0u64;
                let lent = f
                    .store
                    .visit_stream(
                        black_box(TARGET_STREAM),
                        0,
                        Direction::Forward,
                        TARGET_EVENTS as usize,
                        |e| sum += touch(e.payload),
                    )
                    .expect("visit_stream");
                (lent, sum)
            })
        });
    }
    for (id, conn) in [("sqlite", &f.conn), ("sqlite_defaults", &f.conn_defaults)] {
        if !cli.selects(&format!("read_stream/{id}")) {
            continue;
        }
        g.bench_function(id, |b| {
            let mut stmt = conn.prepare_cached(SQL_READ_STREAM).expect("prepare");
            b.iter(|| {
                let rows =
                    sqlite_read_stream(&mut stmt, black_box(TARGET_STREAM), 0, TARGET_EVENTS);
                let sum: u64 = rows.iter().map(|r| touch(&r.payload)).sum();
                (rows, sum)
            })
        });
    }
    g.finish();
}

fn bench_lookup(c: &mut Criterion, cli: &Cli, f: &ReadFixture) {
    let mut g = c.benchmark_group("lookup");
    g.throughput(Throughput::Elements(LOOKUPS_PER_ITER));
    // SQLite takes 15 to 60 ms an iteration here: flat sampling gives it
    // 100 samples of one or a few iterations.
    g.sampling_mode(SamplingMode::Flat);
    g.measurement_time(Duration::from_secs(8));
    if cli.selects("lookup/evstore") {
        let mut next = 0usize;
        g.bench_function("evstore", |b| {
            b.iter(|| {
                let mut sum = 0u64;
                for _ in 0..LOOKUPS_PER_ITER {
                    let (s, v) = f.pairs[next];
                    next = (next + 1) % f.pairs.len();
                    let events = f
                        .store
                        .read_stream(&f.names[s as usize], u64::from(v), Direction::Forward, 1)
                        .expect("read_stream");
                    sum += touch(&events[0].payload);
                }
                sum
            })
        });
    }
    for (id, conn) in [("sqlite", &f.conn), ("sqlite_defaults", &f.conn_defaults)] {
        if !cli.selects(&format!("lookup/{id}")) {
            continue;
        }
        let mut next = 0usize;
        g.bench_function(id, |b| {
            let mut stmt = conn.prepare_cached(SQL_LOOKUP).expect("prepare");
            b.iter(|| {
                let mut sum = 0u64;
                for _ in 0..LOOKUPS_PER_ITER {
                    let (s, v) = f.pairs[next];
                    next = (next + 1) % f.pairs.len();
                    let row = stmt
                        .query_row(
                            params![&f.names[s as usize], i64::from(v)],
                            SqlEvent::from_row,
                        )
                        .expect("lookup");
                    sum += touch(&row.payload);
                }
                sum
            })
        });
    }
    g.finish();
}

fn bench_open(c: &mut Criterion, cli: &Cli, stores: &[(Spec, PathBuf)]) {
    let mut g = c.benchmark_group("open");
    g.sampling_mode(SamplingMode::Flat);
    g.sample_size(10);
    for (spec, dir) in stores {
        let id = format!("events={}", spec.events);
        if !cli.selects(&format!("open/{id}")) {
            continue;
        }
        // Short targets: a slow open (the 10M store took 8 to 10 s) still
        // gets its minimum of 10 samples of one open each, with a warning;
        // a fast one does not run for long.
        g.measurement_time(Duration::from_secs(if spec.events > 2_000_000 {
            30
        } else {
            10
        }));
        g.throughput(Throughput::Elements(spec.events));
        g.bench_function(&id, |b| {
            b.iter(|| {
                let store = Store::open(dir, store_options()).expect("open");
                let stats = store.recovery_stats();
                store.close().expect("close");
                stats
            })
        });
    }
    g.finish();
}

// ---------------------------------------------------------------- driver

fn read_benches(c: &mut Criterion) {
    let cli = Cli::parse();
    let (small, large) = if cli.test {
        (
            Spec {
                events: 10_000,
                streams: 1_000,
                batch: 1,
                target_events: 0,
            },
            Spec {
                events: 100_000,
                streams: 1_000,
                batch: 10,
                target_events: TARGET_EVENTS,
            },
        )
    } else {
        (
            Spec {
                events: 1_000_000,
                streams: 100_000,
                batch: 1,
                target_events: 0,
            },
            Spec {
                events: 10_000_000,
                streams: 100_000,
                batch: 10,
                target_events: TARGET_EVENTS,
            },
        )
    };
    // Test runs use throwaway data; listing needs none.
    let _temp: Option<TempDir>;
    let root = if cli.test {
        let temp = tempfile::tempdir_in(bench_root()).expect("creating a temporary directory");
        let root = temp.path().to_path_buf();
        _temp = Some(temp);
        root
    } else {
        _temp = None;
        let root = bench_root().join("read");
        fs::create_dir_all(&root).expect("creating the read benchmark directory");
        root
    };
    let ids =
        |group: &str, names: &[&str]| names.iter().any(|n| cli.selects(&format!("{group}/{n}")));
    let need_small = !cli.list && cli.selects(&format!("open/events={}", small.events));
    let need_reads = !cli.list
        && (ids(
            "read_stream",
            &["evstore", "evstore_visit", "sqlite", "sqlite_defaults"],
        ) || ids("lookup", &["evstore", "sqlite", "sqlite_defaults"]));
    let need_large =
        !cli.list && (need_reads || cli.selects(&format!("open/events={}", large.events)));

    let started = Instant::now();
    let small_dir = need_small.then(|| ensure_store(&root, &small));
    let large_dir = need_large.then(|| ensure_store(&root, &large));
    let sqlite = match (&large_dir, need_reads) {
        (Some(_), true) => Some(ensure_sqlite(&root, &large)),
        _ => None,
    };
    if need_small || need_large {
        eprintln!("data ready after {:.1} s", started.elapsed().as_secs_f64());
    }

    let mut stores = Vec::new();
    stores.extend(small_dir.map(|d| (small, d)));
    stores.extend(large_dir.clone().map(|d| (large, d)));
    if cli.list {
        // Nothing runs: register the ids with placeholder paths.
        stores = vec![(small, root.join("none")), (large, root.join("none"))];
    }
    bench_open(c, &cli, &stores);

    if let (Some(dir), Some(sqlite)) = (&large_dir, &sqlite) {
        let fixture = ReadFixture::new(dir, sqlite, &large);
        bench_read_stream(c, &cli, &fixture);
        bench_lookup(c, &cli, &fixture);
        fixture.store.close().expect("closing the store");
    } else if cli.list {
        for (group, names) in [
            (
                "read_stream",
                &["evstore", "evstore_visit", "sqlite", "sqlite_defaults"][..],
            ),
            ("lookup", &["evstore", "sqlite", "sqlite_defaults"][..]),
        ] {
            let mut g = c.benchmark_group(group);
            for name in names {
                if cli.selects(&format!("{group}/{name}")) {
                    g.bench_function(*name, |b| b.iter(|| unreachable!("listing only")));
                }
            }
            g.finish();
        }
    }
}

criterion_group! {
    name = benches;
    config = Criterion::default()
        .warm_up_time(Duration::from_secs(2))
        .measurement_time(Duration::from_secs(5));
    targets = read_benches
}
criterion_main!(benches);
