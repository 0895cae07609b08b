//! A cqrs-es application on evstore: accounts opened and credited through
//! `CqrsFramework`, aggregates loaded from snapshots taken every 10 events,
//! and a read model of balances fed by a `QueryRunner` from the log.
//!
//! ```text
//! cargo run -p evstore-cqrs --example accounts
//! ```

use async_trait::async_trait;
use cqrs_es::event_sink::EventSink;
use cqrs_es::persist::PersistedEventStore;
use cqrs_es::{Aggregate, CqrsFramework, DomainEvent, EventEnvelope, Query};
use evstore::{Options, Store};
use evstore_cqrs::{EvstoreEventRepository, QueryRunner};
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};

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

/// Balances by account, as a read model would keep them.
struct Balances(Arc<Mutex<BTreeMap<String, i64>>>);

#[async_trait]
impl Query<Account> for Balances {
    async fn dispatch(&self, id: &str, events: &[EventEnvelope<Account>]) {
        let mut balances = self.0.lock().unwrap_or_else(|e| e.into_inner());
        for event in events {
            let AccountEvent::Credited { amount } = event.payload;
            *balances.entry(id.to_string()).or_default() += amount;
        }
    }
}

#[tokio::main]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    let dir = tempfile::tempdir()?;
    let store = Store::open(dir.path(), Options::default())?;
    let repository = EvstoreEventRepository::new(store.clone());
    let cqrs = CqrsFramework::new(
        PersistedEventStore::<_, Account>::new_snapshot_store(repository, 10),
        vec![],
        (),
    );
    for i in 0..100 {
        cqrs.execute(&format!("acct-{}", i % 4), i + 1).await?;
    }

    let balances = Arc::new(Mutex::new(BTreeMap::new()));
    let runner =
        QueryRunner::new(store.clone(), "balances", Balances(Arc::clone(&balances))).start()?;
    let end = store.last_position().map_or(0, |p| p + 1);
    while runner.position() < end {
        tokio::task::yield_now().await;
    }
    let stopped_at = runner.stop()?;
    println!("read model at position {stopped_at}:");
    for (account, balance) in balances.lock().unwrap_or_else(|e| e.into_inner()).iter() {
        println!("  {account}: {balance}");
    }
    store.close()?;
    Ok(())
}
