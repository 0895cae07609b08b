//! eventcore's command-state snapshots, kept as records (see
//! [`crate::records`]) in JSON.
//!
//! A command-state snapshot spans several streams, so it cannot be the
//! evstore snapshot of any one of them: each snapshot id has a record
//! stream of its own. A save replaces the stored snapshot only if it
//! covers every stream version the stored one does (eventcore's rule, so
//! that a retry working from older state never sets it back); the
//! comparison and the write happen under one lock.

use crate::error::Error;
use crate::records;
use crate::store_registry::StoreShared;
use crate::stream_names::command_state_stream;
use eventcore_types::{CommandStateSnapshot, CommandStateSnapshotId};
use evstore::Store;

/// The snapshot saved under `id`, if there is one that decodes.
///
/// One that does not decode (written by a version of eventcore with
/// another layout, say) is treated as absent: eventcore then rebuilds the
/// state from the streams and saves a new one in its place.
pub(crate) fn load(
    store: &Store,
    id: &CommandStateSnapshotId,
) -> Result<Option<CommandStateSnapshot>, Error> {
    let Some(bytes) = records::load(store, &command_state_stream(id))? else {
        return Ok(None);
    };
    match serde_json::from_slice(&bytes) {
        Ok(snapshot) => Ok(Some(snapshot)),
        Err(error) => {
            tracing::warn!(
                snapshot = id.as_ref(),
                %error,
                "command-state snapshot does not decode; rebuilding from the streams"
            );
            Ok(None)
        }
    }
}

/// Saves `snapshot` under `id` unless the stored one is newer for some
/// stream. Blocks until it is durable: call it on a blocking thread.
pub(crate) fn save(
    store: &Store,
    shared: &StoreShared,
    id: &CommandStateSnapshotId,
    snapshot: &CommandStateSnapshot,
) -> Result<(), Error> {
    let stream = command_state_stream(id);
    let _compare_and_write_at_once = shared.lock_record(&stream);
    if let Some(stored) = load(store, id)? {
        if !snapshot.covers(&stored) {
            return Ok(());
        }
    }
    let json = serde_json::to_vec(snapshot).map_err(|source| Error::SnapshotEncoding {
        snapshot: id.as_ref().to_string(),
        source,
    })?;
    records::save(store, &stream, &json)?;
    Ok(())
}
