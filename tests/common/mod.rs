//! Helpers shared by `tests/concurrency.rs` and `tests/faults.rs`:
//!
//! - [`AckedAppend`] and [`assert_store_holds_acked`]: a model of every
//!   acknowledged append, and the check that a store holds exactly those
//!   events (byte-identical, positions and versions dense).
//! - [`FaultyStorage`]: a [`Storage`] wrapper around [`OsStorage`] that injects
//!   faults (EIO on sync, ENOSPC on write or allocate, short writes) when armed
//!   through the shared [`Faults`] switches. Deterministic: no randomness,
//!   only flags and countdowns.

// Each test binary uses a different subset of these helpers.
#![allow(dead_code)]

use evstore::storage::{LockGuard, OsStorage, Storage, StorageFile};
use evstore::{AppendResult, Direction, EventData, RecordedEvent, Store, Uuid};
use std::collections::{BTreeMap, HashMap, HashSet};
use std::io;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, AtomicI64, AtomicU32, AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Condvar, Mutex, Weak};

// ---------------------------------------------------------------------------
// Model of acknowledged appends
// ---------------------------------------------------------------------------

/// One append the store acknowledged with `Ok(result)`.
#[derive(Debug, Clone)]
pub struct AckedAppend {
    /// The stream appended to.
    pub stream: String,
    /// What the store answered.
    pub result: AppendResult,
    /// The events sent, in order.
    pub events: Vec<EventData>,
}

/// One append whose outcome is unknown (it failed with an error that does
/// not say whether it reached the disk, like `StorePoisoned`): after a
/// reopen it must be either entirely present or entirely absent.
#[derive(Debug, Clone)]
pub struct UncertainAppend {
    /// The stream appended to.
    pub stream: String,
    /// The events sent, in order.
    pub events: Vec<EventData>,
}

/// Asserts that `recorded` is `sent`, stored in `stream` at `version` and
/// `position`, byte for byte.
pub fn assert_recorded_matches(
    recorded: &RecordedEvent,
    stream: &str,
    version: u64,
    position: u64,
    sent: &EventData,
) {
    assert_eq!(recorded.position, position, "position of {recorded:?}");
    assert_eq!(&*recorded.stream, stream, "stream at position {position}");
    assert_eq!(recorded.version, version, "version at position {position}");
    assert_eq!(recorded.id, sent.id(), "id at position {position}");
    assert_eq!(
        &*recorded.event_type,
        sent.event_type(),
        "event type at position {position}"
    );
    assert_eq!(
        &recorded.metadata,
        sent.metadata(),
        "metadata at position {position}"
    );
    assert_eq!(
        &recorded.payload,
        sent.payload(),
        "payload at position {position}"
    );
}

/// Checks that the acknowledged appends are self-consistent (each result
/// spans exactly its events; positions dense from 0 without overlap; each
/// stream's versions dense from 0) and returns, by position, what the store
/// must hold: `(stream, version, event)`.
pub fn expected_log_of_acked(acked: &[AckedAppend]) -> Vec<(String, u64, EventData)> {
    let mut by_position: BTreeMap<u64, (String, u64, EventData)> = BTreeMap::new();
    for append in acked {
        let r = append.result;
        let n = append.events.len() as u64;
        assert!(n > 0, "an acknowledged append without events");
        assert_eq!(
            r.last_position - r.first_position + 1,
            n,
            "{r:?} spans {n} events"
        );
        assert_eq!(
            r.last_version - r.first_version + 1,
            n,
            "{r:?} spans {n} events"
        );
        for (i, event) in append.events.iter().enumerate() {
            let i = i as u64;
            let previous = by_position.insert(
                r.first_position + i,
                (append.stream.clone(), r.first_version + i, event.clone()),
            );
            assert!(
                previous.is_none(),
                "two acknowledged appends were given position {}",
                r.first_position + i
            );
        }
    }
    let log: Vec<_> = by_position.into_iter().collect();
    for (i, (position, _)) in log.iter().enumerate() {
        assert_eq!(
            *position, i as u64,
            "acknowledged positions are not dense from 0"
        );
    }
    // Versions of each stream, in position order, must be 0, 1, 2, ...
    let mut next_version: HashMap<&str, u64> = HashMap::new();
    for (position, (stream, version, _)) in &log {
        let next = next_version.entry(stream.as_str()).or_insert(0);
        assert_eq!(
            *version, *next,
            "stream '{stream}' got version {version} at position {position}, expected {next}"
        );
        *next += 1;
    }
    log.into_iter().map(|(_, entry)| entry).collect()
}

/// Asserts that the store's visible log is exactly the acknowledged appends:
/// `read_all` forward and backward, `read_stream` of every stream,
/// `stream_version` and `last_position` all agree with the model.
pub fn assert_store_holds_acked(store: &Store, acked: &[AckedAppend]) {
    assert_store_holds_acked_and_maybe(store, acked, &[]);
}

/// Like [`assert_store_holds_acked`], but the log may additionally end with
/// any of the `uncertain` appends, each entirely or not at all.
pub fn assert_store_holds_acked_and_maybe(
    store: &Store,
    acked: &[AckedAppend],
    uncertain: &[UncertainAppend],
) {
    let expected = expected_log_of_acked(acked);
    let n = expected.len();
    let all = store
        .read_all(0, Direction::Forward, usize::MAX)
        .expect("read_all forward");
    assert!(
        all.len() >= n,
        "read_all returned {} events, {n} were acknowledged",
        all.len()
    );
    for (position, ((stream, version, sent), recorded)) in expected.iter().zip(&all).enumerate() {
        assert_recorded_matches(recorded, stream, *version, position as u64, sent);
    }

    // Whatever follows the acknowledged events must be whole uncertain appends.
    let extra = all.get(n..).unwrap_or_default();
    let mut uncertain_by_id: HashMap<Uuid, (usize, usize)> = HashMap::new();
    for (a, append) in uncertain.iter().enumerate() {
        for (e, event) in append.events.iter().enumerate() {
            uncertain_by_id.insert(event.id(), (a, e));
        }
    }
    let mut at = 0;
    let mut seen_appends = HashSet::new();
    while at < extra.len() {
        let first = extra.get(at).expect("in range");
        let Some(&(a, 0)) = uncertain_by_id.get(&first.id) else {
            panic!(
                "position {} holds an event that was never acknowledged nor is the start \
                 of an uncertain append: {first:?}",
                first.position
            );
        };
        assert!(seen_appends.insert(a), "uncertain append {a} appears twice");
        let append = uncertain.get(a).expect("in range");
        let first_version = first.version;
        for (i, sent) in append.events.iter().enumerate() {
            let recorded = extra.get(at + i).unwrap_or_else(|| {
                panic!("uncertain append {a} is only partly present (half a batch)")
            });
            assert_recorded_matches(
                recorded,
                &append.stream,
                first_version + i as u64,
                (n + at + i) as u64,
                sent,
            );
        }
        at += append.events.len();
    }

    // Backward read of the whole log is the exact reverse.
    let backward = store
        .read_all(u64::MAX, Direction::Backward, usize::MAX)
        .expect("read_all backward");
    assert_eq!(backward.len(), all.len(), "backward read_all length");
    assert!(
        backward.iter().rev().eq(all.iter()),
        "read_all backward is not the reverse of forward"
    );
    assert_eq!(store.last_position(), (all.len() as u64).checked_sub(1));

    // Every stream reads back dense from version 0, matching the global log.
    let mut streams: BTreeMap<&str, Vec<&RecordedEvent>> = BTreeMap::new();
    for event in &all {
        streams.entry(&*event.stream).or_default().push(event);
    }
    for (stream, events) in &streams {
        let read = store
            .read_stream(stream, 0, Direction::Forward, usize::MAX)
            .expect("read_stream");
        assert_eq!(read.len(), events.len(), "events in stream '{stream}'");
        for (version, (recorded, from_all)) in read.iter().zip(events).enumerate() {
            assert_eq!(recorded.version, version as u64, "stream '{stream}' dense");
            assert_eq!(recorded, *from_all, "stream '{stream}' version {version}");
        }
        assert_eq!(
            store.stream_version(stream).unwrap(),
            Some(events.len() as u64 - 1),
            "stream_version('{stream}')"
        );
    }
    assert_eq!(store.stream_count(), streams.len(), "stream_count");
}

/// Panics unless `result` is `Err(Error::StorePoisoned { .. })`.
#[track_caller]
pub fn assert_poisoned<T: std::fmt::Debug>(result: evstore::Result<T>) {
    match result {
        Err(evstore::Error::StorePoisoned { .. }) => {}
        other => panic!("expected StorePoisoned, got {other:?}"),
    }
}

/// Panics unless `result` is `Err(Error::NoSpace { .. })`.
#[track_caller]
pub fn assert_no_space<T: std::fmt::Debug>(result: evstore::Result<T>) {
    match result {
        Err(evstore::Error::NoSpace { .. }) => {}
        other => panic!("expected NoSpace, got {other:?}"),
    }
}

/// The names of the `.log` files in the store's segment directory.
pub fn segment_files(dir: &Path) -> Vec<String> {
    let mut names: Vec<String> = std::fs::read_dir(dir.join(evstore::SEGMENTS_DIR))
        .expect("listing segments")
        .map(|e| {
            e.expect("dir entry")
                .file_name()
                .to_string_lossy()
                .into_owned()
        })
        .filter(|n| n.ends_with(".log"))
        .collect();
    names.sort();
    names
}

/// A tiny deterministic PRNG (xorshift64*), so tests need no extra crate and
/// every run does the same thing for a given seed.
#[derive(Debug, Clone)]
pub struct TestRng(u64);

impl TestRng {
    /// A generator seeded with `seed` (any value, zero included).
    pub fn new(seed: u64) -> Self {
        TestRng(seed.wrapping_mul(0x9E37_79B9_7F4A_7C15) | 1)
    }

    /// The next 64 random bits.
    pub fn next_u64(&mut self) -> u64 {
        let mut x = self.0;
        x ^= x >> 12;
        x ^= x << 25;
        x ^= x >> 27;
        self.0 = x;
        x.wrapping_mul(0x2545_F491_4F6C_DD1D)
    }

    /// A number in `0..n`.
    pub fn below(&mut self, n: u64) -> u64 {
        self.next_u64() % n
    }

    /// A number in `lo..=hi`.
    pub fn range(&mut self, lo: u64, hi: u64) -> u64 {
        lo + self.next_u64() % (hi - lo + 1)
    }
}

// ---------------------------------------------------------------------------
// Fault injection
// ---------------------------------------------------------------------------

/// Which `write_at` calls an armed ENOSPC countdown applies to.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum WriteTarget {
    /// Every write.
    Any,
    /// Writes of a buffer longer than this many bytes (an append's batch is
    /// longer than a bare batch header; the writer's seals and marks are not).
    LongerThan(usize),
    /// Writes to a segment file whose buffer starts with a batch header of
    /// this kind (the `kind` field at byte 8 of the documented format: 1
    /// events, 2 seal).
    BatchOfKind(u32),
}

/// Batch kind of a seal in the on-disk format (README, "batch header").
pub const SEAL_BATCH_KIND: u32 = 2;

/// The switches and counters of a [`FaultyStorage`], shared with the test.
/// Everything is off by default.
#[derive(Debug)]
pub struct Faults {
    /// `sync_data` of a segment file (a file whose current name ends with
    /// `.log`) fails with EIO.
    pub log_sync_eio: AtomicBool,
    /// `allocate` fails with ENOSPC when it would have to grow the file.
    pub allocate_enospc: AtomicBool,
    /// Number of targeted `write_at` calls (see [`WriteTarget`]) to let
    /// through before the next one fails with ENOSPC (once; the countdown
    /// then switches off). Negative: off.
    pub write_enospc_after: AtomicI64,
    /// Targeted writes are at least this long (0: any length).
    write_target_min_len: AtomicUsize,
    /// Targeted writes start with a batch header of this kind (0: any).
    write_target_kind: AtomicU32,
    /// When non-zero, `write_at` writes at most this many bytes per call.
    pub short_write_max: AtomicUsize,

    /// How many `sync_data` calls failed with injected EIO.
    pub injected_sync_eio: AtomicU64,
    /// How many `allocate` calls failed with injected ENOSPC.
    pub injected_allocate_enospc: AtomicU64,
    /// How many `write_at` calls failed with injected ENOSPC.
    pub injected_write_enospc: AtomicU64,
    /// How many `write_at` calls were cut short.
    pub injected_short_writes: AtomicU64,
    /// How many `sync_data` calls on segment files succeeded.
    pub log_syncs: AtomicU64,
    /// While set, `sync_data` of a segment file waits until it is cleared.
    log_syncs_held: Mutex<bool>,
    log_syncs_released: Condvar,
    /// How many `sync_data` calls of segment files are waiting now.
    pub held_log_syncs: AtomicU64,
}

impl Default for Faults {
    fn default() -> Self {
        Faults {
            log_sync_eio: AtomicBool::new(false),
            allocate_enospc: AtomicBool::new(false),
            write_enospc_after: AtomicI64::new(-1),
            write_target_min_len: AtomicUsize::new(0),
            write_target_kind: AtomicU32::new(0),
            short_write_max: AtomicUsize::new(0),
            injected_sync_eio: AtomicU64::new(0),
            injected_allocate_enospc: AtomicU64::new(0),
            injected_write_enospc: AtomicU64::new(0),
            log_syncs_held: Mutex::new(false),
            log_syncs_released: Condvar::new(),
            held_log_syncs: AtomicU64::new(0),
            injected_short_writes: AtomicU64::new(0),
            log_syncs: AtomicU64::new(0),
        }
    }
}

impl Faults {
    /// Arms or disarms EIO on every segment `sync_data`.
    pub fn set_log_sync_eio(&self, on: bool) {
        self.log_sync_eio.store(on, Ordering::SeqCst);
    }

    /// Makes every `sync_data` of a segment file wait (`true`) until
    /// released (`false`): a writer stuck on a slow disk, on demand.
    pub fn hold_log_syncs(&self, held: bool) {
        *self.log_syncs_held.lock().expect("hold lock") = held;
        self.log_syncs_released.notify_all();
    }

    /// Waits while segment syncs are held.
    fn wait_while_held(&self) {
        let mut held = self.log_syncs_held.lock().expect("hold lock");
        if !*held {
            return;
        }
        self.held_log_syncs.fetch_add(1, Ordering::SeqCst);
        while *held {
            held = self.log_syncs_released.wait(held).expect("hold lock");
        }
        self.held_log_syncs.fetch_sub(1, Ordering::SeqCst);
    }

    /// Arms or disarms ENOSPC on every `allocate` that grows a file.
    pub fn set_allocate_enospc(&self, on: bool) {
        self.allocate_enospc.store(on, Ordering::SeqCst);
    }

    /// Lets `passing` more `write_at` calls matching `target` through, then
    /// fails the next matching one with ENOSPC. Writes not matching `target`
    /// (for example the writer's own bookkeeping) are neither counted nor
    /// failed, so the fault lands where the test means it to.
    pub fn fail_write_with_enospc_after(&self, passing: i64, target: WriteTarget) {
        let (min_len, kind) = match target {
            WriteTarget::Any => (0, 0),
            WriteTarget::LongerThan(len) => (len + 1, 0),
            WriteTarget::BatchOfKind(kind) => (evstore::format::BATCH_HEADER_LEN, kind),
        };
        self.write_target_min_len.store(min_len, Ordering::SeqCst);
        self.write_target_kind.store(kind, Ordering::SeqCst);
        self.write_enospc_after.store(passing, Ordering::SeqCst);
    }

    /// Whether a write of `buf` is targeted; `to_segment` says whether it
    /// goes to a segment file, the only files that hold batches (an index
    /// file's header has its format version where a batch has its kind).
    fn is_write_target(&self, buf: &[u8], to_segment: bool) -> bool {
        let kind = self.write_target_kind.load(Ordering::SeqCst);
        buf.len() >= self.write_target_min_len.load(Ordering::SeqCst)
            && (kind == 0
                || to_segment
                    && buf
                        .get(8..12)
                        .is_some_and(|k| u32::from_le_bytes([k[0], k[1], k[2], k[3]]) == kind))
    }

    /// Cuts every `write_at` to at most `max` bytes (0: off).
    pub fn set_short_writes(&self, max: usize) {
        self.short_write_max.store(max, Ordering::SeqCst);
    }

    /// Whether the write ENOSPC countdown has fired (or was never armed).
    pub fn write_enospc_pending(&self) -> bool {
        self.write_enospc_after.load(Ordering::SeqCst) >= 0
    }

    /// Disarms everything (counters are kept).
    pub fn disarm_all(&self) {
        self.set_log_sync_eio(false);
        self.set_allocate_enospc(false);
        self.write_enospc_after.store(-1, Ordering::SeqCst);
        self.set_short_writes(0);
    }

    /// Decrements the write countdown for a targeted write; true when this
    /// call must fail.
    fn take_write_enospc(&self, buf: &[u8], to_segment: bool) -> bool {
        if self.write_enospc_after.load(Ordering::SeqCst) < 0
            || !self.is_write_target(buf, to_segment)
        {
            return false;
        }
        let mut fire = false;
        let _ = self
            .write_enospc_after
            .fetch_update(Ordering::SeqCst, Ordering::SeqCst, |left| {
                fire = left == 0;
                match left {
                    l if l < 0 => None,
                    0 => Some(-1),
                    l => Some(l - 1),
                }
            });
        fire
    }
}

/// A [`Storage`] that forwards to [`OsStorage`] and injects the faults armed
/// in its [`Faults`]. It tracks renames, so a prepared segment (created as
/// `next.tmp`, then renamed to `NNN.log`) counts as a segment file from its
/// rename on.
#[derive(Debug)]
pub struct FaultyStorage {
    inner: OsStorage,
    faults: Arc<Faults>,
    /// The current path of every file opened through this storage that is
    /// still open.
    open_files: Mutex<Vec<Weak<Mutex<PathBuf>>>>,
}

impl FaultyStorage {
    /// A fault-free storage (until armed) and the switches that arm it.
    pub fn new() -> (Arc<FaultyStorage>, Arc<Faults>) {
        let faults = Arc::new(Faults::default());
        let storage = Arc::new(FaultyStorage {
            inner: OsStorage,
            faults: Arc::clone(&faults),
            open_files: Mutex::new(Vec::new()),
        });
        (storage, faults)
    }
}

impl Storage for FaultyStorage {
    fn create_dir_all(&self, path: &Path) -> io::Result<()> {
        self.inner.create_dir_all(path)
    }

    fn list_dir(&self, dir: &Path) -> io::Result<Vec<String>> {
        self.inner.list_dir(dir)
    }

    fn open_file(&self, path: &Path, create: bool) -> io::Result<Box<dyn StorageFile>> {
        let inner = self.inner.open_file(path, create)?;
        let current_path = Arc::new(Mutex::new(path.to_path_buf()));
        let mut open = self.open_files.lock().expect("open_files lock");
        open.retain(|w| w.strong_count() > 0);
        open.push(Arc::downgrade(&current_path));
        Ok(Box::new(FaultyFile {
            inner,
            current_path,
            faults: Arc::clone(&self.faults),
        }))
    }

    fn remove_file(&self, path: &Path) -> io::Result<()> {
        self.inner.remove_file(path)
    }

    fn rename(&self, from: &Path, to: &Path) -> io::Result<()> {
        self.inner.rename(from, to)?;
        let open = self.open_files.lock().expect("open_files lock");
        for file in open.iter().filter_map(Weak::upgrade) {
            let mut current = file.lock().expect("path lock");
            if *current == from {
                *current = to.to_path_buf();
            }
        }
        Ok(())
    }

    fn sync_dir(&self, dir: &Path) -> io::Result<()> {
        self.inner.sync_dir(dir)
    }

    fn lock_file(&self, path: &Path) -> io::Result<Box<dyn LockGuard>> {
        self.inner.lock_file(path)
    }
}

/// A file of a [`FaultyStorage`].
#[derive(Debug)]
struct FaultyFile {
    inner: Box<dyn StorageFile>,
    current_path: Arc<Mutex<PathBuf>>,
    faults: Arc<Faults>,
}

impl FaultyFile {
    fn is_segment(&self) -> bool {
        self.current_path
            .lock()
            .expect("path lock")
            .extension()
            .is_some_and(|e| e == "log")
    }
}

const EIO: i32 = 5;
const ENOSPC: i32 = 28;

impl StorageFile for FaultyFile {
    fn path(&self) -> &Path {
        self.inner.path()
    }

    fn len(&self) -> io::Result<u64> {
        self.inner.len()
    }

    // `write_all_at` is deliberately not forwarded: the trait's default loops
    // over this `write_at`, so short writes and ENOSPC reach the library.
    fn write_at(&self, buf: &[u8], offset: u64) -> io::Result<usize> {
        if self.faults.take_write_enospc(buf, self.is_segment()) {
            self.faults
                .injected_write_enospc
                .fetch_add(1, Ordering::SeqCst);
            return Err(io::Error::from_raw_os_error(ENOSPC));
        }
        let max = self.faults.short_write_max.load(Ordering::SeqCst);
        if max > 0 && buf.len() > max {
            self.faults
                .injected_short_writes
                .fetch_add(1, Ordering::SeqCst);
            return self.inner.write_at(&buf[..max], offset);
        }
        self.inner.write_at(buf, offset)
    }

    fn sync_data(&self) -> io::Result<()> {
        if self.is_segment() {
            self.faults.wait_while_held();
            if self.faults.log_sync_eio.load(Ordering::SeqCst) {
                self.faults.injected_sync_eio.fetch_add(1, Ordering::SeqCst);
                return Err(io::Error::from_raw_os_error(EIO));
            }
            self.faults.log_syncs.fetch_add(1, Ordering::SeqCst);
        }
        self.inner.sync_data()
    }

    fn allocate(&self, len: u64) -> io::Result<()> {
        // Like a real full disk: space already allocated stays usable, only
        // growing the file fails.
        if self.faults.allocate_enospc.load(Ordering::SeqCst) && len > self.inner.len()? {
            self.faults
                .injected_allocate_enospc
                .fetch_add(1, Ordering::SeqCst);
            return Err(io::Error::from_raw_os_error(ENOSPC));
        }
        self.inner.allocate(len)
    }

    fn read_at(&self, buf: &mut [u8], offset: u64) -> io::Result<usize> {
        self.inner.read_at(buf, offset)
    }

    fn read_copy(&self, offset: u64, len: usize) -> io::Result<bytes::Bytes> {
        self.inner.read_copy(offset, len)
    }

    fn read_view(&self, offset: u64, len: usize) -> io::Result<bytes::Bytes> {
        self.inner.read_view(offset, len)
    }
}

// ---------------------------------------------------------------------------
// Small tools
// ---------------------------------------------------------------------------

/// A fixed-seed xorshift generator, so every run replays the same inputs.
pub struct Rng(pub u64);

impl Rng {
    /// The next 64 random bits.
    pub fn next(&mut self) -> u64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        self.0
    }

    /// A number below `n`.
    pub fn below(&mut self, n: u64) -> u64 {
        self.next() % n
    }

    /// Up to `max_len - 1` random bytes.
    pub fn bytes(&mut self, max_len: usize) -> Vec<u8> {
        let len = (self.next() as usize) % max_len;
        (0..len).map(|_| self.next() as u8).collect()
    }
}

/// Flips bit 4 of the byte at `offset` of a real file.
pub fn flip_byte(path: &Path, offset: u64) {
    use std::os::unix::fs::FileExt;
    let file = std::fs::OpenOptions::new()
        .read(true)
        .write(true)
        .open(path)
        .expect("open the file to damage");
    let mut byte = [0u8];
    file.read_exact_at(&mut byte, offset)
        .expect("read the byte");
    file.write_all_at(&[byte[0] ^ 0x10], offset)
        .expect("write the byte back");
}

/// What [`Store::visit_query`] lends, copied out, and its head.
pub fn visited_query(
    store: &Store,
    query: &evstore::Query,
    from: u64,
    direction: Direction,
    limit: usize,
) -> (Vec<RecordedEvent>, Option<u64>) {
    let mut lent = Vec::new();
    let visit = store
        .visit_query(query, from, direction, limit, |e| {
            // A view's own accessors agree with its copy.
            let owned = e.to_owned_event();
            assert_eq!(e.tags().count(), owned.tags.len());
            assert_eq!(e.timestamp(), owned.timestamp());
            lent.push(owned);
        })
        .unwrap();
    assert_eq!(visit.visited, lent.len());
    (lent, visit.head)
}
