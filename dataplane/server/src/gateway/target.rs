//! Which stream a Kinesis request addresses, read the way the data plane reads it, and, for a
//! stream spread over several shard groups, which part of it ([`within`]).

use base64::Engine;
use base64::engine::general_purpose::STANDARD;
use riffle_wire::{AwsError, Doc};

use crate::streams::hash_key::{hash_partition_key, parse_hash_key};
use crate::streams::model::parse_shard_id;
use crate::streams::shard_iterator::ShardIterator;

/// Where the gateway sends a request.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Target {
    /// The data-plane endpoint hosting this stream.
    Stream(String),
    /// The stream-management endpoint (CreateStream, DeleteStream, UpdateShardCount).
    Admin,
    /// Every data-plane endpoint, with the answers merged (ListStreams).
    AllStreams,
    /// Any one data-plane endpoint (account-wide calls).
    Any,
}

/// Decides the target of `operation` from its request document.
pub fn target(
    operation: &str,
    doc: &Doc<'_>,
    stream_from_arn: impl Fn(&str) -> Option<String>,
) -> Result<Target, AwsError> {
    match operation {
        "CreateStream" | "DeleteStream" | "UpdateShardCount" => return Ok(Target::Admin),
        "ListStreams" => return Ok(Target::AllStreams),
        "DescribeLimits" | "DescribeAccountSettings" | "UpdateAccountSettings" => {
            return Ok(Target::Any);
        }
        "GetRecords" => {
            let iterator = doc.str_required("ShardIterator")?;
            let decoded = ShardIterator::decode(iterator)
                .ok_or_else(|| AwsError::invalid_argument("Invalid ShardIterator."))?;
            return Ok(Target::Stream(decoded.stream));
        }
        // A follow-up page names its stream only inside the token the data plane issued.
        "ListShards" if !doc.has("StreamName") && !doc.has("StreamARN") => {
            if let Some(stream) = doc.str_opt("NextToken")?.and_then(list_shards_token_stream) {
                return Ok(Target::Stream(stream));
            }
        }
        _ => {}
    }
    if let Some(name) = doc.str_opt("StreamName")? {
        return Ok(Target::Stream(name.to_string()));
    }
    for member in ["StreamARN", "ConsumerARN", "ResourceARN"] {
        if let Some(arn) = doc.str_opt(member)? {
            return stream_from_arn(arn)
                .map(Target::Stream)
                .ok_or_else(|| AwsError::invalid_argument(format!("Invalid {member} {arn}.")));
        }
    }
    Err(AwsError::invalid_argument(
        "Either StreamName or StreamARN should be provided.",
    ))
}

/// The stream named by a ListShards `NextToken` (base64 of the data plane's JSON paging state).
fn list_shards_token_stream(token: &str) -> Option<String> {
    let bytes = STANDARD.decode(token).ok()?;
    let state: serde_json::Value = serde_json::from_slice(&bytes).ok()?;
    state.get("stream")?.as_str().map(str::to_string)
}

/// Which part of a stream spread over several shard groups a request addresses.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Within {
    /// Group 0, which holds the whole description and answers for the stream as a whole.
    First,
    /// The group storing the shard with this index.
    Shard(u32),
    /// The group storing the open shard that owns this hash key.
    HashKey(u128),
    /// Records that may belong to several groups (PutRecords): split, sent, merged.
    Records,
    /// A change of the stream's description, made in group 0 and then in every other group.
    Everywhere,
    /// A shard listing, answered by group 0 with each closed shard's end as its own group
    /// reports it.
    ShardListing,
}

/// Operations that change what every group holds about a stream.
const STREAM_CHANGES: [&str; 19] = [
    "SplitShard",
    "MergeShards",
    "AddTagsToStream",
    "RemoveTagsFromStream",
    "TagResource",
    "UntagResource",
    "IncreaseStreamRetentionPeriod",
    "DecreaseStreamRetentionPeriod",
    "StartStreamEncryption",
    "StopStreamEncryption",
    "EnableEnhancedMonitoring",
    "DisableEnhancedMonitoring",
    "RegisterStreamConsumer",
    "DeregisterStreamConsumer",
    "PutResourcePolicy",
    "DeleteResourcePolicy",
    "UpdateStreamMode",
    "UpdateMaxRecordSize",
    "UpdateStreamWarmThroughput",
];

/// Decides which part of a spread stream `operation` addresses. A request whose addressing
/// members cannot be read goes to group 0, which answers with the exact error.
pub fn within(operation: &str, doc: &Doc<'_>) -> Within {
    let shard = |member: &str| {
        doc.str_opt(member)
            .ok()
            .flatten()
            .and_then(parse_shard_id)
            .map_or(Within::First, Within::Shard)
    };
    match operation {
        "PutRecord" => record_hash_key(doc).map_or(Within::First, Within::HashKey),
        "PutRecords" => Within::Records,
        "GetShardIterator" | "SubscribeToShard" => shard("ShardId"),
        "GetRecords" => doc
            .str_opt("ShardIterator")
            .ok()
            .flatten()
            .and_then(ShardIterator::decode)
            .map_or(Within::First, |iterator| {
                Within::Shard(iterator.shard_index)
            }),
        "DescribeStream" | "ListShards" => Within::ShardListing,
        change if STREAM_CHANGES.contains(&change) => Within::Everywhere,
        _ => Within::First,
    }
}

/// The hash key a record entry (PutRecord, or an element of PutRecords) is routed by: its
/// ExplicitHashKey, else the MD5 of its PartitionKey. `None` when the entry is malformed.
pub fn record_hash_key(doc: &Doc<'_>) -> Option<u128> {
    match doc.str_opt("ExplicitHashKey").ok()? {
        Some(explicit) => parse_hash_key(explicit),
        None => {
            let key = doc.str_opt("PartitionKey").ok()??;
            let chars = key.chars().count();
            (1..=256).contains(&chars).then(|| hash_partition_key(key))
        }
    }
}

/// The stream name inside a stream or consumer ARN (`arn:aws:kinesis:<region>:<account>:stream/<name>[/consumer/...]`).
pub fn stream_from_arn(arn: &str) -> Option<String> {
    let (_, resource) = arn.split_once(":stream/")?;
    let name = resource.split('/').next()?;
    (!name.is_empty()).then(|| name.to_string())
}

#[cfg(test)]
mod tests {
    use riffle_wire::{Format, Value};

    use super::*;

    fn within_of(operation: &str, body: &str) -> Within {
        let value = Format::Json.decode(body.as_bytes()).unwrap();
        let doc = Doc::new(&value, Format::Json).unwrap();
        within(operation, &doc)
    }

    #[test]
    fn requests_find_their_part_of_a_spread_stream() {
        assert_eq!(
            within_of(
                "PutRecord",
                r#"{"StreamName":"s","PartitionKey":"a","Data":""}"#
            ),
            Within::HashKey(0x0cc175b9c0f1b6a831c399e269772661)
        );
        assert_eq!(
            within_of(
                "PutRecord",
                r#"{"StreamName":"s","PartitionKey":"a","ExplicitHashKey":"7","Data":""}"#
            ),
            Within::HashKey(7)
        );
        // Malformed keys are group 0's to refuse.
        for body in [
            r#"{"StreamName":"s","PartitionKey":"","Data":""}"#,
            r#"{"StreamName":"s","PartitionKey":"a","ExplicitHashKey":"-1","Data":""}"#,
            r#"{"StreamName":"s","PartitionKey":3,"Data":""}"#,
            r#"{"StreamName":"s","Data":""}"#,
        ] {
            assert_eq!(within_of("PutRecord", body), Within::First, "{body}");
        }
        assert_eq!(
            within_of(
                "GetShardIterator",
                r#"{"StreamName":"s","ShardId":"shardId-000000000003","ShardIteratorType":"LATEST"}"#
            ),
            Within::Shard(3)
        );
        assert_eq!(
            within_of(
                "SubscribeToShard",
                r#"{"ConsumerARN":"arn:aws:kinesis:us-east-1:000000000000:stream/s/consumer/c:1","ShardId":"shardId-000000000002"}"#
            ),
            Within::Shard(2)
        );
        assert_eq!(
            within_of("GetShardIterator", r#"{"StreamName":"s","ShardId":"nope"}"#),
            Within::First
        );
        let iterator = ShardIterator {
            stream: "s".into(),
            stream_epoch: 1,
            shard_index: 5,
            offset: 9,
            issued_ms: 0,
        }
        .encode();
        let body = Value::map().with("ShardIterator", iterator).build();
        let json = String::from_utf8(Format::Json.encode(&body)).unwrap();
        assert_eq!(within_of("GetRecords", &json), Within::Shard(5));
        assert_eq!(
            within_of("GetRecords", r#"{"ShardIterator":"junk"}"#),
            Within::First
        );
        assert_eq!(within_of("PutRecords", "{}"), Within::Records);
        assert_eq!(within_of("DescribeStream", "{}"), Within::ShardListing);
        assert_eq!(within_of("ListShards", "{}"), Within::ShardListing);
        for change in STREAM_CHANGES {
            assert_eq!(within_of(change, "{}"), Within::Everywhere, "{change}");
        }
        for first in [
            "DescribeStreamSummary",
            "ListTagsForStream",
            "DescribeStreamConsumer",
            "ListStreamConsumers",
            "GetResourcePolicy",
        ] {
            assert_eq!(within_of(first, "{}"), Within::First, "{first}");
        }
    }

    #[test]
    fn list_shards_pages_find_their_stream() {
        let token = STANDARD.encode(br#"{"stream":"clicks","after":3,"filter":null}"#);
        let body = Value::map().with("NextToken", token).build();
        let json = String::from_utf8(Format::Json.encode(&body)).unwrap();
        assert_eq!(
            target_of("ListShards", &json),
            Ok(Target::Stream("clicks".into()))
        );
        assert_eq!(
            target_of("ListShards", r#"{"NextToken":"garbage"}"#)
                .unwrap_err()
                .kind,
            "InvalidArgumentException"
        );
    }

    fn target_of(operation: &str, body: &str) -> Result<Target, AwsError> {
        let value = Format::Json.decode(body.as_bytes()).unwrap();
        let doc = Doc::new(&value, Format::Json).unwrap();
        target(operation, &doc, stream_from_arn)
    }

    #[test]
    fn requests_find_their_stream() {
        assert_eq!(
            target_of("PutRecord", r#"{"StreamName":"orders"}"#),
            Ok(Target::Stream("orders".into()))
        );
        assert_eq!(
            target_of(
                "RegisterStreamConsumer",
                r#"{"StreamARN":"arn:aws:kinesis:us-east-1:000000000000:stream/orders","ConsumerName":"c"}"#
            ),
            Ok(Target::Stream("orders".into()))
        );
        assert_eq!(
            target_of(
                "SubscribeToShard",
                r#"{"ConsumerARN":"arn:aws:kinesis:us-east-1:000000000000:stream/orders/consumer/c:1","ShardId":"shardId-000000000000"}"#
            ),
            Ok(Target::Stream("orders".into()))
        );
        let iterator = ShardIterator {
            stream: "clicks".into(),
            stream_epoch: 1,
            shard_index: 0,
            offset: 0,
            issued_ms: 0,
        }
        .encode();
        let body = Value::map().with("ShardIterator", iterator).build();
        let json = String::from_utf8(Format::Json.encode(&body)).unwrap();
        assert_eq!(
            target_of("GetRecords", &json),
            Ok(Target::Stream("clicks".into()))
        );
        assert_eq!(
            target_of("CreateStream", r#"{"StreamName":"x"}"#),
            Ok(Target::Admin)
        );
        assert_eq!(target_of("ListStreams", "{}"), Ok(Target::AllStreams));
        assert_eq!(target_of("DescribeLimits", "{}"), Ok(Target::Any));
    }

    #[test]
    fn unaddressed_requests_are_refused() {
        let error = target_of("PutRecord", "{}").unwrap_err();
        assert_eq!(error.kind, "InvalidArgumentException");
        let error = target_of("GetRecords", r#"{"ShardIterator":"junk"}"#).unwrap_err();
        assert_eq!(error.kind, "InvalidArgumentException");
        assert_eq!(
            target_of("DescribeStream", r#"{"StreamARN":"arn:aws:s3:::bucket"}"#)
                .unwrap_err()
                .kind,
            "InvalidArgumentException"
        );
    }
}
