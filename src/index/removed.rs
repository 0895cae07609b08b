//! Removed segments in the index. A removed segment holds no records (see
//! [`crate::log::record::REMOVED_FORMAT_VERSION`]); its index file stays,
//! unchanged, as the durable record of which streams and versions it held,
//! so that versions go on where they were, lookups of its versions know
//! them gone, and later index files' directories that name it stay right.
//! That file can no longer be rebuilt from records: open refuses a removed
//! segment whose index file is missing or damaged.

use super::file::IndexFile;
use super::{Index, Persisted, SegmentIndex};
use crate::error::{Error, Result};
use crate::log::Segment;
use crate::storage::Storage;
use parking_lot::RwLock;
use std::path::Path;
use std::sync::Arc;

impl Index {
    /// Serves segment `ordinal` from `removed`, the file left in place of
    /// its events, and `file`, its index file as checked before the removal
    /// (at `path`). Nothing keeps the old file open after this but readers
    /// still reading it, so its space goes back to the file system when
    /// they are done. False (and nothing changed) if the segment there is
    /// no longer `old`, or is not served from its index file.
    pub fn install_removed(
        &mut self,
        ordinal: u32,
        old: &Arc<Segment>,
        removed: Arc<Segment>,
        (file, path): (IndexFile, std::path::PathBuf),
    ) -> bool {
        let repairs = self.repairs();
        let Some(entry) = self.segments.get_mut(ordinal as usize) else {
            return false;
        };
        if !Arc::ptr_eq(&entry.segment, old) || !matches!(entry.index, SegmentIndex::Persisted(_)) {
            return false;
        }
        // Never repaired from records, which it no longer has: no storage.
        let persisted = Persisted::new(file, path, Arc::clone(&removed), None, repairs).trusted();
        entry.segment = removed;
        entry.index = SegmentIndex::Persisted(Arc::new(persisted));
        entry.postings = Arc::new(RwLock::new(None));
        true
    }

    /// The removed segments whose index file still has its per-event
    /// sections (a crash or a full disk stopped the removal before it
    /// rewrote it streams-only), by ordinal, with the segment and the file.
    pub fn removed_with_whole_index(&self) -> Vec<(u32, Arc<Segment>, Arc<Persisted>)> {
        self.segments
            .iter()
            .enumerate()
            .filter_map(|(i, entry)| match &entry.index {
                SegmentIndex::Persisted(p)
                    if entry.segment.is_removed() && !p.header().streams_only() =>
                {
                    Some((super::ordinal(i), Arc::clone(&entry.segment), Arc::clone(p)))
                }
                _ => None,
            })
            .collect()
    }
}

/// The index file of the removed segment `seg`, checked whole: it must
/// exist, pass both checksums and cover exactly the positions the segment's
/// seal says it ended at.
///
/// # Errors
///
/// [`Error::Corrupted`] naming the index file otherwise.
pub(crate) fn load_removed_index(
    storage: &dyn Storage,
    path: &Path,
    seg: &Segment,
) -> Result<IndexFile> {
    let refused = |reason: String| {
        Error::corrupted(
            path,
            0,
            format!(
                "{reason}: the segment's events were removed, and this file is what records \
                 its streams' versions"
            ),
        )
    };
    let file = read_checked_file(storage, path, seg).map_err(refused)?;
    let end = seg.base_position() + file.len() as u64;
    if seg.removed_end() != Some(end) {
        return Err(refused(format!(
            "the index file ends at position {end}, the removed segment at {:?}",
            seg.removed_end()
        )));
    }
    Ok(file)
}

/// The index file of `seg` at `path`, read in place through the map (as
/// every index file is) and checked whole.
fn read_checked_file(
    storage: &dyn Storage,
    path: &Path,
    seg: &Segment,
) -> std::result::Result<IndexFile, String> {
    let unreadable = |e: std::io::Error| format!("the index file cannot be read ({e})");
    let opened = storage.open_read_only(path).map_err(unreadable)?;
    let len = opened.len().map_err(unreadable)?;
    let len = usize::try_from(len).map_err(|_| "the index file is too large".to_string())?;
    let bytes = opened.read_view(0, len).map_err(unreadable)?;
    let file = IndexFile::parse(bytes, seg.base_position())
        .map_err(|e| format!("the index file is damaged ({e})"))?;
    if !file.verify_body() {
        return Err("the index file fails its checksum".into());
    }
    Ok(file)
}

/// Counts the versions of every stream of removed segment `ordinal`, from
/// its index file, as recovery counts a segment's records.
///
/// # Errors
///
/// [`Error::Corrupted`] if an entry does not decode or the versions do not
/// follow on from the segments before.
pub(crate) fn count_removed_streams(
    index: &mut Index,
    file: &IndexFile,
    ordinal: u32,
    path: &Path,
) -> Result<()> {
    for found in file.streams() {
        let (name, part) =
            found.ok_or_else(|| Error::corrupted(path, 0, "a stream entry does not decode"))?;
        index
            .count_stream_events(name, ordinal, part.first_version, part.count)
            .map_err(|gap| Error::corrupted(path, 0, gap.to_string()))?;
    }
    Ok(())
}

/// A sealed segment a scavenge may remove once none of its events is read
/// any more.
#[derive(Debug, Clone)]
pub struct Removable {
    /// The position after its last event.
    pub end: u64,
    /// Its index file, which stays.
    pub index_file: std::path::PathBuf,
}

impl Index {
    /// Whether segment `ordinal`, still `segment`, may be removed if none of
    /// its events is read any more: sealed, served from its index file,
    /// and wholly below the idempotency window as counted back from
    /// `durable`, the durable end (so no retry ever looks its events up by
    /// id).
    pub fn removable(
        &self,
        ordinal: u32,
        segment: &Arc<Segment>,
        durable: u64,
    ) -> Option<Removable> {
        let entry = self.segments.get(ordinal as usize)?;
        if !Arc::ptr_eq(&entry.segment, segment) || segment.is_removed() {
            return None;
        }
        let SegmentIndex::Persisted(persisted) = &entry.index else {
            return None;
        };
        let end = segment.base_position() + persisted.len() as u64;
        // Counted from the durable end: events written but not yet synced
        // may be lost, and the window would then reach back further.
        let window_start = durable.min(self.end).saturating_sub(self.id_window);
        (end <= window_start && ordinal as usize + 1 < self.segments.len()).then(|| Removable {
            end,
            index_file: persisted.path().to_path_buf(),
        })
    }
}

/// Checks, before `seg` is removed, that its index file is whole on disk
/// and covers its positions up to `end` (once the records are gone it
/// cannot be rebuilt), and returns it.
///
/// # Errors
///
/// [`Error::Corrupted`] naming the index file otherwise.
pub(crate) fn check_before_removal(
    storage: &dyn Storage,
    path: &Path,
    seg: &Segment,
    end: u64,
) -> Result<IndexFile> {
    let file = read_checked_file(storage, path, seg)
        .map_err(|reason| Error::corrupted(path, 0, reason))?;
    let covers = seg.base_position() + file.len() as u64;
    if covers != end {
        return Err(Error::corrupted(
            path,
            0,
            format!("the index file ends at position {covers}, the segment at {end}"),
        ));
    }
    Ok(file)
}
