//! Where benchmark stores live and how their contents are generated,
//! shared by the benchmarks (included with `#[path]`).

use std::fs;
use std::path::{Path, PathBuf};

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
