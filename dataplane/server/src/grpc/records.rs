//! Writing and reading records: Put and GetRecords.

use riffle_proto::v1;
use riffle_proto::v1::starting_position::Type;
use tonic::Status;

use super::admin::check_stream_name;
use super::status::{invalid, status};
use crate::streams::hash_key::parse_hash_key;
use crate::streams::model::shard_id;
use crate::streams::sequence::SequenceNumber;
use crate::streams::shard_iterator::ShardIterator;
use crate::streams::{Catalog, PutEntry, ReadRecord, StartingPosition};

/// Most records in one Put.
pub const MAX_PUT_RECORDS: usize = 500;
/// Most records one GetRecords returns.
pub const MAX_GET_RECORDS: u32 = 10_000;
/// Longest partition key, in Unicode characters.
const MAX_PARTITION_KEY_CHARS: usize = 256;

/// Put: validates every record first (a malformed one fails the whole call), then writes
/// them; records refused by the service (throughput) fail individually.
pub async fn put(catalog: &Catalog, request: v1::PutRequest) -> Result<v1::PutResponse, Status> {
    check_stream_name(&request.stream)?;
    if request.records.is_empty() || request.records.len() > MAX_PUT_RECORDS {
        return Err(invalid(format!(
            "A Put carries 1 to {MAX_PUT_RECORDS} records; this one has {}.",
            request.records.len()
        )));
    }
    let max_data_bytes = catalog
        .describe(&request.stream, |meta, _| {
            meta.max_record_size_kib as usize * 1024
        })
        .await
        .map_err(status)?;
    let entries = request
        .records
        .into_iter()
        .enumerate()
        .map(|(position, record)| entry(position, record, max_data_bytes))
        .collect::<Result<Vec<_>, _>>()?;
    let outcome = catalog
        .put_records(&request.stream, entries)
        .await
        .map_err(status)?;
    let mut failed = 0;
    let results = outcome
        .results
        .into_iter()
        .map(|result| match result {
            Ok((shard, sequence_number)) => v1::PutResult {
                shard_id: shard_id(shard),
                sequence_number,
                ..Default::default()
            },
            Err(error) => {
                failed += 1;
                v1::PutResult {
                    error_code: error.kind.aws_type().to_string(),
                    error_message: error.message,
                    ..Default::default()
                }
            }
        })
        .collect();
    Ok(v1::PutResponse {
        results,
        failed_record_count: failed,
        encrypted: outcome.encrypted,
    })
}

/// Validates one record of a Put (`position` is its index in the request).
fn entry(
    position: usize,
    record: v1::PutRecord,
    max_data_bytes: usize,
) -> Result<PutEntry, Status> {
    let key_chars = record.partition_key.chars().count();
    if key_chars == 0 || key_chars > MAX_PARTITION_KEY_CHARS {
        return Err(invalid(format!(
            "Record {position}: the partition key must be 1 to {MAX_PARTITION_KEY_CHARS} characters long; it has {key_chars}."
        )));
    }
    if record.data.len() > max_data_bytes {
        return Err(invalid(format!(
            "Record {position}: its data is {} bytes, more than the stream's limit of {max_data_bytes}.",
            record.data.len()
        )));
    }
    let explicit_hash_key = match record.explicit_hash_key {
        Some(text) => Some(parse_hash_key(&text).ok_or_else(|| {
            invalid(format!(
                "Record {position}: invalid ExplicitHashKey. ExplicitHashKey must be a decimal number in the range: [0, 2^128-1]. Specified value was {text}"
            ))
        })?),
        None => None,
    };
    Ok(PutEntry {
        partition_key: record.partition_key,
        explicit_hash_key,
        data: record.data,
    })
}

/// The service's starting position for a request's; unset means TRIM_HORIZON.
pub fn starting_position(
    position: Option<v1::StartingPosition>,
) -> Result<StartingPosition, Status> {
    let Some(position) = position else {
        return Ok(StartingPosition::TrimHorizon);
    };
    let sequence = |name: &str| {
        if position.sequence_number.is_empty() {
            Err(invalid(format!(
                "A {name} starting position needs a sequence_number."
            )))
        } else {
            Ok(position.sequence_number.clone())
        }
    };
    match Type::try_from(position.r#type) {
        Ok(Type::TrimHorizon) => Ok(StartingPosition::TrimHorizon),
        Ok(Type::Latest) => Ok(StartingPosition::Latest),
        Ok(Type::AtSequenceNumber) => Ok(StartingPosition::AtSequenceNumber(sequence(
            "AT_SEQUENCE_NUMBER",
        )?)),
        Ok(Type::AfterSequenceNumber) => Ok(StartingPosition::AfterSequenceNumber(sequence(
            "AFTER_SEQUENCE_NUMBER",
        )?)),
        Ok(Type::AtTimestamp) => Ok(StartingPosition::AtTimestamp(position.timestamp_ms)),
        Err(_) => Err(invalid(format!(
            "Unknown starting position type {}.",
            position.r#type
        ))),
    }
}

/// A record as this API returns it.
pub fn record(record: ReadRecord) -> v1::Record {
    v1::Record {
        sequence_number: record.sequence_number,
        partition_key: record.partition_key,
        data: record.data,
        arrival_ms: record.arrival_ms,
    }
}

/// GetRecords: reads through a shard iterator, so the shard's read limits and metrics apply
/// exactly as to the Kinesis API's GetRecords.
pub async fn get_records(
    catalog: &Catalog,
    request: v1::GetRecordsRequest,
) -> Result<v1::GetRecordsResponse, Status> {
    check_stream_name(&request.stream)?;
    let limit = match request.limit {
        0 => MAX_GET_RECORDS,
        limit if limit <= MAX_GET_RECORDS => limit,
        limit => {
            return Err(invalid(format!(
                "limit must be at most {MAX_GET_RECORDS}; it was {limit}."
            )));
        }
    };
    let position = starting_position(request.position)?;
    let iterator = catalog
        .shard_iterator(&request.stream, &request.shard_id, position)
        .await
        .map_err(status)?;
    let (outcome, next) = catalog
        .get_records(&iterator, limit as usize)
        .await
        .map_err(status)?;
    // The next iterator names the offset to continue from; hand it out as the sequence number
    // just before that offset, so that AFTER_SEQUENCE_NUMBER resumes exactly there.
    let next_position =
        next.as_deref()
            .and_then(ShardIterator::decode)
            .map(|next| v1::StartingPosition {
                r#type: Type::AfterSequenceNumber.into(),
                sequence_number: SequenceNumber {
                    stream_epoch: next.stream_epoch,
                    shard_index: next.shard_index,
                    position: next.offset,
                }
                .encode(),
                timestamp_ms: 0,
            });
    let child_shard_ids = outcome
        .child_shards
        .unwrap_or_default()
        .into_iter()
        .map(|child| child.shard_id)
        .collect();
    Ok(v1::GetRecordsResponse {
        records: outcome.records.into_iter().map(record).collect(),
        shard_closed: next.is_none(),
        next_position,
        child_shard_ids,
        millis_behind_latest: outcome.millis_behind_latest,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn position(kind: Type, sequence_number: &str) -> Option<v1::StartingPosition> {
        Some(v1::StartingPosition {
            r#type: kind.into(),
            sequence_number: sequence_number.into(),
            timestamp_ms: 42,
        })
    }

    #[test]
    fn converts_starting_positions() {
        assert_eq!(
            starting_position(None).ok(),
            Some(StartingPosition::TrimHorizon)
        );
        assert_eq!(
            starting_position(position(Type::Latest, "")).ok(),
            Some(StartingPosition::Latest)
        );
        assert_eq!(
            starting_position(position(Type::AfterSequenceNumber, "7")).ok(),
            Some(StartingPosition::AfterSequenceNumber("7".into()))
        );
        assert_eq!(
            starting_position(position(Type::AtTimestamp, "")).ok(),
            Some(StartingPosition::AtTimestamp(42))
        );
        let missing = starting_position(position(Type::AtSequenceNumber, ""))
            .expect_err("AT_SEQUENCE_NUMBER without a number");
        assert_eq!(missing.code(), tonic::Code::InvalidArgument);
        let unknown = starting_position(Some(v1::StartingPosition {
            r#type: 99,
            ..Default::default()
        }))
        .expect_err("an unknown type");
        assert_eq!(unknown.code(), tonic::Code::InvalidArgument);
    }

    #[test]
    fn validates_records() {
        let record = |key: &str, data: &'static [u8], explicit: Option<&str>| v1::PutRecord {
            partition_key: key.into(),
            data: bytes::Bytes::from_static(data),
            explicit_hash_key: explicit.map(Into::into),
        };
        let ok = entry(0, record("k", b"abc", Some("17")), 3).expect("valid record");
        assert_eq!(ok.explicit_hash_key, Some(17));
        assert!(entry(0, record("", b"", None), 3).is_err());
        assert!(entry(0, record(&"é".repeat(256), b"", None), 3).is_ok());
        assert!(entry(0, record(&"k".repeat(257), b"", None), 3).is_err());
        assert!(entry(0, record("k", b"abcd", None), 3).is_err());
        assert!(entry(0, record("k", b"", Some("-1")), 3).is_err());
        let too_big = (u128::MAX).to_string() + "0";
        assert!(entry(0, record("k", b"", Some(&too_big)), 3).is_err());
    }
}
