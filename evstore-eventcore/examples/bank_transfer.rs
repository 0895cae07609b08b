//! An eventcore bank on evstore: money deposited into accounts, moved
//! between two account streams by one command that commits both sides
//! together, a transfer refused for want of funds, and a balance read
//! model built by eventcore's projection runner, its checkpoint kept by
//! evstore.
//!
//! ```text
//! cargo run -p evstore-eventcore --example bank_transfer
//! ```

use eventcore::{
    execute, require, run_projection, Command, CommandError, CommandLogic, Event, NewEvents,
    ProjectionConfig, Projector, RetryPolicy, StreamId, StreamPosition,
};
use evstore::{Options, Store};
use evstore_eventcore::{log_position, EvstoreEventStore};
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;
use std::convert::Infallible;
use std::sync::{Arc, Mutex};

#[derive(Debug, Clone, Serialize, Deserialize)]
enum AccountEvent {
    Deposited { account: StreamId, amount: u64 },
    Withdrawn { account: StreamId, amount: u64 },
}

impl Event for AccountEvent {
    fn stream_id(&self) -> &StreamId {
        match self {
            AccountEvent::Deposited { account, .. } | AccountEvent::Withdrawn { account, .. } => {
                account
            }
        }
    }

    fn event_type_name() -> &'static str {
        "AccountEvent"
    }
}

#[derive(Command)]
struct Deposit {
    #[stream]
    account: StreamId,
    amount: u64,
}

impl CommandLogic for Deposit {
    type Event = AccountEvent;
    type State = ();

    fn apply(&self, _: (), _: &AccountEvent) {}

    fn handle(&self, _: ()) -> Result<NewEvents<AccountEvent>, CommandError> {
        let deposited = AccountEvent::Deposited {
            account: self.account.clone(),
            amount: self.amount,
        };
        Ok(vec![deposited].into())
    }
}

/// Moves money between two accounts: both streams are read, and both get
/// their event in the same commit, or neither does.
#[derive(Command)]
struct Transfer {
    #[stream]
    from: StreamId,
    #[stream]
    to: StreamId,
    amount: u64,
}

impl CommandLogic for Transfer {
    type Event = AccountEvent;
    /// What `from` holds.
    type State = u64;

    fn apply(&self, balance: u64, event: &AccountEvent) -> u64 {
        match event {
            AccountEvent::Deposited { account, amount } if *account == self.from => {
                balance + amount
            }
            AccountEvent::Withdrawn { account, amount } if *account == self.from => {
                balance.saturating_sub(*amount)
            }
            _ => balance,
        }
    }

    fn handle(&self, balance: u64) -> Result<NewEvents<AccountEvent>, CommandError> {
        require!(
            balance >= self.amount,
            "{} holds {balance}, cannot send {}",
            self.from,
            self.amount
        );
        Ok(vec![
            AccountEvent::Withdrawn {
                account: self.from.clone(),
                amount: self.amount,
            },
            AccountEvent::Deposited {
                account: self.to.clone(),
                amount: self.amount,
            },
        ]
        .into())
    }
}

/// The balance of every account, as a read model would keep it.
struct Balances(Arc<Mutex<BTreeMap<String, u64>>>);

impl Projector for Balances {
    type Event = AccountEvent;
    type Error = Infallible;
    type Context = ();

    fn apply(
        &mut self,
        event: AccountEvent,
        _: StreamPosition,
        _: &mut (),
    ) -> Result<(), Infallible> {
        let mut balances = self.0.lock().unwrap_or_else(|e| e.into_inner());
        match event {
            AccountEvent::Deposited { account, amount } => {
                *balances.entry(account.to_string()).or_default() += amount;
            }
            AccountEvent::Withdrawn { account, amount } => {
                let balance = balances.entry(account.to_string()).or_default();
                *balance = balance.saturating_sub(amount);
            }
        }
        Ok(())
    }

    fn name(&self) -> &str {
        "balances"
    }
}

#[tokio::main]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    let dir = tempfile::tempdir()?;
    let bank = EvstoreEventStore::new(Store::open(dir.path(), Options::default())?);
    let alice = StreamId::try_new("account-alice")?;
    let bob = StreamId::try_new("account-bob")?;

    for (account, amount) in [(&alice, 100), (&bob, 20)] {
        let deposit = Deposit {
            account: account.clone(),
            amount,
        };
        execute(&bank, deposit, RetryPolicy::new()).await?;
        println!("deposited {amount} into {account}");
    }

    let transfer = Transfer {
        from: alice.clone(),
        to: bob.clone(),
        amount: 70,
    };
    execute(&bank, transfer, RetryPolicy::new()).await?;
    println!("moved 70 from {alice} to {bob}, both sides in one commit");

    let overdraft = Transfer {
        from: alice.clone(),
        to: bob.clone(),
        amount: 50,
    };
    match execute(&bank, overdraft, RetryPolicy::new()).await {
        Err(CommandError::BusinessRuleViolation(reason)) => {
            println!("refused to move 50 more: {reason}");
        }
        other => println!("unexpected: {other:?}"),
    }

    let balances = Arc::new(Mutex::new(BTreeMap::new()));
    run_projection(
        Balances(Arc::clone(&balances)),
        &bank,
        ProjectionConfig::default(),
    )
    .await?;
    println!("balances read model:");
    for (account, balance) in balances.lock().unwrap_or_else(|e| e.into_inner()).iter() {
        println!("  {account}: {balance}");
    }

    let store = bank.store();
    for account in ["account-alice", "account-bob"] {
        let version = store.stream_version(account)?;
        println!("evstore stream {account}: last version {version:?}");
    }
    let checkpoint = eventcore_types::CheckpointStore::load(&bank, "balances").await?;
    println!(
        "projector checkpoint: last handled log position {:?}, evstore checkpoint {:?}",
        checkpoint.and_then(log_position),
        store.load_checkpoint("balances")?
    );
    Ok(())
}
