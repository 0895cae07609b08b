//! One read of the global log for a subscription: from the shared
//! read-ahead when it holds the position, otherwise from the log itself.

use super::buffer::Buffer;
use super::read_ahead::{Chunk, Lookup};
use super::{EventLog, READ_BATCH};
use crate::error::{Error, Result};
use crate::types::RecordedEvent;
use std::sync::Arc;

/// One read of the global log from `from` (below `end`, where it holds
/// events) for a subscription delivering what `filter` passes: the events
/// as a buffer, and the position after the last of them. From the
/// read-ahead when it holds `from`; otherwise from the log, offered to the
/// read-ahead when near the watermark.
pub(super) fn read_all(
    log: &dyn EventLog,
    passes: &dyn Fn(&RecordedEvent) -> bool,
    from: u64,
    end: u64,
) -> Result<(Buffer, u64, u64)> {
    let read_ahead = log.read_ahead();
    let (chunk, generation) = match read_ahead.lookup(from) {
        Lookup::Hit(chunk, generation) => (chunk, generation),
        Lookup::Miss { next } => {
            let generation = read_ahead.generation();
            // Up to the next chunk held, so chunks never overlap.
            let stop = next.map_or(end, |next| next.min(end));
            let events = log.read_all_below(from, READ_BATCH, stop)?;
            let Some(last) = events.last() else {
                if log.is_removed(from) {
                    // Removed up to `stop`: nothing to deliver there.
                    return Ok((Buffer::empty(), stop, generation));
                }
                return Err(missing(from));
            };
            let after = last.position + 1;
            let own = |mut events: Vec<RecordedEvent>| {
                events.retain(|e| passes(e));
                Ok((Buffer::Own(events.into_iter()), after, generation))
            };
            if !read_ahead.worth_sharing(from, end) {
                return own(events);
            }
            let chunk = match Chunk::new(events) {
                Ok(chunk) => Arc::new(chunk),
                Err(events) => return own(events),
            };
            if read_ahead.offer(&chunk, generation) {
                (chunk, generation)
            } else {
                // Nobody else can see it: its events are this
                // subscription's to move out.
                match Arc::try_unwrap(chunk) {
                    Ok(chunk) => return own(chunk.into_events()),
                    Err(chunk) => (chunk, generation),
                }
            }
        }
    };
    // The chunk holds `from`; it may run past `end` if another subscription
    // with a later watermark read it, and nothing past `end` is taken.
    let first = chunk.first();
    let index =
        |position: u64| usize::try_from(position.saturating_sub(first)).unwrap_or(usize::MAX);
    let stop = index(chunk.end().min(end)).min(chunk.events().len());
    let next = index(from).min(stop);
    let after = first + stop as u64;
    if next == stop {
        return Err(missing(from));
    }
    let mut buffer = Buffer::Shared { chunk, next, stop };
    buffer.skip(passes);
    Ok((buffer, after, generation))
}

fn missing(position: u64) -> Error {
    Error::corrupted(
        crate::layout::SEGMENTS_DIR,
        0,
        format!("position {position} is below the watermark but reads as nothing"),
    )
}
