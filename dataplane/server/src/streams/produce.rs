//! Writing records: route each to its shard, append, answer once durable.

use bytes::Bytes;
use riffle_log::{AppendAck, RecordIn};

use super::error::{ApiError, ApiResult, ErrorKind};
use super::hash_key::hash_partition_key;
use super::sequence::SequenceNumber;
use super::{Catalog, StreamState};

/// One record to write.
#[derive(Debug, Clone)]
pub struct PutEntry {
    /// Partition key (1..=256 characters, validated by the caller).
    pub partition_key: String,
    /// Explicit hash key overriding the partition key's hash.
    pub explicit_hash_key: Option<u128>,
    /// The record's data.
    pub data: Bytes,
}

/// Entries of a put routed to their shards and admitted by the throughput limits, not yet
/// written: what a shard group leader replicates.
#[derive(Debug)]
pub struct Routed {
    /// Creation time (seconds) of the stream incarnation the entries were routed in.
    pub epoch: u64,
    /// Whether the records' data are sealed (the stream is encrypted).
    pub encrypted: bool,
    /// Per entry, in request order: `Some(error)` for an entry refused while routing.
    pub results: Vec<Option<Result<(u32, String), ApiError>>>,
    /// Per shard (in order of first appearance): the entries' positions in the request and
    /// their records, in request order.
    pub groups: Vec<(u32, Vec<usize>, Vec<RecordIn>)>,
}

impl PutEntry {
    /// The hash key the entry is routed by: its explicit hash key, else the MD5 of its
    /// partition key.
    pub fn hash_key(&self) -> u128 {
        self.explicit_hash_key
            .unwrap_or_else(|| hash_partition_key(&self.partition_key))
    }
}

/// The result of a put: per entry, in request order, the shard and sequence number or an error.
#[derive(Debug)]
pub struct PutOutcome {
    /// Per-entry results.
    pub results: Vec<Result<(u32, String), ApiError>>,
    /// Whether the records were stored encrypted.
    pub encrypted: bool,
}

impl PutOutcome {
    /// The outcome from per-entry results filled in as the writes were answered; an entry left
    /// unanswered was not written.
    pub fn of(results: Vec<Option<Result<(u32, String), ApiError>>>, encrypted: bool) -> Self {
        PutOutcome {
            results: results
                .into_iter()
                .map(|r| r.unwrap_or_else(|| Err(ApiError::internal("record was not written"))))
                .collect(),
            encrypted,
        }
    }
}

impl Catalog {
    /// Writes `entries` to `stream`. Entries refused by a shard's throughput limit fail
    /// individually; the others are durable when this returns.
    pub async fn put_records(
        &self,
        stream_name: &str,
        entries: Vec<PutEntry>,
    ) -> ApiResult<PutOutcome> {
        if let Some(replicator) = self.replicator() {
            return replicator.put_records(stream_name, entries).await;
        }
        let stream = self.stream(stream_name)?;
        let mut pending = Vec::new();
        let (mut results, encrypted) = {
            let state = stream.state.read().await;
            let routed = self.route_locked(stream_name, stream.epoch, &state, entries)?;
            // Enqueue while the routes are held, so resharding waits for these appends.
            for (index, positions, records) in routed.groups {
                if let Some(shard) = state.shards.get(&index) {
                    pending.push((index, positions, shard.append(records)));
                }
            }
            (routed.results, routed.encrypted)
        };
        for (index, positions, ack) in pending {
            match ack.await {
                Ok(ack) => {
                    for (i, position) in positions.into_iter().enumerate() {
                        let sequence = SequenceNumber::of_record(
                            stream.epoch,
                            index,
                            ack.first_offset + i as u64,
                        );
                        results[position] = Some(Ok((index, sequence.encode())));
                    }
                }
                Err(error) => {
                    for position in positions {
                        results[position] = Some(Err(error.clone()));
                    }
                }
            }
        }
        Ok(PutOutcome::of(results, encrypted))
    }

    /// Routes `entries` of `stream_name` to its open shards and applies the throughput limits
    /// and encryption, without writing: the first half of [`Catalog::put_records`], for a
    /// leader that replicates the routed records before they are appended
    /// ([`Catalog::append_routed_at`]).
    pub async fn route_records(
        &self,
        stream_name: &str,
        entries: Vec<PutEntry>,
    ) -> ApiResult<Routed> {
        let stream = self.stream(stream_name)?;
        let state = stream.state.read().await;
        self.route_locked(stream_name, stream.epoch, &state, entries)
    }

    /// Appends records already routed to shards of the incarnation `epoch` of `stream_name`,
    /// stamping them `arrival_ms` (raised per shard so stamps never go backwards), and
    /// returns per batch the sequence number of its first record once durable. The same calls
    /// in the same order on two catalogs holding the same streams store identical records
    /// with identical sequence numbers and arrival times. Batches are enqueued in the order
    /// given; a batch for a shard that is not open here fails alone.
    pub async fn append_routed_at(
        &self,
        stream_name: &str,
        epoch: u64,
        batches: Vec<(u32, Vec<RecordIn>)>,
        arrival_ms: i64,
    ) -> ApiResult<Vec<ApiResult<AppendAck>>> {
        let stream = self.stream(stream_name)?;
        if stream.epoch != epoch {
            return Err(ApiError::stream_not_found(
                stream_name,
                &self.config.account,
            ));
        }
        let mut pending = Vec::with_capacity(batches.len());
        {
            let state = stream.state.read().await;
            for (index, records) in batches {
                let open = state.meta.shard(index).is_some_and(|m| m.is_open());
                match state.shards.get(&index) {
                    Some(shard) if open => {
                        pending.push((index, Some(shard.append_at(records, arrival_ms))))
                    }
                    _ => pending.push((index, None)),
                }
            }
        }
        let mut acks = Vec::with_capacity(pending.len());
        for (index, ack) in pending {
            acks.push(match ack {
                Some(ack) => ack.await,
                None => Err(ApiError::new(
                    ErrorKind::ResourceNotFound,
                    format!("Shard {index} of stream {stream_name} is not open on this server."),
                )),
            });
        }
        Ok(acks)
    }

    /// Routes entries under the stream's lock (see [`Catalog::route_records`]).
    fn route_locked(
        &self,
        stream_name: &str,
        epoch: u64,
        state: &StreamState,
        entries: Vec<PutEntry>,
    ) -> ApiResult<Routed> {
        let mut results: Vec<Option<Result<(u32, String), ApiError>>> = vec![None; entries.len()];
        if state.routes.is_empty() {
            return Err(ApiError::stream_not_found(
                stream_name,
                &self.config.account,
            ));
        }
        let encrypted = state.meta.encryption_key_id.is_some();
        // A request reaching a group that does not host one of its shards is refused whole,
        // before anything is written, so the gateway can send it again to the right group.
        let hash_keys: Vec<u128> = entries.iter().map(PutEntry::hash_key).collect();
        if state.meta.placement.is_some() {
            for &hash_key in &hash_keys {
                if let Some((meta, None)) = state.route(hash_key) {
                    return Err(ApiError::not_hosted(stream_name, meta));
                }
            }
        }
        // Group entries by shard, keeping request order within each shard.
        let mut groups: Vec<(u32, Vec<usize>, Vec<RecordIn>)> = Vec::new();
        for ((position, entry), hash_key) in entries.into_iter().enumerate().zip(hash_keys) {
            let Some((meta, Some(shard))) = state.route(hash_key) else {
                results[position] =
                    Some(Err(ApiError::internal("no open shard owns the hash key")));
                continue;
            };
            let size = entry.data.len() + entry.partition_key.len();
            if !shard.throttle.admit_write(size) {
                shard.metrics.write_throttled.inc();
                results[position] = Some(Err(ApiError::new(
                    ErrorKind::ProvisionedThroughputExceeded,
                    format!(
                        "Rate exceeded for shard {} in stream {stream_name} under account {}.",
                        meta.id(),
                        self.config.account
                    ),
                )));
                continue;
            }
            shard.metrics.incoming_bytes.add(entry.data.len() as u64);
            shard.metrics.incoming_records.inc();
            let data = if encrypted {
                self.key.seal(&entry.data)
            } else {
                entry.data
            };
            let record = RecordIn {
                partition_key: entry.partition_key,
                data,
            };
            match groups
                .iter_mut()
                .find(|(index, _, _)| *index == shard.index)
            {
                Some((_, positions, records)) => {
                    positions.push(position);
                    records.push(record);
                }
                None => groups.push((shard.index, vec![position], vec![record])),
            }
        }
        Ok(Routed {
            epoch,
            encrypted,
            results,
            groups,
        })
    }
}
