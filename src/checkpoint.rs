//! Durable checkpoints: a named position in the global log, saved
//! atomically.
//!
//! `checkpoints/<name stem>.ckpt`, all integers little-endian:
//!
//! | offset | size | field |
//! |---|---|---|
//! | 0 | 8 | magic `EVCKPT\0\x01` |
//! | 8 | 4 | format version (1) |
//! | 12 | 4 | name length `n` |
//! | 16 | 8 | position |
//! | 24 | 8 | saved at, nanoseconds since the Unix epoch |
//! | 32 | 16 | id of the event before the position (zero at position 0) |
//! | 48 | 4 | CRC32 of bytes 0..48 and the name |
//! | 52 | n | name (UTF-8) |
//!
//! The event id ties the checkpoint to the log it was taken on: if a crash
//! lost events a projection had already seen (it followed written, not
//! durable, events), the position no longer follows the same event, and the
//! projection restarts where the recovered log ended.

use crate::error::{Error, Result};
use crate::log::now_nanos;
use crate::storage::{name_stem, read_whole_file, replace_file, NameLocks, Storage};
use std::io;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use uuid::Uuid;

pub use crate::layout::CHECKPOINTS_DIR;
/// Magic bytes opening every checkpoint file.
pub const CHECKPOINT_MAGIC: [u8; 8] = *b"EVCKPT\0\x01";
/// The checkpoint format version this build reads and writes.
pub const CHECKPOINT_FORMAT_VERSION: u32 = 1;
/// Bytes before the name in a checkpoint file.
pub const CHECKPOINT_HEADER_LEN: usize = 52;
const HEADER_LEN: usize = CHECKPOINT_HEADER_LEN;
/// Longest checkpoint name accepted, in bytes.
pub const MAX_CHECKPOINT_NAME_LEN: usize = 256;

#[derive(Debug)]
pub(crate) struct Checkpoints {
    storage: Arc<dyn Storage>,
    dir: PathBuf,
    locks: NameLocks,
}

fn encode(name: &str, position: u64, saved_at: u64, previous_id: Uuid) -> Vec<u8> {
    let mut out = Vec::with_capacity(HEADER_LEN + name.len());
    out.extend_from_slice(&CHECKPOINT_MAGIC);
    out.extend_from_slice(&CHECKPOINT_FORMAT_VERSION.to_le_bytes());
    #[expect(
        clippy::cast_possible_truncation,
        reason = "names are validated to at most MAX_CHECKPOINT_NAME_LEN bytes"
    )]
    out.extend_from_slice(&(name.len() as u32).to_le_bytes());
    out.extend_from_slice(&position.to_le_bytes());
    out.extend_from_slice(&saved_at.to_le_bytes());
    out.extend_from_slice(&previous_id.as_u128().to_le_bytes());
    let mut crc = crc32fast::Hasher::new();
    crc.update(&out);
    crc.update(name.as_bytes());
    out.extend_from_slice(&crc.finalize().to_le_bytes());
    out.extend_from_slice(name.as_bytes());
    out
}

/// The `N` bytes at `at` of a checkpoint's header.
fn field<const N: usize>(header: &[u8; HEADER_LEN], at: usize) -> [u8; N] {
    let mut word = [0u8; N];
    let src = header.get(at..at + N);
    debug_assert!(src.is_some(), "field at {at} is past the header");
    if let Some(src) = src {
        word.copy_from_slice(src);
    }
    word
}

fn decode(path: &Path, bytes: &[u8], name: &str) -> Result<(u64, Uuid)> {
    let corrupted = |offset: u64, reason: String| Error::corrupted(path, offset, reason);
    let Some((header, stored_name)) = bytes
        .split_first_chunk::<HEADER_LEN>()
        .filter(|(header, _)| header[..8] == CHECKPOINT_MAGIC)
    else {
        return Err(corrupted(
            0,
            "not a checkpoint file (short, or bad magic)".into(),
        ));
    };
    let name_len = u32::from_le_bytes(field(header, 12));
    if usize::try_from(name_len) != Ok(stored_name.len()) {
        return Err(corrupted(
            12,
            format!(
                "the header promises a {name_len}-byte name but the file holds {} bytes after the header",
                stored_name.len()
            ),
        ));
    }
    let mut crc = crc32fast::Hasher::new();
    crc.update(&header[..48]);
    crc.update(stored_name);
    if crc.finalize() != u32::from_le_bytes(field(header, 48)) {
        return Err(corrupted(48, "checksum mismatch".into()));
    }
    let format = u32::from_le_bytes(field(header, 8));
    if format != CHECKPOINT_FORMAT_VERSION {
        return Err(Error::UnsupportedFormat {
            file: path.to_path_buf(),
            found: format,
            supported: CHECKPOINT_FORMAT_VERSION,
        });
    }
    if stored_name != name.as_bytes() {
        return Err(corrupted(
            HEADER_LEN as u64,
            format!("holds the checkpoint of another name, not '{name}'"),
        ));
    }
    Ok((
        u64::from_le_bytes(field(header, 16)),
        Uuid::from_u128(u128::from_le_bytes(field(header, 32))),
    ))
}

pub(crate) fn validate_name(name: &str) -> Result<()> {
    let reason = if name.is_empty() {
        "empty".to_string()
    } else if name.len() > MAX_CHECKPOINT_NAME_LEN {
        format!("longer than {MAX_CHECKPOINT_NAME_LEN} bytes")
    } else if name.chars().any(char::is_control) {
        "control characters are not allowed".to_string()
    } else {
        return Ok(());
    };
    Err(Error::InvalidCheckpointName {
        name: name.to_string(),
        reason,
    })
}

impl Checkpoints {
    pub fn new(storage: Arc<dyn Storage>, dir: PathBuf) -> Self {
        Checkpoints {
            storage,
            dir,
            locks: NameLocks::new(16),
        }
    }

    fn path(&self, name: &str) -> PathBuf {
        self.dir.join(format!("{}.ckpt", name_stem(name)))
    }

    pub fn save(&self, name: &str, position: u64, previous_id: Uuid) -> Result<()> {
        validate_name(name)?;
        let path = self.path(name);
        let _serialized = self.locks.lock(name);
        let bytes = encode(name, position, now_nanos(), previous_id);
        replace_file(&*self.storage, &path, &bytes)
            .map_err(|e| Error::io_or_no_space(format!("writing checkpoint {}", path.display()), e))
    }

    pub fn load(&self, name: &str) -> Result<Option<(u64, Uuid)>> {
        validate_name(name)?;
        let path = self.path(name);
        let bytes = match read_whole_file(&*self.storage, &path) {
            Ok(bytes) => bytes,
            Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(None),
            Err(e) => return Err(Error::io(format!("reading {}", path.display()), e)),
        };
        decode(&path, &bytes, name).map(Some)
    }
}

impl Checkpoints {
    /// Every checkpoint saved, as (name, position), in name order.
    /// Temporary files of saves under way are skipped; a file that does not
    /// decode, or holds a name saved under another file name, is an error.
    pub fn list(&self) -> Result<Vec<(String, u64)>> {
        let names = match self.storage.list_dir(&self.dir) {
            Ok(names) => names,
            Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(Vec::new()),
            Err(e) => return Err(Error::io(format!("listing {}", self.dir.display()), e)),
        };
        let mut saved = Vec::new();
        // Saved names always end in lower-case `.ckpt` (see `file_name`).
        let saved_file = |n: &&String| Path::new(n.as_str()).extension() == Some("ckpt".as_ref());
        for file in names.iter().filter(saved_file) {
            let path = self.dir.join(file);
            let bytes = read_whole_file(&*self.storage, &path)
                .map_err(|e| Error::io(format!("reading {}", path.display()), e))?;
            let (name, position, _) = decode_found(&path, &bytes)?;
            if file_name(&name) != *file {
                return Err(Error::corrupted(
                    &path,
                    HEADER_LEN as u64,
                    "holds a checkpoint saved under another file name",
                ));
            }
            saved.push((name, position));
        }
        saved.sort();
        Ok(saved)
    }
}

/// The file name the checkpoint `name` is saved under.
pub(crate) fn file_name(name: &str) -> String {
    format!("{}.ckpt", name_stem(name))
}

/// Decodes and verifies a checkpoint file found on disk without knowing its
/// name: the name is taken from the file, so the caller must check that the
/// file is the one [`file_name`] gives for it. Returns the name, the
/// position and the id of the event before the position. A damage error's
/// offset is at or before the damage.
pub(crate) fn decode_found(path: &Path, bytes: &[u8]) -> Result<(String, u64, Uuid)> {
    let name = bytes
        .get(HEADER_LEN..)
        .map(|name| String::from_utf8_lossy(name).into_owned())
        .unwrap_or_default();
    // The checksum at offset 48 covers the whole file but itself.
    let (position, previous_id) =
        decode(path, bytes, &name).map_err(|e| e.checksum_mismatch_from_start(48))?;
    Ok((name, position, previous_id))
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::indexing_slicing)]
mod tests {
    use super::*;

    #[test]
    fn every_bit_flip_and_truncation_is_caught() {
        let id = Uuid::from_u128(7 << 64 | 9);
        let bytes = encode("read-model", 987_654, 42, id);
        let path = Path::new("x.ckpt");
        assert_eq!(decode(path, &bytes, "read-model").unwrap(), (987_654, id));
        assert!(decode(path, &bytes, "read-modem").is_err());
        for i in 0..bytes.len() * 8 {
            let mut damaged = bytes.clone();
            damaged[i / 8] ^= 1 << (i % 8);
            assert!(decode(path, &damaged, "read-model").is_err(), "bit {i}");
        }
        for len in 0..bytes.len() {
            assert!(decode(path, &bytes[..len], "read-model").is_err());
        }
    }
}
