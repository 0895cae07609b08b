//! The projection side: what the reader returns and hides, and projector
//! leadership shared by every adapter over one store.

mod common;

use common::{account, open, AccountEvent, Deposit, LedgerProjector};
use eventcore::{execute, run_projection, ProjectionConfig, ProjectionError, RetryPolicy};
use eventcore_types::{
    BatchSize, CommandStateSnapshot, CommandStateSnapshotId, EventFilter, EventPage, EventReader,
    EventStore, ProjectorCoordinator, StreamPosition, StreamPrefix,
};
use evstore::Uuid;
use evstore_eventcore::{log_position, Error, EvstoreEventStore};
use std::collections::HashMap;
use std::sync::{Arc, Mutex};

#[tokio::test(flavor = "multi_thread")]
async fn leadership_is_exclusive_across_every_adapter_of_a_store() {
    let dir = tempfile::tempdir().unwrap();
    let first = open(dir.path());
    // Made on its own from another clone of the same store.
    let second = EvstoreEventStore::new(first.store().clone());

    let leader = first.try_acquire("ledger").await.unwrap();
    assert_eq!(leader.projector(), "ledger");
    assert!(matches!(
        second.try_acquire("ledger").await,
        Err(Error::LeadershipHeld { projector }) if projector == "ledger"
    ));
    // eventcore's runner gives up at once rather than run a second copy.
    let ledger = Arc::new(Mutex::new(common::Ledger::default()));
    let projector = LedgerProjector {
        name: "ledger",
        ledger,
    };
    let refused = run_projection(projector, &second, ProjectionConfig::default()).await;
    assert!(matches!(refused, Err(ProjectionError::LeadershipError(_))));
    // Another projector, or the same one over another store, is free.
    let _other_projector = second.try_acquire("audit").await.unwrap();
    let elsewhere = tempfile::tempdir().unwrap();
    let _other_store = open(elsewhere.path()).try_acquire("ledger").await.unwrap();

    drop(leader);
    let _next_leader = second.try_acquire("ledger").await.unwrap();
}

#[tokio::test(flavor = "multi_thread")]
async fn the_reader_returns_application_events_in_log_order_and_hides_the_adapter_s_own() {
    let dir = tempfile::tempdir().unwrap();
    let events = open(dir.path());
    let (dollar, plain) = (account("$savings"), account("checking"));
    execute(
        &events,
        Deposit {
            account: dollar.clone(),
            amounts: vec![1, 2],
        },
        RetryPolicy::new(),
    )
    .await
    .unwrap();
    // A command-state snapshot and a foreign checkpoint put records in the
    // log, between the application's events.
    let snapshot = CommandStateSnapshot::new(serde_json::json!(3), HashMap::new());
    let snapshot_id = CommandStateSnapshotId::try_new("audit").unwrap();
    events
        .save_command_state_snapshot(snapshot_id, snapshot)
        .await
        .unwrap();
    let foreign = StreamPosition::new(Uuid::from_u128(7));
    eventcore_types::CheckpointStore::save(&events, "imported", foreign)
        .await
        .unwrap();
    execute(
        &events,
        Deposit {
            account: plain.clone(),
            amounts: vec![4],
        },
        RetryPolicy::new(),
    )
    .await
    .unwrap();

    // evstore reserves `$`: the stream is stored escaped, and read back
    // under its own id.
    assert_eq!(events.store().stream_version("[$savings").unwrap(), Some(1));
    assert_eq!(common::history(&events, &dollar).await.len(), 2);

    let page = EventPage::first(BatchSize::new(100));
    let all = events
        .read_events::<AccountEvent>(EventFilter::all(), page)
        .await
        .unwrap();
    let amounts: Vec<u64> = all
        .iter()
        .map(|(event, _)| match event {
            AccountEvent::Deposited { amount, .. } | AccountEvent::Withdrawn { amount, .. } => {
                *amount
            }
        })
        .collect();
    assert_eq!(amounts, [1, 2, 4]);
    let positions: Vec<Option<u64>> = all.iter().map(|(_, at)| log_position(*at)).collect();
    // Positions 2 and 3 are the two records' anchors.
    assert_eq!(positions, [Some(0), Some(1), Some(4)]);

    let prefix = EventFilter::prefix(StreamPrefix::try_new("$").unwrap());
    let dollars = events
        .read_events::<AccountEvent>(prefix, page)
        .await
        .unwrap();
    assert_eq!(dollars.len(), 2);

    // Resuming after the first event; a position of another back end names
    // no place in this log.
    let rest = events
        .read_events::<AccountEvent>(EventFilter::all(), page.next(all[0].1))
        .await
        .unwrap();
    assert_eq!(rest.len(), 2);
    let elsewhere = events
        .read_events::<AccountEvent>(EventFilter::all(), page.next(foreign))
        .await;
    assert!(matches!(elsewhere, Err(Error::ForeignPosition { position }) if position == foreign));
}
