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
//! | 32 | 4 | CRC32 of bytes 0..32 and the name |
//! | 36 | n | name (UTF-8) |

use crate::error::{Error, Result};
use crate::log::segment::now_nanos;
use crate::storage::{name_stem, replace_file, NameLocks, Storage};
use crate::store::Store;
use std::io;
use std::path::{Path, PathBuf};
use std::sync::Arc;

/// Name of the directory holding checkpoints inside a store directory.
pub const CHECKPOINTS_DIR: &str = "checkpoints";
/// Magic bytes opening every checkpoint file.
pub const CHECKPOINT_MAGIC: [u8; 8] = *b"EVCKPT\0\x01";
/// The checkpoint format version this build reads and writes.
pub const CHECKPOINT_FORMAT_VERSION: u32 = 1;
const HEADER_LEN: usize = 36;
/// Longest checkpoint name accepted, in bytes.
pub const MAX_CHECKPOINT_NAME_LEN: usize = 256;

#[derive(Debug)]
pub(crate) struct Checkpoints {
    storage: Arc<dyn Storage>,
    dir: PathBuf,
    locks: NameLocks,
}

fn encode(name: &str, position: u64, saved_at: u64) -> Vec<u8> {
    let mut out = Vec::with_capacity(HEADER_LEN + name.len());
    out.extend_from_slice(&CHECKPOINT_MAGIC);
    out.extend_from_slice(&CHECKPOINT_FORMAT_VERSION.to_le_bytes());
    out.extend_from_slice(&(name.len() as u32).to_le_bytes());
    out.extend_from_slice(&position.to_le_bytes());
    out.extend_from_slice(&saved_at.to_le_bytes());
    let mut crc = crc32fast::Hasher::new();
    crc.update(&out);
    crc.update(name.as_bytes());
    out.extend_from_slice(&crc.finalize().to_le_bytes());
    out.extend_from_slice(name.as_bytes());
    out
}

fn field<const N: usize>(bytes: &[u8], at: usize) -> [u8; N] {
    let mut word = [0u8; N];
    if let Some(src) = bytes.get(at..at + N) {
        word.copy_from_slice(src);
    }
    word
}

fn decode(path: &Path, bytes: &[u8], name: &str) -> Result<u64> {
    let corrupted = |offset: u64, reason: String| Error::corrupted(path, offset, reason);
    if bytes.len() < HEADER_LEN || bytes.get(..8) != Some(&CHECKPOINT_MAGIC[..]) {
        return Err(corrupted(
            0,
            "not a checkpoint file (short, or bad magic)".into(),
        ));
    }
    let name_len = u32::from_le_bytes(field(bytes, 12)) as usize;
    if bytes.len() != HEADER_LEN + name_len {
        return Err(corrupted(
            12,
            format!(
                "the header promises a {name_len}-byte name but the file holds {} bytes after the header",
                bytes.len() - HEADER_LEN
            ),
        ));
    }
    let mut crc = crc32fast::Hasher::new();
    crc.update(bytes.get(..32).unwrap_or_default());
    crc.update(bytes.get(HEADER_LEN..).unwrap_or_default());
    if crc.finalize() != u32::from_le_bytes(field(bytes, 32)) {
        return Err(corrupted(32, "checksum mismatch".into()));
    }
    let format = u32::from_le_bytes(field(bytes, 8));
    if format != CHECKPOINT_FORMAT_VERSION {
        return Err(Error::UnsupportedFormat {
            file: path.to_path_buf(),
            found: format,
            supported: CHECKPOINT_FORMAT_VERSION,
        });
    }
    if bytes.get(HEADER_LEN..) != Some(name.as_bytes()) {
        return Err(corrupted(
            HEADER_LEN as u64,
            format!("holds the checkpoint of another name, not '{name}'"),
        ));
    }
    Ok(u64::from_le_bytes(field(bytes, 16)))
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

    pub fn save(&self, name: &str, position: u64) -> Result<()> {
        validate_name(name)?;
        let path = self.path(name);
        let _serialized = self.locks.lock(name);
        replace_file(&*self.storage, &path, &encode(name, position, now_nanos()))
            .map_err(|e| Error::io(format!("writing checkpoint {}", path.display()), e))
    }

    pub fn load(&self, name: &str) -> Result<Option<u64>> {
        validate_name(name)?;
        let path = self.path(name);
        let file = match self.storage.open_file(&path, false) {
            Ok(file) => file,
            Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(None),
            Err(e) => return Err(Error::io(format!("opening {}", path.display()), e)),
        };
        let read = || -> io::Result<bytes::Bytes> {
            let len = usize::try_from(file.len()?)
                .map_err(|_| io::Error::new(io::ErrorKind::InvalidData, "file too large"))?;
            if len == 0 {
                return Ok(bytes::Bytes::new());
            }
            file.read_view(0, len)
        };
        let bytes = read().map_err(|e| Error::io(format!("reading {}", path.display()), e))?;
        decode(&path, &bytes, name).map(Some)
    }
}

/// Checkpoints.
impl Store {
    /// Durably records `position` under `name`: written beside its final
    /// name, synced, renamed into place and the directory synced, so a crash
    /// leaves the previous checkpoint or this one. Use it for a projection's
    /// progress: the position of the first event it has not yet handled.
    ///
    /// ```
    /// use evstore::{Options, Store};
    /// # let dir = tempfile::tempdir().unwrap();
    /// let store = Store::open(dir.path(), Options::default()).unwrap();
    /// assert_eq!(store.load_checkpoint("balances").unwrap(), None);
    /// store.save_checkpoint("balances", 1200).unwrap();
    /// assert_eq!(store.load_checkpoint("balances").unwrap(), Some(1200));
    /// ```
    pub fn save_checkpoint(&self, name: &str, position: u64) -> Result<()> {
        self.checkpoints().save(name, position)
    }

    /// The position last saved under `name`, or `None`. A damaged
    /// checkpoint file is an [`Error::Corrupted`], never a silent restart
    /// from the beginning.
    pub fn load_checkpoint(&self, name: &str) -> Result<Option<u64>> {
        self.checkpoints().load(name)
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    #[test]
    fn every_bit_flip_and_truncation_is_caught() {
        let bytes = encode("read-model", 987_654, 42);
        let path = Path::new("x.ckpt");
        assert_eq!(decode(path, &bytes, "read-model").unwrap(), 987_654);
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
