//! The state every adapter over one store directory shares, in this
//! process: which projectors have a leader, and the locks that make a
//! record's read-compare-write one step.
//!
//! A store directory is locked by the one process that opens it, and a
//! second `Store::open` of it in that process fails too, so every writer
//! of a store is an adapter built in this process from clones of one
//! `Store`. Keeping this state per directory (rather than per adapter
//! value) means two adapters made separately from clones of the same store
//! still exclude each other.

use evstore::Store;
use std::collections::hash_map::DefaultHasher;
use std::collections::{HashMap, HashSet};
use std::hash::{Hash, Hasher};
use std::path::PathBuf;
use std::sync::{Arc, LazyLock, Mutex, MutexGuard, PoisonError, Weak};

/// Record writes of different names proceed in parallel unless their names
/// share a stripe.
const RECORD_LOCK_STRIPES: usize = 32;

/// What the adapters of one store directory share.
#[derive(Debug)]
pub(crate) struct StoreShared {
    /// The projectors that have a leader now.
    pub(crate) leaders: Mutex<HashSet<String>>,
    record_locks: [Mutex<()>; RECORD_LOCK_STRIPES],
}

impl StoreShared {
    fn new() -> Self {
        StoreShared {
            leaders: Mutex::new(HashSet::new()),
            record_locks: std::array::from_fn(|_| Mutex::new(())),
        }
    }

    /// Holds off every other write of record `name` until dropped.
    pub(crate) fn lock_record(&self, name: &str) -> MutexGuard<'_, ()> {
        let mut hasher = DefaultHasher::new();
        name.hash(&mut hasher);
        let stripe = usize::try_from(hasher.finish() % RECORD_LOCK_STRIPES as u64).unwrap_or(0);
        let [first, ..] = &self.record_locks;
        lock_ignoring_poison(self.record_locks.get(stripe).unwrap_or(first))
    }
}

/// Locks `mutex` even if a thread panicked while holding it: what these
/// mutexes guard (a set of names, or nothing) is never left half-changed.
pub(crate) fn lock_ignoring_poison<T>(mutex: &Mutex<T>) -> MutexGuard<'_, T> {
    mutex.lock().unwrap_or_else(PoisonError::into_inner)
}

static REGISTRY: LazyLock<Mutex<HashMap<PathBuf, Weak<StoreShared>>>> =
    LazyLock::new(|| Mutex::new(HashMap::new()));

/// The shared state of `store`'s directory, created on first use and kept
/// while an adapter or a leadership guard of it lives.
pub(crate) fn shared_state(store: &Store) -> Arc<StoreShared> {
    // The same directory reached by two spellings of its path is one store.
    let key = std::fs::canonicalize(store.path()).unwrap_or_else(|_| store.path().to_path_buf());
    let mut registry = lock_ignoring_poison(&REGISTRY);
    registry.retain(|_, shared| shared.strong_count() > 0);
    if let Some(shared) = registry.get(&key).and_then(Weak::upgrade) {
        return shared;
    }
    let shared = Arc::new(StoreShared::new());
    registry.insert(key, Arc::downgrade(&shared));
    shared
}
