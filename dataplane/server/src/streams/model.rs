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
    /// The shard group storing the shard's records (0 for a stream in one group).
    #[serde(default)]
    pub group: u32,
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

/// Where a stream spread over several shard groups keeps its records: every group holds the
/// whole description, but stores and serves only the shards placed in it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct Placement {
    /// The shard group this server is part of.
    pub group: u32,
    /// Most open shards a group takes; new shards go to the first group with room.
    pub shards_per_group: u32,
}

impl Placement {
    /// The group of shard `index` of a new stream: shards are packed in index order.
    pub fn initial_group(&self, index: u32) -> u32 {
        index / self.shards_per_group.max(1)
    }
}

/// One reshard of a stream, as recorded in its history. Resharding is deterministic, so a shard
/// group that replays another group's history from the same start ends with the same shards.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "op")]
pub enum ReshardOp {
    /// SplitShard.
    Split {
        /// The parent's index.
        shard: u32,
        /// The first hash key of the second child.
        #[serde(with = "super::hash_key::u128_string")]
        at: u128,
    },
    /// MergeShards.
    Merge {
        /// The first parent's index.
        shard: u32,
        /// The adjacent parent's index.
        adjacent: u32,
    },
    /// UpdateShardCount.
    Resize {
        /// The target count.
        target: u32,
    },
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
    /// Which shards this server hosts when the stream spans several shard groups; `None` when
    /// it hosts them all.
    #[serde(default)]
    pub placement: Option<Placement>,
    /// Every reshard made, oldest first: what another shard group of the stream replays to
    /// catch up.
    #[serde(default)]
    pub reshards: Vec<ReshardOp>,
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

    /// Whether this server stores and serves the records of `shard`.
    pub fn hosts(&self, shard: &ShardMeta) -> bool {
        self.placement.is_none_or(|p| p.group == shard.group)
    }

    /// The group a shard opened now is placed in: the first group with fewer than
    /// `shards_per_group` open shards, else a new group after the last. Every group of a stream
    /// computes the same answer from the same description, which is what keeps them in step.
    pub fn group_for_new_shard(&self) -> u32 {
        let Some(placement) = self.placement else {
            return 0;
        };
        let groups = self.shards.iter().map(|s| s.group + 1).max().unwrap_or(0);
        (0..groups)
            .find(|&group| {
                let open = self
                    .shards
                    .iter()
                    .filter(|s| s.group == group && s.is_open())
                    .count();
                open < placement.shards_per_group.max(1) as usize
            })
            .unwrap_or(groups)
    }

    /// Places the shards opened by one UpdateShardCount (indexes from `first_new` on) once it
    /// is complete: the open ones first-fit into groups with fewer than `shards_per_group` open
    /// shards, in index order, opening groups after the last as needed; the ones it opened and
    /// closed again on the way (they never took a record) stay with their parent. Placing only
    /// the result keeps the intermediate steps from opening groups the result does not need.
    pub fn place_resharded(&mut self, first_new: u32) {
        let Some(placement) = self.placement else {
            return;
        };
        let per_group = placement.shards_per_group.max(1) as usize;
        let mut open_in: BTreeMap<u32, usize> = BTreeMap::new();
        for shard in self.shards.iter().filter(|s| s.index < first_new) {
            let count = open_in.entry(shard.group).or_default();
            *count += usize::from(shard.is_open());
        }
        let parents: BTreeMap<u32, u32> = self.shards.iter().map(|s| (s.index, s.group)).collect();
        for shard in self.shards.iter_mut().filter(|s| s.index >= first_new) {
            if shard.is_open() {
                let group = (0u32..)
                    .find(|g| open_in.get(g).copied().unwrap_or(0) < per_group)
                    .unwrap_or(0);
                *open_in.entry(group).or_default() += 1;
                shard.group = group;
            } else if let Some(group) = shard.parent.and_then(|p| parents.get(&p)) {
                shard.group = *group;
            }
        }
    }

    /// Retention in milliseconds.
    pub fn retention_ms(&self) -> i64 {
        i64::from(self.retention_hours) * 3_600_000
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn shard(index: u32, group: u32, open: bool) -> ShardMeta {
        ShardMeta {
            index,
            range: HashRange { start: 0, end: 0 },
            parent: None,
            adjacent_parent: None,
            created_ms: 0,
            closed: (!open).then_some(ShardClosed {
                end_offset: 0,
                closed_ms: 0,
            }),
            encryption_changes: Vec::new(),
            group,
        }
    }

    fn stream(shards: Vec<ShardMeta>, placement: Option<Placement>) -> StreamMeta {
        StreamMeta {
            name: "s".into(),
            epoch: 1,
            created_ms: 0,
            mode: StreamMode::Provisioned,
            retention_hours: 24,
            max_record_size_kib: 1024,
            shards,
            tags: BTreeMap::new(),
            consumers: Vec::new(),
            encryption_key_id: None,
            enhanced_metrics: BTreeSet::new(),
            shard_count_updates: Vec::new(),
            resource_policy: None,
            placement,
            reshards: Vec::new(),
        }
    }

    #[test]
    fn new_shards_fill_the_first_group_with_room_then_open_a_new_one() {
        let placement = Some(Placement {
            group: 0,
            shards_per_group: 2,
        });
        let full = stream(
            vec![shard(0, 0, true), shard(1, 0, true), shard(2, 1, true)],
            placement,
        );
        assert_eq!(full.group_for_new_shard(), 1);
        let mut packed = full.clone();
        packed.shards.push(shard(3, 1, true));
        assert_eq!(packed.group_for_new_shard(), 2);
        packed.shards[0] = shard(0, 0, false);
        assert_eq!(packed.group_for_new_shard(), 0, "a closed shard frees room");
        assert_eq!(stream(vec![], placement).group_for_new_shard(), 0);
    }

    #[test]
    fn a_reshard_places_only_its_result() {
        let placement = Some(Placement {
            group: 0,
            shards_per_group: 2,
        });
        // Four closed originals in groups 0 and 1, two transient shards, six new open ones.
        let mut shards = vec![
            shard(0, 0, false),
            shard(1, 0, false),
            shard(2, 1, false),
            shard(3, 1, false),
        ];
        let mut transient = shard(4, 7, false);
        transient.parent = Some(2);
        shards.push(transient);
        shards.push(shard(5, 7, false));
        for index in 6..12 {
            shards.push(shard(index, 9, true));
        }
        let mut meta = stream(shards, placement);
        meta.place_resharded(4);
        let groups: Vec<(u32, u32)> = meta.shards.iter().map(|s| (s.index, s.group)).collect();
        assert_eq!(
            groups,
            [
                (0, 0),
                (1, 0),
                (2, 1),
                (3, 1),
                (4, 1),
                (5, 7),
                (6, 0),
                (7, 0),
                (8, 1),
                (9, 1),
                (10, 2),
                (11, 2)
            ]
        );
    }

    #[test]
    fn a_stream_in_one_group_hosts_everything() {
        let alone = stream(vec![shard(0, 0, true)], None);
        assert!(alone.hosts(&shard(7, 3, true)));
        assert_eq!(alone.group_for_new_shard(), 0);
        let placed = stream(
            vec![shard(0, 0, true)],
            Some(Placement {
                group: 1,
                shards_per_group: 4,
            }),
        );
        assert!(!placed.hosts(&shard(0, 0, true)));
        assert!(placed.hosts(&shard(5, 1, true)));
        assert_eq!(
            Placement {
                group: 0,
                shards_per_group: 4
            }
            .initial_group(9),
            2
        );
    }

    #[test]
    fn descriptions_without_placement_still_load() {
        let old = r#"{"index":3,"range":{"start":"0","end":"5"},"parent":null,"adjacent_parent":null,"created_ms":1,"closed":null}"#;
        let shard: ShardMeta = serde_json::from_str(old).expect("old format");
        assert_eq!(shard.group, 0);
    }
}
