//! Three replicas in one process through the `Replica` API: leader redirection, and a follower
//! catching up on more than one replication message worth of large commands.

use std::collections::BTreeMap;
use std::io::{self, Read};
use std::net::TcpListener;
use std::time::{Duration, Instant};

use bytes::Bytes;
use riffle_replication::{
    Applied, MAX_COMMAND_BYTES, ProposeError, Replica, ReplicaConfig, Role, SnapshotView,
    StateMachine,
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

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn followers_redirect_and_a_lagging_follower_catches_up_on_large_commands() {
    let _ = tracing_subscriber::fmt()
        .with_env_filter(tracing_subscriber::EnvFilter::from_default_env())
        .with_test_writer()
        .try_init();
    let dir = tempfile::tempdir().expect("tempdir");
    let ports: Vec<u16> = (0..3).map(|_| free_port()).collect();
    let members: BTreeMap<u64, String> = (1..=3)
        .map(|id| (id, format!("127.0.0.1:{}", ports[id as usize - 1])))
        .collect();
    let mut replicas = Vec::new();
    for id in 1..=3u64 {
        let listen = members[&id].parse().expect("addr");
        let config = ReplicaConfig::new(
            id,
            listen,
            members.clone(),
            dir.path().join(format!("n{id}")),
        );
        replicas.push(
            Replica::start(config, Digests::default())
                .await
                .expect("start"),
        );
    }
    let deadline = Instant::now() + Duration::from_secs(20);
    let leader = loop {
        let leaders: Vec<u64> = replicas
            .iter()
            .filter(|r| r.status().role == Role::Leader)
            .map(|r| r.status().id)
            .collect();
        if let [l] = leaders[..]
            && replicas.iter().all(|r| r.status().leader == Some(l))
        {
            break l;
        }
        assert!(Instant::now() < deadline, "no leader");
        tokio::time::sleep(Duration::from_millis(20)).await;
    };
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
    for r in &replicas {
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
    for r in replicas {
        r.shutdown().await;
    }
}
