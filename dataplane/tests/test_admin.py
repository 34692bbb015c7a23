"""Stream administration: retention, tags, capacity mode, limits, monitoring, encryption."""

import os
import uuid

import pytest
from botocore.exceptions import ClientError

from conftest import (
    create_stream,
    error_code,
    read_shard,
    stream_arn,
    wait_active,
)

ALL_METRICS = {
    "IncomingBytes",
    "IncomingRecords",
    "OutgoingBytes",
    "OutgoingRecords",
    "WriteProvisionedThroughputExceeded",
    "ReadProvisionedThroughputExceeded",
    "IteratorAgeMilliseconds",
}


def _summary(client, name):
    return client.describe_stream_summary(StreamName=name)["StreamDescriptionSummary"]


# --------------------------------------------------------------------------------------------
# Retention
# --------------------------------------------------------------------------------------------


def test_retention_increase_and_decrease(kinesis, stream_name):
    create_stream(kinesis, stream_name, 1)
    assert _summary(kinesis, stream_name)["RetentionPeriodHours"] == 24
    kinesis.increase_stream_retention_period(StreamName=stream_name, RetentionPeriodHours=48)
    wait_active(kinesis, stream_name)
    assert _summary(kinesis, stream_name)["RetentionPeriodHours"] == 48
    kinesis.increase_stream_retention_period(StreamName=stream_name, RetentionPeriodHours=8760)
    wait_active(kinesis, stream_name)
    assert _summary(kinesis, stream_name)["RetentionPeriodHours"] == 8760
    assert (
        kinesis.describe_stream(StreamName=stream_name)["StreamDescription"]["RetentionPeriodHours"]
        == 8760
    )
    kinesis.decrease_stream_retention_period(StreamName=stream_name, RetentionPeriodHours=100)
    wait_active(kinesis, stream_name)
    assert _summary(kinesis, stream_name)["RetentionPeriodHours"] == 100
    kinesis.decrease_stream_retention_period(
        StreamARN=stream_arn(stream_name), RetentionPeriodHours=24
    )
    wait_active(kinesis, stream_name)
    assert _summary(kinesis, stream_name)["RetentionPeriodHours"] == 24


@pytest.mark.parametrize(
    "op, hours",
    [
        ("increase", 8761),
        ("increase", 30),  # below the current 48
        ("decrease", 23),
        ("decrease", 72),  # above the current 48
    ],
    ids=["increase-above-max", "increase-below-current", "decrease-below-min", "decrease-above-current"],
)
def test_retention_bounds_are_invalid_argument(raw_kinesis, stream_name, op, hours):
    create_stream(raw_kinesis, stream_name, 1)
    raw_kinesis.increase_stream_retention_period(StreamName=stream_name, RetentionPeriodHours=48)
    wait_active(raw_kinesis, stream_name)
    call = getattr(raw_kinesis, f"{op}_stream_retention_period")
    with pytest.raises(ClientError) as e:
        call(StreamName=stream_name, RetentionPeriodHours=hours)
    assert error_code(e.value) == "InvalidArgumentException"
    assert _summary(raw_kinesis, stream_name)["RetentionPeriodHours"] == 48


def test_retention_on_missing_stream_is_not_found(kinesis, stream_name):
    with pytest.raises(ClientError) as e:
        kinesis.increase_stream_retention_period(StreamName=stream_name, RetentionPeriodHours=48)
    assert error_code(e.value) == "ResourceNotFoundException"


# --------------------------------------------------------------------------------------------
# Tags
# --------------------------------------------------------------------------------------------


def _tags(resp):
    return {t["Key"]: t.get("Value", "") for t in resp["Tags"]}


def test_stream_tags(kinesis, stream_name):
    create_stream(kinesis, stream_name, 1, Tags={"team": "data"})
    assert _tags(kinesis.list_tags_for_stream(StreamName=stream_name)) == {"team": "data"}

    kinesis.add_tags_to_stream(StreamName=stream_name, Tags={"a": "1", "b": "2", "c": ""})
    resp = kinesis.list_tags_for_stream(StreamName=stream_name)
    assert _tags(resp) == {"team": "data", "a": "1", "b": "2", "c": ""}
    assert resp["HasMoreTags"] is False

    kinesis.add_tags_to_stream(StreamName=stream_name, Tags={"a": "overwritten"})
    assert _tags(kinesis.list_tags_for_stream(StreamName=stream_name))["a"] == "overwritten"

    kinesis.remove_tags_from_stream(StreamName=stream_name, TagKeys=["a", "not-there"])
    assert _tags(kinesis.list_tags_for_stream(StreamName=stream_name)) == {
        "team": "data",
        "b": "2",
        "c": "",
    }


def test_list_tags_for_stream_paging(kinesis, stream_name):
    create_stream(kinesis, stream_name, 1)
    kinesis.add_tags_to_stream(StreamName=stream_name, Tags={"k1": "v1", "k2": "v2", "k3": "v3"})
    first = kinesis.list_tags_for_stream(StreamName=stream_name, Limit=2)
    assert [t["Key"] for t in first["Tags"]] == ["k1", "k2"]
    assert first["HasMoreTags"] is True
    rest = kinesis.list_tags_for_stream(StreamName=stream_name, ExclusiveStartTagKey="k2")
    assert [t["Key"] for t in rest["Tags"]] == ["k3"]
    assert rest["HasMoreTags"] is False


def test_too_many_tags_is_rejected(kinesis, stream_name):
    create_stream(kinesis, stream_name, 1)
    kinesis.add_tags_to_stream(StreamName=stream_name, Tags={f"k{i}": "v" for i in range(50)})
    with pytest.raises(ClientError) as e:
        kinesis.add_tags_to_stream(StreamName=stream_name, Tags={"one-too-many": "v"})
    assert error_code(e.value) in {"InvalidArgumentException", "LimitExceededException"}
    assert len(_tags(kinesis.list_tags_for_stream(StreamName=stream_name, Limit=50))) == 50


def test_resource_tags(kinesis, stream_name):
    create_stream(kinesis, stream_name, 1)
    arn = stream_arn(stream_name)
    kinesis.tag_resource(ResourceARN=arn, Tags={"env": "test", "owner": "riffle"})
    assert _tags(kinesis.list_tags_for_resource(ResourceARN=arn)) == {
        "env": "test",
        "owner": "riffle",
    }
    # Both APIs see the same tags.
    assert _tags(kinesis.list_tags_for_stream(StreamName=stream_name)) == {
        "env": "test",
        "owner": "riffle",
    }
    kinesis.untag_resource(ResourceARN=arn, TagKeys=["env"])
    assert _tags(kinesis.list_tags_for_resource(ResourceARN=arn)) == {"owner": "riffle"}


def test_resource_tags_on_missing_stream(kinesis, stream_name):
    with pytest.raises(ClientError) as e:
        kinesis.list_tags_for_resource(ResourceARN=stream_arn(stream_name))
    assert error_code(e.value) == "ResourceNotFoundException"
    with pytest.raises(ClientError) as e:
        kinesis.tag_resource(ResourceARN=stream_arn(stream_name), Tags={"a": "b"})
    assert error_code(e.value) == "ResourceNotFoundException"


# --------------------------------------------------------------------------------------------
# Capacity mode
# --------------------------------------------------------------------------------------------


def test_create_on_demand_stream(kinesis, stream_name):
    kinesis.create_stream(StreamName=stream_name, StreamModeDetails={"StreamMode": "ON_DEMAND"})
    wait_active(kinesis, stream_name)
    summary = _summary(kinesis, stream_name)
    assert summary["StreamModeDetails"] == {"StreamMode": "ON_DEMAND"}
    assert summary["OpenShardCount"] == 4
    listed = {
        s["StreamName"]: s for s in kinesis.list_streams()["StreamSummaries"]
    }[stream_name]
    assert listed["StreamModeDetails"] == {"StreamMode": "ON_DEMAND"}
    put = kinesis.put_record(StreamName=stream_name, Data=b"on-demand", PartitionKey="k")
    records = read_shard(kinesis, stream_name, put["ShardId"])
    assert [r["Data"] for r in records] == [b"on-demand"]


def test_update_stream_mode(kinesis, stream_name):
    create_stream(kinesis, stream_name, 2)
    arn = stream_arn(stream_name)
    kinesis.update_stream_mode(StreamARN=arn, StreamModeDetails={"StreamMode": "ON_DEMAND"})
    wait_active(kinesis, stream_name)
    assert _summary(kinesis, stream_name)["StreamModeDetails"] == {"StreamMode": "ON_DEMAND"}
    assert (
        kinesis.describe_stream(StreamName=stream_name)["StreamDescription"]["StreamModeDetails"]
        == {"StreamMode": "ON_DEMAND"}
    )
    kinesis.update_stream_mode(StreamARN=arn, StreamModeDetails={"StreamMode": "PROVISIONED"})
    wait_active(kinesis, stream_name)
    assert _summary(kinesis, stream_name)["StreamModeDetails"] == {"StreamMode": "PROVISIONED"}


def test_resharding_an_on_demand_stream_is_refused(kinesis, stream_name):
    kinesis.create_stream(StreamName=stream_name, StreamModeDetails={"StreamMode": "ON_DEMAND"})
    wait_active(kinesis, stream_name)
    with pytest.raises(ClientError) as e:
        kinesis.update_shard_count(
            StreamName=stream_name, TargetShardCount=8, ScalingType="UNIFORM_SCALING"
        )
    assert error_code(e.value) in {
        "ValidationException",
        "InvalidArgumentException",
        "ResourceInUseException",
    }
    with pytest.raises(ClientError) as e:
        kinesis.split_shard(
            StreamName=stream_name, ShardToSplit="shardId-000000000000", NewStartingHashKey="10"
        )
    assert error_code(e.value) in {
        "ValidationException",
        "InvalidArgumentException",
        "ResourceInUseException",
    }
    assert _summary(kinesis, stream_name)["OpenShardCount"] == 4


# --------------------------------------------------------------------------------------------
# DescribeLimits
# --------------------------------------------------------------------------------------------


def test_describe_limits(kinesis):
    before = kinesis.describe_limits()
    for key in ("ShardLimit", "OpenShardCount", "OnDemandStreamCount", "OnDemandStreamCountLimit"):
        assert isinstance(before[key], int), key
    assert before["ShardLimit"] > 0
    assert before["OnDemandStreamCountLimit"] > 0

    name = f"limits-{uuid.uuid4().hex[:8]}"
    create_stream(kinesis, name, 3)
    after = kinesis.describe_limits()
    assert after["OpenShardCount"] == before["OpenShardCount"] + 3

    od = f"limits-od-{uuid.uuid4().hex[:8]}"
    kinesis.create_stream(StreamName=od, StreamModeDetails={"StreamMode": "ON_DEMAND"})
    wait_active(kinesis, od)
    assert kinesis.describe_limits()["OnDemandStreamCount"] == before["OnDemandStreamCount"] + 1


# --------------------------------------------------------------------------------------------
# Enhanced monitoring
# --------------------------------------------------------------------------------------------


def test_enhanced_monitoring(kinesis, stream_name):
    create_stream(kinesis, stream_name, 1)
    resp = kinesis.enable_enhanced_monitoring(
        StreamName=stream_name, ShardLevelMetrics=["IncomingBytes", "OutgoingRecords"]
    )
    assert resp["StreamName"] == stream_name
    assert set(resp["CurrentShardLevelMetrics"]) == set()
    assert set(resp["DesiredShardLevelMetrics"]) == {"IncomingBytes", "OutgoingRecords"}

    resp = kinesis.enable_enhanced_monitoring(
        StreamName=stream_name, ShardLevelMetrics=["IteratorAgeMilliseconds"]
    )
    assert set(resp["CurrentShardLevelMetrics"]) == {"IncomingBytes", "OutgoingRecords"}
    assert set(resp["DesiredShardLevelMetrics"]) == {
        "IncomingBytes",
        "OutgoingRecords",
        "IteratorAgeMilliseconds",
    }

    resp = kinesis.disable_enhanced_monitoring(
        StreamName=stream_name, ShardLevelMetrics=["IncomingBytes"]
    )
    assert set(resp["CurrentShardLevelMetrics"]) == {
        "IncomingBytes",
        "OutgoingRecords",
        "IteratorAgeMilliseconds",
    }
    assert set(resp["DesiredShardLevelMetrics"]) == {"OutgoingRecords", "IteratorAgeMilliseconds"}
    wait_active(kinesis, stream_name)

    desc = kinesis.describe_stream(StreamName=stream_name)["StreamDescription"]
    assert set(desc["EnhancedMonitoring"][0]["ShardLevelMetrics"]) == {
        "OutgoingRecords",
        "IteratorAgeMilliseconds",
    }
    summary = _summary(kinesis, stream_name)
    assert set(summary["EnhancedMonitoring"][0]["ShardLevelMetrics"]) == {
        "OutgoingRecords",
        "IteratorAgeMilliseconds",
    }


def test_enhanced_monitoring_all(kinesis, stream_name):
    create_stream(kinesis, stream_name, 1)
    resp = kinesis.enable_enhanced_monitoring(StreamName=stream_name, ShardLevelMetrics=["ALL"])
    assert set(resp["DesiredShardLevelMetrics"]) in ({"ALL"}, ALL_METRICS)
    resp = kinesis.disable_enhanced_monitoring(StreamName=stream_name, ShardLevelMetrics=["ALL"])
    assert set(resp["DesiredShardLevelMetrics"]) == set()
    wait_active(kinesis, stream_name)
    assert _summary(kinesis, stream_name)["EnhancedMonitoring"] == [{"ShardLevelMetrics": []}]


def test_enhanced_monitoring_bad_metric(raw_kinesis, stream_name):
    create_stream(raw_kinesis, stream_name, 1)
    with pytest.raises(ClientError) as e:
        raw_kinesis.enable_enhanced_monitoring(
            StreamName=stream_name, ShardLevelMetrics=["NotAMetric"]
        )
    assert error_code(e.value) in {"ValidationException", "InvalidArgumentException"}


# --------------------------------------------------------------------------------------------
# Encryption
# --------------------------------------------------------------------------------------------


def test_stream_encryption(kinesis, stream_name):
    create_stream(kinesis, stream_name, 1)
    shard = "shardId-000000000000"
    kinesis.put_record(StreamName=stream_name, Data=b"plain-before", PartitionKey="k")

    kinesis.start_stream_encryption(
        StreamName=stream_name, EncryptionType="KMS", KeyId="alias/aws/kinesis"
    )
    wait_active(kinesis, stream_name)
    desc = kinesis.describe_stream(StreamName=stream_name)["StreamDescription"]
    assert desc["EncryptionType"] == "KMS"
    assert desc["KeyId"] == "alias/aws/kinesis"
    summary = _summary(kinesis, stream_name)
    assert summary["EncryptionType"] == "KMS" and summary["KeyId"] == "alias/aws/kinesis"

    put = kinesis.put_record(StreamName=stream_name, Data=b"secret-during", PartitionKey="k")
    assert put["EncryptionType"] == "KMS"
    batch = kinesis.put_records(
        StreamName=stream_name, Records=[{"Data": b"secret-batch", "PartitionKey": "k"}]
    )
    assert batch["EncryptionType"] == "KMS"

    kinesis.stop_stream_encryption(
        StreamName=stream_name, EncryptionType="KMS", KeyId="alias/aws/kinesis"
    )
    wait_active(kinesis, stream_name)
    desc = kinesis.describe_stream(StreamName=stream_name)["StreamDescription"]
    assert desc["EncryptionType"] == "NONE"
    put = kinesis.put_record(StreamName=stream_name, Data=b"plain-after", PartitionKey="k")
    assert put.get("EncryptionType", "NONE") == "NONE"

    records = read_shard(kinesis, stream_name, shard)
    assert [(r["Data"], r.get("EncryptionType", "NONE")) for r in records] == [
        (b"plain-before", "NONE"),
        (b"secret-during", "KMS"),
        (b"secret-batch", "KMS"),
        (b"plain-after", "NONE"),
    ]


def test_encrypted_records_are_not_stored_in_plaintext(server, kinesis, stream_name):
    create_stream(kinesis, stream_name, 1)
    kinesis.start_stream_encryption(
        StreamName=stream_name, EncryptionType="KMS", KeyId="alias/aws/kinesis"
    )
    wait_active(kinesis, stream_name)
    marker = b"riffle-plaintext-marker-" + uuid.uuid4().hex.encode()
    for _ in range(20):
        kinesis.put_record(StreamName=stream_name, Data=marker, PartitionKey="k")
    records = read_shard(kinesis, stream_name, "shardId-000000000000")
    assert [r["Data"] for r in records] == [marker] * 20
    for root, _, files in os.walk(server.data_dir):
        for f in files:
            with open(os.path.join(root, f), "rb") as fh:
                assert marker not in fh.read(), f"plaintext of an encrypted record in {f}"
