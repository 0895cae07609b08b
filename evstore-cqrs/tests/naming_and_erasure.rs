//! Streams of aggregates of different types never meet, whatever their
//! names, and erasing one aggregate (GDPR) leaves the others' replays and
//! query runners going.

use async_trait::async_trait;
use cqrs_es::event_sink::EventSink;
use cqrs_es::persist::{PersistedEventRepository, PersistedEventStore};
use cqrs_es::{Aggregate, CqrsFramework, DomainEvent, EventEnvelope, Query};
use evstore::{Options, Store};
use evstore_cqrs::{EvstoreEventRepository, QueryRunner};
use serde::{Deserialize, Serialize};
use std::sync::{Arc, Mutex};

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
enum Event {
    Opened,
    Deposited(i64),
}

impl DomainEvent for Event {
    fn event_type(&self) -> String {
        match self {
            Event::Opened => "Opened".into(),
            Event::Deposited(_) => "Deposited".into(),
        }
    }
    fn event_version(&self) -> String {
        "1".into()
    }
}

#[derive(Debug, thiserror::Error)]
#[error("{0}")]
struct Refused(String);

/// An account of aggregate type `TYPE`: two types whose names are a
/// prefix of each other's plus `-`.
macro_rules! account {
    ($name:ident, $type:literal) => {
        #[derive(Debug, Default, Serialize, Deserialize)]
        struct $name {
            balance: i64,
        }

        impl Aggregate for $name {
            const TYPE: &'static str = $type;
            type Command = i64;
            type Event = Event;
            type Error = Refused;
            type Services = ();

            async fn handle(
                &mut self,
                amount: i64,
                _: &(),
                sink: &EventSink<Self>,
            ) -> Result<(), Refused> {
                let event = if amount == 0 {
                    Event::Opened
                } else {
                    Event::Deposited(amount)
                };
                sink.write(event, self).await;
                Ok(())
            }

            fn apply(&mut self, event: Event) {
                if let Event::Deposited(amount) = event {
                    self.balance += amount;
                }
            }
        }
    };
}

account!(Plain, "account");
account!(Vip, "account-vip");

#[tokio::test(flavor = "multi_thread")]
async fn aggregates_of_two_types_never_share_a_stream() {
    let dir = tempfile::tempdir().unwrap();
    let store = Store::open(dir.path(), Options::default()).unwrap();
    let repo = || EvstoreEventRepository::new(store.clone());
    let plain =
        CqrsFramework::<Plain, _>::new(PersistedEventStore::new_event_store(repo()), vec![], ());
    let vip =
        CqrsFramework::<Vip, _>::new(PersistedEventStore::new_event_store(repo()), vec![], ());
    plain.execute("vip-7", 0).await.unwrap();
    plain.execute("vip-7", 100).await.unwrap();
    assert!(repo().get_events::<Vip>("7").await.unwrap().is_empty());
    // Each has its own history and its own optimistic lock.
    vip.execute("7", 0).await.unwrap();
    vip.execute("7", 5).await.unwrap();
    let of_plain = repo().get_events::<Plain>("vip-7").await.unwrap();
    let of_vip = repo().get_events::<Vip>("7").await.unwrap();
    assert_eq!((of_plain.len(), of_vip.len()), (2, 2));
    assert!(of_plain.iter().all(|e| e.aggregate_id == "vip-7"));
    assert!(of_vip
        .iter()
        .all(|e| e.aggregate_id == "7" && e.aggregate_type == "account-vip"));
    // A type without '-' or '%' keeps its streams' names.
    assert_eq!(store.stream_version("account-vip-7").unwrap(), Some(1));
}

/// Deposits seen by a query runner, by aggregate.
#[derive(Default)]
struct Seen(Mutex<Vec<(String, i64)>>);

struct Deposits(Arc<Seen>);

#[async_trait]
impl Query<Plain> for Deposits {
    async fn dispatch(&self, id: &str, events: &[EventEnvelope<Plain>]) {
        for event in events {
            if let Event::Deposited(amount) = event.payload {
                self.0 .0.lock().unwrap().push((id.to_string(), amount));
            }
        }
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn erasing_or_forgetting_one_aggregate_leaves_the_others_replays_and_queries_going() {
    for shredding in [false, true] {
        let dir = tempfile::tempdir().unwrap();
        let store =
            Store::open(dir.path(), Options::default().crypto_shredding(shredding)).unwrap();
        let repo = || EvstoreEventRepository::new(store.clone());
        let cqrs = CqrsFramework::<Plain, _>::new(
            PersistedEventStore::new_event_store(repo()),
            vec![],
            (),
        );
        for id in ["a1", "a2", "a3"] {
            cqrs.execute(id, 0).await.unwrap();
            cqrs.execute(id, 10).await.unwrap();
        }
        if shredding {
            assert!(store.forget("account-a2").unwrap());
        } else {
            store.erase_stream("account-a2").unwrap();
        }
        cqrs.execute("a3", 1).await.unwrap();

        let mut all = repo().stream_all_events::<Plain>().await.unwrap();
        let mut replayed = Vec::new();
        while let Some(event) = all.next::<Plain>(&[]).await {
            replayed.push(event.unwrap().aggregate_id);
        }
        assert_eq!(
            replayed,
            ["a1", "a1", "a3", "a3", "a3"],
            "shredding {shredding}"
        );
        // The erased aggregate itself cannot be loaded, and says so.
        assert!(repo().get_events::<Plain>("a2").await.is_err());

        let seen = Arc::new(Seen::default());
        let runner = QueryRunner::new(store.clone(), "deposits", Deposits(Arc::clone(&seen)))
            .start_at(0)
            .start()
            .unwrap();
        let end = store.last_position().unwrap() + 1;
        while runner.position() < end {
            assert!(!runner.is_finished(), "the runner stopped");
            tokio::task::yield_now().await;
        }
        runner.stop().unwrap();
        assert_eq!(
            *seen.0.lock().unwrap(),
            [
                ("a1".to_string(), 10),
                ("a3".to_string(), 10),
                ("a3".to_string(), 1)
            ]
        );
    }
}

/// An aggregate whose type has a `-`, written before stream names escaped
/// it (to the stream `type-id`), is still found there, goes on there, and
/// replays with its id.
#[tokio::test(flavor = "multi_thread")]
async fn an_aggregate_written_under_the_unescaped_name_is_found_and_goes_on_there() {
    let old = tempfile::tempdir().unwrap();
    {
        // Its records as the repository writes them, under the old name.
        let store = Store::open(old.path(), Options::default()).unwrap();
        let cqrs = CqrsFramework::<Vip, _>::new(
            PersistedEventStore::new_event_store(EvstoreEventRepository::new(store.clone())),
            vec![],
            (),
        );
        cqrs.execute("7", 0).await.unwrap();
        cqrs.execute("7", 5).await.unwrap();
        let written = store
            .read_stream("account%2Dvip-7", 0, evstore::Direction::Forward, 10)
            .unwrap();
        let copies: Vec<evstore::EventData> = written
            .iter()
            .map(|e| {
                evstore::EventData::new(&e.event_type, e.payload.clone())
                    .with_metadata(e.metadata.clone())
                    .with_tags(e.tags.iter().map(|t| t.to_string()))
            })
            .collect();
        let dir = tempfile::tempdir().unwrap();
        let legacy = Store::open(dir.path(), Options::default()).unwrap();
        legacy
            .append("account-vip-7", evstore::ExpectedVersion::NoStream, &copies)
            .unwrap();
        let repo = || EvstoreEventRepository::new(legacy.clone());
        let found = repo().get_events::<Vip>("7").await.unwrap();
        assert_eq!(found.len(), 2);
        assert!(found.iter().all(|e| e.aggregate_id == "7"));
        let cqrs =
            CqrsFramework::<Vip, _>::new(PersistedEventStore::new_event_store(repo()), vec![], ());
        cqrs.execute("7", 1).await.unwrap();
        assert_eq!(legacy.stream_version("account-vip-7").unwrap(), Some(2));
        assert_eq!(legacy.stream_version("account%2Dvip-7").unwrap(), None);
        let mut all = repo().stream_all_events::<Vip>().await.unwrap();
        let mut ids = Vec::new();
        while let Some(event) = all.next::<Vip>(&[]).await {
            ids.push(event.unwrap().aggregate_id);
        }
        assert_eq!(ids, ["7", "7", "7"]);
        // An account "vip-7" of the type without '-' keeps to its own.
        assert!(repo()
            .get_events::<Plain>("vip-8")
            .await
            .unwrap()
            .is_empty());
    }
}
