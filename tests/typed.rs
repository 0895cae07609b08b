//! Typed events through both codecs, decode errors, and aggregates loaded
//! from snapshots plus events.

use evstore::{
    Aggregate, Codec, Direction, DomainEvent, Durability, Error, EventData, ExpectedVersion,
    Options, Store, TypedStore,
};
use proptest::prelude::*;
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;
use std::sync::{Arc, Barrier};

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
enum AccountEvent {
    Opened { owner: String },
    Deposited { amount: u64, memo: String },
    Withdrew { amount: u64 },
    Tagged(BTreeMap<String, i32>),
    Closed,
}

impl DomainEvent for AccountEvent {
    fn event_type(&self) -> &str {
        match self {
            AccountEvent::Opened { .. } => "Opened",
            AccountEvent::Deposited { .. } => "Deposited",
            AccountEvent::Withdrew { .. } => "Withdrew",
            AccountEvent::Tagged(_) => "Tagged",
            AccountEvent::Closed => "Closed",
        }
    }
}

#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
struct Account {
    owner: String,
    balance: i64,
    operations: u64,
    tags: BTreeMap<String, i32>,
    closed: bool,
}

impl Aggregate for Account {
    type Event = AccountEvent;
    type Snapshot = Account;

    fn apply(&mut self, event: &AccountEvent) {
        self.operations += 1;
        match event {
            AccountEvent::Opened { owner } => self.owner = owner.clone(),
            AccountEvent::Deposited { amount, .. } => self.balance += *amount as i64,
            AccountEvent::Withdrew { amount } => self.balance -= *amount as i64,
            AccountEvent::Tagged(tags) => self.tags.extend(tags.clone()),
            AccountEvent::Closed => self.closed = true,
        }
    }

    fn to_snapshot(&self) -> Account {
        self.clone()
    }

    fn from_snapshot(snapshot: Account) -> Self {
        snapshot
    }
}

fn sample_events() -> Vec<AccountEvent> {
    vec![
        AccountEvent::Opened {
            owner: "Ada Lovelace ✓".into(),
        },
        AccountEvent::Deposited {
            amount: 1_000,
            memo: String::new(),
        },
        AccountEvent::Withdrew { amount: u64::MAX },
        AccountEvent::Tagged(BTreeMap::from([("vip".into(), -1), ("region".into(), 44)])),
        AccountEvent::Closed,
    ]
}

fn round_trip<C: Codec>(typed: TypedStore<C>) {
    let events = sample_events();
    let written = typed
        .append("acct-1", ExpectedVersion::NoStream, &events)
        .unwrap();
    assert_eq!(written.last_version, 4);
    let read = typed
        .read_stream::<AccountEvent>("acct-1", 0, Direction::Forward, 100)
        .unwrap();
    assert_eq!(
        read.iter().map(|r| r.event.clone()).collect::<Vec<_>>(),
        events
    );
    assert_eq!(
        read.iter().map(|r| r.version).collect::<Vec<_>>(),
        [0, 1, 2, 3, 4]
    );
    let raw = typed
        .store()
        .read_stream("acct-1", 0, Direction::Forward, 100)
        .unwrap();
    for (raw, event) in raw.iter().zip(&events) {
        assert_eq!(&*raw.event_type, event.event_type());
    }
    let backward = typed
        .read_stream::<AccountEvent>("acct-1", u64::MAX, Direction::Backward, 2)
        .unwrap();
    assert_eq!(backward[0].event, AccountEvent::Closed);

    // Explicit ids through encode, for idempotent retries.
    let retried = typed
        .encode(&AccountEvent::Withdrew { amount: 5 })
        .unwrap()
        .with_id(evstore::Uuid::from_u128(77));
    let first = typed
        .store()
        .append(
            "acct-1",
            ExpectedVersion::Exact(4),
            std::slice::from_ref(&retried),
        )
        .unwrap();
    let again = typed
        .store()
        .append(
            "acct-1",
            ExpectedVersion::Exact(4),
            std::slice::from_ref(&retried),
        )
        .unwrap();
    assert_eq!(first, again);

    // Typed snapshots.
    let state = Account {
        owner: "x".into(),
        balance: -3,
        operations: 9,
        tags: BTreeMap::from([("k".into(), 1)]),
        closed: false,
    };
    typed.save_snapshot("acct-1", 5, &state).unwrap();
    let loaded = typed.load_snapshot::<Account>("acct-1").unwrap().unwrap();
    assert_eq!((loaded.version, loaded.state), (5, state));
}

#[test]
fn typed_round_trip_with_bincode() {
    let dir = tempfile::tempdir().unwrap();
    let store = Store::open(dir.path(), Options::default()).unwrap();
    round_trip(store.typed());
}

#[cfg(feature = "json")]
#[test]
fn typed_round_trip_with_json() {
    let dir = tempfile::tempdir().unwrap();
    let store = Store::open(dir.path(), Options::default()).unwrap();
    round_trip(store.typed_with(evstore::JsonCodec));
    // The payloads are plain JSON for other readers.
    let raw = store
        .read_stream("acct-1", 1, Direction::Forward, 1)
        .unwrap();
    let json: serde_json::Value = serde_json::from_slice(&raw[0].payload).unwrap();
    assert_eq!(json["Deposited"]["amount"], 1000);
}

#[cfg(feature = "json")]
#[test]
fn events_written_with_one_codec_do_not_decode_with_the_other() {
    let dir = tempfile::tempdir().unwrap();
    let store = Store::open(dir.path(), Options::default()).unwrap();
    store
        .typed_with(evstore::JsonCodec)
        .append("s", ExpectedVersion::Any, &sample_events())
        .unwrap();
    let err = store
        .typed()
        .read_stream::<AccountEvent>("s", 0, Direction::Forward, 10)
        .unwrap_err();
    assert!(
        matches!(&err, Error::DecodeEvent { stream, version: 0, event_type, codec: "bincode", .. }
            if stream == "s" && event_type == "Opened"),
        "{err}"
    );
}

#[test]
fn undecodable_events_are_typed_errors_naming_stream_version_and_type() {
    let dir = tempfile::tempdir().unwrap();
    let store = Store::open(dir.path(), Options::default()).unwrap();
    let typed = store.typed();
    typed
        .append("acct-9", ExpectedVersion::NoStream, &sample_events()[..2])
        .unwrap();
    // Garbage bytes under a known type name.
    store
        .append(
            "acct-9",
            ExpectedVersion::Exact(1),
            &[EventData::new("Deposited", &[0xFFu8, 0xFF, 0xFF][..])],
        )
        .unwrap();
    let err = typed
        .read_stream::<AccountEvent>("acct-9", 0, Direction::Forward, 10)
        .unwrap_err();
    let Error::DecodeEvent {
        stream,
        version,
        event_type,
        codec,
        source,
    } = &err
    else {
        panic!("{err}")
    };
    assert_eq!(
        (stream.as_str(), *version, event_type.as_str(), *codec),
        ("acct-9", 2, "Deposited", "bincode")
    );
    // The codec's own error is the source, and not repeated in the message.
    let cause = source.to_string();
    assert!(!cause.is_empty());
    assert!(err.to_string().contains("acct-9"));
    assert!(!err.to_string().contains(&cause), "{err}");
    assert_eq!(
        std::error::Error::source(&err).map(|s| s.to_string()),
        Some(cause)
    );
    // Earlier events still read.
    assert_eq!(
        typed
            .read_stream::<AccountEvent>("acct-9", 0, Direction::Forward, 2)
            .unwrap()
            .len(),
        2
    );

    // A payload of one variant stored under another variant's name: the
    // mismatch is caught, not returned as the wrong event.
    let closed = typed.encode(&AccountEvent::Closed).unwrap();
    store
        .append(
            "acct-10",
            ExpectedVersion::NoStream,
            &[EventData::new("Opened", closed.payload().clone())],
        )
        .unwrap();
    let err = typed
        .read_stream::<AccountEvent>("acct-10", 0, Direction::Forward, 1)
        .unwrap_err();
    assert!(
        matches!(&err, Error::DecodeEvent { event_type, source, .. }
            if event_type == "Opened" && source.to_string().contains("'Closed'")),
        "{err:?}"
    );
    // Loading an aggregate over such a stream reports the same error.
    assert!(matches!(
        store.load_aggregate::<Account>("acct-10"),
        Err(Error::DecodeEvent { version: 0, .. })
    ));
}

#[test]
fn a_snapshot_of_another_type_is_a_decode_error_and_aggregates_replay_instead() {
    let dir = tempfile::tempdir().unwrap();
    let store = Store::open(dir.path(), Options::default()).unwrap();
    let typed = store.typed();
    typed
        .append("acct-1", ExpectedVersion::NoStream, &sample_events()[..2])
        .unwrap();
    typed
        .save_snapshot("acct-1", 1, &("not", "an", "account"))
        .unwrap();
    let err = typed.load_snapshot::<Account>("acct-1").unwrap_err();
    assert!(
        matches!(err, Error::DecodeSnapshot { version: 1, .. }),
        "{err}"
    );

    let loaded = store.load_aggregate::<Account>("acct-1").unwrap();
    assert!(matches!(
        loaded.snapshot_error(),
        Some(Error::DecodeSnapshot { .. })
    ));
    assert_eq!(loaded.snapshot_version(), None);
    assert_eq!(loaded.events_replayed(), 2);
    assert_eq!(loaded.state().balance, 1_000);
}

/// The state every event of the stream gives, folded from the start
/// without snapshots.
fn full_replay(store: &Store, stream: &str) -> (Account, Option<u64>) {
    let events = store
        .typed()
        .read_stream::<AccountEvent>(stream, 0, Direction::Forward, usize::MAX)
        .unwrap();
    let mut account = Account::default();
    for recorded in &events {
        account.apply(&recorded.event);
    }
    (account, events.last().map(|e| e.version))
}

fn arbitrary_event() -> impl Strategy<Value = AccountEvent> {
    prop_oneof![
        "[a-z]{0,8}".prop_map(|owner| AccountEvent::Opened { owner }),
        (0u64..1000, "[a-z ]{0,12}")
            .prop_map(|(amount, memo)| AccountEvent::Deposited { amount, memo }),
        (0u64..1000).prop_map(|amount| AccountEvent::Withdrew { amount }),
        prop::collection::btree_map("[a-c]", any::<i32>(), 0..3).prop_map(AccountEvent::Tagged),
        Just(AccountEvent::Closed),
    ]
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 24, ..ProptestConfig::default() })]

    /// Whatever the saves, snapshot interval and reopenings, loading gives
    /// exactly the state of a full replay, replaying only events after the
    /// snapshot it starts from.
    #[test]
    fn load_aggregate_equals_a_full_replay(
        saves in prop::collection::vec(prop::collection::vec(arbitrary_event(), 1..6), 1..25),
        every in prop_oneof![Just(0u64), Just(1), 2u64..8, Just(20)],
        reopen_at in 0usize..25,
    ) {
        let dir = tempfile::tempdir().unwrap();
        let options = || Options::default().durability(Durability::Buffered);
        let mut store = Store::open(dir.path(), options()).unwrap();
        let mut written = 0u64;
        for (i, batch) in saves.iter().enumerate() {
            if i == reopen_at {
                drop(store);
                store = Store::open(dir.path(), options()).unwrap();
            }
            let typed = store.typed().snapshot_every(every);
            let mut loaded = typed.load_aggregate::<Account>("acct").unwrap();
            let (replayed, version) = full_replay(&store, "acct");
            prop_assert_eq!(loaded.state(), &replayed);
            prop_assert_eq!(loaded.version(), version);
            if every > 0 {
                prop_assert!(loaded.events_replayed() < every + 6);
            } else {
                prop_assert_eq!(loaded.events_replayed(), written);
            }
            let saved = typed.save_aggregate(&mut loaded, batch).unwrap();
            prop_assert!(saved.snapshot_error.is_none());
            written += batch.len() as u64;
            prop_assert_eq!(saved.appended.last_version + 1, written);
            // The in-memory state after a save matches a replay too.
            prop_assert_eq!(loaded.state(), &full_replay(&store, "acct").0);
            if let Some(at) = saved.snapshot_saved {
                prop_assert_eq!(at, saved.appended.last_version);
                prop_assert_eq!(store.load_snapshot("acct").unwrap().unwrap().version, at);
            }
        }
        let loaded = store.load_aggregate::<Account>("acct").unwrap();
        prop_assert_eq!(loaded.state(), &full_replay(&store, "acct").0);
        prop_assert_eq!(
            loaded.events_replayed(),
            written - loaded.snapshot_version().map_or(0, |v| v + 1)
        );
    }
}

#[test]
fn automatic_snapshots_follow_the_interval_and_damage_falls_back() {
    let dir = tempfile::tempdir().unwrap();
    let store = Store::open(dir.path(), Options::default()).unwrap();
    let typed = store.typed().snapshot_every(10);
    let mut snapshots = Vec::new();
    for i in 0..35u64 {
        let mut loaded = typed.load_aggregate::<Account>("acct").unwrap();
        let saved = typed
            .save_aggregate(
                &mut loaded,
                &[AccountEvent::Deposited {
                    amount: i,
                    memo: String::new(),
                }],
            )
            .unwrap();
        snapshots.extend(saved.snapshot_saved);
    }
    assert_eq!(snapshots, [9, 19, 29]);
    // Saves of four events: a snapshot when the count crosses a multiple of
    // ten, whoever saves, so concurrent writers do not each save one.
    let mut crossings = Vec::new();
    for _ in 0..8 {
        let mut loaded = typed.load_aggregate::<Account>("batched").unwrap();
        let batch = vec![AccountEvent::Closed; 4];
        crossings.extend(
            typed
                .save_aggregate(&mut loaded, &batch)
                .unwrap()
                .snapshot_saved,
        );
    }
    assert_eq!(crossings, [11, 19, 31]);
    let loaded = store.load_aggregate::<Account>("acct").unwrap();
    assert_eq!(
        (loaded.snapshot_version(), loaded.events_replayed()),
        (Some(29), 5)
    );
    assert_eq!(loaded.state().balance, (0..35).sum::<u64>() as i64);

    // Damage the newest snapshot: the load starts from the one before.
    let snapshot_dir = std::fs::read_dir(dir.path().join(evstore::SNAPSHOTS_DIR))
        .unwrap()
        .map(|entry| entry.unwrap().path())
        .find(|path| {
            path.file_name()
                .unwrap()
                .to_string_lossy()
                .starts_with("acct.")
        })
        .unwrap();
    let newest = snapshot_dir.join(format!("{:020}.snap", 29));
    let mut bytes = std::fs::read(&newest).unwrap();
    let last = bytes.len() - 1;
    bytes[last] ^= 0x10;
    std::fs::write(&newest, bytes).unwrap();
    let loaded = store.load_aggregate::<Account>("acct").unwrap();
    assert_eq!(
        (loaded.snapshot_version(), loaded.events_replayed()),
        (Some(19), 15)
    );
    assert_eq!(loaded.state(), &full_replay(&store, "acct").0);
    assert_eq!(store.damaged_snapshots().len(), 1);
}

#[test]
fn concurrent_aggregate_saves_one_wins_the_other_gets_wrong_expected_version() {
    let dir = tempfile::tempdir().unwrap();
    let store = Store::open(dir.path(), Options::default()).unwrap();
    let typed = store.typed();
    let mut opened = typed.load_aggregate::<Account>("acct").unwrap();
    typed
        .save_aggregate(
            &mut opened,
            &[AccountEvent::Opened {
                owner: "both".into(),
            }],
        )
        .unwrap();
    for round in 0..20u64 {
        let barrier = Arc::new(Barrier::new(2));
        let results: Vec<_> = std::thread::scope(|scope| {
            let handles: Vec<_> = (0..2u64)
                .map(|writer| {
                    let typed = typed.clone();
                    let barrier = Arc::clone(&barrier);
                    scope.spawn(move || {
                        let mut loaded = typed.load_aggregate::<Account>("acct").unwrap();
                        let before = loaded.state().clone();
                        barrier.wait();
                        let amount = 1 + writer;
                        let result = typed.save_aggregate(
                            &mut loaded,
                            &[AccountEvent::Deposited {
                                amount,
                                memo: format!("round {round}"),
                            }],
                        );
                        if result.is_err() {
                            // A losing save leaves the loaded state alone.
                            assert_eq!(loaded.state(), &before);
                        }
                        (amount, result)
                    })
                })
                .collect();
            handles.into_iter().map(|h| h.join().unwrap()).collect()
        });
        let wins: Vec<u64> = results
            .iter()
            .filter(|(_, r)| r.is_ok())
            .map(|(amount, _)| *amount)
            .collect();
        assert_eq!(wins.len(), 1, "round {round}");
        let loser = results.iter().find_map(|(_, r)| r.as_ref().err()).unwrap();
        assert!(
            matches!(loser, Error::WrongExpectedVersion { expected: ExpectedVersion::Exact(v), actual: Some(a), .. }
                if *a == *v + 1),
            "{loser}"
        );
        let last = typed
            .read_stream::<AccountEvent>("acct", u64::MAX, Direction::Backward, 1)
            .unwrap();
        assert_eq!(
            last[0].event,
            AccountEvent::Deposited {
                amount: wins[0],
                memo: format!("round {round}")
            }
        );
    }
    let loaded = store.load_aggregate::<Account>("acct").unwrap();
    assert_eq!(loaded.version(), Some(20));
}

#[test]
fn a_new_aggregate_expects_no_stream() {
    let dir = tempfile::tempdir().unwrap();
    let store = Store::open(dir.path(), Options::default()).unwrap();
    let typed = store.typed();
    let mut fresh = typed.load_aggregate::<Account>("acct").unwrap();
    assert_eq!(
        (fresh.version(), fresh.state()),
        (None, &Account::default())
    );
    // Someone else creates the stream first.
    typed
        .append("acct", ExpectedVersion::Any, &[AccountEvent::Closed])
        .unwrap();
    let err = typed
        .save_aggregate(&mut fresh, &[AccountEvent::Closed])
        .unwrap_err();
    assert!(matches!(
        err,
        Error::WrongExpectedVersion {
            expected: ExpectedVersion::NoStream,
            actual: Some(0),
            ..
        }
    ));
    assert_eq!(fresh.version(), None);
}

#[test]
fn aggregates_of_streams_longer_than_one_read_chunk_load_fully() {
    let dir = tempfile::tempdir().unwrap();
    let store = Store::open(
        dir.path(),
        Options::default().durability(Durability::Buffered),
    )
    .unwrap();
    let typed = store.typed();
    let events: Vec<_> = (0..2500u64)
        .map(|amount| AccountEvent::Deposited {
            amount,
            memo: String::new(),
        })
        .collect();
    for chunk in events.chunks(500) {
        typed.append("big", ExpectedVersion::Any, chunk).unwrap();
    }
    let loaded = store.load_aggregate::<Account>("big").unwrap();
    assert_eq!(loaded.version(), Some(2499));
    assert_eq!(loaded.state().balance, (0..2500).sum::<u64>() as i64);
    assert_eq!(loaded.events_replayed(), 2500);
}

#[test]
fn an_aggregate_loads_as_it_was_at_every_version() {
    let dir = tempfile::tempdir().unwrap();
    let store = Store::open(
        dir.path(),
        Options::default()
            .durability(Durability::Buffered)
            .snapshots_kept(100),
    )
    .unwrap();
    let typed = store.typed().snapshot_every(7);
    let mut rng = 0x5eed_u64;
    let mut events = Vec::new();
    for i in 0..60u64 {
        rng = rng
            .wrapping_mul(6364136223846793005)
            .wrapping_add(1442695040888963407);
        let event = match rng >> 62 {
            0 => AccountEvent::Withdrew { amount: i },
            1 => AccountEvent::Tagged([(format!("t{}", i % 3), i as i32)].into()),
            _ => AccountEvent::Deposited {
                amount: i * 10,
                memo: format!("#{i}"),
            },
        };
        let mut loaded = typed.load_aggregate::<Account>("acct").unwrap();
        typed
            .save_aggregate(&mut loaded, std::slice::from_ref(&event))
            .unwrap();
        events.push(event);
    }
    assert!(store
        .load_snapshot_at_or_below("acct", 20)
        .unwrap()
        .is_some());
    let mut expected = Account::default();
    for (version, event) in events.iter().enumerate() {
        expected.apply(event);
        let loaded = typed
            .load_aggregate_at::<Account>("acct", version as u64)
            .unwrap();
        assert_eq!(loaded.state(), &expected, "at version {version}");
        assert_eq!(loaded.version(), Some(version as u64));
        // Started from the newest snapshot at or below the version.
        let snapshot = loaded.snapshot_version().unwrap_or(0);
        assert!(snapshot <= version as u64 && version as u64 - snapshot < 7 + 1);
    }
    let past_the_end = typed.load_aggregate_at::<Account>("acct", 1_000).unwrap();
    assert_eq!(past_the_end.state(), &expected);
    assert_eq!(past_the_end.version(), Some(59));
    let nothing = typed.load_aggregate_at::<Account>("other", 3).unwrap();
    assert_eq!(
        (nothing.version(), nothing.state()),
        (None, &Account::default())
    );
}

/// An aggregate of a stream whose oldest events are truncated away is
/// built from the events it keeps, and says how many it applied.
#[test]
fn an_aggregate_of_a_truncated_stream_counts_the_events_it_applied() {
    let dir = tempfile::tempdir().unwrap();
    let store = Store::open(dir.path(), Options::default()).unwrap();
    let deposit = |amount| AccountEvent::Deposited {
        amount,
        memo: String::new(),
    };
    let events: Vec<AccountEvent> = (1..=5).map(deposit).collect();
    store
        .typed()
        .append("acct-9", ExpectedVersion::NoStream, &events)
        .unwrap();
    store.truncate_stream("acct-9", 3).unwrap();
    let loaded = store.load_aggregate::<Account>("acct-9").unwrap();
    assert_eq!(loaded.version(), Some(4));
    assert_eq!(loaded.state().operations, 2);
    assert_eq!(loaded.state().balance, 4 + 5);
    assert_eq!(loaded.events_replayed(), 2);
}

/// A snapshot of state loaded before a soft delete, saved after the stream
/// was recreated at a version the delete took away, is refused: the
/// recreated stream's aggregate never starts from the deleted state.
#[test]
fn a_snapshot_at_a_version_deleted_since_is_refused_and_never_loaded() {
    let dir = tempfile::tempdir().unwrap();
    let store = Store::open(dir.path(), Options::default()).unwrap();
    let typed = store.typed();
    let deposit = |amount| AccountEvent::Deposited {
        amount,
        memo: String::new(),
    };
    let events: Vec<AccountEvent> = (0..5).map(|i| deposit(1 << i)).collect();
    typed
        .append("cart", ExpectedVersion::NoStream, &events)
        .unwrap();
    let loaded = store.load_aggregate::<Account>("cart").unwrap();
    assert_eq!((loaded.state().balance, loaded.version()), (31, Some(4)));
    store
        .delete_stream("cart", ExpectedVersion::Any, evstore::DeleteMode::Soft)
        .unwrap();
    typed
        .append("cart", ExpectedVersion::Any, &[deposit(100)])
        .unwrap();
    let saved = typed.save_snapshot("cart", 4, loaded.state());
    assert!(
        matches!(saved, Err(Error::SnapshotAhead { version: 4, .. })),
        "{saved:?}"
    );
    let reloaded = store.load_aggregate::<Account>("cart").unwrap();
    assert_eq!(reloaded.state().balance, 100);
    assert_eq!(reloaded.snapshot_version(), None);

    // A snapshot taken before a truncation still stands for what it
    // summarizes: truncation keeps it.
    typed
        .append("acct", ExpectedVersion::NoStream, &events)
        .unwrap();
    let at_two = typed.load_aggregate_at::<Account>("acct", 2).unwrap();
    typed.save_snapshot("acct", 2, at_two.state()).unwrap();
    store.truncate_stream("acct", 4).unwrap();
    store.scavenge().unwrap();
    let after = store.load_aggregate::<Account>("acct").unwrap();
    assert_eq!(after.snapshot_version(), Some(2));
    assert_eq!(after.state().balance, 1 + 2 + 4 + 16);
}

/// An aggregate loaded at a version applies no event above it, also where
/// the stream no longer keeps the versions before (truncated away, or
/// deleted and recreated): its versions are not dense there.
#[test]
fn an_aggregate_at_a_version_never_applies_later_events() {
    let dir = tempfile::tempdir().unwrap();
    let store = Store::open(dir.path(), Options::default()).unwrap();
    let typed = store.typed();
    let deposit = |amount| AccountEvent::Deposited {
        amount,
        memo: String::new(),
    };
    let events: Vec<AccountEvent> = (1..=100).map(deposit).collect();
    typed
        .append("acct", ExpectedVersion::NoStream, &events)
        .unwrap();
    store.truncate_stream("acct", 50).unwrap();
    let early = typed.load_aggregate_at::<Account>("acct", 10).unwrap();
    assert_eq!(early.version(), None);
    assert_eq!(early.state(), &Account::default());
    let mid = typed.load_aggregate_at::<Account>("acct", 60).unwrap();
    assert_eq!(mid.version(), Some(60));
    assert_eq!(mid.state().operations, 11);

    let first: Vec<AccountEvent> = (1..=10).map(deposit).collect();
    typed
        .append("again", ExpectedVersion::NoStream, &first)
        .unwrap();
    store
        .delete_stream("again", ExpectedVersion::Any, evstore::DeleteMode::Soft)
        .unwrap();
    let more: Vec<AccountEvent> = (1..=5).map(deposit).collect();
    typed.append("again", ExpectedVersion::Any, &more).unwrap();
    let before_recreation = typed.load_aggregate_at::<Account>("again", 2).unwrap();
    assert_eq!(before_recreation.version(), None);
    assert_eq!(before_recreation.events_replayed(), 0);
}
