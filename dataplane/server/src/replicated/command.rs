//! The commands a shard group replicates, and how a replica applies them to its catalog.
//!
//! A command holds everything that is not a function of the replicated state: the leader's
//! clock (creation and arrival times), the routing of records to shards, the outcome of the
//! throughput limits and encryption. Applying the same commands in the same order to two
//! catalogs holding the same streams gives identical descriptions, records, sequence numbers,
//! arrival times and responses.

use std::collections::{BTreeMap, HashMap};
use std::sync::Arc;

use bytes::Bytes;
use riffle_log::RecordIn;
use serde::{Deserialize, Serialize};

use crate::streams::model::{Placement, StreamMeta, StreamMode};
use crate::streams::sequence::SequenceNumber;
use crate::streams::{
    ApiError, ApiResult, Catalog, CreateStream, ErrorKind, SettingsChange, StreamChange,
};

/// One replicated change of a shard group's streams.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum Command {
    /// CreateStream, at the leader's time `created_ms`.
    CreateStream {
        /// Stream name.
        name: String,
        /// Shard count (required for provisioned streams).
        shard_count: Option<u32>,
        /// Capacity mode.
        mode: StreamMode,
        /// Initial tags.
        tags: BTreeMap<String, String>,
        /// Largest record, in KiB.
        max_record_size_kib: Option<u32>,
        /// The leader's clock when it took the request, in ms since the Unix epoch.
        created_ms: i64,
        /// Where the stream's shards go, when it spreads over several shard groups.
        #[serde(default)]
        placement: Option<Placement>,
    },
    /// ImportStream: a stream another shard group of it exported, joined as `placement`.
    ImportStream {
        /// The exported description.
        meta: Box<StreamMeta>,
        /// This group's place in the stream.
        placement: Placement,
    },
    /// DeleteStream of the incarnation created at `epoch`.
    DeleteStream {
        /// Stream name.
        name: String,
        /// Creation time (seconds) of the incarnation to delete.
        epoch: u64,
        /// Whether registered consumers are deleted with it.
        enforce_consumer_deletion: bool,
    },
    /// A change of the settings of the incarnation created at `epoch`.
    ChangeSettings {
        /// Stream name.
        name: String,
        /// Creation time (seconds) of the incarnation to change.
        epoch: u64,
        /// The change.
        change: SettingsChange,
    },
    /// A reshard or a consumer's (de)registration of the incarnation created at `epoch`, at
    /// the leader's time `at_ms`.
    ChangeStream {
        /// Stream name.
        name: String,
        /// Creation time (seconds) of the incarnation to change.
        epoch: u64,
        /// The change.
        change: StreamChange,
        /// The leader's clock when it took the request, in ms since the Unix epoch.
        at_ms: i64,
    },
    /// A retention sweep of every stream as at the leader's time `at_ms`.
    SweepRetention {
        /// The leader's clock, in ms since the Unix epoch.
        at_ms: i64,
    },
    /// PutRecord / PutRecords: records the leader routed and admitted, per shard.
    PutRecords {
        /// Stream name.
        stream: String,
        /// Creation time (seconds) of the incarnation the records were routed in.
        epoch: u64,
        /// The leader's clock when it took the request, in ms since the Unix epoch.
        arrival_ms: i64,
        /// Records per shard, in request order within each shard.
        batches: Vec<ShardBatch>,
        /// Whether the leader sealed the records' data (the stream was encrypted when it
        /// routed them); a batch applied after encryption was started or stopped is refused.
        #[serde(default)]
        encrypted: Option<bool>,
    },
}

/// Records routed to one shard.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ShardBatch {
    /// The shard's index.
    pub shard: u32,
    /// Its records.
    pub records: Vec<Record>,
}

/// One record as stored (data already sealed if the stream is encrypted).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Record {
    /// The partition key.
    pub partition_key: String,
    /// The stored data.
    #[serde(with = "super::bytes_serde")]
    pub data: Bytes,
}

/// What applying a command answered, identical on every replica.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum Response {
    /// The change was made.
    Done,
    /// The command was refused as a whole.
    Refused {
        /// The Kinesis error kind.
        kind: ErrorKind,
        /// Its message.
        message: String,
    },
    /// Per batch of a PutRecords, in command order: the sequence number of its first record
    /// (the others follow at consecutive offsets, see [`Response::sequence_numbers`]), or why
    /// the batch was refused.
    Appended(Vec<Result<String, (ErrorKind, String)>>),
}

/// The answer to a batch routed to a shard that a reshard closed, or routed before encryption
/// was started or stopped, while the put was replicated: nothing was written; a retry is
/// routed afresh.
pub const REROUTE: &str = "was resharded or its encryption changed while the write was replicated; nothing was written, retry";

impl Command {
    /// Whether applying the command may change a stream's description (everything but puts):
    /// the applied position is stored right after such a command, so a replay after a crash
    /// never makes a change of description again on a later description.
    pub fn changes_description(&self) -> bool {
        !matches!(self, Command::PutRecords { .. })
    }

    /// The command as bytes (CBOR).
    pub fn encode(&self) -> Vec<u8> {
        to_cbor(self)
    }

    /// Decodes [`Command::encode`]'s bytes.
    pub fn decode(bytes: &[u8]) -> Result<Command, String> {
        ciborium::from_reader(bytes).map_err(|e| e.to_string())
    }
}

impl Response {
    /// The response as bytes (CBOR).
    pub fn encode(&self) -> Vec<u8> {
        to_cbor(self)
    }

    /// Decodes [`Response::encode`]'s bytes.
    pub fn decode(bytes: &[u8]) -> Result<Response, String> {
        ciborium::from_reader(bytes).map_err(|e| e.to_string())
    }

    /// A refusal carrying `error`.
    pub fn refused(error: ApiError) -> Response {
        Response::Refused {
            kind: error.kind,
            message: error.message,
        }
    }

    /// The outcome as an API result (for CreateStream and DeleteStream).
    pub fn into_result(self) -> ApiResult<()> {
        match self {
            Response::Refused { kind, message } => Err(ApiError::new(kind, message)),
            _ => Ok(()),
        }
    }

    /// For a PutRecords with `counts[i]` records in batch `i`: per batch, the sequence number
    /// of every record, or the batch's error.
    pub fn sequence_numbers(&self, counts: &[usize]) -> ApiResult<Vec<ApiResult<Vec<String>>>> {
        let batches = match self {
            Response::Refused { kind, message } => {
                return Err(ApiError::new(*kind, message.clone()));
            }
            Response::Done => return Err(ApiError::internal("unexpected response to a put")),
            Response::Appended(batches) => batches,
        };
        if batches.len() != counts.len() {
            return Err(ApiError::internal("response does not match the request"));
        }
        Ok(batches
            .iter()
            .zip(counts)
            .map(|(batch, &count)| match batch {
                Ok(first) => {
                    let first = SequenceNumber::decode(first)
                        .ok_or_else(|| ApiError::internal("bad sequence number in response"))?;
                    Ok((0..count as u64)
                        .map(|i| {
                            SequenceNumber::of_record(
                                first.stream_epoch,
                                first.shard_index,
                                first.at_offset() + i,
                            )
                            .encode()
                        })
                        .collect())
                }
                Err((kind, message)) => Err(ApiError::new(*kind, message.clone())),
            })
            .collect())
    }
}

fn to_cbor<T: Serialize>(value: &T) -> Vec<u8> {
    let mut out = Vec::new();
    // Writing CBOR into a Vec cannot fail for these plain types.
    if let Err(e) = ciborium::into_writer(value, &mut out) {
        tracing::error!(error = %e, "encoding CBOR failed");
    }
    out
}

/// Where a shard's log stood when the replica last recorded its position, and where it really
/// ends: appends below `end` were already made before a restart and are not made again.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Replay {
    /// Offset the next replayed append starts at.
    pub next: u64,
    /// End offset of the log found at start.
    pub end: u64,
}

/// A shard by stream name, stream epoch and shard index.
pub type ShardKey = (String, u64, u32);

/// Applies commands to a catalog, skipping appends a restarted replica already made.
pub struct Applier {
    catalog: Arc<Catalog>,
    replay: HashMap<ShardKey, Replay>,
}

impl Applier {
    /// Applies to `catalog`; `replay` lists shards whose logs are ahead of the recorded
    /// position (see [`Replay`]).
    pub fn new(catalog: Arc<Catalog>, replay: HashMap<ShardKey, Replay>) -> Applier {
        let replay = replay.into_iter().filter(|(_, r)| r.next < r.end).collect();
        Applier { catalog, replay }
    }

    /// The catalog.
    pub fn catalog(&self) -> &Arc<Catalog> {
        &self.catalog
    }

    /// Forgets the replay positions (the state was replaced).
    pub fn reset_replay(&mut self) {
        self.replay.clear();
    }

    /// Applies one command. `Err` only for local failures (a log that cannot be written), which
    /// must stop the replica; refusals are responses.
    pub async fn apply(&mut self, command: Command) -> Result<Response, ApiError> {
        match command {
            Command::CreateStream {
                name,
                shard_count,
                mode,
                tags,
                max_record_size_kib,
                created_ms,
                placement,
            } => {
                // Replayed after a restart: the stream this very command created is there.
                let existing = self
                    .catalog
                    .describe(&name, |meta, _| meta.created_ms)
                    .await
                    .ok();
                if existing == Some(created_ms) {
                    return Ok(Response::Done);
                }
                let request = CreateStream {
                    name,
                    shard_count,
                    mode,
                    tags,
                    max_record_size_kib,
                    placement,
                };
                outcome(self.catalog.create_stream_at(request, created_ms).await)
            }
            Command::DeleteStream {
                name,
                epoch,
                enforce_consumer_deletion,
            } => outcome(
                self.catalog
                    .delete_stream_incarnation(&name, Some(epoch), enforce_consumer_deletion)
                    .await,
            ),
            Command::ChangeSettings {
                name,
                epoch,
                change,
            } => outcome(
                self.catalog
                    .apply_settings(&name, Some(epoch), change)
                    .await,
            ),
            Command::ChangeStream {
                name,
                epoch,
                change,
                at_ms,
            } => outcome(
                self.catalog
                    .apply_change(&name, Some(epoch), change, at_ms)
                    .await,
            ),
            Command::ImportStream { meta, placement } => {
                outcome(self.catalog.import_stream_here(*meta, placement).await)
            }
            Command::SweepRetention { at_ms } => {
                self.catalog.sweep_retention_at(at_ms).await;
                Ok(Response::Done)
            }
            Command::PutRecords {
                stream,
                epoch,
                arrival_ms,
                batches,
                encrypted,
            } => {
                self.put(stream, epoch, arrival_ms, batches, encrypted)
                    .await
            }
        }
    }

    async fn put(
        &mut self,
        stream: String,
        epoch: u64,
        arrival_ms: i64,
        batches: Vec<ShardBatch>,
        encrypted: Option<bool>,
    ) -> Result<Response, ApiError> {
        let mut answers: Vec<Option<Result<String, (ErrorKind, String)>>> =
            vec![None; batches.len()];
        // Shards of the description that no longer take the batches routed to them: closed
        // by a reshard, or all of them if encryption started or stopped since the leader
        // routed the records. Unknown shards and a gone incarnation are refused below.
        let moved: Vec<u32> = self
            .catalog
            .describe(&stream, |meta, _| {
                let sealed = meta.encryption_key_id.is_some();
                meta.shards
                    .iter()
                    .filter(|s| meta.epoch == epoch && meta.hosts(s))
                    .filter(|s| !s.is_open() || encrypted.is_some_and(|e| e != sealed))
                    .map(|s| s.index)
                    .collect()
            })
            .await
            .unwrap_or_default();
        let mut appends = Vec::new();
        let mut positions = Vec::new();
        for (position, batch) in batches.into_iter().enumerate() {
            let key = (stream.clone(), epoch, batch.shard);
            let count = batch.records.len() as u64;
            if let Some(replay) = self.replay.get_mut(&key) {
                if replay.next + count > replay.end {
                    return Err(ApiError::internal(format!(
                        "shard {} of stream {stream} ends at {} inside a replayed append at {}",
                        batch.shard, replay.end, replay.next
                    )));
                }
                let first = SequenceNumber::of_record(epoch, batch.shard, replay.next).encode();
                answers[position] = Some(Ok(first));
                replay.next += count;
                if replay.next == replay.end {
                    self.replay.remove(&key);
                }
                continue;
            }
            if moved.contains(&batch.shard) {
                answers[position] = Some(Err((
                    ErrorKind::Internal,
                    format!("Shard {} of stream {stream} {REROUTE}.", batch.shard),
                )));
                continue;
            }
            let records = batch
                .records
                .into_iter()
                .map(|r| RecordIn {
                    partition_key: r.partition_key,
                    data: r.data,
                })
                .collect();
            positions.push((position, batch.shard));
            appends.push((batch.shard, records));
        }
        if !appends.is_empty() {
            let acks = match self
                .catalog
                .append_routed_at(&stream, epoch, appends, arrival_ms)
                .await
            {
                Ok(acks) => acks,
                Err(error) => return Ok(Response::refused(error)),
            };
            for ((position, shard), ack) in positions.into_iter().zip(acks) {
                answers[position] = Some(match ack {
                    Ok(ack) => {
                        Ok(SequenceNumber::of_record(epoch, shard, ack.first_offset).encode())
                    }
                    Err(error) if error.kind == ErrorKind::Internal => return Err(error),
                    Err(error) => Err((error.kind, error.message)),
                });
            }
        }
        Ok(Response::Appended(
            answers
                .into_iter()
                .map(|a| a.unwrap_or_else(|| Err((ErrorKind::Internal, "not applied".into()))))
                .collect(),
        ))
    }
}

/// A create or delete's outcome as a response; internal errors are local failures.
fn outcome(result: ApiResult<()>) -> Result<Response, ApiError> {
    match result {
        Ok(()) => Ok(Response::Done),
        Err(error) if error.kind == ErrorKind::Internal => Err(error),
        Err(error) => Ok(Response::refused(error)),
    }
}
