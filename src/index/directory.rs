//! A stream's directory: where its events were in the segments before one
//! it has events in.
//!
//! Each stream of a sealed segment's index file carries the newest
//! [`DIRECTORY_RUNS`] of its *runs* (its events in one earlier segment) in
//! the order they were written: the segment's ordinal, the version of the
//! stream's first event there, and where the stream's slots start in that
//! segment's index file. A lookup by version reads the directory of the
//! stream's last segment and goes straight to the slot it wants, instead of
//! searching the segments in between, each search step a probe of another
//! stream table.
//!
//! The directory of a stream in segment `k` is built when `k`'s index file
//! is written, from the one in the stream's previous segment (its
//! directory, then that segment itself), so writing it costs one stream
//! table probe per stream, and reading it costs nothing beyond the stream
//! table entry of the last segment. A directory may be shorter than the
//! stream's history allows (an index file rewritten from its segment alone
//! has empty ones); lookups of versions older than it reaches search as
//! before. Its entries only ever name the runs they claim: a writer that
//! cannot tell leaves them out.

use super::file::IndexFile;
use super::hash::StreamKey;
use super::memory::{FastMap, MemIndex};
use super::recovery::load_index_file;
use super::Persisted;
use crate::log::Segment;
use crate::storage::{child, Storage};
use std::cell::OnceCell;
use std::path::Path;
use std::sync::Arc;

/// Runs a directory holds at most: a stream whose events lie in this many
/// earlier segments or fewer is found without a search.
pub const DIRECTORY_RUNS: usize = 16;
/// Bytes of one directory entry.
pub const DIRECTORY_ENTRY_LEN: usize = 16;

/// A stream's events in one earlier segment, as a directory names them.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct DirRun {
    /// Ordinal of the segment.
    pub segment: u32,
    /// Where the stream's entries start in the `slots` section of that
    /// segment's index file.
    pub slots_from: u32,
    /// The version of the stream's first event there.
    pub first_version: u64,
}

impl DirRun {
    /// The entry's bytes: `segment`, `slots_from`, `first_version`.
    pub fn encode(&self) -> [u8; DIRECTORY_ENTRY_LEN] {
        let mut out = [0u8; DIRECTORY_ENTRY_LEN];
        out[0..4].copy_from_slice(&self.segment.to_le_bytes());
        out[4..8].copy_from_slice(&self.slots_from.to_le_bytes());
        out[8..16].copy_from_slice(&self.first_version.to_le_bytes());
        out
    }

    /// The entry at the start of `bytes`.
    pub fn decode(bytes: &[u8]) -> Option<DirRun> {
        Some(DirRun {
            segment: super::file::u32_at(bytes, 0)?,
            slots_from: super::file::u32_at(bytes, 4)?,
            first_version: super::file::u64_at(bytes, 8)?,
        })
    }
}

/// Whether `runs` could be consecutive runs of one stream, oldest first,
/// all before segment `before` and below version `below`: anything else
/// is not used to build another directory, so damage never spreads.
pub fn well_ordered(runs: &[DirRun], before: u32, below: u64) -> bool {
    let ordered = runs
        .windows(2)
        .all(|w| matches!(w, [a, b] if a.segment < b.segment && a.first_version < b.first_version));
    ordered
        && runs
            .last()
            .is_none_or(|last| last.segment < before && last.first_version < below)
}

/// The directory of each stream of one segment, for its index file.
#[derive(Debug, Default)]
pub struct Directories(FastMap<Arc<str>, Vec<DirRun>>);

impl Directories {
    /// No directories: what an index file rebuilt from its segment alone
    /// holds.
    pub fn none() -> Self {
        Directories::default()
    }

    /// The directory of `stream`, oldest run first; empty if none.
    pub fn get(&self, stream: &str) -> &[DirRun] {
        self.0.get(stream).map_or(&[], Vec::as_slice)
    }

    /// Sets the directory of `stream`, keeping its newest
    /// [`DIRECTORY_RUNS`] runs.
    pub fn insert(&mut self, stream: Arc<str>, mut runs: Vec<DirRun>) {
        let excess = runs.len().saturating_sub(DIRECTORY_RUNS);
        runs.drain(..excess);
        if !runs.is_empty() {
            self.0.insert(stream, runs);
        }
    }
}

/// The index of a segment before the one whose directories are built, as
/// the index held it when that one was sealed.
#[derive(Debug, Clone)]
pub enum EarlierIndex {
    /// Served from its index file.
    File(Arc<Persisted>),
    /// Served from memory: its index file may have been written since.
    Memory(Arc<Segment>),
}

/// The index files of earlier segments, opened as directories need them.
pub struct Earlier<'a> {
    indexes: &'a [EarlierIndex],
    storage: &'a dyn Storage,
    dir: &'a Path,
    /// Index files of segments served from memory when the list was taken,
    /// loaded from disk on first use (`None`: not there, or not sound).
    loaded: Vec<OnceCell<Option<IndexFile>>>,
}

impl<'a> Earlier<'a> {
    /// The index files of the segments `indexes` lists, from ordinal 0, in
    /// the segments directory `dir`.
    pub fn new(indexes: &'a [EarlierIndex], storage: &'a dyn Storage, dir: &'a Path) -> Self {
        Earlier {
            indexes,
            storage,
            dir,
            loaded: indexes.iter().map(|_| OnceCell::new()).collect(),
        }
    }

    /// The index file of segment `ordinal`, checked against its checksum,
    /// if it has a sound one.
    pub fn file(&self, ordinal: u32) -> Option<&IndexFile> {
        let i = ordinal as usize;
        match self.indexes.get(i)? {
            EarlierIndex::File(persisted) => persisted.checked_file(),
            EarlierIndex::Memory(segment) => self
                .loaded
                .get(i)?
                .get_or_init(|| {
                    // Index files are written in order, the one before by
                    // the time the next is built: it is usually there now.
                    let name = super::file::index_file_name(segment.base_position());
                    let path = child(self.dir, &name);
                    load_index_file(self.storage, &path, segment)
                        .ok()
                        .filter(IndexFile::verify_body)
                })
                .as_ref(),
        }
    }
}

/// The directories of the streams of `mem`, segment `ordinal`'s index,
/// built from the earlier index files in `earlier`. `previous` finds the
/// segment holding a stream's version when its index did not record the
/// stream's previous segment (`None` if it cannot tell).
pub fn build(
    mem: &MemIndex,
    ordinal: u32,
    earlier: &Earlier<'_>,
    previous: &dyn Fn(&str, u64) -> Option<u32>,
) -> Directories {
    let mut directories = Directories::none();
    for (name, stream) in &mem.streams {
        let Some(before) = stream.first_version.checked_sub(1) else {
            continue;
        };
        let found = stream
            .previous_segment
            .or_else(|| previous(name, before))
            .filter(|&p| p < ordinal);
        let Some(runs) = found.and_then(|p| runs_through(earlier, name, p, stream.first_version))
        else {
            continue;
        };
        directories.insert(Arc::clone(name), runs);
    }
    directories
}

/// The runs of `stream` up to and including its run in segment `ordinal`,
/// which must end where version `next` begins: that segment's directory of
/// it, then that run.
fn runs_through(
    earlier: &Earlier<'_>,
    stream: &str,
    ordinal: u32,
    next: u64,
) -> Option<Vec<DirRun>> {
    let file = earlier.file(ordinal)?;
    let part = file.stream(&StreamKey::new(stream))?;
    if part.first_version.checked_add(part.count) != Some(next) {
        return None;
    }
    let mut runs: Vec<DirRun> = (0..part.runs()).map_while(|i| file.run(&part, i)).collect();
    if runs.len() != part.runs() as usize || !well_ordered(&runs, ordinal, part.first_version) {
        runs.clear();
    }
    runs.push(DirRun {
        segment: ordinal,
        slots_from: part.slots_from(),
        first_version: part.first_version,
    });
    Some(runs)
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::indexing_slicing)]
mod tests {
    use super::*;

    fn run(segment: u32, first_version: u64) -> DirRun {
        DirRun {
            segment,
            slots_from: segment * 10,
            first_version,
        }
    }

    #[test]
    fn entries_round_trip() {
        let entry = DirRun {
            segment: 7,
            slots_from: 0x0102_0304,
            first_version: u64::MAX - 3,
        };
        assert_eq!(DirRun::decode(&entry.encode()), Some(entry));
        assert_eq!(DirRun::decode(&entry.encode()[..15]), None);
    }

    #[test]
    fn only_consecutive_runs_before_the_segment_are_well_ordered() {
        let runs = [run(1, 0), run(3, 5), run(4, 9)];
        assert!(well_ordered(&runs, 5, 12));
        assert!(well_ordered(&[], 0, 0));
        assert!(!well_ordered(&runs, 4, 12), "a run in the segment itself");
        assert!(!well_ordered(&runs, 5, 9), "a run at the segment's version");
        assert!(!well_ordered(&[run(3, 5), run(1, 0)], 5, 12));
        assert!(!well_ordered(&[run(1, 5), run(3, 5)], 5, 12));
    }

    #[test]
    fn a_directory_keeps_the_newest_runs() {
        let mut directories = Directories::none();
        let runs: Vec<DirRun> = (0..40).map(|i| run(i, u64::from(i) * 2)).collect();
        directories.insert(Arc::from("s"), runs.clone());
        directories.insert(Arc::from("empty"), Vec::new());
        assert_eq!(directories.get("s"), &runs[40 - DIRECTORY_RUNS..]);
        assert!(directories.get("empty").is_empty());
        assert!(directories.get("other").is_empty());
    }
}
