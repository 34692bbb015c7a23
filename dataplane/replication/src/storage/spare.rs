//! The next segment file, zero-filled ahead of use on a thread of its own.
//!
//! An append to a file that grows makes its `fdatasync` write the inode as well (the size
//! changed): a second device write before the cache flush, on every acknowledgement. Appends
//! that overwrite blocks already allocated and written leave the inode alone, so the
//! `fdatasync` writes the data and flushes, nothing more. (`fallocate` would not do: it leaves
//! the blocks "unwritten", and the first write into each one changes the extent tree, which is
//! metadata again.)
//!
//! The spare is `spare.tmp` in the log's directory, a name recovery never takes for a segment.
//! It only ever holds zeros, or holes after a crash in the middle of filling it, and both read as
//! zeros, which recovery takes for the end of the log. So a segment made from the spare needs
//! no other care: durability still comes from the `fdatasync` of each append.

use std::fs::{self, File, OpenOptions};
use std::io;
use std::os::unix::fs::FileExt;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Condvar, Mutex, MutexGuard, PoisonError};
use std::thread::{self, JoinHandle};

use riffle_disk::{PIECE_BYTES, Pacer};

/// File name of the spare in the log's directory.
pub(crate) const SPARE_FILE: &str = "spare.tmp";

/// Bytes of zeros written per call while filling: one page. Larger writes leave the file in
/// large page-cache folios, and every later small append then counts as dirtying a whole folio
/// (up to 2 MiB) in the kernel's per-process write accounting (`/proc/<pid>/io`) and dirty
/// throttling, although only the dirty blocks reach the disk.
const FILL_CHUNK: usize = 4096;

/// A spare is filled (and synced, a MiB at a time) no faster than this (see
/// [`riffle_disk::Pacer`]): fast
/// enough for a segment of 64 MiB every half second.
const FILL_BYTES_PER_SEC: u64 = 128 << 20;

/// Handle of the thread keeping one spare segment ready; dropping it stops the thread.
pub(crate) struct Spare {
    shared: Arc<Shared>,
    thread: Option<JoinHandle<()>>,
}

struct Shared {
    dir: PathBuf,
    bytes: u64,
    sync: bool,
    /// Set (under the `state` lock, so the waiting thread cannot miss it) when the handle is
    /// dropped; read without the lock between pages of a fill.
    closed: AtomicBool,
    state: Mutex<State>,
    changed: Condvar,
}

#[derive(Default)]
struct State {
    /// A spare is wanted and the thread has not started on it yet.
    wanted: bool,
    /// The thread is filling a spare.
    filling: bool,
    /// A filled spare, at `dir/SPARE_FILE`.
    ready: Option<File>,
}

impl Spare {
    /// Starts the thread, which begins at once on a spare of `bytes` zeros in `dir` (taking over
    /// a whole one left by an earlier run). With `sync == false` the zeros are not `fdatasync`ed.
    pub(crate) fn start(dir: &Path, bytes: u64, sync: bool) -> io::Result<Spare> {
        let shared = Arc::new(Shared {
            dir: dir.to_path_buf(),
            bytes,
            sync,
            closed: AtomicBool::new(false),
            state: Mutex::new(State {
                wanted: true,
                ..State::default()
            }),
            changed: Condvar::new(),
        });
        let thread_shared = Arc::clone(&shared);
        let thread = thread::Builder::new()
            .name("raft-log-spare".into())
            .spawn(move || run(&thread_shared))?;
        Ok(Spare {
            shared,
            thread: Some(thread),
        })
    }

    /// Whether a filled spare is waiting to be taken.
    pub(crate) fn is_ready(&self) -> bool {
        self.shared.lock().ready.is_some()
    }

    /// Renames the filled spare to `path` and returns it, open for reading and writing, then
    /// starts on the next one. `None` (nothing renamed) if no spare is filled yet. The caller
    /// makes the rename durable (`fsync` of the directory).
    pub(crate) fn take(&self, path: &Path) -> io::Result<Option<File>> {
        let mut state = self.shared.lock();
        let taken = state
            .ready
            .take()
            .map(|file| fs::rename(self.shared.dir.join(SPARE_FILE), path).map(|()| file))
            .transpose();
        if !state.filling {
            // Also retries a fill that failed (a full disk, say) at each segment roll.
            state.wanted = true;
            self.shared.changed.notify_all();
        }
        taken
    }

    /// Blocks until a spare is filled (tests only).
    #[cfg(test)]
    pub(crate) fn wait_ready(&self) {
        let mut state = self.shared.lock();
        while state.ready.is_none() {
            state = self
                .shared
                .changed
                .wait(state)
                .unwrap_or_else(PoisonError::into_inner);
        }
    }
}

impl Drop for Spare {
    fn drop(&mut self) {
        {
            let _state = self.shared.lock();
            self.shared.closed.store(true, Ordering::Relaxed);
        }
        self.shared.changed.notify_all();
        if let Some(thread) = self.thread.take() {
            let _ = thread.join();
        }
    }
}

impl Shared {
    fn lock(&self) -> MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(PoisonError::into_inner)
    }

    fn closed(&self) -> bool {
        self.closed.load(Ordering::Relaxed)
    }
}

fn run(shared: &Shared) {
    loop {
        {
            let mut state = shared.lock();
            while !state.wanted && !shared.closed() {
                state = shared
                    .changed
                    .wait(state)
                    .unwrap_or_else(PoisonError::into_inner);
            }
            if shared.closed() {
                return;
            }
            state.wanted = false;
            state.filling = true;
        }
        let filled = fill(shared);
        let mut state = shared.lock();
        state.filling = false;
        match filled {
            Ok(Some(file)) => state.ready = Some(file),
            Ok(None) => return,
            Err(e) => tracing::warn!(
                dir = %shared.dir.display(),
                error = %e,
                "could not prepare the next raft log segment; the next one grows as it is written"
            ),
        }
        shared.changed.notify_all();
    }
}

/// Fills `dir/SPARE_FILE` with zeros, or takes over a whole one; `None` if closed meanwhile.
fn fill(shared: &Shared) -> io::Result<Option<File>> {
    let path = shared.dir.join(SPARE_FILE);
    if let Ok(meta) = fs::metadata(&path)
        && meta.len() == shared.bytes
    {
        let file = OpenOptions::new().read(true).write(true).open(&path)?;
        if shared.sync {
            file.sync_data()?;
        }
        return Ok(Some(file));
    }
    let file = OpenOptions::new()
        .create(true)
        .truncate(true)
        .read(true)
        .write(true)
        .open(&path)?;
    let zeros = vec![0u8; FILL_CHUNK];
    let mut pacer = Pacer::new(FILL_BYTES_PER_SEC);
    let mut at = 0u64;
    let mut unsynced = 0u64;
    while at < shared.bytes {
        if shared.closed() {
            return Ok(None);
        }
        let n = (shared.bytes - at).min(FILL_CHUNK as u64) as usize;
        file.write_all_at(&zeros[..n], at)?;
        at += n as u64;
        unsynced += n as u64;
        if unsynced >= PIECE_BYTES || at == shared.bytes {
            if shared.sync {
                file.sync_data()?;
            }
            pacer.advance(unsynced);
            unsynced = 0;
        }
    }
    Ok(Some(file))
}
