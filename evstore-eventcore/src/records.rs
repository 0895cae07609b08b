//! Records: values the adapter keeps that belong to no application stream
//! (a command-state snapshot, a checkpoint holding another back end's
//! position), each saved as the evstore snapshot of a stream of its own.
//!
//! evstore's snapshot files are checksummed and replaced atomically (a
//! crash leaves the previous value or the new one), which is what a record
//! needs. A snapshot must be taken at an event of its stream, so a
//! record's stream gets one event, an anchor, the first time the record
//! is saved; every save after that replaces the snapshot at that event and
//! writes nothing to the log. The record streams' names start with `[`
//! (see [`crate::stream_names`]).
//!
//! Saving syncs files: call [`save`] on a blocking thread.

use evstore::{Bytes, EventData, ExpectedVersion, Store};

/// The type of the one event of a record's stream.
const ANCHOR_EVENT_TYPE: &str = "RecordAnchor";

/// The version of the anchor, which every save of the record is taken at.
const ANCHOR_VERSION: u64 = 0;

/// Saves `value` as the record of `stream`, blocking until it is durable.
pub(crate) fn save(store: &Store, stream: &str, value: &[u8]) -> evstore::Result<()> {
    if store.stream_version(stream)?.is_none() {
        let anchor = EventData::new(ANCHOR_EVENT_TYPE, Bytes::new());
        match store.append(stream, ExpectedVersion::NoStream, &[anchor]) {
            // Someone else anchored it first: their anchor serves as well.
            Ok(_) | Err(evstore::Error::WrongExpectedVersion { .. }) => {}
            Err(error) => return Err(error),
        }
    }
    store.save_snapshot(stream, ANCHOR_VERSION, value)
}

/// The record of `stream`, if one was saved.
pub(crate) fn load(store: &Store, stream: &str) -> evstore::Result<Option<Bytes>> {
    Ok(store.load_snapshot(stream)?.map(|snapshot| snapshot.data))
}
