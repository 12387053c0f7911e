"""BrokerStack: VPC, cluster, Fargate service, task definition, NLB, security groups, IAM."""

from __future__ import annotations

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
    assert service["DesiredCount"] == 3 and service["LaunchType"] == "FARGATE"
    assert service["DeploymentConfiguration"]["MinimumHealthyPercent"] == 100
    assert service["DeploymentConfiguration"]["DeploymentCircuitBreaker"]["Rollback"] is True
    assert service["NetworkConfiguration"]["AwsvpcConfiguration"]["AssignPublicIp"] == "DISABLED"
    assert only(synth.raw("Kafka-globex-Brokers"), "AWS::ECS::Service")["DesiredCount"] == 4


def test_broker_container_configuration(synth: Synth) -> None:
    c = container(synth, "Kafka-acme-Brokers")
    env = env_of(c)
    assert env["BROKER_WAL"] == "object"
    assert env["BROKER_NODE_ID"] == "auto"
    assert env["BROKER_ADVERTISED_HOST"] == "ecs"
    assert env["BROKER_HOST"] == "0.0.0.0" and env["BROKER_PORT"] == "9092"
    assert env["BROKER_METRICS_NAMESPACE"] == "Kafka/acme"
    assert env["BROKER_METRICS_PORT"] == "9464"
    assert env["BROKER_LISTENERS"] == "SASL_PLAINTEXT://0.0.0.0:9092"
    assert env["BROKER_ADVERTISED_LISTENERS"] == "SASL_PLAINTEXT://ecs:9092"
    assert env["BROKER_SUPER_USERS"] == "User:admin"
    storage = env["BROKER_STORAGE"]["Fn::Join"][1]
    assert storage[0] == "s3://" and storage[-1] == "/data"
    assert env["BROKER_METADATA"]["Fn::Join"][1][0] == "dynamodb://"
    # Nothing sensitive in plain environment variables.
    assert not any("PASSWORD" in k or "KEY" in k for k in env)
    secrets = {s["Name"] for s in c["Secrets"]}
    assert secrets == {"BROKER_ADMIN_USER", "BROKER_ADMIN_PASSWORD"}
    assert [p["ContainerPort"] for p in c["PortMappings"]] == [9092, 9464]
    assert c["HealthCheck"]["Command"][:3] == ["CMD", "python", "-c"]
    assert c["LogConfiguration"]["LogDriver"] == "awslogs"


def test_tls_tenant_gets_sasl_ssl_and_pem_secrets(synth: Synth) -> None:
    c = container(synth, "Kafka-globex-Brokers")
    env = env_of(c)
    assert env["BROKER_LISTENERS"] == "SASL_SSL://0.0.0.0:9092"
    assert env["BROKER_ADVERTISED_LISTENERS"] == "SASL_SSL://ecs:9092"
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
            "Name": "kafka-acme/admin",
            "GenerateSecretString": Match.object_like(
                {"GenerateStringKey": "password", "SecretStringTemplate": '{"username": "admin"}'}
            ),
        },
    )


def test_nlb_bootstraps_on_9092_with_tcp_health_checks(synth: Synth) -> None:
    t = synth.template("Kafka-acme-Brokers")
    t.has_resource_properties(
        "AWS::ElasticLoadBalancingV2::LoadBalancer",
        {"Type": "network", "Scheme": "internal", "Name": "kafka-acme"},
    )
    t.has_resource_properties(
        "AWS::ElasticLoadBalancingV2::Listener", {"Port": 9092, "Protocol": "TCP"}
    )
    t.has_resource_properties(
        "AWS::ElasticLoadBalancingV2::TargetGroup",
        {
            "Port": 9092,
            "Protocol": "TCP",
            "TargetType": "ip",
            "HealthCheckProtocol": "TCP",
            "HealthCheckPort": "9092",
        },
    )
    outputs = synth.raw("Kafka-acme-Brokers")["Outputs"]
    joined = outputs["BootstrapAddress"]["Value"]["Fn::Join"][1]
    assert joined[-1] == ":9092"


def test_security_groups_open_only_the_client_and_metrics_ports(synth: Synth) -> None:
    tpl = synth.raw("Kafka-acme-Brokers")
    ingress: list[dict[str, Any]] = []
    for sg in resources(tpl, "AWS::EC2::SecurityGroup").values():
        ingress += sg["Properties"].get("SecurityGroupIngress", [])
    ingress += [r["Properties"] for r in resources(tpl, "AWS::EC2::SecurityGroupIngress").values()]
    assert ingress
    for rule in ingress:
        assert rule.get("CidrIp") != "0.0.0.0/0"
        assert (rule["FromPort"], rule["ToPort"]) in ((9092, 9092), (9464, 9464)), rule
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


def test_new_vpc_has_gateway_endpoints_and_flow_logs(synth: Synth) -> None:
    tpl = synth.raw("Kafka-acme-Brokers")
    endpoints = resources(tpl, "AWS::EC2::VPCEndpoint")
    services = sorted(str(e["Properties"]["ServiceName"]) for e in endpoints.values())
    assert len(services) == 2 and "dynamodb" in services[0] and "s3" in services[1]
    assert resources(tpl, "AWS::EC2::FlowLog")


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
