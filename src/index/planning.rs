//! Append planning: deciding, for each append of a group in order, whether
//! it is written (and at which versions), answered without writing (a wrong
//! expected version, an idempotent retry, a conflict), or deferred to the
//! next group. Checked against the index plus the appends planned before it
//! in the same group, which are not indexed yet.

use super::memory::FastMap;
use super::Index;
use crate::error::{Error, Result};
use crate::types::{AppendResult, ExpectedVersion};

/// One append as planning sees it.
#[derive(Debug, Clone, Copy)]
pub struct Intent<'a> {
    /// The stream appended to.
    pub stream: &'a str,
    /// The optimistic-concurrency check.
    pub expected: ExpectedVersion,
    /// The events' ids, in order; no two alike.
    pub ids: &'a [u128],
    /// Sealed segments below this ordinal were already searched for the
    /// ids, in vain (see [`Index::sealed_without_ids`]).
    pub ids_absent_below: u32,
}

/// What planning decided for one append.
#[derive(Debug)]
pub enum Decision {
    /// Write it; its first event gets this version.
    Write {
        /// The version of its first event.
        first_version: u64,
    },
    /// Answer it without writing.
    Answer(Result<AppendResult>),
    /// A retry racing its original within one group: answer it in the next
    /// group, once the original is written and indexed.
    Defer,
}

/// Plans the appends of one group, in order.
pub struct GroupPlanner<'i> {
    index: &'i Index,
    /// Streams written earlier in the group, with their last version.
    last_versions: FastMap<String, Option<u64>>,
    /// Ids written earlier in the group.
    group_ids: foldhash::HashSet<u128>,
}

impl<'i> GroupPlanner<'i> {
    /// Plans against `index`, which must not change until the group is
    /// written.
    pub fn new(index: &'i Index) -> Self {
        GroupPlanner {
            index,
            last_versions: FastMap::default(),
            group_ids: foldhash::HashSet::default(),
        }
    }

    /// Decides for the next append of the group.
    pub fn plan(&mut self, intent: Intent<'_>) -> Decision {
        if intent.ids.iter().any(|id| self.group_ids.contains(id)) {
            return Decision::Defer;
        }
        // Where each id was written before, gathered only once one was:
        // almost every append is new, and needs no list.
        let mut known: Option<Vec<Option<u64>>> = None;
        for (i, &id) in intent.ids.iter().enumerate() {
            match self.index.find_id_above(id, intent.ids_absent_below) {
                Err(error) => return Decision::Answer(Err(error)),
                Ok(None) => {
                    if let Some(known) = known.as_mut() {
                        known.push(None);
                    }
                }
                Ok(Some(position)) => known
                    .get_or_insert_with(|| vec![None; i])
                    .push(Some(position)),
            }
        }
        if let Some(known) = known {
            return Decision::Answer(self.resolve_retry(&intent, &known));
        }
        let actual = match self.last_versions.get(intent.stream) {
            Some(v) => *v,
            None => self.index.last_version(intent.stream),
        };
        if !intent.expected.matches(actual) {
            return Decision::Answer(Err(Error::WrongExpectedVersion {
                stream: intent.stream.to_string(),
                expected: intent.expected,
                actual,
            }));
        }
        self.group_ids.extend(intent.ids.iter().copied());
        let first_version = actual.map_or(0, |v| v + 1);
        let count = intent.ids.len() as u64;
        self.last_versions.insert(
            intent.stream.to_string(),
            Some(first_version + count.saturating_sub(1)),
        );
        Decision::Write { first_version }
    }

    /// An append some of whose ids were already written: a retry if all of
    /// them were, in the same order, consecutively, to the same stream; then
    /// the original result. Anything else is a conflict.
    fn resolve_retry(&self, intent: &Intent<'_>, known: &[Option<u64>]) -> Result<AppendResult> {
        let conflict = |reason: String| Error::IdempotencyConflict {
            stream: intent.stream.to_string(),
            reason,
        };
        let Some(Some(first_position)) = known.first().copied() else {
            return Err(conflict(
                "its first event is new but later ones were already written".into(),
            ));
        };
        let mut first_version = 0;
        for (i, position) in known.iter().enumerate() {
            let expected = first_position + i as u64;
            match position {
                None => {
                    return Err(conflict(format!(
                        "event {i} is new but event 0 was already written"
                    )))
                }
                Some(p) if *p != expected => {
                    return Err(conflict(format!(
                        "event {i} was written at position {p}, not right after the one before it"
                    )))
                }
                Some(p) => {
                    let location = self
                        .index
                        .locate(*p)?
                        .ok_or_else(|| conflict(format!("event {i} is no longer indexed")))?;
                    let event = location.segment.read_event(location.offset, *p)?;
                    if *event.stream != *intent.stream {
                        return Err(conflict(format!(
                            "event {i} was written to stream '{}'",
                            &*event.stream
                        )));
                    }
                    if i == 0 {
                        first_version = event.version;
                    }
                }
            }
        }
        let count = known.len() as u64;
        Ok(AppendResult {
            first_version,
            last_version: first_version + count - 1,
            first_position,
            last_position: first_position + count - 1,
        })
    }
}
