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
fn lifecycle_corpus_and_random_inputs() {
    replay_corpus("lifecycle", harness::lifecycle::lifecycle);
    random_cases(0x11FE_C7C1, 400, 400, harness::lifecycle::lifecycle);
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

/// The forger behind `record_decode`'s second try computes the store's
/// checksums: resealing a sound segment leaves it as it is, and a record
/// whose tags were swapped and resealed passes its checksum, so the tag
/// checks behind it are what report the damage.
#[test]
fn resealed_segments_reach_the_tag_checks() {
    use evstore::storage::{CrashPlan, SimDisk};
    use evstore::{Direction, Durability, Error, EventData, ExpectedVersion};
    let disk = SimDisk::new();
    let store = harness::open_on(&disk, Durability::Sync).unwrap();
    store
        .append(
            "s",
            ExpectedVersion::Any,
            &[
                EventData::new("T", &b"one"[..]).with_tags(["b2", "a1"]),
                EventData::new("T", &b"two"[..]),
            ],
        )
        .unwrap();
    store.close().unwrap();
    let disk = disk.crash(CrashPlan::LoseAll);
    let segment = harness::store_dir()
        .join("segments")
        .join(format!("{:020}.log", 0));
    let bytes = disk.read_file(&segment).unwrap();
    let mut resealed = bytes.clone();
    harness::reseal_segment(&mut resealed);
    assert_eq!(resealed, bytes, "resealing a sound segment changed it");
    // The first record's tags section, sorted: 2 "a1" 2 "b2".
    let sorted = [2, 0, b'a', b'1', 2, 0, b'b', b'2'];
    let at = bytes
        .windows(sorted.len())
        .position(|w| w == sorted)
        .expect("the tags section");
    let mut swapped = bytes.clone();
    swapped[at..at + 8].copy_from_slice(&[2, 0, b'b', b'2', 2, 0, b'a', b'1']);
    for (reseal, what) in [(false, "checksum"), (true, "ascending order")] {
        let image = disk.crash(CrashPlan::KeepAll);
        let mut damaged = swapped.clone();
        if reseal {
            harness::reseal_segment(&mut damaged);
        }
        image.write_file(&segment, &damaged).unwrap();
        let read = harness::open_on(&image, Durability::Sync)
            .and_then(|store| store.read_all(0, Direction::Forward, usize::MAX));
        match read {
            Err(Error::Corrupted { file, reason, .. }) => {
                assert_eq!(file, segment);
                assert!(reason.contains(what), "resealed {reseal}: {reason}");
            }
            other => panic!("resealed {reseal}: {other:?}"),
        }
    }
}

/// The `commit-*` seeds of `crash_recovery` and `api` commit to several
/// streams with tags, check-only streams and conditions, some of which
/// fail, and retry an acknowledged commit; the crash seeds crash inside a
/// commit (or flip a bit after a clean close). A change to how inputs
/// decode that loses that fails here.
#[test]
fn commit_seeds_commit_across_streams_and_crash_inside_commits() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("fuzz/corpus");
    let (mut crashes, mut api_seeds) = (0, 0);
    for target in ["crash_recovery", "api"] {
        for entry in std::fs::read_dir(root.join(target)).expect("corpus") {
            let path = entry.expect("corpus entry").path();
            let name = path.file_name().unwrap().to_string_lossy().into_owned();
            if !name.starts_with("commit-") {
                continue;
            }
            let data = std::fs::read(&path).expect("corpus file");
            // An `api` input is a `crash_recovery` one cut after its ops.
            let input = harness::CrashInput::decode(&data).expect("decodes");
            let commits = input
                .ops
                .iter()
                .filter(|op| matches!(op, harness::Op::Commit { .. }))
                .count();
            assert!(commits >= 5, "{name}: {commits} commits");
            let disk = evstore::storage::SimDisk::new();
            let mut model = harness::Model::for_store(input.durability);
            let mut store = Some(harness::open_on(&disk, input.durability).expect("open"));
            let mut reopen = || harness::open_on(&disk, input.durability);
            harness::run_ops(&input.ops, &mut model, &mut store, &mut reopen, true);
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
            let refused = |what: &str| model.refusals.iter().any(|r| r.1 == what);
            assert!(
                acked >= 3 && tagged >= 8,
                "{name}: {acked} commits, {tagged} tagged"
            );
            assert!(
                refused("AppendConditionFailed") && refused("WrongExpectedVersion"),
                "{name}: {:?}",
                model.refusals
            );
            if target == "api" {
                harness::api(&data);
                api_seeds += 1;
                continue;
            }
            assert_eq!(input.encode(), data, "{name}: encodes back to its bytes");
            if let Some(n) = input.fail_at {
                let ranges = harness::op_mutations(&input.ops, input.durability);
                let (op, _) = input
                    .ops
                    .iter()
                    .zip(&ranges)
                    .find(|(_, r)| r.contains(&u64::from(n)))
                    .unwrap_or_else(|| panic!("{name}: no op at mutation {n}"));
                assert!(
                    matches!(op, harness::Op::Commit { .. }),
                    "{name}: the crash at {n} is in {op:?}"
                );
                crashes += 1;
            }
            harness::crash_recovery(&data);
        }
    }
    assert!(
        crashes >= 4 && api_seeds >= 2,
        "{crashes} crash seeds, {api_seeds} api seeds"
    );
}

/// Every selector of `COMMIT_SELECTOR`'s band decodes as an `Op::Commit`,
/// which encodes to bytes that decode as the same op, whatever its parts,
/// check and condition.
#[test]
fn commit_ops_encode_to_what_decodes_as_them() {
    use arbitrary::{Arbitrary, Unstructured};
    let mut rng = Rng(0xC0_4417);
    let band = harness::COMMIT_SELECTOR..harness::COMMIT_SELECTOR_END;
    let (mut parts, mut checks, mut conditions) = (0, 0, 0);
    for i in 0..2000u32 {
        let selector = band.start + (band.end - band.start) / 2000 * i;
        let mut bytes = selector.to_le_bytes().to_vec();
        bytes.extend(rng.bytes(200));
        let op = harness::Op::arbitrary(&mut Unstructured::new(&bytes)).expect("decodes");
        let harness::Op::Commit {
            parts: p,
            check,
            condition,
            ..
        } = &op
        else {
            panic!("selector {selector:#x} decodes as {op:?}");
        };
        parts += p.len();
        checks += usize::from(check.is_some());
        conditions += usize::from(condition.is_some());
        let mut encoded = Vec::new();
        op.encode(&mut encoded);
        let decoded = harness::Op::arbitrary(&mut Unstructured::new(&encoded)).expect("decodes");
        assert_eq!(format!("{decoded:?}"), format!("{op:?}"));
    }
    assert!(
        parts > 1000 && checks > 500 && conditions > 500,
        "{parts} parts, {checks} checks, {conditions} conditions"
    );
}

/// The recovery check rejects any part of a commit: a store holding only
/// its first stream's events, only its second's, or all of them with a tag
/// lost, fails `check_recovered` against the model of the acknowledged
/// commit; the whole commit passes.
#[test]
fn check_recovered_rejects_part_of_a_commit() {
    use evstore::storage::SimDisk;
    use evstore::{Durability, ExpectedVersion};
    use harness::{ConditionSpec, EventSpec, ExpectedSpec, Op, PartSpec, TaggedEventSpec};
    let event = |len: u16, tags: u8| TaggedEventSpec {
        event: EventSpec {
            type_index: 1,
            payload_len: len,
            metadata_len: 3,
            fill: 7,
        },
        tags,
    };
    let op = Op::Commit {
        parts: vec![
            PartSpec {
                stream: 0,
                expected: ExpectedSpec::NoStream,
                events: vec![event(40, 0b101), event(50, 0b1)],
            },
            PartSpec {
                stream: 3,
                expected: ExpectedSpec::Any,
                events: vec![event(60, 0b1000)],
            },
        ],
        check: None,
        condition: Some(ConditionSpec {
            tag: 0,
            shape: 0,
            after: 1,
        }),
        sync: true,
    };
    let disk = SimDisk::new();
    let mut model = harness::Model::for_store(Durability::Sync);
    let mut store = Some(harness::open_on(&disk, Durability::Sync).unwrap());
    let mut reopen = || harness::open_on(&disk, Durability::Sync);
    harness::run_ops(&[op], &mut model, &mut store, &mut reopen, true);
    let attempt = model.attempts[0].clone();
    assert!(matches!(attempt.outcome, harness::Outcome::Acked(_)));
    let (first, second) = attempt.events.split_at(2);
    let stored = |write: &dyn Fn(&evstore::Store)| {
        let disk = SimDisk::new();
        let store = harness::open_on(&disk, Durability::Sync).unwrap();
        write(&store);
        harness::check_recovered(&model, &store)
    };
    let whole = stored(&|s| {
        s.commit(&attempt.resend(Durability::Sync).unwrap())
            .unwrap();
    });
    assert!(whole.is_ok(), "{whole:?}");
    let halves = [
        (
            "only the first stream",
            "cut after 2 of 3",
            first.to_vec(),
            "order-1",
        ),
        (
            "only the second stream",
            "half a batch",
            second.to_vec(),
            "user-ada",
        ),
    ];
    for (what, error, events, stream) in halves {
        let found = stored(&|s| {
            s.append(stream, ExpectedVersion::Any, &events).unwrap();
        });
        assert!(
            found.as_ref().is_err_and(|e| e.contains(error)),
            "{what}: {found:?}"
        );
    }
    let untagged = stored(&|s| {
        let mut events = attempt.events.clone();
        events[0] = events[0].clone().with_tags(["course:c1"]);
        s.commit(
            &evstore::Commit::new()
                .append("order-1", ExpectedVersion::Any, events[..2].to_vec())
                .append("user-ada", ExpectedVersion::Any, events[2..].to_vec()),
        )
        .unwrap();
    });
    assert!(
        untagged.as_ref().is_err_and(|e| e.contains("differs")),
        "a tag lost: {untagged:?}"
    );
}
