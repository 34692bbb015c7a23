//! The client commands against a real gRPC server on loopback.

use std::path::PathBuf;
use std::time::Duration;

use clap::Parser;
use riffle_server::streams::{Catalog, StreamsConfig};
use tokio::net::TcpListener;
use tokio::sync::oneshot;

use super::tail::{Format, From};
use super::*;

#[derive(Parser)]
struct Cli {
    #[command(subcommand)]
    command: ClientCommand,
}

fn parse(args: &[&str]) -> ClientCommand {
    Cli::try_parse_from(std::iter::once("riffle").chain(args.iter().copied()))
        .unwrap_or_else(|e| panic!("{args:?}: {e}"))
        .command
}

#[test]
fn parses_the_commands() {
    match parse(&[
        "stream",
        "create",
        "orders",
        "--shards",
        "3",
        "--endpoint",
        "http://h:1",
    ]) {
        ClientCommand::Stream(StreamCommand::Create {
            name,
            shards,
            connection,
        }) => {
            assert_eq!((name.as_str(), shards), ("orders", 3));
            assert_eq!(connection.endpoint, "http://h:1");
        }
        other => panic!("{other:?}"),
    }
    match parse(&["stream", "create", "orders"]) {
        ClientCommand::Stream(StreamCommand::Create { shards, .. }) => assert_eq!(shards, 1),
        other => panic!("{other:?}"),
    }
    match parse(&["put", "orders", "-k", "key", "a", "b"]) {
        ClientCommand::Put(args) => {
            assert_eq!(args.partition_key.as_deref(), Some("key"));
            assert_eq!(args.data, ["a", "b"]);
        }
        other => panic!("{other:?}"),
    }
    match parse(&["tail", "orders"]) {
        ClientCommand::Tail(args) => {
            assert_eq!(
                (args.from, args.format, args.no_follow),
                (From::Latest, Format::Text, false)
            );
        }
        other => panic!("{other:?}"),
    }
    match parse(&[
        "tail",
        "orders",
        "--from",
        "trim-horizon",
        "--no-follow",
        "--format",
        "json",
    ]) {
        ClientCommand::Tail(args) => {
            assert_eq!(
                (args.from, args.format, args.no_follow),
                (From::TrimHorizon, Format::Json, true)
            );
        }
        other => panic!("{other:?}"),
    }
    match parse(&["tail", "orders", "--no-follow", "-f"]) {
        ClientCommand::Tail(args) => assert!(!args.no_follow, "the last of -f/--no-follow wins"),
        other => panic!("{other:?}"),
    }
    assert!(Cli::try_parse_from(["riffle", "stream", "scale", "orders"]).is_err());
}

/// A data directory removed when the test ends.
struct Scratch(PathBuf);

impl Drop for Scratch {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

struct Server {
    endpoint: String,
    _stop: oneshot::Sender<()>,
    _data: Scratch,
}

async fn server() -> Server {
    let dir = std::env::temp_dir().join(format!(
        "riffle-cli-{}-{:016x}",
        std::process::id(),
        rand::random::<u64>()
    ));
    let data = Scratch(dir.clone());
    let mut config = StreamsConfig::new(dir, [7u8; 32]);
    config.limits.enabled = false;
    let catalog = Catalog::open(config).expect("catalog");
    let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
    let endpoint = format!("http://{}", listener.local_addr().expect("address"));
    let (stop, stopped) = oneshot::channel::<()>();
    tokio::spawn(riffle_server::grpc::serve(catalog, listener, async {
        let _ = stopped.await;
    }));
    Server {
        endpoint,
        _stop: stop,
        _data: data,
    }
}

async fn within<F: std::future::Future>(future: F) -> F::Output {
    tokio::time::timeout(Duration::from_secs(30), future)
        .await
        .expect("timed out")
}

async fn stream_command(client: &mut Client, args: &[&str]) -> anyhow::Result<String> {
    let ClientCommand::Stream(command) = parse(args) else {
        panic!("not a stream command: {args:?}");
    };
    let mut out = Vec::new();
    within(stream::execute(client, command, &mut out)).await?;
    Ok(String::from_utf8(out).expect("UTF-8 output"))
}

async fn tail_all(client: &mut Client, args: &[&str]) -> String {
    let ClientCommand::Tail(args) = parse(args) else {
        panic!("not tail: {args:?}");
    };
    let mut out = Vec::new();
    within(tail::tail(client, &args, &mut out))
        .await
        .expect("tail");
    String::from_utf8(out).expect("UTF-8 output")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn manages_writes_and_reads_a_stream() {
    let server = server().await;
    let connection = Connection {
        endpoint: server.endpoint.clone(),
    };
    let client = &mut connection.connect().await.expect("connects");

    let created = stream_command(client, &["stream", "create", "orders", "--shards", "2"]).await;
    assert_eq!(
        created.expect("create"),
        "created stream orders with 2 shards\n"
    );
    let listed = stream_command(client, &["stream", "list"]).await;
    assert_eq!(listed.expect("list"), "orders\n");

    // Arguments: one record each, with the key given, printed with where they went.
    let ClientCommand::Put(args) = parse(&["put", "orders", "-k", "same", "a", "b", "c"]) else {
        panic!("not put");
    };
    let records = args
        .data
        .iter()
        .map(|d| put::record(args.partition_key.as_deref(), bytes::Bytes::from(d.clone())))
        .collect();
    let mut out = Vec::new();
    within(put::put_arguments(client, "orders", records, &mut out))
        .await
        .expect("put arguments");
    let placed = String::from_utf8(out).expect("UTF-8");
    let placed: Vec<&str> = placed.lines().collect();
    assert_eq!(placed.len(), 3);
    let shard = placed[0].split("  ").next().expect("a shard id");
    assert!(
        placed.iter().all(|line| line.starts_with(shard)),
        "{placed:?}"
    );

    // Standard input: one record per line, random keys.
    let input: String = (0..1200).map(|i| format!("line-{i}\r\n")).collect();
    let summary = within(put::put_lines(
        client,
        "orders",
        None,
        std::io::Cursor::new(input.into_bytes()),
        false,
    ))
    .await
    .expect("put lines");
    assert_eq!(summary.records, 1200);
    assert_eq!(
        summary.bytes,
        (0..1200)
            .map(|i| format!("line-{i}").len() as u64)
            .sum::<u64>()
    );

    let text = tail_all(
        client,
        &["tail", "orders", "--from", "trim-horizon", "--no-follow"],
    )
    .await;
    let lines: Vec<&str> = text.lines().collect();
    assert_eq!(lines.len(), 1203);
    let same: Vec<&str> = lines
        .iter()
        .filter(|l| l.split("  ").nth(2) == Some("same"))
        .map(|l| l.rsplit("  ").next().unwrap_or_default())
        .collect();
    assert_eq!(same, ["a", "b", "c"], "one key's records in order");
    for i in [0, 599, 1199] {
        assert!(
            lines.iter().any(|l| l.ends_with(&format!("  line-{i}"))),
            "line-{i}"
        );
    }
    let shards: std::collections::BTreeSet<&str> =
        lines.iter().filter_map(|l| l.split("  ").next()).collect();
    assert_eq!(shards.len(), 2, "random keys reach both shards");

    let described = stream_command(client, &["stream", "describe", "orders"]).await;
    let described = described.expect("describe");
    assert!(
        described.starts_with("orders  ACTIVE  2 open shards"),
        "{described}"
    );
    assert!(
        described.contains("shardId-000000000001  open   80000000..ffffffff  50.0%  -"),
        "{described}"
    );

    let scaled = stream_command(client, &["stream", "scale", "orders", "--shards", "4"]).await;
    assert_eq!(scaled.expect("scale"), "orders: 4 open shards (was 2)\n");
    let described = stream_command(client, &["stream", "describe", "orders"]).await;
    assert!(described.expect("describe").contains("closed"));

    let json = tail_all(
        client,
        &[
            "tail",
            "orders",
            "--from",
            "trim-horizon",
            "--no-follow",
            "--format",
            "json",
        ],
    )
    .await;
    let values: Vec<serde_json::Value> = json
        .lines()
        .map(|l| serde_json::from_str(l).expect("JSON line"))
        .collect();
    assert_eq!(values.len(), 1203);
    assert!(
        values
            .iter()
            .all(|v| v["data"].is_string() && v["sequenceNumber"].is_string())
    );

    let deleted = stream_command(client, &["stream", "delete", "orders"]).await;
    assert_eq!(deleted.expect("delete"), "deleted stream orders\n");
    let missing = stream_command(client, &["stream", "describe", "orders"])
        .await
        .expect_err("deleted");
    assert_eq!(
        missing.to_string(),
        format!(
            "stream orders not found (is the server running at {}?)",
            server.endpoint
        )
    );
    let invalid_name = stream_command(client, &["stream", "create", "bad name"]).await;
    let message = invalid_name.expect_err("invalid name").to_string();
    assert!(!message.contains("Exception"), "{message}");
    assert!(!message.contains('\n'), "{message}");
}

#[tokio::test]
async fn explains_an_unreachable_server() {
    // A port that was just free: nothing listens there.
    let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
    let endpoint = format!("http://{}", listener.local_addr().expect("address"));
    drop(listener);
    let error = within(
        Connection {
            endpoint: endpoint.clone(),
        }
        .connect(),
    )
    .await
    .err()
    .expect("nothing listens");
    let message = error.to_string();
    assert!(
        message.starts_with(&format!("cannot reach the riffle server at {endpoint} (")),
        "{message}"
    );
    assert!(message.ends_with("is it running?"), "{message}");
    let invalid = Connection {
        endpoint: "not a url".into(),
    }
    .connect()
    .await
    .err()
    .expect("invalid");
    assert!(invalid.to_string().starts_with("invalid endpoint"));
}
