//! The index of the segment being written, held in memory until the segment
//! is sealed and its index file is on disk.

use std::collections::HashMap;
use std::sync::Arc;

/// A hash map keyed by values the engine itself computes or the caller chose
/// (ids, names): a fast hasher, randomly seeded.
pub type FastMap<K, V> = HashMap<K, V, foldhash::fast::RandomState>;

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
    /// Id to slot, kept only while ids are looked up (the idempotency
    /// window is on).
    id_slots: Option<FastMap<u128, u32>>,
}

impl MemIndex {
    /// An empty index; `track_ids` builds the id lookup map.
    pub fn new(track_ids: bool) -> Self {
        MemIndex {
            offsets: Vec::new(),
            ids: Vec::new(),
            streams: FastMap::default(),
            id_slots: track_ids.then(FastMap::default),
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
        if let Some(map) = self.id_slots.as_mut() {
            for (i, id) in ids.iter().enumerate() {
                map.insert(*id, first_slot + i as u32);
            }
        }
        let slots = (first_slot..first_slot + offsets.len() as u32).collect::<Vec<_>>();
        match self.streams.get_mut(&**stream) {
            Some(existing) => existing.slots.extend(slots),
            None => {
                self.streams.insert(
                    Arc::clone(stream),
                    MemStream {
                        first_version,
                        slots,
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
        match &self.id_slots {
            Some(map) => map.get(&id).copied(),
            None => self
                .ids
                .iter()
                .rposition(|&known| known == id)
                .map(|i| i as u32),
        }
    }
}
