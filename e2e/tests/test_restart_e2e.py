"""The operator survives its own restart mid-reconcile and a kube-apiserver restart without
duplicating or losing objects, and reconciling an unchanged Stream writes nothing.

Run by `e2e/suites/restart.sh` after `make deploy`, on the e2e/cluster node (as root: the tests
signal the operator's process and restart kube-apiserver through e2e/cluster/apiserver.sh). The
tests run in file order and share two streams in a namespace of their own:

- `a` (4 shards) is created while the operator is killed before it is Ready;
- `b` (2 shards) is scaled to 8 (UpdateShardCount 2 -> 4 -> 8, two steps) and the operator is
  frozen as soon as the reshard has started, checked to be mid-reshard, then killed and its
  pod force-deleted;
- both must converge with exactly their objects, every record readable through the gateway, and
  no write to the Streams or anything they own while a freshly started operator reconciles them;
- kube-apiserver is then killed and started again with the same command line: the data plane
  keeps serving without it, nothing is rewritten or lost, the operator picks up a change and a new
  Stream made afterwards, and reconciling the unchanged streams again writes nothing;
- deleting the streams at the end leaves nothing labelled with their names.

Every wait is a bounded poll on a condition. Two spans are fixed on purpose: the churn window,
whose whole point is that nothing happens during it, and the API server outage, which is filled
with puts and full read-backs through the gateway.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import threading
import time
import urllib.request
import uuid
from pathlib import Path

import boto3
import pytest
from botocore.config import Config

from test_streams_e2e import (
    GONE_WITHIN,
    INSTALL_NAMESPACE,
    LABEL,
    READY_WITHIN,
    REPO,
    ROUTED_WITHIN,
    all_records,
    assert_nothing_left,
    check_lineage,
    condition,
    example_manifest,
    get_stream,
    kubectl,
    kubectl_json,
    kubectl_path,
    wait_for,
    wait_settled,
)

STATE = Path(os.environ.get("RIFFLE_CLUSTER_STATE", REPO / "e2e" / ".cluster"))
CONTAINERD_SOCKET = STATE / "run" / "containerd.sock"
APISERVER_SH = REPO / "e2e" / "cluster" / "apiserver.sh"
OPERATOR = "app.kubernetes.io/component=operator"
MANAGER = "riffle-operator"
KINDS = "statefulsets,services,configmaps,persistentvolumeclaims,poddisruptionbudgets"
# What one stream in one shard group of one replica owns: a StatefulSet, its headless Service, the
# shard-map ConfigMap, a PodDisruptionBudget, and the StatefulSet's claim for its one pod.
EXPECTED_KINDS = {
    "StatefulSet": 1,
    "Service": 1,
    "ConfigMap": 1,
    "PodDisruptionBudget": 1,
    "PersistentVolumeClaim": 1,
}
# Long enough to contain the operator's route-table resync (15 s) after every stream has been
# reconciled once; nothing in the controller is periodic on a shorter period.
CHURN_WINDOW = 20.0
# The API server stays down this long while records go through the data plane.
OUTAGE = 10.0
# kube-runtime's watchers back off up to ~30 s between attempts; two rounds is plenty.
RECONNECT_WITHIN = 90.0
OPERATOR_READY_WITHIN = 120.0

pytestmark = pytest.mark.skipif(
    os.geteuid() != 0 or not CONTAINERD_SOCKET.exists(),
    reason="needs the e2e/cluster node as root (signals the operator, restarts kube-apiserver)",
)


# ---------------------------------------------------------------------------------------------
# The operator's pod and process


def operator_pods() -> list[dict]:
    pods = kubectl_json("get", "pods", "-n", INSTALL_NAMESPACE, "-l", OPERATOR)["items"]
    return [p for p in pods if not p["metadata"].get("deletionTimestamp")]


def ready(pod: dict) -> bool:
    return any(
        c["type"] == "Ready" and c["status"] == "True" for c in pod.get("status", {}).get("conditions", [])
    )


def restarts(pod: dict) -> int:
    return sum(c.get("restartCount", 0) for c in pod["status"].get("containerStatuses", []))


def wait_operator(other_than: str | None = None, restarted_from: int | None = None) -> dict:
    """The one running operator pod once it is Ready: a pod other than `other_than`, or the same
    pod with more container restarts than `restarted_from`."""

    def up():
        pods = operator_pods()
        if len(pods) != 1 or not ready(pods[0]):
            return None
        pod = pods[0]
        if other_than and pod["metadata"]["name"] == other_than:
            return None
        if restarted_from is not None and restarts(pod) <= restarted_from:
            return None
        return pod

    return wait_for(up, OPERATOR_READY_WITHIN, "the operator to be running and Ready", interval=0.5)


def operator_pid(pod: dict) -> int:
    """The host PID of the operator container's process, from the node's containerd."""
    statuses = pod["status"]["containerStatuses"]
    assert len(statuses) == 1, statuses
    container = statuses[0]["containerID"].removeprefix("containerd://")
    tasks = subprocess.run(
        ["ctr", "--address", str(CONTAINERD_SOCKET), "-n", "k8s.io", "tasks", "ls"],
        capture_output=True, text=True, check=True, timeout=30,
    ).stdout
    for line in tasks.splitlines()[1:]:
        fields = line.split()
        if fields and fields[0] == container and fields[2] == "RUNNING":
            return int(fields[1])
    raise AssertionError(f"no running containerd task for the operator container {container}")


def operator_metrics(pod: dict) -> dict[str, float]:
    """The operator's unlabelled Prometheus counters, read from its pod."""
    port = next(
        p["containerPort"] for p in pod["spec"]["containers"][0]["ports"] if p.get("name") == "http"
    )
    url = f"http://{pod['status']['podIP']}:{port}/metrics"
    with urllib.request.build_opener(urllib.request.ProxyHandler({})).open(url, timeout=10) as answer:
        text = answer.read().decode()
    values = {}
    for line in text.splitlines():
        if line and not line.startswith("#") and "{" not in line:
            name, value = line.split()
            values[name] = float(value)
    values["failures"] = sum(
        float(line.split()[-1]) for line in text.splitlines()
        if line.startswith("riffle_operator_reconcile_failures_total{")
    )
    return values


def reconciled(metrics: dict[str, float]) -> float:
    return metrics.get("riffle_operator_reconciliations_total", 0)


def idle(metrics: dict[str, float]) -> bool:
    """No reconciliation is in flight: every one started has finished."""
    return metrics.get("riffle_operator_reconcile_duration_seconds_count", 0) == reconciled(metrics)


# ---------------------------------------------------------------------------------------------
# What the cluster holds for a stream


def stream_objects(namespace: str, name: str, uid: str) -> list[dict]:
    """Every object of the kinds the operator makes that is labelled with the stream or owned by
    it (an unlabelled duplicate counts too)."""
    items = kubectl_json("get", KINDS, "-n", namespace)["items"]
    return [
        item for item in items
        if item["metadata"].get("labels", {}).get(LABEL) == name
        or any(o.get("uid") == uid for o in item["metadata"].get("ownerReferences", []))
    ]


def assert_exactly_its_objects(namespace: str, name: str) -> dict:
    stream = get_stream(namespace, name)
    assert stream, f"Stream {namespace}/{name} is gone"
    uid = stream["metadata"]["uid"]
    objects = stream_objects(namespace, name, uid)
    counts: dict[str, int] = {}
    for item in objects:
        counts[item["kind"]] = counts.get(item["kind"], 0) + 1
    names = sorted(f"{i['kind']}/{i['metadata']['name']}" for i in objects)
    assert counts == EXPECTED_KINDS, f"{namespace}/{name} owns {names}"
    for item in objects:
        if item["kind"] == "PersistentVolumeClaim":
            assert item["status"].get("phase") == "Bound", item["metadata"]["name"]
            continue
        owners = [o for o in item["metadata"].get("ownerReferences", []) if o.get("controller")]
        assert [o["uid"] for o in owners] == [uid], f"{item['kind']}/{item['metadata']['name']}: {owners}"
        labels = item["metadata"]["labels"]
        assert labels.get("app.kubernetes.io/managed-by") == MANAGER and labels.get(LABEL) == name
    sts = next(i for i in objects if i["kind"] == "StatefulSet")
    assert sts["spec"]["replicas"] == 1
    return stream


def snapshot(namespace: str, names: list[str]) -> dict[str, str]:
    """resourceVersion of every Stream, every object they own, the gateway's route table and every
    Event the operator reported in the namespace: any write to one of them changes this."""
    versions: dict[str, str] = {}
    for name in names:
        stream = get_stream(namespace, name)
        assert stream, name
        versions[f"Stream/{name}"] = stream["metadata"]["resourceVersion"]
        for item in stream_objects(namespace, name, stream["metadata"]["uid"]):
            versions[f"{item['kind']}/{item['metadata']['name']}"] = item["metadata"]["resourceVersion"]
    routes = kubectl_json("get", "configmap", "riffle-gateway-routes", "-n", INSTALL_NAMESPACE)
    versions["ConfigMap/riffle-gateway-routes"] = routes["metadata"]["resourceVersion"]
    for event in kubectl_json("get", "events", "-n", namespace)["items"]:
        if event.get("reportingComponent") == MANAGER:
            versions[f"Event/{event['metadata']['name']}"] = event["metadata"]["resourceVersion"]
    return versions


def changed(before: dict[str, str], after: dict[str, str]) -> list[str]:
    return sorted(
        f"{key}: {before.get(key, 'absent')} -> {after.get(key, 'absent')}"
        for key in before.keys() | after.keys()
        if before.get(key) != after.get(key)
    )


def assert_nothing_written(namespace: str, names: list[str], expected: dict[str, str], window: float) -> None:
    """Compares against `expected` every couple of seconds for `window` seconds (the only fixed
    wait of the suite: it proves an absence) and fails at the first write."""
    end = time.monotonic() + window
    while True:
        now = snapshot(namespace, names)
        assert not changed(expected, now), f"written during the churn window: {changed(expected, now)}"
        if time.monotonic() >= end:
            return
        time.sleep(min(2.0, max(0.0, end - time.monotonic())))


def converged(namespace: str, name: str, shards: int, timeout: float) -> dict:
    """wait_settled with a deadline of its own."""

    def settled():
        stream = get_stream(namespace, name)
        status = (stream or {}).get("status", {})
        if (
            stream
            and status.get("openShardCount") == shards
            and status.get("observedGeneration") == stream["metadata"]["generation"]
            and condition(stream, "Progressing").get("status") == "False"
            and condition(stream, "Ready").get("status") == "True"
        ):
            return stream
        return None

    return wait_for(settled, timeout, f"{namespace}/{name} to settle at {shards} open shards")


def foreign_streams(namespace: str) -> list[str]:
    items = kubectl_json("get", "streams", "-A")["items"]
    return [
        f"{i['metadata']['namespace']}/{i['metadata']['name']}"
        for i in items if i["metadata"]["namespace"] != namespace
    ]


def stream_events(namespace: str, name: str, reason: str) -> int:
    """How many times the operator reported `reason` on the stream (series counted)."""
    events = kubectl_json(
        "get", "events", "-n", namespace, "--field-selector", f"involvedObject.name={name}"
    )["items"]
    total = 0
    for event in events:
        if event.get("reason") == reason and event.get("reportingComponent") == MANAGER:
            total += (event.get("series") or {}).get("count") or event.get("count") or 1
    return total


def apiserver(action: str) -> None:
    result = subprocess.run([str(APISERVER_SH), action], capture_output=True, text=True, timeout=150)
    print(result.stdout.strip())
    assert result.returncode == 0, f"apiserver.sh {action} failed: {result.stderr.strip()}"


def apiserver_answers() -> bool:
    result = subprocess.run(
        [kubectl_path(), "get", "--raw", "/readyz", "--request-timeout=3s"],
        capture_output=True, text=True, timeout=30,
    )
    return result.returncode == 0


# ---------------------------------------------------------------------------------------------


class Shared:
    def __init__(self) -> None:
        suffix = uuid.uuid4().hex[:6]
        self.namespace = f"riffle-restart-{suffix}"
        self.a = f"restart-a-{suffix}"
        self.b = f"restart-b-{suffix}"
        self.c = f"restart-c-{suffix}"
        self.written: dict[str, set[str]] = {}
        ip = kubectl(
            "get", "svc", "riffle-gateway", "-n", INSTALL_NAMESPACE, "-o", "jsonpath={.spec.clusterIP}"
        ).stdout.strip()
        assert ip, "the gateway Service has no ClusterIP"
        for var in ("NO_PROXY", "no_proxy"):
            os.environ[var] = ",".join(filter(None, [os.environ.get(var), ip]))
        self.kinesis = boto3.client(
            "kinesis",
            endpoint_url=f"http://{ip}:4567",
            config=Config(retries={"max_attempts": 3, "mode": "standard"}, connect_timeout=5, read_timeout=60),
        )

    def streams(self) -> list[str]:
        return [n for n in (self.a, self.b, self.c) if get_stream(self.namespace, n)]

    def apply(self, name: str, shards: int) -> None:
        manifest = example_manifest(self.namespace, name).replace("shardCount: 4", f"shardCount: {shards}")
        assert f"shardCount: {shards}" in manifest
        kubectl("apply", "-f", "-", stdin=manifest)

    def routed(self, name: str, shards: int) -> dict:
        def served():
            summary = self.kinesis.describe_stream_summary(StreamName=name)["StreamDescriptionSummary"]
            return summary if summary["OpenShardCount"] == shards else None

        return wait_for(served, ROUTED_WITHIN, f"the gateway to serve {name} with {shards} shards", interval=0.5)

    def put(self, name: str, prefix: str, count: int) -> None:
        """Puts `count` records `prefix-i`, putting again those the gateway throttled, as a
        producer does; any other per-record error fails."""
        written = self.written.setdefault(name, set())
        pending = [{"Data": f"{prefix}-{i}".encode(), "PartitionKey": f"key-{prefix}-{i}"} for i in range(count)]

        def all_in():
            nonlocal pending
            answer = self.kinesis.put_records(StreamName=name, Records=pending)
            throttled = []
            for entry, result in zip(pending, answer["Records"]):
                if "ErrorCode" not in result:
                    written.add(entry["Data"].decode())
                elif result["ErrorCode"] == "ProvisionedThroughputExceededException":
                    throttled.append(entry)
                else:
                    raise RuntimeError(f"{name}: {result['ErrorCode']}: {result.get('ErrorMessage')}")
            pending = throttled
            return not pending

        wait_for(all_in, 60, f"{count} records put into {name}")

    def assert_every_record_readable(self, name: str) -> None:
        records = all_records(self.kinesis, name)
        read = [r["Data"].decode() for rs in records.values() for r in rs]
        assert len(read) == len(set(read)), f"{name}: a record is served twice"
        assert set(read) == self.written.get(name, set()), (
            f"{name}: {len(self.written.get(name, set()) - set(read))} records lost, "
            f"{len(set(read) - self.written.get(name, set()))} unexpected"
        )


def delete_streams(shared: Shared) -> None:
    """Deletes the streams and waits for the operator to release them."""
    for name in (shared.a, shared.b, shared.c):
        kubectl("delete", "stream", name, "-n", shared.namespace, "--ignore-not-found", "--wait=false")
    wait_for(lambda: not shared.streams(), GONE_WITHIN, "the streams to be deleted", interval=0.5)


@pytest.fixture(scope="module")
def shared():
    state = Shared()
    kubectl("create", "namespace", state.namespace)
    try:
        yield state
    finally:
        # Best effort: the last test deletes the streams and checks what is left.
        if not apiserver_answers():
            apiserver("start")
        if state.streams():
            try:
                delete_streams(state)
            except AssertionError as error:
                print(f"\nrestart: cleanup: {error}")
        kubectl("delete", "namespace", state.namespace, "--ignore-not-found", "--timeout=90s", check=False)


# ---------------------------------------------------------------------------------------------
# 1. The operator restarted in the middle of its work


def test_operator_killed_while_a_stream_is_being_created(shared: Shared):
    pod = wait_operator()
    pid, restarts_before = operator_pid(pod), restarts(pod)
    shared.apply(shared.a, 4)

    def first_pass():
        stream = get_stream(shared.namespace, shared.a)
        return stream if stream and condition(stream, "Ready") else None

    wait_for(first_pass, READY_WITHIN, f"the operator's first status on {shared.a}", interval=0.05)
    os.kill(pid, signal.SIGKILL)
    at_kill = get_stream(shared.namespace, shared.a)
    made = sorted(
        f"{i['kind']}/{i['metadata']['name']}"
        for i in stream_objects(shared.namespace, shared.a, at_kill["metadata"]["uid"])
    )
    print(f"\nrestart: killed the operator with {shared.a} at Ready={condition(at_kill, 'Ready')['status']} "
          f"({condition(at_kill, 'Ready').get('reason')}), objects so far: {made}")
    assert condition(at_kill, "Ready")["status"] != "True", "the kill came after the stream was Ready"

    started = time.monotonic()
    wait_operator(restarted_from=restarts_before)
    settled = wait_settled(shared.namespace, shared.a, 4)
    print(f"restart: operator back and {shared.a} Ready {time.monotonic() - started:.1f} s after the kill")
    assert [s["state"] for s in settled["status"]["shards"]] == ["Open"] * 4
    assert_exactly_its_objects(shared.namespace, shared.a)
    assert stream_events(shared.namespace, shared.a, "StreamCreated") == 1, "created once in the data plane"

    shared.routed(shared.a, 4)
    shared.put(shared.a, "created", 400)
    shared.assert_every_record_readable(shared.a)


def test_operator_killed_in_the_middle_of_a_two_step_reshard(shared: Shared):
    shared.apply(shared.b, 2)
    wait_settled(shared.namespace, shared.b, 2)
    shared.routed(shared.b, 2)
    shared.put(shared.b, "before-reshard", 300)
    shared.assert_every_record_readable(shared.b)

    pod = wait_operator()
    pid = operator_pid(pod)
    frozen = threading.Event()
    # Watches the stream and freezes the operator (SIGSTOP) the moment it reports a reshard in
    # progress: whatever it does next is held until it is killed.
    watch = subprocess.Popen(
        [
            kubectl_path(), "get", "stream", shared.b, "-n", shared.namespace, "--watch",
            "-o", 'jsonpath={.status.conditions[?(@.type=="Progressing")].reason}{"\\n"}',
        ],
        stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True,
    )

    def freeze_on_reshard():
        for line in watch.stdout:
            if line.strip() == "Resharding":
                os.kill(pid, signal.SIGSTOP)
                frozen.set()
                return

    watcher = threading.Thread(target=freeze_on_reshard, daemon=True)
    watcher.start()
    killed = False
    try:
        kubectl("scale", "stream", shared.b, "-n", shared.namespace, "--replicas=8")
        assert frozen.wait(60), "the operator never reported the reshard as in progress"
        at_freeze = get_stream(shared.namespace, shared.b)
        serving = shared.kinesis.describe_stream_summary(StreamName=shared.b)["StreamDescriptionSummary"]
        progressing = condition(at_freeze, "Progressing")
        print(f"\nrestart: froze the operator mid-reshard: status {progressing['reason']} "
              f"({progressing.get('message')}), status openShardCount {at_freeze['status']['openShardCount']}, "
              f"data plane {serving['OpenShardCount']} open shards")
        os.kill(pid, signal.SIGKILL)
        killed = True
        assert progressing["status"] == "True", "the reshard was finished before the operator stopped"
        assert serving["OpenShardCount"] in (2, 4, 8), serving
    finally:
        if not killed:
            os.kill(pid, signal.SIGKILL)
        watch.kill()
        watch.wait()
    kubectl("delete", "pod", pod["metadata"]["name"], "-n", INSTALL_NAMESPACE, "--grace-period=0", "--force")

    started = time.monotonic()
    wait_operator(other_than=pod["metadata"]["name"])
    stream = wait_settled(shared.namespace, shared.b, 8)
    print(f"restart: new operator pod finished the reshard {time.monotonic() - started:.1f} s after the kill")
    check_lineage(stream)
    assert_exactly_its_objects(shared.namespace, shared.b)
    # 2 -> 4 -> 8: the two original shards, then four children, closed; eight open.
    states = [s["state"] for s in stream["status"]["shards"]]
    assert (states.count("Open"), states.count("Closed")) == (8, 6), states
    listed = shared.kinesis.list_shards(StreamName=shared.b)["Shards"]
    assert sorted(s["ShardId"] for s in listed) == sorted(s["shardId"] for s in stream["status"]["shards"])
    assert sum("EndingSequenceNumber" not in s["SequenceNumberRange"] for s in listed) == 8

    shared.routed(shared.b, 8)
    shared.assert_every_record_readable(shared.b)
    shared.put(shared.b, "after-reshard", 200)
    shared.assert_every_record_readable(shared.b)


def test_a_restarted_operator_rewrites_nothing_of_unchanged_streams(shared: Shared):
    names = [shared.a, shared.b]
    wait_settled(shared.namespace, shared.a, 4)
    wait_settled(shared.namespace, shared.b, 8)
    before = snapshot(shared.namespace, names)
    pod = wait_operator()
    kubectl("delete", "pod", pod["metadata"]["name"], "-n", INSTALL_NAMESPACE, "--timeout=60s")
    fresh = wait_operator(other_than=pod["metadata"]["name"])
    streams_in_cluster = len(kubectl_json("get", "streams", "-A")["items"])

    def reconciled_all():
        metrics = operator_metrics(fresh)
        return metrics if reconciled(metrics) >= streams_in_cluster and idle(metrics) else None

    wait_for(reconciled_all, 60, f"the new operator to reconcile all {streams_in_cluster} streams", interval=0.5)
    assert_nothing_written(shared.namespace, names, before, CHURN_WINDOW)
    metrics = operator_metrics(fresh)
    print(f"\nrestart: new operator, {CHURN_WINDOW:.0f} s window: {reconciled(metrics):.0f} reconciliations, "
          f"{metrics.get('riffle_operator_status_writes_total', 0):.0f} status writes, "
          f"{metrics.get('riffle_operator_events_total', 0):.0f} events")
    assert metrics["failures"] == 0
    others = foreign_streams(shared.namespace)
    if others:
        print(f"restart: other streams exist ({others}); the operator-wide write counters are not checked")
    else:
        assert metrics.get("riffle_operator_status_writes_total", 0) == 0
        assert metrics.get("riffle_operator_events_total", 0) == 0
        assert metrics.get("riffle_operator_routes_writes_total", 0) == 0


# ---------------------------------------------------------------------------------------------
# 2. kube-apiserver killed and started again


def test_an_api_server_restart_loses_and_rewrites_nothing(shared: Shared):
    names = [shared.a, shared.b]
    before = snapshot(shared.namespace, names)
    pod = wait_operator()
    apiserver("stop")
    stopped_at = time.monotonic()
    try:
        assert not apiserver_answers(), "kube-apiserver still answers after it was killed"
        # The data plane needs no API server: records keep going in and out through the gateway.
        # Each round puts a batch into both streams and reads both back in full.
        batches = 0
        while batches == 0 or time.monotonic() - stopped_at < OUTAGE:
            for name in names:
                shared.put(name, f"outage-{batches}", 50)
            for name in names:
                shared.assert_every_record_readable(name)
            batches += 1
    finally:
        apiserver("start")
    print(f"\nrestart: kube-apiserver was down {time.monotonic() - stopped_at:.1f} s; "
          f"{batches} batches per stream went through the gateway meanwhile")

    after = snapshot(shared.namespace, names)
    assert not changed(before, after), f"written across the outage: {changed(before, after)}"
    for name in names:
        assert_exactly_its_objects(shared.namespace, name)
        shared.assert_every_record_readable(name)
    pods = operator_pods()
    assert [p["metadata"]["name"] for p in pods] == [pod["metadata"]["name"]], "the operator pod was replaced"
    print(f"restart: operator container restarts across the outage: {restarts(pods[0]) - restarts(pod)}")


def test_the_operator_reconciles_again_after_an_api_server_restart(shared: Shared):
    back_at = time.monotonic()
    kubectl(
        "patch", "stream", shared.a, "-n", shared.namespace, "--type=merge",
        "-p", json.dumps({"spec": {"retentionPeriodHours": 48}}),
    )
    shared.apply(shared.c, 1)

    def retention_applied():
        summary = shared.kinesis.describe_stream_summary(StreamName=shared.a)["StreamDescriptionSummary"]
        stream = get_stream(shared.namespace, shared.a)
        return (
            summary["RetentionPeriodHours"] == 48
            and stream["status"].get("observedGeneration") == stream["metadata"]["generation"]
        )

    wait_for(retention_applied, RECONNECT_WITHIN, f"{shared.a}'s new retention to reach the data plane", interval=0.5)
    print(f"\nrestart: a change made after the API server came back was reconciled in {time.monotonic() - back_at:.1f} s")
    converged(shared.namespace, shared.c, 1, RECONNECT_WITHIN)
    print(f"restart: a Stream made after the API server came back was Ready in {time.monotonic() - back_at:.1f} s")
    for name in (shared.a, shared.b, shared.c):
        assert_exactly_its_objects(shared.namespace, name)
    shared.routed(shared.c, 1)
    shared.put(shared.c, "after-outage", 100)
    for name in (shared.a, shared.b, shared.c):
        shared.assert_every_record_readable(name)


def test_reconciling_unchanged_streams_after_an_api_server_restart_writes_nothing(shared: Shared):
    names = shared.streams()
    assert shared.c in names, "the stream made after the API server restart exists"
    for name, shards in ((shared.a, 4), (shared.b, 8), (shared.c, 1)):
        converged(shared.namespace, name, shards, RECONNECT_WITHIN)
    pod = wait_operator()
    expected = snapshot(shared.namespace, names)
    metrics_before = operator_metrics(pod)
    # An annotation changes neither spec nor generation, but every Stream event is reconciled:
    # the only writes allowed are these annotations themselves.
    for name in names:
        touched = kubectl(
            "annotate", "stream", name, "-n", shared.namespace, "--overwrite",
            f"e2e.riffle.dev/touched={time.time_ns()}", "-o", "json",
        )
        expected[f"Stream/{name}"] = json.loads(touched.stdout)["metadata"]["resourceVersion"]

    def reconciled_all():
        metrics = operator_metrics(pod)
        return metrics if reconciled(metrics) >= reconciled(metrics_before) + len(names) and idle(metrics) else None

    wait_for(reconciled_all, 60, f"the operator to reconcile the {len(names)} touched streams", interval=0.5)
    assert_nothing_written(shared.namespace, names, expected, CHURN_WINDOW)
    metrics = operator_metrics(pod)
    print(f"\nrestart: {reconciled(metrics) - reconciled(metrics_before):.0f} reconciliations of unchanged "
          f"streams after the API server restart in {CHURN_WINDOW:.0f} s")
    for counter in ("riffle_operator_status_writes_total", "riffle_operator_events_total",
                    "riffle_operator_routes_writes_total", "failures"):
        assert metrics.get(counter, 0) == metrics_before.get(counter, 0), counter


# ---------------------------------------------------------------------------------------------


def test_deleting_the_streams_leaves_nothing_behind(shared: Shared):
    names = shared.streams()
    assert names, "the streams of the suite exist"
    delete_streams(shared)
    for name in names:
        assert_nothing_left(shared.namespace, name)

    def unrouted():
        cm = kubectl_json("get", "configmap", "riffle-gateway-routes", "-n", INSTALL_NAMESPACE)
        routed = json.loads(cm["data"]["routes.json"])["streams"]
        return not any(name in routed for name in names)

    wait_for(unrouted, 30, "the streams' routes to be removed")
