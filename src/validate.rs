//! Validation of names users pass in, shared by appends, reads, snapshots
//! and subscriptions.

use crate::error::{Error, Result};

pub fn validate_stream_name(stream: &str, max_len: usize) -> Result<()> {
    let reason = if stream.is_empty() {
        "empty".to_string()
    } else if stream.len() > max_len {
        format!("longer than {max_len} bytes")
    } else if stream.starts_with('$') {
        "names starting with '$' are reserved".to_string()
    } else if stream.chars().any(char::is_control) {
        "control characters are not allowed".to_string()
    } else {
        return Ok(());
    };
    Err(Error::InvalidStreamName {
        name: stream.to_string(),
        reason,
    })
}
