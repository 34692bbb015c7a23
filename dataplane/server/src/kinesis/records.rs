//! Writing and reading records: PutRecord, PutRecords, GetShardIterator, GetRecords.

use std::sync::Arc;

use riffle_wire::validation::{self, Violations};
use riffle_wire::{AwsError, Doc, Value};

use super::input::{enum_member, int_in, seconds_to_ms, shard_id, stream_name};
use crate::streams::hash_key::parse_hash_key;
use crate::streams::model::shard_id as format_shard_id;
use crate::streams::{Catalog, ChildShard, PutEntry, ReadRecord, StartingPosition};

/// Most records in one PutRecords call.
const MAX_PUT_RECORDS: usize = 500;
/// Most bytes (data and partition keys) in one PutRecords call.
const MAX_PUT_RECORDS_BYTES: usize = 5 * 1024 * 1024;

/// Reads and validates one record entry (of PutRecord, or one element of PutRecords).
fn entry(doc: &Doc<'_>, max_data_bytes: usize) -> Result<PutEntry, AwsError> {
    let partition_key = doc.str_required("PartitionKey")?;
    let data = doc.blob_required("Data")?;
    let explicit = doc.str_opt("ExplicitHashKey")?;
    let mut violations = Violations::new();
    let key_chars = partition_key.chars().count();
    if key_chars == 0 {
        violations.push(
            doc.path("PartitionKey"),
            Some(partition_key),
            validation::min_length(1),
        );
    } else if key_chars > 256 {
        violations.push(
            doc.path("PartitionKey"),
            Some(partition_key),
            validation::max_length(256),
        );
    }
    if let Some(explicit) = explicit {
        let well_formed = explicit == "0"
            || (!explicit.is_empty()
                && explicit.len() <= 39
                && !explicit.starts_with('0')
                && explicit.bytes().all(|b| b.is_ascii_digit()));
        if !well_formed {
            violations.push(
                doc.path("ExplicitHashKey"),
                Some(explicit),
                validation::pattern("0|([1-9]\\d{0,38})"),
            );
        }
    }
    violations.into_result()?;
    if data.len() > max_data_bytes {
        return Err(AwsError::validation(format!(
            "1 validation error detected: Value at '{}' failed to satisfy constraint: Member must have length less than or equal to {max_data_bytes}",
            doc.path("Data")
        )));
    }
    let explicit_hash_key = match explicit {
        Some(text) => Some(parse_hash_key(text).ok_or_else(|| {
            AwsError::invalid_argument(format!(
                "Invalid ExplicitHashKey. ExplicitHashKey must be in the range: [0, 2^128-1]. Specified value was {text}"
            ))
        })?),
        None => None,
    };
    Ok(PutEntry {
        partition_key: partition_key.to_string(),
        explicit_hash_key,
        data,
    })
}

async fn max_record_bytes(catalog: &Catalog, stream: &str) -> Result<usize, AwsError> {
    Ok(catalog
        .describe(stream, |meta, _| meta.max_record_size_kib as usize * 1024)
        .await?)
}

fn encryption_type(encrypted: bool) -> &'static str {
    if encrypted { "KMS" } else { "NONE" }
}

/// PutRecord.
pub async fn put_record(catalog: &Arc<Catalog>, doc: &Doc<'_>) -> Result<Value, AwsError> {
    let name = stream_name(catalog, doc)?;
    let max = max_record_bytes(catalog, &name).await?;
    let entry = entry(doc, max)?;
    let outcome = catalog.put_records(&name, vec![entry]).await?;
    let result = outcome
        .results
        .into_iter()
        .next()
        .unwrap_or_else(|| Err(crate::streams::ApiError::internal("no result")));
    let (shard, sequence) = result?;
    Ok(Value::map()
        .with("ShardId", format_shard_id(shard))
        .with("SequenceNumber", sequence)
        .with("EncryptionType", encryption_type(outcome.encrypted))
        .build())
}

/// PutRecords: results in request order, failures reported per entry.
pub async fn put_records(catalog: &Arc<Catalog>, doc: &Doc<'_>) -> Result<Value, AwsError> {
    let name = stream_name(catalog, doc)?;
    let records = doc.list_required("Records")?;
    if records.is_empty() {
        return Err(validation::single(
            &doc.path("Records"),
            None,
            &validation::min_length(1),
        ));
    }
    if records.len() > MAX_PUT_RECORDS {
        return Err(AwsError::validation(format!(
            "1 validation error detected: Value '[...]' at 'records' failed to satisfy constraint: Member must have length less than or equal to {MAX_PUT_RECORDS}"
        )));
    }
    let max = max_record_bytes(catalog, &name).await?;
    let entries = records
        .iter()
        .map(|record| entry(record, max))
        .collect::<Result<Vec<_>, _>>()?;
    let total: usize = entries
        .iter()
        .map(|e| e.data.len() + e.partition_key.len())
        .sum();
    if total > MAX_PUT_RECORDS_BYTES {
        return Err(AwsError::invalid_argument(format!(
            "Records size exceeds {} MB limit",
            MAX_PUT_RECORDS_BYTES / (1024 * 1024)
        )));
    }
    let outcome = catalog.put_records(&name, entries).await?;
    let mut failed = 0i64;
    let results: Vec<Value> = outcome
        .results
        .into_iter()
        .map(|result| match result {
            Ok((shard, sequence)) => Value::map()
                .with("SequenceNumber", sequence)
                .with("ShardId", format_shard_id(shard))
                .build(),
            Err(error) => {
                failed += 1;
                let code = error.kind.aws_type();
                Value::map()
                    .with("ErrorCode", code)
                    .with("ErrorMessage", error.message)
                    .build()
            }
        })
        .collect();
    Ok(Value::map()
        .with("FailedRecordCount", failed)
        .with("Records", Value::List(results))
        .with("EncryptionType", encryption_type(outcome.encrypted))
        .build())
}

const ITERATOR_TYPES: [&str; 5] = [
    "AT_SEQUENCE_NUMBER",
    "AFTER_SEQUENCE_NUMBER",
    "TRIM_HORIZON",
    "LATEST",
    "AT_TIMESTAMP",
];

/// Reads a starting position: `kind_member` names the type member (`ShardIteratorType` or
/// `Type`), `sequence_member` the sequence number member.
pub fn starting_position(
    doc: &Doc<'_>,
    kind_member: &str,
    sequence_member: &str,
) -> Result<StartingPosition, AwsError> {
    let kind = doc.required(kind_member, enum_member(doc, kind_member, &ITERATOR_TYPES)?)?;
    let sequence = doc.str_opt(sequence_member)?;
    let timestamp = doc.timestamp_opt("Timestamp")?;
    let need_sequence = || {
        sequence.map(str::to_string).ok_or_else(|| {
            AwsError::invalid_argument(format!("{sequence_member} must be specified for {kind}."))
        })
    };
    Ok(match kind {
        "TRIM_HORIZON" => StartingPosition::TrimHorizon,
        "LATEST" => StartingPosition::Latest,
        "AT_SEQUENCE_NUMBER" => StartingPosition::AtSequenceNumber(need_sequence()?),
        "AFTER_SEQUENCE_NUMBER" => StartingPosition::AfterSequenceNumber(need_sequence()?),
        _ => StartingPosition::AtTimestamp(seconds_to_ms(timestamp.ok_or_else(|| {
            AwsError::invalid_argument("Timestamp must be specified for AT_TIMESTAMP.")
        })?)),
    })
}

/// GetShardIterator.
pub async fn get_shard_iterator(catalog: &Arc<Catalog>, doc: &Doc<'_>) -> Result<Value, AwsError> {
    let name = stream_name(catalog, doc)?;
    let shard = shard_id(doc, "ShardId")?;
    let position = starting_position(doc, "ShardIteratorType", "StartingSequenceNumber")?;
    let iterator = catalog.shard_iterator(&name, shard, position).await?;
    Ok(Value::map().with("ShardIterator", iterator).build())
}

/// A record as GetRecords and SubscribeToShard return it.
pub fn record_value(record: ReadRecord) -> Value {
    Value::map()
        .with("SequenceNumber", record.sequence_number)
        .with(
            "ApproximateArrivalTimestamp",
            Value::timestamp_millis(record.arrival_ms),
        )
        .with("Data", record.data)
        .with("PartitionKey", record.partition_key)
        .with("EncryptionType", encryption_type(record.encrypted))
        .build()
}

/// ChildShards as GetRecords and SubscribeToShard return them.
pub fn child_shards_value(children: Vec<ChildShard>) -> Value {
    Value::List(
        children
            .into_iter()
            .map(|child| {
                Value::map()
                    .with("ShardId", child.shard_id)
                    .with(
                        "ParentShards",
                        Value::List(child.parent_shards.into_iter().map(Value::from).collect()),
                    )
                    .with(
                        "HashKeyRange",
                        Value::map()
                            .with("StartingHashKey", child.range.start.to_string())
                            .with("EndingHashKey", child.range.end.to_string())
                            .build(),
                    )
                    .build()
            })
            .collect(),
    )
}

/// GetRecords.
pub async fn get_records(catalog: &Arc<Catalog>, doc: &Doc<'_>) -> Result<Value, AwsError> {
    let iterator = doc.str_required("ShardIterator")?;
    if iterator.is_empty() || iterator.len() > 512 {
        let constraint = if iterator.is_empty() {
            validation::min_length(1)
        } else {
            validation::max_length(512)
        };
        return Err(validation::single(
            &doc.path("ShardIterator"),
            Some(iterator),
            &constraint,
        ));
    }
    let limit = int_in(doc, "Limit", 1, 10_000)?.unwrap_or(10_000) as usize;
    let (outcome, next) = catalog.get_records(iterator, limit).await?;
    let records: Vec<Value> = outcome.records.into_iter().map(record_value).collect();
    let mut reply = Value::map()
        .with("Records", Value::List(records))
        .with("MillisBehindLatest", outcome.millis_behind_latest);
    if let Some(next) = next {
        reply = reply.with("NextShardIterator", next);
    }
    if let Some(children) = outcome.child_shards {
        reply = reply.with("ChildShards", child_shards_value(children));
    }
    Ok(reply.build())
}
