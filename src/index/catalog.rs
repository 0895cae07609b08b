//! The stream catalogue: every stream of the sealed segments with its next
//! version and the first and last segment holding its events. Rewritten
//! (atomically) each time a segment is sealed, so that `open` loads one file
//! per store instead of merging every segment's stream table.
//!
//! Layout (little-endian): a 64-byte header (magic `EVSTCAT\0`, format
//! version, segments covered, the position where they end, stream count,
//! body length, body CRC, header CRC), then one entry per stream sorted by
//! name: name length (u16), 2 zero bytes, first segment (u32), last segment
//! (u32), 4 zero bytes, next version (u64), the name, zero padding to 8.

use super::file::{u16_at, u32_at, u64_at};
use super::memory::{MemIndex, MemStream};
use super::StreamSummary;
use std::sync::Arc;

/// File name of the catalogue, in the segments directory.
pub const CATALOG_FILE: &str = "streams.catalog";
/// Magic bytes that open the catalogue.
pub const MAGIC: [u8; 8] = *b"EVSTCAT\0";
/// Version of the catalogue layout.
pub const VERSION: u32 = 1;
/// Length of the catalogue header.
pub const HEADER_LEN: usize = 64;
const ENTRY_HEADER_LEN: usize = 24;
const CRC_SEED: u32 = 0x4341_5441;

fn crc(bytes: &[u8]) -> u32 {
    let mut hasher = crc32fast::Hasher::new_with_initial(CRC_SEED);
    hasher.update(bytes);
    hasher.finalize()
}

/// A decoded catalogue.
#[derive(Debug)]
pub struct Catalog {
    /// How many segments (from the first) it covers.
    pub covered_segments: u32,
    /// The position right after the last covered segment.
    pub end_position: u64,
    /// Streams, sorted by name.
    pub streams: Vec<(Arc<str>, StreamSummary)>,
}

/// How a catalogue lines up with the segments on disk.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Fit {
    /// It ends exactly where a segment starts: open takes it as the summary
    /// of every segment before that one.
    Usable,
    /// It covers every segment there is, so nothing on disk shows where it
    /// ends: open rebuilds it from the index files, which is safe and not
    /// damage.
    CoversAll,
    /// It does not describe these segments; the reason says why.
    Misfit(String),
}

impl Catalog {
    /// How the catalogue lines up with segments whose first positions are
    /// `bases`, in order. Open and `verify` both judge it by this one rule.
    #[must_use]
    pub fn fit(&self, bases: &[u64]) -> Fit {
        let covered = self.covered_segments as usize;
        let segments = bases.len();
        if covered == 0 {
            return Fit::Misfit("covers no segment".to_string());
        }
        match bases.get(covered) {
            Some(&base) if base == self.end_position => Fit::Usable,
            Some(&base) => Fit::Misfit(format!(
                "ends at position {}, but segment {} starts at {base}",
                self.end_position,
                covered + 1
            )),
            None if covered == segments => Fit::CoversAll,
            None => Fit::Misfit(format!(
                "covers {covered} segments, but there are {segments}"
            )),
        }
    }
}

/// Encodes a catalogue of `streams`, which must be sorted by name.
pub fn encode(
    covered_segments: u32,
    end_position: u64,
    streams: &[(Arc<str>, StreamSummary)],
) -> Vec<u8> {
    let body_len: usize = streams
        .iter()
        .map(|(name, _)| (ENTRY_HEADER_LEN + name.len()).next_multiple_of(8))
        .sum();
    let mut out = vec![0u8; HEADER_LEN];
    out.reserve(body_len);
    for (name, summary) in streams {
        let start = out.len();
        #[expect(
            clippy::cast_possible_truncation,
            reason = "stream names are at most 64 KiB (the options and the record format cap them)"
        )]
        out.extend_from_slice(&(name.len() as u16).to_le_bytes());
        out.extend_from_slice(&[0, 0]);
        out.extend_from_slice(&summary.first_segment.to_le_bytes());
        out.extend_from_slice(&summary.last_segment.to_le_bytes());
        out.extend_from_slice(&[0; 4]);
        out.extend_from_slice(&summary.next_version.to_le_bytes());
        out.extend_from_slice(name.as_bytes());
        out.resize(
            start + (ENTRY_HEADER_LEN + name.len()).next_multiple_of(8),
            0,
        );
    }
    // `out` starts with the header's bytes, so the body is always there.
    let body = out.get(HEADER_LEN..);
    debug_assert!(body.is_some(), "catalogue shorter than its header");
    let body_crc = crc(body.unwrap_or_default());
    let mut header = [0u8; HEADER_LEN];
    header[0..8].copy_from_slice(&MAGIC);
    header[8..12].copy_from_slice(&VERSION.to_le_bytes());
    header[12..16].copy_from_slice(&covered_segments.to_le_bytes());
    header[16..24].copy_from_slice(&end_position.to_le_bytes());
    header[24..32].copy_from_slice(&(streams.len() as u64).to_le_bytes());
    header[32..40].copy_from_slice(&(body_len as u64).to_le_bytes());
    header[40..44].copy_from_slice(&body_crc.to_le_bytes());
    let header_crc = crc(&header[..60]);
    header[60..64].copy_from_slice(&header_crc.to_le_bytes());
    if let Some(slot) = out.get_mut(..HEADER_LEN) {
        slot.copy_from_slice(&header);
    }
    out
}

/// Decodes a catalogue, or says why it cannot be used.
pub fn decode(bytes: &[u8]) -> Result<Catalog, String> {
    let short = || "file is shorter than its header".to_string();
    if bytes.get(0..8) != Some(&MAGIC[..]) {
        return Err("bad magic".into());
    }
    let (header, body) = bytes.split_first_chunk::<HEADER_LEN>().ok_or_else(short)?;
    if u32_at(header, 60) != Some(crc(&header[..60])) {
        return Err("header checksum mismatch".into());
    }
    let version = u32_at(header, 8).ok_or_else(short)?;
    if version != VERSION {
        return Err(format!(
            "catalogue format version {version} is not supported"
        ));
    }
    let covered_segments = u32_at(header, 12).ok_or_else(short)?;
    let end_position = u64_at(header, 16).ok_or_else(short)?;
    let count = u64_at(header, 24).ok_or_else(short)?;
    let body_len = u64_at(header, 32).ok_or_else(short)?;
    if body.len() as u64 != body_len {
        return Err(format!(
            "body is {} bytes, its header says {body_len}",
            body.len()
        ));
    }
    if u32_at(header, 40) != Some(crc(body)) {
        return Err("body checksum mismatch".into());
    }
    // Each entry takes at least a header's bytes of the body, whatever the
    // count claims.
    let most = body.len() / ENTRY_HEADER_LEN;
    let mut streams = Vec::with_capacity(usize::try_from(count).map_or(most, |c| c.min(most)));
    let mut at = 0usize;
    let damaged = |at: usize, what: &str| format!("entry at body offset {at}: {what}");
    for _ in 0..count {
        let name_len = u16_at(body, at).ok_or_else(|| damaged(at, "runs past the end"))? as usize;
        let summary = StreamSummary {
            first_segment: u32_at(body, at + 4).ok_or_else(|| damaged(at, "runs past the end"))?,
            last_segment: u32_at(body, at + 8).ok_or_else(|| damaged(at, "runs past the end"))?,
            next_version: u64_at(body, at + 16).ok_or_else(|| damaged(at, "runs past the end"))?,
        };
        let name = body
            .get(at + ENTRY_HEADER_LEN..at + ENTRY_HEADER_LEN + name_len)
            .ok_or_else(|| damaged(at, "name runs past the end"))?;
        let name = std::str::from_utf8(name).map_err(|_| damaged(at, "name is not UTF-8"))?;
        if summary.first_segment > summary.last_segment
            || summary.last_segment >= covered_segments
            || summary.next_version == 0
        {
            return Err(damaged(at, "implausible stream summary"));
        }
        if streams
            .last()
            .is_some_and(|(prev, _): &(Arc<str>, _)| **prev >= *name)
        {
            return Err(damaged(at, "names out of order"));
        }
        streams.push((Arc::from(name), summary));
        at += (ENTRY_HEADER_LEN + name_len).next_multiple_of(8);
    }
    if at != body.len() {
        return Err("body length does not match its entries".into());
    }
    Ok(Catalog {
        covered_segments,
        end_position,
        streams,
    })
}

/// The catalogue as of the end of segment `ordinal`: `previous` (as of the
/// end of the segment before, sorted by name) with the streams of that
/// segment's index. Fails, naming the stream, if a stream's versions in the
/// segment do not continue where `previous` left it.
pub fn merge(
    previous: Vec<(Arc<str>, StreamSummary)>,
    segment: &MemIndex,
    ordinal: u32,
) -> Result<Vec<(Arc<str>, StreamSummary)>, String> {
    let mut added: Vec<(&Arc<str>, &MemStream)> = segment.streams.iter().collect();
    added.sort_unstable_by(|a, b| a.0.cmp(b.0));
    let mut merged = Vec::with_capacity(previous.len() + added.len());
    let mut added = added.into_iter().peekable();
    let continued = |name: &str, from: u64, stream: &MemStream| {
        if stream.first_version == from {
            Ok(from + stream.slots.len() as u64)
        } else {
            Err(format!(
                "stream '{name}' continues at version {} in segment {ordinal}, expected {from}",
                stream.first_version
            ))
        }
    };
    for (name, mut summary) in previous {
        while let Some((new_name, stream)) = added.next_if(|(n, _)| ***n < *name) {
            let next_version = continued(new_name, 0, stream)?;
            merged.push((Arc::clone(new_name), new_summary(ordinal, next_version)));
        }
        if let Some((_, stream)) = added.next_if(|(n, _)| ***n == *name) {
            summary.next_version = continued(&name, summary.next_version, stream)?;
            summary.last_segment = ordinal;
        }
        merged.push((name, summary));
    }
    for (name, stream) in added {
        let next_version = continued(name, 0, stream)?;
        merged.push((Arc::clone(name), new_summary(ordinal, next_version)));
    }
    Ok(merged)
}

fn new_summary(ordinal: u32, next_version: u64) -> StreamSummary {
    StreamSummary {
        next_version,
        first_segment: ordinal,
        last_segment: ordinal,
    }
}

/// Where each entry of `catalog` starts in its file, in entry order, to name
/// the place of an entry found wrong.
pub(crate) fn entry_offsets(catalog: &Catalog) -> Vec<u64> {
    let mut at = HEADER_LEN as u64;
    catalog
        .streams
        .iter()
        .map(|(name, _)| {
            let start = at;
            at += (ENTRY_HEADER_LEN + name.len()).next_multiple_of(8) as u64;
            start
        })
        .collect()
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::indexing_slicing)]
mod tests {
    use super::*;

    #[test]
    fn a_catalogue_fits_only_where_a_segment_starts() {
        let catalog = |covered_segments, end_position| Catalog {
            covered_segments,
            end_position,
            streams: Vec::new(),
        };
        let bases = [0, 100, 250];
        assert_eq!(catalog(1, 100).fit(&bases), Fit::Usable);
        assert_eq!(catalog(2, 250).fit(&bases), Fit::Usable);
        assert_eq!(catalog(3, 400).fit(&bases), Fit::CoversAll);
        assert!(matches!(catalog(0, 0).fit(&bases), Fit::Misfit(_)));
        assert!(matches!(catalog(2, 200).fit(&bases), Fit::Misfit(_)));
        assert!(matches!(catalog(4, 400).fit(&bases), Fit::Misfit(_)));
    }

    fn sample() -> Vec<(Arc<str>, StreamSummary)> {
        vec![
            (
                Arc::from("a"),
                StreamSummary {
                    next_version: 3,
                    first_segment: 0,
                    last_segment: 1,
                },
            ),
            (
                Arc::from("order-1"),
                StreamSummary {
                    next_version: 1,
                    first_segment: 1,
                    last_segment: 1,
                },
            ),
        ]
    }

    #[test]
    fn merging_a_segment_continues_old_streams_and_adds_new_ones_in_order() {
        let mut segment = MemIndex::new(false);
        let mut offset = 0u32;
        let mut push = |name: &str, first_version: u64, count: u32| {
            let offsets: Vec<u32> = (offset..offset + count).collect();
            offset += count;
            segment.push(&Arc::from(name), first_version, &offsets, &[]);
        };
        push("order-1", 1, 2);
        push("0-first", 0, 1);
        push("b", 0, 4);
        push("z-last", 0, 1);
        let merged = merge(sample(), &segment, 2).unwrap();
        let summary = |next_version, first_segment, last_segment| StreamSummary {
            next_version,
            first_segment,
            last_segment,
        };
        let expected: Vec<(Arc<str>, StreamSummary)> = vec![
            (Arc::from("0-first"), summary(1, 2, 2)),
            (Arc::from("a"), summary(3, 0, 1)),
            (Arc::from("b"), summary(4, 2, 2)),
            (Arc::from("order-1"), summary(3, 1, 2)),
            (Arc::from("z-last"), summary(1, 2, 2)),
        ];
        assert_eq!(merged, expected);
        assert_eq!(decode(&encode(3, 99, &merged)).unwrap().streams, expected);

        // Versions that do not continue are refused, never written.
        let mut gap = MemIndex::new(false);
        gap.push(&Arc::from("a"), 4, &[0], &[]);
        assert!(merge(sample(), &gap, 2).unwrap_err().contains("'a'"));
        let mut late_start = MemIndex::new(false);
        late_start.push(&Arc::from("new"), 1, &[0], &[]);
        assert!(merge(sample(), &late_start, 2).is_err());
    }

    #[test]
    fn round_trips_and_catches_every_flipped_bit() {
        let bytes = encode(2, 77, &sample());
        let catalog = decode(&bytes).unwrap();
        assert_eq!(catalog.covered_segments, 2);
        assert_eq!(catalog.end_position, 77);
        assert_eq!(catalog.streams, sample());
        for bit in 0..bytes.len() * 8 {
            let mut damaged = bytes.clone();
            damaged[bit / 8] ^= 1 << (bit % 8);
            assert!(decode(&damaged).is_err(), "bit {bit} went unnoticed");
        }
        assert!(decode(&bytes[..bytes.len() - 8]).is_err());
    }
}
