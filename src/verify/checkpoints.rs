//! Checking checkpoint files, and each checkpoint against the log.

use super::inventory::Inventory;
use super::{error_finding, finding, Verifier};
use crate::checkpoint::{self, CHECKPOINT_HEADER_LEN};
use crate::error::Error;
use std::path::PathBuf;
use uuid::Uuid;

/// A checkpoint that decoded, waiting to be checked against the log.
pub(super) struct CheckpointCheck {
    pub(super) path: PathBuf,
    pub(super) position: u64,
    pub(super) previous_id: Uuid,
}

impl Verifier<'_, '_> {
    pub(super) fn check_checkpoint_files(&mut self, inventory: &Inventory) -> Vec<CheckpointCheck> {
        let mut checks = Vec::new();
        for entry in &inventory.checkpoints {
            let (path, file_name) = (&entry.path, &entry.file_name);
            if let Some(bytes) = &entry.bytes {
                self.report.checkpoints += 1;
                match checkpoint::decode_found(path, bytes) {
                    Ok((name, position, previous_id)) => {
                        let expected = checkpoint::file_name(&name);
                        if *file_name == expected {
                            if previous_id != Uuid::nil() {
                                if let Some(before) = position.checked_sub(1) {
                                    self.wanted.by_position.insert(before, None);
                                }
                            }
                            checks.push(CheckpointCheck {
                                path: path.clone(),
                                position,
                                previous_id,
                            });
                        } else {
                            self.push(finding(
                                path,
                                CHECKPOINT_HEADER_LEN as u64,
                                format!(
                                    "holds the checkpoint '{name}', which is saved as {expected}: the store never reads it"
                                ),
                            ));
                        }
                    }
                    Err(Error::UnsupportedFormat { .. }) => {
                        self.report.checkpoints_skipped_newer_format += 1;
                    }
                    Err(e) => {
                        let found = error_finding(path, e);
                        self.push(found);
                    }
                }
            }
            self.meter.finish(path, entry.size);
        }
        checks
    }

    pub(super) fn check_checkpoints_against_log(
        &mut self,
        checkpoints: &[CheckpointCheck],
        log_end: Option<u64>,
    ) {
        for ckpt in checkpoints {
            if let Some(end) = log_end {
                if ckpt.position > end {
                    self.report.notes.push(finding(
                        &ckpt.path,
                        16,
                        format!(
                            "position {} is past the end of the log, at {end}",
                            ckpt.position
                        ),
                    ));
                    continue;
                }
            }
            let Some(before) = ckpt.position.checked_sub(1) else {
                continue;
            };
            if ckpt.previous_id == Uuid::nil() {
                continue;
            }
            match self.wanted.by_position.get(&before).copied().flatten() {
                Some(id) if id != ckpt.previous_id => self.report.notes.push(finding(
                    &ckpt.path,
                    32,
                    format!(
                        "was saved after event {}, but the event at position {before} is {id}",
                        ckpt.previous_id
                    ),
                )),
                // Not found: that part of the log could not be read.
                _ => {}
            }
        }
    }
}
