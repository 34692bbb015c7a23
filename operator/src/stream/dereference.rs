//! Fetches what the build needs besides the stream itself: the shard layout recorded in the
//! stream's shard-map ConfigMap (placement is sticky, so the recorded layout, not the spec, says
//! where existing shards live), and the addresses of the ready pods of its shard groups.

use std::net::IpAddr;

use k8s_openapi::api::core::v1::{ConfigMap, Pod};
use kube::{Api, Client};

use crate::stream::naming::{SHARD_MAP_KEY, StreamNames};
use crate::stream::shards::{LayoutError, ShardLayout};

/// Why the recorded layout could not be fetched.
#[derive(Debug, thiserror::Error)]
pub enum DereferenceError {
    /// The API server did not answer.
    #[error("reading ConfigMap {name}: {source}")]
    Read {
        /// The ConfigMap.
        name: String,
        /// The client error.
        #[source]
        source: kube::Error,
    },
    /// The serving pod could not be read.
    #[error("reading Pod {name}: {source}")]
    ReadPod {
        /// The pod.
        name: String,
        /// The client error.
        #[source]
        source: kube::Error,
    },
    /// The ConfigMap exists but does not hold a layout this operator wrote.
    #[error("ConfigMap {name} does not hold a readable shard map: {source}")]
    Unreadable {
        /// The ConfigMap.
        name: String,
        /// What is wrong with it.
        #[source]
        source: LayoutError,
    },
}

/// The layout last published for the stream `names` in `namespace`, if it was published by the
/// stream with `uid` (a ConfigMap left behind by a deleted namesake does not count).
pub async fn recorded_layout(
    client: &Client,
    namespace: &str,
    names: &StreamNames,
    uid: &str,
) -> Result<Option<ShardLayout>, DereferenceError> {
    let name = names.shard_map();
    let api: Api<ConfigMap> = Api::namespaced(client.clone(), namespace);
    let config_map = api
        .get_opt(&name)
        .await
        .map_err(|source| DereferenceError::Read {
            name: name.clone(),
            source,
        })?;
    let Some(config_map) = config_map else {
        return Ok(None);
    };
    layout_from_config_map(&config_map, uid)
        .map_err(|source| DereferenceError::Unreadable { name, source })
}

/// The IPs of the Ready (and not terminating) pods of shard group `group` of the stream, of its
/// `replicas` pods (`{stream}-g{group}-{ordinal}`), in ordinal order. Pod IPs, rather than Service
/// names, work both in the cluster and from a host that routes the pod network (an operator run
/// outside the cluster).
pub async fn ready_pod_ips(
    client: &Client,
    namespace: &str,
    names: &StreamNames,
    group: u32,
    replicas: u32,
) -> Result<Vec<IpAddr>, DereferenceError> {
    let pods = group_pods(client, namespace, names, group, replicas).await?;
    Ok(pods.into_iter().filter_map(|(_, ip)| ip).collect())
}

/// Every pod of shard group `group` of the stream, of its `replicas` pods, in ordinal order:
/// its name, and its IP if it is Ready and not terminating (see [`ready_ip`]).
pub async fn group_pods(
    client: &Client,
    namespace: &str,
    names: &StreamNames,
    group: u32,
    replicas: u32,
) -> Result<Vec<(String, Option<IpAddr>)>, DereferenceError> {
    let api: Api<Pod> = Api::namespaced(client.clone(), namespace);
    let mut pods = Vec::new();
    for ordinal in 0..replicas.max(1) {
        let name = names.group_pod(group, ordinal);
        let pod = api
            .get_opt(&name)
            .await
            .map_err(|source| DereferenceError::ReadPod {
                name: name.clone(),
                source,
            })?;
        let ip = pod.as_ref().and_then(ready_ip);
        pods.push((name, ip));
    }
    Ok(pods)
}

/// The IP of `pod` if it is Ready and not terminating. Pure, for tests.
pub fn ready_ip(pod: &Pod) -> Option<IpAddr> {
    if pod.metadata.deletion_timestamp.is_some() {
        return None;
    }
    let status = pod.status.as_ref()?;
    let ready = status
        .conditions
        .iter()
        .flatten()
        .any(|c| c.type_ == "Ready" && c.status == "True");
    if !ready {
        return None;
    }
    status.pod_ip.as_deref()?.parse().ok()
}

/// The layout in `config_map` if the stream with `uid` owns it. Pure, for tests.
pub fn layout_from_config_map(
    config_map: &ConfigMap,
    uid: &str,
) -> Result<Option<ShardLayout>, LayoutError> {
    let owned = config_map
        .metadata
        .owner_references
        .iter()
        .flatten()
        .any(|o| o.uid == uid);
    if !owned {
        return Ok(None);
    }
    let text = config_map
        .data
        .as_ref()
        .and_then(|d| d.get(SHARD_MAP_KEY))
        .ok_or_else(|| LayoutError::Malformed(format!("no {SHARD_MAP_KEY} key")))?;
    ShardLayout::from_document(text).map(Some)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::crd::Stream;
    use crate::settings::Settings;
    use crate::stream::build::{build, plan};
    use crate::stream::validate::validate;

    #[test]
    fn the_built_config_map_reads_back_as_its_layout() {
        let stream = Stream::test().with_shards(6);
        let valid = validate(&stream, &[]).expect("valid");
        let p = plan(&stream, &valid, None);
        let desired = build(&stream, &p, &Settings::test()).expect("builds");
        let uid = stream.metadata.uid.clone().unwrap_or_default();
        assert_eq!(
            layout_from_config_map(&desired.config_map, &uid),
            Ok(Some(p.layout))
        );
        assert_eq!(
            layout_from_config_map(&desired.config_map, "another-uid"),
            Ok(None)
        );
    }

    #[test]
    fn only_a_ready_running_pod_has_an_address() {
        use k8s_openapi::api::core::v1::{PodCondition, PodStatus};
        let pod = |ready: &str, ip: Option<&str>| Pod {
            status: Some(PodStatus {
                pod_ip: ip.map(String::from),
                conditions: Some(vec![PodCondition {
                    type_: "Ready".into(),
                    status: ready.into(),
                    ..PodCondition::default()
                }]),
                ..PodStatus::default()
            }),
            ..Pod::default()
        };
        assert_eq!(
            ready_ip(&pod("True", Some("10.244.0.7"))),
            Some(IpAddr::from([10, 244, 0, 7]))
        );
        assert_eq!(ready_ip(&pod("False", Some("10.244.0.7"))), None);
        assert_eq!(ready_ip(&pod("True", None)), None);
        let mut leaving = pod("True", Some("10.244.0.7"));
        leaving.metadata.deletion_timestamp = Some(crate::stream::fixtures::ts(1));
        assert_eq!(ready_ip(&leaving), None);
        assert_eq!(ready_ip(&Pod::default()), None);
    }

    #[test]
    fn an_owned_config_map_without_the_map_is_an_error() {
        let stream = Stream::test();
        let valid = validate(&stream, &[]).expect("valid");
        let p = plan(&stream, &valid, None);
        let mut cm = build(&stream, &p, &Settings::test())
            .expect("builds")
            .config_map;
        cm.data = None;
        let uid = stream.metadata.uid.clone().unwrap_or_default();
        assert!(matches!(
            layout_from_config_map(&cm, &uid),
            Err(LayoutError::Malformed(_))
        ));
    }
}
