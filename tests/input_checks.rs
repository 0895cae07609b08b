//! Inputs the store refuses with a typed error before anything is written,
//! and files it names when they do not belong in a store.
//!
//! - an append that lists one event id twice;
//! - reads and version lookups of invalid stream names;
//! - a stray file named like a segment after the real last one, and a
//!   directory of that name: open names the stray, not the real segment.

use evstore::{Direction, Error, EventData, ExpectedVersion, Options, Store, Uuid};

#[test]
fn an_append_listing_an_id_twice_is_refused_and_writes_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let store = Store::open(dir.path(), Options::default()).unwrap();
    let id = Uuid::from_u128(42);
    let twice = [
        EventData::new("A", &b"1"[..]).with_id(id),
        EventData::new("B", &b"2"[..]).with_id(Uuid::from_u128(43)),
        EventData::new("C", &b"3"[..]).with_id(id),
    ];
    for _ in 0..2 {
        match store.append("s", ExpectedVersion::Any, &twice) {
            Err(Error::DuplicateEventId {
                stream,
                id: repeated,
            }) => {
                assert_eq!((stream.as_str(), repeated), ("s", id));
            }
            other => panic!("expected DuplicateEventId, got {other:?}"),
        }
    }
    assert_eq!(store.last_position(), None);
    // The same events with distinct ids go in, and their retry is idempotent.
    let distinct = [
        EventData::new("A", &b"1"[..]).with_id(id),
        EventData::new("B", &b"2"[..]).with_id(Uuid::from_u128(43)),
    ];
    let first = store
        .append("s", ExpectedVersion::NoStream, &distinct)
        .unwrap();
    let retry = store
        .append("s", ExpectedVersion::NoStream, &distinct)
        .unwrap();
    assert_eq!(first, retry);
    assert_eq!(store.last_position(), Some(1));
}

#[test]
fn reads_validate_stream_names_like_appends() {
    let dir = tempfile::tempdir().unwrap();
    let store = Store::open(dir.path(), Options::default().max_stream_name_len(8)).unwrap();
    for name in ["", "$all", "too-long-a-name", "tab\there"] {
        assert!(
            matches!(
                store.read_stream(name, 0, Direction::Forward, 10),
                Err(Error::InvalidStreamName { .. })
            ),
            "read_stream({name:?})"
        );
        assert!(
            matches!(
                store.stream_version(name),
                Err(Error::InvalidStreamName { .. })
            ),
            "stream_version({name:?})"
        );
        assert!(matches!(
            store.append(name, ExpectedVersion::Any, &[EventData::new("E", &b""[..])]),
            Err(Error::InvalidStreamName { .. })
        ));
    }
    assert!(store
        .read_stream("ok", 0, Direction::Forward, 10)
        .unwrap()
        .is_empty());
}

fn store_with_events(dir: &std::path::Path) {
    store_with(dir, 40);
}

fn store_with(dir: &std::path::Path, count: u32) {
    let store = Store::open(dir, Options::default().segment_size(4096)).unwrap();
    for i in 0..count {
        store
            .append(
                "s",
                ExpectedVersion::Any,
                &[EventData::new("E", vec![i as u8; 200])],
            )
            .unwrap();
    }
    store.close().unwrap();
}

#[test]
fn a_stray_segment_file_is_named_not_the_real_last_segment() {
    let dir = tempfile::tempdir().unwrap();
    store_with_events(dir.path());
    let segments = dir.path().join("segments");
    let stray = segments.join("00000000000000999999.log");

    // A copy of a real segment under a later name: its header disagrees.
    let first = segments.join("00000000000000000000.log");
    std::fs::copy(&first, &stray).unwrap();
    match Store::open(dir.path(), Options::default().segment_size(4096)) {
        Err(Error::Corrupted { file, .. }) => assert_eq!(file, stray),
        other => panic!("expected the stray file to be named, got {other:?}"),
    }

    // A foreign file under that name.
    std::fs::write(&stray, b"not a segment at all").unwrap();
    match Store::open(dir.path(), Options::default().segment_size(4096)) {
        Err(Error::Corrupted { file, .. }) => assert_eq!(file, stray),
        other => panic!("expected the foreign file to be named, got {other:?}"),
    }
    std::fs::remove_file(&stray).unwrap();

    // A directory of that name.
    std::fs::create_dir(&stray).unwrap();
    match Store::open(dir.path(), Options::default().segment_size(4096)) {
        Err(Error::Io { context, .. }) => {
            assert!(context.contains("00000000000000999999.log"), "{context}")
        }
        Err(Error::Corrupted { file, .. }) => assert_eq!(file, stray),
        other => panic!("expected the stray directory to be named, got {other:?}"),
    }
    std::fs::remove_dir(&stray).unwrap();

    // Without the stray, the store opens with every event.
    let store = Store::open(dir.path(), Options::default().segment_size(4096)).unwrap();
    assert_eq!(store.last_position(), Some(39));
}

#[test]
fn a_segment_after_one_never_sealed_is_named() {
    // Two stores with the same first events; the longer one has a segment
    // more. That segment, copied beside the shorter store's unsealed last
    // one, has a sound header but cannot belong to the log.
    let short = tempfile::tempdir().unwrap();
    let long = tempfile::tempdir().unwrap();
    store_with(short.path(), 40);
    store_with(long.path(), 80);
    let names = |dir: &std::path::Path| {
        let mut names: Vec<String> = std::fs::read_dir(dir.join("segments"))
            .unwrap()
            .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
            .filter(|n| n.ends_with(".log"))
            .collect();
        names.sort();
        names
    };
    let short_names = names(short.path());
    let extra = names(long.path())
        .into_iter()
        .find(|n| !short_names.contains(n) && n > short_names.last().unwrap())
        .expect("the longer store has a later segment");
    let stray = short.path().join("segments").join(&extra);
    std::fs::copy(long.path().join("segments").join(&extra), &stray).unwrap();
    match Store::open(short.path(), Options::default().segment_size(4096)) {
        Err(Error::Corrupted { file, reason, .. }) => {
            assert_eq!(file, stray, "{reason}");
        }
        other => panic!("expected the stray segment to be named, got {other:?}"),
    }
}
