//! One segment file: `{base_offset:020}.log`, a sequence of batches with contiguous offsets.
//!
//! A segment keeps an in-memory sparse index with one entry per batch (first offset, file
//! position, arrival time), built by scanning the file at open and extended by the writer after
//! each durable round. Only indexed bytes are ever read, so bytes written but not yet synced are
//! invisible to readers.

use std::ffi::OsStr;
use std::fs::{File, OpenOptions};
use std::io::{BufReader, Read};
use std::os::unix::fs::FileExt;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use bytes::BytesMut;

use crate::batch::{self, BatchHeader, HEADER_LEN, Records};
use crate::{LogError, StoredRecord};

/// Where one batch starts and what it holds.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct BatchEntry {
    /// Offset of the batch's first record.
    pub offset: u64,
    /// Byte position of the batch in its segment file.
    pub position: u64,
    /// Arrival time of every record in the batch.
    pub arrival_ms: i64,
}

/// A segment as readers see it: where its file is and the index of its durable batches.
///
/// Only the active segment keeps its file open (see `Segments`); sealed ones are opened per read,
/// so a shard with thousands of segments does not hold thousands of descriptors.
#[derive(Debug)]
pub(crate) struct Segment {
    /// Offset of the first record this segment holds (or will hold, while empty).
    pub base_offset: u64,
    /// Path of the segment file.
    pub path: Arc<Path>,
    /// One entry per durable batch, in offset (and position, and arrival) order.
    pub index: Vec<BatchEntry>,
    /// Durable bytes: the end of the last indexed batch.
    pub size: u64,
    /// One past the last durable record.
    pub next_offset: u64,
}

/// Name of the segment file whose first offset is `base_offset`.
pub(crate) fn file_name(base_offset: u64) -> String {
    format!("{base_offset:020}.log")
}

/// Suffix added to an expired segment's name while it waits for deletion.
const DOOMED_SUFFIX: &str = ".deleting";

/// The name an expired segment at `path` takes while it waits for deletion.
pub(crate) fn doomed_name(path: &Path) -> PathBuf {
    let mut name = path.as_os_str().to_owned();
    name.push(DOOMED_SUFFIX);
    PathBuf::from(name)
}

/// Whether `name` is that of an expired segment waiting for deletion.
pub(crate) fn is_doomed_name(name: &OsStr) -> bool {
    name.to_str()
        .and_then(|n| n.strip_suffix(DOOMED_SUFFIX))
        .is_some_and(|n| parse_file_name(OsStr::new(n)).is_some())
}

/// The base offset encoded in a segment file name, or `None` if `name` is not a segment.
pub(crate) fn parse_file_name(name: &OsStr) -> Option<u64> {
    let digits = name.to_str()?.strip_suffix(".log")?;
    if digits.len() != 20 || !digits.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    digits.parse().ok()
}

/// Result of scanning a segment file from its start.
struct Scan {
    index: Vec<BatchEntry>,
    /// End of the last valid batch.
    valid_len: u64,
    file_len: u64,
    next_offset: u64,
    /// Position and reason of the first invalid batch, if the scan stopped before the file end.
    stopped: Option<(u64, String)>,
}

/// Scans the batches of `file`, checking headers, offset contiguity and arrival order; with
/// `verify` also CRCs and record structure (which means reading every byte, not just headers).
fn scan(
    file: &File,
    path: &Path,
    base_offset: u64,
    prev_arrival: Option<i64>,
    verify: bool,
) -> Result<Scan, LogError> {
    let io = |e| LogError::io(path, e);
    let file_len = file.metadata().map_err(io)?.len();
    // Small enough that skipping a large batch's payload skips most of its pages.
    let mut reader = BufReader::with_capacity(64 << 10, file);
    let mut index = Vec::new();
    let mut pos = 0u64;
    let mut expected = base_offset;
    let mut last_arrival = prev_arrival;
    let mut whole = Vec::new();
    let stopped = loop {
        let remaining = file_len - pos;
        if remaining == 0 {
            break None;
        }
        if remaining < HEADER_LEN as u64 {
            break Some((
                pos,
                format!("{remaining} bytes left, too few for a batch header"),
            ));
        }
        let mut head = [0u8; HEADER_LEN];
        reader.read_exact(&mut head).map_err(io)?;
        let header = match BatchHeader::parse(&head) {
            Ok(h) => h,
            Err(problem) => break Some((pos, problem.to_string())),
        };
        if u64::from(header.len) > remaining {
            break Some((
                pos,
                format!(
                    "batch of {} bytes overruns the file ({remaining} bytes left)",
                    header.len
                ),
            ));
        }
        if header.base_offset != expected {
            break Some((
                pos,
                format!(
                    "batch starts at offset {} where {expected} was expected",
                    header.base_offset
                ),
            ));
        }
        if let Some(prev) = last_arrival
            && header.arrival_ms < prev
        {
            break Some((
                pos,
                format!(
                    "arrival time {} is before the previous batch's {prev}",
                    header.arrival_ms
                ),
            ));
        }
        let body = header.len as usize - HEADER_LEN;
        if verify {
            whole.clear();
            whole.extend_from_slice(&head);
            whole.resize(header.len as usize, 0);
            reader.read_exact(&mut whole[HEADER_LEN..]).map_err(io)?;
            if let Err(reason) = batch::verify(&whole, &header) {
                break Some((pos, reason.to_owned()));
            }
        } else {
            reader.seek_relative(body as i64).map_err(io)?;
        }
        index.push(BatchEntry {
            offset: expected,
            position: pos,
            arrival_ms: header.arrival_ms,
        });
        expected = header.next_offset();
        last_arrival = Some(header.arrival_ms);
        pos += u64::from(header.len);
    };
    Ok(Scan {
        index,
        valid_len: pos,
        file_len,
        next_offset: expected,
        stopped,
    })
}

fn open_rw(path: &Path) -> Result<File, LogError> {
    OpenOptions::new()
        .read(true)
        .write(true)
        .open(path)
        .map_err(|e| LogError::io(path, e))
}

impl Segment {
    /// Creates an empty segment file for `base_offset` in `dir`, returning it with its open file.
    /// The caller makes the directory entry durable.
    pub(crate) fn create(dir: &Path, base_offset: u64) -> Result<(Segment, Arc<File>), LogError> {
        let path: Arc<Path> = dir.join(file_name(base_offset)).into();
        let file = OpenOptions::new()
            .read(true)
            .write(true)
            .create_new(true)
            .open(&path)
            .map_err(|e| LogError::io(&path, e))?;
        let segment = Segment {
            base_offset,
            path,
            index: Vec::new(),
            size: 0,
            next_offset: base_offset,
        };
        Ok((segment, Arc::new(file)))
    }

    /// Opens a segment that is not the last one. It was fully synced before its successor was
    /// created, so anything invalid in it is corruption and an error, never a torn tail.
    pub(crate) fn open_sealed(
        path: &Path,
        base_offset: u64,
        prev_arrival: Option<i64>,
        verify: bool,
    ) -> Result<Segment, LogError> {
        let file = File::open(path).map_err(|e| LogError::io(path, e))?;
        let scan = scan(&file, path, base_offset, prev_arrival, verify)?;
        if let Some((position, reason)) = scan.stopped {
            return Err(LogError::corrupt(path, position, reason));
        }
        if scan.index.is_empty() {
            return Err(LogError::corrupt(
                path,
                0,
                "empty segment before the last one",
            ));
        }
        Ok(Segment {
            base_offset,
            path: path.into(),
            index: scan.index,
            size: scan.valid_len,
            next_offset: scan.next_offset,
        })
    }

    /// Opens the last segment, verifying every batch, and truncates it after the last valid batch
    /// (a torn or zero-filled tail left by a crash), syncing the truncation if `sync`. Returns it
    /// with its open file, as it becomes the active segment.
    pub(crate) fn recover(
        path: &Path,
        base_offset: u64,
        prev_arrival: Option<i64>,
        sync: bool,
    ) -> Result<(Segment, Arc<File>), LogError> {
        let file = open_rw(path)?;
        let scan = scan(&file, path, base_offset, prev_arrival, true)?;
        if let Some((position, reason)) = &scan.stopped {
            tracing::warn!(
                segment = %path.display(),
                position,
                reason = reason.as_str(),
                dropped_bytes = scan.file_len - scan.valid_len,
                "truncating the log tail after the last whole batch"
            );
            file.set_len(scan.valid_len)
                .map_err(|e| LogError::io(path, e))?;
            if sync {
                file.sync_data().map_err(|e| LogError::io(path, e))?;
            }
        }
        let segment = Segment {
            base_offset,
            path: path.into(),
            index: scan.index,
            size: scan.valid_len,
            next_offset: scan.next_offset,
        };
        Ok((segment, Arc::new(file)))
    }

    /// Arrival time of the newest durable record, if any.
    pub(crate) fn last_arrival_ms(&self) -> Option<i64> {
        self.index.last().map(|e| e.arrival_ms)
    }

    /// First offset whose arrival time is `>= ts_ms`, if this segment holds one.
    pub(crate) fn offset_at_time(&self, ts_ms: i64) -> Option<u64> {
        let i = self.index.partition_point(|e| e.arrival_ms < ts_ms);
        self.index.get(i).map(|e| e.offset)
    }

    /// Byte end and offset end of batch `i`.
    fn batch_end(&self, i: usize) -> (u64, u64) {
        match self.index.get(i + 1) {
            Some(next) => (next.position, next.offset),
            None => (self.size, self.next_offset),
        }
    }

    /// The byte range to read, in one positioned read, for records from `offset` up to about
    /// `max_records` / `max_bytes`; `None` if `offset` is not in this segment.
    ///
    /// Whole batches are always read. The first batch may hold records before `offset`; its
    /// payload counts fully towards `max_bytes`, so the plan can fall short and the caller
    /// continues with another plan. `file` is the open file of the active segment; sealed ones
    /// are opened when the plan runs.
    pub(crate) fn plan_read(
        &self,
        offset: u64,
        max_records: usize,
        max_bytes: usize,
        file: Option<&Arc<File>>,
    ) -> Option<ReadPlan> {
        if offset < self.base_offset || offset >= self.next_offset {
            return None;
        }
        let first = self
            .index
            .partition_point(|e| e.offset <= offset)
            .checked_sub(1)?;
        let mut records = 0u64;
        let mut bytes = 0u64;
        let mut last = first;
        for i in first..self.index.len() {
            let entry = &self.index[i];
            let (end_pos, end_offset) = self.batch_end(i);
            records += end_offset - entry.offset.max(offset);
            bytes += batch::payload_bytes(end_pos - entry.position, end_offset - entry.offset);
            last = i;
            if records >= max_records as u64 || bytes >= max_bytes as u64 {
                break;
            }
        }
        let position = self.index[first].position;
        Some(ReadPlan {
            file: file.cloned(),
            path: Arc::clone(&self.path),
            position,
            len: self.batch_end(last).0 - position,
            first_offset: self.index[first].offset,
        })
    }
}

/// A byte range of whole batches to read from one segment, detached from the segment list so
/// the read runs without holding any lock.
pub(crate) struct ReadPlan {
    /// Open file of the active segment; `None` for a sealed one.
    file: Option<Arc<File>>,
    path: Arc<Path>,
    position: u64,
    len: u64,
    first_offset: u64,
}

/// Read progress shared by the plans of one `read` call.
pub(crate) struct ReadState {
    /// Records returned so far.
    pub out: Vec<StoredRecord>,
    /// Key and data bytes of `out`.
    pub bytes: usize,
    /// Limits of the whole call.
    pub max_records: usize,
    /// Limits of the whole call; the first record is returned even if larger.
    pub max_bytes: usize,
    /// Set when the next record would not fit.
    pub done: bool,
}

impl ReadState {
    /// Whether no further record may be added.
    pub(crate) fn full(&self) -> bool {
        self.done
            || self.out.len() >= self.max_records
            || self.bytes >= self.max_bytes && !self.out.is_empty()
    }
}

/// How a [`ReadPlan`] ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Executed {
    /// The range was read and its records added.
    Read,
    /// The sealed segment's file was deleted by trimming after the plan was made.
    SegmentGone,
}

impl ReadPlan {
    /// Reads the range with one positioned read and appends the records at or after `from` to
    /// `state` until a limit is reached. Every batch's CRC is checked; data is never copied, each
    /// record's data is a slice of the one buffer.
    pub(crate) fn execute(self, from: u64, state: &mut ReadState) -> Result<Executed, LogError> {
        let corrupt = |at: usize, reason: &str| {
            LogError::corrupt(&self.path, self.position + at as u64, reason)
        };
        let opened;
        let file = match &self.file {
            Some(file) => &**file,
            None => match File::open(&self.path) {
                Ok(file) => {
                    opened = file;
                    &opened
                }
                Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
                    return Ok(Executed::SegmentGone);
                }
                Err(e) => return Err(LogError::io(&self.path, e)),
            },
        };
        let mut buf = BytesMut::zeroed(self.len as usize);
        file.read_exact_at(&mut buf, self.position)
            .map_err(|e| LogError::io(&self.path, e))?;
        let buf = buf.freeze();
        let mut at = 0usize;
        let mut expected = self.first_offset;
        while at < buf.len() {
            let header = match BatchHeader::parse_prefix(&buf[at..]) {
                Some(Ok(h)) => h,
                Some(Err(problem)) => return Err(corrupt(at, &problem.to_string())),
                None => return Err(corrupt(at, "truncated batch header")),
            };
            let end = at + header.len as usize;
            if end > buf.len() {
                return Err(corrupt(at, "batch overruns its indexed range"));
            }
            if header.base_offset != expected {
                return Err(corrupt(at, "batch offset disagrees with the index"));
            }
            let whole = buf.slice(at..end);
            batch::check_crc(&whole, &header).map_err(|r| corrupt(at, r))?;
            for (i, record) in Records::new(&whole, header.count).enumerate() {
                let (key, data) = record.map_err(|r| corrupt(at, r))?;
                let offset = header.base_offset + i as u64;
                if offset < from {
                    continue;
                }
                let size = key.len() + data.len();
                if state.out.len() >= state.max_records
                    || !state.out.is_empty() && state.bytes + size > state.max_bytes
                {
                    state.done = true;
                    return Ok(Executed::Read);
                }
                let partition_key = std::str::from_utf8(&whole[key])
                    .map_err(|_| corrupt(at, "partition key is not UTF-8"))?
                    .to_owned();
                state.out.push(StoredRecord {
                    offset,
                    arrival_ms: header.arrival_ms,
                    partition_key,
                    data: whole.slice(data),
                });
                state.bytes += size;
            }
            at = end;
            expected = header.next_offset();
        }
        Ok(Executed::Read)
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    #[test]
    fn file_names_round_trip() {
        for base in [0, 1, 42, u64::MAX] {
            let name = file_name(base);
            assert_eq!(name.len(), 24);
            assert_eq!(parse_file_name(OsStr::new(&name)), Some(base));
        }
        assert_eq!(file_name(7), "00000000000000000007.log");
        for bad in [
            "7.log",
            "0000000000000000000a.log",
            "00000000000000000007.idx",
            ".lock",
        ] {
            assert_eq!(parse_file_name(OsStr::new(bad)), None, "{bad}");
        }
    }
}
