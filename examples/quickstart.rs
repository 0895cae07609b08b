//! Opens a store, appends orders from several threads (sharing fsyncs through
//! group commit), rebuilds one order from its stream, reads the global log,
//! then reopens the store to show everything survived.
//!
//! `cargo run --release --example quickstart [DIR]` (a temporary directory
//! when DIR is not given).

use evstore::{Direction, EventData, ExpectedVersion, Options, Store};
use std::time::Instant;

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let temp = tempfile::tempdir()?;
    let dir = std::env::args()
        .nth(1)
        .map(std::path::PathBuf::from)
        .unwrap_or_else(|| temp.path().join("store"));
    let store = Store::open(&dir, Options::default())?;
    println!("opened {}", dir.display());

    let threads = 8;
    let orders_per_thread = 250;
    let started = Instant::now();
    std::thread::scope(|scope| {
        for t in 0..threads {
            let store = store.clone();
            scope.spawn(move || -> evstore::Result<()> {
                for i in 0..orders_per_thread {
                    let stream = format!("order-{t}-{i}");
                    let placed = store.append(
                        &stream,
                        ExpectedVersion::NoStream,
                        &[EventData::new(
                            "OrderPlaced",
                            format!("{{\"items\":{}}}", i % 5 + 1),
                        )],
                    )?;
                    store.append(
                        &stream,
                        ExpectedVersion::Exact(placed.last_version),
                        &[
                            EventData::new("OrderPaid", &b"{\"method\":\"card\"}"[..]),
                            EventData::new("OrderShipped", &b"{}"[..]),
                        ],
                    )?;
                }
                Ok(())
            });
        }
    });
    let elapsed = started.elapsed();
    let appends = threads * orders_per_thread * 2;
    println!(
        "{appends} durable appends from {threads} threads in {:.2?} ({:.0} appends/s, each acknowledged after fdatasync)",
        elapsed,
        appends as f64 / elapsed.as_secs_f64()
    );

    let history = store.read_stream("order-3-7", 0, Direction::Forward, 100)?;
    println!("order-3-7 rebuilt from {} events:", history.len());
    for event in &history {
        println!(
            "  v{} @{} {} {}",
            event.version,
            event.position,
            &*event.event_type,
            String::from_utf8_lossy(&event.payload)
        );
    }
    let newest = store.read_all(u64::MAX, Direction::Backward, 3)?;
    println!("newest events in the global log:");
    for event in &newest {
        println!(
            "  @{} {} v{} {}",
            event.position, &*event.stream, event.version, &*event.event_type
        );
    }

    let last = store.last_position();
    store.close()?;
    let reopened = Store::open(&dir, Options::default())?;
    assert_eq!(reopened.last_position(), last);
    println!(
        "reopened: {} events in {} streams, last position {:?}",
        reopened.recovery_stats().events,
        reopened.stream_count(),
        reopened.last_position()
    );
    Ok(())
}
