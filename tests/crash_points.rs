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

/// Flips every bit of `file` in turn: each flip is reported as corruption
/// naming the file and an offset at or before the flip, or changes nothing
/// any read returns.
fn flip_every_bit(
    disk: &SimDisk,
    file: &PathBuf,
    events: &[evstore::RecordedEvent],
) -> (usize, Vec<usize>) {
    let pristine = disk.read_file(file).unwrap();
    let (mut detected, mut harmless) = (0, Vec::new());
    for bit in 0..pristine.len() * 8 {
        let image = disk.crash(CrashPlan::KeepAll);
        harness::flip_bit(&image, file, bit as u64);
        match harness::open_on(&image, Durability::Sync) {
            Err(Error::Corrupted {
                file: f, offset, ..
            }) => {
                assert_eq!(&f, file, "bit {bit}");
                assert!(offset <= (bit / 8) as u64, "bit {bit} reported at {offset}");
                detected += 1;
            }
            Err(Error::UnsupportedFormat { file: f, .. }) => {
                assert_eq!(&f, file, "bit {bit}");
                assert!(
                    (64..96).contains(&bit),
                    "bit {bit} is not in the version field"
                );
                detected += 1;
            }
            Err(e) => panic!("bit {bit}: untyped failure {e:?}"),
            Ok(store) => {
                let read = store.read_all(0, Direction::Forward, usize::MAX).unwrap();
                assert_eq!(read, events, "bit {bit} changed what reads return");
                harmless.push(bit);
            }
        }
    }
    (detected, harmless)
}

/// Where the bytes a segment holds end, by walking its batch headers.
fn data_end(segment: &[u8]) -> usize {
    let mut at = 64;
    while at + 32 <= segment.len() {
        let len = u32::from_le_bytes(segment[at + 4..at + 8].try_into().unwrap()) as usize;
        if len == 0 {
            break;
        }
        at += len;
    }
    at
}

#[test]
fn every_bit_flip_of_a_sealed_segment_is_detected_or_harmless() {
    let (disk, segments, events) = closed_store();
    let bytes = disk.read_file(&segments[0]).unwrap();
    let end = data_end(&bytes);
    let (detected, harmless) = flip_every_bit(&disk, &segments[0], &events);
    // Everything up to and including the seal is checked; past the seal
    // nothing is read.
    assert!(
        harmless.iter().all(|&bit| bit >= end * 8),
        "undetected flips in data: {:?}",
        &harmless[..harmless.len().min(10)]
    );
    assert_eq!(detected, end * 8);
}

#[test]
fn every_bit_flip_of_the_active_segment_is_detected_or_harmless() {
    let (disk, segments, events) = closed_store();
    let active = segments.last().unwrap();
    let bytes = disk.read_file(active).unwrap();
    let end = data_end(&bytes);
    let (detected, harmless) = flip_every_bit(&disk, active, &events);
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
