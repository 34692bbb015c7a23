"""Data plane: PutRecord, PutRecords, GetShardIterator, GetRecords."""

import base64
import datetime as dt
import os
import time

import pytest
from botocore.exceptions import ClientError

from conftest import (
    MAX_HASH_KEY,
    create_stream,
    error_code,
    error_message,
    hash_of,
    list_all_shards,
    read_shard,
    shard_for_hash,
    wait_for,
)

MiB = 1024 * 1024


def _iterator(client, name, shard_id, kind, **kwargs):
    return client.get_shard_iterator(
        StreamName=name, ShardId=shard_id, ShardIteratorType=kind, **kwargs
    )["ShardIterator"]


# --------------------------------------------------------------------------------------------
# Routing
# --------------------------------------------------------------------------------------------


def test_put_record_routes_by_md5_of_partition_key(kinesis, stream_name):
    create_stream(kinesis, stream_name, 4)
    shards = list_all_shards(kinesis, stream_name)
    expected = {}
    for i in range(60):
        key = f"partition-{i}"
        data = f"payload-{i}".encode()
        resp = kinesis.put_record(StreamName=stream_name, Data=data, PartitionKey=key)
        assert resp["ShardId"] == shard_for_hash(shards, hash_of(key)), key
        expected[data] = (resp["ShardId"], key, resp["SequenceNumber"])
    assert len({shard for shard, _, _ in expected.values()}) == 4, "60 keys should hit all shards"

    seen = 0
    for shard in shards:
        for record in read_shard(kinesis, stream_name, shard["ShardId"]):
            shard_id, key, seq = expected[record["Data"]]
            assert shard_id == shard["ShardId"]
            assert record["PartitionKey"] == key
            assert record["SequenceNumber"] == seq
            seen += 1
    assert seen == 60


def test_unicode_partition_key_hashes_utf8(kinesis, stream_name):
    create_stream(kinesis, stream_name, 8)
    shards = list_all_shards(kinesis, stream_name)
    for key in ["ключ", "键值", "🔑-emoji", "café"]:
        resp = kinesis.put_record(StreamName=stream_name, Data=b"u", PartitionKey=key)
        assert resp["ShardId"] == shard_for_hash(shards, hash_of(key)), key


def test_explicit_hash_key_overrides_partition_key(kinesis, stream_name):
    create_stream(kinesis, stream_name, 3)
    shards = list_all_shards(kinesis, stream_name)
    starts = [int(s["HashKeyRange"]["StartingHashKey"]) for s in shards]
    ends = [int(s["HashKeyRange"]["EndingHashKey"]) for s in shards]
    cases = {
        0: "shardId-000000000000",
        ends[0]: "shardId-000000000000",
        starts[1]: "shardId-000000000001",
        ends[1]: "shardId-000000000001",
        starts[2]: "shardId-000000000002",
        MAX_HASH_KEY: "shardId-000000000002",
    }
    for hash_key, shard_id in cases.items():
        # A partition key whose MD5 lands elsewhere, to prove the explicit key wins.
        key = next(
            f"k{i}" for i in range(1000) if shard_for_hash(shards, hash_of(f"k{i}")) != shard_id
        )
        resp = kinesis.put_record(
            StreamName=stream_name, Data=b"e", PartitionKey=key, ExplicitHashKey=str(hash_key)
        )
        assert resp["ShardId"] == shard_id, hash_key
        batch = kinesis.put_records(
            StreamName=stream_name,
            Records=[{"Data": b"e", "PartitionKey": key, "ExplicitHashKey": str(hash_key)}],
        )
        assert batch["Records"][0]["ShardId"] == shard_id, hash_key


@pytest.mark.parametrize(
    "bad, codes",
    [
        (str(2**128), {"InvalidArgumentException"}),
        ("-1", {"ValidationException", "InvalidArgumentException"}),
        ("12ab", {"ValidationException", "InvalidArgumentException"}),
        ("", {"ValidationException", "InvalidArgumentException"}),
    ],
    ids=["2^128", "negative", "not-a-number", "empty"],
)
def test_invalid_explicit_hash_key_is_rejected(raw_kinesis, stream_name, bad, codes):
    create_stream(raw_kinesis, stream_name, 1)
    with pytest.raises(ClientError) as e:
        raw_kinesis.put_record(
            StreamName=stream_name, Data=b"x", PartitionKey="k", ExplicitHashKey=bad
        )
    assert error_code(e.value) in codes
    # In PutRecords an invalid entry fails the whole request, not just the entry.
    with pytest.raises(ClientError) as e:
        raw_kinesis.put_records(
            StreamName=stream_name,
            Records=[
                {"Data": b"ok", "PartitionKey": "k"},
                {"Data": b"x", "PartitionKey": "k", "ExplicitHashKey": bad},
            ],
        )
    assert error_code(e.value) in codes
    assert read_shard(raw_kinesis, stream_name, "shardId-000000000000") == []


# --------------------------------------------------------------------------------------------
# Sequence numbers and PutRecords results
# --------------------------------------------------------------------------------------------


def test_sequence_numbers_increase_per_shard(kinesis, stream_name):
    create_stream(kinesis, stream_name, 2)
    last = {}
    for i in range(30):
        resp = kinesis.put_record(StreamName=stream_name, Data=b"%d" % i, PartitionKey=f"p{i % 7}")
        seq = int(resp["SequenceNumber"])
        assert resp["SequenceNumber"] == str(seq), "sequence numbers are plain decimals"
        assert seq > last.get(resp["ShardId"], -1)
        last[resp["ShardId"]] = seq
    batch = kinesis.put_records(
        StreamName=stream_name,
        Records=[{"Data": b"b%d" % i, "PartitionKey": f"p{i % 7}"} for i in range(100)],
    )
    assert batch["FailedRecordCount"] == 0
    for entry in batch["Records"]:
        seq = int(entry["SequenceNumber"])
        assert seq > last.get(entry["ShardId"], -1), "PutRecords keeps request order per shard"
        last[entry["ShardId"]] = seq
    # Reading back gives the same order.
    for shard_id, top in last.items():
        seqs = [int(r["SequenceNumber"]) for r in read_shard(kinesis, stream_name, shard_id)]
        assert seqs == sorted(seqs) and len(set(seqs)) == len(seqs)
        assert seqs[-1] == top


def test_put_records_success_shape_and_order(kinesis, stream_name):
    create_stream(kinesis, stream_name, 4)
    shards = list_all_shards(kinesis, stream_name)
    entries = [{"Data": os.urandom(20 + i), "PartitionKey": f"order-{i}"} for i in range(200)]
    resp = kinesis.put_records(StreamName=stream_name, Records=entries)
    assert resp["FailedRecordCount"] == 0
    assert len(resp["Records"]) == len(entries)
    for entry, result in zip(entries, resp["Records"]):
        assert result["ShardId"] == shard_for_hash(shards, hash_of(entry["PartitionKey"]))
        assert int(result["SequenceNumber"]) > 0
        assert "ErrorCode" not in result and "ErrorMessage" not in result
    by_seq = {r["SequenceNumber"]: e for r, e in zip(resp["Records"], entries)}
    for shard in shards:
        for record in read_shard(kinesis, stream_name, shard["ShardId"]):
            entry = by_seq.pop(record["SequenceNumber"])
            assert record["Data"] == entry["Data"]
            assert record["PartitionKey"] == entry["PartitionKey"]
    assert by_seq == {}


def test_put_records_partial_failure_under_throttling(throttled_kinesis, stream_name):
    client = throttled_kinesis
    create_stream(client, stream_name, 2)
    # 500 entries of 5000 bytes alternate between the two shards: 1.25 MB per shard per call,
    # above the 1 MiB/s shard limit, so some entries must be refused.
    entries = [
        {
            "Data": (b"%06d" % i) + os.urandom(4994),
            "PartitionKey": f"pk{i}",
            "ExplicitHashKey": "0" if i % 2 == 0 else str(MAX_HASH_KEY),
        }
        for i in range(500)
    ]
    succeeded = {}
    failed_response = None
    for _ in range(5):
        resp = client.put_records(StreamName=stream_name, Records=entries)
        assert len(resp["Records"]) == len(entries)
        failures = [r for r in resp["Records"] if "ErrorCode" in r]
        assert resp["FailedRecordCount"] == len(failures)
        for i, (entry, result) in enumerate(zip(entries, resp["Records"])):
            if "ErrorCode" in result:
                assert result["ErrorCode"] == "ProvisionedThroughputExceededException"
                assert result["ErrorMessage"]
                assert "SequenceNumber" not in result and "ShardId" not in result
            else:
                expected_shard = "shardId-000000000000" if i % 2 == 0 else "shardId-000000000001"
                assert result["ShardId"] == expected_shard, "results must be in request order"
                succeeded[result["SequenceNumber"]] = entry["Data"]
        if failures:
            failed_response = resp
            break
    assert failed_response is not None, "2.5 MB/s into two shards was never throttled"
    # Only acknowledged entries were stored.
    stored = {}
    for shard_id in ("shardId-000000000000", "shardId-000000000001"):
        it = _iterator(client, stream_name, shard_id, "TRIM_HORIZON")
        for _ in range(200):
            try:
                resp = client.get_records(ShardIterator=it)
            except ClientError as e:  # reads are throttled too on this server
                assert error_code(e) == "ProvisionedThroughputExceededException"
                time.sleep(0.25)
                continue
            stored.update({r["SequenceNumber"]: r["Data"] for r in resp["Records"]})
            it = resp["NextShardIterator"]
            if not resp["Records"] and resp["MillisBehindLatest"] == 0:
                break
    assert stored == succeeded


def test_put_record_throttled_is_provisioned_throughput_exceeded(throttled_kinesis, stream_name):
    client = throttled_kinesis
    create_stream(client, stream_name, 1)
    data = os.urandom(900 * 1024)
    codes = []
    for _ in range(12):
        try:
            client.put_record(StreamName=stream_name, Data=data, PartitionKey="k")
        except ClientError as e:
            codes.append(error_code(e))
            break
    assert codes == ["ProvisionedThroughputExceededException"], "~10 MB in a burst must throttle"


def test_put_records_throttled_above_1000_records_per_second(throttled_kinesis, stream_name):
    client = throttled_kinesis
    create_stream(client, stream_name, 1)
    failed = 0
    for _ in range(4):
        resp = client.put_records(
            StreamName=stream_name,
            Records=[{"Data": b"tiny", "PartitionKey": "k"} for _ in range(500)],
        )
        failed += resp["FailedRecordCount"]
    assert failed > 0, "2000 records in a burst into one shard must be partly refused"
    assert failed < 2000


def test_get_records_throttled_above_five_calls_per_second(throttled_kinesis, stream_name):
    client = throttled_kinesis
    create_stream(client, stream_name, 1)
    it = _iterator(client, stream_name, "shardId-000000000000", "TRIM_HORIZON")
    throttled = 0
    for _ in range(30):
        try:
            it = client.get_records(ShardIterator=it)["NextShardIterator"]
        except ClientError as e:
            assert error_code(e) == "ProvisionedThroughputExceededException"
            throttled += 1
    assert throttled > 0, "30 GetRecords calls in a burst on one shard must be throttled"


# --------------------------------------------------------------------------------------------
# Limits
# --------------------------------------------------------------------------------------------


def test_put_records_more_than_500_entries_is_validation_error(raw_kinesis, stream_name):
    create_stream(raw_kinesis, stream_name, 1)
    with pytest.raises(ClientError) as e:
        raw_kinesis.put_records(
            StreamName=stream_name,
            Records=[{"Data": b"x", "PartitionKey": "k"} for _ in range(501)],
        )
    assert error_code(e.value) == "ValidationException"
    assert error_message(e.value).startswith("1 validation error detected: ")
    assert "Member must have length less than or equal to 500" in error_message(e.value)
    ok = raw_kinesis.put_records(
        StreamName=stream_name, Records=[{"Data": b"x", "PartitionKey": "k"} for _ in range(500)]
    )
    assert ok["FailedRecordCount"] == 0 and len(ok["Records"]) == 500


def test_put_records_empty_list_is_validation_error(raw_kinesis, stream_name):
    create_stream(raw_kinesis, stream_name, 1)
    with pytest.raises(ClientError) as e:
        raw_kinesis.put_records(StreamName=stream_name, Records=[])
    assert error_code(e.value) == "ValidationException"


def test_put_records_over_5_mib_is_rejected(raw_kinesis, stream_name):
    create_stream(raw_kinesis, stream_name, 1)
    chunk = os.urandom(MiB - 16)
    with pytest.raises(ClientError) as e:
        raw_kinesis.put_records(
            StreamName=stream_name, Records=[{"Data": chunk, "PartitionKey": "k"}] * 6
        )
    assert error_code(e.value) in {"InvalidArgumentException", "ValidationException"}
    assert read_shard(raw_kinesis, stream_name, "shardId-000000000000") == []
    # Exactly 5 MiB, partition keys included, is accepted.
    keys = [f"k{i}" for i in range(5)]
    entries = [{"Data": os.urandom(MiB - len(k)), "PartitionKey": k} for k in keys]
    ok = raw_kinesis.put_records(StreamName=stream_name, Records=entries)
    assert ok["FailedRecordCount"] == 0


def test_get_records_returns_at_most_10_mib(kinesis, stream_name):
    create_stream(kinesis, stream_name, 1)
    blobs = [os.urandom(MiB - 1) for _ in range(12)]
    for blob in blobs:
        kinesis.put_record(StreamName=stream_name, Data=blob, PartitionKey="k")
    it = _iterator(kinesis, stream_name, "shardId-000000000000", "TRIM_HORIZON")
    first = kinesis.get_records(ShardIterator=it, Limit=10000)
    size = sum(len(r["Data"]) + len(r["PartitionKey"]) for r in first["Records"])
    assert 0 < len(first["Records"]) < 12
    assert size <= 10 * MiB
    assert first["MillisBehindLatest"] >= 0
    rest = read_shard(kinesis, stream_name, "shardId-000000000000", "AFTER_SEQUENCE_NUMBER",
                      StartingSequenceNumber=first["Records"][-1]["SequenceNumber"])
    assert [r["Data"] for r in first["Records"] + rest] == blobs


def test_record_over_1_mib_is_rejected_and_1_mib_accepted(raw_kinesis, stream_name):
    create_stream(raw_kinesis, stream_name, 1)
    key = "k"
    # Data plus partition key may be exactly 1 MiB.
    exact = os.urandom(MiB - len(key))
    raw_kinesis.put_record(StreamName=stream_name, Data=exact, PartitionKey=key)
    too_big = os.urandom(MiB + 1)
    with pytest.raises(ClientError) as e:
        raw_kinesis.put_record(StreamName=stream_name, Data=too_big, PartitionKey=key)
    assert error_code(e.value) in {"InvalidArgumentException", "ValidationException"}
    with pytest.raises(ClientError) as e:
        raw_kinesis.put_records(
            StreamName=stream_name,
            Records=[{"Data": b"small", "PartitionKey": key}, {"Data": too_big, "PartitionKey": key}],
        )
    assert error_code(e.value) in {"InvalidArgumentException", "ValidationException"}
    records = read_shard(raw_kinesis, stream_name, "shardId-000000000000")
    assert [r["Data"] for r in records] == [exact]


@pytest.mark.parametrize("key", ["k" * 257, ""], ids=["257-chars", "empty"])
def test_bad_partition_key_length_is_validation_error(raw_kinesis, stream_name, key):
    create_stream(raw_kinesis, stream_name, 1)
    with pytest.raises(ClientError) as e:
        raw_kinesis.put_record(StreamName=stream_name, Data=b"x", PartitionKey=key)
    assert error_code(e.value) == "ValidationException"
    with pytest.raises(ClientError) as e:
        raw_kinesis.put_records(
            StreamName=stream_name, Records=[{"Data": b"x", "PartitionKey": key}]
        )
    assert error_code(e.value) == "ValidationException"
    # 256 characters is fine.
    raw_kinesis.put_record(StreamName=stream_name, Data=b"x", PartitionKey="k" * 256)


def test_binary_data_round_trips(kinesis, stream_name):
    create_stream(kinesis, stream_name, 1)
    blobs = [bytes(range(256)), b"\x00" * 100, os.urandom(4096), b"{\"json\": true}"]
    for blob in blobs:
        kinesis.put_record(StreamName=stream_name, Data=blob, PartitionKey="b")
    records = read_shard(kinesis, stream_name, "shardId-000000000000")
    assert [r["Data"] for r in records] == blobs


# --------------------------------------------------------------------------------------------
# GetRecords
# --------------------------------------------------------------------------------------------


def test_get_records_limit(kinesis, raw_kinesis, stream_name):
    create_stream(kinesis, stream_name, 1)
    kinesis.put_records(
        StreamName=stream_name,
        Records=[{"Data": b"%d" % i, "PartitionKey": "k"} for i in range(5)],
    )
    it = _iterator(kinesis, stream_name, "shardId-000000000000", "TRIM_HORIZON")
    got = []
    for expected_count in (1, 2, 10):
        resp = kinesis.get_records(ShardIterator=it, Limit=expected_count)
        assert len(resp["Records"]) == min(expected_count, 5 - len(got))
        got.extend(r["Data"] for r in resp["Records"])
        it = resp["NextShardIterator"]
    assert got == [b"%d" % i for i in range(5)]
    resp = kinesis.get_records(ShardIterator=it, Limit=10000)
    assert resp["Records"] == []

    for bad, codes in ((0, {"ValidationException", "InvalidArgumentException"}),
                       (10001, {"ValidationException", "InvalidArgumentException"})):
        with pytest.raises(ClientError) as e:
            raw_kinesis.get_records(ShardIterator=it, Limit=bad)
        assert error_code(e.value) in codes, bad


def test_empty_shard_reads_are_normal(kinesis, stream_name):
    create_stream(kinesis, stream_name, 1)
    it = _iterator(kinesis, stream_name, "shardId-000000000000", "TRIM_HORIZON")
    for _ in range(3):
        resp = kinesis.get_records(ShardIterator=it)
        assert resp["Records"] == []
        assert isinstance(resp["MillisBehindLatest"], int) and resp["MillisBehindLatest"] >= 0
        assert resp["NextShardIterator"]
        assert "ChildShards" not in resp or resp["ChildShards"] == []
        it = resp["NextShardIterator"]


def test_records_carry_arrival_timestamp_and_millis_behind_latest(kinesis, stream_name):
    create_stream(kinesis, stream_name, 1)
    before = dt.datetime.now(dt.timezone.utc) - dt.timedelta(seconds=2)
    kinesis.put_record(StreamName=stream_name, Data=b"t", PartitionKey="k")
    after = dt.datetime.now(dt.timezone.utc) + dt.timedelta(seconds=2)
    it = _iterator(kinesis, stream_name, "shardId-000000000000", "TRIM_HORIZON")
    resp = kinesis.get_records(ShardIterator=it)
    (record,) = resp["Records"]
    assert before <= record["ApproximateArrivalTimestamp"] <= after
    assert resp["MillisBehindLatest"] >= 0
    # Once caught up the reader is not behind.
    resp = kinesis.get_records(ShardIterator=resp["NextShardIterator"])
    assert resp["Records"] == [] and resp["MillisBehindLatest"] == 0


def test_invalid_iterator_is_invalid_argument(kinesis, raw_kinesis, stream_name):
    create_stream(kinesis, stream_name, 1)
    real = _iterator(kinesis, stream_name, "shardId-000000000000", "TRIM_HORIZON")
    tampered = real[:-4] + ("AAAA" if real[-4:] != "AAAA" else "BBBB")
    for bad in ["not-an-iterator", base64.b64encode(os.urandom(96)).decode(), tampered]:
        with pytest.raises(ClientError) as e:
            raw_kinesis.get_records(ShardIterator=bad)
        assert error_code(e.value) == "InvalidArgumentException", bad
        assert error_message(e.value) == "Invalid ShardIterator."


def test_iterator_of_deleted_stream_is_not_found(kinesis, stream_name):
    create_stream(kinesis, stream_name, 1)
    kinesis.put_record(StreamName=stream_name, Data=b"x", PartitionKey="k")
    it = _iterator(kinesis, stream_name, "shardId-000000000000", "TRIM_HORIZON")
    kinesis.delete_stream(StreamName=stream_name)
    wait_for(
        lambda: stream_name not in kinesis.list_streams()["StreamNames"], message="deletion"
    )
    with pytest.raises(ClientError) as e:
        kinesis.get_records(ShardIterator=it)
    assert error_code(e.value) == "ResourceNotFoundException"


def test_iterator_expires(make_server, stream_name):
    srv = make_server("--throttle", "off", "--iterator-ttl-secs", "1")
    client = srv.client()
    create_stream(client, stream_name, 1)
    client.put_record(StreamName=stream_name, Data=b"x", PartitionKey="k")
    it = _iterator(client, stream_name, "shardId-000000000000", "TRIM_HORIZON")
    first = client.get_records(ShardIterator=it)
    assert [r["Data"] for r in first["Records"]] == [b"x"]

    def expired():
        try:
            client.get_records(ShardIterator=it)
            return False
        except ClientError as e:
            assert error_code(e) == "ExpiredIteratorException"
            assert error_message(e).startswith("Iterator expired.")
            return True

    wait_for(expired, timeout=15, interval=0.2, message="ExpiredIteratorException")
    # A fresh iterator still works.
    fresh = _iterator(client, stream_name, "shardId-000000000000", "TRIM_HORIZON")
    assert [r["Data"] for r in client.get_records(ShardIterator=fresh)["Records"]] == [b"x"]


# --------------------------------------------------------------------------------------------
# Iterator types
# --------------------------------------------------------------------------------------------


def _put_many(client, name, prefix, n, key="k"):
    return [
        client.put_record(StreamName=name, Data=f"{prefix}{i}".encode(), PartitionKey=key)[
            "SequenceNumber"
        ]
        for i in range(n)
    ]


def test_trim_horizon_at_and_after_sequence_number(kinesis, stream_name):
    create_stream(kinesis, stream_name, 1)
    shard = "shardId-000000000000"
    seqs = _put_many(kinesis, stream_name, "r", 5)
    data = lambda recs: [r["Data"] for r in recs]  # noqa: E731

    assert data(read_shard(kinesis, stream_name, shard)) == [b"r0", b"r1", b"r2", b"r3", b"r4"]
    at = read_shard(
        kinesis, stream_name, shard, "AT_SEQUENCE_NUMBER", StartingSequenceNumber=seqs[2]
    )
    assert data(at) == [b"r2", b"r3", b"r4"]
    assert at[0]["SequenceNumber"] == seqs[2]
    after = read_shard(
        kinesis, stream_name, shard, "AFTER_SEQUENCE_NUMBER", StartingSequenceNumber=seqs[2]
    )
    assert data(after) == [b"r3", b"r4"]
    last = read_shard(
        kinesis, stream_name, shard, "AFTER_SEQUENCE_NUMBER", StartingSequenceNumber=seqs[4]
    )
    assert last == []


def test_sequence_number_iterators_need_a_sequence_number(raw_kinesis, stream_name):
    create_stream(raw_kinesis, stream_name, 1)
    for kind in ("AT_SEQUENCE_NUMBER", "AFTER_SEQUENCE_NUMBER"):
        with pytest.raises(ClientError) as e:
            raw_kinesis.get_shard_iterator(
                StreamName=stream_name, ShardId="shardId-000000000000", ShardIteratorType=kind
            )
        assert error_code(e.value) == "InvalidArgumentException", kind


def test_sequence_number_of_another_shard_is_invalid_argument(kinesis, stream_name):
    create_stream(kinesis, stream_name, 2)
    resp = kinesis.put_record(
        StreamName=stream_name, Data=b"x", PartitionKey="k", ExplicitHashKey="0"
    )
    assert resp["ShardId"] == "shardId-000000000000"
    with pytest.raises(ClientError) as e:
        kinesis.get_shard_iterator(
            StreamName=stream_name,
            ShardId="shardId-000000000001",
            ShardIteratorType="AT_SEQUENCE_NUMBER",
            StartingSequenceNumber=resp["SequenceNumber"],
        )
    assert error_code(e.value) == "InvalidArgumentException"


def test_unknown_shard_is_resource_not_found(kinesis, stream_name):
    create_stream(kinesis, stream_name, 1)
    with pytest.raises(ClientError) as e:
        _iterator(kinesis, stream_name, "shardId-000000000009", "TRIM_HORIZON")
    assert error_code(e.value) == "ResourceNotFoundException"
    assert error_message(e.value) == (
        f"Shard shardId-000000000009 in stream {stream_name} under account 000000000000 "
        "does not exist"
    )


def test_latest_then_put_then_read(kinesis, stream_name):
    create_stream(kinesis, stream_name, 1)
    shard = "shardId-000000000000"
    _put_many(kinesis, stream_name, "old", 3)
    it = _iterator(kinesis, stream_name, shard, "LATEST")
    resp = kinesis.get_records(ShardIterator=it)
    assert resp["Records"] == []
    it = resp["NextShardIterator"]
    _put_many(kinesis, stream_name, "new", 2)
    resp = kinesis.get_records(ShardIterator=it)
    assert [r["Data"] for r in resp["Records"]] == [b"new0", b"new1"]
    # An iterator taken at LATEST before the puts also sees them (it is a position, not a time).
    it2 = _iterator(kinesis, stream_name, shard, "LATEST")
    _put_many(kinesis, stream_name, "newer", 1)
    assert [r["Data"] for r in kinesis.get_records(ShardIterator=it2)["Records"]] == [b"newer0"]


def test_at_timestamp(kinesis, raw_kinesis, stream_name):
    create_stream(kinesis, stream_name, 1)
    shard = "shardId-000000000000"
    _put_many(kinesis, stream_name, "a", 3)
    first = read_shard(kinesis, stream_name, shard)
    last_a = first[-1]["ApproximateArrivalTimestamp"].timestamp()
    wait_for(lambda: time.time() > last_a + 0.05, message="clock to move past batch A")
    cut = dt.datetime.fromtimestamp(time.time(), dt.timezone.utc)
    wait_for(lambda: time.time() > cut.timestamp() + 0.05, message="clock to move past the cut")
    _put_many(kinesis, stream_name, "b", 3)

    got = read_shard(kinesis, stream_name, shard, "AT_TIMESTAMP", Timestamp=cut)
    assert [r["Data"] for r in got] == [b"b0", b"b1", b"b2"]
    everything = read_shard(
        kinesis, stream_name, shard, "AT_TIMESTAMP", Timestamp=dt.datetime(2000, 1, 1)
    )
    assert len(everything) == 6
    future = dt.datetime.now(dt.timezone.utc) + dt.timedelta(hours=1)
    assert read_shard(kinesis, stream_name, shard, "AT_TIMESTAMP", Timestamp=future) == []

    with pytest.raises(ClientError) as e:
        raw_kinesis.get_shard_iterator(
            StreamName=stream_name, ShardId=shard, ShardIteratorType="AT_TIMESTAMP"
        )
    assert error_code(e.value) == "InvalidArgumentException"


def test_iterator_is_reusable_and_next_iterator_advances(kinesis, stream_name):
    create_stream(kinesis, stream_name, 1)
    _put_many(kinesis, stream_name, "x", 4)
    it = _iterator(kinesis, stream_name, "shardId-000000000000", "TRIM_HORIZON")
    a = kinesis.get_records(ShardIterator=it, Limit=2)
    b = kinesis.get_records(ShardIterator=it, Limit=2)
    assert [r["Data"] for r in a["Records"]] == [r["Data"] for r in b["Records"]] == [b"x0", b"x1"]
    c = kinesis.get_records(ShardIterator=a["NextShardIterator"], Limit=10)
    assert [r["Data"] for r in c["Records"]] == [b"x2", b"x3"]
