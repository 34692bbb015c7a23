//! The `application/vnd.amazon.eventstream` framing used by SubscribeToShard.
//!
//! A message is a 12-byte prelude (total length, headers length, CRC32 of those eight bytes,
//! all big-endian), the headers, the payload and a CRC32 of everything before it. Each header is
//! a one-byte name length, the name, a type byte and a type-specific value.

use bytes::Bytes;

/// `Content-Type` of an event-stream response.
pub const CONTENT_TYPE: &str = "application/vnd.amazon.eventstream";

/// Prelude (12 bytes) plus message CRC (4 bytes).
const OVERHEAD: usize = 16;
/// The largest message the AWS event-stream implementations accept.
pub const MAX_MESSAGE_LEN: usize = 16 * 1024 * 1024;
/// The largest headers section the AWS event-stream implementations accept.
pub const MAX_HEADERS_LEN: usize = 128 * 1024;

/// A header value, one variant per wire type.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum HeaderValue {
    /// Types 0 (true) and 1 (false).
    Bool(bool),
    /// Type 2.
    Byte(i8),
    /// Type 3.
    Short(i16),
    /// Type 4.
    Int(i32),
    /// Type 5.
    Long(i64),
    /// Type 6, at most 65,535 bytes.
    Bytes(Bytes),
    /// Type 7, at most 65,535 bytes of UTF-8.
    String(String),
    /// Type 8, epoch milliseconds.
    Timestamp(i64),
    /// Type 9.
    Uuid([u8; 16]),
}

impl HeaderValue {
    /// The string, if this is a string header.
    pub fn as_str(&self) -> Option<&str> {
        match self {
            HeaderValue::String(s) => Some(s),
            _ => None,
        }
    }
}

impl From<&str> for HeaderValue {
    fn from(s: &str) -> Self {
        HeaderValue::String(s.to_owned())
    }
}

/// A decoded message.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Message {
    /// Headers in wire order.
    pub headers: Vec<(String, HeaderValue)>,
    /// The payload.
    pub payload: Bytes,
}

impl Message {
    /// The first header called `name`.
    pub fn header(&self, name: &str) -> Option<&HeaderValue> {
        self.headers.iter().find(|(n, _)| n == name).map(|(_, v)| v)
    }

    /// The first string header called `name`.
    pub fn header_str(&self, name: &str) -> Option<&str> {
        self.header(name).and_then(HeaderValue::as_str)
    }
}

/// Why a message could not be encoded or decoded.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum EventStreamError {
    /// The buffer holds only part of a message; `needed` bytes in all are required (0 when even
    /// the prelude is incomplete).
    #[error("incomplete message: {needed} bytes needed")]
    Incomplete {
        /// Total bytes the message needs, once the prelude is known.
        needed: usize,
    },
    /// The prelude CRC does not match.
    #[error("prelude checksum mismatch: expected {expected:#010x}, computed {computed:#010x}")]
    PreludeChecksum {
        /// The CRC in the message.
        expected: u32,
        /// The CRC of the received bytes.
        computed: u32,
    },
    /// The message CRC does not match.
    #[error("message checksum mismatch: expected {expected:#010x}, computed {computed:#010x}")]
    MessageChecksum {
        /// The CRC in the message.
        expected: u32,
        /// The CRC of the received bytes.
        computed: u32,
    },
    /// A length or header is out of bounds or malformed.
    #[error("invalid message: {0}")]
    Invalid(&'static str),
}

/// Frames one message.
///
/// Fails only when a header name exceeds 255 bytes, a string or bytes value 65,535 bytes, or the
/// message the limits above.
pub fn encode_message(
    headers: &[(&str, HeaderValue)],
    payload: &[u8],
) -> Result<Vec<u8>, EventStreamError> {
    let mut header_bytes = Vec::with_capacity(headers.len() * 32);
    for (name, value) in headers {
        encode_header(name, value, &mut header_bytes)?;
    }
    if header_bytes.len() > MAX_HEADERS_LEN {
        return Err(EventStreamError::Invalid("headers too long"));
    }
    let total = OVERHEAD + header_bytes.len() + payload.len();
    if total > MAX_MESSAGE_LEN {
        return Err(EventStreamError::Invalid("message too long"));
    }
    let mut out = Vec::with_capacity(total);
    // Both fit in u32: bounded by MAX_MESSAGE_LEN above.
    out.extend_from_slice(&(total as u32).to_be_bytes());
    out.extend_from_slice(&(header_bytes.len() as u32).to_be_bytes());
    let prelude_crc = crc32fast::hash(&out);
    out.extend_from_slice(&prelude_crc.to_be_bytes());
    out.extend_from_slice(&header_bytes);
    out.extend_from_slice(payload);
    let message_crc = crc32fast::hash(&out);
    out.extend_from_slice(&message_crc.to_be_bytes());
    Ok(out)
}

fn encode_header(
    name: &str,
    value: &HeaderValue,
    out: &mut Vec<u8>,
) -> Result<(), EventStreamError> {
    let name_len =
        u8::try_from(name.len()).map_err(|_| EventStreamError::Invalid("header name too long"))?;
    if name_len == 0 {
        return Err(EventStreamError::Invalid("empty header name"));
    }
    out.push(name_len);
    out.extend_from_slice(name.as_bytes());
    match value {
        HeaderValue::Bool(true) => out.push(0),
        HeaderValue::Bool(false) => out.push(1),
        HeaderValue::Byte(b) => {
            out.push(2);
            out.extend_from_slice(&b.to_be_bytes());
        }
        HeaderValue::Short(s) => {
            out.push(3);
            out.extend_from_slice(&s.to_be_bytes());
        }
        HeaderValue::Int(i) => {
            out.push(4);
            out.extend_from_slice(&i.to_be_bytes());
        }
        HeaderValue::Long(l) => {
            out.push(5);
            out.extend_from_slice(&l.to_be_bytes());
        }
        HeaderValue::Bytes(b) => {
            out.push(6);
            write_u16_prefixed(b, out)?;
        }
        HeaderValue::String(s) => {
            out.push(7);
            write_u16_prefixed(s.as_bytes(), out)?;
        }
        HeaderValue::Timestamp(t) => {
            out.push(8);
            out.extend_from_slice(&t.to_be_bytes());
        }
        HeaderValue::Uuid(u) => {
            out.push(9);
            out.extend_from_slice(u);
        }
    }
    Ok(())
}

fn write_u16_prefixed(data: &[u8], out: &mut Vec<u8>) -> Result<(), EventStreamError> {
    let len = u16::try_from(data.len())
        .map_err(|_| EventStreamError::Invalid("header value too long"))?;
    out.extend_from_slice(&len.to_be_bytes());
    out.extend_from_slice(data);
    Ok(())
}

/// Decodes the message at the start of `buf`, checking both CRCs, and returns it with the
/// number of bytes it took. A buffer holding only part of a message is
/// [`EventStreamError::Incomplete`]: read more and try again.
pub fn decode_message(buf: &[u8]) -> Result<(Message, usize), EventStreamError> {
    let Some(prelude) = buf.get(..12) else {
        return Err(EventStreamError::Incomplete { needed: 0 });
    };
    let total = u32::from_be_bytes([prelude[0], prelude[1], prelude[2], prelude[3]]) as usize;
    let headers_len = u32::from_be_bytes([prelude[4], prelude[5], prelude[6], prelude[7]]) as usize;
    let expected = u32::from_be_bytes([prelude[8], prelude[9], prelude[10], prelude[11]]);
    let computed = crc32fast::hash(&prelude[..8]);
    if expected != computed {
        return Err(EventStreamError::PreludeChecksum { expected, computed });
    }
    if !(OVERHEAD..=MAX_MESSAGE_LEN).contains(&total) {
        return Err(EventStreamError::Invalid("total length out of range"));
    }
    if headers_len > MAX_HEADERS_LEN || headers_len > total - OVERHEAD {
        return Err(EventStreamError::Invalid("headers length out of range"));
    }
    let Some(message) = buf.get(..total) else {
        return Err(EventStreamError::Incomplete { needed: total });
    };
    let (body, crc) = message.split_at(total - 4);
    let expected = u32::from_be_bytes([crc[0], crc[1], crc[2], crc[3]]);
    let computed = crc32fast::hash(body);
    if expected != computed {
        return Err(EventStreamError::MessageChecksum { expected, computed });
    }
    let headers = decode_headers(&body[12..12 + headers_len])?;
    let payload = Bytes::copy_from_slice(&body[12 + headers_len..]);
    Ok((Message { headers, payload }, total))
}

fn decode_headers(mut buf: &[u8]) -> Result<Vec<(String, HeaderValue)>, EventStreamError> {
    fn take<'a>(buf: &mut &'a [u8], n: usize) -> Result<&'a [u8], EventStreamError> {
        if buf.len() < n {
            return Err(EventStreamError::Invalid("truncated header"));
        }
        let (head, rest) = buf.split_at(n);
        *buf = rest;
        Ok(head)
    }
    fn array<const N: usize>(buf: &mut &[u8]) -> Result<[u8; N], EventStreamError> {
        let mut out = [0u8; N];
        out.copy_from_slice(take(buf, N)?);
        Ok(out)
    }
    fn prefixed<'a>(buf: &mut &'a [u8]) -> Result<&'a [u8], EventStreamError> {
        let len = u16::from_be_bytes(array(buf)?);
        take(buf, len.into())
    }

    let mut headers = Vec::new();
    while !buf.is_empty() {
        let name_len = take(&mut buf, 1)?[0];
        if name_len == 0 {
            return Err(EventStreamError::Invalid("empty header name"));
        }
        let name = std::str::from_utf8(take(&mut buf, name_len.into())?)
            .map_err(|_| EventStreamError::Invalid("header name is not UTF-8"))?
            .to_owned();
        let value = match take(&mut buf, 1)?[0] {
            0 => HeaderValue::Bool(true),
            1 => HeaderValue::Bool(false),
            2 => HeaderValue::Byte(i8::from_be_bytes(array(&mut buf)?)),
            3 => HeaderValue::Short(i16::from_be_bytes(array(&mut buf)?)),
            4 => HeaderValue::Int(i32::from_be_bytes(array(&mut buf)?)),
            5 => HeaderValue::Long(i64::from_be_bytes(array(&mut buf)?)),
            6 => HeaderValue::Bytes(Bytes::copy_from_slice(prefixed(&mut buf)?)),
            7 => HeaderValue::String(
                std::str::from_utf8(prefixed(&mut buf)?)
                    .map_err(|_| EventStreamError::Invalid("string header is not UTF-8"))?
                    .to_owned(),
            ),
            8 => HeaderValue::Timestamp(i64::from_be_bytes(array(&mut buf)?)),
            9 => HeaderValue::Uuid(array(&mut buf)?),
            _ => return Err(EventStreamError::Invalid("unknown header type")),
        };
        headers.push((name, value));
    }
    Ok(headers)
}

/// An event: `:message-type` `event`, `:event-type`, `:content-type`.
pub fn event(
    event_type: &str,
    content_type: &str,
    payload: &[u8],
) -> Result<Vec<u8>, EventStreamError> {
    encode_message(
        &[
            (":message-type", "event".into()),
            (":event-type", event_type.into()),
            (":content-type", content_type.into()),
        ],
        payload,
    )
}

/// A modeled exception (e.g. `ResourceNotFoundException`): `:message-type` `exception`,
/// `:exception-type`, `:content-type`. The payload is the error body in the stream's format.
pub fn exception(
    exception_type: &str,
    content_type: &str,
    payload: &[u8],
) -> Result<Vec<u8>, EventStreamError> {
    encode_message(
        &[
            (":message-type", "exception".into()),
            (":exception-type", exception_type.into()),
            (":content-type", content_type.into()),
        ],
        payload,
    )
}

/// An unmodeled error: `:message-type` `error`, `:error-code`, `:error-message`, no payload.
pub fn error(code: &str, message: &str) -> Result<Vec<u8>, EventStreamError> {
    encode_message(
        &[
            (":message-type", "error".into()),
            (":error-code", code.into()),
            (":error-message", message.into()),
        ],
        &[],
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    // Known-good frames from the AWS C event-stream library's tests.
    const EMPTY: [u8; 16] = [
        0x00, 0x00, 0x00, 0x10, 0x00, 0x00, 0x00, 0x00, 0x05, 0xc2, 0x48, 0xeb, 0x7d, 0x98, 0xc8,
        0xff,
    ];
    const PAYLOAD_ONLY: [u8; 29] = [
        0x00, 0x00, 0x00, 0x1D, 0x00, 0x00, 0x00, 0x00, 0xfd, 0x52, 0x8c, 0x5a, 0x7b, 0x27, 0x66,
        0x6f, 0x6f, 0x27, 0x3a, 0x27, 0x62, 0x61, 0x72, 0x27, 0x7d, 0xc3, 0x65, 0x39, 0x36,
    ];

    fn one_header_vector() -> Vec<u8> {
        let mut v = vec![
            0x00, 0x00, 0x00, 0x3D, 0x00, 0x00, 0x00, 0x20, 0x07, 0xFD, 0x83, 0x96, 0x0C,
        ];
        v.extend_from_slice(b"content-type");
        v.extend_from_slice(&[0x07, 0x00, 0x10]);
        v.extend_from_slice(b"application/json");
        v.extend_from_slice(b"{'foo':'bar'}");
        v.extend_from_slice(&[0x8D, 0x9C, 0x08, 0xB1]);
        v
    }

    #[test]
    fn encodes_known_vectors() {
        assert_eq!(encode_message(&[], b"").unwrap(), EMPTY);
        assert_eq!(encode_message(&[], b"{'foo':'bar'}").unwrap(), PAYLOAD_ONLY);
        assert_eq!(
            encode_message(
                &[("content-type", "application/json".into())],
                b"{'foo':'bar'}"
            )
            .unwrap(),
            one_header_vector()
        );
    }

    #[test]
    fn decodes_known_vectors() {
        let (m, used) = decode_message(&EMPTY).unwrap();
        assert_eq!((m.headers.len(), m.payload.len(), used), (0, 0, 16));
        let (m, used) = decode_message(&PAYLOAD_ONLY).unwrap();
        assert_eq!((&m.payload[..], used), (&b"{'foo':'bar'}"[..], 29));
        let vector = one_header_vector();
        let (m, used) = decode_message(&vector).unwrap();
        assert_eq!(used, 0x3D);
        assert_eq!(m.header_str("content-type"), Some("application/json"));
        assert_eq!(&m.payload[..], b"{'foo':'bar'}");
    }

    #[test]
    fn all_header_types_round_trip() {
        let headers = [
            ("t", HeaderValue::Bool(true)),
            ("f", HeaderValue::Bool(false)),
            ("b", HeaderValue::Byte(-3)),
            ("s", HeaderValue::Short(-300)),
            ("i", HeaderValue::Int(70_000)),
            ("l", HeaderValue::Long(-5_000_000_000)),
            ("y", HeaderValue::Bytes(Bytes::from_static(b"\x00\x01"))),
            ("str", HeaderValue::String("héllo".into())),
            ("ts", HeaderValue::Timestamp(1_700_000_000_123)),
            ("u", HeaderValue::Uuid([7; 16])),
        ];
        let frame = encode_message(&headers, b"payload").unwrap();
        let (m, used) = decode_message(&frame).unwrap();
        assert_eq!(used, frame.len());
        assert_eq!(&m.payload[..], b"payload");
        let expected: Vec<(String, HeaderValue)> = headers
            .iter()
            .map(|(n, v)| (n.to_string(), v.clone()))
            .collect();
        assert_eq!(m.headers, expected);
    }

    #[test]
    fn every_flipped_byte_is_detected() {
        let frame = event(
            "SubscribeToShardEvent",
            "application/json",
            b"{\"Records\":[]}",
        )
        .unwrap();
        for i in 0..frame.len() {
            let mut corrupt = frame.clone();
            corrupt[i] ^= 0x01;
            assert!(
                decode_message(&corrupt).is_err(),
                "flip at byte {i} went unnoticed"
            );
        }
        let mut corrupt = frame.clone();
        corrupt[20] ^= 0x40;
        assert!(matches!(
            decode_message(&corrupt),
            Err(EventStreamError::MessageChecksum { .. })
        ));
        let mut corrupt = frame;
        corrupt[2] ^= 0x40;
        assert!(matches!(
            decode_message(&corrupt),
            Err(EventStreamError::PreludeChecksum { .. })
        ));
    }

    #[test]
    fn partial_buffers_are_incomplete() {
        let frame = event("initial-response", "application/json", b"{}").unwrap();
        assert_eq!(
            decode_message(&frame[..5]),
            Err(EventStreamError::Incomplete { needed: 0 })
        );
        assert_eq!(
            decode_message(&frame[..frame.len() - 1]),
            Err(EventStreamError::Incomplete {
                needed: frame.len()
            })
        );
    }

    #[test]
    fn consecutive_messages_decode_in_turn() {
        let mut stream = event("initial-response", "application/json", b"{}").unwrap();
        stream.extend(
            exception(
                "ResourceNotFoundException",
                "application/json",
                b"{\"message\":\"gone\"}",
            )
            .unwrap(),
        );
        let (first, used) = decode_message(&stream).unwrap();
        assert_eq!(first.header_str(":message-type"), Some("event"));
        assert_eq!(first.header_str(":event-type"), Some("initial-response"));
        assert_eq!(first.header_str(":content-type"), Some("application/json"));
        let (second, used2) = decode_message(&stream[used..]).unwrap();
        assert_eq!(used + used2, stream.len());
        assert_eq!(second.header_str(":message-type"), Some("exception"));
        assert_eq!(
            second.header_str(":exception-type"),
            Some("ResourceNotFoundException")
        );
        assert_eq!(&second.payload[..], b"{\"message\":\"gone\"}");
    }

    #[test]
    fn error_messages_carry_code_and_text() {
        let (m, _) = decode_message(&error("InternalFailure", "boom").unwrap()).unwrap();
        assert_eq!(m.header_str(":message-type"), Some("error"));
        assert_eq!(m.header_str(":error-code"), Some("InternalFailure"));
        assert_eq!(m.header_str(":error-message"), Some("boom"));
        assert!(m.payload.is_empty());
    }

    #[test]
    fn oversized_fields_are_refused() {
        let long_name = "n".repeat(256);
        assert!(encode_message(&[(long_name.as_str(), HeaderValue::Bool(true))], b"").is_err());
        assert!(encode_message(&[("", HeaderValue::Bool(true))], b"").is_err());
        let long_value = HeaderValue::String("v".repeat(65_536));
        assert!(encode_message(&[("n", long_value)], b"").is_err());
        assert!(encode_message(&[], &vec![0; MAX_MESSAGE_LEN]).is_err());
    }

    #[test]
    fn bad_lengths_and_headers_are_invalid() {
        // Prelude claiming headers longer than the message.
        let mut frame = vec![0, 0, 0, 16, 0, 0, 0, 1];
        frame.extend_from_slice(&crc32fast::hash(&frame).to_be_bytes());
        frame.extend_from_slice(&crc32fast::hash(&frame).to_be_bytes());
        assert!(matches!(
            decode_message(&frame),
            Err(EventStreamError::Invalid(_))
        ));
        // A header with an unknown type byte.
        let mut body = vec![0, 0, 0, 19, 0, 0, 0, 3];
        body.extend_from_slice(&crc32fast::hash(&body).to_be_bytes());
        body.extend_from_slice(&[1, b'x', 42]);
        body.extend_from_slice(&crc32fast::hash(&body).to_be_bytes());
        assert_eq!(
            decode_message(&body),
            Err(EventStreamError::Invalid("unknown header type"))
        );
    }
}
