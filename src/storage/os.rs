#![allow(clippy::pedantic)]
use super::{LockGuard, Storage, StorageFile};
use bytes::Bytes;
use parking_lot::RwLock;
use std::fs::{self, File, OpenOptions};
use std::io;
use std::os::unix::fs::FileExt;
use std::path::{Path, PathBuf};

/// The real file system: positional writes, `fdatasync`, `fallocate`,
/// directory fsync and reads through a memory map.
#[derive(Debug, Default, Clone, Copy)]
pub struct OsStorage;

impl Storage for OsStorage {
    fn create_dir_all(&self, path: &Path) -> io::Result<()> {
        fs::create_dir_all(path)
    }

    fn list_dir(&self, dir: &Path) -> io::Result<Vec<String>> {
        let mut names = Vec::new();
        for entry in fs::read_dir(dir)? {
            let entry = entry?;
            if let Ok(name) = entry.file_name().into_string() {
                names.push(name);
            }
        }
        Ok(names)
    }

    fn open_file(&self, path: &Path, create: bool) -> io::Result<Box<dyn StorageFile>> {
        let file = OpenOptions::new()
            .read(true)
            .write(true)
            .create(create)
            .truncate(false)
            .open(path)?;
        Ok(Box::new(OsFile {
            file,
            path: path.to_path_buf(),
            map: RwLock::new(None),
        }))
    }

    fn open_read_only(&self, path: &Path) -> io::Result<Box<dyn StorageFile>> {
        let file = OpenOptions::new().read(true).open(path)?;
        Ok(Box::new(OsFile {
            file,
            path: path.to_path_buf(),
            map: RwLock::new(None),
        }))
    }

    fn remove_file(&self, path: &Path) -> io::Result<()> {
        fs::remove_file(path)
    }

    fn rename(&self, from: &Path, to: &Path) -> io::Result<()> {
        fs::rename(from, to)
    }

    fn sync_dir(&self, dir: &Path) -> io::Result<()> {
        File::open(dir)?.sync_all()
    }

    fn lock_file(&self, path: &Path) -> io::Result<Box<dyn LockGuard>> {
        let file = OpenOptions::new()
            .read(true)
            .write(true)
            .create(true)
            .truncate(false)
            .open(path)?;
        match file.try_lock() {
            Ok(()) => {}
            Err(fs::TryLockError::WouldBlock) => {
                return Err(io::Error::new(
                    io::ErrorKind::WouldBlock,
                    "the lock is held by another handle",
                ))
            }
            Err(fs::TryLockError::Error(e)) => return Err(e),
        }
        // The holder's pid helps whoever hits `Error::Locked` find the culprit.
        file.set_len(0)?;
        file.write_all_at(std::process::id().to_string().as_bytes(), 0)?;
        Ok(Box::new(OsLock { _file: file }))
    }
}

#[derive(Debug)]
struct OsLock {
    _file: File,
}

impl LockGuard for OsLock {}

#[derive(Debug)]
struct OsFile {
    file: File,
    path: PathBuf,
    /// A read-only map of the whole file as it was when mapped. Replaced (never
    /// shrunk) when a read reaches past it after the file grew.
    map: RwLock<Option<Bytes>>,
}

impl OsFile {
    fn map_whole_file(&self) -> io::Result<Bytes> {
        let len = self.file.metadata()?.len();
        if len == 0 {
            return Ok(Bytes::new());
        }
        // SAFETY: mapping a file leaves two promises to the caller: every
        // mapped page stays backed by the file for the map's life, and the
        // bytes behind the `&[u8]` views taken from it do not change.
        //
        // Backing. The map is read-only and covers exactly the file's length
        // at this moment; every view is a slice inside it. The invariant is
        // that evstore itself never truncates or shrinks a file while it is
        // mapped: segments are preallocated and then only grown (`allocate`)
        // or written within their length (a torn tail is overwritten with
        // zeros, never cut off); index files, the catalogue, snapshots and
        // checkpoints are replaced by renaming a new file over the name, and
        // stale files are unlinked, both of which leave a mapped inode and
        // its pages alone. The only file evstore truncates is `LOCK`, which
        // is never mapped, and the directory lock keeps a second evstore
        // writer out. Nothing keeps other programs out. If one truncates a
        // mapped file (a `truncate`, a copy or restore over it in place, a
        // change made from another machine on a network file system), the
        // first touch of a page past the new end raises SIGBUS; so does a
        // media error while the kernel reads a mapped page in. No handler is
        // installed, so the process dies: this cannot be turned into an
        // `io::Error` or an `Error` the way a failed `read` (EIO) could.
        //
        // Contents. In this process, views may reach past the end of the
        // log, but reads only decode records published to readers after
        // they were written, and the writer never writes those bytes again
        // (the zeroing after a failed write covers only unpublished bytes).
        // A read-only store (`Store::open_read_only`), though, maps the
        // segment its writer (another process, or another handle) is still
        // writing, so bytes under its views change while it reads them. It accepts a batch
        // only once its checksums verify, so one caught mid-write is left
        // for the next poll; every length and offset is copied out of the
        // map and checked against the view's bounds before it is used, so a
        // byte changing underneath can get a batch rejected, never a read
        // outside the map. The writer does not write a whole batch's bytes
        // again, except after a write that failed for lack of space, when
        // it zeroes all of that write, batches a reader may have accepted
        // included. Memory changing behind a shared reference is outside
        // what Rust guarantees: the argument above is that it is harmless in
        // practice, because the pages stay mapped, bounds come from checked
        // copies, and only the values of an accepted batch (not memory
        // safety) depend on its bytes staying as they were.
        #[allow(unsafe_code)]
        let map = unsafe { memmap2::MmapOptions::new().map(&self.file)? };
        Ok(Bytes::from_owner(map))
    }
}

impl StorageFile for OsFile {
    fn path(&self) -> &Path {
        &self.path
    }

    fn len(&self) -> io::Result<u64> {
        Ok(self.file.metadata()?.len())
    }

    fn write_at(&self, buf: &[u8], offset: u64) -> io::Result<usize> {
        FileExt::write_at(&self.file, buf, offset)
    }

    fn sync_data(&self) -> io::Result<()> {
        self.file.sync_data()
    }

    fn allocate(&self, len: u64) -> io::Result<()> {
        let current = self.len()?;
        if current >= len {
            return Ok(());
        }
        rustix::fs::fallocate(
            &self.file,
            rustix::fs::FallocateFlags::empty(),
            current,
            len - current,
        )
        .map_err(io::Error::from)
    }

    fn read_view(&self, offset: u64, len: usize) -> io::Result<Bytes> {
        let end = offset
            .checked_add(len as u64)
            .ok_or_else(|| io::Error::new(io::ErrorKind::InvalidInput, "range overflows"))?;
        if let Some(map) = self.map.read().as_ref() {
            if end <= map.len() as u64 {
                return Ok(map.slice(offset as usize..end as usize));
            }
        }
        let mut guard = self.map.write();
        let covers = guard.as_ref().is_some_and(|m| end <= m.len() as u64);
        if !covers {
            let fresh = self.map_whole_file()?;
            if end > fresh.len() as u64 {
                return Err(io::Error::new(
                    io::ErrorKind::UnexpectedEof,
                    format!(
                        "{}: range {offset}..{end} is past the end ({} bytes)",
                        self.path.display(),
                        fresh.len()
                    ),
                ));
            }
            *guard = Some(fresh);
        }
        match guard.as_ref() {
            Some(map) => Ok(map.slice(offset as usize..end as usize)),
            None => Err(io::Error::other("file map missing")),
        }
    }
}
