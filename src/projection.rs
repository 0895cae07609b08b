#![allow(clippy::pedantic)]
//! Projections: a named handler fed by a subscription on its own thread,
//! resuming from a durable checkpoint.

use crate::error::{Error, Result};
use crate::store::Store;
use crate::subscription::{Filter, Visibility};
use crate::types::RecordedEvent;
use parking_lot::{Condvar, Mutex};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

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
    /// row (if set), stop as with [`OnError::Stop`].
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

/// How a projection runs; see [`Store::run_projection`].
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
    pub fn filter(mut self, filter: Filter) -> Self {
        self.filter = filter;
        self
    }

    /// Sets [`ProjectionOptions::checkpoint_every`] (at least 1).
    pub fn checkpoint_every(mut self, events: u64) -> Self {
        self.checkpoint_every = events.max(1);
        self
    }

    /// Sets [`ProjectionOptions::checkpoint_interval`].
    pub fn checkpoint_interval(mut self, interval: Duration) -> Self {
        self.checkpoint_interval = interval;
        self
    }

    /// Sets [`ProjectionOptions::on_error`].
    pub fn on_error(mut self, on_error: OnError) -> Self {
        self.on_error = on_error;
        self
    }

    /// Sets [`ProjectionOptions::visibility`].
    pub fn visibility(mut self, visibility: Visibility) -> Self {
        self.visibility = visibility;
        self
    }

    /// Sets [`ProjectionOptions::start`].
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
    /// was.
    fn wait(&self, delay: Duration) -> bool {
        let deadline = Instant::now() + delay;
        let mut requested = self.requested.lock();
        while !*requested {
            if self
                .changed
                .wait_until(&mut requested, deadline)
                .timed_out()
            {
                break;
            }
        }
        *requested
    }
}

/// A running projection; see [`Store::run_projection`]. Dropping it
/// requests a stop without waiting for it.
#[derive(Debug)]
pub struct ProjectionHandle {
    store: Store,
    name: String,
    stop: Arc<Stop>,
    position: Arc<AtomicU64>,
    thread: Option<JoinHandle<Result<ProjectionStats>>>,
}

impl ProjectionHandle {
    /// Asks the projection to stop after the event it is handling; it
    /// saves its checkpoint on the way out.
    pub fn request_stop(&self) {
        *self.stop.requested.lock() = true;
        self.stop.changed.notify_all();
        self.store.state().written_progress.interrupt();
        self.store.state().durable_progress.interrupt();
    }

    /// Stops the projection and waits for it.
    pub fn stop(mut self) -> Result<ProjectionStats> {
        self.request_stop();
        self.wait()
    }

    /// Waits for the projection to end on its own: after a handler failure
    /// it gave up on, or when the store is closed.
    pub fn join(mut self) -> Result<ProjectionStats> {
        self.wait()
    }

    /// The position of the first event not yet handled (or skipped).
    pub fn position(&self) -> u64 {
        self.position.load(Ordering::Acquire)
    }

    /// Whether the projection has ended.
    pub fn is_finished(&self) -> bool {
        self.thread.as_ref().is_none_or(|t| t.is_finished())
    }

    fn wait(&mut self) -> Result<ProjectionStats> {
        match self.thread.take() {
            Some(thread) => thread.join().unwrap_or_else(|_| {
                Err(Error::Projection {
                    name: self.name.clone(),
                    position: self.position(),
                    reason: "the handler panicked".into(),
                })
            }),
            None => Err(Error::Closed),
        }
    }
}

impl Drop for ProjectionHandle {
    fn drop(&mut self) {
        if self.thread.is_some() {
            self.request_stop();
        }
    }
}

impl Store {
    /// Runs `handler` on every event `options.filter` passes, in global
    /// order, on a thread of its own: first the events since the
    /// projection's checkpoint, then new ones as they become visible. The
    /// checkpoint (saved under `name` with [`Store::save_checkpoint`]) moves
    /// every [`ProjectionOptions::checkpoint_every`] events or
    /// [`ProjectionOptions::checkpoint_interval`], and on stop; after a
    /// crash the events since the last save are handled again (at least
    /// once). For exactly-once effects, store the position with the
    /// handler's own state and start with [`ProjectionStart::At`].
    ///
    /// ```
    /// use evstore::{EventData, ExpectedVersion, Filter, Options, ProjectionOptions, Store};
    /// use std::sync::{Arc, Mutex};
    /// # let dir = tempfile::tempdir().unwrap();
    /// let store = Store::open(dir.path(), Options::default()).unwrap();
    /// store.append("order-1", ExpectedVersion::Any, &[EventData::new("OrderPlaced", &b""[..])]).unwrap();
    ///
    /// let placed = Arc::new(Mutex::new(0u64));
    /// let counter = Arc::clone(&placed);
    /// let projection = store
    ///     .run_projection(
    ///         "orders-placed",
    ///         ProjectionOptions::default().filter(Filter::event_types(["OrderPlaced"])),
    ///         move |_event| {
    ///             *counter.lock().unwrap() += 1;
    ///             Ok(())
    ///         },
    ///     )
    ///     .unwrap();
    /// while projection.position() < 1 {
    ///     std::thread::yield_now();
    /// }
    /// let stats = projection.stop().unwrap();
    /// assert_eq!((stats.events_handled, *placed.lock().unwrap()), (1, 1));
    /// assert_eq!(store.load_checkpoint("orders-placed").unwrap(), Some(1));
    /// ```
    pub fn run_projection<H>(
        &self,
        name: &str,
        options: ProjectionOptions,
        handler: H,
    ) -> Result<ProjectionHandle>
    where
        H: FnMut(&RecordedEvent) -> std::result::Result<(), HandlerError> + Send + 'static,
    {
        // A projection's progress lives in checkpoints, which it could not save.
        self.refuse_if_read_only("run a projection")?;
        let from = match options.start {
            ProjectionStart::FromCheckpoint => self.load_checkpoint_checked(name)?.unwrap_or(0),
            ProjectionStart::At(position) => {
                crate::checkpoint::validate_name(name)?;
                position
            }
        };
        let stop = Arc::new(Stop::default());
        let position = Arc::new(AtomicU64::new(from));
        let runner = Runner {
            store: self.clone(),
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
            .spawn(move || runner.run(from, handler))
            .map_err(|e| Error::io("starting a projection thread", e))?;
        Ok(ProjectionHandle {
            store: self.clone(),
            name: name.to_string(),
            stop,
            position,
            thread: Some(thread),
        })
    }
}

struct Runner {
    store: Store,
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
        let mut subscription = self
            .store
            .subscribe_all(from, self.options.filter.clone())
            .with_visibility(self.options.visibility);
        let mut saved = from;
        let mut last_save = Instant::now();
        let stop = Arc::clone(&self.stop);
        let interrupted = move || stop.requested();
        loop {
            if self.stop.requested() {
                break;
            }
            let event = match subscription.try_next()? {
                Some(event) => Some(event),
                None => {
                    // Caught up: what the filter skipped is passed.
                    let position = subscription.checkpoint();
                    self.position.store(position, Ordering::Release);
                    self.stats.position = position;
                    // Idle with nothing unsaved: wait for events (or a stop)
                    // alone; otherwise also for the checkpoint to fall due.
                    let due = (position > saved)
                        .then(|| last_save.checked_add(self.options.checkpoint_interval))
                        .flatten();
                    subscription.next_before(due, &interrupted)?
                }
            };
            if let Some(event) = &event {
                match self.handle(&mut handler, event) {
                    Ok(true) => self.stats.events_handled += 1,
                    Ok(false) => {
                        // Stopped while waiting to retry: the event is not
                        // handled, so the checkpoint stays before it.
                        self.checkpoint(event.position, &mut saved)?;
                        self.stats.position = event.position;
                        self.position.store(event.position, Ordering::Release);
                        return Ok(self.stats);
                    }
                    Err(error) => {
                        self.checkpoint(event.position, &mut saved)?;
                        return Err(error);
                    }
                }
            }
            let position = subscription.checkpoint();
            self.position.store(position, Ordering::Release);
            self.stats.position = position;
            let unsaved = position.saturating_sub(saved);
            let every = event.is_some()
                && self
                    .stats
                    .events_handled
                    .is_multiple_of(self.options.checkpoint_every);
            if unsaved > 0 && (every || last_save.elapsed() >= self.options.checkpoint_interval) {
                self.checkpoint(position, &mut saved)?;
                last_save = Instant::now();
            }
            if event.is_none() && self.store.state().durable_progress.is_closed() {
                break;
            }
        }
        let position = subscription.checkpoint();
        self.checkpoint(position, &mut saved)?;
        Ok(self.stats)
    }

    /// Calls the handler, retrying as the options say; false if a stop was
    /// requested while waiting to retry.
    fn handle<H>(&mut self, handler: &mut H, event: &RecordedEvent) -> Result<bool>
    where
        H: FnMut(&RecordedEvent) -> std::result::Result<(), HandlerError>,
    {
        let mut attempts = 0u32;
        loop {
            attempts += 1;
            let error = match handler(event) {
                Ok(()) => return Ok(true),
                Err(error) => error,
            };
            let failed = || Error::Projection {
                name: self.name.clone(),
                position: event.position,
                reason: error.to_string(),
            };
            let OnError::Retry {
                first_delay,
                max_delay,
                max_attempts,
            } = self.options.on_error
            else {
                return Err(failed());
            };
            if max_attempts.is_some_and(|max| attempts >= max) {
                return Err(failed());
            }
            let delay = first_delay
                .saturating_mul(1u32 << (attempts - 1).min(20))
                .min(max_delay);
            if self.stop.wait(delay) {
                return Ok(false);
            }
            self.stats.retries += 1;
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
        self.store.save_checkpoint(&self.name, position)?;
        *saved = position;
        self.stats.checkpoints_saved += 1;
        Ok(())
    }
}
