//! Finding a stream's versions: where each is, straight from the directory
//! of the stream's last segment (see [`super::directory`]), and by search
//! over the segments only for versions older than the directory reaches.

use super::directory::DirRun;
use super::file::{IndexFile, StreamPart};
use super::hash::StreamKey;
use super::hint::RecordHint;
use super::{missing, Index, Location, StreamRef, StreamSummary, View};
use crate::error::{Error, Result};
use std::sync::Arc;

/// A stream's events in one segment, from one version on.
#[derive(Clone, Copy)]
enum Run<'a> {
    /// As a directory names them: read through that segment's index.
    Named(DirRun),
    /// As the segment's own index has them.
    Found { ordinal: u32, part: StreamRef<'a> },
}

impl Run<'_> {
    fn first_version(&self) -> u64 {
        match self {
            Run::Named(run) => run.first_version,
            Run::Found { part, .. } => part.first_version(),
        }
    }

    fn ordinal(&self) -> u32 {
        match self {
            Run::Named(run) => run.segment,
            Run::Found { ordinal, .. } => *ordinal,
        }
    }
}

/// The runs of a stream the index names without a search, oldest first:
/// the directory of its part in an index file, that part, then the part in
/// memory after it when the stream's last segment is served from memory.
struct Chain<'a> {
    file: Option<(&'a IndexFile, StreamPart, u32)>,
    tail: Option<(u32, StreamRef<'a>)>,
}

impl<'a> Chain<'a> {
    fn named(&self) -> u32 {
        self.file.map_or(0, |(_, part, _)| part.runs())
    }

    fn len(&self) -> u32 {
        self.named() + u32::from(self.file.is_some()) + u32::from(self.tail.is_some())
    }

    fn run(&self, i: u32) -> Option<Run<'a>> {
        let named = self.named();
        match self.file {
            Some((file, part, _)) if i < named => file.run(&part, i).map(Run::Named),
            Some((file, part, ordinal)) if i == named => Some(Run::Found {
                ordinal,
                part: StreamRef::File(file, part),
            }),
            _ if i + 1 == self.len() => self
                .tail
                .map(|(ordinal, part)| Run::Found { ordinal, part }),
            _ => None,
        }
    }

    /// The run holding `version`, if the chain reaches back to it: the
    /// newest one starting at or below it. The newest run is tried first,
    /// since most reads want recent events.
    fn find(&self, version: u64) -> Option<u32> {
        let last = self.len().checked_sub(1)?;
        if self.run(last)?.first_version() <= version {
            return Some(last);
        }
        let (mut lo, mut hi) = (0u32, last);
        while lo < hi {
            let mid = lo + (hi - lo) / 2;
            if self.run(mid)?.first_version() <= version {
                lo = mid + 1;
            } else {
                hi = mid;
            }
        }
        lo.checked_sub(1)
    }
}

/// The part of the stream in `file`, segment `ordinal`'s index file: at the
/// record where a lookup last found it there, or by a probe of the stream
/// table, remembered for the next lookup.
fn file_part(
    file: &IndexFile,
    key: &StreamKey<'_>,
    ordinal: u32,
    found: &RecordHint,
) -> Option<StreamPart> {
    if let Some(part) = found
        .get(ordinal)
        .and_then(|record| file.stream_at(key, record))
    {
        return Some(part);
    }
    let part = file.stream(key)?;
    found.set(ordinal, part.record());
    Some(part)
}

fn not_indexed(stream: &str, version: u64) -> Error {
    missing(stream, &format!("version {version} is not indexed"))
}

impl Index {
    /// Where the versions of `stream` that `range` picks out of its events
    /// below `end` are, in version order, into `out` (cleared first); `range`
    /// gets how many there are and returns the half-open version range to
    /// read, which this returns too.
    pub fn stream_locations(
        &self,
        stream: &str,
        end: u64,
        range: impl FnOnce(u64) -> (u64, u64),
        out: &mut Vec<Location>,
    ) -> Result<(u64, u64)> {
        out.clear();
        let Some(known) = self.streams.get(stream) else {
            return Ok((0, 0));
        };
        let summary = &known.summary;
        let (start, stop) = range(self.visible_in(stream, summary, end)?);
        if start >= stop {
            return Ok((start, stop));
        }
        // Only a hint: `range` picks at most the caller's maximum count, a
        // usize, so it is exact.
        out.reserve(usize::try_from(stop - start).unwrap_or(0));
        let key = StreamKey::new(stream);
        let chain = self.chain(&key, summary, &known.found)?;
        let oldest = chain.run(0).ok_or_else(|| not_indexed(stream, start))?;
        let mut version = start;
        if version < oldest.first_version() {
            // Older than the directory reaches: search the segments before.
            let hi = oldest
                .ordinal()
                .checked_sub(1)
                .ok_or_else(|| not_indexed(stream, version))?;
            let reach = oldest.first_version();
            version = self.read_segments(&key, summary, hi, reach, version, stop, out)?;
        }
        if version >= stop {
            return Ok((start, stop));
        }
        let mut i = chain
            .find(version)
            .ok_or_else(|| not_indexed(stream, version))?;
        loop {
            let run = chain.run(i).ok_or_else(|| not_indexed(stream, version))?;
            let next = chain.run(i + 1);
            let run_end = match (next, run) {
                (Some(next), _) => next.first_version(),
                (None, Run::Found { part, .. }) => {
                    part.first_version().saturating_add(part.count())
                }
                (None, Run::Named(_)) => run.first_version(),
            };
            // Runs follow one another without a gap; an index that says
            // otherwise is damaged.
            if run.first_version() > version || run_end <= version {
                return Err(not_indexed(stream, version));
            }
            let to = stop.min(run_end);
            self.read_run(&key, run, version, to, out)?;
            version = to;
            if version >= stop {
                return Ok((start, stop));
            }
            i += 1;
        }
    }

    /// The runs of `stream` its last segment's index names: its directory
    /// there; if that segment is served from memory, the directory of the
    /// stream's previous segment, that segment, then the last.
    fn chain<'a>(
        &'a self,
        key: &StreamKey<'_>,
        summary: &StreamSummary,
        found: &RecordHint,
    ) -> Result<Chain<'a>> {
        let last = summary.last_segment;
        let entry = self
            .segments
            .get(last as usize)
            .ok_or_else(|| missing(key.name(), "segment out of range"))?;
        let not_there = || missing(key.name(), "not in its last segment");
        Ok(match entry.view()? {
            View::File(file) => Chain {
                file: Some((
                    file,
                    file_part(file, key, last, found).ok_or_else(not_there)?,
                    last,
                )),
                tail: None,
            },
            view @ View::Mem(_) => {
                let part = view.stream(key).ok_or_else(not_there)?;
                let previous = match part {
                    StreamRef::Mem(_, mem) => mem.previous_segment.filter(|&p| p < last),
                    StreamRef::File(..) => None,
                };
                let file = match previous {
                    Some(previous) => self.file_of(previous)?.and_then(|file| {
                        Some((file, file_part(file, key, previous, found)?, previous))
                    }),
                    None => None,
                };
                Chain {
                    file,
                    tail: Some((last, part)),
                }
            }
        })
    }

    /// The index file serving segment `ordinal`, if one does.
    fn file_of(&self, ordinal: u32) -> Result<Option<&IndexFile>> {
        let Some(entry) = self.segments.get(ordinal as usize) else {
            return Ok(None);
        };
        Ok(match entry.view()? {
            View::File(file) => Some(file),
            View::Mem(_) => None,
        })
    }

    /// Adds the locations of versions `from..to` of `run` to `out`.
    fn read_run(
        &self,
        key: &StreamKey<'_>,
        run: Run<'_>,
        from: u64,
        to: u64,
        out: &mut Vec<Location>,
    ) -> Result<()> {
        let stream = key.name();
        let entry = self
            .segments
            .get(run.ordinal() as usize)
            .ok_or_else(|| missing(stream, "segment out of range"))?;
        let base = entry.segment.base_position();
        let first = run.first_version();
        let view;
        let part = match run {
            Run::Found { part, .. } => Some(part),
            Run::Named(named) => {
                view = entry.view()?;
                match &view {
                    // Straight to the slots the directory names: the
                    // records read are checked to be the versions wanted.
                    View::File(file) => {
                        for version in from..to {
                            let (slot, offset) = file
                                .slot_at(named.slots_from, version - first)
                                .ok_or_else(|| not_indexed(stream, version))?;
                            out.push(Location {
                                segment: Arc::clone(&entry.segment),
                                offset,
                                position: base + u64::from(slot),
                            });
                        }
                        return Ok(());
                    }
                    // Rebuilt after damage: the directory's slot numbers
                    // are those of the file, so look the stream up.
                    View::Mem(_) => view.stream(key),
                }
            }
        };
        let part = part
            .filter(|part| part.first_version() == first)
            .ok_or_else(|| not_indexed(stream, from))?;
        for version in from..to {
            let (slot, offset) = part
                .slot(version - first)
                .ok_or_else(|| missing(stream, &format!("no slot for version {version}")))?;
            out.push(Location {
                segment: Arc::clone(&entry.segment),
                offset,
                position: base + u64::from(slot),
            });
        }
        Ok(())
    }

    /// Adds the locations of versions from `version` up to `stop` or
    /// `reach` to `out`, searching segments up to `hi` for the first and
    /// reading on segment by segment. Returns the version after the last.
    #[expect(
        clippy::too_many_arguments,
        reason = "the search's bounds and the read's, kept apart"
    )]
    fn read_segments(
        &self,
        key: &StreamKey<'_>,
        summary: &StreamSummary,
        hi: u32,
        reach: u64,
        mut version: u64,
        stop: u64,
        out: &mut Vec<Location>,
    ) -> Result<u64> {
        let stream = key.name();
        let stop = stop.min(reach);
        let mut ordinal =
            self.segment_of_version(key, summary.first_segment, hi, reach, version)?;
        while version < stop && ordinal <= hi {
            let entry = self
                .segments
                .get(ordinal as usize)
                .ok_or_else(|| missing(stream, "segment out of range"))?;
            if let Some(part) = entry.view()?.stream(key) {
                let first = part.first_version();
                let top = stop.min(first.saturating_add(part.count()));
                if version < top && first > version {
                    return Err(not_indexed(stream, version));
                }
                let base = entry.segment.base_position();
                while version < top {
                    let (slot, offset) = part.slot(version - first).ok_or_else(|| {
                        missing(stream, &format!("no slot for version {version}"))
                    })?;
                    out.push(Location {
                        segment: Arc::clone(&entry.segment),
                        offset,
                        position: base + u64::from(slot),
                    });
                    version += 1;
                }
            }
            ordinal += 1;
        }
        if version < stop {
            return Err(not_indexed(stream, version));
        }
        Ok(version)
    }

    /// The ordinal of the segment among `lo..=hi` holding version `version`
    /// of the stream, given that segment `lo` is its first, and that any
    /// of its segments after `hi` starts at or above version `above`.
    fn segment_of_version(
        &self,
        key: &StreamKey<'_>,
        lo: u32,
        hi: u32,
        above: u64,
        version: u64,
    ) -> Result<u32> {
        // Invariant: the answer is in lo..=hi; segment lo holds the stream
        // with first version `lo_version` <= `version`; any segment after hi
        // holding it starts at or above `above` > `version`. Steps alternate
        // between interpolation (a stream spread evenly over the log is found
        // in a probe or two) and bisection (never worse than twice a binary
        // search).
        let (mut lo, mut hi) = (lo, hi);
        let (mut lo_version, mut above) = (0u64, above);
        let mut interpolate = true;
        while lo < hi {
            let span = u64::from(hi - lo);
            let step = if interpolate && above > lo_version {
                let guess = span * version.saturating_sub(lo_version) / (above - lo_version);
                guess.clamp(1, span)
            } else {
                span.div_ceil(2)
            };
            interpolate = !interpolate;
            #[expect(
                clippy::cast_possible_truncation,
                reason = "step is at most span, a difference of two u32"
            )]
            let mid = lo + step as u32;
            let mut found = None;
            for ordinal in mid..=hi {
                let entry = self
                    .segments
                    .get(ordinal as usize)
                    .ok_or_else(|| missing(key.name(), "segment out of range"))?;
                if let Some(part) = entry.view()?.stream(key) {
                    found = Some((ordinal, part.first_version()));
                    break;
                }
            }
            match found {
                Some((ordinal, first)) if first <= version => {
                    lo = ordinal;
                    lo_version = first;
                }
                Some((_, first)) => {
                    hi = mid - 1;
                    above = first;
                }
                None => hi = mid - 1,
            }
        }
        Ok(lo)
    }

    /// The segment before `below` that holds version `version` of
    /// `stream`, found by search; for building the directories of a
    /// segment whose index did not record the stream's previous segment.
    pub fn segment_holding(&self, stream: &str, version: u64, below: u32) -> Option<u32> {
        let summary = &self.streams.get(stream)?.summary;
        let hi = below.checked_sub(1)?;
        if summary.first_segment > hi {
            return None;
        }
        let key = StreamKey::new(stream);
        let above = version.checked_add(1)?;
        let found = self
            .segment_of_version(&key, summary.first_segment, hi, above, version)
            .ok()?;
        let part = self
            .segments
            .get(found as usize)?
            .view()
            .ok()?
            .stream(&key)?;
        let holds = part.first_version() <= version
            && version < part.first_version().saturating_add(part.count());
        holds.then_some(found)
    }
}
