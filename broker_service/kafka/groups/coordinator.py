"""The group coordinator: owns this broker's groups, their liveness timer and their offsets.

Membership lives in memory (members re-join after a coordinator restart or move, as with
Apache Kafka); committed offsets and group identities are durable in the MetadataStore.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Callable

from broker_service.kafka.groups.classic import ClassicGroup
from broker_service.kafka.groups.consumer import ConsumerGroup
from broker_service.kafka.groups.errors import (
    GROUP_ID_NOT_FOUND,
    INCONSISTENT_GROUP_PROTOCOL,
    NON_EMPTY_GROUP,
    GroupError,
)
from broker_service.metadata.records import CommittedOffset, GroupRecord
from broker_service.metadata.store import MetadataStore

log = logging.getLogger(__name__)

Group = ClassicGroup | ConsumerGroup


class GroupCoordinator:
    def __init__(
        self,
        metadata: MetadataStore,
        *,
        initial_rebalance_delay_ms: int,
        consumer_session_timeout_ms: int,
    ) -> None:
        self.metadata = metadata
        self.initial_delay_s = initial_rebalance_delay_ms / 1000
        self.consumer_session_timeout_s = consumer_session_timeout_ms / 1000
        self.groups: dict[str, Group] = {}
        self._known: dict[str, GroupRecord] = {}
        self._offsets: dict[str, dict[tuple[str, int], CommittedOffset]] = {}
        self._timer: asyncio.Task[None] | None = None

    def start(self) -> None:
        self._known = {g.group_id: g for g in self.metadata.groups()}
        self._timer = asyncio.get_running_loop().create_task(self._expire_loop())

    def stop(self) -> None:
        if self._timer is not None:
            self._timer.cancel()
        for g in self.groups.values():
            g.close()

    async def _expire_loop(self) -> None:
        while True:
            await asyncio.sleep(0.25)
            now = time.monotonic()
            for g in list(self.groups.values()):
                try:
                    g.expire(now)
                except Exception:  # one broken group must not stop everyone's liveness
                    log.exception("group %s: expiry failed", g.group_id)

    # -- groups ------------------------------------------------------------------------------
    def classic(self, group_id: str, create: bool) -> ClassicGroup | None:
        g = self.groups.get(group_id)
        if isinstance(g, ConsumerGroup):
            if not g.is_empty:
                raise GroupError(INCONSISTENT_GROUP_PROTOCOL, "group uses the consumer protocol")
            g = None
        if g is None and create:
            g = ClassicGroup(group_id, self.initial_delay_s)
            self.groups[group_id] = g
        return g

    def consumer(self, group_id: str, create: bool) -> ConsumerGroup | None:
        g = self.groups.get(group_id)
        if isinstance(g, ClassicGroup):
            if not g.is_empty:  # no online migration: say so, as Apache Kafka does
                raise GroupError(GROUP_ID_NOT_FOUND, f"Group {group_id} is not a consumer group.")
            g = None
        if g is None and create:
            g = ConsumerGroup(group_id, self.consumer_session_timeout_s)
            self.groups[group_id] = g
        return g

    async def remember(self, group: Group, protocol_type: str) -> None:
        """Make the group durable (listed after a restart) the first time it is seen."""
        rec = GroupRecord(group.group_id, group.group_type, protocol_type)
        if self._known.get(group.group_id) != rec:
            self._known[group.group_id] = rec
            await asyncio.to_thread(self.metadata.save_group, rec)

    def listing(self) -> list[tuple[str, str, str, str]]:
        """(group_id, protocol_type, state, type) for every live or remembered group."""
        out = {}
        for gid, rec in self._known.items():
            out[gid] = (gid, rec.protocol_type, "Empty", rec.group_type)
        for gid, g in self.groups.items():
            ptype = g.protocol_type if isinstance(g, ConsumerGroup) else (g.protocol_type or "")
            out[gid] = (gid, ptype or out.get(gid, ("", "", "", ""))[1], g.state, g.group_type)
        return [out[k] for k in sorted(out)]

    def exists(self, group_id: str) -> bool:
        return group_id in self.groups or group_id in self._known

    def delete(self, group_id: str) -> None:
        g = self.groups.get(group_id)
        if g is not None and not g.is_empty:
            raise GroupError(NON_EMPTY_GROUP)
        if not self.exists(group_id) and not self.committed(group_id):
            raise GroupError(GROUP_ID_NOT_FOUND)
        self.groups.pop(group_id, None)
        self._known.pop(group_id, None)
        self._offsets.pop(group_id, None)
        self.metadata.delete_group(group_id)
        log.info("group %s deleted", group_id)

    # -- offsets -----------------------------------------------------------------------------
    def committed(self, group_id: str) -> dict[tuple[str, int], CommittedOffset]:
        offsets = self._offsets.get(group_id)
        if offsets is None:
            offsets = {(o.topic, o.partition): o for o in self.metadata.committed_offsets(group_id)}
            self._offsets[group_id] = offsets
        return offsets

    async def commit(self, group_id: str, offsets: list[CommittedOffset]) -> None:
        if not offsets:
            return
        # durable first (in a worker thread: SQLite fsyncs), then visible to OffsetFetch
        await asyncio.to_thread(self.metadata.commit_offsets, group_id, offsets)
        cache = self.committed(group_id)
        for o in offsets:
            cache[(o.topic, o.partition)] = o
        if group_id not in self._known:
            g = self.groups.get(group_id)
            gtype = g.group_type if g is not None else "classic"
            ptype = (g.protocol_type or "") if g is not None else ""
            rec = GroupRecord(group_id, gtype, ptype)
            self._known[group_id] = rec
            await asyncio.to_thread(self.metadata.save_group, rec)

    def invalidate_offsets(self, group_id: str) -> None:
        """Another broker committed offsets for this group (a transaction it coordinates
        ended): read them afresh from the metadata store next time."""
        self._offsets.pop(group_id, None)

    def delete_offsets(self, group_id: str, partitions: list[tuple[str, int]]) -> None:
        self.metadata.delete_offsets(group_id, partitions)
        cache = self.committed(group_id)
        for tp in partitions:
            cache.pop(tp, None)

    def retain(self, keep: Callable[[str], bool]) -> None:
        """Drop groups (and cached offsets) another broker coordinates now; if they come
        back, their offsets are read afresh from the metadata store."""
        for gid in [g for g in self.groups if not keep(g)]:
            self.groups.pop(gid).close()
        for gid in [g for g in self._offsets if not keep(g)]:
            del self._offsets[gid]

    def forget_topic(self, topic: str) -> None:
        for cache in self._offsets.values():
            for tp in [tp for tp in cache if tp[0] == topic]:
                del cache[tp]
