//! A replica of a shard group as a server runs it: the [`Replicator`] the catalog's writes go
//! through on the leader, the HTTP front (Kinesis API, `/metrics` with the replica's status),
//! and start-up.

use std::collections::BTreeMap;
use std::collections::HashMap;
use std::fmt::Write as _;
use std::net::SocketAddr;
use std::path::Path;
use std::sync::{Arc, Mutex, Weak};
use std::time::Duration;

use bytes::Bytes;
use http::{HeaderValue, Method, Request, Response, StatusCode};
use hyper::body::Incoming;
use riffle_replication::{ProposeError, Replica, ReplicaConfig, Role, StartError};
use tokio::sync::oneshot;

use super::command::{Command, Record, Response as CommandResponse, ShardBatch};
use super::state_machine::CatalogMachine;
use crate::http::{Body, full, text};
use crate::streams::model::{Placement, StreamMeta};
use crate::streams::{
    ApiError, ApiResult, Catalog, CreateStream, ErrorKind, PutEntry, PutOutcome, Replicated,
    Replicator, SettingsChange, StreamChange, now_ms,
};

/// Response header naming the leader's Kinesis API address (`host:port`) on a write refused
/// by a replica that does not lead its group.
pub const LEADER_HEADER: &str = "x-riffle-leader";

/// A leader that has not heard from a quorum for this long (longer than the longest election
/// timeout, after which the others elect a new leader) refuses writes.
const QUORUM_SILENCE: Duration = Duration::from_millis(1500);

/// Longest wait for a quorum to acknowledge a write before the client is told to retry.
const PROPOSE_PATIENCE: Duration = Duration::from_secs(5);

/// Most record bytes proposed in one round of grouped puts (a single larger put goes alone).
const PUT_ROUND_BYTES: usize = 4 << 20;

/// Most rounds of one lane being replicated at once. A put that finds fewer waits for no
/// other round; one that finds this many joins the next round, proposed when one finishes.
/// Two rather than more: every round is a raft entry with its own costs on every replica, and
/// after a stall, puts that join one round catch up sooner than puts proposed one by one
/// (PutRecord at 1,024 calls/s on three replicas: p99 3.9–4.3 ms with two, 4.2–4.8 with one,
/// 5.0–5.8 with four).
const PUT_ROUNDS_IN_FLIGHT: usize = 2;

/// Puts whose records go into one command together: same stream incarnation, sealed alike.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
struct Lane {
    stream: String,
    epoch: u64,
    encrypted: bool,
}

/// The puts of one lane waiting for the next round, and how many rounds are being proposed.
#[derive(Default)]
struct LaneQueue {
    puts: Vec<WaitingPut>,
    rounds_in_flight: usize,
}

/// One put waiting to be proposed, and where its part of the response goes.
struct WaitingPut {
    batches: Vec<ShardBatch>,
    bytes: usize,
    reply: oneshot::Sender<ApiResult<CommandResponse>>,
}

/// How a server joins its shard group.
#[derive(Debug, Clone)]
pub struct ReplicationOptions {
    /// This replica's id (a key of `peers`).
    pub id: u64,
    /// Replication address (`host:port`) of every replica, this one included.
    pub peers: BTreeMap<u64, String>,
    /// Where this replica's replication server listens.
    pub raft_listen: SocketAddr,
    /// Kinesis API address (`host:port`) of every replica, named in [`LEADER_HEADER`];
    /// replicas missing here are named by their replication address.
    pub peer_apis: BTreeMap<u64, String>,
}

/// A running replica of the group and what the server needs of it.
pub struct Node {
    replica: Replica<CatalogMachine>,
    catalog: Weak<Catalog>,
    options: ReplicationOptions,
    /// Puts waiting to be proposed together, by lane.
    puts: Mutex<HashMap<Lane, LaneQueue>>,
}

impl Node {
    /// Opens the state machine over `catalog` (raft files under `<data_dir>/replica`), starts
    /// the replica and makes the catalog's writes go through it.
    pub async fn start(
        catalog: &Arc<Catalog>,
        options: ReplicationOptions,
    ) -> Result<Arc<Node>, StartError> {
        let dir = replica_dir(&catalog.config().data_dir);
        let machine = CatalogMachine::open(Arc::clone(catalog), &dir)
            .await
            .map_err(|e| StartError::Config(format!("cannot open the applied position: {e}")))?;
        let config =
            ReplicaConfig::new(options.id, options.raft_listen, options.peers.clone(), dir);
        let replica = Replica::start(config, machine).await?;
        let node = Arc::new(Node {
            replica,
            catalog: Arc::downgrade(catalog),
            options,
            puts: Mutex::default(),
        });
        catalog.set_replicator(Arc::new(Writes(Arc::downgrade(&node))));
        Ok(node)
    }

    /// The replica.
    pub fn replica(&self) -> &Replica<CatalogMachine> {
        &self.replica
    }

    /// The Kinesis API address of the leader, if known and not this replica.
    pub fn leader_api(&self) -> Option<String> {
        let status = self.replica.status();
        let leader = status.leader.filter(|&l| l != self.options.id)?;
        self.options
            .peer_apis
            .get(&leader)
            .cloned()
            .or(status.leader_addr)
    }

    /// Stores the applied position and stops the replica.
    pub async fn shutdown(self: Arc<Self>) {
        let machine = self.replica.state_machine();
        let _ = tokio::task::spawn_blocking(move || {
            let mut machine = machine.lock().unwrap_or_else(|p| p.into_inner());
            if let Err(e) = machine.save_position() {
                tracing::warn!(error = %e, "could not store the applied position");
            }
        })
        .await;
        match Arc::try_unwrap(self) {
            Ok(node) => node.replica.shutdown().await,
            Err(_) => tracing::warn!("replica still in use at shutdown; not waiting for it"),
        }
    }

    /// Proposes `command` if this replica leads (see [`Node::leading`]). A proposal that fails
    /// after it was handed to raft may still commit (under a new leader, say), so such failures
    /// are answered InternalFailure, "may or may not have been made", never as a refusal that
    /// the gateway would send elsewhere: a retry is the client's to make, knowing it may store
    /// the change twice.
    async fn propose(&self, command: Command) -> ApiResult<CommandResponse> {
        self.leading()?;
        let unknown = |why: String| {
            ApiError::internal(format!(
                "Replica {} {why}; the change may or may not have been made.",
                self.options.id
            ))
        };
        let proposal = self.replica.propose(Bytes::from(command.encode()));
        // A leader that stops hearing from its quorum while the change is under way gives up
        // on it then, rather than at the end of the patience.
        let quorum_lost = async {
            loop {
                tokio::time::sleep(Duration::from_millis(100)).await;
                if self.leading().is_err() {
                    return;
                }
            }
        };
        let proposed = tokio::select! {
            proposed = tokio::time::timeout(PROPOSE_PATIENCE, proposal) => proposed.map_err(|_| {
                unknown(format!(
                    "could not get the change acknowledged by a quorum within {} s",
                    PROPOSE_PATIENCE.as_secs()
                ))
            })?,
            () = quorum_lost => {
                return Err(unknown("lost its quorum or its leadership while the change was under way".into()));
            }
        };
        match proposed {
            Ok(done) => CommandResponse::decode(&done.response).map_err(ApiError::internal),
            Err(ProposeError::TooLarge(n)) => Err(ApiError::invalid(format!(
                "The request is too large to replicate ({n} bytes)."
            ))),
            Err(ProposeError::NotLeader { .. } | ProposeError::NoQuorum) => {
                Err(unknown("lost the leadership of its group".into()))
            }
            Err(ProposeError::Stopped(e)) => Err(unknown(format!("stopped ({e})"))),
            Err(ProposeError::OutcomeUnknown(_)) => {
                Err(unknown("lost the leadership of its group".into()))
            }
        }
    }

    fn not_leader(&self, leader: Option<u64>) -> ApiError {
        let named = leader
            .filter(|&l| l != self.options.id)
            .map(|l| {
                let api = self.options.peer_apis.get(&l).cloned().unwrap_or_default();
                format!(" The leader is replica {l} ({api}).")
            })
            .unwrap_or_else(|| " No leader is known yet; retry shortly.".to_string());
        ApiError::new(
            ErrorKind::NotLeader,
            format!(
                "Replica {} does not lead its shard group.{named}",
                self.options.id
            ),
        )
    }

    /// Refuses unless this replica leads its group and has heard from a quorum lately: a
    /// leader cut off from its followers still believes it leads until it hears of a newer
    /// term, and refuses at once rather than hold a write until the cut heals, or answer a read
    /// from a copy the new leader has moved past.
    fn leading(&self) -> ApiResult<()> {
        let status = self.replica.status();
        if status.role != Role::Leader {
            return Err(self.not_leader(status.leader));
        }
        match status.millis_since_quorum_ack {
            Some(silence) if silence > QUORUM_SILENCE.as_millis() as u64 => Err(ApiError::new(
                ErrorKind::NotLeader,
                format!(
                    "Replica {} has not heard from a quorum of its shard group for {silence} ms; retry shortly at another replica.",
                    self.options.id
                ),
            )),
            _ => Ok(()),
        }
    }

    fn catalog(&self) -> ApiResult<Arc<Catalog>> {
        self.catalog
            .upgrade()
            .ok_or_else(|| ApiError::internal("the catalog is closed"))
    }

    /// Proposes a change that answers only whether it was made.
    async fn change(&self, command: Command) -> ApiResult<()> {
        self.propose(command).await?.into_result()
    }

    /// The creation time (seconds) of the incarnation of `name` a change is made to.
    fn epoch_of(&self, name: &str) -> ApiResult<u64> {
        Ok(self.catalog()?.stream(name)?.epoch)
    }

    async fn create_stream(&self, request: CreateStream) -> ApiResult<()> {
        self.change(Command::CreateStream {
            name: request.name,
            shard_count: request.shard_count,
            mode: request.mode,
            tags: request.tags,
            max_record_size_kib: request.max_record_size_kib,
            created_ms: now_ms(),
            placement: request.placement,
        })
        .await
    }

    async fn delete_stream(&self, name: &str, enforce: bool) -> ApiResult<()> {
        self.change(Command::DeleteStream {
            name: name.to_string(),
            epoch: self.epoch_of(name)?,
            enforce_consumer_deletion: enforce,
        })
        .await
    }

    async fn change_settings(&self, name: &str, change: SettingsChange) -> ApiResult<()> {
        self.change(Command::ChangeSettings {
            name: name.to_string(),
            epoch: self.epoch_of(name)?,
            change,
        })
        .await
    }

    async fn change_stream(&self, name: &str, change: StreamChange) -> ApiResult<()> {
        self.change(Command::ChangeStream {
            name: name.to_string(),
            epoch: self.epoch_of(name)?,
            change,
            at_ms: now_ms(),
        })
        .await
    }

    async fn sweep_retention(&self) -> ApiResult<()> {
        self.change(Command::SweepRetention { at_ms: now_ms() })
            .await
    }

    async fn import_stream(&self, meta: StreamMeta, placement: Placement) -> ApiResult<()> {
        self.change(Command::ImportStream {
            meta: Box::new(meta),
            placement,
        })
        .await
    }

    async fn put_records(
        self: Arc<Self>,
        name: &str,
        entries: Vec<PutEntry>,
    ) -> ApiResult<PutOutcome> {
        // Before routing, which admits the records against the shards' limits and counts them:
        // only the leader's counters are the group's.
        self.leading()?;
        let routed = self.catalog()?.route_records(name, entries).await?;
        let mut results = routed.results;
        if routed.groups.is_empty() {
            return Ok(PutOutcome::of(results, routed.encrypted));
        }
        let counts: Vec<usize> = routed.groups.iter().map(|g| g.2.len()).collect();
        let mut positions = Vec::with_capacity(routed.groups.len());
        let mut batches = Vec::with_capacity(routed.groups.len());
        for (shard, indexes, records) in routed.groups {
            positions.push(indexes);
            batches.push(ShardBatch {
                shard,
                records: records
                    .into_iter()
                    .map(|r| Record {
                        partition_key: r.partition_key,
                        data: r.data,
                    })
                    .collect(),
            });
        }
        let shards: Vec<u32> = batches.iter().map(|b| b.shard).collect();
        let lane = Lane {
            stream: name.to_string(),
            epoch: routed.epoch,
            encrypted: routed.encrypted,
        };
        let response = self.put_together(lane, batches).await?;
        let numbers = response.sequence_numbers(&counts)?;
        for ((indexes, shard), numbers) in positions.into_iter().zip(shards).zip(numbers) {
            match numbers {
                Ok(numbers) => {
                    for (position, number) in indexes.into_iter().zip(numbers) {
                        results[position] = Some(Ok((shard, number)));
                    }
                }
                Err(error) => {
                    for position in indexes {
                        results[position] = Some(Err(error.clone()));
                    }
                }
            }
        }
        Ok(PutOutcome::of(results, routed.encrypted))
    }

    /// Proposes `batches` at once if fewer than [`PUT_ROUNDS_IN_FLIGHT`] rounds of its lane
    /// are being replicated, else together with the other puts to the same lane that arrive
    /// meanwhile (group commit): one raft entry and one log write on each replica for all of
    /// them. Returns this put's part of the response.
    async fn put_together(
        self: Arc<Self>,
        lane: Lane,
        batches: Vec<ShardBatch>,
    ) -> ApiResult<CommandResponse> {
        let (reply, answer) = oneshot::channel();
        let bytes = batches
            .iter()
            .flat_map(|b| &b.records)
            .map(|r| r.data.len() + r.partition_key.len())
            .sum();
        let start_proposing = {
            let mut lanes = self.puts.lock().unwrap_or_else(|p| p.into_inner());
            let waiting = lanes.entry(lane.clone()).or_default();
            waiting.puts.push(WaitingPut {
                batches,
                bytes,
                reply,
            });
            let start = waiting.rounds_in_flight < PUT_ROUNDS_IN_FLIGHT;
            waiting.rounds_in_flight += usize::from(start);
            start
        };
        if start_proposing {
            tokio::spawn(Arc::clone(&self).propose_lane(lane));
        }
        answer
            .await
            .map_err(|_| ApiError::internal("the put was dropped before it was replicated"))?
    }

    /// Proposes the puts waiting in `lane`, round after round, until none is left; one of
    /// the lane's rounds in flight.
    async fn propose_lane(self: Arc<Self>, lane: Lane) {
        loop {
            let round: Vec<WaitingPut> = {
                let mut lanes = self.puts.lock().unwrap_or_else(|p| p.into_inner());
                let Some(waiting) = lanes.get_mut(&lane) else {
                    return;
                };
                let mut total = 0;
                let take = waiting
                    .puts
                    .iter()
                    .take_while(|put| {
                        let fits = total == 0 || total + put.bytes <= PUT_ROUND_BYTES;
                        total += put.bytes;
                        fits
                    })
                    .count();
                if take == 0 {
                    waiting.rounds_in_flight -= 1;
                    if waiting.rounds_in_flight == 0 {
                        lanes.remove(&lane);
                    }
                    return;
                }
                waiting.puts.drain(..take).collect()
            };
            // The puts' batches move into the command; each keeps its count and its reply.
            let mut batches = Vec::new();
            let mut replies = Vec::with_capacity(round.len());
            for put in round {
                replies.push((put.batches.len(), put.reply));
                batches.extend(put.batches);
            }
            let command = Command::PutRecords {
                stream: lane.stream.clone(),
                epoch: lane.epoch,
                arrival_ms: now_ms(),
                batches,
                encrypted: Some(lane.encrypted),
            };
            let response = self.propose(command).await;
            let mut first = 0;
            for (count, reply) in replies {
                let part = match &response {
                    Ok(CommandResponse::Appended(all)) => all
                        .get(first..first + count)
                        .map(|part| CommandResponse::Appended(part.to_vec()))
                        .ok_or_else(|| ApiError::internal("response does not match the request")),
                    Ok(other) => Ok(other.clone()),
                    Err(error) => Err(error.clone()),
                };
                first += count;
                let _ = reply.send(part);
            }
        }
    }

    /// Serves one HTTP request: the Kinesis API (on the leader only: requests refused here
    /// name the leader),
    /// `/metrics` with the replica's status, and the health endpoints.
    pub async fn handle(self: Arc<Self>, request: Request<Incoming>) -> Response<Body> {
        let Ok(catalog) = self.catalog() else {
            return text(StatusCode::SERVICE_UNAVAILABLE, "stopping\n");
        };
        match (request.method(), request.uri().path()) {
            (&Method::POST, "/") => {
                let mut response = crate::kinesis::handle(catalog, request).await;
                if response.status() == StatusCode::SERVICE_UNAVAILABLE
                    && let Some(leader) = self.leader_api()
                    && let Ok(value) = HeaderValue::from_str(&leader)
                {
                    response.headers_mut().insert(LEADER_HEADER, value);
                }
                response
            }
            (&Method::GET, "/healthz") | (&Method::GET, "/readyz") => text(StatusCode::OK, "ok\n"),
            (&Method::GET, "/metrics") => {
                let mut body = crate::metrics::render(&catalog).await;
                self.render_status(&mut body);
                Response::builder()
                    .header("content-type", "text/plain; version=0.0.4")
                    .body(full(body))
                    .unwrap_or_else(|_| text(StatusCode::INTERNAL_SERVER_ERROR, "error\n"))
            }
            _ => text(StatusCode::NOT_FOUND, "not found\n"),
        }
    }

    /// Appends the replica's status in the Prometheus text format.
    pub fn render_status(&self, out: &mut String) {
        let status = self.replica.status();
        let labels = format!("replica=\"{}\"", status.id);
        let gauges: [(&str, &str, u64); 5] = [
            (
                "riffle_replica_is_leader",
                "Whether this replica leads its shard group (1) or not (0).",
                u64::from(status.role == Role::Leader),
            ),
            (
                "riffle_replica_term",
                "The replica's current raft term.",
                status.term,
            ),
            (
                "riffle_replica_leader",
                "Id of the replica this one knows as leader (0 if none).",
                status.leader.unwrap_or(0),
            ),
            (
                "riffle_replica_last_log_index",
                "Index of the last entry in the replica's raft log.",
                status.last_log_index.unwrap_or(0),
            ),
            (
                "riffle_replica_applied_index",
                "Index of the last entry applied to the replica's streams.",
                status.applied.unwrap_or(0),
            ),
        ];
        for (name, help, value) in gauges {
            let _ = writeln!(
                out,
                "# HELP {name} {help}\n# TYPE {name} gauge\n{name}{{{labels}}} {value}"
            );
        }
        let name = "riffle_replica_role";
        let role = match status.role {
            Role::Leader => "leader",
            Role::Follower => "follower",
            Role::Candidate => "candidate",
            Role::Learner => "learner",
            Role::Shutdown => "shutdown",
        };
        let _ = writeln!(
            out,
            "# HELP {name} The replica's raft role (1 for the role it has).\n# TYPE {name} gauge\n{name}{{{labels},role=\"{role}\"}} 1"
        );
        let name = "riffle_replica_voter";
        let _ = writeln!(
            out,
            "# HELP {name} The voting members of the group as this replica knows them (1 each).\n# TYPE {name} gauge"
        );
        for voter in &status.voters {
            let _ = writeln!(out, "{name}{{{labels},member=\"{voter}\"}} 1");
        }
        if let Some(millis) = status.millis_since_quorum_ack {
            let name = "riffle_replica_millis_since_quorum_ack";
            let _ = writeln!(
                out,
                "# HELP {name} On the leader: milliseconds since a quorum last acknowledged it.\n# TYPE {name} gauge\n{name}{{{labels}}} {millis}"
            );
        }
    }
}

/// Where a server keeps its raft log, snapshots and applied position.
pub fn replica_dir(data_dir: &Path) -> std::path::PathBuf {
    data_dir.join("replica")
}

/// The catalog's write path on a replica (holds the node weakly: the node holds the catalog).
struct Writes(Weak<Node>);

impl Writes {
    fn node(&self) -> ApiResult<Arc<Node>> {
        self.0
            .upgrade()
            .ok_or_else(|| ApiError::internal("the replica stopped"))
    }
}

impl Replicator for Writes {
    fn create_stream(&self, request: CreateStream) -> Replicated<'_, ()> {
        Box::pin(async move { self.node()?.create_stream(request).await })
    }

    fn delete_stream<'a>(&'a self, name: &'a str, enforce_consumers: bool) -> Replicated<'a, ()> {
        Box::pin(async move { self.node()?.delete_stream(name, enforce_consumers).await })
    }

    fn put_records<'a>(
        &'a self,
        name: &'a str,
        entries: Vec<PutEntry>,
    ) -> Replicated<'a, PutOutcome> {
        Box::pin(async move { self.node()?.put_records(name, entries).await })
    }

    fn change_settings<'a>(&'a self, name: &'a str, change: SettingsChange) -> Replicated<'a, ()> {
        Box::pin(async move { self.node()?.change_settings(name, change).await })
    }

    fn change_stream<'a>(&'a self, name: &'a str, change: StreamChange) -> Replicated<'a, ()> {
        Box::pin(async move { self.node()?.change_stream(name, change).await })
    }

    fn leading(&self) -> ApiResult<()> {
        self.node()?.leading()
    }

    fn sweep_retention(&self) -> Replicated<'_, ()> {
        Box::pin(async move { self.node()?.sweep_retention().await })
    }

    fn import_stream(&self, meta: StreamMeta, placement: Placement) -> Replicated<'_, ()> {
        Box::pin(async move { self.node()?.import_stream(meta, placement).await })
    }
}
