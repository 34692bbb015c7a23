//! Group commit for the raft log: one thread `fdatasync`s every file written since its last
//! round, then reports each queued append as flushed, in the order the appends were queued.
//!
//! Appends are written (and readable) before they are queued here, so the raft task never waits
//! for the disk; it learns that entries are durable only through the callback. openraft treats
//! that report as a watermark (a report for an older append after a newer one is ignored), so a
//! callback runs only once the files of its own job and of every job queued before it are
//! durable: a round syncs all the files of the jobs it took before it runs any of their
//! callbacks, and rounds run one after another.

use std::fs::File;
use std::io;
use std::sync::mpsc::{self, Receiver, Sender};
use std::sync::{Arc, Mutex, PoisonError};
use std::thread::{self, JoinHandle};

/// Called once an append is durable, or with the error that stopped it from becoming durable.
pub(crate) type Flushed = Box<dyn FnOnce(io::Result<()>) + Send>;

/// How a round makes one file durable: `fdatasync`, or nothing for a log that does not sync.
type SyncFile = Box<dyn Fn(&File) -> io::Result<()> + Send>;

struct Job {
    files: Vec<Arc<File>>,
    done: Flushed,
}

/// Handle of the sync thread; dropping it lets the thread finish the queue and exit.
pub(crate) struct Syncer {
    tx: Option<Sender<Job>>,
    thread: Option<JoinHandle<()>>,
    /// The first sync error; every later job fails with it (a failed `fdatasync` cannot be
    /// retried: the kernel may have dropped the dirty pages).
    failed: Arc<Mutex<Option<String>>>,
}

impl Syncer {
    /// Starts the sync thread. With `sync == false`, rounds skip `fdatasync` (tests only) but
    /// still run the callbacks in order, from the thread.
    pub(crate) fn start(sync: bool) -> io::Result<Syncer> {
        if sync {
            Syncer::start_with(Box::new(File::sync_data))
        } else {
            Syncer::start_with(Box::new(|_| Ok(())))
        }
    }

    /// Starts the sync thread with `sync_file` in place of `fdatasync` (to hold or fail a
    /// round in tests).
    #[cfg(test)]
    pub(crate) fn start_with_sync(
        sync_file: impl Fn(&File) -> io::Result<()> + Send + 'static,
    ) -> io::Result<Syncer> {
        Syncer::start_with(Box::new(sync_file))
    }

    fn start_with(sync_file: SyncFile) -> io::Result<Syncer> {
        let (tx, rx) = mpsc::channel();
        let failed = Arc::new(Mutex::new(None));
        let thread_failed = Arc::clone(&failed);
        let thread = thread::Builder::new()
            .name("raft-log-sync".into())
            .spawn(move || run(rx, sync_file, thread_failed))?;
        Ok(Syncer {
            tx: Some(tx),
            thread: Some(thread),
            failed,
        })
    }

    /// Queues `done` to run, on the sync thread, once `files` and the files of every job
    /// queued before are durable (or with the error that stopped that). `files` may be empty:
    /// `done` then only waits for the jobs before it.
    pub(crate) fn submit(&self, files: Vec<Arc<File>>, done: Flushed) {
        let job = Job { files, done };
        match &self.tx {
            Some(tx) => {
                if let Err(mpsc::SendError(job)) = tx.send(job) {
                    (job.done)(Err(io::Error::other("the raft log sync thread is gone")));
                }
            }
            None => (job.done)(Err(io::Error::other("the raft log is closed"))),
        }
    }

    /// The first sync failure, if any.
    pub(crate) fn failure(&self) -> Option<String> {
        lock_failed(&self.failed).clone()
    }
}

impl Drop for Syncer {
    fn drop(&mut self) {
        self.tx.take();
        if let Some(thread) = self.thread.take() {
            let _ = thread.join();
        }
    }
}

fn lock_failed(failed: &Mutex<Option<String>>) -> std::sync::MutexGuard<'_, Option<String>> {
    failed.lock().unwrap_or_else(PoisonError::into_inner)
}

/// The sync thread: takes every job queued so far, syncs each distinct file of them once,
/// then runs their callbacks in queue order; until the queue's sender is dropped.
fn run(rx: Receiver<Job>, sync_file: SyncFile, failed: Arc<Mutex<Option<String>>>) {
    while let Ok(first) = rx.recv() {
        let mut jobs = vec![first];
        jobs.extend(rx.try_iter());
        let mut files: Vec<&Arc<File>> = Vec::new();
        for file in jobs.iter().flat_map(|job| &job.files) {
            if !files.iter().any(|seen| Arc::ptr_eq(seen, file)) {
                files.push(file);
            }
        }
        let mut error = lock_failed(&failed).clone();
        if error.is_none() {
            for file in files {
                if let Err(e) = sync_file(file) {
                    tracing::error!(error = %e, "fdatasync of the raft log failed");
                    let msg = format!("fdatasync failed: {e}");
                    *lock_failed(&failed) = Some(msg.clone());
                    error = Some(msg);
                    break;
                }
            }
        }
        for job in jobs {
            (job.done)(match &error {
                None => Ok(()),
                Some(msg) => Err(io::Error::other(msg.clone())),
            });
        }
    }
}
