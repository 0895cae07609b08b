//! How a disintegrate [`StreamQuery`] becomes an evstore [`Query`], and how
//! a read event is matched against it.
//!
//! disintegrate's reference back end (PostgreSQL) applies a filter's
//! identifiers to an event type only if that type declares them: a filter
//! `course_id == c1` over `[CourseCreated, StudentRegistered]`, where
//! `StudentRegistered` has no `course_id`, matches `CourseCreated` events of
//! course c1 and *every* `StudentRegistered` event. Decisions depend on
//! this (it decides which later events are conflicts), so each filter is
//! translated into one query item per event type, carrying only the tags
//! of the identifiers that type declares. Putting every identifier on
//! every item instead would never match `StudentRegistered` and would let
//! a conflicting append through.
//!
//! Each filter also has its own origin (the id after which its events
//! count); an evstore read starts at the lowest of them and
//! [`QueryPlan::matches`] drops what a filter with a later origin does not
//! want.

use disintegrate::{Event, IdentifierValue, StreamQuery};
use evstore::{Query, QueryItem, RecordedEvent};

/// The tag an event carries for its domain identifier `ident` of value
/// `value`: `ident:value`. Identifiers are Rust identifiers, so the first
/// `:` separates the two; a schema gives each identifier one type, so the
/// value's text is unambiguous.
#[must_use]
pub fn identifier_tag(ident: &str, value: &IdentifierValue) -> String {
    format!("{ident}:{value}")
}

/// One translated item: an event type, the tags it must carry, and the
/// disintegrate id after which it counts.
#[derive(Debug, Clone, PartialEq, Eq)]
struct PlanItem {
    event_type: &'static str,
    tags: Vec<String>,
    origin: u64,
}

/// A [`StreamQuery`] translated for evstore.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct QueryPlan {
    items: Vec<PlanItem>,
}

impl QueryPlan {
    /// Translates `query`: for each filter, one item per event type it
    /// names and does not exclude.
    pub(crate) fn new<E: Event + Clone>(query: &StreamQuery<u64, E>) -> Self {
        let mut items = Vec::new();
        for filter in query.filters() {
            let excluded = filter.excluded_events();
            for &event_type in filter.events() {
                if excluded.is_some_and(|excluded| excluded.contains(&event_type)) {
                    continue;
                }
                // A type missing from the schema declares no identifiers:
                // like the reference back end, the filter's identifiers
                // then do not narrow it.
                let declared = E::SCHEMA.event_info(event_type);
                let tags = filter
                    .identifiers()
                    .iter()
                    .filter(|(ident, _)| declared.is_some_and(|info| info.has_domain_id(ident)))
                    .map(|(ident, value)| identifier_tag(&ident.to_string(), value))
                    .collect();
                items.push(PlanItem {
                    event_type,
                    tags,
                    origin: filter.origin(),
                });
            }
        }
        QueryPlan { items }
    }

    /// Whether no event can match (every type excluded, or no filter).
    pub(crate) fn is_empty(&self) -> bool {
        self.items.is_empty()
    }

    /// The evstore query, origins left out; `None` when nothing can match.
    pub(crate) fn query(&self) -> Option<Query> {
        if self.items.is_empty() {
            return None;
        }
        Some(Query::items(self.items.iter().map(|item| {
            QueryItem::new()
                .types([item.event_type])
                .tags(item.tags.iter().cloned())
        })))
    }

    /// The first log position any item counts from: disintegrate id `n` is
    /// position `n - 1`, and an item with origin `o` wants ids above `o`,
    /// so positions from `o`.
    pub(crate) fn first_position(&self) -> u64 {
        self.items.iter().map(|item| item.origin).min().unwrap_or(0)
    }

    /// Whether `event` matches an item whose origin it is past.
    pub(crate) fn matches(&self, event: &RecordedEvent) -> bool {
        self.items.iter().any(|item| {
            event.position >= item.origin
                && *event.event_type == *item.event_type
                && item
                    .tags
                    .iter()
                    .all(|tag| event.tags.iter().any(|have| **have == **tag))
        })
    }
}
