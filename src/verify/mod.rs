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

use crate::checkpoint::CHECKPOINTS_DIR;
use crate::error::{Error, Result};
use crate::index::directory::DirRun;
use crate::index::StreamSummary;
use crate::layout::SEGMENTS_DIR;
use crate::snapshot::SNAPSHOTS_DIR;
use crate::storage::{OsStorage, Storage};
use std::collections::HashMap;
use std::fmt;
use std::path::{Path, PathBuf};
use std::sync::Arc;

mod checkpoints;
mod directories;
mod index_files;
mod inventory;
mod keys;
mod postings_files;
mod removed;
mod segments;
mod snapshots;

use segments::Wanted;

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
    /// Postings files (a sealed segment's events by type and tag, for
    /// reads by query) checked, those without a segment included. A
    /// sealed segment without one is not damage: the store writes it the
    /// first time a query needs it.
    pub postings_files: usize,
    /// Snapshot files checked (files set aside earlier as damaged are not
    /// counted; each is a finding).
    pub snapshots: usize,
    /// Checkpoint files checked.
    pub checkpoints: usize,
    /// Bytes of an interrupted write after the last whole batch of the
    /// active segment: not damage (the next open clears it), reported for
    /// information.
    pub torn_tail_bytes: u64,
    /// Sealed segments whose index file is not there: the newest ones,
    /// whose files a running store writes in the background, or one whose
    /// file an interrupted scavenge removed before rewriting it. The next
    /// open writes them from their segments, so this is not damage.
    pub index_files_pending: usize,
    /// Snapshot files of a newer format version, left unchecked: a newer
    /// build wrote them and this build skips them, so they are not damage.
    pub snapshots_skipped_newer_format: usize,
    /// Checkpoint files of a newer format version, left unchecked.
    pub checkpoints_skipped_newer_format: usize,
    /// Segments a scavenge removed (counted among the sealed ones): none of
    /// their events was read any more, and only their header, seal and
    /// index file remain.
    pub removed_segments: usize,
}

impl VerifyReport {
    /// Whether nothing is wrong: no findings.
    #[must_use]
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

/// Where a file's bytes first differ from those expected of it (its length
/// or theirs, whichever is shorter, when one is a prefix of the other).
fn first_difference(found: &[u8], expected: &[u8]) -> u64 {
    let at = found
        .iter()
        .zip(expected)
        .position(|(a, b)| a != b)
        .unwrap_or(found.len().min(expected.len()));
    at as u64
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
///
/// # Errors
/// Only when the check itself cannot run: `dir` is not a readable store
/// directory. Damage found in the files is reported as findings.
pub fn verify_store(dir: &Path, progress: &mut dyn FnMut(&VerifyProgress)) -> Result<VerifyReport> {
    Verifier::run(&OsStorage, dir, progress)
}

/// [`verify_store`] on another file system back end, such as the
/// simulated disk of crash tests.
///
/// # Errors
/// As for [`verify_store`].
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
    /// Each stream's newest runs in the sealed segments read so far, as
    /// index file directories name them.
    runs: HashMap<Arc<str>, Vec<DirRun>>,
    /// Whether every segment so far was read whole, so that `runs` is
    /// complete.
    runs_known: bool,
    /// The keys that sealed events, by subject, with where each first did.
    sealed_keys: segments::SealedKeys,
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
            runs: HashMap::new(),
            runs_known: true,
            sealed_keys: HashMap::new(),
        };
        let inventory = verifier.take_inventory()?;
        verifier.meter.total = inventory.catalog.as_ref().map_or(0, |c| c.len() as u64)
            + inventory.segments.iter().map(|(_, size)| size).sum::<u64>()
            + inventory.index_files.values().sum::<u64>()
            + inventory.postings_files.values().sum::<u64>()
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
        verifier.check_keys(dir);

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
}
