//! The key store against the sealed events: every key that sealed an event
//! is either held or recorded as forgotten. One that is neither means the
//! key store was damaged, removed or replaced, and those events, which
//! reads refuse to hand out, can no longer be opened.

use super::{error_finding, finding, Verifier};
use crate::key_store::{KeyFate, KeySet, KEYS_DIR, KEYS_FILE};
use crate::layout::SEGMENTS_DIR;
use std::path::Path;

/// Findings of missing keys reported one by one; the rest are counted.
const MAX_KEY_FINDINGS: usize = 20;

impl Verifier<'_, '_> {
    /// Checks the key store file, then the key of every sealed event.
    pub(super) fn check_keys(&mut self, dir: &Path) {
        let path = dir.join(KEYS_DIR).join(KEYS_FILE);
        let keys = match KeySet::read(self.storage, dir) {
            Ok(keys) => keys,
            Err(error) => {
                self.push(error_finding(&path, error));
                return;
            }
        };
        let mut missing: Vec<(u64, &str, u64)> = self
            .sealed_keys
            .iter()
            .flat_map(|(subject, ids)| {
                ids.iter()
                    .map(move |(&id, &position)| (position, subject.as_str(), id))
            })
            .filter(|&(_, subject, id)| keys.fate(subject, id) == KeyFate::Missing)
            .collect();
        missing.sort_unstable();
        let count = missing.len();
        let findings: Vec<_> = missing
            .into_iter()
            .take(MAX_KEY_FINDINGS)
            .map(|(position, subject, id)| {
                finding(
                    dir.join(SEGMENTS_DIR),
                    0,
                    format!(
                        "the event at position {position} is sealed for subject '{subject}' with \
                         key {id:#018x}, which the key store ({}) neither holds nor records as \
                         forgotten: the key store was damaged, removed or replaced, and reads of \
                         that subject's events fail",
                        path.display()
                    ),
                )
            })
            .collect();
        for found in findings {
            self.push(found);
        }
        if count > MAX_KEY_FINDINGS {
            self.push(finding(
                &path,
                0,
                format!(
                    "{} more keys of sealed events are missing from the key store",
                    count - MAX_KEY_FINDINGS
                ),
            ));
        }
    }
}
