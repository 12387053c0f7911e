"""Who this broker is to the control plane: its ECS task ARN and private IP, read once at
start from the ECS task metadata endpoint (v4) when it runs on ECS. The recovery function
maps an ECS "task STOPPED" event to the broker through them."""

from __future__ import annotations

import json
import logging
import os
import urllib.request

log = logging.getLogger(__name__)


def ecs_task_identity(timeout_s: float = 2.0) -> dict[str, str]:
    """{"task_arn": ..., "private_ip": ...} from ``$ECS_CONTAINER_METADATA_URI_V4/task``;
    empty when not on ECS or the endpoint does not answer."""
    base = os.environ.get("ECS_CONTAINER_METADATA_URI_V4")
    if not base:
        return {}
    try:
        with urllib.request.urlopen(base.rstrip("/") + "/task", timeout=timeout_s) as resp:
            task = json.load(resp)
    except (OSError, ValueError) as exc:
        log.warning("ECS task metadata endpoint did not answer (%s)", exc)
        return {}
    out = {"task_arn": str(task.get("TaskARN", ""))}
    for container in task.get("Containers", []):
        for network in container.get("Networks", []):
            for ip in network.get("IPv4Addresses", []):
                out.setdefault("private_ip", str(ip))
    return {k: v for k, v in out.items() if v}
