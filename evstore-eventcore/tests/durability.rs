//! What eventcore wrote is still there after the store directory is closed
//! and opened again: events (at the evstore versions the mapping says),
//! command-state snapshots, and projector checkpoints.

mod common;

use common::{account, balance, history, open, Deposit, LedgerProjector, Transfer};
use eventcore::{
    execute, run_projection, Command, CommandError, CommandLogic, NewEvents, ProjectionConfig,
    RetryPolicy, StreamId,
};
use eventcore_types::{CheckpointStore, CommandStateSnapshotId, EventStore, StreamPosition};
use evstore::Uuid;
use evstore_eventcore::{log_position, stream_position};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};

/// Reads an account's balance from a command-state snapshot, counting
/// the events it had to fold; writes nothing.
#[derive(Command)]
struct Audit {
    #[stream]
    account: StreamId,
    folded: Arc<AtomicUsize>,
}

impl CommandLogic for Audit {
    type Event = common::AccountEvent;
    type State = u64;

    fn apply(&self, balance: u64, event: &common::AccountEvent) -> u64 {
        self.folded.fetch_add(1, Ordering::Relaxed);
        event.apply_to(balance)
    }

    fn handle(&self, _: u64) -> Result<NewEvents<common::AccountEvent>, CommandError> {
        Ok(NewEvents::default())
    }

    fn command_state_snapshot_id(&self) -> Option<CommandStateSnapshotId> {
        Some(CommandStateSnapshotId::try_new(format!("audit:{}", self.account)).unwrap())
    }

    fn serialize_command_state_snapshot(
        &self,
        balance: &u64,
    ) -> Result<serde_json::Value, CommandError> {
        Ok(serde_json::json!(balance))
    }

    fn deserialize_command_state_snapshot(
        &self,
        state: serde_json::Value,
    ) -> Result<u64, CommandError> {
        serde_json::from_value(state).map_err(|e| CommandError::ValidationError(e.to_string()))
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn events_and_command_state_snapshots_survive_reopening_the_store() {
    let dir = tempfile::tempdir().unwrap();
    let (alice, bob) = (account("alice"), account("bob"));
    // Enough events for eventcore to save the audit's state.
    let deposits = vec![1; eventcore::COMMAND_STATE_SNAPSHOT_REFRESH_THRESHOLD];
    {
        let events = open(dir.path());
        let deposit = Deposit {
            account: alice.clone(),
            amounts: deposits,
        };
        execute(&events, deposit, RetryPolicy::new()).await.unwrap();
        let transfer = Transfer {
            from: alice.clone(),
            to: bob.clone(),
            amount: 30,
        };
        execute(&events, transfer, RetryPolicy::new())
            .await
            .unwrap();
        let audit = Audit {
            account: alice.clone(),
            folded: Arc::default(),
        };
        execute(&events, audit, RetryPolicy::new()).await.unwrap();
        // The last handle: dropping it closes the store.
    }

    let events = open(dir.path());
    assert_eq!(balance(&events, &alice).await, 70);
    assert_eq!(balance(&events, &bob).await, 30);
    assert_eq!(history(&events, &alice).await.len(), 101);
    // eventcore version 101 (events counted) is evstore version 100.
    assert_eq!(events.store().stream_version("alice").unwrap(), Some(100));
    assert_eq!(events.store().stream_version("bob").unwrap(), Some(0));

    let snapshot_id = CommandStateSnapshotId::try_new("audit:alice").unwrap();
    let snapshot = events
        .load_command_state_snapshot(snapshot_id)
        .await
        .unwrap()
        .unwrap();
    assert_eq!(snapshot.state, serde_json::json!(70));
    // Auditing again starts from the snapshot: nothing left to fold.
    let folded = Arc::new(AtomicUsize::new(0));
    let audit = Audit {
        account: alice.clone(),
        folded: Arc::clone(&folded),
    };
    execute(&events, audit, RetryPolicy::new()).await.unwrap();
    assert_eq!(folded.load(Ordering::Relaxed), 0);
}

#[tokio::test(flavor = "multi_thread")]
async fn projector_checkpoints_survive_reopening_the_store() {
    let dir = tempfile::tempdir().unwrap();
    let (alice, bob) = (account("alice"), account("bob"));
    let foreign = StreamPosition::new(Uuid::from_u128(0x0190_0000_0000_7000_8000_0000_0000_0001));
    {
        let events = open(dir.path());
        let deposit = Deposit {
            account: alice.clone(),
            amounts: vec![10, 20],
        };
        execute(&events, deposit, RetryPolicy::new()).await.unwrap();
        let transfer = Transfer {
            from: alice.clone(),
            to: bob.clone(),
            amount: 5,
        };
        execute(&events, transfer, RetryPolicy::new())
            .await
            .unwrap();
        let ledger = Arc::new(Mutex::new(common::Ledger::default()));
        let projector = LedgerProjector {
            name: "ledger",
            ledger: Arc::clone(&ledger),
        };
        run_projection(projector, &events, ProjectionConfig::default())
            .await
            .unwrap();
        assert_eq!(ledger.lock().unwrap().positions.len(), 4);
        events.save("imported", foreign).await.unwrap();
    }

    let events = open(dir.path());
    // The projector handled positions 0 to 3: eventcore's checkpoint is the
    // last of them, evstore's the first position not handled.
    let checkpoint = events.load("ledger").await.unwrap().unwrap();
    assert_eq!(log_position(checkpoint), Some(3));
    assert_eq!(events.store().load_checkpoint("ledger").unwrap(), Some(4));
    assert_eq!(events.load("imported").await.unwrap(), Some(foreign));

    // It resumes after its checkpoint, and sees only what is new (not the
    // anchor of the "imported" record, written since, either).
    let deposit = Deposit {
        account: bob.clone(),
        amounts: vec![1],
    };
    execute(&events, deposit, RetryPolicy::new()).await.unwrap();
    let ledger = Arc::new(Mutex::new(common::Ledger::default()));
    let projector = LedgerProjector {
        name: "ledger",
        ledger: Arc::clone(&ledger),
    };
    run_projection(projector, &events, ProjectionConfig::default())
        .await
        .unwrap();
    let deposited_at = events.store().last_position().unwrap();
    let ledger = ledger.lock().unwrap();
    assert_eq!(ledger.positions, [stream_position(deposited_at).unwrap()]);
    assert_eq!(ledger.balances.get("bob"), Some(&1));
}
