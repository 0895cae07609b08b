//! Where the writer sends a command's result: the channel a blocked caller
//! waits on, or the slot an async caller's future polls. A future is woken
//! by the thread that fills its slot (the leader that answers its group),
//! so no executor thread ever waits on the writer.

use crate::error::Result;
#[cfg(feature = "async")]
use parking_lot::Mutex;
use std::sync::mpsc::{SendError, SyncSender};
#[cfg(feature = "async")]
use std::sync::Arc;
#[cfg(feature = "async")]
use std::task::{Context, Poll, Waker};

/// A result on its way to an async caller.
#[cfg(feature = "async")]
#[derive(Debug)]
pub struct Slot<T> {
    state: Mutex<SlotState<T>>,
}

#[cfg(feature = "async")]
#[derive(Debug)]
struct SlotState<T> {
    value: Option<T>,
    /// The command holding the sending side was dropped without an answer.
    abandoned: bool,
    waker: Option<Waker>,
}

#[cfg(feature = "async")]
impl<T> Slot<T> {
    /// An empty slot, and the sending side the command carries.
    pub fn new() -> (Arc<Slot<T>>, SlotSender<T>) {
        let slot = Arc::new(Slot {
            state: Mutex::new(SlotState {
                value: None,
                abandoned: false,
                waker: None,
            }),
        });
        (Arc::clone(&slot), SlotSender(Some(slot)))
    }

    /// The result once there; `Err(())` if the command was dropped without
    /// one (its group's leader panicked).
    pub fn poll(&self, cx: &Context<'_>) -> Poll<std::result::Result<T, ()>> {
        let mut state = self.state.lock();
        if let Some(value) = state.value.take() {
            return Poll::Ready(Ok(value));
        }
        if state.abandoned {
            return Poll::Ready(Err(()));
        }
        match &mut state.waker {
            Some(waker) if waker.will_wake(cx.waker()) => {}
            waker => *waker = Some(cx.waker().clone()),
        }
        Poll::Pending
    }
}

/// The sending side of a [`Slot`]. Dropped unfilled, it marks the slot
/// abandoned and wakes the future, which then reports the store's poison.
#[cfg(feature = "async")]
#[derive(Debug)]
pub struct SlotSender<T>(Option<Arc<Slot<T>>>);

#[cfg(feature = "async")]
impl<T> SlotSender<T> {
    fn fill(&mut self, value: T) {
        if let Some(slot) = self.0.take() {
            let waker = {
                let mut state = slot.state.lock();
                state.value = Some(value);
                state.waker.take()
            };
            if let Some(waker) = waker {
                waker.wake();
            }
        }
    }
}

#[cfg(feature = "async")]
impl<T> Drop for SlotSender<T> {
    fn drop(&mut self) {
        if let Some(slot) = self.0.take() {
            let waker = {
                let mut state = slot.state.lock();
                state.abandoned = true;
                state.waker.take()
            };
            if let Some(waker) = waker {
                waker.wake();
            }
        }
    }
}

/// A blocked caller's reply slot, kept by its thread and used for one
/// command after another: an append costs no channel of its own.
#[derive(Debug)]
pub struct ParkSlot<T> {
    value: parking_lot::Mutex<Parked<T>>,
    filled: parking_lot::Condvar,
}

#[derive(Debug)]
enum Parked<T> {
    Empty,
    Filled(T),
    /// The command holding the sending side was dropped unanswered.
    Abandoned,
}

impl<T> Default for ParkSlot<T> {
    fn default() -> Self {
        ParkSlot {
            value: parking_lot::Mutex::new(Parked::Empty),
            filled: parking_lot::Condvar::new(),
        }
    }
}

impl<T> ParkSlot<T> {
    /// The sending side for the next command, the slot emptied first. Its
    /// thread waits for one command at a time, and a command that never
    /// reached the queue (refused before it, or by a closed queue) dropped
    /// its sender before its call returned, marking the slot abandoned with
    /// no one to read it: left there, that mark would answer the next
    /// command at once, and each later call would read the answer of the
    /// one before.
    pub fn sender(self: &std::sync::Arc<Self>) -> ParkSender<T> {
        *self.value.lock() = Parked::Empty;
        ParkSender(Some(std::sync::Arc::clone(self)))
    }

    /// Waits for the value; `None` if the command was dropped unanswered.
    /// Leaves the slot empty for the next command.
    pub fn wait(&self) -> Option<T> {
        let mut value = self.value.lock();
        loop {
            match std::mem::replace(&mut *value, Parked::Empty) {
                Parked::Filled(filled) => return Some(filled),
                Parked::Abandoned => return None,
                Parked::Empty => self.filled.wait(&mut value),
            }
        }
    }
}

/// The sending side of a [`ParkSlot`]; dropped unfilled, it marks the slot
/// abandoned and wakes its thread.
#[derive(Debug)]
pub struct ParkSender<T>(Option<std::sync::Arc<ParkSlot<T>>>);

impl<T> ParkSender<T> {
    fn put(&mut self, parked: Parked<T>) {
        if let Some(slot) = self.0.take() {
            *slot.value.lock() = parked;
            slot.filled.notify_one();
        }
    }
}

impl<T> Drop for ParkSender<T> {
    fn drop(&mut self) {
        self.put(Parked::Abandoned);
    }
}

/// How a blocked caller waits for its reply.
pub trait Waiting<T> {
    /// The reply; `None` if the command was dropped unanswered.
    fn wait_for_reply(&self) -> Option<Result<T>>;
}

impl<T> Waiting<T> for std::sync::mpsc::Receiver<Result<T>> {
    fn wait_for_reply(&self) -> Option<Result<T>> {
        self.recv().ok()
    }
}

impl<T> Waiting<T> for ParkSlot<Result<T>> {
    fn wait_for_reply(&self) -> Option<Result<T>> {
        self.wait()
    }
}

/// Where one command's result goes.
pub enum Reply<T> {
    /// A caller blocked on a channel.
    Thread(SyncSender<Result<T>>),
    /// A caller blocked on its thread's slot.
    Parked(parking_lot::Mutex<ParkSender<Result<T>>>),
    /// An async caller's future.
    #[cfg(feature = "async")]
    Task(Mutex<SlotSender<Result<T>>>),
}

impl<T> Reply<T> {
    /// Sends `result`; gives it back if a blocked caller is gone.
    pub fn send(&self, result: Result<T>) -> Option<Result<T>> {
        match self {
            Reply::Thread(sender) => sender.send(result).err().map(|SendError(result)| result),
            // The caller is blocked until its slot is filled: it is there.
            Reply::Parked(sender) => {
                sender.lock().put(Parked::Filled(result));
                None
            }
            #[cfg(feature = "async")]
            Reply::Task(sender) => {
                sender.lock().fill(result);
                None
            }
        }
    }
}

/// Where an append's result goes.
pub struct ReplyTo {
    reply: Reply<crate::commit::CommitResult>,
}

impl ReplyTo {
    /// The reply slot of an append made on the current thread, which
    /// waits on `slot`.
    pub fn parked(sender: ParkSender<Result<crate::commit::CommitResult>>) -> Self {
        ReplyTo {
            reply: Reply::Parked(parking_lot::Mutex::new(sender)),
        }
    }

    /// The reply slot of an async append.
    #[cfg(feature = "async")]
    pub fn task(sender: SlotSender<Result<crate::commit::CommitResult>>) -> Self {
        ReplyTo {
            reply: Reply::Task(Mutex::new(sender)),
        }
    }

    /// Sends `result`; gives it back if the caller is gone.
    pub fn send(
        &self,
        result: Result<crate::commit::CommitResult>,
    ) -> Option<Result<crate::commit::CommitResult>> {
        self.reply.send(result)
    }
}
