//! Where a lookup last found a stream's record in an index file.
//!
//! Finding a stream in an index file costs a probe of its stream table,
//! then a read of the stream's record there; the record is what the lookup
//! wants. Each stream's summary remembers where the last lookup found its
//! record, so the next lookup of the stream in that segment reads the
//! record straight away. What it reads is checked like any record found by
//! a probe (it must lie within the file's `streams` section and bear the
//! stream's name), so a hint that no longer fits costs a probe, never a
//! wrong answer. Eight bytes per stream, in memory only.

use std::sync::atomic::{AtomicU64, Ordering};

/// No record found yet.
const NONE: u64 = u64::MAX;

/// The segment and record offset where a lookup last found a stream's
/// record; shared by concurrent lookups, each of which may replace it.
#[derive(Debug)]
pub struct RecordHint(AtomicU64);

impl Default for RecordHint {
    fn default() -> Self {
        RecordHint(AtomicU64::new(NONE))
    }
}

impl RecordHint {
    /// The offset of the stream's record in the `streams` section of the
    /// index file of segment `ordinal`, if a lookup found it there.
    pub fn get(&self, ordinal: u32) -> Option<u32> {
        let hint = self.0.load(Ordering::Relaxed);
        #[expect(
            clippy::cast_possible_truncation,
            reason = "the low half is the record offset"
        )]
        let record = hint as u32;
        (hint != NONE && hint >> 32 == u64::from(ordinal)).then_some(record)
    }

    /// Remembers that the stream's record in segment `ordinal`'s index file
    /// is at `record`.
    pub fn set(&self, ordinal: u32, record: u32) {
        // Relaxed: a hint is only ever a guess that is checked before use.
        self.0.store(
            u64::from(ordinal) << 32 | u64::from(record),
            Ordering::Relaxed,
        );
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    #[test]
    fn a_hint_is_for_one_segment() {
        let hint = RecordHint::default();
        assert_eq!(hint.get(0), None);
        hint.set(3, 4096);
        assert_eq!(hint.get(3), Some(4096));
        assert_eq!(hint.get(2), None);
        hint.set(2, 0);
        assert_eq!((hint.get(2), hint.get(3)), (Some(0), None));
    }
}
