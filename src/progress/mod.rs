//! Tells subscribers that the log moved: new events were written or became
//! durable, or the store closed.
//!
//! The writer pays two atomic loads per publication when nobody listens.
//! Otherwise it changes an epoch that blocking listeners sleep on and, if
//! any of them sleeps, wakes one, which wakes the others as soon as it
//! runs: the writer makes one wake-up whatever the number of listeners, and
//! no lock is handed from waiter to waiter, so the listeners wake together
//! instead of one after another. Listeners register before checking the watermark; the writer
//! publishes the watermark before checking for listeners; both sides order
//! these with `SeqCst`, so a listener either sees the new watermark or is
//! woken for it. Async listeners register a `Waker`, which the writer wakes.

mod sleep_word;

use parking_lot::Mutex;
use sleep_word::SleepWord;
use std::sync::atomic::{fence, AtomicBool, AtomicUsize, Ordering};
use std::task::Waker;
use std::time::Instant;

/// Turns a listener among others gives the other threads before it
/// sleeps (see [`Progress::wait_until`]).
const TURNS_BEFORE_SLEEP: u32 = 4;

/// The notifier; one per store.
#[derive(Debug, Default)]
pub struct Progress {
    /// Blocking listeners.
    listeners: AtomicUsize,
    /// Wakers registered (the length of `wakers`).
    registered: AtomicUsize,
    closed: AtomicBool,
    /// Changed at every wake-up; blocking listeners sleep on it.
    epoch: SleepWord,
    /// Set when the writer woke one sleeper to wake the others; cleared by
    /// the first listener that comes back from sleep, which then does.
    relay: AtomicBool,
    wakers: Mutex<Vec<Waker>>,
}

/// Keeps a blocking listener counted while it lives.
struct Listening<'a>(&'a AtomicUsize);

impl Drop for Listening<'_> {
    fn drop(&mut self) {
        self.0.fetch_sub(1, Ordering::SeqCst);
    }
}

impl Progress {
    /// Called after a watermark moved.
    pub fn advanced(&self) {
        fence(Ordering::SeqCst);
        if self.listeners.load(Ordering::SeqCst) > 0 {
            self.epoch.bump();
            // Listeners that are not asleep see the new epoch when they
            // look: only sleepers need a wake-up.
            if self.epoch.has_sleepers() {
                // Set before the wake-up, so whoever it wakes sees it.
                self.relay.store(true, Ordering::SeqCst);
                self.epoch.wake_one();
            }
        }
        if self.registered.load(Ordering::SeqCst) > 0 {
            self.wake_registered();
        }
    }

    /// Called once the store takes no more appends.
    pub fn close(&self) {
        self.closed.store(true, Ordering::SeqCst);
        self.epoch.bump();
        self.epoch.wake_all();
        self.wake_registered();
    }

    /// Wakes every blocking waiter so it re-checks its condition (which
    /// may include a request to stop).
    pub fn interrupt(&self) {
        self.epoch.bump();
        self.epoch.wake_all();
    }

    /// Whether the store was closed.
    pub fn is_closed(&self) -> bool {
        self.closed.load(Ordering::SeqCst)
    }

    fn wake_registered(&self) {
        let wakers = {
            let mut wakers = self.wakers.lock();
            self.registered.store(0, Ordering::SeqCst);
            std::mem::take(&mut *wakers)
        };
        for waker in wakers {
            waker.wake();
        }
    }

    /// Blocks until `ready` holds, the store closes, or `deadline` passes;
    /// returns whether `ready` held.
    pub fn wait_until(&self, deadline: Option<Instant>, ready: impl Fn() -> bool) -> bool {
        self.listeners.fetch_add(1, Ordering::SeqCst);
        let _counted = Listening(&self.listeners);
        // Pairs with the writer's fence: either it sees this listener, or
        // the checks below see its watermark.
        fence(Ordering::SeqCst);
        // A listener among others gives the other threads a few turns
        // before it sleeps: under a steady stream of commits the next one
        // often lands meanwhile, and a listener that is still awake needs
        // no wake-up, which costs the writer and the scheduler more than
        // the turns do. A lone listener sleeps at once: its turns only
        // delay its sleep, and it is woken directly by the writer.
        let mut turns = if self.listeners.load(Ordering::Relaxed) > 1 {
            TURNS_BEFORE_SLEEP
        } else {
            0
        };
        loop {
            let seen = self.epoch.load();
            if ready() {
                return true;
            }
            if self.is_closed() {
                return false;
            }
            if deadline.is_some_and(|d| Instant::now() >= d) {
                return ready();
            }
            if turns > 0 {
                turns -= 1;
                std::thread::yield_now();
                continue;
            }
            self.epoch.sleep(seen, deadline);
            self.pass_on();
        }
    }

    /// Wakes the other sleepers if the writer left that to the one it woke.
    /// Every listener does this first on coming back from sleep, for any
    /// reason, so a relay is never left undone while someone sleeps.
    fn pass_on(&self) {
        if self.relay.load(Ordering::SeqCst) && self.relay.swap(false, Ordering::SeqCst) {
            self.epoch.wake_all();
        }
    }

    /// Registers `waker` to be woken at the next move, unless `ready`
    /// already holds (checked after registering); returns whether it held.
    #[cfg_attr(not(feature = "async"), allow(dead_code))]
    pub fn register(&self, waker: &Waker, ready: impl Fn() -> bool) -> bool {
        {
            let mut wakers = self.wakers.lock();
            if !wakers.iter().any(|w| w.will_wake(waker)) {
                wakers.push(waker.clone());
            }
            self.registered.store(wakers.len(), Ordering::SeqCst);
        }
        ready() || self.is_closed()
    }
}
