//! The background scavenger: a thread of the writing store that runs
//! [`Store::scavenge`] every interval the options name, within their I/O
//! budget. It holds the store only during a pass, with a handle that does
//! not keep it open: when the last user's handle is dropped the store
//! closes, and a pass under way stops after the segment it is rewriting. A panic in it poisons the store, like one in any of the
//! store's threads.

use super::state::StoreState;
use super::{ScavengeReport, Store, StoreInner};
use crate::error::{Error, Result};
use crate::options::PanicPoint;
use std::panic::{catch_unwind, AssertUnwindSafe};
use std::sync::{Arc, Weak};
use std::thread::JoinHandle;
use std::time::Duration;

/// Starts the scavenger thread; it runs until the store closes.
pub(super) fn spawn(
    store: Weak<StoreInner>,
    state: Arc<StoreState>,
    interval: Duration,
) -> Result<JoinHandle<()>> {
    std::thread::Builder::new()
        .name("evstore-scavenger".into())
        .spawn(move || {
            let outcome = catch_unwind(AssertUnwindSafe(|| {
                while !state.wait_unless_closing(interval) {
                    let Some(inner) = store.upgrade() else {
                        break;
                    };
                    state.injected_panic(PanicPoint::Scavenger);
                    let pass = Store {
                        _users: None,
                        inner,
                    }
                    .scavenge();
                    *state.last_background_scavenge.lock() = Some(pass);
                }
            }));
            if let Err(payload) = outcome {
                state.fail_with_panic("the background scavenger", payload.as_ref());
            }
        })
        .map_err(|e| Error::io("starting the scavenger thread", e))
}

impl Store {
    /// What the last pass of the background scavenger did (see
    /// [`Options::background_scavenge`](crate::Options::background_scavenge)),
    /// or `None` if none has run.
    ///
    /// ```
    /// use evstore::{Options, Store};
    /// # let dir = tempfile::tempdir().unwrap();
    /// let store = Store::open(dir.path(), Options::default()).unwrap();
    /// assert!(store.last_background_scavenge().is_none());
    /// ```
    #[must_use]
    pub fn last_background_scavenge(&self) -> Option<Result<ScavengeReport>> {
        self.state().last_background_scavenge.lock().clone()
    }
}
