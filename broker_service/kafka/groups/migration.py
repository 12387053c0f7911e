"""KIP-848 online migration (Kafka 4.0's ``group.consumer.migration.policy=bidirectional``).

- **Upgrade**: the first ConsumerGroupHeartbeat for a non-empty classic group of the
  ``consumer`` protocol type converts it into a KIP-848 group: its members keep their ids,
  subscriptions and assignments (epoch = the generation) and go on speaking the classic
  protocol inside it (``ClassicMembers``).
- **Classic members in a KIP-848 group** (Kafka's classicGroup*ToConsumerGroup): JoinGroup
  updates the member's subscription and reconciles it with the server-side assignor's target
  (no classic member is told it leads, so none computes anything);
  SyncGroup hands it the partitions it may own now; a heartbeat answers REBALANCE_IN_PROGRESS
  when it must rejoin (the group epoch moved on, it must give partitions up, or partitions
  it awaits were released); LeaveGroup removes it.
- **Downgrade**: when the last member that speaks the consumer protocol leaves and classic
  members remain, the group becomes a classic group again (generation = the group epoch) and
  rebalances, so the classic members rejoin it.
"""

from __future__ import annotations

import logging
import time
import uuid
from typing import Any

from broker_service.kafka.groups.classic import (
    STABLE,
    ClassicGroup,
    ClassicMember,
    JoinRequest,
)
from broker_service.kafka.groups.consumer import (
    ClassicInfo,
    ConsumerGroup,
    ConsumerMember,
    Partitions,
    _flat,
)
from broker_service.kafka.groups.consumer_protocol import (
    decode_assignment,
    decode_subscription_full,
    encode_assignment,
)
from broker_service.kafka.groups.errors import (
    FENCED_INSTANCE_ID,
    ILLEGAL_GENERATION,
    INCONSISTENT_GROUP_PROTOCOL,
    MEMBER_ID_REQUIRED,
    NONE,
    REBALANCE_IN_PROGRESS,
    UNKNOWN_MEMBER_ID,
    GroupError,
)

log = logging.getLogger(__name__)

CONSUMER_PROTOCOL = "consumer"


def can_upgrade(g: ClassicGroup) -> bool:
    return not g.is_empty and g.protocol_type == CONSUMER_PROTOCOL


def upgrade(g: ClassicGroup, session_timeout_s: float, counts: dict[str, int]) -> ConsumerGroup:
    """The classic group as a KIP-848 group; its pending joins and syncs are told to rejoin."""
    out = ConsumerGroup(g.group_id, session_timeout_s)
    out.group_epoch = out.assignment_epoch = g.generation
    out._partition_counts = dict(counts)
    for m in g.members.values():
        topics, _owned, rack = decode_subscription_full(m.metadata_for(g.protocol_name or ""))
        assigned: Partitions = {
            t: set(ps) for t, ps in decode_assignment(m.assignment).items() if ps
        }
        out.members[m.member_id] = ConsumerMember(
            m.member_id,
            m.group_instance_id,
            rack,
            m.client_id,
            m.client_host,
            m.rebalance_timeout_s,
            subscribed=set(topics),
            member_epoch=g.generation,
            previous_epoch=g.generation,
            assigned=assigned,
            owned={t: set(ps) for t, ps in assigned.items()},
            classic=ClassicInfo(list(m.protocols), m.session_timeout_s),
        )
        out.target[m.member_id] = {t: set(ps) for t, ps in assigned.items()}
        m.fail_parked(REBALANCE_IN_PROGRESS)
    g.close()
    log.info("group %s: upgraded to the consumer protocol with %d classic members",
             g.group_id, len(out.members))  # fmt: skip
    return out


def can_downgrade(g: ConsumerGroup, leaving: set[str]) -> bool:
    rest = [m for m in g.members.values() if m.member_id not in leaving]
    return (
        bool(rest)
        and all(m.classic is not None for m in rest)
        and any(g.members[m].classic is None for m in leaving if m in g.members)
    )


def downgrade(g: ConsumerGroup, leaving: set[str], initial_delay_s: float) -> ClassicGroup:
    """The classic members (all but ``leaving``) as a classic group, which rebalances."""
    out = ClassicGroup(g.group_id, initial_delay_s)
    out.protocol_type = CONSUMER_PROTOCOL
    out.generation = g.group_epoch
    rest = [m for m in g.members.values() if m.member_id not in leaving]
    for m in rest:
        assert m.classic is not None
        out.members[m.member_id] = ClassicMember(
            m.member_id,
            m.instance_id,
            m.client_id,
            m.client_host,
            m.classic.session_timeout_s,
            m.rebalance_timeout_s,
            CONSUMER_PROTOCOL,
            list(m.classic.protocols),
            assignment=encode_assignment({t: sorted(p) for t, p in m.assigned.items() if p}),
        )
        if m.instance_id:
            out.static_members[m.instance_id] = m.member_id
    out.protocol_name = out._select_protocol()
    out.leader_id = rest[0].member_id
    out.state = STABLE
    out._prepare_rebalance("downgraded to the classic protocol")
    log.info("group %s: downgraded to the classic protocol with %d members",
             g.group_id, len(rest))  # fmt: skip
    return out


class ClassicMembers:
    """A KIP-848 group as its classic members see it: ClassicGroup's interface."""

    protocol_type = CONSUMER_PROTOCOL
    protocol_name: str | None = None  # each member has its own (SyncGroup echoes the request)
    group_type = "consumer"

    def __init__(self, group: ConsumerGroup, counts: dict[str, int]) -> None:
        self.group = group
        self.group_id = group.group_id
        self.counts = counts

    @property
    def state(self) -> str:
        return self.group.state

    def _member(self, member_id: str, instance_id: str | None) -> ConsumerMember:
        g = self.group
        if instance_id:
            current = next((m for m in g.members.values() if m.instance_id == instance_id), None)
            if current is None:
                raise GroupError(UNKNOWN_MEMBER_ID)
            if current.member_id != member_id:
                raise GroupError(FENCED_INSTANCE_ID)
        member = g.members.get(member_id)
        if member is None or member.classic is None:
            raise GroupError(UNKNOWN_MEMBER_ID)
        return member

    async def join(self, req: JoinRequest) -> dict[str, Any]:
        g = self.group
        if req.protocol_type != CONSUMER_PROTOCOL or not req.protocols:
            raise GroupError(INCONSISTENT_GROUP_PROTOCOL)
        member_id = req.member_id
        member = None
        if not member_id:
            if req.group_instance_id:  # a static member restarting replaces its old self
                for old in [
                    m for m in g.members.values() if m.instance_id == req.group_instance_id
                ]:
                    g.remove(old.member_id, "replaced by a new static member")
            member_id = f"{req.client_id or 'member'}-{uuid.uuid4()}"
            if req.require_known_member_id and not req.group_instance_id:
                return _join_error(MEMBER_ID_REQUIRED, member_id)
        else:
            member = g.members.get(member_id)
            if member is not None:
                member = self._member(member_id, req.group_instance_id)
        topics, owned, rack = decode_subscription_full(req.protocols[0][1])
        if member is None:
            member = ConsumerMember(
                member_id, req.group_instance_id, rack, req.client_id, req.client_host,
                req.rebalance_timeout_s, classic=ClassicInfo([], req.session_timeout_s),
            )  # fmt: skip
            g.members[member_id] = member
            g.group_epoch += 1
        assert member.classic is not None
        member.classic.protocols = list(req.protocols)
        member.classic.session_timeout_s = req.session_timeout_s
        member.rebalance_timeout_s = req.rebalance_timeout_s
        member.last_seen = time.monotonic()
        if set(topics) != member.subscribed:
            member.subscribed = set(topics)
            g.group_epoch += 1
        if self.counts != g._partition_counts:
            g._partition_counts = dict(self.counts)
            g.group_epoch += 1
        # what it still owns: cooperative members say; eager ones revoked everything
        member.owned = {t: set(p) for t, p in owned.items()}
        if g.assignment_epoch < g.group_epoch:
            g._compute_target()
        g._reconcile(member)
        return {
            "error_code": NONE,
            "generation_id": member.member_epoch,
            "protocol_type": CONSUMER_PROTOCOL,
            "protocol_name": req.protocols[0][0],
            # no leader (as Kafka): the server assigned, the member takes its partitions from
            # SyncGroup like a follower; told it leads a group of no members, librdkafka's
            # cooperative-sticky assignor ran over nobody and crashed the client
            "leader": "",
            "skip_assignment": False,
            "member_id": member_id,
            "members": [],
        }

    async def sync(
        self,
        member_id: str,
        generation: int,
        instance_id: str | None,
        assignments: dict[str, bytes],
    ) -> bytes:
        member = self._member(member_id, instance_id)
        if generation != member.member_epoch:
            raise GroupError(ILLEGAL_GENERATION)
        member.owned = {t: set(p) for t, p in member.assigned.items() if p}
        return encode_assignment({t: sorted(p) for t, p in member.assigned.items() if p})

    def heartbeat(self, member_id: str, generation: int, instance_id: str | None) -> None:
        g = self.group
        member = self._member(member_id, instance_id)
        if generation != member.member_epoch:
            raise GroupError(ILLEGAL_GENERATION)
        member.last_seen = time.monotonic()
        if self.counts != g._partition_counts:
            g._partition_counts = dict(self.counts)
            g.group_epoch += 1
        if g.assignment_epoch < g.group_epoch:
            g._compute_target()
        target = _flat(g.target.get(member_id, {}))
        assigned = _flat(member.assigned)
        awaited_free = (target - assigned) - g._held_by_others(member_id)
        if member.member_epoch < g.group_epoch or assigned - target or awaited_free:
            raise GroupError(REBALANCE_IN_PROGRESS)

    def leave(self, member_id: str, instance_id: str | None) -> None:
        if not member_id and instance_id:
            found = next((m for m in self.group.members.values() if m.instance_id == instance_id),
                         None)  # fmt: skip
            member_id = found.member_id if found is not None else ""
        self._member(member_id, instance_id)
        self.group.remove(member_id, "left the group (classic LeaveGroup)")

    @property
    def is_empty(self) -> bool:
        return self.group.is_empty


def _join_error(code: Any, member_id: str) -> dict[str, Any]:
    return {"error_code": code, "generation_id": -1, "protocol_type": None,
            "protocol_name": None, "leader": "", "skip_assignment": False,
            "member_id": member_id, "members": []}  # fmt: skip
