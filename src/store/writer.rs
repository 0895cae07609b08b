//! The writer: what the group-commit leader runs over one group. It plans
//! the group's appends against the index, stages them in the active
//! segment, writes them with one write, publishes them to the index and the
//! written watermark, syncs once, records a durable mark that vouches for
//! the synced events, and only then answers the appenders.

use super::group_commit::{AppendRequest, Command, Reply, ReplyTo};
use super::state::StoreState;
use crate::commit::CommitResult;
use crate::error::{Error, Result};
use crate::index::deletions::Deletion;
use crate::index::matching::SealedPostings;
use crate::index::planning::{Decision, GroupPlanner, Intent};
use crate::index::SealedSegment;
use crate::log::record;
use crate::log::{ActiveSegment, Segment, StagedBatch, WriteFailure};
use crate::options::PanicPoint;
use crate::telemetry::spans::{enter_span, trace_event};
use crate::telemetry::Refusal;
use crate::types::{AppendResult, Durability};
use std::io;
use std::panic::{catch_unwind, AssertUnwindSafe};
use std::sync::atomic::Ordering;
use std::sync::mpsc::SyncSender;
use std::sync::Arc;
use std::thread::JoinHandle;

/// Appenders to answer once a group is done, with their results.
type Replies = Vec<(ReplyTo, Result<CommitResult>)>;

/// Where a flush or a roll is answered.
type FlushReply = SyncSender<Result<()>>;

/// What a group leaves to do once it is written: the callers to answer,
/// and the appends deferred to the next group.
pub struct GroupOutcome {
    /// Who to answer with what.
    pub answers: Answers,
    /// Appends for the next group (see [`Decision::Defer`]).
    pub deferred: Vec<AppendRequest>,
}

/// The callers of a written group, with their results.
pub struct Answers {
    /// Appenders and their results.
    replies: Replies,
    /// Flushes and their result.
    flushes: Vec<Reply<()>>,
    flush_result: Result<()>,
    /// Requests to seal the active segment, each with its own result.
    rolls: Vec<(FlushReply, Result<()>)>,
}

impl Answers {
    /// Wakes every caller of the group with its result. The writer is not
    /// needed for this, so a leader does it after letting the writer go.
    pub fn answer(self) {
        // A send fails only if the caller is gone: nobody to tell.
        for (reply, result) in self.replies {
            let _ = reply.send(result);
        }
        for f in self.flushes {
            let _ = f.send(self.flush_result.clone());
        }
        for (reply, result) in self.rolls {
            let _ = reply.send(result);
        }
    }
}

/// An append whose bytes are staged, with the index entries to publish
/// once they are written.
struct Staged {
    request: AppendRequest,
    result: CommitResult,
    batch: StagedBatch,
}

/// The write side of the log, used by whichever caller leads.
pub struct Writer {
    state: Arc<StoreState>,
    active: ActiveSegment,
    /// The thread writing the last sealed segment's index file.
    indexing: Option<JoinHandle<()>>,
    /// A sync advanced the durable watermark and the segment does not
    /// record it yet.
    mark_pending: bool,
    /// Commits written in the group being processed, and their bytes.
    group_writes: (u64, u64),
}

impl Writer {
    /// A writer continuing in `active`.
    pub fn new(state: Arc<StoreState>, active: ActiveSegment) -> Self {
        let mark_pending = active.next_position() > 0;
        Writer {
            state,
            active,
            indexing: None,
            mark_pending,
            group_writes: (0, 0),
        }
    }

    /// The segment being written.
    pub fn segment(&self) -> Arc<Segment> {
        Arc::clone(self.active.segment())
    }

    /// Bytes of the segment being written that were written so far.
    pub fn written_len(&self) -> u64 {
        self.active.written_len()
    }

    /// Notes that a sync outside the writer advanced the durable watermark.
    pub fn note_synced(&mut self) {
        self.mark_pending = true;
    }

    /// A clean close: everything synced and covered by a synced mark.
    pub fn shut_down(mut self) {
        if self.sync_if_behind().is_ok() {
            self.write_mark();
            let _ = self.sync_always();
        }
        self.active.finish();
        self.join_indexing();
    }

    /// Writes one group. Returns who to answer with what, once the writer
    /// is let go, and the appends deferred to the next group.
    #[expect(
        clippy::too_many_lines,
        reason = "one group's steps, in the order the module documentation gives them"
    )]
    pub fn process(&mut self, group: Vec<Command>) -> GroupOutcome {
        enter_span!(debug _span = "evstore.group_commit", commands = group.len());
        let commands = group.len() as u64;
        self.group_writes = (0, 0);
        let mut appends = Vec::with_capacity(group.len());
        let mut flushes = Vec::new();
        let mut rolls = Vec::new();
        for command in group {
            match command {
                Command::Append(r) => appends.push(r),
                Command::Flush(reply) => flushes.push(reply),
                Command::Roll { base, reply } => rolls.push((base, reply)),
            }
        }
        if let Some(error) = self.state.poisoned() {
            for _ in &appends {
                self.state.telemetry.refused(Refusal::Other);
            }
            return GroupOutcome {
                answers: Answers {
                    replies: appends
                        .into_iter()
                        .map(|r| (r.reply, Err(error.clone())))
                        .collect(),
                    flushes,
                    flush_result: Err(error.clone()),
                    rolls: rolls
                        .into_iter()
                        .map(|(_, reply)| (reply, Err(error.clone())))
                        .collect(),
                },
                deferred: Vec::new(),
            };
        }

        // Every reply waits for the end of the group, after its sync and
        // durable mark: a lone appender then always sees the same sequence
        // of file operations, which makes crash tests reproducible.
        // Sized for the group up front: grown push by push, these vectors
        // were reallocated several times in every group.
        let mut replies: Replies = Vec::with_capacity(appends.len());
        let mut sync_waiters = Vec::with_capacity(appends.len());
        let mut failure: Option<Error> = None;
        let mut staged: Vec<Staged> = Vec::with_capacity(appends.len());
        let mut deferred = Vec::new();

        let state = Arc::clone(&self.state);
        let index = state.index.read();
        // Only a condition after the first request can be failed by events
        // of the group; only then are their types and tags kept.
        let conditions_follow = appends.iter().skip(1).any(|r| r.condition.is_some());
        let group_ids = appends.iter().map(|r| r.ids.len()).sum();
        let mut planner = GroupPlanner::new(&index, conditions_follow, group_ids);
        let mut to_write = Vec::with_capacity(appends.len());
        for request in appends {
            let decision = planner.plan(Intent {
                parts: &request.parts,
                checks: &request.checks,
                condition: request.condition.as_ref(),
                ids: &request.ids,
                records: &request.records,
                ids_absent_below: request.ids_absent_below,
            });
            match decision {
                Decision::Write { first_versions } => to_write.push((request, first_versions)),
                // A durable retry of an append that is written but not yet
                // synced must wait for this group's sync like a new one.
                Decision::Answer(Ok(result))
                    if request.durability == Durability::Sync
                        && result.last_position >= state.durable.load(Ordering::Acquire) =>
                {
                    state.telemetry.retry_served();
                    sync_waiters.push((request.reply, result));
                }
                Decision::Answer(answer) => {
                    if answer.is_ok() {
                        state.telemetry.retry_served();
                    }
                    replies.push((request.reply, answer));
                }
                Decision::Defer => deferred.push(request),
            }
        }
        drop(planner);
        drop(index);

        for (request, first_versions) in to_write {
            if let Some(error) = &failure {
                replies.push((request.reply, Err(error.clone())));
                continue;
            }
            if !self.active.fits(request.encoded_len) {
                // Seal the active segment (its data synced with the seal)
                // and continue in the next one.
                if let Err(error) = self.roll_over(&mut staged, &mut replies) {
                    replies.push((request.reply, Err(error.clone())));
                    failure = Some(error);
                    continue;
                }
            }
            let durable_mark = self.state.durable.load(Ordering::Acquire);
            let runs: Vec<(usize, u64)> = request
                .parts
                .iter()
                .zip(&first_versions)
                .map(|(part, &first)| (part.count, first))
                .collect();
            let batch = self.active.stage(&request.records, &runs, durable_mark);
            let count = request.ids.len() as u64;
            let mut streams = Vec::with_capacity(runs.len());
            let mut position = batch.first_position;
            for &(n, first_version) in &runs {
                let n = n as u64;
                streams.push(AppendResult {
                    first_version,
                    last_version: first_version + n.saturating_sub(1),
                    first_position: position,
                    last_position: position + n.saturating_sub(1),
                });
                position += n;
            }
            let result = CommitResult {
                first_position: batch.first_position,
                last_position: batch.first_position + count.saturating_sub(1),
                streams,
            };
            staged.push(Staged {
                request,
                result,
                batch,
            });
        }

        // Durable commits count once a sync has made them so.
        let mut durable_written = Vec::with_capacity(staged.len());
        if !staged.is_empty() {
            let sync_follows = staged
                .iter()
                .any(|s| s.request.durability == Durability::Sync)
                || !flushes.is_empty();
            match self.write_staged(&staged, sync_follows) {
                Ok(()) => {
                    for s in staged.drain(..) {
                        match s.request.durability {
                            Durability::Buffered => {
                                replies.push((s.request.reply, Ok(s.result)));
                            }
                            Durability::Sync => {
                                durable_written.push(commit_size(&s.request));
                                sync_waiters.push((s.request.reply, s.result));
                            }
                        }
                    }
                }
                Err(error) => {
                    for s in staged.drain(..) {
                        replies.push((s.request.reply, Err(error.clone())));
                    }
                }
            }
        }

        let mut flush_outcome = Ok(());
        #[cfg(feature = "tracing")]
        let mut fsync_ns = 0u128;
        if !sync_waiters.is_empty() || !flushes.is_empty() || !rolls.is_empty() {
            #[cfg(feature = "tracing")]
            let sync_started = std::time::Instant::now();
            flush_outcome = self.sync_if_behind();
            #[cfg(feature = "tracing")]
            {
                fsync_ns = sync_started.elapsed().as_nanos();
            }
            // Before anyone hears that their events are durable, the segment
            // must say so: after a crash, damage among them is then reported
            // as corruption instead of being cut as a torn write.
            if flush_outcome.is_ok() {
                self.write_mark();
                for (events, bytes) in durable_written {
                    self.state
                        .telemetry
                        .committed(Durability::Sync, events, bytes);
                }
            }
            for (reply, result) in sync_waiters {
                replies.push((reply, flush_outcome.clone().map(|()| result)));
            }
        }
        for (_, result) in &replies {
            if let Err(error) = result {
                self.state.telemetry.refused(refusal(error));
            }
        }
        // Deferred appends belong to the next group.
        self.state
            .telemetry
            .group(commands - deferred.len() as u64, self.group_writes.1);
        trace_event!(
            "group written",
            appends = self.group_writes.0,
            bytes = self.group_writes.1,
            fsync_ns = fsync_ns,
            replies = replies.len()
        );
        // A failed roll (no room for the next segment) is its caller's
        // error alone.
        let rolls = rolls
            .into_iter()
            .map(|(base, reply)| {
                let rolled = flush_outcome
                    .clone()
                    .and_then(|()| self.roll_on_request(base, &mut replies));
                (reply, rolled)
            })
            .collect();
        GroupOutcome {
            answers: Answers {
                replies,
                flushes,
                flush_result: flush_outcome,
                rolls,
            },
            deferred,
        }
    }

    /// Writes what is staged, then publishes the staged appends to the index
    /// and the written watermark. On failure nothing is published.
    ///
    /// When a sync follows (`sync_follows`) and the write is large, the
    /// disk is asked to start on it right away: it then writes while this
    /// thread updates the index, instead of only once the sync is called.
    fn write_staged(&mut self, staged: &[Staged], sync_follows: bool) -> Result<()> {
        let before = self.active.written_len();
        match self.active.write_staged() {
            Ok(()) => {
                let written = self.active.written_len().saturating_sub(before);
                self.state.telemetry.wrote(written);
                if sync_follows && written >= EARLY_WRITEBACK_MIN {
                    self.active
                        .segment()
                        .file()
                        .start_writeback(before, written);
                }
            }
            Err(WriteFailure::NoSpace(e)) => {
                self.state.telemetry.write_failed();
                return Err(Error::no_space(
                    format!("writing to {}", self.active.segment().path().display()),
                    e,
                ));
            }
            Err(WriteFailure::Failed(e)) => {
                self.state.telemetry.write_failed();
                let context = format!("write to {}", self.active.segment().path().display());
                return Err(self.poison(context, e));
            }
        }
        let mut index = self.state.index.write();
        for s in staged {
            let mut at = 0;
            let mut position = s.batch.first_position;
            for part in &s.request.parts {
                let end = at + part.count;
                let (Some(offsets), Some(ids)) =
                    (s.batch.offsets.get(at..end), s.request.ids.get(at..end))
                else {
                    break;
                };
                index.push_events(&part.stream, position, offsets, ids);
                if let (Some(mode), Some(tombstone_version)) =
                    (part.deletes, index.last_version(&part.stream))
                {
                    let deletion = Deletion {
                        tombstone_version,
                        mode,
                    };
                    index.record_deletion(&part.stream, deletion);
                }
                position += part.count as u64;
                at = end;
            }
            // Consecutive events of one type with the same tags (most
            // batches are all alike) are decoded and listed once.
            let records = s.request.records.as_slice();
            let mut at = 0;
            let mut position = s.batch.first_position;
            while let Some((type_len, keys, padded)) = records.get(at..).and_then(record::key_bytes)
            {
                let run_start = at;
                let mut count = 1;
                at += padded;
                while let Some((next_len, next_keys, next_padded)) =
                    records.get(at..).and_then(record::key_bytes)
                {
                    if next_len != type_len || next_keys != keys {
                        break;
                    }
                    count += 1;
                    at += next_padded;
                }
                let Some((event_type, tags, _)) =
                    records.get(run_start..).and_then(record::unfinished_keys)
                else {
                    break;
                };
                index.push_keys_run(position, count, event_type, &tags);
                position += count;
            }
        }
        self.state
            .written
            .store(self.active.next_position(), Ordering::Release);
        drop(index);
        self.state.written_progress.advanced();
        for s in staged {
            let (events, bytes) = commit_size(&s.request);
            self.group_writes.0 += 1;
            self.group_writes.1 += bytes;
            // Buffered commits are acknowledged now; durable ones once
            // synced.
            if s.request.durability == Durability::Buffered {
                self.state
                    .telemetry
                    .committed(Durability::Buffered, events, bytes);
            }
        }
        Ok(())
    }

    fn poison(&self, context: String, cause: io::Error) -> Error {
        self.state.fail(Error::StorePoisoned {
            context,
            cause: Arc::new(cause),
        })
    }

    /// Makes everything written durable, unless it already is.
    fn sync_if_behind(&mut self) -> Result<()> {
        let state = &self.state;
        if state.poisoned().is_none()
            && state.durable.load(Ordering::Acquire) >= state.written.load(Ordering::Acquire)
        {
            return Ok(());
        }
        self.sync_always()
    }

    /// Syncs the active segment even when no event awaits it (a seal or a
    /// mark does), and advances the durable watermark.
    fn sync_always(&mut self) -> Result<()> {
        self.state.check_poison()?;
        let target = self.state.written.load(Ordering::Acquire);
        let sync_target = self.state.telemetry.sync_target();
        let started = std::time::Instant::now();
        if let Err(e) = self.active.sync() {
            self.state.telemetry.write_failed();
            let context = format!("fdatasync of {}", self.active.segment().path().display());
            return Err(self.poison(context, e));
        }
        self.state.telemetry.synced(sync_target, started.elapsed());
        self.state.durable.fetch_max(target, Ordering::AcqRel);
        self.state.durable_progress.advanced();
        self.mark_pending = true;
        if let Some(window) = self.state.options.page_cache_window {
            self.active
                .segment()
                .release_cache_behind(self.active.written_len(), window);
        }
        Ok(())
    }

    /// Records the durable watermark in the segment, if a sync advanced it.
    pub fn write_mark(&mut self) {
        if !self.mark_pending || self.state.poisoned().is_some() {
            return;
        }
        let durable = self.state.durable.load(Ordering::Acquire);
        let before = self.active.written_len();
        let written = self.active.write_mark(durable);
        self.state
            .telemetry
            .wrote(self.active.written_len().saturating_sub(before));
        match written {
            Ok(true) => self.mark_pending = false,
            Ok(false) => {}
            Err(e) => {
                self.state.telemetry.write_failed();
                let context = format!("write to {}", self.active.segment().path().display());
                let _ = self.poison(context, e);
            }
        }
    }

    /// Writes what is staged plus a seal, syncs it and continues in the
    /// next segment. The staged appends are acknowledged (the seal's sync
    /// made them durable, whatever their mode).
    fn roll_over(&mut self, staged: &mut Vec<Staged>, replies: &mut Replies) -> Result<()> {
        enter_span!(
            _span = "evstore.rollover",
            sealed_base = self.active.segment().base_position()
        );
        let started = std::time::Instant::now();
        let prepared = self
            .active
            .take_prepared()
            .map_err(|e| Error::io_or_no_space("preallocating the next segment", e))?;
        let waiting = started.elapsed();
        let durable_mark = self.state.durable.load(Ordering::Acquire);
        let seal_offset = self.active.stage_seal(durable_mark);
        let written = self.write_staged(staged, true);
        // Always synced: the seal must be durable before the next segment
        // takes events, even when no event of this group precedes it.
        let outcome = written.and_then(|()| self.sync_always());
        // If the write or the sync failed, none of them may be acknowledged.
        for s in staged.drain(..) {
            if outcome.is_ok() && s.request.durability == Durability::Sync {
                let (events, bytes) = commit_size(&s.request);
                self.state
                    .telemetry
                    .committed(Durability::Sync, events, bytes);
            }
            replies.push((s.request.reply, outcome.clone().map(|()| s.result)));
        }
        outcome?;
        let storage = Arc::clone(&self.state.options.storage);
        let segments_dir = self.state.segments_dir.clone();
        let segment = self
            .active
            .install_next(prepared, storage.as_ref(), &segments_dir)
            .map_err(|e| self.poison("install of a new segment".into(), e))?;
        let sealed = {
            let mut index = self.state.index.write();
            let sealed = index.seal_active();
            let active = index.new_active(sealed.as_ref().map_or(0, |s| s.index.len()));
            index.push_segment(segment, active);
            sealed
        };
        if let Some(sealed) = sealed {
            self.write_index_file(sealed, seal_offset);
        }
        let elapsed = started.elapsed();
        self.state.telemetry.rolled_over(elapsed, waiting);
        trace_event!(
            "rolled over",
            elapsed_ns = elapsed.as_nanos(),
            preallocation_wait_ns = waiting.as_nanos()
        );
        Ok(())
    }

    /// Seals the active segment if it is still the one at `base` and holds
    /// an event, and waits for its index file: once this returns, a
    /// scavenge can rewrite it.
    fn roll_on_request(&mut self, base: u64, replies: &mut Replies) -> Result<()> {
        let segment = self.active.segment();
        if segment.base_position() != base || self.active.next_position() == base {
            return Ok(());
        }
        self.roll_over(&mut Vec::new(), replies)?;
        self.join_indexing();
        Ok(())
    }

    fn join_indexing(&mut self) {
        if let Some(handle) = self.indexing.take() {
            if handle.join().is_err() {
                // The job catches its own panics; this is a panic while
                // reporting one.
                self.state.fail(Error::StorePoisoned {
                    context: "the index-file thread".into(),
                    cause: Arc::new(io::Error::other("it panicked")),
                });
            }
        }
    }

    /// Writes the index file of a segment just sealed, and the catalogue,
    /// then serves the segment's index from that file. In the background
    /// unless the options say otherwise; one at a time, in order. A failure
    /// leaves the index in memory and the next open rebuilds the file; a
    /// panic poisons the store.
    fn write_index_file(&mut self, sealed: SealedSegment, seal_offset: u64) {
        self.join_indexing();
        let state = Arc::clone(&self.state);
        let job = move || {
            let busy = state.index_job.lock();
            let outcome = catch_unwind(AssertUnwindSafe(|| {
                enter_span!(_span = "evstore.index_file", segment = sealed.ordinal);
                state.injected_panic(PanicPoint::IndexWriter);
                let (hash_kind, repairs) = {
                    let index = state.index.read();
                    (index.hash_kind(), index.repairs())
                };
                let storage = Arc::clone(&state.options.storage);
                match crate::index::recovery::persist_sealed(
                    &storage,
                    &state.segments_dir,
                    &sealed,
                    seal_offset,
                    hash_kind,
                    repairs,
                ) {
                    Ok(persisted) => {
                        state.telemetry.index_file_written();
                        state
                            .index
                            .write()
                            .install_persisted(sealed.ordinal, persisted);
                    }
                    Err(_) => {
                        state.index_write_failures.fetch_add(1, Ordering::Relaxed);
                    }
                }
                persist_postings(&state, &sealed);
            }));
            // The segment is let go before a scavenge waiting on `busy`
            // may replace it.
            drop(sealed);
            drop(busy);
            if let Err(payload) = outcome {
                state.fail_with_panic("the index-file thread", payload.as_ref());
            }
        };
        if self.state.options.writes_indexes_in_background() {
            match std::thread::Builder::new()
                .name("evstore-index".into())
                .spawn(job)
            {
                Ok(handle) => self.indexing = Some(handle),
                Err(_) => {
                    self.state
                        .index_write_failures
                        .fetch_add(1, Ordering::Relaxed);
                }
            }
        } else {
            job();
        }
    }
}

/// Writes the postings file of a segment just sealed and serves its
/// postings from it, so they leave the heap. A failure leaves them in
/// memory; the next open reads them from the records and writes the file.
fn persist_postings(state: &StoreState, sealed: &SealedSegment) {
    let SealedPostings::Mem(postings) = sealed.postings.as_ref() else {
        return;
    };
    let files = state.index.read().postings_files().cloned();
    let Some(files) = files else {
        return;
    };
    // A scavenge may already have replaced the segment (its index file was
    // installed before this): then its postings are not written.
    match files.persist_unless_replaced(&sealed.segment, postings) {
        Some(file) => *sealed.postings_cell.write() = Some(Arc::new(SealedPostings::File(file))),
        None if sealed.segment.is_replaced() => {}
        None => {
            state.index_write_failures.fetch_add(1, Ordering::Relaxed);
        }
    }
}

/// The smallest write of a durable group whose writeback starts before
/// the index is updated. Below it, the index work takes too little time for
/// the overlap to pay for the extra system call.
const EARLY_WRITEBACK_MIN: u64 = 64 * 1024;

/// How a refused or failed commit counts in the metrics.
fn refusal(error: &Error) -> Refusal {
    match error {
        Error::WrongExpectedVersion { .. } => Refusal::WrongExpectedVersion,
        Error::AppendConditionFailed { .. } => Refusal::ConditionFailed,
        _ => Refusal::Other,
    }
}

/// A commit's events and its bytes in the log.
fn commit_size(request: &AppendRequest) -> (u64, u64) {
    (request.ids.len() as u64, request.encoded_len as u64)
}
