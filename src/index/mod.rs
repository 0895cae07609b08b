//! Where events are: stream -> (version -> global position), and
//! global position -> (segment, offset).

mod ids;

pub use ids::IdWindow;

use crate::log::segment::Segment;
use std::collections::HashMap;
use std::sync::Arc;

/// One segment and the offset of each of its records.
#[derive(Debug)]
pub struct SegmentEntry {
    /// The segment.
    pub segment: Arc<Segment>,
    /// `offsets[i]` is the offset of position `base_position + i`.
    pub offsets: Vec<u32>,
}

/// Both indexes, kept together so one lock guards their consistency.
#[derive(Debug, Default)]
pub struct Index {
    streams: HashMap<Arc<str>, Vec<u64>>,
    segments: Vec<SegmentEntry>,
    /// Recently written event ids, for recognising retried appends.
    pub ids: IdWindow,
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

impl Index {
    /// An empty index remembering the last `id_window` event ids.
    pub fn new(id_window: usize) -> Self {
        Index {
            ids: IdWindow::new(id_window),
            ..Index::default()
        }
    }

    /// Positions of a stream's events, by version.
    pub fn stream_positions(&self, stream: &str) -> Option<&[u64]> {
        self.streams.get(stream).map(Vec::as_slice)
    }

    /// The last version of `stream` among all indexed events.
    pub fn last_version(&self, stream: &str) -> Option<u64> {
        self.streams
            .get(stream)
            .and_then(|p| (p.len() as u64).checked_sub(1))
    }

    /// Number of distinct streams.
    pub fn stream_count(&self) -> usize {
        self.streams.len()
    }

    /// Records that `stream`'s next version lives at `position`. Returns the
    /// version it got.
    pub fn push_stream_event(&mut self, stream: &str, position: u64) -> u64 {
        if let Some(positions) = self.streams.get_mut(stream) {
            positions.push(position);
            return positions.len() as u64 - 1;
        }
        self.streams.insert(Arc::from(stream), vec![position]);
        0
    }

    /// Records that `stream`'s next `count` versions live at consecutive
    /// positions from `first_position`.
    pub fn push_stream_events(&mut self, stream: &str, first_position: u64, count: u64) {
        let positions = first_position..first_position + count;
        if let Some(existing) = self.streams.get_mut(stream) {
            existing.extend(positions);
        } else {
            self.streams.insert(Arc::from(stream), positions.collect());
        }
    }

    /// Adds a segment that follows every indexed one.
    pub fn push_segment(&mut self, segment: Arc<Segment>, offsets: Vec<u32>) {
        self.segments.push(SegmentEntry { segment, offsets });
    }

    /// Records that the next position lives at `offset` of the newest segment.
    pub fn push_offset(&mut self, offset: u32) {
        if let Some(last) = self.segments.last_mut() {
            last.offsets.push(offset);
        }
    }

    /// The records of positions `start..stop`, segment by segment: each
    /// segment with the first position of its run and the run's offsets.
    /// `None` if part of the range is not indexed.
    pub fn runs(&self, start: u64, stop: u64) -> Option<Vec<Run>> {
        let mut runs = Vec::new();
        let mut position = start;
        while position < stop {
            let after = self
                .segments
                .partition_point(|e| e.segment.base_position() <= position);
            let entry = self.segments.get(after.checked_sub(1)?)?;
            let base = entry.segment.base_position();
            let lo = usize::try_from(position - base).ok()?;
            let hi = usize::try_from(stop - base).ok()?.min(entry.offsets.len());
            let offsets = entry.offsets.get(lo..hi)?;
            if offsets.is_empty() {
                return None;
            }
            runs.push(Run {
                segment: Arc::clone(&entry.segment),
                first_position: position,
                offsets: offsets.to_vec(),
            });
            position += offsets.len() as u64;
        }
        Some(runs)
    }

    /// Where `position` is stored, if it is indexed.
    pub fn locate(&self, position: u64) -> Option<Location> {
        let after = self
            .segments
            .partition_point(|e| e.segment.base_position() <= position);
        let entry = self.segments.get(after.checked_sub(1)?)?;
        let offset = *entry
            .offsets
            .get(usize::try_from(position - entry.segment.base_position()).ok()?)?;
        Some(Location {
            segment: Arc::clone(&entry.segment),
            offset,
            position,
        })
    }
}
