"""Shared fixtures for the Riffle client tests.

The tests talk to a real `riffle` binary (env `RIFFLE_BIN`, default `<repo>/target/debug/riffle`)
through boto3, the AWS CLI and raw HTTP. Every wait is a bounded poll on a condition.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
import uuid
from pathlib import Path

import boto3
import pytest
from botocore.config import Config
from botocore.exceptions import ClientError

REPO = Path(__file__).resolve().parents[2]
RIFFLE_BIN = os.environ.get("RIFFLE_BIN", str(REPO / "target" / "debug" / "riffle"))
REGION = "us-east-1"
ACCOUNT = "000000000000"
MAX_HASH_KEY = 2**128 - 1

# Dummy credentials: boto3 and the CLI sign requests normally with these.
for _key, _value in {
    "AWS_ACCESS_KEY_ID": "test",
    "AWS_SECRET_ACCESS_KEY": "test",
    "AWS_DEFAULT_REGION": REGION,
    "AWS_EC2_METADATA_DISABLED": "true",
}.items():
    os.environ.setdefault(_key, _value)


# --------------------------------------------------------------------------------------------
# Small helpers usable from every module
# --------------------------------------------------------------------------------------------


def wait_for(condition, timeout=30.0, interval=0.05, message="condition"):
    """Polls `condition()` until it returns a truthy value, which is returned.

    Raises AssertionError after `timeout` seconds. Exceptions from the condition propagate.
    """
    deadline = time.monotonic() + timeout
    while True:
        value = condition()
        if value:
            return value
        if time.monotonic() >= deadline:
            raise AssertionError(f"timed out after {timeout}s waiting for {message}")
        time.sleep(interval)


def error_code(exc: ClientError) -> str:
    return exc.response["Error"]["Code"]


def error_message(exc: ClientError) -> str:
    return exc.response["Error"].get("Message", "")


def stream_arn(name: str) -> str:
    return f"arn:aws:kinesis:{REGION}:{ACCOUNT}:stream/{name}"


def hash_of(partition_key: str) -> int:
    """Kinesis routing: MD5 of the UTF-8 partition key, read as a big-endian 128-bit integer."""
    return int.from_bytes(hashlib.md5(partition_key.encode("utf-8")).digest(), "big")


def shard_for_hash(shards, hash_key: int) -> str:
    """Returns the id of the open shard whose hash range contains `hash_key`."""
    hits = [
        s["ShardId"]
        for s in shards
        if "EndingSequenceNumber" not in s.get("SequenceNumberRange", {})
        and int(s["HashKeyRange"]["StartingHashKey"])
        <= hash_key
        <= int(s["HashKeyRange"]["EndingHashKey"])
    ]
    assert len(hits) == 1, f"hash key {hash_key} is owned by {hits}"
    return hits[0]


def list_all_shards(client, name, **kwargs):
    shards = []
    resp = client.list_shards(StreamName=name, **kwargs)
    shards.extend(resp["Shards"])
    while resp.get("NextToken"):
        resp = client.list_shards(NextToken=resp["NextToken"])
        shards.extend(resp["Shards"])
    return shards


def open_shards(client, name):
    return [
        s
        for s in list_all_shards(client, name)
        if "EndingSequenceNumber" not in s["SequenceNumberRange"]
    ]


def create_stream(client, name, shards=1, **kwargs):
    """Creates a stream and waits (bounded) until it is ACTIVE."""
    if "StreamModeDetails" in kwargs and kwargs["StreamModeDetails"].get("StreamMode") == "ON_DEMAND":
        client.create_stream(StreamName=name, **kwargs)
    else:
        client.create_stream(StreamName=name, ShardCount=shards, **kwargs)
    wait_active(client, name)
    return name


def wait_active(client, name, timeout=30.0):
    return wait_for(
        lambda: client.describe_stream_summary(StreamName=name)["StreamDescriptionSummary"][
            "StreamStatus"
        ]
        == "ACTIVE",
        timeout=timeout,
        message=f"stream {name} to become ACTIVE",
    )


def read_shard(client, name, shard_id, iterator_type="TRIM_HORIZON", max_calls=10_000, **kwargs):
    """Reads a shard from the given position up to its current end.

    Stops at the first empty answer that says the reader is caught up (MillisBehindLatest == 0),
    or when the shard is closed and fully read (NextShardIterator absent). Returns the records.
    """
    it = client.get_shard_iterator(
        StreamName=name, ShardId=shard_id, ShardIteratorType=iterator_type, **kwargs
    )["ShardIterator"]
    records = []
    for _ in range(max_calls):
        resp = client.get_records(ShardIterator=it, Limit=10_000)
        records.extend(resp["Records"])
        it = resp.get("NextShardIterator")
        if it is None:
            return records
        if not resp["Records"] and resp.get("MillisBehindLatest", 0) == 0:
            return records
    raise AssertionError(f"shard {shard_id} did not reach its end within {max_calls} calls")


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def make_client(endpoint, **config):
    cfg = {
        # No retries at all: botocore's "max_attempts" counts retries in its legacy mode, so
        # {"max_attempts": 1} would still retry throttled calls once; this means one attempt.
        "retries": {"total_max_attempts": 1},
        "connect_timeout": 10,
        "read_timeout": 60,
    }
    cfg.update(config)
    return boto3.client(
        "kinesis",
        endpoint_url=endpoint,
        region_name=REGION,
        aws_access_key_id="test",
        aws_secret_access_key="test",
        config=Config(**cfg),
    )


def bin_supports(flag: str) -> bool:
    """Whether `riffle server --help` mentions `flag`."""
    try:
        out = subprocess.run(
            [RIFFLE_BIN, "server", "--help"], capture_output=True, text=True, timeout=30
        )
    except (OSError, subprocess.TimeoutExpired):
        return False
    return flag in (out.stdout + out.stderr)


# --------------------------------------------------------------------------------------------
# The server process
# --------------------------------------------------------------------------------------------


class RiffleServer:
    """One `riffle server` process bound to loopback ports, with its own data directory."""

    def __init__(self, workdir: Path, args=()):
        self.workdir = Path(workdir)
        self.data_dir = self.workdir / "data"
        self.data_dir.mkdir(parents=True, exist_ok=True)
        self.args = list(args)
        self.proc: subprocess.Popen | None = None
        self.port = None
        self.grpc_port = None
        self.starts = 0
        self._log = None

    # Addresses ---------------------------------------------------------------------------
    @property
    def endpoint(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    @property
    def grpc(self) -> str:
        return f"127.0.0.1:{self.grpc_port}"

    @property
    def log_path(self) -> Path:
        return self.workdir / "server.log"

    def client(self, **config):
        return make_client(self.endpoint, **config)

    # Lifecycle ---------------------------------------------------------------------------
    def start(self, timeout=60.0):
        """Starts the process (on the previous ports if it ran before) and waits for /healthz."""
        assert self.proc is None or self.proc.poll() is not None, "server already running"
        if not Path(RIFFLE_BIN).exists():
            pytest.fail(f"riffle binary not found at {RIFFLE_BIN} (set RIFFLE_BIN or build it)")
        last_error = None
        for attempt in range(3):
            if self.port is None or attempt > 0:
                self.port, self.grpc_port = free_port(), free_port()
            try:
                self._spawn_and_wait(timeout)
                self.starts += 1
                return self
            except _EarlyExit as exc:  # most likely a port taken in the meantime
                last_error = exc
        raise AssertionError(f"riffle did not start: {last_error}\n{self.log_tail()}")

    def _spawn_and_wait(self, timeout):
        cmd = [
            RIFFLE_BIN,
            "server",
            "--listen",
            f"127.0.0.1:{self.port}",
            "--grpc-listen",
            f"127.0.0.1:{self.grpc_port}",
            "--data-dir",
            str(self.data_dir),
            *self.args,
        ]
        self._log = open(self.log_path, "ab")
        self._log.write(f"\n=== start: {' '.join(cmd)}\n".encode())
        self._log.flush()
        self.proc = subprocess.Popen(
            cmd,
            stdout=self._log,
            stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL,
            # Only the command line configures the server: no RIFFLE_* settings leak in.
            env={
                **{k: v for k, v in os.environ.items() if not k.startswith("RIFFLE_")},
                "RUST_BACKTRACE": "1",
            },
        )
        deadline = time.monotonic() + timeout
        while True:
            code = self.proc.poll()
            if code is not None:
                raise _EarlyExit(f"exited with {code}")
            if self.healthy():
                return
            if time.monotonic() >= deadline:
                self.kill9()
                raise AssertionError(f"/healthz not ready after {timeout}s\n{self.log_tail()}")
            time.sleep(0.05)

    def healthy(self) -> bool:
        try:
            with urllib.request.urlopen(self.endpoint + "/healthz", timeout=2) as resp:
                return resp.status == 200
        except (urllib.error.URLError, OSError):
            return False

    def running(self) -> bool:
        return self.proc is not None and self.proc.poll() is None

    def stop(self, timeout=30.0):
        """SIGTERM and wait for a clean exit; returns the exit code."""
        if not self.running():
            return self.proc.returncode if self.proc else None
        self.proc.send_signal(signal.SIGTERM)
        try:
            return self.proc.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait(timeout=timeout)
            raise AssertionError(f"riffle ignored SIGTERM for {timeout}s\n{self.log_tail()}")
        finally:
            self._close_log()

    def kill9(self):
        """SIGKILL: no chance to flush or clean up."""
        if self.running():
            self.proc.send_signal(signal.SIGKILL)
            self.proc.wait(timeout=30)
        self._close_log()

    def restart(self, timeout=60.0):
        self.stop()
        return self.start(timeout)

    def _close_log(self):
        if self._log is not None:
            self._log.close()
            self._log = None

    def log_tail(self, lines=60) -> str:
        try:
            text = self.log_path.read_text(errors="replace").splitlines()
        except OSError:
            return "(no server log)"
        return "--- server log (tail) ---\n" + "\n".join(text[-lines:])

    def metrics_text(self) -> str:
        with urllib.request.urlopen(self.endpoint + "/metrics", timeout=10) as resp:
            assert resp.status == 200
            return resp.read().decode()


class _EarlyExit(Exception):
    pass


def _launch(tmp_path_factory, args, name):
    srv = RiffleServer(tmp_path_factory.mktemp(name), args)
    srv.start()
    return srv


@pytest.fixture(scope="module")
def server(tmp_path_factory):
    """A server with throttling off, shared by the tests of one module."""
    srv = _launch(tmp_path_factory, ["--throttle", "off"], "riffle")
    yield srv
    if srv.running():
        srv.stop()


@pytest.fixture(scope="module")
def throttled_server(tmp_path_factory):
    """A server with the default (Kinesis) throughput limits, shared by one module."""
    srv = _launch(tmp_path_factory, [], "riffle-throttled")
    yield srv
    if srv.running():
        srv.stop()


@pytest.fixture
def make_server(tmp_path_factory):
    """Factory for servers with custom arguments; each is torn down after the test."""
    started = []

    def factory(*args):
        srv = _launch(tmp_path_factory, list(args), "riffle-custom")
        started.append(srv)
        return srv

    yield factory
    for srv in started:
        if srv.running():
            srv.kill9()


@pytest.fixture
def kinesis(server):
    return server.client()


@pytest.fixture
def raw_kinesis(server):
    """A client that does not validate parameters locally, so the server sees bad input."""
    return server.client(parameter_validation=False)


@pytest.fixture
def throttled_kinesis(throttled_server):
    return throttled_server.client()


@pytest.fixture
def stream_name(request):
    """A unique, valid stream name for one test."""
    base = "".join(ch if ch.isalnum() else "-" for ch in request.node.name)[:60].strip("-")
    return f"{base}-{uuid.uuid4().hex[:8]}"


@pytest.fixture(autouse=True)
def _server_log_on_failure(request):
    """Prints the server log tail when a test that used a server fails."""
    yield
    rep = getattr(request.node, "rep_call", None)
    if rep is not None and rep.failed:
        for fixture_name in ("server", "throttled_server"):
            if fixture_name in request.fixturenames:
                srv = request.getfixturevalue(fixture_name)
                sys.stderr.write(srv.log_tail(30) + "\n")


@pytest.hookimpl(wrapper=True, tryfirst=True)
def pytest_runtest_makereport(item, call):
    rep = yield
    setattr(item, "rep_" + rep.when, rep)
    return rep


# --------------------------------------------------------------------------------------------
# The AWS CLI
# --------------------------------------------------------------------------------------------


def _find_aws():
    for candidate in (Path(sys.executable).parent / "aws", REPO / ".venv" / "bin" / "aws"):
        if candidate.exists():
            return str(candidate)
    return shutil.which("aws")


def _aws_executable() -> str:
    found = _find_aws()
    if not found:
        pytest.fail("the AWS CLI is not installed (pip install -r dataplane/tests/requirements.txt)")
    return found


def aws_cli_major_version() -> int:
    """1 for the PyPI `awscli`, 2 for AWS CLI v2 (from `aws --version`)."""
    exe = _find_aws()
    if exe is None:
        return 1
    try:
        out = subprocess.run([exe, "--version"], capture_output=True, text=True, timeout=60)
    except (OSError, subprocess.TimeoutExpired):
        return 1
    text = out.stdout + out.stderr
    return 2 if text.startswith("aws-cli/2") else 1


@pytest.fixture
def aws_cli(server, tmp_path):
    """Runs `aws --endpoint-url <server> kinesis ...` and returns the parsed JSON output."""
    exe = _aws_executable()
    env = {
        **os.environ,
        "AWS_ACCESS_KEY_ID": "test",
        "AWS_SECRET_ACCESS_KEY": "test",
        "AWS_DEFAULT_REGION": REGION,
        "AWS_MAX_ATTEMPTS": "1",
        "AWS_RETRY_MODE": "standard",
        "AWS_PAGER": "",
        "AWS_CONFIG_FILE": str(tmp_path / "aws-config"),
        "AWS_SHARED_CREDENTIALS_FILE": str(tmp_path / "aws-credentials"),
    }

    def run(*args, check=True):
        cmd = [exe, "--endpoint-url", server.endpoint, "--output", "json", "kinesis", *args]
        proc = subprocess.run(cmd, capture_output=True, text=True, env=env, timeout=60)
        if check and proc.returncode != 0:
            raise AssertionError(
                f"{' '.join(cmd)} exited {proc.returncode}\nstdout: {proc.stdout}\n"
                f"stderr: {proc.stderr}"
            )
        if not check:
            return proc
        return json.loads(proc.stdout) if proc.stdout.strip() else None

    return run
