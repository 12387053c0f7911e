"""One tenant's storage: the S3 bucket (objects and WAL), the DynamoDB metadata table and,
optionally, an S3 Express One Zone directory bucket for the WAL."""

from __future__ import annotations

from typing import Any

import aws_cdk as cdk
from aws_cdk import aws_dynamodb as dynamodb
from aws_cdk import aws_s3 as s3
from aws_cdk import aws_s3express as s3express
from constructs import Construct

from .nag import acknowledge, arn, finding_resource
from .tenant import TenantSettings

BUCKET_NAME = "kafka-{tenant}-data-{account}-{region}"
OBJECTS_ARN = "arn:{partition}:s3:::" + BUCKET_NAME + "/{prefix}/*"


def data_bucket(scope: Construct, tenant: TenantSettings, removal: cdk.RemovalPolicy) -> s3.IBucket:
    """The tenant's data bucket (objects and object WAL); the same in AWS and in LocalStack.
    With ``adopt_data`` the bucket a destroyed deployment retained, by its (fixed) name."""
    name = arn(BUCKET_NAME, tenant=tenant.name)
    if tenant.adopt_data:
        return s3.Bucket.from_bucket_name(scope, "Data", name)
    bucket = s3.Bucket(
        scope,
        "Data",
        # A fixed name (unique per account and region) so policies can name the tenant's
        # key prefix exactly, in every stack, without cross-stack tokens.
        bucket_name=name,
        encryption=s3.BucketEncryption.S3_MANAGED,
        block_public_access=s3.BlockPublicAccess.BLOCK_ALL,
        enforce_ssl=True,
        versioned=False,  # objects are immutable and never overwritten (conditional PUTs)
        object_ownership=s3.ObjectOwnership.BUCKET_OWNER_ENFORCED,
        lifecycle_rules=[
            s3.LifecycleRule(
                id="abort-incomplete-multipart-uploads",
                abort_incomplete_multipart_upload_after=cdk.Duration.days(1),
            )
        ],
        # Request metrics (GET/PUT counts, latency) feed the dashboard's S3 panel.
        metrics=[s3.BucketMetrics(id="EntireBucket")],
        removal_policy=removal,
        auto_delete_objects=False,
    )
    acknowledge(
        bucket,
        "AwsSolutions-S1",
        "Server access logs would log every WAL PUT and fetch GET (tens "
        "per second per broker); request metrics on the bucket and the brokers' "
        "S3PutRequests/S3GetRequests metrics are used instead.",
    )
    return bucket


def _billing(tenant: TenantSettings) -> dynamodb.Billing:
    """On demand by default; provisioned capacity auto-scaled to a target utilization for
    tenants with a steady load (docs/COST.md prices both)."""
    if tenant.metadata_billing == "on_demand":
        return dynamodb.Billing.on_demand()
    target = tenant.metadata_target_utilization_percent
    return dynamodb.Billing.provisioned(
        read_capacity=dynamodb.Capacity.autoscaled(
            min_capacity=tenant.metadata_min_read_capacity,
            max_capacity=tenant.metadata_max_read_capacity,
            target_utilization_percent=target,
        ),
        write_capacity=dynamodb.Capacity.autoscaled(
            min_capacity=tenant.metadata_min_write_capacity,
            max_capacity=tenant.metadata_max_write_capacity,
            target_utilization_percent=target,
        ),
    )


class StorageStack(cdk.Stack):
    def __init__(
        self, scope: Construct, construct_id: str, *, tenant: TenantSettings, **kwargs: Any
    ) -> None:
        super().__init__(scope, construct_id, **kwargs)
        self.tenant = tenant
        removal = cdk.RemovalPolicy.RETAIN if tenant.retain_data else cdk.RemovalPolicy.DESTROY

        self.bucket = data_bucket(self, tenant, removal)

        table_name = f"{tenant.resource_prefix}-metadata"
        # The bucket and table keep fixed names (policies name them exactly); when retained by
        # `cdk destroy`, ``adopt_data`` makes the next deploy use them instead of failing on
        # "already exists" (docs/DEPLOY.md, "Destroy and redeploy").
        self.table: dynamodb.ITableV2 = (
            dynamodb.TableV2.from_table_name(self, "Metadata", table_name)
            if tenant.adopt_data
            else self._table(tenant, table_name, removal)
        )
        self._express_wal(tenant, removal)
        if tenant.adopt_data:
            # CloudFormation refuses a template without resources; this one does nothing.
            cdk.CfnWaitConditionHandle(self, "AdoptedData")
        cdk.CfnOutput(self, "BucketName", value=self.bucket.bucket_name)
        cdk.CfnOutput(self, "TableName", value=self.table.table_name)
        if self.express_wal_bucket_name:
            cdk.CfnOutput(self, "ExpressWalBucketName", value=self.express_wal_bucket_name)

    def _table(
        self, tenant: TenantSettings, table_name: str, removal: cdk.RemovalPolicy
    ) -> dynamodb.TableV2:
        return dynamodb.TableV2(
            self,
            "Metadata",
            table_name=table_name,
            partition_key=dynamodb.Attribute(name="pk", type=dynamodb.AttributeType.STRING),
            sort_key=dynamodb.Attribute(name="sk", type=dynamodb.AttributeType.STRING),
            billing=_billing(tenant),
            point_in_time_recovery_specification=dynamodb.PointInTimeRecoverySpecification(
                point_in_time_recovery_enabled=True
            ),
            deletion_protection=tenant.deletion_protection,
            removal_policy=removal,
        )

    def _express_wal(self, tenant: TenantSettings, removal: cdk.RemovalPolicy) -> None:
        self.express_wal_bucket_name: str | None = None
        if tenant.express_wal_az_id:
            # Directory bucket names are fixed: <base>--<az-id>--x-s3.
            name = f"{tenant.resource_prefix}-wal-{self.account}--{tenant.express_wal_az_id}--x-s3"
            if tenant.adopt_data:
                self.express_wal_bucket_name = name
                return
            bucket = s3express.CfnDirectoryBucket(
                self,
                "ExpressWal",
                bucket_name=name,
                data_redundancy="SingleAvailabilityZone",
                location_name=tenant.express_wal_az_id,
                lifecycle_configuration=s3express.CfnDirectoryBucket.LifecycleConfigurationProperty(
                    rules=[
                        s3express.CfnDirectoryBucket.RuleProperty(
                            id="abort-incomplete-multipart-uploads",
                            status="Enabled",
                            abort_incomplete_multipart_upload=s3express.CfnDirectoryBucket.AbortIncompleteMultipartUploadProperty(
                                days_after_initiation=1
                            ),
                        )
                    ]
                ),
            )
            bucket.apply_removal_policy(removal)
            self.express_wal_bucket_name = bucket.ref

    @property
    def objects_arn(self) -> str:
        """ARN of every object under the tenant's key prefix (for IAM policies)."""
        return arn(OBJECTS_ARN, tenant=self.tenant.name, prefix=self.tenant.storage_prefix)

    @property
    def objects_finding(self) -> str:
        """How cdk-nag names ``objects_arn`` in an AwsSolutions-IAM5 finding."""
        return finding_resource(
            OBJECTS_ARN, tenant=self.tenant.name, prefix=self.tenant.storage_prefix
        )

    @property
    def storage_uri(self) -> str:
        return f"s3://{self.bucket.bucket_name}/{self.tenant.storage_prefix}"
