//! The index file of a sealed segment: written once when the segment is
//! sealed, then read in place through a memory map, so that sealed events
//! cost no heap and `open` does not rescan them.
//!
//! Layout (little-endian; every section starts at a multiple of 8):
//!
//! | bytes | content |
//! |---|---|
//! | 64 | header: magic `EVSTIDX\0`, format version, hash kind, segment base position, event count `n`, offset of the segment's seal, stream table size `t`, stream count, bloom blocks `b`, body CRC, streams section length, header CRC |
//! | 4·n | record offset of each slot (slot = position − base) |
//! | 8·n | (slot, record offset) of each event, grouped by stream, each stream's in version order |
//! | 32·t | stream hash table (linear probing): hash, first version, first slot index, count, record offset, name length, occupied flag, directory length |
//! | 16·n | event ids, sorted |
//! | 4·n | the slot of each sorted id |
//! | 64·b | blocked Bloom filter of the ids |
//! | streams | per stream: its name, zero padding to 8, its [directory](super::directory) (16 bytes a run) |
//!
//! Both CRCs are seeded with the segment's seed, so an index file can never
//! pass for another segment's.

use super::directory::{DirRun, Directories, DIRECTORY_ENTRY_LEN, DIRECTORY_RUNS};
use super::hash::{id_hash, HashKind, StreamKey};
use super::memory::MemIndex;
use crate::log::record::crc_seed;
use bytes::Bytes;
use std::sync::Arc;

/// Suffix of index files.
pub const INDEX_SUFFIX: &str = ".idx";
/// Magic bytes that open every index file.
pub const INDEX_MAGIC: [u8; 8] = *b"EVSTIDX\0";
/// Version of the index file layout. Version 1 had no stream directories;
/// its files are rebuilt from their segments at open, like damaged ones.
pub const INDEX_FORMAT_VERSION: u32 = 2;
/// Length of an index file header.
pub const INDEX_HEADER_LEN: usize = 64;
/// Header flag of the index file of a removed segment: it holds the stream
/// table and the stream records only, and no per-event section (the
/// segment holds no records to locate and no ids to look up).
pub const INDEX_FLAG_STREAMS_ONLY: u16 = 1;
const ENTRY_LEN: usize = 16;
/// Where a stream table entry holds 1 (a `u32`) when it is in use.
const OCCUPIED: usize = 12;
/// Bytes of a stream record's fixed fields, before its name.
const RECORD_FIELDS_LEN: usize = 24;
/// Bytes of a cache line, for touching each line of a range once.
const CACHE_LINE: usize = 64;
/// Bytes of a stream record a lookup loads at once, not knowing its length
/// yet: its fields, a name of up to 16 bytes and a full directory.
const TOUCHED_RECORD_LEN: usize = RECORD_FIELDS_LEN + 16 + DIRECTORY_ENTRY_LEN * DIRECTORY_RUNS;
const BLOOM_BLOCK_LEN: usize = 64;
const BLOOM_BITS_PER_ID: usize = 10;
const BLOOM_PROBES: u32 = 7;

/// Name of the index file of the segment starting at `base`.
pub fn index_file_name(base: u64) -> String {
    format!("{base:020}{INDEX_SUFFIX}")
}

/// The base position in an index file name, if it is one.
pub fn parse_index_file_name(name: &str) -> Option<u64> {
    let digits = name.strip_suffix(INDEX_SUFFIX)?;
    if digits.len() != 20 || !digits.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    digits.parse().ok()
}

fn seeded_crc(seed: u32, bytes: &[u8]) -> u32 {
    let mut hasher = crc32fast::Hasher::new_with_initial(seed);
    hasher.update(bytes);
    hasher.finalize()
}

pub(crate) fn u16_at(bytes: &[u8], at: usize) -> Option<u16> {
    Some(u16::from_le_bytes(bytes.get(at..at + 2)?.try_into().ok()?))
}

pub(crate) fn u32_at(bytes: &[u8], at: usize) -> Option<u32> {
    Some(u32::from_le_bytes(bytes.get(at..at + 4)?.try_into().ok()?))
}

pub(crate) fn u64_at(bytes: &[u8], at: usize) -> Option<u64> {
    Some(u64::from_le_bytes(bytes.get(at..at + 8)?.try_into().ok()?))
}

fn u128_at(bytes: &[u8], at: usize) -> Option<u128> {
    Some(u128::from_le_bytes(
        bytes.get(at..at + 16)?.try_into().ok()?,
    ))
}

fn pad8(n: u64) -> u64 {
    n.next_multiple_of(8)
}

/// What the header of an index file says.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct IndexHeader {
    /// How stream names were hashed.
    pub hash_kind: HashKind,
    /// The segment's first position.
    pub base_position: u64,
    /// Events in the segment.
    pub count: u64,
    /// Offset of the segment's seal.
    pub seal_offset: u64,
    /// [`INDEX_FLAG_STREAMS_ONLY`] or 0.
    pub flags: u16,
    table_len: u32,
    stream_count: u32,
    bloom_blocks: u32,
    body_crc: u32,
    streams_len: u32,
}

/// Where each section starts, from the header's sizes.
#[derive(Debug, Clone, Copy)]
struct Layout {
    /// Events in the segment: the header's count, as a `usize`.
    len: usize,
    /// Entries in the stream table.
    table_len: usize,
    offsets: usize,
    slots: usize,
    table: usize,
    ids: usize,
    id_slots: usize,
    bloom: usize,
    streams: usize,
    total: usize,
}

impl Layout {
    fn of(header: &IndexHeader) -> Option<Layout> {
        let n = header.count;
        let len = usize::try_from(n).ok()?;
        // Entries of the per-event sections.
        let per_event = if header.streams_only() { 0 } else { n };
        let mut at = INDEX_HEADER_LEN as u64;
        let mut next = |len: u64| -> Option<usize> {
            let start = at;
            at = at.checked_add(pad8(len))?;
            usize::try_from(start).ok()
        };
        let offsets = next(per_event.checked_mul(4)?)?;
        let slots = next(per_event.checked_mul(8)?)?;
        let table = next(u64::from(header.table_len).checked_mul(ENTRY_LEN as u64)?)?;
        let ids = next(per_event.checked_mul(16)?)?;
        let id_slots = next(per_event.checked_mul(4)?)?;
        let bloom = next(u64::from(header.bloom_blocks).checked_mul(BLOOM_BLOCK_LEN as u64)?)?;
        let streams = next(u64::from(header.streams_len))?;
        Some(Layout {
            len,
            table_len: usize::try_from(header.table_len).ok()?,
            offsets,
            slots,
            table,
            ids,
            id_slots,
            bloom,
            streams,
            total: usize::try_from(at).ok()?,
        })
    }
}

impl IndexHeader {
    /// Whether the file is the streams-only index of a removed segment.
    pub fn streams_only(&self) -> bool {
        self.flags & INDEX_FLAG_STREAMS_ONLY != 0
    }

    fn encode(&self) -> [u8; INDEX_HEADER_LEN] {
        let mut out = [0u8; INDEX_HEADER_LEN];
        out[0..8].copy_from_slice(&INDEX_MAGIC);
        out[8..12].copy_from_slice(&INDEX_FORMAT_VERSION.to_le_bytes());
        out[12..14].copy_from_slice(&self.hash_kind.code().to_le_bytes());
        out[14..16].copy_from_slice(&self.flags.to_le_bytes());
        out[16..24].copy_from_slice(&self.base_position.to_le_bytes());
        out[24..32].copy_from_slice(&self.count.to_le_bytes());
        out[32..40].copy_from_slice(&self.seal_offset.to_le_bytes());
        out[40..44].copy_from_slice(&self.table_len.to_le_bytes());
        out[44..48].copy_from_slice(&self.stream_count.to_le_bytes());
        out[48..52].copy_from_slice(&self.bloom_blocks.to_le_bytes());
        out[52..56].copy_from_slice(&self.body_crc.to_le_bytes());
        out[56..60].copy_from_slice(&self.streams_len.to_le_bytes());
        let crc = seeded_crc(crc_seed(self.base_position), &out[..60]);
        out[60..64].copy_from_slice(&crc.to_le_bytes());
        out
    }

    fn decode(bytes: &[u8]) -> Result<IndexHeader, IndexFileError> {
        let short = || IndexFileError::Damaged("header is short".into());
        if bytes.get(0..8) != Some(&INDEX_MAGIC[..]) {
            return Err(IndexFileError::Damaged("bad magic".into()));
        }
        let bytes: &[u8; INDEX_HEADER_LEN] = bytes.first_chunk().ok_or_else(short)?;
        let base_position = u64_at(bytes, 16).ok_or_else(short)?;
        let stored_crc = u32_at(bytes, 60).ok_or_else(short)?;
        if seeded_crc(crc_seed(base_position), &bytes[..60]) != stored_crc {
            return Err(IndexFileError::Damaged("header checksum mismatch".into()));
        }
        let version = u32_at(bytes, 8).ok_or_else(short)?;
        if version != INDEX_FORMAT_VERSION {
            return Err(IndexFileError::UnsupportedVersion(version));
        }
        let kind_code = u16_at(bytes, 12).ok_or_else(short)?;
        let hash_kind = HashKind::from_code(kind_code).ok_or_else(|| {
            IndexFileError::Damaged(format!("unknown stream hash kind {kind_code}"))
        })?;
        let u32_field = |at| u32_at(bytes, at).ok_or_else(short);
        let flags = u16_at(bytes, 14).ok_or_else(short)?;
        if flags & !INDEX_FLAG_STREAMS_ONLY != 0 {
            return Err(IndexFileError::Damaged(format!("unknown flags {flags:#x}")));
        }
        Ok(IndexHeader {
            hash_kind,
            base_position,
            count: u64_at(bytes, 24).ok_or_else(short)?,
            seal_offset: u64_at(bytes, 32).ok_or_else(short)?,
            flags,
            table_len: u32_field(40)?,
            stream_count: u32_field(44)?,
            bloom_blocks: u32_field(48)?,
            body_crc: u32_field(52)?,
            streams_len: u32_field(56)?,
        })
    }
}

/// Why an index file cannot be used.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum IndexFileError {
    /// Written by a newer format version.
    UnsupportedVersion(u32),
    /// Anything else wrong with it.
    Damaged(String),
}

impl std::fmt::Display for IndexFileError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            IndexFileError::UnsupportedVersion(v) => {
                write!(f, "index format version {v} is not supported")
            }
            IndexFileError::Damaged(reason) => f.write_str(reason),
        }
    }
}

/// The bytes a stream's record takes in the `streams` section: its fields,
/// its name padded to a multiple of 8, then its directory.
fn record_len(name: &str, runs: usize) -> usize {
    record_len_of(name.len(), runs)
}

fn record_len_of(name_len: usize, runs: usize) -> usize {
    RECORD_FIELDS_LEN + name_len.next_multiple_of(8) + DIRECTORY_ENTRY_LEN * runs
}

/// The directory of `stream` as a file holds it: at most
/// [`DIRECTORY_RUNS`] runs, the newest.
fn runs_of<'d>(directories: &'d Directories, stream: &str) -> &'d [DirRun] {
    let runs = directories.get(stream);
    runs.get(runs.len().saturating_sub(DIRECTORY_RUNS)..)
        .unwrap_or_default()
}

/// The streams-only index file of the removed segment `file` indexed: its
/// header (flagged [`INDEX_FLAG_STREAMS_ONLY`], without a Bloom filter),
/// stream table and stream records as they are, without the per-event
/// sections.
pub fn encode_streams_only(file: &IndexFile) -> Vec<u8> {
    let mut header = IndexHeader {
        flags: INDEX_FLAG_STREAMS_ONLY,
        bloom_blocks: 0,
        body_crc: 0,
        ..file.header
    };
    let Some(layout) = Layout::of(&header) else {
        return Vec::new();
    };
    let table_bytes = file.layout.table_len * ENTRY_LEN;
    let streams_bytes = file.header.streams_len as usize;
    let (Some(table), Some(streams)) = (
        file.bytes
            .get(file.layout.table..file.layout.table + table_bytes),
        file.bytes
            .get(file.layout.streams..file.layout.streams + streams_bytes),
    ) else {
        return Vec::new();
    };
    let mut out = vec![0u8; layout.total];
    put(&mut out, layout.table, table);
    put(&mut out, layout.streams, streams);
    let Some((head, body)) = out.split_first_chunk_mut::<INDEX_HEADER_LEN>() else {
        return Vec::new();
    };
    header.body_crc = seeded_crc(crc_seed(header.base_position), body);
    *head = header.encode();
    out
}

/// Encodes the index file of a sealed segment, with the streams'
/// `directories` (see [`super::directory`]).
pub fn encode(
    mem: &MemIndex,
    base_position: u64,
    seal_offset: u64,
    kind: HashKind,
    directories: &Directories,
) -> Vec<u8> {
    let n = mem.len();
    let mut streams: Vec<(&Arc<str>, &super::memory::MemStream)> = mem.streams.iter().collect();
    streams.sort_unstable_by(|a, b| a.0.cmp(b.0));
    let table_len = (streams.len() + streams.len() / 3 + 1).next_power_of_two();
    let bloom_blocks = (n * BLOOM_BITS_PER_ID).div_ceil(BLOOM_BLOCK_LEN * 8).max(1);
    let streams_len: usize = streams
        .iter()
        .map(|(name, _)| record_len(name, runs_of(directories, name).len()))
        .sum();
    // A segment holds at most 4 GiB, so none of these reaches 2^32; a
    // header that could not describe the index makes no file, like a
    // layout that could not (the caller then fails to read it back).
    let (Ok(table_len_u32), Ok(stream_count), Ok(bloom_blocks_u32), Ok(streams_len_u32), Ok(_)) = (
        u32::try_from(table_len),
        u32::try_from(streams.len()),
        u32::try_from(bloom_blocks),
        u32::try_from(streams_len),
        u32::try_from(n),
    ) else {
        return Vec::new();
    };
    let mut header = IndexHeader {
        hash_kind: kind,
        base_position,
        count: n as u64,
        seal_offset,
        flags: 0,
        table_len: table_len_u32,
        stream_count,
        bloom_blocks: bloom_blocks_u32,
        body_crc: 0,
        streams_len: streams_len_u32,
    };
    let Some(layout) = Layout::of(&header) else {
        return Vec::new();
    };
    let mut out = vec![0u8; layout.total];
    for (i, offset) in mem.offsets.iter().enumerate() {
        put(&mut out, layout.offsets + 4 * i, &offset.to_le_bytes());
    }
    put_streams(&mut out, &layout, mem, &streams, kind, directories);
    #[expect(
        clippy::cast_possible_truncation,
        reason = "slots are below `n`, checked to fit a u32 above"
    )]
    let mut ids: Vec<(u128, u32)> = mem
        .ids
        .iter()
        .enumerate()
        .map(|(slot, id)| (*id, slot as u32))
        .collect();
    ids.sort_unstable();
    let mut bloom = vec![0u8; bloom_blocks * BLOOM_BLOCK_LEN];
    for (i, (id, slot)) in ids.iter().enumerate() {
        put(&mut out, layout.ids + 16 * i, &id.to_le_bytes());
        put(&mut out, layout.id_slots + 4 * i, &slot.to_le_bytes());
        for (byte, bit) in bloom_bits(id_hash(*id), bloom_blocks) {
            if let Some(b) = bloom.get_mut(byte) {
                *b |= bit;
            }
        }
    }
    put(&mut out, layout.bloom, &bloom);
    // The layout starts with the header, so `out` always holds one.
    let Some((head, body)) = out.split_first_chunk_mut::<INDEX_HEADER_LEN>() else {
        return Vec::new();
    };
    header.body_crc = seeded_crc(crc_seed(base_position), body);
    *head = header.encode();
    out
}

/// Writes the `slots`, `stream_table` and `streams` sections of `streams`
/// (in name order) into `out`, laid out as `layout` says.
fn put_streams(
    out: &mut [u8],
    layout: &Layout,
    mem: &MemIndex,
    streams: &[(&Arc<str>, &super::memory::MemStream)],
    kind: HashKind,
    directories: &Directories,
) {
    let table_len = layout.table_len;
    let mut table = vec![[0u8; ENTRY_LEN]; table_len];
    let mut slot_index = 0usize;
    let mut record_at = 0usize;
    #[expect(
        clippy::cast_possible_truncation,
        reason = "slot counts are at most `n` and record offsets below `streams_len`, both checked by `encode` to fit a u32; names are at most 64 KiB; directories at most DIRECTORY_RUNS runs"
    )]
    for (name, stream) in streams {
        for slot in &stream.slots {
            // The offset sits beside the slot: a stream read or lookup then
            // touches one place per event instead of two.
            let offset = mem.offsets.get(*slot as usize).copied().unwrap_or(0);
            let at = layout.slots + 8 * slot_index;
            put(out, at, &slot.to_le_bytes());
            put(out, at + 4, &offset.to_le_bytes());
            slot_index += 1;
        }
        // The record holds everything a lookup needs of the stream here,
        // its directory after its name: one place to read once found.
        let runs = runs_of(directories, name);
        let at = layout.streams + record_at;
        let mut fields = [0u8; RECORD_FIELDS_LEN];
        fields[0..8].copy_from_slice(&stream.first_version.to_le_bytes());
        fields[8..12].copy_from_slice(&((slot_index - stream.slots.len()) as u32).to_le_bytes());
        fields[12..16].copy_from_slice(&(stream.slots.len() as u32).to_le_bytes());
        fields[16..18].copy_from_slice(&(name.len() as u16).to_le_bytes());
        fields[18..20].copy_from_slice(&(runs.len() as u16).to_le_bytes());
        put(out, at, &fields);
        put(out, at + RECORD_FIELDS_LEN, name.as_bytes());
        let runs_at = at + RECORD_FIELDS_LEN + name.len().next_multiple_of(8);
        for (i, run) in runs.iter().enumerate() {
            put(out, runs_at + DIRECTORY_ENTRY_LEN * i, &run.encode());
        }
        let hash = StreamKey::new(name).hash(kind);
        let mut entry = [0u8; ENTRY_LEN];
        entry[0..8].copy_from_slice(&hash.to_le_bytes());
        entry[8..12].copy_from_slice(&(record_at as u32).to_le_bytes());
        entry[OCCUPIED..OCCUPIED + 4].copy_from_slice(&1u32.to_le_bytes());
        record_at += record_len(name, runs.len());
        let mut i = first_bucket(hash, table_len);
        while table.get(i).is_some_and(|e| e[OCCUPIED] != 0) {
            i = (i + 1) & (table_len - 1);
        }
        if let Some(free) = table.get_mut(i) {
            *free = entry;
        }
    }
    for (i, entry) in table.iter().enumerate() {
        put(out, layout.table + ENTRY_LEN * i, entry);
    }
}

/// Copies `bytes` into `out` at `at`; `encode` sized `out` for all of them.
fn put(out: &mut [u8], at: usize, bytes: &[u8]) {
    let slot = out.get_mut(at..at + bytes.len());
    debug_assert!(slot.is_some(), "index section past the end of the file");
    if let Some(slot) = slot {
        slot.copy_from_slice(bytes);
    }
}

/// The bucket where the probe for a stream of hash `hash` starts, in a
/// table of `table_len` (a power of two) entries.
#[expect(
    clippy::cast_possible_truncation,
    reason = "only the low bits pick the bucket"
)]
fn first_bucket(hash: u64, table_len: usize) -> usize {
    hash as usize & (table_len - 1)
}

/// The byte and bit of each Bloom probe for an id of hash `hash` (see
/// [`id_hash`]): all in one 64-byte block, so a lookup touches one cache
/// line.
fn bloom_bits(hash: u64, blocks: usize) -> impl Iterator<Item = (usize, u8)> {
    let block = ((hash >> 32) * blocks as u64) >> 32;
    let block_start = block as usize * BLOOM_BLOCK_LEN;
    let mut x = hash;
    (0..BLOOM_PROBES).map(move |i| {
        x = x
            .wrapping_mul(0x9E37_79B9_7F4A_7C15)
            .wrapping_add(u64::from(i) + 1);
        let bit = (x >> 55) as usize; // 0..512
        (block_start + bit / 8, 1u8 << (bit % 8))
    })
}

/// A stream's events in one segment.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct StreamPart {
    /// Version of its first event here.
    pub first_version: u64,
    /// Events here.
    pub count: u64,
    /// Where its slots start in the slots section.
    slots_from: u32,
    /// Where its record is in the `streams` section.
    record: u32,
    /// Runs in its directory.
    runs: u8,
    /// Where its directory starts in the file.
    runs_at: usize,
}

impl StreamPart {
    /// Where its entries start in the `slots` section.
    pub fn slots_from(&self) -> u32 {
        self.slots_from
    }

    /// Runs in its directory.
    pub fn runs(&self) -> u32 {
        u32::from(self.runs)
    }

    /// Where its record is in the `streams` section, for
    /// [`IndexFile::stream_at`].
    pub fn record(&self) -> u32 {
        self.record
    }
}

/// An index file, read in place.
#[derive(Debug)]
pub struct IndexFile {
    bytes: Bytes,
    header: IndexHeader,
    layout: Layout,
}

impl IndexFile {
    /// Checks the header of `bytes` against the segment it must describe.
    /// The body is checked by [`IndexFile::verify_body`].
    pub fn parse(bytes: Bytes, base_position: u64) -> Result<IndexFile, IndexFileError> {
        let header = IndexHeader::decode(&bytes)?;
        if header.base_position != base_position {
            return Err(IndexFileError::Damaged(format!(
                "describes the segment at {}, not {base_position}",
                header.base_position
            )));
        }
        let layout = Layout::of(&header)
            .ok_or_else(|| IndexFileError::Damaged("implausible section sizes".into()))?;
        if layout.total != bytes.len() {
            return Err(IndexFileError::Damaged(format!(
                "file is {} bytes, its header describes {}",
                bytes.len(),
                layout.total
            )));
        }
        if header.streams_only() && header.bloom_blocks != 0 {
            return Err(IndexFileError::Damaged(
                "a streams-only index file with a Bloom filter".into(),
            ));
        }
        let table_ok = header.table_len.is_power_of_two()
            && header.stream_count < header.table_len
            && u64::from(header.stream_count) <= header.count.max(1);
        if !table_ok {
            return Err(IndexFileError::Damaged("implausible stream table".into()));
        }
        Ok(IndexFile {
            bytes,
            header,
            layout,
        })
    }

    /// Whether the body matches its checksum. Costs a pass over the file.
    pub fn verify_body(&self) -> bool {
        // `parse` checked that the file holds at least its header; a body
        // that is not there does not match anything.
        self.bytes.get(INDEX_HEADER_LEN..).is_some_and(|body| {
            seeded_crc(crc_seed(self.header.base_position), body) == self.header.body_crc
        })
    }

    /// The header.
    pub fn header(&self) -> &IndexHeader {
        &self.header
    }

    /// Events in the segment.
    pub fn len(&self) -> usize {
        self.layout.len
    }

    /// The record offset of `slot` (none in a streams-only file).
    pub fn offset(&self, slot: usize) -> Option<u32> {
        if slot >= self.len() || self.header.streams_only() {
            return None;
        }
        u32_at(&self.bytes, self.layout.offsets + 4 * slot)
    }

    /// The record offsets of slots `lo..hi`.
    pub fn offsets(&self, lo: usize, hi: usize) -> Option<Vec<u32>> {
        if lo > hi || hi > self.len() || self.header.streams_only() {
            return None;
        }
        let bytes = self
            .bytes
            .get(self.layout.offsets + 4 * lo..self.layout.offsets + 4 * hi)?;
        let (words, _) = bytes.as_chunks::<4>();
        Some(words.iter().map(|w| u32::from_le_bytes(*w)).collect())
    }

    fn entry(&self, i: usize) -> Option<&[u8]> {
        let at = self.layout.table + ENTRY_LEN * i;
        self.bytes.get(at..at + ENTRY_LEN)
    }

    fn occupied(entry: &[u8]) -> bool {
        u32_at(entry, OCCUPIED).is_some_and(|flag| flag != 0)
    }

    /// The stream record at offset `record` of the `streams` section: its
    /// part and its name, if it lies whole within the section and is
    /// plausible.
    fn record(&self, record: u32) -> Option<(StreamPart, &[u8])> {
        let at = record as usize;
        let fields = self
            .bytes
            .get(self.layout.streams + at..self.layout.streams + at + RECORD_FIELDS_LEN)?;
        let name_len = usize::from(u16_at(fields, 16)?);
        let runs = u16_at(fields, 18)?;
        if usize::from(runs) > DIRECTORY_RUNS
            || at + record_len_of(name_len, usize::from(runs)) > self.header.streams_len as usize
        {
            return None;
        }
        let name_at = self.layout.streams + at + RECORD_FIELDS_LEN;
        let part = StreamPart {
            first_version: u64_at(fields, 0)?,
            slots_from: u32_at(fields, 8)?,
            count: u64::from(u32_at(fields, 12)?),
            record,
            runs: u8::try_from(runs).ok()?,
            runs_at: name_at + name_len.next_multiple_of(8),
        };
        let fits = u64::from(part.slots_from) + part.count <= self.header.count;
        fits.then_some((part, self.bytes.get(name_at..name_at + name_len)?))
    }

    /// The part of `stream` in this segment, if it has events here.
    pub fn stream(&self, key: &StreamKey<'_>) -> Option<StreamPart> {
        let hash = key.hash(self.header.hash_kind);
        let table_len = self.header.table_len as usize;
        let mut i = first_bucket(hash, table_len);
        for _ in 0..table_len {
            let entry = self.entry(i)?;
            if !Self::occupied(entry) {
                return None;
            }
            if u64_at(entry, 0)? == hash {
                if let Some(part) = self.stream_at(key, u32_at(entry, 8)?) {
                    return Some(part);
                }
            }
            i = (i + 1) & (table_len - 1);
        }
        None
    }

    /// The part of `stream` whose record is at offset `record` of the
    /// `streams` section (as [`StreamPart::record`] gave it), if that is
    /// the stream's record: a lookup that remembers where a stream's
    /// record is goes there without probing the stream table.
    pub fn stream_at(&self, key: &StreamKey<'_>, record: u32) -> Option<StreamPart> {
        self.touch_record(record);
        let (part, name) = self.record(record)?;
        (name == key.name().as_bytes()).then_some(part)
    }

    /// Loads a byte of each cache line of the stream record at `record`
    /// (fields, name, directory) at once, so that the misses a lookup takes
    /// on them overlap instead of following one another as the name is
    /// compared and the directory searched. The record's length is not
    /// known before its first line arrives: a typical one's is loaded.
    fn touch_record(&self, record: u32) {
        let at = self.layout.streams + record as usize;
        let end =
            (at + TOUCHED_RECORD_LEN).min(self.layout.streams + self.header.streams_len as usize);
        for line in (at..end).step_by(CACHE_LINE) {
            if let Some(&byte) = self.bytes.get(line) {
                std::hint::black_box(byte);
            }
        }
    }

    /// The slot and record offset of the `i`-th event of `part`.
    pub fn slot(&self, part: &StreamPart, i: u64) -> Option<(u32, u32)> {
        if i >= part.count {
            return None;
        }
        self.slot_at(part.slots_from, i)
    }

    /// The slot and record offset of entry `slots_from + i` of the `slots`
    /// section: the `i`-th event of the stream whose entries start at
    /// `slots_from`, as a directory names it.
    pub fn slot_at(&self, slots_from: u32, i: u64) -> Option<(u32, u32)> {
        let index = u64::from(slots_from).checked_add(i)?;
        if index >= self.header.count {
            return None;
        }
        if self.header.streams_only() {
            // A removed segment: its events have no slot or record any
            // more. Readers skip it; 0 places them at its first position.
            return Some((0, 0));
        }
        let at = self.layout.slots + 8 * usize::try_from(index).ok()?;
        let slot = u32_at(&self.bytes, at)?;
        let offset = u32_at(&self.bytes, at + 4)?;
        (u64::from(slot) < self.header.count).then_some((slot, offset))
    }

    /// The `i`-th run, oldest first, of the directory of `part`.
    pub fn run(&self, part: &StreamPart, i: u32) -> Option<DirRun> {
        if i >= part.runs() {
            return None;
        }
        let at = part.runs_at + DIRECTORY_ENTRY_LEN * i as usize;
        DirRun::decode(self.bytes.get(at..at + DIRECTORY_ENTRY_LEN)?)
    }

    /// Every stream with events here, with its part (`None` for an entry
    /// that does not decode).
    pub fn streams(&self) -> impl Iterator<Item = Option<(&str, StreamPart)>> + '_ {
        (0..self.header.table_len as usize).filter_map(move |i| {
            let entry = self.entry(i)?;
            if !Self::occupied(entry) {
                return None;
            }
            let found = u32_at(entry, 8)
                .and_then(|record| self.record(record))
                .and_then(|(part, name)| Some((std::str::from_utf8(name).ok()?, part)));
            Some(found)
        })
    }

    /// The slot of the newest event with this id, if it is here; `hash`
    /// gives its [`id_hash`], asked for only if the id is within the range
    /// of this file's ids.
    pub fn find_id(&self, id: u128, hash: impl FnOnce() -> u64) -> Option<u32> {
        let blocks = self.header.bloom_blocks as usize;
        if blocks == 0 {
            return None;
        }
        // The table is sorted, so its ends bound every id here. Default ids
        // grow with time: a new append's ids are above those of every
        // sealed segment, and this rules the segment out with two reads
        // that stay cached, instead of scattered Bloom filter probes.
        let last = self.len().checked_sub(1)?;
        let lowest = u128_at(&self.bytes, self.layout.ids)?;
        let highest = u128_at(&self.bytes, self.layout.ids + 16 * last)?;
        if id < lowest || id > highest {
            return None;
        }
        for (byte, bit) in bloom_bits(hash(), blocks) {
            let b = self.bytes.get(self.layout.bloom + byte)?;
            if b & bit == 0 {
                return None;
            }
        }
        let (mut lo, mut hi) = (0usize, self.len());
        while lo < hi {
            let mid = lo + (hi - lo) / 2;
            let found = u128_at(&self.bytes, self.layout.ids + 16 * mid)?;
            match found.cmp(&id) {
                std::cmp::Ordering::Less => lo = mid + 1,
                std::cmp::Ordering::Greater => hi = mid,
                std::cmp::Ordering::Equal => {
                    // Ids sort with their slots: the last equal one is the
                    // newest event with this id.
                    let mut last = mid;
                    while last + 1 < self.len()
                        && u128_at(&self.bytes, self.layout.ids + 16 * (last + 1)) == Some(id)
                    {
                        last += 1;
                    }
                    return u32_at(&self.bytes, self.layout.id_slots + 4 * last);
                }
            }
        }
        None
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::indexing_slicing)]
mod tests;
