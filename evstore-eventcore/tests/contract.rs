//! eventcore's backend contract suite (`eventcore-testing`'s
//! `backend_contract_tests!`), unmodified, against evstore.
//!
//! The suite asks for a fresh back end per test: each gets a store in a
//! temporary directory of its own. `ContractBackend` only keeps that
//! directory alive as long as the store, and passes every call through to
//! [`EvstoreEventStore`] untouched.

use eventcore_testing::contract::backend_contract_tests;
use eventcore_types::{
    CheckpointStore, CommandStateSnapshot, CommandStateSnapshotId, Event, EventFilter, EventPage,
    EventReader, EventStore, EventStoreError, EventStream, EventStreamSlice, ProjectorCoordinator,
    StreamId, StreamPosition, StreamVersion, StreamWrites,
};
use evstore::{Options, Store};
use evstore_eventcore::{Error, EvstoreEventStore, LeadershipGuard};
use std::sync::Arc;
use tempfile::TempDir;

struct ContractBackend {
    // Declared first: the store closes before its directory is removed.
    events: EvstoreEventStore,
    _dir: Arc<TempDir>,
}

fn contract_backend() -> ContractBackend {
    let dir = tempfile::tempdir().unwrap();
    // Small segments: each test's store is created from nothing.
    let store = Store::open(dir.path(), Options::default().segment_size(1 << 20)).unwrap();
    ContractBackend {
        events: EvstoreEventStore::new(store),
        _dir: Arc::new(dir),
    }
}

impl EventStore for ContractBackend {
    async fn read_stream<E: Event>(
        &self,
        stream_id: StreamId,
    ) -> Result<EventStream<E>, EventStoreError> {
        self.events.read_stream(stream_id).await
    }

    async fn read_stream_after<E: Event>(
        &self,
        stream_id: StreamId,
        exclusive_version: StreamVersion,
    ) -> Result<EventStream<E>, EventStoreError> {
        self.events
            .read_stream_after(stream_id, exclusive_version)
            .await
    }

    async fn append_events(
        &self,
        writes: StreamWrites,
    ) -> Result<EventStreamSlice, EventStoreError> {
        self.events.append_events(writes).await
    }

    async fn load_command_state_snapshot(
        &self,
        snapshot_id: CommandStateSnapshotId,
    ) -> Result<Option<CommandStateSnapshot>, EventStoreError> {
        self.events.load_command_state_snapshot(snapshot_id).await
    }

    async fn save_command_state_snapshot(
        &self,
        snapshot_id: CommandStateSnapshotId,
        snapshot: CommandStateSnapshot,
    ) -> Result<(), EventStoreError> {
        self.events
            .save_command_state_snapshot(snapshot_id, snapshot)
            .await
    }
}

impl EventReader for ContractBackend {
    type Error = Error;

    async fn read_events<E: Event>(
        &self,
        filter: EventFilter,
        page: EventPage,
    ) -> Result<Vec<(E, StreamPosition)>, Error> {
        self.events.read_events(filter, page).await
    }
}

impl CheckpointStore for ContractBackend {
    type Error = Error;

    async fn load(&self, name: &str) -> Result<Option<StreamPosition>, Error> {
        self.events.load(name).await
    }

    async fn save(&self, name: &str, position: StreamPosition) -> Result<(), Error> {
        self.events.save(name, position).await
    }
}

impl ProjectorCoordinator for ContractBackend {
    type Error = Error;
    type Guard = LeadershipGuard;

    async fn try_acquire(&self, subscription_name: &str) -> Result<LeadershipGuard, Error> {
        self.events.try_acquire(subscription_name).await
    }
}

backend_contract_tests! {
    suite = on_evstore,
    make_store = crate::contract_backend,
    make_checkpoint_store = crate::contract_backend,
    make_coordinator = crate::contract_backend,
}
