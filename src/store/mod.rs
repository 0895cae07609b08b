//! The public entry point: the store handle. Opening is in [`open`],
//! appends in [`append`], reads in [`read`], what the store holds in
//! [`streams`], snapshots in [`snapshots`]; the state they share is in
//! [`state`], and the write path runs through [`group_commit`] and
//! [`writer`].

mod active_roll;
mod append;
#[cfg(feature = "async")]
mod append_async;
mod background_scavenge;
mod checkpoints;
mod erasure;
mod flusher;
mod follower;
mod group_commit;
mod lifecycle;
mod metrics;
mod open;
mod projections;
mod read;
mod read_query;
mod removal;
mod reply;
mod retention;
mod scavenge;
mod snapshots;
pub(crate) mod state;
mod streams;
mod subscribe;
mod visit_stream;
mod writer;

use crate::checkpoint::Checkpoints;
use crate::error::{Error, Result};
use crate::index::recovery::RecoveryStats;
use crate::key_store::KeyStore;
use crate::options::Options;
use crate::snapshot::Snapshots;
use crate::storage::LockGuard;
use follower::Follower;
use group_commit::GroupCommit;
use parking_lot::Mutex;
use state::StoreState;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::thread::JoinHandle;

pub use crate::layout::{LOCK_FILE, SEGMENTS_DIR};
pub use lifecycle::MetadataRead;
pub use read_query::{QueryRead, QueryVisit};
pub use scavenge::ScavengeReport;
pub use streams::{LogInfo, SegmentInfo, StreamInfo, Streams};

/// An open event store. Cheap to clone; every clone is the same store, and
/// it is `Send + Sync`, so share it between threads freely.
///
/// ```
/// use evstore::{Direction, EventData, ExpectedVersion, Options, Store};
/// # fn main() -> evstore::Result<()> {
/// let dir = tempfile::tempdir().unwrap();
/// let store = Store::open(dir.path(), Options::default())?;
/// let written = store.append(
///     "order-42",
///     ExpectedVersion::NoStream,
///     &[EventData::new("OrderPlaced", &b"{\"total\":42}"[..])],
/// )?;
/// assert_eq!(written.last_version, 0);
/// let events = store.read_stream("order-42", 0, Direction::Forward, 100)?;
/// assert_eq!(&events[0].event_type[..], "OrderPlaced");
/// # Ok(()) }
/// ```
#[derive(Clone)]
pub struct Store {
    /// Shared by the clones handed to users; `None` in the store's own
    /// threads' handles. Declared first, so it drops while `inner` lives.
    _users: Option<Arc<UserHandles>>,
    inner: Arc<StoreInner>,
}

/// Closes the store when the last handle a user holds is dropped, even if
/// one of the store's own threads holds one for a moment longer: the
/// directory lock is then released as soon as that thread lets go.
struct UserHandles(std::sync::Weak<StoreInner>);

impl Drop for UserHandles {
    fn drop(&mut self) {
        if let Some(inner) = self.0.upgrade() {
            inner.close();
        }
    }
}

impl Store {
    /// A user's handle on a newly opened store.
    fn for_users(inner: StoreInner) -> Store {
        let inner = Arc::new(inner);
        Store {
            _users: Some(Arc::new(UserHandles(Arc::downgrade(&inner)))),
            inner,
        }
    }
}

impl std::fmt::Debug for Store {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Store")
            .field("dir", &self.inner.dir)
            .finish_non_exhaustive()
    }
}

struct StoreInner {
    dir: PathBuf,
    state: Arc<StoreState>,
    /// The write path; `None` in a read-only store.
    group_commit: Option<Arc<GroupCommit>>,
    /// The flusher, or a read-only store's follower thread.
    background: Mutex<Option<JoinHandle<()>>>,
    /// The background scavenger, if the options ask for one.
    scavenger: Mutex<Option<JoinHandle<()>>>,
    recovery: RecoveryStats,
    snapshots: Snapshots,
    checkpoints: Checkpoints,
    /// The keys sealed payloads are opened with.
    keys: KeyStore,
    follower: Option<Arc<Mutex<Follower>>>,
    _lock: Option<Box<dyn LockGuard>>,
}

impl StoreInner {
    /// Waits for queued appends, syncs, stops the background thread and
    /// wakes every subscriber. Idempotent.
    fn close(&self) {
        if let Some(group_commit) = &self.group_commit {
            group_commit.close();
        }
        self.state.signal_closing();
        if let Some(handle) = self.background.lock().take() {
            // The thread catches its own panics and poisons the store.
            let _ = handle.join();
        }
        if let Some(handle) = self.scavenger.lock().take() {
            // The scavenger may hold the last handle, and close the store
            // as it lets go: it is not waited for by itself.
            if handle.thread().id() != std::thread::current().id() {
                let _ = handle.join();
            }
        }
        let repairs = self.state.index.read().repairs();
        repairs.finish();
        self.state.written_progress.close();
        self.state.durable_progress.close();
    }
}

impl Drop for StoreInner {
    fn drop(&mut self) {
        self.close();
    }
}

impl Store {
    /// Whether the store was opened with [`Store::open_read_only`].
    #[must_use]
    pub fn is_read_only(&self) -> bool {
        self.inner.follower.is_some()
    }

    pub(crate) fn refuse_if_read_only(&self, operation: &'static str) -> Result<()> {
        if self.is_read_only() {
            return Err(Error::ReadOnly { operation });
        }
        Ok(())
    }

    /// The store directory.
    #[must_use]
    pub fn path(&self) -> &Path {
        &self.inner.dir
    }

    /// What recovery found and did when this store was opened.
    #[must_use]
    pub fn recovery_stats(&self) -> RecoveryStats {
        self.inner.recovery
    }

    pub(crate) fn checkpoints(&self) -> &Checkpoints {
        &self.inner.checkpoints
    }

    pub(crate) fn state(&self) -> &StoreState {
        &self.inner.state
    }

    /// The write path, or [`Error::ReadOnly`] for `operation`.
    fn group_commit(&self, operation: &'static str) -> Result<&GroupCommit> {
        self.inner
            .group_commit
            .as_deref()
            .ok_or(Error::ReadOnly { operation })
    }

    pub(crate) fn options(&self) -> &Options {
        &self.inner.state.options
    }

    /// Flushes and stops the writer. Other clones of this store can still
    /// read, but appends fail with [`Error::Closed`]; the directory lock is
    /// released when the last clone is dropped.
    ///
    /// # Errors
    ///
    /// The error of the final flush: the one that made the store refuse
    /// writes, if any. The store is closed either way.
    pub fn close(self) -> Result<()> {
        let flushed = match self.flush() {
            Err(Error::Closed | Error::ReadOnly { .. }) => Ok(()),
            other => other,
        };
        self.inner.close();
        flushed
    }
}
