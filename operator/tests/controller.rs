//! The controller against a real API server, scoped to a namespace of its own: a stream gets its
//! shard group, shard map and status; a stream needing two groups is refused before anything is
//! created; the gateway's route table names the operator; an unchanged stream is not rewritten; a
//! labelled object that is not planned is deleted; deleting the stream releases its volumes.
//!
//! The data-plane image is deliberately unpullable, so pods never become ready, the data plane is
//! never called, and the status stays put while the test looks at it. (The data-plane steps run
//! in the end-to-end suite, `e2e/suites/streams.sh`.) Needs `KUBECONFIG`, like `tests/crd.rs`; run with
//! `KUBECONFIG=e2e/.cluster/kubeconfig cargo test -p riffle-operator --test controller -- --include-ignored`.
//! A failing run leaves its `crd-controller-*` namespace behind with a finalized stream in it
//! (no operator is left to release it): clear `metadata.finalizers` of the stream to let it go.

mod common;

use std::sync::Arc;
use std::time::Duration;

use common::{TestNamespace, setup, wait_for, wait_gone};
use k8s_openapi::api::{
    apps::v1::StatefulSet,
    core::v1::{ConfigMap, PersistentVolumeClaim, Service},
    policy::v1::PodDisruptionBudget,
};
use kube::{
    Api, ResourceExt,
    api::{DeleteParams, ListParams, Patch, PatchParams, PostParams},
};
use riffle_operator::{
    controller::{self, FINALIZER},
    crd::{ConditionStatus, ConditionType},
    metrics::Metrics,
    settings::Settings,
};
use serde_json::json;

const WAIT: Duration = Duration::from_secs(60);

/// The test namespace doubles as the installation namespace, so the route table the controller
/// writes stays inside it.
fn settings(namespace: &str) -> Settings {
    Settings {
        image: "riffle.invalid/never-pulled:0".into(),
        image_pull_policy: "IfNotPresent".into(),
        namespace: namespace.into(),
        api_namespace: namespace.into(),
        region: "us-east-1".into(),
        account: "000000000000".into(),
    }
}

/// Counts `riffle_operator_<name>` in the rendered metrics.
fn counter(metrics: &Metrics, name: &str) -> u64 {
    let prefix = format!("riffle_operator_{name} ");
    metrics
        .render()
        .lines()
        .find_map(|l| l.strip_prefix(&prefix).and_then(|v| v.parse().ok()))
        .unwrap_or(0)
}

#[tokio::test]
#[ignore = "needs a real API server (KUBECONFIG); run with --include-ignored"]
async fn a_stream_is_reconciled_kept_stable_pruned_and_released() {
    let client = setup().await;
    let ns = TestNamespace::new(&client, "controller").await;
    let metrics = Arc::new(Metrics::default());
    let (stop_tx, stop_rx) = tokio::sync::oneshot::channel::<()>();
    let controller = tokio::spawn({
        let (client, metrics, namespace) = (client.clone(), metrics.clone(), ns.name.clone());
        async move {
            controller::run(
                client,
                settings(&namespace),
                metrics,
                Some("crd-test".into()),
                Some(&namespace),
                async {
                    let _ = stop_rx.await;
                },
            )
            .await;
        }
    });

    ns.create(
        "orders",
        json!({"shardCount": 4, "replicationFactor": 1, "storage": {"size": "64Mi"}}),
    )
    .await
    .expect("created");
    ns.create(
        "wide",
        json!({"shardCount": 10, "replicationFactor": 1, "storage": {"size": "64Mi"}}),
    )
    .await
    .expect("created");
    let streams = ns.typed();
    let condition = |stream: &riffle_operator::crd::Stream, type_: ConditionType| {
        stream
            .status
            .as_ref()
            .and_then(|s| s.conditions.iter().find(|c| c.type_ == type_).cloned())
    };
    let stream = wait_for("a status waiting for the shard group", WAIT, || async {
        let s = streams.get("orders").await.ok()?;
        let ready = condition(&s, ConditionType::Ready)?;
        (ready.reason == "GroupsNotReady").then_some(s)
    })
    .await;
    assert_eq!(stream.finalizers(), [FINALIZER]);
    let status = stream.status.clone().expect("status");
    assert_eq!(status.observed_generation, stream.metadata.generation);
    assert_eq!(
        status.open_shard_count, None,
        "no shard is reported before the data plane describes the stream"
    );
    let ready = condition(&stream, ConditionType::Ready).expect("Ready");
    assert_eq!(
        ready.status,
        ConditionStatus::False,
        "the image cannot be pulled"
    );
    let degraded = condition(&stream, ConditionType::Degraded).expect("Degraded");
    assert_eq!(degraded.reason, "AsExpected");

    let sts: Api<StatefulSet> = Api::namespaced(client.clone(), &ns.name);
    let svc: Api<Service> = Api::namespaced(client.clone(), &ns.name);
    let pdb: Api<PodDisruptionBudget> = Api::namespaced(client.clone(), &ns.name);
    let cms: Api<ConfigMap> = Api::namespaced(client.clone(), &ns.name);
    let set = sts.get("orders-g0").await.expect("StatefulSet of group 0");
    assert_eq!(
        set.spec.as_ref().and_then(|s| s.replicas),
        Some(1),
        "one pod for replicationFactor 1"
    );
    assert_eq!(set.labels()["riffle.dev/stream"], "orders");
    assert_eq!(
        set.owner_references()[0].uid,
        stream.uid().unwrap_or_default()
    );
    svc.get("orders-g0-headless")
        .await
        .expect("headless Service");
    pdb.get("orders-g0").await.expect("PodDisruptionBudget");
    let map = cms.get("orders-shard-map").await.expect("shard map");
    assert_eq!(
        map.data.as_ref().map(|d| d["group-0"].as_str()),
        Some("shardId-000000000000,shardId-000000000001,shardId-000000000002,shardId-000000000003")
    );

    // Ten shards at eight per group: two shard groups, each its own StatefulSet.
    let wide_objects = ListParams::default().labels("riffle.dev/stream=wide");
    let wide_sets = wait_for("both shard groups of the wide stream", WAIT, || async {
        let mut names: Vec<String> = sts
            .list(&wide_objects)
            .await
            .ok()?
            .items
            .iter()
            .map(|s| s.name_any())
            .collect();
        names.sort();
        (names.len() == 2).then_some(names)
    })
    .await;
    assert_eq!(wide_sets, ["wide-g0", "wide-g1"]);
    let wide_map = cms.get("wide-shard-map").await.expect("shard map");
    assert_eq!(
        wide_map.data.as_ref().map(|d| d["group-1"].as_str()),
        Some("shardId-000000000008,shardId-000000000009")
    );
    // The wide stream has shown what it is for; deleting it keeps its status writes (its two
    // groups' readiness changes) out of the counters checked below.
    streams
        .delete("wide", &DeleteParams::default())
        .await
        .expect("delete wide");
    wait_gone("the wide stream to be released", WAIT, &streams, "wide").await;

    let routes = wait_for("the gateway's route table", WAIT, || async {
        let cm = cms.get_opt("riffle-gateway-routes").await.ok()??;
        cm.data?.get("routes.json").cloned()
    })
    .await;
    assert_eq!(
        routes,
        format!(
            r#"{{"streams":{{}},"admin":"http://riffle-operator.{}.svc:4570"}}"#,
            ns.name
        ),
        "no stream is Ready, so none is routed"
    );

    // A reconcile with nothing new must not rewrite the status.
    let writes = counter(&metrics, "status_writes_total");
    let before = counter(&metrics, "reconciliations_total");
    let stale: ConfigMap = serde_json::from_value(json!({
        "metadata": {"name": "orders-stale", "labels": {
            "app.kubernetes.io/managed-by": "riffle-operator", "riffle.dev/stream": "orders"}},
        "data": {"left": "behind"}
    }))
    .expect("config map");
    cms.create(&PostParams::default(), &stale)
        .await
        .expect("stale object");
    streams
        .patch(
            "orders",
            &PatchParams::default(),
            &Patch::Merge(json!({"metadata": {"annotations": {"poke": "1"}}})),
        )
        .await
        .expect("poke");
    wait_gone(
        "the unplanned ConfigMap to be deleted",
        WAIT,
        &cms,
        "orders-stale",
    )
    .await;
    assert!(counter(&metrics, "reconciliations_total") > before);
    assert_eq!(
        counter(&metrics, "status_writes_total"),
        writes,
        "an unchanged stream had its status rewritten"
    );

    let pvcs: Api<PersistentVolumeClaim> = Api::namespaced(client.clone(), &ns.name);
    let claims = ListParams::default().labels("riffle.dev/stream=orders");
    wait_for("the group's volume", WAIT, || async {
        let listed = pvcs.list(&claims).await.ok()?;
        (listed.items.len() == 1).then_some(())
    })
    .await;
    streams
        .delete("orders", &Default::default())
        .await
        .expect("delete");
    wait_gone("the stream to go away", WAIT, &streams, "orders").await;
    // Volumes in use finish terminating with their pods; none may be left without a deletion.
    wait_for(
        "every volume of the stream to be released",
        WAIT,
        || async {
            let left = pvcs.list(&claims).await.ok()?;
            left.items
                .iter()
                .all(|c| c.metadata.deletion_timestamp.is_some())
                .then_some(())
        },
    )
    .await;

    let _ = stop_tx.send(());
    let _ = tokio::time::timeout(Duration::from_secs(10), controller).await;
    ns.finish().await;
}
