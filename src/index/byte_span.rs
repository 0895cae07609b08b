//! How many log bytes hold a range of positions: what a subscriber that
//! lags by those positions still has to read, and how segments stand.

use super::Index;
use crate::error::Result;
use crate::log::record;

impl Index {
    /// Log bytes of the records at positions `from..to`, from the first
    /// one's offset to the end of the last, segment by segment (seals and
    /// durable marks between them included). Positions not indexed count
    /// nothing.
    pub fn bytes_between(&self, from: u64, to: u64) -> Result<u64> {
        let mut total = 0u64;
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
            let header = entry.segment.read(last, last + 8)?;
            let last_len = record::peek_len(&header).map_or(0, record::align8) as u64;
            total = total.saturating_add((last + last_len).saturating_sub(first));
            position = stop;
        }
        Ok(total)
    }

    /// Segments in the log, and how many of them are sealed.
    pub fn segment_counts(&self) -> (u64, u64) {
        let all = self.segments.len() as u64;
        (all, all - u64::from(self.active_base().is_some()))
    }
}
