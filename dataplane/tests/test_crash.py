"""Durability: every acknowledged record survives `kill -9`, intact, exactly once, in order."""

import hashlib
import random
import struct
import threading
import time
import uuid

import pytest
from botocore.exceptions import BotoCoreError, ClientError

from conftest import create_stream, list_all_shards, read_shard, wait_for

SHARDS = 4
DIGEST = 16
HEADER = struct.Struct(">4sHQI")  # magic, producer id, counter, body length
MAGIC = b"RFL1"


def make_payload(rng, producer, counter):
    body = rng.randbytes(rng.randint(0, 3000))
    head = HEADER.pack(MAGIC, producer, counter, len(body))
    return head + body + hashlib.sha256(head + body).digest()[:DIGEST]


def check_payload(data):
    """Returns (producer, counter) of a well-formed payload; fails on anything torn."""
    assert len(data) >= HEADER.size + DIGEST, f"short record ({len(data)} bytes)"
    magic, producer, counter, length = HEADER.unpack_from(data)
    assert magic == MAGIC, f"bad magic {magic!r}"
    assert len(data) == HEADER.size + length + DIGEST, "length mismatch (torn record)"
    assert hashlib.sha256(data[:-DIGEST]).digest()[:DIGEST] == data[-DIGEST:], "bad checksum"
    return producer, counter


class Producer(threading.Thread):
    """Writes unique payloads until stopped or the server goes away.

    Only records the server acknowledged are remembered, as (shard, sequence, payload).
    """

    def __init__(self, endpoint_client, name, producer_id, seed, tally):
        super().__init__(daemon=True)
        self.client = endpoint_client
        self.stream = name
        self.pid = producer_id
        self.rng = random.Random(seed)
        self.tally = tally
        self.acked = []
        self.stop = threading.Event()
        self.counter = 0
        self.error = None
        self.error_at = None

    def _next(self):
        self.counter += 1
        return make_payload(self.rng, self.pid, self.counter)

    def run(self):
        try:
            while not self.stop.is_set():
                if self.rng.random() < 0.7:
                    batch = [self._next() for _ in range(self.rng.randint(1, 60))]
                    resp = self.client.put_records(
                        StreamName=self.stream,
                        Records=[
                            {"Data": d, "PartitionKey": f"p{self.pid}-{self.rng.randint(0, 99)}"}
                            for d in batch
                        ],
                    )
                    assert len(resp["Records"]) == len(batch)
                    done = [
                        (r["ShardId"], r["SequenceNumber"], d)
                        for r, d in zip(resp["Records"], batch)
                        if "SequenceNumber" in r
                    ]
                else:
                    d = self._next()
                    r = self.client.put_record(
                        StreamName=self.stream, Data=d, PartitionKey=f"single-{self.counter}"
                    )
                    done = [(r["ShardId"], r["SequenceNumber"], d)]
                self.acked.extend(done)
                self.tally.add(len(done))
        except (BotoCoreError, ClientError, ConnectionError, OSError) as exc:
            # The server was killed under us: whatever was in flight is unacknowledged.
            self.error, self.error_at = exc, time.monotonic()
        except Exception as exc:  # noqa: BLE001 - surfaced by the test
            self.error, self.error_at = exc, time.monotonic()
            raise


class Tally:
    def __init__(self):
        self.count = 0
        self.cond = threading.Condition()

    def add(self, n):
        with self.cond:
            self.count += n
            self.cond.notify_all()

    def wait_for(self, target, timeout):
        with self.cond:
            return self.cond.wait_for(lambda: self.count >= target, timeout=timeout)


def read_everything(client, name):
    """Reads every shard from TRIM_HORIZON to its end: {shard id: [records]}."""
    return {
        s["ShardId"]: read_shard(client, name, s["ShardId"])
        for s in list_all_shards(client, name)
    }


def verify(contents, acked):
    """Asserts the durability contract; returns {shard: highest sequence number}."""
    seen = {}
    tops = {}
    for shard_id, records in contents.items():
        last = -1
        for r in records:
            seq = int(r["SequenceNumber"])
            assert seq > last, f"sequence numbers not strictly increasing in {shard_id}"
            last = seq
            key = check_payload(r["Data"])
            assert key not in seen, f"record {key} visible twice"
            seen[key] = (shard_id, r["SequenceNumber"], r["Data"])
        tops[shard_id] = last
    missing = 0
    for shard_id, seq, data in acked:
        key = check_payload(data)
        got = seen.get(key)
        if got is None:
            missing += 1
            continue
        assert got == (shard_id, seq, data), f"acknowledged record {key} changed after restart"
    assert missing == 0, f"{missing} of {len(acked)} acknowledged records lost after kill -9"
    return tops, len(seen)


@pytest.mark.parametrize("round_no", [1, 2, 3])
def test_acknowledged_records_survive_kill_9(make_server, round_no):
    rng = random.Random(1000 + round_no)
    srv = make_server("--throttle", "off")
    name = f"crash-{round_no}-{uuid.uuid4().hex[:6]}"
    create_stream(srv.client(), name, SHARDS)

    tally = Tally()
    producers = [
        Producer(srv.client(read_timeout=20), name, pid, rng.random(), tally)
        for pid in range(rng.randint(4, 8))
    ]
    target = rng.randint(2000, 6000)
    for p in producers:
        p.start()
    reached = tally.wait_for(target, timeout=90)
    killed_at = time.monotonic()
    srv.kill9()  # producers are mid-flight
    for p in producers:
        p.stop.set()
    for p in producers:
        p.join(timeout=30)
        assert not p.is_alive(), "a producer hung after the server was killed"
    for p in producers:
        if p.error is not None:
            assert p.error_at >= killed_at, f"producer {p.pid} failed before the kill: {p.error!r}"
            assert isinstance(p.error, (BotoCoreError, OSError)), repr(p.error)
    in_flight = sum(p.error is not None for p in producers)
    assert in_flight >= 1, "no producer had a request in flight when the server was killed"
    acked = [a for p in producers for a in p.acked]
    assert reached, f"only {tally.count} records acknowledged before the time limit"
    assert len(acked) >= target

    srv.start()
    client = srv.client()
    tops, total = verify(read_everything(client, name), acked)
    assert total >= len(acked)
    print(f"round {round_no}: {len(producers)} producers, {len(acked)} acknowledged, "
          f"{total} readable, {in_flight} cut mid-request")

    # The stream keeps going: new records land after the old ones and are readable.
    more = [make_payload(rng, 999, i) for i in range(300)]
    resp = client.put_records(
        StreamName=name, Records=[{"Data": d, "PartitionKey": f"after-{i}"} for i, d in enumerate(more)]
    )
    assert resp["FailedRecordCount"] == 0
    new_acked = []
    for r, d in zip(resp["Records"], more):
        assert int(r["SequenceNumber"]) > tops[r["ShardId"]], "sequence number reused after crash"
        new_acked.append((r["ShardId"], r["SequenceNumber"], d))
    verify(read_everything(client, name), acked + new_acked)


def test_kill_9_during_resharding_traffic_keeps_layout_and_records(make_server):
    srv = make_server("--throttle", "off")
    client = srv.client()
    name = f"crash-reshard-{uuid.uuid4().hex[:6]}"
    create_stream(client, name, 2)
    acked = []
    for i in range(50):
        r = client.put_record(StreamName=name, Data=make_payload(random.Random(i), 1, i), PartitionKey=f"k{i}")
        acked.append((r["ShardId"], r["SequenceNumber"], make_payload(random.Random(i), 1, i)))
    client.split_shard(StreamName=name, ShardToSplit="shardId-000000000000", NewStartingHashKey=str(2**126))
    wait_for(
        lambda: client.describe_stream_summary(StreamName=name)["StreamDescriptionSummary"][
            "StreamStatus"
        ]
        == "ACTIVE"
    )
    for i in range(50, 100):
        d = make_payload(random.Random(i), 1, i)
        r = client.put_record(StreamName=name, Data=d, PartitionKey=f"k{i}")
        acked.append((r["ShardId"], r["SequenceNumber"], d))
    layout = list_all_shards(client, name)
    srv.kill9()
    srv.start()
    client = srv.client()
    assert list_all_shards(client, name) == layout
    verify(read_everything(client, name), acked)


def test_sigterm_is_clean_and_state_persists(make_server):
    srv = make_server("--throttle", "off")
    client = srv.client()
    name = f"sigterm-{uuid.uuid4().hex[:6]}"
    create_stream(client, name, 3, Tags={"keep": "me"})
    client.increase_stream_retention_period(StreamName=name, RetentionPeriodHours=72)
    acked = []
    for i in range(30):
        d = make_payload(random.Random(i), 2, i)
        r = client.put_record(StreamName=name, Data=d, PartitionKey=f"k{i}")
        acked.append((r["ShardId"], r["SequenceNumber"], d))
    started = time.monotonic()
    assert srv.stop() == 0, "SIGTERM must end the server cleanly (exit code 0)"
    assert time.monotonic() - started < 30
    srv.start()
    client = srv.client()
    summary = client.describe_stream_summary(StreamName=name)["StreamDescriptionSummary"]
    assert summary["OpenShardCount"] == 3
    assert summary["RetentionPeriodHours"] == 72
    assert {t["Key"]: t["Value"] for t in client.list_tags_for_stream(StreamName=name)["Tags"]} == {
        "keep": "me"
    }
    verify(read_everything(client, name), acked)


def test_acknowledged_control_plane_changes_survive_kill_9(make_server):
    srv = make_server("--throttle", "off")
    client = srv.client()
    name = f"meta-{uuid.uuid4().hex[:6]}"
    arn = f"arn:aws:kinesis:us-east-1:000000000000:stream/{name}"
    create_stream(client, name, 2, Tags={"a": "1"})
    client.add_tags_to_stream(StreamName=name, Tags={"b": "2"})
    client.increase_stream_retention_period(StreamName=name, RetentionPeriodHours=96)
    client.enable_enhanced_monitoring(StreamName=name, ShardLevelMetrics=["IncomingBytes"])
    client.start_stream_encryption(StreamName=name, EncryptionType="KMS", KeyId="alias/aws/kinesis")
    client.split_shard(
        StreamName=name, ShardToSplit="shardId-000000000001", NewStartingHashKey=str(2**127 + 5)
    )
    consumer = client.register_stream_consumer(StreamARN=arn, ConsumerName="durable")["Consumer"]
    d = make_payload(random.Random(7), 3, 1)
    put = client.put_record(StreamName=name, Data=d, PartitionKey="k")
    assert put["EncryptionType"] == "KMS"
    gone = f"meta-gone-{uuid.uuid4().hex[:6]}"
    create_stream(client, gone, 1)
    client.delete_stream(StreamName=gone)
    wait_for(lambda: gone not in client.list_streams()["StreamNames"], message="deletion")
    layout = list_all_shards(client, name)

    srv.kill9()
    srv.start()
    client = srv.client()

    summary = client.describe_stream_summary(StreamName=name)["StreamDescriptionSummary"]
    assert summary["RetentionPeriodHours"] == 96
    assert summary["EncryptionType"] == "KMS"
    assert summary["KeyId"] == "alias/aws/kinesis"
    assert summary["EnhancedMonitoring"] == [{"ShardLevelMetrics": ["IncomingBytes"]}]
    assert summary["OpenShardCount"] == 3
    assert summary["ConsumerCount"] == 1
    assert list_all_shards(client, name) == layout
    tags = {t["Key"]: t["Value"] for t in client.list_tags_for_stream(StreamName=name)["Tags"]}
    assert tags == {"a": "1", "b": "2"}
    described = client.describe_stream_consumer(ConsumerARN=consumer["ConsumerARN"])
    assert described["ConsumerDescription"]["ConsumerName"] == "durable"
    assert gone not in client.list_streams()["StreamNames"]
    records = read_everything(client, name)
    verify(records, [(put["ShardId"], put["SequenceNumber"], d)])
    (rec,) = [r for rs in records.values() for r in rs]
    assert rec["EncryptionType"] == "KMS"
