//! Decoding a record as an [`EventView`]: checked exactly as
//! [`super::record::decode_record_at`] checks it, with its strings and
//! bytes borrowed instead of cut as counted views.

use super::record_frame::check_frame;
use crate::event_view::{EventView, TagList};

/// The record at offset `at` of `bytes` as a view of them, and its padded
/// length; or why it is invalid.
pub fn decode_view_at(
    bytes: &[u8],
    at: usize,
    seed: u32,
) -> Result<(EventView<'_>, usize), &'static str> {
    let frame = check_frame(bytes, at, seed)?;
    // The names and tags lie together: one UTF-8 check of all of them
    // costs a fraction of one per string. Each piece is then valid alone
    // exactly when it starts and ends on a character boundary. Where the
    // whole fails (a tag's length bytes need not be UTF-8), each piece is
    // checked alone, as decoding into an event does.
    let names = bytes
        .get(frame.stream.start..frame.tags.end)
        .unwrap_or_default();
    let (stream, event_type, tags) = if let Ok(text) = std::str::from_utf8(names) {
        let type_start = frame.stream.len();
        let tags_start = type_start + frame.event_type.len();
        let stream = text.get(..type_start).ok_or("stream name is not UTF-8")?;
        let event_type = text
            .get(type_start..tags_start)
            .ok_or("event type is not UTF-8")?;
        let section = text.get(tags_start..).ok_or("a tag is not UTF-8")?;
        check_tag_section(section.as_bytes(), |start, end| {
            section.get(start..end).is_some()
        })?;
        (stream, event_type, TagList::Text(section))
    } else {
        let text = |range: std::ops::Range<usize>, what| {
            bytes
                .get(range)
                .and_then(|b| std::str::from_utf8(b).ok())
                .ok_or(what)
        };
        let stream = text(frame.stream.clone(), "stream name is not UTF-8")?;
        let event_type = text(frame.event_type.clone(), "event type is not UTF-8")?;
        let section = bytes.get(frame.tags.clone()).unwrap_or_default();
        check_tag_section(section, |start, end| {
            section
                .get(start..end)
                .is_some_and(|tag| std::str::from_utf8(tag).is_ok())
        })?;
        (stream, event_type, TagList::Section(section))
    };
    let view = EventView::from_record(
        stream,
        frame.version,
        frame.position,
        frame.timestamp_nanos,
        frame.id,
        event_type,
        tags,
        bytes.get(frame.metadata).unwrap_or_default(),
        bytes.get(frame.payload).unwrap_or_default(),
    );
    Ok((view, frame.padded_len))
}

/// Checks a tag section as decoding one into tags does: each tag's length
/// fits, none is empty, each is UTF-8 (`is_text` of its range), and they
/// are in ascending byte order with no two alike.
fn check_tag_section(
    section: &[u8],
    is_text: impl Fn(usize, usize) -> bool,
) -> Result<(), &'static str> {
    let mut at = 0;
    let mut previous: Option<&[u8]> = None;
    while at < section.len() {
        let len_bytes: [u8; 2] = section
            .get(at..at + 2)
            .and_then(|b| b.try_into().ok())
            .ok_or("tags run past the end")?;
        let (start, end) = (at + 2, at + 2 + usize::from(u16::from_le_bytes(len_bytes)));
        let tag = section
            .get(start..end)
            .filter(|t| !t.is_empty())
            .ok_or("a tag's length does not fit its section")?;
        if !is_text(start, end) {
            return Err("a tag is not UTF-8");
        }
        if previous.is_some_and(|p| p >= tag) {
            return Err("tags are not in ascending order");
        }
        previous = Some(tag);
        at = end;
    }
    Ok(())
}
