//! The index of the segment being written, held in memory until the segment
//! is sealed and its index file is on disk.

use super::postings::Postings;
use std::collections::HashMap;
use std::hash::BuildHasher;
use std::sync::Arc;

/// A hash map keyed by values the engine itself computes or the caller chose
/// (ids, names): a fast hasher, randomly seeded.
pub type FastMap<K, V> = HashMap<K, V, foldhash::fast::RandomState>;

/// Slots found by the id at that slot.
#[derive(Debug, Default)]
struct IdSlots {
    table: hashbrown::HashTable<u32>,
    hasher: foldhash::fast::RandomState,
}

impl IdSlots {
    fn with_capacity(events: usize) -> Self {
        IdSlots {
            table: hashbrown::HashTable::with_capacity(events),
            hasher: foldhash::fast::RandomState::default(),
        }
    }

    /// Records that `id` is at `slot` (the latest slot wins), `ids` being
    /// every id by slot, `slot` included.
    fn insert(&mut self, ids: &[u128], id: u128, slot: u32) {
        let hasher = &self.hasher;
        let hash = hasher.hash_one(id);
        let id_at = |s: u32| ids.get(s as usize).copied();
        match self.table.entry(
            hash,
            |&s| id_at(s) == Some(id),
            |&s| id_at(s).map_or(0, |known| hasher.hash_one(known)),
        ) {
            hashbrown::hash_table::Entry::Occupied(mut found) => *found.get_mut() = slot,
            hashbrown::hash_table::Entry::Vacant(empty) => {
                empty.insert(slot);
            }
        }
    }

    /// The slot of `id`, `ids` being every id by slot.
    fn find(&self, ids: &[u128], id: u128) -> Option<u32> {
        self.table
            .find(self.hasher.hash_one(id), |&s| {
                ids.get(s as usize).copied() == Some(id)
            })
            .copied()
    }
}

/// One stream's events within a segment: a contiguous version range.
#[derive(Debug)]
pub struct MemStream {
    /// The version of the stream's first event in the segment.
    pub first_version: u64,
    /// The slot (position minus the segment's base) of each event, by
    /// version.
    pub slots: Vec<u32>,
    /// The ordinal of the stream's previous segment, where its events
    /// before `first_version` end, when it was known as the stream came
    /// here: lookups and the segment's directories start from it.
    pub previous_segment: Option<u32>,
}

/// Offsets, per-stream slots and event ids of one segment's events.
#[derive(Debug)]
pub struct MemIndex {
    /// `offsets[slot]` is the offset of the record at `base + slot`.
    pub offsets: Vec<u32>,
    /// `ids[slot]` is the id of the event at `base + slot`.
    pub ids: Vec<u128>,
    /// Each stream with events here.
    pub streams: FastMap<Arc<str>, MemStream>,
    /// The slots of `ids`, found by id: kept only while ids are looked up
    /// (the idempotency window is on). A table of slots, not of ids and
    /// slots, is a quarter of the size (an id is 16-byte aligned), so
    /// inserts and lookups miss the cache less; the id of a slot is read
    /// from `ids`.
    id_slots: Option<IdSlots>,
    /// The highest id here (0 when there is none). Default ids grow with
    /// time, so a new append's ids are above it and need no lookup.
    highest_id: u128,
    /// Slots by event type and tag.
    pub postings: Box<Postings>,
}

impl MemIndex {
    /// An empty index; `track_ids` builds the id lookup map.
    pub fn new(track_ids: bool) -> Self {
        Self::with_capacity(track_ids, 0)
    }

    /// An empty index with room for `events` events before any of its
    /// tables grows. A segment usually holds about as many events as the
    /// one before it, and growing the id map means rehashing every id
    /// while the writer holds the index lock.
    pub fn with_capacity(track_ids: bool, events: usize) -> Self {
        MemIndex {
            offsets: Vec::with_capacity(events),
            ids: Vec::with_capacity(events),
            streams: FastMap::default(),
            id_slots: track_ids.then(|| IdSlots::with_capacity(events)),
            highest_id: 0,
            postings: Box::default(),
        }
    }

    /// Events indexed.
    pub fn len(&self) -> usize {
        self.offsets.len()
    }

    /// Adds consecutive events of `stream`, the first of which has
    /// `first_version`, at the next slots.
    pub fn push(&mut self, stream: &Arc<str>, first_version: u64, offsets: &[u32], ids: &[u128]) {
        self.push_after(stream, first_version, None, offsets, ids);
    }

    /// [`MemIndex::push`], for a stream whose previous events end in
    /// segment `previous` (if known; kept only for its first events here).
    #[expect(
        clippy::cast_possible_truncation,
        reason = "a segment of at most 4 GiB holds fewer than 2^32 records"
    )]
    pub fn push_after(
        &mut self,
        stream: &Arc<str>,
        first_version: u64,
        previous: Option<u32>,
        offsets: &[u32],
        ids: &[u128],
    ) {
        let first_slot = self.offsets.len() as u32;
        self.offsets.extend_from_slice(offsets);
        self.ids.extend_from_slice(ids);
        if let Some(table) = self.id_slots.as_mut() {
            for (i, id) in ids.iter().enumerate() {
                table.insert(&self.ids, *id, first_slot + i as u32);
            }
        }
        self.highest_id = ids.iter().copied().fold(self.highest_id, u128::max);
        let slots = first_slot..first_slot + offsets.len() as u32;
        match self.streams.get_mut(&**stream) {
            Some(existing) => existing.slots.extend(slots),
            None => {
                self.streams.insert(
                    Arc::clone(stream),
                    MemStream {
                        first_version,
                        slots: slots.collect(),
                        previous_segment: previous,
                    },
                );
            }
        }
    }

    /// The slot of the event with this id, if it is here.
    #[expect(
        clippy::cast_possible_truncation,
        reason = "a segment of at most 4 GiB holds fewer than 2^32 records"
    )]
    pub fn find_id(&self, id: u128) -> Option<u32> {
        if id > self.highest_id {
            return None;
        }
        match &self.id_slots {
            Some(table) => table.find(&self.ids, id),
            None => self
                .ids
                .iter()
                .rposition(|&known| known == id)
                .map(|i| i as u32),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ids_are_found_in_any_order_and_ids_above_all_are_not() {
        for track_ids in [true, false] {
            let mut index = MemIndex::new(track_ids);
            let stream: Arc<str> = Arc::from("s");
            index.push(&stream, 0, &[0, 64], &[50, 10]);
            index.push(&stream, 2, &[128], &[30]);
            assert_eq!(index.find_id(50), Some(0), "the highest id");
            assert_eq!(index.find_id(10), Some(1), "an id below an earlier one");
            assert_eq!(index.find_id(30), Some(2));
            assert_eq!(index.find_id(51), None);
            assert_eq!(index.find_id(20), None);
        }
        assert_eq!(MemIndex::new(true).find_id(0), None);
    }

    #[test]
    #[expect(
        clippy::cast_possible_truncation,
        reason = "10,000 slots fit in 32 bits"
    )]
    fn the_id_table_answers_as_a_scan_of_the_ids_does_through_growth_and_repeats() {
        // Starting with no room, the table grows many times; every id is
        // pushed twice, far apart, and the later slot must win, as the
        // scan from the end finds it.
        let mut tracked = MemIndex::with_capacity(true, 0);
        let mut scanned = MemIndex::new(false);
        let stream: Arc<str> = Arc::from("s");
        let mut next = 0x9E37_79B9_7F4A_7C15_u128;
        let mut ids = Vec::new();
        for _ in 0..5_000 {
            next = next.wrapping_mul(0x2545_F491_4F6C_DD1D).wrapping_add(1);
            ids.push(next >> 3);
        }
        for (round, chunk) in ids.chunks(100).chain(ids.chunks(100)).enumerate() {
            let offsets: Vec<u32> = (0..chunk.len() as u32).collect();
            let version = 100 * round as u64;
            tracked.push(&stream, version, &offsets, chunk);
            scanned.push(&stream, version, &offsets, chunk);
        }
        for (i, &id) in ids.iter().enumerate() {
            let found = tracked.find_id(id);
            assert_eq!(found, scanned.find_id(id));
            assert_eq!(found, Some((ids.len() + i) as u32));
            assert_eq!(tracked.find_id(id ^ 1), scanned.find_id(id ^ 1));
        }
    }
}
