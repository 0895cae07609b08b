//! Deleted streams, as the writer enforces them: a stream deleted for good
//! takes no more events, and a soft-deleted one is recreated by an append
//! that expects no stream.

use super::Index;
use crate::stream_metadata::DeleteMode;

/// The last deletion of a stream.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Deletion {
    /// The version of its tombstone.
    pub tombstone_version: u64,
    /// How it was deleted.
    pub mode: DeleteMode,
}

impl Deletion {
    /// Whether the stream takes no more events.
    pub fn closed(&self) -> bool {
        self.mode == DeleteMode::Hard
    }

    /// Whether a stream whose last version is `actual` reads as not
    /// existing: nothing was appended since its soft delete.
    pub fn reads_as_no_stream(&self, actual: Option<u64>) -> bool {
        self.mode == DeleteMode::Soft && actual == Some(self.tombstone_version)
    }
}

impl Index {
    /// The last deletion of `stream`, if it was ever deleted.
    pub fn deletion(&self, stream: &str) -> Option<Deletion> {
        if self.deletions.is_empty() {
            return None;
        }
        self.deletions.get(stream).copied()
    }

    /// Records that `stream` was deleted (its tombstone was just indexed, or
    /// read back when the store opened).
    pub fn record_deletion(&mut self, stream: &str, deletion: Deletion) {
        self.deletions.insert(stream.to_string(), deletion);
    }
}
