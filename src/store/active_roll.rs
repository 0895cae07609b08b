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
        let state = self.state();
        let Some(base) = state.index.read().active_base() else {
            return Ok(false);
        };
        let end = state.written.load(Ordering::Acquire);
        let dead = DeadEvents::new(self)?;
        let mut any_dead = false;
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
                    return Ok(false);
                }
                any_dead = true;
            }
            from = last + 1;
        }
        if !any_dead {
            return Ok(false);
        }
        let (reply, result) = sync_channel(1);
        group_commit.call(Command::Roll { base, reply }, &result)?;
        Ok(state.index.read().active_base() != Some(base))
    }
}
