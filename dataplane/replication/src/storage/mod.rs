//! Durable raft storage: the log ([`RaftLog`]), the vote ([`VoteFile`]) and the openraft
//! [`LogStore`] adapter over both (read through [`LogStoreReader`]); and [`SlotFile`], for small
//! state stored often.

mod codec;
mod durable_file;
mod error;
mod log;
mod log_store;
mod slot_file;
mod spare;
mod syncer;
mod vote;

#[cfg(test)]
mod tests;

pub(crate) use durable_file::sync_dir;
pub use error::StoreError;
pub use log::{DEFAULT_SEGMENT_BYTES, LogConfig, LogReader, RaftLog};
pub use log_store::{LogStore, LogStoreReader};
pub use slot_file::SlotFile;
pub use vote::VoteFile;
pub(crate) use vote::u64_at;

/// Reads a little-endian `u64` from the first 8 bytes of `buf`.
pub(crate) fn u64_le(buf: &[u8]) -> u64 {
    u64_at(buf, 0)
}
