//! Projections: a handler run over the store's log on a thread of its own,
//! resuming from its checkpoint.

use super::Store;
use crate::error::Result;
use crate::projection::{
    self, HandlerError, ProjectionHandle, ProjectionHost, ProjectionOptions, ProjectionStart,
};
use crate::subscription::EventLog;
use crate::types::RecordedEvent;
use std::sync::Arc;

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
    ///
    /// # Errors
    /// [`crate::Error::ReadOnly`] on a read-only store; [`crate::Error::InvalidCheckpointName`]
    /// for a bad `name`; the error reading its checkpoint; [`crate::Error::Io`] if
    /// the thread cannot be started.
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
        projection::start(Arc::new(self.clone()), name, options, from, handler)
    }
}

impl ProjectionHost for Store {
    fn event_log(&self) -> Arc<dyn EventLog> {
        Store::event_log(self)
    }

    fn save_checkpoint(&self, name: &str, position: u64) -> Result<()> {
        Store::save_checkpoint(self, name, position)
    }
}
