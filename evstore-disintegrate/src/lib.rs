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
//! use disintegrate::NoSnapshot;
//! use evstore::{Options, Store};
//! use evstore_disintegrate::{decision_maker, EvstoreEventStore};
//! # #[derive(Debug, Clone, PartialEq, serde::Serialize, serde::Deserialize, disintegrate::Event)]
//! # #[stream(CounterEvent, [Incremented])]
//! # enum DomainEvent { Incremented { #[id] counter_id: String } }
//! # let dir = tempfile::tempdir().unwrap();
//! let store = Store::open(dir.path(), Options::default()).unwrap();
//! let events = EvstoreEventStore::new(store, Json::<DomainEvent>::default());
//! let decisions = decision_maker(events, NoSnapshot);
//! # let _ = decisions;
//! # }
//! ```
//!
//! How disintegrate's model maps onto the log: an event id is its log
//! position plus one (below 2^63, so it also fits the `i64` columns of a
//! read model in SQL); the event's name is its evstore type; each domain
//! identifier is a tag `identifier:value`. A query filter becomes one
//! evstore query item per event type, carrying only the identifiers that
//! type declares, which is how disintegrate's PostgreSQL back end reads a
//! filter too (see [`EvstoreEventStore`]), so decisions come out the same.

#![forbid(unsafe_code)]
#![deny(missing_docs)]

mod decision_maker;
mod error;
mod event_store;
mod listener_runner;
mod query_plan;
mod snapshotter;

pub use decision_maker::{decision_maker, EvstoreDecisionMaker, WithEvstoreSnapshot};
pub use error::Error;
pub use event_store::{EvstoreEventStore, DEFAULT_STREAM};
/// What a [`ListenerRunner`] does when its handler fails.
pub use evstore::OnError;
pub use listener_runner::{ListenerHandle, ListenerRunner, CHECKPOINT_PREFIX};
pub use query_plan::identifier_tag;
pub use snapshotter::{EvstoreSnapshotter, SNAPSHOT_DIR};
