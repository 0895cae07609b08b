//! Which evstore stream holds what.
//!
//! An eventcore stream is the evstore stream of the same name, so evstore's
//! own tools show it as the application named it. Two kinds of name need
//! more care:
//!
//! - evstore reserves names starting with `$` for itself, and eventcore
//!   allows them; such an id is stored with a `[` in front (`$orders`
//!   becomes `[$orders`).
//! - the adapter keeps records of its own (see [`crate::records`]) in
//!   streams starting with `[`. eventcore ids never contain `[` (it is a
//!   glob metacharacter, refused by `StreamId`), so no application stream
//!   can collide with them, and reads of the whole log skip them.

use eventcore_types::{CommandStateSnapshotId, StreamId};
use std::borrow::Cow;

/// What starts every stream name the adapter owns or escapes.
const ADAPTER_PREFIX: &str = "[";
/// What starts the names evstore keeps for itself.
const STORE_PREFIX: &str = "$";

/// The evstore stream of eventcore stream `id`.
pub(crate) fn store_stream_name(id: &StreamId) -> Cow<'_, str> {
    let id: &str = id.as_ref();
    if id.starts_with(STORE_PREFIX) {
        Cow::Owned(format!("{ADAPTER_PREFIX}{id}"))
    } else {
        Cow::Borrowed(id)
    }
}

/// The eventcore stream id an evstore stream holds, or `None` for a stream
/// of the store's or of the adapter's own.
pub(crate) fn eventcore_stream_id(store_stream: &str) -> Option<&str> {
    if store_stream.starts_with(STORE_PREFIX) {
        return None;
    }
    match store_stream.strip_prefix(ADAPTER_PREFIX) {
        Some(escaped) => escaped.starts_with(STORE_PREFIX).then_some(escaped),
        None => Some(store_stream),
    }
}

/// The stream whose snapshot holds command-state snapshot `id`.
pub(crate) fn command_state_stream(id: &CommandStateSnapshotId) -> String {
    format!("{ADAPTER_PREFIX}command-state]{}", id.as_ref())
}

/// The stream whose snapshot holds checkpoint `name` when its position is
/// not one of this store's (see [`crate::checkpoints`]).
pub(crate) fn checkpoint_stream(name: &str) -> String {
    format!("{ADAPTER_PREFIX}checkpoint]{name}")
}

#[cfg(test)]
mod tests {
    use super::*;

    fn id(name: &str) -> StreamId {
        StreamId::try_new(name).unwrap()
    }

    #[test]
    fn application_streams_keep_their_names() {
        assert_eq!(store_stream_name(&id("account-7")), "account-7");
        assert_eq!(eventcore_stream_id("account-7"), Some("account-7"));
    }

    #[test]
    fn ids_evstore_reserves_are_escaped_and_come_back() {
        let orders = id("$orders");
        let stored = store_stream_name(&orders);
        assert_eq!(stored, "[$orders");
        assert_eq!(eventcore_stream_id(&stored), Some("$orders"));
    }

    #[test]
    fn the_store_s_and_the_adapter_s_own_streams_are_no_eventcore_stream() {
        let snapshot = CommandStateSnapshotId::try_new("transfer").unwrap();
        assert_eq!(eventcore_stream_id(&command_state_stream(&snapshot)), None);
        assert_eq!(eventcore_stream_id(&checkpoint_stream("balances")), None);
        assert_eq!(eventcore_stream_id("$$account-7"), None);
    }
}
