//! The state machine a shard group replicates, and its openraft adapter.
//!
//! The server implements [`StateMachine`]; [`StateMachineStore`] drives it for openraft: applies
//! committed entries in log order, builds snapshots into a file, and installs snapshots streamed
//! from the leader.
//!
//! # Contract
//!
//! - **Determinism**: [`StateMachine::apply`] must compute its effect and response from the
//!   state and the command only (no clocks, no randomness, no local configuration), so every
//!   replica reaches the same state and the same responses.
//! - **Position stored with the state**: every `apply`, `advance` and `install` carries an
//!   [`Applied`] position; the state machine stores it atomically with the effect (e.g. in the
//!   same record) and returns the last stored one from [`StateMachine::applied`]. After a restart
//!   openraft resumes at the entry after `applied()`, so nothing is applied twice or skipped.
//!   The state need not be synced to disk on every apply: the raft log holds every committed
//!   entry after the last snapshot, and at open the adapter reinstalls the snapshot if the
//!   state machine came back behind it.
//! - **Snapshots**: [`StateMachine::snapshot`] returns a point-in-time view that can be read
//!   after the state machine lock is released (applies continue meanwhile).
//!
//! # Snapshot file
//!
//! `snapshot.bin` in the snapshot directory, replaced atomically:
//! `magic "RFSNAP01" | header length u32 | header CRC32C u32 | header (CBOR snapshot meta) |
//! data | data length u64 | data CRC32C u32`. The whole file is what travels to followers, in
//! chunks of `Config::snapshot_max_chunk_size`; a snapshot therefore never needs to fit in one
//! message or in memory.
//!
//! A snapshot is built while the group serves writes, and its file is as large as the state. It
//! is written and `fdatasync`ed a MiB at a time, no faster than [`SNAPSHOT_BYTES_PER_SEC`]
//! unless a larger state needs more to be done within [`SNAPSHOT_BUILD_TARGET`] (see
//! [`riffle_disk::Pacer`]): one `fdatasync` of the whole file at the end held every replica's
//! raft log `fdatasync` behind it on the shared device (acknowledgements stalled for 20 ms for
//! a 50 MiB state, and for longer the larger the state).

use std::fs::{self, File, OpenOptions};
use std::io::{self, BufReader, BufWriter, Read, Seek, SeekFrom, Write};
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};
use std::time::Duration;

use futures::{Stream, TryStreamExt};
use openraft::storage::{EntryResponder, RaftStateMachine};
use openraft::type_config::alias::SnapshotOf;
use openraft::{EntryPayload, OptionalSend, RaftSnapshotBuilder};
use riffle_disk::{PIECE_BYTES, Pacer};
use serde::{Deserialize, Serialize};
use tokio::sync::oneshot;

use crate::storage::{StoreError, sync_dir};
use crate::types::{Entry, LogId, SnapshotMeta, StoredMembership, TypeConfig};

const SNAPSHOT_FILE: &str = "snapshot.bin";
const INCOMING_FILE: &str = "snapshot.incoming";
const BUILDING_FILE: &str = "snapshot.building";
const MAGIC: &[u8; 8] = b"RFSNAP01";
const TRAILER: u64 = 12;
/// A snapshot being built is written no faster than this...
const SNAPSHOT_BYTES_PER_SEC: u64 = 64 << 20;
/// ...unless it is so large that it would then take longer than this: the raft log cannot be
/// purged until the snapshot is built.
const SNAPSHOT_BUILD_TARGET: Duration = Duration::from_secs(30);

/// Where a state stands in the replicated log: the last entry applied to it and the group
/// membership in force at that entry.
///
/// Opaque to the state machine except for [`Applied::index`]; store it with [`Applied::encode`]
/// and give it back through [`StateMachine::applied`] with [`Applied::decode`].
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Applied {
    pub(crate) log_id: Option<LogId>,
    pub(crate) membership: StoredMembership,
}

/// An [`Applied`] position could not be decoded.
#[derive(Debug, thiserror::Error)]
#[error("bad applied position: {0}")]
pub struct DecodeError(String);

impl Applied {
    /// The index of the last applied entry (`None` before the first entry).
    pub fn index(&self) -> Option<u64> {
        self.log_id.map(|l| l.index)
    }

    /// The term of the leader that wrote the last applied entry.
    pub fn term(&self) -> Option<u64> {
        self.log_id.map(|l| l.leader_id.term)
    }

    /// The position as bytes, to store with the state.
    pub fn encode(&self) -> Vec<u8> {
        let mut out = Vec::with_capacity(128);
        // Writing CBOR into a Vec cannot fail for these plain types.
        if let Err(e) = ciborium::into_writer(self, &mut out) {
            tracing::error!(error = %e, "encoding an applied position failed");
        }
        out
    }

    /// Decodes bytes produced by [`Applied::encode`].
    pub fn decode(bytes: &[u8]) -> Result<Applied, DecodeError> {
        ciborium::from_reader(bytes).map_err(|e| DecodeError(e.to_string()))
    }
}

/// A point-in-time view of the state for a snapshot.
pub struct SnapshotView {
    /// The position of the view: everything up to it and nothing after.
    pub applied: Applied,
    /// The state's bytes, as [`StateMachine::install`] will read them back.
    pub data: Box<dyn Read + Send>,
    /// How many bytes `data` holds (it sets the pace of the copy).
    pub len: u64,
}

/// The replicated state of a shard group, implemented by the server. See the module docs for
/// the contract.
///
/// Errors are local failures (a full disk): they stop the replica (openraft treats storage
/// errors as fatal), so a command that is merely invalid must be answered in the response
/// bytes, deterministically, not with an error.
pub trait StateMachine: Send + 'static {
    /// The position stored with the current state; `None` for the initial empty state.
    fn applied(&self) -> Option<Applied>;

    /// Applies one committed command at position `at` and returns the response for the
    /// proposer. Must be deterministic.
    fn apply(&mut self, at: &Applied, command: &[u8]) -> io::Result<Vec<u8>>;

    /// Records that `at` (an entry without a command: a new leader's blank entry or a
    /// membership change) was applied.
    fn advance(&mut self, at: &Applied) -> io::Result<()>;

    /// A consistent view of the current state, readable after this call returns.
    fn snapshot(&mut self) -> io::Result<SnapshotView>;

    /// Replaces the whole state with the snapshot data read from `data`, at position `at`.
    fn install(&mut self, at: &Applied, data: &mut dyn Read) -> io::Result<()>;
}

/// A snapshot as openraft hands it around (its `SnapshotData`): the snapshot file, open, so a
/// newer snapshot renamed over the path does not change what is being read.
#[derive(Debug)]
pub struct SnapshotFile {
    /// Where the file was when it was opened.
    pub path: PathBuf,
    /// The open file, read from offset 0 (the whole file travels, header included).
    pub file: File,
    /// The file's length in bytes.
    pub len: u64,
}

/// A snapshot with its file, as the state machine builds, keeps and installs it.
pub type FileSnapshot = SnapshotOf<TypeConfig, SnapshotFile>;

/// openraft's view of a [`StateMachine`] plus the snapshot file.
pub struct StateMachineStore<S: StateMachine> {
    sm: Arc<Mutex<S>>,
    dir: PathBuf,
    /// Serializes replacing `snapshot.bin` (a build and an install may overlap).
    files: Arc<Mutex<()>>,
    /// Held by the store and each snapshot builder; see [`StateMachineStore::released`].
    in_use: Arc<oneshot::Sender<()>>,
    released: Option<oneshot::Receiver<()>>,
}

/// Tells when a [`StateMachineStore`] and every snapshot builder it made are dropped: from then
/// on nothing of openraft touches the state machine or the snapshot directory. openraft drops
/// the store in a task of its own, which may end after `Raft::shutdown` returns.
pub struct Released(oneshot::Receiver<()>);

impl Released {
    /// Waits until the store and its builders are dropped.
    pub async fn wait(self) {
        // Only ever closed, never sent on.
        let _ = self.0.await;
    }
}

fn lock<S>(sm: &Mutex<S>) -> MutexGuard<'_, S> {
    sm.lock().unwrap_or_else(PoisonError::into_inner)
}

async fn blocking<T: Send + 'static>(
    f: impl FnOnce() -> io::Result<T> + Send + 'static,
) -> io::Result<T> {
    tokio::task::spawn_blocking(f)
        .await
        .unwrap_or_else(|e| Err(io::Error::other(format!("blocking task failed: {e}"))))
}

impl<S: StateMachine> StateMachineStore<S> {
    /// Wraps `sm`, keeping snapshots in `dir`. If the stored snapshot is ahead of the state
    /// machine (state lost or never synced), installs it first.
    pub fn open(sm: Arc<Mutex<S>>, dir: &Path) -> Result<Self, StoreError> {
        fs::create_dir_all(dir).map_err(|e| StoreError::io(dir, e))?;
        let _ = fs::remove_file(dir.join(BUILDING_FILE));
        let _ = fs::remove_file(dir.join(INCOMING_FILE));
        let (in_use, released) = oneshot::channel();
        let store = StateMachineStore {
            sm,
            dir: dir.to_path_buf(),
            files: Arc::new(Mutex::new(())),
            in_use: Arc::new(in_use),
            released: Some(released),
        };
        let path = dir.join(SNAPSHOT_FILE);
        if path.exists() {
            let meta = read_meta(&path)?;
            let behind = {
                let sm = lock(&store.sm);
                let at = sm.applied().and_then(|a| a.log_id).map(|l| l.index);
                meta.last_log_id.map(|l| l.index) > at
            };
            if behind {
                tracing::info!(snapshot = %meta, "state machine is behind its snapshot; reinstalling it");
                let mut file = File::open(&path).map_err(|e| StoreError::io(&path, e))?;
                install_file(&store.sm, &mut file, &path, &meta)?;
            }
        }
        Ok(store)
    }

    /// What tells when this store and every snapshot builder it made are dropped (`None`
    /// after the first call).
    pub fn released(&mut self) -> Option<Released> {
        self.released.take().map(Released)
    }

    /// The state machine, shared with the server (which reads it for queries).
    pub fn state_machine(&self) -> Arc<Mutex<S>> {
        Arc::clone(&self.sm)
    }

    /// Starts receiving a snapshot from the leader: `snapshot.incoming` in the snapshot
    /// directory, created empty (an earlier incomplete transfer is discarded), open for reading
    /// and writing. Write the whole snapshot file into it, sync it, and hand it to
    /// [`RaftStateMachine::install_snapshot`] (through `Raft::install_full_snapshot`).
    pub async fn begin_receiving(&self) -> io::Result<SnapshotFile> {
        let path = self.dir.join(INCOMING_FILE);
        let files = Arc::clone(&self.files);
        blocking(move || {
            // Not while an install is moving the incoming file into place.
            let _files = lock(&files);
            let file = OpenOptions::new()
                .create(true)
                .read(true)
                .write(true)
                .truncate(true)
                .open(&path)?;
            Ok(SnapshotFile { path, file, len: 0 })
        })
        .await
    }

    /// Applies `entries` in order and returns each one's response (empty for an entry without
    /// a command, and for an entry already in the state, which is never applied twice).
    async fn apply_entries(&self, entries: Vec<Entry>) -> io::Result<Vec<Vec<u8>>> {
        let sm = Arc::clone(&self.sm);
        blocking(move || {
            let mut sm = lock(&sm);
            let current = sm.applied();
            let mut membership = current
                .as_ref()
                .map(|a| a.membership.clone())
                .unwrap_or_default();
            let done = current.and_then(|a| a.log_id).map(|l| l.index);
            let mut responses = Vec::with_capacity(entries.len());
            for entry in entries {
                if Some(entry.log_id.index) <= done {
                    // Already in the state (stored with it); never apply twice.
                    responses.push(Vec::new());
                    continue;
                }
                if let EntryPayload::Membership(m) = &entry.payload {
                    membership = StoredMembership::new(Some(entry.log_id), m.clone());
                }
                let at = Applied {
                    log_id: Some(entry.log_id),
                    membership: membership.clone(),
                };
                match &entry.payload {
                    EntryPayload::Normal(command) => responses.push(sm.apply(&at, &command.0)?),
                    _ => {
                        sm.advance(&at)?;
                        responses.push(Vec::new());
                    }
                }
            }
            Ok(responses)
        })
        .await
    }
}

/// Builds snapshots from a state machine view without holding the state machine lock.
pub struct SnapshotBuilder<S: StateMachine> {
    sm: Arc<Mutex<S>>,
    dir: PathBuf,
    files: Arc<Mutex<()>>,
    _in_use: Arc<oneshot::Sender<()>>,
}

impl<S: StateMachine> RaftSnapshotBuilder<TypeConfig> for SnapshotBuilder<S> {
    type SnapshotData = SnapshotFile;

    async fn build_snapshot(&mut self) -> io::Result<FileSnapshot> {
        let sm = Arc::clone(&self.sm);
        let dir = self.dir.clone();
        let files = Arc::clone(&self.files);
        let snapshot = blocking(move || {
            let view = lock(&sm).snapshot()?;
            let meta = SnapshotMeta {
                last_log_id: view.applied.log_id,
                last_membership: view.applied.membership.clone(),
            };
            let building = dir.join(BUILDING_FILE);
            write_file(&building, &meta, view.data, view.len)?;
            let path = dir.join(SNAPSHOT_FILE);
            let _files = lock(&files);
            // A snapshot installed from the leader while this one was being written is newer;
            // keep it.
            if path.exists() {
                let current = read_meta(&path)?;
                if current.last_log_id >= meta.last_log_id {
                    fs::remove_file(&building)?;
                    return open_snapshot(path, current);
                }
            }
            fs::rename(&building, &path)?;
            sync_dir(&dir)?;
            open_snapshot(path, meta)
        })
        .await?;
        tracing::info!(snapshot = %snapshot.meta, "built snapshot");
        Ok(snapshot)
    }
}

/// The snapshot file at `path`, described by `meta`, opened for reading from its start.
fn open_snapshot(path: PathBuf, meta: SnapshotMeta) -> io::Result<FileSnapshot> {
    let file = File::open(&path)?;
    let len = file.metadata()?.len();
    Ok(FileSnapshot {
        meta,
        snapshot: SnapshotFile { path, file, len },
    })
}

/// Writes a snapshot file: header, data streamed from `data`, trailer; synced, and paced (see
/// the module documentation).
fn write_file(
    path: &Path,
    meta: &SnapshotMeta,
    mut data: Box<dyn Read + Send>,
    len: u64,
) -> io::Result<()> {
    let mut header = Vec::new();
    ciborium::into_writer(meta, &mut header).map_err(io::Error::other)?;
    let file = OpenOptions::new()
        .create(true)
        .write(true)
        .truncate(true)
        .open(path)?;
    let mut out = PacedWriter::new(file, snapshot_pace(len));
    out.write_all(MAGIC)?;
    out.write_all(&(header.len() as u32).to_le_bytes())?;
    out.write_all(&crc32c::crc32c(&header).to_le_bytes())?;
    out.write_all(&header)?;
    let mut crc = 0u32;
    let mut len = 0u64;
    let mut buf = vec![0u8; 256 << 10];
    loop {
        let n = data.read(&mut buf)?;
        if n == 0 {
            break;
        }
        crc = crc32c::crc32c_append(crc, &buf[..n]);
        len += n as u64;
        out.write_all(&buf[..n])?;
    }
    out.write_all(&len.to_le_bytes())?;
    out.write_all(&crc.to_le_bytes())?;
    out.finish()?.sync_all()
}

/// Bytes per second at which a snapshot of `len` bytes is written: [`SNAPSHOT_BYTES_PER_SEC`], or
/// what finishes it within [`SNAPSHOT_BUILD_TARGET`].
fn snapshot_pace(len: u64) -> u64 {
    SNAPSHOT_BYTES_PER_SEC.max((len as f64 / SNAPSHOT_BUILD_TARGET.as_secs_f64()) as u64)
}

/// Writes a file in [`PIECE_BYTES`] pieces, each `fdatasync`ed, at a rate.
struct PacedWriter {
    out: BufWriter<File>,
    pacer: Pacer,
    unsynced: u64,
}

impl PacedWriter {
    fn new(file: File, bytes_per_sec: u64) -> PacedWriter {
        PacedWriter {
            out: BufWriter::with_capacity(PIECE_BYTES as usize, file),
            pacer: Pacer::new(bytes_per_sec),
            unsynced: 0,
        }
    }

    /// Writes what is buffered and returns the file (not yet synced).
    fn finish(self) -> io::Result<File> {
        self.out.into_inner().map_err(|e| e.into_error())
    }
}

impl Write for PacedWriter {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        let n = self.out.write(buf)?;
        self.unsynced += n as u64;
        if self.unsynced >= PIECE_BYTES {
            self.out.flush()?;
            self.out.get_ref().sync_data()?;
            self.pacer.advance(self.unsynced);
            self.unsynced = 0;
        }
        Ok(n)
    }

    fn flush(&mut self) -> io::Result<()> {
        self.out.flush()
    }
}

/// Reads and checks a snapshot file's header; returns the meta and the data's byte range.
///
/// The header is read back whatever version of openraft wrote it: the snapshot id written
/// before openraft 0.10 is ignored, and an empty one is written for older readers.
fn read_header(file: &mut File, path: &Path) -> Result<(SnapshotMeta, u64, u64), StoreError> {
    let io_err = |e| StoreError::io(path, e);
    let total = file.metadata().map_err(io_err)?.len();
    let mut fixed = [0u8; 16];
    file.read_exact(&mut fixed).map_err(io_err)?;
    if &fixed[..8] != MAGIC {
        return Err(StoreError::corrupt(path, 0, "bad snapshot magic"));
    }
    let hlen = u64::from(u32::from_le_bytes([
        fixed[8], fixed[9], fixed[10], fixed[11],
    ]));
    let hcrc = u32::from_le_bytes([fixed[12], fixed[13], fixed[14], fixed[15]]);
    if 16 + hlen + TRAILER > total {
        return Err(StoreError::corrupt(path, 8, "snapshot header length"));
    }
    let mut header = vec![0u8; hlen as usize];
    file.read_exact(&mut header).map_err(io_err)?;
    if crc32c::crc32c(&header) != hcrc {
        return Err(StoreError::corrupt(
            path,
            16,
            "snapshot header CRC mismatch",
        ));
    }
    let meta = ciborium::from_reader(&header[..])
        .map_err(|e| StoreError::corrupt(path, 16, format!("snapshot header: {e}")))?;
    let start = 16 + hlen;
    Ok((meta, start, total - TRAILER - start))
}

fn read_meta(path: &Path) -> Result<SnapshotMeta, StoreError> {
    let mut file = File::open(path).map_err(|e| StoreError::io(path, e))?;
    Ok(read_header(&mut file, path)?.0)
}

/// Checks a snapshot file (open as `file`, found at `path`) against `meta` and its data CRC,
/// then installs it into the state machine.
fn install_file<S: StateMachine>(
    sm: &Mutex<S>,
    file: &mut File,
    path: &Path,
    meta: &SnapshotMeta,
) -> Result<(), StoreError> {
    let io_err = |e| StoreError::io(path, e);
    file.seek(SeekFrom::Start(0)).map_err(io_err)?;
    let (header, start, len) = read_header(file, path)?;
    if header.last_log_id != meta.last_log_id {
        return Err(StoreError::corrupt(
            path,
            16,
            format!("the snapshot file holds {header}, not {meta}"),
        ));
    }
    let mut trailer = [0u8; TRAILER as usize];
    file.seek(SeekFrom::Start(start + len)).map_err(io_err)?;
    file.read_exact(&mut trailer).map_err(io_err)?;
    let want_len = crate::storage::u64_le(&trailer[..8]);
    let want_crc = u32::from_le_bytes([trailer[8], trailer[9], trailer[10], trailer[11]]);
    if want_len != len {
        return Err(StoreError::corrupt(
            path,
            start + len,
            "snapshot data length",
        ));
    }
    file.seek(SeekFrom::Start(start)).map_err(io_err)?;
    let mut reader = BufReader::with_capacity(1 << 20, (&mut *file).take(len));
    let mut crc = 0u32;
    let mut buf = vec![0u8; 256 << 10];
    loop {
        let n = reader.read(&mut buf).map_err(io_err)?;
        if n == 0 {
            break;
        }
        crc = crc32c::crc32c_append(crc, &buf[..n]);
    }
    if crc != want_crc {
        return Err(StoreError::corrupt(
            path,
            start,
            "snapshot data CRC mismatch",
        ));
    }
    file.seek(SeekFrom::Start(start)).map_err(io_err)?;
    let mut data = BufReader::with_capacity(1 << 20, file.take(len));
    let at = Applied {
        log_id: meta.last_log_id,
        membership: meta.last_membership.clone(),
    };
    lock(sm).install(&at, &mut data).map_err(io_err)
}

impl<S: StateMachine> RaftStateMachine<TypeConfig> for StateMachineStore<S> {
    type SnapshotData = SnapshotFile;
    type SnapshotBuilder = SnapshotBuilder<S>;

    async fn applied_state(&mut self) -> io::Result<(Option<LogId>, StoredMembership)> {
        Ok(match lock(&self.sm).applied() {
            Some(a) => (a.log_id, a.membership),
            None => (None, StoredMembership::default()),
        })
    }

    async fn apply<Strm>(&mut self, entries: Strm) -> io::Result<()>
    where
        Strm: Stream<Item = io::Result<EntryResponder<TypeConfig>>> + Unpin + OptionalSend,
    {
        let entries: Vec<EntryResponder<TypeConfig>> = entries.try_collect().await?;
        let (entries, responders): (Vec<_>, Vec<_>) = entries.into_iter().unzip();
        let responses = self.apply_entries(entries).await?;
        for (responder, response) in responders.into_iter().zip(responses) {
            // Entries proposed here carry a responder: the proposer waits for its response.
            if let Some(responder) = responder {
                responder.send(response);
            }
        }
        Ok(())
    }

    async fn get_snapshot_builder(&mut self) -> Self::SnapshotBuilder {
        SnapshotBuilder {
            sm: Arc::clone(&self.sm),
            dir: self.dir.clone(),
            files: Arc::clone(&self.files),
            _in_use: Arc::clone(&self.in_use),
        }
    }

    /// Installs `snapshot`, whichever file it is: the incoming file the server received from
    /// the leader ([`StateMachineStore::begin_receiving`]), this store's own `snapshot.bin`
    /// (openraft restoring the state at startup), or another store's file (copied in first).
    async fn install_snapshot(
        &mut self,
        meta: &SnapshotMeta,
        snapshot: SnapshotFile,
    ) -> io::Result<()> {
        let sm = Arc::clone(&self.sm);
        let dir = self.dir.clone();
        let meta = meta.clone();
        let files = Arc::clone(&self.files);
        blocking(move || {
            let SnapshotFile { path, mut file, .. } = snapshot;
            let _files = lock(&files);
            let current = dir.join(SNAPSHOT_FILE);
            if path == current {
                // Already in place: install from the open file, which a newer snapshot renamed
                // over the path since it was opened does not change.
                install_file(&sm, &mut file, &path, &meta)?;
                tracing::info!(snapshot = %meta, "installed the stored snapshot");
                return Ok(());
            }
            let incoming = dir.join(INCOMING_FILE);
            if path != incoming {
                let mut copy = OpenOptions::new()
                    .create(true)
                    .read(true)
                    .write(true)
                    .truncate(true)
                    .open(&incoming)?;
                file.seek(SeekFrom::Start(0))?;
                io::copy(&mut file, &mut copy)?;
                file = copy;
            }
            file.sync_all()?;
            install_file(&sm, &mut file, &incoming, &meta)?;
            drop(file);
            fs::rename(&incoming, &current)?;
            sync_dir(&dir)?;
            tracing::info!(snapshot = %meta, "installed snapshot from the leader");
            Ok(())
        })
        .await
    }

    async fn get_current_snapshot(&mut self) -> io::Result<Option<FileSnapshot>> {
        let path = self.dir.join(SNAPSHOT_FILE);
        blocking(move || {
            let mut file = match File::open(&path) {
                Ok(f) => f,
                Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(None),
                Err(e) => return Err(e),
            };
            let (meta, _, _) = read_header(&mut file, &path)?;
            file.seek(SeekFrom::Start(0))?;
            let len = file.metadata()?.len();
            Ok(Some(FileSnapshot {
                meta,
                snapshot: SnapshotFile { path, file, len },
            }))
        })
        .await
    }
}

#[cfg(test)]
pub(crate) mod tests {
    use std::collections::BTreeMap;
    use std::io::Cursor;

    use bytes::Bytes;
    use openraft::{BasicNode, Membership};

    use super::*;
    use crate::types::{Command, log_id};

    #[test]
    fn a_small_snapshot_keeps_the_floor_pace_and_a_large_one_finishes_in_the_target_time() {
        assert_eq!(snapshot_pace(50 << 20), SNAPSHOT_BYTES_PER_SEC);
        let len = 6u64 << 30;
        let seconds = len as f64 / snapshot_pace(len) as f64;
        assert!(
            (seconds - SNAPSHOT_BUILD_TARGET.as_secs_f64()).abs() < 0.01,
            "{seconds}"
        );
    }

    /// A state machine in memory: the applied commands and the position (also what
    /// openraft's storage suite runs on).
    #[derive(Default)]
    pub(crate) struct Memory {
        applied: Option<Applied>,
        items: Vec<(u64, Vec<u8>)>,
        advances: usize,
    }

    impl StateMachine for Memory {
        fn applied(&self) -> Option<Applied> {
            self.applied.clone()
        }
        fn apply(&mut self, at: &Applied, command: &[u8]) -> io::Result<Vec<u8>> {
            let index = at.index().expect("index");
            self.items.push((index, command.to_vec()));
            self.applied = Some(at.clone());
            Ok(index.to_le_bytes().to_vec())
        }
        fn advance(&mut self, at: &Applied) -> io::Result<()> {
            self.advances += 1;
            self.applied = Some(at.clone());
            Ok(())
        }
        fn snapshot(&mut self) -> io::Result<SnapshotView> {
            let mut data = Vec::new();
            ciborium::into_writer(&self.items, &mut data).map_err(io::Error::other)?;
            // The storage suite snapshots a state machine that has applied nothing.
            let applied = self.applied.clone().unwrap_or(Applied {
                log_id: None,
                membership: Default::default(),
            });
            Ok(SnapshotView {
                applied,
                len: data.len() as u64,
                data: Box::new(Cursor::new(data)),
            })
        }
        fn install(&mut self, at: &Applied, data: &mut dyn Read) -> io::Result<()> {
            self.items = ciborium::from_reader(data).map_err(io::Error::other)?;
            self.applied = Some(at.clone());
            Ok(())
        }
    }

    fn membership_entry(index: u64) -> Entry {
        let nodes: BTreeMap<u64, BasicNode> =
            [(1, BasicNode::new("a:1")), (2, BasicNode::new("b:1"))].into();
        Entry {
            log_id: log_id(1, 1, index),
            payload: EntryPayload::Membership(
                Membership::new(vec![[1, 2].into()], nodes).expect("membership"),
            ),
        }
    }

    fn command(index: u64) -> Entry {
        Entry {
            log_id: log_id(1, 1, index),
            payload: EntryPayload::Normal(Command(Bytes::from(format!("c{index}")))),
        }
    }

    /// The store's current snapshot, which must exist.
    async fn current_snapshot(store: &mut StateMachineStore<Memory>) -> FileSnapshot {
        store
            .get_current_snapshot()
            .await
            .expect("current")
            .expect("some")
    }

    fn store(sm: Memory, dir: &Path) -> StateMachineStore<Memory> {
        StateMachineStore::open(Arc::new(Mutex::new(sm)), dir).expect("open")
    }

    /// Applies `entries` as openraft does, without responders.
    async fn apply(store: &mut StateMachineStore<Memory>, entries: Vec<Entry>) -> io::Result<()> {
        let entries = entries.into_iter().map(|entry| Ok((entry, None)));
        store.apply(futures::stream::iter(entries)).await
    }

    /// Writes `bytes` into a fresh incoming file of `store`, in small pieces, as the server
    /// does with a snapshot it receives.
    async fn receive(store: &StateMachineStore<Memory>, bytes: &[u8]) -> SnapshotFile {
        let mut incoming = store.begin_receiving().await.expect("begin");
        for piece in bytes.chunks(7) {
            incoming.file.write_all(piece).expect("write");
        }
        incoming.len = bytes.len() as u64;
        incoming
    }

    /// Applies a membership and commands 1..=3 to a store in `dir` and builds its snapshot
    /// (in `dir`).
    async fn snapshot_of_three_commands(dir: &Path) -> FileSnapshot {
        let mut store = store(Memory::default(), dir);
        apply(
            &mut store,
            vec![membership_entry(0), command(1), command(2), command(3)],
        )
        .await
        .expect("apply");
        store
            .get_snapshot_builder()
            .await
            .build_snapshot()
            .await
            .expect("build")
    }

    #[tokio::test]
    async fn the_store_is_released_once_it_and_its_snapshot_builders_are_dropped() {
        use futures::FutureExt;
        let dir = tempfile::tempdir().expect("tempdir");
        let mut store = store(Memory::default(), dir.path());
        let released = store.released().expect("the first call");
        assert!(store.released().is_none(), "told once");
        let builder = store.get_snapshot_builder().await;
        let mut waiting = Box::pin(released.wait());
        drop(store);
        assert!(
            (&mut waiting).now_or_never().is_none(),
            "released while a snapshot builder is alive"
        );
        drop(builder);
        assert!(waiting.now_or_never().is_some(), "not released");
    }

    #[tokio::test]
    async fn applies_in_order_with_positions_and_never_twice() {
        let dir = tempfile::tempdir().expect("tempdir");
        let mut store = store(Memory::default(), dir.path());
        let out = store
            .apply_entries(vec![membership_entry(0), command(1), command(2)])
            .await
            .expect("apply");
        assert_eq!(
            out,
            vec![
                Vec::new(),
                1u64.to_le_bytes().to_vec(),
                2u64.to_le_bytes().to_vec()
            ]
        );
        let (last, membership) = store.applied_state().await.expect("applied");
        assert_eq!(last, Some(log_id(1, 1, 2)));
        assert_eq!(membership.log_id(), &Some(log_id(1, 1, 0)));
        // Entries replayed after a restart are not applied again.
        let out = store
            .apply_entries(vec![command(2), command(3)])
            .await
            .expect("apply");
        assert_eq!(out, vec![Vec::new(), 3u64.to_le_bytes().to_vec()]);
        let sm = store.state_machine();
        let sm = lock(&sm);
        let indexes: Vec<u64> = sm.items.iter().map(|(i, _)| *i).collect();
        assert_eq!(indexes, vec![1, 2, 3]);
        assert_eq!(sm.advances, 1);
        let position = sm.applied.clone().expect("position");
        assert_eq!(
            Applied::decode(&position.encode()).expect("decode"),
            position
        );
    }

    #[tokio::test]
    async fn a_snapshot_is_reinstalled_into_a_state_machine_that_came_back_behind_it() {
        let dir = tempfile::tempdir().expect("tempdir");
        let mut first = store(Memory::default(), dir.path());
        apply(
            &mut first,
            vec![membership_entry(0), command(1), command(2)],
        )
        .await
        .expect("apply");
        let snapshot = first
            .get_snapshot_builder()
            .await
            .build_snapshot()
            .await
            .expect("build");
        assert_eq!(snapshot.meta.last_log_id, Some(log_id(1, 1, 2)));
        drop(first);

        // The state was lost (e.g. never synced); the snapshot brings it back.
        let mut again = store(Memory::default(), dir.path());
        let (last, _) = again.applied_state().await.expect("applied");
        assert_eq!(last, Some(log_id(1, 1, 2)));
        assert_eq!(lock(&again.state_machine()).items.len(), 2);
        let current = current_snapshot(&mut again).await;
        assert_eq!(current.meta, snapshot.meta);
    }

    #[tokio::test]
    async fn a_streamed_snapshot_is_checked_and_installed() {
        let leader_dir = tempfile::tempdir().expect("tempdir");
        let snapshot = snapshot_of_three_commands(leader_dir.path()).await;
        let bytes = fs::read(leader_dir.path().join(SNAPSHOT_FILE)).expect("read");

        let follower_dir = tempfile::tempdir().expect("tempdir");
        let mut follower = store(Memory::default(), follower_dir.path());
        // Damaged in transit: refused, state untouched.
        let mut damaged = bytes.clone();
        let n = damaged.len();
        damaged[n - TRAILER as usize - 1] ^= 1;
        let incoming = receive(&follower, &damaged).await;
        assert!(
            follower
                .install_snapshot(&snapshot.meta, incoming)
                .await
                .is_err()
        );
        assert!(lock(&follower.state_machine()).items.is_empty());

        let incoming = receive(&follower, &bytes).await;
        follower
            .install_snapshot(&snapshot.meta, incoming)
            .await
            .expect("install");
        let (last, membership) = follower.applied_state().await.expect("applied");
        assert_eq!(last, Some(log_id(1, 1, 3)));
        assert_eq!(membership.log_id(), &Some(log_id(1, 1, 0)));
        assert_eq!(lock(&follower.state_machine()).items.len(), 3);
        let current = current_snapshot(&mut follower).await;
        assert_eq!(current.meta, snapshot.meta);
    }

    #[tokio::test]
    async fn a_build_that_finishes_after_a_newer_install_keeps_the_newer_snapshot() {
        let newer_dir = tempfile::tempdir().expect("tempdir");
        snapshot_of_three_commands(newer_dir.path()).await;

        let dir = tempfile::tempdir().expect("tempdir");
        let mut older = store(Memory::default(), dir.path());
        apply(&mut older, vec![membership_entry(0), command(1)])
            .await
            .expect("apply");
        let mut builder = older.get_snapshot_builder().await;
        // The newer snapshot lands while the older one is being built.
        fs::copy(
            newer_dir.path().join(SNAPSHOT_FILE),
            dir.path().join(SNAPSHOT_FILE),
        )
        .expect("copy");
        let built = builder.build_snapshot().await.expect("build");
        assert_eq!(built.meta.last_log_id, Some(log_id(1, 1, 3)));
        let current = current_snapshot(&mut older).await;
        assert_eq!(current.meta.last_log_id, Some(log_id(1, 1, 3)));
    }

    #[tokio::test]
    async fn another_stores_snapshot_file_is_copied_in_and_installed() {
        let leader_dir = tempfile::tempdir().expect("tempdir");
        snapshot_of_three_commands(leader_dir.path()).await;
        let mut leader = store(Memory::default(), leader_dir.path());
        let snapshot = current_snapshot(&mut leader).await;

        let follower_dir = tempfile::tempdir().expect("tempdir");
        let mut follower = store(Memory::default(), follower_dir.path());
        follower
            .install_snapshot(&snapshot.meta, snapshot.snapshot)
            .await
            .expect("install");
        let (last, _) = follower.applied_state().await.expect("applied");
        assert_eq!(last, Some(log_id(1, 1, 3)));
        assert_eq!(lock(&follower.state_machine()).items.len(), 3);
        // The leader keeps its own file.
        assert!(leader_dir.path().join(SNAPSHOT_FILE).exists());
        let current = current_snapshot(&mut follower).await;
        assert_eq!(current.meta.last_log_id, Some(log_id(1, 1, 3)));
    }

    #[tokio::test]
    async fn the_stored_snapshot_installs_from_where_it_is() {
        let dir = tempfile::tempdir().expect("tempdir");
        let built = snapshot_of_three_commands(dir.path()).await;
        let mut again = store(Memory::default(), dir.path());
        let current = current_snapshot(&mut again).await;
        again
            .install_snapshot(&current.meta, current.snapshot)
            .await
            .expect("install");
        assert_eq!(lock(&again.state_machine()).items.len(), 3);
        assert!(!dir.path().join(INCOMING_FILE).exists());
        let current = current_snapshot(&mut again).await;
        assert_eq!(current.meta, built.meta);
    }

    #[tokio::test]
    async fn a_snapshot_file_that_is_not_the_one_described_is_refused() {
        let leader_dir = tempfile::tempdir().expect("tempdir");
        let snapshot = snapshot_of_three_commands(leader_dir.path()).await;
        let bytes = fs::read(leader_dir.path().join(SNAPSHOT_FILE)).expect("read");
        let mut meta = snapshot.meta.clone();
        meta.last_log_id = Some(log_id(1, 1, 4));

        let follower_dir = tempfile::tempdir().expect("tempdir");
        let mut follower = store(Memory::default(), follower_dir.path());
        let incoming = receive(&follower, &bytes).await;
        assert!(follower.install_snapshot(&meta, incoming).await.is_err());
        assert!(lock(&follower.state_machine()).items.is_empty());
    }

    #[tokio::test]
    async fn a_snapshot_written_before_openraft_0_10_reads_back() {
        /// The snapshot header as openraft 0.9 wrote it.
        #[derive(Serialize)]
        struct MetaWithId {
            last_log_id: Option<LogId>,
            last_membership: StoredMembership,
            snapshot_id: String,
        }

        let leader_dir = tempfile::tempdir().expect("tempdir");
        let snapshot = snapshot_of_three_commands(leader_dir.path()).await;
        let path = leader_dir.path().join(SNAPSHOT_FILE);
        let (_, start, _) =
            read_header(&mut File::open(&path).expect("open"), &path).expect("header");
        let bytes = fs::read(&path).expect("read");
        let mut header = Vec::new();
        let old = MetaWithId {
            last_log_id: snapshot.meta.last_log_id,
            last_membership: snapshot.meta.last_membership.clone(),
            snapshot_id: "1-3-1700000000000000000".into(),
        };
        ciborium::into_writer(&old, &mut header).expect("encode");
        let mut old_file = MAGIC.to_vec();
        old_file.extend_from_slice(&(header.len() as u32).to_le_bytes());
        old_file.extend_from_slice(&crc32c::crc32c(&header).to_le_bytes());
        old_file.extend_from_slice(&header);
        old_file.extend_from_slice(&bytes[start as usize..]);

        let dir = tempfile::tempdir().expect("tempdir");
        fs::write(dir.path().join(SNAPSHOT_FILE), &old_file).expect("write");
        // Behind its snapshot: reinstalled at open.
        let mut again = store(Memory::default(), dir.path());
        assert_eq!(lock(&again.state_machine()).items.len(), 3);
        let current = current_snapshot(&mut again).await;
        assert_eq!(current.meta, snapshot.meta);
    }
}
