//! The read-only verifier on real stores: a sound store is clean with the
//! right counts, each damage of the fault model is a finding naming the file
//! and an offset at or before the damage, what a crash or a running writer
//! normally leaves is not, and no file is ever changed.

mod common;

use common::{flip_byte, TestRng};
use evstore::format::{BATCH_HEADER_LEN, SEGMENT_HEADER_LEN};
use evstore::verify::{verify_store, Finding, VerifyProgress, VerifyReport};
use evstore::{EventData, ExpectedVersion, Options, Store, Uuid};
use std::collections::BTreeMap;
use std::fs;
use std::os::unix::fs::FileExt;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;

const SEGMENT: u64 = 8 << 10;
const STREAMS: u64 = 3;
const APPENDS: u64 = 120;

fn options() -> Options {
    Options::default().segment_size(SEGMENT)
}

/// Appends the same sizes of events whatever `seed`, so two stores built with
/// different seeds have the same layout and differ only in their event ids.
/// Returns the number of events.
fn build_store(dir: &Path, seed: u64) -> u64 {
    let store = Store::open(dir, options()).unwrap();
    let mut sizes = TestRng::new(7);
    let mut n = 0u64;
    for i in 0..APPENDS {
        let stream = format!("acct-{}", i % STREAMS);
        let events: Vec<EventData> = (0..1 + i % STREAMS)
            .map(|j| {
                n += 1;
                EventData::new(
                    "Deposited",
                    vec![(i + j) as u8; 40 + sizes.below(40) as usize],
                )
                .with_id(Uuid::from_u128((u128::from(seed) << 64) | u128::from(n)))
            })
            .collect();
        store
            .append(&stream, ExpectedVersion::Any, &events)
            .unwrap();
    }
    store.save_snapshot("acct-0", 10, b"state at 10").unwrap();
    store.save_snapshot("acct-0", 20, b"state at 20").unwrap();
    store.save_snapshot("acct-1", 5, b"state at 5").unwrap();
    store.save_checkpoint("projection-a", 100).unwrap();
    store.save_checkpoint("projection-b", n).unwrap();
    store.close().unwrap();
    n
}

/// Every file and directory under `dir`, with the bytes of each file.
fn fingerprint(dir: &Path) -> BTreeMap<PathBuf, Option<Vec<u8>>> {
    let mut out = BTreeMap::new();
    let mut todo = vec![dir.to_path_buf()];
    while let Some(at) = todo.pop() {
        for entry in fs::read_dir(&at).unwrap() {
            let path = entry.unwrap().path();
            if path.is_dir() {
                out.insert(path.clone(), None);
                todo.push(path);
            } else {
                out.insert(path.clone(), Some(fs::read(&path).unwrap()));
            }
        }
    }
    out
}

/// Verifies `dir`, checking that nothing changed and that progress went
/// from nothing to everything, never backwards, with a fixed total.
fn verify(dir: &Path) -> VerifyReport {
    let before = fingerprint(dir);
    let mut calls: Vec<(u64, u64)> = Vec::new();
    let report = verify_store(dir, &mut |p: &VerifyProgress| {
        calls.push((p.bytes_checked, p.bytes_total));
    })
    .unwrap();
    assert!(fingerprint(dir) == before, "verification changed the store");
    let total = calls.first().expect("progress was reported").1;
    assert!(calls.iter().all(|c| c.1 == total), "{calls:?}");
    assert!(calls.windows(2).all(|w| w[0].0 <= w[1].0), "{calls:?}");
    assert_eq!(calls.last().unwrap().0, total);
    assert_eq!(report.bytes_checked, total);
    report
}

fn files_with_ext(dir: &Path, ext: &str) -> Vec<PathBuf> {
    let mut found = Vec::new();
    let mut todo = vec![dir.to_path_buf()];
    while let Some(at) = todo.pop() {
        let Ok(entries) = fs::read_dir(&at) else {
            continue;
        };
        for entry in entries {
            let path = entry.unwrap().path();
            if path.is_dir() {
                todo.push(path);
            } else if path.extension().is_some_and(|x| x == ext) {
                found.push(path);
            }
        }
    }
    found.sort();
    found
}

fn segments(dir: &Path) -> Vec<PathBuf> {
    files_with_ext(&dir.join("segments"), "log")
}

fn index_of(segment: &Path) -> PathBuf {
    segment.with_extension("idx")
}

fn postings_of(segment: &Path) -> PathBuf {
    segment.with_extension("tags")
}

/// A store whose events carry tags: the same layout whatever `letter`
/// (every tag is as long), with different tags.
fn build_tagged_store(dir: &Path, letter: char) {
    let store = Store::open(dir, options()).unwrap();
    for i in 0..APPENDS {
        let event = EventData::new("Tagged", vec![i as u8; 48])
            .with_tags([format!("k:{letter}{}", i % 4)])
            .with_id(Uuid::from_u128(u128::from(i) + 1));
        store
            .append(
                &format!("s-{}", i % STREAMS),
                ExpectedVersion::Any,
                &[event],
            )
            .unwrap();
    }
    store.close().unwrap();
}

fn snapshot_file(dir: &Path, version: u64) -> PathBuf {
    let name = format!("{version:020}.snap");
    files_with_ext(&dir.join("snapshots"), "snap")
        .into_iter()
        .find(|p| p.file_name().is_some_and(|n| n == name.as_str()))
        .unwrap()
}

fn checkpoint_file(dir: &Path, prefix: &str) -> PathBuf {
    files_with_ext(&dir.join("checkpoints"), "ckpt")
        .into_iter()
        .find(|p| p.file_name().unwrap().to_string_lossy().starts_with(prefix))
        .unwrap()
}

/// The batches of a segment: (offset, kind, length), walked from its header
/// up to the first zero or implausible length.
fn batches(segment: &Path) -> Vec<(u64, u32, u64)> {
    let bytes = fs::read(segment).unwrap();
    let mut at = SEGMENT_HEADER_LEN;
    let mut out = Vec::new();
    while at + BATCH_HEADER_LEN <= bytes.len() {
        let len = u32::from_le_bytes(bytes[at + 4..at + 8].try_into().unwrap()) as usize;
        let kind = u32::from_le_bytes(bytes[at + 8..at + 12].try_into().unwrap());
        if len < BATCH_HEADER_LEN || at + len > bytes.len() {
            break;
        }
        out.push((at as u64, kind, len as u64));
        at += len;
    }
    out
}

/// Offset of a byte inside the first record of the segment's first batch
/// of events.
fn inside_first_record(segment: &Path) -> u64 {
    let (at, _, _) = batches(segment)
        .into_iter()
        .find(|b| b.1 == 1)
        .expect("a batch of events");
    at + BATCH_HEADER_LEN as u64 + 8
}

#[track_caller]
fn expect_finding<'r>(report: &'r VerifyReport, file: &Path, at_or_before: u64) -> &'r Finding {
    let found = report
        .findings
        .iter()
        .find(|f| f.file == file)
        .unwrap_or_else(|| panic!("no finding for {}: {:#?}", file.display(), report.findings));
    assert!(
        found.offset <= at_or_before,
        "{found} is past the damage at {at_or_before}"
    );
    assert!(!report.is_clean());
    found
}

#[track_caller]
fn expect_only_findings_for(report: &VerifyReport, files: &[&Path]) {
    for found in &report.findings {
        assert!(
            files.iter().any(|f| found.file == *f),
            "unexpected finding {found}; all: {:#?}",
            report.findings
        );
    }
}

#[test]
fn a_sound_store_is_clean_with_the_right_counts() {
    let dir = tempfile::tempdir().unwrap();
    let events = build_store(dir.path(), 1);
    let segment_files = segments(dir.path());
    assert!(segment_files.len() >= 4, "{segment_files:?}");

    let report = verify(dir.path());
    assert!(report.is_clean(), "{:#?}", report.findings);
    assert_eq!(report.events, events);
    assert_eq!(report.segments, segment_files.len());
    assert_eq!(report.sealed_segments, segment_files.len() - 1);
    assert_eq!(report.index_files, segment_files.len() - 1);
    assert_eq!(report.snapshots, 3);
    assert_eq!(report.checkpoints, 2);
    assert_eq!(report.torn_tail_bytes, 0);
    assert_eq!(report.index_files_pending, 0);
    assert_eq!(
        report.postings_files,
        files_with_ext(&dir.path().join("segments"), "tags").len()
    );
    assert!(report.postings_files > 0);
    let sizes: u64 = fingerprint(dir.path())
        .iter()
        .filter(|(path, bytes)| {
            bytes.is_some()
                && path.extension().is_some_and(|x| {
                    ["log", "idx", "tags", "catalog", "snap", "ckpt"]
                        .contains(&&*x.to_string_lossy())
                })
        })
        .map(|(_, bytes)| bytes.as_ref().unwrap().len() as u64)
        .sum();
    assert_eq!(report.bytes_checked, sizes);

    // The store opens as it was, and verifying again finds the same.
    drop(Store::open(dir.path(), options()).unwrap());
    assert!(verify(dir.path()).is_clean());
}

#[test]
fn an_empty_store_and_temporary_files_are_clean() {
    let dir = tempfile::tempdir().unwrap();
    drop(Store::open(dir.path(), options()).unwrap());
    let report = verify(dir.path());
    assert!(report.is_clean(), "{:#?}", report.findings);
    assert_eq!((report.segments, report.events), (1, 0));

    build_store(dir.path(), 1);
    let stream_dir = snapshot_file(dir.path(), 10)
        .parent()
        .unwrap()
        .to_path_buf();
    for temp in [
        dir.path().join("segments/next.tmp"),
        dir.path().join("segments/streams.catalog.tmp"),
        dir.path().join("segments/00000000000000000000.idx.tmp"),
        stream_dir.join("00000000000000000030.snap.tmp"),
        dir.path().join("checkpoints/projection-c.0123.ckpt.tmp"),
    ] {
        fs::write(temp, b"half written").unwrap();
    }
    let report = verify(dir.path());
    assert!(report.is_clean(), "{:#?}", report.findings);
}

#[test]
fn a_store_that_does_not_exist_is_an_error() {
    let dir = tempfile::tempdir().unwrap();
    assert!(verify_store(&dir.path().join("nothing here"), &mut |_| {}).is_err());
}

#[test]
fn a_bit_flip_in_a_sealed_segment_record_is_found() {
    let dir = tempfile::tempdir().unwrap();
    build_store(dir.path(), 1);
    let files = segments(dir.path());
    for target in [&files[0], &files[1]] {
        let first = inside_first_record(target);
        let last_batch = batches(target).into_iter().rfind(|b| b.1 == 1).unwrap();
        let deep = last_batch.0 + last_batch.2 - 3;
        for at in [first, deep] {
            flip_byte(target, at);
            let report = verify(dir.path());
            let found = expect_finding(&report, target, at);
            assert!(found.offset >= SEGMENT_HEADER_LEN as u64, "{found}");
            expect_only_findings_for(&report, &[target]);
            // Every segment was still checked.
            assert_eq!(report.segments, files.len());
            flip_byte(target, at);
        }
    }
    // The segment header and the seal.
    for target in [&files[0], &files[1]] {
        let seal = batches(target).into_iter().rfind(|b| b.1 == 2).unwrap().0;
        for at in [20, seal + 8] {
            flip_byte(target, at);
            let report = verify(dir.path());
            expect_finding(&report, target, at);
            expect_only_findings_for(&report, &[target]);
            flip_byte(target, at);
        }
    }
    assert!(verify(dir.path()).is_clean());
}

#[test]
fn a_bit_flip_in_the_active_segment_before_its_last_durable_mark_is_found() {
    let dir = tempfile::tempdir().unwrap();
    build_store(dir.path(), 1);
    let active = segments(dir.path()).pop().unwrap();
    let layout = batches(&active);
    let mark = layout.iter().rfind(|b| b.1 == 3).expect("a durable mark").0;
    let events: Vec<_> = layout.iter().filter(|b| b.1 == 1 && b.0 < mark).collect();
    assert!(!events.is_empty());
    for at in [
        inside_first_record(&active),
        events[events.len() - 1].0 + events[events.len() - 1].2 - 5,
    ] {
        flip_byte(&active, at);
        let report = verify(dir.path());
        expect_finding(&report, &active, at);
        expect_only_findings_for(&report, &[&active]);
        flip_byte(&active, at);
    }
}

/// Cuts `file` to half its length; returns the new length.
fn cut_in_half(file: &Path) -> u64 {
    let cut = fs::metadata(file).unwrap().len() / 2;
    fs::OpenOptions::new()
        .write(true)
        .open(file)
        .unwrap()
        .set_len(cut)
        .unwrap();
    cut
}

#[test]
fn a_truncated_sealed_segment_is_found() {
    let dir = tempfile::tempdir().unwrap();
    build_store(dir.path(), 1);
    let target = segments(dir.path())[1].clone();
    let cut = cut_in_half(&target);
    let report = verify(dir.path());
    expect_finding(&report, &target, cut);
    expect_only_findings_for(&report, &[&target]);
}

#[test]
fn a_cut_segment_being_written_is_found_though_its_cut_looks_torn() {
    let dir = tempfile::tempdir().unwrap();
    build_store(dir.path(), 1);
    let target = segments(dir.path()).pop().unwrap();
    // What is left may end in a partial batch or in zeros, as a crash
    // leaves a file, but a crash never shortens it.
    let cut = cut_in_half(&target);
    let report = verify(dir.path());
    assert!(
        expect_finding(&report, &target, cut)
            .problem
            .contains("shorter than"),
        "{:#?}",
        report.findings
    );
    expect_only_findings_for(&report, &[&target]);
    assert!(matches!(
        Store::open(dir.path(), options()),
        Err(evstore::Error::Corrupted { .. })
    ));
}

#[test]
fn a_missing_middle_segment_is_found() {
    let dir = tempfile::tempdir().unwrap();
    build_store(dir.path(), 1);
    let files = segments(dir.path());
    let target = files[2].clone();
    fs::remove_file(&target).unwrap();
    let report = verify(dir.path());
    expect_finding(&report, &target, 0);
    // Its index and postings files are left without a segment.
    expect_finding(&report, &index_of(&target), 0);
    expect_finding(&report, &postings_of(&target), 0);
    expect_only_findings_for(
        &report,
        &[&target, &index_of(&target), &postings_of(&target)],
    );
    assert_eq!(report.segments, files.len() - 1);
}

#[test]
fn damaged_missing_and_forged_index_files_are_found() {
    let dir = tempfile::tempdir().unwrap();
    build_store(dir.path(), 1);
    let twin = tempfile::tempdir().unwrap();
    build_store(twin.path(), 2);
    let files = segments(dir.path());
    assert_eq!(files.len(), segments(twin.path()).len());

    for target in [index_of(&files[0]), index_of(&files[files.len() - 2])] {
        let pristine = fs::read(&target).unwrap();
        // Header, body, last byte.
        for at in [20, 70, pristine.len() as u64 - 1] {
            flip_byte(&target, at);
            let report = verify(dir.path());
            expect_finding(&report, &target, at);
            expect_only_findings_for(&report, &[&target]);
            flip_byte(&target, at);
        }

        // A missing one is written again by the next open (a scavenge
        // interrupted between removing it and writing the new one leaves
        // that): pending, not damage.
        fs::remove_file(&target).unwrap();
        let report = verify(dir.path());
        assert!(report.is_clean(), "{:?}", report.findings);
        assert_eq!(report.index_files_pending, 1);

        // Another store's index file of the same segment: every checksum
        // holds, the event ids are not these.
        let name = target.file_name().unwrap();
        fs::copy(twin.path().join("segments").join(name), &target).unwrap();
        assert_ne!(fs::read(&target).unwrap(), pristine);
        let report = verify(dir.path());
        let found = expect_finding(&report, &target, pristine.len() as u64);
        assert!(found.problem.contains("checksums hold"), "{found}");
        expect_only_findings_for(&report, &[&target]);

        fs::write(&target, &pristine).unwrap();
    }
    assert!(verify(dir.path()).is_clean());
}

#[test]
fn damaged_forged_stray_and_misplaced_postings_files_are_found() {
    let dir = tempfile::tempdir().unwrap();
    build_tagged_store(dir.path(), 'a');
    let twin = tempfile::tempdir().unwrap();
    build_tagged_store(twin.path(), 'b');
    let files = segments(dir.path());
    assert_eq!(files.len(), segments(twin.path()).len());
    assert!(files.len() >= 3, "{files:?}");
    let sound = verify(dir.path());
    assert!(sound.is_clean(), "{:?}", sound.findings);
    assert_eq!(sound.postings_files, files.len() - 1);

    let target = postings_of(&files[1]);
    let pristine = fs::read(&target).unwrap();
    // Header, body, last byte.
    for at in [20, 70, pristine.len() as u64 - 1] {
        flip_byte(&target, at);
        let report = verify(dir.path());
        expect_finding(&report, &target, at);
        expect_only_findings_for(&report, &[&target]);
        flip_byte(&target, at);
    }

    // Missing: written again the first time a query needs it.
    fs::remove_file(&target).unwrap();
    let report = verify(dir.path());
    assert!(report.is_clean(), "{:?}", report.findings);
    assert_eq!(report.postings_files, files.len() - 2);

    // The twin's postings file of the same segment: every checksum holds,
    // its tags are not these.
    let name = target.file_name().unwrap();
    fs::copy(twin.path().join("segments").join(name), &target).unwrap();
    assert_ne!(fs::read(&target).unwrap(), pristine);
    let report = verify(dir.path());
    let found = expect_finding(&report, &target, pristine.len() as u64);
    assert!(found.problem.contains("checksums hold"), "{found}");
    expect_only_findings_for(&report, &[&target]);
    fs::write(&target, &pristine).unwrap();

    // Beside the segment being written, or beside no segment at all.
    let active = postings_of(files.last().unwrap());
    fs::copy(&target, &active).unwrap();
    let stray = dir.path().join("segments/00000000000099999999.tags");
    fs::copy(&target, &stray).unwrap();
    let report = verify(dir.path());
    expect_finding(&report, &active, 0);
    expect_finding(&report, &stray, 0);
    expect_only_findings_for(&report, &[&active, &stray]);
    fs::remove_file(&active).unwrap();
    fs::remove_file(&stray).unwrap();
    assert!(verify(dir.path()).is_clean());
}

#[test]
fn an_index_file_without_a_segment_is_found() {
    let dir = tempfile::tempdir().unwrap();
    build_store(dir.path(), 1);
    let first = index_of(&segments(dir.path())[0]);
    let stray = dir.path().join("segments/00000000000099999999.idx");
    fs::copy(&first, &stray).unwrap();
    let report = verify(dir.path());
    expect_finding(&report, &stray, 0);
    expect_only_findings_for(&report, &[&stray]);
    assert_eq!(report.index_files, report.sealed_segments + 1);
}

#[test]
fn a_damaged_catalogue_is_found() {
    let dir = tempfile::tempdir().unwrap();
    build_store(dir.path(), 1);
    let catalog = dir.path().join("segments/streams.catalog");
    let len = fs::metadata(&catalog).unwrap().len();
    for at in [0, 13, 40, 64, len - 1] {
        flip_byte(&catalog, at);
        let report = verify(dir.path());
        expect_finding(&report, &catalog, at);
        expect_only_findings_for(&report, &[&catalog]);
        flip_byte(&catalog, at);
    }
    assert!(verify(dir.path()).is_clean());
}

#[test]
fn a_catalogue_of_another_log_is_found() {
    let dir = tempfile::tempdir().unwrap();
    build_store(dir.path(), 1);
    // A store with the same segments but other streams: its catalogue is
    // sound, and wrong for this log.
    let other = tempfile::tempdir().unwrap();
    {
        let store = Store::open(other.path(), options()).unwrap();
        let mut sizes = TestRng::new(7);
        for i in 0..APPENDS {
            let events: Vec<EventData> = (0..1 + i % STREAMS)
                .map(|j| {
                    EventData::new(
                        "Deposited",
                        vec![(i + j) as u8; 40 + sizes.below(40) as usize],
                    )
                })
                .collect();
            store
                .append(
                    &format!("acct-{}", (i + 1) % STREAMS),
                    ExpectedVersion::Any,
                    &events,
                )
                .unwrap();
        }
        store.close().unwrap();
    }
    let catalog = dir.path().join("segments/streams.catalog");
    fs::copy(other.path().join("segments/streams.catalog"), &catalog).unwrap();
    let report = verify(dir.path());
    expect_finding(&report, &catalog, fs::metadata(&catalog).unwrap().len());
    expect_only_findings_for(&report, &[&catalog]);
}

#[test]
fn damaged_and_set_aside_snapshots_are_found() {
    let dir = tempfile::tempdir().unwrap();
    build_store(dir.path(), 1);
    let target = snapshot_file(dir.path(), 20);
    let len = fs::metadata(&target).unwrap().len();
    for at in [3, 30, 70, len - 1] {
        flip_byte(&target, at);
        let report = verify(dir.path());
        expect_finding(&report, &target, at);
        expect_only_findings_for(&report, &[&target]);
        flip_byte(&target, at);
    }

    // Once the store has set it aside, it is still reported.
    flip_byte(&target, 70);
    {
        let store = Store::open(dir.path(), options()).unwrap();
        assert_eq!(store.load_snapshot("acct-0").unwrap().unwrap().version, 10);
    }
    let mut aside = target.clone().into_os_string();
    aside.push(".damaged");
    let aside = PathBuf::from(aside);
    assert!(aside.exists());
    let report = verify(dir.path());
    let found = expect_finding(&report, &aside, 0);
    assert!(
        found.problem.contains("set aside earlier as damaged"),
        "{found}"
    );
    expect_only_findings_for(&report, &[&aside]);
    assert_eq!(report.snapshots, 2);
}

#[test]
fn a_snapshot_of_another_log_is_found() {
    let dir = tempfile::tempdir().unwrap();
    build_store(dir.path(), 1);
    let twin = tempfile::tempdir().unwrap();
    build_store(twin.path(), 2);
    let target = snapshot_file(dir.path(), 20);
    fs::copy(snapshot_file(twin.path(), 20), &target).unwrap();
    let report = verify(dir.path());
    let found = expect_finding(&report, &target, 24);
    assert!(found.problem.contains("was taken after event"), "{found}");
    expect_only_findings_for(&report, &[&target]);
}

#[test]
fn a_snapshot_past_its_stream_is_found() {
    let dir = tempfile::tempdir().unwrap();
    build_store(dir.path(), 1);
    let twin = tempfile::tempdir().unwrap();
    {
        // The same stream, longer.
        let store = Store::open(twin.path(), options()).unwrap();
        let events: Vec<EventData> = (0..60).map(|_| EventData::new("Tick", &b""[..])).collect();
        store
            .append("acct-0", ExpectedVersion::Any, &events)
            .unwrap();
        store.save_snapshot("acct-0", 55, b"far").unwrap();
    }
    let source = snapshot_file(twin.path(), 55);
    let target = snapshot_file(dir.path(), 20).with_file_name(source.file_name().unwrap());
    fs::copy(&source, &target).unwrap();
    let report = verify(dir.path());
    let found = expect_finding(&report, &target, 16);
    assert!(found.problem.contains("ends at version 39"), "{found}");
    expect_only_findings_for(&report, &[&target]);
}

#[test]
fn a_damaged_checkpoint_is_found() {
    let dir = tempfile::tempdir().unwrap();
    build_store(dir.path(), 1);
    let target = checkpoint_file(dir.path(), "projection-a");
    let len = fs::metadata(&target).unwrap().len();
    for at in [0, 12, 17, 40, 50, len - 1] {
        flip_byte(&target, at);
        let report = verify(dir.path());
        expect_finding(&report, &target, at);
        expect_only_findings_for(&report, &[&target]);
        flip_byte(&target, at);
    }
    assert!(verify(dir.path()).is_clean());
}

#[test]
fn a_checkpoint_past_the_end_of_the_log_is_noted() {
    let dir = tempfile::tempdir().unwrap();
    let events = build_store(dir.path(), 1);
    {
        let store = Store::open(dir.path(), options()).unwrap();
        store.save_checkpoint("ahead", events + 1).unwrap();
    }
    let target = checkpoint_file(dir.path(), "ahead");
    let report = verify(dir.path());
    assert!(report.is_clean(), "{:#?}", report.findings);
    assert_eq!(report.notes.len(), 1, "{:#?}", report.notes);
    let found = &report.notes[0];
    assert!(found.file == target && found.offset <= 16, "{found}");
    assert!(found.problem.contains("past the end"), "{found}");
}

#[test]
fn a_checkpoint_of_another_log_is_noted() {
    let dir = tempfile::tempdir().unwrap();
    build_store(dir.path(), 1);
    let twin = tempfile::tempdir().unwrap();
    build_store(twin.path(), 2);
    let target = checkpoint_file(dir.path(), "projection-a");
    fs::copy(checkpoint_file(twin.path(), "projection-a"), &target).unwrap();
    let report = verify(dir.path());
    assert!(report.is_clean(), "{:#?}", report.findings);
    assert_eq!(report.notes.len(), 1, "{:#?}", report.notes);
    let found = &report.notes[0];
    assert!(found.file == target && found.offset <= 32, "{found}");
    assert!(found.problem.contains("was saved after event"), "{found}");
}

#[test]
fn several_damaged_files_are_all_found() {
    let dir = tempfile::tempdir().unwrap();
    build_store(dir.path(), 1);
    let files = segments(dir.path());
    let damaged = [
        (files[1].clone(), inside_first_record(&files[1])),
        (files[3].clone(), inside_first_record(&files[3])),
        (index_of(&files[0]), 100),
        (snapshot_file(dir.path(), 10), 66),
        (checkpoint_file(dir.path(), "projection-b"), 20),
    ];
    for (file, at) in &damaged {
        flip_byte(file, *at);
    }
    let report = verify(dir.path());
    for (file, at) in &damaged {
        expect_finding(&report, file, *at);
    }
    let files: Vec<&Path> = damaged.iter().map(|(f, _)| f.as_path()).collect();
    expect_only_findings_for(&report, &files);
    // Display names file and offset.
    let shown = report.findings[0].to_string();
    assert!(shown.contains(": offset "), "{shown}");
}

#[test]
fn a_torn_tail_after_the_last_batch_is_not_damage() {
    let dir = tempfile::tempdir().unwrap();
    let events = build_store(dir.path(), 1);
    let active = segments(dir.path()).pop().unwrap();
    let (at, _, len) = *batches(&active).last().unwrap();
    let end = at + len;
    let mut rng = TestRng::new(99);
    let garbage: Vec<u8> = (0..100).map(|_| rng.next_u64() as u8 | 1).collect();
    fs::OpenOptions::new()
        .write(true)
        .open(&active)
        .unwrap()
        .write_all_at(&garbage, end)
        .unwrap();

    let report = verify(dir.path());
    assert!(report.is_clean(), "{:#?}", report.findings);
    assert_eq!(report.torn_tail_bytes, 100);
    assert_eq!(report.events, events);

    // Open clears it; then there is nothing left to report.
    drop(Store::open(dir.path(), options()).unwrap());
    let report = verify(dir.path());
    assert!(report.is_clean(), "{:#?}", report.findings);
    assert_eq!(report.torn_tail_bytes, 0);
}

#[test]
fn verifying_while_the_store_is_open_and_appending_finds_nothing() {
    let dir = tempfile::tempdir().unwrap();
    build_store(dir.path(), 1);
    let store = Store::open(dir.path(), options()).unwrap();
    let stop = Arc::new(AtomicBool::new(false));
    let writers: Vec<_> = (0..3u64)
        .map(|t| {
            let store = store.clone();
            let stop = Arc::clone(&stop);
            std::thread::spawn(move || {
                let mut rng = TestRng::new(t);
                let mut appended = 0u64;
                while !stop.load(Ordering::Relaxed) {
                    let stream = format!("live-{t}");
                    let events: Vec<EventData> = (0..1 + rng.below(4))
                        .map(|_| EventData::new("Tick", vec![t as u8; rng.below(200) as usize]))
                        .collect();
                    let written = store
                        .append(&stream, ExpectedVersion::Any, &events)
                        .unwrap();
                    appended += events.len() as u64;
                    if rng.below(20) == 0 {
                        store
                            .save_snapshot(&stream, written.last_version, b"s")
                            .unwrap();
                        let end = store.last_position().unwrap() + 1;
                        store.save_checkpoint(&stream, end).unwrap();
                    }
                }
                appended
            })
        })
        .collect();

    let mut sealed = Vec::new();
    for _ in 0..8 {
        std::thread::sleep(Duration::from_millis(20));
        let report = verify_store(dir.path(), &mut |_| {}).unwrap();
        assert!(report.is_clean(), "{:#?}", report.findings);
        sealed.push(report.sealed_segments);
    }
    stop.store(true, Ordering::Relaxed);
    let appended: u64 = writers.into_iter().map(|w| w.join().unwrap()).sum();
    assert!(appended > 0);
    // Segments were sealed while it ran.
    assert!(sealed.first() < sealed.last(), "{sealed:?}");
    let events = store.last_position().unwrap() + 1;
    store.close().unwrap();
    let report = verify(dir.path());
    assert!(report.is_clean(), "{:#?}", report.findings);
    assert_eq!(report.events, events);
}

/// Flips one byte in every few of a sealed segment and of the active one:
/// every flip up to the seal, or before the active segment's last durable
/// mark, is a finding naming the segment at or before it; a flip past them
/// is not damage.
#[test]
fn bit_flip_sweep_over_a_sealed_and_the_active_segment() {
    let dir = tempfile::tempdir().unwrap();
    build_store(dir.path(), 1);
    let files = segments(dir.path());
    let sealed = &files[1];
    let active = &files[files.len() - 1];
    let seal_end = {
        let (at, kind, len) = *batches(sealed).last().unwrap();
        assert_eq!(kind, 2);
        at + len
    };
    let (mark, kind, _) = *batches(active).last().unwrap();
    assert_eq!(
        kind, 3,
        "a closed store's active segment ends with a durable mark"
    );
    let mut rng = TestRng::new(5);
    for (target, damage_until) in [(sealed, seal_end), (active, mark)] {
        let mut at = rng.below(7);
        while at < damage_until + 64 {
            flip_byte(target, at);
            let report = verify_store(dir.path(), &mut |_| {}).unwrap();
            if at < damage_until {
                let found = report
                    .findings
                    .iter()
                    .find(|f| &f.file == target)
                    .unwrap_or_else(|| panic!("flip at {at} of {}", target.display()));
                assert!(found.offset <= at, "flip at {at}: {found}");
                expect_only_findings_for(&report, &[target]);
            } else {
                assert!(report.is_clean(), "flip at {at}: {:#?}", report.findings);
            }
            flip_byte(target, at);
            at += 1 + rng.below(12);
        }
    }
    assert!(verify(dir.path()).is_clean());
}

/// Index files, the catalogue, snapshots and checkpoints overwritten with
/// random bytes, cut short or emptied: always a finding for that file, never
/// a panic.
#[test]
fn garbage_in_any_small_file_is_a_finding() {
    let dir = tempfile::tempdir().unwrap();
    build_store(dir.path(), 1);
    let files = segments(dir.path());
    let targets = [
        index_of(&files[0]),
        dir.path().join("segments/streams.catalog"),
        snapshot_file(dir.path(), 10),
        checkpoint_file(dir.path(), "projection-a"),
    ];
    let mut rng = TestRng::new(11);
    for target in &targets {
        let pristine = fs::read(target).unwrap();
        for round in 0..40 {
            let mut bytes = pristine.clone();
            match round % 4 {
                0 => bytes.truncate(rng.below(bytes.len() as u64) as usize),
                1 => bytes.iter_mut().for_each(|b| *b = rng.next_u64() as u8),
                2 => {
                    let from = rng.below(bytes.len() as u64) as usize;
                    bytes[from..]
                        .iter_mut()
                        .for_each(|b| *b = rng.next_u64() as u8);
                }
                _ => {
                    let extra = 1 + rng.below(100) as usize;
                    bytes.extend((0..extra).map(|_| rng.next_u64() as u8));
                }
            }
            fs::write(target, &bytes).unwrap();
            let report = verify(dir.path());
            expect_finding(&report, target, pristine.len() as u64);
            expect_only_findings_for(&report, &[target]);
        }
        fs::write(target, &pristine).unwrap();
    }
    assert!(verify(dir.path()).is_clean());
}
