//! A retried append (same event ids, same stream, same order) returns the
//! original result and writes nothing, within the configured window and
//! across a restart; anything that only partly matches is refused.

use evstore::{Direction, Error, EventData, ExpectedVersion, Options, Store, Uuid};

fn batch(first_id: u128, n: usize) -> Vec<EventData> {
    (0..n)
        .map(|i| {
            EventData::new("Paid", vec![i as u8; 10]).with_id(Uuid::from_u128(first_id + i as u128))
        })
        .collect()
}

fn count(store: &Store) -> usize {
    store
        .read_all(0, Direction::Forward, usize::MAX)
        .unwrap()
        .len()
}

#[test]
fn a_retry_returns_the_original_result_and_writes_nothing_even_after_restart() {
    let dir = tempfile::tempdir().unwrap();
    let store = Store::open(dir.path(), Options::default().segment_size(4096)).unwrap();
    store
        .append("other", ExpectedVersion::Any, &batch(1, 2))
        .unwrap();
    let original = store
        .append("acct-1", ExpectedVersion::NoStream, &batch(100, 3))
        .unwrap();
    store
        .append("acct-1", ExpectedVersion::Any, &batch(200, 1))
        .unwrap();
    // The retry's expected version no longer holds, yet it is recognised.
    assert_eq!(
        store
            .append("acct-1", ExpectedVersion::NoStream, &batch(100, 3))
            .unwrap(),
        original
    );
    assert_eq!(count(&store), 6);
    drop(store);

    let store = Store::open(dir.path(), Options::default().segment_size(4096)).unwrap();
    assert_eq!(
        store
            .append("acct-1", ExpectedVersion::Any, &batch(100, 3))
            .unwrap(),
        original
    );
    // A prefix of the original is a retry of those events too.
    let prefix = store
        .append("acct-1", ExpectedVersion::Any, &batch(100, 2))
        .unwrap();
    assert_eq!(
        (prefix.first_position, prefix.last_position),
        (original.first_position, original.first_position + 1)
    );
    assert_eq!(count(&store), 6);
    assert_eq!(store.stream_version("acct-1").unwrap(), Some(3));
}

#[test]
fn partial_or_misplaced_retries_are_conflicts_that_write_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let store = Store::open(dir.path(), Options::default()).unwrap();
    store
        .append("acct-1", ExpectedVersion::Any, &batch(100, 3))
        .unwrap();
    let mut mixed = batch(100, 2);
    mixed.push(EventData::new("Paid", &b"new"[..]).with_id(Uuid::from_u128(999)));
    let cases = [
        ("acct-1", mixed),
        ("acct-2", batch(100, 3)), // another stream
        ("acct-1", batch(101, 2)[..].iter().rev().cloned().collect()), // another order
        (
            "acct-1",
            vec![
                EventData::new("Paid", &b"x"[..]).with_id(Uuid::from_u128(7)),
                batch(100, 1)[0].clone(),
            ],
        ),
    ];
    for (stream, events) in cases {
        match store.append(stream, ExpectedVersion::Any, &events) {
            Err(Error::IdempotencyConflict { stream: s, .. }) => assert_eq!(s, stream),
            other => panic!("{stream}: expected a conflict, got {other:?}"),
        }
    }
    assert_eq!(count(&store), 3);
    assert_eq!(store.stream_version("acct-2").unwrap(), None);
}

#[test]
fn ids_older_than_the_window_are_forgotten() {
    let dir = tempfile::tempdir().unwrap();
    let store = Store::open(dir.path(), Options::default().idempotency_window(5)).unwrap();
    let first = store
        .append("s", ExpectedVersion::Any, &batch(100, 2))
        .unwrap();
    assert_eq!(
        store
            .append("s", ExpectedVersion::Any, &batch(100, 2))
            .unwrap(),
        first
    );
    store
        .append("s", ExpectedVersion::Any, &batch(200, 5))
        .unwrap();
    // Ids 100 and 101 have left the window of 5: the same ids are new again.
    let again = store
        .append("s", ExpectedVersion::Any, &batch(100, 2))
        .unwrap();
    assert_eq!(again.first_position, 7);
    drop(store);
    // The window is rebuilt at open from the log's newest events.
    let store = Store::open(dir.path(), Options::default().idempotency_window(5)).unwrap();
    assert_eq!(
        store
            .append("s", ExpectedVersion::Any, &batch(100, 2))
            .unwrap(),
        again
    );
}

#[test]
fn concurrent_copies_of_one_append_are_written_once() {
    let dir = tempfile::tempdir().unwrap();
    let store = Store::open(dir.path(), Options::default()).unwrap();
    for round in 0..50u128 {
        let events = batch(1000 * (round + 1), 3);
        let results: Vec<_> = std::thread::scope(|scope| {
            let handles: Vec<_> = (0..4)
                .map(|_| {
                    scope.spawn(|| store.append("acct", ExpectedVersion::Any, &events).unwrap())
                })
                .collect();
            handles.into_iter().map(|h| h.join().unwrap()).collect()
        });
        assert!(
            results.iter().all(|r| *r == results[0]),
            "round {round}: {results:?}"
        );
    }
    assert_eq!(count(&store), 150);
    assert_eq!(store.stream_version("acct").unwrap(), Some(149));
}

#[test]
fn a_durable_retry_of_a_buffered_append_waits_for_the_sync() {
    use evstore::storage::{CrashPlan, SimDisk};
    use evstore::Durability;
    use std::sync::Arc;
    let disk = SimDisk::new();
    let options = || {
        Options::default()
            .storage(Arc::new(disk.clone()))
            .flush_interval(std::time::Duration::from_secs(3600))
    };
    let store = Store::open("/store", options()).unwrap();
    let events = batch(500, 2);
    let buffered = store
        .append_with_durability("s", ExpectedVersion::Any, &events, Durability::Buffered)
        .unwrap();
    let retried = store
        .append_with_durability("s", ExpectedVersion::Any, &events, Durability::Sync)
        .unwrap();
    assert_eq!(retried, buffered);
    // Acknowledged as durable: it must survive losing everything unsynced.
    let after_crash = disk.crash(CrashPlan::LoseAll);
    drop(store);
    let store = Store::open("/store", options().storage(Arc::new(after_crash))).unwrap();
    assert_eq!(count(&store), 2);
}

/// A retry of a consecutive part of one call's events (a tail, the middle,
/// one stream of a commit) is answered with where those events are, also
/// after a reopen, and writes nothing.
#[test]
fn a_retry_of_part_of_one_calls_events_is_told_where_they_are() {
    let dir = tempfile::tempdir().unwrap();
    let event = |n: u128| EventData::new("E", vec![n as u8]).with_id(Uuid::from_u128(0xABC0 + n));
    let events: Vec<EventData> = (1..=4).map(event).collect();
    let commit = evstore::Commit::new()
        .append("a", ExpectedVersion::NoStream, vec![event(10), event(11)])
        .append("b", ExpectedVersion::NoStream, vec![event(12)]);
    {
        let store = Store::open(dir.path(), Options::default()).unwrap();
        store
            .append("s", ExpectedVersion::NoStream, &events)
            .unwrap();
        store.commit(&commit).unwrap();
    }
    let store = Store::open(dir.path(), Options::default()).unwrap();
    let tail = store
        .append("s", ExpectedVersion::Any, &events[2..])
        .unwrap();
    assert_eq!(
        (tail.first_version, tail.last_version, tail.first_position),
        (2, 3, 2)
    );
    let middle = store
        .append("s", ExpectedVersion::Any, &events[1..3])
        .unwrap();
    assert_eq!((middle.first_version, middle.first_position), (1, 1));
    let b = store
        .commit(&evstore::Commit::new().append("b", ExpectedVersion::NoStream, vec![event(12)]))
        .unwrap();
    assert_eq!((b.first_position, b.last_position), (6, 6));
    // Out of order, or in another stream, is still a conflict.
    let swapped = vec![events[2].clone(), events[1].clone()];
    assert!(matches!(
        store.append("s", ExpectedVersion::Any, &swapped),
        Err(Error::IdempotencyConflict { .. })
    ));
    assert!(matches!(
        store.append("elsewhere", ExpectedVersion::Any, &events[2..]),
        Err(Error::IdempotencyConflict { .. })
    ));
    assert_eq!(count(&store), 7);
}

/// Ids in no order (as random ids are) fall within the id range of every
/// sealed segment, so a retry is found only through each index file's
/// Bloom filter and id table: every batch, retried once all of them are
/// sealed and again after a reopen, returns where it was written.
#[test]
fn retries_of_unordered_ids_are_found_in_sealed_segments() {
    let dir = tempfile::tempdir().unwrap();
    let options = || Options::default().segment_size(4096);
    // A batch's ids are spread over the whole range, and so interleave
    // with every other batch's.
    let scattered = |b: u128, n: usize| -> Vec<EventData> {
        (0..n as u128)
            .map(|i| {
                let id = (b * 7 + i * 1_000_003).wrapping_mul(0x9E37_79B9_7F4A_7C15) | 1;
                EventData::new("Paid", vec![b as u8; 40]).with_id(Uuid::from_u128(id))
            })
            .collect()
    };
    let store = Store::open(dir.path(), options()).unwrap();
    let originals: Vec<_> = (0..60u128)
        .map(|b| {
            store
                .append(
                    &format!("acct-{}", b % 5),
                    ExpectedVersion::Any,
                    &scattered(b, 4),
                )
                .unwrap()
        })
        .collect();
    let sealed = store.metrics().segments.sealed;
    assert!(
        sealed >= 5,
        "the batches must span sealed segments ({sealed})"
    );
    let written = count(&store);
    let retry_all = |store: &Store, when: &str| {
        for (b, original) in originals.iter().enumerate() {
            let b = b as u128;
            let retried = store
                .append(
                    &format!("acct-{}", b % 5),
                    ExpectedVersion::Any,
                    &scattered(b, 4),
                )
                .unwrap();
            assert_eq!(&retried, original, "batch {b}, {when}");
        }
        assert_eq!(count(store), written, "{when}");
    };
    retry_all(&store, "before a reopen");
    drop(store);
    retry_all(
        &Store::open(dir.path(), options()).unwrap(),
        "after a reopen",
    );
}
