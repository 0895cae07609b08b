//! Queries over event types and tags, and the condition a commit can put on
//! what was appended since its decision was made (a Dynamic Consistency
//! Boundary).

use crate::error::{Error, Result};
use crate::types::RecordedEvent;

/// Which events a read or an [`AppendCondition`] is about: every event, or
/// those matching at least one of a list of [`QueryItem`]s.
///
/// ```
/// use evstore::{Query, QueryItem};
/// // Events of course c1 that change its capacity or subscribe a student.
/// let query = Query::items([
///     QueryItem::new().types(["CourseCapacityChanged"]).tags(["course:c1"]),
///     QueryItem::new().types(["StudentSubscribed"]).tags(["course:c1"]),
/// ]);
/// assert!(!query.is_all());
/// ```
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Query {
    /// `None`: every event.
    items: Option<Vec<QueryItem>>,
}

/// One alternative of a [`Query`]: events whose type is one of `types` (any
/// type if none is given) and that carry every tag of `tags`. An item must
/// name a type or a tag.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct QueryItem {
    types: Vec<String>,
    tags: Vec<String>,
}

impl QueryItem {
    /// An item naming nothing yet: give it types, tags or both.
    #[must_use]
    pub fn new() -> Self {
        QueryItem::default()
    }

    /// Adds event types, any of which matches.
    #[must_use]
    pub fn types<I, T>(mut self, types: I) -> Self
    where
        I: IntoIterator<Item = T>,
        T: Into<String>,
    {
        self.types.extend(types.into_iter().map(Into::into));
        self
    }

    /// Adds tags, all of which an event must carry.
    #[must_use]
    pub fn tags<I, T>(mut self, tags: I) -> Self
    where
        I: IntoIterator<Item = T>,
        T: Into<String>,
    {
        self.tags.extend(tags.into_iter().map(Into::into));
        self
    }

    /// The event types (any of them matches; none given: any type).
    #[must_use]
    pub fn event_types(&self) -> &[String] {
        &self.types
    }

    /// The tags an event must all carry.
    #[must_use]
    pub fn required_tags(&self) -> &[String] {
        &self.tags
    }

    /// Whether an event of `event_type` carrying `tags` (sorted) matches.
    /// An item naming nothing matches nothing, as the indexes answer it
    /// (reads and commits refuse such an item).
    pub(crate) fn matches_keys<S: AsRef<str>>(&self, event_type: &str, tags: &[S]) -> bool {
        !(self.types.is_empty() && self.tags.is_empty())
            && (self.types.is_empty() || self.types.iter().any(|t| t == event_type))
            && self.tags.iter().all(|wanted| {
                tags.binary_search_by(|have| have.as_ref().cmp(wanted.as_str()))
                    .is_ok()
            })
    }
}

impl Query {
    /// Every event.
    #[must_use]
    pub fn all() -> Self {
        Query { items: None }
    }

    /// Events matching any of `items`. A query of no item, or with an item
    /// naming neither a type nor a tag, is refused when used
    /// ([`Error::InvalidRequest`]).
    pub fn items(items: impl IntoIterator<Item = QueryItem>) -> Self {
        Query {
            items: Some(items.into_iter().collect()),
        }
    }

    /// Events carrying every one of `tags`, of any type: the query of a
    /// single item.
    ///
    /// ```
    /// use evstore::Query;
    /// let query = Query::tagged(["username:ada"]);
    /// ```
    pub fn tagged<I, T>(tags: I) -> Self
    where
        I: IntoIterator<Item = T>,
        T: Into<String>,
    {
        Query::items([QueryItem::new().tags(tags)])
    }

    /// Whether this is [`Query::all`].
    #[must_use]
    pub fn is_all(&self) -> bool {
        self.items.is_none()
    }

    /// The items, unless this is [`Query::all`].
    #[must_use]
    pub fn query_items(&self) -> Option<&[QueryItem]> {
        self.items.as_deref()
    }

    /// Whether `event` matches.
    ///
    /// ```
    /// # use evstore::{EventData, ExpectedVersion, Options, Query, QueryItem, Store};
    /// # let dir = tempfile::tempdir().unwrap();
    /// # let store = Store::open(dir.path(), Options::default()).unwrap();
    /// let event = EventData::new("Registered", &b""[..]).with_tags(["user:7"]);
    /// store.append("user-7", ExpectedVersion::NoStream, &[event]).unwrap();
    /// let stored = &store.read_stream("user-7", 0, evstore::Direction::Forward, 1).unwrap()[0];
    /// assert!(Query::tagged(["user:7"]).matches(stored));
    /// assert!(!Query::items([QueryItem::new().types(["Deleted"])]).matches(stored));
    /// ```
    #[must_use]
    pub fn matches(&self, event: &RecordedEvent) -> bool {
        self.matches_keys(&event.event_type, &event.tags)
    }

    pub(crate) fn matches_keys<S: AsRef<str>>(&self, event_type: &str, tags: &[S]) -> bool {
        match &self.items {
            None => true,
            Some(items) => items.iter().any(|item| item.matches_keys(event_type, tags)),
        }
    }

    /// Refuses a query that names no item, or an item that names nothing.
    pub(crate) fn validate(&self) -> Result<()> {
        let refuse = |reason: &str| {
            Err(Error::InvalidRequest {
                what: "query",
                reason: reason.into(),
            })
        };
        let Some(items) = &self.items else {
            return Ok(());
        };
        if items.is_empty() {
            return refuse("it has no item (Query::all() selects every event)");
        }
        if items
            .iter()
            .any(|i| i.types.is_empty() && i.tags.is_empty())
        {
            return refuse("an item names neither an event type nor a tag");
        }
        Ok(())
    }
}

/// What a commit requires of the log besides expected versions: no event
/// matching `fail_if_events_match` may have been appended after position
/// `after` (`None`: none at all). A decision made from a read by query
/// passes that read's head as `after`; if anything it read could have
/// changed since, the commit fails with
/// [`Error::AppendConditionFailed`] and writes nothing.
///
/// ```
/// use evstore::{AppendCondition, Query};
/// let condition = AppendCondition::new(Query::tagged(["username:ada"]), None);
/// assert_eq!(condition.after, None);
/// ```
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AppendCondition {
    /// The events whose appearance fails the commit.
    pub fail_if_events_match: Query,
    /// Only events after this position count.
    pub after: Option<u64>,
}

impl AppendCondition {
    /// Fails the commit if an event matching `query` is at a position after
    /// `after`.
    #[must_use]
    pub fn new(query: Query, after: Option<u64>) -> Self {
        AppendCondition {
            fail_if_events_match: query,
            after,
        }
    }

    /// The first position an event must be at to fail the condition.
    pub(crate) fn first_counted(&self) -> u64 {
        self.after.map_or(0, |a| a.saturating_add(1))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn items_match_any_listed_type_and_every_listed_tag() {
        let item = QueryItem::new().types(["A", "B"]).tags(["x", "y"]);
        assert!(item.matches_keys("A", &["w", "x", "y"]));
        assert!(item.matches_keys("B", &["x", "y"]));
        assert!(!item.matches_keys("C", &["x", "y"]));
        assert!(!item.matches_keys("A", &["x"]));
        let only_tags = QueryItem::new().tags(["x"]);
        assert!(only_tags.matches_keys("anything", &["x"]));
        let only_types = QueryItem::new().types(["A"]);
        assert!(only_types.matches_keys("A", &[] as &[&str]));
        let query = Query::items([only_tags, only_types]);
        assert!(query.matches_keys("A", &[] as &[&str]));
        assert!(query.matches_keys("Z", &["x"]));
        assert!(!query.matches_keys("Z", &["y"]));
        assert!(Query::all().matches_keys("Z", &[] as &[&str]));
    }

    #[test]
    fn empty_queries_and_items_are_refused() {
        assert!(Query::items([]).validate().is_err());
        assert!(Query::items([QueryItem::new()]).validate().is_err());
        assert!(Query::tagged(["a"]).validate().is_ok());
        assert!(Query::all().validate().is_ok());
    }
}
