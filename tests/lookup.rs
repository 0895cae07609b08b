//! Single-event lookups by (stream, version) across many sealed segments:
//! every lookup, and every short read at a random version, gives what a
//! read of the whole stream gives, while the store is written, after
//! reopening, after index files are damaged, removed or left from the
//! previous format version, with colliding stream hashes, and from a
//! read-only store beside the writer. Streams range from one event to
//! events in every segment, so lookups go straight through the stream
//! directories and, for versions older than those reach, by search.

mod common;

use common::{flip_byte, Rng};
use evstore::verify::verify_store;
use evstore::{Direction, EventData, ExpectedVersion, Options, RecordedEvent, Store, Uuid};
use std::collections::BTreeMap;
use std::fs;
use std::path::{Path, PathBuf};

const SEGMENT: u64 = 16 << 10;

fn options() -> Options {
    Options::default().segment_size(SEGMENT)
}

/// What was appended to each stream: its payloads, by version.
type Model = BTreeMap<String, Vec<Vec<u8>>>;

/// Appends `appends` batches: every one to a hot stream (so those have
/// events in every segment, more than a directory holds), most to one of
/// many cold streams (a few segments each), some to a stream of its own.
fn fill(store: &Store, model: &mut Model, appends: usize, rng: &mut Rng) {
    for _ in 0..appends {
        let stream = match rng.below(10) {
            0..=2 => format!("hot-{}", rng.below(2)),
            3..=8 => format!("cold-{:02}", rng.below(40)),
            _ => format!("single-{}", rng.next()),
        };
        let events = model.entry(stream.clone()).or_default();
        let payloads: Vec<Vec<u8>> = (0..1 + rng.below(3))
            .map(|i| {
                let version = events.len() as u64 + i;
                let mut payload = format!("{stream}/{version}/").into_bytes();
                payload.resize(40 + rng.below(160) as usize, b'.');
                payload
            })
            .collect();
        let batch: Vec<EventData> = payloads
            .iter()
            .map(|payload| {
                let id = u128::from(rng.next()) << 64 | u128::from(rng.next());
                EventData::new("Happened", payload.clone()).with_id(Uuid::from_u128(id))
            })
            .collect();
        let expected = match events.len() as u64 {
            0 => ExpectedVersion::NoStream,
            len => ExpectedVersion::Exact(len - 1),
        };
        let result = store.append(&stream, expected, &batch).unwrap();
        assert_eq!(result.first_version, events.len() as u64);
        events.extend(payloads);
    }
}

fn payloads(events: &[RecordedEvent]) -> Vec<Vec<u8>> {
    events.iter().map(|e| e.payload.to_vec()).collect()
}

/// Every stream read whole matches the model; then `lookups` random
/// single-event lookups, and as many short reads in both directions from
/// random versions, match the whole read.
fn assert_lookups(store: &Store, model: &Model, lookups: usize, seed: u64) {
    let mut whole: BTreeMap<&str, Vec<RecordedEvent>> = BTreeMap::new();
    for (name, events) in model {
        let read = store
            .read_stream(name, 0, Direction::Forward, usize::MAX)
            .unwrap();
        assert_eq!(&payloads(&read), events, "{name} read whole");
        assert!(read.iter().enumerate().all(|(i, e)| e.version == i as u64));
        whole.insert(name, read);
    }
    let names: Vec<&str> = whole.keys().copied().collect();
    let mut rng = Rng(seed);
    for _ in 0..lookups {
        let name = names[rng.below(names.len() as u64) as usize];
        let events = &whole[name];
        let len = events.len() as u64;
        let version = rng.below(len);
        let found = store
            .read_stream(name, version, Direction::Forward, 1)
            .unwrap();
        assert_eq!(
            found,
            [events[version as usize].clone()],
            "{name} version {version}"
        );

        let max = 1 + rng.below(12) as usize;
        let from = rng.below(len + 1);
        let forward = store
            .read_stream(name, from, Direction::Forward, max)
            .unwrap();
        let want: Vec<_> = events
            .iter()
            .skip(from as usize)
            .take(max)
            .cloned()
            .collect();
        assert_eq!(forward, want, "{name} forward from {from} max {max}");
        let backward = store
            .read_stream(name, from, Direction::Backward, max)
            .unwrap();
        let top = from.min(len - 1) as usize + 1;
        let want: Vec<_> = events[top.saturating_sub(max)..top]
            .iter()
            .rev()
            .cloned()
            .collect();
        assert_eq!(backward, want, "{name} backward from {from} max {max}");
    }
}

fn index_files(dir: &Path) -> Vec<PathBuf> {
    let mut files: Vec<PathBuf> = fs::read_dir(dir.join("segments"))
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.to_string_lossy().ends_with(".idx"))
        .collect();
    files.sort();
    files
}

fn assert_verified(dir: &Path) {
    let report = verify_store(dir, &mut |_| {}).unwrap();
    assert!(report.is_clean(), "{:#?}", report.findings);
}

/// A store of many sealed segments, closed, with its model.
fn filled_store(dir: &Path, options: &Options, seed: u64) -> Model {
    let store = Store::open(dir, options.clone()).unwrap();
    let mut model = Model::new();
    let mut rng = Rng(seed);
    for round in 0..4 {
        fill(&store, &mut model, 400, &mut rng);
        // While it is written, index files appear in the background.
        assert_lookups(&store, &model, 300, seed + round);
    }
    store.close().unwrap();
    assert!(
        index_files(dir).len() > 30,
        "{} index files",
        index_files(dir).len()
    );
    model
}

#[test]
fn lookups_match_whole_reads_while_written_and_after_reopen() {
    let dir = tempfile::tempdir().unwrap();
    let model = filled_store(dir.path(), &options(), 11);
    assert!(model["hot-0"].len() > 300);
    assert_verified(dir.path());

    let store = Store::open(dir.path(), options()).unwrap();
    assert_eq!(store.recovery_stats().index_files_rebuilt, 0);
    assert_lookups(&store, &model, 2000, 12);
    assert_eq!(store.index_repairs(), 0);
    store.close().unwrap();
}

#[test]
fn lookups_match_with_index_files_written_in_line() {
    let dir = tempfile::tempdir().unwrap();
    let options = options().background_index_writes(false);
    let model = filled_store(dir.path(), &options, 21);
    assert_verified(dir.path());
    let store = Store::open(dir.path(), options).unwrap();
    assert_lookups(&store, &model, 1000, 22);
}

#[test]
fn lookups_match_after_index_files_are_damaged_or_removed() {
    let dir = tempfile::tempdir().unwrap();
    let model = filled_store(dir.path(), &options(), 31);
    let files = index_files(dir.path());
    let len = |p: &Path| fs::metadata(p).unwrap().len();

    // Damaged in the body: found when first used, served from the segment,
    // rewritten. Later segments' directories point into both.
    flip_byte(&files[3], len(&files[3]) - 1);
    flip_byte(&files[10], len(&files[10]) / 2);
    // Removed: rebuilt at open, its directories found by search.
    fs::remove_file(&files[5]).unwrap();
    fs::remove_file(&files[files.len() - 2]).unwrap();

    let store = Store::open(dir.path(), options()).unwrap();
    assert_eq!(store.recovery_stats().index_files_rebuilt, 2);
    assert_lookups(&store, &model, 2000, 32);
    assert_eq!(store.index_repairs(), 2);
    store.close().unwrap();
    assert_verified(dir.path());

    let store = Store::open(dir.path(), options()).unwrap();
    assert_eq!(store.recovery_stats().index_files_rebuilt, 0);
    assert_lookups(&store, &model, 1000, 33);
    assert_eq!(store.index_repairs(), 0);
    store.close().unwrap();

    // With every index file gone, open rebuilds them all, directories
    // included, and lookups are unchanged.
    for file in index_files(dir.path()) {
        fs::remove_file(file).unwrap();
    }
    let store = Store::open(dir.path(), options()).unwrap();
    assert_eq!(store.recovery_stats().index_files_rebuilt, files.len());
    assert_lookups(&store, &model, 1000, 34);
    store.close().unwrap();
    assert_verified(dir.path());
}

/// The seed of a segment's checksums, as docs/format.md gives it.
fn segment_seed(base: u64) -> u32 {
    let m = base ^ 0x9E37_79B9_7F4A_7C15;
    (m as u32) ^ ((m >> 32) as u32) ^ 0x5EED_0001
}

#[test]
fn index_files_of_the_previous_format_version_are_rebuilt() {
    let dir = tempfile::tempdir().unwrap();
    let model = filled_store(dir.path(), &options(), 41);
    let files = index_files(dir.path());
    // Version 1 files had no directories: mark two as version 1, their
    // header checksums made right, as an older build would have left them.
    for file in [&files[0], &files[7]] {
        let mut bytes = fs::read(file).unwrap();
        let base = u64::from_le_bytes(bytes[16..24].try_into().unwrap());
        bytes[8..12].copy_from_slice(&1u32.to_le_bytes());
        let mut crc = crc32fast::Hasher::new_with_initial(segment_seed(base));
        crc.update(&bytes[..60]);
        let crc = crc.finalize();
        bytes[60..64].copy_from_slice(&crc.to_le_bytes());
        fs::write(file, bytes).unwrap();
    }
    let report = verify_store(dir.path(), &mut |_| {}).unwrap();
    assert_eq!(report.findings.len(), 2, "{:#?}", report.findings);
    assert!(report.findings[0]
        .problem
        .contains("index format version 1"));

    let store = Store::open(dir.path(), options()).unwrap();
    assert_eq!(store.recovery_stats().index_files_rebuilt, 2);
    assert_lookups(&store, &model, 1000, 42);
    store.close().unwrap();
    assert_verified(dir.path());
}

#[test]
fn lookups_tell_colliding_stream_hashes_apart() {
    let dir = tempfile::tempdir().unwrap();
    let options = options().collide_stream_hashes(true);
    let model = filled_store(dir.path(), &options, 51);
    assert_verified(dir.path());
    let store = Store::open(dir.path(), options).unwrap();
    assert_lookups(&store, &model, 1000, 52);
}

#[test]
fn a_read_only_store_beside_the_writer_looks_up_the_same_events() {
    let dir = tempfile::tempdir().unwrap();
    let store = Store::open(dir.path(), options()).unwrap();
    let mut model = Model::new();
    let mut rng = Rng(61);
    fill(&store, &mut model, 800, &mut rng);
    store.flush().unwrap();
    let reader = Store::open_read_only(dir.path(), options()).unwrap();
    assert_lookups(&reader, &model, 500, 62);
    // The reader follows the segments sealed since, served from memory
    // until it adopts their index files.
    fill(&store, &mut model, 800, &mut rng);
    store.flush().unwrap();
    reader.refresh().unwrap();
    assert_lookups(&reader, &model, 500, 63);
    store.close().unwrap();
    reader.refresh().unwrap();
    assert_lookups(&reader, &model, 500, 64);
}
