//! Helpers shared by the tests that need a real API server.

// Each test crate uses its own subset of these helpers.
#![allow(dead_code)]

use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use k8s_openapi::api::core::v1::Namespace;
use k8s_openapi::apiextensions_apiserver::pkg::apis::apiextensions::v1::CustomResourceDefinition;
use kube::{
    Api, Client,
    api::{ApiResource, DeleteParams, DynamicObject, Patch, PatchParams, PostParams},
    runtime::wait::{await_condition, conditions},
};
use riffle_operator::crd::Stream;
use serde_json::{Value, json};

const CRD_NAME: &str = "streams.riffle.dev";
const MANAGER: &str = "riffle-operator-crd-test";

pub fn repo_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .expect("operator/ has a parent")
        .to_path_buf()
}

/// A client for the cluster in `KUBECONFIG`, with the committed CRD installed and Established.
pub async fn setup() -> Client {
    let Ok(path) = std::env::var("KUBECONFIG") else {
        panic!(
            "KUBECONFIG is not set: these tests need a real API server. Start one with \
             `make cluster-up` and run them with KUBECONFIG=e2e/.cluster/kubeconfig"
        );
    };
    let client = Client::try_default()
        .await
        .unwrap_or_else(|e| panic!("cannot build a client from KUBECONFIG={path}: {e}"));
    let yaml = std::fs::read_to_string(repo_root().join("crds/riffle.dev_streams.yaml"))
        .expect("read crds/riffle.dev_streams.yaml");
    let crds: Vec<CustomResourceDefinition> = yaml
        .split("\n---\n")
        .map(|doc| doc.trim_start_matches("---\n"))
        .filter(|doc| !doc.trim().is_empty())
        .map(|doc| serde_norway::from_str(doc).expect("CRD YAML parses"))
        .collect();
    assert_eq!(crds.len(), 1, "one CRD in crds/riffle.dev_streams.yaml");
    let api: Api<CustomResourceDefinition> = Api::all(client.clone());
    api.patch(
        CRD_NAME,
        &PatchParams::apply(MANAGER).force(),
        &Patch::Apply(&crds[0]),
    )
    .await
    .unwrap_or_else(|e| panic!("the API server refused the generated CRD: {e}"));
    tokio::time::timeout(
        Duration::from_secs(30),
        await_condition(api, CRD_NAME, conditions::is_crd_established()),
    )
    .await
    .expect("CRD Established within 30 s")
    .expect("watching the CRD");
    client
}

/// A fresh namespace for one test; deleted by [`TestNamespace::finish`].
pub struct TestNamespace {
    pub client: Client,
    pub name: String,
}

impl TestNamespace {
    pub async fn new(client: &Client, test: &str) -> Self {
        static SEQ: AtomicU32 = AtomicU32::new(0);
        let nanos = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map(|d| d.subsec_nanos())
            .unwrap_or_default();
        let name = format!(
            "crd-{test}-{}-{nanos:x}-{}",
            std::process::id(),
            SEQ.fetch_add(1, Ordering::Relaxed)
        );
        let api: Api<Namespace> = Api::all(client.clone());
        let ns: Namespace =
            serde_json::from_value(json!({"metadata": {"name": name}})).expect("namespace object");
        api.create(&PostParams::default(), &ns)
            .await
            .unwrap_or_else(|e| panic!("creating namespace {name}: {e}"));
        TestNamespace {
            client: client.clone(),
            name,
        }
    }

    pub fn raw(&self) -> Api<DynamicObject> {
        Api::namespaced_with(
            self.client.clone(),
            &self.name,
            &ApiResource::erase::<Stream>(&()),
        )
    }

    pub fn typed(&self) -> Api<Stream> {
        Api::namespaced(self.client.clone(), &self.name)
    }

    /// Creates a stream from raw JSON, so that defaults come from the server, not from serde.
    pub async fn create(&self, name: &str, spec: Value) -> Result<DynamicObject, kube::Error> {
        let object: DynamicObject = serde_json::from_value(json!({
            "apiVersion": "riffle.dev/v1alpha1",
            "kind": "Stream",
            "metadata": {"name": name},
            "spec": spec,
        }))
        .expect("stream object");
        self.raw().create(&PostParams::default(), &object).await
    }

    pub async fn finish(self) {
        let api: Api<Namespace> = Api::all(self.client.clone());
        let _ = api.delete(&self.name, &DeleteParams::background()).await;
    }
}

#[track_caller]
pub fn assert_refused<T: std::fmt::Debug>(result: Result<T, kube::Error>, needle: &str) {
    match result {
        Err(kube::Error::Api(status)) => {
            assert_eq!(status.code, 422, "expected 422 Invalid, got {status:?}");
            assert!(
                status.message.contains(needle),
                "refusal should mention {needle:?}: {}",
                status.message
            );
        }
        other => panic!("expected the API server to refuse with {needle:?}, got {other:?}"),
    }
}

pub fn kubectl() -> PathBuf {
    if let Some(path) = std::env::var_os("KUBECTL") {
        return PathBuf::from(path);
    }
    let bundled = repo_root().join("e2e/.cluster/bin/kubectl");
    if bundled.exists() {
        return bundled;
    }
    PathBuf::from("kubectl")
}

pub fn run_kubectl(args: &[&str]) -> String {
    let output = Command::new(kubectl())
        .args(args)
        .output()
        .unwrap_or_else(|e| {
            panic!(
                "running {:?}: {e}; set KUBECTL to a kubectl binary",
                kubectl()
            )
        });
    assert!(
        output.status.success(),
        "kubectl {}: {}",
        args.join(" "),
        String::from_utf8_lossy(&output.stderr)
    );
    String::from_utf8_lossy(&output.stdout).into_owned()
}

/// Polls `check` every 250 ms until it returns `Some`, failing the test after `timeout`.
pub async fn wait_for<T, F, Fut>(what: &str, timeout: Duration, mut check: F) -> T
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = Option<T>>,
{
    let deadline = tokio::time::Instant::now() + timeout;
    loop {
        if let Some(value) = check().await {
            return value;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "timed out after {timeout:?} waiting for {what}"
        );
        tokio::time::sleep(Duration::from_millis(250)).await;
    }
}

/// Waits (as [`wait_for`] does) until `api` has no object `name`.
pub async fn wait_gone<K>(what: &str, timeout: Duration, api: &Api<K>, name: &str)
where
    K: Clone + serde::de::DeserializeOwned + std::fmt::Debug,
{
    wait_for(what, timeout, || async {
        api.get_opt(name)
            .await
            .ok()
            .and_then(|found| found.is_none().then_some(()))
    })
    .await;
}
