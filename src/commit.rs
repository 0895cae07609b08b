//! A commit: appends to any number of streams, expected versions checked on
//! streams not written, and an optional [`AppendCondition`], all or nothing.

use crate::query::AppendCondition;
use crate::types::{AppendResult, Durability, EventData, ExpectedVersion};

/// One stream's part of a commit.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct StreamAppend {
    pub stream: String,
    pub expected: ExpectedVersion,
    pub events: Vec<EventData>,
}

/// What [`crate::Store::commit`] writes and checks, built step by step.
/// Everything in it holds together or nothing is written: every stream's
/// expected version (of streams written and of streams only checked), and
/// the append condition, checked against the log as it is when the commit
/// is written, after every commit before it.
///
/// ```
/// use evstore::{AppendCondition, Commit, EventData, ExpectedVersion, Query};
/// let commit = Commit::new()
///     .append("course-c1", ExpectedVersion::Any, [EventData::new("StudentSubscribed", &b"{}"[..])
///         .with_tags(["course:c1", "student:s7"])])
///     .append("student-s7", ExpectedVersion::Any, [EventData::new("CourseJoined", &b"{}"[..])])
///     .check("course-catalog", ExpectedVersion::StreamExists)
///     .condition(AppendCondition::new(Query::tagged(["course:c1"]), Some(41)));
/// assert_eq!(commit.event_count(), 2);
/// ```
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Commit {
    pub(crate) appends: Vec<StreamAppend>,
    pub(crate) checks: Vec<(String, ExpectedVersion)>,
    pub(crate) condition: Option<AppendCondition>,
    pub(crate) durability: Option<Durability>,
}

impl Commit {
    /// A commit that does nothing yet.
    #[must_use]
    pub fn new() -> Self {
        Commit::default()
    }

    /// Appends `events` to `stream`, which must be at `expected`. Each
    /// stream may appear once in a commit (written or checked).
    #[must_use]
    pub fn append(
        mut self,
        stream: impl Into<String>,
        expected: ExpectedVersion,
        events: impl IntoIterator<Item = EventData>,
    ) -> Self {
        self.appends.push(StreamAppend {
            stream: stream.into(),
            expected,
            events: events.into_iter().collect(),
        });
        self
    }

    /// Requires `stream`, which this commit does not write, to be at
    /// `expected`, judged as an append to it would be: a stream deleted for
    /// good fails the commit with [`crate::Error::StreamDeleted`], and a
    /// soft-deleted one nothing was appended to since passes as
    /// [`ExpectedVersion::NoStream`] (as well as at its tombstone's version).
    #[must_use]
    pub fn check(mut self, stream: impl Into<String>, expected: ExpectedVersion) -> Self {
        self.checks.push((stream.into(), expected));
        self
    }

    /// Fails the commit if an event matching the condition's query was
    /// appended after its position.
    #[must_use]
    pub fn condition(mut self, condition: AppendCondition) -> Self {
        self.condition = Some(condition);
        self
    }

    /// Acknowledges this commit with `durability` instead of the store's
    /// default.
    #[must_use]
    pub fn durability(mut self, durability: Durability) -> Self {
        self.durability = Some(durability);
        self
    }

    /// Events the commit appends, over all its streams.
    #[must_use]
    pub fn event_count(&self) -> usize {
        self.appends.iter().map(|a| a.events.len()).sum()
    }
}

/// What a commit wrote: one position range for all of it, and what each
/// stream got, in the order the streams were added to the commit.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub struct CommitResult {
    /// Position of the commit's first event.
    pub first_position: u64,
    /// Position of its last event: what a later [`AppendCondition`] that
    /// builds on this commit passes as `after`.
    pub last_position: u64,
    /// Each written stream's versions and positions.
    pub streams: Vec<AppendResult>,
}
