//! The one error type of the crate.

use crate::types::ExpectedVersion;
use std::error::Error as StdError;
use std::io;
use std::path::PathBuf;
use std::sync::Arc;

/// Everything that can go wrong, as one flat enum so callers can match on
/// exactly the cases they handle.
///
/// An error caused by another one (an I/O error, a codec's error, a
/// projection handler's error) returns it from
/// [`source`](std::error::Error::source) and leaves it out of its own
/// message, so a report that walks the chain (`anyhow`'s `{:#}`, `eyre`)
/// names each cause once. Print such a report, not the message alone, to
/// see the cause.
#[derive(Debug, Clone, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// Another handle (in this process or another) holds the store's lock.
    #[error("store {dir} is locked by another handle{}", holder.as_ref().map(|p| format!(" (process {p})")).unwrap_or_default())]
    Locked {
        /// The store directory.
        dir: PathBuf,
        /// The pid recorded by the holder, when readable.
        holder: Option<String>,
    },

    /// Bytes on disk that should be valid are not: a CRC mismatch, a bad magic,
    /// a broken sequence. Never silently skipped.
    #[error("corrupted store file {file} at offset {offset}: {reason}")]
    Corrupted {
        /// The damaged file.
        file: PathBuf,
        /// Byte offset of the damage inside the file.
        offset: u64,
        /// What is wrong.
        reason: String,
    },

    /// A file written by a format version this build does not read.
    #[error("{file} has format version {found}, this build reads version {supported}")]
    UnsupportedFormat {
        /// The file.
        file: PathBuf,
        /// The version found in the file.
        found: u32,
        /// The version this build reads and writes.
        supported: u32,
    },

    /// The stream was not at the version the append expected; nothing was
    /// written.
    #[error("wrong expected version for stream '{stream}': expected {expected}, actual {}", actual.map_or_else(|| "no stream".into(), |v| v.to_string()))]
    WrongExpectedVersion {
        /// The stream appended to.
        stream: String,
        /// What the append expected.
        expected: ExpectedVersion,
        /// The stream's last version at the time, `None` if it had no events.
        actual: Option<u64>,
    },

    /// Some of the append's event ids were already written and others were
    /// not, or they were written elsewhere (another stream, another order,
    /// not one after the other): it is neither a new append nor a retry of
    /// one. (A retry of a consecutive part of one call's events, each in
    /// the stream it was written to, is a retry: it is answered with where
    /// those events are.) Nothing was written.
    #[error("append to '{stream}' conflicts with events already written: {reason}")]
    IdempotencyConflict {
        /// The stream appended to.
        stream: String,
        /// How the ids conflict.
        reason: String,
    },

    /// The stream name is empty, too long, or otherwise not allowed.
    #[error("invalid stream name {name:?}: {reason}")]
    InvalidStreamName {
        /// The rejected name.
        name: String,
        /// Why it was rejected.
        reason: String,
    },

    /// The event type is empty, too long, reserved (starts with `$`) or
    /// holds a control character.
    #[error("invalid event type {event_type:?}: {reason}")]
    InvalidEventType {
        /// The rejected type.
        event_type: String,
        /// Why it was rejected.
        reason: String,
    },

    /// An event's tag is empty, too long, holds a control character, or
    /// appears twice on the event; or the event has too many tags.
    #[error("invalid tag {tag:?}: {reason}")]
    InvalidTag {
        /// The rejected tag.
        tag: String,
        /// Why it was rejected.
        reason: String,
    },

    /// A query item with neither types nor tags (it would match every event:
    /// use [`crate::Query::all`] for that), or a commit that names the same
    /// stream twice or holds no event.
    #[error("invalid {what}: {reason}")]
    InvalidRequest {
        /// What was refused: "query", "commit".
        what: &'static str,
        /// Why.
        reason: String,
    },

    /// A commit's [`crate::AppendCondition`] failed: an event matching its
    /// query was appended after the position it names. Nothing was written.
    #[error("append condition failed: the event at position {position} matches its query")]
    AppendConditionFailed {
        /// The position of the first matching event after the condition's
        /// `after`.
        position: u64,
    },

    /// A snapshot for a stream version that has not been written (or is not
    /// yet visible to readers).
    #[error("cannot snapshot stream '{stream}' at version {version}: its last version is {}", stream_version.map_or_else(|| "none (no events)".into(), |v| v.to_string()))]
    SnapshotAhead {
        /// The stream.
        stream: String,
        /// The version the snapshot was for.
        version: u64,
        /// The stream's last visible version, `None` if it has no events.
        stream_version: Option<u64>,
    },

    /// A stored event's payload did not decode as the requested event type,
    /// or decoded as a different variant than the type name recorded with
    /// it. The event is intact on disk.
    #[error("event {version} of stream '{stream}' (type '{event_type}') does not decode with the {codec} codec")]
    DecodeEvent {
        /// The stream.
        stream: String,
        /// The event's stream version.
        version: u64,
        /// The event type recorded with the event.
        event_type: String,
        /// The codec used.
        codec: &'static str,
        /// What went wrong: the codec's error (see
        /// [`crate::CodecError::into_inner`]), or a message saying which
        /// other type the payload decoded as.
        source: Arc<dyn StdError + Send + Sync>,
    },

    /// A snapshot's data did not decode as the requested state type.
    #[error(
        "snapshot of stream '{stream}' at version {version} does not decode with the {codec} codec"
    )]
    DecodeSnapshot {
        /// The stream.
        stream: String,
        /// The snapshot's version.
        version: u64,
        /// The codec used.
        codec: &'static str,
        /// The codec's error (see [`crate::CodecError::into_inner`]).
        source: Arc<dyn StdError + Send + Sync>,
    },

    /// A value could not be encoded (for example a map with non-string keys
    /// in JSON).
    #[error("cannot encode {what} with the {codec} codec")]
    Encode {
        /// What was being encoded.
        what: String,
        /// The codec used.
        codec: &'static str,
        /// The codec's error (see [`crate::CodecError::into_inner`]).
        source: Arc<dyn StdError + Send + Sync>,
    },

    /// A checkpoint or projection name that is empty, too long or has
    /// control characters.
    #[error("invalid checkpoint name {name:?}: {reason}")]
    InvalidCheckpointName {
        /// The rejected name.
        name: String,
        /// Why it was rejected.
        reason: String,
    },

    /// A projection's handler failed on an event and the projection stopped
    /// (after its retries, if any). Its checkpoint is at that event, so a
    /// restart begins with it.
    #[error("projection '{name}' failed on the event at position {position}")]
    Projection {
        /// The projection.
        name: String,
        /// The position of the event the handler failed on.
        position: u64,
        /// The handler's error ([`crate::HandlerError`]), or a message
        /// saying it panicked.
        source: Arc<dyn StdError + Send + Sync>,
    },

    /// An append lists the same event id twice. Ids make retries
    /// idempotent, so within one append each must be unique.
    #[error("append to '{stream}' lists event id {id} more than once")]
    DuplicateEventId {
        /// The stream appended to.
        stream: String,
        /// The repeated id.
        id: uuid::Uuid,
    },

    /// The stream was hard deleted: it takes no more appends and no new
    /// metadata.
    #[error("stream '{stream}' was deleted for good")]
    StreamDeleted {
        /// The stream.
        stream: String,
    },

    /// The event's payload was erased (its subject was forgotten), so it
    /// cannot be decoded into a typed event.
    #[error("event {version} of stream '{stream}' was erased")]
    EventErased {
        /// The stream.
        stream: String,
        /// The event's version.
        version: u64,
    },

    /// An append with no events.
    #[error("an append needs at least one event")]
    EmptyBatch,

    /// One event (payload plus metadata) exceeds the configured limit or does
    /// not fit in a segment.
    #[error("event of {size} bytes exceeds the limit of {max} bytes")]
    EventTooLarge {
        /// The event's size (payload plus metadata) in bytes.
        size: usize,
        /// The largest size accepted.
        max: usize,
    },

    /// An append whose events together do not fit in one segment; an append
    /// is atomic, so it must live in a single segment.
    #[error("append of {size} encoded bytes does not fit in a segment (at most {max} bytes)")]
    BatchTooLarge {
        /// Encoded size of the append in bytes.
        size: usize,
        /// The most an append can take with the current segment size.
        max: usize,
    },

    /// The disk is full: the append, snapshot or checkpoint was not
    /// written, and nothing written before it was harmed. The store keeps
    /// working; retry once there is space.
    #[error("no space left on device while {context}")]
    NoSpace {
        /// What the store was doing.
        context: String,
        /// The error the file system returned.
        source: Arc<io::Error>,
    },

    /// A write or sync failed in a way that may have lost data in the page
    /// cache, so the store refuses further appends. Reads keep working;
    /// reopening the store recovers what is on disk.
    #[error("store refuses writes after a failed {context}")]
    StorePoisoned {
        /// The operation that failed.
        context: String,
        /// The underlying error, also returned by
        /// [`source`](std::error::Error::source).
        #[source]
        cause: Arc<io::Error>,
    },

    /// The store was opened with [`crate::Store::open_read_only`]: it
    /// cannot append, flush or save.
    #[error("cannot {operation}: the store is open read-only")]
    ReadOnly {
        /// What was refused.
        operation: &'static str,
    },

    /// The directory holds no store: a read-only open never creates one.
    #[error("{} is not an evstore store (it has no {}/ directory)", dir.display(), crate::layout::SEGMENTS_DIR)]
    NotAStore {
        /// The directory.
        dir: PathBuf,
    },

    /// The store was closed; no further appends are taken.
    #[error("the store is closed")]
    Closed,

    /// Invalid options.
    #[error("invalid option: {0}")]
    InvalidOption(String),

    /// An I/O error outside the write path (opening, scanning, reading).
    #[error("I/O error while {context}")]
    Io {
        /// What the store was doing.
        context: String,
        /// The underlying error.
        source: Arc<io::Error>,
    },
}

impl Error {
    pub(crate) fn io(context: impl Into<String>, source: io::Error) -> Self {
        Error::Io {
            context: context.into(),
            source: Arc::new(source),
        }
    }

    /// [`Error::NoSpace`]: `source` is the file system's refusal, doing
    /// `context`.
    pub(crate) fn no_space(context: impl Into<String>, source: io::Error) -> Self {
        Error::NoSpace {
            context: context.into(),
            source: Arc::new(source),
        }
    }

    /// [`Error::NoSpace`] if `source` says the disk is full, else
    /// [`Error::Io`]: for writes whose failure harms nothing already written.
    pub(crate) fn io_or_no_space(context: impl Into<String>, source: io::Error) -> Self {
        if source.kind() == io::ErrorKind::StorageFull {
            Error::no_space(context, source)
        } else {
            Error::io(context, source)
        }
    }

    pub(crate) fn corrupted(
        file: impl Into<PathBuf>,
        offset: u64,
        reason: impl Into<String>,
    ) -> Self {
        Error::Corrupted {
            file: file.into(),
            offset,
            reason: reason.into(),
        }
    }

    /// A mismatch reported at the checksum field at `checksum_at`, moved to
    /// the start of what the checksum covers: the damage it reveals may be
    /// anywhere in there, and a report must name a place at or before it.
    pub(crate) fn checksum_mismatch_from_start(self, checksum_at: u64) -> Self {
        match self {
            Error::Corrupted {
                file,
                offset,
                reason,
            } if offset == checksum_at => Error::Corrupted {
                file,
                offset: 0,
                reason,
            },
            other => other,
        }
    }
}

/// The crate's result type.
pub type Result<T, E = Error> = std::result::Result<T, E>;
