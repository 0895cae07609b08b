//! Store calls that sync files, run on tokio's blocking threads.
//!
//! evstore's appends have async forms that never block the caller, but
//! saving a checkpoint or a snapshot writes, syncs and renames a file in
//! the calling thread. Those calls go to the blocking pool so executor
//! threads keep running other tasks meanwhile.

use crate::error::Error;

/// Runs `work` on a blocking thread and waits for it without blocking.
pub(crate) async fn off_executor<T, F>(operation: &'static str, work: F) -> Result<T, Error>
where
    T: Send + 'static,
    F: FnOnce() -> Result<T, Error> + Send + 'static,
{
    let runtime =
        tokio::runtime::Handle::try_current().map_err(|_| Error::NoRuntime { operation })?;
    runtime
        .spawn_blocking(work)
        .await
        .map_err(|join| Error::TaskFailed {
            operation,
            reason: join.to_string(),
        })?
}
