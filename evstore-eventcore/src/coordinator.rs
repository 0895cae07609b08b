//! eventcore's `ProjectorCoordinator`: at most one running instance of
//! each projector.
//!
//! evstore is embedded: a store directory is locked by the one process
//! that opens it, so every instance of a projector over it runs in that
//! process, and coordinating them in the process is all the coordination
//! there is. Leadership is per projector name and per store directory
//! (adapters made separately from clones of one store exclude each other
//! too), and lasts until the [`LeadershipGuard`] is dropped, including
//! when its task panics or is cancelled.

use crate::error::Error;
use crate::event_store::EvstoreEventStore;
use crate::store_registry::{lock_ignoring_poison, StoreShared};
use eventcore_types::ProjectorCoordinator;
use std::sync::Arc;

/// Leadership of one projector over one store, held until dropped.
#[derive(Debug)]
#[must_use = "leadership is released as soon as the guard is dropped"]
pub struct LeadershipGuard {
    shared: Arc<StoreShared>,
    projector: String,
}

impl LeadershipGuard {
    /// The projector led.
    #[must_use]
    pub fn projector(&self) -> &str {
        &self.projector
    }
}

impl Drop for LeadershipGuard {
    fn drop(&mut self) {
        lock_ignoring_poison(&self.shared.leaders).remove(&self.projector);
    }
}

impl ProjectorCoordinator for EvstoreEventStore {
    type Error = Error;
    type Guard = LeadershipGuard;

    /// Leadership of `subscription_name`, or [`Error::LeadershipHeld`] at
    /// once if another instance has it: it never waits.
    async fn try_acquire(&self, subscription_name: &str) -> Result<LeadershipGuard, Error> {
        let shared = self.shared();
        if !lock_ignoring_poison(&shared.leaders).insert(subscription_name.to_string()) {
            return Err(Error::LeadershipHeld {
                projector: subscription_name.to_string(),
            });
        }
        Ok(LeadershipGuard {
            shared: Arc::clone(shared),
            projector: subscription_name.to_string(),
        })
    }
}
