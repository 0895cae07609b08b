//! Reading a stream's events lent one by one to a visitor, borrowed from
//! the log: what rebuilding an aggregate needs, without an event built per
//! version.

use super::read::version_range;
use super::read_query::Lent;
use super::Store;
use crate::error::{Error, Result};
use crate::event_view::EventView;
use crate::index::deferred_check::read_checked;
use crate::index::Location;
use crate::types::Direction;
use crate::validate::validate_stream_name;
use std::sync::Arc;

impl Store {
    /// [`Store::read_stream`], with each event lent to `visit` for the
    /// length of the call instead of returned, its strings and bytes
    /// borrowed from the log (see [`Store::visit_query`]). The same events
    /// in the same order; returns how many were lent.
    ///
    /// # Errors
    ///
    /// As [`Store::read_stream`]; the events lent before an error were read
    /// and checked.
    ///
    /// ```
    /// use evstore::{Direction, EventData, ExpectedVersion, Options, Store};
    /// # let dir = tempfile::tempdir().unwrap();
    /// let store = Store::open(dir.path(), Options::default()).unwrap();
    /// let deposits = [EventData::new("Deposited", vec![5u8]), EventData::new("Deposited", vec![7u8])];
    /// store.append("account-1", ExpectedVersion::NoStream, &deposits).unwrap();
    /// let mut balance = 0u64;
    /// let lent = store
    ///     .visit_stream("account-1", 0, Direction::Forward, usize::MAX, |e| {
    ///         balance += u64::from(e.payload[0]);
    ///     })
    ///     .unwrap();
    /// assert_eq!((balance, lent), (12, 2));
    /// ```
    pub fn visit_stream(
        &self,
        stream: &str,
        from_version: u64,
        direction: Direction,
        max_count: usize,
        mut visit: impl FnMut(&EventView<'_>),
    ) -> Result<usize> {
        validate_stream_name(stream, self.options().max_stream_name_len)?;
        let end = self.visible_end();
        let retained = self.retained()?;
        let mut locations = Vec::new();
        let mut start = 0;
        if retained.rule(stream).is_none() && max_count > 0 {
            start = read_checked(&self.inner.state.index, |index| {
                index.stream_locations(
                    stream,
                    end,
                    |count| version_range(count, from_version, direction, max_count),
                    &mut locations,
                )
            })?
            .0;
        }
        // A stream some rule keeps in part, or whose history a scavenge
        // removed in part, is read as decoded events, each then lent.
        if retained.rule(stream).is_some() || locations.iter().any(|l| l.segment.is_removed()) {
            let events = self.read_stream(stream, from_version, direction, max_count)?;
            for event in &events {
                visit(&EventView::from(event));
            }
            return Ok(events.len());
        }
        let newest_first = direction == Direction::Backward;
        let groups: Vec<&[Location]> = locations
            .chunk_by(|a, b| Arc::ptr_eq(&a.segment, &b.segment))
            .collect();
        let mut lent = Lent::default();
        // The index says which version each location holds; every record
        // lent must agree, so a damaged index never hands out another event.
        let mut first_version = start;
        let mut spans = Vec::with_capacity(groups.len());
        for group in &groups {
            spans.push(first_version);
            first_version += group.len() as u64;
        }
        let ordered: Vec<(&[Location], u64)> = if newest_first {
            groups.iter().copied().zip(spans).rev().collect()
        } else {
            groups.iter().copied().zip(spans).collect()
        };
        let mut records = Vec::new();
        for (group, group_start) in ordered {
            let Some(segment) = group.first().map(|l| &l.segment) else {
                continue;
            };
            records.clear();
            records.extend(group.iter().map(|l| (l.offset, l.position)));
            let mut next = 0u64;
            let count = group.len() as u64;
            segment.visit_located(&records, newest_first, &mut |offset, view| {
                let version = if newest_first {
                    group_start + count - 1 - next
                } else {
                    group_start + next
                };
                next += 1;
                if view.stream != stream || view.version != version {
                    return Err(Error::corrupted(
                        segment.path(),
                        u64::from(offset),
                        format!(
                            "the index places event '{}' version {} at '{stream}' version {version}",
                            view.stream, view.version
                        ),
                    ));
                }
                self.lend(segment, offset, &view, &mut lent, &mut visit)
            })?;
        }
        self.inner
            .state
            .telemetry
            .read(lent.events as u64, lent.bytes, true);
        Ok(lent.events)
    }
}
