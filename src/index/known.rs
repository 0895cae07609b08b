//! What the index keeps in memory for every stream it knows, found by the
//! stream's name.

use super::continuity::Summaries;
use super::hint::RecordHint;
use super::memory::FastMap;
use super::StreamSummary;
use std::sync::Arc;

/// Stream names as the map of summaries keys them: a name of up to 23
/// bytes is held in the map's own entry, so finding a stream compares
/// bytes already loaded instead of following a pointer to them, one cache
/// miss less per lookup in a store of many streams.
type StreamName = smol_str::SmolStr;

/// Every known stream, by name.
pub(super) type KnownStreams = FastMap<StreamName, Known>;

/// What the heap keeps per stream: its summary, where a lookup last found
/// its record in an index file, and its name as the indexes share it.
#[derive(Debug)]
pub(super) struct Known {
    pub(super) summary: StreamSummary,
    pub(super) found: RecordHint,
    pub(super) name: Arc<str>,
}

/// The map entry of stream `name`, first known with `summary`.
pub(super) fn entry(name: Arc<str>, summary: StreamSummary) -> (StreamName, Known) {
    let known = Known {
        summary,
        found: RecordHint::default(),
        name: Arc::clone(&name),
    };
    (StreamName::from(name), known)
}

impl Summaries for KnownStreams {
    fn known_mut(&mut self, stream: &str) -> Option<(&mut StreamSummary, Arc<str>)> {
        let known = self.get_mut(stream)?;
        let name = Arc::clone(&known.name);
        Some((&mut known.summary, name))
    }

    fn add(&mut self, name: Arc<str>, summary: StreamSummary) {
        let (key, known) = entry(name, summary);
        self.insert(key, known);
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::super::continuity::count_events;
    use super::*;

    #[test]
    fn short_and_long_names_are_found_counted_and_shared() {
        let mut streams = KnownStreams::default();
        let short = "order-1";
        let long = "a-stream-name-longer-than-twenty-three-bytes";
        let first_short = count_events(&mut streams, short, 0, 0, 2).unwrap();
        let first_long = count_events(&mut streams, long, 0, 0, 1).unwrap();
        let again_short = count_events(&mut streams, short, 3, 2, 5).unwrap();
        let again_long = count_events(&mut streams, long, 4, 1, 1).unwrap();
        // One allocation per name, whatever its length, however often its
        // events are counted.
        assert!(Arc::ptr_eq(&first_short, &again_short));
        assert!(Arc::ptr_eq(&first_long, &again_long));
        assert_eq!(&*again_long, long);
        let summary = |streams: &KnownStreams, name: &str| streams.get(name).unwrap().summary;
        assert_eq!(
            summary(&streams, short),
            StreamSummary {
                next_version: 7,
                first_segment: 0,
                last_segment: 3,
            }
        );
        assert_eq!(summary(&streams, long).next_version, 2);
        assert_eq!(summary(&streams, long).last_segment, 4);
        assert!(!streams.contains_key("order-2"));
        assert!(count_events(&mut streams, short, 5, 6, 1).is_err());
        assert_eq!(summary(&streams, short).next_version, 7);
    }
}
