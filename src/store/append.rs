//! Appending: validating an append, encoding its records, and handing it
//! to group commit; flushing and closing.

use super::group_commit::{AppendRequest, Command, ReplyTo};
use super::Store;
use crate::error::{Error, Result};
use crate::index::deferred_check::read_checked;
use crate::log::{max_batch_len, record};
use crate::types::{AppendResult, Durability, EventData, ExpectedVersion};
use crate::validate::validate_stream_name;
use std::sync::mpsc::sync_channel;
use uuid::Uuid;

impl Store {
    /// Appends `events` to `stream` if it is at `expected`, atomically: after
    /// any crash either all of them exist or none. Acknowledged with the
    /// store's default durability.
    ///
    /// # Errors
    ///
    /// [`Error::WrongExpectedVersion`] if the stream is not at `expected`, and
    /// [`Error::IdempotencyConflict`] if the events' ids match only some of
    /// the events already written; nothing is written then. An append outside
    /// the limits is refused with [`Error::InvalidStreamName`],
    /// [`Error::InvalidEventType`], [`Error::EmptyBatch`],
    /// [`Error::DuplicateEventId`], [`Error::EventTooLarge`] or
    /// [`Error::BatchTooLarge`]. [`Error::NoSpace`] when the disk is full;
    /// [`Error::StorePoisoned`] once a write or sync has failed;
    /// [`Error::ReadOnly`] or [`Error::Closed`] when the store takes no
    /// appends; [`Error::Corrupted`] or [`Error::Io`] if an index needed to
    /// recognise retries cannot be read.
    ///
    /// ```
    /// use evstore::{Error, EventData, ExpectedVersion, Options, Store};
    /// # let dir = tempfile::tempdir().unwrap();
    /// let store = Store::open(dir.path(), Options::default()).unwrap();
    /// let first = store
    ///     .append("cart-1", ExpectedVersion::NoStream, &[EventData::new("Created", &b"{}"[..])])
    ///     .unwrap();
    /// store
    ///     .append("cart-1", ExpectedVersion::Exact(first.last_version), &[EventData::new("ItemAdded", &b"{}"[..])])
    ///     .unwrap();
    /// // A writer that read an older state loses the race and writes nothing.
    /// let stale = store.append("cart-1", ExpectedVersion::Exact(0), &[EventData::new("ItemAdded", &b"{}"[..])]);
    /// assert!(matches!(stale, Err(Error::WrongExpectedVersion { actual: Some(1), .. })));
    /// ```
    pub fn append(
        &self,
        stream: &str,
        expected: ExpectedVersion,
        events: &[EventData],
    ) -> Result<AppendResult> {
        self.append_with_durability(stream, expected, events, self.options().durability)
    }

    /// [`Store::append`] with an explicit durability for this append.
    ///
    /// # Errors
    ///
    /// As [`Store::append`].
    pub fn append_with_durability(
        &self,
        stream: &str,
        expected: ExpectedVersion,
        events: &[EventData],
        durability: Durability,
    ) -> Result<AppendResult> {
        self.refuse_if_read_only("append")?;
        let encoded_len = self.validate_append(stream, events)?;
        if let Some(error) = self.inner.state.poisoned() {
            return Err(error);
        }
        let ids: Vec<u128> = events.iter().map(|e| e.id.as_u128()).collect();
        let mut records = Vec::with_capacity(encoded_len);
        for event in events {
            record::encode_unfinished_record(
                &mut records,
                &record::RecordBody {
                    id: event.id,
                    stream,
                    event_type: &event.event_type,
                    metadata: &event.metadata,
                    payload: &event.payload,
                },
            );
        }
        let ids_absent_below = read_checked(&self.inner.state.index, |index| {
            index.sealed_without_ids(&ids)
        })?;
        let (reply, result) = sync_channel(1);
        let request = AppendRequest {
            stream: stream.to_string(),
            expected,
            records,
            ids,
            durability,
            encoded_len,
            ids_absent_below,
            reply: ReplyTo::new(reply),
        };
        self.group_commit("append")?
            .call(Command::Append(request), &result)
    }

    fn validate_append(&self, stream: &str, events: &[EventData]) -> Result<usize> {
        let options = self.options();
        validate_stream_name(stream, options.max_stream_name_len)?;
        if events.is_empty() {
            return Err(Error::EmptyBatch);
        }
        // A retry is recognised by its ids; an append that repeats one
        // could not be told from a retry of itself.
        if events.len() > 1 {
            let mut seen: foldhash::HashSet<Uuid> =
                foldhash::HashSetExt::with_capacity(events.len());
            if let Some(event) = events.iter().find(|e| !seen.insert(e.id)) {
                return Err(Error::DuplicateEventId {
                    stream: stream.to_string(),
                    id: event.id,
                });
            }
        }
        let segment_room = max_batch_len(options.segment_size);
        let max_event = options
            .max_event_size
            .min(segment_room.saturating_sub(record::RECORD_HEADER_LEN + 8 + stream.len()));
        for event in events {
            let event_type = event.event_type();
            if event_type.is_empty() {
                return Err(Error::InvalidEventType {
                    event_type: event_type.into(),
                    reason: "empty".into(),
                });
            }
            if event_type.len() > options.max_event_type_len {
                return Err(Error::InvalidEventType {
                    event_type: event_type.into(),
                    reason: format!("longer than {} bytes", options.max_event_type_len),
                });
            }
            if event.size() > max_event
                || record::record_len(
                    stream.len(),
                    event_type.len(),
                    event.metadata.len(),
                    event.payload.len(),
                ) + record::BATCH_HEADER_LEN
                    > segment_room
            {
                return Err(Error::EventTooLarge {
                    size: event.size(),
                    max: max_event,
                });
            }
        }
        let encoded = record::encoded_batch_len(stream, events);
        if encoded > segment_room || events.len() > u32::MAX as usize {
            return Err(Error::BatchTooLarge {
                size: encoded,
                max: segment_room,
            });
        }
        Ok(encoded)
    }

    /// Makes every append acknowledged so far durable.
    ///
    /// # Errors
    ///
    /// [`Error::StorePoisoned`] if the sync fails, or once a write or sync
    /// has failed; [`Error::ReadOnly`] or [`Error::Closed`] when the store
    /// takes no appends.
    pub fn flush(&self) -> Result<()> {
        self.refuse_if_read_only("flush")?;
        let (reply, result) = sync_channel(1);
        self.group_commit("flush")?
            .call(Command::Flush(reply), &result)
    }
}
