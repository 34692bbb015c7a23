"""Enhanced fan-out: stream consumers and SubscribeToShard over the event stream."""

import re
import time

import pytest
from botocore.exceptions import ClientError

from conftest import (
    bin_supports,
    create_stream,
    error_code,
    stream_arn,
    wait_active,
    wait_for,
)


def _consumer_status(client, arn):
    return client.describe_stream_consumer(ConsumerARN=arn)["ConsumerDescription"][
        "ConsumerStatus"
    ]


def register(client, name, consumer="app"):
    consumer = client.register_stream_consumer(StreamARN=stream_arn(name), ConsumerName=consumer)[
        "Consumer"
    ]
    wait_for(
        lambda: _consumer_status(client, consumer["ConsumerARN"]) == "ACTIVE",
        message="consumer to become ACTIVE",
    )
    return consumer["ConsumerARN"]


def _events(resp, deadline_s=20.0):
    """Yields SubscribeToShardEvent payloads until the stream ends or the deadline passes."""
    stream = resp["EventStream"]
    deadline = time.monotonic() + deadline_s
    try:
        for event in stream:
            assert "SubscribeToShardEvent" in event, event
            yield event["SubscribeToShardEvent"]
            if time.monotonic() > deadline:
                return
    finally:
        stream.close()


# --------------------------------------------------------------------------------------------
# Consumer registry
# --------------------------------------------------------------------------------------------


def test_register_describe_list_deregister(kinesis, stream_name):
    create_stream(kinesis, stream_name, 1)
    sarn = stream_arn(stream_name)
    consumer = kinesis.register_stream_consumer(StreamARN=sarn, ConsumerName="reader")["Consumer"]
    assert consumer["ConsumerName"] == "reader"
    assert consumer["ConsumerStatus"] in {"CREATING", "ACTIVE"}
    m = re.fullmatch(re.escape(sarn) + r"/consumer/reader:(\d+)", consumer["ConsumerARN"])
    assert m, consumer["ConsumerARN"]
    created = consumer["ConsumerCreationTimestamp"].timestamp()
    assert abs(int(m.group(1)) - created) <= 2, "the ARN suffix is the creation epoch (seconds)"
    arn = consumer["ConsumerARN"]
    wait_for(lambda: _consumer_status(kinesis, arn) == "ACTIVE", message="consumer ACTIVE")

    by_arn = kinesis.describe_stream_consumer(ConsumerARN=arn)["ConsumerDescription"]
    by_name = kinesis.describe_stream_consumer(StreamARN=sarn, ConsumerName="reader")[
        "ConsumerDescription"
    ]
    assert by_arn == by_name
    assert by_arn["StreamARN"] == sarn
    assert by_arn["ConsumerARN"] == arn
    assert by_arn["ConsumerStatus"] == "ACTIVE"

    listed = kinesis.list_stream_consumers(StreamARN=sarn)["Consumers"]
    assert [(c["ConsumerName"], c["ConsumerARN"], c["ConsumerStatus"]) for c in listed] == [
        ("reader", arn, "ACTIVE")
    ]
    summary = kinesis.describe_stream_summary(StreamName=stream_name)["StreamDescriptionSummary"]
    assert summary["ConsumerCount"] == 1

    kinesis.deregister_stream_consumer(ConsumerARN=arn)

    def gone():
        try:
            assert _consumer_status(kinesis, arn) == "DELETING"
            return False
        except ClientError as e:
            assert error_code(e) == "ResourceNotFoundException"
            return True

    wait_for(gone, message="consumer deregistration")
    assert kinesis.list_stream_consumers(StreamARN=sarn)["Consumers"] == []


def test_deregister_by_stream_arn_and_name(kinesis, stream_name):
    create_stream(kinesis, stream_name, 1)
    sarn = stream_arn(stream_name)
    register(kinesis, stream_name, "by-name")
    kinesis.deregister_stream_consumer(StreamARN=sarn, ConsumerName="by-name")
    wait_for(
        lambda: kinesis.list_stream_consumers(StreamARN=sarn)["Consumers"] == [],
        message="consumer removal",
    )


def test_list_stream_consumers_paging(kinesis, stream_name):
    create_stream(kinesis, stream_name, 1)
    sarn = stream_arn(stream_name)
    for i in range(3):
        kinesis.register_stream_consumer(StreamARN=sarn, ConsumerName=f"c{i}")
    first = kinesis.list_stream_consumers(StreamARN=sarn, MaxResults=2)
    assert len(first["Consumers"]) == 2
    assert first["NextToken"]
    rest = kinesis.list_stream_consumers(StreamARN=sarn, NextToken=first["NextToken"])
    names = [c["ConsumerName"] for c in first["Consumers"] + rest["Consumers"]]
    assert sorted(names) == ["c0", "c1", "c2"]
    assert not rest.get("NextToken")


def test_duplicate_consumer_is_resource_in_use(kinesis, stream_name):
    create_stream(kinesis, stream_name, 1)
    register(kinesis, stream_name, "dup")
    with pytest.raises(ClientError) as e:
        kinesis.register_stream_consumer(StreamARN=stream_arn(stream_name), ConsumerName="dup")
    assert error_code(e.value) == "ResourceInUseException"


def test_at_most_20_consumers_per_stream(kinesis, stream_name):
    create_stream(kinesis, stream_name, 1)
    sarn = stream_arn(stream_name)
    for i in range(20):
        kinesis.register_stream_consumer(StreamARN=sarn, ConsumerName=f"c{i:02d}")
    with pytest.raises(ClientError) as e:
        kinesis.register_stream_consumer(StreamARN=sarn, ConsumerName="c20")
    assert error_code(e.value) == "LimitExceededException"
    consumers, token = [], None
    for _ in range(20):
        page = (
            kinesis.list_stream_consumers(StreamARN=sarn, NextToken=token)
            if token
            else kinesis.list_stream_consumers(StreamARN=sarn)
        )
        consumers.extend(page["Consumers"])
        token = page.get("NextToken")
        if not token:
            break
    assert sorted(c["ConsumerName"] for c in consumers) == [f"c{i:02d}" for i in range(20)]


def test_consumer_errors(kinesis, raw_kinesis, stream_name):
    with pytest.raises(ClientError) as e:
        kinesis.register_stream_consumer(StreamARN=stream_arn(stream_name), ConsumerName="x")
    assert error_code(e.value) == "ResourceNotFoundException"
    create_stream(kinesis, stream_name, 1)
    with pytest.raises(ClientError) as e:
        kinesis.describe_stream_consumer(StreamARN=stream_arn(stream_name), ConsumerName="nope")
    assert error_code(e.value) == "ResourceNotFoundException"
    with pytest.raises(ClientError) as e:
        kinesis.describe_stream_consumer(
            ConsumerARN=stream_arn(stream_name) + "/consumer/nope:1700000000"
        )
    assert error_code(e.value) == "ResourceNotFoundException"
    with pytest.raises(ClientError) as e:
        raw_kinesis.register_stream_consumer(
            StreamARN=stream_arn(stream_name), ConsumerName="bad name!"
        )
    assert error_code(e.value) == "ValidationException"


def test_delete_stream_with_consumers_needs_enforcement(kinesis, stream_name):
    create_stream(kinesis, stream_name, 1)
    register(kinesis, stream_name, "holder")
    with pytest.raises(ClientError) as e:
        kinesis.delete_stream(StreamName=stream_name)
    assert error_code(e.value) == "ResourceInUseException"
    kinesis.delete_stream(StreamName=stream_name, EnforceConsumerDeletion=True)
    wait_for(
        lambda: stream_name not in kinesis.list_streams()["StreamNames"], message="deletion"
    )


# --------------------------------------------------------------------------------------------
# SubscribeToShard
# --------------------------------------------------------------------------------------------


def test_subscribe_delivers_old_and_new_records(kinesis, stream_name):
    create_stream(kinesis, stream_name, 1)
    shard = "shardId-000000000000"
    before = [
        kinesis.put_record(StreamName=stream_name, Data=b"before-%d" % i, PartitionKey="k")[
            "SequenceNumber"
        ]
        for i in range(3)
    ]
    arn = register(kinesis, stream_name)
    resp = kinesis.subscribe_to_shard(
        ConsumerARN=arn, ShardId=shard, StartingPosition={"Type": "TRIM_HORIZON"}
    )
    assert resp["ResponseMetadata"]["HTTPStatusCode"] == 200

    received, continuation, after = [], None, []
    for event in _events(resp):
        assert isinstance(event["MillisBehindLatest"], int) and event["MillisBehindLatest"] >= 0
        received.extend(event["Records"])
        continuation = event["ContinuationSequenceNumber"]
        if event["Records"]:
            assert int(continuation) >= int(event["Records"][-1]["SequenceNumber"])
        if len(received) == 3 and not after:
            after = [
                kinesis.put_record(StreamName=stream_name, Data=b"after-%d" % i, PartitionKey="k")[
                    "SequenceNumber"
                ]
                for i in range(2)
            ]
        if len(received) >= 5:
            break

    assert [r["Data"] for r in received] == [
        b"before-0",
        b"before-1",
        b"before-2",
        b"after-0",
        b"after-1",
    ]
    assert [r["SequenceNumber"] for r in received] == before + after
    for r in received:
        assert r["PartitionKey"] == "k"
        assert r["ApproximateArrivalTimestamp"]
    assert int(continuation) >= int(after[-1])


def test_subscribe_at_sequence_number_and_latest(kinesis, stream_name):
    create_stream(kinesis, stream_name, 2)
    seqs = [
        kinesis.put_record(
            StreamName=stream_name, Data=b"r%d" % i, PartitionKey="k", ExplicitHashKey="0"
        )["SequenceNumber"]
        for i in range(4)
    ]
    arn = register(kinesis, stream_name)
    resp = kinesis.subscribe_to_shard(
        ConsumerARN=arn,
        ShardId="shardId-000000000000",
        StartingPosition={"Type": "AFTER_SEQUENCE_NUMBER", "SequenceNumber": seqs[1]},
    )
    got = []
    for event in _events(resp):
        got.extend(r["Data"] for r in event["Records"])
        if len(got) >= 2:
            break
    assert got == [b"r2", b"r3"]

    # Another shard (no 5-second rule across shards): LATEST sees only new records.
    kinesis.put_record(
        StreamName=stream_name, Data=b"old", PartitionKey="k", ExplicitHashKey=str(2**128 - 1)
    )
    resp = kinesis.subscribe_to_shard(
        ConsumerARN=arn, ShardId="shardId-000000000001", StartingPosition={"Type": "LATEST"}
    )
    got, sent = [], False
    for event in _events(resp):
        got.extend(r["Data"] for r in event["Records"])
        if not sent:
            kinesis.put_record(
                StreamName=stream_name,
                Data=b"new",
                PartitionKey="k",
                ExplicitHashKey=str(2**128 - 1),
            )
            sent = True
        if got:
            break
    assert got == [b"new"]


def test_continuation_sequence_number_resumes_without_gaps_or_repeats(kinesis, stream_name):
    create_stream(kinesis, stream_name, 1)
    shard = "shardId-000000000000"
    for i in range(6):
        kinesis.put_record(StreamName=stream_name, Data=b"c%d" % i, PartitionKey="k")
    first_consumer = register(kinesis, stream_name, "first")
    resp = kinesis.subscribe_to_shard(
        ConsumerARN=first_consumer, ShardId=shard, StartingPosition={"Type": "TRIM_HORIZON"}
    )
    seen, continuation = [], None
    for event in _events(resp):
        seen.extend(r["Data"] for r in event["Records"])
        continuation = event["ContinuationSequenceNumber"]
        if seen:
            break
    assert seen and seen == [b"c%d" % i for i in range(len(seen))]
    for i in range(6, 8):
        kinesis.put_record(StreamName=stream_name, Data=b"c%d" % i, PartitionKey="k")

    # A second consumer (the 5-second rule is per consumer and shard) resumes after the
    # checkpoint and gets exactly the rest.
    second_consumer = register(kinesis, stream_name, "second")
    resp = kinesis.subscribe_to_shard(
        ConsumerARN=second_consumer,
        ShardId=shard,
        StartingPosition={"Type": "AFTER_SEQUENCE_NUMBER", "SequenceNumber": continuation},
    )
    rest = []
    for event in _events(resp):
        rest.extend(r["Data"] for r in event["Records"])
        if len(seen) + len(rest) >= 8:
            break
    assert seen + rest == [b"c%d" % i for i in range(8)]


def test_resubscribe_within_five_seconds_is_resource_in_use(kinesis, stream_name):
    create_stream(kinesis, stream_name, 1)
    kinesis.put_record(StreamName=stream_name, Data=b"x", PartitionKey="k")
    arn = register(kinesis, stream_name)
    shard = "shardId-000000000000"
    first = kinesis.subscribe_to_shard(
        ConsumerARN=arn, ShardId=shard, StartingPosition={"Type": "TRIM_HORIZON"}
    )
    event = next(_events(first))
    assert [r["Data"] for r in event["Records"]] == [b"x"]

    with pytest.raises(ClientError) as e:
        again = kinesis.subscribe_to_shard(
            ConsumerARN=arn, ShardId=shard, StartingPosition={"Type": "TRIM_HORIZON"}
        )
        next(_events(again))
    assert error_code(e.value) == "ResourceInUseException"


def test_subscribe_with_unknown_consumer_is_not_found(kinesis, stream_name):
    create_stream(kinesis, stream_name, 1)
    with pytest.raises(ClientError) as e:
        resp = kinesis.subscribe_to_shard(
            ConsumerARN=stream_arn(stream_name) + "/consumer/ghost:1700000000",
            ShardId="shardId-000000000000",
            StartingPosition={"Type": "TRIM_HORIZON"},
        )
        next(_events(resp))
    assert error_code(e.value) == "ResourceNotFoundException"


def test_subscribe_to_closed_shard_ends_with_child_shards(kinesis, stream_name):
    create_stream(kinesis, stream_name, 1)
    kinesis.put_record(StreamName=stream_name, Data=b"parent", PartitionKey="k")
    kinesis.split_shard(
        StreamName=stream_name, ShardToSplit="shardId-000000000000", NewStartingHashKey=str(2**127)
    )
    wait_active(kinesis, stream_name)
    arn = register(kinesis, stream_name)
    resp = kinesis.subscribe_to_shard(
        ConsumerARN=arn,
        ShardId="shardId-000000000000",
        StartingPosition={"Type": "TRIM_HORIZON"},
    )
    records, children, events_after_children = [], None, 0
    for event in _events(resp):
        if children is not None:
            events_after_children += 1
        records.extend(r["Data"] for r in event["Records"])
        if event.get("ChildShards"):
            children = event["ChildShards"]
    assert records == [b"parent"]
    assert children is not None, "the end of a closed shard carries ChildShards"
    assert sorted(c["ShardId"] for c in children) == [
        "shardId-000000000001",
        "shardId-000000000002",
    ]
    assert all(c["ParentShards"] == ["shardId-000000000000"] for c in children)
    assert events_after_children == 0, "the subscription ends after the ChildShards event"


def test_subscription_ends_by_itself(make_server, stream_name):
    """The server closes a subscription after its lifetime; the client's iteration ends."""
    args = ["--throttle", "off"]
    short = bin_supports("--subscription-secs")
    if short:
        args += ["--subscription-secs", "2"]
    srv = make_server(*args)
    client = srv.client()
    create_stream(client, stream_name, 1)
    client.put_record(StreamName=stream_name, Data=b"x", PartitionKey="k")
    arn = register(client, stream_name)
    resp = client.subscribe_to_shard(
        ConsumerARN=arn, ShardId="shardId-000000000000", StartingPosition={"Type": "TRIM_HORIZON"}
    )
    started = time.monotonic()
    got = []
    for event in resp["EventStream"]:
        got.extend(r["Data"] for r in event["SubscribeToShardEvent"]["Records"])
        if not short and got:
            resp["EventStream"].close()
            break
    assert got == [b"x"]
    if short:
        elapsed = time.monotonic() - started
        assert 1.0 <= elapsed <= 30, f"a 2 s subscription lasted {elapsed:.1f}s"
