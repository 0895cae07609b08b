//! How events are printed, and how a closed stdout is told from a failure.

use evstore::RecordedEvent;
use serde::Serialize;
use std::borrow::Cow;
use std::fmt::Write as _;
use std::io::{self, Write};

/// Whether `error` comes from writing to a pipe whose reader has gone, which
/// is how `evstore dump DIR | head` ends and is not a failure.
pub fn is_broken_pipe(error: &anyhow::Error) -> bool {
    error.chain().any(|cause| {
        cause
            .downcast_ref::<io::Error>()
            .is_some_and(|e| e.kind() == io::ErrorKind::BrokenPipe)
    })
}

/// Whether stdout is a pipe whose reader has gone, found without writing,
/// so an idle `tail` notices `| head` ending rather than waiting for the
/// next event to find out.
pub fn stdout_closed() -> bool {
    use rustix::event::{poll, PollFd, PollFlags, Timespec};
    let stdout = rustix::stdio::stdout();
    let mut fds = [PollFd::new(&stdout, PollFlags::OUT)];
    let zero = Timespec {
        tv_sec: 0,
        tv_nsec: 0,
    };
    match poll(&mut fds, Some(&zero)) {
        Ok(ready) if ready > 0 => fds[0].revents().intersects(PollFlags::ERR | PollFlags::HUP),
        _ => false,
    }
}

/// How events are written.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Format {
    Text,
    Json,
}

/// Writes `event` as one line in `format`.
pub fn write_event(out: &mut impl Write, event: &RecordedEvent, format: Format) -> io::Result<()> {
    match format {
        Format::Text => write_text(out, event),
        Format::Json => write_json(out, event),
    }
}

fn timestamp(event: &RecordedEvent) -> impl std::fmt::Display {
    humantime::format_rfc3339_nanos(event.timestamp())
}

fn write_text(out: &mut impl Write, event: &RecordedEvent) -> io::Result<()> {
    let mut line = String::with_capacity(128 + event.payload.len());
    // Writing to a String cannot fail.
    let _ = write!(
        line,
        "position={} stream={} version={} type={} timestamp={} id={}",
        event.position,
        quoted(&event.stream),
        event.version,
        quoted(&event.event_type),
        timestamp(event),
        event.id,
    );
    if !event.tags.is_empty() {
        line.push_str(" tags=");
        for (i, tag) in event.tags.iter().enumerate() {
            if i > 0 {
                line.push(',');
            }
            line.push_str(&quoted_tag(tag));
        }
    }
    if !event.metadata.is_empty() {
        line.push(' ');
        push_bytes_field(&mut line, "metadata", &event.metadata);
    }
    line.push(' ');
    push_bytes_field(&mut line, "payload", &event.payload);
    line.push('\n');
    out.write_all(line.as_bytes())
}

/// A stream name or event type, quoted (Rust string syntax) only when it
/// would otherwise be ambiguous in a `key=value` line.
fn quoted(text: &str) -> Cow<'_, str> {
    let plain = !text.is_empty()
        && !text
            .chars()
            .any(|c| c.is_whitespace() || c.is_control() || c == '"' || c == '=' || c == '\\');
    if plain {
        Cow::Borrowed(text)
    } else {
        Cow::Owned(format!("{text:?}"))
    }
}

/// A tag in the comma-separated `tags=` list: quoted like [`quoted`], and
/// also when it holds a comma.
fn quoted_tag(tag: &str) -> Cow<'_, str> {
    if tag.contains(',') {
        Cow::Owned(format!("{tag:?}"))
    } else {
        quoted(tag)
    }
}

/// `name=text` for UTF-8 bytes, control characters escaped so one event
/// stays one line; `name(hex)=…` for anything else.
fn push_bytes_field(line: &mut String, name: &str, bytes: &[u8]) {
    match std::str::from_utf8(bytes) {
        Ok(text) => {
            line.push_str(name);
            line.push('=');
            for c in text.chars() {
                if c.is_control() {
                    line.extend(c.escape_debug());
                } else {
                    line.push(c);
                }
            }
        }
        Err(_) => {
            line.push_str(name);
            line.push_str("(hex)=");
            push_hex(line, bytes);
        }
    }
}

fn push_hex(out: &mut String, bytes: &[u8]) {
    const DIGITS: &[u8; 16] = b"0123456789abcdef";
    out.reserve(bytes.len() * 2);
    for &b in bytes {
        out.push(char::from(DIGITS[usize::from(b >> 4)]));
        out.push(char::from(DIGITS[usize::from(b & 0xf)]));
    }
}

/// Bytes as a JSON string: the text itself when it is UTF-8, else hex.
fn encode_bytes(bytes: &[u8]) -> (Cow<'_, str>, &'static str) {
    match std::str::from_utf8(bytes) {
        Ok(text) => (Cow::Borrowed(text), "utf8"),
        Err(_) => {
            let mut hex = String::new();
            push_hex(&mut hex, bytes);
            (Cow::Owned(hex), "hex")
        }
    }
}

#[derive(Serialize)]
struct JsonEvent<'a> {
    position: u64,
    stream: &'a str,
    version: u64,
    #[serde(rename = "type")]
    event_type: &'a str,
    tags: Vec<&'a str>,
    timestamp: String,
    id: String,
    metadata: Cow<'a, str>,
    metadata_encoding: &'static str,
    payload: Cow<'a, str>,
    payload_encoding: &'static str,
}

fn write_json(out: &mut impl Write, event: &RecordedEvent) -> io::Result<()> {
    let (metadata, metadata_encoding) = encode_bytes(&event.metadata);
    let (payload, payload_encoding) = encode_bytes(&event.payload);
    let json = JsonEvent {
        position: event.position,
        stream: &event.stream,
        version: event.version,
        event_type: &event.event_type,
        tags: event.tags.iter().map(|t| &**t).collect(),
        timestamp: timestamp(event).to_string(),
        id: event.id.to_string(),
        metadata,
        metadata_encoding,
        payload,
        payload_encoding,
    };
    // serde_json hands back write errors as they were, so a broken pipe
    // stays recognisable.
    serde_json::to_writer(&mut *out, &json).map_err(io::Error::from)?;
    out.write_all(b"\n")
}

/// A table of `(label, value)` lines with the values aligned.
pub fn write_fields(out: &mut impl Write, fields: &[(String, String)]) -> io::Result<()> {
    let width = fields.iter().map(|(k, _)| k.len()).max().unwrap_or(0);
    for (key, value) in fields {
        writeln!(out, "{key:<width$}  {value}")?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bytes_fields() {
        let mut line = String::new();
        push_bytes_field(&mut line, "payload", b"a b\nc");
        assert_eq!(line, "payload=a b\\nc");
        line.clear();
        push_bytes_field(&mut line, "payload", &[0xff, 0x00, 0x10]);
        assert_eq!(line, "payload(hex)=ff0010");
    }

    #[test]
    fn quoting() {
        assert_eq!(quoted("order-1"), "order-1");
        assert_eq!(quoted("a b"), "\"a b\"");
        assert_eq!(quoted(""), "\"\"");
        assert_eq!(quoted("k=v"), "\"k=v\"");
        assert_eq!(quoted_tag("user:7"), "user:7");
        assert_eq!(quoted_tag("a,b"), "\"a,b\"");
        assert_eq!(quoted_tag("a b"), "\"a b\"");
    }
}
