//! Async against blocking durable appends, in the same run: 1,000 tokio
//! tasks on a multi-threaded runtime (one worker per core) each awaiting
//! `Store::append_async`, against 16 threads calling `Store::append`. Every
//! append is one 256-byte event to the caller's own stream with
//! `ExpectedVersion::Any`; an iteration is 4,000 appends, spread evenly.
//!
//! `cargo bench --bench async_append --features async`; the ratio
//! `async_append/tokio_tasks=1000` over `async_append/blocking_threads=16`
//! is the figure (target: at least 0.9x). Data lives under
//! `target/bench-data` (override with `EVSTORE_BENCH_DIR`).

#[path = "common/data.rs"]
#[allow(dead_code)]
mod data;

use criterion::{criterion_group, criterion_main, Criterion, Throughput};
use evstore::{EventData, ExpectedVersion, Options, Store};
use std::time::{Duration, Instant};

const APPENDS_PER_ITERATION: u64 = 4_000;
const THREADS: u64 = 16;
#[cfg(feature = "async")]
const TASKS: u64 = 1_000;

fn event() -> EventData {
    EventData::new("Deposited", vec![7u8; 256])
}

fn blocking(store: &Store, iterations: u64) -> Duration {
    let per_thread = APPENDS_PER_ITERATION / THREADS * iterations;
    let started = Instant::now();
    std::thread::scope(|scope| {
        for t in 0..THREADS {
            scope.spawn(move || {
                let stream = format!("thread-{t}");
                for _ in 0..per_thread {
                    store
                        .append(&stream, ExpectedVersion::Any, &[event()])
                        .expect("append");
                }
            });
        }
    });
    started.elapsed()
}

#[cfg(feature = "async")]
fn tokio_tasks(runtime: &tokio::runtime::Runtime, store: &Store, iterations: u64) -> Duration {
    let per_task = APPENDS_PER_ITERATION / TASKS * iterations;
    let started = Instant::now();
    runtime.block_on(async {
        let tasks: Vec<_> = (0..TASKS)
            .map(|t| {
                let store = store.clone();
                tokio::spawn(async move {
                    let stream = format!("task-{t}");
                    for _ in 0..per_task {
                        store
                            .append_async(&stream, ExpectedVersion::Any, &[event()])
                            .await
                            .expect("append");
                    }
                })
            })
            .collect();
        for task in tasks {
            task.await.expect("task");
        }
    });
    started.elapsed()
}

fn async_append(c: &mut Criterion) {
    let root = data::bench_root();
    let mut group = c.benchmark_group("async_append");
    group.throughput(Throughput::Elements(APPENDS_PER_ITERATION));
    group.sample_size(10);
    {
        let dir = tempfile::tempdir_in(&root).expect("bench dir");
        let store = Store::open(dir.path(), Options::default()).expect("open");
        group.bench_function("blocking_threads=16", |b| {
            b.iter_custom(|iterations| blocking(&store, iterations));
        });
    }
    #[cfg(feature = "async")]
    {
        let dir = tempfile::tempdir_in(&root).expect("bench dir");
        let store = Store::open(dir.path(), Options::default()).expect("open");
        let runtime = tokio::runtime::Builder::new_multi_thread()
            .enable_all()
            .build()
            .expect("runtime");
        group.bench_function("tokio_tasks=1000", |b| {
            b.iter_custom(|iterations| tokio_tasks(&runtime, &store, iterations));
        });
    }
    group.finish();
}

criterion_group! {
    name = benches;
    config = Criterion::default()
        .warm_up_time(Duration::from_secs(1))
        .measurement_time(Duration::from_secs(5));
    targets = async_append
}
criterion_main!(benches);
