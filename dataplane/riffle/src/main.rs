//! `riffle`: the standalone data-plane server (`riffle server`) and the command-line client
//! of its gRPC API (`riffle stream`, `riffle put`, `riffle tail`).

mod cli;

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

use clap::{Parser, Subcommand, ValueEnum};
use riffle_log::{LogConfig, SyncMode};
use riffle_server::gateway::GatewayOptions;
use riffle_server::replicated::ReplicationOptions;
use riffle_server::server::{ServerOptions, load_data_key, run, shutdown_signal};
use riffle_server::streams::StreamsConfig;

#[derive(Parser)]
#[command(
    name = "riffle",
    version,
    about = "Kinesis-compatible streams: server and client"
)]
struct Args {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
#[allow(clippy::large_enum_variant)] // parsed once at start-up; its size does not matter
enum Command {
    /// Runs the standalone data plane: Kinesis API, gRPC API and metrics.
    Server(ServerArgs),
    /// Runs the gateway: one Kinesis endpoint relaying to the data-plane endpoints of its
    /// route file.
    Gateway(GatewayArgs),
    #[command(flatten)]
    Client(cli::ClientCommand),
}

/// Whether a limit is enforced.
#[derive(Clone, Copy, ValueEnum)]
enum Switch {
    On,
    Off,
}

/// How appends reach the disk.
#[derive(Clone, Copy, ValueEnum)]
enum Sync {
    /// Acknowledge only after fdatasync (durable).
    Fdatasync,
    /// Acknowledge after the write to the page cache (not durable; for experiments).
    None,
}

#[derive(clap::Args)]
#[command(group(clap::ArgGroup::new("replica").args(["replica_id", "replica_id_from_pod"])))]
struct ServerArgs {
    /// Address of the Kinesis API, /metrics, /healthz and /readyz.
    #[arg(long, env = "RIFFLE_LISTEN", default_value = "127.0.0.1:4567")]
    listen: SocketAddr,
    /// Address of the gRPC API.
    #[arg(long, env = "RIFFLE_GRPC_LISTEN", default_value = "127.0.0.1:4568")]
    grpc_listen: SocketAddr,
    /// Where streams are stored.
    #[arg(long, env = "RIFFLE_DATA_DIR", default_value = "./data")]
    data_dir: PathBuf,
    /// Per-shard throughput limits (1 MiB/s and 1000 records/s in, 5 reads/s and 2 MiB/s out).
    #[arg(long, env = "RIFFLE_THROTTLE", value_enum, default_value = "on")]
    throttle: Switch,
    /// Lifetime of shard iterators, in seconds.
    #[arg(long, env = "RIFFLE_ITERATOR_TTL_SECS", default_value_t = 300)]
    iterator_ttl_secs: u64,
    /// Lifetime of a SubscribeToShard subscription, in seconds.
    #[arg(long, env = "RIFFLE_SUBSCRIPTION_SECS", default_value_t = 300)]
    subscription_secs: u64,
    /// File holding the 256-bit data key (64 hex digits) for streams with encryption on;
    /// without it a key is generated in the data directory.
    #[arg(long, env = "RIFFLE_ENCRYPTION_KEY_FILE")]
    encryption_key_file: Option<PathBuf>,
    /// Region named in ARNs.
    #[arg(long, env = "RIFFLE_REGION", default_value = "us-east-1")]
    region: String,
    /// Account id named in ARNs.
    #[arg(long, env = "RIFFLE_ACCOUNT", default_value = "000000000000")]
    account: String,
    /// Most open shards across all streams.
    #[arg(long, env = "RIFFLE_SHARD_LIMIT", default_value_t = 1000)]
    shard_limit: u32,
    /// When appends are acknowledged.
    #[arg(long, env = "RIFFLE_SYNC", value_enum, default_value = "fdatasync")]
    sync: Sync,
    /// Run as replica ID of a replicated shard group (with --peers and --raft-listen):
    /// every change (streams, records, settings, resharding, consumers) is acknowledged once
    /// a quorum has it durable; the Kinesis API answers on the leader only (reads included), and
    /// other replicas answer 503 ServiceUnavailable with the leader in the x-riffle-leader
    /// header. Without it the server stores its streams alone.
    #[arg(long, env = "RIFFLE_REPLICA_ID", requires_all = ["peers", "raft_listen"])]
    replica_id: Option<u64>,
    /// Like --replica-id, taking the ID from a StatefulSet pod name: NAME-ORDINAL runs as
    /// replica ORDINAL+1 (for pods, which know their name but not their ID).
    #[arg(long, env = "RIFFLE_REPLICA_ID_FROM_POD", value_parser = replica_id_from_pod,
          requires_all = ["peers", "raft_listen"])]
    replica_id_from_pod: Option<u64>,
    /// Replication address of every replica of the group, this one included:
    /// ID=HOST:PORT,ID=HOST:PORT,...
    #[arg(long, env = "RIFFLE_PEERS", value_parser = parse_peers, requires = "replica")]
    peers: Option<BTreeMap<u64, String>>,
    /// Kinesis API address of every replica (ID=HOST:PORT,...), named in x-riffle-leader;
    /// replicas not listed are named by their replication address.
    #[arg(long, env = "RIFFLE_PEER_APIS", value_parser = parse_peers, requires = "replica")]
    peer_apis: Option<BTreeMap<u64, String>>,
    /// Where this replica's replication (raft) server listens.
    #[arg(long, env = "RIFFLE_RAFT_LISTEN", requires = "replica")]
    raft_listen: Option<SocketAddr>,
}

/// The replica ID of the StatefulSet pod `name` (`NAME-ORDINAL`): ORDINAL+1.
fn replica_id_from_pod(name: &str) -> Result<u64, String> {
    name.rsplit_once('-')
        .and_then(|(_, ordinal)| ordinal.parse::<u64>().ok())
        .and_then(|ordinal| ordinal.checked_add(1))
        .ok_or_else(|| format!("{name:?} is not a StatefulSet pod name ending in -ORDINAL"))
}

/// Parses `ID=HOST:PORT,ID=HOST:PORT`.
fn parse_peers(text: &str) -> Result<BTreeMap<u64, String>, String> {
    let mut peers = BTreeMap::new();
    for item in text.split(',').filter(|i| !i.trim().is_empty()) {
        let (id, address) = item
            .split_once('=')
            .ok_or_else(|| format!("expected ID=HOST:PORT, got {item:?}"))?;
        let id: u64 = id
            .trim()
            .parse()
            .map_err(|_| format!("replica id {id:?} is not a number"))?;
        if peers.insert(id, address.trim().to_string()).is_some() {
            return Err(format!("replica {id} is listed twice"));
        }
    }
    if peers.is_empty() {
        return Err("no peers given".into());
    }
    Ok(peers)
}

#[derive(clap::Args)]
struct GatewayArgs {
    /// Address of the Kinesis API, /healthz and /readyz.
    #[arg(long, env = "RIFFLE_LISTEN", default_value = "127.0.0.1:4567")]
    listen: SocketAddr,
    /// JSON route file: {"streams": {"<name>": "http://host:4567"}, "admin": "http://operator:4570"};
    /// re-read when it changes.
    #[arg(long, env = "RIFFLE_ROUTES")]
    routes: PathBuf,
    /// Account id named in error messages.
    #[arg(long, env = "RIFFLE_ACCOUNT", default_value = "000000000000")]
    account: String,
}

impl ServerArgs {
    fn into_options(self) -> anyhow::Result<ServerOptions> {
        let key = load_data_key(self.encryption_key_file.as_deref(), &self.data_dir)?;
        let mut streams = StreamsConfig::new(self.data_dir, key);
        streams.region = self.region;
        streams.account = self.account;
        streams.limits.enabled = matches!(self.throttle, Switch::On);
        streams.iterator_ttl = Duration::from_secs(self.iterator_ttl_secs);
        streams.subscription_ttl = Duration::from_secs(self.subscription_secs);
        streams.shard_limit = self.shard_limit;
        streams.log = LogConfig {
            sync: match self.sync {
                Sync::Fdatasync => SyncMode::Fdatasync,
                Sync::None => SyncMode::None,
            },
            ..LogConfig::default()
        };
        let replica_id = self.replica_id.or(self.replica_id_from_pod);
        let replication = match (replica_id, self.peers, self.raft_listen) {
            (Some(id), Some(peers), Some(raft_listen)) => {
                if !peers.contains_key(&id) {
                    anyhow::bail!("--replica-id {id} is not among --peers");
                }
                Some(ReplicationOptions {
                    id,
                    peers,
                    raft_listen,
                    peer_apis: self.peer_apis.unwrap_or_default(),
                })
            }
            _ => None,
        };
        Ok(ServerOptions {
            listen: self.listen,
            grpc_listen: self.grpc_listen,
            streams,
            replication,
        })
    }
}

fn main() -> std::process::ExitCode {
    let args = Args::parse();
    match run_command(args) {
        Ok(()) => std::process::ExitCode::SUCCESS,
        Err(error) => {
            eprintln!("error: {error:#}");
            std::process::ExitCode::FAILURE
        }
    }
}

fn run_command(args: Args) -> anyhow::Result<()> {
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_env("RIFFLE_LOG")
                .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info")),
        )
        .with_writer(std::io::stderr)
        .init();
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()?;
    match args.command {
        Command::Server(server) => {
            let options = server.into_options()?;
            runtime.block_on(run(options))?;
        }
        Command::Gateway(gateway) => {
            let options = GatewayOptions {
                listen: gateway.listen,
                routes: gateway.routes,
                account: gateway.account,
            };
            runtime.block_on(riffle_server::gateway::run(options, shutdown_signal()))?;
        }
        Command::Client(command) => runtime.block_on(cli::run(command))?,
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pods_take_their_ordinal_plus_one_as_replica_id() {
        assert_eq!(replica_id_from_pod("orders-g0-0"), Ok(1));
        assert_eq!(replica_id_from_pod("orders-g12-2"), Ok(3));
        assert!(replica_id_from_pod("orders").is_err());
        assert!(replica_id_from_pod("orders-g0-x").is_err());
    }

    #[test]
    fn a_pod_name_stands_for_the_replica_id() {
        let args = Args::try_parse_from([
            "riffle",
            "server",
            "--replica-id-from-pod",
            "orders-g0-1",
            "--peers",
            "1=a:4569,2=b:4569,3=c:4569",
            "--raft-listen",
            "0.0.0.0:4569",
        ])
        .expect("parses");
        let Command::Server(server) = args.command else {
            panic!("server subcommand");
        };
        assert_eq!(server.replica_id_from_pod, Some(2));
        assert!(
            Args::try_parse_from(["riffle", "server", "--peers", "1=a:1"]).is_err(),
            "peers need a replica id"
        );
        let explicit = Args::try_parse_from([
            "riffle",
            "server",
            "--replica-id",
            "3",
            "--peers",
            "3=c:4569",
            "--raft-listen",
            "0.0.0.0:4569",
        ])
        .expect("parses");
        let Command::Server(server) = explicit.command else {
            panic!("server subcommand");
        };
        assert_eq!(server.replica_id, Some(3));
        assert!(
            Args::try_parse_from([
                "riffle",
                "server",
                "--replica-id",
                "1",
                "--replica-id-from-pod",
                "orders-g0-0",
                "--peers",
                "1=a:1",
                "--raft-listen",
                "0.0.0.0:4569",
            ])
            .is_err(),
            "one way of naming the replica"
        );
    }
}
