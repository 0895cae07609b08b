//! The same framework workloads on evstore's adapters and on the embedded
//! SQLite back ends of the same frameworks, in one run:
//!
//! - cqrs-es, on `evstore-cqrs` and on `sqlite-es`: tasks each open an
//!   account and credit it through `CqrsFramework::execute`, every command
//!   a load of the aggregate from its events and one commit;
//! - eventcore, on `evstore-eventcore` and on `eventcore-sqlite`: tasks each
//!   fund an account and move money from it to a second one, every
//!   transfer a command over two streams committed together.
//!
//! ```text
//! cargo bench --manifest-path benches/frameworks/Cargo.toml
//! ```
//!
//! `sqlite-es` runs as its `default_sqlite_pool` configures SQLite (WAL,
//! `synchronous=NORMAL`: a commit is not synced, so a power loss can take
//! acknowledged commands) and with `synchronous=FULL` (synced, as evstore
//! acknowledges every command). `eventcore-sqlite` runs as it configures
//! SQLite (WAL, SQLite's default `synchronous=FULL`).

use cqrs_es::event_sink::EventSink;
use cqrs_es::persist::PersistedEventStore;
use cqrs_es::{Aggregate, CqrsFramework, DomainEvent, EventStore};
use criterion::measurement::WallTime;
use criterion::{
    criterion_group, criterion_main, BenchmarkGroup, BenchmarkId, Criterion, Throughput,
};
use eventcore::{
    execute, require, Command, CommandError, CommandLogic, NewEvents, RetryPolicy, StreamId,
};
use serde::{Deserialize, Serialize};
use sqlx::sqlite::{SqliteConnectOptions, SqliteJournalMode, SqlitePoolOptions, SqliteSynchronous};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

#[derive(Debug, Default, Serialize, Deserialize)]
struct Account {
    balance: i64,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
enum AccountEvent {
    Credited { amount: i64 },
}

impl DomainEvent for AccountEvent {
    fn event_type(&self) -> String {
        "Credited".into()
    }
    fn event_version(&self) -> String {
        "1".into()
    }
}

#[derive(Debug)]
struct Refused;

impl std::fmt::Display for Refused {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("refused")
    }
}

impl std::error::Error for Refused {}

impl Aggregate for Account {
    const TYPE: &'static str = "account";
    type Command = i64;
    type Event = AccountEvent;
    type Error = Refused;
    type Services = ();

    async fn handle(&mut self, amount: i64, _: &(), sink: &EventSink<Self>) -> Result<(), Refused> {
        if amount <= 0 {
            return Err(Refused);
        }
        sink.write(AccountEvent::Credited { amount }, self).await;
        Ok(())
    }

    fn apply(&mut self, AccountEvent::Credited { amount }: AccountEvent) {
        self.balance += amount;
    }
}

/// Concurrent tasks, each with an account of its own.
const TASKS: usize = 16;
/// Commands each task executes per round.
const COMMANDS: usize = 10;

/// Runs `rounds` rounds of the workload on `cqrs` and returns the time.
async fn run<ES>(
    cqrs: Arc<CqrsFramework<Account, ES>>,
    next_account: &AtomicU64,
    rounds: u64,
) -> Duration
where
    ES: EventStore<Account> + Send + Sync + 'static,
    ES::AC: Send,
{
    let started = Instant::now();
    for _ in 0..rounds {
        let tasks: Vec<_> = (0..TASKS)
            .map(|_| {
                let cqrs = Arc::clone(&cqrs);
                let account = next_account.fetch_add(1, Ordering::Relaxed).to_string();
                tokio::spawn(async move {
                    for amount in 1..=COMMANDS as i64 {
                        cqrs.execute(&account, amount).await.expect("command");
                    }
                })
            })
            .collect();
        for task in tasks {
            task.await.expect("task");
        }
    }
    started.elapsed()
}

const SQLITE_SCHEMA: &str = "
CREATE TABLE IF NOT EXISTS events (
  aggregate_type text NOT NULL,
  aggregate_id text NOT NULL,
  sequence integer CHECK (sequence >= 0) NOT NULL,
  event_type text NOT NULL,
  event_version text NOT NULL,
  payload text NOT NULL,
  metadata text NOT NULL,
  PRIMARY KEY (aggregate_type, aggregate_id, sequence)
) STRICT;
CREATE TABLE IF NOT EXISTS snapshots (
  aggregate_type text NOT NULL,
  aggregate_id text NOT NULL,
  last_sequence integer CHECK (last_sequence >= 0) NOT NULL,
  current_snapshot integer CHECK (current_snapshot >= 0) NOT NULL,
  payload text NOT NULL,
  PRIMARY KEY (aggregate_type, aggregate_id, last_sequence)
) STRICT;";

async fn sqlite_cqrs(
    dir: &std::path::Path,
    synchronous: SqliteSynchronous,
) -> sqlite_es::SqliteCqrs<Account> {
    // The pool sqlite-es's `default_sqlite_pool` builds, with the sync mode
    // chosen here.
    let options = SqliteConnectOptions::new()
        .filename(dir.join("events.db"))
        .create_if_missing(true)
        .journal_mode(SqliteJournalMode::Wal)
        .synchronous(synchronous)
        .foreign_keys(true);
    let pool = SqlitePoolOptions::new()
        .max_connections(10)
        .connect_with(options)
        .await
        .expect("sqlite pool");
    sqlx::raw_sql(SQLITE_SCHEMA)
        .execute(&pool)
        .await
        .expect("schema");
    sqlite_es::sqlite_cqrs(pool, Vec::new(), ())
}

/// A runtime with a worker per core of the benchmark machine.
fn runtime() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .expect("runtime")
}

/// Every group runs rounds of `TASKS * COMMANDS` commands.
fn configure(group: &mut BenchmarkGroup<'_, WallTime>) {
    group.throughput(Throughput::Elements((TASKS * COMMANDS) as u64));
    group.sample_size(10);
    group.measurement_time(Duration::from_secs(10));
}

fn cqrs_es_commands(c: &mut Criterion) {
    let runtime = runtime();
    let mut group = c.benchmark_group("cqrs_es_commands");
    configure(&mut group);
    let accounts = AtomicU64::new(0);

    let dir = tempfile::tempdir().expect("dir");
    let store = evstore::Store::open(dir.path(), evstore::Options::default()).expect("store");
    let repository = evstore_cqrs::EvstoreEventRepository::new(store);
    let evstore = Arc::new(CqrsFramework::new(
        PersistedEventStore::new_event_store(repository),
        Vec::new(),
        (),
    ));
    group.bench_function(BenchmarkId::new("evstore", "durable"), |b| {
        b.to_async(&runtime)
            .iter_custom(|rounds| run(Arc::clone(&evstore), &accounts, rounds));
    });

    for (name, synchronous) in [
        ("normal", SqliteSynchronous::Normal),
        ("full", SqliteSynchronous::Full),
    ] {
        let dir = tempfile::tempdir().expect("dir");
        let sqlite = Arc::new(runtime.block_on(sqlite_cqrs(dir.path(), synchronous)));
        group.bench_function(BenchmarkId::new("sqlite-es", name), |b| {
            b.to_async(&runtime)
                .iter_custom(|rounds| run(Arc::clone(&sqlite), &accounts, rounds));
        });
    }
    group.finish();
}

#[derive(Debug, Clone, Serialize, Deserialize)]
enum Money {
    Deposited { account: StreamId, amount: u64 },
    Withdrawn { account: StreamId, amount: u64 },
}

impl eventcore::Event for Money {
    fn stream_id(&self) -> &StreamId {
        match self {
            Money::Deposited { account, .. } | Money::Withdrawn { account, .. } => account,
        }
    }

    fn event_type_name() -> &'static str {
        "Money"
    }
}

#[derive(Command)]
struct Fund {
    #[stream]
    account: StreamId,
    amount: u64,
}

impl CommandLogic for Fund {
    type Event = Money;
    type State = ();

    fn apply(&self, _: (), _: &Money) {}

    fn handle(&self, _: ()) -> Result<NewEvents<Money>, CommandError> {
        Ok(vec![Money::Deposited {
            account: self.account.clone(),
            amount: self.amount,
        }]
        .into())
    }
}

#[derive(Command)]
struct Transfer {
    #[stream]
    from: StreamId,
    #[stream]
    to: StreamId,
    amount: u64,
}

impl CommandLogic for Transfer {
    type Event = Money;
    type State = u64;

    fn apply(&self, balance: u64, event: &Money) -> u64 {
        match event {
            Money::Deposited { account, amount } if *account == self.from => balance + amount,
            Money::Withdrawn { account, amount } if *account == self.from => {
                balance.saturating_sub(*amount)
            }
            _ => balance,
        }
    }

    fn handle(&self, balance: u64) -> Result<NewEvents<Money>, CommandError> {
        require!(balance >= self.amount, "insufficient funds");
        Ok(vec![
            Money::Withdrawn {
                account: self.from.clone(),
                amount: self.amount,
            },
            Money::Deposited {
                account: self.to.clone(),
                amount: self.amount,
            },
        ]
        .into())
    }
}

/// Runs `rounds` rounds of the eventcore workload on `store`: each task
/// funds an account, then makes `COMMANDS - 1` transfers out of it.
async fn run_eventcore<S>(store: Arc<S>, next_account: &AtomicU64, rounds: u64) -> Duration
where
    S: eventcore_types::EventStore + Send + Sync + 'static,
{
    let started = Instant::now();
    for _ in 0..rounds {
        let tasks: Vec<_> = (0..TASKS)
            .map(|_| {
                let store = Arc::clone(&store);
                let n = next_account.fetch_add(1, Ordering::Relaxed);
                tokio::spawn(async move {
                    let from = StreamId::try_new(format!("account-{n}-a")).expect("stream id");
                    let to = StreamId::try_new(format!("account-{n}-b")).expect("stream id");
                    let fund = Fund {
                        account: from.clone(),
                        amount: 1_000,
                    };
                    execute(&*store, fund, RetryPolicy::new())
                        .await
                        .expect("fund");
                    for amount in 1..COMMANDS as u64 {
                        let transfer = Transfer {
                            from: from.clone(),
                            to: to.clone(),
                            amount,
                        };
                        execute(&*store, transfer, RetryPolicy::new())
                            .await
                            .expect("transfer");
                    }
                })
            })
            .collect();
        for task in tasks {
            task.await.expect("task");
        }
    }
    started.elapsed()
}

fn eventcore_commands(c: &mut Criterion) {
    let runtime = runtime();
    let mut group = c.benchmark_group("eventcore_commands");
    configure(&mut group);
    let accounts = AtomicU64::new(0);

    let dir = tempfile::tempdir().expect("dir");
    let store = evstore::Store::open(dir.path(), evstore::Options::default()).expect("store");
    let evstore = Arc::new(evstore_eventcore::EvstoreEventStore::new(store));
    group.bench_function(BenchmarkId::new("evstore", "durable"), |b| {
        b.to_async(&runtime)
            .iter_custom(|rounds| run_eventcore(Arc::clone(&evstore), &accounts, rounds));
    });

    let dir = tempfile::tempdir().expect("dir");
    let sqlite = eventcore_sqlite::SqliteEventStore::new(eventcore_sqlite::SqliteConfig {
        path: dir.path().join("events.db"),
        encryption_key: None,
    })
    .expect("sqlite");
    runtime.block_on(sqlite.migrate()).expect("migrate");
    let sqlite = Arc::new(sqlite);
    group.bench_function(BenchmarkId::new("eventcore-sqlite", "wal"), |b| {
        b.to_async(&runtime)
            .iter_custom(|rounds| run_eventcore(Arc::clone(&sqlite), &accounts, rounds));
    });
    group.finish();
}

criterion_group!(benches, cqrs_es_commands, eventcore_commands);
criterion_main!(benches);
