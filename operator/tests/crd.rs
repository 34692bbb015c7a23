//! The generated `Stream` CRD against a real API server: the committed YAML installs and becomes
//! Established, the server applies the schema defaults, the CEL rules refuse bad objects with a
//! message naming the field, the scale subresource drives `spec.shardCount`, and a status the
//! operator computes round-trips through the schema unchanged.
//!
//! Needs `KUBECONFIG` pointing at a cluster (`make cluster-up` writes `e2e/.cluster/kubeconfig`)
//! and fails, rather than skipping, without it. The tests are marked ignored so that a plain
//! `cargo test` (no cluster) lists them as such; run them with
//! `KUBECONFIG=e2e/.cluster/kubeconfig cargo test -p riffle-operator --test crd -- --include-ignored`.
//! Each test works in a namespace of its own.

mod common;

use common::{TestNamespace, assert_refused, run_kubectl, setup};
use kube::api::{Patch, PatchParams};
use riffle_operator::{
    crd::{ConditionType, ShardState, StreamMode},
    settings::Settings,
    stream::{
        build::plan,
        data_plane::Observed,
        leadership::{ReplicaReport, ReplicaView, group_status},
        shards::{Shard, ShardLayout},
        status::{self, DataPlaneView, GroupState, Outcome},
        validate::validate,
    },
};
use serde_json::{Value, json};

#[tokio::test]
#[ignore = "needs a real API server (KUBECONFIG); run with --include-ignored"]
async fn a_valid_stream_is_stored_with_the_schema_defaults() {
    let client = setup().await;
    let ns = TestNamespace::new(&client, "defaults").await;
    ns.create("orders", json!({"shardCount": 4}))
        .await
        .expect("a minimal provisioned stream is accepted");
    let stream = ns
        .typed()
        .get("orders")
        .await
        .expect("reads back as a Stream");
    let spec = &stream.spec;
    assert_eq!(spec.stream_mode, StreamMode::Provisioned);
    assert_eq!(spec.shard_count, Some(4));
    assert_eq!(spec.retention_period_hours, 24);
    assert_eq!(spec.replication_factor, 3);
    assert_eq!(spec.max_record_size_kib, 1024);
    assert_eq!(spec.shards_per_group, 8);
    assert_eq!(spec.storage.size, "10Gi");
    assert_eq!(spec.storage.storage_class_name, None);

    ns.create("clicks", json!({"streamMode": "OnDemand"}))
        .await
        .expect("an on-demand stream needs no shardCount");
    ns.finish().await;
}

#[tokio::test]
#[ignore = "needs a real API server (KUBECONFIG); run with --include-ignored"]
async fn out_of_range_values_are_refused_with_the_field_named() {
    let client = setup().await;
    let ns = TestNamespace::new(&client, "ranges").await;
    assert_refused(
        ns.create("r1", json!({"shardCount": 1, "retentionPeriodHours": 10}))
            .await,
        "retentionPeriodHours must be between 24 and 8760",
    );
    assert_refused(
        ns.create("r2", json!({"shardCount": 1, "retentionPeriodHours": 9000}))
            .await,
        "retentionPeriodHours",
    );
    assert_refused(
        ns.create("r3", json!({"shardCount": 1, "replicationFactor": 2}))
            .await,
        "replicationFactor must be 1 or 3",
    );
    assert_refused(
        ns.create("r4", json!({"shardCount": 1, "maxRecordSizeKiB": 512}))
            .await,
        "maxRecordSizeKiB",
    );
    assert_refused(
        ns.create("r5", json!({"shardCount": 0})).await,
        "shardCount must be between 1 and 100000",
    );
    assert_refused(
        ns.create("r6", json!({"shardCount": 1, "storage": {"size": "lots"}}))
            .await,
        "storage.size",
    );
    assert_refused(
        ns.create("r7", json!({"shardCount": 1, "streamMode": "Sometimes"}))
            .await,
        "streamMode",
    );
    assert_refused(
        ns.create("r8", json!({"shardCount": 5_000_000_000u64}))
            .await,
        "shardCount must be between 1 and 100000",
    );
    assert_refused(
        ns.create("r9", json!({"shardCount": 1, "shardsPerGroup": 0}))
            .await,
        "shardsPerGroup",
    );
    assert_refused(
        ns.create(&"x".repeat(41), json!({"shardCount": 1})).await,
        "at most 40 characters",
    );
    ns.finish().await;
}

#[tokio::test]
#[ignore = "needs a real API server (KUBECONFIG); run with --include-ignored"]
async fn a_provisioned_stream_without_shard_count_is_refused() {
    let client = setup().await;
    let ns = TestNamespace::new(&client, "noshards").await;
    assert_refused(
        ns.create("orders", json!({"streamMode": "Provisioned"}))
            .await,
        "shardCount is required when streamMode is Provisioned",
    );
    assert_refused(
        ns.create("orders", json!({})).await,
        "shardCount is required",
    );
    ns.finish().await;
}

#[tokio::test]
#[ignore = "needs a real API server (KUBECONFIG); run with --include-ignored"]
async fn replication_factor_and_storage_are_immutable() {
    let client = setup().await;
    let ns = TestNamespace::new(&client, "immutable").await;
    ns.create("orders", json!({"shardCount": 2}))
        .await
        .expect("created");
    let merge = |spec: Value| Patch::Merge(json!({"spec": spec}));
    let params = PatchParams::default();
    assert_refused(
        ns.raw()
            .patch("orders", &params, &merge(json!({"replicationFactor": 1})))
            .await,
        "replicationFactor is immutable",
    );
    assert_refused(
        ns.raw()
            .patch(
                "orders",
                &params,
                &merge(json!({"storage": {"storageClassName": "fast"}})),
            )
            .await,
        "storage.storageClassName is immutable",
    );
    assert_refused(
        ns.raw()
            .patch(
                "orders",
                &params,
                &merge(json!({"storage": {"size": "20Gi"}})),
            )
            .await,
        "storage.size is immutable",
    );
    ns.raw()
        .patch(
            "orders",
            &params,
            &merge(json!({"retentionPeriodHours": 48, "shardCount": 3})),
        )
        .await
        .expect("mutable fields still change");
    let stream = ns.typed().get("orders").await.expect("get");
    assert_eq!(
        (stream.spec.retention_period_hours, stream.spec.shard_count),
        (48, Some(3))
    );
    ns.finish().await;
}

#[tokio::test]
#[ignore = "needs a real API server (KUBECONFIG); run with --include-ignored"]
async fn kubectl_scale_sets_the_shard_count_and_get_shows_the_columns() {
    let client = setup().await;
    let ns = TestNamespace::new(&client, "scale").await;
    ns.create("orders", json!({"shardCount": 4}))
        .await
        .expect("created");
    let kubeconfig = std::env::var("KUBECONFIG").unwrap_or_default();
    run_kubectl(&[
        "--kubeconfig",
        &kubeconfig,
        "-n",
        &ns.name,
        "scale",
        "stream",
        "orders",
        "--replicas",
        "6",
    ]);
    let stream = ns.typed().get("orders").await.expect("get");
    assert_eq!(stream.spec.shard_count, Some(6));

    let table = run_kubectl(&[
        "--kubeconfig",
        &kubeconfig,
        "-n",
        &ns.name,
        "get",
        "rstream",
    ]);
    let header: Vec<&str> = table
        .lines()
        .next()
        .unwrap_or_default()
        .split_whitespace()
        .collect();
    assert_eq!(
        header,
        [
            "NAME",
            "MODE",
            "SHARDS",
            "OPEN",
            "READY",
            "LEADERS",
            "RETENTION",
            "AGE"
        ]
    );
    assert!(table.contains("orders"), "{table}");
    ns.finish().await;
}

#[tokio::test]
#[ignore = "needs a real API server (KUBECONFIG); run with --include-ignored"]
async fn a_computed_status_round_trips_through_the_schema() {
    let client = setup().await;
    let ns = TestNamespace::new(&client, "status").await;
    ns.create("orders", json!({"shardCount": 3}))
        .await
        .expect("created");
    let stream = ns.typed().get("orders").await.expect("get");
    let valid = validate(&stream, &[]).expect("valid");
    // As the data plane describes a stream after splitting one of two shards: a closed parent
    // and two children with lineage.
    let half = 1u128 << 127;
    let quarter = 1u128 << 126;
    let shard =
        |index: u32, start: u128, end: u128, parent: Option<u32>, state: ShardState| Shard {
            index,
            start,
            end,
            parent,
            adjacent_parent: None,
            state,
            group: 0,
        };
    let observed = Observed {
        layout: ShardLayout::new(vec![
            shard(0, 0, half - 1, None, ShardState::Closed),
            shard(1, half, u128::MAX, None, ShardState::Open),
            shard(2, 0, quarter - 1, Some(0), ShardState::Open),
            shard(3, quarter, half - 1, Some(0), ShardState::Open),
        ])
        .expect("a partition"),
        retention_hours: 24,
        mode: "PROVISIONED".into(),
        max_record_size_kib: 1024,
        reshard_count: 0,
    };
    let planned = plan(&stream, &valid, Some(observed.layout.clone()));
    let groups = [GroupState {
        name: "orders-g0".into(),
        replicas: 1,
        ready: 1,
        updated: 1,
        observed: true,
    }];
    let settings = Settings {
        image: "riffle:test".into(),
        image_pull_policy: "IfNotPresent".into(),
        namespace: "riffle-system".into(),
        api_namespace: "default".into(),
        region: "us-east-1".into(),
        account: "000000000000".into(),
    };
    // A replicated group's leadership, so the schema of status.groups is exercised too.
    let views: Vec<ReplicaView> = (0..3u32)
        .map(|ordinal| ReplicaView {
            pod: format!("orders-g0-{ordinal}"),
            ready: ordinal != 2,
            report: (ordinal != 2).then_some(ReplicaReport {
                is_leader: ordinal == 1,
                term: 4,
                leader: Some(2),
                applied: 77,
                role: None,
            }),
        })
        .collect();
    let leadership = [group_status("orders-g0", &views)];
    let computed = status::compute(
        &stream,
        &settings,
        Outcome::Applied {
            plan: &planned,
            groups: &groups,
            data_plane: DataPlaneView::Serving(&observed),
            leadership: &leadership,
        },
        "2026-01-01T00:00:00Z",
    );
    let patch = json!({"apiVersion": "riffle.dev/v1alpha1", "kind": "Stream", "status": computed});
    let written = ns
        .typed()
        .patch_status(
            "orders",
            &PatchParams::apply("riffle-operator").force(),
            &Patch::Apply(patch),
        )
        .await
        .expect("status accepted by the schema");
    assert_eq!(
        written.status.as_ref(),
        Some(&computed),
        "nothing pruned or changed"
    );
    let degraded = computed
        .conditions
        .iter()
        .find(|c| c.type_ == ConditionType::Degraded)
        .expect("Degraded condition");
    assert_eq!(
        degraded.reason, "AsExpected",
        "a replicated stream serving its spec"
    );
    assert_eq!(
        written
            .status
            .as_ref()
            .map(|s| s.shards[2].parent_shard_id.as_deref()),
        Some(Some("shardId-000000000000"))
    );

    let scale = ns
        .typed()
        .get_scale("orders")
        .await
        .expect("scale subresource");
    assert_eq!(scale.spec.and_then(|s| s.replicas), Some(3));
    assert_eq!(scale.status.map(|s| s.replicas), Some(3));
    ns.finish().await;
}
