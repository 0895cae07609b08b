//! What the adapter's calls fail with.
//!
//! eventcore's `EventStore` methods must fail with its own
//! [`EventStoreError`], whose `StoreFailure` names only the operation; the
//! evstore error behind one is logged (with `tracing`, at error level)
//! before it is reduced to that. The reader, checkpoint and leadership
//! traits let a back end pick its error type: theirs is [`Error`], which
//! keeps the cause.

use eventcore_types::{EventStoreError, Operation, StreamPosition};
use std::error::Error as StdError;

/// An error of the evstore event reader, checkpoint store or projector
/// coordinator.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// The store refused or failed the operation.
    #[error(transparent)]
    Store(#[from] evstore::Error),

    /// Another instance in this process leads the projector: only one may
    /// run it at a time. Retry once that instance has stopped.
    #[error("projector {projector:?} already has a leader in this process")]
    LeadershipHeld {
        /// The projector (subscription) name.
        projector: String,
    },

    /// A read was asked to resume after a position that no evstore reader
    /// returned (one from another back end, say): it names no place in the
    /// log.
    #[error("position {position} does not come from an evstore event reader")]
    ForeignPosition {
        /// The position given.
        position: StreamPosition,
    },

    /// The log holds more events than a position can name (see
    /// [`crate::MAX_LOG_POSITION`]).
    #[error("log position {log_position} is beyond the largest an eventcore position can carry")]
    PositionOutOfRange {
        /// The event's position in the log.
        log_position: u64,
    },

    /// A saved checkpoint did not hold a position.
    #[error("checkpoint {name:?} is damaged: {reason}")]
    DamagedCheckpoint {
        /// The checkpoint (projector) name.
        name: String,
        /// What is wrong with it.
        reason: String,
    },

    /// A command-state snapshot could not be encoded as JSON.
    #[error("cannot encode command-state snapshot {snapshot:?} as JSON")]
    SnapshotEncoding {
        /// The snapshot id.
        snapshot: String,
        /// The encoder's error.
        source: serde_json::Error,
    },

    /// Saving files is done on tokio's blocking threads, so that no
    /// executor thread waits for a sync: the call was made outside a tokio
    /// runtime.
    #[error("cannot {operation} outside a tokio runtime")]
    NoRuntime {
        /// What was to be done.
        operation: &'static str,
    },

    /// The blocking task doing the work panicked or was cancelled (the
    /// runtime shutting down).
    #[error("the task that was to {operation} did not finish: {reason}")]
    TaskFailed {
        /// What was to be done.
        operation: &'static str,
        /// Why it did not finish.
        reason: String,
    },
}

/// eventcore's `StoreFailure` for `operation`, after logging `cause`, which
/// that error has no room for.
pub(crate) fn store_failure(
    operation: Operation,
    cause: &(dyn StdError + 'static),
) -> EventStoreError {
    tracing::error!(%operation, error = cause, "evstore failed an eventcore store operation");
    EventStoreError::StoreFailure { operation }
}
