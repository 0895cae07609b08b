//! A small bank for the tests: accounts are streams, deposits and
//! transfers are eventcore commands, and a projector keeps balances.

// Each test file uses a different part of it.
#![allow(dead_code)]

use eventcore::{
    require, Command, CommandError, CommandLogic, Event, NewEvents, Projector, StreamId,
    StreamPosition,
};
use eventcore_types::{collect_events, EventStore};
use evstore::{Options, Store};
use evstore_eventcore::EvstoreEventStore;
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;
use std::convert::Infallible;
use std::path::Path;
use std::sync::{Arc, Mutex};

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum AccountEvent {
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

impl AccountEvent {
    /// What the event does to its account's balance.
    pub fn apply_to(&self, balance: u64) -> u64 {
        match self {
            AccountEvent::Deposited { amount, .. } => balance + amount,
            AccountEvent::Withdrawn { amount, .. } => balance.saturating_sub(*amount),
        }
    }
}

pub fn account(name: &str) -> StreamId {
    StreamId::try_new(name).unwrap()
}

pub fn open(dir: &Path) -> EvstoreEventStore {
    EvstoreEventStore::new(Store::open(dir, Options::default().segment_size(1 << 20)).unwrap())
}

/// Deposits `amounts`, one event each, in one command.
#[derive(Command)]
pub struct Deposit {
    #[stream]
    pub account: StreamId,
    pub amounts: Vec<u64>,
}

impl CommandLogic for Deposit {
    type Event = AccountEvent;
    type State = ();

    fn apply(&self, _: (), _: &AccountEvent) {}

    fn handle(&self, _: ()) -> Result<NewEvents<AccountEvent>, CommandError> {
        let deposits = self.amounts.iter().map(|&amount| AccountEvent::Deposited {
            account: self.account.clone(),
            amount,
        });
        Ok(deposits.collect::<Vec<_>>().into())
    }
}

/// Moves `amount` from one account to another, if the first has it.
#[derive(Command)]
pub struct Transfer {
    #[stream]
    pub from: StreamId,
    #[stream]
    pub to: StreamId,
    pub amount: u64,
}

impl CommandLogic for Transfer {
    type Event = AccountEvent;
    /// The balance of `from`.
    type State = u64;

    fn apply(&self, balance: u64, event: &AccountEvent) -> u64 {
        if *event.stream_id() == self.from {
            event.apply_to(balance)
        } else {
            balance
        }
    }

    fn handle(&self, balance: u64) -> Result<NewEvents<AccountEvent>, CommandError> {
        require!(
            balance >= self.amount,
            "insufficient funds: {balance} < {}",
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

/// The events of `account`, read through eventcore's `EventStore`.
pub async fn history(events: &EvstoreEventStore, account: &StreamId) -> Vec<AccountEvent> {
    collect_events(events.read_stream(account.clone()).await.unwrap())
        .await
        .unwrap()
}

pub async fn balance(events: &EvstoreEventStore, account: &StreamId) -> u64 {
    history(events, account)
        .await
        .iter()
        .fold(0, |balance, event| event.apply_to(balance))
}

/// Balances by account, and the positions of the events that made them.
#[derive(Debug, Default)]
pub struct Ledger {
    pub balances: BTreeMap<String, u64>,
    pub positions: Vec<StreamPosition>,
}

/// A projector keeping a [`Ledger`] that the test can read.
pub struct LedgerProjector {
    pub name: &'static str,
    pub ledger: Arc<Mutex<Ledger>>,
}

impl Projector for LedgerProjector {
    type Event = AccountEvent;
    type Error = Infallible;
    type Context = ();

    fn apply(
        &mut self,
        event: AccountEvent,
        position: StreamPosition,
        _: &mut (),
    ) -> Result<(), Infallible> {
        let mut ledger = self.ledger.lock().unwrap();
        let balance = ledger
            .balances
            .entry(event.stream_id().to_string())
            .or_default();
        *balance = event.apply_to(*balance);
        ledger.positions.push(position);
        Ok(())
    }

    fn name(&self) -> &str {
        self.name
    }
}
