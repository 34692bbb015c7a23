//! `riffle-replica`: one replica of a raft group whose state is an append-only file, with a
//! gRPC client API (`riffle.replication.testing.v1.TestReplica`). Used by the fault tests.

mod append_file;

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;

use anyhow::Context;
use clap::Parser;
use riffle_replication::{ProposeError, Replica, ReplicaConfig, Role};
use tonic::{Request, Response, Status};

use crate::append_file::AppendFile;
use crate::proto::test_replica_server::{TestReplica, TestReplicaServer};
use crate::proto::{
    AppendReply, AppendRequest, PartitionReply, PartitionRequest, ReadReply, ReadRequest, Record,
    StatusReply, StatusRequest,
};

#[allow(missing_docs, clippy::all)]
mod proto {
    tonic::include_proto!("riffle.replication.testing.v1");
}

/// One replica of an append-only file replicated by raft.
#[derive(Parser, Debug)]
struct Args {
    /// This replica's id.
    #[arg(long)]
    id: u64,
    /// A member as `id=host:port` (replication address); repeat for every member.
    #[arg(long = "member", value_parser = parse_member)]
    members: Vec<(u64, String)>,
    /// Where the replication server listens.
    #[arg(long)]
    raft_listen: SocketAddr,
    /// Where the client API listens.
    #[arg(long)]
    client_listen: SocketAddr,
    /// Data directory.
    #[arg(long)]
    data_dir: PathBuf,
    /// Take a snapshot after this many entries.
    #[arg(long, default_value_t = 20_000)]
    snapshot_every: u64,
    /// Entries of log to keep behind a snapshot.
    #[arg(long, default_value_t = 5_000)]
    keep_log: u64,
}

fn parse_member(s: &str) -> Result<(u64, String), String> {
    let (id, addr) = s.split_once('=').ok_or("expected id=host:port")?;
    Ok((
        id.parse().map_err(|e| format!("bad id: {e}"))?,
        addr.to_string(),
    ))
}

struct Api {
    replica: Arc<Replica<AppendFile>>,
}

#[tonic::async_trait]
impl TestReplica for Api {
    async fn append(
        &self,
        request: Request<AppendRequest>,
    ) -> Result<Response<AppendReply>, Status> {
        let payload = request.into_inner().payload;
        Ok(Response::new(match self.replica.propose(payload).await {
            Ok(p) => AppendReply {
                ok: true,
                index: p.index,
                ..Default::default()
            },
            Err(ProposeError::NotLeader { leader, .. }) => AppendReply {
                leader: leader.map(|l| l.to_string()).unwrap_or_default(),
                error: "not the leader".into(),
                ..Default::default()
            },
            Err(e) => AppendReply {
                error: e.to_string(),
                ..Default::default()
            },
        }))
    }

    async fn read(&self, _: Request<ReadRequest>) -> Result<Response<ReadReply>, Status> {
        let sm = self.replica.state_machine();
        let sm = sm
            .lock()
            .map_err(|_| Status::internal("state machine lock poisoned"))?;
        let records = sm
            .records()
            .iter()
            .map(|(index, payload)| Record {
                index: *index,
                payload: payload.clone(),
            })
            .collect();
        let applied = riffle_replication::StateMachine::applied(&*sm).and_then(|a| a.index());
        Ok(Response::new(ReadReply { records, applied }))
    }

    async fn status(&self, _: Request<StatusRequest>) -> Result<Response<StatusReply>, Status> {
        let s = self.replica.status();
        Ok(Response::new(StatusReply {
            id: s.id,
            role: match s.role {
                Role::Leader => "leader",
                Role::Follower => "follower",
                Role::Candidate => "candidate",
                Role::Learner => "learner",
                Role::Shutdown => "shutdown",
            }
            .into(),
            term: s.term,
            leader: s.leader,
            last_log_index: s.last_log_index,
            applied: s.applied,
            voters: s.voters.into_iter().collect(),
            snapshot: s.snapshot,
            purged: s.purged,
        }))
    }

    async fn partition(
        &self,
        request: Request<PartitionRequest>,
    ) -> Result<Response<PartitionReply>, Status> {
        self.replica.faults().block(request.into_inner().blocked);
        Ok(Response::new(PartitionReply {}))
    }
}

#[tokio::main(flavor = "multi_thread", worker_threads = 2)]
async fn main() -> anyhow::Result<()> {
    tracing_subscriber::fmt()
        .with_ansi(false)
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env()
                .unwrap_or_else(|_| "info,openraft=warn".into()),
        )
        .init();
    let args = Args::parse();
    let members: BTreeMap<u64, String> = args.members.into_iter().collect();
    let mut config = ReplicaConfig::new(args.id, args.raft_listen, members, args.data_dir.clone());
    config.raft.snapshot_policy = openraft::SnapshotPolicy::LogsSinceLast(args.snapshot_every);
    config.raft.max_in_snapshot_log_to_keep = args.keep_log;
    let sm = AppendFile::open(&args.data_dir.join("state")).context("opening the state")?;
    let replica = Arc::new(
        Replica::start(config, sm)
            .await
            .context("starting the replica")?,
    );
    tracing::info!(id = args.id, "replica started");
    let watched = Arc::clone(&replica);
    tokio::spawn(async move {
        let fatal = watched.wait_fatal().await;
        tracing::error!(
            error = fatal.as_str(),
            "raft stopped; exiting to restart from disk"
        );
        std::process::exit(70);
    });
    let api = TestReplicaServer::new(Api {
        replica: Arc::clone(&replica),
    });
    tonic::transport::Server::builder()
        .add_service(api)
        .serve(args.client_listen)
        .await
        .context("client API")?;
    Ok(())
}
