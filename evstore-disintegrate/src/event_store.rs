//! disintegrate's `EventStore` over an evstore [`Store`].

use crate::error::Error;
use crate::query_plan::{identifier_tag, QueryPlan};
use async_trait::async_trait;
use disintegrate::{Event, PersistedEvent, StreamItem, StreamQuery};
use disintegrate_serde::Serde;
use evstore::{AppendCondition, Commit, EventData, ExpectedVersion, RecordedEvent, Store};
use futures::stream::{self, BoxStream, StreamExt};
use std::collections::VecDeque;
use std::error::Error as StdError;
use std::marker::PhantomData;
use std::sync::Arc;

/// Events read from the store per step of a query stream: the most a
/// stream's poll spends reading the memory-mapped log before it yields.
const READ_BATCH: usize = 512;

/// The stream every event is appended to unless
/// [`EvstoreEventStore::with_stream`] names another.
pub const DEFAULT_STREAM: &str = "disintegrate";

/// disintegrate's event store, on an evstore [`Store`]. Cheap to clone.
///
/// Event ids are log positions plus one (disintegrate reserves 0 for "no
/// event"). Each event is stored with its name as the evstore event type,
/// one tag `identifier:value` per domain identifier, and its payload
/// encoded by `S`. Every event goes to one stream ([`DEFAULT_STREAM`]
/// unless [`with_stream`](Self::with_stream) or
/// [`with_stream_for`](Self::with_stream_for) says otherwise): a decision's
/// consistency comes from its query, not from a stream version.
///
/// ```
/// # #[tokio::main(flavor = "current_thread")] async fn main() {
/// use disintegrate::serde::json::Json;
/// use disintegrate::{EventStore, StreamItem};
/// use evstore::{Options, Store};
/// use evstore_disintegrate::EvstoreEventStore;
/// use futures::TryStreamExt;
///
/// #[derive(Debug, Clone, PartialEq, serde::Serialize, serde::Deserialize, disintegrate::Event)]
/// #[stream(CounterEvent, [Incremented])]
/// enum DomainEvent {
///     Incremented {
///         #[id]
///         counter_id: String,
///     },
/// }
///
/// # let dir = tempfile::tempdir().unwrap();
/// let store = Store::open(dir.path(), Options::default()).unwrap();
/// let events = EvstoreEventStore::new(store, Json::<DomainEvent>::default());
/// let written = events
///     .append_without_validation(vec![DomainEvent::Incremented { counter_id: "c1".into() }])
///     .await
///     .unwrap();
/// assert_eq!(written[0].id(), 1);
///
/// let query = disintegrate::query!(DomainEvent; counter_id == "c1");
/// let items: Vec<StreamItem<u64, DomainEvent>> = events.stream(&query).try_collect().await.unwrap();
/// assert_eq!(items.len(), 2); // the event, then the end of the stream at id 1
/// # }
/// ```
pub struct EvstoreEventStore<E, S> {
    store: Store,
    serde: Arc<S>,
    streams: Arc<StreamOf<E>>,
    _event: PhantomData<fn() -> E>,
}

/// Which stream an event is appended to.
type StreamOf<E> = dyn Fn(&E) -> String + Send + Sync;

impl<E, S> Clone for EvstoreEventStore<E, S> {
    fn clone(&self) -> Self {
        EvstoreEventStore {
            store: self.store.clone(),
            serde: Arc::clone(&self.serde),
            streams: Arc::clone(&self.streams),
            _event: PhantomData,
        }
    }
}

impl<E, S> std::fmt::Debug for EvstoreEventStore<E, S> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("EvstoreEventStore")
            .field("store", &self.store)
            .finish_non_exhaustive()
    }
}

impl<E, S> EvstoreEventStore<E, S>
where
    E: Event + Clone + Send + Sync,
    S: Serde<E> + Send + Sync,
{
    /// An event store over `store`, encoding payloads with `serde`.
    #[must_use]
    pub fn new(store: Store, serde: S) -> Self {
        EvstoreEventStore {
            store,
            serde: Arc::new(serde),
            streams: Arc::new(|_: &E| DEFAULT_STREAM.to_string()),
            _event: PhantomData,
        }
    }

    /// Appends to `stream` instead of [`DEFAULT_STREAM`] (to keep two
    /// applications' events apart in one store, say).
    #[must_use]
    pub fn with_stream(mut self, stream: &str) -> Self {
        let stream = stream.to_string();
        self.streams = Arc::new(move |_: &E| stream.clone());
        self
    }

    /// Appends each event to the stream `stream_of` names for it: one per
    /// entity, say, so that evstore's per-stream tools apply to an
    /// entity's events (reading them as a stream, retention rules,
    /// `delete_stream`, `erase_stream` for a person's data).
    ///
    /// Decisions and queries are unchanged: they go by types and tags. One
    /// decision's events are still one atomic commit, but a commit writes
    /// stream by stream, so its events are grouped by stream (in the order
    /// each stream's first event came, each stream's events in order) and
    /// their ids follow that order.
    #[must_use]
    pub fn with_stream_for(
        mut self,
        stream_of: impl Fn(&E) -> String + Send + Sync + 'static,
    ) -> Self {
        self.streams = Arc::new(stream_of);
        self
    }

    /// The store it uses.
    #[must_use]
    pub fn store(&self) -> &Store {
        &self.store
    }

    /// The disintegrate id of the last event a read sees now (0: none).
    #[must_use]
    pub fn head(&self) -> u64 {
        id_after(self.store.last_position())
    }

    /// Decodes a read event into `QE`, the type a query or listener wants.
    pub(crate) fn decode<QE>(&self, event: &RecordedEvent) -> Result<PersistedEvent<u64, QE>, Error>
    where
        QE: TryFrom<E> + Event,
        <QE as TryFrom<E>>::Error: StdError + Send + Sync + 'static,
    {
        let decoded = self.serde.deserialize(event.payload.to_vec())?;
        let wanted =
            QE::try_from(decoded).map_err(|error| Error::QueryEventMapping(Box::new(error)))?;
        Ok(PersistedEvent::new(event.position + 1, wanted))
    }

    fn encode(&self, event: &E) -> EventData {
        let tags: Vec<String> = event
            .domain_ids()
            .iter()
            .map(|(ident, value)| identifier_tag(&ident.to_string(), value))
            .collect();
        EventData::new(event.name(), self.serde.serialize(event.clone())).with_tags(tags)
    }

    /// Appends `events` in one commit, under `condition` if given, and
    /// returns them with their ids.
    async fn commit(
        &self,
        events: Vec<E>,
        condition: Option<AppendCondition>,
    ) -> Result<Vec<PersistedEvent<u64, E>>, Error> {
        // Each stream once, in the order its first event came.
        let mut streams: Vec<(String, Vec<usize>)> = Vec::new();
        for (i, event) in events.iter().enumerate() {
            let stream = (self.streams)(event);
            match streams.iter_mut().find(|(name, _)| *name == stream) {
                Some((_, members)) => members.push(i),
                None => streams.push((stream, vec![i])),
            }
        }
        let mut commit = Commit::new();
        for (stream, members) in &streams {
            let data = members
                .iter()
                .filter_map(|&i| events.get(i))
                .map(|event| self.encode(event));
            commit = commit.append(stream.clone(), ExpectedVersion::Any, data);
        }
        if let Some(condition) = condition {
            commit = commit.condition(condition);
        }
        let written = self
            .store
            .commit_async(&commit)
            .await
            .map_err(|error| match error {
                evstore::Error::AppendConditionFailed { position } => {
                    Error::Concurrency { id: position + 1 }
                }
                other => Error::Store(other),
            })?;
        // The commit wrote the streams in the order they were added, each
        // stream's events at consecutive positions.
        let mut ids = vec![0u64; events.len()];
        for ((_, members), appended) in streams.iter().zip(&written.streams) {
            for (&i, position) in members.iter().zip(appended.first_position..) {
                if let Some(id) = ids.get_mut(i) {
                    *id = position + 1;
                }
            }
        }
        let mut persisted: Vec<PersistedEvent<u64, E>> = ids
            .into_iter()
            .zip(events)
            .map(|(id, event)| PersistedEvent::new(id, event))
            .collect();
        persisted.sort_by_key(PersistedEvent::id);
        Ok(persisted)
    }
}

/// The disintegrate id of the event at `position` (`None`: no event), that
/// is the id a read served up to there reports.
fn id_after(position: Option<u64>) -> u64 {
    position.map_or(0, |position| position + 1)
}

/// Where a query stream is.
struct Reading {
    plan: QueryPlan,
    query: Option<evstore::Query>,
    /// The next position to read from.
    next: u64,
    /// The last position the stream serves: the head when it started.
    head: Option<u64>,
    ready: VecDeque<RecordedEvent>,
    done: bool,
}

impl<E, S> EvstoreEventStore<E, S>
where
    E: Event + Clone + Send + Sync,
    S: Serde<E> + Send + Sync,
{
    /// Reads the next batch of `reading`, keeping what its plan matches.
    fn read_batch(&self, reading: &mut Reading) -> Result<(), Error> {
        let (Some(query), Some(head)) = (&reading.query, reading.head) else {
            reading.done = true;
            return Ok(());
        };
        if reading.next > head {
            reading.done = true;
            return Ok(());
        }
        let read =
            self.store
                .read_query(query, reading.next, evstore::Direction::Forward, READ_BATCH)?;
        let short = read.events.len() < READ_BATCH;
        match read.events.last() {
            Some(last) => reading.next = last.position + 1,
            None => reading.done = true,
        }
        if short {
            reading.done = true;
        }
        for event in read.events {
            if event.position > head {
                reading.done = true;
                break;
            }
            if reading.plan.matches(&event) {
                reading.ready.push_back(event);
            }
        }
        Ok(())
    }
}

#[async_trait]
impl<E, S> disintegrate::EventStore<u64, E> for EvstoreEventStore<E, S>
where
    E: Event + Clone + Send + Sync + 'static,
    S: Serde<E> + Send + Sync + 'static,
{
    type Error = Error;

    /// The events matching `query` up to the head at the time of the call,
    /// in log order, then [`StreamItem::End`] with that head. Each poll
    /// reads at most one batch of events from the memory-mapped log.
    fn stream<'a, QE>(
        &'a self,
        query: &'a StreamQuery<u64, QE>,
    ) -> BoxStream<'a, Result<StreamItem<u64, QE>, Self::Error>>
    where
        QE: TryFrom<E> + Event + 'static + Clone + Send + Sync,
        <QE as TryFrom<E>>::Error: StdError + 'static + Send + Sync,
    {
        let plan = QueryPlan::new(query);
        let reading = Reading {
            query: plan.query(),
            next: plan.first_position(),
            plan,
            head: self.store.last_position(),
            ready: VecDeque::new(),
            done: false,
        };
        stream::unfold(Some(reading), move |state| async move {
            let mut reading = state?;
            loop {
                if let Some(event) = reading.ready.pop_front() {
                    if event.erased {
                        // Its payload is gone (a forgotten subject): no
                        // decision or listener can use it, and one erased
                        // entity must not stop the others' decisions.
                        continue;
                    }
                    let item = self.decode::<QE>(&event).map(StreamItem::Event);
                    return Some((item, Some(reading)));
                }
                if reading.done {
                    let end = StreamItem::End(id_after(reading.head));
                    return Some((Ok(end), None));
                }
                if let Err(error) = self.read_batch(&mut reading) {
                    return Some((Err(error), None));
                }
            }
        })
        .boxed()
    }

    /// Appends `events` unless an event matching `query` has an id above
    /// `last_event_id` ([`Error::Concurrency`] then, and nothing is
    /// written). The check runs in evstore's writer, against the durable
    /// log and the commits queued ahead in the same group, so of racing
    /// decisions on overlapping queries exactly one succeeds. The filters'
    /// own origins are ignored here, as in the reference back end.
    async fn append<QE>(
        &self,
        events: Vec<E>,
        query: StreamQuery<u64, QE>,
        last_event_id: u64,
    ) -> Result<Vec<PersistedEvent<u64, E>>, Self::Error>
    where
        E: Clone + 'async_trait,
        QE: Event + 'static + Clone + Send + Sync,
    {
        let plan = QueryPlan::new(&query.change_origin(0));
        let after = last_event_id.checked_sub(1);
        let Some(query) = plan.query() else {
            return self.append_without_validation(events).await;
        };
        if events.is_empty() {
            // Nothing to write, but the decision still saw a state: report
            // a conflict if it is already stale.
            let read = self.store.read_query_after(&query, after, 1)?;
            return match read.events.first() {
                Some(event) => Err(Error::Concurrency {
                    id: event.position + 1,
                }),
                None => Ok(Vec::new()),
            };
        }
        self.commit(events, Some(AppendCondition::new(query, after)))
            .await
    }

    async fn append_without_validation(
        &self,
        events: Vec<E>,
    ) -> Result<Vec<PersistedEvent<u64, E>>, Self::Error>
    where
        E: Clone + 'async_trait,
    {
        if events.is_empty() {
            return Ok(Vec::new());
        }
        self.commit(events, None).await
    }
}
