//! Checking snapshot files, and each snapshot against the event it names in
//! the log.

use super::inventory::Inventory;
use super::{error_finding, finding, Verifier};
use crate::error::Error;
use crate::snapshot::{self, SNAPSHOT_HEADER_LEN};
use std::path::PathBuf;
use std::sync::Arc;
use uuid::Uuid;

/// A snapshot that decoded, waiting to be checked against the log.
pub(super) struct SnapshotCheck {
    pub(super) path: PathBuf,
    pub(super) stream: Arc<str>,
    pub(super) version: u64,
    pub(super) event_id: Uuid,
}

impl Verifier<'_, '_> {
    pub(super) fn check_snapshot_files(&mut self, inventory: &Inventory) -> Vec<SnapshotCheck> {
        let mut checks = Vec::new();
        for entry in &inventory.snapshots {
            let path = &entry.path;
            if let Some(bytes) = self.read_listed(path) {
                self.report.snapshots += 1;
                match snapshot::decode_found(path, bytes, entry.version) {
                    Ok((stream, file)) => {
                        let expected = snapshot::stream_dir_name(&stream);
                        if entry.dir_name == expected {
                            let stream: Arc<str> = Arc::from(stream);
                            self.wanted
                                .by_stream
                                .entry(Arc::clone(&stream))
                                .or_default()
                                .insert(file.version, None);
                            checks.push(SnapshotCheck {
                                path: path.clone(),
                                stream,
                                version: file.version,
                                event_id: file.event_id,
                            });
                        } else {
                            self.push(finding(
                                path,
                                SNAPSHOT_HEADER_LEN as u64,
                                format!(
                                    "holds a snapshot of stream '{stream}', whose snapshots are in {expected}: the store rejects it"
                                ),
                            ));
                        }
                    }
                    Err(Error::UnsupportedFormat { .. }) => {
                        self.report.snapshots_skipped_newer_format += 1;
                    }
                    Err(e) => {
                        let mut found = error_finding(path, e);
                        found
                            .problem
                            .push_str(": the store sets it aside and uses an older snapshot");
                        self.push(found);
                    }
                }
            }
            self.meter.finish(path, entry.size);
        }
        checks
    }

    pub(super) fn check_snapshots_against_log(
        &mut self,
        snapshots: &[SnapshotCheck],
        complete: bool,
    ) {
        for snap in snapshots {
            let found = self
                .wanted
                .by_stream
                .get(&snap.stream)
                .and_then(|versions| versions.get(&snap.version))
                .copied()
                .flatten();
            match found {
                // A nil id: the segment of that version was removed.
                Some(id) if id != snap.event_id && !id.is_nil() => self.push(finding(
                    &snap.path,
                    24,
                    format!(
                        "was taken after event {}, but version {} of stream '{}' is event {id}: the store rejects it",
                        snap.event_id, snap.version, snap.stream
                    ),
                )),
                None if complete => {
                    let last = match self.streams.get(&snap.stream) {
                        Some(s) => format!("ends at version {}", s.next_version.saturating_sub(1)),
                        None => "has no events".to_string(),
                    };
                    self.push(finding(
                        &snap.path,
                        16,
                        format!(
                            "is of version {}, but stream '{}' {last}: the store rejects it",
                            snap.version, snap.stream
                        ),
                    ));
                }
                // Matches, or part of the log could not be read: its events
                // may be there.
                Some(_) | None => {}
            }
        }
    }
}
