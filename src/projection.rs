//! Projections: a named handler fed by a subscription on its own thread,
//! resuming from a durable checkpoint.

use crate::error::{Error, Result};
use crate::subscription::{EventLog, Filter, Judged, Subscription, Visibility};
use crate::telemetry::spans::enter_span;
use crate::telemetry::{Probe, ProbeKind};
use crate::types::RecordedEvent;
use parking_lot::{Condvar, Mutex};
use std::any::Any;
use std::fmt;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

/// Events a projection takes from its subscription at once.
const PROJECTION_BATCH: usize = 256;

/// What a projection handler returns when it fails.
pub type HandlerError = Box<dyn std::error::Error + Send + Sync>;

/// What a projection does when its handler fails.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum OnError {
    /// Stop, with the checkpoint at the failed event, and report
    /// [`Error::Projection`] from [`ProjectionHandle::join`].
    Stop,
    /// Call the handler again with the same event after `first_delay`,
    /// doubling up to `max_delay`; after `max_attempts` failed calls in a
    /// row (if set), stop as with [`OnError::Stop`]. A wait too long to
    /// time (such as [`Duration::MAX`]) lasts until the projection is asked
    /// to stop.
    Retry {
        /// Wait before the first retry.
        first_delay: Duration,
        /// Longest wait between retries.
        max_delay: Duration,
        /// Calls per event before giving up; `None` retries forever.
        max_attempts: Option<u32>,
    },
}

/// Where a projection starts.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum ProjectionStart {
    /// From the checkpoint saved under the projection's name (the
    /// beginning if there is none), saving checkpoints as it goes: each
    /// event is handled at least once across restarts.
    #[default]
    FromCheckpoint,
    /// From this position, saving no checkpoints: for handlers that store
    /// the position with their own state, in the same transaction, and pass
    /// it back here on restart, which makes each event's effect happen
    /// exactly once.
    At(u64),
}

/// How a projection runs; see [`Store::run_projection`](crate::Store::run_projection).
#[derive(Debug, Clone)]
pub struct ProjectionOptions {
    /// The events it handles.
    pub filter: Filter,
    /// Save the checkpoint after this many handled events (default 1,000)...
    pub checkpoint_every: u64,
    /// ...or once this long has passed since the last save with events
    /// handled since (default 1 s), whichever comes first.
    pub checkpoint_interval: Duration,
    /// What a handler failure does (default [`OnError::Stop`]).
    pub on_error: OnError,
    /// Which events it sees (default [`Visibility::Durable`]).
    pub visibility: Visibility,
    /// Where it starts (default [`ProjectionStart::FromCheckpoint`]).
    pub start: ProjectionStart,
}

impl Default for ProjectionOptions {
    fn default() -> Self {
        ProjectionOptions {
            filter: Filter::all(),
            checkpoint_every: 1000,
            checkpoint_interval: Duration::from_secs(1),
            on_error: OnError::Stop,
            visibility: Visibility::Durable,
            start: ProjectionStart::FromCheckpoint,
        }
    }
}

impl ProjectionOptions {
    /// Sets [`ProjectionOptions::filter`].
    #[must_use]
    pub fn filter(mut self, filter: Filter) -> Self {
        self.filter = filter;
        self
    }

    /// Sets [`ProjectionOptions::checkpoint_every`] (at least 1).
    #[must_use]
    pub fn checkpoint_every(mut self, events: u64) -> Self {
        self.checkpoint_every = events.max(1);
        self
    }

    /// Sets [`ProjectionOptions::checkpoint_interval`].
    #[must_use]
    pub fn checkpoint_interval(mut self, interval: Duration) -> Self {
        self.checkpoint_interval = interval;
        self
    }

    /// Sets [`ProjectionOptions::on_error`].
    #[must_use]
    pub fn on_error(mut self, on_error: OnError) -> Self {
        self.on_error = on_error;
        self
    }

    /// Sets [`ProjectionOptions::visibility`].
    #[must_use]
    pub fn visibility(mut self, visibility: Visibility) -> Self {
        self.visibility = visibility;
        self
    }

    /// Sets [`ProjectionOptions::start`].
    #[must_use]
    pub fn start(mut self, start: ProjectionStart) -> Self {
        self.start = start;
        self
    }
}

/// What a projection did, from [`ProjectionHandle::stop`] or
/// [`ProjectionHandle::join`].
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
#[non_exhaustive]
pub struct ProjectionStats {
    /// Events the handler handled successfully.
    pub events_handled: u64,
    /// Failed handler calls that were retried.
    pub retries: u64,
    /// Checkpoints saved.
    pub checkpoints_saved: u64,
    /// Where it stopped: the position of the first event not handled.
    pub position: u64,
}

#[derive(Debug, Default)]
struct Stop {
    requested: Mutex<bool>,
    changed: Condvar,
}

impl Stop {
    fn requested(&self) -> bool {
        *self.requested.lock()
    }

    /// Waits `delay` unless a stop is requested first; returns whether one
    /// was. A delay past what an `Instant` can hold waits for the stop.
    fn wait(&self, delay: Duration) -> bool {
        let deadline = Instant::now().checked_add(delay);
        let mut requested = self.requested.lock();
        while !*requested {
            match deadline {
                Some(deadline) => {
                    if self
                        .changed
                        .wait_until(&mut requested, deadline)
                        .timed_out()
                    {
                        break;
                    }
                }
                None => self.changed.wait(&mut requested),
            }
        }
        *requested
    }
}

/// A running projection; see [`Store::run_projection`](crate::Store::run_projection). Dropping it
/// requests a stop without waiting for it.
pub struct ProjectionHandle {
    /// Keeps the projection in the store's metrics while the handle lives,
    /// also once it has ended.
    _probe: Arc<Probe>,
    log: Arc<dyn EventLog>,
    name: String,
    stop: Arc<Stop>,
    position: Arc<AtomicU64>,
    thread: Option<JoinHandle<Result<ProjectionStats>>>,
}

impl fmt::Debug for ProjectionHandle {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ProjectionHandle")
            .field("name", &self.name)
            .field("position", &self.position())
            .finish_non_exhaustive()
    }
}

impl ProjectionHandle {
    /// Asks the projection to stop after the event it is handling; it
    /// saves its checkpoint on the way out.
    pub fn request_stop(&self) {
        *self.stop.requested.lock() = true;
        self.stop.changed.notify_all();
        self.log.progress(Visibility::Written).interrupt();
        self.log.progress(Visibility::Durable).interrupt();
    }

    /// Stops the projection and waits for it.
    ///
    /// # Errors
    /// The error that ended the projection before the stop, if any: a
    /// handler failure it gave up on, a checkpoint it could not save, or a
    /// poisoned store.
    pub fn stop(mut self) -> Result<ProjectionStats> {
        self.request_stop();
        self.wait()
    }

    /// Waits for the projection to end on its own: after a handler failure
    /// it gave up on, or when the store is closed.
    ///
    /// # Errors
    /// The error that ended the projection, as for [`ProjectionHandle::stop`].
    pub fn join(mut self) -> Result<ProjectionStats> {
        self.wait()
    }

    /// The position of the first event not yet handled (or skipped).
    #[must_use]
    pub fn position(&self) -> u64 {
        self.position.load(Ordering::Acquire)
    }

    /// Whether the projection has ended.
    #[must_use]
    pub fn is_finished(&self) -> bool {
        self.thread
            .as_ref()
            .is_none_or(std::thread::JoinHandle::is_finished)
    }

    fn wait(&mut self) -> Result<ProjectionStats> {
        match self.thread.take() {
            Some(thread) => thread.join().unwrap_or_else(|panic| {
                Err(Error::Projection {
                    name: self.name.clone(),
                    position: self.position(),
                    source: Arc::from(HandlerError::from(panic_message(&*panic))),
                })
            }),
            None => Err(Error::Closed),
        }
    }
}

/// What a panic of the projection thread said, as the cause of its error.
fn panic_message(payload: &(dyn Any + Send)) -> String {
    let message = payload
        .downcast_ref::<&str>()
        .copied()
        .or_else(|| payload.downcast_ref::<String>().map(String::as_str));
    match message {
        Some(message) => format!("the handler panicked: {message}"),
        None => "the handler panicked".into(),
    }
}

impl Drop for ProjectionHandle {
    fn drop(&mut self) {
        if self.thread.is_some() {
            self.request_stop();
        }
    }
}

/// What a projection runs against: the log it subscribes to and where it
/// saves its checkpoint. The store provides it.
pub(crate) trait ProjectionHost: fmt::Debug + Send + Sync + 'static {
    /// The log to subscribe to.
    fn event_log(&self) -> Arc<dyn EventLog>;
    /// Durably saves the checkpoint `name` at `position`.
    fn save_checkpoint(&self, name: &str, position: u64) -> Result<()>;
}

/// Starts the projection `name` at `from` on a thread of its own.
pub(crate) fn start<H>(
    host: Arc<dyn ProjectionHost>,
    name: &str,
    options: ProjectionOptions,
    from: u64,
    handler: H,
) -> Result<ProjectionHandle>
where
    H: FnMut(&RecordedEvent) -> std::result::Result<(), HandlerError> + Send + 'static,
{
    let stop = Arc::new(Stop::default());
    let position = Arc::new(AtomicU64::new(from));
    let log = host.event_log();
    let probe = log.probes().register(
        ProbeKind::Projection(name.to_string()),
        from,
        options.visibility == Visibility::Written,
    );
    let runner = Runner {
        probe: Arc::clone(&probe),
        host,
        log: Arc::clone(&log),
        name: name.to_string(),
        options,
        stop: Arc::clone(&stop),
        position: Arc::clone(&position),
        stats: ProjectionStats {
            position: from,
            ..ProjectionStats::default()
        },
    };
    let thread = std::thread::Builder::new()
        .name(format!("evstore-projection-{name}"))
        .spawn(move || {
            // Set however the run ends, a panicking handler included.
            let _finished = Finished(Arc::clone(&runner.probe));
            runner.run(from, handler)
        })
        .map_err(|e| Error::io("starting a projection thread", e))?;
    Ok(ProjectionHandle {
        _probe: probe,
        log,
        name: name.to_string(),
        stop,
        position,
        thread: Some(thread),
    })
}

/// Marks a projection's probe finished when its thread ends.
struct Finished(Arc<Probe>);

impl Drop for Finished {
    fn drop(&mut self) {
        self.0
            .finished
            .store(true, std::sync::atomic::Ordering::Relaxed);
    }
}

struct Runner {
    probe: Arc<Probe>,
    host: Arc<dyn ProjectionHost>,
    log: Arc<dyn EventLog>,
    name: String,
    options: ProjectionOptions,
    stop: Arc<Stop>,
    position: Arc<AtomicU64>,
    stats: ProjectionStats,
}

impl Runner {
    fn run<H>(mut self, from: u64, mut handler: H) -> Result<ProjectionStats>
    where
        H: FnMut(&RecordedEvent) -> std::result::Result<(), HandlerError>,
    {
        let mut subscription =
            Subscription::to_all(Arc::clone(&self.log), from, self.options.filter.clone())
                .with_visibility(self.options.visibility);
        let mut saved = from;
        let mut last_save = Instant::now();
        let stop = Arc::clone(&self.stop);
        let interrupted = move || stop.requested();
        loop {
            if self.stop.requested() {
                break;
            }
            // Events come in batches: those the store's other subscribers
            // read too are lent, not cloned for this projection.
            let mut batch = subscription.try_next_batch(PROJECTION_BATCH)?;
            if batch.is_empty() {
                // Caught up: what the filter skipped is passed.
                let position = subscription.checkpoint();
                self.passed(position);
                // Idle with nothing unsaved: wait for events (or a stop)
                // alone; otherwise also for the checkpoint to fall due.
                let due = (position > saved)
                    .then(|| last_save.checked_add(self.options.checkpoint_interval))
                    .flatten();
                batch =
                    subscription.next_batch_interruptible(PROJECTION_BATCH, due, &interrupted)?;
            }
            // The rules the batch was taken under.
            let rules = subscription.rules_held();
            for taken in &batch {
                // A deletion, erasure or new metadata written while the
                // batch is handled (by the handler itself, say) applies to
                // the rest of it, as it does to what a subscription has
                // read ahead.
                let judged;
                let event = if subscription.rules_now()? == rules
                    && !subscription.batch_read_before_a_replacement()
                {
                    taken
                } else {
                    match subscription.judge_again(taken) {
                        Judged::Same => taken,
                        Judged::Changed(changed) => {
                            judged = changed;
                            &judged
                        }
                        Judged::Reread => {
                            // Read before a scavenge replaced its file:
                            // the rest of the batch is read again.
                            subscription.resume_at(taken.position);
                            break;
                        }
                        Judged::Dropped => {
                            self.passed_and_saved(
                                taken.position + 1,
                                false,
                                &mut saved,
                                &mut last_save,
                            )?;
                            continue;
                        }
                    }
                };
                // A stop between two events of a batch leaves the rest
                // unhandled: the checkpoint stays before them.
                let done = !self.stop.requested()
                    && match self.handle(&mut handler, event) {
                        Ok(done) => done,
                        Err(error) => {
                            self.checkpoint(event.position, &mut saved)?;
                            return Err(error);
                        }
                    };
                if !done {
                    self.checkpoint(event.position, &mut saved)?;
                    self.passed(event.position);
                    return Ok(self.stats);
                }
                self.stats.events_handled += 1;
                Probe::bump(&self.probe.events);
                let every = self
                    .stats
                    .events_handled
                    .is_multiple_of(self.options.checkpoint_every);
                self.passed_and_saved(event.position + 1, every, &mut saved, &mut last_save)?;
            }
            // Past the batch, and past what the filter skipped after it.
            self.passed_and_saved(subscription.checkpoint(), false, &mut saved, &mut last_save)?;
            if batch.is_empty() && self.log.progress(Visibility::Durable).is_closed() {
                break;
            }
        }
        let position = subscription.checkpoint();
        self.checkpoint(position, &mut saved)?;
        Ok(self.stats)
    }

    /// Everything below `position` is handled or skipped.
    fn passed(&mut self, position: u64) {
        self.probe.seen_below(position);
        self.position.store(position, Ordering::Release);
        self.stats.position = position;
    }

    /// [`Runner::passed`], then saves the checkpoint if it is due: after
    /// every `checkpoint_every` events handled (`every`), or when the
    /// interval has gone by with something unsaved.
    fn passed_and_saved(
        &mut self,
        position: u64,
        every: bool,
        saved: &mut u64,
        last_save: &mut Instant,
    ) -> Result<()> {
        self.passed(position);
        let unsaved = position.saturating_sub(*saved);
        if unsaved > 0 && (every || last_save.elapsed() >= self.options.checkpoint_interval) {
            self.checkpoint(position, saved)?;
            *last_save = Instant::now();
        }
        Ok(())
    }

    /// Calls the handler, retrying as the options say; false if a stop was
    /// requested while waiting to retry.
    fn handle<H>(&mut self, handler: &mut H, event: &RecordedEvent) -> Result<bool>
    where
        H: FnMut(&RecordedEvent) -> std::result::Result<(), HandlerError>,
    {
        let mut attempts = 0u32;
        loop {
            attempts = attempts.saturating_add(1);
            let outcome = {
                enter_span!(
                    debug _span = "evstore.projection_handler",
                    projection = self.name.as_str(),
                    position = event.position,
                    attempt = attempts
                );
                handler(event)
            };
            let error = match outcome {
                Ok(()) => return Ok(true),
                Err(error) => error,
            };
            Probe::bump(&self.probe.failures);
            let failed = |error: HandlerError| Error::Projection {
                name: self.name.clone(),
                position: event.position,
                source: Arc::from(error),
            };
            let OnError::Retry {
                first_delay,
                max_delay,
                max_attempts,
            } = self.options.on_error
            else {
                return Err(failed(error));
            };
            if max_attempts.is_some_and(|max| attempts >= max) {
                return Err(failed(error));
            }
            let delay = first_delay
                .saturating_mul(1u32 << (attempts - 1).min(20))
                .min(max_delay);
            if self.stop.wait(delay) {
                return Ok(false);
            }
            self.stats.retries += 1;
            Probe::bump(&self.probe.retries);
        }
    }

    fn checkpoint(&mut self, position: u64, saved: &mut u64) -> Result<()> {
        if position == *saved {
            return Ok(());
        }
        if self.options.start != ProjectionStart::FromCheckpoint {
            // The handler keeps its own position; only the bookkeeping moves.
            *saved = position;
            return Ok(());
        }
        self.host.save_checkpoint(&self.name, position)?;
        *saved = position;
        self.stats.checkpoints_saved += 1;
        Ok(())
    }
}
