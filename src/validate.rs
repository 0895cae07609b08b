//! Validation of names users pass in, shared by appends, reads, snapshots
//! and subscriptions.

use crate::error::{Error, Result};
use crate::options::Options;

pub fn validate_stream_name(stream: &str, max_len: usize) -> Result<()> {
    let reason = if stream.is_empty() {
        "empty".to_string()
    } else if stream.len() > max_len {
        format!("longer than {max_len} bytes")
    } else if stream.starts_with('$') {
        "names starting with '$' are reserved".to_string()
    } else if has_control(stream) {
        "control characters are not allowed".to_string()
    } else {
        return Ok(());
    };
    Err(Error::InvalidStreamName {
        name: stream.to_string(),
        reason,
    })
}

/// Checks an event's tags against the options: each non-empty, within the
/// length limit, without control characters, none given twice, and no more
/// of them than allowed; with `reserve` (the caller's events), none
/// starting with `$` (the store's own). The store's own events may carry
/// one tag of its own beyond the caller's limits (a sealed event's subject
/// tag), within what the format holds.
pub fn validate_tags(tags: &[String], options: &Options, reserve: bool) -> Result<()> {
    if tags.is_empty() {
        return Ok(());
    }
    let refuse = |tag: &str, reason: String| {
        Err(Error::InvalidTag {
            tag: tag.to_string(),
            reason,
        })
    };
    let max_tags = options
        .max_tags_per_event
        .saturating_add(usize::from(!reserve));
    if tags.len() > max_tags {
        let shown = tags.first().map_or("", String::as_str);
        return refuse(
            shown,
            format!(
                "the event has {} tags, more than the {} allowed",
                tags.len(),
                max_tags
            ),
        );
    }
    let max_len = if reserve {
        options.max_tag_len.min(usize::from(u16::MAX))
    } else {
        usize::from(u16::MAX)
    };
    for tag in tags {
        if tag.is_empty() {
            return refuse(tag, "empty".into());
        }
        if tag.len() > max_len {
            return refuse(tag, format!("longer than {max_len} bytes"));
        }
        if has_control(tag) {
            return refuse(tag, "control characters are not allowed".into());
        }
        if reserve && tag.starts_with('$') {
            return refuse(tag, "tags starting with '$' are reserved".into());
        }
    }
    if tags.len() > 1 {
        let mut sorted: Vec<&str> = tags.iter().map(String::as_str).collect();
        sorted.sort_unstable();
        if let Some(pair) = sorted.windows(2).find(|w| w.first() == w.get(1)) {
            let tag = pair.first().copied().unwrap_or_default();
            return refuse(tag, "given twice on one event".into());
        }
    }
    Ok(())
}

/// Whether `text` holds a control character (`char::is_control`: U+0000 to
/// U+001F and U+007F to U+009F). Every read checks its stream name, so this
/// looks at bytes, not chars: in UTF-8 those characters are the bytes below
/// 0x20, 0x7F, and 0xC2 followed by 0x80 to 0x9F, and no other character's
/// encoding contains such a byte or pair.
pub fn has_control(text: &str) -> bool {
    let bytes = text.as_bytes();
    // Printable ASCII, the usual name, is settled in one pass.
    if bytes.iter().all(|&b| (0x20..0x7F).contains(&b)) {
        return false;
    }
    let mut pairs = bytes.windows(2);
    bytes.iter().any(|&b| b < 0x20 || b == 0x7F)
        || pairs.any(|w| matches!(w, [0xC2, next] if (0x80..=0x9F).contains(next)))
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    #[test]
    fn control_characters_are_found_by_their_bytes() {
        for c in (0..=0x0010_FFFF_u32).filter_map(char::from_u32) {
            let text = format!("a{c}b");
            assert_eq!(has_control(&text), c.is_control(), "{c:?}");
        }
        assert!(!has_control("order-42"));
        assert!(!has_control("Ä¿é"));
    }

    #[test]
    fn stream_names_are_checked() {
        assert!(validate_stream_name("order-42", 100).is_ok());
        assert!(validate_stream_name("", 100).is_err());
        assert!(validate_stream_name("$all", 100).is_err());
        assert!(validate_stream_name("a\u{85}b", 100).is_err());
        assert!(validate_stream_name("abc", 2).is_err());
    }
}
