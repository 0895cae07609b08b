//! Opening an existing store for reading, without creating or locking anything.

use anyhow::{anyhow, bail, Context};
use evstore::{Durability, Options, Store, SEGMENTS_DIR};
use std::io;
use std::path::Path;

/// Fails with a message a person can act on when `dir` is not a store,
/// before the library gets to it, so that a typo never leaves a new empty
/// store behind and the message names the directory as typed.
pub fn check_store_dir(dir: &Path) -> anyhow::Result<()> {
    match std::fs::metadata(dir) {
        Ok(meta) if meta.is_dir() => {}
        Ok(_) => bail!("{} is not a directory", dir.display()),
        Err(e) if e.kind() == io::ErrorKind::NotFound => {
            bail!("{} does not exist", dir.display())
        }
        Err(e) => return Err(e).with_context(|| format!("reading {}", dir.display())),
    }
    match std::fs::metadata(dir.join(SEGMENTS_DIR)) {
        Ok(meta) if meta.is_dir() => Ok(()),
        Ok(_) => bail!(
            "{} is not an evstore store ({SEGMENTS_DIR} is not a directory)",
            dir.display()
        ),
        Err(e) if e.kind() == io::ErrorKind::NotFound => bail!(
            "{} is not an evstore store (no {SEGMENTS_DIR}/ directory)",
            dir.display()
        ),
        Err(e) => Err(e).with_context(|| format!("reading {}", dir.join(SEGMENTS_DIR).display())),
    }
}

/// What a read-only open shows of the log.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Seen {
    /// What the writer has recorded as durable.
    Durable,
    /// Every whole batch in the files, durable or not: after a crash, what
    /// the writer's next open will keep.
    Written,
}

/// Opens the store in `dir` read-only: no lock, nothing written, so a
/// process appending to it is not disturbed.
pub fn open_read_only(dir: &Path, seen: Seen) -> anyhow::Result<Store> {
    check_store_dir(dir)?;
    let options = match seen {
        Seen::Durable => Options::default(),
        Seen::Written => Options::default().durability(Durability::Buffered),
    };
    Store::open_read_only(dir, options).map_err(|e| {
        let hint = match e {
            evstore::Error::Corrupted { .. } => format!(
                "; `evstore verify {}` lists every damaged file",
                dir.display()
            ),
            _ => String::new(),
        };
        // The whole chain: the store's errors keep their causes apart.
        let e = anyhow::Error::new(e);
        anyhow!("cannot open the store in {}: {e:#}{hint}", dir.display())
    })
}
