//! `bench`: append to a new store from several threads, then read it back.

use crate::Outcome;
use anyhow::{anyhow, bail, Context};
use bytes::Bytes;
use evstore::{Direction, Durability, EventData, ExpectedVersion, Options, Store};
use hdrhistogram::Histogram;
use indicatif::{HumanBytes, ProgressBar, ProgressStyle};
use std::io::{self, BufWriter, Write};
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

pub struct BenchOptions {
    pub dir: PathBuf,
    pub events: u64,
    pub threads: usize,
    pub size: usize,
    pub batch: usize,
    pub streams: usize,
    pub durability: Durability,
}

/// Events per read while reading back.
const READ_PAGE: usize = 1000;

pub fn run(options: &BenchOptions) -> anyhow::Result<Outcome> {
    check_new_dir(&options.dir)?;
    let store_options = Options::default().durability(options.durability);
    let store = Store::open(&options.dir, store_options.clone())
        .with_context(|| format!("creating a store in {}", options.dir.display()))?;

    let mut out = BufWriter::new(io::stdout().lock());
    writeln!(
        out,
        "bench: {} events of {} bytes, {} per append, {} threads, {} streams, {} durability, in {}",
        options.events,
        options.size,
        options.batch,
        options.threads,
        options.streams,
        match options.durability {
            Durability::Sync => "sync",
            Durability::Buffered => "buffered",
        },
        options.dir.display()
    )?;
    out.flush()?;

    let appended = append_phase(&store, options)?;
    let payload_bytes = options.events * options.size as u64;
    let append_secs = appended.elapsed.as_secs_f64();
    writeln!(out)?;
    writeln!(
        out,
        "append      {} events in {:.3} s: {} events/s, {:.1} MB/s of payload",
        options.events,
        append_secs,
        rate(options.events, appended.elapsed),
        megabytes_per_sec(payload_bytes, appended.elapsed)
    )?;
    if let Some(flush) = appended.flush {
        writeln!(out, "flush       {}", human_duration(flush))?;
    }
    let h = &appended.latency;
    writeln!(
        out,
        "latency     per append ({} appends): p50 {}  p90 {}  p99 {}  p99.9 {}  max {}",
        h.len(),
        nanos(h.value_at_quantile(0.50)),
        nanos(h.value_at_quantile(0.90)),
        nanos(h.value_at_quantile(0.99)),
        nanos(h.value_at_quantile(0.999)),
        nanos(h.max()),
    )?;
    write_write_path_metrics(&mut out, &store.metrics())?;
    out.flush()?;

    let (count, bytes, elapsed) = read_all_phase(&store, options.events)?;
    writeln!(
        out,
        "read_all    {count} events in {:.3} s: {} events/s, {:.1} MB/s of payload",
        elapsed.as_secs_f64(),
        rate(count, elapsed),
        megabytes_per_sec(bytes, elapsed)
    )?;
    out.flush()?;

    let (streams, count, bytes, elapsed) = read_streams_phase(&store, options.events)?;
    writeln!(
        out,
        "read_stream {count} events of {streams} streams in {:.3} s: {} events/s, {:.1} MB/s of payload",
        elapsed.as_secs_f64(),
        rate(count, elapsed),
        megabytes_per_sec(bytes, elapsed)
    )?;
    if count != options.events {
        bail!(
            "read back {count} events from the streams, but {} were appended",
            options.events
        );
    }

    store.close().context("closing the store")?;
    let started = Instant::now();
    let reopened = Store::open(&options.dir, store_options).context("reopening the store")?;
    let reopen = started.elapsed();
    let recovered = reopened.last_position().map_or(0, |p| p + 1);
    drop(reopened);
    writeln!(
        out,
        "reopen      {} ({recovered} events)",
        human_duration(reopen)
    )?;
    out.flush()?;
    Ok(Outcome::Success)
}

/// A benchmark needs a store of its own: an existing one would skew the
/// figures, and appending to someone's data would be worse.
fn check_new_dir(dir: &Path) -> anyhow::Result<()> {
    match std::fs::read_dir(dir) {
        Ok(mut entries) => {
            if entries.next().is_some() {
                bail!(
                    "{} exists and is not empty; bench creates a new store, give it a new or empty directory",
                    dir.display()
                );
            }
            Ok(())
        }
        Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(()),
        Err(e) if e.kind() == io::ErrorKind::NotADirectory => {
            bail!("{} exists and is not a directory", dir.display())
        }
        Err(e) => Err(e).with_context(|| format!("reading {}", dir.display())),
    }
}

struct Appended {
    elapsed: Duration,
    flush: Option<Duration>,
    latency: Histogram<u64>,
}

fn new_histogram() -> anyhow::Result<Histogram<u64>> {
    // 1 ns to 10 minutes, 3 significant digits.
    Histogram::new_with_bounds(1, 600_000_000_000, 3).map_err(|e| anyhow!("{e}"))
}

fn append_phase(store: &Store, options: &BenchOptions) -> anyhow::Result<Appended> {
    let payload = Bytes::from(
        (0..options.size)
            .map(|i| (i % 251) as u8)
            .collect::<Vec<u8>>(),
    );
    let bar = ProgressBar::new(options.events).with_style(bar_style("appending"));
    let threads = options.threads as u64;
    let started = Instant::now();
    let histograms: Vec<anyhow::Result<Histogram<u64>>> = std::thread::scope(|scope| {
        let handles: Vec<_> = (0..threads)
            .map(|thread| {
                // The first `events % threads` threads take one more.
                let share = options.events / threads + u64::from(thread < options.events % threads);
                let bar = bar.clone();
                let payload = payload.clone();
                scope.spawn(move || -> anyhow::Result<Histogram<u64>> {
                    let mut latency = new_histogram()?;
                    let mut left = share;
                    let mut append = 0u64;
                    while left > 0 {
                        let count = left.min(options.batch as u64);
                        let stream = format!(
                            "bench-{:06}",
                            (thread + append * threads) % options.streams as u64
                        );
                        let events: Vec<EventData> = (0..count)
                            .map(|_| EventData::new("BenchEvent", payload.clone()))
                            .collect();
                        let sent = Instant::now();
                        store
                            .append(&stream, ExpectedVersion::Any, &events)
                            .with_context(|| format!("appending to {stream}"))?;
                        let nanos = u64::try_from(sent.elapsed().as_nanos()).unwrap_or(u64::MAX);
                        latency.saturating_record(nanos.max(1));
                        left -= count;
                        append += 1;
                        bar.inc(count);
                    }
                    Ok(latency)
                })
            })
            .collect();
        handles
            .into_iter()
            .map(|h| {
                h.join()
                    .unwrap_or_else(|_| Err(anyhow!("an appending thread failed")))
            })
            .collect()
    });
    let elapsed = started.elapsed();
    bar.finish_and_clear();
    let mut latency = new_histogram()?;
    for histogram in histograms {
        latency
            .add(histogram?)
            .map_err(|e| anyhow!("merging latencies: {e}"))?;
    }
    let flush = if options.durability == Durability::Buffered {
        let started = Instant::now();
        store.flush().context("flushing")?;
        Some(started.elapsed())
    } else {
        None
    };
    Ok(Appended {
        elapsed,
        flush,
        latency,
    })
}

fn read_all_phase(store: &Store, expected: u64) -> anyhow::Result<(u64, u64, Duration)> {
    let bar = ProgressBar::new(expected).with_style(bar_style("read_all"));
    let started = Instant::now();
    let (mut count, mut bytes, mut next) = (0u64, 0u64, 0u64);
    loop {
        let events = store
            .read_all(next, Direction::Forward, READ_PAGE)
            .with_context(|| format!("reading the log at position {next}"))?;
        let Some(last) = events.last() else {
            break;
        };
        next = last.position + 1;
        count += events.len() as u64;
        bytes += events.iter().map(|e| e.payload.len() as u64).sum::<u64>();
        bar.inc(events.len() as u64);
    }
    let elapsed = started.elapsed();
    bar.finish_and_clear();
    Ok((count, bytes, elapsed))
}

fn read_streams_phase(store: &Store, expected: u64) -> anyhow::Result<(u64, u64, u64, Duration)> {
    let bar = ProgressBar::new(expected).with_style(bar_style("read_stream"));
    let started = Instant::now();
    let (mut streams, mut count, mut bytes) = (0u64, 0u64, 0u64);
    for info in store.streams() {
        let info = info.context("listing streams")?;
        streams += 1;
        let mut next = 0u64;
        loop {
            let events = store
                .read_stream(&info.name, next, Direction::Forward, READ_PAGE)
                .with_context(|| format!("reading stream {} at version {next}", info.name))?;
            let Some(last) = events.last() else {
                break;
            };
            next = last.version + 1;
            count += events.len() as u64;
            bytes += events.iter().map(|e| e.payload.len() as u64).sum::<u64>();
            bar.inc(events.len() as u64);
        }
    }
    let elapsed = started.elapsed();
    bar.finish_and_clear();
    Ok((streams, count, bytes, elapsed))
}

/// The store's own figures for the append phase: what its `fdatasync`s
/// cost and carried, and how appends were grouped.
fn write_write_path_metrics(out: &mut impl Write, m: &evstore::Metrics) -> io::Result<()> {
    let sync = &m.sync.latency;
    writeln!(
        out,
        "fsync       {} syncs: p50 {}  p90 {}  p99 {}  p99.9 {}  max {}",
        sync.count,
        nanos(sync.p50),
        nanos(sync.p90),
        nanos(sync.p99),
        nanos(sync.p999),
        nanos(sync.max),
    )?;
    let bytes = &m.sync.bytes_per_sync;
    writeln!(
        out,
        "            bytes made durable per sync: p50 {}  p99 {}  max {}  mean {}",
        HumanBytes(bytes.p50),
        HumanBytes(bytes.p99),
        HumanBytes(bytes.max),
        HumanBytes(bytes.mean() as u64),
    )?;
    let groups = &m.group_commit.commands_per_group;
    writeln!(
        out,
        "groups      {} groups: commands per group p50 {}  p99 {}  max {}  mean {:.1}; back-pressure waits {}",
        groups.count,
        groups.p50,
        groups.p99,
        groups.max,
        groups.mean(),
        m.group_commit.back_pressure.count,
    )?;
    let rollovers = &m.segments.rollovers;
    writeln!(
        out,
        "rollovers   {}: p50 {}  max {}; waiting for preallocation max {}",
        rollovers.count,
        nanos(rollovers.p50),
        nanos(rollovers.max),
        nanos(m.segments.preallocation_waits.max),
    )
}

fn bar_style(phase: &str) -> ProgressStyle {
    ProgressStyle::with_template(&format!(
        "{phase:<11} [{{bar:30}}] {{human_pos}}/{{human_len}} events  {{per_sec}}  eta {{eta}}"
    ))
    .unwrap_or_else(|_| ProgressStyle::default_bar())
    .progress_chars("=> ")
}

fn rate(count: u64, elapsed: Duration) -> String {
    let per_sec = count as f64 / elapsed.as_secs_f64().max(1e-9);
    if per_sec >= 1e6 {
        format!("{:.2} M", per_sec / 1e6)
    } else if per_sec >= 1e3 {
        format!("{:.1} k", per_sec / 1e3)
    } else {
        format!("{per_sec:.0}")
    }
}

fn megabytes_per_sec(bytes: u64, elapsed: Duration) -> f64 {
    bytes as f64 / 1e6 / elapsed.as_secs_f64().max(1e-9)
}

fn nanos(value: u64) -> String {
    human_duration(Duration::from_nanos(value))
}

fn human_duration(d: Duration) -> String {
    let nanos = d.as_nanos();
    if nanos < 1_000 {
        format!("{nanos} ns")
    } else if nanos < 1_000_000 {
        format!("{:.1} µs", nanos as f64 / 1e3)
    } else if nanos < 1_000_000_000 {
        format!("{:.2} ms", nanos as f64 / 1e6)
    } else {
        format!("{:.2} s", nanos as f64 / 1e9)
    }
}
