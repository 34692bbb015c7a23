//! Stream lifecycle, description and resharding operations.

use std::collections::BTreeMap;
use std::sync::Arc;

use base64::Engine;
use base64::engine::general_purpose::STANDARD;
use riffle_wire::validation::Violations;
use riffle_wire::{AwsError, Doc, MapBuilder, Value};

use super::empty;
use super::input::{
    self, check_name, enum_member, int_in, int_in_required, stream_arn, stream_name,
};
use crate::streams::model::{ShardMeta, StreamMeta, StreamMode, parse_shard_id};
use crate::streams::sequence::SequenceNumber;
use crate::streams::{Catalog, CreateStream, now_ms};

const MODES: [&str; 2] = ["PROVISIONED", "ON_DEMAND"];

fn mode_details(mode: StreamMode) -> Value {
    Value::map().with("StreamMode", mode.as_str()).build()
}

fn stream_mode(doc: &Doc<'_>) -> Result<Option<StreamMode>, AwsError> {
    let Some(details) = doc.doc_opt("StreamModeDetails")? else {
        return Ok(None);
    };
    let mode = enum_member(&details, "StreamMode", &MODES)?;
    let mode = details.required("StreamMode", mode)?;
    Ok(StreamMode::parse(mode))
}

/// CreateStream.
pub async fn create_stream(catalog: &Arc<Catalog>, doc: &Doc<'_>) -> Result<Value, AwsError> {
    let name = doc.str_required("StreamName")?;
    let mut violations = Violations::new();
    check_name(doc, "StreamName", name, &mut violations);
    violations.into_result()?;
    let shard_count = int_in(doc, "ShardCount", 1, 100_000)?;
    let mode = stream_mode(doc)?.unwrap_or(StreamMode::Provisioned);
    let tags = doc
        .map_opt("Tags")?
        .unwrap_or_default()
        .into_iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect::<BTreeMap<_, _>>();
    let max_record_size_kib = int_in(doc, "MaxRecordSizeInKiB", 1024, 10240)?;
    catalog
        .create_stream(CreateStream {
            name: name.to_string(),
            shard_count: shard_count.map(|c| c as u32),
            mode,
            tags,
            max_record_size_kib: max_record_size_kib.map(|k| k as u32),
            placement: None,
        })
        .await?;
    Ok(empty())
}

/// DeleteStream.
pub async fn delete_stream(catalog: &Arc<Catalog>, doc: &Doc<'_>) -> Result<Value, AwsError> {
    let name = stream_name(catalog, doc)?;
    let enforce = doc.bool_opt("EnforceConsumerDeletion")?.unwrap_or(false);
    catalog.delete_stream(&name, enforce).await?;
    Ok(empty())
}

/// The shard as DescribeStream and ListShards describe it.
pub fn shard_value(stream: &StreamMeta, shard: &ShardMeta) -> Value {
    let sequence = |position: u64| {
        SequenceNumber {
            stream_epoch: stream.epoch,
            shard_index: shard.index,
            position,
        }
        .encode()
    };
    let range = Value::map()
        .with("StartingSequenceNumber", sequence(0))
        .with_opt(
            "EndingSequenceNumber",
            shard.closed.map(|c| sequence(c.end_offset)),
        )
        .build();
    Value::map()
        .with("ShardId", shard.id())
        .with_opt(
            "ParentShardId",
            shard.parent.map(crate::streams::model::shard_id),
        )
        .with_opt(
            "AdjacentParentShardId",
            shard.adjacent_parent.map(crate::streams::model::shard_id),
        )
        .with(
            "HashKeyRange",
            Value::map()
                .with("StartingHashKey", shard.range.start.to_string())
                .with("EndingHashKey", shard.range.end.to_string())
                .build(),
        )
        .with("SequenceNumberRange", range)
        .build()
}

fn enhanced_monitoring(meta: &StreamMeta) -> Value {
    Value::List(vec![
        Value::map()
            .with(
                "ShardLevelMetrics",
                Value::List(
                    meta.enhanced_metrics
                        .iter()
                        .map(|m| Value::from(m.as_str()))
                        .collect(),
                ),
            )
            .build(),
    ])
}

fn encryption_type(meta: &StreamMeta) -> &'static str {
    if meta.encryption_key_id.is_some() {
        "KMS"
    } else {
        "NONE"
    }
}

/// The members DescribeStream and DescribeStreamSummary share.
fn stream_fields(meta: &StreamMeta, arn: String) -> MapBuilder {
    Value::map()
        .with("StreamName", meta.name.as_str())
        .with("StreamARN", arn)
        .with("StreamStatus", "ACTIVE")
        .with("StreamModeDetails", mode_details(meta.mode))
        .with("RetentionPeriodHours", i64::from(meta.retention_hours))
        .with(
            "StreamCreationTimestamp",
            Value::timestamp_millis(meta.created_ms),
        )
        .with("EnhancedMonitoring", enhanced_monitoring(meta))
        .with("EncryptionType", encryption_type(meta))
        .with_opt("KeyId", meta.encryption_key_id.clone())
}

/// DescribeStream.
pub async fn describe_stream(catalog: &Arc<Catalog>, doc: &Doc<'_>) -> Result<Value, AwsError> {
    let name = stream_name(catalog, doc)?;
    let limit = int_in(doc, "Limit", 1, 10_000)?.unwrap_or(100) as usize;
    let after = doc
        .str_opt("ExclusiveStartShardId")?
        .map(|s| parse_shard_id(s).unwrap_or(0));
    let arn = catalog.stream_arn(&name);
    Ok(catalog
        .describe(&name, |meta, _| {
            let remaining: Vec<&ShardMeta> = meta
                .shards
                .iter()
                .filter(|s| after.is_none_or(|after| s.index > after))
                .collect();
            let shards: Vec<Value> = remaining
                .iter()
                .take(limit)
                .map(|s| shard_value(meta, s))
                .collect();
            let description = stream_fields(meta, arn)
                .with("Shards", Value::List(shards))
                .with("HasMoreShards", remaining.len() > limit)
                .build();
            Value::map().with("StreamDescription", description).build()
        })
        .await?)
}

/// DescribeStreamSummary.
pub async fn describe_stream_summary(
    catalog: &Arc<Catalog>,
    doc: &Doc<'_>,
) -> Result<Value, AwsError> {
    let name = stream_name(catalog, doc)?;
    let arn = catalog.stream_arn(&name);
    Ok(catalog
        .describe(&name, |meta, _| {
            let summary = stream_fields(meta, arn)
                .with("OpenShardCount", meta.open_shards().len() as i64)
                .with("ConsumerCount", meta.consumers.len() as i64)
                .with("MaxRecordSizeInKiB", i64::from(meta.max_record_size_kib))
                .build();
            Value::map()
                .with("StreamDescriptionSummary", summary)
                .build()
        })
        .await?)
}

/// ListStreams, ordered by name, with both paging styles.
pub async fn list_streams(catalog: &Arc<Catalog>, doc: &Doc<'_>) -> Result<Value, AwsError> {
    let limit = int_in(doc, "Limit", 1, 10_000)?.unwrap_or(100) as usize;
    let start_after = match doc.str_opt("NextToken")? {
        Some(token) => Some(decode_token(token)?),
        None => doc.str_opt("ExclusiveStartStreamName")?.map(str::to_string),
    };
    let mut names = Vec::new();
    let mut summaries = Vec::new();
    let streams = catalog.streams();
    let remaining: Vec<_> = streams
        .iter()
        .filter(|s| {
            start_after
                .as_deref()
                .is_none_or(|after| s.name.as_str() > after)
        })
        .collect();
    for stream in remaining.iter().take(limit) {
        let Ok(summary) = catalog
            .describe(&stream.name, |meta, _| {
                Value::map()
                    .with("StreamName", meta.name.as_str())
                    .with("StreamARN", catalog.stream_arn(&meta.name))
                    .with("StreamStatus", "ACTIVE")
                    .with("StreamModeDetails", mode_details(meta.mode))
                    .with(
                        "StreamCreationTimestamp",
                        Value::timestamp_millis(meta.created_ms),
                    )
                    .build()
            })
            .await
        else {
            continue;
        };
        names.push(Value::from(stream.name.as_str()));
        summaries.push(summary);
    }
    let has_more = remaining.len() > limit;
    let next_token = has_more
        .then(|| names.last().and_then(Value::as_str).map(encode_token))
        .flatten();
    Ok(Value::map()
        .with("StreamNames", Value::List(names))
        .with("HasMoreStreams", has_more)
        .with_opt("NextToken", next_token)
        .with("StreamSummaries", Value::List(summaries))
        .build())
}

fn encode_token(text: &str) -> String {
    STANDARD.encode(text)
}

fn decode_token(token: &str) -> Result<String, AwsError> {
    STANDARD
        .decode(token)
        .ok()
        .and_then(|bytes| String::from_utf8(bytes).ok())
        .ok_or_else(|| AwsError::invalid_argument(format!("Invalid NextToken {token}.")))
}

const SHARD_FILTERS: [&str; 6] = [
    "AFTER_SHARD_ID",
    "AT_TRIM_HORIZON",
    "FROM_TRIM_HORIZON",
    "AT_LATEST",
    "AT_TIMESTAMP",
    "FROM_TIMESTAMP",
];

/// The paging state ListShards carries in its NextToken.
#[derive(serde::Serialize, serde::Deserialize)]
struct ShardsToken {
    stream: String,
    after: u32,
    filter: Option<String>,
    filter_shard: Option<String>,
    filter_time_ms: Option<i64>,
}

/// ListShards with ShardFilter and paging.
pub async fn list_shards(catalog: &Arc<Catalog>, doc: &Doc<'_>) -> Result<Value, AwsError> {
    let max_results = int_in(doc, "MaxResults", 1, 10_000)?.unwrap_or(1000) as usize;
    let token = doc.str_opt("NextToken")?;
    let (name, after, filter, filter_shard, filter_time_ms) = match token {
        Some(token) => {
            if doc.has("StreamName") || doc.has("StreamARN") {
                return Err(AwsError::invalid_argument(
                    "NextToken and StreamName cannot be provided together.",
                ));
            }
            let decoded: ShardsToken = STANDARD
                .decode(token)
                .ok()
                .and_then(|bytes| serde_json::from_slice(&bytes).ok())
                .ok_or_else(|| AwsError::invalid_argument(format!("Invalid NextToken {token}.")))?;
            (
                decoded.stream,
                Some(decoded.after),
                decoded.filter,
                decoded.filter_shard,
                decoded.filter_time_ms,
            )
        }
        None => {
            let name = stream_name(catalog, doc)?;
            let after = doc
                .str_opt("ExclusiveStartShardId")?
                .map(|s| parse_shard_id(s).unwrap_or(0));
            let (filter, filter_shard, filter_time_ms) = match doc.doc_opt("ShardFilter")? {
                Some(filter) => {
                    let kind =
                        filter.required("Type", enum_member(&filter, "Type", &SHARD_FILTERS)?)?;
                    let shard = filter.str_opt("ShardId")?.map(str::to_string);
                    let time = filter.timestamp_opt("Timestamp")?.map(input::seconds_to_ms);
                    if kind == "AFTER_SHARD_ID" && shard.is_none() {
                        return Err(AwsError::invalid_argument(
                            "ShardId must be provided with the AFTER_SHARD_ID filter.",
                        ));
                    }
                    if matches!(kind, "AT_TIMESTAMP" | "FROM_TIMESTAMP") && time.is_none() {
                        return Err(AwsError::invalid_argument(
                            "Timestamp must be provided with the AT_TIMESTAMP and FROM_TIMESTAMP filters.",
                        ));
                    }
                    (Some(kind.to_string()), shard, time)
                }
                None => (None, None, None),
            };
            (name, after, filter, filter_shard, filter_time_ms)
        }
    };
    let now = now_ms();
    catalog
        .describe(&name, |meta, _| {
            let horizon = (now - meta.retention_ms()).max(meta.created_ms);
            let filter_after = filter_shard.as_deref().and_then(parse_shard_id);
            let selected: Vec<&ShardMeta> = meta
                .shards
                .iter()
                .filter(|s| after.is_none_or(|after| s.index > after))
                .filter(|s| match filter.as_deref() {
                    None | Some("FROM_TRIM_HORIZON") => true,
                    Some("AFTER_SHARD_ID") => filter_after.is_none_or(|a| s.index > a),
                    Some("AT_TRIM_HORIZON") => s.open_at(horizon),
                    Some("AT_LATEST") => s.is_open(),
                    Some("AT_TIMESTAMP") => {
                        s.open_at(filter_time_ms.unwrap_or(now).max(meta.created_ms))
                    }
                    Some("FROM_TIMESTAMP") => s
                        .closed
                        .is_none_or(|c| c.closed_ms > filter_time_ms.unwrap_or(now)),
                    Some(_) => true,
                })
                .collect();
            let page: Vec<Value> = selected
                .iter()
                .take(max_results)
                .map(|s| shard_value(meta, s))
                .collect();
            let next = (selected.len() > max_results).then(|| {
                let token = ShardsToken {
                    stream: name.clone(),
                    after: selected[max_results - 1].index,
                    filter: filter.clone(),
                    filter_shard: filter_shard.clone(),
                    filter_time_ms,
                };
                STANDARD.encode(serde_json::to_vec(&token).unwrap_or_default())
            });
            Value::map()
                .with("Shards", Value::List(page))
                .with_opt("NextToken", next)
                .build()
        })
        .await
        .map_err(AwsError::from)
}

/// SplitShard.
pub async fn split_shard(catalog: &Arc<Catalog>, doc: &Doc<'_>) -> Result<Value, AwsError> {
    let name = stream_name(catalog, doc)?;
    let shard = input::shard_id(doc, "ShardToSplit")?;
    let new_key = doc.str_required("NewStartingHashKey")?;
    catalog.split_shard(&name, shard, new_key).await?;
    Ok(empty())
}

/// MergeShards.
pub async fn merge_shards(catalog: &Arc<Catalog>, doc: &Doc<'_>) -> Result<Value, AwsError> {
    let name = stream_name(catalog, doc)?;
    let shard = input::shard_id(doc, "ShardToMerge")?;
    let adjacent = input::shard_id(doc, "AdjacentShardToMerge")?;
    catalog.merge_shards(&name, shard, adjacent).await?;
    Ok(empty())
}

/// UpdateShardCount (UNIFORM_SCALING).
pub async fn update_shard_count(catalog: &Arc<Catalog>, doc: &Doc<'_>) -> Result<Value, AwsError> {
    let name = stream_name(catalog, doc)?;
    let target = int_in_required(doc, "TargetShardCount", 1, 100_000)?;
    let scaling = enum_member(doc, "ScalingType", &["UNIFORM_SCALING"])?;
    doc.required("ScalingType", scaling)?;
    let change = catalog.update_shard_count(&name, target as u32).await?;
    Ok(Value::map()
        .with("StreamName", name.as_str())
        .with("CurrentShardCount", i64::from(change.current))
        .with("TargetShardCount", i64::from(change.target))
        .with("StreamARN", catalog.stream_arn(&name))
        .build())
}

/// UpdateStreamMode.
pub async fn update_stream_mode(catalog: &Arc<Catalog>, doc: &Doc<'_>) -> Result<Value, AwsError> {
    let name = stream_arn(catalog, doc, "StreamARN")?;
    let mode = doc.required("StreamModeDetails", stream_mode(doc)?)?;
    catalog.set_mode(&name, mode).await?;
    Ok(empty())
}
