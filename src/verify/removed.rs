//! Checking a removed segment: a header and a seal, no records, and its
//! index file, which must be whole since nothing can rebuild it. Its
//! streams' versions count towards the continuity of the log as its
//! records did.

use super::segments::{LocalStream, Pass};
use super::{error_finding, Verifier};
use crate::index::file::index_file_name;
use crate::index::removed::load_removed_index;
use crate::log::Segment;
use std::sync::Arc;
use uuid::Uuid;

impl Verifier<'_, '_> {
    /// Checks removed segment `ordinal`; the position it ends at, unless
    /// its index file is unusable (a finding).
    pub(super) fn check_removed_segment(
        &mut self,
        ordinal: u32,
        seg: &Segment,
        complete: bool,
    ) -> Option<u64> {
        let path = self.segments_dir.join(index_file_name(seg.base_position()));
        let file = match load_removed_index(self.storage, &path, seg) {
            Ok(file) => file,
            Err(e) => {
                let found = error_finding(&path, e);
                self.push(found);
                return None;
            }
        };
        self.report.index_files += 1;
        self.report.removed_segments += 1;
        self.report.sealed_segments += 1;
        let mut pass = Pass::new(seg.base_position());
        // Each stream's events here, in position order, as a read of the
        // records would have met them.
        let mut slots = Vec::with_capacity(file.len());
        for found in file.streams() {
            let Some((name, part)) = found else {
                self.push(super::finding(&path, 0, "a stream entry does not decode"));
                return None;
            };
            let name: Arc<str> = Arc::from(name);
            for i in 0..part.count {
                let Some((slot, _)) = file.slot(&part, i) else {
                    self.push(super::finding(&path, 0, "a slot entry is out of range"));
                    return None;
                };
                slots.push((slot, Arc::clone(&name), part.first_version + i));
            }
            let wanted = self.wanted.by_stream.get(&*name);
            let versions = part.first_version..part.first_version + part.count;
            for &version in wanted.iter().flat_map(|w| w.keys()) {
                if versions.contains(&version) {
                    // Removed: nothing to compare a snapshot's event with.
                    pass.stream_ids
                        .push((Arc::clone(&name), version, Uuid::nil()));
                }
            }
            pass.streams.insert(
                name,
                LocalStream {
                    first_version: part.first_version,
                    next_version: part.first_version + part.count,
                    first_offset: 0,
                },
            );
        }
        // A streams-only index file places every event at slot 0: each
        // stream's versions then still go in order.
        slots.sort_unstable();
        for (slot, name, version) in &slots {
            pass.mem.push(name, *version, &[*slot], &[0]);
        }
        self.merge(ordinal, &pass, complete, seg.path());
        self.runs_known = complete;
        self.note_runs(ordinal, &pass.mem);
        seg.removed_end()
    }
}
