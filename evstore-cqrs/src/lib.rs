//! Runs [cqrs-es](https://docs.rs/cqrs-es) applications on
//! [evstore](https://docs.rs/evstore), an embedded event store: no database
//! server, every acknowledged command durable.
//!
//! - [`EvstoreEventRepository`] implements cqrs-es's
//!   `PersistedEventRepository`: events, snapshots, and replays of one
//!   aggregate or of a whole aggregate type in commit order. Use it with
//!   `PersistedEventStore::new_event_store`, `new_snapshot_store` or
//!   `new_aggregate_store`.
//! - [`QueryRunner`] drives any `cqrs_es::Query` from the log instead of
//!   from the command path: catch-up from a durable checkpoint, then live.
//!
//! ```
//! # #[tokio::main(flavor = "current_thread")] async fn main() {
//! use evstore::{Options, Store};
//! use evstore_cqrs::EvstoreEventRepository;
//! # let dir = tempfile::tempdir().unwrap();
//! let store = Store::open(dir.path(), Options::default()).unwrap();
//! let repository = EvstoreEventRepository::new(store);
//! # let _ = repository;
//! # }
//! ```
//!
//! How aggregates map onto the log: aggregate `id` of type `T` is the
//! stream `T-id`, event `sequence` n is stream version n - 1, and every
//! event carries the tag `aggregate_type:T`, through which a type's events
//! are read in commit order. An event's `event_version` and metadata are
//! kept in the evstore event's metadata as JSON; its payload is the JSON
//! payload.

#![forbid(unsafe_code)]
#![deny(missing_docs)]

mod query_runner;
mod repository;

pub use query_runner::{QueryRunner, QueryRunnerHandle, POSITION_KEY};
pub use repository::EvstoreEventRepository;
