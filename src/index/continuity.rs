//! The rule that stream versions are dense: read in log order, a stream's
//! events are versions 0, 1, 2, … with none missing or repeated. Open,
//! the read-only follower and `verify` all check the log against this one
//! rule, and report a break in the same words.

use super::StreamSummary;
use std::collections::HashMap;
use std::fmt;
use std::hash::BuildHasher;
use std::sync::Arc;

/// An event whose version breaks the rule.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct VersionGap {
    /// Its stream.
    pub stream: String,
    /// The version it has.
    pub found: u64,
    /// The version the stream's events so far call for.
    pub expected: u64,
}

impl fmt::Display for VersionGap {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "stream '{}' event has version {}, expected {}",
            self.stream, self.found, self.expected
        )
    }
}

/// Checks that an event of `stream` with version `found` comes next after
/// `next_version`, the stream's event count so far (`None`: none yet).
pub fn check_next(stream: &str, next_version: Option<u64>, found: u64) -> Result<(), VersionGap> {
    let expected = next_version.unwrap_or(0);
    if found == expected {
        return Ok(());
    }
    Err(VersionGap {
        stream: stream.to_string(),
        found,
        expected,
    })
}

/// A map of per-stream summaries that [`count_events`] keeps.
pub trait Summaries {
    /// The summary of `stream`, to update, and the name the summaries
    /// share for it; `None` for a stream not seen yet.
    fn known_mut(&mut self, stream: &str) -> Option<(&mut StreamSummary, Arc<str>)>;
    /// Adds `name`, first seen with `summary`.
    fn add(&mut self, name: Arc<str>, summary: StreamSummary);
}

impl<S: BuildHasher> Summaries for HashMap<Arc<str>, StreamSummary, S> {
    fn known_mut(&mut self, stream: &str) -> Option<(&mut StreamSummary, Arc<str>)> {
        let name = Arc::clone(self.get_key_value(stream)?.0);
        self.get_mut(stream).map(|summary| (summary, name))
    }

    fn add(&mut self, name: Arc<str>, summary: StreamSummary) {
        self.insert(name, summary);
    }
}

/// Counts `count` events of `stream`, the first with `first_version`, in
/// segment `ordinal`, in the per-stream summaries of the segments read so
/// far (in order). On a break the summary is left as it was and the break
/// returned; `Ok` gives the name the summaries share.
pub fn count_events(
    summaries: &mut impl Summaries,
    stream: &str,
    ordinal: u32,
    first_version: u64,
    count: u64,
) -> Result<Arc<str>, VersionGap> {
    if let Some((summary, name)) = summaries.known_mut(stream) {
        check_next(stream, Some(summary.next_version), first_version)?;
        summary.next_version = summary.next_version.saturating_add(count);
        summary.last_segment = ordinal;
        return Ok(name);
    }
    check_next(stream, None, first_version)?;
    let name: Arc<str> = Arc::from(stream);
    summaries.add(
        Arc::clone(&name),
        StreamSummary {
            next_version: count,
            first_segment: ordinal,
            last_segment: ordinal,
        },
    );
    Ok(name)
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    #[test]
    fn versions_must_be_dense_per_stream() {
        let mut summaries: HashMap<Arc<str>, StreamSummary> = HashMap::new();
        assert_eq!(
            count_events(&mut summaries, "a", 0, 1, 1)
                .unwrap_err()
                .to_string(),
            "stream 'a' event has version 1, expected 0"
        );
        assert!(summaries.is_empty());
        count_events(&mut summaries, "a", 0, 0, 3).unwrap();
        count_events(&mut summaries, "b", 1, 0, 1).unwrap();
        let gap = count_events(&mut summaries, "a", 2, 4, 1).unwrap_err();
        assert_eq!((gap.found, gap.expected), (4, 3));
        count_events(&mut summaries, "a", 2, 3, 2).unwrap();
        let a = summaries.get("a").unwrap();
        assert_eq!((a.next_version, a.first_segment, a.last_segment), (5, 0, 2));
        assert!(check_next("a", Some(5), 5).is_ok());
    }
}
