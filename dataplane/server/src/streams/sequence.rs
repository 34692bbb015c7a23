//! Sequence numbers: decimal strings that increase within a shard, never repeat, and locate
//! their record directly.
//!
//! Layout of the 128-bit value, most significant first:
//! `0b0010` (fixes the decimal length at 38 digits) | stream epoch (40 bits, creation time in
//! seconds) | shard index (20 bits) | position in the shard (64 bits).
//!
//! The position of the record at log offset `o` is `o + 1`; position 0 lies before every
//! record and serves as the shard's `StartingSequenceNumber`, so that `AFTER_SEQUENCE_NUMBER`
//! with it (or with a continuation number of a subscription that has delivered nothing yet)
//! starts at the first record.
//! A stream re-created under the same name gets a new epoch, so numbers are never reused.

const MARKER: u128 = 0b0010 << 124;
const EPOCH_BITS: u32 = 40;
const SHARD_BITS: u32 = 20;
const OFFSET_BITS: u32 = 64;

/// The decoded parts of a sequence number.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SequenceNumber {
    /// Creation time of the stream, in seconds since the Unix epoch.
    pub stream_epoch: u64,
    /// Index of the shard (`shardId-000000000007` has index 7).
    pub shard_index: u32,
    /// Position in the shard: the record's log offset plus one, or 0 before every record.
    pub position: u64,
}

/// The largest shard index a sequence number can carry.
pub const MAX_SHARD_INDEX: u32 = (1 << SHARD_BITS) - 1;

impl SequenceNumber {
    /// Encodes the number as Kinesis clients see it.
    pub fn encode(&self) -> String {
        let epoch = u128::from(self.stream_epoch) & ((1 << EPOCH_BITS) - 1);
        let shard = u128::from(self.shard_index) & u128::from(MAX_SHARD_INDEX);
        let value = MARKER
            | (epoch << (SHARD_BITS + OFFSET_BITS))
            | (shard << OFFSET_BITS)
            | u128::from(self.position);
        value.to_string()
    }

    /// Decodes a number produced by [`SequenceNumber::encode`]; `None` for anything else.
    pub fn decode(text: &str) -> Option<SequenceNumber> {
        if text.is_empty() || text.len() > 39 || !text.bytes().all(|b| b.is_ascii_digit()) {
            return None;
        }
        let value: u128 = text.parse().ok()?;
        if value >> 124 != MARKER >> 124 {
            return None;
        }
        Some(SequenceNumber {
            stream_epoch: ((value >> (SHARD_BITS + OFFSET_BITS)) & ((1 << EPOCH_BITS) - 1)) as u64,
            shard_index: ((value >> OFFSET_BITS) & u128::from(MAX_SHARD_INDEX)) as u32,
            position: value as u64,
        })
    }

    /// The number of the record at log `offset`.
    pub fn of_record(stream_epoch: u64, shard_index: u32, offset: u64) -> SequenceNumber {
        SequenceNumber {
            stream_epoch,
            shard_index,
            position: offset + 1,
        }
    }

    /// Log offset of the record this number names; for position 0, the first record.
    pub fn at_offset(&self) -> u64 {
        self.position.saturating_sub(1)
    }

    /// Log offset of the record after the one this number names.
    pub fn after_offset(&self) -> u64 {
        self.position
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trips_and_orders_like_integers() {
        let first = SequenceNumber {
            stream_epoch: 1_764_000_000,
            shard_index: 3,
            position: 9,
        };
        let text = first.encode();
        assert_eq!(text.len(), 38);
        assert_eq!(SequenceNumber::decode(&text), Some(first));
        let next = SequenceNumber {
            position: 10,
            ..first
        }
        .encode();
        assert!(next.parse::<u128>().unwrap() > text.parse::<u128>().unwrap());
        let child = SequenceNumber {
            shard_index: 4,
            position: 0,
            ..first
        }
        .encode();
        assert!(child.parse::<u128>().unwrap() > next.parse::<u128>().unwrap());
    }

    #[test]
    fn rejects_foreign_numbers() {
        assert_eq!(SequenceNumber::decode(""), None);
        assert_eq!(SequenceNumber::decode("12"), None);
        assert_eq!(SequenceNumber::decode("abc"), None);
        assert_eq!(
            SequenceNumber::decode("49590338271490256608559692538361571095921575989136588898"),
            None
        );
    }
}
