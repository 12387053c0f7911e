"""The autoscaler: from measured load, the number of brokers the cluster should run.

``decide`` is pure and table-tested: the load is counted in brokers' worth by the one sizing
model (``control/sizing.py``: produce / P + consume / C per broker); desired = ceil(load),
within [min, max]; scale out at once (after a short cooldown), scale in only when the smaller
cluster would still have ``scale_in_headroom`` spare (hysteresis: no flapping around a
boundary), one broker at a time, after a longer cooldown.

``autoscale`` acts on ECS: scale-out raises the service's desired count; scale-in first
drains the chosen brokers (DRAINING: no new partitions; their partitions reassigned to the
others, O(1) each), then protects every other task of the service from scale-in (ECS task
scale-in protection) and lowers the desired count, so the task ECS stops is the drained one
and ECS never starts a replacement for it (stopping it first would). The time of the last
action is a tag on the ECS service, so repeated or concurrent invocations (alarm + schedule,
EventBridge's at-least-once delivery) see the cooldown and do nothing.
"""

from __future__ import annotations

import logging
import math
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from broker_service.control.balancer import safe_reassign
from broker_service.control.metrics_source import ClusterLoad, MetricsSource
from broker_service.control.placement import LeastLoaded
from broker_service.control.reassignment import ReassignmentResult, reassign
from broker_service.control.sizing import BrokerCapacity
from broker_service.metadata.errors import BrokerFenced
from broker_service.metadata.records import ACTIVE, DRAINING
from broker_service.metadata.store import MetadataStore

log = logging.getLogger(__name__)

LAST_SCALE_TAG = "broker-autoscaler:last-scale-epoch-s"
MB = 1_000_000
# How long the staying tasks are protected from scale-in while ECS stops the drained one
# (ECS lets protection expire by itself; the scale-in cooldown is longer).
PROTECTION_MINUTES = 10
MAX_PROTECT_PER_CALL = 10  # UpdateTaskProtection takes 10 tasks per call


@dataclass(frozen=True)
class AutoscalerPolicy:
    capacity: BrokerCapacity = BrokerCapacity.for_vcpu()  # what one broker is sized for
    min_brokers: int = 1
    max_brokers: int = 10
    scale_out_cooldown_s: float = 120.0
    scale_in_cooldown_s: float = 600.0
    scale_in_headroom: float = 0.2  # scale in only if the smaller cluster stays 20 % under target
    max_scale_in_step: int = 1
    window_s: float = 300.0  # metrics window


@dataclass(frozen=True)
class ScalingInput:
    current: int  # brokers the service runs (desired count)
    # the load in brokers' worth (sizing.BrokerCapacity.units); None: no metrics
    load_units: float | None
    now_s: float
    last_scale_s: float | None = None


@dataclass(frozen=True)
class ScalingDecision:
    current: int
    desired: int
    action: str  # "scale_out", "scale_in" or "hold"
    reason: str


def decide(inp: ScalingInput, policy: AutoscalerPolicy) -> ScalingDecision:
    lo, hi = policy.min_brokers, policy.max_brokers
    cur = inp.current
    if cur < lo:
        return ScalingDecision(cur, lo, "scale_out", f"below the minimum of {lo} brokers")
    if cur > hi:
        return ScalingDecision(cur, hi, "scale_in", f"above the maximum of {hi} brokers")
    if inp.load_units is None:
        return ScalingDecision(cur, cur, "hold", "no load metrics")
    load = inp.load_units
    cap = policy.capacity
    per_broker = (
        f"{load:.2f} brokers' worth of load on {cur} (one broker: "
        f"{cap.produce_mbps:g} MB/s produce or {cap.consume_mbps:g} MB/s consume)"
    )
    since = inp.now_s - inp.last_scale_s if inp.last_scale_s is not None else math.inf
    needed = min(hi, max(lo, math.ceil(load - 1e-9)))
    if needed > cur:
        if since < policy.scale_out_cooldown_s:
            cooldown = f"{since:.0f}/{policy.scale_out_cooldown_s:.0f} s"
            return ScalingDecision(
                cur,
                cur,
                "hold",
                f"needs {needed} but in scale-out cooldown ({cooldown}); {per_broker}",
            )
        return ScalingDecision(cur, needed, "scale_out", f"{per_broker}: needs {needed}")
    fits = min(hi, max(lo, math.ceil(load / (1 - policy.scale_in_headroom) - 1e-9)))
    if fits < cur:
        desired = max(fits, cur - policy.max_scale_in_step)
        if since < policy.scale_in_cooldown_s:
            return ScalingDecision(
                cur,
                cur,
                "hold",
                f"could shrink to {desired} but in scale-in "
                f"cooldown ({since:.0f}/{policy.scale_in_cooldown_s:.0f} s)",
            )
        return ScalingDecision(cur, desired, "scale_in",
                               f"{per_broker}: {fits} would do with "
                               f"{policy.scale_in_headroom:.0%} headroom")  # fmt: skip
    if needed < cur:
        return ScalingDecision(
            cur,
            cur,
            "hold",
            f"{per_broker}: {needed} would be enough but "
            f"not with {policy.scale_in_headroom:.0%} headroom (hysteresis)",
        )
    return ScalingDecision(cur, cur, "hold", f"{per_broker}: within target")


@dataclass
class AutoscaleResult:
    decision: ScalingDecision
    drained: list[int] = field(default_factory=list)
    drained_tasks: list[str] = field(default_factory=list)  # ECS stops these (others protected)
    protected_tasks: list[str] = field(default_factory=list)
    moves: list[ReassignmentResult] = field(default_factory=list)
    applied: bool = False


Reassign = Callable[[str, str, int, int], ReassignmentResult]


def load_units(load: ClusterLoad | None, capacity: BrokerCapacity) -> float | None:
    """Measured load in brokers' worth (None: no metrics)."""
    if load is None:
        return None
    bytes_in = sum(b.bytes_in_per_s for b in load.brokers.values())
    bytes_out = sum(b.bytes_out_per_s for b in load.brokers.values())
    return capacity.units_of_bytes(bytes_in, bytes_out)


class EcsService:
    """The few ECS calls the autoscaler makes (boto3 client; moto server in tests)."""

    def __init__(self, cluster: str, service: str, client: Any = None) -> None:
        import boto3

        self.cluster, self.service = cluster, service
        self.client = client or boto3.client("ecs")

    def describe(self) -> dict[str, Any]:
        resp = self.client.describe_services(cluster=self.cluster, services=[self.service])
        if not resp["services"]:
            raise LookupError(f"ECS service {self.service} not found in {self.cluster}")
        return dict(resp["services"][0])

    def last_scale_s(self, arn: str) -> float | None:
        tags = self.client.list_tags_for_resource(resourceArn=arn).get("tags", [])
        for t in tags:
            if t["key"] == LAST_SCALE_TAG:
                return float(t["value"])
        return None

    def set_desired(self, arn: str, count: int, now_s: float) -> None:
        self.client.update_service(cluster=self.cluster, service=self.service,
                                   desiredCount=count)  # fmt: skip
        self.client.tag_resource(
            resourceArn=arn, tags=[{"key": LAST_SCALE_TAG, "value": f"{now_s:.0f}"}]
        )

    def running_tasks(self) -> list[str]:
        """ARNs of the service's tasks that ECS wants running."""
        arns: list[str] = []
        kwargs: dict[str, Any] = {"cluster": self.cluster, "serviceName": self.service,
                                  "desiredStatus": "RUNNING"}  # fmt: skip
        while True:
            resp = self.client.list_tasks(**kwargs)
            arns += resp.get("taskArns", [])
            if not resp.get("nextToken"):
                return arns
            kwargs["nextToken"] = resp["nextToken"]

    def protect(self, task_arns: list[str], minutes: int) -> None:
        """ECS task scale-in protection for ``minutes``: ECS stops none of these tasks when
        the desired count goes down."""
        for i in range(0, len(task_arns), MAX_PROTECT_PER_CALL):
            resp = self.client.update_task_protection(
                cluster=self.cluster,
                tasks=task_arns[i : i + MAX_PROTECT_PER_CALL],
                protectionEnabled=True,
                expiresInMinutes=minutes,
            )
            failures = resp.get("failures") or []
            if failures:
                raise RuntimeError(f"ECS could not protect tasks: {failures}")


def autoscale(
    ecs: EcsService,
    metadata: MetadataStore,
    source: MetricsSource,
    policy: AutoscalerPolicy,
    now_ms: int,
    reassign_fn: Reassign = reassign,
) -> AutoscaleResult:
    svc = ecs.describe()
    units = load_units(source.cluster_load(policy.window_s), policy.capacity)
    decision = decide(
        ScalingInput(int(svc["desiredCount"]), units, now_ms / 1000,
                     ecs.last_scale_s(svc["serviceArn"])),
        policy,
    )  # fmt: skip
    result = AutoscaleResult(decision)
    log.info("autoscaler: %s %d -> %d: %s", decision.action, decision.current, decision.desired,
             decision.reason)  # fmt: skip
    if decision.action == "scale_out":
        ecs.set_desired(svc["serviceArn"], decision.desired, now_ms / 1000)
        result.applied = True
    elif decision.action == "scale_in":
        _drain(metadata, decision.current - decision.desired, now_ms, reassign_fn, result)
        failed = [m for m in result.moves if not m.ok]
        if failed:
            log.warning(
                "autoscaler: drain move failed, not scaling in this time: %s",
                "; ".join(f"{m.topic}-{m.partition} -> broker {m.target}: "
                          f"error {m.error_code} {m.error_message or ''}" for m in failed),
            )  # fmt: skip
            return result
        if result.drained and len(result.drained_tasks) < len(result.drained):
            # A drained broker without a known task: ECS would pick the task to stop.
            log.warning("autoscaler: drained brokers %s published no task ARN; not scaling in",
                        result.drained)  # fmt: skip
            return result
        staying = [t for t in ecs.running_tasks() if t not in set(result.drained_tasks)]
        ecs.protect(staying, PROTECTION_MINUTES)
        result.protected_tasks = staying
        ecs.set_desired(svc["serviceArn"], decision.desired, now_ms / 1000)
        result.applied = True
    return result


def _drain(
    metadata: MetadataStore,
    count: int,
    now_ms: int,
    reassign_fn: Reassign,
    result: AutoscaleResult,
) -> None:
    """Drain the ``count`` newest live brokers: DRAINING (no new partitions), hand their
    partitions to the others (fewest partitions first). Their tasks are recorded for the
    scale-in (they are the ones left unprotected)."""
    live = metadata.live_brokers(now_ms)
    if len(live) <= count:
        return
    leaving, staying = live[-count:], live[:-count]
    info = metadata.broker_info()
    led: dict[int, int] = {b.broker_id: 0 for b in staying}
    leaving_ids = {b.broker_id for b in leaving}
    by_leader: dict[int, list[Any]] = {b.broker_id: [] for b in leaving}
    for t in metadata.topics():  # one read of the placement for every broker
        for p in t.partitions:
            if p.leader_id in led:
                led[p.leader_id] += 1
            elif p.leader_id in leaving_ids:
                by_leader[p.leader_id].append(p)
    targets = LeastLoaded(led)
    for b in leaving:
        try:
            metadata.set_broker_state(b.broker_id, b.epoch, DRAINING)
        except BrokerFenced:
            continue  # it died meanwhile: recovery moves its partitions
        result.drained.append(b.broker_id)
        for p in by_leader[b.broker_id]:
            target = targets.pick()
            r = safe_reassign(reassign_fn, f"{b.host}:{b.port}", p.topic, p.partition, target)
            result.moves.append(r)
            if not r.ok:
                metadata.set_broker_state(b.broker_id, b.epoch, ACTIVE)  # try again next time
                return
        task = info.get(b.broker_id, {}).get("task_arn")
        if task:
            result.drained_tasks.append(task)
