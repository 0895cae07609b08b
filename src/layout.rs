//! The store directory's layout: the names every layer agrees on.

/// The file holding the store's lock, inside the store directory.
pub const LOCK_FILE: &str = "LOCK";
/// The directory holding the log's segments and their index files.
pub const SEGMENTS_DIR: &str = "segments";
/// The directory holding snapshot files.
pub const SNAPSHOTS_DIR: &str = "snapshots";
/// The directory holding checkpoint files.
pub const CHECKPOINTS_DIR: &str = "checkpoints";
