"""Who am I on ECS Fargate: advertised address, rack and node id of a broker task.

Every Fargate task has its own ENI and private IP (awsvpc networking), unknown until it starts,
so a task definition cannot hard-code ``BROKER_ADVERTISED_HOST`` or ``BROKER_NODE_ID``. Two
placeholders fill them in at start-up:

- ``BROKER_ADVERTISED_HOST=ecs``: the task's private IPv4 address, read from the ECS task
  metadata endpoint v4 (``$ECS_CONTAINER_METADATA_URI_V4/task``). Clients in the VPC then reach
  each broker directly at ``<ip>:<port>``; the NLB serves only the bootstrap connection. The
  same lookup sets ``BROKER_RACK`` to the task's availability zone unless it is set, and
  replaces the host ``ecs`` in ``BROKER_ADVERTISED_LISTENERS`` (``SASL_SSL://ecs:9092``).
- ``BROKER_NODE_ID=auto``: a node id never used before in this cluster, allocated from the
  metadata store's counter (``allocate_broker_id``). A replacement task gets a new id, so a
  fenced broker's id is never reused by a live one.
"""

from __future__ import annotations

import json
import logging
import os
import re
import urllib.request
from collections.abc import Callable, MutableMapping
from typing import Any

from broker_service.metadata.store import MetadataStore

log = logging.getLogger(__name__)

ECS_PLACEHOLDER = "ecs"
AUTO_NODE_ID = "auto"
METADATA_URI_ENV = "ECS_CONTAINER_METADATA_URI_V4"


class EcsIdentityError(RuntimeError):
    pass


def fetch_task_metadata(timeout: float = 5.0) -> dict[str, Any]:
    """The task metadata document (``GET $ECS_CONTAINER_METADATA_URI_V4/task``)."""
    base = os.environ.get(METADATA_URI_ENV)
    if not base:
        raise EcsIdentityError(
            f"BROKER_ADVERTISED_HOST=ecs needs {METADATA_URI_ENV} (set by ECS in every task)"
        )
    with urllib.request.urlopen(f"{base.rstrip('/')}/task", timeout=timeout) as resp:
        doc: dict[str, Any] = json.load(resp)
    return doc


def task_private_ip(task: dict[str, Any]) -> str:
    for container in task.get("Containers", []):
        for network in container.get("Networks", []):
            for ip in network.get("IPv4Addresses", []):
                return str(ip)
    raise EcsIdentityError("task metadata has no IPv4 address (is the task in awsvpc mode?)")


def resolve_ecs_environment(
    env: MutableMapping[str, str],
    fetch: Callable[[], dict[str, Any]] = fetch_task_metadata,
) -> None:
    """Replace the ``ecs`` placeholders in ``env`` (the process environment) in place, before
    the broker's settings are read from it."""
    if env.get("BROKER_ADVERTISED_HOST") != ECS_PLACEHOLDER:
        return
    task = fetch()
    ip = task_private_ip(task)
    env["BROKER_ADVERTISED_HOST"] = ip
    if not env.get("BROKER_RACK") and task.get("AvailabilityZone"):
        env["BROKER_RACK"] = str(task["AvailabilityZone"])
    listeners = env.get("BROKER_ADVERTISED_LISTENERS")
    if listeners:
        env["BROKER_ADVERTISED_LISTENERS"] = re.sub(r"(?<=://)ecs(?=:\d+)", ip, listeners)
    log.info("ECS task: advertised host %s, rack %s", ip, env.get("BROKER_RACK"))


def wants_auto_node_id(env: MutableMapping[str, str]) -> bool:
    return env.get("BROKER_NODE_ID", "").strip().lower() == AUTO_NODE_ID


def allocate_node_id(metadata: MetadataStore) -> int:
    """A node id no broker of this cluster has (registered ids are skipped, in case static
    ids and ``auto`` were mixed)."""
    taken = {b.broker_id for b in metadata.brokers()}
    while True:
        node_id = metadata.allocate_broker_id()
        if node_id not in taken:
            log.info("allocated node id %d", node_id)
            return node_id
