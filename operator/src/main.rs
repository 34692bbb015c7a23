//! `riffle-operator`: watches `Stream` objects and runs their shard groups.

use std::net::SocketAddr;
use std::sync::Arc;

use anyhow::Context as _;
use clap::Parser;
use riffle_operator::{api, controller, metrics::Metrics, ops, settings::Settings, watchdog};

/// The Riffle Kubernetes operator.
#[derive(Debug, Parser)]
#[command(version, about)]
struct Args {
    /// Image of the data-plane pods.
    #[arg(long, env = "RIFFLE_IMAGE", default_value = concat!("riffle:", env!("CARGO_PKG_VERSION")))]
    image: String,
    /// Pull policy of the data-plane image.
    #[arg(long, env = "RIFFLE_IMAGE_PULL_POLICY", default_value = "IfNotPresent")]
    image_pull_policy: String,
    /// Namespace of the installation (the operator's own, where the gateway and its route
    /// ConfigMap live).
    #[arg(long, env = "RIFFLE_NAMESPACE", default_value = "riffle-system")]
    namespace: String,
    /// Namespace of the streams created through the Kinesis API (CreateStream).
    #[arg(long, env = "RIFFLE_API_NAMESPACE", default_value = "default")]
    api_namespace: String,
    /// AWS region reported in stream ARNs.
    #[arg(long, env = "RIFFLE_REGION", default_value = "us-east-1")]
    region: String,
    /// AWS account id reported in stream ARNs.
    #[arg(long, env = "RIFFLE_ACCOUNT", default_value = "000000000000")]
    account: String,
    /// Address of `/metrics`, `/healthz` and `/readyz`.
    #[arg(long, env = "RIFFLE_OPS_LISTEN", default_value = "0.0.0.0:8080")]
    ops_listen: SocketAddr,
    /// Address of the Kinesis API for CreateStream, DeleteStream and UpdateShardCount (the
    /// gateway relays them here).
    #[arg(long, env = "RIFFLE_API_LISTEN", default_value = "0.0.0.0:4570")]
    api_listen: SocketAddr,
    /// Watch only this namespace instead of the whole cluster.
    #[arg(long, env = "RIFFLE_WATCH_NAMESPACE")]
    watch_namespace: Option<String>,
    /// Name of this operator instance in Events (the pod name).
    #[arg(long, env = "POD_NAME")]
    instance: Option<String>,
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_env("RIFFLE_LOG")
                .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info")),
        )
        .init();
    let args = Args::parse();
    let settings = Settings {
        image: args.image,
        image_pull_policy: args.image_pull_policy,
        namespace: args.namespace,
        api_namespace: args.api_namespace,
        region: args.region,
        account: args.account,
    };
    let mut config = kube::Config::infer()
        .await
        .context("finding the Kubernetes API (in-cluster or KUBECONFIG)")?;
    // A request whose connection stalls (as after an API server restart) fails instead of
    // waiting forever; watches end well within it (see controller::WATCH_TIMEOUT_SECS).
    config.read_timeout = Some(std::time::Duration::from_secs(90));
    config.reset_reader_on_write = true;
    let client = kube::Client::try_from(config)
        .context("connecting to the Kubernetes API (in-cluster or KUBECONFIG)")?;
    let metrics = Arc::new(Metrics::default());
    let listener = tokio::net::TcpListener::bind(args.ops_listen)
        .await
        .with_context(|| format!("binding {}", args.ops_listen))?;
    let api_listener = tokio::net::TcpListener::bind(args.api_listen)
        .await
        .with_context(|| format!("binding {}", args.api_listen))?;
    tracing::info!(
        ops = %args.ops_listen,
        api = %args.api_listen,
        image = %settings.image,
        namespace = %settings.namespace,
        "riffle-operator starting"
    );
    let (stop_tx, stop_rx) = tokio::sync::watch::channel(false);
    let stopped = |mut rx: tokio::sync::watch::Receiver<bool>| async move {
        let _ = rx.wait_for(|stop| *stop).await;
    };
    let ops = tokio::spawn(ops::serve(
        listener,
        metrics.clone(),
        stopped(stop_rx.clone()),
    ));
    let api_state = Arc::new(api::ApiState {
        client: client.clone(),
        settings: settings.clone(),
        metrics: metrics.clone(),
    });
    let api = tokio::spawn(api::serve(api_listener, api_state, stopped(stop_rx)));
    let (lost_tx, lost_rx) = tokio::sync::watch::channel(false);
    let watchdog = tokio::spawn({
        let client = client.clone();
        async move {
            watchdog::watch(client).await;
            let _ = lost_tx.send(true);
        }
    });
    let stop = {
        let lost = lost_rx.clone();
        async move {
            tokio::select! {
                () = shutdown_signal() => {}
                () = stopped(lost) => {}
            }
        }
    };
    controller::run(
        client,
        settings,
        metrics,
        args.instance,
        args.watch_namespace.as_deref(),
        stop,
    )
    .await;
    let _ = stop_tx.send(true);
    let _ = ops.await;
    let _ = api.await;
    watchdog.abort();
    if *lost_rx.borrow() {
        anyhow::bail!("restarting after an API server outage so that every watch starts afresh");
    }
    tracing::info!("riffle-operator stopped");
    Ok(())
}

/// Resolves on SIGINT or SIGTERM.
async fn shutdown_signal() {
    let interrupt = tokio::signal::ctrl_c();
    #[cfg(unix)]
    {
        use tokio::signal::unix::{SignalKind, signal};
        match signal(SignalKind::terminate()) {
            Ok(mut terminate) => {
                tokio::select! {
                    _ = interrupt => {}
                    _ = terminate.recv() => {}
                }
            }
            Err(_) => {
                let _ = interrupt.await;
            }
        }
    }
    #[cfg(not(unix))]
    {
        let _ = interrupt.await;
    }
}
