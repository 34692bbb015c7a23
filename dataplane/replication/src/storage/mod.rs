//! Durable raft storage: the log ([`RaftLog`]), the vote ([`VoteFile`]) and the openraft
//! [`LogStore`] adapter over both.

mod codec;
mod durable_file;
mod error;
mod log;
mod log_store;
mod syncer;
mod vote;

#[cfg(test)]
mod tests;

pub use error::StoreError;
pub(crate) use error::to_raft;
pub use log::{DEFAULT_SEGMENT_BYTES, LogConfig, LogReader, RaftLog};
pub use log_store::LogStore;
pub use vote::VoteFile;
