//! Setting what a stream keeps, and deleting streams: each a durable event
//! the store writes for itself, read back by [`super::retention`].

use super::append::{Origin, Part};
use super::Store;
use crate::error::{Error, Result};
use crate::stream_metadata::{
    encode_erasure, metadata_stream, DeleteMode, StreamMetadata, ERASURE_EVENT_TYPE, LIFECYCLE_TAG,
    METADATA_EVENT_TYPE, TOMBSTONE_EVENT_TYPE,
};
use crate::types::{AppendResult, EventData, ExpectedVersion};
use crate::validate::validate_stream_name;

/// A stream's metadata and deletion, as [`Store::stream_metadata`] reads
/// them.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
#[non_exhaustive]
pub struct MetadataRead {
    /// The metadata in force (everything kept if none was set).
    pub metadata: StreamMetadata,
    /// The version of the stream's metadata (its metadata changes and
    /// erasures), the expected version of the next
    /// [`Store::set_stream_metadata`]; `None` if neither was ever written.
    pub version: Option<u64>,
    /// How the stream was last deleted, if it was: a soft-deleted stream
    /// that was written again since reads its new events.
    pub deleted: Option<DeleteMode>,
}

impl Store {
    /// Sets what `stream` keeps of its history, if its metadata is at
    /// `expected` (its version: `NoStream` before the first). Takes effect on
    /// every read and subscription as soon as it is acknowledged; the
    /// events it drops are no longer returned, whether or not their bytes
    /// were reclaimed yet.
    ///
    /// # Errors
    ///
    /// [`Error::WrongExpectedVersion`] (naming the metadata stream, `$$` and
    /// the stream's name) if the metadata moved on; [`Error::StreamDeleted`]
    /// for a stream deleted for good; otherwise as [`Store::append`].
    ///
    /// ```
    /// use evstore::{Direction, EventData, ExpectedVersion, Options, Store, StreamMetadata};
    /// # let dir = tempfile::tempdir().unwrap();
    /// let store = Store::open(dir.path(), Options::default()).unwrap();
    /// let readings: Vec<_> = (0..10u8).map(|i| EventData::new("Reading", vec![i])).collect();
    /// store.append("sensor-1", ExpectedVersion::Any, &readings).unwrap();
    /// store
    ///     .set_stream_metadata("sensor-1", ExpectedVersion::NoStream, StreamMetadata::new().max_count(3))
    ///     .unwrap();
    /// let kept = store.read_stream("sensor-1", 0, Direction::Forward, 100).unwrap();
    /// assert_eq!(kept.iter().map(|e| e.version).collect::<Vec<_>>(), [7, 8, 9]);
    /// ```
    pub fn set_stream_metadata(
        &self,
        stream: &str,
        expected: ExpectedVersion,
        metadata: StreamMetadata,
    ) -> Result<AppendResult> {
        validate_stream_name(stream, self.options().max_stream_name_len)?;
        self.refuse_if_closed_stream(stream)?;
        let event = EventData::new(METADATA_EVENT_TYPE, metadata.encode().to_vec())
            .with_tags([LIFECYCLE_TAG]);
        self.write_lifecycle_event(
            &metadata_stream(stream),
            expected,
            event,
            None,
            "set metadata",
        )
    }

    /// The metadata of `stream` and whether it was deleted.
    ///
    /// # Errors
    ///
    /// [`Error::InvalidStreamName`]; [`Error::Corrupted`] or [`Error::Io`]
    /// if a lifecycle event cannot be read.
    pub fn stream_metadata(&self, stream: &str) -> Result<MetadataRead> {
        validate_stream_name(stream, self.options().max_stream_name_len)?;
        let rules = self.retention_rules()?;
        Ok(rules
            .get(stream)
            .map_or_else(MetadataRead::default, |rule| MetadataRead {
                metadata: rule.metadata,
                version: rule.metadata_version,
                deleted: if rule.closed {
                    Some(DeleteMode::Hard)
                } else {
                    rule.deleted_below.map(|_| DeleteMode::Soft)
                },
            }))
    }

    /// Deletes `stream` if it is at `expected`, by appending a tombstone
    /// event (type `$streamDeleted`) to it. From then on the stream reads as
    /// empty, and reads and subscriptions of the global log deliver its
    /// tombstone but none of its earlier events, so projections learn of the
    /// deletion and can erase their copies.
    ///
    /// [`DeleteMode::Soft`]: a later append recreates the stream, its
    /// versions continuing after the tombstone's (append with
    /// `ExpectedVersion::NoStream`, `Exact` of the returned version, or
    /// `Any`).
    /// [`DeleteMode::Hard`]: the stream is closed for good.
    ///
    /// # Errors
    ///
    /// [`Error::WrongExpectedVersion`] if the stream moved on;
    /// [`Error::StreamDeleted`] if it was deleted for good already;
    /// otherwise as [`Store::append`].
    ///
    /// ```
    /// use evstore::{DeleteMode, Direction, Error, EventData, ExpectedVersion, Options, Store};
    /// # let dir = tempfile::tempdir().unwrap();
    /// let store = Store::open(dir.path(), Options::default()).unwrap();
    /// let opened = store.append("cart-7", ExpectedVersion::NoStream, &[EventData::new("Opened", &b""[..])]).unwrap();
    /// let tombstone = store.delete_stream("cart-7", ExpectedVersion::Exact(opened.last_version), DeleteMode::Soft).unwrap();
    /// assert!(store.read_stream("cart-7", 0, Direction::Forward, 10).unwrap().is_empty());
    ///
    /// // Recreated: versions continue after the tombstone.
    /// let again = store
    ///     .append("cart-7", ExpectedVersion::Exact(tombstone.last_version), &[EventData::new("Opened", &b""[..])])
    ///     .unwrap();
    /// assert_eq!(again.first_version, 2);
    ///
    /// store.delete_stream("cart-7", ExpectedVersion::Any, DeleteMode::Hard).unwrap();
    /// let refused = store.append("cart-7", ExpectedVersion::Any, &[EventData::new("Opened", &b""[..])]);
    /// assert!(matches!(refused, Err(Error::StreamDeleted { .. })));
    /// ```
    pub fn delete_stream(
        &self,
        stream: &str,
        expected: ExpectedVersion,
        mode: DeleteMode,
    ) -> Result<AppendResult> {
        validate_stream_name(stream, self.options().max_stream_name_len)?;
        self.refuse_if_closed_stream(stream)?;
        let tombstone =
            EventData::new(TOMBSTONE_EVENT_TYPE, mode.encode().to_vec()).with_tags([LIFECYCLE_TAG]);
        self.write_lifecycle_event(stream, expected, tombstone, Some(mode), "delete")
    }

    /// Drops the events of `stream` below `version` (for example those a
    /// snapshot at `version` replaces), keeping the rest of its metadata:
    /// [`Store::set_stream_metadata`] with `truncate_before` changed,
    /// expecting the metadata read just before.
    ///
    /// # Errors
    ///
    /// [`Error::InvalidRequest`] if `version` is past the stream's end (the
    /// version its next event would get), which would drop the events
    /// appended later too; as [`Store::set_stream_metadata`] otherwise;
    /// [`Error::WrongExpectedVersion`] if the metadata changed between the
    /// read and the write.
    ///
    /// ```
    /// use evstore::{Direction, EventData, ExpectedVersion, Options, Store};
    /// # let dir = tempfile::tempdir().unwrap();
    /// let store = Store::open(dir.path(), Options::default()).unwrap();
    /// let events: Vec<_> = (0..5u8).map(|i| EventData::new("Step", vec![i])).collect();
    /// store.append("job-1", ExpectedVersion::Any, &events).unwrap();
    /// store.truncate_stream("job-1", 3).unwrap();
    /// let kept = store.read_stream("job-1", 0, Direction::Forward, 10).unwrap();
    /// assert_eq!(kept.iter().map(|e| e.version).collect::<Vec<_>>(), [3, 4]);
    /// ```
    pub fn truncate_stream(&self, stream: &str, version: u64) -> Result<AppendResult> {
        let next_version = self.stream_version(stream)?.map_or(0, |last| last + 1);
        if version > next_version {
            return Err(Error::InvalidRequest {
                what: "truncate",
                reason: format!(
                    "version {version} is past the end of stream {stream} (its next event gets version {next_version}): events appended later would be dropped too"
                ),
            });
        }
        let current = self.stream_metadata(stream)?;
        let expected = current
            .version
            .map_or(ExpectedVersion::NoStream, ExpectedVersion::Exact);
        self.set_stream_metadata(stream, expected, current.metadata.truncate_before(version))
    }

    /// Erases events `first..=last` of `stream` (GDPR art. 17): from the
    /// moment this returns, every read and subscription hands them out as
    /// erased events (type `$redacted`, no tags, metadata or payload; their
    /// stream, version, position, id and timestamp kept, so versions and
    /// audits stay coherent), and the next scavenge of their segments
    /// removes their bytes from the disk. Versions past the stream's end
    /// erase nothing; events appended later are not erased. The stream's
    /// snapshots at `first` and above, whose state may hold what those
    /// events held, are removed (an aggregate then loads from an older
    /// snapshot and the events, erased ones as markers).
    ///
    /// # Errors
    ///
    /// [`Error::InvalidRequest`] if `first > last`; [`Error::StreamDeleted`]
    /// for a stream deleted for good; [`Error::ReadOnly`] in a read-only
    /// store; [`Error::Io`] if a snapshot cannot be removed; otherwise as
    /// [`Store::append`].
    ///
    /// ```
    /// use evstore::{Direction, EventData, ExpectedVersion, Options, Store};
    /// # let dir = tempfile::tempdir().unwrap();
    /// let store = Store::open(dir.path(), Options::default()).unwrap();
    /// let events: Vec<_> = (0..3u8).map(|i| EventData::new("Noted", vec![i])).collect();
    /// store.append("patient-9", ExpectedVersion::Any, &events).unwrap();
    /// store.erase_events("patient-9", 1, 1).unwrap();
    /// let read = store.read_stream("patient-9", 0, Direction::Forward, 10).unwrap();
    /// assert_eq!(read.iter().map(|e| e.erased).collect::<Vec<_>>(), [false, true, false]);
    /// assert!(read[1].payload.is_empty() && &*read[1].event_type == "$redacted");
    /// ```
    pub fn erase_events(&self, stream: &str, first: u64, last: u64) -> Result<AppendResult> {
        self.refuse_if_read_only("erase events")?;
        validate_stream_name(stream, self.options().max_stream_name_len)?;
        if first > last {
            return Err(Error::InvalidRequest {
                what: "erase",
                reason: format!("first version {first} is after last version {last}"),
            });
        }
        self.refuse_if_closed_stream(stream)?;
        // A snapshot at or after `first` may hold what the erased events
        // held. Those there now go before the erasure is written (so that
        // none is left once it is acknowledged, whatever crashes), and
        // again after it, for one saved meanwhile from the events as they
        // were read before.
        self.inner.snapshots.remove_from(stream, first)?;
        let erasure = EventData::new(ERASURE_EVENT_TYPE, encode_erasure(first, last).to_vec())
            .with_tags([LIFECYCLE_TAG]);
        let result = self.write_lifecycle_event(
            &metadata_stream(stream),
            ExpectedVersion::Any,
            erasure,
            None,
            "erase",
        )?;
        self.inner.snapshots.remove_from(stream, first)?;
        Ok(result)
    }

    /// Erases every event `stream` holds now: [`Store::erase_events`] from
    /// version 0 to its last. `None` if it has no events.
    ///
    /// # Errors
    ///
    /// As [`Store::erase_events`].
    pub fn erase_stream(&self, stream: &str) -> Result<Option<AppendResult>> {
        match self.stream_version(stream)? {
            Some(last) => self.erase_events(stream, 0, last).map(Some),
            None => Ok(None),
        }
    }

    fn refuse_if_closed_stream(&self, stream: &str) -> Result<()> {
        match self.retention_rules()?.get(stream) {
            Some(rule) if rule.closed => Err(Error::StreamDeleted {
                stream: stream.to_string(),
            }),
            _ => Ok(()),
        }
    }

    fn write_lifecycle_event(
        &self,
        stream: &str,
        expected: ExpectedVersion,
        event: EventData,
        deletes: Option<DeleteMode>,
        operation: &'static str,
    ) -> Result<AppendResult> {
        let events = [event];
        let parts = [Part {
            stream,
            expected,
            events: &events,
            deletes,
        }];
        let durability = self.options().durability;
        let result = self.submit(&parts, &[], None, durability, operation, Origin::Store)?;
        result
            .streams
            .first()
            .copied()
            .ok_or_else(|| Error::InvalidRequest {
                what: operation,
                reason: "the writer answered without a result".into(),
            })
    }
}
