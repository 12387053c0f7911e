"""The group coordinator: owns this broker's groups, their liveness timer and their offsets.

Membership lives in memory (members re-join after a coordinator restart or move, as with
Apache Kafka); committed offsets and group identities are durable in the MetadataStore.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Iterable

from broker_service.kafka.groups import migration
from broker_service.kafka.groups import offsets_topic as T
from broker_service.kafka.groups.classic import EMPTY, ClassicGroup
from broker_service.kafka.groups.consumer import ConsumerGroup
from broker_service.kafka.groups.errors import (
    GROUP_ID_NOT_FOUND,
    NON_EMPTY_GROUP,
    GroupError,
)
from broker_service.metadata.ports import MetadataPorts
from broker_service.metadata.records import CommittedOffset, GroupRecord

log = logging.getLogger(__name__)

Group = ClassicGroup | ConsumerGroup
Mirror = Callable[[str, list[T.Record]], None]


def _offset_records(group_id: str, offsets: list[CommittedOffset]) -> list[T.Record]:
    now = int(time.time() * 1000)
    return [
        (
            T.offset_commit_key(group_id, o.topic, o.partition),
            T.offset_commit_value(o.offset, o.leader_epoch, o.metadata, o.commit_ms or now),
        )
        for o in offsets
    ]


def group_metadata_record(g: ClassicGroup) -> T.Record:
    """A classic group's GroupMetadata record as Kafka stores it after a rebalance."""
    protocol = g.protocol_name if g.state != EMPTY else None
    members = [
        T.MemberMetadata(
            m.member_id,
            m.group_instance_id,
            m.client_id,
            m.client_host,
            int(m.rebalance_timeout_s * 1000),
            int(m.session_timeout_s * 1000),
            m.metadata_for(g.protocol_name or ""),
            m.assignment,
        )
        for m in g.members.values()
    ]
    value = T.group_metadata_value(
        g.protocol_type or "",
        g.generation,
        protocol,
        g.leader_id if members else None,
        int(time.time() * 1000),
        members,
    )
    return T.group_metadata_key(g.group_id), value


class GroupCoordinator:
    def __init__(
        self,
        ports: MetadataPorts,
        *,
        initial_rebalance_delay_ms: int,
        consumer_session_timeout_ms: int,
    ) -> None:
        self.ports = ports
        self.metadata = ports.store  # the few calls made before serving, in a thread
        self.initial_delay_s = initial_rebalance_delay_ms / 1000
        self.consumer_session_timeout_s = consumer_session_timeout_ms / 1000
        self.groups: dict[str, Group] = {}
        self._known: dict[str, GroupRecord] = {}
        self._offsets: dict[str, dict[tuple[str, int], CommittedOffset]] = {}
        self._stale: dict[str, dict[tuple[str, int], CommittedOffset]] = {}
        # writes records to __consumer_offsets (set by the broker; None: not mirrored)
        self.mirror: Mirror | None = None
        # topic -> partition count, for KIP-848 groups' classic members (set by the broker)
        self.partition_counts: Callable[[], dict[str, int]] = dict

    async def start(self) -> None:
        self._known = {g.group_id: g for g in await self.ports.groups.groups()}

    def stop(self) -> None:
        for g in self.groups.values():
            g.close()

    async def expire_step(self) -> None:
        """Session and rebalance timeouts (runtime/timers.py runs this every 0.25 s)."""
        self.expire_due(list(self.groups))

    def expire_due(self, group_ids: Iterable[str]) -> None:
        """Expire what is overdue in these groups now. Besides the 0.25 s sweep, every request
        that reads or deletes a group's membership calls it first, so a session ends exactly
        at its deadline as far as any client can see (Kafka times each member on its own:
        a DeleteGroups sent just after a static member's session ran out finds it gone)."""
        now = time.monotonic()
        for gid in group_ids:
            g = self.groups.get(gid)
            if g is None:
                continue
            try:
                if isinstance(g, ConsumerGroup):
                    expired = set(g.expired(now))
                    if expired and self.maybe_downgrade(g.group_id, expired):
                        continue
                g.expire(now)
            except Exception:  # one broken group must not stop everyone's liveness
                log.exception("group %s: expiry failed", g.group_id)

    # -- groups ------------------------------------------------------------------------------
    def classic(
        self, group_id: str, create: bool
    ) -> ClassicGroup | migration.ClassicMembers | None:
        """The group as the classic protocol's APIs see it: a classic group, or a KIP-848
        group's classic members (KIP-848 online migration)."""
        g = self.groups.get(group_id)
        if isinstance(g, ConsumerGroup):
            if not g.is_empty:
                return migration.ClassicMembers(g, self.partition_counts())
            g = None
        if g is None and create:
            g = self._adopt(ClassicGroup(group_id, self.initial_delay_s))
        return g

    def _adopt(self, g: ClassicGroup) -> ClassicGroup:
        g.on_change = self._classic_changed
        self.groups[g.group_id] = g
        return g

    def maybe_downgrade(self, group_id: str, leaving: set[str]) -> bool:
        """The last consumer-protocol members leave a group of classic members: it becomes a
        classic group (and rebalances). True if it did."""
        g = self.groups.get(group_id)
        if not isinstance(g, ConsumerGroup) or not migration.can_downgrade(g, leaving):
            return False
        self._adopt(migration.downgrade(g, leaving, self.initial_delay_s))
        return True

    def _classic_changed(self, g: ClassicGroup) -> None:
        if self.mirror is not None:
            self.mirror(g.group_id, [group_metadata_record(g)])

    def consumer(self, group_id: str, create: bool) -> ConsumerGroup | None:
        g = self.groups.get(group_id)
        if isinstance(g, ClassicGroup):
            if not g.is_empty:
                if not (create and migration.can_upgrade(g)):  # another embedded protocol
                    raise GroupError(
                        GROUP_ID_NOT_FOUND,
                        f"Cannot upgrade classic group {group_id} to "
                        "consumer group because it does not use the consumer protocol.",
                    )
                upgraded = migration.upgrade(
                    g, self.consumer_session_timeout_s, self.partition_counts()
                )
                self.groups[group_id] = upgraded
                return upgraded
            g = None
        if g is None and create:
            g = ConsumerGroup(group_id, self.consumer_session_timeout_s)
            self.groups[group_id] = g
        return g

    async def remember(self, group: Group | migration.ClassicMembers, protocol_type: str) -> None:
        """Make the group durable (listed after a restart) the first time it is seen."""
        rec = GroupRecord(group.group_id, group.group_type, protocol_type)
        if self._known.get(group.group_id) != rec:
            self._known[group.group_id] = rec
            await self.ports.groups.save_group(rec)

    def listing(self) -> list[tuple[str, str, str, str]]:
        """(group_id, protocol_type, state, type) for every live or remembered group."""
        self.expire_due(list(self.groups))
        out = {}
        for gid, rec in self._known.items():
            out[gid] = (gid, rec.protocol_type, "Empty", rec.group_type)
        for gid, g in self.groups.items():
            ptype = g.protocol_type if isinstance(g, ConsumerGroup) else (g.protocol_type or "")
            out[gid] = (gid, ptype or out.get(gid, ("", "", "", ""))[1], g.state, g.group_type)
        return [out[k] for k in sorted(out)]

    def exists(self, group_id: str) -> bool:
        return group_id in self.groups or group_id in self._known

    async def delete(self, group_id: str) -> None:
        self.expire_due([group_id])
        g = self.groups.get(group_id)
        if g is not None and not g.is_empty:
            raise GroupError(NON_EMPTY_GROUP)
        await self.load([group_id])
        if not self.exists(group_id) and not self.committed(group_id):
            raise GroupError(GROUP_ID_NOT_FOUND)
        offsets = self.committed(group_id)
        await self.ports.groups.delete_group(group_id)
        self.groups.pop(group_id, None)
        self._known.pop(group_id, None)
        self._offsets.pop(group_id, None)
        if self.mirror is not None:  # tombstones, as Kafka writes when it deletes a group
            tombstones: list[T.Record] = [
                (T.offset_commit_key(group_id, t, p), None) for t, p in offsets
            ]
            self.mirror(group_id, [*tombstones, (T.group_metadata_key(group_id), None)])
        log.info("group %s deleted", group_id)

    # -- offsets -----------------------------------------------------------------------------
    def cached(self, group_id: str) -> bool:
        return group_id in self._offsets

    async def load(self, group_ids: list[str]) -> None:
        """Read the committed offsets of groups not cached here yet (off the event loop)."""
        for gid in group_ids:
            if gid not in self._offsets:
                stored = await self.ports.groups.committed_offsets(gid)
                if gid in self._offsets:  # a commit meanwhile filled the cache: it wins
                    continue
                offsets = self._offsets[gid] = {(o.topic, o.partition): o for o in stored}
                before = self._stale.pop(gid, None)
                if before is not None and self.mirror is not None:  # a transaction committed
                    changed = [o for tp, o in offsets.items() if before.get(tp) != o]
                    if changed:
                        self.mirror(gid, _offset_records(gid, changed))

    def committed(self, group_id: str) -> dict[tuple[str, int], CommittedOffset]:
        """The group's committed offsets; ``load`` it first (empty when not loaded)."""
        return self._offsets.get(group_id, {})

    async def commit(self, group_id: str, offsets: list[CommittedOffset]) -> None:
        if not offsets:
            return
        # durable first (in a worker thread: SQLite fsyncs), then visible to OffsetFetch
        await self.ports.groups.commit_offsets(group_id, offsets)
        await self.load([group_id])
        cache = self._offsets[group_id]
        for o in offsets:
            cache[(o.topic, o.partition)] = o
        if self.mirror is not None:
            self.mirror(group_id, _offset_records(group_id, offsets))
        if group_id not in self._known:
            g = self.groups.get(group_id)
            gtype = g.group_type if g is not None else "classic"
            ptype = (g.protocol_type or "") if g is not None else ""
            rec = GroupRecord(group_id, gtype, ptype)
            self._known[group_id] = rec
            await self.ports.groups.save_group(rec)

    def invalidate_offsets(self, group_id: str) -> None:
        """Another broker committed offsets for this group (a transaction it coordinates
        ended): read them afresh from the metadata store next time."""
        before = self._offsets.pop(group_id, None)
        if before is not None:
            self._stale.setdefault(group_id, before)

    async def delete_offsets(self, group_id: str, partitions: list[tuple[str, int]]) -> None:
        if not partitions:  # every partition refused (subscribed, unknown): nothing to write
            return
        await self.ports.groups.delete_offsets(group_id, partitions)
        await self.load([group_id])
        cache = self._offsets[group_id]
        for tp in partitions:
            cache.pop(tp, None)
        if self.mirror is not None:
            self.mirror(
                group_id, [(T.offset_commit_key(group_id, t, p), None) for t, p in partitions]
            )

    def retain(self, keep: Callable[[str], bool]) -> None:
        """Drop groups (and cached offsets) another broker coordinates now; if they come
        back, their offsets are read afresh from the metadata store."""
        for gid in [g for g in self.groups if not keep(g)]:
            self.groups.pop(gid).close()
        for gid in [g for g in self._offsets if not keep(g)]:
            del self._offsets[gid]
        for gid in [g for g in self._stale if not keep(g)]:
            del self._stale[gid]

    def forget_topic(self, topic: str) -> None:
        for cache in self._offsets.values():
            for tp in [tp for tp in cache if tp[0] == topic]:
                del cache[tp]
