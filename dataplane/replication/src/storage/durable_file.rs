//! Small files replaced atomically: write a temporary file, `fsync` it, rename it over the old
//! one, `fsync` the directory. A reader sees either the old or the new content, never a mix.
//!
//! Content is framed as `magic (4) | length u32 | CRC32C u32 | body`, so damage is detected
//! ([`frame`], [`unframe`]; the slot files of `slot_file` use the same frame).

use std::fs::{self, OpenOptions};
use std::io::{ErrorKind, Write};
use std::path::Path;

use crate::storage::StoreError;

const MAGIC: &[u8; 4] = b"RFv1";
const HEADER: usize = 12;

/// Atomically replaces `dir/name` with `body`, durable when this returns.
pub(crate) fn write(dir: &Path, name: &str, body: &[u8]) -> Result<(), StoreError> {
    let tmp = dir.join(format!("{name}.tmp"));
    let path = dir.join(name);
    let bytes =
        frame(body).ok_or_else(|| StoreError::InvalidAppend(format!("{name} body too large")))?;
    let mut file = OpenOptions::new()
        .create(true)
        .write(true)
        .truncate(true)
        .open(&tmp)
        .map_err(|e| StoreError::io(&tmp, e))?;
    file.write_all(&bytes)
        .map_err(|e| StoreError::io(&tmp, e))?;
    file.sync_all().map_err(|e| StoreError::io(&tmp, e))?;
    drop(file);
    fs::rename(&tmp, &path).map_err(|e| StoreError::io(&path, e))?;
    sync_dir(dir)
}

/// Reads `dir/name` as written by [`write`]; `None` if the file does not exist.
pub(crate) fn read(dir: &Path, name: &str) -> Result<Option<Vec<u8>>, StoreError> {
    let path = dir.join(name);
    let bytes = match fs::read(&path) {
        Ok(b) => b,
        Err(e) if e.kind() == ErrorKind::NotFound => return Ok(None),
        Err(e) => return Err(StoreError::io(&path, e)),
    };
    let (body, rest) = unframe(&bytes).map_err(|(at, why)| StoreError::corrupt(&path, at, why))?;
    if !rest.is_empty() {
        return Err(StoreError::corrupt(&path, 4, "length mismatch"));
    }
    Ok(Some(body.to_vec()))
}

/// `body` framed for a file: header, then the body; `None` if the body is too large.
pub(crate) fn frame(body: &[u8]) -> Option<Vec<u8>> {
    let len = u32::try_from(body.len()).ok()?;
    let mut bytes = Vec::with_capacity(HEADER + body.len());
    bytes.extend_from_slice(MAGIC);
    bytes.extend_from_slice(&len.to_le_bytes());
    bytes.extend_from_slice(&crc32c::crc32c(body).to_le_bytes());
    bytes.extend_from_slice(body);
    Some(bytes)
}

/// A frame's body and the bytes after the frame.
pub(crate) type Unframed<'a> = (&'a [u8], &'a [u8]);

/// The body of a frame at the start of `bytes`, and the bytes after it; or where and why the
/// frame is damaged.
pub(crate) fn unframe(bytes: &[u8]) -> Result<Unframed<'_>, (u64, &'static str)> {
    if bytes.len() < HEADER || &bytes[..4] != MAGIC {
        return Err((0, "bad header"));
    }
    let len = u32::from_le_bytes([bytes[4], bytes[5], bytes[6], bytes[7]]) as usize;
    let crc = u32::from_le_bytes([bytes[8], bytes[9], bytes[10], bytes[11]]);
    if bytes.len() - HEADER < len {
        return Err((4, "length mismatch"));
    }
    let (body, rest) = bytes[HEADER..].split_at(len);
    if crc32c::crc32c(body) != crc {
        return Err((8, "CRC mismatch"));
    }
    Ok((body, rest))
}

/// `fsync`s a directory so that creations, renames and deletions in it are durable.
pub(crate) fn sync_dir(dir: &Path) -> Result<(), StoreError> {
    riffle_disk::sync_dir(dir).map_err(|e| StoreError::io(dir, e))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn replaces_atomically_and_detects_damage() {
        let dir = tempfile::tempdir().expect("tempdir");
        assert_eq!(read(dir.path(), "f").expect("read"), None);
        write(dir.path(), "f", b"one").expect("write");
        write(dir.path(), "f", b"two!").expect("write");
        assert_eq!(read(dir.path(), "f").expect("read"), Some(b"two!".to_vec()));
        assert!(!dir.path().join("f.tmp").exists());

        let path = dir.path().join("f");
        let mut bytes = fs::read(&path).expect("read raw");
        let last = bytes.len() - 1;
        bytes[last] ^= 0x40;
        fs::write(&path, &bytes).expect("damage");
        assert!(matches!(
            read(dir.path(), "f"),
            Err(StoreError::Corrupt { .. })
        ));
    }
}
