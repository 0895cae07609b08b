//! Hashes of stream names and event ids as stored in index files. They are
//! part of the on-disk format, so they come from a specified algorithm
//! (XXH3-64), never from a randomly seeded or version-dependent hasher.

use xxhash_rust::xxh3::xxh3_64;

/// How an index file hashes stream names.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum HashKind {
    /// XXH3-64 of the name's UTF-8 bytes.
    Xxh3,
    /// Every name hashes the same: only for testing that colliding names
    /// are told apart.
    Constant,
}

impl HashKind {
    /// The code stored in index file headers.
    pub fn code(self) -> u16 {
        match self {
            HashKind::Xxh3 => 0,
            HashKind::Constant => 1,
        }
    }

    /// The kind a stored code stands for.
    pub fn from_code(code: u16) -> Option<HashKind> {
        match code {
            0 => Some(HashKind::Xxh3),
            1 => Some(HashKind::Constant),
            _ => None,
        }
    }
}

/// A stream name with its hash computed once, for lookups in many files.
#[derive(Debug, Clone, Copy)]
pub struct StreamKey<'a> {
    name: &'a str,
    xxh3: u64,
}

impl<'a> StreamKey<'a> {
    /// The key of `name`.
    pub fn new(name: &'a str) -> Self {
        StreamKey {
            name,
            xxh3: xxh3_64(name.as_bytes()),
        }
    }

    /// The name.
    pub fn name(&self) -> &'a str {
        self.name
    }

    /// The hash a file of `kind` stores for this name.
    pub fn hash(&self, kind: HashKind) -> u64 {
        match kind {
            HashKind::Xxh3 => self.xxh3,
            HashKind::Constant => 0x00C0_FFEE,
        }
    }
}

/// The hash of an event id, for Bloom filters.
pub fn id_hash(id: u128) -> u64 {
    xxh3_64(&id.to_le_bytes())
}
