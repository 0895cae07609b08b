//! The seam between the engine and the file system.
//!
//! Everything the log writes or reads goes through [`Storage`] and
//! [`StorageFile`], so that tests can swap the real files for a back end that
//! injects faults (`EIO` on sync, `ENOSPC`, short writes) deterministically.
//! [`OsStorage`] is the real thing: positional writes, `fdatasync`,
//! `fallocate`, directory fsync, and reads either through a memory map or
//! by `pread` into a buffer of their own. With the `testing` feature, meant
//! for the crate's own tests and fuzzing and not a stable API, there is also
//! `SimDisk`: an in-memory disk that knows which bytes and directory entries
//! were synced, for crash testing.

mod dir_lock;
mod os;
#[cfg(feature = "testing")]
mod sim;

pub use os::OsStorage;
#[cfg(feature = "testing")]
pub use sim::{CrashPlan, SimDisk};

use bytes::Bytes;
use std::fmt::Debug;
use std::io;
use std::path::{Path, PathBuf};

/// A file system as the engine needs it.
///
/// Implementations must be safe to share between threads. Paths are always
/// inside the store directory.
pub trait Storage: Send + Sync + Debug + 'static {
    /// Creates `path` and its parents if missing.
    ///
    /// # Errors
    ///
    /// The file system's error, if a directory cannot be created.
    fn create_dir_all(&self, path: &Path) -> io::Result<()>;

    /// Lists the file names (not full paths) directly inside `dir`.
    ///
    /// # Errors
    ///
    /// [`io::ErrorKind::NotFound`] if `dir` does not exist, or the file
    /// system's error.
    fn list_dir(&self, dir: &Path) -> io::Result<Vec<String>>;

    /// Opens an existing file for reading and writing, or creates it (empty)
    /// when `create` is set.
    ///
    /// # Errors
    ///
    /// [`io::ErrorKind::NotFound`] if the file does not exist and `create` is
    /// not set, or the file system's error.
    fn open_file(&self, path: &Path, create: bool) -> io::Result<Box<dyn StorageFile>>;

    /// Opens an existing file for reading only: writes through it fail.
    /// Back ends without such a mode may open it as [`Storage::open_file`]
    /// does.
    ///
    /// # Errors
    ///
    /// [`io::ErrorKind::NotFound`] if the file does not exist, or the file
    /// system's error.
    fn open_read_only(&self, path: &Path) -> io::Result<Box<dyn StorageFile>> {
        self.open_file(path, false)
    }

    /// Removes a file.
    ///
    /// # Errors
    ///
    /// [`io::ErrorKind::NotFound`] if the file does not exist, or the file
    /// system's error.
    fn remove_file(&self, path: &Path) -> io::Result<()>;

    /// Atomically renames `from` to `to`, replacing `to` if it exists.
    ///
    /// # Errors
    ///
    /// [`io::ErrorKind::NotFound`] if `from` does not exist, or the file
    /// system's error.
    fn rename(&self, from: &Path, to: &Path) -> io::Result<()>;

    /// Makes the directory's entries (created, renamed or removed files)
    /// durable.
    ///
    /// # Errors
    ///
    /// The file system's error.
    fn sync_dir(&self, dir: &Path) -> io::Result<()>;

    /// Takes the exclusive lock on `path` for as long as the returned guard
    /// lives. Fails with [`io::ErrorKind::WouldBlock`] when it is held,
    /// whether by this process or another.
    ///
    /// # Errors
    ///
    /// [`io::ErrorKind::WouldBlock`] while the lock is held, or the file
    /// system's error.
    fn lock_file(&self, path: &Path) -> io::Result<Box<dyn LockGuard>>;
}

/// Held for as long as a store keeps its directory locked.
pub trait LockGuard: Send + Sync + Debug {}

/// One open file.
pub trait StorageFile: Send + Sync + Debug {
    /// The path the file was opened with, for error messages.
    fn path(&self) -> &Path;

    /// The file's current length in bytes.
    ///
    /// # Errors
    ///
    /// The file system's error.
    fn len(&self) -> io::Result<u64>;

    /// Whether the file is empty.
    ///
    /// # Errors
    ///
    /// The file system's error.
    fn is_empty(&self) -> io::Result<bool> {
        Ok(self.len()? == 0)
    }

    /// What tells this file apart from another that later takes its name
    /// (on a POSIX file system, its device and inode numbers); `None` if
    /// the back end cannot tell. A read-only store compares it to notice a
    /// segment a scavenge replaced.
    ///
    /// # Errors
    ///
    /// The file system's error.
    fn identity(&self) -> io::Result<Option<(u64, u64)>> {
        Ok(None)
    }

    /// Writes up to `buf.len()` bytes at `offset`; may write fewer.
    ///
    /// # Errors
    ///
    /// The file system's error, [`io::ErrorKind::StorageFull`] when the disk
    /// is full.
    fn write_at(&self, buf: &[u8], offset: u64) -> io::Result<usize>;

    /// Makes every byte written so far durable (`fdatasync`).
    ///
    /// # Errors
    ///
    /// The file system's error: bytes written since the last sync may then
    /// be lost, whatever a later sync says.
    fn sync_data(&self) -> io::Result<()>;

    /// Ensures `len` bytes are allocated on disk, growing the file if needed,
    /// so that later writes below `len` cannot fail for lack of space.
    ///
    /// # Errors
    ///
    /// [`io::ErrorKind::StorageFull`] when the space is not there, or the file
    /// system's error.
    fn allocate(&self, len: u64) -> io::Result<()>;

    /// Writes zeros over `from..to` of allocated space, so that later writes
    /// there land in blocks already written once, which a sync then need
    /// not record in the file system's metadata. An optimisation only:
    /// returns `false` if the back end does not do it (the default), and a
    /// back end may write a little less than asked (whole blocks only).
    ///
    /// # Errors
    ///
    /// The file system's error.
    fn write_zeros(&self, from: u64, to: u64) -> io::Result<bool> {
        let _ = (from, to);
        Ok(false)
    }

    /// Asks the operating system to start writing the cached pages of
    /// `offset..offset + len` to the disk now, without waiting for them:
    /// a sync that follows then finds part of the work done. A hint only:
    /// it makes nothing durable, and errors are left to that sync, which
    /// reports them. The default does nothing.
    fn start_writeback(&self, offset: u64, len: u64) {
        let _ = (offset, len);
    }

    /// Tells the operating system that the cached pages of
    /// `offset..offset + len` will not be read soon, so it may drop them (an
    /// advice: nothing is lost, and the bytes are read from the disk when
    /// next needed). The default does nothing.
    fn release_cache(&self, offset: u64, len: u64) {
        let _ = (offset, len);
    }

    /// Reads up to `buf.len()` bytes at `offset` into `buf`, like `pread`:
    /// fewer only where the file ends. Returns how many were read.
    ///
    /// # Errors
    ///
    /// The file system's error.
    fn read_at(&self, buf: &mut [u8], offset: u64) -> io::Result<usize>;

    /// A copy of the bytes in `offset..offset + len`, in a buffer of its own:
    /// nothing the file goes through later changes it. Fails with
    /// [`io::ErrorKind::UnexpectedEof`] when the range is past the end.
    ///
    /// # Errors
    ///
    /// [`io::ErrorKind::UnexpectedEof`] when the range is past the end, or the
    /// file system's error.
    fn read_copy(&self, offset: u64, len: usize) -> io::Result<Bytes> {
        let mut buf = vec![0u8; len];
        let read = self.read_at(&mut buf, offset)?;
        if read < len {
            return Err(past_end(self.path(), offset, len, offset + read as u64));
        }
        Ok(Bytes::from(buf))
    }

    /// The bytes in `offset..offset + len`, as a zero-copy view of a memory
    /// map where the back end maps files (the OS one does; the default is
    /// [`StorageFile::read_copy`]). Fails with
    /// [`io::ErrorKind::UnexpectedEof`] when the range is past the end.
    ///
    /// A map may cover everything from the start of the file to the end of
    /// the range, and lives as long as any view taken from it. The caller
    /// vouches that for that long nothing writes those bytes or shortens the
    /// file below their end.
    ///
    /// # Errors
    ///
    /// As for [`StorageFile::read_copy`].
    fn read_view(&self, offset: u64, len: usize) -> io::Result<Bytes> {
        self.read_copy(offset, len)
    }

    /// Writes all of `buf` at `offset`, retrying short writes.
    ///
    /// # Errors
    ///
    /// The first error of [`StorageFile::write_at`] other than
    /// [`io::ErrorKind::Interrupted`] (retried); [`io::ErrorKind::WriteZero`]
    /// if the file accepts no more bytes, and an error if it reports writing
    /// more than it was given. Part of `buf` may have been written.
    fn write_all_at(&self, mut buf: &[u8], mut offset: u64) -> io::Result<()> {
        while !buf.is_empty() {
            match self.write_at(buf, offset) {
                Ok(0) => {
                    return Err(io::Error::new(
                        io::ErrorKind::WriteZero,
                        "the file accepted no more bytes",
                    ))
                }
                Ok(n) => {
                    // More than was asked is a broken `write_at`: what
                    // reached the file is then unknown.
                    buf = buf.get(n..).ok_or_else(|| {
                        io::Error::other(format!(
                            "the file reported writing {n} bytes of {}",
                            buf.len()
                        ))
                    })?;
                    offset += n as u64;
                }
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(e) => return Err(e),
            }
        }
        Ok(())
    }
}

/// The error of a read of `len` bytes at `offset` from a file that ends at
/// `end`.
pub(crate) fn past_end(path: &Path, offset: u64, len: usize, end: u64) -> io::Error {
    io::Error::new(
        io::ErrorKind::UnexpectedEof,
        format!(
            "{}: range {offset}..{} is past the end ({end} bytes)",
            path.display(),
            offset.saturating_add(len as u64)
        ),
    )
}

/// Joins `dir` and `name`; a small helper so call sites read as intent.
pub(crate) fn child(dir: &Path, name: &str) -> PathBuf {
    dir.join(name)
}

/// Writes `bytes` to `path` by way of a synced temporary file renamed over
/// it; the caller syncs the directory to make the rename durable. A crash
/// leaves either the old file or the new one, never a mix; a failed write
/// or sync (a full disk) removes the temporary file, so it holds no space.
pub(crate) fn write_and_rename(storage: &dyn Storage, path: &Path, bytes: &[u8]) -> io::Result<()> {
    write_temp_and_rename(storage, path, bytes, true)
}

/// [`write_and_rename`] without syncing the file: for files derived from
/// others and checked whole when read (an index file), which a crash may
/// leave torn or empty, and which are then rebuilt.
pub(crate) fn write_and_rename_unsynced(
    storage: &dyn Storage,
    path: &Path,
    bytes: &[u8],
) -> io::Result<()> {
    write_temp_and_rename(storage, path, bytes, false)
}

fn write_temp_and_rename(
    storage: &dyn Storage,
    path: &Path,
    bytes: &[u8],
    sync: bool,
) -> io::Result<()> {
    let mut temp = path.as_os_str().to_owned();
    temp.push(".tmp");
    let temp = PathBuf::from(temp);
    write_new_file(storage, &temp, bytes, sync)?;
    storage.rename(&temp, path)
}

/// Writes `bytes` to a new file at `path` (replacing one left there), and
/// syncs it if `sync`. A failed write or sync (a full disk) removes the
/// file, so that it holds no space.
pub(crate) fn write_new_file(
    storage: &dyn Storage,
    path: &Path,
    bytes: &[u8],
    sync: bool,
) -> io::Result<()> {
    match storage.remove_file(path) {
        Ok(()) => {}
        Err(e) if e.kind() == io::ErrorKind::NotFound => {}
        Err(e) => return Err(e),
    }
    let file = storage.open_file(path, true)?;
    let written =
        file.write_all_at(bytes, 0)
            .and_then(|()| if sync { file.sync_data() } else { Ok(()) });
    drop(file);
    if let Err(e) = written {
        // Best effort: one left behind is removed by the next write of
        // `path`, or by the next open.
        let _ = storage.remove_file(path);
        return Err(e);
    }
    Ok(())
}

/// A copy of the whole of the file at `path`, never a map: files read this
/// way (the catalogue, snapshots, checkpoints) are small, read once per use,
/// and may be replaced or rewritten by another process meanwhile.
pub(crate) fn read_whole_file(storage: &dyn Storage, path: &Path) -> io::Result<Bytes> {
    let file = storage.open_read_only(path)?;
    let len = usize::try_from(file.len()?)
        .map_err(|_| io::Error::new(io::ErrorKind::InvalidData, "file too large to read"))?;
    if len == 0 {
        return Ok(Bytes::new());
    }
    file.read_copy(0, len)
}

/// [`write_and_rename`], then syncs the directory.
pub(crate) fn replace_file(storage: &dyn Storage, path: &Path, bytes: &[u8]) -> io::Result<()> {
    write_and_rename(storage, path, bytes)?;
    storage.sync_dir(path.parent().unwrap_or_else(|| Path::new(".")))
}

/// Serializes work on one name (a stream's snapshots, a checkpoint) while
/// different names mostly proceed in parallel: a fixed set of locks, picked
/// by hash.
#[derive(Debug)]
pub(crate) struct NameLocks(Box<[parking_lot::Mutex<()>]>);

impl NameLocks {
    pub fn new(count: usize) -> Self {
        NameLocks(
            (0..count.max(1))
                .map(|_| parking_lot::Mutex::new(()))
                .collect(),
        )
    }

    #[expect(
        clippy::cast_possible_truncation,
        clippy::indexing_slicing,
        reason = "the hash only picks a lock: the slot is a remainder of their count"
    )]
    pub fn lock(&self, name: &str) -> parking_lot::MutexGuard<'_, ()> {
        let slot = xxhash_rust::xxh3::xxh3_64(name.as_bytes()) as usize % self.0.len();
        self.0[slot].lock()
    }
}

/// A file-name stem for an arbitrary name: a readable, lower-cased prefix
/// (other characters as `_`) and the XXH3-128 of the exact name, so it is
/// valid and distinct on any file system, case-insensitive ones included.
pub(crate) fn name_stem(name: &str) -> String {
    let readable: String = name
        .chars()
        .take(48)
        .map(|c| match c {
            'a'..='z' | '0'..='9' | '-' | '_' => c,
            'A'..='Z' => c.to_ascii_lowercase(),
            _ => '_',
        })
        .collect();
    format!(
        "{readable}.{:032x}",
        xxhash_rust::xxh3::xxh3_128(name.as_bytes())
    )
}
