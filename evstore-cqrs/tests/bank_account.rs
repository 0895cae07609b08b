//! The bank-account aggregate of the cqrs-es documentation, run end to end
//! on evstore: commands through `CqrsFramework` with each kind of
//! `PersistedEventStore`, optimistic-lock conflicts, replays in commit
//! order, and queries driven by `QueryRunner` across a stop, across a
//! crash, and in a process killed part-way through a replay, with no event
//! lost or applied twice.

use async_trait::async_trait;
use cqrs_es::event_sink::EventSink;
use cqrs_es::persist::{PersistedEventRepository, PersistedEventStore, PersistenceError};
use cqrs_es::{Aggregate, AggregateError, CqrsFramework, DomainEvent, EventEnvelope, Query};
use evstore::{Options, Store};
use evstore_cqrs::{EvstoreEventRepository, QueryRunner, POSITION_KEY};
use serde::{Deserialize, Serialize};
use std::collections::HashMap;
use std::sync::{Arc, Mutex};

#[derive(Debug, Default, Serialize, Deserialize)]
struct BankAccount {
    opened: bool,
    balance: i64,
}

#[derive(Debug)]
enum BankAccountCommand {
    Open,
    Deposit(i64),
    Withdraw(i64),
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
enum BankAccountEvent {
    AccountOpened,
    Deposited { amount: i64, balance: i64 },
    Withdrew { amount: i64, balance: i64 },
}

impl DomainEvent for BankAccountEvent {
    fn event_type(&self) -> String {
        match self {
            BankAccountEvent::AccountOpened => "AccountOpened",
            BankAccountEvent::Deposited { .. } => "Deposited",
            BankAccountEvent::Withdrew { .. } => "Withdrew",
        }
        .to_string()
    }
    fn event_version(&self) -> String {
        "1.0".to_string()
    }
}

#[derive(Debug, thiserror::Error)]
#[error("{0}")]
struct BankAccountError(String);

impl Aggregate for BankAccount {
    const TYPE: &'static str = "account";
    type Command = BankAccountCommand;
    type Event = BankAccountEvent;
    type Error = BankAccountError;
    type Services = ();

    async fn handle(
        &mut self,
        command: BankAccountCommand,
        _: &(),
        sink: &EventSink<Self>,
    ) -> Result<(), BankAccountError> {
        let event = match command {
            BankAccountCommand::Open if self.opened => {
                return Err(BankAccountError("already open".into()))
            }
            BankAccountCommand::Open => BankAccountEvent::AccountOpened,
            BankAccountCommand::Deposit(amount) => BankAccountEvent::Deposited {
                amount,
                balance: self.balance + amount,
            },
            BankAccountCommand::Withdraw(amount) if amount > self.balance => {
                return Err(BankAccountError("funds not available".into()))
            }
            BankAccountCommand::Withdraw(amount) => BankAccountEvent::Withdrew {
                amount,
                balance: self.balance - amount,
            },
        };
        sink.write(event, self).await;
        Ok(())
    }

    fn apply(&mut self, event: BankAccountEvent) {
        match event {
            BankAccountEvent::AccountOpened => self.opened = true,
            BankAccountEvent::Deposited { balance, .. }
            | BankAccountEvent::Withdrew { balance, .. } => {
                self.balance = balance;
            }
        }
    }
}

type Framework =
    CqrsFramework<BankAccount, PersistedEventStore<EvstoreEventRepository, BankAccount>>;

fn frameworks(store: &Store) -> Vec<(&'static str, Framework)> {
    let repo = || EvstoreEventRepository::new(store.clone());
    vec![
        (
            "event store",
            CqrsFramework::new(PersistedEventStore::new_event_store(repo()), vec![], ()),
        ),
        (
            "snapshot store",
            CqrsFramework::new(
                PersistedEventStore::new_snapshot_store(repo(), 3),
                vec![],
                (),
            ),
        ),
        (
            "aggregate store",
            CqrsFramework::new(PersistedEventStore::new_aggregate_store(repo()), vec![], ()),
        ),
    ]
}

async fn balance(store: &Store, id: &str) -> i64 {
    let events = EvstoreEventRepository::new(store.clone())
        .get_events::<BankAccount>(id)
        .await
        .unwrap();
    let mut account = BankAccount::default();
    for event in events {
        let envelope: EventEnvelope<BankAccount> = event.try_into().unwrap();
        account.apply(envelope.payload);
    }
    account.balance
}

#[tokio::test(flavor = "multi_thread")]
async fn commands_run_on_every_kind_of_store_and_survive_a_reopen() {
    let dir = tempfile::tempdir().unwrap();
    let store = Store::open(dir.path(), Options::default()).unwrap();
    for (kind, cqrs) in frameworks(&store) {
        let id = format!("acct-{}", kind.replace(' ', "-"));
        cqrs.execute(&id, BankAccountCommand::Open).await.unwrap();
        for _ in 0..7 {
            cqrs.execute(&id, BankAccountCommand::Deposit(100))
                .await
                .unwrap();
        }
        let refused = cqrs
            .execute(&id, BankAccountCommand::Withdraw(10_000))
            .await;
        assert!(
            matches!(refused, Err(AggregateError::UserError(_))),
            "{kind}"
        );
        cqrs.execute(&id, BankAccountCommand::Withdraw(250))
            .await
            .unwrap();
        assert_eq!(balance(&store, &id).await, 450, "{kind}");
    }
    store.close().unwrap();

    let store = Store::open(dir.path(), Options::default()).unwrap();
    for (kind, cqrs) in frameworks(&store) {
        let id = format!("acct-{}", kind.replace(' ', "-"));
        // Loaded from what the reopened store holds: 450 is there, 451 not.
        assert!(
            cqrs.execute(&id, BankAccountCommand::Withdraw(451))
                .await
                .is_err(),
            "{kind}"
        );
        cqrs.execute(&id, BankAccountCommand::Withdraw(450))
            .await
            .unwrap();
        assert_eq!(balance(&store, &id).await, 0, "{kind}");
    }
    let repo = EvstoreEventRepository::new(store.clone());
    let snapshot = repo
        .get_snapshot::<BankAccount>("acct-snapshot-store")
        .await
        .unwrap()
        .expect("a snapshot every 3 events");
    let events = repo
        .get_events::<BankAccount>("acct-snapshot-store")
        .await
        .unwrap();
    // Brought up to date with the events after it.
    assert_eq!(snapshot.current_sequence, events.len());
    assert_eq!(snapshot.aggregate["balance"], 0);
}

#[tokio::test(flavor = "multi_thread")]
async fn a_stale_commit_is_an_optimistic_lock_error() {
    let dir = tempfile::tempdir().unwrap();
    let store = Store::open(dir.path(), Options::default()).unwrap();
    let repo = EvstoreEventRepository::new(store.clone());
    let (_, cqrs) = frameworks(&store).remove(0);
    cqrs.execute("a", BankAccountCommand::Open).await.unwrap();
    let mut events = repo.get_events::<BankAccount>("a").await.unwrap();
    // The same sequence again: another writer got there first.
    let stale = repo.persist::<BankAccount>(&events, None).await;
    assert!(
        matches!(stale, Err(PersistenceError::OptimisticLockError)),
        "{stale:?}"
    );
    events[0].sequence = 2;
    repo.persist::<BankAccount>(&events, None).await.unwrap();
    assert_eq!(repo.get_events::<BankAccount>("a").await.unwrap().len(), 2);
}

#[tokio::test(flavor = "multi_thread")]
async fn replays_follow_commit_order_across_aggregates() {
    let dir = tempfile::tempdir().unwrap();
    let store = Store::open(dir.path(), Options::default()).unwrap();
    let (_, cqrs) = frameworks(&store).remove(0);
    let mut committed = Vec::new();
    for (i, id) in ["x", "y", "x", "z", "y", "x"].iter().enumerate() {
        let command = if committed.iter().any(|(c, _)| c == id) {
            BankAccountCommand::Deposit(i as i64)
        } else {
            BankAccountCommand::Open
        };
        cqrs.execute(id, command).await.unwrap();
        let sequence = committed.iter().filter(|(c, _)| c == id).count() + 1;
        committed.push((id.to_string(), sequence));
    }
    let repo = EvstoreEventRepository::new(store.clone());
    let mut all = repo.stream_all_events::<BankAccount>().await.unwrap();
    let mut replayed = Vec::new();
    while let Some(event) = all.next::<BankAccount>(&[]).await {
        let event = event.unwrap();
        replayed.push((event.aggregate_id, event.sequence));
    }
    assert_eq!(replayed, committed);
    let mut one = repo.stream_events::<BankAccount>("x").await.unwrap();
    let mut sequences = Vec::new();
    while let Some(event) = one.next::<BankAccount>(&[]).await {
        sequences.push(event.unwrap().sequence);
    }
    assert_eq!(sequences, [1, 2, 3]);
}

/// A read model that keeps balances and the position it reached together,
/// as one transaction would, and can be told to crash before an event.
#[derive(Default)]
struct Balances {
    state: Mutex<BalancesState>,
}

#[derive(Default, Clone)]
struct BalancesState {
    balances: HashMap<String, i64>,
    /// Every (account, sequence) applied, to catch one applied twice.
    applied: Vec<(String, usize)>,
    next_position: u64,
    /// Panics, as a crash would, when about to apply this many events.
    crash_at: Option<usize>,
}

struct BalancesQuery(Arc<Balances>);

#[async_trait]
impl Query<BankAccount> for BalancesQuery {
    async fn dispatch(&self, id: &str, events: &[EventEnvelope<BankAccount>]) {
        let mut state = self.0.state.lock().unwrap();
        for event in events {
            if state.crash_at == Some(state.applied.len()) {
                state.crash_at = None;
                drop(state);
                panic!("the read model's process dies");
            }
            let position: u64 = event.metadata[POSITION_KEY].parse().unwrap();
            match event.payload {
                BankAccountEvent::AccountOpened => {}
                BankAccountEvent::Deposited { balance, .. }
                | BankAccountEvent::Withdrew { balance, .. } => {
                    state.balances.insert(id.to_string(), balance);
                }
            }
            state.applied.push((id.to_string(), event.sequence));
            state.next_position = position + 1;
        }
    }
}

async fn commit_some(cqrs: &Framework, accounts: usize, deposits: usize) {
    for a in 0..accounts {
        cqrs.execute(&format!("q{a}"), BankAccountCommand::Open)
            .await
            .unwrap();
    }
    for d in 0..deposits {
        cqrs.execute(
            &format!("q{}", d % accounts),
            BankAccountCommand::Deposit(1),
        )
        .await
        .unwrap();
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn a_query_runner_resumes_after_a_crash_with_no_event_lost_or_applied_twice() {
    let dir = tempfile::tempdir().unwrap();
    let store = Store::open(dir.path(), Options::default()).unwrap();
    let (_, cqrs) = frameworks(&store).remove(0);
    commit_some(&cqrs, 3, 30).await;
    let total = 33;

    let model = Arc::new(Balances::default());
    model.state.lock().unwrap().crash_at = Some(20);
    let runner = QueryRunner::new(store.clone(), "balances", BalancesQuery(Arc::clone(&model)))
        .start_at(0)
        .start()
        .unwrap();
    // Dies before the 21st event.
    assert!(runner.join().is_err());
    let after_crash = model.state.lock().unwrap().clone();
    assert_eq!(after_crash.applied.len(), 20);

    // Restarted where the model says; more commits meanwhile, live.
    let position = after_crash.next_position;
    let runner = QueryRunner::new(store.clone(), "balances", BalancesQuery(Arc::clone(&model)))
        .start_at(position)
        .start()
        .unwrap();
    for d in 0..6 {
        cqrs.execute(&format!("q{}", d % 3), BankAccountCommand::Deposit(1))
            .await
            .unwrap();
    }
    let end = store.last_position().unwrap() + 1;
    while model.state.lock().unwrap().next_position < end {
        tokio::task::yield_now().await;
    }
    runner.stop().unwrap();
    let state = model.state.lock().unwrap().clone();
    let mut applied = state.applied.clone();
    applied.sort();
    applied.dedup();
    assert_eq!(applied.len(), state.applied.len(), "an event applied twice");
    assert_eq!(state.applied.len(), total + 6);
    let sum: i64 = state.balances.values().sum();
    assert_eq!(sum, 36);
}

#[tokio::test(flavor = "multi_thread")]
async fn a_checkpointed_query_runner_resumes_after_a_stop_where_it_stopped() {
    let dir = tempfile::tempdir().unwrap();
    let store = Store::open(dir.path(), Options::default()).unwrap();
    let (_, cqrs) = frameworks(&store).remove(0);
    commit_some(&cqrs, 2, 10).await;
    let model = Arc::new(Balances::default());
    let runner = QueryRunner::new(store.clone(), "balances", BalancesQuery(Arc::clone(&model)))
        .start()
        .unwrap();
    while model.state.lock().unwrap().applied.len() < 12 {
        tokio::task::yield_now().await;
    }
    let stopped_at = runner.stop().unwrap();
    assert_eq!(store.load_checkpoint("balances").unwrap(), Some(stopped_at));

    cqrs.execute("q0", BankAccountCommand::Deposit(5))
        .await
        .unwrap();
    let runner = QueryRunner::new(store.clone(), "balances", BalancesQuery(Arc::clone(&model)))
        .start()
        .unwrap();
    while model.state.lock().unwrap().applied.len() < 13 {
        tokio::task::yield_now().await;
    }
    runner.stop().unwrap();
    let state = model.state.lock().unwrap().clone();
    assert_eq!(state.applied.len(), 13);
    assert_eq!(state.applied.last(), Some(&("q0".to_string(), 7)));
    assert_eq!(state.balances["q0"], 10);
}

/// Where the killed-runner test keeps its store and its read model.
const KILL_DIR_VAR: &str = "EVSTORE_CQRS_KILL_DIR";
/// The read model's file in that directory: balances, every (account,
/// sequence) applied, and the next position, replaced whole per event (a
/// rename), as one transaction of a real read model would store them.
const MODEL_FILE: &str = "balances.json";

#[derive(Default, Serialize, Deserialize)]
struct FileModel {
    balances: HashMap<String, i64>,
    applied: Vec<(String, usize)>,
    next_position: u64,
}

fn load_model(dir: &std::path::Path) -> FileModel {
    match std::fs::read(dir.join(MODEL_FILE)) {
        Ok(bytes) => serde_json::from_slice(&bytes).unwrap(),
        Err(_) => FileModel::default(),
    }
}

struct FileQuery(std::path::PathBuf);

#[async_trait]
impl Query<BankAccount> for FileQuery {
    async fn dispatch(&self, id: &str, events: &[EventEnvelope<BankAccount>]) {
        for event in events {
            let mut model = load_model(&self.0);
            if let BankAccountEvent::Deposited { balance, .. } = event.payload {
                model.balances.insert(id.to_string(), balance);
            }
            model.applied.push((id.to_string(), event.sequence));
            model.next_position = event.metadata[POSITION_KEY].parse::<u64>().unwrap() + 1;
            let temporary = self.0.join("balances.json.new");
            std::fs::write(&temporary, serde_json::to_vec(&model).unwrap()).unwrap();
            std::fs::rename(&temporary, self.0.join(MODEL_FILE)).unwrap();
            // Slow enough for the parent to kill it part-way through.
            std::thread::sleep(std::time::Duration::from_millis(2));
        }
    }
}

/// The child process of the test below: runs the query from where its read
/// model says until it has every event, then exits.
#[tokio::test(flavor = "multi_thread")]
#[ignore = "entry point of the child process that the killed-runner test spawns"]
async fn child_query_runner() {
    let dir = std::path::PathBuf::from(std::env::var(KILL_DIR_VAR).unwrap());
    let store = Store::open(dir.join("store"), Options::default()).unwrap();
    let end = store.last_position().unwrap() + 1;
    let start = load_model(&dir).next_position;
    let runner = QueryRunner::new(store.clone(), "balances", FileQuery(dir.clone()))
        .start_at(start)
        .start()
        .unwrap();
    while load_model(&dir).next_position < end {
        tokio::time::sleep(std::time::Duration::from_millis(5)).await;
    }
    runner.stop().unwrap();
}

/// The query runner's process is killed (SIGKILL) part-way through a
/// replay, then started again from the position its read model stored with
/// its state: every event is applied exactly once.
#[tokio::test(flavor = "multi_thread")]
async fn a_killed_query_runner_process_resumes_with_no_event_lost_or_applied_twice() {
    let dir = tempfile::tempdir().unwrap();
    let (accounts, deposits) = (5, 200);
    {
        let store = Store::open(dir.path().join("store"), Options::default()).unwrap();
        let (_, cqrs) = frameworks(&store).remove(0);
        commit_some(&cqrs, accounts, deposits).await;
        store.close().unwrap();
    }
    let spawn = || {
        std::process::Command::new(std::env::current_exe().unwrap())
            .args([
                "child_query_runner",
                "--exact",
                "--ignored",
                "--test-threads=1",
            ])
            .env(KILL_DIR_VAR, dir.path())
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::null())
            .spawn()
            .unwrap()
    };
    let mut child = spawn();
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(120);
    while load_model(dir.path()).applied.len() < 60 {
        assert!(
            std::time::Instant::now() < deadline,
            "the child made no progress"
        );
        assert!(child.try_wait().unwrap().is_none(), "the child ended early");
        tokio::time::sleep(std::time::Duration::from_millis(2)).await;
    }
    child.kill().unwrap();
    child.wait().unwrap();
    let at_kill = load_model(dir.path()).applied.len();
    assert!(at_kill < accounts + deposits, "killed after the end");

    let status = spawn().wait().unwrap();
    assert!(status.success());
    let model = load_model(dir.path());
    let mut applied = model.applied.clone();
    applied.sort();
    applied.dedup();
    assert_eq!(applied.len(), model.applied.len(), "an event applied twice");
    assert_eq!(model.applied.len(), accounts + deposits, "an event lost");
    let sum: i64 = model.balances.values().sum();
    assert_eq!(sum, deposits as i64);
}
