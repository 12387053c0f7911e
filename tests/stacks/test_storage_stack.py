"""StorageStack: bucket, metadata table and the optional S3 Express WAL bucket."""

from __future__ import annotations

import json
from typing import Any

import pytest
from aws_cdk.assertions import Match

from tests.stacks.conftest import Synth, only, resources


def test_bucket_is_encrypted_private_tls_only_and_aborts_stale_uploads(synth: Synth) -> None:
    t = synth.template("Kafka-acme-Storage")
    t.has_resource_properties(
        "AWS::S3::Bucket",
        {
            "BucketEncryption": {
                "ServerSideEncryptionConfiguration": [
                    {"ServerSideEncryptionByDefault": {"SSEAlgorithm": "AES256"}}
                ]
            },
            "PublicAccessBlockConfiguration": {
                "BlockPublicAcls": True,
                "BlockPublicPolicy": True,
                "IgnorePublicAcls": True,
                "RestrictPublicBuckets": True,
            },
            "LifecycleConfiguration": {
                "Rules": [
                    {
                        "AbortIncompleteMultipartUpload": {"DaysAfterInitiation": 1},
                        "Status": "Enabled",
                    }
                ]
            },
            "MetricsConfigurations": [{"Id": "EntireBucket"}],
        },
    )
    t.has_resource_properties(
        "AWS::S3::BucketPolicy",
        {
            "PolicyDocument": {
                "Statement": Match.array_with(
                    [
                        Match.object_like(
                            {
                                "Effect": "Deny",
                                "Action": "s3:*",
                                "Condition": {"Bool": {"aws:SecureTransport": "false"}},
                            }
                        )
                    ]
                )
            }
        },
    )
    # Data survives `cdk destroy` by default.
    t.has_resource("AWS::S3::Bucket", {"DeletionPolicy": "Retain"})


def test_bucket_name_is_the_tenants_own(synth: Synth) -> None:
    bucket = only(synth.raw("Kafka-acme-Storage"), "AWS::S3::Bucket")
    parts = bucket["BucketName"]["Fn::Join"][1]
    assert parts[0] == "kafka-acme-data-"
    assert {"Ref": "AWS::AccountId"} in parts and {"Ref": "AWS::Region"} in parts


def test_table_is_on_demand_with_pitr_and_deletion_protection(synth: Synth) -> None:
    t = synth.template("Kafka-acme-Storage")
    t.has_resource_properties(
        "AWS::DynamoDB::GlobalTable",
        {
            "TableName": "kafka-acme-metadata",
            "BillingMode": "PAY_PER_REQUEST",
            "KeySchema": [
                {"AttributeName": "pk", "KeyType": "HASH"},
                {"AttributeName": "sk", "KeyType": "RANGE"},
            ],
            "Replicas": [
                Match.object_like(
                    {
                        "DeletionProtectionEnabled": True,
                        "PointInTimeRecoverySpecification": {"PointInTimeRecoveryEnabled": True},
                    }
                )
            ],
        },
    )


def test_table_capacity_is_provisioned_and_auto_scaled_when_the_tenant_asks(
    synth: Synth,
) -> None:
    """metadata_billing = "provisioned" (globex): write and read capacity auto-scaled to keep
    70% of it in use, between the tenant's bounds; on demand (acme) has neither."""
    acme = only(synth.raw("Kafka-acme-Storage"), "AWS::DynamoDB::GlobalTable")
    assert "WriteProvisionedThroughputSettings" not in acme
    table = only(synth.raw("Kafka-globex-Storage"), "AWS::DynamoDB::GlobalTable")
    assert table["BillingMode"] == "PROVISIONED"
    writes = table["WriteProvisionedThroughputSettings"]["WriteCapacityAutoScalingSettings"]
    assert (writes["MinCapacity"], writes["MaxCapacity"]) == (25, 8000)
    assert writes["TargetTrackingScalingPolicyConfiguration"]["TargetValue"] == 70
    (replica,) = table["Replicas"]
    reads = replica["ReadProvisionedThroughputSettings"]["ReadCapacityAutoScalingSettings"]
    assert (reads["MinCapacity"], reads["MaxCapacity"]) == (25, 10_000)
    assert reads["TargetTrackingScalingPolicyConfiguration"]["TargetValue"] == 70


def test_capacity_bounds_are_checked() -> None:
    from stacks.tenant import TenantSettings

    with pytest.raises(ValueError, match="metadata_max_write_capacity 10 < "):
        TenantSettings(name="acme", metadata_min_write_capacity=50,
                       metadata_max_write_capacity=10)  # fmt: skip


def test_express_wal_bucket_only_when_asked(synth: Synth) -> None:
    assert not resources(synth.raw("Kafka-acme-Storage"), "AWS::S3Express::DirectoryBucket")
    props = only(synth.raw("Kafka-globex-Storage"), "AWS::S3Express::DirectoryBucket")
    assert props["DataRedundancy"] == "SingleAvailabilityZone"
    assert props["LocationName"] == "use1-az4"
    name = "".join(
        p if isinstance(p, str) else "<acct>" for p in props["BucketName"]["Fn::Join"][1]
    )
    assert name == "kafka-globex-wal-<acct>--use1-az4--x-s3"


def test_outputs_name_the_bucket_and_table(synth: Synth) -> None:
    outputs = synth.raw("Kafka-acme-Storage")["Outputs"]
    assert {"BucketName", "TableName"} <= set(outputs)


def test_redeploy_after_destroy_adopts_the_retained_bucket_and_table(tmp_path: Any) -> None:
    """`cdk destroy` retains the bucket and the table (fixed names, so policies can name
    them): a second deploy that created them again would fail on "already exists". With
    adopt_data the tenant's stacks use them by name instead: no bucket or table resource,
    the same names in the brokers' environment and in every policy."""
    from tests.stacks.conftest import synthesize

    s = synthesize(tmp_path, "[tenants.acme]\nadopt_data = true\n")
    storage = s.raw("Kafka-acme-Storage")
    # only a placeholder (CloudFormation refuses a template without resources)
    kinds = [r["Type"] for r in storage["Resources"].values() if r["Type"] != "AWS::CDK::Metadata"]
    assert kinds == ["AWS::CloudFormation::WaitConditionHandle"]
    assert not resources(storage, "AWS::S3::Bucket")
    assert not resources(storage, "AWS::DynamoDB::GlobalTable")
    assert not resources(storage, "AWS::DynamoDB::Table")
    brokers = json.dumps(s.raw("Kafka-acme-Brokers"))
    control = json.dumps(s.raw("Kafka-acme-Control"))
    for doc in (brokers, control):
        assert "kafka-acme-metadata" in doc  # the retained table, by name
        assert ":s3:::kafka-acme-data-" in doc  # the retained bucket, by name
    env = {e["Name"]: e["Value"] for e in only(s.raw("Kafka-acme-Brokers"),
           "AWS::ECS::TaskDefinition")["ContainerDefinitions"][0]["Environment"]}  # fmt: skip
    assert env["BROKER_METADATA"] == "dynamodb://kafka-acme-metadata"
    # The admin secret has no fixed name either (a deleted one lingers for 7-30 days).
    (secret,) = resources(s.raw("Kafka-acme-Brokers"), "AWS::SecretsManager::Secret").values()
    assert "Name" not in secret["Properties"]
