//! What a stream keeps of its history: how many events, how old, and from
//! which version on. Stored as events of the stream's metadata stream, in a
//! byte layout of its own (see `docs/format.md`, "Stream metadata").

use std::time::Duration;

/// How much of a stream's history is kept. Events outside it are no longer
/// returned by any read or delivered to any subscription, from the moment
/// the metadata is written.
///
/// ```
/// use evstore::StreamMetadata;
/// use std::time::Duration;
/// let last_hundred_of_the_week = StreamMetadata::new()
///     .max_count(100)
///     .max_age(Duration::from_secs(7 * 24 * 3600));
/// assert_eq!(last_hundred_of_the_week.max_count, Some(100));
/// ```
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
#[non_exhaustive]
pub struct StreamMetadata {
    /// Only the newest `max_count` events are kept.
    pub max_count: Option<u64>,
    /// Only events written less than `max_age` ago are kept.
    pub max_age: Option<Duration>,
    /// Events with a version below this are dropped (for example the events
    /// a snapshot at this version replaces).
    pub truncate_before: Option<u64>,
}

impl StreamMetadata {
    /// Metadata that keeps everything.
    #[must_use]
    pub fn new() -> Self {
        Self::default()
    }

    /// Keeps only the newest `count` events.
    #[must_use]
    pub fn max_count(mut self, count: u64) -> Self {
        self.max_count = Some(count);
        self
    }

    /// Keeps only the events younger than `age`.
    #[must_use]
    pub fn max_age(mut self, age: Duration) -> Self {
        self.max_age = Some(age);
        self
    }

    /// Drops the events with a version below `version`.
    #[must_use]
    pub fn truncate_before(mut self, version: u64) -> Self {
        self.truncate_before = Some(version);
        self
    }
}

/// The event type of a stream metadata event.
pub const METADATA_EVENT_TYPE: &str = "$metadata";
/// The event type of the tombstone a deletion appends to the stream.
pub const TOMBSTONE_EVENT_TYPE: &str = "$streamDeleted";
/// The tag on every event that changes what a stream keeps (metadata
/// events and tombstones), so that they are found without a scan.
pub const LIFECYCLE_TAG: &str = "$lifecycle";
/// The prefix of a stream's metadata stream name.
pub const METADATA_STREAM_PREFIX: &str = "$$";

/// The first bytes of an encoded metadata event payload.
pub const METADATA_MAGIC: [u8; 4] = *b"EVMD";
/// The layout version of metadata payloads.
pub const METADATA_LAYOUT_VERSION: u8 = 1;
/// The length of an encoded metadata payload.
pub const METADATA_LEN: usize = 32;

const HAS_MAX_COUNT: u8 = 1;
const HAS_MAX_AGE: u8 = 2;
const HAS_TRUNCATE_BEFORE: u8 = 4;

/// The event type of a redaction marker, the record a scavenge leaves in
/// place of an event no read may return.
pub const REDACTED_EVENT_TYPE: &str = "$redacted";

/// The event type of an erasure: versions of the stream whose content is
/// gone from reads at once, and from the disk at the next scavenge.
pub const ERASURE_EVENT_TYPE: &str = "$erase";
/// The first bytes of an erasure's payload.
pub const ERASURE_MAGIC: [u8; 4] = *b"EVER";

/// Encodes an erasure of versions `first..=last`: magic, then the two
/// versions, little-endian.
pub(crate) fn encode_erasure(first: u64, last: u64) -> [u8; 20] {
    let mut out = [0u8; 20];
    out[..4].copy_from_slice(&ERASURE_MAGIC);
    out[4..12].copy_from_slice(&first.to_le_bytes());
    out[12..20].copy_from_slice(&last.to_le_bytes());
    out
}

/// Decodes an erasure's payload: the versions it erases, first and last.
pub(crate) fn decode_erasure(bytes: &[u8]) -> Option<(u64, u64)> {
    let bytes: &[u8; 20] = bytes.try_into().ok()?;
    let (magic, rest) = bytes.split_first_chunk::<4>()?;
    let (first, last) = rest.split_first_chunk::<8>()?;
    let last: &[u8; 8] = last.try_into().ok()?;
    let (first, last) = (u64::from_le_bytes(*first), u64::from_le_bytes(*last));
    (*magic == ERASURE_MAGIC && first <= last).then_some((first, last))
}

/// The first bytes of a tombstone's payload.
pub const TOMBSTONE_MAGIC: [u8; 4] = *b"EVTS";
/// The length of a tombstone's payload.
pub const TOMBSTONE_LEN: usize = 8;

/// How a stream is deleted.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum DeleteMode {
    /// The stream reads as empty; a later append recreates it, its versions
    /// continuing after the tombstone's.
    Soft,
    /// The stream is closed for good: later appends fail with
    /// [`crate::Error::StreamDeleted`].
    Hard,
}

/// The name of `stream`'s metadata stream.
#[must_use]
pub fn metadata_stream(stream: &str) -> String {
    format!("{METADATA_STREAM_PREFIX}{stream}")
}

impl StreamMetadata {
    /// The payload of a metadata event: magic, layout version, flags, two
    /// reserved zero bytes, then three little-endian u64 fields (max count,
    /// max age in nanoseconds, truncate-before version), each zero when its
    /// flag is clear.
    #[must_use]
    pub(crate) fn encode(&self) -> [u8; METADATA_LEN] {
        let mut out = [0u8; METADATA_LEN];
        let mut flags = 0u8;
        let age_nanos = self
            .max_age
            .map(|age| u64::try_from(age.as_nanos()).unwrap_or(u64::MAX));
        let fields = [
            (self.max_count, HAS_MAX_COUNT),
            (age_nanos, HAS_MAX_AGE),
            (self.truncate_before, HAS_TRUNCATE_BEFORE),
        ];
        for (i, (value, flag)) in fields.into_iter().enumerate() {
            if let Some(value) = value {
                flags |= flag;
                let at = 8 + 8 * i;
                if let Some(slot) = out.get_mut(at..at + 8) {
                    slot.copy_from_slice(&value.to_le_bytes());
                }
            }
        }
        out[..4].copy_from_slice(&METADATA_MAGIC);
        out[4] = METADATA_LAYOUT_VERSION;
        out[5] = flags;
        out
    }

    /// Decodes a metadata payload; `None` if it is not one.
    pub(crate) fn decode(bytes: &[u8]) -> Option<Self> {
        let bytes: &[u8; METADATA_LEN] = bytes.try_into().ok()?;
        let (head, rest) = bytes.split_first_chunk::<8>()?;
        if head[..4] != METADATA_MAGIC
            || head[4] != METADATA_LAYOUT_VERSION
            || head[5] & !(HAS_MAX_COUNT | HAS_MAX_AGE | HAS_TRUNCATE_BEFORE) != 0
            || head[6..] != [0, 0]
        {
            return None;
        }
        let flags = head[5];
        let (words, _) = rest.as_chunks::<8>();
        let mut fields = [None; 3];
        let flagged = [HAS_MAX_COUNT, HAS_MAX_AGE, HAS_TRUNCATE_BEFORE];
        for ((field, flag), word) in fields.iter_mut().zip(flagged).zip(words) {
            let value = u64::from_le_bytes(*word);
            if flags & flag != 0 {
                *field = Some(value);
            } else if value != 0 {
                // A clear flag over a set field: not a payload we wrote.
                return None;
            }
        }
        let [max_count, max_age, truncate_before] = fields;
        Some(StreamMetadata {
            max_count,
            max_age: max_age.map(Duration::from_nanos),
            truncate_before,
        })
    }
}

impl DeleteMode {
    /// A tombstone's payload: magic, then the mode (0 soft, 1 hard), then
    /// three reserved zero bytes.
    pub(crate) fn encode(self) -> [u8; TOMBSTONE_LEN] {
        let mut out = [0u8; TOMBSTONE_LEN];
        out[..4].copy_from_slice(&TOMBSTONE_MAGIC);
        out[4] = match self {
            DeleteMode::Soft => 0,
            DeleteMode::Hard => 1,
        };
        out
    }

    /// Decodes a tombstone's payload; `None` if it is not one.
    pub(crate) fn decode(bytes: &[u8]) -> Option<Self> {
        let bytes: &[u8; TOMBSTONE_LEN] = bytes.try_into().ok()?;
        if bytes[..4] != TOMBSTONE_MAGIC || bytes[5..] != [0, 0, 0] {
            return None;
        }
        match bytes[4] {
            0 => Some(DeleteMode::Soft),
            1 => Some(DeleteMode::Hard),
            _ => None,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn metadata_round_trips_and_rejects_foreign_bytes() {
        let all = StreamMetadata::new()
            .max_count(7)
            .max_age(Duration::from_millis(1500))
            .truncate_before(3);
        for meta in [
            StreamMetadata::new(),
            all,
            StreamMetadata::new().max_count(0),
        ] {
            assert_eq!(StreamMetadata::decode(&meta.encode()), Some(meta));
        }
        let mut bad = all.encode();
        bad[5] |= 8;
        assert_eq!(StreamMetadata::decode(&bad), None);
        let mut stray = StreamMetadata::new().encode();
        stray[8] = 1;
        assert_eq!(StreamMetadata::decode(&stray), None);
        assert_eq!(StreamMetadata::decode(&all.encode()[..31]), None);
        assert_eq!(
            StreamMetadata::decode(b"not metadata at all, 32 bytes.."),
            None
        );
    }

    #[test]
    fn a_huge_max_age_saturates_instead_of_wrapping() {
        let meta = StreamMetadata::new().max_age(Duration::MAX);
        let decoded = StreamMetadata::decode(&meta.encode()).map(|m| m.max_age);
        assert_eq!(decoded, Some(Some(Duration::from_nanos(u64::MAX))));
    }

    #[test]
    fn tombstones_round_trip() {
        for mode in [DeleteMode::Soft, DeleteMode::Hard] {
            assert_eq!(DeleteMode::decode(&mode.encode()), Some(mode));
        }
        let mut bad = DeleteMode::Hard.encode();
        bad[4] = 2;
        assert_eq!(DeleteMode::decode(&bad), None);
    }
}
