//! The values that cross the public API.

use bytes::Bytes;
use bytestring::ByteString;
use std::fmt;
use std::time::{Duration, SystemTime, UNIX_EPOCH};
use uuid::Uuid;

/// What an append expects of the stream before it writes, for optimistic
/// concurrency.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum ExpectedVersion {
    /// No check.
    Any,
    /// The stream must have no events yet.
    NoStream,
    /// The stream must have at least one event.
    StreamExists,
    /// The stream's last event must have exactly this version (versions count
    /// from 0, so `Exact(0)` means the stream holds one event).
    Exact(u64),
}

impl fmt::Display for ExpectedVersion {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            ExpectedVersion::Any => f.write_str("any"),
            ExpectedVersion::NoStream => f.write_str("no stream"),
            ExpectedVersion::StreamExists => f.write_str("stream exists"),
            ExpectedVersion::Exact(v) => write!(f, "{v}"),
        }
    }
}

impl ExpectedVersion {
    /// Whether a stream whose last version is `actual` (`None`: no events)
    /// satisfies this expectation.
    #[must_use]
    pub fn matches(self, actual: Option<u64>) -> bool {
        match self {
            ExpectedVersion::Any => true,
            ExpectedVersion::NoStream => actual.is_none(),
            ExpectedVersion::StreamExists => actual.is_some(),
            ExpectedVersion::Exact(v) => actual == Some(v),
        }
    }
}

/// When an append is acknowledged, and what readers see.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default)]
pub enum Durability {
    /// Acknowledge after the `fdatasync` that covers the append: it survives
    /// any crash. Readers of a `Sync` store see only durable events.
    #[default]
    Sync,
    /// Acknowledge once written to the file (the page cache); a background
    /// flush makes it durable within the store's flush interval. A crash may
    /// lose it, never half of it. Readers of a `Buffered` store see every
    /// written event.
    Buffered,
}

/// Reading direction.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Direction {
    /// Oldest first.
    Forward,
    /// Newest first.
    Backward,
}

/// What a thread remembers between the ids it makes (see [`fresh_id`]).
#[derive(Clone, Copy)]
struct IdClock {
    /// The millisecond of the last id.
    millis: u64,
    /// The counter of the last id: random when its millisecond began,
    /// then one more for each id.
    counter: u64,
    /// 32 random bits drawn with others and not used yet, if `spare`.
    random: u32,
    spare: bool,
}

thread_local! {
    /// Each thread's own id clock: a process-wide one would be a lock that
    /// every appending thread takes for every event.
    static ID_CLOCK: std::cell::Cell<IdClock> = const {
        std::cell::Cell::new(IdClock { millis: 0, counter: 0, random: 0, spare: false })
    };
}

/// Bits of the counter: 12 in the version 7 `rand_a` field, 30 at the top
/// of `rand_b`; the 32 bits below them are random for each id.
const ID_COUNTER_BITS: u32 = 42;
/// A new millisecond's counter starts below half its range, so that it
/// cannot run out within the millisecond at any real rate.
const ID_COUNTER_SEED_MASK: u64 = (1 << (ID_COUNTER_BITS - 1)) - 1;

fn low_u32(n: u64) -> u32 {
    u32::try_from(n & u64::from(u32::MAX)).unwrap_or(0)
}

/// A fresh, time-ordered event id (see [`EventData::new`]): a version 7
/// UUID holding the Unix millisecond, a 42-bit counter that starts at a
/// random value each millisecond and makes a thread's ids increase within
/// one, then 32 random bits. The counter and the random bits are laid out
/// as in the `uuid` crate's `ContextV7`, which costs several times more per
/// id (128 random bits and 128-bit divisions for every id). The random bits
/// come from the user-space cryptographic generator `uuid` uses.
fn fresh_id() -> Uuid {
    let now = SystemTime::now().duration_since(UNIX_EPOCH).map_or(0, |d| {
        d.as_secs()
            .saturating_mul(1000)
            .saturating_add(u64::from(d.subsec_millis()))
    });
    ID_CLOCK.with(|cell| {
        let mut clock = cell.get();
        if now > clock.millis {
            clock.millis = now;
            clock.counter = rand::random::<u64>() & ID_COUNTER_SEED_MASK;
        } else {
            // The same millisecond, or the clock went back: the last id's
            // millisecond goes on, so ids keep increasing.
            clock.counter += 1;
            if clock.counter >> ID_COUNTER_BITS != 0 {
                clock.millis += 1;
                clock.counter = rand::random::<u64>() & ID_COUNTER_SEED_MASK;
            }
        }
        let random = if clock.spare {
            clock.spare = false;
            clock.random
        } else {
            let fresh = rand::random::<u64>();
            clock.random = low_u32(fresh >> 32);
            clock.spare = true;
            low_u32(fresh)
        };
        cell.set(clock);
        // bits 127..80 millisecond, 79..76 version 7, 75..64 counter's top
        // 12 bits, 63..62 variant 0b10, 61..32 counter's low 30 bits,
        // 31..0 random.
        let millis = u128::from(clock.millis & ((1 << 48) - 1));
        let counter = u128::from(clock.counter);
        let id = (millis << 80)
            | (0x7 << 76)
            | ((counter >> 30) << 64)
            | (0b10 << 62)
            | ((counter & ((1 << 30) - 1)) << 32)
            | u128::from(random);
        Uuid::from_u128(id)
    })
}

/// An event to append.
///
/// ```
/// use evstore::EventData;
/// let event = EventData::new("OrderPlaced", &b"{\"total\":42}"[..])
///     .with_metadata(&b"{\"user\":\"ada\"}"[..]);
/// assert_eq!(event.event_type(), "OrderPlaced");
/// ```
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct EventData {
    pub(crate) id: Uuid,
    /// Inline up to 23 bytes: most types are short, and making an event
    /// then allocates nothing for its type.
    pub(crate) event_type: smol_str::SmolStr,
    pub(crate) tags: Vec<String>,
    pub(crate) metadata: Bytes,
    pub(crate) payload: Bytes,
    pub(crate) subject: Option<String>,
}

impl EventData {
    /// An event of `event_type` carrying `payload`, with a fresh id and no
    /// metadata.
    ///
    /// The id is a version 7 UUID: a millisecond timestamp, then a counter
    /// that keeps the ids one thread makes increasing, then random bits
    /// that keep them apart from other threads' and processes' ids. Ids
    /// that grow with time make the check for retried appends cheap: an id
    /// newer than every id of a sealed segment is ruled out for it without
    /// a search.
    pub fn new(event_type: impl AsRef<str>, payload: impl Into<Bytes>) -> Self {
        EventData {
            id: fresh_id(),
            event_type: smol_str::SmolStr::new(event_type.as_ref()),
            tags: Vec::new(),
            subject: None,
            metadata: Bytes::new(),
            payload: payload.into(),
        }
    }

    /// Sets the event id (a fresh version 7 UUID unless set), stored with the
    /// event. Retries of an append must carry the same ids to be recognised.
    #[must_use]
    pub fn with_id(mut self, id: Uuid) -> Self {
        self.id = id;
        self
    }

    /// Sets the event's tags (`course:c1`, `student:s7`...): what
    /// [`crate::Query`] items select besides the event type, and what
    /// [`crate::AppendCondition`]s guard. Order does not matter (they are
    /// stored sorted); an empty tag, one over the store's length limit, too
    /// many, or the same tag twice make the append fail with
    /// [`crate::Error::InvalidTag`].
    ///
    /// ```
    /// use evstore::EventData;
    /// let event = EventData::new("StudentSubscribed", &b"{}"[..])
    ///     .with_tags(["student:s7", "course:c1"]);
    /// assert_eq!(event.tags(), ["student:s7", "course:c1"]);
    /// ```
    #[must_use]
    pub fn with_tags<I, T>(mut self, tags: I) -> Self
    where
        I: IntoIterator<Item = T>,
        T: Into<String>,
    {
        self.tags = tags.into_iter().map(Into::into).collect();
        self
    }

    /// The tags, as given.
    pub fn tags(&self) -> &[String] {
        &self.tags
    }

    /// Whose personal data the event holds, for
    /// [`Options::crypto_shredding`](crate::Options::crypto_shredding): its
    /// payload and metadata are sealed with this subject's key, and
    /// [`Store::forget`](crate::Store::forget) of the subject erases them.
    /// Without it the subject is the event's stream.
    #[must_use]
    pub fn with_subject(mut self, subject: impl Into<String>) -> Self {
        self.subject = Some(subject.into());
        self
    }

    /// The subject, if one was given.
    pub fn subject(&self) -> Option<&str> {
        self.subject.as_deref()
    }

    /// Sets the metadata bytes.
    #[must_use]
    pub fn with_metadata(mut self, metadata: impl Into<Bytes>) -> Self {
        self.metadata = metadata.into();
        self
    }

    /// The event id.
    pub fn id(&self) -> Uuid {
        self.id
    }

    /// The event type.
    pub fn event_type(&self) -> &str {
        &self.event_type
    }

    /// The metadata bytes.
    pub fn metadata(&self) -> &Bytes {
        &self.metadata
    }

    /// The payload bytes.
    pub fn payload(&self) -> &Bytes {
        &self.payload
    }

    /// Payload plus metadata: what the event size limit applies to.
    pub fn size(&self) -> usize {
        self.payload.len() + self.metadata.len()
    }
}

/// An event as stored. Strings and bytes are views of the bytes its record
/// was read from: of the mapped segment where it is sealed or synced, so
/// reading does not copy payloads; otherwise of one copy made for the read.
#[derive(Debug, PartialEq, Eq)]
#[non_exhaustive]
pub struct RecordedEvent {
    /// The stream the event belongs to.
    pub stream: ByteString,
    /// The event's version in its stream, dense from 0.
    pub version: u64,
    /// The event's position in the global log (`$all`), dense from 0; use it
    /// as a subscription checkpoint.
    pub position: u64,
    /// When the event was written, in nanoseconds since the Unix epoch.
    pub timestamp_nanos: u64,
    /// The id given at append.
    pub id: Uuid,
    /// The event type.
    pub event_type: ByteString,
    /// The tags given at append, in ascending byte order.
    pub tags: Vec<ByteString>,
    /// The metadata bytes.
    pub metadata: Bytes,
    /// The payload bytes.
    pub payload: Bytes,
    /// The event was sealed for a subject that was forgotten since: its
    /// payload and metadata are gone and read as empty.
    pub erased: bool,
}

impl Clone for RecordedEvent {
    /// Field by field, as derived, except that an event without tags (most
    /// of them) skips the call that copies an empty list: subscribers
    /// clone every event they are handed.
    fn clone(&self) -> Self {
        RecordedEvent {
            stream: self.stream.clone(),
            version: self.version,
            position: self.position,
            timestamp_nanos: self.timestamp_nanos,
            id: self.id,
            event_type: self.event_type.clone(),
            tags: if self.tags.is_empty() {
                Vec::new()
            } else {
                self.tags.clone()
            },
            metadata: self.metadata.clone(),
            payload: self.payload.clone(),
            erased: self.erased,
        }
    }
}

impl RecordedEvent {
    /// When the event was written.
    pub fn timestamp(&self) -> SystemTime {
        UNIX_EPOCH + Duration::from_nanos(self.timestamp_nanos)
    }
}

/// What an append wrote.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub struct AppendResult {
    /// Stream version of the first event written.
    pub first_version: u64,
    /// Stream version of the last event written: pass it as
    /// `ExpectedVersion::Exact` to the next append.
    pub last_version: u64,
    /// Global position of the first event written.
    pub first_position: u64,
    /// Global position of the last event written.
    pub last_position: u64,
}

impl AppendResult {
    /// An append result with these versions and positions, for comparing
    /// with what [`crate::Store::append`] returns (in tests, say), or for
    /// standing in for a store.
    ///
    /// ```
    /// use evstore::{AppendResult, EventData, ExpectedVersion, Options, Store};
    /// # let dir = tempfile::tempdir().unwrap();
    /// let store = Store::open(dir.path(), Options::default()).unwrap();
    /// let events = [EventData::new("A", &b""[..]), EventData::new("B", &b""[..])];
    /// let result = store.append("s", ExpectedVersion::NoStream, &events).unwrap();
    /// assert_eq!(result, AppendResult::new(0, 1, 0, 1));
    /// ```
    #[must_use]
    pub fn new(
        first_version: u64,
        last_version: u64,
        first_position: u64,
        last_position: u64,
    ) -> Self {
        AppendResult {
            first_version,
            last_version,
            first_position,
            last_position,
        }
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::indexing_slicing)]
mod tests {
    use super::*;

    #[test]
    fn fresh_ids_are_version_7_now_and_increase_on_each_thread() {
        let threads: Vec<Vec<Uuid>> = std::thread::scope(|scope| {
            let handles: Vec<_> = (0..4)
                .map(|_| scope.spawn(|| (0..20_000).map(|_| fresh_id()).collect::<Vec<_>>()))
                .collect();
            handles.into_iter().map(|h| h.join().unwrap()).collect()
        });
        let now = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .unwrap()
            .as_millis();
        let mut all = std::collections::HashSet::new();
        for ids in &threads {
            for pair in ids.windows(2) {
                assert!(pair[0] < pair[1], "{} then {}", pair[0], pair[1]);
            }
            for id in ids {
                assert_eq!(id.get_version_num(), 7);
                assert_eq!(id.get_variant(), uuid::Variant::RFC4122);
                let (secs, nanos) = id.get_timestamp().unwrap().to_unix();
                let millis = u128::from(secs) * 1000 + u128::from(nanos / 1_000_000);
                assert!(millis <= now && now - millis < 60_000, "{millis} vs {now}");
                assert!(all.insert(*id), "{id} made twice");
            }
        }
    }
}
