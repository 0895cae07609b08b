//! A sustained buffered append run from one thread: 256-byte events in
//! batches of 100, long enough that the page cache must be written back
//! while it runs. Prints events/s and MB/s.
//!
//! `cargo run --release --example sustained_append -- [EVENTS] [DIR]`
//! (10 million events in a temporary directory under `target/` by default;
//! run it under `perf stat -e task-clock` to see how much CPU it used).

use evstore::{Durability, EventData, ExpectedVersion, Options, Store, Uuid};
use std::time::Instant;

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let events: usize = match std::env::args().nth(1) {
        Some(n) => n.parse()?,
        None => 10_000_000,
    };
    std::fs::create_dir_all("target")?;
    let temp = tempfile::tempdir_in("target")?;
    let dir = std::env::args()
        .nth(2)
        .map(std::path::PathBuf::from)
        .unwrap_or_else(|| temp.path().join("store"));
    let store = Store::open(&dir, Options::default().durability(Durability::Buffered))?;
    let payload = bytes::Bytes::from(vec![0x5Au8; 256]);
    let mut batch: Vec<EventData> = (0..100)
        .map(|_| EventData::new("Measured", payload.clone()))
        .collect();
    let started = Instant::now();
    for i in 0..events / batch.len() {
        let stream = if i % 2 == 0 { "sensor-a" } else { "sensor-b" };
        // Every event needs its own id: the same ids again would be a retry.
        for (j, event) in batch.iter_mut().enumerate() {
            *event = event
                .clone()
                .with_id(Uuid::from_u128((i * 100 + j) as u128 + 1));
        }
        store.append(stream, ExpectedVersion::Any, &batch)?;
    }
    let appended = started.elapsed();
    store.flush()?;
    let durable = started.elapsed();
    let total = (events / batch.len() * batch.len()) as f64;
    println!(
        "{total} events of 256 B in {:.2?}: {:.0} events/s, {:.0} MB/s of payload (all durable after {:.2?})",
        appended,
        total / appended.as_secs_f64(),
        total * 256.0 / appended.as_secs_f64() / 1e6,
        durable
    );
    Ok(())
}
