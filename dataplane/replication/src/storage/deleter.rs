//! Deletes purged segment files on a thread of their own, paced.
//!
//! Deleting a segment can take far longer than the append path can wait: unlinking a 64 MiB
//! file frees its blocks, and on a file system mounted with `discard` each free is a discard
//! request to the device. A purge runs on the raft task, so deleting there stopped every
//! replication and acknowledgement of the group for as long. The purge point is recorded
//! durably before a segment is handed over here, and opening a log deletes every segment wholly
//! at or below it, so a file that a crash leaves behind is never read and is removed at the next
//! open.
//!
//! Moving the deletion off the raft task is not enough: while a device works through discards
//! it serves nothing else, and every replica's `fdatasync` waits behind them (1.5 GB purged per
//! replica at once held all three for a second). So a file is cut from its end
//! [`STEP_BYTES`] at a time, each cut freeing (and discarding) that much, at
//! [`MIN_BYTES_PER_SEC`], or faster when more is waiting, so as to clear what is waiting within
//! [`DRAIN_TARGET`]: a log purged as fast as it is written never falls further behind.

use std::collections::VecDeque;
use std::fs::{self, File, OpenOptions};
use std::io;
use std::path::{Path, PathBuf};
use std::sync::mpsc::{self, Receiver, Sender, TryRecvError};
use std::thread::{self, JoinHandle};
use std::time::Duration;

use crate::storage::durable_file;

/// Bytes freed per cut of a file being deleted: one short discard.
const STEP_BYTES: u64 = 1 << 20;
/// Slowest pace of deletion.
const MIN_BYTES_PER_SEC: u64 = 32 << 20;
/// The pace rises so that what is waiting is deleted within this time.
const DRAIN_TARGET: Duration = Duration::from_secs(60);

enum Job {
    /// Delete these files.
    Delete(Vec<PathBuf>),
    /// Answer once every file handed over before is deleted.
    #[cfg(test)]
    Flush(Sender<()>),
}

/// Handle of the thread deleting one log's purged segments; dropping it lets the thread finish
/// the files already handed over (at full speed), and waits for it.
pub(crate) struct Deleter {
    jobs: Option<Sender<Job>>,
    thread: Option<JoinHandle<()>>,
}

impl Deleter {
    /// Starts the thread for the log in `dir`.
    pub(crate) fn start(dir: &Path) -> io::Result<Deleter> {
        let (jobs, incoming) = mpsc::channel::<Job>();
        let dir = dir.to_path_buf();
        let thread = thread::Builder::new()
            .name("raft-log-delete".into())
            .spawn(move || run(&dir, &incoming))?;
        Ok(Deleter {
            jobs: Some(jobs),
            thread: Some(thread),
        })
    }

    /// Hands `paths` over for deletion. The caller has made sure nothing reads them again.
    pub(crate) fn delete(&self, paths: Vec<PathBuf>) {
        if paths.is_empty() {
            return;
        }
        let sent = self
            .jobs
            .as_ref()
            .is_some_and(|jobs| jobs.send(Job::Delete(paths)).is_ok());
        // The thread is gone only if it panicked; the next open deletes the files instead.
        if !sent {
            tracing::warn!(
                "the segment deleting thread is gone; purged segments stay until the log is opened again"
            );
        }
    }

    /// Blocks until every file handed over so far is deleted (tests only).
    #[cfg(test)]
    pub(crate) fn wait_idle(&self) {
        let (done, wait) = mpsc::channel();
        if let Some(jobs) = &self.jobs
            && jobs.send(Job::Flush(done)).is_ok()
        {
            let _ = wait.recv();
        }
    }
}

impl Drop for Deleter {
    fn drop(&mut self) {
        drop(self.jobs.take());
        if let Some(thread) = self.thread.take() {
            let _ = thread.join();
        }
    }
}

/// A file being cut down, and the bytes it still holds.
struct Cutting {
    path: PathBuf,
    file: File,
    left: u64,
}

/// The thread: takes files from `incoming` and deletes them one cut at a time, syncing the
/// directory whenever it runs out of work. Once the handle is dropped, it deletes what is left
/// without pausing.
fn run(dir: &Path, incoming: &Receiver<Job>) {
    let mut waiting: VecDeque<PathBuf> = VecDeque::new();
    let mut current: Option<Cutting> = None;
    let mut waiting_bytes: u64 = 0;
    let mut unsynced = false;
    #[cfg(test)]
    let mut flushes: Vec<Sender<()>> = Vec::new();
    let mut closed = false;
    loop {
        let idle = current.is_none() && waiting.is_empty();
        if idle {
            if unsynced {
                sync(dir);
                unsynced = false;
            }
            #[cfg(test)]
            for done in flushes.drain(..) {
                let _ = done.send(());
            }
            if closed {
                return;
            }
        }
        let job = if idle {
            incoming.recv().ok()
        } else {
            match incoming.try_recv() {
                Ok(job) => Some(job),
                Err(TryRecvError::Empty) => None,
                Err(TryRecvError::Disconnected) => {
                    closed = true;
                    None
                }
            }
        };
        match job {
            Some(Job::Delete(paths)) => {
                waiting_bytes += paths.iter().map(|p| file_len(p)).sum::<u64>();
                waiting.extend(paths);
                continue;
            }
            #[cfg(test)]
            Some(Job::Flush(done)) => {
                flushes.push(done);
                continue;
            }
            None if idle => {
                closed = true;
                continue;
            }
            None => {}
        }
        if current.is_none() {
            let Some(path) = waiting.pop_front() else {
                continue;
            };
            current = open_for_cutting(path);
            continue;
        }
        let Some(cut) = current.as_mut() else {
            continue;
        };
        let step = cut.left.min(STEP_BYTES);
        let cut_ok = cut
            .file
            .set_len(cut.left - step)
            .inspect_err(|e| {
                tracing::warn!(path = %cut.path.display(), error = %e, "could not cut a purged raft log segment");
            })
            .is_ok();
        cut.left -= step;
        waiting_bytes = waiting_bytes.saturating_sub(step);
        if (!cut_ok || cut.left == 0)
            && let Some(done) = current.take()
        {
            waiting_bytes = waiting_bytes.saturating_sub(done.left);
            remove(&done.path);
            unsynced = true;
        }
        if !closed {
            thread::sleep(pause(step, waiting_bytes));
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

/// Opens `path` to cut it down; a file that cannot be opened is removed at once.
fn open_for_cutting(path: PathBuf) -> Option<Cutting> {
    match OpenOptions::new().write(true).open(&path) {
        Ok(file) => match file.metadata() {
            Ok(meta) => Some(Cutting {
                path,
                file,
                left: meta.len(),
            }),
            Err(_) => {
                remove(&path);
                None
            }
        },
        Err(e) if e.kind() == io::ErrorKind::NotFound => None,
        Err(_) => {
            remove(&path);
            None
        }
    }
}

/// Removes `path` (a file already gone is fine). A failure is only logged: the purge point is
/// durable, and the next open deletes what is left.
fn remove(path: &Path) {
    match fs::remove_file(path) {
        Ok(()) => {}
        Err(e) if e.kind() == io::ErrorKind::NotFound => {}
        Err(e) => {
            tracing::warn!(path = %path.display(), error = %e, "could not delete a purged raft log segment");
        }
    }
}

fn sync(dir: &Path) {
    if let Err(e) = durable_file::sync_dir(dir) {
        tracing::warn!(dir = %dir.display(), error = %e, "could not sync the raft log directory after deleting purged segments");
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_pace_keeps_a_floor_and_drains_a_backlog_within_the_target() {
        // Little waiting: the floor pace.
        assert_eq!(
            pause(STEP_BYTES, 0),
            Duration::from_secs_f64(STEP_BYTES as f64 / MIN_BYTES_PER_SEC as f64)
        );
        // 6 GiB waiting: 6 GiB / 60 s = 102.4 MiB/s, so a 1 MiB step waits ~9.8 ms.
        let backlog = 6u64 << 30;
        let pause = pause(STEP_BYTES, backlog);
        let rate = STEP_BYTES as f64 / pause.as_secs_f64();
        let drained_in = backlog as f64 / rate;
        assert!(
            (drained_in - DRAIN_TARGET.as_secs_f64()).abs() < 0.01,
            "{drained_in}"
        );
    }

    #[test]
    fn handed_over_files_are_cut_down_and_removed_and_dropping_finishes_the_rest() {
        let dir = tempfile::tempdir().expect("tempdir");
        let big = dir.path().join("big");
        fs::write(&big, vec![7u8; (3 * STEP_BYTES + 5) as usize]).expect("write");
        let small = dir.path().join("small");
        fs::write(&small, b"x").expect("write");
        let gone = dir.path().join("never-existed");
        let deleter = Deleter::start(dir.path()).expect("start");
        deleter.delete(vec![big.clone(), gone, small.clone()]);
        deleter.wait_idle();
        assert!(!big.exists() && !small.exists());

        let later = dir.path().join("later");
        fs::write(&later, vec![1u8; (40 * STEP_BYTES) as usize]).expect("write");
        deleter.delete(vec![later.clone()]);
        drop(deleter);
        assert!(
            !later.exists(),
            "dropping the handle finishes the deletions"
        );
    }
}
