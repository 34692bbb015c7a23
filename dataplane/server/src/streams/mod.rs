//! The stream service: streams, shards and records, independent of any wire protocol.
//!
//! The Kinesis API and the gRPC API both translate their requests into calls on [`Catalog`].
//! Each stream's description is guarded by an async read-write lock: record traffic takes it
//! shared (only to route and enqueue), while resharding and other changes take it exclusively,
//! so a shard is closed only after every write routed to it is durable.

pub mod access;
pub mod encryption;
pub mod error;
pub mod hash_key;
pub mod model;
pub mod sequence;
pub mod shard;
pub mod shard_iterator;
pub mod store;
pub mod throttle;

mod admin;
mod change;
mod consume;
mod consumers;
mod lifecycle;
mod produce;
mod reshard;

use std::collections::{BTreeMap, HashMap};
use std::future::Future;
use std::path::PathBuf;
use std::pin::Pin;
use std::sync::{Arc, Mutex, RwLock as StdRwLock};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use riffle_disk::Deleter;
use riffle_log::LogConfig;
use tokio::sync::RwLock;

pub use admin::SettingsChange;
pub use change::{ReshardBy, StreamChange};
pub use consume::{ChildShard, ReadOutcome, ReadRecord, StartingPosition};
pub use consumers::ConsumerView;
pub use error::{ApiError, ApiResult, ErrorKind};
pub use lifecycle::CreateStream;
pub use produce::{PutEntry, PutOutcome};
pub use reshard::{Replayed, ShardCountChange};

use encryption::DataKey;
use model::StreamMeta;
use shard::Shard;
use throttle::ShardLimits;

/// Settings of the stream service.
#[derive(Debug, Clone)]
pub struct StreamsConfig {
    /// Root of all stored data.
    pub data_dir: PathBuf,
    /// Region named in ARNs.
    pub region: String,
    /// Account named in ARNs and messages.
    pub account: String,
    /// Per-shard throughput limits.
    pub limits: ShardLimits,
    /// How long a shard iterator stays valid.
    pub iterator_ttl: Duration,
    /// How long a SubscribeToShard subscription lasts.
    pub subscription_ttl: Duration,
    /// Most open shards across all streams (DescribeLimits' ShardLimit).
    pub shard_limit: u32,
    /// Most on-demand streams.
    pub on_demand_stream_limit: u32,
    /// Storage settings for every shard log.
    pub log: LogConfig,
    /// Key for data at rest of streams with encryption on.
    pub data_key: [u8; 32],
}

impl StreamsConfig {
    /// Defaults matching Kinesis, storing under `data_dir`.
    pub fn new(data_dir: PathBuf, data_key: [u8; 32]) -> StreamsConfig {
        StreamsConfig {
            data_dir,
            region: "us-east-1".into(),
            account: "000000000000".into(),
            limits: ShardLimits::default(),
            iterator_ttl: Duration::from_secs(300),
            subscription_ttl: Duration::from_secs(300),
            shard_limit: 1000,
            on_demand_stream_limit: 50,
            log: LogConfig::default(),
            data_key,
        }
    }
}

/// One stream at run time.
pub struct Stream {
    /// Stream name.
    pub name: String,
    /// Creation time in seconds, part of sequence numbers and iterators.
    pub epoch: u64,
    dir: PathBuf,
    state: RwLock<StreamState>,
}

/// The mutable part of a stream: its description and its shards' handles.
pub struct StreamState {
    /// The persisted description.
    pub meta: StreamMeta,
    /// Run-time handles of every retained shard.
    pub shards: BTreeMap<u32, Arc<Shard>>,
    /// Open shards ordered by the start of their hash range, for routing, with their handles
    /// where this server hosts them.
    routes: Vec<(model::ShardMeta, Option<Arc<Shard>>)>,
}

impl StreamState {
    fn new(meta: StreamMeta, shards: BTreeMap<u32, Arc<Shard>>) -> StreamState {
        let mut state = StreamState {
            meta,
            shards,
            routes: Vec::new(),
        };
        state.rebuild_routes();
        state
    }

    fn rebuild_routes(&mut self) {
        self.routes = self
            .meta
            .open_shards()
            .into_iter()
            .map(|m| (m.clone(), self.shards.get(&m.index).cloned()))
            .collect();
    }

    /// The open shard owning `hash_key`, and its handle if this server hosts it.
    fn route(&self, hash_key: u128) -> Option<&(model::ShardMeta, Option<Arc<Shard>>)> {
        let position = self
            .routes
            .partition_point(|(meta, _)| meta.range.start <= hash_key);
        let candidate = self.routes.get(position.checked_sub(1)?)?;
        candidate.0.range.contains(hash_key).then_some(candidate)
    }
}

/// A boxed future of a [`Replicator`] call.
pub type Replicated<'a, T> = Pin<Box<dyn Future<Output = ApiResult<T>> + Send + 'a>>;

/// The write path of a catalog that is one replica of a shard group: once installed with
/// [`Catalog::set_replicator`], every change of the catalog's streams goes through it (it
/// replicates the change and applies it to every replica's catalog).
pub trait Replicator: Send + Sync + 'static {
    /// CreateStream.
    fn create_stream(&self, request: CreateStream) -> Replicated<'_, ()>;
    /// DeleteStream.
    fn delete_stream<'a>(&'a self, name: &'a str, enforce_consumers: bool) -> Replicated<'a, ()>;
    /// PutRecord / PutRecords.
    fn put_records<'a>(
        &'a self,
        name: &'a str,
        entries: Vec<PutEntry>,
    ) -> Replicated<'a, PutOutcome>;
    /// A change of the stream's settings.
    fn change_settings<'a>(&'a self, name: &'a str, change: SettingsChange) -> Replicated<'a, ()>;
    /// A reshard or a consumer's (de)registration.
    fn change_stream<'a>(&'a self, name: &'a str, change: StreamChange) -> Replicated<'a, ()>;
    /// Refuses as [`ErrorKind::NotLeader`] unless this replica leads its group: for what only
    /// the leader knows, such as the write counters (only the leader routes writes).
    fn leading(&self) -> ApiResult<()>;
    /// A retention sweep of every stream, at the leader's time.
    fn sweep_retention(&self) -> Replicated<'_, ()>;
    /// A stream exported by another shard group of it, joined as the group `placement` names.
    fn import_stream(
        &self,
        meta: model::StreamMeta,
        placement: model::Placement,
    ) -> Replicated<'_, ()>;
}

/// All streams of this server.
pub struct Catalog {
    config: StreamsConfig,
    key: DataKey,
    streams: StdRwLock<BTreeMap<String, Arc<Stream>>>,
    subscriptions: Mutex<HashMap<(String, u32), (Instant, u64)>>,
    replicator: StdRwLock<Option<Arc<dyn Replicator>>>,
    /// Frees deleted streams' files at a pace.
    deleter: Deleter,
}

impl Catalog {
    /// Makes this catalog one replica of a shard group: see [`Replicator`].
    pub fn set_replicator(&self, replicator: Arc<dyn Replicator>) {
        *self.replicator.write().unwrap_or_else(|p| p.into_inner()) = Some(replicator);
    }

    /// The installed [`Replicator`], if any.
    pub fn replicator(&self) -> Option<Arc<dyn Replicator>> {
        self.replicator
            .read()
            .unwrap_or_else(|p| p.into_inner())
            .clone()
    }

    /// Keeps deleted streams' files whole until the returned hold is dropped: for a reader
    /// that opened them before the deletion and goes on reading (a snapshot being copied).
    pub fn hold_deletions(&self) -> riffle_disk::Hold {
        self.deleter.hold()
    }

    /// Bytes of deleted streams and expired segments not freed on disk yet (they are freed at
    /// a pace).
    pub fn deletion_backlog_bytes(&self) -> u64 {
        self.deleter.pending_bytes()
    }

    /// Whether a hold from [`Catalog::hold_deletions`] exists.
    pub fn deletions_held(&self) -> bool {
        self.deleter.held()
    }

    /// The service settings.
    pub fn config(&self) -> &StreamsConfig {
        &self.config
    }

    /// The stream called `name`.
    pub fn stream(&self, name: &str) -> ApiResult<Arc<Stream>> {
        self.streams
            .read()
            .unwrap_or_else(|p| p.into_inner())
            .get(name)
            .cloned()
            .ok_or_else(|| ApiError::stream_not_found(name, &self.config.account))
    }

    /// Every stream, ordered by name.
    pub fn streams(&self) -> Vec<Arc<Stream>> {
        self.streams
            .read()
            .unwrap_or_else(|p| p.into_inner())
            .values()
            .cloned()
            .collect()
    }

    /// The ARN of a stream.
    pub fn stream_arn(&self, name: &str) -> String {
        format!(
            "arn:aws:kinesis:{}:{}:stream/{name}",
            self.config.region, self.config.account
        )
    }

    /// The stream name in a stream ARN of this region and account.
    pub fn stream_name_from_arn(&self, arn: &str) -> ApiResult<String> {
        let prefix = format!(
            "arn:aws:kinesis:{}:{}:stream/",
            self.config.region, self.config.account
        );
        match arn.strip_prefix(&prefix) {
            Some(name) if !name.is_empty() && !name.contains('/') => Ok(name.to_string()),
            _ => Err(ApiError::invalid(format!("Invalid StreamARN {arn}."))),
        }
    }

    /// Runs `f` over a consistent view of the stream's description.
    pub async fn describe<T>(
        &self,
        name: &str,
        f: impl FnOnce(&StreamMeta, &StreamState) -> T,
    ) -> ApiResult<T> {
        let stream = self.stream(name)?;
        let state = stream.state.read().await;
        Ok(f(&state.meta, &state))
    }
}

/// Milliseconds since the Unix epoch.
pub fn now_ms() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_millis() as i64)
        .unwrap_or(0)
}
