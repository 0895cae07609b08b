//! A live view of `Store::metrics()`: the quickstart's kind of workload
//! (durable appends from several threads, a projection, a subscriber that
//! reads slowly) runs for a few seconds while one line of figures is printed
//! every second: throughput, fsync latency and the bytes each sync carried,
//! group sizes, queue depth, and how far the subscriber and the projection
//! lag. Latency percentiles are since the store opened; the other figures
//! are per second.
//!
//! ```text
//! cargo run --release --example live_metrics [SECONDS]
//! ```

use evstore::{EventData, ExpectedVersion, Filter, Metrics, Options, ProjectionOptions, Store};
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

const APPENDERS: usize = 4;

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let seconds: u64 = std::env::args()
        .nth(1)
        .and_then(|s| s.parse().ok())
        .unwrap_or(5);
    let dir = tempfile::tempdir()?;
    let store = Store::open(dir.path(), Options::default())?;
    let projection =
        store.run_projection("order-totals", ProjectionOptions::default(), |_| Ok(()))?;
    let stop = AtomicBool::new(false);

    std::thread::scope(|scope| -> evstore::Result<()> {
        for t in 0..APPENDERS {
            let (store, stop) = (&store, &stop);
            scope.spawn(move || -> evstore::Result<()> {
                let mut n = 0u64;
                while !stop.load(Ordering::Relaxed) {
                    let event = EventData::new("OrderPlaced", vec![b'x'; 256]);
                    store.append(
                        &format!("order-{t}-{}", n % 1000),
                        ExpectedVersion::Any,
                        &[event],
                    )?;
                    n += 1;
                }
                Ok(())
            });
        }
        // A subscriber that takes 100 events a second: its lag grows.
        let (store_ref, stop_ref) = (&store, &stop);
        scope.spawn(move || -> evstore::Result<()> {
            let mut subscription = store_ref.subscribe_all(0, Filter::all());
            while !stop_ref.load(Ordering::Relaxed) {
                subscription.next_timeout(Duration::from_millis(10))?;
                std::thread::sleep(Duration::from_millis(10));
            }
            Ok(())
        });

        println!(
            "{:>4}  {:>9}  {:>10}  {:>10}  {:>11}  {:>9}  {:>6}  {:>12}  {:>10}",
            "sec",
            "appends/s",
            "fsync p50",
            "fsync p99",
            "bytes/fsync",
            "per group",
            "queue",
            "sub lag",
            "proj lag"
        );
        let mut last = store.metrics();
        let started = Instant::now();
        for second in 1..=seconds {
            let wake = started + Duration::from_secs(second);
            std::thread::sleep(wake.saturating_duration_since(Instant::now()));
            let now = store.metrics();
            print_line(second, &last, &now);
            last = now;
        }
        stop.store(true, Ordering::Relaxed);
        Ok(())
    })?;
    let stats = projection.stop()?;
    println!("projection handled {} events", stats.events_handled);
    store.close()?;
    Ok(())
}

/// One line: what changed since `last`, and where things stand in `now`.
fn print_line(second: u64, last: &Metrics, now: &Metrics) {
    let appends = now.appends.durable.commits - last.appends.durable.commits;
    let syncs = now.sync.latency.count - last.sync.latency.count;
    let synced = now.sync.bytes_per_sync.sum - last.sync.bytes_per_sync.sum;
    let groups =
        now.group_commit.commands_per_group.count - last.group_commit.commands_per_group.count;
    let commands =
        now.group_commit.commands_per_group.sum - last.group_commit.commands_per_group.sum;
    let subscriber_lag = now.subscribers.iter().map(|s| s.lag).max().unwrap_or(0);
    let projection_lag = now.projections.first().map_or(0, |p| p.lag);
    println!(
        "{second:>4}  {appends:>9}  {:>10}  {:>10}  {:>11}  {:>9.1}  {:>6}  {subscriber_lag:>12}  {projection_lag:>10}",
        micros(now.sync.latency.p50),
        micros(now.sync.latency.p99),
        synced.checked_div(syncs).unwrap_or(0),
        ratio(commands, groups),
        now.group_commit.queued_commands,
    );
}

fn micros(nanos: u64) -> String {
    format!("{:.0} µs", nanos as f64 / 1_000.0)
}

fn ratio(a: u64, b: u64) -> f64 {
    if b == 0 {
        0.0
    } else {
        a as f64 / b as f64
    }
}
