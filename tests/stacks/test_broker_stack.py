"""BrokerStack: VPC, cluster, Fargate service, task definition, NLB, security groups, IAM."""

from __future__ import annotations

import json
from typing import Any

from aws_cdk.assertions import Match

from tests.stacks.conftest import Synth, only, resources


def container(synth: Synth, stack: str) -> dict[str, Any]:
    task = only(synth.raw(stack), "AWS::ECS::TaskDefinition")
    (c,) = task["ContainerDefinitions"]
    return dict(c)


def env_of(c: dict[str, Any]) -> dict[str, Any]:
    return {e["Name"]: e["Value"] for e in c["Environment"]}


def test_cluster_has_container_insights(synth: Synth) -> None:
    synth.template("Kafka-acme-Brokers").has_resource_properties(
        "AWS::ECS::Cluster",
        {
            "ClusterName": "kafka-acme",
            "ClusterSettings": [{"Name": "containerInsights", "Value": "enabled"}],
        },
    )


def test_task_size_defaults_and_per_tenant_knobs(synth: Synth) -> None:
    acme = only(synth.raw("Kafka-acme-Brokers"), "AWS::ECS::TaskDefinition")
    globex = only(synth.raw("Kafka-globex-Brokers"), "AWS::ECS::TaskDefinition")
    assert (acme["Cpu"], acme["Memory"]) == ("2048", "8192")
    assert (globex["Cpu"], globex["Memory"]) == ("4096", "16384")
    assert acme["NetworkMode"] == "awsvpc" and acme["RequiresCompatibilities"] == ["FARGATE"]
    service = only(synth.raw("Kafka-acme-Brokers"), "AWS::ECS::Service")
    assert service["LaunchType"] == "FARGATE"
    assert service["DeploymentConfiguration"]["MinimumHealthyPercent"] == 100
    assert service["DeploymentConfiguration"]["DeploymentCircuitBreaker"]["Rollback"] is True
    assert service["NetworkConfiguration"]["AwsvpcConfiguration"]["AssignPublicIp"] == "DISABLED"


def test_desired_count_is_left_to_the_autoscaler(synth: Synth) -> None:
    """A DesiredCount in the template would be set again by every deploy that updates the
    service (a new image, a new environment), undoing the autoscaler. Without it, ECS creates
    the service with one task and keeps the current count on updates; the autoscaler raises
    it to min_brokers on its first run (tests/functions: below the minimum -> scale out)."""
    for tenant in ("acme", "globex"):
        service = only(synth.raw(f"Kafka-{tenant}-Brokers"), "AWS::ECS::Service")
        assert "DesiredCount" not in service
        env = {
            r["Properties"]["FunctionName"]: r["Properties"]["Environment"]["Variables"]
            for r in resources(synth.raw(f"Kafka-{tenant}-Control"),
                               "AWS::Lambda::Function").values()
        }[f"kafka-{tenant}-autoscaler"]  # fmt: skip
        assert int(env["MIN_BROKERS"]) >= 1


def test_broker_container_configuration(synth: Synth) -> None:
    c = container(synth, "Kafka-acme-Brokers")
    env = env_of(c)
    assert env["BROKER_WAL"] == "object"
    assert env["BROKER_NODE_ID"] == "auto"
    assert env["BROKER_ADVERTISED_HOST"] == "ecs"
    assert env["BROKER_HOST"] == "0.0.0.0" and env["BROKER_PORT"] == "9092"
    assert env["BROKER_METRICS_NAMESPACE"] == "Kafka/acme"
    assert env["BROKER_METRICS_PORT"] == "9464"
    # the client listener, then a zonal listener per AZ of the VPC (an environment-agnostic
    # synth has two AZs; a deploy with an account and region has the VPC's three)
    assert env["BROKER_LISTENERS"] == (
        "SASL_PLAINTEXT://0.0.0.0:9092,AZ1://0.0.0.0:9093,AZ2://0.0.0.0:9094"
    )
    assert env["BROKER_ADVERTISED_LISTENERS"] == (
        "SASL_PLAINTEXT://ecs:9092,AZ1://ecs:9093,AZ2://ecs:9094"
    )
    assert env["BROKER_LISTENER_SECURITY_PROTOCOL_MAP"] == "AZ1:SASL_PLAINTEXT,AZ2:SASL_PLAINTEXT"
    racks = env["BROKER_LISTENER_RACKS"]["Fn::Join"][1]
    assert racks[0] == "AZ1:" and racks[2] == ",AZ2:"
    assert racks[1] == {"Fn::Select": [0, {"Fn::GetAZs": ""}]}
    assert env["BROKER_SUPER_USERS"] == "User:admin"
    storage = env["BROKER_STORAGE"]["Fn::Join"][1]
    assert storage[0] == "s3://" and storage[-1] == "/data"
    assert env["BROKER_METADATA"]["Fn::Join"][1][0] == "dynamodb://"
    # Nothing sensitive in plain environment variables.
    assert not any("PASSWORD" in k or "KEY" in k for k in env)
    secrets = {s["Name"] for s in c["Secrets"]}
    assert secrets == {"BROKER_ADMIN_USER", "BROKER_ADMIN_PASSWORD"}
    assert env["BROKER_PROCESSES"] == "2"  # a broker process per vCPU
    # the broker's stop budget ends before ECS SIGKILLs the container
    assert 0 < int(env["BROKER_STOP_TIMEOUT_MS"]) < c["StopTimeout"] * 1000
    # process i: 9092 + 3i (main), + 1 and + 2 (the zonal listeners of the 2 AZs); 9464 + i
    assert [p["ContainerPort"] for p in c["PortMappings"]] == [*range(9092, 9098), 9464, 9465]
    assert c["HealthCheck"]["Command"][:3] == ["CMD", "python", "-c"]
    assert c["LogConfiguration"]["LogDriver"] == "awslogs"


def test_tls_tenant_gets_sasl_ssl_and_pem_secrets(synth: Synth) -> None:
    c = container(synth, "Kafka-globex-Brokers")
    env = env_of(c)
    assert env["BROKER_LISTENERS"].startswith("SASL_SSL://0.0.0.0:9092,AZ1://0.0.0.0:9093")
    assert env["BROKER_ADVERTISED_LISTENERS"].startswith("SASL_SSL://ecs:9092,AZ1://ecs:9093")
    assert env["BROKER_LISTENER_SECURITY_PROTOCOL_MAP"].startswith("AZ1:SASL_SSL")
    wal = env["BROKER_WAL_STORAGE"]["Fn::Join"][1]
    assert wal[0] == "s3://" and "ExpressWal" in str(wal[1]) and wal[-1] == "/wal"
    secrets = {s["Name"]: s["ValueFrom"] for s in c["Secrets"]}
    arn = "arn:aws:secretsmanager:us-east-1:123456789012:secret:globex-tls-AbCdEf"
    assert secrets["BROKER_TLS_CERT_PEM"] == f"{arn}:cert_pem::"
    assert secrets["BROKER_TLS_KEY_PEM"] == f"{arn}:key_pem::"


def test_admin_secret_is_generated(synth: Synth) -> None:
    synth.template("Kafka-acme-Brokers").has_resource_properties(
        "AWS::SecretsManager::Secret",
        {
            "GenerateSecretString": Match.object_like(
                {"GenerateStringKey": "password", "SecretStringTemplate": '{"username": "admin"}'}
            ),
        },
    )
    # No fixed name: a destroyed stack's secret is only scheduled for deletion (7-30 days),
    # and a fixed name would make the tenant's next deploy fail.
    secret = only(synth.raw("Kafka-acme-Brokers"), "AWS::SecretsManager::Secret")
    assert "Name" not in secret


def test_nlb_bootstraps_on_every_broker_port_with_tcp_health_checks(synth: Synth) -> None:
    """A task of 2 vCPU runs 2 broker processes (9092, 9093): each port is an NLB listener
    whose target group the service registers its tasks in, health-checked on that port."""
    t = synth.template("Kafka-acme-Brokers")
    t.has_resource_properties(
        "AWS::ElasticLoadBalancingV2::LoadBalancer",
        {"Type": "network", "Scheme": "internal", "Name": "kafka-acme"},
    )
    for port in (9092, 9095):  # each process's main port (9093-9094: its zonal ones)
        t.has_resource_properties(
            "AWS::ElasticLoadBalancingV2::Listener", {"Port": port, "Protocol": "TCP"}
        )
        t.has_resource_properties(
            "AWS::ElasticLoadBalancingV2::TargetGroup",
            {
                "Port": port,
                "Protocol": "TCP",
                "TargetType": "ip",
                "HealthCheckProtocol": "TCP",
                "HealthCheckPort": str(port),
            },
        )
    service = only(synth.raw("Kafka-acme-Brokers"), "AWS::ECS::Service")
    assert sorted(lb["ContainerPort"] for lb in service["LoadBalancers"]) == [
        *range(9092, 9098)]  # fmt: skip
    globex = only(synth.raw("Kafka-globex-Brokers"), "AWS::ECS::Service")
    mains = [lb["ContainerPort"] for lb in globex["LoadBalancers"]]
    assert len(mains) % 4 == 0 and len(mains) >= 4  # (4 vCPU: 4 processes, each its ports)
    outputs = synth.raw("Kafka-acme-Brokers")["Outputs"]
    joined = "".join(str(x) for x in outputs["BootstrapAddress"]["Value"]["Fn::Join"][1])
    assert joined.endswith(":9095") and ":9092," in joined


def test_a_zonal_bootstrap_per_az(synth: Synth) -> None:
    """Each AZ's clients bootstrap at <AZ>.<NLB DNS name>:<that AZ's port>; the NLB forwards
    each zonal port to the brokers' listener of that AZ (docs/ZONES.md)."""
    tpl = synth.raw("Kafka-acme-Brokers")
    listeners = sorted(
        r["Properties"]["Port"]
        for r in resources(tpl, "AWS::ElasticLoadBalancingV2::Listener").values()
    )
    assert listeners == [*range(9092, 9098)]  # 2 processes x (main + 2 AZs)
    groups = sorted(
        (r["Properties"]["Port"], r["Properties"]["HealthCheckPort"])
        for r in resources(tpl, "AWS::ElasticLoadBalancingV2::TargetGroup").values()
    )
    assert groups == [(p, str(p)) for p in range(9092, 9098)]
    for i, port in ((1, 9093), (2, 9094)):  # the AZ's port on each of the 2 processes
        parts = tpl["Outputs"][f"ZonalBootstrap{i}"]["Value"]["Fn::Join"][1]
        assert parts[0] == {"Fn::Select": [i - 1, {"Fn::GetAZs": ""}]}
        assert parts[1] == "." and "DNSName" in json.dumps(parts[2])
        text = "".join(x for x in parts if isinstance(x, str))
        assert f":{port}," in text and text.endswith(f":{port + 3}")


def test_security_groups_open_only_the_client_and_metrics_ports(synth: Synth) -> None:
    tpl = synth.raw("Kafka-acme-Brokers")
    ingress: list[dict[str, Any]] = []
    for sg in resources(tpl, "AWS::EC2::SecurityGroup").values():
        ingress += sg["Properties"].get("SecurityGroupIngress", [])
    ingress += [r["Properties"] for r in resources(tpl, "AWS::EC2::SecurityGroupIngress").values()]
    assert ingress
    for rule in ingress:
        assert rule.get("CidrIp") != "0.0.0.0/0"
        if rule.get("Description") == "HTTPS from the VPC":  # the interface endpoints' group
            assert (rule["FromPort"], rule["ToPort"]) == (443, 443) and "CidrIp" in rule
            continue
        # processes 0 and 1, each its main port and the zonal ports of 2 AZs; /metrics 9464 + i
        assert (rule["FromPort"], rule["ToPort"]) in ((9092, 9097), (9464, 9465)), rule
        # CIDR rules come from the VPC's own CIDR; the rest from the NLB's security group.
        assert "SourceSecurityGroupId" in rule or "Fn::GetAtt" in rule["CidrIp"]
    metrics = [r for r in ingress if r["FromPort"] == 9464]
    assert metrics and all("CidrIp" in r for r in metrics)


def test_task_role_is_limited_to_its_prefix_and_table(synth: Synth) -> None:
    tpl = synth.raw("Kafka-acme-Brokers")
    policies = [
        p["Properties"]
        for p in resources(tpl, "AWS::IAM::Policy").values()
        if "BrokerTaskRole" in p["Properties"]["Roles"][0]["Ref"]
    ]
    (policy,) = policies
    by_sid = {s["Sid"]: s for s in policy["PolicyDocument"]["Statement"]}
    assert set(by_sid) == {"ObjectsUnderItsPrefix", "ListItsPrefix", "ItsMetadataTable"}
    objects = by_sid["ObjectsUnderItsPrefix"]
    assert sorted(objects["Action"]) == sorted(
        ["s3:GetObject", "s3:PutObject", "s3:DeleteObject", "s3:AbortMultipartUpload"]
    )
    arn = objects["Resource"]["Fn::Join"][1]
    assert arn[0] == "arn:" and arn[2] == ":s3:::kafka-acme-data-" and arn[-1] == "/data/*"
    assert by_sid["ListItsPrefix"]["Condition"] == {"StringLike": {"s3:prefix": ["data/*", "data"]}}
    table = by_sid["ItsMetadataTable"]
    assert "Fn::ImportValue" in table["Resource"]  # the tenant's table from its storage stack
    assert not any(a.endswith("*") for a in table["Action"])
    assert "cloudwatch:PutMetricData" not in str(policy)  # metrics go out as EMF log lines


def test_logs_have_retention(synth: Synth) -> None:
    synth.template("Kafka-acme-Brokers").has_resource_properties(
        "AWS::Logs::LogGroup", {"LogGroupName": "/kafka/acme/brokers", "RetentionInDays": 30}
    )


def endpoint_services(tpl: dict[str, Any]) -> dict[str, str]:
    """Service name (its last part: s3, ecr.api, ...) -> endpoint type."""
    out = {}
    for e in resources(tpl, "AWS::EC2::VPCEndpoint").values():
        name = json.dumps(e["Properties"]["ServiceName"])
        short = next(s for s in ("ecr.api", "ecr.dkr", "logs", "secretsmanager", "monitoring",
                                 "ecs", "s3", "dynamodb") if f".{s}" in name)  # fmt: skip
        out[short] = e["Properties"].get("VpcEndpointType", "Gateway")
    return out


def test_control_path_survives_an_az_by_default_interface_endpoints(synth: Synth) -> None:
    """Default (acme): no NAT gateway at all; ECR, Logs, Secrets Manager, CloudWatch and ECS
    through interface endpoints in every AZ, S3 and DynamoDB through gateway endpoints;
    brokers in isolated subnets (no route to the internet)."""
    tpl = synth.raw("Kafka-acme-Brokers")
    assert not resources(tpl, "AWS::EC2::NatGateway")
    assert endpoint_services(tpl) == {
        "s3": "Gateway", "dynamodb": "Gateway", "ecr.api": "Interface",
        "ecr.dkr": "Interface", "logs": "Interface", "secretsmanager": "Interface",
        "monitoring": "Interface", "ecs": "Interface",
    }  # fmt: skip
    # one per AZ (an environment-agnostic synth has 2 AZs; max_azs=3 gives 3 on AWS)
    azs = len(resources(tpl, "AWS::EC2::Subnet"))
    assert azs >= 2
    for e in resources(tpl, "AWS::EC2::VPCEndpoint").values():
        if e["Properties"].get("VpcEndpointType") == "Interface":
            assert e["Properties"]["PrivateDnsEnabled"] is True
            assert len(e["Properties"]["SubnetIds"]) == azs
    routes = resources(tpl, "AWS::EC2::Route")
    assert not any(r["Properties"].get("DestinationCidrBlock") == "0.0.0.0/0"
                   for r in routes.values())  # fmt: skip
    assert resources(tpl, "AWS::EC2::FlowLog")


def test_control_path_nat_per_az_knob(synth: Synth) -> None:
    """control_path = "nat_per_az" (globex): one NAT gateway in each AZ, each private subnet
    routed through the NAT of its own AZ, and only the gateway endpoints."""
    tpl = synth.raw("Kafka-globex-Brokers")
    azs = len(resources(tpl, "AWS::EC2::Subnet")) // 2  # a public and a private one per AZ
    assert azs >= 2
    assert len(resources(tpl, "AWS::EC2::NatGateway")) == azs
    assert endpoint_services(tpl) == {"s3": "Gateway", "dynamodb": "Gateway"}
    nat_routes = [r["Properties"] for r in resources(tpl, "AWS::EC2::Route").values()
                  if "NatGatewayId" in r["Properties"]]  # fmt: skip
    assert len({json.dumps(r["NatGatewayId"]) for r in nat_routes}) == azs


def test_image_is_built_from_the_repo_dockerfile(synth: Synth) -> None:
    manifest = (synth.outdir / "Kafka-acme-Brokers.assets.json").read_text()
    import json

    images = json.loads(manifest)["dockerImages"]
    (image,) = images.values()
    assert image["source"]["dockerFile"] == "Dockerfile"
    staged = synth.outdir / image["source"]["directory"]
    assert sorted(p.name for p in staged.iterdir()) == [
        ".dockerignore",
        "Dockerfile",
        "broker_service",
        "pyproject.toml",
    ]


def test_caches_are_sized_from_the_task_memory(synth: Synth) -> None:
    """A task pays for its memory: the log cache takes 40 % and the block cache 20 % of it
    (the broker's own defaults, 256 + 128 MiB, would leave 8 GB mostly unused)."""
    mib = 1 << 20
    acme = env_of(container(synth, "Kafka-acme-Brokers"))
    # each of the task's broker processes (one per vCPU) gets its share
    assert int(acme["BROKER_LOG_CACHE_BYTES"]) == int(8192 * 0.4 / 2) * mib
    assert int(acme["BROKER_BLOCK_CACHE_BYTES"]) == int(8192 * 0.2 / 2) * mib
    globex = env_of(container(synth, "Kafka-globex-Brokers"))
    assert int(globex["BROKER_LOG_CACHE_BYTES"]) == int(16384 * 0.4 / 4) * mib
    from broker_service.config import BrokerConfig

    cfg = BrokerConfig(log_cache_bytes=acme["BROKER_LOG_CACHE_BYTES"],
                       block_cache_bytes=acme["BROKER_BLOCK_CACHE_BYTES"])  # fmt: skip
    processes = int(acme["BROKER_PROCESSES"])
    assert processes * (cfg.log_cache_bytes + cfg.block_cache_bytes) < 8192 * mib * 0.7


def test_sasl_listener_enforces_acls_by_default(synth: Synth) -> None:
    """A SASL listener with authorizer "none" would let every authenticated user do
    everything: the default is Kafka's ACL authorizer with only User:admin as super user
    (a tenant opts out with authorizer = "none", as globex does here)."""
    acme = env_of(container(synth, "Kafka-acme-Brokers"))
    assert acme["BROKER_AUTHORIZER"] == "acl" and acme["BROKER_SUPER_USERS"] == "User:admin"
    assert "BROKER_ALLOW_EVERYONE_IF_NO_ACL_FOUND" not in acme  # Kafka's default: false
    assert env_of(container(synth, "Kafka-globex-Brokers"))["BROKER_AUTHORIZER"] == "none"
