//! The `evstore` binary against stores built here with the library.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use assert_cmd::Command;
use evstore::{EventData, ExpectedVersion, Options, Store, Uuid};
use predicates::prelude::*;
use std::io::{BufRead, BufReader, Read};
use std::path::{Path, PathBuf};
use std::process::{Child, Stdio};
use std::sync::mpsc;
use std::time::{Duration, Instant};

const BIN: &str = env!("CARGO_BIN_EXE_evstore");

fn evstore() -> Command {
    Command::new(BIN)
}

/// Small segments, so a few hundred events span several of them; index
/// files written before the close returns, so tests see them.
fn options() -> Options {
    Options::default()
        .segment_size(4096)
        .background_index_writes(false)
}

/// What was appended, in position order.
#[derive(Debug, Clone)]
struct Appended {
    position: u64,
    stream: String,
    version: u64,
    event_type: String,
    id: Uuid,
    metadata: Vec<u8>,
    payload: Vec<u8>,
}

const BINARY: &[u8] = &[0x00, 0x9f, 0x92, 0x96, 0xff];
const LOAD_EVENTS: u64 = 120;

/// Three named streams with text, metadata and binary payloads, then
/// `LOAD_EVENTS` events over five `load-` streams to fill several segments.
fn append_sample(store: &Store) -> Vec<Appended> {
    let mut plan: Vec<(String, EventData)> = vec![
        (
            "order-1".into(),
            EventData::new("OrderPlaced", &br#"{"total":42}"#[..])
                .with_metadata(&br#"{"user":"ada"}"#[..]),
        ),
        (
            "order-1".into(),
            EventData::new("OrderShipped", &b"shipped by sea"[..]),
        ),
        ("user-1".into(), EventData::new("AvatarSet", BINARY)),
        (
            "order-2".into(),
            EventData::new("OrderPlaced", &b"line one\nline two"[..]),
        ),
    ];
    for i in 0..LOAD_EVENTS {
        plan.push((
            format!("load-{}", i % 5),
            EventData::new("Loaded", format!("load event {i} {}", "x".repeat(40))),
        ));
    }
    let mut appended = Vec::new();
    for (stream, event) in plan {
        let written = store
            .append(&stream, ExpectedVersion::Any, std::slice::from_ref(&event))
            .unwrap();
        appended.push(Appended {
            position: written.first_position,
            stream,
            version: written.first_version,
            event_type: event.event_type().to_string(),
            id: event.id(),
            metadata: event.metadata().to_vec(),
            payload: event.payload().to_vec(),
        });
    }
    appended
}

fn sample_store() -> (tempfile::TempDir, Vec<Appended>) {
    let dir = tempfile::tempdir().unwrap();
    let store = Store::open(dir.path(), options()).unwrap();
    let appended = append_sample(&store);
    store.close().unwrap();
    (dir, appended)
}

fn stdout_of(args: &[&str]) -> String {
    let output = evstore().args(args).output().unwrap();
    assert!(
        output.status.success(),
        "evstore {args:?} failed: {}",
        String::from_utf8_lossy(&output.stderr)
    );
    String::from_utf8(output.stdout).unwrap()
}

fn path_str(path: &Path) -> &str {
    path.to_str().unwrap()
}

/// The value printed after `label` in an `info` or `verify` line.
fn field<'a>(output: &'a str, label: &str) -> &'a str {
    output
        .lines()
        .find_map(|line| {
            let rest = line.strip_prefix(label)?;
            rest.starts_with("  ").then(|| rest.trim())
        })
        .unwrap_or_else(|| panic!("no {label:?} line in:\n{output}"))
}

fn first_number(text: &str) -> u64 {
    text.split(|c: char| !c.is_ascii_digit())
        .find(|s| !s.is_empty())
        .unwrap()
        .parse()
        .unwrap()
}

fn segment_files(dir: &Path) -> Vec<PathBuf> {
    let mut files: Vec<PathBuf> = std::fs::read_dir(dir.join("segments"))
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().is_some_and(|e| e == "log"))
        .collect();
    files.sort();
    files
}

fn flip_byte(file: &Path, offset: u64) {
    let mut bytes = std::fs::read(file).unwrap();
    bytes[offset as usize] ^= 0x40;
    std::fs::write(file, bytes).unwrap();
}

#[test]
fn info_reports_segments_events_and_streams() {
    let (dir, appended) = sample_store();
    let out = stdout_of(&["info", path_str(dir.path())]);
    let segments = first_number(field(&out, "segments"));
    assert!(segments >= 3, "expected several segments:\n{out}");
    assert_eq!(segment_files(dir.path()).len() as u64, segments);
    assert!(field(&out, "segments").contains(&format!("{} sealed", segments - 1)));
    assert_eq!(first_number(field(&out, "events")), appended.len() as u64);
    assert_eq!(first_number(field(&out, "streams")), 8);
    assert_eq!(
        field(&out, "positions"),
        format!("first 0, last {}", appended.len() - 1)
    );
    assert_eq!(
        first_number(field(&out, "durable end")),
        appended.len() as u64
    );
    assert_eq!(first_number(field(&out, "index files")), segments - 1);
    assert!(field(&out, "format").contains("segments v2"));
    assert!(field(&out, "disk use").contains("allocated"));
    assert_eq!(field(&out, "lock"), "free");
    // The per-segment table: one row per segment file.
    for file in segment_files(dir.path()) {
        let name = file.file_name().unwrap().to_str().unwrap();
        assert!(out.contains(name), "{name} missing from:\n{out}");
    }
    assert_eq!(out.matches(" sealed ").count() as u64, segments - 1);
    assert_eq!(out.matches(" active ").count(), 1);
}

#[test]
fn stats_reports_watermarks_segments_and_how_far_each_checkpoint_lags() {
    let dir = tempfile::tempdir().unwrap();
    let store = Store::open(dir.path(), options()).unwrap();
    let appended = append_sample(&store);
    let end = appended.len() as u64;
    store.save_checkpoint("caught-up", end).unwrap();
    store.save_checkpoint("behind", end - 10).unwrap();
    // The lag in bytes is the records of the ten positions it has not seen.
    let behind_bytes = store.checkpoint_lags().unwrap()[0].lag_bytes;
    assert!(behind_bytes > 10 * 64, "{behind_bytes}");
    store.close().unwrap();

    let json: serde_json::Value =
        serde_json::from_str(&stdout_of(&["stats", path_str(dir.path()), "--json"])).unwrap();
    assert_eq!(json["written_end"], end);
    assert_eq!(json["durable_end"], end);
    assert_eq!(json["streams"], 8);
    let segments = json["segments"].as_u64().unwrap();
    assert_eq!(segments, segment_files(dir.path()).len() as u64);
    assert_eq!(json["sealed_segments"].as_u64().unwrap(), segments - 1);
    let checkpoints = json["checkpoints"].as_array().unwrap();
    assert_eq!(checkpoints.len(), 2);
    assert_eq!(checkpoints[0]["name"], "behind");
    assert_eq!(checkpoints[0]["position"], end - 10);
    assert_eq!(checkpoints[0]["lag"], 10);
    assert_eq!(checkpoints[0]["lag_bytes"], behind_bytes);
    assert_eq!(checkpoints[1]["name"], "caught-up");
    assert_eq!(
        (
            checkpoints[1]["lag"].as_u64(),
            checkpoints[1]["lag_bytes"].as_u64()
        ),
        (Some(0), Some(0))
    );

    let out = stdout_of(&["stats", path_str(dir.path())]);
    assert_eq!(first_number(field(&out, "durable end")), end);
    assert_eq!(first_number(field(&out, "checkpoints")), 2);
    let row = out.lines().find(|l| l.starts_with("behind")).unwrap();
    assert!(row.contains(&format!("({behind_bytes})")), "{row}");

    // A damaged checkpoint file is an error naming it, not a silent gap.
    let file = std::fs::read_dir(dir.path().join(evstore::CHECKPOINTS_DIR))
        .unwrap()
        .map(|e| e.unwrap().path())
        .find(|p| p.extension().is_some_and(|e| e == "ckpt"))
        .unwrap();
    flip_byte(&file, 20);
    evstore()
        .args(["stats", path_str(dir.path())])
        .assert()
        .failure()
        .stderr(predicate::str::contains("checkpoint"));
}

#[test]
fn streams_lists_versions_and_counts_and_filters_by_prefix() {
    let (dir, _) = sample_store();
    let out = stdout_of(&["streams", path_str(dir.path())]);
    let lines: Vec<&str> = out.lines().collect();
    assert_eq!(lines[0], "STREAM\tVERSION\tEVENTS");
    assert_eq!(
        &lines[1..],
        [
            "load-0\t23\t24",
            "load-1\t23\t24",
            "load-2\t23\t24",
            "load-3\t23\t24",
            "load-4\t23\t24",
            "order-1\t1\t2",
            "order-2\t0\t1",
            "user-1\t0\t1",
        ]
    );
    let out = stdout_of(&["streams", path_str(dir.path()), "--prefix", "order-"]);
    assert_eq!(
        out.lines().collect::<Vec<_>>(),
        ["STREAM\tVERSION\tEVENTS", "order-1\t1\t2", "order-2\t0\t1"]
    );
    let out = stdout_of(&[
        "streams",
        path_str(dir.path()),
        "--prefix",
        "nobody",
        "--json",
    ]);
    assert_eq!(out, "");
    let out = stdout_of(&[
        "streams",
        path_str(dir.path()),
        "--prefix",
        "user",
        "--json",
    ]);
    let line: serde_json::Value = serde_json::from_str(out.trim()).unwrap();
    assert_eq!(
        line,
        serde_json::json!({"stream": "user-1", "version": 0, "events": 1})
    );
}

/// Streams whose metadata or deletion drops events: `streams` counts what
/// they keep, and `dump` prints what reads return and succeeds, also when
/// the log ends in events nobody keeps any more.
#[test]
fn streams_and_dump_go_by_what_streams_keep() {
    let dir = tempfile::tempdir().unwrap();
    {
        let store = Store::open(dir.path(), options()).unwrap();
        let events = |n: u8| -> Vec<EventData> {
            (0..n)
                .map(|i| EventData::new("E", vec![b'a' + i]))
                .collect()
        };
        store
            .append("cut", ExpectedVersion::Any, &events(10))
            .unwrap();
        store.truncate_stream("cut", 7).unwrap();
        store
            .append("gone", ExpectedVersion::Any, &events(4))
            .unwrap();
        store
            .delete_stream("gone", ExpectedVersion::Any, evstore::DeleteMode::Soft)
            .unwrap();
        store
            .append("keep", ExpectedVersion::Any, &events(1))
            .unwrap();
        // Expired the moment they are written: the log ends in them.
        store
            .set_stream_metadata(
                "brief",
                ExpectedVersion::NoStream,
                evstore::StreamMetadata::new().max_age(Duration::from_nanos(1)),
            )
            .unwrap();
        store
            .append("brief", ExpectedVersion::Any, &events(3))
            .unwrap();
        store.close().unwrap();
    }
    let out = stdout_of(&["streams", path_str(dir.path())]);
    let counts: Vec<&str> = out
        .lines()
        .filter(|l| {
            ["cut\t", "gone\t", "keep\t", "brief\t"]
                .iter()
                .any(|p| l.starts_with(p))
        })
        .collect();
    assert_eq!(
        counts,
        ["brief\t2\t0", "cut\t9\t3", "gone\t4\t0", "keep\t0\t1"]
    );

    let dump = stdout_of(&["dump", path_str(dir.path()), "--json"]);
    let streams: Vec<String> = dump
        .lines()
        .map(|l| {
            serde_json::from_str::<serde_json::Value>(l).unwrap()["stream"]
                .as_str()
                .unwrap()
                .to_string()
        })
        .collect();
    assert_eq!(streams.iter().filter(|s| *s == "cut").count(), 3);
    assert_eq!(streams.iter().filter(|s| *s == "keep").count(), 1);
    assert_eq!(streams.iter().filter(|s| *s == "brief").count(), 0);
    // The stream dumps: what it keeps, nothing for a deleted one.
    let cut = stdout_of(&["dump", path_str(dir.path()), "--stream", "cut"]);
    assert_eq!(cut.lines().count(), 3, "{cut}");
    assert_eq!(
        stdout_of(&["dump", path_str(dir.path()), "--stream", "gone"]),
        ""
    );
    assert_eq!(
        stdout_of(&["dump", path_str(dir.path()), "--stream", "brief"]),
        ""
    );
}

#[test]
fn dump_prints_text_payloads_as_text_and_binary_as_hex() {
    let (dir, appended) = sample_store();
    let out = stdout_of(&["dump", path_str(dir.path())]);
    let lines: Vec<&str> = out.lines().collect();
    assert_eq!(lines.len(), appended.len());
    assert!(lines[0].starts_with("position=0 stream=order-1 version=0 type=OrderPlaced timestamp="));
    assert!(lines[0].contains(&format!(" id={} ", appended[0].id)));
    assert!(lines[0].ends_with(r#" metadata={"user":"ada"} payload={"total":42}"#));
    assert!(
        lines[1].ends_with(" payload=shipped by sea"),
        "{}",
        lines[1]
    );
    assert!(!lines[1].contains("metadata"));
    assert!(
        lines[2].ends_with(" payload(hex)=009f9296ff"),
        "{}",
        lines[2]
    );
    // One event, one line: the newline in the payload is escaped.
    assert!(
        lines[3].ends_with(r" payload=line one\nline two"),
        "{}",
        lines[3]
    );
    // RFC 3339 UTC with nanoseconds.
    let timestamp = lines[0]
        .split(' ')
        .find_map(|f| f.strip_prefix("timestamp="))
        .unwrap();
    assert_eq!(timestamp.len(), "2025-01-01T00:00:00.000000000Z".len());
    assert!(timestamp.ends_with('Z') && timestamp.as_bytes()[10] == b'T');
}

#[test]
fn dump_shows_durable_events_unless_written_ones_are_asked_for() {
    let dir = tempfile::tempdir().unwrap();
    let writer = Store::open(
        dir.path(),
        options()
            .durability(evstore::Durability::Buffered)
            .flush_interval(Duration::from_secs(3600)),
    )
    .unwrap();
    let append = |n: u64| {
        for i in 0..n {
            writer
                .append(
                    "sensor",
                    ExpectedVersion::Any,
                    &[EventData::new("Reading", format!("{i}"))],
                )
                .unwrap();
        }
    };
    append(5);
    writer.flush().unwrap();
    append(3);
    let lines = |extra: &[&str]| {
        let mut args = vec!["dump", path_str(dir.path())];
        args.extend_from_slice(extra);
        stdout_of(&args).lines().count()
    };
    assert_eq!(lines(&[]), 5);
    assert_eq!(lines(&["--written"]), 8);
    writer.flush().unwrap();
    assert_eq!(lines(&[]), 8);
}

#[test]
fn dump_selects_by_stream_start_position_and_limit() {
    let (dir, appended) = sample_store();
    let d = path_str(dir.path());
    let positions = |out: &str| -> Vec<u64> {
        out.lines()
            .map(|l| first_number(l.strip_prefix("position=").unwrap()))
            .collect()
    };

    let out = stdout_of(&["dump", d, "--stream", "load-3"]);
    let expected: Vec<u64> = appended
        .iter()
        .filter(|a| a.stream == "load-3")
        .map(|a| a.position)
        .collect();
    assert_eq!(expected.len(), 24);
    assert_eq!(positions(&out), expected);
    assert!(out.lines().all(|l| l.contains(" stream=load-3 ")));

    let out = stdout_of(&["dump", d, "--stream", "load-3", "--limit", "2"]);
    assert_eq!(positions(&out), &expected[..2]);

    let out = stdout_of(&["dump", d, "--from", "100"]);
    assert_eq!(
        positions(&out),
        (100..appended.len() as u64).collect::<Vec<_>>()
    );

    let out = stdout_of(&["dump", d, "--from", "10", "--limit", "3"]);
    assert_eq!(positions(&out), [10, 11, 12]);

    let out = stdout_of(&["dump", d, "--from", "100000"]);
    assert_eq!(out, "");

    evstore()
        .args(["dump", d, "--stream", "nobody"])
        .assert()
        .code(1)
        .stderr(predicate::str::contains("stream 'nobody' has no events"));
    evstore()
        .args(["dump", d, "--stream", "order-1", "--from", "3"])
        .assert()
        .code(2);
}

#[test]
fn dump_json_round_trips_every_field() {
    let (dir, appended) = sample_store();
    let out = stdout_of(&["dump", path_str(dir.path()), "--json"]);
    let lines: Vec<serde_json::Value> = out
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    assert_eq!(lines.len(), appended.len());
    let decode = |value: &serde_json::Value, encoding: &serde_json::Value| -> Vec<u8> {
        let text = value.as_str().unwrap();
        match encoding.as_str().unwrap() {
            "utf8" => text.as_bytes().to_vec(),
            "hex" => (0..text.len())
                .step_by(2)
                .map(|i| u8::from_str_radix(&text[i..i + 2], 16).unwrap())
                .collect(),
            other => panic!("unknown encoding {other}"),
        }
    };
    for (json, expected) in lines.iter().zip(&appended) {
        assert_eq!(json["position"], expected.position);
        assert_eq!(json["stream"], expected.stream.as_str());
        assert_eq!(json["version"], expected.version);
        assert_eq!(json["type"], expected.event_type.as_str());
        assert_eq!(json["id"], expected.id.to_string());
        assert_eq!(
            decode(&json["payload"], &json["payload_encoding"]),
            expected.payload
        );
        assert_eq!(
            decode(&json["metadata"], &json["metadata_encoding"]),
            expected.metadata
        );
        assert!(json["timestamp"].as_str().unwrap().ends_with('Z'));
    }
    assert_eq!(lines[2]["payload_encoding"], "hex");
    assert_eq!(lines[2]["payload"], "009f9296ff");
    assert_eq!(lines[0]["payload_encoding"], "utf8");
    assert_eq!(lines[0]["metadata"], r#"{"user":"ada"}"#);
}

#[test]
fn dump_ends_quietly_when_the_reader_goes_away() {
    let dir = tempfile::tempdir().unwrap();
    let store = Store::open(dir.path(), Options::default()).unwrap();
    // Far more output than a pipe buffers, so the dump is still writing
    // when the reader leaves.
    let events: Vec<EventData> = (0..5000)
        .map(|i| EventData::new("Filler", format!("{i:0>200}")))
        .collect();
    for chunk in events.chunks(500) {
        store.append("filler", ExpectedVersion::Any, chunk).unwrap();
    }
    drop(store);

    let mut child = std::process::Command::new(BIN)
        .args(["dump", path_str(dir.path())])
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let mut stdout = BufReader::new(child.stdout.take().unwrap());
    let mut first = String::new();
    stdout.read_line(&mut first).unwrap();
    assert!(first.starts_with("position=0 "));
    drop(stdout);
    let mut stderr = String::new();
    child
        .stderr
        .take()
        .unwrap()
        .read_to_string(&mut stderr)
        .unwrap();
    let status = child.wait().unwrap();
    assert!(status.success(), "{status}: {stderr}");
    assert_eq!(stderr, "");
}

#[test]
fn verify_passes_a_clean_store() {
    let (dir, appended) = sample_store();
    let out = evstore()
        .args(["verify", path_str(dir.path())])
        .assert()
        .success()
        .get_output()
        .stdout
        .clone();
    let out = String::from_utf8(out).unwrap();
    assert_eq!(first_number(field(&out, "events")), appended.len() as u64);
    assert_eq!(
        first_number(field(&out, "segments")),
        segment_files(dir.path()).len() as u64
    );
    assert!(out.contains("result: clean"), "{out}");
}

#[test]
fn verify_names_a_segment_with_a_flipped_byte() {
    let (dir, _) = sample_store();
    let first = segment_files(dir.path()).remove(0);
    // Segment header (64), batch header (32), record header (64), then the
    // first record's stream name and payload.
    flip_byte(&first, 64 + 32 + 64 + 10);
    evstore()
        .args(["verify", path_str(dir.path())])
        .assert()
        .code(1)
        .stdout(predicate::str::contains(
            first.file_name().unwrap().to_str().unwrap(),
        ))
        .stdout(predicate::str::contains("result: DAMAGED"))
        .stderr(predicate::str::contains("panicked").not());
}

#[test]
fn verify_names_a_damaged_index_file() {
    let (dir, _) = sample_store();
    let index = segment_files(dir.path())[0].with_extension("idx");
    let len = std::fs::metadata(&index).unwrap().len();
    // Past the 64-byte header: the body, which its checksum covers.
    flip_byte(&index, 64 + (len - 64) / 2);
    evstore()
        .args(["verify", path_str(dir.path())])
        .assert()
        .code(1)
        .stdout(predicate::str::contains(
            index.file_name().unwrap().to_str().unwrap(),
        ));
}

/// Each kind of damage of the fault model, on its own copy of a store with
/// a snapshot and a checkpoint: `verify` exits 1 and names the damaged file.
#[test]
fn verify_names_the_file_for_each_kind_of_damage() {
    type Damage = fn(&Path) -> PathBuf;
    fn snapshot_file(dir: &Path) -> PathBuf {
        let stream_dir = std::fs::read_dir(dir.join("snapshots"))
            .unwrap()
            .next()
            .unwrap()
            .unwrap()
            .path();
        std::fs::read_dir(stream_dir)
            .unwrap()
            .next()
            .unwrap()
            .unwrap()
            .path()
    }
    fn checkpoint_file(dir: &Path) -> PathBuf {
        std::fs::read_dir(dir.join("checkpoints"))
            .unwrap()
            .next()
            .unwrap()
            .unwrap()
            .path()
    }
    let damages: [(&str, Damage); 6] = [
        ("sealed segment cut short", |dir| {
            let seg = segment_files(dir)[1].clone();
            let file = std::fs::OpenOptions::new().write(true).open(&seg).unwrap();
            file.set_len(600).unwrap();
            seg
        }),
        ("middle segment missing", |dir| {
            let seg = segment_files(dir)[1].clone();
            std::fs::remove_file(&seg).unwrap();
            seg
        }),
        ("record flipped in the active segment", |dir| {
            let seg = segment_files(dir).last().unwrap().clone();
            flip_byte(&seg, 64 + 32 + 64 + 4);
            seg
        }),
        ("stream catalogue damaged", |dir| {
            let catalogue = dir.join("segments").join("streams.catalog");
            let len = std::fs::metadata(&catalogue).unwrap().len();
            flip_byte(&catalogue, len - 5);
            catalogue
        }),
        ("snapshot damaged", |dir| {
            let snapshot = snapshot_file(dir);
            let len = std::fs::metadata(&snapshot).unwrap().len();
            flip_byte(&snapshot, len - 1);
            snapshot
        }),
        ("checkpoint damaged", |dir| {
            let checkpoint = checkpoint_file(dir);
            flip_byte(&checkpoint, 20);
            checkpoint
        }),
    ];
    for (what, damage) in damages {
        let (dir, _) = sample_store();
        {
            let store = Store::open(dir.path(), options()).unwrap();
            store.save_snapshot("order-1", 1, b"state").unwrap();
            store.save_checkpoint("read-model", 3).unwrap();
            store.close().unwrap();
        }
        evstore()
            .args(["verify", path_str(dir.path())])
            .assert()
            .success();
        let damaged = damage(dir.path());
        let name = damaged.file_name().unwrap().to_str().unwrap().to_string();
        let output = evstore()
            .args(["verify", path_str(dir.path())])
            .output()
            .unwrap();
        let stdout = String::from_utf8_lossy(&output.stdout);
        assert_eq!(output.status.code(), Some(1), "{what}: {stdout}");
        assert!(
            stdout
                .lines()
                .any(|l| l.starts_with("damaged: ") && l.contains(&name)),
            "{what}: {name} not named in {stdout}"
        );
        assert!(stdout.contains("result: DAMAGED"), "{what}: {stdout}");
    }
}

/// A checkpoint ahead of the log is what a crash can leave: a note, not
/// damage.
#[test]
fn verify_notes_a_checkpoint_ahead_of_the_log_without_failing() {
    let (dir, appended) = sample_store();
    {
        let store = Store::open(dir.path(), options()).unwrap();
        store
            .save_checkpoint("ahead", appended.len() as u64 + 10)
            .unwrap();
        store.close().unwrap();
    }
    let out = stdout_of(&["verify", path_str(dir.path())]);
    assert!(
        out.lines()
            .any(|l| l.starts_with("note: ") && l.contains("past the end")),
        "{out}"
    );
    assert!(out.contains("result: clean"), "{out}");
}

/// Lines of a child's output, read on a thread so a test can wait for them
/// with a deadline.
fn lines_of(reader: impl Read + Send + 'static) -> mpsc::Receiver<String> {
    let (send, receive) = mpsc::channel();
    std::thread::spawn(move || {
        for line in BufReader::new(reader).lines() {
            let Ok(line) = line else { break };
            if send.send(line).is_err() {
                break;
            }
        }
    });
    receive
}

fn next_line(lines: &mpsc::Receiver<String>, deadline: Instant) -> String {
    let left = deadline.saturating_duration_since(Instant::now());
    lines
        .recv_timeout(left)
        .expect("no line from the child before the deadline")
}

/// Ends a child with SIGTERM and waits (bounded) for it to exit.
fn terminate(child: &mut Child) -> std::process::ExitStatus {
    let status = std::process::Command::new("kill")
        .args(["-TERM", &child.id().to_string()])
        .status()
        .unwrap();
    assert!(status.success());
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        if let Some(status) = child.try_wait().unwrap() {
            return status;
        }
        if Instant::now() > deadline {
            child.kill().unwrap();
            panic!("tail did not stop on SIGTERM");
        }
        std::thread::sleep(Duration::from_millis(20));
    }
}

#[test]
fn tail_follows_events_another_process_appends() {
    let dir = tempfile::tempdir().unwrap();
    // This test is the writing process; the child only reads.
    let store = Store::open(dir.path(), options()).unwrap();
    store
        .append(
            "order-0",
            ExpectedVersion::Any,
            &[EventData::new("Old", &b"history"[..])],
        )
        .unwrap();

    let mut child = std::process::Command::new(BIN)
        .args(["tail", path_str(dir.path())])
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let stdout = lines_of(child.stdout.take().unwrap());
    let stderr = lines_of(child.stderr.take().unwrap());
    let deadline = Instant::now() + Duration::from_secs(15);
    // Printed once it follows from the end: appends after it are seen.
    let ready = next_line(&stderr, deadline);
    assert!(ready.contains("following"), "{ready}");

    for i in 0..3 {
        store
            .append(
                &format!("order-{}", i + 1),
                ExpectedVersion::Any,
                &[EventData::new("Live", format!("live {i}"))],
            )
            .unwrap();
    }
    for i in 0..3u64 {
        let line = next_line(&stdout, deadline);
        assert!(
            line.starts_with(&format!("position={} stream=order-{} ", i + 1, i + 1)),
            "{line}"
        );
        assert!(line.ends_with(&format!(" payload=live {i}")), "{line}");
    }
    // Enough for another segment: following crosses the rollover.
    let big: Vec<EventData> = (0..40)
        .map(|i| EventData::new("Bulk", format!("bulk {i} {}", "y".repeat(100))))
        .collect();
    for chunk in big.chunks(10) {
        store.append("bulk", ExpectedVersion::Any, chunk).unwrap();
    }
    for i in 0..40u64 {
        let line = next_line(&stdout, deadline);
        assert!(
            line.starts_with(&format!("position={} stream=bulk ", i + 4)),
            "{line}"
        );
    }
    assert!(store.log_info().segments.len() > 1);

    let status = terminate(&mut child);
    assert!(status.success(), "{status}");
}

#[test]
fn tail_from_a_position_filters_history_and_live_events() {
    let (dir, appended) = sample_store();
    let store = Store::open(dir.path(), options()).unwrap();
    let mut child = std::process::Command::new(BIN)
        .args([
            "tail",
            path_str(dir.path()),
            "--from",
            "1",
            "--filter-stream-prefix",
            "order-",
            "--filter-type",
            "OrderPlaced",
            "--json",
        ])
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let stdout = lines_of(child.stdout.take().unwrap());
    let deadline = Instant::now() + Duration::from_secs(15);
    // History from position 1: order-1's placement (position 0) is before
    // it, order-1's shipment is another type; order-2's placement matches.
    let line: serde_json::Value = serde_json::from_str(&next_line(&stdout, deadline)).unwrap();
    assert_eq!(line["stream"], "order-2");
    assert_eq!(line["position"], 3);
    store
        .append(
            "user-9",
            ExpectedVersion::Any,
            &[EventData::new("OrderPlaced", &b"no"[..])],
        )
        .unwrap();
    let live = store
        .append(
            "order-9",
            ExpectedVersion::Any,
            &[EventData::new("OrderPlaced", &b"yes"[..])],
        )
        .unwrap();
    let line: serde_json::Value = serde_json::from_str(&next_line(&stdout, deadline)).unwrap();
    assert_eq!(line["stream"], "order-9");
    assert_eq!(line["position"], live.first_position);
    assert_eq!(live.first_position, appended.len() as u64 + 1);
    let status = terminate(&mut child);
    assert!(status.success(), "{status}");
}

#[test]
fn reading_commands_work_while_another_handle_holds_the_store() {
    let (dir, appended) = sample_store();
    let d = path_str(dir.path());
    let store = Store::open(dir.path(), options()).unwrap();
    store
        .append(
            "late-1",
            ExpectedVersion::Any,
            &[EventData::new("Late", &b"late"[..])],
        )
        .unwrap();
    let total = appended.len() as u64 + 1;

    let out = stdout_of(&["info", d]);
    assert_eq!(first_number(field(&out, "events")), total);
    assert_eq!(
        field(&out, "lock"),
        format!("held by process {}", std::process::id())
    );
    let out = stdout_of(&["streams", d, "--prefix", "late"]);
    assert!(out.contains("late-1\t0\t1"), "{out}");
    let out = stdout_of(&["dump", d, "--from", &(total - 1).to_string()]);
    assert!(
        out.contains("stream=late-1 ") && out.ends_with("payload=late\n"),
        "{out}"
    );
    evstore().args(["verify", d]).assert().success();
    // Still the writer's store: appending goes on.
    store
        .append(
            "late-1",
            ExpectedVersion::Exact(0),
            &[EventData::new("Late", &b"later"[..])],
        )
        .unwrap();
}

fn no_panic() -> impl predicates::Predicate<str> {
    predicate::str::contains("panicked").not()
}

#[test]
fn bad_usage_and_bad_directories_fail_with_a_message() {
    evstore()
        .arg("frobnicate")
        .assert()
        .code(2)
        .stderr(predicate::str::contains("frobnicate"))
        .stderr(no_panic());
    evstore().assert().code(2).stderr(no_panic());
    let fresh = tempfile::tempdir().unwrap();
    let target = fresh.path().join("bench");
    evstore()
        .args(["bench", path_str(&target), "--durability", "sometimes"])
        .assert()
        .code(2)
        .stderr(predicate::str::contains("sometimes"))
        .stderr(no_panic());
    evstore()
        .args(["bench", path_str(&target), "--threads", "0"])
        .assert()
        .code(2);
    assert!(!target.exists());

    let missing = fresh.path().join("missing");
    for command in ["info", "verify", "streams", "dump", "tail"] {
        evstore()
            .args([command, path_str(&missing)])
            .assert()
            .code(1)
            .stderr(predicate::str::starts_with("evstore: error: "))
            .stderr(predicate::str::contains("does not exist"))
            .stderr(no_panic());
        assert!(!missing.exists(), "{command} created the directory");
    }

    let not_a_store = tempfile::tempdir().unwrap();
    std::fs::write(not_a_store.path().join("notes.txt"), "hello").unwrap();
    for command in ["info", "verify", "streams", "dump", "tail"] {
        evstore()
            .args([command, path_str(not_a_store.path())])
            .assert()
            .code(1)
            .stderr(predicate::str::contains(
                "is not an evstore store (no segments/ directory)",
            ))
            .stderr(no_panic());
    }
    let left: Vec<_> = std::fs::read_dir(not_a_store.path())
        .unwrap()
        .map(|e| e.unwrap().file_name())
        .collect();
    assert_eq!(left, ["notes.txt"]);

    // A file where a directory is expected.
    let file = not_a_store.path().join("notes.txt");
    evstore()
        .args(["info", path_str(&file)])
        .assert()
        .code(1)
        .stderr(predicate::str::contains("not a directory"));
}

#[test]
fn bench_runs_on_a_new_store_and_refuses_a_used_directory() {
    let dir = tempfile::tempdir().unwrap();
    let target = dir.path().join("bench-store");
    let out = stdout_of(&[
        "bench",
        path_str(&target),
        "--events",
        "300",
        "--threads",
        "2",
        "--size",
        "64",
        "--batch",
        "3",
        "--streams",
        "7",
        "--durability",
        "buffered",
    ]);
    assert!(out.contains("events/s"), "{out}");
    assert!(out.contains("p99.9"), "{out}");
    assert!(out.contains("read_all    300 events"), "{out}");
    assert!(out.contains("read_stream 300 events of 7 streams"), "{out}");
    assert!(out.contains("(300 events)"), "{out}");
    // What it made is an ordinary store.
    let out = stdout_of(&["info", path_str(&target)]);
    assert_eq!(first_number(field(&out, "events")), 300);

    evstore()
        .args(["bench", path_str(&target), "--events", "10"])
        .assert()
        .code(1)
        .stderr(predicate::str::contains("exists and is not empty"));
    // An empty directory is fine.
    let empty = tempfile::tempdir().unwrap();
    evstore()
        .args([
            "bench",
            path_str(empty.path()),
            "--events",
            "20",
            "--threads",
            "1",
        ])
        .assert()
        .success()
        .stdout(predicate::str::contains("events/s"));
}

/// Events of three types over four users and two regions, enough to fill
/// several segments, so reads by query cross sealed segments (with
/// postings files) and the active one.
fn tagged_store() -> tempfile::TempDir {
    let dir = tempfile::tempdir().unwrap();
    let store = Store::open(dir.path(), options()).unwrap();
    let types = ["Registered", "Renamed", "Deleted"];
    for i in 0..150u64 {
        let region = if i % 3 == 0 { "region:eu" } else { "region:us" };
        let mut tags = vec![format!("user:{}", i % 4), region.to_string()];
        if i % 10 == 0 {
            tags.push("audit, manual".to_string());
        }
        let event = EventData::new(
            types[(i % 3) as usize],
            format!("event {i} {}", "z".repeat(30)),
        )
        .with_tags(tags);
        store
            .append(&format!("user-{}", i % 4), ExpectedVersion::Any, &[event])
            .unwrap();
    }
    store
        .append(
            "untagged",
            ExpectedVersion::Any,
            &[EventData::new("Registered", &b"no tags"[..])],
        )
        .unwrap();
    store.close().unwrap();
    dir
}

fn json_lines(out: &str) -> Vec<serde_json::Value> {
    out.lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect()
}

fn json_tags(event: &serde_json::Value) -> Vec<String> {
    event["tags"]
        .as_array()
        .unwrap()
        .iter()
        .map(|t| t.as_str().unwrap().to_string())
        .collect()
}

#[test]
fn dump_by_tag_and_type_returns_exactly_the_matching_events() {
    let dir = tagged_store();
    let d = path_str(dir.path());
    let all = json_lines(&stdout_of(&["dump", d, "--json"]));
    assert_eq!(all.len(), 151);
    assert_eq!(json_tags(&all[0]), ["audit, manual", "region:eu", "user:0"]);
    assert!(json_tags(&all[150]).is_empty());

    let expected = |tags: &[&str], types: &[&str], from: u64| -> Vec<u64> {
        all.iter()
            .filter(|e| e["position"].as_u64().unwrap() >= from)
            .filter(|e| {
                let have = json_tags(e);
                tags.iter().all(|t| have.iter().any(|h| h == t))
            })
            .filter(|e| types.is_empty() || types.contains(&e["type"].as_str().unwrap()))
            .map(|e| e["position"].as_u64().unwrap())
            .collect()
    };
    let dumped = |tags: &[&str], types: &[&str], extra: &[&str]| -> Vec<u64> {
        let mut args = vec!["dump", d, "--json"];
        for tag in tags {
            args.extend(["--tag", tag]);
        }
        for event_type in types {
            args.extend(["--type", event_type]);
        }
        args.extend_from_slice(extra);
        let lines = json_lines(&stdout_of(&args));
        for line in &lines {
            assert_eq!(
                line,
                &all[line["position"].as_u64().unwrap() as usize],
                "an event dumped by query differs from the full dump"
            );
        }
        lines
            .iter()
            .map(|e| e["position"].as_u64().unwrap())
            .collect()
    };

    let cases: &[(&[&str], &[&str])] = &[
        (&["user:1"], &[]),
        (&["user:1", "region:eu"], &[]),
        (&[], &["Renamed"]),
        (&[], &["Renamed", "Deleted"]),
        (&["region:us"], &["Registered", "Deleted"]),
        (&["audit, manual"], &[]),
        (&["user:2", "audit, manual"], &["Registered"]),
        (&["nobody"], &[]),
        (&[], &["Unknown"]),
    ];
    for (tags, types) in cases {
        let want = expected(tags, types, 0);
        assert_eq!(
            dumped(tags, types, &[]),
            want,
            "tags {tags:?} types {types:?}"
        );
        // Starting part-way, and cut short.
        assert_eq!(
            dumped(tags, types, &["--from", "77"]),
            expected(tags, types, 77),
            "tags {tags:?} types {types:?} from 77"
        );
        let limited = dumped(tags, types, &["--limit", "3"]);
        assert_eq!(limited, want[..want.len().min(3)]);
    }
    assert!(!expected(&["user:1", "region:eu"], &[], 0).is_empty());
    // The untagged event is found by type.
    assert!(dumped(&[], &["Registered"], &[]).contains(&150));

    // The text form lists the tags, quoting one that holds a comma.
    let out = stdout_of(&["dump", d, "--tag", "user:0", "--limit", "1"]);
    assert!(
        out.starts_with("position=0 stream=user-0 version=0 type=Registered "),
        "{out}"
    );
    assert!(
        out.contains(r#" tags="audit, manual",region:eu,user:0 payload=event 0 "#),
        "{out}"
    );
    let out = stdout_of(&["dump", d, "--from", "150"]);
    assert!(!out.contains("tags="), "{out}");

    evstore()
        .args(["dump", d, "--stream", "user-1", "--tag", "user:1"])
        .assert()
        .code(2);
}

#[test]
fn tail_by_tag_shows_only_matching_events() {
    let dir = tagged_store();
    let d = path_str(dir.path());
    let store = Store::open(dir.path(), options()).unwrap();
    let spawn = |extra: &[&str]| {
        let mut child = std::process::Command::new(BIN)
            .args(["tail", d, "--json"])
            .args(extra)
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap();
        let stdout = lines_of(child.stdout.take().unwrap());
        let stderr = lines_of(child.stderr.take().unwrap());
        (child, stdout, stderr)
    };
    let deadline = Instant::now() + Duration::from_secs(20);
    let (mut live, live_out, live_err) = spawn(&["--tag", "user:9", "--tag", "region:eu"]);
    let (mut history, history_out, history_err) =
        spawn(&["--from", "100", "--tag", "user:3", "--type", "Renamed"]);
    for stderr in [&live_err, &history_err] {
        let ready = next_line(stderr, deadline);
        assert!(ready.contains("following"), "{ready}");
    }

    let append = |stream: &str, event_type: &str, tags: &[&str]| {
        store
            .append(
                stream,
                ExpectedVersion::Any,
                &[EventData::new(event_type, &b"live"[..]).with_tags(tags.iter().copied())],
            )
            .unwrap()
            .first_position
    };
    append("user-9", "Renamed", &["user:9"]);
    append("user-9", "Renamed", &["region:eu"]);
    let first = append("user-9", "Renamed", &["region:eu", "user:9"]);
    append("user-8", "Renamed", &["region:eu", "user:8"]);
    append("user-3", "Deleted", &["user:3"]);
    let second = append("user-9", "Deleted", &["audit", "region:eu", "user:9"]);
    let third = append("user-3", "Renamed", &["user:3"]);
    // Enough for another segment: the live filter works across a rollover.
    let filler: Vec<EventData> = (0..30)
        .map(|i| {
            EventData::new("Renamed", format!("filler {i} {}", "f".repeat(100)))
                .with_tags(["user:7"])
        })
        .collect();
    for chunk in filler.chunks(10) {
        store.append("filler", ExpectedVersion::Any, chunk).unwrap();
    }
    let fourth = append("user-9", "Registered", &["region:eu", "user:9"]);

    let positions = |lines: &mpsc::Receiver<String>, count: usize| -> Vec<u64> {
        (0..count)
            .map(|_| {
                let line: serde_json::Value =
                    serde_json::from_str(&next_line(lines, deadline)).unwrap();
                line["position"].as_u64().unwrap()
            })
            .collect()
    };
    let live_events = positions(&live_out, 3);
    assert_eq!(live_events, [first, second, fourth]);

    // History from position 100 by query, then live events.
    let all = json_lines(&stdout_of(&[
        "dump", d, "--json", "--from", "100", "--limit", "51",
    ]));
    let mut expected: Vec<u64> = all
        .iter()
        .filter(|e| e["type"] == "Renamed" && json_tags(e).contains(&"user:3".to_string()))
        .map(|e| e["position"].as_u64().unwrap())
        .collect();
    assert!(!expected.is_empty());
    expected.push(third);
    assert_eq!(positions(&history_out, expected.len()), expected);

    for (child, lines) in [(&mut live, &live_out), (&mut history, &history_out)] {
        let status = terminate(child);
        assert!(status.success(), "{status}");
        // Nothing else was printed.
        let rest: Vec<String> = lines.try_iter().collect();
        assert!(rest.is_empty(), "{rest:?}");
    }
}

#[test]
fn info_reports_postings_files() {
    let dir = tagged_store();
    let out = stdout_of(&["info", path_str(dir.path())]);
    let segments = first_number(field(&out, "segments"));
    assert!(segments >= 3, "expected several segments:\n{out}");
    let postings: Vec<PathBuf> = std::fs::read_dir(dir.path().join("segments"))
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().is_some_and(|e| e == "tags"))
        .collect();
    // One per sealed segment.
    assert_eq!(postings.len() as u64, segments - 1);
    let line = field(&out, "postings files");
    assert_eq!(first_number(line), segments - 1, "{line}");
    let bytes: u64 = postings
        .iter()
        .map(|p| std::fs::metadata(p).unwrap().len())
        .sum();
    assert!(bytes > 0);
    assert!(line.ends_with(&format!("({bytes} bytes)")), "{line}");

    // The sample store has them too.
    let (dir, _) = sample_store();
    let out = stdout_of(&["info", path_str(dir.path())]);
    let segments = first_number(field(&out, "segments"));
    assert_eq!(first_number(field(&out, "postings files")), segments - 1);
}

#[test]
fn delete_and_truncate_change_nothing_on_a_dry_run_and_take_effect_otherwise() {
    let dir = tempfile::tempdir().unwrap();
    {
        let store = Store::open(dir.path(), options()).unwrap();
        let events = || {
            (0..6u8)
                .map(|i| EventData::new("Step", vec![i]))
                .collect::<Vec<_>>()
        };
        store
            .append("job", ExpectedVersion::Any, &events())
            .unwrap();
        store
            .append("cart", ExpectedVersion::Any, &events())
            .unwrap();
        store.close().unwrap();
    }
    let path = path_str(dir.path());
    let read = |stream: &str| {
        let store = Store::open(dir.path(), options()).unwrap();
        let versions: Vec<u64> = store
            .read_stream(stream, 0, evstore::Direction::Forward, 100)
            .unwrap()
            .iter()
            .map(|e| e.version)
            .collect();
        store.close().unwrap();
        versions
    };
    let said = stdout_of(&["truncate", path, "job", "--before", "4", "--dry-run"]);
    assert!(
        said.contains("4 of 6 events would no longer be read"),
        "{said}"
    );
    assert_eq!(read("job"), [0, 1, 2, 3, 4, 5]);
    let said = stdout_of(&["truncate", path, "job", "--before", "4"]);
    assert!(said.contains("4 of 6 events no longer read"), "{said}");
    assert_eq!(read("job"), [4, 5]);

    let said = stdout_of(&["delete", path, "cart", "--dry-run"]);
    assert!(said.contains("6 events would no longer be read"), "{said}");
    assert_eq!(read("cart").len(), 6);
    let said = stdout_of(&["delete", path, "cart", "--hard"]);
    assert!(said.contains("tombstone at version 6"), "{said}");
    assert!(read("cart").is_empty());
    evstore()
        .args(["delete", path, "cart"])
        .assert()
        .code(1)
        .stderr(predicate::str::contains("deleted for good"));
}

#[test]
fn scavenge_reclaims_what_a_deletion_dropped_and_info_reports_it_first() {
    let dir = tempfile::tempdir().unwrap();
    {
        let store = Store::open(dir.path(), options()).unwrap();
        for i in 0..200u32 {
            let stream = if i % 2 == 0 { "keep" } else { "drop" };
            store
                .append(
                    stream,
                    ExpectedVersion::Any,
                    &[EventData::new("Step", vec![7u8; 200])],
                )
                .unwrap();
        }
        store
            .delete_stream("drop", ExpectedVersion::Any, evstore::DeleteMode::Hard)
            .unwrap();
        store.close().unwrap();
    }
    let path = path_str(dir.path());
    let info = stdout_of(&["info", path]);
    assert!(!field(&info, "reclaimable").starts_with("0 B"), "{info}");
    let dry = stdout_of(&["scavenge", path, "--dry-run"]);
    assert!(dry.starts_with("would rewrite"), "{dry}");
    let done = stdout_of(&["scavenge", path]);
    assert!(
        done.starts_with("rewrote") && !done.contains(" 0 events redacted"),
        "{done}"
    );
    let info = stdout_of(&["info", path]);
    assert!(field(&info, "reclaimable").starts_with("0 B"), "{info}");
    let again = stdout_of(&["scavenge", path]);
    assert!(again.contains(" 0 events redacted"), "{again}");
    let forgot = stdout_of(&["forget", path, "nobody"]);
    assert!(forgot.contains("has no key"), "{forgot}");
}

#[test]
fn erase_makes_events_read_as_erased() {
    let dir = tempfile::tempdir().unwrap();
    {
        let store = Store::open(dir.path(), options()).unwrap();
        let events: Vec<_> = (0..4u8)
            .map(|i| EventData::new("Step", vec![b'a' + i]))
            .collect();
        store.append("p", ExpectedVersion::Any, &events).unwrap();
        store.close().unwrap();
    }
    let path = path_str(dir.path());
    let said = stdout_of(&["erase", path, "p", "--from", "1", "--to", "2"]);
    assert!(said.contains("erased versions 1 to 2"), "{said}");
    let erased = |dir: &Path| {
        let store = Store::open(dir, options()).unwrap();
        let flags: Vec<bool> = store
            .read_stream("p", 0, evstore::Direction::Forward, 10)
            .unwrap()
            .iter()
            .map(|e| e.erased)
            .collect();
        store.close().unwrap();
        flags
    };
    assert_eq!(erased(dir.path()), [false, true, true, false]);
    let said = stdout_of(&["erase", path, "p"]);
    assert!(said.contains("erased versions 0 to 3"), "{said}");
    assert_eq!(erased(dir.path()), [true; 4]);
    evstore()
        .args(["erase", path, "p", "--from", "1"])
        .assert()
        .code(2);
}

#[test]
fn info_and_a_dry_run_report_a_segment_being_written_whose_events_are_all_dead() {
    let dir = tempfile::tempdir().unwrap();
    {
        let store = Store::open(dir.path(), Options::default()).unwrap();
        let events: Vec<_> = (0..5)
            .map(|_| EventData::new("Step", vec![1u8; 50]))
            .collect();
        store.append("gone", ExpectedVersion::Any, &events).unwrap();
        store
            .delete_stream("gone", ExpectedVersion::Any, evstore::DeleteMode::Hard)
            .unwrap();
        store.close().unwrap();
    }
    let path = path_str(dir.path());
    let info = stdout_of(&["info", path]);
    assert!(
        field(&info, "reclaimable").contains("the segment being written (5 events, all dead)"),
        "{info}"
    );
    let dry = stdout_of(&["scavenge", path, "--dry-run"]);
    assert!(dry.contains("whose 5 events are all dead"), "{dry}");
    stdout_of(&["scavenge", path]);
    let info = stdout_of(&["info", path]);
    assert!(
        !field(&info, "reclaimable").contains("segment being written"),
        "{info}"
    );
}

#[test]
fn bench_refuses_sizes_and_batches_it_cannot_make_before_making_anything() {
    let dir = tempfile::tempdir().unwrap();
    let target = dir.path().join("store");
    for args in [
        ["--size", "18446744073709551615"],
        ["--size", "16777217"],
        ["--batch", "1000000000000"],
    ] {
        evstore()
            .args(["bench", path_str(&target), "--events", "1"])
            .args(args)
            .assert()
            .code(2)
            .stderr(predicate::str::contains("must be at most"));
        assert!(!target.exists(), "{args:?} left a store behind");
    }
}

#[test]
fn info_verify_and_dump_go_past_removed_segments() {
    let dir = tempfile::tempdir().unwrap();
    let path = path_str(dir.path());
    let live = {
        let store = Store::open(dir.path(), options().idempotency_window(8)).unwrap();
        for _ in 0..120u32 {
            store
                .append(
                    "drop",
                    ExpectedVersion::Any,
                    &[EventData::new("Step", vec![7u8; 200])],
                )
                .unwrap();
        }
        store
            .delete_stream("drop", ExpectedVersion::Any, evstore::DeleteMode::Soft)
            .unwrap();
        for _ in 0..40u32 {
            store
                .append(
                    "keep",
                    ExpectedVersion::Any,
                    &[EventData::new("Step", vec![7u8; 200])],
                )
                .unwrap();
        }
        let report = store.scavenge().unwrap();
        assert!(report.segments_removed > 0, "{report:?}");
        let live = store
            .read_all(0, evstore::Direction::Forward, usize::MAX)
            .unwrap()
            .len();
        store.close().unwrap();
        live
    };
    let info = stdout_of(&["info", path]);
    assert!(field(&info, "segments").contains(" removed"), "{info}");
    assert!(!field(&info, "segments").contains(" 0 removed"), "{info}");
    // Events held on disk: the live ones, and dead ones not removed yet.
    let events: usize = field(&info, "events").parse().unwrap();
    assert!(events >= live && events < 160, "{info}");
    assert!(
        field(&info, "positions").contains("in removed segments"),
        "{info}"
    );
    let verify = stdout_of(&["verify", path]);
    assert!(verify.contains("result: clean"), "{verify}");
    let dump = stdout_of(&["dump", path]);
    assert_eq!(dump.lines().count(), live, "{dump}");
}
