//! Appending: validating an append, encoding its records, and handing it
//! to group commit; flushing and closing.

use super::group_commit::{AppendRequest, Command, ParkSlot, Reply, ReplyTo, StreamWrite};
use super::Store;
use crate::commit::{Commit, CommitResult};
use crate::error::{Error, Result};
use crate::index::deferred_check::read_checked;
use crate::log::{max_batch_len, record};
use crate::query::AppendCondition;
use crate::stream_metadata::{DeleteMode, METADATA_STREAM_PREFIX};
use crate::types::{AppendResult, Durability, EventData, ExpectedVersion};
use crate::validate::{has_control, validate_stream_name, validate_tags};
use std::sync::mpsc::sync_channel;
use std::sync::Arc;
use uuid::Uuid;

/// One stream's part of an append or commit, borrowed from the caller.
pub(super) struct Part<'a> {
    pub stream: &'a str,
    pub expected: ExpectedVersion,
    pub events: &'a [EventData],
    /// Set when the part is a deletion's tombstone (written by the store).
    pub deletes: Option<DeleteMode>,
}

/// Who writes: a user, held to the names the store reserves, or the store
/// itself, writing its lifecycle events under those names.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Origin {
    User,
    Store,
}

impl Store {
    /// Appends `events` to `stream` if it is at `expected`, atomically: after
    /// any crash either all of them exist or none. Acknowledged with the
    /// store's default durability.
    ///
    /// # Errors
    ///
    /// [`Error::WrongExpectedVersion`] if the stream is not at `expected`, and
    /// [`Error::IdempotencyConflict`] if the events' ids match only some of
    /// the events already written; nothing is written then. An append outside
    /// the limits is refused with [`Error::InvalidStreamName`],
    /// [`Error::InvalidEventType`], [`Error::EmptyBatch`],
    /// [`Error::DuplicateEventId`], [`Error::EventTooLarge`] or
    /// [`Error::BatchTooLarge`]. [`Error::NoSpace`] when the disk is full;
    /// [`Error::StorePoisoned`] once a write or sync has failed;
    /// [`Error::ReadOnly`] or [`Error::Closed`] when the store takes no
    /// appends; [`Error::Corrupted`] or [`Error::Io`] if an index needed to
    /// recognise retries cannot be read.
    ///
    /// ```
    /// use evstore::{Error, EventData, ExpectedVersion, Options, Store};
    /// # let dir = tempfile::tempdir().unwrap();
    /// let store = Store::open(dir.path(), Options::default()).unwrap();
    /// let first = store
    ///     .append("cart-1", ExpectedVersion::NoStream, &[EventData::new("Created", &b"{}"[..])])
    ///     .unwrap();
    /// store
    ///     .append("cart-1", ExpectedVersion::Exact(first.last_version), &[EventData::new("ItemAdded", &b"{}"[..])])
    ///     .unwrap();
    /// // A writer that read an older state loses the race and writes nothing.
    /// let stale = store.append("cart-1", ExpectedVersion::Exact(0), &[EventData::new("ItemAdded", &b"{}"[..])]);
    /// assert!(matches!(stale, Err(Error::WrongExpectedVersion { actual: Some(1), .. })));
    /// ```
    pub fn append(
        &self,
        stream: &str,
        expected: ExpectedVersion,
        events: &[EventData],
    ) -> Result<AppendResult> {
        self.append_with_durability(stream, expected, events, self.options().durability)
    }

    /// [`Store::append`] with an explicit durability for this append.
    ///
    /// # Errors
    ///
    /// As [`Store::append`].
    pub fn append_with_durability(
        &self,
        stream: &str,
        expected: ExpectedVersion,
        events: &[EventData],
        durability: Durability,
    ) -> Result<AppendResult> {
        let parts = [Part {
            stream,
            expected,
            events,
            deletes: None,
        }];
        let result = self.submit(&parts, &[], None, durability, "append", Origin::User)?;
        result
            .streams
            .first()
            .copied()
            .ok_or_else(|| Error::InvalidRequest {
                what: "append",
                reason: "the writer answered without a result".into(),
            })
    }

    /// Writes a [`Commit`]: its events to their streams, in the order given,
    /// at consecutive positions, all or nothing (one batch on disk: after
    /// any crash either all of them exist or none), if every expected
    /// version holds and no event matching its condition's query was
    /// appended after the condition's position. Checked by the writer
    /// against the log as every commit before this one left it, including
    /// commits of the same group not yet synced.
    ///
    /// A retry (the same events with the same ids) returns the original
    /// result, also after a restart, as long as the events are within the
    /// idempotency window; a retry of a consecutive part of them (one
    /// stream's events, say) returns where that part is.
    ///
    /// # Errors
    ///
    /// As [`Store::append`], and: [`Error::AppendConditionFailed`] naming the
    /// first matching position; [`Error::WrongExpectedVersion`] naming the
    /// first stream (written or checked) that is not at its expected
    /// version; [`Error::InvalidRequest`] for a commit with no event, one
    /// that names a stream twice, or an invalid query; [`Error::InvalidTag`].
    ///
    /// ```
    /// use evstore::{AppendCondition, Commit, Error, EventData, ExpectedVersion, Options, Query, Store};
    /// # let dir = tempfile::tempdir().unwrap();
    /// let store = Store::open(dir.path(), Options::default()).unwrap();
    /// let claim = |user: &str, after| {
    ///     Commit::new()
    ///         .append(format!("user-{user}"), ExpectedVersion::NoStream, [
    ///             EventData::new("UsernameClaimed", &b"{}"[..]).with_tags(["username:ada"]),
    ///         ])
    ///         .condition(AppendCondition::new(Query::tagged(["username:ada"]), after))
    /// };
    /// // Both decided from an empty log; only the first commit holds.
    /// let first = store.commit(&claim("1", None)).unwrap();
    /// let second = store.commit(&claim("2", None));
    /// assert!(matches!(second, Err(Error::AppendConditionFailed { position }) if position == first.first_position));
    /// ```
    pub fn commit(&self, commit: &Commit) -> Result<CommitResult> {
        let parts = commit_parts(commit);
        let durability = commit.durability.unwrap_or(self.options().durability);
        self.submit(
            &parts,
            &commit.checks,
            commit.condition.as_ref(),
            durability,
            "commit",
            Origin::User,
        )
    }

    pub(super) fn submit(
        &self,
        parts: &[Part<'_>],
        checks: &[(String, ExpectedVersion)],
        condition: Option<&AppendCondition>,
        durability: Durability,
        operation: &'static str,
        origin: Origin,
    ) -> Result<CommitResult> {
        let started = std::time::Instant::now();
        let slot = APPEND_REPLY.with(Arc::clone);
        let request = self.prepare(
            parts,
            checks,
            condition,
            durability,
            operation,
            origin,
            ReplyTo::parked(slot.sender()),
        )?;
        let answer = self
            .group_commit(operation)?
            .call(Command::Append(request), &*slot);
        self.inner
            .state
            .telemetry
            .answered(durability, started.elapsed());
        answer
    }

    /// A commit checked and encoded, its events sealed if the store seals
    /// them, ready to queue with its `reply`.
    #[expect(
        clippy::too_many_arguments,
        reason = "a commit's parts, as `Store::submit` takes them, and where to answer"
    )]
    pub(super) fn prepare(
        &self,
        parts: &[Part<'_>],
        checks: &[(String, ExpectedVersion)],
        condition: Option<&AppendCondition>,
        durability: Durability,
        operation: &'static str,
        origin: Origin,
        reply: ReplyTo,
    ) -> Result<AppendRequest> {
        self.refuse_if_read_only(operation)?;
        if origin == Origin::User && self.options().crypto_shredding {
            // The events as given are held to the user's rules, then sealed
            // (their subject tag is the store's own).
            self.validate_commit(parts, checks, condition, Origin::User)?;
            let sealed = self.seal_parts(parts)?;
            let sealed_parts: Vec<Part<'_>> = parts
                .iter()
                .zip(&sealed)
                .map(|(part, events)| Part {
                    stream: part.stream,
                    expected: part.expected,
                    events,
                    deletes: part.deletes,
                })
                .collect();
            return self.prepare_checked(
                &sealed_parts,
                checks,
                condition,
                durability,
                Origin::Store,
                reply,
            );
        }
        self.prepare_checked(parts, checks, condition, durability, origin, reply)
    }

    /// [`Store::prepare`] of events as they are written.
    fn prepare_checked(
        &self,
        parts: &[Part<'_>],
        checks: &[(String, ExpectedVersion)],
        condition: Option<&AppendCondition>,
        durability: Durability,
        origin: Origin,
        reply: ReplyTo,
    ) -> Result<AppendRequest> {
        let encoded_len = self.validate_commit(parts, checks, condition, origin)?;
        if let Some(error) = self.inner.state.poisoned() {
            return Err(error);
        }
        let event_count: usize = parts.iter().map(|p| p.events.len()).sum();
        let mut ids: Vec<u128> = Vec::with_capacity(event_count);
        let mut records = Vec::with_capacity(encoded_len);
        let mut sorted_tags: Vec<&str> = Vec::new();
        for part in parts {
            for event in part.events {
                ids.push(event.id.as_u128());
                sorted_tags.clear();
                sorted_tags.extend(event.tags.iter().map(String::as_str));
                sorted_tags.sort_unstable();
                record::encode_unfinished_record(
                    &mut records,
                    &record::RecordBody {
                        id: event.id,
                        stream: part.stream,
                        event_type: &event.event_type,
                        tags: &sorted_tags,
                        metadata: &event.metadata,
                        payload: &event.payload,
                    },
                );
            }
        }
        let ids_absent_below = read_checked(&self.inner.state.index, |index| {
            index.sealed_without_ids(&ids)
        })?;
        Ok(AppendRequest {
            parts: parts
                .iter()
                .map(|p| StreamWrite {
                    deletes: p.deletes,
                    stream: p.stream.to_string(),
                    expected: p.expected,
                    count: p.events.len(),
                })
                .collect(),
            checks: checks.to_vec(),
            condition: condition.cloned(),
            records,
            ids,
            durability,
            encoded_len,
            ids_absent_below,
            reply,
        })
    }

    /// Checks a commit against the limits; returns its encoded size.
    fn validate_commit(
        &self,
        parts: &[Part<'_>],
        checks: &[(String, ExpectedVersion)],
        condition: Option<&AppendCondition>,
        origin: Origin,
    ) -> Result<usize> {
        let options = self.options();
        let refuse = |reason: String| Error::InvalidRequest {
            what: "commit",
            reason,
        };
        if parts.len() > 1 || !checks.is_empty() {
            let mut named: foldhash::HashSet<&str> = foldhash::HashSet::default();
            for name in parts
                .iter()
                .map(|p| p.stream)
                .chain(checks.iter().map(|c| c.0.as_str()))
            {
                validate_name(name, options.max_stream_name_len, origin)?;
                if !named.insert(name) {
                    return Err(refuse(format!("it names stream '{name}' twice")));
                }
            }
        }
        if let Some(condition) = condition {
            condition.fail_if_events_match.validate()?;
        }
        let event_count: usize = parts.iter().map(|p| p.events.len()).sum();
        if event_count == 0 {
            return Err(if parts.len() == 1 {
                Error::EmptyBatch
            } else {
                refuse("it appends no event".into())
            });
        }
        // A stream named with no events would get a result for events it
        // never received: a check on it belongs in `Commit::check`.
        if let Some(empty) = parts.iter().find(|p| p.events.is_empty()) {
            return Err(refuse(format!(
                "it appends no event to stream '{}' (use check for a stream only checked)",
                empty.stream
            )));
        }
        // A retry is recognised by its ids; a commit that repeats one
        // could not be told from a retry of itself. Ids that only increase
        // (as one thread's default ids do) repeat none, and need no set.
        if event_count > 1 && !ids_increase(parts) {
            let mut seen: foldhash::HashSet<Uuid> =
                foldhash::HashSetExt::with_capacity(event_count);
            for part in parts {
                if let Some(event) = part.events.iter().find(|e| !seen.insert(e.id)) {
                    return Err(Error::DuplicateEventId {
                        stream: part.stream.to_string(),
                        id: event.id,
                    });
                }
            }
        }
        let segment_room = max_batch_len(options.segment_size);
        let mut encoded = record::BATCH_HEADER_LEN;
        for part in parts {
            validate_name(part.stream, options.max_stream_name_len, origin)?;
            self.validate_events(part.stream, part.events, segment_room, origin)?;
            encoded += record::encoded_records_len(part.stream, part.events);
        }
        if encoded > segment_room || event_count > u32::MAX as usize {
            return Err(Error::BatchTooLarge {
                size: encoded,
                max: segment_room,
            });
        }
        Ok(encoded)
    }

    fn validate_events(
        &self,
        stream: &str,
        events: &[EventData],
        segment_room: usize,
        origin: Origin,
    ) -> Result<()> {
        let options = self.options();
        let max_type_len = options.max_event_type_len.min(usize::from(u16::MAX));
        // The caller's events are held to the caller's limit; the store's
        // sealed copies of them may grow by what sealing adds to each field.
        let sealing = if origin == Origin::Store {
            2 * crate::sealing::SEALING_OVERHEAD
        } else {
            0
        };
        let max_event = options
            .max_event_size
            .saturating_add(sealing)
            .min(segment_room.saturating_sub(record::RECORD_HEADER_LEN + 8 + stream.len()));
        for event in events {
            let event_type = event.event_type();
            if event_type.is_empty() {
                return Err(Error::InvalidEventType {
                    event_type: event_type.into(),
                    reason: "empty".into(),
                });
            }
            if event_type.len() > max_type_len {
                return Err(Error::InvalidEventType {
                    event_type: event_type.into(),
                    reason: format!("longer than {max_type_len} bytes"),
                });
            }
            if origin == Origin::User && event_type.starts_with('$') {
                return Err(Error::InvalidEventType {
                    event_type: event_type.into(),
                    reason: "types starting with '$' are reserved".into(),
                });
            }
            if has_control(event_type) {
                return Err(Error::InvalidEventType {
                    event_type: event_type.into(),
                    reason: "control characters are not allowed".into(),
                });
            }
            validate_tags(&event.tags, options, origin == Origin::User)?;
            if event.size() > max_event
                || record::record_len(
                    stream.len(),
                    event_type.len(),
                    record::tags_len(&event.tags),
                    event.metadata.len(),
                    event.payload.len(),
                ) + record::BATCH_HEADER_LEN
                    > segment_room
            {
                return Err(Error::EventTooLarge {
                    size: event.size(),
                    max: max_event,
                });
            }
        }
        Ok(())
    }

    /// Makes every append acknowledged so far durable.
    ///
    /// # Errors
    ///
    /// [`Error::StorePoisoned`] if the sync fails, or once a write or sync
    /// has failed; [`Error::ReadOnly`] or [`Error::Closed`] when the store
    /// takes no appends.
    pub fn flush(&self) -> Result<()> {
        self.refuse_if_read_only("flush")?;
        let (reply, result) = sync_channel(1);
        self.group_commit("flush")?
            .call(Command::Flush(Reply::Thread(reply)), &result)
    }
}

/// Whether the ids of the parts' events, in order, only increase.
fn ids_increase(parts: &[Part<'_>]) -> bool {
    let mut last: Option<u128> = None;
    parts.iter().flat_map(|p| p.events).all(|event| {
        let id = event.id.as_u128();
        let increases = last.is_none_or(|last| last < id);
        last = Some(id);
        increases
    })
}

/// A commit's appends as the parts [`Store::submit`] takes.
pub(super) fn commit_parts(commit: &Commit) -> Vec<Part<'_>> {
    commit
        .appends
        .iter()
        .map(|a| Part {
            stream: &a.stream,
            expected: a.expected,
            events: &a.events,
            deletes: None,
        })
        .collect()
}

thread_local! {
    /// Where this thread's appends are answered: a thread waits for one
    /// append at a time, so one slot serves them all, and an append costs
    /// no channel of its own.
    static APPEND_REPLY: Arc<ParkSlot<Result<CommitResult>>> = Arc::default();
}

/// Checks a stream name: a user's, or one of the store's metadata streams
/// (the prefix, then a name a user could write to).
fn validate_name(name: &str, max_len: usize, origin: Origin) -> Result<()> {
    match (origin, name.strip_prefix(METADATA_STREAM_PREFIX)) {
        (Origin::Store, Some(stream)) => validate_stream_name(stream, max_len),
        _ => validate_stream_name(name, max_len),
    }
}
