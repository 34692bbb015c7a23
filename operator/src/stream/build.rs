//! Builds the objects a stream needs from the stream, its validated spec, its shard layout and
//! the installation settings. Pure: no client, no clock, and the same inputs always build the
//! same objects, so repeated server-side applies are no-ops.

use std::collections::BTreeMap;

use k8s_openapi::{
    api::{
        apps::v1::{
            RollingUpdateStatefulSetStrategy, StatefulSet,
            StatefulSetPersistentVolumeClaimRetentionPolicy, StatefulSetSpec,
            StatefulSetUpdateStrategy,
        },
        core::v1::{
            Capabilities, ConfigMap, ConfigMapVolumeSource, Container, ContainerPort,
            EmptyDirVolumeSource, EnvVar, EnvVarSource, HTTPGetAction, ObjectFieldSelector,
            PersistentVolumeClaim, PersistentVolumeClaimSpec, PodSecurityContext, PodSpec,
            PodTemplateSpec, Probe, ResourceRequirements, SeccompProfile, SecurityContext, Service,
            ServicePort, ServiceSpec, TopologySpreadConstraint, Volume, VolumeMount,
            VolumeResourceRequirements,
        },
        policy::v1::{PodDisruptionBudget, PodDisruptionBudgetSpec},
    },
    apimachinery::pkg::{
        api::resource::Quantity,
        apis::meta::v1::{LabelSelector, ObjectMeta, OwnerReference},
        util::intstr::IntOrString,
    },
};
use kube::{Resource, ResourceExt};

use crate::crd::{Stream, StreamMode};
use crate::settings::Settings;
use crate::stream::naming::{
    COMPONENT_SHARD_MAP, GRPC_PORT, HTTP_PORT, RAFT_PORT, SHARD_MAP_KEY, StreamNames,
};
use crate::stream::shards::{ShardLayout, ShardMapHeader};
use crate::stream::validate::ValidStream;

/// Where the data volume is mounted, and the server's `--data-dir`.
pub const DATA_DIR: &str = "/var/lib/riffle";
/// Where the shard-map ConfigMap is mounted.
pub const CONFIG_DIR: &str = "/etc/riffle";
/// Name of the volume claim template of every shard group.
pub const DATA_VOLUME: &str = "data";
/// Unprivileged user and group the data plane runs as.
pub const RUN_AS_USER: i64 = 65532;

/// Why objects could not be built; these are faults of the object's metadata, never of the spec.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum BuildError {
    /// Streams are namespaced; one without a namespace did not come from the API server.
    #[error("stream has no namespace")]
    MissingNamespace,
    /// Owner references need the stream's UID.
    #[error("stream has no uid")]
    MissingUid,
}

/// The shard layout the stream should have now, and how it differs from what was asked.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StreamPlan {
    /// The layout to publish: the recorded one if any (placement is sticky), else a fresh one.
    pub layout: ShardLayout,
    /// Open shards the spec asks for.
    pub requested_shards: u32,
    /// Pods per shard group (`replicationFactor`): one stores the group alone; more form a
    /// replicated group whose writes are acknowledged once a quorum has them durable.
    pub replicas: u32,
}

impl StreamPlan {
    /// Whether the open shards differ from the requested count (a reshard is outstanding).
    pub fn reshard_pending(&self) -> bool {
        self.layout.open_count() != self.requested_shards
    }

    /// Whether each group runs as replicas kept in step by the data plane's replication, which
    /// does not offer resharding (or spreading a stream over several groups) yet.
    pub fn replicated(&self) -> bool {
        self.replicas > 1
    }
}

/// Plans the layout of `stream`. `known` is the layout the data plane reports, or else the one
/// read back from the stream's shard-map ConfigMap, if either exists: shards never move between
/// groups once placed, because their data lives on the group's volumes.
pub fn plan(stream: &Stream, valid: &ValidStream, known: Option<ShardLayout>) -> StreamPlan {
    match known {
        Some(layout) => {
            let requested_shards = match stream.spec.stream_mode {
                StreamMode::Provisioned => valid.requested_shards,
                // The operator, not the spec, sizes on-demand streams.
                StreamMode::OnDemand => layout.open_count(),
            };
            StreamPlan {
                layout,
                requested_shards,
                replicas: valid.replication_factor.max(1),
            }
        }
        None => StreamPlan {
            layout: ShardLayout::initial(valid.requested_shards, valid.shards_per_group),
            requested_shards: valid.requested_shards,
            replicas: valid.replication_factor.max(1),
        },
    }
}

/// Everything one shard group runs on.
#[derive(Debug, Clone, PartialEq)]
pub struct GroupObjects {
    /// Index of the group.
    pub group: u32,
    /// `replicationFactor` pods with one volume each.
    pub stateful_set: StatefulSet,
    /// Headless Service giving each replica a stable DNS name.
    pub service: Service,
    /// Allows one voluntary disruption at a time.
    pub pdb: PodDisruptionBudget,
}

/// The complete set of objects a stream should have.
#[derive(Debug, Clone, PartialEq)]
pub struct Desired {
    /// The shard map for the data plane.
    pub config_map: ConfigMap,
    /// One entry per shard group, ascending.
    pub groups: Vec<GroupObjects>,
}

/// Builds every object of `stream` for `plan`.
pub fn build(
    stream: &Stream,
    plan: &StreamPlan,
    settings: &Settings,
) -> Result<Desired, BuildError> {
    let namespace = stream.namespace().ok_or(BuildError::MissingNamespace)?;
    let owner = stream
        .controller_owner_ref(&())
        .ok_or(BuildError::MissingUid)?;
    let names = StreamNames::new(&stream.name_any());
    let ctx = BuildContext {
        stream,
        plan,
        settings,
        names: &names,
        namespace: &namespace,
        owner: &owner,
    };
    let groups = plan
        .layout
        .groups()
        .into_iter()
        .map(|group| GroupObjects {
            group,
            stateful_set: ctx.stateful_set(group),
            service: ctx.headless_service(group),
            pdb: ctx.pdb(group),
        })
        .collect();
    Ok(Desired {
        config_map: ctx.shard_map(),
        groups,
    })
}

/// The `shard-map.json` header of `stream`.
pub fn shard_map_header(stream: &Stream, settings: &Settings) -> ShardMapHeader {
    ShardMapHeader {
        stream: stream.name_any(),
        stream_arn: settings.stream_arn(&stream.name_any()),
        retention_period_hours: stream.spec.retention_period_hours,
        max_record_size_kib: stream.spec.max_record_size_kib,
        replication_factor: stream.spec.replication_factor,
    }
}

/// The shard ids of `group`, comma-separated in index order: the group's assignment.
pub fn group_assignment(layout: &ShardLayout, group: u32) -> String {
    layout
        .shards_in_group(group)
        .map(|s| s.id())
        .collect::<Vec<_>>()
        .join(",")
}

struct BuildContext<'a> {
    stream: &'a Stream,
    plan: &'a StreamPlan,
    settings: &'a Settings,
    names: &'a StreamNames,
    namespace: &'a str,
    owner: &'a OwnerReference,
}

impl BuildContext<'_> {
    fn meta(&self, name: String, labels: BTreeMap<String, String>) -> ObjectMeta {
        ObjectMeta {
            name: Some(name),
            namespace: Some(self.namespace.to_owned()),
            labels: Some(labels),
            owner_references: Some(vec![self.owner.clone()]),
            ..ObjectMeta::default()
        }
    }

    fn shard_map(&self) -> ConfigMap {
        let layout = &self.plan.layout;
        let mut data = BTreeMap::from([(
            SHARD_MAP_KEY.to_owned(),
            layout.to_document(&shard_map_header(self.stream, self.settings)),
        )]);
        for group in layout.groups() {
            data.insert(
                StreamNames::group_assignment_key(group),
                group_assignment(layout, group),
            );
        }
        ConfigMap {
            metadata: self.meta(
                self.names.shard_map(),
                self.names.common_labels(COMPONENT_SHARD_MAP),
            ),
            data: Some(data),
            ..ConfigMap::default()
        }
    }

    fn headless_service(&self, group: u32) -> Service {
        Service {
            metadata: self.meta(
                self.names.group_headless(group),
                self.names.group_labels(group),
            ),
            spec: Some(ServiceSpec {
                cluster_ip: Some("None".into()),
                // Replicas must find each other to elect a leader before any is ready.
                publish_not_ready_addresses: Some(true),
                selector: Some(self.names.group_selector(group)),
                ports: Some(self.ports(service_port)),
                ..ServiceSpec::default()
            }),
            status: None,
        }
    }

    fn pdb(&self, group: u32) -> PodDisruptionBudget {
        PodDisruptionBudget {
            metadata: self.meta(self.names.group(group), self.names.group_labels(group)),
            spec: Some(PodDisruptionBudgetSpec {
                max_unavailable: Some(IntOrString::Int(1)),
                selector: Some(LabelSelector {
                    match_labels: Some(self.names.group_selector(group)),
                    ..LabelSelector::default()
                }),
                ..PodDisruptionBudgetSpec::default()
            }),
            status: None,
        }
    }

    fn stateful_set(&self, group: u32) -> StatefulSet {
        let spec = &self.stream.spec;
        let labels = self.names.group_labels(group);
        // Nothing derived from the shard layout goes into the pod template: a reshard happens
        // inside the running data plane and must not restart its pods.
        let template = PodTemplateSpec {
            metadata: Some(ObjectMeta {
                labels: Some(labels.clone()),
                ..ObjectMeta::default()
            }),
            spec: Some(self.pod_spec(group)),
        };
        let claim = PersistentVolumeClaim {
            metadata: ObjectMeta {
                name: Some(DATA_VOLUME.to_owned()),
                // Claims inherit these, which is how cleanup finds them.
                labels: Some(self.names.group_selector(group)),
                ..ObjectMeta::default()
            },
            spec: Some(PersistentVolumeClaimSpec {
                access_modes: Some(vec!["ReadWriteOnce".into()]),
                storage_class_name: spec.storage.storage_class_name.clone(),
                resources: Some(VolumeResourceRequirements {
                    requests: Some(BTreeMap::from([(
                        "storage".to_owned(),
                        Quantity(spec.storage.size.clone()),
                    )])),
                    ..VolumeResourceRequirements::default()
                }),
                ..PersistentVolumeClaimSpec::default()
            }),
            status: None,
        };
        StatefulSet {
            metadata: self.meta(self.names.group(group), labels),
            spec: Some(StatefulSetSpec {
                replicas: Some(i32::try_from(self.plan.replicas).unwrap_or(i32::MAX)),
                selector: LabelSelector {
                    match_labels: Some(self.names.group_selector(group)),
                    ..LabelSelector::default()
                },
                service_name: Some(self.names.group_headless(group)),
                // A replica waits for its peers to form a quorum before it is ready, so replicas
                // must start together rather than one after another.
                pod_management_policy: Some("Parallel".into()),
                update_strategy: Some(StatefulSetUpdateStrategy {
                    type_: Some("RollingUpdate".into()),
                    rolling_update: Some(RollingUpdateStatefulSetStrategy {
                        max_unavailable: None,
                        partition: Some(0),
                    }),
                }),
                template,
                volume_claim_templates: Some(vec![claim]),
                // A group's volumes go with its StatefulSet: a group leaves the plan only when it
                // hosts no shard any more, and this closes the window in which a pod recreated
                // during the finalizer's cleanup could bring back a volume after it was released.
                persistent_volume_claim_retention_policy: Some(
                    StatefulSetPersistentVolumeClaimRetentionPolicy {
                        when_deleted: Some("Delete".into()),
                        when_scaled: Some("Retain".into()),
                    },
                ),
                ..StatefulSetSpec::default()
            }),
            status: None,
        }
    }

    fn pod_spec(&self, group: u32) -> PodSpec {
        let selector = self.names.group_selector(group);
        let spread = |key: &str| TopologySpreadConstraint {
            max_skew: 1,
            topology_key: key.to_owned(),
            when_unsatisfiable: "ScheduleAnyway".into(),
            label_selector: Some(LabelSelector {
                match_labels: Some(selector.clone()),
                ..LabelSelector::default()
            }),
            ..TopologySpreadConstraint::default()
        };
        PodSpec {
            containers: vec![self.container(group)],
            automount_service_account_token: Some(false),
            enable_service_links: Some(false),
            termination_grace_period_seconds: Some(30),
            security_context: Some(PodSecurityContext {
                run_as_non_root: Some(true),
                run_as_user: Some(RUN_AS_USER),
                run_as_group: Some(RUN_AS_USER),
                fs_group: Some(RUN_AS_USER),
                seccomp_profile: Some(SeccompProfile {
                    type_: "RuntimeDefault".into(),
                    ..SeccompProfile::default()
                }),
                ..PodSecurityContext::default()
            }),
            topology_spread_constraints: Some(vec![
                spread("topology.kubernetes.io/zone"),
                spread("kubernetes.io/hostname"),
            ]),
            volumes: Some(vec![
                Volume {
                    name: "shard-map".into(),
                    config_map: Some(ConfigMapVolumeSource {
                        name: self.names.shard_map(),
                        ..ConfigMapVolumeSource::default()
                    }),
                    ..Volume::default()
                },
                Volume {
                    name: "tmp".into(),
                    empty_dir: Some(EmptyDirVolumeSource::default()),
                    ..Volume::default()
                },
            ]),
            ..PodSpec::default()
        }
    }

    fn container(&self, group: u32) -> Container {
        let resources = &self.stream.spec.resources;
        let probe = |path: &str, period: i32, failures: i32| Probe {
            http_get: Some(HTTPGetAction {
                path: Some(path.to_owned()),
                port: IntOrString::String("http".into()),
                ..HTTPGetAction::default()
            }),
            period_seconds: Some(period),
            failure_threshold: Some(failures),
            timeout_seconds: Some(2),
            ..Probe::default()
        };
        Container {
            name: "riffle".into(),
            image: Some(self.settings.image.clone()),
            image_pull_policy: Some(self.settings.image_pull_policy.clone()),
            command: Some(vec!["riffle".into()]),
            args: Some(self.args(group)),
            env: Some(self.env(group)),
            ports: Some(self.ports(container_port)),
            readiness_probe: Some(probe("/readyz", 5, 3)),
            liveness_probe: Some(probe("/healthz", 10, 6)),
            resources: Some(ResourceRequirements {
                requests: Some(BTreeMap::from([
                    ("cpu".to_owned(), Quantity(resources.cpu.clone())),
                    ("memory".to_owned(), Quantity(resources.memory.clone())),
                ])),
                ..ResourceRequirements::default()
            }),
            security_context: Some(SecurityContext {
                allow_privilege_escalation: Some(false),
                read_only_root_filesystem: Some(true),
                run_as_non_root: Some(true),
                capabilities: Some(Capabilities {
                    drop: Some(vec!["ALL".into()]),
                    ..Capabilities::default()
                }),
                ..SecurityContext::default()
            }),
            volume_mounts: Some(vec![
                mount(DATA_VOLUME, DATA_DIR, false),
                mount("shard-map", CONFIG_DIR, true),
                mount("tmp", "/tmp", false),
            ]),
            ..Container::default()
        }
    }

    /// The named ports of a group's pods: the Kinesis and gRPC APIs, and the replication
    /// server when the group is replicated.
    fn ports<T>(&self, port: fn(&str, i32) -> T) -> Vec<T> {
        let mut ports = vec![port("http", HTTP_PORT), port("grpc", GRPC_PORT)];
        if self.plan.replicated() {
            ports.push(port("raft", RAFT_PORT));
        }
        ports
    }

    fn args(&self, group: u32) -> Vec<String> {
        let mut args: Vec<String> = [
            "server",
            "--listen",
            "0.0.0.0:4567",
            "--grpc-listen",
            "0.0.0.0:4568",
            "--data-dir",
            DATA_DIR,
        ]
        .map(String::from)
        .to_vec();
        if self.plan.replicated() {
            let replicas = self.plan.replicas;
            let list = |port| {
                self.names
                    .group_replica_list(group, self.namespace, replicas, port)
            };
            // The image has no shell: kubelet expands $(POD_NAME) from the pod's environment,
            // and the server turns the pod's ordinal into its replica ID.
            args.extend([
                "--replica-id-from-pod".to_owned(),
                "$(POD_NAME)".to_owned(),
                "--peers".to_owned(),
                list(RAFT_PORT),
                "--peer-apis".to_owned(),
                list(HTTP_PORT),
                "--raft-listen".to_owned(),
                format!("0.0.0.0:{RAFT_PORT}"),
            ]);
        }
        args
    }

    fn env(&self, group: u32) -> Vec<EnvVar> {
        let peers = self
            .names
            .group_peers(group, self.namespace, self.plan.replicas)
            .join(",");
        vec![
            field_env("POD_NAME", "metadata.name"),
            field_env("POD_NAMESPACE", "metadata.namespace"),
            value_env("RIFFLE_STREAM", self.names.stream()),
            value_env("RIFFLE_SHARD_GROUP", &group.to_string()),
            // A file, not an environment variable: kubelet updates it in place after a reshard.
            value_env("RIFFLE_SHARD_MAP", &format!("{CONFIG_DIR}/{SHARD_MAP_KEY}")),
            value_env("RIFFLE_GROUP_PEERS", &peers),
            value_env("RIFFLE_REPLICATION_FACTOR", &self.plan.replicas.to_string()),
            value_env("RIFFLE_REGION", &self.settings.region),
            value_env("RIFFLE_ACCOUNT", &self.settings.account),
        ]
    }
}

fn service_port(name: &str, port: i32) -> ServicePort {
    ServicePort {
        name: Some(name.to_owned()),
        port,
        target_port: Some(IntOrString::String(name.to_owned())),
        protocol: Some("TCP".into()),
        ..ServicePort::default()
    }
}

fn container_port(name: &str, port: i32) -> ContainerPort {
    ContainerPort {
        name: Some(name.to_owned()),
        container_port: port,
        protocol: Some("TCP".into()),
        ..ContainerPort::default()
    }
}

fn mount(name: &str, path: &str, read_only: bool) -> VolumeMount {
    VolumeMount {
        name: name.to_owned(),
        mount_path: path.to_owned(),
        read_only: read_only.then_some(true),
        ..VolumeMount::default()
    }
}

fn value_env(name: &str, value: &str) -> EnvVar {
    EnvVar {
        name: name.to_owned(),
        value: Some(value.to_owned()),
        ..EnvVar::default()
    }
}

fn field_env(name: &str, path: &str) -> EnvVar {
    EnvVar {
        name: name.to_owned(),
        value_from: Some(EnvVarSource {
            field_ref: Some(ObjectFieldSelector {
                field_path: path.to_owned(),
                ..ObjectFieldSelector::default()
            }),
            ..EnvVarSource::default()
        }),
        ..EnvVar::default()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::stream::naming::{
        LABEL_COMPONENT, LABEL_GROUP, LABEL_MANAGED_BY, LABEL_NAME, LABEL_STREAM,
    };
    use crate::stream::validate::validate;

    /// The spec's numbers without validation: the build still lays out several groups, which
    /// validation refuses for now.
    fn unchecked(stream: &Stream) -> ValidStream {
        ValidStream {
            requested_shards: stream.spec.shard_count.unwrap_or(4).unsigned_abs(),
            shards_per_group: stream.spec.shards_per_group.unsigned_abs(),
            replication_factor: stream.spec.replication_factor.unsigned_abs(),
        }
    }

    fn desired(stream: &Stream) -> (StreamPlan, Desired) {
        let plan = plan(stream, &unchecked(stream), None);
        let desired = build(stream, &plan, &Settings::test()).expect("builds");
        (plan, desired)
    }

    fn all_metadata(d: &Desired) -> Vec<&ObjectMeta> {
        let mut metas = vec![&d.config_map.metadata];
        for g in &d.groups {
            metas.push(&g.stateful_set.metadata);
            metas.push(&g.service.metadata);
            metas.push(&g.pdb.metadata);
        }
        metas
    }

    fn container(sts: &StatefulSet) -> &Container {
        &sts.spec
            .as_ref()
            .expect("spec")
            .template
            .spec
            .as_ref()
            .expect("pod")
            .containers[0]
    }

    fn env<'a>(c: &'a Container, name: &str) -> &'a EnvVar {
        c.env
            .iter()
            .flatten()
            .find(|e| e.name == name)
            .unwrap_or_else(|| panic!("env {name}"))
    }

    #[test]
    fn ten_shards_eight_per_group_build_two_groups() {
        let (plan, d) = desired(&Stream::test().with_shards(10));
        assert_eq!(plan.layout.groups(), [0, 1]);
        let names: Vec<_> = d
            .groups
            .iter()
            .map(|g| g.stateful_set.metadata.name.clone().unwrap_or_default())
            .collect();
        assert_eq!(names, ["orders-g0", "orders-g1"]);
        assert_eq!(
            d.groups[1].service.metadata.name.as_deref(),
            Some("orders-g1-headless")
        );
        let data = d.config_map.data.as_ref().expect("data");
        assert_eq!(data["group-1"], "shardId-000000000008,shardId-000000000009");
        assert!(!plan.reshard_pending());
    }

    #[test]
    fn every_object_is_labelled_and_owned_by_the_stream() {
        let stream = Stream::test().with_shards(20).with_shards_per_group(4);
        let (_, d) = desired(&stream);
        assert_eq!(d.groups.len(), 5);
        for meta in all_metadata(&d) {
            let labels = meta.labels.as_ref().expect("labels");
            assert_eq!(labels[LABEL_NAME], "riffle");
            assert_eq!(labels[LABEL_MANAGED_BY], "riffle-operator");
            assert_eq!(labels[LABEL_STREAM], "orders");
            assert_eq!(meta.namespace.as_deref(), Some("shop"));
            let owners = meta.owner_references.as_ref().expect("owners");
            assert_eq!(owners.len(), 1);
            assert_eq!(owners[0].kind, "Stream");
            assert_eq!(owners[0].api_version, "riffle.dev/v1alpha1");
            assert_eq!(owners[0].name, "orders");
            assert_eq!(
                owners[0].uid,
                stream.metadata.uid.clone().unwrap_or_default()
            );
            assert_eq!(owners[0].controller, Some(true));
        }
        for g in &d.groups {
            let labels = g.stateful_set.metadata.labels.as_ref().expect("labels");
            assert_eq!(labels[LABEL_COMPONENT], "shard-group");
            assert_eq!(labels[LABEL_GROUP], g.group.to_string());
        }
    }

    #[test]
    fn names_and_objects_are_stable() {
        let stream = Stream::test().with_shards(12);
        let (_, first) = desired(&stream);
        let (_, second) = desired(&stream);
        assert_eq!(first, second);
        assert_eq!(
            serde_json::to_string(&first.groups[0].stateful_set).expect("json"),
            serde_json::to_string(&second.groups[0].stateful_set).expect("json")
        );
    }

    #[test]
    fn stateful_set_runs_the_server_with_replicas_volume_and_probes() {
        let mut stream = Stream::test().with_shards(3).with_replication(1);
        stream.spec.storage.size = "20Gi".into();
        stream.spec.storage.storage_class_name = Some("fast".into());
        stream.spec.resources.cpu = "100m".into();
        let (_, d) = desired(&stream);
        let sts = &d.groups[0].stateful_set;
        let spec = sts.spec.as_ref().expect("spec");
        assert_eq!(spec.replicas, Some(1));
        assert_eq!(spec.service_name.as_deref(), Some("orders-g0-headless"));
        assert_eq!(spec.pod_management_policy.as_deref(), Some("Parallel"));
        let retention = spec
            .persistent_volume_claim_retention_policy
            .as_ref()
            .expect("claim retention policy");
        assert_eq!(retention.when_deleted.as_deref(), Some("Delete"));
        assert_eq!(retention.when_scaled.as_deref(), Some("Retain"));
        let claim = &spec.volume_claim_templates.as_ref().expect("claims")[0];
        assert_eq!(claim.metadata.name.as_deref(), Some("data"));
        let claim_spec = claim.spec.as_ref().expect("claim spec");
        assert_eq!(claim_spec.storage_class_name.as_deref(), Some("fast"));
        assert_eq!(
            claim_spec
                .resources
                .as_ref()
                .and_then(|r| r.requests.as_ref())
                .map(|r| &r["storage"]),
            Some(&Quantity("20Gi".into()))
        );
        let c = container(sts);
        assert_eq!(c.command.as_deref(), Some(&["riffle".to_owned()][..]));
        assert_eq!(
            c.args.clone().unwrap_or_default().join(" "),
            "server --listen 0.0.0.0:4567 --grpc-listen 0.0.0.0:4568 --data-dir /var/lib/riffle"
        );
        let ready = c
            .readiness_probe
            .as_ref()
            .and_then(|p| p.http_get.as_ref())
            .expect("readiness");
        assert_eq!(ready.path.as_deref(), Some("/readyz"));
        let live = c
            .liveness_probe
            .as_ref()
            .and_then(|p| p.http_get.as_ref())
            .expect("liveness");
        assert_eq!(live.path.as_deref(), Some("/healthz"));
        assert_eq!(
            c.ports
                .iter()
                .flatten()
                .map(|p| p.container_port)
                .collect::<Vec<_>>(),
            [4567, 4568]
        );
        let requests = c
            .resources
            .as_ref()
            .and_then(|r| r.requests.as_ref())
            .expect("requests");
        assert_eq!(requests["cpu"], Quantity("100m".into()));
        assert_eq!(requests["memory"], Quantity("256Mi".into()));
        let sc = c.security_context.as_ref().expect("security context");
        assert_eq!(sc.read_only_root_filesystem, Some(true));
        assert_eq!(sc.run_as_non_root, Some(true));
        let data_mount = c
            .volume_mounts
            .iter()
            .flatten()
            .find(|m| m.name == "data")
            .expect("data mount");
        assert_eq!(data_mount.mount_path, "/var/lib/riffle");
    }

    #[test]
    fn pods_spread_over_zones_without_blocking_scheduling() {
        let (plan, d) = desired(&Stream::test().with_replication(3));
        assert_eq!(plan.replicas, 3);
        let pod = d.groups[0]
            .stateful_set
            .spec
            .as_ref()
            .and_then(|s| s.template.spec.as_ref())
            .expect("pod");
        // Replicas spread over zones first and nodes second, each as a preference: a cluster
        // with fewer zones or nodes than replicas still schedules every replica.
        let keys: Vec<_> = pod
            .topology_spread_constraints
            .iter()
            .flatten()
            .map(|c| c.topology_key.as_str())
            .collect();
        assert_eq!(
            keys,
            ["topology.kubernetes.io/zone", "kubernetes.io/hostname"]
        );
        for spread in pod.topology_spread_constraints.iter().flatten() {
            assert_eq!(spread.when_unsatisfiable, "ScheduleAnyway");
            assert_eq!(spread.max_skew, 1);
            assert_eq!(
                spread
                    .label_selector
                    .as_ref()
                    .and_then(|s| s.match_labels.as_ref()),
                Some(&StreamNames::new("orders").group_selector(0)),
                "spread among the group's own replicas"
            );
        }
        assert_eq!(
            pod.security_context
                .as_ref()
                .and_then(|s| s.run_as_non_root),
            Some(true)
        );
    }

    #[test]
    fn group_env_names_the_group_its_peers_and_the_shard_map_file() {
        let (_, d) = desired(&Stream::test().with_shards(10).with_replication(1));
        let c = container(&d.groups[1].stateful_set);
        assert_eq!(env(c, "RIFFLE_SHARD_GROUP").value.as_deref(), Some("1"));
        assert_eq!(
            env(c, "RIFFLE_SHARD_MAP").value.as_deref(),
            Some("/etc/riffle/shard-map.json")
        );
        assert_eq!(
            env(c, "RIFFLE_GROUP_PEERS").value.as_deref(),
            Some("orders-g1-0.orders-g1-headless.shop.svc:4568")
        );
        assert_eq!(
            env(c, "RIFFLE_REPLICATION_FACTOR").value.as_deref(),
            Some("1")
        );
    }

    #[test]
    fn a_group_of_replication_factor_one_runs_one_pod_without_replication() {
        let (plan, d) = desired(&Stream::test().with_replication(1));
        assert_eq!(plan.replicas, 1);
        assert!(!plan.replicated());
        let group = &d.groups[0];
        let spec = group.stateful_set.spec.as_ref().expect("spec");
        assert_eq!(spec.replicas, Some(1));
        let c = container(&group.stateful_set);
        let args = c.args.clone().unwrap_or_default().join(" ");
        assert_eq!(
            args,
            "server --listen 0.0.0.0:4567 --grpc-listen 0.0.0.0:4568 --data-dir /var/lib/riffle"
        );
        let ports: Vec<_> = c.ports.iter().flatten().map(|p| p.container_port).collect();
        assert_eq!(ports, [4567, 4568]);
        let service_ports: Vec<_> = group
            .service
            .spec
            .as_ref()
            .and_then(|s| s.ports.as_ref())
            .expect("ports")
            .iter()
            .map(|p| p.port)
            .collect();
        assert_eq!(service_ports, [4567, 4568]);
    }

    #[test]
    fn a_group_of_replication_factor_three_runs_three_replicas_that_know_each_other() {
        let (plan, d) = desired(&Stream::test().with_shards(4).with_replication(3));
        assert_eq!(plan.replicas, 3);
        let group = &d.groups[0];
        let spec = group.stateful_set.spec.as_ref().expect("spec");
        assert_eq!(spec.replicas, Some(3));
        assert_eq!(spec.pod_management_policy.as_deref(), Some("Parallel"));
        let c = container(&group.stateful_set);
        let args = c.args.clone().unwrap_or_default();
        let h = "orders-g0-headless.shop.svc";
        assert_eq!(
            args.join(" "),
            format!(
                "server --listen 0.0.0.0:4567 --grpc-listen 0.0.0.0:4568 --data-dir /var/lib/riffle \
                 --replica-id-from-pod $(POD_NAME) \
                 --peers 1=orders-g0-0.{h}:4569,2=orders-g0-1.{h}:4569,3=orders-g0-2.{h}:4569 \
                 --peer-apis 1=orders-g0-0.{h}:4567,2=orders-g0-1.{h}:4567,3=orders-g0-2.{h}:4567 \
                 --raft-listen 0.0.0.0:4569"
            )
        );
        // $(POD_NAME) is expanded by kubelet from an earlier variable of the container.
        assert_eq!(
            env(c, "POD_NAME")
                .value_from
                .as_ref()
                .and_then(|v| v.field_ref.as_ref())
                .map(|f| f.field_path.as_str()),
            Some("metadata.name")
        );
        let ports: Vec<_> = c
            .ports
            .iter()
            .flatten()
            .map(|p| (p.name.clone().unwrap_or_default(), p.container_port))
            .collect();
        assert_eq!(
            ports,
            [
                ("http".to_owned(), 4567),
                ("grpc".to_owned(), 4568),
                ("raft".to_owned(), 4569)
            ]
        );
        let service = group.service.spec.as_ref().expect("service spec");
        assert_eq!(service.publish_not_ready_addresses, Some(true));
        let service_ports: Vec<_> = service
            .ports
            .iter()
            .flatten()
            .map(|p| (p.port, p.target_port.clone()))
            .collect();
        assert_eq!(
            service_ports.last(),
            Some(&(4569, Some(IntOrString::String("raft".into()))))
        );
        let pdb = group.pdb.spec.as_ref().expect("pdb spec");
        assert_eq!(pdb.max_unavailable, Some(IntOrString::Int(1)));
        let pod = spec.template.spec.as_ref().expect("pod");
        assert!(
            pod.topology_spread_constraints
                .iter()
                .flatten()
                .any(|c| c.topology_key == "topology.kubernetes.io/zone")
        );
        assert_eq!(
            env(c, "RIFFLE_REPLICATION_FACTOR").value.as_deref(),
            Some("3")
        );
    }

    #[test]
    fn a_reshard_does_not_change_the_pod_template() {
        let template = |d: &Desired| {
            serde_json::to_string(
                &d.groups[0]
                    .stateful_set
                    .spec
                    .as_ref()
                    .expect("spec")
                    .template,
            )
            .expect("json")
        };
        let (_, three) = desired(&Stream::test().with_shards(3));
        let (_, four) = desired(&Stream::test().with_shards(4));
        assert_eq!(template(&three), template(&four));
        assert_ne!(three.config_map, four.config_map);
    }

    #[test]
    fn services_are_headless_and_pdbs_allow_one_disruption() {
        let (_, d) = desired(&Stream::test());
        let svc = d.groups[0].service.spec.as_ref().expect("service spec");
        assert_eq!(svc.cluster_ip.as_deref(), Some("None"));
        assert_eq!(svc.publish_not_ready_addresses, Some(true));
        let pdb = d.groups[0].pdb.spec.as_ref().expect("pdb spec");
        assert_eq!(pdb.max_unavailable, Some(IntOrString::Int(1)));
        assert_eq!(d.groups[0].pdb.metadata.name.as_deref(), Some("orders-g0"));
    }

    #[test]
    fn recorded_placement_is_kept_when_group_size_changes() {
        let stream = Stream::test().with_shards(10);
        let (first, _) = desired(&stream);
        let repacked = stream.clone().with_shards_per_group(2);
        let again = plan(&repacked, &unchecked(&repacked), Some(first.layout.clone()));
        assert_eq!(again.layout, first.layout);
    }

    #[test]
    fn a_changed_shard_count_is_a_pending_reshard() {
        let stream = Stream::test().with_shards(4);
        let (first, _) = desired(&stream);
        let scaled = stream.with_shards(6);
        let valid = validate(&scaled, &[]).expect("valid");
        let again = plan(&scaled, &valid, Some(first.layout));
        assert_eq!(again.layout.open_count(), 4);
        assert_eq!(again.requested_shards, 6);
        assert!(again.reshard_pending());
    }

    #[test]
    fn objects_need_the_stream_uid_and_namespace() {
        let mut stream = Stream::test();
        let valid = validate(&stream, &[]).expect("valid");
        let p = plan(&stream, &valid, None);
        stream.metadata.uid = None;
        assert_eq!(
            build(&stream, &p, &Settings::test()),
            Err(BuildError::MissingUid)
        );
        stream.metadata.namespace = None;
        assert_eq!(
            build(&stream, &p, &Settings::test()),
            Err(BuildError::MissingNamespace)
        );
    }
}
