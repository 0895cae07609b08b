//! One segment file: a header, then batches of records, preallocated to a
//! fixed capacity and sealed when full.

use super::record::{
    align8, crc_seed, decode_record_at, decode_record_into, peek_len, HeaderError, SegmentHeader,
    RECORD_HEADER_LEN, SEGMENT_HEADER_LEN,
};
use super::record_view::decode_view_at;
use crate::error::{Error, Result};
use crate::event_view::EventView;
use crate::storage::{child, Storage, StorageFile};
use crate::types::RecordedEvent;
use bytes::Bytes;
use std::io;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{SystemTime, UNIX_EPOCH};

/// Suffix of files that are being prepared; removed at open.
pub const TEMP_SUFFIX: &str = ".tmp";
/// Suffix of segment files.
pub const SEGMENT_SUFFIX: &str = ".log";

/// Name of the segment whose first position is `base`: zero-padded so that
/// names sort in log order.
pub fn segment_file_name(base: u64) -> String {
    format!("{base:020}{SEGMENT_SUFFIX}")
}

/// The base position encoded in a segment file name, if it is one.
pub fn parse_segment_file_name(name: &str) -> Option<u64> {
    let digits = name.strip_suffix(SEGMENT_SUFFIX)?;
    if digits.len() != 20 || !digits.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    digits.parse().ok()
}

/// Reads of a segment being written go through its memory map only as far
/// as its synced bytes rounded down to a multiple of this, so that the map
/// is replaced by a longer one a few times per segment rather than at every
/// sync.
const MAP_STEP: u64 = 4 << 20;

/// How much a read by copy takes at least, so that a record's neighbours,
/// which the next reads usually want, come with it.
const COPY_AHEAD: u64 = 4 << 10;

/// [`Segment::map_limit`] of a sealed segment.
const SEALED: u64 = u64::MAX;

/// An open segment.
///
/// Its bytes are read in one of two ways. Where evstore writes none of them
/// again for as long as the segment is open, a read is a view of a memory
/// map of the file, and the events it returns point into that map: the
/// whole of a sealed segment, and the prefix of the segment being written
/// that this process wrote and then synced. Everything else (a segment
/// another process is writing, or bytes past what was synced) is read with
/// `pread` into a buffer of its own.
#[derive(Debug)]
pub struct Segment {
    base_position: u64,
    capacity: u64,
    seed: u32,
    path: PathBuf,
    file: Box<dyn StorageFile>,
    /// [`SEALED`] once the segment is known to be sealed; before that, how
    /// many bytes from its start this process wrote and then synced.
    map_limit: AtomicU64,
    /// The page cache of the bytes below this was handed back to the kernel.
    cache_released: AtomicU64,
    /// For a removed segment (see [`super::record::REMOVED_FORMAT_VERSION`]),
    /// the position its positions end at: it holds no record.
    removed_end: Option<u64>,
    /// Set once a scavenge is replacing this file: nothing derived from it
    /// (a postings file) may be written from then on.
    replaced: std::sync::atomic::AtomicBool,
}

/// Cached pages are handed back in steps of this many bytes, so that a
/// sync of a few events costs no system call.
const CACHE_RELEASE_STEP: u64 = 1 << 20;

/// A preallocated file waiting to become the next segment.
#[derive(Debug)]
pub struct PreparedSegment {
    file: Box<dyn StorageFile>,
    temp_path: PathBuf,
    capacity: u64,
}

pub fn now_nanos() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| u64::try_from(d.as_nanos()).unwrap_or(u64::MAX))
}

impl PreparedSegment {
    /// Creates a temporary file in `dir` and allocates `capacity` bytes for it,
    /// so that the writer never waits for allocation at rollover.
    pub fn create(storage: &dyn Storage, dir: &Path, capacity: u64) -> io::Result<Self> {
        let temp_path = child(dir, &format!("next{TEMP_SUFFIX}"));
        match storage.remove_file(&temp_path) {
            Ok(()) => {}
            Err(e) if e.kind() == io::ErrorKind::NotFound => {}
            Err(e) => return Err(e),
        }
        let file = storage.open_file(&temp_path, true)?;
        if let Err(e) = file.allocate(capacity).and_then(|()| file.sync_data()) {
            // A partly allocated file holds whatever space it got, which
            // checkpoints and index files need when the disk is full.
            drop(file);
            let _ = storage.remove_file(&temp_path);
            return Err(e);
        }
        Ok(PreparedSegment {
            file,
            temp_path,
            capacity,
        })
    }

    /// The file being prepared.
    pub fn file(&self) -> &dyn StorageFile {
        self.file.as_ref()
    }

    /// Turns the file into the segment starting at `base_position`: header
    /// written and synced, renamed to its final name, directory synced.
    pub fn install(
        self,
        storage: &dyn Storage,
        dir: &Path,
        base_position: u64,
    ) -> io::Result<Segment> {
        let header = SegmentHeader {
            base_position,
            capacity: self.capacity,
            created_nanos: now_nanos(),
            version: super::record::FORMAT_VERSION,
        };
        self.file.write_all_at(&header.encode(), 0)?;
        self.file.sync_data()?;
        let path = child(dir, &segment_file_name(base_position));
        storage.rename(&self.temp_path, &path)?;
        storage.sync_dir(dir)?;
        Ok(Segment {
            base_position,
            capacity: self.capacity,
            seed: crc_seed(base_position),
            path,
            file: self.file,
            map_limit: AtomicU64::new(SEGMENT_HEADER_LEN as u64),
            cache_released: AtomicU64::new(0),
            removed_end: None,
            replaced: std::sync::atomic::AtomicBool::new(false),
        })
    }
}

impl Segment {
    /// Opens an existing segment and checks its header against the position
    /// its name announces.
    pub fn open(storage: &dyn Storage, path: PathBuf, base_from_name: u64) -> Result<Segment> {
        let file = storage
            .open_file(&path, false)
            .map_err(|e| Error::io(format!("opening {}", path.display()), e))?;
        Self::from_file(file, path, base_from_name)
    }

    /// The sealed file a scavenge just renamed over `old`'s name, opened
    /// in its place.
    ///
    /// # Errors
    ///
    /// As [`Segment::open`].
    pub fn open_replacement(
        storage: &dyn Storage,
        old: &Segment,
    ) -> Result<std::sync::Arc<Segment>> {
        let replacement = Segment::open(storage, old.path().to_path_buf(), old.base_position())?;
        replacement.mark_sealed();
        Ok(std::sync::Arc::new(replacement))
    }

    /// [`Segment::open`] for reading only: writes through it fail.
    pub fn open_read_only(
        storage: &dyn Storage,
        path: PathBuf,
        base_from_name: u64,
    ) -> Result<Segment> {
        let file = storage
            .open_read_only(&path)
            .map_err(|e| Error::io(format!("opening {}", path.display()), e))?;
        Self::from_file(file, path, base_from_name)
    }

    fn from_file(
        file: Box<dyn StorageFile>,
        path: PathBuf,
        base_from_name: u64,
    ) -> Result<Segment> {
        let len = file
            .len()
            .map_err(|e| Error::io(format!("reading the size of {}", path.display()), e))?;
        if len < SEGMENT_HEADER_LEN as u64 {
            return Err(Error::corrupted(
                &path,
                0,
                format!("file of {len} bytes is shorter than a segment header"),
            ));
        }
        let bytes = file
            .read_copy(0, SEGMENT_HEADER_LEN)
            .map_err(|e| Error::io(format!("reading {}", path.display()), e))?;
        let header = match SegmentHeader::decode(&bytes) {
            Ok(h) => h,
            Err(HeaderError::UnsupportedVersion(found)) => {
                return Err(Error::UnsupportedFormat {
                    file: path,
                    found,
                    supported: super::record::FORMAT_VERSION,
                })
            }
            Err(HeaderError::BadMagic) => {
                return Err(Error::corrupted(
                    &path,
                    0,
                    "bad magic: not an evstore segment",
                ))
            }
            Err(HeaderError::BadChecksum | HeaderError::Short) => {
                return Err(Error::corrupted(
                    &path,
                    0,
                    "segment header checksum mismatch",
                ))
            }
        };
        if header.base_position != base_from_name {
            return Err(Error::corrupted(
                &path,
                16,
                format!(
                    "header says base position {}, file name says {base_from_name}",
                    header.base_position
                ),
            ));
        }
        if header.capacity < SEGMENT_HEADER_LEN as u64 || header.capacity > u64::from(u32::MAX) {
            return Err(Error::corrupted(
                &path,
                24,
                format!("implausible segment capacity {}", header.capacity),
            ));
        }
        let seed = crc_seed(header.base_position);
        let removed_end = if header.version == super::record::REMOVED_FORMAT_VERSION {
            Some(removed_end(
                file.as_ref(),
                &path,
                header.base_position,
                seed,
            )?)
        } else {
            None
        };
        Ok(Segment {
            base_position: header.base_position,
            capacity: header.capacity,
            seed,
            path,
            file,
            map_limit: AtomicU64::new(0),
            cache_released: AtomicU64::new(0),
            removed_end,
            replaced: std::sync::atomic::AtomicBool::new(false),
        })
    }

    /// For a removed segment, the position after its last one: its events
    /// are gone and no read reaches them (see
    /// [`super::record::REMOVED_FORMAT_VERSION`]).
    pub fn removed_end(&self) -> Option<u64> {
        self.removed_end
    }

    /// Whether the segment was removed: it holds no record.
    pub fn is_removed(&self) -> bool {
        self.removed_end.is_some()
    }

    /// Notes that a scavenge is replacing this file (see
    /// [`Segment::is_replaced`]).
    pub fn mark_replaced(&self) {
        self.replaced.store(true, Ordering::Release);
    }

    /// Whether a scavenge is replacing (or replaced) this file: what is
    /// derived from its records must not be written any more, or it would
    /// outlive the records the scavenge takes out.
    pub fn is_replaced(&self) -> bool {
        self.replaced.load(Ordering::Acquire)
    }

    /// Global position of the first event in this segment.
    pub fn base_position(&self) -> u64 {
        self.base_position
    }

    /// How many bytes the writer may fill.
    pub fn capacity(&self) -> u64 {
        self.capacity
    }

    /// CRC seed of this segment's batches and records.
    pub fn seed(&self) -> u32 {
        self.seed
    }

    /// The segment's file path.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// The underlying file.
    pub fn file(&self) -> &dyn StorageFile {
        self.file.as_ref()
    }

    /// Bytes of the file that exist and belong to the segment: its capacity,
    /// or less when the file was cut short.
    pub fn readable_len(&self) -> Result<u64> {
        let len = self
            .file
            .len()
            .map_err(|e| Error::io(format!("reading the size of {}", self.path.display()), e))?;
        Ok(len.min(self.capacity))
    }

    /// Notes that the segment is sealed: nothing writes it again, so all of
    /// it may be read through the map. Only for a segment whose seal was
    /// written, or that has a successor (the writer seals and syncs a
    /// segment before it creates the next).
    pub fn mark_sealed(&self) {
        self.map_limit.store(SEALED, Ordering::Release);
    }

    /// Notes that this process wrote the segment's first `len` bytes and
    /// then synced them: the writer writes below the end of what it wrote
    /// never again, so they may be read through the map.
    pub fn mark_synced(&self, len: u64) {
        self.map_limit.fetch_max(len, Ordering::AcqRel);
    }

    /// Hands the cached pages of the bytes more than `window` bytes below
    /// `synced_len` back to the kernel, once they are synced (see
    /// `Options::page_cache_window`): clean pages can go, and the writer's
    /// next writes reuse them instead of the kernel finding new ones.
    pub fn release_cache_behind(&self, synced_len: u64, window: u64) {
        let upto = synced_len.saturating_sub(window) / CACHE_RELEASE_STEP * CACHE_RELEASE_STEP;
        let from = self.cache_released.fetch_max(upto, Ordering::AcqRel);
        if upto > from {
            self.file.release_cache(from, upto - from);
        }
    }

    /// Bytes of the segment known to be synced: its capacity once sealed.
    pub fn synced_len(&self) -> u64 {
        match self.map_limit.load(Ordering::Acquire) {
            SEALED => self.capacity,
            synced => synced,
        }
    }

    /// Whether the segment is known to be sealed.
    pub fn is_sealed(&self) -> bool {
        self.map_limit.load(Ordering::Acquire) == SEALED
    }

    /// Reads of bytes below this may be views of the map.
    fn map_window(&self) -> u64 {
        match self.map_limit.load(Ordering::Acquire) {
            SEALED => self.capacity,
            synced => synced - synced % MAP_STEP,
        }
    }

    fn past_end(&self, offset: u64) -> Error {
        Error::corrupted(
            &self.path,
            offset,
            "record offset past the end of the segment",
        )
    }

    fn read_error(&self, e: io::Error) -> Error {
        Error::io(format!("reading {}", self.path.display()), e)
    }

    /// Bytes `start..end` of the segment: a view of the map when the range
    /// lies where the map may go, a copy of its own otherwise.
    pub fn read(&self, start: u64, end: u64) -> Result<Bytes> {
        let len = usize::try_from(end.saturating_sub(start))
            .map_err(|_| self.read_error(io::Error::other("range too large")))?;
        if end <= self.map_window() {
            self.file.read_view(start, len)
        } else {
            self.file.read_copy(start, len)
        }
        .map_err(|e| self.read_error(e))
    }

    /// A view of the map from `start` to `window`, or to the end of the
    /// file when it is shorter.
    fn view_to(&self, start: u64, window: u64) -> Result<Bytes> {
        let len = usize::try_from(window.saturating_sub(start)).unwrap_or(usize::MAX);
        // The file is normally allocated to its capacity: try that first, so
        // the common read costs no `fstat`.
        if let Ok(bytes) = self.file.read_view(start, len) {
            Ok(bytes)
        } else {
            let readable = self.readable_len()?.min(window);
            if start >= readable {
                return Err(self.past_end(start));
            }
            let len = usize::try_from(readable - start).unwrap_or(usize::MAX);
            self.file
                .read_view(start, len)
                .map_err(|e| self.read_error(e))
        }
    }

    /// Bytes of the segment from `start` that hold at least the whole record
    /// at `through` (at or after `start`), padding included, as far as the
    /// segment's data goes: a view that runs on to the end of what may be
    /// mapped, or a copy that runs a little past the record. Record lengths
    /// come from the records' headers, unchecked: decoding checks them.
    fn span(&self, start: u64, through: u64) -> Result<Bytes> {
        if self.is_removed() {
            // Callers skip removed segments; an index that sends a read here
            // is out of step with the file.
            return Err(Error::corrupted(
                &self.path,
                start,
                "a record was looked for in a removed segment, which holds none",
            ));
        }
        if start >= self.capacity {
            return Err(self.past_end(start));
        }
        let through = through.max(start);
        let window = self.map_window();
        if through < window {
            let view = self.view_to(start, window)?;
            // A sealed segment's map holds all of its data: a record that
            // does not fit in it is damaged, which decoding reports.
            if self.is_sealed() || fits(&view, through - start) {
                return Ok(view);
            }
        }
        self.copy_span(start, through)
    }

    /// [`Segment::span`] by copy.
    fn copy_span(&self, start: u64, through: u64) -> Result<Bytes> {
        let limit = self.capacity;
        let want = through
            .saturating_add(RECORD_HEADER_LEN as u64)
            .max(start.saturating_add(COPY_AHEAD))
            .min(limit);
        let first = usize::try_from(want.saturating_sub(start)).unwrap_or(0);
        let mut buf = vec![0u8; first];
        let got = self
            .file
            .read_at(&mut buf, start)
            .map_err(|e| self.read_error(e))?;
        if got == 0 {
            return Err(self.past_end(start));
        }
        buf.truncate(got);
        let relative = usize::try_from(through - start).unwrap_or(usize::MAX);
        let needed = buf
            .get(relative..)
            .and_then(peek_len)
            .map(|len| relative.saturating_add(align8(len)));
        let room = usize::try_from(limit - start).unwrap_or(usize::MAX);
        if let Some(needed) = needed.filter(|&n| got == first && n > got && n <= room) {
            buf.resize(needed, 0);
            let more = match buf.get_mut(got..) {
                Some(rest) => self
                    .file
                    .read_at(rest, start + got as u64)
                    .map_err(|e| self.read_error(e))?,
                None => 0,
            };
            buf.truncate(got + more);
        }
        Ok(Bytes::from(buf))
    }

    /// Reads and verifies the consecutive records at `offsets`, the first
    /// of which holds `first_position`, through one view of the segment.
    pub fn read_run(
        &self,
        first_position: u64,
        offsets: &[u32],
        out: &mut Vec<RecordedEvent>,
    ) -> Result<()> {
        let (Some(&low), Some(&high)) = (offsets.first(), offsets.last()) else {
            return Ok(());
        };
        let view = self.span(u64::from(low), u64::from(high))?;
        for (i, &offset) in offsets.iter().enumerate() {
            let relative = offset.saturating_sub(low) as usize;
            if relative >= view.len() {
                return Err(Error::corrupted(
                    &self.path,
                    u64::from(offset),
                    "record offset past the end",
                ));
            }
            let position = first_position + i as u64;
            self.decode_onto(&view, relative, u64::from(offset), position, out)?;
        }
        Ok(())
    }

    /// Reads and verifies the records at the given (offset, position) pairs,
    /// in increasing offset order, through one view of the segment.
    pub fn read_located(
        &self,
        mut records: impl Iterator<Item = (u32, u64)>,
        out: &mut Vec<RecordedEvent>,
    ) -> Result<()> {
        let Some((low, first_position)) = records.next() else {
            return Ok(());
        };
        let mut span_start = u64::from(low);
        let mut span = self.span(span_start, span_start)?;
        for (offset, position) in std::iter::once((low, first_position)).chain(records) {
            if offset < low {
                return Err(Error::corrupted(
                    &self.path,
                    u64::from(offset),
                    "record offset out of order or past the end",
                ));
            }
            let offset = u64::from(offset);
            if offset < span_start || !fits(&span, offset - span_start) {
                span = self.span(offset, offset)?;
                span_start = offset;
            }
            let relative = usize::try_from(offset - span_start).unwrap_or(usize::MAX);
            if span.get(relative..).is_none_or(<[u8]>::is_empty) {
                return Err(Error::corrupted(
                    &self.path,
                    offset,
                    "record offset out of order or past the end",
                ));
            }
            self.decode_onto(&span, relative, offset, position, out)?;
        }
        Ok(())
    }

    /// [`Segment::read_located`], with each record lent to `visit` as an
    /// [`EventView`] of the segment (with its offset) instead of decoded
    /// into an event of its own; newest first if `newest_first`.
    pub fn visit_located(
        &self,
        records: &[(u32, u64)],
        newest_first: bool,
        visit: &mut dyn FnMut(u32, EventView<'_>) -> Result<()>,
    ) -> Result<()> {
        let (Some(&(low, _)), Some(&(high, _))) = (records.first(), records.last()) else {
            return Ok(());
        };
        // A view from a record on serves the ones after it that it holds:
        // all of them in a mapped segment, read oldest first.
        let mut span: Option<(u64, Bytes)> = None;
        let mut lend = |&(offset, position): &(u32, u64)| -> Result<()> {
            let at = u64::from(offset);
            if offset < low || offset > high {
                return Err(Error::corrupted(
                    &self.path,
                    at,
                    "record offset out of order or past the end",
                ));
            }
            let (start, bytes) = match span.take() {
                Some((start, bytes)) if at >= start && fits(&bytes, at - start) => (start, bytes),
                _ => (at, self.span(at, at)?),
            };
            let relative = usize::try_from(at - start).unwrap_or(usize::MAX);
            let decoded = decode_view_at(&bytes, relative, self.seed)
                .map_err(|reason| Error::corrupted(&self.path, at, reason))
                .and_then(|(view, _)| {
                    if view.position == position {
                        visit(offset, view)
                    } else {
                        Err(Error::corrupted(
                            &self.path,
                            at,
                            format!("expected position {position}, found {}", view.position),
                        ))
                    }
                });
            span = Some((start, bytes));
            decoded
        };
        if newest_first {
            records.iter().rev().try_for_each(&mut lend)
        } else {
            records.iter().try_for_each(&mut lend)
        }
    }

    /// Decodes the record at `at` in `bytes`, at `offset` in the segment,
    /// which must hold `position`, onto `out`.
    fn decode_onto(
        &self,
        bytes: &Bytes,
        at: usize,
        offset: u64,
        position: u64,
        out: &mut Vec<RecordedEvent>,
    ) -> Result<()> {
        decode_record_into(bytes, at, self.seed, out)
            .map_err(|reason| Error::corrupted(&self.path, offset, reason))?;
        match out.last() {
            Some(event) if event.position == position => Ok(()),
            found => {
                let found = found.map_or(0, |e| e.position);
                out.pop();
                Err(Error::corrupted(
                    &self.path,
                    offset,
                    format!("expected position {position}, found {found}"),
                ))
            }
        }
    }

    /// Decodes the record at `at` in `bytes`, at `offset` in the segment,
    /// which must hold `position`.
    fn decode_at(
        &self,
        bytes: &Bytes,
        at: usize,
        offset: u64,
        position: u64,
    ) -> Result<RecordedEvent> {
        let (event, _) = decode_record_at(bytes, at, self.seed)
            .map_err(|reason| Error::corrupted(&self.path, offset, reason))?;
        if event.position != position {
            return Err(Error::corrupted(
                &self.path,
                offset,
                format!("expected position {position}, found {}", event.position),
            ));
        }
        Ok(event)
    }

    /// Reads and verifies the record at `offset`, which must hold `position`.
    pub fn read_event(&self, offset: u32, position: u64) -> Result<RecordedEvent> {
        let offset = u64::from(offset);
        let bytes = self.span(offset, offset)?;
        let len = peek_len(&bytes).unwrap_or(0);
        if len < RECORD_HEADER_LEN || len > bytes.len() {
            return Err(Error::corrupted(
                &self.path,
                offset,
                "record length out of bounds",
            ));
        }
        self.decode_at(&bytes, 0, offset, position)
    }
}

/// Whether `bytes` hold the whole record that starts `relative` bytes in,
/// padding included, as long as its header says it is.
fn fits(bytes: &[u8], relative: u64) -> bool {
    let Ok(relative) = usize::try_from(relative) else {
        return false;
    };
    bytes.get(relative..).and_then(peek_len).is_some_and(|len| {
        len >= RECORD_HEADER_LEN && relative.saturating_add(align8(len)) <= bytes.len()
    })
}

/// The seal right after a removed segment's header: where its positions
/// end. Anything else there is damage.
fn removed_end(file: &dyn StorageFile, path: &Path, base: u64, seed: u32) -> Result<u64> {
    use super::record::{BatchHeader, BatchKind, BATCH_HEADER_LEN};
    let io_error = |e| Error::io(format!("reading {}", path.display()), e);
    let len = file.len().map_err(io_error)?;
    let bytes = if len >= (SEGMENT_HEADER_LEN + BATCH_HEADER_LEN) as u64 {
        file.read_copy(SEGMENT_HEADER_LEN as u64, BATCH_HEADER_LEN)
            .map_err(io_error)?
    } else {
        Bytes::new()
    };
    match BatchHeader::decode(&bytes, seed) {
        Some(seal) if seal.kind == BatchKind::Seal && seal.first_position > base => {
            Ok(seal.first_position)
        }
        _ => Err(Error::corrupted(
            path,
            SEGMENT_HEADER_LEN as u64,
            "a removed segment without a valid seal after its header",
        )),
    }
}
