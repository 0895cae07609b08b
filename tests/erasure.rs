//! Crypto-shredding: sealed payloads never reach the disk in the clear,
//! read back on every path, and read as erased on every path once their
//! subject is forgotten, in this process, after a reopen and in a read-only
//! store following the writer.

use evstore::{
    Direction, Error, EventData, ExpectedVersion, Filter, Options, Query, RecordedEvent, Store,
};
use std::path::Path;

const SECRET: &[u8] = b"ada.lovelace@example.com";

fn shredding() -> Options {
    Options::default().crypto_shredding(true)
}

fn personal(n: u8) -> EventData {
    let mut payload = SECRET.to_vec();
    payload.push(b'0' + n);
    EventData::new("EmailChanged", payload)
        .with_metadata(&b"ip=192.0.2.7"[..])
        .with_tags(["users"])
}

/// Every read path's events of `stream`.
fn every_read(store: &Store, stream: &str) -> Vec<Vec<RecordedEvent>> {
    let of = |events: Vec<RecordedEvent>| -> Vec<RecordedEvent> {
        events
            .into_iter()
            .filter(|e| &*e.stream == stream)
            .collect()
    };
    let mut subscription = store.subscribe_all(0, Filter::stream_prefix(stream));
    let delivered: Vec<_> = std::iter::from_fn(|| subscription.try_next().unwrap()).collect();
    let mut by_stream = store.subscribe_stream(stream, 0).unwrap();
    let of_stream: Vec<_> = std::iter::from_fn(|| by_stream.try_next().unwrap()).collect();
    vec![
        store
            .read_stream(stream, 0, Direction::Forward, 100)
            .unwrap(),
        of(store.read_all(0, Direction::Forward, 1000).unwrap()),
        of(store
            .read_query(&Query::tagged(["users"]), 0, Direction::Forward, 1000)
            .unwrap()
            .events),
        of(delivered),
        of_stream,
    ]
}

fn assert_readable(store: &Store, stream: &str, count: usize) {
    for (i, events) in every_read(store, stream).into_iter().enumerate() {
        assert_eq!(events.len(), count, "read path {i}");
        for event in events {
            assert!(!event.erased, "read path {i}");
            assert!(event.payload.starts_with(SECRET), "read path {i}");
            assert_eq!(&event.metadata[..], b"ip=192.0.2.7", "read path {i}");
        }
    }
}

fn assert_erased(store: &Store, stream: &str, count: usize) {
    for (i, events) in every_read(store, stream).into_iter().enumerate() {
        assert_eq!(events.len(), count, "read path {i}");
        for event in events {
            assert!(event.erased, "read path {i}");
            assert!(
                event.payload.is_empty() && event.metadata.is_empty(),
                "read path {i}"
            );
            assert_eq!(&*event.event_type, "EmailChanged");
        }
    }
}

fn files_hold(dir: &Path, needle: &[u8]) -> bool {
    let mut stack = vec![dir.to_path_buf()];
    while let Some(path) = stack.pop() {
        if path.is_dir() {
            stack.extend(std::fs::read_dir(&path).unwrap().map(|e| e.unwrap().path()));
            continue;
        }
        // The next segment is prepared in the background: a temporary file
        // may be renamed between the listing and the read.
        match std::fs::read(&path) {
            Ok(bytes) if bytes.windows(needle.len()).any(|w| w == needle) => return true,
            Ok(_) => {}
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
            Err(e) => panic!("{}: {e}", path.display()),
        }
    }
    false
}

#[test]
fn sealed_payloads_read_back_on_every_path_and_never_reach_the_disk_in_the_clear() {
    let dir = tempfile::tempdir().unwrap();
    let store = Store::open(dir.path(), shredding()).unwrap();
    let events: Vec<_> = (0..3).map(personal).collect();
    store
        .append("user-1", ExpectedVersion::NoStream, &events)
        .unwrap();
    store.flush().unwrap();
    assert_readable(&store, "user-1", 3);
    assert!(!files_hold(dir.path(), SECRET));
    assert!(!files_hold(dir.path(), b"192.0.2.7"));
    // Turned off later, sealed events still read back.
    store.close().unwrap();
    let plain = Store::open(dir.path(), Options::default()).unwrap();
    assert_readable(&plain, "user-1", 3);
}

#[test]
fn a_forgotten_subject_reads_as_erased_everywhere_and_others_are_untouched() {
    let dir = tempfile::tempdir().unwrap();
    {
        let store = Store::open(dir.path(), shredding()).unwrap();
        for stream in ["user-1", "user-2"] {
            let events: Vec<_> = (0..2).map(personal).collect();
            store
                .append(stream, ExpectedVersion::NoStream, &events)
                .unwrap();
        }
        // An event of another stream about user-1.
        store
            .append(
                "audit",
                ExpectedVersion::Any,
                &[personal(9).with_subject("user-1")],
            )
            .unwrap();
        assert!(store.forget("user-1").unwrap());
        assert!(!store.forget("user-1").unwrap());
        assert_erased(&store, "user-1", 2);
        assert_erased(&store, "audit", 1);
        assert_readable(&store, "user-2", 2);
        // A new event of the forgotten subject gets a new key.
        store
            .append("user-1", ExpectedVersion::Exact(1), &[personal(5)])
            .unwrap();
        let read = store
            .read_stream("user-1", 0, Direction::Forward, 10)
            .unwrap();
        let erased: Vec<bool> = read.iter().map(|e| e.erased).collect();
        assert_eq!(erased, [true, true, false]);
    }
    let store = Store::open(dir.path(), Options::default()).unwrap();
    assert_erased(&store, "audit", 1);
    assert_readable(&store, "user-2", 2);
    let read = store
        .read_stream("user-1", 0, Direction::Forward, 10)
        .unwrap();
    assert_eq!(read.iter().filter(|e| e.erased).count(), 2);
    assert!(read[2].payload.starts_with(SECRET));
}

#[test]
fn a_read_only_store_sees_a_subject_forgotten_after_it_opened() {
    let dir = tempfile::tempdir().unwrap();
    let store = Store::open(dir.path(), shredding()).unwrap();
    store
        .append("user-1", ExpectedVersion::NoStream, &[personal(0)])
        .unwrap();
    let reader = Store::open_read_only(dir.path(), Options::default()).unwrap();
    assert_readable(&reader, "user-1", 1);
    store.forget("user-1").unwrap();
    reader.refresh().unwrap();
    assert_erased(&reader, "user-1", 1);
    assert!(matches!(
        reader.forget("user-1"),
        Err(Error::ReadOnly { .. })
    ));
}

#[test]
fn a_read_only_store_opens_events_of_a_subject_keyed_after_it_opened() {
    let dir = tempfile::tempdir().unwrap();
    let store = Store::open(dir.path(), shredding()).unwrap();
    store
        .append("user-1", ExpectedVersion::NoStream, &[personal(0)])
        .unwrap();
    let reader = Store::open_read_only(
        dir.path(),
        Options::default().poll_interval(std::time::Duration::from_millis(1)),
    )
    .unwrap();
    // A new subject's key is made after the reader read the key store.
    store
        .append("user-2", ExpectedVersion::NoStream, &[personal(1)])
        .unwrap();
    // The reader's own polling (no refresh, which would reread the keys
    // anyway) brings the event; opening it finds the new key.
    let mut subscription = reader.subscribe_stream("user-2", 0).unwrap();
    let event = subscription
        .next_timeout(std::time::Duration::from_secs(60))
        .unwrap()
        .expect("the event reached the reader");
    assert!(
        !event.erased && event.payload.starts_with(SECRET),
        "{event:?}"
    );
}

#[test]
fn typed_reads_of_an_erased_event_say_so() {
    #[derive(serde::Serialize, serde::Deserialize, Debug, PartialEq)]
    enum UserEvent {
        Joined { email: String },
    }
    impl evstore::DomainEvent for UserEvent {
        fn event_type(&self) -> &'static str {
            "Joined"
        }
    }
    let dir = tempfile::tempdir().unwrap();
    let store = Store::open(dir.path(), shredding()).unwrap();
    let typed = store.typed();
    typed
        .append(
            "user-3",
            ExpectedVersion::NoStream,
            &[UserEvent::Joined {
                email: "grace@example.com".into(),
            }],
        )
        .unwrap();
    let read: Vec<evstore::Recorded<UserEvent>> = typed
        .read_stream("user-3", 0, Direction::Forward, 10)
        .unwrap();
    assert_eq!(
        read[0].event,
        UserEvent::Joined {
            email: "grace@example.com".into()
        }
    );
    store.forget("user-3").unwrap();
    let erased = typed.read_stream::<UserEvent>("user-3", 0, Direction::Forward, 10);
    assert!(
        matches!(erased, Err(Error::EventErased { ref stream, version: 0 }) if stream == "user-3"),
        "{erased:?}"
    );
}

#[test]
fn subjects_are_checked() {
    let dir = tempfile::tempdir().unwrap();
    let store = Store::open(dir.path(), shredding().max_tag_len(16)).unwrap();
    let empty = store.append("s", ExpectedVersion::Any, &[personal(0).with_subject("")]);
    assert!(
        matches!(empty, Err(Error::InvalidRequest { .. })),
        "{empty:?}"
    );
    let long = store.append(
        "s",
        ExpectedVersion::Any,
        // Longer than both the tag and the stream name limits (256).
        &[personal(0).with_subject("x".repeat(257))],
    );
    assert!(
        matches!(long, Err(Error::InvalidRequest { .. })),
        "{long:?}"
    );
    assert!(matches!(
        store.forget(""),
        Err(Error::InvalidRequest { .. })
    ));
    // Nothing was written, and no key made.
    assert!(store
        .read_all(0, Direction::Forward, 10)
        .unwrap()
        .is_empty());
    assert!(!store.forget("x").unwrap());
}

fn plain(n: u8) -> EventData {
    let mut payload = b"patient record ".to_vec();
    payload.push(b'a' + n);
    EventData::new("Recorded", payload).with_tags(["users"])
}

/// Appends enough events to another stream to seal the segment holding
/// what came before (with 8 KiB segments).
fn seal_with_fillers(store: &Store) {
    for i in 0..100u32 {
        store
            .append(
                "other",
                ExpectedVersion::Any,
                &[EventData::new("Filler", vec![b'f'; 100 + i as usize % 7])],
            )
            .unwrap();
    }
}

/// What read path `i` of [`erased_versions`] returns of a stream whose
/// versions read as `all`: the read by tag leaves erased events out, as a
/// redaction marker has no tags (before a scavenge writes one too).
fn on_path(i: usize, all: &[(u64, bool)]) -> Vec<(u64, bool)> {
    all.iter()
        .copied()
        .filter(|&(_, erased)| i != 2 || !erased)
        .collect()
}

/// Versions read as erased on every read path, in order of the path.
fn erased_versions(store: &Store, stream: &str) -> Vec<Vec<(u64, bool)>> {
    every_read(store, stream)
        .into_iter()
        .map(|events| events.iter().map(|e| (e.version, e.erased)).collect())
        .collect()
}

#[test]
fn erased_events_read_as_erased_at_once_and_leave_the_disk_at_the_next_scavenge() {
    let dir = tempfile::tempdir().unwrap();
    let options = Options::default().segment_size(8 << 10);
    let store = Store::open(dir.path(), options.clone()).unwrap();
    let events: Vec<_> = (0..5).map(plain).collect();
    store
        .append("patient-1", ExpectedVersion::NoStream, &events)
        .unwrap();
    // Enough other events to seal the segment holding them.
    seal_with_fillers(&store);
    store.erase_events("patient-1", 1, 2).unwrap();
    let expected = vec![(0, false), (1, true), (2, true), (3, false), (4, false)];
    for (i, read) in erased_versions(&store, "patient-1").into_iter().enumerate() {
        assert_eq!(read, on_path(i, &expected), "read path {i}");
    }
    let erased = store
        .read_stream("patient-1", 1, Direction::Forward, 1)
        .unwrap();
    assert!(erased[0].payload.is_empty() && erased[0].tags.is_empty());
    assert_eq!(&*erased[0].event_type, "$redacted");
    let segments = dir.path().join(evstore::SEGMENTS_DIR);
    assert!(files_hold(&segments, b"patient record b"));

    let report = store.scavenge().unwrap();
    assert!(report.events_redacted >= 2, "{report:?}");
    assert!(!files_hold(&segments, b"patient record b"));
    assert!(!files_hold(&segments, b"patient record c"));
    assert!(files_hold(&segments, b"patient record d"));
    let after_scavenge: Vec<Vec<(u64, bool)>> = erased_versions(&store, "patient-1");
    assert_eq!(after_scavenge[0], expected);
    store.close().unwrap();

    let store = Store::open(dir.path(), options).unwrap();
    assert_eq!(erased_versions(&store, "patient-1")[0], expected);
    let report = evstore::verify::verify_store(dir.path(), &mut |_| {}).unwrap();
    assert!(report.is_clean(), "{report:?}");
    assert!(matches!(
        store.erase_events("patient-1", 3, 2),
        Err(Error::InvalidRequest { .. })
    ));
    // The whole stream, as it is now; later events are not erased.
    store.erase_stream("patient-1").unwrap();
    store
        .append("patient-1", ExpectedVersion::Exact(4), &[plain(9)])
        .unwrap();
    let read = store
        .read_stream("patient-1", 0, Direction::Forward, 10)
        .unwrap();
    let flags: Vec<bool> = read.iter().map(|e| e.erased).collect();
    assert_eq!(flags, [true, true, true, true, true, false]);
    assert_eq!(store.erase_stream("nobody").unwrap(), None);
}

/// A snapshot at or after the first erased version may hold what the
/// erased events held: the erasure removes those snapshots from the disk
/// (the older ones stay and load), and a snapshot saved afterwards, from
/// the events as they now read, is kept.
#[test]
fn an_erasure_removes_the_snapshots_that_may_hold_what_it_erased() {
    let dir = tempfile::tempdir().unwrap();
    let options = || Options::default().snapshots_kept(5).segment_size(1 << 20);
    let store = Store::open(dir.path(), options()).unwrap();
    let events: Vec<_> = (0..4).map(plain).collect();
    store
        .append("patient-5", ExpectedVersion::NoStream, &events)
        .unwrap();
    let others: Vec<_> = (0..4).map(plain).collect();
    store
        .append("other", ExpectedVersion::NoStream, &others)
        .unwrap();
    for version in 0..4u64 {
        store
            .save_snapshot("patient-5", version, format!("state-with-secret-{version}"))
            .unwrap();
    }
    store
        .save_snapshot("other", 3, "state-with-secret-other")
        .unwrap();

    store.erase_events("patient-5", 2, 2).unwrap();
    for version in [2, 3] {
        let needle = format!("state-with-secret-{version}");
        assert!(
            !files_hold(dir.path(), needle.as_bytes()),
            "{needle} left on disk"
        );
    }
    let kept = store.load_snapshot("patient-5").unwrap().unwrap();
    assert_eq!(
        (kept.version, &kept.data[..]),
        (1, &b"state-with-secret-1"[..])
    );
    assert_eq!(store.load_snapshot("other").unwrap().unwrap().version, 3);
    assert!(store.damaged_snapshots().is_empty());

    // Saved after the erasure: kept, also across a reopen.
    store.save_snapshot("patient-5", 3, "rebuilt").unwrap();
    store.close().unwrap();
    let store = Store::open(dir.path(), options()).unwrap();
    let loaded = store.load_snapshot("patient-5").unwrap().unwrap();
    assert_eq!((loaded.version, &loaded.data[..]), (3, &b"rebuilt"[..]));

    // Erasing the whole stream removes every snapshot of it.
    store.erase_stream("patient-5").unwrap();
    assert!(store.load_snapshot("patient-5").unwrap().is_none());
    assert!(!files_hold(dir.path(), b"state-with-secret-0"));
    store.close().unwrap();

    // A read-only store erases nothing and removes no snapshot.
    let read_only = Store::open_read_only(dir.path(), options()).unwrap();
    assert!(matches!(
        read_only.erase_events("other", 0, 0),
        Err(Error::ReadOnly { .. })
    ));
    assert!(files_hold(dir.path(), b"state-with-secret-other"));
}

#[test]
fn an_erasure_past_the_streams_end_never_reaches_events_appended_after_it() {
    let dir = tempfile::tempdir().unwrap();
    let store = Store::open(dir.path(), Options::default().segment_size(8 << 10)).unwrap();
    let events: Vec<_> = (0..3).map(plain).collect();
    store
        .append("patient-2", ExpectedVersion::NoStream, &events)
        .unwrap();
    store.erase_events("patient-2", 1, 1_000).unwrap();
    let later: Vec<_> = (3..5).map(plain).collect();
    store
        .append("patient-2", ExpectedVersion::Exact(2), &later)
        .unwrap();
    let expected = vec![(0, false), (1, true), (2, true), (3, false), (4, false)];
    for (i, read) in erased_versions(&store, "patient-2").into_iter().enumerate() {
        assert_eq!(read, on_path(i, &expected), "read path {i}");
    }
    // Enough other events to seal the segment, then a scavenge: the later
    // events' bytes stay, the erased ones' go.
    seal_with_fillers(&store);
    store.scavenge().unwrap();
    let segments = dir.path().join(evstore::SEGMENTS_DIR);
    assert!(!files_hold(&segments, b"patient record b"));
    assert!(files_hold(&segments, b"patient record d"));
    assert!(files_hold(&segments, b"patient record e"));
    store.close().unwrap();
    let store = Store::open(dir.path(), Options::default()).unwrap();
    for (i, read) in erased_versions(&store, "patient-2").into_iter().enumerate() {
        assert_eq!(read, on_path(i, &expected), "read path {i} after reopen");
    }
}

#[test]
fn metadata_changes_after_an_erasure_expect_the_version_it_moved_the_metadata_to() {
    let dir = tempfile::tempdir().unwrap();
    let store = Store::open(dir.path(), Options::default()).unwrap();
    let events: Vec<_> = (0..3).map(plain).collect();
    store
        .append("patient-3", ExpectedVersion::NoStream, &events)
        .unwrap();
    store.erase_events("patient-3", 0, 0).unwrap();
    // truncate_stream reads the metadata's version and expects it.
    store.truncate_stream("patient-3", 2).unwrap();
    let read = store.stream_metadata("patient-3").unwrap();
    assert_eq!(read.metadata.truncate_before, Some(2));
    store.erase_events("patient-3", 2, 2).unwrap();
    let read = store.stream_metadata("patient-3").unwrap();
    let expected = read
        .version
        .map_or(ExpectedVersion::NoStream, ExpectedVersion::Exact);
    store
        .set_stream_metadata("patient-3", expected, read.metadata.truncate_before(1))
        .unwrap();
    // A stale version is still refused.
    assert!(matches!(
        store.set_stream_metadata("patient-3", expected, read.metadata),
        Err(Error::WrongExpectedVersion { .. })
    ));
}

/// The key store of `dir`.
fn key_file(dir: &Path) -> std::path::PathBuf {
    dir.join("keys").join("subjects.keys")
}

#[test]
fn a_damaged_or_missing_key_store_is_reported_never_read_as_erasure_and_never_scavenged() {
    type Damage = fn(&Path);
    let damages: [(&str, Damage); 3] = [
        ("last byte flipped", |path| {
            let mut bytes = std::fs::read(path).unwrap();
            *bytes.last_mut().unwrap() ^= 1;
            std::fs::write(path, bytes).unwrap();
        }),
        ("removed", |path| std::fs::remove_file(path).unwrap()),
        ("emptied", |path| std::fs::write(path, b"").unwrap()),
    ];
    for (what, damage) in damages {
        let dir = tempfile::tempdir().unwrap();
        let options = shredding().segment_size(8 << 10);
        let store = Store::open(dir.path(), options.clone()).unwrap();
        store
            .append("user-1", ExpectedVersion::NoStream, &[personal(1)])
            .unwrap();
        // Enough other events to seal its segment, so a scavenge reads it.
        for i in 0..100u32 {
            store
                .append("other", ExpectedVersion::Any, &[plain((i % 20) as u8)])
                .unwrap();
        }
        store.close().unwrap();
        let intact = std::fs::read(key_file(dir.path())).unwrap();
        damage(&key_file(dir.path()));

        let store = Store::open(dir.path(), options.clone()).unwrap();
        // Every event is sealed (for its stream, by default): the events of
        // the subject whose entry was last in the file are unreadable.
        let read = store.read_all(0, Direction::Forward, 1000);
        assert!(
            matches!(read, Err(Error::Corrupted { .. })),
            "{what}: {read:?}"
        );
        let report = evstore::verify::verify_store(dir.path(), &mut |_| {}).unwrap();
        assert!(
            report
                .findings
                .iter()
                .any(|f| f.problem.contains("neither holds nor records as forgotten")),
            "{what}: {:?}",
            report.findings
        );
        // A scavenge must not take the event for a forgotten one.
        store.scavenge().unwrap();
        store.close().unwrap();

        // With the key store put back, the event reads as it was written.
        std::fs::write(key_file(dir.path()), &intact).unwrap();
        let store = Store::open(dir.path(), options).unwrap();
        assert_readable(&store, "user-1", 1);
        let all = store.read_all(0, Direction::Forward, 1000).unwrap();
        assert_eq!(all.len(), 101, "{what}");
        assert!(all.iter().all(|e| !e.erased), "{what}");
        assert!(evstore::verify::verify_store(dir.path(), &mut |_| {})
            .unwrap()
            .findings
            .is_empty());
    }
}

#[test]
fn a_forgotten_subject_stays_erased_and_verified_clean_after_a_reopen() {
    let dir = tempfile::tempdir().unwrap();
    let store = Store::open(dir.path(), shredding()).unwrap();
    store
        .append("user-1", ExpectedVersion::NoStream, &[personal(1)])
        .unwrap();
    store
        .append("user-2", ExpectedVersion::NoStream, &[personal(2)])
        .unwrap();
    assert!(store.forget("user-1").unwrap());
    assert!(store.forget("user-2").unwrap());
    // A new key for a forgotten subject, then forgotten again.
    store
        .append("user-1", ExpectedVersion::Any, &[personal(3)])
        .unwrap();
    assert!(store.forget("user-1").unwrap());
    store.close().unwrap();
    let store = Store::open(dir.path(), shredding()).unwrap();
    assert_erased(&store, "user-1", 2);
    assert_erased(&store, "user-2", 1);
    let report = evstore::verify::verify_store(dir.path(), &mut |_| {}).unwrap();
    assert!(report.findings.is_empty(), "{:?}", report.findings);
}

/// What reads by query and filtered subscriptions return of erased events
/// is what they return once a scavenge has replaced them with markers: a
/// marker has no type or tags, so queries and type filters no longer find
/// them, and a predicate judges the marker, never the erased content.
#[test]
fn filters_and_queries_judge_erased_events_as_they_are_handed_out_before_and_after_a_scavenge() {
    let dir = tempfile::tempdir().unwrap();
    let store = Store::open(dir.path(), Options::default().segment_size(8 << 10)).unwrap();
    for i in 0..60u32 {
        store
            .append(
                "user-1",
                ExpectedVersion::Any,
                &[
                    EventData::new("Changed", format!("secret {i}").into_bytes())
                        .with_tags([format!("k:{}", i % 2)]),
                ],
            )
            .unwrap();
    }
    store.erase_events("user-1", 0, 9).unwrap();
    seal_with_fillers(&store);
    let predicate_saw = std::sync::Arc::new(std::sync::Mutex::new(Vec::new()));
    let read = |store: &Store| {
        let query = Query::tagged(["k:0"]);
        let by_query: Vec<u64> = store
            .read_query(&query, 0, Direction::Forward, 1000)
            .unwrap()
            .events
            .iter()
            .map(|e| e.version)
            .collect();
        let delivered = |filter: Filter| -> Vec<(u64, bool)> {
            let mut subscription = store.subscribe_all(0, filter);
            std::iter::from_fn(|| subscription.try_next().unwrap())
                .filter(|e| &*e.stream == "user-1")
                .map(|e| (e.version, e.erased))
                .collect()
        };
        let saw = std::sync::Arc::clone(&predicate_saw);
        (
            by_query,
            delivered(Filter::query(query)),
            delivered(Filter::event_types(["Changed"])),
            delivered(Filter::stream_prefix("user-").with_predicate(move |e| {
                saw.lock().unwrap().push((e.version, e.payload.to_vec()));
                e.erased || e.payload.starts_with(b"secret")
            })),
        )
    };
    let before = read(&store);
    assert_eq!(before.0, (10..60).step_by(2).collect::<Vec<u64>>());
    assert_eq!(before.1.iter().map(|d| d.0).collect::<Vec<_>>(), before.0);
    assert_eq!(before.2.len(), 50);
    assert_eq!(
        before.3.len(),
        60,
        "the stream's erased events are delivered as erased"
    );
    assert!(before.3[..10].iter().all(|&(_, erased)| erased));
    store.scavenge().unwrap();
    assert_eq!(read(&store), before, "a scavenge changes no answer");
    let saw = predicate_saw.lock().unwrap();
    assert!(saw.iter().any(|(version, _)| *version < 10));
    assert!(
        saw.iter()
            .all(|(version, payload)| *version >= 10 || payload.is_empty()),
        "a predicate never sees an erased payload"
    );
}

#[test]
fn a_predicate_sees_a_sealed_payload_opened() {
    let dir = tempfile::tempdir().unwrap();
    let store = Store::open(dir.path(), shredding()).unwrap();
    store
        .append("user-1", ExpectedVersion::NoStream, &[personal(1)])
        .unwrap();
    let mut subscription =
        store.subscribe_all(0, Filter::predicate(|e| e.payload.starts_with(SECRET)));
    let event = subscription
        .try_next()
        .unwrap()
        .expect("the predicate saw the plain payload");
    assert!(event.payload.starts_with(SECRET));
    store.forget("user-1").unwrap();
    let mut subscription = store.subscribe_all(0, Filter::predicate(|e| e.erased));
    let event = subscription
        .try_next()
        .unwrap()
        .expect("the predicate saw it erased");
    assert!(event.erased && event.payload.is_empty());
}

/// Sealing adds bytes and a tag of the store's own: the caller's events are
/// still held to the caller's limits, not smaller ones.
#[test]
fn sealing_leaves_the_callers_limits_as_they_are() {
    let dir = tempfile::tempdir().unwrap();
    let options = shredding().max_event_size(1000);
    let store = Store::open(dir.path(), options.clone()).unwrap();
    let sized = |n: usize| EventData::new("E", vec![7u8; n]);
    store
        .append("user-1", ExpectedVersion::Any, &[sized(1000)])
        .unwrap();
    match store.append("user-1", ExpectedVersion::Any, &[sized(1001)]) {
        Err(Error::EventTooLarge { size, max }) => assert_eq!((size, max), (1001, 1000)),
        other => panic!("{other:?}"),
    }
    let max_tags = 64; // the default `max_tags_per_event`
    let tagged = |n: usize| sized(10).with_tags((0..n).map(|i| format!("t{i}")));
    store
        .append("user-1", ExpectedVersion::Any, &[tagged(max_tags)])
        .unwrap();
    assert!(matches!(
        store.append("user-1", ExpectedVersion::Any, &[tagged(max_tags + 1)]),
        Err(Error::InvalidTag { .. })
    ));
    // A stream name as long as allowed is a subject too.
    let long = "u".repeat(256); // the default `max_stream_name_len`
    store
        .append(&long, ExpectedVersion::NoStream, &[sized(5)])
        .unwrap();
    let read = store.read_stream(&long, 0, Direction::Forward, 1).unwrap();
    assert_eq!(read[0].payload.len(), 5);
    assert!(store.forget(&long).unwrap());
}

/// Erasing a deleted stream's events leaves its tombstone: readers of the
/// log still learn of the deletion.
#[test]
fn an_erasure_never_takes_a_tombstone() {
    let dir = tempfile::tempdir().unwrap();
    let store = Store::open(dir.path(), Options::default()).unwrap();
    let events: Vec<_> = (0..3).map(plain).collect();
    store
        .append("patient-4", ExpectedVersion::NoStream, &events)
        .unwrap();
    store
        .delete_stream("patient-4", ExpectedVersion::Any, evstore::DeleteMode::Soft)
        .unwrap();
    let last = store.stream_version("patient-4").unwrap().unwrap();
    store.erase_events("patient-4", 0, last).unwrap();
    for scavenged in [false, true] {
        let types: Vec<String> = store
            .read_all(0, Direction::Forward, 100)
            .unwrap()
            .iter()
            .filter(|e| &*e.stream == "patient-4")
            .map(|e| e.event_type.to_string())
            .collect();
        assert_eq!(types, ["$streamDeleted"], "scavenged {scavenged}");
        store.scavenge().unwrap();
    }
}
