//! The custom resources of group `riffle.dev`, version `v1alpha1`, and their CRD definitions.
//!
//! The Rust types are the source of truth: `crdgen` renders them into `crds/`, and CI fails when
//! the committed YAML drifts from what the types generate.

pub mod stream;

use k8s_openapi::apiextensions_apiserver::pkg::apis::apiextensions::v1::CustomResourceDefinition;
use kube::CustomResourceExt;

pub use stream::{
    Condition, ConditionStatus, ConditionType, DEFAULT_REPLICATION_FACTOR,
    DEFAULT_SHARDS_PER_GROUP, DEFAULT_STORAGE_SIZE, GroupStatus, HashKeyRange, MAX_RECORD_SIZE_KIB,
    MAX_RETENTION_HOURS, MAX_SHARD_COUNT, MAX_SHARDS_PER_GROUP, MIN_RECORD_SIZE_KIB,
    MIN_RETENTION_HOURS, ReplicaRole, ReplicaStatus, ShardState, ShardStatus, Stream, StreamMode,
    StreamResources, StreamSpec, StreamStatus, StreamStorage,
};

/// Every CRD this operator serves, in a fixed order.
pub fn all() -> Vec<CustomResourceDefinition> {
    vec![Stream::crd()]
}

/// Renders every CRD as one multi-document YAML stream, as `crdgen` writes it to `crds/`.
pub fn render_yaml() -> Result<String, serde_norway::Error> {
    let mut out = String::new();
    for crd in all() {
        out.push_str("---\n");
        out.push_str(&serde_norway::to_string(&crd)?);
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    #[test]
    fn committed_crds_match_the_types() {
        let committed = include_str!("../../../crds/riffle.dev_streams.yaml");
        let generated = super::render_yaml().expect("renders");
        assert!(
            committed == generated,
            "crds/riffle.dev_streams.yaml is stale: run `cargo run -p riffle-operator --bin crdgen > crds/riffle.dev_streams.yaml`"
        );
    }
}
