//! Reopen after close and after damage: a torn tail is cut back to the last
//! whole batch, damage anywhere else is a typed error naming file and offset.

mod common;

use common::flip_byte;
use evstore::format::{BATCH_HEADER_LEN, RECORD_HEADER_LEN, SEGMENT_HEADER_LEN};
use evstore::{Direction, Error, EventData, ExpectedVersion, Options, Store, Uuid};
use std::fs;
use std::path::{Path, PathBuf};

const SEGMENT: u64 = 64 * 1024;

fn options() -> Options {
    Options::default().segment_size(SEGMENT)
}

fn align8(n: usize) -> usize {
    (n + 7) & !7
}

/// Bytes the batch takes on disk.
fn batch_len(stream: &str, events: &[EventData]) -> usize {
    BATCH_HEADER_LEN
        + events
            .iter()
            .map(|e| {
                align8(
                    RECORD_HEADER_LEN
                        + stream.len()
                        + e.event_type().len()
                        + e.metadata().len()
                        + e.payload().len(),
                )
            })
            .sum::<usize>()
}

fn batch(n: usize, tag: u8) -> Vec<EventData> {
    (0..n)
        .map(|i| {
            EventData::new(
                "Deposited",
                vec![tag.wrapping_add(i as u8) | 1; 20 + i * 13],
            )
            .with_metadata(vec![0xEE; i])
            .with_id(Uuid::from_u128(((tag as u128) << 32) | i as u128))
        })
        .collect()
}

fn segment_files(dir: &Path) -> Vec<PathBuf> {
    let mut files: Vec<PathBuf> = fs::read_dir(dir.join("segments"))
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().is_some_and(|x| x == "log"))
        .collect();
    files.sort();
    files
}

fn positions(store: &Store) -> Vec<u64> {
    store
        .read_all(0, Direction::Forward, usize::MAX)
        .unwrap()
        .iter()
        .map(|e| e.position)
        .collect()
}

#[test]
fn reopen_after_close_keeps_everything() {
    let dir = tempfile::tempdir().unwrap();
    let store = Store::open(dir.path(), options()).unwrap();
    for i in 0..10u8 {
        store
            .append("acct", ExpectedVersion::Any, &batch(3, i))
            .unwrap();
    }
    let before = store.read_all(0, Direction::Forward, usize::MAX).unwrap();
    store.close().unwrap();
    let store = Store::open(dir.path(), options()).unwrap();
    assert_eq!(
        store.read_all(0, Direction::Forward, usize::MAX).unwrap(),
        before
    );
    assert_eq!(store.recovery_stats().torn_bytes, 0);
}

/// The last segment's final batch zeroed or garbled from every byte on: the
/// store opens with exactly the whole batches before it, stays appendable,
/// and reopens again. The file cut there instead is refused as damage.
#[test]
fn torn_final_batch_at_every_offset() {
    let dir = tempfile::tempdir().unwrap();
    let batches: Vec<Vec<EventData>> = (0..4u8).map(|i| batch(i as usize + 1, i * 16)).collect();
    {
        let store = Store::open(dir.path(), options()).unwrap();
        for b in &batches {
            store.append("acct", ExpectedVersion::Any, b).unwrap();
        }
    }
    let file = segment_files(dir.path()).pop().unwrap();
    let pristine = fs::read(&file).unwrap();
    let (final_start, final_end) = last_event_batch(&pristine);
    assert_eq!(final_end - final_start, batch_len("acct", &batches[3]));
    let events_before = 1 + 2 + 3;

    // A crash while the final batch was being written: everything from the
    // cut on is missing, zero or garbage, and nothing written after the batch
    // (such as the durable mark of a clean close) ever reached the disk.
    for variant in ["truncate", "zero", "garbage"] {
        for cut in final_start..=final_end {
            let mut bytes = pristine.clone();
            if cut < final_end {
                bytes[cut..].fill(0);
            }
            match variant {
                "truncate" => bytes.truncate(cut),
                "zero" => {}
                _ => {
                    // A deterministic scramble of the rest of the batch.
                    for (i, b) in bytes[cut..final_end].iter_mut().enumerate() {
                        *b = (i as u8).wrapping_mul(31).wrapping_add(cut as u8) | 0x40;
                    }
                }
            }
            for extra in segment_files(dir.path()).into_iter().filter(|f| f != &file) {
                fs::remove_file(extra).unwrap();
            }
            fs::write(&file, &bytes).unwrap();
            if variant == "truncate" {
                // A segment is allocated whole before it takes its name, so
                // no crash shortens it: a cut file lost events that may
                // have been acknowledged, and the open says so.
                for open in [Store::open, Store::open_read_only] {
                    match open(dir.path(), options()) {
                        Err(Error::Corrupted { reason, .. }) => {
                            assert!(reason.contains("shorter than"), "{reason}");
                        }
                        other => panic!("truncated at {cut}: {:?}", other.map(|_| ())),
                    }
                }
                continue;
            }
            let store = Store::open(dir.path(), options()).unwrap_or_else(|e| {
                panic!("{variant} at {cut}: open failed: {e}");
            });
            // Losing only the final record's zero padding changes nothing.
            let intact = cut == final_end
                || (variant == "zero" && pristine[cut..final_end].iter().all(|&b| b == 0));
            let expected = if intact {
                events_before + 4
            } else {
                events_before
            };
            assert_eq!(
                positions(&store),
                (0..expected as u64).collect::<Vec<_>>(),
                "{variant} at {cut}"
            );
            let left_bytes = match variant {
                "truncate" => false,
                "zero" => cut > final_start,
                _ => true,
            };
            if !intact && left_bytes {
                assert!(store.recovery_stats().torn_bytes > 0, "{variant} at {cut}");
            }
            // The store goes on from the cut, and what it writes reads back.
            let r = store
                .append(
                    "acct",
                    ExpectedVersion::Exact(expected as u64 - 1),
                    &batch(2, 0xA0),
                )
                .unwrap();
            assert_eq!(r.first_position, expected as u64);
            drop(store);
            let store = Store::open(dir.path(), options()).unwrap();
            assert_eq!(
                positions(&store).len(),
                expected + 2,
                "{variant} at {cut}, reopened"
            );
            drop(store);
        }
    }
}

/// Offsets of the last batch of events in a segment, found by walking the
/// batch headers (events, seals and durable marks) from the segment header.
fn last_event_batch(segment: &[u8]) -> (usize, usize) {
    let mut at = SEGMENT_HEADER_LEN;
    let mut last = None;
    while at + BATCH_HEADER_LEN <= segment.len() {
        let len = u32::from_le_bytes(segment[at + 4..at + 8].try_into().unwrap()) as usize;
        let kind = u32::from_le_bytes(segment[at + 8..at + 12].try_into().unwrap());
        if len == 0 {
            break;
        }
        if kind == 1 {
            last = Some((at, at + len));
        }
        at += len;
    }
    last.expect("the segment holds a batch of events")
}

fn expect_corrupted(dir: &Path, file: &Path, at_or_before: u64) {
    match Store::open(dir, options()) {
        Err(Error::Corrupted {
            file: f,
            offset,
            reason,
        }) => {
            assert_eq!(f, file, "{reason}");
            assert!(
                offset <= at_or_before,
                "offset {offset} after the flip at {at_or_before}"
            );
            assert!(offset >= SEGMENT_HEADER_LEN as u64);
        }
        other => panic!("expected corruption, got {other:?}"),
    }
}

#[test]
fn bit_flip_in_an_earlier_record_of_the_active_segment_is_corruption() {
    let dir = tempfile::tempdir().unwrap();
    {
        let store = Store::open(dir.path(), options()).unwrap();
        for i in 0..5u8 {
            store
                .append("acct", ExpectedVersion::Any, &batch(2, i))
                .unwrap();
        }
    }
    let file = segment_files(dir.path()).pop().unwrap();
    let first_record = (SEGMENT_HEADER_LEN + BATCH_HEADER_LEN) as u64;
    let payload = first_record + (RECORD_HEADER_LEN + "acct".len() + "Deposited".len()) as u64;
    // The record's header, its payload, its last byte and its padding.
    for at in [first_record + 9, payload + 3, payload + 19, payload + 20] {
        flip_byte(&file, at);
        expect_corrupted(dir.path(), &file, at);
        // The damaged store is left as it was: still refused.
        expect_corrupted(dir.path(), &file, at);
        flip_byte(&file, at);
    }
    let store = Store::open(dir.path(), options()).unwrap();
    assert_eq!(positions(&store).len(), 10);
}

#[test]
fn bit_flip_in_a_sealed_segment_is_corruption() {
    let dir = tempfile::tempdir().unwrap();
    let tiny = Options::default().segment_size(4096);
    {
        let store = Store::open(dir.path(), tiny.clone()).unwrap();
        for i in 0..100u8 {
            store
                .append("acct", ExpectedVersion::Any, &batch(2, i))
                .unwrap();
        }
    }
    let files = segment_files(dir.path());
    assert!(files.len() > 3);
    // Sealed segments are not reread at open (their index files say where
    // everything is); a damaged record is caught by its checksum when read.
    let first_record = (SEGMENT_HEADER_LEN + BATCH_HEADER_LEN) as u64;
    for target in [&files[0], &files[1]] {
        let at = first_record + 8;
        flip_byte(target, at);
        let store = Store::open(dir.path(), tiny.clone()).unwrap();
        let reads = [
            store.read_all(0, Direction::Forward, usize::MAX),
            store.read_stream("acct", 0, Direction::Forward, usize::MAX),
            store.read_stream("acct", u64::MAX, Direction::Backward, usize::MAX),
        ];
        for read in reads {
            match read {
                Err(Error::Corrupted { file, offset, .. }) => {
                    assert_eq!(&file, target);
                    assert_eq!(offset, first_record);
                }
                other => panic!("expected corruption, got {other:?}"),
            }
        }
        drop(store);
        flip_byte(target, at);
    }
    // Restored, the store opens with everything.
    let store = Store::open(dir.path(), tiny).unwrap();
    assert_eq!(positions(&store).len(), 200);
}

#[test]
fn damaged_headers_and_missing_segments_are_typed_errors() {
    let dir = tempfile::tempdir().unwrap();
    let tiny = Options::default().segment_size(4096);
    {
        let store = Store::open(dir.path(), tiny.clone()).unwrap();
        for i in 0..100u8 {
            store
                .append("acct", ExpectedVersion::Any, &batch(2, i))
                .unwrap();
        }
    }
    let files = segment_files(dir.path());
    assert!(files.len() >= 5, "{files:?}");
    let first = &files[0];
    let pristine = fs::read(first).unwrap();

    // Bad magic.
    let mut bytes = pristine.clone();
    bytes[0] = b'X';
    fs::write(first, &bytes).unwrap();
    match Store::open(dir.path(), tiny.clone()) {
        Err(Error::Corrupted {
            file,
            offset: 0,
            reason,
        }) => {
            assert_eq!(&file, first);
            assert!(reason.contains("magic"), "{reason}");
        }
        other => panic!("expected bad magic, got {other:?}"),
    }

    // A format version from the future.
    let mut bytes = pristine.clone();
    bytes[8..12].copy_from_slice(&7u32.to_le_bytes());
    fs::write(first, &bytes).unwrap();
    match Store::open(dir.path(), tiny.clone()) {
        Err(Error::UnsupportedFormat {
            file,
            found: 7,
            supported: 2,
        }) => assert_eq!(&file, first),
        other => panic!("expected unsupported format, got {other:?}"),
    }

    // A segment in the middle goes missing.
    fs::write(first, &pristine).unwrap();
    let moved = dir.path().join("aside");
    fs::rename(&files[2], &moved).unwrap();
    match Store::open(dir.path(), tiny.clone()) {
        Err(Error::Corrupted { file, reason, .. }) => {
            assert_eq!(file, files[3]);
            assert!(reason.contains("missing"), "{reason}");
        }
        other => panic!("expected a gap to be reported, got {other:?}"),
    }
    fs::rename(&moved, &files[2]).unwrap();
    let store = Store::open(dir.path(), tiny).unwrap();
    assert_eq!(positions(&store).len(), 200);
}

#[test]
fn leftover_temporary_segment_is_discarded() {
    let dir = tempfile::tempdir().unwrap();
    {
        let store = Store::open(dir.path(), options()).unwrap();
        store
            .append("a", ExpectedVersion::Any, &batch(1, 1))
            .unwrap();
    }
    // As if a crash hit while the next segment was being prepared.
    fs::write(
        dir.path().join("segments").join("next.tmp"),
        vec![0xFFu8; 1000],
    )
    .unwrap();
    let store = Store::open(dir.path(), options()).unwrap();
    assert_eq!(positions(&store), [0]);
    store
        .append("a", ExpectedVersion::Exact(0), &batch(1, 2))
        .unwrap();
}

#[test]
fn damage_after_open_is_reported_by_reads() {
    let dir = tempfile::tempdir().unwrap();
    let store = Store::open(dir.path(), options()).unwrap();
    for i in 0..4u8 {
        store
            .append("acct", ExpectedVersion::Any, &batch(1, i))
            .unwrap();
    }
    let file = segment_files(dir.path()).pop().unwrap();
    // Inside the payload of the first record, while the store is open.
    let at = (SEGMENT_HEADER_LEN + BATCH_HEADER_LEN + RECORD_HEADER_LEN + 16) as u64;
    flip_byte(&file, at);
    for read in [
        store.read_all(0, Direction::Forward, 10),
        store.read_all(3, Direction::Backward, 10),
        store.read_stream("acct", 0, Direction::Forward, 10),
    ] {
        match read {
            Err(Error::Corrupted {
                file: f, offset, ..
            }) => {
                assert_eq!(f, file);
                assert_eq!(offset, (SEGMENT_HEADER_LEN + BATCH_HEADER_LEN) as u64);
            }
            other => panic!("expected corruption, got {other:?}"),
        }
    }
    // Events before or after the damaged one still read.
    assert_eq!(store.read_all(1, Direction::Forward, 10).unwrap().len(), 3);
}
