//! `evstore`: inspect, check, read, follow and benchmark evstore stores.
//!
//! Install with `cargo install --path cli` from the repository root.
//!
//! ```text
//! evstore info DIR                      segments, events, streams, files, disk use
//! evstore verify DIR                    check every byte; exit 1 if anything is damaged
//! evstore stats DIR [--json]            positions, watermarks, segment sizes, checkpoint lag
//! evstore streams DIR [--prefix P] [--json]   stream names, versions, event counts
//! evstore dump DIR [--stream S | --from POSITION] [--tag T]... [--type T]... [--limit N] [--json] [--written]
//! evstore tail DIR [--from POSITION] [--filter-stream-prefix P] [--tag T]... [--type T]... [--json] [--written]
//! evstore delete DIR STREAM [--hard] [--dry-run]   delete a stream (opens the store to write)
//! evstore truncate DIR STREAM --before VERSION [--dry-run]   drop a stream's older events
//! evstore erase DIR STREAM [--from V --to V]   erase events: they read as erased at once
//! evstore forget DIR SUBJECT            destroy a subject's key: its sealed events read as erased
//! evstore scavenge DIR [--dry-run]      reclaim the bytes of events no read returns
//! evstore bench DIR [--events N] [--threads T] [--size B] [--batch K] [--streams S]
//!                   [--durability sync|buffered]
//! ```
//!
//! Every command but `bench`, `delete`, `truncate`, `erase`, `forget` and `scavenge` opens the store read-only: it takes no lock and
//! writes nothing, so it works beside a process that has the store open and
//! is appending to it, and sees the events that process has made durable
//! (`--written` on `dump` and `tail`: every whole batch in the files).
//! `bench` creates a new store and refuses a directory that is not empty;
//! its defaults (10,000 single-event durable appends from 4 threads) take a
//! few seconds. `evstore COMMAND --help` describes every flag.
//!
//! `dump` and `tail` print one event per line:
//!
//! ```text
//! position=0 stream=order-1 version=0 type=OrderPlaced timestamp=2025-01-01T12:00:00.000000000Z id=… tags=customer:7,region:eu payload={"total":42}
//! ```
//!
//! `--tag T` (repeatable: an event must carry every one) and `--type T`
//! (repeatable: any of them) select events as one query item; `dump` then
//! reads through the store's type and tag indexes.
//!
//! Payload and metadata are shown as text when they are valid UTF-8 (control
//! characters escaped) and as `payload(hex)=…` otherwise; empty metadata and
//! an empty tag list are left out (a tag holding a comma, a space, `=` or a
//! quote is quoted). The text form is for reading; `--json` prints one exact
//! JSON object per line with `tags` (an array of strings) and
//! `payload_encoding` / `metadata_encoding` set to `"utf8"` or `"hex"`.
//!
//! Exit status: 0 on success, 1 on an error (or, for `verify`, when damage
//! was found), 2 on bad usage. Errors are printed as `evstore: error: …`.
//! Output cut short by a closed pipe (`evstore dump DIR | head`) is a
//! success.

#![deny(unsafe_code)]
#![warn(clippy::unwrap_used, clippy::expect_used)]

mod bench;
mod info;
mod lifecycle;
mod open;
mod output;
mod read;
mod stats;
mod verify;

use clap::{Args, Parser, Subcommand, ValueEnum};
use std::io::{self, Write};
use std::path::PathBuf;
use std::process::ExitCode;

#[derive(Debug, Parser)]
#[command(
    name = "evstore",
    version,
    about = "Inspect, verify, read, follow, benchmark and maintain evstore stores",
    long_about = "Inspect, verify, read, follow, benchmark and maintain evstore stores.\n\n\
        `info`, `verify`, `stats`, `streams`, `dump` and `tail` open the store read-only: no lock is \
        taken and nothing is written, so they run beside a process that is appending to the \
        store. `delete`, `truncate`, `erase`, `forget` and `scavenge` open it to write."
)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Show format versions, segments, events, streams, files and disk use.
    Info {
        /// The store directory.
        dir: PathBuf,
    },
    /// Check every segment, index file, snapshot and checkpoint; exit 1 if anything is damaged.
    Verify {
        /// The store directory.
        dir: PathBuf,
    },
    /// Show positions, watermarks, segment sizes and how far each saved checkpoint lags.
    Stats {
        /// The store directory.
        dir: PathBuf,
        /// One JSON object instead of text.
        #[arg(long)]
        json: bool,
    },
    /// List streams with their versions and event counts, in name order.
    Streams(StreamsArgs),
    /// Print events of the global log or of one stream.
    Dump(DumpArgs),
    /// Follow new events as they are made durable, like `tail -f`, until interrupted.
    Tail(TailArgs),
    /// Append to a new store, then read it back, and report throughput and latency.
    Bench(BenchArgs),
    /// Delete a stream: it reads as empty (a tombstone tells subscribers); --hard closes it for good.
    Delete(DeleteArgs),
    /// Drop the events of a stream below a version (for example those a snapshot replaces).
    Truncate(TruncateArgs),
    /// Erase a stream's events (all of them now, or a range of versions): read as erased at once.
    Erase {
        /// The store directory (opened to write: no other process may have it open).
        dir: PathBuf,
        /// The stream.
        stream: String,
        /// The first version erased (with --to).
        #[arg(long, value_name = "V", requires = "to")]
        from: Option<u64>,
        /// The last version erased (with --from).
        #[arg(long, value_name = "V", requires = "from")]
        to: Option<u64>,
    },
    /// Destroy a subject's key: the events sealed for it read as erased from then on.
    Forget {
        /// The store directory (opened to write: no other process may have it open).
        dir: PathBuf,
        /// The subject (by default, the stream the events were appended to).
        subject: String,
    },
    /// Reclaim the bytes of events no read returns any more (expired, deleted, erased).
    Scavenge {
        /// The store directory (opened to write: no other process may have it open).
        dir: PathBuf,
        /// Only say how much would be reclaimed.
        #[arg(long)]
        dry_run: bool,
    },
}

#[derive(Debug, Args)]
struct DeleteArgs {
    /// The store directory (opened to write: no other process may have it open).
    dir: PathBuf,
    /// The stream to delete.
    stream: String,
    /// Close the stream for good: later appends fail.
    #[arg(long)]
    hard: bool,
    /// Only say what would be deleted.
    #[arg(long)]
    dry_run: bool,
}

#[derive(Debug, Args)]
struct TruncateArgs {
    /// The store directory (opened to write: no other process may have it open).
    dir: PathBuf,
    /// The stream to truncate.
    stream: String,
    /// The lowest version kept.
    #[arg(long, value_name = "VERSION")]
    before: u64,
    /// Only say what would be dropped.
    #[arg(long)]
    dry_run: bool,
}

#[derive(Debug, Args)]
struct StreamsArgs {
    /// The store directory.
    dir: PathBuf,
    /// Only streams whose name starts with this.
    #[arg(long, value_name = "P")]
    prefix: Option<String>,
    /// One JSON object per line: {"stream", "version", "events"}.
    #[arg(long)]
    json: bool,
}

#[derive(Debug, Args)]
struct DumpArgs {
    /// The store directory.
    dir: PathBuf,
    /// Only the events of this stream, in version order.
    #[arg(long, value_name = "S", conflicts_with = "from")]
    stream: Option<String>,
    /// Start at this global position (default 0).
    #[arg(long, value_name = "POSITION")]
    from: Option<u64>,
    /// Only events carrying this tag (repeat: every one given).
    #[arg(long = "tag", value_name = "T", conflicts_with = "stream")]
    tags: Vec<String>,
    /// Only events of this type (repeat: any one given).
    #[arg(long = "type", value_name = "T", conflicts_with = "stream")]
    types: Vec<String>,
    /// Print at most this many events.
    #[arg(long, value_name = "N")]
    limit: Option<u64>,
    /// One JSON object per line instead of text.
    #[arg(long)]
    json: bool,
    /// Also events written but not yet recorded as durable (after a crash:
    /// what the writer's next open keeps).
    #[arg(long)]
    written: bool,
}

#[derive(Debug, Args)]
struct TailArgs {
    /// The store directory.
    dir: PathBuf,
    /// Start at this global position, history included (default: only new events).
    #[arg(long, value_name = "POSITION")]
    from: Option<u64>,
    /// Only events whose stream name starts with this.
    #[arg(long, value_name = "P")]
    filter_stream_prefix: Option<String>,
    /// Only events carrying this tag (repeat: every one given).
    #[arg(long = "tag", value_name = "T")]
    tags: Vec<String>,
    /// Only events of this type (repeat: any one given).
    #[arg(long = "type", visible_alias = "filter-type", value_name = "T")]
    types: Vec<String>,
    /// One JSON object per line instead of text.
    #[arg(long)]
    json: bool,
    /// Follow events as they are written, before the writer records them
    /// as durable.
    #[arg(long)]
    written: bool,
}

#[derive(Debug, Args)]
struct BenchArgs {
    /// Where to create the benchmark store; must not exist or be empty.
    dir: PathBuf,
    /// Events to append in all.
    #[arg(long, value_name = "N", default_value_t = 10_000, value_parser = clap::value_parser!(u64).range(1..))]
    events: u64,
    /// Appending threads.
    #[arg(long, value_name = "T", default_value_t = 4, value_parser = parse_positive)]
    threads: usize,
    /// Payload bytes per event (at most 16 MiB, the store's default event
    /// size limit).
    #[arg(long, value_name = "B", default_value_t = 256, value_parser = parse_event_size)]
    size: usize,
    /// Events per append (at most 1,000,000).
    #[arg(long, value_name = "K", default_value_t = 1, value_parser = parse_batch)]
    batch: usize,
    /// Streams the events are spread over.
    #[arg(long, value_name = "S", default_value_t = 100, value_parser = parse_positive)]
    streams: usize,
    /// When an append is acknowledged: after fdatasync (sync) or once written (buffered).
    #[arg(long, value_enum, default_value_t = DurabilityArg::Sync)]
    durability: DurabilityArg,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
enum DurabilityArg {
    /// Acknowledged after the fdatasync that covers it.
    Sync,
    /// Acknowledged once written; synced in the background.
    Buffered,
}

/// Payload sizes `bench` takes: what an event may hold by default, checked
/// before any payload is made.
fn parse_event_size(text: &str) -> Result<usize, String> {
    let max = 16 << 20;
    match text.parse::<usize>() {
        Ok(n) if n > max => Err(format!("must be at most {max} (16 MiB)")),
        Ok(n) => Ok(n),
        Err(e) => Err(e.to_string()),
    }
}

/// Batch sizes `bench` takes: each batch's events are made up front.
fn parse_batch(text: &str) -> Result<usize, String> {
    match parse_positive(text)? {
        n if n > 1_000_000 => Err("must be at most 1000000".to_string()),
        n => Ok(n),
    }
}

fn parse_positive(text: &str) -> Result<usize, String> {
    match text.parse::<usize>() {
        Ok(0) => Err("must be at least 1".to_string()),
        Ok(n) => Ok(n),
        Err(e) => Err(e.to_string()),
    }
}

/// How a command that ran to its end came out.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Outcome {
    Success,
    /// The command worked, and what it found is bad (`verify`).
    Damaged,
}

fn main() -> ExitCode {
    // A bug here must still end with one clear line, not a backtrace.
    std::panic::set_hook(Box::new(|info| {
        let _ = writeln!(io::stderr(), "evstore: error: internal error: {info}");
    }));
    let cli = Cli::parse();
    match run(cli.command) {
        Ok(Outcome::Success) => ExitCode::SUCCESS,
        Ok(Outcome::Damaged) => ExitCode::from(1),
        // The reader went away (`| head`): everything it wanted was written.
        Err(e) if output::is_broken_pipe(&e) => ExitCode::SUCCESS,
        Err(e) => {
            let _ = writeln!(io::stderr(), "evstore: error: {e:#}");
            ExitCode::from(1)
        }
    }
}

fn seen(written: bool) -> open::Seen {
    if written {
        open::Seen::Written
    } else {
        open::Seen::Durable
    }
}

fn run(command: Command) -> anyhow::Result<Outcome> {
    match command {
        Command::Info { dir } => info::run(&dir),
        Command::Verify { dir } => verify::run(&dir),
        Command::Stats { dir, json } => stats::run(&dir, json),
        Command::Streams(args) => read::streams(&args.dir, args.prefix.as_deref(), args.json),
        Command::Dump(args) => read::dump(&read::DumpOptions {
            dir: args.dir,
            stream: args.stream,
            from: args.from.unwrap_or(0),
            query: read::query(args.tags, args.types),
            limit: args.limit,
            json: args.json,
            seen: seen(args.written),
        }),
        Command::Tail(args) => read::tail(&read::TailOptions {
            dir: args.dir,
            from: args.from,
            stream_prefix: args.filter_stream_prefix,
            query: read::query(args.tags, args.types),
            json: args.json,
            seen: seen(args.written),
        }),
        Command::Delete(args) => lifecycle::delete(
            &lifecycle::Target {
                dir: &args.dir,
                stream: &args.stream,
                dry_run: args.dry_run,
            },
            args.hard,
        ),
        Command::Truncate(args) => lifecycle::truncate(
            &lifecycle::Target {
                dir: &args.dir,
                stream: &args.stream,
                dry_run: args.dry_run,
            },
            args.before,
        ),
        Command::Erase {
            dir,
            stream,
            from,
            to,
        } => lifecycle::erase(&dir, &stream, from.zip(to)),
        Command::Forget { dir, subject } => lifecycle::forget(&dir, &subject),
        Command::Scavenge { dir, dry_run } => lifecycle::scavenge(&dir, dry_run),
        Command::Bench(args) => bench::run(&bench::BenchOptions {
            dir: args.dir,
            events: args.events,
            threads: args.threads,
            size: args.size,
            batch: args.batch,
            streams: args.streams,
            durability: match args.durability {
                DurabilityArg::Sync => evstore::Durability::Sync,
                DurabilityArg::Buffered => evstore::Durability::Buffered,
            },
        }),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::CommandFactory;

    #[test]
    fn cli_definition_is_consistent() {
        Cli::command().debug_assert();
    }
}
