//! The group-commit writer: one thread per shard turns everything queued into one write and one
//! `fdatasync`, then acknowledges.

use std::fs::{self, File};
use std::panic::{AssertUnwindSafe, catch_unwind};
use std::path::Path;
use std::sync::Arc;
use std::time::{SystemTime, UNIX_EPOCH};

use crate::segment::{BatchEntry, Segment};
use crate::{AppendAck, AppendCallback, LogError, RecordIn, Shared, SyncMode, lock, write};

/// Rounds larger than this do not keep their encode buffer; it shrinks back afterwards.
const KEEP_BUFFER_BYTES: usize = 16 << 20;

/// One queued `append` call.
pub(crate) struct Pending {
    pub records: Vec<RecordIn>,
    /// The arrival time asked for by [`crate::ShardLog::append_at`]; `None` stamps the round's
    /// commit time.
    pub arrival_ms: Option<i64>,
    pub done: AppendCallback,
}

/// Appends waiting for the next round.
#[derive(Default)]
pub(crate) struct Queue {
    pub pending: Vec<Pending>,
    /// Set by `close`: the writer drains what is queued and exits; new appends are refused.
    pub closing: bool,
}

/// What only the writer (and trimming, to roll) touches: the active file and its write position.
pub(crate) struct WriterState {
    pub file: Arc<File>,
    pub path: Arc<Path>,
    /// Bytes of whole rounds in the active file (durable unless the log syncs on request);
    /// the next round writes here.
    pub size: u64,
    /// Bytes written by every round since the log was opened, across segments; the log is
    /// durable up to `Shared::synced` of them.
    pub written: u64,
    /// Offset the next record gets.
    pub next_offset: u64,
    /// Arrival time of the newest record, so that stamps never go backwards.
    pub last_arrival: Option<i64>,
    /// Encode buffer, reused across rounds.
    pub buf: Vec<u8>,
    /// Index entries of the round being written.
    pub entries: Vec<BatchEntry>,
}

impl WriterState {
    pub(crate) fn new(active: &Segment, file: Arc<File>, last_arrival: Option<i64>) -> WriterState {
        WriterState {
            file,
            path: Arc::clone(&active.path),
            size: active.size,
            written: 0,
            next_offset: active.next_offset,
            last_arrival,
            buf: Vec::new(),
            entries: Vec::new(),
        }
    }
}

/// Milliseconds since the Unix epoch (negative before it).
pub(crate) fn now_ms() -> i64 {
    match SystemTime::now().duration_since(UNIX_EPOCH) {
        Ok(d) => i64::try_from(d.as_millis()).unwrap_or(i64::MAX),
        Err(e) => -i64::try_from(e.duration().as_millis()).unwrap_or(i64::MAX),
    }
}

/// Makes directory entries (created or removed segment files) durable.
pub(crate) fn sync_dir(dir: &Path) -> Result<(), LogError> {
    riffle_disk::sync_dir(dir).map_err(|e| LogError::io(dir, e))
}

/// The writer thread: runs rounds until `close` and the queue is empty.
pub(crate) fn run(shared: Arc<Shared>) {
    let mut spare = Vec::new();
    loop {
        let mut round = {
            let mut queue = lock(&shared.queue);
            while queue.pending.is_empty() && !queue.closing {
                queue = shared
                    .wake
                    .wait(queue)
                    .unwrap_or_else(std::sync::PoisonError::into_inner);
            }
            if queue.pending.is_empty() {
                return;
            }
            std::mem::replace(&mut queue.pending, spare)
        };
        commit_round(&shared, &mut round);
        spare = round;
    }
}

/// Runs `done` so that a panicking callback cannot take the writer thread down with it.
pub(crate) fn deliver(done: AppendCallback, result: Result<AppendAck, LogError>) {
    if catch_unwind(AssertUnwindSafe(|| done(result))).is_err() {
        tracing::error!("an append callback panicked");
    }
}

/// Writes, syncs, publishes and acknowledges one round; drains `round`.
fn commit_round(shared: &Shared, round: &mut Vec<Pending>) {
    write_round(shared, round).deliver(shared);
}

/// What a written round owes its callers: each append's answer, and the new end offset for
/// the commit listener if records were published.
pub(crate) struct Answers {
    answers: Vec<(AppendCallback, Result<AppendAck, LogError>)>,
    published: Option<u64>,
}

impl Answers {
    /// Runs every append's callback, in order, then the commit listener. Called with no lock
    /// of the log held: callbacks may trim, read or append.
    pub(crate) fn deliver(self, shared: &Shared) {
        for (done, result) in self.answers {
            deliver(done, result);
        }
        let listener = crate::read(&shared.listener).clone();
        if let Some(next) = self.published
            && let Some(listener) = listener
            && catch_unwind(AssertUnwindSafe(|| listener(next))).is_err()
        {
            tracing::error!("the commit listener panicked");
        }
    }

    fn failed(round: &mut Vec<Pending>, err: &LogError) -> Answers {
        Answers {
            answers: round
                .drain(..)
                .map(|p| (p.done, Err(err.clone())))
                .collect(),
            published: None,
        }
    }
}

/// Writes, syncs and publishes one round (drains `round`) and returns the answers owed.
pub(crate) fn write_round(shared: &Shared, round: &mut Vec<Pending>) -> Answers {
    let mut guard = lock(&shared.writer);
    let w = &mut *guard;
    if let Some(cause) = shared.poison.get() {
        return Answers::failed(round, &LogError::Poisoned(Arc::new(cause.clone())));
    }
    let now = now_ms();
    let before = w.last_arrival.unwrap_or(i64::MIN);
    // Each batch's stamp: the asked-for time (or now), raised so stamps never go backwards.
    let mut arrival_ms = before;
    let mut stamps = Vec::with_capacity(round.len());
    let start = w.size;
    let first_offset = w.next_offset;
    let mut next = first_offset;
    w.buf.clear();
    w.entries.clear();
    for p in round.iter() {
        arrival_ms = p.arrival_ms.unwrap_or(now).max(arrival_ms);
        stamps.push(arrival_ms);
        let position = start + w.buf.len() as u64;
        crate::batch::encode(&mut w.buf, next, arrival_ms, &p.records);
        w.entries.push(BatchEntry {
            offset: next,
            position,
            arrival_ms,
        });
        next += p.records.len() as u64;
    }
    let written = w.buf.len() as u64;
    let result = write_at(&w.file, &w.buf, start, shared.config.sync);
    #[cfg(test)]
    let result = result.and_then(|()| {
        if shared
            .fail_next_sync
            .swap(false, std::sync::atomic::Ordering::SeqCst)
        {
            Err(std::io::Error::other("injected sync failure"))
        } else {
            Ok(())
        }
    });
    if w.buf.capacity() > KEEP_BUFFER_BYTES {
        w.buf = Vec::new();
    }
    if let Err(e) = result {
        let err = LogError::io(&w.path, e);
        tracing::error!(error = %err, "log write failed; refusing further appends");
        let _ = shared.poison.set(err.clone());
        // Not required for correctness (nothing past `size` is indexed, and recovery truncates
        // anyway), but keeps a failed round from resurfacing if the file is read by other tools.
        if let Err(e) = w.file.set_len(start) {
            tracing::warn!(error = %e, "could not cut back the failed round");
        }
        w.entries.clear();
        return Answers::failed(round, &err);
    }
    w.size = start + written;
    w.written += written;
    w.next_offset = next;
    w.last_arrival = Some(arrival_ms);
    write(&shared.segments).commit(&mut w.entries, w.size, next, arrival_ms);
    // Roll before acknowledging, so that an acknowledged caller sees settled segments. This
    // delays only the rare round that fills a segment, by one file creation and directory sync.
    if w.size >= shared.config.segment_bytes
        && let Err(e) = roll(shared, w)
    {
        // Nothing is lost: the next round appends to the current segment and rolls again.
        tracing::warn!(error = %e, "could not roll to a new segment");
    }
    let mut first = first_offset;
    let answers = round
        .drain(..)
        .zip(stamps)
        .map(|(p, arrival_ms)| {
            let count = p.records.len() as u32;
            let ack = AppendAck {
                first_offset: first,
                count,
                arrival_ms,
            };
            first += u64::from(count);
            (p.done, Ok(ack))
        })
        .collect();
    Answers {
        answers,
        published: Some(next),
    }
}

/// Starts a new active segment at the end offset. The new file's directory entry is synced
/// before the segment is used, so a synced record is never in a file that could vanish. A log
/// that syncs on request syncs the segment it leaves first, so that only the active segment
/// can hold unsynced records.
pub(crate) fn roll(shared: &Shared, w: &mut WriterState) -> Result<(), LogError> {
    if shared.config.sync == SyncMode::OnRequest {
        shared.sync_written(&w.file, &w.path, w.written)?;
    }
    let (segment, file) = Segment::create(&shared.dir, w.next_offset)?;
    if shared.config.sync != SyncMode::None
        && let Err(e) = sync_dir(&shared.dir)
    {
        let _ = fs::remove_file(&segment.path);
        return Err(e);
    }
    w.file = Arc::clone(&file);
    w.path = Arc::clone(&segment.path);
    w.size = 0;
    write(&shared.segments).roll(segment, file);
    tracing::debug!(segment = %w.path.display(), "rolled to a new segment");
    Ok(())
}

/// One positioned write for the whole round, then (unless disabled) one `fdatasync`.
fn write_at(file: &File, buf: &[u8], at: u64, sync: SyncMode) -> std::io::Result<()> {
    use std::os::unix::fs::FileExt;
    file.write_all_at(buf, at)?;
    if sync == SyncMode::Fdatasync {
        file.sync_data()?;
    }
    Ok(())
}
