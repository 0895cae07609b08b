//! Real crashes: a child process appends durably from several threads and is
//! killed with SIGKILL at a random moment, again and again, in the same
//! store directory; after every kill the parent reopens the store and checks
//! DESIGN §7 against what the child printed as acknowledged. One append in
//! three is a commit to two streams whose events carry tags, with a
//! condition on a tag only its first event carries.
//!
//! 1. every acknowledged `Durability::Sync` append and commit is present at
//!    its acknowledged position, each stream's part at its acknowledged
//!    version, byte-identical, tags included;
//! 2. nothing that no child could have appended, and no half batch: a
//!    commit is there with every event of both streams, or not at all;
//! 3. positions and stream versions dense; each appender thread's appends
//!    recovered as a prefix of what it sent, in order;
//! 4. meanwhile another thread snapshots the streams: every stream's newest
//!    acknowledged snapshot (or a newer one) loads after the kill, with
//!    exactly the bytes saved for its version, and none is found damaged;
//! 5. reads by tag return exactly the events a scan of the log finds;
//! 6. meanwhile a third thread appends to scratch streams and deletes or
//!    truncates each one away, and a fourth scavenges again and again: an
//!    acknowledged scratch append not yet acknowledged as gone is whole;
//!    nothing of a stream acknowledged as deleted or truncated ever
//!    reappears; the main streams' checks above hold through every
//!    scavenge a kill interrupts. Positions stay increasing, with gaps only
//!    where no read returns the events any more.
//!
//! The child is this test binary re-executed with only
//! [`child_appender`] selected; it learns its store directory and seed from
//! environment variables and runs until killed (or until a safety deadline).
//! Every event id encodes who wrote it (run, thread, sequence number, batch
//! size, index), and every byte of the event is a function of that id, so the
//! parent can tell an event some child could have written from an invented
//! one without the child having acknowledged it.
//!
//! `EVSTORE_KILL9_ITERATIONS=N` raises the number of kills (at least 50).

use evstore::{
    AppendCondition, Commit, DeleteMode, Direction, Durability, EventData, ExpectedVersion,
    Options, Query, RecordedEvent, Store, Uuid,
};
use std::collections::HashMap;
use std::io::{BufRead, BufReader, Read, Write};
use std::path::{Path, PathBuf};
use std::process::{Child, ChildStdout, Command, Stdio};
use std::sync::mpsc::{self, Receiver, RecvTimeoutError};
use std::thread::{self, JoinHandle};
use std::time::{Duration, Instant};

/// Names the child's store directory; the child does nothing without it.
const DIR_VAR: &str = "EVSTORE_KILL9_DIR";
/// `run:seed` of the child.
const SEED_VAR: &str = "EVSTORE_KILL9_SEED";
/// Raises the number of kill iterations.
const ITERATIONS_VAR: &str = "EVSTORE_KILL9_ITERATIONS";

const MIN_ITERATIONS: u64 = 50;
const THREADS: u32 = 4;
const STREAMS: u64 = 8;
const SEGMENT_SIZE: u64 = 64 * 1024;
const BASE_SEED: u64 = 0x6b69_6c6c_3921_5eed;
/// A child that is never killed stops by itself after this long, so that it
/// can never outlive a test that lost track of it.
const CHILD_DEADLINE: Duration = Duration::from_secs(60);
/// How long the parent waits for a child to open the store.
const READY_TIMEOUT: Duration = Duration::from_secs(60);
/// Every line the child means for the parent starts with this marker (the
/// test harness may print its own text on the same line before it).
const MARK: &str = "K9|";
/// Top 32 bits of every event id the children write.
const ID_MAGIC: u128 = 0x4b39_c4a5;

// ---------------------------------------------------------------- content

fn splitmix(mut x: u64) -> u64 {
    x = x.wrapping_add(0x9e37_79b9_7f4a_7c15);
    x = (x ^ (x >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
    x = (x ^ (x >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
    x ^ (x >> 31)
}

/// A tiny deterministic RNG (xorshift64*), seeded from a fixed seed.
struct XorShift(u64);

impl XorShift {
    fn new(seed: u64) -> Self {
        XorShift(splitmix(seed) | 1)
    }

    fn next(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_f491_4f6c_dd1d)
    }

    /// Uniform in `lo..=hi`.
    fn range(&mut self, lo: u64, hi: u64) -> u64 {
        lo + self.next() % (hi - lo + 1)
    }
}

/// The seed of the child of iteration `run`.
fn run_seed(run: u32) -> u64 {
    splitmix(BASE_SEED ^ u64::from(run).wrapping_mul(0x2545_f491_4f6c_dd1d))
}

/// Who wrote an append: the child of iteration `run`, its thread `thread`,
/// that thread's `seq`-th append.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
struct AppendKey {
    run: u32,
    thread: u32,
    seq: u32,
}

/// Everything an append or commit consists of, a pure function of its key
/// and the run's seed.
struct AppendPlan {
    /// Each stream written with its events, in order: one for an append,
    /// two for a commit.
    parts: Vec<(String, Vec<EventData>)>,
    /// For a commit: the tag only its first event carries, whose absence
    /// from the log its condition requires (so it always holds).
    claim: Option<String>,
}

impl AppendPlan {
    fn count(&self) -> usize {
        self.parts.iter().map(|(_, events)| events.len()).sum()
    }
}

fn stream_name(index: u64) -> String {
    format!("kill9-stream-{index}")
}

/// Streams appended to and then deleted or truncated away.
const SCRATCH_PREFIX: &str = "kill9-scratch-";

/// The events of scratch stream `k` of a run.
fn scratch_events(k: u32) -> Vec<EventData> {
    (0..1 + k % 6)
        .map(|i| {
            EventData::new(
                "Scratch",
                vec![(k % 251) as u8; 40 + (i as usize * 97) % 300],
            )
        })
        .collect()
}

fn event_id(key: AppendKey, count: usize, index: usize) -> Uuid {
    Uuid::from_u128(
        (ID_MAGIC << 96)
            | (u128::from(key.run & 0xffff) << 80)
            | (u128::from(key.thread & 0xff) << 72)
            | ((count as u128 & 0xff) << 64)
            | (u128::from(key.seq) << 32)
            | (index as u128 & 0xffff_ffff),
    )
}

/// `(key, count, index)` of an id some child wrote, or `None` for an id no
/// child could have written.
fn decode_id(id: Uuid) -> Option<(AppendKey, usize, usize)> {
    let v = id.as_u128();
    if v >> 96 != ID_MAGIC {
        return None;
    }
    let key = AppendKey {
        run: ((v >> 80) & 0xffff) as u32,
        thread: ((v >> 72) & 0xff) as u32,
        seq: ((v >> 32) & 0xffff_ffff) as u32,
    };
    Some((key, ((v >> 64) & 0xff) as usize, (v & 0xffff_ffff) as usize))
}

fn random_bytes(rng: &mut XorShift, len: usize) -> Vec<u8> {
    let mut bytes = Vec::with_capacity(len + 8);
    while bytes.len() < len {
        bytes.extend_from_slice(&rng.next().to_le_bytes());
    }
    bytes.truncate(len);
    bytes
}

/// The tag every commit's events carry.
const COMMIT_TAG: &str = "commit";
/// The shared tags events carry, besides [`COMMIT_TAG`] and a claim.
const ACCOUNT_TAGS: u64 = 4;

fn account_tag(i: u64) -> String {
    format!("acct:{}", i % ACCOUNT_TAGS)
}

/// One append in three is a commit to two streams whose events all carry
/// tags; some events of plain appends carry an account tag.
fn plan(key: AppendKey) -> AppendPlan {
    let h = splitmix(
        run_seed(key.run) ^ (u64::from(key.thread) << 40) ^ u64::from(key.seq).wrapping_mul(31),
    );
    let first = h % STREAMS;
    let is_commit = (h >> 20).is_multiple_of(3);
    let (streams, counts) = if is_commit {
        let second = (first + 1 + (h >> 24) % (STREAMS - 1)) % STREAMS;
        (
            vec![first, second],
            vec![1 + ((h >> 8) % 3) as usize, 1 + ((h >> 12) % 2) as usize],
        )
    } else {
        (vec![first], vec![1 + ((h >> 8) % 4) as usize])
    };
    let count: usize = counts.iter().sum();
    let claim = is_commit.then(|| format!("claim:{}-{}-{}", key.run, key.thread, key.seq));
    let mut i = 0usize;
    let parts = streams
        .into_iter()
        .zip(counts)
        .map(|(stream, n)| {
            let events = (0..n)
                .map(|_| {
                    let mut rng = XorShift::new(h ^ (i as u64).wrapping_mul(0x5851_f42d_4c95_7f2d));
                    let payload_len = match rng.next() % 8 {
                        0 => 0,
                        1 => rng.range(1, 16),
                        _ => rng.range(17, 400),
                    } as usize;
                    let payload = random_bytes(&mut rng, payload_len);
                    let metadata_len = match rng.next() % 3 {
                        0 => 0,
                        _ => rng.range(1, 64),
                    } as usize;
                    let metadata = random_bytes(&mut rng, metadata_len);
                    let event_type =
                        ["Opened", "Deposited", "Withdrawn", "Closed-ü"][(h as usize + i) % 4];
                    // Given unsorted: the store keeps them sorted.
                    let mut tags = Vec::new();
                    if is_commit {
                        tags.push(COMMIT_TAG.to_string());
                    }
                    if is_commit || rng.next().is_multiple_of(4) {
                        tags.push(account_tag(rng.next()));
                    }
                    if i == 0 {
                        tags.extend(claim.clone());
                    }
                    let event = EventData::new(event_type, payload)
                        .with_metadata(metadata)
                        .with_tags(tags)
                        .with_id(event_id(key, count, i));
                    i += 1;
                    event
                })
                .collect();
            (stream_name(stream), events)
        })
        .collect();
    AppendPlan { parts, claim }
}

/// The snapshot the child saves of `stream` at `version`: a function of
/// both, so the parent can check any snapshot it loads.
fn snapshot_data(stream: &str, version: u64) -> Vec<u8> {
    let seed = stream
        .bytes()
        .fold(version, |h, b| splitmix(h ^ u64::from(b)));
    let mut rng = XorShift::new(seed);
    let len = rng.range(0, 300) as usize;
    let mut data = format!("{stream}@{version}:").into_bytes();
    data.extend(random_bytes(&mut rng, len));
    data
}

// ---------------------------------------------------------------- child

/// Entry point of the child process. Appends until killed.
#[test]
#[ignore = "entry point of the child process that kill9 tests spawn"]
fn child_appender() {
    let Ok(dir) = std::env::var(DIR_VAR) else {
        return;
    };
    let spec = std::env::var(SEED_VAR).expect("the parent passes a seed");
    let (run, seed) = spec.split_once(':').expect("run:seed");
    let run: u32 = run.parse().expect("run");
    let seed: u64 = seed.parse().expect("seed");
    assert_eq!(seed, run_seed(run), "parent and child agree on the seed");

    let say = |line: &str| {
        let mut out = std::io::stdout().lock();
        let ok = out
            .write_all(format!("\n{MARK}{line}\n").as_bytes())
            .and_then(|()| out.flush());
        if ok.is_err() {
            // The parent is gone: nobody will ever kill us.
            std::process::exit(3);
        }
    };

    let store = match Store::open(&dir, Options::default().segment_size(SEGMENT_SIZE)) {
        Ok(store) => store,
        Err(e) => {
            say(&format!("ERR open: {e}"));
            std::process::exit(2);
        }
    };
    say("READY");
    let deadline = Instant::now() + CHILD_DEADLINE;
    let workers: Vec<_> = (0..THREADS)
        .map(|thread| {
            let store = store.clone();
            thread::spawn(move || {
                let mut seq = 0u32;
                while Instant::now() < deadline {
                    let key = AppendKey { run, thread, seq };
                    let plan = plan(key);
                    let written = match &plan.parts[..] {
                        [(stream, events)] => store
                            .append_with_durability(
                                stream,
                                ExpectedVersion::Any,
                                events,
                                Durability::Sync,
                            )
                            .map(|r| (r.first_position, vec![r])),
                        parts => {
                            let mut commit = Commit::new().durability(Durability::Sync);
                            for (stream, events) in parts {
                                commit = commit.append(
                                    stream.as_str(),
                                    ExpectedVersion::Any,
                                    events.iter().cloned(),
                                );
                            }
                            if let Some(claim) = &plan.claim {
                                commit = commit.condition(AppendCondition::new(
                                    Query::tagged([claim.as_str()]),
                                    None,
                                ));
                            }
                            store.commit(&commit).map(|r| (r.first_position, r.streams))
                        }
                    };
                    match written {
                        Ok((first_position, streams)) => {
                            let parts: Vec<String> = plan
                                .parts
                                .iter()
                                .zip(&streams)
                                .map(|((stream, events), r)| {
                                    format!("{stream}:{}:{}", events.len(), r.first_version)
                                })
                                .collect();
                            say(&format!(
                                "ACK {run} {thread} {seq} {first_position} {}",
                                parts.join(" ")
                            ))
                        }
                        Err(e) => {
                            say(&format!("ERR append {key:?}: {e}"));
                            std::process::exit(2);
                        }
                    }
                    seq += 1;
                }
            })
        })
        .collect();
    let snapshotter = {
        let store = store.clone();
        thread::spawn(move || {
            let mut saved: HashMap<String, u64> = HashMap::new();
            for i in 0u64.. {
                if Instant::now() >= deadline {
                    break;
                }
                let stream = stream_name(i % STREAMS);
                let version = match store.stream_version(&stream) {
                    Ok(Some(version)) if saved.get(&stream) != Some(&version) => version,
                    Ok(_) => {
                        thread::yield_now();
                        continue;
                    }
                    Err(e) => {
                        say(&format!("ERR stream_version: {e}"));
                        std::process::exit(2);
                    }
                };
                match store.save_snapshot(&stream, version, snapshot_data(&stream, version)) {
                    Ok(()) => say(&format!("SNAP {stream} {version}")),
                    Err(e) => {
                        say(&format!("ERR save_snapshot {stream} {version}: {e}"));
                        std::process::exit(2);
                    }
                }
                saved.insert(stream, version);
            }
        })
    };
    let lifecycle = {
        let store = store.clone();
        thread::spawn(move || {
            for k in 0u32.. {
                if Instant::now() >= deadline {
                    break;
                }
                let stream = format!("{SCRATCH_PREFIX}{run}-{k}");
                let events = scratch_events(k);
                let written = store.append_with_durability(
                    &stream,
                    ExpectedVersion::NoStream,
                    &events,
                    Durability::Sync,
                );
                match written {
                    Ok(r) => say(&format!(
                        "SCRATCH {stream} {} {}",
                        r.first_position,
                        events.len()
                    )),
                    Err(e) => {
                        say(&format!("ERR scratch append {stream}: {e}"));
                        std::process::exit(2);
                    }
                }
                let gone = if k % 2 == 0 {
                    store
                        .delete_stream(&stream, ExpectedVersion::Any, DeleteMode::Hard)
                        .map(drop)
                } else {
                    store
                        .truncate_stream(&stream, events.len() as u64)
                        .map(drop)
                };
                match gone {
                    Ok(()) => say(&format!("GONE {stream}")),
                    Err(e) => {
                        say(&format!("ERR delete {stream}: {e}"));
                        std::process::exit(2);
                    }
                }
            }
        })
    };
    let scavenger = {
        let store = store.clone();
        thread::spawn(move || {
            while Instant::now() < deadline {
                match store.scavenge() {
                    Ok(report) if report.segments_rewritten > 0 => {
                        say(&format!("SCAVENGED {}", report.segments_rewritten));
                    }
                    Ok(_) => {}
                    Err(e) => {
                        say(&format!("ERR scavenge: {e}"));
                        std::process::exit(2);
                    }
                }
                // Not a timing assertion: leaves the appenders the disk.
                thread::sleep(Duration::from_millis(2));
            }
        })
    };
    for worker in workers {
        worker.join().expect("appender thread");
    }
    snapshotter.join().expect("snapshot thread");
    lifecycle.join().expect("lifecycle thread");
    scavenger.join().expect("scavenger thread");
    // Reached only if nobody killed us in time.
    std::process::exit(4);
}

// ---------------------------------------------------------------- parent

/// An append or commit the child acknowledged.
#[derive(Debug, Clone)]
struct Ack {
    key: AppendKey,
    first_position: u64,
    /// Each stream written: name, events, version of its first event.
    parts: Vec<(String, usize, u64)>,
}

fn parse_ack(line: &str) -> Ack {
    let fields: Vec<&str> = line.split(' ').collect();
    let [_, run, thread, seq, first_position, ref parts @ ..] = fields[..] else {
        panic!("malformed acknowledgement line {line:?}");
    };
    let num = |s: &str| -> u64 {
        s.parse()
            .unwrap_or_else(|_| panic!("bad number in {line:?}"))
    };
    let parts: Vec<(String, usize, u64)> = parts
        .iter()
        .map(|part| match part.split(':').collect::<Vec<_>>()[..] {
            [stream, count, first_version] => {
                (stream.to_string(), num(count) as usize, num(first_version))
            }
            _ => panic!("malformed part {part:?} in {line:?}"),
        })
        .collect();
    assert!(!parts.is_empty(), "no stream in {line:?}");
    Ack {
        key: AppendKey {
            run: num(run) as u32,
            thread: num(thread) as u32,
            seq: num(seq) as u32,
        },
        first_position: num(first_position),
        parts,
    }
}

/// Kills and reaps the child however the parent leaves its scope, panics
/// included.
struct ChildGuard(Child);

impl ChildGuard {
    fn kill_and_wait(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

impl Drop for ChildGuard {
    fn drop(&mut self) {
        self.kill_and_wait();
    }
}

/// Sends every complete line (ending in a newline) the child prints; a
/// partial last line, cut by the kill, is dropped.
fn read_lines(stdout: ChildStdout) -> (Receiver<String>, JoinHandle<()>) {
    let (tx, rx) = mpsc::channel();
    let handle = thread::spawn(move || {
        let mut reader = BufReader::new(stdout);
        let mut buf = Vec::new();
        loop {
            buf.clear();
            match reader.read_until(b'\n', &mut buf) {
                Ok(0) | Err(_) => return,
                Ok(_) if buf.last() != Some(&b'\n') => return,
                Ok(_) => {
                    let line = String::from_utf8_lossy(&buf);
                    if let Some((_, message)) = line.trim_end().split_once(MARK) {
                        if tx.send(message.to_string()).is_err() {
                            return;
                        }
                    }
                }
            }
        }
    });
    (rx, handle)
}

/// What one kill looked like.
#[derive(Debug, Default)]
struct Kill {
    ready: bool,
    acks: Vec<Ack>,
    /// Snapshots acknowledged: stream and version.
    snapshots: Vec<(String, u64)>,
    /// Scratch appends acknowledged: stream, first position, events.
    scratch: Vec<(String, u64, u64)>,
    /// Scratch streams acknowledged as deleted or truncated away.
    gone: Vec<String>,
    /// Segments a scavenge rewrote.
    scavenged: u64,
}

/// Spawns a child on `dir`, kills it `delay` after it opened the store (or
/// after the spawn, when `during_open`), and returns what it acknowledged.
fn run_child(dir: &Path, run: u32, delay: Duration, during_open: bool) -> Kill {
    let mut child = ChildGuard(
        Command::new(std::env::current_exe().expect("test binary"))
            .args([
                "child_appender",
                "--exact",
                "--ignored",
                "--nocapture",
                "--test-threads=1",
            ])
            .env(DIR_VAR, dir)
            .env(SEED_VAR, format!("{run}:{}", run_seed(run)))
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .expect("spawn the child"),
    );
    let stdout = child.0.stdout.take().expect("piped stdout");
    let mut stderr = child.0.stderr.take().expect("piped stderr");
    let stderr_reader = thread::spawn(move || {
        let mut text = String::new();
        let _ = stderr.read_to_string(&mut text);
        text
    });
    let (lines, reader) = read_lines(stdout);
    let mut seen = Vec::new();
    if !during_open {
        let until = Instant::now() + READY_TIMEOUT;
        loop {
            match lines.recv_timeout(until.saturating_duration_since(Instant::now())) {
                Ok(line) => {
                    let ready = line == "READY";
                    seen.push(line);
                    if ready {
                        break;
                    }
                }
                Err(RecvTimeoutError::Timeout) => {
                    panic!("run {run}: the child did not open the store in {READY_TIMEOUT:?}")
                }
                Err(RecvTimeoutError::Disconnected) => break,
            }
        }
    }
    // Not an assertion: only picks the moment of the kill.
    thread::sleep(delay);
    let exited_early = child.0.try_wait().expect("poll the child");
    child.kill_and_wait();
    reader.join().expect("stdout reader");
    let stderr = stderr_reader.join().expect("stderr reader");
    seen.extend(lines.try_iter());
    if let Some(status) = exited_early {
        panic!("run {run}: the child exited by itself ({status}) before the kill\nstdout: {seen:?}\nstderr: {stderr}");
    }
    let mut kill = Kill::default();
    for line in &seen {
        if line == "READY" {
            kill.ready = true;
        } else if line.starts_with("ACK ") {
            kill.acks.push(parse_ack(line));
        } else if let Some(rest) = line.strip_prefix("SNAP ") {
            let (stream, version) = rest
                .rsplit_once(' ')
                .and_then(|(s, v)| Some((s.to_string(), v.parse().ok()?)))
                .unwrap_or_else(|| panic!("malformed snapshot line {line:?}"));
            kill.snapshots.push((stream, version));
        } else if let Some(rest) = line.strip_prefix("SCRATCH ") {
            let fields: Vec<&str> = rest.split(' ').collect();
            let parsed = match fields[..] {
                [stream, first, count] => first
                    .parse()
                    .ok()
                    .zip(count.parse().ok())
                    .map(|(f, c)| (stream.to_string(), f, c)),
                _ => None,
            };
            kill.scratch
                .push(parsed.unwrap_or_else(|| panic!("malformed scratch line {line:?}")));
        } else if let Some(n) = line.strip_prefix("SCAVENGED ") {
            kill.scavenged += n
                .parse::<u64>()
                .unwrap_or_else(|_| panic!("malformed scavenge line {line:?}"));
        } else if let Some(stream) = line.strip_prefix("GONE ") {
            kill.gone.push(stream.to_string());
        } else if line.starts_with("ERR") {
            panic!("run {run}: the child failed: {line}\nstderr: {stderr}");
        } else {
            panic!("run {run}: unexpected line {line:?}");
        }
    }
    kill
}

fn segment_files(dir: &Path) -> (usize, bool) {
    let Ok(entries) = std::fs::read_dir(dir.join(evstore::SEGMENTS_DIR)) else {
        return (0, false);
    };
    let names: Vec<String> = entries
        .filter_map(|e| e.ok())
        .map(|e| e.file_name().to_string_lossy().into_owned())
        .collect();
    let segments = names.iter().filter(|n| n.ends_with(".log")).count();
    let temp = names.iter().any(|n| n.ends_with(".tmp"));
    (segments, temp)
}

/// Checks the reopened store against every acknowledgement so far and
/// against what children of runs `0..runs` could have written. Returns the
/// number of events in the store. `plans` caches what each append consists
/// of, so later iterations compare bytes instead of regenerating them.
fn verify(
    store: &Store,
    runs: u32,
    acks: &[Ack],
    plans: &mut HashMap<AppendKey, AppendPlan>,
    scratch: &Scratch,
) -> u64 {
    let log = store
        .read_all(0, Direction::Forward, usize::MAX)
        .expect("read_all after recovery");
    assert_eq!(
        store.last_position(),
        log.last().map(|e| e.position),
        "last_position disagrees with read_all"
    );
    assert!(
        log.windows(2).all(|w| w[0].position < w[1].position),
        "positions increase"
    );
    let (events, others): (Vec<RecordedEvent>, Vec<RecordedEvent>) = log
        .into_iter()
        .partition(|e| e.stream.starts_with("kill9-stream-"));
    verify_scratch(store, &others, scratch);
    let index_of: HashMap<u64, usize> = events
        .iter()
        .enumerate()
        .map(|(i, e)| (e.position, i))
        .collect();
    let mut versions: HashMap<String, u64> = HashMap::new();
    let mut placed: HashMap<AppendKey, u64> = HashMap::new();
    let mut next_seq: HashMap<(u32, u32), u32> = HashMap::new();
    let mut i = 0usize;
    while i < events.len() {
        let first = &events[i];
        let Some((key, count, index)) = decode_id(first.id) else {
            panic!("invented event at position {}: {first:?}", first.position);
        };
        assert!(
            key.run < runs && key.thread < THREADS,
            "event of a child that never ran at position {i}: {key:?}"
        );
        assert_eq!(
            index, 0,
            "half batch: append {key:?} starts at position {i} with its event {index}"
        );
        let plan = plans.entry(key).or_insert_with(|| plan(key));
        assert_eq!(
            count,
            plan.count(),
            "id at position {i} claims a batch of {count}"
        );
        // Every event of the append or commit, in order, each in its
        // stream at the next version: a commit cut anywhere, or missing one
        // stream's part, fails here.
        let mut j = 0;
        for (stream, sent_events) in &plan.parts {
            let version = versions.get(stream).copied().unwrap_or(0);
            for (k, sent) in sent_events.iter().enumerate() {
                let Some(recorded) = events.get(i + j) else {
                    panic!(
                        "half batch: {key:?} cut after {j} of {count} events at the end of the log"
                    );
                };
                let position = first.position + j as u64;
                assert_eq!(
                    recorded.position, position,
                    "a batch's positions follow one another"
                );
                assert_eq!(
                    recorded.id,
                    sent.id(),
                    "half batch or interleaving: position {position} should hold event {j} of {key:?}"
                );
                assert_eq!(&*recorded.stream, stream, "stream at {position}");
                assert_eq!(
                    recorded.version,
                    version + k as u64,
                    "version at {position} ({stream})"
                );
                assert_eq!(
                    &*recorded.event_type,
                    sent.event_type(),
                    "type at {position}"
                );
                let mut tags = sent.tags().to_vec();
                tags.sort_unstable();
                assert!(
                    recorded
                        .tags
                        .iter()
                        .map(|t| &**t)
                        .eq(tags.iter().map(String::as_str)),
                    "tags at {position}: {:?}, sent {:?}",
                    recorded.tags,
                    sent.tags()
                );
                assert_eq!(&recorded.payload, sent.payload(), "payload at {position}");
                assert_eq!(
                    &recorded.metadata,
                    sent.metadata(),
                    "metadata at {position}"
                );
                j += 1;
            }
            versions.insert(stream.clone(), version + sent_events.len() as u64);
        }
        assert!(
            placed.insert(key, first.position).is_none(),
            "append {key:?} present twice"
        );
        // A thread sends its next append only after the previous one was
        // acknowledged, hence durable: its appends come back as a prefix.
        let expected_seq = next_seq.entry((key.run, key.thread)).or_insert(0);
        assert_eq!(
            key.seq, *expected_seq,
            "append {key:?} at position {}, but this thread's append {} is missing before it",
            first.position, *expected_seq
        );
        *expected_seq += 1;
        i += count;
    }
    for ack in acks {
        let Some(&position) = placed.get(&ack.key) else {
            panic!("acknowledged append lost: {ack:?}");
        };
        assert_eq!(
            position, ack.first_position,
            "append {:?} acknowledged at position {} but found at {position}",
            ack.key, ack.first_position
        );
        let plan = &plans[&ack.key];
        let counts: Vec<(&str, usize)> = plan
            .parts
            .iter()
            .map(|(stream, events)| (stream.as_str(), events.len()))
            .collect();
        let acked: Vec<(&str, usize)> =
            ack.parts.iter().map(|(s, n, _)| (s.as_str(), *n)).collect();
        assert_eq!(acked, counts, "streams of {:?}", ack.key);
        let mut at = index_of[&position];
        for (stream, count, first_version) in &ack.parts {
            let event = &events[at];
            assert_eq!(
                (&*event.stream, event.version),
                (stream.as_str(), *first_version),
                "{:?} acknowledged {stream} from version {first_version}",
                ack.key
            );
            at += count;
        }
    }
    // The stream index rebuilt by recovery agrees with the log: spot checks
    // at its newest end (where the kills happened) and in its middle.
    for s in 0..STREAMS {
        let stream = stream_name(s);
        let expected: Vec<u64> = events
            .iter()
            .filter(|e| *e.stream == stream)
            .map(|e| e.position)
            .collect();
        assert_eq!(
            store.stream_version(&stream).unwrap(),
            (expected.len() as u64).checked_sub(1),
            "stream_version({stream})"
        );
        let newest = store
            .read_stream(&stream, u64::MAX, Direction::Backward, 32)
            .expect("read_stream after recovery");
        assert_eq!(
            newest.iter().map(|e| e.position).collect::<Vec<_>>(),
            expected.iter().rev().take(32).copied().collect::<Vec<_>>(),
            "newest events of {stream} after recovery"
        );
        let middle = expected.len() / 2;
        let read = store
            .read_stream(&stream, middle as u64, Direction::Forward, 32)
            .expect("read_stream after recovery");
        assert_eq!(
            read.iter().map(|e| e.position).collect::<Vec<_>>(),
            expected
                .iter()
                .skip(middle)
                .take(32)
                .copied()
                .collect::<Vec<_>>(),
            "events of {stream} from version {middle} after recovery"
        );
    }
    // Reads by tag, from the postings recovery kept or rebuilt, return what
    // a scan of the log finds: whole by the shared account tags; by the tag
    // of every commit, the newest few and a few from the middle; by the
    // claims of the newest acknowledged commits, which only each commit's
    // first event carries.
    let last = store.last_position();
    let positions =
        |events: &[RecordedEvent]| events.iter().map(|e| e.position).collect::<Vec<_>>();
    let scan = |query: &Query| -> Vec<u64> {
        events
            .iter()
            .filter(|e| query.matches(e))
            .map(|e| e.position)
            .collect()
    };
    for account in 0..ACCOUNT_TAGS {
        let query = Query::tagged([account_tag(account)]);
        let read = store
            .read_query(&query, 0, Direction::Forward, usize::MAX)
            .expect("read_query after recovery");
        assert_eq!(
            positions(&read.events),
            scan(&query),
            "read_query({query:?})"
        );
        assert_eq!(read.head, last, "head of read_query({query:?})");
    }
    let query = Query::tagged([COMMIT_TAG]);
    let all = scan(&query);
    let newest = store
        .read_query(&query, u64::MAX, Direction::Backward, 16)
        .expect("read_query backward after recovery");
    assert_eq!(
        positions(&newest.events),
        all.iter().rev().take(16).copied().collect::<Vec<_>>(),
        "read_query({query:?}) backward"
    );
    let middle = events.get(events.len() / 2).map_or(0, |e| e.position);
    let read = store
        .read_query(&query, middle, Direction::Forward, 16)
        .expect("read_query from the middle after recovery");
    assert_eq!(
        positions(&read.events),
        all.iter()
            .filter(|&&p| p >= middle)
            .take(16)
            .copied()
            .collect::<Vec<_>>(),
        "read_query({query:?}) from {middle}"
    );
    let claims = acks
        .iter()
        .rev()
        .filter_map(|a| Some((a.key, plans[&a.key].claim.as_ref()?)))
        .take(8);
    for (key, claim) in claims {
        let read = store
            .read_query(&Query::tagged([claim.as_str()]), 0, Direction::Forward, 2)
            .expect("read_query by claim");
        assert_eq!(positions(&read.events), [placed[&key]], "claim {claim}");
        assert_eq!(read.head, last, "head of read_query by claim");
    }
    last.map_or(0, |p| p + 1)
}

/// What the children's lifecycle threads acknowledged.
#[derive(Debug, Default)]
struct Scratch {
    /// Each scratch stream appended to: its first position and events.
    appended: HashMap<String, (u64, u64)>,
    /// Scratch streams deleted or truncated away.
    gone: std::collections::HashSet<String>,
}

/// Checks the events of the log outside the main streams (`others`): each
/// belongs to a scratch stream or is the deletion or metadata of one; none
/// of a stream acknowledged as gone is read; an acknowledged scratch
/// append is whole unless its stream's deletion is in the log.
fn verify_scratch(store: &Store, others: &[RecordedEvent], scratch: &Scratch) {
    let mut removed = std::collections::HashSet::new();
    for event in others {
        let metadata_stream = event.stream.strip_prefix("$$");
        let stream = metadata_stream.unwrap_or(&event.stream);
        assert!(
            stream.starts_with(SCRATCH_PREFIX),
            "invented event at position {}: {event:?}",
            event.position
        );
        if metadata_stream.is_some() || event.event_type.starts_with('$') {
            removed.insert(stream.to_string());
        } else {
            assert!(
                !scratch.gone.contains(stream),
                "an event of {stream}, acknowledged as gone, reappeared: {event:?}"
            );
        }
    }
    for (stream, &(first, count)) in &scratch.appended {
        let read = match store.read_stream(stream, 0, Direction::Forward, usize::MAX) {
            Ok(read) => read,
            Err(evstore::Error::StreamDeleted { .. }) => Vec::new(),
            Err(e) => panic!("read_stream({stream}) after recovery: {e:?}"),
        };
        let positions: Vec<u64> = read
            .iter()
            .filter(|e| !e.event_type.starts_with('$'))
            .map(|e| e.position)
            .collect();
        if scratch.gone.contains(stream) {
            assert!(
                positions.is_empty(),
                "{stream}, acknowledged as gone, reads {read:?}"
            );
            assert!(removed.contains(stream), "the deletion of {stream} is lost");
        } else if positions.is_empty() {
            // Deleted after all, though the child was killed before it
            // could say so.
            assert!(removed.contains(stream), "acknowledged {stream} lost");
        } else {
            assert_eq!(
                positions,
                (first..first + count).collect::<Vec<_>>(),
                "acknowledged append of {stream}"
            );
        }
    }
}

/// Checks every stream's snapshot against the newest one acknowledged;
/// returns how many streams had one.
fn verify_snapshots(store: &Store, acked: &HashMap<String, u64>) -> u64 {
    for (stream, &version) in acked {
        let loaded = store
            .load_snapshot(stream)
            .unwrap_or_else(|e| panic!("load_snapshot({stream}) after recovery: {e:?}"))
            .unwrap_or_else(|| panic!("acknowledged snapshot of {stream} at {version} lost"));
        assert!(
            loaded.version >= version,
            "{stream}: snapshot {} loaded, {version} was acknowledged",
            loaded.version
        );
        assert_eq!(
            loaded.data,
            snapshot_data(stream, loaded.version),
            "{stream}: snapshot bytes at {}",
            loaded.version
        );
    }
    let damaged = store.damaged_snapshots();
    assert!(damaged.is_empty(), "snapshots found damaged: {damaged:?}");
    acked.len() as u64
}

fn iterations() -> u64 {
    std::env::var(ITERATIONS_VAR)
        .ok()
        .and_then(|v| v.parse().ok())
        .map_or(MIN_ITERATIONS, |n: u64| n.max(MIN_ITERATIONS))
        // Event ids hold the run number in 16 bits.
        .min(u64::from(u16::MAX))
}

#[test]
fn sigkill_never_loses_an_acknowledged_sync_append() {
    let started = Instant::now();
    let iterations = iterations();
    let tmp = tempfile::tempdir().expect("tempdir");
    let dir: PathBuf = tmp.path().join("store");
    let mut rng = XorShift::new(BASE_SEED);
    let mut acks: Vec<Ack> = Vec::new();
    let mut acks_checked = 0u64;
    let mut runs_with_acks = 0u64;
    let mut kills_during_open = 0u64;
    let mut runs_with_rollover = 0u64;
    let mut kills_without_prepared_segment = 0u64;
    let mut torn_bytes = 0u64;
    let mut events = 0u64;
    let mut plans = HashMap::new();
    let mut scratch = Scratch::default();
    let mut segments_scavenged = 0u64;
    let mut acked_snapshots: HashMap<String, u64> = HashMap::new();
    let mut snapshots_acked = 0u64;
    let mut snapshot_checks = 0u64;
    // Opened read-only once the store exists and kept across every kill and
    // restart of the writer, as a tool or a projection process would be.
    let mut reader: Option<Store> = None;
    let mut reader_events_seen = 0u64;

    for run in 0..iterations as u32 {
        // One kill in eight aims at the child's own start-up, open and
        // recovery (timed from the spawn); the others at its appends (timed
        // from the moment it reports the store open).
        let during_open = rng.next().is_multiple_of(8);
        let delay = Duration::from_millis(if during_open {
            rng.range(0, 80)
        } else {
            rng.range(2, 150)
        });
        let (segments_before, _) = segment_files(&dir);
        let kill = run_child(&dir, run, delay, during_open);
        let (segments_after, temp_present) = segment_files(&dir);

        if !kill.ready {
            kills_during_open += 1;
        }
        if !kill.acks.is_empty() {
            runs_with_acks += 1;
        }
        if segments_after > segments_before {
            runs_with_rollover += 1;
        }
        if kill.ready && !temp_present {
            // No `next.tmp`: killed after a segment was installed and before
            // the preallocation of the next one created its file (at a
            // rollover, or just after the child's open).
            kills_without_prepared_segment += 1;
        }
        acks.extend(kill.acks);
        for (stream, first, count) in kill.scratch {
            scratch.appended.insert(stream, (first, count));
        }
        scratch.gone.extend(kill.gone);
        segments_scavenged += kill.scavenged;
        snapshots_acked += kill.snapshots.len() as u64;
        for (stream, version) in kill.snapshots {
            let newest = acked_snapshots.entry(stream).or_insert(version);
            *newest = (*newest).max(version);
        }

        if dir.join(evstore::SEGMENTS_DIR).exists() {
            // What a killed writer leaves is never damage: at most a torn tail.
            let report = evstore::verify::verify_store(&dir, &mut |_| {})
                .unwrap_or_else(|e| panic!("verify after kill {run}: {e:?}"));
            assert!(
                report.is_clean(),
                "verify after kill {run}: {:#?}",
                report.findings
            );
            if reader.is_none() {
                reader = Some(
                    Store::open_read_only(&dir, Options::default().segment_size(SEGMENT_SIZE))
                        .unwrap_or_else(|e| panic!("read-only open after kill {run}: {e:?}")),
                );
            }
        }
        let store = Store::open(&dir, Options::default().segment_size(SEGMENT_SIZE))
            .unwrap_or_else(|e| panic!("reopen after kill {run}: {e:?}"));
        torn_bytes += store.recovery_stats().torn_bytes;
        events = verify(&store, run + 1, &acks, &mut plans, &scratch);
        assert_eq!(
            store.recovery_stats().events,
            events,
            "recovery stats count every recovered event"
        );
        acks_checked += acks.len() as u64;
        snapshot_checks += verify_snapshots(&store, &acked_snapshots);
        let log = store
            .read_all(0, Direction::Forward, usize::MAX)
            .expect("read the recovered log");
        store.close().expect("close after verification");
        if let Some(reader) = &reader {
            // The close left everything durable: the reader, which followed
            // the killed child and this recovery, must now see exactly it.
            let end = reader
                .refresh()
                .unwrap_or_else(|e| panic!("reader after kill {run}: {e:?}"));
            assert_eq!(end, events, "reader's end after kill {run}");
            let seen = reader
                .read_all(0, Direction::Forward, usize::MAX)
                .expect("read through the reader");
            assert_eq!(seen.len(), log.len());
            for (a, b) in seen.iter().zip(&log) {
                assert_eq!(
                    (a.position, &a.stream, a.version, a.id, &a.tags, &a.payload),
                    (b.position, &b.stream, b.version, b.id, &b.tags, &b.payload),
                    "the reader disagrees with recovery after kill {run}"
                );
            }
            reader_events_seen = end;
        }
    }

    let (segments, _) = segment_files(&dir);
    let commits = acks.iter().filter(|a| a.parts.len() > 1).count();
    println!(
        "kill9: {iterations} kills in {:.1?}: {runs_with_acks} with acknowledgements, \
         {kills_during_open} before the child had opened the store, \
         {runs_with_rollover} runs rolled over a segment, \
         {kills_without_prepared_segment} kills with no next segment preallocated yet; \
         {} distinct acknowledged appends ({commits} of them commits to two streams), \
         {acks_checked} acknowledgement checks; \
         {events} events in {segments} segments; {torn_bytes} torn bytes cleared; \
         {snapshots_acked} snapshots acknowledged, {snapshot_checks} snapshot checks; \
         a read-only reader followed throughout and saw {reader_events_seen} events; \
         {} scratch streams appended, {} acknowledged as gone, {segments_scavenged} segments \
         scavenged",
        started.elapsed(),
        acks.len(),
        scratch.appended.len(),
        scratch.gone.len(),
    );
    assert!(
        segments_scavenged > 0 && !scratch.gone.is_empty(),
        "nothing was scavenged or deleted: the lifecycle checks would be vacuous"
    );
    assert!(
        commits * 5 >= acks.len(),
        "{commits} of {} acknowledgements were commits: the commit checks would be thin",
        acks.len()
    );
    assert!(
        snapshots_acked > 0,
        "no snapshot was acknowledged in any run: the snapshot checks would be vacuous"
    );
    assert!(
        runs_with_acks * 4 >= iterations,
        "only {runs_with_acks} of {iterations} children acknowledged anything before the kill: \
         the test would be vacuous"
    );
    assert!(
        reader_events_seen > 0,
        "the read-only reader never saw an event"
    );
    assert!(
        runs_with_rollover > 0,
        "no segment rollover happened in any run"
    );
}
