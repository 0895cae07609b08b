//! The segmented, append-only log: record format, segment files, the
//! group-commit writer and recovery.

pub mod record;
pub mod recovery;
pub mod segment;
pub mod writer;

use crate::error::{Error, Result};
use crate::index::Index;
use crate::storage::{child, Storage};
use recovery::scan_segment;
use segment::{parse_segment_file_name, PreparedSegment, Segment, TEMP_SUFFIX};
use std::path::Path;
use std::sync::Arc;

/// What opening the log found.
#[derive(Debug)]
pub struct Recovered {
    /// Both indexes, covering every recovered event.
    pub index: Index,
    /// The segment appends continue in.
    pub active: Arc<Segment>,
    /// Where in `active` the next batch goes.
    pub write_offset: u64,
    /// The next global position.
    pub next_position: u64,
    /// The highest durable watermark recorded in `active`.
    pub recorded_durable: u64,
    /// Statistics for the caller.
    pub stats: RecoveryStats,
}

/// What recovery did at open.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct RecoveryStats {
    /// Segment files found.
    pub segments: usize,
    /// Events recovered.
    pub events: u64,
    /// Bytes of segment data scanned.
    pub bytes_scanned: u64,
    /// Bytes of a torn tail (an interrupted write) that were cleared.
    pub torn_bytes: u64,
}

/// Opens every segment in `dir`, validates and indexes them, and makes sure
/// there is an active segment to append to.
pub fn recover(
    storage: &dyn Storage,
    dir: &Path,
    segment_size: u64,
    id_window: usize,
) -> Result<Recovered> {
    let names = storage
        .list_dir(dir)
        .map_err(|e| Error::io(format!("listing {}", dir.display()), e))?;
    let mut removed_temp = false;
    let mut bases = Vec::new();
    for name in &names {
        if name.ends_with(TEMP_SUFFIX) {
            // A file being prepared when the process stopped: never part of the log.
            storage
                .remove_file(&child(dir, name))
                .map_err(|e| Error::io(format!("removing {name}"), e))?;
            removed_temp = true;
        } else if let Some(base) = parse_segment_file_name(name) {
            bases.push(base);
        }
    }
    if removed_temp {
        storage
            .sync_dir(dir)
            .map_err(|e| Error::io(format!("syncing {}", dir.display()), e))?;
    }
    bases.sort_unstable();

    let mut index = Index::new(id_window);
    let mut stats = RecoveryStats {
        segments: bases.len(),
        ..RecoveryStats::default()
    };
    let mut next_position = 0u64;
    let mut tail: Option<(Arc<Segment>, u64, bool, u64)> = None;
    for (i, &base) in bases.iter().enumerate() {
        let path = child(dir, &segment::segment_file_name(base));
        if base != next_position {
            return Err(Error::corrupted(
                &path,
                0,
                format!("segment starts at position {base}, expected {next_position}: a segment is missing or misnamed"),
            ));
        }
        let seg = Segment::open(storage, path, base)?;
        let is_last = i + 1 == bases.len();
        let scan = scan_segment(&seg, is_last, |offset, event| {
            index.ids.push(event.id.as_u128(), event.position);
            let version = index.push_stream_event(&event.stream, event.position);
            if version != event.version {
                return Err(Error::corrupted(
                    seg.path(),
                    offset,
                    format!(
                        "stream '{}' event has version {}, expected {version}",
                        &*event.stream, event.version
                    ),
                ));
            }
            Ok(())
        })?;
        stats.events += scan.offsets.len() as u64;
        stats.bytes_scanned += scan.end_offset;
        stats.torn_bytes += scan.torn_bytes;
        next_position = scan.next_position;
        let seg = Arc::new(seg);
        index.push_segment(Arc::clone(&seg), scan.offsets);
        tail = Some((seg, scan.end_offset, scan.sealed, scan.recorded_durable));
    }

    let (active, write_offset, recorded_durable) = match tail {
        Some((seg, end, false, recorded)) => {
            // What a killed process left in the page cache is made durable
            // before anyone reads it as such.
            // A file cut short (a lost allocation) gets its space back before
            // the writer relies on it.
            seg.file()
                .allocate(seg.capacity())
                .and_then(|()| seg.file().sync_data())
                .map_err(|e| Error::io(format!("syncing {}", seg.path().display()), e))?;
            (seg, end, recorded)
        }
        _ => {
            let seg = PreparedSegment::create(storage, dir, segment_size)
                .and_then(|p| p.install(storage, dir, next_position))
                .map_err(|e| Error::io("creating a segment", e))?;
            let seg = Arc::new(seg);
            index.push_segment(Arc::clone(&seg), Vec::new());
            (seg, record::SEGMENT_HEADER_LEN as u64, 0)
        }
    };
    Ok(Recovered {
        index,
        active,
        write_offset,
        next_position,
        recorded_durable,
        stats,
    })
}
