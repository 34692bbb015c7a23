//! Group commit for the raft log: one thread `fdatasync`s every file written since its last
//! round, then reports each queued append as flushed, in order.
//!
//! Appends are written (and readable) before they are queued here, so the raft core never waits
//! for the disk; it learns that entries are durable only through the callback.

use std::fs::File;
use std::io;
use std::sync::mpsc::{self, Receiver, Sender};
use std::sync::{Arc, Mutex, PoisonError};
use std::thread::{self, JoinHandle};

/// Called once an append is durable, or with the error that stopped it from becoming durable.
pub(crate) type Flushed = Box<dyn FnOnce(io::Result<()>) + Send>;

struct Job {
    files: Vec<Arc<File>>,
    done: Flushed,
}

/// Handle of the sync thread; dropping it lets the thread finish the queue and exit.
pub(crate) struct Syncer {
    tx: Option<Sender<Job>>,
    thread: Option<JoinHandle<()>>,
    /// The first sync error; every later job fails with it (a failed `fsync` cannot be retried:
    /// the kernel may have dropped the dirty pages).
    failed: Arc<Mutex<Option<String>>>,
}

impl Syncer {
    /// Starts the sync thread. With `sync == false`, rounds skip `fdatasync` (tests only).
    pub(crate) fn start(sync: bool) -> io::Result<Syncer> {
        let (tx, rx) = mpsc::channel();
        let failed = Arc::new(Mutex::new(None));
        let thread_failed = Arc::clone(&failed);
        let thread = thread::Builder::new()
            .name("raft-log-sync".into())
            .spawn(move || run(rx, sync, thread_failed))?;
        Ok(Syncer {
            tx: Some(tx),
            thread: Some(thread),
            failed,
        })
    }

    /// Queues `done` to run after `files` (and everything queued before) are durable.
    pub(crate) fn submit(&self, files: Vec<Arc<File>>, done: Flushed) {
        let job = Job { files, done };
        match &self.tx {
            Some(tx) => {
                if let Err(mpsc::SendError(job)) = tx.send(job) {
                    (job.done)(Err(io::Error::other("raft log sync thread is gone")));
                }
            }
            None => (job.done)(Err(io::Error::other("raft log is closed"))),
        }
    }

    /// The first sync failure, if any.
    pub(crate) fn failure(&self) -> Option<String> {
        self.failed
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .clone()
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

fn run(rx: Receiver<Job>, sync: bool, failed: Arc<Mutex<Option<String>>>) {
    while let Ok(first) = rx.recv() {
        let mut jobs = vec![first];
        jobs.extend(rx.try_iter());
        let mut files: Vec<Arc<File>> = Vec::new();
        for job in &jobs {
            for f in &job.files {
                if !files.iter().any(|g| Arc::ptr_eq(f, g)) {
                    files.push(Arc::clone(f));
                }
            }
        }
        let mut error = failed
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .clone();
        if error.is_none() && sync {
            for f in &files {
                if let Err(e) = f.sync_data() {
                    tracing::error!(error = %e, "fdatasync of the raft log failed");
                    let msg = format!("fdatasync failed: {e}");
                    *failed.lock().unwrap_or_else(PoisonError::into_inner) = Some(msg.clone());
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
