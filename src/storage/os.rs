//! Storage on the operating system's files: positioned reads and writes,
//! `fdatasync`, `fallocate`, advisory locks, and memory maps of the bytes
//! nothing writes again.

use super::{past_end, LockGuard, Storage, StorageFile};
use bytes::Bytes;
use parking_lot::RwLock;
use std::fs::{self, File, OpenOptions};
use std::io;
use std::os::unix::fs::FileExt;
use std::path::{Path, PathBuf};

/// The real file system: positional writes, `fdatasync`, `fallocate`,
/// directory fsync, and reads through a memory map or by `pread`.
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
        super::dir_lock::lock(path)
    }
}

#[derive(Debug)]
struct OsFile {
    file: File,
    path: PathBuf,
    /// A read-only map of the file's first bytes, as many as the largest
    /// view asked for so far needed. Replaced by a longer one (never a
    /// shorter one) when a view reaches past it.
    map: RwLock<Option<Bytes>>,
}

impl OsFile {
    /// Maps the file's first `len` bytes, which the caller of
    /// [`StorageFile::read_view`] vouched for.
    fn map_prefix(&self, len: u64) -> io::Result<Bytes> {
        let len = usize::try_from(len)
            .map_err(|_| io::Error::new(io::ErrorKind::InvalidInput, "range too large to map"))?;
        if len == 0 {
            return Ok(Bytes::new());
        }
        // SAFETY: a map leaves two promises to keep for as long as it
        // lives: every mapped page stays backed by the file, and the bytes
        // under the `&[u8]` views taken from it do not change.
        //
        // What is mapped. The file's first `len` bytes, no more than it has
        // (`read_view` checked its length just before), and only for the
        // callers of `read_view`, which vouch for those bytes. There are
        // three, and they ask for nothing else:
        // - a sealed segment, whole: one whose seal recovery or a read-only
        //   store's follower read, or this process's writer wrote, or one
        //   followed by another segment, which the writer creates only
        //   after sealing and syncing the one before;
        // - the segment this process's writer appends to, up to the end of
        //   what it wrote and then synced, rounded down to 4 MiB;
        // - a sealed segment's index file, whole.
        // Everything else is read with `pread` into a buffer of its own: a
        // segment another process may be writing (a read-only store's view
        // of the last one), the bytes of the active segment past what was
        // synced, the last segment while recovery scans it, and the
        // catalogue, snapshots and checkpoints.
        //
        // Why those bytes stay as they are, backed by the file. evstore
        // never writes them again and never shortens a file. The writer
        // writes a segment only past the end of what it already wrote: the
        // zeros that pad a write to the end of its page, and a failed write
        // zeroed where it went, both lie past that end, and a torn
        // tail, cleared at open before the segment is mapped, lies past the
        // last whole batch and so past anything synced. A sealed segment is
        // not written at all. Segments are preallocated and then only grown
        // (`allocate`). An index file is written under a temporary name,
        // synced and renamed into place, and only ever replaced by renaming
        // another file over its name; that, like unlinking a stale file,
        // leaves the mapped inode and its pages alone. The only file evstore
        // truncates is `LOCK`, which is never mapped. The directory lock
        // keeps a second evstore writer out, and a read-only store writes
        // nothing.
        //
        // What can still break it. Nothing keeps other programs out. If one
        // truncates a mapped file (a `truncate`, a copy or restore over it
        // in place, a change made from another machine on a network file
        // system), the first touch of a page past the new end raises
        // SIGBUS; if one writes mapped bytes in place, they change under
        // views that Rust takes to be immutable. A media error while the
        // kernel reads a mapped page in raises SIGBUS too. No handler is
        // installed, so the process dies: this cannot be turned into an
        // `io::Error` the way a failed `pread` (EIO) is.
        #[allow(unsafe_code)]
        let map = unsafe { memmap2::MmapOptions::new().len(len).map(&self.file)? };
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

    fn identity(&self) -> io::Result<Option<(u64, u64)>> {
        use std::os::unix::fs::MetadataExt;
        let metadata = self.file.metadata()?;
        Ok(Some((metadata.dev(), metadata.ino())))
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
        )?;
        Ok(())
    }

    fn write_zeros(&self, from: u64, to: u64) -> io::Result<bool> {
        write_zeros_directly(&self.path, from, to)
    }

    fn start_writeback(&self, offset: u64, len: u64) {
        start_writeback(&self.file, offset, len);
    }

    fn release_cache(&self, offset: u64, len: u64) {
        // `None` would mean "to the end of the file".
        if len == 0 {
            return;
        }
        // Advice only: a failure leaves the pages cached, which is harmless.
        let _ = rustix::fs::fadvise(
            &self.file,
            offset,
            std::num::NonZeroU64::new(len),
            rustix::fs::Advice::DontNeed,
        );
    }

    fn read_at(&self, buf: &mut [u8], offset: u64) -> io::Result<usize> {
        let mut done = 0;
        while let Some(rest) = buf.get_mut(done..).filter(|rest| !rest.is_empty()) {
            match FileExt::read_at(&self.file, rest, offset.saturating_add(done as u64)) {
                Ok(0) => break,
                Ok(n) => done += n,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(e) => return Err(e),
            }
        }
        Ok(done)
    }

    fn read_view(&self, offset: u64, len: usize) -> io::Result<Bytes> {
        let end = offset
            .checked_add(len as u64)
            .ok_or_else(|| io::Error::new(io::ErrorKind::InvalidInput, "range overflows"))?;
        // Both fit in a usize: the target is 64-bit (see the crate root).
        let range = usize::try_from(offset).unwrap_or(usize::MAX)
            ..usize::try_from(end).unwrap_or(usize::MAX);
        if let Some(map) = self.map.read().as_ref() {
            if range.end <= map.len() {
                return Ok(map.slice(range));
            }
        }
        let mut guard = self.map.write();
        let covers = guard.as_ref().is_some_and(|m| range.end <= m.len());
        if !covers {
            let file_len = self.len()?;
            if end > file_len {
                return Err(past_end(&self.path, offset, len, file_len));
            }
            *guard = Some(self.map_prefix(end)?);
        }
        match guard.as_ref() {
            Some(map) if range.end <= map.len() => Ok(map.slice(range)),
            _ => Err(io::Error::other("file map missing")),
        }
    }
}

/// Writes zeros over the whole 4 KiB blocks in `from..to` of the file at
/// `path`, bypassing the page cache (`O_DIRECT`), after `fallocate` reserved
/// them.
///
/// Why: `fallocate` leaves its blocks marked unwritten, and the first write
/// into each of them changes the file's extent tree, which the next
/// `fdatasync` must then commit to the file system's journal as well as the
/// data. Blocks already written once need no metadata at their sync: on
/// ext4 that took writes of 36 KiB, each followed by `fdatasync`, from
/// about 6,000 to about 10,000 a second. Direct writes of zeros cost little
/// CPU and leave no dirty pages behind. Where the file system refuses
/// direct I/O (`EINVAL`: tmpfs before Linux 6.6, some network file
/// systems) the blocks stay merely reserved, which is correct, only slower
/// to sync; then this returns `false`.
/// `sync_file_range(SYNC_FILE_RANGE_WRITE)`: queues the range's dirty
/// pages for writing and returns. Its result is ignored on purpose: the
/// `fdatasync` that follows reports any write error, and this call alone
/// never makes anything durable.
#[cfg(target_os = "linux")]
fn start_writeback(file: &File, offset: u64, len: u64) {
    use std::os::fd::AsRawFd;
    let (Ok(offset), Ok(len)) = (offset.try_into(), len.try_into()) else {
        return;
    };
    // SAFETY: `sync_file_range` takes a file descriptor and integers, and
    // touches no memory of this process; the descriptor is `file`'s, open
    // for as long as the borrow lasts. On a bad range or descriptor it
    // fails with an error code.
    #[allow(unsafe_code)]
    let _ = unsafe {
        libc::sync_file_range(file.as_raw_fd(), offset, len, libc::SYNC_FILE_RANGE_WRITE)
    };
}

#[cfg(not(target_os = "linux"))]
fn start_writeback(_file: &File, _offset: u64, _len: u64) {}

#[cfg(target_os = "linux")]
fn write_zeros_directly(path: &Path, from: u64, to: u64) -> io::Result<bool> {
    use rustix::fs::{Mode, OFlags};
    use rustix::io::Errno;
    const BLOCK: u64 = 4096;
    const CHUNK: usize = 1 << 20;
    let (start, end) = (from.next_multiple_of(BLOCK), to / BLOCK * BLOCK);
    if start >= end {
        return Ok(true);
    }
    let flags = OFlags::WRONLY | OFlags::DIRECT | OFlags::CLOEXEC;
    let fd = match rustix::fs::open(path, flags, Mode::empty()) {
        Ok(fd) => fd,
        Err(Errno::INVAL) => return Ok(false),
        Err(e) => return Err(e.into()),
    };
    // An anonymous map is zeroed and page-aligned, as direct I/O needs.
    let zeros = memmap2::MmapMut::map_anon(CHUNK)?;
    let mut at = start;
    while at < end {
        let n = usize::try_from(end - at).map_or(CHUNK, |left| left.min(CHUNK));
        let Some(chunk) = zeros.get(..n) else {
            return Ok(false);
        };
        match rustix::io::pwrite(&fd, chunk, at) {
            Ok(0) => return Err(io::ErrorKind::WriteZero.into()),
            Ok(written) => at += written as u64,
            Err(Errno::INTR) => {}
            // Alignment the device refuses: leave the rest reserved only.
            Err(Errno::INVAL) => return Ok(false),
            Err(e) => return Err(e.into()),
        }
    }
    Ok(true)
}

/// Without direct I/O the reserved blocks stay unwritten (see the Linux
/// version for what that costs).
#[cfg(not(target_os = "linux"))]
fn write_zeros_directly(_path: &Path, _from: u64, _to: u64) -> io::Result<bool> {
    Ok(false)
}

#[cfg(test)]
#[allow(clippy::expect_used, clippy::indexing_slicing)]
mod tests {
    use super::*;

    #[test]
    fn early_writeback_of_any_range_leaves_the_bytes_and_the_sync_intact() {
        let dir = tempfile::tempdir().expect("temporary directory");
        let path = dir.path().join("file");
        let file = OsStorage.open_file(&path, true).expect("create");
        let bytes: Vec<u8> = (0..200_000u32).map(|i| (i % 251) as u8).collect();
        assert_eq!(file.write_at(&bytes, 4096).expect("write"), bytes.len());
        // Ranges past the end, empty, or beyond what the system call takes
        // are all only hints: none may fail or change the file.
        for (offset, len) in [
            (4096, bytes.len() as u64),
            (0, 0),
            (1 << 40, 4096),
            (u64::MAX, u64::MAX),
            (0, u64::MAX),
        ] {
            file.start_writeback(offset, len);
        }
        file.sync_data().expect("sync after the hints");
        assert_eq!(file.len().expect("len"), 4096 + bytes.len() as u64);
        let mut back = vec![0u8; bytes.len()];
        let mut at = 0;
        while at < back.len() {
            let n = file
                .read_at(&mut back[at..], 4096 + at as u64)
                .expect("read");
            assert!(n > 0, "short file");
            at += n;
        }
        assert_eq!(back, bytes);
    }
}
