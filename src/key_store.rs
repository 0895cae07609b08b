//! The keys payloads are sealed with, one per subject, in one small file
//! outside the log: forgetting a subject rewrites the file without its key,
//! after which its events' payloads can never be opened again.
//!
//! `keys/subjects.keys`, all integers little-endian. A header:
//!
//! | offset | size | field |
//! |--:|--:|---|
//! | 0 | 8 | magic `EVKEYS\0\x01` |
//! | 8 | 4 | format version (2; 1 in stores made before version 2) |
//! | 12 | 4 | CRC32 of bytes 0..12 |
//!
//! then one entry per subject, appended (and synced) when the subject's
//! first event is sealed, and one per key forgotten:
//!
//! | offset | size | field |
//! |--:|--:|---|
//! | 0 | 4 | CRC32 of bytes 4..48 + n |
//! | 4 | 2 | subject length `n` |
//! | 6 | 2 | zero |
//! | 8 | 8 | key id |
//! | 16 | 32 | key |
//! | 48 | n | subject (UTF-8) |
//!
//! An entry with an empty subject (`n` = 0, the key all zero) records that
//! the key with its id was forgotten: no subject is empty, and it keeps
//! nothing of the subject. With it, an event sealed with a key the file does
//! not hold is either forgotten (its key id is recorded) or evidence that
//! the file was damaged or replaced, which reads report instead of handing
//! the event out as erased. A version-1 file never recorded forgotten keys,
//! so there a missing key still reads as forgotten; it stays version 1 when
//! rewritten.
//!
//! Only the last entry can be torn (entries are appended one at a time and
//! synced before any event sealed with them is written): an entry that runs
//! past the end of the file, or fails its check with nothing after it, is
//! dropped; one that fails with entries after it is damage.

use crate::error::{Error, Result};
use crate::storage::{child, read_whole_file, replace_file, Storage, StorageFile};
use parking_lot::Mutex;
use std::collections::HashMap;
use std::io;
use std::path::{Path, PathBuf};
use std::sync::Arc;

/// The directory of the key store, inside the store's directory.
pub const KEYS_DIR: &str = "keys";
/// The key store's file name.
pub const KEYS_FILE: &str = "subjects.keys";
/// The first bytes of the key store.
pub const KEYS_MAGIC: [u8; 8] = *b"EVKEYS\0\x01";
/// The key store's format version.
pub const KEYS_FORMAT_VERSION: u32 = 2;
/// The first format version, which did not record forgotten keys.
const KEYS_FORMAT_VERSION_1: u32 = 1;
const HEADER_LEN: usize = 16;
const ENTRY_FIXED_LEN: usize = 48;

/// A subject's key.
#[derive(Clone, Copy, PartialEq, Eq)]
pub struct SubjectKey {
    /// Tells this key from an earlier one of the same subject.
    pub id: u64,
    /// The key.
    pub key: [u8; 32],
}

impl std::fmt::Debug for SubjectKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // Never print a key.
        f.debug_struct("SubjectKey")
            .field("id", &self.id)
            .finish_non_exhaustive()
    }
}

/// The keys of every subject not forgotten.
#[derive(Debug)]
pub struct KeyStore {
    storage: Arc<dyn Storage>,
    path: PathBuf,
    writable: bool,
    state: Mutex<Keys>,
    /// Counts the changes that may have removed keys (a forget, a reload).
    removals: std::sync::atomic::AtomicU64,
}

/// What the key store says of the key that sealed an event.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum KeyFate {
    /// The key, which opens the event.
    Held(SubjectKey),
    /// Forgotten: the event reads as erased.
    Forgotten,
    /// Neither held nor recorded as forgotten: the key store was damaged
    /// or replaced.
    Missing,
}

#[derive(Debug, Default)]
struct Keys {
    by_subject: HashMap<String, SubjectKey>,
    /// Ids of the keys forgotten.
    forgotten: std::collections::BTreeSet<u64>,
    /// The file's format version (the current one when there is no file).
    version: u32,
    /// Where the next entry goes.
    end: u64,
    /// The file's length when it was read or last written (more than `end`
    /// after a torn entry).
    len_on_disk: u64,
    /// The file, open for appends (a writable store, once it exists).
    file: Option<Box<dyn StorageFile>>,
}

impl KeyStore {
    /// Loads the key store of the store in `dir` (empty if it has none).
    ///
    /// # Errors
    ///
    /// [`Error::Corrupted`] if the file is damaged anywhere but a torn last
    /// entry; [`Error::Io`] if it cannot be read.
    pub fn open(storage: Arc<dyn Storage>, dir: &Path, writable: bool) -> Result<Self> {
        let path = child(&child(dir, KEYS_DIR), KEYS_FILE);
        let store = KeyStore {
            storage,
            path,
            writable,
            state: Mutex::new(Keys::default()),
            removals: std::sync::atomic::AtomicU64::new(0),
        };
        store.reload()?;
        Ok(store)
    }

    /// Reads the file again (a read-only store following a writer that
    /// forgot subjects).
    ///
    /// # Errors
    ///
    /// As [`KeyStore::open`].
    pub fn reload(&self) -> Result<()> {
        let (decoded, len_on_disk) = read_file(self.storage.as_ref(), &self.path)?;
        let mut state = self.state.lock();
        state.by_subject = decoded.by_subject;
        state.forgotten = decoded.forgotten;
        state.version = decoded.version;
        state.end = decoded.end;
        state.len_on_disk = len_on_disk;
        state.file = None;
        self.removals
            .fetch_add(1, std::sync::atomic::Ordering::AcqRel);
        Ok(())
    }

    /// Changes so far that may have removed a key: if this is unchanged,
    /// no key was removed meanwhile.
    pub fn removals(&self) -> u64 {
        self.removals.load(std::sync::atomic::Ordering::Acquire)
    }

    /// The key of `subject`, if it has one.
    #[cfg(test)]
    pub fn get(&self, subject: &str) -> Option<SubjectKey> {
        self.state.lock().by_subject.get(subject).copied()
    }

    /// What became of the key with id `key_id` that sealed an event of
    /// `subject`.
    pub fn fate(&self, subject: &str, key_id: u64) -> KeyFate {
        let look = || {
            let state = self.state.lock();
            fate(
                &state.by_subject,
                &state.forgotten,
                state.version,
                subject,
                key_id,
            )
        };
        let known = look();
        if known != KeyFate::Missing || self.writable {
            return known;
        }
        // A read-only store follows a writer that may have made the key
        // (or forgotten it) since this file was read: read it again. Only
        // a damaged key store misses every time, and then reads are errors.
        if self.reload().is_err() {
            return KeyFate::Missing;
        }
        look()
    }

    /// The key of `subject`, made (and synced to the file) if it has none.
    ///
    /// # Errors
    ///
    /// [`Error::ReadOnly`] in a read-only store; [`Error::Io`] if the file
    /// cannot be written or synced, or no random key can be drawn.
    pub fn get_or_create(&self, subject: &str) -> Result<SubjectKey> {
        let mut state = self.state.lock();
        if let Some(key) = state.by_subject.get(subject) {
            return Ok(*key);
        }
        if !self.writable {
            return Err(Error::ReadOnly {
                operation: "seal an event for a new subject",
            });
        }
        let mut random = [0u8; 40];
        getrandom::fill(&mut random)
            .map_err(|e| Error::io("drawing a key", io::Error::other(e.to_string())))?;
        let (id, key) = random.split_at(8);
        let key = SubjectKey {
            id: u64::from_le_bytes(id.try_into().unwrap_or_default()),
            key: key.try_into().unwrap_or_default(),
        };
        let entry = encode_entry(subject, &key)?;
        if state.file.is_none() && (state.end == 0 || state.end != state.len_on_disk) {
            // No file yet, or a torn entry after the last whole one: the
            // file is written whole, by rename, rather than appended to.
            state.by_subject.insert(subject.to_string(), key);
            if let Err(error) = self.rewrite(&mut state) {
                state.by_subject.remove(subject);
                return Err(error);
            }
            return Ok(key);
        }
        let io_error = |e| Error::io(format!("writing {}", self.path.display()), e);
        if state.file.is_none() {
            state.file = Some(
                self.storage
                    .open_file(&self.path, false)
                    .map_err(io_error)?,
            );
        }
        let end = state.end;
        if let Some(file) = state.file.as_ref() {
            file.write_all_at(&entry, end)
                .and_then(|()| file.sync_data())
                .map_err(io_error)?;
        }
        state.end = end + entry.len() as u64;
        state.len_on_disk = state.end;
        state.by_subject.insert(subject.to_string(), key);
        Ok(key)
    }

    /// Writes the file whole from `state`'s keys: a synced temporary file
    /// renamed over the old one, then the directory synced.
    fn rewrite(&self, state: &mut Keys) -> Result<()> {
        let mut bytes = header(state.version);
        let mut kept: Vec<(&String, &SubjectKey)> = state.by_subject.iter().collect();
        kept.sort_by(|a, b| a.0.cmp(b.0));
        for (name, key) in kept {
            bytes.extend_from_slice(&encode_entry(name, key)?);
        }
        for &id in &state.forgotten {
            let gone = SubjectKey { id, key: [0; 32] };
            bytes.extend_from_slice(&encode_entry("", &gone)?);
        }
        let io_error = |e| Error::io(format!("rewriting {}", self.path.display()), e);
        self.storage
            .create_dir_all(self.path.parent().unwrap_or_else(|| Path::new(".")))
            .map_err(io_error)?;
        replace_file(self.storage.as_ref(), &self.path, &bytes).map_err(io_error)?;
        state.end = bytes.len() as u64;
        state.len_on_disk = state.end;
        // The old file is gone from the directory; appends go to the new one.
        state.file = None;
        Ok(())
    }

    /// Destroys the key of `subject`: the file is rewritten without it and
    /// the rewrite synced before this returns. True if it had one.
    ///
    /// # Errors
    ///
    /// [`Error::ReadOnly`] in a read-only store; [`Error::Io`] if the file
    /// cannot be replaced (the key is then kept).
    pub fn forget(&self, subject: &str) -> Result<bool> {
        if !self.writable {
            return Err(Error::ReadOnly {
                operation: "forget a subject",
            });
        }
        let mut state = self.state.lock();
        let Some(key) = state.by_subject.remove(subject) else {
            return Ok(false);
        };
        let newly_forgotten = state.forgotten.insert(key.id);
        // Counted before the key is gone from the file: a scavenge that
        // read the count before sees it change.
        self.removals
            .fetch_add(1, std::sync::atomic::Ordering::AcqRel);
        if let Err(error) = self.rewrite(&mut state) {
            state.by_subject.insert(subject.to_string(), key);
            if newly_forgotten {
                state.forgotten.remove(&key.id);
            }
            return Err(error);
        }
        Ok(true)
    }
}

/// The key store file at `path` decoded, and its length: empty, of the
/// current version, if there is no file.
fn read_file(storage: &dyn Storage, path: &Path) -> Result<(Decoded, u64)> {
    let bytes = match read_whole_file(storage, path) {
        Ok(bytes) => bytes,
        Err(e) if e.kind() == io::ErrorKind::NotFound => bytes::Bytes::new(),
        Err(e) => return Err(Error::io(format!("reading {}", path.display()), e)),
    };
    if bytes.is_empty() {
        let empty = Decoded {
            version: KEYS_FORMAT_VERSION,
            ..Decoded::default()
        };
        return Ok((empty, 0));
    }
    let decoded =
        decode(&bytes).map_err(|(offset, reason)| Error::corrupted(path, offset, reason))?;
    Ok((decoded, bytes.len() as u64))
}

/// What became of the key with id `key_id` that sealed an event of
/// `subject`, given what a key store file holds.
fn fate(
    by_subject: &HashMap<String, SubjectKey>,
    forgotten: &std::collections::BTreeSet<u64>,
    version: u32,
    subject: &str,
    key_id: u64,
) -> KeyFate {
    match by_subject.get(subject) {
        Some(key) if key.id == key_id => KeyFate::Held(*key),
        _ if forgotten.contains(&key_id) => KeyFate::Forgotten,
        // A version-1 file did not record forgotten keys.
        _ if version == KEYS_FORMAT_VERSION_1 => KeyFate::Forgotten,
        _ => KeyFate::Missing,
    }
}

/// The key store of the store in `dir`, read once for a check of the
/// store (`verify`): what became of each key that sealed an event.
#[derive(Debug)]
pub(crate) struct KeySet(Decoded);

impl KeySet {
    /// Reads it; empty (of the current version) if there is no file.
    ///
    /// # Errors
    ///
    /// As [`KeyStore::open`].
    pub(crate) fn read(storage: &dyn Storage, dir: &Path) -> Result<KeySet> {
        let path = child(&child(dir, KEYS_DIR), KEYS_FILE);
        read_file(storage, &path).map(|(decoded, _)| KeySet(decoded))
    }

    /// See [`KeyStore::fate`].
    pub(crate) fn fate(&self, subject: &str, key_id: u64) -> KeyFate {
        fate(
            &self.0.by_subject,
            &self.0.forgotten,
            self.0.version,
            subject,
            key_id,
        )
    }
}

fn header(version: u32) -> Vec<u8> {
    let mut out = Vec::with_capacity(HEADER_LEN);
    out.extend_from_slice(&KEYS_MAGIC);
    out.extend_from_slice(&version.to_le_bytes());
    let crc = crc32fast::hash(&out);
    out.extend_from_slice(&crc.to_le_bytes());
    out
}

fn encode_entry(subject: &str, key: &SubjectKey) -> Result<Vec<u8>> {
    let len = u16::try_from(subject.len()).map_err(|_| Error::InvalidRequest {
        what: "seal",
        reason: format!("subject of {} bytes is too long", subject.len()),
    })?;
    let mut out = Vec::with_capacity(ENTRY_FIXED_LEN + subject.len());
    out.extend_from_slice(&[0; 4]);
    out.extend_from_slice(&len.to_le_bytes());
    out.extend_from_slice(&[0; 2]);
    out.extend_from_slice(&key.id.to_le_bytes());
    out.extend_from_slice(&key.key);
    out.extend_from_slice(subject.as_bytes());
    let crc = crc32fast::hash(out.get(4..).unwrap_or_default());
    if let Some(slot) = out.get_mut(..4) {
        slot.copy_from_slice(&crc.to_le_bytes());
    }
    Ok(out)
}

/// What a key store file holds.
#[derive(Debug, Default)]
struct Decoded {
    by_subject: HashMap<String, SubjectKey>,
    forgotten: std::collections::BTreeSet<u64>,
    version: u32,
    /// Where its next entry goes.
    end: u64,
}

/// The keys in a key store file and where its next entry goes, or where and
/// why it is damaged.
fn decode(bytes: &[u8]) -> std::result::Result<Decoded, (u64, &'static str)> {
    let header = bytes
        .get(..HEADER_LEN)
        .ok_or((0, "key store header is cut short"))?;
    if header.get(..8) != Some(&KEYS_MAGIC[..]) {
        return Err((0, "not a key store (bad magic)"));
    }
    if header.get(12..16)
        != Some(&crc32fast::hash(header.get(..12).unwrap_or_default()).to_le_bytes()[..])
    {
        return Err((0, "key store header checksum mismatch"));
    }
    let version = header
        .get(8..12)
        .and_then(|v| v.try_into().ok())
        .map(u32::from_le_bytes)
        .filter(|v| (KEYS_FORMAT_VERSION_1..=KEYS_FORMAT_VERSION).contains(v))
        .ok_or((8, "unsupported key store version"))?;
    let mut keys = HashMap::new();
    let mut forgotten = std::collections::BTreeSet::new();
    let mut at = HEADER_LEN;
    while at < bytes.len() {
        let rest = bytes.get(at..).unwrap_or_default();
        let word = |from: usize, to: usize| rest.get(from..to).unwrap_or_default();
        let name_len = word(4, 6)
            .try_into()
            .map(u16::from_le_bytes)
            .map(usize::from);
        let whole = name_len
            .ok()
            .map(|n| ENTRY_FIXED_LEN + n)
            .filter(|&n| n <= rest.len());
        let Some(len) = whole else {
            // Runs past the end: the torn last entry.
            break;
        };
        let entry = rest.get(..len).unwrap_or_default();
        let stored = word(0, 4);
        let sound = stored == crc32fast::hash(entry.get(4..).unwrap_or_default()).to_le_bytes()
            && word(6, 8) == [0, 0];
        if !sound {
            if at + len == bytes.len() {
                break;
            }
            return Err((at as u64, "key store entry checksum mismatch"));
        }
        let id = u64::from_le_bytes(word(8, 16).try_into().unwrap_or_default());
        let key: [u8; 32] = word(16, 48).try_into().unwrap_or_default();
        let subject = std::str::from_utf8(entry.get(ENTRY_FIXED_LEN..).unwrap_or_default())
            .map_err(|_| (at as u64, "key store subject is not UTF-8"))?;
        if subject.is_empty() {
            forgotten.insert(id);
        } else {
            keys.insert(subject.to_string(), SubjectKey { id, key });
        }
        at += len;
    }
    Ok(Decoded {
        by_subject: keys,
        forgotten,
        version,
        end: at as u64,
    })
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::indexing_slicing)]
mod tests {
    use super::*;
    use crate::storage::OsStorage;

    fn open(dir: &Path) -> KeyStore {
        KeyStore::open(Arc::new(OsStorage), dir, true).unwrap()
    }

    #[test]
    fn keys_survive_a_reopen_and_a_forgotten_one_is_gone_from_the_file() {
        let dir = tempfile::tempdir().unwrap();
        let store = open(dir.path());
        let a = store.get_or_create("a").unwrap();
        let b = store.get_or_create("b").unwrap();
        assert_eq!(store.get_or_create("a").unwrap(), a);
        assert_ne!(a.key, b.key);
        let reopened = open(dir.path());
        assert_eq!((reopened.get("a"), reopened.get("b")), (Some(a), Some(b)));
        assert!(reopened.forget("a").unwrap());
        assert!(!reopened.forget("a").unwrap());
        let file = std::fs::read(dir.path().join(KEYS_DIR).join(KEYS_FILE)).unwrap();
        assert!(
            !file.windows(32).any(|w| w == a.key),
            "the key's bytes are gone"
        );
        // Appends after a rewrite go to the new file.
        let c = reopened.get_or_create("c").unwrap();
        let again = open(dir.path());
        assert_eq!(
            (again.get("a"), again.get("b"), again.get("c")),
            (None, Some(b), Some(c))
        );
        // A new key for a forgotten subject is another key.
        let a2 = again.get_or_create("a").unwrap();
        assert_ne!(a2.id, a.id);
    }

    #[test]
    fn a_forgotten_key_is_recorded_by_id_alone_and_any_other_missing_key_is_missing() {
        let dir = tempfile::tempdir().unwrap();
        let store = open(dir.path());
        let kept = store.get_or_create("kept@example.com").unwrap();
        let gone = store.get_or_create("gone@example.com").unwrap();
        assert!(store.forget("gone@example.com").unwrap());
        let file = std::fs::read(dir.path().join(KEYS_DIR).join(KEYS_FILE)).unwrap();
        assert!(!file.windows(16).any(|w| w == b"gone@example.com"));
        assert!(!file.windows(32).any(|w| w == gone.key));
        for store in [store, open(dir.path())] {
            assert_eq!(store.fate("kept@example.com", kept.id), KeyFate::Held(kept));
            assert_eq!(store.fate("gone@example.com", gone.id), KeyFate::Forgotten);
            assert_eq!(
                store.fate("kept@example.com", kept.id ^ 1),
                KeyFate::Missing
            );
            assert_eq!(store.fate("never@example.com", 7), KeyFate::Missing);
        }
        let set = KeySet::read(&OsStorage, dir.path()).unwrap();
        assert_eq!(set.fate("gone@example.com", gone.id), KeyFate::Forgotten);
        assert_eq!(set.fate("never@example.com", 7), KeyFate::Missing);
    }

    #[test]
    fn a_version_1_file_reads_a_missing_key_as_forgotten_and_stays_version_1() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join(KEYS_DIR).join(KEYS_FILE);
        std::fs::create_dir_all(path.parent().unwrap()).unwrap();
        let key = SubjectKey {
            id: 42,
            key: [9; 32],
        };
        let mut bytes = header(KEYS_FORMAT_VERSION_1);
        bytes.extend_from_slice(&encode_entry("a", &key).unwrap());
        std::fs::write(&path, &bytes).unwrap();
        let store = open(dir.path());
        assert_eq!(store.fate("a", 42), KeyFate::Held(key));
        assert_eq!(store.fate("b", 1), KeyFate::Forgotten);
        assert!(store.forget("a").unwrap());
        store.get_or_create("c").unwrap();
        let file = std::fs::read(&path).unwrap();
        assert_eq!(&file[8..12], &KEYS_FORMAT_VERSION_1.to_le_bytes());
        assert_eq!(open(dir.path()).fate("a", 42), KeyFate::Forgotten);
        // A store without a file starts at the current version.
        let fresh = tempfile::tempdir().unwrap();
        let store = open(fresh.path());
        assert_eq!(store.fate("b", 1), KeyFate::Missing);
        store.get_or_create("b").unwrap();
        let file = std::fs::read(fresh.path().join(KEYS_DIR).join(KEYS_FILE)).unwrap();
        assert_eq!(&file[8..12], &KEYS_FORMAT_VERSION.to_le_bytes());
    }

    #[test]
    fn a_torn_last_entry_is_dropped_and_damage_before_it_is_reported() {
        let dir = tempfile::tempdir().unwrap();
        let store = open(dir.path());
        store.get_or_create("first").unwrap();
        store.get_or_create("second").unwrap();
        let path = dir.path().join(KEYS_DIR).join(KEYS_FILE);
        let whole = std::fs::read(&path).unwrap();
        for cut in HEADER_LEN + ENTRY_FIXED_LEN + 5 + 1..whole.len() {
            std::fs::write(&path, &whole[..cut]).unwrap();
            let torn = open(dir.path());
            assert!(
                torn.get("first").is_some() && torn.get("second").is_none(),
                "cut {cut}"
            );
        }
        let mut damaged = whole.clone();
        damaged[HEADER_LEN + ENTRY_FIXED_LEN] ^= 1;
        std::fs::write(&path, &damaged).unwrap();
        let error = KeyStore::open(Arc::new(OsStorage), dir.path(), true).unwrap_err();
        assert!(matches!(error, Error::Corrupted { .. }), "{error:?}");
    }
}
