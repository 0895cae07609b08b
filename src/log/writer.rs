//! Group commit. Appenders queue their encoded batches; one of them leads:
//! it takes every pending append, checks expected versions in order, writes
//! all of them with one positional write per segment, issues one `fdatasync`
//! for the whole group, then wakes every appender with its own result. A
//! lone appender leads its own group, so it never waits on another thread.

use super::record::{
    align8, finish_record, record_ids, record_len, BatchHeader, BatchKind, BATCH_HEADER_LEN,
    SEGMENT_HEADER_LEN,
};
use super::segment::{now_nanos, PreparedSegment, Segment};
use crate::error::{Error, Result};
use crate::index::{Index, SealedSegment};
use crate::options::Options;
use crate::types::{AppendResult, Durability, ExpectedVersion};
use parking_lot::{Condvar, Mutex, RwLock};
use std::collections::{HashMap, HashSet, VecDeque};
use std::io;
use std::path::PathBuf;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::mpsc::{Receiver, SyncSender};
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::Instant;

/// Encoded size of an append of `events` to `stream`: one batch header plus
/// every padded record.
pub fn encoded_batch_len(stream: &str, events: &[crate::types::EventData]) -> usize {
    BATCH_HEADER_LEN
        + events
            .iter()
            .map(|e| {
                align8(record_len(
                    stream.len(),
                    e.event_type.len(),
                    e.metadata.len(),
                    e.payload.len(),
                ))
            })
            .sum::<usize>()
}

/// The most bytes one append may encode to in a segment of `capacity`.
pub fn max_batch_len(capacity: u64) -> usize {
    (capacity as usize).saturating_sub(SEGMENT_HEADER_LEN + TAIL_RESERVE as usize)
}

/// Room kept at the end of every segment for a durable mark and the seal.
const TAIL_RESERVE: u64 = 2 * BATCH_HEADER_LEN as u64;

/// One append waiting for the writer.
pub struct AppendRequest {
    /// Stream name, already validated.
    pub stream: String,
    /// The optimistic-concurrency check.
    pub expected: ExpectedVersion,
    /// The events as unfinished records (see
    /// [`super::record::encode_unfinished_record`]), already validated.
    pub records: Vec<u8>,
    /// How many records `records` holds.
    pub count: usize,
    /// When to acknowledge.
    pub durability: Durability,
    /// [`encoded_batch_len`] of the append.
    pub encoded_len: usize,
    /// Segments below this ordinal are sealed and were searched for the
    /// append's ids, in vain (see [`Index::sealed_without_ids`]).
    pub ids_absent_below: u32,
    /// Where the result goes.
    pub reply: SyncSender<Wake<Result<AppendResult>>>,
}

/// Groups one leader writes before handing over to a waiting caller.
const LEADER_ROUNDS: u32 = 4;

/// Appenders to answer once a group is done, with their results.
type Replies = Vec<(SyncSender<Wake<Result<AppendResult>>>, Result<AppendResult>)>;

/// What a waiting caller is woken with.
pub enum Wake<T> {
    /// Its command is done.
    Done(T),
    /// It is the next leader: it must run [`Shared::lead`].
    Lead,
}

/// Work for the writer.
pub enum Command {
    /// Append a batch.
    Append(AppendRequest),
    /// Make everything written so far durable.
    Flush(SyncSender<Wake<Result<()>>>),
}

impl Command {
    fn bytes(&self) -> usize {
        match self {
            Command::Append(r) => r.encoded_len,
            Command::Flush(_) => 0,
        }
    }

    fn wake_to_lead(&self) {
        // A send fails only if the caller is gone, which it cannot be while
        // its command is queued.
        match self {
            Command::Append(r) => {
                let _ = r.reply.send(Wake::Lead);
            }
            Command::Flush(reply) => {
                let _ = reply.send(Wake::Lead);
            }
        }
    }
}

#[derive(Default)]
struct Queue {
    commands: VecDeque<Command>,
    bytes: usize,
    closed: bool,
    /// A caller is leading a group commit, or has been woken to lead one.
    /// Whenever commands are queued, this is set: someone will take them.
    leader_active: bool,
}

/// State shared by the store handles, the readers and whichever caller is
/// leading the group commit.
pub struct Shared {
    /// The `segments/` directory.
    pub segments_dir: PathBuf,
    /// The options the store was opened with.
    pub options: Options,
    /// Both indexes.
    pub index: RwLock<Index>,
    /// Every position below this is written and indexed.
    pub written: AtomicU64,
    /// Every position below this is durable.
    pub durable: AtomicU64,
    /// Index files that could not be written after a seal.
    pub index_write_failures: AtomicU64,
    /// Wakes subscribers that follow `written` when it moves.
    pub written_progress: super::progress::Progress,
    /// Wakes subscribers that follow `durable` when it moves.
    pub durable_progress: super::progress::Progress,
    queue: Mutex<Queue>,
    queue_changed: Condvar,
    queue_not_full: Condvar,
    poison: Mutex<Option<Error>>,
    writer: Mutex<Option<Writer>>,
    flusher_stop: Mutex<bool>,
    flusher_wake: Condvar,
}

/// Clears the way if a leader panics, so that nobody waits for a group
/// that will never be written.
struct LeaderGuard<'a>(&'a Shared);

impl Drop for LeaderGuard<'_> {
    fn drop(&mut self) {
        if std::thread::panicking() {
            let mut queue = self.0.queue.lock();
            queue.closed = true;
            queue.leader_active = false;
            // Dropping the commands drops their reply senders: each waiter's
            // receive fails, which it reports as `Error::Closed`.
            queue.commands.clear();
            queue.bytes = 0;
            self.0.queue_changed.notify_all();
            self.0.queue_not_full.notify_all();
        }
    }
}

impl Shared {
    /// Shared state over a recovered index whose positions below
    /// `next_position` are all durable. [`Shared::install_writer`] must
    /// follow before the first command.
    pub fn new(segments_dir: PathBuf, options: Options, index: Index, next_position: u64) -> Self {
        Shared {
            segments_dir,
            options,
            index: RwLock::new(index),
            written: AtomicU64::new(next_position),
            durable: AtomicU64::new(next_position),
            index_write_failures: AtomicU64::new(0),
            written_progress: Default::default(),
            durable_progress: Default::default(),
            queue: Mutex::new(Queue::default()),
            queue_changed: Condvar::new(),
            queue_not_full: Condvar::new(),
            poison: Mutex::new(None),
            writer: Mutex::new(None),
            flusher_stop: Mutex::new(false),
            flusher_wake: Condvar::new(),
        }
    }

    /// Hands the writer state over; from now on leaders use it.
    pub fn install_writer(&self, writer: Writer) {
        *self.writer.lock() = Some(writer);
    }

    /// The error every append gets once writing failed unrecoverably.
    pub fn poisoned(&self) -> Option<Error> {
        self.poison.lock().clone()
    }

    /// Records that the log can no longer move (the first error wins, and
    /// is returned), and wakes every subscriber: once caught up, each gets
    /// the error instead of waiting for events that will never come.
    pub fn fail(&self, error: Error) -> Error {
        let error = self.poison.lock().get_or_insert(error).clone();
        self.written_progress.close();
        self.durable_progress.close();
        error
    }

    /// Queues `command` and waits for its result. If no group commit is
    /// under way, the caller leads one itself (no hand-off to another thread
    /// when appends do not overlap); otherwise it waits, and is either given
    /// its result or woken to lead the next group.
    pub fn call<T>(
        &self,
        command: Command,
        bytes: usize,
        result: Receiver<Wake<Result<T>>>,
    ) -> Result<T> {
        if self.submit(command, bytes)? {
            self.lead();
        }
        loop {
            match result.recv() {
                Ok(Wake::Done(r)) => return r,
                Ok(Wake::Lead) => self.lead(),
                Err(_) => return Err(Error::Closed),
            }
        }
    }

    /// Queues `command`, waiting while the queue holds more than
    /// `max_queue_bytes` (a single larger command still goes alone).
    /// Returns whether the caller must lead.
    fn submit(&self, command: Command, bytes: usize) -> Result<bool> {
        let mut queue = self.queue.lock();
        loop {
            if queue.closed {
                return Err(Error::Closed);
            }
            if queue.bytes == 0 || queue.bytes + bytes <= self.options.max_queue_bytes {
                break;
            }
            self.queue_not_full.wait(&mut queue);
        }
        queue.bytes += bytes;
        queue.commands.push_back(command);
        self.queue_changed.notify_all();
        if queue.leader_active {
            return Ok(false);
        }
        queue.leader_active = true;
        Ok(true)
    }

    /// Takes one group off the queue, writes it (one write per segment, one
    /// sync), answers everyone in it, then hands leadership to the first
    /// caller still queued, if any.
    pub fn lead(&self) {
        let guard = LeaderGuard(self);
        for round in 1.. {
            let group = self.take_group();
            {
                let mut writer = self.writer.lock();
                match writer.as_mut() {
                    Some(w) => w.process(group),
                    None => drop(group),
                }
            }
            let mut queue = self.queue.lock();
            match queue.commands.front() {
                None => {
                    queue.leader_active = false;
                    self.queue_changed.notify_all();
                    break;
                }
                // A thread that is already running writes the next group
                // sooner than one that must first be woken; but its own
                // caller waits meanwhile, so it hands over after a few.
                Some(_) if round < LEADER_ROUNDS => {}
                Some(next) => {
                    next.wake_to_lead();
                    break;
                }
            }
        }
        drop(guard);
    }

    /// Moves up to `max_batch_bytes` of queued commands (at least one) into a
    /// group, after lingering for more if the options ask for it.
    fn take_group(&self) -> Vec<Command> {
        let options = &self.options;
        let mut queue = self.queue.lock();
        if let Some(linger) = options.max_linger {
            let deadline = Instant::now().checked_add(linger);
            while queue.bytes < options.max_batch_bytes && !queue.closed {
                let Some(deadline) = deadline else {
                    self.queue_changed.wait(&mut queue);
                    continue;
                };
                if self
                    .queue_changed
                    .wait_until(&mut queue, deadline)
                    .timed_out()
                {
                    break;
                }
            }
        }
        let mut group = Vec::new();
        let mut taken = 0usize;
        while let Some(command) = queue.commands.front() {
            let bytes = command.bytes();
            if taken > 0 && taken + bytes > options.max_batch_bytes {
                break;
            }
            taken += bytes;
            if let Some(command) = queue.commands.pop_front() {
                group.push(command);
            }
        }
        queue.bytes -= taken;
        drop(queue);
        self.queue_not_full.notify_all();
        group
    }

    /// Puts appends back at the head of the queue, in order.
    fn requeue(&self, appends: Vec<AppendRequest>) {
        if appends.is_empty() {
            return;
        }
        let mut queue = self.queue.lock();
        for request in appends.into_iter().rev() {
            queue.bytes += request.encoded_len;
            queue.commands.push_front(Command::Append(request));
        }
    }

    /// Whether no command is waiting.
    pub fn queue_is_empty(&self) -> bool {
        self.queue.lock().commands.is_empty()
    }

    /// Stops taking commands, waits for the queued ones to be written, then
    /// syncs and leaves a synced durable mark. Idempotent.
    pub fn close(&self) {
        {
            let mut queue = self.queue.lock();
            queue.closed = true;
            self.queue_not_full.notify_all();
            while queue.leader_active || !queue.commands.is_empty() {
                self.queue_changed.wait(&mut queue);
            }
        }
        *self.flusher_stop.lock() = true;
        self.flusher_wake.notify_all();
        let writer = self.writer.lock().take();
        if let Some(writer) = writer {
            writer.shut_down();
        }
        self.written_progress.close();
        self.durable_progress.close();
    }

    /// Syncs the active segment without holding the writer, so appends go
    /// on while the disk works; then records the new durable point.
    fn background_flush(&self) {
        let (segment, target) = {
            let writer = self.writer.lock();
            let Some(w) = writer.as_ref() else { return };
            (Arc::clone(&w.active), self.written.load(Ordering::Acquire))
        };
        if self.poisoned().is_some() {
            return;
        }
        // Everything below `target` is in this segment or in earlier ones,
        // which were synced when they were sealed.
        if let Err(e) = segment.file().sync_data() {
            let error = Error::StorePoisoned {
                context: format!("fdatasync of {}", segment.path().display()),
                cause: Arc::new(e),
            };
            self.fail(error);
            return;
        }
        self.durable.fetch_max(target, Ordering::AcqRel);
        self.durable_progress.advanced();
        if let Some(w) = self.writer.lock().as_mut() {
            w.mark_pending = true;
            if self.queue_is_empty() {
                w.write_mark();
            }
        }
    }

    /// Waits `interval` or until the store closes; returns whether it
    /// closed. Paces a read-only store's polling thread.
    pub fn wait_unless_closed(&self, interval: std::time::Duration) -> bool {
        let mut stop = self.flusher_stop.lock();
        if !*stop {
            self.flusher_wake.wait_for(&mut stop, interval);
        }
        *stop
    }

    /// The background flush of buffered appends: every flush interval, makes
    /// what was written durable. Runs on its own thread until close.
    pub fn run_flusher(&self) {
        loop {
            {
                let mut stop = self.flusher_stop.lock();
                if *stop {
                    return;
                }
                self.flusher_wake
                    .wait_for(&mut stop, self.options.flush_interval);
                if *stop {
                    return;
                }
            }
            if self.durable.load(Ordering::Acquire) < self.written.load(Ordering::Acquire) {
                self.background_flush();
            }
        }
    }
}

/// The state of the log's write side, used by whichever caller leads.
pub struct Writer {
    shared: Arc<Shared>,
    active: Arc<Segment>,
    write_offset: u64,
    next_position: u64,
    prepared: Option<JoinHandle<io::Result<PreparedSegment>>>,
    indexing: Option<JoinHandle<()>>,
    buf: Vec<u8>,
    last_sync: Instant,
    /// A sync advanced the durable watermark and no batch written since
    /// records it yet.
    mark_pending: bool,
    /// The highest durable watermark recorded in the active segment by a
    /// batch header or mark: a mark that would not raise it is useless, and
    /// must not take the room kept for one that would.
    recorded_durable: u64,
}

/// What planning decided for one append.
enum Plan {
    /// Write it.
    Write(Planned),
    /// Answer it without writing (wrong version, retry, conflict).
    Answer(AppendRequest, Result<AppendResult>),
    /// Put it back in the queue for the next group.
    Defer(AppendRequest),
}

/// A planned append inside a group.
struct Planned {
    request: AppendRequest,
    first_version: u64,
}

/// An append whose bytes are in the write buffer, with the index entries to
/// publish once the buffer is written.
struct Staged {
    request: AppendRequest,
    result: AppendResult,
    offsets: Vec<u32>,
    /// The durable watermark its batch header records.
    durable_mark: u64,
}

impl Writer {
    /// A writer continuing `active` at `write_offset`.
    pub fn new(
        shared: Arc<Shared>,
        active: Arc<Segment>,
        write_offset: u64,
        next_position: u64,
        recorded_durable: u64,
    ) -> Self {
        let mut writer = Writer {
            shared,
            active,
            write_offset,
            next_position,
            prepared: None,
            indexing: None,
            buf: Vec::new(),
            last_sync: Instant::now(),
            mark_pending: next_position > 0,
            recorded_durable,
        };
        writer.prepare_next_segment();
        writer
    }

    /// Starts preallocating the next segment in the background.
    fn prepare_next_segment(&mut self) {
        if !self.shared.options.background_preallocation {
            return;
        }
        let storage = Arc::clone(&self.shared.options.storage);
        let dir = self.shared.segments_dir.clone();
        let capacity = self.shared.options.segment_size;
        self.prepared = std::thread::Builder::new()
            .name("evstore-prealloc".into())
            .spawn(move || PreparedSegment::create(storage.as_ref(), &dir, capacity))
            .ok();
    }

    /// A clean close: everything synced and covered by a synced mark.
    fn shut_down(mut self) {
        if self.sync_active().is_ok() {
            self.write_mark();
            let _ = self.sync_active_always();
        }
        if let Some(handle) = self.prepared.take() {
            let _ = handle.join();
        }
        if let Some(handle) = self.indexing.take() {
            let _ = handle.join();
        }
    }

    /// Writes the index file of a segment just sealed, and the catalogue,
    /// then serves the segment's index from that file. In the background
    /// unless the options say otherwise; one at a time, in order. A failure
    /// leaves the index in memory and the next open rebuilds the file.
    fn write_index_file(&mut self, sealed: SealedSegment, seal_offset: u64) {
        if let Some(handle) = self.indexing.take() {
            let _ = handle.join();
        }
        let shared = Arc::clone(&self.shared);
        let job = move || {
            let (hash_kind, repairs) = {
                let index = shared.index.read();
                (index.hash_kind(), index.repairs())
            };
            let storage = Arc::clone(&shared.options.storage);
            match super::persist_sealed(
                &storage,
                &shared.segments_dir,
                &sealed,
                seal_offset,
                hash_kind,
                repairs,
            ) {
                Ok(persisted) => shared
                    .index
                    .write()
                    .install_persisted(sealed.ordinal, persisted),
                Err(_) => {
                    shared.index_write_failures.fetch_add(1, Ordering::Relaxed);
                }
            }
        };
        if self.shared.options.background_index_writes {
            match std::thread::Builder::new()
                .name("evstore-index".into())
                .spawn(job)
            {
                Ok(handle) => self.indexing = Some(handle),
                Err(_) => {
                    self.shared
                        .index_write_failures
                        .fetch_add(1, Ordering::Relaxed);
                }
            }
        } else {
            job();
        }
    }

    fn process(&mut self, mut group: Vec<Command>) {
        let mut appends = Vec::with_capacity(group.len());
        let mut flushes = Vec::new();
        for command in group.drain(..) {
            match command {
                Command::Append(r) => appends.push(r),
                Command::Flush(reply) => flushes.push(reply),
            }
        }
        if let Some(error) = self.shared.poisoned() {
            for r in appends {
                let _ = r.reply.send(Wake::Done(Err(error.clone())));
            }
            for f in flushes {
                let _ = f.send(Wake::Done(Err(error.clone())));
            }
            return;
        }

        let planned = self.plan(appends);
        // Every reply waits for the end of the group, after its sync and
        // durable mark: a lone appender then always sees the same sequence of
        // file operations, which makes crash tests reproducible.
        let mut replies: Replies = Vec::new();
        let mut sync_waiters = Vec::new();
        let mut failure: Option<Error> = None;
        let mut staged: Vec<Staged> = Vec::new();
        let mut chunk_start = self.write_offset;
        self.buf.clear();

        let mut deferred = Vec::new();
        for plan in planned {
            let plan = match plan {
                Plan::Write(p) => p,
                // A durable retry of an append that is written but not yet
                // synced must wait for this group's sync like a new one.
                Plan::Answer(request, Ok(result))
                    if request.durability == Durability::Sync
                        && result.last_position >= self.shared.durable.load(Ordering::Acquire) =>
                {
                    sync_waiters.push((request.reply, result));
                    continue;
                }
                Plan::Answer(request, answer) => {
                    replies.push((request.reply, answer));
                    continue;
                }
                Plan::Defer(request) => {
                    deferred.push(request);
                    continue;
                }
            };
            if let Some(error) = &failure {
                replies.push((plan.request.reply, Err(error.clone())));
                continue;
            }
            let batch_len = plan.request.encoded_len as u64;
            let used = chunk_start + self.buf.len() as u64;
            if used + batch_len + TAIL_RESERVE > self.active.capacity() {
                // Seal the active segment (its data synced with the seal) and
                // continue in the next one.
                match self.roll_over(chunk_start, self.next_position, &mut staged, &mut replies) {
                    Ok(()) => chunk_start = self.write_offset,
                    Err(error) => {
                        replies.push((plan.request.reply, Err(error.clone())));
                        failure = Some(error);
                        continue;
                    }
                }
            }
            staged.push(self.encode(chunk_start, plan));
        }

        if !staged.is_empty() {
            match self.write_chunk(chunk_start, &mut staged) {
                Ok(()) => {
                    for s in staged.drain(..) {
                        match s.request.durability {
                            Durability::Buffered => replies.push((s.request.reply, Ok(s.result))),
                            Durability::Sync => sync_waiters.push((s.request.reply, s.result)),
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
        if !sync_waiters.is_empty() || !flushes.is_empty() {
            flush_outcome = self.sync_active();
            for (reply, result) in sync_waiters {
                replies.push((reply, flush_outcome.clone().map(|()| result)));
            }
        }
        if self.mark_pending && self.shared.queue_is_empty() {
            self.write_mark();
        }
        self.shared.requeue(deferred);
        for (reply, result) in replies {
            let _ = reply.send(Wake::Done(result));
        }
        for f in flushes {
            let _ = f.send(Wake::Done(flush_outcome.clone()));
        }
    }

    /// Checks every append's expected version against the index plus the
    /// appends before it in the group, and assigns versions and positions.
    fn plan(&self, appends: Vec<AppendRequest>) -> Vec<Plan> {
        let index = self.shared.index.read();
        let mut last_versions: HashMap<String, Option<u64>> = HashMap::new();
        let mut group_ids: HashSet<u128> = HashSet::new();
        let mut out = Vec::with_capacity(appends.len());
        for request in appends {
            let ids = record_ids(&request.records, request.count);
            if ids.iter().any(|id| group_ids.contains(id)) {
                // A retry racing its original within one group: answer it in
                // the next group, once the original is written and indexed.
                out.push(Plan::Defer(request));
                continue;
            }
            let known: Result<Vec<Option<u64>>> = ids
                .iter()
                .map(|&id| index.find_id_above(id, request.ids_absent_below))
                .collect();
            let known = match known {
                Ok(known) => known,
                Err(error) => {
                    out.push(Plan::Answer(request, Err(error)));
                    continue;
                }
            };
            if known.iter().any(Option::is_some) {
                let answer = self.resolve_retry(&index, &request, &known);
                out.push(Plan::Answer(request, answer));
                continue;
            }
            let actual = match last_versions.get(&request.stream) {
                Some(v) => *v,
                None => index.last_version(&request.stream),
            };
            if !request.expected.matches(actual) {
                let error = Error::WrongExpectedVersion {
                    stream: request.stream.clone(),
                    expected: request.expected,
                    actual,
                };
                out.push(Plan::Answer(request, Err(error)));
                continue;
            }
            group_ids.extend(ids);
            let first_version = actual.map_or(0, |v| v + 1);
            let count = request.count as u64;
            last_versions.insert(request.stream.clone(), Some(first_version + count - 1));
            out.push(Plan::Write(Planned {
                request,
                first_version,
            }));
        }
        out
    }

    /// An append some of whose ids were already written: a retry if all of
    /// them were, in the same order, consecutively, to the same stream; then
    /// the original result. Anything else is a conflict.
    fn resolve_retry(
        &self,
        index: &Index,
        request: &AppendRequest,
        known: &[Option<u64>],
    ) -> Result<AppendResult> {
        let conflict = |reason: String| Error::IdempotencyConflict {
            stream: request.stream.clone(),
            reason,
        };
        let Some(Some(first_position)) = known.first().copied() else {
            return Err(conflict(
                "its first event is new but later ones were already written".into(),
            ));
        };
        let mut first_version = 0;
        for (i, position) in known.iter().enumerate() {
            let expected = first_position + i as u64;
            match position {
                None => {
                    return Err(conflict(format!(
                        "event {i} is new but event 0 was already written"
                    )))
                }
                Some(p) if *p != expected => {
                    return Err(conflict(format!(
                        "event {i} was written at position {p}, not right after the one before it"
                    )))
                }
                Some(p) => {
                    let location = index
                        .locate(*p)?
                        .ok_or_else(|| conflict(format!("event {i} is no longer indexed")))?;
                    let event = location.segment.read_event(location.offset, *p)?;
                    if *event.stream != request.stream {
                        return Err(conflict(format!(
                            "event {i} was written to stream '{}'",
                            &*event.stream
                        )));
                    }
                    if i == 0 {
                        first_version = event.version;
                    }
                }
            }
        }
        let count = known.len() as u64;
        Ok(AppendResult {
            first_version,
            last_version: first_version + count - 1,
            first_position,
            last_position: first_position + count - 1,
        })
    }

    /// Encodes one append into the write buffer.
    fn encode(&mut self, chunk_start: u64, plan: Planned) -> Staged {
        let seed = self.active.seed();
        let count = plan.request.count;
        let first_position = self.next_position;
        let header_at = self.buf.len();
        self.buf.resize(header_at + BATCH_HEADER_LEN, 0);
        let timestamp_nanos = now_nanos();
        let mut offsets = Vec::with_capacity(count);
        let mut at = self.buf.len();
        self.buf.extend_from_slice(&plan.request.records);
        for i in 0..count as u64 {
            offsets.push((chunk_start + at as u64) as u32);
            let record = self.buf.get_mut(at..).unwrap_or_default();
            at += finish_record(
                record,
                seed,
                first_position + i,
                plan.first_version + i,
                timestamp_nanos,
            );
        }
        let header = BatchHeader {
            len: (self.buf.len() - header_at) as u32,
            kind: BatchKind::Events,
            count: count as u32,
            first_position,
            durable_mark: self.shared.durable.load(Ordering::Acquire),
        };
        let mut header_bytes = [0u8; BATCH_HEADER_LEN];
        header.encode_into(seed, &mut header_bytes);
        if let Some(slot) = self.buf.get_mut(header_at..header_at + BATCH_HEADER_LEN) {
            slot.copy_from_slice(&header_bytes);
        }
        self.next_position = first_position + count as u64;
        Staged {
            result: AppendResult {
                first_version: plan.first_version,
                last_version: plan.first_version + count as u64 - 1,
                first_position,
                last_position: first_position + count as u64 - 1,
            },
            request: plan.request,
            offsets,
            durable_mark: header.durable_mark,
        }
    }

    /// Writes the buffer at `chunk_start` of the active segment, then
    /// publishes the staged appends to the index and the written watermark.
    /// On failure nothing is published and positions are handed out again.
    fn write_chunk(&mut self, chunk_start: u64, staged: &mut [Staged]) -> Result<()> {
        let first_position = staged
            .first()
            .map_or(self.next_position, |s| s.result.first_position);
        if let Err(e) = self.active.file().write_all_at(&self.buf, chunk_start) {
            self.next_position = first_position;
            return Err(self.write_failed(chunk_start, e));
        }
        self.write_offset = chunk_start + self.buf.len() as u64;
        for s in staged.iter() {
            self.recorded_durable = self.recorded_durable.max(s.durable_mark);
        }
        self.buf.clear();
        let mut index = self.shared.index.write();
        for s in staged.iter() {
            let ids = record_ids(&s.request.records, s.request.count);
            index.push_events(&s.request.stream, s.result.first_position, &s.offsets, &ids);
        }
        self.shared
            .written
            .store(self.next_position, Ordering::Release);
        drop(index);
        self.shared.written_progress.advanced();
        Ok(())
    }

    /// Handles a failed segment write. Out of space: the bytes that may have
    /// reached the file are zeroed so no partial batch survives, and the store
    /// stays usable. Anything else, or a failed clean-up, poisons writing.
    fn write_failed(&mut self, chunk_start: u64, error: io::Error) -> Error {
        let len = self.buf.len();
        self.buf.clear();
        if error.kind() == io::ErrorKind::StorageFull {
            let zeros = vec![0u8; len];
            if self.active.file().write_all_at(&zeros, chunk_start).is_ok() {
                return Error::no_space(
                    format!("writing to {}", self.active.path().display()),
                    error,
                );
            }
        }
        self.poison(format!("write to {}", self.active.path().display()), error)
    }

    fn poison(&self, context: String, cause: io::Error) -> Error {
        let error = Error::StorePoisoned {
            context,
            cause: Arc::new(cause),
        };
        self.shared.fail(error)
    }

    /// Makes everything written durable and advances the durable watermark.
    fn sync_active(&mut self) -> Result<()> {
        if self.shared.poisoned().is_none()
            && self.shared.durable.load(Ordering::Acquire)
                >= self.shared.written.load(Ordering::Acquire)
        {
            return Ok(());
        }
        self.sync_active_always()
    }

    /// Syncs the active segment even when no event awaits it (a seal or a
    /// mark does).
    fn sync_active_always(&mut self) -> Result<()> {
        if let Some(error) = self.shared.poisoned() {
            return Err(error);
        }
        let target = self.shared.written.load(Ordering::Acquire);
        if let Err(e) = self.active.file().sync_data() {
            return Err(self.poison(format!("fdatasync of {}", self.active.path().display()), e));
        }
        self.last_sync = Instant::now();
        self.shared.durable.fetch_max(target, Ordering::AcqRel);
        self.shared.durable_progress.advanced();
        self.mark_pending = true;
        Ok(())
    }

    /// Writes a durable mark (not synced by itself): once it reaches the
    /// disk, recovery knows every position below it was synced, so damage
    /// there is reported as corruption instead of being cut as a torn write.
    fn write_mark(&mut self) {
        if !self.mark_pending || self.shared.poisoned().is_some() {
            return;
        }
        let durable = self.shared.durable.load(Ordering::Acquire);
        if durable <= self.recorded_durable {
            self.mark_pending = false;
            return;
        }
        if self.write_offset + TAIL_RESERVE > self.active.capacity() {
            return;
        }
        let mark = BatchHeader {
            len: BATCH_HEADER_LEN as u32,
            kind: BatchKind::Mark,
            count: 0,
            first_position: self.next_position,
            durable_mark: durable,
        };
        let mut bytes = [0u8; BATCH_HEADER_LEN];
        mark.encode_into(self.active.seed(), &mut bytes);
        match self.active.file().write_all_at(&bytes, self.write_offset) {
            Ok(()) => {
                self.write_offset += BATCH_HEADER_LEN as u64;
                self.mark_pending = false;
                self.recorded_durable = durable;
            }
            // Out of space: the next batch overwrites whatever part of the
            // mark got through, so nothing is lost by skipping it.
            Err(e) if e.kind() == io::ErrorKind::StorageFull => {}
            Err(e) => {
                let _ = self.poison(format!("write to {}", self.active.path().display()), e);
            }
        }
    }

    /// Writes what is staged plus a seal into the active segment, syncs it and
    /// installs the next segment. Staged appends are acknowledged (the seal's
    /// sync made them durable).
    fn roll_over(
        &mut self,
        chunk_start: u64,
        next_position: u64,
        staged: &mut Vec<Staged>,
        replies: &mut Replies,
    ) -> Result<()> {
        let prepared = self.take_prepared()?;
        let seal = BatchHeader {
            len: BATCH_HEADER_LEN as u32,
            kind: BatchKind::Seal,
            count: 0,
            first_position: next_position,
            durable_mark: self.shared.durable.load(Ordering::Acquire),
        };
        let mut seal_bytes = [0u8; BATCH_HEADER_LEN];
        seal.encode_into(self.active.seed(), &mut seal_bytes);
        let seal_offset = chunk_start + self.buf.len() as u64;
        self.buf.extend_from_slice(&seal_bytes);
        let written = self.write_chunk(chunk_start, staged);
        // Always synced: the seal must be durable before the next segment
        // takes events, even when no event of this group precedes it.
        let outcome = written.and_then(|()| self.sync_active_always());
        // The seal's sync covered every staged append, whatever its mode; if
        // the write or the sync failed, none of them may be acknowledged.
        for s in staged.drain(..) {
            replies.push((s.request.reply, outcome.clone().map(|()| s.result)));
        }
        outcome?;
        let storage = Arc::clone(&self.shared.options.storage);
        let segment = prepared
            .install(storage.as_ref(), &self.shared.segments_dir, next_position)
            .map_err(|e| self.poison("installing a new segment".into(), e))?;
        let segment = Arc::new(segment);
        let sealed = {
            let mut index = self.shared.index.write();
            let sealed = index.seal_active();
            let active = index.new_active();
            index.push_segment(Arc::clone(&segment), active);
            sealed
        };
        if let Some(sealed) = sealed {
            self.write_index_file(sealed, seal_offset);
        }
        self.active = segment;
        self.write_offset = SEGMENT_HEADER_LEN as u64;
        self.recorded_durable = 0;
        self.prepare_next_segment();
        Ok(())
    }

    /// The preallocated next segment, made now if the background attempt
    /// failed (for example for lack of space, which may have passed).
    fn take_prepared(&mut self) -> Result<PreparedSegment> {
        if let Some(handle) = self.prepared.take() {
            if let Ok(Ok(prepared)) = handle.join() {
                return Ok(prepared);
            }
        }
        let storage = Arc::clone(&self.shared.options.storage);
        PreparedSegment::create(
            storage.as_ref(),
            &self.shared.segments_dir,
            self.shared.options.segment_size,
        )
        .map_err(|e| {
            if e.kind() == io::ErrorKind::StorageFull {
                Error::no_space("preallocating the next segment", e)
            } else {
                Error::io("preallocating the next segment", e)
            }
        })
    }
}
