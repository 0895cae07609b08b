//! The events of one stream as eventcore's [`EventStream`]: read from the
//! store a page at a time as the stream is consumed, so a long history is
//! never held in memory at once.

use crate::error::store_failure;
use crate::stream_names::store_stream_name;
use eventcore_types::{Event, EventStoreError, EventStream, Operation, StreamId};
use evstore::{Direction, Store};
use std::collections::VecDeque;

/// Events read from the store per call.
const PAGE: usize = 500;

/// Where a read of one stream has got to.
struct Cursor<E> {
    store: Store,
    stream_id: StreamId,
    store_stream: String,
    /// The evstore version of the next event to read; `None` once the
    /// stream is exhausted or an error was yielded.
    next_version: Option<u64>,
    /// Events read but not yet yielded.
    ready: VecDeque<Result<E, EventStoreError>>,
}

/// The events of `stream_id` from evstore version `from_version` on (the
/// first `from_version` events skipped), decoded as `E`.
pub(crate) fn stream_events<E: Event>(
    store: Store,
    stream_id: StreamId,
    from_version: u64,
) -> EventStream<E> {
    let cursor = Cursor {
        store_stream: store_stream_name(&stream_id).into_owned(),
        store,
        stream_id,
        next_version: Some(from_version),
        ready: VecDeque::new(),
    };
    EventStream::new(futures::stream::unfold(cursor, |mut cursor| async move {
        if cursor.ready.is_empty() {
            cursor.read_page();
        }
        let item = cursor.ready.pop_front()?;
        Some((item, cursor))
    }))
}

impl<E: Event> Cursor<E> {
    /// Reads the next page into `ready`. A read error, or an event that
    /// does not decode, is the last item the stream yields.
    fn read_page(&mut self) {
        let Some(from) = self.next_version.take() else {
            return;
        };
        let page = match self
            .store
            .read_stream(&self.store_stream, from, Direction::Forward, PAGE)
        {
            Ok(page) => page,
            Err(error) => {
                let failure = store_failure(Operation::ReadStream, &error);
                self.ready.push_back(Err(failure));
                return;
            }
        };
        let full = page.len() == PAGE;
        let mut next = None;
        for event in page {
            match serde_json::from_slice::<E>(&event.payload) {
                Ok(decoded) => self.ready.push_back(Ok(decoded)),
                Err(error) => {
                    self.ready
                        .push_back(Err(EventStoreError::DeserializationFailed {
                            stream_id: self.stream_id.clone(),
                            detail: format!(
                                "event {} (type {:?}): {error}",
                                event.version, &*event.event_type
                            ),
                        }));
                    return;
                }
            }
            next = event.version.checked_add(1);
        }
        if full {
            self.next_version = next;
        }
    }
}
