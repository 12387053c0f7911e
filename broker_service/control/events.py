"""The EventBridge events that trigger the control functions, as pydantic models (the
Lambda handlers parse with aws-lambda-powertools' parser into these). Only the fields the
functions use are typed; everything else is kept (``extra="allow"``).

Shapes: "Scheduled Event" (EventBridge rules), "CloudWatch Alarm State Change" and
"ECS Task State Change"; samples in tests/functions/events/.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field


class _Model(BaseModel):
    model_config = ConfigDict(extra="allow", populate_by_name=True)


class EventBridgeEnvelope(_Model):
    version: str = "0"
    id: str
    detail_type: str = Field(alias="detail-type")
    source: str
    account: str
    time: datetime
    region: str
    resources: list[str] = []
    detail: dict[str, Any] = {}


# -- CloudWatch Alarm State Change ------------------------------------------------------------
class AlarmState(_Model):
    value: Literal["OK", "ALARM", "INSUFFICIENT_DATA"]
    reason: str = ""
    timestamp: str | None = None


class AlarmDetail(_Model):
    alarm_name: str = Field(alias="alarmName")
    state: AlarmState
    previous_state: AlarmState | None = Field(None, alias="previousState")


class AlarmStateChangeEvent(EventBridgeEnvelope):
    detail_type: Literal["CloudWatch Alarm State Change"] = Field(alias="detail-type")
    detail: AlarmDetail  # type: ignore[assignment]


# -- ECS Task State Change --------------------------------------------------------------------
class NameValue(_Model):
    name: str
    value: str | None = None


class Attachment(_Model):
    id: str | None = None
    type: str | None = None
    status: str | None = None
    details: list[NameValue] = []


class NetworkInterface(_Model):
    attachment_id: str | None = Field(None, alias="attachmentId")
    private_ipv4_address: str | None = Field(None, alias="privateIpv4Address")


class Container(_Model):
    name: str | None = None
    last_status: str | None = Field(None, alias="lastStatus")
    exit_code: int | None = Field(None, alias="exitCode")
    network_interfaces: list[NetworkInterface] = Field([], alias="networkInterfaces")


class TaskDetail(_Model):
    task_arn: str = Field(alias="taskArn")
    cluster_arn: str = Field(alias="clusterArn")
    last_status: str = Field(alias="lastStatus")
    desired_status: str | None = Field(None, alias="desiredStatus")
    group: str | None = None
    stopped_reason: str | None = Field(None, alias="stoppedReason")
    stop_code: str | None = Field(None, alias="stopCode")
    attachments: list[Attachment] = []
    containers: list[Container] = []

    def private_ips(self) -> list[str]:
        """The task's private IPv4 addresses: its ENI attachment and its containers'."""
        ips = [d.value for a in self.attachments for d in a.details
               if d.name == "privateIPv4Address" and d.value]  # fmt: skip
        ips += [n.private_ipv4_address for c in self.containers for n in c.network_interfaces
                if n.private_ipv4_address]  # fmt: skip
        return list(dict.fromkeys(ips))


class TaskStateChangeEvent(EventBridgeEnvelope):
    detail_type: Literal["ECS Task State Change"] = Field(alias="detail-type")
    detail: TaskDetail  # type: ignore[assignment]


class ScheduledEvent(EventBridgeEnvelope):
    detail_type: Literal["Scheduled Event"] = Field(alias="detail-type")
