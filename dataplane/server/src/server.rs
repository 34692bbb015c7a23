//! The standalone data-plane process: the Kinesis API and ops endpoints on one port, the
//! gRPC API on another, retention in the background, clean shutdown on SIGTERM or Ctrl-C.

use std::fs;
use std::future::Future;
use std::io;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::pin::Pin;
use std::time::Duration;

use riffle_log::SyncMode;
use tokio::net::TcpListener;
use tokio::sync::watch;

use crate::replicated::{Node, ReplicationOptions};
use crate::streams::encryption::DataKey;
use crate::streams::{Catalog, StreamsConfig};

/// How often expired segments and shards are removed.
const RETENTION_SWEEP: Duration = Duration::from_secs(60);

/// Settings of the standalone server.
#[derive(Debug, Clone)]
pub struct ServerOptions {
    /// Address of the Kinesis API, `/metrics`, `/healthz` and `/readyz`.
    pub listen: SocketAddr,
    /// Address of the gRPC API.
    pub grpc_listen: SocketAddr,
    /// The stream service's settings.
    pub streams: StreamsConfig,
    /// When set, this server is one replica of a shard group (see [`crate::replicated`]);
    /// otherwise it stores its streams alone.
    pub replication: Option<ReplicationOptions>,
}

/// Reads the data key from `path`, or (without a path) from `<data_dir>/encryption.key`,
/// creating that file with a random key on first start.
pub fn load_data_key(path: Option<&Path>, data_dir: &Path) -> io::Result<[u8; 32]> {
    let path: PathBuf = match path {
        Some(path) => path.to_path_buf(),
        None => {
            fs::create_dir_all(data_dir)?;
            let path = data_dir.join("encryption.key");
            if !path.exists() {
                write_new_key(&path)?;
            }
            path
        }
    };
    let bytes = fs::read(&path)?;
    let text = String::from_utf8_lossy(&bytes);
    let text = text.trim();
    let mut key = [0u8; 32];
    if text.len() != 64 || !text.bytes().all(|b| b.is_ascii_hexdigit()) {
        return Err(io::Error::new(
            io::ErrorKind::InvalidData,
            format!(
                "{}: expected 64 hexadecimal digits (a 256-bit key)",
                path.display()
            ),
        ));
    }
    for (i, byte) in key.iter_mut().enumerate() {
        *byte = u8::from_str_radix(&text[i * 2..i * 2 + 2], 16).map_err(io::Error::other)?;
    }
    Ok(key)
}

fn write_new_key(path: &Path) -> io::Result<()> {
    use std::io::Write;
    use std::os::unix::fs::OpenOptionsExt;
    let key = DataKey::generate();
    let hex: String = key.iter().map(|b| format!("{b:02x}")).collect();
    let mut file = fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o600)
        .open(path)?;
    file.write_all(hex.as_bytes())?;
    file.sync_all()
}

/// Runs the server until SIGTERM or Ctrl-C.
pub async fn run(options: ServerOptions) -> Result<(), ServeError> {
    let catalog = tokio::task::spawn_blocking({
        let mut config = options.streams.clone();
        if options.replication.is_some() && config.log.sync == SyncMode::Fdatasync {
            // A replica applies only what a quorum's raft logs hold durably; its shard logs
            // are synced before it stores its applied position (see `replicated`).
            config.log.sync = SyncMode::OnRequest;
        }
        move || Catalog::open(config)
    })
    .await
    .map_err(|e| ServeError::Open(e.to_string()))?
    .map_err(|e| ServeError::Open(e.to_string()))?;
    let http = TcpListener::bind(options.listen)
        .await
        .map_err(|source| ServeError::Bind {
            address: options.listen,
            api: "Kinesis API",
            source,
        })?;
    let grpc = TcpListener::bind(options.grpc_listen)
        .await
        .map_err(|source| ServeError::Bind {
            address: options.grpc_listen,
            api: "gRPC API",
            source,
        })?;
    let node = match options.replication.clone() {
        Some(replication) => Some(
            Node::start(&catalog, replication)
                .await
                .map_err(|e| ServeError::Replica(e.to_string()))?,
        ),
        None => None,
    };
    let (stop, stopped) = watch::channel(false);
    let wait = |mut receiver: watch::Receiver<bool>| async move {
        let _ = receiver.wait_for(|stop| *stop).await;
    };
    let sweeper = tokio::spawn({
        let catalog = catalog.clone();
        let mut stopped = stopped.clone();
        async move {
            let mut interval = tokio::time::interval(RETENTION_SWEEP);
            loop {
                tokio::select! {
                    _ = interval.tick() => catalog.sweep_retention().await,
                    _ = stopped.changed() => break,
                }
            }
        }
    });
    // A replica serves its Kinesis API through its node (leader only, /metrics with its status).
    let http_serve: Pin<Box<dyn Future<Output = io::Result<()>> + Send>> = match node.clone() {
        None => Box::pin(crate::http::serve(
            catalog.clone(),
            http,
            wait(stopped.clone()),
        )),
        Some(node) => Box::pin(crate::http::serve_with(
            http,
            wait(stopped.clone()),
            move |request| node.clone().handle(request),
        )),
    };
    let http_task = tokio::spawn(async move {
        if let Err(error) = http_serve.await {
            tracing::error!(%error, "the Kinesis API stopped");
        }
    });
    let grpc_serve = crate::grpc::serve(catalog.clone(), grpc, wait(stopped.clone()));
    let grpc_task = tokio::spawn(async move {
        if let Err(error) = grpc_serve.await {
            tracing::error!(%error, "the gRPC API stopped");
        }
    });
    tracing::info!(
        kinesis = %options.listen,
        grpc = %options.grpc_listen,
        data_dir = %options.streams.data_dir.display(),
        "riffle is serving"
    );
    println!(
        "riffle listening: Kinesis API http://{} (metrics /metrics), gRPC {}; data in {}",
        options.listen,
        options.grpc_listen,
        options.streams.data_dir.display()
    );
    let fatal = match &node {
        Some(node) => tokio::select! {
            _ = shutdown_signal() => None,
            error = node.replica().wait_fatal() => Some(error),
        },
        None => {
            shutdown_signal().await;
            None
        }
    };
    tracing::info!("shutting down");
    let _ = stop.send(true);
    let _ = http_task.await;
    let _ = grpc_task.await;
    let _ = sweeper.await;
    if let Some(node) = node {
        node.shutdown().await;
    }
    for stream in catalog.streams() {
        catalog.close_stream_logs(&stream).await;
    }
    tracing::info!("stopped");
    match fatal {
        // Exit so that the replica is restarted and recovers from its disk.
        Some(error) => Err(ServeError::Replica(error)),
        None => Ok(()),
    }
}

/// Resolves on the first SIGINT or SIGTERM.
pub async fn shutdown_signal() {
    use tokio::signal::unix::{SignalKind, signal};
    let wait_for = |kind: SignalKind, name: &'static str| async move {
        match signal(kind) {
            Ok(mut stream) => {
                stream.recv().await;
                tracing::info!(signal = name, "signal received");
            }
            Err(error) => {
                tracing::warn!(signal = name, %error, "cannot watch for the signal");
                std::future::pending::<()>().await;
            }
        }
    };
    tokio::select! {
        _ = wait_for(SignalKind::interrupt(), "SIGINT") => {}
        _ = wait_for(SignalKind::terminate(), "SIGTERM") => {}
    }
}

/// Why the server could not start.
#[derive(Debug, thiserror::Error)]
pub enum ServeError {
    /// The data directory could not be opened or recovered.
    #[error("could not open the data directory: {0}")]
    Open(String),
    /// The replica of the shard group could not start, or stopped on a fatal error.
    #[error("replication: {0}")]
    Replica(String),
    /// A listening address is taken or not allowed.
    #[error("cannot listen on {address} ({api}): {source}")]
    Bind {
        /// The address.
        address: SocketAddr,
        /// Which API it was for.
        api: &'static str,
        /// The cause.
        source: io::Error,
    },
}
