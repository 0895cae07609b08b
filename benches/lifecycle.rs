//! Data lifecycle: scavenging against a plain copy of the same bytes,
//! durable appends while a scavenge runs against appends alone, and reading
//! a stream that keeps its last 100 events whatever its history.
//!
//! Groups (every benchmark reports `Throughput::Elements`; `python3
//! benches/summarize_lifecycle.py target/criterion` prints the ratios):
//!
//! * `lifecycle_scavenge`: `scavenge` rewrites a store of 16 sealed 4 MiB
//!   segments where every other event belongs to a hard-deleted stream
//!   (256-byte payloads); `copy` reads the same segment files and writes
//!   them to new files with one `fdatasync` each, the least any rewrite
//!   costs. Elements: the bytes of the segments. Each iteration starts
//!   from a fresh copy of the store, made outside the measurement.
//! * `lifecycle_append`: 16 threads appending single 256-byte events
//!   durably, `idle` against `scavenging`, where another thread scavenges
//!   the same store over and over (rewriting while there is anything to
//!   reclaim, then reading every sealed segment to find there is not) and
//!   new events keep expiring (the appended streams keep their last 10);
//!   `scavenging_32MBps` the same with `Options::scavenge_bytes_per_second`
//!   at 32 MiB/s. Elements: events appended.
//! * `lifecycle_read`: `read_stream` of a stream whose metadata keeps its
//!   last 100 events, with 100, 10,000 and 100,000 events of history (the
//!   last 100 of each appended interleaved, so they lie alike in the log).
//!   Elements: events returned (100).
//!
//! Data lives under `target/bench-data/lifecycle` (`EVSTORE_BENCH_DIR`
//! overrides `target/bench-data`), on the real disk.

use criterion::{criterion_group, criterion_main, BenchmarkId, Criterion, Throughput};
use evstore::{DeleteMode, Direction, EventData, ExpectedVersion, Options, Store, StreamMetadata};
use std::hint::black_box;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Barrier};
use std::time::{Duration, Instant};

const SEGMENT_SIZE: u64 = 4 << 20;
const PAYLOAD: usize = 256;

fn data_root() -> PathBuf {
    let base = std::env::var_os("EVSTORE_BENCH_DIR")
        .map_or_else(|| PathBuf::from("target/bench-data"), PathBuf::from);
    let root = base.join("lifecycle");
    std::fs::create_dir_all(&root).expect("bench data directory");
    root
}

fn event() -> EventData {
    EventData::new("Noted", vec![0x5a; PAYLOAD])
}

/// A store of 16 sealed segments, every other event in a deleted stream.
fn scavenge_template(root: &Path) -> PathBuf {
    let dir = root.join("scavenge-template");
    if dir.join("complete").exists() {
        return dir;
    }
    let _ = std::fs::remove_dir_all(&dir);
    let building = Options::default()
        .segment_size(SEGMENT_SIZE)
        .durability(evstore::Durability::Buffered);
    let store = Store::open(&dir, building).expect("open");
    let batch: Vec<EventData> = (0..50).map(|_| event()).collect();
    let mut n = 0u64;
    while store.log_info().segments.len() <= 16 {
        let stream = if n.is_multiple_of(2) {
            "kept"
        } else {
            "dropped"
        };
        let batch: Vec<EventData> = batch.iter().map(|_| event()).collect();
        store
            .append(
                &format!("{stream}-{}", n % 64),
                ExpectedVersion::Any,
                &batch,
            )
            .expect("append");
        n += 1;
    }
    for k in (1..64).step_by(2) {
        store
            .delete_stream(
                &format!("dropped-{k}"),
                ExpectedVersion::Any,
                DeleteMode::Hard,
            )
            .expect("delete");
    }
    store.close().expect("close");
    std::fs::write(dir.join("complete"), b"").expect("marker");
    dir
}

fn copy_dir(from: &Path, to: &Path) {
    let _ = std::fs::remove_dir_all(to);
    std::fs::create_dir_all(to).expect("copy dir");
    for entry in std::fs::read_dir(from).expect("read dir") {
        let entry = entry.expect("entry");
        let target = to.join(entry.file_name());
        if entry.file_type().expect("type").is_dir() {
            copy_dir(&entry.path(), &target);
        } else {
            std::fs::copy(entry.path(), &target).expect("copy");
        }
    }
}

/// The sealed segment files of a store, and their total size.
fn sealed_segments(store: &Store) -> (Vec<PathBuf>, u64) {
    let segments: Vec<_> = store
        .log_info()
        .segments
        .into_iter()
        .filter(|s| s.sealed)
        .collect();
    let bytes = segments.iter().map(|s| s.file_len).sum();
    (segments.into_iter().map(|s| s.path).collect(), bytes)
}

fn scavenge_benches(c: &mut Criterion, root: &Path) {
    let template = scavenge_template(root);
    let work = root.join("scavenge-work");
    let bytes = {
        copy_dir(&template, &work);
        let store =
            Store::open(&work, Options::default().segment_size(SEGMENT_SIZE)).expect("open");
        let (_, bytes) = sealed_segments(&store);
        store.close().expect("close");
        bytes
    };
    let mut group = c.benchmark_group("lifecycle_scavenge");
    group.throughput(Throughput::Elements(bytes));
    group.sample_size(10);
    group.bench_function("scavenge", |b| {
        b.iter_custom(|iters| {
            let mut total = Duration::ZERO;
            for _ in 0..iters {
                copy_dir(&template, &work);
                let store = Store::open(&work, Options::default().segment_size(SEGMENT_SIZE))
                    .expect("open");
                let started = Instant::now();
                let report = store.scavenge().expect("scavenge");
                total += started.elapsed();
                assert!(report.segments_rewritten >= 16, "{report:?}");
                store.close().expect("close");
            }
            total
        });
    });
    group.bench_function("copy", |b| {
        b.iter_custom(|iters| {
            let mut total = Duration::ZERO;
            for _ in 0..iters {
                copy_dir(&template, &work);
                let store = Store::open(&work, Options::default().segment_size(SEGMENT_SIZE))
                    .expect("open");
                let (paths, _) = sealed_segments(&store);
                store.close().expect("close");
                let started = Instant::now();
                for path in &paths {
                    let data = std::fs::read(path).expect("read");
                    let copy = path.with_extension("copy");
                    let file = std::fs::File::create(&copy).expect("create");
                    std::io::Write::write_all(&mut &file, &data).expect("write");
                    file.sync_data().expect("sync");
                }
                total += started.elapsed();
            }
            total
        });
    });
    group.finish();
}

const APPEND_THREADS: usize = 16;
const APPENDS_PER_THREAD: u64 = 400;

fn append_benches(c: &mut Criterion, root: &Path) {
    let mut group = c.benchmark_group("lifecycle_append");
    group.throughput(Throughput::Elements(
        APPEND_THREADS as u64 * APPENDS_PER_THREAD,
    ));
    group.sample_size(10);
    for (name, scavenging, budget) in [
        ("idle", false, None),
        ("scavenging", true, None),
        ("scavenging_32MBps", true, Some(32 << 20)),
    ] {
        let dir = root.join(format!("append-{name}"));
        let _ = std::fs::remove_dir_all(&dir);
        let options = Options::default()
            .segment_size(1 << 20)
            .scavenge_bytes_per_second(budget);
        let store = Store::open(&dir, options).expect("open");
        for t in 0..APPEND_THREADS {
            store
                .set_stream_metadata(
                    &format!("t{t}"),
                    ExpectedVersion::NoStream,
                    StreamMetadata::new().max_count(10),
                )
                .expect("metadata");
        }
        let stop = Arc::new(AtomicBool::new(false));
        let scavenger = scavenging.then(|| {
            let store = store.clone();
            let stop = Arc::clone(&stop);
            std::thread::spawn(move || {
                while !stop.load(Ordering::Relaxed) {
                    store.scavenge().expect("scavenge");
                }
            })
        });
        group.bench_function(BenchmarkId::from_parameter(name), |b| {
            b.iter_custom(|iters| {
                let barrier = Arc::new(Barrier::new(APPEND_THREADS + 1));
                let handles: Vec<_> = (0..APPEND_THREADS)
                    .map(|t| {
                        let store = store.clone();
                        let barrier = Arc::clone(&barrier);
                        std::thread::spawn(move || {
                            let stream = format!("t{t}");
                            barrier.wait();
                            for _ in 0..iters * APPENDS_PER_THREAD {
                                store
                                    .append(&stream, ExpectedVersion::Any, &[event()])
                                    .expect("append");
                            }
                        })
                    })
                    .collect();
                barrier.wait();
                let started = Instant::now();
                for handle in handles {
                    handle.join().expect("appender");
                }
                started.elapsed()
            });
        });
        stop.store(true, Ordering::Relaxed);
        if let Some(scavenger) = scavenger {
            scavenger.join().expect("scavenger");
        }
        store.close().expect("close");
    }
    group.finish();
}

fn read_benches(c: &mut Criterion, root: &Path) {
    let mut group = c.benchmark_group("lifecycle_read");
    group.throughput(Throughput::Elements(100));
    let dir = root.join("read");
    let _ = std::fs::remove_dir_all(&dir);
    let store = Store::open(
        &dir,
        Options::default().durability(evstore::Durability::Buffered),
    )
    .expect("open");
    // The older history first, then the last 100 events of every stream
    // interleaved, so the events read lie alike in the log for all three.
    let histories = [100u64, 10_000, 100_000];
    for history in histories {
        let stream = format!("history-{history}");
        for _ in 0..history / 100 - 1 {
            let batch: Vec<EventData> = (0..100).map(|_| event()).collect();
            store
                .append(&stream, ExpectedVersion::Any, &batch)
                .expect("append");
        }
        store
            .set_stream_metadata(
                &stream,
                ExpectedVersion::NoStream,
                StreamMetadata::new().max_count(100),
            )
            .expect("metadata");
    }
    for _ in 0..100 {
        for history in histories {
            store
                .append(
                    &format!("history-{history}"),
                    ExpectedVersion::Any,
                    &[event()],
                )
                .expect("append");
        }
    }
    store.flush().expect("flush");
    for history in [100u64, 10_000, 100_000] {
        let stream = format!("history-{history}");
        let read = store
            .read_stream(&stream, 0, Direction::Forward, usize::MAX)
            .expect("read");
        assert_eq!(read.len(), 100);
        group.bench_function(BenchmarkId::new("history", history), |b| {
            b.iter(|| {
                black_box(
                    store
                        .read_stream(black_box(&stream), 0, Direction::Forward, usize::MAX)
                        .expect("read"),
                )
            });
        });
    }
    group.finish();
    store.close().expect("close");
}

fn benches(c: &mut Criterion) {
    let root = data_root();
    scavenge_benches(c, &root);
    append_benches(c, &root);
    read_benches(c, &root);
}

criterion_group!(lifecycle, benches);
criterion_main!(lifecycle);
