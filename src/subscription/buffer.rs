//! What a subscription read and has not yet handed out.

use super::read_ahead::Chunk;
use crate::types::RecordedEvent;
use std::sync::Arc;

/// The rest of the last read, handed out in order. Every event in it at or
/// after the next one to hand out passes the filter, or is skipped before
/// anything looks at it, so the first event is always the next delivery.
pub(super) enum Buffer {
    /// Events this subscription read alone, already filtered: handed out
    /// by move.
    Own(std::vec::IntoIter<RecordedEvent>),
    /// Events `next..stop` of a chunk of the read-ahead, shared with other
    /// subscriptions: handed out by clone (their bytes are views, so a
    /// clone copies none).
    Shared {
        chunk: Arc<Chunk>,
        next: usize,
        stop: usize,
    },
}

impl Buffer {
    pub(super) fn empty() -> Self {
        Buffer::Own(Vec::new().into_iter())
    }

    /// The next event to hand out.
    pub(super) fn first(&self) -> Option<&RecordedEvent> {
        match self {
            Buffer::Own(events) => events.as_slice().first(),
            Buffer::Shared { chunk, next, stop } => {
                chunk.events().get(*next..*stop).and_then(<[_]>::first)
            }
        }
    }

    pub(super) fn len(&self) -> usize {
        match self {
            Buffer::Own(events) => events.len(),
            Buffer::Shared { next, stop, .. } => stop.saturating_sub(*next),
        }
    }

    /// Hands out the next event and moves on to the one after it that
    /// `passes`.
    pub(super) fn take(
        &mut self,
        passes: &dyn Fn(&RecordedEvent) -> bool,
    ) -> Option<RecordedEvent> {
        match self {
            Buffer::Own(events) => events.next(),
            Buffer::Shared { chunk, next, stop } => {
                let event = chunk.events().get(*next..*stop)?.first()?.clone();
                *next += 1;
                self.skip(passes);
                Some(event)
            }
        }
    }

    /// Hands out the next event when every event passes, so that none
    /// after it needs a look.
    pub(super) fn take_unfiltered(&mut self) -> Option<RecordedEvent> {
        match self {
            Buffer::Own(events) => events.next(),
            Buffer::Shared { chunk, next, stop } => {
                let event = chunk.events().get(*next..*stop)?.first()?.clone();
                *next += 1;
                Some(event)
            }
        }
    }

    /// Drops the events that no longer pass: from an own buffer all of
    /// them; from a shared one those before the next that passes (the rest
    /// are checked as they come up).
    pub(super) fn keep(&mut self, passes: &dyn Fn(&RecordedEvent) -> bool) {
        match self {
            Buffer::Own(events) => {
                let kept: Vec<RecordedEvent> = events.by_ref().filter(|e| passes(e)).collect();
                *events = kept.into_iter();
            }
            Buffer::Shared { .. } => self.skip(passes),
        }
    }

    /// Moves past the events that do not pass.
    pub(super) fn skip(&mut self, passes: &dyn Fn(&RecordedEvent) -> bool) {
        if let Buffer::Shared { chunk, next, stop } = self {
            let rest = chunk.events().get(*next..*stop).unwrap_or_default();
            *next += rest.iter().take_while(|e| !passes(e)).count();
        }
    }
}
