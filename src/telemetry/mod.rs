//! What the store measures of itself: counters and distributions recorded
//! where things happen ([`recorder`]), probes that subscriptions and
//! projections update ([`probes`]), the snapshot [`crate::Store::metrics`]
//! returns ([`snapshot`]), and the optional `metrics` facade and `tracing`
//! spans.

mod distribution;
pub mod probes;
#[cfg(feature = "metrics")]
mod published;
pub mod recorder;
mod snapshot;
pub mod spans;

pub use distribution::{AtomicDistribution, Distribution};
pub use probes::{Probe, ProbeKind, Probes};
pub use recorder::{Recorder, Refusal};
pub use snapshot::{
    AppendMetrics, CheckpointLag, GroupCommitMetrics, Metrics, ModeMetrics, ProjectionMetrics,
    ReadMetrics, SegmentMetrics, SubscriberMetrics, SyncMetrics,
};
