//! Scanning segments at open: validating every batch, finding the end of
//! the log, and telling a torn tail (what a crash leaves) from damage.

use super::record::{decode_record, BatchHeader, BatchKind, BATCH_HEADER_LEN, SEGMENT_HEADER_LEN};
use super::segment::Segment;
use crate::error::{Error, Result};
use crate::types::RecordedEvent;
use bytes::Bytes;

/// Where a scanned segment stands in the log, which decides how its end is
/// read.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SegmentRole {
    /// Not the last: it must be whole and end with a seal.
    Sealed,
    /// The last: it may end unsealed, and an interrupted write at its end is
    /// a torn tail unless a later batch says it was synced.
    Last,
}

impl SegmentRole {
    /// The role of a segment that is, or is not, the last of the log.
    #[must_use]
    pub fn of(is_last: bool) -> Self {
        if is_last {
            SegmentRole::Last
        } else {
            SegmentRole::Sealed
        }
    }
}

/// What a scan of one segment found.
#[derive(Debug)]
pub struct SegmentScan {
    /// Offset just past the last whole batch: where the writer continues.
    pub end_offset: u64,
    /// The position after the last record.
    pub next_position: u64,
    /// Whether the segment ends with a seal.
    pub sealed: bool,
    /// Bytes past `end_offset` that an interrupted write left: not part of
    /// the log, and cleared by [`clear_torn_tail`] before the writer goes on.
    pub torn_bytes: u64,
    /// The highest durable watermark a whole batch or mark records.
    pub recorded_durable: u64,
}

/// What one valid batch is.
pub enum BatchOutcome {
    /// Events: the batch's length, each record with its offset, and the
    /// durable watermark its header records.
    Events {
        /// Bytes of the batch, header included.
        len: u64,
        /// Each record's offset in the segment, and the event.
        records: Vec<(u64, RecordedEvent)>,
        /// The durable watermark the header records.
        durable_mark: u64,
    },
    /// The seal: the segment ends, the next starts at `next_position`.
    Seal {
        /// The first position of the next segment.
        next_position: u64,
    },
    /// A durable mark.
    Mark {
        /// Every position below it was synced when it was written.
        durable_mark: u64,
    },
}

/// Validates the batch at `offset`, which must start at `expected`; `data`
/// holds the segment's bytes from offset `base` on.
pub fn read_batch_at(
    seg: &Segment,
    data: &Bytes,
    base: u64,
    offset: u64,
    expected: u64,
) -> Result<BatchOutcome, String> {
    let start = offset
        .checked_sub(base)
        .and_then(|start| usize::try_from(start).ok())
        .ok_or("batch offset before the bytes read")?;
    let rest = data.get(start..).ok_or("batch offset past the end")?;
    if rest.len() < BATCH_HEADER_LEN {
        return Err("no room for a batch header".into());
    }
    let header = BatchHeader::decode(rest, seg.seed()).ok_or("batch header invalid")?;
    if header.first_position != expected {
        return Err(format!(
            "batch starts at position {}, expected {expected}",
            header.first_position
        ));
    }
    if header.durable_mark > header.first_position {
        return Err("batch durable mark ahead of its own position".into());
    }
    if header.kind == BatchKind::Mark {
        return Ok(BatchOutcome::Mark {
            durable_mark: header.durable_mark,
        });
    }
    if header.kind == BatchKind::Seal {
        return Ok(BatchOutcome::Seal {
            next_position: header.first_position,
        });
    }
    let end = start.saturating_add(header.len as usize);
    if end > data.len() {
        return Err("batch runs past the end of the file".into());
    }
    let batch = data.slice(start..end);
    let mut at = BATCH_HEADER_LEN;
    let mut records = Vec::with_capacity(header.count as usize);
    for i in 0..u64::from(header.count) {
        let record_bytes = batch.slice(at.min(batch.len())..);
        let (event, padded) = decode_record(&record_bytes, seg.seed())
            .map_err(|reason| format!("record {i} of the batch: {reason}"))?;
        if event.position != expected + i {
            return Err(format!(
                "record holds position {}, expected {}",
                event.position,
                expected + i
            ));
        }
        records.push(((offset + at as u64), event));
        at += padded;
    }
    if at != batch.len() {
        return Err("batch length does not match its records".into());
    }
    Ok(BatchOutcome::Events {
        len: u64::from(header.len),
        records,
        durable_mark: header.durable_mark,
    })
}

/// Whether any valid batch after `from` claims that `position` was already
/// durable when it was written: then damage at `position` is not a torn
/// write but corruption of synced data.
pub fn durable_batch_after(seg: &Segment, data: &[u8], from: usize, position: u64) -> Option<u64> {
    let mut at = from.next_multiple_of(8);
    while at + BATCH_HEADER_LEN <= data.len() {
        let candidate = data.get(at..at + BATCH_HEADER_LEN)?;
        // A cheap look at the kind field skips almost every offset before
        // paying for a checksum.
        let kind = super::record::u32_at(candidate, 8);
        if (1..=3).contains(&kind) && candidate.iter().any(|&b| b != 0) {
            if let Some(h) = BatchHeader::decode(candidate, seg.seed()) {
                if h.durable_mark > position && h.first_position > position {
                    return Some(at as u64);
                }
            }
        }
        at += 8;
    }
    None
}

/// A copy of the batch at `offset` of `seg`, whose data ends at `end`, for
/// a reader beside the process writing it: the batch header, and the rest
/// of the batch when the header is that of an events batch that fits.
/// What it holds may be half-written; [`read_batch_at`] (with `offset` as
/// the base) tells.
pub fn copy_batch(seg: &Segment, offset: u64, end: u64) -> Result<Bytes> {
    let head = seg.read(
        offset,
        offset.saturating_add(BATCH_HEADER_LEN as u64).min(end),
    )?;
    match BatchHeader::decode(&head, seg.seed()) {
        Some(h) if h.kind == BatchKind::Events && h.len as usize > head.len() => {
            match offset.checked_add(u64::from(h.len)) {
                Some(batch_end) if batch_end <= end => seg.read(offset, batch_end),
                _ => Ok(head),
            }
        }
        _ => Ok(head),
    }
}

/// [`durable_batch_after`] over `seg`'s bytes `from..end`, read by copy a
/// piece at a time, for a reader beside the process writing the segment.
pub fn durable_batch_after_copied(
    seg: &Segment,
    from: u64,
    end: u64,
    position: u64,
) -> Result<Option<u64>> {
    // Small enough to stay in the cache between the copy and the look.
    const PIECE: u64 = 128 << 10;
    let mut buf = Vec::new();
    let mut at = from.next_multiple_of(8);
    while at.saturating_add(BATCH_HEADER_LEN as u64) <= end {
        // Each piece starts the candidates at `at..at + PIECE` and holds the
        // whole header of the last of them.
        let piece_end = at
            .saturating_add(PIECE + BATCH_HEADER_LEN as u64 - 8)
            .min(end);
        buf.resize(usize::try_from(piece_end - at).unwrap_or(0), 0);
        let got = seg
            .file()
            .read_at(&mut buf, at)
            .map_err(|e| Error::io(format!("reading {}", seg.path().display()), e))?;
        let piece = buf.get(..got).unwrap_or_default();
        // Past the end of what was written a segment is zeros: a piece of
        // nothing else holds no batch, and is told at memory speed.
        if !all_zero(piece) {
            if let Some(found) = durable_batch_after(seg, piece, 0, position) {
                return Ok(Some(at + found));
            }
        }
        if got < buf.len() {
            break;
        }
        at += PIECE;
    }
    Ok(None)
}

/// Whether every byte of `bytes` is zero, a word at a time.
pub fn all_zero(bytes: &[u8]) -> bool {
    let mut words = bytes.chunks_exact(8);
    let mut any = 0u64;
    for word in &mut words {
        let mut w = [0u8; 8];
        w.copy_from_slice(word);
        any |= u64::from_ne_bytes(w);
    }
    any == 0 && words.remainder().iter().all(|&b| b == 0)
}

/// What [`scan_segment`] reads a segment through: one view of the map of a
/// sealed segment, or else copies of a piece at a time (at least
/// [`SCAN_PIECE`] bytes, or one whole batch).
struct ScanSource<'a> {
    seg: &'a Segment,
    /// Where the segment's data ends.
    end: u64,
    /// The view of a sealed segment's map, from its start to `end`.
    mapped: Option<Bytes>,
    /// Otherwise, the piece copied last, and where it starts.
    piece: Bytes,
    base: u64,
}

/// The size of the pieces [`scan_segment`] copies.
const SCAN_PIECE: u64 = 1 << 20;

impl<'a> ScanSource<'a> {
    /// Reads `seg`, whose data ends at `end`.
    fn new(seg: &'a Segment, end: u64) -> Result<Self> {
        let mapped = if seg.is_sealed() {
            Some(seg.read(0, end)?)
        } else {
            None
        };
        Ok(ScanSource {
            seg,
            end,
            mapped,
            piece: Bytes::new(),
            base: 0,
        })
    }

    fn read_error(&self, e: std::io::Error) -> Error {
        Error::io(format!("reading {}", self.seg.path().display()), e)
    }

    /// Bytes that hold the batch at `offset` as far as its header says (or
    /// as far as the data goes), and the offset they start at.
    fn batch(&mut self, offset: u64) -> Result<(Bytes, u64)> {
        if let Some(data) = &self.mapped {
            return Ok((data.clone(), 0));
        }
        let holds = |piece: &Bytes, base: u64, len: u64| {
            offset >= base && offset - base + len <= piece.len() as u64
        };
        let header = BATCH_HEADER_LEN as u64;
        if !holds(
            &self.piece,
            self.base,
            header.min(self.end.saturating_sub(offset)),
        ) {
            self.piece = self
                .seg
                .read(offset, offset.saturating_add(SCAN_PIECE).min(self.end))?;
            self.base = offset;
        }
        let relative = usize::try_from(offset - self.base).unwrap_or(usize::MAX);
        let batch_len = self
            .piece
            .get(relative..)
            .and_then(|rest| BatchHeader::decode(rest, self.seg.seed()))
            .filter(|h| h.kind == BatchKind::Events)
            .map_or(header, |h| u64::from(h.len));
        if offset.saturating_add(batch_len) <= self.end && !holds(&self.piece, self.base, batch_len)
        {
            let len = batch_len.max(SCAN_PIECE);
            self.piece = self
                .seg
                .read(offset, offset.saturating_add(len).min(self.end))?;
            self.base = offset;
        }
        Ok((self.piece.clone(), self.base))
    }

    /// How many bytes there are from `from` to the last one that is not
    /// zero.
    fn dirty_len(&self, from: u64) -> Result<u64> {
        if let Some(data) = &self.mapped {
            let rest = usize::try_from(from)
                .ok()
                .and_then(|from| data.get(from..))
                .unwrap_or_default();
            let dirty = rest.iter().rposition(|&b| b != 0).map_or(0, |i| i + 1);
            return Ok(dirty as u64);
        }
        // Piece by piece from the end: the first byte that is not zero ends
        // the search.
        let mut buf = Vec::new();
        let mut piece_end = self.end;
        while piece_end > from {
            let start = piece_end.saturating_sub(SCAN_PIECE).max(from);
            buf.resize(usize::try_from(piece_end - start).unwrap_or(0), 0);
            let got = self
                .seg
                .file()
                .read_at(&mut buf, start)
                .map_err(|e| self.read_error(e))?;
            let piece = buf.get(..got).unwrap_or_default();
            if let Some(i) = (!all_zero(piece))
                .then(|| piece.iter().rposition(|&b| b != 0))
                .flatten()
            {
                return Ok(start + i as u64 + 1 - from);
            }
            piece_end = start;
        }
        Ok(0)
    }

    /// Drops the piece copied last, so the next batch is read afresh.
    fn forget_piece(&mut self) {
        self.piece = Bytes::new();
        self.base = 0;
    }

    /// [`durable_batch_after`] from offset `from` on.
    fn durable_batch_after(&self, from: u64, position: u64) -> Result<Option<u64>> {
        match &self.mapped {
            Some(data) => {
                let from = usize::try_from(from).unwrap_or(usize::MAX);
                Ok(durable_batch_after(self.seg, data, from, position))
            }
            None => durable_batch_after_copied(self.seg, from, self.end, position),
        }
    }
}

/// Scans `seg`, whose first record must be at `seg.base_position()`, calling
/// `on_record` for each record of every whole batch in order.
///
/// A segment that is not the last must be whole and end with a seal. In the
/// last one, an invalid batch followed only by unsynced data is a torn write,
/// reported in [`SegmentScan::torn_bytes`]; the scan itself never writes.
pub fn scan_segment(
    seg: &Segment,
    role: SegmentRole,
    mut on_record: impl FnMut(u64, &RecordedEvent) -> Result<()>,
) -> Result<SegmentScan> {
    let end = seg.readable_len()?;
    let mut source = ScanSource::new(seg, end)?;
    let mut offset = SEGMENT_HEADER_LEN as u64;
    let mut next = seg.base_position();
    let mut recorded_durable = 0;
    // Where the scan last read a batch again; see below.
    let mut reread_at = None;
    let dirty_len = loop {
        let stop_reason = loop {
            if offset + BATCH_HEADER_LEN as u64 > end {
                break None;
            }
            let (data, base) = source.batch(offset)?;
            match read_batch_at(seg, &data, base, offset, next) {
                Ok(BatchOutcome::Seal { next_position }) => {
                    return Ok(SegmentScan {
                        end_offset: offset + BATCH_HEADER_LEN as u64,
                        next_position,
                        sealed: true,
                        torn_bytes: 0,
                        recorded_durable,
                    })
                }
                Ok(BatchOutcome::Mark { durable_mark }) => {
                    recorded_durable = recorded_durable.max(durable_mark);
                    offset += BATCH_HEADER_LEN as u64;
                }
                Ok(BatchOutcome::Events {
                    len,
                    records,
                    durable_mark,
                }) => {
                    recorded_durable = recorded_durable.max(durable_mark);
                    for (record_offset, event) in &records {
                        on_record(*record_offset, event)?;
                    }
                    next += records.len() as u64;
                    offset += len;
                }
                Err(reason) => break Some(reason),
            }
        };
        if role == SegmentRole::Sealed {
            let reason = stop_reason.unwrap_or_else(|| "segment ends without a seal".into());
            return Err(Error::corrupted(
                seg.path(),
                offset,
                format!("{reason} (in a sealed segment)"),
            ));
        }
        let dirty_len = source.dirty_len(offset)?;
        if dirty_len > 0 {
            if let Some(at) = source.durable_batch_after(offset + 8, next)? {
                // A reader beside a live writer (a read-only open) may have
                // copied this batch before the writer finished it, then
                // found batches the writer made durable after it. Those
                // mean this batch was whole by then: read it again, once.
                // A batch still invalid when read again after a durable one
                // is damage.
                if reread_at != Some(offset) {
                    reread_at = Some(offset);
                    source.forget_piece();
                    continue;
                }
                return Err(Error::corrupted(
                    seg.path(),
                    offset,
                    format!(
                        "{} at position {next}, yet a batch at offset {at} was written after it was made durable",
                        stop_reason.unwrap_or_else(|| "invalid batch".into())
                    ),
                ));
            }
        }
        break dirty_len;
    };
    Ok(SegmentScan {
        end_offset: offset,
        next_position: next,
        sealed: false,
        torn_bytes: dirty_len,
        recorded_durable,
    })
}

/// Overwrites the torn tail a scan found with zeros and syncs, so it cannot
/// resurface once new records are written over part of it.
pub fn clear_torn_tail(seg: &Segment, scan: &SegmentScan) -> Result<()> {
    const CHUNK: usize = 1 << 20;
    if scan.torn_bytes == 0 {
        return Ok(());
    }
    let start = scan.end_offset;
    let end = start + scan.torn_bytes;
    let chunk_at = |at: u64| usize::try_from(end - at).map_or(CHUNK, |left| left.min(CHUNK));
    let zeros = vec![0u8; chunk_at(start)];
    let mut at = start;
    while at < end {
        let n = chunk_at(at);
        seg.file()
            .write_all_at(zeros.get(..n).unwrap_or_default(), at)
            .map_err(|e| {
                Error::io(
                    format!("clearing the torn tail of {}", seg.path().display()),
                    e,
                )
            })?;
        at += n as u64;
    }
    seg.file()
        .sync_data()
        .map_err(|e| Error::io(format!("syncing {}", seg.path().display()), e))
}
