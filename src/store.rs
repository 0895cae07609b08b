//! The public entry point: open, append, read, flush, close.

use crate::checkpoint::{Checkpoints, CHECKPOINTS_DIR};
use crate::error::{Error, Result};
use crate::index::hash::HashKind;
use crate::index::Location;
use crate::log::follower::Follower;
use crate::log::segment::now_nanos;
use crate::log::writer::{
    encoded_batch_len, max_batch_len, AppendRequest, Command, Shared, Writer,
};
use crate::log::{self, record, RecoveryStats};
use crate::options::Options;
use crate::snapshot::{DamagedSnapshot, Snapshot, Snapshots, SNAPSHOTS_DIR};
use crate::storage::{child, LockGuard};
use crate::types::{
    AppendResult, Direction, Durability, EventData, ExpectedVersion, RecordedEvent,
};
use parking_lot::Mutex;
use std::io;
use std::path::{Path, PathBuf};
use std::sync::atomic::Ordering;
use std::sync::mpsc::sync_channel;
use std::sync::Arc;
use std::thread::JoinHandle;

/// Name of the lock file inside a store directory.
pub const LOCK_FILE: &str = "LOCK";
/// Name of the directory holding segment files.
pub const SEGMENTS_DIR: &str = "segments";

/// An open event store. Cheap to clone; every clone is the same store, and
/// it is `Send + Sync`, so share it between threads freely.
///
/// ```
/// use evstore::{Direction, EventData, ExpectedVersion, Options, Store};
/// # fn main() -> evstore::Result<()> {
/// let dir = tempfile::tempdir().unwrap();
/// let store = Store::open(dir.path(), Options::default())?;
/// let written = store.append(
///     "order-42",
///     ExpectedVersion::NoStream,
///     &[EventData::new("OrderPlaced", &b"{\"total\":42}"[..])],
/// )?;
/// assert_eq!(written.last_version, 0);
/// let events = store.read_stream("order-42", 0, Direction::Forward, 100)?;
/// assert_eq!(&events[0].event_type[..], "OrderPlaced");
/// # Ok(()) }
/// ```
#[derive(Clone)]
pub struct Store {
    inner: Arc<StoreInner>,
}

impl std::fmt::Debug for Store {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Store")
            .field("dir", &self.inner.dir)
            .finish_non_exhaustive()
    }
}

struct StoreInner {
    dir: PathBuf,
    shared: Arc<Shared>,
    flusher: Mutex<Option<JoinHandle<()>>>,
    recovery: RecoveryStats,
    snapshots: Snapshots,
    checkpoints: Checkpoints,
    /// Set in a read-only store, which holds no lock.
    follower: Option<Arc<Mutex<Follower>>>,
    _lock: Option<Box<dyn LockGuard>>,
}

impl Drop for StoreInner {
    fn drop(&mut self) {
        self.shared.close();
        if let Some(handle) = self.flusher.lock().take() {
            let _ = handle.join();
        }
    }
}

impl Store {
    /// Opens the store in `dir`, creating it if needed and recovering it if
    /// the last process stopped mid-write: a torn tail is cleared, damage
    /// anywhere else is an [`Error::Corrupted`].
    ///
    /// A second open of the same directory, from this process or another,
    /// fails with [`Error::Locked`] while the first is open.
    ///
    /// ```
    /// use evstore::{Error, Options, Store};
    /// let dir = tempfile::tempdir().unwrap();
    /// let store = Store::open(dir.path(), Options::default()).unwrap();
    /// assert!(matches!(Store::open(dir.path(), Options::default()), Err(Error::Locked { .. })));
    /// drop(store);
    /// assert!(Store::open(dir.path(), Options::default()).is_ok());
    /// ```
    pub fn open(dir: impl AsRef<Path>, options: Options) -> Result<Store> {
        options.validate()?;
        let dir = dir.as_ref().to_path_buf();
        let storage = Arc::clone(&options.storage);
        storage
            .create_dir_all(&dir)
            .map_err(|e| Error::io(format!("creating {}", dir.display()), e))?;
        let lock_path = child(&dir, LOCK_FILE);
        let lock = storage.lock_file(&lock_path).map_err(|e| {
            if e.kind() == io::ErrorKind::WouldBlock {
                Error::Locked {
                    dir: dir.clone(),
                    holder: std::fs::read_to_string(&lock_path)
                        .ok()
                        .map(|s| s.trim().to_string())
                        .filter(|s| !s.is_empty()),
                }
            } else {
                Error::io(format!("locking {}", lock_path.display()), e)
            }
        })?;
        let segments_dir = child(&dir, SEGMENTS_DIR);
        let snapshots_dir = child(&dir, SNAPSHOTS_DIR);
        let checkpoints_dir = child(&dir, CHECKPOINTS_DIR);
        storage
            .create_dir_all(&segments_dir)
            .and_then(|()| storage.create_dir_all(&snapshots_dir))
            .and_then(|()| storage.create_dir_all(&checkpoints_dir))
            .and_then(|()| storage.sync_dir(&dir))
            .map_err(|e| Error::io(format!("creating the directories of {}", dir.display()), e))?;
        let checkpoints = Checkpoints::new(Arc::clone(&storage), checkpoints_dir);
        let snapshots = Snapshots::new(Arc::clone(&storage), snapshots_dir, options.snapshots_kept);

        let recovered = recover_log(&options, &segments_dir, false)?;
        let active = recovered.active.ok_or_else(|| {
            Error::io(
                "recovering the log",
                io::Error::other("recovery left no segment to append to"),
            )
        })?;
        let shared = Arc::new(Shared::new(
            segments_dir,
            options,
            recovered.index,
            recovered.next_position,
        ));
        let writer = Writer::new(
            Arc::clone(&shared),
            active,
            recovered.write_offset,
            recovered.next_position,
            recovered.recorded_durable,
        );
        shared.install_writer(writer);
        let flusher_shared = Arc::clone(&shared);
        let flusher = std::thread::Builder::new()
            .name("evstore-flusher".into())
            .spawn(move || flusher_shared.run_flusher())
            .map_err(|e| Error::io("starting the flusher thread", e))?;
        Ok(Store {
            inner: Arc::new(StoreInner {
                dir,
                shared,
                flusher: Mutex::new(Some(flusher)),
                recovery: recovered.stats,
                snapshots,
                checkpoints,
                follower: None,
                _lock: Some(lock),
            }),
        })
    }

    /// Opens the store in `dir` for reading only, beside the process that
    /// may be writing it: no lock is taken and nothing is written, created
    /// or repaired (a damaged index file is rebuilt in memory; a torn tail
    /// is left to the writer's recovery).
    ///
    /// Readers see what the store's durability allows: with
    /// [`Durability::Sync`] (the default) the events the writer has recorded
    /// as durable, with [`Durability::Buffered`] every whole batch in the
    /// files. Events the writer appends later appear by themselves, within
    /// [`Options::poll_interval`], to reads and subscriptions alike; or at
    /// once after [`Store::refresh`]. Appends, flushes and saves fail with
    /// [`Error::ReadOnly`].
    ///
    /// ```
    /// use evstore::{Direction, EventData, ExpectedVersion, Options, Store};
    /// # fn main() -> evstore::Result<()> {
    /// let dir = tempfile::tempdir().unwrap();
    /// let writer = Store::open(dir.path(), Options::default())?;
    /// writer.append("sensor-7", ExpectedVersion::Any, &[EventData::new("Reading", &b"21.5"[..])])?;
    ///
    /// // Another process (or this one) reads without disturbing the writer.
    /// let reader = Store::open_read_only(dir.path(), Options::default())?;
    /// writer.append("sensor-7", ExpectedVersion::Any, &[EventData::new("Reading", &b"21.7"[..])])?;
    /// reader.refresh()?;
    /// let readings = reader.read_stream("sensor-7", 0, Direction::Forward, 10)?;
    /// assert_eq!(readings.len(), 2);
    /// assert!(reader.append("sensor-7", ExpectedVersion::Any, &[EventData::new("Reading", &b"0"[..])]).is_err());
    /// # Ok(()) }
    /// ```
    pub fn open_read_only(dir: impl AsRef<Path>, options: Options) -> Result<Store> {
        options.validate()?;
        let dir = dir.as_ref().to_path_buf();
        let storage = Arc::clone(&options.storage);
        let segments_dir = child(&dir, SEGMENTS_DIR);
        match storage.list_dir(&segments_dir) {
            Ok(_) => {}
            Err(e) if e.kind() == io::ErrorKind::NotFound => {
                return Err(Error::NotAStore { dir });
            }
            Err(e) => return Err(Error::io(format!("listing {}", segments_dir.display()), e)),
        }
        let checkpoints = Checkpoints::new(Arc::clone(&storage), child(&dir, CHECKPOINTS_DIR));
        let snapshots = Snapshots::new(
            Arc::clone(&storage),
            child(&dir, SNAPSHOTS_DIR),
            options.snapshots_kept,
        )
        .read_only();
        let recovered = recover_log(&options, &segments_dir, true)?;
        let unindexed = recovered
            .index
            .segment_summaries()
            .into_iter()
            .enumerate()
            .filter(|(_, (_, _, sealed, file))| *sealed && file.is_none())
            .map(|(ordinal, (segment, ..))| (ordinal as u32, segment))
            .collect();
        let follower = Follower::new(
            Arc::clone(&storage),
            segments_dir.clone(),
            recovered.active,
            recovered.write_offset,
            recovered.next_position,
            recovered.recorded_durable,
            unindexed,
        );
        let poll_interval = options.poll_interval;
        let shared = Arc::new(Shared::new(
            segments_dir,
            options,
            recovered.index,
            recovered.next_position,
        ));
        shared.durable.store(follower.durable(), Ordering::Release);
        let follower = Arc::new(Mutex::new(follower));
        let poller = {
            let shared = Arc::clone(&shared);
            let follower = Arc::clone(&follower);
            std::thread::Builder::new()
                .name("evstore-follower".into())
                .spawn(move || {
                    while !shared.wait_unless_closed(poll_interval) {
                        // A failure stops following; `refresh` reports it.
                        if follower.lock().poll(&shared).is_err() {
                            return;
                        }
                    }
                })
                .map_err(|e| Error::io("starting the follower thread", e))?
        };
        Ok(Store {
            inner: Arc::new(StoreInner {
                dir,
                shared,
                flusher: Mutex::new(Some(poller)),
                recovery: recovered.stats,
                snapshots,
                checkpoints,
                follower: Some(follower),
                _lock: None,
            }),
        })
    }

    /// Whether the store was opened with [`Store::open_read_only`].
    pub fn is_read_only(&self) -> bool {
        self.inner.follower.is_some()
    }

    /// In a read-only store, reads the events the writing process appended
    /// since the last look, now rather than at the next poll, and returns
    /// the end of what readers see (the last visible position plus one).
    /// A store that writes is always up to date: it just returns that end.
    pub fn refresh(&self) -> Result<u64> {
        if let Some(follower) = &self.inner.follower {
            follower.lock().poll(&self.inner.shared)?;
        }
        Ok(self.visible_end())
    }

    /// The segments of the log and its watermarks: what `evstore info`
    /// shows.
    ///
    /// ```
    /// use evstore::{EventData, ExpectedVersion, Options, Store};
    /// # let dir = tempfile::tempdir().unwrap();
    /// let store = Store::open(dir.path(), Options::default()).unwrap();
    /// store.append("a", ExpectedVersion::Any, &[EventData::new("E", &b"x"[..])]).unwrap();
    /// let info = store.log_info();
    /// assert_eq!(info.segments.len(), 1);
    /// assert_eq!((info.segments[0].events, info.durable_end), (1, 1));
    /// ```
    pub fn log_info(&self) -> LogInfo {
        let shared = &self.inner.shared;
        let (summaries, stream_count) = {
            let index = shared.index.read();
            (index.segment_summaries(), index.stream_count())
        };
        let segments = summaries
            .into_iter()
            .map(|(segment, events, sealed, index_file)| SegmentInfo {
                path: segment.path().to_path_buf(),
                base_position: segment.base_position(),
                events,
                capacity: segment.capacity(),
                file_len: segment.file().len().unwrap_or(0),
                sealed,
                index_file,
            })
            .collect();
        LogInfo {
            segments,
            written_end: shared.written.load(Ordering::Acquire),
            durable_end: shared.durable.load(Ordering::Acquire),
            stream_count,
        }
    }

    pub(crate) fn refuse_if_read_only(&self, operation: &'static str) -> Result<()> {
        if self.is_read_only() {
            return Err(Error::ReadOnly { operation });
        }
        Ok(())
    }

    /// The store directory.
    pub fn path(&self) -> &Path {
        &self.inner.dir
    }

    /// What recovery found and did when this store was opened.
    pub fn recovery_stats(&self) -> RecoveryStats {
        self.inner.recovery
    }

    pub(crate) fn checkpoints(&self) -> &Checkpoints {
        &self.inner.checkpoints
    }

    pub(crate) fn shared(&self) -> &Shared {
        &self.inner.shared
    }

    pub(crate) fn options(&self) -> &Options {
        &self.inner.shared.options
    }

    /// Appends `events` to `stream` if it is at `expected`, atomically: after
    /// any crash either all of them exist or none. Acknowledged with the
    /// store's default durability.
    ///
    /// ```
    /// use evstore::{Error, EventData, ExpectedVersion, Options, Store};
    /// # let dir = tempfile::tempdir().unwrap();
    /// let store = Store::open(dir.path(), Options::default()).unwrap();
    /// let first = store
    ///     .append("cart-1", ExpectedVersion::NoStream, &[EventData::new("Created", &b"{}"[..])])
    ///     .unwrap();
    /// store
    ///     .append("cart-1", ExpectedVersion::Exact(first.last_version), &[EventData::new("ItemAdded", &b"{}"[..])])
    ///     .unwrap();
    /// // A writer that read an older state loses the race and writes nothing.
    /// let stale = store.append("cart-1", ExpectedVersion::Exact(0), &[EventData::new("ItemAdded", &b"{}"[..])]);
    /// assert!(matches!(stale, Err(Error::WrongExpectedVersion { actual: Some(1), .. })));
    /// ```
    pub fn append(
        &self,
        stream: &str,
        expected: ExpectedVersion,
        events: &[EventData],
    ) -> Result<AppendResult> {
        self.append_with_durability(stream, expected, events, self.options().durability)
    }

    /// [`Store::append`] with an explicit durability for this append.
    pub fn append_with_durability(
        &self,
        stream: &str,
        expected: ExpectedVersion,
        events: &[EventData],
        durability: Durability,
    ) -> Result<AppendResult> {
        self.refuse_if_read_only("append")?;
        let encoded_len = self.validate_append(stream, events)?;
        if let Some(error) = self.inner.shared.poisoned() {
            return Err(error);
        }
        let (reply, result) = sync_channel(1);
        let mut records = Vec::with_capacity(encoded_len);
        for event in events {
            record::encode_unfinished_record(
                &mut records,
                &record::RecordBody {
                    id: event.id,
                    stream,
                    event_type: &event.event_type,
                    metadata: &event.metadata,
                    payload: &event.payload,
                },
            );
        }
        let ids_absent_below = self
            .inner
            .shared
            .index
            .read()
            .sealed_without_ids(&events.iter().map(|e| e.id.as_u128()).collect::<Vec<_>>())?;
        let request = AppendRequest {
            stream: stream.to_string(),
            expected,
            records,
            count: events.len(),
            durability,
            encoded_len,
            ids_absent_below,
            reply,
        };
        self.inner
            .shared
            .call(Command::Append(request), encoded_len, result)
    }

    fn validate_append(&self, stream: &str, events: &[EventData]) -> Result<usize> {
        let options = self.options();
        validate_stream_name(stream, options.max_stream_name_len)?;
        if events.is_empty() {
            return Err(Error::EmptyBatch);
        }
        let segment_room = max_batch_len(options.segment_size);
        let max_event = options
            .max_event_size
            .min(segment_room.saturating_sub(record::RECORD_HEADER_LEN + 8 + stream.len()));
        for event in events {
            let event_type = event.event_type();
            if event_type.is_empty() {
                return Err(Error::InvalidEventType {
                    event_type: event_type.into(),
                    reason: "empty".into(),
                });
            }
            if event_type.len() > options.max_event_type_len {
                return Err(Error::InvalidEventType {
                    event_type: event_type.into(),
                    reason: format!("longer than {} bytes", options.max_event_type_len),
                });
            }
            if event.size() > max_event
                || record::record_len(
                    stream.len(),
                    event_type.len(),
                    event.metadata.len(),
                    event.payload.len(),
                ) + record::BATCH_HEADER_LEN
                    > segment_room
            {
                return Err(Error::EventTooLarge {
                    size: event.size(),
                    max: max_event,
                });
            }
        }
        let encoded = encoded_batch_len(stream, events);
        if encoded > segment_room || events.len() > u32::MAX as usize {
            return Err(Error::BatchTooLarge {
                size: encoded,
                max: segment_room,
            });
        }
        Ok(encoded)
    }

    /// Makes every append acknowledged so far durable.
    pub fn flush(&self) -> Result<()> {
        self.refuse_if_read_only("flush")?;
        let (reply, result) = sync_channel(1);
        self.inner.shared.call(Command::Flush(reply), 0, result)
    }

    /// Flushes and stops the writer. Other clones of this store can still
    /// read, but appends fail with [`Error::Closed`]; the directory lock is
    /// released when the last clone is dropped.
    pub fn close(self) -> Result<()> {
        let flushed = match self.flush() {
            Err(Error::Closed | Error::ReadOnly { .. }) => Ok(()),
            other => other,
        };
        self.inner.shared.close();
        if let Some(handle) = self.inner.flusher.lock().take() {
            let _ = handle.join();
        }
        flushed
    }

    /// The end of what readers may see: durable events in a `Sync` store,
    /// every written event in a `Buffered` one.
    pub(crate) fn visible_end(&self) -> u64 {
        let shared = &self.inner.shared;
        match shared.options.durability {
            Durability::Sync => shared.durable.load(Ordering::Acquire),
            Durability::Buffered => shared.written.load(Ordering::Acquire),
        }
    }

    /// Reads up to `max_count` events of `stream` starting at version
    /// `from_version`, oldest first (`Forward`) or newest first (`Backward`;
    /// a `from_version` past the end starts at the last event, so
    /// `u64::MAX` reads the newest). A stream with no events reads as empty.
    ///
    /// ```
    /// use evstore::{Direction, EventData, ExpectedVersion, Options, Store};
    /// # let dir = tempfile::tempdir().unwrap();
    /// let store = Store::open(dir.path(), Options::default()).unwrap();
    /// let events: Vec<_> = (0..5).map(|i| EventData::new("Tick", vec![i as u8])).collect();
    /// store.append("clock", ExpectedVersion::Any, &events).unwrap();
    /// let newest_two = store.read_stream("clock", u64::MAX, Direction::Backward, 2).unwrap();
    /// assert_eq!(newest_two.iter().map(|e| e.version).collect::<Vec<_>>(), [4, 3]);
    /// assert!(store.read_stream("nobody", 0, Direction::Forward, 10).unwrap().is_empty());
    /// ```
    pub fn read_stream(
        &self,
        stream: &str,
        from_version: u64,
        direction: Direction,
        max_count: usize,
    ) -> Result<Vec<RecordedEvent>> {
        self.read_stream_below(
            stream,
            from_version,
            direction,
            max_count,
            self.visible_end(),
        )
    }

    /// [`Store::read_stream`] of the events at positions below `end`.
    pub(crate) fn read_stream_below(
        &self,
        stream: &str,
        from_version: u64,
        direction: Direction,
        max_count: usize,
        end: u64,
    ) -> Result<Vec<RecordedEvent>> {
        let (start, locations): (u64, Vec<Location>) = {
            let index = self.inner.shared.index.read();
            let (start, _, locations) = index.stream_locations(stream, end, |visible| {
                version_range(visible, from_version, direction, max_count)
            })?;
            (start, locations)
        };
        let mut events = Vec::with_capacity(locations.len());
        // Events of one segment are read through one view of it.
        for group in locations.chunk_by(|a, b| Arc::ptr_eq(&a.segment, &b.segment)) {
            if let Some(first) = group.first() {
                first
                    .segment
                    .read_located(group.iter().map(|l| (l.offset, l.position)), &mut events)?;
            }
        }
        // The index said these records are versions start.. of the stream;
        // the records must agree, so a damaged index can never hand out
        // another event.
        for (i, (event, location)) in events.iter().zip(&locations).enumerate() {
            let version = start + i as u64;
            if *event.stream != *stream || event.version != version {
                return Err(Error::corrupted(
                    location.segment.path(),
                    u64::from(location.offset),
                    format!(
                        "the index places event '{}' version {} at '{stream}' version {version}",
                        &*event.stream, event.version
                    ),
                ));
            }
        }
        if direction == Direction::Backward {
            events.reverse();
        }
        Ok(events)
    }

    /// Reads up to `max_count` events of the global log (`$all`) starting at
    /// `from_position`, in position order (`Forward`) or reverse
    /// (`Backward`; a `from_position` past the end starts at the last event).
    ///
    /// ```
    /// use evstore::{Direction, EventData, ExpectedVersion, Options, Store};
    /// # let dir = tempfile::tempdir().unwrap();
    /// let store = Store::open(dir.path(), Options::default()).unwrap();
    /// store.append("a", ExpectedVersion::Any, &[EventData::new("A", &b""[..])]).unwrap();
    /// store.append("b", ExpectedVersion::Any, &[EventData::new("B", &b""[..])]).unwrap();
    /// let all = store.read_all(0, Direction::Forward, 10).unwrap();
    /// assert_eq!(all.iter().map(|e| e.position).collect::<Vec<_>>(), [0, 1]);
    /// ```
    pub fn read_all(
        &self,
        from_position: u64,
        direction: Direction,
        max_count: usize,
    ) -> Result<Vec<RecordedEvent>> {
        self.read_all_below(from_position, direction, max_count, self.visible_end())
    }

    /// [`Store::read_all`] of the events at positions below `end`.
    pub(crate) fn read_all_below(
        &self,
        from_position: u64,
        direction: Direction,
        max_count: usize,
        end: u64,
    ) -> Result<Vec<RecordedEvent>> {
        let (start, stop) = version_range(end, from_position, direction, max_count);
        let runs = self
            .inner
            .shared
            .index
            .read()
            .runs(start, stop)?
            .ok_or_else(|| missing(start))?;
        let mut events = Vec::with_capacity((stop - start) as usize);
        for run in &runs {
            run.segment
                .read_run(run.first_position, &run.offsets, &mut events)?;
        }
        if direction == Direction::Backward {
            events.reverse();
        }
        Ok(events)
    }

    /// The version of the last visible event of `stream`, or `None` if it has
    /// none.
    pub fn stream_version(&self, stream: &str) -> Result<Option<u64>> {
        let end = self.visible_end();
        let visible = self.inner.shared.index.read().visible_count(stream, end)?;
        Ok(visible.checked_sub(1))
    }

    /// The position of the last visible event, or `None` if the store is
    /// empty.
    pub fn last_position(&self) -> Option<u64> {
        self.visible_end().checked_sub(1)
    }

    /// The number of streams with at least one written event.
    pub fn stream_count(&self) -> usize {
        self.inner.shared.index.read().stream_count()
    }

    /// Every stream with at least one visible event, in name order, with
    /// its version. The catalogue is read a page at a time, so iterating a
    /// store with millions of streams holds only one page of names; streams
    /// created meanwhile appear if their name sorts after the current page.
    ///
    /// ```
    /// use evstore::{EventData, ExpectedVersion, Options, Store};
    /// # let dir = tempfile::tempdir().unwrap();
    /// let store = Store::open(dir.path(), Options::default()).unwrap();
    /// for stream in ["order-2", "order-1", "order-2"] {
    ///     store.append(stream, ExpectedVersion::Any, &[EventData::new("E", &b""[..])]).unwrap();
    /// }
    /// let streams: Vec<_> = store.streams().collect::<evstore::Result<_>>().unwrap();
    /// assert_eq!(streams[0].name, "order-1");
    /// assert_eq!((streams[1].name.as_str(), streams[1].version), ("order-2", 1));
    /// ```
    pub fn streams(&self) -> Streams {
        Streams {
            store: self.clone(),
            page: std::collections::VecDeque::new(),
            after: None,
            done: false,
        }
    }

    /// Index files found damaged after open and rebuilt from their segments.
    /// (Those found at open are counted in [`Store::recovery_stats`].)
    pub fn index_repairs(&self) -> u64 {
        self.inner
            .shared
            .index
            .read()
            .repairs()
            .load(Ordering::Relaxed)
    }

    /// Sealed segments whose index file could not be written (their index
    /// stays in memory until the next open rebuilds the file).
    pub fn index_write_failures(&self) -> u64 {
        self.inner
            .shared
            .index_write_failures
            .load(Ordering::Relaxed)
    }
}

/// Recovers the log in `segments_dir` as `options` ask.
fn recover_log(options: &Options, segments_dir: &Path, read_only: bool) -> Result<log::Recovered> {
    let hash_kind = if options.collides_stream_hashes() {
        HashKind::Constant
    } else {
        HashKind::Xxh3
    };
    log::recover(
        &options.storage,
        segments_dir,
        options.segment_size,
        options.idempotency_window as u64,
        hash_kind,
        read_only,
    )
}

/// The log's segments and watermarks, from [`Store::log_info`].
#[derive(Debug, Clone)]
#[non_exhaustive]
pub struct LogInfo {
    /// Every segment, oldest first.
    pub segments: Vec<SegmentInfo>,
    /// Every position below this is written (and indexed).
    pub written_end: u64,
    /// Every position below this is durable.
    pub durable_end: u64,
    /// Streams with at least one written event.
    pub stream_count: usize,
}

/// One segment file, in [`LogInfo`].
#[derive(Debug, Clone)]
#[non_exhaustive]
pub struct SegmentInfo {
    /// The segment file.
    pub path: PathBuf,
    /// The position of its first event.
    pub base_position: u64,
    /// Events it holds (written ones, in the active segment).
    pub events: u64,
    /// The bytes its header allows the writer to fill.
    pub capacity: u64,
    /// The file's length (0 if it could not be read).
    pub file_len: u64,
    /// Whether it is sealed: complete, never written again.
    pub sealed: bool,
    /// The index file serving it, once one is written and in use.
    pub index_file: Option<PathBuf>,
}

/// Snapshots.
impl Store {
    /// Saves `data` as the state of `stream` up to and including `version`,
    /// durably: the file is checksummed, written beside its final name,
    /// synced, renamed into place and the directory synced, so a crash
    /// leaves the previous snapshot or this one, never a mix. Then all but
    /// the newest [`Options::snapshots_kept`] snapshots of the stream are
    /// removed.
    ///
    /// `version` must be a visible version of the stream
    /// ([`Error::SnapshotAhead`] otherwise). In a `Buffered` store the events
    /// are flushed first, so a snapshot never outlives the events it
    /// summarizes.
    ///
    /// ```
    /// use evstore::{EventData, ExpectedVersion, Options, Store};
    /// # let dir = tempfile::tempdir().unwrap();
    /// let store = Store::open(dir.path(), Options::default()).unwrap();
    /// let events: Vec<_> = (0..10).map(|i| EventData::new("Deposited", vec![i])).collect();
    /// let written = store.append("account-7", ExpectedVersion::NoStream, &events).unwrap();
    /// store.save_snapshot("account-7", written.last_version, b"balance=45").unwrap();
    ///
    /// let snapshot = store.load_snapshot("account-7").unwrap().unwrap();
    /// assert_eq!((snapshot.version, &snapshot.data[..]), (9, &b"balance=45"[..]));
    /// // Rebuild: the snapshot, then the events after it.
    /// let rest = store.read_stream("account-7", snapshot.version + 1, evstore::Direction::Forward, 1000).unwrap();
    /// assert!(rest.is_empty());
    /// ```
    pub fn save_snapshot(&self, stream: &str, version: u64, data: impl AsRef<[u8]>) -> Result<()> {
        self.refuse_if_read_only("save a snapshot")?;
        validate_stream_name(stream, self.options().max_stream_name_len)?;
        let stream_version = self.stream_version(stream)?;
        if stream_version.is_none_or(|last| version > last) {
            return Err(Error::SnapshotAhead {
                stream: stream.to_string(),
                version,
                stream_version,
            });
        }
        if self.options().durability == Durability::Buffered {
            self.flush()?;
        }
        let event = self.read_stream(stream, version, Direction::Forward, 1)?;
        let event_id = match event.first() {
            Some(event) => event.id,
            None => {
                return Err(Error::SnapshotAhead {
                    stream: stream.to_string(),
                    version,
                    stream_version,
                })
            }
        };
        self.inner
            .snapshots
            .save(stream, version, event_id, now_nanos(), data.as_ref())
    }

    /// The newest snapshot of `stream`, or `None` if it has none.
    ///
    /// A snapshot file that fails its checksum, is truncated, names another
    /// stream, or no longer matches the log (the stream's event at its
    /// version is not the one it was taken after) is never returned: it is
    /// renamed with a `.damaged` suffix, reported in
    /// [`Store::damaged_snapshots`], and the next older snapshot is tried.
    pub fn load_snapshot(&self, stream: &str) -> Result<Option<Snapshot>> {
        self.load_snapshot_at_or_below(stream, u64::MAX)
    }

    /// The newest snapshot of `stream` whose version is at most
    /// `max_version`, with the same checks and fallback as
    /// [`Store::load_snapshot`].
    ///
    /// ```
    /// use evstore::{EventData, ExpectedVersion, Options, Store};
    /// # let dir = tempfile::tempdir().unwrap();
    /// let store = Store::open(dir.path(), Options::default().snapshots_kept(3)).unwrap();
    /// let events: Vec<_> = (0..30).map(|_| EventData::new("Tick", &b""[..])).collect();
    /// store.append("clock", ExpectedVersion::Any, &events).unwrap();
    /// for version in [9, 19, 29] {
    ///     store.save_snapshot("clock", version, version.to_string()).unwrap();
    /// }
    /// let older = store.load_snapshot_at_or_below("clock", 25).unwrap().unwrap();
    /// assert_eq!(older.version, 19);
    /// assert!(store.load_snapshot_at_or_below("clock", 5).unwrap().is_none());
    /// ```
    pub fn load_snapshot_at_or_below(
        &self,
        stream: &str,
        max_version: u64,
    ) -> Result<Option<Snapshot>> {
        validate_stream_name(stream, self.options().max_stream_name_len)?;
        let file = self.inner.snapshots.load(stream, max_version, |file| {
            let event = self.read_stream(stream, file.version, Direction::Forward, 1)?;
            Ok(match event.first() {
                None => Some(format!(
                    "the snapshot is of version {} but the stream has not reached it",
                    file.version
                )),
                Some(event) if event.id != file.event_id => Some(format!(
                    "the snapshot was taken after event {} but version {} is event {}",
                    file.event_id, file.version, event.id
                )),
                Some(_) => None,
            })
        })?;
        Ok(file.map(|file| Snapshot {
            version: file.version,
            data: file.data,
            timestamp_nanos: file.timestamp_nanos,
        }))
    }

    /// Snapshot files found damaged or inconsistent with the log since the
    /// store was opened (the most recent 1,024), oldest first. Each was
    /// skipped in favour of an older snapshot, or none.
    pub fn damaged_snapshots(&self) -> Vec<DamagedSnapshot> {
        self.inner.snapshots.damaged()
    }
}

/// A stream and its version, from [`Store::streams`].
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct StreamInfo {
    /// The stream name.
    pub name: String,
    /// The version of its last visible event (its event count minus one).
    pub version: u64,
}

/// Iterator over a store's streams; see [`Store::streams`].
#[derive(Debug)]
pub struct Streams {
    store: Store,
    page: std::collections::VecDeque<StreamInfo>,
    after: Option<String>,
    done: bool,
}

/// Streams fetched per look at the catalogue.
const STREAMS_PAGE: usize = 512;

impl Iterator for Streams {
    type Item = Result<StreamInfo>;

    fn next(&mut self) -> Option<Self::Item> {
        while self.page.is_empty() && !self.done {
            let end = self.store.visible_end();
            let page = {
                let index = self.store.inner.shared.index.read();
                index.streams_page(self.after.as_deref(), STREAMS_PAGE, end)
            };
            let page = match page {
                Ok(page) => page,
                Err(e) => {
                    self.done = true;
                    return Some(Err(e));
                }
            };
            self.done = page.len() < STREAMS_PAGE;
            self.after = page.last().map(|(name, _)| name.to_string());
            self.page
                .extend(page.into_iter().filter_map(|(name, visible)| {
                    Some(StreamInfo {
                        name: name.to_string(),
                        version: visible.checked_sub(1)?,
                    })
                }));
        }
        self.page.pop_front().map(Ok)
    }
}

/// The half-open range of indexes `[start, stop)` to read out of `len`, in
/// the order given by `direction` (a backward range is read from its top).
fn version_range(len: u64, from: u64, direction: Direction, max_count: usize) -> (u64, u64) {
    let max = max_count as u64;
    match direction {
        Direction::Forward => {
            let start = from.min(len);
            (start, start.saturating_add(max).min(len))
        }
        Direction::Backward => {
            if len == 0 {
                return (0, 0);
            }
            let top = from.min(len - 1) + 1;
            (top.saturating_sub(max), top)
        }
    }
}

fn missing(position: u64) -> Error {
    Error::Corrupted {
        file: PathBuf::from(SEGMENTS_DIR),
        offset: 0,
        reason: format!("position {position} is below the watermark but not indexed"),
    }
}

pub(crate) fn validate_stream_name(stream: &str, max_len: usize) -> Result<()> {
    let reason = if stream.is_empty() {
        "empty".to_string()
    } else if stream.len() > max_len {
        format!("longer than {max_len} bytes")
    } else if stream.starts_with('$') {
        "names starting with '$' are reserved".to_string()
    } else if stream.chars().any(char::is_control) {
        "control characters are not allowed".to_string()
    } else {
        return Ok(());
    };
    Err(Error::InvalidStreamName {
        name: stream.to_string(),
        reason,
    })
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    #[test]
    fn version_ranges() {
        assert_eq!(version_range(10, 0, Direction::Forward, 3), (0, 3));
        assert_eq!(version_range(10, 8, Direction::Forward, 3), (8, 10));
        assert_eq!(version_range(10, 12, Direction::Forward, 3), (10, 10));
        assert_eq!(version_range(10, u64::MAX, Direction::Backward, 3), (7, 10));
        assert_eq!(version_range(10, 1, Direction::Backward, 3), (0, 2));
        assert_eq!(version_range(0, 0, Direction::Backward, 3), (0, 0));
        assert_eq!(
            version_range(10, 0, Direction::Forward, usize::MAX),
            (0, 10)
        );
    }
}
