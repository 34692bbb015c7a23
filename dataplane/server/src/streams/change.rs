//! Changes of a stream's shape and registrations — resharding and enhanced fan-out consumers —
//! made the same way by a standalone server and by every replica of a shard group.
//!
//! A change is a value, so a shard group can replicate it: [`Catalog::change_stream`] hands it
//! to the [`Replicator`](super::Replicator) when the catalog is a replica, and
//! [`Catalog::apply_change`] makes it at a given time, the leader's clock on every replica.
//! Applying the same changes in the same order to two catalogs holding the same streams gives
//! identical descriptions and identical refusals.

use serde::{Deserialize, Serialize};

use super::error::{ApiError, ApiResult};
use super::model::ReshardOp;
use super::{Catalog, now_ms};

/// A change of a stream that is neither a record nor a setting.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum StreamChange {
    /// SplitShard, MergeShards or UpdateShardCount.
    Reshard {
        /// The reshard.
        op: ReshardOp,
        /// Who asked for it, which decides the rules it is held to.
        by: ReshardBy,
        /// How many reshards the stream had when the change was asked for, if the asker knew:
        /// a change replayed after it was made (its op is then at this position of the
        /// stream's history) is not made twice, and one overtaken by another reshard is
        /// refused as ResourceInUse rather than made on a shape nobody looked at.
        after: Option<usize>,
    },
    /// RegisterStreamConsumer.
    RegisterConsumer {
        /// The consumer's name.
        name: String,
        /// Its registration time in seconds, when another shard group of the stream registered
        /// it first; else the time of the change.
        created_s: Option<i64>,
    },
    /// DeregisterStreamConsumer.
    DeregisterConsumer {
        /// The consumer's name.
        name: String,
    },
}

/// Who asks for a reshard.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum ReshardBy {
    /// A client, through SplitShard, MergeShards or UpdateShardCount: every Kinesis rule applies.
    Client,
    /// The service sizing an on-demand stream: a new shard count is also allowed in ON_DEMAND
    /// mode, without the limit of calls per day.
    Service,
    /// Replaying a reshard another shard group of the stream made: no limit applies twice.
    Replay,
}

impl Catalog {
    /// Makes `change` to the stream: through the [`Replicator`](super::Replicator) when the
    /// catalog is a replica of a shard group, else here, now.
    pub async fn change_stream(&self, stream_name: &str, change: StreamChange) -> ApiResult<()> {
        if let Some(replicator) = self.replicator() {
            return replicator.change_stream(stream_name, change).await;
        }
        self.apply_change(stream_name, None, change, now_ms()).await
    }

    /// Makes `change` here as if at `at_ms` (ms since the Unix epoch), only to the incarnation
    /// created at `epoch` (seconds) when one is given. Deterministic.
    pub async fn apply_change(
        &self,
        stream_name: &str,
        epoch: Option<u64>,
        change: StreamChange,
        at_ms: i64,
    ) -> ApiResult<()> {
        self.check_incarnation(stream_name, epoch)?;
        match change {
            StreamChange::Reshard { op, by, after } => {
                self.reshard_at(stream_name, op, by, after, at_ms).await
            }
            StreamChange::RegisterConsumer { name, created_s } => {
                self.register_consumer_here(stream_name, &name, created_s.unwrap_or(at_ms / 1000))
                    .await
            }
            StreamChange::DeregisterConsumer { name } => {
                self.deregister_consumer_here(stream_name, &name).await
            }
        }
    }

    /// Refuses with ResourceNotFound unless the stream is the incarnation created at `epoch`
    /// (seconds), when one is given: a change replayed after the name was reused does not
    /// reach the newer stream.
    pub(super) fn check_incarnation(&self, stream_name: &str, epoch: Option<u64>) -> ApiResult<()> {
        if let Some(epoch) = epoch
            && self.stream(stream_name)?.epoch != epoch
        {
            return Err(ApiError::stream_not_found(
                stream_name,
                &self.config.account,
            ));
        }
        Ok(())
    }
}
