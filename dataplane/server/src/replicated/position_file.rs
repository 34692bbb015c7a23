//! Where a replica stores its applied position: two slot files, `position.0` and
//! `position.1`, written in turn in place.
//!
//! Each slot holds `"RPOS" | u64 LE number | u32 LE length | u32 LE CRC32C | body`, zero-padded
//! to whole 4 KiB pages, where the CRC covers the number, the length and the body. A store
//! overwrites the slot that does not hold the newest position and `fdatasync`s it; once both
//! files exist, that is a plain data write of already-allocated pages, with no new file, rename
//! or directory sync, which is what makes a store cheap for the rest of the disk. Reading takes
//! the valid slot with the highest number. A store torn by a crash fails its CRC (or leaves an
//! older position whole), and the other slot still holds the previous position, which is
//! never newer than what the logs hold.
//!
//! Earlier builds kept the position in one file, `position.cbor`, replaced by rename. A
//! directory with no valid slot is read from that file if it is there, and the first store
//! into a slot removes it.

use std::fs::{self, OpenOptions};
use std::io;
use std::os::unix::fs::FileExt;
use std::path::{Path, PathBuf};

use crate::streams::store;

const SLOTS: [&str; 2] = ["position.0", "position.1"];
/// The single-file position of earlier builds (the body alone).
const LEGACY: &str = "position.cbor";
const MAGIC: &[u8; 4] = b"RPOS";
const HEADER: usize = 4 + 8 + 4 + 4;
const PAGE: usize = 4096;

/// The pair of slot files in a replica directory.
pub struct PositionFile {
    dir: PathBuf,
    /// Number of the newest valid position and the slot holding it.
    newest: Option<(u64, usize)>,
    /// Whether an earlier build's `position.cbor` is still there, to remove after a store.
    legacy: bool,
}

impl PositionFile {
    /// Opens the slots in `dir` and returns the newest valid position's bytes, if any.
    pub fn open(dir: &Path) -> io::Result<(PositionFile, Option<Vec<u8>>)> {
        let mut newest: Option<(u64, usize, Vec<u8>)> = None;
        for (slot, name) in SLOTS.iter().enumerate() {
            let bytes = match fs::read(dir.join(name)) {
                Ok(bytes) => bytes,
                Err(e) if e.kind() == io::ErrorKind::NotFound => continue,
                Err(e) => return Err(e),
            };
            if let Some((number, body)) = decode(&bytes)
                && newest.as_ref().is_none_or(|(n, _, _)| number > *n)
            {
                newest = Some((number, slot, body.to_vec()));
            }
        }
        let legacy = match fs::read(dir.join(LEGACY)) {
            Ok(bytes) => Some(bytes),
            Err(e) if e.kind() == io::ErrorKind::NotFound => None,
            Err(e) => return Err(e),
        };
        let file = PositionFile {
            dir: dir.to_path_buf(),
            newest: newest.as_ref().map(|(number, slot, _)| (*number, *slot)),
            legacy: legacy.is_some(),
        };
        let body = newest.map(|(_, _, body)| body).or(legacy);
        Ok((file, body))
    }

    /// Stores `body` as the newest position: durable when this returns.
    pub fn store(&mut self, body: &[u8]) -> io::Result<()> {
        let (number, slot) = match self.newest {
            Some((number, slot)) => (number + 1, 1 - slot),
            None => (1, 0),
        };
        let path = self.dir.join(SLOTS[slot]);
        let created = !path.exists();
        let file = OpenOptions::new()
            .create(true)
            .truncate(false)
            .write(true)
            .open(&path)?;
        file.write_all_at(&encode(number, body), 0)?;
        file.sync_data()?;
        if self.legacy {
            fs::remove_file(self.dir.join(LEGACY))?;
        }
        if created || self.legacy {
            store::sync_dir(&self.dir)?;
        }
        self.newest = Some((number, slot));
        self.legacy = false;
        Ok(())
    }
}

fn checksum(number: u64, body: &[u8]) -> u32 {
    let mut covered = Vec::with_capacity(12 + body.len());
    covered.extend_from_slice(&number.to_le_bytes());
    covered.extend_from_slice(&(body.len() as u32).to_le_bytes());
    covered.extend_from_slice(body);
    crc32c::crc32c(&covered)
}

fn encode(number: u64, body: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity((HEADER + body.len()).div_ceil(PAGE) * PAGE);
    out.extend_from_slice(MAGIC);
    out.extend_from_slice(&number.to_le_bytes());
    out.extend_from_slice(&(body.len() as u32).to_le_bytes());
    out.extend_from_slice(&checksum(number, body).to_le_bytes());
    out.extend_from_slice(body);
    out.resize(out.len().div_ceil(PAGE) * PAGE, 0);
    out
}

/// The number and body of a valid slot; `None` for anything else (torn, empty, foreign).
fn decode(bytes: &[u8]) -> Option<(u64, &[u8])> {
    if bytes.len() < HEADER || &bytes[..4] != MAGIC {
        return None;
    }
    let number = u64::from_le_bytes(bytes[4..12].try_into().ok()?);
    let len = u32::from_le_bytes(bytes[12..16].try_into().ok()?) as usize;
    let crc = u32::from_le_bytes(bytes[16..20].try_into().ok()?);
    let body = bytes.get(HEADER..HEADER.checked_add(len)?)?;
    (checksum(number, body) == crc).then_some((number, body))
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
        for i in 0..5u32 {
            let body = vec![i as u8; 100 + 3000 * i as usize];
            file.store(&body).unwrap();
            assert_eq!(reopen(dir.path()), Some(body));
        }
        // A reopened file goes on numbering from the newest slot.
        let (mut file, _) = PositionFile::open(dir.path()).unwrap();
        file.store(b"after reopening").unwrap();
        assert_eq!(reopen(dir.path()).as_deref(), Some(&b"after reopening"[..]));
        file.store(b"").unwrap();
        assert_eq!(reopen(dir.path()).as_deref(), Some(&b""[..]));
    }

    #[test]
    fn a_torn_store_leaves_the_previous_position() {
        let dir = tempfile::tempdir().unwrap();
        let (mut file, _) = PositionFile::open(dir.path()).unwrap();
        file.store(b"first").unwrap();
        file.store(b"second").unwrap();
        file.store(b"third").unwrap();
        // "third" went to slot 0; tear it: its body no longer matches its checksum.
        let path = dir.path().join(SLOTS[0]);
        let mut bytes = fs::read(&path).unwrap();
        bytes[HEADER + 1] ^= 0xff;
        fs::write(&path, &bytes).unwrap();
        assert_eq!(reopen(dir.path()).as_deref(), Some(&b"second"[..]));
        // A slot cut short or zeroed is no position either.
        fs::write(&path, &bytes[..HEADER + 2]).unwrap();
        assert_eq!(reopen(dir.path()).as_deref(), Some(&b"second"[..]));
        fs::write(&path, vec![0u8; PAGE]).unwrap();
        assert_eq!(reopen(dir.path()).as_deref(), Some(&b"second"[..]));
        // The next store overwrites the torn slot, not the good one.
        let (mut file, _) = PositionFile::open(dir.path()).unwrap();
        file.store(b"fourth").unwrap();
        assert_eq!(reopen(dir.path()).as_deref(), Some(&b"fourth"[..]));
        assert_eq!(
            decode(&fs::read(dir.path().join(SLOTS[1])).unwrap()).map(|(_, b)| b.to_vec()),
            Some(b"second".to_vec())
        );
    }

    #[test]
    fn every_flipped_bit_and_every_cut_of_a_slot_is_refused() {
        let body: Vec<u8> = (0..300u32).map(|i| (i * 7 % 251) as u8).collect();
        let slot = encode(42, &body);
        assert_eq!(decode(&slot), Some((42, &body[..])));
        let used = HEADER + body.len();
        for bit in 0..used * 8 {
            let mut flipped = slot.clone();
            flipped[bit / 8] ^= 1 << (bit % 8);
            assert_eq!(decode(&flipped), None, "bit {bit} flipped");
        }
        for cut in 0..used {
            assert_eq!(decode(&slot[..cut]), None, "cut at {cut}");
        }
        // The padding after the body is not part of the position.
        let mut padded = slot.clone();
        padded[used] = 0xff;
        assert_eq!(decode(&padded), Some((42, &body[..])));
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

    #[test]
    fn both_slots_torn_or_foreign_read_as_no_position() {
        let dir = tempfile::tempdir().unwrap();
        fs::write(dir.path().join(SLOTS[0]), b"RPOS but not a position").unwrap();
        fs::write(dir.path().join(SLOTS[1]), b"").unwrap();
        assert_eq!(reopen(dir.path()), None);
    }
}
