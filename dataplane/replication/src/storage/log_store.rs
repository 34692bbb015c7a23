//! The openraft [`RaftLogStorage`] over a [`RaftLog`] and a [`VoteFile`], and its
//! [`RaftLogReader`], [`LogStoreReader`].

use std::fmt::Debug;
use std::io;
use std::ops::RangeBounds;
use std::path::Path;
use std::sync::{Arc, PoisonError, RwLock};

use openraft::storage::{IOFlushed, LogState, RaftLogStorage};
use openraft::{OptionalSend, RaftLogReader};

use crate::replica::MAX_BATCH_BYTES;
use crate::storage::{LogConfig, LogReader, RaftLog, StoreError, VoteFile};
use crate::types::{Entry, LogId, TypeConfig, Vote};

/// The last durably saved vote, shared by a [`LogStore`] and its readers (replication reads
/// it before and after every batch, so it is kept in memory rather than read from the file).
type SavedVote = Arc<RwLock<Option<Vote>>>;

/// Raft log and vote of one replica, as openraft sees them. Lives in one directory.
pub struct LogStore {
    log: RaftLog,
    votes: VoteFile,
    /// What `votes` holds, for [`LogStoreReader::read_vote`].
    saved_vote: SavedVote,
}

/// A read handle on a [`LogStore`]: its entries and its last saved vote. Cheap to clone; reads
/// run concurrently with the store's writes.
#[derive(Clone)]
pub struct LogStoreReader {
    entries: LogReader,
    saved_vote: SavedVote,
}

impl LogStore {
    /// Opens the log and vote in `dir`, recovering the log (see [`RaftLog::open`]) and reading
    /// the vote (a damaged vote file is an error, see [`VoteFile::load`]).
    pub fn open(dir: &Path, config: LogConfig) -> Result<LogStore, StoreError> {
        let log = RaftLog::open(dir, config)?;
        let votes = VoteFile::new(dir);
        let saved_vote = Arc::new(RwLock::new(votes.load()?));
        Ok(LogStore {
            log,
            votes,
            saved_vote,
        })
    }

    /// The underlying log.
    pub fn log(&self) -> &RaftLog {
        &self.log
    }

    /// The last saved vote (read at open, kept up to date by every save).
    pub fn saved_vote(&self) -> Option<Vote> {
        *self
            .saved_vote
            .read()
            .unwrap_or_else(PoisonError::into_inner)
    }

    /// A read handle.
    pub fn reader(&self) -> LogStoreReader {
        LogStoreReader {
            entries: self.log.reader(),
            saved_vote: Arc::clone(&self.saved_vote),
        }
    }
}

/// Runs a short blocking disk operation (an `fsync`, or waiting for the log's sync thread) from
/// the raft task without stalling the other tasks of a multi-threaded runtime; inline on a
/// current-thread runtime.
fn blocking_io<T>(f: impl FnOnce() -> T) -> T {
    match tokio::runtime::Handle::try_current().map(|h| h.runtime_flavor()) {
        Ok(tokio::runtime::RuntimeFlavor::MultiThread) => tokio::task::block_in_place(f),
        _ => f(),
    }
}

impl RaftLogReader<TypeConfig> for LogStoreReader {
    async fn try_get_log_entries<RB: RangeBounds<u64> + Clone + Debug + OptionalSend>(
        &mut self,
        range: RB,
    ) -> Result<Vec<Entry>, io::Error> {
        Ok(self.entries.entries(range)?)
    }

    async fn read_vote(&mut self) -> Result<Option<Vote>, io::Error> {
        Ok(*self
            .saved_vote
            .read()
            .unwrap_or_else(PoisonError::into_inner))
    }

    /// What replication sends in one AppendEntries: cut to fit [`MAX_BATCH_BYTES`] here,
    /// before anything is read or encoded, rather than by the network refusing a batch it has
    /// already encoded (and openraft sending it again). An eighth is left for the encoding's
    /// overhead over the frames on disk.
    async fn limited_get_log_entries(
        &mut self,
        start: u64,
        end: u64,
    ) -> Result<Vec<Entry>, io::Error> {
        let budget = MAX_BATCH_BYTES as u64 / 8 * 7;
        Ok(self.entries.entries_within(start, end, budget)?)
    }
}

impl RaftLogStorage<TypeConfig> for LogStore {
    type LogReader = LogStoreReader;

    async fn get_log_state(&mut self) -> Result<LogState<TypeConfig>, io::Error> {
        Ok(LogState {
            last_purged_log_id: self.log.purged(),
            last_log_id: self.log.last_log_id(),
        })
    }

    async fn get_log_reader(&mut self) -> Self::LogReader {
        self.reader()
    }

    /// Durable on return. Waits first for the appends already made (openraft requires vote
    /// and log writes to take effect in the order they are asked for).
    async fn save_vote(&mut self, vote: &Vote) -> Result<(), io::Error> {
        let (log, votes) = (&self.log, &self.votes);
        blocking_io(|| {
            log.sync_barrier()?;
            votes.save(vote)
        })?;
        *self
            .saved_vote
            .write()
            .unwrap_or_else(PoisonError::into_inner) = Some(*vote);
        Ok(())
    }

    /// Writes the entries (readable on return) and hands their `fdatasync` to the log's sync
    /// thread, which reports them durable through `callback` (see [`RaftLog::append`]).
    async fn append<I>(
        &mut self,
        entries: I,
        callback: IOFlushed<TypeConfig>,
    ) -> Result<(), io::Error>
    where
        I: IntoIterator<Item = Entry> + OptionalSend,
        I::IntoIter: OptionalSend,
    {
        let entries: Vec<Entry> = entries.into_iter().collect();
        self.log
            .append(entries, move |result| callback.io_completed(result))?;
        Ok(())
    }

    /// Keeps the entries up to `last` inclusive (none if `last` is `None`); durable on return,
    /// and no earlier append's callback runs after it (see [`RaftLog::truncate`]).
    async fn truncate_after(&mut self, last: Option<LogId>) -> Result<(), io::Error> {
        let log = &mut self.log;
        let from = match last {
            Some(last) => last.index + 1,
            None => log.first_index(),
        };
        Ok(blocking_io(|| log.truncate(from))?)
    }

    async fn purge(&mut self, log_id: LogId) -> Result<(), io::Error> {
        let log = &mut self.log;
        Ok(blocking_io(|| log.purge(log_id))?)
    }
}
