//! Test fixtures built by functions: `Stream::test().with_shards(10).on_demand()`.

use k8s_openapi::{apimachinery::pkg::apis::meta::v1::Time, jiff::Timestamp};
use kube::api::ObjectMeta;

use crate::crd::{Stream, StreamMode, StreamResources, StreamSpec, StreamStatus, StreamStorage};

/// A Kubernetes timestamp `secs` seconds after the epoch.
pub fn ts(secs: i64) -> Time {
    Time(Timestamp::from_second(secs).expect("timestamp in range"))
}

impl Stream {
    /// `shop/orders`: provisioned, 4 shards, every other field at its default, as the API server
    /// returns it (uid, generation and creation time set).
    pub fn test() -> Self {
        let mut stream = Stream::new(
            "orders",
            StreamSpec {
                stream_mode: StreamMode::Provisioned,
                shard_count: Some(4),
                retention_period_hours: 24,
                replication_factor: 3,
                max_record_size_kib: 1024,
                shards_per_group: 8,
                storage: StreamStorage::default(),
                resources: StreamResources::default(),
            },
        );
        stream.metadata = ObjectMeta {
            name: Some("orders".into()),
            namespace: Some("shop".into()),
            uid: Some("8b7c2f0e-orders".into()),
            generation: Some(1),
            creation_timestamp: Some(ts(1_700_000_000)),
            ..ObjectMeta::default()
        };
        stream
    }

    /// With `n` shards requested.
    pub fn with_shards(mut self, n: i32) -> Self {
        self.spec.shard_count = Some(n);
        self
    }

    /// With `n` shards per group.
    pub fn with_shards_per_group(mut self, n: i32) -> Self {
        self.spec.shards_per_group = n;
        self
    }

    /// With replication factor `n`.
    pub fn with_replication(mut self, n: i32) -> Self {
        self.spec.replication_factor = n;
        self
    }

    /// With a retention of `hours`.
    pub fn with_retention(mut self, hours: i32) -> Self {
        self.spec.retention_period_hours = hours;
        self
    }

    /// In on-demand mode, without a shard count.
    pub fn on_demand(mut self) -> Self {
        self.spec.stream_mode = StreamMode::OnDemand;
        self.spec.shard_count = None;
        self
    }

    /// Renamed (uid follows the name so owner references differ).
    pub fn named(mut self, name: &str) -> Self {
        self.metadata.name = Some(name.into());
        self.metadata.uid = Some(format!("8b7c2f0e-{name}"));
        self
    }

    /// In namespace `ns`.
    pub fn in_namespace(mut self, ns: &str) -> Self {
        self.metadata.namespace = Some(ns.into());
        self
    }

    /// Created at `time`.
    pub fn created_at(mut self, time: Time) -> Self {
        self.metadata.creation_timestamp = Some(time);
        self
    }

    /// At generation `n`.
    pub fn at_generation(mut self, n: i64) -> Self {
        self.metadata.generation = Some(n);
        self
    }

    /// With `status` as last written.
    pub fn with_status(mut self, status: StreamStatus) -> Self {
        self.status = Some(status);
        self
    }

    /// Marked for deletion and carrying the operator's finalizer.
    pub fn finalized(mut self) -> Self {
        self.metadata.finalizers = Some(vec![crate::controller::FINALIZER.into()]);
        self
    }
}
