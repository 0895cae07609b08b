//! Tells subscribers that the log moved: new events were written or became
//! durable, or the store closed.
//!
//! The writer pays one atomic load per publication when nobody listens, and
//! a short lock plus wake-ups otherwise. Listeners register before checking
//! the watermark; the writer publishes the watermark before checking for
//! listeners; both sides order these with `SeqCst`, so a listener either
//! sees the new watermark or is woken for it.

use parking_lot::{Condvar, Mutex};
use std::sync::atomic::{fence, AtomicBool, AtomicUsize, Ordering};
use std::task::Waker;
use std::time::Instant;

/// The notifier; one per store.
#[derive(Debug, Default)]
pub struct Progress {
    /// Blocking waiters.
    listeners: AtomicUsize,
    /// Wakers registered (the length of `wakers`).
    registered: AtomicUsize,
    closed: AtomicBool,
    wakers: Mutex<Vec<Waker>>,
    changed: Condvar,
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
        if self.listeners.load(Ordering::SeqCst) == 0 && self.registered.load(Ordering::SeqCst) == 0
        {
            return;
        }
        let wakers = {
            let mut wakers = self.wakers.lock();
            self.registered.store(0, Ordering::SeqCst);
            std::mem::take(&mut *wakers)
        };
        self.changed.notify_all();
        for waker in wakers {
            waker.wake();
        }
    }

    /// Called once the store takes no more appends.
    pub fn close(&self) {
        self.closed.store(true, Ordering::SeqCst);
        let wakers = std::mem::take(&mut *self.wakers.lock());
        self.changed.notify_all();
        for waker in wakers {
            waker.wake();
        }
    }

    /// Wakes every blocking waiter so it re-checks its condition (which
    /// may include a request to stop).
    pub fn interrupt(&self) {
        let _guard = self.wakers.lock();
        self.changed.notify_all();
    }

    /// Whether the store was closed.
    pub fn is_closed(&self) -> bool {
        self.closed.load(Ordering::SeqCst)
    }

    /// Blocks until `ready` holds, the store closes, or `deadline` passes;
    /// returns whether `ready` held.
    pub fn wait_until(&self, deadline: Option<Instant>, ready: impl Fn() -> bool) -> bool {
        self.listeners.fetch_add(1, Ordering::SeqCst);
        let _counted = Listening(&self.listeners);
        let mut guard = self.wakers.lock();
        loop {
            if ready() {
                return true;
            }
            if self.is_closed() {
                return false;
            }
            match deadline {
                Some(deadline) => {
                    if self.changed.wait_until(&mut guard, deadline).timed_out() {
                        return ready();
                    }
                }
                None => self.changed.wait(&mut guard),
            }
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
