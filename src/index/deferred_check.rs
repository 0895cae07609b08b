//! Checking index files off the index lock.
//!
//! A sealed segment's index file is checked against its checksum the first
//! time it is used and, when damaged, rebuilt from its segment. Both read
//! files, and a rebuild reads a whole segment: under the index lock they
//! would stall every appender and reader for as long. A lookup run through
//! [`read_checked`] never does either under the lock: it stops at the first
//! index file not checked yet, the lock is released, that file is checked,
//! and the lookup runs again. Each round checks one file for good (only a
//! success is kept), so a lookup runs at most once more than there are
//! unchecked files it needs.
//!
//! Lookups not run through [`read_checked`] still check in place, under the
//! lock: slower when a file is first used, never wrong.

use super::{Index, Persisted};
use crate::error::{Error, Result};
use parking_lot::RwLock;
use std::cell::{Cell, RefCell};
use std::sync::Arc;

thread_local! {
    /// Whether lookups on this thread defer index file checks.
    static DEFERRING: Cell<bool> = const { Cell::new(false) };
    /// The index file a deferred lookup stopped at.
    static WANTED: RefCell<Option<Arc<Persisted>>> = const { RefCell::new(None) };
}

/// Runs `lookup` under the read lock of `index`, checking any index file it
/// needs with the lock released.
///
/// # Errors
///
/// The error of `lookup`, or of checking an index file it needed.
pub fn read_checked<T>(
    index: &RwLock<Index>,
    mut lookup: impl FnMut(&Index) -> Result<T>,
) -> Result<T> {
    loop {
        let outcome = {
            let guard = index.read();
            let _deferring = Deferring::start();
            lookup(&guard)
        };
        match WANTED.with(RefCell::take) {
            // The lookup's outcome, an error or not, came from an index it
            // could not see whole: check the file and look again.
            Some(persisted) => persisted.check()?,
            None => return outcome,
        }
    }
}

/// Whether a lookup on this thread defers the check of `persisted`: if so,
/// it is recorded for [`read_checked`], and the error returned ends the
/// lookup (its outcome is thrown away).
pub(super) fn defer(persisted: &Arc<Persisted>) -> Option<Error> {
    if !DEFERRING.with(Cell::get) {
        return None;
    }
    WANTED.with(|wanted| *wanted.borrow_mut() = Some(Arc::clone(persisted)));
    Some(Error::io(
        "looking up a segment's index",
        std::io::Error::other("its index file is checked off the index lock first"),
    ))
}

/// Defers checks on this thread while it lives, even if the lookup panics.
struct Deferring {
    was: bool,
}

impl Deferring {
    fn start() -> Self {
        WANTED.with(|wanted| wanted.borrow_mut().take());
        Deferring {
            was: DEFERRING.with(|d| d.replace(true)),
        }
    }
}

impl Drop for Deferring {
    fn drop(&mut self) {
        DEFERRING.with(|d| d.set(self.was));
    }
}
