//! Checkpoints and projections: names, durability and damage of
//! checkpoint files; a projection's delivery (every matching event, once, in
//! order) with writers appending; resuming after a stop, a close, a crash
//! on a simulated disk; the exactly-once pattern with the position kept
//! beside the handler's state; the checkpoint cadence; handler failures,
//! retries and stops during a back-off; the end of a projection when the
//! store closes.
//!
//! Nothing here asserts on timing: waits poll with generous bounds and fail
//! only if the bound passes.

use evstore::storage::{CrashPlan, SimDisk};
use evstore::{
    Direction, Durability, Error, EventData, ExpectedVersion, Filter, OnError, Options,
    ProjectionHandle, ProjectionOptions, ProjectionStart, ProjectionStats, RecordedEvent, Store,
    Uuid, Visibility,
};
use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::mpsc;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

/// How long any wait may take before the test fails: far more than any of
/// them needs, so that only a hang trips it.
const BOUND: Duration = Duration::from_secs(30);
const HOUR: Duration = Duration::from_secs(3600);

fn options() -> Options {
    Options::default().segment_size(256 << 10)
}

fn open(dir: &Path) -> Store {
    Store::open(dir, options()).unwrap()
}

fn event(event_type: &str, n: u64) -> EventData {
    EventData::new(event_type, n.to_le_bytes().to_vec())
}

/// Runs `f` on a thread of its own and returns what it returns, failing the
/// test if that takes longer than [`BOUND`].
fn within<T: Send + 'static>(what: &str, f: impl FnOnce() -> T + Send + 'static) -> T {
    let (tx, rx) = mpsc::channel();
    std::thread::spawn(move || {
        let _ = tx.send(f());
    });
    match rx.recv_timeout(BOUND) {
        Ok(value) => value,
        Err(e) => panic!("{what} did not return within {BOUND:?}: {e}"),
    }
}

/// Polls `done` until it holds, failing the test after [`BOUND`].
fn wait_for(what: &str, mut done: impl FnMut() -> bool) {
    let deadline = Instant::now() + BOUND;
    while !done() {
        assert!(Instant::now() < deadline, "{what}: not within {BOUND:?}");
        std::thread::sleep(Duration::from_millis(1));
    }
}

fn stop(handle: ProjectionHandle) -> evstore::Result<ProjectionStats> {
    within("ProjectionHandle::stop", move || handle.stop())
}

fn join(handle: ProjectionHandle) -> evstore::Result<ProjectionStats> {
    within("ProjectionHandle::join", move || handle.join())
}

/// What a handler saw: (position, id) in call order.
type Seen = Arc<Mutex<Vec<(u64, Uuid)>>>;

/// One run of a projection: the checkpoint it started from, what it
/// handled, and how it ended.
type Run = (Option<u64>, Vec<(u64, Uuid)>, ProjectionStats);

fn recorder(seen: &Seen) -> impl FnMut(&RecordedEvent) -> Result<(), evstore::HandlerError> {
    let seen = Arc::clone(seen);
    move |e| {
        seen.lock().unwrap().push((e.position, e.id));
        Ok(())
    }
}

fn positions(seen: &Seen) -> Vec<u64> {
    seen.lock().unwrap().iter().map(|(p, _)| *p).collect()
}

/// The events of the whole log that `keep` selects, as (position, id).
fn matching(store: &Store, keep: impl Fn(&RecordedEvent) -> bool) -> Vec<(u64, Uuid)> {
    store
        .read_all(0, Direction::Forward, usize::MAX)
        .unwrap()
        .iter()
        .filter(|e| keep(e))
        .map(|e| (e.position, e.id))
        .collect()
}

fn is_order(e: &RecordedEvent) -> bool {
    e.stream.starts_with("order-")
}

fn end_of(store: &Store) -> u64 {
    store.last_position().map_or(0, |p| p + 1)
}

fn checkpoint_files(dir: &Path) -> Vec<PathBuf> {
    let mut files: Vec<PathBuf> = std::fs::read_dir(dir.join(evstore::CHECKPOINTS_DIR))
        .unwrap()
        .map(|e| e.unwrap().path())
        .collect();
    files.sort();
    files
}

/// Every file under `dir`, recursively.
fn all_files(dir: &Path) -> Vec<PathBuf> {
    let mut out = Vec::new();
    let mut todo = vec![dir.to_path_buf()];
    while let Some(d) = todo.pop() {
        for entry in std::fs::read_dir(&d).unwrap() {
            let path = entry.unwrap().path();
            if path.is_dir() {
                todo.push(path);
            } else {
                out.push(path);
            }
        }
    }
    out
}

// ------------------------------------------------------------ checkpoints

#[test]
fn checkpoints_round_trip_across_reopen_with_any_valid_name() {
    let dir = tempfile::tempdir().unwrap();
    let names: Vec<String> = vec![
        "balances".into(),
        "Balances".into(),
        "BALANCES".into(),
        "Ünïcode-名前-📈".into(),
        "../escape".into(),
        "a/b\\c:d".into(),
        "with space".into(),
        ".".into(),
        "x".repeat(evstore::MAX_CHECKPOINT_NAME_LEN),
        "é".repeat(evstore::MAX_CHECKPOINT_NAME_LEN / 2),
        // Same readable prefix, different names.
        format!("{}1", "p".repeat(60)),
        format!("{}2", "p".repeat(60)),
    ];
    let value = |i: usize, round: u64| match (i, round) {
        (0, 0) => 0,
        (1, 0) => u64::MAX,
        _ => (i as u64 + 1) * 1_000 + round,
    };
    {
        let store = open(dir.path());
        for name in &names {
            assert_eq!(store.load_checkpoint(name).unwrap(), None, "{name}");
        }
        for round in 0..2 {
            for (i, name) in names.iter().enumerate() {
                store.save_checkpoint(name, value(i, round)).unwrap();
            }
            for (i, name) in names.iter().enumerate() {
                assert_eq!(
                    store.load_checkpoint(name).unwrap(),
                    Some(value(i, round)),
                    "{name:?} in round {round}"
                );
            }
        }
        store.close().unwrap();
    }
    let store = open(dir.path());
    for (i, name) in names.iter().enumerate() {
        assert_eq!(
            store.load_checkpoint(name).unwrap(),
            Some(value(i, 1)),
            "{name:?} after reopen"
        );
    }
    assert_eq!(store.load_checkpoint("never-saved").unwrap(), None);
    // One file per name, all inside the checkpoints directory, no
    // temporary files left.
    let files = checkpoint_files(dir.path());
    assert_eq!(files.len(), names.len(), "{files:?}");
    assert!(
        files
            .iter()
            .all(|p| p.extension().is_some_and(|x| x == "ckpt")),
        "{files:?}"
    );
    let stray: Vec<_> = all_files(dir.path())
        .into_iter()
        .filter(|p| p.to_string_lossy().contains("ckpt"))
        .filter(|p| p.parent() != Some(&*dir.path().join(evstore::CHECKPOINTS_DIR)))
        .collect();
    assert!(stray.is_empty(), "{stray:?}");
}

#[test]
fn invalid_checkpoint_names_are_refused_everywhere() {
    let dir = tempfile::tempdir().unwrap();
    let store = open(dir.path());
    let too_long = "y".repeat(evstore::MAX_CHECKPOINT_NAME_LEN + 1);
    // 129 two-byte characters: short in characters, too long in bytes.
    let too_long_bytes = "é".repeat(evstore::MAX_CHECKPOINT_NAME_LEN / 2 + 1);
    let names = [
        "",
        too_long.as_str(),
        too_long_bytes.as_str(),
        "line\nbreak",
        "nul\0byte",
        "tab\there",
        "\r",
        "del\u{7f}",
        "next-line\u{85}",
    ];
    let refused = |name: &str, result: evstore::Result<()>| match result {
        Err(Error::InvalidCheckpointName { name: n, reason }) => {
            assert_eq!(n, name);
            assert!(!reason.is_empty());
        }
        other => panic!("{name:?}: {other:?}"),
    };
    for name in names {
        refused(name, store.save_checkpoint(name, 7));
        refused(name, store.load_checkpoint(name).map(|_| ()));
        for start in [ProjectionStart::FromCheckpoint, ProjectionStart::At(0)] {
            let called = Arc::new(AtomicBool::new(false));
            let flag = Arc::clone(&called);
            let result =
                store.run_projection(name, ProjectionOptions::default().start(start), move |_| {
                    flag.store(true, Ordering::SeqCst);
                    Ok(())
                });
            refused(name, result.map(|_| ()));
            assert!(!called.load(Ordering::SeqCst));
        }
    }
    assert!(checkpoint_files(dir.path()).is_empty());
}

/// A checkpoint file damaged in any byte, cut short, grown or emptied makes
/// `load_checkpoint` and `run_projection` fail with `Error::Corrupted`
/// naming the file: never a silent restart from the beginning.
#[test]
fn a_damaged_checkpoint_is_an_error_never_a_restart_from_zero() {
    let dir = tempfile::tempdir().unwrap();
    let store = open(dir.path());
    for i in 0..30 {
        store
            .append("order-1", ExpectedVersion::Any, &[event("Placed", i)])
            .unwrap();
    }
    // A projection leaves its checkpoint, and another name one beside it.
    let seen: Seen = Arc::default();
    let handle = store
        .run_projection("view", ProjectionOptions::default(), recorder(&seen))
        .unwrap();
    wait_for("the projection catching up", || handle.position() == 30);
    assert_eq!(stop(handle).unwrap().position, 30);
    store.save_checkpoint("other", 5).unwrap();
    let file = checkpoint_files(dir.path())
        .into_iter()
        .find(|p| {
            p.file_name()
                .unwrap()
                .to_string_lossy()
                .starts_with("view.")
        })
        .unwrap();
    let good = std::fs::read(&file).unwrap();
    assert_eq!(store.load_checkpoint("view").unwrap(), Some(30));

    let mut damaged: Vec<(String, Vec<u8>)> = Vec::new();
    for at in 0..good.len() {
        for mask in [0x01u8, 0x80, 0xFF] {
            let mut bytes = good.clone();
            bytes[at] ^= mask;
            damaged.push((format!("byte {at} ^ {mask:#x}"), bytes));
        }
    }
    for len in 0..good.len() {
        damaged.push((format!("cut to {len} bytes"), good[..len].to_vec()));
    }
    let mut longer = good.clone();
    longer.push(0);
    damaged.push(("one byte longer".into(), longer));

    for (what, bytes) in &damaged {
        std::fs::write(&file, bytes).unwrap();
        match store.load_checkpoint("view") {
            Err(Error::Corrupted { file: f, .. }) => assert_eq!(f, file, "{what}"),
            other => panic!("{what}: load_checkpoint returned {other:?}"),
        }
        let called = Arc::new(AtomicBool::new(false));
        let flag = Arc::clone(&called);
        let result = store.run_projection("view", ProjectionOptions::default(), move |_| {
            flag.store(true, Ordering::SeqCst);
            Ok(())
        });
        match result {
            Err(Error::Corrupted { file: f, .. }) => assert_eq!(f, file, "{what}"),
            Err(e) => panic!("{what}: run_projection failed with {e:?}"),
            Ok(handle) => {
                let ended = stop(handle);
                panic!("{what}: the projection started anyway and ended with {ended:?}")
            }
        }
        assert!(!called.load(Ordering::SeqCst), "{what}");
        // The other checkpoint is unaffected.
        assert_eq!(store.load_checkpoint("other").unwrap(), Some(5), "{what}");
    }
    // A file holding another name's checkpoint is not taken for this one.
    let other = checkpoint_files(dir.path())
        .into_iter()
        .find(|p| {
            p.file_name()
                .unwrap()
                .to_string_lossy()
                .starts_with("other.")
        })
        .unwrap();
    std::fs::copy(&other, &file).unwrap();
    assert!(matches!(
        store.load_checkpoint("view"),
        Err(Error::Corrupted { .. })
    ));
    // Saving over the damage repairs it, and the projection resumes there.
    store.save_checkpoint("view", 30).unwrap();
    assert_eq!(store.load_checkpoint("view").unwrap(), Some(30));
    store
        .append("order-1", ExpectedVersion::Any, &[event("Placed", 30)])
        .unwrap();
    let handle = store
        .run_projection("view", ProjectionOptions::default(), recorder(&seen))
        .unwrap();
    wait_for("the restarted projection", || handle.position() == 31);
    stop(handle).unwrap();
    assert_eq!(positions(&seen), (0..31).collect::<Vec<_>>());
}

// ---------------------------------------------------------------- delivery

/// Three writers append to `order-` and `user-` streams while a projection
/// of the `order-` streams runs: it handles each of their events once, in
/// log order; after the last one it stops with its checkpoint just past
/// the end, and its counters agree with what it did.
#[test]
fn a_projection_handles_every_matching_event_once_in_order_while_writers_append() {
    let dir = tempfile::tempdir().unwrap();
    let store = open(dir.path());
    let every = 50;
    let seen: Seen = Arc::default();
    let handle = store
        .run_projection(
            "orders",
            ProjectionOptions::default()
                .filter(Filter::stream_prefix("order-"))
                .checkpoint_every(every)
                .checkpoint_interval(HOUR),
            recorder(&seen),
        )
        .unwrap();
    let writers: Vec<_> = (0..3u64)
        .map(|w| {
            let store = store.clone();
            std::thread::spawn(move || {
                for i in 0..150u64 {
                    let n = (i % 3 + 1) as usize;
                    let events: Vec<_> =
                        (0..n).map(|k| event("Placed", i * 10 + k as u64)).collect();
                    store
                        .append(
                            &format!("order-{w}-{}", i % 5),
                            ExpectedVersion::Any,
                            &events,
                        )
                        .unwrap();
                    store
                        .append(
                            &format!("user-{w}"),
                            ExpectedVersion::Any,
                            &[event("Joined", i)],
                        )
                        .unwrap();
                }
            })
        })
        .collect();
    for writer in writers {
        writer.join().unwrap();
    }
    // A last matching event, so that the end of the log is known to be
    // handled once it is.
    let last = store
        .append(
            "order-final",
            ExpectedVersion::NoStream,
            &[event("Placed", 0)],
        )
        .unwrap()
        .last_position;
    wait_for("the last event handled", || {
        seen.lock().unwrap().last().is_some_and(|(p, _)| *p == last)
    });
    let stats = stop(handle).unwrap();
    let expected = matching(&store, is_order);
    assert_eq!(*seen.lock().unwrap(), expected);
    let handled = expected.len() as u64;
    assert_eq!(stats.events_handled, handled);
    assert_eq!(stats.retries, 0);
    assert_eq!(stats.position, last + 1);
    assert_eq!(end_of(&store), last + 1);
    assert_eq!(store.load_checkpoint("orders").unwrap(), Some(last + 1));
    // One save per `every` events, and perhaps one on the way out.
    assert!(
        (handled / every..=handled / every + 1).contains(&stats.checkpoints_saved),
        "{stats:?} after {handled} events"
    );
}

/// Four runs of one projection with writers appending during each: two
/// stopped while the writers are still going, two ended by closing the
/// store. Each run starts exactly where the previous one left its
/// checkpoint, so over all of them each matching event is handled exactly
/// once, and no run handles anything below its starting checkpoint.
#[test]
fn a_restarted_projection_resumes_from_its_checkpoint_across_stops_and_reopens() {
    let dir = tempfile::tempdir().unwrap();
    let mut runs: Vec<Run> = Vec::new();
    let mut total = 0u64;
    for run in 0..4u64 {
        let store = open(dir.path());
        let start = store.load_checkpoint("resume").unwrap();
        if let Some((_, _, previous)) = runs.last() {
            assert_eq!(start, Some(previous.position), "run {run}");
        } else {
            assert_eq!(start, None);
        }
        let seen: Seen = Arc::default();
        let handle = store
            .run_projection(
                "resume",
                ProjectionOptions::default()
                    .filter(Filter::event_types(["Placed"]))
                    .checkpoint_every(7)
                    .checkpoint_interval(HOUR),
                recorder(&seen),
            )
            .unwrap();
        let writer = {
            let store = store.clone();
            std::thread::spawn(move || {
                for i in 0..120u64 {
                    let kind = if i % 3 == 0 { "Cancelled" } else { "Placed" };
                    store
                        .append(
                            &format!("order-{}", i % 7),
                            ExpectedVersion::Any,
                            &[event(kind, i)],
                        )
                        .unwrap();
                }
            })
        };
        total += 120;
        let stats = if run % 2 == 0 {
            // Stop part-way, while the writer is still appending.
            wait_for("some events handled", || seen.lock().unwrap().len() >= 20);
            let stats = stop(handle).unwrap();
            writer.join().unwrap();
            store.close().unwrap();
            stats
        } else {
            // The writer finishes, the store closes under the projection,
            // which handles what was written before it ends.
            writer.join().unwrap();
            let end = end_of(&store);
            within("Store::close", move || store.close()).unwrap();
            let stats = join(handle).unwrap();
            assert_eq!(stats.position, end, "run {run}");
            stats
        };
        let seen = seen.lock().unwrap().clone();
        assert_eq!(stats.events_handled, seen.len() as u64, "run {run}");
        runs.push((start, seen, stats));
    }
    let store = open(dir.path());
    assert_eq!(end_of(&store), total);
    let expected = matching(&store, |e| &*e.event_type == "Placed");
    let mut all = Vec::new();
    for (run, (start, seen, stats)) in runs.iter().enumerate() {
        let from = start.unwrap_or(0);
        // Exactly the matching events from the start to where it stopped.
        let want: Vec<_> = expected
            .iter()
            .copied()
            .filter(|(p, _)| (from..stats.position).contains(p))
            .collect();
        assert_eq!(*seen, want, "run {run} from {from}");
        all.extend(seen.iter().copied());
    }
    assert_eq!(all, expected, "the runs together");
    let last = runs.last().map(|(_, _, stats)| stats.position);
    assert_eq!(store.load_checkpoint("resume").unwrap(), last);
}

/// A stop that arrives while the projection is part-way through the
/// events it took together: the rest are not handled, and the checkpoint
/// is at the first of them, so a restart handles exactly those.
#[test]
fn a_stop_between_two_events_taken_together_leaves_the_checkpoint_at_the_first_unhandled() {
    let dir = tempfile::tempdir().unwrap();
    let store = open(dir.path());
    for i in 0..50u64 {
        store
            .append(
                &format!("order-{}", i % 3),
                ExpectedVersion::Any,
                &[event("Placed", i)],
            )
            .unwrap();
    }
    let (reached, wait_reached) = mpsc::channel::<()>();
    let (release, released) = mpsc::channel::<()>();
    let seen: Seen = Arc::default();
    let mut record = recorder(&seen);
    let handle = store
        .run_projection(
            "halfway",
            ProjectionOptions::default()
                .checkpoint_interval(HOUR)
                .checkpoint_every(1000),
            move |e: &RecordedEvent| {
                record(e)?;
                if e.position == 10 {
                    // Hold the projection inside event 10 until the stop
                    // has been requested.
                    reached.send(()).unwrap();
                    released.recv().unwrap();
                }
                Ok(())
            },
        )
        .unwrap();
    wait_reached.recv_timeout(Duration::from_secs(60)).unwrap();
    handle.request_stop();
    release.send(()).unwrap();
    let stats = stop(handle).unwrap();
    assert_eq!(positions(&seen), (0..=10).collect::<Vec<u64>>());
    assert_eq!(stats.events_handled, 11);
    assert_eq!(stats.position, 11);
    assert_eq!(store.load_checkpoint("halfway").unwrap(), Some(11));

    let rest: Seen = Arc::default();
    let handle = store
        .run_projection("halfway", ProjectionOptions::default(), recorder(&rest))
        .unwrap();
    wait_for("the rest handled", || rest.lock().unwrap().len() >= 39);
    stop(handle).unwrap();
    assert_eq!(positions(&rest), (11..50).collect::<Vec<u64>>());
}

// ------------------------------------------------------------------ crashes

fn sim_options(disk: &SimDisk) -> Options {
    Options::default()
        .segment_size(64 << 10)
        .background_preallocation(false)
        .background_index_writes(false)
        .storage(Arc::new(disk.clone()))
}

/// One run of a projection on a simulated disk that loses power inside the
/// handler, when `crash_after` events have been handled.
struct CrashedRun {
    /// The checkpoint the run started from.
    start: Option<u64>,
    /// The events handled before the power loss, then the one being
    /// handled when it happened.
    handled: Vec<(u64, Uuid)>,
    crashed_on: (u64, Uuid),
    /// The disk as the power loss left it.
    image: SimDisk,
}

fn crashed_run(disk: &SimDisk, name: &str, every: u64, crash_after: usize) -> CrashedRun {
    let store = Store::open("/sim/store", sim_options(disk)).unwrap();
    let start = store.load_checkpoint(name).unwrap();
    let stop_writing = Arc::new(AtomicBool::new(false));
    let writer = {
        let store = store.clone();
        let stop_writing = Arc::clone(&stop_writing);
        std::thread::spawn(move || {
            let mut i = 0u64;
            while !stop_writing.load(Ordering::SeqCst) && i < 20_000 {
                let stream = if i % 3 == 1 {
                    "user-1".to_string()
                } else {
                    format!("order-{}", i % 5)
                };
                if store
                    .append(&stream, ExpectedVersion::Any, &[event("E", i)])
                    .is_err()
                {
                    break;
                }
                i += 1;
            }
        })
    };
    let handled: Seen = Arc::default();
    let (tx, rx) = mpsc::channel();
    let handler = {
        let handled = Arc::clone(&handled);
        let disk = disk.clone();
        let mut tx = Some(tx);
        move |e: &RecordedEvent| -> Result<(), evstore::HandlerError> {
            let mut handled = handled.lock().unwrap();
            let Some(sender) = &tx else {
                // Past the power loss: this process is gone.
                return Ok(());
            };
            if handled.len() == crash_after {
                let _ = sender.send(((e.position, e.id), disk.crash(CrashPlan::LoseAll)));
                tx = None;
                return Ok(());
            }
            handled.push((e.position, e.id));
            Ok(())
        }
    };
    let handle = store
        .run_projection(
            name,
            ProjectionOptions::default()
                .filter(Filter::stream_prefix("order-"))
                .checkpoint_every(every)
                .checkpoint_interval(HOUR),
            handler,
        )
        .unwrap();
    let (crashed_on, image) = rx.recv_timeout(BOUND).expect("the crash");
    stop_writing.store(true, Ordering::SeqCst);
    writer.join().unwrap();
    let _ = stop(handle);
    drop(store);
    let handled = handled.lock().unwrap().clone();
    CrashedRun {
        start,
        handled,
        crashed_on,
        image,
    }
}

/// A projection on a simulated disk, with a writer appending, loses power
/// in its handler after some events, three times over, each run starting on
/// the disk the previous power loss left. The checkpoint each run finds is
/// the last one saved before the power loss (saves come every `every`
/// events); no run handles anything below it; every event a run handled
/// survived (it only sees durable ones); and a last, clean run finishes the
/// job, so that every matching event was handled at least once, a second
/// time only after the checkpoint the restart began from.
#[test]
fn a_projection_killed_by_a_power_loss_resumes_at_least_once() {
    let name = "killed";
    let every = 5u64;
    let mut disk = SimDisk::new();
    {
        // Some history before the first run.
        let store = Store::open("/sim/store", sim_options(&disk)).unwrap();
        for i in 0..40u64 {
            store
                .append(
                    &format!("order-{}", i % 4),
                    ExpectedVersion::Any,
                    &[event("E", i)],
                )
                .unwrap();
        }
    }
    let mut runs = Vec::new();
    for crash_after in [23usize, 4, 31] {
        let run = crashed_run(&disk, name, every, crash_after);
        assert_eq!(run.handled.len(), crash_after);
        let store = Store::open("/sim/store", sim_options(&run.image)).unwrap();
        let loaded = store.load_checkpoint(name).unwrap();
        let saves = crash_after / every as usize;
        if saves == 0 {
            assert_eq!(loaded, run.start, "{crash_after}: nothing was saved");
        } else {
            // The save after the `saves * every`-th event: past that event,
            // at most at the next one handled.
            let after = run.handled[saves * every as usize - 1].0;
            let next = run
                .handled
                .get(saves * every as usize)
                .map_or(run.crashed_on.0, |(p, _)| *p);
            let loaded = loaded.expect("a checkpoint");
            assert!(
                loaded > after && loaded <= next,
                "{crash_after}: loaded {loaded}, saved after {after}, next {next}"
            );
        }
        drop(store);
        disk = run.image.clone();
        runs.push(run);
    }
    // A clean run to the end.
    let store = Store::open("/sim/store", sim_options(&disk)).unwrap();
    let last_start = store.load_checkpoint(name).unwrap();
    let seen: Seen = Arc::default();
    let handle = store
        .run_projection(
            name,
            ProjectionOptions::default().filter(Filter::stream_prefix("order-")),
            recorder(&seen),
        )
        .unwrap();
    let end = end_of(&store);
    wait_for("the final run catching up", || handle.position() >= end);
    stop(handle).unwrap();
    let expected = matching(&store, is_order);
    let ids: BTreeMap<u64, Uuid> = expected.iter().copied().collect();
    let mut handled_at: BTreeMap<u64, usize> = BTreeMap::new();
    let mut restart_points = Vec::new();
    for (k, run) in runs.iter().enumerate() {
        let from = run.start.unwrap_or(0);
        // Exactly the matching events from its checkpoint on, up to the
        // one it was handling: all of them survived, none was skipped.
        let want: Vec<_> = expected
            .iter()
            .copied()
            .filter(|(p, _)| *p >= from)
            .take(run.handled.len() + 1)
            .collect();
        assert_eq!(run.handled[..], want[..run.handled.len()], "run {k}");
        assert_eq!(run.crashed_on, want[run.handled.len()], "run {k}");
        for (p, _) in &run.handled {
            *handled_at.entry(*p).or_default() += 1;
        }
        restart_points.push((from, run.handled.last().map(|(p, _)| *p)));
    }
    let final_from = last_start.unwrap_or(0);
    let want: Vec<_> = expected
        .iter()
        .copied()
        .filter(|(p, _)| *p >= final_from)
        .collect();
    assert_eq!(*seen.lock().unwrap(), want, "the final run");
    for (p, id) in seen.lock().unwrap().iter() {
        assert_eq!(ids.get(p), Some(id));
        *handled_at.entry(*p).or_default() += 1;
    }
    restart_points.push((final_from, None));
    // At least once: every matching event.
    let missing: Vec<_> = ids.keys().filter(|p| !handled_at.contains_key(p)).collect();
    assert!(missing.is_empty(), "never handled: {missing:?}");
    // More than once only between a restart's checkpoint and the last event
    // the run before it handled.
    for (&p, &count) in &handled_at {
        if count > 1 {
            let explained = restart_points.windows(2).any(|w| {
                let (_, previous_last) = w[0];
                let (restart, _) = w[1];
                previous_last.is_some_and(|last| (restart..=last).contains(&p))
            });
            assert!(explained, "{p} handled {count} times: {restart_points:?}");
        }
    }
    assert!(
        handled_at.values().any(|&c| c > 1),
        "no crash fell between saves: the test lost its point"
    );
}

/// Buffered appends in a `Sync` store are written but not durable until a
/// later sync: a projection (durable visibility by default) stops before
/// them, so the power loss that takes them takes nothing it handled, and
/// its checkpoint stays inside the recovered log. One following written
/// events sees them at once.
#[test]
fn only_durable_events_reach_a_projection_by_default() {
    let disk = SimDisk::new();
    let store = Store::open("/sim/store", sim_options(&disk).flush_interval(HOUR)).unwrap();
    for i in 0..10 {
        store
            .append("order-1", ExpectedVersion::Any, &[event("E", i)])
            .unwrap();
    }
    for i in 10..20 {
        store
            .append_with_durability(
                "order-1",
                ExpectedVersion::Any,
                &[event("E", i)],
                evstore::Durability::Buffered,
            )
            .unwrap();
    }
    let written: Seen = Arc::default();
    let handle = store
        .run_projection(
            "written",
            ProjectionOptions::default().visibility(evstore::Visibility::Written),
            recorder(&written),
        )
        .unwrap();
    wait_for("the written events", || written.lock().unwrap().len() == 20);
    stop(handle).unwrap();
    let durable: Seen = Arc::default();
    let handle = store
        .run_projection("durable", ProjectionOptions::default(), recorder(&durable))
        .unwrap();
    wait_for("the durable events", || handle.position() >= 10);
    let stats = stop(handle).unwrap();
    let image = disk.crash(CrashPlan::LoseAll);
    assert_eq!(stats.position, 10);
    assert_eq!(positions(&durable), (0..10).collect::<Vec<_>>());
    drop(store);
    let store = Store::open("/sim/store", sim_options(&image)).unwrap();
    assert_eq!(end_of(&store), 10);
    assert_eq!(store.load_checkpoint("durable").unwrap(), Some(10));
}

// ------------------------------------------------------------ exactly once

/// The handler's own state: what it applied and the position of the next
/// event, changed together under one lock (one transaction).
#[derive(Debug, Default)]
struct Ledger {
    applied: Vec<u64>,
    total: u64,
    next: u64,
}

/// Five runs with a writer appending, each started at the position the
/// handler committed with its state: stopped part-way, closed under it, and
/// failing on an event (which is then not committed, and is the first the
/// next run applies). The effects are exactly once over all runs, and no
/// checkpoint file is written.
#[test]
fn exactly_once_effects_with_the_position_committed_beside_the_state() {
    let dir = tempfile::tempdir().unwrap();
    let ledger = Arc::new(Mutex::new(Ledger::default()));
    let fail_once_at = Arc::new(AtomicU64::new(u64::MAX));
    let handler = |ledger: &Arc<Mutex<Ledger>>, fail_once_at: &Arc<AtomicU64>| {
        let ledger = Arc::clone(ledger);
        let fail_once_at = Arc::clone(fail_once_at);
        move |e: &RecordedEvent| -> Result<(), evstore::HandlerError> {
            if fail_once_at
                .compare_exchange(e.position, u64::MAX, Ordering::SeqCst, Ordering::SeqCst)
                .is_ok()
            {
                return Err(format!("cannot apply {}", e.position).into());
            }
            let amount = u64::from_le_bytes(e.payload[..8].try_into().unwrap());
            let mut ledger = ledger.lock().unwrap();
            if e.position < ledger.next {
                return Err(format!("{} applied twice", e.position).into());
            }
            ledger.applied.push(e.position);
            ledger.total += amount;
            ledger.next = e.position + 1;
            Ok(())
        }
    };
    let options = |start: u64| {
        ProjectionOptions::default()
            .filter(Filter::stream_prefix("account-"))
            .checkpoint_every(3)
            .checkpoint_interval(Duration::from_millis(1))
            .start(ProjectionStart::At(start))
    };
    let mut written = 0u64;
    for run in 0..5u64 {
        let store = open(dir.path());
        assert_eq!(end_of(&store), written);
        // The writer's event `i` lands at `written + i`; the 41st is an
        // account event.
        let base = written;
        let target = base + 41;
        if run % 2 == 0 && run > 0 {
            fail_once_at.store(target, Ordering::SeqCst);
        }
        let start = ledger.lock().unwrap().next;
        let handle = store
            .run_projection("ledger", options(start), handler(&ledger, &fail_once_at))
            .unwrap();
        let writer = {
            let store = store.clone();
            std::thread::spawn(move || {
                for i in 0..80u64 {
                    let stream = if i % 4 == 3 { "audit" } else { "account-1" };
                    store
                        .append(
                            stream,
                            ExpectedVersion::Any,
                            &[event("Deposited", base + i)],
                        )
                        .unwrap();
                }
            })
        };
        written += 80;
        match run {
            0 | 3 => {
                wait_for("some events applied", || {
                    ledger.lock().unwrap().next > start + 10
                });
                let stats = stop(handle).unwrap();
                assert_eq!(stats.checkpoints_saved, 0, "run {run}: {stats:?}");
                writer.join().unwrap();
                store.close().unwrap();
            }
            1 => {
                writer.join().unwrap();
                within("Store::close", move || store.close()).unwrap();
                let stats = join(handle).unwrap();
                assert_eq!(stats.checkpoints_saved, 0, "run {run}: {stats:?}");
                assert_eq!(stats.position, written);
            }
            _ => {
                match join(handle) {
                    Err(Error::Projection { position, .. }) => {
                        assert_eq!(position, target, "run {run}");
                        assert_eq!(ledger.lock().unwrap().next, target, "run {run}");
                    }
                    other => panic!("run {run}: {other:?}"),
                }
                writer.join().unwrap();
                store.close().unwrap();
            }
        }
    }
    // A last run to the end.
    let store = open(dir.path());
    let start = ledger.lock().unwrap().next;
    let handle = store
        .run_projection("ledger", options(start), handler(&ledger, &fail_once_at))
        .unwrap();
    let want = matching(&store, is_account);
    let last = want.last().unwrap().0;
    wait_for("the last run", || ledger.lock().unwrap().next > last);
    assert_eq!(stop(handle).unwrap().checkpoints_saved, 0);
    let ledger = ledger.lock().unwrap();
    let want_positions: Vec<u64> = want.iter().map(|(p, _)| *p).collect();
    assert_eq!(ledger.applied, want_positions);
    let want_total: u64 = store
        .read_all(0, Direction::Forward, usize::MAX)
        .unwrap()
        .iter()
        .filter(|e| is_account(e))
        .map(|e| u64::from_le_bytes(e.payload[..8].try_into().unwrap()))
        .sum();
    assert_eq!(ledger.total, want_total);
    assert_eq!(store.load_checkpoint("ledger").unwrap(), None);
    assert!(checkpoint_files(dir.path()).is_empty());
}

fn is_account(e: &RecordedEvent) -> bool {
    e.stream.starts_with("account-")
}

// ------------------------------------------------------------------ cadence

/// With `checkpoint_every(1000)` and an hour's interval, 2,500 events
/// handled and then a stop: saves after the 1,000th and the 2,000th event,
/// seen by the handler as it goes, and one on the way out.
#[test]
fn checkpoint_every_saves_after_that_many_events() {
    let dir = tempfile::tempdir().unwrap();
    let store = open(dir.path());
    for chunk in 0..30u64 {
        let events: Vec<_> = (0..100).map(|i| event("Tick", chunk * 100 + i)).collect();
        store
            .append("clock", ExpectedVersion::Any, &events)
            .unwrap();
    }
    let observed = Arc::new(Mutex::new(Vec::new()));
    let (reached, reached_rx) = mpsc::channel();
    let (go, go_rx) = mpsc::channel::<()>();
    let handler = {
        let store = store.clone();
        let observed = Arc::clone(&observed);
        let go_rx = Mutex::new(go_rx);
        move |e: &RecordedEvent| -> Result<(), evstore::HandlerError> {
            observed
                .lock()
                .unwrap()
                .push((e.position, store.load_checkpoint("cadence").unwrap()));
            if e.position == 2_499 {
                reached.send(()).unwrap();
                go_rx.lock().unwrap().recv_timeout(BOUND).unwrap();
            }
            Ok(())
        }
    };
    let handle = store
        .run_projection(
            "cadence",
            ProjectionOptions::default()
                .checkpoint_every(1000)
                .checkpoint_interval(HOUR),
            handler,
        )
        .unwrap();
    reached_rx.recv_timeout(BOUND).unwrap();
    handle.request_stop();
    go.send(()).unwrap();
    let stats = stop(handle).unwrap();
    let observed = observed.lock().unwrap();
    assert_eq!(observed.len(), 2_500);
    for (i, (position, checkpoint)) in observed.iter().enumerate() {
        assert_eq!(*position, i as u64);
        let want = match i {
            0..=999 => None,
            1000..=1999 => Some(1000),
            _ => Some(2000),
        };
        assert_eq!(*checkpoint, want, "seen while handling {i}");
    }
    assert_eq!(stats.events_handled, 2_500);
    assert_eq!(stats.checkpoints_saved, 3, "{stats:?}");
    assert_eq!(stats.position, 2_500);
    assert_eq!(store.load_checkpoint("cadence").unwrap(), Some(2_500));
}

/// With a count it never reaches and a short interval, a checkpoint is
/// saved while the projection waits for events, and again after more come.
#[test]
fn checkpoint_interval_saves_while_the_projection_idles() {
    let dir = tempfile::tempdir().unwrap();
    let store = open(dir.path());
    for i in 0..10 {
        store
            .append("s", ExpectedVersion::Any, &[event("E", i)])
            .unwrap();
    }
    let seen: Seen = Arc::default();
    let handle = store
        .run_projection(
            "idle",
            ProjectionOptions::default()
                .checkpoint_every(u64::MAX)
                .checkpoint_interval(Duration::from_millis(20)),
            recorder(&seen),
        )
        .unwrap();
    wait_for("a checkpoint at 10", || {
        store.load_checkpoint("idle").unwrap() == Some(10)
    });
    assert!(!handle.is_finished());
    for i in 10..15 {
        store
            .append("s", ExpectedVersion::Any, &[event("E", i)])
            .unwrap();
    }
    wait_for("a checkpoint at 15", || {
        store.load_checkpoint("idle").unwrap() == Some(15)
    });
    assert!(!handle.is_finished());
    let stats = stop(handle).unwrap();
    assert!(stats.checkpoints_saved >= 2, "{stats:?}");
    assert_eq!((stats.events_handled, stats.position), (15, 15));
    assert_eq!(positions(&seen), (0..15).collect::<Vec<_>>());
}

// ------------------------------------------------------------------ errors

fn twenty_orders(store: &Store) {
    for i in 0..20 {
        store
            .append(
                &format!("order-{}", i % 3),
                ExpectedVersion::Any,
                &[event("E", i)],
            )
            .unwrap();
    }
}

/// `OnError::Stop`: the handler fails on the event at 13, with a save due
/// at 10; join reports the failure at 13, the checkpoint is 13 (not 10,
/// not 14), and a restart begins with that event.
#[test]
fn a_failing_handler_stops_the_projection_with_the_checkpoint_at_the_failed_event() {
    let dir = tempfile::tempdir().unwrap();
    let store = open(dir.path());
    twenty_orders(&store);
    let seen: Seen = Arc::default();
    let handler = {
        let seen = Arc::clone(&seen);
        move |e: &RecordedEvent| -> Result<(), evstore::HandlerError> {
            if e.position == 13 {
                return Err("the read model refused event 13".into());
            }
            seen.lock().unwrap().push((e.position, e.id));
            Ok(())
        }
    };
    let options = ProjectionOptions::default()
        .checkpoint_every(10)
        .checkpoint_interval(HOUR)
        .on_error(OnError::Stop);
    let handle = store
        .run_projection("fails", options.clone(), handler)
        .unwrap();
    match join(handle) {
        Err(Error::Projection {
            name,
            position,
            source,
        }) => {
            assert_eq!((name.as_str(), position), ("fails", 13));
            assert!(source.to_string().contains("refused event 13"), "{source}");
        }
        other => panic!("{other:?}"),
    }
    assert_eq!(positions(&seen), (0..13).collect::<Vec<_>>());
    assert_eq!(store.load_checkpoint("fails").unwrap(), Some(13));
    let again: Seen = Arc::default();
    let handle = store
        .run_projection("fails", options, recorder(&again))
        .unwrap();
    wait_for("the restart", || handle.position() == 20);
    let stats = stop(handle).unwrap();
    assert_eq!(positions(&again), (13..20).collect::<Vec<_>>());
    assert_eq!(stats.events_handled, 7);
}

fn retry(max_attempts: Option<u32>, first: Duration, max: Duration) -> OnError {
    OnError::Retry {
        first_delay: first,
        max_delay: max,
        max_attempts,
    }
}

/// A handler that fails on one event `failures` times, then succeeds.
fn flaky(
    at: u64,
    failures: u64,
    seen: &Seen,
    calls_at: &Arc<AtomicU64>,
) -> impl FnMut(&RecordedEvent) -> Result<(), evstore::HandlerError> {
    let seen = Arc::clone(seen);
    let calls_at = Arc::clone(calls_at);
    move |e| {
        if e.position == at && calls_at.fetch_add(1, Ordering::SeqCst) < failures {
            return Err(format!("transient failure at {at}").into());
        }
        seen.lock().unwrap().push((e.position, e.id));
        Ok(())
    }
}

#[test]
fn retries_carry_a_handler_over_transient_failures() {
    let dir = tempfile::tempdir().unwrap();
    let store = open(dir.path());
    twenty_orders(&store);
    let seen: Seen = Arc::default();
    let calls_at = Arc::new(AtomicU64::new(0));
    let handle = store
        .run_projection(
            "flaky",
            ProjectionOptions::default().on_error(retry(
                Some(3),
                Duration::from_millis(1),
                Duration::from_millis(4),
            )),
            flaky(7, 2, &seen, &calls_at),
        )
        .unwrap();
    wait_for("all handled", || seen.lock().unwrap().len() == 20);
    let stats = stop(handle).unwrap();
    assert_eq!(positions(&seen), (0..20).collect::<Vec<_>>());
    assert_eq!(calls_at.load(Ordering::SeqCst), 3);
    assert_eq!((stats.events_handled, stats.retries), (20, 2), "{stats:?}");
    assert_eq!(store.load_checkpoint("flaky").unwrap(), Some(20));
}

#[test]
fn retries_give_up_after_max_attempts() {
    let dir = tempfile::tempdir().unwrap();
    let store = open(dir.path());
    twenty_orders(&store);
    let seen: Seen = Arc::default();
    let calls_at = Arc::new(AtomicU64::new(0));
    let handle = store
        .run_projection(
            "hopeless",
            ProjectionOptions::default().on_error(retry(
                Some(3),
                Duration::from_millis(1),
                Duration::from_millis(4),
            )),
            flaky(7, u64::MAX, &seen, &calls_at),
        )
        .unwrap();
    match join(handle) {
        Err(Error::Projection {
            name,
            position,
            source,
        }) => {
            assert_eq!((name.as_str(), position), ("hopeless", 7));
            assert!(
                source.to_string().contains("transient failure at 7"),
                "{source}"
            );
        }
        other => panic!("{other:?}"),
    }
    assert_eq!(calls_at.load(Ordering::SeqCst), 3);
    assert_eq!(positions(&seen), (0..7).collect::<Vec<_>>());
    assert_eq!(store.load_checkpoint("hopeless").unwrap(), Some(7));
}

/// A back-off too long for a deadline (`Duration::MAX`) waits for a stop
/// request, which ends it like any other back-off: no panic, the
/// checkpoint before the event that failed.
#[test]
fn a_retry_back_off_of_duration_max_waits_for_a_stop() {
    let dir = tempfile::tempdir().unwrap();
    let store = open(dir.path());
    twenty_orders(&store);
    let seen: Seen = Arc::default();
    let calls_at = Arc::new(AtomicU64::new(0));
    let handle = store
        .run_projection(
            "forever",
            ProjectionOptions::default().on_error(retry(None, Duration::MAX, Duration::MAX)),
            flaky(5, u64::MAX, &seen, &calls_at),
        )
        .unwrap();
    wait_for("the first failure", || calls_at.load(Ordering::SeqCst) == 1);
    assert!(!handle.is_finished());
    let stats = stop(handle).unwrap();
    assert_eq!(calls_at.load(Ordering::SeqCst), 1);
    assert_eq!(positions(&seen), (0..5).collect::<Vec<_>>());
    assert_eq!(
        (stats.events_handled, stats.retries, stats.position),
        (5, 0, 5),
        "{stats:?}"
    );
    assert_eq!(store.load_checkpoint("forever").unwrap(), Some(5));
}

/// A stop requested while the projection waits an hour to retry ends it
/// at once, with the checkpoint before the event that failed.
#[test]
fn a_stop_during_a_retry_back_off_returns_promptly() {
    let dir = tempfile::tempdir().unwrap();
    let store = open(dir.path());
    twenty_orders(&store);
    let seen: Seen = Arc::default();
    let calls_at = Arc::new(AtomicU64::new(0));
    let handle = store
        .run_projection(
            "backoff",
            ProjectionOptions::default().on_error(retry(None, HOUR, HOUR)),
            flaky(5, u64::MAX, &seen, &calls_at),
        )
        .unwrap();
    wait_for("the first failure", || calls_at.load(Ordering::SeqCst) == 1);
    handle.request_stop();
    let stats = join(handle).unwrap();
    assert_eq!(calls_at.load(Ordering::SeqCst), 1);
    assert_eq!(positions(&seen), (0..5).collect::<Vec<_>>());
    assert_eq!(
        (stats.events_handled, stats.retries, stats.position),
        (5, 0, 5),
        "{stats:?}"
    );
    assert_eq!(store.load_checkpoint("backoff").unwrap(), Some(5));
}

// -------------------------------------------------------------------- close

/// Closing the store ends a projection waiting for events: join returns its
/// stats, and the checkpoint is where it got to.
#[test]
fn join_returns_when_the_store_is_closed() {
    let dir = tempfile::tempdir().unwrap();
    let store = open(dir.path());
    twenty_orders(&store);
    let seen: Seen = Arc::default();
    let handle = store
        .run_projection(
            "until-close",
            ProjectionOptions::default().checkpoint_interval(HOUR),
            recorder(&seen),
        )
        .unwrap();
    wait_for("the projection idling", || handle.position() == 20);
    assert!(!handle.is_finished());
    within("Store::close", move || store.close()).unwrap();
    let stats = join(handle).unwrap();
    assert_eq!((stats.events_handled, stats.position), (20, 20));
    let store = open(dir.path());
    assert_eq!(store.load_checkpoint("until-close").unwrap(), Some(20));
    // A projection started on a closed store ends at once, after the events
    // there are.
    let other = store.clone();
    other.close().unwrap();
    let late: Seen = Arc::default();
    let handle = store
        .run_projection("late", ProjectionOptions::default(), recorder(&late))
        .unwrap();
    let stats = join(handle).unwrap();
    assert_eq!((stats.events_handled, stats.position), (20, 20));
    let unique: BTreeSet<u64> = positions(&late).into_iter().collect();
    assert_eq!(unique.len(), 20);
}

// ------------------------------------------------------------ edge cases

#[test]
fn an_unbounded_checkpoint_interval_is_accepted() {
    let dir = tempfile::tempdir().unwrap();
    let store = open(dir.path());
    store
        .append("order-1", ExpectedVersion::Any, &[event("Placed", 1)])
        .unwrap();
    let seen = Seen::default();
    let handle = store
        .run_projection(
            "forever",
            ProjectionOptions::default().checkpoint_interval(Duration::MAX),
            recorder(&seen),
        )
        .unwrap();
    wait_for("the event handled", || positions(&seen) == [0]);
    let stats = stop(handle).unwrap();
    assert_eq!(stats.position, 1);
    assert_eq!(store.load_checkpoint("forever").unwrap(), Some(1));
}

#[test]
fn the_position_moves_past_skipped_events_while_idle() {
    let dir = tempfile::tempdir().unwrap();
    let store = open(dir.path());
    store
        .append("order-1", ExpectedVersion::Any, &[event("Placed", 1)])
        .unwrap();
    let users: Vec<_> = (0..5).map(|n| event("Joined", n)).collect();
    store
        .append("user-1", ExpectedVersion::Any, &users)
        .unwrap();
    store.save_checkpoint("orders", 1).unwrap();
    let handle = store
        .run_projection(
            "orders",
            ProjectionOptions::default().filter(Filter::stream_prefix("order-")),
            |_| Ok(()),
        )
        .unwrap();
    wait_for("the position to pass the skipped events", || {
        handle.position() == 6
    });
    assert_eq!(stop(handle).unwrap().events_handled, 0);
    assert_eq!(store.load_checkpoint("orders").unwrap(), Some(6));
}

#[test]
fn a_checkpoint_past_a_log_that_lost_written_events_restarts_at_the_end() {
    let disk = SimDisk::new();
    let options = || sim_options(&disk).flush_interval(HOUR);
    let store = Store::open("/sim/store", options()).unwrap();
    store
        .append("order-1", ExpectedVersion::Any, &[event("Placed", 0)])
        .unwrap();
    store
        .append_with_durability(
            "order-1",
            ExpectedVersion::Any,
            &[event("Placed", 1)],
            Durability::Buffered,
        )
        .unwrap();
    let handle = store
        .run_projection(
            "p",
            ProjectionOptions::default().visibility(Visibility::Written),
            |_| Ok(()),
        )
        .unwrap();
    wait_for("both events handled", || handle.position() == 2);
    stop(handle).unwrap();
    assert_eq!(store.load_checkpoint("p").unwrap(), Some(2));
    let image = disk.crash(CrashPlan::LoseAll);
    drop(store);

    let store = Store::open("/sim/store", sim_options(&image)).unwrap();
    assert_eq!(store.last_position(), Some(0));
    store
        .append("order-1", ExpectedVersion::Any, &[event("Placed", 2)])
        .unwrap();
    let seen = Seen::default();
    let handle = store
        .run_projection("p", ProjectionOptions::default(), recorder(&seen))
        .unwrap();
    wait_for("the new event at the lost position handled", || {
        positions(&seen) == [1]
    });
    stop(handle).unwrap();
}

/// A handler that erases, deletes or truncates what follows in its own
/// stream: the rest of the events taken together with the one it is
/// handling are handed on as the new rules say (erased, or not at all).
#[test]
fn rules_written_while_a_batch_is_handled_apply_to_the_rest_of_it() {
    #[derive(Debug, Clone, Copy, PartialEq)]
    enum Rule {
        Erase,
        Delete,
        Truncate,
    }
    for rule in [Rule::Erase, Rule::Delete, Rule::Truncate] {
        let dir = tempfile::tempdir().unwrap();
        let store = open(dir.path());
        let events: Vec<EventData> = (0..10).map(|n| event("Placed", n)).collect();
        store.append("p-2", ExpectedVersion::Any, &events).unwrap();
        let seen = Arc::new(Mutex::new(Vec::new()));
        let (writer, record) = (store.clone(), Arc::clone(&seen));
        let handle = store
            .run_projection(
                "rules",
                ProjectionOptions::default().filter(Filter::stream_prefix("p-2")),
                move |e: &RecordedEvent| {
                    if e.version == 0 && &*e.event_type == "Placed" {
                        match rule {
                            Rule::Erase => {
                                writer.erase_events("p-2", 0, 9).unwrap();
                            }
                            Rule::Delete => {
                                writer
                                    .delete_stream(
                                        "p-2",
                                        ExpectedVersion::Any,
                                        evstore::DeleteMode::Soft,
                                    )
                                    .unwrap();
                            }
                            Rule::Truncate => {
                                writer.truncate_stream("p-2", 8).unwrap();
                            }
                        }
                    }
                    record
                        .lock()
                        .unwrap()
                        .push((e.version, e.erased, e.event_type.to_string()));
                    Ok(())
                },
            )
            .unwrap();
        let end = end_of(&store);
        wait_for("the projection reached the end", || {
            handle.position() >= end
        });
        stop(handle).unwrap();
        let seen: Vec<(u64, bool, String)> = seen
            .lock()
            .unwrap()
            .iter()
            .filter(|(_, _, t)| t == "Placed" || t == "$redacted")
            .cloned()
            .collect();
        let versions: Vec<(u64, bool)> = seen.iter().map(|(v, e, _)| (*v, *e)).collect();
        let expected: Vec<(u64, bool)> = match rule {
            Rule::Erase => (0..10).map(|v| (v, v > 0)).collect(),
            Rule::Delete => vec![(0, false)],
            Rule::Truncate => vec![(0, false), (8, false), (9, false)],
        };
        assert_eq!(versions, expected, "{rule:?}");
    }
}
