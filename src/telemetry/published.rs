//! The `metrics` feature: the recorder's figures sent to the `metrics`
//! crate's facade, so any exporter a user installs (Prometheus or another)
//! sees them. Handles are registered once, when the store opens, with the
//! recorder installed then, and labelled `store` with its directory.
//! Durations go out in seconds, sizes in bytes.
//!
//! Only latencies are facade histograms, one sample per sync and per call:
//! each sample costs an exporter work on the append path and in its
//! upkeep. Sizes per group and per sync go out as counters (their totals,
//! so rates and means are a division away) and, when `Store::metrics` is
//! called, as gauges of their percentiles.

use super::recorder::Refusal;
use super::snapshot::Metrics;
use crate::types::Durability;
use metrics::{counter, gauge, histogram, Counter, Gauge, Histogram, Label};
use std::path::Path;
use std::time::Duration;

/// A handle per figure.
pub struct Published {
    store: String,
    /// The label sets of the per-subscriber and per-projection gauges the
    /// last snapshot set: those whose owner is gone are set to zero once.
    labelled: parking_lot::Mutex<Vec<Vec<Label>>>,
    commits: [Counter; 2],
    events: [Counter; 2],
    bytes: [Counter; 2],
    latency: [Histogram; 2],
    refusals: [Counter; 3],
    idempotent_retries: Counter,
    groups: Counter,
    group_commands: Counter,
    group_bytes: Counter,
    syncs: Counter,
    sync_seconds: Histogram,
    sync_bytes: Counter,
    write_errors: Counter,
    rollover_seconds: Histogram,
    preallocation_wait_seconds: Histogram,
    index_files_written: Counter,
    reads: Counter,
    events_read: Counter,
    bytes_read: Counter,
    index_lookups: Counter,
    queued_commands: Gauge,
    queued_bytes: Gauge,
    back_pressure_waits: Counter,
    segments: Gauge,
    sealed_segments: Gauge,
    index_files_repaired: Counter,
    index_write_failures: Counter,
    written_position: Gauge,
    durable_position: Gauge,
    poisoned: Gauge,
}

impl std::fmt::Debug for Published {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Published")
            .field("store", &self.store)
            .finish_non_exhaustive()
    }
}

fn index(durability: Durability) -> usize {
    match durability {
        Durability::Sync => 0,
        Durability::Buffered => 1,
    }
}

const MODES: [&str; 2] = ["sync", "buffered"];

impl Published {
    /// Registers every handle, labelled with `store`.
    pub fn new(store: &Path) -> Self {
        let store = store.display().to_string();
        let s = || store.clone();
        let by_mode = |name: &'static str| {
            MODES.map(|mode| counter!(name, "store" => s(), "durability" => mode))
        };
        Published {
            commits: by_mode("evstore_commits_total"),
            events: by_mode("evstore_events_appended_total"),
            bytes: by_mode("evstore_bytes_appended_total"),
            latency: MODES.map(|mode| {
                histogram!("evstore_commit_seconds", "store" => s(), "durability" => mode)
            }),
            refusals: ["wrong_expected_version", "condition_failed", "other"].map(|reason| {
                counter!("evstore_commits_refused_total", "store" => s(), "reason" => reason)
            }),
            idempotent_retries: counter!("evstore_idempotent_retries_total", "store" => s()),
            groups: counter!("evstore_groups_total", "store" => s()),
            group_commands: counter!("evstore_group_commands_total", "store" => s()),
            group_bytes: counter!("evstore_group_bytes_total", "store" => s()),
            syncs: counter!("evstore_fsyncs_total", "store" => s()),
            sync_seconds: histogram!("evstore_fsync_seconds", "store" => s()),
            sync_bytes: counter!("evstore_fsync_bytes_total", "store" => s()),
            write_errors: counter!("evstore_write_errors_total", "store" => s()),
            rollover_seconds: histogram!("evstore_rollover_seconds", "store" => s()),
            preallocation_wait_seconds: histogram!(
                "evstore_preallocation_wait_seconds",
                "store" => s()
            ),
            index_files_written: counter!("evstore_index_files_written_total", "store" => s()),
            reads: counter!("evstore_reads_total", "store" => s()),
            events_read: counter!("evstore_events_read_total", "store" => s()),
            bytes_read: counter!("evstore_bytes_read_total", "store" => s()),
            index_lookups: counter!("evstore_index_lookups_total", "store" => s()),
            queued_commands: gauge!("evstore_queued_commands", "store" => s()),
            queued_bytes: gauge!("evstore_queued_bytes", "store" => s()),
            back_pressure_waits: counter!("evstore_back_pressure_waits_total", "store" => s()),
            segments: gauge!("evstore_segments", "store" => s()),
            sealed_segments: gauge!("evstore_sealed_segments", "store" => s()),
            index_files_repaired: counter!("evstore_index_files_repaired_total", "store" => s()),
            index_write_failures: counter!("evstore_index_write_failures_total", "store" => s()),
            written_position: gauge!("evstore_written_position", "store" => s()),
            labelled: parking_lot::Mutex::new(Vec::new()),
            durable_position: gauge!("evstore_durable_position", "store" => s()),
            poisoned: gauge!("evstore_poisoned", "store" => s()),
            store,
        }
    }

    pub fn committed(&self, durability: Durability, events: u64, bytes: u64) {
        let at = index(durability);
        if let (Some(c), Some(e), Some(b)) = (
            self.commits.get(at),
            self.events.get(at),
            self.bytes.get(at),
        ) {
            c.increment(1);
            e.increment(events);
            b.increment(bytes);
        }
    }

    pub fn answered(&self, durability: Durability, elapsed: Duration) {
        if let Some(h) = self.latency.get(index(durability)) {
            h.record(elapsed.as_secs_f64());
        }
    }

    pub fn refused(&self, why: Refusal) {
        let at = match why {
            Refusal::WrongExpectedVersion => 0,
            Refusal::ConditionFailed => 1,
            Refusal::Other => 2,
        };
        if let Some(c) = self.refusals.get(at) {
            c.increment(1);
        }
    }

    pub fn retry_served(&self) {
        self.idempotent_retries.increment(1);
    }

    pub fn group(&self, commands: u64, bytes: u64) {
        self.groups.increment(1);
        self.group_commands.increment(commands);
        self.group_bytes.increment(bytes);
    }

    pub fn synced(&self, bytes: u64, elapsed: Duration) {
        self.syncs.increment(1);
        self.sync_seconds.record(elapsed.as_secs_f64());
        self.sync_bytes.increment(bytes);
    }

    pub fn write_failed(&self) {
        self.write_errors.increment(1);
    }

    pub fn rolled_over(&self, elapsed: Duration, waiting: Duration) {
        self.rollover_seconds.record(elapsed.as_secs_f64());
        self.preallocation_wait_seconds
            .record(waiting.as_secs_f64());
    }

    pub fn index_file_written(&self) {
        self.index_files_written.increment(1);
    }

    pub fn read(&self, events: u64, bytes: u64, through_index: bool) {
        self.reads.increment(1);
        self.events_read.increment(events);
        self.bytes_read.increment(bytes);
        if through_index {
            self.index_lookups.increment(1);
        }
    }

    /// Sets the gauges a snapshot computes, and the counters only a
    /// snapshot sees, to their current values.
    #[expect(clippy::cast_precision_loss, reason = "gauges are f64 in the facade")]
    pub fn snapshot(&self, m: &Metrics) {
        self.queued_commands
            .set(m.group_commit.queued_commands as f64);
        self.queued_bytes.set(m.group_commit.queued_bytes as f64);
        self.back_pressure_waits
            .absolute(m.group_commit.back_pressure.count);
        self.segments.set(m.segments.segments as f64);
        self.sealed_segments.set(m.segments.sealed as f64);
        self.index_files_repaired
            .absolute(m.segments.index_files_repaired);
        self.index_write_failures
            .absolute(m.segments.index_write_failures);
        self.written_position.set(m.written_position as f64);
        self.durable_position.set(m.durable_position as f64);
        self.poisoned.set(if m.poisoned { 1.0 } else { 0.0 });
        let percentiles = |name: &'static str, d: &super::Distribution, scale: f64| {
            for (quantile, value) in [("0.5", d.p50), ("0.99", d.p99), ("1", d.max)] {
                gauge!(name, "store" => self.store.clone(), "quantile" => quantile)
                    .set(value as f64 * scale);
            }
        };
        percentiles("evstore_fsync_bytes", &m.sync.bytes_per_sync, 1.0);
        percentiles(
            "evstore_group_commands",
            &m.group_commit.commands_per_group,
            1.0,
        );
        percentiles(
            "evstore_back_pressure_seconds",
            &m.group_commit.back_pressure,
            1e-9,
        );
        let mut labelled = Vec::new();
        for s in &m.subscribers {
            let labels = vec![
                Label::new("store", self.store.clone()),
                Label::new("subscriber", s.id.to_string()),
                Label::new("source", s.source.clone()),
            ];
            gauge!("evstore_subscriber_lag", labels.clone()).set(s.lag as f64);
            gauge!("evstore_subscriber_lag_bytes", labels.clone()).set(s.lag_bytes as f64);
            counter!("evstore_subscriber_events_total", labels.clone()).absolute(s.events);
            counter!("evstore_subscriber_wakeups_total", labels.clone()).absolute(s.wakeups);
            labelled.push(labels);
        }
        for p in &m.projections {
            let labels = vec![
                Label::new("store", self.store.clone()),
                Label::new("projection", p.name.clone()),
            ];
            gauge!("evstore_projection_finished", labels.clone()).set(if p.finished {
                1.0
            } else {
                0.0
            });
            labelled.push(labels.clone());
            gauge!("evstore_projection_position", labels.clone()).set(p.position as f64);
            gauge!("evstore_projection_lag", labels.clone()).set(p.lag as f64);
            gauge!("evstore_projection_lag_bytes", labels.clone()).set(p.lag_bytes as f64);
            counter!("evstore_projection_events_total", labels.clone()).absolute(p.events_handled);
            counter!("evstore_projection_retries_total", labels.clone()).absolute(p.retries);
            counter!("evstore_projection_failures_total", labels).absolute(p.failures);
        }
        // A subscription or projection gone leaves no stale lag behind.
        let mut last = self.labelled.lock();
        for gone in last.iter().filter(|l| !labelled.contains(l)) {
            let is_projection = gone.iter().any(|l| l.key() == "projection");
            let names: &[&'static str] = if is_projection {
                &["evstore_projection_lag", "evstore_projection_lag_bytes"]
            } else {
                &["evstore_subscriber_lag", "evstore_subscriber_lag_bytes"]
            };
            for &name in names {
                gauge!(name, gone.clone()).set(0.0);
            }
        }
        *last = labelled;
    }
}
