"""The balancer: move partition leadership so every broker's bytes in + out stays within a
band around the mean (after AutoMQ's AutoBalancer: +-10 %, idle clusters left alone, tiny
moves skipped, a cap on moves per run). Each move is the O(1) graceful reassignment of
``control/reassignment.py``: no data is copied.

``plan_moves`` is pure (loads in, moves out); ``balance`` reads the metadata store and a
metrics source, plans, and asks the brokers to move. Running it twice is harmless: the plan
is made from where partitions are *now*, so a repeated run finds nothing left to do.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import dataclass, field

from broker_service.control.metrics_source import MetricsSource
from broker_service.control.reassignment import ReassignmentResult, reassign
from broker_service.metadata.store import MetadataStore

log = logging.getLogger(__name__)

TopicPartition = tuple[str, int]


@dataclass(frozen=True)
class BalancerPolicy:
    band: float = 0.10  # brokers within mean * (1 +- band) are balanced
    min_mean_bytes_per_s: float = 1 << 20  # below this mean load, balance partition counts
    min_move_fraction: float = 0.05  # a partition carrying < 5 % of the mean is not worth a move
    max_moves: int = 5  # per run: leaves room to measure the effect before moving more
    window_s: float = 60.0  # metrics window


@dataclass(frozen=True)
class Move:
    topic: str
    partition: int
    source: int
    target: int
    bytes_per_s: float


@dataclass
class BalancePlan:
    mode: str  # "load", "count" (idle cluster: spread partition counts) or "none"
    mean: float
    before: dict[int, float]
    after: dict[int, float]
    moves: list[Move] = field(default_factory=list)
    reason: str = ""


def plan_moves(
    leaders: dict[TopicPartition, int],
    partition_load: dict[TopicPartition, float],
    brokers: list[int],
    policy: BalancerPolicy,
) -> BalancePlan:
    """Greedy: move from the busiest broker to the idlest the partition that brings both
    closest to the mean, while someone is outside the band and a move still helps."""
    if not brokers:
        return BalancePlan("none", 0.0, {}, {}, reason="no live brokers")
    owned = {tp: b for tp, b in leaders.items() if b in brokers}  # the rest is recovery's job
    loads = {b: 0.0 for b in brokers}
    for tp, b in owned.items():
        loads[b] += partition_load.get(tp, 0.0)
    before = dict(loads)
    mean = sum(loads.values()) / len(brokers)
    if mean < policy.min_mean_bytes_per_s:
        return _plan_counts(owned, brokers, policy, mean, before)
    plan = BalancePlan("load", mean, before, loads)
    upper, lower = mean * (1 + policy.band), mean * (1 - policy.band)
    for _ in range(policy.max_moves):
        hi = max(brokers, key=lambda b: (loads[b], -b))
        lo = min(brokers, key=lambda b: (loads[b], b))
        if loads[hi] <= upper and loads[lo] >= lower:
            plan.reason = "every broker within the band"
            break
        worst = max(abs(loads[hi] - mean), abs(loads[lo] - mean))
        best: tuple[float, TopicPartition] | None = None
        for tp, b in owned.items():
            x = partition_load.get(tp, 0.0)
            if b != hi or x < policy.min_move_fraction * mean:
                continue
            cost = max(abs(loads[hi] - x - mean), abs(loads[lo] + x - mean))
            if cost < worst and (best is None or cost < best[0]):
                best = (cost, tp)
        if best is None:
            plan.reason = "no move brings the busiest broker closer to the mean"
            break
        tp = best[1]
        x = partition_load.get(tp, 0.0)
        plan.moves.append(Move(tp[0], tp[1], hi, lo, x))
        owned[tp] = lo
        loads[hi] -= x
        loads[lo] += x
    else:
        plan.reason = f"move cap ({policy.max_moves}) reached"
    return plan


def _plan_counts(
    owned: dict[TopicPartition, int],
    brokers: list[int],
    policy: BalancerPolicy,
    mean: float,
    before: dict[int, float],
) -> BalancePlan:
    """An idle cluster: spread partition counts (fills brokers added by a scale-out before
    traffic arrives), never more than one apart."""
    counts = {b: 0 for b in brokers}
    for b in owned.values():
        counts[b] += 1
    plan = BalancePlan("count", mean, before, before, reason="load below the balancing floor")
    for _ in range(policy.max_moves):
        hi = max(brokers, key=lambda b: (counts[b], -b))
        lo = min(brokers, key=lambda b: (counts[b], b))
        if counts[hi] - counts[lo] <= 1:
            break
        tp = max(tp for tp, b in owned.items() if b == hi)
        plan.moves.append(Move(tp[0], tp[1], hi, lo, 0.0))
        owned[tp] = lo
        counts[hi] -= 1
        counts[lo] += 1
    return plan


@dataclass
class BalanceResult:
    plan: BalancePlan
    done: list[ReassignmentResult] = field(default_factory=list)
    failed: list[ReassignmentResult] = field(default_factory=list)


Reassign = Callable[[str, str, int, int], ReassignmentResult]


def safe_reassign(
    reassign_fn: Reassign, bootstrap: str, topic: str, partition: int, target: int
) -> ReassignmentResult:
    """A move whose broker cannot be reached (or refuses this client: authentication, TLS)
    is a failed move, not a failed run."""
    from broker_service.control.kafka_client import KafkaClientError

    try:
        return reassign_fn(bootstrap, topic, partition, target)
    except (OSError, TimeoutError, KafkaClientError) as exc:
        log.warning("cannot reach broker at %s to move %s-%d: %s", bootstrap, topic, partition,
                    exc)  # fmt: skip
        return ReassignmentResult(topic, partition, target, -1, f"unreachable: {exc}", 0.0)


def balance(
    metadata: MetadataStore,
    source: MetricsSource,
    policy: BalancerPolicy,
    now_ms: int,
    reassign_fn: Reassign = reassign,
) -> BalanceResult:
    """Plan from the current placement and measured load, then move (via the leaders)."""
    live = metadata.live_brokers(now_ms)
    addresses = {b.broker_id: f"{b.host}:{b.port}" for b in live}
    leaders = {(p.topic, p.partition): p.leader_id
               for t in metadata.topics() for p in t.partitions}  # fmt: skip
    load = source.cluster_load(policy.window_s)
    partition_load = {tp: v.total for tp, v in load.partitions.items()} if load else {}
    plan = plan_moves(leaders, partition_load, sorted(addresses), policy)
    result = BalanceResult(plan)
    log.info(
        "balancer: %s mode, mean %.0f B/s, loads %s, %d moves planned (then: %s)",
        plan.mode, plan.mean, {b: round(v) for b, v in plan.before.items()}, len(plan.moves),
        plan.reason,
    )  # fmt: skip
    for m in plan.moves:
        r = safe_reassign(reassign_fn, addresses[m.source], m.topic, m.partition, m.target)
        (result.done if r.ok else result.failed).append(r)
        log.info("balancer: %s-%d %d -> %d (%.0f B/s): %s", m.topic, m.partition, m.source,
                 m.target, m.bytes_per_s, "done" if r.ok else f"error {r.error_code}")  # fmt: skip
    return result
