//! The store directory's advisory lock on the real file system.
//!
//! An `flock` belongs to the open file description, and a child process
//! gets a copy of every descriptor between its `fork` and its `exec` (the
//! lock file is opened close-on-exec, so only until then). A process that
//! closes a store and opens it again while another of its threads starts a
//! child can therefore find its own, just released lock still held, by the
//! child, for the microseconds before the child's `exec`. So when the lock
//! is taken, this process holds no lock on that file, and the file names
//! this process as the last holder, the open waits a little for the child
//! instead of failing. A second open in the process while the first is
//! still open fails at once, as does an open while another process holds
//! the lock.

use super::LockGuard;
use parking_lot::Mutex;
use std::collections::HashSet;
use std::fs::{self, File, OpenOptions};
use std::io;
use std::os::unix::fs::{FileExt, MetadataExt};
use std::path::Path;
use std::time::{Duration, Instant};

/// How long an open waits for a lock its own process's child may hold.
const INHERITED_LOCK_WAIT: Duration = Duration::from_secs(2);
/// How long it sleeps between two tries meanwhile.
const RETRY_PAUSE: Duration = Duration::from_millis(1);

/// The lock files this process holds, by device and inode.
static HELD: Mutex<Option<HashSet<(u64, u64)>>> = Mutex::new(None);

/// Takes the lock of `path` (created if missing) and writes this process's
/// id into it, for whoever finds it taken.
pub(super) fn lock(path: &Path) -> io::Result<Box<dyn LockGuard>> {
    let file = OpenOptions::new()
        .read(true)
        .write(true)
        .create(true)
        .truncate(false)
        .open(path)?;
    let meta = file.metadata()?;
    let key = (meta.dev(), meta.ino());
    let started = Instant::now();
    loop {
        match file.try_lock() {
            Ok(()) => break,
            Err(fs::TryLockError::Error(e)) => return Err(e),
            Err(fs::TryLockError::WouldBlock) => {
                let ours = HELD.lock().as_ref().is_some_and(|held| held.contains(&key));
                if ours
                    || !last_holder_is_this_process(&file)
                    || started.elapsed() >= INHERITED_LOCK_WAIT
                {
                    return Err(io::Error::new(
                        io::ErrorKind::WouldBlock,
                        "the lock is held by another handle",
                    ));
                }
                std::thread::sleep(RETRY_PAUSE);
            }
        }
    }
    HELD.lock().get_or_insert_with(HashSet::new).insert(key);
    let guard = DirLock { file, key };
    guard.file.set_len(0)?;
    guard
        .file
        .write_all_at(std::process::id().to_string().as_bytes(), 0)?;
    Ok(Box::new(guard))
}

/// Whether the lock file names this process as the one that took it last.
fn last_holder_is_this_process(file: &File) -> bool {
    let mut buf = [0u8; 20];
    let Ok(n) = file.read_at(&mut buf, 0) else {
        return false;
    };
    let text = buf.get(..n).and_then(|b| std::str::from_utf8(b).ok());
    text.and_then(|t| t.trim().parse::<u32>().ok()) == Some(std::process::id())
}

/// A held directory lock: released when dropped (the file is closed).
#[derive(Debug)]
struct DirLock {
    file: File,
    key: (u64, u64),
}

impl Drop for DirLock {
    fn drop(&mut self) {
        if let Some(held) = HELD.lock().as_mut() {
            held.remove(&self.key);
        }
    }
}

impl LockGuard for DirLock {}
