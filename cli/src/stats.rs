//! `stats`: where a store stands, from its files alone, so it works beside
//! the process writing it: positions and watermarks, segment sizes, and how
//! far each saved checkpoint (a projection's progress) is behind the log.
//! The writer's live figures (fsync latency, queue depth, subscriber lag)
//! are in its own process: `Store::metrics`.

use crate::open::{open_read_only, Seen};
use crate::output::write_fields;
use crate::Outcome;
use anyhow::Context;
use indicatif::HumanBytes;
use std::io::{self, BufWriter, Write};
use std::path::Path;

pub fn run(dir: &Path, json: bool) -> anyhow::Result<Outcome> {
    // Lags are measured to the durable end: what projections can see.
    let store = open_read_only(dir, Seen::Durable)?;
    store.refresh().context("reading the end of the log")?;
    let log = store.log_info();
    let checkpoints = store
        .checkpoint_lags()
        .with_context(|| format!("reading the checkpoints of {}", dir.display()))?;
    let sealed = log.segments.iter().filter(|s| s.sealed).count();
    let segment_bytes: u64 = log.segments.iter().map(|s| s.file_len).sum();
    let active = log.segments.iter().find(|s| !s.sealed);

    let mut out = BufWriter::new(io::stdout().lock());
    if json {
        let value = serde_json::json!({
            "store": dir.display().to_string(),
            "written_end": log.written_end,
            "durable_end": log.durable_end,
            "streams": log.stream_count,
            "segments": log.segments.len(),
            "sealed_segments": sealed,
            "segment_bytes": segment_bytes,
            "active_segment": active.map(|s| serde_json::json!({
                "first_position": s.base_position,
                "events": s.events,
                "capacity": s.capacity,
            })),
            "checkpoints": checkpoints.iter().map(|c| serde_json::json!({
                "name": c.name,
                "position": c.position,
                "lag": c.lag,
                "lag_bytes": c.lag_bytes,
            })).collect::<Vec<_>>(),
        });
        writeln!(out, "{value}")?;
        out.flush()?;
        return Ok(Outcome::Success);
    }

    let fields = vec![
        ("store".to_string(), dir.display().to_string()),
        (
            "written end".to_string(),
            format!(
                "{} ({} written, not yet durable)",
                log.written_end,
                log.written_end.saturating_sub(log.durable_end)
            ),
        ),
        ("durable end".to_string(), log.durable_end.to_string()),
        ("streams".to_string(), log.stream_count.to_string()),
        (
            "segments".to_string(),
            format!(
                "{} ({sealed} sealed), {} ({segment_bytes} bytes)",
                log.segments.len(),
                HumanBytes(segment_bytes)
            ),
        ),
        (
            "active segment".to_string(),
            active.map_or_else(
                || "none".to_string(),
                |s| {
                    format!(
                        "first position {}, {} events, {} capacity",
                        s.base_position,
                        s.events,
                        HumanBytes(s.capacity)
                    )
                },
            ),
        ),
        ("checkpoints".to_string(), checkpoints.len().to_string()),
    ];
    write_fields(&mut out, &fields)?;
    if !checkpoints.is_empty() {
        writeln!(out)?;
        let width = checkpoints
            .iter()
            .map(|c| c.name.len())
            .max()
            .unwrap_or(0)
            .max("CHECKPOINT".len());
        writeln!(
            out,
            "{:<width$}  {:>12}  {:>12}  LAG BYTES",
            "CHECKPOINT", "POSITION", "LAG"
        )?;
        for c in &checkpoints {
            writeln!(
                out,
                "{:<width$}  {:>12}  {:>12}  {} ({})",
                c.name,
                c.position,
                c.lag,
                HumanBytes(c.lag_bytes),
                c.lag_bytes
            )?;
        }
    }
    out.flush()?;
    Ok(Outcome::Success)
}
