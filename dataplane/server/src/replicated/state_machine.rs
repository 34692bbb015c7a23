//! [`StateMachine`] over a [`Catalog`]: applies replicated commands, records the applied
//! position, snapshots and installs the data directory's streams.
//!
//! # Position and replay
//!
//! A replica's shard logs are not synced as each command is applied
//! ([`riffle_log::SyncMode::OnRequest`]): an applied command is already durable on a quorum's
//! raft logs, so the acknowledgement waits for no second `fdatasync`. The logs are synced
//! before the position is stored, so a stored position never counts records a power loss could
//! take back.
//!
//! After applying, the position (the last applied entry and, for every shard, its log's end
//! offset at that entry) is stored (shard logs synced, then the position written in place to
//! one of two slot files, see [`super::position_file`]) — not after every entry, but after the
//! first, then every [`SAVE_EVERY`] entries or [`SAVE_INTERVAL`], and always after a blank or
//! membership entry, an install, and a command that may change a stream's description. The
//! catalog may therefore be ahead of the stored position after a crash, and openraft replays
//! the entries after it. Replaying is idempotent:
//!
//! - a PutRecords batch for a shard whose log ends past the stored offset is not appended
//!   again: logs are append-only and every batch is appended whole or not at all, in command
//!   order, so the records between the stored offset and the log's end are exactly the
//!   batches of the replayed commands, in order ([`Replay`]);
//! - a CreateStream finding the stream with the command's creation time is already done;
//! - a DeleteStream names the incarnation (epoch) it deletes, so it never deletes a stream
//!   created again after it;
//! - any other change of a description is replayed at most once, onto the description it
//!   made (the position is stored right after it): a reshard names its place in the stream's
//!   reshard history and is not made twice, an import finds its stream, and the other changes
//!   are refused or change nothing when made again.
//!
//! An install first marks the position as "installing"; a replica restarted with that mark
//! removes its streams (the half-installed debris) and starts empty, so openraft installs a
//! snapshot again. A data directory holding streams but no position was not written by the
//! group (e.g. a standalone server's); the state machine refuses to open it, since replaying
//! the group's log onto it would skip or misplace records.
//!
//! # Snapshot data
//!
//! `u64 LE manifest length | manifest (CBOR: per stream its description as JSON and per
//! shard its segment files with their lengths) | the segment files' bytes, in manifest order`.
//! The segment files are opened, and the lengths of their whole rounds read, when the view is
//! taken under the state machine lock, so later appends and retention do not change the view;
//! the snapshot file the view is copied into is synced before it is used.

use std::collections::HashMap;
use std::fs::{self, File};
use std::io::{self, Read};
use std::path::Path;
use std::sync::Arc;
use std::time::{Duration, Instant};

use riffle_log::ShardLog;
use riffle_replication::{Applied, SnapshotView, StateMachine};
use serde::{Deserialize, Serialize};
use tokio::runtime::Handle;

use super::command::{Applier, Command, Replay, Response, ShardKey};
use super::position_file::PositionFile;
use crate::streams::model::StreamMeta;
use crate::streams::{ApiError, Catalog, store};

/// The position is stored at least every this many applied entries...
pub const SAVE_EVERY: u64 = 1024;
/// ...and at least this often while entries are applied.
pub const SAVE_INTERVAL: Duration = Duration::from_millis(500);

#[derive(Serialize, Deserialize)]
struct Position {
    /// `None` while a snapshot is being installed: the streams on disk are then debris.
    applied: Option<Vec<u8>>,
    shards: Vec<(String, u64, u32, u64)>,
}

#[derive(Serialize, Deserialize)]
struct Manifest {
    streams: Vec<StreamFiles>,
}

#[derive(Serialize, Deserialize)]
struct StreamFiles {
    meta_json: Vec<u8>,
    shards: Vec<(u32, Vec<(String, u64)>)>,
}

/// The replicated catalog of a shard group replica.
pub struct CatalogMachine {
    applier: Applier,
    position_file: PositionFile,
    runtime: Handle,
    applied: Option<Applied>,
    unsaved: u64,
    saved_at: Instant,
    /// Whether a position is stored; the first apply stores one at once, so that streams on
    /// disk always come with a position.
    has_position: bool,
}

fn io_err(e: ApiError) -> io::Error {
    io::Error::other(e.to_string())
}

impl CatalogMachine {
    /// Wraps `catalog`, keeping the applied position in `dir`. Must be called inside a Tokio
    /// runtime (applies run on its blocking threads).
    pub async fn open(catalog: Arc<Catalog>, dir: &Path) -> io::Result<CatalogMachine> {
        fs::create_dir_all(dir)?;
        let runtime = Handle::current();
        let invalid = |e: String| io::Error::new(io::ErrorKind::InvalidData, e);
        let (position_file, stored) = PositionFile::open(dir)?;
        let (applied, stored) = match stored {
            Some(bytes) => {
                let position: Position =
                    ciborium::from_reader(&bytes[..]).map_err(|e| invalid(e.to_string()))?;
                match position.applied {
                    Some(applied) => {
                        let applied =
                            Applied::decode(&applied).map_err(|e| invalid(e.to_string()))?;
                        let shards: HashMap<ShardKey, u64> = position
                            .shards
                            .into_iter()
                            .map(|(s, e, i, end)| ((s, e, i), end))
                            .collect();
                        (Some(applied), shards)
                    }
                    None => {
                        tracing::info!("removing the streams of an interrupted snapshot install");
                        catalog
                            .remove_all_streams()
                            .await
                            .map_err(|e| io::Error::other(e.to_string()))?;
                        (None, HashMap::new())
                    }
                }
            }
            None => {
                // Replaying the group's log onto streams it did not write would skip or
                // misplace records; a replica starts on an empty data directory.
                if !catalog.streams().is_empty() {
                    return Err(invalid(format!(
                        "{} holds streams but no replica position: it was not written by a \
                         replica of this group; start a replica on an empty data directory",
                        catalog.config().data_dir.display()
                    )));
                }
                (None, HashMap::new())
            }
        };
        let has_position = applied.is_some();
        let replay = shard_ends(&catalog)
            .await
            .into_iter()
            .map(|(key, end, _)| {
                let next = stored.get(&key).copied().unwrap_or(0);
                (key, Replay { next, end })
            })
            .collect();
        Ok(CatalogMachine {
            applier: Applier::new(catalog, replay),
            position_file,
            runtime,
            applied,
            unsaved: 0,
            saved_at: Instant::now(),
            has_position,
        })
    }

    /// The catalog.
    pub fn catalog(&self) -> &Arc<Catalog> {
        self.applier.catalog()
    }

    /// Syncs the shard logs and stores the applied position now (e.g. before a clean
    /// shutdown).
    pub fn save_position(&mut self) -> io::Result<()> {
        let Some(applied) = &self.applied else {
            return Ok(());
        };
        let ends = self.runtime.block_on(shard_ends(self.applier.catalog()));
        let mut shards = Vec::with_capacity(ends.len());
        for ((stream, epoch, index), end, log) in ends {
            log.sync().map_err(io::Error::other)?;
            shards.push((stream, epoch, index, end));
        }
        let position = Position {
            applied: Some(applied.encode()),
            shards,
        };
        self.write_position(&position)?;
        self.has_position = true;
        self.unsaved = 0;
        self.saved_at = Instant::now();
        Ok(())
    }

    fn write_position(&mut self, position: &Position) -> io::Result<()> {
        let mut bytes = Vec::new();
        ciborium::into_writer(position, &mut bytes).map_err(io::Error::other)?;
        self.position_file.store(&bytes)
    }

    fn maybe_save(&mut self) -> io::Result<()> {
        self.unsaved += 1;
        if !self.has_position
            || self.unsaved >= SAVE_EVERY
            || self.saved_at.elapsed() >= SAVE_INTERVAL
        {
            self.save_position()?;
        }
        Ok(())
    }
}

/// End offset of every hosted shard log, with the log. Only the state machine writes in
/// replicated mode, and it holds its lock while this runs, so the ends are those of the applied
/// position.
async fn shard_ends(catalog: &Catalog) -> Vec<(ShardKey, u64, Arc<ShardLog>)> {
    let mut out = Vec::new();
    for stream in catalog.streams() {
        let name = stream.name.clone();
        let epoch = stream.epoch;
        if let Ok(ends) = catalog
            .describe(&stream.name, |_, state| {
                state
                    .shards
                    .iter()
                    .map(|(&index, shard)| {
                        let key = (name.clone(), epoch, index);
                        (key, shard.log.end_offset(), Arc::clone(&shard.log))
                    })
                    .collect::<Vec<_>>()
            })
            .await
        {
            out.extend(ends);
        }
    }
    out
}

impl StateMachine for CatalogMachine {
    fn applied(&self) -> Option<Applied> {
        self.applied.clone()
    }

    fn apply(&mut self, at: &Applied, command: &[u8]) -> io::Result<Vec<u8>> {
        let mut description_changed = false;
        let response = match Command::decode(command) {
            Ok(command) => {
                description_changed = command.changes_description();
                self.runtime
                    .block_on(self.applier.apply(command))
                    .map_err(io_err)?
            }
            // A command this version cannot read is refused the same way on every replica.
            Err(e) => Response::refused(ApiError::internal(format!("undecodable command: {e}"))),
        };
        self.applied = Some(at.clone());
        if description_changed {
            self.save_position()?;
        } else {
            self.maybe_save()?;
        }
        Ok(response.encode())
    }

    fn advance(&mut self, at: &Applied) -> io::Result<()> {
        self.applied = Some(at.clone());
        self.save_position()
    }

    fn snapshot(&mut self) -> io::Result<SnapshotView> {
        let applied = self
            .applied
            .clone()
            .ok_or_else(|| io::Error::other("nothing applied yet"))?;
        let mut manifest = Manifest {
            streams: Vec::new(),
        };
        let mut files: Vec<Box<dyn Read + Send>> = Vec::new();
        let catalog = Arc::clone(self.applier.catalog());
        // Taken before the files are opened: a stream deleted while the copy runs keeps them.
        let hold = catalog.hold_deletions();
        for stream in catalog.streams() {
            let taken = self
                .runtime
                .block_on(catalog.describe(&stream.name, |meta, state| {
                    let meta_json = serde_json::to_vec(meta).map_err(io::Error::other)?;
                    let mut shards = Vec::new();
                    let mut opened: Vec<Box<dyn Read + Send>> = Vec::new();
                    for (&index, shard) in &state.shards {
                        let mut listed = Vec::new();
                        for (name, file, len) in
                            shard.log.durable_segments().map_err(io::Error::other)?
                        {
                            listed.push((name, len));
                            opened.push(Box::new(file.take(len)));
                        }
                        shards.push((index, listed));
                    }
                    Ok::<_, io::Error>((StreamFiles { meta_json, shards }, opened))
                }));
            // A stream deleted meanwhile cannot be: applies wait for this lock.
            let Ok(taken) = taken else { continue };
            let (listed, opened) = taken?;
            manifest.streams.push(listed);
            files.extend(opened);
        }
        let mut header = Vec::new();
        ciborium::into_writer(&manifest, &mut header).map_err(io::Error::other)?;
        let mut head = (header.len() as u64).to_le_bytes().to_vec();
        head.extend_from_slice(&header);
        let len = head.len() as u64
            + manifest
                .streams
                .iter()
                .flat_map(|s| &s.shards)
                .flat_map(|(_, segments)| segments)
                .map(|(_, len)| len)
                .sum::<u64>();
        files.insert(0, Box::new(io::Cursor::new(head)));
        Ok(SnapshotView {
            applied,
            data: Box::new(Concat {
                parts: files,
                _hold: hold,
            }),
            len,
        })
    }

    fn install(&mut self, at: &Applied, data: &mut dyn Read) -> io::Result<()> {
        // Marked as installing: a crash part-way leaves the state empty at the next start
        // (the half-installed streams are removed) and openraft installs a snapshot again,
        // instead of replaying onto a half-installed state.
        self.write_position(&Position {
            applied: None,
            shards: Vec::new(),
        })?;
        self.has_position = false;
        let mut len = [0u8; 8];
        data.read_exact(&mut len)?;
        let mut header = vec![0u8; u64::from_le_bytes(len) as usize];
        data.read_exact(&mut header)?;
        let manifest: Manifest = ciborium::from_reader(&header[..])
            .map_err(|e| io::Error::new(io::ErrorKind::InvalidData, e.to_string()))?;
        let catalog = Arc::clone(self.applier.catalog());
        self.runtime
            .block_on(catalog.remove_all_streams())
            .map_err(io_err)?;
        let data_dir = catalog.config().data_dir.clone();
        for stream in manifest.streams {
            let meta: StreamMeta = serde_json::from_slice(&stream.meta_json)
                .map_err(|e| io::Error::new(io::ErrorKind::InvalidData, e.to_string()))?;
            let dir = store::stream_dir(&data_dir, &meta.name, meta.epoch);
            fs::create_dir_all(&dir)?;
            for (index, segments) in stream.shards {
                let shard_dir = store::shard_dir(&dir, index);
                fs::create_dir_all(&shard_dir)?;
                for (name, len) in segments {
                    if name.contains('/') || name.starts_with('.') {
                        return Err(io::Error::new(
                            io::ErrorKind::InvalidData,
                            format!("bad segment name {name:?} in snapshot"),
                        ));
                    }
                    let mut out = File::create(shard_dir.join(&name))?;
                    let copied = io::copy(&mut (&mut *data).take(len), &mut out)?;
                    if copied != len {
                        return Err(io::Error::new(
                            io::ErrorKind::UnexpectedEof,
                            "snapshot ends inside a segment",
                        ));
                    }
                    out.sync_all()?;
                }
                store::sync_dir(&shard_dir)?;
            }
            store::sync_dir(&dir)?;
            // The description last: a directory without one is removed at start-up.
            store::save(&dir, &meta)?;
        }
        store::sync_dir(&store::streams_dir(&data_dir))?;
        self.runtime
            .block_on(catalog.load_new_streams())
            .map_err(io_err)?;
        self.applier.reset_replay();
        self.applied = Some(at.clone());
        self.save_position()
    }
}

/// Reads a list of readers one after the other.
struct Concat {
    parts: Vec<Box<dyn Read + Send>>,
    /// Deleted streams' files stay whole while this view is read.
    _hold: riffle_disk::Hold,
}

impl Read for Concat {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        while let Some(first) = self.parts.first_mut() {
            let n = first.read(buf)?;
            if n > 0 || buf.is_empty() {
                return Ok(n);
            }
            self.parts.remove(0);
        }
        Ok(0)
    }
}
