//! Group commit: appends and flushes wait at the barrier; whichever caller
//! leads runs the writer over a whole group, one write and one sync for
//! all of it, and every caller is answered with its own result. A panic in
//! the leader poisons the store and answers everyone with that error.

use super::state::StoreState;
use super::writer::Writer;
use crate::error::{Error, Result};
use crate::log::{Barrier, Limits, Next, Queued, Role};
use crate::options::PanicPoint;
use crate::types::{AppendResult, Durability, ExpectedVersion};
use parking_lot::Mutex;
use std::panic::{catch_unwind, AssertUnwindSafe};
use std::sync::atomic::Ordering;
use std::sync::mpsc::{Receiver, SyncSender};
use std::sync::Arc;

/// One append waiting for the writer.
pub struct AppendRequest {
    /// Stream name, already validated.
    pub stream: String,
    /// The optimistic-concurrency check.
    pub expected: ExpectedVersion,
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
    pub reply: SyncSender<Wake<Result<AppendResult>>>,
}

/// What a waiting caller is woken with.
pub enum Wake<T> {
    /// Its command is done.
    Done(T),
    /// It is the next leader.
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
    /// Answers the command with `error`.
    fn fail(self, error: Error) {
        // A send fails only if the caller is gone: nobody to tell.
        match self {
            Command::Append(r) => {
                let _ = r.reply.send(Wake::Done(Err(error)));
            }
            Command::Flush(reply) => {
                let _ = reply.send(Wake::Done(Err(error)));
            }
        }
    }
}

impl Queued for Command {
    fn bytes(&self) -> usize {
        match self {
            Command::Append(r) => r.encoded_len,
            Command::Flush(_) => 0,
        }
    }

    fn ends_linger(&self) -> bool {
        matches!(self, Command::Flush(_))
    }

    fn wake_to_lead(&self) {
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

/// The barrier and the writer that leaders run.
pub struct GroupCommit {
    state: Arc<StoreState>,
    barrier: Barrier<Command>,
    /// `None` once closed. Held by the leader for a whole group.
    writer: Mutex<Option<Writer>>,
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
        }
    }

    /// Queues `command` and waits for its result, leading groups when the
    /// barrier says so.
    pub fn call<T>(&self, command: Command, result: &Receiver<Wake<Result<T>>>) -> Result<T> {
        match self.barrier.submit(command) {
            Ok(Role::Lead) => self.lead(),
            Ok(Role::Follow) => {}
            Err(_closed) => return Err(self.state.poisoned().unwrap_or(Error::Closed)),
        }
        loop {
            match result.recv() {
                Ok(Wake::Done(r)) => return r,
                Ok(Wake::Lead) => self.lead(),
                Err(_) => {
                    // The command was dropped unanswered: its group's leader
                    // panicked. Once that leader lets go of the writer, the
                    // store is poisoned with the panic.
                    drop(self.writer.lock());
                    return Err(self.state.poisoned().unwrap_or(Error::Closed));
                }
            }
        }
    }

    /// Writes groups until the barrier says to stop.
    fn lead(&self) {
        for round in 1.. {
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
                Ok(Some(mut done)) => {
                    let deferred = std::mem::take(&mut done.deferred);
                    self.barrier
                        .requeue(deferred.into_iter().map(Command::Append).collect());
                    Some(done)
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
            // The next leader, if one is woken, starts on the next group
            // while this one answers the callers of the last.
            let next = self.barrier.after_group(round);
            if let Some(answers) = answers {
                answers.answer();
            }
            if next == Next::Stop {
                break;
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
        let (segment, target, written_len) = {
            let writer = self.writer.lock();
            let Some(w) = writer.as_ref() else { return };
            (
                w.segment(),
                state.written.load(Ordering::Acquire),
                w.written_len(),
            )
        };
        // Everything below `target` is in this segment or in earlier ones,
        // which were synced when they were sealed.
        if let Err(e) = segment.file().sync_data() {
            state.fail(Error::StorePoisoned {
                context: format!("fdatasync of {}", segment.path().display()),
                cause: Arc::new(e),
            });
            return;
        }
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
