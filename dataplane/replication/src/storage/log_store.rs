//! The openraft [`RaftLogStorage`] over a [`RaftLog`] and a [`VoteFile`].

use std::fmt::Debug;
use std::ops::RangeBounds;
use std::path::Path;

use openraft::storage::{LogFlushed, RaftLogStorage};
use openraft::{ErrorSubject, ErrorVerb, LogState, OptionalSend, RaftLogReader, StorageError};

use crate::replica::MAX_BATCH_BYTES;
use crate::storage::{LogConfig, LogReader, RaftLog, StoreError, VoteFile, to_raft};
use crate::types::{Entry, LogId, NodeId, TypeConfig, Vote};

/// Raft log and vote of one replica, as openraft sees them. Lives in one directory.
pub struct LogStore {
    log: RaftLog,
    votes: VoteFile,
}

impl LogStore {
    /// Opens the log and vote in `dir`, recovering the log (see [`RaftLog::open`]).
    pub fn open(dir: &Path, config: LogConfig) -> Result<LogStore, StoreError> {
        let log = RaftLog::open(dir, config)?;
        Ok(LogStore {
            log,
            votes: VoteFile::new(dir),
        })
    }

    /// The underlying log.
    pub fn log(&self) -> &RaftLog {
        &self.log
    }

    /// The vote file.
    pub fn votes(&self) -> &VoteFile {
        &self.votes
    }
}

/// Runs a short blocking disk operation (an `fsync`) from the raft task without stalling the
/// other tasks of a multi-threaded runtime; inline on a current-thread runtime.
fn blocking_io<T>(f: impl FnOnce() -> T) -> T {
    match tokio::runtime::Handle::try_current().map(|h| h.runtime_flavor()) {
        Ok(tokio::runtime::RuntimeFlavor::MultiThread) => tokio::task::block_in_place(f),
        _ => f(),
    }
}

fn logs_err(e: StoreError, verb: ErrorVerb) -> StorageError<NodeId> {
    to_raft(&e, ErrorSubject::Logs, verb)
}

impl RaftLogReader<TypeConfig> for LogReader {
    async fn try_get_log_entries<RB: RangeBounds<u64> + Clone + Debug + OptionalSend>(
        &mut self,
        range: RB,
    ) -> Result<Vec<Entry>, StorageError<NodeId>> {
        self.entries(range)
            .map_err(|e| logs_err(e, ErrorVerb::Read))
    }

    /// What replication sends in one AppendEntries: cut to fit [`MAX_BATCH_BYTES`] here,
    /// before anything is read or encoded, rather than by the network refusing a batch it has
    /// already encoded (and openraft sending it again). An eighth is left for the encoding's
    /// overhead over the frames on disk.
    async fn limited_get_log_entries(
        &mut self,
        start: u64,
        end: u64,
    ) -> Result<Vec<Entry>, StorageError<NodeId>> {
        let budget = MAX_BATCH_BYTES as u64 / 8 * 7;
        self.entries_within(start, end, budget)
            .map_err(|e| logs_err(e, ErrorVerb::Read))
    }
}

impl RaftLogReader<TypeConfig> for LogStore {
    async fn try_get_log_entries<RB: RangeBounds<u64> + Clone + Debug + OptionalSend>(
        &mut self,
        range: RB,
    ) -> Result<Vec<Entry>, StorageError<NodeId>> {
        self.log
            .reader()
            .entries(range)
            .map_err(|e| logs_err(e, ErrorVerb::Read))
    }
}

impl RaftLogStorage<TypeConfig> for LogStore {
    type LogReader = LogReader;

    async fn get_log_state(&mut self) -> Result<LogState<TypeConfig>, StorageError<NodeId>> {
        Ok(LogState {
            last_purged_log_id: self.log.purged(),
            last_log_id: self.log.last_log_id(),
        })
    }

    async fn get_log_reader(&mut self) -> Self::LogReader {
        self.log.reader()
    }

    async fn save_vote(&mut self, vote: &Vote) -> Result<(), StorageError<NodeId>> {
        let votes = &self.votes;
        blocking_io(|| votes.save(vote))
            .map_err(|e| to_raft(&e, ErrorSubject::Vote, ErrorVerb::Write))
    }

    async fn read_vote(&mut self) -> Result<Option<Vote>, StorageError<NodeId>> {
        self.votes
            .load()
            .map_err(|e| to_raft(&e, ErrorSubject::Vote, ErrorVerb::Read))
    }

    async fn append<I>(
        &mut self,
        entries: I,
        callback: LogFlushed<TypeConfig>,
    ) -> Result<(), StorageError<NodeId>>
    where
        I: IntoIterator<Item = Entry> + OptionalSend,
        I::IntoIter: OptionalSend,
    {
        let entries: Vec<Entry> = entries.into_iter().collect();
        self.log
            .append(entries)
            .map_err(|e| logs_err(e, ErrorVerb::Write))?;
        callback.log_io_completed(Ok(()));
        Ok(())
    }

    async fn truncate(&mut self, log_id: LogId) -> Result<(), StorageError<NodeId>> {
        let log = &mut self.log;
        blocking_io(|| log.truncate(log_id.index)).map_err(|e| logs_err(e, ErrorVerb::Delete))
    }

    async fn purge(&mut self, log_id: LogId) -> Result<(), StorageError<NodeId>> {
        let log = &mut self.log;
        blocking_io(|| log.purge(log_id)).map_err(|e| logs_err(e, ErrorVerb::Delete))
    }
}
