//! Group commit: appends and flushes wait at the barrier; a caller that
//! finds nobody leading runs the writer over a whole group, one write and
//! one sync for all of it, and every caller is answered with its own
//! result. Whatever was queued meanwhile goes to the commit thread, which
//! leads group after group until the queue is empty and then sleeps: a
//! lone caller never waits on another thread, and under load the leader
//! is a thread that is already running, not one woken for it. A panic in a
//! leader poisons the store and answers everyone with that error.

use super::state::StoreState;
use super::writer::Writer;
use crate::error::{Error, Result};
use crate::log::{Barrier, Leader, Limits, Next, Queued, Role};
use crate::options::PanicPoint;
use crate::query::AppendCondition;
use crate::types::{Durability, ExpectedVersion};
use parking_lot::Mutex;
use std::panic::{catch_unwind, AssertUnwindSafe};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::mpsc::SyncSender;
use std::sync::{Arc, OnceLock};
use std::thread::{JoinHandle, Thread};

pub use crate::index::planning::StreamWrite;

/// One append or commit waiting for the writer.
pub struct AppendRequest {
    /// The streams written, in order; their events follow one another.
    pub parts: Vec<StreamWrite>,
    /// Streams not written whose expected version is checked.
    pub checks: Vec<(String, ExpectedVersion)>,
    /// What must not have been appended since the caller decided.
    pub condition: Option<AppendCondition>,
    /// The events as unfinished records (see
    /// [`crate::log::record::encode_unfinished_record`]), already validated.
    pub records: Vec<u8>,
    /// The events' ids, in order, no two alike: one per record.
    pub ids: Vec<u128>,
    /// When to acknowledge.
    pub durability: Durability,
    /// Encoded size of the batch: header plus padded records.
    pub encoded_len: usize,
    /// Segments below this ordinal are sealed and were searched for the
    /// append's ids, in vain (see [`crate::index::Index::sealed_without_ids`]).
    pub ids_absent_below: u32,
    /// Where the result goes.
    pub reply: ReplyTo,
}

pub use super::reply::{ParkSlot, Reply, ReplyTo, Waiting};

/// What [`GroupCommit::enqueue_async`] did with a command.
#[cfg(feature = "async")]
pub enum Enqueued {
    /// Queued: its reply will come.
    Queued,
    /// The queue is full: here it is back.
    Full(Command),
    /// The store takes no more commands, for this reason.
    Closed(Error),
}

/// Work for the writer.
pub enum Command {
    /// Append a batch.
    Append(AppendRequest),
    /// Make everything written so far durable.
    Flush(Reply<()>),
    /// Make everything written so far durable, then seal the active
    /// segment and continue in a new one, if the active segment is still
    /// the one starting at `base` and holds any event (see
    /// [`crate::Store::scavenge`]).
    Roll {
        /// The base position of the segment to seal.
        base: u64,
        /// Where the result goes.
        reply: SyncSender<Result<()>>,
    },
}

impl Command {
    /// Answers the command with `error`.
    fn fail(self, error: Error) {
        // A send fails only if the caller is gone: nobody to tell.
        match self {
            Command::Append(r) => {
                let _ = r.reply.send(Err(error));
            }
            Command::Flush(reply) => {
                let _ = reply.send(Err(error));
            }
            Command::Roll { reply, .. } => {
                let _ = reply.send(Err(error));
            }
        }
    }
}

impl Queued for Command {
    fn bytes(&self) -> usize {
        match self {
            Command::Append(r) => r.encoded_len,
            Command::Flush(_) | Command::Roll { .. } => 0,
        }
    }

    fn ends_linger(&self) -> bool {
        matches!(self, Command::Flush(_) | Command::Roll { .. })
    }
}

/// The barrier and the writer that leaders run.
pub struct GroupCommit {
    state: Arc<StoreState>,
    barrier: Barrier<Command>,
    /// `None` once closed. Held by the leader for a whole group.
    writer: Mutex<Option<Writer>>,
    /// The commit thread, once started.
    commit_thread: OnceLock<Thread>,
    commit_thread_handle: Mutex<Option<JoinHandle<()>>>,
    /// A caller handed the queue to the commit thread, which has not
    /// taken it yet.
    handed_over: AtomicBool,
    /// The commit thread is to end.
    stopping: AtomicBool,
}

impl GroupCommit {
    /// Group commit over `writer`.
    pub fn new(state: Arc<StoreState>, writer: Writer) -> Self {
        let options = &state.options;
        let limits = Limits {
            max_queue_bytes: options.max_queue_bytes,
            max_batch_bytes: options.max_batch_bytes,
            max_linger: options.max_linger,
        };
        GroupCommit {
            barrier: Barrier::new(limits),
            writer: Mutex::new(Some(writer)),
            state,
            commit_thread: OnceLock::new(),
            commit_thread_handle: Mutex::new(None),
            handed_over: AtomicBool::new(false),
            stopping: AtomicBool::new(false),
        }
    }

    /// Starts the commit thread. Until it runs, a caller that would hand
    /// the queue over leads it to the end itself.
    ///
    /// # Errors
    ///
    /// [`Error::Io`] if the thread cannot be started.
    pub fn start(self: &Arc<Self>) -> Result<()> {
        let this = Arc::clone(self);
        let handle = std::thread::Builder::new()
            .name("evstore-commit".into())
            .spawn(move || this.run_commit_thread())
            .map_err(|e| Error::io("starting the commit thread", e))?;
        let _ = self.commit_thread.set(handle.thread().clone());
        *self.commit_thread_handle.lock() = Some(handle);
        Ok(())
    }

    /// The commit thread: leads whenever a caller hands it the queue, until
    /// the store closes. A panic outside a group (inside one, `lead`
    /// catches it) poisons the store and answers everything queued.
    fn run_commit_thread(&self) {
        let outcome = catch_unwind(AssertUnwindSafe(|| loop {
            if self.handed_over.swap(false, Ordering::AcqRel) {
                self.state.injected_panic(PanicPoint::CommitThread);
                self.lead(Leader::Dedicated);
                continue;
            }
            if self.stopping.load(Ordering::Acquire) {
                break;
            }
            std::thread::park();
        }));
        if let Err(payload) = outcome {
            let error = self
                .state
                .fail_with_panic("the commit thread", payload.as_ref());
            for command in self.barrier.abandon() {
                command.fail(error.clone());
            }
        }
    }

    /// Gives the queue to the commit thread, or leads it to the end here if
    /// there is none.
    fn hand_over(&self) {
        match self.commit_thread.get() {
            Some(thread) => {
                self.handed_over.store(true, Ordering::Release);
                thread.unpark();
            }
            None => {
                self.lead(Leader::Dedicated);
            }
        }
    }

    /// Queues `command` and waits for its result, leading groups when the
    /// barrier says so.
    pub fn call<T>(&self, command: Command, result: &impl Waiting<T>) -> Result<T> {
        match self.barrier.submit(command) {
            Ok(Role::Lead) => self.lead(Leader::Caller),
            Ok(Role::Follow) => {}
            Err(_closed) => return Err(self.state.poisoned().unwrap_or(Error::Closed)),
        }
        if let Some(answer) = result.wait_for_reply() {
            return answer;
        }
        // The command was dropped unanswered: its group's leader panicked.
        // Once that leader lets go of the writer, the store is poisoned
        // with the panic.
        drop(self.writer.lock());
        Err(self.state.poisoned().unwrap_or(Error::Closed))
    }

    /// Queues `command` for an async caller: never leads a group (the
    /// commit thread does) and never waits. A full queue gives the command
    /// back, and `waker` is woken once there is room.
    #[cfg(feature = "async")]
    pub fn enqueue_async(&self, command: Command, waker: &std::task::Waker) -> Enqueued {
        use crate::log::Refused;
        match self.barrier.try_submit(command, waker) {
            Ok(Role::Lead) => {
                self.hand_over();
                Enqueued::Queued
            }
            Ok(Role::Follow) => Enqueued::Queued,
            Err(Refused::Full(command)) => Enqueued::Full(command),
            Err(Refused::Closed(_)) => {
                Enqueued::Closed(self.state.poisoned().unwrap_or(Error::Closed))
            }
        }
    }

    /// Records that an async caller waited `waited` for room in the queue.
    #[cfg(feature = "async")]
    pub fn record_wait(&self, waited: std::time::Duration) {
        self.barrier.record_wait(waited);
    }

    /// Writes groups until the barrier says to stop or to hand over.
    fn lead(&self, leader: Leader) {
        loop {
            let group = self.barrier.take_group();
            let mut writer = self.writer.lock();
            let outcome = catch_unwind(AssertUnwindSafe(|| {
                self.state.injected_panic(PanicPoint::Leader);
                if let Some(w) = writer.as_mut() {
                    Some(w.process(group))
                } else {
                    for command in group {
                        command.fail(Error::Closed);
                    }
                    None
                }
            }));
            let answers = match outcome {
                Ok(Some(done)) => {
                    self.barrier
                        .requeue(done.deferred.into_iter().map(Command::Append).collect());
                    Some(done.answers)
                }
                Ok(None) => None,
                Err(payload) => {
                    // The writer's state is unknown: nothing more may be
                    // written. Everyone waiting is answered with the cause.
                    let error = self
                        .state
                        .fail_with_panic("the group-commit leader", payload.as_ref());
                    for command in self.barrier.abandon() {
                        command.fail(error.clone());
                    }
                    return;
                }
            };
            drop(writer);
            // The commit thread, if handed the queue, starts on the next
            // group while this caller answers the last. A leader that goes
            // on itself answers every caller first: callers woken one by
            // one queue their next commands meanwhile, and those join the
            // next group instead of the one after it. Syncs are the cost
            // that counts: more commands per sync are worth the wake-ups
            // made before the next group is taken.
            let next = self.barrier.after_group(leader);
            match next {
                Next::Continue => {
                    if let Some(answers) = answers {
                        answers.answer();
                    }
                }
                Next::Stop => {
                    if let Some(answers) = answers {
                        answers.answer();
                    }
                    break;
                }
                Next::HandOver => {
                    self.hand_over();
                    if let Some(answers) = answers {
                        answers.answer();
                    }
                    break;
                }
            }
        }
    }

    /// Stops taking commands, waits for the queued ones to be written, then
    /// syncs and leaves a synced durable mark. Idempotent.
    pub fn close(&self) {
        self.barrier.close();
        let writer = self.writer.lock().take();
        if let Some(writer) = writer {
            writer.shut_down();
        }
        self.stopping.store(true, Ordering::Release);
        if let Some(thread) = self.commit_thread.get() {
            thread.unpark();
        }
        let handle = self.commit_thread_handle.lock().take();
        if let Some(handle) = handle {
            // The thread catches its own panics and poisons the store.
            let _ = handle.join();
        }
    }

    /// The commands and bytes queued now, and the callers waiting for
    /// room.
    pub fn queue_depth(&self) -> (usize, usize, usize) {
        self.barrier.depth()
    }

    /// How long callers waited for room in a full queue.
    pub fn back_pressure(&self) -> crate::telemetry::Distribution {
        self.barrier.back_pressure()
    }

    /// Makes what buffered appends wrote durable, from the flusher thread:
    /// syncs without holding the writer, so appends go on while the disk
    /// works; then records the new durable point.
    pub fn background_flush(&self) {
        let state = &self.state;
        if state.poisoned().is_some()
            || state.durable.load(Ordering::Acquire) >= state.written.load(Ordering::Acquire)
        {
            return;
        }
        let (segment, target, written_len, sync_target) = {
            let writer = self.writer.lock();
            let Some(w) = writer.as_ref() else { return };
            (
                w.segment(),
                state.written.load(Ordering::Acquire),
                w.written_len(),
                // Read with the writer held: the bytes it counts are all in
                // this segment or synced with earlier ones.
                state.telemetry.sync_target(),
            )
        };
        // Everything below `target` is in this segment or in earlier ones,
        // which were synced when they were sealed.
        let started = std::time::Instant::now();
        if let Err(e) = segment.file().sync_data() {
            state.telemetry.write_failed();
            state.fail(Error::StorePoisoned {
                context: format!("fdatasync of {}", segment.path().display()),
                cause: Arc::new(e),
            });
            return;
        }
        state.telemetry.synced(sync_target, started.elapsed());
        segment.mark_synced(written_len);
        if let Some(window) = state.options.page_cache_window {
            segment.release_cache_behind(written_len, window);
        }
        state.durable.fetch_max(target, Ordering::AcqRel);
        state.durable_progress.advanced();
        if let Some(w) = self.writer.lock().as_mut() {
            w.note_synced();
            if self.barrier.is_empty() {
                w.write_mark();
            }
        }
    }
}
