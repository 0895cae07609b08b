//! Bad input gets a typed error, writes nothing, and leaves the store working.

use evstore::{Direction, Error, EventData, ExpectedVersion, Options, Store};

fn ok_event() -> EventData {
    EventData::new("Ok", &b"fine"[..])
}

fn assert_still_works(store: &Store, expected_events: u64) {
    assert_eq!(
        store
            .read_all(0, Direction::Forward, usize::MAX)
            .unwrap()
            .len() as u64,
        expected_events
    );
    let r = store
        .append("healthy", ExpectedVersion::Any, &[ok_event()])
        .unwrap();
    assert_eq!(r.first_position, expected_events);
}

#[test]
fn second_open_is_locked_until_the_first_is_dropped() {
    let dir = tempfile::tempdir().unwrap();
    let store = Store::open(dir.path(), Options::default()).unwrap();
    let clone = store.clone();
    match Store::open(dir.path(), Options::default()) {
        Err(Error::Locked {
            dir: locked,
            holder,
        }) => {
            assert_eq!(locked, dir.path());
            assert_eq!(holder, Some(std::process::id().to_string()));
        }
        other => panic!("expected Locked, got {other:?}"),
    }
    drop(store);
    // A clone still holds the store.
    assert!(matches!(
        Store::open(dir.path(), Options::default()),
        Err(Error::Locked { .. })
    ));
    drop(clone);
    Store::open(dir.path(), Options::default()).unwrap();
}

/// Makes a store in `dir`, closes it, and takes its lock through a
/// descriptor of the lock file the store knows nothing of.
fn lock_beside_the_store(dir: &std::path::Path) -> std::fs::File {
    Store::open(dir, Options::default())
        .unwrap()
        .close()
        .unwrap();
    let file = std::fs::OpenOptions::new()
        .read(true)
        .write(true)
        .open(dir.join(evstore::LOCK_FILE))
        .unwrap();
    file.try_lock().unwrap();
    file
}

/// A child process holds a copy of every descriptor of its parent between
/// its `fork` and its `exec`, the lock file's included: a store closed and
/// opened again while another thread starts a child may find its own lock
/// still held for that moment. Such a holder (a descriptor of the lock file
/// outside the store, while the file names this process) is waited for.
#[test]
fn a_lock_held_only_by_a_copy_of_this_process_is_waited_for() {
    let dir = tempfile::tempdir().unwrap();
    let inherited = lock_beside_the_store(dir.path());
    let release = std::thread::spawn(move || {
        std::thread::sleep(std::time::Duration::from_millis(20));
        drop(inherited);
    });
    let store = Store::open(dir.path(), Options::default()).unwrap();
    release.join().unwrap();
    store.close().unwrap();
}

#[test]
fn a_lock_another_process_holds_is_refused_naming_it() {
    let dir = tempfile::tempdir().unwrap();
    let other = lock_beside_the_store(dir.path());
    let lock_path = dir.path().join(evstore::LOCK_FILE);
    std::fs::write(&lock_path, b"4194999").unwrap();
    match Store::open(dir.path(), Options::default()) {
        Err(Error::Locked { holder, .. }) => assert_eq!(holder.as_deref(), Some("4194999")),
        other => panic!("expected Locked, got {other:?}"),
    }
    drop(other);
    Store::open(dir.path(), Options::default()).unwrap();
}

#[test]
fn invalid_stream_names() {
    let dir = tempfile::tempdir().unwrap();
    let store = Store::open(dir.path(), Options::default().max_stream_name_len(16)).unwrap();
    for bad in ["", "$all", "tab\there", "seventeen-bytes-x"] {
        match store.append(bad, ExpectedVersion::Any, &[ok_event()]) {
            Err(Error::InvalidStreamName { name, .. }) => assert_eq!(name, bad),
            other => panic!("{bad:?}: expected InvalidStreamName, got {other:?}"),
        }
    }
    store
        .append("sixteen-bytes-xx", ExpectedVersion::Any, &[ok_event()])
        .unwrap();
    assert_still_works(&store, 1);
}

#[test]
fn empty_batches_and_bad_event_types() {
    let dir = tempfile::tempdir().unwrap();
    let store = Store::open(dir.path(), Options::default().max_event_type_len(8)).unwrap();
    assert!(matches!(
        store.append("s", ExpectedVersion::Any, &[]),
        Err(Error::EmptyBatch)
    ));
    let empty_type = EventData::new("", &b"x"[..]);
    assert!(matches!(
        store.append("s", ExpectedVersion::Any, &[ok_event(), empty_type]),
        Err(Error::InvalidEventType { .. })
    ));
    let long_type = EventData::new("NineBytes", &b"x"[..]);
    assert!(matches!(
        store.append("s", ExpectedVersion::Any, &[long_type]),
        Err(Error::InvalidEventType { .. })
    ));
    // Control characters, as in stream names and tags.
    for control in ["a\0b", "a\nb", "\u{7f}", "a\u{85}"] {
        let refused = store.append(
            "s",
            ExpectedVersion::Any,
            &[ok_event(), EventData::new(control, &b"x"[..])],
        );
        assert!(
            matches!(refused, Err(Error::InvalidEventType { ref reason, .. }) if reason.contains("control")),
            "{control:?}: {refused:?}"
        );
    }
    // Nothing of the rejected batches was written, not even the valid event.
    assert_eq!(store.stream_version("s").unwrap(), None);
    assert_still_works(&store, 0);
}

#[test]
fn oversize_events_and_batches() {
    let dir = tempfile::tempdir().unwrap();
    let store = Store::open(
        dir.path(),
        Options::default().segment_size(8192).max_event_size(6000),
    )
    .unwrap();
    store
        .append("s", ExpectedVersion::Any, &[ok_event()])
        .unwrap();

    // Over the configured limit.
    match store.append(
        "s",
        ExpectedVersion::Any,
        &[EventData::new("Big", vec![1u8; 6001])],
    ) {
        Err(Error::EventTooLarge {
            size: 6001,
            max: 6000,
        }) => {}
        other => panic!("expected EventTooLarge, got {other:?}"),
    }
    // Metadata counts too.
    let with_meta = EventData::new("Big", vec![1u8; 3000]).with_metadata(vec![2u8; 3001]);
    assert!(matches!(
        store.append("s", ExpectedVersion::Any, &[with_meta]),
        Err(Error::EventTooLarge { .. })
    ));
    // Each event fits, but together they exceed a segment: an append is atomic,
    // so it must live in one segment.
    let many: Vec<EventData> = (0..3)
        .map(|_| EventData::new("Mid", vec![3u8; 3000]))
        .collect();
    match store.append("s", ExpectedVersion::Any, &many) {
        Err(Error::BatchTooLarge { size, max }) => assert!(size > max),
        other => panic!("expected BatchTooLarge, got {other:?}"),
    }
    // An event at the limit goes to the next segment when it does not fit in
    // this one.
    store
        .append(
            "s",
            ExpectedVersion::Any,
            &[EventData::new("Fits", vec![4u8; 6000])],
        )
        .unwrap();
    store
        .append(
            "s",
            ExpectedVersion::Any,
            &[EventData::new("Fits", vec![5u8; 6000])],
        )
        .unwrap();
    let read = store.read_stream("s", 0, Direction::Forward, 10).unwrap();
    assert_eq!(read.len(), 3);
    assert_eq!(read[2].payload, vec![5u8; 6000]);
    assert_still_works(&store, 3);
}

#[test]
fn an_event_larger_than_the_segment_is_rejected_whatever_the_limit() {
    let dir = tempfile::tempdir().unwrap();
    let store = Store::open(dir.path(), Options::default().segment_size(4096)).unwrap();
    match store.append(
        "s",
        ExpectedVersion::Any,
        &[EventData::new("Huge", vec![0u8; 5000])],
    ) {
        Err(Error::EventTooLarge { size: 5000, max }) => assert!(max < 4096),
        other => panic!("expected EventTooLarge, got {other:?}"),
    }
    assert_still_works(&store, 0);
}

#[test]
fn wrong_expected_versions_report_the_actual_version() {
    let dir = tempfile::tempdir().unwrap();
    let store = Store::open(dir.path(), Options::default()).unwrap();
    let wev = |r: evstore::Result<_>| match r {
        Err(Error::WrongExpectedVersion { actual, .. }) => actual,
        other => panic!("expected WrongExpectedVersion, got {other:?}"),
    };
    assert_eq!(
        wev(store.append("s", ExpectedVersion::StreamExists, &[ok_event()])),
        None
    );
    assert_eq!(
        wev(store.append("s", ExpectedVersion::Exact(0), &[ok_event()])),
        None
    );
    store
        .append("s", ExpectedVersion::NoStream, &[ok_event(), ok_event()])
        .unwrap();
    assert_eq!(
        wev(store.append("s", ExpectedVersion::NoStream, &[ok_event()])),
        Some(1)
    );
    assert_eq!(
        wev(store.append("s", ExpectedVersion::Exact(0), &[ok_event()])),
        Some(1)
    );
    store
        .append("s", ExpectedVersion::StreamExists, &[ok_event()])
        .unwrap();
    store
        .append("s", ExpectedVersion::Exact(2), &[ok_event()])
        .unwrap();
    assert_eq!(store.stream_version("s").unwrap(), Some(3));
    assert_still_works(&store, 4);
}

#[test]
fn invalid_options_are_refused() {
    let dir = tempfile::tempdir().unwrap();
    for options in [
        Options::default().segment_size(1000),
        Options::default().segment_size(4097),
        Options::default().max_stream_name_len(0),
        Options::default().max_event_type_len(70_000),
        Options::default().flush_interval(std::time::Duration::ZERO),
    ] {
        assert!(matches!(
            Store::open(dir.path(), options),
            Err(Error::InvalidOption(_))
        ));
    }
}

#[test]
fn closed_store_refuses_appends_but_reads() {
    let dir = tempfile::tempdir().unwrap();
    let store = Store::open(dir.path(), Options::default()).unwrap();
    store
        .append("s", ExpectedVersion::Any, &[ok_event()])
        .unwrap();
    let other = store.clone();
    store.close().unwrap();
    assert!(matches!(
        other.append("s", ExpectedVersion::Any, &[ok_event()]),
        Err(Error::Closed)
    ));
    assert!(matches!(other.flush(), Err(Error::Closed)));
    assert_eq!(
        other
            .read_stream("s", 0, Direction::Forward, 10)
            .unwrap()
            .len(),
        1
    );
}

/// An error and its causes joined the way `anyhow`'s `{:#}` and `eyre`
/// reports join them: each `Display`, outermost first, walking `source()`.
fn chain_report(error: &Error) -> (String, Vec<String>) {
    let mut links = vec![error.to_string()];
    let mut cause = std::error::Error::source(error);
    while let Some(c) = cause {
        links.push(c.to_string());
        cause = c.source();
    }
    (links.join(": "), links)
}

/// Asserts that `error` has a cause and that its chain report names each
/// cause exactly once.
fn assert_each_cause_once(error: &Error) {
    let (report, links) = chain_report(error);
    assert!(links.len() >= 2, "no source: {error:?}");
    for cause in &links[1..] {
        assert!(!cause.is_empty(), "{report}");
        assert_eq!(
            report.matches(cause.as_str()).count(),
            1,
            "{cause:?} in {report:?}"
        );
    }
    assert!(
        !links[0].contains(&links[1]),
        "the message repeats its source: {report}"
    );
}

/// A store on a simulated disk.
fn open_on_sim(disk: &evstore::storage::SimDisk, options: Options) -> Store {
    let storage =
        std::sync::Arc::new(disk.clone()) as std::sync::Arc<dyn evstore::storage::Storage>;
    Store::open(std::path::Path::new("/store"), options.storage(storage)).unwrap()
}

#[test]
fn io_errors_report_their_cause_once() {
    let disk = evstore::storage::SimDisk::new();
    let store = open_on_sim(&disk, Options::default());
    disk.fail_after(Some(disk.mutations()));
    let error = store.save_checkpoint("reader", 0).unwrap_err();
    assert!(matches!(error, Error::Io { .. }), "{error:?}");
    assert_each_cause_once(&error);
    let (report, _) = chain_report(&error);
    assert!(report.contains("simulated crash"), "{report}");
}

#[test]
fn no_space_reports_its_cause_once() {
    let disk = evstore::storage::SimDisk::new();
    let store = open_on_sim(
        &disk,
        Options::default()
            .segment_size(4096)
            .background_preallocation(false),
    );
    store
        .append("s", ExpectedVersion::Any, &[ok_event()])
        .unwrap();
    disk.set_full(true);
    // Appends fill the preallocated segment; the next one needs another.
    let error = (0..100)
        .find_map(|_| {
            store
                .append(
                    "s",
                    ExpectedVersion::Any,
                    &[EventData::new("Ok", vec![7u8; 200])],
                )
                .err()
        })
        .expect("a full disk refuses a new segment");
    assert!(matches!(error, Error::NoSpace { .. }), "{error:?}");
    assert_each_cause_once(&error);
    let saved = store.save_checkpoint("reader", 1).unwrap_err();
    assert!(matches!(saved, Error::NoSpace { .. }), "{saved:?}");
    assert_each_cause_once(&saved);
    let (report, _) = chain_report(&saved);
    assert!(report.contains("simulated disk is full"), "{report}");
}

#[test]
fn a_poisoned_store_reports_its_cause_once() {
    let disk = evstore::storage::SimDisk::new();
    let store = open_on_sim(&disk, Options::default());
    disk.fail_after(Some(disk.mutations()));
    let error = store
        .append("s", ExpectedVersion::Any, &[ok_event()])
        .unwrap_err();
    let Error::StorePoisoned { cause, .. } = &error else {
        panic!("{error:?}");
    };
    assert_eq!(
        std::error::Error::source(&error).map(|s| s.to_string()),
        Some(cause.to_string())
    );
    assert_each_cause_once(&error);
    // Every later append is refused with the same error.
    let again = store
        .append("s", ExpectedVersion::Any, &[ok_event()])
        .unwrap_err();
    assert_eq!(again.to_string(), error.to_string());
    assert_each_cause_once(&again);
}
