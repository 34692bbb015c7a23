//! Changes to a stream's settings: retention, tags, mode, encryption, monitoring, limits.

use std::collections::BTreeMap;

use super::error::{ApiError, ApiResult, ErrorKind};
use super::model::{EncryptionChange, StreamMeta, StreamMode};
use super::{Catalog, Stream, StreamState};

/// Every shard-level metric EnableEnhancedMonitoring knows; `ALL` stands for these.
pub const SHARD_LEVEL_METRICS: [&str; 7] = [
    "IncomingBytes",
    "IncomingRecords",
    "OutgoingBytes",
    "OutgoingRecords",
    "WriteProvisionedThroughputExceeded",
    "ReadProvisionedThroughputExceeded",
    "IteratorAgeMilliseconds",
];

/// Most tags on one stream.
pub const MAX_TAGS: usize = 50;

impl Catalog {
    /// Runs `change` on the stream's description under its write lock and persists the result
    /// if `change` succeeded.
    pub async fn update<T>(
        &self,
        stream_name: &str,
        change: impl FnOnce(&Stream, &mut StreamMeta) -> ApiResult<T>,
    ) -> ApiResult<T> {
        self.refuse_unreplicated(&format!("Changing stream {stream_name}"))?;
        let stream = self.stream(stream_name)?;
        let mut state = stream.state.write().await;
        let mut meta = state.meta.clone();
        let result = change(&stream, &mut meta)?;
        if meta != state.meta {
            self.save(&stream, &meta)?;
            state.meta = meta;
            state.rebuild_routes();
        }
        Ok(result)
    }

    /// IncreaseStreamRetentionPeriod / DecreaseStreamRetentionPeriod.
    pub async fn set_retention(
        &self,
        stream_name: &str,
        hours: u32,
        increase: bool,
    ) -> ApiResult<()> {
        let account = self.config.account.clone();
        if hours < 24 {
            return Err(ApiError::invalid(format!(
                "Minimum allowed retention period is 24 hours. Requested retention period ({hours} hours) is too short."
            )));
        }
        if hours > 8760 {
            return Err(ApiError::invalid(format!(
                "Maximum allowed retention period is 8760 hours. Requested retention period ({hours} hours) is too long."
            )));
        }
        self.update(stream_name, |stream, meta| {
            let current = meta.retention_hours;
            if increase && hours < current {
                return Err(ApiError::invalid(format!(
                    "Requested retention period ({hours} hours) for stream {} under account {account} can not be shorter than existing retention period ({current} hours). Use DecreaseRetentionPeriod API.",
                    stream.name
                )));
            }
            if !increase && hours > current {
                return Err(ApiError::invalid(format!(
                    "Requested retention period ({hours} hours) for stream {} under account {account} can not be longer than existing retention period ({current} hours). Use IncreaseRetentionPeriod API.",
                    stream.name
                )));
            }
            meta.retention_hours = hours;
            Ok(())
        })
        .await
    }

    /// Adds or replaces tags.
    pub async fn add_tags(
        &self,
        stream_name: &str,
        tags: BTreeMap<String, String>,
    ) -> ApiResult<()> {
        self.update(stream_name, |stream, meta| {
            let mut merged = meta.tags.clone();
            merged.extend(tags);
            if merged.len() > MAX_TAGS {
                return Err(ApiError::new(
                    ErrorKind::LimitExceeded,
                    format!(
                        "Failed to add tags to stream {} under account {} because a given stream can have a maximum of {MAX_TAGS} tags.",
                        stream.name, self.config.account
                    ),
                ));
            }
            meta.tags = merged;
            Ok(())
        })
        .await
    }

    /// Removes tags by key; absent keys are ignored.
    pub async fn remove_tags(&self, stream_name: &str, keys: &[String]) -> ApiResult<()> {
        self.update(stream_name, |_, meta| {
            for key in keys {
                meta.tags.remove(key);
            }
            Ok(())
        })
        .await
    }

    /// UpdateStreamMode.
    pub async fn set_mode(&self, stream_name: &str, mode: StreamMode) -> ApiResult<()> {
        self.update(stream_name, |_, meta| {
            meta.mode = mode;
            Ok(())
        })
        .await
    }

    /// UpdateMaxRecordSize.
    pub async fn set_max_record_size(&self, stream_name: &str, kib: u32) -> ApiResult<()> {
        self.update(stream_name, |_, meta| {
            meta.max_record_size_kib = kib;
            Ok(())
        })
        .await
    }

    /// Enable/DisableEnhancedMonitoring; returns the metrics enabled before and after.
    pub async fn set_enhanced_metrics(
        &self,
        stream_name: &str,
        metrics: &[String],
        enable: bool,
    ) -> ApiResult<(Vec<String>, Vec<String>)> {
        let mut names = Vec::new();
        for metric in metrics {
            if metric == "ALL" {
                names.extend(SHARD_LEVEL_METRICS.iter().map(|m| m.to_string()));
            } else if SHARD_LEVEL_METRICS.contains(&metric.as_str()) {
                names.push(metric.clone());
            } else {
                return Err(ApiError::new(
                    ErrorKind::Validation,
                    format!(
                        "1 validation error detected: Value '[{metric}]' at 'shardLevelMetrics' failed to satisfy constraint: Member must satisfy constraint: [Member must satisfy enum value set: [{}, ALL]]",
                        SHARD_LEVEL_METRICS.join(", ")
                    ),
                ));
            }
        }
        self.update(stream_name, |_, meta| {
            let before: Vec<String> = meta.enhanced_metrics.iter().cloned().collect();
            for name in names {
                if enable {
                    meta.enhanced_metrics.insert(name);
                } else {
                    meta.enhanced_metrics.remove(&name);
                }
            }
            Ok((before, meta.enhanced_metrics.iter().cloned().collect()))
        })
        .await
    }

    /// Start/StopStreamEncryption: records appended from now on are (or are no longer)
    /// encrypted at rest; each open shard records the offset where that begins.
    pub async fn set_encryption(&self, stream_name: &str, key_id: Option<String>) -> ApiResult<()> {
        self.refuse_unreplicated("StartStreamEncryption / StopStreamEncryption")?;
        let stream = self.stream(stream_name)?;
        let mut state = stream.state.write().await;
        let encrypted = key_id.is_some();
        if state.meta.encryption_key_id.is_some() == encrypted
            && state.meta.encryption_key_id == key_id
        {
            return Ok(());
        }
        let mut meta = state.meta.clone();
        meta.encryption_key_id = key_id;
        let hosted: Vec<u32> = meta
            .shards
            .iter()
            .filter(|s| s.is_open() && meta.hosts(s))
            .map(|s| s.index)
            .collect();
        for shard in meta.shards.iter_mut().filter(|s| hosted.contains(&s.index)) {
            let handle = state
                .shards
                .get(&shard.index)
                .cloned()
                .ok_or_else(|| ApiError::internal("shard without a log"))?;
            let from_offset = handle.barrier().await?;
            shard.encryption_changes.push(EncryptionChange {
                from_offset,
                encrypted,
            });
        }
        self.save(&stream, &meta)?;
        let StreamState { meta: current, .. } = &mut *state;
        *current = meta;
        state.rebuild_routes();
        Ok(())
    }

    /// Stores a resource policy (or removes it with `None`).
    pub async fn set_resource_policy(
        &self,
        stream_name: &str,
        policy: Option<String>,
    ) -> ApiResult<()> {
        self.update(stream_name, |_, meta| {
            meta.resource_policy = policy;
            Ok(())
        })
        .await
    }
}
