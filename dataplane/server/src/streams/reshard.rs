//! Resharding with Kinesis lineage: a parent is closed at the end of every write routed to
//! it, and children carry their parents' ids.
//!
//! Every reshard is a [`StreamChange::Reshard`] (see [`super::change`]): the API calls here
//! check what they can without the stream's state and ask for the change; the change is made
//! by [`Catalog::reshard_at`], at the time it is given, on every replica alike.

use super::change::{ReshardBy, StreamChange};
use super::error::{ApiError, ApiResult, ErrorKind};
use super::hash_key::{HashRange, parse_hash_key};
use super::model::{ReshardOp, ShardClosed, ShardMeta, StreamMode, parse_shard_id, shard_id};
use super::{Catalog, Stream, StreamState};

/// Result of UpdateShardCount.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ShardCountChange {
    /// Open shards before.
    pub current: u32,
    /// Open shards after.
    pub target: u32,
}

/// What replaying another shard group's reshard history did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Replayed {
    /// Reshards this group had made before.
    pub before: usize,
    /// Reshards it has made now.
    pub after: usize,
}

/// Most UpdateShardCount calls per stream in 24 hours.
const SHARD_COUNT_UPDATES_PER_DAY: usize = 10;

impl Catalog {
    /// SplitShard: closes `shard` and opens two children divided at `new_starting_hash_key`.
    pub async fn split_shard(
        &self,
        stream_name: &str,
        shard: &str,
        new_starting_hash_key: &str,
    ) -> ApiResult<()> {
        let index = self.named_shard(stream_name, shard)?;
        let at = parse_hash_key(new_starting_hash_key).ok_or_else(|| {
            ApiError::invalid(format!(
                "NewStartingHashKey {new_starting_hash_key} used in SplitShard() on shard {shard} in stream {stream_name} under account {} is not a valid hash key.",
                self.config.account
            ))
        })?;
        self.reshard(
            stream_name,
            ReshardOp::Split { shard: index, at },
            ReshardBy::Client,
        )
        .await
    }

    /// MergeShards: closes two adjacent shards and opens one child covering both.
    pub async fn merge_shards(
        &self,
        stream_name: &str,
        shard: &str,
        adjacent: &str,
    ) -> ApiResult<()> {
        let op = ReshardOp::Merge {
            shard: self.named_shard(stream_name, shard)?,
            adjacent: self.named_shard(stream_name, adjacent)?,
        };
        self.reshard(stream_name, op, ReshardBy::Client).await
    }

    /// UpdateShardCount with UNIFORM_SCALING: splits and merges (as Kinesis does) until the
    /// open shards divide the hash space evenly into `target` ranges.
    pub async fn update_shard_count(
        &self,
        stream_name: &str,
        target: u32,
    ) -> ApiResult<ShardCountChange> {
        self.resize(stream_name, target, ReshardBy::Client).await
    }

    /// UpdateShardCount on behalf of the service itself: also for on-demand streams (the operator
    /// sizes them), and without the limit of calls per day for those. Provisioned streams keep
    /// every rule of [`Catalog::update_shard_count`].
    pub async fn scale_shards(
        &self,
        stream_name: &str,
        target: u32,
    ) -> ApiResult<ShardCountChange> {
        self.resize(stream_name, target, ReshardBy::Service).await
    }

    async fn resize(
        &self,
        stream_name: &str,
        target: u32,
        by: ReshardBy,
    ) -> ApiResult<ShardCountChange> {
        let current = self
            .describe(stream_name, |meta, _| meta.open_shards().len() as u32)
            .await?;
        self.reshard(stream_name, ReshardOp::Resize { target }, by)
            .await?;
        Ok(ShardCountChange { current, target })
    }

    /// Asks for `op` on the stream's shape as it is now.
    async fn reshard(&self, stream_name: &str, op: ReshardOp, by: ReshardBy) -> ApiResult<()> {
        let after = self
            .describe(stream_name, |meta, _| meta.reshards.len())
            .await?;
        let change = StreamChange::Reshard {
            op,
            by,
            after: Some(after),
        };
        self.change_stream(stream_name, change).await
    }

    /// Brings this group's copy of the stream up to `history`, the reshards another group of
    /// the stream made (group 0's, in practice): the ones this group has not made yet are made
    /// in order, each exactly as recorded. Idempotent. A history that does not begin with this
    /// group's own is refused: the groups were changed apart and replaying cannot join them.
    pub async fn replay_reshards(
        &self,
        stream_name: &str,
        history: &[ReshardOp],
    ) -> ApiResult<Replayed> {
        let before = self
            .describe(stream_name, |meta, _| meta.reshards.clone())
            .await?;
        if history.len() < before.len() || history[..before.len()] != before[..] {
            return Err(ApiError::new(
                ErrorKind::ResourceInUse,
                format!(
                    "Stream {stream_name} under account {} was resharded differently in this shard group ({} reshards) than in the history given ({} reshards).",
                    self.config.account,
                    before.len(),
                    history.len()
                ),
            ));
        }
        for (position, op) in history.iter().enumerate().skip(before.len()) {
            let change = StreamChange::Reshard {
                op: op.clone(),
                by: ReshardBy::Replay,
                after: Some(position),
            };
            self.change_stream(stream_name, change).await?;
        }
        Ok(Replayed {
            before: before.len(),
            after: history.len(),
        })
    }

    /// Makes `op` at `at_ms` and records it in the stream's reshard history, holding the
    /// stream's write lock throughout. With `after` (the history's length when the reshard was
    /// asked for; see [`StreamChange::Reshard`]), a reshard already at that place in the
    /// history is not made again, and one overtaken by another is refused.
    pub(super) async fn reshard_at(
        &self,
        stream_name: &str,
        op: ReshardOp,
        by: ReshardBy,
        after: Option<usize>,
        at_ms: i64,
    ) -> ApiResult<()> {
        let stream = self.stream(stream_name)?;
        let mut state = stream.state.write().await;
        if let Some(after) = after {
            if state.meta.reshards.get(after) == Some(&op) {
                return Ok(());
            }
            if state.meta.reshards.len() != after {
                return Err(ApiError::new(
                    ErrorKind::ResourceInUse,
                    format!(
                        "Stream {stream_name} under account {} was resharded while this request was being made; retry it on the stream's new shape.",
                        self.config.account
                    ),
                ));
            }
        }
        let managed = match by {
            ReshardBy::Client => false,
            ReshardBy::Service => state.meta.mode == StreamMode::OnDemand,
            ReshardBy::Replay => true,
        };
        if !managed {
            self.check_provisioned(&stream, &state)?;
        }
        match op {
            ReshardOp::Split { shard, at } => {
                let parent = self.open_shard_meta(&stream, &state, shard)?;
                if at <= parent.range.start || at > parent.range.end {
                    return Err(ApiError::invalid(format!(
                        "NewStartingHashKey {at} used in SplitShard() on shard {} in stream {stream_name} under account {} is not both greater than one plus the shard's StartingHashKey {} and less than the shard's EndingHashKey {}.",
                        shard_id(shard),
                        self.config.account,
                        parent.range.start,
                        parent.range.end
                    )));
                }
                if by != ReshardBy::Replay {
                    self.check_shard_limit(1, state.meta.open_shards().len() as u32)
                        .await?;
                }
                self.split(&stream, &mut state, &parent, at, at_ms).await?;
            }
            ReshardOp::Merge { shard, adjacent } => {
                let first = self.open_shard_meta(&stream, &state, shard)?;
                let second = self.open_shard_meta(&stream, &state, adjacent)?;
                if !first.range.is_adjacent_to(&second.range) {
                    return Err(ApiError::invalid(format!(
                        "Shards {} and {} in stream {stream_name} under account {} are not an adjacent pair of shards eligible for merging",
                        shard_id(shard),
                        shard_id(adjacent),
                        self.config.account
                    )));
                }
                let range = HashRange {
                    start: first.range.start.min(second.range.start),
                    end: first.range.end.max(second.range.end),
                };
                self.reshape(
                    &stream,
                    &mut state,
                    &[first.index, second.index],
                    &[(range, Some(first.index), Some(second.index))],
                    at_ms,
                )
                .await?;
            }
            ReshardOp::Resize { target } => {
                self.resize_locked(&stream, &mut state, target, managed, by, at_ms)
                    .await?;
            }
        }
        state.meta.reshards.push(op);
        self.save(&stream, &state.meta)
    }

    /// UpdateShardCount under the stream's write lock; `managed` lifts the rules of
    /// provisioned streams.
    async fn resize_locked(
        &self,
        stream: &Stream,
        state: &mut StreamState,
        target: u32,
        managed: bool,
        by: ReshardBy,
        at_ms: i64,
    ) -> ApiResult<()> {
        let stream_name = &stream.name;
        let current = state.meta.open_shards().len() as u32;
        if target == 0 || target > current * 2 || target * 2 < current {
            return Err(ApiError::invalid(format!(
                "UpdateShardCount cannot scale up over double your current open shard count ({current}) or scale down below half your current open shard count. Requested target shard count: {target}."
            )));
        }
        state
            .meta
            .shard_count_updates
            .retain(|t| at_ms - t < 86_400_000);
        if !managed && state.meta.shard_count_updates.len() >= SHARD_COUNT_UPDATES_PER_DAY {
            return Err(ApiError::new(
                ErrorKind::LimitExceeded,
                format!(
                    "Stream {stream_name} under account {} has already been scaled {SHARD_COUNT_UPDATES_PER_DAY} times in the last 24 hours.",
                    self.config.account
                ),
            ));
        }
        if target > current && by != ReshardBy::Replay {
            self.check_shard_limit(target - current, current).await?;
        }
        let first_new = state.meta.next_shard_index();
        let targets = HashRange::divide_evenly(target);
        // Split wherever a target range starts inside an open shard.
        for boundary in targets.iter().skip(1).map(|r| r.start) {
            let container = state
                .meta
                .open_shards()
                .into_iter()
                .find(|s| s.range.start < boundary && boundary <= s.range.end)
                .cloned();
            if let Some(parent) = container {
                self.split(stream, state, &parent, boundary, at_ms).await?;
            }
        }
        // Merge, left to right, the aligned pieces inside each target range.
        for range in &targets {
            loop {
                let pieces: Vec<ShardMeta> = state
                    .meta
                    .open_shards()
                    .into_iter()
                    .filter(|s| range.start <= s.range.start && s.range.end <= range.end)
                    .cloned()
                    .collect();
                let [first, second, ..] = pieces.as_slice() else {
                    break;
                };
                let merged = HashRange {
                    start: first.range.start,
                    end: second.range.end,
                };
                self.reshape(
                    stream,
                    state,
                    &[first.index, second.index],
                    &[(merged, Some(first.index), Some(second.index))],
                    at_ms,
                )
                .await?;
            }
        }
        self.place_resharded(stream, state, first_new)?;
        state.meta.shard_count_updates.push(at_ms);
        Ok(())
    }

    /// Splits open shard `parent` into `[start, split_at)` and `[split_at, end]`.
    async fn split(
        &self,
        stream: &Stream,
        state: &mut StreamState,
        parent: &ShardMeta,
        split_at: u128,
        at_ms: i64,
    ) -> ApiResult<()> {
        let left = HashRange {
            start: parent.range.start,
            end: split_at - 1,
        };
        let right = HashRange {
            start: split_at,
            end: parent.range.end,
        };
        let children = [
            (left, Some(parent.index), None),
            (right, Some(parent.index), None),
        ];
        self.reshape(stream, state, &[parent.index], &children, at_ms)
            .await
    }

    /// Closes `parents` once every write routed to them is durable, and opens `children`
    /// (range, parent, adjacent parent). The caller persists the description.
    async fn reshape(
        &self,
        stream: &Stream,
        state: &mut StreamState,
        parents: &[u32],
        children: &[(HashRange, Option<u32>, Option<u32>)],
        at_ms: i64,
    ) -> ApiResult<()> {
        for &index in parents {
            // A shard another group stores is closed here only in the description; its end is
            // known to that group.
            let end_offset = match state.shards.get(&index).cloned() {
                Some(handle) => handle.barrier().await?,
                None if state
                    .meta
                    .shard(index)
                    .is_some_and(|s| !state.meta.hosts(s)) =>
                {
                    0
                }
                None => return Err(ApiError::internal("shard without a log")),
            };
            if let Some(meta) = state.meta.shards.iter_mut().find(|s| s.index == index) {
                meta.closed = Some(ShardClosed {
                    end_offset,
                    closed_ms: at_ms,
                });
            }
        }
        let encrypted = state.meta.encryption_key_id.is_some();
        for &(range, parent, adjacent_parent) in children {
            let index = state.meta.next_shard_index();
            let group = state.meta.group_for_new_shard();
            state.meta.shards.push(ShardMeta {
                index,
                range,
                parent,
                adjacent_parent,
                created_ms: at_ms,
                closed: None,
                encryption_changes: if encrypted {
                    vec![super::model::EncryptionChange {
                        from_offset: 0,
                        encrypted: true,
                    }]
                } else {
                    Vec::new()
                },
                group,
            });
            if state.meta.placement.is_none_or(|p| p.group == group) {
                let handle = self.open_shard(stream, index)?;
                state.shards.insert(index, handle);
            }
        }
        state.rebuild_routes();
        for index in parents {
            if let Some(parent) = state.shards.get(index) {
                parent.wake_readers();
            }
        }
        Ok(())
    }

    /// Re-places the shards an UpdateShardCount opened (see [`super::model::StreamMeta::place_resharded`])
    /// and opens or drops their logs to match. None of them has taken a record yet: the
    /// stream's write lock has been held since before they were opened.
    fn place_resharded(
        &self,
        stream: &Stream,
        state: &mut StreamState,
        first_new: u32,
    ) -> ApiResult<()> {
        if state.meta.placement.is_none() {
            return Ok(());
        }
        state.meta.place_resharded(first_new);
        let new: Vec<(u32, bool)> = state
            .meta
            .shards
            .iter()
            .filter(|s| s.index >= first_new)
            .map(|s| (s.index, state.meta.hosts(s)))
            .collect();
        for (index, hosted) in new {
            match (hosted, state.shards.contains_key(&index)) {
                (true, false) => {
                    let handle = self.open_shard(stream, index)?;
                    state.shards.insert(index, handle);
                }
                (false, true) => {
                    if let Some(handle) = state.shards.remove(&index) {
                        handle.log.close();
                    }
                    self.remove_shard_dir(stream, index);
                }
                _ => {}
            }
        }
        state.rebuild_routes();
        Ok(())
    }

    fn check_provisioned(&self, stream: &Stream, state: &StreamState) -> ApiResult<()> {
        if state.meta.mode == StreamMode::OnDemand {
            return Err(ApiError::new(
                ErrorKind::Validation,
                format!(
                    "Resharding is not allowed for stream {} under account {} in ON_DEMAND mode.",
                    stream.name, self.config.account
                ),
            ));
        }
        Ok(())
    }

    fn open_shard_meta(
        &self,
        stream: &Stream,
        state: &StreamState,
        index: u32,
    ) -> ApiResult<ShardMeta> {
        let shard = shard_id(index);
        let meta = state.meta.shard(index).ok_or_else(|| {
            ApiError::new(
                ErrorKind::ResourceNotFound,
                format!(
                    "Could not find shard {shard} in stream {} under account {}.",
                    stream.name, self.config.account
                ),
            )
        })?;
        if !meta.is_open() {
            return Err(ApiError::new(
                ErrorKind::ResourceInUse,
                format!(
                    "Shard {shard} in stream {} under account {} has already been merged or split, and thus is not eligible for merging or splitting.",
                    stream.name, self.config.account
                ),
            ));
        }
        Ok(meta.clone())
    }

    /// The index of the shard a request names by id; refused as not found when the id is
    /// malformed (a well-formed id is looked up when the change is made).
    fn named_shard(&self, stream_name: &str, shard: &str) -> ApiResult<u32> {
        self.stream(stream_name)?;
        parse_shard_id(shard).ok_or_else(|| {
            ApiError::new(
                ErrorKind::ResourceNotFound,
                format!(
                    "Could not find shard {shard} in stream {stream_name} under account {}.",
                    self.config.account
                ),
            )
        })
    }

    /// Checks the account's shard limit; `locked_open` counts the open shards of the stream
    /// whose write lock the caller holds.
    async fn check_shard_limit(&self, additional: u32, locked_open: u32) -> ApiResult<()> {
        let open = self.open_shard_count_except_locked().await + locked_open;
        if open + additional > self.config.shard_limit {
            return Err(ApiError::new(
                ErrorKind::LimitExceeded,
                format!(
                    "This request would exceed the shard limit for the account {} in {}. Current shard count for the account: {open}. Limit: {}. Number of additional shards that would have resulted from this request: {additional}.",
                    self.config.account, self.config.region, self.config.shard_limit
                ),
            ));
        }
        Ok(())
    }

    /// Open shards of every stream whose description is not being changed right now (the
    /// caller holds one stream's write lock; waiting on it would deadlock).
    async fn open_shard_count_except_locked(&self) -> u32 {
        let mut total = 0;
        for stream in self.streams() {
            if let Ok(state) = stream.state.try_read() {
                total += state.meta.open_shards().len() as u32;
            }
        }
        total
    }
}
