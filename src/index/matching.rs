//! Finding the events that match a [`Query`], segment by segment, from each
//! segment's postings (see [`super::postings`]).

use super::postings::{PostingLists, Postings};
use super::postings_file::{self, postings_file_name, PostingsFile};
use super::{Index, SegmentEntry, SegmentIndex};
use crate::error::{Error, Result};
use crate::log::{scan_segment, Segment, SegmentRole};
use crate::query::Query;
use crate::storage::{child, write_and_rename, Storage};
use crate::stream_metadata::LIFECYCLE_TAG;
use crate::types::Direction;
use parking_lot::RwLock;
use std::io;
use std::path::PathBuf;
use std::sync::Arc;

/// A sealed segment's postings: in memory (from the active segment it was,
/// or read from its records), or its postings file.
#[derive(Debug)]
pub enum SealedPostings {
    /// Held in memory.
    Mem(Postings),
    /// Read in place from the segment's postings file.
    File(PostingsFile),
}

impl SealedPostings {
    fn lists(&self) -> &dyn PostingLists {
        match self {
            SealedPostings::Mem(p) => p,
            SealedPostings::File(f) => f,
        }
    }
}

/// Where a sealed segment's postings are, once known.
pub type PostingsCell = Arc<RwLock<Option<Arc<SealedPostings>>>>;

/// Where postings files live, and whether they may be written.
#[derive(Debug, Clone)]
pub struct PostingsFiles {
    /// The file system.
    pub storage: Arc<dyn Storage>,
    /// The segments directory.
    pub dir: PathBuf,
    /// False in a read-only store: postings read from records stay in
    /// memory.
    pub writable: bool,
    /// Held while a postings file built from a segment's records is
    /// written, and while a scavenge marks a segment replaced: a file is
    /// never written from records a scavenge is taking out.
    pub persisting: Arc<parking_lot::Mutex<()>>,
}

impl PostingsFiles {
    fn path(&self, base: u64) -> PathBuf {
        child(&self.dir, &postings_file_name(base))
    }

    /// The segment's postings file, if it is there and sound.
    fn load(&self, base: u64) -> Option<PostingsFile> {
        let file = self.storage.open_read_only(&self.path(base)).ok()?;
        let len = usize::try_from(file.len().ok()?).ok()?;
        let bytes = file.read_view(0, len).ok()?;
        PostingsFile::parse(bytes, base).ok()
    }

    /// Marks `segment` replaced (see [`Segment::is_replaced`]) once no
    /// postings file of its records is being written; the caller then
    /// removes the segment's postings file, and none comes back.
    pub fn retire(&self, segment: &Segment) {
        let _persisting = self.persisting.lock();
        segment.mark_replaced();
    }

    /// [`PostingsFiles::persist`] of the postings of `segment`, unless a
    /// scavenge is replacing it (`None` then): a file written from records
    /// a scavenge took out would be read for the segment that replaced them.
    pub fn persist_unless_replaced(
        &self,
        segment: &Segment,
        postings: &Postings,
    ) -> Option<PostingsFile> {
        let _persisting = self.persisting.lock();
        if segment.is_replaced() {
            return None;
        }
        self.persist(segment.base_position(), postings).ok()
    }

    /// Writes the postings file of the segment at `base` and returns it,
    /// read in place.
    ///
    /// # Errors
    ///
    /// The file system's error.
    pub fn persist(&self, base: u64, postings: &Postings) -> io::Result<PostingsFile> {
        let path = self.path(base);
        let bytes = postings_file::encode(postings, base);
        write_and_rename(self.storage.as_ref(), &path, &bytes)?;
        self.storage.sync_dir(&self.dir)?;
        let file = self.storage.open_read_only(&path)?;
        let view = file.read_view(0, bytes.len())?;
        PostingsFile::parse(view, base).map_err(|e| io::Error::new(io::ErrorKind::InvalidData, e))
    }
}

/// A segment's postings, wherever they live.
enum PostingsRef<'a> {
    Active(&'a Postings),
    Sealed(Arc<SealedPostings>),
}

impl PostingsRef<'_> {
    fn lists(&self) -> &dyn PostingLists {
        match self {
            PostingsRef::Active(p) => *p,
            PostingsRef::Sealed(p) => p.lists(),
        }
    }
}

impl SegmentEntry {
    /// The segment's postings; a sealed segment's are read from its
    /// postings file, or from its records the first time they are needed
    /// if that file is missing or damaged (and the file is then written).
    fn postings(&self, files: Option<&PostingsFiles>) -> Result<PostingsRef<'_>> {
        if let SegmentIndex::Active(mem) = &self.index {
            return Ok(PostingsRef::Active(&mem.postings));
        }
        build_postings(&self.segment, &self.postings, files).map(PostingsRef::Sealed)
    }
}

/// A sealed segment whose postings were not needed yet, and where they go.
pub struct Unbuilt {
    segment: Arc<Segment>,
    cell: PostingsCell,
    files: Option<PostingsFiles>,
}

impl Unbuilt {
    /// Loads or builds the segment's postings (with no lock held: this may
    /// read the whole segment).
    ///
    /// # Errors
    ///
    /// If the segment's records are damaged or unreadable.
    pub fn build(&self) -> Result<()> {
        build_postings(&self.segment, &self.cell, self.files.as_ref()).map(drop)
    }
}

/// The postings in `cell`; if it is empty, they are read from the postings
/// file of the sealed `segment`, or else from its records (and the file
/// written, where that is allowed).
fn build_postings(
    segment: &Segment,
    cell: &RwLock<Option<Arc<SealedPostings>>>,
    files: Option<&PostingsFiles>,
) -> Result<Arc<SealedPostings>> {
    if let Some(postings) = cell.read().as_ref() {
        return Ok(Arc::clone(postings));
    }
    if segment.is_removed() {
        // No event of a removed segment matches anything any more (a
        // postings file a crash left beside it is not read).
        let none = Arc::new(SealedPostings::Mem(Postings::default()));
        return Ok(Arc::clone(cell.write().get_or_insert(none)));
    }
    let base = segment.base_position();
    let loaded = files.and_then(|f| f.load(base));
    let postings = if let Some(file) = loaded {
        SealedPostings::File(file)
    } else {
        let built = scan_postings(segment)?;
        let written = files
            .filter(|f| f.writable)
            .and_then(|f| f.persist_unless_replaced(segment, &built));
        match written {
            Some(file) => SealedPostings::File(file),
            None => SealedPostings::Mem(built),
        }
    };
    let mut slot = cell.write();
    // Another reader may have built them meanwhile: either is right.
    Ok(Arc::clone(slot.get_or_insert_with(|| Arc::new(postings))))
}

/// Reads the postings of a sealed segment from its records.
fn scan_postings(segment: &Segment) -> Result<Postings> {
    let base = segment.base_position();
    let mut built = Postings::default();
    scan_segment(segment, SegmentRole::Sealed, |_, event| {
        // A sealed segment holds fewer than 2^32 records.
        let slot = u32::try_from(event.position - base).unwrap_or(u32::MAX);
        built.push(slot, &event.event_type, &event.tags);
        Ok(())
    })?;
    Ok(built)
}

impl Index {
    /// The sealed segments holding positions `start..stop` whose postings
    /// are not built yet.
    pub fn unbuilt_postings(&self, start: u64, stop: u64) -> Vec<Unbuilt> {
        self.entries_between(start, stop)
            .iter()
            .filter(|e| !matches!(e.index, SegmentIndex::Active(_)) && e.postings.read().is_none())
            .map(|e| Unbuilt {
                segment: Arc::clone(&e.segment),
                cell: Arc::clone(&e.postings),
                files: self.postings_files.clone(),
            })
            .collect()
    }

    /// The position of the newest lifecycle event (stream metadata or
    /// tombstone) indexed since the store was opened.
    pub fn last_lifecycle_position(&self) -> Option<u64> {
        self.last_lifecycle
            .load(std::sync::atomic::Ordering::Acquire)
            .checked_sub(1)
    }

    /// Where [`Index::last_lifecycle_position`] is kept (plus one, 0 for
    /// none), for reading without the index lock.
    pub fn lifecycle_mark(&self) -> Arc<std::sync::atomic::AtomicU64> {
        Arc::clone(&self.last_lifecycle)
    }

    /// The position after the last indexed event.
    pub fn end(&self) -> u64 {
        self.end
    }

    /// Records the type and tags of the event at `position`, which was just
    /// pushed to the active segment.
    pub fn push_keys<S: AsRef<str>>(&mut self, position: u64, event_type: &str, tags: &[S]) {
        if let Some(SegmentEntry {
            segment,
            index: SegmentIndex::Active(mem),
            ..
        }) = self.segments.last_mut()
        {
            let slot =
                u32::try_from(position.saturating_sub(segment.base_position())).unwrap_or(u32::MAX);
            mem.postings.push(slot, event_type, tags);
        }
        if tags.iter().any(|t| t.as_ref() == LIFECYCLE_TAG) {
            self.last_lifecycle
                .store(position + 1, std::sync::atomic::Ordering::Release);
        }
    }

    /// [`Index::push_keys`] for the `count` events from `position` on, all
    /// of this type and with these tags.
    pub fn push_keys_run<S: AsRef<str>>(
        &mut self,
        position: u64,
        count: u64,
        event_type: &str,
        tags: &[S],
    ) {
        if count == 0 {
            return;
        }
        if let Some(SegmentEntry {
            segment,
            index: SegmentIndex::Active(mem),
            ..
        }) = self.segments.last_mut()
        {
            let slot = |p: u64| {
                u32::try_from(p.saturating_sub(segment.base_position())).unwrap_or(u32::MAX)
            };
            mem.postings
                .push_run(slot(position)..slot(position + count), event_type, tags);
        }
        if tags.iter().any(|t| t.as_ref() == LIFECYCLE_TAG) {
            self.last_lifecycle
                .store(position + count, std::sync::atomic::Ordering::Release);
        }
    }

    /// The first position from `from` on (below [`Index::end`]) of an event
    /// matching `query`.
    ///
    /// # Errors
    ///
    /// If a sealed segment's records, read for its postings, are damaged
    /// or unreadable.
    pub fn first_match(&self, query: &Query, from: u64) -> Result<Option<u64>> {
        let start = self
            .segments
            .partition_point(|e| e.segment.base_position() <= from)
            .saturating_sub(1);
        for entry in self.segments.get(start..).unwrap_or_default() {
            let base = entry.segment.base_position();
            let from_slot = u32::try_from(from.saturating_sub(base)).unwrap_or(u32::MAX);
            if u64::from(from_slot) >= entry.len() as u64 {
                continue;
            }
            if let Some(slot) = entry
                .postings(self.postings_files.as_ref())?
                .lists()
                .first_match(query, from_slot)
            {
                return Ok(Some(base + u64::from(slot)));
            }
        }
        Ok(None)
    }

    /// The segments holding positions in `start..stop`.
    fn entries_between(&self, start: u64, stop: u64) -> &[SegmentEntry] {
        let first = self
            .segments
            .partition_point(|e| e.segment.base_position() <= start)
            .saturating_sub(1);
        let last = self
            .segments
            .partition_point(|e| e.segment.base_position() < stop);
        self.segments.get(first..last).unwrap_or_default()
    }

    /// Where the events in `start..stop` matching `query` are: segment by
    /// segment in `direction` order, at most `limit` events in all, each
    /// segment's records in increasing position order (so one view of the
    /// segment reads them all).
    ///
    /// # Errors
    ///
    /// As [`Index::first_match`], and [`crate::Error::Corrupted`] if a
    /// matching slot has no record offset in the segment's index.
    pub fn matching_records(
        &self,
        query: &Query,
        start: u64,
        stop: u64,
        direction: Direction,
        limit: usize,
    ) -> Result<Vec<SegmentMatches>> {
        let mut found = Vec::new();
        let mut left = limit;
        if start >= stop {
            return Ok(found);
        }
        let in_range = self.entries_between(start, stop);
        let ordered: Vec<&SegmentEntry> = match direction {
            Direction::Forward => in_range.iter().collect(),
            Direction::Backward => in_range.iter().rev().collect(),
        };
        for entry in ordered {
            if left == 0 {
                break;
            }
            let base = entry.segment.base_position();
            let from_slot = u32::try_from(start.saturating_sub(base)).unwrap_or(u32::MAX);
            let postings = entry.postings(self.postings_files.as_ref())?;
            let mut slots = postings.lists().matching(query, from_slot);
            slots.retain(|&slot| base + u64::from(slot) < stop);
            if slots.len() > left {
                match direction {
                    Direction::Forward => slots.truncate(left),
                    Direction::Backward => drop(slots.drain(..slots.len() - left)),
                }
            }
            if slots.is_empty() {
                continue;
            }
            let view = entry.view()?;
            // Sized once: collecting results would grow it slot by slot.
            let mut records = Vec::with_capacity(slots.len());
            for &slot in &slots {
                let position = base + u64::from(slot);
                let offset = view
                    .offset(slot as usize)
                    .ok_or_else(|| unindexed(&entry.segment, position))?;
                records.push((offset, position));
            }
            left -= records.len();
            found.push(SegmentMatches {
                segment: Arc::clone(&entry.segment),
                records,
            });
        }
        Ok(found)
    }
}

/// The events of one segment a query matched.
#[derive(Debug)]
pub struct SegmentMatches {
    /// The segment.
    pub segment: Arc<Segment>,
    /// Each event's record offset in the segment and its position, in
    /// increasing order.
    pub records: Vec<(u32, u64)>,
}

fn unindexed(segment: &Segment, position: u64) -> Error {
    Error::corrupted(
        segment.path(),
        0,
        format!("position {position} matches a query but is not indexed"),
    )
}
