//! Stream settings: retention, tags, monitoring, encryption, limits and policies.

use std::collections::BTreeMap;
use std::sync::Arc;

use riffle_wire::{AwsError, Doc, Value};

use super::empty;
use super::input::{enum_member, int_in, int_in_required, stream_arn, stream_name};
use crate::streams::Catalog;

/// Increase/DecreaseStreamRetentionPeriod.
pub async fn retention(
    catalog: &Arc<Catalog>,
    doc: &Doc<'_>,
    increase: bool,
) -> Result<Value, AwsError> {
    let name = stream_name(catalog, doc)?;
    let hours = doc.int_required("RetentionPeriodHours")?;
    let hours = u32::try_from(hours).unwrap_or(if hours < 0 { 0 } else { u32::MAX });
    catalog.set_retention(&name, hours, increase).await?;
    Ok(empty())
}

fn tags_value(tags: &BTreeMap<String, String>, after: Option<&str>, limit: usize) -> (Value, bool) {
    let selected: Vec<(&String, &String)> = tags
        .iter()
        .filter(|(k, _)| after.is_none_or(|after| k.as_str() > after))
        .collect();
    let list = selected
        .iter()
        .take(limit)
        .map(|(k, v)| {
            Value::map()
                .with("Key", k.as_str())
                .with("Value", v.as_str())
                .build()
        })
        .collect();
    (Value::List(list), selected.len() > limit)
}

fn tag_map(doc: &Doc<'_>) -> Result<BTreeMap<String, String>, AwsError> {
    let tags = doc.map_required("Tags")?;
    if tags.is_empty() || tags.len() > 50 {
        return Err(AwsError::validation(format!(
            "1 validation error detected: Value at '{}' failed to satisfy constraint: Member must have between 1 and 50 entries",
            doc.path("Tags")
        )));
    }
    for (key, value) in &tags {
        if key.is_empty() || key.chars().count() > 128 || value.chars().count() > 256 {
            return Err(AwsError::invalid_argument(format!(
                "Tag key {key} or value {value} is invalid: keys are 1 to 128 characters, values 0 to 256."
            )));
        }
    }
    Ok(tags
        .into_iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect())
}

/// AddTagsToStream.
pub async fn add_tags_to_stream(catalog: &Arc<Catalog>, doc: &Doc<'_>) -> Result<Value, AwsError> {
    let name = stream_name(catalog, doc)?;
    let tags = tag_map(doc)?;
    catalog.add_tags(&name, tags).await?;
    Ok(empty())
}

/// Removes the tags listed in `TagKeys` from stream `name`.
async fn remove_tags(catalog: &Catalog, doc: &Doc<'_>, name: &str) -> Result<Value, AwsError> {
    let keys: Vec<String> = doc
        .str_list_required("TagKeys")?
        .into_iter()
        .map(str::to_string)
        .collect();
    catalog.remove_tags(name, &keys).await?;
    Ok(empty())
}

/// RemoveTagsFromStream.
pub async fn remove_tags_from_stream(
    catalog: &Arc<Catalog>,
    doc: &Doc<'_>,
) -> Result<Value, AwsError> {
    let name = stream_name(catalog, doc)?;
    remove_tags(catalog, doc, &name).await
}

/// ListTagsForStream.
pub async fn list_tags_for_stream(
    catalog: &Arc<Catalog>,
    doc: &Doc<'_>,
) -> Result<Value, AwsError> {
    let name = stream_name(catalog, doc)?;
    let after = doc.str_opt("ExclusiveStartTagKey")?;
    let limit = int_in(doc, "Limit", 1, 50)?.unwrap_or(50) as usize;
    let (tags, more) = catalog
        .describe(&name, |meta, _| tags_value(&meta.tags, after, limit))
        .await?;
    Ok(Value::map()
        .with("Tags", tags)
        .with("HasMoreTags", more)
        .build())
}

/// The stream a ResourceARN names (a stream or one of its consumers).
fn resource_stream(catalog: &Catalog, doc: &Doc<'_>) -> Result<String, AwsError> {
    let arn = doc.str_required("ResourceARN")?;
    if arn.contains("/consumer/") {
        Ok(catalog.parse_consumer_arn(arn)?.0)
    } else {
        Ok(catalog.stream_name_from_arn(arn)?)
    }
}

/// TagResource.
pub async fn tag_resource(catalog: &Arc<Catalog>, doc: &Doc<'_>) -> Result<Value, AwsError> {
    let name = resource_stream(catalog, doc)?;
    catalog.add_tags(&name, tag_map(doc)?).await?;
    Ok(empty())
}

/// UntagResource.
pub async fn untag_resource(catalog: &Arc<Catalog>, doc: &Doc<'_>) -> Result<Value, AwsError> {
    let name = resource_stream(catalog, doc)?;
    remove_tags(catalog, doc, &name).await
}

/// ListTagsForResource.
pub async fn list_tags_for_resource(
    catalog: &Arc<Catalog>,
    doc: &Doc<'_>,
) -> Result<Value, AwsError> {
    let name = resource_stream(catalog, doc)?;
    let (tags, _) = catalog
        .describe(&name, |meta, _| tags_value(&meta.tags, None, usize::MAX))
        .await?;
    Ok(Value::map().with("Tags", tags).build())
}

/// Enable/DisableEnhancedMonitoring.
pub async fn enhanced_monitoring(
    catalog: &Arc<Catalog>,
    doc: &Doc<'_>,
    enable: bool,
) -> Result<Value, AwsError> {
    let name = stream_name(catalog, doc)?;
    let metrics: Vec<String> = doc
        .str_list_required("ShardLevelMetrics")?
        .into_iter()
        .map(str::to_string)
        .collect();
    let (before, after) = catalog
        .set_enhanced_metrics(&name, &metrics, enable)
        .await?;
    let list = |names: Vec<String>| Value::List(names.into_iter().map(Value::from).collect());
    Ok(Value::map()
        .with("StreamName", name.as_str())
        .with("StreamARN", catalog.stream_arn(&name))
        .with("CurrentShardLevelMetrics", list(before))
        .with("DesiredShardLevelMetrics", list(after))
        .build())
}

/// Start/StopStreamEncryption.
pub async fn encryption(
    catalog: &Arc<Catalog>,
    doc: &Doc<'_>,
    start: bool,
) -> Result<Value, AwsError> {
    let name = stream_name(catalog, doc)?;
    let kind = doc.required(
        "EncryptionType",
        enum_member(doc, "EncryptionType", &["NONE", "KMS"])?,
    )?;
    let key_id = doc.str_required("KeyId")?;
    if kind != "KMS" {
        return Err(AwsError::invalid_argument("EncryptionType must be KMS."));
    }
    catalog
        .set_encryption(&name, start.then(|| key_id.to_string()))
        .await?;
    Ok(empty())
}

/// DescribeLimits.
pub async fn describe_limits(catalog: &Arc<Catalog>) -> Value {
    Value::map()
        .with("ShardLimit", i64::from(catalog.config().shard_limit))
        .with(
            "OpenShardCount",
            i64::from(catalog.open_shard_count().await),
        )
        .with(
            "OnDemandStreamCount",
            i64::from(catalog.on_demand_stream_count().await),
        )
        .with(
            "OnDemandStreamCountLimit",
            i64::from(catalog.config().on_demand_stream_limit),
        )
        .build()
}

/// DescribeAccountSettings: no billing commitment exists outside AWS.
pub fn describe_account_settings() -> Value {
    Value::map()
        .with(
            "MinimumThroughputBillingCommitment",
            Value::map().with("Status", "DISABLED").build(),
        )
        .build()
}

/// UpdateAccountSettings: accepted and reported as disabled, since billing does not apply.
pub fn update_account_settings(doc: &Doc<'_>) -> Result<Value, AwsError> {
    doc.doc_required("MinimumThroughputBillingCommitment")?;
    Ok(describe_account_settings())
}

/// UpdateMaxRecordSize.
pub async fn update_max_record_size(
    catalog: &Arc<Catalog>,
    doc: &Doc<'_>,
) -> Result<Value, AwsError> {
    let name = stream_arn(catalog, doc, "StreamARN")?;
    let kib = int_in_required(doc, "MaxRecordSizeInKiB", 1024, 10240)?;
    catalog.set_max_record_size(&name, kib as u32).await?;
    Ok(empty())
}

/// UpdateStreamWarmThroughput: capacity is not pre-provisioned here, so the request is
/// validated and answered with the throughput asked for.
pub async fn update_warm_throughput(
    catalog: &Arc<Catalog>,
    doc: &Doc<'_>,
) -> Result<Value, AwsError> {
    let name = stream_name(catalog, doc)?;
    let mibps = int_in_required(doc, "WarmThroughputMiBps", 0, 1_000_000)?;
    catalog.describe(&name, |_, _| ()).await?;
    let throughput = Value::map()
        .with("TargetMiBps", mibps)
        .with("CurrentMiBps", mibps)
        .build();
    Ok(Value::map()
        .with("StreamARN", catalog.stream_arn(&name))
        .with("StreamName", name.as_str())
        .with("WarmThroughput", throughput)
        .build())
}

/// PutResourcePolicy.
pub async fn put_resource_policy(catalog: &Arc<Catalog>, doc: &Doc<'_>) -> Result<Value, AwsError> {
    let name = resource_stream(catalog, doc)?;
    let policy = doc.str_required("Policy")?;
    if serde_json::from_str::<serde_json::Value>(policy).is_err() {
        return Err(AwsError::invalid_argument(
            "Policy is not a valid JSON document.",
        ));
    }
    catalog
        .set_resource_policy(&name, Some(policy.to_string()))
        .await?;
    Ok(empty())
}

/// GetResourcePolicy.
pub async fn get_resource_policy(catalog: &Arc<Catalog>, doc: &Doc<'_>) -> Result<Value, AwsError> {
    let name = resource_stream(catalog, doc)?;
    let policy = catalog
        .describe(&name, |meta, _| {
            meta.resource_policy.clone().unwrap_or_else(|| "{}".into())
        })
        .await?;
    Ok(Value::map().with("Policy", policy).build())
}

/// DeleteResourcePolicy.
pub async fn delete_resource_policy(
    catalog: &Arc<Catalog>,
    doc: &Doc<'_>,
) -> Result<Value, AwsError> {
    let name = resource_stream(catalog, doc)?;
    catalog.set_resource_policy(&name, None).await?;
    Ok(empty())
}
