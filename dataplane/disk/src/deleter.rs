//! Deletes files on a thread of its own, paced.
//!
//! Unlinking a large file frees its blocks, and on a file system mounted with `discard` each
//! free is a discard request that the device serves before anything queued behind it: 1.5 GB of
//! raft log purged at once held every replica's `fdatasync` for over a second. So a file is cut
//! from its end [`STEP_BYTES`] at a time, each cut freeing (and discarding) that much, at
//! [`MIN_BYTES_PER_SEC`], or, when more is waiting, at the rate that would free all of it in
//! [`DRAIN_TARGET`]: the backlog never grows past [`DRAIN_TARGET`]'s worth of what is handed
//! over (a 3.5 GB stream takes about 100 s: the rate falls as the backlog does).
//!
//! Callers hand over only what a crash may leave behind (the owner deletes leftovers when it
//! next opens): the deletion is not durable until the thread has synced the directories. A
//! file that is cut down shrinks under anyone who still has it open, which an unlink never
//! did: reads in flight are given a moment ([`GRACE`]), and whoever keeps files
//! open for longer (a snapshot being copied from them) takes a [`Hold`], during which nothing
//! is cut.

use std::collections::{BTreeSet, VecDeque};
use std::fs::{self, File, OpenOptions};
use std::io;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::mpsc::{self, Receiver, Sender, TryRecvError};
use std::thread::{self, JoinHandle};
use std::time::{Duration, Instant};

/// Bytes freed per cut of a file being deleted: one short discard.
const STEP_BYTES: u64 = 1 << 20;
/// Slowest pace of deletion.
const MIN_BYTES_PER_SEC: u64 = 32 << 20;
/// When more is waiting, the pace is what would delete all of it in this time.
const DRAIN_TARGET: Duration = Duration::from_secs(60);
/// What is handed over is left alone this long, so that reads in flight on its files (opened
/// before they were handed over) finish before the files shrink.
const GRACE: Duration = Duration::from_secs(2);

enum Work {
    /// Delete this file, not before the instant; `bytes` is what it counts in the backlog.
    File {
        path: PathBuf,
        not_before: Instant,
        bytes: u64,
    },
    /// Remove this directory tree, whose files are all deleted by now.
    EmptyTree(PathBuf),
    /// Answer once everything handed over before is deleted and synced.
    Notify(Sender<()>),
}

/// Handle of a thread deleting files at a pace; dropping it lets the thread finish what was
/// handed over (without pausing), and waits for it.
pub struct Deleter {
    work: Option<Sender<Work>>,
    thread: Option<JoinHandle<()>>,
    holds: Arc<AtomicUsize>,
    /// Bytes handed over and not freed yet.
    pending: Arc<AtomicU64>,
}

/// While one exists, the [`Deleter`] it came from cuts no file down (see the module docs).
pub struct Hold {
    holds: Arc<AtomicUsize>,
}

impl Drop for Hold {
    fn drop(&mut self) {
        self.holds.fetch_sub(1, Ordering::AcqRel);
    }
}

/// How long the thread waits before it looks again at a hold.
const HOLD_RECHECK: Duration = Duration::from_millis(50);

impl Deleter {
    /// Starts a deleting thread named `name`.
    pub fn start(name: &str) -> io::Result<Deleter> {
        let (work, incoming) = mpsc::channel::<Work>();
        let holds = Arc::new(AtomicUsize::new(0));
        let pending = Arc::new(AtomicU64::new(0));
        let mut queue = Queue::new(Arc::clone(&pending));
        let thread_holds = Arc::clone(&holds);
        let thread = thread::Builder::new()
            .name(name.into())
            .spawn(move || run(&mut queue, &incoming, &thread_holds))?;
        Ok(Deleter {
            work: Some(work),
            thread: Some(thread),
            holds,
            pending,
        })
    }

    /// Bytes handed over for deletion and not freed yet (a file counts as long as it was
    /// when handed over).
    pub fn pending_bytes(&self) -> u64 {
        self.pending.load(Ordering::Acquire)
    }

    /// Whether a [`Hold`] exists.
    pub fn held(&self) -> bool {
        self.holds.load(Ordering::Acquire) > 0
    }

    /// Stops files from being cut down until the returned [`Hold`] is dropped: for files
    /// opened before they were handed over and read for longer than a moment.
    pub fn hold(&self) -> Hold {
        self.holds.fetch_add(1, Ordering::AcqRel);
        Hold {
            holds: Arc::clone(&self.holds),
        }
    }

    /// Hands `paths` (files) over for deletion. Deletion begins [`GRACE`] later.
    pub fn delete_files(&self, paths: Vec<PathBuf>) {
        let not_before = Instant::now() + GRACE;
        for path in paths {
            let bytes = file_len(&path);
            self.pending.fetch_add(bytes, Ordering::AcqRel);
            if !self.send(Work::File {
                path,
                not_before,
                bytes,
            }) {
                release(&self.pending, bytes);
            }
        }
    }

    /// Hands the directory `dir` over for deletion, with everything under it: its files as by
    /// [`delete_files`](Self::delete_files), then the emptied directories.
    pub fn delete_tree(&self, dir: PathBuf) {
        let mut files = Vec::new();
        collect_files(&dir, &mut files);
        self.delete_files(files);
        self.send(Work::EmptyTree(dir));
    }

    /// Blocks until everything handed over so far is deleted and its directories synced.
    pub fn wait_idle(&self) {
        let (done, wait) = mpsc::channel();
        if self.send(Work::Notify(done)) {
            let _ = wait.recv();
        }
    }

    fn send(&self, work: Work) -> bool {
        let sent = self.work.as_ref().is_some_and(|w| w.send(work).is_ok());
        // The thread is gone only if it panicked; the owner deletes leftovers at its next open.
        if !sent {
            tracing::warn!("the deleting thread is gone; files handed over stay on disk");
        }
        sent
    }
}

impl Drop for Deleter {
    fn drop(&mut self) {
        drop(self.work.take());
        if let Some(thread) = self.thread.take() {
            let _ = thread.join();
        }
    }
}

/// A file being cut down: the bytes it still holds, and those it still counts in the backlog.
struct Cutting {
    path: PathBuf,
    file: File,
    left: u64,
    counted: u64,
}

/// What the thread has to do.
struct Queue {
    work: VecDeque<Work>,
    cutting: Option<Cutting>,
    /// Bytes still to free (shared with the handle), for the pace.
    pending: Arc<AtomicU64>,
    /// Directories with removals not yet synced.
    unsynced: BTreeSet<PathBuf>,
    /// The handle was dropped: finish without pausing.
    closed: bool,
}

/// Takes `n` bytes off `pending` (never below zero).
fn release(pending: &AtomicU64, n: u64) {
    let _ = pending.fetch_update(Ordering::AcqRel, Ordering::Acquire, |p| {
        Some(p.saturating_sub(n))
    });
}

fn run(queue: &mut Queue, incoming: &Receiver<Work>, holds: &AtomicUsize) {
    loop {
        if queue.cutting.is_none() && queue.work.is_empty() {
            queue.sync_dirs();
            if queue.closed {
                return;
            }
            match incoming.recv() {
                Ok(work) => queue.work.push_back(work),
                Err(_) => queue.closed = true,
            }
        }
        loop {
            match incoming.try_recv() {
                Ok(work) => queue.work.push_back(work),
                Err(TryRecvError::Empty) => break,
                Err(TryRecvError::Disconnected) => {
                    queue.closed = true;
                    break;
                }
            }
        }
        queue.step(holds.load(Ordering::Acquire) > 0);
    }
}

impl Queue {
    fn new(pending: Arc<AtomicU64>) -> Queue {
        Queue {
            work: VecDeque::new(),
            cutting: None,
            pending,
            unsynced: BTreeSet::new(),
            closed: false,
        }
    }

    /// Does one piece of work: one cut of a file, or one item of the queue. While `held`,
    /// files are not cut down; once the handle is dropped, they are unlinked whole instead
    /// (anyone still reading them keeps their data).
    fn step(&mut self, held: bool) {
        if held && let Some(cut) = self.cutting.take() {
            if self.closed {
                release(&self.pending, cut.counted);
                self.remove_file(&cut.path);
            } else {
                self.cutting = Some(cut);
                thread::sleep(HOLD_RECHECK);
            }
            return;
        }
        if let Some(cut) = &mut self.cutting {
            let step = cut.left.min(STEP_BYTES);
            let cut_ok = match cut.file.set_len(cut.left - step) {
                Ok(()) => true,
                Err(e) => {
                    tracing::warn!(path = %cut.path.display(), error = %e, "could not cut down a file being deleted");
                    false
                }
            };
            cut.left -= step;
            let freed = step.min(cut.counted);
            cut.counted -= freed;
            release(&self.pending, freed);
            if (!cut_ok || cut.left == 0)
                && let Some(done) = self.cutting.take()
            {
                release(&self.pending, done.counted);
                self.remove_file(&done.path);
            }
            if !self.closed {
                thread::sleep(pause(step, self.pending.load(Ordering::Acquire)));
            }
            return;
        }
        if let Some(Work::File { not_before, .. }) = self.work.front()
            && self.wait_for(*not_before)
        {
            return;
        }
        match self.work.pop_front() {
            Some(Work::File { path, bytes, .. }) => self.start_cutting(path, bytes),
            Some(Work::EmptyTree(dir)) => {
                match fs::remove_dir_all(&dir) {
                    Ok(()) => {}
                    Err(e) if e.kind() == io::ErrorKind::NotFound => {}
                    Err(e) => {
                        tracing::warn!(dir = %dir.display(), error = %e, "could not remove a deleted directory");
                    }
                }
                self.mark_parent(&dir);
            }
            Some(Work::Notify(done)) => {
                self.sync_dirs();
                let _ = done.send(());
            }
            None => {}
        }
    }

    /// Whether `not_before` is still ahead (unless the handle was dropped); if so, waits a
    /// little towards it.
    fn wait_for(&self, not_before: Instant) -> bool {
        match not_before.checked_duration_since(Instant::now()) {
            Some(wait) if !self.closed => {
                thread::sleep(wait.min(HOLD_RECHECK));
                true
            }
            _ => false,
        }
    }

    /// Opens `path` to cut it down; `counted` is what it counts in the backlog.
    fn start_cutting(&mut self, path: PathBuf, counted: u64) {
        match OpenOptions::new().write(true).open(&path) {
            Ok(file) => {
                let left = file.metadata().map_or(0, |m| m.len());
                self.cutting = Some(Cutting {
                    path,
                    file,
                    left,
                    counted,
                });
            }
            Err(e) if e.kind() == io::ErrorKind::NotFound => release(&self.pending, counted),
            Err(_) => {
                release(&self.pending, counted);
                self.remove_file(&path);
            }
        }
    }

    /// Removes `path` (a file already gone is fine); a failure is only logged.
    fn remove_file(&mut self, path: &Path) {
        match fs::remove_file(path) {
            Ok(()) => {}
            Err(e) if e.kind() == io::ErrorKind::NotFound => {}
            Err(e) => {
                tracing::warn!(path = %path.display(), error = %e, "could not delete a file");
            }
        }
        self.mark_parent(path);
    }

    fn mark_parent(&mut self, path: &Path) {
        if let Some(parent) = path.parent() {
            self.unsynced.insert(parent.to_path_buf());
        }
    }

    fn sync_dirs(&mut self) {
        for dir in std::mem::take(&mut self.unsynced) {
            match crate::sync_dir(&dir) {
                Ok(()) => {}
                Err(e) if e.kind() == io::ErrorKind::NotFound => {}
                Err(e) => {
                    tracing::warn!(dir = %dir.display(), error = %e, "could not sync a directory after deleting in it");
                }
            }
        }
    }
}

/// How long to wait after freeing `step` bytes with `waiting` bytes still to free.
fn pause(step: u64, waiting: u64) -> Duration {
    let rate = MIN_BYTES_PER_SEC.max((waiting as f64 / DRAIN_TARGET.as_secs_f64()) as u64);
    Duration::from_secs_f64(step as f64 / rate as f64)
}

fn file_len(path: &Path) -> u64 {
    fs::metadata(path).map_or(0, |m| m.len())
}

/// Appends the files under `dir` (recursively) to `out`.
fn collect_files(dir: &Path, out: &mut Vec<PathBuf>) {
    let Ok(entries) = fs::read_dir(dir) else {
        return;
    };
    for entry in entries.flatten() {
        let path = entry.path();
        match entry.file_type() {
            Ok(t) if t.is_dir() => collect_files(&path, out),
            Ok(_) => out.push(path),
            Err(_) => {}
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_pace_keeps_a_floor_and_is_a_backlogs_worth_of_the_target_time() {
        assert_eq!(
            pause(STEP_BYTES, 0),
            Duration::from_secs_f64(STEP_BYTES as f64 / MIN_BYTES_PER_SEC as f64)
        );
        // 6 GiB waiting: 6 GiB / 60 s = 102.4 MiB/s.
        let backlog = 6u64 << 30;
        let rate = STEP_BYTES as f64 / pause(STEP_BYTES, backlog).as_secs_f64();
        let drained_in = backlog as f64 / rate;
        assert!(
            (drained_in - DRAIN_TARGET.as_secs_f64()).abs() < 0.01,
            "{drained_in}"
        );
    }

    #[test]
    fn nothing_is_cut_down_while_a_hold_exists() {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("read-elsewhere");
        let len = 4 * STEP_BYTES;
        fs::write(&path, vec![3u8; len as usize]).expect("write");
        let reader = File::open(&path).expect("open");
        let deleter = Deleter::start("test-delete").expect("start");
        let hold = deleter.hold();
        deleter.delete_files(vec![path.clone()]);
        // The thread runs meanwhile: the file keeps its length while held...
        let (done, wait) = mpsc::channel();
        let flush = {
            let sender = deleter.work.as_ref().expect("sender").clone();
            sender.send(Work::Notify(done)).expect("send");
            wait
        };
        assert!(
            flush.recv_timeout(Duration::from_millis(300)).is_err(),
            "the deletion waits for the hold"
        );
        assert_eq!(reader.metadata().expect("stat").len(), len);
        // ...and goes on once the hold is dropped.
        drop(hold);
        flush.recv().expect("deleted");
        assert!(!path.exists());
    }

    #[test]
    fn files_and_trees_handed_over_are_deleted_and_dropping_finishes_the_rest() {
        let dir = tempfile::tempdir().expect("tempdir");
        let big = dir.path().join("big");
        fs::write(&big, vec![7u8; (3 * STEP_BYTES + 5) as usize]).expect("write");
        let small = dir.path().join("small");
        fs::write(&small, b"x").expect("write");
        let tree = dir.path().join("tree");
        fs::create_dir_all(tree.join("a/b")).expect("mkdir");
        fs::write(tree.join("a/b/f"), vec![1u8; (2 * STEP_BYTES) as usize]).expect("write");
        fs::write(tree.join("g"), b"g").expect("write");
        let kept = dir.path().join("kept");
        fs::write(&kept, b"k").expect("write");

        let deleter = Deleter::start("test-delete").expect("start");
        deleter.delete_files(vec![
            big.clone(),
            dir.path().join("never-existed"),
            small.clone(),
        ]);
        deleter.delete_tree(tree.clone());
        assert_eq!(
            deleter.pending_bytes(),
            3 * STEP_BYTES + 5 + 1 + 2 * STEP_BYTES + 1,
            "the backlog counts what was handed over"
        );
        deleter.wait_idle();
        assert!(!big.exists() && !small.exists() && !tree.exists());
        assert_eq!(deleter.pending_bytes(), 0);
        assert!(kept.exists(), "only what was handed over is deleted");

        let later = dir.path().join("later");
        fs::write(&later, vec![1u8; (40 * STEP_BYTES) as usize]).expect("write");
        deleter.delete_files(vec![later.clone()]);
        drop(deleter);
        assert!(
            !later.exists(),
            "dropping the handle finishes the deletions"
        );
    }
}
