//! Loading an aggregate from a long stream: replaying every one of its
//! 100,000 events, against starting from a snapshot 100 events from the
//! head, with an untyped read of the same events as the baseline.
//!
//! The aggregate is a bank account: events are deposits, withdrawals and
//! transfers in and out, each with an amount and a short string (a payment
//! reference or the other account's name), about 20 bytes encoded with
//! bincode and 60 with JSON. The state is a balance, a count of each kind of
//! event, and the net amount exchanged with each of 8 counterparties (a
//! `BTreeMap`); it is its own snapshot type.
//!
//! Ids (`Throughput::Elements` is the number of events replayed, so
//! criterion prints events/s):
//!
//! * `load_aggregate/no_snapshot`: `TypedStore::load_aggregate` of the
//!   100,000-event stream, which has no snapshot, with the default bincode
//!   codec: every event read, decoded and applied.
//! * `load_aggregate/snapshot_100_from_head`: the same stream with a
//!   snapshot at version 99,899: the snapshot file is found, read, checked
//!   against the log and decoded, then the last 100 events replayed.
//! * `load_aggregate/json/no_snapshot`,
//!   `load_aggregate/json/snapshot_100_from_head`: the same with
//!   `JsonCodec` (only with `--features json`).
//! * `read_stream/untyped`: `Store::read_stream` of all 100,000 events of
//!   the bincode stream in one call, one byte of each payload read, nothing
//!   decoded: the same events as the full replay, without decoding or
//!   applying them (`load_aggregate` reads them 1,024 at a time, which
//!   was about 15% faster than one call in a trial run).
//!
//! Each configuration gets its own store, made before its benchmarks run
//! and deleted after them, in a temporary directory under
//! `target/bench-data` (`EVSTORE_BENCH_DIR` if set), so on the disk, not a
//! tmpfs: buffered appends of 1,000 events each, a flush, and for the
//! snapshot configurations the snapshot saved at version 99,899; then the
//! store is closed and reopened in `Buffered` mode, and the aggregate loaded
//! once and compared with a replay done outside the store. Making a store
//! takes well under a second; on a 2-core machine the run took 45 s, 90 s
//! with `--features json`.
//!
//! `cargo bench --bench aggregate` (add `--features json` for the JSON
//! codec). A filter selects benchmarks as usual (e.g. `cargo bench --bench
//! aggregate -- snapshot_100`); stores are only made for selected ones. Run
//! as a test (`cargo test --benches`) the stream has 2,000 events.

#[path = "common/cli.rs"]
mod cli;
#[path = "common/data.rs"]
#[allow(dead_code)]
mod data;

use cli::Cli;
use criterion::measurement::WallTime;
use criterion::{
    criterion_group, criterion_main, BenchmarkGroup, Criterion, SamplingMode, Throughput,
};
use data::bench_root;
use data::Rng;
use evstore::{
    Aggregate, BincodeCodec, Codec, Direction, DomainEvent, Durability, ExpectedVersion, Options,
    Store,
};
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;
use std::hint::black_box;
use std::path::Path;
use std::time::Duration;

/// The stream every configuration loads.
const STREAM: &str = "account-000042";
/// Events appended per buffered append while making a store.
const APPEND_BATCH: u64 = 1_000;
/// How far behind the head the snapshot is: events replayed after it.
const SNAPSHOT_DISTANCE: u64 = 100;
/// The other accounts transfers go to and come from.
const COUNTERPARTIES: u64 = 8;
/// Seed of the generated events.
const EVENT_SEED: u64 = 0x0a11_0ca7_e5ee_d001;

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
enum AccountEvent {
    Deposited { amount: u64, reference: String },
    Withdrawn { amount: u64, reference: String },
    TransferredOut { amount: u64, to: String },
    TransferredIn { amount: u64, from: String },
}

impl DomainEvent for AccountEvent {
    fn event_type(&self) -> &str {
        match self {
            AccountEvent::Deposited { .. } => "Deposited",
            AccountEvent::Withdrawn { .. } => "Withdrawn",
            AccountEvent::TransferredOut { .. } => "TransferredOut",
            AccountEvent::TransferredIn { .. } => "TransferredIn",
        }
    }
}

#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
struct Account {
    balance: i64,
    deposits: u64,
    withdrawals: u64,
    transfers_out: u64,
    transfers_in: u64,
    /// Net amount received from (positive) or sent to each counterparty.
    counterparties: BTreeMap<String, i64>,
}

impl Account {
    fn exchange(&mut self, counterparty: &str, amount: i64) {
        match self.counterparties.get_mut(counterparty) {
            Some(net) => *net += amount,
            None => {
                self.counterparties.insert(counterparty.to_string(), amount);
            }
        }
    }
}

impl Aggregate for Account {
    type Event = AccountEvent;
    type Snapshot = Account;

    fn apply(&mut self, event: &AccountEvent) {
        match event {
            AccountEvent::Deposited { amount, .. } => {
                self.balance += *amount as i64;
                self.deposits += 1;
            }
            AccountEvent::Withdrawn { amount, .. } => {
                self.balance -= *amount as i64;
                self.withdrawals += 1;
            }
            AccountEvent::TransferredOut { amount, to } => {
                self.balance -= *amount as i64;
                self.transfers_out += 1;
                self.exchange(to, -(*amount as i64));
            }
            AccountEvent::TransferredIn { amount, from } => {
                self.balance += *amount as i64;
                self.transfers_in += 1;
                self.exchange(from, *amount as i64);
            }
        }
    }

    fn to_snapshot(&self) -> Account {
        self.clone()
    }

    fn from_snapshot(snapshot: Account) -> Self {
        snapshot
    }
}

/// The stream's events, in order: half deposits, a fifth withdrawals, the
/// rest transfers out and in, amounts in cents.
fn events(count: u64) -> Vec<AccountEvent> {
    let mut rng = Rng(EVENT_SEED);
    (0..count)
        .map(|_| {
            let amount = 100 + rng.below(50_000);
            let counterparty = format!("account-{:06}", 1 + rng.below(COUNTERPARTIES));
            match rng.below(10) {
                0..=4 => AccountEvent::Deposited {
                    amount,
                    reference: format!("inv-2024-{:05}", rng.below(100_000)),
                },
                5 | 6 => AccountEvent::Withdrawn {
                    amount: amount / 2,
                    reference: format!("atm-{:04}", rng.below(10_000)),
                },
                7 | 8 => AccountEvent::TransferredOut {
                    amount: amount / 2,
                    to: counterparty,
                },
                _ => AccountEvent::TransferredIn {
                    amount,
                    from: counterparty,
                },
            }
        })
        .collect()
}

fn store_options() -> Options {
    Options::default().durability(Durability::Buffered)
}

/// A store holding [`STREAM`] with `events`, written through `codec`, and,
/// if `snapshot_at` is given, a snapshot of the state at that version. The
/// returned store is a fresh open of it; the aggregate it loads has been
/// checked against `events` replayed here.
fn make_store<C: Codec>(
    dir: &Path,
    codec: &C,
    events: &[AccountEvent],
    snapshot_at: Option<u64>,
) -> Store {
    let store = Store::open(dir, store_options()).expect("creating the store");
    let typed = store.typed_with(codec.clone());
    for chunk in events.chunks(APPEND_BATCH as usize) {
        typed
            .append(STREAM, ExpectedVersion::Any, chunk)
            .expect("appending");
    }
    store.flush().expect("flushing");
    let mut expected = Account::default();
    for (version, event) in events.iter().enumerate() {
        expected.apply(event);
        if snapshot_at == Some(version as u64) {
            typed
                .save_snapshot(STREAM, version as u64, &expected.to_snapshot())
                .expect("saving the snapshot");
        }
    }
    // The typed view holds a clone of the store, and with it the lock.
    drop(typed);
    store.close().expect("closing the store");

    let store = Store::open(dir, store_options()).expect("reopening the store");
    let loaded = store
        .typed_with(codec.clone())
        .load_aggregate::<Account>(STREAM)
        .expect("loading the aggregate");
    let last = events.len() as u64 - 1;
    assert_eq!(loaded.state(), &expected);
    assert_eq!(loaded.version(), Some(last));
    assert_eq!(loaded.snapshot_version(), snapshot_at);
    assert_eq!(
        loaded.events_replayed(),
        snapshot_at.map_or(last + 1, |s| last - s)
    );
    assert!(loaded.snapshot_error().is_none());
    store
}

/// One byte of each payload, summed with its length.
fn touch(payload: &[u8]) -> u64 {
    payload.len() as u64 + payload.first().map_or(0, |&b| u64::from(b))
}

/// Registers `load_aggregate/{prefix}no_snapshot` and
/// `load_aggregate/{prefix}snapshot_100_from_head` for `codec`, each on a
/// store of its own; with `untyped_baseline`, also `read_stream/untyped`
/// on the store without a snapshot.
fn bench_codec<C: Codec>(
    c: &mut Criterion,
    cli: &Cli,
    root: &Path,
    codec: C,
    prefix: &str,
    events: &[AccountEvent],
    untyped_baseline: bool,
) {
    let last = events.len() as u64 - 1;
    let configurations = [
        ("no_snapshot", None),
        ("snapshot_100_from_head", Some(last - SNAPSHOT_DISTANCE)),
    ];
    for (name, snapshot_at) in configurations {
        let id = format!("{prefix}{name}");
        let load_selected = cli.selects(&format!("load_aggregate/{id}"));
        let read_selected =
            untyped_baseline && snapshot_at.is_none() && cli.selects("read_stream/untyped");
        if !load_selected && !read_selected {
            continue;
        }
        let replayed = snapshot_at.map_or(last + 1, |s| last - s);
        if cli.list {
            let mut g = c.benchmark_group("load_aggregate");
            if load_selected {
                g.bench_function(&id, |b| b.iter(|| unreachable!("listing only")));
            }
            g.finish();
            if read_selected {
                let mut g = c.benchmark_group("read_stream");
                g.bench_function("untyped", |b| b.iter(|| unreachable!("listing only")));
                g.finish();
            }
            continue;
        }

        let temp = tempfile::tempdir_in(root).expect("creating a temporary directory");
        let store = make_store(temp.path(), &codec, events, snapshot_at);
        let typed = store.typed_with(codec.clone());

        if load_selected {
            let mut g = c.benchmark_group("load_aggregate");
            configure(&mut g, replayed);
            g.bench_function(&id, |b| {
                b.iter(|| {
                    let loaded = typed
                        .load_aggregate::<Account>(black_box(STREAM))
                        .expect("load_aggregate");
                    assert_eq!(loaded.events_replayed(), replayed);
                    loaded.into_state().balance
                })
            });
            g.finish();
        }
        if read_selected {
            let mut g = c.benchmark_group("read_stream");
            configure(&mut g, replayed);
            g.bench_function("untyped", |b| {
                b.iter(|| {
                    let events = store
                        .read_stream(black_box(STREAM), 0, Direction::Forward, replayed as usize)
                        .expect("read_stream");
                    assert_eq!(events.len() as u64, replayed);
                    events.iter().map(|e| touch(&e.payload)).sum::<u64>()
                })
            });
            g.finish();
        }
        drop(typed);
        store.close().expect("closing the store");
        drop(temp);
    }
}

/// Full replays take tens of milliseconds: flat sampling, 30 samples of a
/// few iterations each, so that each benchmark keeps to its measurement
/// time; loads from a snapshot get criterion's defaults.
fn configure(g: &mut BenchmarkGroup<'_, WallTime>, replayed: u64) {
    g.throughput(Throughput::Elements(replayed));
    if replayed > 10_000 {
        g.sampling_mode(SamplingMode::Flat).sample_size(30);
    }
}

fn aggregate_benches(c: &mut Criterion) {
    let cli = Cli::parse();
    let count = if cli.list {
        // Nothing runs; the ids only need a stream longer than the distance.
        SNAPSHOT_DISTANCE + 1
    } else if cli.test {
        2_000
    } else {
        100_000
    };
    let events = events(count);
    let root = bench_root();
    bench_codec(c, &cli, &root, BincodeCodec, "", &events, true);
    #[cfg(feature = "json")]
    bench_codec(c, &cli, &root, evstore::JsonCodec, "json/", &events, false);
}

criterion_group! {
    name = benches;
    config = Criterion::default()
        .warm_up_time(Duration::from_secs(2))
        .measurement_time(Duration::from_secs(5));
    targets = aggregate_benches
}
criterion_main!(benches);
