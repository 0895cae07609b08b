//! The store's shared state: the index and its lock, the written and
//! durable watermarks with the notifiers that wake subscribers when they
//! move and the read-ahead subscribers share, the poison that stops the log
//! for good, and the signal that tells background threads the store is
//! closing.

use crate::error::{Error, Result};
use crate::index::Index;
use crate::options::Options;
use crate::progress::Progress;
use crate::subscription::ReadAhead;
use crate::telemetry::{Probes, Recorder};
use crate::types::Durability;
use parking_lot::{Condvar, Mutex, RwLock};
use std::any::Any;
use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

/// State shared by the store handles, readers, subscriptions, the
/// group-commit leader and the background threads.
pub struct StoreState {
    /// The `segments/` directory.
    pub segments_dir: PathBuf,
    /// The options the store was opened with.
    pub options: Options,
    /// Both indexes.
    pub index: RwLock<Index>,
    /// Every position below this is written and indexed.
    pub written: AtomicU64,
    /// Every position below this is durable.
    pub durable: AtomicU64,
    /// Index files that could not be written after a seal.
    pub index_write_failures: AtomicU64,
    /// Segments zero-filled before taking events.
    pub zero_filled_segments: Arc<AtomicU64>,
    /// Wakes subscribers that follow `written` when it moves.
    pub written_progress: Progress,
    /// Wakes subscribers that follow `durable` when it moves.
    pub durable_progress: Progress,
    /// Recent stretches of the log read by one subscription, shared with
    /// the others.
    pub read_ahead: ReadAhead,
    /// What each stream keeps of its history.
    pub retention: super::retention::Retention,
    /// Held by the one scavenge that may run at a time.
    pub scavenging: Mutex<()>,
    /// Held by the job writing a sealed segment's index files for as long
    /// as it holds the segment open. A scavenge takes it before replacing
    /// segments, so that no replaced file stays open in that job and its
    /// space is given back when the scavenge returns.
    pub index_job: Mutex<()>,
    /// Sealed segments, by base position, that a scavenge found holding
    /// nothing dead, and under what.
    pub clean_segments: Mutex<std::collections::HashMap<u64, super::scavenge::CleanStamp>>,
    /// What the background scavenger's last pass did, if it ran one.
    pub last_background_scavenge: Mutex<Option<Result<super::ScavengeReport>>>,
    /// The counters and distributions of [`crate::Store::metrics`].
    pub telemetry: Recorder,
    /// The live subscriptions' and projections' probes.
    pub probes: Probes,
    /// The position after the newest lifecycle event indexed (0: none);
    /// see [`crate::index::Index::lifecycle_mark`].
    pub lifecycle_mark: std::sync::Arc<AtomicU64>,
    poison: Mutex<Option<Error>>,
    /// Whether `poison` holds an error: every subscriber that catches up
    /// asks, and a load answers the usual "no" without the lock.
    poisoned: AtomicBool,
    closing: Mutex<bool>,
    closing_wake: Condvar,
}

impl StoreState {
    /// State over a recovered index whose positions below `next_position`
    /// are all written.
    pub fn new(segments_dir: PathBuf, options: Options, index: Index, next_position: u64) -> Self {
        #[cfg(feature = "metrics")]
        let telemetry = Recorder::publishing(segments_dir.parent().unwrap_or(&segments_dir));
        #[cfg(not(feature = "metrics"))]
        let telemetry = Recorder::default();
        StoreState {
            telemetry,
            probes: Probes::default(),
            lifecycle_mark: index.lifecycle_mark(),
            segments_dir,
            options,
            index: RwLock::new(index),
            written: AtomicU64::new(next_position),
            durable: AtomicU64::new(next_position),
            index_write_failures: AtomicU64::new(0),
            zero_filled_segments: Arc::default(),
            written_progress: Progress::default(),
            durable_progress: Progress::default(),
            retention: super::retention::Retention::default(),
            scavenging: Mutex::new(()),
            index_job: Mutex::new(()),
            last_background_scavenge: Mutex::new(None),
            clean_segments: Mutex::default(),
            read_ahead: ReadAhead::default(),
            poison: Mutex::new(None),
            poisoned: AtomicBool::new(false),
            closing: Mutex::new(false),
            closing_wake: Condvar::new(),
        }
    }

    /// The error every append gets once the log can no longer move.
    pub fn poisoned(&self) -> Option<Error> {
        if !self.poisoned.load(Ordering::Acquire) {
            return None;
        }
        self.poison.lock().clone()
    }

    /// Fails with the poison, if any.
    pub fn check_poison(&self) -> Result<()> {
        match self.poisoned() {
            Some(error) => Err(error),
            None => Ok(()),
        }
    }

    /// Records that the log can no longer move (the first error wins, and
    /// is returned), and wakes every subscriber: once caught up, each gets
    /// the error instead of waiting for events that will never come.
    pub fn fail(&self, error: Error) -> Error {
        let error = self.poison.lock().get_or_insert(error).clone();
        self.poisoned.store(true, Ordering::Release);
        self.written_progress.close();
        self.durable_progress.close();
        error
    }

    /// Poisons the store with a panic caught in one of its threads.
    pub fn fail_with_panic(&self, thread: &str, payload: &(dyn Any + Send)) -> Error {
        let message = payload
            .downcast_ref::<&str>()
            .map(|s| (*s).to_string())
            .or_else(|| payload.downcast_ref::<String>().cloned())
            .unwrap_or_else(|| "a panic without a message".to_string());
        self.fail(Error::StorePoisoned {
            context: format!("panic in {thread}"),
            cause: std::sync::Arc::new(std::io::Error::other(message)),
        })
    }

    /// The end of what readers see: durable events, or every written one
    /// in a store opened with [`Durability::Buffered`].
    pub fn visible_end(&self) -> u64 {
        match self.options.durability {
            Durability::Sync => self.durable.load(Ordering::Acquire),
            Durability::Buffered => self.written.load(Ordering::Acquire),
        }
    }

    /// Tells background threads the store is closing.
    pub fn signal_closing(&self) {
        *self.closing.lock() = true;
        self.closing_wake.notify_all();
    }

    /// Whether the store has begun closing.
    pub fn is_closing(&self) -> bool {
        *self.closing.lock()
    }

    /// Waits `interval` or until the store closes; returns whether it
    /// closed. Paces the background threads.
    pub fn wait_unless_closing(&self, interval: Duration) -> bool {
        let mut closing = self.closing.lock();
        if !*closing {
            self.closing_wake.wait_for(&mut closing, interval);
        }
        *closing
    }

    /// Panics here if the options ask for a panic at `point`, once: how the
    /// tests show that a panic in any of the store's threads is reported.
    #[cfg(feature = "testing")]
    pub fn injected_panic(&self, point: crate::options::PanicPoint) {
        self.options.take_injected_panic(point);
    }

    /// Does nothing in builds without the `testing` feature.
    #[cfg(not(feature = "testing"))]
    #[inline(always)]
    #[expect(
        clippy::unused_self,
        reason = "the signature of the `testing` build, which reads the options"
    )]
    pub fn injected_panic(&self, _point: crate::options::PanicPoint) {}
}
