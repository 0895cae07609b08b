#![allow(clippy::pedantic)]
//! A read-only check of every file of a store: segments record by record,
//! index files against the segments they describe, the stream catalogue,
//! snapshots and checkpoints.
//!
//! [`verify_store`] never writes, renames, removes or creates anything and
//! never takes the store's lock, so it can run beside a process that has the
//! store open and is appending. It reports every problem it finds as a
//! [`Finding`] and goes on, rather than stopping at the first.
//!
//! Some states that look odd are what a running or interrupted store
//! normally leaves, and are not findings: a half-written batch at the end of
//! the last segment ([`VerifyReport::torn_tail_bytes`]), index files of the
//! newest sealed segments not written yet
//! ([`VerifyReport::index_files_pending`]), a catalogue that is missing or
//! covers fewer sealed segments than exist, temporary files, and snapshots
//! or checkpoints of a newer format version.

use crate::checkpoint::{self, CHECKPOINTS_DIR, CHECKPOINT_HEADER_LEN};
use crate::error::{Error, Result};
use crate::index::catalog::{self, Catalog, CATALOG_FILE};
use crate::index::file::{
    self as index_file, index_file_name, parse_index_file_name, IndexFile, IndexFileError,
    INDEX_HEADER_LEN,
};
use crate::index::memory::MemIndex;
use crate::index::StreamSummary;
use crate::layout::SEGMENTS_DIR;
use crate::log::record::BATCH_HEADER_LEN;
use crate::log::{parse_segment_file_name, segment_file_name, Segment};
use crate::log::{scan_segment, SegmentScan};
use crate::snapshot::{self, StoredName, SNAPSHOTS_DIR, SNAPSHOT_HEADER_LEN};
use crate::storage::{read_whole_file, OsStorage, Storage};
use crate::types::RecordedEvent;
use bytes::Bytes;
use std::collections::{BTreeMap, HashMap};
use std::fmt;
use std::io;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use uuid::Uuid;

/// Within a segment, progress is reported each time this many more bytes
/// have been checked.
const PROGRESS_STEP: u64 = 4 << 20;
/// Times the last segment is scanned again when it fails at a new offset:
/// a writer appending while it is read can make a batch look damaged for a
/// moment, never twice at the same offset.
const MAX_RESCANS: u32 = 8;
/// Findings of one kind listed per file before the rest are summed up in
/// one more, so that a systematically wrong file does not flood the report.
const MAX_LISTED: usize = 32;

/// How far [`verify_store`] has got, passed to its `progress` callback.
#[derive(Debug, Clone)]
#[non_exhaustive]
pub struct VerifyProgress {
    /// Bytes checked so far.
    pub bytes_checked: u64,
    /// Bytes that will have been checked at the end: the readable length of
    /// every segment plus the sizes of the index files, the catalogue, the
    /// snapshots and the checkpoints, as found when verification started.
    pub bytes_total: u64,
    /// The file being checked, or just checked.
    pub file: PathBuf,
}

/// What [`verify_store`] found.
#[derive(Debug, Clone, Default)]
#[non_exhaustive]
pub struct VerifyReport {
    /// Every problem found, ordered by file and offset. Empty for a sound
    /// store.
    pub findings: Vec<Finding>,
    /// What is not damage but deserves a look: a checkpoint past the end of
    /// the log, or saved after an event the log no longer holds there. A
    /// crash can leave either (a projection checkpointed events that were
    /// not yet durable) and [`crate::Store::run_projection`] then restarts
    /// where the recovered log ended; a checkpoint saved by hand or copied
    /// from another store looks the same.
    pub notes: Vec<Finding>,
    /// Segment files.
    pub segments: usize,
    /// Segments that end with a seal.
    pub sealed_segments: usize,
    /// Events read from whole batches, in all segments.
    pub events: u64,
    /// Bytes checked: equal to [`VerifyProgress::bytes_total`] at the end.
    pub bytes_checked: u64,
    /// Index files checked, those without a segment included.
    pub index_files: usize,
    /// Snapshot files checked (files set aside earlier as damaged are not
    /// counted; each is a finding).
    pub snapshots: usize,
    /// Checkpoint files checked.
    pub checkpoints: usize,
    /// Bytes of an interrupted write after the last whole batch of the
    /// active segment: not damage (the next open clears it), reported for
    /// information.
    pub torn_tail_bytes: u64,
    /// Sealed segments whose index file is not written yet: the newest
    /// ones, which the catalogue does not cover either. A running store
    /// writes them in the background and the next open writes any that an
    /// interruption left out, so this is not damage.
    pub index_files_pending: usize,
    /// Snapshot files of a newer format version, left unchecked: a newer
    /// build wrote them and this build skips them, so they are not damage.
    pub snapshots_skipped_newer_format: usize,
    /// Checkpoint files of a newer format version, left unchecked.
    pub checkpoints_skipped_newer_format: usize,
}

impl VerifyReport {
    /// Whether nothing is wrong: no findings.
    pub fn is_clean(&self) -> bool {
        self.findings.is_empty()
    }
}

/// One problem in one file.
#[derive(Debug, Clone)]
#[non_exhaustive]
pub struct Finding {
    /// The file: a path inside the store directory. For a missing file, the
    /// path it should have.
    pub file: PathBuf,
    /// Byte offset in the file at or before which the problem lies.
    pub offset: u64,
    /// What is wrong, and what the store does about it when it says so.
    pub problem: String,
}

impl fmt::Display for Finding {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "{}: offset {}: {}",
            self.file.display(),
            self.offset,
            self.problem
        )
    }
}

fn finding(file: impl Into<PathBuf>, offset: u64, problem: impl Into<String>) -> Finding {
    Finding {
        file: file.into(),
        offset,
        problem: problem.into(),
    }
}

/// A finding for an error met while checking `file`.
fn error_finding(file: &Path, error: Error) -> Finding {
    match error {
        Error::Corrupted {
            file,
            offset,
            reason,
        } => finding(file, offset, reason),
        Error::UnsupportedFormat {
            file,
            found,
            supported,
        } => finding(
            file,
            8,
            format!("format version {found}, this build reads version {supported}: not checked"),
        ),
        other => finding(file, 0, format!("could not be checked: {other}")),
    }
}

/// Checks every file of the store in `dir` without changing anything.
///
/// Every segment record and batch is read and its checksum checked; every
/// sealed segment's index file is compared with the index built from the
/// segment; the catalogue, snapshots and checkpoints are decoded and checked
/// against the log. Each problem becomes a [`Finding`] and verification
/// goes on. `progress` is called after each file and every few MiB within a
/// segment.
///
/// Nothing is written and the store's lock is not taken, so the store may
/// be open in another process (or this one) and appending meanwhile; a
/// half-written batch at the end of the log is then reported in
/// [`VerifyReport::torn_tail_bytes`], not as a finding.
///
/// Fails only when `dir` cannot be read as a store at all (its segment
/// directory cannot be listed); a file that cannot be read is a finding.
///
/// ```
/// use evstore::verify::verify_store;
/// use evstore::{EventData, ExpectedVersion, Options, Store};
/// # fn main() -> evstore::Result<()> {
/// let dir = tempfile::tempdir().unwrap();
/// let store = Store::open(dir.path(), Options::default().segment_size(1 << 20))?;
/// store.append("order-42", ExpectedVersion::NoStream, &[EventData::new("OrderPlaced", &b"{}"[..])])?;
/// drop(store);
///
/// let mut shown = 0;
/// let report = verify_store(dir.path(), &mut |p| shown = p.bytes_checked * 100 / p.bytes_total.max(1))?;
/// assert!(report.is_clean(), "{:?}", report.findings);
/// assert_eq!((report.events, report.segments, shown), (1, 1, 100));
/// # Ok(()) }
/// ```
pub fn verify_store(dir: &Path, progress: &mut dyn FnMut(&VerifyProgress)) -> Result<VerifyReport> {
    Verifier::run(&OsStorage, dir, progress)
}

/// [`verify_store`] on another file system back end, such as the
/// simulated disk of crash tests.
pub fn verify_store_on(
    storage: &dyn Storage,
    dir: &Path,
    progress: &mut dyn FnMut(&VerifyProgress),
) -> Result<VerifyReport> {
    Verifier::run(storage, dir, progress)
}

/// Reports progress, never backwards.
struct Meter<'p> {
    done: u64,
    total: u64,
    shown: u64,
    callback: &'p mut dyn FnMut(&VerifyProgress),
}

impl Meter<'_> {
    fn show(&mut self, file: &Path, at: u64) {
        self.shown = self.shown.max(at).min(self.total);
        (self.callback)(&VerifyProgress {
            bytes_checked: self.shown,
            bytes_total: self.total,
            file: file.to_path_buf(),
        });
    }

    /// `offset` bytes of `file`, planned at `size`, are checked.
    fn within(&mut self, file: &Path, offset: u64, size: u64) {
        self.show(file, self.done + offset.min(size));
    }

    /// All of `file`, planned at `size`, is checked.
    fn finish(&mut self, file: &Path, size: u64) {
        self.done += size;
        self.show(file, self.done);
    }
}

/// The files found when verification started, with their sizes.
#[derive(Default)]
struct Inventory {
    catalog: Option<Bytes>,
    segments: Vec<(u64, u64)>,
    index_files: BTreeMap<u64, u64>,
    snapshots: Vec<SnapshotEntry>,
    checkpoints: Vec<CheckpointEntry>,
}

struct CheckpointEntry {
    path: PathBuf,
    file_name: String,
    size: u64,
    /// `None` when it could not be read.
    bytes: Option<Vec<u8>>,
}

struct SnapshotEntry {
    path: PathBuf,
    dir_name: String,
    version: u64,
    size: u64,
}

/// A snapshot that decoded, waiting to be checked against the log.
struct SnapshotCheck {
    path: PathBuf,
    stream: Arc<str>,
    version: u64,
    event_id: Uuid,
}

/// A checkpoint that decoded, waiting to be checked against the log.
struct CheckpointCheck {
    path: PathBuf,
    position: u64,
    previous_id: Uuid,
}

/// The events whose ids the snapshots and checkpoints name, filled in as
/// the segments are read: only those are kept, whatever the log's size.
#[derive(Default)]
struct Wanted {
    by_stream: HashMap<Arc<str>, HashMap<u64, Option<Uuid>>>,
    by_position: HashMap<u64, Option<Uuid>>,
}

/// One stream's events in one segment.
struct LocalStream {
    first_version: u64,
    next_version: u64,
    first_offset: u64,
}

/// What one read of a segment found. Kept apart from the totals until the
/// read is final, since the last segment may be read again.
struct Pass {
    mem: MemIndex,
    streams: HashMap<Arc<str>, LocalStream>,
    events: u64,
    findings: Vec<Finding>,
    unlisted: usize,
    stream_ids: Vec<(Arc<str>, u64, Uuid)>,
    position_ids: Vec<(u64, Uuid)>,
}

impl Pass {
    fn new() -> Self {
        Pass {
            mem: MemIndex::new(false),
            streams: HashMap::new(),
            events: 0,
            findings: Vec::new(),
            unlisted: 0,
            stream_ids: Vec::new(),
            position_ids: Vec::new(),
        }
    }

    fn record(&mut self, path: &Path, offset: u64, event: &RecordedEvent, wanted: &Wanted) {
        let stream: &str = &event.stream;
        let name = match self.streams.get_key_value(stream) {
            Some((name, _)) => Arc::clone(name),
            None => Arc::from(stream),
        };
        let next = event.version.saturating_add(1);
        match self.streams.get_mut(stream) {
            Some(local) => {
                if event.version != local.next_version {
                    if self.findings.len() < MAX_LISTED {
                        self.findings.push(finding(
                            path,
                            offset,
                            format!(
                                "event of stream '{stream}' at position {} has version {}, expected {}",
                                event.position, event.version, local.next_version
                            ),
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
    }
}

/// How a segment's read ended, for its index file's check.
enum SegmentState<'a> {
    /// Whole and sealed: the index built from it, and where its seal is.
    Sealed { mem: &'a MemIndex, seal_offset: u64 },
    /// Whole, not sealed: it has no index file yet.
    Unsealed,
    /// Damaged or unreadable: only the index file's own checksums can be
    /// checked.
    Unknown,
}

struct Verifier<'a, 'p> {
    storage: &'a dyn Storage,
    segments_dir: PathBuf,
    snapshots_dir: PathBuf,
    checkpoints_dir: PathBuf,
    report: VerifyReport,
    meter: Meter<'p>,
    wanted: Wanted,
    /// Each stream as of the segments read so far, as the catalogue keeps it.
    streams: HashMap<Arc<str>, StreamSummary>,
}

impl<'a, 'p> Verifier<'a, 'p> {
    fn run(
        storage: &'a dyn Storage,
        dir: &Path,
        progress: &'p mut dyn FnMut(&VerifyProgress),
    ) -> Result<VerifyReport> {
        let mut verifier = Verifier {
            storage,
            segments_dir: dir.join(SEGMENTS_DIR),
            snapshots_dir: dir.join(SNAPSHOTS_DIR),
            checkpoints_dir: dir.join(CHECKPOINTS_DIR),
            report: VerifyReport::default(),
            meter: Meter {
                done: 0,
                total: 0,
                shown: 0,
                callback: progress,
            },
            wanted: Wanted::default(),
            streams: HashMap::new(),
        };
        let inventory = verifier.take_inventory()?;
        verifier.meter.total = inventory.catalog.as_ref().map_or(0, |c| c.len() as u64)
            + inventory.segments.iter().map(|(_, size)| size).sum::<u64>()
            + inventory.index_files.values().sum::<u64>()
            + inventory.snapshots.iter().map(|s| s.size).sum::<u64>()
            + inventory.checkpoints.iter().map(|c| c.size).sum::<u64>();
        let start = verifier.segments_dir.clone();
        verifier.meter.show(&start, 0);

        // Snapshots and checkpoints first: they say which event ids the
        // segment reads must keep.
        let checkpoints = verifier.check_checkpoint_files(&inventory);
        let snapshots = verifier.check_snapshot_files(&inventory);
        let (log_end, complete) = verifier.check_log(&inventory);
        verifier.check_snapshots_against_log(&snapshots, complete);
        verifier.check_checkpoints_against_log(&checkpoints, log_end);

        let mut report = verifier.report;
        report.bytes_checked = verifier.meter.done;
        report
            .findings
            .sort_by(|a, b| a.file.cmp(&b.file).then(a.offset.cmp(&b.offset)));
        Ok(report)
    }

    fn push(&mut self, finding: Finding) {
        self.report.findings.push(finding);
    }

    fn size_of(&self, path: &Path) -> u64 {
        self.storage
            .open_read_only(path)
            .and_then(|file| file.len())
            .unwrap_or(0)
    }

    /// Lists every file to check. The segments are listed last: the
    /// catalogue, snapshots and checkpoints only name segments and events
    /// that existed when they were written, so everything they name is then
    /// in the list even while a writer seals and adds segments.
    fn take_inventory(&mut self) -> Result<Inventory> {
        let mut inventory = Inventory::default();
        let catalog_path = self.segments_dir.join(CATALOG_FILE);
        match read_whole_file(self.storage, &catalog_path) {
            Ok(bytes) => inventory.catalog = Some(bytes),
            Err(e) if e.kind() == io::ErrorKind::NotFound => {}
            Err(e) => self.push(finding(&catalog_path, 0, format!("could not be read: {e}"))),
        }
        for dir_name in self.list_optional(&self.snapshots_dir.clone()) {
            let stream_dir = self.snapshots_dir.join(&dir_name);
            let files = match self.storage.list_dir(&stream_dir) {
                Ok(files) => files,
                // Not a directory: nothing the store put there.
                Err(e) if e.kind() == io::ErrorKind::NotADirectory => continue,
                Err(e) => {
                    self.push(finding(&stream_dir, 0, format!("could not be listed: {e}")));
                    continue;
                }
            };
            for file in files {
                let path = stream_dir.join(&file);
                match snapshot::classify_file_name(&file) {
                    StoredName::Snapshot(version) => {
                        let size = self.size_of(&path);
                        inventory.snapshots.push(SnapshotEntry {
                            path,
                            dir_name: dir_name.clone(),
                            version,
                            size,
                        });
                    }
                    StoredName::SetAside => self.push(finding(
                        path,
                        0,
                        "set aside earlier as damaged: the store failed it when loading it and no longer reads it",
                    )),
                    StoredName::Temporary | StoredName::Other => {}
                }
            }
        }
        inventory.snapshots.sort_by(|a, b| a.path.cmp(&b.path));

        // A checkpoint file is replaced in place by each save, so it is read
        // now: a later save could name events past the segments listed.
        for name in self.list_optional(&self.checkpoints_dir.clone()) {
            if name.ends_with(".ckpt") {
                let path = self.checkpoints_dir.join(&name);
                let bytes = self.read_listed(&path);
                let size = bytes.as_ref().map_or(0, |b| b.len() as u64);
                inventory.checkpoints.push(CheckpointEntry {
                    path,
                    file_name: name,
                    size,
                    bytes: bytes.map(|b| b.to_vec()),
                });
            }
        }

        let names = self
            .storage
            .list_dir(&self.segments_dir)
            .map_err(|e| Error::io(format!("listing {}", self.segments_dir.display()), e))?;
        for name in &names {
            if let Some(base) = parse_segment_file_name(name) {
                let size = self.size_of(&self.segments_dir.join(name));
                inventory.segments.push((base, size));
            } else if let Some(base) = parse_index_file_name(name) {
                let size = self.size_of(&self.segments_dir.join(name));
                inventory.index_files.insert(base, size);
            }
            // Anything else (temporary files, the catalogue) is not a
            // file of its own to check here.
        }
        inventory.segments.sort_unstable();
        Ok(inventory)
    }

    /// The names in a directory that a store may lack (it is created at the
    /// first open), reporting any other failure to list it.
    fn list_optional(&mut self, dir: &Path) -> Vec<String> {
        match self.storage.list_dir(dir) {
            Ok(mut names) => {
                names.sort();
                names
            }
            Err(e) if e.kind() == io::ErrorKind::NotFound => Vec::new(),
            Err(e) => {
                self.push(finding(dir, 0, format!("could not be listed: {e}")));
                Vec::new()
            }
        }
    }

    /// Reads a file listed at the start. `None` when it is gone (a running
    /// store prunes snapshots) or unreadable, which is a finding.
    fn read_listed(&mut self, path: &Path) -> Option<Bytes> {
        match read_whole_file(self.storage, path) {
            Ok(bytes) => Some(bytes),
            Err(e) if e.kind() == io::ErrorKind::NotFound => None,
            Err(e) => {
                self.push(finding(path, 0, format!("could not be read: {e}")));
                None
            }
        }
    }

    fn check_checkpoint_files(&mut self, inventory: &Inventory) -> Vec<CheckpointCheck> {
        let mut checks = Vec::new();
        for entry in &inventory.checkpoints {
            let (path, file_name) = (&entry.path, &entry.file_name);
            if let Some(bytes) = &entry.bytes {
                self.report.checkpoints += 1;
                match checkpoint::decode_found(path, bytes) {
                    Ok((name, position, previous_id)) => {
                        let expected = checkpoint::file_name(&name);
                        if *file_name != expected {
                            self.push(finding(
                                path,
                                CHECKPOINT_HEADER_LEN as u64,
                                format!(
                                    "holds the checkpoint '{name}', which is saved as {expected}: the store never reads it"
                                ),
                            ));
                        } else {
                            if previous_id != Uuid::nil() {
                                if let Some(before) = position.checked_sub(1) {
                                    self.wanted.by_position.insert(before, None);
                                }
                            }
                            checks.push(CheckpointCheck {
                                path: path.clone(),
                                position,
                                previous_id,
                            });
                        }
                    }
                    Err(Error::UnsupportedFormat { .. }) => {
                        self.report.checkpoints_skipped_newer_format += 1;
                    }
                    Err(e) => {
                        let found = error_finding(path, e);
                        self.push(found);
                    }
                }
            }
            self.meter.finish(path, entry.size);
        }
        checks
    }

    fn check_snapshot_files(&mut self, inventory: &Inventory) -> Vec<SnapshotCheck> {
        let mut checks = Vec::new();
        for entry in &inventory.snapshots {
            let path = &entry.path;
            if let Some(bytes) = self.read_listed(path) {
                self.report.snapshots += 1;
                match snapshot::decode_found(path, bytes, entry.version) {
                    Ok((stream, file)) => {
                        let expected = snapshot::stream_dir_name(&stream);
                        if entry.dir_name != expected {
                            self.push(finding(
                                path,
                                SNAPSHOT_HEADER_LEN as u64,
                                format!(
                                    "holds a snapshot of stream '{stream}', whose snapshots are in {expected}: the store rejects it"
                                ),
                            ));
                        } else {
                            let stream: Arc<str> = Arc::from(stream);
                            self.wanted
                                .by_stream
                                .entry(Arc::clone(&stream))
                                .or_default()
                                .insert(file.version, None);
                            checks.push(SnapshotCheck {
                                path: path.clone(),
                                stream,
                                version: file.version,
                                event_id: file.event_id,
                            });
                        }
                    }
                    Err(Error::UnsupportedFormat { .. }) => {
                        self.report.snapshots_skipped_newer_format += 1;
                    }
                    Err(e) => {
                        let mut found = error_finding(path, e);
                        found
                            .problem
                            .push_str(": the store sets it aside and uses an older snapshot");
                        self.push(found);
                    }
                }
            }
            self.meter.finish(path, entry.size);
        }
        checks
    }

    /// Checks the catalogue, then every segment with its index file, then
    /// index files without a segment. Returns the log's end (the position
    /// after its last event) when the last segment could be read, and
    /// whether every segment was read whole and in sequence.
    fn check_log(&mut self, inventory: &Inventory) -> (Option<u64>, bool) {
        let catalog_path = self.segments_dir.join(CATALOG_FILE);
        let catalog = inventory
            .catalog
            .as_ref()
            .and_then(|bytes| self.check_catalog_file(&catalog_path, bytes, inventory));
        let covered = catalog.as_ref().map_or(0, |c| c.covered_segments as usize);
        // Index files are written one at a time in seal order, so a missing
        // one followed by a present one was removed, not still to come.
        let last_listed_index = inventory
            .index_files
            .keys()
            .rev()
            .find(|base| {
                inventory
                    .segments
                    .binary_search_by_key(*base, |(b, _)| *b)
                    .is_ok()
            })
            .copied();

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
            let index_later = last_listed_index.is_some_and(|last| last > base);
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
                        self.check_index_file(
                            ordinal,
                            base,
                            covered,
                            index_later,
                            SegmentState::Unknown,
                        );
                    }
                    continue;
                }
            };
            let (pass, result) = self.read_segment(&seg, is_last, size);
            self.report.events += pass.events;
            self.merge(ordinal, &pass, complete, &path);
            match result {
                Ok(scan) => {
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
                    self.check_index_file(ordinal, base, covered, index_later, state);
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
                    self.check_index_file(
                        ordinal,
                        base,
                        covered,
                        index_later,
                        SegmentState::Unknown,
                    );
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
        if let Some(bytes) = &inventory.catalog {
            self.meter.finish(&catalog_path, bytes.len() as u64);
        }
        (log_end, complete)
    }

    /// Reads a segment record by record. The last one is read again when
    /// it fails at a new offset: a batch being written as it was read is
    /// whole by the next read, while damage stays where it is.
    fn read_segment(
        &mut self,
        seg: &Segment,
        is_last: bool,
        size: u64,
    ) -> (Pass, Result<SegmentScan>) {
        let mut failed_at = None;
        let mut rescans = 0;
        loop {
            let mut pass = Pass::new();
            let mut next_report = PROGRESS_STEP;
            let wanted = &self.wanted;
            let meter = &mut self.meter;
            let result = scan_segment(seg, is_last, |offset, event| {
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
    fn merge(&mut self, ordinal: u32, pass: &Pass, check: bool, path: &Path) {
        self.report.findings.extend(pass.findings.iter().cloned());
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
            match self.streams.get_mut(name) {
                Some(summary) => {
                    if check && summary.next_version != local.first_version {
                        mismatches.push(finding(
                            path,
                            local.first_offset,
                            format!(
                                "stream '{name}' continues at version {}, but its events before this segment end at version {}",
                                local.first_version,
                                summary.next_version.saturating_sub(1)
                            ),
                        ));
                    }
                    summary.next_version = local.next_version;
                    summary.last_segment = ordinal;
                }
                None => {
                    if check && local.first_version != 0 {
                        mismatches.push(finding(
                            path,
                            local.first_offset,
                            format!(
                                "stream '{name}' starts at version {}, expected 0",
                                local.first_version
                            ),
                        ));
                    }
                    self.streams.insert(
                        Arc::clone(name),
                        StreamSummary {
                            next_version: local.next_version,
                            first_segment: ordinal,
                            last_segment: ordinal,
                        },
                    );
                }
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

    fn push_capped(&mut self, mut findings: Vec<Finding>, path: &Path) {
        findings.sort_by_key(|f| f.offset);
        let more = findings.len().saturating_sub(MAX_LISTED);
        findings.truncate(MAX_LISTED);
        let last = findings.last().map_or(0, |f| f.offset);
        self.report.findings.extend(findings);
        if more > 0 {
            self.push(finding(path, last, format!("and {more} more like these")));
        }
    }

    /// Decodes the catalogue and checks that it ends where a listed segment
    /// begins. Returns it when its streams can be compared with the
    /// segments'.
    fn check_catalog_file(
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
        let covered = catalog.covered_segments as usize;
        let segments = inventory.segments.len();
        let problem = if covered == 0 {
            Some("covers no segment".to_string())
        } else if covered > segments {
            Some(format!(
                "covers {covered} segments, but there are {segments}"
            ))
        } else {
            match inventory.segments.get(covered) {
                Some(&(base, _)) if base != catalog.end_position => Some(format!(
                    "ends at position {}, but segment {} starts at {base}",
                    catalog.end_position,
                    covered + 1
                )),
                _ => None,
            }
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
    fn compare_catalog(&mut self, path: &Path, catalog: &Catalog, last: &SegmentScan) {
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
    fn check_index_file(
        &mut self,
        ordinal: u32,
        base: u64,
        covered: usize,
        index_later: bool,
        state: SegmentState<'_>,
    ) {
        let path = self.segments_dir.join(index_file_name(base));
        let segment = segment_file_name(base);
        let bytes = match read_whole_file(self.storage, &path) {
            Ok(bytes) => bytes,
            Err(e) if e.kind() == io::ErrorKind::NotFound => {
                if let SegmentState::Sealed { .. } = state {
                    if (ordinal as usize) < covered || index_later {
                        self.push(finding(
                            &path,
                            0,
                            format!("missing: the next open rebuilds it from {segment}"),
                        ));
                    } else {
                        self.report.index_files_pending += 1;
                    }
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
        let expected = index_file::encode(mem, base, seal_offset, header.hash_kind);
        if bytes[..] != expected[..] {
            let at = bytes
                .iter()
                .zip(&expected)
                .position(|(a, b)| a != b)
                .unwrap_or(bytes.len().min(expected.len()));
            let remedy = if trusted_at_open {
                "reads it misleads fail with a corruption error; remove it and the next open rebuilds it"
            } else {
                "the next open rebuilds it from the segment"
            };
            self.push(finding(
                &path,
                at as u64,
                format!(
                    "differs from the index built from {segment}, though its checksums hold: {remedy}"
                ),
            ));
        }
    }

    fn check_snapshots_against_log(&mut self, snapshots: &[SnapshotCheck], complete: bool) {
        for snap in snapshots {
            let found = self
                .wanted
                .by_stream
                .get(&snap.stream)
                .and_then(|versions| versions.get(&snap.version))
                .copied()
                .flatten();
            match found {
                Some(id) if id != snap.event_id => self.push(finding(
                    &snap.path,
                    24,
                    format!(
                        "was taken after event {}, but version {} of stream '{}' is event {id}: the store rejects it",
                        snap.event_id, snap.version, snap.stream
                    ),
                )),
                Some(_) => {}
                None if complete => {
                    let last = match self.streams.get(&snap.stream) {
                        Some(s) => format!("ends at version {}", s.next_version.saturating_sub(1)),
                        None => "has no events".to_string(),
                    };
                    self.push(finding(
                        &snap.path,
                        16,
                        format!(
                            "is of version {}, but stream '{}' {last}: the store rejects it",
                            snap.version, snap.stream
                        ),
                    ));
                }
                // Part of the log could not be read: its events may be there.
                None => {}
            }
        }
    }

    fn check_checkpoints_against_log(
        &mut self,
        checkpoints: &[CheckpointCheck],
        log_end: Option<u64>,
    ) {
        for ckpt in checkpoints {
            if let Some(end) = log_end {
                if ckpt.position > end {
                    self.report.notes.push(finding(
                        &ckpt.path,
                        16,
                        format!(
                            "position {} is past the end of the log, at {end}",
                            ckpt.position
                        ),
                    ));
                    continue;
                }
            }
            let Some(before) = ckpt.position.checked_sub(1) else {
                continue;
            };
            if ckpt.previous_id == Uuid::nil() {
                continue;
            }
            match self.wanted.by_position.get(&before).copied().flatten() {
                Some(id) if id != ckpt.previous_id => self.report.notes.push(finding(
                    &ckpt.path,
                    32,
                    format!(
                        "was saved after event {}, but the event at position {before} is {id}",
                        ckpt.previous_id
                    ),
                )),
                // Not found: that part of the log could not be read.
                _ => {}
            }
        }
    }
}
