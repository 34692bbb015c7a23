//! Small files stored often: two slot files, `{name}.0` and `{name}.1`, written in turn in
//! place.
//!
//! Each slot holds a `durable_file` frame whose body is `u64 LE number | content`, zero-padded
//! to whole 4 KiB pages. A store overwrites the slot that does not hold the newest content and
//! `fdatasync`s it; once both files exist, that is a plain data write of already-allocated
//! pages, with no new file, rename or directory sync (what `durable_file` needs), which keeps a
//! frequent store cheap for the rest of the disk. Reading takes the valid slot with the highest
//! number. A store torn by a crash fails its CRC (or leaves an older content whole), and the
//! other slot still holds the previous content.

use std::fs::{self, OpenOptions};
use std::io;
use std::os::unix::fs::FileExt;
use std::path::{Path, PathBuf};

use crate::storage::StoreError;
use crate::storage::durable_file::{frame, sync_dir, unframe};

const PAGE: usize = 4096;

/// The pair of slot files `{name}.0` and `{name}.1` in a directory.
pub struct SlotFile {
    paths: [PathBuf; 2],
    dir: PathBuf,
    /// Number of the newest valid content and the slot holding it.
    newest: Option<(u64, usize)>,
}

impl SlotFile {
    /// Opens the slots of `name` in `dir` and returns the newest valid content, if any.
    pub fn open(dir: &Path, name: &str) -> Result<(SlotFile, Option<Vec<u8>>), StoreError> {
        let paths = [0, 1].map(|slot| dir.join(format!("{name}.{slot}")));
        let mut newest: Option<(u64, usize, Vec<u8>)> = None;
        for (slot, path) in paths.iter().enumerate() {
            let bytes = match fs::read(path) {
                Ok(bytes) => bytes,
                Err(e) if e.kind() == io::ErrorKind::NotFound => continue,
                Err(e) => return Err(StoreError::io(path, e)),
            };
            if let Some((number, content)) = decode(&bytes)
                && newest.as_ref().is_none_or(|(n, _, _)| number > *n)
            {
                newest = Some((number, slot, content.to_vec()));
            }
        }
        let file = SlotFile {
            paths,
            dir: dir.to_path_buf(),
            newest: newest.as_ref().map(|(number, slot, _)| (*number, *slot)),
        };
        Ok((file, newest.map(|(_, _, content)| content)))
    }

    /// Stores `content` as the newest: durable when this returns.
    pub fn store(&mut self, content: &[u8]) -> Result<(), StoreError> {
        let (number, slot) = match self.newest {
            Some((number, slot)) => (number + 1, 1 - slot),
            None => (1, 0),
        };
        let path = &self.paths[slot];
        let bytes = encode(number, content)
            .ok_or_else(|| StoreError::InvalidAppend(format!("{} too large", path.display())))?;
        let created = !path.exists();
        let file = OpenOptions::new()
            .create(true)
            .truncate(false)
            .write(true)
            .open(path)
            .map_err(|e| StoreError::io(path, e))?;
        file.write_all_at(&bytes, 0)
            .and_then(|()| file.sync_data())
            .map_err(|e| StoreError::io(path, e))?;
        if created {
            sync_dir(&self.dir)?;
        }
        self.newest = Some((number, slot));
        Ok(())
    }
}

fn encode(number: u64, content: &[u8]) -> Option<Vec<u8>> {
    let mut body = Vec::with_capacity(8 + content.len());
    body.extend_from_slice(&number.to_le_bytes());
    body.extend_from_slice(content);
    let mut bytes = frame(&body)?;
    bytes.resize(bytes.len().div_ceil(PAGE) * PAGE, 0);
    Some(bytes)
}

/// The number and content of a valid slot; `None` for anything else (torn, empty, foreign).
fn decode(bytes: &[u8]) -> Option<(u64, &[u8])> {
    let (body, _padding) = unframe(bytes).ok()?;
    let (number, content) = body.split_at_checked(8)?;
    Some((u64::from_le_bytes(number.try_into().ok()?), content))
}

#[cfg(test)]
mod tests {
    use super::*;

    const NAME: &str = "position";

    fn reopen(dir: &Path) -> Option<Vec<u8>> {
        SlotFile::open(dir, NAME).expect("open").1
    }

    fn slot_path(dir: &Path, slot: usize) -> PathBuf {
        dir.join(format!("{NAME}.{slot}"))
    }

    #[test]
    fn the_newest_stored_content_is_read_back_after_reopening() {
        let dir = tempfile::tempdir().expect("tempdir");
        let (mut file, none) = SlotFile::open(dir.path(), NAME).expect("open");
        assert_eq!(none, None);
        for i in 0..5u32 {
            let body = vec![i as u8; 100 + 3000 * i as usize];
            file.store(&body).expect("store");
            assert_eq!(reopen(dir.path()), Some(body));
        }
        // A reopened file goes on numbering from the newest slot.
        let (mut file, _) = SlotFile::open(dir.path(), NAME).expect("open");
        file.store(b"after reopening").expect("store");
        assert_eq!(reopen(dir.path()).as_deref(), Some(&b"after reopening"[..]));
        file.store(b"").expect("store");
        assert_eq!(reopen(dir.path()).as_deref(), Some(&b""[..]));
    }

    #[test]
    fn a_torn_store_leaves_the_previous_content() {
        let dir = tempfile::tempdir().expect("tempdir");
        let (mut file, _) = SlotFile::open(dir.path(), NAME).expect("open");
        file.store(b"first").expect("store");
        file.store(b"second").expect("store");
        file.store(b"third").expect("store");
        // "third" went to slot 0; tear it: its content no longer matches its checksum.
        let path = slot_path(dir.path(), 0);
        let mut bytes = fs::read(&path).expect("read");
        let header = 12 + 8;
        bytes[header + 1] ^= 0xff;
        fs::write(&path, &bytes).expect("tear");
        assert_eq!(reopen(dir.path()).as_deref(), Some(&b"second"[..]));
        // A slot cut short or zeroed is no content either.
        fs::write(&path, &bytes[..header + 2]).expect("cut");
        assert_eq!(reopen(dir.path()).as_deref(), Some(&b"second"[..]));
        fs::write(&path, vec![0u8; PAGE]).expect("zero");
        assert_eq!(reopen(dir.path()).as_deref(), Some(&b"second"[..]));
        // The next store overwrites the torn slot, not the good one.
        let (mut file, _) = SlotFile::open(dir.path(), NAME).expect("open");
        file.store(b"fourth").expect("store");
        assert_eq!(reopen(dir.path()).as_deref(), Some(&b"fourth"[..]));
        assert_eq!(
            decode(&fs::read(slot_path(dir.path(), 1)).expect("read")).map(|(_, b)| b.to_vec()),
            Some(b"second".to_vec())
        );
    }

    #[test]
    fn every_flipped_bit_and_every_cut_of_a_slot_is_refused() {
        let content: Vec<u8> = (0..300u32).map(|i| (i * 7 % 251) as u8).collect();
        let slot = encode(42, &content).expect("encode");
        assert_eq!(decode(&slot), Some((42, &content[..])));
        let used = 12 + 8 + content.len();
        for bit in 0..used * 8 {
            let mut flipped = slot.clone();
            flipped[bit / 8] ^= 1 << (bit % 8);
            assert_eq!(decode(&flipped), None, "bit {bit} flipped");
        }
        for cut in 0..used {
            assert_eq!(decode(&slot[..cut]), None, "cut at {cut}");
        }
        // The padding after the frame is not part of the content.
        let mut padded = slot.clone();
        padded[used] = 0xff;
        assert_eq!(decode(&padded), Some((42, &content[..])));
    }

    #[test]
    fn both_slots_torn_or_foreign_read_as_no_content() {
        let dir = tempfile::tempdir().expect("tempdir");
        fs::write(slot_path(dir.path(), 0), b"RFv1 but not a slot").expect("write");
        fs::write(slot_path(dir.path(), 1), b"").expect("write");
        assert_eq!(reopen(dir.path()), None);
    }
}
