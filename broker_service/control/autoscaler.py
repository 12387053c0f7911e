"""The autoscaler: from measured load, the number of brokers the cluster should run.

``decide`` is pure and table-tested: desired = ceil(load / target per broker), within
[min, max]; scale out at once (after a short cooldown), scale in only when the smaller
cluster would still have ``scale_in_headroom`` spare (hysteresis: no flapping around a
boundary), one broker at a time, after a longer cooldown.

``autoscale`` acts on ECS: scale-out raises the service's desired count; scale-in first
drains the chosen brokers (DRAINING: no new partitions; their partitions reassigned to the
others, O(1) each), stops exactly those tasks, then lowers the desired count. The time of
the last action is a tag on the ECS service, so repeated or concurrent invocations (alarm +
schedule, EventBridge's at-least-once delivery) see the cooldown and do nothing.
"""

from __future__ import annotations

import logging
import math
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from broker_service.control.balancer import safe_reassign
from broker_service.control.metrics_source import MetricsSource
from broker_service.control.reassignment import ReassignmentResult, reassign
from broker_service.metadata.errors import BrokerFenced
from broker_service.metadata.records import ACTIVE, DRAINING
from broker_service.metadata.store import MetadataStore

log = logging.getLogger(__name__)

LAST_SCALE_TAG = "broker-autoscaler:last-scale-epoch-s"
MB = 1_000_000


@dataclass(frozen=True)
class AutoscalerPolicy:
    target_bytes_per_s: float  # bytes in + out per broker the cluster is sized for
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
    load_bytes_per_s: float | None  # None: no metrics
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
    if inp.load_bytes_per_s is None:
        return ScalingDecision(cur, cur, "hold", "no load metrics")
    load = inp.load_bytes_per_s
    target = policy.target_bytes_per_s
    per_broker = f"{load / MB:.1f} MB/s over {cur} brokers (target {target / MB:.1f} MB/s each)"
    since = inp.now_s - inp.last_scale_s if inp.last_scale_s is not None else math.inf
    needed = min(hi, max(lo, math.ceil(load / target)))
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
    fits = min(hi, max(lo, math.ceil(load / (target * (1 - policy.scale_in_headroom)))))
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
    stopped_tasks: list[str] = field(default_factory=list)
    moves: list[ReassignmentResult] = field(default_factory=list)
    applied: bool = False


Reassign = Callable[[str, str, int, int], ReassignmentResult]


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

    def stop_task(self, task_arn: str, reason: str) -> None:
        self.client.stop_task(cluster=self.cluster, task=task_arn, reason=reason)


def autoscale(
    ecs: EcsService,
    metadata: MetadataStore,
    source: MetricsSource,
    policy: AutoscalerPolicy,
    now_ms: int,
    reassign_fn: Reassign = reassign,
) -> AutoscaleResult:
    svc = ecs.describe()
    load = source.cluster_load(policy.window_s)
    decision = decide(
        ScalingInput(int(svc["desiredCount"]), load.total if load else None, now_ms / 1000,
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
        _drain(metadata, decision.current - decision.desired, now_ms, reassign_fn, ecs, result)
        if result.moves and not all(m.ok for m in result.moves):
            log.warning("autoscaler: a drain move failed; not scaling in this time")
            return result
        ecs.set_desired(svc["serviceArn"], decision.desired, now_ms / 1000)
        result.applied = True
    return result


def _drain(
    metadata: MetadataStore,
    count: int,
    now_ms: int,
    reassign_fn: Reassign,
    ecs: EcsService,
    result: AutoscaleResult,
) -> None:
    """Drain the ``count`` newest live brokers: DRAINING (no new partitions), hand their
    partitions to the others (fewest partitions first), then stop their tasks."""
    live = metadata.live_brokers(now_ms)
    if len(live) <= count:
        return
    leaving, staying = live[-count:], live[:-count]
    info = metadata.broker_info()
    load = {b.broker_id: len(metadata.partitions_led_by(b.broker_id)) for b in staying}
    for b in leaving:
        try:
            metadata.set_broker_state(b.broker_id, b.epoch, DRAINING)
        except BrokerFenced:
            continue  # it died meanwhile: recovery moves its partitions
        result.drained.append(b.broker_id)
        for p in metadata.partitions_led_by(b.broker_id):
            target = min(load, key=lambda x: (load[x], x))
            r = safe_reassign(reassign_fn, f"{b.host}:{b.port}", p.topic, p.partition, target)
            result.moves.append(r)
            if not r.ok:
                metadata.set_broker_state(b.broker_id, b.epoch, ACTIVE)  # try again next time
                return
            load[target] += 1
        task = info.get(b.broker_id, {}).get("task_arn")
        if task:
            ecs.stop_task(task, f"autoscaler scale-in: broker {b.broker_id} drained")
            result.stopped_tasks.append(task)
