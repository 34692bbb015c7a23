"""The AWS CLI (`aws kinesis ...`) works end to end against the server."""

import base64

from conftest import aws_cli_major_version, stream_arn

# Blob arguments given as plain text: CLI v2 needs `--cli-binary-format raw-in-base64-out`
# for that; CLI v1 (the PyPI `awscli`) always treats blob text as raw bytes and has no such flag.
RAW_BLOBS = ["--cli-binary-format", "raw-in-base64-out"] if aws_cli_major_version() >= 2 else []


def test_cli_end_to_end(aws_cli, stream_name):
    assert aws_cli("create-stream", "--stream-name", stream_name, "--shard-count", "2") is None

    summary = aws_cli("describe-stream-summary", "--stream-name", stream_name)[
        "StreamDescriptionSummary"
    ]
    assert summary["StreamStatus"] == "ACTIVE"
    assert summary["OpenShardCount"] == 2
    assert summary["StreamARN"] == stream_arn(stream_name)

    assert stream_name in aws_cli("list-streams")["StreamNames"]

    put = aws_cli(
        "put-record",
        "--stream-name",
        stream_name,
        "--partition-key",
        "cli-key",
        "--data",
        "hello from the cli",
        *RAW_BLOBS,
    )
    assert put["ShardId"].startswith("shardId-")
    assert int(put["SequenceNumber"]) > 0

    it = aws_cli(
        "get-shard-iterator",
        "--stream-name",
        stream_name,
        "--shard-id",
        put["ShardId"],
        "--shard-iterator-type",
        "TRIM_HORIZON",
    )["ShardIterator"]
    got = aws_cli("get-records", "--shard-iterator", it)
    (record,) = got["Records"]
    assert base64.b64decode(record["Data"]) == b"hello from the cli"
    assert record["PartitionKey"] == "cli-key"
    assert record["SequenceNumber"] == put["SequenceNumber"]
    assert got["MillisBehindLatest"] >= 0
    assert got["NextShardIterator"]

    shards = aws_cli("list-shards", "--stream-name", stream_name)["Shards"]
    assert [s["ShardId"] for s in shards] == ["shardId-000000000000", "shardId-000000000001"]

    assert aws_cli("delete-stream", "--stream-name", stream_name) is None
    assert stream_name not in aws_cli("list-streams")["StreamNames"] or (
        aws_cli("describe-stream-summary", "--stream-name", stream_name)[
            "StreamDescriptionSummary"
        ]["StreamStatus"]
        == "DELETING"
    )


def test_cli_put_records_and_errors(aws_cli, stream_name):
    aws_cli("create-stream", "--stream-name", stream_name, "--shard-count", "1")
    out = aws_cli(
        "put-records",
        "--stream-name",
        stream_name,
        *RAW_BLOBS,
        "--records",
        "Data=one,PartitionKey=a",
        "Data=two,PartitionKey=b",
    )
    assert out["FailedRecordCount"] == 0
    assert len(out["Records"]) == 2

    proc = aws_cli("create-stream", "--stream-name", stream_name, "--shard-count", "1", check=False)
    assert proc.returncode != 0
    assert "ResourceInUseException" in proc.stderr

    proc = aws_cli("describe-stream", "--stream-name", stream_name + "-missing", check=False)
    assert proc.returncode != 0
    assert "ResourceNotFoundException" in proc.stderr
    assert f"Stream {stream_name}-missing under account 000000000000 not found." in proc.stderr
