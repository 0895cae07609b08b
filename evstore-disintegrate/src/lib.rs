//! Runs [disintegrate](https://docs.rs/disintegrate) applications on
//! [evstore](https://docs.rs/evstore), an embedded event store: no database
//! server, every acknowledged decision durable, and its consistency check
//! made by the store's single writer.
//!
//! - [`EvstoreEventStore`] implements `disintegrate::EventStore<u64, E>`:
//!   query streams answered from evstore's type and tag indexes, and
//!   appends under a Dynamic Consistency Boundary condition.
//! - [`EvstoreSnapshotter`] implements `disintegrate::StateSnapshotter`.
//! - [`ListenerRunner`] drives an `EventListener` from the log: catch-up
//!   from a durable checkpoint, then live.
//!
//! ```
//! # #[tokio::main(flavor = "current_thread")] async fn main() {
//! use disintegrate::serde::json::Json;
//! use disintegrate::{DecisionMaker, EventSourcedStateStore, NoSnapshot};
//! use evstore::{Options, Store};
//! use evstore_disintegrate::EvstoreEventStore;
//! # #[derive(Debug, Clone, PartialEq, serde::Serialize, serde::Deserialize, disintegrate::Event)]
//! # #[stream(CounterEvent, [Incremented])]
//! # enum DomainEvent { Incremented { #[id] counter_id: String } }
//! # let dir = tempfile::tempdir().unwrap();
//! let store = Store::open(dir.path(), Options::default()).unwrap();
//! let events = EvstoreEventStore::new(store, Json::<DomainEvent>::default());
//! let decisions = DecisionMaker::new(EventSourcedStateStore::new(events, NoSnapshot));
//! # let _ = decisions;
//! # }
//! ```
//!
//! How disintegrate's model maps onto the log: an event id is its log
//! position plus one; the event's name is its evstore type; each domain
//! identifier is a tag `identifier:value`. A query filter becomes one
//! evstore query item per event type, carrying only the identifiers that
//! type declares, which is how disintegrate's PostgreSQL back end reads a
//! filter too (see [`EvstoreEventStore`]), so decisions come out the same.

#![forbid(unsafe_code)]
#![deny(missing_docs)]

mod error;
mod event_store;
mod listener_runner;
mod query_plan;
mod snapshotter;

pub use error::Error;
pub use event_store::{EvstoreEventStore, DEFAULT_STREAM};
pub use listener_runner::{ListenerHandle, ListenerRunner, CHECKPOINT_PREFIX};
pub use query_plan::identifier_tag;
pub use snapshotter::{EvstoreSnapshotter, SNAPSHOT_DIR};
