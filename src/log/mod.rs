//! The segmented, append-only log: record format, segment files, the
//! active segment, the group-commit barrier and the segment scan.
//!
//! Higher layers reach the log only through what this module re-exports.

mod active;
mod barrier;
pub mod record;
mod record_frame;
mod record_view;
mod recovery;
mod redaction;
mod removal;
mod segment;
pub mod zero_fill;

pub use active::{max_batch_len, ActiveSegment, Preparation, StagedBatch, WriteFailure};
#[cfg(feature = "async")]
pub use barrier::Refused;
pub use barrier::{Barrier, Leader, Limits, Next, Queued, Role};
pub use recovery::{
    all_zero, clear_torn_tail, copy_batch, durable_batch_after_copied, read_batch_at, scan_segment,
    BatchOutcome, SegmentRole, SegmentScan,
};
pub use redaction::rewrite_redacted;
pub use removal::write_removed_segment;
pub use segment::{
    now_nanos, parse_segment_file_name, segment_file_name, PreparedSegment, Segment, TEMP_SUFFIX,
};
