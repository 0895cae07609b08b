//! Snapshot files: per stream, the newest few saved states, each checksummed
//! and replaced atomically.
//!
//! Layout: `snapshots/<stream dir>/<version, 20 digits>.snap`. The stream
//! directory is a readable, lower-cased prefix of the name followed by the
//! XXH3-128 of the exact name, so it is a valid file name on any file system
//! (case-insensitive ones included) whatever the stream is called; the full
//! name is stored inside each file and checked on load.
//!
//! A file, all integers little-endian:
//!
//! | offset | size | field |
//! |---|---|---|
//! | 0 | 8 | magic `EVSNAP\0\x01` |
//! | 8 | 4 | format version (1) |
//! | 12 | 4 | stream name length `n` |
//! | 16 | 8 | stream version the state includes |
//! | 24 | 16 | id of the event at that version |
//! | 40 | 8 | saved at, nanoseconds since the Unix epoch |
//! | 48 | 8 | data length `d` |
//! | 56 | 4 | CRC32 of bytes 0..56 |
//! | 60 | 4 | CRC32 of the name and the data |
//! | 64 | n | stream name (UTF-8) |
//! | 64 + n | d | data |
//!
//! The event id ties a snapshot to the log it was taken from: a snapshot is
//! only used while the stream's event at its version is the same event.

use crate::error::{Error, Result};
use crate::storage::{name_stem, read_whole_file, replace_file, NameLocks, Storage};
use bytes::Bytes;
use parking_lot::Mutex;
use std::io;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use uuid::Uuid;

pub use crate::layout::SNAPSHOTS_DIR;

/// Magic bytes opening every snapshot file.
pub const SNAPSHOT_MAGIC: [u8; 8] = *b"EVSNAP\0\x01";
/// The snapshot format version this build reads and writes.
pub const SNAPSHOT_FORMAT_VERSION: u32 = 1;
/// Bytes before the stream name in a snapshot file.
pub const SNAPSHOT_HEADER_LEN: usize = 64;

const EXTENSION: &str = ".snap";
const TEMP_SUFFIX: &str = ".tmp";
const DAMAGED_SUFFIX: &str = ".damaged";
/// Saves of different streams proceed in parallel unless they share a stripe.
const LOCK_STRIPES: usize = 64;
/// Damage reports kept for [`crate::Store::damaged_snapshots`].
const MAX_REPORTS: usize = 1024;
/// Times a load lists a stream's directory again after a concurrent prune.
const MAX_RELISTS: u32 = 16;

/// A saved state of a stream, from [`crate::Store::load_snapshot`].
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct Snapshot {
    /// The last stream version the state includes: replay from `version + 1`.
    pub version: u64,
    /// The bytes given to [`crate::Store::save_snapshot`].
    pub data: Bytes,
    /// When the snapshot was saved, in nanoseconds since the Unix epoch.
    pub timestamp_nanos: u64,
}

/// A snapshot file that failed its checks and was skipped; see
/// [`crate::Store::damaged_snapshots`].
#[derive(Debug, Clone)]
#[non_exhaustive]
pub struct DamagedSnapshot {
    /// The stream whose snapshot it was.
    pub stream: String,
    /// The version in the file name.
    pub version: u64,
    /// Where the file now is: damaged files are renamed with a `.damaged`
    /// suffix, kept for inspection and never read again (a read-only store
    /// leaves them in place). A file of a newer
    /// format version ([`Error::UnsupportedFormat`]) is not damaged: it is
    /// skipped but left in place.
    pub file: PathBuf,
    /// What was wrong.
    pub error: Error,
}

/// A decoded, checksum-verified snapshot file.
#[derive(Debug, Clone)]
pub(crate) struct SnapshotFile {
    pub version: u64,
    pub event_id: Uuid,
    pub timestamp_nanos: u64,
    pub data: Bytes,
}

/// The snapshot directory of one store.
#[derive(Debug)]
pub(crate) struct Snapshots {
    storage: Arc<dyn Storage>,
    dir: PathBuf,
    keep: usize,
    /// Rejected files are reported but left where they are.
    read_only: bool,
    locks: NameLocks,
    damaged: Mutex<Vec<DamagedSnapshot>>,
}

/// The directory name of `stream`'s snapshots.
pub(crate) fn stream_dir_name(stream: &str) -> String {
    name_stem(stream)
}

fn file_name(version: u64) -> String {
    format!("{version:020}{EXTENSION}")
}

/// The version of a `<version>.snap` file name, if it is one.
fn parse_file_name(name: &str) -> Option<u64> {
    let digits = name.strip_suffix(EXTENSION)?;
    if digits.len() != 20 || !digits.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    digits.parse().ok()
}

/// Encodes a snapshot file.
pub(crate) fn encode(
    stream: &str,
    version: u64,
    event_id: Uuid,
    timestamp_nanos: u64,
    data: &[u8],
) -> Vec<u8> {
    let mut out = Vec::with_capacity(SNAPSHOT_HEADER_LEN + stream.len() + data.len());
    out.extend_from_slice(&SNAPSHOT_MAGIC);
    out.extend_from_slice(&SNAPSHOT_FORMAT_VERSION.to_le_bytes());
    #[expect(
        clippy::cast_possible_truncation,
        reason = "stream names are validated to at most 64 KiB"
    )]
    out.extend_from_slice(&(stream.len() as u32).to_le_bytes());
    out.extend_from_slice(&version.to_le_bytes());
    out.extend_from_slice(&event_id.as_u128().to_le_bytes());
    out.extend_from_slice(&timestamp_nanos.to_le_bytes());
    out.extend_from_slice(&(data.len() as u64).to_le_bytes());
    let header_crc = crc32fast::hash(&out);
    out.extend_from_slice(&header_crc.to_le_bytes());
    let mut body = crc32fast::Hasher::new();
    body.update(stream.as_bytes());
    body.update(data);
    out.extend_from_slice(&body.finalize().to_le_bytes());
    out.extend_from_slice(stream.as_bytes());
    out.extend_from_slice(data);
    out
}

fn le_u32(bytes: &[u8], at: usize) -> u32 {
    let mut word = [0u8; 4];
    if let Some(src) = bytes.get(at..at + 4) {
        word.copy_from_slice(src);
    }
    u32::from_le_bytes(word)
}

fn le_u64(bytes: &[u8], at: usize) -> u64 {
    let mut word = [0u8; 8];
    if let Some(src) = bytes.get(at..at + 8) {
        word.copy_from_slice(src);
    }
    u64::from_le_bytes(word)
}

/// Decodes and verifies a snapshot file that should hold `stream` at
/// `version`.
pub(crate) fn decode(
    path: &Path,
    mut bytes: Bytes,
    stream: &str,
    version: u64,
) -> Result<SnapshotFile> {
    let corrupted = |offset: usize, reason: String| Error::corrupted(path, offset as u64, reason);
    let Some(&header) = bytes.first_chunk::<SNAPSHOT_HEADER_LEN>() else {
        return Err(corrupted(
            0,
            format!("{} bytes is shorter than a snapshot header", bytes.len()),
        ));
    };
    if header[..8] != SNAPSHOT_MAGIC {
        return Err(corrupted(0, "not a snapshot file (bad magic)".into()));
    }
    if crc32fast::hash(&header[..56]) != le_u32(&header, 56) {
        return Err(corrupted(56, "header checksum mismatch".into()));
    }
    let format = le_u32(&header, 8);
    if format != SNAPSHOT_FORMAT_VERSION {
        return Err(Error::UnsupportedFormat {
            file: path.to_path_buf(),
            found: format,
            supported: SNAPSHOT_FORMAT_VERSION,
        });
    }
    let name_len = le_u32(&header, 12);
    let data_len = le_u64(&header, 48);
    let expected_len = (SNAPSHOT_HEADER_LEN as u64)
        .checked_add(u64::from(name_len))
        .and_then(|n| n.checked_add(data_len));
    if expected_len != Some(bytes.len() as u64) {
        return Err(corrupted(
            48,
            format!(
                "the header promises {name_len} name bytes and {data_len} data bytes but the file holds {}",
                bytes.len() - SNAPSHOT_HEADER_LEN
            ),
        ));
    }
    // The lengths add up to the file's, so the name ends inside it.
    let name_end = usize::try_from(name_len)
        .ok()
        .and_then(|len| SNAPSHOT_HEADER_LEN.checked_add(len))
        .filter(|&end| end <= bytes.len())
        .ok_or_else(|| corrupted(12, format!("the {name_len}-byte name runs past the end")))?;
    let data = bytes.split_off(name_end);
    let name = bytes.split_off(SNAPSHOT_HEADER_LEN);
    let mut body = crc32fast::Hasher::new();
    body.update(&name);
    body.update(&data);
    if body.finalize() != le_u32(&header, 60) {
        return Err(corrupted(60, "body checksum mismatch".into()));
    }
    if name != stream.as_bytes() {
        return Err(corrupted(
            SNAPSHOT_HEADER_LEN,
            format!(
                "holds a snapshot of stream {:?}, not '{stream}'",
                String::from_utf8_lossy(&name)
            ),
        ));
    }
    let file_version = le_u64(&header, 16);
    if file_version != version {
        return Err(corrupted(
            16,
            format!("holds version {file_version} but is named for version {version}"),
        ));
    }
    let mut id = [0u8; 16];
    id.copy_from_slice(&header[24..40]);
    Ok(SnapshotFile {
        version,
        event_id: Uuid::from_u128(u128::from_le_bytes(id)),
        timestamp_nanos: le_u64(&header, 40),
        data,
    })
}

fn ignore_missing(result: io::Result<()>) -> io::Result<()> {
    match result {
        Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(()),
        other => other,
    }
}

impl Snapshots {
    /// The snapshot directory `dir`, which must exist.
    pub fn new(storage: Arc<dyn Storage>, dir: PathBuf, keep: usize) -> Self {
        Snapshots {
            storage,
            dir,
            keep: keep.max(1),
            read_only: false,
            locks: NameLocks::new(LOCK_STRIPES),
            damaged: Mutex::new(Vec::new()),
        }
    }

    /// The same directory, for a store that must not change it.
    pub fn read_only(mut self) -> Self {
        self.read_only = true;
        self
    }

    fn stream_dir(&self, stream: &str) -> PathBuf {
        self.dir.join(stream_dir_name(stream))
    }

    /// Writes a snapshot durably, then prunes the stream's older ones down to
    /// the configured count.
    pub fn save(
        &self,
        stream: &str,
        version: u64,
        event_id: Uuid,
        timestamp_nanos: u64,
        data: &[u8],
    ) -> Result<()> {
        let _serialized = self.locks.lock(stream);
        let dir = self.stream_dir(stream);
        let io_err = |what: &str, e| Error::io_or_no_space(format!("{what} {}", dir.display()), e);
        match self.storage.list_dir(&dir) {
            Ok(_) => {}
            Err(e) if e.kind() == io::ErrorKind::NotFound => {
                self.storage
                    .create_dir_all(&dir)
                    .map_err(|e| io_err("creating", e))?;
                self.storage
                    .sync_dir(&self.dir)
                    .map_err(|e| io_err("syncing the parent of", e))?;
            }
            Err(e) => return Err(io_err("listing", e)),
        }
        let path = dir.join(file_name(version));
        let bytes = encode(stream, version, event_id, timestamp_nanos, data);
        replace_file(&*self.storage, &path, &bytes).map_err(|e| {
            Error::io_or_no_space(format!("writing snapshot {}", path.display()), e)
        })?;
        self.prune(&dir)
    }

    /// Removes the snapshots of `stream` at `first_version` and above, and
    /// syncs the directory so that the removal survives a crash: their
    /// state may hold what an erasure of the events from `first_version`
    /// on must take out. Returns how many were removed.
    pub fn remove_from(&self, stream: &str, first_version: u64) -> Result<usize> {
        let _serialized = self.locks.lock(stream);
        let dir = self.stream_dir(stream);
        let names = match self.storage.list_dir(&dir) {
            Ok(names) => names,
            Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(0),
            Err(e) => return Err(Error::io(format!("listing {}", dir.display()), e)),
        };
        let doomed: Vec<u64> = names
            .iter()
            .filter_map(|n| parse_file_name(n))
            .filter(|v| *v >= first_version)
            .collect();
        for version in &doomed {
            let path = dir.join(file_name(*version));
            ignore_missing(self.storage.remove_file(&path))
                .map_err(|e| Error::io(format!("removing {}", path.display()), e))?;
        }
        if !doomed.is_empty() {
            self.storage
                .sync_dir(&dir)
                .map_err(|e| Error::io(format!("syncing {}", dir.display()), e))?;
        }
        Ok(doomed.len())
    }

    /// Removes all but the newest `keep` snapshots of a stream directory,
    /// and temporary files left by interrupted saves. Needs no directory
    /// sync: a removal lost in a crash leaves an older valid snapshot, which
    /// the next save prunes again.
    fn prune(&self, dir: &Path) -> Result<()> {
        let names = self
            .storage
            .list_dir(dir)
            .map_err(|e| Error::io(format!("listing {}", dir.display()), e))?;
        let mut versions: Vec<u64> = names.iter().filter_map(|n| parse_file_name(n)).collect();
        versions.sort_unstable_by(|a, b| b.cmp(a));
        let stale = versions.iter().skip(self.keep).map(|v| file_name(*v));
        let temps = names.iter().filter(|n| n.ends_with(TEMP_SUFFIX)).cloned();
        for name in stale.chain(temps) {
            let path = dir.join(&name);
            ignore_missing(self.storage.remove_file(&path))
                .map_err(|e| Error::io(format!("removing {}", path.display()), e))?;
        }
        Ok(())
    }

    /// The newest snapshot of `stream` at or below `max_version` that
    /// decodes and that `check` accepts (`check` returns why it rejects a
    /// file). Rejected files are reported and set aside.
    pub fn load(
        &self,
        stream: &str,
        max_version: u64,
        check: impl Fn(&SnapshotFile) -> Result<Option<String>>,
    ) -> Result<Option<SnapshotFile>> {
        let dir = self.stream_dir(stream);
        // A concurrent save can prune a listed file before it is opened;
        // list again then, since a newer file took its place.
        let mut relists = 0;
        'list: loop {
            let names = match self.storage.list_dir(&dir) {
                Ok(names) => names,
                Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(None),
                Err(e) => return Err(Error::io(format!("listing {}", dir.display()), e)),
            };
            let mut versions: Vec<u64> = names
                .iter()
                .filter_map(|n| parse_file_name(n))
                .filter(|v| *v <= max_version)
                .collect();
            versions.sort_unstable_by(|a, b| b.cmp(a));
            for version in versions {
                let path = dir.join(file_name(version));
                let bytes = match self.read(&path) {
                    Ok(bytes) => bytes,
                    Err(e) if e.kind() == io::ErrorKind::NotFound && relists < MAX_RELISTS => {
                        relists += 1;
                        continue 'list;
                    }
                    Err(e) if e.kind() == io::ErrorKind::NotFound => continue,
                    Err(e) => return Err(Error::io(format!("reading {}", path.display()), e)),
                };
                let verdict = match decode(&path, bytes.clone(), stream, version) {
                    Ok(file) => match check(&file)? {
                        None => return Ok(Some(file)),
                        Some(reason) => Error::corrupted(&path, 0, reason),
                    },
                    Err(error) => error,
                };
                if self.read_only {
                    self.report(stream, version, &path, verdict, true);
                    continue;
                }
                if let Error::UnsupportedFormat { .. } = verdict {
                    // Written by a newer build: not damage, so left in place
                    // for that build, and reported once.
                    self.report(stream, version, &path, verdict, true);
                    continue;
                }
                if !self.set_aside(stream, version, &path, &bytes, verdict) && relists < MAX_RELISTS
                {
                    relists += 1;
                    continue 'list;
                }
            }
            return Ok(None);
        }
    }

    fn read(&self, path: &Path) -> io::Result<Bytes> {
        read_whole_file(&*self.storage, path)
    }

    /// Renames a rejected file out of the way (best effort: if that fails
    /// it is rejected again next time) and records why. Returns false, doing
    /// nothing, if a concurrent save replaced the file since it was read.
    fn set_aside(
        &self,
        stream: &str,
        version: u64,
        path: &Path,
        judged: &[u8],
        error: Error,
    ) -> bool {
        let _serialized = self.locks.lock(stream);
        match self.read(path) {
            Ok(now) if now[..] == *judged => {}
            _ => return false,
        }
        let mut aside = path.as_os_str().to_owned();
        aside.push(DAMAGED_SUFFIX);
        let aside = PathBuf::from(aside);
        let file = match self.storage.rename(path, &aside) {
            Ok(()) => aside,
            Err(_) => path.to_path_buf(),
        };
        self.report(stream, version, &file, error, false);
        true
    }

    fn report(&self, stream: &str, version: u64, file: &Path, error: Error, once: bool) {
        let mut damaged = self.damaged.lock();
        if once && damaged.iter().any(|d| d.file == file) {
            return;
        }
        if damaged.len() >= MAX_REPORTS {
            damaged.remove(0);
        }
        damaged.push(DamagedSnapshot {
            stream: stream.to_string(),
            version,
            file: file.to_path_buf(),
            error,
        });
    }

    /// Snapshot files rejected since the store was opened, oldest first.
    pub fn damaged(&self) -> Vec<DamagedSnapshot> {
        self.damaged.lock().clone()
    }
}

/// What a file in a stream's snapshot directory is, judged by its name.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum StoredName {
    /// The snapshot of this version.
    Snapshot(u64),
    /// A file renamed aside after it failed its checks.
    SetAside,
    /// What an interrupted save left.
    Temporary,
    /// Not the store's.
    Other,
}

/// Classifies a file name found in a stream's snapshot directory.
pub(crate) fn classify_file_name(name: &str) -> StoredName {
    if let Some(version) = parse_file_name(name) {
        StoredName::Snapshot(version)
    } else if name.ends_with(DAMAGED_SUFFIX) {
        StoredName::SetAside
    } else if name.ends_with(TEMP_SUFFIX) {
        StoredName::Temporary
    } else {
        StoredName::Other
    }
}

/// Decodes and verifies a snapshot file found on disk without knowing its
/// stream: the name is taken from the file, so the caller must check that
/// the file sits in that stream's directory. A damage error's offset is at
/// or before the damage.
pub(crate) fn decode_found(
    path: &Path,
    bytes: Bytes,
    version: u64,
) -> Result<(String, SnapshotFile)> {
    let name_len = le_u32(&bytes, 12) as usize;
    let name = bytes
        .get(SNAPSHOT_HEADER_LEN..SNAPSHOT_HEADER_LEN.saturating_add(name_len))
        .map(|name| String::from_utf8_lossy(name).into_owned())
        .unwrap_or_default();
    // The header checksum at offset 56 covers bytes 0..56.
    let file =
        decode(path, bytes, &name, version).map_err(|e| e.checksum_mismatch_from_start(56))?;
    Ok((name, file))
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::indexing_slicing)]
mod tests {
    use super::*;

    #[test]
    fn encode_decode_round_trip_and_every_byte_flip_is_caught() {
        let id = Uuid::from_u128(0x1234_5678_9abc_def0_1122_3344_5566_7788);
        let bytes = encode("order-42", 7, id, 99, b"state bytes");
        let path = Path::new("x.snap");
        let file = decode(path, Bytes::from(bytes.clone()), "order-42", 7).unwrap();
        assert_eq!(
            (file.version, file.event_id, file.timestamp_nanos),
            (7, id, 99)
        );
        assert_eq!(&file.data[..], b"state bytes");
        assert!(decode(path, Bytes::from(bytes.clone()), "order-43", 7).is_err());
        assert!(decode(path, Bytes::from(bytes.clone()), "order-42", 8).is_err());
        for i in 0..bytes.len() {
            for bit in 0..8 {
                let mut damaged = bytes.clone();
                damaged[i] ^= 1 << bit;
                assert!(
                    decode(path, Bytes::from(damaged), "order-42", 7).is_err(),
                    "flip of bit {bit} at byte {i} went unnoticed"
                );
            }
        }
        for len in 0..bytes.len() {
            assert!(decode(path, Bytes::copy_from_slice(&bytes[..len]), "order-42", 7).is_err());
        }
    }

    #[test]
    fn stream_directory_names_are_safe_and_distinct() {
        let names = ["order-1", "Order-1", "a/b", "..", "é", &"x".repeat(300), ""];
        let dirs: Vec<String> = names.iter().map(|n| stream_dir_name(n)).collect();
        for dir in &dirs {
            assert!(dir.len() < 100);
            assert!(!dir.starts_with('.') || dir.len() > 2);
            assert!(dir
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || b"-_.".contains(&b)));
        }
        let mut unique = dirs.clone();
        unique.sort();
        unique.dedup();
        assert_eq!(unique.len(), dirs.len());
        assert_eq!(parse_file_name(&file_name(42)), Some(42));
        assert_eq!(parse_file_name("42.snap"), None);
        assert_eq!(parse_file_name("00000000000000000042.snap.tmp"), None);
    }
}
