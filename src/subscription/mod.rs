//! Subscriptions: history first, then live events, in global order, read
//! straight from the log.
//!
//! A subscription is a cursor over the log plus a small buffer of one read's
//! worth of events. It reads what lies below the store's watermark (durable
//! or written) and, once it has read everything, waits for the watermark to
//! move. Catch-up and live delivery are the same loop, so there is no switch
//! at which an event could be missed or seen twice, and writers never wait
//! for a subscriber: a stalled one just falls behind in the log. Near the
//! watermark, subscriptions of the global log share what they read through
//! the store's [`ReadAhead`], so that many of them following the log
//! together read and verify each record once.

mod batch;
mod buffer;
mod filter;
mod log_read;
mod read_ahead;
#[cfg(feature = "async")]
mod stream;

use crate::error::{Error, Result};
use crate::progress::Progress;
use crate::query::Query;
use crate::retention::{redacted, Retained};
use crate::sealing::SUBJECT_TAG_PREFIX;
use crate::telemetry::{Probe, ProbeKind, Probes};
use crate::types::RecordedEvent;
pub use batch::{EventBatch, Iter as EventBatchIter};
use buffer::Buffer;
use filter::passes;
pub use filter::Filter;
use log_read::read_all;
pub(crate) use read_ahead::ReadAhead;
#[cfg(feature = "testing")]
pub use read_ahead::ReadAheadStats;
use std::fmt;
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::{Duration, Instant};

/// Events fetched per read of the log.
const READ_BATCH: usize = 512;
/// How far behind the watermark a subscription with a query reads through
/// the indexes instead of the log.
const INDEXED_CATCH_UP_GAP: u64 = 4 * READ_BATCH as u64;
/// Reads of events a filter skips before a subscription looks up from its
/// scan (at a waiting caller's deadline, or back to the async executor): a
/// subscription far behind, whose filter matches little, still answers
/// `next_timeout` in about its timeout and never hogs an executor thread.
const READS_PER_LOOK: usize = 16;

/// Which events a subscription may see.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default)]
pub enum Visibility {
    /// Only durable events (the default): nothing a subscriber acts on can
    /// be lost by a crash. In a `Buffered` store this lags appends by up to
    /// the flush interval.
    #[default]
    Durable,
    /// Every written event, durable or not: lower latency in a `Buffered`
    /// store, but a crash can lose events a subscriber has already seen.
    Written,
}

#[derive(Debug)]
enum Source {
    All { next_position: u64 },
    Stream { name: String, next_version: u64 },
}

/// An event of a batch judged again under newer rules.
pub(crate) enum Judged {
    /// Delivered as it is.
    Same,
    /// Delivered as this (erased since).
    Changed(RecordedEvent),
    /// No longer delivered (deleted or expired since).
    Dropped,
    /// Read before a scavenge replaced a segment file: to be read again
    /// (see [`Subscription::resume_at`]).
    Reread,
}

/// What one look at the log found.
enum Fill {
    /// Events are buffered.
    Ready,
    /// Nothing below the watermark, which was at this position.
    CaughtUp(u64),
    /// More to read, but the read budget ran out.
    Behind,
}

/// A subscription: every event of its source that passes its filter,
/// exactly once, in global order, catching up from the log and then
/// following it live. See [`Store::subscribe_all`](crate::Store::subscribe_all).
///
/// Dropping it frees everything it holds.
pub struct Subscription {
    log: Arc<dyn EventLog>,
    source: Source,
    /// What it delivers of the global log; everything of a stream.
    filter: Filter,
    visibility: Visibility,
    /// The rest of the last read, handed out in place (no copy of any
    /// event's bytes).
    buffer: Buffer,
    /// What each stream keeps, as of the lifecycle events below
    /// `rules_end`: events their streams no longer keep are not delivered,
    /// and erased ones are delivered as such.
    retained: Option<Retained>,
    /// See `retained`. A lifecycle event at or past it (a deletion, an
    /// erasure, new metadata) makes the subscription take the rules again
    /// before its next delivery, buffered events included.
    rules_end: u64,
    /// The read-ahead generation its buffer was read in (see
    /// [`ReadAhead::generation`]): if a scavenge replaced a segment file
    /// since, the buffer is read again before newer rules judge it.
    read_generation: u64,
    /// The generation of the buffer the last batch was taken from.
    batch_generation: u64,
    /// What it reports to the store's metrics.
    probe: Arc<Probe>,
}

impl fmt::Debug for Subscription {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Subscription")
            .field("source", &self.source)
            .field("filter", &self.filter)
            .field("visibility", &self.visibility)
            .field("buffered", &self.buffer.len())
            .finish_non_exhaustive()
    }
}

/// What a subscription reads: the log below a watermark, and the notifiers
/// that say when a watermark moves. The store provides it; a subscription
/// holds it (and so keeps the store open) until dropped.
pub(crate) trait EventLog: Send + Sync + 'static {
    /// Everything below this is visible with `visibility`.
    fn watermark(&self, visibility: Visibility) -> u64;
    /// The notifier of that watermark.
    fn progress(&self, visibility: Visibility) -> &Progress;
    /// The error the log stopped with, if it can no longer move.
    fn poisoned(&self) -> Option<Error>;
    /// What subscriptions of the global log share of their reads.
    fn read_ahead(&self) -> &ReadAhead;
    /// Up to `max` events of the global log from `from`, below `end`
    /// (removed segments skipped).
    fn read_all_below(&self, from: u64, max: usize, end: u64) -> Result<Vec<RecordedEvent>>;
    /// Whether `position` is in a removed segment, which holds no events.
    fn is_removed(&self, position: u64) -> bool;
    /// Up to `max` events matching `query` at positions `from..end`, read
    /// through the indexes.
    fn read_query_below(
        &self,
        query: &Query,
        from: u64,
        max: usize,
        end: u64,
    ) -> Result<Vec<RecordedEvent>>;
    /// Up to `max` events of `stream` from version `from`, below `end`.
    fn read_stream_below(
        &self,
        stream: &str,
        from: u64,
        max: usize,
        end: u64,
    ) -> Result<Vec<RecordedEvent>>;
    /// What each stream keeps now, and the position below which that takes
    /// every lifecycle event into account.
    fn retained_and_end(&self) -> Result<(Retained, u64)>;
    /// The position of the newest lifecycle event written, if any: cheap
    /// enough to ask before every delivery.
    fn newest_lifecycle(&self) -> Option<u64>;
    /// The version of the last event of `stream` below position `end`.
    fn last_visible_version(&self, stream: &str, end: u64) -> Option<u64>;
    /// Opens the event's payload and metadata where it is, if they were
    /// sealed (or marks it erased). In place: an event is large enough that
    /// moving it in and out costs more than the check itself.
    fn unseal(&self, event: &mut RecordedEvent) -> Result<()>;
    /// Where subscriptions and projections register what they report to
    /// the store's metrics.
    fn probes(&self) -> &Probes;
}

impl Subscription {
    /// A subscription to the global log from position `from`.
    pub(crate) fn to_all(log: Arc<dyn EventLog>, from: u64, filter: Filter) -> Self {
        log.read_ahead().join();
        let probe = log
            .probes()
            .register(ProbeKind::Subscription("$all".into()), from, false);
        Subscription {
            probe,
            log,
            source: Source::All {
                next_position: from,
            },
            filter,
            visibility: Visibility::Durable,
            buffer: Buffer::empty(),
            retained: None,
            rules_end: 0,
            read_generation: 0,
            batch_generation: 0,
        }
    }

    /// A subscription to `stream` from version `from_version`; the name
    /// must be valid.
    pub(crate) fn to_stream(log: Arc<dyn EventLog>, stream: &str, from_version: u64) -> Self {
        // Its global position is known once it first catches up.
        let probe = log
            .probes()
            .register(ProbeKind::Subscription(stream.into()), 0, false);
        Subscription {
            probe,
            log,
            source: Source::Stream {
                name: stream.to_string(),
                next_version: from_version,
            },
            filter: Filter::all(),
            visibility: Visibility::Durable,
            buffer: Buffer::empty(),
            retained: None,
            rules_end: 0,
            read_generation: 0,
            batch_generation: 0,
        }
    }
}

impl Drop for Subscription {
    fn drop(&mut self) {
        if let Source::All { .. } = self.source {
            self.log.read_ahead().leave();
        }
    }
}

impl Subscription {
    /// Sets which events it may see; [`Visibility::Durable`] by default.
    #[must_use]
    pub fn with_visibility(mut self, visibility: Visibility) -> Self {
        self.visibility = visibility;
        self.probe
            .follows_written
            .store(visibility == Visibility::Written, Ordering::Relaxed);
        self
    }

    /// Where to resume so as to receive exactly the events not yet
    /// delivered: a global position for [`Store::subscribe_all`](crate::Store::subscribe_all), a stream
    /// version for [`Store::subscribe_stream`](crate::Store::subscribe_stream). Skipped (filtered out)
    /// events count as delivered.
    #[must_use]
    pub fn checkpoint(&self) -> u64 {
        match (&self.source, self.buffer.first()) {
            (Source::All { .. }, Some(event)) => event.position,
            (Source::Stream { .. }, Some(event)) => event.version,
            (Source::All { next_position, .. }, None) => *next_position,
            (Source::Stream { next_version, .. }, None) => *next_version,
        }
    }

    /// The next event, waiting for one as long as it takes. `Ok(None)` once
    /// the store was closed and every event it made visible was delivered.
    /// If the log can no longer move (a poisoned store, or damage met by a
    /// read-only store following its writer), the error, once every event
    /// visible before it was delivered.
    ///
    /// The [`Iterator`] impl is the same wait with the result turned inside
    /// out: `sub.next()` is `sub.next_event().transpose()`.
    ///
    /// # Errors
    /// [`Error::StorePoisoned`] or a damaged segment met while reading, once
    /// everything visible before it was delivered.
    pub fn next_event(&mut self) -> Result<Option<RecordedEvent>> {
        self.next_before(None, &|| false)
    }

    /// The next event, waiting at most `timeout`; `Ok(None)` if none came
    /// (or the store was closed and everything was delivered). A timeout
    /// too long to be a deadline (such as [`Duration::MAX`]) waits like
    /// [`Subscription::next_event`].
    ///
    /// # Errors
    /// As for [`Subscription::next_event`].
    pub fn next_timeout(&mut self, timeout: Duration) -> Result<Option<RecordedEvent>> {
        self.next_before(Instant::now().checked_add(timeout), &|| false)
    }

    /// The next event if one is ready now, without waiting for writers.
    ///
    /// # Errors
    /// As for [`Subscription::next_event`].
    pub fn try_next(&mut self) -> Result<Option<RecordedEvent>> {
        loop {
            match self.fill(usize::MAX)? {
                Fill::Ready => return self.take(),
                Fill::CaughtUp(_) => return Ok(None),
                Fill::Behind => {}
            }
        }
    }

    /// The next event, waiting until `deadline` at most, or until
    /// `interrupted` holds when the store's progress notifier is
    /// interrupted.
    pub(crate) fn next_before(
        &mut self,
        deadline: Option<Instant>,
        interrupted: &dyn Fn() -> bool,
    ) -> Result<Option<RecordedEvent>> {
        if self.ready_as_buffered() || self.wait_ready(deadline, interrupted)? {
            self.take()
        } else {
            Ok(None)
        }
    }

    /// Up to `max` events at once, waiting for the first as long as it
    /// takes; an empty batch once the store was closed and every event it
    /// made visible was delivered (or if `max` is 0). The events are lent
    /// from what subscribers following the log together share, so a batch
    /// costs no copy of any event that [`Subscription::next_event`] would
    /// hand out unchanged: with many subscribers, the cheaper way to follow
    /// the log. [`Subscription::checkpoint`] then resumes after the batch.
    /// A batch is what the store's rules delivered when it was taken: a
    /// deletion or erasure acknowledged while you work through it applies
    /// from the next call on ([`crate::Store::run_projection`] applies it
    /// to the rest of the batch too).
    ///
    /// # Errors
    /// As for [`Subscription::next_event`]. An error met part-way through
    /// a batch is returned by the next call, after the events before it.
    pub fn next_batch(&mut self, max: usize) -> Result<EventBatch> {
        self.next_batch_before(max, None)
    }

    /// [`Subscription::next_batch`], waiting at most `timeout` for the
    /// first event: an empty batch if none came.
    ///
    /// # Errors
    /// As for [`Subscription::next_batch`].
    pub fn next_batch_timeout(&mut self, max: usize, timeout: Duration) -> Result<EventBatch> {
        self.next_batch_before(max, Instant::now().checked_add(timeout))
    }

    fn next_batch_before(&mut self, max: usize, deadline: Option<Instant>) -> Result<EventBatch> {
        self.next_batch_interruptible(max, deadline, &|| false)
    }

    /// [`Subscription::next_batch`], waiting until `deadline` at most, or
    /// until `interrupted` holds when the store's progress notifier is
    /// interrupted.
    pub(crate) fn next_batch_interruptible(
        &mut self,
        max: usize,
        deadline: Option<Instant>,
        interrupted: &dyn Fn() -> bool,
    ) -> Result<EventBatch> {
        if max == 0 || !self.wait_ready(deadline, interrupted)? {
            return Ok(EventBatch::default());
        }
        self.take_batch(max)
    }

    /// Up to `max` events if any is ready now, without waiting for
    /// writers: an empty batch means caught up with the watermark.
    pub(crate) fn try_next_batch(&mut self, max: usize) -> Result<EventBatch> {
        loop {
            match self.fill(usize::MAX)? {
                Fill::Ready => return self.take_batch(max),
                Fill::CaughtUp(_) => return Ok(EventBatch::default()),
                Fill::Behind => {}
            }
        }
    }

    /// Waits until an event is buffered (true), or until `deadline`, an
    /// interruption, or the store closing with nothing left (false).
    fn wait_ready(
        &mut self,
        deadline: Option<Instant>,
        interrupted: &dyn Fn() -> bool,
    ) -> Result<bool> {
        loop {
            match self.fill(READS_PER_LOOK)? {
                Fill::Ready => return Ok(true),
                Fill::Behind => {
                    if interrupted() || deadline.is_some_and(|d| Instant::now() >= d) {
                        return Ok(false);
                    }
                }
                Fill::CaughtUp(seen) => {
                    if let Some(error) = self.log.poisoned() {
                        return Err(error);
                    }
                    let progress = self.progress();
                    if progress.is_closed() {
                        // Flushed at close: one last look sees everything.
                        return Ok(matches!(self.fill(usize::MAX)?, Fill::Ready));
                    }
                    let moved =
                        progress.wait_until(deadline, || self.end() > seen || interrupted());
                    Probe::bump(&self.probe.wakeups);
                    if interrupted() || (!moved && !progress.is_closed()) {
                        return Ok(false);
                    }
                }
            }
        }
    }

    /// Hands out up to `max` buffered events together: lent from the
    /// shared chunk where this subscription sees them as they are there,
    /// copied where it opens or redacts them.
    fn take_batch(&mut self, max: usize) -> Result<EventBatch> {
        self.batch_generation = self.read_generation;
        let log = &*self.log;
        let retained = self.retained.as_ref();
        let passes = passes(&self.filter, retained, log, log.watermark(self.visibility));
        // What `take` would do to the event, on a copy: `None` if it
        // leaves the event as it is.
        let changed = |event: &RecordedEvent| -> Result<Option<RecordedEvent>> {
            let sealed = is_sealed(event);
            let erased = retained.is_some_and(|r| !event.erased && r.is_erased(event));
            if !sealed && !erased {
                return Ok(None);
            }
            let mut copy = event.clone();
            log.unseal(&mut copy)?;
            if let Some(retained) = retained {
                retained.redact(std::slice::from_mut(&mut copy));
            }
            Ok(Some(copy))
        };
        let mut batch = EventBatch::default();
        match &mut self.buffer {
            Buffer::Own(events) => {
                while batch.len() < max {
                    let Some(event) = events.as_slice().first() else {
                        break;
                    };
                    match changed(event) {
                        Ok(Some(copy)) => batch.own(copy),
                        Ok(None) => {
                            if let Some(event) = events.next() {
                                batch.own(event);
                            }
                            continue;
                        }
                        // Delivered after the events before it, as `take`
                        // would: the failing event is passed over.
                        Err(error) if batch.is_empty() => {
                            events.next();
                            return Err(error);
                        }
                        Err(_) => break,
                    }
                    events.next();
                }
            }
            Buffer::Shared { chunk, next, stop } => {
                batch = EventBatch::lending(Arc::clone(chunk));
                while batch.len() < max {
                    let Some(event) = chunk.events().get(*next..*stop).and_then(<[_]>::first)
                    else {
                        break;
                    };
                    match changed(event) {
                        Ok(Some(copy)) => batch.own(copy),
                        Ok(None) => batch.lend(*next),
                        Err(error) if batch.is_empty() => {
                            *next += 1;
                            let rest = chunk.events().get(*next..*stop).unwrap_or_default();
                            *next += rest.iter().take_while(|e| !passes(e)).count();
                            return Err(error);
                        }
                        Err(_) => break,
                    }
                    *next += 1;
                    let rest = chunk.events().get(*next..*stop).unwrap_or_default();
                    *next += rest.iter().take_while(|e| !passes(e)).count();
                }
            }
        }
        if let Some(last) = batch.last() {
            self.probe.seen_below(last.position.saturating_add(1));
        }
        self.probe
            .events
            .fetch_add(batch.len() as u64, Ordering::Relaxed);
        Ok(batch)
    }

    /// Hands out the next buffered event, its payload opened if it was
    /// sealed.
    fn take(&mut self) -> Result<Option<RecordedEvent>> {
        let everything = self.passes_everything();
        if everything {
            if let Some(event) = self.buffer.first().filter(|e| !is_sealed(e)) {
                self.probe.seen_below(event.position.saturating_add(1));
                Probe::bump(&self.probe.events);
                // Taken straight into what is returned: an event is large
                // enough that each move of it costs more than these checks.
                return Ok(self.buffer.take_unfiltered());
            }
        }
        let taken = if everything {
            self.buffer.take_unfiltered()
        } else {
            let passes = passes(&self.filter, self.retained.as_ref(), &*self.log, self.end());
            self.buffer.take(&passes)
        };
        let Some(mut event) = taken else {
            return Ok(None);
        };
        if is_sealed(&event) {
            self.log.unseal(&mut event)?;
        }
        if let Some(retained) = &self.retained {
            retained.redact(std::slice::from_mut(&mut event));
        }
        self.probe.seen_below(event.position.saturating_add(1));
        Probe::bump(&self.probe.events);
        Ok(Some(event))
    }

    /// Whether every event it reads is delivered as read: no filter, and
    /// rules that neither drop nor erase anything. Then handing out an
    /// event needs no look at the events after it.
    fn passes_everything(&self) -> bool {
        self.filter.is_all()
            && self
                .retained
                .as_ref()
                .is_some_and(Retained::keeps_everything)
    }

    /// Whether the next event can be handed out as it is buffered: the
    /// first look [`Subscription::fill`] takes, without its loop.
    fn ready_as_buffered(&self) -> bool {
        self.buffer.len() > 0
            && !self.read_before_a_replacement()
            && self
                .log
                .newest_lifecycle()
                .is_none_or(|p| p < self.rules_end)
    }

    /// The notifier of the watermark this subscription follows.
    fn progress(&self) -> &Progress {
        self.log.progress(self.visibility)
    }

    /// The watermark this subscription reads below.
    fn end(&self) -> u64 {
        self.log.watermark(self.visibility)
    }

    /// Takes the rules again after a lifecycle event was written, and drops
    /// from the buffer what they no longer let through: a deletion, an
    /// erasure or new metadata acknowledged after the buffer was read still
    /// applies to every event delivered after it.
    fn take_rules_again(&mut self) -> Result<()> {
        let (retained, rules_end) = self.log.retained_and_end()?;
        self.retained = Some(retained);
        self.rules_end = rules_end;
        if self.read_before_a_replacement() {
            // A scavenge replaced a segment file since the buffer was read:
            // it may hold events the new file no longer has, which newer
            // rules could let through. Read again from the first of them.
            self.resume_at(self.checkpoint());
            return Ok(());
        }
        let end = self.end();
        let passes = passes(&self.filter, self.retained.as_ref(), &*self.log, end);
        self.buffer.keep(&passes);
        Ok(())
    }

    /// Whether its buffer was read before a scavenge replaced a segment
    /// file (see [`ReadAhead::generation`]).
    fn read_before_a_replacement(&self) -> bool {
        self.log.read_ahead().generation() != self.read_generation
    }

    /// Whether the last batch it handed out was read before a scavenge
    /// replaced a segment file: its events are then judged again.
    pub(crate) fn batch_read_before_a_replacement(&self) -> bool {
        self.log.read_ahead().generation() != self.batch_generation
    }

    /// Drops what is buffered and reads on from `resume` (a position, or a
    /// stream version), as [`Subscription::checkpoint`] gives it.
    pub(crate) fn resume_at(&mut self, resume: u64) {
        match &mut self.source {
            Source::All { next_position } => *next_position = resume,
            Source::Stream { next_version, .. } => *next_version = resume,
        }
        self.buffer = Buffer::empty();
    }

    /// Which retention rules it holds: this changes when it takes them
    /// again, which it does first if a lifecycle event was written since.
    /// An event of a batch taken under other rules is judged again with
    /// [`Subscription::judge_again`] before it is handed on.
    pub(crate) fn rules_now(&mut self) -> Result<u64> {
        if self
            .log
            .newest_lifecycle()
            .is_some_and(|p| p >= self.rules_end)
        {
            self.take_rules_again()?;
        }
        Ok(self.rules_end)
    }

    /// Which retention rules it holds, as they were when it last handed out
    /// events: see [`Subscription::rules_now`].
    pub(crate) fn rules_held(&self) -> u64 {
        self.rules_end
    }

    /// `event`, taken in a batch under earlier rules, as the rules held now
    /// deliver it.
    pub(crate) fn judge_again(&self, event: &RecordedEvent) -> Judged {
        if self.batch_read_before_a_replacement() {
            return Judged::Reread;
        }
        let passes = passes(&self.filter, self.retained.as_ref(), &*self.log, self.end());
        if !passes(event) {
            return Judged::Dropped;
        }
        match &self.retained {
            Some(retained) if retained.redacts(event) => Judged::Changed(redacted(event)),
            _ => Judged::Same,
        }
    }

    /// Reads the log into the buffer, up to `budget` reads when the filter
    /// skips everything read.
    fn fill(&mut self, budget: usize) -> Result<Fill> {
        for _ in 0..budget {
            if self.buffer.len() > 0 && self.read_before_a_replacement() {
                // Read from a file a scavenge has since replaced: the
                // buffer may hold events the new file no longer has, which
                // rules relaxed at any time could let through.
                self.resume_at(self.checkpoint());
            }
            if self.buffer.len() > 0 {
                if self
                    .log
                    .newest_lifecycle()
                    .is_some_and(|p| p >= self.rules_end)
                {
                    self.take_rules_again()?;
                }
                if self.buffer.len() > 0 {
                    return Ok(Fill::Ready);
                }
                continue;
            }
            let end = self.end();
            let (retained, rules_end) = self.log.retained_and_end()?;
            self.retained = Some(retained);
            self.rules_end = rules_end;
            // Taken before the read: a replacement during it counts.
            self.read_generation = self.log.read_ahead().generation();
            match &mut self.source {
                Source::All { next_position } => {
                    if *next_position >= end {
                        self.probe.seen_below(end);
                        return Ok(Fill::CaughtUp(end));
                    }
                    let from = *next_position;
                    if let Some(query) = self.filter.query.as_deref() {
                        // Far behind, the indexes skip what does not match;
                        // near the end, the shared read-ahead serves.
                        if end - from > INDEXED_CATCH_UP_GAP {
                            let mut events =
                                self.log.read_query_below(query, from, READ_BATCH, end)?;
                            *next_position = match events.last() {
                                Some(last) if events.len() == READ_BATCH => last.position + 1,
                                _ => end,
                            };
                            let passes =
                                passes(&self.filter, self.retained.as_ref(), &*self.log, end);
                            events.retain(|e| passes(e));
                            self.buffer = Buffer::Own(events.into_iter());
                            continue;
                        }
                    }
                    let passes = passes(&self.filter, self.retained.as_ref(), &*self.log, end);
                    let (buffer, next, generation) = read_all(&*self.log, &passes, from, end)?;
                    self.buffer = buffer;
                    self.read_generation = generation;
                    *next_position = next;
                }
                Source::Stream { name, next_version } => {
                    let events =
                        self.log
                            .read_stream_below(name, *next_version, READ_BATCH, end)?;
                    let Some(last) = events.last() else {
                        self.probe.seen_below(end);
                        return Ok(Fill::CaughtUp(end));
                    };
                    *next_version = last.version + 1;
                    let passes = passes(&self.filter, self.retained.as_ref(), &*self.log, end);
                    let mut events = events;
                    events.retain(|e| passes(e));
                    self.buffer = Buffer::Own(events.into_iter());
                }
            }
        }
        Ok(if self.buffer.len() == 0 {
            Fill::Behind
        } else {
            Fill::Ready
        })
    }
}

/// Whether `event` was sealed for a subject: only then can opening it
/// change it.
fn is_sealed(event: &RecordedEvent) -> bool {
    event.tags.iter().any(|t| t.starts_with(SUBJECT_TAG_PREFIX))
}

impl Iterator for Subscription {
    type Item = Result<RecordedEvent>;

    /// Blocks like [`Subscription::next_event`]; ends when the store is
    /// closed and everything was delivered.
    fn next(&mut self) -> Option<Self::Item> {
        self.next_event().transpose()
    }
}

#[cfg(feature = "async")]
pub use stream::{BatchStream, SubscriptionStream};
