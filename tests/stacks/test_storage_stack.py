"""StorageStack: bucket, metadata table and the optional S3 Express WAL bucket."""

from __future__ import annotations

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
