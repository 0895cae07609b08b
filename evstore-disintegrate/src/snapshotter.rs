//! disintegrate's `StateSnapshotter`: decision states saved beside the
//! store, so loading a state reads only the events after its snapshot.
//!
//! A disintegrate state is the fold of a query, not of one stream, so it
//! does not fit evstore's per-stream snapshots. Each state is kept in a
//! file of its own under `<store>/disintegrate-snapshots/`, named after a
//! hash of the state's name and query, in this layout (integers little
//! endian):
//!
//! | bytes | field |
//! |---|---|
//! | 8 | magic `EVDSNAP1` |
//! | 4 | CRC-32 of everything after this field |
//! | 8 | version: the id of the last event the state has seen |
//! | 16 | the id (UUID) of the event at that version, zero for version 0 |
//! | 4 | length of the key (state name, newline, query) |
//! | n | the key |
//! | rest | the state, as JSON |
//!
//! A file is written beside its final name, synced, renamed into place and
//! the directory synced. A snapshot is used only if it is whole, is for
//! the same state and query, and still agrees with the log: its version
//! is not past the log's head and the event at that version is the one it
//! was taken after (a store restored from an older copy, say, fails this).
//! Anything else loads the state from the log instead.

use crate::error::Error;
use async_trait::async_trait;
use disintegrate::{
    BoxDynError, Event, IntoState, StatePart, StateQuery, StateSnapshotter, StreamQuery,
};
use evstore::{Direction, Store, Uuid};
use serde::de::DeserializeOwned;
use serde::Serialize;
use std::io::Write;
use std::path::{Path, PathBuf};

/// The directory, inside the store's, that holds the snapshot files.
pub const SNAPSHOT_DIR: &str = "disintegrate-snapshots";

const MAGIC: &[u8; 8] = b"EVDSNAP1";
/// Magic, CRC, version, event id and key length.
const HEADER_LEN: usize = 8 + 4 + 8 + 16 + 4;

/// Saves decision states every so many events and loads them back.
///
/// ```
/// # #[tokio::main(flavor = "current_thread")] async fn main() {
/// use disintegrate::serde::json::Json;
/// use disintegrate::{DecisionMaker, EventSourcedStateStore, WithSnapshot};
/// use evstore::{Options, Store};
/// use evstore_disintegrate::{EvstoreEventStore, EvstoreSnapshotter};
/// # #[derive(Debug, Clone, PartialEq, serde::Serialize, serde::Deserialize, disintegrate::Event)]
/// # #[stream(CounterEvent, [Incremented])]
/// # enum DomainEvent { Incremented { #[id] counter_id: String } }
/// # let dir = tempfile::tempdir().unwrap();
/// let store = Store::open(dir.path(), Options::default()).unwrap();
/// let events = EvstoreEventStore::new(store.clone(), Json::<DomainEvent>::default());
/// let snapshots = EvstoreSnapshotter::new(store.clone(), 100);
/// let decisions = DecisionMaker::new(EventSourcedStateStore::new(events, WithSnapshot::new(snapshots)));
/// # let _ = decisions;
/// # }
/// ```
#[derive(Debug, Clone)]
pub struct EvstoreSnapshotter {
    store: Store,
    dir: PathBuf,
    every: u64,
}

impl EvstoreSnapshotter {
    /// A snapshotter for `store` that saves a state once it was built from
    /// more than `every` events since its last snapshot.
    #[must_use]
    pub fn new(store: Store, every: u64) -> Self {
        let dir = store.path().join(SNAPSHOT_DIR);
        EvstoreSnapshotter { store, dir, every }
    }

    /// The directory holding the snapshot files.
    #[must_use]
    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// The id of the event with disintegrate id `version` (position
    /// `version - 1`), if the log still has it.
    fn event_at(&self, version: u64) -> Result<Option<Uuid>, evstore::Error> {
        let Some(position) = version.checked_sub(1) else {
            return Ok(None);
        };
        let read = self.store.read_all(position, Direction::Forward, 1)?;
        Ok(read
            .first()
            .filter(|event| event.position == position)
            .map(|event| event.id))
    }

    /// Whether a snapshot at `version`, taken after event `event_id`, still
    /// agrees with the log.
    fn agrees_with_log(&self, version: u64, event_id: Uuid) -> bool {
        let head = self
            .store
            .last_position()
            .map_or(0, |position| position + 1);
        if version > head {
            return false;
        }
        match self.event_at(version) {
            Ok(Some(id)) => id == event_id,
            // Version 0, or an event removed since (deleted or expired):
            // nothing contradicts it.
            Ok(None) => true,
            Err(_) => false,
        }
    }
}

/// The key a state's snapshot is filed under: its name and its query,
/// origins left out (they change as the state advances).
fn snapshot_key<E: Event + Clone>(name: &str, query: &StreamQuery<u64, E>) -> String {
    let mut key = format!("{name}\n");
    for filter in query.filters() {
        let excluded = filter
            .excluded_events()
            .map(|excluded| excluded.join(","))
            .unwrap_or_default();
        let identifiers: Vec<String> = filter
            .identifiers()
            .iter()
            .map(|(ident, value)| format!("{ident}={value}"))
            .collect();
        key.push_str(&format!(
            "({}|-{}|{})",
            filter.events().join(","),
            excluded,
            identifiers.join(",")
        ));
    }
    key
}

fn file_name(key: &str) -> String {
    format!(
        "{}.snapshot",
        Uuid::new_v5(&Uuid::NAMESPACE_OID, key.as_bytes()).simple()
    )
}

/// A decoded snapshot file.
struct SnapshotFile {
    version: u64,
    event_id: Uuid,
    key: String,
    state: Vec<u8>,
}

fn encode(file: &SnapshotFile) -> Vec<u8> {
    let mut body = Vec::with_capacity(HEADER_LEN + file.key.len() + file.state.len());
    body.extend_from_slice(&file.version.to_le_bytes());
    body.extend_from_slice(file.event_id.as_bytes());
    body.extend_from_slice(
        &u32::try_from(file.key.len())
            .unwrap_or(u32::MAX)
            .to_le_bytes(),
    );
    body.extend_from_slice(file.key.as_bytes());
    body.extend_from_slice(&file.state);
    let mut bytes = Vec::with_capacity(12 + body.len());
    bytes.extend_from_slice(MAGIC);
    bytes.extend_from_slice(&crc32fast::hash(&body).to_le_bytes());
    bytes.extend_from_slice(&body);
    bytes
}

/// Splits `bytes` at `n`, or `None` if it is shorter.
fn take(bytes: &[u8], n: usize) -> Option<(&[u8], &[u8])> {
    (bytes.len() >= n).then(|| bytes.split_at(n))
}

fn decode(bytes: &[u8]) -> Option<SnapshotFile> {
    let (magic, rest) = take(bytes, MAGIC.len())?;
    if magic != MAGIC {
        return None;
    }
    let (crc, body) = take(rest, 4)?;
    if crc32fast::hash(body).to_le_bytes() != crc {
        return None;
    }
    let (version, rest) = take(body, 8)?;
    let (event_id, rest) = take(rest, 16)?;
    let (key_len, rest) = take(rest, 4)?;
    let key_len = usize::try_from(u32::from_le_bytes(key_len.try_into().ok()?)).ok()?;
    let (key, state) = take(rest, key_len)?;
    Some(SnapshotFile {
        version: u64::from_le_bytes(version.try_into().ok()?),
        event_id: Uuid::from_slice(event_id).ok()?,
        key: String::from_utf8(key.to_vec()).ok()?,
        state: state.to_vec(),
    })
}

/// Writes `bytes` as `path`, durably: beside it, synced, renamed into
/// place, directory synced.
fn write_durably(dir: &Path, path: &Path, bytes: &[u8]) -> Result<(), Error> {
    let failed = |source| Error::Snapshot {
        path: path.to_path_buf(),
        source,
    };
    std::fs::create_dir_all(dir).map_err(failed)?;
    let mut file = tempfile::NamedTempFile::new_in(dir).map_err(failed)?;
    file.write_all(bytes).map_err(failed)?;
    file.as_file().sync_all().map_err(failed)?;
    file.persist(path).map_err(|error| failed(error.error))?;
    std::fs::File::open(dir)
        .and_then(|dir| dir.sync_all())
        .map_err(failed)
}

#[async_trait]
impl StateSnapshotter<u64> for EvstoreSnapshotter {
    async fn load_snapshot<S>(&self, default: StatePart<u64, S>) -> StatePart<u64, S>
    where
        S: Send + Sync + DeserializeOwned + StateQuery + 'static,
    {
        let key = snapshot_key(S::NAME, &default.query::<u64>());
        let path = self.dir.join(file_name(&key));
        let Ok(Ok(bytes)) = tokio::task::spawn_blocking(move || std::fs::read(path)).await else {
            return default;
        };
        let Some(file) = decode(&bytes) else {
            return default;
        };
        if file.key != key || !self.agrees_with_log(file.version, file.event_id) {
            return default;
        }
        match serde_json::from_slice::<S>(&file.state) {
            Ok(state) => StatePart::new(file.version, state),
            Err(_) => default,
        }
    }

    async fn store_snapshot<S>(&self, state: &StatePart<u64, S>) -> Result<(), BoxDynError>
    where
        S: Send + Sync + Serialize + StateQuery + 'static,
    {
        if state.applied_events() <= self.every {
            return Ok(());
        }
        let key = snapshot_key(S::NAME, &state.query::<u64>());
        let version = state.version();
        let event_id = self.event_at(version)?.unwrap_or_else(Uuid::nil);
        let file = SnapshotFile {
            version,
            event_id,
            state: serde_json::to_vec(&state.clone().into_state())?,
            key,
        };
        let dir = self.dir.clone();
        let path = dir.join(file_name(&file.key));
        let bytes = encode(&file);
        tokio::task::spawn_blocking(move || write_durably(&dir, &path, &bytes)).await??;
        Ok(())
    }
}
