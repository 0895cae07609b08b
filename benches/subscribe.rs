//! Subscriptions: catch-up throughput over a large log, live delivery
//! latency, and what live subscribers cost the writers.
//!
//! Groups (every throughput group reports `Throughput::Elements`, so
//! criterion prints events/s; `benches/summarize_subscribe.py` tabulates
//! everything, the latency percentiles and the writer ratio included):
//!
//! * `catch_up`: one subscriber reads a 10,000,000-event log (256-byte
//!   payloads, 100,000 streams, each stream's events spread over the whole
//!   log) from position 0 to the end with [`Subscription::try_next`], and
//!   reads one byte of every 64 of each payload it is given. `all` delivers
//!   every event (`Filter::all()`); `stream_prefix_1pct` delivers the events
//!   of the streams named `stream-000...` (1,000 of the 100,000 streams,
//!   about 1% of the events). `read_all`, the peer, reads the same log
//!   with `Store::read_all` in pages of 512 events (what a subscription
//!   reads at a time) and touches every payload the same way: the cost of
//!   reading the log without a subscription. Elements are the events of the
//!   log in all three, so the figure is how fast a subscriber moves through
//!   history. One iteration is one full pass (a few seconds): 10 flat
//!   samples of one or two passes each. The first pass reads the store from
//!   disk unless it is in the page cache, so the warm-up can overestimate
//!   the run and criterion may warn that it cannot complete 10 samples.
//! * `live_latency`: a `Sync` store (every append acknowledged after its
//!   `fdatasync`), one appender thread making single-event appends (256-byte
//!   payloads) back to back, and 1 or 16 subscribers (`subscribers=N`), each
//!   on its own thread blocked in [`Subscription::next_event`], following a
//!   new store from its first event. The latency of a delivery is the time
//!   from the moment `append` returned to the appender (the durable
//!   acknowledgement) to the moment `next_event` returned the event to a
//!   subscriber. The store wakes subscribers
//!   when the durable watermark moves, which is just before the appender is
//!   answered, so a delivery can come first: it then counts as 0, and the
//!   share of such deliveries is reported. Criterion's time for one
//!   iteration (one append) is the mean over its deliveries of the time
//!   from the call of `append` to delivery (the append's own sync included;
//!   never zero, unlike the time from the acknowledgement). The percentiles
//!   are computed from every delivery of the measured samples (criterion's
//!   warm-up left out), printed, and written to
//!   `target/bench-data/subscribe/latency-subscribers=N.json`, with the
//!   time from the call of `append` to delivery beside them, the time until
//!   the last of the N subscribers had the event, and the time `append`
//!   itself took (call to acknowledgement), the peer of the figure.
//! * `live_writer`: the durable append workload of the append benchmark's
//!   `threads=16/size=256/batch=10` (16 appender threads, batches of 10
//!   events of 256 bytes, each thread to its own 16 streams) in a `Sync`
//!   store with no subscriber (`subscribers=0`), with 16 subscribers
//!   (`subscribers=16`) following every event live from position 0, each on
//!   its own thread taking one event per `next_event` call, and with 16
//!   that take them with `next_batch(512)` (`subscribers=16-batched`:
//!   events lent from the shared read-ahead, no clone per event); every
//!   subscriber reads one byte of every 64 of each payload. One
//!   iteration is one append per appender thread (160 events); a sample
//!   runs all of its iterations back to back from a barrier to the last
//!   appender's return. After each sample, outside the measurement, the
//!   benchmark records how far the slowest subscriber was behind and waits
//!   for all of them to catch up; these go to
//!   `target/bench-data/subscribe/writer-<benchmark>.json`. The criterion
//!   benchmarks run one after the other, and on a shared machine the load
//!   can change in between, so after them the same stores and subscribers
//!   run 12 rounds of 24,000 events each, in order and then in reverse by
//!   turns; the median of each one's per-round ratio to `subscribers=0` is
//!   printed and written to
//!   `target/bench-data/subscribe/writer-interleaved.json`.
//!
//! Data: `catch_up` reads the read benchmark's 10M store
//! (`target/bench-data/read/evstore-10000000`, made by `cargo bench --bench
//! read`) when it is there and complete; it holds one more stream,
//! `target-stream`, with 1,000 of the events. Otherwise it makes its own
//! store with the same layout (without `target-stream`) once under
//! `target/bench-data/subscribe` (Buffered appends of 10 events, about 20 s
//! and 3.7 GB), marked complete like the read benchmark's and reused by
//! later runs. The live groups use fresh stores under `target/bench-data`
//! (`EVSTORE_BENCH_DIR` moves all of it), removed afterwards.
//!
//! The store the read benchmark is using is locked: `catch_up` then waits
//! for it, saying so on stderr.
//!
//! `cargo bench --bench subscribe` (about 3 minutes on a 2-core machine,
//! plus making the store if needed), then `python3
//! benches/summarize_subscribe.py`. A filter selects benchmarks as usual
//! (`cargo bench --bench subscribe -- live_latency`); only what the selected
//! ones need is prepared. Run as a test (`cargo test --benches`) it uses
//! small stores in a temporary directory and writes no figures.

#[path = "common/cli.rs"]
mod cli;
#[path = "common/data.rs"]
#[allow(dead_code)]
mod data;

use bytes::Bytes;
use cli::Cli;
use criterion::{criterion_group, criterion_main, Criterion, SamplingMode, Throughput};
use data::{bench_root, Ids, Rng};
use evstore::{
    Direction, Durability, Error, EventData, ExpectedVersion, Filter, Options, Store, Subscription,
    Uuid,
};
use parking_lot::Mutex;
use std::fmt::Write as _;
use std::fs;
use std::hint::black_box;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Barrier};
use std::thread::{self, JoinHandle};
use std::time::{Duration, Instant};
use tempfile::TempDir;

/// Payload bytes of every event.
const PAYLOAD_LEN: usize = 256;
/// Event type of every event.
const EVENT_TYPE: &str = "BenchEvent";
/// Changing how the catch-up store is generated must change this.
const GENERATOR_VERSION: u32 = 1;
/// Seed of the payload bytes (the read benchmark's).
const PAYLOAD_SEED: u64 = 0x005e_ed0f_0a1f_10ad;
/// Ids of the generated store: `Uuid::from_u64_pair(ID_SALT, n)`.
const ID_SALT: u64 = 0x7375_6273_2d62_656e;
/// Multiplier of the per-round permutation of the streams (the read
/// benchmark's): a prime larger than any stream count used here.
const PERMUTATION_PRIME: u64 = 1_000_003;
/// Events per `read_all` call of `catch_up/read_all`: what a subscription
/// reads at a time.
const READ_ALL_PAGE: usize = 512;
/// Samples of the live groups.
const LIVE_SAMPLES: usize = 20;
/// Appender threads, events per append and streams per thread in
/// `live_writer`.
const WRITER_THREADS: usize = 16;
const WRITER_BATCH: usize = 10;
const STREAMS_PER_THREAD: usize = 16;
/// Subscriber counts of `live_latency` and `live_writer`.
const LATENCY_SUBSCRIBERS: [usize; 2] = [1, 16];
/// The `live_writer` benchmarks: subscribers, and how they take events.
const WRITER_RIGS: [(usize, Delivery); 3] = [
    (0, Delivery::OneByOne),
    (16, Delivery::OneByOne),
    (16, Delivery::Batches),
];
/// Events a batched subscriber asks for at once.
const DELIVERY_BATCH: usize = 512;

/// How a live subscriber thread takes its events.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Delivery {
    /// `next_event`, one owned event per call.
    OneByOne,
    /// `next_batch(DELIVERY_BATCH)`: events lent from the shared read-ahead.
    Batches,
}

/// The benchmark name of a `live_writer` rig.
fn writer_label(subscribers: usize, delivery: Delivery) -> String {
    match delivery {
        Delivery::OneByOne => format!("subscribers={subscribers}"),
        Delivery::Batches => format!("subscribers={subscribers}-batched"),
    }
}
/// Rounds of the interleaved writer comparison, and appends per appender
/// thread in each round (24,000 events, a fraction of a second).
const INTERLEAVED_ROUNDS: usize = 12;
const INTERLEAVED_APPENDS: u64 = 150;
/// Longest a sample waits for subscribers to have every event.
const DRAIN_LIMIT: Duration = Duration::from_secs(120);

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

fn payload(seed: u64) -> Bytes {
    let mut rng = Rng(seed | 1);
    Bytes::from(
        (0..PAYLOAD_LEN)
            .map(|_| rng.next() as u8)
            .collect::<Vec<u8>>(),
    )
}

/// Opens `dir`, waiting while another process (or handle) holds it.
fn open_waiting(dir: &Path, options: Options) -> Store {
    let mut said = false;
    loop {
        match Store::open(dir, options.clone()) {
            Ok(store) => return store,
            Err(Error::Locked { holder, .. }) => {
                if !said {
                    eprintln!(
                        "{} is locked (pid {}): waiting for it",
                        dir.display(),
                        holder.as_deref().unwrap_or("?")
                    );
                    said = true;
                }
                thread::sleep(Duration::from_secs(1));
            }
            Err(e) => panic!("opening {}: {e}", dir.display()),
        }
    }
}

// ---------------------------------------------------------------- catch-up data

/// The parameters of a catch-up store.
#[derive(Debug, Clone, Copy)]
struct Spec {
    events: u64,
    streams: u64,
    batch: u64,
}

/// SplitMix64's finalizer: a well-mixed value for each round number.
fn mix(mut x: u64) -> u64 {
    x = x.wrapping_add(0x9e37_79b9_7f4a_7c15);
    x = (x ^ (x >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
    x = (x ^ (x >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
    x ^ (x >> 31)
}

fn stream_name(i: u64) -> String {
    format!("stream-{i:06}")
}

impl Spec {
    /// The read benchmark's layout: appends of `batch` events go round the
    /// streams in rounds, each round in another pseudo-random order.
    fn plan(&self, mut step: impl FnMut(u64, u64)) {
        let (mut written, mut k) = (0u64, 0u64);
        while written < self.events {
            let (round, i) = (k / self.streams, k % self.streams);
            let stream = ((u128::from(i) * u128::from(PERMUTATION_PRIME) + u128::from(mix(round)))
                % u128::from(self.streams)) as u64;
            let count = self.batch.min(self.events - written);
            step(stream, count);
            written += count;
            k += 1;
        }
    }

    fn marker(&self) -> String {
        format!(
            "evstore subscribe-generator={GENERATOR_VERSION} format={} events={} streams={} \
             batch={} payload={PAYLOAD_LEN}\n",
            evstore::format::FORMAT_VERSION,
            self.events,
            self.streams,
            self.batch
        )
    }

    /// The stream prefix that selects 1% of the streams: `stream-` and
    /// enough zeros to leave `log10(streams / 100)` digits free.
    fn one_percent_prefix(&self) -> String {
        let selected = self.streams / 100;
        assert!(
            selected > 0 && 10u64.pow(selected.ilog10()) == selected,
            "{} streams: no prefix selects 1%",
            self.streams
        );
        format!("stream-{}", "0".repeat(6 - selected.ilog10() as usize))
    }
}

fn store_options() -> Options {
    Options::default().durability(Durability::Buffered)
}

/// The read benchmark's store of `spec.events` events, if it is there,
/// complete, of this format, and has `spec`'s streams and payloads (its
/// `target-stream` comes on top).
fn read_bench_store(spec: &Spec) -> Option<PathBuf> {
    let root = bench_root().join("read");
    let marker = fs::read_to_string(root.join(format!("evstore-{}.complete", spec.events))).ok()?;
    let fields: Vec<&str> = marker.split_whitespace().collect();
    let wanted = [
        format!("format={}", evstore::format::FORMAT_VERSION),
        format!("events={}", spec.events),
        format!("streams={}", spec.streams),
        format!("payload={PAYLOAD_LEN}"),
    ];
    (fields.first() == Some(&"evstore") && wanted.iter().all(|w| fields.contains(&w.as_str())))
        .then(|| root.join(format!("evstore-{}", spec.events)))
}

/// Makes the catch-up store for `spec` in `dir` unless `marker` says it is
/// there.
fn ensure_store(dir: &Path, marker: &Path, spec: &Spec) {
    let expected = spec.marker();
    if fs::read_to_string(marker).is_ok_and(|m| m == expected) {
        eprintln!("reusing {}", dir.display());
        return;
    }
    let _ = fs::remove_file(marker);
    if dir.exists() {
        fs::remove_dir_all(dir).expect("removing an incomplete store");
    }
    let started = Instant::now();
    eprintln!("generating {} ({} events)", dir.display(), spec.events);
    let store = Store::open(dir, store_options()).expect("creating the store");
    let mut rng = Rng(PAYLOAD_SEED);
    let templates: Vec<EventData> = (0..16)
        .map(|_| EventData::new(EVENT_TYPE, payload(rng.next())))
        .collect();
    let names: Vec<String> = (0..spec.streams).map(stream_name).collect();
    let (mut n, mut events) = (0u64, Vec::with_capacity(spec.batch as usize));
    let mut report = spec.events / 10;
    spec.plan(|stream, count| {
        events.clear();
        events.extend((n..n + count).map(|i| {
            templates[i as usize % templates.len()]
                .clone()
                .with_id(Uuid::from_u64_pair(ID_SALT, i))
        }));
        store
            .append(&names[stream as usize], ExpectedVersion::Any, &events)
            .expect("appending");
        n += count;
        if n >= report && spec.events >= 1_000_000 {
            eprintln!("  {n} events, {:.0} s", started.elapsed().as_secs_f64());
            report += spec.events / 10;
        }
    });
    store.close().expect("closing the generated store");
    fs::write(marker, expected).expect("writing the marker");
    eprintln!("generated in {:.1} s", started.elapsed().as_secs_f64());
}

// ---------------------------------------------------------------- catch-up

/// Reads everything `subscription` has now; returns the events delivered
/// and a sum over their payloads.
fn drain(subscription: &mut Subscription) -> (u64, u64) {
    let (mut delivered, mut sum) = (0u64, 0u64);
    while let Some(event) = subscription.try_next().expect("subscription") {
        delivered += 1;
        sum += touch(&event.payload);
    }
    (delivered, sum)
}

fn bench_catch_up(c: &mut Criterion, cli: &Cli, spec: &Spec) {
    let ids = ["all", "stream_prefix_1pct", "read_all"];
    if !ids.iter().any(|id| cli.selects(&format!("catch_up/{id}"))) {
        return;
    }
    let mut g = c.benchmark_group("catch_up");
    g.sampling_mode(SamplingMode::Flat);
    g.sample_size(10);
    g.warm_up_time(Duration::from_secs(1));
    g.measurement_time(Duration::from_secs(20));
    if cli.list {
        for id in ids {
            if cli.selects(&format!("catch_up/{id}")) {
                g.bench_function(id, |b| b.iter(|| unreachable!("listing only")));
            }
        }
        g.finish();
        return;
    }

    // Test runs make a small store in a temporary directory.
    let _temp: Option<TempDir>;
    let dir = if cli.test {
        let temp = tempfile::tempdir_in(bench_root()).expect("creating a temporary directory");
        let dir = temp.path().join("store");
        ensure_store(&dir, &temp.path().join("store.complete"), spec);
        _temp = Some(temp);
        dir
    } else {
        _temp = None;
        match read_bench_store(spec) {
            Some(dir) => {
                eprintln!("using the read benchmark's store {}", dir.display());
                dir
            }
            None => {
                let root = bench_root().join("subscribe");
                fs::create_dir_all(&root).expect("creating the subscribe benchmark directory");
                let dir = root.join(format!("evstore-{}", spec.events));
                ensure_store(
                    &dir,
                    &root.join(format!("evstore-{}.complete", spec.events)),
                    spec,
                );
                dir
            }
        }
    };
    let store = open_waiting(&dir, store_options());
    let end = store.last_position().map_or(0, |p| p + 1);
    let prefix = spec.one_percent_prefix();
    let selected: u64 = store
        .streams()
        .map(|s| s.expect("listing streams"))
        .filter(|s| s.name.starts_with(&prefix))
        .map(|s| s.version + 1)
        .sum();
    eprintln!(
        "catch_up: {end} events; {prefix}* streams hold {selected} of them ({:.2}%)",
        selected as f64 * 100.0 / end as f64
    );
    g.throughput(Throughput::Elements(end));
    for (id, filter, expected) in [
        ("all", Filter::all(), end),
        (
            "stream_prefix_1pct",
            Filter::stream_prefix(&prefix),
            selected,
        ),
    ] {
        if !cli.selects(&format!("catch_up/{id}")) {
            continue;
        }
        g.bench_function(id, |b| {
            b.iter(|| {
                let mut subscription = store.subscribe_all(0, filter.clone());
                let (delivered, sum) = drain(&mut subscription);
                assert_eq!(subscription.checkpoint(), end, "stopped before the end");
                assert_eq!(delivered, expected, "delivered the wrong number of events");
                sum
            })
        });
    }
    if cli.selects("catch_up/read_all") {
        g.bench_function("read_all", |b| {
            b.iter(|| {
                let (mut from, mut read, mut sum) = (0u64, 0u64, 0u64);
                loop {
                    let page = store
                        .read_all(from, Direction::Forward, READ_ALL_PAGE)
                        .expect("read_all");
                    let Some(last) = page.last() else { break };
                    from = last.position + 1;
                    read += page.len() as u64;
                    sum += page.iter().map(|e| touch(&e.payload)).sum::<u64>();
                }
                assert_eq!(read, end, "read the wrong number of events");
                sum
            })
        });
    }
    g.finish();
    store.close().expect("closing the store");
}

// ---------------------------------------------------------------- live: shared

/// What a live subscriber thread has delivered.
struct Receiver {
    /// (position, nanoseconds since the rig's base instant) per delivery,
    /// when the rig records deliveries.
    log: Mutex<Vec<(u64, u64)>>,
    /// The position after the last event delivered.
    next: AtomicU64,
}

/// Subscriber threads following a store live, each blocked in `next()`.
struct Subscribers {
    receivers: Vec<Arc<Receiver>>,
    threads: Vec<JoinHandle<u64>>,
}

impl Subscribers {
    /// Starts `count` subscribers from position `from`; `base` set means
    /// every delivery is logged with its time.
    fn start(
        store: &Store,
        count: usize,
        from: u64,
        base: Option<Instant>,
        delivery: Delivery,
    ) -> Self {
        let mut receivers = Vec::new();
        let mut threads = Vec::new();
        for i in 0..count {
            let receiver = Arc::new(Receiver {
                log: Mutex::new(Vec::with_capacity(if base.is_some() { 1 << 16 } else { 0 })),
                next: AtomicU64::new(from),
            });
            let mut subscription = store.subscribe_all(from, Filter::all());
            let r = Arc::clone(&receiver);
            let thread = thread::Builder::new()
                .name(format!("subscriber-{i}"))
                .spawn(move || {
                    let mut sum = 0u64;
                    let mut deliver = |event: &evstore::RecordedEvent| {
                        if let Some(base) = base {
                            let at = base.elapsed().as_nanos() as u64;
                            r.log.lock().push((event.position, at));
                        }
                        sum = sum.wrapping_add(touch(&event.payload));
                    };
                    match delivery {
                        Delivery::OneByOne => {
                            while let Some(event) = subscription.next_event().expect("subscription")
                            {
                                deliver(&event);
                                r.next.store(event.position + 1, Ordering::Release);
                            }
                        }
                        Delivery::Batches => loop {
                            let batch = subscription
                                .next_batch(DELIVERY_BATCH)
                                .expect("subscription");
                            let Some(last) = batch.last().map(|e| e.position) else {
                                break;
                            };
                            batch.iter().for_each(&mut deliver);
                            r.next.store(last + 1, Ordering::Release);
                        },
                    }
                    sum
                })
                .expect("starting a subscriber");
            receivers.push(receiver);
            threads.push(thread);
        }
        Subscribers { receivers, threads }
    }

    /// The position every subscriber has delivered up to.
    fn slowest(&self) -> Option<u64> {
        self.receivers
            .iter()
            .map(|r| r.next.load(Ordering::Acquire))
            .min()
    }

    /// Waits until every subscriber has delivered the events below `end`.
    fn wait_for(&self, end: u64) -> Duration {
        let started = Instant::now();
        while self.slowest().is_some_and(|p| p < end) {
            assert!(
                started.elapsed() < DRAIN_LIMIT,
                "subscribers stuck at {:?} of {end}",
                self.slowest()
            );
            thread::sleep(Duration::from_micros(50));
        }
        started.elapsed()
    }

    /// Joins the threads (after the store was closed).
    fn join(self) {
        for thread in self.threads {
            black_box(thread.join().expect("a subscriber panicked"));
        }
    }
}

/// `p` (0..=1) of sorted `values`, nearest rank.
fn percentile(sorted: &[u64], p: f64) -> u64 {
    if sorted.is_empty() {
        return 0;
    }
    let rank = (p * sorted.len() as f64).ceil() as usize;
    sorted[rank.clamp(1, sorted.len()) - 1]
}

/// Percentiles and mean of `values` (sorted here) as a JSON object, in
/// nanoseconds.
fn summary_json(values: &mut [u64]) -> String {
    values.sort_unstable();
    let mean = if values.is_empty() {
        0.0
    } else {
        values.iter().map(|&v| v as f64).sum::<f64>() / values.len() as f64
    };
    format!(
        "{{\"p50\": {}, \"p90\": {}, \"p99\": {}, \"p999\": {}, \"max\": {}, \"mean\": {:.0}}}",
        percentile(values, 0.5),
        percentile(values, 0.9),
        percentile(values, 0.99),
        percentile(values, 0.999),
        values.last().copied().unwrap_or(0),
        mean
    )
}

fn micros(nanos: u64) -> String {
    format!("{:.1} µs", nanos as f64 / 1e3)
}

fn write_result(name: &str, json: &str) {
    let dir = bench_root().join("subscribe");
    fs::create_dir_all(&dir).expect("creating the subscribe benchmark directory");
    let path = dir.join(name);
    fs::write(&path, json).expect("writing a result file");
    eprintln!("wrote {}", path.display());
}

/// Prints how the subscribers of `label` shared their reads of the log.
fn print_sharing(label: &str, store: &Store) {
    let stats = store.read_ahead_stats();
    let total = (stats.reads + stats.shared).max(1);
    eprintln!(
        "{label}: subscribers read the log {} times and took {} chunks from the shared \
         read-ahead ({:.1}% shared; {} chunks evicted)",
        stats.reads,
        stats.shared,
        stats.shared as f64 * 100.0 / total as f64,
        stats.evicted
    );
}

// ---------------------------------------------------------------- live latency

/// What one `iter_custom` call of `live_latency` measured, in nanoseconds.
#[derive(Default)]
struct LatencyCall {
    /// Acknowledgement to delivery, per delivery (0 when delivered first).
    ack: Vec<u64>,
    /// Call of `append` to delivery, per delivery.
    call: Vec<u64>,
    /// Acknowledgement to delivery at the last subscriber, per event.
    last: Vec<u64>,
    /// Call of `append` to its return, per event.
    append: Vec<u64>,
    /// Deliveries that came before the acknowledgement.
    early: u64,
}

struct LatencyRig {
    store: Store,
    _dir: TempDir,
    base: Instant,
    subscribers: Subscribers,
    template: EventData,
    ids: Ids,
    calls: Vec<LatencyCall>,
}

impl LatencyRig {
    fn new(root: &Path, subscribers: usize) -> Self {
        let dir = tempfile::tempdir_in(root).expect("creating a temporary directory");
        let store = Store::open(dir.path(), Options::default().durability(Durability::Sync))
            .expect("opening the store");
        let base = Instant::now();
        let subscribers =
            Subscribers::start(&store, subscribers, 0, Some(base), Delivery::OneByOne);
        LatencyRig {
            store,
            _dir: dir,
            base,
            subscribers,
            template: EventData::new(EVENT_TYPE, payload(7)),
            ids: Ids::new(),
            calls: Vec::new(),
        }
    }

    fn now(&self) -> u64 {
        self.base.elapsed().as_nanos() as u64
    }

    /// `appends` single-event appends; returns the sum over them of the
    /// mean time from the call of `append` to delivery.
    fn run(&mut self, appends: u64) -> Duration {
        let mut acks = Vec::with_capacity(appends as usize);
        for n in 0..appends {
            let event = self.template.clone().with_id(self.ids.id(self.ids.take(1)));
            let stream = format!("live-{}", n % 16);
            let called = self.now();
            let result = self
                .store
                .append(&stream, ExpectedVersion::Any, &[event])
                .expect("append");
            let acked = self.now();
            acks.push((result.first_position, called, acked));
        }
        let Some(&(first, _, _)) = acks.first() else {
            return Duration::ZERO;
        };
        let end = first + appends;
        assert_eq!(
            acks.last().map(|a| a.0 + 1),
            Some(end),
            "positions not dense"
        );
        self.subscribers.wait_for(end);
        let mut call = LatencyCall::default();
        let mut last = vec![0u64; acks.len()];
        let mut total = 0u64;
        for receiver in &self.subscribers.receivers {
            let log = std::mem::take(&mut *receiver.log.lock());
            for (position, at) in log {
                let (_, called, acked) = acks[(position - first) as usize];
                if at < acked {
                    call.early += 1;
                }
                let ack = at.saturating_sub(acked);
                call.ack.push(ack);
                call.call.push(at - called);
                let slot = &mut last[(position - first) as usize];
                *slot = (*slot).max(ack);
                total += at - called;
            }
        }
        assert_eq!(
            call.ack.len(),
            acks.len() * self.subscribers.receivers.len(),
            "a delivery is missing or doubled"
        );
        call.last = last;
        call.append = acks
            .iter()
            .map(|&(_, called, acked)| acked - called)
            .collect();
        self.calls.push(call);
        Duration::from_nanos(total / self.subscribers.receivers.len() as u64)
    }

    /// Prints and writes the percentiles of the last `samples` calls (the
    /// measured ones), then closes the store.
    fn finish(self, samples: usize, write: bool) {
        let subscribers = self.subscribers.receivers.len();
        let measured = &self.calls[self.calls.len().saturating_sub(samples)..];
        let mut ack: Vec<u64> = measured
            .iter()
            .flat_map(|c| c.ack.iter().copied())
            .collect();
        let mut call: Vec<u64> = measured
            .iter()
            .flat_map(|c| c.call.iter().copied())
            .collect();
        let mut last: Vec<u64> = measured
            .iter()
            .flat_map(|c| c.last.iter().copied())
            .collect();
        let mut append: Vec<u64> = measured
            .iter()
            .flat_map(|c| c.append.iter().copied())
            .collect();
        let early: u64 = measured.iter().map(|c| c.early).sum();
        let deliveries = ack.len();
        let (ack_json, call_json, last_json, append_json) = (
            summary_json(&mut ack),
            summary_json(&mut call),
            summary_json(&mut last),
            summary_json(&mut append),
        );
        eprintln!(
            "live_latency/subscribers={subscribers}: {} events, {deliveries} deliveries; \
             ack->delivery p50 {} p99 {} p99.9 {} max {}; call->delivery p50 {} p99 {}; \
             ack->last subscriber p50 {} p99 {}; append p50 {} p99 {}; \
             delivered before the ack {:.1}%",
            last.len(),
            micros(percentile(&ack, 0.5)),
            micros(percentile(&ack, 0.99)),
            micros(percentile(&ack, 0.999)),
            micros(ack.last().copied().unwrap_or(0)),
            micros(percentile(&call, 0.5)),
            micros(percentile(&call, 0.99)),
            micros(percentile(&last, 0.5)),
            micros(percentile(&last, 0.99)),
            micros(percentile(&append, 0.5)),
            micros(percentile(&append, 0.99)),
            early as f64 * 100.0 / deliveries.max(1) as f64,
        );
        if write {
            let mut json = String::new();
            let _ = write!(
                json,
                "{{\n  \"benchmark\": \"live_latency/subscribers={subscribers}\",\n  \
                 \"subscribers\": {subscribers},\n  \"events\": {},\n  \"deliveries\": {deliveries},\n  \
                 \"delivered_before_ack\": {early},\n  \"unit\": \"ns\",\n  \
                 \"ack_to_delivery\": {ack_json},\n  \"call_to_delivery\": {call_json},\n  \
                 \"ack_to_last_subscriber\": {last_json},\n  \"append\": {append_json}\n}}\n",
                last.len()
            );
            write_result(&format!("latency-subscribers={subscribers}.json"), &json);
        }
        print_sharing(
            &format!("live_latency/subscribers={subscribers}"),
            &self.store,
        );
        self.store.close().expect("closing the store");
        self.subscribers.join();
    }
}

fn bench_live_latency(c: &mut Criterion, cli: &Cli, root: &Path) {
    let mut g = c.benchmark_group("live_latency");
    g.sampling_mode(SamplingMode::Flat);
    g.sample_size(LIVE_SAMPLES);
    g.warm_up_time(Duration::from_secs(1));
    g.measurement_time(Duration::from_secs(6));
    g.throughput(Throughput::Elements(1));
    for subscribers in LATENCY_SUBSCRIBERS {
        let id = format!("subscribers={subscribers}");
        if !cli.selects(&format!("live_latency/{id}")) {
            continue;
        }
        if cli.list {
            g.bench_function(&id, |b| b.iter(|| unreachable!("listing only")));
            continue;
        }
        let mut rig = LatencyRig::new(root, subscribers);
        g.bench_function(&id, |b| b.iter_custom(|iters| rig.run(iters)));
        let samples = if cli.test { usize::MAX } else { LIVE_SAMPLES };
        rig.finish(samples, !cli.test);
    }
    g.finish();
}

// ---------------------------------------------------------------- live writer

struct WriterRig {
    /// Its benchmark name (see [`writer_label`]).
    label: String,
    store: Store,
    _dir: TempDir,
    subscribers: Subscribers,
    streams: Vec<Vec<String>>,
    templates: Vec<EventData>,
    ids: Ids,
    /// Per sample: events the slowest subscriber was behind when the
    /// appenders finished, and the time it took to catch up after.
    lags: Vec<(u64, Duration)>,
    /// How many of `lags` criterion's runs made.
    criterion_runs: usize,
}

impl WriterRig {
    fn new(root: &Path, subscribers: usize, delivery: Delivery) -> Self {
        let dir = tempfile::tempdir_in(root).expect("creating a temporary directory");
        let store = Store::open(dir.path(), Options::default().durability(Durability::Sync))
            .expect("opening the store");
        let label = writer_label(subscribers, delivery);
        let subscribers = Subscribers::start(&store, subscribers, 0, None, delivery);
        WriterRig {
            label,
            store,
            _dir: dir,
            subscribers,
            streams: (0..WRITER_THREADS)
                .map(|t| {
                    (0..STREAMS_PER_THREAD)
                        .map(|k| format!("bench-{t:02}-{k:02}"))
                        .collect()
                })
                .collect(),
            templates: (0..WRITER_THREADS)
                .map(|t| EventData::new(EVENT_TYPE, payload(t as u64 + 11)))
                .collect(),
            ids: Ids::new(),
            lags: Vec::new(),
            criterion_runs: 0,
        }
    }

    /// Every appender thread makes `appends` appends; returns the wall time
    /// from their release to the last one's return.
    fn run(&mut self, appends: u64) -> Duration {
        let barrier = Barrier::new(WRITER_THREADS + 1);
        let this = &*self;
        let started = thread::scope(|scope| {
            for t in 0..WRITER_THREADS {
                let barrier = &barrier;
                scope.spawn(move || {
                    barrier.wait();
                    for n in 0..appends {
                        let first = this.ids.take(WRITER_BATCH);
                        let events: Vec<EventData> = (0..WRITER_BATCH as u64)
                            .map(|i| this.templates[t].clone().with_id(this.ids.id(first + i)))
                            .collect();
                        let stream = &this.streams[t][n as usize % STREAMS_PER_THREAD];
                        this.store
                            .append(stream, ExpectedVersion::Any, &events)
                            .expect("append");
                    }
                });
            }
            barrier.wait();
            Instant::now()
        });
        let elapsed = started.elapsed();
        let end = self.store.last_position().map_or(0, |p| p + 1);
        if let Some(slowest) = self.subscribers.slowest() {
            let behind = end - slowest;
            let wait = self.subscribers.wait_for(end);
            self.lags.push((behind, wait));
        }
        elapsed
    }

    fn finish(self, samples: usize, write: bool) {
        let subscribers = self.subscribers.receivers.len();
        let label = &self.label;
        let runs = &self.lags[..self.criterion_runs];
        let measured = &runs[runs.len().saturating_sub(samples)..];
        if !measured.is_empty() {
            let max_behind = measured.iter().map(|l| l.0).max().unwrap_or(0);
            let mean_behind =
                measured.iter().map(|l| l.0 as f64).sum::<f64>() / measured.len() as f64;
            let max_wait = measured.iter().map(|l| l.1).max().unwrap_or_default();
            eprintln!(
                "live_writer/{label}: when the appenders finished a sample, \
                 the slowest subscriber was {mean_behind:.0} events behind on average \
                 ({max_behind} at most) and caught up within {:.1} ms",
                max_wait.as_secs_f64() * 1e3
            );
            if write {
                let json = format!(
                    "{{\n  \"benchmark\": \"live_writer/{label}\",\n  \
                     \"subscribers\": {subscribers},\n  \"samples\": {},\n  \
                     \"mean_events_behind\": {mean_behind:.0},\n  \"max_events_behind\": {max_behind},\n  \
                     \"max_catch_up_ns\": {}\n}}\n",
                    measured.len(),
                    max_wait.as_nanos()
                );
                write_result(&format!("writer-{label}.json"), &json);
            }
        }
        if subscribers > 0 {
            print_sharing(&format!("live_writer/{label}"), &self.store);
        }
        self.store.close().expect("closing the store");
        self.subscribers.join();
    }
}

fn bench_live_writer(c: &mut Criterion, cli: &Cli, root: &Path) {
    let mut g = c.benchmark_group("live_writer");
    g.sampling_mode(SamplingMode::Flat);
    g.sample_size(LIVE_SAMPLES);
    g.warm_up_time(Duration::from_secs(1));
    g.measurement_time(Duration::from_secs(6));
    g.throughput(Throughput::Elements((WRITER_THREADS * WRITER_BATCH) as u64));
    let mut rigs = Vec::new();
    for (subscribers, delivery) in WRITER_RIGS {
        let id = writer_label(subscribers, delivery);
        if !cli.selects(&format!("live_writer/{id}")) {
            continue;
        }
        if cli.list {
            g.bench_function(&id, |b| b.iter(|| unreachable!("listing only")));
            continue;
        }
        // Dirty pages of the previous benchmark are written back before
        // this one starts, not during its syncs.
        rustix::fs::sync();
        let mut rig = WriterRig::new(root, subscribers, delivery);
        g.bench_function(&id, |b| b.iter_custom(|iters| rig.run(iters)));
        rig.criterion_runs = rig.lags.len();
        rigs.push(rig);
    }
    g.finish();
    if rigs.len() >= 2 && !cli.test {
        interleave(&mut rigs);
    }
    let samples = if cli.test { usize::MAX } else { LIVE_SAMPLES };
    for rig in rigs {
        rig.finish(samples, !cli.test);
    }
}

/// Runs the writer rigs in alternating rounds (in order, then in reverse,
/// so a drift in machine load hits all alike) and reports each rig's rate
/// against the first's round by round: on a shared machine a steadier
/// figure than the ratio of criterion runs made a minute apart.
fn interleave(rigs: &mut [WriterRig]) {
    let mut rates: Vec<Vec<f64>> = vec![Vec::new(); rigs.len()];
    for round in 0..INTERLEAVED_ROUNDS {
        let mut order: Vec<usize> = (0..rigs.len()).collect();
        if round % 2 == 1 {
            order.reverse();
        }
        for i in order {
            let elapsed = rigs[i].run(INTERLEAVED_APPENDS);
            let events = INTERLEAVED_APPENDS * (WRITER_THREADS * WRITER_BATCH) as u64;
            rates[i].push(events as f64 / elapsed.as_secs_f64());
        }
    }
    let median = |v: &[f64]| {
        let mut v = v.to_vec();
        v.sort_by(f64::total_cmp);
        v[v.len() / 2]
    };
    // Per rig: the median and range of its per-round ratio to the first.
    let ratios: Vec<(f64, f64, f64)> = rates
        .iter()
        .map(|own| {
            let mut r: Vec<f64> = own.iter().zip(&rates[0]).map(|(a, b)| a / b).collect();
            r.sort_by(f64::total_cmp);
            (r[r.len() / 2], r[0], r[r.len() - 1])
        })
        .collect();
    for (i, rig) in rigs.iter().enumerate().skip(1) {
        let (ratio, low, high) = ratios[i];
        eprintln!(
            "live_writer interleaved, {INTERLEAVED_ROUNDS} rounds: {} {:.0} events/s, \
             {} {:.0} events/s (medians); ratio per round median {ratio:.2} \
             (from {low:.2} to {high:.2})",
            rigs[0].label,
            median(&rates[0]),
            rig.label,
            median(&rates[i]),
        );
    }
    let list = |v: &[f64]| {
        v.iter()
            .map(|x| format!("{x:.0}"))
            .collect::<Vec<_>>()
            .join(", ")
    };
    let joined =
        |f: &dyn Fn(usize) -> String| (0..rigs.len()).map(f).collect::<Vec<_>>().join(", ");
    let json = format!(
        "{{\n  \"benchmark\": \"live_writer interleaved\",\n  \"rounds\": {INTERLEAVED_ROUNDS},\n  \
         \"events_per_round\": {},\n  \"labels\": [{}],\n  \
         \"subscribers\": [{}],\n  \"rates\": [{}],\n  \"median_rates\": [{}],\n  \
         \"median_ratios\": [{}]\n}}\n",
        INTERLEAVED_APPENDS * (WRITER_THREADS * WRITER_BATCH) as u64,
        joined(&|i| format!("\"{}\"", rigs[i].label)),
        joined(&|i| rigs[i].subscribers.receivers.len().to_string()),
        joined(&|i| format!("[{}]", list(&rates[i]))),
        joined(&|i| format!("{:.0}", median(&rates[i]))),
        joined(&|i| format!("{:.4}", ratios[i].0)),
    );
    write_result("writer-interleaved.json", &json);
}

// ---------------------------------------------------------------- driver

fn subscribe_benches(c: &mut Criterion) {
    let cli = Cli::parse();
    let spec = if cli.test {
        Spec {
            events: 100_000,
            streams: 1_000,
            batch: 10,
        }
    } else {
        Spec {
            events: 10_000_000,
            streams: 100_000,
            batch: 10,
        }
    };
    bench_catch_up(c, &cli, &spec);
    let root = bench_root();
    bench_live_latency(c, &cli, &root);
    bench_live_writer(c, &cli, &root);
}

criterion_group! {
    name = benches;
    config = Criterion::default();
    targets = subscribe_benches
}
criterion_main!(benches);
