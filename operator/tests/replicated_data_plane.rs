//! The operator's data-plane calls against a real replicated shard group: three
//! `riffle-group-replica` processes on 127.0.0.2, .3 and .4 (the operator always dials a pod's
//! gRPC port 4568, so each replica needs its own loopback address). However the group's pods
//! are ordered, the operator's changes reach the leader; the replicas' reports name one leader;
//! a reshard is made by the leader and the write counters come from it.
//!
//! Needs the replica binary and those addresses' ports 4567-4569 free; run with
//! `cargo build -p riffle-server --bin riffle-group-replica &&
//! cargo test -p riffle-operator --test replicated_data_plane -- --include-ignored`
//! (`RIFFLE_GROUP_REPLICA` names the binary if it is not in `target/debug`).

#![allow(clippy::unwrap_used)] // test fixtures fail loudly by design

use std::net::IpAddr;
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use riffle_operator::crd::ReplicaRole;
use riffle_operator::stream::data_plane::{Change, DataPlane, Wanted};
use riffle_operator::stream::leadership::{ReplicaView, ask_replica, group_status};

const ADDRESSES: [&str; 3] = ["127.0.0.2", "127.0.0.3", "127.0.0.4"];

struct Group {
    children: Vec<Child>,
    dir: PathBuf,
}

impl Group {
    fn start() -> Group {
        let binary = std::env::var("RIFFLE_GROUP_REPLICA").map_or_else(
            |_| {
                PathBuf::from(env!("CARGO_MANIFEST_DIR"))
                    .join("../target/debug/riffle-group-replica")
            },
            PathBuf::from,
        );
        let dir = std::env::temp_dir().join(format!("riffle-operator-rdp-{}", std::process::id()));
        let list = |port: u16| {
            ADDRESSES
                .iter()
                .enumerate()
                .map(|(i, ip)| format!("{}={ip}:{port}", i + 1))
                .collect::<Vec<_>>()
                .join(",")
        };
        let (peers, apis) = (list(4569), list(4567));
        let children = ADDRESSES
            .iter()
            .enumerate()
            .map(|(i, ip)| {
                let data = dir.join(format!("replica-{}", i + 1));
                std::fs::create_dir_all(&data).unwrap();
                Command::new(&binary)
                    .args([
                        data.to_str().unwrap(),
                        &format!("{ip}:4567"),
                        &format!("{ip}:4568"),
                        &(i + 1).to_string(),
                        &peers,
                        &apis,
                        &format!("{ip}:4569"),
                    ])
                    .stdout(Stdio::null())
                    .stderr(Stdio::null())
                    .spawn()
                    .unwrap_or_else(|e| panic!("cannot start {}: {e}", binary.display()))
            })
            .collect();
        Group { children, dir }
    }
}

impl Drop for Group {
    fn drop(&mut self) {
        for child in &mut self.children {
            let _ = child.kill();
            let _ = child.wait();
        }
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

fn wanted() -> Wanted {
    Wanted {
        initial_shards: 2,
        shards: Some(2),
        retention_hours: 24,
        mode: "PROVISIONED",
        max_record_size_kib: 1024,
        shards_per_group: 8,
    }
}

#[tokio::test]
#[ignore = "needs riffle-group-replica and 127.0.0.2-4 ports 4567-4569; run with --include-ignored"]
async fn changes_reach_the_leader_whatever_the_order_of_the_pods() {
    let _group = Group::start();
    let pods: Vec<IpAddr> = ADDRESSES.iter().map(|ip| ip.parse().unwrap()).collect();
    let wanted = wanted();
    let deadline = Instant::now() + Duration::from_secs(30);
    // Until a leader is elected every replica declines; then the change reaches it.
    loop {
        let attempt = async {
            let mut data_plane = DataPlane::connect_group(&pods).await?;
            data_plane
                .apply("orders", Change::Create { shards: 2 }, &wanted, &[])
                .await?;
            data_plane.describe("orders").await
        }
        .await;
        match attempt {
            Ok(Some(created)) => {
                assert_eq!(created.open_shards(), 2);
                break;
            }
            outcome => {
                assert!(Instant::now() < deadline, "never created: {outcome:?}");
                tokio::time::sleep(Duration::from_millis(200)).await;
            }
        }
    }
    // The replicas' own reports name one leader, which every follower follows and keeps up with.
    let deadline = Instant::now() + Duration::from_secs(30);
    let group = loop {
        let mut views = Vec::new();
        for (ordinal, &ip) in pods.iter().enumerate() {
            views.push(ReplicaView {
                pod: format!("orders-g0-{ordinal}"),
                ready: true,
                report: ask_replica(ip).await,
            });
        }
        let group = group_status("orders-g0", &views);
        if group.replicas.iter().all(|r| r.caught_up) {
            break group;
        }
        assert!(Instant::now() < deadline, "never settled: {group:?}");
        tokio::time::sleep(Duration::from_millis(200)).await;
    };
    let leaders: Vec<_> = group
        .replicas
        .iter()
        .filter(|r| r.role == ReplicaRole::Leader)
        .map(|r| r.pod.clone())
        .collect();
    assert_eq!(leaders.len(), 1, "{group:?}");
    assert_eq!(group.leader.as_ref(), leaders.first());
    assert!(group.term.is_some_and(|t| t >= 1));
    for start in 0..pods.len() {
        let order: Vec<IpAddr> = (0..pods.len())
            .map(|k| pods[(start + k) % pods.len()])
            .collect();
        let mut data_plane = DataPlane::connect_group(&order).await.unwrap();
        let hours = 48 + u32::try_from(start).unwrap();
        data_plane
            .apply("orders", Change::SetRetention { hours }, &wanted, &[])
            .await
            .unwrap();
        let settings = Change::UpdateSettings {
            mode: None,
            max_record_size_kib: Some(2048 + hours),
        };
        data_plane
            .apply("orders", settings, &wanted, &[])
            .await
            .unwrap();
        // The connection stays with the pod that took the change, so it reads it back.
        let described = data_plane.describe("orders").await.unwrap().unwrap();
        assert_eq!(described.retention_hours, hours, "pods from {start}");
        assert_eq!(described.max_record_size_kib, 2048 + hours);
    }
    // Reshards and the write counters reach the leader too, from whichever pod is first.
    let mut data_plane = DataPlane::connect_group(&pods).await.unwrap();
    let reshard = Change::Reshard {
        from: 2,
        to: 4,
        target: 4,
    };
    data_plane
        .apply("orders", reshard, &wanted, &[])
        .await
        .unwrap();
    let described = data_plane.describe("orders").await.unwrap().unwrap();
    assert_eq!(described.open_shards(), 4);
    let mut data_plane = DataPlane::connect_group(&pods).await.unwrap();
    assert_eq!(data_plane.counters("orders").await.unwrap().records, 0);
}
