//! Typed events and snapshots: the user's own enums and structs in, the
//! same out, through a [`Codec`].

use crate::aggregate::{Aggregate, LoadedAggregate, SavedAggregate};
use crate::codec::{BincodeCodec, Codec, CodecError};
pub use crate::domain_event::DomainEvent;
use crate::error::{Error, Result};
use crate::store::Store;
use crate::types::{AppendResult, Direction, EventData, ExpectedVersion, RecordedEvent};
use bytes::Bytes;
use serde::de::DeserializeOwned;
use serde::Serialize;
use uuid::Uuid;

/// A stored event decoded as the user's type, from
/// [`TypedStore::read_stream`].
#[derive(Debug, Clone, PartialEq)]
#[non_exhaustive]
pub struct Recorded<E> {
    /// The decoded event.
    pub event: E,
    /// The event's version in its stream.
    pub version: u64,
    /// The event's position in the global log.
    pub position: u64,
    /// When it was written, in nanoseconds since the Unix epoch.
    pub timestamp_nanos: u64,
    /// The id given at append.
    pub id: Uuid,
    /// The metadata bytes, untouched by the codec.
    pub metadata: Bytes,
}

/// A snapshot decoded as the user's state type, from
/// [`TypedStore::load_snapshot`].
#[derive(Debug, Clone, PartialEq)]
#[non_exhaustive]
pub struct TypedSnapshot<S> {
    /// The last stream version the state includes.
    pub version: u64,
    /// The decoded state.
    pub state: S,
}

/// A [`Store`] seen through a [`Codec`]: appends and reads the user's event
/// types, saves and loads typed snapshots, and loads and saves
/// [`Aggregate`]s. Cheap to clone.
///
/// ```
/// use evstore::{Direction, DomainEvent, ExpectedVersion, Options, Store};
/// use serde::{Deserialize, Serialize};
///
/// #[derive(Debug, PartialEq, Serialize, Deserialize)]
/// enum Light { On, Off }
/// impl DomainEvent for Light {
///     fn event_type(&self) -> &str {
///         match self { Light::On => "On", Light::Off => "Off" }
///     }
/// }
///
/// # let dir = tempfile::tempdir().unwrap();
/// let store = Store::open(dir.path(), Options::default()).unwrap();
/// let typed = store.typed();
/// typed.append("lamp-1", ExpectedVersion::NoStream, &[Light::On, Light::Off]).unwrap();
/// let events = typed.read_stream::<Light>("lamp-1", 0, Direction::Forward, 10).unwrap();
/// assert_eq!(events[1].event, Light::Off);
/// // The type name is stored with the event for untyped readers.
/// let raw = store.read_stream("lamp-1", 0, Direction::Forward, 1).unwrap();
/// assert_eq!(&raw[0].event_type[..], "On");
/// ```
#[derive(Debug, Clone)]
pub struct TypedStore<C = BincodeCodec> {
    store: Store,
    codec: C,
    snapshot_every: Option<u64>,
}

/// Events read per step while replaying a stream into an aggregate.
const REPLAY_CHUNK: usize = 1024;

impl Store {
    /// This store with typed events and snapshots through the default
    /// [`BincodeCodec`]. The typed view holds a clone of the store, so the
    /// directory stays locked until it is dropped too.
    #[must_use]
    pub fn typed(&self) -> TypedStore<BincodeCodec> {
        self.typed_with(BincodeCodec)
    }

    /// This store with typed events and snapshots through `codec`.
    #[must_use]
    pub fn typed_with<C: Codec>(&self, codec: C) -> TypedStore<C> {
        TypedStore {
            store: self.clone(),
            codec,
            snapshot_every: None,
        }
    }

    /// Loads aggregate `A` from `stream` with the default codec: its newest
    /// snapshot, then the events after it. See [`TypedStore::load_aggregate`].
    ///
    /// # Errors
    ///
    /// As [`TypedStore::load_aggregate`].
    pub fn load_aggregate<A: Aggregate>(&self, stream: &str) -> Result<LoadedAggregate<A>> {
        self.typed().load_aggregate(stream)
    }
}

impl<C: Codec> TypedStore<C> {
    /// Makes [`TypedStore::save_aggregate`] save a snapshot whenever a save
    /// takes the stream's event count across a multiple of `events` (`0`
    /// turns automatic snapshots off, the default). Tying it to the count,
    /// not to when each writer last loaded, means concurrent writers of one
    /// aggregate do not each save the same snapshot.
    #[must_use]
    pub fn snapshot_every(mut self, events: u64) -> Self {
        self.snapshot_every = (events > 0).then_some(events);
        self
    }

    /// The untyped store underneath.
    pub fn store(&self) -> &Store {
        &self.store
    }

    /// The codec.
    pub fn codec(&self) -> &C {
        &self.codec
    }

    /// Encodes `event` into an [`EventData`] with its type name and a fresh
    /// id; set the id with [`EventData::with_id`] for idempotent retries and
    /// append it with [`Store::append`].
    ///
    /// # Errors
    ///
    /// [`Error::Encode`] if the codec cannot encode `event`.
    pub fn encode<E: DomainEvent>(&self, event: &E) -> Result<EventData> {
        let event_type = event.event_type();
        let payload = self.codec.encode(event).map_err(|e| Error::Encode {
            what: format!("an event of type '{event_type}'"),
            codec: C::NAME,
            source: e.into_inner(),
        })?;
        Ok(EventData::new(event_type, payload))
    }

    /// Decodes a stored event as an `E`, checking that it decodes to a
    /// variant with the type name stored beside it.
    ///
    /// # Errors
    ///
    /// [`Error::DecodeEvent`] if the payload does not decode as an `E`, or
    /// decodes as a variant with another type name; [`Error::EventErased`]
    /// if it was erased ([`crate::Store::forget`]).
    pub fn decode<E: DomainEvent>(&self, recorded: &RecordedEvent) -> Result<Recorded<E>> {
        Ok(Recorded {
            event: self.decode_payload(recorded)?,
            version: recorded.version,
            position: recorded.position,
            timestamp_nanos: recorded.timestamp_nanos,
            id: recorded.id,
            metadata: recorded.metadata.clone(),
        })
    }

    fn decode_payload<E: DomainEvent>(&self, recorded: &RecordedEvent) -> Result<E> {
        if recorded.erased {
            return Err(Error::EventErased {
                stream: recorded.stream.to_string(),
                version: recorded.version,
            });
        }
        let fail = |source: CodecError| Error::DecodeEvent {
            stream: recorded.stream.to_string(),
            version: recorded.version,
            event_type: recorded.event_type.to_string(),
            codec: C::NAME,
            source: source.into_inner(),
        };
        let event: E = self.codec.decode(&recorded.payload).map_err(fail)?;
        if event.event_type() != &*recorded.event_type {
            return Err(fail(CodecError::new(format!(
                "the payload decodes as type '{}'",
                event.event_type()
            ))));
        }
        Ok(event)
    }

    /// Encodes and appends `events` atomically, like [`Store::append`].
    ///
    /// # Errors
    ///
    /// [`Error::Encode`] if an event cannot be encoded, and the errors of
    /// [`Store::append`].
    pub fn append<E: DomainEvent>(
        &self,
        stream: &str,
        expected: ExpectedVersion,
        events: &[E],
    ) -> Result<AppendResult> {
        let data = events
            .iter()
            .map(|e| self.encode(e))
            .collect::<Result<Vec<_>>>()?;
        self.store.append(stream, expected, &data)
    }

    /// Reads and decodes events like [`Store::read_stream`]. An event that
    /// does not decode is an [`Error::DecodeEvent`] naming it.
    ///
    /// # Errors
    ///
    /// The errors of [`Store::read_stream`], and [`Error::DecodeEvent`] for
    /// an event that does not decode.
    pub fn read_stream<E: DomainEvent>(
        &self,
        stream: &str,
        from_version: u64,
        direction: Direction,
        max_count: usize,
    ) -> Result<Vec<Recorded<E>>> {
        self.store
            .read_stream(stream, from_version, direction, max_count)?
            .iter()
            .map(|e| self.decode(e))
            .collect()
    }

    /// Encodes `state` and saves it as a snapshot, like
    /// [`Store::save_snapshot`].
    ///
    /// # Errors
    ///
    /// [`Error::Encode`] if `state` cannot be encoded, and the errors of
    /// [`Store::save_snapshot`].
    pub fn save_snapshot<S: Serialize + ?Sized>(
        &self,
        stream: &str,
        version: u64,
        state: &S,
    ) -> Result<()> {
        let data = self.codec.encode(state).map_err(|e| Error::Encode {
            what: format!("a snapshot of '{stream}'"),
            codec: C::NAME,
            source: e.into_inner(),
        })?;
        self.store.save_snapshot(stream, version, data)
    }

    /// Loads and decodes the newest snapshot of `stream`, like
    /// [`Store::load_snapshot`]. One that does not decode as `S` is an
    /// [`Error::DecodeSnapshot`].
    ///
    /// # Errors
    ///
    /// [`Error::DecodeSnapshot`] if the snapshot does not decode as an `S`,
    /// and the errors of [`Store::load_snapshot`].
    pub fn load_snapshot<S: DeserializeOwned>(
        &self,
        stream: &str,
    ) -> Result<Option<TypedSnapshot<S>>> {
        self.load_snapshot_at_or_below(stream, u64::MAX)
    }

    /// [`TypedStore::load_snapshot`] for the newest snapshot at or below
    /// `max_version`.
    ///
    /// # Errors
    ///
    /// As [`TypedStore::load_snapshot`].
    pub fn load_snapshot_at_or_below<S: DeserializeOwned>(
        &self,
        stream: &str,
        max_version: u64,
    ) -> Result<Option<TypedSnapshot<S>>> {
        let Some(snapshot) = self.store.load_snapshot_at_or_below(stream, max_version)? else {
            return Ok(None);
        };
        let state = self
            .codec
            .decode(&snapshot.data)
            .map_err(|e| Error::DecodeSnapshot {
                stream: stream.to_string(),
                version: snapshot.version,
                codec: C::NAME,
                source: e.into_inner(),
            })?;
        Ok(Some(TypedSnapshot {
            version: snapshot.version,
            state,
        }))
    }

    /// Loads aggregate `A` from `stream`: its newest snapshot, then every
    /// event after it applied in order. A stream with no events loads as
    /// `A::default()`.
    ///
    /// A snapshot that no longer decodes as `A::Snapshot` (its type changed)
    /// is not an error: the aggregate is rebuilt from the first event and
    /// [`LoadedAggregate::snapshot_error`] says why. Events that do not
    /// decode are an [`Error::DecodeEvent`].
    ///
    /// # Errors
    ///
    /// [`Error::DecodeEvent`] for an event that does not decode, and the
    /// errors of [`Store::read_stream`] and [`Store::load_snapshot`]. A
    /// snapshot that does not decode is not an error.
    pub fn load_aggregate<A: Aggregate>(&self, stream: &str) -> Result<LoadedAggregate<A>> {
        self.load_aggregate_at(stream, u64::MAX)
    }

    /// Loads aggregate `A` from `stream` as it was at `at_version`: the
    /// newest snapshot at or below it, then the events after that snapshot
    /// up to and including `at_version`. For audits, debugging and temporal queries
    /// ("what did this order look like before the refund?").
    /// A stream with fewer events loads whole; [`LoadedAggregate::version`]
    /// says where the state stands. Snapshots and errors as in
    /// [`TypedStore::load_aggregate`].
    ///
    /// # Errors
    ///
    /// As [`TypedStore::load_aggregate`].
    ///
    /// ```
    /// # use evstore::{Aggregate, DomainEvent, ExpectedVersion, Options, Store};
    /// # use serde::{Deserialize, Serialize};
    /// # #[derive(Serialize, Deserialize)]
    /// # struct Deposited(u64);
    /// # impl DomainEvent for Deposited { fn event_type(&self) -> &str { "Deposited" } }
    /// # #[derive(Default, Serialize, Deserialize)]
    /// # struct Balance(u64);
    /// # impl Aggregate for Balance {
    /// #     type Event = Deposited;
    /// #     type Snapshot = u64;
    /// #     fn apply(&mut self, e: &Deposited) { self.0 += e.0 }
    /// #     fn to_snapshot(&self) -> u64 { self.0 }
    /// #     fn from_snapshot(s: u64) -> Self { Balance(s) }
    /// # }
    /// # let dir = tempfile::tempdir().unwrap();
    /// let store = Store::open(dir.path(), Options::default()).unwrap();
    /// let typed = store.typed();
    /// typed.append("acct-1", ExpectedVersion::Any, &[Deposited(10), Deposited(5), Deposited(20)]).unwrap();
    /// let then = typed.load_aggregate_at::<Balance>("acct-1", 1).unwrap();
    /// assert_eq!((then.state().0, then.version()), (15, Some(1)));
    /// ```
    pub fn load_aggregate_at<A: Aggregate>(
        &self,
        stream: &str,
        at_version: u64,
    ) -> Result<LoadedAggregate<A>> {
        let (mut state, snapshot_version, snapshot_error) =
            match self.load_snapshot_at_or_below::<A::Snapshot>(stream, at_version) {
                Ok(Some(snapshot)) => (
                    A::from_snapshot(snapshot.state),
                    Some(snapshot.version),
                    None,
                ),
                Ok(None) => (A::default(), None, None),
                Err(error @ Error::DecodeSnapshot { .. }) => (A::default(), None, Some(error)),
                Err(error) => return Err(error),
            };
        let mut version = snapshot_version;
        // Counted as applied: a stream whose metadata drops its oldest
        // events starts later than version 0.
        let mut events_replayed = 0u64;
        loop {
            let from = version.map_or(0, |v| v + 1);
            if from > at_version {
                break;
            }
            let chunk = usize::try_from(at_version - from).map_or(REPLAY_CHUNK, |rest| {
                rest.saturating_add(1).min(REPLAY_CHUNK)
            });
            let events = self
                .store
                .read_stream(stream, from, Direction::Forward, chunk)?;
            // Versions a stream no longer keeps are skipped, so a read of
            // `chunk` events may reach past `at_version`.
            let upto = events.partition_point(|e| e.version <= at_version);
            for recorded in events.get(..upto).unwrap_or_default() {
                state.apply(&self.decode_payload::<A::Event>(recorded)?);
                version = Some(recorded.version);
                events_replayed += 1;
            }
            if events.len() < chunk || upto < events.len() {
                break;
            }
        }
        Ok(LoadedAggregate::new(
            stream.to_string(),
            state,
            version,
            snapshot_version,
            events_replayed,
            snapshot_error,
        ))
    }

    /// Appends `events` to a loaded aggregate's stream, expecting the stream
    /// to be at the version it was loaded at
    /// ([`ExpectedVersion::Exact`], or [`ExpectedVersion::NoStream`] for a
    /// new one), then applies them to its state. If another writer got
    /// there first, nothing is written, the state is unchanged and the
    /// error is [`Error::WrongExpectedVersion`]: load again and retry.
    ///
    /// With [`TypedStore::snapshot_every`] set, a snapshot is saved when the
    /// stream's event count crosses a multiple of the interval. The events are
    /// already written by then, so a failed snapshot is reported in
    /// [`SavedAggregate::snapshot_error`], not as an error.
    ///
    /// # Errors
    ///
    /// [`Error::WrongExpectedVersion`] if another writer appended first, and
    /// the other errors of [`TypedStore::append`]. A failed snapshot is not
    /// an error.
    pub fn save_aggregate<A: Aggregate>(
        &self,
        aggregate: &mut LoadedAggregate<A>,
        events: &[A::Event],
    ) -> Result<SavedAggregate> {
        let expected = match aggregate.version() {
            Some(version) => ExpectedVersion::Exact(version),
            None => ExpectedVersion::NoStream,
        };
        let appended = self.append(aggregate.stream(), expected, events)?;
        for event in events {
            aggregate.state.apply(event);
        }
        aggregate.set_version(appended.last_version);
        let mut saved = SavedAggregate {
            appended,
            snapshot_saved: None,
            snapshot_error: None,
        };
        if let Some(every) = self.snapshot_every {
            let (count_before, count_after) = (appended.first_version, appended.last_version + 1);
            if count_after / every > count_before / every {
                let snapshot = aggregate.state.to_snapshot();
                match self.save_snapshot(aggregate.stream(), appended.last_version, &snapshot) {
                    Ok(()) => {
                        aggregate.set_snapshot_version(appended.last_version);
                        saved.snapshot_saved = Some(appended.last_version);
                    }
                    Err(error) => saved.snapshot_error = Some(error),
                }
            }
        }
        Ok(saved)
    }
}
