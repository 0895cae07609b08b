//! The store's counters and distributions, updated where things happen:
//! relaxed atomics only, mostly by the group-commit leader once per group.
//! Recording adds no lock to the callers' path; the one figure a caller
//! records itself is its call's latency (a few atomic adds on the shared
//! distribution). With the `metrics` feature, each figure is also sent to
//! the `metrics` facade through handles registered at open.

use super::distribution::AtomicDistribution;
use crate::types::Durability;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

/// Why the writer refused a commit.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Refusal {
    /// A stream was not at its expected version.
    WrongExpectedVersion,
    /// An event matching the commit's condition was appended since.
    ConditionFailed,
    /// Anything else (a deleted stream, a full disk, a poisoned store).
    Other,
}

/// Appends of one durability mode.
#[derive(Debug, Default)]
pub struct ModeCounters {
    /// Commits written.
    pub commits: AtomicU64,
    /// Events they held.
    pub events: AtomicU64,
    /// Their bytes in the log.
    pub bytes: AtomicU64,
    /// Time from the call to its answer, for every call that reached the
    /// writer.
    pub latency: AtomicDistribution,
}

/// See the module documentation.
#[derive(Debug, Default)]
pub struct Recorder {
    /// `Durability::Sync` appends.
    pub durable: ModeCounters,
    /// `Durability::Buffered` appends.
    pub buffered: ModeCounters,
    /// Refused for a wrong expected version.
    pub wrong_expected_version: AtomicU64,
    /// Refused because the condition's query matched a newer event.
    pub condition_failed: AtomicU64,
    /// Refused for any other reason.
    pub other_refusals: AtomicU64,
    /// Retries answered with the original result, nothing written.
    pub idempotent_retries: AtomicU64,
    /// Commands per group, one value per group.
    pub commands_per_group: AtomicDistribution,
    /// Bytes written per group.
    pub bytes_per_group: AtomicDistribution,
    /// Each `fdatasync` of the log and how long it took.
    pub sync_latency: AtomicDistribution,
    /// Log bytes each of those syncs made durable.
    pub bytes_per_sync: AtomicDistribution,
    /// Log bytes written so far (events, seals and durable marks).
    written_bytes: AtomicU64,
    /// Log bytes made durable so far.
    synced_bytes: AtomicU64,
    /// Writes and syncs of the log that failed.
    pub write_errors: AtomicU64,
    /// Each rollover to a new segment and how long the writer was held by
    /// it (seal, sync, waiting for the preallocated file, install).
    pub rollovers: AtomicDistribution,
    /// Within rollovers, the time spent waiting for the next segment's
    /// file to be preallocated.
    pub preallocation_waits: AtomicDistribution,
    /// Index files written for sealed segments.
    pub index_files_written: AtomicU64,
    /// Read calls served.
    pub reads: AtomicU64,
    /// Events they returned.
    pub events_read: AtomicU64,
    /// Payload and metadata bytes of those events.
    pub bytes_read: AtomicU64,
    /// Reads answered through an index (a stream's or a query's).
    pub index_lookups: AtomicU64,
    #[cfg(feature = "metrics")]
    published: Option<super::published::Published>,
}

fn add(counter: &AtomicU64, n: u64) {
    counter.fetch_add(n, Ordering::Relaxed);
}

impl Recorder {
    /// A recorder that also publishes to the `metrics` facade, labelled
    /// with `store` (its directory).
    #[cfg(feature = "metrics")]
    pub fn publishing(store: &std::path::Path) -> Self {
        Recorder {
            published: Some(super::published::Published::new(store)),
            ..Recorder::default()
        }
    }

    /// The counters of `durability`.
    pub fn mode(&self, durability: Durability) -> &ModeCounters {
        match durability {
            Durability::Sync => &self.durable,
            Durability::Buffered => &self.buffered,
        }
    }

    /// A commit of `events` events and `bytes` bytes was written.
    pub fn committed(&self, durability: Durability, events: u64, bytes: u64) {
        let mode = self.mode(durability);
        add(&mode.commits, 1);
        add(&mode.events, events);
        add(&mode.bytes, bytes);
        #[cfg(feature = "metrics")]
        if let Some(p) = &self.published {
            p.committed(durability, events, bytes);
        }
    }

    /// A call to append or commit was answered after `elapsed`.
    pub fn answered(&self, durability: Durability, elapsed: Duration) {
        self.mode(durability).latency.record_duration(elapsed);
        #[cfg(feature = "metrics")]
        if let Some(p) = &self.published {
            p.answered(durability, elapsed);
        }
    }

    /// The writer refused a commit.
    pub fn refused(&self, why: Refusal) {
        add(
            match why {
                Refusal::WrongExpectedVersion => &self.wrong_expected_version,
                Refusal::ConditionFailed => &self.condition_failed,
                Refusal::Other => &self.other_refusals,
            },
            1,
        );
        #[cfg(feature = "metrics")]
        if let Some(p) = &self.published {
            p.refused(why);
        }
    }

    /// A retry was answered with its original result.
    pub fn retry_served(&self) {
        add(&self.idempotent_retries, 1);
        #[cfg(feature = "metrics")]
        if let Some(p) = &self.published {
            p.retry_served();
        }
    }

    /// A group of `commands` commands wrote `bytes` bytes.
    pub fn group(&self, commands: u64, bytes: u64) {
        self.commands_per_group.record(commands);
        self.bytes_per_group.record(bytes);
        #[cfg(feature = "metrics")]
        if let Some(p) = &self.published {
            p.group(commands, bytes);
        }
    }

    /// `bytes` more bytes of the log were written.
    pub fn wrote(&self, bytes: u64) {
        add(&self.written_bytes, bytes);
    }

    /// Where a sync starts: the log bytes it will make durable end here.
    pub fn sync_target(&self) -> u64 {
        self.written_bytes.load(Ordering::Relaxed)
    }

    /// A sync that started at `target` (see [`Recorder::sync_target`])
    /// succeeded after `elapsed`.
    pub fn synced(&self, target: u64, elapsed: Duration) {
        let before = self.synced_bytes.fetch_max(target, Ordering::Relaxed);
        let bytes = target.saturating_sub(before);
        self.sync_latency.record_duration(elapsed);
        self.bytes_per_sync.record(bytes);
        #[cfg(feature = "metrics")]
        if let Some(p) = &self.published {
            p.synced(bytes, elapsed);
        }
    }

    /// A write or sync of the log failed.
    pub fn write_failed(&self) {
        add(&self.write_errors, 1);
        #[cfg(feature = "metrics")]
        if let Some(p) = &self.published {
            p.write_failed();
        }
    }

    /// A rollover held the writer for `elapsed`, `waiting` of it for the
    /// preallocated file.
    pub fn rolled_over(&self, elapsed: Duration, waiting: Duration) {
        self.rollovers.record_duration(elapsed);
        self.preallocation_waits.record_duration(waiting);
        #[cfg(feature = "metrics")]
        if let Some(p) = &self.published {
            p.rolled_over(elapsed, waiting);
        }
    }

    /// An index file was written.
    pub fn index_file_written(&self) {
        add(&self.index_files_written, 1);
        #[cfg(feature = "metrics")]
        if let Some(p) = &self.published {
            p.index_file_written();
        }
    }

    /// A read returned `events` events holding `bytes` bytes, through an
    /// index or not.
    pub fn read(&self, events: u64, bytes: u64, through_index: bool) {
        add(&self.reads, 1);
        add(&self.events_read, events);
        add(&self.bytes_read, bytes);
        if through_index {
            add(&self.index_lookups, 1);
        }
        #[cfg(feature = "metrics")]
        if let Some(p) = &self.published {
            p.read(events, bytes, through_index);
        }
    }

    /// Publishes the figures only a snapshot computes (queue depth, lag,
    /// segment counts) as gauges.
    #[cfg(feature = "metrics")]
    pub fn publish_snapshot(&self, metrics: &super::Metrics) {
        if let Some(p) = &self.published {
            p.snapshot(metrics);
        }
    }

    /// Does nothing without the `metrics` feature.
    #[cfg(not(feature = "metrics"))]
    #[expect(
        clippy::unused_self,
        reason = "the signature of the `metrics` build, which publishes"
    )]
    pub fn publish_snapshot(&self, _metrics: &super::Metrics) {}
}
