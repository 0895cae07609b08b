//! Crypto-shredding: sealing appended payloads with their subject's key,
//! opening them on every read, and forgetting a subject for good.

use super::append::Part;
use super::Store;
use crate::error::{Error, Result};
use crate::key_store::KeyFate;
use crate::layout::SEGMENTS_DIR;
use crate::retention::Retained;
use crate::sealing::{key_id, open, seal, Field, Opened, SUBJECT_TAG_PREFIX};
use crate::types::{EventData, RecordedEvent};
use bytes::Bytes;

impl Store {
    /// Erases every event sealed for `subject` (see
    /// [`Options::crypto_shredding`](crate::Options::crypto_shredding)): its
    /// key is removed from the key store, and the key store rewritten and
    /// synced, before this returns. From then on those events read with
    /// [`RecordedEvent::erased`] set and an empty payload and metadata, in
    /// this process and in every store opened later; their stream, type,
    /// tags, version, position, id and timestamp remain. True if the subject
    /// had a key. A later event of the subject is sealed with a new key.
    ///
    /// # Errors
    ///
    /// [`Error::InvalidRequest`] for an empty subject; [`Error::ReadOnly`];
    /// [`Error::Io`] if the key store cannot be rewritten (the key is then
    /// kept).
    ///
    /// ```
    /// use evstore::{Direction, EventData, ExpectedVersion, Options, Store};
    /// # let dir = tempfile::tempdir().unwrap();
    /// let store = Store::open(dir.path(), Options::default().crypto_shredding(true)).unwrap();
    /// let joined = EventData::new("UserJoined", &b"{\"email\":\"ada@example.com\"}"[..]);
    /// store.append("user-42", ExpectedVersion::NoStream, &[joined]).unwrap();
    ///
    /// assert!(store.forget("user-42").unwrap());
    /// let read = store.read_stream("user-42", 0, Direction::Forward, 1).unwrap();
    /// assert!(read[0].erased && read[0].payload.is_empty());
    /// assert_eq!(&*read[0].event_type, "UserJoined");
    /// ```
    pub fn forget(&self, subject: &str) -> Result<bool> {
        self.refuse_if_read_only("forget")?;
        if subject.is_empty() {
            return Err(Error::InvalidRequest {
                what: "forget",
                reason: "the subject is empty".into(),
            });
        }
        self.inner.keys.forget(subject)
    }

    /// The events of `parts` sealed with their subjects' keys (made and
    /// synced first for subjects that have none), each tagged with its
    /// subject.
    pub(super) fn seal_parts(&self, parts: &[Part<'_>]) -> Result<Vec<Vec<EventData>>> {
        // The subject tag is the store's own: any subject a stream name or
        // a tag could be fits, within what the format holds.
        let options = self.options();
        let max_subject = options
            .max_tag_len
            .max(options.max_stream_name_len)
            .min(usize::from(u16::MAX) - SUBJECT_TAG_PREFIX.len());
        parts
            .iter()
            .map(|part| {
                part.events
                    .iter()
                    .map(|event| self.seal_event(part.stream, event, max_subject))
                    .collect()
            })
            .collect()
    }

    fn seal_event(&self, stream: &str, event: &EventData, max_subject: usize) -> Result<EventData> {
        let subject = event.subject.as_deref().unwrap_or(stream);
        if subject.is_empty() || subject.len() > max_subject {
            return Err(Error::InvalidRequest {
                what: "append",
                reason: format!(
                    "subject '{subject}' must be 1 to {max_subject} bytes (the longer of the tag and stream name length limits)"
                ),
            });
        }
        let key = self.inner.keys.get_or_create(subject)?;
        let id = event.id.as_bytes();
        let refused = |reason: &'static str| Error::InvalidRequest {
            what: "append",
            reason: reason.to_string(),
        };
        let payload = seal(&key, id, Field::Payload, &event.payload).map_err(refused)?;
        let metadata = seal(&key, id, Field::Metadata, &event.metadata).map_err(refused)?;
        let mut sealed = event.clone();
        sealed.payload = payload;
        sealed.metadata = metadata;
        sealed.subject = None;
        sealed.tags.push(format!("{SUBJECT_TAG_PREFIX}{subject}"));
        Ok(sealed)
    }

    /// Opens `event`'s payload and metadata where it is if they were
    /// sealed, or marks it erased if its subject was forgotten.
    ///
    /// # Errors
    ///
    /// [`Error::Corrupted`] if a sealed field does not open with the key
    /// that sealed it.
    pub(crate) fn unseal_in_place(&self, event: &mut RecordedEvent) -> Result<()> {
        let fate = match self.sealing(event) {
            Sealing::None => return Ok(()),
            // Opening without a key reports why the field is unreadable.
            Sealing::Unreadable => KeyFate::Forgotten,
            Sealing::Key(fate) => fate,
        };
        let id = *event.id.as_bytes();
        let damaged = |reason: &str| {
            Error::corrupted(
                SEGMENTS_DIR,
                event.position,
                format!(
                    "event {} of stream '{}': {reason}",
                    event.version, &*event.stream
                ),
            )
        };
        let key = match fate {
            KeyFate::Held(key) => Some(key),
            KeyFate::Forgotten => None,
            KeyFate::Missing => {
                return Err(damaged(
                    "the key that sealed it is neither in the key store nor recorded as \
                     forgotten: the key store was damaged, removed or replaced",
                ))
            }
        };
        let payload = open(key.as_ref(), &id, Field::Payload, &event.payload).map_err(damaged)?;
        let metadata =
            open(key.as_ref(), &id, Field::Metadata, &event.metadata).map_err(damaged)?;
        if let (Opened::Plain(payload), Opened::Plain(metadata)) = (payload, metadata) {
            event.payload = payload;
            event.metadata = metadata;
        } else {
            event.payload = Bytes::new();
            event.metadata = Bytes::new();
            event.erased = true;
        }
        Ok(())
    }

    /// Whether `event` is sealed, and what became of its key.
    fn sealing(&self, event: &RecordedEvent) -> Sealing {
        let Some(subject) = event
            .tags
            .iter()
            .find_map(|t| t.strip_prefix(SUBJECT_TAG_PREFIX))
        else {
            return Sealing::None;
        };
        // Both fields name the same key; an empty one is not sealed.
        let sealed = if event.payload.is_empty() {
            &event.metadata
        } else {
            &event.payload
        };
        if sealed.is_empty() {
            return Sealing::None;
        }
        match key_id(sealed) {
            Some(id) => Sealing::Key(self.inner.keys.fate(subject, id)),
            None => Sealing::Unreadable,
        }
    }

    /// Whether `event` was sealed with a key that is gone (its subject was
    /// forgotten), without opening it. A key missing without a record of
    /// its forgetting is not: a scavenge leaves such an event alone, for
    /// reads to report.
    pub(crate) fn is_shredded(&self, event: &RecordedEvent) -> bool {
        matches!(self.sealing(event), Sealing::Key(KeyFate::Forgotten))
    }

    /// The events as a read hands them out: sealed ones opened, erased ones
    /// reduced to what a redaction marker keeps.
    ///
    /// # Errors
    ///
    /// As [`Store::unseal_in_place`].
    pub(crate) fn finish_read(
        &self,
        events: Vec<RecordedEvent>,
        retained: &Retained,
        through_index: bool,
    ) -> Result<Vec<RecordedEvent>> {
        let mut events = self.unseal_all(events)?;
        retained.redact(&mut events);
        let bytes = events
            .iter()
            .map(|e| (e.payload.len() + e.metadata.len()) as u64)
            .sum();
        self.inner
            .state
            .telemetry
            .read(events.len() as u64, bytes, through_index);
        Ok(events)
    }

    /// [`Store::unseal_in_place`] of every event, in place (no event is moved).
    pub(crate) fn unseal_all(&self, mut events: Vec<RecordedEvent>) -> Result<Vec<RecordedEvent>> {
        for event in &mut events {
            self.unseal_in_place(event)?;
        }
        Ok(events)
    }
}

/// Whether an event is sealed, and what became of its key.
enum Sealing {
    /// Nothing of it is sealed.
    None,
    /// It is sealed for a subject, but its sealed field names no key.
    Unreadable,
    /// Sealed with a key, which is in this state.
    Key(KeyFate),
}
