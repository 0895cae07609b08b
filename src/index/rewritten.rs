//! Taking in a sealed segment rewritten in place (redaction markers in
//! place of some records): same positions, versions, streams and ids,
//! other offsets, types and tags. Its index file is written anew; the
//! postings are read again from the segment when next needed. Directories
//! of later index files name this segment's runs by slot, which a rewrite
//! does not move, so they stay right.

use super::directory::Directories;
use super::file::{self, index_file_name, IndexFile};
use super::postings_file::postings_file_name;
use super::{Index, Persisted, SegmentIndex};
use crate::error::{Error, Result};
use crate::log::Segment;
use crate::storage::{child, write_and_rename_unsynced, Storage};
use parking_lot::RwLock;
use std::io;
use std::path::Path;
use std::sync::Arc;

/// A sealed segment whose index file is written, which may be rewritten.
#[derive(Debug, Clone)]
pub struct Rewritable {
    /// Its place in the list of segments.
    pub ordinal: u32,
    /// The segment.
    pub segment: Arc<Segment>,
}

/// Removes the index and postings files of the segment at `base`; the
/// caller syncs the directory before the rewritten segment replaces the old
/// one, so no file describing the old offsets survives a crash beside the
/// new segment (a missing file is rebuilt from the segment when the store
/// opens).
///
/// # Errors
///
/// The file system's error.
pub fn remove_derived_files(storage: &dyn Storage, dir: &Path, base: u64) -> io::Result<()> {
    for name in [index_file_name(base), postings_file_name(base)] {
        match storage.remove_file(&child(dir, &name)) {
            Ok(()) => {}
            Err(e) if e.kind() == io::ErrorKind::NotFound => {}
            Err(e) => return Err(e),
        }
    }
    Ok(())
}

impl Index {
    /// The sealed segments whose index files are written, oldest first,
    /// without the removed ones.
    pub fn rewritable_segments(&self) -> Vec<Rewritable> {
        self.segments
            .iter()
            .enumerate()
            .filter(|(_, entry)| {
                matches!(entry.index, SegmentIndex::Persisted(_)) && !entry.segment.is_removed()
            })
            .map(|(i, entry)| Rewritable {
                ordinal: super::ordinal(i),
                segment: Arc::clone(&entry.segment),
            })
            .collect()
    }

    /// Serves segment `ordinal` from `segment`, its rewritten file, indexed
    /// by `persisted`. False (and nothing changed) if the segment there is
    /// no longer the one that was rewritten.
    pub fn install_rewritten(
        &mut self,
        ordinal: u32,
        old: &Arc<Segment>,
        segment: Arc<Segment>,
        persisted: Persisted,
    ) -> bool {
        let index = SegmentIndex::Persisted(Arc::new(persisted));
        self.replace_segment(ordinal, old, segment, index)
    }

    /// Serves segment `ordinal` from `segment`, a file that replaced `old`
    /// (rewritten or removed by a scavenge), indexed by `index`. False
    /// (and nothing changed) if the segment there is no longer `old`.
    pub fn replace_segment(
        &mut self,
        ordinal: u32,
        old: &Arc<Segment>,
        segment: Arc<Segment>,
        index: SegmentIndex,
    ) -> bool {
        let Some(entry) = self.segments.get_mut(ordinal as usize) else {
            return false;
        };
        if !Arc::ptr_eq(&entry.segment, old) {
            return false;
        }
        entry.segment = segment;
        entry.index = index;
        entry.postings = Arc::new(RwLock::new(None));
        true
    }

    /// The sealed segments that still hold records, by ordinal.
    pub fn sealed_segments(&self) -> Vec<(u32, Arc<Segment>)> {
        self.segments
            .iter()
            .enumerate()
            .filter(|(_, e)| !matches!(e.index, SegmentIndex::Active(_)) && !e.segment.is_removed())
            .map(|(i, e)| (super::ordinal(i), Arc::clone(&e.segment)))
            .collect()
    }
}

/// Writes in `dir` the index file of the rewritten, sealed `segment` (its
/// seal at `seal_offset`), indexed as `mem` while it was written. Neither
/// the file nor the directory is synced: the caller syncs the directory
/// once for this and the segment's rename, and an index file a crash left
/// torn fails its checksums and is rebuilt from the segment.
///
/// # Errors
///
/// [`Error::Corrupted`] if the segment does not read back whole;
/// [`Error::Io`] if the file cannot be written.
pub fn index_rewritten(
    storage: &Arc<dyn Storage>,
    dir: &Path,
    segment: Arc<Segment>,
    seal_offset: u64,
    mem: &super::memory::MemIndex,
    (hash_kind, repairs): (super::hash::HashKind, Arc<super::Repairs>),
) -> Result<Persisted> {
    let base = segment.base_position();
    let bytes = file::encode(mem, base, seal_offset, hash_kind, &Directories::none());
    let path = child(dir, &index_file_name(base));
    let io_error = |e| Error::io(format!("writing {}", path.display()), e);
    write_and_rename_unsynced(storage.as_ref(), &path, &bytes).map_err(io_error)?;
    let file = storage.open_file(&path, false).map_err(io_error)?;
    let view = file.read_view(0, bytes.len()).map_err(io_error)?;
    let parsed = IndexFile::parse(view, base)
        .map_err(|e| Error::corrupted(&path, 0, format!("index file just written: {e}")))?;
    Ok(Persisted::new(parsed, path, segment, Some(Arc::clone(storage)), repairs).trusted())
}
