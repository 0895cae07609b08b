//! Rolling the segment being written once every event in it is dead, so
//! that retention never waits for traffic: a store that stops receiving
//! events still gives back the space of those that expire. Only sealed
//! segments are rewritten by a scavenge; this seals the active one when a
//! scavenge could empty it.

use super::group_commit::Command;
use super::scavenge::DeadEvents;
use super::Store;
use crate::error::Result;
use crate::retention::is_lifecycle_event;
use crate::stream_metadata::REDACTED_EVENT_TYPE;
use crate::types::Direction;
use std::sync::atomic::Ordering;
use std::sync::mpsc::sync_channel;

/// Events read at a time while looking through the active segment.
const READ_CHUNK: usize = 4096;

impl Store {
    /// Seals the active segment and continues in a new one if it holds at
    /// least one dead event and no live one (tombstones and metadata events
    /// aside: they are kept wherever they are). True if it was sealed.
    ///
    /// # Errors
    ///
    /// [`Error::ReadOnly`](crate::Error::ReadOnly); the errors of reads and
    /// of the writer.
    pub(super) fn roll_if_all_dead(&self) -> Result<bool> {
        let group_commit = self.group_commit("scavenge")?;
        let Some((base, _)) = self.active_segment_all_dead()? else {
            return Ok(false);
        };
        let state = self.state();
        let (reply, result) = sync_channel(1);
        group_commit.call(Command::Roll { base, reply }, &result)?;
        Ok(state.index.read().active_base() != Some(base))
    }

    /// The base of the segment being written and how many dead events it
    /// holds, if it holds at least one and no live one (tombstones and
    /// metadata events aside): a scavenge would seal and rewrite it.
    ///
    /// # Errors
    ///
    /// The errors of reads.
    pub(super) fn active_segment_all_dead(&self) -> Result<Option<(u64, u64)>> {
        let state = self.state();
        let Some(base) = state.index.read().active_base() else {
            return Ok(None);
        };
        let end = state.written.load(Ordering::Acquire);
        // Only a count (a dry run) or a reason to seal: no bytes go here.
        let dead = DeadEvents::new(self, false)?;
        let mut dead_events = 0;
        let mut from = base;
        while from < end {
            let events = self.read_all_below(from, Direction::Forward, READ_CHUNK, end)?;
            let Some(last) = events.last().map(|e| e.position) else {
                break;
            };
            for event in &events {
                if is_lifecycle_event(event) || &*event.event_type == REDACTED_EVENT_TYPE {
                    continue;
                }
                if !dead.is_dead(event) {
                    return Ok(None);
                }
                dead_events += 1;
            }
            from = last + 1;
        }
        Ok((dead_events > 0).then_some((base, dead_events)))
    }
}
