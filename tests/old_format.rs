//! A store written by segment format version 1 (checked in under
//! `tests/fixtures/v1-store`: 600 events over 7 streams, 64 KiB segments,
//! one sealed with its index file, one active) opens, reads, takes
//! queries and new (tagged) appends, and grows in version 2 segments.

use evstore::{
    Direction, EventData, ExpectedVersion, Options, Query, QueryItem, Store, Uuid, SEGMENTS_DIR,
};
use std::fs;
use std::path::Path;

const FIXTURE: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/fixtures/v1-store");

fn copy_dir(from: &Path, to: &Path) {
    fs::create_dir_all(to).unwrap();
    for entry in fs::read_dir(from).unwrap() {
        let entry = entry.unwrap();
        let target = to.join(entry.file_name());
        if entry.file_type().unwrap().is_dir() {
            copy_dir(&entry.path(), &target);
        } else {
            fs::copy(entry.path(), &target).unwrap();
        }
    }
}

fn segment_versions(dir: &Path) -> Vec<(String, u32)> {
    let mut found: Vec<(String, u32)> = fs::read_dir(dir.join(SEGMENTS_DIR))
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().is_some_and(|x| x == "log"))
        .map(|p| {
            let bytes = fs::read(&p).unwrap();
            let version = u32::from_le_bytes(bytes[8..12].try_into().unwrap());
            (
                p.file_name().unwrap().to_string_lossy().into_owned(),
                version,
            )
        })
        .collect();
    found.sort();
    found
}

fn options() -> Options {
    Options::default().segment_size(64 * 1024)
}

#[test]
fn a_version_1_store_opens_reads_and_grows_in_version_2() {
    let dir = tempfile::tempdir().unwrap();
    copy_dir(Path::new(FIXTURE), dir.path());
    assert!(segment_versions(dir.path()).iter().all(|(_, v)| *v == 1));

    let store = Store::open(dir.path(), options()).unwrap();
    let all = store.read_all(0, Direction::Forward, usize::MAX).unwrap();
    assert_eq!(all.len(), 600);
    for (i, event) in all.iter().enumerate() {
        let i = i as u64;
        assert_eq!(event.position, i);
        assert_eq!(&*event.stream, format!("account-{}", i % 7));
        assert_eq!(event.version, i / 7);
        assert_eq!(event.id, Uuid::from_u128(0x1000 + u128::from(i)));
        let kind = if i.is_multiple_of(2) {
            "Deposited"
        } else {
            "Withdrawn"
        };
        assert_eq!(&*event.event_type, kind);
        assert_eq!(&event.payload[..], format!("{{\"n\":{i}}}").as_bytes());
        assert_eq!(&event.metadata[..], b"m");
        assert!(event.tags.is_empty());
    }
    // Queries by type work on version 1 segments (no tags there).
    let withdrawn = Query::items([QueryItem::new().types(["Withdrawn"])]);
    let read = store
        .read_query(&withdrawn, 0, Direction::Forward, usize::MAX)
        .unwrap();
    assert_eq!(read.events.len(), 300);
    assert_eq!(read.head, Some(599));

    // New appends carry tags, and continue the streams' versions.
    for i in 0..500u64 {
        let event =
            EventData::new("Audited", vec![0u8; 100]).with_tags([format!("audit:{}", i % 3)]);
        store
            .append("account-0", ExpectedVersion::Any, &[event])
            .unwrap();
    }
    assert_eq!(store.stream_version("account-0").unwrap(), Some(85 + 500));
    store.close().unwrap();

    let versions = segment_versions(dir.path());
    assert!(versions.len() > 3, "{versions:?}");
    assert_eq!(&versions[0].1, &1);
    assert!(
        versions.iter().skip(2).all(|(_, v)| *v == 2),
        "segments created now are version 2: {versions:?}"
    );

    let store = Store::open(dir.path(), options()).unwrap();
    let audited = store
        .read_query(
            &Query::tagged(["audit:1"]),
            0,
            Direction::Forward,
            usize::MAX,
        )
        .unwrap();
    assert_eq!(audited.events.len(), 167);
    assert!(audited.events.iter().all(|e| e.position >= 600));
    let old = store
        .read_stream("account-3", 0, Direction::Forward, 1000)
        .unwrap();
    assert_eq!(old.len(), 86);
    assert_eq!(old[85].version, 85);
}
