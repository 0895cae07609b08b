//! `info`: what a store holds and what it takes on disk.

use crate::open::{open_read_only, Seen};
use crate::output::write_fields;
use crate::Outcome;
use anyhow::Context;
use evstore::format::{
    CHECKPOINT_FORMAT_VERSION, FORMAT_VERSION, OLDEST_FORMAT_VERSION, REMOVED_FORMAT_VERSION,
    SEGMENT_MAGIC, SNAPSHOT_FORMAT_VERSION,
};
use evstore::{CHECKPOINTS_DIR, SEGMENTS_DIR, SNAPSHOTS_DIR};
use indicatif::HumanBytes;
use std::collections::BTreeSet;
use std::fs;
use std::io::{self, BufWriter, Read, Write};
use std::os::unix::fs::MetadataExt;
use std::path::Path;

pub fn run(dir: &Path) -> anyhow::Result<Outcome> {
    let store = open_read_only(dir, Seen::Durable)?;
    let end = store.refresh().context("reading the end of the log")?;
    let log = store.log_info();
    let disk = disk_use(dir).with_context(|| format!("measuring {}", dir.display()))?;
    let files = count_files(dir);

    let sealed = log.segments.iter().filter(|s| s.sealed).count();
    let removed = log.segments.iter().filter(|s| s.removed).count();
    // Removed segments hold no events, only positions.
    let held: u64 = log.segments.iter().map(|s| s.events).sum::<u64>().min(end);
    let first = log
        .segments
        .iter()
        .find(|s| !s.removed)
        .map_or(0, |s| s.base_position);
    let segment_bytes: u64 = log.segments.iter().map(|s| s.file_len).sum();
    let versions: BTreeSet<String> = log
        .segments
        .iter()
        .map(|s| match segment_format_version(&s.path) {
            Ok(Some(v)) => format!("v{v}"),
            Ok(None) => "not a segment".to_string(),
            Err(_) => "unreadable".to_string(),
        })
        .collect();
    let on_disk = if versions.is_empty() {
        "no segments yet".to_string()
    } else {
        versions.into_iter().collect::<Vec<_>>().join(", ")
    };

    let mut fields = vec![
        ("store".to_string(), dir.display().to_string()),
        (
            "format".to_string(),
            format!(
                "segments {on_disk} (this build reads v{OLDEST_FORMAT_VERSION} to v{FORMAT_VERSION}, \
                 and v{REMOVED_FORMAT_VERSION} for removed ones), \
                 snapshots v{SNAPSHOT_FORMAT_VERSION}, checkpoints v{CHECKPOINT_FORMAT_VERSION}"
            ),
        ),
        (
            "segments".to_string(),
            format!(
                "{} ({sealed} sealed, of which {removed} removed, {} active), {}",
                log.segments.len(),
                log.segments.len() - sealed,
                HumanBytes(segment_bytes)
            ),
        ),
        ("events".to_string(), held.to_string()),
        ("streams".to_string(), log.stream_count.to_string()),
        (
            "positions".to_string(),
            match end.checked_sub(1) {
                Some(last) if removed > 0 => format!(
                    "first {first}, last {last} ({} in removed segments)",
                    end - held
                ),
                Some(last) => format!("first {first}, last {last}"),
                None => "none (empty)".to_string(),
            },
        ),
        (
            "durable end".to_string(),
            format!("{} (written end {})", log.durable_end, log.written_end),
        ),
        (
            "index files".to_string(),
            format!(
                "{} ({} in use), stream catalogue {}",
                files.index_files,
                log.segments
                    .iter()
                    .filter(|s| s.index_file.is_some())
                    .count(),
                if files.catalog { "present" } else { "absent" }
            ),
        ),
        (
            "postings files".to_string(),
            format!(
                "{} (type and tag indexes), {} ({} bytes)",
                files.postings_files,
                HumanBytes(files.postings_bytes),
                files.postings_bytes
            ),
        ),
        (
            "snapshot files".to_string(),
            format!(
                "{} ({} damaged, {} temporary)",
                files.snapshots, files.damaged_snapshots, files.temporary_snapshots
            ),
        ),
        (
            "checkpoint files".to_string(),
            format!(
                "{} ({} temporary)",
                files.checkpoints, files.temporary_checkpoints
            ),
        ),
        (
            "disk use".to_string(),
            format!(
                "{} in {} files ({} bytes), {} allocated",
                HumanBytes(disk.bytes),
                disk.files,
                disk.bytes,
                HumanBytes(disk.allocated)
            ),
        ),
    ];
    let reclaimable = match store.reclaimable() {
        Ok(report) => {
            let sealed = format!(
                "{} by scavenging ({} events in {} segments to rewrite, {} segments to remove)",
                HumanBytes(report.bytes_reclaimed()),
                report.events_redacted,
                report.segments_rewritten,
                report.segments_removed
            );
            match report.active_dead_events {
                0 => sealed,
                dead => {
                    format!("{sealed}, and the segment being written ({dead} events, all dead)")
                }
            }
        }
        Err(e) => format!("unknown ({e})"),
    };
    fields.push(("reclaimable".to_string(), reclaimable));
    fields.push(("lock".to_string(), lock_state(dir)));

    let mut out = BufWriter::new(io::stdout().lock());
    write_fields(&mut out, &fields)?;
    if !log.segments.is_empty() {
        writeln!(out)?;
        let rows: Vec<[String; 6]> = log
            .segments
            .iter()
            .map(|s| {
                [
                    file_name(&s.path),
                    s.base_position.to_string(),
                    s.events.to_string(),
                    if s.sealed { "sealed" } else { "active" }.to_string(),
                    HumanBytes(s.file_len).to_string(),
                    s.index_file
                        .as_deref()
                        .map(file_name)
                        .unwrap_or_else(|| "-".to_string()),
                ]
            })
            .collect();
        write_table(
            &mut out,
            &["SEGMENT", "FIRST", "EVENTS", "STATE", "SIZE", "INDEX"],
            &rows,
        )?;
    }
    out.flush()?;
    Ok(Outcome::Success)
}

fn file_name(path: &Path) -> String {
    path.file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_else(|| path.display().to_string())
}

fn write_table<const N: usize>(
    out: &mut impl Write,
    header: &[&str; N],
    rows: &[[String; N]],
) -> io::Result<()> {
    let mut widths = header.map(str::len);
    for row in rows {
        for (width, cell) in widths.iter_mut().zip(row) {
            *width = (*width).max(cell.len());
        }
    }
    let mut line = |cells: &[&str]| -> io::Result<()> {
        let mut text = String::new();
        for (i, (cell, width)) in cells.iter().zip(widths).enumerate() {
            if i + 1 == N {
                text.push_str(cell);
            } else {
                text.push_str(&format!("{cell:<width$}  "));
            }
        }
        writeln!(out, "{}", text.trim_end())
    };
    line(header)?;
    for row in rows {
        line(&row.each_ref().map(String::as_str))?;
    }
    Ok(())
}

/// The format version in a segment's header, `None` if it does not start
/// with the segment magic.
fn segment_format_version(path: &Path) -> io::Result<Option<u32>> {
    let mut head = [0u8; 12];
    fs::File::open(path)?.read_exact(&mut head)?;
    if head[..8] != SEGMENT_MAGIC {
        return Ok(None);
    }
    Ok(Some(u32::from_le_bytes([
        head[8], head[9], head[10], head[11],
    ])))
}

/// Who holds the store's lock, told from the kernel's table of file locks
/// rather than by taking the lock, which would turn away a writer starting
/// at that moment. The pid in the file alone can be stale: it stays after
/// the holder exits.
fn lock_state(dir: &Path) -> String {
    let path = dir.join(evstore::LOCK_FILE);
    let Ok(meta) = fs::metadata(&path) else {
        return "free (no lock file)".to_string();
    };
    let recorded = fs::read_to_string(&path)
        .ok()
        .map(|pid| pid.trim().to_string())
        .filter(|pid| !pid.is_empty());
    let Ok(locks) = fs::read_to_string("/proc/locks") else {
        return match recorded {
            Some(pid) => format!("unknown (the lock file names process {pid})"),
            None => "unknown".to_string(),
        };
    };
    let wanted = format!(
        "{:02x}:{:02x}:{}",
        dev_major(meta.dev()),
        dev_minor(meta.dev()),
        meta.ino()
    );
    // "1: FLOCK  ADVISORY  WRITE 1673 fe:00:5817313 0 EOF"; waiters have a
    // "->" after the number and hold nothing.
    let holder = locks.lines().find_map(|line| {
        let fields: Vec<&str> = line.split_whitespace().collect();
        (fields.len() >= 6 && fields[1] != "->" && fields[5] == wanted)
            .then(|| fields[4].to_string())
    });
    match holder {
        Some(pid) => format!("held by process {pid}"),
        None => "free".to_string(),
    }
}

/// The major number of a Linux device id, as `/proc/locks` prints it.
fn dev_major(dev: u64) -> u64 {
    ((dev >> 8) & 0xfff) | ((dev >> 32) & !0xfff)
}

/// The minor number of a Linux device id, as `/proc/locks` prints it.
fn dev_minor(dev: u64) -> u64 {
    (dev & 0xff) | ((dev >> 12) & !0xff)
}

#[derive(Debug, Default)]
struct DiskUse {
    files: u64,
    bytes: u64,
    allocated: u64,
}

/// Every file under `dir`: apparent size, and the blocks really allocated
/// (segments are preallocated, so the two differ).
fn disk_use(dir: &Path) -> io::Result<DiskUse> {
    let mut total = DiskUse::default();
    let mut pending = vec![dir.to_path_buf()];
    while let Some(dir) = pending.pop() {
        for entry in fs::read_dir(&dir)? {
            let entry = entry?;
            // Files can vanish under a running writer (temporary files,
            // pruned snapshots): skip them rather than fail.
            let Ok(meta) = entry.path().symlink_metadata() else {
                continue;
            };
            if meta.is_dir() {
                pending.push(entry.path());
            } else {
                total.files += 1;
                total.bytes += meta.len();
                total.allocated += meta.blocks() * 512;
            }
        }
    }
    Ok(total)
}

#[derive(Debug, Default)]
struct FileCounts {
    index_files: usize,
    postings_files: usize,
    postings_bytes: u64,
    catalog: bool,
    snapshots: usize,
    damaged_snapshots: usize,
    temporary_snapshots: usize,
    checkpoints: usize,
    temporary_checkpoints: usize,
}

fn count_files(dir: &Path) -> FileCounts {
    let mut counts = FileCounts::default();
    let segments = dir.join(SEGMENTS_DIR);
    for name in file_names(&segments) {
        if name.ends_with(".idx") {
            counts.index_files += 1;
        } else if name.ends_with(".tags") {
            // One can vanish under a running writer: counted, not sized.
            counts.postings_files += 1;
            counts.postings_bytes += fs::metadata(segments.join(&name)).map_or(0, |m| m.len());
        } else if name == "streams.catalog" {
            counts.catalog = true;
        }
    }
    // snapshots/<stream directory>/<version>.snap
    if let Ok(entries) = fs::read_dir(dir.join(SNAPSHOTS_DIR)) {
        for entry in entries.flatten() {
            for name in file_names(&entry.path()) {
                if name.ends_with(".snap") {
                    counts.snapshots += 1;
                } else if name.ends_with(".damaged") {
                    counts.damaged_snapshots += 1;
                } else if name.ends_with(".tmp") {
                    counts.temporary_snapshots += 1;
                }
            }
        }
    }
    for name in file_names(&dir.join(CHECKPOINTS_DIR)) {
        if name.ends_with(".ckpt") {
            counts.checkpoints += 1;
        } else if name.ends_with(".tmp") {
            counts.temporary_checkpoints += 1;
        }
    }
    counts
}

/// Names of the entries of `dir`; none if it cannot be read (an optional
/// directory that a store may not have yet).
fn file_names(dir: &Path) -> Vec<String> {
    fs::read_dir(dir)
        .map(|entries| {
            entries
                .flatten()
                .map(|e| e.file_name().to_string_lossy().into_owned())
                .collect()
        })
        .unwrap_or_default()
}
