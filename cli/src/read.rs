//! `streams`, `dump` and `tail`: reading events out of a store.

use crate::open::{open_read_only, Seen};
use crate::output::{self, Format};
use crate::Outcome;
use anyhow::{bail, Context};
use evstore::{Direction, Filter, Query, QueryItem, Store, Visibility};
use indicatif::{ProgressBar, ProgressStyle};
use serde::Serialize;
use std::io::{self, BufWriter, IsTerminal, Write};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;

/// Events fetched per read: bounds memory whatever the store's size.
const PAGE: usize = 1000;

pub fn streams(dir: &Path, prefix: Option<&str>, json: bool) -> anyhow::Result<Outcome> {
    #[derive(Serialize)]
    struct JsonStream<'a> {
        stream: &'a str,
        version: u64,
        events: u64,
    }

    let store = open_read_only(dir, Seen::Durable)?;
    let prefix = prefix.unwrap_or("");
    let mut out = BufWriter::new(io::stdout().lock());
    if !json {
        writeln!(out, "STREAM\tVERSION\tEVENTS")?;
    }
    for info in store.streams() {
        let info = info.context("listing streams")?;
        if !info.name.starts_with(prefix) {
            // Name order: the streams with the prefix are one run.
            if info.name.as_str() > prefix {
                break;
            }
            continue;
        }
        // Versions are dense, but the stream's metadata or a deletion may
        // drop its oldest: the events kept run from the first one a read
        // returns to the last.
        // (The store's own streams, named with a '$', keep everything and
        // cannot be read by name.)
        let first = if info.name.starts_with('$') {
            Some(0)
        } else {
            store
                .read_stream(&info.name, 0, Direction::Forward, 1)
                .with_context(|| format!("reading stream '{}'", info.name))?
                .first()
                .map(|e| e.version)
        };
        let events = first.map_or(0, |first| (info.version + 1).saturating_sub(first));
        if json {
            serde_json::to_writer(
                &mut out,
                &JsonStream {
                    stream: &info.name,
                    version: info.version,
                    events,
                },
            )
            .map_err(io::Error::from)?;
            writeln!(out)?;
        } else {
            writeln!(out, "{}\t{}\t{}", info.name, info.version, events)?;
        }
    }
    out.flush()?;
    Ok(Outcome::Success)
}

/// The query of `--tag` and `--type`: one item, events carrying every tag
/// and of any of the types; `None` if neither was given.
pub fn query(tags: Vec<String>, types: Vec<String>) -> Option<Query> {
    if tags.is_empty() && types.is_empty() {
        return None;
    }
    Some(Query::items([QueryItem::new().types(types).tags(tags)]))
}

pub struct DumpOptions {
    pub dir: PathBuf,
    pub stream: Option<String>,
    pub from: u64,
    /// Only the events it matches, read through the indexes.
    pub query: Option<Query>,
    pub limit: Option<u64>,
    pub json: bool,
    pub seen: Seen,
}

pub fn dump(options: &DumpOptions) -> anyhow::Result<Outcome> {
    let store = open_read_only(&options.dir, options.seen)?;
    let format = if options.json {
        Format::Json
    } else {
        Format::Text
    };
    let limit = options.limit.unwrap_or(u64::MAX);
    let stdout = io::stdout();
    // A bar would tangle with events printed to the same terminal.
    let progress = if stdout.is_terminal() {
        ProgressBar::hidden()
    } else {
        ProgressBar::new(0).with_style(events_style())
    };
    let mut out = BufWriter::new(stdout.lock());
    let result = match (&options.stream, &options.query) {
        (Some(stream), _) => dump_stream(&store, stream, limit, format, &mut out, &progress),
        (None, Some(query)) => {
            progress.set_style(matches_style());
            let end = store.last_position().map_or(0, |p| p + 1);
            for_each_match(&store, query, options.from, end, limit, |events| {
                for event in events {
                    output::write_event(&mut out, event, format)?;
                }
                progress.inc(events.len() as u64);
                Ok(true)
            })
        }
        (None, None) => dump_all(&store, options.from, limit, format, &mut out, &progress),
    };
    progress.finish_and_clear();
    result?;
    out.flush()?;
    Ok(Outcome::Success)
}

fn events_style() -> ProgressStyle {
    ProgressStyle::with_template("{spinner} {human_pos}/{human_len} events  {per_sec}  {elapsed}")
        .unwrap_or_else(|_| ProgressStyle::default_bar())
}

/// Spinner for a read whose total is not known ahead.
fn matches_style() -> ProgressStyle {
    ProgressStyle::with_template("{spinner} {human_pos} events  {per_sec}  {elapsed}")
        .unwrap_or_else(|_| ProgressStyle::default_spinner())
}

/// Hands `each` the events matching `query` at positions `from..end`, at
/// most `limit` of them, a page at a time in position order, until it
/// returns `false`. Read through the type and tag indexes, so the events
/// that do not match are not read.
fn for_each_match(
    store: &Store,
    query: &Query,
    from: u64,
    end: u64,
    limit: u64,
    mut each: impl FnMut(&[evstore::RecordedEvent]) -> anyhow::Result<bool>,
) -> anyhow::Result<()> {
    let mut next = from;
    let mut left = limit;
    while next < end && left > 0 {
        let count = usize::try_from(left).unwrap_or(usize::MAX).min(PAGE);
        let read = store
            .read_query(query, next, Direction::Forward, count)
            .with_context(|| format!("reading events by query from position {next}"))?;
        // What was appended after `end` is left out, so a read of a busy
        // store ends.
        let events: Vec<_> = read
            .events
            .into_iter()
            .filter(|e| e.position < end)
            .collect();
        let Some(last) = events.last() else {
            break;
        };
        next = last.position + 1;
        left -= events.len() as u64;
        if !each(&events)? {
            break;
        }
    }
    Ok(())
}

/// The events at positions `from..` as they stand now: what a writer
/// appends meanwhile is left out, so a dump of a busy store ends.
fn dump_all(
    store: &Store,
    from: u64,
    limit: u64,
    format: Format,
    out: &mut impl Write,
    progress: &ProgressBar,
) -> anyhow::Result<()> {
    let end = store.last_position().map_or(0, |p| p + 1);
    progress.set_length(end.saturating_sub(from).min(limit));
    let mut next = from;
    let mut written = 0u64;
    while next < end && written < limit {
        let count = usize::try_from(limit - written)
            .unwrap_or(usize::MAX)
            .min(PAGE);
        let events = store
            .read_all(next, Direction::Forward, count)
            .with_context(|| format!("reading the log at position {next}"))?;
        // Reads skip what streams no longer keep: nothing more means the
        // rest of the log up to its end is such events.
        let Some(last) = events.last() else {
            break;
        };
        next = last.position + 1;
        for event in events.iter().take_while(|e| e.position < end) {
            output::write_event(out, event, format)?;
            written += 1;
        }
        progress.inc(events.len() as u64);
    }
    Ok(())
}

fn dump_stream(
    store: &Store,
    stream: &str,
    limit: u64,
    format: Format,
    out: &mut impl Write,
    progress: &ProgressBar,
) -> anyhow::Result<()> {
    let Some(last) = store
        .stream_version(stream)
        .with_context(|| format!("reading stream '{stream}'"))?
    else {
        bail!("stream '{stream}' has no events");
    };
    progress.set_length((last + 1).min(limit));
    let mut next = 0;
    let mut written = 0u64;
    while next <= last && written < limit {
        let count = usize::try_from(limit - written)
            .unwrap_or(usize::MAX)
            .min(PAGE);
        let events = store
            .read_stream(stream, next, Direction::Forward, count)
            .with_context(|| format!("reading stream '{stream}' at version {next}"))?;
        // A stream whose metadata or deletion drops its events reads as
        // shorter than its last version says, or as empty.
        let Some(last_read) = events.last() else {
            break;
        };
        next = last_read.version + 1;
        for event in events.iter().take_while(|e| e.version <= last) {
            output::write_event(out, event, format)?;
            written += 1;
        }
        progress.inc(events.len() as u64);
    }
    Ok(())
}

pub struct TailOptions {
    pub dir: PathBuf,
    pub from: Option<u64>,
    pub stream_prefix: Option<String>,
    /// Only the events it matches.
    pub query: Option<Query>,
    pub json: bool,
    pub seen: Seen,
}

/// How often an idle `tail` looks for new events itself, for a stop signal
/// and for a closed stdout.
const TAIL_TICK: Duration = Duration::from_millis(100);

pub fn tail(options: &TailOptions) -> anyhow::Result<Outcome> {
    let stop = Arc::new(AtomicBool::new(false));
    for signal in [signal_hook::consts::SIGINT, signal_hook::consts::SIGTERM] {
        // A second signal while the first is still being handled ends the
        // process at once, as without a handler.
        signal_hook::flag::register_conditional_shutdown(signal, 130, Arc::clone(&stop))
            .context("installing a signal handler")?;
        signal_hook::flag::register(signal, Arc::clone(&stop))
            .context("installing a signal handler")?;
    }

    let store = open_read_only(&options.dir, options.seen)?;
    let end = store.refresh().context("reading the end of the log")?;
    let from = options.from.unwrap_or(end);
    let mut filter = Filter::all();
    if let Some(prefix) = &options.stream_prefix {
        filter = filter.with_stream_prefix(prefix.clone());
    }
    // With a query, the history before `end` is read through the indexes
    // and the subscription only follows what comes after it.
    let mut follow_from = from;
    if let Some(query) = &options.query {
        let query = query.clone();
        filter = filter.with_predicate(move |event| query.matches(event));
        follow_from = from.max(end);
    }
    let format = if options.json {
        Format::Json
    } else {
        Format::Text
    };
    let mut subscription = store.subscribe_all(follow_from, filter.clone());
    if options.seen == Seen::Written {
        subscription = subscription.with_visibility(Visibility::Written);
    }
    let mut out = BufWriter::new(io::stdout().lock());
    // Said once the subscription exists: an event appended after this line
    // is seen.
    let _ = writeln!(
        io::stderr(),
        "evstore: following {} from position {from} (Ctrl-C to stop)",
        options.dir.display()
    );
    if let Some(query) = options.query.as_ref().filter(|_| from < end) {
        for_each_match(&store, query, from, end, u64::MAX, |events| {
            for event in events.iter().filter(|e| filter.matches(e)) {
                output::write_event(&mut out, event, format)?;
            }
            Ok(!stop.load(Ordering::Relaxed))
        })?;
        out.flush()?;
    }
    let mut pending = false;
    while !stop.load(Ordering::Relaxed) {
        let event = match subscription.try_next().context("following the log")? {
            Some(event) => Some(event),
            None => {
                // Caught up: show what was written before waiting.
                if pending {
                    out.flush()?;
                    pending = false;
                }
                if output::stdout_closed() {
                    break;
                }
                // The follower polls on its own; this keeps the delay to
                // one tick whatever its interval.
                store.refresh().context("following the log")?;
                subscription
                    .next_timeout(TAIL_TICK)
                    .context("following the log")?
            }
        };
        if let Some(event) = event {
            output::write_event(&mut out, &event, format)?;
            pending = true;
        }
    }
    out.flush()?;
    Ok(Outcome::Success)
}
