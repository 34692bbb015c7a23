//! The raft log of one replica: entries in segment files `{first_index:020}.wal`, each entry a
//! length + CRC32C frame (see `codec`).
//!
//! # Invariants
//!
//! - Entries are dense: the live indexes are `first_index() ..= last_log_id().index`.
//! - [`RaftLog::append`] writes the entries on the caller's thread, so they are readable when it
//!   returns, and hands the `fdatasync` to a sync thread (see `syncer`): its callback runs once
//!   the entries, and every entry appended before them, are durable. openraft 0.10 does not
//!   wait for that report before it replicates the entries or appends more, so the sync thread
//!   groups the appends that arrive while it syncs into its next `fdatasync`, and the leader's
//!   sync overlaps the followers'. The first failed `fdatasync` fails every later append (it
//!   cannot be retried: the kernel may have dropped the dirty pages).
//! - [`RaftLog::truncate`] and [`RaftLog::purge`] are durable when they return. Truncation first
//!   waits for the appends already handed to the sync thread (no callback may report entries a
//!   truncation removed), then deletes newest segments first, so a crash in the middle never
//!   leaves a hole. Purging records the purge point, then hands the segments wholly below it to
//!   a thread that deletes them at a pace ([`riffle_disk::Deleter`]; deleting there held the
//!   raft task, and unpaced discards held the device): opening a log deletes any such segment a
//!   crash left behind.
//! - With [`LogConfig::preallocate`], a new segment is the spare file zero-filled ahead of use
//!   (see `spare`), so appends do not grow the file and their `fdatasync` writes no inode. A
//!   segment is sealed only once its entries fill it, so no sealed segment has a zero-filled
//!   rest.
//! - **Recovery**: a torn tail of the last segment (a write that never reached the disk whole,
//!   hence never reported flushed) is cut back to the last whole, CRC-valid entry. A tail of
//!   zeros only, no longer than a segment, is kept: it is the unused rest of a preallocated
//!   segment (or space the file size covered before the data reached the disk), and appends
//!   overwrite it. Damage anywhere else — a sealed segment, a gap between segments, an entry
//!   whose index is out of sequence — is [`StoreError::Corrupt`], never silently dropped.
//!
//! One directory is opened by one `RaftLog` at a time (an advisory lock on `.lock`).

use std::fs::{self, File, OpenOptions, TryLockError};
use std::io;
use std::ops::{Bound, RangeBounds};
use std::os::unix::fs::FileExt;
use std::path::{Path, PathBuf};
use std::sync::{Arc, PoisonError, RwLock, RwLockReadGuard, RwLockWriteGuard, mpsc};

use riffle_disk::Deleter;

use crate::storage::codec::{self, FRAME_HEADER};
use crate::storage::spare::{SPARE_FILE, Spare};
use crate::storage::syncer::{Flushed, Syncer};
use crate::storage::vote::u64_at;
use crate::storage::{StoreError, durable_file};
use crate::types::{Entry, LogId, log_id};

/// Default size at which a segment is sealed and the next append starts a new one: 64 MiB.
pub const DEFAULT_SEGMENT_BYTES: u64 = 64 << 20;

/// The page-cache page: appends into a zero-filled segment are written in whole pages.
const PAGE_BYTES: u64 = 4096;
const LOCK_FILE: &str = ".lock";
const PURGED_FILE: &str = "purged";
const START_FILE: &str = "start";
const SEGMENT_SUFFIX: &str = ".wal";

/// Tuning of a [`RaftLog`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct LogConfig {
    /// A segment is sealed once an append brings it to this size or more.
    pub segment_bytes: u64,
    /// Whether flushes `fdatasync`; `false` is for tests only (survives a process crash, not a
    /// power loss).
    pub fsync: bool,
    /// Whether the next segment is zero-filled ahead of use by a thread of the log's, so that
    /// appends overwrite written blocks instead of growing the file (each `fdatasync` then
    /// writes no inode). Costs a second segment of disk space. A log without a filled spare
    /// rolls to it at the next append; `false` keeps segment rolls to sizes alone.
    pub preallocate: bool,
}

impl Default for LogConfig {
    fn default() -> Self {
        LogConfig {
            segment_bytes: DEFAULT_SEGMENT_BYTES,
            fsync: true,
            preallocate: true,
        }
    }
}

/// The durable raft log of one replica. Writes go through `&mut self`; reads through
/// [`RaftLog::reader`] handles, which may run concurrently with writes.
pub struct RaftLog {
    dir: PathBuf,
    config: LogConfig,
    state: Arc<RwLock<State>>,
    /// `fdatasync`s appended entries off the caller's thread and reports them durable, in
    /// order; remembers the first failed `fdatasync`. Dropped (and so finished) before the
    /// directory lock is released.
    syncer: Syncer,
    /// The next segment, filled ahead of use (with [`LogConfig::preallocate`]).
    spare: Option<Spare>,
    /// Deletes purged segments off the caller's thread, paced; dropped (and so finished)
    /// before the directory lock is released.
    deleter: Deleter,
    _lock: File,
}

/// A cheap, cloneable read handle on a [`RaftLog`].
#[derive(Clone)]
pub struct LogReader {
    state: Arc<RwLock<State>>,
}

struct Segment {
    base: u64,
    path: PathBuf,
    file: Arc<File>,
    /// Byte position and total length (header included) of each frame; frame `i` is entry
    /// `base + i`.
    frames: Vec<(u64, u32)>,
    size: u64,
    /// The file holds zeros past `size` (it was the spare, or recovery kept a zero tail): it
    /// must not be sealed before its entries fill it.
    preallocated: bool,
}

impl Segment {
    /// A segment without entries yet, in `file` at `path`.
    fn new_empty(base: u64, path: PathBuf, file: File, preallocated: bool) -> Segment {
        Segment {
            base,
            path,
            file: Arc::new(file),
            frames: Vec::new(),
            size: 0,
            preallocated,
        }
    }

    /// One past the last index stored in the segment.
    fn end(&self) -> u64 {
        self.base + self.frames.len() as u64
    }
}

struct State {
    segments: Vec<Segment>,
    purged: Option<LogId>,
    /// Where the log starts if it was begun past its purge point (see [`RaftLog::append`]).
    start: u64,
    /// The last entry's id, or `purged` if there is no live entry.
    last: Option<LogId>,
}

impl State {
    fn first_index(&self) -> u64 {
        self.purged.map_or(0, |p| p.index + 1).max(self.start)
    }

    fn has_live(&self) -> bool {
        self.last.is_some_and(|l| l.index >= self.first_index())
    }

    fn next_index(&self) -> u64 {
        match self.last {
            Some(l) if self.has_live() => l.index + 1,
            _ => self.first_index(),
        }
    }

    /// Where a read from `start` towards `end` stops so that its frames take at most `budget`
    /// bytes on disk: at least one entry past `start` (if there is one), never past `end`.
    fn limited_end(&self, start: u64, end: u64, budget: u64) -> u64 {
        let start = start.max(self.first_index());
        let end = end.min(self.next_index());
        let mut index = start;
        let mut taken = 0u64;
        while index < end {
            let seg_at = self.segments.partition_point(|s| s.end() <= index);
            let Some(seg) = self.segments.get(seg_at) else {
                break;
            };
            let upto = end.min(seg.end());
            for &(_, len) in &seg.frames[(index - seg.base) as usize..(upto - seg.base) as usize] {
                taken += u64::from(len);
                if taken > budget && index > start {
                    return index;
                }
                index += 1;
            }
        }
        index
    }

    fn read(&self, start: u64, end: u64) -> Result<Vec<Entry>, StoreError> {
        let start = start.max(self.first_index());
        let end = end.min(self.next_index());
        let mut out = Vec::with_capacity(end.saturating_sub(start) as usize);
        let mut index = start;
        while index < end {
            let seg_at = self.segments.partition_point(|s| s.end() <= index);
            let Some(seg) = self.segments.get(seg_at) else {
                return Err(StoreError::InvalidAppend(format!(
                    "entry {index} is missing"
                )));
            };
            let upto = end.min(seg.end());
            let first = (index - seg.base) as usize;
            let last = (upto - 1 - seg.base) as usize;
            let from = seg.frames[first].0;
            let to = seg.frames[last].0 + u64::from(seg.frames[last].1);
            let mut buf = vec![0u8; (to - from) as usize];
            seg.file
                .read_exact_at(&mut buf, from)
                .map_err(|e| StoreError::io(&seg.path, e))?;
            for &(pos, len) in &seg.frames[first..=last] {
                let at = (pos - from) as usize;
                let entry = codec::decode_frame(&buf[at..at + len as usize])
                    .map_err(|reason| StoreError::corrupt(&seg.path, pos, reason))?;
                out.push(entry);
            }
            index = upto;
        }
        Ok(out)
    }
}

impl LogReader {
    /// The live entries in `range` (entries outside `first_index ..= last` are omitted), each
    /// CRC-checked.
    pub fn entries(&self, range: impl RangeBounds<u64>) -> Result<Vec<Entry>, StoreError> {
        let start = match range.start_bound() {
            Bound::Included(&s) => s,
            Bound::Excluded(&s) => s.saturating_add(1),
            Bound::Unbounded => 0,
        };
        let end = match range.end_bound() {
            Bound::Included(&e) => e.saturating_add(1),
            Bound::Excluded(&e) => e,
            Bound::Unbounded => u64::MAX,
        };
        read_state(&self.state).read(start, end)
    }

    /// The live entries from `start` up to `end` (exclusive) whose frames take at most
    /// `budget` bytes on disk, but always at least the first one (a replication batch: a
    /// follower receives and syncs it within one RPC deadline).
    pub fn entries_within(
        &self,
        start: u64,
        end: u64,
        budget: u64,
    ) -> Result<Vec<Entry>, StoreError> {
        let state = read_state(&self.state);
        let upto = state.limited_end(start, end, budget);
        state.read(start, upto)
    }
}

#[cfg(test)]
impl LogReader {
    /// The on-disk size of entry `index`'s frame.
    pub(crate) fn state_frame_len_for_tests(&self, index: u64) -> usize {
        let state = read_state(&self.state);
        let seg_at = state.segments.partition_point(|s| s.end() <= index);
        let seg = &state.segments[seg_at];
        seg.frames[(index - seg.base) as usize].1 as usize
    }
}

fn read_state(state: &RwLock<State>) -> RwLockReadGuard<'_, State> {
    state.read().unwrap_or_else(PoisonError::into_inner)
}

fn write_state(state: &RwLock<State>) -> RwLockWriteGuard<'_, State> {
    state.write().unwrap_or_else(PoisonError::into_inner)
}

impl RaftLog {
    /// Opens (creating if needed) the log in `dir`, recovering from a crash as described in the
    /// module docs.
    pub fn open(dir: &Path, config: LogConfig) -> Result<RaftLog, StoreError> {
        fs::create_dir_all(dir).map_err(|e| StoreError::io(dir, e))?;
        let lock_path = dir.join(LOCK_FILE);
        let lock = OpenOptions::new()
            .create(true)
            .truncate(false)
            .write(true)
            .open(&lock_path)
            .map_err(|e| StoreError::io(&lock_path, e))?;
        match lock.try_lock() {
            Ok(()) => {}
            Err(TryLockError::WouldBlock) => {
                return Err(StoreError::Locked {
                    path: dir.to_path_buf(),
                });
            }
            Err(TryLockError::Error(e)) => return Err(StoreError::io(&lock_path, e)),
        }
        let purged = load_purged(dir)?;
        let start = load_start(dir)?;
        let mut bases = Vec::new();
        for item in fs::read_dir(dir).map_err(|e| StoreError::io(dir, e))? {
            let item = item.map_err(|e| StoreError::io(dir, e))?;
            let name = item.file_name();
            let Some(name) = name.to_str() else { continue };
            if let Some(stem) = name.strip_suffix(SEGMENT_SUFFIX)
                && stem.len() == 20
                && let Ok(base) = stem.parse::<u64>()
            {
                bases.push(base);
            }
        }
        bases.sort_unstable();
        // Segments wholly at or below the purge point (the next one starts at or before the
        // first live entry) are deleted unread: a crash may have left one part cut down.
        let first_live = purged.map_or(0, |p| p.index + 1).max(start);
        let purged_segments = bases.windows(2).take_while(|w| w[1] <= first_live).count();
        if purged_segments > 0 {
            for &base in &bases[..purged_segments] {
                let path = segment_path(dir, base);
                fs::remove_file(&path).map_err(|e| StoreError::io(&path, e))?;
            }
            durable_file::sync_dir(dir)?;
            bases.drain(..purged_segments);
        }

        let mut segments: Vec<Segment> = Vec::with_capacity(bases.len());
        let mut last = None;
        for (i, &base) in bases.iter().enumerate() {
            let is_last = i + 1 == bases.len();
            let (segment, seg_last) = recover_segment(dir, base, is_last, &config)?;
            if let Some(prev) = segments.last()
                && prev.end() != base
            {
                return Err(StoreError::corrupt(
                    &segment.path,
                    0,
                    format!("segment starts at {base}, previous ends at {}", prev.end()),
                ));
            }
            if seg_last.is_some() {
                last = seg_last;
            }
            segments.push(segment);
        }

        // The one purged segment the unread pass cannot tell (no segment follows it): a last
        // segment ending before the first live entry, left by a purge past the end of the log.
        // One ending exactly there is kept: the next append continues it.
        if let [only] = segments.as_slice()
            && only.end() < first_live
        {
            fs::remove_file(&only.path).map_err(|e| StoreError::io(&only.path, e))?;
            durable_file::sync_dir(dir)?;
            segments.clear();
        }
        if let Some(first) = segments.first()
            && first.base > first_live
        {
            return Err(StoreError::corrupt(
                &first.path,
                0,
                format!("entries {first_live}..{} are missing", first.base),
            ));
        }
        let last = match last {
            Some(l) if l.index >= first_live => Some(l),
            _ => purged,
        };
        let spare = if config.preallocate {
            Some(
                Spare::start(dir, config.segment_bytes, config.fsync)
                    .map_err(|e| StoreError::io(dir, e))?,
            )
        } else {
            let path = dir.join(SPARE_FILE);
            match fs::remove_file(&path) {
                Err(e) if e.kind() != io::ErrorKind::NotFound => {
                    return Err(StoreError::io(&path, e));
                }
                _ => None,
            }
        };
        Ok(RaftLog {
            dir: dir.to_path_buf(),
            config,
            state: Arc::new(RwLock::new(State {
                segments,
                purged,
                start,
                last,
            })),
            syncer: Syncer::start(config.fsync).map_err(|e| StoreError::io(dir, e))?,
            spare,
            deleter: Deleter::start("raft-log-delete").map_err(|e| StoreError::io(dir, e))?,
            _lock: lock,
        })
    }

    /// A read handle.
    pub fn reader(&self) -> LogReader {
        LogReader {
            state: Arc::clone(&self.state),
        }
    }

    /// The id of the last purged entry.
    pub fn purged(&self) -> Option<LogId> {
        read_state(&self.state).purged
    }

    /// The id of the last entry, or the purge point if there is no live entry.
    pub fn last_log_id(&self) -> Option<LogId> {
        read_state(&self.state).last
    }

    /// The first live index.
    pub fn first_index(&self) -> u64 {
        read_state(&self.state).first_index()
    }

    fn check_healthy(&self) -> Result<(), StoreError> {
        match self.syncer.failure() {
            Some(msg) => Err(StoreError::Poisoned(msg)),
            None => Ok(()),
        }
    }

    /// Writes `entries` (which must continue the log exactly) and returns once they are
    /// readable; `flushed` runs, on the log's sync thread, once they and every entry appended
    /// before them are durable, or with the error that stopped that. Callbacks run in the
    /// order of their appends; an empty append's callback waits for the appends before it. On
    /// `Err` nothing was appended and `flushed` is dropped without being called.
    ///
    /// A log without live entries may instead be begun at any index past its purge point
    /// (openraft allows this; the start is recorded so recovery can still tell a missing
    /// segment from a late start).
    pub fn append(
        &mut self,
        entries: Vec<Entry>,
        flushed: impl FnOnce(io::Result<()>) + Send + 'static,
    ) -> Result<(), StoreError> {
        self.check_healthy()?;
        let flushed: Flushed = Box::new(flushed);
        let Some(first) = entries.first() else {
            self.syncer.submit(Vec::new(), flushed);
            return Ok(());
        };
        let mut state = write_state(&self.state);
        if !state.has_live()
            && first.log_id.index != state.next_index()
            && first.log_id.index > state.purged.map_or(0, |p| p.index)
        {
            self.restart_at(&mut state, first.log_id.index)?;
        }
        let next = state.next_index();
        if first.log_id.index != next {
            return Err(StoreError::InvalidAppend(format!(
                "append at {} but the next index is {next}",
                first.log_id.index
            )));
        }
        let mut buf = Vec::new();
        let mut lens = Vec::with_capacity(entries.len());
        for (expected, entry) in (next..).zip(entries.iter()) {
            if entry.log_id.index != expected {
                return Err(StoreError::InvalidAppend(format!(
                    "entry {} follows {}",
                    entry.log_id.index,
                    expected - 1
                )));
            }
            let before = buf.len();
            codec::encode(entry, &mut buf).map_err(StoreError::InvalidAppend)?;
            lens.push((buf.len() - before) as u32);
        }

        let spare_ready = || self.spare.as_ref().is_some_and(Spare::is_ready);
        let need_new = match state.segments.last() {
            None => true,
            Some(s) if s.frames.is_empty() => false,
            Some(s) => s.size >= self.config.segment_bytes || (!s.preallocated && spare_ready()),
        };
        if need_new {
            let segment = self.new_segment(first.log_id.index)?;
            state.segments.push(segment);
        }
        let Some(active) = state.segments.last_mut() else {
            return Err(StoreError::InvalidAppend("no active segment".into()));
        };
        if active.preallocated {
            // Write on, with the zeros already there, to the end of the last page touched. A
            // page written only in part must first be read from the disk if it has left the
            // page cache, and the spare was filled long before its pages are written (the
            // kernel reclaims cold page cache: after a minute's pause, appends read 25 pages a
            // second per replica). A page written whole is never read.
            let end = active.size + buf.len() as u64;
            let padded = end
                .next_multiple_of(PAGE_BYTES)
                .min(self.config.segment_bytes)
                .max(end);
            buf.resize(buf.len() + (padded - end) as usize, 0);
        }
        active
            .file
            .write_all_at(&buf, active.size)
            .map_err(|e| StoreError::io(&active.path, e))?;
        let mut pos = active.size;
        for len in lens {
            active.frames.push((pos, len));
            pos += u64::from(len);
        }
        active.size = pos;
        let file = Arc::clone(&active.file);
        state.last = entries.last().map(|e| e.log_id);
        drop(state);
        self.syncer.submit(vec![file], flushed);
        Ok(())
    }

    /// Returns once every append made before the call is durable and its callback has run;
    /// an error if the log's `fdatasync` has failed (then or before).
    pub fn sync_barrier(&self) -> Result<(), StoreError> {
        let (tx, rx) = mpsc::sync_channel(1);
        self.syncer.submit(
            Vec::new(),
            Box::new(move |result| {
                let _ = tx.send(result);
            }),
        );
        match rx.recv() {
            Ok(Ok(())) => Ok(()),
            Ok(Err(e)) => Err(StoreError::Poisoned(e.to_string())),
            Err(mpsc::RecvError) => Err(StoreError::Poisoned(
                "the raft log sync thread stopped".into(),
            )),
        }
    }

    /// Replaces the sync thread by one that runs `sync_file` in place of `fdatasync`, after
    /// finishing the current one's queue (tests only).
    #[cfg(test)]
    pub(crate) fn sync_with_for_tests(
        &mut self,
        sync_file: impl Fn(&File) -> io::Result<()> + Send + 'static,
    ) {
        self.syncer = Syncer::start_with_sync(sync_file).expect("start the sync thread");
    }

    /// A new segment starting at `base`: the spare if one is filled, else an empty file.
    fn new_segment(&self, base: u64) -> Result<Segment, StoreError> {
        let path = segment_path(&self.dir, base);
        let Some(spare) = &self.spare else {
            return create_segment(&self.dir, base);
        };
        match spare.take(&path).map_err(|e| StoreError::io(&path, e))? {
            Some(file) => {
                durable_file::sync_dir(&self.dir)?;
                Ok(Segment::new_empty(base, path, file, true))
            }
            None => create_segment(&self.dir, base),
        }
    }

    /// Blocks until every purged segment is deleted (tests only).
    #[cfg(test)]
    pub(crate) fn wait_for_deletes(&self) {
        self.deleter.wait_idle();
    }

    /// Blocks until the spare segment is filled (tests only).
    #[cfg(test)]
    pub(crate) fn wait_for_spare(&self) {
        if let Some(spare) = &self.spare {
            spare.wait_ready();
        }
    }

    /// Begins an empty log at `index`: drops every segment (none holds a live entry), then
    /// records the new start durably. A crash in between leaves an empty log at the old start,
    /// which is consistent (the append that asked for this was never acknowledged).
    fn restart_at(&self, state: &mut State, index: u64) -> Result<(), StoreError> {
        while let Some(seg) = state.segments.pop() {
            fs::remove_file(&seg.path).map_err(|e| StoreError::io(&seg.path, e))?;
        }
        durable_file::sync_dir(&self.dir)?;
        durable_file::write(&self.dir, START_FILE, &index.to_le_bytes())?;
        state.start = index;
        Ok(())
    }

    /// Deletes the entries at `index` and after (a conflicting suffix); durable on return.
    /// First waits for every earlier append's callback (see [`RaftLog::sync_barrier`]), so none
    /// runs after this returns.
    pub fn truncate(&mut self, index: u64) -> Result<(), StoreError> {
        self.sync_barrier()?;
        let mut state = write_state(&self.state);
        if index >= state.next_index() {
            return Ok(());
        }
        if index < state.first_index() {
            return Err(StoreError::InvalidAppend(format!(
                "cannot truncate at {index}: entries up to {} are purged",
                state.first_index()
            )));
        }
        while let Some(seg) = state.segments.last() {
            if seg.base < index {
                break;
            }
            fs::remove_file(&seg.path).map_err(|e| StoreError::io(&seg.path, e))?;
            state.segments.pop();
        }
        if let Some(seg) = state.segments.last_mut() {
            let keep = (index - seg.base) as usize;
            if keep < seg.frames.len() {
                let cut = seg.frames[keep].0;
                seg.file
                    .set_len(cut)
                    .map_err(|e| StoreError::io(&seg.path, e))?;
                if self.config.fsync {
                    seg.file
                        .sync_all()
                        .map_err(|e| StoreError::io(&seg.path, e))?;
                }
                seg.frames.truncate(keep);
                seg.size = cut;
                seg.preallocated = false;
            }
        }
        durable_file::sync_dir(&self.dir)?;
        state.last = if index > state.first_index() {
            let prev = state.read(index - 1, index)?;
            prev.first().map(|e| e.log_id)
        } else {
            state.purged
        };
        Ok(())
    }

    /// Forgets the entries up to and including `upto` (they are in a snapshot); durable on
    /// return. Purging past the last entry empties the log; the next append then starts at
    /// `upto.index + 1`.
    pub fn purge(&mut self, upto: LogId) -> Result<(), StoreError> {
        self.check_healthy()?;
        let mut state = write_state(&self.state);
        if state.purged.is_some_and(|p| p.index >= upto.index) {
            return Ok(());
        }
        save_purged(&self.dir, &upto)?;
        state.purged = Some(upto);
        if state.last.is_none_or(|l| l.index <= upto.index) {
            state.last = Some(upto);
        }
        let first_live = upto.index + 1;
        let mut dropped = Vec::new();
        while let Some(first) = state.segments.first() {
            let is_last = state.segments.len() == 1;
            if first.end() > first_live || (is_last && first.end() == first_live) {
                break;
            }
            dropped.push(state.segments.remove(0).path);
        }
        self.deleter.delete_files(dropped);
        Ok(())
    }
}

fn segment_path(dir: &Path, base: u64) -> PathBuf {
    dir.join(format!("{base:020}{SEGMENT_SUFFIX}"))
}

fn create_segment(dir: &Path, base: u64) -> Result<Segment, StoreError> {
    let path = segment_path(dir, base);
    let file = OpenOptions::new()
        .create(true)
        .truncate(true)
        .read(true)
        .write(true)
        .open(&path)
        .map_err(|e| StoreError::io(&path, e))?;
    durable_file::sync_dir(dir)?;
    Ok(Segment::new_empty(base, path, file, false))
}

/// Scans a segment. A sealed one must be whole; the last one is cut after its last valid entry.
fn recover_segment(
    dir: &Path,
    base: u64,
    is_last: bool,
    config: &LogConfig,
) -> Result<(Segment, Option<LogId>), StoreError> {
    let path = segment_path(dir, base);
    let file = OpenOptions::new()
        .read(true)
        .write(true)
        .open(&path)
        .map_err(|e| StoreError::io(&path, e))?;
    let bytes = fs::read(&path).map_err(|e| StoreError::io(&path, e))?;
    let mut frames = Vec::new();
    let mut pos = 0usize;
    let mut last = None;
    let mut stopped = None;
    while pos < bytes.len() {
        let problem = (|| {
            if bytes.len() - pos < FRAME_HEADER {
                return Err("torn frame header".to_string());
            }
            let mut header = [0u8; FRAME_HEADER];
            header.copy_from_slice(&bytes[pos..pos + FRAME_HEADER]);
            let (len, crc) = codec::parse_header(&header)?;
            let end = pos + FRAME_HEADER + len;
            if end > bytes.len() {
                return Err("torn entry".to_string());
            }
            let body = &bytes[pos + FRAME_HEADER..end];
            let index = codec::check_body(body, crc)?;
            Ok((end, index, body))
        })();
        match problem {
            Ok((end, index, body)) => {
                let expected = base + frames.len() as u64;
                if index != expected {
                    return Err(StoreError::corrupt(
                        &path,
                        pos as u64,
                        format!("entry {index} where {expected} belongs"),
                    ));
                }
                last = Some(log_id(u64_at(body, 8), u64_at(body, 16), index));
                frames.push((pos as u64, (end - pos) as u32));
                pos = end;
            }
            Err(reason) => {
                stopped = Some(reason);
                break;
            }
        }
    }
    let mut preallocated = false;
    if let Some(reason) = stopped {
        if !is_last {
            return Err(StoreError::corrupt(&path, pos as u64, reason));
        }
        // Kept only if the segment cannot be sealed before its entries overwrite every zero.
        if bytes[pos..].iter().all(|&b| b == 0) && bytes.len() as u64 <= config.segment_bytes {
            preallocated = true;
        } else {
            tracing::warn!(
                segment = %path.display(),
                position = pos,
                reason = reason.as_str(),
                dropped_bytes = bytes.len() - pos,
                "cutting the raft log tail after the last whole entry"
            );
            file.set_len(pos as u64)
                .map_err(|e| StoreError::io(&path, e))?;
            if config.fsync {
                file.sync_all().map_err(|e| StoreError::io(&path, e))?;
            }
        }
    }
    Ok((
        Segment {
            base,
            path,
            file: Arc::new(file),
            frames,
            size: pos as u64,
            preallocated,
        },
        last,
    ))
}

fn save_purged(dir: &Path, id: &LogId) -> Result<(), StoreError> {
    let mut body = Vec::with_capacity(24);
    body.extend_from_slice(&id.leader_id.term.to_le_bytes());
    body.extend_from_slice(&id.leader_id.node_id.to_le_bytes());
    body.extend_from_slice(&id.index.to_le_bytes());
    durable_file::write(dir, PURGED_FILE, &body)
}

fn load_start(dir: &Path) -> Result<u64, StoreError> {
    match durable_file::read(dir, START_FILE)? {
        None => Ok(0),
        Some(body) if body.len() == 8 => Ok(u64_at(&body, 0)),
        Some(_) => Err(StoreError::corrupt(
            &dir.join(START_FILE),
            0,
            "bad start record",
        )),
    }
}

fn load_purged(dir: &Path) -> Result<Option<LogId>, StoreError> {
    let Some(body) = durable_file::read(dir, PURGED_FILE)? else {
        return Ok(None);
    };
    if body.len() != 24 {
        return Err(StoreError::corrupt(
            &dir.join(PURGED_FILE),
            0,
            "bad purge record",
        ));
    }
    Ok(Some(log_id(
        u64_at(&body, 0),
        u64_at(&body, 8),
        u64_at(&body, 16),
    )))
}
