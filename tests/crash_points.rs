//! Crash at every storage operation of fixed workloads, as SQLite's tests
//! do: for each N, the disk refuses everything after its N-th mutation (the
//! process died there), then loses power with the unsynced writes lost,
//! kept, torn or garbled; the recovered store must hold every durable
//! acknowledged append, byte-identical, and nothing that was never appended.
//! Also: a crash in the middle of recovery itself, every single bit flip
//! of a sealed and of an active segment, crashes while snapshots are saved
//! and pruned, every bit flip of a snapshot file, crashes while checkpoints
//! are saved and projections run, every bit flip of a checkpoint file, and
//! crashes while tagged commits over several streams, with conditions and
//! check-only streams, are written: never part of a commit after any
//! crash, and reads by query equal to a scan of the recovered log. And
//! crashes while stream metadata is set, streams deleted, a subject
//! forgotten and segments scavenged: nothing acknowledged as deleted or
//! erased comes back, and nothing else changes.

mod harness;

use evstore::storage::{CrashPlan, SimDisk};
use evstore::{Direction, Durability, Error, EventData, ExpectedVersion, Store};
use harness::{CheckSpec, ConditionSpec, EventSpec, ExpectedSpec, Op, PartSpec, TaggedEventSpec};
use std::path::{Path, PathBuf};

fn append(stream: u8, sizes: &[u16], expected: ExpectedSpec, sync: bool) -> Op {
    Op::Append {
        stream,
        events: sizes
            .iter()
            .enumerate()
            .map(|(i, &len)| EventSpec {
                type_index: i as u8,
                payload_len: len,
                metadata_len: (len % 7) as u8,
                fill: (len as u8).wrapping_add(stream),
            })
            .collect(),
        expected,
        sync,
    }
}

/// Appends that fill several 4 KiB segments (so rollover is inside), mixing
/// durability modes, expected versions, a flush and a reopen (so a recovery
/// is inside too).
fn rollover_workload() -> Vec<Op> {
    let mut ops = Vec::new();
    for i in 0..40u8 {
        let sizes: Vec<u16> = (0..1 + i % 3)
            .map(|j| 150 + 97 * (i as u16 + j as u16))
            .collect();
        let expected = match i % 4 {
            0 => ExpectedSpec::Any,
            1 => ExpectedSpec::Exact { delta: 2 },
            2 => ExpectedSpec::StreamExists,
            _ => ExpectedSpec::Exact { delta: 0 },
        };
        ops.push(append(i % 3, &sizes, expected, i % 5 != 2));
        if i == 6 || i == 31 {
            ops.push(Op::Flush);
        }
        if i == 19 {
            ops.push(Op::Reopen);
        }
    }
    ops
}

/// Mostly buffered appends made durable by flushes.
fn buffered_workload() -> Vec<Op> {
    let mut ops = Vec::new();
    for i in 0..40u8 {
        ops.push(append(
            i % 4,
            &[40 + 61 * i as u16 % 900, 300],
            ExpectedSpec::Any,
            false,
        ));
        if i % 4 == 3 {
            ops.push(Op::Flush);
        }
    }
    ops
}

/// The four ways of resolving unsynced writes; the torn and garbled ones
/// with several seeds each.
fn plans(n: u64) -> Vec<CrashPlan> {
    let mut plans = vec![CrashPlan::LoseAll, CrashPlan::KeepAll];
    for k in 0..12 {
        plans.push(CrashPlan::Torn { seed: n * 31 + k });
        plans.push(CrashPlan::Garbled { seed: n * 37 + k });
    }
    plans
}

fn sweep(ops: &[Op], durability: Durability) -> usize {
    let total = harness::count_mutations(ops, durability);
    assert!(
        total > 50,
        "the workload is too small to be interesting: {total} mutations"
    );
    let mut cycles = 0;
    for n in 0..=total {
        match harness::crash_point(ops, durability, n, &plans(n)) {
            Ok(done) => cycles += done,
            Err(message) => panic!("crash at mutation {n} of {total}: {message}"),
        }
    }
    cycles
}

#[test]
fn every_crash_point_of_a_workload_with_rollover_and_reopen() {
    let cycles = sweep(&rollover_workload(), Durability::Sync);
    assert!(cycles >= 4000, "{cycles} cycles");
    println!("{cycles} crash-and-recover cycles");
}

#[test]
fn every_crash_point_of_a_buffered_workload() {
    let cycles = sweep(&buffered_workload(), Durability::Buffered);
    assert!(cycles >= 4000, "{cycles} cycles");
    println!("{cycles} crash-and-recover cycles");
}

#[test]
fn every_crash_point_of_a_recovery() {
    let ops = rollover_workload();
    let total = harness::count_mutations(&ops, Durability::Sync);
    let mut cycles = 0;
    // Crash part-way through the workload, leaving a torn tail to recover.
    for fail_at in [total / 5, total / 3, total / 2, 2 * total / 3, total - 3] {
        for first in [
            CrashPlan::KeepAll,
            CrashPlan::Torn { seed: fail_at },
            CrashPlan::Garbled { seed: fail_at },
        ] {
            // Recovery of such a store takes a handful of mutations (clearing
            // the torn tail, syncing, creating a segment); crash at each.
            for recovery_fail_at in 0..24 {
                for second in [
                    CrashPlan::LoseAll,
                    CrashPlan::KeepAll,
                    CrashPlan::Torn {
                        seed: recovery_fail_at,
                    },
                ] {
                    if let Err(message) = harness::recovery_crash_cycle(
                        &ops,
                        Durability::Sync,
                        fail_at,
                        first,
                        recovery_fail_at,
                        second,
                    ) {
                        panic!(
                            "crash at {fail_at} ({first:?}), then at recovery mutation {recovery_fail_at} ({second:?}): {message}"
                        );
                    }
                    cycles += 1;
                }
            }
        }
    }
    println!("{cycles} crash-during-recovery cycles");
}

/// A cleanly closed store on a simulated disk with several 4 KiB segments.
fn closed_store() -> (SimDisk, Vec<PathBuf>, Vec<evstore::RecordedEvent>) {
    let disk = SimDisk::new();
    let mut model = harness::Model::default();
    let mut store = Some(harness::open_on(&disk, Durability::Sync).unwrap());
    let mut reopen = || harness::open_on(&disk, Durability::Sync);
    let ops: Vec<Op> = (0..10u8)
        .map(|i| append(i % 2, &[500, 200 + i as u16], ExpectedSpec::Any, true))
        .collect();
    harness::run_ops(&ops, &mut model, &mut store, &mut reopen, true);
    let store = store.unwrap();
    let events = store.read_all(0, Direction::Forward, usize::MAX).unwrap();
    store.close().unwrap();
    let segments: Vec<PathBuf> = disk
        .files()
        .into_iter()
        .filter(|p| p.extension().is_some_and(|x| x == "log"))
        .collect();
    assert!(segments.len() >= 3, "{segments:?}");
    (disk.crash(CrashPlan::LoseAll), segments, events)
}

/// What one flipped bit led to.
enum FlipOutcome {
    /// Open or a read reported corruption in the flipped file, at or before
    /// the flip.
    Detected,
    /// Reads return exactly what was appended; the store says how many
    /// index files or catalogues it rebuilt to get there.
    Harmless { rebuilt: u64 },
}

/// Flips `bit` of `file` on a copy of the disk, opens the store and reads
/// everything, both through `$all` and stream by stream.
fn flip_and_read(
    disk: &SimDisk,
    file: &PathBuf,
    bit: usize,
    events: &[evstore::RecordedEvent],
) -> FlipOutcome {
    let image = disk.crash(CrashPlan::KeepAll);
    harness::flip_bit(&image, file, bit as u64);
    let check_error = |error: Error| match error {
        Error::Corrupted {
            file: f, offset, ..
        } => {
            assert_eq!(&f, file, "bit {bit}");
            assert!(offset <= (bit / 8) as u64, "bit {bit} reported at {offset}");
            FlipOutcome::Detected
        }
        Error::UnsupportedFormat { file: f, .. } => {
            assert_eq!(&f, file, "bit {bit}");
            assert!(
                (64..96).contains(&bit),
                "bit {bit} is not in the version field"
            );
            FlipOutcome::Detected
        }
        e => panic!("bit {bit}: untyped failure {e:?}"),
    };
    let store = match harness::open_on(&image, Durability::Sync) {
        Ok(store) => store,
        Err(e) => return check_error(e),
    };
    match store.read_all(0, Direction::Forward, usize::MAX) {
        Ok(read) => assert_eq!(read, events, "bit {bit} changed what reads return"),
        Err(e) => return check_error(e),
    }
    let mut streams: Vec<_> = events.iter().map(|e| e.stream.to_string()).collect();
    streams.sort();
    streams.dedup();
    for stream in &streams {
        let expected: Vec<_> = events
            .iter()
            .filter(|e| *e.stream == **stream)
            .cloned()
            .collect();
        match store.read_stream(stream, 0, Direction::Forward, usize::MAX) {
            Ok(read) => assert_eq!(read, expected, "bit {bit} changed stream {stream}"),
            Err(e) => return check_error(e),
        }
    }
    let listed: Vec<_> = store.streams().map(|s| s.unwrap().name).collect();
    assert_eq!(listed, streams, "bit {bit} changed the stream list");
    let stats = store.recovery_stats();
    FlipOutcome::Harmless {
        rebuilt: stats.index_files_rebuilt as u64
            + u64::from(stats.catalog_rebuilt)
            + store.index_repairs(),
    }
}

/// Where the bytes a segment holds end, by walking its batch headers, and
/// where each batch starts.
fn batches(segment: &[u8]) -> (usize, Vec<usize>) {
    let mut at = 64;
    let mut starts = Vec::new();
    while at + 32 <= segment.len() {
        let len = u32::from_le_bytes(segment[at + 4..at + 8].try_into().unwrap()) as usize;
        if len == 0 {
            break;
        }
        starts.push(at);
        at += len;
    }
    (at, starts)
}

fn data_end(segment: &[u8]) -> usize {
    batches(segment).0
}

#[test]
fn every_bit_flip_of_a_sealed_segment_is_detected_or_harmless() {
    let (disk, segments, events) = closed_store();
    let bytes = disk.read_file(&segments[0]).unwrap();
    let (end, starts) = batches(&bytes);
    let seal = *starts.last().unwrap();
    let mut detected = 0;
    for bit in 0..bytes.len() * 8 {
        match flip_and_read(&disk, &segments[0], bit, &events) {
            FlipOutcome::Detected => detected += 1,
            FlipOutcome::Harmless { .. } => {
                // Reads go through the index file and each record's own
                // checksum: only batch headers (other than the seal, which
                // open checks) and the bytes past the seal go unread.
                let byte = bit / 8;
                let in_batch_header = starts
                    .iter()
                    .any(|&s| s != seal && (s..s + 32).contains(&byte));
                assert!(
                    in_batch_header || byte >= end,
                    "bit {bit} changed nothing anyone reads, yet it holds data"
                );
            }
        }
    }
    let headers = (starts.len() - 1) * 32 * 8;
    assert_eq!(detected, end * 8 - headers);
}

#[test]
fn every_bit_flip_of_an_index_file_or_the_catalogue_is_repaired() {
    let (disk, segments, events) = closed_store();
    let index = segments[0].with_extension("idx");
    let catalog = segments[0].with_file_name("streams.catalog");
    for file in [index, catalog] {
        let len = disk.read_file(&file).unwrap().len();
        for bit in 0..len * 8 {
            match flip_and_read(&disk, &file, bit, &events) {
                FlipOutcome::Harmless { rebuilt } => {
                    assert_eq!(rebuilt, 1, "{}: bit {bit}", file.display())
                }
                FlipOutcome::Detected => {
                    panic!("{}: bit {bit} made the store unreadable", file.display())
                }
            }
        }
    }
}

#[test]
fn missing_index_files_and_catalogue_are_rebuilt() {
    let (disk, segments, events) = closed_store();
    let image = disk.crash(CrashPlan::KeepAll);
    let sealed = &segments[..segments.len() - 1];
    for segment in sealed {
        evstore::storage::Storage::remove_file(&image, &segment.with_extension("idx")).unwrap();
    }
    evstore::storage::Storage::remove_file(&image, &segments[0].with_file_name("streams.catalog"))
        .unwrap();
    let store = harness::open_on(&image, Durability::Sync).unwrap();
    let stats = store.recovery_stats();
    assert_eq!(stats.index_files_rebuilt, sealed.len());
    assert!(stats.catalog_rebuilt);
    assert_eq!(
        store.read_all(0, Direction::Forward, usize::MAX).unwrap(),
        events
    );
    store.close().unwrap();
    let store = harness::open_on(&image, Durability::Sync).unwrap();
    let stats = store.recovery_stats();
    assert_eq!(
        (stats.index_files_rebuilt, stats.catalog_rebuilt),
        (0, false)
    );
    assert_eq!(stats.index_files_loaded, sealed.len());
    assert_eq!(
        store.read_all(0, Direction::Forward, usize::MAX).unwrap(),
        events
    );
}

#[test]
fn every_bit_flip_of_the_active_segment_is_detected_or_harmless() {
    let (disk, segments, events) = closed_store();
    let active = segments.last().unwrap();
    let bytes = disk.read_file(active).unwrap();
    let end = data_end(&bytes);
    let mut detected = 0;
    let mut harmless = Vec::new();
    for bit in 0..bytes.len() * 8 {
        match flip_and_read(&disk, active, bit, &events) {
            FlipOutcome::Detected => detected += 1,
            FlipOutcome::Harmless { .. } => harmless.push(bit),
        }
    }
    // Durable data is vouched for by the close's durable mark (the last 32
    // bytes), so no flip before that mark passes as a torn tail. A flip in
    // the mark itself, or in the zeros after it, only costs the mark.
    let mark = end - 32;
    assert!(
        harmless.iter().all(|&bit| bit >= mark * 8),
        "undetected flips in data: {:?}",
        &harmless[..harmless.len().min(10)]
    );
    assert!(detected >= mark * 8);
}

// --------------------------------------------------------------- commits

/// A part of a commit: `events` as (payload length, tag bits of
/// `harness::TaggedEventSpec`).
fn part(stream: u8, expected: ExpectedSpec, events: &[(u16, u8)]) -> PartSpec {
    PartSpec {
        stream,
        expected,
        events: events
            .iter()
            .enumerate()
            .map(|(i, &(len, tags))| TaggedEventSpec {
                event: EventSpec {
                    type_index: i as u8 + stream,
                    payload_len: len,
                    metadata_len: (len % 11) as u8,
                    fill: (len as u8) ^ stream,
                },
                tags,
            })
            .collect(),
    }
}

fn commit(
    parts: Vec<PartSpec>,
    check: Option<(u8, ExpectedSpec)>,
    condition: Option<(u8, u8, u8)>,
    sync: bool,
) -> Op {
    Op::Commit {
        parts,
        check: check.map(|(stream, expected)| CheckSpec { stream, expected }),
        condition: condition.map(|(tag, shape, after)| ConditionSpec { tag, shape, after }),
        sync,
    }
}

/// Tag bits: `course:c1`, `course:c2`, `student:s7`, a non-ASCII tag, and
/// bit 5 to give them in reverse order.
const C1: u8 = 0b0_0001;
const C2: u8 = 0b0_0010;
const S7: u8 = 0b0_0100;
const U: u8 = 0b0_1000;
const REVERSED: u8 = 0x20;

/// Commits over two and three streams with tags on most events, over
/// several 4 KiB segments: conditions that hold (after the end of the log,
/// after the last match) and that fail (from the start, just before the
/// last match, on a type and a tag), check-only streams that hold and one
/// that does not, an expected version that fails in a commit's second
/// part, synced and buffered commits, plain appends between them, retries
/// of an acknowledged commit (whose condition and expected versions would
/// fail now: only its ids must count) and of refused ones, a flush and a
/// reopen.
fn commit_workload() -> Vec<Op> {
    let mut ops = Vec::new();
    for i in 0..36u8 {
        let len = 90 + 17 * u16::from(i);
        ops.push(match i % 6 {
            // Holds: its condition counts only what follows the end of the log.
            0 => commit(
                vec![
                    part(
                        0,
                        ExpectedSpec::Any,
                        &[(len, C1), (120, C1 | S7 | REVERSED)],
                    ),
                    part(3, ExpectedSpec::Any, &[(200, S7 | U)]),
                ],
                None,
                Some((2, 0, 0)),
                true,
            ),
            // Holds, after the last match, with a check-only stream that
            // holds; once, that stream is expected to be new, and is not.
            1 => commit(
                vec![
                    part(
                        1,
                        if i == 1 {
                            ExpectedSpec::NoStream
                        } else {
                            ExpectedSpec::Exact { delta: 2 }
                        },
                        &[(len, C2)],
                    ),
                    part(3, ExpectedSpec::StreamExists, &[(60, 0), (150, C1 | C2)]),
                ],
                Some(if i == 19 {
                    (5, ExpectedSpec::NoStream)
                } else {
                    (4, ExpectedSpec::NoStream)
                }),
                Some((0, 0, 2)),
                true,
            ),
            // Holds after the end of the log, or fails at the last match
            // (its `after` just before it).
            2 => commit(
                vec![
                    part(2, ExpectedSpec::Any, &[(len, C1 | U)]),
                    part(1, ExpectedSpec::Any, &[(80, S7)]),
                ],
                None,
                Some((0, 0, if i % 12 == 2 { 0 } else { 3 })),
                i % 4 != 2,
            ),
            // Its second part expects a version two behind.
            3 => commit(
                vec![
                    part(0, ExpectedSpec::Any, &[(len, C1)]),
                    part(3, ExpectedSpec::Exact { delta: 0 }, &[(100, S7)]),
                ],
                None,
                None,
                true,
            ),
            4 => append(5, &[300 + len, 250], ExpectedSpec::Any, i % 8 == 4),
            // Three streams and a check: holds after the end, then fails
            // from the start at the first event of its type and tag.
            _ => commit(
                vec![
                    part(0, ExpectedSpec::Any, &[(len, C1 | C2 | S7)]),
                    part(1, ExpectedSpec::Any, &[(140, U | REVERSED), (40, C2)]),
                    part(2, ExpectedSpec::StreamExists, &[(220, 0)]),
                ],
                Some((5, ExpectedSpec::StreamExists)),
                Some((51, 2, if i < 12 { 0 } else { 1 })),
                i != 11,
            ),
        });
        match i {
            9 => ops.push(Op::Retry { of: 6, sync: true }),
            10 => ops.push(Op::Flush),
            12 => ops.push(Op::Reopen),
            17 => {
                ops.push(Op::Retry { of: 8, sync: false });
                ops.push(Op::Retry { of: 9, sync: true });
            }
            20 => ops.push(Op::Retry { of: 12, sync: true }),
            _ => {}
        }
    }
    ops
}

/// The commit workload, checked to be what it is meant to be: without
/// faults it acknowledges multi-stream commits with tags, refuses some for
/// their condition and some for an expected version (of a written or a
/// checked stream), spans several segments, and retries an acknowledged
/// commit whose condition would fail if it were checked again.
fn check_commit_workload(ops: &[Op], durability: Durability) {
    let disk = SimDisk::new();
    let mut model = harness::Model::for_store(durability);
    let mut store = Some(harness::open_on(&disk, durability).unwrap());
    let mut reopen = || harness::open_on(&disk, durability);
    let mut acked_retries = 0;
    for op in ops {
        if let Op::Retry { of, .. } = op {
            let attempt = &model.attempts[*of as usize];
            if attempt.is_multi_stream() && matches!(attempt.outcome, harness::Outcome::Acked(_)) {
                acked_retries += 1;
            }
        }
        harness::run_ops(
            std::slice::from_ref(op),
            &mut model,
            &mut store,
            &mut reopen,
            true,
        );
    }
    let acked = model
        .attempts
        .iter()
        .filter(|a| a.is_multi_stream() && matches!(a.outcome, harness::Outcome::Acked(_)))
        .count();
    let tagged = model
        .attempts
        .iter()
        .flat_map(|a| &a.events)
        .filter(|e| !e.tags().is_empty())
        .count();
    let refused = |name: &str| model.refusals.iter().filter(|r| r.1 == name).count();
    assert!(
        acked >= 10,
        "{acked} multi-stream commits acknowledged; refused: {:?}",
        model.refusals
    );
    assert!(tagged >= 30, "{tagged} tagged events");
    assert!(
        refused("AppendConditionFailed") >= 4,
        "{:?}",
        model.refusals
    );
    assert!(refused("WrongExpectedVersion") >= 4, "{:?}", model.refusals);
    assert_eq!(acked_retries, 2);
    let segments = disk
        .files()
        .iter()
        .filter(|p| p.extension().is_some_and(|x| x == "log"))
        .count();
    assert!(segments >= 4, "{segments} segments");
}

/// Every crash point of `ops` with the plans `plans(n)` gives: each image
/// recovered and checked (every acknowledged durable commit whole, with
/// its tags, at its positions; every commit in doubt whole or absent;
/// reads by query equal to a scan of the log). Returns the cycles and what
/// became of the commits in doubt, over all of them.
fn commit_sweep(
    ops: &[Op],
    durability: Durability,
    plans: impl Fn(u64) -> Vec<CrashPlan>,
) -> (usize, harness::InDoubt) {
    let total = harness::count_mutations(ops, durability);
    assert!(total > 100, "{total} mutations");
    let mut cycles = 0;
    let mut in_doubt = harness::InDoubt::default();
    for n in 0..=total {
        let (disk, model, store) = harness::run_to_crash_point(ops, durability, n).unwrap();
        for plan in plans(n) {
            let image = disk.crash(plan);
            match harness::recover_and_check_commits(&image, model.clone(), durability, false) {
                Ok(found) => {
                    in_doubt.present += found.present;
                    in_doubt.absent += found.absent;
                }
                Err(e) => panic!("crash at mutation {n} of {total}, {plan:?}: {e}"),
            }
            cycles += 1;
        }
        drop(store);
    }
    (cycles, in_doubt)
}

/// A crash at every storage operation of multi-stream commits, with every
/// crash plan: no commit is ever found in part, each acknowledged durable
/// one is found whole; commits in doubt come back whole after some crashes
/// and not at all after others.
#[test]
fn every_crash_point_of_multi_stream_commits() {
    let ops = commit_workload();
    check_commit_workload(&ops, Durability::Sync);
    let (cycles, in_doubt) = commit_sweep(&ops, Durability::Sync, plans);
    assert!(cycles >= 4000, "{cycles} cycles");
    assert!(in_doubt.present > 0 && in_doubt.absent > 0, "{in_doubt:?}");
    println!("{cycles} crash-and-recover cycles; commits in doubt: {in_doubt:?}");
}

/// The same in a `Buffered` store with every commit and append buffered:
/// a crash loses commits since the last flush or sync, each whole.
#[test]
fn every_crash_point_of_buffered_multi_stream_commits() {
    let ops: Vec<Op> = commit_workload()
        .into_iter()
        .map(|op| match op {
            Op::Commit {
                parts,
                check,
                condition,
                ..
            } => Op::Commit {
                parts,
                check,
                condition,
                sync: false,
            },
            Op::Append {
                stream,
                events,
                expected,
                ..
            } => Op::Append {
                stream,
                events,
                expected,
                sync: false,
            },
            op => op,
        })
        .collect();
    check_commit_workload(&ops, Durability::Buffered);
    let (cycles, in_doubt) = commit_sweep(&ops, Durability::Buffered, |n| {
        vec![
            CrashPlan::LoseAll,
            CrashPlan::KeepAll,
            CrashPlan::Torn { seed: n },
            CrashPlan::Garbled { seed: n },
        ]
    });
    assert!(in_doubt.present > 0 && in_doubt.absent > 0, "{in_doubt:?}");
    println!("{cycles} crash-and-recover cycles; commits in doubt: {in_doubt:?}");
}

// ------------------------------------------------------------- snapshots

fn snapshot(stream: u8, back: u8, size: u8) -> Op {
    Op::Snapshot { stream, back, size }
}

/// Appends round three streams, each followed by a snapshot of its stream
/// at the newest version, and some by one two versions back, so each
/// stream is saved five to seven times and, keeping two, pruned. Two of the
/// appends are buffered: in a `Sync` store the snapshot after them is
/// refused (their events are not visible yet), in a `Buffered` store it
/// flushes them. Also a save past the end (refused), a flush and a reopen.
fn snapshot_workload() -> Vec<Op> {
    let mut ops = Vec::new();
    for i in 0..18u8 {
        let stream = i % 3;
        ops.push(append(
            stream,
            &[120 + 40 * u16::from(i), 60],
            ExpectedSpec::Any,
            i % 7 != 4,
        ));
        ops.push(snapshot(stream, 0, 3 + i));
        if i % 5 == 2 {
            ops.push(snapshot(stream, 5, 1));
        }
        match i {
            7 => ops.push(snapshot(stream, u8::MAX, 2)),
            9 => ops.push(Op::Reopen),
            13 => ops.push(Op::Flush),
            _ => {}
        }
    }
    ops
}

/// The snapshot workload's saves, checked to be what it is meant to be: a
/// fault-free run acknowledges saves of every stream, prunes (more saves
/// than kept files), and refuses `refused` saves.
fn check_snapshot_workload(ops: &[Op], durability: Durability, refused: usize) {
    let disk = SimDisk::new();
    let mut model = harness::Model::for_store(durability);
    let mut store = Some(harness::open_on(&disk, durability).unwrap());
    let mut reopen = || harness::open_on(&disk, durability);
    harness::run_ops(ops, &mut model, &mut store, &mut reopen, true);
    assert_eq!(model.snapshots.len(), 3, "{:?}", model.snapshots.keys());
    for (stream, snaps) in &model.snapshots {
        assert!(snaps.acked >= 5, "{stream}: {snaps:?}");
        assert_eq!(snaps.failed, 0, "{stream}: {snaps:?}");
        let files: Vec<_> = harness::snapshot_files(&disk, stream)
            .into_iter()
            .filter(|p| p.extension().is_some_and(|e| e == "snap"))
            .collect();
        assert_eq!(files.len(), harness::SNAPSHOTS_KEPT, "{stream}: {files:?}");
    }
    let saves = ops
        .iter()
        .filter(|op| matches!(op, Op::Snapshot { .. }))
        .count();
    let recorded: usize = model.snapshots.values().map(|s| s.acked).sum();
    assert_eq!(recorded + refused, saves);
}

#[test]
fn every_crash_point_of_snapshot_saves_and_pruning() {
    let ops = snapshot_workload();
    // The save past the end, and those after the two buffered appends.
    check_snapshot_workload(&ops, Durability::Sync, 3);
    let cycles = sweep(&ops, Durability::Sync);
    assert!(cycles >= 4000, "{cycles} cycles");
    println!("{cycles} crash-and-recover cycles");
}

#[test]
fn every_crash_point_of_snapshot_saves_in_a_buffered_store() {
    // Each save flushes the appends before it: a crash in that flush, or
    // after it, must not leave a snapshot of events that were lost.
    let ops: Vec<Op> = snapshot_workload()
        .into_iter()
        .map(|op| match op {
            Op::Append {
                stream,
                events,
                expected,
                ..
            } => Op::Append {
                stream,
                events,
                expected,
                sync: false,
            },
            op => op,
        })
        .collect();
    check_snapshot_workload(&ops, Durability::Buffered, 1);
    let total = harness::count_mutations(&ops, Durability::Buffered);
    let mut cycles = 0;
    for n in 0..=total {
        let plans = [
            CrashPlan::LoseAll,
            CrashPlan::KeepAll,
            CrashPlan::Torn { seed: n },
            CrashPlan::Garbled { seed: n },
        ];
        match harness::crash_point(&ops, Durability::Buffered, n, &plans) {
            Ok(done) => cycles += done,
            Err(message) => panic!("crash at mutation {n} of {total}: {message}"),
        }
    }
    println!("{cycles} crash-and-recover cycles");
}

/// Where a save stood when the process died.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
enum SaveStage {
    /// No file of the new snapshot yet.
    NotStarted,
    /// Its temporary file exists, not all of it written or synced.
    TempPartial,
    /// Its temporary file holds all of it, not yet renamed.
    TempComplete,
    /// Renamed into place; the save was not acknowledged.
    Renamed,
    /// Acknowledged.
    Acked,
}

/// A crash at every storage operation of one snapshot save, the third of
/// a stream that keeps two: until the rename, the previous snapshots stand
/// exactly as they were, whatever the crash does to the temporary file;
/// after it, the previous one or the new one is loaded, never a mix; once
/// acknowledged, the new one. Every image also passes the harness's checks
/// (recovery, snapshot loads at every bound, a save afterwards prunes the
/// temporary file).
#[test]
fn a_crash_before_the_rename_leaves_the_previous_snapshot() {
    let stream = 1u8;
    let name = "order-2";
    let setup = vec![
        append(stream, &[200, 100], ExpectedSpec::Any, true),
        snapshot(stream, 0, 10),
        append(stream, &[300], ExpectedSpec::Any, true),
        snapshot(stream, 0, 20),
        append(stream, &[150, 50, 90], ExpectedSpec::Any, true),
    ];
    let (older, previous, new) = (
        (1, harness::snapshot_data(name, 1, 10)),
        (2, harness::snapshot_data(name, 2, 20)),
        (5, harness::snapshot_data(name, 5, 40)),
    );
    let mut ops = setup.clone();
    ops.push(snapshot(stream, 0, 40));
    let start = harness::count_mutations(&setup, Durability::Sync);
    let end = harness::count_mutations(&ops, Durability::Sync);
    let file_len = evstore::format::SNAPSHOT_HEADER_LEN + name.len() + new.1.len();
    let mut stages = std::collections::BTreeMap::new();
    for n in start..=end {
        let (disk, model, store) = harness::run_to_crash_point(&ops, Durability::Sync, n).unwrap();
        let files = harness::snapshot_files(&disk, name);
        let named = |suffix: &str| {
            files
                .iter()
                .find(|p| {
                    p.to_string_lossy()
                        .ends_with(&format!("{:020}.{suffix}", new.0))
                })
                .cloned()
        };
        let snaps = &model.snapshots[name];
        let stage = if snaps.newest_acked == Some(new.0) {
            SaveStage::Acked
        } else if named("snap").is_some() {
            SaveStage::Renamed
        } else if let Some(temp) = named("snap.tmp") {
            if disk.read_file(&temp).unwrap().len() == file_len {
                SaveStage::TempComplete
            } else {
                SaveStage::TempPartial
            }
        } else {
            SaveStage::NotStarted
        };
        *stages.entry(stage).or_insert(0) += 1;
        for plan in plans(n) {
            let image = disk.crash(plan);
            let store = harness::open_on(&image, Durability::Sync).unwrap();
            let loaded = store
                .load_snapshot(name)
                .unwrap()
                .map(|s| (s.version, s.data.to_vec()));
            let context = format!("crash at {n} ({stage:?}), {plan:?}");
            match stage {
                SaveStage::NotStarted | SaveStage::TempPartial | SaveStage::TempComplete => {
                    assert_eq!(loaded.as_ref(), Some(&previous), "{context}");
                    let below = store
                        .load_snapshot_at_or_below(name, previous.0 - 1)
                        .unwrap()
                        .map(|s| (s.version, s.data.to_vec()));
                    assert_eq!(below.as_ref(), Some(&older), "{context}");
                }
                SaveStage::Renamed => assert!(
                    loaded.as_ref() == Some(&previous) || loaded.as_ref() == Some(&new),
                    "{context}: {:?}",
                    loaded.map(|(v, _)| v)
                ),
                SaveStage::Acked => assert_eq!(loaded.as_ref(), Some(&new), "{context}"),
            }
            assert!(store.damaged_snapshots().is_empty(), "{context}");
            drop(store);
            if let Err(e) =
                harness::recover_and_check(&image, model.clone(), Durability::Sync, false)
            {
                panic!("{context}: {e}");
            }
        }
        drop(store);
    }
    for stage in [
        SaveStage::NotStarted,
        SaveStage::TempPartial,
        SaveStage::TempComplete,
        SaveStage::Renamed,
        SaveStage::Acked,
    ] {
        assert!(
            stages.contains_key(&stage),
            "no crash point at {stage:?}: {stages:?}"
        );
    }
}

/// A closed store with two snapshots of stream `s`, and their files.
struct SnapshotPair {
    disk: SimDisk,
    older: (u64, Vec<u8>),
    newer: (u64, Vec<u8>),
    older_file: PathBuf,
    newer_file: PathBuf,
}

fn closed_store_with_two_snapshots() -> SnapshotPair {
    let disk = SimDisk::new();
    let store = harness::open_on(&disk, Durability::Sync).unwrap();
    let events: Vec<EventData> = (0..3u8).map(|i| EventData::new("T", vec![i; 5])).collect();
    store
        .append("s", ExpectedVersion::NoStream, &events)
        .unwrap();
    let older = (1, b"old".to_vec());
    let newer = (2, b"newer".to_vec());
    for (version, data) in [&older, &newer] {
        store.save_snapshot("s", *version, data).unwrap();
    }
    store.close().unwrap();
    let disk = disk.crash(CrashPlan::LoseAll);
    let files = harness::snapshot_files(&disk, "s");
    let file = |version: u64| {
        files
            .iter()
            .find(|p| p.ends_with(format!("{version:020}.snap")))
            .cloned()
            .unwrap_or_else(|| panic!("no file of version {version}: {files:?}"))
    };
    SnapshotPair {
        older_file: file(older.0),
        newer_file: file(newer.0),
        disk,
        older,
        newer,
    }
}

fn loaded(store: &Store, max_version: u64) -> Option<(u64, Vec<u8>)> {
    store
        .load_snapshot_at_or_below("s", max_version)
        .unwrap()
        .map(|s| (s.version, s.data.to_vec()))
}

/// The one damage report `store` holds: of `file`, at `version`, typed,
/// and the file renamed aside.
fn assert_set_aside(store: &Store, image: &SimDisk, file: &Path, version: u64, context: &str) {
    let reports = store.damaged_snapshots();
    assert_eq!(reports.len(), 1, "{context}: {reports:?}");
    let report = &reports[0];
    assert_eq!(
        (&*report.stream, report.version),
        ("s", version),
        "{context}"
    );
    assert!(
        harness::is_damage_report(&report.error),
        "{context}: {report:?}"
    );
    let mut aside = file.as_os_str().to_owned();
    aside.push(".damaged");
    assert_eq!(report.file, PathBuf::from(aside), "{context}");
    let files = image.files();
    assert!(files.contains(&report.file), "{context}: {files:?}");
    assert!(!files.iter().any(|p| p == file), "{context}: {files:?}");
}

#[test]
fn every_bit_flip_of_a_snapshot_file_falls_back_to_the_previous_one() {
    let pair = closed_store_with_two_snapshots();
    let newer_len = pair.disk.read_file(&pair.newer_file).unwrap().len();
    assert!(newer_len < 80, "{newer_len} bytes");
    for bit in 0..newer_len * 8 {
        let context = format!("bit {bit} of the newer file");
        let image = pair.disk.crash(CrashPlan::KeepAll);
        harness::flip_bit(&image, &pair.newer_file, bit as u64);
        let store = harness::open_on(&image, Durability::Sync).unwrap();
        assert_eq!(
            loaded(&store, u64::MAX),
            Some(pair.older.clone()),
            "{context}"
        );
        assert_set_aside(&store, &image, &pair.newer_file, pair.newer.0, &context);
        // Set aside, not read again: the same answer and no new report.
        assert_eq!(
            loaded(&store, pair.newer.0),
            Some(pair.older.clone()),
            "{context}"
        );
        assert_eq!(store.damaged_snapshots().len(), 1, "{context}");
        drop(store);
        let store = harness::open_on(&image, Durability::Sync).unwrap();
        assert_eq!(
            loaded(&store, u64::MAX),
            Some(pair.older.clone()),
            "{context}"
        );
        assert!(store.damaged_snapshots().is_empty(), "{context}");
    }
    // The older file is only read when a bound excludes the newer one.
    let older_len = pair.disk.read_file(&pair.older_file).unwrap().len();
    for bit in 0..older_len * 8 {
        let context = format!("bit {bit} of the older file");
        let image = pair.disk.crash(CrashPlan::KeepAll);
        harness::flip_bit(&image, &pair.older_file, bit as u64);
        let store = harness::open_on(&image, Durability::Sync).unwrap();
        assert_eq!(
            loaded(&store, u64::MAX),
            Some(pair.newer.clone()),
            "{context}"
        );
        assert!(store.damaged_snapshots().is_empty(), "{context}");
        assert_eq!(loaded(&store, pair.older.0), None, "{context}");
        assert_set_aside(&store, &image, &pair.older_file, pair.older.0, &context);
    }
}

#[test]
fn every_truncation_of_a_snapshot_file_falls_back_and_a_new_save_prunes_it() {
    let pair = closed_store_with_two_snapshots();
    let bytes = pair.disk.read_file(&pair.newer_file).unwrap();
    for len in 0..bytes.len() {
        let context = format!("the newer file cut to {len} bytes");
        let image = pair.disk.crash(CrashPlan::KeepAll);
        image.write_file(&pair.newer_file, &bytes[..len]).unwrap();
        let store = harness::open_on(&image, Durability::Sync).unwrap();
        assert_eq!(
            loaded(&store, u64::MAX),
            Some(pair.older.clone()),
            "{context}"
        );
        assert_set_aside(&store, &image, &pair.newer_file, pair.newer.0, &context);
        // Saving the same version again puts a sound file in its place.
        store.save_snapshot("s", pair.newer.0, b"again").unwrap();
        assert_eq!(
            loaded(&store, u64::MAX),
            Some((pair.newer.0, b"again".to_vec())),
            "{context}"
        );
        let names: Vec<String> = harness::snapshot_files(&image, "s")
            .iter()
            .map(|p| p.file_name().unwrap().to_string_lossy().into_owned())
            .collect();
        assert_eq!(
            names,
            [
                format!("{:020}.snap", pair.older.0),
                format!("{:020}.snap", pair.newer.0),
                format!("{:020}.snap.damaged", pair.newer.0),
            ],
            "{context}"
        );
    }
}

// ------------------------------------------------ checkpoints, projections

fn checkpoint(name: u8, back: u8) -> Op {
    Op::Checkpoint { name, back }
}

fn project(name: u8, every: u8) -> Op {
    Op::Project { name, every }
}

/// Appends round three streams (one in five buffered), a checkpoint save
/// after every other append (every name, the invalid one too, at or a
/// little before the end), and runs of the three projections saving every
/// one to four events, with a reopen and a flush between; each projection
/// runs again at the end.
fn projection_workload() -> Vec<Op> {
    let mut ops = Vec::new();
    for i in 0..12u8 {
        ops.push(append(
            i % 3,
            &[80 + 30 * u16::from(i), 40],
            ExpectedSpec::Any,
            i % 5 != 3,
        ));
        if i % 2 == 1 {
            ops.push(checkpoint(i / 2, i % 3));
        }
        if i % 4 == 3 {
            ops.push(project(i / 4, i / 4));
        }
        match i {
            6 => ops.push(Op::Reopen),
            9 => ops.push(Op::Flush),
            _ => {}
        }
    }
    ops.extend([project(0, 1), project(1, 0), project(2, 2)]);
    ops
}

/// The projection workload, checked to be what it is meant to be: without
/// faults every valid checkpoint name is saved and the invalid one
/// refused, every projection runs at least twice and handles events (and
/// `harness::project` checks it saves as often as it was told).
fn check_projection_workload(ops: &[Op], durability: Durability) {
    let disk = SimDisk::new();
    let mut model = harness::Model::for_store(durability);
    let mut store = Some(harness::open_on(&disk, durability).unwrap());
    let mut reopen = || harness::open_on(&disk, durability);
    harness::run_ops(ops, &mut model, &mut store, &mut reopen, true);
    assert_eq!(model.checkpoints.len(), 4, "{:?}", model.checkpoints);
    assert!(
        !model.checkpoints.contains_key(harness::CHECKPOINT_NAMES[4]),
        "the invalid name was recorded"
    );
    assert_eq!(model.projections.len(), 3);
    for (name, projection) in &model.projections {
        assert!(projection.runs_ok >= 2, "{name}: {projection:?}");
        assert_eq!(projection.runs_failed, 0, "{name}: {projection:?}");
        assert!(projection.calls >= 8, "{name}: {projection:?}");
        assert_eq!(projection.repeats, 0, "{name}: {projection:?}");
    }
}

/// Runs `ops` to every crash point, recovers the image each plan leaves
/// and checks it (see `harness::recover_and_check`: every checkpoint loads
/// as its last acknowledged save or a newer attempted one, each projection
/// restarts at or past its last acknowledged checkpoint, and between its
/// runs every event it passes is handled at least once). Returns the cycles
/// run and the crash points after which a projection run failed.
fn projection_sweep(
    ops: &[Op],
    durability: Durability,
    plans: impl Fn(u64) -> Vec<CrashPlan>,
) -> (usize, usize) {
    let total = harness::count_mutations(ops, durability);
    assert!(total > 100, "{total} mutations");
    let (mut cycles, mut failed_runs) = (0, 0);
    for n in 0..=total {
        let (disk, model, store) = harness::run_to_crash_point(ops, durability, n).unwrap();
        failed_runs += usize::from(model.projections.values().any(|p| p.runs_failed > 0));
        for plan in plans(n) {
            let image = disk.crash(plan);
            if let Err(e) = harness::recover_and_check(&image, model.clone(), durability, false) {
                panic!("crash at mutation {n} of {total}, {plan:?}: {e}");
            }
            cycles += 1;
        }
        drop(store);
    }
    (cycles, failed_runs)
}

/// A crash at every storage operation of appends, checkpoint saves and
/// projection runs (whose saves are part of the workload), with each crash
/// plan.
#[test]
fn every_crash_point_of_checkpoint_saves_and_projection_runs() {
    let ops = projection_workload();
    check_projection_workload(&ops, Durability::Sync);
    // The plans of the other sweeps, with three seeds each instead of
    // twelve: every cycle restarts each projection.
    let (cycles, failed_runs) = projection_sweep(&ops, Durability::Sync, |n| {
        let mut plans = plans(n);
        plans.truncate(8);
        plans
    });
    assert!(cycles >= 1500, "{cycles} cycles");
    assert!(failed_runs > 10, "{failed_runs}");
    println!(
        "{cycles} crash-and-recover cycles, {failed_runs} crash points failed a projection run"
    );
}

/// The same in a `Buffered` store with every append buffered: projections
/// see the events a flush made durable, never the others, which a crash
/// may take.
#[test]
fn every_crash_point_of_projection_runs_in_a_buffered_store() {
    let ops: Vec<Op> = projection_workload()
        .into_iter()
        .map(|op| match op {
            Op::Append {
                stream,
                events,
                expected,
                ..
            } => Op::Append {
                stream,
                events,
                expected,
                sync: false,
            },
            op => op,
        })
        .collect();
    check_projection_workload(&ops, Durability::Buffered);
    let (cycles, failed_runs) = projection_sweep(&ops, Durability::Buffered, |n| {
        vec![
            CrashPlan::LoseAll,
            CrashPlan::KeepAll,
            CrashPlan::Torn { seed: n },
            CrashPlan::Garbled { seed: n },
        ]
    });
    assert!(failed_runs > 10, "{failed_runs}");
    println!(
        "{cycles} crash-and-recover cycles, {failed_runs} crash points failed a projection run"
    );
}

/// A cleanly closed store with three checkpoints; the file of `balances`.
fn closed_store_with_checkpoints() -> (SimDisk, PathBuf) {
    let disk = SimDisk::new();
    let store = harness::open_on(&disk, Durability::Sync).unwrap();
    let events: Vec<EventData> = (0..4u8).map(|i| EventData::new("T", vec![i; 5])).collect();
    store.append("s", ExpectedVersion::Any, &events).unwrap();
    store.save_checkpoint("balances", 1234).unwrap();
    store.save_checkpoint("a", 7).unwrap();
    store.save_checkpoint("proj-all", 2).unwrap();
    store.close().unwrap();
    let disk = disk.crash(CrashPlan::LoseAll);
    let file = harness::checkpoint_file(&disk, "balances", "ckpt").unwrap();
    (disk, file)
}

/// Whether `result` is the typed report of damage to `file`.
fn corrupted<T: std::fmt::Debug>(result: &evstore::Result<T>, file: &Path) -> bool {
    matches!(result, Err(Error::Corrupted { file: f, .. }) if f == file)
}

/// A checkpoint file's checksum covers every byte, so every single bit
/// flip is caught: the load, and a projection starting from it, fail with
/// `Error::Corrupted` naming the file, and the other checkpoints load as
/// they were. So is every truncation, and a save over the damage repairs
/// it.
#[test]
fn every_bit_flip_and_truncation_of_a_checkpoint_file_is_reported() {
    let (disk, file) = closed_store_with_checkpoints();
    let bytes = disk.read_file(&file).unwrap();
    assert_eq!(
        bytes.len(),
        evstore::format::CHECKPOINT_HEADER_LEN + "balances".len()
    );
    let check = |image: &SimDisk, context: &str| {
        let store = harness::open_on(image, Durability::Sync).unwrap();
        let loaded = store.load_checkpoint("balances");
        assert!(corrupted(&loaded, &file), "{context}: {loaded:?}");
        let started = store
            .run_projection("balances", Default::default(), |_| Ok(()))
            .map(|handle| handle.stop());
        assert!(corrupted(&started, &file), "{context}: {started:?}");
        assert_eq!(store.load_checkpoint("a").unwrap(), Some(7), "{context}");
        assert_eq!(
            store.load_checkpoint("proj-all").unwrap(),
            Some(2),
            "{context}"
        );
        store
    };
    for bit in 0..bytes.len() * 8 {
        let image = disk.crash(CrashPlan::KeepAll);
        harness::flip_bit(&image, &file, bit as u64);
        check(&image, &format!("bit {bit}"));
    }
    for len in 0..bytes.len() {
        let image = disk.crash(CrashPlan::KeepAll);
        image.write_file(&file, &bytes[..len]).unwrap();
        let store = check(&image, &format!("cut to {len} bytes"));
        store.save_checkpoint("balances", 99).unwrap();
        assert_eq!(store.load_checkpoint("balances").unwrap(), Some(99));
        drop(store);
        let store = harness::open_on(&image, Durability::Sync).unwrap();
        assert_eq!(store.load_checkpoint("balances").unwrap(), Some(99));
    }
}

// ------------------------------------------------- lifecycle and scavenging

/// The payload of event `n` of the lifecycle workload: findable, distinct.
fn lifecycle_payload(n: u32) -> Vec<u8> {
    format!("[p{n:04}]").repeat(14).into_bytes()
}

/// 80 events over four streams (about five 4 KiB segments), sealed for
/// their streams as subjects.
fn lifecycle_setup(disk: &SimDisk) -> Store {
    let store = Store::open(
        harness::store_dir(),
        harness::sim_options(disk, Durability::Sync).crypto_shredding(true),
    )
    .unwrap();
    for n in 0..80u32 {
        let stream = format!("s{}", n % 4);
        store
            .append(
                &stream,
                ExpectedVersion::Any,
                &[EventData::new("E", lifecycle_payload(n))],
            )
            .unwrap();
    }
    store
}

/// Which lifecycle operations were acknowledged before the crash.
#[derive(Debug, Default, Clone, Copy)]
struct LifecycleAcks {
    max_count: bool,
    hard_delete: bool,
    forget: bool,
    appended: bool,
    soft_delete: bool,
}

/// Metadata, a hard delete, a forgotten subject, scavenges, an append and
/// a soft delete, stopping at the first failure (the crash).
fn lifecycle_ops(store: &Store) -> LifecycleAcks {
    use evstore::{DeleteMode, StreamMetadata};
    let mut acks = LifecycleAcks {
        max_count: store
            .set_stream_metadata(
                "s1",
                ExpectedVersion::NoStream,
                StreamMetadata::new().max_count(3),
            )
            .is_ok(),
        ..LifecycleAcks::default()
    };
    if !acks.max_count {
        return acks;
    }
    acks.hard_delete = store
        .delete_stream("s2", ExpectedVersion::Any, DeleteMode::Hard)
        .is_ok();
    if !acks.hard_delete {
        return acks;
    }
    acks.forget = store.forget("s3").is_ok();
    if !acks.forget || store.scavenge().is_err() {
        return acks;
    }
    acks.appended = store
        .append(
            "s0",
            ExpectedVersion::Any,
            &[EventData::new("E", lifecycle_payload(1000))],
        )
        .is_ok();
    if !acks.appended {
        return acks;
    }
    acks.soft_delete = store
        .delete_stream("s1", ExpectedVersion::Any, DeleteMode::Soft)
        .is_ok();
    if acks.soft_delete {
        let _ = store.scavenge();
    }
    acks
}

/// What a recovered store must read, given what was acknowledged: every
/// acknowledged deletion, truncation and erasure holds (nothing comes
/// back), and every event no operation touched reads back byte for byte.
fn check_lifecycle(store: &Store, acks: LifecycleAcks) -> Result<(), String> {
    let read = |stream: &str| {
        store
            .read_stream(stream, 0, Direction::Forward, usize::MAX)
            .map_err(|e| format!("reading {stream}: {e}"))
    };
    let s0 = read("s0")?;
    let first: Vec<Vec<u8>> = (0..20).map(|i| lifecycle_payload(i * 4)).collect();
    let got: Vec<Vec<u8>> = s0.iter().map(|e| e.payload.to_vec()).collect();
    let extra_ok = match got.len() {
        20 => !acks.appended,
        21 => got[20] == lifecycle_payload(1000),
        _ => false,
    };
    if got.get(..20) != Some(&first[..]) || !extra_ok {
        return Err(format!("s0 reads {} events, not its own", got.len()));
    }
    let s1: Vec<u64> = read("s1")?.iter().map(|e| e.version).collect();
    if acks.soft_delete && !s1.is_empty() {
        return Err(format!("s1 was deleted, yet reads {s1:?}"));
    }
    if acks.max_count && !acks.soft_delete && !(s1 == [17, 18, 19] || s1.is_empty()) {
        return Err(format!("s1 keeps 3 events, yet reads {s1:?}"));
    }
    let s2 = read("s2")?;
    if acks.hard_delete {
        if !s2.is_empty() {
            return Err(format!("s2 was deleted, yet reads {} events", s2.len()));
        }
        let refused = store.append(
            "s2",
            ExpectedVersion::Any,
            &[EventData::new("E", &b"x"[..])],
        );
        if !matches!(refused, Err(Error::StreamDeleted { .. })) {
            return Err(format!("an append to the deleted s2: {refused:?}"));
        }
    }
    let s3 = read("s3")?;
    let erased = s3.iter().filter(|e| e.erased).count();
    let intact = s3
        .iter()
        .enumerate()
        .filter(|(i, e)| !e.erased && e.payload[..] == lifecycle_payload(*i as u32 * 4 + 3)[..])
        .count();
    if s3.len() != 20 || (erased, intact) != (20, 0) && (erased, intact) != (0, 20) {
        return Err(format!(
            "s3: {} events, {erased} erased, {intact} intact",
            s3.len()
        ));
    }
    if acks.forget && erased != 20 {
        return Err("s3 was forgotten, yet reads in the clear".into());
    }
    Ok(())
}

#[test]
fn every_crash_point_of_deletes_metadata_forgetting_and_scavenging() {
    let counting = SimDisk::new();
    let store = lifecycle_setup(&counting);
    let start = counting.mutations();
    let acks = lifecycle_ops(&store);
    assert!(acks.soft_delete, "the workload runs whole without a crash");
    check_lifecycle(&store, acks).unwrap();
    let total = counting.mutations() - start;
    drop(store);
    assert!(total > 40, "{total} mutations");
    let mut cycles = 0;
    for n in 0..=total {
        let disk = SimDisk::new();
        let store = lifecycle_setup(&disk);
        disk.fail_after(Some(disk.mutations() + n));
        let acks = lifecycle_ops(&store);
        for plan in [
            CrashPlan::LoseAll,
            CrashPlan::KeepAll,
            CrashPlan::Torn { seed: n },
            CrashPlan::Garbled { seed: n * 7 + 1 },
        ] {
            let image = disk.crash(plan);
            let options = harness::sim_options(&image, Durability::Sync);
            let reopened = Store::open(harness::store_dir(), options.clone())
                .unwrap_or_else(|e| panic!("crash at {n} of {total} ({plan:?}): open: {e}"));
            let context = |m: String| format!("crash at {n} of {total} ({plan:?}): {m}");
            check_lifecycle(&reopened, acks).map_err(context).unwrap();
            // A scavenge after recovery changes nothing a read returns.
            reopened
                .scavenge()
                .map_err(|e| context(e.to_string()))
                .unwrap();
            check_lifecycle(&reopened, acks).map_err(context).unwrap();
            drop(reopened);
            let again = Store::open(harness::store_dir(), options).unwrap();
            check_lifecycle(&again, acks).map_err(context).unwrap();
            cycles += 1;
        }
        drop(store);
    }
    println!("{cycles} crash-and-recover cycles over {total} mutations");
}

/// A payload found nowhere else on the disk.
fn scavenge_payload(stream: &str, n: u32) -> Vec<u8> {
    format!("[{stream}:{n:04}]").into_bytes().repeat(6)
}

/// Events of "gone" first, then enough of "kept" to seal the segments that
/// hold them: every "gone" event is in a sealed segment.
fn scavenge_setup(disk: &SimDisk) -> Store {
    let store = Store::open(
        harness::store_dir(),
        harness::sim_options(disk, Durability::Sync),
    )
    .unwrap();
    for n in 0..12u32 {
        let event = EventData::new("E", scavenge_payload("gone", n));
        store
            .append("gone", ExpectedVersion::Any, &[event])
            .unwrap();
    }
    for n in 0..60u32 {
        let event = EventData::new("E", scavenge_payload("kept", n));
        store
            .append("kept", ExpectedVersion::Any, &[event])
            .unwrap();
    }
    store
}

/// Whether any file of the disk holds `needle`.
fn disk_holds(disk: &SimDisk, needle: &[u8]) -> bool {
    disk.files().iter().any(|path| {
        disk.read_file(path)
            .is_ok_and(|bytes| bytes.windows(needle.len()).any(|w| w == needle))
    })
}

#[test]
fn every_crash_point_of_a_scavenge_keeps_what_it_acknowledged_erased_off_the_disk() {
    // A hard delete, an erasure of the first "kept" events, a scavenge, an
    // append; stopping at the first failure. Returns how far it got.
    let ops = |store: &Store| -> u32 {
        use evstore::DeleteMode;
        if store
            .delete_stream("gone", ExpectedVersion::Any, DeleteMode::Hard)
            .is_err()
        {
            return 0;
        }
        if store.erase_events("kept", 0, 3).is_err() {
            return 1;
        }
        match store.scavenge() {
            Ok(report) if report.events_redacted >= 16 => {}
            Ok(report) => panic!("the scavenge missed events: {report:?}"),
            Err(_) => return 2,
        }
        let late = EventData::new("E", scavenge_payload("kept", 60));
        if store.append("kept", ExpectedVersion::Any, &[late]).is_err() {
            return 3;
        }
        4
    };
    let counting = SimDisk::new();
    let store = scavenge_setup(&counting);
    let start = counting.mutations();
    assert_eq!(ops(&store), 4, "the workload runs whole without a crash");
    let total = counting.mutations() - start;
    drop(store);
    let mut scavenged_cycles = 0;
    for n in 0..=total {
        let disk = SimDisk::new();
        let store = scavenge_setup(&disk);
        disk.fail_after(Some(disk.mutations() + n));
        let done = ops(&store);
        for plan in [
            CrashPlan::LoseAll,
            CrashPlan::KeepAll,
            CrashPlan::Torn { seed: n },
            CrashPlan::Garbled { seed: n * 3 + 1 },
        ] {
            let image = disk.crash(plan);
            let context = format!("crash at {n} of {total} ({plan:?}), {done} steps acknowledged");
            if done >= 3 {
                // Acknowledged scavenged: whatever the crash kept or lost,
                // no byte of a removed event is on the disk.
                for (stream, n) in (0..12)
                    .map(|n| ("gone", n))
                    .chain((0..4).map(|n| ("kept", n)))
                {
                    assert!(
                        !disk_holds(&image, &scavenge_payload(stream, n)),
                        "{context}: {stream} {n} is still on the disk"
                    );
                }
                scavenged_cycles += 1;
            }
            let options = harness::sim_options(&image, Durability::Sync);
            let reopened = Store::open(harness::store_dir(), options)
                .unwrap_or_else(|e| panic!("{context}: open: {e}"));
            let kept = reopened
                .read_stream("kept", 0, Direction::Forward, usize::MAX)
                .unwrap_or_else(|e| panic!("{context}: read: {e}"));
            let live: Vec<u64> = kept
                .iter()
                .filter(|e| !e.erased)
                .map(|e| e.version)
                .collect();
            // Erased events read as erased once the erasure is
            // acknowledged (before, either way: it was in flight); the late
            // append may or may not be there.
            let whole = |first: u64| {
                let expected: Vec<u64> = (first..60).collect();
                live.starts_with(&expected) && live.len() <= expected.len() + 1
            };
            assert!(
                whole(4) || (done < 2 && whole(0)),
                "{context}: kept reads {live:?}"
            );
            for event in kept.iter().filter(|e| !e.erased) {
                assert_eq!(
                    &event.payload[..],
                    &scavenge_payload("kept", event.version as u32)[..],
                    "{context}"
                );
            }
            if done >= 1 {
                let gone = reopened
                    .read_stream("gone", 0, Direction::Forward, usize::MAX)
                    .unwrap_or_else(|e| panic!("{context}: read: {e}"));
                assert!(gone.is_empty(), "{context}: gone reads {}", gone.len());
            }
        }
        drop(store);
    }
    assert!(scavenged_cycles > 0, "no crash came after the scavenge");
    println!(
        "{scavenged_cycles} crash images checked after an acknowledged scavenge, {total} mutations"
    );
}

/// Events of "gone" filling several segments, then "kept"; retries are
/// recognised among the last 8 events only, so a scavenge may remove the
/// segments that hold nothing but "gone" once it is deleted.
fn removal_setup(disk: &SimDisk) -> Store {
    let options = harness::sim_options(disk, Durability::Sync).idempotency_window(8);
    let store = Store::open(harness::store_dir(), options).unwrap();
    for n in 0..60u32 {
        let event = EventData::new("E", scavenge_payload("gone", n));
        store
            .append("gone", ExpectedVersion::Any, &[event])
            .unwrap();
    }
    for n in 0..40u32 {
        let event = EventData::new("E", scavenge_payload("kept", n));
        store
            .append("kept", ExpectedVersion::Any, &[event])
            .unwrap();
    }
    store
}

#[test]
fn every_crash_point_of_a_segment_removal_leaves_the_segment_whole_or_removed() {
    // A soft delete, a scavenge that removes segments, an append to the
    // deleted stream (its versions go on), another scavenge.
    let ops = |store: &Store| -> u32 {
        use evstore::DeleteMode;
        if store
            .delete_stream("gone", ExpectedVersion::Any, DeleteMode::Soft)
            .is_err()
        {
            return 0;
        }
        match store.scavenge() {
            Ok(report) if report.segments_removed >= 2 => {}
            Ok(report) => panic!("the scavenge removed too little: {report:?}"),
            Err(_) => return 1,
        }
        let back = EventData::new("E", scavenge_payload("back", 0));
        if store
            .append("gone", ExpectedVersion::Exact(60), &[back])
            .is_err()
        {
            return 2;
        }
        if store.scavenge().is_err() {
            return 3;
        }
        4
    };
    let counting = SimDisk::new();
    let store = removal_setup(&counting);
    let start = counting.mutations();
    assert_eq!(ops(&store), 4, "the workload runs whole without a crash");
    let total = counting.mutations() - start;
    drop(store);
    let mut removed_cycles = 0;
    for n in 0..=total {
        let disk = SimDisk::new();
        let store = removal_setup(&disk);
        disk.fail_after(Some(disk.mutations() + n));
        let done = ops(&store);
        for plan in [
            CrashPlan::LoseAll,
            CrashPlan::KeepAll,
            CrashPlan::Torn { seed: n },
            CrashPlan::Garbled { seed: n * 5 + 3 },
        ] {
            let image = disk.crash(plan);
            let context = format!("crash at {n} of {total} ({plan:?}), {done} steps acknowledged");
            if done >= 2 {
                // Acknowledged removed: no byte of a "gone" event is left.
                for n in 0..60 {
                    assert!(
                        !disk_holds(&image, &scavenge_payload("gone", n)),
                        "{context}: gone {n} is still on the disk"
                    );
                }
                removed_cycles += 1;
            }
            let options = harness::sim_options(&image, Durability::Sync).idempotency_window(8);
            let reopened = Store::open(harness::store_dir(), options.clone())
                .unwrap_or_else(|e| panic!("{context}: open: {e}"));
            let check = |store: &Store, when: &str| {
                let context = format!("{context}, {when}");
                let kept = store
                    .read_stream("kept", 0, Direction::Forward, usize::MAX)
                    .unwrap_or_else(|e| panic!("{context}: read: {e}"));
                let versions: Vec<u64> = kept.iter().map(|e| e.version).collect();
                assert_eq!(versions, (0..40).collect::<Vec<_>>(), "{context}");
                let gone = store
                    .read_stream("gone", 0, Direction::Forward, usize::MAX)
                    .unwrap_or_else(|e| panic!("{context}: read: {e}"));
                let all = store
                    .read_all(0, Direction::Forward, usize::MAX)
                    .unwrap_or_else(|e| panic!("{context}: read: {e}"));
                let version = store.stream_version("gone").unwrap();
                if done >= 1 {
                    // Deleted: at most the event appended after it, at the
                    // version after the tombstone's.
                    assert!(gone.len() <= 1, "{context}: gone reads {gone:?}");
                    if let Some(event) = gone.first() {
                        assert_eq!(event.version, 61, "{context}");
                    }
                    assert!(
                        !all.iter().any(|e| &*e.stream == "gone" && e.version < 60),
                        "{context}: a deleted event is read"
                    );
                }
                if done >= 3 {
                    assert_eq!(version, Some(61), "{context}");
                } else if done >= 1 {
                    assert!(matches!(version, Some(60 | 61)), "{context}: {version:?}");
                } else {
                    assert!(matches!(version, Some(59 | 60)), "{context}: {version:?}");
                }
                let positions: Vec<u64> = all.iter().map(|e| e.position).collect();
                assert!(
                    positions.windows(2).all(|w| w[0] < w[1]),
                    "{context}: {positions:?}"
                );
            };
            check(&reopened, "after recovery");
            let report =
                evstore::verify::verify_store_on(&image, &harness::store_dir(), &mut |_| {})
                    .unwrap_or_else(|e| panic!("{context}: verify: {e}"));
            assert!(report.is_clean(), "{context}: {:#?}", report.findings);
            reopened
                .scavenge()
                .unwrap_or_else(|e| panic!("{context}: scavenge: {e}"));
            check(&reopened, "after a scavenge");
            drop(reopened);
            let again = Store::open(harness::store_dir(), options)
                .unwrap_or_else(|e| panic!("{context}: reopen: {e}"));
            check(&again, "after a reopen");
        }
        drop(store);
    }
    assert!(removed_cycles > 0, "no crash came after the removal");
    println!(
        "{removed_cycles} crash images checked after an acknowledged removal, {total} mutations"
    );
}
