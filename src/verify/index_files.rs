//! Checking the index files and the stream catalogue against the segments
//! they describe.

use super::inventory::Inventory;
use super::segments::SegmentState;
use super::{finding, first_difference, Verifier};
use crate::index::catalog::{self, Catalog};
use crate::index::file::{
    self as index_file, index_file_name, IndexFile, IndexFileError, INDEX_HEADER_LEN,
};
use crate::index::StreamSummary;
use crate::log::segment_file_name;
use crate::log::SegmentScan;
use crate::storage::read_whole_file;
use std::io;
use std::path::Path;
use std::sync::Arc;

impl Verifier<'_, '_> {
    /// Decodes the catalogue and checks that it ends where a listed segment
    /// begins. Returns it when its streams can be compared with the
    /// segments'.
    pub(super) fn check_catalog_file(
        &mut self,
        path: &Path,
        bytes: &[u8],
        inventory: &Inventory,
    ) -> Option<Catalog> {
        let catalog = match catalog::decode(bytes) {
            Ok(catalog) => catalog,
            Err(reason) => {
                self.push(finding(
                    path,
                    0,
                    format!("{reason}: the next open rebuilds it from the segments"),
                ));
                return None;
            }
        };
        let bases: Vec<u64> = inventory.segments.iter().map(|&(base, _)| base).collect();
        let problem = match catalog.fit(&bases) {
            catalog::Fit::Usable | catalog::Fit::CoversAll => None,
            catalog::Fit::Misfit(problem) => Some(problem),
        };
        match problem {
            Some(problem) => {
                self.push(finding(
                    path,
                    12,
                    format!("{problem}: the next open rebuilds it from the segments"),
                ));
                None
            }
            None => Some(catalog),
        }
    }

    /// Compares the catalogue with the streams of the segments it covers,
    /// all of which have just been read whole; `last` is the read of the
    /// last of them.
    pub(super) fn compare_catalog(&mut self, path: &Path, catalog: &Catalog, last: &SegmentScan) {
        if !last.sealed {
            self.push(finding(
                path,
                12,
                format!(
                    "covers {} segments, but the last of them is not sealed",
                    catalog.covered_segments
                ),
            ));
            return;
        }
        if last.next_position != catalog.end_position {
            self.push(finding(
                path,
                16,
                format!(
                    "ends at position {}, but the segments it covers end at {}",
                    catalog.end_position, last.next_position
                ),
            ));
            return;
        }
        let describe = |s: &StreamSummary| {
            format!(
                "{} events, in segments {} to {}",
                s.next_version,
                s.first_segment + 1,
                s.last_segment + 1
            )
        };
        let mut wrong = Vec::new();
        for ((name, listed), offset) in catalog.streams.iter().zip(catalog::entry_offsets(catalog))
        {
            match self.streams.get(name) {
                None => wrong.push(finding(
                    path,
                    offset,
                    format!(
                        "lists stream '{name}' ({}), which has no events in the segments it covers",
                        describe(listed)
                    ),
                )),
                Some(found) if found != listed => wrong.push(finding(
                    path,
                    offset,
                    format!(
                        "says stream '{name}' has {}; the segments hold {}",
                        describe(listed),
                        describe(found)
                    ),
                )),
                Some(_) => {}
            }
        }
        let mut unlisted: Vec<&Arc<str>> = self
            .streams
            .keys()
            .filter(|name| {
                catalog
                    .streams
                    .binary_search_by(|(listed, _)| listed.as_ref().cmp(name.as_ref()))
                    .is_err()
            })
            .collect();
        unlisted.sort();
        for name in unlisted {
            wrong.push(finding(
                path,
                catalog::entry_offsets(catalog)
                    .first()
                    .copied()
                    .unwrap_or(64),
                format!(
                    "does not list stream '{name}', which has events in the segments it covers"
                ),
            ));
        }
        self.push_capped(wrong, path);
    }

    /// Checks the index file of the segment at `base`, the `ordinal`-th.
    #[expect(
        clippy::too_many_lines,
        reason = "the checks of one file, in the order its bytes are read"
    )]
    pub(super) fn check_index_file(
        &mut self,
        ordinal: u32,
        base: u64,
        covered: usize,
        state: SegmentState<'_>,
    ) {
        let path = self.segments_dir.join(index_file_name(base));
        let segment = segment_file_name(base);
        let bytes = match read_whole_file(self.storage, &path) {
            Ok(bytes) => bytes,
            Err(e) if e.kind() == io::ErrorKind::NotFound => {
                // Not damage: an index file is derived from its segment,
                // and the next open writes it again. The newest sealed
                // segments wait for theirs in a running store; an older one
                // lacks its file if a scavenge was interrupted.
                if let SegmentState::Sealed { .. } = state {
                    self.report.index_files_pending += 1;
                }
                return;
            }
            Err(e) => {
                self.push(finding(&path, 0, format!("could not be read: {e}")));
                return;
            }
        };
        self.report.index_files += 1;
        // Past the catalogue, the next open reads the segment again and
        // replaces an index file that differs; within it, index files are
        // used as they are, and only their checksums stand guard.
        let trusted_at_open = (ordinal as usize) < covered;
        let rebuilt = if trusted_at_open {
            "the store rebuilds it from the segment when it first uses it"
        } else {
            "the next open rebuilds it from the segment"
        };
        let file = match IndexFile::parse(bytes.clone(), base) {
            Ok(file) => file,
            Err(IndexFileError::UnsupportedVersion(found)) => {
                self.push(finding(
                    &path,
                    8,
                    format!(
                        "index format version {found}, this build reads {}: the next open rebuilds it from the segment",
                        index_file::INDEX_FORMAT_VERSION
                    ),
                ));
                return;
            }
            Err(IndexFileError::Damaged(reason)) => {
                self.push(finding(
                    &path,
                    0,
                    format!("{reason}: the next open rebuilds it from {segment}"),
                ));
                return;
            }
        };
        let header = *file.header();
        if !file.verify_body() {
            self.push(finding(
                &path,
                INDEX_HEADER_LEN as u64,
                format!("body checksum mismatch: {rebuilt}"),
            ));
            return;
        }
        let (mem, seal_offset) = match state {
            SegmentState::Sealed { mem, seal_offset } => (mem, seal_offset),
            SegmentState::Unsealed => {
                self.push(finding(
                    &path,
                    0,
                    format!("index file of {segment}, which is not sealed"),
                ));
                return;
            }
            SegmentState::Unknown => return,
        };
        if header.seal_offset != seal_offset {
            self.push(finding(
                &path,
                32,
                format!(
                    "says the seal of {segment} is at offset {}, it is at {seal_offset}: the next open rebuilds it from the segment",
                    header.seal_offset
                ),
            ));
            return;
        }
        if header.count != mem.len() as u64 {
            self.push(finding(
                &path,
                24,
                format!(
                    "says {segment} holds {} events, it holds {}: the next open rebuilds it from the segment",
                    header.count,
                    mem.len()
                ),
            ));
            return;
        }
        let directories = self.expected_directories(&file, mem);
        let expected = index_file::encode(mem, base, seal_offset, header.hash_kind, &directories);
        if bytes[..] != expected[..] {
            let at = first_difference(&bytes, &expected);
            let remedy = if trusted_at_open {
                "reads it misleads fail with a corruption error; remove it and the next open rebuilds it"
            } else {
                "the next open rebuilds it from the segment"
            };
            self.push(finding(
                &path,
                at,
                format!(
                    "differs from the index built from {segment}, though its checksums hold: {remedy}"
                ),
            ));
        }
    }
}
