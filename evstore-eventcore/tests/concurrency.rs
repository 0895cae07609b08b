//! Optimistic concurrency across streams: expected versions in eventcore's
//! counting, conflicts that fail a whole command, read-only guards, and
//! racing commands of which exactly one wins.

mod common;

use common::{account, balance, history, open, AccountEvent, Deposit, Transfer};
use eventcore::{execute, BackoffStrategy, CommandError, DelayMilliseconds, RetryPolicy, StreamId};
use eventcore_types::{EventStore, EventStoreError, StreamVersion, StreamWrites};
use evstore_eventcore::EvstoreEventStore;

fn deposited(account: &StreamId, amount: u64) -> AccountEvent {
    AccountEvent::Deposited {
        account: account.clone(),
        amount,
    }
}

async fn deposit(events: &EvstoreEventStore, account: &StreamId, amounts: Vec<u64>) {
    let command = Deposit {
        account: account.clone(),
        amounts,
    };
    execute(events, command, RetryPolicy::new()).await.unwrap();
}

#[tokio::test(flavor = "multi_thread")]
async fn of_two_racing_multi_stream_commits_exactly_one_is_written() {
    let dir = tempfile::tempdir().unwrap();
    let events = open(dir.path());
    let (left, right) = (account("left"), account("right"));
    deposit(&events, &left, vec![1]).await;
    deposit(&events, &right, vec![1]).await;

    // Both decided from version 1 of both streams.
    let commit = |amount: u64| {
        StreamWrites::new()
            .register_stream(left.clone(), StreamVersion::new(1))
            .and_then(|writes| writes.register_stream(right.clone(), StreamVersion::new(1)))
            .and_then(|writes| writes.append(deposited(&left, amount)))
            .and_then(|writes| writes.append(deposited(&right, amount)))
            .unwrap()
    };
    let (first, second) = (events.clone(), events.clone());
    let (a, b) = (commit(10), commit(20));
    let racing = [
        tokio::spawn(async move { first.append_events(a).await }),
        tokio::spawn(async move { second.append_events(b).await }),
    ];
    let mut written = Vec::new();
    let mut conflicts = 0;
    for (amount, race) in [10, 20].into_iter().zip(racing) {
        match race.await.unwrap() {
            Ok(_) => written.push(amount),
            Err(EventStoreError::VersionConflict {
                expected, actual, ..
            }) => {
                assert_eq!(
                    (expected, actual),
                    (StreamVersion::new(1), StreamVersion::new(2))
                );
                conflicts += 1;
            }
            Err(other) => panic!("unexpected error {other}"),
        }
    }
    assert_eq!((written.len(), conflicts), (1, 1));
    // The winner's events, in both streams, and nothing of the loser's.
    let winner = written[0];
    assert_eq!(
        history(&events, &left).await,
        [deposited(&left, 1), deposited(&left, winner)]
    );
    assert_eq!(
        history(&events, &right).await,
        [deposited(&right, 1), deposited(&right, winner)]
    );
    assert_eq!(events.store().last_position(), Some(3));
}

#[tokio::test(flavor = "multi_thread")]
async fn a_stale_read_only_stream_fails_the_whole_commit_and_writes_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let events = open(dir.path());
    let (guard, target, other) = (account("guard"), account("target"), account("other"));
    deposit(&events, &guard, vec![1, 2, 3]).await;
    let end_before = events.store().last_position();

    // Read at eventcore version 2 (two events), but it has three.
    let writes = StreamWrites::new()
        .register_stream(guard.clone(), StreamVersion::new(2))
        .and_then(|writes| writes.register_stream(target.clone(), StreamVersion::new(0)))
        .and_then(|writes| writes.register_stream(other.clone(), StreamVersion::new(0)))
        .and_then(|writes| writes.append(deposited(&target, 5)))
        .and_then(|writes| writes.append(deposited(&other, 5)))
        .unwrap();
    match events.append_events(writes).await {
        Err(EventStoreError::VersionConflict {
            stream_id,
            expected,
            actual,
        }) => {
            assert_eq!(stream_id, guard);
            assert_eq!(
                (expected, actual),
                (StreamVersion::new(2), StreamVersion::new(3))
            );
        }
        Err(other) => panic!("unexpected error {other}"),
        Ok(_) => panic!("a stale guard let the commit through"),
    }
    assert_eq!(events.store().last_position(), end_before);
    assert_eq!(events.store().stream_version("target").unwrap(), None);
    assert_eq!(events.store().stream_version("other").unwrap(), None);

    // At its current version the guard lets the same commit through.
    let writes = StreamWrites::new()
        .register_stream(guard.clone(), StreamVersion::new(3))
        .and_then(|writes| writes.register_stream(target.clone(), StreamVersion::new(0)))
        .and_then(|writes| writes.append(deposited(&target, 5)))
        .unwrap();
    events.append_events(writes).await.unwrap();
    assert_eq!(history(&events, &target).await, [deposited(&target, 5)]);
    assert_eq!(events.store().stream_version("guard").unwrap(), Some(2));
}

#[tokio::test(flavor = "multi_thread")]
async fn a_command_that_writes_nothing_still_checks_what_it_read() {
    let dir = tempfile::tempdir().unwrap();
    let events = open(dir.path());
    let watched = account("watched");
    deposit(&events, &watched, vec![1]).await;

    let stale = StreamWrites::new()
        .register_stream(watched.clone(), StreamVersion::new(0))
        .unwrap();
    assert!(matches!(
        events.append_events(stale).await,
        Err(EventStoreError::VersionConflict { .. })
    ));
    let current = StreamWrites::new()
        .register_stream(watched.clone(), StreamVersion::new(1))
        .unwrap();
    events.append_events(current).await.unwrap();
    assert_eq!(events.store().last_position(), Some(0));
}

#[tokio::test(flavor = "multi_thread")]
async fn concurrent_transfers_never_overdraw_an_account() {
    let dir = tempfile::tempdir().unwrap();
    let events = open(dir.path());
    let (source, sink) = (account("source"), account("sink"));
    deposit(&events, &source, vec![100]).await;

    // Ten transfers of 30 race for 100: eventcore retries the ones that
    // lose a race, and the business rule refuses what does not fit. Only
    // three transfers are ever written, so none loses more than three
    // races: the default four retries are enough.
    let retry_at_once = RetryPolicy::new().backoff_strategy(BackoffStrategy::Fixed {
        delay_ms: DelayMilliseconds::new(0),
    });
    let transfers: Vec<_> = (0..10)
        .map(|_| {
            let (events, from, to) = (events.clone(), source.clone(), sink.clone());
            let policy = retry_at_once.clone();
            tokio::spawn(async move {
                let transfer = Transfer {
                    from,
                    to,
                    amount: 30,
                };
                execute(&events, transfer, policy).await
            })
        })
        .collect();
    let mut succeeded = 0;
    for transfer in transfers {
        match transfer.await.unwrap() {
            Ok(_) => succeeded += 1,
            Err(CommandError::BusinessRuleViolation(_)) => {}
            Err(other) => panic!("unexpected error {other}"),
        }
    }
    assert_eq!(succeeded, 3);
    assert_eq!(balance(&events, &source).await, 10);
    assert_eq!(balance(&events, &sink).await, 90);
}
