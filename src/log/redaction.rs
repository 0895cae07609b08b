//! Rewriting a sealed segment with some records replaced by redaction
//! markers: records that keep the event's position, stream, version, id and
//! timestamp, and drop its type, tags, metadata and payload. Positions and
//! versions stay dense, so indexes, subscriptions and checkpoints need no
//! notion of gaps; the bytes of what was dropped are reclaimed.

use super::record::{
    decode_record_at, encode_unfinished_record, finish_record, BatchHeader, BatchKind, RecordBody,
    BATCH_HEADER_LEN,
};
use super::segment::{segment_file_name, Segment, TEMP_SUFFIX};
use crate::error::{Error, Result};
use crate::log::record::SEGMENT_HEADER_LEN;
use crate::storage::{child, write_new_file, Storage};
use crate::types::RecordedEvent;
use std::path::{Path, PathBuf};

pub use crate::stream_metadata::REDACTED_EVENT_TYPE;

/// A sealed segment rewritten into a temporary file beside it.
#[derive(Debug)]
pub struct Rewritten {
    /// The temporary file (its name ends with the temporary suffix, so a
    /// crash before it is renamed leaves nothing recovery keeps).
    pub temp_path: PathBuf,
    /// Its length.
    pub len: u64,
    /// Where its seal is.
    pub seal_offset: u64,
    /// Records replaced by markers.
    pub redacted: u64,
}

/// Rewrites the sealed `seg` with every record `redact` picks replaced by a
/// marker, into a synced temporary file in `dir` (or, with `dry_run`, only
/// works out what that file would hold); `None` if `redact` picks none
/// (markers already there are never picked again). `pace` is told the
/// bytes of each batch read, and may sleep to keep to a budget; `written`
/// is told each record of the new file, at its offset there, as it reads.
///
/// # Errors
///
/// [`Error::Corrupted`] if the segment is damaged (nothing is rewritten);
/// [`Error::Io`] if it cannot be read or the file written; the error of
/// `redact`.
pub fn rewrite_redacted(
    storage: &dyn Storage,
    dir: &Path,
    seg: &Segment,
    dry_run: bool,
    mut redact: impl FnMut(&RecordedEvent) -> Result<bool>,
    pace: &mut dyn FnMut(u64),
    written: &mut dyn FnMut(u64, &RecordedEvent) -> Result<()>,
) -> Result<Option<Rewritten>> {
    let len = seg.readable_len()?;
    let bytes = seg.read(0, len)?;
    let seed = seg.seed();
    let damaged = |offset: usize, reason: &str| {
        Error::corrupted(
            seg.path(),
            offset as u64,
            format!("{reason} (while scavenging)"),
        )
    };
    let mut out = bytes
        .get(..SEGMENT_HEADER_LEN)
        .ok_or_else(|| damaged(0, "segment shorter than its header"))?
        .to_vec();
    let mut at = SEGMENT_HEADER_LEN;
    let mut redacted = 0u64;
    let seal_offset = loop {
        let header = bytes
            .get(at..)
            .and_then(|b| BatchHeader::decode(b, seed))
            .ok_or_else(|| damaged(at, "invalid batch header"))?;
        let batch_start = out.len();
        match header.kind {
            BatchKind::Seal | BatchKind::Mark => {
                let raw = bytes
                    .get(at..at + BATCH_HEADER_LEN)
                    .ok_or_else(|| damaged(at, "batch runs past the end"))?;
                out.extend_from_slice(raw);
                at += BATCH_HEADER_LEN;
                if header.kind == BatchKind::Seal {
                    break batch_start;
                }
                continue;
            }
            BatchKind::Events => {}
        }
        out.extend_from_slice(&[0u8; BATCH_HEADER_LEN]);
        let mut record_at = at + BATCH_HEADER_LEN;
        for _ in 0..header.count {
            let (event, padded) =
                decode_record_at(&bytes, record_at, seed).map_err(|r| damaged(record_at, r))?;
            let new_offset = out.len() as u64;
            if &*event.event_type != REDACTED_EVENT_TYPE && redact(&event)? {
                push_marker(&mut out, seed, &event);
                redacted += 1;
                written(new_offset, &marker_of(event))?;
            } else {
                let raw = bytes
                    .get(record_at..record_at + padded)
                    .ok_or_else(|| damaged(record_at, "record runs past the end"))?;
                out.extend_from_slice(raw);
                written(new_offset, &event)?;
            }
            record_at += padded;
        }
        if record_at != at + header.len as usize {
            return Err(damaged(at, "batch length does not match its records"));
        }
        let new_header = BatchHeader {
            len: u32::try_from(out.len() - batch_start)
                .map_err(|_| damaged(at, "batch too long"))?,
            ..header
        };
        if let Some(slot) = out
            .get_mut(batch_start..batch_start + BATCH_HEADER_LEN)
            .and_then(|s| <&mut [u8; BATCH_HEADER_LEN]>::try_from(s).ok())
        {
            new_header.encode_into(seed, slot);
        }
        at = record_at;
        pace(u64::from(header.len));
    };
    if redacted == 0 {
        return Ok(None);
    }
    let temp_path = child(
        dir,
        &format!("{}{TEMP_SUFFIX}", segment_file_name(seg.base_position())),
    );
    if !dry_run {
        write_new_file(storage, &temp_path, &out, true)
            .map_err(|e| Error::io_or_no_space(format!("writing {}", temp_path.display()), e))?;
    }
    Ok(Some(Rewritten {
        temp_path,
        len: out.len() as u64,
        seal_offset: seal_offset as u64,
        redacted,
    }))
}

/// The marker of `event`, as it reads.
fn marker_of(mut event: RecordedEvent) -> RecordedEvent {
    crate::retention::redact(&mut event);
    event
}

/// Appends the marker of `event`.
fn push_marker(out: &mut Vec<u8>, seed: u32, event: &RecordedEvent) {
    let start = out.len();
    encode_unfinished_record(
        out,
        &RecordBody {
            id: event.id,
            stream: &event.stream,
            event_type: REDACTED_EVENT_TYPE,
            tags: &[],
            metadata: &[],
            payload: &[],
        },
    );
    if let Some(record) = out.get_mut(start..) {
        finish_record(
            record,
            seed,
            event.position,
            event.version,
            event.timestamp_nanos,
        );
    }
}
