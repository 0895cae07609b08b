//! Sealed segments' postings files (`<base>.tags`): written at seal, read
//! in place by queries instead of the segments, rebuilt when missing or
//! damaged, and never written by a read-only handle.

use evstore::{
    Direction, EventData, ExpectedVersion, Options, Query, QueryItem, Store, SEGMENTS_DIR,
};
use std::fs;
use std::path::{Path, PathBuf};

fn options() -> Options {
    Options::default()
        .segment_size(32 << 10)
        .background_index_writes(false)
}

/// 400 events over many segments; event `i` is tagged `mod3:<i % 3>` and
/// `i` itself, typed by `i % 2`.
fn fill(dir: &Path) {
    let store = Store::open(dir, options()).unwrap();
    for i in 0..400u64 {
        let event = EventData::new(if i % 2 == 0 { "Even" } else { "Odd" }, vec![7u8; 300])
            .with_tags([format!("mod3:{}", i % 3), format!("n:{i}")]);
        store
            .append(&format!("s{}", i % 5), ExpectedVersion::Any, &[event])
            .unwrap();
    }
    store.close().unwrap();
}

fn files_with(dir: &Path, suffix: &str) -> Vec<PathBuf> {
    let mut found: Vec<PathBuf> = fs::read_dir(dir.join(SEGMENTS_DIR))
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.to_string_lossy().ends_with(suffix))
        .collect();
    found.sort();
    found
}

fn positions(store: &Store, query: &Query) -> Vec<u64> {
    store
        .read_query(query, 0, Direction::Forward, usize::MAX)
        .unwrap()
        .events
        .iter()
        .map(|e| e.position)
        .collect()
}

#[test]
fn every_sealed_segment_gets_a_postings_file() {
    let dir = tempfile::tempdir().unwrap();
    fill(dir.path());
    let logs = files_with(dir.path(), ".log");
    let tags = files_with(dir.path(), ".tags");
    assert!(logs.len() > 3);
    assert_eq!(tags.len(), logs.len() - 1, "one per sealed segment");
    for (log, tag) in logs.iter().zip(&tags) {
        assert_eq!(log.file_stem(), tag.file_stem());
    }
}

/// A query reads the postings files and the matching records only: damage
/// in a record no query matches goes unnoticed by it (a scan of the
/// segment would report it).
#[test]
fn queries_read_postings_files_not_segments() {
    let dir = tempfile::tempdir().unwrap();
    fill(dir.path());
    let store = Store::open(dir.path(), options()).unwrap();
    let victim = store.read_all(1, Direction::Forward, 1).unwrap().remove(0);
    assert_eq!(victim.position, 1);
    store.close().unwrap();
    // Flip a payload byte of event 1 (tags mod3:1, n:1) in the first segment.
    let first_log = files_with(dir.path(), ".log").remove(0);
    let mut bytes = fs::read(&first_log).unwrap();
    let at = bytes
        .windows(3)
        .position(|w| w == b"n:1")
        .map(|p| p + 3 + 20)
        .unwrap();
    bytes[at] ^= 0xFF;
    fs::write(&first_log, &bytes).unwrap();

    let store = Store::open(dir.path(), options()).unwrap();
    let mod3_0 = positions(&store, &Query::tagged(["mod3:0"]));
    assert_eq!(mod3_0, (0..400).step_by(3).collect::<Vec<u64>>());
    assert!(store
        .read_query(
            &Query::tagged(["mod3:1"]),
            0,
            Direction::Forward,
            usize::MAX
        )
        .is_err());
}

#[test]
fn missing_or_damaged_postings_files_are_rebuilt() {
    let dir = tempfile::tempdir().unwrap();
    fill(dir.path());
    let tags = files_with(dir.path(), ".tags");
    let pristine: Vec<Vec<u8>> = tags.iter().map(|p| fs::read(p).unwrap()).collect();
    fs::remove_file(&tags[0]).unwrap();
    let mut damaged = pristine[1].clone();
    let middle = damaged.len() / 2;
    damaged[middle] ^= 0x01;
    fs::write(&tags[1], &damaged).unwrap();
    fs::write(&tags[2], b"short").unwrap();

    let store = Store::open(dir.path(), options()).unwrap();
    let odd_mod3_2 = Query::items([QueryItem::new().types(["Odd"]).tags(["mod3:2"])]);
    let want: Vec<u64> = (0..400).filter(|i| i % 2 == 1 && i % 3 == 2).collect();
    assert_eq!(positions(&store, &odd_mod3_2), want);
    for (path, original) in tags.iter().zip(&pristine).take(3) {
        assert_eq!(
            &fs::read(path).unwrap(),
            original,
            "{} rewritten",
            path.display()
        );
    }
}

#[test]
fn a_read_only_handle_answers_queries_and_writes_no_postings_file() {
    let dir = tempfile::tempdir().unwrap();
    fill(dir.path());
    for path in files_with(dir.path(), ".tags") {
        fs::remove_file(path).unwrap();
    }
    let reader = Store::open_read_only(dir.path(), options()).unwrap();
    let n7 = Query::tagged(["n:7"]);
    assert_eq!(positions(&reader, &n7), [7]);
    assert!(files_with(dir.path(), ".tags").is_empty());
    // A writer opened later may write them; the reader keeps answering.
    let writer = Store::open(dir.path(), options()).unwrap();
    // Events appended after the reader opened reach its queries too.
    let late = EventData::new("Late", &b""[..]).with_tags(["n:7"]);
    let appended = writer.append("s0", ExpectedVersion::Any, &[late]).unwrap();
    assert!(reader.refresh().unwrap() > appended.last_position);
    assert_eq!(positions(&reader, &n7), [7, appended.last_position]);
}
