//! Runs [eventcore](https://docs.rs/eventcore) 2.x applications on
//! [evstore](https://docs.rs/evstore), an embedded event store: no database
//! server, every command durable once `execute` returns, and a command's
//! events over several streams written all together or not at all.
//!
//! [`EvstoreEventStore`] is the whole back end: it implements eventcore's
//! `EventStore` (reads, multi-stream commits with per-stream expected
//! versions, command-state snapshots), `EventReader`, `CheckpointStore`
//! and `ProjectorCoordinator`, so one value serves `eventcore::execute`
//! and `eventcore::run_projection`.
//!
//! ```
//! # #[tokio::main(flavor = "current_thread")] async fn main() {
//! use eventcore::{execute, Command, CommandError, CommandLogic, Event, NewEvents, RetryPolicy, StreamId};
//! use evstore::{Options, Store};
//! use evstore_eventcore::EvstoreEventStore;
//!
//! #[derive(Debug, Clone, serde::Serialize, serde::Deserialize)]
//! enum AccountEvent { Deposited { account: StreamId, amount: u64 } }
//! impl Event for AccountEvent {
//!     fn stream_id(&self) -> &StreamId { match self { AccountEvent::Deposited { account, .. } => account } }
//!     fn event_type_name() -> &'static str { "AccountEvent" }
//! }
//!
//! #[derive(Command)]
//! struct Deposit { #[stream] account: StreamId, amount: u64 }
//! impl CommandLogic for Deposit {
//!     type Event = AccountEvent;
//!     type State = ();
//!     fn apply(&self, _: (), _: &AccountEvent) {}
//!     fn handle(&self, _: ()) -> Result<NewEvents<AccountEvent>, CommandError> {
//!         Ok(vec![AccountEvent::Deposited { account: self.account.clone(), amount: self.amount }].into())
//!     }
//! }
//!
//! # let dir = tempfile::tempdir().unwrap();
//! let store = Store::open(dir.path(), Options::default()).unwrap();
//! let events = EvstoreEventStore::new(store);
//! let account = StreamId::try_new("account-1").unwrap();
//! execute(&events, Deposit { account, amount: 100 }, RetryPolicy::new()).await.unwrap();
//! assert_eq!(events.store().stream_version("account-1").unwrap(), Some(0));
//! # }
//! ```
//!
//! # How eventcore's model maps onto the log
//!
//! - **Streams.** An eventcore stream is the evstore stream of the same
//!   name. evstore reserves names starting with `$`; such an id is stored
//!   with a `[` in front. Names starting with `[` are otherwise the
//!   adapter's own (eventcore ids cannot contain `[`).
//! - **Events.** An event's evstore type is its `Event::event_type_name()`
//!   and its payload the JSON eventcore serialized it to; it has no
//!   metadata or tags.
//! - **Versions.** eventcore counts a stream's events (an empty stream is
//!   at version 0); evstore numbers them from 0. A stream a command read
//!   at eventcore version `n` is expected at evstore
//!   `ExpectedVersion::Exact(n - 1)`, or `ExpectedVersion::NoStream` when
//!   `n` is 0; a stream whose last evstore version is `v` is at eventcore
//!   version `v + 1`.
//! - **Commands.** A command's events are one evstore [`Commit`]: its
//!   streams with events are appended to, and the streams it read but
//!   writes nothing to (read-only guards) are the commit's checks. evstore's
//!   single writer checks every expected version against the log and
//!   writes all the events or none; a stale version fails the whole
//!   command with eventcore's `VersionConflict`, which `execute` retries.
//!   The commit is queued with evstore's async commit, so no executor
//!   thread waits for a sync. A command that emits no events has its
//!   versions compared with the store's all the same.
//! - **Positions.** eventcore's `StreamPosition` is a UUID; the reader's
//!   positions are version 8 UUIDs carrying the event's position in
//!   evstore's global log, ordered as the log is ([`stream_position`],
//!   [`log_position`]).
//! - **Checkpoints.** A projector's checkpoint is the evstore checkpoint
//!   of the same name, holding the position of the first event not yet
//!   handled (the log position of the last one handled, plus one), which
//!   `Store::checkpoint_lags` reports like any other.
//! - **Command-state snapshots** are JSON, kept as the evstore snapshot of
//!   a stream `[command-state]<id>`, whose one event anchors the snapshot
//!   file; a checkpoint given a position of another back end is kept the
//!   same way under `[checkpoint]<name>`.
//! - **Leadership** (`ProjectorCoordinator`) is held in this process. A
//!   store directory is locked by the one process that opens it, so every
//!   instance of a projector over it runs in this process and in-process
//!   exclusion is all the coordination there is: one leader per projector
//!   name and store, released when its [`LeadershipGuard`] is dropped.
//!
//! Saving a checkpoint or a snapshot syncs a file; those calls run on
//! tokio's blocking threads, so the adapter is used within a tokio
//! runtime, as eventcore itself is.
//!
//! [`Commit`]: evstore::Commit

#![forbid(unsafe_code)]
#![deny(missing_docs)]

mod blocking;
mod checkpoints;
mod command_state;
mod commit;
mod coordinator;
mod error;
mod event_store;
mod position;
mod reader;
mod records;
mod store_registry;
mod stream_events;
mod stream_names;

pub use coordinator::LeadershipGuard;
pub use error::Error;
pub use event_store::EvstoreEventStore;
pub use position::{log_position, stream_position, MAX_LOG_POSITION};
