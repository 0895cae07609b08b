//! The figures [`crate::Store::metrics`] returns: plain data, taken from
//! the store's atomics in one pass.

use super::distribution::Distribution;

/// What the store did since it was opened, and where it stands now; see
/// [`crate::Store::metrics`]. Counters only grow; the README's
/// "Observability" section says what each figure means and what to do
/// when it looks wrong.
#[derive(Debug, Clone, Default)]
#[non_exhaustive]
pub struct Metrics {
    /// Appends and commits.
    pub appends: AppendMetrics,
    /// How appends were grouped.
    pub group_commit: GroupCommitMetrics,
    /// `fdatasync` of the log.
    pub sync: SyncMetrics,
    /// Segment files.
    pub segments: SegmentMetrics,
    /// Each live subscription, oldest first (a projection's own
    /// subscription included).
    pub subscribers: Vec<SubscriberMetrics>,
    /// Each projection started on this handle's store, oldest first.
    pub projections: Vec<ProjectionMetrics>,
    /// Reads.
    pub reads: ReadMetrics,
    /// Every position below this is written.
    pub written_position: u64,
    /// Every position below this is durable.
    pub durable_position: u64,
    /// Whether the store refuses writes for good after an I/O error or a
    /// panic in one of its threads ([`crate::Error::StorePoisoned`]).
    pub poisoned: bool,
}

/// Commits of one durability mode.
#[derive(Debug, Clone, Copy, Default)]
#[non_exhaustive]
pub struct ModeMetrics {
    /// Commits acknowledged (an append is a commit of one stream):
    /// buffered ones once written, durable ones once synced. A durable
    /// commit whose sync failed counts under
    /// [`AppendMetrics::other_refusals`] instead.
    pub commits: u64,
    /// Events they held.
    pub events: u64,
    /// Their bytes in the log, headers and padding included.
    pub bytes: u64,
    /// Nanoseconds from each call to its answer, refused and failed calls
    /// included (those refused before reaching the writer excepted).
    pub latency: Distribution,
}

/// Appends and commits; see [`Metrics::appends`].
#[derive(Debug, Clone, Copy, Default)]
#[non_exhaustive]
pub struct AppendMetrics {
    /// Those acknowledged once durable ([`crate::Durability::Sync`]).
    pub durable: ModeMetrics,
    /// Those acknowledged once written ([`crate::Durability::Buffered`]).
    pub buffered: ModeMetrics,
    /// Refused with [`crate::Error::WrongExpectedVersion`].
    pub wrong_expected_version: u64,
    /// Refused with [`crate::Error::AppendConditionFailed`].
    pub condition_failed: u64,
    /// Refused by the writer for another reason (a deleted stream, a full
    /// disk, a poisoned store).
    pub other_refusals: u64,
    /// Retries (events already in the log, by id) answered with the
    /// original result, nothing written.
    pub idempotent_retries: u64,
}

/// How appends were grouped; see [`Metrics::group_commit`].
#[derive(Debug, Clone, Copy, Default)]
#[non_exhaustive]
pub struct GroupCommitMetrics {
    /// Commands per group (appends, commits, flushes), one value per
    /// group: its count is the number of groups. An append deferred to the
    /// next group (a retry of an append in the same group) counts there.
    pub commands_per_group: Distribution,
    /// Log bytes of the commits each group wrote (seals and durable marks
    /// left out).
    pub bytes_per_group: Distribution,
    /// Commands queued for the writer now.
    pub queued_commands: u64,
    /// Their bytes.
    pub queued_bytes: u64,
    /// Callers waiting now for room in the full queue.
    pub waiting_for_room: u64,
    /// Nanoseconds callers waited for room in a full queue
    /// (`Options::max_queue_bytes`), one value per wait.
    pub back_pressure: Distribution,
}

/// `fdatasync` of the log; see [`Metrics::sync`].
#[derive(Debug, Clone, Copy, Default)]
#[non_exhaustive]
pub struct SyncMetrics {
    /// Nanoseconds per sync: its count is the number of syncs.
    pub latency: Distribution,
    /// Log bytes each sync made durable.
    pub bytes_per_sync: Distribution,
    /// Writes and syncs of the log that failed.
    pub write_errors: u64,
}

/// Segment files; see [`Metrics::segments`].
#[derive(Debug, Clone, Copy, Default)]
#[non_exhaustive]
pub struct SegmentMetrics {
    /// Segments in the log.
    pub segments: u64,
    /// Of them, sealed.
    pub sealed: u64,
    /// Nanoseconds the writer was held by each rollover (seal, sync, new
    /// segment): its count is the number of rollovers.
    pub rollovers: Distribution,
    /// Of that, nanoseconds spent waiting for the next segment's file to be
    /// preallocated.
    pub preallocation_waits: Distribution,
    /// Index files written for sealed segments.
    pub index_files_written: u64,
    /// Index files found damaged and rebuilt.
    pub index_files_repaired: u64,
    /// Index or postings files that could not be written (the next open
    /// rebuilds them).
    pub index_write_failures: u64,
    /// Segments written with zeros before taking events (see
    /// [`crate::Options::zero_fill_below`]).
    pub zero_filled: u64,
}

/// One live subscription; see [`Metrics::subscribers`].
#[derive(Debug, Clone, Default)]
#[non_exhaustive]
pub struct SubscriberMetrics {
    /// Its number in this store, never reused: it tells subscriptions
    /// apart from one snapshot to the next.
    pub id: u64,
    /// The stream it follows, or `$all`.
    pub source: String,
    /// The global position below which it has seen everything. A stream
    /// subscription knows it once it has first caught up (0 until then).
    pub position: u64,
    /// Positions visible to it that it has not seen. For a stream
    /// subscription these are every event after the last it saw, other
    /// streams' included: how far behind the head of the log it reads.
    pub lag: u64,
    /// Log bytes of those positions.
    pub lag_bytes: u64,
    /// Events it handed out.
    pub events: u64,
    /// Times it woke up after waiting for new events.
    pub wakeups: u64,
}

/// One projection; see [`Metrics::projections`].
#[derive(Debug, Clone, Default)]
#[non_exhaustive]
pub struct ProjectionMetrics {
    /// Its name.
    pub name: String,
    /// The position of the first event not yet handled.
    pub position: u64,
    /// Positions visible to it that it has not handled.
    pub lag: u64,
    /// Log bytes of those positions.
    pub lag_bytes: u64,
    /// Events handled.
    pub events_handled: u64,
    /// Failed handler calls that were retried.
    pub retries: u64,
    /// Failed handler calls, retried or not.
    pub failures: u64,
    /// Whether it has ended.
    pub finished: bool,
}

/// Reads; see [`Metrics::reads`].
#[derive(Debug, Clone, Copy, Default)]
#[non_exhaustive]
pub struct ReadMetrics {
    /// Read calls (`read_stream`, `read_all`, `read_query`).
    pub reads: u64,
    /// Events they returned.
    pub events: u64,
    /// Payload and metadata bytes of those events.
    pub bytes: u64,
    /// Reads answered through a stream's or a query's index.
    pub index_lookups: u64,
}

/// A saved checkpoint and how far behind the log it is; see
/// [`crate::Store::checkpoint_lags`].
#[derive(Debug, Clone, Default, PartialEq, Eq)]
#[non_exhaustive]
pub struct CheckpointLag {
    /// The checkpoint's name.
    pub name: String,
    /// The position saved: the first event its projection has not handled.
    pub position: u64,
    /// Visible positions at or after it.
    pub lag: u64,
    /// Log bytes of those positions.
    pub lag_bytes: u64,
}
