//! The decision maker of an application on evstore, named once.

use crate::event_store::EvstoreEventStore;
use crate::snapshotter::EvstoreSnapshotter;
use disintegrate::{DecisionMaker, Event, EventSourcedStateStore, SnapshotConfig, WithSnapshot};
use disintegrate_serde::Serde;

/// disintegrate's decision maker over an [`EvstoreEventStore`] with codec
/// `S` and snapshot setting `SN` ([`disintegrate::NoSnapshot`] or
/// [`WithEvstoreSnapshot`]).
pub type EvstoreDecisionMaker<E, S, SN> =
    DecisionMaker<EventSourcedStateStore<u64, E, EvstoreEventStore<E, S>, SN>>;

/// Decision states loaded from and saved to an [`EvstoreSnapshotter`].
pub type WithEvstoreSnapshot = WithSnapshot<u64, EvstoreSnapshotter>;

/// A decision maker over `events`, with `snapshot` as its snapshot setting.
///
/// ```
/// # #[tokio::main(flavor = "current_thread")] async fn main() {
/// use disintegrate::serde::json::Json;
/// use evstore::{Options, Store};
/// use evstore_disintegrate::{decision_maker, EvstoreEventStore, EvstoreSnapshotter, WithEvstoreSnapshot};
/// # #[derive(Debug, Clone, PartialEq, serde::Serialize, serde::Deserialize, disintegrate::Event)]
/// # #[stream(CounterEvent, [Incremented])]
/// # enum DomainEvent { Incremented { #[id] counter_id: String } }
/// # let dir = tempfile::tempdir().unwrap();
/// let store = Store::open(dir.path(), Options::default()).unwrap();
/// let events = EvstoreEventStore::new(store.clone(), Json::<DomainEvent>::default());
/// let snapshots = WithEvstoreSnapshot::new(EvstoreSnapshotter::new(store, 10));
/// let decisions = decision_maker(events, snapshots);
/// # let _ = decisions;
/// # }
/// ```
pub fn decision_maker<E, S, SN>(
    events: EvstoreEventStore<E, S>,
    snapshot: SN,
) -> EvstoreDecisionMaker<E, S, SN>
where
    E: Event + Clone + Send + Sync + 'static,
    S: Serde<E> + Send + Sync + 'static,
    SN: SnapshotConfig + Clone,
{
    DecisionMaker::new(EventSourcedStateStore::new(events, snapshot))
}
