//! # evstore
//!
//! An embeddable event store: a segmented, memory-mapped, append-only log
//! with per-stream indexes, optimistic concurrency and group commit, linked
//! into your process as a library.
//!
//! ```
//! use evstore::{Direction, EventData, ExpectedVersion, Options, Store};
//! # fn main() -> evstore::Result<()> {
//! let dir = tempfile::tempdir().unwrap();
//! let store = Store::open(dir.path(), Options::default())?;
//!
//! // Append with optimistic concurrency: this stream must not exist yet.
//! let placed = store.append(
//!     "order-42",
//!     ExpectedVersion::NoStream,
//!     &[EventData::new("OrderPlaced", &b"{\"total\":42}"[..])],
//! )?;
//! store.append(
//!     "order-42",
//!     ExpectedVersion::Exact(placed.last_version),
//!     &[EventData::new("OrderShipped", &b"{}"[..])],
//! )?;
//!
//! // Rebuild the aggregate from its stream, or read the global log.
//! let history = store.read_stream("order-42", 0, Direction::Forward, 1000)?;
//! assert_eq!(history.len(), 2);
//! let all = store.read_all(0, Direction::Forward, 1000)?;
//! assert_eq!(all[1].position, 1);
//! # Ok(()) }
//! ```
//!
//! Appends are acknowledged after the `fdatasync` that covers them
//! ([`Durability::Sync`], the default); concurrent appenders share one sync.
//!
//! Long streams are rebuilt from a snapshot ([`Store::save_snapshot`],
//! [`Store::load_snapshot`]) plus the events after it. The typed layer
//! ([`Store::typed`], [`TypedStore`]) appends and reads your own event enums
//! ([`DomainEvent`]) through a [`Codec`], and loads and saves
//! [`Aggregate`]s with optimistic concurrency and automatic snapshots.
//!
//! Projections follow the log with [`Store::subscribe_all`] (history, then
//! live events, in global order, filtered) or run on their own thread with
//! [`Store::run_projection`], resuming from a durable checkpoint.
//!
//! The on-disk format is in `docs/format.md`; the reliability model in the
//! README.

#![deny(missing_docs)]
#![deny(unsafe_code)]
#![deny(clippy::unwrap_used, clippy::expect_used, clippy::indexing_slicing)]
#![warn(clippy::pedantic)]
// No pedantic lint is allowed for the whole crate: where one does not fit,
// an `#[expect]` on the smallest item says why.

#[cfg(not(all(unix, target_pointer_width = "64")))]
compile_error!(
    "evstore supports 64-bit Unix targets only: it memory-maps whole segments, \
     relies on fdatasync and other Unix file calls (through rustix), and takes \
     64-bit file offsets and lengths to fit in a usize"
);

mod aggregate;
mod checkpoint;
mod codec;
mod commit;
mod domain_event;
mod error;
mod event_view;
mod index;
mod key_store;
mod layout;
mod log;
mod options;
mod progress;
mod projection;
mod query;
mod retention;
mod sealing;
mod snapshot;
pub mod storage;
mod store;
mod stream_metadata;
mod subscription;
mod telemetry;
mod typed;
mod types;
mod validate;
pub mod verify;

pub use aggregate::{Aggregate, LoadedAggregate, SavedAggregate};
pub use checkpoint::{CHECKPOINTS_DIR, MAX_CHECKPOINT_NAME_LEN};
#[cfg(feature = "json")]
pub use codec::JsonCodec;
pub use codec::{BincodeCodec, Codec, CodecError};
pub use commit::{Commit, CommitResult};
pub use error::{Error, Result};
pub use event_view::{EventView, Tags};
pub use index::recovery::RecoveryStats;
pub use options::Options;
#[cfg(feature = "testing")]
pub use options::PanicPoint;
pub use projection::{
    HandlerError, OnError, ProjectionHandle, ProjectionOptions, ProjectionStart, ProjectionStats,
};
pub use query::{AppendCondition, Query, QueryItem};
pub use snapshot::SNAPSHOTS_DIR;
pub use snapshot::{DamagedSnapshot, Snapshot};
pub use store::{
    LogInfo, MetadataRead, QueryRead, QueryVisit, ScavengeReport, SegmentInfo, Store, StreamInfo,
    Streams, LOCK_FILE, SEGMENTS_DIR,
};
pub use stream_metadata::{DeleteMode, StreamMetadata};
#[cfg(feature = "testing")]
pub use subscription::ReadAheadStats;
#[cfg(feature = "async")]
pub use subscription::{BatchStream, SubscriptionStream};
pub use subscription::{EventBatch, EventBatchIter, Filter, Subscription, Visibility};
pub use telemetry::{
    AppendMetrics, CheckpointLag, Distribution, GroupCommitMetrics, Metrics, ModeMetrics,
    ProjectionMetrics, ReadMetrics, SegmentMetrics, SubscriberMetrics, SyncMetrics,
};
pub use typed::{DomainEvent, Recorded, TypedSnapshot, TypedStore};
pub use types::{AppendResult, Direction, Durability, EventData, ExpectedVersion, RecordedEvent};
pub use uuid::Uuid;

/// A cheaply cloned, shared slice of bytes: event payloads and metadata
/// ([`EventData::payload`], [`RecordedEvent::payload`]) and snapshot data.
/// Read ones are views of the memory-mapped log, not copies. Re-exported
/// from the [`bytes`](https://docs.rs/bytes) crate so callers need not
/// depend on a matching version of it.
pub use bytes::Bytes;

/// A UTF-8 string held in [`Bytes`]: the stream name and event type of a
/// [`RecordedEvent`], views of the log like its payload. Re-exported from
/// the [`bytestring`](https://docs.rs/bytestring) crate so callers need not
/// depend on a matching version of it.
pub use bytestring::ByteString;

/// On-disk format constants, for tools that inspect store files.
pub mod format {
    pub use crate::checkpoint::{
        CHECKPOINT_FORMAT_VERSION, CHECKPOINT_HEADER_LEN, CHECKPOINT_MAGIC,
    };
    pub use crate::index::catalog::{
        CATALOG_FILE, HEADER_LEN as CATALOG_HEADER_LEN, MAGIC as CATALOG_MAGIC,
        VERSION as CATALOG_FORMAT_VERSION,
    };
    pub use crate::index::directory::{
        DIRECTORY_ENTRY_LEN as INDEX_DIRECTORY_ENTRY_LEN, DIRECTORY_RUNS as INDEX_DIRECTORY_RUNS,
    };
    pub use crate::index::file::{
        INDEX_FLAG_STREAMS_ONLY, INDEX_FORMAT_VERSION, INDEX_HEADER_LEN, INDEX_MAGIC,
    };
    pub use crate::index::postings_file::{
        POSTINGS_FORMAT_VERSION, POSTINGS_HEADER_LEN, POSTINGS_KEY_ENTRY_LEN, POSTINGS_KIND_TAG,
        POSTINGS_KIND_TYPE, POSTINGS_MAGIC,
    };
    pub use crate::log::record::{
        BATCH_HEADER_LEN, FORMAT_VERSION, OLDEST_FORMAT_VERSION, RECORD_HEADER_LEN,
        REMOVED_FORMAT_VERSION, SEGMENT_HEADER_LEN, SEGMENT_MAGIC,
    };
    pub use crate::snapshot::{SNAPSHOT_FORMAT_VERSION, SNAPSHOT_HEADER_LEN, SNAPSHOT_MAGIC};
}
