#![allow(clippy::pedantic)]
//! One segment file: a header, then batches of records, preallocated to a
//! fixed capacity and sealed when full.

use super::record::{
    crc_seed, decode_record, peek_len, HeaderError, SegmentHeader, RECORD_HEADER_LEN,
    SEGMENT_HEADER_LEN,
};
use crate::error::{Error, Result};
use crate::storage::{child, Storage, StorageFile};
use crate::types::RecordedEvent;
use bytes::Bytes;
use std::io;
use std::path::{Path, PathBuf};
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

/// An open segment.
#[derive(Debug)]
pub struct Segment {
    base_position: u64,
    capacity: u64,
    seed: u32,
    path: PathBuf,
    file: Box<dyn StorageFile>,
}

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
        .map_or(0, |d| d.as_nanos() as u64)
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
            .read_view(0, SEGMENT_HEADER_LEN)
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
        Ok(Segment {
            base_position: header.base_position,
            capacity: header.capacity,
            seed: crc_seed(header.base_position),
            path,
            file,
        })
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

    /// Bytes from `start` to the end of the segment's data: its capacity, or
    /// less when the file was cut short.
    pub fn view_from(&self, start: u64) -> Result<Bytes> {
        let past_end = || {
            Error::corrupted(
                &self.path,
                start,
                "record offset past the end of the segment",
            )
        };
        if start >= self.capacity {
            return Err(past_end());
        }
        // The file is normally allocated to its capacity: try that first, so
        // the common read costs no `fstat`.
        if let Ok(bytes) = self.view(start, self.capacity) {
            Ok(bytes)
        } else {
            let readable = self.readable_len()?;
            if start >= readable {
                return Err(past_end());
            }
            self.view(start, readable)
        }
    }

    /// Bytes `start..end` of the segment.
    pub fn view(&self, start: u64, end: u64) -> Result<Bytes> {
        let len = end.saturating_sub(start) as usize;
        self.file
            .read_view(start, len)
            .map_err(|e| Error::io(format!("reading {}", self.path.display()), e))
    }

    /// Reads and verifies the consecutive records at `offsets`, the first
    /// of which holds `first_position`, through one view of the segment.
    pub fn read_run(
        &self,
        first_position: u64,
        offsets: &[u32],
        out: &mut Vec<RecordedEvent>,
    ) -> Result<()> {
        let Some(&low) = offsets.first() else {
            return Ok(());
        };
        let view = self.view_from(u64::from(low))?;
        for (i, &offset) in offsets.iter().enumerate() {
            let relative = offset.saturating_sub(low) as usize;
            if relative >= view.len() {
                return Err(Error::corrupted(
                    &self.path,
                    u64::from(offset),
                    "record offset past the end",
                ));
            }
            let (event, _) = decode_record(&view.slice(relative..), self.seed)
                .map_err(|reason| Error::corrupted(&self.path, u64::from(offset), reason))?;
            let position = first_position + i as u64;
            if event.position != position {
                return Err(Error::corrupted(
                    &self.path,
                    u64::from(offset),
                    format!("expected position {position}, found {}", event.position),
                ));
            }
            out.push(event);
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
        let view = self.view_from(u64::from(low))?;
        for (offset, position) in std::iter::once((low, first_position)).chain(records) {
            let relative = offset.wrapping_sub(low) as usize;
            let bytes = match view.get(relative..) {
                Some(rest) if offset >= low && !rest.is_empty() => view.slice(relative..),
                _ => {
                    return Err(Error::corrupted(
                        &self.path,
                        u64::from(offset),
                        "record offset out of order or past the end",
                    ))
                }
            };
            out.push(self.decode_at(&bytes, u64::from(offset), position)?);
        }
        Ok(())
    }

    fn decode_at(&self, bytes: &Bytes, offset: u64, position: u64) -> Result<RecordedEvent> {
        let (event, _) = decode_record(bytes, self.seed)
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
        let bytes = self.view_from(offset)?;
        let len = peek_len(&bytes).unwrap_or(0);
        if len < RECORD_HEADER_LEN || len > bytes.len() {
            return Err(Error::corrupted(
                &self.path,
                offset,
                "record length out of bounds",
            ));
        }
        self.decode_at(&bytes, offset, position)
    }
}
