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

/// A change of a stream's settings, as a replicated shard group replicates it.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub enum SettingsChange {
    /// IncreaseStreamRetentionPeriod (`increase`) or DecreaseStreamRetentionPeriod.
    Retention {
        /// The new retention period.
        hours: u32,
        /// Whether the period may only grow (else only shrink).
        increase: bool,
    },
    /// AddTagsToStream / TagResource.
    AddTags(BTreeMap<String, String>),
    /// RemoveTagsFromStream / UntagResource.
    RemoveTags(Vec<String>),
    /// UpdateStreamMode.
    Mode(StreamMode),
    /// UpdateMaxRecordSize, in KiB.
    MaxRecordSize(u32),
    /// EnableEnhancedMonitoring (`enable`) or DisableEnhancedMonitoring of shard-level metrics
    /// (validated names, `ALL` already expanded).
    EnhancedMetrics {
        /// The metrics.
        names: Vec<String>,
        /// Whether they are enabled (else disabled).
        enable: bool,
    },
    /// StartStreamEncryption with a key id, or StopStreamEncryption.
    Encryption(Option<String>),
    /// PutResourcePolicy, or DeleteResourcePolicy.
    ResourcePolicy(Option<String>),
}

impl Catalog {
    /// Makes a settings change: through the [`Replicator`](super::Replicator) when the
    /// catalog is a replica of a shard group, else here.
    pub async fn change_settings(
        &self,
        stream_name: &str,
        change: SettingsChange,
    ) -> ApiResult<()> {
        if let Some(replicator) = self.replicator() {
            return replicator.change_settings(stream_name, change).await;
        }
        self.apply_settings(stream_name, None, change).await
    }

    /// Makes a settings change here, only to the incarnation created at `epoch` (seconds)
    /// when one is given. Deterministic: the same changes in the same order give the same
    /// descriptions and the same refusals.
    pub async fn apply_settings(
        &self,
        stream_name: &str,
        epoch: Option<u64>,
        change: SettingsChange,
    ) -> ApiResult<()> {
        self.check_incarnation(stream_name, epoch)?;
        match change {
            SettingsChange::Retention { hours, increase } => {
                self.retention_here(stream_name, hours, increase).await
            }
            SettingsChange::AddTags(tags) => self.add_tags_here(stream_name, tags).await,
            SettingsChange::RemoveTags(keys) => {
                self.update_here(stream_name, |_, meta| {
                    for key in &keys {
                        meta.tags.remove(key);
                    }
                    Ok(())
                })
                .await
            }
            SettingsChange::Mode(mode) => {
                self.update_here(stream_name, |_, meta| {
                    meta.mode = mode;
                    Ok(())
                })
                .await
            }
            SettingsChange::MaxRecordSize(kib) => {
                self.update_here(stream_name, |_, meta| {
                    meta.max_record_size_kib = kib;
                    Ok(())
                })
                .await
            }
            SettingsChange::EnhancedMetrics { names, enable } => {
                self.update_here(stream_name, |_, meta| {
                    for name in names {
                        if enable {
                            meta.enhanced_metrics.insert(name);
                        } else {
                            meta.enhanced_metrics.remove(&name);
                        }
                    }
                    Ok(())
                })
                .await
            }
            SettingsChange::Encryption(key_id) => self.encryption_here(stream_name, key_id).await,
            SettingsChange::ResourcePolicy(policy) => {
                self.update_here(stream_name, |_, meta| {
                    meta.resource_policy = policy;
                    Ok(())
                })
                .await
            }
        }
    }

    /// Runs `change` on the stream's description under its write lock and persists the result
    /// if `change` succeeded and changed it.
    pub(super) async fn update_here<T>(
        &self,
        stream_name: &str,
        change: impl FnOnce(&Stream, &mut StreamMeta) -> ApiResult<T>,
    ) -> ApiResult<T> {
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
        self.change_settings(stream_name, SettingsChange::Retention { hours, increase })
            .await
    }

    async fn retention_here(&self, stream_name: &str, hours: u32, increase: bool) -> ApiResult<()> {
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
        self.update_here(stream_name, |stream, meta| {
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
        self.change_settings(stream_name, SettingsChange::AddTags(tags))
            .await
    }

    async fn add_tags_here(
        &self,
        stream_name: &str,
        tags: BTreeMap<String, String>,
    ) -> ApiResult<()> {
        self.update_here(stream_name, |stream, meta| {
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
        self.change_settings(stream_name, SettingsChange::RemoveTags(keys.to_vec()))
            .await
    }

    /// UpdateStreamMode.
    pub async fn set_mode(&self, stream_name: &str, mode: StreamMode) -> ApiResult<()> {
        self.change_settings(stream_name, SettingsChange::Mode(mode))
            .await
    }

    /// UpdateMaxRecordSize.
    pub async fn set_max_record_size(&self, stream_name: &str, kib: u32) -> ApiResult<()> {
        self.change_settings(stream_name, SettingsChange::MaxRecordSize(kib))
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
        let before = self.describe(stream_name, enabled_metrics).await?;
        self.change_settings(
            stream_name,
            SettingsChange::EnhancedMetrics { names, enable },
        )
        .await?;
        let after = self.describe(stream_name, enabled_metrics).await?;
        Ok((before, after))
    }

    /// Start/StopStreamEncryption: records appended from now on are (or are no longer)
    /// encrypted at rest; each open shard records the offset where that begins.
    pub async fn set_encryption(&self, stream_name: &str, key_id: Option<String>) -> ApiResult<()> {
        self.change_settings(stream_name, SettingsChange::Encryption(key_id))
            .await
    }

    async fn encryption_here(&self, stream_name: &str, key_id: Option<String>) -> ApiResult<()> {
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
        self.change_settings(stream_name, SettingsChange::ResourcePolicy(policy))
            .await
    }
}

fn enabled_metrics(meta: &StreamMeta, _: &StreamState) -> Vec<String> {
    meta.enhanced_metrics.iter().cloned().collect()
}
