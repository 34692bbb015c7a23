//! A 3-process replica group on loopback, a multi-writer load and the consistency checker.

#![allow(dead_code)]

pub mod netns;

use std::collections::{BTreeMap, HashMap, HashSet};
use std::fs::{self, OpenOptions};
use std::net::TcpListener;
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use tonic::transport::{Channel, Endpoint};

#[allow(missing_docs, clippy::all)]
pub mod proto {
    tonic::include_proto!("riffle.replication.testing.v1");
}

use proto::test_replica_client::TestReplicaClient;
use proto::{AppendRequest, PartitionRequest, ReadReply, ReadRequest, StatusReply, StatusRequest};

/// Tests run one at a time: each runs three replicas on a 2-core machine.
pub static SERIAL: tokio::sync::Mutex<()> = tokio::sync::Mutex::const_new(());

/// How long a client call may take before it counts as failed.
const CALL_TIMEOUT: Duration = Duration::from_secs(1);

/// Tuning passed to every replica.
#[derive(Debug, Clone, Copy)]
pub struct Opts {
    /// Entries between snapshots.
    pub snapshot_every: u64,
    /// Entries of log kept behind a snapshot.
    pub keep_log: u64,
}

impl Default for Opts {
    fn default() -> Self {
        Opts {
            snapshot_every: 20_000,
            keep_log: 5_000,
        }
    }
}

/// One replica process.
pub struct Node {
    /// Its id.
    pub id: u64,
    /// The address it listens on.
    host: String,
    /// Its network namespace, if the group runs in namespaces.
    netns: Option<String>,
    raft_port: u16,
    client_port: u16,
    data_dir: PathBuf,
    log: PathBuf,
    child: Option<Child>,
}

/// Three replica processes.
pub struct Cluster {
    /// The replicas, by id 1..=3.
    pub nodes: Vec<Node>,
    opts: Opts,
    /// The namespaces, if any; dropped after the processes (field order).
    pub net: Option<netns::Net>,
    _dir: tempfile::TempDir,
}

/// A port that is free now, below the kernel's ephemeral range (32768 and up by default) so
/// that no outgoing connection takes it before the replica binds it, and in 28000..30000,
/// clear of the fixed ports other test suites on the machine use (etcd on 22379/22380,
/// Kubernetes NodePorts from 30000).
fn free_port() -> u16 {
    static NEXT: std::sync::atomic::AtomicU32 = std::sync::atomic::AtomicU32::new(0);
    let base = 28_000 + (std::process::id() % 50) * 10;
    loop {
        let n = NEXT.fetch_add(1, Ordering::Relaxed);
        let port = (base + n % 1_500) as u16;
        if TcpListener::bind(("127.0.0.1", port)).is_ok() {
            return port;
        }
    }
}

impl Cluster {
    /// Starts `n` replicas on loopback.
    pub fn start(n: u64, opts: Opts) -> Cluster {
        Cluster::start_with(n, opts, None)
    }

    /// Starts `n` replicas, each in its own network namespace (see [`netns`]).
    pub fn start_in_namespaces(n: u64, opts: Opts) -> Result<Cluster, String> {
        let net = netns::Net::create(n)?;
        Ok(Cluster::start_with(n, opts, Some(net)))
    }

    fn start_with(n: u64, opts: Opts, net: Option<netns::Net>) -> Cluster {
        let dir = tempfile::tempdir().expect("tempdir");
        let nodes = (1..=n)
            .map(|id| Node {
                id,
                host: net
                    .as_ref()
                    .map_or_else(|| "127.0.0.1".to_string(), |net| net.addr(id)),
                netns: net.as_ref().map(|net| net.ns(id)),
                raft_port: if net.is_some() { 7100 } else { free_port() },
                client_port: if net.is_some() { 7200 } else { free_port() },
                data_dir: dir.path().join(format!("node{id}")),
                log: dir.path().join(format!("node{id}.log")),
                child: None,
            })
            .collect();
        let mut cluster = Cluster {
            nodes,
            opts,
            net,
            _dir: dir,
        };
        for id in 1..=n {
            cluster.spawn(id);
        }
        cluster
    }

    fn node(&self, id: u64) -> &Node {
        &self.nodes[(id - 1) as usize]
    }

    /// All ids.
    pub fn ids(&self) -> Vec<u64> {
        self.nodes.iter().map(|n| n.id).collect()
    }

    /// Starts (or restarts) replica `id` on its data directory.
    pub fn spawn(&mut self, id: u64) {
        let members: Vec<String> = self
            .nodes
            .iter()
            .map(|n| format!("--member={}={}:{}", n.id, n.host, n.raft_port))
            .collect();
        let opts = self.opts;
        let node = &mut self.nodes[(id - 1) as usize];
        assert!(node.child.is_none(), "node {id} is running");
        let log = OpenOptions::new()
            .create(true)
            .append(true)
            .open(&node.log)
            .expect("log file");
        let binary = env!("CARGO_BIN_EXE_riffle-replica");
        let mut command = match &node.netns {
            // `ip netns exec` execs the binary, so the child's pid is the replica's.
            Some(ns) => {
                let mut c = Command::new("ip");
                c.args(["netns", "exec", ns, binary]);
                c
            }
            None => Command::new(binary),
        };
        let child = command
            .arg(format!("--id={id}"))
            .args(members)
            .arg(format!("--raft-listen={}:{}", node.host, node.raft_port))
            .arg(format!(
                "--client-listen={}:{}",
                node.host, node.client_port
            ))
            .arg(format!("--data-dir={}", node.data_dir.display()))
            .arg(format!("--snapshot-every={}", opts.snapshot_every))
            .arg(format!("--keep-log={}", opts.keep_log))
            .stdout(Stdio::from(log.try_clone().expect("clone log")))
            .stderr(Stdio::from(log))
            .spawn()
            .expect("spawn riffle-replica");
        node.child = Some(child);
    }

    /// `kill -9` of replica `id`; returns once the process is gone.
    pub fn kill(&mut self, id: u64) {
        let node = &mut self.nodes[(id - 1) as usize];
        if let Some(mut child) = node.child.take() {
            child.kill().expect("kill");
            child.wait().expect("wait");
        }
    }

    /// Deletes replica `id`'s data directory (a lost volume). It must be stopped.
    pub fn wipe(&mut self, id: u64) {
        let node = &self.nodes[(id - 1) as usize];
        assert!(node.child.is_none());
        fs::remove_dir_all(&node.data_dir).expect("wipe");
    }

    /// The client address of replica `id`.
    pub fn client_addr(&self, id: u64) -> String {
        let node = self.node(id);
        format!("http://{}:{}", node.host, node.client_port)
    }

    /// A lazily connected client of replica `id`.
    pub fn client(&self, id: u64) -> TestReplicaClient<Channel> {
        let channel = Endpoint::from_shared(self.client_addr(id))
            .expect("endpoint")
            .connect_timeout(Duration::from_millis(500))
            .connect_lazy();
        TestReplicaClient::new(channel).max_decoding_message_size(256 << 20)
    }

    /// Replica `id`'s status, `None` if it does not answer.
    pub async fn status(&self, id: u64) -> Option<StatusReply> {
        let mut req = tonic::Request::new(StatusRequest {});
        req.set_timeout(Duration::from_secs(1));
        self.client(id)
            .status(req)
            .await
            .ok()
            .map(|r| r.into_inner())
    }

    /// Everything applied on replica `id`.
    pub async fn read(&self, id: u64) -> Option<ReadReply> {
        let mut req = tonic::Request::new(ReadRequest {});
        req.set_timeout(Duration::from_secs(10));
        self.client(id).read(req).await.ok().map(|r| r.into_inner())
    }

    /// Blocks replication traffic between replica `id` and `peers` (at `id`'s end).
    pub async fn block(&self, id: u64, peers: &[u64]) {
        self.client(id)
            .partition(PartitionRequest {
                blocked: peers.to_vec(),
            })
            .await
            .expect("partition");
    }

    /// Waits until one of `among` is leader of a term that all of `among` have reached and
    /// agree on; returns it.
    pub async fn wait_leader(&self, among: &[u64], within: Duration) -> u64 {
        let deadline = Instant::now() + within;
        loop {
            let mut statuses = Vec::new();
            for &id in among {
                if let Some(s) = self.status(id).await {
                    statuses.push(s);
                }
            }
            if statuses.len() == among.len() {
                let leaders: HashSet<Option<u64>> = statuses.iter().map(|s| s.leader).collect();
                if let Some(leader) = statuses.iter().find(|s| s.role == "leader")
                    && leaders.len() == 1
                    && among.contains(&leader.id)
                {
                    return leader.id;
                }
            }
            assert!(
                Instant::now() < deadline,
                "no agreed leader among {among:?} within {within:?}: {statuses:?}\n{}",
                self.logs()
            );
            tokio::task::yield_now().await;
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    /// Waits until replica `id` follows `leader` and its log reaches where the leader's log was
    /// when the wait began.
    pub async fn wait_caught_up(&self, id: u64, leader: u64, within: Duration) {
        let deadline = Instant::now() + within;
        let target = loop {
            if let Some(s) = self.status(leader).await {
                break s.last_log_index;
            }
            assert!(Instant::now() < deadline, "leader {leader} does not answer");
            tokio::time::sleep(Duration::from_millis(50)).await;
        };
        loop {
            if let Some(s) = self.status(id).await
                && s.leader == Some(leader)
                && s.last_log_index >= target
            {
                return;
            }
            assert!(
                Instant::now() < deadline,
                "replica {id} did not catch up with {leader} within {within:?}\n{}",
                self.logs()
            );
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    /// Waits until every running replica has applied the same records, and returns them.
    pub async fn wait_converged(&self, within: Duration) -> Vec<(u64, ReadReply)> {
        let deadline = Instant::now() + within;
        loop {
            let mut reads = Vec::new();
            for id in self.ids() {
                if let Some(r) = self.read(id).await {
                    reads.push((id, r));
                }
            }
            if reads.len() == self.nodes.len()
                && reads
                    .windows(2)
                    .all(|w| w[0].1.records == w[1].1.records && w[0].1.applied == w[1].1.applied)
            {
                return reads;
            }
            let summary: Vec<_> = reads
                .iter()
                .map(|(id, r)| (*id, r.records.len(), r.applied))
                .collect();
            assert!(
                Instant::now() < deadline,
                "replicas did not converge within {within:?}: {summary:?}\n{}",
                self.logs()
            );
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }

    /// Everything replica `id` logged so far.
    pub fn log_of(&self, id: u64) -> String {
        fs::read_to_string(&self.node(id).log).unwrap_or_default()
    }

    /// The tail of every replica's log, for failure messages.
    pub fn logs(&self) -> String {
        let mut out = String::new();
        for node in &self.nodes {
            let text = fs::read_to_string(&node.log).unwrap_or_default();
            let lines: Vec<&str> = text.lines().collect();
            let tail = &lines[lines.len().saturating_sub(25)..];
            out.push_str(&format!("--- node {} ---\n{}\n", node.id, tail.join("\n")));
        }
        out
    }
}

impl Drop for Cluster {
    fn drop(&mut self) {
        if std::thread::panicking() || std::env::var_os("RIFFLE_KEEP_LOGS").is_some() {
            // Keep the replicas' logs of a failed test (or when asked to).
            let keep =
                std::env::temp_dir().join(format!("riffle-replication-{}", std::process::id()));
            if fs::create_dir_all(&keep).is_ok() {
                for node in &self.nodes {
                    let _ = fs::copy(&node.log, keep.join(format!("node{}.log", node.id)));
                }
                eprintln!("replica logs kept in {}", keep.display());
            }
        }
        for node in &mut self.nodes {
            if let Some(mut child) = node.child.take() {
                let _ = child.kill();
                let _ = child.wait();
            }
        }
    }
}

/// An acknowledged append.
#[derive(Debug, Clone)]
pub struct Ack {
    /// The writer that made it.
    pub writer: usize,
    /// The payload.
    pub payload: Vec<u8>,
    /// The index the group returned.
    pub index: u64,
    /// The replica that acknowledged it.
    pub by: u64,
    /// When the acknowledgement arrived.
    pub at: Instant,
}

/// Writers appending unique payloads to whichever replica leads, until stopped.
pub struct Load {
    stop: Arc<AtomicBool>,
    acks: Arc<Mutex<Vec<Ack>>>,
    attempts: Arc<AtomicU64>,
    tasks: Vec<tokio::task::JoinHandle<()>>,
}

/// The payload of attempt `seq` of writer `w`: unique, 100 bytes, self-describing.
pub fn payload(w: usize, seq: u64) -> Vec<u8> {
    let mut p = format!("w{w}-{seq}-").into_bytes();
    let mut x = (w as u64) << 32 | seq;
    while p.len() < 100 {
        x = x
            .wrapping_mul(6364136223846793005)
            .wrapping_add(1442695040888963407);
        p.push(b'a' + (x >> 59) as u8);
    }
    p
}

impl Load {
    /// Starts `writers` writers against the replicas in `addrs` (id, client address).
    pub fn start(cluster: &Cluster, writers: usize) -> Load {
        let stop = Arc::new(AtomicBool::new(false));
        let acks = Arc::new(Mutex::new(Vec::new()));
        let attempts = Arc::new(AtomicU64::new(0));
        let hint = Arc::new(AtomicU64::new(1));
        let clients: BTreeMap<u64, TestReplicaClient<Channel>> = cluster
            .ids()
            .into_iter()
            .map(|id| (id, cluster.client(id)))
            .collect();
        let tasks = (0..writers)
            .map(|w| {
                let stop = Arc::clone(&stop);
                let acks = Arc::clone(&acks);
                let attempts = Arc::clone(&attempts);
                let hint = Arc::clone(&hint);
                let clients = clients.clone();
                tokio::spawn(async move {
                    let ids: Vec<u64> = clients.keys().copied().collect();
                    let mut seq = 0;
                    while !stop.load(Ordering::Relaxed) {
                        seq += 1;
                        attempts.fetch_add(1, Ordering::Relaxed);
                        let target = hint.load(Ordering::Relaxed);
                        let mut client = clients[&target].clone();
                        let body = payload(w, seq);
                        let mut req = tonic::Request::new(AppendRequest {
                            payload: body.clone().into(),
                        });
                        req.set_timeout(CALL_TIMEOUT);
                        match client.append(req).await {
                            Ok(r) if r.get_ref().ok => {
                                let index = r.get_ref().index;
                                acks.lock().expect("acks").push(Ack {
                                    writer: w,
                                    payload: body,
                                    index,
                                    by: target,
                                    at: Instant::now(),
                                });
                                continue;
                            }
                            Ok(r) => {
                                let next = r.get_ref().leader.parse().ok().filter(|l| *l != target);
                                let next = next.unwrap_or_else(|| rotate(&ids, target));
                                let _ = hint.compare_exchange(
                                    target,
                                    next,
                                    Ordering::Relaxed,
                                    Ordering::Relaxed,
                                );
                            }
                            Err(_) => {
                                let _ = hint.compare_exchange(
                                    target,
                                    rotate(&ids, target),
                                    Ordering::Relaxed,
                                    Ordering::Relaxed,
                                );
                            }
                        }
                        // Pace retries while there is no leader, so the load does not starve
                        // the election on a small machine.
                        tokio::time::sleep(Duration::from_millis(20)).await;
                    }
                })
            })
            .collect();
        Load {
            stop,
            acks,
            attempts,
            tasks,
        }
    }

    /// Acknowledgements so far.
    pub fn acks(&self) -> Vec<Ack> {
        self.acks.lock().expect("acks").clone()
    }

    /// Waits until at least `n` acknowledgements arrived after `since`; returns the first of
    /// them.
    pub async fn wait_acks_after(&self, since: Instant, n: usize, within: Duration) -> Ack {
        self.wait_acks_from(since, n, within, |_| true).await
    }

    /// Like [`Load::wait_acks_after`], counting only acknowledgements by replicas for which
    /// `by` holds.
    pub async fn wait_acks_from(
        &self,
        since: Instant,
        n: usize,
        within: Duration,
        by: impl Fn(u64) -> bool,
    ) -> Ack {
        let deadline = Instant::now() + within;
        loop {
            let acks = self.acks();
            let after: Vec<&Ack> = acks.iter().filter(|a| a.at > since && by(a.by)).collect();
            if after.len() >= n {
                let first = after.iter().min_by_key(|a| a.at).expect("non-empty");
                return (*first).clone();
            }
            assert!(
                Instant::now() < deadline,
                "only {} of {n} acknowledgements within {within:?} ({} attempts)",
                after.len(),
                self.attempts.load(Ordering::Relaxed)
            );
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }

    /// Stops the writers and returns every acknowledgement.
    pub async fn stop(mut self) -> Vec<Ack> {
        self.stop.store(true, Ordering::Relaxed);
        for t in std::mem::take(&mut self.tasks) {
            t.await.expect("writer task");
        }
        self.acks()
    }
}

fn rotate(ids: &[u64], current: u64) -> u64 {
    let at = ids.iter().position(|&i| i == current).unwrap_or(0);
    ids[(at + 1) % ids.len()]
}

/// What the checker verified.
#[derive(Debug)]
pub struct Verified {
    /// Acknowledged appends found exactly once, intact, at their index, on every replica.
    pub acked: usize,
    /// Records on each replica (acknowledged or not).
    pub records: usize,
}

/// Checks converged reads against the acknowledgements:
/// - every replica holds the same records, indexes strictly increasing, no payload twice;
/// - every acknowledged payload is there exactly once, byte for byte, at its acknowledged index;
/// - each writer's acknowledged indexes increase (a later write never lands before an earlier
///   acknowledged one).
pub fn check(acks: &[Ack], reads: &[(u64, ReadReply)]) -> Verified {
    assert!(!reads.is_empty());
    let mut records = 0;
    for (id, read) in reads {
        let mut last = None;
        let mut seen: HashMap<&[u8], u64> = HashMap::new();
        for r in &read.records {
            assert!(
                last.is_none_or(|l| r.index > l),
                "replica {id}: index {} after {last:?}",
                r.index
            );
            last = Some(r.index);
            assert!(
                seen.insert(&r.payload[..], r.index).is_none(),
                "replica {id}: payload {:?} applied twice",
                String::from_utf8_lossy(&r.payload)
            );
        }
        for a in acks {
            match seen.get(&a.payload[..]) {
                Some(&index) => assert_eq!(
                    index, a.index,
                    "replica {id}: acknowledged payload at another index"
                ),
                None => panic!(
                    "replica {id}: acknowledged payload {:?} (index {}) is missing",
                    String::from_utf8_lossy(&a.payload[..12]),
                    a.index
                ),
            }
        }
        records = read.records.len();
    }
    let mut by_writer: HashMap<usize, Vec<&Ack>> = HashMap::new();
    for a in acks {
        by_writer.entry(a.writer).or_default().push(a);
    }
    for (w, mut list) in by_writer {
        list.sort_by_key(|a| a.at);
        for pair in list.windows(2) {
            assert!(
                pair[1].index > pair[0].index,
                "writer {w}: index went backwards ({} then {})",
                pair[0].index,
                pair[1].index
            );
        }
    }
    Verified {
        acked: acks.len(),
        records,
    }
}
