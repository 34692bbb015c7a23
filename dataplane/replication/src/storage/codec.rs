//! The on-disk frame of one raft log entry.
//!
//! Layout (little-endian):
//!
//! ```text
//! offset size field
//!      0    4 body length in bytes (>= 25); zero marks never-written space
//!      4    4 CRC32C of the body
//!      8    8 index            \
//!     16    8 leader term       |
//!     24    8 leader node id    | body
//!     32    1 kind: 0 blank, 1 command, 2 membership
//!     33      payload: the command bytes, or the membership in CBOR
//! ```

use bytes::Bytes;
use openraft::EntryPayload;

use crate::storage::vote::u64_at;
use crate::types::{Command, Entry, log_id};

/// Bytes of the frame header (length and CRC).
pub(crate) const FRAME_HEADER: usize = 8;
/// Bytes of the fixed part of the body.
const BODY_FIXED: usize = 25;
/// Largest body accepted; anything larger in a length field is damage, not data.
pub(crate) const MAX_BODY: usize = 256 << 20;

const KIND_BLANK: u8 = 0;
const KIND_COMMAND: u8 = 1;
const KIND_MEMBERSHIP: u8 = 2;

/// Appends the frame of `entry` to `out`.
pub(crate) fn encode(entry: &Entry, out: &mut Vec<u8>) -> Result<(), String> {
    let start = out.len();
    out.extend_from_slice(&[0u8; FRAME_HEADER]);
    out.extend_from_slice(&entry.log_id.index.to_le_bytes());
    out.extend_from_slice(&entry.log_id.leader_id.term.to_le_bytes());
    out.extend_from_slice(&entry.log_id.leader_id.node_id.to_le_bytes());
    match &entry.payload {
        EntryPayload::Blank => out.push(KIND_BLANK),
        EntryPayload::Normal(command) => {
            out.push(KIND_COMMAND);
            out.extend_from_slice(&command.0);
        }
        EntryPayload::Membership(membership) => {
            out.push(KIND_MEMBERSHIP);
            ciborium::into_writer(membership, &mut *out).map_err(|e| e.to_string())?;
        }
    }
    let body_len = out.len() - start - FRAME_HEADER;
    if body_len > MAX_BODY {
        out.truncate(start);
        return Err(format!("entry of {body_len} bytes exceeds {MAX_BODY}"));
    }
    let crc = crc32c::crc32c(&out[start + FRAME_HEADER..]);
    out[start..start + 4].copy_from_slice(&(body_len as u32).to_le_bytes());
    out[start + 4..start + 8].copy_from_slice(&crc.to_le_bytes());
    Ok(())
}

/// The length and CRC of a frame header, or why it cannot start a frame.
pub(crate) fn parse_header(header: &[u8; FRAME_HEADER]) -> Result<(usize, u32), String> {
    let len = u32::from_le_bytes([header[0], header[1], header[2], header[3]]) as usize;
    let crc = u32::from_le_bytes([header[4], header[5], header[6], header[7]]);
    if len == 0 {
        return Err("zero-filled space".into());
    }
    if !(BODY_FIXED..=MAX_BODY).contains(&len) {
        return Err(format!("bad entry length {len}"));
    }
    Ok((len, crc))
}

/// Checks `body` against `crc` and returns the entry index it declares.
pub(crate) fn check_body(body: &[u8], crc: u32) -> Result<u64, String> {
    if crc32c::crc32c(body) != crc {
        return Err("CRC mismatch".into());
    }
    if body[24] > KIND_MEMBERSHIP {
        return Err(format!("bad entry kind {}", body[24]));
    }
    Ok(u64_at(body, 0))
}

/// Decodes a body that passed [`check_body`].
pub(crate) fn decode_body(body: &[u8]) -> Result<Entry, String> {
    let id = log_id(u64_at(body, 8), u64_at(body, 16), u64_at(body, 0));
    let rest = &body[BODY_FIXED..];
    let payload = match body[24] {
        KIND_BLANK if rest.is_empty() => EntryPayload::Blank,
        KIND_COMMAND => EntryPayload::Normal(Command(Bytes::copy_from_slice(rest))),
        KIND_MEMBERSHIP => EntryPayload::Membership(
            ciborium::from_reader(rest).map_err(|e| format!("bad membership: {e}"))?,
        ),
        kind => return Err(format!("bad entry kind {kind} with {} bytes", rest.len())),
    };
    Ok(Entry {
        log_id: id,
        payload,
    })
}

/// Decodes a whole frame (header and body) that is expected to be valid.
pub(crate) fn decode_frame(frame: &[u8]) -> Result<Entry, String> {
    if frame.len() < FRAME_HEADER {
        return Err("short frame".into());
    }
    let mut header = [0u8; FRAME_HEADER];
    header.copy_from_slice(&frame[..FRAME_HEADER]);
    let (len, crc) = parse_header(&header)?;
    if frame.len() != FRAME_HEADER + len {
        return Err("frame length mismatch".into());
    }
    let body = &frame[FRAME_HEADER..];
    check_body(body, crc)?;
    decode_body(body)
}
