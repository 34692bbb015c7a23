//! Stream administration: create, delete, list, describe, scale, retention.

use std::collections::BTreeMap;

use riffle_proto::v1;
use tonic::Status;

use super::status::{create_status, invalid, status};
use crate::streams::model::{ShardMeta, StreamMeta, StreamMode, shard_id};
use crate::streams::sequence::SequenceNumber;
use crate::streams::{Catalog, CreateStream};

/// Checks a stream name: 1..=128 characters of `[a-zA-Z0-9_.-]`, as Kinesis requires.
pub fn check_stream_name(name: &str) -> Result<(), Status> {
    if name.is_empty() || name.len() > 128 {
        return Err(invalid(format!(
            "Stream name '{name}' must be 1 to 128 characters long."
        )));
    }
    if !name
        .bytes()
        .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'_' | b'.' | b'-'))
    {
        return Err(invalid(format!(
            "Stream name '{name}' may contain only letters, digits, '_', '.' and '-'."
        )));
    }
    Ok(())
}

/// CreateStream.
pub async fn create_stream(
    catalog: &Catalog,
    request: v1::CreateStreamRequest,
) -> Result<v1::CreateStreamResponse, Status> {
    check_stream_name(&request.name)?;
    catalog
        .create_stream(CreateStream {
            name: request.name,
            shard_count: Some(request.shard_count),
            mode: StreamMode::Provisioned,
            tags: BTreeMap::new(),
            max_record_size_kib: None,
        })
        .await
        .map_err(create_status)?;
    Ok(v1::CreateStreamResponse {})
}

/// DeleteStream.
pub async fn delete_stream(
    catalog: &Catalog,
    request: v1::DeleteStreamRequest,
) -> Result<v1::DeleteStreamResponse, Status> {
    check_stream_name(&request.name)?;
    catalog
        .delete_stream(&request.name, request.enforce_consumer_deletion)
        .await
        .map_err(status)?;
    Ok(v1::DeleteStreamResponse {})
}

/// ListStreams.
pub fn list_streams(catalog: &Catalog) -> v1::ListStreamsResponse {
    v1::ListStreamsResponse {
        names: catalog
            .streams()
            .iter()
            .map(|stream| stream.name.clone())
            .collect(),
    }
}

/// DescribeStream.
pub async fn describe_stream(
    catalog: &Catalog,
    request: v1::DescribeStreamRequest,
) -> Result<v1::DescribeStreamResponse, Status> {
    check_stream_name(&request.name)?;
    let arn = catalog.stream_arn(&request.name);
    let stream = catalog
        .describe(&request.name, |meta, _| describe(meta, arn))
        .await
        .map_err(status)?;
    Ok(v1::DescribeStreamResponse {
        stream: Some(stream),
    })
}

fn describe(meta: &StreamMeta, arn: String) -> v1::StreamDescription {
    v1::StreamDescription {
        name: meta.name.clone(),
        arn,
        // Changes to a stream complete before the call that makes them returns, and
        // descriptions are taken between changes, so a described stream is always ACTIVE.
        status: v1::StreamStatus::Active.into(),
        mode: meta.mode.as_str().to_string(),
        retention_hours: meta.retention_hours,
        created_ms: meta.created_ms,
        encrypted: meta.encryption_key_id.is_some(),
        max_record_size_kib: meta.max_record_size_kib,
        shards: meta.shards.iter().map(|s| shard(meta, s)).collect(),
    }
}

/// A shard as DescribeStream lists it; sequence numbers as the Kinesis API gives them.
fn shard(stream: &StreamMeta, shard: &ShardMeta) -> v1::Shard {
    let sequence = |position: u64| {
        SequenceNumber {
            stream_epoch: stream.epoch,
            shard_index: shard.index,
            position,
        }
        .encode()
    };
    v1::Shard {
        id: shard.id(),
        starting_hash_key: shard.range.start.to_string(),
        ending_hash_key: shard.range.end.to_string(),
        parent_shard_id: shard.parent.map(shard_id),
        adjacent_parent_shard_id: shard.adjacent_parent.map(shard_id),
        open: shard.is_open(),
        starting_sequence_number: sequence(0),
        ending_sequence_number: shard.closed.map(|c| sequence(c.end_offset)),
    }
}

/// UpdateShardCount.
pub async fn update_shard_count(
    catalog: &Catalog,
    request: v1::UpdateShardCountRequest,
) -> Result<v1::UpdateShardCountResponse, Status> {
    check_stream_name(&request.name)?;
    let change = catalog
        .update_shard_count(&request.name, request.target_shard_count)
        .await
        .map_err(status)?;
    Ok(v1::UpdateShardCountResponse {
        current_shard_count: change.current,
        target_shard_count: change.target,
    })
}

/// UpdateRetention: one call for both directions, so that a caller holding a desired retention
/// (the operator) need not know the current one.
pub async fn update_retention(
    catalog: &Catalog,
    request: v1::UpdateRetentionRequest,
) -> Result<v1::UpdateRetentionResponse, Status> {
    check_stream_name(&request.name)?;
    let previous = catalog
        .describe(&request.name, |meta, _| meta.retention_hours)
        .await
        .map_err(status)?;
    let increase = request.retention_hours >= previous;
    catalog
        .set_retention(&request.name, request.retention_hours, increase)
        .await
        .map_err(status)?;
    Ok(v1::UpdateRetentionResponse {
        previous_retention_hours: previous,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn stream_names_follow_kinesis_rules() {
        assert!(check_stream_name("orders.v2_test-1").is_ok());
        assert!(check_stream_name(&"a".repeat(128)).is_ok());
        for bad in ["", "has space", "slash/name", &"a".repeat(129), "ünïcode"] {
            let error = check_stream_name(bad).expect_err(bad);
            assert_eq!(error.code(), tonic::Code::InvalidArgument, "{bad}");
            assert!(error.message().starts_with("InvalidArgumentException: "));
        }
    }
}
