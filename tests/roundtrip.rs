//! Every field survives a round trip, in both directions, with paging, across
//! segment rollover and across reopen.

use bytes::Bytes;
use evstore::{Direction, EventData, ExpectedVersion, Options, RecordedEvent, Store, Uuid};

fn tiny() -> Options {
    Options::default().segment_size(4096)
}

fn event(i: u64) -> EventData {
    // Sizes vary so records straddle segment boundaries at different points.
    let payload: Vec<u8> = (0..(i * 37 % 700)).map(|b| (b as u8) ^ (i as u8)).collect();
    EventData::new(format!("Type{}", i % 3), payload)
        .with_metadata(format!("{{\"i\":{i}}}").into_bytes())
        .with_id(Uuid::from_u128(0xE0E0_0000 + i as u128))
}

fn assert_same(recorded: &RecordedEvent, sent: &EventData, stream: &str) {
    assert_eq!(&*recorded.stream, stream);
    assert_eq!(&*recorded.event_type, sent.event_type());
    assert_eq!(recorded.id, sent.id());
    assert_eq!(&recorded.metadata, sent.metadata());
    assert_eq!(&recorded.payload, sent.payload());
}

/// Appends `count` events round-robin to three streams, one event per
/// append, returning what was sent per position.
fn fill(store: &Store, count: u64) -> Vec<(String, EventData)> {
    let mut sent = Vec::new();
    for i in 0..count {
        let stream = format!("s-{}", i % 3);
        let e = event(i);
        let expected = match store.stream_version(&stream).unwrap() {
            None => ExpectedVersion::NoStream,
            Some(v) => ExpectedVersion::Exact(v),
        };
        let r = store
            .append(&stream, expected, std::slice::from_ref(&e))
            .unwrap();
        assert_eq!(r.first_position, i);
        assert_eq!(r.first_version, i / 3);
        sent.push((stream, e));
    }
    sent
}

#[test]
fn all_fields_round_trip_across_rollover_and_reopen() {
    let dir = tempfile::tempdir().unwrap();
    let before = std::time::SystemTime::now();
    let sent = {
        let store = Store::open(dir.path(), tiny()).unwrap();
        let sent = fill(&store, 120);
        let all = store.read_all(0, Direction::Forward, usize::MAX).unwrap();
        assert_eq!(all.len(), sent.len());
        for (p, (recorded, (stream, e))) in all.iter().zip(&sent).enumerate() {
            assert_eq!(recorded.position, p as u64);
            assert_eq!(recorded.version, p as u64 / 3);
            assert!(recorded.timestamp() >= before - std::time::Duration::from_secs(1));
            assert_same(recorded, e, stream);
        }
        store.close().unwrap();
        sent
    };
    let store = Store::open(dir.path(), tiny()).unwrap();
    let stats = store.recovery_stats();
    assert!(
        stats.segments > 5,
        "tiny segments must have rolled over: {stats:?}"
    );
    assert_eq!(stats.events, 120);
    assert_eq!(stats.torn_bytes, 0);
    let all = store.read_all(0, Direction::Forward, usize::MAX).unwrap();
    for (recorded, (stream, e)) in all.iter().zip(&sent) {
        assert_same(recorded, e, stream);
    }
    assert_eq!(all.len(), 120);
    // Appends continue where the log left off.
    let r = store
        .append("s-0", ExpectedVersion::Exact(39), &[event(999)])
        .unwrap();
    assert_eq!((r.first_position, r.first_version), (120, 40));
}

#[test]
fn stream_reads_page_in_both_directions() {
    let dir = tempfile::tempdir().unwrap();
    let store = Store::open(dir.path(), tiny()).unwrap();
    let sent = fill(&store, 90);
    let mine: Vec<&EventData> = sent
        .iter()
        .filter(|(s, _)| s == "s-1")
        .map(|(_, e)| e)
        .collect();
    assert_eq!(mine.len(), 30);

    let mut forward = Vec::new();
    let mut from = 0;
    loop {
        let page = store
            .read_stream("s-1", from, Direction::Forward, 7)
            .unwrap();
        if page.is_empty() {
            break;
        }
        assert!(page.len() <= 7);
        from = page.last().unwrap().version + 1;
        forward.extend(page);
    }
    assert_eq!(forward.len(), 30);
    for (v, (recorded, e)) in forward.iter().zip(&mine).enumerate() {
        assert_eq!(recorded.version, v as u64);
        assert_same(recorded, e, "s-1");
    }

    let mut backward = Vec::new();
    let mut from = u64::MAX;
    loop {
        let page = store
            .read_stream("s-1", from, Direction::Backward, 4)
            .unwrap();
        let Some(last) = page.last() else { break };
        let next = last.version.checked_sub(1);
        backward.extend(page);
        match next {
            Some(v) => from = v,
            None => break,
        }
    }
    let versions: Vec<u64> = backward.iter().map(|e| e.version).collect();
    assert_eq!(versions, (0..30).rev().collect::<Vec<_>>());

    let middle = store
        .read_stream("s-1", 10, Direction::Backward, 3)
        .unwrap();
    assert_eq!(
        middle.iter().map(|e| e.version).collect::<Vec<_>>(),
        [10, 9, 8]
    );
    assert!(store
        .read_stream("s-1", 30, Direction::Forward, 3)
        .unwrap()
        .is_empty());
    assert!(store
        .read_stream("missing", 0, Direction::Forward, 3)
        .unwrap()
        .is_empty());
    assert_eq!(store.stream_version("s-1").unwrap(), Some(29));
    assert_eq!(store.stream_version("missing").unwrap(), None);
}

#[test]
fn global_reads_page_in_both_directions() {
    let dir = tempfile::tempdir().unwrap();
    let store = Store::open(dir.path(), tiny()).unwrap();
    fill(&store, 50);
    let page = store.read_all(45, Direction::Forward, 10).unwrap();
    assert_eq!(
        page.iter().map(|e| e.position).collect::<Vec<_>>(),
        [45, 46, 47, 48, 49]
    );
    let page = store.read_all(u64::MAX, Direction::Backward, 3).unwrap();
    assert_eq!(
        page.iter().map(|e| e.position).collect::<Vec<_>>(),
        [49, 48, 47]
    );
    let page = store.read_all(2, Direction::Backward, 10).unwrap();
    assert_eq!(
        page.iter().map(|e| e.position).collect::<Vec<_>>(),
        [2, 1, 0]
    );
    assert!(store
        .read_all(50, Direction::Forward, 10)
        .unwrap()
        .is_empty());
    assert!(store.read_all(0, Direction::Forward, 0).unwrap().is_empty());
    assert_eq!(store.last_position(), Some(49));
}

#[test]
fn multi_event_append_gets_consecutive_versions_and_positions() {
    let dir = tempfile::tempdir().unwrap();
    let store = Store::open(dir.path(), Options::default()).unwrap();
    assert_eq!(store.last_position(), None);
    store
        .append("other", ExpectedVersion::Any, &[event(0)])
        .unwrap();
    let batch: Vec<EventData> = (1..=5).map(event).collect();
    let r = store
        .append("acct", ExpectedVersion::NoStream, &batch)
        .unwrap();
    assert_eq!((r.first_version, r.last_version), (0, 4));
    assert_eq!((r.first_position, r.last_position), (1, 5));
    let read = store
        .read_stream("acct", 0, Direction::Forward, 100)
        .unwrap();
    assert_eq!(read.len(), 5);
    for (recorded, e) in read.iter().zip(&batch) {
        assert_same(recorded, e, "acct");
    }
    // One append, one timestamp.
    assert!(read
        .iter()
        .all(|e| e.timestamp_nanos == read[0].timestamp_nanos));
}

#[test]
fn empty_payload_and_metadata_and_large_event() {
    let dir = tempfile::tempdir().unwrap();
    let store = Store::open(dir.path(), Options::default()).unwrap();
    let empty = EventData::new("Empty", Bytes::new());
    let big = EventData::new("Big", vec![0xA5u8; 3 << 20]);
    store
        .append("x", ExpectedVersion::Any, &[empty.clone(), big.clone()])
        .unwrap();
    let read = store.read_stream("x", 0, Direction::Forward, 10).unwrap();
    assert_same(&read[0], &empty, "x");
    assert_same(&read[1], &big, "x");
}

#[test]
fn unicode_stream_names_and_types() {
    let dir = tempfile::tempdir().unwrap();
    let store = Store::open(dir.path(), Options::default()).unwrap();
    let e = EventData::new("Größe→Änderung", &b"1"[..]);
    store
        .append(
            "客户-42",
            ExpectedVersion::NoStream,
            std::slice::from_ref(&e),
        )
        .unwrap();
    let read = store
        .read_stream("客户-42", 0, Direction::Forward, 1)
        .unwrap();
    assert_same(&read[0], &e, "客户-42");
}
