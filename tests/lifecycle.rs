//! Stream metadata (max count, max age, truncate before) and deletions:
//! every read path drops what a stream no longer keeps, at once and after a
//! reopen; hard-deleted streams take no more writes.

use evstore::{
    DeleteMode, Direction, Error, EventData, ExpectedVersion, Filter, Options, Query, Store,
    StreamMetadata,
};
use std::time::Duration;

fn tagged(stream_tag: &str, n: u8) -> EventData {
    EventData::new("Step", vec![n]).with_tags([stream_tag.to_string()])
}

fn versions(events: &[evstore::RecordedEvent]) -> Vec<u64> {
    events.iter().map(|e| e.version).collect()
}

/// Ten events in "kept" tagged "k", ten in "other" tagged "o", interleaved.
fn interleaved(store: &Store) {
    for n in 0..10u8 {
        store
            .append("kept", ExpectedVersion::Any, &[tagged("k", n)])
            .unwrap();
        store
            .append("other", ExpectedVersion::Any, &[tagged("o", n)])
            .unwrap();
    }
}

/// What every read path returns of "kept", as versions.
fn every_read_of_kept(store: &Store) -> Vec<Vec<u64>> {
    let forward = store
        .read_stream("kept", 0, Direction::Forward, 100)
        .unwrap();
    let mut backward = store
        .read_stream("kept", u64::MAX, Direction::Backward, 100)
        .unwrap();
    backward.reverse();
    let of_kept = |events: Vec<evstore::RecordedEvent>| {
        let kept: Vec<_> = events
            .into_iter()
            .filter(|e| &*e.stream == "kept" && !e.event_type.starts_with('$'))
            .collect();
        versions(&kept)
    };
    let all = of_kept(store.read_all(0, Direction::Forward, 1000).unwrap());
    let mut all_back = of_kept(store.read_all(u64::MAX, Direction::Backward, 1000).unwrap());
    all_back.reverse();
    let query = of_kept(
        store
            .read_query(&Query::tagged(["k"]), 0, Direction::Forward, 1000)
            .unwrap()
            .events,
    );
    let mut subscription = store.subscribe_all(0, Filter::stream_prefix("kept"));
    let mut delivered = Vec::new();
    while let Some(event) = subscription.try_next().unwrap() {
        if !event.event_type.starts_with('$') {
            delivered.push(event);
        }
    }
    let mut by_stream = store.subscribe_stream("kept", 0).unwrap();
    let mut of_stream = Vec::new();
    while let Some(event) = by_stream.try_next().unwrap() {
        if !event.event_type.starts_with('$') {
            of_stream.push(event);
        }
    }
    vec![
        versions(&forward),
        versions(&backward),
        all,
        all_back,
        query,
        versions(&delivered),
        versions(&of_stream),
    ]
}

fn assert_every_read(store: &Store, expected: &[u64]) {
    for (i, read) in every_read_of_kept(store).into_iter().enumerate() {
        assert_eq!(read, expected, "read path {i}");
    }
}

#[test]
fn max_count_keeps_the_newest_events_on_every_read_path_and_after_reopen() {
    let dir = tempfile::tempdir().unwrap();
    {
        let store = Store::open(dir.path(), Options::default()).unwrap();
        interleaved(&store);
        store
            .set_stream_metadata(
                "kept",
                ExpectedVersion::NoStream,
                StreamMetadata::new().max_count(3),
            )
            .unwrap();
        assert_every_read(&store, &[7, 8, 9]);
        store
            .append("kept", ExpectedVersion::Exact(9), &[tagged("k", 10)])
            .unwrap();
        assert_every_read(&store, &[8, 9, 10]);
        // Other streams keep everything.
        let other = store
            .read_stream("other", 0, Direction::Forward, 100)
            .unwrap();
        assert_eq!(other.len(), 10);
        // A limit counts kept events only.
        let two = store.read_stream("kept", 0, Direction::Forward, 2).unwrap();
        assert_eq!(versions(&two), [8, 9]);
    }
    let store = Store::open(dir.path(), Options::default()).unwrap();
    assert_every_read(&store, &[8, 9, 10]);
    let read = store.stream_metadata("kept").unwrap();
    assert_eq!(read.metadata.max_count, Some(3));
    assert_eq!(read.version, Some(0));
    assert_eq!(read.deleted, None);
}

#[test]
fn truncate_before_drops_older_versions_and_keeps_the_rest_of_the_metadata() {
    let dir = tempfile::tempdir().unwrap();
    let store = Store::open(dir.path(), Options::default()).unwrap();
    interleaved(&store);
    store
        .set_stream_metadata(
            "kept",
            ExpectedVersion::NoStream,
            StreamMetadata::new().max_count(8),
        )
        .unwrap();
    assert_every_read(&store, &[2, 3, 4, 5, 6, 7, 8, 9]);
    store.truncate_stream("kept", 6).unwrap();
    assert_every_read(&store, &[6, 7, 8, 9]);
    let read = store.stream_metadata("kept").unwrap();
    assert_eq!(
        read.metadata,
        StreamMetadata::new().max_count(8).truncate_before(6)
    );
    assert_eq!(read.version, Some(1));
    // Metadata is versioned: a writer that read version 0 loses.
    let stale = store.set_stream_metadata("kept", ExpectedVersion::Exact(0), StreamMetadata::new());
    assert!(
        matches!(stale, Err(Error::WrongExpectedVersion { ref stream, actual: Some(1), .. }) if stream == "$$kept"),
        "{stale:?}"
    );
    // Clearing the metadata brings the events back: nothing was reclaimed.
    store
        .set_stream_metadata("kept", ExpectedVersion::Exact(1), StreamMetadata::new())
        .unwrap();
    assert_every_read(&store, &(0..10).collect::<Vec<_>>());
}

/// Truncating past a stream's end would drop the events appended later
/// too: it is refused and changes nothing. Up to the end is allowed: later
/// events are kept.
#[test]
fn truncating_past_the_end_of_a_stream_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    let store = Store::open(dir.path(), Options::default()).unwrap();
    interleaved(&store);
    for (stream, version) in [("kept", 11), ("kept", u64::MAX), ("never-written", 1)] {
        let refused = store.truncate_stream(stream, version);
        assert!(
            matches!(
                refused,
                Err(Error::InvalidRequest {
                    what: "truncate",
                    ..
                })
            ),
            "{stream} {version}: {refused:?}"
        );
        assert_eq!(store.stream_metadata(stream).unwrap().version, None);
    }
    assert_every_read(&store, &(0..10).collect::<Vec<_>>());
    store.truncate_stream("kept", 10).unwrap();
    assert_every_read(&store, &[]);
    store
        .append("kept", ExpectedVersion::Exact(9), &[tagged("k", 10)])
        .unwrap();
    assert_every_read(&store, &[10]);
    store.truncate_stream("never-written", 0).unwrap();
}

#[test]
fn max_age_drops_events_older_than_it() {
    let dir = tempfile::tempdir().unwrap();
    let store = Store::open(dir.path(), Options::default()).unwrap();
    interleaved(&store);
    store
        .set_stream_metadata(
            "kept",
            ExpectedVersion::NoStream,
            StreamMetadata::new().max_age(Duration::from_secs(24 * 3600)),
        )
        .unwrap();
    assert_every_read(&store, &(0..10).collect::<Vec<_>>());
    // Every event was written more than a nanosecond ago.
    store
        .set_stream_metadata(
            "kept",
            ExpectedVersion::Exact(0),
            StreamMetadata::new().max_age(Duration::from_nanos(1)),
        )
        .unwrap();
    assert_every_read(&store, &[]);
    // A huge age is no overflow.
    store
        .set_stream_metadata(
            "kept",
            ExpectedVersion::Exact(1),
            StreamMetadata::new().max_age(Duration::MAX),
        )
        .unwrap();
    assert_every_read(&store, &(0..10).collect::<Vec<_>>());
}

#[test]
fn a_soft_deleted_stream_reads_empty_and_is_recreated_after_its_tombstone() {
    let dir = tempfile::tempdir().unwrap();
    {
        let store = Store::open(dir.path(), Options::default()).unwrap();
        interleaved(&store);
        let stale = store.delete_stream("kept", ExpectedVersion::Exact(3), DeleteMode::Soft);
        assert!(matches!(stale, Err(Error::WrongExpectedVersion { .. })));
        let tombstone = store
            .delete_stream("kept", ExpectedVersion::Exact(9), DeleteMode::Soft)
            .unwrap();
        assert_eq!(tombstone.first_version, 10);
        assert_every_read(&store, &[]);
        // The global log delivers the tombstone, so projections learn of it.
        let all = store.read_all(0, Direction::Forward, 100).unwrap();
        let of_kept: Vec<_> = all.iter().filter(|e| &*e.stream == "kept").collect();
        assert_eq!(of_kept.len(), 1);
        assert_eq!(&*of_kept[0].event_type, "$streamDeleted");
        assert_eq!(
            store.stream_metadata("kept").unwrap().deleted,
            Some(DeleteMode::Soft)
        );
        let again = store
            .append("kept", ExpectedVersion::Exact(10), &[tagged("k", 99)])
            .unwrap();
        assert_eq!(again.first_version, 11);
        assert_every_read(&store, &[11]);
    }
    let store = Store::open(dir.path(), Options::default()).unwrap();
    assert_every_read(&store, &[11]);
    assert_eq!(
        store
            .read_stream("other", 0, Direction::Forward, 100)
            .unwrap()
            .len(),
        10
    );
}

#[test]
fn a_hard_deleted_stream_takes_no_more_writes_even_after_reopen() {
    let dir = tempfile::tempdir().unwrap();
    {
        let store = Store::open(dir.path(), Options::default()).unwrap();
        interleaved(&store);
        store
            .delete_stream("kept", ExpectedVersion::Any, DeleteMode::Hard)
            .unwrap();
        assert_every_read(&store, &[]);
    }
    let store = Store::open(dir.path(), Options::default()).unwrap();
    assert_every_read(&store, &[]);
    let one = [tagged("k", 1)];
    let refused = [
        store.append("kept", ExpectedVersion::Any, &one).err(),
        store
            .commit(
                &evstore::Commit::new()
                    .append("other", ExpectedVersion::Any, [tagged("o", 2)])
                    .append("kept", ExpectedVersion::Any, [tagged("k", 2)]),
            )
            .err(),
        store
            .set_stream_metadata("kept", ExpectedVersion::Any, StreamMetadata::new())
            .err(),
        store
            .delete_stream("kept", ExpectedVersion::Any, DeleteMode::Soft)
            .err(),
    ];
    for error in refused {
        assert!(
            matches!(error, Some(Error::StreamDeleted { ref stream }) if stream == "kept"),
            "{error:?}"
        );
    }
    assert_eq!(
        store.stream_metadata("kept").unwrap().deleted,
        Some(DeleteMode::Hard)
    );
    assert_eq!(
        store
            .read_stream("other", 0, Direction::Forward, 100)
            .unwrap()
            .len(),
        10
    );
}

#[test]
fn a_live_subscription_stops_delivering_a_deleted_streams_events() {
    let dir = tempfile::tempdir().unwrap();
    let store = Store::open(dir.path(), Options::default()).unwrap();
    let mut subscription = store.subscribe_all(0, Filter::all());
    store
        .append("kept", ExpectedVersion::Any, &[tagged("k", 0)])
        .unwrap();
    let first = subscription.next_event().unwrap().unwrap();
    assert_eq!(&*first.stream, "kept");
    store
        .append("kept", ExpectedVersion::Any, &[tagged("k", 1)])
        .unwrap();
    store
        .delete_stream("kept", ExpectedVersion::Any, DeleteMode::Soft)
        .unwrap();
    store
        .append("other", ExpectedVersion::Any, &[tagged("o", 0)])
        .unwrap();
    // Version 1 was written before the deletion but not yet delivered: it
    // is not delivered now.
    let rest: Vec<_> = std::iter::from_fn(|| subscription.try_next().unwrap())
        .map(|e| (e.stream.to_string(), e.event_type.to_string()))
        .collect();
    assert_eq!(
        rest,
        [
            ("kept".to_string(), "$streamDeleted".to_string()),
            ("other".to_string(), "Step".to_string())
        ]
    );
}

/// A deletion, an erasure or a `max_count` acknowledged while events of
/// the stream sit read but undelivered in a subscription's buffer (its
/// own, or a chunk shared with other subscribers) applies to them, one
/// event at a time or by batches.
#[test]
fn rules_acknowledged_after_a_subscription_read_ahead_apply_to_what_it_buffered() {
    #[derive(Debug, Clone, Copy)]
    enum Rule {
        SoftDelete,
        Erase,
        MaxCountOne,
    }
    /// How the subscribers take what they buffered after the rule: each
    /// way has its own path to the buffer.
    #[derive(Debug, Clone, Copy, PartialEq)]
    enum Taking {
        Batches,
        TryNext,
        NextTimeout,
    }
    for rule in [Rule::SoftDelete, Rule::Erase, Rule::MaxCountOne] {
        for subscribers in [1, 3] {
            for taking in [Taking::Batches, Taking::TryNext, Taking::NextTimeout] {
                let batched = taking == Taking::Batches;
                let case = format!("{rule:?}, {subscribers} subscribers, {taking:?}");
                let dir = tempfile::tempdir().unwrap();
                let store = Store::open(dir.path(), Options::default()).unwrap();
                let events: Vec<EventData> = (0..4).map(|n| tagged("k", n)).collect();
                store.append("kept", ExpectedVersion::Any, &events).unwrap();
                let mut subscriptions: Vec<_> = (0..subscribers)
                    .map(|_| store.subscribe_all(0, Filter::all()))
                    .collect();
                // Each takes version 0; the other three are now buffered.
                for subscription in &mut subscriptions {
                    let first = if batched {
                        subscription.next_batch(1).unwrap().into_vec().remove(0)
                    } else {
                        subscription.next_event().unwrap().unwrap()
                    };
                    assert_eq!(first.version, 0, "{case}");
                }
                match rule {
                    Rule::SoftDelete => {
                        store
                            .delete_stream("kept", ExpectedVersion::Any, DeleteMode::Soft)
                            .unwrap();
                    }
                    Rule::Erase => {
                        store.erase_events("kept", 1, 2).unwrap();
                    }
                    Rule::MaxCountOne => {
                        store
                            .set_stream_metadata(
                                "kept",
                                ExpectedVersion::NoStream,
                                StreamMetadata::new().max_count(1),
                            )
                            .unwrap();
                    }
                }
                for subscription in &mut subscriptions {
                    let rest: Vec<_> = if batched {
                        std::iter::from_fn(|| {
                            let batch = subscription
                                .next_batch_timeout(100, Duration::ZERO)
                                .unwrap();
                            (!batch.is_empty()).then(|| batch.into_vec())
                        })
                        .flatten()
                        .collect()
                    } else if taking == Taking::TryNext {
                        std::iter::from_fn(|| subscription.try_next().unwrap()).collect()
                    } else {
                        std::iter::from_fn(|| subscription.next_timeout(Duration::ZERO).unwrap())
                            .collect()
                    };
                    let of_stream: Vec<(u64, bool, usize)> = rest
                        .iter()
                        .filter(|e| &*e.stream == "kept" && &*e.event_type != "$streamDeleted")
                        .map(|e| (e.version, e.erased, e.payload.len()))
                        .collect();
                    let expected = match rule {
                        Rule::SoftDelete => vec![],
                        Rule::Erase => vec![(1, true, 0), (2, true, 0), (3, false, 1)],
                        Rule::MaxCountOne => vec![(3, false, 1)],
                    };
                    assert_eq!(of_stream, expected, "{case}");
                    // The lifecycle event itself is delivered.
                    assert!(
                        rest.iter()
                            .any(|e| &*e.stream == "$$kept" || &*e.event_type == "$streamDeleted"),
                        "{case}: {rest:?}"
                    );
                }
            }
        }
    }
}

#[test]
fn a_read_only_store_sees_metadata_written_after_it_opened() {
    let dir = tempfile::tempdir().unwrap();
    let store = Store::open(dir.path(), Options::default()).unwrap();
    interleaved(&store);
    let reader = Store::open_read_only(dir.path(), Options::default()).unwrap();
    assert_every_read(&reader, &(0..10).collect::<Vec<_>>());
    store
        .set_stream_metadata(
            "kept",
            ExpectedVersion::NoStream,
            StreamMetadata::new().max_count(1),
        )
        .unwrap();
    reader.refresh().unwrap();
    assert_eq!(
        versions(
            &reader
                .read_stream("kept", 0, Direction::Forward, 10)
                .unwrap()
        ),
        [9]
    );
}

#[test]
fn names_starting_with_a_dollar_are_the_stores_own() {
    let dir = tempfile::tempdir().unwrap();
    let store = Store::open(dir.path(), Options::default()).unwrap();
    let typed = store.append(
        "s",
        ExpectedVersion::Any,
        &[EventData::new("$streamDeleted", &b"EVTS\x01\0\0\0"[..])],
    );
    assert!(
        matches!(typed, Err(Error::InvalidEventType { .. })),
        "{typed:?}"
    );
    let tagged = store.append(
        "s",
        ExpectedVersion::Any,
        &[EventData::new("A", &b""[..]).with_tags(["$lifecycle"])],
    );
    assert!(
        matches!(tagged, Err(Error::InvalidTag { .. })),
        "{tagged:?}"
    );
    let meta = store.append(
        "$$s",
        ExpectedVersion::Any,
        &[EventData::new("A", &b""[..])],
    );
    assert!(
        matches!(meta, Err(Error::InvalidStreamName { .. })),
        "{meta:?}"
    );
    assert!(matches!(
        store.set_stream_metadata("$$s", ExpectedVersion::Any, StreamMetadata::new()),
        Err(Error::InvalidStreamName { .. })
    ));
    assert!(store
        .read_all(0, Direction::Forward, 10)
        .unwrap()
        .is_empty());
}

/// Appenders race a hard delete of their stream each round: every append
/// acknowledged lies before the tombstone, every later one is refused, and
/// reads show nothing of the stream. With lingering groups the racers share
/// groups with the delete.
fn appends_racing_a_hard_delete(options: Options, rounds: usize, appenders: usize) {
    use std::sync::{Arc, Barrier};
    let dir = tempfile::tempdir().unwrap();
    let store = Arc::new(Store::open(dir.path(), options).unwrap());
    let barrier = Arc::new(Barrier::new(appenders + 1));
    let handles: Vec<_> = (0..appenders)
        .map(|t| {
            let store = Arc::clone(&store);
            let barrier = Arc::clone(&barrier);
            std::thread::spawn(move || {
                let mut acknowledged = Vec::new();
                for round in 0..rounds {
                    let stream = format!("doomed-{round}");
                    barrier.wait();
                    for n in 0..3u8 {
                        match store.append(&stream, ExpectedVersion::Any, &[tagged("d", n)]) {
                            Ok(result) => acknowledged.push((round, result.first_version)),
                            Err(Error::StreamDeleted { .. }) => break,
                            Err(other) => panic!("appender {t} round {round}: {other:?}"),
                        }
                    }
                }
                acknowledged
            })
        })
        .collect();
    let mut tombstones = Vec::new();
    for round in 0..rounds {
        barrier.wait();
        let stream = format!("doomed-{round}");
        let tombstone = store
            .delete_stream(&stream, ExpectedVersion::Any, DeleteMode::Hard)
            .unwrap();
        tombstones.push(tombstone.first_version);
    }
    for handle in handles {
        for (round, version) in handle.join().unwrap() {
            assert!(
                version < tombstones[round],
                "round {round}: version {version} acknowledged after the tombstone at {}",
                tombstones[round]
            );
        }
    }
    store.flush().unwrap();
    for (round, &tombstone) in tombstones.iter().enumerate() {
        let stream = format!("doomed-{round}");
        assert!(store
            .read_stream(&stream, 0, Direction::Forward, 10)
            .unwrap()
            .is_empty());
        assert_eq!(
            store.stream_metadata(&stream).unwrap().deleted,
            Some(DeleteMode::Hard)
        );
        // Nothing was written after the tombstone.
        assert_eq!(store.stream_version(&stream).unwrap(), Some(tombstone));
    }
}

#[test]
fn no_append_racing_a_hard_delete_lands_after_its_tombstone() {
    appends_racing_a_hard_delete(Options::default(), 200, 3);
}

#[test]
fn no_append_sharing_a_group_with_a_hard_delete_lands_after_its_tombstone() {
    let lingering = Options::default()
        .durability(evstore::Durability::Buffered)
        .max_linger(Some(Duration::from_micros(300)));
    appends_racing_a_hard_delete(lingering, 200, 4);
}

#[test]
fn a_soft_deleted_stream_is_recreated_by_an_append_that_expects_no_stream() {
    let dir = tempfile::tempdir().unwrap();
    {
        let store = Store::open(dir.path(), Options::default()).unwrap();
        store
            .append("cart", ExpectedVersion::NoStream, &[tagged("c", 0)])
            .unwrap();
        store
            .delete_stream("cart", ExpectedVersion::Exact(0), DeleteMode::Soft)
            .unwrap();
    }
    // After a reopen too, the writer knows the stream reads as none.
    let store = Store::open(dir.path(), Options::default()).unwrap();
    let again = store
        .append("cart", ExpectedVersion::NoStream, &[tagged("c", 1)])
        .unwrap();
    assert_eq!(again.first_version, 2);
    // Recreated, it exists again.
    let twice = store.append("cart", ExpectedVersion::NoStream, &[tagged("c", 2)]);
    assert!(
        matches!(
            twice,
            Err(Error::WrongExpectedVersion {
                actual: Some(2),
                ..
            })
        ),
        "{twice:?}"
    );
    assert_eq!(
        versions(
            &store
                .read_stream("cart", 0, Direction::Forward, 10)
                .unwrap()
        ),
        [2]
    );
    // Racing recreators: exactly one of them finds the stream missing.
    store
        .delete_stream("cart", ExpectedVersion::Any, DeleteMode::Soft)
        .unwrap();
    let racers: Vec<_> = (0..4u8)
        .map(|i| {
            let store = store.clone();
            std::thread::spawn(move || {
                store
                    .append("cart", ExpectedVersion::NoStream, &[tagged("c", 10 + i)])
                    .is_ok()
            })
        })
        .collect();
    let recreated = racers
        .into_iter()
        .map(|h| h.join().unwrap())
        .filter(|&ok| ok)
        .count();
    assert_eq!(recreated, 1, "exactly one append recreates the stream");
}

#[test]
fn max_count_counts_from_what_a_read_sees_not_from_unsynced_appends() {
    let dir = tempfile::tempdir().unwrap();
    // Reads see durable events; buffered appends wait for a flush.
    let options = Options::default().flush_interval(Duration::from_secs(3600));
    let store = Store::open(dir.path(), options).unwrap();
    interleaved(&store);
    store
        .set_stream_metadata(
            "kept",
            ExpectedVersion::NoStream,
            StreamMetadata::new().max_count(2),
        )
        .unwrap();
    let durable = every_read_of_kept(&store);
    assert!(durable.iter().all(|read| read == &[8, 9]), "{durable:?}");
    // Three more, written but not yet durable: no read sees them, and the
    // last two a read does see stay in every read.
    let more: Vec<_> = (10..13).map(|n| tagged("k", n)).collect();
    store
        .append_with_durability(
            "kept",
            ExpectedVersion::Exact(9),
            &more,
            evstore::Durability::Buffered,
        )
        .unwrap();
    let pending = every_read_of_kept(&store);
    assert!(pending.iter().all(|read| read == &[8, 9]), "{pending:?}");
    store.flush().unwrap();
    let flushed = every_read_of_kept(&store);
    assert!(flushed.iter().all(|read| read == &[11, 12]), "{flushed:?}");
}
