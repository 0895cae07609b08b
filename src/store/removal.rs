//! Removing, during a scavenge, a sealed segment none of whose events any
//! read returns any more: every one expired, truncated away or of a
//! deleted stream (an erased event keeps its redaction marker, a lifecycle
//! event is never dead). The segment file is replaced by one holding only
//! its header and seal (see [`crate::log::record::REMOVED_FORMAT_VERSION`]);
//! its index file stays as the record of its streams' versions.
//!
//! Order of the writes, each step durable before the next depends on it:
//! the index file is synced and checked whole (nothing can rebuild it
//! afterwards), the directory synced, the postings file removed, the
//! replacement written beside the segment and synced, then renamed over
//! it; the rename is made durable by the scavenge's next directory sync.
//! A crash at any point leaves the segment whole or removed, with its
//! index file either way.

use super::scavenge::{DeadEvents, ScavengeReport, UnsyncedRenames};
use super::Store;
use crate::error::{Error, Result};
use crate::index::deferred_check::read_checked;
use crate::index::file::encode_streams_only;
use crate::index::postings_file::postings_file_name;
use crate::index::removed::{check_before_removal, load_removed_index};
use crate::log::record::{BATCH_HEADER_LEN, SEGMENT_HEADER_LEN};
use crate::log::{write_removed_segment, Segment};
use crate::storage::{child, write_and_rename};
use std::io;
use std::sync::Arc;

/// Records read at a time while checking that a segment is all dead: few
/// at first, since a segment with a live event usually shows one early,
/// then more.
const FIRST_CHECK_CHUNK: usize = 16;
const LAST_CHECK_CHUNK: usize = 4096;

impl Store {
    /// Removes `segment`, number `ordinal`, if it may be removed and none of its
    /// events is read any more (in a dry run, only counts it). True if it
    /// was (or would be) removed; false leaves it to be rewritten.
    pub(super) fn remove_if_all_dead(
        &self,
        (ordinal, segment): (u32, &Arc<Segment>),
        dead: &DeadEvents<'_>,
        dry_run: bool,
        report: &mut ScavengeReport,
        pace: &mut dyn FnMut(u64),
        unsynced: &mut UnsyncedRenames,
    ) -> Result<bool> {
        let state = self.state();
        let durable = state.durable.load(std::sync::atomic::Ordering::Acquire);
        let Some(removable) = state.index.read().removable(ordinal, segment, durable) else {
            return Ok(false);
        };
        let base = segment.base_position();
        let Some(runs) = read_checked(&state.index, |index| index.runs(base, removable.end))?
        else {
            // Not all indexed: nothing is removed on what was not read.
            return Ok(false);
        };
        let mut events = Vec::new();
        let mut chunk = FIRST_CHECK_CHUNK;
        for run in &runs {
            let mut first_position = run.first_position;
            let mut rest = &run.offsets[..];
            while !rest.is_empty() {
                let (offsets, after) = rest.split_at(chunk.min(rest.len()));
                rest = after;
                chunk = (chunk * 4).min(LAST_CHECK_CHUNK);
                events.clear();
                segment.read_run(first_position, offsets, &mut events)?;
                if !events.iter().all(|event| dead.is_gone(event)) {
                    return Ok(false);
                }
                first_position += offsets.len() as u64;
                let span = offsets
                    .last()
                    .zip(offsets.first())
                    .map(|(l, f)| l.saturating_sub(*f));
                pace(u64::from(span.unwrap_or(0)));
            }
        }
        let storage = Arc::clone(&self.options().storage);
        let dir = state.segments_dir.as_path();
        let io_error = |what: &str, e| Error::io(format!("{what} {}", segment.path().display()), e);
        let before = segment
            .file()
            .len()
            .map_err(|e| io_error("reading the size of", e))?;
        let after = (SEGMENT_HEADER_LEN + BATCH_HEADER_LEN) as u64;
        let removed = removable.end - base;
        if dry_run {
            report.count_removed(removed, before, after);
            return Ok(true);
        }
        // The index file is all that will be left: whole and durable first.
        let index_file = check_before_removal(
            storage.as_ref(),
            &removable.index_file,
            segment,
            removable.end,
        )?;
        storage
            .open_file(&removable.index_file, false)
            .and_then(|file| file.sync_data())
            .map_err(|e| Error::io(format!("syncing {}", removable.index_file.display()), e))?;
        unsynced.pending = true;
        unsynced.sync(storage.as_ref(), dir)?;
        self.retire_postings(segment);
        let postings = child(dir, &postings_file_name(base));
        match storage.remove_file(&postings) {
            Ok(()) => unsynced.pending = true,
            Err(e) if e.kind() == io::ErrorKind::NotFound => {}
            Err(e) => return Err(io_error("removing the postings file of", e)),
        }
        let temp_path = write_removed_segment(storage.as_ref(), dir, segment, removable.end)?;
        storage
            .rename(&temp_path, segment.path())
            .map_err(|e| io_error("replacing", e))?;
        // Durable before the index file loses what only a segment with
        // records needs.
        unsynced.pending = true;
        unsynced.sync(storage.as_ref(), dir)?;
        let replacement = Segment::open_replacement(storage.as_ref(), segment)?;
        let forgotten = {
            let mut index = state.index.write();
            let installed = index.install_removed(
                ordinal,
                segment,
                replacement,
                (index_file, removable.index_file.clone()),
            );
            if !installed {
                return Err(Error::io(
                    format!("scavenging {}", segment.path().display()),
                    io::Error::other("the segment changed while it was removed"),
                ));
            }
            // What subscriptions read from the old file is read again:
            // decided before anything written after the install is seen.
            state.read_ahead.forget_all()
        };
        drop(forgotten);
        report.count_removed(removed, before, after);
        self.compact_removed_index(ordinal, unsynced)?;
        Ok(true)
    }

    /// Rewrites the index file of removed segment `ordinal` streams-only
    /// (see [`INDEX_FLAG_STREAMS_ONLY`](crate::format::INDEX_FLAG_STREAMS_ONLY)):
    /// what is left of a removed segment on disk is then its stream table.
    /// The file is written beside the old one, synced and renamed over it
    /// (the rename made durable by the scavenge's next directory sync); a
    /// crash leaves either file, and both serve. Nothing if it is not
    /// removed or already streams-only.
    pub(super) fn compact_removed_index(
        &self,
        ordinal: u32,
        unsynced: &mut UnsyncedRenames,
    ) -> Result<()> {
        let state = self.state();
        let found = state
            .index
            .read()
            .removed_with_whole_index()
            .into_iter()
            .find(|(o, _, _)| *o == ordinal);
        let Some((_, segment, persisted)) = found else {
            return Ok(());
        };
        let Some(whole) = persisted.checked_file() else {
            return Err(Error::corrupted(
                persisted.path(),
                0,
                "the index file of a removed segment fails its checksum",
            ));
        };
        let bytes = encode_streams_only(whole);
        if bytes.is_empty() {
            // Never for a file that parsed; never written over it either.
            return Err(Error::corrupted(
                persisted.path(),
                0,
                "the index file of a removed segment could not be rewritten streams-only",
            ));
        }
        let storage = Arc::clone(&self.options().storage);
        let path = persisted.path().to_path_buf();
        let io_error = |e| Error::io_or_no_space(format!("writing {}", path.display()), e);
        write_and_rename(storage.as_ref(), &path, &bytes).map_err(io_error)?;
        unsynced.pending = true;
        let compact = load_removed_index(storage.as_ref(), &path, &segment)?;
        state.index.write().install_removed(
            ordinal,
            &segment,
            Arc::clone(&segment),
            (compact, path),
        );
        Ok(())
    }
}
