//! Crash at every storage operation of fixed workloads, as SQLite's tests
//! do: for each N, the disk refuses everything after its N-th mutation (the
//! process died there), then loses power with the unsynced writes lost,
//! kept, torn or garbled; the recovered store must hold every durable
//! acknowledged append, byte-identical, and nothing that was never appended.
//! Also: a crash in the middle of recovery itself, and every single bit flip
//! of a sealed and of an active segment.

mod harness;

use evstore::storage::{CrashPlan, SimDisk};
use evstore::{Direction, Durability, Error};
use harness::{EventSpec, ExpectedSpec, Op};
use std::path::PathBuf;

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
