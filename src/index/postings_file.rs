//! The postings file of a sealed segment (`<base>.tags`, beside its index
//! file): its events' slots by event type and by tag, read in place
//! through a memory map, so a query over old segments reads neither their
//! records nor more of the file than the lists it needs.
//!
//! ```text
//! header (64 bytes)
//!   0  magic "EVSTTAG\0"    8  version u32      12 header length u32
//!   16 base position u64    24 slots u32 (events covered)
//!   28 keys u32             32 key bytes u32    36 postings u32 (slots listed)
//!   40 body crc32 u32 (seeded by the segment)   44 reserved (16 zero bytes)
//!   60 header crc32 u32 (seeded by the segment, bytes 0..60)
//! body
//!   keys x 16-byte entries, sorted by (kind, key bytes):
//!     0 kind u8 (1 event type, 2 tag)  1 zero u8  2 key length u16
//!     4 key offset u32 (into the key bytes)  8 first posting u32  12 postings u32
//!   key bytes, zero-padded to a multiple of 4
//!   postings: u32 slots, each key's ascending
//! ```

use super::postings::{KeyKind, PostingLists, Postings};
use crate::log::record::{crc_seed, u32_at, u64_at};
use bytes::Bytes;
use std::borrow::Cow;
use std::cmp::Ordering;

/// File name suffix of postings files.
pub const POSTINGS_SUFFIX: &str = ".tags";
/// Magic bytes that open every postings file.
pub const POSTINGS_MAGIC: [u8; 8] = *b"EVSTTAG\0";
/// Version of the postings file layout.
pub const POSTINGS_FORMAT_VERSION: u32 = 1;
/// Bytes of the header.
pub const POSTINGS_HEADER_LEN: usize = 64;
/// Bytes of one key entry.
pub const POSTINGS_KEY_ENTRY_LEN: usize = 16;

/// Key entry kind of an event type.
pub const POSTINGS_KIND_TYPE: u8 = 1;
/// Key entry kind of a tag.
pub const POSTINGS_KIND_TAG: u8 = 2;

/// The postings file name of the segment at `base`.
pub fn postings_file_name(base: u64) -> String {
    format!("{base:020}{POSTINGS_SUFFIX}")
}

/// The base position of the segment whose postings file `name` is, if it
/// is one.
pub fn parse_postings_file_name(name: &str) -> Option<u64> {
    let digits = name.strip_suffix(POSTINGS_SUFFIX)?;
    if digits.len() != 20 || !digits.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    digits.parse().ok()
}

fn kind_code(kind: KeyKind) -> u8 {
    match kind {
        KeyKind::Type => POSTINGS_KIND_TYPE,
        KeyKind::Tag => POSTINGS_KIND_TAG,
    }
}

fn seeded_crc(seed: u32, bytes: &[u8]) -> u32 {
    let mut hasher = crc32fast::Hasher::new_with_initial(seed);
    hasher.update(bytes);
    hasher.finalize()
}

/// The bytes of the postings file of the segment at `base`.
#[expect(
    clippy::cast_possible_truncation,
    reason = "a segment of at most 4 GiB has fewer than 2^32 events, keys, key bytes and postings: keys are at most 64 KiB each and at most one per tag of an event"
)]
pub fn encode(postings: &Postings, base: u64) -> Vec<u8> {
    let mut lists: Vec<(KeyKind, &str, &[u32])> = postings.lists().collect();
    lists.sort_by(|a, b| (a.0, a.1.as_bytes()).cmp(&(b.0, b.1.as_bytes())));
    let key_bytes: usize = lists.iter().map(|l| l.1.len()).sum();
    let listed: usize = lists.iter().map(|l| l.2.len()).sum();
    let mut body = Vec::with_capacity(
        lists.len() * POSTINGS_KEY_ENTRY_LEN + key_bytes.next_multiple_of(4) + listed * 4,
    );
    let (mut key_at, mut posting_at) = (0u32, 0u32);
    for (kind, key, slots) in &lists {
        body.push(kind_code(*kind));
        body.push(0);
        body.extend_from_slice(&(key.len() as u16).to_le_bytes());
        body.extend_from_slice(&key_at.to_le_bytes());
        body.extend_from_slice(&posting_at.to_le_bytes());
        body.extend_from_slice(&(slots.len() as u32).to_le_bytes());
        key_at += key.len() as u32;
        posting_at += slots.len() as u32;
    }
    for (_, key, _) in &lists {
        body.extend_from_slice(key.as_bytes());
    }
    body.resize(body.len().next_multiple_of(4), 0);
    for (_, _, slots) in &lists {
        for slot in *slots {
            body.extend_from_slice(&slot.to_le_bytes());
        }
    }
    let seed = crc_seed(base);
    let mut out = [0u8; POSTINGS_HEADER_LEN];
    out[0..8].copy_from_slice(&POSTINGS_MAGIC);
    out[8..12].copy_from_slice(&POSTINGS_FORMAT_VERSION.to_le_bytes());
    out[12..16].copy_from_slice(&(POSTINGS_HEADER_LEN as u32).to_le_bytes());
    out[16..24].copy_from_slice(&base.to_le_bytes());
    out[24..28].copy_from_slice(&postings.slot_count().to_le_bytes());
    out[28..32].copy_from_slice(&(lists.len() as u32).to_le_bytes());
    out[32..36].copy_from_slice(&(key_bytes as u32).to_le_bytes());
    out[36..40].copy_from_slice(&(listed as u32).to_le_bytes());
    out[40..44].copy_from_slice(&seeded_crc(seed, &body).to_le_bytes());
    let crc = seeded_crc(seed, &out[0..60]);
    out[60..64].copy_from_slice(&crc.to_le_bytes());
    let mut file = Vec::with_capacity(POSTINGS_HEADER_LEN + body.len());
    file.extend_from_slice(&out);
    file.extend_from_slice(&body);
    file
}

/// A postings file, checked whole when parsed, read in place.
#[derive(Debug)]
pub struct PostingsFile {
    bytes: Bytes,
    slots: u32,
    keys: usize,
    key_bytes_at: usize,
    postings_at: usize,
    postings: usize,
}

impl PostingsFile {
    /// Checks a postings file's header, layout and checksums against the
    /// segment at `base`.
    ///
    /// # Errors
    ///
    /// Why the file cannot be used (the caller rebuilds it from the
    /// segment).
    pub fn parse(bytes: Bytes, base: u64) -> Result<Self, String> {
        let header = bytes
            .get(..POSTINGS_HEADER_LEN)
            .ok_or("shorter than a header")?;
        if header.get(0..8) != Some(&POSTINGS_MAGIC[..]) {
            return Err("bad magic".into());
        }
        let seed = crc_seed(base);
        if u32_at(header, 60) != seeded_crc(seed, header.get(0..60).unwrap_or_default()) {
            return Err("header checksum mismatch".into());
        }
        let version = u32_at(header, 8);
        if version != POSTINGS_FORMAT_VERSION {
            return Err(format!("unknown version {version}"));
        }
        if u32_at(header, 12) as usize != POSTINGS_HEADER_LEN || u64_at(header, 16) != base {
            return Err("header does not belong to this segment".into());
        }
        let keys = u32_at(header, 28) as usize;
        let key_bytes = u32_at(header, 32) as usize;
        let postings = u32_at(header, 36) as usize;
        let key_bytes_at = POSTINGS_HEADER_LEN + keys * POSTINGS_KEY_ENTRY_LEN;
        let postings_at = key_bytes_at + key_bytes.next_multiple_of(4);
        if bytes.len() != postings_at + postings * 4 {
            return Err("length does not match the header".into());
        }
        let body = bytes.get(POSTINGS_HEADER_LEN..).unwrap_or_default();
        if u32_at(header, 40) != seeded_crc(seed, body) {
            return Err("body checksum mismatch".into());
        }
        let file = PostingsFile {
            slots: u32_at(header, 24),
            keys,
            key_bytes_at,
            postings_at,
            postings,
            bytes,
        };
        file.check_entries()?;
        Ok(file)
    }

    /// Every entry's key and postings inside the file, in order.
    fn check_entries(&self) -> Result<(), String> {
        let mut previous: Option<(u8, &[u8])> = None;
        for i in 0..self.keys {
            let (kind, key, first, count) = self.entry(i).ok_or("entry out of range")?;
            if !(POSTINGS_KIND_TYPE..=POSTINGS_KIND_TAG).contains(&kind)
                || first.saturating_add(count) > self.postings
            {
                return Err(format!("entry {i} is malformed"));
            }
            if previous.is_some_and(|p| p >= (kind, key)) {
                return Err(format!("entry {i} is out of order"));
            }
            previous = Some((kind, key));
        }
        Ok(())
    }

    /// Entry `i`: kind code, key, first posting, postings.
    fn entry(&self, i: usize) -> Option<(u8, &[u8], usize, usize)> {
        let at = POSTINGS_HEADER_LEN + i * POSTINGS_KEY_ENTRY_LEN;
        let entry = self.bytes.get(at..at + POSTINGS_KEY_ENTRY_LEN)?;
        let kind = *entry.first()?;
        let key_len = usize::from(u16::from_le_bytes([*entry.get(2)?, *entry.get(3)?]));
        let key_at = self.key_bytes_at + u32_at(entry, 4) as usize;
        let key = self.bytes.get(key_at..key_at + key_len)?;
        if key_at + key_len > self.postings_at {
            return None;
        }
        Some((
            kind,
            key,
            u32_at(entry, 8) as usize,
            u32_at(entry, 12) as usize,
        ))
    }

    fn posting(&self, i: usize) -> u32 {
        u32_at(&self.bytes, self.postings_at + 4 * i)
    }
}

impl PostingLists for PostingsFile {
    fn list(&self, kind: KeyKind, key: &str, from: u32) -> Option<Cow<'_, [u32]>> {
        let wanted = (kind_code(kind), key.as_bytes());
        let (mut lo, mut hi) = (0, self.keys);
        while lo < hi {
            let mid = lo + (hi - lo) / 2;
            let (k, found, first, count) = self.entry(mid)?;
            match (k, found).cmp(&wanted) {
                Ordering::Less => lo = mid + 1,
                Ordering::Greater => hi = mid,
                Ordering::Equal => {
                    // The slots from `from` on: a search, then a copy of
                    // only those.
                    let (mut a, mut b) = (first, first + count);
                    while a < b {
                        let m = a + (b - a) / 2;
                        if self.posting(m) < from {
                            a = m + 1;
                        } else {
                            b = m;
                        }
                    }
                    let slots = (a..first + count).map(|i| self.posting(i)).collect();
                    return Some(Cow::Owned(slots));
                }
            }
        }
        None
    }

    fn slot_count(&self) -> u32 {
        self.slots
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::indexing_slicing)]
mod tests {
    use super::*;
    use crate::query::{Query, QueryItem};

    fn sample() -> Postings {
        let mut p = Postings::default();
        for slot in 0..50u32 {
            let kind = ["A", "B", "C"][slot as usize % 3];
            let tags: Vec<String> = (0..slot % 4)
                .map(|t| format!("t{}", (slot + t) % 5))
                .collect();
            let mut tags: Vec<&str> = tags.iter().map(String::as_str).collect();
            tags.sort_unstable();
            tags.dedup();
            p.push(slot, kind, &tags);
        }
        p
    }

    #[test]
    fn a_file_answers_as_the_lists_it_was_written_from() {
        let mem = sample();
        let file = PostingsFile::parse(Bytes::from(encode(&mem, 4096)), 4096).unwrap();
        assert_eq!(file.slot_count(), 50);
        let queries = [
            Query::tagged(["t1"]),
            Query::tagged(["t1", "t2"]),
            Query::tagged(["nope"]),
            Query::items([QueryItem::new().types(["B"])]),
            Query::items([
                QueryItem::new().types(["A", "C"]).tags(["t3"]),
                QueryItem::new().tags(["t0", "t4"]),
            ]),
            Query::all(),
        ];
        for query in &queries {
            for from in [0, 1, 17, 49, 50, 80] {
                assert_eq!(
                    file.matching(query, from),
                    mem.matching(query, from),
                    "{query:?} from {from}"
                );
            }
        }
    }

    #[test]
    fn damage_anywhere_and_a_foreign_segment_are_refused() {
        let bytes = encode(&sample(), 0);
        assert!(PostingsFile::parse(Bytes::from(bytes.clone()), 64).is_err());
        for at in (0..bytes.len()).step_by(3) {
            let mut damaged = bytes.clone();
            damaged[at] ^= 0x10;
            assert!(
                PostingsFile::parse(Bytes::from(damaged), 0).is_err(),
                "byte {at}"
            );
        }
        assert!(PostingsFile::parse(Bytes::from(bytes[..bytes.len() - 4].to_vec()), 0).is_err());
        let empty = encode(&Postings::default(), 0);
        let file = PostingsFile::parse(Bytes::from(empty), 0).unwrap();
        assert!(file.matching(&Query::tagged(["x"]), 0).is_empty());
    }
}
