//! eventcore's `EventReader`: the events of one type across streams, in
//! the order of evstore's global log, for projections.
//!
//! The events are found through evstore's event-type index, so a read
//! costs in proportion to the events of that type, not to the log. A
//! stream prefix or glob pattern is then applied before the page limit,
//! so events of other streams never take a place in the page, and neither
//! do events that do not decode as the requested type (they are skipped,
//! as eventcore's other back ends skip them). The adapter's own record
//! streams and evstore's reserved ones are never returned.

use crate::error::Error;
use crate::event_store::EvstoreEventStore;
use crate::position::{log_position, stream_position};
use crate::stream_names::eventcore_stream_id;
use eventcore_types::{Event, EventFilter, EventPage, EventReader, StreamPosition};
use evstore::{Direction, Query, QueryItem, RecordedEvent};

/// Fewest and most events asked of the index per call: enough to make a
/// selective filter cheap, few enough that a small page reads little.
const MIN_CHUNK: usize = 64;
const MAX_CHUNK: usize = 1_000;

impl EventReader for EvstoreEventStore {
    type Error = Error;

    async fn read_events<E: Event>(
        &self,
        filter: EventFilter,
        page: EventPage,
    ) -> Result<Vec<(E, StreamPosition)>, Error> {
        let limit: usize = page.limit().into();
        let mut from = match page.after_position() {
            None => 0,
            Some(after) => log_position(after)
                .ok_or(Error::ForeignPosition { position: after })?
                .saturating_add(1),
        };
        let event_type = filter
            .event_type()
            .unwrap_or_else(|| E::event_type_name())
            .to_string();
        let query = Query::items([QueryItem::new().types([event_type])]);

        let mut found = Vec::new();
        while found.len() < limit {
            let chunk = (limit - found.len()).clamp(MIN_CHUNK, MAX_CHUNK);
            let read = self
                .store()
                .read_query(&query, from, Direction::Forward, chunk)?;
            let exhausted = read.events.len() < chunk;
            for event in read.events {
                if found.len() == limit {
                    return Ok(found);
                }
                from = event.position.saturating_add(1);
                if let Some(selected) = select::<E>(&filter, &event)? {
                    found.push(selected);
                }
            }
            if exhausted {
                break;
            }
        }
        Ok(found)
    }
}

/// `event` decoded, with its position, if it passes `filter`.
fn select<E: Event>(
    filter: &EventFilter,
    event: &RecordedEvent,
) -> Result<Option<(E, StreamPosition)>, Error> {
    let Some(stream_id) = eventcore_stream_id(&event.stream) else {
        return Ok(None);
    };
    if filter
        .stream_prefix()
        .is_some_and(|prefix| !stream_id.starts_with(prefix.as_ref()))
        || filter
            .stream_pattern()
            .is_some_and(|pattern| !pattern.matches(stream_id))
    {
        return Ok(None);
    }
    let Ok(decoded) = serde_json::from_slice::<E>(&event.payload) else {
        return Ok(None);
    };
    let position = stream_position(event.position).ok_or(Error::PositionOutOfRange {
        log_position: event.position,
    })?;
    Ok(Some((decoded, position)))
}
