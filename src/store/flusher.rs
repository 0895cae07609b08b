//! The background flusher: in a store whose appends are acknowledged before
//! they are durable, makes what was written durable every flush interval.
//! A panic in it poisons the store, so background durability never ends
//! silently.

use super::group_commit::GroupCommit;
use super::state::StoreState;
use crate::error::{Error, Result};
use crate::options::PanicPoint;
use std::panic::{catch_unwind, AssertUnwindSafe};
use std::sync::Arc;
use std::thread::JoinHandle;

/// Starts the flusher thread; it runs until the store closes.
pub fn spawn(state: Arc<StoreState>, group_commit: Arc<GroupCommit>) -> Result<JoinHandle<()>> {
    std::thread::Builder::new()
        .name("evstore-flusher".into())
        .spawn(move || {
            let interval = state.options.flush_interval;
            let outcome = catch_unwind(AssertUnwindSafe(|| {
                while !state.wait_unless_closing(interval) {
                    state.injected_panic(PanicPoint::Flusher);
                    group_commit.background_flush();
                }
            }));
            if let Err(payload) = outcome {
                state.fail_with_panic("the background flusher", payload.as_ref());
            }
        })
        .map_err(|e| Error::io("starting the flusher thread", e))
}
