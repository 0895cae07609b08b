//! What each stream keeps of its history, as its metadata events and
//! tombstones say: read from the log when the store opens, and brought up
//! to date before each read once a new one is visible, so every read path
//! drops expired and deleted events from the moment they are written.

use super::Store;
use crate::error::Result;
use crate::index::deletions::Deletion;
use crate::log::now_nanos;
use crate::query::Query;
use crate::retention::{Retained, Rules};
use crate::stream_metadata::LIFECYCLE_TAG;
use crate::types::Direction;
use parking_lot::RwLock;
use std::sync::Arc;

/// The lifecycle events read so far, and what they say.
#[derive(Debug, Default)]
pub(crate) struct Retention {
    kept: RwLock<Kept>,
}

#[derive(Debug, Default)]
struct Kept {
    /// Whether the log was read for lifecycle events at all.
    loaded: bool,
    /// Every lifecycle event below this position is applied.
    seen_end: u64,
    rules: Arc<Rules>,
}

impl Store {
    /// What every stream keeps, up to date with every visible lifecycle
    /// event.
    ///
    /// # Errors
    ///
    /// If a lifecycle event cannot be read.
    pub(crate) fn retention_rules(&self) -> Result<Arc<Rules>> {
        self.retention_rules_and_end().map(|(rules, _)| rules)
    }

    /// [`Store::retention_rules`], and the position below which they take
    /// every lifecycle event into account: it changes whenever they may.
    ///
    /// # Errors
    ///
    /// As [`Store::retention_rules`].
    pub(crate) fn retention_rules_and_end(&self) -> Result<(Arc<Rules>, u64)> {
        let state = self.state();
        let newest = state.index.read().last_lifecycle_position();
        {
            let kept = state.retention.kept.read();
            if kept.loaded && newest.is_none_or(|p| p < kept.seen_end) {
                return Ok((Arc::clone(&kept.rules), kept.seen_end));
            }
        }
        let mut kept = state.retention.kept.write();
        let end = self.visible_end();
        if !kept.loaded || kept.seen_end < end {
            let query = Query::tagged([LIFECYCLE_TAG]);
            let events =
                self.read_matching(&query, kept.seen_end, end, Direction::Forward, usize::MAX)?;
            let mut rules = Rules::clone(&kept.rules);
            for event in &events {
                rules.apply(event)?;
            }
            kept.rules = Arc::new(rules);
            kept.seen_end = end;
            kept.loaded = true;
        }
        Ok((Arc::clone(&kept.rules), kept.seen_end))
    }

    /// The rules in force now, for one read.
    ///
    /// # Errors
    ///
    /// As [`Store::retention_rules`].
    pub(crate) fn retained(&self) -> Result<Retained> {
        Ok(Retained::new(self.retention_rules()?, now_nanos()))
    }

    /// [`Store::retained`], and the position below which its rules take
    /// every lifecycle event into account.
    ///
    /// # Errors
    ///
    /// As [`Store::retention_rules`].
    pub(crate) fn retained_and_end(&self) -> Result<(Retained, u64)> {
        let (rules, end) = self.retention_rules_and_end()?;
        Ok((Retained::new(rules, now_nanos()), end))
    }

    /// The position of the newest lifecycle event written, without any
    /// lock: rules that take every lifecycle event below some `end` into
    /// account are current while this is below `end`.
    pub(crate) fn newest_lifecycle(&self) -> Option<u64> {
        self.state()
            .lifecycle_mark
            .load(std::sync::atomic::Ordering::Acquire)
            .checked_sub(1)
    }

    /// The version of the last event of `stream` at a position below
    /// `end`: what a `max_count` floor counts from for a read that sees
    /// the log up to `end` (counting from later, unsynced events would hide
    /// visible ones the stream keeps). If the index cannot tell, the last
    /// written version.
    pub(crate) fn last_visible_version(&self, stream: &str, end: u64) -> Option<u64> {
        let index = self.state().index.read();
        match index.visible_count(stream, end) {
            Ok(count) => count.checked_sub(1),
            Err(_) => index.last_version(stream),
        }
    }

    /// Tells the writer which streams were deleted, as the log says: done
    /// when the store opens, before any append is planned.
    ///
    /// # Errors
    ///
    /// As [`Store::retention_rules`].
    pub(crate) fn install_deletions(&self) -> Result<()> {
        let rules = self.retention_rules()?;
        let mut index = self.state().index.write();
        for (stream, tombstone_version, mode) in rules.deletions() {
            let deletion = Deletion {
                tombstone_version,
                mode,
            };
            index.record_deletion(stream, deletion);
        }
        Ok(())
    }
}
