//! Writing records: route each to its shard, append, answer once durable.

use bytes::Bytes;
use riffle_log::RecordIn;

use super::Catalog;
use super::error::{ApiError, ApiResult, ErrorKind};
use super::hash_key::hash_partition_key;
use super::sequence::SequenceNumber;

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

/// The result of a put: per entry, in request order, the shard and sequence number or an error.
#[derive(Debug)]
pub struct PutOutcome {
    /// Per-entry results.
    pub results: Vec<Result<(u32, String), ApiError>>,
    /// Whether the records were stored encrypted.
    pub encrypted: bool,
}

impl Catalog {
    /// Writes `entries` to `stream`. Entries refused by a shard's throughput limit fail
    /// individually; the others are durable when this returns.
    pub async fn put_records(
        &self,
        stream_name: &str,
        entries: Vec<PutEntry>,
    ) -> ApiResult<PutOutcome> {
        let stream = self.stream(stream_name)?;
        let mut results: Vec<Option<Result<(u32, String), ApiError>>> = vec![None; entries.len()];
        let mut pending = Vec::new();
        let encrypted;
        {
            let state = stream.state.read().await;
            if state.routes.is_empty() {
                return Err(ApiError::stream_not_found(
                    stream_name,
                    &self.config.account,
                ));
            }
            encrypted = state.meta.encryption_key_id.is_some();
            // A request reaching a group that does not host one of its shards is refused whole,
            // before anything is written, so the gateway can send it again to the right group.
            for entry in entries.iter().filter(|_| state.meta.placement.is_some()) {
                let hash_key = entry
                    .explicit_hash_key
                    .unwrap_or_else(|| hash_partition_key(&entry.partition_key));
                if let Some((meta, None)) = state.route(hash_key) {
                    return Err(ApiError::not_hosted(stream_name, meta));
                }
            }
            // Group entries by shard, keeping request order within each shard.
            let mut groups: Vec<(u32, Vec<usize>, Vec<RecordIn>)> = Vec::new();
            for (position, entry) in entries.into_iter().enumerate() {
                let hash_key = entry
                    .explicit_hash_key
                    .unwrap_or_else(|| hash_partition_key(&entry.partition_key));
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
            // Enqueue while the routes are held, so resharding waits for these appends.
            for (index, positions, records) in groups {
                if let Some(shard) = state.shards.get(&index) {
                    pending.push((index, positions, shard.append(records)));
                }
            }
        }
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
        Ok(PutOutcome {
            results: results
                .into_iter()
                .map(|r| r.unwrap_or_else(|| Err(ApiError::internal("record was not written"))))
                .collect(),
            encrypted,
        })
    }
}
