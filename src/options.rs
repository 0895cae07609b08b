//! Store options.

use crate::error::{Error, Result};
use crate::storage::{OsStorage, Storage};
use crate::types::Durability;
use std::sync::Arc;
use std::time::Duration;

/// How a store is opened and run. `Options::default()` suits most uses.
///
/// ```
/// use evstore::{Durability, Options};
/// let options = Options::default()
///     .segment_size(128 << 20)
///     .durability(Durability::Buffered);
/// assert_eq!(options.segment_size, 128 << 20);
/// ```
#[derive(Debug, Clone)]
pub struct Options {
    /// Size each segment file is preallocated to (default 64 MiB; at least
    /// 4 KiB, at most 4 GiB). An append must fit in one segment.
    pub segment_size: u64,
    /// Default durability of appends, and what readers see (default `Sync`).
    pub durability: Durability,
    /// How often buffered appends are made durable in the background
    /// (default 100 ms).
    pub flush_interval: Duration,
    /// The most bytes the writer takes into one group commit (default 4 MiB;
    /// a single larger append still goes through on its own).
    pub max_batch_bytes: usize,
    /// How long the writer waits for more appends before writing a group.
    /// `None` (the default) adds no wait: batching comes from concurrency.
    /// The wait ends early once `max_batch_bytes` are queued. A flush (and
    /// so [`crate::Store::close`]) waits it out too. A linger too long to be
    /// a deadline (such as [`Duration::MAX`]) lasts until `max_batch_bytes`
    /// are queued: a flush or close with fewer appends behind it waits for
    /// more.
    pub max_linger: Option<Duration>,
    /// Bytes of appends that may wait for the writer before new appenders
    /// block (default 64 MiB).
    pub max_queue_bytes: usize,
    /// Largest event, payload plus metadata, in bytes (default 16 MiB).
    pub max_event_size: usize,
    /// Longest stream name in bytes (default 256, at most 65535).
    pub max_stream_name_len: usize,
    /// Longest event type in bytes (default 256, at most 65535).
    pub max_event_type_len: usize,
    /// How many of the most recently written events a retried append is
    /// recognised against by event id (default 1,000,000; 0 turns it off).
    /// Ids of sealed segments are looked up in their index files (a Bloom
    /// filter, then a sorted table); only the active segment's ids are held
    /// in memory.
    pub idempotency_window: usize,
    /// Preallocate the next segment on a helper thread while the active one
    /// fills (default `true`), so rollover never waits for allocation. Turn
    /// it off for a storage operation order that is fully deterministic.
    pub background_preallocation: bool,
    /// Write a sealed segment's index file on a helper thread (default
    /// `true`), so the append that fills a segment does not wait for it.
    /// Turn it off for a storage operation order that is fully
    /// deterministic.
    pub background_index_writes: bool,
    /// Hash every stream name to the same value in new index files. Only
    /// for testing that streams whose hashes collide are still told apart;
    /// it makes lookups in sealed segments linear in their stream count.
    #[doc(hidden)]
    pub collide_stream_hashes: bool,
    /// Snapshots kept per stream: saving one prunes all but this many of the
    /// newest (by version). At least 1; the default 2 leaves a fallback if
    /// the newest is found damaged.
    pub snapshots_kept: usize,
    /// How often a store opened with [`crate::Store::open_read_only`] looks
    /// for events the writing process appended (default 10 ms). Each look
    /// reads the header of the next batch, a few bytes from the page cache.
    pub poll_interval: Duration,
    /// The file system the store lives on. Defaults to the real one; tests
    /// pass a back end that injects faults.
    pub storage: Arc<dyn Storage>,
}

impl Default for Options {
    fn default() -> Self {
        Options {
            segment_size: 64 << 20,
            durability: Durability::Sync,
            flush_interval: Duration::from_millis(100),
            max_batch_bytes: 4 << 20,
            max_linger: None,
            max_queue_bytes: 64 << 20,
            max_event_size: 16 << 20,
            max_stream_name_len: 256,
            max_event_type_len: 256,
            idempotency_window: 1_000_000,
            background_preallocation: true,
            background_index_writes: true,
            collide_stream_hashes: false,
            snapshots_kept: 2,
            poll_interval: Duration::from_millis(10),
            storage: Arc::new(OsStorage),
        }
    }
}

impl Options {
    /// Sets [`Options::segment_size`].
    pub fn segment_size(mut self, bytes: u64) -> Self {
        self.segment_size = bytes;
        self
    }

    /// Sets [`Options::durability`].
    pub fn durability(mut self, durability: Durability) -> Self {
        self.durability = durability;
        self
    }

    /// Sets [`Options::flush_interval`].
    pub fn flush_interval(mut self, interval: Duration) -> Self {
        self.flush_interval = interval;
        self
    }

    /// Sets [`Options::max_batch_bytes`].
    pub fn max_batch_bytes(mut self, bytes: usize) -> Self {
        self.max_batch_bytes = bytes;
        self
    }

    /// Sets [`Options::max_linger`].
    pub fn max_linger(mut self, linger: Option<Duration>) -> Self {
        self.max_linger = linger;
        self
    }

    /// Sets [`Options::max_queue_bytes`].
    pub fn max_queue_bytes(mut self, bytes: usize) -> Self {
        self.max_queue_bytes = bytes;
        self
    }

    /// Sets [`Options::max_event_size`].
    pub fn max_event_size(mut self, bytes: usize) -> Self {
        self.max_event_size = bytes;
        self
    }

    /// Sets [`Options::max_stream_name_len`].
    pub fn max_stream_name_len(mut self, bytes: usize) -> Self {
        self.max_stream_name_len = bytes;
        self
    }

    /// Sets [`Options::max_event_type_len`].
    pub fn max_event_type_len(mut self, bytes: usize) -> Self {
        self.max_event_type_len = bytes;
        self
    }

    /// Sets [`Options::idempotency_window`].
    pub fn idempotency_window(mut self, events: usize) -> Self {
        self.idempotency_window = events;
        self
    }

    /// Sets [`Options::background_preallocation`].
    pub fn background_preallocation(mut self, enabled: bool) -> Self {
        self.background_preallocation = enabled;
        self
    }

    /// Sets [`Options::background_index_writes`].
    pub fn background_index_writes(mut self, enabled: bool) -> Self {
        self.background_index_writes = enabled;
        self
    }

    /// Sets [`Options::collide_stream_hashes`].
    #[doc(hidden)]
    pub fn collide_stream_hashes(mut self, enabled: bool) -> Self {
        self.collide_stream_hashes = enabled;
        self
    }

    /// Sets [`Options::snapshots_kept`].
    pub fn snapshots_kept(mut self, count: usize) -> Self {
        self.snapshots_kept = count;
        self
    }

    /// Sets [`Options::poll_interval`].
    pub fn poll_interval(mut self, interval: Duration) -> Self {
        self.poll_interval = interval;
        self
    }

    /// Sets [`Options::storage`].
    pub fn storage(mut self, storage: Arc<dyn Storage>) -> Self {
        self.storage = storage;
        self
    }

    pub(crate) fn validate(&self) -> Result<()> {
        if self.segment_size < 4096 || self.segment_size > u32::MAX as u64 {
            return Err(Error::InvalidOption(format!(
                "segment_size {} is outside 4 KiB..=4 GiB",
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
