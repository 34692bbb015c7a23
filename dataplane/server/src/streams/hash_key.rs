//! The 128-bit hash-key space: routing by MD5 of the partition key or by an explicit hash key,
//! and the even division of the space among shards.

use md5::{Digest, Md5};

/// The largest hash key, 2^128 - 1.
pub const MAX_HASH_KEY: u128 = u128::MAX;

/// A contiguous, inclusive range of the hash-key space owned by one shard.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct HashRange {
    /// First hash key of the range.
    #[serde(with = "u128_string")]
    pub start: u128,
    /// Last hash key of the range (inclusive).
    #[serde(with = "u128_string")]
    pub end: u128,
}

impl HashRange {
    /// The whole hash-key space.
    pub const ALL: HashRange = HashRange {
        start: 0,
        end: MAX_HASH_KEY,
    };

    /// Whether `key` falls inside the range.
    pub fn contains(&self, key: u128) -> bool {
        self.start <= key && key <= self.end
    }

    /// Whether `other` begins right after this range ends (in either order).
    pub fn is_adjacent_to(&self, other: &HashRange) -> bool {
        self.end.checked_add(1) == Some(other.start) || other.end.checked_add(1) == Some(self.start)
    }

    /// Splits the space `[0, 2^128)` into `count` ranges as Kinesis does: equal widths, the last
    /// range absorbing the remainder.
    pub fn divide_evenly(count: u32) -> Vec<HashRange> {
        if count <= 1 {
            return vec![HashRange::ALL];
        }
        let count = u128::from(count);
        // floor(2^128 / count), computed without overflowing u128.
        let width = MAX_HASH_KEY / count + u128::from(MAX_HASH_KEY % count == count - 1);
        (0..count)
            .map(|i| HashRange {
                start: i * width,
                end: if i + 1 == count {
                    MAX_HASH_KEY
                } else {
                    (i + 1) * width - 1
                },
            })
            .collect()
    }
}

/// The hash key Kinesis derives from a partition key: its MD5 digest read big-endian.
pub fn hash_partition_key(partition_key: &str) -> u128 {
    let digest = Md5::digest(partition_key.as_bytes());
    u128::from_be_bytes(digest.into())
}

/// Parses an explicit hash key: a decimal integer in `[0, 2^128 - 1]` without sign or leading
/// zeros (except `0` itself), as Kinesis requires.
pub fn parse_hash_key(text: &str) -> Option<u128> {
    let well_formed = !text.is_empty()
        && text.bytes().all(|b| b.is_ascii_digit())
        && (text == "0" || !text.starts_with('0'));
    if !well_formed {
        return None;
    }
    text.parse::<u128>().ok()
}

/// Serde helper storing `u128` values as decimal strings (JSON numbers cannot hold them).
pub mod u128_string {
    use serde::{Deserialize, Deserializer, Serializer, de::Error};

    /// Writes the value as a decimal string.
    pub fn serialize<S: Serializer>(value: &u128, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.serialize_str(&value.to_string())
    }

    /// Reads a decimal string.
    pub fn deserialize<'de, D: Deserializer<'de>>(deserializer: D) -> Result<u128, D::Error> {
        let text = String::deserialize(deserializer)?;
        text.parse().map_err(D::Error::custom)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn md5_routing_matches_kinesis() {
        // MD5("a") = 0cc175b9c0f1b6a831c399e269772661
        assert_eq!(
            hash_partition_key("a"),
            0x0cc175b9c0f1b6a831c399e269772661u128
        );
    }

    #[test]
    fn even_division_covers_the_space_without_gaps() {
        for count in [1u32, 2, 3, 7, 100] {
            let ranges = HashRange::divide_evenly(count);
            assert_eq!(ranges.len(), count as usize);
            assert_eq!(ranges[0].start, 0);
            assert_eq!(ranges.last().map(|r| r.end), Some(MAX_HASH_KEY));
            for pair in ranges.windows(2) {
                assert_eq!(pair[0].end + 1, pair[1].start);
            }
        }
        assert_eq!(
            HashRange::divide_evenly(2)[0].end.to_string(),
            "170141183460469231731687303715884105727"
        );
        assert_eq!(
            HashRange::divide_evenly(3)[0].end.to_string(),
            "113427455640312821154458202477256070484"
        );
    }

    #[test]
    fn explicit_hash_keys_are_strict_decimals() {
        assert_eq!(parse_hash_key("0"), Some(0));
        assert_eq!(parse_hash_key(&u128::MAX.to_string()), Some(u128::MAX));
        assert_eq!(
            parse_hash_key("340282366920938463463374607431768211456"),
            None
        );
        assert_eq!(parse_hash_key("01"), None);
        assert_eq!(parse_hash_key("-1"), None);
        assert_eq!(parse_hash_key(""), None);
        assert_eq!(parse_hash_key("1e5"), None);
    }

    #[test]
    fn adjacency_is_symmetric() {
        let halves = HashRange::divide_evenly(2);
        assert!(halves[0].is_adjacent_to(&halves[1]));
        assert!(halves[1].is_adjacent_to(&halves[0]));
        let thirds = HashRange::divide_evenly(3);
        assert!(!thirds[0].is_adjacent_to(&thirds[2]));
    }
}
