"""One tenant's control plane: the four functions, their triggers, alarms and the dashboard.

| function   | triggers                                                              |
|------------|-----------------------------------------------------------------------|
| compaction | schedule, rate 5 min                                                  |
| autoscaler | this tenant's throughput alarms change state; schedule, rate 1 min    |
| balancer   | a broker task of this cluster is RUNNING; schedule, rate 5 min        |
| recovery   | a broker task of this cluster STOPPED; schedule, rate 1 min           |

Failed asynchronous invocations (after the retries) and events EventBridge could not deliver
land in one encrypted SQS dead-letter queue, which has an alarm.

The balancer and the autoscaler move partitions with Kafka's AlterPartitionReassignments, so
they run in the brokers' VPC (private subnets) with a security group of their own that the
brokers' group lets in on the client port, and they read the admin secret to authenticate to
the SASL listener (control/kafka_access.py). Compaction and recovery need AWS APIs only.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import aws_cdk as cdk
from aws_cdk import aws_cloudwatch as cloudwatch
from aws_cdk import aws_ec2 as ec2
from aws_cdk import aws_events as events
from aws_cdk import aws_events_targets as targets
from aws_cdk import aws_iam as iam
from aws_cdk import aws_lambda as lambda_
from aws_cdk import aws_logs as logs
from constructs import Construct

from broker_service.control.sizing import COMPACTION_MBPS_PER_VCPU, produce_alarm_thresholds

from . import lambda_code
from .alarms import (
    alarm_state_changes,
    control_dead_letter_queue,
    threshold_alarm,
    throughput_alarms,
)
from .brokers import BrokerStack, set_retention
from .nag import acknowledge_wildcards, arn, finding_resource
from .storage import StorageStack
from .tenant import TenantSettings

FUNCTION_NAMES = ("compaction", "autoscaler", "balancer", "recovery")
KAFKA_CLIENTS = ("autoscaler", "balancer")  # talk Kafka to the brokers: in the VPC
# What Lambda needs to attach a function to a VPC (the actions of AWS's
# AWSLambdaVPCAccessExecutionRole); EC2 gives these no resource-level permissions Lambda can
# use: the ENIs are created by the Lambda service before any id exists.
VPC_ACCESS_ACTIONS = [
    "ec2:CreateNetworkInterface",
    "ec2:DescribeNetworkInterfaces",
    "ec2:DescribeSubnets",
    "ec2:DeleteNetworkInterface",
    "ec2:AssignPrivateIpAddresses",
    "ec2:UnassignPrivateIpAddresses",
]
VPC_ACCESS_REASON = (
    "Lambda's VPC attachment (ec2:CreateNetworkInterface, DescribeNetworkInterfaces, "
    "DescribeSubnets, DeleteNetworkInterface, Assign/UnassignPrivateIpAddresses) requires "
    "'*' (AWS documents no narrower resource for the execution role)."
)
# DynamoDB actions on the metadata table, per function (what each one calls; a
# TransactWriteItems is authorized per item as PutItem / UpdateItem / DeleteItem /
# ConditionCheckItem).
TABLE_ACTIONS: dict[str, tuple[str, ...]] = {
    "compaction": (
        "GetItem", "PutItem", "UpdateItem", "DeleteItem", "ConditionCheckItem",
        "BatchWriteItem", "BatchGetItem", "Query",
    ),
    "autoscaler": ("Query", "UpdateItem"),
    "balancer": ("Query",),
    "recovery": ("Query", "GetItem", "UpdateItem", "PutItem", "DeleteItem",
                 "ConditionCheckItem"),
}  # fmt: skip
SCHEDULES = {"compaction": 5, "autoscaler": 1, "balancer": 5, "recovery": 1}  # minutes
RETRY_ATTEMPTS = 2
MAX_EVENT_AGE = cdk.Duration.hours(1)
TASKS_ARN = "arn:{partition}:ecs:{region}:{account}:task/{cluster}/*"
OBJECTS_REASON = (
    "Object keys are created at run time: the wildcard is limited to this tenant's bucket "
    "and key prefix."
)
METRICS_REASON = "cloudwatch:GetMetricData has no resource-level permissions (AWS requires '*')."


# What a compaction run holds besides its read buffer: the interpreter, boto3, the object it
# writes (up to COMPACTION_TARGET_OBJECT_BYTES, twice while it is built and sent).
COMPACTION_MEMORY_HEADROOM_MIB = 512


def compaction_environment(t: TenantSettings) -> dict[str, str]:
    """The compaction function's knobs. Its read buffer (control/compaction_reads.py): the
    larger it is, the longer the merges that read every WAL object once (one GET whatever the
    partitions in it), so the fewer objects a later run merges again. Its budget: the whole
    timeout but the handler's margin, and what one vCPU merges in it (the 600 s and 4 GiB
    defaults suit a broker compacting on its own timer, not the one compactor of a tenant)."""
    buffer_mib = max(64, t.compaction_memory_mib - COMPACTION_MEMORY_HEADROOM_MIB)
    seconds = t.compaction_timeout_s - 60
    return {
        "COMPACTION_READ_BUFFER_BYTES": str(buffer_mib << 20),
        "COMPACTION_TIME_BUDGET_S": str(seconds),
        "COMPACTION_MAX_BYTES_PER_RUN": str(int(seconds * COMPACTION_MBPS_PER_VCPU * 10**6)),
        "COMPACTION_SHARDS": str(t.compaction_shards),
    }


@dataclass(frozen=True)
class BrokerMetric:
    name: str
    stat: str  # how to combine brokers' datapoints
    dimensions: tuple[str, ...] = ("BrokerId",)


class ControlPlaneStack(cdk.Stack):
    def __init__(
        self,
        scope: Construct,
        construct_id: str,
        *,
        tenant: TenantSettings,
        storage: StorageStack,
        brokers: BrokerStack,
        lambda_deps_dir: str | None = None,
        **kwargs: Any,
    ) -> None:
        super().__init__(scope, construct_id, **kwargs)
        self.tenant = tenant
        self.storage = storage
        self.brokers = brokers
        prefix = tenant.resource_prefix

        self.dlq = control_dead_letter_queue(
            self, prefix, "the functions and their EventBridge targets"
        )

        self.layer = lambda_.LayerVersion(
            self,
            "Dependencies",
            code=lambda_code.dependencies_code(lambda_deps_dir),
            compatible_runtimes=[lambda_code.RUNTIME],
            compatible_architectures=[lambda_.Architecture.X86_64],
            description="powertools, pydantic, pydantic-settings, kio, crc32c, cramjam, scramp",
        )
        code = lambda_code.code_asset()
        self.kafka_client_security_group = self._kafka_client_security_group()
        self.functions = {name: self._function(name, code) for name in FUNCTION_NAMES}
        self._grant()

        self.alarms = self._alarms()
        self._rules()
        self.dashboard = self._dashboard()
        self.dashboard_url = (
            f"https://{self.region}.console.aws.amazon.com/cloudwatch/home?region="
            f"{self.region}#dashboards:name={self.dashboard.dashboard_name}"
        )
        cdk.CfnOutput(self, "DashboardUrl", value=self.dashboard_url)
        cdk.CfnOutput(self, "DeadLetterQueueUrl", value=self.dlq.queue_url)

    # -- functions -----------------------------------------------------------------------
    def function_environment(self) -> dict[str, str]:
        t, b = self.tenant, self.brokers
        return {
            "TENANT": t.name,
            "METADATA_TABLE": self.storage.table.table_name,
            "STORAGE_URI": self.storage.storage_uri,
            "METRICS_NAMESPACE": t.metrics_namespace,
            "ECS_CLUSTER": b.cluster.cluster_name,
            "ECS_SERVICE": b.service.service_name,
            "MIN_BROKERS": str(t.min_brokers),
            "MAX_BROKERS": str(t.max_brokers),
            # control/sizing.py's figures for this tenant's task size, computed here once
            "PRODUCE_MBPS_PER_BROKER": f"{t.capacity.produce_mbps:g}",
            "CONSUME_MBPS_PER_BROKER": f"{t.capacity.consume_mbps:g}",
        }

    def kafka_environment(self) -> dict[str, str]:
        """How the Kafka-speaking functions reach the listener (control/kafka_access.py)."""
        t = self.tenant
        env = {
            "KAFKA_SECURITY_PROTOCOL": t.listener_protocol,
            "KAFKA_SASL_MECHANISM": "SCRAM-SHA-512",
            "ADMIN_SECRET_ARN": self.brokers.admin_secret.secret_arn,
        }
        if t.tls_secret_arn:
            env["KAFKA_TLS_SECRET_ARN"] = t.tls_secret_arn
        return env

    def _kafka_client_security_group(self) -> ec2.SecurityGroup:
        """The balancer's and autoscaler's group: no ingress; out to the brokers' client port
        and HTTPS (AWS APIs through the NAT gateway or the gateway endpoints)."""
        b, ports = self.brokers, self.brokers.broker_ports
        sg = ec2.SecurityGroup(
            self,
            "KafkaClientFunctions",
            vpc=b.vpc,
            allow_all_outbound=False,
            description=f"{self.tenant.resource_prefix} balancer and autoscaler: "
            "Kafka to the brokers, HTTPS to AWS APIs",
        )
        sg.add_egress_rule(ec2.Peer.any_ipv4(), ec2.Port.tcp(443), "AWS APIs (HTTPS)")
        # Egress on this group and, in this stack (the brokers stack must not depend on this
        # one), the brokers' ingress from this group on the client port only.
        for port in ports:  # each broker process's main client port (not the zonal ones)
            sg.connections.allow_to(
                b.broker_security_group, ec2.Port.tcp(port), "balancer/autoscaler to brokers"
            )
        return sg

    def _function(self, name: str, code: lambda_.Code) -> lambda_.Function:
        t = self.tenant
        function_name = f"{t.resource_prefix}-{name}"
        log_group = logs.LogGroup(
            self,
            f"{name.title()}Logs",
            log_group_name=f"/aws/lambda/{function_name}",
            removal_policy=cdk.RemovalPolicy.DESTROY,
        )
        set_retention(log_group, t.log_retention_days)
        # Own role, no managed policy: logs to its own log group only.
        role = iam.Role(
            self,
            f"{name.title()}Role",
            assumed_by=iam.ServicePrincipal("lambda.amazonaws.com"),
            description=f"{function_name}: least privilege for this function",
        )
        role.add_to_policy(
            iam.PolicyStatement(
                sid="OwnLogGroup",
                actions=["logs:CreateLogStream", "logs:PutLogEvents"],
                resources=[log_group.log_group_arn],
            )
        )
        in_vpc = name in KAFKA_CLIENTS
        if in_vpc:
            role.add_to_policy(
                iam.PolicyStatement(
                    sid="VpcNetworkInterfaces", actions=VPC_ACCESS_ACTIONS, resources=["*"]
                )
            )
        return lambda_.Function(
            self,
            name.title(),
            function_name=function_name,
            runtime=lambda_code.RUNTIME,
            architecture=lambda_.Architecture.X86_64,
            handler=f"functions.{name}.handler.handler",
            code=code,
            layers=[self.layer],
            role=role,
            log_group=log_group,
            memory_size=t.compaction_memory_mib if name == "compaction" else t.function_memory_mib,
            timeout=cdk.Duration.seconds(
                t.compaction_timeout_s if name == "compaction" else t.function_timeout_s
            ),
            environment={
                **self.function_environment(),
                **(self.kafka_environment() if in_vpc else {}),
                **(compaction_environment(t) if name == "compaction" else {}),
                "POWERTOOLS_SERVICE_NAME": name,
            },
            vpc=self.brokers.vpc if in_vpc else None,
            vpc_subnets=self.brokers.private_subnets if in_vpc else None,
            security_groups=[self.kafka_client_security_group] if in_vpc else None,
            dead_letter_queue=self.dlq,
            retry_attempts=RETRY_ATTEMPTS,
            max_event_age=MAX_EVENT_AGE,
            reserved_concurrent_executions=t.function_reserved_concurrency,
            tracing=lambda_.Tracing.DISABLED,
        )

    def _grant(self) -> None:
        table, bucket, prefix = self.storage.table, self.storage.bucket, self.tenant.storage_prefix
        service = self.brokers.service
        # Exactly what each function calls (tests/functions/test_iam_recorded_calls.py runs
        # them against moto, records every call and compares with these statements).
        for name, fn in self.functions.items():
            fn.add_to_role_policy(
                iam.PolicyStatement(
                    sid="ItsMetadataTable",
                    actions=[f"dynamodb:{a}" for a in TABLE_ACTIONS[name]],
                    resources=[table.table_arn],
                )
            )
        # Objects: compaction merges, deletes and sweeps orphans (a multipart upload it
        # abandons is aborted).
        compaction = self.functions["compaction"]
        compaction.add_to_role_policy(
            iam.PolicyStatement(
                sid="ObjectsUnderItsPrefix",
                actions=[
                    "s3:GetObject",
                    "s3:PutObject",
                    "s3:DeleteObject",
                    "s3:AbortMultipartUpload",
                ],
                resources=[self.storage.objects_arn],
            )
        )
        compaction.add_to_role_policy(
            iam.PolicyStatement(
                sid="ListItsPrefix",
                actions=["s3:ListBucket"],
                resources=[bucket.bucket_arn],
                conditions={"StringLike": {"s3:prefix": [f"{prefix}/*", prefix]}},
            )
        )
        # The admin's credentials (and the brokers' certificate, to verify it) for the SASL
        # listener: exactly these secrets.
        secret_arns = [self.brokers.admin_secret.secret_arn]
        if self.tenant.tls_secret_arn:
            secret_arns.append(self.tenant.tls_secret_arn)
        for name in KAFKA_CLIENTS:
            self.functions[name].add_to_role_policy(
                iam.PolicyStatement(
                    sid="ReadBrokerAdminSecret",
                    actions=["secretsmanager:GetSecretValue"],
                    resources=secret_arns,
                )
            )
        # Broker metrics: GetMetricData has no resource-level permissions.
        for name in ("autoscaler", "balancer"):
            self.functions[name].add_to_role_policy(
                iam.PolicyStatement(
                    sid="ReadBrokerMetrics",
                    actions=["cloudwatch:GetMetricData"],
                    resources=["*"],
                )
            )
        autoscaler = self.functions["autoscaler"]
        # The desired count, and the time of the last scaling action as a tag on the service
        # (the cooldown outlives an invocation).
        autoscaler.add_to_role_policy(
            iam.PolicyStatement(
                sid="ScaleItsService",
                actions=[
                    "ecs:DescribeServices",
                    "ecs:UpdateService",
                    "ecs:TagResource",
                    "ecs:ListTagsForResource",
                ],
                resources=[service.service_arn],
            )
        )
        # Scale-in: the service's tasks other than the drained one are protected from
        # scale-in before the desired count goes down (ECS then stops the drained one).
        autoscaler.add_to_role_policy(
            iam.PolicyStatement(
                sid="ProtectItsStayingTasks",
                actions=["ecs:UpdateTaskProtection"],
                resources=[arn(TASKS_ARN, cluster=self.tenant.resource_prefix)],
            )
        )
        autoscaler.add_to_role_policy(
            iam.PolicyStatement(
                sid="ListItsTasks",
                actions=["ecs:ListTasks"],
                resources=["*"],
                conditions={"ArnEquals": {"ecs:cluster": self.brokers.cluster.cluster_arn}},
            )
        )
        objects = self.storage.objects_finding
        tasks = finding_resource(TASKS_ARN, cluster=self.tenant.resource_prefix)
        reasons = {
            "compaction": {objects: OBJECTS_REASON},
            "autoscaler": {
                "Resource::*": f"{METRICS_REASON} {VPC_ACCESS_REASON} ecs:ListTasks has no "
                "resource-level permissions (AWS requires '*'); the statement is conditioned "
                "on this cluster (ecs:cluster).",
                tasks: "Task ids are created at run time: limited to this cluster's tasks.",
            },
            "balancer": {"Resource::*": f"{METRICS_REASON} {VPC_ACCESS_REASON}"},
            "recovery": {},
        }
        for name, fn in self.functions.items():
            assert fn.role is not None
            acknowledge_wildcards(fn.role, reasons[name])

    # -- triggers ------------------------------------------------------------------------
    def _target(self, name: str) -> targets.LambdaFunction:
        return targets.LambdaFunction(
            self.functions[name],
            dead_letter_queue=self.dlq,
            retry_attempts=RETRY_ATTEMPTS,
            max_event_age=MAX_EVENT_AGE,
        )

    def _task_state_rule(self, rule_id: str, status: str, name: str) -> events.Rule:
        cluster, service = self.brokers.cluster, self.brokers.service
        return events.Rule(
            self,
            rule_id,
            description=f"{self.tenant.resource_prefix}: a broker task is {status}",
            event_pattern=events.EventPattern(
                source=["aws.ecs"],
                detail_type=["ECS Task State Change"],
                detail={
                    "clusterArn": [cluster.cluster_arn],
                    "group": [f"service:{service.service_name}"],
                    "lastStatus": [status],
                    # RUNNING: only tasks meant to stay (not one already being stopped)
                    **({"desiredStatus": ["RUNNING"]} if status == "RUNNING" else {}),
                },
            ),
            targets=[self._target(name)],
        )

    def _shard_target(self, shard: int) -> targets.LambdaFunction:
        """The compaction function for one compactor shard: the scheduled event as
        EventBridge sends it, with ``{"shard": k}`` as its detail."""
        event = {
            "version": "0", "id": events.EventField.event_id,
            "detail-type": events.EventField.detail_type, "source": events.EventField.source,
            "account": events.EventField.account, "time": events.EventField.time,
            "region": events.EventField.region, "resources": [], "detail": {"shard": shard},
        }  # fmt: skip
        return targets.LambdaFunction(
            self.functions["compaction"],
            event=events.RuleTargetInput.from_object(event),
            dead_letter_queue=self.dlq,
            retry_attempts=RETRY_ATTEMPTS,
            max_event_age=MAX_EVENT_AGE,
        )

    def _rules(self) -> None:
        for name, minutes in SCHEDULES.items():
            events.Rule(
                self,
                f"{name.title()}Schedule",
                description=f"{self.tenant.resource_prefix}: run {name} every {minutes} min",
                schedule=events.Schedule.rate(cdk.Duration.minutes(minutes)),
                targets=[self._target(name)],
            )
        # more compactor shards: their targets, five to a rule (EventBridge's limit)
        extra = [self._shard_target(k) for k in range(1, self.tenant.compaction_shards)]
        for i in range(0, len(extra), 5):
            events.Rule(
                self,
                f"CompactionShardsSchedule{i // 5 + 1}",
                description=f"{self.tenant.resource_prefix}: run compactor shards "
                f"{i + 1}-{min(i + 5, len(extra))} every {SCHEDULES['compaction']} min",
                schedule=events.Schedule.rate(cdk.Duration.minutes(SCHEDULES["compaction"])),
                targets=extra[i : i + 5],
            )
        throughput = [self.alarms["throughput-high"], self.alarms["throughput-low"]]
        events.Rule(
            self,
            "AutoscalerAlarms",
            description=f"{self.tenant.resource_prefix}: a throughput alarm changed state",
            event_pattern=alarm_state_changes(throughput),
            targets=[self._target("autoscaler")],
        )
        self._task_state_rule("BrokerRunning", "RUNNING", "balancer")
        self._task_state_rule("BrokerStopped", "STOPPED", "recovery")

    # -- metrics, alarms, dashboard -------------------------------------------------------
    def insights(self, stat: str, metric: str, dims: tuple[str, ...] = ("BrokerId",)) -> str:
        """A Metrics Insights query over every broker (alarms cannot use SEARCH)."""
        schema = ", ".join([f'"{self.tenant.metrics_namespace}"', *dims])
        return f"SELECT {stat}({metric}) FROM SCHEMA({schema})"

    def lag_query(self) -> str:
        """The lag of each (group, topic): each broker reports the lag of the partitions it
        leads once a minute (EMF, dimensions Group and Topic), so a group's lag on a topic is
        the SUM of the brokers' datapoints in a minute (MAX would take the largest single
        broker's part). One series per (group, topic); ORDER BY keeps the largest ones when
        there are more than the 500 series a query returns."""
        ns = self.tenant.metrics_namespace
        return (
            f'SELECT SUM(ConsumerLag) FROM SCHEMA("{ns}", Group, Topic) '
            "GROUP BY Group, Topic ORDER BY SUM() DESC"
        )

    def largest_lag(self, period: cdk.Duration) -> cloudwatch.MathExpression:
        """The largest lag of any (group, topic), each minute, as one time series: an alarm
        on a Metrics Insights query must watch a single series, and CloudWatch documents
        wrapping a GROUP BY query in a metric math expression that returns one; MAX over the
        query's series is the largest at each point."""
        by_group = cloudwatch.MathExpression(
            expression=self.lag_query(), period=period, label="lag per (group, topic)"
        )
        return cloudwatch.MathExpression(
            expression="MAX(lagbygroup)",
            using_metrics={"lagbygroup": by_group},
            period=period,
            label="largest consumer lag (group, topic)",
        )

    def search(self, metric: str, stat: str, dims: tuple[str, ...] = ("BrokerId",)) -> str:
        """A SEARCH expression: one line per broker (or topic, group) on the dashboard."""
        schema = ",".join([self.tenant.metrics_namespace, *dims])
        return f"SEARCH('{{{schema}}} MetricName=\"{metric}\"', '{stat}', 60)"

    def _alarms(self) -> dict[str, cloudwatch.Alarm]:
        t = self.tenant
        prefix = t.resource_prefix
        period = cdk.Duration.minutes(1)
        # Cluster produce bytes per minute, against what the minimum cluster is sized for. The
        # autoscaler itself reads per-broker metrics every minute; these alarms make it react
        # at once to a surge or a drop.
        produce_bytes = cloudwatch.MathExpression(
            expression=self.insights("SUM", "BytesIn"), period=period, label="bytes in / min"
        )
        alarms = throughput_alarms(
            self,
            prefix,
            produce_bytes,
            produce_alarm_thresholds(t.capacity, t.min_brokers, t.read_fanout),
            period.to_seconds(),
            why="the autoscaler considers",
            high_periods=2,
            low_periods=10,
        )
        # key, construct id, alarm name (after the prefix), description, metric, threshold,
        # above (else below) the threshold, evaluation periods
        others: list[tuple[str, str, str, str, cloudwatch.IMetric, float, bool, int]] = [
            (
                "produce-latency",
                "ProduceLatencyHigh",
                "produce-latency-high",
                "slowest broker's produce latency (ms) too high",
                cloudwatch.MathExpression(
                    expression=self.insights("MAX", "ProduceLatencyMs"),
                    period=period,
                    label="max produce latency ms",
                ),
                t.produce_latency_alarm_ms,
                True,
                3,
            ),
            (
                "consumer-lag",
                "ConsumerLagHigh",
                "consumer-lag-high",
                "a consumer group lags too far behind on a topic",
                self.largest_lag(period),
                t.consumer_lag_alarm,
                True,
                5,
            ),
            (
                "brokers-below-min",
                "BrokersBelowMin",
                "brokers-below-min",
                "fewer running broker tasks than min_brokers",
                self.running_tasks(),
                t.min_brokers,
                False,
                3,
            ),
            (
                "dead-letters",
                "DeadLettersAlarm",
                "control-dead-letters",
                "a control-plane invocation failed after its retries",
                self.dlq.metric_approximate_number_of_messages_visible(
                    period=period, statistic="Maximum"
                ),
                0,
                True,
                1,
            ),
        ]
        for key, construct_id, name, description, metric, threshold, above, periods in others:
            alarms[key] = threshold_alarm(
                self,
                construct_id,
                name=f"{prefix}-{name}",
                description=description,
                metric=metric,
                threshold=threshold,
                above=above,
                evaluation_periods=periods,
            )
        return alarms

    def running_tasks(self) -> cloudwatch.Metric:
        return cloudwatch.Metric(
            namespace="ECS/ContainerInsights",
            metric_name="RunningTaskCount",
            dimensions_map={
                "ClusterName": self.brokers.cluster.cluster_name,
                "ServiceName": self.brokers.service.service_name,
            },
            statistic="Average",
            period=cdk.Duration.minutes(1),
        )

    def _graph(self, title: str, lines: list[tuple[str, str]], unit_label: str) -> Any:
        return cloudwatch.GraphWidget(
            title=title,
            width=12,
            left=[
                cloudwatch.MathExpression(
                    expression=expr, label=label, period=cdk.Duration.minutes(1), using_metrics={}
                )
                for expr, label in lines
            ],
            left_y_axis=cloudwatch.YAxisProps(label=unit_label, show_units=False),
        )

    def _dashboard(self) -> cloudwatch.Dashboard:
        s = self.search
        dashboard = cloudwatch.Dashboard(
            self,
            "Dashboard",
            dashboard_name=f"{self.tenant.resource_prefix}",
            default_interval=cdk.Duration.hours(3),
        )
        bucket_requests = [
            cloudwatch.Metric(
                namespace="AWS/S3",
                metric_name=m,
                dimensions_map={
                    "BucketName": self.storage.bucket.bucket_name,
                    "FilterId": "EntireBucket",
                },
                statistic="Sum",
                period=cdk.Duration.minutes(1),
            )
            for m in ("PutRequests", "GetRequests")
        ]
        dashboard.add_widgets(
            self._graph(
                "Throughput (bytes/min per broker)",
                [(s("BytesIn", "Sum"), ""), (s("BytesOut", "Sum"), "")],
                "bytes",
            ),
            self._graph(
                "Latency (ms, max per broker)",
                [(s("ProduceLatencyMs", "Maximum"), ""), (s("FetchLatencyMs", "Maximum"), "")],
                "ms",
            ),
        )
        dashboard.add_widgets(
            cloudwatch.GraphWidget(
                title="Brokers (running tasks)",
                width=12,
                left=[self.running_tasks()],
            ),
            self._graph(
                "Consumer lag (per group and topic)",
                [(s("ConsumerLag", "Maximum", ("Group", "Topic")), "")],
                "records",
            ),
        )
        dashboard.add_widgets(
            self._graph(
                "S3 requests by brokers (per min)",
                [(s("S3PutRequests", "Sum"), ""), (s("S3GetRequests", "Sum"), "")],
                "requests",
            ),
            cloudwatch.GraphWidget(
                title="S3 requests on the bucket (per min)", width=12, left=bucket_requests
            ),
        )
        dashboard.add_widgets(
            cloudwatch.AlarmStatusWidget(
                title="Alarms", width=24, alarms=list(self.alarms.values())
            )
        )
        return dashboard
