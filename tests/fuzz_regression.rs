//! The fuzz targets' logic on stable: the checked-in corpus under
//! `fuzz/corpus/<target>/` plus a few thousand deterministic random inputs
//! per target.

mod common;
mod harness;

use common::Rng;

use std::path::Path;

fn replay_corpus(target: &str, run: fn(&[u8])) -> usize {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("fuzz")
        .join("corpus")
        .join(target);
    let Ok(entries) = std::fs::read_dir(&dir) else {
        return 0;
    };
    let mut count = 0;
    for entry in entries {
        let path = entry.expect("corpus entry").path();
        let data = std::fs::read(&path).expect("corpus file");
        run(&data);
        count += 1;
    }
    count
}

fn random_cases(seed: u64, cases: usize, max_len: usize, run: fn(&[u8])) {
    let mut rng = Rng(seed);
    for _ in 0..cases {
        run(&rng.bytes(max_len));
    }
}

#[test]
fn record_decode_corpus_and_random_inputs() {
    replay_corpus("record_decode", harness::record_decode);
    random_cases(0x00DE_C0DE, 2000, 600, harness::record_decode);
}

#[test]
fn crash_recovery_corpus_and_random_inputs() {
    replay_corpus("crash_recovery", harness::crash_recovery);
    random_cases(0xC4A5_4000, 2000, 400, harness::crash_recovery);
}

/// The `snapshot-*` seeds of `crash_recovery` save snapshots (several per
/// stream, so a fault-free run prunes) and crash or flip a bit while at it:
/// a change to how inputs decode that loses that fails here.
#[test]
fn crash_recovery_snapshot_seeds_save_and_prune_snapshots() {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("fuzz/corpus/crash_recovery");
    let mut seeds = 0;
    for entry in std::fs::read_dir(&dir).expect("corpus") {
        let path = entry.expect("corpus entry").path();
        let name = path.file_name().unwrap().to_string_lossy().into_owned();
        if !name.starts_with("snapshot-") {
            continue;
        }
        let data = std::fs::read(&path).expect("corpus file");
        let input = harness::CrashInput::decode(&data).expect("decodes");
        let saves = input
            .ops
            .iter()
            .filter(|op| matches!(op, harness::Op::Snapshot { .. }))
            .count();
        assert!(saves >= 4, "{name}: {saves} snapshot saves");
        assert!(
            input.fail_at.is_some() != input.flip.is_some(),
            "{name}: {input:?}"
        );
        let total = harness::count_mutations(&input.ops, input.durability);
        if let Some(n) = input.fail_at {
            assert!(u64::from(n) < total, "{name}: crash at {n} of {total}");
        }
        let disk = evstore::storage::SimDisk::new();
        let mut model = harness::Model::for_store(input.durability);
        let mut store = Some(harness::open_on(&disk, input.durability).expect("open"));
        let mut reopen = || harness::open_on(&disk, input.durability);
        harness::run_ops(&input.ops, &mut model, &mut store, &mut reopen, true);
        assert!(
            model
                .snapshots
                .values()
                .any(|s| s.acked > harness::SNAPSHOTS_KEPT),
            "{name}: {:?}",
            model.snapshots
        );
        seeds += 1;
    }
    assert!(seeds >= 2, "{seeds} snapshot seeds");
}

/// The `checkpoint-*` seeds of `crash_recovery` save checkpoints and run
/// projections, then crash inside one of those (at a storage operation of
/// a checkpoint save or a projection run) or flip a bit of a checkpoint
/// file after a clean close: a change to how inputs decode that loses that
/// fails here.
#[test]
fn crash_recovery_checkpoint_seeds_save_checkpoints_and_run_projections() {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("fuzz/corpus/crash_recovery");
    let (mut crashes, mut flips) = (0, 0);
    for entry in std::fs::read_dir(&dir).expect("corpus") {
        let path = entry.expect("corpus entry").path();
        let name = path.file_name().unwrap().to_string_lossy().into_owned();
        if !name.starts_with("checkpoint-") {
            continue;
        }
        let data = std::fs::read(&path).expect("corpus file");
        let input = harness::CrashInput::decode(&data).expect("decodes");
        assert_eq!(input.encode(), data, "{name}: encodes back to its bytes");
        let count = |f: fn(&harness::Op) -> bool| input.ops.iter().filter(|op| f(op)).count();
        assert!(
            count(|op| matches!(op, harness::Op::Checkpoint { .. })) >= 3,
            "{name}"
        );
        assert!(
            count(|op| matches!(op, harness::Op::Project { .. })) >= 3,
            "{name}"
        );
        let disk = evstore::storage::SimDisk::new();
        let mut model = harness::Model::for_store(input.durability);
        let mut store = Some(harness::open_on(&disk, input.durability).expect("open"));
        let mut reopen = || harness::open_on(&disk, input.durability);
        harness::run_ops(&input.ops, &mut model, &mut store, &mut reopen, true);
        assert!(
            model.checkpoints.len() >= 2,
            "{name}: {:?}",
            model.checkpoints
        );
        assert!(
            model
                .projections
                .values()
                .any(|p| p.runs_ok >= 2 && p.calls > 0),
            "{name}: {:?}",
            model.projections
        );
        match (input.fail_at, input.flip) {
            (Some(n), None) => {
                let ranges = harness::op_mutations(&input.ops, input.durability);
                let (op, _) = input
                    .ops
                    .iter()
                    .zip(&ranges)
                    .find(|(_, r)| r.contains(&u64::from(n)))
                    .unwrap_or_else(|| panic!("{name}: no op at mutation {n}"));
                assert!(
                    matches!(
                        op,
                        harness::Op::Checkpoint { .. } | harness::Op::Project { .. }
                    ),
                    "{name}: the crash at {n} is in {op:?}"
                );
                crashes += 1;
            }
            (None, Some(flip)) => {
                store.take().unwrap().close().expect("close");
                let image = disk.crash(evstore::storage::CrashPlan::LoseAll);
                let flipped = harness::flip_bits(&image, &[flip]);
                assert!(
                    !flipped.is_empty()
                        && flipped
                            .iter()
                            .all(|p| p.extension().is_some_and(|x| x == "ckpt")),
                    "{name}: flips {flipped:?}"
                );
                flips += 1;
            }
            other => panic!("{name}: {other:?}"),
        }
        harness::crash_recovery(&data);
    }
    assert!(
        crashes >= 3 && flips >= 2,
        "{crashes} crash seeds, {flips} flip seeds"
    );
}

#[test]
fn api_corpus_and_random_inputs() {
    replay_corpus("api", harness::api);
    random_cases(0x0A91_0000, 2000, 400, harness::api);
}

#[test]
fn index_decode_corpus_and_random_inputs() {
    replay_corpus("index_decode", harness::index_decode);
    random_cases(0x01DE_0000, 2000, 600, harness::index_decode);
}

#[test]
fn crash_during_index_file_writes() {
    let cases = harness::crash_during_sealing_cases();
    assert!(cases > 0);
}
