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
mod read_ahead;

use crate::error::{Error, Result};
use crate::progress::Progress;
use crate::query::Query;
use crate::retention::{redacted, Retained};
use crate::sealing::SUBJECT_TAG_PREFIX;
use crate::telemetry::{Probe, ProbeKind, Probes};
use crate::types::RecordedEvent;
pub use batch::{EventBatch, Iter as EventBatchIter};
pub(crate) use read_ahead::ReadAhead;
#[cfg(feature = "testing")]
pub use read_ahead::ReadAheadStats;
use read_ahead::{Chunk, Lookup};
use std::collections::HashSet;
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

/// Which events a subscription delivers: every condition set must hold.
/// Conditions are checked on the event's stream name and type, which are
/// views of the record as read, so a skipped event costs no copy of its
/// payload.
///
/// ```
/// use evstore::Filter;
/// let orders = Filter::stream_prefix("order-");
/// let placed = Filter::event_types(["OrderPlaced", "OrderAmended"]);
/// let big = Filter::stream_prefix("order-").with_predicate(|e| e.payload.len() > 1024);
/// # let _ = (orders, placed, big);
/// ```
#[derive(Clone, Default)]
pub struct Filter {
    stream_prefix: Option<Box<str>>,
    event_types: Option<Arc<HashSet<Box<str>>>>,
    event_type_prefix: Option<Box<str>>,
    query: Option<Arc<Query>>,
    predicate: Option<Predicate>,
}

type Predicate = Arc<dyn Fn(&RecordedEvent) -> bool + Send + Sync>;

impl fmt::Debug for Filter {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Filter")
            .field("stream_prefix", &self.stream_prefix)
            .field("event_types", &self.event_types)
            .field("event_type_prefix", &self.event_type_prefix)
            .field("query", &self.query)
            .field("predicate", &self.predicate.as_ref().map(|_| "..."))
            .finish()
    }
}

impl Filter {
    /// Every event.
    #[must_use]
    pub fn all() -> Self {
        Filter::default()
    }

    /// Events of streams whose name starts with `prefix`, such as a
    /// category (`"order-"`).
    pub fn stream_prefix(prefix: impl Into<String>) -> Self {
        Filter::all().with_stream_prefix(prefix)
    }

    /// Events whose type is one of `types`.
    pub fn event_types<T: Into<String>>(types: impl IntoIterator<Item = T>) -> Self {
        Filter::all().with_event_types(types)
    }

    /// Events whose type starts with `prefix`.
    pub fn event_type_prefix(prefix: impl Into<String>) -> Self {
        Filter::all().with_event_type_prefix(prefix)
    }

    /// Events for which `predicate` returns true.
    pub fn predicate(predicate: impl Fn(&RecordedEvent) -> bool + Send + Sync + 'static) -> Self {
        Filter::all().with_predicate(predicate)
    }

    /// Also requires the stream name to start with `prefix`.
    #[must_use]
    pub fn with_stream_prefix(mut self, prefix: impl Into<String>) -> Self {
        self.stream_prefix = Some(prefix.into().into_boxed_str());
        self
    }

    /// Also requires the event type to be one of `types`.
    #[must_use]
    pub fn with_event_types<T: Into<String>>(mut self, types: impl IntoIterator<Item = T>) -> Self {
        let types = types
            .into_iter()
            .map(|t| t.into().into_boxed_str())
            .collect();
        self.event_types = Some(Arc::new(types));
        self
    }

    /// Also requires the event type to start with `prefix`.
    #[must_use]
    pub fn with_event_type_prefix(mut self, prefix: impl Into<String>) -> Self {
        self.event_type_prefix = Some(prefix.into().into_boxed_str());
        self
    }

    /// Events matching `query` (types and tags). A subscription of the
    /// global log with a query catches up from the indexes: it reads only
    /// the matching events, not the whole log, until it nears the end. A
    /// query that reads refuse (no item, or an item naming nothing)
    /// matches no event.
    ///
    /// ```
    /// use evstore::{Filter, Query};
    /// let course = Filter::query(Query::tagged(["course:c1"]));
    /// # let _ = course;
    /// ```
    #[must_use]
    pub fn query(query: Query) -> Self {
        Filter::default().with_query(query)
    }

    /// Also requires the event to match `query`.
    #[must_use]
    pub fn with_query(mut self, query: Query) -> Self {
        self.query = Some(Arc::new(query));
        self
    }

    /// Also requires `predicate` to return true. It sees the event as it
    /// would be delivered, with its payload (a view of the log, not a copy,
    /// unless the event was sealed for a subject and is opened for it, or
    /// erased and seen as its redaction marker); it runs on the
    /// subscriber's thread, after the cheaper conditions.
    #[must_use]
    pub fn with_predicate(
        mut self,
        predicate: impl Fn(&RecordedEvent) -> bool + Send + Sync + 'static,
    ) -> Self {
        self.predicate = Some(Arc::new(predicate));
        self
    }

    /// Whether `event` passes.
    pub fn matches(&self, event: &RecordedEvent) -> bool {
        self.stream_prefix
            .as_deref()
            .is_none_or(|p| event.stream.starts_with(p))
            && self
                .event_types
                .as_ref()
                .is_none_or(|types| types.contains(&*event.event_type))
            && self
                .event_type_prefix
                .as_deref()
                .is_none_or(|p| event.event_type.starts_with(p))
            && self.query.as_ref().is_none_or(|q| q.matches(event))
            && self.predicate.as_ref().is_none_or(|p| p(event))
    }
}

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

/// The rest of the last read, handed out in order. Every event in it at or
/// after the next one to hand out passes the filter, or is skipped before
/// anything looks at it, so the first event is always the next delivery.
enum Buffer {
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
    fn empty() -> Self {
        Buffer::Own(Vec::new().into_iter())
    }

    /// The next event to hand out.
    fn first(&self) -> Option<&RecordedEvent> {
        match self {
            Buffer::Own(events) => events.as_slice().first(),
            Buffer::Shared { chunk, next, stop } => {
                chunk.events().get(*next..*stop).and_then(<[_]>::first)
            }
        }
    }

    fn len(&self) -> usize {
        match self {
            Buffer::Own(events) => events.len(),
            Buffer::Shared { next, stop, .. } => stop.saturating_sub(*next),
        }
    }

    /// Hands out the next event and moves on to the one after it that
    /// `passes`.
    fn take(&mut self, passes: &dyn Fn(&RecordedEvent) -> bool) -> Option<RecordedEvent> {
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

    /// Drops the events that no longer pass: from an own buffer all of
    /// them; from a shared one those before the next that passes (the rest
    /// are checked as they come up).
    fn keep(&mut self, passes: &dyn Fn(&RecordedEvent) -> bool) {
        match self {
            Buffer::Own(events) => {
                let kept: Vec<RecordedEvent> = events.by_ref().filter(|e| passes(e)).collect();
                *events = kept.into_iter();
            }
            Buffer::Shared { .. } => self.skip(passes),
        }
    }

    /// Moves past the events that do not pass.
    fn skip(&mut self, passes: &dyn Fn(&RecordedEvent) -> bool) {
        if let Buffer::Shared { chunk, next, stop } = self {
            let rest = chunk.events().get(*next..*stop).unwrap_or_default();
            *next += rest.iter().take_while(|e| !passes(e)).count();
        }
    }
}

/// An event of a batch judged again under newer rules.
pub(crate) enum Judged {
    /// Delivered as it is.
    Same,
    /// Delivered as this (erased since).
    Changed(RecordedEvent),
    /// No longer delivered (deleted or expired since).
    Dropped,
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
    /// Up to `max` events of the global log from `from`, below `end`.
    fn read_all_below(&self, from: u64, max: usize, end: u64) -> Result<Vec<RecordedEvent>>;
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
        if self.wait_ready(deadline, interrupted)? {
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
        let log = &*self.log;
        let retained = self.retained.as_ref();
        let passes = passes(&self.filter, retained, log, log.watermark(self.visibility));
        // What `take` would do to the event, on a copy: `None` if it
        // leaves the event as it is.
        let changed = |event: &RecordedEvent| -> Result<Option<RecordedEvent>> {
            let sealed = event.tags.iter().any(|t| t.starts_with(SUBJECT_TAG_PREFIX));
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
        let passes = passes(&self.filter, self.retained.as_ref(), &*self.log, self.end());
        let Some(mut event) = self.buffer.take(&passes) else {
            return Ok(None);
        };
        self.log.unseal(&mut event)?;
        if let Some(retained) = &self.retained {
            retained.redact(std::slice::from_mut(&mut event));
        }
        self.probe.seen_below(event.position.saturating_add(1));
        Probe::bump(&self.probe.events);
        Ok(Some(event))
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
        let end = self.end();
        let passes = passes(&self.filter, self.retained.as_ref(), &*self.log, end);
        self.buffer.keep(&passes);
        Ok(())
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
                    let (buffer, next) = read_all(&*self.log, &passes, from, end)?;
                    self.buffer = buffer;
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

/// One read of the global log from `from` (below `end`, where it holds
/// events) for a subscription delivering what `filter` passes: the events
/// as a buffer, and the position after the last of them. From the
/// read-ahead when it holds `from`; otherwise from the log, offered to the
/// read-ahead when near the watermark.
fn read_all(
    log: &dyn EventLog,
    passes: &dyn Fn(&RecordedEvent) -> bool,
    from: u64,
    end: u64,
) -> Result<(Buffer, u64)> {
    let read_ahead = log.read_ahead();
    let chunk = match read_ahead.lookup(from) {
        Lookup::Hit(chunk) => chunk,
        Lookup::Miss { next } => {
            // Up to the next chunk held, so chunks never overlap.
            let stop = next.map_or(end, |next| next.min(end));
            let events = log.read_all_below(from, READ_BATCH, stop)?;
            let Some(last) = events.last() else {
                return Err(missing(from));
            };
            let after = last.position + 1;
            let own = |mut events: Vec<RecordedEvent>| {
                events.retain(|e| passes(e));
                Ok((Buffer::Own(events.into_iter()), after))
            };
            if !read_ahead.worth_sharing(from, end) {
                return own(events);
            }
            let chunk = match Chunk::new(events) {
                Ok(chunk) => Arc::new(chunk),
                Err(events) => return own(events),
            };
            if read_ahead.offer(&chunk) {
                chunk
            } else {
                // Nobody else can see it: its events are this
                // subscription's to move out.
                match Arc::try_unwrap(chunk) {
                    Ok(chunk) => return own(chunk.into_events()),
                    Err(chunk) => chunk,
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
    Ok((buffer, after))
}

/// Whether a subscription delivers an event: its stream still keeps it,
/// as seen by a subscriber that sees the log up to `end`, and its filter
/// passes it as it would be delivered: an erased event as its redaction
/// marker, and a sealed one opened for a predicate (which sees its payload).
fn passes<'a>(
    filter: &'a Filter,
    retained: Option<&'a Retained>,
    log: &'a dyn EventLog,
    end: u64,
) -> impl Fn(&RecordedEvent) -> bool + 'a {
    move |event| {
        if !retained.is_none_or(|r| r.keeps(event, |s| log.last_visible_version(s, end))) {
            return false;
        }
        if retained.is_some_and(|r| r.redacts(event)) {
            return filter.matches(&redacted(event));
        }
        let sealed = || event.tags.iter().any(|t| t.starts_with(SUBJECT_TAG_PREFIX));
        if filter.predicate.is_some() && sealed() {
            let mut opened = event.clone();
            // One that cannot be opened is delivered, and its delivery
            // reports why.
            return log.unseal(&mut opened).is_err() || filter.matches(&opened);
        }
        filter.matches(event)
    }
}

fn missing(position: u64) -> Error {
    Error::corrupted(
        crate::layout::SEGMENTS_DIR,
        0,
        format!("position {position} is below the watermark but reads as nothing"),
    )
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
mod stream {
    use super::{EventBatch, Fill, Probe, Subscription, READS_PER_LOOK};
    use crate::error::Result;
    use crate::types::RecordedEvent;
    use std::pin::Pin;
    use std::task::{Context, Poll};

    /// A [`Subscription`] as a `futures::Stream` (cargo feature `async`):
    /// the task is woken when the log moves, no thread is blocked.
    ///
    /// ```
    /// # #[tokio::main(flavor = "current_thread")] async fn main() {
    /// use evstore::{EventData, ExpectedVersion, Filter, Options, Store};
    /// use futures_util::StreamExt;
    /// # let dir = tempfile::tempdir().unwrap();
    /// let store = Store::open(dir.path(), Options::default()).unwrap();
    /// store.append("a", ExpectedVersion::Any, &[EventData::new("A", &b""[..])]).unwrap();
    /// let mut events = store.subscribe_all(0, Filter::all()).into_stream();
    /// let first = events.next().await.unwrap().unwrap();
    /// assert_eq!(first.position, 0);
    /// # }
    /// ```
    #[derive(Debug)]
    pub struct SubscriptionStream {
        subscription: Subscription,
        /// The last poll found nothing and registered for a wake-up.
        waiting: bool,
    }

    impl Subscription {
        /// This subscription as a `futures::Stream`.
        #[must_use]
        pub fn into_stream(self) -> SubscriptionStream {
            SubscriptionStream {
                subscription: self,
                waiting: false,
            }
        }
    }

    impl SubscriptionStream {
        /// See [`Subscription::checkpoint`].
        #[must_use]
        pub fn checkpoint(&self) -> u64 {
            self.subscription.checkpoint()
        }
    }

    impl SubscriptionStream {
        /// One poll: `take` hands out what is buffered once something is.
        fn poll_with<T>(
            &mut self,
            cx: &mut Context<'_>,
            take: impl Fn(&mut Subscription) -> Result<Option<T>>,
        ) -> Poll<Option<Result<T>>> {
            let subscription = &mut self.subscription;
            if std::mem::take(&mut self.waiting) {
                Probe::bump(&subscription.probe.wakeups);
            }
            match subscription.fill(READS_PER_LOOK) {
                Err(error) => Poll::Ready(Some(Err(error))),
                Ok(Fill::Ready) => Poll::Ready(take(subscription).transpose()),
                Ok(Fill::Behind) => {
                    cx.waker().wake_by_ref();
                    Poll::Pending
                }
                Ok(Fill::CaughtUp(seen)) => {
                    if let Some(error) = subscription.log.poisoned() {
                        return Poll::Ready(Some(Err(error)));
                    }
                    if subscription.progress().is_closed() {
                        return match subscription.fill(usize::MAX) {
                            Err(error) => Poll::Ready(Some(Err(error))),
                            Ok(Fill::Ready) => Poll::Ready(take(subscription).transpose()),
                            Ok(_) => Poll::Ready(None),
                        };
                    }
                    if subscription
                        .progress()
                        .register(cx.waker(), || subscription.end() > seen)
                    {
                        cx.waker().wake_by_ref();
                    }
                    self.waiting = true;
                    Poll::Pending
                }
            }
        }

        /// This stream as one of batches of at most `max` events (at
        /// least one): see [`Subscription::next_batch`].
        ///
        /// ```
        /// # #[tokio::main(flavor = "current_thread")] async fn main() {
        /// use evstore::{EventData, ExpectedVersion, Filter, Options, Store};
        /// use futures_util::StreamExt;
        /// # let dir = tempfile::tempdir().unwrap();
        /// let store = Store::open(dir.path(), Options::default()).unwrap();
        /// for _ in 0..3 {
        ///     store.append("a", ExpectedVersion::Any, &[EventData::new("A", &b""[..])]).unwrap();
        /// }
        /// let mut batches = store.subscribe_all(0, Filter::all()).into_stream().batches(2);
        /// let first = batches.next().await.unwrap().unwrap();
        /// assert_eq!(first.iter().map(|e| e.position).collect::<Vec<_>>(), [0, 1]);
        /// # }
        /// ```
        #[must_use]
        pub fn batches(self, max: usize) -> BatchStream {
            BatchStream {
                events: self,
                max: max.max(1),
            }
        }
    }

    impl futures_core::Stream for SubscriptionStream {
        type Item = Result<RecordedEvent>;

        fn poll_next(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Self::Item>> {
            self.get_mut().poll_with(cx, Subscription::take)
        }
    }

    /// A [`Subscription`] as a `futures::Stream` of [`EventBatch`]es
    /// (cargo feature `async`), made by [`SubscriptionStream::batches`].
    #[derive(Debug)]
    pub struct BatchStream {
        events: SubscriptionStream,
        max: usize,
    }

    impl BatchStream {
        /// See [`Subscription::checkpoint`].
        #[must_use]
        pub fn checkpoint(&self) -> u64 {
            self.events.checkpoint()
        }
    }

    impl futures_core::Stream for BatchStream {
        type Item = Result<EventBatch>;

        fn poll_next(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Self::Item>> {
            let this = self.get_mut();
            let max = this.max;
            this.events
                .poll_with(cx, |subscription| subscription.take_batch(max).map(Some))
        }
    }
}

#[cfg(feature = "async")]
pub use stream::{BatchStream, SubscriptionStream};
