//! `delete`, `truncate`, `forget` and `scavenge`: the commands that write,
//! so they open the store as its writer (and fail while another process
//! holds it).

use crate::open::check_store_dir;
use crate::Outcome;
use anyhow::Context;
use evstore::{DeleteMode, Direction, ExpectedVersion, Options, ScavengeReport, Store};
use indicatif::{HumanBytes, ProgressBar, ProgressStyle};
use std::io::Write;
use std::path::Path;

/// What `delete` and `truncate` act on.
pub struct Target<'a> {
    pub dir: &'a Path,
    pub stream: &'a str,
    /// Only say what would happen.
    pub dry_run: bool,
}

fn open(dir: &Path) -> anyhow::Result<Store> {
    check_store_dir(dir)?;
    Store::open(dir, Options::default()).with_context(|| {
        format!(
            "opening {} to write (is another process using it?)",
            dir.display()
        )
    })
}

/// Events of the stream a read returns now.
fn visible_events(store: &Store, stream: &str) -> anyhow::Result<usize> {
    Ok(store
        .read_stream(stream, 0, Direction::Forward, usize::MAX)?
        .len())
}

/// `evstore delete DIR STREAM [--hard] [--dry-run]`.
pub fn delete(target: &Target<'_>, hard: bool) -> anyhow::Result<Outcome> {
    let store = open(target.dir)?;
    let mode = if hard {
        DeleteMode::Hard
    } else {
        DeleteMode::Soft
    };
    let events = visible_events(&store, target.stream)?;
    let mut out = std::io::stdout().lock();
    if target.dry_run {
        writeln!(
            out,
            "would delete stream {} ({mode:?}): {events} events would no longer be read",
            target.stream
        )?;
    } else {
        let tombstone = store.delete_stream(target.stream, ExpectedVersion::Any, mode)?;
        writeln!(
            out,
            "deleted stream {} ({mode:?}): {events} events no longer read; tombstone at version {}, position {}",
            target.stream, tombstone.first_version, tombstone.first_position
        )?;
    }
    store.close()?;
    Ok(Outcome::Success)
}

/// `evstore truncate DIR STREAM --before VERSION [--dry-run]`.
pub fn truncate(target: &Target<'_>, before: u64) -> anyhow::Result<Outcome> {
    let store = open(target.dir)?;
    let events = visible_events(&store, target.stream)?;
    let dropped = store
        .read_stream(target.stream, 0, Direction::Forward, usize::MAX)?
        .iter()
        .filter(|e| e.version < before)
        .count();
    let mut out = std::io::stdout().lock();
    if target.dry_run {
        writeln!(
            out,
            "would truncate stream {} before version {before}: {dropped} of {events} events would no longer be read",
            target.stream
        )?;
    } else {
        store.truncate_stream(target.stream, before)?;
        writeln!(
            out,
            "truncated stream {} before version {before}: {dropped} of {events} events no longer read",
            target.stream
        )?;
    }
    store.close()?;
    Ok(Outcome::Success)
}

/// `evstore erase DIR STREAM [--from V --to V]`.
pub fn erase(dir: &Path, stream: &str, range: Option<(u64, u64)>) -> anyhow::Result<Outcome> {
    let store = open(dir)?;
    let erased = match range {
        Some((first, last)) => {
            store.erase_events(stream, first, last)?;
            Some((first, last))
        }
        None => {
            let last = store.stream_version(stream)?;
            store.erase_stream(stream)?;
            last.map(|last| (0, last))
        }
    };
    let mut out = std::io::stdout().lock();
    match erased {
        Some((first, last)) => writeln!(
            out,
            "erased versions {first} to {last} of stream {stream}: they read as erased (`evstore scavenge` reclaims their bytes)"
        )?,
        None => writeln!(out, "stream {stream} has no events: nothing erased")?,
    }
    store.close()?;
    Ok(Outcome::Success)
}

/// `evstore forget DIR SUBJECT`.
pub fn forget(dir: &Path, subject: &str) -> anyhow::Result<Outcome> {
    let store = open(dir)?;
    let had_key = store.forget(subject)?;
    let mut out = std::io::stdout().lock();
    if had_key {
        writeln!(
            out,
            "forgot subject {subject}: its key is destroyed; its events read as erased (`evstore scavenge` reclaims their bytes)"
        )?;
    } else {
        writeln!(out, "subject {subject} has no key: nothing sealed for it")?;
    }
    store.close()?;
    Ok(Outcome::Success)
}

/// One line for a scavenge's report, after "rewrote" (or "would
/// rewrite", with `remove` "would remove").
pub fn describe(report: &ScavengeReport, remove: &str) -> String {
    let line = format!(
        "{} of {} sealed segments, {} events redacted; {remove} {} segments ({} positions); \
         {} reclaimed ({} -> {})",
        report.segments_rewritten,
        report.segments_checked,
        report.events_redacted,
        report.segments_removed,
        report.events_removed,
        HumanBytes(report.bytes_reclaimed()),
        HumanBytes(report.bytes_before),
        HumanBytes(report.bytes_after)
    );
    match report.active_dead_events {
        0 => line,
        dead => format!("{line}; and the segment being written, whose {dead} events are all dead"),
    }
}

/// `evstore scavenge DIR [--dry-run]`.
pub fn scavenge(dir: &Path, dry_run: bool) -> anyhow::Result<Outcome> {
    let store = open(dir)?;
    let report = if dry_run {
        store.reclaimable()?
    } else {
        let bar = ProgressBar::new(0).with_style(
            ProgressStyle::with_template("{spinner} [{bar:30}] {pos}/{len} segments {wide_msg}")
                .unwrap_or_else(|_| ProgressStyle::default_bar())
                .progress_chars("=> "),
        );
        let report = store.scavenge_with_progress(|so_far, total| {
            bar.set_length(total);
            bar.set_position(so_far.segments_checked);
            bar.set_message(format!(
                "{} reclaimed",
                HumanBytes(so_far.bytes_reclaimed())
            ));
        });
        bar.finish_and_clear();
        report?
    };
    let (verb, remove) = if dry_run {
        ("would rewrite", "would remove")
    } else {
        ("rewrote", "removed")
    };
    writeln!(
        std::io::stdout().lock(),
        "{verb} {}",
        describe(&report, remove)
    )?;
    store.close()?;
    Ok(Outcome::Success)
}
