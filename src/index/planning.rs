//! Append planning: deciding, for each append of a group in order, whether
//! it is written (and at which versions), answered without writing (a wrong
//! expected version, an idempotent retry, a conflict), or deferred to the
//! next group. Checked against the index plus the appends planned before it
//! in the same group, which are not indexed yet.

use super::deletions::Deletion;
use super::memory::FastMap;
use super::Index;
use crate::commit::CommitResult;
use crate::error::{Error, Result};
use crate::log::record;
use crate::query::AppendCondition;
use crate::stream_metadata::DeleteMode;
use crate::types::{AppendResult, ExpectedVersion};

/// One stream's part of an append or commit.
#[derive(Debug, Clone)]
pub struct StreamWrite {
    /// Stream name, already validated.
    pub stream: String,
    /// The optimistic-concurrency check.
    pub expected: ExpectedVersion,
    /// How many of the request's events (the next ones, in order) are
    /// this stream's.
    pub count: usize,
    /// Set when the part is a deletion's tombstone.
    pub deletes: Option<DeleteMode>,
}

/// One append or commit as planning sees it.
#[derive(Debug, Clone, Copy)]
pub struct Intent<'a> {
    /// The streams written, in order.
    pub parts: &'a [StreamWrite],
    /// Streams only checked.
    pub checks: &'a [(String, ExpectedVersion)],
    /// What must not have been appended since the caller decided.
    pub condition: Option<&'a AppendCondition>,
    /// The events' ids, in order; no two alike.
    pub ids: &'a [u128],
    /// The events as unfinished records, for their types and tags.
    pub records: &'a [u8],
    /// Sealed segments below this ordinal were already searched for the
    /// ids, in vain (see [`Index::sealed_without_ids`]).
    pub ids_absent_below: u32,
}

/// What planning decided for one append.
#[derive(Debug)]
pub enum Decision {
    /// Write it; the first event of each part gets the version listed for
    /// that part.
    Write {
        /// The version of each part's first event.
        first_versions: Vec<u64>,
    },
    /// Answer it without writing.
    Answer(Result<CommitResult>),
    /// A retry racing its original within one group: answer it in the next
    /// group, once the original is written and indexed.
    Defer,
}

/// An event planned earlier in the group, as conditions see it.
struct PlannedEvent {
    position: u64,
    event_type: Box<str>,
    tags: Vec<Box<str>>,
}

/// Plans the appends of one group, in order.
pub struct GroupPlanner<'i> {
    index: &'i Index,
    /// Streams written earlier in the group, with their last version.
    last_versions: FastMap<String, Option<u64>>,
    /// Streams deleted earlier in the group.
    group_deletions: FastMap<String, Deletion>,
    /// Ids written earlier in the group.
    group_ids: foldhash::HashSet<u128>,
    /// The position the next planned event gets.
    next_position: u64,
    /// Events planned earlier in the group, kept only when a later request
    /// of the group has a condition to check against them.
    planned: Option<Vec<PlannedEvent>>,
}

impl<'i> GroupPlanner<'i> {
    /// Plans against `index`, which must not change until the group is
    /// written. `conditions_follow`: some request of the group has an
    /// append condition, so the planner remembers the types and tags of
    /// what it plans. `ids`: how many events the group's appends hold, so
    /// that the set of the group's ids never grows (and rehashes) on the
    /// way.
    pub fn new(index: &'i Index, conditions_follow: bool, ids: usize) -> Self {
        GroupPlanner {
            index,
            last_versions: FastMap::default(),
            group_deletions: FastMap::default(),
            group_ids: foldhash::HashSetExt::with_capacity(ids),
            next_position: index.end(),
            planned: conditions_follow.then(Vec::new),
        }
    }

    fn actual_version(&self, stream: &str) -> Option<u64> {
        match self.last_versions.get(stream) {
            Some(v) => *v,
            None => self.index.last_version(stream),
        }
    }

    fn deletion(&self, stream: &str) -> Option<Deletion> {
        if let Some(deletion) = self.group_deletions.get(stream) {
            return Some(*deletion);
        }
        self.index.deletion(stream)
    }

    /// The version `stream` is at, if it may be appended to at `expected`.
    fn judge_expected(&self, stream: &str, expected: ExpectedVersion) -> Result<Option<u64>> {
        let actual = self.actual_version(stream);
        let deletion = self.deletion(stream);
        if deletion.is_some_and(|d| d.closed()) {
            return Err(Error::StreamDeleted {
                stream: stream.to_string(),
            });
        }
        // A soft-deleted stream nothing was appended to since reads as no
        // stream, so the append that recreates it may say so.
        let recreates = expected == ExpectedVersion::NoStream
            && deletion.is_some_and(|d| d.reads_as_no_stream(actual));
        if !recreates && !expected.matches(actual) {
            return Err(wrong_version(stream, expected, actual));
        }
        Ok(actual)
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
        let mut first_versions = Vec::with_capacity(intent.parts.len());
        for part in intent.parts {
            match self.judge_expected(&part.stream, part.expected) {
                Ok(actual) => first_versions.push(actual.map_or(0, |v| v + 1)),
                Err(error) => return Decision::Answer(Err(error)),
            }
        }
        // A stream a commit only checks is judged as one it appends to: a
        // guard on a stream deleted for good fails as an append to it
        // would, and a soft-deleted stream nothing was appended to since
        // passes for `NoStream`.
        for (stream, expected) in intent.checks {
            if let Err(error) = self.judge_expected(stream, *expected) {
                return Decision::Answer(Err(error));
            }
        }
        if let Some(condition) = intent.condition {
            match self.first_match(condition) {
                Ok(None) => {}
                Ok(Some(position)) => {
                    return Decision::Answer(Err(Error::AppendConditionFailed { position }))
                }
                Err(error) => return Decision::Answer(Err(error)),
            }
        }
        self.group_ids.extend(intent.ids.iter().copied());
        for (part, first_version) in intent.parts.iter().zip(&first_versions) {
            let count = part.count as u64;
            let last_version = first_version + count.saturating_sub(1);
            self.last_versions
                .insert(part.stream.clone(), Some(last_version));
            if let Some(mode) = part.deletes {
                let deletion = Deletion {
                    tombstone_version: last_version,
                    mode,
                };
                self.group_deletions.insert(part.stream.clone(), deletion);
            }
        }
        if let Some(planned) = self.planned.as_mut() {
            let mut at = 0;
            let mut position = self.next_position;
            while let Some((event_type, tags, padded)) =
                intent.records.get(at..).and_then(record::unfinished_keys)
            {
                planned.push(PlannedEvent {
                    position,
                    event_type: Box::from(event_type),
                    tags: tags.into_iter().map(Box::from).collect(),
                });
                position += 1;
                at += padded;
            }
        }
        self.next_position += intent.ids.len() as u64;
        Decision::Write { first_versions }
    }

    /// The first position after the condition's of an event matching its
    /// query: in the log, then among the events planned earlier in the
    /// group (which all come after the log's).
    fn first_match(&self, condition: &AppendCondition) -> Result<Option<u64>> {
        let from = condition.first_counted();
        let query = &condition.fail_if_events_match;
        if let Some(position) = self.index.first_match(query, from)? {
            return Ok(Some(position));
        }
        Ok(self
            .planned
            .iter()
            .flatten()
            .find(|e| e.position >= from && query.matches_keys(&e.event_type, &e.tags))
            .map(|e| e.position))
    }

    /// An append some of whose ids were already written: a retry if all of
    /// them were, in the same order, consecutively, each to the stream it
    /// is for; then the original result. Anything else is a conflict.
    fn resolve_retry(&self, intent: &Intent<'_>, known: &[Option<u64>]) -> Result<CommitResult> {
        let first_stream = intent.parts.first().map_or("", |p| p.stream.as_str());
        let conflict = |reason: String| Error::IdempotencyConflict {
            stream: first_stream.to_string(),
            reason,
        };
        let Some(Some(first_position)) = known.first().copied() else {
            return Err(conflict(
                "its first event is new but later ones were already written".into(),
            ));
        };
        let mut streams = Vec::with_capacity(intent.parts.len());
        let mut i = 0usize;
        for part in intent.parts {
            let mut first_version = 0;
            for k in 0..part.count {
                let position = known.get(i).copied().flatten();
                let expected = first_position + i as u64;
                match position {
                    None => {
                        return Err(conflict(format!(
                            "event {i} is new but event 0 was already written"
                        )))
                    }
                    Some(p) if p != expected => {
                        return Err(conflict(format!(
                        "event {i} was written at position {p}, not right after the one before it"
                    )))
                    }
                    Some(p) => {
                        let location = self
                            .index
                            .locate(p)?
                            .ok_or_else(|| conflict(format!("event {i} is no longer indexed")))?;
                        let event = location.segment.read_event(location.offset, p)?;
                        if *event.stream != *part.stream {
                            return Err(conflict(format!(
                                "event {i} was written to stream '{}'",
                                &*event.stream
                            )));
                        }
                        if k == 0 {
                            first_version = event.version;
                        }
                    }
                }
                i += 1;
            }
            let count = part.count as u64;
            let part_first = first_position + (i as u64 - count);
            streams.push(AppendResult {
                first_version,
                last_version: first_version + count.saturating_sub(1),
                first_position: part_first,
                last_position: part_first + count.saturating_sub(1),
            });
        }
        let count = known.len() as u64;
        Ok(CommitResult {
            first_position,
            last_position: first_position + count - 1,
            streams,
        })
    }
}

fn wrong_version(stream: &str, expected: ExpectedVersion, actual: Option<u64>) -> Error {
    Error::WrongExpectedVersion {
        stream: stream.to_string(),
        expected,
        actual,
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::indexing_slicing)]
mod tests {
    use super::*;
    use crate::index::hash::HashKind;
    use crate::query::Query;
    use uuid::Uuid;

    fn tagged_record(id: u128, tags: &[&str]) -> Vec<u8> {
        let mut out = Vec::new();
        record::encode_unfinished_record(
            &mut out,
            &record::RecordBody {
                id: Uuid::from_u128(id),
                stream: "s",
                event_type: "Claimed",
                tags,
                metadata: b"",
                payload: b"",
            },
        );
        out
    }

    fn part(stream: &str) -> Vec<StreamWrite> {
        vec![StreamWrite {
            deletes: None,
            stream: stream.into(),
            expected: ExpectedVersion::Any,
            count: 1,
        }]
    }

    /// A request must see what an earlier request of its own group
    /// planned, though it is neither written nor indexed yet: the log's
    /// head is `after`, and the event planned at `after + 1` fails it.
    #[test]
    fn a_condition_sees_events_planned_earlier_in_the_group() {
        let index = Index::new(HashKind::Xxh3, 0);
        let mut planner = GroupPlanner::new(&index, true, 0);
        let first = tagged_record(1, &["user:ada"]);
        let decision = planner.plan(Intent {
            parts: &part("a"),
            checks: &[],
            condition: None,
            ids: &[1],
            records: &first,
            ids_absent_below: 0,
        });
        assert!(matches!(decision, Decision::Write { .. }), "{decision:?}");

        let second = tagged_record(2, &["user:ada"]);
        let condition = AppendCondition::new(Query::tagged(["user:ada"]), None);
        let decision = planner.plan(Intent {
            parts: &part("b"),
            checks: &[],
            condition: Some(&condition),
            ids: &[2],
            records: &second,
            ids_absent_below: 0,
        });
        assert!(
            matches!(
                decision,
                Decision::Answer(Err(Error::AppendConditionFailed { position: 0 }))
            ),
            "{decision:?}"
        );

        // After the planned event, or on another tag, the condition holds;
        // and the planned events' positions go on from there.
        for condition in [
            AppendCondition::new(Query::tagged(["user:ada"]), Some(0)),
            AppendCondition::new(Query::tagged(["user:bob"]), None),
        ] {
            let id = 3 + u128::from(condition.after.is_some());
            let record = tagged_record(id, &["user:ada"]);
            let decision = planner.plan(Intent {
                parts: &part(&format!("c{id}")),
                checks: &[],
                condition: Some(&condition),
                ids: &[id],
                records: &record,
                ids_absent_below: 0,
            });
            assert!(matches!(decision, Decision::Write { .. }), "{decision:?}");
        }
        let late = AppendCondition::new(Query::tagged(["user:ada"]), Some(1));
        let record = tagged_record(9, &[]);
        let decision = planner.plan(Intent {
            parts: &part("d"),
            checks: &[],
            condition: Some(&late),
            ids: &[9],
            records: &record,
            ids_absent_below: 0,
        });
        assert!(
            matches!(
                decision,
                Decision::Answer(Err(Error::AppendConditionFailed { position: 2 }))
            ),
            "{decision:?}"
        );
    }

    #[test]
    fn checked_streams_see_streams_written_earlier_in_the_group() {
        let index = Index::new(HashKind::Xxh3, 0);
        let mut planner = GroupPlanner::new(&index, false, 0);
        let record = tagged_record(1, &[]);
        let decision = planner.plan(Intent {
            parts: &part("a"),
            checks: &[],
            condition: None,
            ids: &[1],
            records: &record,
            ids_absent_below: 0,
        });
        assert!(matches!(decision, Decision::Write { .. }));
        let record = tagged_record(2, &[]);
        let checks = [("a".to_string(), ExpectedVersion::NoStream)];
        let decision = planner.plan(Intent {
            parts: &part("b"),
            checks: &checks,
            condition: None,
            ids: &[2],
            records: &record,
            ids_absent_below: 0,
        });
        assert!(
            matches!(
                &decision,
                Decision::Answer(Err(Error::WrongExpectedVersion { stream, actual: Some(0), .. })) if stream == "a"
            ),
            "{decision:?}"
        );
    }
}
