//! `delete` and `truncate`: the only commands that write, so they open the
//! store as its writer (and fail while another process holds it).

use crate::open::check_store_dir;
use crate::Outcome;
use anyhow::Context;
use evstore::{DeleteMode, Direction, ExpectedVersion, Options, Store};
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
