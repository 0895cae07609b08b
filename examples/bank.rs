//! Bank accounts as event-sourced aggregates: deposits, withdrawals and
//! transfers from several threads, each command decided on the account's
//! current state and saved with optimistic concurrency, snapshots taken
//! automatically. Then the store is reopened, every account rebuilt from
//! its newest snapshot, and checked against a full replay of its events.
//!
//! `cargo run --release --example bank [DIR]` (a temporary directory when
//! DIR is not given).

use evstore::{Aggregate, Direction, DomainEvent, Error, Options, Store, TypedStore};
use serde::{Deserialize, Serialize};
use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Instant;

const ACCOUNTS: [&str; 5] = [
    "account-alice",
    "account-bob",
    "account-carol",
    "account-dave",
    "account-erin",
];
const THREADS: u64 = 4;
const OPERATIONS_PER_THREAD: u64 = 750;
/// Save a snapshot of an account each time its event count crosses a multiple of this.
const SNAPSHOT_EVERY: u64 = 100;
/// Cents deposited when an account is opened.
const OPENING_DEPOSIT: u64 = 100_000;

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
enum AccountEvent {
    Opened {
        owner: String,
    },
    Deposited {
        amount: u64,
        reference: String,
    },
    Withdrawn {
        amount: u64,
        reference: String,
    },
    TransferSent {
        transfer: String,
        to: String,
        amount: u64,
    },
    TransferReceived {
        transfer: String,
        from: String,
        amount: u64,
    },
}

impl DomainEvent for AccountEvent {
    fn event_type(&self) -> &str {
        match self {
            AccountEvent::Opened { .. } => "Opened",
            AccountEvent::Deposited { .. } => "Deposited",
            AccountEvent::Withdrawn { .. } => "Withdrawn",
            AccountEvent::TransferSent { .. } => "TransferSent",
            AccountEvent::TransferReceived { .. } => "TransferReceived",
        }
    }
}

/// An account's state; amounts in cents. It is its own snapshot type.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
struct Account {
    owner: Option<String>,
    balance: u64,
    deposits: u64,
    withdrawals: u64,
    transfers_sent: u64,
    transfers_received: u64,
}

impl Aggregate for Account {
    type Event = AccountEvent;
    type Snapshot = Account;

    fn apply(&mut self, event: &AccountEvent) {
        match event {
            AccountEvent::Opened { owner } => self.owner = Some(owner.clone()),
            AccountEvent::Deposited { amount, .. } => {
                self.balance += amount;
                self.deposits += 1;
            }
            AccountEvent::Withdrawn { amount, .. } => {
                self.balance -= amount;
                self.withdrawals += 1;
            }
            AccountEvent::TransferSent { amount, .. } => {
                self.balance -= amount;
                self.transfers_sent += 1;
            }
            AccountEvent::TransferReceived { amount, .. } => {
                self.balance += amount;
                self.transfers_received += 1;
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

/// Why a command was refused; nothing is written.
#[derive(Debug)]
enum Rejected {
    AlreadyOpen,
    NotOpen,
    InsufficientFunds { balance: u64 },
}

impl std::fmt::Display for Rejected {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Rejected::AlreadyOpen => f.write_str("the account is already open"),
            Rejected::NotOpen => f.write_str("the account is not open"),
            Rejected::InsufficientFunds { balance } => {
                write!(f, "insufficient funds (balance {})", money(*balance))
            }
        }
    }
}

impl Account {
    /// A debit of `amount` is allowed: the account is open and covers it.
    fn check_debit(&self, amount: u64) -> Result<(), Rejected> {
        if self.owner.is_none() {
            return Err(Rejected::NotOpen);
        }
        if self.balance < amount {
            return Err(Rejected::InsufficientFunds {
                balance: self.balance,
            });
        }
        Ok(())
    }

    fn check_open(&self) -> Result<(), Rejected> {
        self.owner.as_ref().map(|_| ()).ok_or(Rejected::NotOpen)
    }
}

/// The command side: runs commands against accounts and counts what
/// happened.
struct Bank {
    accounts: TypedStore,
    conflicts: AtomicU64,
    snapshots: AtomicU64,
}

impl Bank {
    /// Runs a command on `account`: loads it (from its newest snapshot),
    /// lets `decide` turn its state into events or refuse, and saves them
    /// expecting the version it loaded. If another writer saved first, the
    /// save writes nothing and fails with `WrongExpectedVersion`: load the
    /// new state and decide again, since the decision may now differ.
    fn execute(
        &self,
        account: &str,
        decide: impl Fn(&Account) -> Result<Vec<AccountEvent>, Rejected>,
    ) -> evstore::Result<Result<u64, Rejected>> {
        loop {
            let mut loaded = self.accounts.load_aggregate::<Account>(account)?;
            let events = match decide(loaded.state()) {
                Ok(events) => events,
                Err(rejected) => return Ok(Err(rejected)),
            };
            match self.accounts.save_aggregate(&mut loaded, &events) {
                Ok(saved) => {
                    if let Some(error) = saved.snapshot_error {
                        return Err(error);
                    }
                    if saved.snapshot_saved.is_some() {
                        self.snapshots.fetch_add(1, Ordering::Relaxed);
                    }
                    return Ok(Ok(saved.appended.last_version));
                }
                Err(Error::WrongExpectedVersion { .. }) => {
                    self.conflicts.fetch_add(1, Ordering::Relaxed);
                }
                Err(error) => return Err(error),
            }
        }
    }

    fn deposit(&self, account: &str, amount: u64, reference: &str) -> Outcome {
        self.execute(account, |state| {
            state.check_open()?;
            Ok(vec![AccountEvent::Deposited {
                amount,
                reference: reference.to_string(),
            }])
        })
    }

    fn withdraw(&self, account: &str, amount: u64, reference: &str) -> Outcome {
        self.execute(account, |state| {
            state.check_debit(amount)?;
            Ok(vec![AccountEvent::Withdrawn {
                amount,
                reference: reference.to_string(),
            }])
        })
    }

    /// Moves `amount` from one account to another. Each account is its own
    /// stream and an append is atomic within one stream only, so a transfer
    /// is two steps. First the source decides: it must cover the amount,
    /// and its `TransferSent` is saved with optimistic concurrency, so two
    /// debits racing for the same balance cannot both pass. From then on the
    /// money is committed to leave: the target's `TransferReceived` is saved
    /// (retried on conflicts like any command). A process stopping between
    /// the two leaves a `TransferSent` with no `TransferReceived` for its
    /// id, which a recovery pass finds and completes; the check at the end
    /// looks for such transfers. Every account here stays open, so the
    /// credit is never refused; if it could be, the source would get a
    /// compensating event returning the money.
    fn transfer(&self, id: &str, from: &str, to: &str, amount: u64) -> Outcome {
        let sent = self.execute(from, |state| {
            state.check_debit(amount)?;
            Ok(vec![AccountEvent::TransferSent {
                transfer: id.to_string(),
                to: to.to_string(),
                amount,
            }])
        })?;
        if let Err(rejected) = sent {
            return Ok(Err(rejected));
        }
        self.execute(to, |state| {
            state.check_open()?;
            Ok(vec![AccountEvent::TransferReceived {
                transfer: id.to_string(),
                from: from.to_string(),
                amount,
            }])
        })
    }
}

type Outcome = evstore::Result<Result<u64, Rejected>>;

/// A small deterministic PRNG (xorshift64*), one per thread.
struct Rng(u64);

impl Rng {
    fn below(&mut self, n: u64) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_f491_4f6c_dd1d) % n
    }
}

fn money(cents: u64) -> String {
    format!("{}.{:02}", cents / 100, cents % 100)
}

/// Two handles load the same account; one saves first, so the other's save
/// is refused, and it loads again and decides again.
fn show_conflict(bank: &Bank, account: &str) -> Result<(), Box<dyn std::error::Error>> {
    let typed = &bank.accounts;
    let mut first = typed.load_aggregate::<Account>(account)?;
    let mut second = typed.load_aggregate::<Account>(account)?;
    let (balance, version) = (first.state().balance, first.version().unwrap_or(0));
    println!(
        "conflict: handles A and B load {account} at version {version}, balance {}",
        money(balance)
    );
    let a = balance * 6 / 10;
    first.state().check_debit(a).map_err(|r| r.to_string())?;
    let saved = typed.save_aggregate(&mut first, &[withdrawal(a, "conflict-a")])?;
    println!(
        "  A withdraws {}: saved at version {}",
        money(a),
        saved.appended.last_version
    );
    let b = balance * 3 / 10;
    second.state().check_debit(b).map_err(|r| r.to_string())?;
    match typed.save_aggregate(&mut second, &[withdrawal(b, "conflict-b")]) {
        Err(error @ Error::WrongExpectedVersion { .. }) => {
            println!("  B withdraws {}: refused, {error}", money(b));
        }
        other => return Err(format!("B's stale save was not refused: {other:?}").into()),
    }
    let mut second = typed.load_aggregate::<Account>(account)?;
    second.state().check_debit(b).map_err(|r| r.to_string())?;
    let balance = second.state().balance;
    let saved = typed.save_aggregate(&mut second, &[withdrawal(b, "conflict-b")])?;
    println!(
        "  B loads again (balance {}), decides again: saved at version {}",
        money(balance),
        saved.appended.last_version
    );
    let c = second.state().balance + 1;
    if let Err(rejected) = bank.withdraw(account, c, "conflict-c")? {
        println!("  a withdrawal of {} is refused: {rejected}", money(c));
    }
    Ok(())
}

fn withdrawal(amount: u64, reference: &str) -> AccountEvent {
    AccountEvent::Withdrawn {
        amount,
        reference: reference.to_string(),
    }
}

/// What one thread did.
#[derive(Default)]
struct Tally {
    operations: u64,
    refused: u64,
}

/// Random deposits, withdrawals and transfers between the accounts.
fn run_operations(bank: &Bank, run: u64, thread: u64) -> evstore::Result<Tally> {
    let mut rng = Rng(0x0ba2_c0de_0000_0001 + thread * 0x9e37_79b9_7f4a_7c15);
    let mut tally = Tally::default();
    for n in 0..OPERATIONS_PER_THREAD {
        let account = ACCOUNTS[rng.below(ACCOUNTS.len() as u64) as usize];
        let amount = 100 + rng.below(30_000);
        let reference = format!("r{run}-t{thread}-{n}");
        let outcome = match rng.below(100) {
            0..=34 => bank.deposit(account, amount, &reference)?,
            35..=69 => bank.withdraw(account, amount, &reference)?,
            _ => {
                let offset = 1 + rng.below(ACCOUNTS.len() as u64 - 1);
                let index = ACCOUNTS.iter().position(|a| *a == account).unwrap_or(0);
                let to = ACCOUNTS[(index + offset as usize) % ACCOUNTS.len()];
                bank.transfer(&reference, account, to, amount)?
            }
        };
        tally.operations += 1;
        if let Err(Rejected::InsufficientFunds { .. }) = outcome {
            tally.refused += 1;
        }
    }
    Ok(tally)
}

/// Everything a full replay of one account's events gives.
struct Replayed {
    state: Account,
    version: Option<u64>,
}

/// Rebuilds an account from its first event, without snapshots, and
/// records its transfers and the money it took in and paid out.
fn replay(
    store: &Store,
    account: &str,
    transfers: &mut HashMap<String, (u64, u64)>,
    flows: &mut (u64, u64),
) -> evstore::Result<Replayed> {
    let typed = store.typed();
    let mut state = Account::default();
    let mut version = None;
    loop {
        let from = version.map_or(0, |v| v + 1);
        let events = typed.read_stream::<AccountEvent>(account, from, Direction::Forward, 1024)?;
        for recorded in &events {
            match &recorded.event {
                AccountEvent::Deposited { amount, .. } => flows.0 += amount,
                AccountEvent::Withdrawn { amount, .. } => flows.1 += amount,
                AccountEvent::TransferSent {
                    transfer, amount, ..
                } => transfers.entry(transfer.clone()).or_default().0 += amount,
                AccountEvent::TransferReceived {
                    transfer, amount, ..
                } => transfers.entry(transfer.clone()).or_default().1 += amount,
                AccountEvent::Opened { .. } => {}
            }
            state.apply(&recorded.event);
            version = Some(recorded.version);
        }
        if events.len() < 1024 {
            return Ok(Replayed { state, version });
        }
    }
}

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let temp = tempfile::tempdir()?;
    let dir = std::env::args()
        .nth(1)
        .map(std::path::PathBuf::from)
        .unwrap_or_else(|| temp.path().join("store"));
    let store = Store::open(&dir, Options::default())?;
    println!("opened {}", dir.display());

    let bank = Bank {
        accounts: store.typed().snapshot_every(SNAPSHOT_EVERY),
        conflicts: AtomicU64::new(0),
        snapshots: AtomicU64::new(0),
    };
    let mut opened_now = 0;
    for account in ACCOUNTS {
        // Opening is a command too, refused if the account exists (a store
        // given as DIR may hold the accounts of an earlier run).
        let opened = bank.execute(account, |state| match state.owner {
            Some(_) => Err(Rejected::AlreadyOpen),
            None => Ok(vec![
                AccountEvent::Opened {
                    owner: account.trim_start_matches("account-").to_string(),
                },
                AccountEvent::Deposited {
                    amount: OPENING_DEPOSIT,
                    reference: "opening".to_string(),
                },
            ]),
        })?;
        match opened {
            Ok(_) => opened_now += 1,
            Err(Rejected::AlreadyOpen) => {}
            Err(rejected) => return Err(format!("opening {account}: {rejected}").into()),
        }
    }
    if opened_now == ACCOUNTS.len() {
        println!(
            "opened {opened_now} accounts with {} each",
            money(OPENING_DEPOSIT)
        );
    } else {
        println!(
            "{opened_now} accounts opened, {} already open",
            ACCOUNTS.len() - opened_now
        );
    }
    show_conflict(&bank, ACCOUNTS[0])?;

    // References and transfer ids name the run: the first position it wrote.
    let run = store.last_position().map_or(0, |p| p + 1);
    let conflicts_before = bank.conflicts.load(Ordering::Relaxed);
    let started = Instant::now();
    let tallies = std::thread::scope(|scope| {
        let handles: Vec<_> = (0..THREADS)
            .map(|thread| {
                let bank = &bank;
                scope.spawn(move || run_operations(bank, run, thread))
            })
            .collect();
        handles
            .into_iter()
            .map(|h| h.join().expect("operation thread panicked"))
            .collect::<evstore::Result<Vec<Tally>>>()
    })?;
    let operations: u64 = tallies.iter().map(|t| t.operations).sum();
    let refused: u64 = tallies.iter().map(|t| t.refused).sum();
    println!(
        "{operations} operations from {THREADS} threads in {:.2?}: {refused} refused for insufficient funds, \
         {} conflicts retried, {} snapshots saved",
        started.elapsed(),
        bank.conflicts.load(Ordering::Relaxed) - conflicts_before,
        bank.snapshots.load(Ordering::Relaxed)
    );

    // The typed view holds a clone of the store: drop it, so that closing
    // releases the directory.
    drop(bank);
    store.close()?;
    let store = Store::open(&dir, Options::default())?;
    println!("reopened; each account rebuilt from its newest snapshot:");
    println!(
        "  {:<14} {:>10} {:>8} {:>9} {:>9}",
        "account", "balance", "version", "snapshot", "replayed"
    );
    let mut loaded = Vec::new();
    for account in ACCOUNTS {
        let aggregate = store.load_aggregate::<Account>(account)?;
        if let Some(error) = aggregate.snapshot_error() {
            return Err(format!("{account}: snapshot passed over: {error}").into());
        }
        println!(
            "  {:<14} {:>10} {:>8} {:>9} {:>9}",
            account,
            money(aggregate.state().balance),
            aggregate.version().map_or("-".into(), |v| v.to_string()),
            aggregate
                .snapshot_version()
                .map_or("none".into(), |v| v.to_string()),
            aggregate.events_replayed()
        );
        loaded.push(aggregate);
    }

    // Check: every account replayed from its first event, ignoring
    // snapshots, must give the same state; money is neither made nor lost;
    // every transfer was credited exactly once.
    let mut transfers = HashMap::new();
    let mut flows = (0, 0);
    let mut events = 0;
    let mut total = 0;
    let mut mismatches = Vec::new();
    for aggregate in &loaded {
        let full = replay(&store, aggregate.stream(), &mut transfers, &mut flows)?;
        events += full.version.map_or(0, |v| v + 1);
        total += full.state.balance;
        if (&full.state, full.version) != (aggregate.state(), aggregate.version()) {
            mismatches.push(format!(
                "{}: from snapshot {:?} at {:?}, full replay {:?} at {:?}",
                aggregate.stream(),
                aggregate.state(),
                aggregate.version(),
                full.state,
                full.version
            ));
        }
    }
    let (deposited, withdrawn) = flows;
    if total != deposited - withdrawn {
        mismatches.push(format!(
            "balances total {} but deposits minus withdrawals are {}",
            money(total),
            money(deposited - withdrawn)
        ));
    }
    let in_flight = transfers.values().filter(|&&(_, inn)| inn == 0).count();
    if in_flight > 0 {
        mismatches.push(format!(
            "{in_flight} transfers debited but never credited (a run stopped between the two steps)"
        ));
    }
    let unmatched = transfers
        .values()
        .filter(|&&(out, inn)| inn != 0 && out != inn)
        .count();
    if unmatched > 0 {
        mismatches.push(format!("{unmatched} transfers credited a wrong amount"));
    }
    if !mismatches.is_empty() {
        return Err(format!("verification failed:\n  {}", mismatches.join("\n  ")).into());
    }
    println!(
        "verified against a full replay of {events} events: balances match, total {} = deposits - withdrawals, {} transfers each credited once",
        money(total),
        transfers.len()
    );
    store.close()?;
    Ok(())
}
