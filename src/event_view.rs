//! An event lent for the length of a call, its strings and bytes borrowed
//! from the log instead of counted views of it: what
//! [`crate::Store::visit_query`] hands out.

use crate::types::RecordedEvent;
use bytestring::ByteString;
use std::time::{Duration, SystemTime, UNIX_EPOCH};
use uuid::Uuid;

/// A read event, borrowed: the same fields as a [`RecordedEvent`], each
/// pointing into the log (or into an event decoded for the call, when it
/// had to be opened or redacted first). Copy out what outlives the call.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub struct EventView<'a> {
    /// The stream the event belongs to.
    pub stream: &'a str,
    /// The event's version in its stream.
    pub version: u64,
    /// The event's position in the global log.
    pub position: u64,
    /// When the event was written, in nanoseconds since the Unix epoch.
    pub timestamp_nanos: u64,
    /// The id given at append.
    pub id: Uuid,
    /// The event type.
    pub event_type: &'a str,
    /// The tags, in ascending byte order: see [`EventView::tags`].
    tags: TagList<'a>,
    /// The metadata bytes.
    pub metadata: &'a [u8],
    /// The payload bytes.
    pub payload: &'a [u8],
    /// The event was erased: its payload and metadata are gone.
    pub erased: bool,
}

/// Where a view's tags are.
#[derive(Debug, Clone, Copy)]
pub(crate) enum TagList<'a> {
    /// A record's tag section, already checked, that is UTF-8 as a whole
    /// with each tag on character boundaries: each tag as a `u16` length
    /// then its bytes.
    Text(&'a str),
    /// A record's tag section, already checked (each tag is UTF-8, though
    /// its length bytes may not be).
    Section(&'a [u8]),
    /// The tags of a decoded event.
    Decoded(&'a [ByteString]),
}

impl PartialEq for TagList<'_> {
    fn eq(&self, other: &Self) -> bool {
        self.iter().eq(other.iter())
    }
}

impl Eq for TagList<'_> {}

impl<'a> TagList<'a> {
    fn iter(self) -> Tags<'a> {
        Tags { list: self, at: 0 }
    }
}

/// The tags of an [`EventView`], in ascending byte order.
#[derive(Debug, Clone)]
pub struct Tags<'a> {
    list: TagList<'a>,
    at: usize,
}

impl<'a> Iterator for Tags<'a> {
    type Item = &'a str;

    fn next(&mut self) -> Option<&'a str> {
        match self.list {
            TagList::Decoded(tags) => {
                let tag = tags.get(self.at)?;
                self.at += 1;
                Some(tag)
            }
            TagList::Text(section) => {
                let (start, end) = next_tag(section.as_bytes(), self.at)?;
                self.at = end;
                section.get(start..end)
            }
            TagList::Section(section) => {
                let (start, end) = next_tag(section, self.at)?;
                self.at = end;
                // Checked when the record was decoded; a tag that is not
                // UTF-8 never gets here.
                section
                    .get(start..end)
                    .and_then(|tag| std::str::from_utf8(tag).ok())
            }
        }
    }
}

/// Where the tag whose length is at `at` of a tag section is, if one is.
fn next_tag(section: &[u8], at: usize) -> Option<(usize, usize)> {
    let len_bytes: [u8; 2] = section.get(at..at + 2)?.try_into().ok()?;
    let start = at + 2;
    Some((start, start + usize::from(u16::from_le_bytes(len_bytes))))
}

impl<'a> EventView<'a> {
    /// Whether a tag starts with `prefix`, without building the tags.
    pub(crate) fn has_tag_starting_with(&self, prefix: &str) -> bool {
        let raw = match self.tags {
            TagList::Decoded(tags) => return tags.iter().any(|t| t.starts_with(prefix)),
            TagList::Text(section) => section.as_bytes(),
            TagList::Section(section) => section,
        };
        let mut at = 0;
        while let Some((start, end)) = next_tag(raw, at) {
            if raw
                .get(start..end)
                .is_some_and(|tag| tag.starts_with(prefix.as_bytes()))
            {
                return true;
            }
            at = end;
        }
        false
    }

    /// A view of a record's fields, their contents checked by the caller.
    #[expect(
        clippy::too_many_arguments,
        reason = "one per field of a record, all read from its header and frame"
    )]
    pub(crate) fn from_record(
        stream: &'a str,
        version: u64,
        position: u64,
        timestamp_nanos: u64,
        id: Uuid,
        event_type: &'a str,
        tags: TagList<'a>,
        metadata: &'a [u8],
        payload: &'a [u8],
    ) -> Self {
        EventView {
            stream,
            version,
            position,
            timestamp_nanos,
            id,
            event_type,
            tags,
            metadata,
            payload,
            erased: event_type == crate::stream_metadata::REDACTED_EVENT_TYPE,
        }
    }

    /// The tags given at append, in ascending byte order.
    ///
    /// ```
    /// use evstore::{Direction, EventData, ExpectedVersion, Options, Query, Store};
    /// # let dir = tempfile::tempdir().unwrap();
    /// let store = Store::open(dir.path(), Options::default()).unwrap();
    /// let event = EventData::new("Subscribed", &b"{}"[..]).with_tags(["student:s1", "course:c1"]);
    /// store.append("course-c1", ExpectedVersion::Any, &[event]).unwrap();
    /// let mut tags = Vec::new();
    /// store
    ///     .visit_query(&Query::tagged(["course:c1"]), 0, Direction::Forward, 10, |e| {
    ///         tags.extend(e.tags().map(str::to_owned))
    ///     })
    ///     .unwrap();
    /// assert_eq!(tags, ["course:c1", "student:s1"]);
    /// ```
    #[must_use]
    pub fn tags(&self) -> Tags<'a> {
        self.tags.iter()
    }

    /// When the event was written.
    #[must_use]
    pub fn timestamp(&self) -> SystemTime {
        UNIX_EPOCH + Duration::from_nanos(self.timestamp_nanos)
    }

    /// The event, owned: its strings and bytes copied.
    #[must_use]
    pub fn to_owned_event(&self) -> RecordedEvent {
        RecordedEvent {
            stream: ByteString::from(self.stream),
            version: self.version,
            position: self.position,
            timestamp_nanos: self.timestamp_nanos,
            id: self.id,
            event_type: ByteString::from(self.event_type),
            tags: self.tags().map(ByteString::from).collect(),
            metadata: bytes::Bytes::copy_from_slice(self.metadata),
            payload: bytes::Bytes::copy_from_slice(self.payload),
            erased: self.erased,
        }
    }
}

impl<'a> From<&'a RecordedEvent> for EventView<'a> {
    fn from(event: &'a RecordedEvent) -> Self {
        EventView {
            stream: &event.stream,
            version: event.version,
            position: event.position,
            timestamp_nanos: event.timestamp_nanos,
            id: event.id,
            event_type: &event.event_type,
            tags: TagList::Decoded(&event.tags),
            metadata: &event.metadata,
            payload: &event.payload,
            erased: event.erased,
        }
    }
}
