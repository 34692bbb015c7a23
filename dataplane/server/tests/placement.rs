//! A stream spread over two shard groups: each group stores only its own shards, refuses the
//! others with the group that stores them, and resharding both groups the same way keeps their
//! descriptions identical, placing new shards where there is room.

use std::sync::Arc;

use bytes::Bytes;
use riffle_server::streams::error::not_hosted_group;
use riffle_server::streams::model::{Placement, StreamMode};
use riffle_server::streams::{
    Catalog, CreateStream, ErrorKind, PutEntry, StartingPosition, StreamsConfig,
};

fn catalog(dir: &std::path::Path) -> Arc<Catalog> {
    let mut config = StreamsConfig::new(dir.to_path_buf(), [7u8; 32]);
    config.limits.enabled = false;
    Catalog::open(config).expect("open catalog")
}

fn placement(group: u32) -> Placement {
    Placement {
        group,
        shards_per_group: 2,
    }
}

/// Group 0 creates the four-shard stream; group 1 imports group 0's description.
async fn two_groups(a: &Catalog, b: &Catalog) {
    a.create_stream(CreateStream {
        name: "orders".into(),
        shard_count: Some(4),
        mode: StreamMode::Provisioned,
        tags: Default::default(),
        max_record_size_kib: None,
        placement: Some(placement(0)),
    })
    .await
    .expect("create in group 0");
    let exported = a.export_stream("orders").await.expect("export");
    b.import_stream(exported, placement(1))
        .await
        .expect("import in group 1");
}

fn entry(hash_key: u128, data: &str) -> PutEntry {
    PutEntry {
        partition_key: "k".into(),
        explicit_hash_key: Some(hash_key),
        data: Bytes::from(data.to_owned()),
    }
}

/// A hash key inside shard `index` of four even shards.
fn key_of_shard(index: u128) -> u128 {
    (u128::MAX / 4) * index + 12_345
}

/// Shard id → (group, open) as `catalog` describes the stream.
async fn layout(catalog: &Catalog) -> Vec<(String, u32, bool)> {
    catalog
        .describe("orders", |meta, _| {
            meta.shards
                .iter()
                .map(|s| (s.id(), s.group, s.is_open()))
                .collect()
        })
        .await
        .expect("describe")
}

#[tokio::test]
async fn each_group_stores_only_its_shards() {
    let (dir_a, dir_b) = (tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap());
    let (a, b) = (catalog(dir_a.path()), catalog(dir_b.path()));
    two_groups(&a, &b).await;
    assert_eq!(
        layout(&a).await,
        vec![
            ("shardId-000000000000".into(), 0, true),
            ("shardId-000000000001".into(), 0, true),
            ("shardId-000000000002".into(), 1, true),
            ("shardId-000000000003".into(), 1, true),
        ]
    );
    assert_eq!(layout(&a).await, layout(&b).await);
    let epoch = |c: &Catalog| c.stream("orders").expect("stream").epoch;
    assert_eq!(epoch(&a), epoch(&b), "sequence numbers must agree");

    // Writes land in the group storing the shard.
    let stored = a
        .put_records("orders", vec![entry(key_of_shard(1), "in a")])
        .await
        .expect("put in group 0");
    assert_eq!(stored.results[0].as_ref().expect("stored").0, 1);
    let stored = b
        .put_records("orders", vec![entry(key_of_shard(2), "in b")])
        .await
        .expect("put in group 1");
    assert_eq!(stored.results[0].as_ref().expect("stored").0, 2);

    // A request touching another group's shard is refused whole, naming that group.
    let refused = a
        .put_records(
            "orders",
            vec![
                entry(key_of_shard(0), "fine"),
                entry(key_of_shard(3), "elsewhere"),
            ],
        )
        .await
        .expect_err("shard 3 is in group 1");
    assert_eq!(refused.kind, ErrorKind::NotHosted);
    assert_eq!(not_hosted_group(&refused.message), Some(1));
    let read_elsewhere = b
        .shard_iterator(
            "orders",
            "shardId-000000000000",
            StartingPosition::TrimHorizon,
        )
        .await
        .expect_err("shard 0 is in group 0");
    assert_eq!(not_hosted_group(&read_elsewhere.message), Some(0));

    // Nothing of the refused request was written: shard 0 holds nothing.
    let iterator = a
        .shard_iterator(
            "orders",
            "shardId-000000000000",
            StartingPosition::TrimHorizon,
        )
        .await
        .expect("iterator");
    let (outcome, _) = a.get_records(&iterator, 100).await.expect("read");
    assert!(outcome.records.is_empty());
    let iterator = b
        .shard_iterator(
            "orders",
            "shardId-000000000002",
            StartingPosition::TrimHorizon,
        )
        .await
        .expect("iterator");
    let (outcome, _) = b.get_records(&iterator, 100).await.expect("read");
    assert_eq!(outcome.records.len(), 1);
    assert_eq!(outcome.records[0].data, Bytes::from("in b"));
}

#[tokio::test]
async fn resharding_both_groups_keeps_them_in_step() {
    let (dir_a, dir_b) = (tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap());
    let (a, b) = (catalog(dir_a.path()), catalog(dir_b.path()));
    two_groups(&a, &b).await;
    a.put_records("orders", vec![entry(key_of_shard(0), "before")])
        .await
        .expect("put");
    for group in [&a, &b] {
        group
            .update_shard_count("orders", 8)
            .await
            .expect("scale to 8");
    }
    let after = layout(&a).await;
    assert_eq!(after, layout(&b).await, "both groups describe one stream");
    let open: Vec<u32> = after.iter().filter(|s| s.2).map(|s| s.1).collect();
    assert_eq!(open.len(), 8);
    for group in 0..4 {
        assert_eq!(
            open.iter().filter(|g| **g == group).count(),
            2,
            "two open shards per group: {after:?}"
        );
    }
    // The record written before the split is still read from its closed parent in group 0.
    let iterator = a
        .shard_iterator(
            "orders",
            "shardId-000000000000",
            StartingPosition::TrimHorizon,
        )
        .await
        .expect("iterator");
    let (outcome, _) = a.get_records(&iterator, 100).await.expect("read");
    assert_eq!(outcome.records.len(), 1);

    // A restart reopens exactly the hosted shards.
    drop(a);
    let a = catalog(dir_a.path());
    assert_eq!(layout(&a).await, after);
    let child_in_a = after
        .iter()
        .find(|s| s.2 && s.1 == 0)
        .map(|s| s.0.clone())
        .expect("an open shard in group 0");
    a.shard_iterator("orders", &child_in_a, StartingPosition::Latest)
        .await
        .expect("group 0 serves its child");
}

#[tokio::test]
async fn a_group_replays_the_reshards_of_group_zero_exactly() {
    let (dir_a, dir_b) = (tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap());
    let (a, b) = (catalog(dir_a.path()), catalog(dir_b.path()));
    two_groups(&a, &b).await;
    // Group 0 alone: a split, a merge of its children, then a resize.
    let split_at = (u128::MAX / 8).to_string();
    a.split_shard("orders", "shardId-000000000000", &split_at)
        .await
        .expect("split");
    a.merge_shards("orders", "shardId-000000000004", "shardId-000000000005")
        .await
        .expect("merge");
    a.scale_shards("orders", 8).await.expect("resize");
    assert_ne!(layout(&a).await, layout(&b).await);

    let history = a.export_stream("orders").await.expect("export").reshards;
    assert_eq!(history.len(), 3);
    let replayed = b.replay_reshards("orders", &history).await.expect("replay");
    assert_eq!((replayed.before, replayed.after), (0, 3));
    assert_eq!(
        layout(&a).await,
        layout(&b).await,
        "the same shards in both groups"
    );
    let again = b
        .replay_reshards("orders", &history)
        .await
        .expect("replay again");
    assert_eq!((again.before, again.after), (3, 3));
    assert_eq!(layout(&a).await, layout(&b).await);

    // A group changed apart cannot be joined by replaying.
    let (dir_c, dir_d) = (tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap());
    let (c, d) = (catalog(dir_c.path()), catalog(dir_d.path()));
    two_groups(&c, &d).await;
    d.scale_shards("orders", 2).await.expect("resize d");
    let refused = d
        .replay_reshards("orders", &history)
        .await
        .expect_err("diverged");
    assert_eq!(refused.kind, ErrorKind::ResourceInUse);
}
