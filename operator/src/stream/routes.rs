//! The gateway's route table: which shard group serves each Ready stream, and where
//! stream-management calls go. The operator keeps it in the ConfigMap `riffle-gateway-routes` of
//! its own namespace; the gateway re-reads it every few seconds.
//!
//! The table is a function of every `Stream` (and of the installation), never of the order in
//! which streams were reconciled, so any reconciliation can rewrite it and all of them agree.
//!
//! kubelet refreshes a mounted ConfigMap only when it next syncs the pod, about a minute later
//! unless the pod changes. After writing a new table the operator therefore stamps the table's
//! checksum on the gateway's pods: that pod update makes kubelet sync them, and the gateway
//! serves a new stream seconds after it is Ready instead of a minute.

use std::collections::BTreeMap;

use k8s_openapi::api::core::v1::{ConfigMap, Pod};
use kube::{
    Api, Client, Resource, ResourceExt,
    api::{ListParams, Patch, PatchParams},
};
use serde::Serialize;
use serde_json::json;

use crate::crd::{ConditionStatus, ConditionType, ShardState, ShardStatus, Stream};
use crate::stream::naming::{
    APP_NAME, GatewayNames, LABEL_COMPONENT, LABEL_NAME, MANAGER, ROUTES_CONFIG_MAP, ROUTES_KEY,
    StreamNames,
};
use crate::stream::shards::parse_shard_id;

/// Pod annotation carrying the checksum of the route table the gateway should serve.
pub const ROUTES_CHECKSUM_ANNOTATION: &str = "riffle.dev/routes-checksum";
/// `app.kubernetes.io/component` of the gateway's pods (set by the Helm chart).
pub const COMPONENT_GATEWAY: &str = "gateway";

/// The route file as the gateway reads it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct RouteTable {
    /// Stream name → where it is served.
    pub streams: BTreeMap<String, StreamRoute>,
    /// Base URL of the operator's Kinesis API (CreateStream, DeleteStream, UpdateShardCount).
    pub admin: String,
}

/// Where one stream is served.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(untagged)]
pub enum StreamRoute {
    /// Base URL of the Kinesis API of the one shard group serving the stream.
    Group(String),
    /// A stream spread over several shard groups: their base URLs, by group index, and every
    /// retained shard with the group storing it.
    Groups {
        /// Base URL of each group, by index.
        groups: Vec<String>,
        /// Every retained shard.
        shards: Vec<ShardRoute>,
    },
}

/// One shard of a stream spread over several shard groups, as the gateway routes to it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct ShardRoute {
    /// The number in the shard id.
    pub index: u32,
    /// First hash key, decimal.
    pub start: String,
    /// Last hash key (inclusive), decimal.
    pub end: String,
    /// Index of the group storing the shard.
    pub group: u32,
    /// Whether the shard takes writes.
    pub open: bool,
}

impl StreamRoute {
    /// The route of a stream named `name` in `namespace` whose status lists `shards`.
    fn of(name: &str, namespace: &str, shards: &[ShardStatus]) -> StreamRoute {
        let names = StreamNames::new(name);
        let groups = shards
            .iter()
            .map(|s| s.group.max(0).unsigned_abs())
            .max()
            .unwrap_or(0);
        if groups == 0 {
            return StreamRoute::Group(names.group_url(0, namespace));
        }
        StreamRoute::Groups {
            groups: (0..=groups)
                .map(|group| names.group_url(group, namespace))
                .collect(),
            shards: shards
                .iter()
                .filter_map(|s| {
                    Some(ShardRoute {
                        index: parse_shard_id(&s.shard_id)?,
                        start: s.hash_key_range.starting_hash_key.clone(),
                        end: s.hash_key_range.ending_hash_key.clone(),
                        group: s.group.max(0).unsigned_abs(),
                        open: s.state == ShardState::Open,
                    })
                })
                .collect(),
        }
    }
}

impl RouteTable {
    /// The table for `streams` in the installation `gateway`: every stream that is not being
    /// deleted and is Ready or has shards (a stream being resharded or waiting for a new shard
    /// group keeps serving), under its name; when two namespaces hold streams of one name, the
    /// oldest (the one validation lets through) gets the route.
    pub fn compute<'a>(
        streams: impl IntoIterator<Item = &'a Stream>,
        gateway: &GatewayNames,
    ) -> RouteTable {
        let mut owners: BTreeMap<String, ((Option<_>, String), &[ShardStatus])> = BTreeMap::new();
        for stream in streams {
            if stream.meta().deletion_timestamp.is_some() || !is_serving(stream) {
                continue;
            }
            let Some(namespace) = stream.namespace() else {
                continue;
            };
            let key = (
                stream.metadata.creation_timestamp.as_ref().map(|t| t.0),
                namespace,
            );
            let shards = stream
                .status
                .as_ref()
                .map(|s| s.shards.as_slice())
                .unwrap_or_default();
            owners
                .entry(stream.name_any())
                .and_modify(|owner| {
                    if key < owner.0 {
                        *owner = (key.clone(), shards);
                    }
                })
                .or_insert((key, shards));
        }
        RouteTable {
            streams: owners
                .into_iter()
                .map(|(name, ((_, namespace), shards))| {
                    let route = StreamRoute::of(&name, &namespace, shards);
                    (name, route)
                })
                .collect(),
            admin: gateway.admin_url(),
        }
    }

    /// The file's text: compact JSON with sorted keys, the same bytes for the same table.
    pub fn to_json(&self) -> String {
        serde_json::to_string(self).unwrap_or_else(|_| String::from("{}"))
    }

    /// FNV-1a (64 bit) of the file's text, in hex: stable across builds and platforms.
    pub fn checksum(&self) -> String {
        let mut hash: u64 = 0xcbf2_9ce4_8422_2325;
        for byte in self.to_json().bytes() {
            hash ^= u64::from(byte);
            hash = hash.wrapping_mul(0x0000_0100_0000_01b3);
        }
        format!("{hash:016x}")
    }
}

fn is_serving(stream: &Stream) -> bool {
    stream
        .status
        .as_ref()
        .map(|s| {
            !s.shards.is_empty()
                || s.conditions
                    .iter()
                    .any(|c| c.type_ == ConditionType::Ready && c.status == ConditionStatus::True)
        })
        .unwrap_or(false)
}

/// Writes `table` into the route ConfigMap of `gateway`'s namespace unless it already holds it.
/// Returns whether it wrote. Only the route key is applied (field manager `riffle-operator`), so
/// the ConfigMap's other fields stay with whoever created it (the Helm chart).
pub async fn publish(
    client: &Client,
    gateway: &GatewayNames,
    table: &RouteTable,
) -> Result<bool, kube::Error> {
    let api: Api<ConfigMap> = Api::namespaced(client.clone(), gateway.namespace());
    let text = table.to_json();
    let current = api.get_opt(ROUTES_CONFIG_MAP).await?;
    let stored = current
        .as_ref()
        .and_then(|cm| cm.data.as_ref())
        .and_then(|data| data.get(ROUTES_KEY));
    if stored == Some(&text) {
        return Ok(false);
    }
    let patch = json!({
        "apiVersion": "v1",
        "kind": "ConfigMap",
        "metadata": {"name": ROUTES_CONFIG_MAP, "namespace": gateway.namespace()},
        "data": {ROUTES_KEY: text},
    });
    api.patch(
        ROUTES_CONFIG_MAP,
        &PatchParams::apply(MANAGER).force(),
        &Patch::Apply(patch),
    )
    .await?;
    Ok(true)
}

/// Stamps `table`'s checksum on every gateway pod that does not carry it yet, so kubelet syncs
/// the pod and refreshes its copy of the route file. Returns how many pods were stamped.
pub async fn nudge_gateways(
    client: &Client,
    gateway: &GatewayNames,
    table: &RouteTable,
) -> Result<usize, kube::Error> {
    let api: Api<Pod> = Api::namespaced(client.clone(), gateway.namespace());
    let selector = format!("{LABEL_NAME}={APP_NAME},{LABEL_COMPONENT}={COMPONENT_GATEWAY}");
    let checksum = table.checksum();
    let pods = api
        .list_metadata(&ListParams::default().labels(&selector))
        .await?;
    let mut stamped = 0;
    for pod in pods.items {
        let current = pod.annotations().get(ROUTES_CHECKSUM_ANNOTATION);
        if current == Some(&checksum) || pod.metadata.deletion_timestamp.is_some() {
            continue;
        }
        let patch = json!({"metadata": {"annotations": {ROUTES_CHECKSUM_ANNOTATION: checksum}}});
        match api
            .patch(
                &pod.name_any(),
                &PatchParams::default(),
                &Patch::Merge(patch),
            )
            .await
        {
            Ok(_) => stamped += 1,
            // Replaced meanwhile; its successor mounts the new table anyway.
            Err(kube::Error::Api(status)) if status.code == 404 => {}
            Err(error) => return Err(error),
        }
    }
    Ok(stamped)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::crd::{Condition, StreamStatus};
    use crate::stream::fixtures::ts;

    fn ready(stream: Stream, status: ConditionStatus) -> Stream {
        stream.with_status(StreamStatus {
            conditions: vec![Condition {
                type_: ConditionType::Ready,
                status,
                reason: "Serving".into(),
                message: String::new(),
                last_transition_time: "2026-01-01T00:00:00Z".into(),
                observed_generation: Some(1),
            }],
            ..StreamStatus::default()
        })
    }

    fn gateway() -> GatewayNames {
        GatewayNames::new("riffle-system")
    }

    #[test]
    fn only_ready_streams_get_a_route() {
        let orders = ready(Stream::test(), ConditionStatus::True);
        let clicks = ready(Stream::test().named("clicks"), ConditionStatus::False);
        let fresh = Stream::test().named("fresh");
        let mut leaving = ready(Stream::test().named("leaving"), ConditionStatus::True);
        leaving.metadata.deletion_timestamp = Some(ts(5));
        let table = RouteTable::compute([&orders, &clicks, &fresh, &leaving], &gateway());
        assert_eq!(
            table.to_json(),
            r#"{"streams":{"orders":"http://orders-g0-headless.shop.svc:4567"},"admin":"http://riffle-operator.riffle-system.svc:4570"}"#
        );
    }

    #[test]
    fn the_table_does_not_depend_on_the_order_of_streams() {
        let a = ready(Stream::test().named("a"), ConditionStatus::True);
        let b = ready(
            Stream::test().named("b").in_namespace("other"),
            ConditionStatus::True,
        );
        let older = ready(
            Stream::test().in_namespace("first").created_at(ts(10)),
            ConditionStatus::True,
        );
        let newer = ready(
            Stream::test().in_namespace("second").created_at(ts(20)),
            ConditionStatus::True,
        );
        let one = RouteTable::compute([&a, &b, &older, &newer], &gateway());
        let other = RouteTable::compute([&newer, &older, &b, &a], &gateway());
        assert_eq!(one.to_json(), other.to_json());
        assert_eq!(
            one.streams["orders"],
            StreamRoute::Group("http://orders-g0-headless.first.svc:4567".into())
        );
        assert_eq!(
            one.streams["b"],
            StreamRoute::Group("http://b-g0-headless.other.svc:4567".into())
        );
    }

    #[test]
    fn the_checksum_follows_the_content() {
        let empty = RouteTable::compute([], &gateway());
        let orders = ready(Stream::test(), ConditionStatus::True);
        let one = RouteTable::compute([&orders], &gateway());
        assert_eq!(
            empty.checksum(),
            RouteTable::compute([], &gateway()).checksum()
        );
        assert_ne!(empty.checksum(), one.checksum());
        assert_eq!(one.checksum().len(), 16);
    }

    #[test]
    fn an_empty_table_still_routes_stream_management() {
        let table = RouteTable::compute([], &gateway());
        assert_eq!(
            table.to_json(),
            r#"{"streams":{},"admin":"http://riffle-operator.riffle-system.svc:4570"}"#
        );
    }

    #[test]
    fn a_stream_over_several_groups_lists_its_shards() {
        let layout = crate::stream::shards::ShardLayout::initial(3, 2);
        let mut wide = ready(Stream::test(), ConditionStatus::False);
        if let Some(status) = wide.status.as_mut() {
            status.shards = layout.to_status();
        }
        let table = RouteTable::compute([&wide], &gateway());
        let json: serde_json::Value = serde_json::from_str(&table.to_json()).expect("json");
        let route = &json["streams"]["orders"];
        assert_eq!(
            route["groups"],
            serde_json::json!([
                "http://orders-g0-headless.shop.svc:4567",
                "http://orders-g1-headless.shop.svc:4567"
            ])
        );
        assert_eq!(route["shards"].as_array().map(Vec::len), Some(3));
        assert_eq!(route["shards"][2]["group"], 1);
        assert_eq!(route["shards"][2]["index"], 2);
        assert_eq!(route["shards"][0]["start"], "0");
        assert_eq!(route["shards"][0]["open"], true);
    }
}
