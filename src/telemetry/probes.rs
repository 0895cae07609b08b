//! What each live subscription and projection reports of itself: a probe
//! it updates with relaxed atomic stores as it goes (no lock, and no
//! counter another subscriber writes), registered with the store so a
//! metrics snapshot can list them.
//! A probe leaves the list when its owner drops it.

use parking_lot::Mutex;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Weak};

/// What a probe watches.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ProbeKind {
    /// A subscription to the global log or a stream: the name of the
    /// stream, or `$all`.
    Subscription(String),
    /// A projection, by name.
    Projection(String),
}

/// The figures one subscription or projection keeps up to date.
#[derive(Debug)]
pub struct Probe {
    /// Its number among the store's probes, never reused.
    pub id: u64,
    /// What it is.
    pub kind: ProbeKind,
    /// Whether it reads events once written rather than once durable.
    pub follows_written: AtomicBool,
    /// The global position below which it has seen everything.
    pub position: AtomicU64,
    /// Events handed out (a subscription) or handled (a projection).
    pub events: AtomicU64,
    /// Times it woke up after waiting for the log to move.
    pub wakeups: AtomicU64,
    /// Handler calls that failed and were retried (projections).
    pub retries: AtomicU64,
    /// Handler calls that failed (projections).
    pub failures: AtomicU64,
    /// It stopped for good (a projection that ended).
    pub finished: AtomicBool,
}

impl Probe {
    /// Notes that everything below `position` was seen.
    pub fn seen_below(&self, position: u64) {
        self.position.store(position, Ordering::Relaxed);
    }

    /// Adds one to `counter`.
    pub fn bump(counter: &AtomicU64) {
        counter.fetch_add(1, Ordering::Relaxed);
    }
}

/// The live probes of one store.
#[derive(Debug, Default)]
pub struct Probes {
    live: Mutex<Vec<Weak<Probe>>>,
    next_id: AtomicU64,
}

impl Probes {
    /// Registers a probe for `kind`, starting at `position`.
    pub fn register(&self, kind: ProbeKind, position: u64, follows_written: bool) -> Arc<Probe> {
        let probe = Arc::new(Probe {
            id: self.next_id.fetch_add(1, Ordering::Relaxed),
            kind,
            follows_written: AtomicBool::new(follows_written),
            position: AtomicU64::new(position),
            events: AtomicU64::new(0),
            wakeups: AtomicU64::new(0),
            retries: AtomicU64::new(0),
            failures: AtomicU64::new(0),
            finished: AtomicBool::new(false),
        });
        let mut live = self.live.lock();
        // Dropped probes go when new ones come, so the list stays as long
        // as the live ones.
        live.retain(|p| p.strong_count() > 0);
        live.push(Arc::downgrade(&probe));
        probe
    }

    /// The probes still alive, oldest first.
    pub fn live(&self) -> Vec<Arc<Probe>> {
        let mut live = self.live.lock();
        live.retain(|p| p.strong_count() > 0);
        live.iter().filter_map(Weak::upgrade).collect()
    }
}
