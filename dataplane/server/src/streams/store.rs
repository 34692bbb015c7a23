//! Where a stream lives on disk, and the atomic replacement of its description.
//!
//! Layout under the data directory:
//! `streams/<name>@<epoch>/stream.json` (the [`StreamMeta`]) and
//! `streams/<name>@<epoch>/shard-<index>/` (one [`riffle_log::ShardLog`] per shard).
//! A stream exists once its `stream.json` is durable; a directory without one is debris of an
//! interrupted create or delete and is removed at start-up.

use std::fs::{self, File};
use std::io::{self, Write};
use std::path::{Path, PathBuf};

use riffle_disk::Deleter;

use super::model::StreamMeta;

const META_FILE: &str = "stream.json";
const DELETED_PREFIX: &str = ".deleted-";

/// The directory holding every stream.
pub fn streams_dir(data_dir: &Path) -> PathBuf {
    data_dir.join("streams")
}

/// The directory of one incarnation of a stream.
pub fn stream_dir(data_dir: &Path, name: &str, epoch: u64) -> PathBuf {
    streams_dir(data_dir).join(format!("{name}@{epoch}"))
}

/// The log directory of one shard.
pub fn shard_dir(stream_dir: &Path, index: u32) -> PathBuf {
    stream_dir.join(format!("shard-{index:012}"))
}

/// Durably replaces the stream's description: write a temporary file, sync it, rename it over
/// the old one, sync the directory.
pub fn save(stream_dir: &Path, meta: &StreamMeta) -> io::Result<()> {
    let json = serde_json::to_vec_pretty(meta).map_err(io::Error::other)?;
    let temporary = stream_dir.join(format!("{META_FILE}.tmp"));
    let mut file = File::create(&temporary)?;
    file.write_all(&json)?;
    file.sync_all()?;
    fs::rename(&temporary, stream_dir.join(META_FILE))?;
    sync_dir(stream_dir)
}

pub use riffle_disk::sync_dir;

/// Reads every stream description, removing debris of interrupted creates and deletes.
pub fn load_all(data_dir: &Path) -> io::Result<Vec<(PathBuf, StreamMeta)>> {
    let root = streams_dir(data_dir);
    fs::create_dir_all(&root)?;
    let mut found = Vec::new();
    for entry in fs::read_dir(&root)? {
        let path = entry?.path();
        let name = path
            .file_name()
            .and_then(|n| n.to_str())
            .unwrap_or_default();
        let meta_path = path.join(META_FILE);
        if name.starts_with(DELETED_PREFIX) || !meta_path.exists() {
            tracing::info!(path = %path.display(), "removing an unfinished stream directory");
            fs::remove_dir_all(&path)?;
            continue;
        }
        let bytes = fs::read(&meta_path)?;
        let meta: StreamMeta = serde_json::from_slice(&bytes).map_err(|e| {
            io::Error::new(
                io::ErrorKind::InvalidData,
                format!("{}: {e}", meta_path.display()),
            )
        })?;
        found.push((path, meta));
    }
    Ok(found)
}

/// Removes a stream's files: renamed aside in one atomic step (durable on return), so a crash
/// midway never leaves a half-deleted stream that looks alive, then handed to `deleter`,
/// which frees them at a pace (a stream of many GB freed at once held the device, and every
/// acknowledgement's `fdatasync` behind it, for seconds). [`load_all`] removes what a crash
/// leaves aside.
pub fn remove(stream_dir: &Path, deleter: &Deleter) -> io::Result<()> {
    let Some(name) = stream_dir.file_name().and_then(|n| n.to_str()) else {
        return Ok(());
    };
    // Unique: the files of an earlier stream of this name may still be waiting for deletion.
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_nanos());
    let aside = stream_dir.with_file_name(format!("{DELETED_PREFIX}{name}.{nanos}"));
    fs::rename(stream_dir, &aside)?;
    if let Some(parent) = aside.parent() {
        sync_dir(parent)?;
    }
    deleter.delete_tree(aside);
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_removed_stream_is_gone_on_return_and_its_files_follow() {
        let data = tempfile::tempdir().expect("tempdir");
        let deleter = Deleter::start("test-stream-delete").expect("deleter");
        // The same incarnation twice: the first one's files may still be waiting aside.
        for round in 0..2u8 {
            let dir = stream_dir(data.path(), "s", 7);
            fs::create_dir_all(shard_dir(&dir, 0)).expect("mkdir");
            fs::write(shard_dir(&dir, 0).join("0.log"), vec![round; 3 << 20]).expect("write");
            fs::write(dir.join(META_FILE), b"{}").expect("write");
            remove(&dir, &deleter).expect("remove");
            assert!(!dir.exists(), "round {round}: the stream is gone on return");
        }
        deleter.wait_idle();
        let left: Vec<_> = fs::read_dir(streams_dir(data.path()))
            .expect("list")
            .map(|e| e.expect("entry").file_name())
            .collect();
        assert!(left.is_empty(), "left behind: {left:?}");
    }
}
