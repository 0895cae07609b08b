//! Checking the log: every segment record by record, their order and seals,
//! and stream versions dense across segments.

use super::inventory::Inventory;
use super::{error_finding, finding, Finding, Verifier, MAX_LISTED, MAX_RESCANS, PROGRESS_STEP};
use crate::error::{Error, Result};
use crate::index::catalog::CATALOG_FILE;
use crate::index::continuity::{check_next, count_events};
use crate::index::file::index_file_name;
use crate::index::memory::MemIndex;
use crate::index::StreamSummary;
use crate::log::record::BATCH_HEADER_LEN;
use crate::log::{scan_segment, SegmentRole, SegmentScan};
use crate::log::{segment_file_name, Segment};
use crate::sealing::{key_id, SUBJECT_TAG_PREFIX};
use crate::types::RecordedEvent;
use std::collections::HashMap;
use std::io;
use std::path::Path;
use std::sync::Arc;
use uuid::Uuid;

/// The events whose ids the snapshots and checkpoints name, filled in as
/// the segments are read: only those are kept, whatever the log's size.
#[derive(Default)]
pub(super) struct Wanted {
    pub(super) by_stream: HashMap<Arc<str>, HashMap<u64, Option<Uuid>>>,
    pub(super) by_position: HashMap<u64, Option<Uuid>>,
}

/// One stream's events in one segment.
pub(super) struct LocalStream {
    pub(super) first_version: u64,
    pub(super) next_version: u64,
    pub(super) first_offset: u64,
}

/// What one read of a segment found. Kept apart from the totals until the
/// read is final, since the last segment may be read again.
pub(super) struct Pass {
    /// The base position of the segment read.
    base: u64,
    pub(super) mem: MemIndex,
    pub(super) streams: HashMap<Arc<str>, LocalStream>,
    pub(super) events: u64,
    pub(super) findings: Vec<Finding>,
    pub(super) unlisted: usize,
    pub(super) stream_ids: Vec<(Arc<str>, u64, Uuid)>,
    pub(super) position_ids: Vec<(u64, Uuid)>,
    /// Each subject's keys that sealed events, with the position of the
    /// first event each sealed.
    pub(super) sealed: SealedKeys,
}

/// Subject -> key id -> position of the first event it sealed.
pub(super) type SealedKeys = HashMap<String, HashMap<u64, u64>>;

impl Pass {
    pub(super) fn new(base: u64) -> Self {
        Pass {
            base,
            mem: MemIndex::new(false),
            streams: HashMap::new(),
            events: 0,
            findings: Vec::new(),
            unlisted: 0,
            stream_ids: Vec::new(),
            position_ids: Vec::new(),
            sealed: HashMap::new(),
        }
    }

    pub(super) fn record(
        &mut self,
        path: &Path,
        offset: u64,
        event: &RecordedEvent,
        wanted: &Wanted,
    ) {
        let stream: &str = &event.stream;
        let name = match self.streams.get_key_value(stream) {
            Some((name, _)) => Arc::clone(name),
            None => Arc::from(stream),
        };
        let next = event.version.saturating_add(1);
        match self.streams.get_mut(stream) {
            Some(local) => {
                if let Err(gap) = check_next(stream, Some(local.next_version), event.version) {
                    if self.findings.len() < MAX_LISTED {
                        self.findings.push(finding(
                            path,
                            offset,
                            format!("{gap} (at position {})", event.position),
                        ));
                    } else {
                        self.unlisted += 1;
                    }
                }
                local.next_version = next;
            }
            None => {
                self.streams.insert(
                    Arc::clone(&name),
                    LocalStream {
                        first_version: event.version,
                        next_version: next,
                        first_offset: offset,
                    },
                );
            }
        }
        let offset32 = u32::try_from(offset).unwrap_or(u32::MAX);
        self.mem
            .push(&name, event.version, &[offset32], &[event.id.as_u128()]);
        // The postings the segment's records give, for its postings file's
        // check. A segment holds fewer than 2^32 events.
        let slot = u32::try_from(event.position.saturating_sub(self.base)).unwrap_or(u32::MAX);
        self.mem.postings.push(slot, &event.event_type, &event.tags);
        self.events += 1;
        if wanted
            .by_stream
            .get(stream)
            .is_some_and(|versions| versions.contains_key(&event.version))
        {
            self.stream_ids.push((name, event.version, event.id));
        }
        if wanted.by_position.contains_key(&event.position) {
            self.position_ids.push((event.position, event.id));
        }
        if let Some(subject) = event
            .tags
            .iter()
            .find_map(|t| t.strip_prefix(SUBJECT_TAG_PREFIX))
        {
            let field = if event.payload.is_empty() {
                &event.metadata
            } else {
                &event.payload
            };
            if let Some(id) = key_id(field) {
                if let Some(ids) = self.sealed.get_mut(subject) {
                    ids.entry(id).or_insert(event.position);
                } else {
                    self.sealed
                        .insert(subject.to_string(), HashMap::from([(id, event.position)]));
                }
            }
        }
    }
}

/// How a segment's read ended, for its index file's check.
#[derive(Clone, Copy)]
pub(super) enum SegmentState<'a> {
    /// Whole and sealed: the index built from it, and where its seal is.
    Sealed { mem: &'a MemIndex, seal_offset: u64 },
    /// Whole, not sealed: it has no index file yet.
    Unsealed,
    /// Damaged or unreadable: only the index file's own checksums can be
    /// checked.
    Unknown,
}

impl Verifier<'_, '_> {
    /// Checks the catalogue, then every segment with its index file, then
    /// index files without a segment. Returns the log's end (the position
    /// after its last event) when the last segment could be read, and
    /// whether every segment was read whole and in sequence.
    #[expect(
        clippy::too_many_lines,
        reason = "one pass over the segments in order; each step feeds the next"
    )]
    pub(super) fn check_log(&mut self, inventory: &Inventory) -> (Option<u64>, bool) {
        let catalog_path = self.segments_dir.join(CATALOG_FILE);
        let catalog = inventory
            .catalog
            .as_ref()
            .and_then(|bytes| self.check_catalog_file(&catalog_path, bytes, inventory));
        let covered = catalog.as_ref().map_or(0, |c| c.covered_segments as usize);
        let mut expected_base = Some(0u64);
        // Whether every segment so far was read whole and in sequence: only
        // then do stream versions carry over from one segment to the next.
        let mut complete = true;
        let mut log_end = None;
        for (i, &(base, size)) in inventory.segments.iter().enumerate() {
            let ordinal = u32::try_from(i).unwrap_or(u32::MAX);
            let path = self.segments_dir.join(segment_file_name(base));
            let is_last = i + 1 == inventory.segments.len();
            match expected_base {
                Some(expected) if base > expected => {
                    let missing = self.segments_dir.join(segment_file_name(expected));
                    self.push(finding(
                        missing,
                        0,
                        format!(
                            "missing: the log jumps from position {expected} to {base}, where {} starts",
                            segment_file_name(base)
                        ),
                    ));
                    complete = false;
                }
                Some(expected) if base < expected => {
                    self.push(finding(
                        &path,
                        16,
                        format!(
                            "starts at position {base}, but the segment before it ends at position {expected}"
                        ),
                    ));
                    complete = false;
                }
                _ => {}
            }
            expected_base = None;
            let index_listed = inventory.index_files.contains_key(&base);
            self.report.segments += 1;

            let seg = match Segment::open_read_only(self.storage, path.clone(), base) {
                Ok(seg) => seg,
                Err(e) => {
                    let found = error_finding(&path, e);
                    self.push(found);
                    complete = false;
                    self.meter.finish(&path, size);
                    if index_listed {
                        self.check_index_file(ordinal, base, covered, SegmentState::Unknown);
                    }
                    self.check_postings_file(base, SegmentState::Unknown, inventory);
                    continue;
                }
            };
            if seg.is_removed() {
                self.meter.finish(&path, size);
                self.pass_over_postings_file(base, inventory);
                match self.check_removed_segment(ordinal, &seg, complete) {
                    Some(end) => {
                        expected_base = Some(end);
                        if is_last {
                            log_end = Some(end);
                        }
                    }
                    None => complete = false,
                }
                continue;
            }
            let (pass, result) = self.read_segment(&seg, is_last, size);
            self.report.events += pass.events;
            self.merge(ordinal, &pass, complete, &path);
            match result {
                Ok(scan) => {
                    if !scan.sealed && seg.file().len().is_ok_and(|len| len < seg.capacity()) {
                        // See `refuse_truncated` in the index recovery.
                        self.push(finding(
                            &path,
                            size,
                            format!(
                                "the segment being written is {size} bytes, shorter than the {} \
                                 its header allocated: the file was cut, and events past the \
                                 cut may have been acknowledged; the store will not open",
                                seg.capacity()
                            ),
                        ));
                    }
                    self.report.torn_tail_bytes += scan.torn_bytes;
                    expected_base = Some(scan.next_position);
                    if is_last {
                        log_end = Some(scan.next_position);
                    }
                    let state = if scan.sealed {
                        self.report.sealed_segments += 1;
                        SegmentState::Sealed {
                            mem: &pass.mem,
                            seal_offset: scan.end_offset.saturating_sub(BATCH_HEADER_LEN as u64),
                        }
                    } else {
                        SegmentState::Unsealed
                    };
                    self.meter.finish(&path, size);
                    self.runs_known = complete;
                    self.check_index_file(ordinal, base, covered, state);
                    self.check_postings_file(base, state, inventory);
                    if scan.sealed {
                        self.note_runs(ordinal, &pass.mem);
                    }
                    if let Some(catalog) = &catalog {
                        if i + 1 == covered && complete {
                            self.compare_catalog(&catalog_path, catalog, &scan);
                        }
                    }
                }
                Err(e) => {
                    let found = error_finding(&path, e);
                    self.push(found);
                    complete = false;
                    self.meter.finish(&path, size);
                    self.check_index_file(ordinal, base, covered, SegmentState::Unknown);
                    self.check_postings_file(base, SegmentState::Unknown, inventory);
                }
            }
        }

        for (&base, &size) in &inventory.index_files {
            let path = self.segments_dir.join(index_file_name(base));
            let has_segment = inventory
                .segments
                .binary_search_by_key(&base, |(b, _)| *b)
                .is_ok();
            if !has_segment {
                let segment = self.segments_dir.join(segment_file_name(base));
                // Its segment may have been created after the listing.
                if matches!(self.storage.open_read_only(&segment), Err(e) if e.kind() == io::ErrorKind::NotFound)
                {
                    self.report.index_files += 1;
                    self.push(finding(
                        &path,
                        0,
                        format!(
                            "index file of segment {}, which does not exist",
                            segment_file_name(base)
                        ),
                    ));
                }
            }
            self.meter.finish(&path, size);
        }
        self.check_orphan_postings_files(inventory);
        if let Some(bytes) = &inventory.catalog {
            self.meter.finish(&catalog_path, bytes.len() as u64);
        }
        (log_end, complete)
    }

    /// Reads a segment record by record. The last one is read again when
    /// it fails at a new offset: a batch being written as it was read is
    /// whole by the next read, while damage stays where it is.
    pub(super) fn read_segment(
        &mut self,
        seg: &Segment,
        is_last: bool,
        size: u64,
    ) -> (Pass, Result<SegmentScan>) {
        let mut failed_at = None;
        let mut rescans = 0;
        loop {
            let mut pass = Pass::new(seg.base_position());
            let mut next_report = PROGRESS_STEP;
            let wanted = &self.wanted;
            let meter = &mut self.meter;
            let result = scan_segment(seg, SegmentRole::of(is_last), |offset, event| {
                pass.record(seg.path(), offset, event, wanted);
                if offset >= next_report {
                    meter.within(seg.path(), offset, size);
                    next_report = offset.saturating_add(PROGRESS_STEP);
                }
                Ok(())
            });
            if let Err(Error::Corrupted { offset, .. }) = &result {
                if is_last && failed_at != Some(*offset) && rescans < MAX_RESCANS {
                    failed_at = Some(*offset);
                    rescans += 1;
                    continue;
                }
            }
            return (pass, result);
        }
    }

    /// Adds one segment's streams to the totals. `check` says whether every
    /// earlier segment was read whole, so that versions must carry on.
    pub(super) fn merge(&mut self, ordinal: u32, pass: &Pass, check: bool, path: &Path) {
        self.report.findings.extend(pass.findings.iter().cloned());
        for (subject, ids) in &pass.sealed {
            let known = self.sealed_keys.entry(subject.clone()).or_default();
            for (&id, &position) in ids {
                known.entry(id).or_insert(position);
            }
        }
        if pass.unlisted > 0 {
            self.push(finding(
                path,
                pass.findings.last().map_or(0, |f| f.offset),
                format!(
                    "{} more events after this one have unexpected versions",
                    pass.unlisted
                ),
            ));
        }
        let mut mismatches = Vec::new();
        for (name, local) in &pass.streams {
            let count = local.next_version.saturating_sub(local.first_version);
            let counted =
                count_events(&mut self.streams, name, ordinal, local.first_version, count);
            if let Err(gap) = counted {
                if check {
                    mismatches.push(finding(path, local.first_offset, gap.to_string()));
                }
                // Go on from what this segment says, so that one break is
                // reported once.
                let summary = self
                    .streams
                    .entry(Arc::clone(name))
                    .or_insert(StreamSummary {
                        next_version: 0,
                        first_segment: ordinal,
                        last_segment: ordinal,
                    });
                summary.next_version = local.next_version;
                summary.last_segment = ordinal;
            }
        }
        self.push_capped(mismatches, path);
        for (stream, version, id) in &pass.stream_ids {
            if let Some(slot) = self
                .wanted
                .by_stream
                .get_mut(stream)
                .and_then(|versions| versions.get_mut(version))
            {
                *slot = Some(*id);
            }
        }
        for (position, id) in &pass.position_ids {
            if let Some(slot) = self.wanted.by_position.get_mut(position) {
                *slot = Some(*id);
            }
        }
    }

    pub(super) fn push_capped(&mut self, mut findings: Vec<Finding>, path: &Path) {
        findings.sort_by_key(|f| f.offset);
        let more = findings.len().saturating_sub(MAX_LISTED);
        findings.truncate(MAX_LISTED);
        let last = findings.last().map_or(0, |f| f.offset);
        self.report.findings.extend(findings);
        if more > 0 {
            self.push(finding(path, last, format!("and {more} more like these")));
        }
    }
}
