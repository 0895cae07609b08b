//! Drives a `cqrs_es::Query` from the log, on a thread of its own: the
//! events of one aggregate type in commit order, from a durable checkpoint
//! (or a position the query keeps itself), then live as they become
//! durable. Queries run this way are not passed to `CqrsFramework`, so a
//! crash between a commit and its queries loses nothing: the runner
//! resumes where the log says.

use crate::repository::{to_serialized, type_tag};
use cqrs_es::{Aggregate, EventEnvelope, Query};
use evstore::{Filter, ProjectionHandle, ProjectionOptions, ProjectionStart, Store};
use std::marker::PhantomData;
use std::sync::Arc;

/// The metadata key under which each envelope a runner dispatches carries
/// the event's global position in the log, as a decimal string: a query
/// that stores `position + 1` with its own state, in the same transaction,
/// and restarts with [`QueryRunner::start_at`] sees each event exactly once.
pub const POSITION_KEY: &str = "evstore_position";

/// Runs one query over the events of aggregate type `A`.
///
/// ```
/// # #[tokio::main(flavor = "multi_thread")] async fn main() {
/// # use cqrs_es::{Aggregate, EventEnvelope, Query};
/// # use evstore::{Options, Store};
/// # use evstore_cqrs::QueryRunner;
/// # #[derive(Default, serde::Serialize, serde::Deserialize)] struct Counter;
/// # #[derive(Debug, Clone, PartialEq, serde::Serialize, serde::Deserialize)] struct Ticked;
/// # impl cqrs_es::DomainEvent for Ticked { fn event_type(&self) -> String { "Ticked".into() } fn event_version(&self) -> String { "1".into() } }
/// # #[derive(Debug, thiserror::Error)] #[error("never")] struct Never;
/// # impl Aggregate for Counter { const TYPE: &'static str = "counter"; type Command = (); type Event = Ticked; type Error = Never; type Services = ();
/// #   async fn handle(&mut self, _: (), _: &(), _: &cqrs_es::event_sink::EventSink<Self>) -> Result<(), Never> { Ok(()) }
/// #   fn apply(&mut self, _: Ticked) {} }
/// struct Log;
/// #[async_trait::async_trait]
/// impl Query<Counter> for Log {
///     async fn dispatch(&self, id: &str, events: &[EventEnvelope<Counter>]) {
///         println!("{id}: {} events", events.len());
///     }
/// }
/// # let dir = tempfile::tempdir().unwrap();
/// let store = Store::open(dir.path(), Options::default()).unwrap();
/// let runner = QueryRunner::new(store, "log", Log).start().unwrap();
/// runner.stop().unwrap();
/// # }
/// ```
pub struct QueryRunner<A: Aggregate, Q: Query<A>> {
    store: Store,
    name: String,
    query: Arc<Q>,
    start: ProjectionStart,
    _aggregate: PhantomData<fn() -> A>,
}

/// A running [`QueryRunner`].
#[derive(Debug)]
pub struct QueryRunnerHandle {
    projection: ProjectionHandle,
}

impl QueryRunnerHandle {
    /// The position of the first event not yet dispatched.
    #[must_use]
    pub fn position(&self) -> u64 {
        self.projection.position()
    }

    /// Whether it has ended by itself (the store closed, or an error that
    /// [`QueryRunnerHandle::join`] then returns).
    #[must_use]
    pub fn is_finished(&self) -> bool {
        self.projection.is_finished()
    }

    /// Stops after the event being dispatched and saves the checkpoint.
    /// It blocks until the runner's thread ends: on a single-threaded
    /// runtime, call it off the runtime's thread (`spawn_blocking`), which
    /// must keep driving the timers and I/O of a query still under way.
    ///
    /// # Errors
    ///
    /// What ended the runner early, if anything did: a checkpoint that
    /// could not be saved, an event that could not be decoded, a panic in
    /// the query.
    pub fn stop(self) -> evstore::Result<u64> {
        self.projection.stop().map(|stats| stats.position)
    }

    /// Waits for the runner to end by itself (the store closed, or an
    /// error), and returns where it stopped.
    ///
    /// # Errors
    ///
    /// As [`QueryRunnerHandle::stop`].
    pub fn join(self) -> evstore::Result<u64> {
        self.projection.join().map(|stats| stats.position)
    }
}

impl<A, Q> QueryRunner<A, Q>
where
    A: Aggregate + 'static,
    Q: Query<A> + 'static,
{
    /// A runner of `query` over `store`, resuming from the checkpoint saved
    /// under `name` (each event dispatched at least once across crashes).
    pub fn new(store: Store, name: &str, query: Q) -> Self {
        QueryRunner {
            store,
            name: name.to_string(),
            query: Arc::new(query),
            start: ProjectionStart::FromCheckpoint,
            _aggregate: PhantomData,
        }
    }

    /// Starts at `position` and saves no checkpoint: for a query that
    /// stores the position it reached with its own state (see
    /// [`POSITION_KEY`]), which makes each event's effect happen exactly
    /// once.
    #[must_use]
    pub fn start_at(mut self, position: u64) -> Self {
        self.start = ProjectionStart::At(position);
        self
    }

    /// Starts dispatching on a thread of its own. Must be called within a
    /// tokio runtime, which runs the query's futures.
    ///
    /// # Errors
    ///
    /// As [`Store::run_projection`].
    pub fn start(self) -> evstore::Result<QueryRunnerHandle> {
        let runtime = tokio::runtime::Handle::current();
        let query = self.query;
        let filter = Filter::query(evstore::Query::tagged([type_tag(A::TYPE)]));
        let options = ProjectionOptions::default()
            .filter(filter)
            .start(self.start);
        let projection = self
            .store
            .run_projection(&self.name, options, move |event| {
                if event.erased {
                    // Nothing left to dispatch (GDPR erasure, or a
                    // forgotten subject); the other aggregates go on.
                    return Ok(());
                }
                let mut serialized = to_serialized(A::TYPE, event)?;
                if let serde_json::Value::Object(map) = &mut serialized.metadata {
                    map.insert(
                        POSITION_KEY.to_string(),
                        serde_json::Value::String(event.position.to_string()),
                    );
                }
                let aggregate_id = serialized.aggregate_id.clone();
                let envelope: EventEnvelope<A> = serialized.try_into()?;
                runtime.block_on(query.dispatch(&aggregate_id, std::slice::from_ref(&envelope)));
                Ok(())
            })?;
        Ok(QueryRunnerHandle { projection })
    }
}
