//! A replicated shard group of three real processes (`riffle-group-replica`) on loopback:
//! writers put records through the Kinesis API to whichever replica leads (following
//! `x-riffle-leader`), the leader is killed with SIGKILL, a new leader takes the writes, the
//! killed replica restarts and catches up. Checked: every acknowledged record is readable
//! exactly once, intact, under the sequence number it was acknowledged with, on the new
//! leader and on every replica after catch-up; the replicas hold identical records.

#![allow(clippy::unwrap_used)] // test fixtures fail loudly by design

use std::collections::{BTreeMap, HashMap};
use std::path::Path;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use base64::Engine;
use base64::engine::general_purpose::STANDARD;
use serde_json::{Value, json};

mod common;
use common::group::{Group, metrics};
use common::{HttpClient, client};

const STREAM: &str = "orders";
const SHARDS: usize = 4;
const WRITERS: usize = 4;

/// One Kinesis call: status, body, and the `x-riffle-leader` header. `None` if the replica
/// could not be reached or did not answer within 5 s.
async fn call(
    client: &HttpClient,
    address: &str,
    operation: &str,
    body: &Value,
) -> Option<(u16, Value, Option<String>)> {
    common::call(client, address, operation, body, Duration::from_secs(5)).await
}

/// [`call`] answered with 200: its body.
async fn call_ok(client: &HttpClient, address: &str, operation: &str, body: &Value) -> Value {
    let (status, body, _) = call(client, address, operation, body).await.unwrap();
    assert_eq!(status, 200, "{body}");
    body
}

/// A read from one replica's own copy, leader or not (`x-riffle-read-local`).
async fn read(
    client: &HttpClient,
    address: &str,
    operation: &str,
    body: &Value,
) -> Option<(u16, Value, Option<String>)> {
    common::call_local(client, address, operation, body, Duration::from_secs(5)).await
}

/// Waits for a replica (among `ids`) that reports itself leader; returns its id.
async fn wait_leader(client: &HttpClient, group: &Group, ids: &[u64], deadline: Instant) -> u64 {
    loop {
        for &id in ids {
            if let Some(m) = metrics(client, &group.api_of(id)).await
                && m.get("riffle_replica_is_leader") == Some(&1)
            {
                return id;
            }
        }
        assert!(Instant::now() < deadline, "no leader among {ids:?}");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// A record a writer had acknowledged: its data, shard and sequence number.
#[derive(Debug, Clone)]
struct Acked {
    data: String,
    shard: String,
    sequence: String,
}

/// Puts batches until `stop`, following `x-riffle-leader`, trying the other replicas when
/// one cannot be reached. Returns the acknowledged records and the times of acknowledgements.
async fn writer(
    w: usize,
    addresses: Vec<String>,
    stop: Arc<AtomicBool>,
    acked: Arc<Mutex<Vec<Acked>>>,
    last_ack: Arc<Mutex<Vec<Instant>>>,
) {
    let client = client();
    let mut target = 0usize;
    let mut leader_hint: Option<String> = None;
    let mut n = 0u64;
    while !stop.load(Ordering::SeqCst) {
        let address = leader_hint
            .take()
            .unwrap_or_else(|| addresses[target].clone());
        let datas: Vec<String> = (0..5)
            .map(|i| format!("writer-{w}-batch-{n}-record-{i}-{}", "x".repeat(100)))
            .collect();
        n += 1;
        let records: Vec<Value> = datas
            .iter()
            .enumerate()
            .map(|(i, d)| {
                json!({"Data": STANDARD.encode(d), "PartitionKey": format!("key-{w}-{n}-{i}")})
            })
            .collect();
        let body = json!({"StreamName": STREAM, "Records": records});
        match call(&client, &address, "PutRecords", &body).await {
            Some((200, value, _)) => {
                let now = Instant::now();
                let mut out = acked.lock().unwrap();
                for (data, result) in datas.into_iter().zip(value["Records"].as_array().unwrap()) {
                    if let Some(sequence) = result["SequenceNumber"].as_str() {
                        out.push(Acked {
                            data,
                            shard: result["ShardId"].as_str().unwrap().to_string(),
                            sequence: sequence.to_string(),
                        });
                    }
                }
                last_ack.lock().unwrap().push(now);
                leader_hint = Some(address);
            }
            Some((503, _, Some(leader))) => leader_hint = Some(leader),
            _ => {
                target = (target + 1) % addresses.len();
                tokio::time::sleep(Duration::from_millis(20)).await;
            }
        }
    }
}

/// Every record of every shard of the stream (closed ones included) on one replica:
/// shard -> [(sequence, data)].
async fn read_all(
    client: &HttpClient,
    address: &str,
) -> Option<BTreeMap<String, Vec<(String, String)>>> {
    let mut out = BTreeMap::new();
    for shard_id in shard_ids(client, address).await? {
        let (status, value, _) = read(
            client,
            address,
            "GetShardIterator",
            &json!({"StreamName": STREAM, "ShardId": shard_id, "ShardIteratorType": "TRIM_HORIZON"}),
        )
        .await?;
        if status != 200 {
            return None;
        }
        let mut iterator = value["ShardIterator"].as_str()?.to_string();
        let mut records = Vec::new();
        loop {
            let (status, value, _) = read(
                client,
                address,
                "GetRecords",
                &json!({"ShardIterator": iterator, "Limit": 10000}),
            )
            .await?;
            assert_eq!(status, 200, "GetRecords on {address}: {value}");
            let batch = value["Records"].as_array().unwrap();
            for r in batch {
                let data = STANDARD.decode(r["Data"].as_str().unwrap()).unwrap();
                records.push((
                    r["SequenceNumber"].as_str().unwrap().to_string(),
                    String::from_utf8(data).unwrap(),
                ));
            }
            // A closed shard read to its end has no next iterator.
            match value["NextShardIterator"].as_str() {
                Some(next) if !batch.is_empty() => iterator = next.to_string(),
                _ => break,
            }
        }
        out.insert(shard_id, records);
    }
    Some(out)
}

/// The ids of every shard of the stream, closed ones included, as one replica lists them.
async fn shard_ids(client: &HttpClient, address: &str) -> Option<Vec<String>> {
    let (status, value, _) = read(
        client,
        address,
        "ListShards",
        &json!({"StreamName": STREAM}),
    )
    .await?;
    (status == 200).then(|| {
        value["Shards"]
            .as_array()
            .unwrap()
            .iter()
            .map(|s| s["ShardId"].as_str().unwrap().to_string())
            .collect()
    })
}

/// Asks the leader to reshard the stream to `target` open shards while writes go on.
async fn update_shard_count(client: &HttpClient, leader_api: &str, target: usize) {
    let body = call_ok(
        client,
        leader_api,
        "UpdateShardCount",
        &json!({"StreamName": STREAM, "TargetShardCount": target, "ScalingType": "UNIFORM_SCALING"}),
    ).await;
    assert_eq!(body["TargetShardCount"], target, "{body}");
}

/// Checks that every acknowledged record is on the replica exactly once, intact, with the
/// sequence number it was acknowledged with, and that no record is there twice.
fn check(replica: &str, stored: &BTreeMap<String, Vec<(String, String)>>, acked: &[Acked]) {
    let mut by_data: HashMap<&str, (&str, &str)> = HashMap::new();
    for (shard, records) in stored {
        for (sequence, data) in records {
            let previous = by_data.insert(data.as_str(), (shard.as_str(), sequence.as_str()));
            assert!(previous.is_none(), "{replica}: record stored twice: {data}");
        }
    }
    for a in acked {
        let Some(&(shard, sequence)) = by_data.get(a.data.as_str()) else {
            panic!("{replica}: acknowledged record missing: {a:?}");
        };
        assert_eq!(
            (shard, sequence),
            (a.shard.as_str(), a.sequence.as_str()),
            "{replica}: record stored under another sequence number"
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn acknowledged_records_survive_killing_the_leader() {
    let mut group = Group::start();
    let client = client();
    let ids = [1, 2, 3];
    let leader = wait_leader(
        &client,
        &group,
        &ids,
        Instant::now() + Duration::from_secs(20),
    )
    .await;
    let leader_api = group.api_of(leader);
    // The leader reports its voters, and the time since a quorum answered once one has.
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let reported = metrics(&client, &leader_api).await.unwrap();
        assert_eq!(
            reported.get("riffle_replica_voter"),
            Some(&3),
            "{reported:?}"
        );
        if reported.contains_key("riffle_replica_millis_since_quorum_ack") {
            break;
        }
        assert!(Instant::now() < deadline, "{reported:?}");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }

    // A write reaching a follower is refused; once the follower has heard from the leader,
    // the refusal names it.
    let follower = ids.iter().copied().find(|&i| i != leader).unwrap();
    let create = json!({"StreamName": STREAM, "ShardCount": SHARDS});
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        if let Some((status, body, named)) =
            call(&client, &group.api_of(follower), "CreateStream", &create).await
        {
            assert_eq!(status, 503, "{body}");
            assert_eq!(body["__type"], "ServiceUnavailable");
            if let Some(named) = named {
                assert_eq!(named, leader_api);
                break;
            }
        }
        assert!(
            Instant::now() < deadline,
            "the follower never named the leader"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    call_ok(&client, &leader_api, "CreateStream", &create).await;
    // Reads too are answered by the leader only, unless a replica's own copy is asked for.
    let describe = json!({"StreamName": STREAM});
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let (status, body, named) = call(
            &client,
            &group.api_of(follower),
            "DescribeStreamSummary",
            &describe,
        )
        .await
        .unwrap();
        assert_eq!(
            (status, named.as_deref()),
            (503, Some(leader_api.as_str())),
            "{body}"
        );
        if let Some((200, _, _)) = read(
            &client,
            &group.api_of(follower),
            "DescribeStreamSummary",
            &describe,
        )
        .await
        {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "the follower never had the stream"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let stop = Arc::new(AtomicBool::new(false));
    let acked = Arc::new(Mutex::new(Vec::new()));
    let acks = Arc::new(Mutex::new(Vec::new()));
    let addresses: Vec<String> = ids.iter().map(|&i| group.api_of(i)).collect();
    let writers: Vec<_> = (0..WRITERS)
        .map(|w| {
            tokio::spawn(writer(
                w,
                addresses.clone(),
                stop.clone(),
                acked.clone(),
                acks.clone(),
            ))
        })
        .collect();

    // Let some records through, then kill the leader.
    let deadline = Instant::now() + Duration::from_secs(20);
    while acked.lock().unwrap().len() < 500 {
        assert!(Instant::now() < deadline, "writes are not acknowledged");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    // Resharding is replicated like the records: 4 -> 8 shards while the writers go on.
    update_shard_count(&client, &leader_api, 2 * SHARDS).await;
    let resharded_at = acked.lock().unwrap().len();
    let deadline = Instant::now() + Duration::from_secs(20);
    while acked.lock().unwrap().len() < resharded_at + 500 {
        assert!(Instant::now() < deadline, "writes stopped after resharding");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    group.kill(leader);
    let killed_at = Instant::now();
    let before_kill = acked.lock().unwrap().len();
    let others: Vec<u64> = ids.iter().copied().filter(|&i| i != leader).collect();
    let new_leader = wait_leader(
        &client,
        &group,
        &others,
        Instant::now() + Duration::from_secs(20),
    )
    .await;
    // Failover: the first write acknowledged after the kill.
    let deadline = Instant::now() + Duration::from_secs(20);
    let failover = loop {
        if let Some(t) = acks.lock().unwrap().iter().find(|&&t| t > killed_at) {
            break *t - killed_at;
        }
        assert!(
            Instant::now() < deadline,
            "no write acknowledged after the leader was killed"
        );
        tokio::time::sleep(Duration::from_millis(10)).await;
    };
    println!(
        "killed leader {leader}; replica {new_leader} took over; first write acknowledged {:?} after the kill",
        failover
    );
    let deadline = Instant::now() + Duration::from_secs(20);
    while acked.lock().unwrap().len() < before_kill + 500 {
        assert!(
            Instant::now() < deadline,
            "the new leader does not take writes"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }

    // The killed replica comes back while writes continue.
    group.restart(leader);
    let restarted_at = acked.lock().unwrap().len();
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        let up = metrics(&client, &group.api_of(leader)).await.is_some();
        if up && acked.lock().unwrap().len() >= restarted_at + 200 {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "the killed replica did not come back"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    // The new leader reshards back to 4 while the restarted replica catches up.
    update_shard_count(&client, &group.api_of(new_leader), SHARDS).await;
    let resharded_at = acked.lock().unwrap().len();
    let deadline = Instant::now() + Duration::from_secs(20);
    while acked.lock().unwrap().len() < resharded_at + 200 {
        assert!(Instant::now() < deadline, "writes stopped after resharding");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    stop.store(true, Ordering::SeqCst);
    for w in writers {
        w.await.unwrap();
    }
    let acked = acked.lock().unwrap().clone();
    println!("{} records acknowledged", acked.len());

    // On the new leader: the three shapes' 4 + 8 + 4 shards, every record in its lineage.
    let on_leader = read_all(&client, &group.api_of(new_leader)).await.unwrap();
    assert_eq!(on_leader.len(), 16, "{:?}", on_leader.keys());
    check(&format!("leader {new_leader}"), &on_leader, &acked);
    // Every replica catches up to the same records.
    for id in ids {
        let deadline = Instant::now() + Duration::from_secs(30);
        loop {
            if let Some(stored) = read_all(&client, &group.api_of(id)).await
                && stored == on_leader
            {
                check(&format!("replica {id}"), &stored, &acked);
                break;
            }
            assert!(Instant::now() < deadline, "replica {id} did not catch up");
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }
    // Settings changes go through the leader and reach every replica.
    let leader_api = group.api_of(new_leader);
    call_ok(
        &client,
        &leader_api,
        "AddTagsToStream",
        &json!({"StreamName": STREAM, "Tags": {"owner": "ops"}}),
    )
    .await;
    call_ok(
        &client,
        &leader_api,
        "IncreaseStreamRetentionPeriod",
        &json!({"StreamName": STREAM, "RetentionPeriodHours": 48}),
    )
    .await;
    let body = call_ok(
        &client,
        &leader_api,
        "DescribeStreamSummary",
        &json!({"StreamName": STREAM}),
    )
    .await;
    let stream_arn = body["StreamDescriptionSummary"]["StreamARN"].clone();
    let body = call_ok(
        &client,
        &leader_api,
        "RegisterStreamConsumer",
        &json!({"StreamARN": stream_arn, "ConsumerName": "audit"}),
    )
    .await;
    let consumer_arn = body["Consumer"]["ConsumerARN"].clone();
    for id in ids {
        let deadline = Instant::now() + Duration::from_secs(10);
        loop {
            let consumers = read(
                &client,
                &group.api_of(id),
                "ListStreamConsumers",
                &json!({"StreamARN": stream_arn}),
            )
            .await;
            let summary = read(
                &client,
                &group.api_of(id),
                "DescribeStreamSummary",
                &json!({"StreamName": STREAM}),
            )
            .await;
            let tags = read(
                &client,
                &group.api_of(id),
                "ListTagsForStream",
                &json!({"StreamName": STREAM}),
            )
            .await;
            if let (Some((200, summary, _)), Some((200, tags, _)), Some((200, consumers, _))) =
                (summary, tags, consumers)
                && summary["StreamDescriptionSummary"]["RetentionPeriodHours"] == 48
                && tags["Tags"] == json!([{"Key": "owner", "Value": "ops"}])
                && consumers["Consumers"][0]["ConsumerARN"] == consumer_arn
            {
                break;
            }
            assert!(
                Instant::now() < deadline,
                "replica {id} misses the settings change or the consumer"
            );
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }

    // Records are written twice on each replica: in the raft log and in the shard logs.
    let dir = &group.members[0].dir;
    println!(
        "replica 1 stores {} bytes of raft log and {} bytes of shard logs",
        dir_bytes(&dir.join("replica/raft")),
        dir_bytes(&dir.join("streams"))
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_leader_cut_off_from_its_followers_refuses_writes_until_they_return() {
    let group = Group::start();
    let client = client();
    let ids = [1, 2, 3];
    let leader = wait_leader(
        &client,
        &group,
        &ids,
        Instant::now() + Duration::from_secs(20),
    )
    .await;
    let leader_api = group.api_of(leader);
    let create = json!({"StreamName": STREAM, "ShardCount": 1});
    call_ok(&client, &leader_api, "CreateStream", &create).await;
    let put = |data: &str| json!({"StreamName": STREAM, "PartitionKey": "k", "Data": STANDARD.encode(data)});
    call_ok(&client, &leader_api, "PutRecord", &put("before")).await;

    // Both followers stop answering: the leader is alone.
    let followers: Vec<u64> = ids.iter().copied().filter(|&i| i != leader).collect();
    for &f in &followers {
        group.signal(f, "STOP");
    }
    let deadline = Instant::now() + Duration::from_secs(10);
    while metrics(&client, &leader_api)
        .await
        .and_then(|m| m.get("riffle_replica_millis_since_quorum_ack").copied())
        .is_none_or(|m| m <= 1500)
    {
        assert!(Instant::now() < deadline, "the leader never noticed");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    // It answers a write at once, refusing it without naming a leader: clients and the
    // gateway go to the other replicas.
    let (status, body, named) = call(&client, &leader_api, "PutRecord", &put("while cut off"))
        .await
        .expect("the cut-off leader answers rather than holding the write");
    assert_eq!((status, named), (503, None), "{body}");
    assert!(
        body["message"].as_str().unwrap().contains("quorum"),
        "{body}"
    );

    for &f in &followers {
        group.signal(f, "CONT");
    }
    // Each attempt writes its own record: an attempt answered with an error whose outcome is
    // unknown (the leadership changed while it was under way) may still have been stored.
    let deadline = Instant::now() + Duration::from_secs(20);
    let mut attempts = Vec::new();
    let acknowledged = loop {
        let leader_now = wait_leader(&client, &group, &ids, deadline).await;
        let data = format!("after {}", attempts.len());
        attempts.push(data.clone());
        if let Some((200, _, _)) =
            call(&client, &group.api_of(leader_now), "PutRecord", &put(&data)).await
        {
            break (leader_now, data);
        }
        assert!(Instant::now() < deadline, "writes never resumed");
        tokio::time::sleep(Duration::from_millis(50)).await;
    };
    // What the cut-off leader refused was not stored; the acknowledged record was, once; and
    // nothing else was stored but the attempts made after the group was whole again.
    let stored = read_all(&client, &group.api_of(acknowledged.0))
        .await
        .unwrap();
    let data: Vec<&str> = stored
        .values()
        .flatten()
        .map(|(_, data)| data.as_str())
        .collect();
    assert_eq!(data.first(), Some(&"before"), "{data:?}");
    assert_eq!(
        data.iter().filter(|d| **d == acknowledged.1).count(),
        1,
        "{data:?}"
    );
    assert!(
        data[1..].iter().all(|d| attempts.iter().any(|a| a == d)),
        "{data:?}"
    );
    let mut unique = data.clone();
    unique.sort();
    unique.dedup();
    assert_eq!(unique.len(), data.len(), "a record stored twice: {data:?}");
}

fn dir_bytes(path: &Path) -> u64 {
    let Ok(entries) = std::fs::read_dir(path) else {
        return 0;
    };
    entries
        .flatten()
        .map(|e| {
            let p = e.path();
            if p.is_dir() {
                dir_bytes(&p)
            } else {
                e.metadata().map(|m| m.len()).unwrap_or(0)
            }
        })
        .sum()
}
