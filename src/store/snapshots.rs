//! Snapshots: saving a stream's state at a version, and loading the newest
//! one that still matches the log.

use super::Store;
use crate::error::{Error, Result};
use crate::index::deferred_check::read_checked;
use crate::log::now_nanos;
#[cfg(doc)]
use crate::options::Options;
use crate::snapshot::{DamagedSnapshot, Snapshot};
use crate::types::{Direction, Durability};
use crate::validate::validate_stream_name;

impl Store {
    /// Saves `data` as the state of `stream` up to and including `version`,
    /// durably: the file is checksummed, written beside its final name,
    /// synced, renamed into place and the directory synced, so a crash
    /// leaves the previous snapshot or this one, never a mix. Then all but
    /// the newest [`Options::snapshots_kept`](crate::Options::snapshots_kept) snapshots of the stream are
    /// removed.
    ///
    /// `version` must be a visible version of the stream
    /// ([`Error::SnapshotAhead`] otherwise). In a `Buffered` store the events
    /// are flushed first, so a snapshot never outlives the events it
    /// summarizes.
    ///
    /// # Errors
    ///
    /// [`Error::SnapshotAhead`] if `version` is not a visible version of the
    /// stream; [`Error::InvalidStreamName`] for a name no append would take;
    /// [`Error::ReadOnly`] in a read-only store; [`Error::Io`] if the file
    /// cannot be written; the errors of [`Store::flush`] in a `Buffered`
    /// store, and of [`Store::read_stream`].
    ///
    /// ```
    /// use evstore::{EventData, ExpectedVersion, Options, Store};
    /// # let dir = tempfile::tempdir().unwrap();
    /// let store = Store::open(dir.path(), Options::default()).unwrap();
    /// let events: Vec<_> = (0..10).map(|i| EventData::new("Deposited", vec![i])).collect();
    /// let written = store.append("account-7", ExpectedVersion::NoStream, &events).unwrap();
    /// store.save_snapshot("account-7", written.last_version, b"balance=45").unwrap();
    ///
    /// let snapshot = store.load_snapshot("account-7").unwrap().unwrap();
    /// assert_eq!((snapshot.version, &snapshot.data[..]), (9, &b"balance=45"[..]));
    /// // Rebuild: the snapshot, then the events after it.
    /// let rest = store.read_stream("account-7", snapshot.version + 1, evstore::Direction::Forward, 1000).unwrap();
    /// assert!(rest.is_empty());
    /// ```
    pub fn save_snapshot(&self, stream: &str, version: u64, data: impl AsRef<[u8]>) -> Result<()> {
        self.refuse_if_read_only("save a snapshot")?;
        validate_stream_name(stream, self.options().max_stream_name_len)?;
        let stream_version = self.stream_version(stream)?;
        if stream_version.is_none_or(|last| version > last) {
            return Err(Error::SnapshotAhead {
                stream: stream.to_string(),
                version,
                stream_version,
            });
        }
        if self.options().durability == Durability::Buffered {
            self.flush()?;
        }
        let event_id = match self.snapshot_anchor(stream, version)? {
            Anchor::Event(id) => Some(id),
            // Retention took the event and a scavenge its segment: nothing
            // is left to anchor to, and nothing can take its place.
            Anchor::Removed => Some(uuid::Uuid::nil()),
            Anchor::None => None,
        };
        let Some(event_id) = event_id else {
            return Err(Error::SnapshotAhead {
                stream: stream.to_string(),
                version,
                stream_version,
            });
        };
        self.inner
            .snapshots
            .save(stream, version, event_id, now_nanos(), data.as_ref())
    }

    /// The id of the event a snapshot of `stream` at `version` is taken
    /// after: the event at exactly that version, read whatever retention
    /// drops from reads (a snapshot is what keeps the state of truncated or
    /// expired events), unless the stream was deleted after it (a soft
    /// delete starts the stream's state again; a hard one ends it). `None`
    /// if there is no such event; `Removed` if a scavenge removed the
    /// segment it was in (only events no read returned any more are
    /// removed, and a deletion is told by the rules).
    fn snapshot_anchor(&self, stream: &str, version: u64) -> Result<Anchor> {
        let deleted_after = self.retention_rules()?.get(stream).is_some_and(|rule| {
            rule.closed || rule.deleted_below.is_some_and(|below| version < below)
        });
        if deleted_after {
            return Ok(Anchor::None);
        }
        let end = self.visible_end();
        let events = self.read_stream_below(stream, version, Direction::Forward, 1, end)?;
        if let Some(event) = events.first().filter(|event| event.version == version) {
            return Ok(Anchor::Event(event.id));
        }
        // Not read: not there, or removed. Asked after the read, since a
        // removal may have come in between, and a removed one stays so.
        let mut located = Vec::new();
        read_checked(&self.inner.state.index, |index| {
            let exactly = |count| {
                if version < count {
                    (version, version + 1)
                } else {
                    (0, 0)
                }
            };
            index.stream_locations(stream, end, exactly, &mut located)
        })?;
        if located.first().is_some_and(|l| l.segment.is_removed()) {
            return Ok(Anchor::Removed);
        }
        Ok(Anchor::None)
    }

    /// The newest snapshot of `stream`, or `None` if it has none.
    ///
    /// A snapshot file that fails its checksum, is truncated, names another
    /// stream, or no longer matches the log (the stream's event at its
    /// version is not the one it was taken after) is never returned: it is
    /// renamed with a `.damaged` suffix, reported in
    /// [`Store::damaged_snapshots`], and the next older snapshot is tried.
    ///
    /// # Errors
    ///
    /// [`Error::InvalidStreamName`] for a name no append would take;
    /// [`Error::Io`] if the snapshots cannot be listed or read; the errors of
    /// [`Store::read_stream`] while checking one against the log. A damaged
    /// snapshot is not an error.
    pub fn load_snapshot(&self, stream: &str) -> Result<Option<Snapshot>> {
        self.load_snapshot_at_or_below(stream, u64::MAX)
    }

    /// The newest snapshot of `stream` whose version is at most
    /// `max_version`, with the same checks and fallback as
    /// [`Store::load_snapshot`].
    ///
    /// # Errors
    ///
    /// As [`Store::load_snapshot`].
    ///
    /// ```
    /// use evstore::{EventData, ExpectedVersion, Options, Store};
    /// # let dir = tempfile::tempdir().unwrap();
    /// let store = Store::open(dir.path(), Options::default().snapshots_kept(3)).unwrap();
    /// let events: Vec<_> = (0..30).map(|_| EventData::new("Tick", &b""[..])).collect();
    /// store.append("clock", ExpectedVersion::Any, &events).unwrap();
    /// for version in [9, 19, 29] {
    ///     store.save_snapshot("clock", version, version.to_string()).unwrap();
    /// }
    /// let older = store.load_snapshot_at_or_below("clock", 25).unwrap().unwrap();
    /// assert_eq!(older.version, 19);
    /// assert!(store.load_snapshot_at_or_below("clock", 5).unwrap().is_none());
    /// ```
    pub fn load_snapshot_at_or_below(
        &self,
        stream: &str,
        max_version: u64,
    ) -> Result<Option<Snapshot>> {
        validate_stream_name(stream, self.options().max_stream_name_len)?;
        let file = self.inner.snapshots.load(stream, max_version, |file| {
            Ok(match self.snapshot_anchor(stream, file.version)? {
                Anchor::None => Some(format!(
                    "the snapshot is of version {}, which the stream has not reached or \
                     deleted since",
                    file.version
                )),
                Anchor::Event(id) if id != file.event_id => Some(format!(
                    "the snapshot was taken after event {} but version {} is event {id}",
                    file.event_id, file.version
                )),
                // Removed: nothing left to compare with (see `Anchor`).
                Anchor::Event(_) | Anchor::Removed => None,
            })
        })?;
        Ok(file.map(|file| Snapshot {
            version: file.version,
            data: file.data,
            timestamp_nanos: file.timestamp_nanos,
        }))
    }

    /// Snapshot files found damaged or inconsistent with the log since the
    /// store was opened (the most recent 1,024), oldest first. Each was
    /// skipped in favour of an older snapshot, or none.
    #[must_use]
    pub fn damaged_snapshots(&self) -> Vec<DamagedSnapshot> {
        self.inner.snapshots.damaged()
    }
}

/// What a snapshot at a version is anchored to.
enum Anchor {
    /// The event at exactly that version.
    Event(uuid::Uuid),
    /// Nothing left to check against: the event's segment was removed
    /// after retention dropped it, which a deletion never leads to
    /// unnoticed (the rules say so).
    Removed,
    /// No event: the stream has not reached the version, or was deleted
    /// after it.
    None,
}
