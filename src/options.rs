//! Store options.

use crate::error::{Error, Result};
use crate::storage::{OsStorage, Storage};
use crate::types::Durability;
use std::sync::Arc;
use std::time::Duration;

/// How a store is opened and run. `Options::default()` suits most uses;
/// change it with the builder methods, each documenting its setting and
/// default.
///
/// ```
/// use evstore::{Durability, Options, Store};
/// # fn main() -> evstore::Result<()> {
/// # let dir = tempfile::tempdir().unwrap();
/// let options = Options::default()
///     .segment_size(16 << 20)
///     .durability(Durability::Buffered);
/// let store = Store::open(dir.path(), options)?;
/// # store.close() }
/// ```
#[derive(Debug, Clone)]
// Each switch is an independent yes or no a builder method sets; grouping
// them into enums would not make any of them clearer.
#[allow(clippy::struct_excessive_bools)]
pub struct Options {
    /// Size each segment file is preallocated to.
    pub(crate) segment_size: u64,
    /// Default durability of appends, and what readers see.
    pub(crate) durability: Durability,
    /// Whether payloads and metadata are sealed with their subject's key.
    pub(crate) crypto_shredding: bool,
    /// The most segment bytes a scavenge reads per second, if limited.
    pub(crate) scavenge_bytes_per_second: Option<u64>,
    /// How often a background thread scavenges, if one does.
    pub(crate) background_scavenge: Option<Duration>,
    /// How often buffered appends are made durable in the background.
    pub(crate) flush_interval: Duration,
    /// The most bytes the writer takes into one group commit.
    pub(crate) max_batch_bytes: usize,
    /// How long the writer waits for more appends before writing a group.
    pub(crate) max_linger: Option<Duration>,
    /// Bytes of appends that may wait for the writer before appenders block.
    pub(crate) max_queue_bytes: usize,
    /// Largest event, payload plus metadata, in bytes.
    pub(crate) max_event_size: usize,
    /// Longest stream name in bytes.
    pub(crate) max_stream_name_len: usize,
    /// Longest event type in bytes.
    pub(crate) max_event_type_len: usize,
    /// Longest tag in bytes.
    pub(crate) max_tag_len: usize,
    /// Most tags on one event.
    pub(crate) max_tags_per_event: usize,
    /// How many recently written events a retried append is recognised
    /// against by event id.
    pub(crate) idempotency_window: usize,
    /// Bytes behind the end of what is synced that the writer leaves in the
    /// page cache; `None` leaves everything.
    pub(crate) page_cache_window: Option<u64>,
    /// Zero-fill the next segment while the log is written at most this
    /// many bytes a second; `None` never.
    pub(crate) zero_fill_below: Option<u64>,
    /// Preallocate the next segment on a helper thread.
    #[cfg(feature = "testing")]
    background_preallocation: bool,
    /// Write a sealed segment's index file on a helper thread.
    #[cfg(feature = "testing")]
    background_index_writes: bool,
    /// Hash every stream name to the same value in new index files.
    #[cfg(feature = "testing")]
    collide_stream_hashes: bool,
    /// Snapshots kept per stream.
    pub(crate) snapshots_kept: usize,
    /// How often a read-only store looks for newly appended events.
    pub(crate) poll_interval: Duration,
    /// The file system the store lives on.
    pub(crate) storage: Arc<dyn Storage>,
    /// A panic to raise once in one of the store's threads (tests only).
    #[cfg(feature = "testing")]
    pub(crate) injected_panic: Option<(PanicPoint, Arc<std::sync::atomic::AtomicBool>)>,
}

/// A thread of the store that `Options::inject_panic` (with the `testing`
/// feature) makes panic.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum PanicPoint {
    /// The group-commit leader, while it writes a group of appends.
    Leader,
    /// The commit thread, as it takes over a queue from a caller.
    CommitThread,
    /// The background flusher of buffered appends, before a flush.
    Flusher,
    /// The thread that writes a sealed segment's index file.
    IndexWriter,
    /// A read-only store's follower, before it polls the log.
    Follower,
    /// The background scavenger, before a pass.
    Scavenger,
}

impl Default for Options {
    fn default() -> Self {
        Options {
            segment_size: 64 << 20,
            durability: Durability::Sync,
            crypto_shredding: false,
            scavenge_bytes_per_second: None,
            background_scavenge: None,
            flush_interval: Duration::from_millis(100),
            max_batch_bytes: 4 << 20,
            max_linger: None,
            max_queue_bytes: 64 << 20,
            max_event_size: 16 << 20,
            max_stream_name_len: 256,
            max_event_type_len: 256,
            max_tag_len: 256,
            max_tags_per_event: 64,
            idempotency_window: 1_000_000,
            page_cache_window: Some(8 << 20),
            zero_fill_below: Some(32 << 20),
            #[cfg(feature = "testing")]
            background_preallocation: true,
            #[cfg(feature = "testing")]
            background_index_writes: true,
            #[cfg(feature = "testing")]
            collide_stream_hashes: false,
            snapshots_kept: 2,
            poll_interval: Duration::from_millis(10),
            storage: Arc::new(OsStorage),
            #[cfg(feature = "testing")]
            injected_panic: None,
        }
    }
}

impl Options {
    /// Size each segment file is preallocated to (default 64 MiB; at least
    /// 4 KiB, below 4 GiB, a multiple of 8: 4 GiB less 8 bytes at most).
    /// An append must fit in one segment.
    #[must_use]
    pub fn segment_size(mut self, bytes: u64) -> Self {
        self.segment_size = bytes;
        self
    }

    /// Default durability of appends, and what readers see (default
    /// [`Durability::Sync`]).
    #[must_use]
    pub fn durability(mut self, durability: Durability) -> Self {
        self.durability = durability;
        self
    }

    /// Seals every appended event's payload and metadata with a key of its
    /// subject ([`crate::EventData::with_subject`], the stream by default),
    /// so that [`crate::Store::forget`] erases them (default off). Events
    /// written before stay as they were; sealed events are read back the
    /// same whether or not a later open turns this on.
    #[must_use]
    pub fn crypto_shredding(mut self, enabled: bool) -> Self {
        self.crypto_shredding = enabled;
        self
    }

    /// The most bytes of segments [`crate::Store::scavenge`] reads per
    /// second (default: no limit), so that a scavenge beside busy appenders
    /// leaves them the disk and the processor. Zero is taken as one.
    #[must_use]
    pub fn scavenge_bytes_per_second(mut self, budget: Option<u64>) -> Self {
        self.scavenge_bytes_per_second = budget;
        self
    }

    /// Scavenges in a background thread of the writing store, one pass
    /// every `interval` (default: never; scavenge with
    /// [`crate::Store::scavenge`]), within
    /// [`Options::scavenge_bytes_per_second`]. Each pass is what
    /// [`crate::Store::scavenge`] does; its outcome is read with
    /// [`crate::Store::last_background_scavenge`]. The thread stops when
    /// the store closes, at the end of the segment it is rewriting.
    ///
    /// ```
    /// use evstore::{Options, Store};
    /// use std::time::Duration;
    /// # let dir = tempfile::tempdir().unwrap();
    /// let options = Options::default()
    ///     .background_scavenge(Some(Duration::from_secs(600)))
    ///     .scavenge_bytes_per_second(Some(32 << 20));
    /// let store = Store::open(dir.path(), options).unwrap();
    /// ```
    #[must_use]
    pub fn background_scavenge(mut self, interval: Option<Duration>) -> Self {
        self.background_scavenge = interval;
        self
    }

    /// How often buffered appends are made durable in the background
    /// (default 100 ms; must be positive).
    #[must_use]
    pub fn flush_interval(mut self, interval: Duration) -> Self {
        self.flush_interval = interval;
        self
    }

    /// The most bytes the writer takes into one group commit (default 4 MiB;
    /// a single larger append still goes through on its own).
    #[must_use]
    pub fn max_batch_bytes(mut self, bytes: usize) -> Self {
        self.max_batch_bytes = bytes;
        self
    }

    /// How long the writer waits for more appends before writing a group.
    /// `None` (the default) adds no wait: batching comes from concurrency.
    /// The wait ends early once `max_batch_bytes` are queued, or a flush
    /// (or [`crate::Store::close`]) is. A linger too long to be a deadline
    /// (such as [`Duration::MAX`]) lasts until one of those happens.
    #[must_use]
    pub fn max_linger(mut self, linger: Option<Duration>) -> Self {
        self.max_linger = linger;
        self
    }

    /// Bytes of appends that may wait for the writer before new appenders
    /// block (default 64 MiB).
    #[must_use]
    pub fn max_queue_bytes(mut self, bytes: usize) -> Self {
        self.max_queue_bytes = bytes;
        self
    }

    /// Largest event, payload plus metadata, in bytes (default 16 MiB; below
    /// 2 GiB).
    #[must_use]
    pub fn max_event_size(mut self, bytes: usize) -> Self {
        self.max_event_size = bytes;
        self
    }

    /// Longest stream name in bytes (default 256, at most 65535).
    #[must_use]
    pub fn max_stream_name_len(mut self, bytes: usize) -> Self {
        self.max_stream_name_len = bytes;
        self
    }

    /// Longest event type in bytes (default 256, at most 65535).
    #[must_use]
    pub fn max_event_type_len(mut self, bytes: usize) -> Self {
        self.max_event_type_len = bytes;
        self
    }

    /// Longest tag in bytes (default 256, at most 65535).
    #[must_use]
    pub fn max_tag_len(mut self, bytes: usize) -> Self {
        self.max_tag_len = bytes;
        self
    }

    /// Most tags one event may carry (default 64).
    #[must_use]
    pub fn max_tags_per_event(mut self, count: usize) -> Self {
        self.max_tags_per_event = count;
        self
    }

    /// How many of the most recently written events a retried append is
    /// recognised against by event id (default 1,000,000; 0 turns it off).
    /// Ids of sealed segments are looked up in their index files (a Bloom
    /// filter, then a sorted table); only the active segment's ids are held
    /// in memory.
    #[must_use]
    pub fn idempotency_window(mut self, events: usize) -> Self {
        self.idempotency_window = events;
        self
    }

    /// How many bytes behind the end of what it synced the writer leaves in
    /// the operating system's page cache (default 8 MiB; `None` keeps all
    /// it wrote, as long as the kernel does).
    ///
    /// Once synced, the pages further back are handed back to the kernel
    /// (`posix_fadvise(DONTNEED)`; pages some reader has mapped stay), and
    /// the next writes reuse them. Writing into pages the kernel must newly
    /// find costs far more than writing into recycled ones where memory is
    /// returned to a hypervisor while free (virtual machines with free page
    /// reporting or a balloon), and the log's old bytes would otherwise push
    /// other data out of the cache. Reads of events further back than the
    /// window, by a subscriber catching up or a stream read, then come from
    /// the disk unless something read them since; events within it, which
    /// live subscribers read, stay cached.
    #[must_use]
    pub fn page_cache_window(mut self, bytes: Option<u64>) -> Self {
        self.page_cache_window = bytes;
        self
    }

    /// Write the next segment's blocks with zeros before it takes events,
    /// if the active segment fills at no more than `bytes_per_second`
    /// (default 32 MiB/s); `None` never does.
    ///
    /// A segment's space is reserved with `fallocate`, which leaves its
    /// blocks marked unwritten, so the first sync after each write into
    /// them also commits an extent change to the file system's journal.
    /// Blocks written once need no such change. Zero-filling them ahead
    /// makes each sync cheaper (which is what small, frequent durable
    /// appends wait for) but writes every byte of the log twice (which
    /// appends that keep the disk busy pay for). So the thread preparing
    /// the next segment watches the active one fill for a second and
    /// zero-fills only below this rate, pausing between chunks so that the
    /// zeros take at most a quarter of the disk's time, and stopping as
    /// soon as the writer needs the segment. [`crate::Metrics`] counts the
    /// segments so zero-filled. A new store's first segment, with no rate
    /// to judge by, is zero-filled when it is made unless this is `None`
    /// (on this machine, 64 MiB in about a quarter of a second). Where the
    /// file system refuses direct I/O (tmpfs before Linux 6.6) nothing is
    /// zeroed.
    ///
    /// ```
    /// let options = evstore::Options::default().zero_fill_below(None);
    /// # let _ = options;
    /// ```
    #[must_use]
    pub fn zero_fill_below(mut self, bytes_per_second: Option<u64>) -> Self {
        self.zero_fill_below = bytes_per_second;
        self
    }

    /// Preallocate the next segment on a helper thread while the active one
    /// fills (default `true`), so rollover never waits for allocation. Turn
    /// it off for a storage operation order that is fully deterministic.
    /// Only with the `testing` feature; without it this is always on.
    #[cfg(feature = "testing")]
    #[must_use]
    pub fn background_preallocation(mut self, enabled: bool) -> Self {
        self.background_preallocation = enabled;
        self
    }

    /// Write a sealed segment's index file on a helper thread (default
    /// `true`), so the append that fills a segment does not wait for it.
    /// Turn it off for a storage operation order that is fully
    /// deterministic. Only with the `testing` feature; without it this is
    /// always on.
    #[cfg(feature = "testing")]
    #[must_use]
    pub fn background_index_writes(mut self, enabled: bool) -> Self {
        self.background_index_writes = enabled;
        self
    }

    /// Hash every stream name to the same value in new index files (default
    /// `false`). Only for testing that streams whose hashes collide are
    /// still told apart; it makes lookups in sealed segments linear in their
    /// stream count. Only with the `testing` feature.
    #[cfg(feature = "testing")]
    #[doc(hidden)]
    #[must_use]
    pub fn collide_stream_hashes(mut self, enabled: bool) -> Self {
        self.collide_stream_hashes = enabled;
        self
    }

    /// Snapshots kept per stream: saving one prunes all but this many of the
    /// newest (by version). At least 1; the default 2 leaves a fallback if
    /// the newest is found damaged.
    #[must_use]
    pub fn snapshots_kept(mut self, count: usize) -> Self {
        self.snapshots_kept = count;
        self
    }

    /// How often a store opened with [`crate::Store::open_read_only`] looks
    /// for events the writing process appended (default 10 ms; must be
    /// positive). Each look reads the header of the next batch, a few bytes
    /// from the page cache.
    #[must_use]
    pub fn poll_interval(mut self, interval: Duration) -> Self {
        self.poll_interval = interval;
        self
    }

    /// The file system the store lives on. Defaults to the real one
    /// ([`OsStorage`]); tests pass a back end that injects faults.
    #[must_use]
    pub fn storage(mut self, storage: Arc<dyn Storage>) -> Self {
        self.storage = storage;
        self
    }

    /// Makes the thread at `point` panic the first time it gets there: for
    /// tests of how the store reports a panic in its own threads.
    #[cfg(feature = "testing")]
    #[must_use]
    pub fn inject_panic(mut self, point: PanicPoint) -> Self {
        self.injected_panic = Some((point, Arc::new(std::sync::atomic::AtomicBool::new(true))));
        self
    }

    /// Panics if a panic was injected at `point` and has not happened yet.
    #[cfg(feature = "testing")]
    #[expect(
        clippy::manual_assert,
        reason = "the panic is an injected fault, not a failed check"
    )]
    pub(crate) fn take_injected_panic(&self, point: PanicPoint) {
        if let Some((at, armed)) = &self.injected_panic {
            if *at == point && armed.swap(false, std::sync::atomic::Ordering::SeqCst) {
                panic!("injected panic at {point:?}");
            }
        }
    }

    /// Whether the next segment is preallocated on a helper thread.
    #[cfg(feature = "testing")]
    pub(crate) fn preallocates_in_background(&self) -> bool {
        self.background_preallocation
    }

    /// Whether the next segment is preallocated on a helper thread: always,
    /// without the `testing` feature.
    #[cfg(not(feature = "testing"))]
    #[expect(
        clippy::unused_self,
        reason = "the signature of the `testing` build, which reads the options"
    )]
    pub(crate) fn preallocates_in_background(&self) -> bool {
        true
    }

    /// Whether sealed segments' index files are written on a helper thread.
    #[cfg(feature = "testing")]
    pub(crate) fn writes_indexes_in_background(&self) -> bool {
        self.background_index_writes
    }

    /// Whether sealed segments' index files are written on a helper thread:
    /// always, without the `testing` feature.
    #[cfg(not(feature = "testing"))]
    #[expect(
        clippy::unused_self,
        reason = "the signature of the `testing` build, which reads the options"
    )]
    pub(crate) fn writes_indexes_in_background(&self) -> bool {
        true
    }

    /// Whether new index files hash every stream name to the same value.
    #[cfg(feature = "testing")]
    pub(crate) fn collides_stream_hashes(&self) -> bool {
        self.collide_stream_hashes
    }

    /// Whether new index files hash every stream name to the same value:
    /// never, without the `testing` feature.
    #[cfg(not(feature = "testing"))]
    #[expect(
        clippy::unused_self,
        reason = "the signature of the `testing` build, which reads the options"
    )]
    pub(crate) fn collides_stream_hashes(&self) -> bool {
        false
    }

    pub(crate) fn validate(&self) -> Result<()> {
        if self.segment_size < 4096 || self.segment_size > u64::from(u32::MAX) {
            return Err(Error::InvalidOption(format!(
                "segment_size {} is outside 4 KiB up to (not including) 4 GiB",
                self.segment_size
            )));
        }
        if !self.segment_size.is_multiple_of(8) {
            return Err(Error::InvalidOption(format!(
                "segment_size {} is not a multiple of 8",
                self.segment_size
            )));
        }
        if self.max_stream_name_len == 0 || self.max_stream_name_len > u16::MAX as usize {
            return Err(Error::InvalidOption(
                "max_stream_name_len must be within 1..=65535".into(),
            ));
        }
        if self.max_event_type_len == 0 || self.max_event_type_len > u16::MAX as usize {
            return Err(Error::InvalidOption(
                "max_event_type_len must be within 1..=65535".into(),
            ));
        }
        if self.max_event_size > u32::MAX as usize / 2 {
            return Err(Error::InvalidOption(
                "max_event_size must be below 2 GiB".into(),
            ));
        }
        if self.snapshots_kept == 0 {
            return Err(Error::InvalidOption(
                "snapshots_kept must be at least 1".into(),
            ));
        }
        if self.background_scavenge.is_some_and(|i| i.is_zero()) {
            return Err(Error::InvalidOption(
                "background_scavenge interval must be positive".into(),
            ));
        }
        if self.flush_interval.is_zero() {
            return Err(Error::InvalidOption(
                "flush_interval must be positive".into(),
            ));
        }
        if self.poll_interval.is_zero() {
            return Err(Error::InvalidOption(
                "poll_interval must be positive".into(),
            ));
        }
        if self.max_batch_bytes == 0 || self.max_queue_bytes == 0 {
            return Err(Error::InvalidOption(
                "max_batch_bytes and max_queue_bytes must be positive".into(),
            ));
        }
        Ok(())
    }
}
