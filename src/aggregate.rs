//! Aggregates: state rebuilt from a stream's events, starting from a
//! snapshot.

use crate::domain_event::DomainEvent;
use crate::error::Error;
use crate::types::AppendResult;
use serde::de::DeserializeOwned;
use serde::Serialize;

/// State folded from one stream's events, such as a bank account from its
/// deposits and withdrawals. Load it with [`crate::Store::load_aggregate`]
/// or [`crate::TypedStore::load_aggregate`] and write new events with
/// [`crate::TypedStore::save_aggregate`].
///
/// `apply` must be a pure function of the state and the event: replaying the
/// same events onto the same snapshot must always give the same state, since
/// snapshots are only a shortcut for that replay.
///
/// ```
/// use evstore::{Aggregate, DomainEvent, Options, Store};
/// use serde::{Deserialize, Serialize};
///
/// #[derive(Serialize, Deserialize)]
/// enum CounterEvent { Added(u64) }
/// impl DomainEvent for CounterEvent {
///     fn event_type(&self) -> &str { "Added" }
/// }
///
/// #[derive(Default)]
/// struct Counter { total: u64 }
///
/// impl Aggregate for Counter {
///     type Event = CounterEvent;
///     type Snapshot = u64;
///     fn apply(&mut self, event: &CounterEvent) {
///         let CounterEvent::Added(n) = event;
///         self.total += n;
///     }
///     fn to_snapshot(&self) -> u64 { self.total }
///     fn from_snapshot(total: u64) -> Self { Counter { total } }
/// }
///
/// # let dir = tempfile::tempdir().unwrap();
/// let store = Store::open(dir.path(), Options::default()).unwrap();
/// let typed = store.typed().snapshot_every(2);
/// let mut counter = store.load_aggregate::<Counter>("counter-1").unwrap();
/// typed.save_aggregate(&mut counter, &[CounterEvent::Added(2), CounterEvent::Added(3)]).unwrap();
/// typed.save_aggregate(&mut counter, &[CounterEvent::Added(5)]).unwrap();
///
/// let loaded = store.load_aggregate::<Counter>("counter-1").unwrap();
/// assert_eq!(loaded.state().total, 10);
/// assert_eq!(loaded.version(), Some(2));
/// // Rebuilt from the snapshot taken at version 1, plus one event.
/// assert_eq!((loaded.snapshot_version(), loaded.events_replayed()), (Some(1), 1));
/// ```
pub trait Aggregate: Default {
    /// The stream's event type.
    type Event: DomainEvent;
    /// What a snapshot stores: the state itself (`Self`, if it is
    /// serializable) or a form of it meant to last across code changes.
    type Snapshot: Serialize + DeserializeOwned;

    /// Applies one event to the state.
    fn apply(&mut self, event: &Self::Event);

    /// The state as a snapshot.
    fn to_snapshot(&self) -> Self::Snapshot;

    /// The state a snapshot describes.
    fn from_snapshot(snapshot: Self::Snapshot) -> Self;
}

/// An aggregate as loaded, with the stream version its state reflects.
#[derive(Debug, Clone)]
pub struct LoadedAggregate<A> {
    stream: String,
    pub(crate) state: A,
    version: Option<u64>,
    snapshot_version: Option<u64>,
    events_replayed: u64,
    snapshot_error: Option<Error>,
}

impl<A> LoadedAggregate<A> {
    pub(crate) fn new(
        stream: String,
        state: A,
        version: Option<u64>,
        snapshot_version: Option<u64>,
        events_replayed: u64,
        snapshot_error: Option<Error>,
    ) -> Self {
        LoadedAggregate {
            stream,
            state,
            version,
            snapshot_version,
            events_replayed,
            snapshot_error,
        }
    }

    /// The stream.
    pub fn stream(&self) -> &str {
        &self.stream
    }

    /// The state.
    pub fn state(&self) -> &A {
        &self.state
    }

    /// Takes the state out.
    pub fn into_state(self) -> A {
        self.state
    }

    /// The version of the last event the state includes, `None` for a
    /// stream with no events; the next save expects the stream to be here.
    pub fn version(&self) -> Option<u64> {
        self.version
    }

    /// The version of the snapshot the state was last loaded from or saved
    /// to, if any.
    pub fn snapshot_version(&self) -> Option<u64> {
        self.snapshot_version
    }

    /// Events applied on top of the snapshot (or from the start) at load.
    pub fn events_replayed(&self) -> u64 {
        self.events_replayed
    }

    /// Why the newest snapshot was passed over at load, when it no longer
    /// decoded as the aggregate's snapshot type.
    pub fn snapshot_error(&self) -> Option<&Error> {
        self.snapshot_error.as_ref()
    }

    pub(crate) fn set_version(&mut self, version: u64) {
        self.version = Some(version);
    }

    pub(crate) fn set_snapshot_version(&mut self, version: u64) {
        self.snapshot_version = Some(version);
    }
}

/// What [`crate::TypedStore::save_aggregate`] did.
#[derive(Debug, Clone)]
#[non_exhaustive]
pub struct SavedAggregate {
    /// The append.
    pub appended: AppendResult,
    /// The version a snapshot was saved at, if one was due and succeeded.
    pub snapshot_saved: Option<u64>,
    /// Why a due snapshot failed; the events were written regardless.
    pub snapshot_error: Option<Error>,
}
