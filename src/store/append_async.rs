//! The async write API (cargo feature `async`): appends, commits and
//! flushes as futures that no executor thread ever blocks in. The request
//! is checked and encoded when the method is called; the future then
//! queues it without waiting (a full queue registers the task's waker and
//! yields) and never leads a group: the commit thread does, and the thread
//! that answers the group fills the future's slot and wakes its task.
//!
//! Dropping a future does not cancel its command once it is queued: it is
//! written (or refused) as if the future were still there, and only its
//! result goes unobserved. Dropped before it was queued (while the queue
//! was full), nothing was appended. Either way a retry with the same event
//! ids returns the original result if the first attempt was written, and
//! writes the events otherwise, so nothing is lost or written twice.

use super::append::Part;
use super::group_commit::{Command, Enqueued, GroupCommit, Reply, ReplyTo};
use super::reply::Slot;
use super::state::StoreState;
use super::Store;
use crate::commit::{Commit, CommitResult};
use crate::error::{Error, Result};
use crate::types::{AppendResult, Durability, EventData, ExpectedVersion};
use parking_lot::Mutex;
use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Instant;

/// A command on its way through the group commit, as a future.
struct Queued<T> {
    group_commit: Arc<GroupCommit>,
    state: Arc<StoreState>,
    /// Until it is queued.
    command: Option<Command>,
    slot: Arc<Slot<Result<T>>>,
    /// For the latency figure; `None` for a flush.
    durability: Option<Durability>,
    started: Instant,
    /// Since when it waits for room in a full queue.
    waiting_since: Option<Instant>,
}

impl<T> Future for Queued<T> {
    type Output = Result<T>;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Result<T>> {
        let this = self.get_mut();
        if let Some(command) = this.command.take() {
            match this.group_commit.enqueue_async(command, cx.waker()) {
                Enqueued::Queued => {
                    if let Some(since) = this.waiting_since.take() {
                        this.group_commit.record_wait(since.elapsed());
                    }
                }
                Enqueued::Full(command) => {
                    this.command = Some(command);
                    this.waiting_since.get_or_insert_with(Instant::now);
                    return Poll::Pending;
                }
                Enqueued::Closed(error) => return Poll::Ready(Err(error)),
            }
        }
        let result = match this.slot.poll(cx) {
            Poll::Pending => return Poll::Pending,
            Poll::Ready(Ok(result)) => result,
            // Dropped unanswered: its group's leader panicked, and the
            // store is poisoned with the cause.
            Poll::Ready(Err(())) => Err(this.state.poisoned().unwrap_or(Error::Closed)),
        };
        if let Some(durability) = this.durability {
            this.state
                .telemetry
                .answered(durability, this.started.elapsed());
        }
        Poll::Ready(result)
    }
}

/// A future answered at once (a request refused before it was queued) or
/// through the group commit.
enum Answer<T> {
    Now(Option<Result<T>>),
    Later(Queued<T>),
}

// Nothing in it is pinned: the future is polled through `&mut`.
impl<T> Unpin for Answer<T> {}

impl<T> Future for Answer<T> {
    type Output = Result<T>;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Result<T>> {
        match self.get_mut() {
            Answer::Now(result) => Poll::Ready(result.take().unwrap_or(Err(Error::Closed))),
            Answer::Later(queued) => Pin::new(queued).poll(cx),
        }
    }
}

impl Store {
    /// [`Store::append`] as a future, for async code: the calling task is
    /// never blocked, neither by another append's `fdatasync` nor by a full
    /// queue, and never leads a group (the store's commit thread does).
    /// The events are checked and encoded when this is called; errors
    /// found then come out of the future.
    ///
    /// Dropping the future does not cancel the append once it is queued:
    /// only its result goes unobserved. Retrying with the same events
    /// (same ids) returns the original result if it was written and writes
    /// it otherwise, so nothing is lost or written twice.
    ///
    /// ```
    /// # #[tokio::main(flavor = "current_thread")] async fn main() {
    /// use evstore::{EventData, ExpectedVersion, Options, Store};
    /// let dir = tempfile::tempdir().unwrap();
    /// let store = Store::open(dir.path(), Options::default()).unwrap();
    /// let written = store
    ///     .append_async("order-1", ExpectedVersion::NoStream, &[EventData::new("Placed", &b"{}"[..])])
    ///     .await
    ///     .unwrap();
    /// assert_eq!(written.last_version, 0);
    /// # }
    /// ```
    ///
    /// # Errors
    ///
    /// As [`Store::append`].
    pub fn append_async(
        &self,
        stream: &str,
        expected: ExpectedVersion,
        events: &[EventData],
    ) -> impl Future<Output = Result<AppendResult>> + Send + 'static {
        let parts = [Part {
            stream,
            expected,
            events,
            deletes: None,
        }];
        let durability = self.options().durability;
        let commit = self.queue_async(&parts, &[], None, durability, "append");
        async move {
            commit
                .await?
                .streams
                .first()
                .copied()
                .ok_or_else(|| Error::InvalidRequest {
                    what: "append",
                    reason: "the writer answered without a result".into(),
                })
        }
    }

    /// [`Store::commit`] as a future; see [`Store::append_async`] for what
    /// the future does and what dropping it means.
    ///
    /// # Errors
    ///
    /// As [`Store::commit`].
    pub fn commit_async(
        &self,
        commit: &Commit,
    ) -> impl Future<Output = Result<CommitResult>> + Send + 'static {
        let parts = super::append::commit_parts(commit);
        let durability = commit.durability.unwrap_or(self.options().durability);
        self.queue_async(
            &parts,
            &commit.checks,
            commit.condition.as_ref(),
            durability,
            "commit",
        )
    }

    /// [`Store::flush`] as a future; see [`Store::append_async`].
    ///
    /// # Errors
    ///
    /// As [`Store::flush`].
    pub fn flush_async(&self) -> impl Future<Output = Result<()>> + Send + 'static {
        let (slot, sender) = Slot::new();
        let command = Command::Flush(Reply::Task(Mutex::new(sender)));
        self.queued(command, slot, None, "flush")
    }

    /// A commit checked, encoded and waiting to be queued by its future.
    fn queue_async(
        &self,
        parts: &[Part<'_>],
        checks: &[(String, ExpectedVersion)],
        condition: Option<&crate::query::AppendCondition>,
        durability: Durability,
        operation: &'static str,
    ) -> Answer<CommitResult> {
        let (slot, sender) = Slot::new();
        let prepared = self.prepare(
            parts,
            checks,
            condition,
            durability,
            operation,
            super::append::Origin::User,
            ReplyTo::task(sender),
        );
        match prepared {
            Ok(request) => self.queued(Command::Append(request), slot, Some(durability), operation),
            Err(error) => Answer::Now(Some(Err(error))),
        }
    }

    fn queued<T>(
        &self,
        command: Command,
        slot: Arc<Slot<Result<T>>>,
        durability: Option<Durability>,
        operation: &'static str,
    ) -> Answer<T> {
        let group_commit = match &self.inner.group_commit {
            Some(group_commit) => Arc::clone(group_commit),
            None => return Answer::Now(Some(Err(Error::ReadOnly { operation }))),
        };
        Answer::Later(Queued {
            group_commit,
            state: Arc::clone(&self.inner.state),
            command: Some(command),
            slot,
            durability,
            started: Instant::now(),
            waiting_since: None,
        })
    }
}
