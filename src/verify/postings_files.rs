//! Checking each sealed segment's postings file (its events' slots by type
//! and by tag) against the postings its records give.

use super::inventory::Inventory;
use super::segments::SegmentState;
use super::{finding, first_difference, Verifier};
use crate::index::postings_file::{self, postings_file_name, PostingsFile};
use crate::log::segment_file_name;
use crate::storage::read_whole_file;
use std::io;

impl Verifier<'_, '_> {
    /// Checks the postings file of the segment at `base`, if it has one.
    /// A sealed segment without one is not damage: the store writes it the
    /// first time a query needs it.
    pub(super) fn check_postings_file(
        &mut self,
        base: u64,
        state: SegmentState<'_>,
        inventory: &Inventory,
    ) {
        let Some(&size) = inventory.postings_files.get(&base) else {
            return;
        };
        let path = self.segments_dir.join(postings_file_name(base));
        let segment = segment_file_name(base);
        let bytes = match read_whole_file(self.storage, &path) {
            Ok(bytes) => bytes,
            // A scavenge replacing the segment removed it meanwhile.
            Err(e) if e.kind() == io::ErrorKind::NotFound => {
                self.meter.finish(&path, size);
                return;
            }
            Err(e) => {
                self.push(finding(&path, 0, format!("could not be read: {e}")));
                self.meter.finish(&path, size);
                return;
            }
        };
        self.report.postings_files += 1;
        self.meter.finish(&path, size);
        let parsed = PostingsFile::parse(bytes.clone(), base);
        let mem = match state {
            SegmentState::Sealed { mem, .. } => mem,
            // Once the segment is sealed, a query would take this file for
            // its postings, though it was not written from its records.
            SegmentState::Unsealed => {
                self.push(finding(
                    &path,
                    0,
                    format!(
                        "postings file of {segment}, which is not sealed: reads by type or tag \
                         could take it for the segment's once it is; remove it"
                    ),
                ));
                return;
            }
            SegmentState::Unknown => {
                if let Err(reason) = parsed {
                    self.push(finding(
                        &path,
                        0,
                        format!("{reason}: the store rebuilds it from {segment} when a query first needs it"),
                    ));
                }
                return;
            }
        };
        if let Err(reason) = parsed {
            self.push(finding(
                &path,
                0,
                format!(
                    "{reason}: the store rebuilds it from {segment} when a query first needs it"
                ),
            ));
            return;
        }
        let expected = postings_file::encode(&mem.postings, base);
        if bytes[..] != expected[..] {
            self.push(finding(
                &path,
                first_difference(&bytes, &expected),
                format!(
                    "differs from the postings built from {segment}, though its checksums hold: \
                     reads by type or tag it misleads miss events or fail with a corruption \
                     error; remove it and the store rebuilds it from the segment"
                ),
            ));
        }
    }

    /// Counts the postings file a removed segment may have left (a
    /// scavenge cut short): the store reads none, and the next scavenge
    /// removes it.
    pub(super) fn pass_over_postings_file(&mut self, base: u64, inventory: &Inventory) {
        if let Some(&size) = inventory.postings_files.get(&base) {
            let path = self.segments_dir.join(postings_file_name(base));
            self.meter.finish(&path, size);
        }
    }

    /// Reports postings files whose segment does not exist.
    pub(super) fn check_orphan_postings_files(&mut self, inventory: &Inventory) {
        for (&base, &size) in &inventory.postings_files {
            let listed = inventory
                .segments
                .binary_search_by_key(&base, |(b, _)| *b)
                .is_ok();
            if listed {
                continue;
            }
            let path = self.segments_dir.join(postings_file_name(base));
            let segment = self.segments_dir.join(segment_file_name(base));
            // Its segment may have been created after the listing.
            if matches!(self.storage.open_read_only(&segment), Err(e) if e.kind() == io::ErrorKind::NotFound)
            {
                self.report.postings_files += 1;
                self.push(finding(
                    &path,
                    0,
                    format!(
                        "postings file of segment {}, which does not exist",
                        segment_file_name(base)
                    ),
                ));
            }
            self.meter.finish(&path, size);
        }
    }
}
