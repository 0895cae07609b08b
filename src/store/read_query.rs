//! Reading the events that match a [`Query`], from the type and tag
//! postings of each segment, with the head the read was served at.

use super::Store;
use crate::error::Result;
use crate::event_view::EventView;
use crate::index::deferred_check::read_checked;
use crate::log::Segment;
use crate::query::Query;
use crate::retention::redacted;
use crate::sealing::SUBJECT_TAG_PREFIX;
use crate::types::{Direction, RecordedEvent};

/// What [`Store::read_query`] found.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct QueryRead {
    /// The matching events, in the order read.
    pub events: Vec<RecordedEvent>,
    /// The position of the last event in the log when the read was served
    /// (`None`: the log was empty). A decision made from every matching
    /// event passes it as [`crate::AppendCondition::after`]; a read cut
    /// short by its limit passes the position of the last event it used
    /// instead.
    pub head: Option<u64>,
}

/// The positions `start..stop` a read from `from_position` in `direction`
/// covers in a log that ends at `end`.
fn positions_to_read(from_position: u64, direction: Direction, end: u64) -> (u64, u64) {
    match direction {
        Direction::Forward => (from_position.min(end), end),
        Direction::Backward => (0, from_position.saturating_add(1).min(end)),
    }
}

/// What a lending read handed out so far, for its metrics.
#[derive(Default)]
pub(super) struct Lent {
    /// Events lent.
    pub events: usize,
    /// Their payload and metadata bytes.
    pub bytes: u64,
}

/// What [`Store::visit_query`] did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub struct QueryVisit {
    /// The events lent to the visitor.
    pub visited: usize,
    /// As [`QueryRead::head`].
    pub head: Option<u64>,
}

impl Store {
    /// Reads up to `max_count` events matching `query`, starting at
    /// `from_position` (inclusive) in position order (`Forward`), or
    /// from it down (`Backward`; `u64::MAX` starts at the newest event).
    /// Answered from the type and tag postings of each segment: the cost
    /// grows with the matching events, not with the log.
    ///
    /// # Errors
    ///
    /// [`Error::InvalidRequest`](crate::Error::InvalidRequest) for a query with no item or an item naming
    /// nothing; [`Error::Corrupted`](crate::Error::Corrupted) or [`Error::Io`](crate::Error::Io) if the log or its
    /// indexes cannot be read.
    ///
    /// ```
    /// use evstore::{Direction, EventData, ExpectedVersion, Options, Query, QueryItem, Store};
    /// # let dir = tempfile::tempdir().unwrap();
    /// let store = Store::open(dir.path(), Options::default()).unwrap();
    /// let subscribed = |student: &str| {
    ///     EventData::new("StudentSubscribed", &b"{}"[..])
    ///         .with_tags(["course:c1".to_string(), format!("student:{student}")])
    /// };
    /// store.append("course-c1", ExpectedVersion::Any, &[subscribed("s1"), subscribed("s2")]).unwrap();
    /// store.append("other", ExpectedVersion::Any, &[EventData::new("Noise", &b""[..])]).unwrap();
    ///
    /// let read = store.read_query(&Query::tagged(["course:c1"]), 0, Direction::Forward, 100).unwrap();
    /// assert_eq!(read.events.len(), 2);
    /// assert_eq!(read.head, Some(2));
    /// let newest = store
    ///     .read_query(&Query::items([QueryItem::new().types(["StudentSubscribed"])]), u64::MAX, Direction::Backward, 1)
    ///     .unwrap();
    /// assert_eq!(&*newest.events[0].tags[1], "student:s2");
    /// ```
    pub fn read_query(
        &self,
        query: &Query,
        from_position: u64,
        direction: Direction,
        max_count: usize,
    ) -> Result<QueryRead> {
        query.validate()?;
        let end = self.visible_end();
        let head = end.checked_sub(1);
        let (start, stop) = positions_to_read(from_position, direction, end);
        let retained = self.retained()?;
        if retained.keeps_everything() {
            let events = self.read_matching(query, start, stop, direction, max_count)?;
            let events = self.finish_read(events, &retained, true)?;
            return Ok(QueryRead { events, head });
        }
        // Events their streams no longer keep are skipped, so a read may
        // take several rounds to fill `max_count`.
        let (mut start, mut stop) = (start, stop);
        let mut events = Vec::new();
        while events.len() < max_count {
            let want = max_count - events.len();
            let mut batch = self.read_matching(query, start, stop, direction, want)?;
            let Some(last) = batch.last().map(|e| e.position) else {
                break;
            };
            let short = batch.len() < want;
            // An erased event is handed out as a redaction marker (no type,
            // no tags): it answers the query only if the marker does, as it
            // will once a scavenge has replaced it with one.
            batch.retain(|e| {
                retained.keeps(e, |s| self.last_visible_version(s, end))
                    && (!retained.redacts(e) || query.matches(&redacted(e)))
            });
            events.append(&mut batch);
            if short {
                break;
            }
            match direction {
                Direction::Forward => start = last + 1,
                Direction::Backward => stop = last,
            }
        }
        let events = self.finish_read(events, &retained, true)?;
        Ok(QueryRead { events, head })
    }

    /// Reads up to `max_count` events matching `query` after position
    /// `after` (`None`: from the start), in position order: the read a
    /// decision is made from, whose head its
    /// [`crate::AppendCondition`] then passes as `after`.
    ///
    /// # Errors
    ///
    /// As [`Store::read_query`].
    ///
    /// ```
    /// use evstore::{AppendCondition, Commit, EventData, ExpectedVersion, Options, Query, Store};
    /// # let dir = tempfile::tempdir().unwrap();
    /// let store = Store::open(dir.path(), Options::default()).unwrap();
    /// let query = Query::tagged(["invoice-number"]);
    /// let read = store.read_query_after(&query, None, usize::MAX).unwrap();
    /// let next_number = read.events.len() + 1;
    /// let issue = EventData::new("InvoiceCreated", format!("{next_number}").into_bytes())
    ///     .with_tags(["invoice-number"]);
    /// store
    ///     .commit(&Commit::new()
    ///         .append("invoice-1", ExpectedVersion::NoStream, [issue])
    ///         .condition(AppendCondition::new(query, read.head)))
    ///     .unwrap();
    /// ```
    pub fn read_query_after(
        &self,
        query: &Query,
        after: Option<u64>,
        max_count: usize,
    ) -> Result<QueryRead> {
        let from = after.map_or(0, |a| a.saturating_add(1));
        if after == Some(u64::MAX) {
            query.validate()?;
            return Ok(QueryRead {
                events: Vec::new(),
                head: self.visible_end().checked_sub(1),
            });
        }
        self.read_query(query, from, Direction::Forward, max_count)
    }

    /// [`Store::read_query`], with each event lent to `visit` for the
    /// length of the call instead of returned: its strings and bytes are
    /// borrowed from the log, so no event is built, counted or freed. The
    /// same events in the same order as [`Store::read_query`] with the same
    /// arguments; a decision folded over them (a DCB decision model, an
    /// aggregate's state) then costs about the checksum of each record.
    ///
    /// # Errors
    ///
    /// As [`Store::read_query`]; the events lent before an error were read
    /// and checked.
    ///
    /// ```
    /// use evstore::{Direction, EventData, ExpectedVersion, Options, Query, Store};
    /// # let dir = tempfile::tempdir().unwrap();
    /// let store = Store::open(dir.path(), Options::default()).unwrap();
    /// for seats in [3u8, 4] {
    ///     let event = EventData::new("CapacityChanged", vec![seats]).with_tags(["course:c1"]);
    ///     store.append("course-c1", ExpectedVersion::Any, &[event]).unwrap();
    /// }
    /// let mut capacity = 0;
    /// let visit = store
    ///     .visit_query(&Query::tagged(["course:c1"]), 0, Direction::Forward, usize::MAX, |e| {
    ///         capacity = e.payload[0];
    ///     })
    ///     .unwrap();
    /// assert_eq!((capacity, visit.visited, visit.head), (4, 2, Some(1)));
    /// ```
    pub fn visit_query(
        &self,
        query: &Query,
        from_position: u64,
        direction: Direction,
        max_count: usize,
        mut visit: impl FnMut(&EventView<'_>),
    ) -> Result<QueryVisit> {
        query.validate()?;
        let end = self.visible_end();
        let head = end.checked_sub(1);
        let (start, stop) = positions_to_read(from_position, direction, end);
        let retained = self.retained()?;
        if !retained.keeps_everything() || query.is_all() {
            // Events some stream no longer keeps in full are judged one by
            // one, and the whole log is read in order: both as decoded
            // events, each then lent.
            let read = self.read_query(query, from_position, direction, max_count)?;
            for event in &read.events {
                visit(&EventView::from(event));
            }
            return Ok(QueryVisit {
                visited: read.events.len(),
                head: read.head,
            });
        }
        if start >= stop || max_count == 0 {
            return Ok(QueryVisit { visited: 0, head });
        }
        for segment in self.inner.state.index.read().unbuilt_postings(start, stop) {
            segment.build()?;
        }
        let matches = read_checked(&self.inner.state.index, |index| {
            index.matching_records(query, start, stop, direction, max_count)
        })?;
        let mut lent = Lent::default();
        for found in &matches {
            let segment = &found.segment;
            let newest_first = direction == Direction::Backward;
            segment.visit_located(&found.records, newest_first, &mut |offset, view| {
                self.lend(segment, offset, &view, &mut lent, &mut visit)
            })?;
        }
        self.inner
            .state
            .telemetry
            .read(lent.events as u64, lent.bytes, true);
        Ok(QueryVisit {
            visited: lent.events,
            head,
        })
    }

    /// Lends the event `view` shows, at `offset` of `segment`, to `visit`:
    /// as it is, or decoded and opened first if it was sealed for a
    /// subject (so that it reads as a read would return it).
    pub(super) fn lend(
        &self,
        segment: &Segment,
        offset: u32,
        view: &EventView<'_>,
        lent: &mut Lent,
        visit: &mut impl FnMut(&EventView<'_>),
    ) -> Result<()> {
        if view.has_tag_starting_with(SUBJECT_TAG_PREFIX) {
            let mut event = segment.read_event(offset, view.position)?;
            self.unseal_in_place(&mut event)?;
            lent.bytes += (event.payload.len() + event.metadata.len()) as u64;
            visit(&EventView::from(&event));
        } else {
            lent.bytes += (view.payload.len() + view.metadata.len()) as u64;
            visit(view);
        }
        lent.events += 1;
        Ok(())
    }

    /// The events at positions in `start..stop` matching `query`.
    pub(crate) fn read_matching(
        &self,
        query: &Query,
        start: u64,
        stop: u64,
        direction: Direction,
        max_count: usize,
    ) -> Result<Vec<RecordedEvent>> {
        if start >= stop || max_count == 0 {
            return Ok(Vec::new());
        }
        if query.is_all() {
            return match direction {
                Direction::Forward => {
                    self.read_all_below(start, Direction::Forward, max_count, stop)
                }
                Direction::Backward => {
                    self.read_all_below(stop - 1, Direction::Backward, max_count, stop)
                }
            };
        }
        // Segments whose postings were never needed are read for them
        // first, without the index lock.
        let unbuilt = self.inner.state.index.read().unbuilt_postings(start, stop);
        for segment in unbuilt {
            segment.build()?;
        }
        let matches = read_checked(&self.inner.state.index, |index| {
            index.matching_records(query, start, stop, direction, max_count)
        })?;
        let mut events = Vec::with_capacity(matches.iter().map(|m| m.records.len()).sum());
        for found in matches {
            let first = events.len();
            found
                .segment
                .read_located(found.records.iter().copied(), &mut events)?;
            if direction == Direction::Backward {
                events.get_mut(first..).unwrap_or_default().reverse();
            }
        }
        Ok(events)
    }
}
