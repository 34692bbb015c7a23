"""Raw HTTP: malformed and hostile requests get AWS-shaped errors and never hurt the server."""

import base64
import http.client
import json
import os
import time
import uuid

import cbor2
import pytest
from botocore.auth import SigV4Auth
from botocore.awsrequest import AWSRequest
from botocore.credentials import Credentials

from conftest import create_stream, read_shard

JSON = "application/x-amz-json-1.1"
CBOR = "application/x-amz-cbor-1.1"
TARGET = "Kinesis_20131202."


def raw_call(server, operation, body, content_type=JSON, sign=True, target=None, timeout=60):
    """POSTs `body` to `/` and returns (status, headers dict (lowercase), decoded body)."""
    if isinstance(body, (dict, list)):
        body = json.dumps(body).encode() if content_type == JSON else cbor2.dumps(body)
    elif isinstance(body, str):
        body = body.encode()
    headers = {"Content-Type": content_type}
    if target is not False:
        headers["X-Amz-Target"] = target or TARGET + operation
    if sign:
        req = AWSRequest(method="POST", url=server.endpoint + "/", data=body, headers=headers)
        SigV4Auth(Credentials("test", "test"), "kinesis", "us-east-1").add_auth(req)
        headers = dict(req.headers.items())
    conn = http.client.HTTPConnection("127.0.0.1", server.port, timeout=timeout)
    try:
        conn.request("POST", "/", body=body, headers=headers)
        resp = conn.getresponse()
        payload = resp.read()
        resp_headers = {k.lower(): v for k, v in resp.getheaders()}
        return resp.status, resp_headers, _decode(resp_headers, payload)
    finally:
        conn.close()


def _decode(headers, payload):
    ctype = headers.get("content-type", "")
    if not payload:
        return {}
    if "cbor" in ctype:
        # Kinesis CBOR timestamps are tag 1 holding epoch *milliseconds* (as the AWS SDKs
        # write and read them), which a standard decoder would misread as seconds.
        return cbor2.loads(payload, semantic_decoders={1: lambda v, _immutable: cbor2.CBORTag(1, v)})
    return json.loads(payload)


def _type(body):
    return body.get("__type", "").split("#")[-1]


@pytest.fixture(scope="module")
def canary(server):
    """A stream with records stored before any bad input; checked intact at the end."""
    client = server.client()
    name = f"canary-{uuid.uuid4().hex[:8]}"
    create_stream(client, name, 2)
    payloads = [os.urandom(64) for _ in range(20)]
    acked = [
        client.put_record(StreamName=name, Data=p, PartitionKey=f"c{i}")
        for i, p in enumerate(payloads)
    ]
    return name, {a["SequenceNumber"]: (a["ShardId"], p) for a, p in zip(acked, payloads)}


@pytest.fixture(autouse=True)
def _server_survives(server, canary):
    yield
    assert server.running(), "the server process died\n" + server.log_tail()
    assert server.healthy()


def test_malformed_json_is_serialization_exception(server):
    status, headers, body = raw_call(server, "DescribeStream", '{"StreamName": ')
    assert status == 400
    assert _type(body) == "SerializationException"
    assert headers.get("x-amzn-requestid")
    assert headers["content-type"].startswith(JSON)


def test_json_that_is_not_an_object_is_rejected(server):
    status, _, body = raw_call(server, "ListStreams", "[1, 2, 3]")
    assert status == 400
    assert _type(body) in {"SerializationException", "ValidationException"}


def test_wrong_member_type_is_serialization_exception(server):
    status, _, body = raw_call(
        server, "CreateStream", {"StreamName": f"s-{uuid.uuid4().hex[:6]}", "ShardCount": "two"}
    )
    assert status == 400
    assert _type(body) == "SerializationException"


def test_bad_base64_data_is_serialization_exception(server, canary):
    name, _ = canary
    status, _, body = raw_call(
        server, "PutRecord", {"StreamName": name, "Data": "!!!not*base64$$", "PartitionKey": "k"}
    )
    assert status == 400
    assert _type(body) == "SerializationException"
    status, _, body = raw_call(
        server,
        "PutRecords",
        {"StreamName": name, "Records": [{"Data": "%%%", "PartitionKey": "k"}]},
    )
    assert status == 400
    assert _type(body) == "SerializationException"


def test_unknown_target_is_unknown_operation(server):
    status, _, body = raw_call(server, "DoesNotExist", {})
    assert status == 400
    assert _type(body) == "UnknownOperationException"
    status, _, body = raw_call(server, "", {}, target="SomethingElse_2020.ListStreams")
    assert status == 400
    assert _type(body) == "UnknownOperationException"


def test_missing_target_is_rejected(server):
    status, _, body = raw_call(server, "", {}, target=False)
    assert status == 400
    assert _type(body) == "UnknownOperationException"


def test_missing_authorization_is_403(server):
    name = f"unauth-{uuid.uuid4().hex[:8]}"
    status, _, body = raw_call(
        server, "CreateStream", {"StreamName": name, "ShardCount": 1}, sign=False
    )
    assert status == 403
    assert _type(body) == "MissingAuthenticationTokenException"
    assert body.get("message") == "Missing Authentication Token"
    # Nothing happened.
    status, _, body = raw_call(server, "DescribeStreamSummary", {"StreamName": name})
    assert status == 400 and _type(body) == "ResourceNotFoundException"
    assert body["message"] == f"Stream {name} under account 000000000000 not found."


def test_json_round_trip_works_raw(server, canary):
    name, _ = canary
    status, headers, body = raw_call(
        server,
        "PutRecord",
        {"StreamName": name, "Data": base64.b64encode(b"raw-json").decode(), "PartitionKey": "r"},
    )
    assert status == 200, body
    assert headers["content-type"].startswith(JSON)
    assert int(body["SequenceNumber"]) > 0


def test_malformed_cbor_is_serialization_exception(server):
    status, headers, body = raw_call(
        server, "DescribeStream", b"\xbf\x6aStreamName\xff\xff\x1c", content_type=CBOR
    )
    assert status == 400
    assert _type(body) == "SerializationException"
    status, _, body = raw_call(server, "DescribeStream", b"\xa1", content_type=CBOR)
    assert status == 400
    assert _type(body) == "SerializationException"


def test_cbor_round_trip(server):
    name = f"cbor-{uuid.uuid4().hex[:8]}"
    status, headers, body = raw_call(
        server, "CreateStream", {"StreamName": name, "ShardCount": 1}, content_type=CBOR
    )
    assert status == 200, body
    payload = bytes(range(256)) + b"cbor"
    status, headers, body = raw_call(
        server,
        "PutRecord",
        {"StreamName": name, "Data": payload, "PartitionKey": "k"},
        content_type=CBOR,
    )
    assert status == 200, body
    assert headers["content-type"].startswith(CBOR)
    assert body["ShardId"] == "shardId-000000000000"
    seq = body["SequenceNumber"]

    status, headers, body = raw_call(
        server,
        "GetShardIterator",
        {"StreamName": name, "ShardId": "shardId-000000000000", "ShardIteratorType": "TRIM_HORIZON"},
        content_type=CBOR,
    )
    assert status == 200, body
    assert headers["content-type"].startswith(CBOR)
    status, headers, body = raw_call(
        server, "GetRecords", {"ShardIterator": body["ShardIterator"]}, content_type=CBOR
    )
    assert status == 200, body
    assert headers["content-type"].startswith(CBOR)
    (record,) = body["Records"]
    assert isinstance(record["Data"], bytes), "CBOR blobs are byte strings, not base64 text"
    assert record["Data"] == payload
    assert record["SequenceNumber"] == seq
    assert record["PartitionKey"] == "k"
    stamp = record["ApproximateArrivalTimestamp"]
    assert isinstance(stamp, cbor2.CBORTag) and stamp.tag == 1, stamp
    assert abs(stamp.value / 1000 - time.time()) < 60, "epoch milliseconds of the arrival"
    assert body["MillisBehindLatest"] >= 0

    # Errors come back in CBOR too.
    status, headers, body = raw_call(
        server, "DescribeStreamSummary", {"StreamName": name + "-nope"}, content_type=CBOR
    )
    assert status == 400
    assert headers["content-type"].startswith(CBOR)
    assert _type(body) == "ResourceNotFoundException"


def test_oversized_body_is_an_error_not_a_crash(server, canary):
    name, _ = canary
    big = base64.b64encode(os.urandom(11 * 1024 * 1024)).decode()
    body = json.dumps({"StreamName": name, "Data": big, "PartitionKey": "k"})
    try:
        status, _, _ = raw_call(server, "PutRecord", body)
    except (ConnectionError, http.client.HTTPException, OSError):
        status = None  # the server may refuse and close the connection early
    assert status is None or 400 <= status < 500
    assert server.running()


def test_truncated_request_does_not_hang_the_server(server):
    conn = http.client.HTTPConnection("127.0.0.1", server.port, timeout=10)
    conn.putrequest("POST", "/")
    conn.putheader("Content-Type", JSON)
    conn.putheader("X-Amz-Target", TARGET + "ListStreams")
    conn.putheader("Authorization", "AWS4-HMAC-SHA256 Credential=test/x/us-east-1/kinesis/aws4_request")
    conn.putheader("Content-Length", "1000")
    conn.endheaders()
    conn.send(b'{"Limit": ')
    conn.close()
    status, _, body = raw_call(server, "ListStreams", {})
    assert status == 200 and "StreamNames" in body


def test_server_still_serves_and_records_are_intact(server, canary):
    """Runs last in this module: every earlier stored record is still there, unchanged."""
    name, acked = canary
    client = server.client()
    assert client.describe_stream_summary(StreamName=name)["StreamDescriptionSummary"][
        "StreamStatus"
    ] == "ACTIVE"
    found = {}
    for shard_id in ("shardId-000000000000", "shardId-000000000001"):
        for r in read_shard(client, name, shard_id):
            found[r["SequenceNumber"]] = (shard_id, r["Data"])
    for seq, expected in acked.items():
        assert found.get(seq) == expected
