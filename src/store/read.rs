//! Reading: a stream by version, the global log by position, and where
//! each ends.

use super::Store;
use crate::error::{Error, Result};
use crate::index::deferred_check::read_checked;
use crate::index::Location;
use crate::layout::SEGMENTS_DIR;
use crate::retention::{is_lifecycle_event, StreamRule};
use crate::types::{Direction, RecordedEvent};
use crate::validate::validate_stream_name;
use std::cell::Cell;
use std::path::PathBuf;
use std::sync::Arc;

thread_local! {
    /// The buffer of the last stream read on this thread, kept for the next
    /// (empty): a lookup of one event then allocates only what it returns.
    static LOCATIONS: Cell<Vec<Location>> = const { Cell::new(Vec::new()) };
}

/// Most locations a kept buffer has room for, so a long read does not leave
/// a large one behind.
const KEPT_LOCATIONS: usize = 64;

impl Store {
    /// The end of what readers may see: durable events in a `Sync` store,
    /// every written event in a `Buffered` one.
    pub(crate) fn visible_end(&self) -> u64 {
        self.inner.state.visible_end()
    }

    /// Reads up to `max_count` events of `stream` starting at version
    /// `from_version`, oldest first (`Forward`) or newest first (`Backward`;
    /// a `from_version` past the end starts at the last event, so
    /// `u64::MAX` reads the newest). A stream with no events reads as empty.
    ///
    /// # Errors
    ///
    /// [`Error::InvalidStreamName`] for a name no append would take;
    /// [`Error::Corrupted`] if the stream's records or index are damaged;
    /// [`Error::Io`] if they cannot be read.
    ///
    /// ```
    /// use evstore::{Direction, EventData, ExpectedVersion, Options, Store};
    /// # let dir = tempfile::tempdir().unwrap();
    /// let store = Store::open(dir.path(), Options::default()).unwrap();
    /// let events: Vec<_> = (0..5).map(|i| EventData::new("Tick", vec![i as u8])).collect();
    /// store.append("clock", ExpectedVersion::Any, &events).unwrap();
    /// let newest_two = store.read_stream("clock", u64::MAX, Direction::Backward, 2).unwrap();
    /// assert_eq!(newest_two.iter().map(|e| e.version).collect::<Vec<_>>(), [4, 3]);
    /// assert!(store.read_stream("nobody", 0, Direction::Forward, 10).unwrap().is_empty());
    /// ```
    pub fn read_stream(
        &self,
        stream: &str,
        from_version: u64,
        direction: Direction,
        max_count: usize,
    ) -> Result<Vec<RecordedEvent>> {
        validate_stream_name(stream, self.options().max_stream_name_len)?;
        let end = self.visible_end();
        let retained = self.retained()?;
        let events = match retained.rule(stream) {
            None => self.read_stream_below(stream, from_version, direction, max_count, end)?,
            Some(rule) => {
                let kept = KeptStream {
                    stream,
                    rule,
                    now: retained.now(),
                    end,
                };
                self.read_stream_kept(&kept, from_version, direction, max_count)?
            }
        };
        self.finish_read(events, &retained, true)
    }

    /// [`Store::read_stream`] of a stream with metadata or a deletion: its
    /// events from the lowest version it keeps, without those aged out.
    fn read_stream_kept(
        &self,
        kept: &KeptStream<'_>,
        from_version: u64,
        direction: Direction,
        max_count: usize,
    ) -> Result<Vec<RecordedEvent>> {
        let mut events = Vec::new();
        if kept.rule.closed || max_count == 0 {
            return Ok(events);
        }
        let end = kept.end;
        let visible = read_checked(&self.inner.state.index, |index| {
            index.visible_count(kept.stream, end)
        })?;
        let floor = kept.rule.version_floor(visible.checked_sub(1));
        let keeps = |e: &RecordedEvent| {
            e.version >= floor && !kept.rule.aged_out(e, kept.now) && !is_lifecycle_event(e)
        };
        let mut from = match direction {
            Direction::Forward => from_version.max(floor),
            Direction::Backward if from_version < floor => return Ok(events),
            Direction::Backward => from_version,
        };
        // Aged-out events are skipped, so a read may take several rounds to
        // fill `max_count`.
        loop {
            let want = max_count - events.len();
            let batch = self.read_stream_below(kept.stream, from, direction, want, end)?;
            let Some(last) = batch.last().map(|e| e.version) else {
                break;
            };
            let short = batch.len() < want;
            events.extend(batch.into_iter().filter(keeps));
            let next = match direction {
                Direction::Forward => last.checked_add(1),
                Direction::Backward => last.checked_sub(1).filter(|&v| v >= floor),
            };
            match next {
                Some(next) if !short && events.len() < max_count => from = next,
                _ => break,
            }
        }
        Ok(events)
    }

    /// [`Store::read_stream`] of the events at positions below `end`. Events
    /// of removed segments are gone: the read goes on past them until it
    /// has `max_count` events or reaches the end of the stream, so a short
    /// read still means the end.
    pub(crate) fn read_stream_below(
        &self,
        stream: &str,
        from_version: u64,
        direction: Direction,
        max_count: usize,
        end: u64,
    ) -> Result<Vec<RecordedEvent>> {
        let mut events = Vec::new();
        let mut locations = LOCATIONS.take();
        let mut from = from_version;
        // How many versions a round looks at: grows while rounds find
        // removed ones, so a long removed history costs few rounds.
        let mut window = max_count;
        loop {
            let want = max_count - events.len();
            let mut visible = 0;
            let (start, stop) = read_checked(&self.inner.state.index, |index| {
                let range = |count| {
                    visible = count;
                    version_range(count, from, direction, window)
                };
                index.stream_locations(stream, end, range, &mut locations)
            })?;
            let removed = locations.iter().any(|l| l.segment.is_removed());
            // At most one event per location: a lookup of one event
            // allocates room for one, not the four a first push would.
            events.reserve_exact(locations.len().min(want));
            let first = events.len();
            // A round after one that met removed events looks at more
            // versions than it may return.
            if removed || locations.len() > want {
                read_kept_locations(stream, start, direction, want, &locations, &mut events)?;
            } else {
                read_locations(stream, start, &locations, &mut events)?;
            }
            if direction == Direction::Backward {
                events.get_mut(first..).unwrap_or_default().reverse();
            }
            let filled = events.len() >= max_count;
            let next = match direction {
                Direction::Forward => (stop < visible).then_some(stop),
                Direction::Backward => start.checked_sub(1),
            };
            match next {
                Some(next) if removed && !filled => {
                    from = next;
                    window = window
                        .saturating_mul(2)
                        .clamp(want, REMOVED_WINDOW.max(want));
                }
                _ => break,
            }
        }
        locations.clear();
        if locations.capacity() <= KEPT_LOCATIONS {
            LOCATIONS.set(locations);
        }
        Ok(events)
    }

    /// Reads up to `max_count` events of the global log (`$all`) starting at
    /// `from_position`, in position order (`Forward`) or reverse
    /// (`Backward`; a `from_position` past the end starts at the last event).
    ///
    /// # Errors
    ///
    /// [`Error::Corrupted`] if the records or the index are damaged;
    /// [`Error::Io`] if they cannot be read.
    ///
    /// ```
    /// use evstore::{Direction, EventData, ExpectedVersion, Options, Store};
    /// # let dir = tempfile::tempdir().unwrap();
    /// let store = Store::open(dir.path(), Options::default()).unwrap();
    /// store.append("a", ExpectedVersion::Any, &[EventData::new("A", &b""[..])]).unwrap();
    /// store.append("b", ExpectedVersion::Any, &[EventData::new("B", &b""[..])]).unwrap();
    /// let all = store.read_all(0, Direction::Forward, 10).unwrap();
    /// assert_eq!(all.iter().map(|e| e.position).collect::<Vec<_>>(), [0, 1]);
    /// ```
    pub fn read_all(
        &self,
        from_position: u64,
        direction: Direction,
        max_count: usize,
    ) -> Result<Vec<RecordedEvent>> {
        let end = self.visible_end();
        let retained = self.retained()?;
        if retained.keeps_everything() {
            let events = self.read_all_below(from_position, direction, max_count, end)?;
            return self.finish_read(events, &retained, false);
        }
        // Events their streams no longer keep are skipped, so a read may
        // take several rounds to fill `max_count`.
        let mut events = Vec::new();
        let mut from = from_position;
        while events.len() < max_count {
            let want = max_count - events.len();
            let mut batch = self.read_all_below(from, direction, want, end)?;
            let Some(last) = batch.last().map(|e| e.position) else {
                break;
            };
            let short = batch.len() < want;
            batch.retain(|e| retained.keeps(e, |s| self.last_visible_version(s, end)));
            events.append(&mut batch);
            let next = match direction {
                Direction::Forward => last.checked_add(1),
                Direction::Backward => last.checked_sub(1),
            };
            match next {
                Some(next) if !short => from = next,
                _ => break,
            }
        }
        self.finish_read(events, &retained, false)
    }

    /// [`Store::read_all`] of the events at positions below `end`. Removed
    /// segments hold no events: the read goes on past them until it has
    /// `max_count` events or reaches the end of the log, so a short read
    /// still means the end.
    pub(crate) fn read_all_below(
        &self,
        from_position: u64,
        direction: Direction,
        max_count: usize,
        end: u64,
    ) -> Result<Vec<RecordedEvent>> {
        let mut events = Vec::new();
        let mut from = from_position;
        loop {
            let want = max_count - events.len();
            let round = read_checked(&self.inner.state.index, |index| {
                let Some(from) = past_removed(index, from, direction, end) else {
                    return Ok(None);
                };
                let (start, stop) = version_range(end, from, direction, want);
                let runs = index.runs(start, stop)?.ok_or_else(|| missing(start))?;
                Ok(Some((start, stop, runs)))
            })?;
            let Some((start, stop, runs)) = round else {
                break;
            };
            // At most `want` events, a usize: the fallback is never taken.
            events.reserve(usize::try_from(stop - start).unwrap_or(want));
            let first = events.len();
            for run in &runs {
                run.segment
                    .read_run(run.first_position, &run.offsets, &mut events)?;
            }
            if direction == Direction::Backward {
                events.get_mut(first..).unwrap_or_default().reverse();
            }
            // Fewer events than positions: part of the range was removed.
            let whole = (events.len() - first) as u64 == stop - start;
            let next = match direction {
                Direction::Forward => (stop < end).then_some(stop),
                Direction::Backward => start.checked_sub(1),
            };
            match next {
                Some(next) if !whole && events.len() < max_count => from = next,
                _ => break,
            }
        }
        Ok(events)
    }

    /// The version of the last visible event of `stream`, or `None` if it has
    /// none.
    ///
    /// # Errors
    ///
    /// [`Error::InvalidStreamName`] for a name no append would take;
    /// [`Error::Corrupted`] or [`Error::Io`] if the index cannot be read.
    pub fn stream_version(&self, stream: &str) -> Result<Option<u64>> {
        validate_stream_name(stream, self.options().max_stream_name_len)?;
        let end = self.visible_end();
        let visible = read_checked(&self.inner.state.index, |index| {
            index.visible_count(stream, end)
        })?;
        Ok(visible.checked_sub(1))
    }

    /// The position of the last visible event, or `None` if the store is
    /// empty.
    #[must_use]
    pub fn last_position(&self) -> Option<u64> {
        self.visible_end().checked_sub(1)
    }
}

/// A stream with a retention rule, as one read sees it.
struct KeptStream<'a> {
    stream: &'a str,
    rule: &'a StreamRule,
    now: u64,
    end: u64,
}

/// The half-open range of indexes `[start, stop)` to read out of `len`, in
/// the order given by `direction` (a backward range is read from its top).
pub(super) fn version_range(
    len: u64,
    from: u64,
    direction: Direction,
    max_count: usize,
) -> (u64, u64) {
    let max = max_count as u64;
    match direction {
        Direction::Forward => {
            let start = from.min(len);
            (start, start.saturating_add(max).min(len))
        }
        Direction::Backward => {
            if len == 0 {
                return (0, 0);
            }
            let top = from.min(len - 1) + 1;
            (top.saturating_sub(max), top)
        }
    }
}

/// Reads, onto `out`, the events at `locations` (versions `start..` of
/// `stream`) that are not in removed segments: the first `want` of them
/// forwards, the last `want` backwards.
fn read_kept_locations(
    stream: &str,
    start: u64,
    direction: Direction,
    want: usize,
    locations: &[Location],
    out: &mut Vec<RecordedEvent>,
) -> Result<()> {
    let mut kept: Vec<(u64, &Location)> = locations
        .iter()
        .enumerate()
        .filter(|(_, l)| !l.segment.is_removed())
        .map(|(i, l)| (start + i as u64, l))
        .collect();
    if kept.len() > want {
        match direction {
            Direction::Forward => kept.truncate(want),
            Direction::Backward => drop(kept.drain(..kept.len() - want)),
        }
    }
    let first = out.len();
    for group in kept.chunk_by(|a, b| Arc::ptr_eq(&a.1.segment, &b.1.segment)) {
        if let Some((_, location)) = group.first() {
            location
                .segment
                .read_located(group.iter().map(|(_, l)| (l.offset, l.position)), out)?;
        }
    }
    let read = out.get(first..).unwrap_or_default();
    for (event, (version, location)) in read.iter().zip(&kept) {
        check_located(stream, event, *version, location)?;
    }
    Ok(())
}

/// Where a read of the global log from `from` in `direction` begins,
/// once past the removed segments it starts in; `None` if none is left
/// that way.
fn past_removed(
    index: &crate::index::Index,
    from: u64,
    direction: Direction,
    end: u64,
) -> Option<u64> {
    let mut from = match direction {
        Direction::Forward => from,
        Direction::Backward => from.min(end.checked_sub(1)?),
    };
    while let Some(span) = index.removed_span(from) {
        from = match direction {
            Direction::Forward => span.end,
            Direction::Backward => span.start.checked_sub(1)?,
        };
    }
    Some(from)
}

/// Most versions a stream read looks at in one round while it finds them
/// removed.
const REMOVED_WINDOW: usize = 1 << 16;

/// Reads, onto `out`, the events at `locations`, versions `start..` of
/// `stream`.
fn read_locations(
    stream: &str,
    start: u64,
    locations: &[Location],
    out: &mut Vec<RecordedEvent>,
) -> Result<()> {
    let first = out.len();
    // Events of one segment are read through one view of it.
    for group in locations.chunk_by(|a, b| Arc::ptr_eq(&a.segment, &b.segment)) {
        if let Some(location) = group.first() {
            location
                .segment
                .read_located(group.iter().map(|l| (l.offset, l.position)), out)?;
        }
    }
    let read = out.get(first..).unwrap_or_default();
    for (i, (event, location)) in read.iter().zip(locations).enumerate() {
        check_located(stream, event, start + i as u64, location)?;
    }
    Ok(())
}

/// The index said `location` holds version `version` of `stream`; the
/// record must agree, so a damaged index can never hand out another event.
fn check_located(
    stream: &str,
    event: &RecordedEvent,
    version: u64,
    location: &Location,
) -> Result<()> {
    if *event.stream != *stream || event.version != version {
        return Err(Error::corrupted(
            location.segment.path(),
            u64::from(location.offset),
            format!(
                "the index places event '{}' version {} at '{stream}' version {version}",
                &*event.stream, event.version
            ),
        ));
    }
    Ok(())
}

fn missing(position: u64) -> Error {
    Error::Corrupted {
        file: PathBuf::from(SEGMENTS_DIR),
        offset: 0,
        reason: format!("position {position} is below the watermark but not indexed"),
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::indexing_slicing)]
mod tests {
    use super::*;

    #[test]
    fn version_ranges() {
        assert_eq!(version_range(10, 0, Direction::Forward, 3), (0, 3));
        assert_eq!(version_range(10, 8, Direction::Forward, 3), (8, 10));
        assert_eq!(version_range(10, 12, Direction::Forward, 3), (10, 10));
        assert_eq!(version_range(10, u64::MAX, Direction::Backward, 3), (7, 10));
        assert_eq!(version_range(10, 1, Direction::Backward, 3), (0, 2));
        assert_eq!(version_range(0, 0, Direction::Backward, 3), (0, 0));
        assert_eq!(
            version_range(10, 0, Direction::Forward, usize::MAX),
            (0, 10)
        );
    }

    /// Index files are checked the first time a read needs them; a
    /// damaged one is rebuilt from its segment. Neither happens under the
    /// index lock: the read stops at each unchecked file, the file is
    /// checked with the lock released, and the read runs again.
    #[test]
    fn index_files_are_checked_and_rebuilt_with_the_index_lock_released() {
        use crate::index::file::INDEX_SUFFIX;
        use crate::{EventData, ExpectedVersion, Options};
        use std::sync::atomic::Ordering;

        let dir = tempfile::tempdir().unwrap();
        let options = || Options::default().segment_size(16 << 10);
        let store = Store::open(dir.path(), options()).unwrap();
        for _ in 0..100 {
            let event = EventData::new("Noted", vec![7u8; 900]);
            store.append("s", ExpectedVersion::Any, &[event]).unwrap();
        }
        store.close().unwrap();
        let segments = dir.path().join(SEGMENTS_DIR);
        let mut index_files: Vec<PathBuf> = std::fs::read_dir(&segments)
            .unwrap()
            .map(|entry| entry.unwrap().path())
            .filter(|path| path.to_string_lossy().ends_with(INDEX_SUFFIX))
            .collect();
        index_files.sort();
        assert!(index_files.len() >= 3, "{index_files:?}");
        // Damage the body of the second one: its header still matches, so
        // open adopts it and the damage is found when it is first used.
        let damaged = &index_files[1];
        let mut bytes = std::fs::read(damaged).unwrap();
        *bytes.last_mut().unwrap() ^= 0x40;
        std::fs::write(damaged, bytes).unwrap();

        let store = Store::open(dir.path(), options()).unwrap();
        let end = store.visible_end();
        let lock = &store.inner.state.index;
        let mut lookups = 0;
        let located = read_checked(lock, |index| {
            lookups += 1;
            // Nothing is rebuilt while the lock is held.
            let repairs = index.repairs();
            let before = repairs.count.load(Ordering::Relaxed);
            let mut locations = Vec::new();
            let found = index.stream_locations("s", end, |visible| (0, visible), &mut locations);
            assert_eq!(repairs.count.load(Ordering::Relaxed), before);
            found?;
            Ok(locations.len())
        })
        .unwrap();
        assert_eq!(located, 100);
        // One round per index file, then the one that saw them all checked.
        assert_eq!(lookups, index_files.len() + 1);
        assert_eq!(store.index_repairs(), 1);
        let mut again = 0;
        read_checked(lock, |index| {
            again += 1;
            index.stream_locations("s", end, |visible| (0, visible), &mut Vec::new())
        })
        .unwrap();
        assert_eq!(again, 1);
        let events = store.read_stream("s", 0, Direction::Forward, 1000).unwrap();
        assert_eq!(events.len(), 100);
        assert!(events.iter().all(|e| e.payload[..] == [7u8; 900][..]));
    }

    /// A lookup by version goes from the stream's last segment straight to
    /// the segment holding the version, through the directory in the last
    /// segment's index file: on a fresh open (every index file unchecked),
    /// it checks those two files and no other.
    #[test]
    fn a_lookup_reads_two_index_files_whatever_the_segments_between() {
        use crate::{EventData, ExpectedVersion, Options};

        let dir = tempfile::tempdir().unwrap();
        let options = || Options::default().segment_size(8 << 10);
        let store = Store::open(dir.path(), options()).unwrap();
        let filler = |store: &Store, n: usize| {
            for _ in 0..n {
                let event = EventData::new("Filler", vec![1u8; 500]);
                store
                    .append("filler", ExpectedVersion::Any, &[event])
                    .unwrap();
            }
        };
        for round in 0..10u8 {
            let event = EventData::new("Noted", vec![round; 100]);
            store.append("s", ExpectedVersion::Any, &[event]).unwrap();
            filler(&store, 20);
        }
        store.close().unwrap();

        let store = Store::open(dir.path(), options()).unwrap();
        let end = store.visible_end();
        let lock = &store.inner.state.index;
        for version in [0u8, 3, 8] {
            let mut rounds = 0;
            let mut locations = Vec::new();
            read_checked(lock, |index| {
                rounds += 1;
                let range = |_| (u64::from(version), u64::from(version) + 1);
                index.stream_locations("s", end, range, &mut locations)
            })
            .unwrap();
            assert_eq!(locations.len(), 1);
            let events = store
                .read_stream("s", u64::from(version), Direction::Forward, 1)
                .unwrap();
            assert_eq!(events[0].payload[..], [version; 100][..]);
            // The first lookup checks the last segment's file and the
            // target's; later ones only the target's, if new.
            assert!(rounds <= 3, "version {version}: {rounds} rounds");
        }
    }
}
