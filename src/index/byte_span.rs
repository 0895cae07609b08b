//! How many log bytes hold a range of positions: what a subscriber that
//! lags by those positions still has to read, and how segments stand.
//! Where the records lie is found under the index lock; their lengths are
//! read after it is released, since a cold segment's page is disk I/O that
//! the writer, waiting for the lock, must not wait for.

use super::Index;
use crate::error::Result;
use crate::log::{record, Segment};
use std::sync::Arc;

/// The records of a range of positions within one segment: the offsets of
/// the first and the last.
#[derive(Debug, Clone)]
pub struct SpanPart {
    segment: Arc<Segment>,
    first: u64,
    last: u64,
}

impl Index {
    /// Where the records at positions `from..to` lie, segment by segment.
    /// Positions not indexed, and those of removed segments, are left out.
    pub fn byte_span(&self, from: u64, to: u64) -> Result<Vec<SpanPart>> {
        let mut parts = Vec::new();
        let mut position = from;
        while position < to {
            let Some(entry) = self.entry_of_position(position) else {
                break;
            };
            let base = entry.segment.base_position();
            let stop = to.min(base.saturating_add(entry.len() as u64));
            if stop <= position {
                break;
            }
            if entry.segment.is_removed() {
                // No bytes left to read there.
                position = stop;
                continue;
            }
            let view = entry.view()?;
            let offset = |p: u64| {
                usize::try_from(p - base)
                    .ok()
                    .and_then(|slot| view.offset(slot))
                    .map(u64::from)
            };
            let (Some(first), Some(last)) = (offset(position), offset(stop - 1)) else {
                break;
            };
            parts.push(SpanPart {
                segment: Arc::clone(&entry.segment),
                first,
                last,
            });
            position = stop;
        }
        Ok(parts)
    }

    /// Segments in the log, and how many of them are sealed.
    pub fn segment_counts(&self) -> (u64, u64) {
        let all = self.segments.len() as u64;
        (all, all - u64::from(self.active_base().is_some()))
    }
}

/// Log bytes of the records `parts` locate, from each first record's offset
/// to the end of each last one (seals and durable marks between them
/// included). A record's length is read from its header, unchecked, so it
/// is capped by the segment's end.
pub fn span_bytes(parts: &[SpanPart]) -> Result<u64> {
    let mut total = 0u64;
    for part in parts {
        let header = part.segment.read(part.last, part.last + 8)?;
        let room = part.segment.capacity().saturating_sub(part.last);
        let last_len = (record::peek_len(&header).map_or(0, record::align8) as u64).min(room);
        total = total.saturating_add((part.last + last_len).saturating_sub(part.first));
    }
    Ok(total)
}
