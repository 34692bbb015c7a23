//! Opening the catalog, creating and deleting streams, and the retention sweep.

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::sync::{Arc, Mutex, RwLock as StdRwLock};

use riffle_disk::Deleter;
use tokio::sync::RwLock;

use super::encryption::DataKey;
use super::error::{ApiError, ApiResult, ErrorKind};
use super::hash_key::HashRange;
use super::model::{Placement, ShardMeta, StreamMeta, StreamMode};
use super::shard::Shard;
use super::{Catalog, Stream, StreamState, StreamsConfig, now_ms, store};

/// Default shard count of an on-demand stream.
pub const ON_DEMAND_SHARDS: u32 = 4;

/// What CreateStream asks for.
#[derive(Debug, Clone)]
pub struct CreateStream {
    /// Stream name (validated by the caller).
    pub name: String,
    /// Shard count; required for provisioned streams.
    pub shard_count: Option<u32>,
    /// Capacity mode.
    pub mode: StreamMode,
    /// Initial tags.
    pub tags: BTreeMap<String, String>,
    /// Largest record, in KiB.
    pub max_record_size_kib: Option<u32>,
    /// Which shards this server hosts, for a stream spread over several shard groups.
    pub placement: Option<Placement>,
}

impl Catalog {
    /// Opens every stream stored under the data directory, recovering each shard log.
    pub fn open(config: StreamsConfig) -> ApiResult<Arc<Catalog>> {
        let mut streams = BTreeMap::new();
        let stored = store::load_all(&config.data_dir).map_err(ApiError::internal)?;
        for (dir, meta) in stored {
            let mut shards = BTreeMap::new();
            for shard in meta.shards.iter().filter(|s| meta.hosts(s)) {
                let log_dir = store::shard_dir(&dir, shard.index);
                shards.insert(
                    shard.index,
                    Shard::open(shard.index, &log_dir, config.log, config.limits)?,
                );
            }
            tracing::info!(stream = %meta.name, shards = meta.shards.len(), "stream recovered");
            let stream = Stream {
                name: meta.name.clone(),
                epoch: meta.epoch,
                dir,
                state: RwLock::new(StreamState::new(meta, shards)),
            };
            streams.insert(stream.name.clone(), Arc::new(stream));
        }
        Ok(Arc::new(Catalog {
            key: DataKey::from_bytes(&config.data_key),
            config,
            streams: StdRwLock::new(streams),
            subscriptions: Mutex::new(HashMap::new()),
            replicator: StdRwLock::new(None),
            deleter: Deleter::start("stream-delete").map_err(ApiError::internal)?,
        }))
    }

    /// Creates a stream with evenly divided shards; it is ACTIVE (and durable) on return.
    pub async fn create_stream(&self, request: CreateStream) -> ApiResult<()> {
        if let Some(replicator) = self.replicator() {
            return replicator.create_stream(request).await;
        }
        self.create_stream_at(request, now_ms()).await
    }

    /// [`Catalog::create_stream`] as if called at `created_ms` (ms since the epoch), which
    /// becomes the stream's creation time and the epoch of its sequence numbers: replicas
    /// applying the same request at the same time create identical streams.
    pub async fn create_stream_at(&self, request: CreateStream, created_ms: i64) -> ApiResult<()> {
        let shard_count = match (request.mode, request.shard_count) {
            (StreamMode::Provisioned, Some(count)) => count,
            (StreamMode::Provisioned, None) => {
                return Err(ApiError::invalid(
                    "ShardCount is required for a stream in PROVISIONED mode.",
                ));
            }
            (StreamMode::OnDemand, count) => count.unwrap_or(ON_DEMAND_SHARDS),
        };
        if shard_count == 0 {
            return Err(ApiError::invalid("ShardCount must be at least 1."));
        }
        let open_now = self.open_shard_count().await;
        if open_now + shard_count > self.config.shard_limit {
            return Err(ApiError::new(
                ErrorKind::LimitExceeded,
                format!(
                    "This request would exceed the shard limit for the account {} in {}. \
                     Current shard count for the account: {open_now}. Limit: {}. \
                     Number of additional shards that would have resulted from this request: {shard_count}.",
                    self.config.account, self.config.region, self.config.shard_limit
                ),
            ));
        }
        if request.mode == StreamMode::OnDemand
            && self.on_demand_stream_count().await >= self.config.on_demand_stream_limit
        {
            return Err(ApiError::new(
                ErrorKind::LimitExceeded,
                "This request would exceed the on-demand stream limit for the account.",
            ));
        }
        let epoch = (created_ms / 1000) as u64;
        let meta = StreamMeta {
            name: request.name.clone(),
            epoch,
            created_ms,
            mode: request.mode,
            retention_hours: 24,
            max_record_size_kib: request.max_record_size_kib.unwrap_or(1024),
            shards: HashRange::divide_evenly(shard_count)
                .into_iter()
                .enumerate()
                .map(|(index, range)| ShardMeta {
                    index: index as u32,
                    range,
                    parent: None,
                    adjacent_parent: None,
                    created_ms,
                    closed: None,
                    encryption_changes: Vec::new(),
                    group: request
                        .placement
                        .map_or(0, |p| p.initial_group(index as u32)),
                })
                .collect(),
            tags: request.tags,
            consumers: Vec::new(),
            encryption_key_id: None,
            enhanced_metrics: BTreeSet::new(),
            shard_count_updates: Vec::new(),
            resource_policy: None,
            placement: request.placement,
            reshards: Vec::new(),
        };
        self.insert_stream(meta).await
    }

    /// Adds a stream whose description was exported by another shard group of it, as the group
    /// `placement` names: the same name, epoch, shards and lineage, so the groups answer as one
    /// stream. Records are not copied; the new group hosts shards no other group stores.
    pub async fn import_stream(&self, meta: StreamMeta, placement: Placement) -> ApiResult<()> {
        if let Some(replicator) = self.replicator() {
            return replicator.import_stream(meta, placement).await;
        }
        self.import_stream_here(meta, placement).await
    }

    /// [`Catalog::import_stream`] here. Replayed after it was made (the stream is there with
    /// the same creation time and placement), it changes nothing.
    pub async fn import_stream_here(
        &self,
        mut meta: StreamMeta,
        placement: Placement,
    ) -> ApiResult<()> {
        let existing = self
            .describe(&meta.name, |m, _| (m.created_ms, m.placement))
            .await
            .ok();
        if existing == Some((meta.created_ms, Some(placement))) {
            return Ok(());
        }
        meta.placement = Some(placement);
        self.insert_stream(meta).await
    }

    /// The stream's description as [`Catalog::import_stream`] takes it.
    pub async fn export_stream(&self, name: &str) -> ApiResult<StreamMeta> {
        self.describe(name, |meta, _| meta.clone()).await
    }

    /// Registers and stores a new stream described by `meta`.
    async fn insert_stream(&self, meta: StreamMeta) -> ApiResult<()> {
        let epoch = meta.epoch;
        let name = meta.name.clone();
        // Reserve the name first so concurrent creates of one name cannot both succeed.
        let dir = store::stream_dir(&self.config.data_dir, &name, epoch);
        let stream = Arc::new(Stream {
            name: name.clone(),
            epoch,
            dir: dir.clone(),
            state: RwLock::new(StreamState::new(meta.clone(), BTreeMap::new())),
        });
        let mut state = stream.state.write().await;
        {
            let mut streams = self.streams.write().unwrap_or_else(|p| p.into_inner());
            if streams.contains_key(&name) {
                return Err(ApiError::new(
                    ErrorKind::ResourceInUse,
                    format!(
                        "Stream {} under account {} already exists.",
                        name, self.config.account
                    ),
                ));
            }
            streams.insert(name.clone(), stream.clone());
        }
        let created = self.materialize(&dir, &meta);
        match created {
            Ok(shards) => {
                *state = StreamState::new(meta, shards);
                Ok(())
            }
            Err(error) => {
                self.streams
                    .write()
                    .unwrap_or_else(|p| p.into_inner())
                    .remove(&name);
                let _ = std::fs::remove_dir_all(&dir);
                Err(error)
            }
        }
    }

    /// Creates the shard logs, then the description that makes the stream exist.
    fn materialize(
        &self,
        dir: &std::path::Path,
        meta: &StreamMeta,
    ) -> ApiResult<BTreeMap<u32, Arc<Shard>>> {
        std::fs::create_dir_all(dir).map_err(ApiError::internal)?;
        let mut shards = BTreeMap::new();
        for shard in meta.shards.iter().filter(|s| meta.hosts(s)) {
            let log_dir = store::shard_dir(dir, shard.index);
            shards.insert(
                shard.index,
                Shard::open(shard.index, &log_dir, self.config.log, self.config.limits)?,
            );
        }
        store::save(dir, meta).map_err(ApiError::internal)?;
        if let Some(parent) = dir.parent() {
            store::sync_dir(parent).map_err(ApiError::internal)?;
        }
        Ok(shards)
    }

    /// Deletes a stream and all its records.
    pub async fn delete_stream(
        &self,
        name: &str,
        enforce_consumer_deletion: bool,
    ) -> ApiResult<()> {
        if let Some(replicator) = self.replicator() {
            return replicator
                .delete_stream(name, enforce_consumer_deletion)
                .await;
        }
        self.delete_stream_incarnation(name, None, enforce_consumer_deletion)
            .await
    }

    /// [`Catalog::delete_stream`], only if the stream is the incarnation created at `epoch`
    /// (seconds) when one is given: a delete replayed after the name was reused is refused
    /// with ResourceNotFound instead of deleting the newer stream.
    pub async fn delete_stream_incarnation(
        &self,
        name: &str,
        epoch: Option<u64>,
        enforce_consumer_deletion: bool,
    ) -> ApiResult<()> {
        let stream = self.stream(name)?;
        if epoch.is_some_and(|e| e != stream.epoch) {
            return Err(ApiError::stream_not_found(name, &self.config.account));
        }
        let mut state = stream.state.write().await;
        if !state.meta.consumers.is_empty() && !enforce_consumer_deletion {
            return Err(ApiError::new(
                ErrorKind::ResourceInUse,
                format!(
                    "Stream {name} under account {} has registered consumers. \
                     Set EnforceConsumerDeletion to delete it with them.",
                    self.config.account
                ),
            ));
        }
        self.streams
            .write()
            .unwrap_or_else(|p| p.into_inner())
            .remove(name);
        for shard in state.shards.values() {
            shard.log.close();
        }
        // Writers and readers still holding the stream see it as gone.
        state.shards.clear();
        state.routes.clear();
        store::remove(&stream.dir, &self.deleter).map_err(ApiError::internal)?;
        Ok(())
    }

    /// Deletes every stream and its records (a replica about to install a snapshot).
    pub async fn remove_all_streams(&self) -> ApiResult<()> {
        let names: Vec<String> = self.streams().iter().map(|s| s.name.clone()).collect();
        for name in names {
            match self.delete_stream_incarnation(&name, None, true).await {
                Ok(()) => {}
                Err(e) if e.kind == ErrorKind::ResourceNotFound => {}
                Err(e) => return Err(e),
            }
        }
        Ok(())
    }

    /// Opens the streams stored under the data directory that are not open yet (placed there
    /// by a replica installing a snapshot).
    pub async fn load_new_streams(&self) -> ApiResult<()> {
        let stored = store::load_all(&self.config.data_dir).map_err(ApiError::internal)?;
        for (dir, meta) in stored {
            if self.stream(&meta.name).is_ok() {
                continue;
            }
            let mut shards = BTreeMap::new();
            for shard in meta.shards.iter().filter(|s| meta.hosts(s)) {
                let log_dir = store::shard_dir(&dir, shard.index);
                shards.insert(
                    shard.index,
                    Shard::open(shard.index, &log_dir, self.config.log, self.config.limits)?,
                );
            }
            let stream = Stream {
                name: meta.name.clone(),
                epoch: meta.epoch,
                dir,
                state: RwLock::new(StreamState::new(meta, shards)),
            };
            self.streams
                .write()
                .unwrap_or_else(|p| p.into_inner())
                .insert(stream.name.clone(), Arc::new(stream));
        }
        Ok(())
    }

    /// Drains and closes every shard log of `stream` (clean shutdown).
    pub async fn close_stream_logs(&self, stream: &Stream) {
        let state = stream.state.read().await;
        for shard in state.shards.values() {
            shard.log.close();
        }
    }

    /// Open shards across all streams.
    pub async fn open_shard_count(&self) -> u32 {
        let mut total = 0;
        for stream in self.streams() {
            total += stream.state.read().await.meta.open_shards().len() as u32;
        }
        total
    }

    /// Streams in on-demand mode.
    pub async fn on_demand_stream_count(&self) -> u32 {
        let mut total = 0;
        for stream in self.streams() {
            total += u32::from(stream.state.read().await.meta.mode == StreamMode::OnDemand);
        }
        total
    }

    /// Applies retention now: through the [`Replicator`](super::Replicator) when the catalog is
    /// a replica of a shard group (the leader replicates the sweep with its clock, so every
    /// replica trims the same records and forgets the same shards; other replicas do nothing),
    /// else here.
    pub async fn sweep_retention(&self) {
        if let Some(replicator) = self.replicator() {
            if let Err(error) = replicator.sweep_retention().await
                && error.kind != ErrorKind::NotLeader
            {
                tracing::warn!(%error, "replicated retention sweep failed");
            }
            return;
        }
        self.sweep_retention_at(now_ms()).await
    }

    /// Applies retention as at `now` (ms since the Unix epoch): trims expired segments and
    /// forgets closed shards whose records have all expired.
    pub async fn sweep_retention_at(&self, now: i64) {
        for stream in self.streams() {
            let mut state = stream.state.write().await;
            let horizon = now - state.meta.retention_ms();
            for shard in state.shards.values() {
                if let Err(error) = shard.log.trim_before_with(horizon, &self.deleter) {
                    tracing::warn!(stream = %stream.name, shard = shard.index, %error, "retention trim failed");
                }
            }
            let expired: Vec<u32> = state
                .meta
                .shards
                .iter()
                .filter(|s| s.closed.is_some_and(|c| c.closed_ms < horizon))
                .map(|s| s.index)
                .collect();
            if expired.is_empty() {
                continue;
            }
            state.meta.shards.retain(|s| !expired.contains(&s.index));
            if let Err(error) = store::save(&stream.dir, &state.meta) {
                tracing::warn!(stream = %stream.name, %error, "could not save the stream description");
                continue;
            }
            for index in expired {
                if let Some(shard) = state.shards.remove(&index) {
                    shard.log.close();
                }
                let _ = std::fs::remove_dir_all(store::shard_dir(&stream.dir, index));
            }
            state.rebuild_routes();
        }
    }

    /// Persists a changed description of `stream`.
    pub(super) fn save(&self, stream: &Stream, meta: &StreamMeta) -> ApiResult<()> {
        store::save(&stream.dir, meta).map_err(ApiError::internal)
    }

    /// Removes the (empty) log directory of a shard `stream` no longer stores.
    pub(super) fn remove_shard_dir(&self, stream: &Stream, index: u32) {
        let _ = std::fs::remove_dir_all(store::shard_dir(&stream.dir, index));
    }

    /// Opens the log of a new shard of `stream`.
    pub(super) fn open_shard(&self, stream: &Stream, index: u32) -> ApiResult<Arc<Shard>> {
        Shard::open(
            index,
            &store::shard_dir(&stream.dir, index),
            self.config.log,
            self.config.limits,
        )
    }
}
