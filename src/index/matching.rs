//! Finding the events that match a [`Query`], segment by segment, from each
//! segment's postings (see [`super::postings`]).

use super::postings::Postings;
use super::{Index, SegmentEntry, SegmentIndex};
use crate::error::Result;
use crate::log::{scan_segment, Segment, SegmentRole};
use crate::query::Query;
use crate::types::Direction;
use std::sync::Arc;
use std::sync::OnceLock;

/// A segment's postings, wherever they live.
enum PostingsRef<'a> {
    Active(&'a Postings),
    Sealed(Arc<Postings>),
}

impl std::ops::Deref for PostingsRef<'_> {
    type Target = Postings;
    fn deref(&self) -> &Postings {
        match self {
            PostingsRef::Active(p) => p,
            PostingsRef::Sealed(p) => p,
        }
    }
}

impl SegmentEntry {
    /// The segment's postings; a sealed segment's are read from its records
    /// the first time they are needed (a segment sealed by an earlier
    /// process, or by a build that kept no tags).
    fn postings(&self) -> Result<PostingsRef<'_>> {
        if let SegmentIndex::Active(mem) = &self.index {
            return Ok(PostingsRef::Active(&mem.postings));
        }
        build_postings(&self.segment, &self.postings).map(PostingsRef::Sealed)
    }
}

/// A sealed segment whose postings were not needed yet, and where they go.
pub struct Unbuilt {
    segment: Arc<Segment>,
    cell: Arc<OnceLock<Arc<Postings>>>,
}

impl Unbuilt {
    /// Reads the segment's records for its postings (with no lock held:
    /// this reads the whole segment).
    ///
    /// # Errors
    ///
    /// If the segment's records are damaged or unreadable.
    pub fn build(&self) -> Result<()> {
        build_postings(&self.segment, &self.cell).map(drop)
    }
}

/// The postings in `cell`, read from the records of the sealed `segment`
/// first if the cell is empty.
fn build_postings(segment: &Segment, cell: &OnceLock<Arc<Postings>>) -> Result<Arc<Postings>> {
    if let Some(postings) = cell.get() {
        return Ok(Arc::clone(postings));
    }
    let base = segment.base_position();
    let mut built = Postings::default();
    scan_segment(segment, SegmentRole::Sealed, |_, event| {
        // A sealed segment holds fewer than 2^32 records.
        let slot = u32::try_from(event.position - base).unwrap_or(u32::MAX);
        built.push(slot, &event.event_type, &event.tags);
        Ok(())
    })?;
    // Another reader may have built them meanwhile: either is right.
    Ok(Arc::clone(cell.get_or_init(|| Arc::new(built))))
}

impl Index {
    /// The sealed segments holding positions `start..stop` whose postings
    /// are not built yet.
    pub fn unbuilt_postings(&self, start: u64, stop: u64) -> Vec<Unbuilt> {
        let first = self
            .segments
            .partition_point(|e| e.segment.base_position() <= start)
            .saturating_sub(1);
        let last = self
            .segments
            .partition_point(|e| e.segment.base_position() < stop);
        self.segments
            .get(first..last)
            .unwrap_or_default()
            .iter()
            .filter(|e| !matches!(e.index, SegmentIndex::Active(_)) && e.postings.get().is_none())
            .map(|e| Unbuilt {
                segment: Arc::clone(&e.segment),
                cell: Arc::clone(&e.postings),
            })
            .collect()
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
            if let Some(slot) = entry.postings()?.first_match(query, from_slot) {
                return Ok(Some(base + u64::from(slot)));
            }
        }
        Ok(None)
    }

    /// The positions in `start..stop` of events matching `query`, in
    /// `direction` order, at most `limit` of them.
    ///
    /// # Errors
    ///
    /// As [`Index::first_match`].
    pub fn matching_positions(
        &self,
        query: &Query,
        start: u64,
        stop: u64,
        direction: Direction,
        limit: usize,
    ) -> Result<Vec<u64>> {
        let mut found = Vec::new();
        if start >= stop || limit == 0 {
            return Ok(found);
        }
        let first = self
            .segments
            .partition_point(|e| e.segment.base_position() <= start)
            .saturating_sub(1);
        let last = self
            .segments
            .partition_point(|e| e.segment.base_position() < stop);
        let in_range = self.segments.get(first..last).unwrap_or_default();
        let mut visit = |entry: &SegmentEntry| -> Result<bool> {
            let base = entry.segment.base_position();
            let from_slot = u32::try_from(start.saturating_sub(base)).unwrap_or(u32::MAX);
            let positions = entry
                .postings()?
                .matching(query, from_slot)
                .into_iter()
                .map(|slot| base + u64::from(slot))
                .take_while(|&p| p < stop);
            match direction {
                Direction::Forward => found.extend(positions.take(limit - found.len())),
                Direction::Backward => {
                    let mut here: Vec<u64> = positions.collect();
                    here.reverse();
                    found.extend(here.into_iter().take(limit - found.len()));
                }
            }
            Ok(found.len() >= limit)
        };
        match direction {
            Direction::Forward => {
                for entry in in_range {
                    if visit(entry)? {
                        break;
                    }
                }
            }
            Direction::Backward => {
                for entry in in_range.iter().rev() {
                    if visit(entry)? {
                        break;
                    }
                }
            }
        }
        Ok(found)
    }
}
