//! Direct access to a stream's shards, for readers that follow a whole stream themselves (the
//! gRPC Subscribe) rather than one shard through an iterator.

use std::sync::Arc;

use super::consume::StartingPosition;
use super::error::ApiResult;
use super::model::ShardMeta;
use super::shard::Shard;
use super::{Catalog, Stream};

/// A retained shard, where a reader starting at some position begins in it.
#[derive(Clone)]
pub struct ShardPosition {
    /// The shard's description (range, lineage, whether and where it closed).
    pub meta: ShardMeta,
    /// Its run-time handle, to pass to [`Catalog::read`] and to wait on with
    /// [`Shard::watch_tip`].
    pub shard: Arc<Shard>,
    /// The offset `position` resolves to in this shard, as GetShardIterator resolves it: for a
    /// closed shard read with `LATEST`, its end.
    pub offset: u64,
}

impl Catalog {
    /// Every retained shard of `stream`, ordered by index, with the offset `position` resolves
    /// to in each, all from one consistent view of the stream (no reshard lies between two of
    /// them). Empty once the stream is deleted.
    pub async fn shard_positions(
        &self,
        stream: &Stream,
        position: &StartingPosition,
    ) -> ApiResult<Vec<ShardPosition>> {
        let state = stream.state.read().await;
        let mut positions = Vec::with_capacity(state.meta.shards.len());
        for meta in &state.meta.shards {
            let Some(shard) = state.shards.get(&meta.index) else {
                continue;
            };
            let offset = self.resolve(stream, &state.meta, meta, shard, position)?;
            positions.push(ShardPosition {
                meta: meta.clone(),
                shard: shard.clone(),
                offset,
            });
        }
        Ok(positions)
    }
}
