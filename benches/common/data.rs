//! Where benchmark stores live and how their contents are generated,
//! shared by the benchmarks (included with `#[path]`).

use evstore::Uuid;
use std::fs;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{SystemTime, UNIX_EPOCH};

/// Where benchmark data lives: on the disk under test, not a tmpfs.
pub fn bench_root() -> PathBuf {
    let root = std::env::var_os("EVSTORE_BENCH_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|| Path::new(env!("CARGO_MANIFEST_DIR")).join("target/bench-data"));
    fs::create_dir_all(&root).expect("creating the benchmark data directory");
    root
}

/// A small, fast, deterministic PRNG (xorshift64*).
pub struct Rng(pub u64);

impl Rng {
    /// The next 64 random bits.
    pub fn next(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_f491_4f6c_dd1d)
    }

    /// Close enough to uniform in `0..n` for `n` far below 2^64.
    pub fn below(&mut self, n: u64) -> u64 {
        self.next() % n
    }
}

/// Unique event ids: a per-process salt and a global counter (cheaper than a
/// random v4 id per event, which costs a `getrandom` call).
pub struct Ids {
    salt: u64,
    next: AtomicU64,
}

impl Ids {
    /// Ids salted with the current time.
    pub fn new() -> Self {
        let salt = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map_or(0, |d| d.as_nanos() as u64);
        Ids {
            salt,
            next: AtomicU64::new(0),
        }
    }

    /// The first of `count` fresh ids.
    pub fn take(&self, count: usize) -> u64 {
        self.next.fetch_add(count as u64, Ordering::Relaxed)
    }

    /// The `n`-th id.
    pub fn id(&self, n: u64) -> Uuid {
        Uuid::from_u64_pair(self.salt, n)
    }
}
