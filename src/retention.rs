//! What each stream keeps of its history, as its metadata and deletions
//! say, and which events that drops from a read.

use crate::error::{Error, Result};
use crate::layout::SEGMENTS_DIR;
use crate::stream_metadata::{
    decode_erasure, DeleteMode, StreamMetadata, ERASURE_EVENT_TYPE, METADATA_EVENT_TYPE,
    METADATA_STREAM_PREFIX, REDACTED_EVENT_TYPE, TOMBSTONE_EVENT_TYPE,
};
use crate::types::RecordedEvent;
use std::collections::HashMap;
use std::sync::Arc;

/// What every stream with metadata or a deletion keeps.
#[derive(Debug, Default, Clone)]
pub(crate) struct Rules {
    streams: HashMap<String, StreamRule>,
}

/// What one stream keeps.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub(crate) struct StreamRule {
    /// The newest metadata set.
    pub metadata: StreamMetadata,
    /// The version of the newest event of the stream's metadata stream (a
    /// metadata change or an erasure): what the next metadata change
    /// expects.
    pub metadata_version: Option<u64>,
    /// After a soft delete: the version after the tombstone's.
    pub deleted_below: Option<u64>,
    /// Hard deleted: closed for good.
    pub closed: bool,
    /// The version of the last tombstone, if the stream was deleted.
    pub tombstone_version: Option<u64>,
    /// Version ranges erased: their events read as erased.
    pub erased: Vec<Erasure>,
}

/// One erasure of a stream's events.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Erasure {
    /// The first version erased.
    pub first: u64,
    /// The last version erased, as asked (it may lie past the stream's end).
    pub last: u64,
    /// The erasure's own position: only events written before it are
    /// erased, so versions asked past the stream's end never erase the
    /// events appended after it.
    pub before: u64,
}

impl Erasure {
    /// Whether it erases `event` (an event of its stream). A tombstone is
    /// never erased: it is how readers of the log learn of a deletion.
    fn covers(&self, event: &RecordedEvent) -> bool {
        event.position < self.before
            && (self.first..=self.last).contains(&event.version)
            && !is_lifecycle_event(event)
    }
}

impl StreamRule {
    /// The lowest version kept, given the stream's last version.
    pub fn version_floor(&self, last_version: Option<u64>) -> u64 {
        let by_count = match (self.metadata.max_count, last_version) {
            (Some(count), Some(last)) => (last + 1).saturating_sub(count),
            (Some(_) | None, None) | (None, Some(_)) => 0,
        };
        by_count
            .max(self.metadata.truncate_before.unwrap_or(0))
            .max(self.deleted_below.unwrap_or(0))
    }

    /// Whether the event is old enough for `max_age` to drop it.
    pub fn aged_out(&self, event: &RecordedEvent, now: u64) -> bool {
        self.metadata.max_age.is_some_and(|age| {
            let age = u64::try_from(age.as_nanos()).unwrap_or(u64::MAX);
            now.saturating_sub(event.timestamp_nanos) > age
        })
    }

    /// Whether the stream's events may need dropping at all.
    fn drops_anything(&self) -> bool {
        !self.erased.is_empty()
            || self.closed
            || self.deleted_below.is_some()
            || self.metadata.max_count.is_some()
            || self.metadata.max_age.is_some()
            || self.metadata.truncate_before.is_some_and(|v| v > 0)
    }
}

impl Rules {
    /// The rule of `stream`, if it has one.
    pub fn get(&self, stream: &str) -> Option<&StreamRule> {
        self.streams.get(stream)
    }

    /// Every deleted stream: its name, its last tombstone's version, and
    /// how it was last deleted.
    pub fn deletions(&self) -> impl Iterator<Item = (&str, u64, DeleteMode)> {
        self.streams.iter().filter_map(|(name, rule)| {
            let mode = if rule.closed {
                DeleteMode::Hard
            } else {
                DeleteMode::Soft
            };
            rule.tombstone_version
                .map(|version| (name.as_str(), version, mode))
        })
    }

    /// Whether some stream drops events as time passes or as it grows
    /// (`max_age`, `max_count`): which events are dead then changes with
    /// no new lifecycle event.
    pub fn changes_by_itself(&self) -> bool {
        self.streams
            .values()
            .any(|r| r.metadata.max_age.is_some() || r.metadata.max_count.is_some())
    }

    /// Whether no stream drops anything: reads need not look.
    pub fn keeps_everything(&self) -> bool {
        !self.streams.values().any(StreamRule::drops_anything)
    }

    pub fn apply(&mut self, event: &RecordedEvent) -> Result<()> {
        let bad = |reason: &str| {
            Error::corrupted(
                SEGMENTS_DIR,
                event.position,
                format!("lifecycle event of stream '{}': {reason}", &*event.stream),
            )
        };
        if let Some(stream) = event.stream.strip_prefix(METADATA_STREAM_PREFIX) {
            if &*event.event_type != METADATA_EVENT_TYPE && &*event.event_type != ERASURE_EVENT_TYPE
            {
                return Ok(());
            }
            let rule = self.streams.entry(stream.to_string()).or_default();
            if &*event.event_type == ERASURE_EVENT_TYPE {
                let (first, last) =
                    decode_erasure(&event.payload).ok_or_else(|| bad("unreadable erasure"))?;
                rule.erased.push(Erasure {
                    first,
                    last,
                    before: event.position,
                });
                rule.metadata_version = Some(event.version);
                return Ok(());
            }
            rule.metadata =
                StreamMetadata::decode(&event.payload).ok_or_else(|| bad("unreadable metadata"))?;
            rule.metadata_version = Some(event.version);
        } else if &*event.event_type == TOMBSTONE_EVENT_TYPE {
            let mode =
                DeleteMode::decode(&event.payload).ok_or_else(|| bad("unreadable tombstone"))?;
            let rule = self.streams.entry(event.stream.to_string()).or_default();
            rule.tombstone_version = Some(event.version);
            match mode {
                DeleteMode::Soft => rule.deleted_below = Some(event.version + 1),
                DeleteMode::Hard => rule.closed = true,
            }
        }
        Ok(())
    }
}

/// `event` reduced to what a redaction marker keeps: position, stream,
/// version, id and timestamp.
pub(crate) fn redact(event: &mut RecordedEvent) {
    event.event_type = bytestring::ByteString::from_static(REDACTED_EVENT_TYPE);
    event.tags = Vec::new();
    event.metadata = bytes::Bytes::new();
    event.payload = bytes::Bytes::new();
    event.erased = true;
}

/// A copy of `event` as [`redact`] leaves it.
pub(crate) fn redacted(event: &RecordedEvent) -> RecordedEvent {
    RecordedEvent {
        stream: event.stream.clone(),
        event_type: bytestring::ByteString::from_static(REDACTED_EVENT_TYPE),
        tags: Vec::new(),
        metadata: bytes::Bytes::new(),
        payload: bytes::Bytes::new(),
        erased: true,
        ..*event
    }
}

/// Whether `event` is one the store wrote to record a stream's lifecycle
/// (a metadata change or a tombstone): reads of the global log and
/// subscriptions deliver them, so subscribers learn of deletions, whatever
/// the stream keeps; reads of the stream never return them.
pub(crate) fn is_lifecycle_event(event: &RecordedEvent) -> bool {
    event.stream.starts_with(METADATA_STREAM_PREFIX) || &*event.event_type == TOMBSTONE_EVENT_TYPE
}

/// The rules in force for one read, at one instant.
#[derive(Debug, Clone)]
pub(crate) struct Retained {
    rules: Arc<Rules>,
    now: u64,
    everything: bool,
}

impl Retained {
    /// The rules as they are at `now` (nanoseconds since the epoch).
    pub fn new(rules: Arc<Rules>, now: u64) -> Self {
        let everything = rules.keeps_everything();
        Retained {
            rules,
            now,
            everything,
        }
    }

    /// Whether the read drops nothing.
    pub fn keeps_everything(&self) -> bool {
        self.everything
    }

    /// Whether a read of the global log (or a subscription) delivers
    /// `event`; `last_version` tells a stream's last version.
    pub fn keeps(&self, event: &RecordedEvent, last_version: impl Fn(&str) -> Option<u64>) -> bool {
        if self.everything {
            return true;
        }
        let Some(rule) = self.rules.get(&event.stream) else {
            return true;
        };
        if is_lifecycle_event(event) {
            return true;
        }
        if rule.closed || rule.aged_out(event, self.now) {
            return false;
        }
        let floor = rule.version_floor(last_version(&event.stream));
        event.version >= floor
    }

    /// The rule of `stream`, if it has one.
    pub fn rule(&self, stream: &str) -> Option<&StreamRule> {
        self.rules.get(stream)
    }

    /// Whether a read hands `event` out redacted: erased since it was
    /// read, and not a redaction marker already.
    pub fn redacts(&self, event: &RecordedEvent) -> bool {
        !event.erased && self.is_erased(event)
    }

    /// Whether `event` was erased: its content must not be read.
    pub fn is_erased(&self, event: &RecordedEvent) -> bool {
        !self.everything
            && self
                .rules
                .get(&event.stream)
                .is_some_and(|rule| rule.erased.iter().any(|erasure| erasure.covers(event)))
    }

    /// Reduces erased events to what a redaction marker keeps of them.
    pub fn redact(&self, events: &mut [RecordedEvent]) {
        if self.everything {
            return;
        }
        for event in events.iter_mut().filter(|e| !e.erased) {
            if self.is_erased(event) {
                redact(event);
            }
        }
    }

    /// The instant the rules are applied at.
    pub fn now(&self) -> u64 {
        self.now
    }
}
