//! Subscribe: every record of a stream pushed over one server-streaming call, following
//! resharding.
//!
//! One reader task per shard reads batches with [`Catalog::read`] and waits on the shard's tip
//! when it has caught up; all of them feed one bounded channel, so a slow client slows the
//! readers down instead of piling records up in memory. A coordinator starts a shard's reader
//! only once every retained parent of the shard has been read to its end, and the parent's last
//! batch is in the channel before its reader ends: the client therefore sees a parent's records
//! before any of its children's, and each partition key's records in the order written.

use std::collections::{BTreeSet, HashMap};
use std::sync::Arc;
use std::time::Duration;

use riffle_proto::v1;
use tokio::sync::mpsc;
use tokio::task::JoinSet;
use tokio_stream::wrappers::ReceiverStream;
use tonic::Status;

use super::admin::check_stream_name;
use super::records::{record, starting_position};
use super::status::{invalid, status};
use crate::streams::access::ShardPosition;
use crate::streams::model::{ShardMeta, shard_id};
use crate::streams::shard::Shard;
use crate::streams::{ApiError, Catalog, ErrorKind, StartingPosition, Stream};

/// The responses of one subscription.
pub type SubscribeStream = ReceiverStream<Result<v1::SubscribeResponse, Status>>;

/// Most records in one batch (which also stays near 10 MiB of data).
const BATCH_RECORDS: usize = 10_000;
/// Batches waiting for the client before readers pause.
const QUEUED_BATCHES: usize = 16;
/// How long a caught-up reader waits on its shard's tip before looking again anyway. Closing a
/// shard wakes its readers; deleting the stream does not, and this bounds how late they notice.
const RECHECK: Duration = Duration::from_secs(1);

/// Subscribe: checks the request, takes the stream's shards as they are now and starts
/// following them.
pub async fn subscribe(
    catalog: &Arc<Catalog>,
    request: v1::SubscribeRequest,
) -> Result<SubscribeStream, Status> {
    check_stream_name(&request.stream)?;
    let position = starting_position(request.position)?;
    if !matches!(
        position,
        StartingPosition::TrimHorizon | StartingPosition::Latest
    ) {
        return Err(invalid(
            "Subscribe starts every shard at TRIM_HORIZON or LATEST; use GetRecords to read one shard from a sequence number or time.",
        ));
    }
    let stream = catalog.stream(&request.stream).map_err(status)?;
    let shards = catalog
        .shard_positions(&stream, &position)
        .await
        .map_err(status)?;
    let (sender, receiver) = mpsc::channel(QUEUED_BATCHES);
    let subscription = Subscription {
        catalog: catalog.clone(),
        stream,
        sender,
        stop_when_caught_up: request.stop_when_caught_up,
    };
    tokio::spawn(subscription.run(shards));
    Ok(ReceiverStream::new(receiver))
}

/// Why a shard's reader stopped.
enum End {
    /// The shard is closed and read to its end (or expired): its children may start.
    Closed(u32),
    /// The reader caught up and the subscription stops there.
    CaughtUp,
    /// The client went away.
    Gone,
}

/// The shards whose readers can start now: not started yet, and every parent either read to its
/// end or no longer retained.
fn ready(shards: &[ShardMeta], started: &BTreeSet<u32>, finished: &BTreeSet<u32>) -> Vec<u32> {
    let retained: BTreeSet<u32> = shards.iter().map(|s| s.index).collect();
    shards
        .iter()
        .filter(|s| !started.contains(&s.index))
        .filter(|s| {
            s.parent
                .into_iter()
                .chain(s.adjacent_parent)
                .all(|p| finished.contains(&p) || !retained.contains(&p))
        })
        .map(|s| s.index)
        .collect()
}

struct Subscription {
    catalog: Arc<Catalog>,
    stream: Arc<Stream>,
    sender: mpsc::Sender<Result<v1::SubscribeResponse, Status>>,
    stop_when_caught_up: bool,
}

impl Subscription {
    /// Coordinates the readers until the client leaves, an error ends the call, or (when
    /// stopping at the tip) every reader has stopped. Returning drops the readers' join set,
    /// which cancels any still running.
    async fn run(self, initial: Vec<ShardPosition>) {
        let this = Arc::new(self);
        // Where the shards that existed at the start begin; shards created later are read from
        // their beginning.
        let offsets: HashMap<u32, u64> = initial.iter().map(|s| (s.meta.index, s.offset)).collect();
        let mut started = BTreeSet::new();
        let mut finished = BTreeSet::new();
        let mut readers = JoinSet::new();
        let mut shards = initial;
        loop {
            let metas: Vec<ShardMeta> = shards.iter().map(|s| s.meta.clone()).collect();
            for index in ready(&metas, &started, &finished) {
                let Some(position) = shards.iter().find(|s| s.meta.index == index) else {
                    continue;
                };
                started.insert(index);
                let offset = offsets.get(&index).copied().unwrap_or(0);
                readers.spawn(this.clone().follow(position.shard.clone(), offset));
            }
            let joined = tokio::select! {
                joined = readers.join_next() => joined,
                () = this.sender.closed() => return,
            };
            let Some(joined) = joined else {
                return;
            };
            match joined {
                Ok(Ok(End::Closed(index))) => {
                    finished.insert(index);
                }
                Ok(Ok(End::CaughtUp)) => continue,
                Ok(Ok(End::Gone)) => return,
                Ok(Err(error)) => {
                    let _ = this.sender.send(Err(error)).await;
                    return;
                }
                Err(error) => {
                    let _ = this
                        .sender
                        .send(Err(Status::internal(format!(
                            "InternalFailure: a shard reader failed: {error}"
                        ))))
                        .await;
                    return;
                }
            }
            shards = match this
                .catalog
                .shard_positions(&this.stream, &StartingPosition::TrimHorizon)
                .await
            {
                Ok(shards) => shards,
                Err(error) => {
                    let _ = this.sender.send(Err(status(error))).await;
                    return;
                }
            };
        }
    }

    /// Whether the stream this subscription follows still exists (and was not re-created).
    fn stream_exists(&self) -> bool {
        self.catalog
            .stream(&self.stream.name)
            .is_ok_and(|current| Arc::ptr_eq(&current, &self.stream))
    }

    fn stream_gone(&self) -> Status {
        status(ApiError::stream_not_found(
            &self.stream.name,
            &self.catalog.config().account,
        ))
    }

    /// Reads one shard from `offset` and sends its records, in order, until it is closed and
    /// read to its end (or until caught up, if the subscription stops there).
    async fn follow(self: Arc<Self>, shard: Arc<Shard>, mut offset: u64) -> Result<End, Status> {
        let id = shard_id(shard.index);
        let mut tip = shard.watch_tip();
        loop {
            if !self.stream_exists() {
                return Err(self.stream_gone());
            }
            // Mark the tip seen before reading, so records committed after this read wake the
            // wait below.
            tip.borrow_and_update();
            let outcome = match self
                .catalog
                .read(&self.stream, &shard, offset, BATCH_RECORDS)
                .await
            {
                Ok(outcome) => outcome,
                Err(_) if !self.stream_exists() => return Err(self.stream_gone()),
                // Retention removed this closed shard while it was being read: nothing is left
                // of it, and its children may start.
                Err(error) if error.kind == ErrorKind::ResourceNotFound => {
                    return Ok(End::Closed(shard.index));
                }
                Err(error) => return Err(status(error)),
            };
            let count = outcome.records.len();
            let closed = outcome.next_offset.is_none();
            if count > 0 || closed {
                let bytes: usize = outcome.records.iter().map(|r| r.data.len()).sum();
                shard.metrics.outgoing_bytes.add(bytes as u64);
                shard.metrics.outgoing_records.add(count as u64);
                let batch = v1::SubscribeResponse {
                    shard_id: id.clone(),
                    records: outcome.records.into_iter().map(record).collect(),
                    millis_behind_latest: outcome.millis_behind_latest,
                    shard_closed: closed,
                    child_shard_ids: outcome
                        .child_shards
                        .unwrap_or_default()
                        .into_iter()
                        .map(|child| child.shard_id)
                        .collect(),
                };
                if self.sender.send(Ok(batch)).await.is_err() {
                    return Ok(End::Gone);
                }
            }
            let Some(next) = outcome.next_offset else {
                return Ok(End::Closed(shard.index));
            };
            offset = next;
            if count > 0 && next < shard.log.end_offset() {
                continue;
            }
            if count == 0 && self.stop_when_caught_up {
                return Ok(End::CaughtUp);
            }
            if count == 0 {
                tokio::select! {
                    changed = tip.changed() => {
                        if changed.is_err() {
                            tokio::time::sleep(RECHECK).await;
                        }
                    }
                    () = tokio::time::sleep(RECHECK) => {}
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::streams::hash_key::HashRange;

    fn shard(index: u32, parent: Option<u32>, adjacent_parent: Option<u32>) -> ShardMeta {
        ShardMeta {
            index,
            range: HashRange::ALL,
            parent,
            adjacent_parent,
            created_ms: 0,
            closed: None,
            encryption_changes: Vec::new(),
            group: 0,
        }
    }

    fn set(indexes: &[u32]) -> BTreeSet<u32> {
        indexes.iter().copied().collect()
    }

    #[test]
    fn children_wait_for_every_retained_parent() {
        // 0 and 1 merged into 2; 2 split into 3 and 4.
        let shards = [
            shard(0, None, None),
            shard(1, None, None),
            shard(2, Some(0), Some(1)),
            shard(3, Some(2), None),
            shard(4, Some(2), None),
        ];
        assert_eq!(ready(&shards, &set(&[]), &set(&[])), vec![0, 1]);
        assert_eq!(ready(&shards, &set(&[0, 1]), &set(&[0])), Vec::<u32>::new());
        assert_eq!(ready(&shards, &set(&[0, 1]), &set(&[0, 1])), vec![2]);
        assert_eq!(
            ready(&shards, &set(&[0, 1, 2]), &set(&[0, 1, 2])),
            vec![3, 4]
        );
    }

    #[test]
    fn expired_parents_do_not_hold_children_back() {
        // Shard 0 expired; 1 and 2 are its children, 3 merges 2 with the expired 0.
        let shards = [
            shard(1, Some(0), None),
            shard(2, Some(0), None),
            shard(3, Some(2), Some(0)),
        ];
        assert_eq!(ready(&shards, &set(&[]), &set(&[])), vec![1, 2]);
        assert_eq!(ready(&shards, &set(&[1, 2]), &set(&[2])), vec![3]);
    }
}
