//! Checking a record's frame (its length, checksum and padding) and
//! finding its parts: the step every decoder of a record shares, whether it
//! builds an event or lends a view.

use super::record::{align8, record_len, seeded_crc, u16_at, u32_at, u64_at, RECORD_HEADER_LEN};
use std::ops::Range;
use uuid::Uuid;

/// A record whose length, checksum and padding were checked: its header's
/// fields, and where its variable parts are in the bytes it was read from.
/// Their contents (UTF-8, the tags' order) are for the decoder to check.
pub(crate) struct RecordFrame {
    pub position: u64,
    pub version: u64,
    pub timestamp_nanos: u64,
    pub id: Uuid,
    pub stream: Range<usize>,
    pub event_type: Range<usize>,
    pub tags: Range<usize>,
    pub metadata: Range<usize>,
    pub payload: Range<usize>,
    /// The record's length with its padding: where the next one starts.
    pub padded_len: usize,
}

/// Checks the record at offset `at` of `bytes` and says where its parts
/// are (see [`RecordFrame`]).
#[expect(
    clippy::inline_always,
    reason = "a part of every decode; inlined, its ranges stay in registers"
)]
#[inline(always)]
pub(crate) fn check_frame(bytes: &[u8], at: usize, seed: u32) -> Result<RecordFrame, &'static str> {
    let record = bytes.get(at..).ok_or("record starts past the end")?;
    let header: &[u8; RECORD_HEADER_LEN] = record
        .first_chunk()
        .ok_or("record header runs past the end")?;
    let len = u32_at(header, 4) as usize;
    let stream_len = u16_at(header, 48) as usize;
    let type_len = u16_at(header, 50) as usize;
    let meta_len = u32_at(header, 52) as usize;
    let payload_len = u32_at(header, 56) as usize;
    let tags_len = u32_at(header, 60) as usize;
    if len != record_len(stream_len, type_len, tags_len, meta_len, payload_len) {
        return Err("record length does not match its fields");
    }
    // `len` is at least a header's length, so this is bytes 4..len: what the
    // checksum covers.
    let covered = record.get(4..len).ok_or("record runs past the end")?;
    if u32_at(header, 0) != seeded_crc(seed, covered) {
        return Err("record checksum mismatch");
    }
    // Padding is not under the checksum; it must still be exactly as written.
    let mut padding = record.iter().skip(len).take(align8(len) - len);
    if padding.any(|&b| b != 0) {
        return Err("record padding is not zero");
    }
    let stream_start = at + RECORD_HEADER_LEN;
    let type_start = stream_start + stream_len;
    let tags_start = type_start + type_len;
    let meta_start = tags_start + tags_len;
    let payload_start = meta_start + meta_len;
    let mut id = [0u8; 16];
    id.copy_from_slice(&header[32..48]);
    Ok(RecordFrame {
        position: u64_at(header, 8),
        version: u64_at(header, 16),
        timestamp_nanos: u64_at(header, 24),
        id: Uuid::from_bytes(id),
        stream: stream_start..type_start,
        event_type: type_start..tags_start,
        tags: tags_start..meta_start,
        metadata: meta_start..payload_start,
        payload: payload_start..at + len,
        padded_len: align8(len),
    })
}
