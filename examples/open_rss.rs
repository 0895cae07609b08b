//! What opening a store costs in time and memory. Opens the store in DIR
//! and prints the process's resident set (from `/proc/self/status`: VmRSS,
//! its peak VmHWM, and VmRSS split into anonymous memory and mapped file
//! pages) before and after `Store::open`, the open time and
//! `recovery_stats`, and the resident set again after reading one event
//! from each of 1,000 streams.
//!
//! ```sh
//! cargo run --release --example open_rss -- DIR
//! cargo run --release --example open_rss -- --generate EVENTS STREAMS DIR
//! ```
//!
//! With `--generate`, a store of EVENTS events (256-byte payloads) over
//! STREAMS streams is first made in DIR, which must not exist yet: appends
//! of a few events each go round the streams in rounds, so every stream's
//! events are spread over the log. The measurement then runs in a new
//! process (this example runs itself again on DIR), so the generation's
//! memory is not counted. The stores `cargo bench --bench read` makes work
//! too, e.g. `target/bench-data/read/evstore-10000000`.
//!
//! The 1,000 streams are the distinct streams of events sampled at evenly
//! spaced positions of the log with `read_all` (the resident set is printed
//! after that sampling too). Linux only: it reads `/proc`.

use evstore::{Direction, Durability, EventData, ExpectedVersion, Options, Store, Uuid};
use std::collections::HashSet;
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::time::Instant;

type Error = Box<dyn std::error::Error>;

/// Streams to read one event from.
const STREAMS_TO_READ: usize = 1_000;
/// Most positions sampled to find them.
const MAX_SAMPLES: u64 = 20_000;
/// Payload bytes of generated events.
const PAYLOAD_LEN: usize = 256;

const USAGE: &str = "usage: open_rss DIR\n       open_rss --generate EVENTS STREAMS DIR";

fn main() -> ExitCode {
    match run() {
        Ok(code) => code,
        Err(e) => {
            eprintln!("open_rss: {e}");
            ExitCode::FAILURE
        }
    }
}

fn run() -> Result<ExitCode, Error> {
    let args: Vec<String> = std::env::args().skip(1).collect();
    match args.as_slice() {
        [flag, events, streams, dir] if flag == "--generate" => {
            let events: u64 = events.parse().map_err(|e| format!("EVENTS: {e}"))?;
            let streams: u64 = streams.parse().map_err(|e| format!("STREAMS: {e}"))?;
            if streams == 0 || events == 0 {
                return Err("EVENTS and STREAMS must be positive".into());
            }
            let dir = PathBuf::from(dir);
            if dir.exists() {
                return Err(format!("{} exists already", dir.display()).into());
            }
            generate(&dir, events, streams)?;
            // Measure in a fresh process.
            let status = std::process::Command::new(std::env::current_exe()?)
                .arg(&dir)
                .status()?;
            Ok(if status.success() {
                ExitCode::SUCCESS
            } else {
                ExitCode::FAILURE
            })
        }
        [dir] if !dir.starts_with('-') => {
            measure(Path::new(dir))?;
            Ok(ExitCode::SUCCESS)
        }
        _ => {
            eprintln!("{USAGE}");
            Ok(ExitCode::from(2))
        }
    }
}

fn options() -> Options {
    Options::default().durability(Durability::Buffered)
}

// ---------------------------------------------------------------- memory

/// The memory lines of `/proc/self/status`, in KiB.
#[derive(Debug, Default, Clone, Copy)]
struct Memory {
    rss: u64,
    hwm: u64,
    anon: u64,
    file: u64,
}

impl Memory {
    fn now() -> Result<Self, Error> {
        let status = std::fs::read_to_string("/proc/self/status")?;
        let mut memory = Memory::default();
        for line in status.lines() {
            let Some((key, value)) = line.split_once(':') else {
                continue;
            };
            let field = match key {
                "VmRSS" => &mut memory.rss,
                "VmHWM" => &mut memory.hwm,
                "RssAnon" => &mut memory.anon,
                "RssFile" => &mut memory.file,
                _ => continue,
            };
            *field = value
                .trim()
                .trim_end_matches("kB")
                .trim()
                .parse()
                .map_err(|e| format!("/proc/self/status {key}: {e}"))?;
        }
        Ok(memory)
    }

    fn print(&self, when: &str) {
        let mib = |kib: u64| kib as f64 / 1024.0;
        println!(
            "{when:<34} VmRSS {:>9.1} MiB  VmHWM {:>9.1} MiB  (RssAnon {:>9.1} MiB, RssFile {:>9.1} MiB)",
            mib(self.rss),
            mib(self.hwm),
            mib(self.anon),
            mib(self.file)
        );
    }
}

// ---------------------------------------------------------------- measure

fn measure(dir: &Path) -> Result<(), Error> {
    if !dir.join(evstore::SEGMENTS_DIR).is_dir() {
        return Err(format!("{} holds no store", dir.display()).into());
    }
    Memory::now()?.print("before open");
    let started = Instant::now();
    let store = Store::open(dir, options())?;
    let open_time = started.elapsed();
    Memory::now()?.print("after open");
    println!("open took {open_time:.2?}");
    println!("recovery_stats: {:?}", store.recovery_stats());
    let events = store.recovery_stats().events;
    if events == 0 {
        println!("the store is empty");
        return Ok(store.close()?);
    }

    let streams = sample_streams(&store, events)?;
    Memory::now()?.print(&format!("after sampling {} streams", streams.len()));
    let started = Instant::now();
    let mut bytes = 0usize;
    for stream in &streams {
        let events = store.read_stream(stream, 0, Direction::Forward, 1)?;
        bytes += events.iter().map(|e| e.payload.len()).sum::<usize>();
    }
    let read_time = started.elapsed();
    Memory::now()?.print(&format!("after reading {} streams", streams.len()));
    println!(
        "read the first event of {} streams ({bytes} payload bytes) in {read_time:.2?}",
        streams.len()
    );
    let started = Instant::now();
    store.close()?;
    println!("close took {:.2?}", started.elapsed());
    Ok(())
}

/// Up to [`STREAMS_TO_READ`] distinct streams, taken from events at evenly
/// spaced positions of the log.
fn sample_streams(store: &Store, events: u64) -> Result<Vec<String>, Error> {
    let samples = MAX_SAMPLES.min(events);
    let mut seen = HashSet::new();
    let mut streams = Vec::with_capacity(STREAMS_TO_READ);
    for i in 0..samples {
        if streams.len() == STREAMS_TO_READ {
            break;
        }
        let position = (u128::from(i) * u128::from(events) / u128::from(samples)) as u64;
        for event in store.read_all(position, Direction::Forward, 1)? {
            let name = event.stream.to_string();
            if seen.insert(name.clone()) {
                streams.push(name);
            }
        }
    }
    Ok(streams)
}

// ---------------------------------------------------------------- generate

/// Makes a store of `events` events over `streams` streams in `dir`.
fn generate(dir: &Path, events: u64, streams: u64) -> Result<(), Error> {
    // About ten appends per stream, in rounds over every stream, each round
    // in another order.
    let batch = (events / streams / 10).max(1);
    let multiplier = [1_000_003u64, 1_000_033, 1_000_037, 1_000_039]
        .into_iter()
        .find(|&p| !streams.is_multiple_of(p))
        .unwrap_or(1);
    let names: Vec<String> = (0..streams).map(|i| format!("stream-{i:08}")).collect();
    let mut x = 0x9e37_79b9_7f4a_7c15u64;
    let templates: Vec<EventData> = (0..16)
        .map(|_| {
            let payload: Vec<u8> = (0..PAYLOAD_LEN)
                .map(|_| {
                    x ^= x << 13;
                    x ^= x >> 7;
                    x ^= x << 17;
                    x as u8
                })
                .collect();
            EventData::new("Generated", payload)
        })
        .collect();

    let started = Instant::now();
    eprintln!(
        "generating {events} events over {streams} streams in {}",
        dir.display()
    );
    let store = Store::open(dir, options())?;
    let (mut written, mut k) = (0u64, 0u64);
    let report_every = (events / 10).max(1);
    let mut next_report = report_every;
    let mut batch_events = Vec::with_capacity(batch as usize);
    while written < events {
        let (round, i) = (k / streams, k % streams);
        let offset = round.wrapping_mul(0x9e37_79b9_7f4a_7c15) % streams;
        let stream = ((u128::from(i) * u128::from(multiplier) + u128::from(offset))
            % u128::from(streams)) as usize;
        let count = batch.min(events - written);
        batch_events.clear();
        batch_events.extend((written..written + count).map(|n| {
            templates[n as usize % templates.len()]
                .clone()
                .with_id(Uuid::from_u64_pair(0x6f70_656e_5f72_7373, n))
        }));
        store.append(&names[stream], ExpectedVersion::Any, &batch_events)?;
        written += count;
        k += 1;
        if written >= next_report && written < events {
            eprintln!("{written}/{events} events, {:.1?}", started.elapsed());
            next_report += report_every;
        }
    }
    store.close()?;
    eprintln!("generated in {:.1?}", started.elapsed());
    Ok(())
}
