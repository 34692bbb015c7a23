//! Reading records: shard iterators, GetRecords and the reads that subscriptions share.

use std::sync::Arc;
use std::time::Instant;

use bytes::Bytes;

use super::error::{ApiError, ApiResult, ErrorKind};
use super::hash_key::HashRange;
use super::model::{ShardMeta, StreamMeta, parse_shard_id, shard_id};
use super::sequence::SequenceNumber;
use super::shard::Shard;
use super::shard_iterator::ShardIterator;
use super::{Catalog, Stream, now_ms};

/// Most records one GetRecords call returns.
pub const MAX_RECORDS_PER_CALL: usize = 10_000;
/// Most bytes one GetRecords call returns.
pub const MAX_BYTES_PER_CALL: usize = 10 * 1024 * 1024;

/// Where in a shard to start reading.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum StartingPosition {
    /// The oldest retained record.
    TrimHorizon,
    /// Just after the newest record.
    Latest,
    /// At the record with this sequence number.
    AtSequenceNumber(String),
    /// Just after the record with this sequence number.
    AfterSequenceNumber(String),
    /// At the first record that arrived at or after this time (ms since the Unix epoch).
    AtTimestamp(i64),
}

/// A record as readers see it.
#[derive(Debug, Clone)]
pub struct ReadRecord {
    /// Sequence number.
    pub sequence_number: String,
    /// Arrival time in milliseconds since the Unix epoch.
    pub arrival_ms: i64,
    /// Partition key.
    pub partition_key: String,
    /// The data, decrypted.
    pub data: Bytes,
    /// Whether it is stored encrypted.
    pub encrypted: bool,
}

/// A shard created from the one being read, reported when a reader reaches a closed end.
#[derive(Debug, Clone)]
pub struct ChildShard {
    /// The child's id.
    pub shard_id: String,
    /// Its parents' ids.
    pub parent_shards: Vec<String>,
    /// Its hash range.
    pub range: HashRange,
}

/// One read's result.
#[derive(Debug, Clone)]
pub struct ReadOutcome {
    /// Records, oldest first.
    pub records: Vec<ReadRecord>,
    /// Offset of the next unread record; `None` once a closed shard is fully read.
    pub next_offset: Option<u64>,
    /// How far the last record read lags the shard's newest, in milliseconds.
    pub millis_behind_latest: i64,
    /// Children of a closed shard, once its end is reached.
    pub child_shards: Option<Vec<ChildShard>>,
}

impl Catalog {
    /// Issues a shard iterator (GetShardIterator).
    pub async fn shard_iterator(
        &self,
        stream_name: &str,
        shard: &str,
        position: StartingPosition,
    ) -> ApiResult<String> {
        let stream = self.stream(stream_name)?;
        let state = stream.state.read().await;
        let (meta, handle) = self.find_shard(&stream, &state.meta, &state.shards, shard)?;
        let offset = self.resolve(&stream, &state.meta, meta, &handle, &position)?;
        Ok(ShardIterator {
            stream: stream.name.clone(),
            stream_epoch: stream.epoch,
            shard_index: meta.index,
            offset,
            issued_ms: now_ms(),
        }
        .encode())
    }

    /// Resolves where a reader of `shard` starts, returning the handles a subscription reads
    /// through with [`Catalog::read`].
    pub async fn open_reader(
        &self,
        stream_name: &str,
        shard: &str,
        position: &StartingPosition,
    ) -> ApiResult<(Arc<Stream>, Arc<Shard>, u64)> {
        let stream = self.stream(stream_name)?;
        let (handle, offset) = {
            let state = stream.state.read().await;
            let (meta, handle) = self.find_shard(&stream, &state.meta, &state.shards, shard)?;
            let offset = self.resolve(&stream, &state.meta, meta, &handle, position)?;
            (handle, offset)
        };
        Ok((stream, handle, offset))
    }

    /// Reads from a shard iterator (GetRecords): the records, and the next iterator (`None`
    /// once a closed shard is fully read).
    pub async fn get_records(
        &self,
        iterator: &str,
        limit: usize,
    ) -> ApiResult<(ReadOutcome, Option<String>)> {
        let decoded = ShardIterator::decode(iterator)
            .ok_or_else(|| ApiError::invalid("Invalid ShardIterator."))?;
        let stream = self.stream(&decoded.stream)?;
        if stream.epoch != decoded.stream_epoch {
            return Err(ApiError::stream_not_found(
                &decoded.stream,
                &self.config.account,
            ));
        }
        let ttl_ms = self.config.iterator_ttl.as_millis() as i64;
        if now_ms() - decoded.issued_ms > ttl_ms {
            return Err(ApiError::new(
                ErrorKind::ExpiredIterator,
                format!(
                    "Iterator expired. The iterator was created at time {} while right now it is {} which is further in the future than the tolerated delay of {ttl_ms} milliseconds.",
                    decoded.issued_ms,
                    now_ms()
                ),
            ));
        }
        let shard_name = shard_id(decoded.shard_index);
        let handle = {
            let state = stream.state.read().await;
            if let Some(shard) = state.meta.shard(decoded.shard_index)
                && !state.meta.hosts(shard)
            {
                return Err(ApiError::not_hosted(&stream.name, shard));
            }
            state.shards.get(&decoded.shard_index).cloned()
        }
        .ok_or_else(|| {
            ApiError::new(
                ErrorKind::ResourceNotFound,
                format!(
                    "Shard {shard_name} in stream {} under account {} does not exist",
                    stream.name, self.config.account
                ),
            )
        })?;
        if !handle.throttle.admit_read_call() {
            handle.metrics.read_throttled.inc();
            return Err(ApiError::new(
                ErrorKind::ProvisionedThroughputExceeded,
                format!(
                    "Rate exceeded for shard {shard_name} in stream {} under account {}.",
                    stream.name, self.config.account
                ),
            ));
        }
        let started = Instant::now();
        let outcome = self
            .read(
                &stream,
                &handle,
                decoded.offset,
                limit.clamp(1, MAX_RECORDS_PER_CALL),
            )
            .await?;
        let bytes: usize = outcome.records.iter().map(|r| r.data.len()).sum();
        handle.throttle.charge_read_bytes(bytes);
        handle.metrics.outgoing_bytes.add(bytes as u64);
        handle
            .metrics
            .outgoing_records
            .add(outcome.records.len() as u64);
        handle
            .metrics
            .get_records_latency
            .observe(started.elapsed().as_secs_f64());
        // IteratorAgeMilliseconds: the age of the last record returned (0 when none was).
        let age = outcome
            .records
            .last()
            .map_or(0, |r| (now_ms() - r.arrival_ms).max(0));
        handle.metrics.iterator_age_ms.set(age as u64);
        let next = outcome.next_offset.map(|offset| {
            ShardIterator {
                offset,
                issued_ms: now_ms(),
                ..decoded.clone()
            }
            .encode()
        });
        Ok((outcome, next))
    }

    /// Reads up to `limit` records of a shard from `offset`, skipping expired ones.
    pub async fn read(
        &self,
        stream: &Arc<Stream>,
        shard: &Arc<Shard>,
        offset: u64,
        limit: usize,
    ) -> ApiResult<ReadOutcome> {
        let (meta, horizon_ms, all_meta) = {
            let state = stream.state.read().await;
            let meta =
                state.meta.shard(shard.index).cloned().ok_or_else(|| {
                    ApiError::stream_not_found(&stream.name, &self.config.account)
                })?;
            (
                meta,
                now_ms() - state.meta.retention_ms(),
                state.meta.clone(),
            )
        };
        let horizon_offset = shard.log.offset_at_time(horizon_ms);
        let from = offset.max(horizon_offset).max(shard.log.start_offset());
        let end = meta.closed.map(|c| c.end_offset);
        let log = shard.log.clone();
        let mut stored =
            tokio::task::spawn_blocking(move || log.read(from, limit, MAX_BYTES_PER_CALL))
                .await
                .map_err(ApiError::internal)??;
        if let Some(end) = end {
            stored.retain(|r| r.offset < end);
        }
        let next = stored.last().map_or(from, |r| r.offset + 1);
        let mut records = Vec::with_capacity(stored.len());
        for record in stored {
            let encrypted = meta.is_encrypted_at(record.offset);
            let data = if encrypted {
                self.key.open(&record.data).ok_or_else(|| {
                    ApiError::internal(
                        "a stored record could not be decrypted with the server's key",
                    )
                })?
            } else {
                record.data
            };
            records.push(ReadRecord {
                sequence_number: SequenceNumber::of_record(
                    stream.epoch,
                    shard.index,
                    record.offset,
                )
                .encode(),
                arrival_ms: record.arrival_ms,
                partition_key: record.partition_key,
                data,
                encrypted,
            });
        }
        let tip = shard.log.end_offset();
        let millis_behind_latest = match (records.last(), next >= tip) {
            (_, true) => 0,
            (Some(last), false) => (now_ms() - last.arrival_ms).max(0),
            (None, false) => 0,
        };
        let finished = end.is_some_and(|end| next >= end);
        Ok(ReadOutcome {
            records,
            next_offset: (!finished).then_some(next),
            millis_behind_latest,
            child_shards: finished.then(|| child_shards(&all_meta, shard.index)),
        })
    }

    /// Looks a shard up by id, with the errors Kinesis gives.
    pub(super) fn find_shard<'m>(
        &self,
        stream: &Stream,
        meta: &'m StreamMeta,
        shards: &std::collections::BTreeMap<u32, Arc<Shard>>,
        shard: &str,
    ) -> ApiResult<(&'m ShardMeta, Arc<Shard>)> {
        let not_found = || {
            ApiError::new(
                ErrorKind::ResourceNotFound,
                format!(
                    "Shard {shard} in stream {} under account {} does not exist",
                    stream.name, self.config.account
                ),
            )
        };
        let index = parse_shard_id(shard).ok_or_else(not_found)?;
        let found = meta.shard(index).ok_or_else(not_found)?;
        if !meta.hosts(found) {
            return Err(ApiError::not_hosted(&stream.name, found));
        }
        let handle = shards.get(&index).cloned().ok_or_else(not_found)?;
        Ok((found, handle))
    }

    /// Turns a starting position into an offset of the shard.
    pub(super) fn resolve(
        &self,
        stream: &Stream,
        stream_meta: &StreamMeta,
        meta: &ShardMeta,
        shard: &Shard,
        position: &StartingPosition,
    ) -> ApiResult<u64> {
        let horizon = shard
            .log
            .offset_at_time(now_ms() - stream_meta.retention_ms())
            .max(shard.log.start_offset());
        let end = meta.closed.map_or(shard.log.end_offset(), |c| c.end_offset);
        let sequence = |text: &str| -> ApiResult<SequenceNumber> {
            let decoded = SequenceNumber::decode(text).ok_or_else(|| {
                ApiError::invalid(format!("StartingSequenceNumber {text} used in GetShardIterator on shard {} in stream {} under account {} is invalid.", meta.id(), stream.name, self.config.account))
            })?;
            if decoded.stream_epoch != stream.epoch || decoded.shard_index != meta.index {
                return Err(ApiError::invalid(format!(
                    "Invalid StartingSequenceNumber. It encodes {}, while it was used in a call to a shard with {}",
                    shard_id(decoded.shard_index),
                    meta.id()
                )));
            }
            Ok(decoded)
        };
        Ok(match position {
            StartingPosition::TrimHorizon => horizon,
            StartingPosition::Latest => end,
            StartingPosition::AtSequenceNumber(text) => {
                sequence(text)?.at_offset().max(horizon).min(end)
            }
            StartingPosition::AfterSequenceNumber(text) => {
                sequence(text)?.after_offset().max(horizon).min(end)
            }
            StartingPosition::AtTimestamp(ms) => {
                shard.log.offset_at_time(*ms).max(horizon).min(end)
            }
        })
    }
}

/// The children of shard `index`, as ChildShards lists them.
pub fn child_shards(meta: &StreamMeta, index: u32) -> Vec<ChildShard> {
    meta.children_of(index)
        .into_iter()
        .map(|child| ChildShard {
            shard_id: child.id(),
            parent_shards: child
                .parent
                .into_iter()
                .chain(child.adjacent_parent)
                .map(shard_id)
                .collect(),
            range: child.range,
        })
        .collect()
}
