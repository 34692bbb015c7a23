//! The test state machine: every applied payload appended to one file, with its position.
//!
//! Frame: `length u32 | CRC32C u32 | body`, body = `kind u8 (0 advance, 1 record) |
//! position length u32 | position | payload`. Opening cuts a torn tail; the last frame's
//! position is the applied position, so a record and its position are stored atomically.

use std::fs::{self, File, OpenOptions};
use std::io::{self, Read, Write};
use std::path::{Path, PathBuf};

use bytes::Bytes;
use riffle_replication::{Applied, SnapshotView, StateMachine};

const FILE: &str = "applied.log";

/// The append-only file state machine.
pub struct AppendFile {
    dir: PathBuf,
    file: File,
    len: u64,
    applied: Option<Applied>,
    records: Vec<(u64, Bytes)>,
}

impl AppendFile {
    /// Opens (creating) the state in `dir`.
    pub fn open(dir: &Path) -> io::Result<AppendFile> {
        fs::create_dir_all(dir)?;
        let path = dir.join(FILE);
        let bytes = match fs::read(&path) {
            Ok(b) => b,
            Err(e) if e.kind() == io::ErrorKind::NotFound => Vec::new(),
            Err(e) => return Err(e),
        };
        let (applied, records, valid) = scan(&bytes)?;
        let file = OpenOptions::new()
            .create(true)
            .append(true)
            .truncate(false)
            .open(&path)?;
        if valid < bytes.len() {
            file.set_len(valid as u64)?;
        }
        Ok(AppendFile {
            dir: dir.to_path_buf(),
            file,
            len: valid as u64,
            applied,
            records,
        })
    }

    /// Every applied record, in log order.
    pub fn records(&self) -> &[(u64, Bytes)] {
        &self.records
    }

    fn write_frame(&mut self, kind: u8, at: &Applied, payload: &[u8]) -> io::Result<()> {
        let position = at.encode();
        let mut body = Vec::with_capacity(5 + position.len() + payload.len());
        body.push(kind);
        body.extend_from_slice(&(position.len() as u32).to_le_bytes());
        body.extend_from_slice(&position);
        body.extend_from_slice(payload);
        let mut frame = Vec::with_capacity(8 + body.len());
        frame.extend_from_slice(&(body.len() as u32).to_le_bytes());
        frame.extend_from_slice(&crc32c::crc32c(&body).to_le_bytes());
        frame.extend_from_slice(&body);
        self.file.write_all(&frame)?;
        self.len += frame.len() as u64;
        self.applied = Some(at.clone());
        Ok(())
    }
}

type Scanned = (Option<Applied>, Vec<(u64, Bytes)>, usize);

fn scan(bytes: &[u8]) -> io::Result<Scanned> {
    let mut pos = 0;
    let mut applied = None;
    let mut records = Vec::new();
    while bytes.len() - pos >= 8 {
        let len = u32::from_le_bytes([bytes[pos], bytes[pos + 1], bytes[pos + 2], bytes[pos + 3]])
            as usize;
        let crc = u32::from_le_bytes([
            bytes[pos + 4],
            bytes[pos + 5],
            bytes[pos + 6],
            bytes[pos + 7],
        ]);
        if len < 5 || bytes.len() - pos - 8 < len {
            break;
        }
        let body = &bytes[pos + 8..pos + 8 + len];
        if crc32c::crc32c(body) != crc {
            break;
        }
        let plen = u32::from_le_bytes([body[1], body[2], body[3], body[4]]) as usize;
        if 5 + plen > body.len() {
            return Err(io::Error::other("bad frame"));
        }
        let at = Applied::decode(&body[5..5 + plen]).map_err(io::Error::other)?;
        if body[0] == 1 {
            let index = at.index().unwrap_or(0);
            records.push((index, Bytes::copy_from_slice(&body[5 + plen..])));
        }
        applied = Some(at);
        pos += 8 + len;
    }
    Ok((applied, records, pos))
}

impl StateMachine for AppendFile {
    fn applied(&self) -> Option<Applied> {
        self.applied.clone()
    }

    fn apply(&mut self, at: &Applied, command: &[u8]) -> io::Result<Vec<u8>> {
        self.write_frame(1, at, command)?;
        let index = at.index().unwrap_or(0);
        self.records.push((index, Bytes::copy_from_slice(command)));
        Ok(index.to_le_bytes().to_vec())
    }

    fn advance(&mut self, at: &Applied) -> io::Result<()> {
        self.write_frame(0, at, &[])
    }

    fn snapshot(&mut self) -> io::Result<SnapshotView> {
        let applied = self
            .applied
            .clone()
            .ok_or_else(|| io::Error::other("nothing applied yet"))?;
        // The file only grows, so its first `len` bytes are a stable view.
        let reader = File::open(self.dir.join(FILE))?.take(self.len);
        Ok(SnapshotView {
            applied,
            data: Box::new(reader),
            len: self.len,
        })
    }

    fn install(&mut self, at: &Applied, data: &mut dyn Read) -> io::Result<()> {
        let tmp = self.dir.join(format!("{FILE}.installing"));
        let mut out = File::create(&tmp)?;
        io::copy(data, &mut out)?;
        out.sync_all()?;
        drop(out);
        fs::rename(&tmp, self.dir.join(FILE))?;
        File::open(&self.dir)?.sync_all()?;
        let mut fresh = AppendFile::open(&self.dir)?;
        if fresh.applied.as_ref() != Some(at) {
            fresh.advance(at)?;
        }
        *self = fresh;
        Ok(())
    }
}
