//! Scavenging: reclaiming the bytes of events no stream keeps any more
//! (expired, truncated, deleted) and of events whose subject was forgotten,
//! one sealed segment at a time, while appends and reads go on.
//!
//! Each segment with such events is rewritten beside itself with redaction
//! markers in their place (see [`crate::log::rewrite_redacted`]), synced;
//! its index and postings files are removed (directory synced); the new file
//! is renamed over the old one, its index file written beside it unsynced,
//! the directory synced once for both, and the index switched to it. A
//! crash at any point leaves the old segment or the new one, and at most a
//! temporary file and missing or torn index files, which the next open
//! removes or rebuilds (an index file is checked whole before use). Readers holding the old
//! file's map keep reading it until they are done.

use super::Store;
use crate::error::{Error, Result};
use crate::index::recovery::SegmentIndexer;
use crate::index::rewritten::{index_rewritten, remove_derived_files};
use crate::log::{now_nanos, rewrite_redacted, Segment};
use crate::retention::{is_lifecycle_event, Retained};
use crate::telemetry::spans::enter_span;
use crate::types::RecordedEvent;
use std::cell::RefCell;
use std::collections::HashMap;
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::{Duration, Instant};

/// Keeps a scavenge's reads to a budget of bytes per second by pausing.
struct Pacer {
    budget: Option<u64>,
    started: Instant,
    bytes: u64,
    /// The store began closing during a pause.
    stopped: bool,
}

impl Pacer {
    fn new(budget: Option<u64>) -> Self {
        Pacer {
            budget: budget.map(|b| b.max(1)),
            started: Instant::now(),
            bytes: 0,
            stopped: false,
        }
    }

    /// Counts `bytes` read; pauses (through `pause`, which returns true if
    /// the store is closing) while ahead of the budget.
    fn read(&mut self, bytes: u64, pause: impl FnOnce(Duration) -> bool) {
        self.bytes = self.bytes.saturating_add(bytes);
        let Some(budget) = self.budget else {
            return;
        };
        if self.stopped {
            return;
        }
        // Whole seconds and the rest apart: no float, no overflow.
        let due = Duration::from_secs(self.bytes / budget).saturating_add(Duration::from_nanos(
            (self.bytes % budget).saturating_mul(1_000_000_000) / budget,
        ));
        if let Some(ahead) = due.checked_sub(self.started.elapsed()) {
            self.stopped = pause(ahead);
        }
    }
}

/// Which events a scavenge removes: those no read returns any more. The
/// rules are taken once, and each stream's last version looked up once.
pub(super) struct DeadEvents<'a> {
    store: &'a Store,
    retained: Retained,
    last_versions: RefCell<HashMap<String, Option<u64>>>,
    /// What the answers depend on, if only on lifecycle events and keys.
    stamp: Option<CleanStamp>,
}

/// What decides which events are dead, when nothing else does: the
/// lifecycle events taken into account and the keys removed. A segment
/// found with nothing dead under a stamp has nothing dead while the stamp
/// is the same, and is not read again.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct CleanStamp {
    rules_end: u64,
    key_removals: u64,
}

/// How many times a scavenge syncs the log to make the lifecycle events
/// its rules take in durable before it gives up for this segment (more
/// were written each time).
const DURABLE_RULES_TRIES: usize = 4;

impl<'a> DeadEvents<'a> {
    /// The rules a scavenge judges events by. With `durable`, only when
    /// every lifecycle event they take in is durable (the log is synced
    /// for that if need be): a delete or truncation a crash could still
    /// lose must not have its events' bytes reclaimed. If lifecycle events
    /// keep coming faster than that, nothing is dead this time.
    pub(super) fn new(store: &'a Store, durable: bool) -> Result<Self> {
        // Read before the keys are consulted: a key removed meanwhile
        // changes the stamp the next scavenge compares with.
        let key_removals = store.inner.keys.removals();
        let (rules, rules_end) = if durable {
            store.durable_retention_rules()?
        } else {
            Some(store.retention_rules_and_end()?)
        }
        .unwrap_or_default();
        let stamp = (!rules.changes_by_itself()).then_some(CleanStamp {
            rules_end,
            key_removals,
        });
        Ok(DeadEvents {
            store,
            retained: Retained::new(rules, now_nanos()),
            last_versions: RefCell::default(),
            stamp,
        })
    }

    /// Whether `event` is dead. Tombstones and metadata events never are:
    /// they are what says the others are.
    pub(super) fn is_dead(&self, event: &RecordedEvent) -> bool {
        self.is_gone(event) || self.retained.is_erased(event) || self.store.is_shredded(event)
    }

    /// Whether no read returns `event` (or its redaction marker) any more:
    /// its stream no longer keeps it. An erased event whose stream keeps
    /// it is not gone: its marker stays.
    pub(super) fn is_gone(&self, event: &RecordedEvent) -> bool {
        if is_lifecycle_event(event) {
            return false;
        }
        let last_version = |stream: &str| {
            if let Some(last) = self.last_versions.borrow().get(stream) {
                return *last;
            }
            // Counted from the durable events only: one written but not
            // yet synced may still be lost, and must not have made an older
            // event dead meanwhile.
            let durable = self.store.state().durable.load(Ordering::Acquire);
            let last = self.store.last_visible_version(stream, durable);
            self.last_versions
                .borrow_mut()
                .insert(stream.to_string(), last);
            last
        };
        !self.retained.keeps(event, last_version)
    }
}

/// Whether the segments directory holds changes not yet synced: each
/// segment's directory sync also covers the renames of the one before, so
/// a scavenge syncs the directory once per segment and once at the end.
#[derive(Debug, Default)]
pub(super) struct UnsyncedRenames {
    pub(super) pending: bool,
}

impl UnsyncedRenames {
    pub(super) fn sync(
        &mut self,
        storage: &dyn crate::storage::Storage,
        dir: &std::path::Path,
    ) -> Result<()> {
        if self.pending {
            storage
                .sync_dir(dir)
                .map_err(|e| Error::io(format!("syncing {}", dir.display()), e))?;
            self.pending = false;
        }
        Ok(())
    }
}

/// What [`Store::scavenge`] did.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
#[non_exhaustive]
pub struct ScavengeReport {
    /// Sealed segments looked at.
    pub segments_checked: u64,
    /// Of those, segments not read at all: an earlier scavenge found
    /// nothing to reclaim in them, and no lifecycle event or forgotten key
    /// since can have changed that (with a `max_count` or `max_age` rule
    /// on any stream, every segment is read).
    pub segments_unchanged: u64,
    /// Segments rewritten.
    pub segments_rewritten: u64,
    /// Events replaced by redaction markers.
    pub events_redacted: u64,
    /// Segments removed: none of their events was read any more, and only
    /// their header, seal and index file remain.
    pub segments_removed: u64,
    /// Positions of the removed segments (events, and redaction markers
    /// earlier scavenges left).
    pub events_removed: u64,
    /// Bytes the rewritten and removed segments' files took before.
    pub bytes_before: u64,
    /// Bytes they take now.
    pub bytes_after: u64,
    /// From [`Store::reclaimable`] only: dead events in the segment being
    /// written, which holds no live one. A scavenge seals that segment
    /// first and then rewrites it (its events then count in
    /// `events_redacted`); until then its bytes are not in `bytes_before`.
    pub active_dead_events: u64,
}

impl ScavengeReport {
    /// Bytes given back to the file system.
    #[must_use]
    pub fn bytes_reclaimed(&self) -> u64 {
        self.bytes_before.saturating_sub(self.bytes_after)
    }

    pub(super) fn count_removed(&mut self, removed: u64, before: u64, after: u64) {
        self.segments_removed += 1;
        self.events_removed += removed;
        self.bytes_before += before;
        self.bytes_after += after;
    }

    fn count(&mut self, redacted: u64, before: u64, after: u64) {
        self.segments_rewritten += 1;
        self.events_redacted += redacted;
        self.bytes_before += before;
        self.bytes_after += after;
    }
}

impl Store {
    /// Reclaims the disk space of the events that no read returns any more:
    /// those their stream's metadata expires or truncates, those of deleted
    /// streams, and those sealed for a forgotten subject. Every sealed
    /// segment holding any is rewritten with a redaction marker in place of
    /// each (the event's position, stream, version, id and timestamp stay;
    /// its type, tags, metadata and payload go). Tombstones and metadata
    /// events are kept. A sealed segment none of whose events any read
    /// returns any more (expired, truncated away or of deleted streams;
    /// erased events whose stream keeps them hold their markers), all of
    /// them older than the idempotency window, is removed instead: only its
    /// header, its seal and its index file remain, and its positions become
    /// a gap in the global log that every read goes past. Streams' versions
    /// go on where they were, and removed events never come back, whatever
    /// the stream's metadata later says. The segment
    /// being written is sealed first if every event in it is dead (and a
    /// new one begun), so that its space is reclaimed too without waiting
    /// for more appends to fill it; otherwise it is left alone.
    ///
    /// One segment at a time, beside appends and reads; a crash at any
    /// moment leaves every segment whole, old or new. A marker reads as an
    /// erased event of type `$redacted` if its stream's metadata is changed
    /// to keep it again.
    ///
    /// # Errors
    ///
    /// [`Error::ReadOnly`]; [`Error::Corrupted`] if a segment is damaged
    /// (it is left as it is); [`Error::Io`] if a file cannot be written.
    ///
    /// ```
    /// use evstore::{DeleteMode, EventData, ExpectedVersion, Options, Store};
    /// # let dir = tempfile::tempdir().unwrap();
    /// let store = Store::open(dir.path(), Options::default().segment_size(64 << 10)).unwrap();
    /// for i in 0..400u32 {
    ///     store.append(&format!("cart-{}", i % 4), ExpectedVersion::Any, &[EventData::new("Added", vec![7u8; 256])]).unwrap();
    /// }
    /// store.delete_stream("cart-0", ExpectedVersion::Any, DeleteMode::Hard).unwrap();
    /// let report = store.scavenge().unwrap();
    /// assert!(report.events_redacted > 0 && report.bytes_reclaimed() > 0);
    /// ```
    pub fn scavenge(&self) -> Result<ScavengeReport> {
        self.scavenge_with_progress(|_, _| {})
    }

    /// [`Store::scavenge`], calling `progress` after each segment with the
    /// report so far and the number of segments to look at.
    ///
    /// # Errors
    ///
    /// As [`Store::scavenge`].
    pub fn scavenge_with_progress(
        &self,
        progress: impl FnMut(&ScavengeReport, u64),
    ) -> Result<ScavengeReport> {
        self.refuse_if_read_only("scavenge")?;
        self.roll_if_all_dead()?;
        self.scavenge_segments(false, progress)
    }

    /// What [`Store::scavenge`] would do now, without writing anything:
    /// `bytes_after` is what the rewritten segments would take. Works on a
    /// read-only store too (`evstore info` reports it).
    ///
    /// # Errors
    ///
    /// [`Error::Corrupted`] or [`Error::Io`] if a segment cannot be read.
    pub fn reclaimable(&self) -> Result<ScavengeReport> {
        if let Some(follower) = &self.inner.follower {
            // A read-only store looks at the files as they are now, not as
            // they were before the writer's last scavenge.
            follower.lock().poll_and_look_for_replaced(self.state())?;
        }
        let mut report = self.scavenge_segments(true, |_, _| {})?;
        if let Some((_, dead)) = self.active_segment_all_dead()? {
            report.active_dead_events = dead;
        }
        Ok(report)
    }

    fn scavenge_segments(
        &self,
        dry_run: bool,
        mut progress: impl FnMut(&ScavengeReport, u64),
    ) -> Result<ScavengeReport> {
        let state = self.state();
        let _one_at_a_time = state.scavenging.lock();
        let segments = state.index.read().rewritable_segments();
        // The index-file job may still hold the newest of them open (its
        // index is installed before its postings file is written): wait
        // for it, so that what this replaces is closed when it returns. A
        // dry run replaces nothing and does not wait.
        if !dry_run {
            drop(state.index_job.lock());
        }
        let total = segments.len() as u64;
        let mut report = ScavengeReport::default();
        let mut pacer = Pacer::new(self.options().scavenge_bytes_per_second);
        let mut unsynced = UnsyncedRenames::default();
        let mut outcome = Ok(());
        if !dry_run {
            // Removals a crash or a full disk cut short, finished.
            let unfinished = state.index.read().removed_with_whole_index();
            for (ordinal, _, _) in unfinished {
                outcome = self.compact_removed_index(ordinal, &mut unsynced);
                if outcome.is_err() {
                    break;
                }
            }
        }
        let segments = if outcome.is_ok() {
            segments
        } else {
            Vec::new()
        };
        for rewritable in segments {
            let mut pace = |bytes| pacer.read(bytes, |pause| state.wait_unless_closing(pause));
            outcome = self.scavenge_segment(
                rewritable.ordinal,
                &rewritable.segment,
                dry_run,
                &mut report,
                &mut pace,
                &mut unsynced,
            );
            if outcome.is_err() {
                break;
            }
            report.segments_checked += 1;
            progress(&report, total);
            if pacer.stopped || state.is_closing() {
                // The store is closing: the rest waits for the next scavenge.
                break;
            }
        }
        // Whatever happened, what was renamed is made durable before this
        // returns.
        let synced = unsynced.sync(self.options().storage.as_ref(), &state.segments_dir);
        outcome.and(synced).map(|()| report)
    }

    /// [`Store::retention_rules_and_end`] once every lifecycle event they
    /// take in is durable, syncing the log for that if need be; `None` if
    /// more kept coming (see [`DeadEvents::new`]).
    fn durable_retention_rules(&self) -> Result<Option<(Arc<crate::retention::Rules>, u64)>> {
        for _ in 0..DURABLE_RULES_TRIES {
            let taken = self.retention_rules_and_end()?;
            let durable = self.state().durable.load(Ordering::Acquire);
            if self.newest_lifecycle().is_none_or(|p| p < durable) {
                return Ok(Some(taken));
            }
            self.flush()?;
        }
        Ok(None)
    }

    /// Stops postings files being written from `segment`'s records, which
    /// a scavenge is about to replace; the caller then removes its
    /// postings file, and none comes back from a query that was building
    /// one meanwhile.
    pub(super) fn retire_postings(&self, segment: &Segment) {
        let files = self.state().index.read().postings_files().cloned();
        match files {
            Some(files) => files.retire(segment),
            None => segment.mark_replaced(),
        }
    }

    fn scavenge_segment(
        &self,
        ordinal: u32,
        segment: &Arc<Segment>,
        dry_run: bool,
        report: &mut ScavengeReport,
        pace: &mut dyn FnMut(u64),
        unsynced: &mut UnsyncedRenames,
    ) -> Result<()> {
        enter_span!(
            _span = "evstore.scavenge_segment",
            base = segment.base_position(),
            dry_run = dry_run
        );
        let state = self.state();
        let storage = Arc::clone(&self.options().storage);
        let dir = state.segments_dir.as_path();
        let dead = DeadEvents::new(self, !dry_run)?;
        let base = segment.base_position();
        let clean = |stamp: Option<CleanStamp>| {
            if let Some(stamp) = stamp {
                state.clean_segments.lock().insert(base, stamp);
            }
        };
        if dead.stamp.is_some() && state.clean_segments.lock().get(&base) == dead.stamp.as_ref() {
            report.segments_unchanged += 1;
            return Ok(());
        }
        if self.remove_if_all_dead((ordinal, segment), &dead, dry_run, report, pace, unsynced)? {
            return Ok(());
        }
        // Records keep their positions, so the new file is indexed as it is
        // written, against the old segment's path and base.
        let mut indexer = SegmentIndexer::new(segment);
        // A segment all of whose events are gone but that could not be
        // removed yet (its events are still in the idempotency window) is
        // looked at again by the next scavenge.
        let mut all_gone = true;
        let redact = |event: &RecordedEvent| -> Result<bool> { Ok(dead.is_dead(event)) };
        let Some(rewritten) = rewrite_redacted(
            storage.as_ref(),
            dir,
            segment,
            dry_run,
            redact,
            pace,
            &mut |offset, event| {
                all_gone &= dead.is_gone(event);
                if dry_run {
                    return Ok(());
                }
                indexer.push(offset, event)
            },
        )?
        else {
            if !all_gone {
                clean(dead.stamp);
            }
            return Ok(());
        };
        let io_error = |what: &str, e| Error::io(format!("{what} {}", segment.path().display()), e);
        let before = segment
            .file()
            .len()
            .map_err(|e| io_error("reading the size of", e))?;
        if dry_run {
            report.count(rewritten.redacted, before, rewritten.len);
            return Ok(());
        }
        self.retire_postings(segment);
        // The index files describing the old offsets must be gone for good
        // before the new file takes the segment's name. The same directory
        // sync makes the previous segment's renames durable.
        remove_derived_files(storage.as_ref(), dir, base)
            .map_err(|e| io_error("removing the index files of", e))?;
        unsynced.pending = true;
        unsynced.sync(storage.as_ref(), dir)?;
        // Made durable by the next segment's directory sync, or the last
        // one of the scavenge: this rename and the new index file's.
        unsynced.pending = true;
        storage
            .rename(&rewritten.temp_path, segment.path())
            .map_err(|e| io_error("replacing", e))?;
        let replacement = Segment::open_replacement(storage.as_ref(), segment)?;
        let index_parts = {
            let index = state.index.read();
            (index.hash_kind(), index.repairs())
        };
        let persisted = index_rewritten(
            &storage,
            dir,
            Arc::clone(&replacement),
            rewritten.seal_offset,
            &indexer.finish(),
            index_parts,
        )?;
        let forgotten = {
            let mut index = state.index.write();
            if !index.install_rewritten(ordinal, segment, replacement, persisted) {
                return Err(Error::io(
                    format!("scavenging {}", segment.path().display()),
                    std::io::Error::other("the segment changed while it was rewritten"),
                ));
            }
            // What subscriptions read from the old file is read again:
            // decided before anything written after the install is seen.
            state.read_ahead.forget_all()
        };
        drop(forgotten);
        report.count(rewritten.redacted, before, rewritten.len);
        if !all_gone {
            clean(dead.stamp);
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_pacer_pauses_while_ahead_of_its_budget_and_stops_when_told() {
        let mut unlimited = Pacer::new(None);
        unlimited.read(u64::MAX, |_| panic!("no budget, no pause"));
        unlimited.read(u64::MAX, |_| panic!("no budget, no pause"));

        let mut paced = Pacer::new(Some(1));
        let mut asked = Vec::new();
        paced.read(1_000_000, |pause| {
            asked.push(pause);
            false
        });
        // A million bytes at one byte a second: about a million seconds.
        assert!(
            asked.len() == 1 && asked.first() > Some(&Duration::from_secs(999_000)),
            "{asked:?}"
        );
        assert!(!paced.stopped);
        paced.read(u64::MAX, |_| true);
        assert!(paced.stopped);
        paced.read(1, |_| panic!("stopped: no more pauses"));
    }
}
