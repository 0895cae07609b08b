//! A sealed segment's index file as the index holds it: used in place
//! through the map once its checksum has been checked, or replaced by an
//! index rebuilt from the segment if the check fails.

use super::directory::Directories;
use super::file::{self, IndexFile};
use super::memory::MemIndex;
use super::{deferred_check, recovery, Repairs, View};
use crate::error::{Error, Result};
use crate::log::Segment;
use crate::storage::Storage;
use std::path::PathBuf;
use std::sync::atomic::Ordering;
use std::sync::{Arc, OnceLock};

/// A sealed segment's index file, checked against its checksum the first
/// time it is used; if that fails, the segment is rescanned and, unless the
/// store is read-only, the file rewritten.
#[derive(Debug)]
pub struct Persisted {
    file: IndexFile,
    path: PathBuf,
    segment: Arc<Segment>,
    /// Where to rewrite a damaged file; `None` in a read-only store.
    storage: Option<Arc<dyn Storage>>,
    /// Once checked: `None` if the file is sound, else the index rebuilt
    /// from the segment.
    state: OnceLock<Option<Arc<MemIndex>>>,
    /// Held while the file is checked.
    checking: parking_lot::Mutex<()>,
    repairs: Arc<Repairs>,
}

impl Persisted {
    /// An index file whose header matched `segment`.
    pub fn new(
        file: IndexFile,
        path: PathBuf,
        segment: Arc<Segment>,
        storage: Option<Arc<dyn Storage>>,
        repairs: Arc<Repairs>,
    ) -> Self {
        Persisted {
            file,
            path,
            segment,
            storage,
            state: OnceLock::new(),
            checking: parking_lot::Mutex::new(()),
            repairs,
        }
    }

    /// Marks the body as checked (it was just written from memory).
    pub fn trusted(self) -> Self {
        let _ = self.state.set(None);
        self
    }

    /// Where the file is.
    pub fn path(&self) -> &std::path::Path {
        &self.path
    }

    /// The index file's header.
    pub fn header(&self) -> &super::file::IndexHeader {
        self.file.header()
    }

    /// Events in the segment, from the header alone.
    pub fn len(&self) -> usize {
        self.file.len()
    }

    /// The index file, if it is sound: checked first if it was not yet
    /// (and rebuilt from the segment if it is damaged, which makes this
    /// `None`).
    pub fn checked_file(&self) -> Option<&IndexFile> {
        self.check().ok()?;
        match self.state.get() {
            Some(None) => Some(&self.file),
            _ => None,
        }
    }

    pub(super) fn view(self: &Arc<Self>) -> Result<View<'_>> {
        if self.state.get().is_none() {
            if let Some(deferred) = deferred_check::defer(self) {
                return Err(deferred);
            }
            self.check()?;
        }
        match self.state.get() {
            Some(None) => Ok(View::File(&self.file)),
            Some(Some(mem)) => Ok(View::Mem(mem)),
            None => Err(Error::io(
                format!("reading {}", self.path.display()),
                std::io::Error::other("index file left unchecked"),
            )),
        }
    }

    /// Checks the file once: sound, it is used as it is; damaged, the index
    /// is rebuilt from the segment (whose records carry their own
    /// checksums) and the file rewritten in the background. Only a success
    /// is kept, so a transient read error is tried again on the next use
    /// instead of making the segment unreadable until the store is
    /// reopened.
    pub fn check(&self) -> Result<()> {
        // One check at a time, so a damaged file is rebuilt once.
        let _checking = self.checking.lock();
        if self.state.get().is_some() {
            return Ok(());
        }
        let checked = if self.file.verify_body() {
            None
        } else {
            let rebuilt = recovery::index_sealed_segment(&self.segment)?;
            self.repairs.count.fetch_add(1, Ordering::Relaxed);
            self.rewrite_in_background(&rebuilt);
            Some(Arc::new(rebuilt))
        };
        let _ = self.state.set(checked);
        Ok(())
    }

    /// Replaces the damaged file with one encoded from `rebuilt`, on a
    /// thread of its own: the caller may hold the index lock, and a file
    /// write with its syncs must not keep appenders and readers waiting. If the
    /// rewrite fails the next open rebuilds again; reads are served from
    /// the rebuilt index either way.
    fn rewrite_in_background(&self, rebuilt: &MemIndex) {
        let Some(storage) = &self.storage else {
            return;
        };
        // The segment alone says nothing of other segments: the rewritten
        // file has no directories, and lookups through it search instead.
        let bytes = file::encode(
            rebuilt,
            self.segment.base_position(),
            self.file.header().seal_offset,
            self.file.header().hash_kind,
            &Directories::none(),
        );
        let storage = Arc::clone(storage);
        let path = self.path.clone();
        let spawned = std::thread::Builder::new()
            .name("evstore-index-repair".into())
            .spawn(move || {
                let _ = crate::storage::replace_file(storage.as_ref(), &path, &bytes);
            });
        if let Ok(handle) = spawned {
            self.repairs.pending.lock().push(handle);
        }
    }
}
