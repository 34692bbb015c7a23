"""A Stream object becomes a working Kinesis endpoint, on the real one-node cluster.

Run by `e2e/suites/streams.sh` after `make deploy`. The tests run in file order and share one
stream: `examples/stream.yaml` applied into a namespace of their own (renamed, since stream
names are unique in the cluster), reached from the host through the gateway's ClusterIP with
boto3. Every wait is a bounded poll on a condition; nothing sleeps for a fixed time.

Needs KUBECONFIG, and kubectl on PATH (or KUBECTL).
"""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import time
import uuid
from pathlib import Path

import boto3
import pytest
from botocore.config import Config
from botocore.exceptions import ClientError

REPO = Path(__file__).resolve().parents[2]
EXAMPLE = REPO / "examples" / "stream.yaml"
INSTALL_NAMESPACE = os.environ.get("RIFFLE_NAMESPACE", "riffle-system")
API_NAMESPACE = os.environ.get("RIFFLE_API_NAMESPACE", "default")
LABEL = "riffle.dev/stream"
# Asks a replica of a replicated group to answer a read from its own copy.
READ_LOCAL_HEADER = "x-riffle-read-local"
MAX_HASH_KEY = 2**128 - 1
# Budgets of the bounded waits.
READY_WITHIN = 180.0
# The gateway reads its routes from a mounted ConfigMap, which kubelet refreshes on its own
# schedule (about a minute), so a Ready stream can take that long to be routed.
ROUTED_WITHIN = 150.0
GONE_WITHIN = 120.0
# Client timeouts of writers under faults: a call to a group that cannot answer fails soon
# rather than holding its writer.
SHORT_CALLS = {"read_timeout": 5, "connect_timeout": 3}

for _key, _value in {
    "AWS_ACCESS_KEY_ID": "test",
    "AWS_SECRET_ACCESS_KEY": "test",
    "AWS_DEFAULT_REGION": "us-east-1",
    "AWS_EC2_METADATA_DISABLED": "true",
}.items():
    os.environ.setdefault(_key, _value)


def kubectl_path() -> str:
    if os.environ.get("KUBECTL"):
        return os.environ["KUBECTL"]
    found = shutil.which("kubectl")
    if found:
        return found
    return str(REPO / "e2e" / ".cluster" / "bin" / "kubectl")


def kubectl(*args: str, stdin: str | None = None, check: bool = True) -> subprocess.CompletedProcess:
    result = subprocess.run(
        [kubectl_path(), *args],
        input=stdin,
        capture_output=True,
        text=True,
        timeout=120,
    )
    if check and result.returncode != 0:
        raise AssertionError(f"kubectl {' '.join(args)} failed: {result.stderr.strip()}")
    return result


def kubectl_json(*args: str) -> dict:
    return json.loads(kubectl(*args, "-o", "json").stdout)


def wait_for(condition, timeout: float, message: str, interval: float = 0.25):
    """Polls `condition()` until it returns something truthy, which is returned."""
    deadline = time.monotonic() + timeout
    last_error = None
    while True:
        try:
            value = condition()
            if value:
                return value
        except (AssertionError, ClientError) as error:
            last_error = error
        if time.monotonic() >= deadline:
            detail = f" (last error: {last_error})" if last_error else ""
            raise AssertionError(f"timed out after {timeout}s waiting for {message}{detail}")
        time.sleep(interval)


def condition(stream: dict, kind: str) -> dict:
    for c in stream.get("status", {}).get("conditions", []):
        if c["type"] == kind:
            return c
    return {}


def get_stream(namespace: str, name: str) -> dict | None:
    result = kubectl("get", "stream", name, "-n", namespace, "-o", "json", check=False)
    if result.returncode != 0:
        if "NotFound" in result.stderr:
            return None
        raise AssertionError(result.stderr)
    return json.loads(result.stdout)


def wait_ready(namespace: str, name: str, timeout: float = READY_WITHIN) -> dict:
    def ready():
        stream = get_stream(namespace, name)
        if stream and condition(stream, "Ready").get("status") == "True":
            return stream
        return None

    return wait_for(ready, timeout, f"stream {namespace}/{name} to be Ready")


def wait_settled(namespace: str, name: str, shards: int) -> dict:
    """Waits for `shards` open shards and Progressing=False at the current generation."""

    def settled():
        stream = get_stream(namespace, name)
        if not stream:
            return None
        status = stream.get("status", {})
        progressing = condition(stream, "Progressing")
        if (
            status.get("openShardCount") == shards
            and status.get("observedGeneration") == stream["metadata"]["generation"]
            and progressing.get("status") == "False"
            and condition(stream, "Ready").get("status") == "True"
        ):
            return stream
        return None

    try:
        return wait_for(settled, READY_WITHIN, f"{namespace}/{name} to settle at {shards} open shards")
    except AssertionError as error:
        stream = get_stream(namespace, name) or {}
        status = stream.get("status", {})
        conditions = [(c["type"], c["status"], c.get("reason"), c.get("message")) for c in status.get("conditions", [])]
        raise AssertionError(
            f"{error}; openShardCount {status.get('openShardCount')}, conditions {conditions}"
        ) from None


def example_manifest(namespace: str, name: str) -> str:
    """The Stream document of examples/stream.yaml, moved into `namespace` and renamed, asking
    for a fifth of a CPU's default per pod: the test node has two CPUs, and some tests run
    several replicated groups at once."""
    documents = EXAMPLE.read_text().split("\n---\n")
    stream_doc = next(d for d in documents if "kind: Stream" in d)
    lines = []
    for line in stream_doc.splitlines():
        if line.strip() == "namespace: shop":
            line = line.replace("shop", namespace)
        elif line.strip() == "name: orders":
            line = line.replace("orders", name)
        elif line.strip() == "cpu: 250m":
            line = line.replace("250m", "50m")
        lines.append(line)
    text = "\n".join(lines) + "\n"
    assert f"namespace: {namespace}" in text and f"name: {name}" in text and "cpu: 50m" in text, text
    return text


def replicated_manifest(namespace: str, name: str) -> str:
    """`example_manifest` with replicationFactor 3: each shard group is three pods running raft."""
    manifest = example_manifest(namespace, name).replace("replicationFactor: 1", "replicationFactor: 3")
    assert "replicationFactor: 3" in manifest
    return manifest


def all_records(client, stream: str) -> dict[str, list[dict]]:
    """Every retained record of every shard (open and closed), by shard id, oldest first."""
    shards = client.list_shards(StreamName=stream)["Shards"]
    records: dict[str, list[dict]] = {}
    for shard in shards:
        iterator = client.get_shard_iterator(
            StreamName=stream, ShardId=shard["ShardId"], ShardIteratorType="TRIM_HORIZON"
        )["ShardIterator"]
        got: list[dict] = []
        while iterator:
            answer = client.get_records(ShardIterator=iterator, Limit=10000)
            got.extend(answer["Records"])
            if not answer["Records"] and answer.get("MillisBehindLatest", 0) == 0:
                break
            iterator = answer.get("NextShardIterator")
        records[shard["ShardId"]] = got
    return records


def put_batch(client, stream: str, prefix: str, count: int) -> dict[str, str]:
    """Puts `count` records `prefix-i` with varied partition keys; returns data → shard id."""
    placed: dict[str, str] = {}
    entries = [
        {"Data": f"{prefix}-{i}".encode(), "PartitionKey": f"key-{prefix}-{i}"} for i in range(count)
    ]
    for start in range(0, count, 500):
        chunk = entries[start : start + 500]
        answer = client.put_records(StreamName=stream, Records=chunk)
        assert answer["FailedRecordCount"] == 0, answer
        for entry, result in zip(chunk, answer["Records"]):
            placed[entry["Data"].decode()] = result["ShardId"]
    return placed


def read_sequences(client, stream: str) -> dict[str, list[str]]:
    """Every retained record's data → the sequence numbers it was read with (one, if it was
    stored exactly once)."""
    read: dict[str, list[str]] = {}
    for records in all_records(client, stream).values():
        for record in records:
            read.setdefault(record["Data"].decode(), []).append(record["SequenceNumber"])
    return read


def assert_read_back_exactly_once(client, stream: str, acknowledged: dict[str, str]) -> dict[str, list[str]]:
    """Checks that every acknowledged record (data → sequence number) is read back exactly once,
    with its sequence number; returns what was read, as `read_sequences` does."""
    read = read_sequences(client, stream)
    missing = [data for data in acknowledged if data not in read]
    assert not missing, f"{len(missing)} acknowledged records lost, e.g. {missing[:3]}"
    for data, sequence in acknowledged.items():
        assert read[data] == [sequence], f"{data}: acknowledged as {sequence}, read as {read[data]}"
    return read


def group_leadership(namespace: str, name: str, group: int = 0) -> dict:
    """The `status.groups` entry of the stream's shard group `group` ({} until reported)."""
    stream = get_stream(namespace, name) or {}
    for entry in stream.get("status", {}).get("groups", []):
        if entry["name"] == f"{name}-g{group}":
            return entry
    return {}


def group_settled(namespace: str, name: str) -> dict | None:
    """The stream's first group's `status.groups` entry once it names a leader and all three
    replicas as caught up (`None` until then)."""
    group = group_leadership(namespace, name)
    replicas = group.get("replicas", [])
    if group.get("leader") and len(replicas) == 3 and all(r["caughtUp"] for r in replicas):
        return group
    return None


def group_pods(name: str, group: int = 0) -> list[str]:
    """The pods of a replicated stream's shard group `group`, in ordinal order."""
    return [f"{name}-g{group}-{ordinal}" for ordinal in range(3)]


def replica_gauges(namespace: str, pod: str) -> dict[str, str]:
    """The `riffle_replica_*` gauges on the pod's /metrics, by name ({} if it has no address or
    does not answer)."""
    ip = kubectl_json("get", "pod", pod, "-n", namespace)["status"].get("podIP")
    if not ip:
        return {}
    result = subprocess.run(
        ["curl", "-s", "--max-time", "2", f"http://{ip}:4567/metrics"], capture_output=True, text=True
    )
    return {
        line.split("{")[0]: line.rsplit(" ", 1)[-1]
        for line in result.stdout.splitlines()
        if line.startswith("riffle_replica_")
    }


def replica_metrics_leader(namespace: str, pods: list[str]) -> str | None:
    """The pod whose replica says, on its /metrics, that it leads the group (highest term)."""
    best = None
    for pod in pods:
        gauges = replica_gauges(namespace, pod)
        if gauges.get("riffle_replica_is_leader") == "1":
            term = int(gauges.get("riffle_replica_term", "0"))
            if best is None or term > best[0]:
                best = (term, pod)
    return best[1] if best else None


class Cluster:
    """What the tests share: the namespace, the stream's name and the gateway client."""

    def __init__(self) -> None:
        suffix = uuid.uuid4().hex[:6]
        self.namespace = f"riffle-e2e-{suffix}"
        self.stream = f"orders-{suffix}"
        self.api_stream = f"api-made-{suffix}"
        self.written: dict[str, str] = {}
        ip = kubectl(
            "get", "svc", "riffle-gateway", "-n", INSTALL_NAMESPACE, "-o", "jsonpath={.spec.clusterIP}"
        ).stdout.strip()
        assert ip, "the gateway Service has no ClusterIP"
        self.endpoint = f"http://{ip}:4567"
        # Cluster traffic never goes through a proxy.
        for var in ("NO_PROXY", "no_proxy"):
            os.environ[var] = ",".join(filter(None, [os.environ.get(var), ip]))
        self.config = Config(
            retries={"max_attempts": 3, "mode": "standard"},
            connect_timeout=5,
            read_timeout=60,
        )
        self.kinesis = boto3.client("kinesis", endpoint_url=self.endpoint, config=self.config)
        # For requests boto3 would refuse to send (values out of range).
        self.unchecked = boto3.client(
            "kinesis",
            endpoint_url=self.endpoint,
            config=self.config.merge(Config(parameter_validation=False)),
        )

    def client(self, endpoint: str | None = None, read_local: bool = False, **options):
        """A client that sends each call once, to the gateway or to `endpoint`: a retried put may
        store its records twice, which the exactly-once checks would take for a fault. With
        `read_local`, a replica answers reads from its own copy, whether it leads or not."""
        client = boto3.client(
            "kinesis",
            endpoint_url=endpoint or self.endpoint,
            config=self.config.merge(Config(retries={"total_max_attempts": 1}, **options)),
        )
        if read_local:

            def ask_for_the_local_copy(request, **_) -> None:
                request.headers[READ_LOCAL_HEADER] = "1"

            client.meta.events.register("before-sign.kinesis", ask_for_the_local_copy)
        return client


def wait_routed(cluster: Cluster, name: str, message: str) -> dict:
    """Waits until every gateway replica answers DescribeStreamSummary for `name`; returns the
    summary. Each replica reads the routes on its own schedule, and a client's connection may
    reach any of them."""

    def routed() -> dict | None:
        ips = kubectl(
            "get", "pods", "-n", INSTALL_NAMESPACE, "-l", "app.kubernetes.io/component=gateway",
            "--field-selector", "status.phase=Running", "-o", "jsonpath={.items[*].status.podIP}",
        ).stdout.split()
        summaries = [
            cluster.client(f"http://{ip}:4567").describe_stream_summary(StreamName=name)["StreamDescriptionSummary"]
            for ip in ips
        ]
        return summaries[0] if summaries else None

    return wait_for(routed, ROUTED_WITHIN, message, interval=0.5)


def pod_uid(namespace: str, pod: str) -> str:
    """The uid of `pod` as it exists now; a pod recreated under the same name has another."""
    return kubectl_json("get", "pod", pod, "-n", namespace)["metadata"]["uid"]


def force_delete_pods(namespace: str, *pods: str) -> None:
    """Deletes `pods` without a grace period: the API forgets them at once, and their StatefulSet
    recreates them without waiting for kubelet to stop the old containers."""
    kubectl("delete", "pod", *pods, "-n", namespace, "--grace-period=0", "--force", "--wait=false")


def wait_replaced(namespace: str, pod: str, uid: str, timeout: float = READY_WITHIN) -> dict:
    """Waits for `pod` to exist again as another object than `uid` and be Ready; returns it."""

    def replaced():
        found = kubectl_json("get", "pod", pod, "-n", namespace)
        ready = any(
            c["type"] == "Ready" and c["status"] == "True" for c in found.get("status", {}).get("conditions", [])
        )
        return found if found["metadata"]["uid"] != uid and ready else None

    return wait_for(replaced, timeout, f"{pod} to be replaced and Ready")


@pytest.fixture(scope="module")
def cluster():
    shared = Cluster()
    kubectl("create", "namespace", shared.namespace)
    try:
        yield shared
    finally:
        for namespace, name in ((shared.namespace, shared.stream), (API_NAMESPACE, shared.api_stream)):
            # Waits for the operator to release the stream, which must happen before an
            # uninstall removes the operator.
            kubectl("delete", "stream", name, "-n", namespace, "--ignore-not-found", "--timeout=120s", check=False)
        kubectl("delete", "namespace", shared.namespace, "--ignore-not-found", "--timeout=120s", check=False)


def test_the_example_stream_becomes_ready_and_routed(cluster: Cluster):
    manifest = example_manifest(cluster.namespace, cluster.stream)
    applied_at = time.monotonic()
    kubectl("apply", "-f", "-", stdin=manifest)
    stream = wait_ready(cluster.namespace, cluster.stream)
    ready_after = time.monotonic() - applied_at
    print(f"\ne2e: {cluster.namespace}/{cluster.stream} (4 shards): kubectl apply -> Ready in {ready_after:.1f} s")

    status = stream["status"]
    assert status["openShardCount"] == 4
    assert len(status["shards"]) == 4
    assert all(s["state"] == "Open" and s["group"] == 0 for s in status["shards"])
    assert status["shards"][0]["hashKeyRange"]["startingHashKey"] == "0"
    assert status["shards"][-1]["hashKeyRange"]["endingHashKey"] == str(MAX_HASH_KEY)
    assert status["endpoint"] == f"http://riffle-gateway.{INSTALL_NAMESPACE}.svc:4567"
    assert condition(stream, "Degraded")["status"] == "False", "replicationFactor 1 is not degraded"
    sts = kubectl_json("get", "statefulset", f"{cluster.stream}-g0", "-n", cluster.namespace)
    assert sts["spec"]["replicas"] == 1

    routes = json.loads(
        kubectl_json("get", "configmap", "riffle-gateway-routes", "-n", INSTALL_NAMESPACE)["data"]["routes.json"]
    )
    assert routes["streams"][cluster.stream] == (
        f"http://{cluster.stream}-g0-headless.{cluster.namespace}.svc:4567"
    )
    assert routes["admin"] == f"http://riffle-operator.{INSTALL_NAMESPACE}.svc:4570"

    def described():
        return cluster.kinesis.describe_stream_summary(StreamName=cluster.stream)["StreamDescriptionSummary"]

    summary = wait_for(described, ROUTED_WITHIN, "the gateway to route the stream", interval=0.5)
    routed_after = time.monotonic() - applied_at
    print(f"e2e: kubectl apply -> served through the gateway in {routed_after:.1f} s")
    assert summary["StreamStatus"] == "ACTIVE"
    assert summary["OpenShardCount"] == 4
    assert summary["RetentionPeriodHours"] == 24


def test_records_go_in_and_come_out_through_the_gateway(cluster: Cluster):
    placed = put_batch(cluster.kinesis, cluster.stream, "before", 400)
    assert len(set(placed.values())) == 4, "400 keys spread over all four shards"
    cluster.written.update(placed)
    one = cluster.kinesis.put_record(StreamName=cluster.stream, Data=b"single", PartitionKey="single")
    cluster.written["single"] = one["ShardId"]
    records = all_records(cluster.kinesis, cluster.stream)
    read = {r["Data"].decode(): shard for shard, rs in records.items() for r in rs}
    assert read == cluster.written


def scale(cluster: Cluster, shards: int) -> dict:
    kubectl("scale", "stream", cluster.stream, "-n", cluster.namespace, f"--replicas={shards}")
    return wait_settled(cluster.namespace, cluster.stream, shards)


def check_lineage(stream: dict) -> None:
    shards = {s["shardId"]: s for s in stream["status"]["shards"]}
    open_shards = sorted(
        (int(s["hashKeyRange"]["startingHashKey"]), int(s["hashKeyRange"]["endingHashKey"]))
        for s in shards.values()
        if s["state"] == "Open"
    )
    # Open shards partition the hash-key space.
    assert open_shards[0][0] == 0 and open_shards[-1][1] == MAX_HASH_KEY
    for (_, end), (start, _) in zip(open_shards, open_shards[1:]):
        assert start == end + 1
    for shard in shards.values():
        for parent in (shard.get("parentShardId"), shard.get("adjacentParentShardId")):
            if parent:
                assert parent in shards, f"{shard['shardId']} names an unknown parent {parent}"
                assert shards[parent]["state"] == "Closed"


def restart_operator_around(change) -> None:
    """Runs `change` while the operator is stopped, then starts it again: whatever it was doing
    is forgotten, and the new operator must finish from what the data plane reports."""
    deploy = ("deployment/riffle-operator", "-n", INSTALL_NAMESPACE)
    kubectl("scale", *deploy, "--replicas=0")
    selector = "app.kubernetes.io/component=operator"

    def stopped():
        pods = kubectl_json("get", "pods", "-n", INSTALL_NAMESPACE, "-l", selector)["items"]
        return not pods

    wait_for(stopped, GONE_WITHIN, "the operator to stop")
    try:
        change()
    finally:
        kubectl("scale", *deploy, "--replicas=1")
        kubectl("rollout", "status", *deploy, "--timeout=120s")


def test_scaling_keeps_every_record_and_the_lineage(cluster: Cluster):
    # 4 -> 1 merges in two steps (4 -> 2 -> 1), asked for while the operator is down; 1 -> 4
    # splits in two steps (1 -> 2 -> 4): both directions of kubectl scale, several steps each.
    for shards in (1, 4):
        if shards == 1:
            restart_operator_around(
                lambda: kubectl("scale", "stream", cluster.stream, "-n", cluster.namespace, "--replicas=1")
            )
            stream = wait_settled(cluster.namespace, cluster.stream, 1)
        else:
            stream = scale(cluster, shards)
        check_lineage(stream)
        listed = cluster.kinesis.list_shards(StreamName=cluster.stream)["Shards"]
        by_id = {s["ShardId"]: s for s in listed}
        assert set(by_id) == {s["shardId"] for s in stream["status"]["shards"]}
        for s in stream["status"]["shards"]:
            assert by_id[s["shardId"]].get("ParentShardId") == s.get("parentShardId")
            closed = "EndingSequenceNumber" in by_id[s["shardId"]]["SequenceNumberRange"]
            assert closed == (s["state"] == "Closed")
        placed = put_batch(cluster.kinesis, cluster.stream, f"after-{shards}", 100)
        cluster.written.update(placed)
        records = all_records(cluster.kinesis, cluster.stream)
        read = {r["Data"].decode() for rs in records.values() for r in rs}
        assert read == set(cluster.written), "every record written so far is still readable"
    final = get_stream(cluster.namespace, cluster.stream)
    assert final["status"]["openShardCount"] == 4
    # At least the four original shards and the one of the single-shard stage are closed parents.
    assert sum(1 for s in final["status"]["shards"] if s["state"] == "Closed") >= 5
    events = kubectl_json(
        "get", "events", "-n", cluster.namespace, "--field-selector", f"involvedObject.name={cluster.stream}"
    )["items"]
    assert any(e.get("reason") == "Resharded" for e in events), "a Resharded event was published"


def test_retention_follows_the_spec(cluster: Cluster):
    for hours in (48, 24):
        kubectl(
            "patch", "stream", cluster.stream, "-n", cluster.namespace, "--type=merge",
            "-p", json.dumps({"spec": {"retentionPeriodHours": hours}}),
        )

        def retained():
            summary = cluster.kinesis.describe_stream_summary(StreamName=cluster.stream)
            return summary["StreamDescriptionSummary"]["RetentionPeriodHours"] == hours

        wait_for(retained, 60, f"a retention of {hours} hours in the data plane")
    events = kubectl_json(
        "get", "events", "-n", cluster.namespace, "--field-selector", f"involvedObject.name={cluster.stream}"
    )["items"]
    assert any(e.get("reason") == "RetentionChanged" for e in events)


def test_streams_are_created_and_deleted_through_the_kinesis_api(cluster: Cluster):
    name = cluster.api_stream
    cluster.kinesis.create_stream(StreamName=name, ShardCount=1)
    created = wait_for(lambda: get_stream(API_NAMESPACE, name), 30, f"Stream {API_NAMESPACE}/{name}")
    assert created["spec"]["shardCount"] == 1
    assert created["spec"]["replicationFactor"] == 3
    listed = kubectl("get", "streams", "-A").stdout
    assert name in listed, listed

    with pytest.raises(ClientError) as taken:
        cluster.kinesis.create_stream(StreamName=name, ShardCount=1)
    assert taken.value.response["Error"]["Code"] == "ResourceInUseException"
    with pytest.raises(ClientError) as invalid:
        cluster.unchecked.create_stream(StreamName=f"{name}-zero", ShardCount=0)
    assert invalid.value.response["Error"]["Code"] == "ValidationException"
    with pytest.raises(ClientError) as unknown:
        cluster.kinesis.delete_stream(StreamName=f"{name}-missing")
    assert unknown.value.response["Error"]["Code"] == "ResourceNotFoundException"

    wait_ready(API_NAMESPACE, name)
    scaled = cluster.kinesis.update_shard_count(
        StreamName=name, TargetShardCount=2, ScalingType="UNIFORM_SCALING"
    )
    assert (scaled["CurrentShardCount"], scaled["TargetShardCount"]) == (1, 2)
    wait_settled(API_NAMESPACE, name, 2)
    with pytest.raises(ClientError) as too_far:
        cluster.kinesis.update_shard_count(StreamName=name, TargetShardCount=8, ScalingType="UNIFORM_SCALING")
    assert too_far.value.response["Error"]["Code"] == "InvalidArgumentException"

    cluster.kinesis.delete_stream(StreamName=name)
    wait_for(lambda: get_stream(API_NAMESPACE, name) is None, GONE_WITHIN, f"Stream {name} to disappear")
    assert_nothing_left(API_NAMESPACE, name)


def test_an_invalid_stream_is_refused_naming_retention(cluster: Cluster):
    manifest = example_manifest(cluster.namespace, f"{cluster.stream}-bad").replace(
        "retentionPeriodHours: 24", "retentionPeriodHours: 10"
    )
    assert "retentionPeriodHours: 10" in manifest
    result = kubectl("apply", "-f", "-", stdin=manifest, check=False)
    assert result.returncode != 0, "a retention of 10 hours was accepted"
    assert "retentionPeriodHours" in result.stderr, result.stderr
    assert get_stream(cluster.namespace, f"{cluster.stream}-bad") is None


def test_a_stream_spanning_shard_groups_serves_as_one_stream(cluster: Cluster):
    """Four shards at two per group: two data-plane pods behind one Kinesis stream; scaling to
    six places the new shards in a third group and keeps every record."""
    name = f"{cluster.stream}-wide"
    manifest = example_manifest(cluster.namespace, name).replace("shardsPerGroup: 8", "shardsPerGroup: 2")
    assert "shardsPerGroup: 2" in manifest
    kubectl("apply", "-f", "-", stdin=manifest)
    stream = wait_ready(cluster.namespace, name)
    groups = sorted({s["group"] for s in stream["status"]["shards"]})
    assert groups == [0, 1], stream["status"]["shards"]
    sets = kubectl_json("get", "statefulsets", "-n", cluster.namespace, "-l", f"{LABEL}={name}")["items"]
    assert sorted(s["metadata"]["name"] for s in sets) == [f"{name}-g0", f"{name}-g1"]

    def routed_over_groups():
        routes = json.loads(
            kubectl_json("get", "configmap", "riffle-gateway-routes", "-n", INSTALL_NAMESPACE)["data"]["routes.json"]
        )
        route = routes["streams"].get(name)
        return route if isinstance(route, dict) else None

    route = wait_for(routed_over_groups, ROUTED_WITHIN, "a route listing both groups")
    assert len(route["groups"]) == 2 and len(route["shards"]) == 4

    def summary():
        return cluster.kinesis.describe_stream_summary(StreamName=name)["StreamDescriptionSummary"]

    assert wait_for(summary, ROUTED_WITHIN, "the gateway to route the wide stream", interval=0.5)["OpenShardCount"] == 4
    written = put_batch(cluster.kinesis, name, "wide", 400)
    assert len(set(written.values())) == 4, "400 keys spread over both groups' shards"
    read = {r["Data"].decode(): shard for shard, rs in all_records(cluster.kinesis, name).items() for r in rs}
    assert read == written

    # The operator is killed as soon as the reshard shows as started: the next operator finds
    # the groups at most one step apart and brings them in step from what they report.
    kubectl("scale", "stream", name, "-n", cluster.namespace, "--replicas=6")
    wait_for(
        lambda: condition(get_stream(cluster.namespace, name) or {}, "Progressing").get("reason") == "Resharding"
        or (get_stream(cluster.namespace, name) or {}).get("status", {}).get("openShardCount") == 6,
        READY_WITHIN,
        "the reshard to start",
        interval=0.05,
    )
    kubectl(
        "delete", "pod", "-n", INSTALL_NAMESPACE, "-l", "app.kubernetes.io/component=operator",
        "--grace-period=0", "--force", "--wait=false",
    )
    stream = wait_settled(cluster.namespace, name, 6)
    check_lineage(stream)
    open_groups = [s["group"] for s in stream["status"]["shards"] if s["state"] == "Open"]
    assert max(open_groups) == 2, f"the new shards needed a third group: {stream['status']['shards']}"
    assert all(open_groups.count(g) <= 2 for g in set(open_groups)), open_groups
    wait_for(
        lambda: cluster.kinesis.describe_stream_summary(StreamName=name)["StreamDescriptionSummary"]["OpenShardCount"] == 6,
        ROUTED_WITHIN,
        "the gateway to see six open shards",
        interval=0.5,
    )
    listed = {s["ShardId"]: s for s in cluster.kinesis.list_shards(StreamName=name)["Shards"]}
    for shard in stream["status"]["shards"]:
        closed = "EndingSequenceNumber" in listed[shard["shardId"]]["SequenceNumberRange"]
        assert closed == (shard["state"] == "Closed"), shard
    written.update(put_batch(cluster.kinesis, name, "wide-after", 300))
    read = {r["Data"].decode() for rs in all_records(cluster.kinesis, name).values() for r in rs}
    assert read == set(written), "every record is readable after scaling across groups"
    kubectl("delete", "stream", name, "-n", cluster.namespace, "--timeout=120s")
    assert_nothing_left(cluster.namespace, name)


def test_an_on_demand_stream_gains_shards_under_load_and_readers_follow(cluster: Cluster):
    """An OnDemand stream starts with 4 shards (4 MiB/s); writing about 3 MiB/s makes the operator
    grow it to twice the peak, and every accepted record stays readable across the lineage."""
    name = f"{cluster.stream}-auto"
    manifest = example_manifest(cluster.namespace, name).replace(
        "streamMode: Provisioned", "streamMode: OnDemand"
    )
    assert "streamMode: OnDemand" in manifest
    kubectl("apply", "-f", "-", stdin=manifest)
    stream = wait_ready(cluster.namespace, name)
    assert stream["status"]["openShardCount"] == 4
    wait_routed(cluster, name, "the gateway to route the on-demand stream")
    summary = cluster.kinesis.describe_stream_summary(StreamName=name)["StreamDescriptionSummary"]
    assert summary["StreamModeDetails"]["StreamMode"] == "ON_DEMAND"

    accepted: set[str] = set()
    payload = b"x" * 6000
    started = time.monotonic()
    grown = None
    batch = 0
    # About 3 MiB/s: one PutRecords of 500 x 6 KB per second, until the stream has grown.
    while time.monotonic() - started < 240:
        tick = time.monotonic()
        entries = [
            {"Data": f"auto-{batch}-{i}|".encode() + payload, "PartitionKey": f"auto-{batch}-{i}"}
            for i in range(500)
        ]
        answer = cluster.kinesis.put_records(StreamName=name, Records=entries)
        for entry, result in zip(entries, answer["Records"]):
            if "SequenceNumber" in result:
                accepted.add(entry["Data"].split(b"|")[0].decode())
        batch += 1
        current = get_stream(cluster.namespace, name)
        if current and (current["status"].get("openShardCount") or 0) > 4:
            grown = current
            break
        time.sleep(max(0.0, 1.0 - (time.monotonic() - tick)))
    assert grown, f"the on-demand stream did not grow within 240 s of load ({len(accepted)} records accepted)"
    print(f"\ne2e: on-demand stream grew to {grown['status']['openShardCount']} shards "
          f"{time.monotonic() - started:.0f} s after the load began")
    events = kubectl_json(
        "get", "events", "-n", cluster.namespace, "--field-selector", f"involvedObject.name={name}"
    )["items"]
    scaling = [e for e in events if e.get("reason") == "OnDemandScaling"]
    assert scaling and "MiB/s" in scaling[0]["message"], events
    settled = wait_for(
        lambda: (lambda s: s if s and condition(s, "Progressing").get("status") == "False" else None)(
            get_stream(cluster.namespace, name)
        ),
        READY_WITHIN,
        "the on-demand stream to settle",
    )
    check_lineage(settled)
    read = {
        r["Data"].split(b"|")[0].decode()
        for rs in all_records(cluster.kinesis, name).values()
        for r in rs
    }
    assert accepted <= read, f"{len(accepted - read)} accepted records are missing"
    kubectl("delete", "stream", name, "-n", cluster.namespace, "--timeout=120s")


def test_force_deleting_data_plane_pods_under_load_loses_no_acknowledged_record(cluster: Cluster):
    """Writers keep putting while the stream's pods are force-deleted (no grace period) twice;
    every record the gateway acknowledged is read back exactly once, with its sequence number."""
    import threading

    name = f"{cluster.stream}-kill"
    manifest = example_manifest(cluster.namespace, name).replace("shardsPerGroup: 8", "shardsPerGroup: 2")
    kubectl("apply", "-f", "-", stdin=manifest)
    wait_ready(cluster.namespace, name)
    wait_routed(cluster, name, "the gateway to route the stream")
    client = cluster.client(read_timeout=20)
    acknowledged: dict[str, str] = {}
    failures = [0]
    stop = threading.Event()
    lock = threading.Lock()

    def writer(number: int) -> None:
        batch = 0
        while not stop.is_set():
            entries = [
                {"Data": f"w{number}-{batch}-{i}".encode(), "PartitionKey": f"k{number}-{batch}-{i}"}
                for i in range(50)
            ]
            batch += 1
            try:
                answer = client.put_records(StreamName=name, Records=entries)
            except Exception:  # the pod is gone: nothing of this call was acknowledged
                with lock:
                    failures[0] += 1
                continue
            with lock:
                for entry, result in zip(entries, answer["Records"]):
                    if "SequenceNumber" in result:
                        acknowledged[entry["Data"].decode()] = result["SequenceNumber"]
                    else:
                        failures[0] += 1

    threads = [threading.Thread(target=writer, args=(n,)) for n in range(3)]
    for thread in threads:
        thread.start()
    try:
        for group in (0, 1):
            wait_for(lambda: len(acknowledged) > 500 * (group + 1), 60, "writes to be acknowledged")
            pod = f"{name}-g{group}-0"
            uid = pod_uid(cluster.namespace, pod)
            force_delete_pods(cluster.namespace, pod)
            wait_replaced(cluster.namespace, pod, uid)
            before = len(acknowledged)
            wait_for(lambda: len(acknowledged) > before + 200, 60, "writes to be acknowledged again")
    finally:
        stop.set()
        for thread in threads:
            thread.join(timeout=60)
    print(f"\ne2e: {len(acknowledged)} records acknowledged, {failures[0]} refused or cut off by the kills")
    assert_read_back_exactly_once(cluster.kinesis, name, acknowledged)
    kubectl("delete", "stream", name, "-n", cluster.namespace, "--timeout=120s")


def test_a_replicated_group_survives_losing_its_leader_under_load(cluster: Cluster):
    """replicationFactor 3: three pods, one raft group. Force-deleting the leader while a writer
    keeps putting loses no acknowledged record, and writes resume on a new leader."""
    name = f"{cluster.stream}-r3"
    kubectl("apply", "-f", "-", stdin=replicated_manifest(cluster.namespace, name))
    stream = wait_ready(cluster.namespace, name)
    assert condition(stream, "Degraded")["status"] == "False"
    sts = kubectl_json("get", "statefulset", f"{name}-g0", "-n", cluster.namespace)
    assert sts["spec"]["replicas"] == 3
    wait_routed(cluster, name, "the gateway to route the replicated stream")
    client = cluster.client(read_timeout=10)
    pods = group_pods(name)

    def leader() -> str | None:
        return replica_metrics_leader(cluster.namespace, pods)

    # The status names the leader the replicas report, and every replica as caught up.
    reported = wait_for(lambda: group_settled(cluster.namespace, name), 60, "the status to name the group's leader")
    assert reported["leader"] in pods, reported
    assert [r["pod"] for r in reported["replicas"]] == pods
    assert sorted(r["role"] for r in reported["replicas"]) == ["Follower", "Follower", "Leader"], reported
    assert wait_for(leader, 30, "a leader") == reported["leader"]
    columns = kubectl("get", "stream", name, "-n", cluster.namespace).stdout
    assert "LEADERS" in columns and reported["leader"] in columns, columns

    acknowledged: dict[str, str] = {}

    def put(data: str) -> bool:
        try:
            answer = client.put_record(StreamName=name, Data=data.encode(), PartitionKey=data)
        except Exception:  # the leader is gone: nothing of this call was acknowledged
            return False
        acknowledged[data] = answer["SequenceNumber"]
        return True

    for i in range(200):
        put(f"before-{i}")
    assert len(acknowledged) == 200, "every write is acknowledged while the group is whole"
    old_leader = wait_for(leader, 30, "a leader")
    old_term = group_leadership(cluster.namespace, name).get("term", 0)
    found = kubectl_json("get", "pod", old_leader, "-n", cluster.namespace)
    old_uid, node = found["metadata"]["uid"], found["spec"]["nodeName"]
    # A replacement pod that starts before the followers' election timeout (about 2 s) resumes
    # leading in the same term from its volume, and nothing fails over. The node is cordoned
    # until the followers have elected a new leader, so the group really loses its leader.
    kubectl("cordon", node)
    force_delete_pods(cluster.namespace, old_leader)
    deleted_at = time.monotonic()

    def replaced() -> bool:
        found = kubectl("get", "pod", old_leader, "-n", cluster.namespace, "-o", "jsonpath={.metadata.uid}", check=False)
        return found.stdout.strip() != old_uid

    try:
        wait_for(replaced, 60, f"{old_leader} to be gone")
        refused_at = None
        resumed = None
        deadline = time.monotonic() + 60
        i = 0
        while time.monotonic() < deadline and (resumed is None or len(acknowledged) < 400):
            i += 1
            if put(f"after-{i}"):
                if resumed is None:
                    resumed = time.monotonic() - refused_at if refused_at else 0.0
            else:
                refused_at = refused_at or time.monotonic()
                time.sleep(0.05)
        assert resumed is not None, "writes never resumed after the leader was deleted"
        print(f"\ne2e: leader {old_leader} force-deleted; writes resumed {resumed:.1f} s after the first refusal")

        def new_leader_reported() -> dict | None:
            group = group_leadership(cluster.namespace, name)
            if group.get("leader") not in (None, old_leader) and group.get("term", 0) > old_term:
                return group
            return None

        reported = wait_for(new_leader_reported, 60, f"the status to name a leader other than {old_leader}")
        print(
            f"e2e: the status named the new leader {reported['leader']} (term {reported['term']}) "
            f"{time.monotonic() - deleted_at:.1f} s after the deletion"
        )
        assert reported["leader"] in pods
        assert reported["leader"] == leader(), "the status agrees with the replicas"
    finally:
        kubectl("uncordon", node)
    # The replacement joins the new leader and catches up.
    rejoined = wait_for(
        lambda: group_settled(cluster.namespace, name), READY_WITHIN, f"the replacement {old_leader} to catch up"
    )
    assert rejoined["leader"] == reported["leader"], rejoined
    read = read_sequences(cluster.kinesis, name)
    for data, sequence in acknowledged.items():
        assert read.get(data) == [sequence], f"{data}: acknowledged as {sequence}, read as {read.get(data)}"
    kubectl("delete", "stream", name, "-n", cluster.namespace, "--timeout=120s")
    assert_nothing_left(cluster.namespace, name)


RAFT_PORT = 4569
PARTITION_TABLE = "riffle_e2e_partition"


def pod_netns(ip: str) -> str | None:
    """The network namespace file of the pod with `ip` on this node, found among the namespaces
    the container runtime creates under /run/netns (`None` if the pods do not run on this host,
    as on kind)."""
    root = Path("/run/netns")
    if not root.is_dir() or shutil.which("nsenter") is None or shutil.which("nft") is None:
        return None
    for entry in sorted(root.iterdir()):
        result = subprocess.run(
            ["nsenter", f"--net={entry}", "ip", "-o", "-4", "addr", "show"],
            capture_output=True,
            text=True,
            timeout=10,
        )
        if result.returncode == 0 and f" {ip}/" in result.stdout:
            return str(entry)
    return None


def cut_off(netns: str, peers: list[str]) -> None:
    """Drops, inside the network namespace `netns`, all replication traffic (the raft port, in
    either direction) exchanged with `peers`; everything else still flows."""
    addresses = ", ".join(peers)
    rules = f"""
table inet {PARTITION_TABLE} {{
  chain input {{
    type filter hook input priority -10; policy accept;
    ip saddr {{ {addresses} }} tcp dport {RAFT_PORT} drop
    ip saddr {{ {addresses} }} tcp sport {RAFT_PORT} drop
  }}
  chain output {{
    type filter hook output priority -10; policy accept;
    ip daddr {{ {addresses} }} tcp dport {RAFT_PORT} drop
    ip daddr {{ {addresses} }} tcp sport {RAFT_PORT} drop
  }}
}}
"""
    subprocess.run(["nsenter", f"--net={netns}", "nft", "-f", "-"], input=rules, text=True, check=True, timeout=10)


def heal(netns: str) -> None:
    subprocess.run(
        ["nsenter", f"--net={netns}", "nft", "delete", "table", "inet", PARTITION_TABLE],
        capture_output=True,
        timeout=10,
    )


class Writers:
    """Threads putting batches of unique records through `client` until stopped; remembers the
    sequence number of every record acknowledged, when the call that carried it was sent, and
    the time of each acknowledgement."""

    def __init__(self, client, stream: str, prefix: str, threads: int = 3) -> None:
        import threading

        self.client = client
        self.stream = stream
        self.prefix = prefix
        self.acknowledged: dict[str, str] = {}
        self.sent_at: dict[str, float] = {}
        self.last_ack = 0.0
        self.ack_times: list[float] = []
        self.failures = 0
        self.failed_calls = 0
        self.lock = threading.Lock()
        self.stop_event = threading.Event()
        self.threads = [threading.Thread(target=self.run, args=(n,)) for n in range(threads)]
        for thread in self.threads:
            thread.start()

    def run(self, number: int) -> None:
        batch = 0
        while not self.stop_event.is_set():
            entries = [
                {"Data": f"{self.prefix}{number}-{batch}-{i}".encode(), "PartitionKey": f"k{number}-{batch}-{i}"}
                for i in range(20)
            ]
            batch += 1
            sent = time.monotonic()
            try:
                answer = self.client.put_records(StreamName=self.stream, Records=entries)
            except Exception:  # cut off or timed out: nothing of this call was acknowledged
                with self.lock:
                    self.failures += 1
                    self.failed_calls += 1
                continue
            with self.lock:
                for entry, result in zip(entries, answer["Records"]):
                    if "SequenceNumber" in result:
                        data = entry["Data"].decode()
                        self.acknowledged[data] = result["SequenceNumber"]
                        self.sent_at[data] = sent
                    else:
                        self.failures += 1
                if any("SequenceNumber" in result for result in answer["Records"]):
                    self.last_ack = time.monotonic()
                    self.ack_times.append(self.last_ack)

    def count(self) -> int:
        with self.lock:
            return len(self.acknowledged)

    def summary(self) -> str:
        with self.lock:
            return (
                f"{len(self.acknowledged)} records acknowledged, {self.failures} refused (throttled "
                f"included) or cut off, {self.failed_calls} calls failed outright"
            )

    def wait_for_more(self, records: int, message: str, timeout: float = 60) -> None:
        """Waits until more than `records` records beyond those acknowledged now are."""
        before = self.count()
        wait_for(lambda: self.count() > before + records, timeout, message)

    def assert_each_stored_once(self, read: dict[str, list[str]]) -> None:
        """Checks that what was read (data → sequence numbers, as `read_sequences` returns it) is
        only records these writers sent, intact and each once: a call that failed may still have
        stored its records, but never twice, since no call is retried."""
        pattern = re.compile(rf"{re.escape(self.prefix)}\d+-\d+-\d+")
        strange = [data for data in read if not pattern.fullmatch(data)]
        assert not strange, f"{len(strange)} records read that no writer sent, e.g. {strange[:3]}"
        twice = {data: sequences for data, sequences in read.items() if len(sequences) > 1}
        assert not twice, f"{len(twice)} records stored more than once, e.g. {list(twice.items())[:3]}"

    def acknowledged_so_far(self) -> tuple[set[str], float]:
        """The records acknowledged until now, and now: every one of them was stored before any
        record sent later."""
        with self.lock:
            return set(self.acknowledged), time.monotonic()

    def sent_after(self, moment: float) -> set[str]:
        """The acknowledged records whose call was sent after `moment`."""
        with self.lock:
            return {data for data, sent in self.sent_at.items() if sent > moment}

    def longest_pause(self, since: float) -> tuple[float, float]:
        """The start and end of the longest time without an acknowledged write from `since`
        until now."""
        with self.lock:
            times = [since] + [t for t in self.ack_times if t > since] + [time.monotonic()]
        return max(zip(times, times[1:]), key=lambda pause: pause[1] - pause[0])

    def longest_gap(self, since: float) -> float:
        """The longest time without an acknowledged write from `since` until now."""
        start, end = self.longest_pause(since)
        return end - start

    def stop(self) -> None:
        self.stop_event.set()
        for thread in self.threads:
            thread.join(timeout=60)


def test_a_leader_cut_off_from_its_followers_is_replaced_and_acknowledges_nothing(cluster: Cluster):
    """replicationFactor 3 under writes: the leader's replication traffic with both followers
    is dropped inside its pod's network namespace. The followers elect a new leader, the status
    names it, and writes through the gateway resume; the old leader, still running and still
    reachable on its API port, acknowledges nothing sent to it directly. After healing, every
    acknowledged record is read back exactly once with its sequence number, and nothing the
    old leader was sent while cut off is."""
    name = f"{cluster.stream}-cut"
    kubectl("apply", "-f", "-", stdin=replicated_manifest(cluster.namespace, name))
    wait_ready(cluster.namespace, name)
    pods = group_pods(name)

    group = wait_for(
        lambda: group_settled(cluster.namespace, name),
        60,
        "the status to name the group's leader with every replica caught up",
    )
    old_leader, old_term = group["leader"], group["term"]
    ips = {pod: kubectl_json("get", "pod", pod, "-n", cluster.namespace)["status"]["podIP"] for pod in pods}
    netns = pod_netns(ips[old_leader])
    if netns is None:
        kubectl("delete", "stream", name, "-n", cluster.namespace, "--timeout=120s")
        pytest.skip("the pods' network namespaces are not on this host (kind?): cannot cut one off")
    followers = [pod for pod in pods if pod != old_leader]
    wait_routed(cluster, name, "the gateway to route the stream")
    writers = Writers(cluster.client(**SHORT_CALLS), name, "w")
    direct = cluster.client(f"http://{ips[old_leader]}:4567", **SHORT_CALLS)
    sent_direct: list[str] = []
    try:
        wait_for(lambda: writers.count() > 300, 60, "writes to be acknowledged before the cut")
        cut_off(netns, [ips[pod] for pod in followers])
        cut_at = time.monotonic()
        try:
            acknowledged_at_cut = writers.count()

            def new_leader() -> dict | None:
                group = group_leadership(cluster.namespace, name)
                if group.get("leader") in followers and group.get("term", 0) > old_term:
                    return group
                return None

            # The followers elect one of themselves (as they report it), then the operator's
            # next pass records it.
            elected = wait_for(
                lambda: replica_metrics_leader(cluster.namespace, followers), 60, "a follower to be elected"
            )
            elected_after = time.monotonic() - cut_at
            group = wait_for(new_leader, 90, "the status to name a follower as the new leader")
            reported_after = time.monotonic() - cut_at
            assert group["leader"] == elected, group
            wait_for(
                lambda: writers.count() > acknowledged_at_cut + 300 and writers.last_ack > cut_at,
                90,
                "writes through the gateway to resume on the new leader",
            )
            outage = writers.longest_gap(cut_at)
            print(
                f"\ne2e: leader {old_leader} cut off from its followers: {elected} elected {elected_after:.1f} s "
                f"after the cut, named in the status (term {group['term']}) after {reported_after:.1f} s; "
                f"writes through the gateway stalled for at most {outage:.1f} s, "
                f"{writers.count() - acknowledged_at_cut} acknowledged since the cut"
            )
            # The old leader still believes it leads, but can reach no quorum: whatever it is
            # sent directly is refused or never answered.
            for i in range(3):
                data = f"direct-{i}"
                sent_direct.append(data)
                try:
                    answer = direct.put_record(StreamName=name, Data=data.encode(), PartitionKey=data)
                except Exception as error:  # refused, or no answer within the timeout
                    print(f"e2e: a write sent to the cut-off leader {old_leader} failed: {type(error).__name__}: {error}")
                else:
                    raise AssertionError(f"the cut-off leader {old_leader} acknowledged {data}: {answer}")
            cut_off_role = next(r for r in group["replicas"] if r["pod"] == old_leader)
            assert not cut_off_role["caughtUp"], group
        finally:
            heal(netns)
        healed_at = time.monotonic()
        rejoined = wait_for(lambda: group_settled(cluster.namespace, name), 90, f"{old_leader} to rejoin and catch up")
        print(f"e2e: healed; {old_leader} followed {rejoined['leader']} again {time.monotonic() - healed_at:.1f} s later")
        assert rejoined["leader"] != old_leader or rejoined["term"] > group["term"]
        writers.wait_for_more(100, "writes to continue after healing")
    finally:
        writers.stop()
        heal(netns)
    print(f"e2e: {writers.summary()}")
    read = assert_read_back_exactly_once(cluster.kinesis, name, writers.acknowledged)
    appeared = [data for data in sent_direct if data in read]
    assert not appeared, f"records sent only to the cut-off leader were stored: {appeared}"
    kubectl("delete", "stream", name, "-n", cluster.namespace, "--timeout=120s")
    assert_nothing_left(cluster.namespace, name)


def replicated_stream_under_writes(cluster: Cluster, name: str, prefix: str) -> tuple[dict, Writers]:
    """Creates the replicationFactor 3 stream `name` and starts writers putting records
    `prefix...` through the gateway; returns the group's status entry, naming its leader with
    every replica caught up, once 300 records are acknowledged, and the running writers."""
    kubectl("apply", "-f", "-", stdin=replicated_manifest(cluster.namespace, name))
    wait_ready(cluster.namespace, name)
    group = wait_for(
        lambda: group_settled(cluster.namespace, name),
        60,
        "the status to name the group's leader with every replica caught up",
    )
    wait_routed(cluster, name, "the gateway to route the replicated stream")
    writers = Writers(cluster.client(**SHORT_CALLS), name, prefix)
    try:
        wait_for(lambda: writers.count() > 300, 60, "writes to be acknowledged before the fault")
    except AssertionError:
        writers.stop()
        raise
    return group, writers


def replica_copy_client(cluster: Cluster, pod: str):
    """A client of the replica in `pod` that reads what that replica stores itself."""
    ip = kubectl_json("get", "pod", pod, "-n", cluster.namespace)["status"]["podIP"]
    return cluster.client(f"http://{ip}:4567", read_local=True, **SHORT_CALLS)


def replica_entry(group: dict, pod: str) -> dict:
    """The `replicas` entry of `pod` in a `status.groups` entry ({} if absent)."""
    return next((r for r in group.get("replicas", []) if r["pod"] == pod), {})


def test_a_follower_restarted_on_an_empty_volume_catches_up(cluster: Cluster):
    """replicationFactor 3 under writes: a follower's claim is deleted and its pod force-deleted,
    so the StatefulSet brings it back on a new, empty volume. Writes go on meanwhile (the leader
    keeps a quorum with the other follower, and keeps leading); the new replica becomes Ready
    and catches up, its own copy holds every acknowledged record once with the sequence number
    the leader gave it, and so do reads through the gateway."""
    name = f"{cluster.stream}-blank"
    group, writers = replicated_stream_under_writes(cluster, name, "b")
    leader, term = group["leader"], group["term"]
    follower = next(r["pod"] for r in group["replicas"] if r["pod"] != leader)
    try:
        sts = kubectl_json("get", "statefulset", f"{name}-g0", "-n", cluster.namespace)
        claim = f"{sts['spec']['volumeClaimTemplates'][0]['metadata']['name']}-{follower}"
        old_claim = kubectl_json("get", "pvc", claim, "-n", cluster.namespace)
        uid = pod_uid(cluster.namespace, follower)
        # The claim stays, Terminating (kubernetes.io/pvc-protection), until its pod is gone; the
        # StatefulSet then gives the recreated pod a new claim, and the provisioner a new volume.
        kubectl("delete", "pvc", claim, "-n", cluster.namespace, "--wait=false")
        force_delete_pods(cluster.namespace, follower)
        deleted_at = time.monotonic()
        acknowledged_at_deletion = writers.count()
        wait_for(
            lambda: not replica_entry(group_leadership(cluster.namespace, name), follower).get("caughtUp", True),
            60,
            f"the status to show {follower} as no longer caught up",
        )
        wait_replaced(cluster.namespace, follower, uid)
        ready_after = time.monotonic() - deleted_at
        acknowledged_while_away = writers.count() - acknowledged_at_deletion
        new_claim = kubectl_json("get", "pvc", claim, "-n", cluster.namespace)
        assert new_claim["metadata"]["uid"] != old_claim["metadata"]["uid"], f"{claim} was not recreated"
        assert new_claim["spec"]["volumeName"] != old_claim["spec"]["volumeName"], f"{claim} kept its volume"

        # Caught up: following the same leader in the same term, with everything the leader had
        # applied when the replica came back.
        leading = replica_gauges(cluster.namespace, leader)
        assert leading.get("riffle_replica_is_leader") == "1", f"{leader} stopped leading: {leading}"
        target = int(leading["riffle_replica_applied_index"])

        def caught_up() -> dict | None:
            gauges = replica_gauges(cluster.namespace, follower)
            follows = all(
                gauges.get(gauge) == leading[gauge] for gauge in ("riffle_replica_leader", "riffle_replica_term")
            )
            return gauges if follows and int(gauges.get("riffle_replica_applied_index", "0")) >= target else None

        wait_for(caught_up, READY_WITHIN, f"{follower} to apply the leader's index {target}")
        caught_up_after = time.monotonic() - deleted_at

        def reported() -> dict | None:
            group = group_leadership(cluster.namespace, name)
            entry = replica_entry(group, follower)
            return group if entry.get("ready") and entry.get("caughtUp") else None

        rejoined = wait_for(reported, 60, f"the status to show {follower} as caught up")
        reported_after = time.monotonic() - deleted_at
        assert (rejoined["leader"], rejoined["term"]) == (leader, term), f"the leadership changed: {rejoined}"
        stall = writers.longest_gap(deleted_at)
        writers.wait_for_more(100, "writes to go on with the replica back")
    finally:
        writers.stop()
    print(
        f"\ne2e: follower {follower} restarted on an empty volume: Ready {ready_after:.1f} s after the "
        f"deletion, applied the leader's index {target} after {caught_up_after:.1f} s, caughtUp in the "
        f"status after {reported_after:.1f} s; writes through the gateway stalled for at most {stall:.1f} s, "
        f"{acknowledged_while_away} acknowledged while it was away"
    )
    print(f"e2e: {writers.summary()}")
    # The leader keeps a quorum with the other follower, so it never stops acknowledging: a pause
    # longer than its quorum window (1.5 s) and some scheduling delay would be a fault.
    assert acknowledged_while_away > 0, "no write was acknowledged while the follower was away"
    assert stall < 5.0, f"writes stalled for {stall:.1f} s while the leader kept its quorum"
    read = assert_read_back_exactly_once(cluster.kinesis, name, writers.acknowledged)
    writers.assert_each_stored_once(read)
    local = replica_copy_client(cluster, follower)
    copy = wait_for(
        lambda: assert_read_back_exactly_once(local, name, writers.acknowledged),
        60,
        f"{follower}'s own copy to hold every acknowledged record",
    )
    assert copy == read, (
        f"{follower}'s copy differs from the leader's: {len(set(copy) ^ set(read))} records in one only, "
        f"{sum(1 for data in copy if data in read and copy[data] != read[data])} with other sequence numbers"
    )
    kubectl("delete", "stream", name, "-n", cluster.namespace, "--timeout=120s")
    assert_nothing_left(cluster.namespace, name)


def assert_sequences_advance(client, stream: str, earlier: set[str], later: set[str]) -> None:
    """Checks that each shard's records read back in strictly increasing sequence numbers, and
    that in each shard every record of `later` comes after every record of `earlier`."""
    compared = 0
    for shard, records in all_records(client, stream).items():
        numbers = [int(r["SequenceNumber"]) for r in records]
        backwards = [(a, b) for a, b in zip(numbers, numbers[1:]) if a >= b]
        assert not backwards, f"{shard}: sequence numbers do not increase: {backwards[:3]}"
        placed = {r["Data"].decode(): int(r["SequenceNumber"]) for r in records}
        last_earlier = max((n for data, n in placed.items() if data in earlier), default=None)
        first_later = min((n for data, n in placed.items() if data in later), default=None)
        if last_earlier is not None and first_later is not None:
            compared += 1
            assert last_earlier < first_later, (
                f"{shard}: a record sent after the restart got sequence number {first_later}, "
                f"not above {last_earlier} acknowledged before it"
            )
    assert compared, "no shard holds records from both before and after the restart"


def test_a_whole_group_restarted_under_writes_loses_nothing(cluster: Cluster):
    """replicationFactor 3 under writes: all three pods of the group are force-deleted at once.
    Writes fail until the replicas are back and have elected a leader, then resume; every
    acknowledged record reads back once, intact, with its sequence number, and each shard's
    sequence numbers go on increasing past those acknowledged before the restart."""
    name = f"{cluster.stream}-all"
    group, writers = replicated_stream_under_writes(cluster, name, "a")
    pods = group_pods(name)
    try:
        uids = {pod: pod_uid(cluster.namespace, pod) for pod in pods}
        before, boundary = writers.acknowledged_so_far()
        force_delete_pods(cluster.namespace, *pods)
        deleted_at = time.monotonic()
        for pod in pods:
            wait_replaced(cluster.namespace, pod, uids[pod])
        ready_at = time.monotonic()

        def elected() -> dict | None:
            group = group_settled(cluster.namespace, name)
            return group if group and group["leader"] == replica_metrics_leader(cluster.namespace, pods) else None

        reported = wait_for(elected, 90, "the status to name the replicas' leader with every replica caught up")
        elected_after = time.monotonic() - deleted_at
        wait_for(lambda: len(writers.sent_after(ready_at)) > 300, 90, "writes to resume after the restart")
        stalled_from, stalled_until = writers.longest_pause(deleted_at)
    finally:
        writers.stop()
    print(
        f"\ne2e: all three replicas of {name}-g0 force-deleted: Ready again after {ready_at - deleted_at:.1f} s, "
        f"the status named {reported['leader']} (term {reported['term']}; before: {group['leader']}, term "
        f"{group['term']}) after {elected_after:.1f} s; writes stalled for {stalled_until - stalled_from:.1f} s "
        f"and resumed {stalled_until - deleted_at:.1f} s after the deletion"
    )
    print(f"e2e: {writers.summary()}")
    # Replicas restarted after a crash never resume the term they led in: the group went
    # through an election. (The gateway may carry the writers over the outage without a failed
    # call, waiting for the replicas to answer, so failures are no proof of it.)
    assert reported["term"] > group["term"], (group, reported)
    read = assert_read_back_exactly_once(cluster.kinesis, name, writers.acknowledged)
    writers.assert_each_stored_once(read)
    assert_sequences_advance(cluster.kinesis, name, before, writers.sent_after(boundary))
    kubectl("delete", "stream", name, "-n", cluster.namespace, "--timeout=120s")
    assert_nothing_left(cluster.namespace, name)


def test_a_replicated_stream_spans_groups_and_reshards_under_writes(cluster: Cluster):
    """replicationFactor 3 at two shards per group: two shards in one group of three replicas;
    `kubectl scale` to four while writers go on opens a second replicated group for two of the
    children. Every acknowledged record reads back exactly once with its sequence number, across
    the lineage, and each group names a leader."""
    name = f"{cluster.stream}-rwide"
    manifest = (
        replicated_manifest(cluster.namespace, name)
        .replace("shardsPerGroup: 8", "shardsPerGroup: 2")
        .replace("shardCount: 4", "shardCount: 2")
    )
    assert "shardsPerGroup: 2" in manifest and "shardCount: 2" in manifest
    kubectl("apply", "-f", "-", stdin=manifest)
    wait_ready(cluster.namespace, name)
    wait_routed(cluster, name, "the gateway to route the replicated stream")
    writers = Writers(cluster.client(), name, "rw")
    try:
        wait_for(lambda: writers.count() > 300, 60, "writes to be acknowledged before the reshard")
        started = time.monotonic()
        kubectl("scale", "stream", name, "-n", cluster.namespace, "--replicas=4")
        stream = wait_settled(cluster.namespace, name, 4)
        settled_after = time.monotonic() - started
        check_lineage(stream)
        open_groups = sorted(s["group"] for s in stream["status"]["shards"] if s["state"] == "Open")
        assert open_groups == [0, 0, 1, 1], stream["status"]["shards"]
        sets = kubectl_json("get", "statefulsets", "-n", cluster.namespace, "-l", f"{LABEL}={name}")["items"]
        assert sorted((s["metadata"]["name"], s["spec"]["replicas"]) for s in sets) == [
            (f"{name}-g0", 3),
            (f"{name}-g1", 3),
        ]
        for group in (0, 1):
            leadership = wait_for(
                lambda: (g := group_leadership(cluster.namespace, name, group)).get("leader") and g,
                60,
                f"the status to name group {group}'s leader",
            )
            assert leadership["leader"].startswith(f"{name}-g{group}-"), leadership
        writers.wait_for_more(300, "writes to go on after the reshard")
    finally:
        writers.stop()
    print(
        f"\ne2e: replicated stream resharded 2 -> 4 over two groups of three replicas in "
        f"{settled_after:.1f} s; {writers.count()} records acknowledged, {writers.failures} refused"
    )
    assert_read_back_exactly_once(cluster.kinesis, name, writers.acknowledged)
    kubectl("delete", "stream", name, "-n", cluster.namespace, "--timeout=120s")
    assert_nothing_left(cluster.namespace, name)


def assert_nothing_left(namespace: str, name: str) -> None:
    kinds = "statefulsets,services,configmaps,persistentvolumeclaims,poddisruptionbudgets"

    def empty():
        left = kubectl_json("get", kinds, "-n", namespace, "-l", f"{LABEL}={name}")["items"]
        return not left

    wait_for(empty, GONE_WITHIN, f"every object labelled {LABEL}={name} to be deleted")


def test_deleting_the_stream_leaves_nothing_behind(cluster: Cluster):
    kubectl("delete", "stream", cluster.stream, "-n", cluster.namespace, "--timeout=120s")
    assert get_stream(cluster.namespace, cluster.stream) is None
    assert_nothing_left(cluster.namespace, cluster.stream)

    def unrouted():
        cm = kubectl_json("get", "configmap", "riffle-gateway-routes", "-n", INSTALL_NAMESPACE)
        return cluster.stream not in json.loads(cm["data"]["routes.json"])["streams"]

    wait_for(unrouted, 30, "the stream's route to be removed")
