"""Stream lifecycle: CreateStream, DescribeStream(Summary), ListStreams, DeleteStream."""

import datetime as dt
import re
import uuid

import pytest
from botocore.exceptions import ClientError

from conftest import (
    ACCOUNT,
    MAX_HASH_KEY,
    create_stream,
    error_code,
    error_message,
    stream_arn,
    wait_for,
)

SHARD_ID = re.compile(r"^shardId-\d{12}$")


def _ranges(shards):
    return [
        (int(s["HashKeyRange"]["StartingHashKey"]), int(s["HashKeyRange"]["EndingHashKey"]))
        for s in shards
    ]


def test_create_then_describe(kinesis, stream_name):
    before = dt.datetime.now(dt.timezone.utc) - dt.timedelta(seconds=5)
    kinesis.create_stream(StreamName=stream_name, ShardCount=3)
    desc = kinesis.describe_stream(StreamName=stream_name)["StreamDescription"]
    after = dt.datetime.now(dt.timezone.utc) + dt.timedelta(seconds=5)

    assert desc["StreamName"] == stream_name
    assert desc["StreamARN"] == f"arn:aws:kinesis:us-east-1:000000000000:stream/{stream_name}"
    assert desc["StreamStatus"] == "ACTIVE"  # no CREATING delay
    assert desc["HasMoreShards"] is False
    assert desc["RetentionPeriodHours"] == 24
    assert before <= desc["StreamCreationTimestamp"] <= after
    assert desc["StreamModeDetails"] == {"StreamMode": "PROVISIONED"}
    assert desc.get("EncryptionType", "NONE") == "NONE"
    assert desc["EnhancedMonitoring"] == [{"ShardLevelMetrics": []}]

    ids = [s["ShardId"] for s in desc["Shards"]]
    assert ids == ["shardId-000000000000", "shardId-000000000001", "shardId-000000000002"]
    for shard in desc["Shards"]:
        assert SHARD_ID.match(shard["ShardId"])
        assert "ParentShardId" not in shard
        assert "AdjacentParentShardId" not in shard
        seq_range = shard["SequenceNumberRange"]
        assert int(seq_range["StartingSequenceNumber"]) >= 0
        assert "EndingSequenceNumber" not in seq_range


def test_three_shards_use_the_kinesis_hash_ranges(kinesis, stream_name):
    create_stream(kinesis, stream_name, 3)
    shards = kinesis.describe_stream(StreamName=stream_name)["StreamDescription"]["Shards"]
    assert _ranges(shards) == [
        (0, 113427455640312821154458202477256070484),
        (113427455640312821154458202477256070485, 226854911280625642308916404954512140969),
        (226854911280625642308916404954512140970, MAX_HASH_KEY),
    ]


@pytest.mark.parametrize("count", [1, 2, 5, 7, 16])
def test_hash_ranges_split_evenly_and_cover_the_space(kinesis, stream_name, count):
    create_stream(kinesis, stream_name, count)
    shards = kinesis.list_shards(StreamName=stream_name)["Shards"]
    assert [s["ShardId"] for s in shards] == [f"shardId-{i:012d}" for i in range(count)]
    ranges = _ranges(shards)
    assert ranges[0][0] == 0
    assert ranges[-1][1] == MAX_HASH_KEY
    for (_, end), (start, _) in zip(ranges, ranges[1:]):
        assert start == end + 1, "hash ranges must be contiguous"
    widths = [end - start + 1 for start, end in ranges]
    assert max(widths) - min(widths) <= count, f"uneven split: {widths}"
    # Hash key strings are plain decimals.
    for s in shards:
        for key in ("StartingHashKey", "EndingHashKey"):
            assert re.fullmatch(r"0|[1-9]\d{0,38}", s["HashKeyRange"][key])


def test_describe_stream_summary(kinesis, stream_name):
    create_stream(kinesis, stream_name, 4)
    summary = kinesis.describe_stream_summary(StreamName=stream_name)["StreamDescriptionSummary"]
    assert summary["StreamName"] == stream_name
    assert summary["StreamARN"] == stream_arn(stream_name)
    assert summary["StreamStatus"] == "ACTIVE"
    assert summary["OpenShardCount"] == 4
    assert summary["RetentionPeriodHours"] == 24
    assert summary["ConsumerCount"] == 0
    assert summary["StreamModeDetails"] == {"StreamMode": "PROVISIONED"}
    assert summary.get("EncryptionType", "NONE") == "NONE"
    assert summary["EnhancedMonitoring"] == [{"ShardLevelMetrics": []}]
    assert isinstance(summary["StreamCreationTimestamp"], dt.datetime)


def test_describe_stream_pages_shards(kinesis, stream_name):
    create_stream(kinesis, stream_name, 5)
    first = kinesis.describe_stream(StreamName=stream_name, Limit=2)["StreamDescription"]
    assert [s["ShardId"] for s in first["Shards"]] == [
        "shardId-000000000000",
        "shardId-000000000001",
    ]
    assert first["HasMoreShards"] is True
    rest = kinesis.describe_stream(
        StreamName=stream_name, ExclusiveStartShardId="shardId-000000000001"
    )["StreamDescription"]
    assert [s["ShardId"] for s in rest["Shards"]] == [
        "shardId-000000000002",
        "shardId-000000000003",
        "shardId-000000000004",
    ]
    assert rest["HasMoreShards"] is False


def test_duplicate_create_is_resource_in_use(kinesis, stream_name):
    create_stream(kinesis, stream_name, 1)
    with pytest.raises(ClientError) as e:
        kinesis.create_stream(StreamName=stream_name, ShardCount=1)
    assert error_code(e.value) == "ResourceInUseException"
    assert error_message(e.value) == (
        f"Stream {stream_name} under account {ACCOUNT} already exists."
    )
    assert e.value.response["ResponseMetadata"]["HTTPStatusCode"] == 400


@pytest.mark.parametrize(
    "call",
    [
        lambda c, n: c.describe_stream(StreamName=n),
        lambda c, n: c.describe_stream_summary(StreamName=n),
        lambda c, n: c.delete_stream(StreamName=n),
        lambda c, n: c.list_shards(StreamName=n),
    ],
    ids=["DescribeStream", "DescribeStreamSummary", "DeleteStream", "ListShards"],
)
def test_missing_stream_is_resource_not_found_with_aws_message(kinesis, stream_name, call):
    with pytest.raises(ClientError) as e:
        call(kinesis, stream_name)
    assert error_code(e.value) == "ResourceNotFoundException"
    assert error_message(e.value) == f"Stream {stream_name} under account {ACCOUNT} not found."
    assert e.value.response["ResponseMetadata"]["HTTPStatusCode"] == 400


@pytest.mark.parametrize(
    "call",
    [
        lambda c, n: c.put_record(StreamName=n, Data=b"x", PartitionKey="k"),
        lambda c, n: c.put_records(StreamName=n, Records=[{"Data": b"x", "PartitionKey": "k"}]),
        lambda c, n: c.get_shard_iterator(
            StreamName=n, ShardId="shardId-000000000000", ShardIteratorType="TRIM_HORIZON"
        ),
        lambda c, n: c.list_tags_for_stream(StreamName=n),
    ],
    ids=["PutRecord", "PutRecords", "GetShardIterator", "ListTagsForStream"],
)
def test_data_calls_on_missing_stream_are_resource_not_found(kinesis, stream_name, call):
    with pytest.raises(ClientError) as e:
        call(kinesis, stream_name)
    assert error_code(e.value) == "ResourceNotFoundException"
    assert stream_name in error_message(e.value)


@pytest.mark.parametrize(
    "bad_name",
    ["x" * 129, "has space", "slash/name", "star*", "ünicode", ""],
    ids=["too-long", "space", "slash", "star", "non-ascii", "empty"],
)
def test_invalid_stream_names_are_validation_errors(raw_kinesis, bad_name):
    with pytest.raises(ClientError) as e:
        raw_kinesis.create_stream(StreamName=bad_name, ShardCount=1)
    assert error_code(e.value) == "ValidationException"
    assert error_message(e.value).startswith("1 validation error detected: ")
    assert "at 'streamName' failed to satisfy constraint" in error_message(e.value)
    assert raw_kinesis.list_streams()["StreamNames"].count(bad_name) == 0


def test_longest_valid_name_is_accepted(kinesis):
    name = ("a.b_c-" + uuid.uuid4().hex) * 10
    name = name[:128]
    create_stream(kinesis, name, 1)
    assert kinesis.describe_stream_summary(StreamName=name)["StreamDescriptionSummary"][
        "StreamName"
    ] == name


@pytest.mark.parametrize("count", [0, -1])
def test_non_positive_shard_count_is_validation_error(raw_kinesis, stream_name, count):
    with pytest.raises(ClientError) as e:
        raw_kinesis.create_stream(StreamName=stream_name, ShardCount=count)
    assert error_code(e.value) == "ValidationException"
    assert error_message(e.value) == (
        f"1 validation error detected: Value '{count}' at 'shardCount' failed to satisfy "
        "constraint: Member must have value greater than or equal to 1"
    )
    with pytest.raises(ClientError) as e:
        raw_kinesis.describe_stream_summary(StreamName=stream_name)
    assert error_code(e.value) == "ResourceNotFoundException"


def test_stream_arn_is_accepted_instead_of_name(kinesis, stream_name):
    create_stream(kinesis, stream_name, 2)
    arn = stream_arn(stream_name)
    assert kinesis.describe_stream(StreamARN=arn)["StreamDescription"]["StreamName"] == stream_name
    summary = kinesis.describe_stream_summary(StreamARN=arn)["StreamDescriptionSummary"]
    assert summary["StreamName"] == stream_name
    assert summary["OpenShardCount"] == 2
    assert len(kinesis.list_shards(StreamARN=arn)["Shards"]) == 2
    put = kinesis.put_record(StreamARN=arn, Data=b"via-arn", PartitionKey="k")
    it = kinesis.get_shard_iterator(
        StreamARN=arn, ShardId=put["ShardId"], ShardIteratorType="TRIM_HORIZON"
    )["ShardIterator"]
    records = kinesis.get_records(ShardIterator=it, StreamARN=arn)["Records"]
    assert [r["Data"] for r in records] == [b"via-arn"]
    kinesis.delete_stream(StreamARN=arn)
    wait_for(lambda: stream_name not in kinesis.list_streams()["StreamNames"], message="deletion")


def test_unknown_stream_arn_is_resource_not_found(kinesis, stream_name):
    with pytest.raises(ClientError) as e:
        kinesis.describe_stream_summary(StreamARN=stream_arn(stream_name))
    assert error_code(e.value) == "ResourceNotFoundException"


def test_list_streams_pages_with_limit_and_next_token(kinesis):
    prefix = f"list-{uuid.uuid4().hex[:6]}"
    names = [f"{prefix}-{i}" for i in range(5)]
    for name in names:
        create_stream(kinesis, name, 1)

    full = kinesis.list_streams()
    assert full["HasMoreStreams"] is False
    assert set(names) <= set(full["StreamNames"])
    assert full["StreamNames"] == sorted(full["StreamNames"])

    paged, token, pages = [], None, 0
    while True:
        resp = kinesis.list_streams(Limit=2, NextToken=token) if token else kinesis.list_streams(
            Limit=2
        )
        pages += 1
        assert len(resp["StreamNames"]) <= 2
        assert len(resp["StreamSummaries"]) == len(resp["StreamNames"])
        paged.extend(resp["StreamNames"])
        if not resp["HasMoreStreams"]:
            assert "NextToken" not in resp
            break
        assert resp["NextToken"]
        token = resp["NextToken"]
        assert pages < 1000
    assert paged == full["StreamNames"], "paging must return every stream exactly once, in order"
    assert pages >= 3


def test_list_streams_exclusive_start_stream_name(kinesis):
    prefix = f"excl-{uuid.uuid4().hex[:6]}"
    names = [f"{prefix}-{i}" for i in range(4)]
    for name in names:
        create_stream(kinesis, name, 1)
    resp = kinesis.list_streams(ExclusiveStartStreamName=names[1])
    assert all(n > names[1] for n in resp["StreamNames"])
    assert names[2] in resp["StreamNames"] and names[3] in resp["StreamNames"]
    assert names[0] not in resp["StreamNames"] and names[1] not in resp["StreamNames"]
    limited = kinesis.list_streams(ExclusiveStartStreamName=names[1], Limit=1)
    assert limited["StreamNames"] == [names[2]]
    assert limited["HasMoreStreams"] is True


def test_list_streams_stream_summaries(kinesis, stream_name):
    create_stream(kinesis, stream_name, 1)
    resp = kinesis.list_streams()
    summaries = {s["StreamName"]: s for s in resp["StreamSummaries"]}
    assert [s["StreamName"] for s in resp["StreamSummaries"]] == resp["StreamNames"]
    mine = summaries[stream_name]
    assert mine["StreamARN"] == stream_arn(stream_name)
    assert mine["StreamStatus"] == "ACTIVE"
    assert mine["StreamModeDetails"] == {"StreamMode": "PROVISIONED"}
    assert isinstance(mine["StreamCreationTimestamp"], dt.datetime)


def test_delete_stream_removes_it(kinesis, stream_name):
    create_stream(kinesis, stream_name, 2)
    kinesis.put_record(StreamName=stream_name, Data=b"old", PartitionKey="k")
    kinesis.delete_stream(StreamName=stream_name)

    def gone():
        try:
            status = kinesis.describe_stream_summary(StreamName=stream_name)[
                "StreamDescriptionSummary"
            ]["StreamStatus"]
            assert status == "DELETING"
            return False
        except ClientError as e:
            assert error_code(e) == "ResourceNotFoundException"
            return True

    wait_for(gone, message="stream deletion")
    assert stream_name not in kinesis.list_streams()["StreamNames"]

    # The name can be reused, and the new stream starts empty.
    create_stream(kinesis, stream_name, 1)
    it = kinesis.get_shard_iterator(
        StreamName=stream_name, ShardId="shardId-000000000000", ShardIteratorType="TRIM_HORIZON"
    )["ShardIterator"]
    assert kinesis.get_records(ShardIterator=it)["Records"] == []


def test_request_id_header_is_set(kinesis, stream_name):
    create_stream(kinesis, stream_name, 1)
    resp = kinesis.describe_stream_summary(StreamName=stream_name)
    assert resp["ResponseMetadata"]["HTTPHeaders"].get("x-amzn-requestid")
    assert resp["ResponseMetadata"]["RequestId"]
    with pytest.raises(ClientError) as e:
        kinesis.describe_stream_summary(StreamName=stream_name + "-missing")
    assert e.value.response["ResponseMetadata"]["HTTPHeaders"].get("x-amzn-requestid")


def test_shard_limit_is_limit_exceeded(kinesis, stream_name):
    open_before = kinesis.describe_limits()["OpenShardCount"]
    with pytest.raises(ClientError) as e:
        kinesis.create_stream(StreamName=stream_name, ShardCount=100_000)
    assert error_code(e.value) == "LimitExceededException"
    assert "shard limit" in error_message(e.value)
    assert kinesis.describe_limits()["OpenShardCount"] == open_before
    with pytest.raises(ClientError) as e:
        kinesis.describe_stream_summary(StreamName=stream_name)
    assert error_code(e.value) == "ResourceNotFoundException"


def test_describe_stream_returns_at_most_100_shards(kinesis, stream_name):
    create_stream(kinesis, stream_name, 120)
    first = kinesis.describe_stream(StreamName=stream_name)["StreamDescription"]
    assert len(first["Shards"]) == 100
    assert first["HasMoreShards"] is True
    rest = kinesis.describe_stream(
        StreamName=stream_name, ExclusiveStartShardId=first["Shards"][-1]["ShardId"]
    )["StreamDescription"]
    assert len(rest["Shards"]) == 20
    assert rest["HasMoreShards"] is False
    assert len(kinesis.list_shards(StreamName=stream_name)["Shards"]) == 120
    kinesis.delete_stream(StreamName=stream_name)


def test_concurrent_creates_of_one_name_have_one_winner(server, stream_name):
    import threading

    outcomes = []
    lock = threading.Lock()

    def create():
        client = server.client()
        try:
            client.create_stream(StreamName=stream_name, ShardCount=2)
            result = "created"
        except ClientError as e:
            result = error_code(e)
        with lock:
            outcomes.append(result)

    threads = [threading.Thread(target=create) for _ in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=60)
    assert sorted(outcomes) == ["ResourceInUseException"] * 7 + ["created"]
    client = server.client()
    assert client.describe_stream_summary(StreamName=stream_name)["StreamDescriptionSummary"][
        "OpenShardCount"
    ] == 2
    assert client.list_streams()["StreamNames"].count(stream_name) == 1


@pytest.mark.parametrize(
    "call, member",
    [
        (lambda c, n: c.create_stream(ShardCount=1), "streamName"),
        (lambda c, n: c.put_record(StreamName=n, PartitionKey="k"), "data"),
        (lambda c, n: c.put_records(StreamName=n), "records"),
        (lambda c, n: c.get_records(), "shardIterator"),
    ],
    ids=["CreateStream-no-name", "PutRecord-no-data", "PutRecords-no-records", "GetRecords-no-iterator"],
)
def test_missing_required_members_are_validation_errors(raw_kinesis, stream_name, call, member):
    create_stream(raw_kinesis, stream_name, 1)
    with pytest.raises(ClientError) as e:
        call(raw_kinesis, stream_name)
    assert error_code(e.value) == "ValidationException"
    assert f"at '{member}' failed to satisfy constraint: Member must not be null" in error_message(
        e.value
    )


def test_list_streams_default_page_is_100(make_server):
    srv = make_server("--throttle", "off")
    client = srv.client()
    names = [f"page-{i:03d}" for i in range(105)]
    for name in names:
        client.create_stream(StreamName=name, ShardCount=1)
    first = client.list_streams()
    assert first["StreamNames"] == names[:100]
    assert first["HasMoreStreams"] is True
    rest = client.list_streams(NextToken=first["NextToken"])
    assert rest["StreamNames"] == names[100:]
    assert rest["HasMoreStreams"] is False
