//! Opening a store: taking its lock, creating its directories, recovering
//! the log and starting the write path; or, read-only, following the log
//! another process writes.

use super::follower::Follower;
use super::group_commit::GroupCommit;
use super::state::StoreState;
use super::writer::Writer;
use super::{Store, StoreInner};
use crate::checkpoint::Checkpoints;
use crate::error::{Error, Result};
use crate::index::hash::HashKind;
use crate::index::matching::PostingsFiles;
use crate::index::recovery::{self, OpenMode, Recovered};
use crate::key_store::KeyStore;
use crate::layout::{CHECKPOINTS_DIR, LOCK_FILE, SEGMENTS_DIR, SNAPSHOTS_DIR};
use crate::log::{ActiveSegment, Preparation};
use crate::options::{Options, PanicPoint};
use crate::snapshot::Snapshots;
use crate::storage::child;
use crate::telemetry::spans::{enter_span, trace_event};
#[cfg(doc)]
use crate::types::Durability;
use parking_lot::Mutex;
use std::io;
use std::panic::{catch_unwind, AssertUnwindSafe};
use std::path::Path;
use std::sync::atomic::Ordering;
use std::sync::Arc;

impl Store {
    /// Opens the store in `dir`, creating it if needed and recovering it if
    /// the last process stopped mid-write: a torn tail is cleared, damage
    /// anywhere else is an [`Error::Corrupted`].
    ///
    /// A second open of the same directory, from this process or another,
    /// fails with [`Error::Locked`] while the first is open.
    ///
    /// # Errors
    ///
    /// [`Error::InvalidOption`] for invalid options; [`Error::Locked`] while
    /// another handle holds the store; [`Error::Corrupted`] for damage
    /// recovery must not repair; [`Error::UnsupportedFormat`] for a segment
    /// of a newer format; [`Error::Io`] if the directory cannot be created,
    /// locked or read.
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
        storage
            .create_dir_all(&segments_dir)
            .and_then(|()| storage.create_dir_all(&child(&dir, SNAPSHOTS_DIR)))
            .and_then(|()| storage.create_dir_all(&child(&dir, CHECKPOINTS_DIR)))
            .and_then(|()| storage.sync_dir(&dir))
            .map_err(|e| Error::io(format!("creating the directories of {}", dir.display()), e))?;

        let recovered = recover_log(&options, &segments_dir, OpenMode::Write)?;
        let keys = KeyStore::open(Arc::clone(&storage), &dir, true)?;
        let Some(segment) = recovered.active else {
            return Err(Error::io(
                "recovering the log",
                io::Error::other("recovery left no segment to append to"),
            ));
        };
        let (background, zero_fill_below) = (
            options.preallocates_in_background(),
            options.zero_fill_below,
        );
        let parts = Parts::new(&dir, &options);
        let state = Arc::new(StoreState::new(
            segments_dir,
            options,
            recovered.index,
            recovered.next_position,
        ));
        let active = ActiveSegment::new(
            segment,
            recovered.write_offset,
            recovered.next_position,
            recovered.recorded_durable,
            Preparation {
                storage: Arc::clone(&storage),
                dir: state.segments_dir.clone(),
                background,
                zero_fill_below,
                zero_filled: Arc::clone(&state.zero_filled_segments),
            },
        );
        let mut writer = Writer::new(Arc::clone(&state), active);
        // Recovery synced what a crash left past the segment's last mark: a
        // mark says so now, so that readers in other processes (which trust
        // only marked events) see what the writer counts as durable without
        // waiting for the next append.
        writer.write_mark();
        let group_commit = Arc::new(GroupCommit::new(Arc::clone(&state), writer));
        group_commit.start()?;
        let flusher = match super::flusher::spawn(Arc::clone(&state), Arc::clone(&group_commit)) {
            Ok(flusher) => flusher,
            Err(error) => {
                // Ends the commit thread, which holds the write path.
                group_commit.close();
                return Err(error);
            }
        };
        let store = Store::for_users(StoreInner {
            dir,
            state,
            group_commit: Some(group_commit),
            background: Mutex::new(Some(flusher)),
            scavenger: Mutex::new(None),
            recovery: recovered.stats,
            snapshots: parts.snapshots,
            checkpoints: parts.checkpoints,
            keys,
            follower: None,
            _lock: Some(lock),
        });
        store.install_deletions()?;
        if let Some(interval) = store.options().background_scavenge {
            let scavenger = super::background_scavenge::spawn(
                Arc::downgrade(&store.inner),
                Arc::clone(&store.inner.state),
                interval,
            )?;
            *store.inner.scavenger.lock() = Some(scavenger);
        }
        Ok(store)
    }

    /// Opens the store in `dir` for reading only, beside the process that
    /// may be writing it: no lock is taken and nothing is written, created
    /// or repaired (a damaged index file is rebuilt in memory; a torn tail
    /// is left to the writer's recovery).
    ///
    /// Readers see what the store's durability allows: with
    /// [`Durability::Sync`](crate::Durability::Sync) (the default) the events the writer has recorded
    /// as durable, with [`Durability::Buffered`](crate::Durability::Buffered) every whole batch in the
    /// files. Events the writer appends later appear by themselves, within
    /// [`Options::poll_interval`], to reads and subscriptions alike; or at
    /// once after [`Store::refresh`]. Appends, flushes and saves fail with
    /// [`Error::ReadOnly`].
    ///
    /// # Errors
    ///
    /// [`Error::NotAStore`] if `dir` holds no store, and the errors of
    /// [`Store::open`] but [`Error::Locked`].
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
        let mut parts = Parts::new(&dir, &options);
        parts.snapshots = parts.snapshots.read_only();
        let recovered = recover_log(&options, &segments_dir, OpenMode::ReadOnly)?;
        let keys = KeyStore::open(Arc::clone(&storage), &dir, false)?;
        let unindexed = recovered.index.sealed_without_index_file();
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
        let state = Arc::new(StoreState::new(
            segments_dir,
            options,
            recovered.index,
            recovered.next_position,
        ));
        state.durable.store(follower.durable(), Ordering::Release);
        let follower = Arc::new(Mutex::new(follower));
        let poller = {
            let state = Arc::clone(&state);
            let follower = Arc::clone(&follower);
            std::thread::Builder::new()
                .name("evstore-follower".into())
                .spawn(move || {
                    let outcome = catch_unwind(AssertUnwindSafe(|| {
                        while !state.wait_unless_closing(poll_interval) {
                            state.injected_panic(PanicPoint::Follower);
                            // A failure poisons the store and stops following;
                            // `refresh` reports it.
                            if follower.lock().poll(&state).is_err() {
                                return;
                            }
                        }
                    }));
                    if let Err(payload) = outcome {
                        state.fail_with_panic("the read-only follower", payload.as_ref());
                    }
                })
                .map_err(|e| Error::io("starting the follower thread", e))?
        };
        Ok(Store::for_users(StoreInner {
            dir,
            state,
            group_commit: None,
            background: Mutex::new(Some(poller)),
            scavenger: Mutex::new(None),
            recovery: recovered.stats,
            snapshots: parts.snapshots,
            checkpoints: parts.checkpoints,
            keys,
            follower: Some(follower),
            _lock: None,
        }))
    }
}

/// Recovers the log in `segments_dir` as `options` ask.
/// The snapshot and checkpoint stores of the store in `dir`.
struct Parts {
    snapshots: Snapshots,
    checkpoints: Checkpoints,
}

impl Parts {
    fn new(dir: &Path, options: &Options) -> Self {
        let storage = &options.storage;
        Parts {
            snapshots: Snapshots::new(
                Arc::clone(storage),
                child(dir, SNAPSHOTS_DIR),
                options.snapshots_kept,
            ),
            checkpoints: Checkpoints::new(Arc::clone(storage), child(dir, CHECKPOINTS_DIR)),
        }
    }
}

fn recover_log(options: &Options, segments_dir: &Path, mode: OpenMode) -> Result<Recovered> {
    enter_span!(
        _span = "evstore.recovery",
        dir = segments_dir.display().to_string(),
        read_only = mode == OpenMode::ReadOnly
    );
    let hash_kind = if options.collides_stream_hashes() {
        HashKind::Constant
    } else {
        HashKind::Xxh3
    };
    let mut recovered = recovery::recover(
        &options.storage,
        segments_dir,
        options.segment_size,
        options.idempotency_window as u64,
        hash_kind,
        mode,
        options.zero_fill_below.is_some(),
    )?;
    recovered.index.set_postings_files(PostingsFiles {
        storage: Arc::clone(&options.storage),
        dir: segments_dir.to_path_buf(),
        writable: mode == OpenMode::Write,
        persisting: Arc::default(),
    });
    trace_event!(
        "recovered",
        segments = recovered.stats.segments,
        events = recovered.stats.events,
        bytes_scanned = recovered.stats.bytes_scanned,
        torn_bytes = recovered.stats.torn_bytes,
        index_files_rebuilt = recovered.stats.index_files_rebuilt,
        index_files_unwritten = recovered.stats.index_files_unwritten
    );
    Ok(recovered)
}
