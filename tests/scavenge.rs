//! Scavenging: what no read returns any more is physically gone from the
//! segment files, what reads return is unchanged, before and after a
//! reopen, and the store verifies clean.

use evstore::{
    DeleteMode, Direction, EventData, ExpectedVersion, Filter, Options, Query, RecordedEvent,
    Store, StreamMetadata,
};
use std::path::Path;

fn options() -> Options {
    Options::default().segment_size(32 << 10)
}

/// A payload that names its stream and version, findable on disk.
fn payload(stream: &str, n: u32) -> Vec<u8> {
    format!("<<{stream}#{n:05}>>").into_bytes().repeat(8)
}

fn fill(store: &Store, events: std::ops::Range<u32>) {
    for n in events {
        let stream = format!("s{}", n % 5);
        let event = EventData::new("Noted", payload(&stream, n)).with_tags([format!("k{}", n % 3)]);
        match store.append(&stream, ExpectedVersion::Any, &[event]) {
            Ok(_) | Err(evstore::Error::StreamDeleted { .. }) => {}
            Err(other) => panic!("{other:?}"),
        }
    }
}

/// Everything a user can read, in a comparable form.
fn snapshot(store: &Store) -> Vec<String> {
    let show = |e: &RecordedEvent| {
        format!(
            "{} {}@{} {} {:?} {:?} {}",
            e.position, &*e.stream, e.version, &*e.event_type, e.tags, e.payload, e.erased
        )
    };
    let mut out: Vec<String> = store
        .read_all(0, Direction::Forward, usize::MAX)
        .unwrap()
        .iter()
        .map(show)
        .collect();
    for stream in ["s0", "s1", "s2", "s3", "s4"] {
        let read = store
            .read_stream(stream, 0, Direction::Forward, usize::MAX)
            .unwrap();
        out.extend(read.iter().map(|e| format!("stream {}", show(e))));
        let back = store
            .read_stream(stream, u64::MAX, Direction::Backward, 7)
            .unwrap();
        out.extend(back.iter().map(|e| format!("back {}", show(e))));
    }
    for tag in ["k0", "k1", "k2"] {
        let read = store
            .read_query(&Query::tagged([tag]), 0, Direction::Forward, usize::MAX)
            .unwrap();
        out.extend(read.events.iter().map(|e| format!("query {}", show(e))));
    }
    let mut subscription = store.subscribe_all(0, Filter::all());
    while let Some(event) = subscription.try_next().unwrap() {
        out.push(format!("sub {}", show(&event)));
    }
    out
}

fn segment_bytes(dir: &Path) -> (u64, Vec<u8>) {
    let mut total = 0;
    let mut all = Vec::new();
    for entry in std::fs::read_dir(dir.join(evstore::SEGMENTS_DIR)).unwrap() {
        let path = entry.unwrap().path();
        if path.extension().is_some_and(|e| e == "log") {
            let bytes = std::fs::read(&path).unwrap();
            total += std::fs::metadata(&path).unwrap().len();
            all.extend(bytes);
        }
    }
    (total, all)
}

fn holds(haystack: &[u8], needle: &[u8]) -> bool {
    haystack.windows(needle.len()).any(|w| w == needle)
}

#[test]
fn scavenging_removes_what_no_read_returns_and_changes_nothing_a_read_returns() {
    let dir = tempfile::tempdir().unwrap();
    let store = Store::open(dir.path(), options()).unwrap();
    fill(&store, 0..1500);
    store
        .set_stream_metadata(
            "s1",
            ExpectedVersion::NoStream,
            StreamMetadata::new().max_count(10),
        )
        .unwrap();
    store.truncate_stream("s2", 200).unwrap();
    store
        .delete_stream("s3", ExpectedVersion::Any, DeleteMode::Soft)
        .unwrap();
    store
        .delete_stream("s4", ExpectedVersion::Any, DeleteMode::Hard)
        .unwrap();
    fill(&store, 1500..1900);
    store.flush().unwrap();
    let before = snapshot(&store);
    let (size_before, bytes_before) = segment_bytes(dir.path());
    assert!(holds(&bytes_before, &payload("s4", 4)));

    let report = store.scavenge().unwrap();
    assert!(report.segments_rewritten > 1, "{report:?}");
    assert!(report.events_redacted > 1000, "{report:?}");
    assert!(report.bytes_reclaimed() > 0, "{report:?}");
    assert_eq!(snapshot(&store), before, "reads after scavenging");
    let (size_after, bytes_after) = segment_bytes(dir.path());
    assert!(size_after < size_before, "{size_after} < {size_before}");
    // Dropped events' bytes are gone; kept ones are there.
    for gone in [
        payload("s4", 4),
        payload("s3", 3),
        payload("s1", 1),
        payload("s2", 2),
    ] {
        assert!(
            !holds(&bytes_after, &gone),
            "{}",
            String::from_utf8_lossy(&gone)
        );
    }
    assert!(holds(&bytes_after, &payload("s0", 0)));

    // Nothing left to do the second time.
    let again = store.scavenge().unwrap();
    assert_eq!((again.segments_rewritten, again.events_redacted), (0, 0));
    // Appends go on.
    fill(&store, 1900..1910);
    let after_appends = snapshot(&store);
    store.close().unwrap();

    let reopened = Store::open(dir.path(), options()).unwrap();
    assert_eq!(snapshot(&reopened), after_appends, "reads after a reopen");
    let report = evstore::verify::verify_store(dir.path(), &mut |_| {}).unwrap();
    assert!(report.is_clean(), "{report:?}");
}

#[test]
fn a_marker_reads_as_an_erased_event_once_its_stream_keeps_it_again() {
    let dir = tempfile::tempdir().unwrap();
    let store = Store::open(dir.path(), options()).unwrap();
    fill(&store, 0..600);
    store
        .set_stream_metadata(
            "s0",
            ExpectedVersion::NoStream,
            StreamMetadata::new().max_count(1),
        )
        .unwrap();
    store.scavenge().unwrap();
    store
        .set_stream_metadata("s0", ExpectedVersion::Exact(0), StreamMetadata::new())
        .unwrap();
    let all = store
        .read_stream("s0", 0, Direction::Forward, usize::MAX)
        .unwrap();
    assert_eq!(all.len(), 120);
    let markers: Vec<_> = all.iter().filter(|e| e.erased).collect();
    assert!(!markers.is_empty());
    for (i, event) in all.iter().enumerate() {
        assert_eq!(event.version, i as u64, "versions stay dense");
    }
    for marker in markers {
        assert_eq!(&*marker.event_type, "$redacted");
        assert!(marker.payload.is_empty() && marker.tags.is_empty());
    }
}

#[test]
fn forgotten_subjects_are_scavenged() {
    let dir = tempfile::tempdir().unwrap();
    let store = Store::open(dir.path(), options().crypto_shredding(true)).unwrap();
    fill(&store, 0..800);
    store.flush().unwrap();
    let before: Vec<_> = store
        .read_stream("s1", 0, Direction::Forward, usize::MAX)
        .unwrap();
    store.forget("s1").unwrap();
    let report = store.scavenge().unwrap();
    assert!(report.events_redacted > 100, "{report:?}");
    let after = store
        .read_stream("s1", 0, Direction::Forward, usize::MAX)
        .unwrap();
    assert_eq!(after.len(), before.len());
    assert!(after.iter().all(|e| e.erased && e.payload.is_empty()));
    let s0 = store
        .read_stream("s0", 0, Direction::Forward, usize::MAX)
        .unwrap();
    assert!(s0
        .iter()
        .all(|e| !e.erased && e.payload.starts_with(b"<<s0#")));
}

/// The segment being written.
fn active_segment(store: &Store) -> evstore::SegmentInfo {
    store
        .log_info()
        .segments
        .into_iter()
        .find(|s| !s.sealed)
        .unwrap()
}

#[test]
fn a_segment_being_written_whose_events_are_all_dead_is_sealed_and_scavenged() {
    let dir = tempfile::tempdir().unwrap();
    let store = Store::open(dir.path(), Options::default().segment_size(1 << 20)).unwrap();
    // One live stream, then a stream deleted later: while "kept" lives in
    // the active segment, nothing is rolled.
    let kept = EventData::new("Noted", payload("kept", 0));
    store.append("kept", ExpectedVersion::Any, &[kept]).unwrap();
    for n in 0..50 {
        let event = EventData::new("Noted", payload("gone", n));
        store
            .append("gone", ExpectedVersion::Any, &[event])
            .unwrap();
    }
    store
        .delete_stream("gone", ExpectedVersion::Any, DeleteMode::Hard)
        .unwrap();
    let first = active_segment(&store);
    assert_eq!(store.reclaimable().unwrap().active_dead_events, 0);
    let report = store.scavenge().unwrap();
    assert_eq!(report.segments_rewritten, 0, "{report:?}");
    assert_eq!(active_segment(&store).base_position, first.base_position);

    // Once "kept" is truncated away too, every event of the active segment
    // is dead: it is sealed, rewritten, and its payloads leave the disk
    // with no further append.
    store.truncate_stream("kept", 1).unwrap();
    store.flush().unwrap();
    // A dry run says so, also from a read-only handle.
    assert_eq!(store.reclaimable().unwrap().active_dead_events, 51);
    let reader = Store::open_read_only(dir.path(), Options::default()).unwrap();
    assert_eq!(reader.reclaimable().unwrap().active_dead_events, 51);
    drop(reader);
    let before = snapshot(&store);
    assert!(holds(&segment_bytes(dir.path()).1, &payload("gone", 7)));
    let report = store.scavenge().unwrap();
    assert_eq!(
        (report.segments_rewritten, report.events_redacted),
        (1, 51),
        "{report:?}"
    );
    let next = active_segment(&store);
    assert!(next.base_position > first.base_position, "{next:?}");
    assert_eq!(next.events, 0);
    let bytes = segment_bytes(dir.path()).1;
    assert!(!holds(&bytes, &payload("gone", 7)));
    assert!(!holds(&bytes, &payload("kept", 0)));
    assert_eq!(snapshot(&store), before);
    // An empty active segment is not rolled again.
    assert_eq!(store.reclaimable().unwrap().active_dead_events, 0);
    let again = store.scavenge().unwrap();
    assert_eq!(again.segments_rewritten, 0);
    assert_eq!(active_segment(&store).base_position, next.base_position);
    // Appends continue at the next position, and survive a reopen.
    let late = EventData::new("Noted", payload("kept", 1));
    let appended = store
        .append("kept", ExpectedVersion::Exact(0), &[late])
        .unwrap();
    assert_eq!(appended.first_position, next.base_position);
    let after = snapshot(&store);
    store.close().unwrap();
    let reopened = Store::open(dir.path(), options()).unwrap();
    assert_eq!(snapshot(&reopened), after);
    let report = evstore::verify::verify_store(dir.path(), &mut |_| {}).unwrap();
    assert!(report.is_clean(), "{report:?}");
}

#[test]
fn a_background_scavenger_reclaims_without_being_asked_and_stops_with_the_store() {
    let dir = tempfile::tempdir().unwrap();
    let options = || {
        options()
            .background_scavenge(Some(std::time::Duration::from_millis(5)))
            .scavenge_bytes_per_second(Some(64 << 20))
    };
    let store = Store::open(dir.path(), options()).unwrap();
    assert!(store.last_background_scavenge().is_none());
    fill(&store, 0..600);
    store
        .delete_stream("s4", ExpectedVersion::Any, DeleteMode::Hard)
        .unwrap();
    store.flush().unwrap();
    let before = snapshot(&store);
    // Passes run on their own until one has removed every event of "s4"
    // from the files (the appends above sealed several segments), and
    // report what they did.
    while holds(&segment_bytes(dir.path()).1, &payload("s4", 4)) {
        std::thread::yield_now();
    }
    let pass = loop {
        if let Some(pass) = store.last_background_scavenge() {
            break pass.unwrap();
        }
        std::thread::yield_now();
    };
    assert!(pass.segments_checked > 0, "{pass:?}");
    assert_eq!(snapshot(&store), before);
    // Dropping the only handle closes the store, scavenger included: it
    // opens again at once.
    drop(store);
    let reopened = Store::open(dir.path(), options()).unwrap();
    assert_eq!(snapshot(&reopened), before);
}

#[test]
fn segments_found_clean_are_not_read_again_until_a_deletion_or_a_forget_can_change_them() {
    let dir = tempfile::tempdir().unwrap();
    let store = Store::open(dir.path(), options().crypto_shredding(true)).unwrap();
    fill(&store, 0..1000);
    store.flush().unwrap();
    // A scavenge looks only at sealed segments whose index file is in use,
    // and those are written in the background after each seal: the second
    // scavenge must not be the first to see one.
    while store
        .log_info()
        .segments
        .iter()
        .any(|s| s.sealed && !s.removed && s.index_file.is_none())
    {
        std::thread::yield_now();
    }
    let first = store.scavenge().unwrap();
    assert!(first.segments_checked > 3, "{first:?}");
    assert_eq!((first.segments_unchanged, first.segments_rewritten), (0, 0));
    let second = store.scavenge().unwrap();
    assert_eq!(
        second.segments_unchanged, second.segments_checked,
        "{second:?}"
    );

    // A deletion is a lifecycle event: every segment is read again.
    store
        .delete_stream("s4", ExpectedVersion::Any, DeleteMode::Hard)
        .unwrap();
    let after_delete = store.scavenge().unwrap();
    assert_eq!(after_delete.segments_unchanged, 0, "{after_delete:?}");
    assert!(after_delete.events_redacted >= 150, "{after_delete:?}");
    assert!(!holds(&segment_bytes(dir.path()).1, &payload("s4", 4)));

    // A forgotten key is no lifecycle event, and still counts.
    assert_eq!(store.scavenge().unwrap().segments_rewritten, 0);
    store.forget("s1").unwrap();
    let after_forget = store.scavenge().unwrap();
    assert_eq!(after_forget.segments_unchanged, 0, "{after_forget:?}");
    assert!(after_forget.events_redacted >= 150, "{after_forget:?}");

    // A rule that changes with appends: nothing is skipped.
    store
        .set_stream_metadata(
            "s0",
            ExpectedVersion::NoStream,
            StreamMetadata::new().max_count(1000),
        )
        .unwrap();
    store.scavenge().unwrap();
    let with_count = store.scavenge().unwrap();
    assert_eq!(with_count.segments_unchanged, 0, "{with_count:?}");
}

#[test]
fn a_read_only_store_reports_what_is_left_to_reclaim_right_after_the_writer_scavenged() {
    let dir = tempfile::tempdir().unwrap();
    let store = Store::open(dir.path(), options()).unwrap();
    fill(&store, 0..400);
    store
        .delete_stream("s1", ExpectedVersion::Any, DeleteMode::Soft)
        .unwrap();
    fill(&store, 400..420);
    store.flush().unwrap();
    let reader = Store::open_read_only(dir.path(), options()).unwrap();
    let before = reader.reclaimable().unwrap();
    assert!(
        before.segments_rewritten + before.segments_removed > 0 && before.events_redacted > 0,
        "{before:?}"
    );
    assert_eq!(
        store.reclaimable().unwrap().events_redacted,
        before.events_redacted
    );

    store.scavenge().unwrap();
    // Asked again at once, long before its periodic look for replaced
    // files, the reader sees the rewritten segments: nothing left to take.
    let after = reader.reclaimable().unwrap();
    assert_eq!(
        (
            after.segments_rewritten,
            after.segments_removed,
            after.events_redacted
        ),
        (0, 0, 0),
        "{after:?}"
    );
    assert_eq!(snapshot(&reader), snapshot(&store));
}

/// Events a subscription read ahead before a scavenge rewrote their
/// segment are read again from the new file: once the stream keeps them
/// again, the subscription hands out the markers the scavenge left, as
/// every read does, never the payloads it removed from the disk.
#[test]
fn a_subscription_hands_out_what_a_scavenge_left_not_what_it_had_read_ahead() {
    for batched in [false, true] {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open(dir.path(), options()).unwrap();
        fill(&store, 0..600);
        let mut subscription = store.subscribe_all(0, Filter::all());
        // It takes position 0 and holds the events after it, read ahead.
        let first = if batched {
            subscription.next_batch(1).unwrap().into_vec().remove(0)
        } else {
            subscription.try_next().unwrap().unwrap()
        };
        assert_eq!(first.position, 0);
        store
            .set_stream_metadata(
                "s0",
                ExpectedVersion::NoStream,
                StreamMetadata::new().max_count(1),
            )
            .unwrap();
        let report = store.scavenge().unwrap();
        assert!(report.events_redacted > 100, "{report:?}");
        store
            .set_stream_metadata("s0", ExpectedVersion::Exact(0), StreamMetadata::new())
            .unwrap();

        let show = |e: &RecordedEvent| {
            format!(
                "{} {}@{} {} {:?} {}",
                e.position, &*e.stream, e.version, &*e.event_type, e.payload, e.erased
            )
        };
        let rest: Vec<String> = if batched {
            std::iter::from_fn(|| {
                let batch = subscription
                    .next_batch_timeout(50, std::time::Duration::ZERO)
                    .unwrap();
                (!batch.is_empty()).then(|| batch.into_vec())
            })
            .flatten()
            .map(|e| show(&e))
            .collect()
        } else {
            std::iter::from_fn(|| subscription.try_next().unwrap())
                .map(|e| show(&e))
                .collect()
        };
        let expected: Vec<String> = store
            .read_all(1, Direction::Forward, usize::MAX)
            .unwrap()
            .iter()
            .map(show)
            .collect();
        assert_eq!(rest, expected, "batched: {batched}");
        assert!(
            rest.iter()
                .any(|e| e.contains(" s0@1 ") && e.ends_with("true")),
            "s0's second event is delivered as the scavenge's marker (batched: {batched})"
        );
    }
}
