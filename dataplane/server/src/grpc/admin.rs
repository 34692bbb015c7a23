//! Stream administration: create, delete, list, describe, scale, retention.

use std::collections::BTreeMap;

use riffle_proto::v1;
use tonic::Status;

use super::status::{create_status, invalid, status};
use crate::streams::model::{Placement, ShardMeta, StreamMeta, StreamMode, shard_id};
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
    let mode = match request.mode.as_str() {
        "" => StreamMode::Provisioned,
        text => parse_mode(text)?,
    };
    let max_record_size_kib = match request.max_record_size_kib {
        0 => None,
        kib => Some(check_max_record_size(kib)?),
    };
    catalog
        .create_stream(CreateStream {
            name: request.name,
            shard_count: Some(request.shard_count),
            mode,
            tags: BTreeMap::new(),
            max_record_size_kib,
            placement: request.placement.map(placement).transpose()?,
        })
        .await
        .map_err(create_status)?;
    Ok(v1::CreateStreamResponse {})
}

fn parse_mode(text: &str) -> Result<StreamMode, Status> {
    StreamMode::parse(text).ok_or_else(|| {
        invalid(format!(
            "Stream mode '{text}' is not one of PROVISIONED, ON_DEMAND."
        ))
    })
}

fn check_max_record_size(kib: u32) -> Result<u32, Status> {
    if (1024..=10240).contains(&kib) {
        Ok(kib)
    } else {
        Err(invalid(format!(
            "MaxRecordSizeInKiB {kib} must be between 1024 and 10240."
        )))
    }
}

fn placement(placement: v1::Placement) -> Result<Placement, Status> {
    if placement.shards_per_group == 0 {
        return Err(invalid("Placement shards_per_group must be at least 1."));
    }
    Ok(Placement {
        group: placement.group,
        shards_per_group: placement.shards_per_group,
    })
}

/// UpdateStream: mode and largest record.
pub async fn update_stream(
    catalog: &Catalog,
    request: v1::UpdateStreamRequest,
) -> Result<v1::UpdateStreamResponse, Status> {
    check_stream_name(&request.name)?;
    if !request.mode.is_empty() {
        let mode = parse_mode(&request.mode)?;
        catalog
            .set_mode(&request.name, mode)
            .await
            .map_err(status)?;
    }
    if request.max_record_size_kib != 0 {
        let kib = check_max_record_size(request.max_record_size_kib)?;
        catalog
            .set_max_record_size(&request.name, kib)
            .await
            .map_err(status)?;
    }
    Ok(v1::UpdateStreamResponse {})
}

/// ExportStream.
pub async fn export_stream(
    catalog: &Catalog,
    request: v1::ExportStreamRequest,
) -> Result<v1::ExportStreamResponse, Status> {
    check_stream_name(&request.name)?;
    let meta = catalog.export_stream(&request.name).await.map_err(status)?;
    let description =
        serde_json::to_vec(&meta).map_err(|e| Status::internal(format!("InternalFailure: {e}")))?;
    Ok(v1::ExportStreamResponse {
        description: description.into(),
    })
}

/// ImportStream.
pub async fn import_stream(
    catalog: &Catalog,
    request: v1::ImportStreamRequest,
) -> Result<v1::ImportStreamResponse, Status> {
    let meta: StreamMeta = serde_json::from_slice(&request.description)
        .map_err(|e| invalid(format!("The stream description cannot be read: {e}")))?;
    check_stream_name(&meta.name)?;
    let placement = request
        .placement
        .map(placement)
        .transpose()?
        .ok_or_else(|| invalid("ImportStream needs a placement."))?;
    catalog
        .import_stream(meta, placement)
        .await
        .map_err(create_status)?;
    Ok(v1::ImportStreamResponse {})
}

/// ReplayReshards.
pub async fn replay_reshards(
    catalog: &Catalog,
    request: v1::ReplayReshardsRequest,
) -> Result<v1::ReplayReshardsResponse, Status> {
    check_stream_name(&request.name)?;
    let meta: StreamMeta = serde_json::from_slice(&request.description)
        .map_err(|e| invalid(format!("The stream description cannot be read: {e}")))?;
    let replayed = catalog
        .replay_reshards(&request.name, &meta.reshards)
        .await
        .map_err(status)?;
    let count = |n: usize| u32::try_from(n).unwrap_or(u32::MAX);
    Ok(v1::ReplayReshardsResponse {
        before: count(replayed.before),
        after: count(replayed.after),
    })
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
        reshard_count: u32::try_from(meta.reshards.len()).unwrap_or(u32::MAX),
        placement: meta.placement.map(|p| v1::Placement {
            group: p.group,
            shards_per_group: p.shards_per_group,
        }),
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
        group: shard.group,
    }
}

/// UpdateShardCount.
pub async fn update_shard_count(
    catalog: &Catalog,
    request: v1::UpdateShardCountRequest,
) -> Result<v1::UpdateShardCountResponse, Status> {
    check_stream_name(&request.name)?;
    let change = catalog
        .scale_shards(&request.name, request.target_shard_count)
        .await
        .map_err(status)?;
    Ok(v1::UpdateShardCountResponse {
        current_shard_count: change.current,
        target_shard_count: change.target,
    })
}

/// ShardMetrics: the write counters of every shard this server stores.
pub async fn shard_metrics(
    catalog: &Catalog,
    request: v1::ShardMetricsRequest,
) -> Result<v1::ShardMetricsResponse, Status> {
    check_stream_name(&request.name)?;
    // Only a group's leader routes writes, so only its counters move.
    if let Some(replicator) = catalog.replicator() {
        replicator.leading().map_err(status)?;
    }
    let shards = catalog
        .describe(&request.name, |_, state| {
            state
                .shards
                .values()
                .map(|shard| v1::ShardCounters {
                    id: shard_id(shard.index),
                    incoming_bytes: shard.metrics.incoming_bytes.get(),
                    incoming_records: shard.metrics.incoming_records.get(),
                    write_throttled: shard.metrics.write_throttled.get(),
                })
                .collect()
        })
        .await
        .map_err(status)?;
    Ok(v1::ShardMetricsResponse { shards })
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
