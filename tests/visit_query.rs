//! Reads by query lent to a visitor: exactly the events `read_query` returns,
//! in the same order, also for events sealed for a subject (opened, or
//! erased once it is forgotten), under retention rules and deletes, both
//! ways, from any position, with any limit.

mod common;

use common::{visited_query, TestRng};
use evstore::{
    DeleteMode, Direction, EventData, ExpectedVersion, Options, Query, QueryItem, RecordedEvent,
    Store, StreamMetadata,
};

/// What [`Store::visit_stream`] lends, copied out.
fn lent_stream(
    store: &Store,
    stream: &str,
    from: u64,
    direction: Direction,
    limit: usize,
) -> Vec<RecordedEvent> {
    let mut lent = Vec::new();
    let count = store
        .visit_stream(stream, from, direction, limit, |e| {
            lent.push(e.to_owned_event())
        })
        .unwrap();
    assert_eq!(count, lent.len());
    lent
}

fn compare_streams(store: &Store, rng: &mut TestRng, streams: &[&str], label: &str) {
    for stream in streams {
        for _ in 0..16 {
            let from = match rng.below(4) {
                0 => u64::MAX,
                _ => rng.below(320),
            };
            let limit = match rng.below(3) {
                0 => usize::MAX,
                _ => rng.below(40) as usize,
            };
            for direction in [Direction::Forward, Direction::Backward] {
                let read = store.read_stream(stream, from, direction, limit).unwrap();
                let lent = lent_stream(store, stream, from, direction, limit);
                assert_eq!(
                    lent, read,
                    "{label}: {stream} {direction:?} from {from} limit {limit}"
                );
            }
        }
    }
}

fn compare_all_ways(store: &Store, rng: &mut TestRng, queries: &[Query], label: &str) {
    compare_streams(store, rng, &["s0", "s1", "s2", "s3", "s4", "none"], label);
    let end = store.last_position().map_or(0, |p| p + 1);
    for query in queries {
        for _ in 0..12 {
            let from = match rng.below(4) {
                0 => u64::MAX,
                _ => rng.below(end + 2),
            };
            let limit = match rng.below(3) {
                0 => usize::MAX,
                _ => 1 + rng.below(30) as usize,
            };
            for direction in [Direction::Forward, Direction::Backward] {
                let read = store.read_query(query, from, direction, limit).unwrap();
                let (events, head) = visited_query(store, query, from, direction, limit);
                assert_eq!(
                    events, read.events,
                    "{label}: {query:?} {direction:?} from {from} limit {limit}"
                );
                assert_eq!(head, read.head, "{label}");
            }
        }
    }
}

#[test]
fn a_visit_lends_what_a_read_returns_through_sealing_retention_and_deletes() {
    let dir = tempfile::tempdir().unwrap();
    // The first half of the events as they are, the rest sealed for their
    // subjects, which a read must open.
    let plain = || Options::default().segment_size(16 << 10);
    let options = || plain().crypto_shredding(true);
    let mut store = Store::open(dir.path(), plain()).unwrap();
    let mut rng = TestRng::new(11);
    for i in 0..400u64 {
        if i == 200 {
            store.close().unwrap();
            store = Store::open(dir.path(), options()).unwrap();
        }
        let stream = format!("s{}", i % 5);
        let mut tags = vec![format!("t{}", rng.below(4))];
        if rng.below(2) == 0 {
            tags.push("shared".to_string());
        }
        tags.sort();
        tags.dedup();
        let mut event = EventData::new(format!("T{}", rng.below(3)), vec![i as u8; 40])
            .with_tags(tags)
            .with_metadata(vec![7u8; rng.below(8) as usize]);
        if i % 3 == 0 {
            event = event.with_subject(format!("user-{}", i % 4));
        }
        store
            .append(&stream, ExpectedVersion::Any, &[event])
            .unwrap();
    }
    let queries = [
        Query::tagged(["shared"]),
        Query::tagged(["t1"]),
        Query::tagged(["t2", "shared"]),
        Query::items([
            QueryItem::new().types(["T0"]),
            QueryItem::new().tags(["t3"]),
        ]),
        Query::all(),
    ];
    assert!(store.log_info().segments.len() > 3);
    compare_all_ways(&store, &mut rng, &queries, "sealed events, all kept");

    // A forgotten subject's events read as erased, lent as they read.
    assert!(store.forget("user-1").unwrap());
    compare_all_ways(&store, &mut rng, &queries, "a subject forgotten");

    // Rules that drop events: a truncation, a count limit, a soft and a
    // hard delete.
    store.truncate_stream("s0", 30).unwrap();
    store
        .set_stream_metadata(
            "s1",
            ExpectedVersion::Any,
            StreamMetadata::new().max_count(7),
        )
        .unwrap();
    store
        .delete_stream("s2", ExpectedVersion::Any, DeleteMode::Soft)
        .unwrap();
    store
        .delete_stream("s3", ExpectedVersion::Any, DeleteMode::Hard)
        .unwrap();
    compare_all_ways(&store, &mut rng, &queries, "retention rules");

    // After a scavenge took the dropped events out, and after a reopen.
    store.scavenge().unwrap();
    compare_all_ways(&store, &mut rng, &queries, "scavenged");
    store.close().unwrap();
    let store = Store::open(dir.path(), options()).unwrap();
    compare_all_ways(&store, &mut rng, &queries, "reopened");
}

#[test]
fn a_visit_of_nothing_and_a_bad_query_answer_as_a_read_does() {
    let dir = tempfile::tempdir().unwrap();
    let store = Store::open(dir.path(), Options::default()).unwrap();
    let mut calls = 0;
    let visit = store
        .visit_query(&Query::tagged(["x"]), 0, Direction::Forward, 10, |_| {
            calls += 1
        })
        .unwrap();
    assert_eq!((calls, visit.visited, visit.head), (0, 0, None));
    let bad = Query::items([QueryItem::new()]);
    assert!(store
        .visit_query(&bad, 0, Direction::Forward, 10, |_| calls += 1)
        .is_err());
    store
        .append(
            "a",
            ExpectedVersion::Any,
            &[EventData::new("A", &b"1"[..]).with_tags(["x"])],
        )
        .unwrap();
    let visit = store
        .visit_query(&Query::tagged(["x"]), 0, Direction::Forward, 0, |_| {
            calls += 1
        })
        .unwrap();
    assert_eq!((calls, visit.visited, visit.head), (0, 0, Some(0)));
}

#[test]
fn a_stream_visit_lends_what_a_read_returns_past_removed_segments() {
    let dir = tempfile::tempdir().unwrap();
    let options = || {
        Options::default()
            .segment_size(8 << 10)
            .idempotency_window(16)
    };
    let store = Store::open(dir.path(), options()).unwrap();
    let mut rng = TestRng::new(5);
    let append = |stream: &str, n: u64| {
        for i in 0..n {
            let event =
                EventData::new("Noted", vec![i as u8; 60]).with_tags([format!("k{}", i % 3)]);
            store
                .append(stream, ExpectedVersion::Any, &[event])
                .unwrap();
        }
    };
    append("sensor", 300);
    store
        .set_stream_metadata(
            "sensor",
            ExpectedVersion::NoStream,
            StreamMetadata::new().max_count(20),
        )
        .unwrap();
    append("other", 40);
    compare_streams(
        &store,
        &mut rng,
        &["sensor", "other"],
        "before the scavenge",
    );
    let report = store.scavenge().unwrap();
    assert!(report.segments_removed >= 3, "{report:?}");
    compare_streams(&store, &mut rng, &["sensor", "other"], "segments removed");
    // With the rule gone, what is left on disk reads again: the versions
    // of removed segments stay gone, for a visit as for a read.
    store
        .set_stream_metadata("sensor", ExpectedVersion::Any, StreamMetadata::new())
        .unwrap();
    compare_streams(&store, &mut rng, &["sensor", "other"], "rules relaxed");
    store.close().unwrap();
    let store = Store::open(dir.path(), options()).unwrap();
    compare_streams(&store, &mut rng, &["sensor", "other"], "reopened");
}
