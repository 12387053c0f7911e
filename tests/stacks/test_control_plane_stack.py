"""ControlPlaneStack: functions, triggers, dead letters, alarms, dashboard, IAM."""

from __future__ import annotations

import json
import re
from typing import Any

import pytest

from broker_service.control.sizing import BrokerCapacity, produce_alarm_thresholds
from tests.stacks.conftest import Synth, only, resources

STACK = "Kafka-acme-Control"
CONTRACT_ENV = {
    "TENANT",
    "METADATA_TABLE",
    "STORAGE_URI",
    "METRICS_NAMESPACE",
    "ECS_CLUSTER",
    "ECS_SERVICE",
    "MIN_BROKERS",
    "MAX_BROKERS",
    "PRODUCE_MBPS_PER_BROKER",
    "CONSUME_MBPS_PER_BROKER",
    "POWERTOOLS_SERVICE_NAME",
}
# The balancer and the autoscaler talk Kafka to the brokers (control/kafka_access.py).
KAFKA_ENV = {"KAFKA_SECURITY_PROTOCOL", "KAFKA_SASL_MECHANISM", "ADMIN_SECRET_ARN"}
KAFKA_CLIENTS = ("autoscaler", "balancer")


def functions(tpl: dict[str, Any]) -> dict[str, tuple[str, dict[str, Any]]]:
    """function short name -> (logical id, properties)."""
    out = {}
    for lid, r in resources(tpl, "AWS::Lambda::Function").items():
        name = r["Properties"]["FunctionName"].removeprefix("kafka-acme-")
        out[name] = (lid, r["Properties"])
    return out


def rules_targeting(tpl: dict[str, Any], function_lid: str) -> list[dict[str, Any]]:
    return [
        r["Properties"]
        for r in resources(tpl, "AWS::Events::Rule").values()
        if any(
            t["Arn"] == {"Fn::GetAtt": [function_lid, "Arn"]} for t in r["Properties"]["Targets"]
        )
    ]


def test_four_functions_with_the_contract_environment(synth: Synth) -> None:
    tpl = synth.raw(STACK)
    fns = functions(tpl)
    assert set(fns) == {"compaction", "autoscaler", "balancer", "recovery"}
    for name, (_, props) in fns.items():
        assert props["Runtime"] == "python3.14"
        assert props["Handler"] == f"functions.{name}.handler.handler"
        assert len(props["Layers"]) == 1
        env = props["Environment"]["Variables"]
        own = {"COMPACTION_READ_BUFFER_BYTES", "COMPACTION_TIME_BUDGET_S",
               "COMPACTION_MAX_BYTES_PER_RUN", "COMPACTION_SHARDS"}  # fmt: skip
        own = own if name == "compaction" else set()
        assert set(env) == CONTRACT_ENV | own | (KAFKA_ENV if name in KAFKA_CLIENTS else set())
        # compaction: one vCPU and a read buffer of all but 512 MiB of it (each WAL object
        # read once per run: control/compaction_reads.py), runs of up to 15 minutes that stop
        # a minute early, with the bytes one vCPU merges in that time (one compactor works
        # nearly all the time); the others the tenant's 512 MB and 120 s
        if name == "compaction":
            assert (props["MemorySize"], props["Timeout"]) == (1769, 900)
            assert env["COMPACTION_READ_BUFFER_BYTES"] == str((1769 - 512) << 20)
            assert env["COMPACTION_TIME_BUDGET_S"] == "840"
            assert env["COMPACTION_MAX_BYTES_PER_RUN"] == str(840 * 193_000_000)  # 193.0 MB/s
        else:
            assert (props["MemorySize"], props["Timeout"]) == (512, 120)
        assert env["TENANT"] == "acme" and env["METRICS_NAMESPACE"] == "Kafka/acme"
        assert env["POWERTOOLS_SERVICE_NAME"] == name
        assert (env["MIN_BROKERS"], env["MAX_BROKERS"]) == ("3", "12")
        # control/sizing.py's figures for a 2-vCPU task
        assert (env["PRODUCE_MBPS_PER_BROKER"], env["CONSUME_MBPS_PER_BROKER"]) == (
            "204.6", "183.6"
        )
        assert env["STORAGE_URI"]["Fn::Join"][1][-1] == "/data"
        assert "DeadLetterConfig" in props
    globex = {
        r["Properties"]["FunctionName"]: r["Properties"]["Environment"]["Variables"]
        for r in resources(synth.raw("Kafka-globex-Control"), "AWS::Lambda::Function").values()
    }
    assert globex["kafka-globex-autoscaler"]["MAX_BROKERS"] == "20"
    assert globex["kafka-globex-autoscaler"]["PRODUCE_MBPS_PER_BROKER"] == "409.2"  # 4 vCPU


def test_async_invocations_retry_then_dead_letter(synth: Synth) -> None:
    tpl = synth.raw(STACK)
    queue_lid, queue = next(iter(resources(tpl, "AWS::SQS::Queue").items()))
    assert queue["Properties"]["SqsManagedSseEnabled"] is True
    configs = resources(tpl, "AWS::Lambda::EventInvokeConfig")
    assert len(configs) == 4
    for c in configs.values():
        assert c["Properties"]["MaximumRetryAttempts"] == 2
        assert c["Properties"]["MaximumEventAgeInSeconds"] == 3600
    for _, props in functions(tpl).values():
        assert props["DeadLetterConfig"]["TargetArn"] == {"Fn::GetAtt": [queue_lid, "Arn"]}


def test_triggers(synth: Synth) -> None:
    tpl = synth.raw(STACK)
    fns = functions(tpl)
    schedules = {
        name: sorted(
            r["ScheduleExpression"] for r in rules_targeting(tpl, lid) if "ScheduleExpression" in r
        )
        for name, (lid, _) in fns.items()
    }
    assert schedules == {
        "compaction": ["rate(5 minutes)"],
        "autoscaler": ["rate(1 minute)"],
        "balancer": ["rate(5 minutes)"],
        "recovery": ["rate(1 minute)"],
    }
    patterns = {
        name: [r["EventPattern"] for r in rules_targeting(tpl, lid) if "EventPattern" in r]
        for name, (lid, _) in fns.items()
    }
    assert patterns["compaction"] == []
    (alarm_pattern,) = patterns["autoscaler"]
    assert alarm_pattern["source"] == ["aws.cloudwatch"]
    assert alarm_pattern["detail-type"] == ["CloudWatch Alarm State Change"]
    alarm_lids = {
        lid
        for lid, a in resources(tpl, "AWS::CloudWatch::Alarm").items()
        if a["Properties"]["AlarmName"].startswith("kafka-acme-throughput-")
    }
    assert {r["Fn::GetAtt"][0] for r in alarm_pattern["resources"]} == alarm_lids
    assert len(alarm_lids) == 2
    for name, status in (("balancer", "RUNNING"), ("recovery", "STOPPED")):
        (p,) = patterns[name]
        assert p["source"] == ["aws.ecs"] and p["detail-type"] == ["ECS Task State Change"]
        assert p["detail"]["lastStatus"] == [status]
        (cluster,) = p["detail"]["clusterArn"]
        assert "Kafka-acme-Brokers" in json.dumps(cluster)  # this tenant's cluster only
        assert p["detail"]["group"][0]["Fn::Join"][1][0] == "service:"


def test_every_rule_target_retries_and_dead_letters(synth: Synth) -> None:
    tpl = synth.raw(STACK)
    queue_lid = next(iter(resources(tpl, "AWS::SQS::Queue")))
    rules = resources(tpl, "AWS::Events::Rule")
    assert len(rules) == 7  # 4 schedules + alarm changes + task RUNNING + task STOPPED
    for r in rules.values():
        (target,) = r["Properties"]["Targets"]
        assert target["DeadLetterConfig"]["Arn"] == {"Fn::GetAtt": [queue_lid, "Arn"]}
        assert target["RetryPolicy"] == {
            "MaximumRetryAttempts": 2,
            "MaximumEventAgeInSeconds": 3600,
        }
    permissions = resources(tpl, "AWS::Lambda::Permission")
    assert len(permissions) == 7
    assert all(p["Properties"]["Principal"] == "events.amazonaws.com" for p in permissions.values())


def policy_of(tpl: dict[str, Any], role_prefix: str) -> dict[str, dict[str, Any]]:
    (policy,) = [
        p["Properties"]["PolicyDocument"]
        for p in resources(tpl, "AWS::IAM::Policy").values()
        if p["Properties"]["Roles"][0]["Ref"].startswith(role_prefix)
    ]
    return {s.get("Sid", ""): s for s in policy["Statement"]}


def test_least_privilege_per_function(synth: Synth) -> None:
    tpl = synth.raw(STACK)
    autoscaler = policy_of(tpl, "AutoscalerRole")
    scale = autoscaler["ScaleItsService"]
    assert sorted(scale["Action"]) == ["ecs:DescribeServices", "ecs:ListTagsForResource",
                                       "ecs:TagResource", "ecs:UpdateService"]  # fmt: skip
    assert "Fn::ImportValue" in scale["Resource"]  # this tenant's service ARN, nothing else
    assert autoscaler["ReadBrokerMetrics"]["Action"] == "cloudwatch:GetMetricData"
    protect = autoscaler["ProtectItsStayingTasks"]
    assert protect["Action"] == "ecs:UpdateTaskProtection"
    assert protect["Resource"]["Fn::Join"][1][-1] == ":task/kafka-acme/*"  # its tasks only
    assert autoscaler["ListItsTasks"]["Condition"]["ArnEquals"]["ecs:cluster"]
    assert "ecs:StopTask" not in json.dumps(autoscaler)
    assert "ObjectsUnderItsPrefix" not in autoscaler
    compaction = policy_of(tpl, "CompactionRole")
    assert "ObjectsUnderItsPrefix" in compaction and "ScaleItsService" not in compaction
    assert "ReadBrokerMetrics" not in compaction
    recovery = policy_of(tpl, "RecoveryRole")
    # its log group, the dead-letter queue (no Sid: CDK's), its table; no S3, no ECS
    assert set(recovery) == {"OwnLogGroup", "", "ItsMetadataTable"}
    assert recovery[""]["Action"] == "sqs:SendMessage"
    balancer = policy_of(tpl, "BalancerRole")
    assert "ScaleItsService" not in balancer and "ObjectsUnderItsPrefix" not in balancer
    for role in ("CompactionRole", "AutoscalerRole", "BalancerRole", "RecoveryRole"):
        roles = [r for lid, r in resources(tpl, "AWS::IAM::Role").items() if lid.startswith(role)]
        assert "ManagedPolicyArns" not in roles[0]["Properties"]
        assert "dynamodb:Scan" not in json.dumps(policy_of(tpl, role))


def test_alarms_on_broker_metrics(synth: Synth) -> None:
    tpl = synth.raw(STACK)
    alarms = {
        a["Properties"]["AlarmName"]: a["Properties"]
        for a in resources(tpl, "AWS::CloudWatch::Alarm").values()
    }
    assert set(alarms) == {
        "kafka-acme-throughput-high",
        "kafka-acme-throughput-low",
        "kafka-acme-produce-latency-high",
        "kafka-acme-consumer-lag-high",
        "kafka-acme-brokers-below-min",
        "kafka-acme-control-dead-letters",
    }
    high = alarms["kafka-acme-throughput-high"]
    (query,) = high["Metrics"]
    assert query["Expression"] == 'SELECT SUM(BytesIn) FROM SCHEMA("Kafka/acme", BrokerId)'
    # control/sizing.py: 3 brokers of 2 vCPU carry 3 x 96.8 MB/s of produce read once; 80 %
    thresholds = produce_alarm_thresholds(BrokerCapacity.for_vcpu(2), 3, 1.0)
    assert high["Threshold"] == pytest.approx(thresholds.high_bytes_per_s * 60)
    assert high["Threshold"] == pytest.approx(0.8 * 3 / (1 / 204.6 + 1 / 183.6) * 1e6 * 60)
    low = alarms["kafka-acme-throughput-low"]
    assert low["Threshold"] == pytest.approx(thresholds.low_bytes_per_s * 60)
    # A group's lag on a topic is the SUM of the brokers' parts (each reports the partitions
    # it leads); the alarm takes the largest (group, topic) each minute, not the largest part:
    # the per-(group, topic) query, reduced to one series by metric math (MAX across series).
    lag = {m["Id"]: m for m in alarms["kafka-acme-consumer-lag-high"]["Metrics"]}
    (watched,) = [m for m in lag.values() if m.get("ReturnData", True)]
    assert watched["Expression"] == "MAX(lagbygroup)"
    query = lag["lagbygroup"]
    assert query["Expression"] == ('SELECT SUM(ConsumerLag) FROM SCHEMA("Kafka/acme", Group, '
                                   "Topic) GROUP BY Group, Topic ORDER BY SUM() DESC")  # fmt: skip
    assert query["ReturnData"] is False and query["Period"] == 60
    below = alarms["kafka-acme-brokers-below-min"]
    assert below["MetricName"] == "RunningTaskCount" and below["Threshold"] == 3


def test_every_alarm_watches_a_single_time_series(synth: Synth) -> None:
    """An alarm on a Metrics Insights query must watch one time series: CloudWatch's alarm
    documentation asks a query with GROUP BY to be wrapped in a metric math expression that
    returns a single series (a GROUP BY query watched directly is, at best, a multi-series
    alarm with per-contributor states, not "the largest one"). Every alarm's watched entry
    is a plain metric, a query without GROUP BY, or math over such queries."""
    tpl = synth.raw(STACK)
    for alarm in resources(tpl, "AWS::CloudWatch::Alarm").values():
        props = alarm["Properties"]
        if "Metrics" not in props:
            assert "MetricName" in props, props
            continue
        watched = [m for m in props["Metrics"] if m.get("ReturnData", True)]
        assert len(watched) == 1, props["AlarmName"]
        expression = watched[0].get("Expression", "")
        assert "GROUP BY" not in expression.upper(), (props["AlarmName"], expression)


def test_dashboard_shows_throughput_latency_brokers_lag_and_s3(synth: Synth) -> None:
    tpl = synth.raw(STACK)
    dash = only(tpl, "AWS::CloudWatch::Dashboard")
    body = json.dumps(dash["DashboardBody"])
    for metric in (
        "BytesIn",
        "BytesOut",
        "ProduceLatencyMs",
        "FetchLatencyMs",
        "RunningTaskCount",
        "ConsumerLag",
        "S3PutRequests",
        "S3GetRequests",
        "PutRequests",
        "GetRequests",
    ):
        assert metric in body, metric
    assert "Kafka/acme" in body and "Kafka/globex" not in body
    assert "DashboardUrl" in tpl["Outputs"]


def test_code_asset_holds_only_the_packages(synth: Synth) -> None:
    assets = json.loads((synth.outdir / f"{STACK}.assets.json").read_text())["files"]
    dirs = [
        synth.outdir / a["source"]["path"]
        for a in assets.values()
        if a["source"]["path"].startswith("asset.")
    ]
    names = sorted(sorted(p.name for p in d.iterdir()) for d in dirs)
    code = [n for n in names if "broker_service" in n]
    assert code, names
    assert set(code[0]) <= {"broker_service", "functions"}
    assert ["python"] in names  # the dependency layer


def test_kafka_speaking_functions_run_in_the_brokers_vpc(synth: Synth) -> None:
    tpl = synth.raw(STACK)
    fns = functions(tpl)
    (sg_lid,) = resources(tpl, "AWS::EC2::SecurityGroup")
    private_subnets = [
        {"Fn::ImportValue": f"Kafka-acme-Brokers:ExportsOutputRefVpcbrokersSubnet{i}Subnet{h}"}
        for i, h in ((1, "C65F53150EE2117D"), (2, "505D5F58AD5FFF60"))
    ]
    for name in KAFKA_CLIENTS:
        vpc = fns[name][1]["VpcConfig"]
        assert vpc["SecurityGroupIds"] == [{"Fn::GetAtt": [sg_lid, "GroupId"]}]
        # the brokers' private subnets (the "brokers" subnet group), never the public ones
        assert vpc["SubnetIds"] == private_subnets
    for name in ("compaction", "recovery"):  # AWS APIs only: outside the VPC
        assert "VpcConfig" not in fns[name][1]


def test_brokers_let_the_functions_in_on_the_client_port_only(synth: Synth) -> None:
    tpl = synth.raw(STACK)
    (sg_lid, sg) = next(iter(resources(tpl, "AWS::EC2::SecurityGroup").items()))
    this_group = {"Fn::GetAtt": [sg_lid, "GroupId"]}
    assert "SecurityGroupIngress" not in sg["Properties"]  # nothing reaches the functions
    assert sg["Properties"]["SecurityGroupEgress"] == [
        {"CidrIp": "0.0.0.0/0", "Description": "AWS APIs (HTTPS)", "FromPort": 443,
         "IpProtocol": "tcp", "ToPort": 443}
    ]  # fmt: skip
    ingress = [r["Properties"] for r in resources(tpl, "AWS::EC2::SecurityGroupIngress").values()]
    # the main client port of each of the task's broker processes (one per vCPU; process i
    # listens on 9092 + 3i, its zonal listeners next to it), no other: the only rules here
    assert sorted((r["IpProtocol"], r["FromPort"], r["ToPort"]) for r in ingress) == [
        ("tcp", 9092, 9092), ("tcp", 9095, 9095)]  # fmt: skip
    for rule in ingress:
        assert rule["SourceSecurityGroupId"] == this_group
        assert "BrokerSecurityGroup" in json.dumps(rule["GroupId"])
    egress = [r["Properties"] for r in resources(tpl, "AWS::EC2::SecurityGroupEgress").values()]
    assert sorted((e["FromPort"], e["ToPort"]) for e in egress) == [(9092, 9092), (9095, 9095)]
    for e in egress:
        assert e["GroupId"] == this_group
        assert e["DestinationSecurityGroupId"] == ingress[0]["GroupId"]


def test_kafka_listener_settings_and_the_one_admin_secret(synth: Synth) -> None:
    tpl = synth.raw(STACK)
    admin_secret = {
        "Fn::ImportValue": "Kafka-acme-Brokers:ExportsOutputRefAdminSecretB94527509D99E776"
    }
    for name in KAFKA_CLIENTS:
        env = functions(tpl)[name][1]["Environment"]["Variables"]
        assert env["KAFKA_SECURITY_PROTOCOL"] == "SASL_PLAINTEXT"  # as the brokers listen
        assert env["KAFKA_SASL_MECHANISM"] == "SCRAM-SHA-512"
        assert env["ADMIN_SECRET_ARN"] == admin_secret
        statements = policy_of(tpl, f"{name.title()}Role")
        read = statements["ReadBrokerAdminSecret"]
        assert read["Action"] == "secretsmanager:GetSecretValue"
        assert read["Resource"] == admin_secret  # exactly the admin secret
        eni = statements["VpcNetworkInterfaces"]
        assert eni["Resource"] == "*"
        assert "ec2:CreateNetworkInterface" in eni["Action"]
    for name in ("compaction", "recovery"):
        statements = policy_of(tpl, f"{name.title()}Role")
        assert "ReadBrokerAdminSecret" not in statements
        assert "VpcNetworkInterfaces" not in statements
        assert "secretsmanager" not in json.dumps(statements)
    # The admin secret is the one the broker task reads BROKER_ADMIN_PASSWORD from.
    brokers = synth.raw("Kafka-acme-Brokers")
    exported = brokers["Outputs"]["ExportsOutputRefAdminSecretB94527509D99E776"]["Value"]
    (task,) = resources(brokers, "AWS::ECS::TaskDefinition").values()
    secrets = task["Properties"]["ContainerDefinitions"][0]["Secrets"]
    password = next(s for s in secrets if s["Name"] == "BROKER_ADMIN_PASSWORD")
    assert json.dumps(exported) in json.dumps(password["ValueFrom"])


def test_tls_tenant_functions_speak_sasl_ssl_and_read_its_certificate(synth: Synth) -> None:
    tpl = synth.raw("Kafka-globex-Control")
    tls_arn = "arn:aws:secretsmanager:us-east-1:123456789012:secret:globex-tls-AbCdEf"
    checked = 0
    for lid, r in resources(tpl, "AWS::Lambda::Function").items():
        env = r["Properties"]["Environment"]["Variables"]
        if not lid.startswith(("Autoscaler", "Balancer")):
            assert "KAFKA_SECURITY_PROTOCOL" not in env
            continue
        assert env["KAFKA_SECURITY_PROTOCOL"] == "SASL_SSL"
        assert env["KAFKA_TLS_SECRET_ARN"] == tls_arn
        role = lid.removesuffix(lid[-8:]) + "Role"
        read = policy_of(tpl, role)["ReadBrokerAdminSecret"]
        admin, tls = read["Resource"]
        assert "Kafka-globex-Brokers:ExportsOutputRefAdminSecret" in admin["Fn::ImportValue"]
        assert tls == tls_arn
        checked += 1
    assert checked == 2


def test_balancer_rule_wants_tasks_meant_to_stay_running(synth: Synth) -> None:
    """A task RUNNING but already being stopped (desiredStatus STOPPED) must not trigger a
    balance onto it."""
    tpl = synth.raw(STACK)
    lid, _ = functions(tpl)["balancer"]
    patterns = [r["EventPattern"] for r in rules_targeting(tpl, lid) if "EventPattern" in r]
    (pattern,) = patterns
    assert pattern["detail"]["lastStatus"] == ["RUNNING"]
    assert pattern["detail"]["desiredStatus"] == ["RUNNING"]


def test_each_compactor_shard_is_a_schedule_target_of_its_own(synth: Synth) -> None:
    """compaction_shards = 7 (globex): shard 0 is the plain schedule; shards 1-6 are targets
    of two more rules (EventBridge takes five targets a rule), each sending the scheduled
    event with {"shard": k} as its detail; the function knows the count."""
    tpl = synth.raw("Kafka-globex-Control")
    (lid,) = [lid for lid, r in resources(tpl, "AWS::Lambda::Function").items()
              if r["Properties"]["FunctionName"] == "kafka-globex-compaction"]  # fmt: skip
    env = resources(tpl, "AWS::Lambda::Function")[lid]["Properties"]["Environment"]["Variables"]
    assert env["COMPACTION_SHARDS"] == "7"
    rules = rules_targeting(tpl, lid)
    assert sorted(len(r["Targets"]) for r in rules) == [1, 1, 5]
    assert all(r["ScheduleExpression"] == "rate(5 minutes)" for r in rules)
    shards = []
    for r in rules:
        for t in r["Targets"]:
            if "InputTransformer" not in t:
                shards.append(0)  # the scheduled event as it is: detail {}
                continue
            template = t["InputTransformer"]["InputTemplate"]
            # EventBridge puts each field's value, quoted, where its <name> is
            event = json.loads(re.sub(r"<[a-z-]+>", '"x"', template))
            assert event["detail-type"] == event["id"] == "x" and event["version"] == "0"
            shards.append(event["detail"]["shard"])
    assert sorted(shards) == list(range(7))
