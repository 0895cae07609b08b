//! `PersistedEventRepository` over an evstore [`Store`].

use cqrs_es::persist::{
    PersistedEventRepository, PersistenceError, ReplayStream, SerializedEvent, SerializedSnapshot,
};
use cqrs_es::{Aggregate, EventEnvelope};
use evstore::{Direction, Error, EventData, ExpectedVersion, Query, RecordedEvent, Store};
use serde::{Deserialize, Serialize};
use serde_json::Value;

/// Events read per call to the store while loading or replaying.
const PAGE: usize = 1_000;

/// cqrs-es's event repository, on an evstore [`Store`]. Cheap to clone.
#[derive(Debug, Clone)]
pub struct EvstoreEventRepository {
    store: Store,
}

/// What an event's evstore metadata holds besides its payload.
#[derive(Serialize, Deserialize)]
struct EventMeta {
    event_version: String,
    metadata: Value,
}

/// What a snapshot file holds.
#[derive(Serialize, Deserialize)]
struct SnapshotData {
    aggregate: Value,
    current_snapshot: usize,
}

impl EvstoreEventRepository {
    /// A repository over `store`.
    #[must_use]
    pub fn new(store: Store) -> Self {
        EvstoreEventRepository { store }
    }

    /// The store it uses.
    #[must_use]
    pub fn store(&self) -> &Store {
        &self.store
    }
}

/// The stream of aggregate `id` of type `aggregate_type`: the type with
/// its `%` and `-` escaped, a `-`, then the id, so that no two (type, id)
/// pairs share a stream (`account` / `vip-7` against `account-vip` / `7`).
/// A type with neither character is written as it is.
#[must_use]
pub(crate) fn stream_name(aggregate_type: &str, id: &str) -> String {
    format!("{}{id}", stream_prefix(aggregate_type))
}

/// What every stream of `aggregate_type` starts with (see [`stream_name`]).
fn stream_prefix(aggregate_type: &str) -> String {
    let mut prefix = aggregate_type.replace('%', "%25").replace('-', "%2D");
    prefix.push('-');
    prefix
}

/// The tag every event of `aggregate_type` carries.
#[must_use]
pub(crate) fn type_tag(aggregate_type: &str) -> String {
    format!("aggregate_type:{aggregate_type}")
}

fn unknown(error: Error) -> PersistenceError {
    match error {
        Error::WrongExpectedVersion { .. } => PersistenceError::OptimisticLockError,
        Error::Io { .. } | Error::NoSpace { .. } | Error::StorePoisoned { .. } | Error::Closed => {
            PersistenceError::ConnectionError(Box::new(error))
        }
        other => PersistenceError::UnknownError(Box::new(other)),
    }
}

fn undecodable(error: serde_json::Error) -> PersistenceError {
    PersistenceError::DeserializationError(Box::new(error))
}

/// The cqrs-es form of a recorded event of `aggregate_type`.
pub(crate) fn to_serialized(
    aggregate_type: &str,
    event: &RecordedEvent,
) -> Result<SerializedEvent, PersistenceError> {
    if event.erased {
        // Its payload and metadata are gone (GDPR erasure, or a forgotten
        // subject): there is nothing to hand cqrs-es.
        return Err(PersistenceError::UnknownError(Box::new(
            Error::EventErased {
                stream: event.stream.to_string(),
                version: event.version,
            },
        )));
    }
    let aggregate_id = event
        .stream
        .strip_prefix(stream_prefix(aggregate_type).as_str())
        .or_else(|| event.stream.strip_prefix(&format!("{aggregate_type}-")))
        .ok_or_else(|| {
            PersistenceError::UnknownError(
                format!(
                    "event of stream '{}' is tagged as of aggregate type '{aggregate_type}'",
                    &*event.stream
                )
                .into(),
            )
        })?
        .to_string();
    let meta: EventMeta = serde_json::from_slice(&event.metadata).map_err(undecodable)?;
    Ok(SerializedEvent {
        aggregate_id,
        sequence: usize::try_from(event.version + 1).unwrap_or(usize::MAX),
        aggregate_type: aggregate_type.to_string(),
        event_type: event.event_type.to_string(),
        event_version: meta.event_version,
        payload: serde_json::from_slice(&event.payload).map_err(undecodable)?,
        metadata: meta.metadata,
    })
}

fn to_event_data(event: &SerializedEvent) -> Result<EventData, PersistenceError> {
    let payload = serde_json::to_vec(&event.payload).map_err(undecodable)?;
    let meta = serde_json::to_vec(&EventMeta {
        event_version: event.event_version.clone(),
        metadata: event.metadata.clone(),
    })
    .map_err(undecodable)?;
    Ok(EventData::new(event.event_type.clone(), payload)
        .with_metadata(meta)
        .with_tags([type_tag(&event.aggregate_type)]))
}

impl EvstoreEventRepository {
    /// The stream of aggregate `id` of `aggregate_type`: [`stream_name`],
    /// unless the type has a `-` or `%` and the aggregate was written
    /// before stream names escaped them: then the stream it was written to
    /// (`type-id`, unescaped), where it goes on, so its history is never
    /// split. That stream is taken only if it holds events of this type.
    fn stream_of(&self, aggregate_type: &str, id: &str) -> Result<String, PersistenceError> {
        let escaped = stream_name(aggregate_type, id);
        let unescaped = format!("{aggregate_type}-{id}");
        if escaped == unescaped
            || self
                .store
                .stream_version(&escaped)
                .map_err(unknown)?
                .is_some()
        {
            return Ok(escaped);
        }
        let tag = type_tag(aggregate_type);
        let written_before = self
            .store
            .read_stream(&unescaped, 0, Direction::Forward, 1)
            .map_err(unknown)?
            .first()
            .is_some_and(|e| e.tags.iter().any(|t| **t == *tag));
        Ok(if written_before { unescaped } else { escaped })
    }

    /// The events of `stream` from `version` on, in cqrs-es form.
    fn read_from<A: Aggregate>(
        &self,
        aggregate_id: &str,
        mut version: u64,
    ) -> Result<Vec<SerializedEvent>, PersistenceError> {
        let stream = self.stream_of(A::TYPE, aggregate_id)?;
        let mut events = Vec::new();
        loop {
            let page = self
                .store
                .read_stream(&stream, version, Direction::Forward, PAGE)
                .map_err(unknown)?;
            for event in &page {
                events.push(to_serialized(A::TYPE, event)?);
            }
            match page.last() {
                Some(last) if page.len() == PAGE => version = last.version + 1,
                _ => return Ok(events),
            }
        }
    }

    /// The snapshot of `aggregate_id`, brought up to date with any event
    /// appended after it: a snapshot written after its events is one save
    /// behind if the process stopped between the two, and an aggregate
    /// store (which replays nothing) must still see those events.
    fn snapshot_of<A: Aggregate>(
        &self,
        aggregate_id: &str,
    ) -> Result<Option<SerializedSnapshot>, PersistenceError> {
        let stream = self.stream_of(A::TYPE, aggregate_id)?;
        let Some(snapshot) = self.store.load_snapshot(&stream).map_err(unknown)? else {
            return Ok(None);
        };
        let data: SnapshotData = serde_json::from_slice(&snapshot.data).map_err(undecodable)?;
        let newer = self.read_from::<A>(aggregate_id, snapshot.version + 1)?;
        let mut current_sequence = usize::try_from(snapshot.version + 1).unwrap_or(usize::MAX);
        let mut aggregate = data.aggregate;
        if let Some(last) = newer.last() {
            current_sequence = last.sequence;
            let mut state: A = serde_json::from_value(aggregate).map_err(undecodable)?;
            for event in newer {
                let envelope: EventEnvelope<A> = event.try_into()?;
                state.apply(envelope.payload);
            }
            aggregate = serde_json::to_value(&state).map_err(undecodable)?;
        }
        Ok(Some(SerializedSnapshot {
            aggregate_id: aggregate_id.to_string(),
            aggregate,
            current_sequence,
            current_snapshot: data.current_snapshot,
        }))
    }

    /// Feeds `events` of `A` from the log into a replay stream, on a
    /// thread of its own: reads are synchronous.
    fn replay<A: Aggregate>(&self, stream: Option<String>) -> ReplayStream {
        let (mut feed, replay) = ReplayStream::new(PAGE);
        let store = self.store.clone();
        let handle = tokio::runtime::Handle::current();
        std::thread::spawn(move || {
            let mut from = 0u64;
            loop {
                let page = match &stream {
                    Some(stream) => store.read_stream(stream, from, Direction::Forward, PAGE),
                    None => store
                        .read_query(
                            &Query::tagged([type_tag(A::TYPE)]),
                            from,
                            Direction::Forward,
                            PAGE,
                        )
                        .map(|read| read.events),
                };
                let page = match page {
                    Ok(page) => page,
                    Err(error) => {
                        let _ = handle.block_on(feed.push(Err(unknown(error))));
                        return;
                    }
                };
                // A replay feeds queries: erased events have nothing for
                // them, and one erased aggregate must not stop the others.
                for event in page.iter().filter(|e| !e.erased) {
                    if handle
                        .block_on(feed.push(to_serialized(A::TYPE, event)))
                        .is_err()
                    {
                        return; // The reader is gone.
                    }
                }
                match page.last() {
                    Some(last) if page.len() == PAGE => {
                        from = match stream {
                            Some(_) => last.version + 1,
                            None => last.position + 1,
                        };
                    }
                    _ => return,
                }
            }
        });
        replay
    }
}

impl PersistedEventRepository for EvstoreEventRepository {
    async fn get_events<A: Aggregate>(
        &self,
        aggregate_id: &str,
    ) -> Result<Vec<SerializedEvent>, PersistenceError> {
        self.read_from::<A>(aggregate_id, 0)
    }

    async fn get_last_events<A: Aggregate>(
        &self,
        aggregate_id: &str,
        last_sequence: usize,
    ) -> Result<Vec<SerializedEvent>, PersistenceError> {
        // Sequence `last_sequence + 1` is version `last_sequence`.
        self.read_from::<A>(aggregate_id, last_sequence as u64)
    }

    async fn get_snapshot<A: Aggregate>(
        &self,
        aggregate_id: &str,
    ) -> Result<Option<SerializedSnapshot>, PersistenceError> {
        self.snapshot_of::<A>(aggregate_id)
    }

    async fn persist<A: Aggregate>(
        &self,
        events: &[SerializedEvent],
        snapshot_update: Option<(String, Value, usize)>,
    ) -> Result<(), PersistenceError> {
        if let Some(first) = events.first() {
            let stream = self.stream_of(A::TYPE, &first.aggregate_id)?;
            let expected = match first.sequence {
                0 | 1 => ExpectedVersion::NoStream,
                sequence => ExpectedVersion::Exact(sequence as u64 - 2),
            };
            let data = events
                .iter()
                .map(to_event_data)
                .collect::<Result<Vec<_>, _>>()?;
            self.store
                .append_async(&stream, expected, &data)
                .await
                .map_err(unknown)?;
        }
        if let Some((aggregate_id, aggregate, current_snapshot)) = snapshot_update {
            let stream = self.stream_of(A::TYPE, &aggregate_id)?;
            // Like the SQL back ends, the snapshot stands for the state
            // after the last event of this commit.
            let version = match events.last() {
                Some(last) => last.sequence as u64 - 1,
                None => match self.store.stream_version(&stream).map_err(unknown)? {
                    Some(version) => version,
                    None => return Ok(()),
                },
            };
            let data = serde_json::to_vec(&SnapshotData {
                aggregate,
                current_snapshot,
            })
            .map_err(undecodable)?;
            let store = self.store.clone();
            // A snapshot save syncs a file: off the executor.
            tokio::task::spawn_blocking(move || store.save_snapshot(&stream, version, data))
                .await
                .map_err(|e| PersistenceError::UnknownError(Box::new(e)))?
                .map_err(unknown)?;
        }
        Ok(())
    }

    async fn stream_events<A: Aggregate>(
        &self,
        aggregate_id: &str,
    ) -> Result<ReplayStream, PersistenceError> {
        Ok(self.replay::<A>(Some(self.stream_of(A::TYPE, aggregate_id)?)))
    }

    async fn stream_all_events<A: Aggregate>(&self) -> Result<ReplayStream, PersistenceError> {
        Ok(self.replay::<A>(None))
    }
}
