//! Subscriptions as `futures::Stream`s (cargo feature `async`).

use super::{EventBatch, Fill, Probe, Subscription, READS_PER_LOOK};
use crate::error::Result;
use crate::types::RecordedEvent;
use std::pin::Pin;
use std::task::{Context, Poll};

/// A [`Subscription`] as a `futures::Stream` (cargo feature `async`):
/// the task is woken when the log moves, no thread is blocked.
///
/// ```
/// # #[tokio::main(flavor = "current_thread")] async fn main() {
/// use evstore::{EventData, ExpectedVersion, Filter, Options, Store};
/// use futures_util::StreamExt;
/// # let dir = tempfile::tempdir().unwrap();
/// let store = Store::open(dir.path(), Options::default()).unwrap();
/// store.append("a", ExpectedVersion::Any, &[EventData::new("A", &b""[..])]).unwrap();
/// let mut events = store.subscribe_all(0, Filter::all()).into_stream();
/// let first = events.next().await.unwrap().unwrap();
/// assert_eq!(first.position, 0);
/// # }
/// ```
#[derive(Debug)]
pub struct SubscriptionStream {
    subscription: Subscription,
    /// The last poll found nothing and registered for a wake-up.
    waiting: bool,
}

impl Subscription {
    /// This subscription as a `futures::Stream`.
    #[must_use]
    pub fn into_stream(self) -> SubscriptionStream {
        SubscriptionStream {
            subscription: self,
            waiting: false,
        }
    }
}

impl SubscriptionStream {
    /// See [`Subscription::checkpoint`].
    #[must_use]
    pub fn checkpoint(&self) -> u64 {
        self.subscription.checkpoint()
    }
}

impl SubscriptionStream {
    /// One poll: `take` hands out what is buffered once something is.
    fn poll_with<T>(
        &mut self,
        cx: &mut Context<'_>,
        take: impl Fn(&mut Subscription) -> Result<Option<T>>,
    ) -> Poll<Option<Result<T>>> {
        let subscription = &mut self.subscription;
        if std::mem::take(&mut self.waiting) {
            Probe::bump(&subscription.probe.wakeups);
        }
        match subscription.fill(READS_PER_LOOK) {
            Err(error) => Poll::Ready(Some(Err(error))),
            Ok(Fill::Ready) => Poll::Ready(take(subscription).transpose()),
            Ok(Fill::Behind) => {
                cx.waker().wake_by_ref();
                Poll::Pending
            }
            Ok(Fill::CaughtUp(seen)) => {
                if let Some(error) = subscription.log.poisoned() {
                    return Poll::Ready(Some(Err(error)));
                }
                if subscription.progress().is_closed() {
                    return match subscription.fill(usize::MAX) {
                        Err(error) => Poll::Ready(Some(Err(error))),
                        Ok(Fill::Ready) => Poll::Ready(take(subscription).transpose()),
                        Ok(_) => Poll::Ready(None),
                    };
                }
                if subscription
                    .progress()
                    .register(cx.waker(), || subscription.end() > seen)
                {
                    cx.waker().wake_by_ref();
                }
                self.waiting = true;
                Poll::Pending
            }
        }
    }

    /// This stream as one of batches of at most `max` events (at
    /// least one): see [`Subscription::next_batch`].
    ///
    /// ```
    /// # #[tokio::main(flavor = "current_thread")] async fn main() {
    /// use evstore::{EventData, ExpectedVersion, Filter, Options, Store};
    /// use futures_util::StreamExt;
    /// # let dir = tempfile::tempdir().unwrap();
    /// let store = Store::open(dir.path(), Options::default()).unwrap();
    /// for _ in 0..3 {
    ///     store.append("a", ExpectedVersion::Any, &[EventData::new("A", &b""[..])]).unwrap();
    /// }
    /// let mut batches = store.subscribe_all(0, Filter::all()).into_stream().batches(2);
    /// let first = batches.next().await.unwrap().unwrap();
    /// assert_eq!(first.iter().map(|e| e.position).collect::<Vec<_>>(), [0, 1]);
    /// # }
    /// ```
    #[must_use]
    pub fn batches(self, max: usize) -> BatchStream {
        BatchStream {
            events: self,
            max: max.max(1),
        }
    }
}

impl futures_core::Stream for SubscriptionStream {
    type Item = Result<RecordedEvent>;

    fn poll_next(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Self::Item>> {
        self.get_mut().poll_with(cx, Subscription::take)
    }
}

/// A [`Subscription`] as a `futures::Stream` of [`EventBatch`]es
/// (cargo feature `async`), made by [`SubscriptionStream::batches`].
#[derive(Debug)]
pub struct BatchStream {
    events: SubscriptionStream,
    max: usize,
}

impl BatchStream {
    /// See [`Subscription::checkpoint`].
    #[must_use]
    pub fn checkpoint(&self) -> u64 {
        self.events.checkpoint()
    }
}

impl futures_core::Stream for BatchStream {
    type Item = Result<EventBatch>;

    fn poll_next(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Self::Item>> {
        let this = self.get_mut();
        let max = this.max;
        this.events
            .poll_with(cx, |subscription| subscription.take_batch(max).map(Some))
    }
}
