//! The on-disk batch: one `append` call becomes one batch.
//!
//! Layout (little-endian):
//!
//! ```text
//! offset size field
//!      0    1 magic/version (0xB1); a zero byte here marks the end of the log
//!      1    4 total length of the batch in bytes, header included
//!      5    4 CRC32C of every byte after this field (bytes 9..length)
//!      9    8 base offset (offset of the first record)
//!     17    4 record count (>= 1)
//!     21    8 arrival_ms, shared by every record of the batch
//!     29      records, `count` times: key length u16, key (UTF-8), data length u32, data
//! ```
//!
//! A batch is valid only if its CRC matches and its records fill the declared length exactly.

use std::fmt;
use std::ops::Range;

use crate::{LogError, RecordIn};

/// Magic and format version in one byte; never zero so that zero-filled space reads as "end".
pub(crate) const MAGIC: u8 = 0xB1;
/// Bytes in the fixed batch header.
pub(crate) const HEADER_LEN: usize = 29;
/// Bytes each record adds besides its key and data (the two length fields).
pub(crate) const RECORD_OVERHEAD: usize = 6;
/// Start of the CRC-covered region.
const CRC_START: usize = 9;

/// The decoded fixed header of a batch.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct BatchHeader {
    /// Total batch length, header included.
    pub len: u32,
    /// CRC32C stored in the header.
    pub crc: u32,
    /// Offset of the first record.
    pub base_offset: u64,
    /// Number of records (>= 1).
    pub count: u32,
    /// Arrival time of every record in the batch.
    pub arrival_ms: i64,
}

/// Why a header was rejected.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum HeaderProblem {
    /// The magic byte is zero: preallocated or never-written space, i.e. the end of the log.
    Zeros,
    /// The magic byte is neither zero nor [`MAGIC`].
    Magic(u8),
    /// The record count is zero.
    EmptyBatch,
    /// The length cannot hold the header plus `count` records.
    Length(u32),
}

impl fmt::Display for HeaderProblem {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            HeaderProblem::Zeros => f.write_str("zero-filled space"),
            HeaderProblem::Magic(m) => write!(f, "bad magic byte {m:#04x}"),
            HeaderProblem::EmptyBatch => f.write_str("batch with zero records"),
            HeaderProblem::Length(l) => write!(f, "bad batch length {l}"),
        }
    }
}

impl BatchHeader {
    /// Parses and sanity-checks a header from the first [`HEADER_LEN`] bytes of `buf`.
    pub(crate) fn parse(buf: &[u8; HEADER_LEN]) -> Result<BatchHeader, HeaderProblem> {
        match buf[0] {
            MAGIC => {}
            0 => return Err(HeaderProblem::Zeros),
            m => return Err(HeaderProblem::Magic(m)),
        }
        let header = BatchHeader {
            len: u32_at(buf, 1),
            crc: u32_at(buf, 5),
            base_offset: u64_at(buf, 9),
            count: u32_at(buf, 17),
            arrival_ms: u64_at(buf, 21) as i64,
        };
        if header.count == 0 {
            return Err(HeaderProblem::EmptyBatch);
        }
        let min_len = HEADER_LEN as u64 + RECORD_OVERHEAD as u64 * u64::from(header.count);
        if u64::from(header.len) < min_len {
            return Err(HeaderProblem::Length(header.len));
        }
        Ok(header)
    }

    /// Parses the header at the start of `batch`, if there are enough bytes for one.
    pub(crate) fn parse_prefix(batch: &[u8]) -> Option<Result<BatchHeader, HeaderProblem>> {
        let head: &[u8; HEADER_LEN] = batch.get(..HEADER_LEN)?.try_into().ok()?;
        Some(BatchHeader::parse(head))
    }

    /// One past the offset of the last record.
    pub(crate) fn next_offset(&self) -> u64 {
        self.base_offset.saturating_add(u64::from(self.count))
    }
}

/// Payload bytes (keys and data) of a batch of `len` bytes holding `count` records.
pub(crate) fn payload_bytes(len: u64, count: u64) -> u64 {
    len.saturating_sub(HEADER_LEN as u64 + RECORD_OVERHEAD as u64 * count)
}

/// Checks that `records` fit the format and returns the encoded batch length.
pub(crate) fn encoded_len(records: &[RecordIn]) -> Result<usize, LogError> {
    if records.is_empty() {
        return Err(LogError::InvalidAppend(
            "an append needs at least one record".into(),
        ));
    }
    if u32::try_from(records.len()).is_err() {
        return Err(LogError::InvalidAppend(format!(
            "{} records do not fit in one batch",
            records.len()
        )));
    }
    let mut len = HEADER_LEN as u64;
    for r in records {
        if u16::try_from(r.partition_key.len()).is_err() {
            return Err(LogError::InvalidAppend(format!(
                "partition key of {} bytes exceeds {} bytes",
                r.partition_key.len(),
                u16::MAX
            )));
        }
        if u32::try_from(r.data.len()).is_err() {
            return Err(LogError::InvalidAppend(format!(
                "record data of {} bytes exceeds {} bytes",
                r.data.len(),
                u32::MAX
            )));
        }
        len += (RECORD_OVERHEAD + r.partition_key.len() + r.data.len()) as u64;
    }
    if u32::try_from(len).is_err() {
        return Err(LogError::InvalidAppend(format!(
            "batch of {len} bytes exceeds {} bytes",
            u32::MAX
        )));
    }
    Ok(len as usize)
}

/// Appends the encoding of `records` to `buf` and returns its length.
///
/// `records` must have passed [`encoded_len`]; lengths are then known to fit their fields.
pub(crate) fn encode(
    buf: &mut Vec<u8>,
    base_offset: u64,
    arrival_ms: i64,
    records: &[RecordIn],
) -> usize {
    let start = buf.len();
    buf.push(MAGIC);
    buf.extend_from_slice(&[0; 8]); // length and CRC, patched below
    buf.extend_from_slice(&base_offset.to_le_bytes());
    buf.extend_from_slice(&(records.len() as u32).to_le_bytes());
    buf.extend_from_slice(&arrival_ms.to_le_bytes());
    for r in records {
        buf.extend_from_slice(&(r.partition_key.len() as u16).to_le_bytes());
        buf.extend_from_slice(r.partition_key.as_bytes());
        buf.extend_from_slice(&(r.data.len() as u32).to_le_bytes());
        buf.extend_from_slice(&r.data);
    }
    let len = buf.len() - start;
    buf[start + 1..start + 5].copy_from_slice(&(len as u32).to_le_bytes());
    let crc = crc32c::crc32c(&buf[start + CRC_START..]);
    buf[start + 5..start + 9].copy_from_slice(&crc.to_le_bytes());
    len
}

/// Checks the CRC of a whole batch (`batch.len() == header.len`).
pub(crate) fn check_crc(batch: &[u8], header: &BatchHeader) -> Result<(), &'static str> {
    if batch.len() != header.len as usize {
        return Err("batch length does not match its header");
    }
    if crc32c::crc32c(&batch[CRC_START..]) != header.crc {
        return Err("CRC mismatch");
    }
    Ok(())
}

/// Verifies a whole batch (`batch.len() == header.len`): CRC first, then that its records fill it
/// exactly with UTF-8 keys.
pub(crate) fn verify(batch: &[u8], header: &BatchHeader) -> Result<(), &'static str> {
    check_crc(batch, header)?;
    for record in Records::new(batch, header.count) {
        let (key, _) = record?;
        if std::str::from_utf8(&batch[key]).is_err() {
            return Err("partition key is not UTF-8");
        }
    }
    Ok(())
}

/// Iterates the records of a whole batch, yielding the byte ranges of each key and data.
///
/// Yields an error (and then stops) if the records overrun the batch or leave bytes unused.
pub(crate) struct Records<'a> {
    batch: &'a [u8],
    pos: usize,
    left: u32,
    failed: bool,
}

impl<'a> Records<'a> {
    pub(crate) fn new(batch: &'a [u8], count: u32) -> Self {
        Records {
            batch,
            pos: HEADER_LEN,
            left: count,
            failed: false,
        }
    }

    fn take(&mut self, n: usize) -> Result<Range<usize>, &'static str> {
        let end = self
            .pos
            .checked_add(n)
            .filter(|&e| e <= self.batch.len())
            .ok_or("record overruns its batch")?;
        let range = self.pos..end;
        self.pos = end;
        Ok(range)
    }

    fn next_record(&mut self) -> Result<(Range<usize>, Range<usize>), &'static str> {
        let key_len = self.take(2)?;
        let key_len =
            u16::from_le_bytes([self.batch[key_len.start], self.batch[key_len.start + 1]]);
        let key = self.take(usize::from(key_len))?;
        let data_len = self.take(4)?;
        let data_len = u32_at(self.batch, data_len.start);
        let data = self.take(data_len as usize)?;
        Ok((key, data))
    }
}

impl Iterator for Records<'_> {
    type Item = Result<(Range<usize>, Range<usize>), &'static str>;

    fn next(&mut self) -> Option<Self::Item> {
        if self.failed {
            return None;
        }
        if self.left == 0 {
            if self.pos != self.batch.len() {
                self.failed = true;
                return Some(Err("unused bytes after the last record"));
            }
            return None;
        }
        self.left -= 1;
        let item = self.next_record();
        self.failed = item.is_err();
        Some(item)
    }
}

fn u32_at(buf: &[u8], at: usize) -> u32 {
    let mut b = [0; 4];
    b.copy_from_slice(&buf[at..at + 4]);
    u32::from_le_bytes(b)
}

fn u64_at(buf: &[u8], at: usize) -> u64 {
    let mut b = [0; 8];
    b.copy_from_slice(&buf[at..at + 8]);
    u64::from_le_bytes(b)
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;
    use bytes::Bytes;

    fn records() -> Vec<RecordIn> {
        vec![
            RecordIn {
                partition_key: "alpha".into(),
                data: Bytes::from_static(b"first record"),
            },
            RecordIn {
                partition_key: String::new(),
                data: Bytes::new(),
            },
            RecordIn {
                partition_key: "ключ".into(),
                data: Bytes::from(vec![7u8; 300]),
            },
        ]
    }

    fn encoded() -> Vec<u8> {
        let mut buf = Vec::new();
        let len = encode(&mut buf, 42, 1_700_000_000_123, &records());
        assert_eq!(len, buf.len());
        assert_eq!(len, encoded_len(&records()).unwrap());
        buf
    }

    #[test]
    fn round_trip() {
        let buf = encoded();
        let header = BatchHeader::parse_prefix(&buf).unwrap().unwrap();
        assert_eq!(header.len as usize, buf.len());
        assert_eq!(header.base_offset, 42);
        assert_eq!(header.count, 3);
        assert_eq!(header.next_offset(), 45);
        assert_eq!(header.arrival_ms, 1_700_000_000_123);
        verify(&buf, &header).unwrap();
        let decoded: Vec<_> = Records::new(&buf, header.count)
            .map(|r| {
                let (k, d) = r.unwrap();
                (
                    std::str::from_utf8(&buf[k]).unwrap().to_owned(),
                    buf[d].to_vec(),
                )
            })
            .collect();
        let expected: Vec<_> = records()
            .into_iter()
            .map(|r| (r.partition_key, r.data.to_vec()))
            .collect();
        assert_eq!(decoded, expected);
        let payload: usize = expected.iter().map(|(k, d)| k.len() + d.len()).sum();
        assert_eq!(
            payload_bytes(u64::from(header.len), u64::from(header.count)),
            payload as u64
        );
    }

    #[test]
    fn any_flipped_byte_is_detected() {
        let good = encoded();
        for at in 0..good.len() {
            for bit in [0x01u8, 0x80] {
                let mut bad = good.clone();
                bad[at] ^= bit;
                let rejected = match BatchHeader::parse_prefix(&bad).unwrap() {
                    Err(_) => true,
                    // A flipped length byte makes the header disagree with the bytes we hold.
                    Ok(h) => verify(&bad, &h).is_err(),
                };
                assert!(rejected, "flip {bit:#x} at byte {at} went unnoticed");
            }
        }
    }

    #[test]
    fn structural_errors_are_detected_even_with_a_valid_crc() {
        let mut buf = encoded();
        // Claim one record fewer: the last record's bytes are then left over.
        buf[17] = 2;
        let crc = crc32c::crc32c(&buf[CRC_START..]);
        buf[5..9].copy_from_slice(&crc.to_le_bytes());
        let header = BatchHeader::parse_prefix(&buf).unwrap().unwrap();
        assert_eq!(
            verify(&buf, &header),
            Err("unused bytes after the last record")
        );

        // Claim one record more: the records overrun the batch.
        buf[17] = 4;
        let crc = crc32c::crc32c(&buf[CRC_START..]);
        buf[5..9].copy_from_slice(&crc.to_le_bytes());
        let header = BatchHeader::parse_prefix(&buf).unwrap().unwrap();
        assert_eq!(verify(&buf, &header), Err("record overruns its batch"));
    }

    #[test]
    fn header_problems() {
        let good = encoded();
        let mut zeros = good.clone();
        zeros[0] = 0;
        assert_eq!(
            BatchHeader::parse_prefix(&zeros).unwrap(),
            Err(HeaderProblem::Zeros)
        );
        let mut short = good.clone();
        short[1..5].copy_from_slice(&(HEADER_LEN as u32).to_le_bytes());
        assert!(matches!(
            BatchHeader::parse_prefix(&short).unwrap(),
            Err(HeaderProblem::Length(_))
        ));
        let mut empty = good.clone();
        empty[17..21].copy_from_slice(&0u32.to_le_bytes());
        assert_eq!(
            BatchHeader::parse_prefix(&empty).unwrap(),
            Err(HeaderProblem::EmptyBatch)
        );
        assert!(BatchHeader::parse_prefix(&good[..HEADER_LEN - 1]).is_none());
    }

    #[test]
    fn oversized_fields_are_rejected() {
        assert!(matches!(encoded_len(&[]), Err(LogError::InvalidAppend(_))));
        let long_key = RecordIn {
            partition_key: "k".repeat(usize::from(u16::MAX) + 1),
            data: Bytes::new(),
        };
        assert!(matches!(
            encoded_len(&[long_key]),
            Err(LogError::InvalidAppend(_))
        ));
        let max_key = RecordIn {
            partition_key: "k".repeat(usize::from(u16::MAX)),
            data: Bytes::new(),
        };
        assert!(encoded_len(&[max_key]).is_ok());
    }
}
