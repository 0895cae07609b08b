//! [`Store::metrics`]: the recorder's counters, the queue, the segments and
//! every live subscription's and projection's lag, in one snapshot.

use super::Store;
use crate::index::byte_span::span_bytes;
use crate::index::deferred_check::read_checked;
use crate::subscription::{EventLog, Visibility};
use crate::telemetry::recorder::ModeCounters;
use crate::telemetry::Probe;
use crate::telemetry::{
    AppendMetrics, Distribution, GroupCommitMetrics, Metrics, ModeMetrics, ProbeKind,
    ProjectionMetrics, ReadMetrics, SegmentMetrics, SubscriberMetrics, SyncMetrics,
};
use std::sync::atomic::Ordering;
use std::sync::Arc;

fn mode(counters: &ModeCounters) -> ModeMetrics {
    ModeMetrics {
        commits: counters.commits.load(Ordering::Relaxed),
        events: counters.events.load(Ordering::Relaxed),
        bytes: counters.bytes.load(Ordering::Relaxed),
        latency: counters.latency.snapshot(),
    }
}

impl Store {
    /// What the store did since it was opened and where it stands now:
    /// appends by durability, refusals and retries, group sizes, queue
    /// depth and back-pressure, `fdatasync` latency and the bytes each
    /// made durable, rollovers, index files, reads, and every live
    /// subscription's and projection's lag. Taking it reads atomics and
    /// takes the index's read lock briefly (plus a record header per
    /// segment a subscriber lags across); recording them costs appends no
    /// lock. With the `metrics` feature it also refreshes the gauges
    /// published through the `metrics` facade.
    ///
    /// ```
    /// use evstore::{EventData, ExpectedVersion, Filter, Options, Store};
    /// # let dir = tempfile::tempdir().unwrap();
    /// let store = Store::open(dir.path(), Options::default()).unwrap();
    /// let subscription = store.subscribe_all(0, Filter::all());
    /// store.append("s", ExpectedVersion::Any, &[EventData::new("E", &b"x"[..])]).unwrap();
    /// let m = store.metrics();
    /// assert_eq!((m.appends.durable.commits, m.appends.durable.events), (1, 1));
    /// assert!(m.sync.latency.count >= 1 && m.sync.bytes_per_sync.sum >= m.appends.durable.bytes);
    /// // The subscription has not read the event yet.
    /// assert_eq!(m.subscribers[0].lag, 1);
    /// # drop(subscription);
    /// ```
    #[must_use]
    pub fn metrics(&self) -> Metrics {
        let state = self.state();
        let t = &state.telemetry;
        let load = |c: &std::sync::atomic::AtomicU64| c.load(Ordering::Relaxed);
        let appends = AppendMetrics {
            durable: mode(&t.durable),
            buffered: mode(&t.buffered),
            wrong_expected_version: load(&t.wrong_expected_version),
            condition_failed: load(&t.condition_failed),
            other_refusals: load(&t.other_refusals),
            idempotent_retries: load(&t.idempotent_retries),
        };
        let (queued_commands, queued_bytes, waiting_for_room, back_pressure) =
            match self.inner.group_commit.as_deref() {
                Some(gc) => {
                    let (commands, bytes, waiting) = gc.queue_depth();
                    (
                        commands as u64,
                        bytes as u64,
                        waiting as u64,
                        gc.back_pressure(),
                    )
                }
                None => (0, 0, 0, Distribution::default()),
            };
        let group_commit = GroupCommitMetrics {
            commands_per_group: t.commands_per_group.snapshot(),
            bytes_per_group: t.bytes_per_group.snapshot(),
            queued_commands,
            queued_bytes,
            waiting_for_room,
            back_pressure,
        };
        let sync = SyncMetrics {
            latency: t.sync_latency.snapshot(),
            bytes_per_sync: t.bytes_per_sync.snapshot(),
            write_errors: load(&t.write_errors),
        };
        let reads = ReadMetrics {
            reads: load(&t.reads),
            events: load(&t.events_read),
            bytes: load(&t.bytes_read),
            index_lookups: load(&t.index_lookups),
        };
        let segments;
        let subscribers;
        let projections;
        {
            let index = state.index.read();
            let (all, sealed) = index.segment_counts();
            segments = SegmentMetrics {
                segments: all,
                sealed,
                rollovers: t.rollovers.snapshot(),
                preallocation_waits: t.preallocation_waits.snapshot(),
                index_files_written: load(&t.index_files_written),
                index_files_repaired: index.repairs().count.load(Ordering::Relaxed),
                index_write_failures: load(&state.index_write_failures),
                zero_filled: load(&state.zero_filled_segments),
            };
        }
        (subscribers, projections) = self.probe_metrics(&state.probes.live());

        let metrics = Metrics {
            appends,
            group_commit,
            sync,
            segments,
            subscribers,
            projections,
            reads,
            written_position: state.written.load(Ordering::Acquire),
            durable_position: state.durable.load(Ordering::Acquire),
            poisoned: state.poisoned().is_some(),
        };
        t.publish_snapshot(&metrics);
        metrics
    }

    /// Each live subscription's and projection's figures, lag included.
    fn probe_metrics(
        &self,
        probes: &[Arc<Probe>],
    ) -> (Vec<SubscriberMetrics>, Vec<ProjectionMetrics>) {
        let load = |c: &std::sync::atomic::AtomicU64| c.load(Ordering::Relaxed);
        let mut subscribers = Vec::new();
        let mut projections = Vec::new();
        for probe in probes {
            let visibility = if probe.follows_written.load(Ordering::Relaxed) {
                Visibility::Written
            } else {
                Visibility::Durable
            };
            let end = self.watermark(visibility);
            let position = load(&probe.position);
            let lag = end.saturating_sub(position);
            // A damaged index makes the byte figure unknown, not the
            // snapshot fail: it reads as zero.
            let lag_bytes = self.log_bytes_between(position, end).unwrap_or(0);
            match &probe.kind {
                ProbeKind::Subscription(source) => {
                    subscribers.push(SubscriberMetrics {
                        id: probe.id,
                        source: source.clone(),
                        position,
                        lag,
                        lag_bytes,
                        events: load(&probe.events),
                        wakeups: load(&probe.wakeups),
                    });
                }
                ProbeKind::Projection(name) => {
                    projections.push(ProjectionMetrics {
                        name: name.clone(),
                        position,
                        lag,
                        lag_bytes,
                        events_handled: load(&probe.events),
                        retries: load(&probe.retries),
                        failures: load(&probe.failures),
                        finished: probe.finished.load(Ordering::Relaxed),
                    });
                }
            }
        }
        (subscribers, projections)
    }

    /// Log bytes of the records at positions `from..to` (see
    /// [`span_bytes`]), index files checked first if need be.
    pub(crate) fn log_bytes_between(&self, from: u64, to: u64) -> crate::error::Result<u64> {
        let parts = read_checked(&self.state().index, |index| index.byte_span(from, to))?;
        span_bytes(&parts)
    }
}
