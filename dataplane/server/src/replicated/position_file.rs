//! Where a replica stores its applied position: a [`SlotFile`] (`position.0`, `position.1`),
//! written in place, since a position is stored every half second.
//!
//! Earlier builds kept the position in one file, `position.cbor`, replaced by rename. A
//! directory with no valid slot is read from that file if it is there, and the first store
//! into a slot removes it.

use std::fs;
use std::io;
use std::path::{Path, PathBuf};

use riffle_replication::storage::SlotFile;

use crate::streams::store;

const NAME: &str = "position";
/// The single-file position of earlier builds (the body alone).
const LEGACY: &str = "position.cbor";

/// The position slots of a replica directory.
pub struct PositionFile {
    slots: SlotFile,
    /// An earlier build's `position.cbor`, while it is still there, to remove after a store.
    legacy: Option<PathBuf>,
}

impl PositionFile {
    /// Opens the slots in `dir` and returns the newest stored position's bytes, if any.
    pub fn open(dir: &Path) -> io::Result<(PositionFile, Option<Vec<u8>>)> {
        let (slots, newest) = SlotFile::open(dir, NAME).map_err(io::Error::other)?;
        let path = dir.join(LEGACY);
        let legacy = match fs::read(&path) {
            Ok(bytes) => Some(bytes),
            Err(e) if e.kind() == io::ErrorKind::NotFound => None,
            Err(e) => return Err(e),
        };
        let file = PositionFile {
            slots,
            legacy: legacy.is_some().then_some(path),
        };
        Ok((file, newest.or(legacy)))
    }

    /// Stores `body` as the newest position: durable when this returns.
    pub fn store(&mut self, body: &[u8]) -> io::Result<()> {
        self.slots.store(body).map_err(io::Error::other)?;
        if let Some(legacy) = self.legacy.take() {
            fs::remove_file(&legacy)?;
            if let Some(dir) = legacy.parent() {
                store::sync_dir(dir)?;
            }
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn reopen(dir: &Path) -> Option<Vec<u8>> {
        PositionFile::open(dir).unwrap().1
    }

    #[test]
    fn the_newest_stored_position_is_read_back_after_reopening() {
        let dir = tempfile::tempdir().unwrap();
        let (mut file, none) = PositionFile::open(dir.path()).unwrap();
        assert_eq!(none, None);
        for i in 0..3u8 {
            file.store(&[i; 10]).unwrap();
            assert_eq!(reopen(dir.path()), Some(vec![i; 10]));
        }
    }

    #[test]
    fn an_earlier_builds_single_file_is_read_until_the_first_store_replaces_it() {
        let dir = tempfile::tempdir().unwrap();
        fs::write(dir.path().join(LEGACY), b"stored by an earlier build").unwrap();
        let (mut file, body) = PositionFile::open(dir.path()).unwrap();
        assert_eq!(body.as_deref(), Some(&b"stored by an earlier build"[..]));
        file.store(b"first in a slot").unwrap();
        assert!(!dir.path().join(LEGACY).exists());
        assert_eq!(reopen(dir.path()).as_deref(), Some(&b"first in a slot"[..]));
    }
}
