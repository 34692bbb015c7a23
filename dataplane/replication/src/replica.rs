//! One replica of a shard group: storage, state machine, network and raft, started together.

use std::collections::{BTreeMap, BTreeSet};
use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use bytes::Bytes;
use futures::FutureExt;
use openraft::async_runtime::watch::WatchReceiver;
use openraft::error::{
    ClientWriteError, ForwardReason, InitializeError, LinearizableReadError, RaftError,
};
use openraft::network::RaftNetworkFactory;
use openraft::{BasicNode, Instant, ReadPolicy, ServerState};
use tokio::sync::watch;

use crate::network::Faults;
use crate::network::client::{NetworkFactory, PeerClient};
use crate::network::server::{RaftServer, VoteFloor};
use crate::state_machine::{Released, StateMachine, StateMachineStore};
use crate::storage::{LogConfig, LogStore, StoreError};
use crate::types::{Command, NodeId, Raft};

/// Largest command [`Replica::propose`] accepts: 8 MiB (a Kinesis PutRecords request is at
/// most 5 MiB). One command is replicated in one message, within one heartbeat interval.
pub const MAX_COMMAND_BYTES: usize = 8 << 20;

/// Replication batches (AppendEntries) are cut to about this size: 4 MiB.
pub const MAX_BATCH_BYTES: usize = 4 << 20;

/// How a replica is started.
#[derive(Debug, Clone)]
pub struct ReplicaConfig {
    /// This replica's id; must be a key of `members`.
    pub id: NodeId,
    /// Where the replication server listens.
    pub listen: SocketAddr,
    /// Replication address (`host:port`) of every member of the group, this one included.
    /// Used to bootstrap the group; afterwards the membership stored in the log rules.
    pub members: BTreeMap<NodeId, String>,
    /// Directory of the raft log, vote and snapshots (`raft/`, `snapshot/`).
    pub data_dir: PathBuf,
    /// Raft timing and snapshot policy. With the defaults of [`ReplicaConfig::new`] a new
    /// leader is elected about two seconds after the old one is lost.
    pub raft: openraft::Config,
    /// Segment size and whether the log `fdatasync`s (always in production).
    pub log: LogConfig,
}

impl ReplicaConfig {
    /// A configuration with production defaults:
    ///
    /// - 100 ms heartbeats and 300–1100 ms election timeouts; openraft adds the 1100 ms leader
    ///   lease, so followers stand for election 1.4–2.2 s after the last heartbeat. Each
    ///   replica draws its timeout once at start, so a wide range keeps two followers from
    ///   repeatedly standing at the same moment (a split vote costs another timeout). openraft
    ///   also uses the heartbeat interval as the deadline of every AppendEntries call, so it
    ///   must cover sending and syncing one replication batch (at most [`MAX_BATCH_BYTES`],
    ///   or one command of up to [`MAX_COMMAND_BYTES`]).
    /// - A snapshot every 20 000 entries, keeping 5 000 entries of log behind it for followers
    ///   that are only slightly behind; snapshots travel in 1 MiB chunks.
    pub fn new(
        id: NodeId,
        listen: SocketAddr,
        members: BTreeMap<NodeId, String>,
        data_dir: PathBuf,
    ) -> Self {
        let raft = openraft::Config {
            cluster_name: "riffle-shard-group".into(),
            heartbeat_interval: 100,
            election_timeout_min: 300,
            election_timeout_max: 1100,
            install_snapshot_timeout: 2000,
            snapshot_policy: openraft::SnapshotPolicy::LogsSinceLast(20_000),
            max_in_snapshot_log_to_keep: 5_000,
            snapshot_max_chunk_size: 1 << 20,
            max_payload_entries: 500,
            // A leader replicates its entries while its own `fdatasync` runs, and the group
            // may commit on the followers' copies alone. A leader restarted after losing its
            // unsynced tail must therefore not carry on in its old term: it could propose
            // other entries at indexes the followers already committed, under the same log
            // ids. It stands for election like any other replica instead.
            enable_leader_restore: Some(false),
            // A replica that lost its volume rejoins with an empty log; the leader must accept
            // that the follower's log went backwards.
            allow_log_reversion: Some(true),
            ..Default::default()
        };
        ReplicaConfig {
            id,
            listen,
            members,
            data_dir,
            raft,
            log: LogConfig::default(),
        }
    }
}

/// Why a replica could not start.
#[derive(Debug, thiserror::Error)]
pub enum StartError {
    /// The configuration is inconsistent.
    #[error("invalid replica configuration: {0}")]
    Config(String),
    /// The raft log, vote or snapshot could not be opened.
    #[error(transparent)]
    Store(#[from] StoreError),
    /// The replication port could not be bound.
    #[error("cannot listen on {addr}: {source}")]
    Listen {
        /// The address.
        addr: SocketAddr,
        /// The underlying error.
        #[source]
        source: std::io::Error,
    },
    /// openraft refused to start.
    #[error("raft failed to start: {0}")]
    Raft(String),
}

/// Why a proposal was not committed (or a read barrier not passed).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ProposeError {
    /// This replica is not the leader; retry on `leader` (if known). The command was not
    /// appended here.
    #[error("not the leader; the leader is {leader:?} at {leader_addr:?}")]
    NotLeader {
        /// The leader's node id, if known.
        leader: Option<NodeId>,
        /// The leader's replication address, if known.
        leader_addr: Option<String>,
    },
    /// This replica leads but could not reach a quorum to confirm it (read barrier only).
    #[error("leadership could not be confirmed by a quorum")]
    NoQuorum,
    /// The command is larger than [`MAX_COMMAND_BYTES`]; nothing was proposed.
    #[error("command of {0} bytes exceeds the limit of {MAX_COMMAND_BYTES}")]
    TooLarge(usize),
    /// The replica stopped (shut down, or a fatal storage error). The command may or may not
    /// have been committed.
    #[error("replica stopped: {0}")]
    Stopped(String),
    /// This replica appended the command, then lost leadership and discarded it from its log
    /// for the new leader's; the new leader may have it, so it may or may not be committed.
    #[error("leadership changed before the command was committed; it may or may not be: {0}")]
    OutcomeUnknown(String),
}

/// A committed and applied proposal.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Proposed {
    /// The log index of the command.
    pub index: u64,
    /// The state machine's response.
    pub response: Vec<u8>,
}

/// Role of a replica.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Role {
    /// Accepts proposals.
    Leader,
    /// Replicates from the leader.
    Follower,
    /// Asking for votes.
    Candidate,
    /// Replicates but does not vote.
    Learner,
    /// Stopped.
    Shutdown,
}

/// What a replica reports about itself, for metrics and status.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ReplicaStatus {
    /// This replica.
    pub id: NodeId,
    /// Its role.
    pub role: Role,
    /// Its current term.
    pub term: u64,
    /// The leader it knows of.
    pub leader: Option<NodeId>,
    /// The leader's replication address.
    pub leader_addr: Option<String>,
    /// Last index in its log.
    pub last_log_index: Option<u64>,
    /// Last index applied to its state machine.
    pub applied: Option<u64>,
    /// Index covered by its snapshot.
    pub snapshot: Option<u64>,
    /// Last index purged from its log.
    pub purged: Option<u64>,
    /// The voting members.
    pub voters: BTreeSet<NodeId>,
    /// On the leader: milliseconds since a quorum last acknowledged it (a leader cut off from
    /// its followers sees this grow).
    pub millis_since_quorum_ack: Option<u64>,
    /// Whether it stopped on a fatal error (the error).
    pub fatal: Option<String>,
}

/// A running replica. Dropping it does not stop it; call [`Replica::shutdown`].
pub struct Replica<S: StateMachine> {
    id: NodeId,
    raft: Raft<S>,
    sm: Arc<Mutex<S>>,
    faults: Faults,
    stop: watch::Sender<bool>,
    tasks: Vec<tokio::task::JoinHandle<()>>,
    /// Tells when openraft has let go of the state machine store.
    store_released: Option<Released>,
}

impl<S: StateMachine> Replica<S> {
    /// Opens storage, starts the replication server and raft, and — on the lowest member id —
    /// bootstraps the group once: only when none of the peers reports being part of a group
    /// already and all of them answered (so a replacement replica with an empty volume joins
    /// the existing group instead of founding a new one). Must run inside a Tokio runtime.
    pub async fn start(config: ReplicaConfig, sm: S) -> Result<Replica<S>, StartError> {
        if !config.members.contains_key(&config.id) {
            return Err(StartError::Config(format!(
                "node {} is not among the members {:?}",
                config.id,
                config.members.keys().collect::<Vec<_>>()
            )));
        }
        let raft_config = Arc::new(
            config
                .raft
                .clone()
                .validate()
                .map_err(|e| StartError::Config(e.to_string()))?,
        );
        let log_store = LogStore::open(&config.data_dir.join("raft"), config.log)?;
        // A replica without a vote never voted, or lost its volume and with it the votes it
        // cast: it votes only once it knows in which terms it may have (see [`find_vote_floor`]).
        let find_floor = log_store.saved_vote().is_none() && config.members.len() > 1;
        let vote_floor = VoteFloor::new(if find_floor { VoteFloor::CLOSED } else { 0 });
        let sm = Arc::new(Mutex::new(sm));
        let mut sm_store =
            StateMachineStore::open(Arc::clone(&sm), &config.data_dir.join("snapshot"))?;
        let store_released = sm_store.released();
        let faults = Faults::default();
        let network = NetworkFactory::new(config.id, faults.clone());
        let raft = Raft::new(config.id, raft_config, network.clone(), log_store, sm_store)
            .await
            .map_err(|e| StartError::Raft(e.to_string()))?;

        let listener = match tokio::net::TcpListener::bind(config.listen).await {
            Ok(l) => l,
            Err(source) => {
                let _ = raft.shutdown().await;
                return Err(StartError::Listen {
                    addr: config.listen,
                    source,
                });
            }
        };
        let (stop, stopped) = watch::channel(false);
        let server = tokio::spawn(
            RaftServer::new(raft.clone(), faults.clone(), vote_floor.clone())
                .serve(listener, stopped),
        );
        let mut tasks = vec![server];
        if find_floor {
            tasks.push(tokio::spawn(find_vote_floor(
                network.clone(),
                config.id,
                config.members.clone(),
                vote_floor,
                stop.subscribe(),
            )));
        }
        if config.members.keys().next() == Some(&config.id) {
            tasks.push(tokio::spawn(bootstrap(
                raft.clone(),
                network,
                config.id,
                config.members.clone(),
                stop.subscribe(),
            )));
        }
        Ok(Replica {
            id: config.id,
            raft,
            sm,
            faults,
            stop,
            tasks,
            store_released,
        })
    }

    /// Replicates `command`; returns once a quorum has it durable and it is applied here.
    pub async fn propose(&self, command: Bytes) -> Result<Proposed, ProposeError> {
        if command.len() > MAX_COMMAND_BYTES {
            return Err(ProposeError::TooLarge(command.len()));
        }
        let patience = tokio::time::Instant::now() + LEASE_PATIENCE;
        let mut metrics = self.raft.metrics();
        let written = loop {
            match self.raft.client_write(Command(command.clone())).await {
                // A leader takes writes only while a quorum has acknowledged it within the
                // leader lease, and a new leader has not been acknowledged yet: wait for that
                // rather than send the client elsewhere. (Nothing was appended.) A leader whose
                // acknowledgements stopped is refused at once, as before: it may be cut off.
                Err(RaftError::APIError(ClientWriteError::ForwardToLeader(f)))
                    if f.reason == ForwardReason::LeaseExpired
                        && metrics.borrow_watched().last_quorum_acked.is_none()
                        && tokio::time::Instant::now() < patience =>
                {
                    let _ = tokio::time::timeout_at(patience, metrics.changed()).await;
                }
                written => break written,
            }
        };
        match written {
            Ok(written) => Ok(Proposed {
                index: written.log_id.index,
                response: written.data,
            }),
            Err(RaftError::APIError(ClientWriteError::ForwardToLeader(f))) => {
                Err(ProposeError::NotLeader {
                    leader: f.leader_id,
                    leader_addr: f.leader_node.map(|n| n.addr),
                })
            }
            Err(RaftError::APIError(ClientWriteError::LogEntryDiscarded(f))) => {
                Err(ProposeError::OutcomeUnknown(f.to_string()))
            }
            Err(e) => Err(ProposeError::Stopped(e.to_string())),
        }
    }

    /// Waits until a read of the local state machine is linearizable: confirms with a quorum
    /// that this replica still leads, then waits until everything committed before the call is
    /// applied here. A server calls it before answering a read that must see every
    /// acknowledged write.
    pub async fn read_barrier(&self) -> Result<(), ProposeError> {
        match self.raft.ensure_linearizable(ReadPolicy::ReadIndex).await {
            Ok(_) => Ok(()),
            Err(RaftError::APIError(LinearizableReadError::ForwardToLeader(f))) => {
                Err(ProposeError::NotLeader {
                    leader: f.leader_id,
                    leader_addr: f.leader_node.map(|n| n.addr),
                })
            }
            Err(RaftError::APIError(LinearizableReadError::QuorumNotEnough(_))) => {
                Err(ProposeError::NoQuorum)
            }
            Err(e) => Err(ProposeError::Stopped(e.to_string())),
        }
    }

    /// The state machine (for queries; lock it briefly, applies wait on it).
    pub fn state_machine(&self) -> Arc<Mutex<S>> {
        Arc::clone(&self.sm)
    }

    /// The openraft handle, for what this API does not cover (membership changes, metrics
    /// streams, linearizable reads).
    pub fn raft(&self) -> &Raft<S> {
        &self.raft
    }

    /// Fault injection: drop replication traffic with these peers (tests only).
    pub fn faults(&self) -> &Faults {
        &self.faults
    }

    /// A snapshot of this replica's raft state.
    pub fn status(&self) -> ReplicaStatus {
        let m = self.raft.metrics().borrow_watched().clone();
        let membership = m.membership_config.membership();
        let leader_addr = m
            .current_leader
            .and_then(|l| membership.get_node(&l).map(|n| n.addr.clone()));
        ReplicaStatus {
            id: self.id,
            role: match m.state {
                ServerState::Leader => Role::Leader,
                ServerState::Follower => Role::Follower,
                ServerState::Candidate => Role::Candidate,
                ServerState::Learner => Role::Learner,
                ServerState::Shutdown => Role::Shutdown,
            },
            term: m.current_term,
            leader: m.current_leader,
            leader_addr,
            last_log_index: m.last_log_index,
            applied: m.last_applied.map(|l| l.index),
            snapshot: m.snapshot.map(|l| l.index),
            purged: m.purged.map(|l| l.index),
            voters: membership.voter_ids().collect(),
            millis_since_quorum_ack: m
                .last_quorum_acked
                .map(|at| at.elapsed().as_millis() as u64),
            fatal: m.running_state.err().map(|e| e.to_string()),
        }
    }

    /// Waits until raft stops on a fatal error (a storage failure, a panic in the raft core)
    /// and returns it. A server should then exit so that it is restarted and recovers from
    /// disk; a stopped replica neither votes nor replicates.
    ///
    /// Looks every [`FATAL_CHECK`] rather than at every change of raft's metrics: those change
    /// several times per committed entry, and waking a watcher that often costs the write path
    /// more CPU than a fatal error is worth noticing sooner.
    pub async fn wait_fatal(&self) -> String {
        let mut metrics = self.raft.metrics();
        let mut every = tokio::time::interval(FATAL_CHECK);
        every.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            every.tick().await;
            if let Err(e) = &metrics.borrow_watched().running_state {
                return e.to_string();
            }
            // Taking a pending change here loses nothing: the state is read afresh each tick.
            if let Some(Err(_)) = metrics.changed().now_or_never() {
                return "raft metrics closed".into();
            }
        }
    }

    /// Stops raft and the replication server.
    pub async fn shutdown(self) {
        let _ = self.stop.send(true);
        if let Err(e) = self.raft.shutdown().await {
            tracing::warn!(error = %e, "raft shutdown failed");
        }
        for task in self.tasks {
            let _ = task.await;
        }
        // So that nothing writes into the replica's directory once this returns.
        if let Some(released) = self.store_released
            && tokio::time::timeout(STORE_RELEASE_PATIENCE, released.wait())
                .await
                .is_err()
        {
            tracing::warn!(
                "the state machine store is still in use {} s after raft stopped",
                STORE_RELEASE_PATIENCE.as_secs()
            );
        }
    }
}

/// How long [`Replica::propose`] waits, on a new leader that no quorum has acknowledged yet,
/// for that acknowledgement before it answers `NotLeader` (it normally comes within a round
/// trip).
const LEASE_PATIENCE: Duration = Duration::from_millis(500);

/// How long [`Replica::shutdown`] waits for openraft to drop the state machine store (it
/// finishes the step under way, such as applying entries or writing a snapshot, first).
const STORE_RELEASE_PATIENCE: Duration = Duration::from_secs(30);

/// How often [`Replica::wait_fatal`] looks whether raft stopped.
const FATAL_CHECK: Duration = Duration::from_millis(200);

/// How long a replica that lost its volume waits for the peers that have not answered yet,
/// once one has said it is part of the group.
const VOTE_FLOOR_PATIENCE: Duration = Duration::from_secs(5);

/// Finds the terms a replica without a vote must not vote in, and opens voting above them.
/// Peers are asked their state until every one has answered or, once one has said it is part of
/// a group, [`VOTE_FLOOR_PATIENCE`] has passed. If none is part of a group, the group is new
/// and the replica votes freely. Otherwise the replica lost its volume: every term it may have
/// voted in was started by a candidate, which holds that term or a later one, so it votes only
/// in terms above the highest term a peer reports. (A candidate it voted for that cannot be
/// reached now could hold a higher term; it is waited for up to the patience.)
async fn find_vote_floor(
    mut network: NetworkFactory,
    id: NodeId,
    members: BTreeMap<NodeId, String>,
    floor: VoteFloor,
    mut stop: watch::Receiver<bool>,
) {
    let mut answers: BTreeMap<NodeId, (bool, u64)> = BTreeMap::new();
    let mut part_of_group_since: Option<tokio::time::Instant> = None;
    let mut clients = peer_clients(&mut network, id, &members).await;
    let mut tick = tokio::time::interval(Duration::from_millis(200));
    loop {
        tokio::select! {
            _ = tick.tick() => {}
            _ = stop.wait_for(|s| *s) => return,
        }
        for (&peer, client) in &mut clients {
            if answers.contains_key(&peer) {
                continue;
            }
            if let Ok(answer) = client.probe(Duration::from_millis(500)).await {
                answers.insert(peer, answer);
            }
        }
        if answers.values().any(|(initialized, _)| *initialized) {
            part_of_group_since.get_or_insert_with(tokio::time::Instant::now);
        }
        let everyone = answers.len() + 1 == members.len();
        let waited = part_of_group_since.is_some_and(|t| t.elapsed() >= VOTE_FLOOR_PATIENCE);
        if !(everyone || waited) {
            continue;
        }
        let term = match part_of_group_since {
            None => 0,
            Some(_) => answers.values().map(|(_, term)| *term).max().unwrap_or(0),
        };
        if term > 0 {
            tracing::warn!(
                term,
                "this replica has no vote but its group exists: it lost its volume, and votes \
                 only in terms after {term}"
            );
        }
        floor.set(term);
        return;
    }
}

/// A client of every member but `id`, kept across probes so that each keeps its connection.
async fn peer_clients(
    network: &mut NetworkFactory,
    id: NodeId,
    members: &BTreeMap<NodeId, String>,
) -> BTreeMap<NodeId, PeerClient> {
    let mut clients = BTreeMap::new();
    for (&peer, address) in members.iter().filter(|&(&peer, _)| peer != id) {
        let client = network.new_client(peer, &BasicNode::new(address)).await;
        clients.insert(peer, client);
    }
    clients
}

/// Founds the group from the lowest member, once. Retries until this replica is initialized
/// (by itself or by hearing from a leader), or some peer is already in a group.
async fn bootstrap<S: StateMachine>(
    raft: Raft<S>,
    mut network: NetworkFactory,
    id: NodeId,
    members: BTreeMap<NodeId, String>,
    mut stop: watch::Receiver<bool>,
) {
    let nodes: BTreeMap<NodeId, BasicNode> = members
        .iter()
        .map(|(&id, addr)| (id, BasicNode::new(addr)))
        .collect();
    let mut clients = peer_clients(&mut network, id, &members).await;
    let mut tick = tokio::time::interval(Duration::from_millis(300));
    loop {
        tokio::select! {
            _ = tick.tick() => {}
            _ = stop.wait_for(|s| *s) => return,
        }
        match raft.is_initialized().await {
            Ok(true) => return,
            Ok(false) => {}
            Err(_) => return,
        }
        let mut all_fresh = true;
        for (&peer, client) in &mut clients {
            match client.probe(Duration::from_millis(500)).await {
                Ok((false, _)) => {}
                Ok((true, _)) => {
                    tracing::info!(
                        peer,
                        "a peer is already in a group; waiting to be caught up"
                    );
                    return;
                }
                Err(e) => {
                    tracing::debug!(peer, error = %e, "peer not reachable yet; not bootstrapping");
                    all_fresh = false;
                }
            }
        }
        if !all_fresh {
            continue;
        }
        match raft.initialize(nodes.clone()).await {
            Ok(()) => {
                tracing::info!(members = ?members, "bootstrapped the group");
                return;
            }
            Err(RaftError::APIError(InitializeError::NotAllowed(_))) => return,
            Err(e) => tracing::warn!(error = %e, "bootstrapping failed; retrying"),
        }
    }
}
