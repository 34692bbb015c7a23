//! The shard layout of a stream: every shard's hash-key range, lineage, state and shard group,
//! and the document (`shard-map.json`) the data plane reads it from.
//!
//! Placement is sticky: once a shard is in a group it stays there, because its data lives on that
//! group's volumes. A fresh stream packs its shards into groups of `shardsPerGroup` in shard
//! order, so `groups = ceil(open shards / shardsPerGroup)`.

use std::collections::{BTreeMap, BTreeSet};

use serde::{Deserialize, Serialize};

use crate::crd::{HashKeyRange, ShardState, ShardStatus};

/// Version of the `shard-map.json` document this operator writes and reads.
pub const SHARD_MAP_FORMAT: u32 = 1;

/// One shard of a layout.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Shard {
    /// The number in `shardId-<index:012>`; new shards take the next index of the stream.
    pub index: u32,
    /// First hash key owned.
    pub start: u128,
    /// Last hash key owned (inclusive).
    pub end: u128,
    /// Parent shard index (split or merge).
    pub parent: Option<u32>,
    /// Second parent of a merge.
    pub adjacent_parent: Option<u32>,
    /// Open or closed.
    pub state: ShardState,
    /// The shard group hosting the shard.
    pub group: u32,
}

impl Shard {
    /// The Kinesis shard id of the shard.
    pub fn id(&self) -> String {
        shard_id(self.index)
    }
}

/// The Kinesis spelling of shard `index`: `shardId-000000000007`.
pub fn shard_id(index: u32) -> String {
    format!("shardId-{index:012}")
}

/// Parses `shardId-000000000007` into 7.
pub fn parse_shard_id(id: &str) -> Option<u32> {
    let digits = id.strip_prefix("shardId-")?;
    if digits.is_empty() || !digits.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    digits.parse().ok()
}

/// Why a recorded shard map could not be read back.
#[derive(Debug, Clone, thiserror::Error, PartialEq, Eq)]
pub enum LayoutError {
    /// The document is not the JSON this operator writes.
    #[error("shard map is not valid JSON of format {SHARD_MAP_FORMAT}: {0}")]
    Malformed(String),
    /// A shard id is not `shardId-<digits>`.
    #[error("shard map names an invalid shard id {0:?}")]
    BadShardId(String),
    /// A hash key is not a decimal 128-bit number.
    #[error("shard {shard} has an invalid hash key {key:?}")]
    BadHashKey {
        /// The shard.
        shard: String,
        /// The offending key.
        key: String,
    },
    /// The open shards do not cover the hash-key space exactly once.
    #[error("open shards do not cover the hash-key space exactly once")]
    NotAPartition,
}

/// All shards of a stream, ordered by index.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ShardLayout {
    shards: Vec<Shard>,
}

impl ShardLayout {
    /// The layout of a new stream: `count` open shards dividing the hash-key space evenly (equal
    /// widths, the last absorbing the remainder, as Kinesis and the data plane do), packed into
    /// groups of `shards_per_group` in shard order.
    pub fn initial(count: u32, shards_per_group: u32) -> Self {
        let count = count.max(1);
        let per_group = shards_per_group.max(1);
        let shards = divide_evenly(count)
            .into_iter()
            .enumerate()
            .map(|(i, (start, end))| {
                let index = u32::try_from(i).unwrap_or(u32::MAX);
                Shard {
                    index,
                    start,
                    end,
                    parent: None,
                    adjacent_parent: None,
                    state: ShardState::Open,
                    group: index / per_group,
                }
            })
            .collect();
        ShardLayout { shards }
    }

    /// Every shard, ordered by index.
    pub fn shards(&self) -> &[Shard] {
        &self.shards
    }

    /// Number of open shards.
    pub fn open_count(&self) -> u32 {
        let open = self
            .shards
            .iter()
            .filter(|s| s.state == ShardState::Open)
            .count();
        u32::try_from(open).unwrap_or(u32::MAX)
    }

    /// The shard groups in use (hosting at least one shard), ascending.
    pub fn groups(&self) -> Vec<u32> {
        let set: BTreeSet<u32> = self.shards.iter().map(|s| s.group).collect();
        set.into_iter().collect()
    }

    /// The shards hosted by `group`, ordered by index.
    pub fn shards_in_group(&self, group: u32) -> impl Iterator<Item = &Shard> {
        self.shards.iter().filter(move |s| s.group == group)
    }

    /// The layout as the status reports it.
    pub fn to_status(&self) -> Vec<ShardStatus> {
        self.shards
            .iter()
            .map(|s| ShardStatus {
                shard_id: s.id(),
                hash_key_range: HashKeyRange {
                    starting_hash_key: s.start.to_string(),
                    ending_hash_key: s.end.to_string(),
                },
                parent_shard_id: s.parent.map(shard_id),
                adjacent_parent_shard_id: s.adjacent_parent.map(shard_id),
                state: s.state,
                group: i32::try_from(s.group).unwrap_or(i32::MAX),
            })
            .collect()
    }

    /// The `shard-map.json` document for the data plane. Deterministic: the same layout and
    /// header always render to the same bytes.
    pub fn to_document(&self, header: &ShardMapHeader) -> String {
        let shards = self
            .shards
            .iter()
            .map(|s| {
                (
                    s.id(),
                    ShardEntry {
                        group: s.group,
                        starting_hash_key: s.start.to_string(),
                        ending_hash_key: s.end.to_string(),
                        state: s.state,
                        parent_shard_id: s.parent.map(shard_id),
                        adjacent_parent_shard_id: s.adjacent_parent.map(shard_id),
                    },
                )
            })
            .collect();
        let doc = ShardMapDocument {
            format: SHARD_MAP_FORMAT,
            header: header.clone(),
            shards,
        };
        // Serializing plain structs, strings and integers into a String cannot fail.
        serde_json::to_string_pretty(&doc).unwrap_or_default()
    }

    /// Reads back a document written by [`ShardLayout::to_document`], checking that the open
    /// shards still partition the hash-key space.
    pub fn from_document(text: &str) -> Result<Self, LayoutError> {
        let doc: ShardMapDocument =
            serde_json::from_str(text).map_err(|e| LayoutError::Malformed(e.to_string()))?;
        if doc.format != SHARD_MAP_FORMAT {
            return Err(LayoutError::Malformed(format!(
                "format {} is not {SHARD_MAP_FORMAT}",
                doc.format
            )));
        }
        let parse_parent = |id: &Option<String>| -> Result<Option<u32>, LayoutError> {
            id.as_deref()
                .map(|p| parse_shard_id(p).ok_or_else(|| LayoutError::BadShardId(p.to_owned())))
                .transpose()
        };
        let mut shards = Vec::with_capacity(doc.shards.len());
        for (id, entry) in &doc.shards {
            let index = parse_shard_id(id).ok_or_else(|| LayoutError::BadShardId(id.clone()))?;
            let key = |k: &str| {
                k.parse::<u128>().map_err(|_| LayoutError::BadHashKey {
                    shard: id.clone(),
                    key: k.to_owned(),
                })
            };
            shards.push(Shard {
                index,
                start: key(&entry.starting_hash_key)?,
                end: key(&entry.ending_hash_key)?,
                parent: parse_parent(&entry.parent_shard_id)?,
                adjacent_parent: parse_parent(&entry.adjacent_parent_shard_id)?,
                state: entry.state,
                group: entry.group,
            });
        }
        ShardLayout::new(shards)
    }

    /// A layout of `shards` in any order; refused unless the open ones cover the hash-key space
    /// exactly once.
    pub fn new(mut shards: Vec<Shard>) -> Result<Self, LayoutError> {
        shards.sort_by_key(|s| s.index);
        let layout = ShardLayout { shards };
        if !layout.open_shards_partition_the_space() {
            return Err(LayoutError::NotAPartition);
        }
        Ok(layout)
    }

    fn open_shards_partition_the_space(&self) -> bool {
        let mut open: Vec<&Shard> = self
            .shards
            .iter()
            .filter(|s| s.state == ShardState::Open)
            .collect();
        open.sort_by_key(|s| s.start);
        let mut next: Option<u128> = Some(0);
        for s in open {
            if Some(s.start) != next || s.end < s.start {
                return false;
            }
            next = s.end.checked_add(1);
        }
        next.is_none()
    }
}

/// Stream-wide settings written at the top of `shard-map.json`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ShardMapHeader {
    /// The stream's API name.
    pub stream: String,
    /// The stream's ARN.
    #[serde(rename = "streamARN")]
    pub stream_arn: String,
    /// Retention in hours.
    pub retention_period_hours: i32,
    /// Largest record accepted, in KiB.
    #[serde(rename = "maxRecordSizeKiB")]
    pub max_record_size_kib: i32,
    /// Replicas per shard group.
    pub replication_factor: i32,
}

#[derive(Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
struct ShardMapDocument {
    format: u32,
    #[serde(flatten)]
    header: ShardMapHeader,
    shards: BTreeMap<String, ShardEntry>,
}

#[derive(Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
struct ShardEntry {
    group: u32,
    starting_hash_key: String,
    ending_hash_key: String,
    state: ShardState,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    parent_shard_id: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    adjacent_parent_shard_id: Option<String>,
}

/// Splits `[0, 2^128)` into `count` inclusive ranges of width `floor(2^128 / count)`, the last
/// absorbing the remainder. Must match the data plane's division, which clients observe through
/// `ListShards`.
pub fn divide_evenly(count: u32) -> Vec<(u128, u128)> {
    if count <= 1 {
        return vec![(0, u128::MAX)];
    }
    let n = u128::from(count);
    // floor(2^128 / n) without overflow: 2^128 = (u128::MAX / n) * n + (u128::MAX % n) + 1.
    let width = u128::MAX / n + u128::from(u128::MAX % n == n - 1);
    (0..n)
        .map(|i| {
            let start = i * width;
            let end = if i + 1 == n {
                u128::MAX
            } else {
                (i + 1) * width - 1
            };
            (start, end)
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn header() -> ShardMapHeader {
        ShardMapHeader {
            stream: "orders".into(),
            stream_arn: "arn:aws:kinesis:us-east-1:000000000000:stream/orders".into(),
            retention_period_hours: 24,
            max_record_size_kib: 1024,
            replication_factor: 3,
        }
    }

    #[test]
    fn four_shards_split_at_quarters() {
        let ranges = divide_evenly(4);
        let quarter = 1u128 << 126;
        assert_eq!(ranges[0], (0, quarter - 1));
        assert_eq!(ranges[1], (quarter, 2 * quarter - 1));
        assert_eq!(ranges[3], (3 * quarter, u128::MAX));
    }

    #[test]
    fn even_division_has_no_gaps_for_any_count() {
        for count in [1, 2, 3, 5, 7, 10, 64, 1000] {
            let ranges = divide_evenly(count);
            assert_eq!(ranges.len(), count as usize);
            assert_eq!(ranges[0].0, 0);
            assert_eq!(ranges[ranges.len() - 1].1, u128::MAX);
            for pair in ranges.windows(2) {
                assert_eq!(pair[0].1 + 1, pair[1].0, "count {count}");
            }
        }
    }

    #[test]
    fn ten_shards_eight_per_group_make_two_groups() {
        let layout = ShardLayout::initial(10, 8);
        assert_eq!(layout.groups(), [0, 1]);
        assert_eq!(layout.shards_in_group(0).count(), 8);
        let second: Vec<_> = layout.shards_in_group(1).map(Shard::id).collect();
        assert_eq!(second, ["shardId-000000000008", "shardId-000000000009"]);
        assert_eq!(layout.open_count(), 10);
    }

    #[test]
    fn group_count_is_the_ceiling_of_shards_over_group_size() {
        for (shards, per_group, groups) in [
            (1, 8, 1),
            (8, 8, 1),
            (9, 8, 2),
            (16, 8, 2),
            (17, 8, 3),
            (5, 1, 5),
        ] {
            assert_eq!(
                ShardLayout::initial(shards, per_group).groups().len(),
                groups,
                "{shards} shards, {per_group} per group"
            );
        }
    }

    #[test]
    fn shard_ids_are_kinesis_shaped() {
        assert_eq!(shard_id(7), "shardId-000000000007");
        assert_eq!(parse_shard_id("shardId-000000000007"), Some(7));
        assert_eq!(parse_shard_id("shardId-"), None);
        assert_eq!(parse_shard_id("shard-1"), None);
    }

    #[test]
    fn document_round_trips_and_is_deterministic() {
        let layout = ShardLayout::initial(10, 4);
        let text = layout.to_document(&header());
        assert_eq!(text, layout.to_document(&header()));
        assert_eq!(ShardLayout::from_document(&text), Ok(layout));
        let json: serde_json::Value = serde_json::from_str(&text).expect("json");
        assert_eq!(json["stream"], "orders");
        assert_eq!(json["shards"]["shardId-000000000009"]["group"], 2);
        assert_eq!(
            json["shards"]["shardId-000000000000"]["startingHashKey"],
            "0"
        );
    }

    #[test]
    fn a_document_with_a_hole_is_refused() {
        let mut doc: serde_json::Value =
            serde_json::from_str(&ShardLayout::initial(3, 8).to_document(&header())).expect("json");
        doc["shards"]
            .as_object_mut()
            .expect("object")
            .remove("shardId-000000000001");
        assert_eq!(
            ShardLayout::from_document(&doc.to_string()),
            Err(LayoutError::NotAPartition)
        );
        assert!(matches!(
            ShardLayout::from_document("{}"),
            Err(LayoutError::Malformed(_))
        ));
    }

    #[test]
    fn status_lists_every_shard_with_its_group() {
        let status = ShardLayout::initial(3, 2).to_status();
        assert_eq!(status.len(), 3);
        assert_eq!(status[2].shard_id, "shardId-000000000002");
        assert_eq!(status[2].group, 1);
        assert_eq!(
            status[2].hash_key_range.ending_hash_key,
            u128::MAX.to_string()
        );
        assert_eq!(status[0].state, ShardState::Open);
    }
}
