//! The `Stream` custom resource: a durable, sharded, replayable record stream (DESIGN §4).
//!
//! Validation that the API server can do on its own lives here as CEL rules, so that a bad object
//! is refused at `kubectl apply` time with a message naming the field. The operator's own
//! `validate` step re-checks what CEL cannot see (other objects, values written by old CRDs).

use kube::{CustomResource, KubeSchema};
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

/// Default and minimum retention, in hours (Kinesis: 24 h).
pub const MIN_RETENTION_HOURS: i32 = 24;
/// Maximum retention, in hours (Kinesis: 365 days).
pub const MAX_RETENTION_HOURS: i32 = 8760;
/// Default and minimum maximum record size, in KiB (Kinesis: 1 MiB).
pub const MIN_RECORD_SIZE_KIB: i32 = 1024;
/// Maximum maximum record size, in KiB (Kinesis: 10 MiB).
pub const MAX_RECORD_SIZE_KIB: i32 = 10240;
/// Replicas per shard group unless the spec says otherwise.
pub const DEFAULT_REPLICATION_FACTOR: i32 = 3;
/// Largest shard count a spec may ask for; also keeps every count inside `i32`.
pub const MAX_SHARD_COUNT: i32 = 100_000;
/// Largest shard group a spec may ask for.
pub const MAX_SHARDS_PER_GROUP: i32 = 10_000;
/// Shards packed into one shard group unless the spec says otherwise.
pub const DEFAULT_SHARDS_PER_GROUP: i32 = 8;
/// Volume size per replica unless the spec says otherwise.
pub const DEFAULT_STORAGE_SIZE: &str = "10Gi";

/// Desired state of a `Stream`.
#[derive(CustomResource, KubeSchema, Serialize, Deserialize, Clone, Debug, PartialEq)]
#[kube(
    group = "riffle.dev",
    version = "v1alpha1",
    kind = "Stream",
    plural = "streams",
    singular = "stream",
    shortname = "rstream",
    category = "riffle",
    namespaced,
    status = "StreamStatus",
    derive = "PartialEq",
    doc = "A Kinesis-compatible data stream: sharded, replicated, retained for retentionPeriodHours.",
    validation = Rule::new(
        "self.metadata.name.size() <= 40 && self.metadata.name.matches('^[a-z]([-a-z0-9]*[a-z0-9])?$')"
    )
    .message("a Stream name must be a DNS-1035 label (lowercase letters, digits, '-', starting with a letter) of at most 40 characters"),
    scale(
        spec_replicas_path = ".spec.shardCount",
        status_replicas_path = ".status.openShardCount"
    ),
    printcolumn(name = "Mode", type_ = "string", json_path = ".spec.streamMode"),
    printcolumn(
        name = "Shards",
        type_ = "integer",
        json_path = ".spec.shardCount",
        description = "Requested shard count"
    ),
    printcolumn(
        name = "Open",
        type_ = "integer",
        json_path = ".status.openShardCount",
        description = "Open shards"
    ),
    printcolumn(
        name = "Ready",
        type_ = "string",
        json_path = ".status.conditions[?(@.type==\"Ready\")].status"
    ),
    printcolumn(
        name = "Leaders",
        type_ = "string",
        json_path = ".status.groups[*].leader",
        description = "Pod leading each replicated shard group"
    ),
    printcolumn(
        name = "Retention",
        type_ = "integer",
        json_path = ".spec.retentionPeriodHours",
        description = "Retention in hours"
    ),
    printcolumn(name = "Age", type_ = "date", json_path = ".metadata.creationTimestamp")
)]
#[serde(rename_all = "camelCase")]
#[x_kube(
    validation = Rule::new("self.streamMode != 'Provisioned' || has(self.shardCount)")
        .message("shardCount is required when streamMode is Provisioned")
        .field_path(".shardCount")
        .reason(Reason::FieldValueRequired)
)]
pub struct StreamSpec {
    /// Capacity mode: `Provisioned` (you set shardCount) or `OnDemand` (the operator sizes the
    /// stream from its traffic; shardCount is ignored).
    #[serde(default)]
    pub stream_mode: StreamMode,

    /// Number of open shards (Provisioned mode). Also the target of `kubectl scale`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[x_kube(
        validation = Rule::new("self >= 1 && self <= 100000")
            .message("shardCount must be between 1 and 100000")
    )]
    pub shard_count: Option<i32>,

    /// How long records stay readable, in hours (24..8760).
    #[serde(default = "default_retention_hours")]
    #[x_kube(
        validation = Rule::new("self >= 24 && self <= 8760")
            .message("retentionPeriodHours must be between 24 and 8760")
    )]
    pub retention_period_hours: i32,

    /// Replicas per shard group: 1 or 3. Immutable.
    #[serde(default = "default_replication_factor")]
    #[x_kube(
        validation = Rule::new("self == 1 || self == 3").message("replicationFactor must be 1 or 3"),
        validation = Rule::new("self == oldSelf").message("replicationFactor is immutable")
    )]
    pub replication_factor: i32,

    /// Largest record accepted, in KiB (1024..10240).
    #[serde(rename = "maxRecordSizeKiB", default = "default_max_record_size_kib")]
    #[x_kube(
        validation = Rule::new("self >= 1024 && self <= 10240")
            .message("maxRecordSizeKiB must be between 1024 and 10240")
    )]
    pub max_record_size_kib: i32,

    /// How many shards one shard group (one StatefulSet) hosts.
    #[serde(default = "default_shards_per_group")]
    #[x_kube(
        validation = Rule::new("self >= 1 && self <= 10000")
            .message("shardsPerGroup must be between 1 and 10000")
    )]
    pub shards_per_group: i32,

    /// Persistent volume of every replica.
    #[serde(default)]
    pub storage: StreamStorage,

    /// What the scheduler reserves for every data-plane pod (replica) of the stream.
    #[serde(default)]
    pub resources: StreamResources,
}

/// CPU and memory requested for every data-plane pod; changing them rolls the pods one at a
/// time.
#[derive(KubeSchema, Serialize, Deserialize, Clone, Debug, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct StreamResources {
    /// CPU requested per pod, a Kubernetes quantity such as `250m`.
    #[serde(default = "default_cpu")]
    #[x_kube(
        validation = Rule::new("isQuantity(self)")
            .message("resources.cpu must be a Kubernetes quantity such as 250m")
    )]
    pub cpu: String,

    /// Memory requested per pod, a Kubernetes quantity such as `256Mi`.
    #[serde(default = "default_memory")]
    #[x_kube(
        validation = Rule::new("isQuantity(self)")
            .message("resources.memory must be a Kubernetes quantity such as 256Mi")
    )]
    pub memory: String,
}

impl Default for StreamResources {
    fn default() -> Self {
        StreamResources {
            cpu: default_cpu(),
            memory: default_memory(),
        }
    }
}

fn default_cpu() -> String {
    "250m".into()
}

fn default_memory() -> String {
    "256Mi".into()
}

/// Capacity mode of a stream, as in Kinesis.
#[derive(Serialize, Deserialize, JsonSchema, Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum StreamMode {
    /// The shard count is set by the user.
    #[default]
    Provisioned,
    /// The shard count follows the traffic.
    OnDemand,
}

impl StreamMode {
    /// The spelling used in the API.
    pub fn as_str(self) -> &'static str {
        match self {
            StreamMode::Provisioned => "Provisioned",
            StreamMode::OnDemand => "OnDemand",
        }
    }
}

/// Persistent volume of every replica of every shard group.
#[derive(KubeSchema, Serialize, Deserialize, Clone, Debug, PartialEq)]
#[serde(rename_all = "camelCase")]
#[x_kube(
    validation = Rule::new(
        "(has(self.storageClassName) ? self.storageClassName : '') == (has(oldSelf.storageClassName) ? oldSelf.storageClassName : '')"
    )
    .message("storage.storageClassName is immutable")
    .field_path(".storageClassName")
)]
pub struct StreamStorage {
    /// Size of each replica's volume, a Kubernetes quantity such as `10Gi`. Immutable: a
    /// StatefulSet's volume claim templates cannot change.
    #[serde(default = "default_storage_size")]
    #[x_kube(
        validation = Rule::new("isQuantity(self)")
            .message("storage.size must be a Kubernetes quantity such as 10Gi"),
        validation = Rule::new("self == oldSelf").message("storage.size is immutable")
    )]
    pub size: String,

    /// Storage class of the volumes; the cluster default when unset. Immutable.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub storage_class_name: Option<String>,
}

impl Default for StreamStorage {
    fn default() -> Self {
        StreamStorage {
            size: default_storage_size(),
            storage_class_name: None,
        }
    }
}

fn default_retention_hours() -> i32 {
    MIN_RETENTION_HOURS
}

fn default_replication_factor() -> i32 {
    DEFAULT_REPLICATION_FACTOR
}

fn default_max_record_size_kib() -> i32 {
    MIN_RECORD_SIZE_KIB
}

fn default_shards_per_group() -> i32 {
    DEFAULT_SHARDS_PER_GROUP
}

fn default_storage_size() -> String {
    DEFAULT_STORAGE_SIZE.to_owned()
}

/// Observed state of a `Stream`, written only by the operator.
#[derive(KubeSchema, Serialize, Deserialize, Clone, Debug, Default, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct StreamStatus {
    /// The `metadata.generation` this status describes.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub observed_generation: Option<i64>,

    /// Ready, Progressing and Degraded, always in that order.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    #[x_kube(merge_strategy = ListMerge::Map(vec!["type".into()]))]
    pub conditions: Vec<Condition>,

    /// Where clients send Kinesis API calls for this stream (`--endpoint-url`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub endpoint: Option<String>,

    /// The stream's ARN, as the Kinesis API reports it.
    #[serde(rename = "streamARN", default, skip_serializing_if = "Option::is_none")]
    pub stream_arn: Option<String>,

    /// Number of shards in state Open; the status side of the scale subresource.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub open_shard_count: Option<i32>,

    /// Every shard the stream has, open and closed, ordered by shard id.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub shards: Vec<ShardStatus>,

    /// Leadership and membership of each replicated shard group (replicationFactor 3), ordered
    /// by name. Changes only when a group's leader, term or a replica's role or standing does:
    /// it carries no log positions or clock readings.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    #[x_kube(merge_strategy = ListMerge::Map(vec!["name".into()]))]
    pub groups: Vec<GroupStatus>,
}

/// Who leads one replicated shard group, and how each of its replicas stands.
#[derive(Serialize, Deserialize, JsonSchema, Clone, Debug, PartialEq, Eq)]
#[serde(rename_all = "camelCase")]
pub struct GroupStatus {
    /// The group's StatefulSet, `orders-g0`.
    pub name: String,
    /// The pod leading the group; absent while no replica the operator can reach leads it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub leader: Option<String>,
    /// The raft term of that leader; absent with the leader.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub term: Option<i64>,
    /// Every replica of the group, in ordinal order.
    #[serde(default)]
    pub replicas: Vec<ReplicaStatus>,
}

/// One replica of a replicated shard group, as it reported itself.
#[derive(Serialize, Deserialize, JsonSchema, Clone, Debug, PartialEq, Eq)]
#[serde(rename_all = "camelCase")]
pub struct ReplicaStatus {
    /// The replica's pod, `orders-g0-1`.
    pub pod: String,
    /// Its raft role, or `Unknown` when it did not answer.
    pub role: ReplicaRole,
    /// Whether the pod passes its readiness probe.
    pub ready: bool,
    /// Whether it follows the group's leader in the leader's term and has applied nearly all
    /// the leader has (always true of the leader itself).
    pub caught_up: bool,
}

/// A replica's raft role.
#[derive(Serialize, Deserialize, JsonSchema, Clone, Copy, Debug, PartialEq, Eq)]
pub enum ReplicaRole {
    /// Accepts writes and replicates them.
    Leader,
    /// Replicates from the leader and votes.
    Follower,
    /// Standing for election.
    Candidate,
    /// Replicates without voting.
    Learner,
    /// Not ready, not answering, or stopped.
    Unknown,
}

/// The kinds of condition a `Stream` reports; every status carries all three.
#[derive(
    Serialize, Deserialize, JsonSchema, Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord,
)]
pub enum ConditionType {
    /// Every shard group has all its replicas ready and the shard map is the one requested.
    Ready,
    /// The operator is moving the stream towards its spec.
    Progressing,
    /// The spec cannot be realised as it stands, or the last attempt failed.
    Degraded,
}

impl ConditionType {
    /// All condition types, in the order they appear in the status.
    pub const ALL: [ConditionType; 3] = [
        ConditionType::Ready,
        ConditionType::Progressing,
        ConditionType::Degraded,
    ];

    /// The spelling used in the API.
    pub fn as_str(self) -> &'static str {
        match self {
            ConditionType::Ready => "Ready",
            ConditionType::Progressing => "Progressing",
            ConditionType::Degraded => "Degraded",
        }
    }
}

/// Truth value of a condition, as in every Kubernetes condition.
#[derive(Serialize, Deserialize, JsonSchema, Clone, Copy, Debug, PartialEq, Eq)]
pub enum ConditionStatus {
    /// The condition holds.
    True,
    /// The condition does not hold.
    False,
    /// The operator cannot tell.
    Unknown,
}

impl ConditionStatus {
    /// The spelling used in the API.
    pub fn as_str(self) -> &'static str {
        match self {
            ConditionStatus::True => "True",
            ConditionStatus::False => "False",
            ConditionStatus::Unknown => "Unknown",
        }
    }
}

/// One condition of a `Stream`; the shape of `metav1.Condition`.
#[derive(Serialize, Deserialize, JsonSchema, Clone, Debug, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct Condition {
    /// Which condition this is.
    #[serde(rename = "type")]
    pub type_: ConditionType,
    /// Whether it holds.
    pub status: ConditionStatus,
    /// A CamelCase word saying why.
    pub reason: String,
    /// Human-readable detail; stable for the same state.
    pub message: String,
    /// When `status` last changed (RFC 3339).
    pub last_transition_time: String,
    /// The `metadata.generation` the condition was computed from.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub observed_generation: Option<i64>,
}

/// One shard as the operator laid it out.
#[derive(Serialize, Deserialize, JsonSchema, Clone, Debug, PartialEq, Eq)]
#[serde(rename_all = "camelCase")]
pub struct ShardStatus {
    /// Kinesis shard id, `shardId-000000000000`.
    pub shard_id: String,
    /// Inclusive range of 128-bit hash keys the shard owns.
    pub hash_key_range: HashKeyRange,
    /// The shard this one was split from or merged into (Kinesis lineage).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub parent_shard_id: Option<String>,
    /// The second parent of a merged shard.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub adjacent_parent_shard_id: Option<String>,
    /// Whether the shard accepts writes.
    pub state: ShardState,
    /// Index of the shard group hosting the shard.
    pub group: i32,
}

/// Inclusive range of hash keys, as decimal strings (they exceed 64 bits).
#[derive(Serialize, Deserialize, JsonSchema, Clone, Debug, PartialEq, Eq)]
#[serde(rename_all = "camelCase")]
pub struct HashKeyRange {
    /// First hash key of the range.
    pub starting_hash_key: String,
    /// Last hash key of the range.
    pub ending_hash_key: String,
}

/// Whether a shard still accepts writes.
#[derive(Serialize, Deserialize, JsonSchema, Clone, Copy, Debug, PartialEq, Eq)]
pub enum ShardState {
    /// Accepts writes.
    Open,
    /// Read-only after a split or merge, until retention trims it.
    Closed,
}

#[cfg(test)]
mod tests {
    use super::*;
    use kube::CustomResourceExt;
    use serde_json::{Value, json};

    fn schema() -> Value {
        let crd = serde_json::to_value(Stream::crd()).expect("crd serializes");
        crd["spec"]["versions"][0]["schema"]["openAPIV3Schema"].clone()
    }

    fn rules(v: &Value) -> Vec<String> {
        v["x-kubernetes-validations"]
            .as_array()
            .map(|a| {
                a.iter()
                    .map(|r| r["rule"].as_str().unwrap_or_default().to_owned())
                    .collect()
            })
            .unwrap_or_default()
    }

    #[test]
    fn crd_names_and_subresources() {
        let crd = Stream::crd();
        assert_eq!(crd.metadata.name.as_deref(), Some("streams.riffle.dev"));
        assert_eq!(crd.spec.names.short_names, Some(vec!["rstream".into()]));
        assert_eq!(crd.spec.names.categories, Some(vec!["riffle".into()]));
        let version = &crd.spec.versions[0];
        assert_eq!(version.name, "v1alpha1");
        let sub = version.subresources.as_ref().expect("subresources");
        assert!(sub.status.is_some());
        let scale = sub.scale.as_ref().expect("scale subresource");
        assert_eq!(scale.spec_replicas_path, ".spec.shardCount");
        assert_eq!(scale.status_replicas_path, ".status.openShardCount");
        let columns: Vec<_> = version
            .additional_printer_columns
            .iter()
            .flatten()
            .map(|c| c.name.as_str())
            .collect();
        assert_eq!(
            columns,
            [
                "Mode",
                "Shards",
                "Open",
                "Ready",
                "Leaders",
                "Retention",
                "Age"
            ]
        );
    }

    #[test]
    fn spec_schema_carries_defaults_and_cel_rules() {
        let spec = &schema()["properties"]["spec"];
        let props = &spec["properties"];
        assert_eq!(props["streamMode"]["default"], json!("Provisioned"));
        assert_eq!(props["retentionPeriodHours"]["default"], json!(24));
        assert_eq!(props["replicationFactor"]["default"], json!(3));
        assert_eq!(props["maxRecordSizeKiB"]["default"], json!(1024));
        assert_eq!(props["shardsPerGroup"]["default"], json!(8));
        assert_eq!(props["storage"]["default"]["size"], json!("10Gi"));
        assert!(
            rules(spec)
                .iter()
                .any(|r| r.contains("has(self.shardCount)"))
        );
        assert!(
            rules(&props["retentionPeriodHours"]).contains(&"self >= 24 && self <= 8760".into())
        );
        assert!(rules(&props["replicationFactor"]).contains(&"self == oldSelf".into()));
        assert!(
            rules(&props["storage"])
                .iter()
                .any(|r| r.contains("oldSelf.storageClassName"))
        );
    }

    #[test]
    fn enums_are_plain_strings() {
        let props = &schema()["properties"]["spec"]["properties"];
        assert_eq!(props["streamMode"]["type"], json!("string"));
        assert_eq!(
            props["streamMode"]["enum"],
            json!(["Provisioned", "OnDemand"])
        );
    }

    #[test]
    fn conditions_are_a_list_map_keyed_by_type() {
        let conditions = &schema()["properties"]["status"]["properties"]["conditions"];
        assert_eq!(conditions["x-kubernetes-list-type"], json!("map"));
        assert_eq!(conditions["x-kubernetes-list-map-keys"], json!(["type"]));
    }

    #[test]
    fn minimal_manifest_deserializes_with_defaults() {
        let stream: Stream = serde_json::from_value(json!({
            "apiVersion": "riffle.dev/v1alpha1",
            "kind": "Stream",
            "metadata": {"name": "orders", "namespace": "shop"},
            "spec": {"shardCount": 4}
        }))
        .expect("deserializes");
        assert_eq!(stream.spec.stream_mode, StreamMode::Provisioned);
        assert_eq!(stream.spec.retention_period_hours, 24);
        assert_eq!(stream.spec.replication_factor, 3);
        assert_eq!(stream.spec.max_record_size_kib, 1024);
        assert_eq!(stream.spec.shards_per_group, 8);
        assert_eq!(stream.spec.storage, StreamStorage::default());
    }
}
