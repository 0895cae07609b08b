//! The stream directories of index files, as the segments read so far say
//! they must be: each names runs of its stream in earlier segments, the
//! newest ones, in order (see [`crate::index::directory`]).

use super::Verifier;
use crate::index::directory::{DirRun, Directories, DIRECTORY_RUNS};
use crate::index::file::IndexFile;
use crate::index::hash::StreamKey;
use crate::index::memory::{MemIndex, MemStream};
use std::sync::Arc;

impl Verifier<'_, '_> {
    /// The directories `file`, the index file of the segment indexed as
    /// `mem`, must hold. A directory may be shorter than the stream's
    /// history allows (a file rebuilt from its segment alone has none), so
    /// each is expected to be as long as the file's, and to name the
    /// stream's newest runs before the segment. When an earlier segment
    /// could not be read whole, those runs are not known, and the file's
    /// own directories are taken as they are.
    pub(super) fn expected_directories(&self, file: &IndexFile, mem: &MemIndex) -> Directories {
        let mut directories = Directories::none();
        for name in mem.streams.keys() {
            let Some(part) = file.stream(&StreamKey::new(name)) else {
                // The comparison with the whole file reports it.
                continue;
            };
            let runs: Vec<DirRun> = if self.runs_known {
                let history = self.runs.get(name).map_or(&[][..], Vec::as_slice);
                let from = history.len().saturating_sub(part.runs() as usize);
                history.get(from..).unwrap_or_default().to_vec()
            } else {
                (0..part.runs()).map_while(|i| file.run(&part, i)).collect()
            };
            directories.insert(Arc::clone(name), runs);
        }
        directories
    }

    /// Adds the runs of the streams of sealed segment `ordinal`, indexed as
    /// `mem`, to each stream's history.
    pub(super) fn note_runs(&mut self, ordinal: u32, mem: &MemIndex) {
        let mut streams: Vec<(&Arc<str>, &MemStream)> = mem.streams.iter().collect();
        streams.sort_unstable_by(|a, b| a.0.cmp(b.0));
        // Where each stream's slots start in the index file: streams in
        // name order, back to back.
        let mut slots_from = 0u32;
        for (name, stream) in streams {
            let runs = self.runs.entry(Arc::clone(name)).or_default();
            runs.push(DirRun {
                segment: ordinal,
                slots_from,
                first_version: stream.first_version,
            });
            if runs.len() > DIRECTORY_RUNS {
                runs.remove(0);
            }
            let count = u32::try_from(stream.slots.len()).unwrap_or(u32::MAX);
            slots_from = slots_from.saturating_add(count);
        }
    }
}
