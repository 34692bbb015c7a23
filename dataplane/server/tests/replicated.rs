//! Replicated shard groups: deterministic commands, the catalog state machine (replay after a
//! restart, snapshot and install) and a group of one driven through `Replica::propose`.

#![allow(clippy::unwrap_used)]

use std::collections::{BTreeMap, HashMap};
use std::path::Path;
use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::Bytes;
use riffle_log::{LogConfig, SyncMode};
use riffle_replication::{Replica, ReplicaConfig, Role, StateMachine};
use riffle_server::replicated::{Applier, CatalogMachine, Command, Record, Response, ShardBatch};
use riffle_server::streams::model::{ReshardOp, StreamMode};
use riffle_server::streams::{
    Catalog, ErrorKind, ReshardBy, SettingsChange, StreamChange, StreamsConfig,
};

mod common;
use common::free_port;

fn catalog(dir: &Path) -> Arc<Catalog> {
    let mut config = StreamsConfig::new(dir.to_path_buf(), [7; 32]);
    config.log = LogConfig {
        segment_bytes: 4096,
        sync: SyncMode::None,
    };
    Catalog::open(config).unwrap()
}

fn create(name: &str, shards: u32, created_ms: i64) -> Command {
    Command::CreateStream {
        name: name.into(),
        shard_count: Some(shards),
        mode: StreamMode::Provisioned,
        tags: BTreeMap::from([("team".into(), "data".into())]),
        max_record_size_kib: None,
        created_ms,
        placement: None,
    }
}

fn put(stream: &str, epoch: u64, arrival_ms: i64, round: u64, shards: &[u32]) -> Command {
    Command::PutRecords {
        stream: stream.into(),
        epoch,
        arrival_ms,
        batches: shards
            .iter()
            .map(|&shard| ShardBatch {
                shard,
                records: (0..1 + (round + u64::from(shard)) % 4)
                    .map(|i| Record {
                        partition_key: format!("pk-{round}-{i}"),
                        data: Bytes::from(format!("record {round}/{shard}/{i} ").repeat(20)),
                    })
                    .collect(),
            })
            .collect(),
        encrypted: None,
    }
}

fn change(epoch: u64, at_ms: i64, change: StreamChange) -> Command {
    Command::ChangeStream {
        name: "alpha".into(),
        epoch,
        change,
        at_ms,
    }
}

fn reshard(op: ReshardOp, after: usize) -> StreamChange {
    StreamChange::Reshard {
        op,
        by: ReshardBy::Client,
        after: Some(after),
    }
}

/// A varied command sequence: creates, puts with stamps going backwards, a delete of a stale
/// incarnation (refused), a name reused after a delete.
fn commands() -> Vec<Command> {
    let mut out = vec![
        create("alpha", 3, 1_700_000_000_123),
        create("beta", 2, 1_700_000_001_000),
    ];
    for round in 0..60u64 {
        // Arrival times step back every third round; stored stamps must still be equal.
        let arrival = 1_700_000_002_000 + (round as i64) * 10 - if round % 3 == 0 { 25 } else { 0 };
        out.push(put("alpha", 1_700_000_000, arrival, round, &[0, 1, 2]));
        out.push(put(
            "beta",
            1_700_000_001,
            arrival,
            round,
            &[(round % 2) as u32],
        ));
    }
    let settings = |epoch: u64, change: SettingsChange| Command::ChangeSettings {
        name: "alpha".into(),
        epoch,
        change,
    };
    out.push(settings(
        1_700_000_000,
        SettingsChange::Retention {
            hours: 48,
            increase: true,
        },
    ));
    // Shorter than the current period: refused the same way everywhere.
    out.push(settings(
        1_700_000_000,
        SettingsChange::Retention {
            hours: 30,
            increase: true,
        },
    ));
    out.push(settings(
        1_700_000_000,
        SettingsChange::AddTags(BTreeMap::from([("owner".into(), "ops".into())])),
    ));
    out.push(settings(
        1_700_000_000,
        SettingsChange::RemoveTags(vec!["team".into()]),
    ));
    out.push(settings(1_700_000_000, SettingsChange::MaxRecordSize(2048)));
    // Reshards at the leader's time; a put routed before one to a shard it closed is refused
    // alone, asking for a retry.
    let split = ReshardOp::Split {
        shard: 0,
        at: u128::MAX / 6,
    };
    out.push(change(1_700_000_000, 1_700_000_010_000, reshard(split, 0)));
    out.push(put("alpha", 1_700_000_000, 1_700_000_010_500, 70, &[0, 3]));
    let merge = ReshardOp::Merge {
        shard: 3,
        adjacent: 4,
    };
    out.push(change(1_700_000_000, 1_700_000_011_000, reshard(merge, 1)));
    let resize = ReshardOp::Resize { target: 4 };
    out.push(change(1_700_000_000, 1_700_000_012_000, reshard(resize, 2)));
    // Asked for on a shape since changed: refused.
    out.push(change(
        1_700_000_000,
        1_700_000_012_500,
        reshard(ReshardOp::Resize { target: 5 }, 2),
    ));
    let register = StreamChange::RegisterConsumer {
        name: "audit".into(),
        created_s: None,
    };
    out.push(change(1_700_000_000, 1_700_000_013_000, register.clone()));
    // A second registration of the same name: refused.
    out.push(change(1_700_000_000, 1_700_000_013_500, register));
    out.push(settings(
        1_700_000_000,
        SettingsChange::Encryption(Some("alias/aws/kinesis".into())),
    ));
    // Records the leader routed (and did not seal) before encryption started: refused alone.
    let Command::PutRecords {
        stream,
        epoch,
        arrival_ms,
        batches,
        ..
    } = put("alpha", 1_700_000_000, 1_700_000_014_000, 71, &[6])
    else {
        unreachable!()
    };
    out.push(Command::PutRecords {
        stream,
        epoch,
        arrival_ms,
        batches,
        encrypted: Some(false),
    });
    out.push(settings(
        1_700_000_000,
        SettingsChange::EnhancedMetrics {
            names: vec!["IncomingBytes".into()],
            enable: true,
        },
    ));
    out.push(settings(
        1_700_000_000,
        SettingsChange::ResourcePolicy(Some("{\"Version\":\"2012-10-17\"}".into())),
    ));
    out.push(settings(
        1_700_000_000,
        SettingsChange::Mode(StreamMode::OnDemand),
    ));
    // Another incarnation's change: refused.
    out.push(settings(1_600_000_000, SettingsChange::MaxRecordSize(4096)));
    out.push(Command::DeleteStream {
        name: "beta".into(),
        epoch: 1_699_999_999,
        enforce_consumer_deletion: false,
    });
    out.push(Command::DeleteStream {
        name: "beta".into(),
        epoch: 1_700_000_001,
        enforce_consumer_deletion: false,
    });
    out.push(create("beta", 1, 1_700_000_050_000));
    out.push(put("beta", 1_700_000_001, 1_700_000_051_000, 0, &[0]));
    out.push(put("beta", 1_700_000_050, 1_700_000_051_000, 1, &[0, 5]));
    out.push(create("alpha", 1, 1_700_000_060_000));
    out
}

/// Every stream's description and every record (offset, arrival, key, data), by stream.
type Dump = BTreeMap<String, (String, Vec<(u32, Vec<(u64, i64, String, Bytes)>)>)>;

async fn dump(catalog: &Catalog) -> Dump {
    let mut out = BTreeMap::new();
    for stream in catalog.streams() {
        let entry = catalog
            .describe(&stream.name, |meta, state| {
                let shards = state
                    .shards
                    .iter()
                    .map(|(&index, shard)| {
                        let records = shard
                            .log
                            .read(0, usize::MAX, usize::MAX)
                            .unwrap()
                            .into_iter()
                            .map(|r| (r.offset, r.arrival_ms, r.partition_key, r.data))
                            .collect();
                        (index, records)
                    })
                    .collect();
                (serde_json::to_string(meta).unwrap(), shards)
            })
            .await
            .unwrap();
        out.insert(stream.name.clone(), entry);
    }
    out
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_same_commands_give_identical_catalogs_and_responses() {
    let (a_dir, b_dir) = (tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap());
    let mut a = Applier::new(catalog(a_dir.path()), HashMap::new());
    let mut b = Applier::new(catalog(b_dir.path()), HashMap::new());
    let mut responses = Vec::new();
    for command in commands() {
        // Commands travel as bytes.
        let command = Command::decode(&command.encode()).unwrap();
        let ra = a.apply(command.clone()).await.unwrap();
        let rb = b.apply(command).await.unwrap();
        assert_eq!(ra, rb);
        responses.push(ra);
    }
    let (da, db) = (dump(a.catalog()).await, dump(b.catalog()).await);
    assert_eq!(da, db);

    // Settings changes were applied, and refused, alike.
    let meta: serde_json::Value = serde_json::from_str(&da["alpha"].0).unwrap();
    assert_eq!(meta["retention_hours"], 48);
    assert_eq!(meta["max_record_size_kib"], 2048);
    assert_eq!(meta["mode"], "OnDemand");
    assert_eq!(meta["tags"], serde_json::json!({"owner": "ops"}));
    // So were the reshards, consumers, encryption, monitoring and policy.
    assert_eq!(meta["reshards"].as_array().unwrap().len(), 3, "{meta}");
    let open = meta["shards"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|s| s["closed"].is_null())
        .count();
    assert_eq!(open, 4, "{meta}");
    assert_eq!(
        meta["consumers"],
        serde_json::json!([{"name": "audit", "created_s": 1_700_000_013}])
    );
    assert_eq!(meta["encryption_key_id"], "alias/aws/kinesis");
    assert_eq!(
        meta["enhanced_metrics"],
        serde_json::json!(["IncomingBytes"])
    );
    assert!(meta["resource_policy"].is_string(), "{meta}");
    let refusals = responses
        .iter()
        .filter(|r| matches!(r, Response::Refused { .. }))
        .count();
    // Two settings changes, the overtaken reshard, the second registration, the stale delete,
    // the put to the deleted stream, the reused name.
    assert_eq!(refusals, 7, "{responses:?}");
    let rerouted: Vec<usize> = responses
        .iter()
        .filter_map(|r| match r {
            Response::Appended(batches) => Some(
                batches
                    .iter()
                    .filter(|b| b.as_ref().is_err_and(|(_, m)| m.contains("resharded")))
                    .count(),
            ),
            _ => None,
        })
        .filter(|&n| n > 0)
        .collect();
    // The put to the split shard (one of its two batches) and the unsealed put (its one).
    assert_eq!(rerouted, vec![1, 1], "{responses:?}");

    // The responses say what happened; spot-check a few.
    let alpha = &da["alpha"].1;
    assert_eq!(alpha.len(), meta["shards"].as_array().unwrap().len());
    let first = &alpha[0].1[0];
    assert_eq!((first.0, first.1), (0, 1_700_000_002_000 - 25));
    assert!(
        alpha
            .iter()
            .all(|(_, records)| records.windows(2).all(|w| w[0].1 <= w[1].1))
    );
    // The stale delete is refused, the right one done, the put to the deleted incarnation
    // refused, a batch for a shard that does not exist refused alone, the reused name refused.
    let n = responses.len();
    assert_eq!(
        responses[n - 6],
        Response::Refused {
            kind: ErrorKind::ResourceNotFound,
            message: "Stream beta under account 000000000000 not found.".into()
        }
    );
    assert_eq!(responses[n - 5], Response::Done);
    assert_eq!(responses[n - 4], Response::Done);
    assert!(matches!(
        &responses[n - 3],
        Response::Refused {
            kind: ErrorKind::ResourceNotFound,
            ..
        }
    ));
    let Response::Appended(batches) = &responses[n - 2] else {
        panic!("{:?}", responses[n - 2])
    };
    assert!(batches[0].is_ok());
    assert_eq!(
        batches[1].as_ref().unwrap_err().0,
        ErrorKind::ResourceNotFound
    );
    assert!(matches!(
        &responses[n - 1],
        Response::Refused {
            kind: ErrorKind::ResourceInUse,
            ..
        }
    ));
    // Sequence numbers in responses name the records stored.
    let Response::Appended(batches) = &responses[2] else {
        panic!()
    };
    let seqs = responses[2].sequence_numbers(&[1, 2, 3]).unwrap();
    assert_eq!(batches.len(), 3);
    assert_eq!(seqs[2].as_ref().unwrap().len(), 3);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_retention_sweep_trims_and_forgets_the_same_on_every_replica() {
    let (a_dir, b_dir) = (tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap());
    let mut a = Applier::new(catalog(a_dir.path()), HashMap::new());
    let mut b = Applier::new(catalog(b_dir.path()), HashMap::new());
    let created = 1_700_000_000_000;
    let mut sequence = vec![create("alpha", 2, created)];
    for round in 0..40 {
        sequence.push(put(
            "alpha",
            1_700_000_000,
            created + round,
            round as u64,
            &[0, 1],
        ));
    }
    let split = ReshardOp::Split {
        shard: 0,
        at: u128::MAX / 4,
    };
    sequence.push(change(1_700_000_000, created + 100, reshard(split, 0)));
    for round in 40..50 {
        sequence.push(put(
            "alpha",
            1_700_000_000,
            created + 200 + round,
            round as u64,
            &[1, 2, 3],
        ));
    }
    // A day and a bit later: everything written before the split has expired, shard 0 closed
    // with it; the children's records, written later, stay.
    sequence.push(Command::SweepRetention {
        at_ms: created + 86_400_000 + 150,
    });
    for command in sequence {
        let command = Command::decode(&command.encode()).unwrap();
        let ra = a.apply(command.clone()).await.unwrap();
        assert_eq!(ra, b.apply(command).await.unwrap());
    }
    let (da, db) = (dump(a.catalog()).await, dump(b.catalog()).await);
    assert_eq!(da, db);
    let meta: serde_json::Value = serde_json::from_str(&da["alpha"].0).unwrap();
    let shards: Vec<u64> = meta["shards"]
        .as_array()
        .unwrap()
        .iter()
        .map(|s| s["index"].as_u64().unwrap())
        .collect();
    assert_eq!(
        shards,
        vec![1, 2, 3],
        "the expired closed shard is forgotten"
    );
    let stored: BTreeMap<u32, usize> = da["alpha"]
        .1
        .iter()
        .map(|(index, records)| (*index, records.len()))
        .collect();
    assert!(!stored.contains_key(&0), "{stored:?}");
    assert!(stored[&2] > 0 && stored[&3] > 0, "{stored:?}");
}

async fn start_single(dir: &Path, port: u16) -> Replica<CatalogMachine> {
    let cat = catalog(&dir.join("data"));
    let machine = CatalogMachine::open(cat, &dir.join("data/replica"))
        .await
        .unwrap();
    let listen = format!("127.0.0.1:{port}").parse().unwrap();
    let members = BTreeMap::from([(1, format!("127.0.0.1:{port}"))]);
    let config = ReplicaConfig::new(1, listen, members, dir.join("data/replica"));
    let replica = Replica::start(config, machine).await.unwrap();
    let deadline = Instant::now() + Duration::from_secs(10);
    while replica.status().role != Role::Leader {
        assert!(
            Instant::now() < deadline,
            "no leader: {:?}",
            replica.status()
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    replica
}

/// Shuts a replica down and waits until its catalog is closed (its shard logs unlocked).
async fn stop(replica: Replica<CatalogMachine>) {
    let catalog = Arc::downgrade(replica.state_machine().lock().unwrap().catalog());
    replica.shutdown().await;
    let deadline = Instant::now() + Duration::from_secs(10);
    while catalog.upgrade().is_some() {
        assert!(
            Instant::now() < deadline,
            "the catalog is still in use after shutdown"
        );
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
}

async fn replica_dump(replica: &Replica<CatalogMachine>) -> Dump {
    let catalog = Arc::clone(replica.state_machine().lock().unwrap().catalog());
    dump(&catalog).await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_replica_restarted_with_a_stale_position_replays_without_duplicating() {
    let dir = tempfile::tempdir().unwrap();
    let port = free_port();
    let replica = start_single(dir.path(), port).await;
    let reference_dir = tempfile::tempdir().unwrap();
    let mut reference = Applier::new(catalog(reference_dir.path()), HashMap::new());
    // The position's two slot files, and where a stale copy of them is kept.
    let slots = ["position.0", "position.1"].map(|name| dir.path().join("data/replica").join(name));
    let stale = ["stale.0", "stale.1"].map(|name| dir.path().join(name));
    for (i, command) in commands().into_iter().enumerate() {
        let proposed = replica
            .propose(Bytes::from(command.encode()))
            .await
            .unwrap();
        let expected = reference.apply(command).await.unwrap();
        assert_eq!(Response::decode(&proposed.response).unwrap(), expected);
        if i == 40 {
            // A position stored part-way through the writes.
            let machine = replica.state_machine();
            tokio::task::spawn_blocking(move || machine.lock().unwrap().save_position().unwrap())
                .await
                .unwrap();
            for (slot, copy) in slots.iter().zip(&stale) {
                if slot.exists() {
                    std::fs::copy(slot, copy).unwrap();
                }
            }
        }
    }
    let before = replica_dump(&replica).await;
    assert_eq!(before, dump(reference.catalog()).await);
    let machine = replica.state_machine();
    tokio::task::spawn_blocking(move || machine.lock().unwrap().save_position().unwrap())
        .await
        .unwrap();
    stop(replica).await;
    // Go back to the stale position (as after a crash before the next store): every entry
    // after it is applied again on top of the state that has them.
    for (slot, copy) in slots.iter().zip(&stale) {
        if copy.exists() {
            std::fs::rename(copy, slot).unwrap();
        } else {
            std::fs::remove_file(slot).unwrap();
        }
    }
    let replica = start_single(dir.path(), port).await;
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let after = replica_dump(&replica).await;
        if after == before {
            break;
        }
        assert!(Instant::now() < deadline, "state after replay differs");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    // And new writes continue at the right offsets.
    let more = put("alpha", 1_700_000_000, 1_700_000_100_000, 99, &[1]);
    let proposed = replica.propose(Bytes::from(more.encode())).await.unwrap();
    let expected = reference.apply(more).await.unwrap();
    assert_eq!(Response::decode(&proposed.response).unwrap(), expected);
    assert_eq!(
        replica_dump(&replica).await,
        dump(reference.catalog()).await
    );
    replica.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_snapshot_installed_elsewhere_reproduces_the_catalog() {
    let dir = tempfile::tempdir().unwrap();
    let replica = start_single(dir.path(), free_port()).await;
    for command in commands() {
        replica
            .propose(Bytes::from(command.encode()))
            .await
            .unwrap();
    }
    let machine = replica.state_machine();
    let (applied, mut view) = tokio::task::spawn_blocking(move || {
        let mut machine = machine.lock().unwrap();
        let view = machine.snapshot().unwrap();
        (machine.applied().unwrap(), view)
    })
    .await
    .unwrap();
    let source = Arc::clone(replica.state_machine().lock().unwrap().catalog());
    assert!(
        source.deletions_held(),
        "a view keeps deleted streams' files whole while it is read"
    );
    let mut bytes = Vec::new();
    std::io::Read::read_to_end(&mut view.data, &mut bytes).unwrap();
    assert_eq!(
        bytes.len() as u64,
        view.len,
        "a view's length is what it holds"
    );
    drop(view);
    assert!(!source.deletions_held(), "and only while it exists");
    // Writes after the view are not in it.
    let later = put("alpha", 1_700_000_000, 1_700_000_200_000, 7, &[0]);
    replica.propose(Bytes::from(later.encode())).await.unwrap();

    let other = tempfile::tempdir().unwrap();
    let mut machine = CatalogMachine::open(catalog(other.path()), &other.path().join("replica"))
        .await
        .unwrap();
    // Something to be replaced.
    {
        let mut stale = Applier::new(Arc::clone(machine.catalog()), HashMap::new());
        stale.apply(create("gamma", 1, 1)).await.unwrap();
    }
    let installed = tokio::task::spawn_blocking(move || {
        machine
            .install(&applied, &mut std::io::Cursor::new(bytes))
            .unwrap();
        machine
    })
    .await
    .unwrap();
    assert_eq!(installed.applied().unwrap().index(), {
        let m = replica.state_machine();
        let a = m.lock().unwrap().applied().unwrap().index();
        a.map(|i| i - 1)
    });
    let reference_dir = tempfile::tempdir().unwrap();
    let mut reference = Applier::new(catalog(reference_dir.path()), HashMap::new());
    for command in commands() {
        reference.apply(command).await.unwrap();
    }
    assert_eq!(
        dump(installed.catalog()).await,
        dump(reference.catalog()).await
    );
    replica.shutdown().await;
}

async fn start_member(
    root: &Path,
    id: u64,
    members: &BTreeMap<u64, String>,
) -> Replica<CatalogMachine> {
    let dir = root.join(format!("replica-{id}"));
    let cat = catalog(&dir);
    let machine = CatalogMachine::open(cat, &dir.join("replica"))
        .await
        .unwrap();
    let listen = members[&id].parse().unwrap();
    let mut config = ReplicaConfig::new(id, listen, members.clone(), dir.join("replica"));
    // Snapshot often and keep no log behind it, so a replica that lost its volume can only
    // be caught up by a snapshot.
    config.raft.snapshot_policy = openraft::SnapshotPolicy::LogsSinceLast(40);
    config.raft.max_in_snapshot_log_to_keep = 0;
    config.raft.snapshot_max_chunk_size = 16 << 10;
    Replica::start(config, machine).await.unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_replica_that_lost_its_volume_is_caught_up_by_a_snapshot() {
    let root = tempfile::tempdir().unwrap();
    let members: BTreeMap<u64, String> = (1..=3)
        .map(|id| (id, format!("127.0.0.1:{}", free_port())))
        .collect();
    let mut replicas = BTreeMap::new();
    for &id in members.keys() {
        replicas.insert(id, start_member(root.path(), id, &members).await);
    }
    let deadline = Instant::now() + Duration::from_secs(20);
    let leader = loop {
        if let Some((&id, _)) = replicas
            .iter()
            .find(|(_, r)| r.status().role == Role::Leader)
        {
            break id;
        }
        assert!(Instant::now() < deadline, "no leader");
        tokio::time::sleep(Duration::from_millis(20)).await;
    };
    let lost = *members.keys().find(|&&id| id != leader).unwrap();
    replicas.remove(&lost).unwrap().shutdown().await;
    std::fs::remove_dir_all(root.path().join(format!("replica-{lost}"))).unwrap();

    // Everything is written while the replica is away, in more entries than the leader keeps.
    let reference_dir = tempfile::tempdir().unwrap();
    let mut reference = Applier::new(catalog(reference_dir.path()), HashMap::new());
    for command in commands() {
        let proposed = replicas[&leader]
            .propose(Bytes::from(command.encode()))
            .await
            .unwrap();
        assert_eq!(
            Response::decode(&proposed.response).unwrap(),
            reference.apply(command).await.unwrap()
        );
    }
    let deadline = Instant::now() + Duration::from_secs(20);
    while replicas[&leader].status().purged.is_none() {
        assert!(Instant::now() < deadline, "the leader never purged its log");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }

    replicas.insert(lost, start_member(root.path(), lost, &members).await);
    let expected = dump(reference.catalog()).await;
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        if replica_dump(&replicas[&lost]).await == expected {
            break;
        }
        assert!(Instant::now() < deadline, "the replica was not caught up");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert!(
        replicas[&lost].status().snapshot.is_some(),
        "caught up without a snapshot: {:?}",
        replicas[&lost].status()
    );
    // And it keeps applying after the snapshot.
    let more = put("alpha", 1_700_000_000, 1_700_000_300_000, 5, &[0, 1, 2]);
    replicas[&leader]
        .propose(Bytes::from(more.encode()))
        .await
        .unwrap();
    reference.apply(more).await.unwrap();
    let expected = dump(reference.catalog()).await;
    let deadline = Instant::now() + Duration::from_secs(20);
    while replica_dump(&replicas[&lost]).await != expected {
        assert!(
            Instant::now() < deadline,
            "the replica stopped applying after the snapshot"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    for (_, replica) in replicas {
        replica.shutdown().await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_data_directory_not_written_by_the_group_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    {
        let mut standalone = Applier::new(catalog(dir.path()), HashMap::new());
        standalone.apply(create("alpha", 1, 1)).await.unwrap();
    }
    let refused = CatalogMachine::open(catalog(dir.path()), &dir.path().join("replica")).await;
    let error = refused
        .err()
        .expect("a foreign data directory must be refused");
    assert!(error.to_string().contains("no replica position"), "{error}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_interrupted_install_leaves_an_empty_state_at_the_next_start() {
    let dir = tempfile::tempdir().unwrap();
    let replica_dir = dir.path().join("replica");
    let source = tempfile::tempdir().unwrap();
    let replica = start_single(source.path(), free_port()).await;
    replica
        .propose(Bytes::from(create("alpha", 2, 1_000).encode()))
        .await
        .unwrap();
    let applied = replica.state_machine().lock().unwrap().applied().unwrap();
    replica.shutdown().await;

    let machine = CatalogMachine::open(catalog(dir.path()), &replica_dir)
        .await
        .unwrap();
    {
        let mut stale = Applier::new(Arc::clone(machine.catalog()), HashMap::new());
        stale.apply(create("beta", 1, 2_000)).await.unwrap();
    }
    // The snapshot data ends early: the install fails part-way.
    let failed = tokio::task::spawn_blocking(move || {
        let mut machine = machine;
        let mut truncated: &[u8] = &[1, 0, 0];
        let result = machine.install(&applied, &mut truncated);
        drop(machine);
        result
    })
    .await
    .unwrap();
    assert!(failed.is_err());
    let reopened = CatalogMachine::open(catalog(dir.path()), &replica_dir)
        .await
        .unwrap();
    assert!(reopened.applied().is_none());
    assert!(reopened.catalog().streams().is_empty());
}
