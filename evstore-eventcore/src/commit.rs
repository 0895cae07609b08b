//! A command's writes, committed to evstore as one [`Commit`].
//!
//! eventcore hands over every stream the command read, each with the
//! version it read, and the events for some of them. The streams that get
//! events become the commit's appends; the others become its checks
//! (read-only guards): evstore's writer compares every expected version,
//! of written and of checked streams alike, against the log as the commits
//! queued before this one left it, and writes all the events or none.
//!
//! Versions: an eventcore [`StreamVersion`] counts a stream's events (0 for
//! an empty stream), an evstore version numbers them from 0, so a stream
//! eventcore read at version `n` is expected at evstore's
//! `ExpectedVersion::Exact(n - 1)`, or `ExpectedVersion::NoStream` for 0.
//!
//! Order: evstore writes a commit stream by stream, so the events land at
//! consecutive positions grouped by stream, the streams in the order their
//! first event came, each stream's events in the order given.

use crate::error::store_failure;
use crate::stream_names::store_stream_name;
use eventcore_types::{
    EventStoreError, EventStreamSlice, Operation, StreamId, StreamVersion, StreamWriteEntry,
    StreamWrites,
};
use evstore::{Commit, EventData, ExpectedVersion, Store};
use std::collections::HashMap;

/// What evstore expects of a stream eventcore read at `version`.
pub(crate) fn expected_version(version: StreamVersion) -> ExpectedVersion {
    match version.into_inner().checked_sub(1) {
        None => ExpectedVersion::NoStream,
        // A usize always fits a u64 on the 64-bit targets evstore builds for.
        Some(last) => ExpectedVersion::Exact(u64::try_from(last).unwrap_or(u64::MAX)),
    }
}

/// The eventcore version (event count) of a stream whose last evstore
/// version is `last` (`None`: no events).
pub(crate) fn eventcore_version(last: Option<u64>) -> StreamVersion {
    let count = last.map_or(0, |last| {
        usize::try_from(last).map_or(usize::MAX, |last| last.saturating_add(1))
    });
    StreamVersion::new(count)
}

/// A stream of the command: its eventcore id and the version it was read at.
struct Participant {
    id: StreamId,
    expected: StreamVersion,
}

/// Commits `writes` to `store`: all their events, or none and the reason.
pub(crate) async fn commit_writes(
    store: &Store,
    writes: StreamWrites,
) -> Result<EventStreamSlice, EventStoreError> {
    let participants: HashMap<String, Participant> = writes
        .expected_versions()
        .iter()
        .map(|(id, expected)| {
            let participant = Participant {
                id: id.clone(),
                expected: *expected,
            };
            (store_stream_name(id).into_owned(), participant)
        })
        .collect();
    let written = events_by_stream(&participants, writes.into_entries())?;
    let Some(first_written) = written.first().map(|stream| stream.name.clone()) else {
        return check_versions(store, &participants);
    };

    let mut commit = Commit::new();
    for (name, participant) in &participants {
        if !written.iter().any(|stream| stream.name == *name) {
            commit = commit.check(name.clone(), expected_version(participant.expected));
        }
    }
    for stream in written {
        commit = commit.append(stream.name, stream.expected, stream.events);
    }

    match store.commit_async(&commit).await {
        Ok(_) => Ok(EventStreamSlice),
        Err(error) => Err(refusal(error, &participants, &first_written)),
    }
}

/// The events a commit appends to one evstore stream.
struct WrittenStream {
    name: String,
    expected: ExpectedVersion,
    events: Vec<EventData>,
}

/// The events of `entries` as evstore events, grouped by evstore stream in
/// the order each stream's first event came.
fn events_by_stream(
    participants: &HashMap<String, Participant>,
    entries: Vec<StreamWriteEntry>,
) -> Result<Vec<WrittenStream>, EventStoreError> {
    let mut written: Vec<WrittenStream> = Vec::new();
    for entry in entries {
        let name = store_stream_name(&entry.stream_id).into_owned();
        let Some(participant) = participants.get(&name) else {
            return Err(EventStoreError::UndeclaredStream {
                stream_id: entry.stream_id,
            });
        };
        // The payload is the JSON eventcore serialized, stored as it is.
        let payload: Box<str> = entry.event_data.into();
        let event = EventData::new(entry.event_type, String::from(payload).into_bytes());
        match written.iter_mut().find(|stream| stream.name == name) {
            Some(stream) => stream.events.push(event),
            None => written.push(WrittenStream {
                name,
                expected: expected_version(participant.expected),
                events: vec![event],
            }),
        }
    }
    Ok(written)
}

/// A command that writes nothing still decided from the versions it read:
/// they are compared with the store's, so a stale decision is retried
/// like any other. Nothing is written, so reading the versions is enough.
fn check_versions(
    store: &Store,
    participants: &HashMap<String, Participant>,
) -> Result<EventStreamSlice, EventStoreError> {
    for (name, participant) in participants {
        let last = store
            .stream_version(name)
            .map_err(|error| store_failure(Operation::SetExpectedVersions, &error))?;
        let actual = eventcore_version(last);
        if actual != participant.expected {
            return Err(EventStoreError::VersionConflict {
                stream_id: participant.id.clone(),
                expected: participant.expected,
                actual,
            });
        }
    }
    Ok(EventStreamSlice)
}

/// eventcore's error for a commit evstore refused or failed.
fn refusal(
    error: evstore::Error,
    participants: &HashMap<String, Participant>,
    first_written: &str,
) -> EventStoreError {
    let stream_id_of = |name: &str| participants.get(name).map(|p| p.id.clone());
    match &error {
        evstore::Error::WrongExpectedVersion { stream, actual, .. } => {
            match participants.get(stream.as_str()) {
                Some(participant) => EventStoreError::VersionConflict {
                    stream_id: participant.id.clone(),
                    expected: participant.expected,
                    actual: eventcore_version(*actual),
                },
                None => store_failure(Operation::AppendEvents, &error),
            }
        }
        // Refusals of the events themselves, not failures of the store:
        // reported against the stream named, or else the first one written.
        evstore::Error::InvalidStreamName { name, .. } => {
            match stream_id_of(name).or_else(|| stream_id_of(first_written)) {
                Some(stream_id) => EventStoreError::SerializationFailed {
                    stream_id,
                    detail: error.to_string(),
                },
                None => store_failure(Operation::AppendEvents, &error),
            }
        }
        evstore::Error::InvalidEventType { .. }
        | evstore::Error::EventTooLarge { .. }
        | evstore::Error::BatchTooLarge { .. } => match stream_id_of(first_written) {
            Some(stream_id) => EventStoreError::SerializationFailed {
                stream_id,
                detail: error.to_string(),
            },
            None => store_failure(Operation::AppendEvents, &error),
        },
        _ => store_failure(Operation::AppendEvents, &error),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_empty_stream_is_expected_to_have_no_events() {
        assert_eq!(
            expected_version(StreamVersion::new(0)),
            ExpectedVersion::NoStream
        );
    }

    #[test]
    fn a_stream_of_n_events_is_expected_at_evstore_version_n_minus_one() {
        assert_eq!(
            expected_version(StreamVersion::new(1)),
            ExpectedVersion::Exact(0)
        );
        assert_eq!(
            expected_version(StreamVersion::new(10)),
            ExpectedVersion::Exact(9)
        );
    }

    #[test]
    fn evstore_versions_count_back_to_eventcore_versions() {
        assert_eq!(eventcore_version(None), StreamVersion::new(0));
        assert_eq!(eventcore_version(Some(0)), StreamVersion::new(1));
        assert_eq!(eventcore_version(Some(9)), StreamVersion::new(10));
        for count in 0..5 {
            let version = StreamVersion::new(count);
            let last = match expected_version(version) {
                ExpectedVersion::NoStream => None,
                ExpectedVersion::Exact(last) => Some(last),
                other => panic!("unexpected {other:?}"),
            };
            assert_eq!(eventcore_version(last), version);
        }
    }
}
