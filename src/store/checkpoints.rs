//! Named checkpoints: a projection's progress, saved durably and checked
//! against the log when loaded.

use super::Store;
#[cfg(doc)]
use crate::error::Error;
use crate::error::Result;
use crate::telemetry::CheckpointLag;
use crate::types::Direction;
use std::sync::atomic::Ordering;
use uuid::Uuid;

impl Store {
    /// Durably records `position` under `name`: written beside its final
    /// name, synced, renamed into place and the directory synced, so a crash
    /// leaves the previous checkpoint or this one. Use it for a projection's
    /// progress: the position of the first event it has not yet handled.
    /// On a full disk it fails with [`Error::NoSpace`] and the previous
    /// checkpoint stays.
    ///
    /// # Errors
    ///
    /// [`Error::InvalidCheckpointName`] for a name that is empty, too long or
    /// has control characters; [`Error::ReadOnly`] in a read-only store;
    /// [`Error::Io`] if the file cannot be written; [`Error::Corrupted`] or
    /// [`Error::Io`] if the event before `position` cannot be read.
    ///
    /// ```
    /// use evstore::{Options, Store};
    /// # let dir = tempfile::tempdir().unwrap();
    /// let store = Store::open(dir.path(), Options::default()).unwrap();
    /// assert_eq!(store.load_checkpoint("balances").unwrap(), None);
    /// store.save_checkpoint("balances", 1200).unwrap();
    /// assert_eq!(store.load_checkpoint("balances").unwrap(), Some(1200));
    /// ```
    pub fn save_checkpoint(&self, name: &str, position: u64) -> Result<()> {
        self.refuse_if_read_only("save a checkpoint")?;
        let previous_id = match position.checked_sub(1) {
            None => Uuid::nil(),
            Some(previous) => self.written_event_id(previous)?.unwrap_or_else(Uuid::nil),
        };
        self.checkpoints().save(name, position, previous_id)
    }

    /// The position last saved under `name`, or `None`. A damaged
    /// checkpoint file is an [`Error::Corrupted`], never a silent restart
    /// from the beginning.
    ///
    /// # Errors
    ///
    /// [`Error::InvalidCheckpointName`] for a name no save would take;
    /// [`Error::Corrupted`] for a damaged file; [`Error::UnsupportedFormat`]
    /// for one of a newer format; [`Error::Io`] if it cannot be read.
    pub fn load_checkpoint(&self, name: &str) -> Result<Option<u64>> {
        Ok(self.checkpoints().load(name)?.map(|(position, _)| position))
    }

    /// Every checkpoint saved in the store, in name order, with how far
    /// the visible log has moved past it: what a projection that resumes
    /// from it has to catch up on. Works on a read-only store too, so a
    /// process beside the writer can watch its projections' progress.
    ///
    /// ```
    /// use evstore::{EventData, ExpectedVersion, Options, Store};
    /// # let dir = tempfile::tempdir().unwrap();
    /// let store = Store::open(dir.path(), Options::default()).unwrap();
    /// let events = [EventData::new("E", &b""[..]), EventData::new("E", &b""[..])];
    /// store.append("s", ExpectedVersion::Any, &events).unwrap();
    /// store.save_checkpoint("read-model", 1).unwrap();
    /// let lags = store.checkpoint_lags().unwrap();
    /// assert_eq!((lags[0].name.as_str(), lags[0].position, lags[0].lag), ("read-model", 1, 1));
    /// ```
    ///
    /// # Errors
    ///
    /// [`Error::Corrupted`] for a damaged checkpoint file, or for damage in
    /// the index files that locate the positions it lags by;
    /// [`Error::UnsupportedFormat`] for one of a newer format; [`Error::Io`]
    /// if the directory or a file cannot be read.
    pub fn checkpoint_lags(&self) -> Result<Vec<CheckpointLag>> {
        let end = self.visible_end();
        self.checkpoints()
            .list()?
            .into_iter()
            .map(|(name, position)| {
                Ok(CheckpointLag {
                    lag: end.saturating_sub(position),
                    lag_bytes: self.log_bytes_between(position, end)?,
                    name,
                    position,
                })
            })
            .collect()
    }

    /// [`Store::load_checkpoint`] checked against the log: a position whose
    /// preceding event is no longer the one it was saved after (events seen
    /// before a crash lost them) is brought back to where the recovered log
    /// ended, before any event appended since.
    pub(crate) fn load_checkpoint_checked(&self, name: &str) -> Result<Option<u64>> {
        let Some((position, previous_id)) = self.checkpoints().load(name)? else {
            return Ok(None);
        };
        let Some(previous) = position.checked_sub(1) else {
            return Ok(Some(0));
        };
        if self.written_event_id(previous)? == Some(previous_id) {
            return Ok(Some(position));
        }
        if self.state().index.read().removed_span(previous).is_some() {
            // A scavenge removed the event before it: nothing is left to
            // compare with, and nothing can have taken its place.
            return Ok(Some(position));
        }
        Ok(Some(position.min(self.recovery_stats().events)))
    }

    /// The id of the written event at `position`, if there is one.
    fn written_event_id(&self, position: u64) -> Result<Option<Uuid>> {
        let written = self.state().written.load(Ordering::Acquire);
        let events = self.read_all_below(position, Direction::Forward, 1, written)?;
        Ok(events
            .first()
            .filter(|e| e.position == position)
            .map(|e| e.id))
    }
}
