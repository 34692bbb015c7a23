"""Prometheus metrics on GET /metrics, named after the CloudWatch shard-level metrics."""

import os
import re
import time
import urllib.request

from botocore.exceptions import ClientError

from conftest import create_stream, error_code, wait_for

SAMPLE = re.compile(
    r"^(?P<name>[a-zA-Z_:][a-zA-Z0-9_:]*)(?:\{(?P<labels>.*)\})?\s+(?P<value>\S+)(?:\s+\d+)?$"
)
LABEL = re.compile(r'([a-zA-Z_][a-zA-Z0-9_]*)="((?:[^"\\]|\\.)*)"')
S0, S1 = "shardId-000000000000", "shardId-000000000001"


def parse(text):
    """Returns ({(name, frozenset(labels)): value}, {name: type})."""
    samples, types = {}, {}
    for line in text.splitlines():
        if line.startswith("# TYPE "):
            _, _, name, kind = line.split(None, 3)
            types[name] = kind.strip()
            continue
        if not line.strip() or line.startswith("#"):
            continue
        m = SAMPLE.match(line)
        assert m, f"malformed metrics line: {line!r}"
        labels = frozenset(LABEL.findall(m.group("labels") or ""))
        samples[(m.group("name"), labels)] = float(m.group("value"))
    return samples, types


def value(samples, name, **labels):
    """The sample with exactly these labels (plus `le` for buckets), or None."""
    return samples.get((name, frozenset(labels.items())))


def scrape(server):
    return parse(server.metrics_text())[0]


def wait_metric(server, name, expected, timeout=10.0, **labels):
    """Scrapes until `name{labels}` equals `expected`; returns the last scrape."""
    deadline = time.monotonic() + timeout
    while True:
        samples = scrape(server)
        got = value(samples, name, **labels)
        if got == expected:
            return samples
        if time.monotonic() > deadline:
            raise AssertionError(f"{name}{labels} = {got}, expected {expected}")
        time.sleep(0.1)


def test_metrics_endpoint_is_prometheus_text(server, kinesis, stream_name):
    create_stream(kinesis, stream_name, 1)
    kinesis.put_record(StreamName=stream_name, Data=b"x", PartitionKey="k")
    with urllib.request.urlopen(server.endpoint + "/metrics", timeout=10) as resp:
        assert resp.status == 200
        assert resp.headers["Content-Type"].startswith("text/plain")
        text = resp.read().decode()
    samples, types = parse(text)
    assert types.get("riffle_incoming_records_total") == "counter"
    assert types.get("riffle_incoming_bytes_total") == "counter"
    assert types.get("riffle_outgoing_records_total") == "counter"
    assert types.get("riffle_outgoing_bytes_total") == "counter"
    assert types.get("riffle_get_records_latency_seconds") == "histogram"
    assert types.get("riffle_get_records_iterator_age_milliseconds") == "gauge"
    assert types.get("riffle_write_provisioned_throughput_exceeded_total") == "counter"
    assert types.get("riffle_read_provisioned_throughput_exceeded_total") == "counter"


def test_incoming_and_outgoing_counts_match(server, kinesis, stream_name):
    create_stream(kinesis, stream_name, 2)
    datas = [os.urandom(10 + i) for i in range(12)]
    keys = [f"key-{i}" for i in range(12)]
    for d, k in zip(datas[:7], keys[:7]):
        kinesis.put_record(StreamName=stream_name, Data=d, PartitionKey=k, ExplicitHashKey="0")
    resp = kinesis.put_records(
        StreamName=stream_name,
        Records=[
            {"Data": d, "PartitionKey": k, "ExplicitHashKey": "0"}
            for d, k in zip(datas[7:], keys[7:])
        ],
    )
    assert resp["FailedRecordCount"] == 0
    data_bytes = sum(map(len, datas))
    key_bytes = sum(len(k.encode()) for k in keys)

    shard0 = {"stream": stream_name, "shard": S0}
    samples = wait_metric(server, "riffle_incoming_records_total", 12, **shard0)
    incoming_bytes = value(samples, "riffle_incoming_bytes_total", **shard0)
    assert data_bytes <= incoming_bytes <= data_bytes + key_bytes
    assert value(samples, "riffle_incoming_records_total", stream=stream_name, shard=S1) in (
        None,
        0,
    )

    # Read everything back in three GetRecords calls.
    it = kinesis.get_shard_iterator(
        StreamName=stream_name, ShardId=S0, ShardIteratorType="TRIM_HORIZON"
    )["ShardIterator"]
    read, calls = [], 0
    for limit in (5, 5, 5):
        r = kinesis.get_records(ShardIterator=it, Limit=limit)
        calls += 1
        read.extend(r["Records"])
        it = r["NextShardIterator"]
    assert len(read) == 12

    samples = wait_metric(server, "riffle_outgoing_records_total", 12, **shard0)
    outgoing_bytes = value(samples, "riffle_outgoing_bytes_total", **shard0)
    assert data_bytes <= outgoing_bytes <= data_bytes + key_bytes

    count = value(samples, "riffle_get_records_latency_seconds_count", **shard0)
    assert count == calls
    assert value(samples, "riffle_get_records_latency_seconds_bucket", le="+Inf", **shard0) == count
    total = value(samples, "riffle_get_records_latency_seconds_sum", **shard0)
    assert total is not None and total >= 0
    buckets = sorted(
        (float(dict(labels)["le"]), v)
        for (name, labels), v in samples.items()
        if name == "riffle_get_records_latency_seconds_bucket"
        and dict(labels).get("stream") == stream_name
        and dict(labels).get("shard") == S0
    )
    assert len(buckets) >= 2
    assert [v for _, v in buckets] == sorted(v for _, v in buckets), "buckets are cumulative"

    age = value(samples, "riffle_get_records_iterator_age_milliseconds", **shard0)
    assert age is not None and age >= 0


def test_iterator_age_reflects_lag(server, kinesis, stream_name):
    """CloudWatch's IteratorAgeMilliseconds: now minus the arrival time of the last record
    returned by GetRecords (not MillisBehindLatest, which is 0 once a reader is caught up)."""
    create_stream(kinesis, stream_name, 1)
    kinesis.put_record(StreamName=stream_name, Data=b"old-1", PartitionKey="k")
    kinesis.put_record(StreamName=stream_name, Data=b"old-2", PartitionKey="k")
    put_at = time.time()
    wait_for(lambda: time.time() > put_at + 1.0, message="the records to age")
    it = kinesis.get_shard_iterator(
        StreamName=stream_name, ShardId=S0, ShardIteratorType="TRIM_HORIZON"
    )["ShardIterator"]
    labels = {"stream": stream_name, "shard": S0}

    behind = kinesis.get_records(ShardIterator=it, Limit=1)
    assert len(behind["Records"]) == 1 and behind["MillisBehindLatest"] >= 900
    age = value(scrape(server), "riffle_get_records_iterator_age_milliseconds", **labels)
    assert age is not None and age >= 900, f"iterator age {age} ms while 1 s behind"

    caught_up = kinesis.get_records(ShardIterator=behind["NextShardIterator"], Limit=1)
    assert len(caught_up["Records"]) == 1 and caught_up["MillisBehindLatest"] == 0
    age = value(scrape(server), "riffle_get_records_iterator_age_milliseconds", **labels)
    assert age is not None and age >= 900, (
        f"iterator age {age} ms after GetRecords returned a 1 s old record"
    )


def test_throttling_counters(throttled_server, throttled_kinesis, stream_name):
    client = throttled_kinesis
    create_stream(client, stream_name, 1)
    data = os.urandom(900 * 1024)
    write_throttled = 0
    for _ in range(40):
        try:
            client.put_record(StreamName=stream_name, Data=data, PartitionKey="k")
        except ClientError as e:
            assert error_code(e) == "ProvisionedThroughputExceededException"
            write_throttled += 1
            if write_throttled == 3:
                break
    assert write_throttled == 3

    it = client.get_shard_iterator(
        StreamName=stream_name, ShardId=S0, ShardIteratorType="LATEST"
    )["ShardIterator"]
    read_throttled = 0
    for _ in range(40):
        try:
            it = client.get_records(ShardIterator=it)["NextShardIterator"]
        except ClientError as e:
            assert error_code(e) == "ProvisionedThroughputExceededException"
            read_throttled += 1
    assert read_throttled > 0

    labels = {"stream": stream_name, "shard": S0}
    samples = wait_metric(
        throttled_server, "riffle_read_provisioned_throughput_exceeded_total", read_throttled, **labels
    )
    assert value(samples, "riffle_write_provisioned_throughput_exceeded_total", **labels) == 3


def test_a_deleted_streams_bytes_are_a_backlog_until_freed(server, kinesis, stream_name):
    create_stream(kinesis, stream_name, 1)
    payload = os.urandom(1000 * 1000)
    put = kinesis.put_records(
        StreamName=stream_name,
        Records=[{"Data": payload, "PartitionKey": str(i)} for i in range(4)],
    )
    assert put["FailedRecordCount"] == 0
    name = "riffle_deletion_backlog_bytes"
    assert parse(server.metrics_text())[1][name] == "gauge"
    # Earlier tests' streams first.
    wait_metric(server, name, 0.0, timeout=60)
    kinesis.delete_stream(StreamName=stream_name)

    # The files leave at a pace after a short grace: the backlog holds the stream's bytes first.
    deadline = time.monotonic() + 10
    while (backlog := value(scrape(server), name)) < 4_000_000:
        assert time.monotonic() < deadline, f"{name} = {backlog}, the stream's 4 MB never counted"
        time.sleep(0.05)
    wait_metric(server, name, 0.0, timeout=60)
