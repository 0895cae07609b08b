//! Subscriptions: the store as the log a subscription reads, catching up
//! and then following live.

use super::Store;
use crate::error::{Error, Result};
use crate::progress::Progress;
use crate::query::Query;
use crate::retention::Retained;
use crate::subscription::{EventLog, Filter, ReadAhead, Subscription, Visibility};
use crate::types::{Direction, RecordedEvent};
use crate::validate::validate_stream_name;
use std::sync::atomic::Ordering;
use std::sync::Arc;

impl Store {
    /// Subscribes to the global log from position `from` (a checkpoint:
    /// [`Subscription::checkpoint`] of an earlier subscription, or 0 for the
    /// start, or [`Store::last_position`] + 1 for only new events),
    /// delivering the events `filter` passes. Sees durable events only,
    /// unless [`Subscription::with_visibility`] says otherwise.
    ///
    /// ```
    /// use evstore::{EventData, ExpectedVersion, Filter, Options, Store};
    /// # let dir = tempfile::tempdir().unwrap();
    /// let store = Store::open(dir.path(), Options::default()).unwrap();
    /// store.append("order-1", ExpectedVersion::Any, &[EventData::new("OrderPlaced", &b""[..])]).unwrap();
    /// store.append("user-1", ExpectedVersion::Any, &[EventData::new("UserJoined", &b""[..])]).unwrap();
    ///
    /// let mut orders = store.subscribe_all(0, Filter::stream_prefix("order-"));
    /// let first = orders.next().unwrap().unwrap();           // history...
    /// assert_eq!(&first.stream[..], "order-1");
    ///
    /// let writer = store.clone();
    /// std::thread::spawn(move || {
    ///     writer.append("order-2", ExpectedVersion::Any, &[EventData::new("OrderPlaced", &b""[..])]).unwrap();
    /// });
    /// let live = orders.next().unwrap().unwrap();            // ...then live, blocking until it comes
    /// assert_eq!((&live.stream[..], live.position), ("order-2", 2));
    /// assert_eq!(orders.checkpoint(), 3);                     // resume from here later
    /// ```
    #[must_use]
    pub fn subscribe_all(&self, from: u64, filter: Filter) -> Subscription {
        Subscription::to_all(self.event_log(), from, filter)
    }

    /// Subscribes to one stream from version `from_version`: its events in
    /// order, then new ones as they are appended.
    ///
    /// # Errors
    /// [`Error::InvalidStreamName`] for a name appends would refuse.
    pub fn subscribe_stream(&self, stream: &str, from_version: u64) -> Result<Subscription> {
        validate_stream_name(stream, self.options().max_stream_name_len)?;
        Ok(Subscription::to_stream(
            self.event_log(),
            stream,
            from_version,
        ))
    }
}

impl Store {
    /// How the read-ahead that subscriptions of the global log share has
    /// served them so far: how the tests see that they share.
    #[cfg(feature = "testing")]
    #[must_use]
    pub fn read_ahead_stats(&self) -> crate::subscription::ReadAheadStats {
        self.state().read_ahead.stats()
    }

    /// This store as the log a subscription reads.
    pub(crate) fn event_log(&self) -> Arc<dyn EventLog> {
        Arc::new(self.clone())
    }
}

impl EventLog for Store {
    fn watermark(&self, visibility: Visibility) -> u64 {
        let state = self.state();
        match visibility {
            Visibility::Durable => state.durable.load(Ordering::Acquire),
            Visibility::Written => state.written.load(Ordering::Acquire),
        }
    }

    fn progress(&self, visibility: Visibility) -> &Progress {
        let state = self.state();
        match visibility {
            Visibility::Durable => &state.durable_progress,
            Visibility::Written => &state.written_progress,
        }
    }

    fn poisoned(&self) -> Option<Error> {
        self.state().poisoned()
    }

    fn read_ahead(&self) -> &ReadAhead {
        &self.state().read_ahead
    }

    fn probes(&self) -> &crate::telemetry::Probes {
        &self.state().probes
    }

    fn read_all_below(&self, from: u64, max: usize, end: u64) -> Result<Vec<RecordedEvent>> {
        Store::read_all_below(self, from, Direction::Forward, max, end)
    }

    fn is_removed(&self, position: u64) -> bool {
        self.state().index.read().removed_span(position).is_some()
    }

    fn read_query_below(
        &self,
        query: &Query,
        from: u64,
        max: usize,
        end: u64,
    ) -> Result<Vec<RecordedEvent>> {
        self.read_matching(query, from, end, Direction::Forward, max)
    }

    fn read_stream_below(
        &self,
        stream: &str,
        from: u64,
        max: usize,
        end: u64,
    ) -> Result<Vec<RecordedEvent>> {
        Store::read_stream_below(self, stream, from, Direction::Forward, max, end)
    }

    fn retained_and_end(&self) -> Result<(Retained, u64)> {
        Store::retained_and_end(self)
    }

    fn newest_lifecycle(&self) -> Option<u64> {
        Store::newest_lifecycle(self)
    }

    fn last_visible_version(&self, stream: &str, end: u64) -> Option<u64> {
        Store::last_visible_version(self, stream, end)
    }

    fn unseal(&self, event: &mut RecordedEvent) -> Result<()> {
        Store::unseal_in_place(self, event)
    }
}
