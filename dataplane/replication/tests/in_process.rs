//! Three replicas in one process through the `Replica` API: leader redirection, a follower
//! catching up on more than one replication message worth of large commands, and stopped
//! replicas letting go of their state machines.

use std::collections::BTreeMap;
use std::io::{self, Read};
use std::net::TcpListener;
use std::path::Path;
use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::Bytes;
use riffle_replication::{
    Applied, MAX_COMMAND_BYTES, ProposeError, Replica, ReplicaConfig, Role, SnapshotView,
    StartError, StateMachine,
};

/// Keeps (index, length, CRC32C) of every command: enough to compare replicas without holding
/// the payloads.
#[derive(Default)]
struct Digests {
    applied: Option<Applied>,
    seen: Vec<(u64, usize, u32)>,
}

impl StateMachine for Digests {
    fn applied(&self) -> Option<Applied> {
        self.applied.clone()
    }
    fn apply(&mut self, at: &Applied, command: &[u8]) -> io::Result<Vec<u8>> {
        let index = at.index().unwrap_or(0);
        self.seen
            .push((index, command.len(), crc32c::crc32c(command)));
        self.applied = Some(at.clone());
        Ok(Vec::new())
    }
    fn advance(&mut self, at: &Applied) -> io::Result<()> {
        self.applied = Some(at.clone());
        Ok(())
    }
    fn snapshot(&mut self) -> io::Result<SnapshotView> {
        Err(io::Error::other("snapshots are not used here"))
    }
    fn install(&mut self, _: &Applied, _: &mut dyn Read) -> io::Result<()> {
        Err(io::Error::other("snapshots are not used here"))
    }
}

fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .expect("bind")
        .local_addr()
        .expect("addr")
        .port()
}

fn seen(replica: &Replica<Digests>) -> Vec<(u64, usize, u32)> {
    replica.state_machine().lock().expect("lock").seen.clone()
}

/// Waits until every replica has applied exactly `expected`, each within 30 s.
async fn wait_all_seen(replicas: &[Replica<Digests>], expected: &[(u64, usize, u32)]) {
    for r in replicas {
        let deadline = Instant::now() + Duration::from_secs(30);
        while seen(r) != expected {
            assert!(
                Instant::now() < deadline,
                "replica {} differs",
                r.status().id
            );
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }
}

/// Starts three replicas in this process.
async fn start_group(dir: &Path) -> (Vec<Replica<Digests>>, BTreeMap<u64, String>) {
    let ports: Vec<u16> = (0..3).map(|_| free_port()).collect();
    let members: BTreeMap<u64, String> = (1..=3)
        .map(|id| (id, format!("127.0.0.1:{}", ports[id as usize - 1])))
        .collect();
    let mut replicas = Vec::new();
    for id in 1..=3u64 {
        replicas.push(start_replica(id, &members, dir).await.expect("start"));
    }
    (replicas, members)
}

/// Starts replica `id` of `members`, with its data in `dir/n{id}`.
async fn start_replica(
    id: u64,
    members: &BTreeMap<u64, String>,
    dir: &Path,
) -> Result<Replica<Digests>, StartError> {
    let listen = members[&id].parse().expect("addr");
    let config = ReplicaConfig::new(id, listen, members.clone(), dir.join(format!("n{id}")));
    Replica::start(config, Digests::default()).await
}

/// Waits until all three agree on one leader.
async fn wait_leader(replicas: &[Replica<Digests>]) -> u64 {
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        let leaders: Vec<u64> = replicas
            .iter()
            .filter(|r| r.status().role == Role::Leader)
            .map(|r| r.status().id)
            .collect();
        if let [l] = leaders[..]
            && replicas.iter().all(|r| r.status().leader == Some(l))
        {
            return l;
        }
        assert!(Instant::now() < deadline, "no leader");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn followers_redirect_and_a_lagging_follower_catches_up_on_large_commands() {
    let _ = tracing_subscriber::fmt()
        .with_env_filter(tracing_subscriber::EnvFilter::from_default_env())
        .with_test_writer()
        .try_init();
    let dir = tempfile::tempdir().expect("tempdir");
    let (replicas, members) = start_group(dir.path()).await;
    let leader = wait_leader(&replicas).await;
    let at = |id: u64| &replicas[id as usize - 1];
    let follower = if leader == 3 { 2 } else { 3 };

    // A follower refuses and names the leader.
    assert_eq!(
        at(follower).propose(Bytes::from_static(b"x")).await,
        Err(ProposeError::NotLeader {
            leader: Some(leader),
            leader_addr: Some(members[&leader].clone()),
        })
    );
    at(leader)
        .read_barrier()
        .await
        .expect("leader read barrier");
    assert!(matches!(
        at(follower).read_barrier().await,
        Err(ProposeError::NotLeader { leader: Some(l), .. }) if l == leader
    ));
    assert_eq!(
        at(leader)
            .propose(Bytes::from(vec![0u8; MAX_COMMAND_BYTES + 1]))
            .await,
        Err(ProposeError::TooLarge(MAX_COMMAND_BYTES + 1))
    );

    // Cut the follower off, commit 8 x 5 MiB on the other two, reconnect: the backlog is
    // larger than a replication batch, so it must be sent in several.
    at(follower).faults().block([1, 2, 3]);
    for r in &replicas {
        if r.status().id != follower {
            r.faults().block([follower]);
        }
    }
    let mut last = 0;
    for i in 0..8u8 {
        let command = Bytes::from(vec![i + 1; 5 << 20]);
        last = tokio::time::timeout(Duration::from_secs(30), at(leader).propose(command))
            .await
            .expect("commit within 30 s")
            .expect("propose")
            .index;
        println!("committed large command {i} at {last}");
    }
    assert!(at(follower).status().applied < Some(last));
    for r in &replicas {
        r.faults().block([]);
    }
    let deadline = Instant::now() + Duration::from_secs(60);
    while at(follower).status().applied < Some(last) {
        assert!(
            Instant::now() < deadline,
            "follower stuck at {:?} of {last}",
            at(follower).status()
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let expected = seen(at(leader));
    assert_eq!(expected.iter().filter(|s| s.1 == 5 << 20).count(), 8);
    wait_all_seen(&replicas, &expected).await;
    for r in replicas {
        r.shutdown().await;
    }
}

/// Commit throughput and latency with many concurrent proposers (run with `--ignored`; the
/// numbers are for the build profile it runs in).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "measurement; run explicitly"]
async fn throughput_with_concurrent_proposers() {
    let dir = tempfile::tempdir().expect("tempdir");
    let (replicas, _) = start_group(dir.path()).await;
    let leader = wait_leader(&replicas).await;
    let replicas = Arc::new(replicas);
    for proposers in [1usize, 8, 64] {
        let end = Instant::now() + Duration::from_secs(3);
        let tasks: Vec<_> = (0..proposers)
            .map(|p| {
                let replicas = Arc::clone(&replicas);
                tokio::spawn(async move {
                    let mut latencies = Vec::new();
                    let mut n = 0u64;
                    while Instant::now() < end {
                        let command = Bytes::from(format!("{p}-{n}-{}", "x".repeat(200)));
                        let start = Instant::now();
                        replicas[leader as usize - 1]
                            .propose(command)
                            .await
                            .expect("propose");
                        latencies.push(start.elapsed());
                        n += 1;
                    }
                    latencies
                })
            })
            .collect();
        let mut latencies = Vec::new();
        for t in tasks {
            latencies.extend(t.await.expect("proposer"));
        }
        latencies.sort();
        assert!(!latencies.is_empty());
        let pct = |q: f64| latencies[((latencies.len() - 1) as f64 * q) as usize];
        println!(
            "{proposers:>3} proposers: {:>6.0} commits/s, p50 {:?}, p99 {:?}",
            latencies.len() as f64 / 3.0,
            pct(0.5),
            pct(0.99)
        );
    }
    let expected = seen(&replicas[leader as usize - 1]);
    wait_all_seen(&replicas, &expected).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_isolated_leader_passes_no_read_barrier_and_commits_nothing() {
    let _ = tracing_subscriber::fmt()
        .with_env_filter(tracing_subscriber::EnvFilter::from_default_env())
        .with_test_writer()
        .try_init();
    let dir = tempfile::tempdir().expect("tempdir");
    let (replicas, _) = start_group(dir.path()).await;
    let leader = wait_leader(&replicas).await;
    let at = |id: u64| &replicas[id as usize - 1];
    at(leader)
        .propose(Bytes::from_static(b"before"))
        .await
        .expect("propose");
    let others: Vec<u64> = (1..=3).filter(|&i| i != leader).collect();
    at(leader).faults().block(others.clone());
    for &id in &others {
        at(id).faults().block([leader]);
    }
    // Still leader in its own eyes for a while, but it cannot confirm it or commit.
    let barrier = tokio::time::timeout(Duration::from_secs(3), at(leader).read_barrier()).await;
    assert!(
        !matches!(barrier, Ok(Ok(()))),
        "an isolated leader passed a read barrier: {barrier:?}"
    );
    let write = tokio::time::timeout(
        Duration::from_secs(3),
        at(leader).propose(Bytes::from_static(b"isolated")),
    )
    .await;
    assert!(
        !matches!(write, Ok(Ok(_))),
        "an isolated leader committed: {write:?}"
    );
    for r in replicas {
        r.shutdown().await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_replica_that_lost_its_volume_does_not_vote_in_terms_it_may_have_voted_in() {
    use openraft::network::{RPCOption, RaftNetworkFactory, RaftNetworkV2};
    use openraft::raft::VoteRequest;
    use openraft::{BasicNode, Vote};
    use riffle_replication::network::Faults;
    use riffle_replication::network::client::NetworkFactory;

    let dir = tempfile::tempdir().expect("tempdir");
    let (mut replicas, members) = start_group(dir.path()).await;
    let leader = wait_leader(&replicas).await;
    let term = replicas[0].status().term;
    // A follower loses its volume and comes back empty.
    let lost = (1..=3u64).find(|&id| id != leader).expect("a follower");
    let index = replicas
        .iter()
        .position(|r| r.status().id == lost)
        .expect("follower");
    replicas.remove(index).shutdown().await;
    std::fs::remove_dir_all(dir.path().join(format!("n{lost}"))).expect("wipe");
    let back = start_replica(lost, &members, dir.path())
        .await
        .expect("restart");

    // A candidate asks it for a vote in the current term, in which it may have voted for
    // another before: refused, until it has heard the others and forever for that term.
    let candidate = 99;
    let mut network = NetworkFactory::new(candidate, Faults::default());
    let mut client = network
        .new_client(lost, &BasicNode::new(&members[&lost]))
        .await;
    let option = RPCOption::new(Duration::from_secs(1));
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let refused = client
            .vote(
                VoteRequest::new(Vote::new(term, candidate), None),
                option.clone(),
            )
            .await;
        assert!(refused.is_err(), "voted in term {term}: {refused:?}");
        // A later term is open once it has asked the others.
        let later = client
            .vote(
                VoteRequest::new(Vote::new(term + 10, candidate), None),
                option.clone(),
            )
            .await;
        if later.is_ok() {
            break;
        }
        assert!(Instant::now() < deadline, "never voted again: {later:?}");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    back.shutdown().await;
    for replica in replicas {
        replica.shutdown().await;
    }
}

/// Once `shutdown` returns, nothing of the replica holds its state machine any more (openraft
/// drops its store in a task of its own), so its directory can be removed or reopened.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_stopped_replica_holds_its_state_machine_no_more() {
    let dir = tempfile::tempdir().expect("tempdir");
    let (replicas, _) = start_group(dir.path()).await;
    let leader = wait_leader(&replicas).await;
    let leading = replicas
        .iter()
        .find(|r| r.status().id == leader)
        .expect("leader");
    for n in 0..20u8 {
        leading
            .propose(Bytes::from(vec![n; 100]))
            .await
            .expect("propose");
    }
    for replica in replicas {
        let state_machine = replica.state_machine();
        replica.shutdown().await;
        assert_eq!(
            Arc::strong_count(&state_machine),
            1,
            "still held after shutdown"
        );
    }
}
