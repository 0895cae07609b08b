//! Removing segments none of whose events any read returns any more: the
//! disk space goes, every read returns what it returned before, positions
//! keep their values (the global log then has gaps), versions go on where
//! they were, and all of it holds after a reopen and verifies clean.

use evstore::{
    DeleteMode, Direction, Error, EventData, ExpectedVersion, Filter, Options, Query,
    RecordedEvent, Store, StreamMetadata,
};
use std::path::{Path, PathBuf};

const SEGMENT_SIZE: u64 = 16 << 10;

fn options() -> Options {
    Options::default()
        .segment_size(SEGMENT_SIZE)
        .idempotency_window(16)
}

fn event(stream: &str, n: u32) -> EventData {
    EventData::new(
        "Noted",
        format!("<<{stream}#{n:05}>>").into_bytes().repeat(16),
    )
    .with_tags([format!("of:{stream}")])
}

fn append(store: &Store, stream: &str, events: std::ops::Range<u32>) {
    for n in events {
        store
            .append(stream, ExpectedVersion::Any, &[event(stream, n)])
            .unwrap();
    }
}

fn show(e: &RecordedEvent) -> String {
    format!(
        "{} {}@{} {} {:?} {:?} {}",
        e.position, &*e.stream, e.version, &*e.event_type, e.tags, e.payload, e.erased
    )
}

/// Everything a user can read of the store, in a comparable form: the
/// global log whole and a page at a time both ways, each stream whole and
/// a page at a time both ways, reads by tag, and a subscription from the
/// start, one by one and in batches.
fn everything(store: &Store, streams: &[&str]) -> Vec<String> {
    let mut out: Vec<String> = store
        .read_all(0, Direction::Forward, usize::MAX)
        .unwrap()
        .iter()
        .map(show)
        .collect();
    let whole = out.clone();
    let mut paged = Vec::new();
    let mut from = 0;
    loop {
        let page = store.read_all(from, Direction::Forward, 7).unwrap();
        let Some(last) = page.last() else { break };
        from = last.position + 1;
        paged.extend(page.iter().map(show));
    }
    assert_eq!(paged, whole, "the global log read 7 at a time");
    let mut back = Vec::new();
    let mut from = u64::MAX;
    loop {
        let page = store.read_all(from, Direction::Backward, 5).unwrap();
        let Some(last) = page.last() else { break };
        back.extend(page.iter().map(show));
        match last.position.checked_sub(1) {
            Some(next) => from = next,
            None => break,
        }
    }
    back.reverse();
    assert_eq!(back, whole, "the global log read 5 at a time backwards");
    for stream in streams {
        let read = store
            .read_stream(stream, 0, Direction::Forward, usize::MAX)
            .unwrap();
        let mut paged = Vec::new();
        let mut from = 0;
        loop {
            let page = store
                .read_stream(stream, from, Direction::Forward, 3)
                .unwrap();
            assert!(page.len() <= 3, "{} events in a page of 3", page.len());
            let Some(last) = page.last() else { break };
            from = last.version + 1;
            paged.extend(page);
        }
        assert_eq!(paged, read, "{stream} read 3 at a time");
        let backwards = store
            .read_stream(stream, u64::MAX, Direction::Backward, 4)
            .unwrap();
        out.extend(read.iter().map(|e| format!("stream {}", show(e))));
        out.extend(backwards.iter().map(|e| format!("back {}", show(e))));
        out.push(format!(
            "version {stream} {:?}",
            store.stream_version(stream)
        ));
        let tagged = store
            .read_query(
                &Query::tagged([format!("of:{stream}")]),
                0,
                Direction::Forward,
                usize::MAX,
            )
            .unwrap();
        out.extend(tagged.events.iter().map(|e| format!("query {}", show(e))));
    }
    let mut subscription = store.subscribe_all(0, Filter::all());
    let mut delivered = Vec::new();
    while let Some(event) = subscription.try_next().unwrap() {
        delivered.push(show(&event));
    }
    let mut batches = store.subscribe_all(0, Filter::all());
    let mut batched = Vec::new();
    loop {
        let batch = batches
            .next_batch_timeout(3, std::time::Duration::ZERO)
            .unwrap();
        if batch.is_empty() {
            break;
        }
        batched.extend(batch.iter().map(show));
    }
    assert_eq!(batched, delivered, "batches deliver what one by one does");
    out.extend(delivered.into_iter().map(|e| format!("sub {e}")));
    out
}

fn segment_files(dir: &Path) -> Vec<(PathBuf, u64)> {
    let mut files: Vec<_> = std::fs::read_dir(dir.join(evstore::SEGMENTS_DIR))
        .unwrap()
        .map(|entry| entry.unwrap().path())
        .filter(|path| path.extension().is_some_and(|e| e == "log"))
        .map(|path| {
            let len = std::fs::metadata(&path).unwrap().len();
            (path, len)
        })
        .collect();
    files.sort();
    files
}

/// Segments left as a header and a seal.
fn removed_files(dir: &Path) -> Vec<PathBuf> {
    segment_files(dir)
        .into_iter()
        .filter(|(_, len)| *len == 96)
        .map(|(path, _)| path)
        .collect()
}

/// Files under `dir` this process holds open though they were replaced.
fn open_replaced_files(dir: &Path) -> Vec<String> {
    let dir = dir.display().to_string();
    std::fs::read_dir("/proc/self/fd")
        .map(|fds| {
            fds.filter_map(|fd| std::fs::read_link(fd.ok()?.path()).ok())
                .map(|target| target.display().to_string())
                .filter(|target| target.starts_with(&dir) && target.ends_with("(deleted)"))
                .collect()
        })
        .unwrap_or_default()
}

fn verify_clean(dir: &Path) {
    let report = evstore::verify::verify_store(dir, &mut |_| {}).unwrap();
    assert!(report.is_clean(), "{:#?}", report.findings);
}

/// A store whose first segments hold only events of `old`, then deleted;
/// `kept` goes on after it.
fn deleted_history(dir: &Path, mode: DeleteMode) -> Store {
    let store = Store::open(dir, options()).unwrap();
    append(&store, "old", 0..200);
    append(&store, "kept", 0..10);
    store
        .delete_stream("old", ExpectedVersion::Any, mode)
        .unwrap();
    append(&store, "kept", 10..120);
    store
}

#[test]
fn segments_of_a_deleted_stream_are_removed_and_every_read_returns_what_it_did() {
    let dir = tempfile::tempdir().unwrap();
    let store = deleted_history(dir.path(), DeleteMode::Soft);
    let streams = ["old", "kept"];
    let before = everything(&store, &streams);
    let old_version = store.stream_version("old").unwrap();
    let bytes_before: u64 = segment_files(dir.path()).iter().map(|(_, l)| l).sum();

    let report = store.scavenge().unwrap();
    assert!(report.segments_removed >= 3, "{report:?}");
    assert!(report.events_removed >= 100, "{report:?}");
    // The space is given back now, not when the store closes.
    assert_eq!(open_replaced_files(dir.path()), Vec::<String>::new());
    let removed = removed_files(dir.path());
    assert_eq!(removed.len() as u64, report.segments_removed);
    let bytes_after: u64 = segment_files(dir.path()).iter().map(|(_, l)| l).sum();
    assert_eq!(bytes_before - bytes_after, report.bytes_reclaimed());
    for path in &removed {
        // The index file stays, streams only; the postings file goes.
        let index_file = std::fs::read(path.with_extension("idx")).unwrap();
        let flags = u16::from_le_bytes([index_file[14], index_file[15]]);
        assert_eq!(flags, evstore::format::INDEX_FLAG_STREAMS_ONLY, "{path:?}");
        assert!(
            index_file.len() < 512,
            "{path:?}: {} bytes",
            index_file.len()
        );
        assert!(!path.with_extension("tags").exists(), "{path:?}");
    }
    assert_eq!(everything(&store, &streams), before);
    // Positions keep their values: the global log now has gaps.
    let positions: Vec<u64> = store
        .read_all(0, Direction::Forward, usize::MAX)
        .unwrap()
        .iter()
        .map(|e| e.position)
        .collect();
    let dense = positions.iter().copied().eq(0..positions.len() as u64);
    assert!(!dense, "{positions:?}");

    // Versions go on where the removed events left them.
    assert_eq!(store.stream_version("old").unwrap(), old_version);
    let again = store
        .append("old", ExpectedVersion::Any, &[event("old", 999)])
        .unwrap();
    assert_eq!(Some(again.first_version), old_version.map(|v| v + 1));
    assert!(again.first_version >= 200);
    let with_new = everything(&store, &streams);
    let nothing = store.scavenge().unwrap();
    assert_eq!(nothing.segments_removed, 0, "{nothing:?}");
    drop(store);

    verify_clean(dir.path());
    let reopened = Store::open(dir.path(), options()).unwrap();
    assert_eq!(everything(&reopened, &streams), with_new);
    assert_eq!(
        reopened.stream_version("old").unwrap(),
        Some(again.first_version)
    );
    drop(reopened);
    let read_only = Store::open_read_only(dir.path(), options()).unwrap();
    assert_eq!(everything(&read_only, &streams), with_new);
}

#[test]
fn a_hard_deleted_stream_stays_closed_after_its_segments_are_removed() {
    let dir = tempfile::tempdir().unwrap();
    let store = deleted_history(dir.path(), DeleteMode::Hard);
    assert!(store.scavenge().unwrap().segments_removed >= 3);
    drop(store);
    let store = Store::open(dir.path(), options()).unwrap();
    let refused = store.append("old", ExpectedVersion::Any, &[event("old", 1)]);
    assert!(
        matches!(refused, Err(Error::StreamDeleted { .. })),
        "{refused:?}"
    );
}

#[test]
fn versions_of_removed_segments_do_not_come_back_when_the_rules_are_relaxed() {
    let dir = tempfile::tempdir().unwrap();
    let store = Store::open(dir.path(), options()).unwrap();
    append(&store, "sensor", 0..300);
    store
        .set_stream_metadata(
            "sensor",
            ExpectedVersion::NoStream,
            StreamMetadata::new().max_count(20),
        )
        .unwrap();
    append(&store, "other", 0..40);
    let kept = store
        .read_stream("sensor", 0, Direction::Forward, usize::MAX)
        .unwrap();
    assert_eq!(kept.len(), 20);
    let report = store.scavenge().unwrap();
    assert!(report.segments_removed >= 3, "{report:?}");
    assert_eq!(
        store
            .read_stream("sensor", 0, Direction::Forward, usize::MAX)
            .unwrap(),
        kept
    );
    let first_two = store
        .read_stream("sensor", 0, Direction::Forward, 2)
        .unwrap();
    assert_eq!(first_two, kept[..2]);
    let last_two = store
        .read_stream("sensor", u64::MAX, Direction::Backward, 2)
        .unwrap();
    assert_eq!(
        last_two.iter().map(|e| e.version).collect::<Vec<_>>(),
        [299, 298]
    );

    // With the rule gone, the stream reads what is left on disk: the
    // events of segments not removed (markers of a rewrite among them),
    // never those of removed ones, in version order.
    store
        .set_stream_metadata("sensor", ExpectedVersion::Any, StreamMetadata::new())
        .unwrap();
    let back = store
        .read_stream("sensor", 0, Direction::Forward, usize::MAX)
        .unwrap();
    assert!(back.len() < 300 && back.len() >= 20, "{}", back.len());
    assert!(back.windows(2).all(|w| w[0].version < w[1].version));
    assert_eq!(back.last().map(|e| e.version), Some(299));
    let paged: Vec<_> = (0..)
        .scan(0u64, |from, _| {
            let page = store
                .read_stream("sensor", *from, Direction::Forward, 4)
                .unwrap();
            assert!(page.len() <= 4, "{} events in a page of 4", page.len());
            *from = page.last()?.version + 1;
            Some(page)
        })
        .flatten()
        .collect();
    assert_eq!(paged, back);
    // A read that starts in the removed versions: the round after the
    // removed ones still returns no more than asked for.
    let first_kept = back[0].version;
    assert!(first_kept >= 4, "{first_kept}");
    let page = store
        .read_stream("sensor", first_kept - 4, Direction::Forward, 4)
        .unwrap();
    assert_eq!(page, back[..4]);
    let from_the_top = store
        .read_stream("sensor", u64::MAX, Direction::Backward, usize::MAX)
        .unwrap();
    assert_eq!(from_the_top.into_iter().rev().collect::<Vec<_>>(), back);
}

#[test]
fn a_snapshot_whose_event_was_removed_still_loads() {
    let dir = tempfile::tempdir().unwrap();
    let store = Store::open(dir.path(), options()).unwrap();
    append(&store, "account", 0..150);
    store.save_snapshot("account", 100, "state at 100").unwrap();
    store.truncate_stream("account", 140).unwrap();
    append(&store, "other", 0..60);
    let report = store.scavenge().unwrap();
    assert!(report.segments_removed >= 2, "{report:?}");
    let snapshot = store.load_snapshot("account").unwrap().unwrap();
    assert_eq!(
        (snapshot.version, &snapshot.data[..]),
        (100, &b"state at 100"[..])
    );
    // A snapshot at a removed version may still be saved: the state was
    // built when the events were there.
    store.save_snapshot("account", 90, "state at 90").unwrap();
    drop(store);
    let store = Store::open(dir.path(), options()).unwrap();
    assert_eq!(
        store.load_snapshot("account").unwrap().unwrap().version,
        100
    );
    assert_eq!(
        store
            .load_snapshot_at_or_below("account", 95)
            .unwrap()
            .unwrap()
            .version,
        90
    );
    assert!(store.damaged_snapshots().is_empty());
    drop(store);
    verify_clean(dir.path());
}

#[test]
fn events_still_in_the_idempotency_window_are_not_removed_until_it_moves_on() {
    let dir = tempfile::tempdir().unwrap();
    let options = || options().idempotency_window(1_000);
    let store = Store::open(dir.path(), options()).unwrap();
    append(&store, "old", 0..200);
    store
        .delete_stream("old", ExpectedVersion::Any, DeleteMode::Soft)
        .unwrap();
    append(&store, "kept", 0..5);
    let first = store.scavenge().unwrap();
    assert_eq!(first.segments_removed, 0, "{first:?}");
    assert!(first.segments_rewritten > 0, "{first:?}");
    append(&store, "kept", 5..1_100);
    let second = store.scavenge().unwrap();
    assert!(second.segments_removed >= 3, "{second:?}");
}

#[test]
fn a_removed_segment_without_its_index_file_is_refused_and_reported() {
    let dir = tempfile::tempdir().unwrap();
    let store = deleted_history(dir.path(), DeleteMode::Soft);
    assert!(store.scavenge().unwrap().segments_removed > 0);
    drop(store);
    let removed = removed_files(dir.path());
    let index_file = removed[1].with_extension("idx");
    let mut bytes = std::fs::read(&index_file).unwrap();
    let last = bytes.len() - 1;
    bytes[last] ^= 1;
    std::fs::write(&index_file, &bytes).unwrap();
    let damaged = Store::open(dir.path(), options());
    assert!(
        matches!(damaged, Err(Error::Corrupted { .. })),
        "{damaged:?}"
    );
    let report = evstore::verify::verify_store(dir.path(), &mut |_| {}).unwrap();
    assert!(!report.is_clean());
    std::fs::remove_file(&index_file).unwrap();
    let missing = Store::open(dir.path(), options());
    assert!(
        matches!(missing, Err(Error::Corrupted { .. })),
        "{missing:?}"
    );
    let report = evstore::verify::verify_store(dir.path(), &mut |_| {}).unwrap();
    assert!(!report.is_clean());
}

#[test]
fn checkpoints_subscriptions_and_views_inside_a_removed_range_go_on_past_it() {
    use evstore::ProjectionOptions;
    use std::sync::{Arc, Mutex};
    use std::time::{Duration, Instant};

    let dir = tempfile::tempdir().unwrap();
    let store = Store::open(dir.path(), options()).unwrap();
    append(&store, "old", 0..200);
    // Events read before the removal, holding views of the files it
    // replaces.
    let held = store.read_all(0, Direction::Forward, 60).unwrap();
    store.save_checkpoint("view", 50).unwrap();
    append(&store, "kept", 0..10);
    store
        .delete_stream("old", ExpectedVersion::Any, DeleteMode::Soft)
        .unwrap();
    append(&store, "kept", 10..120);
    let live = store.read_all(50, Direction::Forward, usize::MAX).unwrap();
    assert!(store.scavenge().unwrap().segments_removed >= 3);
    for (n, event) in held.iter().enumerate() {
        assert_eq!(&event.payload[..], event_payload("old", n as u32), "{n}");
    }
    assert!(store.read_all(50, Direction::Forward, 1).unwrap()[0].position > 60);
    assert_eq!(
        store.read_all(50, Direction::Forward, usize::MAX).unwrap(),
        live
    );
    let mut subscription = store.subscribe_all(50, Filter::all());
    let mut delivered = Vec::new();
    while let Some(event) = subscription.try_next().unwrap() {
        delivered.push(event);
    }
    assert_eq!(delivered, live);
    assert_eq!(
        subscription.checkpoint(),
        store.last_position().unwrap() + 1
    );

    let seen = Arc::new(Mutex::new(Vec::new()));
    let recorder = {
        let seen = Arc::clone(&seen);
        move |event: &RecordedEvent| {
            seen.lock().unwrap().push(event.clone());
            Ok(())
        }
    };
    let handle = store
        .run_projection("view", ProjectionOptions::default(), recorder)
        .unwrap();
    let end = store.last_position().unwrap() + 1;
    let deadline = Instant::now() + Duration::from_secs(60);
    while handle.position() < end {
        assert!(Instant::now() < deadline, "the projection did not catch up");
        std::thread::yield_now();
    }
    handle.stop().unwrap();
    assert_eq!(*seen.lock().unwrap(), live);
    assert_eq!(store.load_checkpoint("view").unwrap(), Some(end));
}

fn event_payload(stream: &str, n: u32) -> Vec<u8> {
    format!("<<{stream}#{n:05}>>").into_bytes().repeat(16)
}

#[test]
fn a_read_only_store_opened_before_a_scavenge_never_shows_what_it_took_out() {
    let dir = tempfile::tempdir().unwrap();
    let store = Store::open(dir.path(), options()).unwrap();
    append(&store, "sensor", 0..150);
    append(&store, "mixed", 0..3);
    append(&store, "sensor", 150..200);
    store
        .set_stream_metadata(
            "sensor",
            ExpectedVersion::NoStream,
            StreamMetadata::new().max_count(2),
        )
        .unwrap();
    append(&store, "other", 0..80);
    let reader = Store::open_read_only(dir.path(), options()).unwrap();
    let report = store.scavenge().unwrap();
    assert!(report.segments_removed > 0, "{report:?}");
    assert!(report.segments_rewritten > 0, "{report:?}");
    // Relaxed: the writer keeps again what is left of the stream on disk
    // (markers where a rewrite took events out, nothing where a segment
    // was removed); the reader, which opened the old files, must agree.
    store
        .set_stream_metadata("sensor", ExpectedVersion::Any, StreamMetadata::new())
        .unwrap();
    reader.refresh().unwrap();
    let streams = ["sensor", "mixed", "other"];
    assert_eq!(everything(&reader, &streams), everything(&store, &streams));
    let read = reader
        .read_stream("sensor", 0, Direction::Forward, usize::MAX)
        .unwrap();
    assert!(
        read.len() < 200 && read.iter().any(|e| e.erased),
        "{}",
        read.len()
    );
}

/// Live events, then a deleted stream filling segments of its own, then
/// live events again: the removed positions lie between live ones.
fn gap_between_live_events(dir: &Path) -> (Store, u64) {
    let store = Store::open(dir, options()).unwrap();
    append(&store, "kept", 0..30);
    append(&store, "old", 0..200);
    store
        .delete_stream("old", ExpectedVersion::Any, DeleteMode::Soft)
        .unwrap();
    append(&store, "kept", 30..120);
    assert!(store.scavenge().unwrap().segments_removed >= 3);
    // The first position after the gap.
    let after_gap = store
        .read_all(30, Direction::Forward, 1)
        .unwrap()
        .first()
        .map(|e| e.position)
        .unwrap();
    assert!(after_gap > 60, "{after_gap}");
    (store, after_gap)
}

#[test]
fn a_checkpoint_right_after_a_removed_range_is_resumed_from_not_rewound() {
    use evstore::{ProjectionOptions, ProjectionStart};
    use std::sync::{Arc, Mutex};
    use std::time::{Duration, Instant};

    let dir = tempfile::tempdir().unwrap();
    let (store, _) = gap_between_live_events(dir.path());
    // Right after the last removed segment: the event before it is gone.
    let removed_end = removed_files(dir.path())
        .iter()
        .map(|path| {
            let base: u64 = path.file_stem().unwrap().to_str().unwrap().parse().unwrap();
            let next = segment_files(dir.path())
                .into_iter()
                .map(|(p, _)| {
                    p.file_stem()
                        .unwrap()
                        .to_str()
                        .unwrap()
                        .parse::<u64>()
                        .unwrap()
                })
                .find(|&b| b > base)
                .unwrap();
            next
        })
        .max()
        .unwrap();
    store.save_checkpoint("view", removed_end).unwrap();
    // A checkpoint the log cannot vouch for would be brought back to where
    // the log ended when the store opened: here, its very start.
    let seen = Arc::new(Mutex::new(Vec::new()));
    let recorder = {
        let seen = Arc::clone(&seen);
        move |event: &RecordedEvent| {
            seen.lock().unwrap().push(event.position);
            Ok(())
        }
    };
    let projection = ProjectionOptions::default().start(ProjectionStart::FromCheckpoint);
    let handle = store.run_projection("view", projection, recorder).unwrap();
    let end = store.last_position().unwrap() + 1;
    let deadline = Instant::now() + Duration::from_secs(60);
    while handle.position() < end {
        assert!(Instant::now() < deadline, "the projection did not catch up");
        std::thread::yield_now();
    }
    handle.stop().unwrap();
    let seen = seen.lock().unwrap();
    assert!(seen.first() >= Some(&removed_end), "{seen:?}");
}

#[test]
fn checkpoint_lags_count_only_bytes_still_on_disk() {
    let dir = tempfile::tempdir().unwrap();
    let (store, after_gap) = gap_between_live_events(dir.path());
    store.save_checkpoint("before", 10).unwrap();
    store.save_checkpoint("after", after_gap).unwrap();
    let lags = store.checkpoint_lags().unwrap();
    let lag = |name: &str| lags.iter().find(|l| l.name == name).unwrap().lag_bytes;
    // From before the gap: the 20 live events before it on top of all
    // that is after it.
    assert!(lag("before") > lag("after"), "{lags:?}");
    assert!(lag("after") > 0, "{lags:?}");
}

#[test]
fn a_read_only_store_follows_past_a_segment_removed_before_it_got_there() {
    let dir = tempfile::tempdir().unwrap();
    let store = Store::open(dir.path(), options()).unwrap();
    append(&store, "sensor", 0..1);
    // A reader that does not look again on its own: a slow one.
    let slow = options().poll_interval(std::time::Duration::from_secs(3600));
    let reader = Store::open_read_only(dir.path(), slow).unwrap();
    append(&store, "sensor", 1..150);
    store
        .set_stream_metadata(
            "sensor",
            ExpectedVersion::NoStream,
            StreamMetadata::new().max_count(2),
        )
        .unwrap();
    append(&store, "other", 0..60);
    assert!(store.scavenge().unwrap().segments_removed >= 2);
    reader.refresh().unwrap();
    assert_eq!(reader.last_position(), store.last_position());
    let streams = ["sensor", "other"];
    assert_eq!(everything(&reader, &streams), everything(&store, &streams));
    assert_eq!(
        reader.stream_version("sensor").unwrap(),
        store.stream_version("sensor").unwrap()
    );
}

#[test]
fn subscriptions_never_serve_what_a_scavenge_took_out_once_rules_are_relaxed() {
    for (on_writer, remove) in [(true, true), (true, false), (false, true), (false, false)] {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open(dir.path(), options()).unwrap();
        for n in 0..120u32 {
            // With `b` between them, the segments of `a` are rewritten, not
            // removed.
            let stream = if remove || n % 4 != 0 { "a" } else { "b" };
            append(&store, stream, n..n + 1);
        }
        append(&store, "c", 0..80);
        let reader = Store::open_read_only(dir.path(), options()).unwrap();
        let subscribed = if on_writer { &store } else { &reader };
        // Two subscribers share what they read ahead; a third holds part
        // of a batch.
        let mut first = subscribed.subscribe_all(0, Filter::all());
        let mut second = subscribed.subscribe_all(0, Filter::all());
        while first.try_next().unwrap().is_some() {}
        while second.try_next().unwrap().is_some() {}
        let mut held = subscribed.subscribe_all(0, Filter::all());
        let started = held
            .next_batch_timeout(7, std::time::Duration::ZERO)
            .unwrap();
        let resume = started.last().unwrap().position + 1;
        let end = store
            .stream_version("a")
            .unwrap()
            .map_or(0, |last| last + 1);
        store.truncate_stream("a", end).unwrap();
        let report = store.scavenge().unwrap();
        assert!(
            report.segments_removed + report.segments_rewritten > 0,
            "{report:?}"
        );
        // Relaxed: what the scavenge took out stays out.
        store.truncate_stream("a", 0).unwrap();
        reader.refresh().unwrap();
        let context = format!("on the writer: {on_writer}, removing: {remove}");
        let expected: Vec<String> = subscribed
            .read_all(0, Direction::Forward, usize::MAX)
            .unwrap()
            .iter()
            .map(show)
            .collect();
        let mut fresh = subscribed.subscribe_all(0, Filter::all());
        let mut delivered = Vec::new();
        while let Some(event) = fresh.try_next().unwrap() {
            delivered.push(show(&event));
        }
        assert_eq!(delivered, expected, "{context}: a new subscription");
        let mut rest = Vec::new();
        while let Some(event) = held.try_next().unwrap() {
            rest.push(show(&event));
        }
        let expected_rest: Vec<String> = subscribed
            .read_all(resume, Direction::Forward, usize::MAX)
            .unwrap()
            .iter()
            .map(show)
            .collect();
        assert_eq!(rest, expected_rest, "{context}: a held subscription");
    }
}

#[test]
fn a_projection_reads_again_the_rest_of_a_batch_a_scavenge_replaced_under_it() {
    use evstore::ProjectionOptions;
    use std::sync::{Arc, Mutex};
    use std::time::{Duration, Instant};

    let dir = tempfile::tempdir().unwrap();
    let store = Store::open(dir.path(), options()).unwrap();
    append(&store, "a", 0..120);
    append(&store, "c", 0..80);
    let seen = Arc::new(Mutex::new(Vec::new()));
    let (writer, record) = (store.clone(), Arc::clone(&seen));
    let handle = store
        .run_projection(
            "a-view",
            ProjectionOptions::default().filter(Filter::stream_prefix("a")),
            move |e: &RecordedEvent| {
                if &*e.stream == "a" && e.version == 0 {
                    // While the batch holding the rest of the stream is
                    // handled: truncated, scavenged away, kept again.
                    writer.truncate_stream("a", 100).unwrap();
                    assert!(writer.scavenge().unwrap().segments_removed > 0);
                    writer.truncate_stream("a", 0).unwrap();
                }
                if &*e.stream == "a" {
                    record.lock().unwrap().push(e.version);
                }
                Ok(())
            },
        )
        .unwrap();
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        let end = store.last_position().unwrap() + 1;
        if handle.position() >= end {
            break;
        }
        assert!(Instant::now() < deadline, "the projection did not catch up");
        std::thread::yield_now();
    }
    handle.stop().unwrap();
    let left: Vec<u64> = store
        .read_stream("a", 1, Direction::Forward, usize::MAX)
        .unwrap()
        .iter()
        .map(|e| e.version)
        .collect();
    assert!(left.len() < 119, "{left:?}");
    let mut expected = vec![0];
    expected.extend(left);
    assert_eq!(*seen.lock().unwrap(), expected);
}

/// In a store that acknowledges before syncing, a deletion may still be
/// lost in a crash: a scavenge must not reclaim its events' bytes unless
/// it is durable, or the crash would leave the events neither deleted nor
/// there.
#[test]
fn a_scavenge_never_reclaims_on_a_lifecycle_event_a_crash_could_lose() {
    use evstore::storage::{CrashPlan, SimDisk};
    use evstore::Durability;
    use std::sync::Arc;
    use std::time::Duration;

    let on = |disk: &SimDisk| {
        options()
            .durability(Durability::Buffered)
            .flush_interval(Duration::from_secs(3600))
            .background_preallocation(false)
            .background_index_writes(false)
            .storage(Arc::new(disk.clone()))
    };
    let dir = Path::new("/sim/store");
    type Step = fn(&Store);
    let steps: [(&str, Step); 3] = [
        ("soft delete", |s| {
            s.delete_stream("old", ExpectedVersion::Any, DeleteMode::Soft)
                .unwrap();
        }),
        ("truncation", |s| {
            s.truncate_stream("old", 100).unwrap();
        }),
        ("erasure", |s| {
            s.erase_events("old", 0, 99).unwrap();
        }),
    ];
    for (what, step) in steps {
        let disk = SimDisk::new();
        let store = Store::open(dir, on(&disk)).unwrap();
        append(&store, "old", 0..100);
        append(&store, "kept", 0..120);
        store.flush().unwrap();
        step(&store);
        let report = store.scavenge().unwrap();
        assert!(report.bytes_reclaimed() > 0, "{what}: {report:?}");
        let image = disk.crash(CrashPlan::LoseAll);
        drop(store);
        let reopened = Store::open(dir, on(&image)).unwrap();
        // Either the crash kept the lifecycle event (the scavenge made it
        // durable before acting on it), or it lost it and every event is
        // there as it was appended.
        let kept_lifecycle = reopened
            .read_all(0, Direction::Forward, usize::MAX)
            .unwrap()
            .iter()
            .any(|e| &*e.stream == "$$old" || e.event_type.starts_with("$stream"));
        let old = reopened
            .read_stream("old", 0, Direction::Forward, usize::MAX)
            .unwrap();
        let intact = old.len() == 100 && old.iter().all(|e| !e.erased && !e.payload.is_empty());
        assert!(
            kept_lifecycle || intact,
            "{what}: lost in the crash, yet {} of its events read back, {} erased",
            old.len(),
            old.iter().filter(|e| e.erased).count()
        );
        let kept = reopened
            .read_stream("kept", 0, Direction::Forward, usize::MAX)
            .unwrap();
        assert_eq!(kept.len(), 120, "{what}");
        let report = evstore::verify::verify_store_on(&image, dir, &mut |_| {}).unwrap();
        assert!(report.is_clean(), "{what}: {:#?}", report.findings);
    }
}
