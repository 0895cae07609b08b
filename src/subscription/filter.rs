//! Which events a subscription delivers.

use super::EventLog;
use crate::query::Query;
use crate::retention::{redacted, Retained};
use crate::sealing::SUBJECT_TAG_PREFIX;
use crate::types::RecordedEvent;
use std::collections::HashSet;
use std::fmt;
use std::sync::Arc;

/// Which events a subscription delivers: every condition set must hold.
/// Conditions are checked on the event's stream name and type, which are
/// views of the record as read, so a skipped event costs no copy of its
/// payload.
///
/// ```
/// use evstore::Filter;
/// let orders = Filter::stream_prefix("order-");
/// let placed = Filter::event_types(["OrderPlaced", "OrderAmended"]);
/// let big = Filter::stream_prefix("order-").with_predicate(|e| e.payload.len() > 1024);
/// # let _ = (orders, placed, big);
/// ```
#[derive(Clone, Default)]
pub struct Filter {
    stream_prefix: Option<Box<str>>,
    event_types: Option<Arc<HashSet<Box<str>>>>,
    event_type_prefix: Option<Box<str>>,
    pub(super) query: Option<Arc<Query>>,
    pub(super) predicate: Option<Predicate>,
}

type Predicate = Arc<dyn Fn(&RecordedEvent) -> bool + Send + Sync>;

impl fmt::Debug for Filter {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Filter")
            .field("stream_prefix", &self.stream_prefix)
            .field("event_types", &self.event_types)
            .field("event_type_prefix", &self.event_type_prefix)
            .field("query", &self.query)
            .field("predicate", &self.predicate.as_ref().map(|_| "..."))
            .finish()
    }
}

impl Filter {
    /// Every event.
    #[must_use]
    pub fn all() -> Self {
        Filter::default()
    }

    /// Whether it sets no condition, so that every event passes it.
    pub(super) fn is_all(&self) -> bool {
        self.stream_prefix.is_none()
            && self.event_types.is_none()
            && self.event_type_prefix.is_none()
            && self.query.is_none()
            && self.predicate.is_none()
    }

    /// Events of streams whose name starts with `prefix`, such as a
    /// category (`"order-"`).
    pub fn stream_prefix(prefix: impl Into<String>) -> Self {
        Filter::all().with_stream_prefix(prefix)
    }

    /// Events whose type is one of `types`.
    pub fn event_types<T: Into<String>>(types: impl IntoIterator<Item = T>) -> Self {
        Filter::all().with_event_types(types)
    }

    /// Events whose type starts with `prefix`.
    pub fn event_type_prefix(prefix: impl Into<String>) -> Self {
        Filter::all().with_event_type_prefix(prefix)
    }

    /// Events for which `predicate` returns true.
    pub fn predicate(predicate: impl Fn(&RecordedEvent) -> bool + Send + Sync + 'static) -> Self {
        Filter::all().with_predicate(predicate)
    }

    /// Also requires the stream name to start with `prefix`.
    #[must_use]
    pub fn with_stream_prefix(mut self, prefix: impl Into<String>) -> Self {
        self.stream_prefix = Some(prefix.into().into_boxed_str());
        self
    }

    /// Also requires the event type to be one of `types`.
    #[must_use]
    pub fn with_event_types<T: Into<String>>(mut self, types: impl IntoIterator<Item = T>) -> Self {
        let types = types
            .into_iter()
            .map(|t| t.into().into_boxed_str())
            .collect();
        self.event_types = Some(Arc::new(types));
        self
    }

    /// Also requires the event type to start with `prefix`.
    #[must_use]
    pub fn with_event_type_prefix(mut self, prefix: impl Into<String>) -> Self {
        self.event_type_prefix = Some(prefix.into().into_boxed_str());
        self
    }

    /// Events matching `query` (types and tags). A subscription of the
    /// global log with a query catches up from the indexes: it reads only
    /// the matching events, not the whole log, until it nears the end. A
    /// query that reads refuse (no item, or an item naming nothing)
    /// matches no event.
    ///
    /// ```
    /// use evstore::{Filter, Query};
    /// let course = Filter::query(Query::tagged(["course:c1"]));
    /// # let _ = course;
    /// ```
    #[must_use]
    pub fn query(query: Query) -> Self {
        Filter::default().with_query(query)
    }

    /// Also requires the event to match `query`.
    #[must_use]
    pub fn with_query(mut self, query: Query) -> Self {
        self.query = Some(Arc::new(query));
        self
    }

    /// Also requires `predicate` to return true. It sees the event as it
    /// would be delivered, with its payload (a view of the log, not a copy,
    /// unless the event was sealed for a subject and is opened for it, or
    /// erased and seen as its redaction marker); it runs on the
    /// subscriber's thread, after the cheaper conditions.
    #[must_use]
    pub fn with_predicate(
        mut self,
        predicate: impl Fn(&RecordedEvent) -> bool + Send + Sync + 'static,
    ) -> Self {
        self.predicate = Some(Arc::new(predicate));
        self
    }

    /// Whether `event` passes.
    pub fn matches(&self, event: &RecordedEvent) -> bool {
        self.stream_prefix
            .as_deref()
            .is_none_or(|p| event.stream.starts_with(p))
            && self
                .event_types
                .as_ref()
                .is_none_or(|types| types.contains(&*event.event_type))
            && self
                .event_type_prefix
                .as_deref()
                .is_none_or(|p| event.event_type.starts_with(p))
            && self.query.as_ref().is_none_or(|q| q.matches(event))
            && self.predicate.as_ref().is_none_or(|p| p(event))
    }
}

/// Whether a subscription delivers an event: its stream still keeps it,
/// as seen by a subscriber that sees the log up to `end`, and its filter
/// passes it as it would be delivered: an erased event as its redaction
/// marker, and a sealed one opened for a predicate (which sees its payload).
pub(super) fn passes<'a>(
    filter: &'a Filter,
    retained: Option<&'a Retained>,
    log: &'a dyn EventLog,
    end: u64,
) -> impl Fn(&RecordedEvent) -> bool + 'a {
    move |event| {
        if !retained.is_none_or(|r| r.keeps(event, |s| log.last_visible_version(s, end))) {
            return false;
        }
        if retained.is_some_and(|r| r.redacts(event)) {
            return filter.matches(&redacted(event));
        }
        let sealed = || event.tags.iter().any(|t| t.starts_with(SUBJECT_TAG_PREFIX));
        if filter.predicate.is_some() && sealed() {
            let mut opened = event.clone();
            // One that cannot be opened is delivered, and its delivery
            // reports why.
            return log.unseal(&mut opened).is_err() || filter.matches(&opened);
        }
        filter.matches(event)
    }
}
