//! Errors of the raft log, vote and snapshot files.

use std::io;
use std::path::{Path, PathBuf};
use std::sync::Arc;

/// Everything that can go wrong reading or writing a replica's raft files.
#[derive(Debug, Clone, thiserror::Error)]
pub enum StoreError {
    /// An I/O operation on a file or directory failed.
    #[error("I/O error on {}: {source}", path.display())]
    Io {
        /// The file or directory the operation was on.
        path: PathBuf,
        /// The underlying error.
        #[source]
        source: Arc<io::Error>,
    },
    /// Stored data failed validation somewhere a crash cannot explain (a sealed segment, the
    /// vote file, a gap between segments, an entry out of sequence).
    #[error("corrupt raft file {} at byte {position}: {reason}", path.display())]
    Corrupt {
        /// The file holding the bad data.
        path: PathBuf,
        /// Byte position of the bad record.
        position: u64,
        /// What was wrong.
        reason: String,
    },
    /// An append violated the log's contract (a hole, or an index going backwards).
    #[error("invalid append: {0}")]
    InvalidAppend(String),
    /// An earlier write or sync failed; the log accepts nothing more until it is reopened.
    #[error("raft log is unusable after an earlier write failure: {0}")]
    Poisoned(String),
    /// Another process or store holds the directory.
    #[error("raft directory {} is in use", path.display())]
    Locked {
        /// The locked directory.
        path: PathBuf,
    },
}

impl StoreError {
    pub(crate) fn io(path: &Path, source: io::Error) -> Self {
        StoreError::Io {
            path: path.to_path_buf(),
            source: Arc::new(source),
        }
    }

    pub(crate) fn corrupt(path: &Path, position: u64, reason: impl Into<String>) -> Self {
        StoreError::Corrupt {
            path: path.to_path_buf(),
            position,
            reason: reason.into(),
        }
    }
}

/// How a store error reaches openraft, whose storage traits speak `std::io::Error`: an I/O
/// error keeps its kind, anything else is `ErrorKind::Other`; the store error (which names the
/// file) is the source.
impl From<StoreError> for io::Error {
    fn from(e: StoreError) -> io::Error {
        let kind = match &e {
            StoreError::Io { source, .. } => source.kind(),
            _ => io::ErrorKind::Other,
        };
        io::Error::new(kind, e)
    }
}
