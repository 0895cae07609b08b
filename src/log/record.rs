//! The byte layout of segments, batches and records (little-endian).
//!
//! ```text
//! segment header (64 bytes)
//!   0  magic "EVSTSEG\0"        8  format version u32 (1 or 2)  12 header length u32
//!   16 base position u64        24 capacity u64          32 created (unix ns) u64
//!   40 reserved (20 zero bytes) 60 crc32 of bytes 0..60
//! batch header (32 bytes, 8-aligned), then `count` records
//!   0  crc32 of bytes 4..32, seeded by the segment
//!   4  batch length u32 (header + records, a multiple of 8)
//!   8  kind u32 (1 events, 2 seal, 3 durable mark)   12 count u32
//!   16 first position u64 (a seal or mark: the next position)
//!   24 durable mark u64: every position below it was synced when this was written
//! record (64-byte header, then the variable parts, zero-padded to 8)
//!   0  crc32 of bytes 4..len, seeded by the segment
//!   4  len u32 (unpadded)       8  global position u64   16 stream version u64
//!   24 timestamp (unix ns) u64  32 event id (16 bytes)
//!   48 stream name len u16      50 event type len u16
//!   52 metadata len u32         56 payload len u32       60 tags len u32
//!   64 stream name, event type, tags, metadata, payload
//! tags: each tag as len u16 then its UTF-8 bytes, in ascending byte order,
//!   no two alike; a version 1 segment's records have none (tags len 0)
//! ```
//!
//! The CRC seed is derived from the segment's base position, so bytes left in
//! a file from another segment or another life of the same offset never pass.

use super::record_frame::check_frame;
use crate::types::RecordedEvent;
use bytes::Bytes;
use bytestring::ByteString;
use uuid::Uuid;

/// The segment format version this build writes. It reads this one and
/// version 1, whose records are those of version 2 without tags (their
/// tags length, then a reserved field, is always zero).
pub const FORMAT_VERSION: u32 = 2;
/// The oldest segment format version this build reads.
pub const OLDEST_FORMAT_VERSION: u32 = 1;
/// The format version of a removed segment: its header, then a seal naming
/// where its positions end, and nothing else. A scavenge writes one in
/// place of a segment none of whose events any read returns any more; the
/// segment's index file is kept as the record of its streams' versions. A
/// build that predates removal refuses such a file as a format it does not
/// know instead of taking it for damage.
pub const REMOVED_FORMAT_VERSION: u32 = 3;
/// First bytes of every segment file.
pub const SEGMENT_MAGIC: [u8; 8] = *b"EVSTSEG\0";
/// Bytes of the segment header.
pub const SEGMENT_HEADER_LEN: usize = 64;
/// Bytes of a batch header (and of a seal).
pub const BATCH_HEADER_LEN: usize = 32;
/// [`BATCH_HEADER_LEN`] as the length field of a seal or a mark holds it.
#[expect(clippy::cast_possible_truncation, reason = "32 fits in a u32")]
pub const BATCH_HEADER_LEN_U32: u32 = BATCH_HEADER_LEN as u32;
/// Bytes of a record header.
pub const RECORD_HEADER_LEN: usize = 64;

/// What a batch header announces.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum BatchKind {
    /// `count` records follow.
    Events,
    /// The segment is full; the next position lives in the next segment.
    Seal,
    /// No records: written (without a sync of its own) when the writer goes
    /// idle, to record that everything before it is durable, so damage there
    /// is never mistaken for a torn write.
    Mark,
}

impl BatchKind {
    fn code(self) -> u32 {
        match self {
            BatchKind::Events => 1,
            BatchKind::Seal => 2,
            BatchKind::Mark => 3,
        }
    }

    fn from_code(code: u32) -> Option<Self> {
        match code {
            1 => Some(BatchKind::Events),
            2 => Some(BatchKind::Seal),
            3 => Some(BatchKind::Mark),
            _ => None,
        }
    }
}

/// A decoded segment header.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SegmentHeader {
    /// Global position of the segment's first event.
    pub base_position: u64,
    /// The size the segment was preallocated to.
    pub capacity: u64,
    /// Creation time, unix nanoseconds.
    pub created_nanos: u64,
    /// The format version it was written in: [`FORMAT_VERSION`] for a new
    /// segment, [`REMOVED_FORMAT_VERSION`] for a removed one.
    pub version: u32,
}

/// Why a segment header was refused.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum HeaderError {
    /// Fewer bytes than a header.
    Short,
    /// Not an evstore segment.
    BadMagic,
    /// A format version this build cannot read.
    UnsupportedVersion(u32),
    /// The header's checksum does not match.
    BadChecksum,
}

impl SegmentHeader {
    /// The header's bytes.
    pub fn encode(&self) -> [u8; SEGMENT_HEADER_LEN] {
        let mut out = [0u8; SEGMENT_HEADER_LEN];
        out[0..8].copy_from_slice(&SEGMENT_MAGIC);
        out[8..12].copy_from_slice(&self.version.to_le_bytes());
        #[expect(clippy::cast_possible_truncation, reason = "64 fits in a u32")]
        out[12..16].copy_from_slice(&(SEGMENT_HEADER_LEN as u32).to_le_bytes());
        out[16..24].copy_from_slice(&self.base_position.to_le_bytes());
        out[24..32].copy_from_slice(&self.capacity.to_le_bytes());
        out[32..40].copy_from_slice(&self.created_nanos.to_le_bytes());
        let crc = crc32fast::hash(&out[0..60]);
        out[60..64].copy_from_slice(&crc.to_le_bytes());
        out
    }

    /// Parses and checks a header.
    pub fn decode(bytes: &[u8]) -> Result<Self, HeaderError> {
        let bytes: &[u8; SEGMENT_HEADER_LEN] = bytes.first_chunk().ok_or(HeaderError::Short)?;
        if bytes[0..8] != SEGMENT_MAGIC {
            return Err(HeaderError::BadMagic);
        }
        let version = u32_at(bytes, 8);
        if !(OLDEST_FORMAT_VERSION..=REMOVED_FORMAT_VERSION).contains(&version) {
            return Err(HeaderError::UnsupportedVersion(version));
        }
        if u32_at(bytes, 60) != crc32fast::hash(&bytes[0..60])
            || u32_at(bytes, 12) as usize != SEGMENT_HEADER_LEN
        {
            return Err(HeaderError::BadChecksum);
        }
        Ok(SegmentHeader {
            base_position: u64_at(bytes, 16),
            capacity: u64_at(bytes, 24),
            created_nanos: u64_at(bytes, 32),
            version,
        })
    }
}

/// The CRC seed of every batch and record in the segment starting at `base`.
#[expect(
    clippy::cast_possible_truncation,
    reason = "folds the two halves of the mixed position into 32 bits"
)]
pub fn crc_seed(base_position: u64) -> u32 {
    let mixed = base_position ^ 0x9E37_79B9_7F4A_7C15;
    (mixed as u32) ^ ((mixed >> 32) as u32) ^ 0x5EED_0001
}

pub(crate) fn seeded_crc(seed: u32, bytes: &[u8]) -> u32 {
    let mut hasher = crc32fast::Hasher::new_with_initial(seed);
    hasher.update(bytes);
    hasher.finalize()
}

/// A decoded batch header.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct BatchHeader {
    /// Bytes of the whole batch, header included (a multiple of 8).
    pub len: u32,
    /// Events or seal.
    pub kind: BatchKind,
    /// Number of records that follow.
    pub count: u32,
    /// Position of the first record (for a seal: the next position).
    pub first_position: u64,
    /// Every position below this was durable when the batch was written.
    pub durable_mark: u64,
}

impl BatchHeader {
    /// Writes the header into the first [`BATCH_HEADER_LEN`] bytes of `out`.
    pub fn encode_into(&self, seed: u32, out: &mut [u8; BATCH_HEADER_LEN]) {
        out[4..8].copy_from_slice(&self.len.to_le_bytes());
        out[8..12].copy_from_slice(&self.kind.code().to_le_bytes());
        out[12..16].copy_from_slice(&self.count.to_le_bytes());
        out[16..24].copy_from_slice(&self.first_position.to_le_bytes());
        out[24..32].copy_from_slice(&self.durable_mark.to_le_bytes());
        let crc = seeded_crc(seed, &out[4..BATCH_HEADER_LEN]);
        out[0..4].copy_from_slice(&crc.to_le_bytes());
    }

    /// Parses a header; `None` unless the checksum and fields are valid.
    pub fn decode(bytes: &[u8], seed: u32) -> Option<Self> {
        let bytes = bytes.get(..BATCH_HEADER_LEN)?;
        if u32_at(bytes, 0) != seeded_crc(seed, bytes.get(4..)?) {
            return None;
        }
        let header = BatchHeader {
            len: u32_at(bytes, 4),
            kind: BatchKind::from_code(u32_at(bytes, 8))?,
            count: u32_at(bytes, 12),
            first_position: u64_at(bytes, 16),
            durable_mark: u64_at(bytes, 24),
        };
        let well_formed = header.len.is_multiple_of(8)
            && match header.kind {
                BatchKind::Seal | BatchKind::Mark => {
                    header.count == 0 && header.len as usize == BATCH_HEADER_LEN
                }
                BatchKind::Events => {
                    header.count > 0
                        && u64::from(header.len)
                            >= BATCH_HEADER_LEN as u64
                                + u64::from(header.count) * RECORD_HEADER_LEN as u64
                }
            };
        well_formed.then_some(header)
    }
}

/// Encoded size of `events` appended to `stream` (padded records, without
/// the batch header).
pub fn encoded_records_len(stream: &str, events: &[crate::types::EventData]) -> usize {
    events
        .iter()
        .map(|e| {
            align8(record_len(
                stream.len(),
                e.event_type.len(),
                tags_len(&e.tags),
                e.metadata.len(),
                e.payload.len(),
            ))
        })
        .sum::<usize>()
}

/// Bytes of a record's tags section holding `tags`.
pub fn tags_len<S: AsRef<str>>(tags: &[S]) -> usize {
    tags.iter().map(|t| 2 + t.as_ref().len()).sum()
}

/// Rounds up to the 8-byte alignment every batch and record keeps.
pub fn align8(n: usize) -> usize {
    (n + 7) & !7
}

/// Unpadded length of a record with these variable parts.
pub fn record_len(
    stream: usize,
    event_type: usize,
    tags: usize,
    metadata: usize,
    payload: usize,
) -> usize {
    RECORD_HEADER_LEN + stream + event_type + tags + metadata + payload
}

/// The fields of a record to encode.
#[cfg(test)]
pub struct RecordFields<'a> {
    /// Global position.
    pub position: u64,
    /// Stream version.
    pub version: u64,
    /// Unix nanoseconds.
    pub timestamp_nanos: u64,
    /// Event id.
    pub id: Uuid,
    /// Stream name.
    pub stream: &'a str,
    /// Event type.
    pub event_type: &'a str,
    /// Tags, sorted, no two alike.
    pub tags: &'a [&'a str],
    /// Metadata.
    pub metadata: &'a [u8],
    /// Payload.
    pub payload: &'a [u8],
}

/// Appends the record, padded to 8 bytes, to `out`. The caller has checked
/// the lengths against the limits, which keep them inside their fields.
#[cfg(test)]
pub fn encode_record(out: &mut Vec<u8>, seed: u32, fields: &RecordFields<'_>) {
    let start = out.len();
    encode_unfinished_record(
        out,
        &RecordBody {
            id: fields.id,
            stream: fields.stream,
            event_type: fields.event_type,
            tags: fields.tags,
            metadata: fields.metadata,
            payload: fields.payload,
        },
    );
    if let Some(record) = out.get_mut(start..) {
        finish_record(
            record,
            seed,
            fields.position,
            fields.version,
            fields.timestamp_nanos,
        );
    }
}

/// What a record holds before the writer gives it a place in the log.
pub struct RecordBody<'a> {
    /// Event id.
    pub id: Uuid,
    /// Stream name.
    pub stream: &'a str,
    /// Event type.
    pub event_type: &'a str,
    /// Tags, sorted, no two alike (checked by the caller).
    pub tags: &'a [&'a str],
    /// Metadata.
    pub metadata: &'a [u8],
    /// Payload.
    pub payload: &'a [u8],
}

/// Appends a record, padded to 8 bytes, whose position, version, timestamp
/// and checksum are left zero for [`finish_record`]. Appenders encode their
/// events this way before queueing, so the writer only patches and
/// checksums. The caller has checked the lengths against the limits.
#[expect(
    clippy::cast_possible_truncation,
    reason = "the options cap names and types below 64 KiB, events below 2 GiB and a record below the segment size, at most 4 GiB"
)]
pub fn encode_unfinished_record(out: &mut Vec<u8>, body: &RecordBody<'_>) {
    let tags_len = tags_len(body.tags);
    let len = record_len(
        body.stream.len(),
        body.event_type.len(),
        tags_len,
        body.metadata.len(),
        body.payload.len(),
    );
    debug_assert!(
        u32::try_from(len).is_ok()
            && u16::try_from(body.stream.len()).is_ok()
            && u16::try_from(body.event_type.len()).is_ok()
            && body.tags.iter().all(|t| u16::try_from(t.len()).is_ok()),
        "a record's lengths must fit its fields"
    );
    // The header is assembled apart and copied in once: one capacity
    // check instead of one per field.
    let mut header = [0u8; RECORD_HEADER_LEN];
    header[4..8].copy_from_slice(&(len as u32).to_le_bytes());
    header[32..48].copy_from_slice(body.id.as_bytes());
    header[48..50].copy_from_slice(&(body.stream.len() as u16).to_le_bytes());
    header[50..52].copy_from_slice(&(body.event_type.len() as u16).to_le_bytes());
    header[52..56].copy_from_slice(&(body.metadata.len() as u32).to_le_bytes());
    header[56..60].copy_from_slice(&(body.payload.len() as u32).to_le_bytes());
    header[60..64].copy_from_slice(&(tags_len as u32).to_le_bytes());
    let start = out.len();
    out.reserve(align8(len));
    out.extend_from_slice(&header);
    out.extend_from_slice(body.stream.as_bytes());
    out.extend_from_slice(body.event_type.as_bytes());
    for tag in body.tags {
        out.extend_from_slice(&(tag.len() as u16).to_le_bytes());
        out.extend_from_slice(tag.as_bytes());
    }
    out.extend_from_slice(body.metadata);
    out.extend_from_slice(body.payload);
    out.resize(start + align8(len), 0);
}

/// Fills in the position, version and timestamp of the unfinished record at
/// the start of `record` and seals it with its checksum. Returns the
/// record's padded length (0 if `record` does not hold one).
pub fn finish_record(
    record: &mut [u8],
    seed: u32,
    position: u64,
    version: u64,
    timestamp_nanos: u64,
) -> usize {
    let len = u32_at(record, 4) as usize;
    let Some(body) = record.get_mut(..len) else {
        return 0;
    };
    let Some(header) = body.first_chunk_mut::<RECORD_HEADER_LEN>() else {
        return 0;
    };
    header[8..16].copy_from_slice(&position.to_le_bytes());
    header[16..24].copy_from_slice(&version.to_le_bytes());
    header[24..32].copy_from_slice(&timestamp_nanos.to_le_bytes());
    // The checksum covers bytes 4..len, hashed in one piece: the 60 bytes
    // left of the header hashed apart would go through the slow path that
    // short inputs take, besides a second call.
    let crc = seeded_crc(seed, body.get(4..).unwrap_or_default());
    if let Some(slot) = body.first_chunk_mut::<4>() {
        *slot = crc.to_le_bytes();
    }
    align8(len)
}

/// Decodes the record at the start of `bytes` (which may extend past it).
/// Returns the event and the record's padded length, or why it is invalid.
/// Strings and bytes in the event are views of `bytes`.
pub fn decode_record(bytes: &Bytes, seed: u32) -> Result<(RecordedEvent, usize), &'static str> {
    decode_record_at(bytes, 0, seed)
}

/// [`decode_record_at`], with the event pushed onto `out`: decoded in line
/// with the push, the event is not moved through return values on its way
/// (it is about 200 bytes, and a read by tag decodes thousands).
#[inline]
pub fn decode_record_into(
    bytes: &Bytes,
    at: usize,
    seed: u32,
    out: &mut Vec<RecordedEvent>,
) -> Result<usize, &'static str> {
    let (event, len) = decode_record_at(bytes, at, seed)?;
    out.push(event);
    Ok(len)
}

/// [`decode_record`] of the record at offset `at` of `bytes`: the event's
/// views are cut from `bytes` directly, with no view of the record alone
/// made (and its reference count touched) first.
#[expect(
    clippy::inline_always,
    reason = "inlined into `decode_record_into`, the event is built where it is pushed: \
              about 7% fewer instructions per event read by tag"
)]
#[inline(always)]
pub fn decode_record_at(
    bytes: &Bytes,
    at: usize,
    seed: u32,
) -> Result<(RecordedEvent, usize), &'static str> {
    let frame = check_frame(bytes, at, seed)?;
    let stream = ByteString::try_from(bytes.slice(frame.stream.clone()))
        .map_err(|_| "stream name is not UTF-8")?;
    let event_type = ByteString::try_from(bytes.slice(frame.event_type.clone()))
        .map_err(|_| "event type is not UTF-8")?;
    let tags = if frame.tags.is_empty() {
        Vec::new()
    } else {
        decode_tags(bytes, frame.tags.start, frame.tags.end)?
    };
    // A redaction marker: what was there is gone for good.
    let erased = &*event_type == crate::stream_metadata::REDACTED_EVENT_TYPE;
    let event = RecordedEvent {
        stream,
        version: frame.version,
        position: frame.position,
        timestamp_nanos: frame.timestamp_nanos,
        id: frame.id,
        event_type,
        tags,
        metadata: bytes.slice(frame.metadata),
        payload: bytes.slice(frame.payload),
        erased,
    };
    Ok((event, frame.padded_len))
}

/// The tags of the section at `start..end` of `bytes`, as views of it; the
/// section must list them in ascending byte order, none empty, no two alike.
fn decode_tags(bytes: &Bytes, start: usize, end: usize) -> Result<Vec<ByteString>, &'static str> {
    let mut tags: Vec<ByteString> = Vec::with_capacity(count_tags(bytes, start, end));
    let mut at = start;
    while at < end {
        let len = usize::from(u16_at(
            bytes.get(at..end).ok_or("tags run past the end")?,
            0,
        ));
        let tag_start = at + 2;
        let tag_end = tag_start + len;
        if len == 0 || tag_end > end {
            return Err("a tag's length does not fit its section");
        }
        let tag = ByteString::try_from(bytes.slice(tag_start..tag_end))
            .map_err(|_| "a tag is not UTF-8")?;
        if tags
            .last()
            .is_some_and(|last| last.as_bytes() >= tag.as_bytes())
        {
            return Err("tags are not in ascending order");
        }
        tags.push(tag);
        at = tag_end;
    }
    Ok(tags)
}

/// How many tags the section at `start..end` of `bytes` seems to hold (its
/// lengths unchecked, at most one per two bytes): allocating for them at
/// once costs a fraction of growing the list tag by tag.
fn count_tags(bytes: &[u8], start: usize, end: usize) -> usize {
    let mut count = 0;
    let mut at = start;
    while at < end && count < (end - start) / 2 {
        at = at.saturating_add(2 + usize::from(u16_at(bytes, at)));
        count += 1;
    }
    count
}

/// The keys of the (finished or unfinished) record at the start of
/// `bytes` as they are encoded: the length of its event type, the bytes of
/// its event type then its tags section, and the record's padded length.
/// Records with equal keys have the same event type and tags. `None` if
/// `bytes` does not start with a whole record.
pub fn key_bytes(bytes: &[u8]) -> Option<(u16, &[u8], usize)> {
    let header: &[u8; RECORD_HEADER_LEN] = bytes.first_chunk()?;
    let len = u32_at(header, 4) as usize;
    let type_len = u16_at(header, 50);
    let type_start = RECORD_HEADER_LEN + usize::from(u16_at(header, 48));
    let keys_end = type_start + usize::from(type_len) + u32_at(header, 60) as usize;
    if len < RECORD_HEADER_LEN || bytes.len() < align8(len) || keys_end > len {
        return None;
    }
    Some((type_len, bytes.get(type_start..keys_end)?, align8(len)))
}

/// The event type and tags of the (finished or unfinished) record at the
/// start of `bytes`, which this process encoded, and its padded length.
/// `None` if `bytes` does not start with a whole record.
pub fn unfinished_keys(bytes: &[u8]) -> Option<(&str, Vec<&str>, usize)> {
    let header: &[u8; RECORD_HEADER_LEN] = bytes.first_chunk()?;
    let len = u32_at(header, 4) as usize;
    let stream_len = usize::from(u16_at(header, 48));
    let type_len = usize::from(u16_at(header, 50));
    let tags_len = u32_at(header, 60) as usize;
    let type_start = RECORD_HEADER_LEN + stream_len;
    let tags_start = type_start + type_len;
    let event_type = std::str::from_utf8(bytes.get(type_start..tags_start)?).ok()?;
    let section = bytes.get(tags_start..tags_start + tags_len)?;
    let mut tags = Vec::new();
    let mut at = 0;
    while at < section.len() {
        let size = usize::from(u16_at(section, at));
        let tag = section.get(at + 2..at + 2 + size)?;
        tags.push(std::str::from_utf8(tag).ok()?);
        at += 2 + size;
    }
    if len < RECORD_HEADER_LEN || bytes.len() < align8(len) {
        return None;
    }
    Some((event_type, tags, align8(len)))
}

/// Reads the record's length without checking it; used to find records.
pub fn peek_len(bytes: &[u8]) -> Option<usize> {
    bytes.get(4..8).map(|b| u32_at(b, 0) as usize)
}

pub(crate) fn u16_at(bytes: &[u8], at: usize) -> u16 {
    let mut buf = [0u8; 2];
    if let Some(src) = bytes.get(at..at + 2) {
        buf.copy_from_slice(src);
    }
    u16::from_le_bytes(buf)
}

pub(crate) fn u32_at(bytes: &[u8], at: usize) -> u32 {
    let mut buf = [0u8; 4];
    if let Some(src) = bytes.get(at..at + 4) {
        buf.copy_from_slice(src);
    }
    u32::from_le_bytes(buf)
}

pub(crate) fn u64_at(bytes: &[u8], at: usize) -> u64 {
    let mut buf = [0u8; 8];
    if let Some(src) = bytes.get(at..at + 8) {
        buf.copy_from_slice(src);
    }
    u64::from_le_bytes(buf)
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::indexing_slicing)]
mod tests {
    use super::*;

    fn sample(out: &mut Vec<u8>, seed: u32, payload: &[u8]) {
        encode_record(
            out,
            seed,
            &RecordFields {
                position: 7,
                version: 3,
                timestamp_nanos: 99,
                id: Uuid::from_u128(0xABCD),
                stream: "order-1",
                event_type: "Placed",
                tags: &["course:c1", "student:s7"],
                metadata: b"meta",
                payload,
            },
        );
    }

    #[test]
    fn record_round_trip_and_padding() {
        let mut out = Vec::new();
        sample(&mut out, crc_seed(0), b"hello");
        assert_eq!(out.len() % 8, 0);
        let bytes = Bytes::from(out);
        let (event, len) = decode_record(&bytes, crc_seed(0)).unwrap();
        assert_eq!(len, bytes.len());
        assert_eq!(&event.stream[..], "order-1");
        assert_eq!(&event.event_type[..], "Placed");
        assert_eq!(event.position, 7);
        assert_eq!(event.version, 3);
        assert_eq!(event.timestamp_nanos, 99);
        assert_eq!(event.id, Uuid::from_u128(0xABCD));
        assert_eq!(&event.metadata[..], b"meta");
        assert_eq!(&event.payload[..], b"hello");
        assert_eq!(event.tags, ["course:c1", "student:s7"]);
    }

    #[test]
    fn key_bytes_are_equal_only_for_equal_types_and_tags() {
        let keys = |event_type: &str, tags: &[&str], payload: &[u8]| {
            let mut out = Vec::new();
            encode_unfinished_record(
                &mut out,
                &RecordBody {
                    id: Uuid::from_u128(1),
                    stream: "s",
                    event_type,
                    tags,
                    metadata: b"",
                    payload,
                },
            );
            let (type_len, bytes, padded) = key_bytes(&out).unwrap();
            assert_eq!(padded, out.len());
            let (t, parsed, _) = unfinished_keys(&out).unwrap();
            assert_eq!((t, parsed.as_slice()), (event_type, tags));
            (type_len, bytes.to_vec())
        };
        assert_eq!(keys("A", &["x"], b"1"), keys("A", &["x"], b"22"));
        assert_ne!(keys("A", &["x"], b""), keys("A", &["y"], b""));
        assert_ne!(keys("A", &["x"], b""), keys("A", &[], b""));
        assert_ne!(keys("AB", &[], b""), keys("A", &["B"], b""));
        assert!(key_bytes(&[0u8; 10]).is_none());
    }

    #[test]
    fn tags_out_of_order_or_repeated_are_refused() {
        for tags in [&["b", "a"][..], &["a", "a"][..]] {
            let mut out = Vec::new();
            encode_record(
                &mut out,
                crc_seed(0),
                &RecordFields {
                    position: 0,
                    version: 0,
                    timestamp_nanos: 0,
                    id: Uuid::from_u128(1),
                    stream: "s",
                    event_type: "T",
                    tags,
                    metadata: b"",
                    payload: b"",
                },
            );
            assert_eq!(
                decode_record(&Bytes::from(out), crc_seed(0)).map(|_| ()),
                Err("tags are not in ascending order")
            );
        }
    }

    #[test]
    fn record_from_another_segment_fails_its_checksum() {
        let mut out = Vec::new();
        sample(&mut out, crc_seed(0), b"hello");
        let bytes = Bytes::from(out);
        assert!(decode_record(&bytes, crc_seed(1000)).is_err());
    }

    #[test]
    fn every_single_bit_flip_in_a_record_is_caught() {
        let mut out = Vec::new();
        sample(&mut out, crc_seed(5), b"payload bytes");
        for bit in 0..out.len() * 8 {
            let mut damaged = out.clone();
            damaged[bit / 8] ^= 1 << (bit % 8);
            assert!(
                decode_record(&Bytes::from(damaged), crc_seed(5)).is_err(),
                "bit {bit}"
            );
        }
    }

    #[test]
    fn headers_round_trip_and_reject_damage() {
        let header = SegmentHeader {
            base_position: 42,
            capacity: 4096,
            created_nanos: 1,
            version: FORMAT_VERSION,
        };
        let bytes = header.encode();
        assert_eq!(SegmentHeader::decode(&bytes), Ok(header));
        let mut bad = bytes;
        bad[17] ^= 1;
        assert_eq!(SegmentHeader::decode(&bad), Err(HeaderError::BadChecksum));
        let mut bad = bytes;
        bad[0] = b'X';
        assert_eq!(SegmentHeader::decode(&bad), Err(HeaderError::BadMagic));
        let mut bad = bytes;
        bad[8] = 9;
        assert_eq!(
            SegmentHeader::decode(&bad),
            Err(HeaderError::UnsupportedVersion(9))
        );

        let batch = BatchHeader {
            len: 32 + 64,
            kind: BatchKind::Events,
            count: 1,
            first_position: 5,
            durable_mark: 3,
        };
        let mut buf = [0u8; BATCH_HEADER_LEN];
        batch.encode_into(crc_seed(0), &mut buf);
        assert_eq!(BatchHeader::decode(&buf, crc_seed(0)), Some(batch));
        assert_eq!(BatchHeader::decode(&buf, crc_seed(64)), None);
        assert_eq!(BatchHeader::decode(&[0u8; 32], crc_seed(0)), None);
    }
}
