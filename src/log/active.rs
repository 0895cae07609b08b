//! The active segment: the one file appends go to. It stages batches in a
//! buffer, writes them with one positional write, syncs, records durable
//! marks, seals the segment when full and installs the next one, which it
//! preallocates ahead of time.

use super::record::{
    finish_record, BatchHeader, BatchKind, BATCH_HEADER_LEN, BATCH_HEADER_LEN_U32,
    SEGMENT_HEADER_LEN,
};
use super::segment::{now_nanos, PreparedSegment, Segment};
use super::zero_fill;
use crate::storage::Storage;
use std::io;
use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::Instant;

/// Room kept at the end of every segment for a durable mark and the seal.
pub const TAIL_RESERVE: u64 = 2 * BATCH_HEADER_LEN as u64;

/// The page size that writes are padded to (see
/// [`ActiveSegment::write_staged`]).
const PAGE_LEN: u64 = 4096;

/// The most bytes one append may encode to in a segment of `capacity`.
pub fn max_batch_len(capacity: u64) -> usize {
    let room = capacity.saturating_sub(SEGMENT_HEADER_LEN as u64 + TAIL_RESERVE);
    // Capacities are at most 4 GiB (the options and segment headers are
    // checked), so this never saturates.
    usize::try_from(room).unwrap_or(usize::MAX)
}

/// Where a staged batch's events went.
#[derive(Debug)]
pub struct StagedBatch {
    /// Position of its first event.
    pub first_position: u64,
    /// Offset of each record in the segment.
    pub offsets: Vec<u32>,
}

/// How a write of the staged bytes failed.
#[derive(Debug)]
pub enum WriteFailure {
    /// Out of space; whatever part of the bytes reached the file was zeroed
    /// again, so no partial batch survives and the segment stays usable.
    NoSpace(io::Error),
    /// Anything else, including a failed clean-up: the file's state is
    /// unknown.
    Failed(io::Error),
}

/// How the next segment's file is prepared.
#[derive(Debug, Clone)]
pub struct Preparation {
    /// Where segment files are made.
    pub storage: Arc<dyn Storage>,
    /// The segments directory.
    pub dir: PathBuf,
    /// Prepare on a helper thread while the active segment fills.
    pub background: bool,
    /// Zero-fill the next segment while the active one fills at most this
    /// many bytes a second (see [`super::zero_fill`]).
    pub zero_fill_below: Option<u64>,
    /// Counts the segments zero-filled.
    pub zero_filled: Arc<AtomicU64>,
}

/// The next segment's file, prepared ahead of time.
struct Preallocation {
    how: Preparation,
    capacity: u64,
    /// The preparing thread, and what stops it short of zero-filling.
    pending: Option<(JoinHandle<io::Result<PreparedSegment>>, Arc<AtomicBool>)>,
}

impl Preallocation {
    /// Starts preparing the next file on its own thread, if enabled, while
    /// `active` fills.
    fn start(&mut self, active: &Arc<Segment>) {
        if !self.how.background {
            return;
        }
        let how = self.how.clone();
        let capacity = self.capacity;
        let active = Arc::clone(active);
        let stop = Arc::new(AtomicBool::new(false));
        let stopped = Arc::clone(&stop);
        self.pending = std::thread::Builder::new()
            .name("evstore-prealloc".into())
            .spawn(move || {
                let started = Instant::now();
                let synced_before = active.synced_len();
                let prepared = PreparedSegment::create(how.storage.as_ref(), &how.dir, capacity)?;
                if how.zero_fill_below.is_some() && !zero_fill::watch(started, &stopped) {
                    let written = active.synced_len().saturating_sub(synced_before);
                    if zero_fill::slow_enough(how.zero_fill_below, written, started.elapsed())
                        // A failed fill leaves blocks merely reserved,
                        // which is correct, only slower to sync.
                        && zero_fill::fill(prepared.file(), capacity, &stopped, true).unwrap_or(false)
                    {
                        how.zero_filled.fetch_add(1, Ordering::Relaxed);
                    }
                }
                Ok(prepared)
            })
            .ok()
            .map(|handle| (handle, stop));
    }

    /// Stops the preparing thread short of zero-filling (or of more of it)
    /// and waits for it.
    fn stop(&mut self) -> Option<std::thread::Result<io::Result<PreparedSegment>>> {
        let (handle, stop) = self.pending.take()?;
        stop.store(true, Ordering::Release);
        handle.thread().unpark();
        Some(handle.join())
    }

    /// The prepared file, made now if the background attempt failed (for
    /// example for lack of space, which may have passed) or panicked.
    fn take(&mut self) -> io::Result<PreparedSegment> {
        if let Some(Ok(Ok(prepared))) = self.stop() {
            return Ok(prepared);
        }
        PreparedSegment::create(self.how.storage.as_ref(), &self.how.dir, self.capacity)
    }

    /// Waits for a background preparation to end (at close), without
    /// zero-filling.
    fn finish(&mut self) {
        let _ = self.stop();
    }
}

/// The segment being written. See the module documentation.
pub struct ActiveSegment {
    segment: Arc<Segment>,
    /// Where the staged bytes go: everything before is written.
    write_offset: u64,
    /// Bytes staged for one write at `write_offset`.
    staged: Vec<u8>,
    /// The position the next staged event gets.
    next_position: u64,
    /// The position of the first staged event.
    staged_from: u64,
    /// The highest durable watermark a staged batch header records.
    staged_durable: u64,
    /// The highest durable watermark recorded in the segment by a batch
    /// header or mark: a mark that would not raise it is useless, and must
    /// not take the room kept for one that would.
    recorded_durable: u64,
    preallocation: Preallocation,
}

impl ActiveSegment {
    /// Continues `segment` at `write_offset`, where position
    /// `next_position` goes next; starts preparing the segment after it.
    pub fn new(
        segment: Arc<Segment>,
        write_offset: u64,
        next_position: u64,
        recorded_durable: u64,
        preparation: Preparation,
    ) -> Self {
        let capacity = segment.capacity();
        let mut preallocation = Preallocation {
            how: preparation,
            capacity,
            pending: None,
        };
        preallocation.start(&segment);
        ActiveSegment {
            segment,
            write_offset,
            staged: Vec::new(),
            next_position,
            staged_from: next_position,
            staged_durable: 0,
            recorded_durable,
            preallocation,
        }
    }

    /// The segment.
    pub fn segment(&self) -> &Arc<Segment> {
        &self.segment
    }

    /// The position the next event gets.
    pub fn next_position(&self) -> u64 {
        self.next_position
    }

    /// Whether a batch of `len` encoded bytes fits after what is staged,
    /// with room left for a durable mark and the seal.
    pub fn fits(&self, len: usize) -> bool {
        let used = self.write_offset.saturating_add(self.staged.len() as u64);
        used.saturating_add(len as u64).saturating_add(TAIL_RESERVE) <= self.segment.capacity()
    }

    /// Stages one batch: `records` holds unfinished records (see
    /// [`super::record::encode_unfinished_record`]), one run of them per
    /// `(count, first_version)` of `runs` (a run is one stream's events),
    /// which get their positions, their run's versions from its
    /// `first_version` on, a timestamp and their checksums; the batch
    /// header records `durable_mark`.
    pub fn stage(
        &mut self,
        records: &[u8],
        runs: &[(usize, u64)],
        durable_mark: u64,
    ) -> StagedBatch {
        let count: usize = runs.iter().map(|r| r.0).sum();
        let seed = self.segment.seed();
        let first_position = self.next_position;
        let header_at = self.staged.len();
        self.staged.resize(header_at + BATCH_HEADER_LEN, 0);
        let timestamp_nanos = now_nanos();
        let mut offsets = Vec::with_capacity(count);
        let mut at = self.staged.len();
        self.staged.extend_from_slice(records);
        let versions = runs
            .iter()
            .flat_map(|&(n, first)| (0..n as u64).map(move |i| first + i));
        for (i, version) in (0..count as u64).zip(versions) {
            // Segments are at most 4 GiB (the options and segment headers
            // are checked) and `fits` keeps batches inside them, so every
            // offset in one fits in 32 bits.
            let offset = self.write_offset.saturating_add(at as u64);
            debug_assert!(u32::try_from(offset).is_ok(), "record offset {offset}");
            offsets.push(u32::try_from(offset).unwrap_or(u32::MAX));
            let Some(record) = self.staged.get_mut(at..) else {
                break;
            };
            let padded = finish_record(record, seed, first_position + i, version, timestamp_nanos);
            debug_assert!(padded > 0, "an unfinished record was malformed");
            at += padded;
        }
        // A batch fits in its segment, and appends of more than `u32::MAX`
        // events are refused, so neither saturates.
        let len = self.staged.len() - header_at;
        debug_assert!(u32::try_from(len).is_ok() && u32::try_from(count).is_ok());
        let header = BatchHeader {
            len: u32::try_from(len).unwrap_or(u32::MAX),
            kind: BatchKind::Events,
            count: u32::try_from(count).unwrap_or(u32::MAX),
            first_position,
            durable_mark,
        };
        let mut header_bytes = [0u8; BATCH_HEADER_LEN];
        header.encode_into(seed, &mut header_bytes);
        if let Some(slot) = self.staged.get_mut(header_at..header_at + BATCH_HEADER_LEN) {
            slot.copy_from_slice(&header_bytes);
        }
        self.next_position = first_position + count as u64;
        self.staged_durable = self.staged_durable.max(durable_mark);
        StagedBatch {
            first_position,
            offsets,
        }
    }

    /// Stages the seal after the staged batches: the segment then ends at
    /// `self.next_position()`. Returns the seal's offset.
    pub fn stage_seal(&mut self, durable_mark: u64) -> u64 {
        let seal = BatchHeader {
            len: BATCH_HEADER_LEN_U32,
            kind: BatchKind::Seal,
            count: 0,
            first_position: self.next_position,
            durable_mark,
        };
        let mut bytes = [0u8; BATCH_HEADER_LEN];
        seal.encode_into(self.segment.seed(), &mut bytes);
        let at = self.write_offset + self.staged.len() as u64;
        self.staged.extend_from_slice(&bytes);
        at
    }

    /// Writes everything staged with one positional write. On failure
    /// nothing staged counts: positions are handed out again.
    pub fn write_staged(&mut self) -> Result<(), WriteFailure> {
        let len = self.staged.len();
        // The write runs on to the end of its last page with zeros, which
        // the bytes past the end of what is written are anyway. The kernel
        // must read a page it is asked to change only in part, unless it
        // has it cached or knows it to hold nothing; preallocated blocks,
        // written with zeros (see `StorageFile::allocate`), are not known
        // to hold nothing, so without this every write would wait for a
        // read of its last page. The next write starts in that page, which
        // it then finds cached.
        let end = self.write_offset + len as u64;
        let padded_end = end
            .next_multiple_of(PAGE_LEN)
            .min(self.segment.capacity())
            .max(end);
        self.staged
            .resize(len + usize::try_from(padded_end - end).unwrap_or(0), 0);
        let result = self
            .segment
            .file()
            .write_all_at(&self.staged, self.write_offset);
        self.staged.clear();
        match result {
            Ok(()) => {
                self.write_offset += len as u64;
                self.staged_from = self.next_position;
                self.recorded_durable = self.recorded_durable.max(self.staged_durable);
                self.staged_durable = 0;
                Ok(())
            }
            Err(error) => {
                self.next_position = self.staged_from;
                self.staged_durable = 0;
                if error.kind() == io::ErrorKind::StorageFull {
                    let zeros = vec![0u8; len];
                    if self
                        .segment
                        .file()
                        .write_all_at(&zeros, self.write_offset)
                        .is_ok()
                    {
                        return Err(WriteFailure::NoSpace(error));
                    }
                }
                Err(WriteFailure::Failed(error))
            }
        }
    }

    /// Makes everything written durable.
    pub fn sync(&self) -> io::Result<()> {
        let written = self.write_offset;
        self.segment.file().sync_data()?;
        self.segment.mark_synced(written);
        Ok(())
    }

    /// Bytes of the segment written so far: the writer writes below this
    /// never again.
    pub fn written_len(&self) -> u64 {
        self.write_offset
    }

    /// Writes a durable mark (not synced by itself) saying that every
    /// position below `durable` was synced: once it is in the file,
    /// recovery reports damage below it as corruption instead of cutting it
    /// as a torn write. Skipped when the segment already records as much.
    /// Returns whether the segment now records `durable`.
    pub fn write_mark(&mut self, durable: u64) -> io::Result<bool> {
        if durable <= self.recorded_durable {
            return Ok(true);
        }
        if self.write_offset + TAIL_RESERVE > self.segment.capacity() {
            return Ok(false);
        }
        let mark = BatchHeader {
            len: BATCH_HEADER_LEN_U32,
            kind: BatchKind::Mark,
            count: 0,
            first_position: self.next_position,
            durable_mark: durable,
        };
        let mut bytes = [0u8; BATCH_HEADER_LEN];
        mark.encode_into(self.segment.seed(), &mut bytes);
        match self.segment.file().write_all_at(&bytes, self.write_offset) {
            Ok(()) => {
                self.write_offset += BATCH_HEADER_LEN as u64;
                self.recorded_durable = durable;
                Ok(true)
            }
            // Out of space: the next batch overwrites whatever part of the
            // mark got through, so nothing is lost by skipping it.
            Err(e) if e.kind() == io::ErrorKind::StorageFull => Ok(false),
            Err(e) => Err(e),
        }
    }

    /// The preallocated next segment's file, made now if need be.
    pub fn take_prepared(&mut self) -> io::Result<PreparedSegment> {
        self.preallocation.take()
    }

    /// Continues in `prepared`, installed as the segment starting at the
    /// current next position (this one must be sealed and synced), and
    /// starts preparing the one after it. Returns the new segment.
    pub fn install_next(
        &mut self,
        prepared: PreparedSegment,
        storage: &dyn Storage,
        dir: &std::path::Path,
    ) -> io::Result<Arc<Segment>> {
        self.segment.mark_sealed();
        let segment = Arc::new(prepared.install(storage, dir, self.next_position)?);
        self.segment = Arc::clone(&segment);
        self.write_offset = SEGMENT_HEADER_LEN as u64;
        self.staged.clear();
        self.staged_from = self.next_position;
        self.staged_durable = 0;
        self.recorded_durable = 0;
        self.preallocation.start(&segment);
        Ok(segment)
    }

    /// Waits for any background work to end (at close).
    pub fn finish(&mut self) {
        self.preallocation.finish();
    }
}

#[cfg(test)]
#[allow(
    clippy::unwrap_used,
    clippy::indexing_slicing,
    clippy::cast_possible_truncation
)]
mod tests {
    use super::*;
    use crate::log::record::{encode_unfinished_record, RecordBody};
    use crate::storage::OsStorage;
    use crate::types::RecordedEvent;
    use std::path::Path;
    use uuid::Uuid;

    const MIB: u64 = 1 << 20;

    fn active(dir: &Path, capacity: u64) -> ActiveSegment {
        let storage: Arc<dyn Storage> = Arc::new(OsStorage);
        let prepared = PreparedSegment::create(storage.as_ref(), dir, capacity).unwrap();
        let segment = Arc::new(prepared.install(storage.as_ref(), dir, 0).unwrap());
        ActiveSegment::new(
            segment,
            SEGMENT_HEADER_LEN as u64,
            0,
            0,
            Preparation {
                storage,
                dir: dir.to_path_buf(),
                background: false,
                zero_fill_below: None,
                zero_filled: Arc::default(),
            },
        )
    }

    fn payload(position: u64, len: usize) -> Vec<u8> {
        // A byte pattern that differs from event to event; wrapping is meant.
        (0..len)
            .map(|i| position.wrapping_add(i as u64).to_le_bytes()[0])
            .collect()
    }

    /// Writes `count` events of `len`-byte payloads in one batch; returns
    /// each event's (offset, position).
    fn append(active: &mut ActiveSegment, count: usize, len: usize) -> Vec<(u32, u64)> {
        let first = active.next_position();
        let mut records = Vec::new();
        for i in 0..count as u64 {
            encode_unfinished_record(
                &mut records,
                &RecordBody {
                    id: Uuid::from_u128(u128::from(first + i)),
                    stream: "s",
                    event_type: "t",
                    tags: &[],
                    metadata: b"",
                    payload: &payload(first + i, len),
                },
            );
        }
        // Each batch says that every event before it is durable.
        let batch = active.stage(&records, &[(count, first)], first);
        active.write_staged().unwrap();
        batch.offsets.into_iter().zip(first..).collect()
    }

    fn read_one(segment: &Segment, (offset, position): (u32, u64)) -> RecordedEvent {
        segment.read_event(offset, position).unwrap()
    }

    fn same_bytes(a: &RecordedEvent, b: &RecordedEvent) -> bool {
        a.payload.as_ptr() == b.payload.as_ptr()
    }

    #[test]
    fn only_synced_bytes_of_the_segment_being_written_are_mapped() {
        let dir = tempfile::tempdir().unwrap();
        let mut active = active(dir.path(), 16 * MIB);
        let segment = Arc::clone(active.segment());
        let first = append(&mut active, 1, 100)[0];

        // Written, not synced: every read is a copy of its own, which later
        // writes to the file cannot reach.
        let a = read_one(&segment, first);
        let b = read_one(&segment, first);
        assert!(!same_bytes(&a, &b));
        // The payload follows the 64-byte header and the one-byte stream
        // name and event type.
        let payload_at = u64::from(first.0) + 66;
        let file = segment.file();
        file.write_all_at(&[0xFF; 8], payload_at).unwrap();
        assert_eq!(&a.payload[..], &payload(0, 100)[..]);
        file.write_all_at(&a.payload[..8], payload_at).unwrap();
        assert_eq!(&read_one(&segment, first).payload[..], &payload(0, 100)[..]);

        // Synced, but less than a map step: still copies.
        active.sync().unwrap();
        assert!(!same_bytes(
            &read_one(&segment, first),
            &read_one(&segment, first)
        ));

        // Past a map step synced: reads below it are views of one map, reads
        // above it copies.
        let mut events = vec![first];
        while active.written_len() < 5 * MIB {
            events.extend(append(&mut active, 16, 16 << 10));
        }
        active.sync().unwrap();
        let a = read_one(&segment, first);
        assert!(same_bytes(&a, &read_one(&segment, first)));
        let late = *events.last().unwrap();
        assert!(u64::from(late.0) > 4 * MIB);
        assert!(!same_bytes(
            &read_one(&segment, late),
            &read_one(&segment, late)
        ));

        // Sealed: all of it through the map.
        segment.mark_sealed();
        assert!(same_bytes(
            &read_one(&segment, late),
            &read_one(&segment, late)
        ));
    }

    #[test]
    fn records_read_whole_on_either_side_of_the_mapped_prefix() {
        let dir = tempfile::tempdir().unwrap();
        let mut active = active(dir.path(), 32 * MIB);
        let segment = Arc::clone(active.segment());
        let mut events = Vec::new();
        // Records larger than a read by copy takes at first, small ones
        // between them, and one that straddles the 4 MiB step.
        for round in 0..24 {
            events.extend(append(&mut active, 3, 300 << 10));
            events.extend(append(&mut active, 5, 40 + round));
            if round == 12 {
                active.sync().unwrap();
            }
        }
        assert!(active.fits(0) && active.written_len() > 4 * MIB);
        let check = |events: &[RecordedEvent], located: &[(u32, u64)]| {
            assert_eq!(events.len(), located.len());
            for (event, &(_, position)) in events.iter().zip(located) {
                assert_eq!(event.position, position);
                assert_eq!(
                    &event.payload[..],
                    &payload(position, event.payload.len())[..]
                );
            }
        };
        for synced in [false, true] {
            if synced {
                active.sync().unwrap();
            }
            for &one in &events {
                check(&[read_one(&segment, one)], &[one]);
            }
            let mut run = Vec::new();
            let offsets: Vec<u32> = events.iter().map(|e| e.0).collect();
            segment.read_run(0, &offsets, &mut run).unwrap();
            check(&run, &events);
            let sparse: Vec<(u32, u64)> = events.iter().copied().step_by(3).collect();
            let mut located = Vec::new();
            segment
                .read_located(sparse.iter().copied(), &mut located)
                .unwrap();
            check(&located, &sparse);
        }
    }

    #[test]
    fn a_scan_by_copied_pieces_finds_what_a_scan_of_the_map_finds() {
        let dir = tempfile::tempdir().unwrap();
        let mut active = active(dir.path(), 16 * MIB);
        let path = active.segment().path().to_path_buf();
        // Batches of every size, one of them larger than a piece, so that
        // batches straddle the pieces' ends.
        for round in 0..40 {
            append(&mut active, 1 + round % 4, 1000 + round * 2000);
            if round == 20 {
                append(&mut active, 1, 3 * MIB as usize / 2);
            }
        }
        let end = active.written_len();
        assert!(end > 3 * MIB && active.fits(2 * MIB as usize));
        let scan = || {
            let storage = OsStorage;
            let results: Vec<_> = [false, true]
                .into_iter()
                .map(|mapped| {
                    let segment = Segment::open(&storage, path.clone(), 0).unwrap();
                    if mapped {
                        segment.mark_sealed();
                    }
                    let mut seen = Vec::new();
                    let scan = crate::log::scan_segment(
                        &segment,
                        crate::log::SegmentRole::Last,
                        |offset, event| {
                            seen.push((offset, event.position, event.payload.len()));
                            Ok(())
                        },
                    );
                    (
                        scan.map(|s| (s.end_offset, s.next_position, s.torn_bytes)),
                        seen,
                    )
                })
                .collect();
            assert_eq!(format!("{:?}", results[0]), format!("{:?}", results[1]));
            results.into_iter().next().unwrap()
        };
        let (clean, seen) = scan();
        assert_eq!(clean.unwrap(), (end, active.next_position(), 0));
        assert_eq!(seen.len() as u64, active.next_position());

        // A torn tail: junk past the end, then zeros.
        let file = active.segment().file();
        file.write_all_at(&[7; 100], end + 3 * MIB / 2).unwrap();
        let (torn, _) = scan();
        assert_eq!(
            torn.unwrap(),
            (end, active.next_position(), 3 * MIB / 2 + 100)
        );

        // Damage in the first batch, which the batches after it say was
        // durable.
        file.write_all_at(&[0xFF; 4], SEGMENT_HEADER_LEN as u64 + 40)
            .unwrap();
        let (damaged, seen) = scan();
        assert!(seen.is_empty());
        let message = damaged.unwrap_err().to_string();
        assert!(message.contains("was made durable"), "{message}");
    }
}
