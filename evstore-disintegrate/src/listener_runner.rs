//! Runs a disintegrate `EventListener` on an evstore projection: the
//! listener's events in log order from a durable checkpoint, then live.

use crate::error::Error;
use crate::event_store::EvstoreEventStore;
use crate::query_plan::QueryPlan;
use disintegrate::{Event, EventListener};
use disintegrate_serde::Serde;
use evstore::{Filter, OnError, ProjectionHandle, ProjectionOptions, ProjectionStart};
use std::error::Error as StdError;
use std::marker::PhantomData;
use std::sync::Arc;

/// The prefix of the checkpoint a listener's progress is saved under,
/// followed by the listener's id.
pub const CHECKPOINT_PREFIX: &str = "disintegrate-listener:";

/// Runs one [`EventListener`] on a thread of its own.
///
/// Each event the listener's query matches is handled at least once, in
/// log order: the checkpoint `disintegrate-listener:<id>` is saved as it
/// goes, and a restart resumes there. A handler that fails is retried or
/// stops the runner, as [`ListenerRunner::on_error`] says. A listener that
/// records the id of the last event it handled with its own state, in the
/// same transaction, and starts with [`ListenerRunner::start_after`]
/// handles each event exactly once.
///
/// ```
/// # #[tokio::main(flavor = "multi_thread")] async fn main() {
/// use disintegrate::serde::json::Json;
/// use disintegrate::{EventListener, PersistedEvent, StreamQuery};
/// use evstore::{Options, Store};
/// use evstore_disintegrate::{EvstoreEventStore, ListenerRunner};
/// # #[derive(Debug, Clone, PartialEq, serde::Serialize, serde::Deserialize, disintegrate::Event)]
/// # #[stream(CounterEvent, [Incremented])]
/// # enum DomainEvent { Incremented { #[id] counter_id: String } }
///
/// struct Printer(StreamQuery<u64, DomainEvent>);
///
/// #[async_trait::async_trait]
/// impl EventListener<u64, DomainEvent> for Printer {
///     type Error = std::io::Error;
///     fn id(&self) -> &'static str { "printer" }
///     fn query(&self) -> &StreamQuery<u64, DomainEvent> { &self.0 }
///     async fn handle(&self, event: PersistedEvent<u64, DomainEvent>) -> Result<(), Self::Error> {
///         println!("{}: {:?}", event.id(), *event);
///         Ok(())
///     }
/// }
///
/// # let dir = tempfile::tempdir().unwrap();
/// let store = Store::open(dir.path(), Options::default()).unwrap();
/// let events = EvstoreEventStore::new(store, Json::<DomainEvent>::default());
/// let listener = Printer(disintegrate::query!(DomainEvent));
/// let running = ListenerRunner::new(&events, listener).start().unwrap();
/// running.stop().unwrap();
/// # }
/// ```
pub struct ListenerRunner<E, S, L, QE> {
    events: EvstoreEventStore<E, S>,
    listener: L,
    options: ProjectionOptions,
    _query_event: PhantomData<fn() -> QE>,
}

/// A running [`ListenerRunner`].
#[derive(Debug)]
pub struct ListenerHandle {
    projection: ProjectionHandle,
}

impl ListenerHandle {
    /// Whether the runner has ended: stopped, or ended by itself (the store
    /// closed, a handler that failed for good, a panic). [`join`](Self::join)
    /// then returns at once, with the reason.
    #[must_use]
    pub fn is_finished(&self) -> bool {
        self.projection.is_finished()
    }

    /// Asks the runner to stop after the event being handled, without
    /// waiting for it: for a shutdown path that must not block (an async
    /// task, say), followed by [`join`](Self::join) where blocking is fine.
    pub fn request_stop(&self) {
        self.projection.request_stop();
    }

    /// The id of the last event handled (0: none yet).
    #[must_use]
    pub fn last_handled(&self) -> u64 {
        self.projection.position()
    }

    /// Stops after the event being handled, saves the checkpoint, and
    /// returns the id of the last event handled. It blocks until the
    /// runner's thread ends: on a single-threaded runtime, call it off the
    /// runtime's thread (`spawn_blocking`), which must keep driving the
    /// timers and I/O of a handler still under way.
    ///
    /// # Errors
    ///
    /// What ended the runner early, if anything did: a handler that failed
    /// for good, an event that could not be decoded, a checkpoint that
    /// could not be saved, a panic in the handler.
    pub fn stop(self) -> Result<u64, Error> {
        Ok(self.projection.stop()?.position)
    }

    /// Waits for the runner to end by itself (the store closed, or an
    /// error) and returns the id of the last event handled.
    ///
    /// # Errors
    ///
    /// As [`ListenerHandle::stop`].
    pub fn join(self) -> Result<u64, Error> {
        Ok(self.projection.join()?.position)
    }
}

impl<E, S, L, QE> ListenerRunner<E, S, L, QE>
where
    E: Event + Clone + Send + Sync + 'static,
    S: Serde<E> + Send + Sync + 'static,
    QE: TryFrom<E> + Event + Clone + Send + Sync + 'static,
    <QE as TryFrom<E>>::Error: StdError + Send + Sync + 'static,
    L: EventListener<u64, QE> + 'static,
    L::Error: StdError + Send + Sync + 'static,
{
    /// A runner of `listener` over the events of `events`, resuming from
    /// its checkpoint. A failing handler stops it.
    pub fn new(events: &EvstoreEventStore<E, S>, listener: L) -> Self {
        ListenerRunner {
            events: events.clone(),
            listener,
            options: ProjectionOptions::default()
                .on_error(OnError::Stop)
                .start(ProjectionStart::FromCheckpoint),
            _query_event: PhantomData,
        }
    }

    /// What to do when the handler fails: stop, or retry with backoff.
    #[must_use]
    pub fn on_error(mut self, on_error: OnError) -> Self {
        self.options = self.options.on_error(on_error);
        self
    }

    /// Saves the checkpoint after every `events` events handled (as well as
    /// every [`checkpoint_interval`](Self::checkpoint_interval)): after a
    /// crash, at most that many events since the last save are handled
    /// again.
    #[must_use]
    pub fn checkpoint_every(mut self, events: u64) -> Self {
        self.options = self.options.checkpoint_every(events);
        self
    }

    /// Saves the checkpoint at least this often while events are handled.
    #[must_use]
    pub fn checkpoint_interval(mut self, interval: std::time::Duration) -> Self {
        self.options = self.options.checkpoint_interval(interval);
        self
    }

    /// Starts after event `id` (0: from the beginning) and saves no
    /// checkpoint: for a listener that keeps the id it reached with its own
    /// state.
    #[must_use]
    pub fn start_after(mut self, id: u64) -> Self {
        self.options = self.options.start(ProjectionStart::At(id));
        self
    }

    /// Starts handling on a thread of its own. Must be called within a
    /// tokio runtime, which runs the handler's futures.
    ///
    /// # Errors
    ///
    /// [`Error::NoRuntime`] outside a tokio runtime; as
    /// [`evstore::Store::run_projection`] otherwise (a damaged checkpoint,
    /// a read-only store).
    pub fn start(self) -> Result<ListenerHandle, Error> {
        let runtime = tokio::runtime::Handle::try_current().map_err(|_| Error::NoRuntime)?;
        let plan = QueryPlan::new(self.listener.query());
        let name = format!("{CHECKPOINT_PREFIX}{}", self.listener.id());
        // An id is a position plus one, so the position after event `id`
        // is `id`: positions and ids line up as checkpoints.
        let mut options = self.options;
        if let Some(query) = plan.query() {
            options = options.filter(Filter::query(query));
        }
        let listener = Arc::new(self.listener);
        let events = self.events;
        let projection = events
            .store()
            .clone()
            .run_projection(&name, options, move |event| {
                if plan.is_empty() || !plan.matches(event) || event.erased {
                    return Ok(());
                }
                let event = events.decode::<QE>(event)?;
                runtime.block_on(listener.handle(event))?;
                Ok(())
            })?;
        Ok(ListenerHandle { projection })
    }
}
