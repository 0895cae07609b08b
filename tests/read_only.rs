//! A read-only store beside the writer: no lock, no write of any kind,
//! reads up to the durable watermark, and following what the writer appends
//! across segment rollovers, for reads and subscriptions alike.

#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use common::{flip_byte, TestRng};
use evstore::{
    Direction, Durability, Error, EventData, ExpectedVersion, Filter, Options, ProjectionOptions,
    RecordedEvent, Store,
};
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::time::Duration;

fn options() -> Options {
    Options::default().segment_size(16 << 10)
}

fn event(rng: &mut TestRng, i: u64) -> EventData {
    let len = rng.below(300) as usize;
    let payload: Vec<u8> = (0..len).map(|_| rng.next_u64() as u8).collect();
    EventData::new(format!("Type{}", i % 3), payload).with_metadata(format!("m{i}").into_bytes())
}

/// Appends `appends` single events over `streams` streams, returning them
/// in the order of the log.
fn fill(store: &Store, rng: &mut TestRng, streams: u64, appends: u64) -> Vec<(String, EventData)> {
    let mut log = Vec::new();
    for i in 0..appends {
        let stream = format!("s-{}", rng.below(streams));
        let e = event(rng, i);
        store
            .append(&stream, ExpectedVersion::Any, std::slice::from_ref(&e))
            .unwrap();
        log.push((stream, e));
    }
    log
}

fn all(store: &Store) -> Vec<RecordedEvent> {
    store.read_all(0, Direction::Forward, usize::MAX).unwrap()
}

fn assert_same(a: &[RecordedEvent], b: &[RecordedEvent]) {
    assert_eq!(a.len(), b.len());
    for (x, y) in a.iter().zip(b) {
        assert_eq!(
            (x.position, &*x.stream, x.version, x.id),
            (y.position, &*y.stream, y.version, y.id)
        );
        assert_eq!(
            (&x.event_type, &x.payload, &x.metadata),
            (&y.event_type, &y.payload, &y.metadata)
        );
    }
}

/// Every file under `dir` with its bytes: a read-only store must not change
/// a single one, nor add or remove any.
fn fingerprint(dir: &Path) -> BTreeMap<PathBuf, Vec<u8>> {
    let mut files = BTreeMap::new();
    let mut pending = vec![dir.to_path_buf()];
    while let Some(d) = pending.pop() {
        for entry in std::fs::read_dir(&d).unwrap() {
            let path = entry.unwrap().path();
            if path.is_dir() {
                files.insert(path.clone(), Vec::new());
                pending.push(path);
            } else {
                files.insert(path.clone(), std::fs::read(&path).unwrap());
            }
        }
    }
    files
}

fn assert_read_only_refuses(store: &Store) {
    let e = EventData::new("E", &b"x"[..]);
    let refused = |r: evstore::Result<()>| {
        assert!(matches!(r, Err(Error::ReadOnly { .. })), "{r:?}");
    };
    refused(
        store
            .append("s-0", ExpectedVersion::Any, std::slice::from_ref(&e))
            .map(|_| ()),
    );
    refused(
        store
            .append_with_durability("s-0", ExpectedVersion::Any, &[e], Durability::Buffered)
            .map(|_| ()),
    );
    refused(store.flush());
    refused(store.save_snapshot("s-0", 0, b"state"));
    refused(store.save_checkpoint("projection", 0));
    refused(
        store
            .run_projection("projection", ProjectionOptions::default(), |_| Ok(()))
            .map(|_| ()),
    );
}

#[test]
fn opens_beside_the_writer_reads_everything_durable_and_refuses_to_write() {
    let dir = tempfile::tempdir().unwrap();
    let mut rng = TestRng::new(1);
    // No helper threads: an idle writer then changes no file while the
    // directory is compared before and after the reader.
    let writer = Store::open(
        dir.path(),
        options()
            .background_index_writes(false)
            .background_preallocation(false),
    )
    .unwrap();
    fill(&writer, &mut rng, 7, 400);
    writer.save_snapshot("s-1", 0, b"state").unwrap();
    writer.save_checkpoint("projection", 10).unwrap();
    assert!(writer.log_info().segments.len() > 3);

    let before = fingerprint(dir.path());
    let reader = Store::open_read_only(dir.path(), options()).unwrap();
    assert!(reader.is_read_only() && !writer.is_read_only());
    assert_same(&all(&reader), &all(&writer));
    for s in 0..7 {
        let stream = format!("s-{s}");
        assert_eq!(
            reader.stream_version(&stream).unwrap(),
            writer.stream_version(&stream).unwrap()
        );
        assert_same(
            &reader
                .read_stream(&stream, u64::MAX, Direction::Backward, usize::MAX)
                .unwrap(),
            &writer
                .read_stream(&stream, u64::MAX, Direction::Backward, usize::MAX)
                .unwrap(),
        );
    }
    let names: Vec<_> = reader.streams().map(|s| s.unwrap().name).collect();
    assert_eq!(names.len(), 7);
    assert_eq!(
        reader.load_snapshot("s-1").unwrap().unwrap().data,
        &b"state"[..]
    );
    assert_eq!(reader.load_checkpoint("projection").unwrap(), Some(10));
    let info = reader.log_info();
    assert_eq!(info.durable_end, 400);
    assert_eq!(info.segments.iter().map(|s| s.events).sum::<u64>(), 400);
    assert!(info.segments.iter().rev().skip(1).all(|s| s.sealed));
    assert_read_only_refuses(&reader);
    reader.close().unwrap();
    assert_eq!(fingerprint(dir.path()), before);

    // The writer never noticed.
    writer
        .append(
            "s-0",
            ExpectedVersion::Any,
            &[EventData::new("E", &b"after"[..])],
        )
        .unwrap();
}

#[test]
fn follows_the_writer_across_segment_rollovers() {
    let dir = tempfile::tempdir().unwrap();
    let mut rng = TestRng::new(2);
    // Index files written before the append that seals returns, so the
    // reader can be checked to have moved onto them.
    let writer = Store::open(dir.path(), options().background_index_writes(false)).unwrap();
    let reader = Store::open_read_only(dir.path(), options()).unwrap();
    assert_eq!(reader.last_position(), None);
    for round in 0..6 {
        let appended = fill(&writer, &mut rng, 5, 40 + round * 37);
        let end = reader.refresh().unwrap();
        assert_eq!(Some(end - 1), writer.last_position());
        assert_same(&all(&reader), &all(&writer));
        let last = appended.last().unwrap();
        assert_eq!(
            reader.stream_version(&last.0).unwrap(),
            writer.stream_version(&last.0).unwrap()
        );
    }
    let info = reader.log_info();
    assert!(info.segments.len() > 4);
    for segment in info.segments.iter().filter(|s| s.sealed) {
        assert!(segment.index_file.is_some(), "{segment:?}");
    }
    assert_eq!(
        reader.log_info().segments.len(),
        writer.log_info().segments.len()
    );
}

#[test]
fn a_subscription_on_a_read_only_store_gets_what_the_writer_appends_live() {
    let dir = tempfile::tempdir().unwrap();
    let mut rng = TestRng::new(3);
    let writer = Store::open(dir.path(), options()).unwrap();
    fill(&writer, &mut rng, 4, 50);
    let reader = Store::open_read_only(
        dir.path(),
        options().poll_interval(Duration::from_millis(1)),
    )
    .unwrap();
    let mut everything = reader.subscribe_all(0, Filter::all());
    let mut odd = reader.subscribe_all(0, Filter::event_types(["Type1"]));
    let appender = {
        let writer = writer.clone();
        std::thread::spawn(move || {
            let mut rng = TestRng::new(4);
            fill(&writer, &mut rng, 4, 500);
        })
    };
    let mut got = Vec::new();
    while got.len() < 550 {
        let e = everything
            .next_timeout(Duration::from_secs(30))
            .unwrap()
            .expect("the poller delivers every appended event");
        got.push(e);
    }
    appender.join().unwrap();
    assert_same(&got, &all(&writer));
    let expected_odd: Vec<_> = got
        .iter()
        .filter(|e| &*e.event_type == "Type1")
        .cloned()
        .collect();
    let mut got_odd = Vec::new();
    while got_odd.len() < expected_odd.len() {
        got_odd.push(odd.next_timeout(Duration::from_secs(30)).unwrap().unwrap());
    }
    assert_same(&got_odd, &expected_odd);
    assert!(everything.try_next().unwrap().is_none());
}

#[test]
fn readers_racing_a_writer_always_see_a_dense_prefix_of_the_log() {
    let dir = tempfile::tempdir().unwrap();
    let writer = Store::open(dir.path(), options()).unwrap();
    let reader = Store::open_read_only(dir.path(), options()).unwrap();
    let writers: Vec<_> = (0..3)
        .map(|t| {
            let writer = writer.clone();
            std::thread::spawn(move || {
                let mut rng = TestRng::new(10 + t);
                fill(&writer, &mut rng, 9, 300);
            })
        })
        .collect();
    let mut seen = 0;
    while writers.iter().any(|w| !w.is_finished()) {
        let end = reader.refresh().unwrap();
        assert!(end >= seen);
        let events = all(&reader);
        assert_eq!(events.len() as u64, end);
        for (i, e) in events.iter().enumerate() {
            assert_eq!(e.position, i as u64);
        }
        let mut versions: BTreeMap<&str, u64> = BTreeMap::new();
        for e in &events {
            let next = versions.entry(&e.stream).or_default();
            assert_eq!(e.version, *next);
            *next += 1;
        }
        seen = end;
    }
    for w in writers {
        w.join().unwrap();
    }
    reader.refresh().unwrap();
    assert_same(&all(&reader), &all(&writer));
}

/// A read-only open scans the active segment while the writer appends to
/// it: it may copy a batch the writer has not finished, then find batches
/// the writer made durable after it. That is a race, not damage: the open
/// reads the batch again and succeeds.
#[test]
fn read_only_opens_beside_a_busy_writer_succeed() {
    let dir = tempfile::tempdir().unwrap();
    let options = || Options::default().segment_size(1 << 20);
    let writer = Store::open(dir.path(), options()).unwrap();
    let done = std::sync::atomic::AtomicBool::new(false);
    std::thread::scope(|scope| {
        for t in 0..3 {
            let (writer, done) = (&writer, &done);
            scope.spawn(move || {
                let mut rng = TestRng::new(40 + t);
                let mut i = 0;
                while !done.load(std::sync::atomic::Ordering::Relaxed) {
                    let stream = format!("busy-{t}");
                    writer
                        .append(&stream, ExpectedVersion::Any, &[event(&mut rng, i)])
                        .unwrap();
                    i += 1;
                }
            });
        }
        let mut failure = None;
        for _ in 0..20 {
            match Store::open_read_only(dir.path(), options()) {
                Ok(reader) => {
                    let last = reader.last_position().unwrap_or(0);
                    let tail = reader.read_all(last, Direction::Forward, 1).unwrap();
                    assert!(tail.len() <= 1);
                }
                Err(error) => {
                    failure = Some(error);
                    break;
                }
            }
        }
        done.store(true, std::sync::atomic::Ordering::Relaxed);
        if let Some(error) = failure {
            panic!("read-only open beside a live writer failed: {error}");
        }
    });
}

#[test]
fn only_durable_events_are_seen_unless_buffered_visibility_is_asked_for() {
    let dir = tempfile::tempdir().unwrap();
    let mut rng = TestRng::new(5);
    let writer = Store::open(
        dir.path(),
        options()
            .durability(Durability::Buffered)
            .flush_interval(Duration::from_secs(3600)),
    )
    .unwrap();
    fill(&writer, &mut rng, 3, 20);
    writer.flush().unwrap();
    fill(&writer, &mut rng, 3, 15);

    let durable_reader = Store::open_read_only(dir.path(), options()).unwrap();
    let written_reader =
        Store::open_read_only(dir.path(), options().durability(Durability::Buffered)).unwrap();
    assert_eq!(durable_reader.refresh().unwrap(), 20);
    assert_eq!(all(&durable_reader).len(), 20);
    assert_eq!(written_reader.refresh().unwrap(), 35);
    assert_same(&all(&written_reader), &all(&writer));

    writer.flush().unwrap();
    assert_eq!(durable_reader.refresh().unwrap(), 35);
    assert_same(&all(&durable_reader), &all(&writer));
}

/// Readers in other processes trust only events a mark in the segment
/// vouches for. A writer that recovers a crashed store syncs the events a
/// crash left past the last mark, so it marks them at once: a reader sees
/// what the writer counts as durable without waiting for the next append.
#[test]
fn a_reader_sees_the_tail_a_writer_recovered_before_any_new_append() {
    let dir = tempfile::tempdir().unwrap();
    let buffered = || {
        Options::default()
            .durability(Durability::Buffered)
            .flush_interval(Duration::from_secs(3600))
    };
    let writer = Store::open(dir.path(), buffered()).unwrap();
    let mut rng = TestRng::new(8);
    let batch = |rng: &mut TestRng, from: u64| -> Vec<EventData> {
        (from..from + 5).map(|i| event(rng, i)).collect()
    };
    writer
        .append("s", ExpectedVersion::Any, &batch(&mut rng, 0))
        .unwrap();
    writer.flush().unwrap();
    writer
        .append("s", ExpectedVersion::Any, &batch(&mut rng, 5))
        .unwrap();
    // What a process killed now leaves: its files as the page cache holds
    // them, the last batch written but not marked durable.
    let crashed = tempfile::tempdir().unwrap();
    copy_dir(dir.path(), crashed.path());
    writer.close().unwrap();
    let before = Store::open_read_only(crashed.path(), options()).unwrap();
    assert_eq!(
        before.last_position(),
        Some(4),
        "unmarked events are not trusted"
    );
    drop(before);

    let recovered = Store::open(crashed.path(), Options::default()).unwrap();
    assert_eq!(recovered.last_position(), Some(9));
    let reader = Store::open_read_only(crashed.path(), options()).unwrap();
    assert_eq!(reader.last_position(), Some(9));
    assert_same(&all(&reader), &all(&recovered));
}

fn copy_dir(from: &Path, to: &Path) {
    std::fs::create_dir_all(to).unwrap();
    for entry in std::fs::read_dir(from).unwrap() {
        let entry = entry.unwrap();
        let target = to.join(entry.file_name());
        if entry.file_type().unwrap().is_dir() {
            copy_dir(&entry.path(), &target);
        } else {
            std::fs::copy(entry.path(), target).unwrap();
        }
    }
}

#[test]
fn a_crashed_store_is_read_without_repairing_anything() {
    let dir = tempfile::tempdir().unwrap();
    let mut rng = TestRng::new(6);
    {
        let writer = Store::open(dir.path(), options()).unwrap();
        fill(&writer, &mut rng, 4, 300);
        writer.save_snapshot("s-2", 0, b"state").unwrap();
        writer.close().unwrap();
    }
    let expected = all(&Store::open_read_only(dir.path(), options()).unwrap());
    let segments = common::segment_files(dir.path());
    let last = dir.path().join("segments").join(segments.last().unwrap());
    let data = std::fs::read(&last).unwrap();
    let end = data.iter().rposition(|&b| b != 0).unwrap() + 1;
    // A torn write after the end, the first index file damaged, the
    // catalogue gone, a snapshot damaged: a writer's open would repair each.
    {
        use std::os::unix::fs::FileExt;
        let file = std::fs::OpenOptions::new().write(true).open(&last).unwrap();
        file.write_all_at(&[0xA5; 40], end as u64 + 8).unwrap();
    }
    let index_file = std::fs::read_dir(dir.path().join("segments"))
        .unwrap()
        .map(|e| e.unwrap().path())
        .find(|p| p.extension().is_some_and(|x| x == "idx"))
        .unwrap();
    flip_byte(
        &index_file,
        std::fs::metadata(&index_file).unwrap().len() - 3,
    );
    let _ = std::fs::remove_file(dir.path().join("segments").join("streams.catalog"));
    let snapshot = std::fs::read_dir(dir.path().join("snapshots"))
        .unwrap()
        .flat_map(|d| std::fs::read_dir(d.unwrap().path()).unwrap())
        .map(|e| e.unwrap().path())
        .next()
        .unwrap();
    flip_byte(&snapshot, 70);

    let before = fingerprint(dir.path());
    let reader = Store::open_read_only(dir.path(), options()).unwrap();
    assert_same(&all(&reader), &expected);
    for s in 0..4 {
        let stream = format!("s-{s}");
        let events = reader
            .read_stream(&stream, 0, Direction::Forward, usize::MAX)
            .unwrap();
        let from_log: Vec<_> = expected
            .iter()
            .filter(|e| *e.stream == *stream)
            .cloned()
            .collect();
        assert_same(&events, &from_log);
    }
    assert!(reader.load_snapshot("s-2").unwrap().is_none());
    assert_eq!(reader.damaged_snapshots().len(), 1);
    assert!(reader.recovery_stats().torn_bytes > 0);
    drop(reader);
    assert_eq!(fingerprint(dir.path()), before);

    // The writer's open still finds and repairs all of it.
    let writer = Store::open(dir.path(), options()).unwrap();
    assert_same(&all(&writer), &expected);
    assert!(writer.recovery_stats().torn_bytes > 0);
}

#[test]
fn a_directory_without_a_store_is_not_created() {
    let dir = tempfile::tempdir().unwrap();
    let missing = dir.path().join("nothing-here");
    assert!(matches!(
        Store::open_read_only(&missing, options()),
        Err(Error::NotAStore { .. })
    ));
    assert!(!missing.exists());
    assert!(matches!(
        Store::open_read_only(dir.path(), options()),
        Err(Error::NotAStore { .. })
    ));
    assert_eq!(std::fs::read_dir(dir.path()).unwrap().count(), 0);
    assert!(matches!(
        Store::open_read_only(dir.path(), options().poll_interval(Duration::ZERO)),
        Err(Error::InvalidOption(_))
    ));
}

#[test]
fn a_follower_that_meets_damage_wakes_its_subscribers_with_the_error() {
    let dir = tempfile::tempdir().unwrap();
    let mut rng = TestRng::new(7);
    {
        let writer = Store::open(dir.path(), options()).unwrap();
        fill(&writer, &mut rng, 3, 200);
        writer.close().unwrap();
    }
    // Without its active segment the log ends with a sealed one, and the
    // reader waits for the writer to install the next.
    let segments = common::segment_files(dir.path());
    assert!(segments.len() > 2);
    let segments_dir = dir.path().join("segments");
    let active = segments_dir.join(segments.last().unwrap());
    std::fs::remove_file(&active).unwrap();
    let reader = Store::open_read_only(
        dir.path(),
        options().poll_interval(Duration::from_millis(1)),
    )
    .unwrap();
    let end = reader.refresh().unwrap();
    let mut subscription = reader.subscribe_all(end, Filter::all());
    let waiting = std::thread::spawn(move || subscription.next_timeout(Duration::from_secs(60)));
    // What appears under the next segment's name is not a segment.
    std::fs::write(&active, vec![0x5A; 4096]).unwrap();
    let woken = waiting.join().unwrap();
    assert!(matches!(woken, Err(Error::Corrupted { .. })), "{woken:?}");
    assert!(matches!(reader.refresh(), Err(Error::Corrupted { .. })));
    // Reads of what was indexed go on.
    assert_eq!(all(&reader).len() as u64, end);
}

/// Where the end of the written log is, a reader looks past it once and
/// then once a second, not at every poll: damage that zeroes a whole batch
/// header under a batch that vouches for it is reported within a second or
/// so, any other damage at once.
#[test]
fn a_zeroed_header_that_a_later_batch_vouches_for_is_reported_within_seconds() {
    let dir = tempfile::tempdir().unwrap();
    let writer = Store::open(dir.path(), Options::default()).unwrap();
    let put = |payload: &[u8]| {
        writer
            .append(
                "s",
                ExpectedVersion::Any,
                &[EventData::new("T", payload.to_vec())],
            )
            .unwrap();
    };
    put(b"first event");
    let reader = Store::open_read_only(
        dir.path(),
        Options::default().poll_interval(Duration::from_secs(3600)),
    )
    .unwrap();
    // Caught up: the next batch's header is zeros, and the look past it
    // found nothing.
    assert_eq!(reader.refresh().unwrap(), 1);
    let marker = b"second event, damaged later";
    put(marker);
    put(b"third event, which vouches for the second");
    // The second batch's header is 32 bytes before its record, whose payload
    // follows the 64-byte record header, the stream name and the type.
    let segment = dir
        .path()
        .join("segments")
        .join(common::segment_files(dir.path())[0].clone());
    let bytes = std::fs::read(&segment).unwrap();
    let payload_at = bytes
        .windows(marker.len())
        .position(|w| w == marker)
        .unwrap();
    let header_at = payload_at - 64 - 2 - 32;
    let file = std::fs::OpenOptions::new()
        .write(true)
        .open(&segment)
        .unwrap();
    std::os::unix::fs::FileExt::write_all_at(&file, &[0u8; 32], header_at as u64).unwrap();
    // Within the second: taken for the end of the log (unless a slow disk
    // made the appends take that long).
    match reader.refresh() {
        Ok(end) => assert_eq!(end, 1),
        Err(error) => assert!(matches!(error, Error::Corrupted { .. }), "{error:?}"),
    }
    std::thread::sleep(Duration::from_millis(1100));
    let error = reader.refresh().unwrap_err();
    assert!(matches!(error, Error::Corrupted { .. }), "{error:?}");
    assert!(error.to_string().contains("made durable"), "{error}");
    drop(writer);
}
