//! Zero-filling the next segment, when that pays.
//!
//! A segment's blocks are reserved with `fallocate`, which leaves them
//! marked unwritten: the first sync after a write into them must also
//! commit the extent change to the file system's journal. Writing zeros
//! over the blocks before the segment takes events spares every later sync
//! that work, at the price of writing each byte of the log twice. That pays
//! while the log is written slowly (small appends, where a sync's fixed
//! cost is all there is) and loses when appends use the disk's bandwidth:
//! then the zeros take bandwidth the appends need.
//!
//! So the thread preparing the next segment first watches how fast the
//! active one fills, and zero-fills only below a rate (see
//! [`crate::Options::zero_fill_below`]); in chunks, pausing between them so
//! that the zeros take at most a quarter of the disk's time, and stopping
//! as soon as the writer needs the segment.

use crate::storage::StorageFile;
use std::io;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

/// How long the active segment is watched before the rate is judged.
pub const WATCH: Duration = Duration::from_secs(1);

/// Bytes zeroed by one write.
const CHUNK: u64 = 1 << 20;

/// Pause after each chunk, as a multiple of the time the chunk took.
const PAUSE_FACTOR: u32 = 3;

/// Whether `written` bytes in `elapsed` is a rate of at most `max_rate`
/// bytes a second. `None` means never zero-fill; a zero `elapsed` judges
/// by the bytes alone.
pub fn slow_enough(max_rate: Option<u64>, written: u64, elapsed: Duration) -> bool {
    let Some(max_rate) = max_rate else {
        return false;
    };
    // written / seconds <= max_rate, in integers: the left side fits in
    // 94 bits; the right saturates, which only ever says "slow enough".
    u128::from(written) * 1_000_000_000 <= u128::from(max_rate).saturating_mul(elapsed.as_nanos())
}

/// Waits until `WATCH` has passed since `started` or `stop` is set; the
/// thread is unparked when it is. Returns whether it was stopped.
pub fn watch(started: Instant, stop: &AtomicBool) -> bool {
    let deadline = started + WATCH;
    loop {
        if stop.load(Ordering::Acquire) {
            return true;
        }
        let now = Instant::now();
        if now >= deadline {
            return false;
        }
        std::thread::park_timeout(deadline - now);
    }
}

/// Writes zeros over the first `len` bytes of `file`, a chunk at a time
/// (with pauses between if `paced`, for a fill beside a working writer),
/// then syncs. Returns `Ok(false)` if the file's back end does not write
/// zeros, or if `stop` was set first: then part of the file may be zeroed,
/// which is as correct as none (the blocks read as zeros either way), and
/// nothing is synced.
///
/// # Errors
///
/// The file's error: the blocks left unzeroed stay merely reserved.
pub fn fill(file: &dyn StorageFile, len: u64, stop: &AtomicBool, paced: bool) -> io::Result<bool> {
    let mut at = 0;
    while at < len {
        if stop.load(Ordering::Acquire) {
            return Ok(false);
        }
        let end = at.saturating_add(CHUNK).min(len);
        let started = Instant::now();
        if !file.write_zeros(at, end)? {
            return Ok(false);
        }
        at = end;
        if paced && at < len {
            std::thread::park_timeout(started.elapsed().saturating_mul(PAUSE_FACTOR));
        }
    }
    if stop.load(Ordering::Acquire) {
        return Ok(false);
    }
    file.sync_data()?;
    Ok(true)
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;
    use crate::storage::{OsStorage, Storage};

    #[test]
    fn only_a_rate_at_or_below_the_limit_is_slow_enough() {
        let second = Duration::from_secs(1);
        assert!(slow_enough(Some(1000), 1000, second));
        assert!(!slow_enough(Some(1000), 1001, second));
        assert!(slow_enough(Some(1000), 2000, 2 * second));
        assert!(!slow_enough(None, 0, second));
        assert!(slow_enough(Some(0), 0, Duration::ZERO));
        assert!(!slow_enough(Some(u64::MAX), 1, Duration::ZERO));
        assert!(slow_enough(Some(u64::MAX), u64::MAX, Duration::MAX));
    }

    #[test]
    fn a_stopped_watch_ends_at_once_and_an_unstopped_one_lasts() {
        let stop = AtomicBool::new(true);
        assert!(watch(Instant::now(), &stop));
        let stop = AtomicBool::new(false);
        let started = Instant::now();
        assert!(!watch(started, &stop));
        assert!(started.elapsed() >= WATCH);
    }

    #[test]
    #[cfg(target_os = "linux")]
    fn a_fill_overwrites_every_block_and_a_stopped_one_writes_nothing() {
        const EXT4_MAGIC: u64 = 0xEF53;
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("f");
        let file = OsStorage.open_file(&path, true).unwrap();
        let len = 3 * CHUNK + 4096;
        file.allocate(len).unwrap();
        // Marked bytes at the start, across a chunk boundary and at the end
        // show what the zeros reach.
        let marks = [0, CHUNK - 4, len - 8];
        for &at in &marks {
            file.write_at(&[0xAB; 8], at).unwrap();
        }
        file.sync_data().unwrap();
        let first_bytes = |file: &dyn StorageFile| {
            marks.map(|at| {
                let mut byte = [0u8; 1];
                file.read_at(&mut byte, at).unwrap();
                byte[0]
            })
        };
        assert!(!fill(file.as_ref(), len, &AtomicBool::new(true), true).unwrap());
        assert_eq!(first_bytes(file.as_ref()), [0xAB; 3]);
        // Where the file system refuses direct I/O (tmpfs before Linux
        // 6.6) nothing is zeroed, and the fill says so; ext4 takes it.
        let filled = fill(file.as_ref(), len, &AtomicBool::new(false), true).unwrap();
        assert_eq!(file.len().unwrap(), len);
        let expected = if filled { [0; 3] } else { [0xAB; 3] };
        assert_eq!(first_bytes(file.as_ref()), expected);
        let on_ext4 = rustix::fs::statfs(dir.path())
            .is_ok_and(|s| u64::try_from(s.f_type).is_ok_and(|t| t == EXT4_MAGIC));
        assert!(filled || !on_ext4, "ext4 refused the zeros");
    }
}
