"""The autoscaler Lambda end to end against moto server's ECS, CloudWatch and DynamoDB:
broker metrics in CloudWatch -> decision -> ECS UpdateService (and, on scale-in, every other
task protected from scale-in first, so ECS stops the drained broker's task). Only Lambda's
runtime is missing: the handler is called directly; ECS UpdateTaskProtection, which moto
does not implement, is answered by a botocore hook (conftest.aws_calls)."""

from __future__ import annotations

import json
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from broker_service.metadata.dynamodb import DynamoDbMetadataStore
from broker_service.metadata.records import ACTIVE, DRAINING

from .conftest import AwsCalls, ControlEnv, event


def _ecs_service(env: ControlEnv, monkeypatch: pytest.MonkeyPatch, desired: int,
                 tasks: int = 0) -> list[str]:  # fmt: skip
    """A cluster, a broker service of ``desired`` tasks, and ``tasks`` running tasks (on one
    registered EC2 container instance: moto's Fargate RunTask path is broken)."""
    ecs, ec2 = env.client("ecs"), env.client("ec2")
    cluster = f"kafka-{env.table}"
    ecs.create_cluster(clusterName=cluster)
    ecs.register_task_definition(
        family="broker", containerDefinitions=[{"name": "broker", "image": "b", "memory": 512}]
    )
    ecs.create_service(cluster=cluster, serviceName="brokers", taskDefinition="broker",
                       desiredCount=desired)  # fmt: skip
    arns: list[str] = []
    if tasks:
        inst = ec2.run_instances(ImageId="ami-12c6146b", MinCount=1, MaxCount=1)["Instances"][0]
        ecs.register_container_instance(
            cluster=cluster, instanceIdentityDocument=json.dumps({"instanceId": inst["InstanceId"]})
        )
        arns = [t["taskArn"] for t in ecs.run_task(cluster=cluster, taskDefinition="broker",
                                                    count=tasks)["tasks"]]  # fmt: skip
    monkeypatch.setenv("ECS_CLUSTER", cluster)
    monkeypatch.setenv("ECS_SERVICE", "brokers")
    return arns


def _put_load(env: ControlEnv, per_broker_mb: dict[int, float], window_s: int = 60) -> None:
    """What the brokers' EMF lines become in CloudWatch: per-interval byte counts. (Each test
    uses broker ids of its own: moto's GetMetricData ignores the namespace of a query that
    has dimensions, so tests sharing the server would see each other's brokers.)"""
    now = datetime.now(UTC)
    env.client("cloudwatch").put_metric_data(
        Namespace=env.namespace,
        MetricData=[
            {"MetricName": name, "Dimensions": [{"Name": "BrokerId", "Value": str(bid)}],
             "Value": mb * 1e6 * window_s / 2, "Unit": "Bytes",
             "Timestamp": now - timedelta(seconds=20)}
            for bid, mb in per_broker_mb.items() for name in ("BytesIn", "BytesOut")
        ],
    )  # fmt: skip


def _register(env: ControlEnv, *broker_ids: int) -> DynamoDbMetadataStore:
    """Brokers in the metadata store: the autoscaler asks CloudWatch about these."""
    meta = DynamoDbMetadataStore(env.table, client=env.client("dynamodb"))
    for bid in broker_ids:
        meta.register_broker(bid, f"10.0.0.{bid % 250}", 9092, None, 600_000)
    return meta


def _desired(env: ControlEnv) -> int:
    svc = env.client("ecs").describe_services(cluster=f"kafka-{env.table}",
                                              services=["brokers"])["services"][0]  # fmt: skip
    return int(svc["desiredCount"])


@pytest.fixture
def sizing(monkeypatch: pytest.MonkeyPatch) -> None:
    # one broker: 10 MB/s in or 10 MB/s out, so the load is (in + out) / 10 brokers' worth
    for k, v in {"MIN_BROKERS": "1", "MAX_BROKERS": "4", "PRODUCE_MBPS_PER_BROKER": "10",
                 "CONSUME_MBPS_PER_BROKER": "10", "AUTOSCALER_WINDOW_S": "60"}.items():  # fmt: skip
        monkeypatch.setenv(k, v)


def test_alarm_scales_out_once_even_if_delivered_twice(
    control_env: ControlEnv, monkeypatch: pytest.MonkeyPatch, sizing: None,
    invoke: Callable[[str, dict[str, Any]], Any],
) -> None:  # fmt: skip
    _ecs_service(control_env, monkeypatch, desired=1)
    _register(control_env, 101, 102, 103)
    _put_load(control_env, {101: 25.0})  # 25 MB/s on one broker, 10 MB/s target: 3 brokers
    alarm = event("alarm_state_change.json")
    out = invoke("autoscaler", alarm)
    assert (out["action"], out["current"], out["desired"]) == ("scale_out", 1, 3), out
    assert _desired(control_env) == 3
    again = invoke("autoscaler", alarm)  # EventBridge delivers at least once
    assert (again["action"], again["current"], again["desired"]) == ("hold", 3, 3), again
    _put_load(control_env, {102: 10.0, 103: 10.0})  # load grows further right away
    later = invoke("autoscaler", event("scheduled.json"))
    assert later["action"] == "hold" and "cooldown" in later["reason"], later
    assert _desired(control_env) == 3


def test_schedule_within_target_holds(
    control_env: ControlEnv, monkeypatch: pytest.MonkeyPatch, sizing: None,
    invoke: Callable[[str, dict[str, Any]], Any],
) -> None:  # fmt: skip
    _ecs_service(control_env, monkeypatch, desired=2)
    _register(control_env, 201, 202)
    _put_load(control_env, {201: 8.0, 202: 9.0})
    out = invoke("autoscaler", event("scheduled.json"))
    assert out["action"] == "hold" and out["desired"] == 2, out
    assert _desired(control_env) == 2


def test_scale_in_protects_the_others_then_lowers_the_desired_count(
    control_env: ControlEnv, monkeypatch: pytest.MonkeyPatch, sizing: None,
    invoke: Callable[[str, dict[str, Any]], Any], aws_calls: AwsCalls,
) -> None:  # fmt: skip
    """Stopping the drained task first would let ECS start a replacement (desired count not
    yet lowered) and later stop an undrained task. Instead: drain, protect every other task
    of the service from scale-in, lower the desired count; ECS stops the unprotected one."""
    tasks = _ecs_service(control_env, monkeypatch, desired=3, tasks=3)
    meta = DynamoDbMetadataStore(control_env.table, client=control_env.client("dynamodb"))
    for bid, arn in enumerate(tasks, start=301):
        b = meta.register_broker(bid, f"10.0.0.{bid}", 9092, None, 60_000)
        meta.set_broker_info(bid, b.epoch, {"task_arn": arn, "epoch": str(b.epoch)})
    _put_load(control_env, {301: 2.0, 302: 2.0, 303: 1.0})  # 5 MB/s: one broker would do
    out = invoke("autoscaler", event("scheduled.json"))
    assert (out["action"], out["desired"], out["drained"]) == ("scale_in", 2, [303]), out
    assert out["drained_tasks"] == [tasks[2]]
    assert sorted(out["protected_tasks"]) == sorted(tasks[:2])
    assert _desired(control_env) == 2
    states = {b.broker_id: b.state for b in meta.brokers()}
    assert states == {301: ACTIVE, 302: ACTIVE, 303: DRAINING}
    ecs_calls = [(n, p) for n, p in aws_calls.calls if n.startswith("ecs:")]
    names = [n for n, _ in ecs_calls]
    assert "ecs:StopTask" not in names
    protect = names.index("ecs:UpdateTaskProtection")
    assert protect < names.index("ecs:UpdateService"), names
    params = ecs_calls[protect][1]
    assert sorted(params["tasks"]) == sorted(tasks[:2]) and params["protectionEnabled"] is True
    assert params["expiresInMinutes"] >= 1
    again = invoke("autoscaler", event("scheduled.json"))  # cooldown: no second broker goes
    assert again["action"] == "hold", again


def test_scale_in_drains_every_broker_process_of_the_leaving_task(
    control_env: ControlEnv, monkeypatch: pytest.MonkeyPatch, sizing: None,
    invoke: Callable[[str, dict[str, Any]], Any], aws_calls: AwsCalls,
) -> None:  # fmt: skip
    """Tasks of ``serve --processes 2``: two brokers per task ARN. Scaling in by one task
    drains both of its brokers (to the other tasks' brokers) and stops that one task."""
    tasks = _ecs_service(control_env, monkeypatch, desired=3, tasks=3)
    meta = DynamoDbMetadataStore(control_env.table, client=control_env.client("dynamodb"))
    for i, arn in enumerate(tasks):
        for bid in (500 + 2 * i, 501 + 2 * i):
            b = meta.register_broker(bid, f"10.0.0.{i}", 9092 + bid % 2, None, 60_000)
            meta.set_broker_info(bid, b.epoch, {"task_arn": arn, "epoch": str(b.epoch)})
    _put_load(control_env, {500: 1.0, 501: 1.0, 502: 1.0, 503: 1.0, 504: 0.5, 505: 0.5})
    out = invoke("autoscaler", event("scheduled.json"))
    assert (out["action"], out["desired"]) == ("scale_in", 2), out
    assert sorted(out["drained"]) == [504, 505] and out["drained_tasks"] == [tasks[2]], out
    assert sorted(out["protected_tasks"]) == sorted(tasks[:2])
    states = {b.broker_id: b.state for b in meta.brokers()}
    assert [bid for bid, st in sorted(states.items()) if st == DRAINING] == [504, 505]


def test_a_failed_drain_move_names_the_partition_and_the_error(
    control_env: ControlEnv, monkeypatch: pytest.MonkeyPatch, sizing: None,
    invoke: Callable[[str, dict[str, Any]], Any], aws_calls: AwsCalls,
    caplog: pytest.LogCaptureFixture,
) -> None:  # fmt: skip
    """The brokers here are not reachable (10.0.0.x): the move of the drained broker's
    partition fails, nothing is scaled in, and the warning says which partition and why."""
    tasks = _ecs_service(control_env, monkeypatch, desired=2, tasks=2)
    meta = DynamoDbMetadataStore(control_env.table, client=control_env.client("dynamodb"))
    for bid, arn in enumerate(tasks, start=401):
        b = meta.register_broker(bid, "127.0.0.1", 1, None, 60_000)  # port 1: refused
        meta.set_broker_info(bid, b.epoch, {"task_arn": arn, "epoch": str(b.epoch)})
    meta.create_topic("drain-me", 1, {}, leader_ids=[402])
    _put_load(control_env, {401: 1.0, 402: 1.0})
    monkeypatch.setenv("KAFKA_SECURITY_PROTOCOL", "PLAINTEXT")
    with caplog.at_level("WARNING"):
        out = invoke("autoscaler", event("scheduled.json"))
    assert out["action"] == "scale_in" and out["applied"] is False, out
    assert _desired(control_env) == 2
    assert "ecs:UpdateService" not in aws_calls.names()
    warning = next(r.getMessage() for r in caplog.records if "drain move failed" in r.getMessage())
    assert "drain-me-0 -> broker 401" in warning and "unreachable" in warning, warning
    assert {b.broker_id: b.state for b in meta.brokers()}[402] == ACTIVE  # undrained again
