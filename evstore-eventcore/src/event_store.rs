//! The adapter, and eventcore's `EventStore` on it: reading streams,
//! committing commands, and command-state snapshots.

use crate::blocking::off_executor;
use crate::command_state;
use crate::commit::commit_writes;
use crate::error::store_failure;
use crate::store_registry::{shared_state, StoreShared};
use crate::stream_events::stream_events;
use eventcore_types::{
    CommandStateSnapshot, CommandStateSnapshotId, Event, EventStore, EventStoreError, EventStream,
    EventStreamSlice, Operation, StreamId, StreamVersion, StreamWrites,
};
use evstore::Store;
use std::sync::Arc;

/// An eventcore back end on an evstore [`Store`]: eventcore's
/// `EventStore`, `EventReader`, `CheckpointStore` and
/// `ProjectorCoordinator` in one value, so it serves `eventcore::execute`
/// and `eventcore::run_projection` alike. Cheap to clone; clones share
/// the store.
///
/// ```
/// # #[tokio::main(flavor = "current_thread")] async fn main() {
/// use eventcore::{collect_events, Event, StreamId};
/// use eventcore_types::{EventStore, StreamVersion, StreamWrites};
/// use evstore::{Options, Store};
/// use evstore_eventcore::EvstoreEventStore;
///
/// #[derive(Debug, Clone, PartialEq, serde::Serialize, serde::Deserialize)]
/// struct Opened { account: StreamId }
/// impl Event for Opened {
///     fn stream_id(&self) -> &StreamId { &self.account }
///     fn event_type_name() -> &'static str { "Opened" }
/// }
///
/// # let dir = tempfile::tempdir().unwrap();
/// let events = EvstoreEventStore::new(Store::open(dir.path(), Options::default()).unwrap());
/// let account = StreamId::try_new("account-1").unwrap();
/// let writes = StreamWrites::new()
///     .register_stream(account.clone(), StreamVersion::new(0))
///     .and_then(|writes| writes.append(Opened { account: account.clone() }))
///     .unwrap();
/// events.append_events(writes).await.unwrap();
///
/// let history = collect_events::<Opened, _>(events.read_stream(account.clone()).await.unwrap()).await;
/// assert_eq!(history.unwrap(), [Opened { account: account.clone() }]);
/// // Written as evstore stream "account-1", version 0.
/// assert_eq!(events.store().stream_version("account-1").unwrap(), Some(0));
/// # }
/// ```
#[derive(Debug, Clone)]
pub struct EvstoreEventStore {
    store: Store,
    shared: Arc<StoreShared>,
}

impl EvstoreEventStore {
    /// An eventcore back end on `store`.
    ///
    /// Every adapter over the same store directory in this process shares
    /// its projector leadership, whether it was cloned from another or
    /// made here from another clone of the store.
    #[must_use]
    pub fn new(store: Store) -> Self {
        let shared = shared_state(&store);
        EvstoreEventStore { store, shared }
    }

    /// The store it uses.
    #[must_use]
    pub fn store(&self) -> &Store {
        &self.store
    }

    pub(crate) fn shared(&self) -> &Arc<StoreShared> {
        &self.shared
    }
}

impl EventStore for EvstoreEventStore {
    async fn read_stream<E: Event>(
        &self,
        stream_id: StreamId,
    ) -> Result<EventStream<E>, EventStoreError> {
        Ok(stream_events(self.store.clone(), stream_id, 0))
    }

    /// Reads from evstore version `exclusive_version` on: the first
    /// `exclusive_version` events (versions 0 to `exclusive_version - 1`)
    /// are the ones already folded into the caller's state, and are not
    /// read at all.
    async fn read_stream_after<E: Event>(
        &self,
        stream_id: StreamId,
        exclusive_version: StreamVersion,
    ) -> Result<EventStream<E>, EventStoreError> {
        let skipped = u64::try_from(exclusive_version.into_inner()).unwrap_or(u64::MAX);
        Ok(stream_events(self.store.clone(), stream_id, skipped))
    }

    /// Commits every event of `writes`, checking the expected version of
    /// every stream they register, written or only read, all at once: see
    /// the crate documentation for how versions and read-only streams map
    /// onto an evstore commit.
    async fn append_events(
        &self,
        writes: StreamWrites,
    ) -> Result<EventStreamSlice, EventStoreError> {
        commit_writes(&self.store, writes).await
    }

    async fn load_command_state_snapshot(
        &self,
        snapshot_id: CommandStateSnapshotId,
    ) -> Result<Option<CommandStateSnapshot>, EventStoreError> {
        command_state::load(&self.store, &snapshot_id)
            .map_err(|error| store_failure(Operation::ReadStream, &error))
    }

    async fn save_command_state_snapshot(
        &self,
        snapshot_id: CommandStateSnapshotId,
        snapshot: CommandStateSnapshot,
    ) -> Result<(), EventStoreError> {
        let store = self.store.clone();
        let shared = Arc::clone(&self.shared);
        off_executor("save a command-state snapshot", move || {
            command_state::save(&store, &shared, &snapshot_id, &snapshot)
        })
        .await
        .map_err(|error| store_failure(Operation::AppendEvents, &error))
    }
}
