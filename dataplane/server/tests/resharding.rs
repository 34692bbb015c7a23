//! Resharding under concurrent writes: every acknowledged record stays readable exactly once,
//! in the shard whose sequence number it was given, and parents end where they were closed.

use std::collections::HashMap;
use std::sync::Arc;

use bytes::Bytes;
use riffle_server::streams::model::{StreamMode, parse_shard_id};
use riffle_server::streams::sequence::SequenceNumber;
use riffle_server::streams::{Catalog, CreateStream, PutEntry, StartingPosition, StreamsConfig};

fn catalog(dir: &std::path::Path) -> Arc<Catalog> {
    let mut config = StreamsConfig::new(dir.to_path_buf(), [7u8; 32]);
    config.limits.enabled = false;
    Catalog::open(config).expect("open catalog")
}

async fn create(catalog: &Catalog, name: &str, shards: u32) {
    catalog
        .create_stream(CreateStream {
            name: name.into(),
            shard_count: Some(shards),
            mode: StreamMode::Provisioned,
            tags: Default::default(),
            max_record_size_kib: None,
            placement: None,
        })
        .await
        .expect("create stream");
}

/// Reads every retained shard of `stream` to its current end: sequence number → data.
async fn read_all(catalog: &Catalog, stream: &str) -> HashMap<String, Bytes> {
    let shard_ids: Vec<String> = catalog
        .describe(stream, |meta, _| {
            meta.shards.iter().map(|s| s.id()).collect()
        })
        .await
        .expect("describe");
    let mut found = HashMap::new();
    for shard in shard_ids {
        let mut iterator = Some(
            catalog
                .shard_iterator(stream, &shard, StartingPosition::TrimHorizon)
                .await
                .expect("iterator"),
        );
        while let Some(current) = iterator.take() {
            let (outcome, next) = catalog.get_records(&current, 10_000).await.expect("read");
            let empty = outcome.records.is_empty();
            for record in outcome.records {
                let decoded = SequenceNumber::decode(&record.sequence_number).expect("our number");
                assert_eq!(Some(decoded.shard_index), parse_shard_id(&shard));
                assert!(
                    found.insert(record.sequence_number, record.data).is_none(),
                    "a record was returned twice"
                );
            }
            if !empty {
                iterator = next;
            }
        }
    }
    found
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn writes_racing_reshards_are_kept_exactly_once() {
    let dir = tempfile::tempdir().expect("tempdir");
    let catalog = catalog(dir.path());
    create(&catalog, "race", 2).await;
    let mut writers = Vec::new();
    for writer in 0..4 {
        let catalog = catalog.clone();
        writers.push(tokio::spawn(async move {
            let mut acked = Vec::new();
            for i in 0..150 {
                let entries = (0..10)
                    .map(|j| PutEntry {
                        partition_key: format!("{writer}-{i}-{j}"),
                        explicit_hash_key: None,
                        data: Bytes::from(format!("w{writer} i{i} j{j}")),
                    })
                    .collect();
                let outcome = catalog.put_records("race", entries).await.expect("put");
                for (j, result) in outcome.results.into_iter().enumerate() {
                    let (_, sequence) = result.expect("record accepted");
                    acked.push((sequence, format!("w{writer} i{i} j{j}")));
                }
            }
            acked
        }));
    }
    for target in [4, 8, 5, 3] {
        catalog
            .update_shard_count("race", target)
            .await
            .expect("reshard");
    }
    let mut acked = Vec::new();
    for writer in writers {
        acked.extend(writer.await.expect("writer"));
    }
    assert_eq!(acked.len(), 4 * 150 * 10);
    let stored = read_all(&catalog, "race").await;
    assert_eq!(stored.len(), acked.len(), "records lost or invented");
    for (sequence, data) in &acked {
        assert_eq!(
            stored.get(sequence).map(|d| d.as_ref()),
            Some(data.as_bytes())
        );
    }
    let open = catalog
        .describe("race", |meta, _| meta.open_shards().len())
        .await
        .expect("describe");
    assert_eq!(open, 3);
}

#[tokio::test]
async fn streams_and_records_survive_a_reopen() {
    let dir = tempfile::tempdir().expect("tempdir");
    let sequence;
    {
        let catalog = catalog(dir.path());
        create(&catalog, "durable", 1).await;
        catalog
            .split_shard("durable", "shardId-000000000000", "1000")
            .await
            .expect("split");
        let outcome = catalog
            .put_records(
                "durable",
                vec![PutEntry {
                    partition_key: "k".into(),
                    explicit_hash_key: Some(5),
                    data: Bytes::from_static(b"kept"),
                }],
            )
            .await
            .expect("put");
        sequence = outcome.results[0].clone().expect("accepted").1;
        for stream in catalog.streams() {
            catalog.close_stream_logs(&stream).await;
        }
    }
    let catalog = catalog(dir.path());
    let shards = catalog
        .describe("durable", |meta, _| {
            meta.shards
                .iter()
                .map(|s| (s.id(), s.is_open(), s.parent))
                .collect::<Vec<_>>()
        })
        .await
        .expect("describe after reopen");
    assert_eq!(
        shards,
        vec![
            ("shardId-000000000000".to_string(), false, None),
            ("shardId-000000000001".to_string(), true, Some(0)),
            ("shardId-000000000002".to_string(), true, Some(0)),
        ]
    );
    let stored = read_all(&catalog, "durable").await;
    assert_eq!(
        stored.get(&sequence).map(|d| d.as_ref()),
        Some(&b"kept"[..])
    );
}
