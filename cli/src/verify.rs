//! `verify`: read every byte of a store and report what is damaged.

use crate::open::check_store_dir;
use crate::output::write_fields;
use crate::Outcome;
use anyhow::Context;
use evstore::verify::{verify_store, VerifyProgress};
use indicatif::{HumanBytes, ProgressBar, ProgressStyle};
use std::io::{self, BufWriter, Write};
use std::path::Path;

pub fn run(dir: &Path) -> anyhow::Result<Outcome> {
    check_store_dir(dir)?;
    let bar = ProgressBar::new(0).with_style(
        ProgressStyle::with_template(
            "{spinner} [{bar:30}] {bytes}/{total_bytes} {binary_bytes_per_sec} {wide_msg}",
        )
        .unwrap_or_else(|_| ProgressStyle::default_bar())
        .progress_chars("=> "),
    );
    let mut current_file = None;
    let report = verify_store(dir, &mut |progress: &VerifyProgress| {
        bar.set_length(progress.bytes_total);
        bar.set_position(progress.bytes_checked);
        if current_file.as_ref() != Some(&progress.file) {
            bar.set_message(
                progress
                    .file
                    .strip_prefix(dir)
                    .unwrap_or(&progress.file)
                    .display()
                    .to_string(),
            );
            current_file = Some(progress.file.clone());
        }
    });
    bar.finish_and_clear();
    let report = report.with_context(|| format!("verifying {}", dir.display()))?;

    let mut out = BufWriter::new(io::stdout().lock());
    for finding in &report.findings {
        writeln!(out, "damaged: {finding}")?;
    }
    for note in &report.notes {
        writeln!(out, "note: {note}")?;
    }
    if !report.findings.is_empty() || !report.notes.is_empty() {
        writeln!(out)?;
    }
    write_fields(
        &mut out,
        &[
            (
                "segments".to_string(),
                format!("{} ({} sealed)", report.segments, report.sealed_segments),
            ),
            ("events".to_string(), report.events.to_string()),
            (
                "bytes checked".to_string(),
                format!(
                    "{} ({})",
                    report.bytes_checked,
                    HumanBytes(report.bytes_checked)
                ),
            ),
            (
                "index files".to_string(),
                format!(
                    "{} ({} not written yet)",
                    report.index_files, report.index_files_pending
                ),
            ),
            (
                "postings files".to_string(),
                report.postings_files.to_string(),
            ),
            (
                "snapshots".to_string(),
                format!(
                    "{} ({} of a newer format, skipped)",
                    report.snapshots, report.snapshots_skipped_newer_format
                ),
            ),
            (
                "checkpoints".to_string(),
                format!(
                    "{} ({} of a newer format, skipped)",
                    report.checkpoints, report.checkpoints_skipped_newer_format
                ),
            ),
            (
                "torn tail bytes".to_string(),
                report.torn_tail_bytes.to_string(),
            ),
        ],
    )?;
    let clean = report.is_clean();
    if clean {
        writeln!(out, "result: clean")?;
    } else {
        writeln!(
            out,
            "result: DAMAGED ({} finding{})",
            report.findings.len(),
            if report.findings.len() == 1 { "" } else { "s" }
        )?;
    }
    out.flush()?;
    Ok(if clean {
        Outcome::Success
    } else {
        Outcome::Damaged
    })
}
