"""One tenant's brokers: VPC, ECS cluster, Fargate service, bootstrap NLB, task role.

Advertised listeners: each task has its own private IP (awsvpc). The broker starts with
``BROKER_ADVERTISED_HOST=ecs`` and advertises that IP (see broker_service/cluster/ecs_identity.py),
so a client bootstraps through the NLB on 9092 and then talks to every broker directly at
``<task-ip>:9092``, as Kafka clients need. Clients therefore run in the VPC (or a peered /
transit-attached network); the NLB alone is not enough for a client outside it.

Every vCPU works (issue 21.3): a task runs one broker process per vCPU
(``BROKER_PROCESSES``, broker_service/runtime/processes.py), the i-th on port 9092 + i (and
/metrics on 9464 + i), each a broker of its own. Every port is a listener of the NLB with a
target group of its own, so any of them bootstraps a client.

Zonal bootstrap (``zonal_bootstrap``, on by default): every broker also listens on one port per
AZ of the VPC (9093 for the first AZ, 9094, 9095; broker process i adds i x (1 + the AZs) to
every port), each a listener whose rack is that AZ
(``BROKER_LISTENER_RACKS``); the NLB forwards the same ports. A client of AZ ``a`` bootstraps
at ``<AZ a>.<NLB DNS name>:<port of AZ a>`` (the stack's ``ZonalBootstrap<n>`` outputs): the
metadata it gets on that listener names, for each partition, a broker of AZ ``a``, at that
broker's endpoint of the same listener, so its produce and fetch bytes stay in its AZ. The
listener, not the broker the NLB picked, carries the zone, so cross-zone load balancing may
stay on (a bootstrap is a few KB). Brokers know their own AZ from the ECS task metadata.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import aws_cdk as cdk
from aws_cdk import aws_ec2 as ec2
from aws_cdk import aws_ecs as ecs
from aws_cdk import aws_elasticloadbalancingv2 as elbv2
from aws_cdk import aws_iam as iam
from aws_cdk import aws_logs as logs
from aws_cdk import aws_secretsmanager as secretsmanager
from constructs import Construct

from .nag import acknowledge, acknowledge_wildcards
from .storage import StorageStack
from .tenant import TenantSettings

REPO_ROOT = Path(__file__).resolve().parent.parent
BROKER_CONTAINER = "broker"
# ECS sends SIGTERM, then SIGKILL after the container's stop timeout (30 s is ECS's default;
# up to 120 s on Fargate). The broker bounds its own stop a margin below it.
STOP_TIMEOUT_S = 30
STOP_MARGIN_S = 5
# What the task's health check runs: every broker process answers TCP on its client port.
HEALTH_CHECK_COMMAND = "import socket; socket.create_connection(('127.0.0.1', {port}), 2).close()"


def health_check_command(ports: list[int]) -> str:
    return "; ".join(
        [HEALTH_CHECK_COMMAND.format(port=ports[0]),
         *(HEALTH_CHECK_COMMAND.format(port=p).split("; ", 1)[1] for p in ports[1:])]
    )  # fmt: skip


# What the tasks and the in-VPC functions reach through interface endpoints
# (control_path="endpoints"); cost/model.py prices ``len(INTERFACE_ENDPOINTS)`` per AZ.
INTERFACE_ENDPOINTS = {
    "EcrApi": ec2.InterfaceVpcEndpointAwsService.ECR,
    "EcrDocker": ec2.InterfaceVpcEndpointAwsService.ECR_DOCKER,
    "Logs": ec2.InterfaceVpcEndpointAwsService.CLOUDWATCH_LOGS,
    "SecretsManager": ec2.InterfaceVpcEndpointAwsService.SECRETS_MANAGER,
    "CloudWatch": ec2.InterfaceVpcEndpointAwsService.CLOUDWATCH_MONITORING,
    "Ecs": ec2.InterfaceVpcEndpointAwsService.ECS,
}
# Share of the task's memory for the broker's caches: the log cache (tail reads) and the block
# cache (older data read from objects); the rest is the interpreter, buffers and requests.
LOG_CACHE_SHARE = 0.4
BLOCK_CACHE_SHARE = 0.2
MIB = 1 << 20


def cache_sizes(memory_mib: int, processes: int = 1) -> dict[str, int]:
    """BROKER_LOG_CACHE_BYTES / BROKER_BLOCK_CACHE_BYTES of each broker process from the
    task's memory (the broker's own defaults, 256 + 128 MiB, would leave most of a Fargate
    task's memory unused); the task's processes share it."""
    return {
        "BROKER_LOG_CACHE_BYTES": int(memory_mib * LOG_CACHE_SHARE / processes) * MIB,
        "BROKER_BLOCK_CACHE_BYTES": int(memory_mib * BLOCK_CACHE_SHARE / processes) * MIB,
    }


def port_range(ports: list[int]) -> ec2.Port:
    """One security-group rule for consecutive ports."""
    return ec2.Port.tcp(ports[0]) if len(ports) == 1 else ec2.Port.tcp_range(ports[0], ports[-1])


def set_retention(log_group: logs.LogGroup, days: int) -> None:
    """Retention in days (any value CloudWatch accepts) without mapping it to the enum."""
    cfn = log_group.node.default_child
    assert isinstance(cfn, logs.CfnLogGroup)
    cfn.retention_in_days = days


class BrokerStack(cdk.Stack):
    def __init__(
        self,
        scope: Construct,
        construct_id: str,
        *,
        tenant: TenantSettings,
        storage: StorageStack,
        **kwargs: Any,
    ) -> None:
        super().__init__(scope, construct_id, **kwargs)
        self.tenant = tenant
        self.storage = storage
        prefix = tenant.resource_prefix

        self.vpc = self._vpc(tenant)
        # (listener name, port, AZ): one zonal listener per AZ of the VPC
        self.zonal = (
            [(f"AZ{i + 1}", tenant.broker_port + 1 + i, az)
             for i, az in enumerate(self.vpc.availability_zones)]
            if tenant.zonal_bootstrap else []
        )  # fmt: skip
        # Broker process i listens on every port above + i x the span (runtime/processes.py)
        self.port_span = 1 + len(self.zonal)
        self.broker_ports = [  # each process's main client port
            tenant.broker_port + i * self.port_span for i in range(tenant.processes)
        ]
        self.client_ports = [  # every client port of the task: main and zonal, each process
            port + k for port in self.broker_ports for k in range(self.port_span)
        ]
        client_peers = [ec2.Peer.ipv4(self.vpc.vpc_cidr_block)] + [
            ec2.Peer.ipv4(c) for c in tenant.client_cidrs
        ]

        # -- security groups: the client port from the VPC (and listed CIDRs), metrics and
        # health checks from the VPC only; nothing else in.
        self.nlb_security_group = ec2.SecurityGroup(
            self,
            "NlbSecurityGroup",
            vpc=self.vpc,
            allow_all_outbound=False,
            description=f"{prefix} bootstrap NLB: Kafka clients in",
        )
        self.broker_security_group = ec2.SecurityGroup(
            self,
            "BrokerSecurityGroup",
            vpc=self.vpc,
            allow_all_outbound=True,
            description=f"{prefix} brokers: Kafka clients and the NLB in; AWS APIs out",
        )
        client_ports = port_range(self.client_ports)
        for peer in client_peers:
            self.nlb_security_group.add_ingress_rule(
                peer, client_ports, "Kafka clients (bootstrap)"
            )
            self.broker_security_group.add_ingress_rule(
                peer, client_ports, "Kafka clients (direct to brokers)"
            )
        self.broker_security_group.add_ingress_rule(
            ec2.Peer.ipv4(self.vpc.vpc_cidr_block),
            port_range(tenant.metrics_ports),
            "Prometheus /metrics from the VPC",
        )
        self.broker_security_group.add_ingress_rule(
            self.nlb_security_group, client_ports, "NLB to brokers"
        )
        self.nlb_security_group.add_egress_rule(
            self.broker_security_group, client_ports, "NLB to brokers"
        )

        self.cluster = ecs.Cluster(
            self,
            "Cluster",
            cluster_name=prefix,
            vpc=self.vpc,
            container_insights_v2=ecs.ContainerInsights.ENABLED,
        )

        self.log_group = logs.LogGroup(
            self,
            "BrokerLogs",
            log_group_name=f"/kafka/{tenant.name}/brokers",
            removal_policy=cdk.RemovalPolicy.DESTROY,
        )
        set_retention(self.log_group, tenant.log_retention_days)

        self.task_role = iam.Role(
            self,
            "BrokerTaskRole",
            assumed_by=iam.ServicePrincipal("ecs-tasks.amazonaws.com"),
            description=f"{prefix} broker tasks: its bucket prefix and its table only",
        )
        self._grant_storage(storage)

        # No fixed name: a destroyed stack's secret stays "scheduled for deletion" for 7-30
        # days, and a fixed name would make the next `cdk deploy` of the tenant fail.
        self.admin_secret = secretsmanager.Secret(
            self,
            "AdminSecret",
            description=f"{prefix}: bootstrap SCRAM admin (username, password)",
            generate_secret_string=secretsmanager.SecretStringGenerator(
                secret_string_template='{"username": "admin"}',
                generate_string_key="password",
                exclude_punctuation=True,
                password_length=32,
            ),
        )
        acknowledge(
            self.admin_secret,
            "AwsSolutions-SMG4",
            "Bootstrap admin read by brokers at start-up only; rotating it "
            "needs the SCRAM credential rotated in the metadata store too (manual).",
        )

        self.task_definition = ecs.FargateTaskDefinition(
            self,
            "BrokerTask",
            family=f"{prefix}-broker",
            cpu=tenant.broker_cpu,
            memory_limit_mib=tenant.broker_memory_mib,
            task_role=self.task_role,
            runtime_platform=ecs.RuntimePlatform(
                cpu_architecture=ecs.CpuArchitecture.X86_64,
                operating_system_family=ecs.OperatingSystemFamily.LINUX,
            ),
        )
        self.container = self.task_definition.add_container(
            BROKER_CONTAINER,
            image=ecs.ContainerImage.from_asset(str(REPO_ROOT), file="Dockerfile"),
            essential=True,
            environment=self.broker_environment(storage),
            secrets=self._broker_secrets(),
            logging=ecs.LogDrivers.aws_logs(stream_prefix="broker", log_group=self.log_group),
            port_mappings=[  # the client ports (main and zonal) and a metrics port per process
                *(ecs.PortMapping(container_port=p, name=f"kafka{i or ''}")
                  for i, p in enumerate(self.client_ports)),
                *(ecs.PortMapping(container_port=p, name=f"metrics{i or ''}")
                  for i, p in enumerate(tenant.metrics_ports)),
            ],  # fmt: skip
            health_check=ecs.HealthCheck(
                command=["CMD", "python", "-c", health_check_command(self.broker_ports)],
                interval=cdk.Duration.seconds(10),
                timeout=cdk.Duration.seconds(5),
                retries=3,
                start_period=cdk.Duration.seconds(30),
            ),
            stop_timeout=cdk.Duration.seconds(STOP_TIMEOUT_S),  # graceful: hand over, flush
            ulimits=[ecs.Ulimit(name=ecs.UlimitName.NOFILE, soft_limit=65536, hard_limit=65536)],
        )

        self.service = ecs.FargateService(
            self,
            "Brokers",
            service_name=f"{prefix}-brokers",
            cluster=self.cluster,
            task_definition=self.task_definition,
            # No DesiredCount in the template: CloudFormation would set it back on every
            # deploy that updates the service. ECS creates the service with 1 task and the
            # autoscaler (every minute) raises it to min_brokers and owns it from then on.
            desired_count=None,
            min_healthy_percent=100,
            max_healthy_percent=200,
            circuit_breaker=ecs.DeploymentCircuitBreaker(rollback=True),
            security_groups=[self.broker_security_group],
            vpc_subnets=self.private_subnets,
            assign_public_ip=False,
            availability_zone_rebalancing=ecs.AvailabilityZoneRebalancing.ENABLED,
            health_check_grace_period=cdk.Duration.seconds(60),
            propagate_tags=ecs.PropagatedTagSource.SERVICE,
        )

        self.nlb = elbv2.NetworkLoadBalancer(
            self,
            "Bootstrap",
            load_balancer_name=prefix,
            vpc=self.vpc,
            internet_facing=tenant.internet_facing_nlb,
            cross_zone_enabled=True,
            security_groups=[self.nlb_security_group],
        )
        # a listener per broker process (its main port), each with a target group of its own
        self.target_groups = [
            self._nlb_port(f"Kafka{i or ''}", f"Brokers{i or ''}", port)
            for i, port in enumerate(self.broker_ports)
        ]
        self.target_group = self.target_groups[0]
        self.bootstrap_address = ",".join(
            f"{self.nlb.load_balancer_dns_name}:{port}" for port in self.broker_ports
        )
        cdk.CfnOutput(self, "BootstrapAddress", value=self.bootstrap_address)
        # a zonal bootstrap per AZ: the NLB's name in that AZ, the port of that AZ's listener
        self.zonal_bootstraps = []
        for i, (name, zone_port, az) in enumerate(self.zonal):
            ports = [zone_port + proc * self.port_span for proc in range(tenant.processes)]
            for proc, port in enumerate(ports):
                suffix = f"{name}{proc or ''}"
                self._nlb_port(f"Kafka{suffix}", f"Brokers{suffix}", port)
            address = ",".join(f"{az}.{self.nlb.load_balancer_dns_name}:{port}" for port in ports)
            self.zonal_bootstraps.append(address)
            cdk.CfnOutput(
                self, f"ZonalBootstrap{i + 1}", value=address,
                description=f"bootstrap for clients in the VPC's AZ number {i + 1} ({name})",
            )  # fmt: skip
        cdk.CfnOutput(self, "ClusterName", value=self.cluster.cluster_name)
        cdk.CfnOutput(self, "ServiceName", value=self.service.service_name)
        cdk.CfnOutput(self, "AdminSecretArn", value=self.admin_secret.secret_arn)
        self._nag_suppressions()

    # -- pieces ------------------------------------------------------------------------
    def _nlb_port(self, listener_id: str, targets_id: str, port: int) -> elbv2.NetworkTargetGroup:
        """An NLB listener on ``port`` to the brokers' same port, with TCP health checks."""
        listener = self.nlb.add_listener(listener_id, port=port)
        return listener.add_targets(
            targets_id,
            port=port,
            protocol=elbv2.Protocol.TCP,
            targets=[
                self.service.load_balancer_target(
                    container_name=BROKER_CONTAINER, container_port=port
                )
            ],
            deregistration_delay=cdk.Duration.seconds(30),
            health_check=elbv2.HealthCheck(
                protocol=elbv2.Protocol.TCP,
                port=str(port),
                interval=cdk.Duration.seconds(10),
                healthy_threshold_count=2,
                unhealthy_threshold_count=2,
            ),
        )

    @property
    def private_subnets(self) -> ec2.SubnetSelection:
        """Where brokers and the in-VPC functions run: isolated subnets when AWS APIs are
        reached through interface endpoints (no NAT), private ones with a NAT per AZ."""
        isolated = not self.tenant.vpc_id and self.tenant.control_path == "endpoints"
        return ec2.SubnetSelection(
            subnet_type=ec2.SubnetType.PRIVATE_ISOLATED
            if isolated
            else ec2.SubnetType.PRIVATE_WITH_EGRESS
        )

    def _vpc(self, tenant: TenantSettings) -> ec2.IVpc:
        if tenant.vpc_id:
            # Needs an account/region (CDK_DEFAULT_ACCOUNT) and caches the lookup in
            # cdk.context.json.
            return ec2.Vpc.from_lookup(self, "Vpc", vpc_id=tenant.vpc_id)
        endpoints = tenant.control_path == "endpoints"
        subnets = [
            ec2.SubnetConfiguration(
                name="brokers",
                subnet_type=ec2.SubnetType.PRIVATE_ISOLATED
                if endpoints
                else ec2.SubnetType.PRIVATE_WITH_EGRESS,
                cidr_mask=20,
            )
        ]
        if not endpoints or tenant.internet_facing_nlb:
            # NAT gateways live in public subnets; so does an internet-facing NLB.
            subnets.insert(
                0,
                ec2.SubnetConfiguration(
                    name="public", subnet_type=ec2.SubnetType.PUBLIC, cidr_mask=24
                ),
            )
        vpc = ec2.Vpc(
            self,
            "Vpc",
            ip_addresses=ec2.IpAddresses.cidr(tenant.vpc_cidr),
            max_azs=tenant.max_azs,
            # One NAT per AZ (never one for all: losing its AZ would stop image pulls, logs,
            # secrets and metrics in every AZ), or none with interface endpoints.
            nat_gateways=0 if endpoints else tenant.max_azs,
            subnet_configuration=subnets,
            gateway_endpoints={
                "S3": ec2.GatewayVpcEndpointOptions(service=ec2.GatewayVpcEndpointAwsService.S3),
                "DynamoDB": ec2.GatewayVpcEndpointOptions(
                    service=ec2.GatewayVpcEndpointAwsService.DYNAMODB
                ),
            },
        )
        if endpoints:
            self._interface_endpoints(vpc)
        flow_logs = logs.LogGroup(self, "FlowLogs", removal_policy=cdk.RemovalPolicy.DESTROY)
        set_retention(flow_logs, tenant.log_retention_days)
        vpc.add_flow_log(
            "FlowLog",
            destination=ec2.FlowLogDestination.to_cloud_watch_logs(flow_logs),
            traffic_type=ec2.FlowLogTrafficType.REJECT,
        )
        return vpc

    def _interface_endpoints(self, vpc: ec2.Vpc) -> None:
        """What tasks and functions reach besides S3 and DynamoDB, one endpoint ENI per AZ:
        image pulls (ECR api + dkr; layers come from S3 through the gateway endpoint), logs
        (the awslogs driver, EMF metrics), secrets (task start, the Kafka-speaking
        functions), CloudWatch GetMetricData and ECS (autoscaler)."""
        sg = ec2.SecurityGroup(
            self,
            "EndpointSecurityGroup",
            vpc=vpc,
            allow_all_outbound=False,
            description=f"{self.tenant.resource_prefix} interface endpoints: HTTPS from the VPC",
        )
        sg.add_ingress_rule(
            ec2.Peer.ipv4(vpc.vpc_cidr_block), ec2.Port.tcp(443), "HTTPS from the VPC"
        )
        acknowledge(
            sg,
            "AwsSolutions-EC23",
            "Ingress only from the VPC's own CIDR (a token cdk-nag cannot read), port 443.",
        )
        for name, service in INTERFACE_ENDPOINTS.items():
            vpc.add_interface_endpoint(
                name,
                service=service,
                private_dns_enabled=True,
                security_groups=[sg],
                subnets=ec2.SubnetSelection(subnet_type=ec2.SubnetType.PRIVATE_ISOLATED),
            )

    def broker_environment(self, storage: StorageStack) -> dict[str, str]:
        """Plain (non-secret) settings of the broker container, read by BrokerConfig."""
        t = self.tenant
        protocol = t.listener_protocol
        env = {
            "BROKER_STORAGE": storage.storage_uri,
            "BROKER_METADATA": f"dynamodb://{storage.table.table_name}",
            "BROKER_WAL": "object",  # no local state on Fargate
            "BROKER_NODE_ID": "auto",
            "BROKER_HOST": "0.0.0.0",
            "BROKER_PORT": str(t.broker_port),
            "BROKER_ADVERTISED_HOST": "ecs",
            "BROKER_LISTENERS": ",".join(
                [f"{protocol}://0.0.0.0:{t.broker_port}"]
                + [f"{name}://0.0.0.0:{port}" for name, port, _ in self.zonal]
            ),
            "BROKER_ADVERTISED_LISTENERS": ",".join(
                [f"{protocol}://ecs:{t.broker_port}"]
                + [f"{name}://ecs:{port}" for name, port, _ in self.zonal]
            ),
            "BROKER_SUPER_USERS": "User:admin",
            "BROKER_AUTHORIZER": t.authorizer,
            "BROKER_METRICS_NAMESPACE": t.metrics_namespace,
            "BROKER_METRICS_PORT": str(t.metrics_port),
            "BROKER_LOG_LEVEL": "INFO",
            "BROKER_AUTO_BALANCE": "false",  # the balancer Lambda moves partitions here
            "BROKER_PROCESSES": str(t.processes),  # one broker per vCPU (runtime/processes.py)
            # the broker's own stop budget ends before ECS's SIGKILL: it exits by itself
            "BROKER_STOP_TIMEOUT_MS": str((STOP_TIMEOUT_S - STOP_MARGIN_S) * 1000),
            **{k: str(v) for k, v in cache_sizes(t.broker_memory_mib, t.processes).items()},
        }
        if self.zonal:  # zonal listeners: the main one's protocol, the rack of their AZ
            env["BROKER_LISTENER_SECURITY_PROTOCOL_MAP"] = ",".join(
                f"{name}:{protocol}" for name, _, _ in self.zonal
            )
            env["BROKER_LISTENER_RACKS"] = ",".join(f"{name}:{az}" for name, _, az in self.zonal)
        if storage.express_wal_bucket_name:
            # Directory bucket for the WAL; read by the broker once it splits WAL storage.
            env["BROKER_WAL_STORAGE"] = f"s3://{storage.express_wal_bucket_name}/wal"
        return env

    def _broker_secrets(self) -> dict[str, ecs.Secret]:
        secrets = {
            "BROKER_ADMIN_USER": ecs.Secret.from_secrets_manager(self.admin_secret, "username"),
            "BROKER_ADMIN_PASSWORD": ecs.Secret.from_secrets_manager(self.admin_secret, "password"),
        }
        if self.tenant.tls_secret_arn:
            tls = secretsmanager.Secret.from_secret_complete_arn(
                self, "TlsSecret", self.tenant.tls_secret_arn
            )
            secrets["BROKER_TLS_CERT_PEM"] = ecs.Secret.from_secrets_manager(tls, "cert_pem")
            secrets["BROKER_TLS_KEY_PEM"] = ecs.Secret.from_secrets_manager(tls, "key_pem")
        return secrets

    def _grant_storage(self, storage: StorageStack) -> None:
        bucket, prefix = storage.bucket, self.tenant.storage_prefix
        self.task_role.add_to_policy(
            iam.PolicyStatement(
                sid="ObjectsUnderItsPrefix",
                actions=[
                    "s3:GetObject",
                    "s3:PutObject",
                    "s3:DeleteObject",
                    "s3:AbortMultipartUpload",
                ],
                resources=[storage.objects_arn],
            )
        )
        self.task_role.add_to_policy(
            iam.PolicyStatement(
                sid="ListItsPrefix",
                actions=["s3:ListBucket"],
                resources=[bucket.bucket_arn],
                conditions={"StringLike": {"s3:prefix": [f"{prefix}/*", prefix]}},
            )
        )
        self.task_role.add_to_policy(
            iam.PolicyStatement(
                sid="ItsMetadataTable",
                actions=[
                    "dynamodb:GetItem",
                    "dynamodb:PutItem",
                    "dynamodb:UpdateItem",
                    "dynamodb:DeleteItem",
                    "dynamodb:ConditionCheckItem",
                    "dynamodb:BatchWriteItem",
                    "dynamodb:BatchGetItem",  # compaction's GC on the broker's timer
                    "dynamodb:Query",
                ],
                resources=[storage.table.table_arn],
            )
        )
        if storage.express_wal_bucket_name:
            self.task_role.add_to_policy(
                iam.PolicyStatement(
                    sid="ExpressWalSession",
                    actions=["s3express:CreateSession"],
                    resources=[
                        cdk.Stack.of(storage).format_arn(
                            service="s3express",
                            resource="bucket",
                            resource_name=storage.express_wal_bucket_name,
                        )
                    ],
                )
            )

    def _nag_suppressions(self) -> None:
        acknowledge_wildcards(
            self.task_role,
            {
                self.storage.objects_finding: "Object keys are created at run time: the "
                "wildcard is limited to this tenant's bucket and key prefix."
            },
        )
        acknowledge(
            self.task_definition,
            "AwsSolutions-ECS2",
            "Only non-secret settings are plain environment variables; "
            "the admin password and TLS key come from Secrets Manager.",
        )
        acknowledge_wildcards(
            self.task_definition,
            {
                "Resource::*": "ecr:GetAuthorizationToken has no resource-level permissions "
                "(AWS requires '*'); CDK adds it to the execution role to pull the image."
            },
        )
        for sg in (self.nlb_security_group, self.broker_security_group):
            acknowledge(
                sg,
                "AwsSolutions-EC23",
                "Ingress only from the VPC's own CIDR (a token cdk-nag cannot read) and the "
                "tenant's listed client CIDRs, never 0.0.0.0/0 unless listed explicitly.",
            )
        acknowledge(
            self.nlb,
            "AwsSolutions-ELB2",
            "NLB access logs only record TLS listeners; this listener is "
            "TCP pass-through (TLS, if any, ends at the broker). VPC flow logs "
            "record rejected connections.",
        )
