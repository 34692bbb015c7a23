//! Shard iterators: opaque, tamper-evident tokens naming a position in a shard, valid for a
//! limited time.

use base64::Engine;
use base64::engine::general_purpose::STANDARD;
use md5::{Digest, Md5};

const VERSION: u8 = 1;
const FIXED_LEN: usize = 1 + 8 + 8 + 4 + 8;
const CHECK_LEN: usize = 8;

/// A decoded shard iterator.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ShardIterator {
    /// Stream name.
    pub stream: String,
    /// Stream creation time in seconds (tells a re-created stream apart).
    pub stream_epoch: u64,
    /// Shard index.
    pub shard_index: u32,
    /// Offset of the next record to return.
    pub offset: u64,
    /// When the iterator was issued, in milliseconds since the Unix epoch.
    pub issued_ms: i64,
}

impl ShardIterator {
    /// Encodes the iterator as the string clients pass back.
    pub fn encode(&self) -> String {
        let mut bytes = Vec::with_capacity(FIXED_LEN + self.stream.len() + CHECK_LEN);
        bytes.push(VERSION);
        bytes.extend_from_slice(&self.issued_ms.to_be_bytes());
        bytes.extend_from_slice(&self.stream_epoch.to_be_bytes());
        bytes.extend_from_slice(&self.shard_index.to_be_bytes());
        bytes.extend_from_slice(&self.offset.to_be_bytes());
        bytes.extend_from_slice(self.stream.as_bytes());
        let check = checksum(&bytes);
        bytes.extend_from_slice(&check);
        STANDARD.encode(bytes)
    }

    /// Decodes an iterator; `None` if it was not issued by Riffle or was altered.
    pub fn decode(text: &str) -> Option<ShardIterator> {
        let bytes = STANDARD.decode(text).ok()?;
        if bytes.len() < FIXED_LEN + CHECK_LEN || bytes[0] != VERSION {
            return None;
        }
        let (body, check) = bytes.split_at(bytes.len() - CHECK_LEN);
        if checksum(body) != check {
            return None;
        }
        let number =
            |range: std::ops::Range<usize>| -> Option<[u8; 8]> { body.get(range)?.try_into().ok() };
        Some(ShardIterator {
            issued_ms: i64::from_be_bytes(number(1..9)?),
            stream_epoch: u64::from_be_bytes(number(9..17)?),
            shard_index: u32::from_be_bytes(body.get(17..21)?.try_into().ok()?),
            offset: u64::from_be_bytes(number(21..29)?),
            stream: String::from_utf8(body.get(FIXED_LEN..)?.to_vec()).ok()?,
        })
    }
}

fn checksum(bytes: &[u8]) -> [u8; CHECK_LEN] {
    let digest = Md5::new_with_prefix(b"riffle-shard-iterator")
        .chain_update(bytes)
        .finalize();
    let mut check = [0u8; CHECK_LEN];
    check.copy_from_slice(&digest[..CHECK_LEN]);
    check
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sample() -> ShardIterator {
        ShardIterator {
            stream: "orders".into(),
            stream_epoch: 1_764_000_000,
            shard_index: 2,
            offset: 12345,
            issued_ms: 1_764_000_000_123,
        }
    }

    #[test]
    fn round_trips() {
        assert_eq!(ShardIterator::decode(&sample().encode()), Some(sample()));
    }

    #[test]
    fn detects_tampering_and_garbage() {
        let encoded = sample().encode();
        let mut bytes = STANDARD.decode(&encoded).unwrap();
        bytes[25] ^= 1;
        assert_eq!(ShardIterator::decode(&STANDARD.encode(bytes)), None);
        assert_eq!(ShardIterator::decode("not-an-iterator"), None);
        assert_eq!(ShardIterator::decode(""), None);
    }
}
