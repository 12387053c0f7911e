"""The control functions' events parse from their real shapes (tests/functions/events/)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from pydantic import ValidationError

from broker_service.control.events import (
    AlarmStateChangeEvent,
    EventBridgeEnvelope,
    ScheduledEvent,
    TaskStateChangeEvent,
)

EVENTS = Path(__file__).resolve().parents[1] / "functions" / "events"


def _load(name: str) -> dict:
    return json.loads((EVENTS / name).read_text())


def test_scheduled_event() -> None:
    e = ScheduledEvent.model_validate(_load("scheduled.json"))
    assert e.detail_type == "Scheduled Event" and e.detail == {}


def test_alarm_state_change() -> None:
    e = AlarmStateChangeEvent.model_validate(_load("alarm_state_change.json"))
    assert e.detail.alarm_name == "kafka-demo-bytes-in-high"
    assert e.detail.state.value == "ALARM"
    assert e.detail.previous_state is not None and e.detail.previous_state.value == "OK"


def test_task_stopped() -> None:
    e = TaskStateChangeEvent.model_validate(_load("ecs_task_stopped.json"))
    d = e.detail
    assert d.last_status == "STOPPED" and d.stop_code == "EssentialContainerExited"
    assert d.task_arn.endswith("/c13b4cb40f1f4fe4a2971f76ae5a47ad")
    assert d.private_ips() == ["10.0.0.139"]
    assert d.containers[0].exit_code == 137


def test_task_running() -> None:
    e = TaskStateChangeEvent.model_validate(_load("ecs_task_running.json"))
    assert e.detail.last_status == "RUNNING"


def test_the_wrong_event_type_is_refused() -> None:
    with pytest.raises(ValidationError):
        TaskStateChangeEvent.model_validate(_load("alarm_state_change.json"))
    env = EventBridgeEnvelope.model_validate(_load("alarm_state_change.json"))
    assert env.detail_type == "CloudWatch Alarm State Change"
