"""Failure recovery: fence brokers whose lease expired and hand their partitions to live
brokers. The recovery Lambda calls ``recover``; embedded brokers run it on a timer.

Every step is a compare-and-set in the metadata store, so any number of recoverers may run at
once: each broker is fenced once, each partition moved once. No data moves: the new leader
reads the committed ranges (and, with a file WAL on a shared disk, the dead broker's WAL).

The cost of a check does not grow with the cluster's history: one read of the brokers and one
of the partition placement, however many fenced brokers there are. With
``BROKER_NODE_ID=auto`` every ECS task gets a new id, so fenced records would pile up; a fenced
broker whose id was allocated that way (its broker info says ``node_id: auto``) and that leads
nothing is forgotten once its lease ran out more than ``forget_after_ms`` ago.
"""

from __future__ import annotations

import logging
import time
from collections import Counter
from dataclasses import dataclass, field

from broker_service.control.placement import LeastLoaded
from broker_service.metadata.errors import ConcurrentUpdate, UnknownTopic
from broker_service.metadata.records import ACTIVE, DRAINING, FENCED, BrokerRecord, PartitionRecord
from broker_service.metadata.store import MetadataStore

log = logging.getLogger(__name__)

# How long a fenced broker's record stays after its lease ran out (operators and the ECS
# "task STOPPED" event find it meanwhile).
FORGET_AFTER_MS = 3_600_000


@dataclass
class RecoveryResult:
    fenced: list[int] = field(default_factory=list)
    moved: list[tuple[str, int, int, int]] = field(default_factory=list)  # topic, p, from, to
    forgotten: list[int] = field(default_factory=list)

    @property
    def acted(self) -> bool:
        return bool(self.fenced or self.moved)


def recover(
    metadata: MetadataStore,
    now_ms: int,
    grace_ms: int = 0,
    forget_after_ms: int = FORGET_AFTER_MS,
    spare: int | None = None,
    stale_read_ms: int | None = None,
) -> RecoveryResult:
    """Fence every broker whose lease ran out more than ``grace_ms`` ago (clock skew margin),
    then move the partitions led by fenced brokers to live ones, spread evenly; forget
    auto-id fenced brokers that lead nothing after ``forget_after_ms``. ``spare``: the
    broker running the check, never fenced by itself (being slow to renew is not being
    dead; others fence it if it really is). ``stale_read_ms``: a read of the brokers that
    took longer than this fences nobody: the store was stalled, so every lease may look
    expired while the renewals that refresh them are still queued behind that stall."""
    result = RecoveryResult()
    started = time.monotonic()
    brokers = metadata.brokers()
    read_ms = (time.monotonic() - started) * 1000
    judge = stale_read_ms is None or read_ms <= stale_read_ms
    if not judge:
        log.warning(
            "reading the brokers took %.0f ms (more than %s): the metadata store was stalled, "
            "so no lease is judged this round", read_ms, stale_read_ms,
        )  # fmt: skip
    for i, b in enumerate(brokers):
        if not judge or b.broker_id == spare:
            continue
        if b.state in (ACTIVE, DRAINING) and b.lease_expiry_ms + grace_ms < now_ms:
            try:
                brokers[i] = metadata.fence_broker(b.broker_id, b.epoch)
            except ConcurrentUpdate:
                continue  # another recoverer won, or it re-registered meanwhile
            log.warning("broker %d (epoch %d): lease expired; fenced", b.broker_id, b.epoch)
            result.fenced.append(b.broker_id)
    _move_off_fenced(metadata, brokers, now_ms, result, forget_after_ms)
    return result


def recover_broker(
    metadata: MetadataStore, broker_id: int, epoch: int | None, now_ms: int, why: str
) -> RecoveryResult:
    """Fence one broker now (its task is known to be gone: no need to wait for its lease),
    then move the partitions of fenced brokers to live ones. ``epoch``: fence only that
    registration (None: whatever is current), so a late event never fences a successor."""
    return recover_brokers(metadata, [(broker_id, epoch)], now_ms, why)


def recover_brokers(
    metadata: MetadataStore, gone: list[tuple[int, int | None]], now_ms: int, why: str
) -> RecoveryResult:
    """``recover_broker`` for every (broker id, epoch) of a stopped task (a task of
    ``serve --processes N`` ran N brokers), then one move of their partitions."""
    result = RecoveryResult()
    brokers = metadata.brokers()
    wanted = dict(gone)
    for i, b in enumerate(brokers):
        if b.broker_id not in wanted or b.state not in (ACTIVE, DRAINING):
            continue
        if wanted[b.broker_id] not in (None, b.epoch):
            continue
        try:
            brokers[i] = metadata.fence_broker(b.broker_id, b.epoch)
            log.warning("broker %d (epoch %d): %s; fenced", b.broker_id, b.epoch, why)
            result.fenced.append(b.broker_id)
        except ConcurrentUpdate:
            pass  # someone else fenced it, or it re-registered meanwhile
    _move_off_fenced(metadata, brokers, now_ms, result, FORGET_AFTER_MS)
    return result


def _move_off_fenced(
    metadata: MetadataStore,
    brokers: list[BrokerRecord],
    now_ms: int,
    result: RecoveryResult,
    forget_after_ms: int,
) -> None:
    """One read of the placement: the partitions of every fenced broker move to the live
    ones (fewest partitions first); fenced brokers left leading nothing may be forgotten."""
    fenced = {b.broker_id: b for b in brokers if b.state == FENCED}
    if not fenced:
        return
    live = [b.broker_id for b in brokers if b.state == ACTIVE and b.lease_expiry_ms > now_ms]
    load = dict.fromkeys(live, 0)
    orphans: list[tuple[PartitionRecord, int]] = []
    for t in metadata.topics():
        for p in t.partitions:
            if p.leader_id in load:
                load[p.leader_id] += 1
            elif p.leader_id in fenced:
                orphans.append((p, p.leader_id))
    targets = LeastLoaded(load) if live else None
    for p, bid in orphans:
        if targets is None:
            break
        target = targets.pick()
        try:
            metadata.move_partition(p.topic, p.partition, bid, p.leader_epoch, target)
        except (ConcurrentUpdate, UnknownTopic):
            targets.undo(target)
            continue
        result.moved.append((p.topic, p.partition, bid, target))
    if result.moved:
        log.warning("moved %d partitions off fenced brokers", len(result.moved))
    # fenced brokers that lead nothing now (every partition they led has moved)
    owned = Counter(bid for _, bid in orphans)
    moved = Counter(bid for _, _, bid, _ in result.moved)
    idle = [
        b
        for bid, b in fenced.items()
        if owned[bid] == moved[bid] and b.lease_expiry_ms + forget_after_ms < now_ms
    ]
    if idle:
        _forget(metadata, idle, result)


def _forget(metadata: MetadataStore, idle: list[BrokerRecord], result: RecoveryResult) -> None:
    """Forget fenced brokers that lead nothing, if their id is never reused (auto ids)."""
    info = metadata.broker_info()
    for b in idle:
        if info.get(b.broker_id, {}).get("node_id") != "auto":
            continue  # a fixed id re-registers on the same record: keep its epoch
        if metadata.forget_broker(b.broker_id, b.epoch):
            result.forgotten.append(b.broker_id)
    if result.forgotten:
        log.info("forgot %d fenced brokers that lead nothing: %s", len(result.forgotten),
                 result.forgotten)  # fmt: skip


def broker_for_task(
    metadata: MetadataStore, task_arn: str, private_ips: list[str]
) -> tuple[int, int | None] | None:
    """The first of ``brokers_for_task`` (a task of one broker process)."""
    found = brokers_for_task(metadata, task_arn, private_ips)
    return found[0] if found else None


def brokers_for_task(
    metadata: MetadataStore, task_arn: str, private_ips: list[str]
) -> list[tuple[int, int | None]]:
    """(broker id, epoch) of every broker an ECS task ran (``serve --processes N``: N of
    them): by the task ARN the brokers published at start (broker info, with the epoch each
    registered), else by private IP (published, or advertised as the host; epoch unknown).
    A broker that published another task's ARN is a successor on the same id and is never
    matched; a successor that has not published yet has a newer epoch than the one
    recorded, and ``recover_brokers`` leaves it alone."""
    info = metadata.broker_info()
    by_arn = [(bid, int(i["epoch"]) if i.get("epoch") else None)
              for bid, i in sorted(info.items()) if i.get("task_arn") == task_arn]  # fmt: skip
    if by_arn:
        return by_arn
    ips = set(private_ips)
    if not ips:
        return []
    found: list[tuple[int, int | None]] = []
    for b in metadata.brokers():
        i = info.get(b.broker_id, {})
        if i.get("task_arn") and i["task_arn"] != task_arn:
            continue
        if i.get("private_ip") in ips or b.host in ips:
            found.append((b.broker_id, None))
    return found
