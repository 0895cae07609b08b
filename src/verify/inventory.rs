//! Finding every file of a store to check, and how big each is, without
//! opening anything for writing.

use super::{finding, Verifier};
use crate::error::{Error, Result};
use crate::index::catalog::CATALOG_FILE;
use crate::index::file::parse_index_file_name;
use crate::index::postings_file::parse_postings_file_name;
use crate::log::parse_segment_file_name;
use crate::snapshot::{self, StoredName};
use crate::storage::read_whole_file;
use bytes::Bytes;
use std::collections::BTreeMap;
use std::io;
use std::path::{Path, PathBuf};

/// The files found when verification started, with their sizes.
#[derive(Default)]
pub(super) struct Inventory {
    pub(super) catalog: Option<Bytes>,
    pub(super) segments: Vec<(u64, u64)>,
    pub(super) index_files: BTreeMap<u64, u64>,
    pub(super) postings_files: BTreeMap<u64, u64>,
    pub(super) snapshots: Vec<SnapshotEntry>,
    pub(super) checkpoints: Vec<CheckpointEntry>,
}

pub(super) struct CheckpointEntry {
    pub(super) path: PathBuf,
    pub(super) file_name: String,
    pub(super) size: u64,
    /// `None` when it could not be read.
    pub(super) bytes: Option<Vec<u8>>,
}

pub(super) struct SnapshotEntry {
    pub(super) path: PathBuf,
    pub(super) dir_name: String,
    pub(super) version: u64,
    pub(super) size: u64,
}

impl Verifier<'_, '_> {
    /// Lists every file to check. The segments are listed last: the
    /// catalogue, snapshots and checkpoints only name segments and events
    /// that existed when they were written, so everything they name is then
    /// in the list even while a writer seals and adds segments.
    pub(super) fn take_inventory(&mut self) -> Result<Inventory> {
        let mut inventory = Inventory::default();
        let catalog_path = self.segments_dir.join(CATALOG_FILE);
        match read_whole_file(self.storage, &catalog_path) {
            Ok(bytes) => inventory.catalog = Some(bytes),
            Err(e) if e.kind() == io::ErrorKind::NotFound => {}
            Err(e) => self.push(finding(&catalog_path, 0, format!("could not be read: {e}"))),
        }
        for dir_name in self.list_optional(&self.snapshots_dir.clone()) {
            let stream_dir = self.snapshots_dir.join(&dir_name);
            let files = match self.storage.list_dir(&stream_dir) {
                Ok(files) => files,
                // Not a directory: nothing the store put there.
                Err(e) if e.kind() == io::ErrorKind::NotADirectory => continue,
                Err(e) => {
                    self.push(finding(&stream_dir, 0, format!("could not be listed: {e}")));
                    continue;
                }
            };
            for file in files {
                let path = stream_dir.join(&file);
                match snapshot::classify_file_name(&file) {
                    StoredName::Snapshot(version) => {
                        let size = self.size_of(&path);
                        inventory.snapshots.push(SnapshotEntry {
                            path,
                            dir_name: dir_name.clone(),
                            version,
                            size,
                        });
                    }
                    StoredName::SetAside => self.push(finding(
                        path,
                        0,
                        "set aside earlier as damaged: the store failed it when loading it and no longer reads it",
                    )),
                    StoredName::Temporary | StoredName::Other => {}
                }
            }
        }
        inventory.snapshots.sort_by(|a, b| a.path.cmp(&b.path));

        // A checkpoint file is replaced in place by each save, so it is read
        // now: a later save could name events past the segments listed.
        for name in self.list_optional(&self.checkpoints_dir.clone()) {
            if Path::new(&name)
                .extension()
                .is_some_and(|ext| ext == "ckpt")
            {
                let path = self.checkpoints_dir.join(&name);
                let bytes = self.read_listed(&path);
                let size = bytes.as_ref().map_or(0, |b| b.len() as u64);
                inventory.checkpoints.push(CheckpointEntry {
                    path,
                    file_name: name,
                    size,
                    bytes: bytes.map(|b| b.to_vec()),
                });
            }
        }

        let names = self
            .storage
            .list_dir(&self.segments_dir)
            .map_err(|e| Error::io(format!("listing {}", self.segments_dir.display()), e))?;
        for name in &names {
            if let Some(base) = parse_segment_file_name(name) {
                let size = self.size_of(&self.segments_dir.join(name));
                inventory.segments.push((base, size));
            } else if let Some(base) = parse_index_file_name(name) {
                let size = self.size_of(&self.segments_dir.join(name));
                inventory.index_files.insert(base, size);
            } else if let Some(base) = parse_postings_file_name(name) {
                let size = self.size_of(&self.segments_dir.join(name));
                inventory.postings_files.insert(base, size);
            }
            // Anything else (temporary files, the catalogue) is not a
            // file of its own to check here.
        }
        inventory.segments.sort_unstable();
        Ok(inventory)
    }

    /// The names in a directory that a store may lack (it is created at the
    /// first open), reporting any other failure to list it.
    pub(super) fn list_optional(&mut self, dir: &Path) -> Vec<String> {
        match self.storage.list_dir(dir) {
            Ok(mut names) => {
                names.sort();
                names
            }
            Err(e) if e.kind() == io::ErrorKind::NotFound => Vec::new(),
            Err(e) => {
                self.push(finding(dir, 0, format!("could not be listed: {e}")));
                Vec::new()
            }
        }
    }

    /// Reads a file listed at the start. `None` when it is gone (a running
    /// store prunes snapshots) or unreadable, which is a finding.
    pub(super) fn read_listed(&mut self, path: &Path) -> Option<Bytes> {
        match read_whole_file(self.storage, path) {
            Ok(bytes) => Some(bytes),
            Err(e) if e.kind() == io::ErrorKind::NotFound => None,
            Err(e) => {
                self.push(finding(path, 0, format!("could not be read: {e}")));
                None
            }
        }
    }

    pub(super) fn size_of(&self, path: &Path) -> u64 {
        self.storage
            .open_read_only(path)
            .and_then(|file| file.len())
            .unwrap_or(0)
    }
}
