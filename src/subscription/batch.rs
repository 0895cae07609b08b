//! Several deliveries handed out at once, lent rather than copied.
//!
//! Subscribers that follow the log together read the same events from the
//! shared read-ahead. Handing each of them its own copy of every event
//! costs a clone per event and subscriber, and every clone and drop touches
//! the reference count of the segment view the event's bytes live in, which
//! all of them share: with many subscribers that count is what they queue
//! on. A batch instead holds the shared chunk once and lends its events out
//! by reference. Only events that a subscriber sees differently from the
//! others (sealed for a subject, or erased since) are copied and changed.

use super::read_ahead::Chunk;
use crate::types::RecordedEvent;
use std::sync::Arc;

/// Events delivered together by
/// [`Subscription::next_batch`](crate::Subscription::next_batch), in
/// order. It reads like a slice of events: [`EventBatch::iter`],
/// [`EventBatch::get`], `for event in &batch`.
///
/// ```
/// use evstore::{EventData, ExpectedVersion, Filter, Options, Store};
/// # let dir = tempfile::tempdir().unwrap();
/// let store = Store::open(dir.path(), Options::default()).unwrap();
/// for i in 0..3u8 {
///     store.append("s", ExpectedVersion::Any, &[EventData::new("E", vec![i])]).unwrap();
/// }
/// let mut subscription = store.subscribe_all(0, Filter::all());
/// let batch = subscription.next_batch(100).unwrap();
/// let positions: Vec<u64> = batch.iter().map(|e| e.position).collect();
/// assert_eq!(positions, [0, 1, 2]);
/// assert_eq!(subscription.checkpoint(), 3);
/// ```
#[derive(Debug, Default)]
pub struct EventBatch {
    /// The chunk that `Lent` entries point into.
    chunk: Option<Arc<Chunk>>,
    /// The events of the batch's own, in the order they were added.
    owned: Vec<RecordedEvent>,
    entries: Vec<Entry>,
}

#[derive(Debug, Clone, Copy)]
enum Entry {
    /// Event `i` of the chunk, as it is there.
    Lent(usize),
    /// Event `i` of `owned`.
    Owned(usize),
}

impl EventBatch {
    /// A batch lending events of `chunk`.
    pub(super) fn lending(chunk: Arc<Chunk>) -> Self {
        EventBatch {
            chunk: Some(chunk),
            owned: Vec::new(),
            entries: Vec::new(),
        }
    }

    /// Adds event `index` of the chunk, as it is there.
    pub(super) fn lend(&mut self, index: usize) {
        self.entries.push(Entry::Lent(index));
    }

    /// Adds an event of the batch's own.
    pub(super) fn own(&mut self, event: RecordedEvent) {
        self.entries.push(Entry::Owned(self.owned.len()));
        self.owned.push(event);
    }

    /// How many events it holds.
    #[must_use]
    pub fn len(&self) -> usize {
        self.entries.len()
    }

    /// Whether it holds none: the store closed and everything was
    /// delivered.
    #[must_use]
    pub fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }

    /// Event `i`, if there is one.
    #[must_use]
    pub fn get(&self, i: usize) -> Option<&RecordedEvent> {
        self.entries.get(i).and_then(|&entry| self.resolve(entry))
    }

    /// The last event, whose position (or version, for a stream
    /// subscription) plus one is where the subscription resumes.
    #[must_use]
    pub fn last(&self) -> Option<&RecordedEvent> {
        self.entries.last().and_then(|&entry| self.resolve(entry))
    }

    /// The events in order.
    #[must_use]
    pub fn iter(&self) -> Iter<'_> {
        Iter {
            batch: self,
            next: 0,
        }
    }

    /// The events as a vector of their own (each lent one cloned: a clone
    /// shares the event's bytes, it copies none).
    #[must_use]
    pub fn into_vec(self) -> Vec<RecordedEvent> {
        if self.chunk.is_none() {
            // Every event is the batch's own, in order: no copy at all.
            return self.owned;
        }
        self.iter().cloned().collect()
    }

    fn resolve(&self, entry: Entry) -> Option<&RecordedEvent> {
        match entry {
            Entry::Owned(i) => self.owned.get(i),
            Entry::Lent(i) => self.chunk.as_ref()?.events().get(i),
        }
    }
}

/// The events of an [`EventBatch`], in order.
#[derive(Debug)]
pub struct Iter<'a> {
    batch: &'a EventBatch,
    next: usize,
}

impl<'a> Iterator for Iter<'a> {
    type Item = &'a RecordedEvent;

    fn next(&mut self) -> Option<&'a RecordedEvent> {
        // Lent indexes are checked against the chunk when lent, so no entry
        // resolves to nothing and the iteration stops only at the end.
        let entry = *self.batch.entries.get(self.next)?;
        self.next += 1;
        self.batch.resolve(entry)
    }

    fn size_hint(&self) -> (usize, Option<usize>) {
        let left = self.batch.entries.len().saturating_sub(self.next);
        (left, Some(left))
    }
}

impl ExactSizeIterator for Iter<'_> {}

impl std::iter::FusedIterator for Iter<'_> {}

impl<'a> IntoIterator for &'a EventBatch {
    type Item = &'a RecordedEvent;
    type IntoIter = Iter<'a>;

    fn into_iter(self) -> Iter<'a> {
        self.iter()
    }
}
