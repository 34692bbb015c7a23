//! The wire format of raft traffic: one request and its reply at a time on a TCP connection.
//!
//! - Request: `u32 LE length of the rest | u8 kind | u64 LE sender id | body`.
//! - Reply: `u32 LE length of the rest | u8 status | body`.
//!
//! Bodies are CBOR: the openraft request, and the openraft `Result` for an [`Status::Ok`]
//! reply; an install-snapshot request is `u32 LE CBOR length | CBOR header | raw chunk data`;
//! a refused request's body is the reason in UTF-8. A frame longer than
//! [`MAX_MESSAGE_BYTES`] is refused and its connection closed.

use std::io;

use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};

use crate::types::NodeId;

/// Largest frame accepted: a batch of entries or a snapshot chunk, with room to spare.
pub(crate) const MAX_MESSAGE_BYTES: usize = 64 << 20;

/// An enum sent as one byte: its discriminants are its bytes, and `from_byte` reads one back.
macro_rules! wire_byte {
    ($(#[$meta:meta])* $name:ident { $($(#[$doc:meta])* $variant:ident = $byte:literal,)* }) => {
        $(#[$meta])*
        #[derive(Debug, Clone, Copy, PartialEq, Eq)]
        pub(crate) enum $name {
            $($(#[$doc])* $variant = $byte,)*
        }

        impl $name {
            fn from_byte(byte: u8) -> Option<$name> {
                match byte {
                    $($byte => Some($name::$variant),)*
                    _ => None,
                }
            }
        }
    };
}

wire_byte! {
    /// What a request asks.
    Kind {
        AppendEntries = 1,
        Vote = 2,
        InstallSnapshot = 3,
        /// Whether the receiver is part of a group, and its term.
        Probe = 4,
    }
}

wire_byte! {
    /// How a request was answered.
    Status {
        /// Answered by raft; the body is its CBOR result.
        Ok = 0,
        /// Dropped by the fault switch (tests).
        Blocked = 1,
        /// The receiver cannot take it now (e.g. a vote in a term it may already have voted in).
        Unavailable = 2,
        /// Not a request this receiver understands.
        Invalid = 3,
    }
}

/// A request as received; `kind` is `None` for a kind this version does not know.
pub(crate) struct Request {
    pub kind: Option<Kind>,
    pub from: NodeId,
    pub body: Vec<u8>,
}

fn too_large(len: usize) -> io::Error {
    io::Error::new(
        io::ErrorKind::InvalidData,
        format!("a {len}-byte message exceeds the {MAX_MESSAGE_BYTES}-byte limit"),
    )
}

/// Reads one length-prefixed frame as its `H`-byte head and its body; `None` at a clean end of
/// stream before it.
async fn read_frame<const H: usize, R: AsyncRead + Unpin>(
    reader: &mut R,
) -> io::Result<Option<([u8; H], Vec<u8>)>> {
    let mut len = [0u8; 4];
    match reader.read_exact(&mut len).await {
        Ok(_) => {}
        Err(e) if e.kind() == io::ErrorKind::UnexpectedEof => return Ok(None),
        Err(e) => return Err(e),
    }
    let len = u32::from_le_bytes(len) as usize;
    if len > MAX_MESSAGE_BYTES {
        return Err(too_large(len));
    }
    let Some(body_len) = len.checked_sub(H) else {
        return Err(io::Error::new(
            io::ErrorKind::InvalidData,
            "a message shorter than its header",
        ));
    };
    let mut head = [0u8; H];
    reader.read_exact(&mut head).await?;
    // Grown as the bytes arrive: a length alone does not make the receiver allocate 64 MiB.
    let mut body = Vec::with_capacity(body_len.min(READ_AHEAD_BYTES));
    reader.take(body_len as u64).read_to_end(&mut body).await?;
    if body.len() < body_len {
        return Err(io::Error::new(
            io::ErrorKind::UnexpectedEof,
            "the connection closed inside a message",
        ));
    }
    Ok(Some((head, body)))
}

/// A message's body buffer starts this large and grows as its bytes arrive.
const READ_AHEAD_BYTES: usize = 1 << 20;

/// Frames up to this size are copied into one buffer and sent in one write; larger ones are
/// sent part by part rather than copied.
const COPY_BELOW_BYTES: usize = 64 << 10;

/// Writes `head` and `parts` as one frame.
async fn write_frame<W: AsyncWrite + Unpin>(
    writer: &mut W,
    head: &[u8],
    parts: &[&[u8]],
) -> io::Result<()> {
    let len = head.len() + parts.iter().map(|p| p.len()).sum::<usize>();
    if len > MAX_MESSAGE_BYTES {
        return Err(too_large(len));
    }
    let mut frame = Vec::with_capacity(4 + len.min(COPY_BELOW_BYTES));
    frame.extend_from_slice(&(len as u32).to_le_bytes());
    frame.extend_from_slice(head);
    if len < COPY_BELOW_BYTES {
        for part in parts {
            frame.extend_from_slice(part);
        }
        writer.write_all(&frame).await?;
    } else {
        writer.write_all(&frame).await?;
        for part in parts {
            writer.write_all(part).await?;
        }
    }
    writer.flush().await
}

/// Sends a request whose body is `parts`, concatenated.
pub(crate) async fn write_request<W: AsyncWrite + Unpin>(
    writer: &mut W,
    kind: Kind,
    from: NodeId,
    parts: &[&[u8]],
) -> io::Result<()> {
    let mut head = [0u8; 9];
    head[0] = kind as u8;
    head[1..].copy_from_slice(&from.to_le_bytes());
    write_frame(writer, &head, parts).await
}

/// Receives a request; `None` when the peer closed the connection between requests.
pub(crate) async fn read_request<R: AsyncRead + Unpin>(
    reader: &mut R,
) -> io::Result<Option<Request>> {
    let Some((head, body)) = read_frame::<9, _>(reader).await? else {
        return Ok(None);
    };
    let mut from = [0u8; 8];
    from.copy_from_slice(&head[1..]);
    Ok(Some(Request {
        kind: Kind::from_byte(head[0]),
        from: u64::from_le_bytes(from),
        body,
    }))
}

/// Sends a reply.
pub(crate) async fn write_reply<W: AsyncWrite + Unpin>(
    writer: &mut W,
    status: Status,
    body: &[u8],
) -> io::Result<()> {
    write_frame(writer, &[status as u8], &[body]).await
}

/// Receives a reply.
pub(crate) async fn read_reply<R: AsyncRead + Unpin>(
    reader: &mut R,
) -> io::Result<(Status, Vec<u8>)> {
    let ([status], body) = read_frame::<1, _>(reader)
        .await?
        .ok_or_else(|| io::Error::new(io::ErrorKind::UnexpectedEof, "connection closed"))?;
    let status = Status::from_byte(status)
        .ok_or_else(|| io::Error::new(io::ErrorKind::InvalidData, "a reply of unknown status"))?;
    Ok((status, body))
}

/// An install-snapshot body: the CBOR header, then the chunk's raw data.
pub(crate) fn snapshot_prefix(cbor: &[u8]) -> [u8; 4] {
    (cbor.len() as u32).to_le_bytes()
}

/// Splits an install-snapshot body into its CBOR header and data.
pub(crate) fn split_snapshot(body: &[u8]) -> Option<(&[u8], &[u8])> {
    let len = u32::from_le_bytes(body.get(..4)?.try_into().ok()?) as usize;
    let rest = &body[4..];
    (len <= rest.len()).then(|| rest.split_at(len))
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]

    use super::*;

    #[tokio::test]
    async fn requests_and_replies_read_back_as_written() {
        let mut wire = Vec::new();
        write_request(&mut wire, Kind::Vote, 7, &[b"ab", b"cd"])
            .await
            .unwrap();
        write_reply(&mut wire, Status::Unavailable, b"no")
            .await
            .unwrap();
        let mut reader = &wire[..];
        let request = read_request(&mut reader).await.unwrap().unwrap();
        assert_eq!(request.kind, Some(Kind::Vote));
        assert_eq!(request.from, 7);
        assert_eq!(request.body, b"abcd");
        let (status, body) = read_reply(&mut reader).await.unwrap();
        assert_eq!(status, Status::Unavailable);
        assert_eq!(body, b"no");
        assert!(read_request(&mut reader).await.unwrap().is_none());
    }

    #[tokio::test]
    async fn an_unknown_kind_is_read_and_a_truncated_or_huge_frame_is_an_error() {
        let mut wire = Vec::new();
        write_request(&mut wire, Kind::Probe, 1, &[]).await.unwrap();
        wire[4] = 200;
        let request = read_request(&mut &wire[..]).await.unwrap().unwrap();
        assert_eq!(request.kind, None);

        let cut = &wire[..wire.len() - 1];
        assert!(read_request(&mut &cut[..]).await.is_err());

        let huge = ((MAX_MESSAGE_BYTES + 1) as u32).to_le_bytes();
        let error = read_request(&mut &huge[..]).await.err().unwrap();
        assert!(error.to_string().contains("exceeds"), "{error}");
    }

    #[tokio::test]
    async fn a_large_frame_sent_in_parts_reads_back_whole() {
        let big = vec![7u8; COPY_BELOW_BYTES * 2];
        let mut wire = Vec::new();
        write_request(&mut wire, Kind::AppendEntries, 3, &[b"x", &big])
            .await
            .unwrap();
        let request = read_request(&mut &wire[..]).await.unwrap().unwrap();
        assert_eq!(request.body.len(), big.len() + 1);
        assert_eq!(request.body[0], b'x');
        assert!(request.body[1..].iter().all(|&b| b == 7));
    }

    #[tokio::test]
    async fn the_fuzzing_hook_decodes_a_real_request_and_refuses_garbage() {
        use openraft::raft::VoteRequest;

        use crate::types::{TypeConfig, Vote};

        let cbor =
            crate::network::encode(&VoteRequest::<TypeConfig>::new(Vote::new(3, 1), None)).unwrap();
        let mut wire = Vec::new();
        write_request(&mut wire, Kind::Vote, 1, &[&cbor])
            .await
            .unwrap();
        let (request, _) = crate::network::decode_untrusted(&wire);
        assert_eq!(request, Ok(()));

        wire[4] = Kind::AppendEntries as u8;
        let (request, _) = crate::network::decode_untrusted(&wire);
        assert!(request.is_err(), "a vote read as AppendEntries decoded");
        let (request, reply) = crate::network::decode_untrusted(b"\xff\xff\xff\xff garbage");
        assert!(request.is_err() && reply.is_err());
    }

    #[test]
    fn a_snapshot_body_splits_into_header_and_data() {
        let mut body = snapshot_prefix(b"head").to_vec();
        body.extend_from_slice(b"head");
        body.extend_from_slice(b"data");
        assert_eq!(split_snapshot(&body), Some((&b"head"[..], &b"data"[..])));
        assert_eq!(split_snapshot(&body[..6]), None);
    }
}
