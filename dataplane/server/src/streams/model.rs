//! The persisted description of streams: everything but the records themselves.
//!
//! The catalog file holds these types as JSON; changing a field is a format change.

use std::collections::{BTreeMap, BTreeSet};

use serde::{Deserialize, Serialize};

use super::hash_key::HashRange;

/// Capacity mode of a stream.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum StreamMode {
    /// A fixed number of shards, changed by resharding.
    Provisioned,
    /// Capacity managed by the service.
    OnDemand,
}

impl StreamMode {
    /// The Kinesis name (`PROVISIONED`, `ON_DEMAND`).
    pub fn as_str(self) -> &'static str {
        match self {
            StreamMode::Provisioned => "PROVISIONED",
            StreamMode::OnDemand => "ON_DEMAND",
        }
    }

    /// Parses the Kinesis name.
    pub fn parse(text: &str) -> Option<StreamMode> {
        match text {
            "PROVISIONED" => Some(StreamMode::Provisioned),
            "ON_DEMAND" => Some(StreamMode::OnDemand),
            _ => None,
        }
    }
}

/// A shard's place in the stream: its key range, lineage and whether it still takes writes.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ShardMeta {
    /// Index in `shardId-<index:012>`; new shards take the next index of the stream.
    pub index: u32,
    /// The hash keys routed to this shard while it is open.
    pub range: HashRange,
    /// The shard this one was split from, or the first of the two it was merged from.
    pub parent: Option<u32>,
    /// The second shard of a merge.
    pub adjacent_parent: Option<u32>,
    /// When the shard was opened, in milliseconds since the Unix epoch.
    pub created_ms: i64,
    /// Set once the shard is closed by resharding.
    pub closed: Option<ShardClosed>,
    /// Offsets at which encryption was switched on or off, in order.
    #[serde(default)]
    pub encryption_changes: Vec<EncryptionChange>,
}

/// The end of a closed shard.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct ShardClosed {
    /// One past the last record's offset; no record is ever appended at or after it.
    pub end_offset: u64,
    /// When it was closed, in milliseconds since the Unix epoch.
    pub closed_ms: i64,
}

/// From `from_offset` on, records of the shard are stored encrypted (or not).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct EncryptionChange {
    /// First offset the change applies to.
    pub from_offset: u64,
    /// Whether records from that offset on are encrypted.
    pub encrypted: bool,
}

impl ShardMeta {
    /// The Kinesis shard id.
    pub fn id(&self) -> String {
        shard_id(self.index)
    }

    /// Whether the shard still takes writes.
    pub fn is_open(&self) -> bool {
        self.closed.is_none()
    }

    /// Whether the record at `offset` is stored encrypted.
    pub fn is_encrypted_at(&self, offset: u64) -> bool {
        self.encryption_changes
            .iter()
            .rev()
            .find(|change| change.from_offset <= offset)
            .is_some_and(|change| change.encrypted)
    }

    /// Whether the shard was open at `time_ms`.
    pub fn open_at(&self, time_ms: i64) -> bool {
        self.created_ms <= time_ms && self.closed.is_none_or(|c| time_ms < c.closed_ms)
    }
}

/// Formats a shard index as a Kinesis shard id.
pub fn shard_id(index: u32) -> String {
    format!("shardId-{index:012}")
}

/// Parses `shardId-000000000007` (leniently, any number of digits) into 7.
pub fn parse_shard_id(id: &str) -> Option<u32> {
    let digits = id.strip_prefix("shardId-")?;
    if digits.is_empty() || !digits.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    digits.parse().ok()
}

/// An enhanced fan-out consumer.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ConsumerMeta {
    /// Consumer name, unique in the stream.
    pub name: String,
    /// Registration time in seconds since the Unix epoch; part of the ARN.
    pub created_s: i64,
}

/// Everything persisted about one stream.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct StreamMeta {
    /// The stream name.
    pub name: String,
    /// Creation time in seconds; part of every sequence number of the stream.
    pub epoch: u64,
    /// Creation time in milliseconds.
    pub created_ms: i64,
    /// Capacity mode.
    pub mode: StreamMode,
    /// Records older than this are no longer readable.
    pub retention_hours: u32,
    /// Largest record accepted, in KiB.
    pub max_record_size_kib: u32,
    /// All retained shards, ordered by index.
    pub shards: Vec<ShardMeta>,
    /// Stream tags.
    pub tags: BTreeMap<String, String>,
    /// Registered enhanced fan-out consumers.
    pub consumers: Vec<ConsumerMeta>,
    /// The KMS key id given to StartStreamEncryption, while encryption is on.
    pub encryption_key_id: Option<String>,
    /// Shard-level metrics enabled by EnableEnhancedMonitoring.
    pub enhanced_metrics: BTreeSet<String>,
    /// Times (ms) of recent UpdateShardCount calls, for the 10-per-24-hours limit.
    pub shard_count_updates: Vec<i64>,
    /// The resource policy document, if one was put.
    pub resource_policy: Option<String>,
}

impl StreamMeta {
    /// The shard with `index`, if retained.
    pub fn shard(&self, index: u32) -> Option<&ShardMeta> {
        self.shards.iter().find(|s| s.index == index)
    }

    /// The shards that take writes, ordered by hash range.
    pub fn open_shards(&self) -> Vec<&ShardMeta> {
        let mut open: Vec<&ShardMeta> = self.shards.iter().filter(|s| s.is_open()).collect();
        open.sort_by_key(|s| s.range.start);
        open
    }

    /// The index the next new shard takes.
    pub fn next_shard_index(&self) -> u32 {
        self.shards.iter().map(|s| s.index + 1).max().unwrap_or(0)
    }

    /// The shards created from `index` by a split or merge.
    pub fn children_of(&self, index: u32) -> Vec<&ShardMeta> {
        self.shards
            .iter()
            .filter(|s| s.parent == Some(index) || s.adjacent_parent == Some(index))
            .collect()
    }

    /// Retention in milliseconds.
    pub fn retention_ms(&self) -> i64 {
        i64::from(self.retention_hours) * 3_600_000
    }
}
