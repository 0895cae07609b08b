//! One segment's events by type and by tag: for each event type and each
//! tag, the slots (position minus the segment's base) of the events that
//! have it, ascending. A query is answered from these lists, so its cost
//! grows with the lists it touches, not with the segment.

use super::memory::FastMap;
use crate::query::{Query, QueryItem};
use std::borrow::Cow;

/// Slots by event type and by tag.
#[derive(Debug, Default)]
pub struct Postings {
    types: FastMap<Box<str>, Vec<u32>>,
    tags: FastMap<Box<str>, Vec<u32>>,
    /// Slots indexed: every slot below it is in the lists it belongs to.
    len: u32,
}

fn add(map: &mut FastMap<Box<str>, Vec<u32>>, key: &str, slot: u32) {
    match map.get_mut(key) {
        Some(slots) => slots.push(slot),
        None => {
            map.insert(Box::from(key), vec![slot]);
        }
    }
}

fn add_run(map: &mut FastMap<Box<str>, Vec<u32>>, key: &str, slots: std::ops::Range<u32>) {
    match map.get_mut(key) {
        Some(list) => list.extend(slots),
        None => {
            map.insert(Box::from(key), slots.collect());
        }
    }
}

/// The slots of `list` from `from` on.
fn from_slot(list: &[u32], from: u32) -> &[u32] {
    list.get(list.partition_point(|&s| s < from)..)
        .unwrap_or_default()
}

impl Postings {
    /// Adds the event at `slot`, after every slot added before.
    pub fn push<S: AsRef<str>>(&mut self, slot: u32, event_type: &str, tags: &[S]) {
        debug_assert!(slot >= self.len, "slots are added in order");
        add(&mut self.types, event_type, slot);
        for tag in tags {
            add(&mut self.tags, tag.as_ref(), slot);
        }
        self.len = slot.saturating_add(1);
    }

    /// Adds the events at `slots`, all of this type and with these tags,
    /// after every slot added before: one lookup per key for the run.
    pub fn push_run<S: AsRef<str>>(
        &mut self,
        slots: std::ops::Range<u32>,
        event_type: &str,
        tags: &[S],
    ) {
        debug_assert!(slots.start >= self.len, "slots are added in order");
        if slots.is_empty() {
            return;
        }
        add_run(&mut self.types, event_type, slots.clone());
        for tag in tags {
            add_run(&mut self.tags, tag.as_ref(), slots.clone());
        }
        self.len = slots.end;
    }

    /// Every list: its kind, its key and its slots.
    pub fn lists(&self) -> impl Iterator<Item = (KeyKind, &str, &[u32])> {
        let types = self
            .types
            .iter()
            .map(|(k, v)| (KeyKind::Type, &**k, v.as_slice()));
        let tags = self
            .tags
            .iter()
            .map(|(k, v)| (KeyKind::Tag, &**k, v.as_slice()));
        types.chain(tags)
    }
}

impl PostingLists for Postings {
    fn list(&self, kind: KeyKind, key: &str, from: u32) -> Option<Cow<'_, [u32]>> {
        let map = match kind {
            KeyKind::Type => &self.types,
            KeyKind::Tag => &self.tags,
        };
        map.get(key)
            .map(|list| Cow::Borrowed(from_slot(list, from)))
    }

    fn slot_count(&self) -> u32 {
        self.len
    }
}

/// What a list is keyed by.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum KeyKind {
    /// An event type.
    Type,
    /// A tag.
    Tag,
}

/// A segment's lists of slots by event type and tag, wherever they are
/// kept, and the queries answered from them.
pub trait PostingLists {
    /// The slots from `from` on of the events with this type or tag,
    /// ascending; `None` if no event of the segment has it.
    fn list(&self, kind: KeyKind, key: &str, from: u32) -> Option<Cow<'_, [u32]>>;

    /// Slots covered: every event of the segment below it is listed.
    fn slot_count(&self) -> u32;

    /// The slots from `from` on of the events matching `query`, ascending.
    fn matching(&self, query: &Query, from: u32) -> Vec<u32> {
        let Some(items) = query.query_items() else {
            return (from..self.slot_count()).collect();
        };
        let lists: Vec<Vec<u32>> = items.iter().map(|i| item_slots(self, i, from)).collect();
        if lists.len() == 1 {
            return lists.into_iter().next().unwrap_or_default();
        }
        let borrowed: Vec<&[u32]> = lists.iter().map(Vec::as_slice).collect();
        union(&borrowed)
    }

    /// The first slot from `from` on of an event matching `query`.
    fn first_match(&self, query: &Query, from: u32) -> Option<u32> {
        if query.is_all() {
            return (from < self.slot_count()).then_some(from);
        }
        self.matching(query, from).first().copied()
    }
}

/// The slots from `from` on of the events matching `item`, ascending.
fn item_slots<P: PostingLists + ?Sized>(lists: &P, item: &QueryItem, from: u32) -> Vec<u32> {
    let mut tag_lists = Vec::with_capacity(item.required_tags().len());
    for tag in item.required_tags() {
        match lists.list(KeyKind::Tag, tag, from) {
            Some(list) => tag_lists.push(list),
            None => return Vec::new(),
        }
    }
    let type_lists: Vec<Cow<'_, [u32]>> = item
        .event_types()
        .iter()
        .filter_map(|t| lists.list(KeyKind::Type, t, from))
        .collect();
    if !item.event_types().is_empty() && type_lists.is_empty() {
        return Vec::new();
    }
    // Start from the shortest tag list and keep the slots every other list
    // (and one of the type lists, if types are given) holds.
    tag_lists.sort_by_key(|l| l.len());
    if tag_lists.len() == 1 && type_lists.is_empty() {
        // The common query of one tag: its list is the answer, taken as it
        // is instead of being filtered into a list grown slot by slot.
        return tag_lists.pop().map(Cow::into_owned).unwrap_or_default();
    }
    let Some((shortest, others)) = tag_lists.split_first() else {
        let borrowed: Vec<&[u32]> = type_lists.iter().map(AsRef::as_ref).collect();
        return union(&borrowed);
    };
    shortest
        .iter()
        .copied()
        .filter(|slot| others.iter().all(|l| l.binary_search(slot).is_ok()))
        .filter(|slot| {
            type_lists.is_empty() || type_lists.iter().any(|l| l.binary_search(slot).is_ok())
        })
        .collect()
}

/// The sorted union of sorted lists, without repeats.
fn union(lists: &[&[u32]]) -> Vec<u32> {
    match lists {
        [] => Vec::new(),
        [one] => one.to_vec(),
        _ => {
            let mut all: Vec<u32> = lists.iter().flat_map(|l| l.iter().copied()).collect();
            all.sort_unstable();
            all.dedup();
            all
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sample() -> Postings {
        let mut p = Postings::default();
        p.push(0, "A", &["x", "y"]);
        p.push(1, "B", &["x"]);
        p.push(2, "A", &["y"]);
        p.push(3, "C", &[] as &[&str]);
        p.push(4, "B", &["x", "y"]);
        p
    }

    #[test]
    fn a_run_lists_what_its_events_one_by_one_would() {
        let mut one_by_one = Postings::default();
        let mut runs = Postings::default();
        for slot in 0..3 {
            one_by_one.push(slot, "A", &["x", "y"]);
        }
        one_by_one.push(3, "B", &["x"]);
        one_by_one.push(4, "B", &["x"]);
        runs.push_run(0..3, "A", &["x", "y"]);
        runs.push_run(3..3, "C", &["z"]);
        runs.push_run(3..5, "B", &["x"]);
        let lists = |p: &Postings| {
            let mut all: Vec<_> = p
                .lists()
                .map(|(k, key, l)| (k, key.to_string(), l.to_vec()))
                .collect();
            all.sort();
            all
        };
        assert_eq!(lists(&runs), lists(&one_by_one));
        assert_eq!(runs.slot_count(), 5);
    }

    #[test]
    fn queries_match_what_a_scan_would() {
        let p = sample();
        let q = |items: Vec<QueryItem>| Query::items(items);
        assert_eq!(p.matching(&Query::tagged(["x"]), 0), [0, 1, 4]);
        assert_eq!(p.matching(&Query::tagged(["x", "y"]), 0), [0, 4]);
        assert_eq!(p.matching(&Query::tagged(["x", "y"]), 1), [4]);
        assert_eq!(p.matching(&Query::tagged(["z"]), 0), [] as [u32; 0]);
        assert_eq!(
            p.matching(&q(vec![QueryItem::new().types(["A", "C"])]), 0),
            [0, 2, 3]
        );
        assert_eq!(
            p.matching(&q(vec![QueryItem::new().types(["B"]).tags(["y"])]), 0),
            [4]
        );
        assert_eq!(
            p.matching(
                &q(vec![
                    QueryItem::new().types(["C"]),
                    QueryItem::new().tags(["y"]).types(["A"]),
                ]),
                0
            ),
            [0, 2, 3]
        );
        assert_eq!(
            p.matching(&q(vec![QueryItem::new().types(["Z"]).tags(["x"])]), 0),
            [] as [u32; 0]
        );
        assert_eq!(p.first_match(&Query::tagged(["y"]), 3), Some(4));
        assert_eq!(p.first_match(&Query::all(), 4), Some(4));
        assert_eq!(p.first_match(&Query::all(), 5), None);
        assert_eq!(p.matching(&Query::all(), 3), [3, 4]);
    }
}
