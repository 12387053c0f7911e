"""The recovery Lambda with real ECS task-state events, against the metadata table on moto
server: a STOPPED task's broker is fenced at once (no waiting for its lease) and its
partitions handed to live brokers; repeats, RUNNING events and stale tasks change nothing."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from broker_service.metadata.dynamodb import DynamoDbMetadataStore
from broker_service.metadata.records import ACTIVE, FENCED

from .conftest import ControlEnv, event

TASK = "arn:aws:ecs:us-east-1:123456789012:task/kafka-demo/{}"


def _cluster(env: ControlEnv) -> DynamoDbMetadataStore:
    """Three live brokers (long leases: only the event can get broker 2 fenced), each with
    the task ARN it published; topic t with 4 partitions led by broker 2."""
    meta = DynamoDbMetadataStore(env.table, client=env.client("dynamodb"))
    for bid in (1, 2, 3):
        b = meta.register_broker(bid, f"10.0.0.{bid}", 9092, None, 600_000)
        meta.set_broker_info(bid, b.epoch, {"task_arn": TASK.format(f"task{bid}"),
                                            "epoch": str(b.epoch)})  # fmt: skip
    meta.create_topic("t", 4, {}, leader_ids=[2])
    return meta


def _stopped(task: str, ip: str = "10.0.0.250") -> dict[str, Any]:
    e = event("ecs_task_stopped.json", taskArn=task)
    e["detail"]["attachments"][0]["details"][-1]["value"] = ip
    e["detail"]["containers"][0]["networkInterfaces"][0]["privateIpv4Address"] = ip
    return e


def test_stopped_task_fences_its_broker_at_once_and_moves_its_partitions(
    control_env: ControlEnv, invoke: Callable[[str, dict[str, Any]], Any]
) -> None:
    meta = _cluster(control_env)
    out = invoke("recovery", _stopped(TASK.format("task2")))
    assert out["broker"] == 2 and out["fenced"] == [2]
    assert sorted(m[3] for m in out["moved"]) == [1, 1, 3, 3], "spread over the live brokers"
    assert {b.broker_id: b.state for b in meta.brokers()} == {1: ACTIVE, 2: FENCED, 3: ACTIVE}
    assert meta.partitions_led_by(2) == []
    again = invoke("recovery", _stopped(TASK.format("task2")))  # at-least-once delivery
    assert again["fenced"] == [] and again["moved"] == []


def test_a_stopped_task_of_two_broker_processes_fences_both(
    control_env: ControlEnv, invoke: Callable[[str, dict[str, Any]], Any]
) -> None:
    """``serve --processes 2``: one task ran brokers 2 and 4 (both published its ARN)."""
    meta = _cluster(control_env)
    four = meta.register_broker(4, "10.0.0.2", 9093, None, 600_000)
    meta.set_broker_info(4, four.epoch, {"task_arn": TASK.format("task2"),
                                         "epoch": str(four.epoch)})  # fmt: skip
    meta.create_topic("u", 2, {}, leader_ids=[4])
    out = invoke("recovery", _stopped(TASK.format("task2")))
    assert out["brokers"] == [2, 4] and sorted(out["fenced"]) == [2, 4]
    assert sorted(m[3] for m in out["moved"]) == [1, 1, 1, 3, 3, 3], "to the other tasks"
    assert {b.broker_id: b.state for b in meta.brokers()} == {
        1: ACTIVE, 2: FENCED, 3: ACTIVE, 4: FENCED}  # fmt: skip


def test_running_events_and_unknown_tasks_fence_nobody(
    control_env: ControlEnv, invoke: Callable[[str, dict[str, Any]], Any]
) -> None:
    meta = _cluster(control_env)
    running = event("ecs_task_running.json", taskArn=TASK.format("task2"))
    assert invoke("recovery", running)["fenced"] == []
    unknown = invoke("recovery", _stopped(TASK.format("not-a-broker")))
    assert unknown["broker"] is None and unknown["fenced"] == []  # a lease sweep: all fresh
    assert all(b.state == ACTIVE for b in meta.brokers())


def test_a_late_event_never_fences_the_successor_on_the_same_id(
    control_env: ControlEnv, invoke: Callable[[str, dict[str, Any]], Any]
) -> None:
    meta = _cluster(control_env)
    # broker 2's task died and a new task took broker id 2 before the event arrived; it
    # registered (new epoch) but has not published its task ARN yet
    meta.register_broker(2, "10.0.0.22", 9092, None, 600_000)
    out = invoke("recovery", _stopped(TASK.format("task2")))
    assert out["fenced"] == []
    assert next(b for b in meta.brokers() if b.broker_id == 2).state == ACTIVE


def test_a_broker_is_found_by_its_private_ip_when_it_published_no_task(
    control_env: ControlEnv, invoke: Callable[[str, dict[str, Any]], Any]
) -> None:
    meta = DynamoDbMetadataStore(control_env.table, client=control_env.client("dynamodb"))
    for bid in (1, 2):
        meta.register_broker(bid, f"10.0.0.{bid}", 9092, None, 600_000)
    meta.create_topic("t", 2, {}, leader_ids=[1])
    out = invoke("recovery", _stopped(TASK.format("whatever"), ip="10.0.0.1"))
    assert out["broker"] == 1 and out["fenced"] == [1] and len(out["moved"]) == 2


def test_schedule_sweeps_expired_leases(
    control_env: ControlEnv, invoke: Callable[[str, dict[str, Any]], Any]
) -> None:
    meta = _cluster(control_env)
    four = meta.register_broker(4, "10.0.0.4", 9092, None, 1)  # its lease ran out at once
    meta.create_topic("u", 2, {}, leader_ids=[4])
    import time

    from tests.support.wait import wait_until

    grace_ms = 1000  # the function's clock-skew grace (LEASE_GRACE_MS)
    wait_until(lambda: time.time() * 1000 > four.lease_expiry_ms + grace_ms, 5,
               "the lease and the grace ran out")  # fmt: skip
    out = invoke("recovery", event("scheduled.json"))
    assert out["fenced"] == [4] and len(out["moved"]) == 2
