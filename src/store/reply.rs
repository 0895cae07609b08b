//! Where the writer sends a command's result: the channel a blocked caller
//! waits on, or the slot an async caller's future polls. A future is woken
//! by the thread that fills its slot (the leader, or the caller answering
//! for it), so no executor thread ever waits on the writer.

use super::writer::Answers;
use crate::error::Result;
#[cfg(feature = "async")]
use parking_lot::Mutex;
use std::sync::mpsc::{SendError, SyncSender};
#[cfg(feature = "async")]
use std::sync::Arc;
#[cfg(feature = "async")]
use std::task::{Context, Poll, Waker};
use std::thread::ThreadId;

/// What a waiting caller is woken with.
pub enum Wake<T> {
    /// Its command is done.
    Done(T),
    /// Its command is done, and before returning it answers the rest of
    /// its group: the leader went on to the next group instead of making
    /// one wake-up system call after another first. Only ever sent to a
    /// blocked thread.
    DoneAndAnswer(T, Box<Answers>),
}

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

/// Where one command's result goes.
pub enum Reply<T> {
    /// A caller blocked on a channel.
    Thread(SyncSender<Wake<Result<T>>>),
    /// An async caller's future.
    #[cfg(feature = "async")]
    Task(Mutex<SlotSender<Result<T>>>),
}

impl<T> Reply<T> {
    /// Sends `wake`; gives it back if a blocked caller is gone. A future is
    /// only ever given its result: what else `wake` asks is done here.
    pub fn send(&self, wake: Wake<Result<T>>) -> Option<Wake<Result<T>>> {
        match self {
            Reply::Thread(sender) => sender.send(wake).err().map(|SendError(wake)| wake),
            #[cfg(feature = "async")]
            Reply::Task(sender) => {
                let (result, rest) = match wake {
                    Wake::Done(result) => (result, None),
                    Wake::DoneAndAnswer(result, rest) => (result, Some(rest)),
                };
                sender.lock().fill(result);
                if let Some(rest) = rest {
                    rest.answer();
                }
                None
            }
        }
    }
}

/// Where an append's result goes, and which thread waits for it, if one
/// does.
pub struct ReplyTo {
    reply: Reply<crate::commit::CommitResult>,
    waiter: Option<ThreadId>,
}

impl ReplyTo {
    /// The reply channel of an append made on the current thread.
    pub fn new(sender: SyncSender<Wake<Result<crate::commit::CommitResult>>>) -> Self {
        ReplyTo {
            reply: Reply::Thread(sender),
            waiter: Some(std::thread::current().id()),
        }
    }

    /// The reply slot of an async append.
    #[cfg(feature = "async")]
    pub fn task(sender: SlotSender<Result<crate::commit::CommitResult>>) -> Self {
        ReplyTo {
            reply: Reply::Task(Mutex::new(sender)),
            waiter: None,
        }
    }

    /// The thread blocked waiting for the result; `None` for a future,
    /// which must never be handed the rest of a group to answer.
    pub fn waiter(&self) -> Option<ThreadId> {
        self.waiter
    }

    /// Sends `wake`; gives it back if the caller is gone.
    pub fn send(
        &self,
        wake: Wake<Result<crate::commit::CommitResult>>,
    ) -> Option<Wake<Result<crate::commit::CommitResult>>> {
        self.reply.send(wake)
    }
}
