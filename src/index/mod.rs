//! Where events are: stream -> (version -> global position), and
//! global position -> (segment, offset).
//!
//! The active segment's index lives in memory ([`MemIndex`]). When a segment
//! is sealed its index is written to an index file beside it
//! ([`file`]), which is then read in place through a memory map; the heap
//! keeps only a small summary per stream (its next version and the first and
//! last segment holding its events) and the catalogue file ([`catalog`])
//! persists that summary so that `open` reads neither the sealed segments
//! nor their index files' stream tables.

pub mod byte_span;
pub mod catalog;
pub mod continuity;
pub mod deferred_check;
pub mod deletions;
pub mod directory;
pub mod file;
pub mod hash;
pub mod hint;
mod known;
mod lookup;
pub mod matching;
pub mod memory;
mod persisted;
pub mod planning;
pub mod postings;
pub mod postings_file;
pub mod recovery;
pub mod removed;
pub mod rewritten;

use crate::error::{Error, Result};
use crate::log::Segment;
use directory::EarlierIndex;
use file::{IndexFile, StreamPart};
use hash::{HashKind, StreamKey};
use known::KnownStreams;
use matching::{PostingsCell, PostingsFiles, SealedPostings};
use memory::{FastMap, MemIndex, MemStream};
pub use persisted::Persisted;
use std::collections::BTreeSet;
use std::ops::Bound;
use std::path::PathBuf;
use std::sync::atomic::AtomicU64;
use std::sync::Arc;

/// A record's offset as the index stores it. Segments are at most 4 GiB,
/// so an offset beyond `u32` means the segment is not what its header says.
pub(crate) fn slot_offset(segment: &std::path::Path, offset: u64) -> Result<u32> {
    u32::try_from(offset)
        .map_err(|_| Error::corrupted(segment, offset, "record offset beyond 4 GiB"))
}

/// Index files found damaged and rebuilt from their segments since open,
/// and the threads rewriting them.
#[derive(Debug, Default)]
pub struct Repairs {
    /// How many were rebuilt.
    pub count: AtomicU64,
    pending: parking_lot::Mutex<Vec<std::thread::JoinHandle<()>>>,
}

impl Repairs {
    /// Waits for every rewrite under way (at close).
    pub fn finish(&self) {
        let pending = std::mem::take(&mut *self.pending.lock());
        for handle in pending {
            // A rewrite that failed, even by panicking, leaves the file for
            // the next open to rebuild; nothing is lost.
            let _ = handle.join();
        }
    }
}

/// One segment as [`Index::segment_summaries`] describes it.
#[derive(Debug, Clone)]
pub struct SegmentSummary {
    /// The segment.
    pub segment: Arc<Segment>,
    /// Events in it.
    pub events: u64,
    /// Whether it is sealed.
    pub sealed: bool,
    /// Its index file, once it is served from one.
    pub index_file: Option<PathBuf>,
}

/// What the heap keeps per stream, whatever the log's size.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct StreamSummary {
    /// The version its next event gets (its event count).
    pub next_version: u64,
    /// Ordinal of the first segment holding its events.
    pub first_segment: u32,
    /// Ordinal of the last segment holding its events.
    pub last_segment: u32,
}

/// The index of one segment.
#[derive(Debug)]
pub enum SegmentIndex {
    /// The segment being written.
    Active(MemIndex),
    /// Sealed; its index file is being written.
    Sealed(Arc<MemIndex>),
    /// Sealed, with its index file.
    Persisted(Arc<Persisted>),
}

/// One segment and its index.
#[derive(Debug)]
pub struct SegmentEntry {
    /// The segment.
    pub segment: Arc<Segment>,
    /// Its index.
    pub index: SegmentIndex,
    /// A sealed segment's events by type and tag, once known: handed over
    /// by the active segment's index when it is sealed, or read from the
    /// segment the first time a query needs them. (The active segment's
    /// are in its [`MemIndex`].)
    postings: PostingsCell,
}

impl SegmentEntry {
    fn len(&self) -> usize {
        match &self.index {
            SegmentIndex::Active(mem) => mem.len(),
            SegmentIndex::Sealed(mem) => mem.len(),
            SegmentIndex::Persisted(p) => p.len(),
        }
    }

    fn view(&self) -> Result<View<'_>> {
        match &self.index {
            SegmentIndex::Active(mem) => Ok(View::Mem(mem)),
            SegmentIndex::Sealed(mem) => Ok(View::Mem(mem)),
            SegmentIndex::Persisted(p) => p.view(),
        }
    }
}

/// A segment's index, wherever it lives.
enum View<'a> {
    Mem(&'a MemIndex),
    File(&'a IndexFile),
}

/// A stream's events in one segment.
#[derive(Clone, Copy)]
enum StreamRef<'a> {
    Mem(&'a MemIndex, &'a MemStream),
    File(&'a IndexFile, StreamPart),
}

impl StreamRef<'_> {
    fn first_version(&self) -> u64 {
        match self {
            StreamRef::Mem(_, s) => s.first_version,
            StreamRef::File(_, part) => part.first_version,
        }
    }

    fn count(&self) -> u64 {
        match self {
            StreamRef::Mem(_, s) => s.slots.len() as u64,
            StreamRef::File(_, part) => part.count,
        }
    }

    /// The slot and record offset of the stream's `i`-th event here.
    fn slot(&self, i: u64) -> Option<(u32, u32)> {
        match self {
            StreamRef::Mem(mem, s) => {
                let slot = *s.slots.get(usize::try_from(i).ok()?)?;
                Some((slot, *mem.offsets.get(slot as usize)?))
            }
            StreamRef::File(file, part) => file.slot(part, i),
        }
    }
}

impl<'a> View<'a> {
    fn offset(&self, slot: usize) -> Option<u32> {
        match self {
            View::Mem(mem) => mem.offsets.get(slot).copied(),
            View::File(file) => file.offset(slot),
        }
    }

    fn offsets(&self, lo: usize, hi: usize) -> Option<Vec<u32>> {
        match self {
            View::Mem(mem) => mem.offsets.get(lo..hi).map(<[u32]>::to_vec),
            View::File(file) => file.offsets(lo, hi),
        }
    }

    fn stream(&self, key: &StreamKey<'_>) -> Option<StreamRef<'a>> {
        match *self {
            View::Mem(mem) => mem
                .streams
                .get(key.name())
                .map(|stream| StreamRef::Mem(mem, stream)),
            View::File(file) => file.stream(key).map(|part| StreamRef::File(file, part)),
        }
    }

    /// The slot of the newest event with `id`; `hash` gives its
    /// [`hash::id_hash`], which a file asks for only if `id` is within its
    /// range of ids (a new default id, newer than any sealed one, never
    /// is).
    fn find_id(&self, id: u128, hash: impl FnOnce() -> u64) -> Option<u32> {
        match self {
            View::Mem(mem) => mem.find_id(id),
            View::File(file) => file.find_id(id, hash),
        }
    }
}

/// Consecutive positions stored in one segment.
#[derive(Debug, Clone)]
pub struct Run {
    /// The segment holding them.
    pub segment: Arc<Segment>,
    /// The first position of the run.
    pub first_position: u64,
    /// The offset of each record of the run.
    pub offsets: Vec<u32>,
}

/// Where to read one event.
#[derive(Debug, Clone)]
pub struct Location {
    /// The segment holding it.
    pub segment: Arc<Segment>,
    /// Offset of its record.
    pub offset: u32,
    /// Its global position.
    pub position: u64,
}

/// What sealing the active segment hands to whoever writes its index file.
#[derive(Debug)]
pub struct SealedSegment {
    /// Its ordinal.
    pub ordinal: u32,
    /// The segment.
    pub segment: Arc<Segment>,
    /// Its index.
    pub index: Arc<MemIndex>,
    /// The position after its last event.
    pub end_position: u64,
    /// The indexes of the segments before it, for its streams'
    /// directories.
    pub earlier: Vec<EarlierIndex>,
    /// Its events by type and tag, for its postings file.
    pub postings: Arc<SealedPostings>,
    /// Where its postings are served from: the file, once written.
    pub postings_cell: PostingsCell,
}

/// Both indexes, kept together so one lock guards their consistency.
#[derive(Debug)]
pub struct Index {
    // Names may come from outside (user ids, tenants): a randomly seeded
    // hasher, and a sorted set beside it for listing streams in order a
    // page at a time.
    streams: KnownStreams,
    names: BTreeSet<Arc<str>>,
    segments: Vec<SegmentEntry>,
    hash_kind: HashKind,
    id_window: u64,
    end: u64,
    repairs: Arc<Repairs>,
    /// Where sealed segments' postings files are read and written.
    postings_files: Option<PostingsFiles>,
    /// The position after the newest lifecycle event indexed since open
    /// (0: none), shared so that subscribers can tell without the index
    /// lock whether the rules they apply may have changed.
    last_lifecycle: Arc<AtomicU64>,
    /// Deleted streams, by name.
    deletions: FastMap<String, deletions::Deletion>,
}

fn missing(stream: &str, what: &str) -> Error {
    Error::Corrupted {
        file: PathBuf::from(crate::layout::SEGMENTS_DIR),
        offset: 0,
        reason: format!("stream '{stream}': {what}"),
    }
}

/// The ordinal of the segment at index `i` of the list. Every segment holds
/// its file open and a process cannot hold 2^31 open files, so this never
/// saturates.
fn ordinal(i: usize) -> u32 {
    u32::try_from(i).unwrap_or(u32::MAX)
}

impl Index {
    /// An empty index that writes index files hashed with `hash_kind` and
    /// recognises retries among the last `id_window` events.
    pub fn new(hash_kind: HashKind, id_window: u64) -> Self {
        Index {
            streams: FastMap::default(),
            names: BTreeSet::new(),
            segments: Vec::new(),
            hash_kind,
            id_window,
            end: 0,
            repairs: Arc::new(Repairs::default()),
            postings_files: None,
            last_lifecycle: Arc::default(),
            deletions: FastMap::default(),
        }
    }

    /// Reads (and, if writable, writes) sealed segments' postings files
    /// through `files`.
    pub fn set_postings_files(&mut self, files: PostingsFiles) {
        self.postings_files = Some(files);
    }

    /// Where sealed segments' postings files are, if known.
    pub fn postings_files(&self) -> Option<&PostingsFiles> {
        self.postings_files.as_ref()
    }

    /// How new index files hash stream names.
    pub fn hash_kind(&self) -> HashKind {
        self.hash_kind
    }

    /// Counter of index files found damaged after open and rebuilt.
    pub fn repairs(&self) -> Arc<Repairs> {
        Arc::clone(&self.repairs)
    }

    /// Whether the idempotency window is on.
    pub fn tracks_ids(&self) -> bool {
        self.id_window > 0
    }

    /// The shared name of `stream`, if it has a summary.
    pub fn summary_name(&self, stream: &str) -> Option<Arc<str>> {
        self.streams
            .get(stream)
            .map(|known| Arc::clone(&known.name))
    }

    /// The last version of `stream` among all indexed events.
    pub fn last_version(&self, stream: &str) -> Option<u64> {
        self.streams
            .get(stream)
            .and_then(|s| s.summary.next_version.checked_sub(1))
    }

    /// Number of distinct streams.
    pub fn stream_count(&self) -> usize {
        self.streams.len()
    }

    /// Replaces the stream summaries (from a catalogue, at open).
    pub fn set_streams(&mut self, streams: Vec<(Arc<str>, StreamSummary)>) {
        self.names = streams.iter().map(|(name, _)| Arc::clone(name)).collect();
        self.streams = streams
            .into_iter()
            .map(|(name, summary)| known::entry(name, summary))
            .collect();
    }

    /// Every stream summary, sorted by name.
    pub fn snapshot_streams(&self) -> Vec<(Arc<str>, StreamSummary)> {
        self.names
            .iter()
            .filter_map(|name| Some((Arc::clone(name), self.streams.get(&**name)?.summary)))
            .collect()
    }

    /// Adds a segment that follows every indexed one.
    pub fn push_segment(&mut self, segment: Arc<Segment>, index: SegmentIndex) {
        let len = match &index {
            SegmentIndex::Active(mem) => mem.len(),
            SegmentIndex::Sealed(mem) => mem.len(),
            SegmentIndex::Persisted(p) => p.len(),
        };
        self.end = segment.base_position() + len as u64;
        let mut index = index;
        let postings = PostingsCell::default();
        if let SegmentIndex::Sealed(mem) = &mut index {
            if let Some(mem) = Arc::get_mut(mem) {
                let taken = *std::mem::take(&mut mem.postings);
                *postings.write() = Some(Arc::new(SealedPostings::Mem(taken)));
            }
        }
        self.segments.push(SegmentEntry {
            segment,
            index,
            postings,
        });
    }

    /// The base position of the segment being written, if any.
    pub fn active_base(&self) -> Option<u64> {
        self.segments
            .last()
            .filter(|entry| matches!(entry.index, SegmentIndex::Active(_)))
            .map(|entry| entry.segment.base_position())
    }

    /// Each segment in order, with its event count, whether it is sealed,
    /// and its index file if one is in use.
    pub fn segment_summaries(&self) -> Vec<SegmentSummary> {
        self.segments
            .iter()
            .map(|entry| {
                let (sealed, index_file) = match &entry.index {
                    SegmentIndex::Active(_) => (false, None),
                    SegmentIndex::Sealed(_) => (true, None),
                    SegmentIndex::Persisted(p) => (true, Some(p.path().to_path_buf())),
                };
                SegmentSummary {
                    segment: Arc::clone(&entry.segment),
                    events: entry.len() as u64,
                    sealed,
                    index_file,
                }
            })
            .collect()
    }

    /// The sealed segments served from memory, with their ordinals: those
    /// whose index file is not there yet.
    pub fn sealed_without_index_file(&self) -> Vec<(u32, Arc<Segment>)> {
        self.segments
            .iter()
            .enumerate()
            .filter(|(_, entry)| matches!(entry.index, SegmentIndex::Sealed(_)))
            .map(|(i, entry)| (ordinal(i), Arc::clone(&entry.segment)))
            .collect()
    }

    /// The last segment before `ordinal` holding events of `stream`, from
    /// its summary: where its events continue from when it gets more in
    /// segment `ordinal`.
    pub fn previous_segment(&self, stream: &str, ordinal: u32) -> Option<u32> {
        self.streams
            .get(stream)
            .map(|s| s.summary.last_segment)
            .filter(|&last| last < ordinal)
    }

    /// The indexes of the segments before `ordinal`, as they are served
    /// now, for building directories off the index lock.
    pub fn earlier(&self, ordinal: u32) -> Vec<EarlierIndex> {
        self.segments
            .iter()
            .take(ordinal as usize)
            .map(|entry| match &entry.index {
                SegmentIndex::Persisted(p) => EarlierIndex::File(Arc::clone(p)),
                SegmentIndex::Active(_) | SegmentIndex::Sealed(_) => {
                    EarlierIndex::Memory(Arc::clone(&entry.segment))
                }
            })
            .collect()
    }

    /// A fresh in-memory index for a new active segment, with room for
    /// `expected_events` (see [`MemIndex::with_capacity`]).
    pub fn new_active(&self, expected_events: usize) -> SegmentIndex {
        SegmentIndex::Active(MemIndex::with_capacity(self.tracks_ids(), expected_events))
    }

    /// Counts `count` events of `stream` in segment `ordinal`, the first with
    /// `first_version`, in the stream summaries. Segments must be counted in
    /// order, and versions must continue where the stream left off.
    pub fn count_stream_events(
        &mut self,
        stream: &str,
        ordinal: u32,
        first_version: u64,
        count: u64,
    ) -> std::result::Result<Arc<str>, continuity::VersionGap> {
        let known = self.streams.contains_key(stream);
        let name =
            continuity::count_events(&mut self.streams, stream, ordinal, first_version, count)?;
        if !known {
            self.names.insert(Arc::clone(&name));
        }
        Ok(name)
    }

    /// Records that `stream`'s next events live at consecutive positions from
    /// `first_position`, in the active (last) segment at `offsets`. Returns
    /// the version of the first.
    pub fn push_events(
        &mut self,
        stream: &str,
        first_position: u64,
        offsets: &[u32],
        ids: &[u128],
    ) -> u64 {
        let ordinal = ordinal(self.segments.len().saturating_sub(1));
        let summary = self.streams.get(stream).map(|s| s.summary);
        let first_version = summary.map_or(0, |s| s.next_version);
        let previous = summary
            .map(|s| s.last_segment)
            .filter(|&last| last < ordinal);
        let Ok(name) =
            self.count_stream_events(stream, ordinal, first_version, offsets.len() as u64)
        else {
            return first_version;
        };
        if let Some(SegmentEntry {
            index: SegmentIndex::Active(mem),
            ..
        }) = self.segments.last_mut()
        {
            mem.push_after(&name, first_version, previous, offsets, ids);
        }
        self.end = first_position + offsets.len() as u64;
        first_version
    }

    /// Turns the active segment's index into a sealed one, handing back what
    /// its index file needs. The caller pushes the next active segment.
    pub fn seal_active(&mut self) -> Option<SealedSegment> {
        let ordinal = ordinal(self.segments.len().checked_sub(1)?);
        let earlier = self.earlier(ordinal);
        let entry = self.segments.last_mut()?;
        let SegmentIndex::Active(mem) = &mut entry.index else {
            return None;
        };
        let postings = Arc::new(SealedPostings::Mem(*std::mem::take(&mut mem.postings)));
        *entry.postings.write() = Some(Arc::clone(&postings));
        let mem = Arc::new(std::mem::replace(mem, MemIndex::new(false)));
        entry.index = SegmentIndex::Sealed(Arc::clone(&mem));
        let segment = Arc::clone(&entry.segment);
        Some(SealedSegment {
            ordinal,
            end_position: segment.base_position() + mem.len() as u64,
            segment,
            index: mem,
            earlier,
            postings,
            postings_cell: Arc::clone(&entry.postings),
        })
    }

    /// Switches sealed segment `ordinal` to its index file.
    pub fn install_persisted(&mut self, ordinal: u32, persisted: Persisted) {
        if let Some(entry) = self.segments.get_mut(ordinal as usize) {
            if matches!(entry.index, SegmentIndex::Sealed(_)) {
                entry.index = SegmentIndex::Persisted(Arc::new(persisted));
            }
        }
    }

    /// How many of `stream`'s events are at positions below `end`.
    pub fn visible_count(&self, stream: &str, end: u64) -> Result<u64> {
        match self.streams.get(stream) {
            Some(known) => self.visible_in(stream, &known.summary, end),
            None => Ok(0),
        }
    }

    fn visible_in(&self, stream: &str, summary: &StreamSummary, end: u64) -> Result<u64> {
        let Some(last) = self.segments.get(summary.last_segment as usize) else {
            return Ok(0);
        };
        let last_end = last.segment.base_position() + last.len() as u64;
        if last_end <= end {
            return Ok(summary.next_version);
        }
        // Only the active segment holds events past the watermark, and in
        // it every event of the stream has a slot in version order.
        let key = StreamKey::new(stream);
        let view = last.view()?;
        let Some(part) = view.stream(&key) else {
            return Ok(summary.next_version);
        };
        let base = last.segment.base_position();
        let (mut lo, mut hi) = (0u64, part.count());
        while lo < hi {
            let mid = lo + (hi - lo) / 2;
            let (slot, _) = part
                .slot(mid)
                .ok_or_else(|| missing(stream, "slot out of range"))?;
            if base + u64::from(slot) < end {
                lo = mid + 1;
            } else {
                hi = mid;
            }
        }
        Ok(part.first_version() + lo)
    }

    fn entry_of_position(&self, position: u64) -> Option<&SegmentEntry> {
        let after = self
            .segments
            .partition_point(|e| e.segment.base_position() <= position);
        self.segments.get(after.checked_sub(1)?)
    }

    /// The records of positions `start..stop`, segment by segment, leaving
    /// out those of removed segments (which hold none). `None` if part of
    /// the range is not indexed.
    pub fn runs(&self, start: u64, stop: u64) -> Result<Option<Vec<Run>>> {
        let mut runs = Vec::new();
        let mut position = start;
        while position < stop {
            let Some(entry) = self.entry_of_position(position) else {
                return Ok(None);
            };
            if let Some(end) = entry.segment.removed_end() {
                position = end.max(position + 1);
                continue;
            }
            let base = entry.segment.base_position();
            // Slots past `usize` are past the segment's events: saturating
            // keeps them out of range, as they are.
            let lo = usize::try_from(position - base).unwrap_or(usize::MAX);
            let hi = usize::try_from(stop - base)
                .unwrap_or(usize::MAX)
                .min(entry.len());
            if lo >= hi {
                return Ok(None);
            }
            let Some(offsets) = entry.view()?.offsets(lo, hi) else {
                return Ok(None);
            };
            runs.push(Run {
                segment: Arc::clone(&entry.segment),
                first_position: position,
                offsets,
            });
            position += (hi - lo) as u64;
        }
        Ok(Some(runs))
    }

    /// The positions of the removed segment holding `position`, if it is
    /// in one: no read finds an event there.
    pub fn removed_span(&self, position: u64) -> Option<std::ops::Range<u64>> {
        let entry = self.entry_of_position(position)?;
        let end = entry.segment.removed_end()?;
        (position < end).then(|| entry.segment.base_position()..end)
    }

    /// Where `position` is stored, if it is indexed.
    pub fn locate(&self, position: u64) -> Result<Option<Location>> {
        let Some(entry) = self.entry_of_position(position) else {
            return Ok(None);
        };
        if entry.segment.is_removed() {
            return Ok(None);
        }
        let Ok(slot) = usize::try_from(position - entry.segment.base_position()) else {
            return Ok(None);
        };
        Ok(entry.view()?.offset(slot).map(|offset| Location {
            segment: Arc::clone(&entry.segment),
            offset,
            position,
        }))
    }

    /// The position of the newest event with this id, if it is among the
    /// last `id_window` events.
    /// Only segments from ordinal `lowest` on are searched (the ones below
    /// were searched already).
    pub fn find_id_above(&self, id: u128, lowest: u32) -> Result<Option<u64>> {
        if self.id_window == 0 {
            return Ok(None);
        }
        let from = self.end.saturating_sub(self.id_window);
        // Hashed once, if a file asks, for all the files searched.
        let mut hash = None;
        // `lowest` came from `sealed_without_ids`, and segments are never
        // removed, so it is at most their count.
        let searched = self.segments.get(lowest as usize..);
        debug_assert!(searched.is_some(), "segment {lowest} is past the last one");
        let searched = searched.unwrap_or_default();
        for entry in searched.iter().rev() {
            let base = entry.segment.base_position();
            if base + (entry.len() as u64) <= from && entry.len() > 0 {
                break;
            }
            let found = entry
                .view()?
                .find_id(id, || *hash.get_or_insert_with(|| hash::id_hash(id)));
            if let Some(slot) = found {
                // The newest event with this id; older than the window means
                // forgotten, even if its segment is still searched.
                let position = base + u64::from(slot);
                return Ok((position >= from).then_some(position));
            }
            if base <= from {
                break;
            }
        }
        Ok(None)
    }

    /// How many segments, from the first, are sealed and hold none of `ids`
    /// within the window: the writer then searches only the ones after
    /// them. Appenders call this before queueing, so the searches of sealed
    /// segments (immutable) run on their threads, not on the writer's.
    pub fn sealed_without_ids(&self, ids: &[u128]) -> Result<u32> {
        let sealed = self.segments.len().saturating_sub(1);
        if self.id_window == 0 {
            return Ok(ordinal(sealed));
        }
        let from = self.end.saturating_sub(self.id_window);
        // Hashed once, when a file first asks, for all the files searched:
        // ids that grow with time never fall within a sealed file's range,
        // random ones do in every file.
        let mut hashes: Option<Vec<u64>> = None;
        for entry in self.segments.iter().take(sealed).rev() {
            let base = entry.segment.base_position();
            if base + (entry.len() as u64) <= from {
                break;
            }
            let view = entry.view()?;
            for (i, &id) in ids.iter().enumerate() {
                let hash = || {
                    hashes
                        .get_or_insert_with(|| ids.iter().map(|&id| hash::id_hash(id)).collect())
                        .get(i)
                        .copied()
                        .unwrap_or_else(|| hash::id_hash(id))
                };
                if view.find_id(id, hash).is_some() {
                    return Ok(0);
                }
            }
        }
        Ok(ordinal(sealed))
    }

    /// Up to `limit` streams after `after` in name order, each with how many
    /// of its events are below `end` (possibly none: the caller skips those).
    pub fn streams_page(
        &self,
        after: Option<&str>,
        limit: usize,
        end: u64,
    ) -> Result<Vec<(Arc<str>, u64)>> {
        let lower = match after {
            Some(name) => Bound::Excluded(name),
            None => Bound::Unbounded,
        };
        let mut page = Vec::with_capacity(limit.min(1024));
        for name in self
            .names
            .range::<str, _>((lower, Bound::Unbounded))
            .take(limit)
        {
            let visible = self.visible_count(name, end)?;
            page.push((Arc::clone(name), visible));
        }
        Ok(page)
    }
}
