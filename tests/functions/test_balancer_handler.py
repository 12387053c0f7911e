"""The balancer Lambda on ECS "task RUNNING" events, against the metadata table and
CloudWatch on moto server: the broker in a new task registers seconds after ECS reports the
task RUNNING, so the handler waits (bounded) for it before planning; a task already being
stopped (desiredStatus STOPPED) is ignored."""

from __future__ import annotations

import threading
from collections.abc import Callable
from typing import Any

import pytest

from broker_service.metadata.dynamodb import DynamoDbMetadataStore

from .conftest import ControlEnv, event

TASK = "arn:aws:ecs:us-east-1:123456789012:task/kafka-demo/{}"


def _brokers(env: ControlEnv, *ids: int) -> DynamoDbMetadataStore:
    meta = DynamoDbMetadataStore(env.table, client=env.client("dynamodb"))
    for bid in ids:
        b = meta.register_broker(bid, "127.0.0.1", 1, None, 600_000)
        meta.set_broker_info(bid, b.epoch, {"task_arn": TASK.format(bid), "epoch": str(b.epoch)})
    return meta


def test_running_task_waits_for_its_broker_then_balances_onto_it(
    control_env: ControlEnv, monkeypatch: pytest.MonkeyPatch,
    invoke: Callable[[str, dict[str, Any]], Any],
) -> None:  # fmt: skip
    meta = _brokers(control_env, 501, 502)
    monkeypatch.setenv("ARRIVAL_TIMEOUT_S", "30")
    # The new task's broker registers a little after the RUNNING event (as on ECS, 8-13 s).
    late = threading.Timer(1.0, _brokers, (control_env, 503))
    late.start()
    try:
        out = invoke("balancer", event("ecs_task_running.json", taskArn=TASK.format(503)))
    finally:
        late.join()
    assert out["arrived"] == 503, out
    assert out["brokers"] == [501, 502, 503], out  # the plan saw the new broker
    meta.close()


def test_running_task_whose_broker_never_comes_balances_without_it(
    control_env: ControlEnv, monkeypatch: pytest.MonkeyPatch,
    invoke: Callable[[str, dict[str, Any]], Any],
) -> None:  # fmt: skip
    _brokers(control_env, 511, 512)
    monkeypatch.setenv("ARRIVAL_TIMEOUT_S", "0")  # bounded: no waiting at all here
    out = invoke("balancer", event("ecs_task_running.json", taskArn=TASK.format(999)))
    assert out["arrived"] is None and out["brokers"] == [511, 512], out


def test_a_task_being_stopped_is_not_balanced_onto(
    control_env: ControlEnv, invoke: Callable[[str, dict[str, Any]], Any]
) -> None:
    _brokers(control_env, 521)
    e = event("ecs_task_running.json", taskArn=TASK.format(521), desiredStatus="STOPPED")
    out = invoke("balancer", e)
    assert out["moves"] == [] and out["skipped"] == "task RUNNING/STOPPED", out
