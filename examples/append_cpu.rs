//! CPU time per durable append: `THREADS` threads (default 16) each append
//! `PER_THREAD` single 256-byte events (default 4,000) to a stream of their
//! own with an exact expected version, in a new store under `target/`.
//! Prints events/s and the process's user + system CPU microseconds per
//! append, read from `/proc/self/stat` before and after.
//!
//! With the `metrics` feature a Prometheus recorder is installed (upkeep
//! and a scrape every second), with `tracing` a subscriber keeping `INFO`
//! and above: `benches/observability_overhead.py` runs it with and without
//! them, interleaved, to measure what the features cost when on.
//!
//! ```text
//! cargo run --release --example append_cpu [THREADS] [PER_THREAD]
//! ```

use evstore::{EventData, ExpectedVersion, Options, Store};
use std::time::Instant;

fn main() -> Result<(), Box<dyn std::error::Error>> {
    install_observability();
    let mut args = std::env::args().skip(1);
    let threads: usize = args.next().and_then(|s| s.parse().ok()).unwrap_or(16);
    let per_thread: usize = args.next().and_then(|s| s.parse().ok()).unwrap_or(4000);
    std::fs::create_dir_all("target")?;
    let dir = tempfile::tempdir_in("target")?;
    let store = Store::open(dir.path(), Options::default())?;
    let cpu_before = cpu_seconds()?;
    let started = Instant::now();
    std::thread::scope(|scope| {
        for t in 0..threads {
            let store = &store;
            scope.spawn(move || -> evstore::Result<()> {
                let stream = format!("account-{t}");
                let mut expected = ExpectedVersion::NoStream;
                for _ in 0..per_thread {
                    let event = EventData::new("Deposited", vec![1u8; 256]);
                    let written = store.append(&stream, expected, &[event])?;
                    expected = ExpectedVersion::Exact(written.last_version);
                }
                Ok(())
            });
        }
    });
    let elapsed = started.elapsed().as_secs_f64();
    let cpu = cpu_seconds()? - cpu_before;
    let appends = (threads * per_thread) as f64;
    println!(
        "{:.0} events/s, {:.2} us CPU per append",
        appends / elapsed,
        cpu / appends * 1e6
    );
    store.close()?;
    Ok(())
}

/// User plus system CPU time of this process so far, in seconds.
fn cpu_seconds() -> Result<f64, Box<dyn std::error::Error>> {
    let stat = std::fs::read_to_string("/proc/self/stat")?;
    // Fields after the command name, which is in parentheses and may hold
    // spaces: utime and stime are the 12th and 13th of them.
    let after_name = stat.rsplit_once(')').map_or("", |(_, rest)| rest);
    let fields: Vec<&str> = after_name.split_whitespace().collect();
    let ticks = |i: usize| -> Result<f64, Box<dyn std::error::Error>> {
        Ok(fields
            .get(i)
            .ok_or("short /proc/self/stat")?
            .parse::<f64>()?)
    };
    // Clock ticks per second: 100 on Linux for these fields.
    Ok((ticks(11)? + ticks(12)?) / 100.0)
}

fn install_observability() {
    #[cfg(feature = "metrics")]
    if let Ok(handle) = metrics_exporter_prometheus::PrometheusBuilder::new().install_recorder() {
        std::thread::spawn(move || loop {
            std::thread::sleep(std::time::Duration::from_secs(1));
            handle.run_upkeep();
            drop(handle.render());
        });
    }
    #[cfg(feature = "tracing")]
    {
        use tracing_subscriber::layer::SubscriberExt;
        let subscriber =
            tracing_subscriber::registry().with(tracing::level_filters::LevelFilter::INFO);
        drop(tracing::subscriber::set_global_default(subscriber));
    }
}
