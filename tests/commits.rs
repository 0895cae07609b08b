//! Commits over several streams, check-only streams, append conditions,
//! tags and reads by query, from the outside.

mod common;

use common::{visited_query, TestRng};
use evstore::{
    AppendCondition, Commit, DeleteMode, Direction, Durability, Error, EventData, ExpectedVersion,
    Options, Query, QueryItem, RecordedEvent, Store, Uuid,
};
use std::sync::{Arc, Barrier};
use std::time::Duration;

fn event(event_type: &str, tags: &[&str]) -> EventData {
    EventData::new(event_type, &b"{}"[..]).with_tags(tags.iter().copied())
}

#[test]
fn a_commit_writes_every_stream_at_consecutive_positions() {
    let dir = tempfile::tempdir().unwrap();
    let store = Store::open(dir.path(), Options::default()).unwrap();
    store
        .append("a", ExpectedVersion::NoStream, &[event("Opened", &[])])
        .unwrap();
    let result = store
        .commit(
            &Commit::new()
                .append("a", ExpectedVersion::Exact(0), [event("Moved", &["t:1"])])
                .append(
                    "b",
                    ExpectedVersion::NoStream,
                    [event("Arrived", &["t:1"]), event("Settled", &[])],
                )
                .check("c", ExpectedVersion::NoStream),
        )
        .unwrap();
    assert_eq!((result.first_position, result.last_position), (1, 3));
    assert_eq!(result.streams.len(), 2);
    assert_eq!(
        (
            result.streams[0].first_version,
            result.streams[0].first_position
        ),
        (1, 1)
    );
    assert_eq!(
        (
            result.streams[1].first_version,
            result.streams[1].last_version,
            result.streams[1].first_position,
            result.streams[1].last_position
        ),
        (0, 1, 2, 3)
    );
    let all = store.read_all(0, Direction::Forward, 10).unwrap();
    let seen: Vec<(&str, u64, u64)> = all
        .iter()
        .map(|e| (&*e.stream, e.version, e.position))
        .collect();
    assert_eq!(seen, [("a", 0, 0), ("a", 1, 1), ("b", 0, 2), ("b", 1, 3)]);
    // One commit, one batch: one timestamp.
    assert_eq!(all[1].timestamp_nanos, all[3].timestamp_nanos);
    assert_eq!(store.stream_version("b").unwrap(), Some(1));
    assert_eq!(store.stream_version("c").unwrap(), None);
}

#[test]
fn a_failed_expectation_names_its_stream_and_writes_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let store = Store::open(dir.path(), Options::default()).unwrap();
    store
        .append("guard", ExpectedVersion::NoStream, &[event("Set", &[])])
        .unwrap();
    let written_stream_wrong = Commit::new()
        .append("x", ExpectedVersion::NoStream, [event("A", &[])])
        .append("guard", ExpectedVersion::NoStream, [event("B", &[])]);
    match store.commit(&written_stream_wrong) {
        Err(Error::WrongExpectedVersion { stream, actual, .. }) => {
            assert_eq!((stream.as_str(), actual), ("guard", Some(0)))
        }
        other => panic!("expected a wrong version, got {other:?}"),
    }
    let checked_stream_wrong = Commit::new()
        .append("x", ExpectedVersion::NoStream, [event("A", &[])])
        .check("guard", ExpectedVersion::Exact(5));
    match store.commit(&checked_stream_wrong) {
        Err(Error::WrongExpectedVersion {
            stream, expected, ..
        }) => assert_eq!(
            (stream.as_str(), expected),
            ("guard", ExpectedVersion::Exact(5))
        ),
        other => panic!("expected a wrong version, got {other:?}"),
    }
    assert_eq!(store.read_all(0, Direction::Forward, 10).unwrap().len(), 1);
    assert_eq!(store.stream_version("x").unwrap(), None);
}

#[test]
fn a_checked_stream_is_judged_as_an_appended_one_would_be_after_a_delete() {
    let dir = tempfile::tempdir().unwrap();
    let store = Store::open(dir.path(), Options::default()).unwrap();
    let opened = store
        .append("soft", ExpectedVersion::NoStream, &[event("Opened", &[])])
        .unwrap();
    let tombstone = store
        .delete_stream(
            "soft",
            ExpectedVersion::Exact(opened.last_version),
            DeleteMode::Soft,
        )
        .unwrap();
    let closed = store
        .append("hard", ExpectedVersion::NoStream, &[event("Opened", &[])])
        .unwrap();
    let hard_tombstone = store
        .delete_stream(
            "hard",
            ExpectedVersion::Exact(closed.last_version),
            DeleteMode::Hard,
        )
        .unwrap();
    let guarded = |stream: &str, expected: ExpectedVersion| {
        store.commit(
            &Commit::new()
                .append("x", ExpectedVersion::Any, [event("A", &[])])
                .check(stream, expected),
        )
    };
    // A soft-deleted stream nothing was appended to since reads as no
    // stream, for a check as for an append; its tombstone's version holds
    // too.
    guarded("soft", ExpectedVersion::NoStream).unwrap();
    guarded("soft", ExpectedVersion::Exact(tombstone.last_version)).unwrap();
    // A stream deleted for good takes no append, and passes no check, not
    // even at its tombstone's version.
    for expected in [
        ExpectedVersion::Any,
        ExpectedVersion::NoStream,
        ExpectedVersion::StreamExists,
        ExpectedVersion::Exact(hard_tombstone.last_version),
    ] {
        match guarded("hard", expected) {
            Err(Error::StreamDeleted { stream }) => assert_eq!(stream, "hard"),
            other => panic!("a check of a stream deleted for good gave {other:?}"),
        }
    }
    assert_eq!(store.stream_version("x").unwrap(), Some(1));
    // Once recreated, the soft-deleted stream exists again.
    store
        .append("soft", ExpectedVersion::NoStream, &[event("Opened", &[])])
        .unwrap();
    assert!(matches!(
        guarded("soft", ExpectedVersion::NoStream),
        Err(Error::WrongExpectedVersion { .. })
    ));
}

#[test]
fn malformed_commits_and_queries_are_refused() {
    let dir = tempfile::tempdir().unwrap();
    let store = Store::open(
        dir.path(),
        Options::default().max_tag_len(8).max_tags_per_event(2),
    )
    .unwrap();
    let refused = |commit: Commit| store.commit(&commit).map(|_| ()).unwrap_err();
    assert!(matches!(
        refused(Commit::new()),
        Error::InvalidRequest { .. }
    ));
    assert!(matches!(
        refused(Commit::new().check("a", ExpectedVersion::Any)),
        Error::InvalidRequest { .. }
    ));
    assert!(matches!(
        refused(
            Commit::new()
                .append("a", ExpectedVersion::Any, [event("A", &[])])
                .check("a", ExpectedVersion::Any)
        ),
        Error::InvalidRequest { .. }
    ));
    assert!(matches!(
        refused(
            Commit::new()
                .append("a", ExpectedVersion::Any, [event("A", &[])])
                .append("a", ExpectedVersion::Any, [event("B", &[])])
        ),
        Error::InvalidRequest { .. }
    ));
    assert!(matches!(
        refused(
            Commit::new()
                .append("a", ExpectedVersion::NoStream, [])
                .append("b", ExpectedVersion::Any, [event("B", &[])])
        ),
        Error::InvalidRequest { .. }
    ));
    assert!(matches!(
        refused(
            Commit::new()
                .append("a", ExpectedVersion::Any, [event("A", &[])])
                .check("$all", ExpectedVersion::Any)
        ),
        Error::InvalidStreamName { .. }
    ));
    for tags in [
        &["x", "x"][..],
        &[""],
        &["longer-than-8"],
        &["a", "b", "c"],
        &["a\nb"],
    ] {
        let error = store
            .append("a", ExpectedVersion::Any, &[event("A", tags)])
            .unwrap_err();
        assert!(
            matches!(error, Error::InvalidTag { .. }),
            "{tags:?}: {error:?}"
        );
    }
    let id = Uuid::from_u128(7);
    assert!(matches!(
        refused(
            Commit::new()
                .append("a", ExpectedVersion::Any, [event("A", &[]).with_id(id)])
                .append("b", ExpectedVersion::Any, [event("B", &[]).with_id(id)])
        ),
        Error::DuplicateEventId { .. }
    ));
    for query in [Query::items([]), Query::items([QueryItem::new()])] {
        assert!(matches!(
            store.read_query(&query, 0, Direction::Forward, 10),
            Err(Error::InvalidRequest { .. })
        ));
        assert!(matches!(
            refused(
                Commit::new()
                    .append("a", ExpectedVersion::Any, [event("A", &[])])
                    .condition(AppendCondition::new(query, None))
            ),
            Error::InvalidRequest { .. }
        ));
    }
    assert!(store
        .read_all(0, Direction::Forward, 10)
        .unwrap()
        .is_empty());
}

#[test]
fn a_retried_commit_gets_its_first_result_also_after_a_restart() {
    let dir = tempfile::tempdir().unwrap();
    let ids: Vec<Uuid> = (1..=3).map(Uuid::from_u128).collect();
    let commit = Commit::new()
        .append(
            "a",
            ExpectedVersion::NoStream,
            [
                event("A", &["k"]).with_id(ids[0]),
                event("A", &[]).with_id(ids[1]),
            ],
        )
        .append(
            "b",
            ExpectedVersion::NoStream,
            [event("B", &["k"]).with_id(ids[2])],
        )
        .condition(AppendCondition::new(Query::tagged(["k"]), None));
    let first = {
        let store = Store::open(dir.path(), Options::default()).unwrap();
        let first = store.commit(&commit).unwrap();
        // The condition and the expected versions would fail now; the
        // retry is recognised by its ids before either is looked at.
        assert_eq!(store.commit(&commit).unwrap(), first);
        store.close().unwrap();
        first
    };
    let store = Store::open(dir.path(), Options::default()).unwrap();
    assert_eq!(store.commit(&commit).unwrap(), first);
    assert_eq!(store.read_all(0, Direction::Forward, 10).unwrap().len(), 3);
    // The same ids split differently over the streams are no retry.
    let reshaped = Commit::new()
        .append("a", ExpectedVersion::Any, [event("A", &[]).with_id(ids[0])])
        .append(
            "b",
            ExpectedVersion::Any,
            [
                event("A", &[]).with_id(ids[1]),
                event("B", &[]).with_id(ids[2]),
            ],
        );
    assert!(matches!(
        store.commit(&reshaped),
        Err(Error::IdempotencyConflict { .. })
    ));
}

#[test]
fn a_condition_fails_on_the_first_match_after_its_position() {
    let dir = tempfile::tempdir().unwrap();
    let store = Store::open(dir.path(), Options::default()).unwrap();
    store
        .append("s", ExpectedVersion::Any, &[event("Noise", &["other"])])
        .unwrap();
    store
        .append(
            "s",
            ExpectedVersion::Any,
            &[event("Claimed", &["user:ada", "x"])],
        )
        .unwrap();
    store
        .append(
            "s",
            ExpectedVersion::Any,
            &[event("Claimed", &["user:ada"])],
        )
        .unwrap();
    let try_commit = |query: Query, after: Option<u64>| {
        store.commit(
            &Commit::new()
                .append("t", ExpectedVersion::Any, [event("Try", &[])])
                .condition(AppendCondition::new(query, after)),
        )
    };
    let failed = |r: evstore::Result<evstore::CommitResult>| match r {
        Err(Error::AppendConditionFailed { position }) => Some(position),
        Ok(_) => None,
        Err(other) => panic!("{other:?}"),
    };
    assert_eq!(
        failed(try_commit(Query::tagged(["user:ada"]), None)),
        Some(1)
    );
    assert_eq!(
        failed(try_commit(Query::tagged(["user:ada"]), Some(1))),
        Some(2)
    );
    assert_eq!(
        failed(try_commit(Query::tagged(["user:ada", "x"]), Some(0))),
        Some(1)
    );
    let by_type = Query::items([QueryItem::new().types(["Noise"])]);
    assert_eq!(failed(try_commit(by_type.clone(), None)), Some(0));
    assert_eq!(failed(try_commit(by_type, Some(0))), None);
    assert_eq!(
        failed(try_commit(Query::tagged(["user:ada"]), Some(2))),
        None
    );
    // Query::all fails on any event after the position: the one just
    // committed is at 4.
    assert_eq!(failed(try_commit(Query::all(), Some(3))), Some(4));
    assert_eq!(failed(try_commit(Query::all(), Some(5))), None);
}

/// Every thread reads the shared tag, then appends "if nothing matched
/// after what I read". Exactly one per round may commit, however the
/// racers fall into groups (lingering makes them share groups).
fn one_winner_per_round(options: Options, rounds: usize, threads: usize) {
    let dir = tempfile::tempdir().unwrap();
    let store = Arc::new(Store::open(dir.path(), options).unwrap());
    let barrier = Arc::new(Barrier::new(threads));
    let handles: Vec<_> = (0..threads)
        .map(|t| {
            let store = Arc::clone(&store);
            let barrier = Arc::clone(&barrier);
            std::thread::spawn(move || {
                let mut wins = Vec::new();
                for round in 0..rounds {
                    let tag = format!("round:{round}");
                    let query = Query::tagged([tag.as_str()]);
                    barrier.wait();
                    let read = store.read_query_after(&query, None, usize::MAX).unwrap();
                    if !read.events.is_empty() {
                        // Someone claimed the round before this read.
                        continue;
                    }
                    let claim = EventData::new("Claimed", format!("{t}").into_bytes())
                        .with_tags([tag.as_str(), "claims"]);
                    let outcome = store.commit(
                        &Commit::new()
                            .append(format!("claimer-{t}"), ExpectedVersion::Any, [claim])
                            .condition(AppendCondition::new(query, read.head)),
                    );
                    match outcome {
                        Ok(result) => wins.push((round, result.first_position)),
                        Err(Error::AppendConditionFailed { .. }) => {}
                        Err(other) => panic!("thread {t} round {round}: {other:?}"),
                    }
                }
                wins
            })
        })
        .collect();
    let mut wins: Vec<(usize, u64)> = handles
        .into_iter()
        .flat_map(|h| h.join().unwrap())
        .collect();
    wins.sort_unstable();
    let rounds_won: Vec<usize> = wins.iter().map(|w| w.0).collect();
    assert_eq!(
        rounds_won,
        (0..rounds).collect::<Vec<_>>(),
        "exactly one winner per round"
    );
    store.flush().unwrap();
    let claims = store
        .read_query(
            &Query::tagged(["claims"]),
            0,
            Direction::Forward,
            usize::MAX,
        )
        .unwrap();
    assert_eq!(claims.events.len(), rounds);
}

#[test]
fn racing_conditional_appends_let_exactly_one_commit_per_round() {
    one_winner_per_round(Options::default(), 1000, 4);
}

#[test]
fn racing_conditional_appends_sharing_groups_let_exactly_one_commit_per_round() {
    let lingering = Options::default()
        .durability(Durability::Buffered)
        .max_linger(Some(Duration::from_micros(300)));
    one_winner_per_round(lingering, 1000, 8);
}

/// What a full scan of the log says `query` matches from `from` on.
fn scanned(all: &[RecordedEvent], query: &Query, from: u64) -> Vec<u64> {
    all.iter()
        .filter(|e| e.position >= from && query.matches(e))
        .map(|e| e.position)
        .collect()
}

fn random_query(rng: &mut TestRng) -> Query {
    let items = (0..1 + rng.below(3))
        .map(|_| {
            let mut item = QueryItem::new();
            if rng.below(3) > 0 {
                item = item.tags((0..1 + rng.below(2)).map(|_| format!("t{}", rng.below(6))));
            }
            if rng.below(3) == 0 || item.required_tags().is_empty() {
                item = item.types((0..1 + rng.below(2)).map(|_| format!("T{}", rng.below(4))));
            }
            item
        })
        .collect::<Vec<_>>();
    Query::items(items)
}

/// On random logs spread over several segments, every indexed answer (read
/// forwards and backwards with limits, and conditions) equals a full scan,
/// in the store that wrote them and after a reopen, where sealed segments'
/// postings are read back from their records.
#[test]
fn indexed_query_answers_equal_a_full_scan() {
    for seed in 1..=4u64 {
        let dir = tempfile::tempdir().unwrap();
        let options = || Options::default().segment_size(32 << 10);
        let mut rng = TestRng::new(seed);
        let store = Store::open(dir.path(), options()).unwrap();
        for i in 0..600u64 {
            let events: Vec<EventData> = (0..1 + rng.below(3))
                .map(|_| {
                    let mut tags: Vec<String> = (0..rng.below(4))
                        .map(|_| format!("t{}", rng.below(6)))
                        .collect();
                    tags.sort();
                    tags.dedup();
                    EventData::new(
                        format!("T{}", rng.below(4)),
                        vec![0u8; rng.below(200) as usize],
                    )
                    .with_tags(tags)
                })
                .collect();
            let split = rng.below(2) == 1 && events.len() > 1;
            let commit = if split {
                let (first, second) = events.split_at(events.len() / 2);
                Commit::new()
                    .append(format!("s{}", i % 7), ExpectedVersion::Any, first.to_vec())
                    .append(
                        format!("s{}", (i + 1) % 7),
                        ExpectedVersion::Any,
                        second.to_vec(),
                    )
            } else {
                Commit::new().append(format!("s{}", i % 7), ExpectedVersion::Any, events)
            };
            store.commit(&commit).unwrap();
        }
        let mut writing = Some(store);
        // First in the store that wrote the log (sealed segments keep the
        // postings they were written with), then reopened (sealed
        // segments' postings are read from their records on first use).
        for _pass in 0..2 {
            let store = match writing.take() {
                Some(store) => store,
                None => Store::open(dir.path(), options()).unwrap(),
            };
            let all = store.read_all(0, Direction::Forward, usize::MAX).unwrap();
            assert!(store.log_info().segments.len() > 3, "spans segments");
            for _ in 0..60 {
                let query = random_query(&mut rng);
                let from = rng.below(all.len() as u64 + 2);
                let want = scanned(&all, &query, from);
                let limit = 1 + rng.below(40) as usize;
                let read = store
                    .read_query(&query, from, Direction::Forward, limit)
                    .unwrap();
                let got: Vec<u64> = read.events.iter().map(|e| e.position).collect();
                let expected: Vec<u64> = want.iter().copied().take(limit).collect();
                assert_eq!(got, expected, "seed {seed} {query:?} from {from}");
                assert_eq!(read.head, store.last_position());
                let back = store
                    .read_query(&query, from, Direction::Backward, limit)
                    .unwrap();
                let got: Vec<u64> = back.events.iter().map(|e| e.position).collect();
                let expected: Vec<u64> = scanned(&all, &query, 0)
                    .into_iter()
                    .filter(|&p| p <= from)
                    .rev()
                    .take(limit)
                    .collect();
                assert_eq!(got, expected, "seed {seed} {query:?} back from {from}");
                for (direction, read) in [(Direction::Forward, &read), (Direction::Backward, &back)]
                {
                    let (lent, head) = visited_query(&store, &query, from, direction, limit);
                    assert_eq!(
                        &lent, &read.events,
                        "seed {seed} {query:?} {direction:?} {from}"
                    );
                    assert_eq!(head, read.head);
                }
                let after = from.checked_sub(1);
                let outcome = store.commit(
                    &Commit::new()
                        .append("probe", ExpectedVersion::Any, [event("Probe", &["probe"])])
                        .condition(AppendCondition::new(query.clone(), after)),
                );
                match (outcome, want.first()) {
                    (Err(Error::AppendConditionFailed { position }), Some(&first)) => {
                        assert_eq!(position, first, "seed {seed} {query:?} after {after:?}");
                    }
                    // Probes match no random query (their type and tag are
                    // never drawn), so the scan stays right after them.
                    (Ok(result), None) => assert!(result.first_position >= all.len() as u64),
                    (other, first) => {
                        panic!("seed {seed} {query:?} after {after:?}: {other:?}, scan {first:?}")
                    }
                }
            }
        }
    }
}

/// A subscription by query delivers exactly the matching events, in order,
/// from its checkpoint: history far behind the end (read through the
/// indexes), then live events, with nothing skipped at the switch.
#[test]
fn a_subscription_by_query_catches_up_then_follows_live() {
    let dir = tempfile::tempdir().unwrap();
    let store = Store::open(
        dir.path(),
        Options::default()
            .segment_size(64 << 10)
            .durability(Durability::Buffered),
    )
    .unwrap();
    let tagged = |i: u64| {
        let mut tags = vec![format!("n:{}", i % 10)];
        if i.is_multiple_of(7) {
            tags.push("seven".into());
        }
        EventData::new(
            if i.is_multiple_of(2) { "Even" } else { "Odd" },
            vec![1u8; 64],
        )
        .with_tags(tags)
    };
    for i in 0..6000u64 {
        store
            .append("s", ExpectedVersion::Any, &[tagged(i)])
            .unwrap();
    }
    store.flush().unwrap();
    let query = Query::items([
        QueryItem::new().tags(["seven"]),
        QueryItem::new().types(["Odd"]).tags(["n:4"]),
    ]);
    let expected = |upto: u64, from: u64| -> Vec<u64> {
        (from..upto)
            .filter(|i| i % 7 == 0 || (i % 2 == 1 && i % 10 == 4))
            .collect()
    };
    let history_from = |from: u64| {
        let mut subscription = store.subscribe_all(from, evstore::Filter::query(query.clone()));
        let history = expected(6000, from);
        let mut seen = Vec::new();
        while seen.len() < history.len() {
            let event = subscription.next_event().unwrap().unwrap();
            assert!(query.matches(&event));
            seen.push(event.position);
        }
        assert_eq!(seen, history, "from {from}");
        subscription
    };
    drop(history_from(1234));
    let mut subscription = history_from(0);
    for i in 6000..6100u64 {
        store
            .append("s", ExpectedVersion::Any, &[tagged(i)])
            .unwrap();
    }
    store.flush().unwrap();
    let live = expected(6100, 6000);
    let mut got = Vec::new();
    while got.len() < live.len() {
        got.push(subscription.next_event().unwrap().unwrap().position);
    }
    assert_eq!(got, live);
}
