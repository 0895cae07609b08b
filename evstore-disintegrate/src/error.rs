//! What the adapter's calls fail with.

use std::error::Error as StdError;

/// An error of the evstore event store, snapshotter or listener runner.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// The store refused or failed the operation.
    #[error(transparent)]
    Store(#[from] evstore::Error),
    /// An event's payload could not be decoded.
    #[error(transparent)]
    Deserialization(#[from] disintegrate_serde::Error),
    /// A stored event could not be converted into the event type a query
    /// or listener asked for.
    #[error("unable to convert the stored event into the query's event type: {0}")]
    QueryEventMapping(#[source] Box<dyn StdError + Send + Sync>),
    /// An event matching the decision's query was appended after the
    /// state it was made from: nothing was written. Load the state again
    /// and decide again.
    // The text starts as disintegrate-postgres's does, so code that
    // recognises a conflict by its message works on both.
    #[error("concurrent modification error: event {id} matches the decision's query and is newer than its state")]
    Concurrency {
        /// The id of the first such event.
        id: u64,
    },
    /// A snapshot could not be written.
    #[error("writing snapshot {path}: {source}")]
    Snapshot {
        /// The snapshot file.
        path: std::path::PathBuf,
        /// What failed.
        #[source]
        source: std::io::Error,
    },
    /// A listener runner needs a tokio runtime to run handlers on.
    #[error("no tokio runtime to run the listener's handler on: start it from within a runtime")]
    NoRuntime,
}
