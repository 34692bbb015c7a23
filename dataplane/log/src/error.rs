//! Errors returned by the shard log.

use std::io;
use std::path::{Path, PathBuf};
use std::sync::Arc;

/// Everything that can go wrong in a [`ShardLog`](crate::ShardLog).
///
/// The type is `Clone` because one failed group-commit round delivers the same error to every
/// append callback of the round.
#[derive(Debug, Clone, thiserror::Error)]
pub enum LogError {
    /// An I/O operation on a file or directory of the log failed.
    #[error("I/O error on {}: {source}", path.display())]
    Io {
        /// The file or directory the operation was on.
        path: PathBuf,
        /// The underlying error.
        #[source]
        source: Arc<io::Error>,
    },
    /// Stored data failed validation (bad CRC, bad length, bad magic, non-contiguous offsets).
    ///
    /// Returned instead of the data; the log never hands out bytes that did not pass their CRC.
    #[error("corrupt segment {} at byte {position}: {reason}", segment.display())]
    Corrupt {
        /// The segment file holding the bad data.
        segment: PathBuf,
        /// Byte position in the segment of the batch that failed validation.
        position: u64,
        /// What was wrong.
        reason: String,
    },
    /// The append was rejected before being queued (empty, or a field too large for the format).
    #[error("invalid append: {0}")]
    InvalidAppend(String),
    /// An earlier write or sync failed; the log accepts no more appends until it is reopened
    /// (reopening runs recovery, which truncates anything half-written).
    #[error("log is unusable after an earlier write failure: {0}")]
    Poisoned(#[source] Arc<LogError>),
    /// The log was closed; no more appends are accepted.
    #[error("log is closed")]
    Closed,
    /// Another `ShardLog` (in this or another process) holds the directory.
    #[error("log directory {} is in use by another ShardLog", path.display())]
    Locked {
        /// The locked directory.
        path: PathBuf,
    },
}

impl LogError {
    pub(crate) fn io(path: &Path, source: io::Error) -> Self {
        LogError::Io {
            path: path.to_path_buf(),
            source: Arc::new(source),
        }
    }

    pub(crate) fn corrupt(segment: &Path, position: u64, reason: impl Into<String>) -> Self {
        LogError::Corrupt {
            segment: segment.to_path_buf(),
            position,
            reason: reason.into(),
        }
    }
}
