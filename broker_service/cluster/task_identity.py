"""Who this broker is to the control plane: its ECS task ARN and private IP (from the ECS
task metadata endpoint, as in ``ecs_identity.py``). The recovery function maps an ECS "task
STOPPED" event to the broker through them."""

from __future__ import annotations

import logging
import os

from broker_service.cluster.ecs_identity import (
    METADATA_URI_ENV,
    EcsIdentityError,
    fetch_task_metadata,
    task_private_ip,
)

log = logging.getLogger(__name__)


def ecs_task_identity(timeout_s: float = 2.0) -> dict[str, str]:
    """{"task_arn": ..., "private_ip": ...}; empty when not on ECS or the endpoint does not
    answer (the broker serves anyway: recovery then maps tasks by advertised host)."""
    if not os.environ.get(METADATA_URI_ENV):
        return {}
    try:
        task = fetch_task_metadata(timeout_s)
    except (OSError, ValueError) as exc:
        log.warning("ECS task metadata endpoint did not answer (%s)", exc)
        return {}
    out = {"task_arn": str(task.get("TaskARN", ""))}
    try:
        out["private_ip"] = task_private_ip(task)
    except EcsIdentityError:
        pass
    return {k: v for k, v in out.items() if v}
