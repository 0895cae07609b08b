//! The file left in place of a removed segment: a segment none of whose
//! events any read returns any more keeps its name and its place in the
//! order of segments (so positions keep their values and the segments
//! after it their ordinals), but not its records. What remains is its
//! header, marked [`REMOVED_FORMAT_VERSION`], and a seal naming the
//! position its events ended at; the segment's index file stays beside it
//! as the record of which streams and versions it held.

use super::record::{
    BatchHeader, BatchKind, SegmentHeader, BATCH_HEADER_LEN, BATCH_HEADER_LEN_U32,
    REMOVED_FORMAT_VERSION, SEGMENT_HEADER_LEN,
};
use super::segment::{now_nanos, segment_file_name, Segment, TEMP_SUFFIX};
use crate::error::{Error, Result};
use crate::storage::{child, write_new_file, Storage};
use std::path::{Path, PathBuf};

/// The bytes of the file that replaces `segment` once its events, which
/// end at `end_position`, are removed.
fn removed_segment_bytes(segment: &Segment, end_position: u64) -> Vec<u8> {
    let header = SegmentHeader {
        base_position: segment.base_position(),
        capacity: segment.capacity(),
        created_nanos: now_nanos(),
        version: REMOVED_FORMAT_VERSION,
    };
    let mut out = Vec::with_capacity(SEGMENT_HEADER_LEN + BATCH_HEADER_LEN);
    out.extend_from_slice(&header.encode());
    let mut seal = [0u8; BATCH_HEADER_LEN];
    BatchHeader {
        len: BATCH_HEADER_LEN_U32,
        kind: BatchKind::Seal,
        count: 0,
        first_position: end_position,
        durable_mark: end_position,
    }
    .encode_into(segment.seed(), &mut seal);
    out.extend_from_slice(&seal);
    out
}

/// Writes, synced, beside `segment` in `dir`, the file that replaces it
/// once its events (ending at `end_position`) are removed, and returns its
/// temporary path: the caller renames it over the segment.
///
/// # Errors
///
/// [`Error::Io`] (or [`Error::NoSpace`]) if the file cannot be written.
pub fn write_removed_segment(
    storage: &dyn Storage,
    dir: &Path,
    segment: &Segment,
    end_position: u64,
) -> Result<PathBuf> {
    let temp_path = child(
        dir,
        &format!(
            "{}{TEMP_SUFFIX}",
            segment_file_name(segment.base_position())
        ),
    );
    let bytes = removed_segment_bytes(segment, end_position);
    write_new_file(storage, &temp_path, &bytes, true)
        .map_err(|e| Error::io_or_no_space(format!("writing {}", temp_path.display()), e))?;
    Ok(temp_path)
}
