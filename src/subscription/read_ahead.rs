//! The shared read-ahead: recent stretches of the global log that one
//! subscription read and verified, handed to the others that come to the
//! same place, so that subscribers following the log together decode and
//! check each record once between them instead of once each.
//!
//! It holds chunks: runs of consecutive events exactly as a successful read
//! of the log returned them (every record passed its checks), keyed by first
//! position, never overlapping. A subscription looks for the chunk holding
//! its next position; on a miss it reads the log itself, up to the next
//! chunk held, and offers what it read. A read that fails offers nothing,
//! so a damaged record is never held: every subscription that reaches it
//! reads it itself and gets the error. The log below a watermark never
//! changes while the store is open, so a chunk stays true for as long as it
//! is held, whatever the watermark a later reader goes by (each reader still
//! takes nothing at or past its own).
//!
//! Memory is bounded: the newest chunks are kept up to a fixed number of
//! events and bytes, older ones dropped first. A subscription holds the
//! chunk it is delivering from until it moves on, as it held its own batch
//! before, so dropping a chunk never takes events from under anyone.

use crate::types::RecordedEvent;
use parking_lot::Mutex;
use std::collections::BTreeMap;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::Arc;

/// Events held at most: far more than one group commit adds, so a live
/// subscriber a few thousand events behind still finds what it needs.
const MAX_EVENTS: usize = 8192;
/// Bytes of events held at most (see [`Chunk::bytes`]).
const MAX_BYTES: usize = 8 << 20;

/// Consecutive events of the global log, each verified when it was read.
#[derive(Debug)]
pub struct Chunk {
    events: Vec<RecordedEvent>,
    /// What the events weigh: their variable parts and their own size.
    /// Views of a copied stretch of a segment can keep a little more of it
    /// alive, never more than the stretch the read needed and a page.
    bytes: usize,
}

impl Chunk {
    /// The events as a chunk, or back as they were unless they are
    /// consecutive positions (as every read of the log returns them).
    pub fn new(events: Vec<RecordedEvent>) -> Result<Chunk, Vec<RecordedEvent>> {
        let consecutive = events
            .windows(2)
            .all(|pair| pair.first().map(|e| e.position + 1) == pair.get(1).map(|e| e.position));
        if events.is_empty() || !consecutive {
            return Err(events);
        }
        let bytes = events
            .iter()
            .map(|e| {
                std::mem::size_of::<RecordedEvent>()
                    + e.stream.len()
                    + e.event_type.len()
                    + e.metadata.len()
                    + e.payload.len()
            })
            .sum();
        Ok(Chunk { events, bytes })
    }

    /// The position of the first event.
    pub fn first(&self) -> u64 {
        self.events.first().map_or(0, |e| e.position)
    }

    /// The position after the last event.
    pub fn end(&self) -> u64 {
        self.events.last().map_or(0, |e| e.position + 1)
    }

    /// The events, in position order.
    pub fn events(&self) -> &[RecordedEvent] {
        &self.events
    }

    /// The events, moved out.
    pub fn into_events(self) -> Vec<RecordedEvent> {
        self.events
    }
}

/// What a look-up found.
#[derive(Debug)]
pub enum Lookup {
    /// The chunk holding the position, and the generation it was read in
    /// (see [`ReadAhead::generation`]).
    Hit(Arc<Chunk>, u64),
    /// No chunk holds it; the first chunk after it starts here, if any.
    Miss { next: Option<u64> },
}

/// How the read-ahead served subscriptions: what they read from the log
/// themselves and what they took from each other.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct ReadAheadStats {
    /// Reads of the log subscriptions made themselves.
    pub reads: u64,
    /// Chunks taken from the read-ahead instead of reading the log.
    pub shared: u64,
    /// Chunks dropped to stay within the bounds.
    pub evicted: u64,
}

/// The read-ahead; one per store.
#[derive(Debug)]
pub struct ReadAhead {
    max_events: usize,
    max_bytes: usize,
    held: Mutex<Held>,
    /// Subscriptions of the global log open now.
    subscribers: AtomicUsize,
    reads: AtomicU64,
    shared: AtomicU64,
    evicted: AtomicU64,
    /// Moves on each time a scavenge replaces a segment file: what was
    /// read before may hold events the new file no longer has. Changed
    /// only with `held` locked; read without the lock by subscriptions
    /// before each delivery.
    generation: AtomicU64,
}

#[derive(Debug, Default)]
struct Held {
    chunks: BTreeMap<u64, Arc<Chunk>>,
    events: usize,
    bytes: usize,
}

impl Default for ReadAhead {
    fn default() -> Self {
        ReadAhead::with_limits(MAX_EVENTS, MAX_BYTES)
    }
}

impl ReadAhead {
    /// A read-ahead holding at most `max_events` events and `max_bytes`
    /// bytes.
    pub fn with_limits(max_events: usize, max_bytes: usize) -> Self {
        ReadAhead {
            max_events,
            max_bytes,
            held: Mutex::new(Held::default()),
            subscribers: AtomicUsize::new(0),
            reads: AtomicU64::new(0),
            shared: AtomicU64::new(0),
            evicted: AtomicU64::new(0),
            generation: AtomicU64::new(0),
        }
    }

    /// The chunk holding `position`, or where the next one starts.
    pub fn lookup(&self, position: u64) -> Lookup {
        let held = self.held.lock();
        if let Some((_, chunk)) = held.chunks.range(..=position).next_back() {
            if position < chunk.end() {
                let chunk = Arc::clone(chunk);
                let generation = self.generation.load(Ordering::Acquire);
                drop(held);
                self.shared.fetch_add(1, Ordering::Relaxed);
                return Lookup::Hit(chunk, generation);
            }
        }
        let next = held
            .chunks
            .range(position.saturating_add(1)..)
            .next()
            .map(|(&first, _)| first);
        drop(held);
        self.reads.fetch_add(1, Ordering::Relaxed);
        Lookup::Miss { next }
    }

    /// Counts a subscription of the global log, until [`ReadAhead::leave`].
    pub fn join(&self) {
        self.subscribers.fetch_add(1, Ordering::Relaxed);
    }

    /// Stops counting a subscription [`ReadAhead::join`] counted.
    pub fn leave(&self) {
        self.subscribers.fetch_sub(1, Ordering::Relaxed);
    }

    /// Whether a read of the log from `from`, by a subscription whose
    /// watermark is `end`, is worth offering: only when another
    /// subscription could take it, and only near the watermark, where other
    /// subscribers are likely to follow soon. A lone subscription, or one
    /// far behind, keeps its reads to itself, so it neither pays for
    /// sharing nor pushes the live subscribers' chunks out.
    pub fn worth_sharing(&self, from: u64, end: u64) -> bool {
        self.subscribers.load(Ordering::Relaxed) > 1
            && end.saturating_sub(from) <= self.max_events as u64
    }

    /// The generation reads of the log are in now: it moves on each time a
    /// scavenge replaces a segment file ([`ReadAhead::forget_all`]). A read
    /// takes it before it starts.
    pub fn generation(&self) -> u64 {
        self.generation.load(Ordering::Acquire)
    }

    /// Drops every chunk held and moves the generation on: a scavenge
    /// replaced a segment file, and chunks read from the old one may hold
    /// events the new one no longer has (which rules relaxed later would
    /// otherwise let through).
    ///
    /// Returns the chunks it dropped, for the caller to free once it has
    /// released whatever lock it holds (the index lock, with which the
    /// replacement was installed).
    #[must_use = "the chunks are freed where the result is dropped"]
    pub fn forget_all(&self) -> Vec<Arc<Chunk>> {
        let mut held = self.held.lock();
        self.generation.fetch_add(1, Ordering::AcqRel);
        let chunks = std::mem::take(&mut held.chunks);
        held.events = 0;
        held.bytes = 0;
        drop(held);
        chunks.into_values().collect()
    }

    /// Offers a chunk just read in generation `read_in`; returns whether it
    /// is held. It is not when it overlaps a chunk held (another
    /// subscription read the same events at the same time), is larger than
    /// the bounds, or was read before the generation moved on.
    pub fn offer(&self, chunk: &Arc<Chunk>, read_in: u64) -> bool {
        if chunk.events.len() > self.max_events || chunk.bytes > self.max_bytes {
            return false;
        }
        let (first, end) = (chunk.first(), chunk.end());
        let mut held = self.held.lock();
        if self.generation.load(Ordering::Acquire) != read_in {
            return false;
        }
        // The chunk starting last before `end` is the only one that could
        // overlap: chunks do not overlap each other.
        let overlaps = held
            .chunks
            .range(..end)
            .next_back()
            .is_some_and(|(_, other)| other.end() > first);
        if overlaps {
            return false;
        }
        held.events += chunk.events.len();
        held.bytes += chunk.bytes;
        held.chunks.insert(first, Arc::clone(chunk));
        let mut evicted = Vec::new();
        while held.events > self.max_events || held.bytes > self.max_bytes {
            let Some((_, oldest)) = held.chunks.pop_first() else {
                break;
            };
            held.events -= oldest.events.len();
            held.bytes -= oldest.bytes;
            evicted.push(oldest);
        }
        let kept = held.chunks.contains_key(&first);
        drop(held);
        if !evicted.is_empty() {
            self.evicted
                .fetch_add(evicted.len() as u64, Ordering::Relaxed);
        }
        // Freed here, with the lock released: dropping a chunk's events can
        // take a while, and other subscriptions are looking things up.
        drop(evicted);
        kept
    }

    /// How it served subscriptions so far.
    #[cfg_attr(not(feature = "testing"), allow(dead_code))]
    pub fn stats(&self) -> ReadAheadStats {
        ReadAheadStats {
            reads: self.reads.load(Ordering::Relaxed),
            shared: self.shared.load(Ordering::Relaxed),
            evicted: self.evicted.load(Ordering::Relaxed),
        }
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::indexing_slicing)]
mod tests {
    use super::*;
    use bytes::Bytes;
    use bytestring::ByteString;
    use uuid::Uuid;

    fn event(position: u64) -> RecordedEvent {
        RecordedEvent {
            stream: ByteString::from_static("s"),
            version: position,
            position,
            timestamp_nanos: 0,
            id: Uuid::from_u128(u128::from(position)),
            event_type: ByteString::from_static("T"),
            tags: Vec::new(),
            metadata: Bytes::new(),
            payload: Bytes::from(vec![0u8; 10]),
            erased: false,
        }
    }

    fn chunk(first: u64, len: u64) -> Arc<Chunk> {
        Arc::new(Chunk::new((first..first + len).map(event).collect()).unwrap())
    }

    fn hit(read_ahead: &ReadAhead, position: u64) -> Option<(u64, u64)> {
        match read_ahead.lookup(position) {
            Lookup::Hit(chunk, _) => Some((chunk.first(), chunk.end())),
            Lookup::Miss { .. } => None,
        }
    }

    #[test]
    fn a_chunk_is_consecutive_events() {
        assert!(Chunk::new(Vec::new()).is_err());
        assert!(Chunk::new(vec![event(3), event(5)]).is_err());
        assert!(Chunk::new(vec![event(4), event(3)]).is_err());
        let chunk = Chunk::new(vec![event(3), event(4), event(5)]).unwrap();
        assert_eq!((chunk.first(), chunk.end()), (3, 6));
    }

    #[test]
    fn lookups_find_the_chunk_holding_a_position_or_the_next_one() {
        let read_ahead = ReadAhead::default();
        assert!(read_ahead.offer(&chunk(10, 5), 0));
        assert!(read_ahead.offer(&chunk(20, 5), 0));
        assert_eq!(hit(&read_ahead, 10), Some((10, 15)));
        assert_eq!(hit(&read_ahead, 14), Some((10, 15)));
        assert_eq!(hit(&read_ahead, 22), Some((20, 25)));
        for (position, next) in [(0, Some(10)), (15, Some(20)), (19, Some(20)), (25, None)] {
            match read_ahead.lookup(position) {
                Lookup::Miss { next: found } => assert_eq!(found, next, "{position}"),
                Lookup::Hit(..) => panic!("{position} is not held"),
            }
        }
    }

    #[test]
    fn overlapping_offers_are_refused() {
        let read_ahead = ReadAhead::default();
        assert!(read_ahead.offer(&chunk(10, 10), 0));
        for (first, len) in [(10, 10), (5, 6), (19, 5), (12, 2), (0, 100)] {
            assert!(!read_ahead.offer(&chunk(first, len), 0), "{first}+{len}");
        }
        assert!(read_ahead.offer(&chunk(20, 3), 0));
        assert!(read_ahead.offer(&chunk(5, 5), 0));
        assert_eq!(hit(&read_ahead, 9), Some((5, 10)));
    }

    #[test]
    fn the_oldest_chunks_go_first_and_a_holder_keeps_its_own() {
        let read_ahead = ReadAhead::with_limits(20, usize::MAX);
        let first = chunk(0, 8);
        assert!(read_ahead.offer(&first, 0));
        assert!(read_ahead.offer(&chunk(8, 8), 0));
        assert!(read_ahead.offer(&chunk(16, 8), 0));
        assert_eq!(hit(&read_ahead, 3), None);
        assert_eq!(hit(&read_ahead, 8), Some((8, 16)));
        assert_eq!(read_ahead.stats().evicted, 1);
        // Still whole for whoever holds it.
        assert_eq!(first.events().len(), 8);
        // An old chunk offered late is the oldest: it does not stay.
        assert!(!read_ahead.offer(&chunk(0, 8), 0));
        assert_eq!(hit(&read_ahead, 16), Some((16, 24)));
        // Too big to hold at all.
        assert!(!read_ahead.offer(&chunk(100, 21), 0));
        let by_bytes = ReadAhead::with_limits(usize::MAX, 3 * first.bytes / 2);
        assert!(by_bytes.offer(&chunk(0, 8), 0));
        assert!(by_bytes.offer(&chunk(8, 8), 0));
        assert_eq!(hit(&by_bytes, 0), None);
        assert_eq!(hit(&by_bytes, 8), Some((8, 16)));
    }

    #[test]
    fn only_reads_near_the_watermark_with_company_are_shared() {
        let read_ahead = ReadAhead::with_limits(100, usize::MAX);
        read_ahead.join();
        assert!(!read_ahead.worth_sharing(900, 1000));
        read_ahead.join();
        assert!(read_ahead.worth_sharing(900, 1000));
        assert!(!read_ahead.worth_sharing(899, 1000));
        assert!(read_ahead.worth_sharing(0, 0));
        read_ahead.leave();
        assert!(!read_ahead.worth_sharing(900, 1000));
    }

    #[test]
    fn forgetting_drops_every_chunk_and_refuses_those_read_before() {
        let read_ahead = ReadAhead::with_limits(100, 1 << 20);
        let before = read_ahead.generation();
        assert!(read_ahead.offer(&chunk(10, 5), before));
        assert_eq!(read_ahead.forget_all().len(), 1);
        assert!(matches!(read_ahead.lookup(12), Lookup::Miss { next: None }));
        let now = read_ahead.generation();
        assert_ne!(now, before);
        // Read before the file was replaced: not shared.
        assert!(!read_ahead.offer(&chunk(10, 5), before));
        assert!(read_ahead.offer(&chunk(10, 5), now));
        assert!(matches!(read_ahead.lookup(12), Lookup::Hit(_, g) if g == now));
    }
}
