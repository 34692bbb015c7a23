"""Resharding: SplitShard, MergeShards, UpdateShardCount, closed shards, ListShards filters."""

import datetime as dt
import time

import pytest
from botocore.exceptions import ClientError

from conftest import (
    MAX_HASH_KEY,
    create_stream,
    error_code,
    error_message,
    list_all_shards,
    open_shards,
    wait_active,
    wait_for,
)

S = "shardId-{:012d}".format


def _by_id(shards):
    return {s["ShardId"]: s for s in shards}


def _range(shard):
    return int(shard["HashKeyRange"]["StartingHashKey"]), int(shard["HashKeyRange"]["EndingHashKey"])


def _read_to_end(client, name, shard_id, max_calls=1000):
    """Reads a closed shard until NextShardIterator disappears; returns (records, last answer)."""
    it = client.get_shard_iterator(
        StreamName=name, ShardId=shard_id, ShardIteratorType="TRIM_HORIZON"
    )["ShardIterator"]
    records = []
    for _ in range(max_calls):
        resp = client.get_records(ShardIterator=it)
        records.extend(resp["Records"])
        it = resp.get("NextShardIterator")
        if it is None:
            return records, resp
    raise AssertionError(f"closed shard {shard_id} never returned a null NextShardIterator")


def _put(client, name, data, hash_key):
    return client.put_record(
        StreamName=name, Data=data, PartitionKey="p", ExplicitHashKey=str(hash_key)
    )


def _assert_covers_space(shards):
    ranges = sorted(_range(s) for s in shards)
    assert ranges[0][0] == 0 and ranges[-1][1] == MAX_HASH_KEY
    for (_, end), (start, _) in zip(ranges, ranges[1:]):
        assert start == end + 1


# --------------------------------------------------------------------------------------------
# SplitShard
# --------------------------------------------------------------------------------------------


def test_split_shard(kinesis, stream_name):
    create_stream(kinesis, stream_name, 2)
    parent = _by_id(list_all_shards(kinesis, stream_name))[S(0)]
    start, end = _range(parent)
    mid = (start + end) // 2
    before = [_put(kinesis, stream_name, b"before-%d" % i, start)["SequenceNumber"] for i in range(3)]

    kinesis.split_shard(StreamName=stream_name, ShardToSplit=S(0), NewStartingHashKey=str(mid))
    wait_active(kinesis, stream_name)

    shards = _by_id(list_all_shards(kinesis, stream_name))
    assert sorted(shards) == [S(0), S(1), S(2), S(3)], "children take the next free indexes"
    closed = shards[S(0)]
    ending = closed["SequenceNumberRange"].get("EndingSequenceNumber")
    assert ending is not None, "the parent is closed with an EndingSequenceNumber"
    assert int(ending) >= int(before[-1])
    assert "EndingSequenceNumber" not in shards[S(1)]["SequenceNumberRange"]

    low, high = shards[S(2)], shards[S(3)]
    assert _range(low) == (start, mid - 1)
    assert _range(high) == (mid, end)
    for child in (low, high):
        assert child["ParentShardId"] == S(0)
        assert "AdjacentParentShardId" not in child
        assert "EndingSequenceNumber" not in child["SequenceNumberRange"]
        assert int(child["SequenceNumberRange"]["StartingSequenceNumber"]) > int(ending)
    _assert_covers_space(open_shards(kinesis, stream_name))

    summary = kinesis.describe_stream_summary(StreamName=stream_name)["StreamDescriptionSummary"]
    assert summary["OpenShardCount"] == 3

    # Children take the writes now.
    assert _put(kinesis, stream_name, b"low", start)["ShardId"] == S(2)
    assert _put(kinesis, stream_name, b"low-end", mid - 1)["ShardId"] == S(2)
    assert _put(kinesis, stream_name, b"high", mid)["ShardId"] == S(3)
    assert _put(kinesis, stream_name, b"high-end", end)["ShardId"] == S(3)


def test_parent_is_readable_to_its_end_then_points_to_children(kinesis, stream_name):
    create_stream(kinesis, stream_name, 1)
    for i in range(5):
        _put(kinesis, stream_name, b"p%d" % i, 0)
    kinesis.split_shard(
        StreamName=stream_name, ShardToSplit=S(0), NewStartingHashKey=str(2**127)
    )
    wait_active(kinesis, stream_name)
    _put(kinesis, stream_name, b"child", 0)

    records, last = _read_to_end(kinesis, stream_name, S(0))
    assert [r["Data"] for r in records] == [b"p%d" % i for i in range(5)]
    assert "NextShardIterator" not in last or last["NextShardIterator"] is None
    children = sorted(last["ChildShards"], key=lambda c: c["ShardId"])
    assert [c["ShardId"] for c in children] == [S(1), S(2)]
    assert children[0]["ParentShards"] == [S(0)]
    assert children[1]["ParentShards"] == [S(0)]
    assert children[0]["HashKeyRange"] == {
        "StartingHashKey": "0",
        "EndingHashKey": str(2**127 - 1),
    }
    assert children[1]["HashKeyRange"] == {
        "StartingHashKey": str(2**127),
        "EndingHashKey": str(MAX_HASH_KEY),
    }
    # The record written after the split is in the child, not the parent.
    it = kinesis.get_shard_iterator(
        StreamName=stream_name, ShardId=S(1), ShardIteratorType="TRIM_HORIZON"
    )["ShardIterator"]
    assert [r["Data"] for r in kinesis.get_records(ShardIterator=it)["Records"]] == [b"child"]

    # A LATEST iterator on the closed parent reaches its end at once.
    it = kinesis.get_shard_iterator(
        StreamName=stream_name, ShardId=S(0), ShardIteratorType="LATEST"
    )["ShardIterator"]
    for _ in range(10):
        resp = kinesis.get_records(ShardIterator=it)
        assert resp["Records"] == []
        it = resp.get("NextShardIterator")
        if it is None:
            break
    assert it is None


@pytest.mark.parametrize(
    "key_of",
    [lambda s, e: s, lambda s, e: e + 1, lambda s, e: MAX_HASH_KEY + 1],
    ids=["at-start", "past-end", "out-of-space"],
)
def test_split_with_bad_hash_key_is_invalid_argument(raw_kinesis, stream_name, key_of):
    create_stream(raw_kinesis, stream_name, 2)
    start, end = _range(_by_id(list_all_shards(raw_kinesis, stream_name))[S(0)])
    with pytest.raises(ClientError) as e:
        raw_kinesis.split_shard(
            StreamName=stream_name, ShardToSplit=S(0), NewStartingHashKey=str(key_of(start, end))
        )
    assert error_code(e.value) == "InvalidArgumentException"
    assert len(list_all_shards(raw_kinesis, stream_name)) == 2


def test_split_unknown_or_closed_shard(kinesis, stream_name):
    create_stream(kinesis, stream_name, 1)
    with pytest.raises(ClientError) as e:
        kinesis.split_shard(StreamName=stream_name, ShardToSplit=S(7), NewStartingHashKey="5")
    assert error_code(e.value) == "ResourceNotFoundException"
    kinesis.split_shard(StreamName=stream_name, ShardToSplit=S(0), NewStartingHashKey="100")
    wait_active(kinesis, stream_name)
    with pytest.raises(ClientError) as e:
        kinesis.split_shard(StreamName=stream_name, ShardToSplit=S(0), NewStartingHashKey="50")
    assert error_code(e.value) in {"InvalidArgumentException", "ResourceInUseException"}
    assert len(list_all_shards(kinesis, stream_name)) == 3


# --------------------------------------------------------------------------------------------
# MergeShards
# --------------------------------------------------------------------------------------------


def test_merge_adjacent_shards(kinesis, stream_name):
    create_stream(kinesis, stream_name, 3)
    shards = _by_id(list_all_shards(kinesis, stream_name))
    s0, s1 = _range(shards[S(0)]), _range(shards[S(1)])
    _put(kinesis, stream_name, b"in-0", s0[0])
    _put(kinesis, stream_name, b"in-1", s1[0])

    kinesis.merge_shards(StreamName=stream_name, ShardToMerge=S(0), AdjacentShardToMerge=S(1))
    wait_active(kinesis, stream_name)

    shards = _by_id(list_all_shards(kinesis, stream_name))
    assert sorted(shards) == [S(0), S(1), S(2), S(3)]
    merged = shards[S(3)]
    assert merged["ParentShardId"] == S(0)
    assert merged["AdjacentParentShardId"] == S(1)
    assert _range(merged) == (s0[0], s1[1])
    for parent in (S(0), S(1)):
        assert "EndingSequenceNumber" in shards[parent]["SequenceNumberRange"]
    _assert_covers_space(open_shards(kinesis, stream_name))
    assert _put(kinesis, stream_name, b"merged", s0[0])["ShardId"] == S(3)
    assert _put(kinesis, stream_name, b"merged", s1[1])["ShardId"] == S(3)

    for parent, data in ((S(0), b"in-0"), (S(1), b"in-1")):
        records, last = _read_to_end(kinesis, stream_name, parent)
        assert [r["Data"] for r in records] == [data]
        assert [c["ShardId"] for c in last["ChildShards"]] == [S(3)]
        assert sorted(last["ChildShards"][0]["ParentShards"]) == [S(0), S(1)]
        assert last["ChildShards"][0]["HashKeyRange"] == merged["HashKeyRange"]


def test_merge_in_either_order(kinesis, stream_name):
    create_stream(kinesis, stream_name, 2)
    kinesis.merge_shards(StreamName=stream_name, ShardToMerge=S(1), AdjacentShardToMerge=S(0))
    wait_active(kinesis, stream_name)
    (merged,) = open_shards(kinesis, stream_name)
    assert merged["ShardId"] == S(2)
    assert _range(merged) == (0, MAX_HASH_KEY)
    assert {merged["ParentShardId"], merged["AdjacentParentShardId"]} == {S(0), S(1)}


def test_merge_non_adjacent_is_invalid_argument(kinesis, stream_name):
    create_stream(kinesis, stream_name, 3)
    with pytest.raises(ClientError) as e:
        kinesis.merge_shards(StreamName=stream_name, ShardToMerge=S(0), AdjacentShardToMerge=S(2))
    assert error_code(e.value) == "InvalidArgumentException"
    assert error_message(e.value) == (
        f"Shards {S(0)} and {S(2)} in stream {stream_name} under account 000000000000 are not "
        "an adjacent pair of shards eligible for merging"
    )
    assert len(open_shards(kinesis, stream_name)) == 3


def test_merge_children_back_together(kinesis, stream_name):
    create_stream(kinesis, stream_name, 1)
    kinesis.split_shard(StreamName=stream_name, ShardToSplit=S(0), NewStartingHashKey=str(2**100))
    wait_active(kinesis, stream_name)
    kinesis.merge_shards(StreamName=stream_name, ShardToMerge=S(1), AdjacentShardToMerge=S(2))
    wait_active(kinesis, stream_name)
    (merged,) = open_shards(kinesis, stream_name)
    assert merged["ShardId"] == S(3)
    assert _range(merged) == (0, MAX_HASH_KEY)
    assert (merged["ParentShardId"], merged["AdjacentParentShardId"]) == (S(1), S(2))
    with pytest.raises(ClientError) as e:  # closed shards cannot be merged again
        kinesis.merge_shards(StreamName=stream_name, ShardToMerge=S(1), AdjacentShardToMerge=S(2))
    assert error_code(e.value) in {"InvalidArgumentException", "ResourceInUseException"}


def test_merge_unknown_shard_is_resource_not_found(kinesis, stream_name):
    create_stream(kinesis, stream_name, 2)
    with pytest.raises(ClientError) as e:
        kinesis.merge_shards(StreamName=stream_name, ShardToMerge=S(0), AdjacentShardToMerge=S(9))
    assert error_code(e.value) == "ResourceNotFoundException"


# --------------------------------------------------------------------------------------------
# UpdateShardCount
# --------------------------------------------------------------------------------------------


def test_update_shard_count_uniform_scaling(kinesis, stream_name):
    create_stream(kinesis, stream_name, 2)
    resp = kinesis.update_shard_count(
        StreamName=stream_name, TargetShardCount=4, ScalingType="UNIFORM_SCALING"
    )
    assert resp["CurrentShardCount"] == 2
    assert resp["TargetShardCount"] == 4
    assert resp["StreamName"] == stream_name
    wait_active(kinesis, stream_name)
    opened = open_shards(kinesis, stream_name)
    assert len(opened) == 4
    _assert_covers_space(opened)
    widths = [e - s + 1 for s, e in map(_range, opened)]
    assert max(widths) - min(widths) <= 4, f"uniform scaling should split evenly: {widths}"
    summary = kinesis.describe_stream_summary(StreamName=stream_name)["StreamDescriptionSummary"]
    assert summary["OpenShardCount"] == 4
    # New shards take fresh indexes; the originals are closed, not reused.
    all_ids = [s["ShardId"] for s in list_all_shards(kinesis, stream_name)]
    assert len(all_ids) == len(set(all_ids))
    assert all(int(s["ShardId"][-12:]) >= 2 for s in opened)

    # Writes and reads still work on the new layout.
    put = kinesis.put_record(StreamName=stream_name, Data=b"after-scale", PartitionKey="x")
    assert put["ShardId"] in {s["ShardId"] for s in opened}

    kinesis.update_shard_count(
        StreamName=stream_name, TargetShardCount=2, ScalingType="UNIFORM_SCALING"
    )
    wait_active(kinesis, stream_name)
    opened = open_shards(kinesis, stream_name)
    assert len(opened) == 2
    _assert_covers_space(opened)


@pytest.mark.parametrize("target", [9, 1], ids=["above-double", "below-half"])
def test_update_shard_count_bounds(kinesis, stream_name, target):
    create_stream(kinesis, stream_name, 4)
    with pytest.raises(ClientError) as e:
        kinesis.update_shard_count(
            StreamName=stream_name, TargetShardCount=target, ScalingType="UNIFORM_SCALING"
        )
    assert error_code(e.value) in {"InvalidArgumentException", "LimitExceededException"}
    assert len(open_shards(kinesis, stream_name)) == 4


def test_update_shard_count_at_most_ten_times_a_day(kinesis, stream_name):
    create_stream(kinesis, stream_name, 1)
    for i in range(10):
        target = 2 if i % 2 == 0 else 1
        kinesis.update_shard_count(
            StreamName=stream_name, TargetShardCount=target, ScalingType="UNIFORM_SCALING"
        )
        wait_active(kinesis, stream_name)
        assert len(open_shards(kinesis, stream_name)) == target
    with pytest.raises(ClientError) as e:
        kinesis.update_shard_count(
            StreamName=stream_name, TargetShardCount=2, ScalingType="UNIFORM_SCALING"
        )
    assert error_code(e.value) == "LimitExceededException"
    assert len(open_shards(kinesis, stream_name)) == 1


def test_update_shard_count_to_edges_of_bounds(kinesis, stream_name):
    create_stream(kinesis, stream_name, 3)
    kinesis.update_shard_count(
        StreamName=stream_name, TargetShardCount=6, ScalingType="UNIFORM_SCALING"
    )
    wait_active(kinesis, stream_name)
    assert len(open_shards(kinesis, stream_name)) == 6
    kinesis.update_shard_count(
        StreamName=stream_name, TargetShardCount=3, ScalingType="UNIFORM_SCALING"
    )
    wait_active(kinesis, stream_name)
    assert len(open_shards(kinesis, stream_name)) == 3


# --------------------------------------------------------------------------------------------
# ListShards
# --------------------------------------------------------------------------------------------


@pytest.fixture
def split_stream(kinesis, stream_name):
    """Two shards, then shard 0 split: returns (name, time before split, time after split)."""
    create_stream(kinesis, stream_name, 2)
    created = kinesis.describe_stream_summary(StreamName=stream_name)["StreamDescriptionSummary"][
        "StreamCreationTimestamp"
    ].timestamp()
    wait_for(lambda: time.time() > created + 0.2, message="clock past creation")
    before = dt.datetime.fromtimestamp(time.time(), dt.timezone.utc)
    wait_for(lambda: time.time() > before.timestamp() + 0.2, message="clock past t0")
    kinesis.split_shard(StreamName=stream_name, ShardToSplit=S(0), NewStartingHashKey=str(2**64))
    wait_active(kinesis, stream_name)
    split_at = time.time()
    wait_for(lambda: time.time() > split_at + 0.2, message="clock past split")
    after = dt.datetime.fromtimestamp(time.time(), dt.timezone.utc)
    return stream_name, before, after


def _ids(resp):
    return [s["ShardId"] for s in resp["Shards"]]


def test_list_shards_without_filter_lists_all(kinesis, split_stream):
    name, _, _ = split_stream
    assert _ids(kinesis.list_shards(StreamName=name)) == [S(0), S(1), S(2), S(3)]


@pytest.mark.parametrize(
    "filter_type, expected",
    [
        ("AT_LATEST", [1, 2, 3]),
        ("AT_TRIM_HORIZON", [0, 1]),
        ("FROM_TRIM_HORIZON", [0, 1, 2, 3]),
    ],
)
def test_list_shards_filters(kinesis, split_stream, filter_type, expected):
    name, _, _ = split_stream
    resp = kinesis.list_shards(StreamName=name, ShardFilter={"Type": filter_type})
    assert _ids(resp) == [S(i) for i in expected]


def test_list_shards_after_shard_id(kinesis, split_stream):
    name, _, _ = split_stream
    resp = kinesis.list_shards(
        StreamName=name, ShardFilter={"Type": "AFTER_SHARD_ID", "ShardId": S(1)}
    )
    assert _ids(resp) == [S(2), S(3)]
    resp = kinesis.list_shards(StreamName=name, ExclusiveStartShardId=S(1))
    assert _ids(resp) == [S(2), S(3)]


def test_list_shards_timestamp_filters(kinesis, split_stream):
    name, before, after = split_stream
    at_before = kinesis.list_shards(
        StreamName=name, ShardFilter={"Type": "AT_TIMESTAMP", "Timestamp": before}
    )
    assert _ids(at_before) == [S(0), S(1)]
    at_after = kinesis.list_shards(
        StreamName=name, ShardFilter={"Type": "AT_TIMESTAMP", "Timestamp": after}
    )
    assert _ids(at_after) == [S(1), S(2), S(3)]
    from_before = kinesis.list_shards(
        StreamName=name, ShardFilter={"Type": "FROM_TIMESTAMP", "Timestamp": before}
    )
    assert _ids(from_before) == [S(0), S(1), S(2), S(3)]
    from_after = kinesis.list_shards(
        StreamName=name, ShardFilter={"Type": "FROM_TIMESTAMP", "Timestamp": after}
    )
    assert _ids(from_after) == [S(1), S(2), S(3)]


def test_list_shards_filter_missing_its_argument_is_invalid(raw_kinesis, split_stream):
    name, _, _ = split_stream
    for shard_filter in ({"Type": "AFTER_SHARD_ID"}, {"Type": "AT_TIMESTAMP"}):
        with pytest.raises(ClientError) as e:
            raw_kinesis.list_shards(StreamName=name, ShardFilter=shard_filter)
        assert error_code(e.value) == "InvalidArgumentException", shard_filter


def test_list_shards_paging(kinesis, split_stream):
    name, _, _ = split_stream
    first = kinesis.list_shards(StreamName=name, MaxResults=1)
    assert _ids(first) == [S(0)]
    assert first["NextToken"]
    seen, token = _ids(first), first["NextToken"]
    for _ in range(10):
        page = kinesis.list_shards(NextToken=token, MaxResults=1)
        assert len(page["Shards"]) == 1
        seen.extend(_ids(page))
        token = page.get("NextToken")
        if not token:
            break
    assert seen == [S(0), S(1), S(2), S(3)]

    filtered = kinesis.list_shards(
        StreamName=name, MaxResults=2, ShardFilter={"Type": "AT_LATEST"}
    )
    assert _ids(filtered) == [S(1), S(2)]
    rest = kinesis.list_shards(NextToken=filtered["NextToken"])
    assert _ids(rest) == [S(3)]
    assert not rest.get("NextToken")


def test_list_shards_next_token_with_stream_name_is_invalid(kinesis, split_stream):
    name, _, _ = split_stream
    token = kinesis.list_shards(StreamName=name, MaxResults=1)["NextToken"]
    with pytest.raises(ClientError) as e:
        kinesis.list_shards(StreamName=name, NextToken=token)
    assert error_code(e.value) == "InvalidArgumentException"


def test_list_shards_needs_a_stream(raw_kinesis):
    with pytest.raises(ClientError) as e:
        raw_kinesis.list_shards()
    assert error_code(e.value) == "InvalidArgumentException"
