//! The names and labels of everything the operator creates for a stream.
//!
//! One type owns every name so that `build`, `apply` (orphan deletion) and `status` agree, and so
//! that renaming a pattern is a one-line change that the unit tests notice.

use std::collections::BTreeMap;

/// `app.kubernetes.io/name` of every data-plane object.
pub const APP_NAME: &str = "riffle";
/// `app.kubernetes.io/component` of shard-group objects.
pub const COMPONENT_SHARD_GROUP: &str = "shard-group";
/// `app.kubernetes.io/component` of the shard-map ConfigMap.
pub const COMPONENT_SHARD_MAP: &str = "shard-map";
/// Field manager of every server-side apply, and value of `app.kubernetes.io/managed-by`.
pub const MANAGER: &str = "riffle-operator";

/// Label key: which program manages the object.
pub const LABEL_MANAGED_BY: &str = "app.kubernetes.io/managed-by";
/// Label key: the application.
pub const LABEL_NAME: &str = "app.kubernetes.io/name";
/// Label key: the application instance (the stream's name).
pub const LABEL_INSTANCE: &str = "app.kubernetes.io/instance";
/// Label key: the part of the application.
pub const LABEL_COMPONENT: &str = "app.kubernetes.io/component";
/// Label key: the stream an object belongs to.
pub const LABEL_STREAM: &str = "riffle.dev/stream";
/// Label key: the shard group an object belongs to.
pub const LABEL_GROUP: &str = "riffle.dev/group";

/// Key of the whole shard map (JSON) in the shard-map ConfigMap.
pub const SHARD_MAP_KEY: &str = "shard-map.json";
/// Name of the gateway Service and Deployment in the installation namespace.
pub const GATEWAY_NAME: &str = "riffle-gateway";
/// The gateway's route ConfigMap in the installation namespace, maintained by the operator.
pub const ROUTES_CONFIG_MAP: &str = "riffle-gateway-routes";
/// Key of the route file in [`ROUTES_CONFIG_MAP`]; the gateway reads it as `routes.json`.
pub const ROUTES_KEY: &str = "routes.json";
/// Name of the operator's Service in the installation namespace.
pub const OPERATOR_NAME: &str = "riffle-operator";
/// Port of the operator's Kinesis API (CreateStream, DeleteStream, UpdateShardCount).
pub const API_PORT: u16 = 4570;
/// Port of the Kinesis API, `/metrics`, `/healthz` and `/readyz` on every data-plane pod.
pub const HTTP_PORT: i32 = 4567;
/// Port of the native gRPC API on every data-plane pod.
pub const GRPC_PORT: i32 = 4568;
/// Port of the replication (raft) server on every pod of a replicated shard group.
pub const RAFT_PORT: i32 = 4569;

/// Longest stream name whose derived names all stay valid: a StatefulSet name must leave room
/// for the 11-character revision hash in a 63-character label, and `-g<n>-headless` must fit a
/// 63-character Service name.
pub const MAX_STREAM_NAME_LEN: usize = 40;

/// Names of the objects of one stream; derived from the stream's name alone.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StreamNames {
    stream: String,
}

impl StreamNames {
    /// Names for the stream called `stream`.
    pub fn new(stream: &str) -> Self {
        StreamNames {
            stream: stream.to_owned(),
        }
    }

    /// The stream's name.
    pub fn stream(&self) -> &str {
        &self.stream
    }

    /// StatefulSet (and PodDisruptionBudget) of shard group `group`: `{stream}-g{group}`.
    pub fn group(&self, group: u32) -> String {
        format!("{}-g{group}", self.stream)
    }

    /// Pod `ordinal` of shard group `group`: `{stream}-g{group}-{ordinal}`.
    pub fn group_pod(&self, group: u32, ordinal: u32) -> String {
        format!("{}-{ordinal}", self.group(group))
    }

    /// Base URL of the Kinesis API of shard group `group` in `namespace`, through its headless
    /// Service: `http://{stream}-g{group}-headless.{namespace}.svc:4567`.
    pub fn group_url(&self, group: u32, namespace: &str) -> String {
        format!(
            "http://{}.{namespace}.svc:{HTTP_PORT}",
            self.group_headless(group)
        )
    }

    /// Headless Service of shard group `group`: `{stream}-g{group}-headless`.
    pub fn group_headless(&self, group: u32) -> String {
        format!("{}-headless", self.group(group))
    }

    /// The shard-map ConfigMap: `{stream}-shard-map`.
    pub fn shard_map(&self) -> String {
        format!("{}-shard-map", self.stream)
    }

    /// Key of shard group `group`'s assignment in the shard-map ConfigMap: `group-{group}`.
    pub fn group_assignment_key(group: u32) -> String {
        format!("group-{group}")
    }

    /// Stable DNS names of the replicas of shard group `group` with their gRPC port, in ordinal
    /// order: `{stream}-g{group}-{i}.{headless}.{namespace}.svc:4568`.
    pub fn group_peers(&self, group: u32, namespace: &str, replicas: u32) -> Vec<String> {
        (0..replicas)
            .map(|i| self.replica_address(group, i, namespace, GRPC_PORT))
            .collect()
    }

    /// The replicas of shard group `group` as the data plane's `--peers` and `--peer-apis` take
    /// them, reached on `port`: `1={stream}-g{group}-0.{headless}.{namespace}.svc:{port},2=...`.
    /// Replica IDs are pod ordinals plus one.
    pub fn group_replica_list(
        &self,
        group: u32,
        namespace: &str,
        replicas: u32,
        port: i32,
    ) -> String {
        (0..replicas)
            .map(|i| {
                let address = self.replica_address(group, i, namespace, port);
                format!("{}={address}", i + 1)
            })
            .collect::<Vec<_>>()
            .join(",")
    }

    /// Stable DNS name and `port` of pod `ordinal` of shard group `group`, through the group's
    /// headless Service: `{stream}-g{group}-{ordinal}.{headless}.{namespace}.svc:{port}`.
    fn replica_address(&self, group: u32, ordinal: u32, namespace: &str, port: i32) -> String {
        format!(
            "{}.{}.{namespace}.svc:{port}",
            self.group_pod(group, ordinal),
            self.group_headless(group)
        )
    }

    /// Labels on every object of this stream.
    pub fn common_labels(&self, component: &str) -> BTreeMap<String, String> {
        BTreeMap::from([
            (LABEL_NAME.to_owned(), APP_NAME.to_owned()),
            (LABEL_INSTANCE.to_owned(), self.stream.clone()),
            (LABEL_COMPONENT.to_owned(), component.to_owned()),
            (LABEL_MANAGED_BY.to_owned(), MANAGER.to_owned()),
            (LABEL_STREAM.to_owned(), self.stream.clone()),
        ])
    }

    /// Labels on every object of shard group `group`.
    pub fn group_labels(&self, group: u32) -> BTreeMap<String, String> {
        let mut labels = self.common_labels(COMPONENT_SHARD_GROUP);
        labels.insert(LABEL_GROUP.to_owned(), group.to_string());
        labels
    }

    /// The pod selector of shard group `group`. Never changes for a group: a StatefulSet's
    /// selector is immutable.
    pub fn group_selector(&self, group: u32) -> BTreeMap<String, String> {
        BTreeMap::from([
            (LABEL_NAME.to_owned(), APP_NAME.to_owned()),
            (LABEL_STREAM.to_owned(), self.stream.clone()),
            (LABEL_GROUP.to_owned(), group.to_string()),
        ])
    }

    /// Label selector (string form) matching everything this operator made for the stream.
    pub fn owned_selector(&self) -> String {
        format!(
            "{LABEL_MANAGED_BY}={MANAGER},{LABEL_STREAM}={}",
            self.stream
        )
    }

    /// Label selector (string form) matching the stream's volumes, which carry the pod labels.
    pub fn volume_selector(&self) -> String {
        format!("{LABEL_NAME}={APP_NAME},{LABEL_STREAM}={}", self.stream)
    }
}

/// Names of the installation-wide objects (the gateway), which live in the operator's namespace.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct GatewayNames {
    namespace: String,
}

impl GatewayNames {
    /// Gateway names in the installation namespace `namespace`.
    pub fn new(namespace: &str) -> Self {
        GatewayNames {
            namespace: namespace.to_owned(),
        }
    }

    /// Name of the gateway Service (and Deployment).
    pub fn service(&self) -> &'static str {
        GATEWAY_NAME
    }

    /// The Kinesis endpoint clients pass as `--endpoint-url`.
    pub fn endpoint(&self) -> String {
        format!("http://{GATEWAY_NAME}.{}.svc:{HTTP_PORT}", self.namespace)
    }

    /// Where the gateway sends CreateStream, DeleteStream and UpdateShardCount: the operator.
    pub fn admin_url(&self) -> String {
        format!("http://{OPERATOR_NAME}.{}.svc:{API_PORT}", self.namespace)
    }

    /// Namespace of the installation.
    pub fn namespace(&self) -> &str {
        &self.namespace
    }
}

/// Whether `name` can name a stream: a DNS-1035 label of at most [`MAX_STREAM_NAME_LEN`]
/// characters, so that every derived Service and StatefulSet name is valid too.
pub fn is_valid_stream_name(name: &str) -> bool {
    let bytes = name.as_bytes();
    !bytes.is_empty()
        && bytes.len() <= MAX_STREAM_NAME_LEN
        && bytes[0].is_ascii_lowercase()
        && bytes
            .iter()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || *b == b'-')
        && !name.ends_with('-')
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn group_names_follow_the_pattern() {
        let names = StreamNames::new("orders");
        assert_eq!(names.group(0), "orders-g0");
        assert_eq!(names.group(12), "orders-g12");
        assert_eq!(names.group_headless(1), "orders-g1-headless");
        assert_eq!(names.shard_map(), "orders-shard-map");
        assert_eq!(names.group_pod(0, 0), "orders-g0-0");
        assert_eq!(
            names.group_url(0, "shop"),
            "http://orders-g0-headless.shop.svc:4567"
        );
        assert_eq!(StreamNames::group_assignment_key(3), "group-3");
    }

    #[test]
    fn peers_use_the_headless_service() {
        let names = StreamNames::new("orders");
        assert_eq!(
            names.group_peers(1, "shop", 3),
            [
                "orders-g1-0.orders-g1-headless.shop.svc:4568",
                "orders-g1-1.orders-g1-headless.shop.svc:4568",
                "orders-g1-2.orders-g1-headless.shop.svc:4568",
            ]
        );
    }

    #[test]
    fn selector_is_a_subset_of_the_group_labels() {
        let names = StreamNames::new("orders");
        let labels = names.group_labels(2);
        for (k, v) in names.group_selector(2) {
            assert_eq!(labels.get(&k), Some(&v), "{k}");
        }
        assert_eq!(labels[LABEL_MANAGED_BY], "riffle-operator");
        assert_eq!(labels[LABEL_COMPONENT], "shard-group");
        assert_eq!(labels[LABEL_STREAM], "orders");
        assert_eq!(labels[LABEL_GROUP], "2");
    }

    #[test]
    fn gateway_endpoint_is_in_the_installation_namespace() {
        let gw = GatewayNames::new("riffle-system");
        assert_eq!(gw.service(), "riffle-gateway");
        assert_eq!(
            gw.endpoint(),
            "http://riffle-gateway.riffle-system.svc:4567"
        );
        assert_eq!(
            gw.admin_url(),
            "http://riffle-operator.riffle-system.svc:4570"
        );
    }

    #[test]
    fn longest_valid_name_keeps_derived_names_valid() {
        let name = "a".repeat(MAX_STREAM_NAME_LEN);
        assert!(is_valid_stream_name(&name));
        let names = StreamNames::new(&name);
        // 9999 groups is far beyond any real stream; the names must still fit.
        assert!(names.group_headless(9999).len() <= 63);
        assert!(names.group(9999).len() + 11 <= 63);
        assert!(!is_valid_stream_name(&"a".repeat(MAX_STREAM_NAME_LEN + 1)));
    }

    #[test]
    fn names_that_cannot_name_a_service_are_invalid() {
        for bad in ["", "1orders", "Orders", "orders.eu", "orders-", "or_ders"] {
            assert!(!is_valid_stream_name(bad), "{bad}");
        }
        for good in ["orders", "o", "orders-eu-1"] {
            assert!(is_valid_stream_name(good), "{good}");
        }
    }
}
