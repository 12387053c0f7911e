"""Failure recovery: fence brokers whose lease expired and hand their partitions to live
brokers. The recovery Lambda calls ``recover``; embedded brokers run it on a timer.

Every step is a compare-and-set in the metadata store, so any number of recoverers may run at
once: each broker is fenced once, each partition moved once. No data moves: the new leader
reads the committed ranges (and, with a file WAL on a shared disk, the dead broker's WAL).
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field

from broker_service.metadata.errors import ConcurrentUpdate, UnknownTopic
from broker_service.metadata.records import ACTIVE, DRAINING, FENCED
from broker_service.metadata.store import MetadataStore

log = logging.getLogger(__name__)


@dataclass
class RecoveryResult:
    fenced: list[int] = field(default_factory=list)
    moved: list[tuple[str, int, int, int]] = field(default_factory=list)  # topic, p, from, to

    @property
    def acted(self) -> bool:
        return bool(self.fenced or self.moved)


def recover(metadata: MetadataStore, now_ms: int, grace_ms: int = 0) -> RecoveryResult:
    """Fence every broker whose lease ran out more than ``grace_ms`` ago (clock skew margin),
    then move the partitions led by fenced brokers to live ones, spread evenly."""
    result = RecoveryResult()
    for b in metadata.brokers():
        if b.state in (ACTIVE, DRAINING) and b.lease_expiry_ms + grace_ms < now_ms:
            try:
                metadata.fence_broker(b.broker_id, b.epoch)
            except ConcurrentUpdate:
                continue  # another recoverer won, or it re-registered meanwhile
            log.warning("broker %d (epoch %d): lease expired; fenced", b.broker_id, b.epoch)
            result.fenced.append(b.broker_id)
    _move_off_fenced(metadata, now_ms, result)
    return result


def recover_broker(
    metadata: MetadataStore, broker_id: int, epoch: int | None, now_ms: int, why: str
) -> RecoveryResult:
    """Fence one broker now (its task is known to be gone: no need to wait for its lease),
    then move the partitions of fenced brokers to live ones. ``epoch``: fence only that
    registration (None: whatever is current), so a late event never fences a successor."""
    result = RecoveryResult()
    b = next((b for b in metadata.brokers() if b.broker_id == broker_id), None)
    if b is not None and b.state in (ACTIVE, DRAINING) and epoch in (None, b.epoch):
        try:
            metadata.fence_broker(b.broker_id, b.epoch)
            log.warning("broker %d (epoch %d): %s; fenced", b.broker_id, b.epoch, why)
            result.fenced.append(b.broker_id)
        except ConcurrentUpdate:
            pass  # someone else fenced it, or it re-registered meanwhile
    _move_off_fenced(metadata, now_ms, result)
    return result


def _move_off_fenced(metadata: MetadataStore, now_ms: int, result: RecoveryResult) -> None:
    live = [b.broker_id for b in metadata.live_brokers(now_ms)]
    if not live:
        return
    dead = [b.broker_id for b in metadata.brokers() if b.state == FENCED]
    load = {bid: len(metadata.partitions_led_by(bid)) for bid in live} if dead else {}
    for bid in dead:
        for p in metadata.partitions_led_by(bid):
            target = min(live, key=lambda x: (load[x], x))
            try:
                metadata.move_partition(p.topic, p.partition, bid, p.leader_epoch, target)
            except (ConcurrentUpdate, UnknownTopic):
                continue
            load[target] += 1
            result.moved.append((p.topic, p.partition, bid, target))
    if result.moved:
        log.warning("moved %d partitions off fenced brokers", len(result.moved))


def broker_for_task(
    metadata: MetadataStore, task_arn: str, private_ips: list[str]
) -> tuple[int, int | None] | None:
    """(broker id, epoch) an ECS task ran: by the task ARN the broker published at start
    (broker info, with the epoch it registered), else by its private IP (published, or
    advertised as its host; epoch unknown). A broker that published another task's ARN is
    a successor on the same id and is never matched; a successor that has not published yet
    has a newer epoch than the one recorded, and ``recover_broker`` leaves it alone."""
    info = metadata.broker_info()
    for bid, i in info.items():
        if i.get("task_arn") == task_arn:
            return bid, int(i["epoch"]) if i.get("epoch") else None
    ips = set(private_ips)
    if not ips:
        return None
    for b in metadata.brokers():
        i = info.get(b.broker_id, {})
        if i.get("task_arn") and i["task_arn"] != task_arn:
            continue
        if i.get("private_ip") in ips or b.host in ips:
            return b.broker_id, None
    return None
