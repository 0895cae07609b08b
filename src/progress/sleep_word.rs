//! A word that threads sleep on until it changes: a futex on Linux, a mutex
//! and condition variable elsewhere.
//!
//! A sleeper reads the word, checks its own condition, and sleeps only while
//! the word still holds what it read; a waker changes the word, then wakes.
//! Whatever the timing, a sleeper either sees the change or is woken by it.
//! Sleepers must treat every return as a reason to look again, not as a
//! promise that anything changed.
//!
//! Sleepers are counted, so that a wake-up with nobody asleep costs no
//! system call. A sleeper counts itself before the word is compared (by the
//! kernel, or under the fallback's lock) and a waker changes the word before
//! it reads the count, both `SeqCst`: either the waker sees the sleeper, or
//! the comparison sees the change and the sleeper does not sleep.

use std::sync::atomic::{AtomicU32, AtomicUsize, Ordering};
use std::time::Instant;

/// The word and what its sleepers wait in.
#[derive(Debug, Default)]
pub struct SleepWord {
    word: AtomicU32,
    /// Threads in [`SleepWord::sleep`].
    sleepers: AtomicUsize,
    #[cfg(not(any(target_os = "linux", target_os = "android")))]
    fallback: fallback::Sleepers,
}

impl SleepWord {
    /// The current value, to pass to [`SleepWord::sleep`] after checking
    /// whatever the sleeper waits for.
    pub fn load(&self) -> u32 {
        self.word.load(Ordering::SeqCst)
    }

    /// Changes the word; sleepers that read the old value no longer sleep.
    pub fn bump(&self) {
        self.word.fetch_add(1, Ordering::SeqCst);
    }

    /// Sleeps while the word is `seen`, until woken or `deadline` passes;
    /// may also return early for no reason.
    pub fn sleep(&self, seen: u32, deadline: Option<Instant>) {
        self.sleepers.fetch_add(1, Ordering::SeqCst);
        #[cfg(any(target_os = "linux", target_os = "android"))]
        futex::sleep(&self.word, seen, deadline);
        #[cfg(not(any(target_os = "linux", target_os = "android")))]
        self.fallback.sleep(&self.word, seen, deadline);
        self.sleepers.fetch_sub(1, Ordering::SeqCst);
    }

    /// Whether a thread may be asleep on the word (or about to compare it):
    /// once the word was changed, none that is not counted here can sleep
    /// through the change.
    pub fn has_sleepers(&self) -> bool {
        self.sleepers.load(Ordering::SeqCst) > 0
    }

    /// Wakes one sleeper, if any sleeps.
    pub fn wake_one(&self) {
        if !self.has_sleepers() {
            return;
        }
        #[cfg(any(target_os = "linux", target_os = "android"))]
        futex::wake(&self.word, 1);
        // The fallback cannot pick one sleeper cheaply; waking them all is
        // correct, as every return only means "look again".
        #[cfg(not(any(target_os = "linux", target_os = "android")))]
        self.fallback.wake_all();
    }

    /// Wakes every sleeper.
    pub fn wake_all(&self) {
        if !self.has_sleepers() {
            return;
        }
        #[cfg(any(target_os = "linux", target_os = "android"))]
        futex::wake(&self.word, futex::ALL);
        #[cfg(not(any(target_os = "linux", target_os = "android")))]
        self.fallback.wake_all();
    }
}

#[cfg(any(target_os = "linux", target_os = "android"))]
mod futex {
    use rustix::thread::futex::{self, Flags, Nsecs, Secs, Timespec};
    use std::sync::atomic::AtomicU32;
    use std::time::Instant;

    pub fn sleep(word: &AtomicU32, seen: u32, deadline: Option<Instant>) {
        let timeout = match deadline {
            None => None,
            Some(deadline) => {
                let left = deadline.saturating_duration_since(Instant::now());
                if left.is_zero() {
                    return;
                }
                #[allow(
                    clippy::unnecessary_fallible_conversions,
                    reason = "`Nsecs` is 32 bits wide on some targets; below 10^9, the value fits"
                )]
                let nanos = Nsecs::try_from(left.subsec_nanos()).unwrap_or(0);
                Some(Timespec {
                    tv_sec: Secs::try_from(left.as_secs()).unwrap_or(Secs::MAX),
                    tv_nsec: nanos,
                })
            }
        };
        // Every outcome (woken, the word already changed, the time is up,
        // a signal) sends the sleeper back to look.
        let _ = futex::wait(word, Flags::PRIVATE, seen, timeout.as_ref());
    }

    /// The count that wakes every sleeper: the kernel reads it as a signed
    /// number, so `u32::MAX` would be -1 and wake one.
    pub const ALL: u32 = i32::MAX.unsigned_abs();

    pub fn wake(word: &AtomicU32, count: u32) {
        // Fails only for an invalid address, which a reference is not.
        let _ = futex::wake(word, Flags::PRIVATE, count);
    }
}

#[cfg(not(any(target_os = "linux", target_os = "android")))]
mod fallback {
    use parking_lot::{Condvar, Mutex};
    use std::sync::atomic::{AtomicU32, Ordering};
    use std::time::Instant;

    #[derive(Debug, Default)]
    pub struct Sleepers {
        lock: Mutex<()>,
        changed: Condvar,
    }

    impl Sleepers {
        pub fn sleep(&self, word: &AtomicU32, seen: u32, deadline: Option<Instant>) {
            let mut guard = self.lock.lock();
            // Checked under the lock the waker takes before notifying, so a
            // change cannot slip in between the check and the wait.
            if word.load(Ordering::SeqCst) != seen {
                return;
            }
            match deadline {
                Some(deadline) => {
                    self.changed.wait_until(&mut guard, deadline);
                }
                None => self.changed.wait(&mut guard),
            }
        }

        pub fn wake_all(&self) {
            drop(self.lock.lock());
            self.changed.notify_all();
        }
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;
    use std::sync::Arc;
    use std::time::Duration;

    #[test]
    fn a_sleeper_returns_when_the_word_changed_before_it_slept() {
        let word = SleepWord::default();
        let seen = word.load();
        word.bump();
        // Would sleep for the whole deadline if the change went unnoticed.
        let started = Instant::now();
        word.sleep(seen, Some(started + Duration::from_secs(60)));
        assert!(started.elapsed() < Duration::from_secs(30));
    }

    #[test]
    fn a_sleeper_returns_at_its_deadline() {
        let word = SleepWord::default();
        let started = Instant::now();
        word.sleep(word.load(), Some(started + Duration::from_millis(20)));
        assert!(started.elapsed() >= Duration::from_millis(20));
    }

    #[test]
    fn wake_all_wakes_every_sleeper() {
        let word = Arc::new(SleepWord::default());
        let seen = word.load();
        let sleepers: Vec<_> = (0..4)
            .map(|_| {
                let word = Arc::clone(&word);
                std::thread::spawn(move || {
                    while word.load() == seen {
                        word.sleep(seen, None);
                    }
                })
            })
            .collect();
        // Long enough for all of them to be asleep, not merely about to be.
        std::thread::sleep(Duration::from_millis(50));
        word.bump();
        word.wake_all();
        for sleeper in sleepers {
            sleeper.join().unwrap();
        }
    }
}
