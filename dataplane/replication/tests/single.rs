//! The `Replica` API in process: a group of one (replicationFactor 1).

use std::collections::BTreeMap;
use std::io::{self, Read};
use std::net::TcpListener;
use std::time::{Duration, Instant};

use bytes::Bytes;
use riffle_replication::{Applied, Replica, ReplicaConfig, Role, SnapshotView, StateMachine};

/// Remembers commands in memory; answers each with its length.
#[derive(Default)]
struct Lengths {
    applied: Option<Applied>,
    commands: Vec<Vec<u8>>,
}

impl StateMachine for Lengths {
    fn applied(&self) -> Option<Applied> {
        self.applied.clone()
    }
    fn apply(&mut self, at: &Applied, command: &[u8]) -> io::Result<Vec<u8>> {
        self.commands.push(command.to_vec());
        self.applied = Some(at.clone());
        Ok((command.len() as u64).to_le_bytes().to_vec())
    }
    fn advance(&mut self, at: &Applied) -> io::Result<()> {
        self.applied = Some(at.clone());
        Ok(())
    }
    fn snapshot(&mut self) -> io::Result<SnapshotView> {
        Err(io::Error::other("not used"))
    }
    fn install(&mut self, _: &Applied, _: &mut dyn Read) -> io::Result<()> {
        Err(io::Error::other("not used"))
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_single_replica_group_commits_and_survives_a_restart() {
    let dir = tempfile::tempdir().expect("tempdir");
    let port = TcpListener::bind("127.0.0.1:0")
        .expect("bind")
        .local_addr()
        .expect("addr")
        .port();
    let listen = format!("127.0.0.1:{port}").parse().expect("addr");
    let members = BTreeMap::from([(7, format!("127.0.0.1:{port}"))]);
    let config = ReplicaConfig::new(7, listen, members, dir.path().to_path_buf());

    let replica = Replica::start(config.clone(), Lengths::default())
        .await
        .expect("start");
    let deadline = Instant::now() + Duration::from_secs(10);
    while replica.status().role != Role::Leader {
        assert!(
            Instant::now() < deadline,
            "no leader: {:?}",
            replica.status()
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let mut last = 0;
    for i in 0..20u64 {
        let proposed = replica
            .propose(Bytes::from(vec![b'x'; i as usize]))
            .await
            .expect("propose");
        assert!(proposed.index > last, "indexes increase");
        last = proposed.index;
        assert_eq!(proposed.response, i.to_le_bytes().to_vec());
    }
    // Metrics are published just after the response; wait for them to show the last write.
    let deadline = Instant::now() + Duration::from_secs(10);
    while replica.status().applied != Some(last) {
        assert!(Instant::now() < deadline, "status: {:?}", replica.status());
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    let status = replica.status();
    assert_eq!(status.voters.into_iter().collect::<Vec<_>>(), vec![7]);
    assert_eq!(status.leader, Some(7));
    replica.shutdown().await;

    // Restarted with a state machine that persisted nothing: the log replays all 20 commands
    // once the leader commits again.
    let replica = Replica::start(config, Lengths::default())
        .await
        .expect("restart");
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let applied = replica.state_machine().lock().expect("lock").commands.len();
        if applied == 20 && replica.status().role == Role::Leader {
            break;
        }
        assert!(Instant::now() < deadline, "replayed {applied} of 20");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let next = replica
        .propose(Bytes::from_static(b"after"))
        .await
        .expect("propose");
    assert!(next.index > last);
    replica.shutdown().await;
}
