"""KIP-848 consumer groups: the broker assigns, members reconcile through heartbeats.

Each heartbeat carries the member's epoch, subscription and owned partitions. A change of
membership or subscription bumps the group epoch and recomputes the target assignment with a
server-side assignor. A member is given a partition only once no other member still owns it
(revocation first, then assignment), and its epoch reaches the group's target epoch when it
holds exactly its target.
"""

from __future__ import annotations

import logging
import time
import uuid
from dataclasses import dataclass, field

from broker_service.kafka.groups.assignors import (
    ASSIGNORS,
    Assignment,
    range_assign,
    uniform_assign,
)
from broker_service.kafka.groups.errors import (
    FENCED_MEMBER_EPOCH,
    INVALID_REQUEST,
    STALE_MEMBER_EPOCH,
    UNKNOWN_MEMBER_ID,
    UNSUPPORTED_ASSIGNOR,
    GroupError,
)

log = logging.getLogger(__name__)

LEAVE_EPOCH = -1
STATIC_LEAVE_EPOCH = -2

Partitions = dict[str, set[int]]  # topic name -> partitions


@dataclass(eq=False)
class ClassicInfo:
    """A member of a KIP-848 group that speaks the classic protocol (online migration)."""

    protocols: list[tuple[str, bytes]]
    session_timeout_s: float


@dataclass(eq=False)
class ConsumerMember:
    member_id: str
    instance_id: str | None
    rack_id: str | None
    client_id: str
    client_host: str
    rebalance_timeout_s: float
    subscribed: set[str] = field(default_factory=set)
    regex: str | None = None
    assignor: str | None = None
    member_epoch: int = 0
    previous_epoch: int = -1
    assigned: Partitions = field(default_factory=dict)
    owned: Partitions = field(default_factory=dict)
    last_seen: float = field(default_factory=time.monotonic)
    last_sent: Partitions | None = None
    classic: ClassicInfo | None = None  # set for members using JoinGroup/SyncGroup


@dataclass(frozen=True, slots=True)
class HeartbeatRequest:
    member_id: str
    member_epoch: int
    instance_id: str | None
    rack_id: str | None
    rebalance_timeout_s: float
    subscribed: list[str] | None
    regex: str | None
    assignor: str | None
    owned: Partitions | None
    client_id: str
    client_host: str


def _flat(parts: Partitions) -> set[tuple[str, int]]:
    return {(t, p) for t, ps in parts.items() for p in ps}


def _nest(pairs: set[tuple[str, int]]) -> Partitions:
    out: Partitions = {}
    for t, p in pairs:
        out.setdefault(t, set()).add(p)
    return out


class ConsumerGroup:
    group_type = "consumer"
    protocol_type = "consumer"

    def __init__(self, group_id: str, session_timeout_s: float) -> None:
        self.group_id = group_id
        self.session_timeout_s = session_timeout_s
        self.group_epoch = 0
        self.assignment_epoch = 0
        self.members: dict[str, ConsumerMember] = {}
        self.target: Assignment = {}
        self._partition_counts: dict[str, int] = {}

    @property
    def is_empty(self) -> bool:
        return not self.members

    @property
    def state(self) -> str:
        if not self.members:
            return "Empty"
        if self.assignment_epoch < self.group_epoch:
            return "Assigning"
        if any(m.member_epoch != self.assignment_epoch for m in self.members.values()):
            return "Reconciling"
        return "Stable"

    def subscribed_topics(self) -> set[str]:
        return set().union(*(m.subscribed for m in self.members.values()))

    # -- heartbeat -------------------------------------------------------------------------
    def heartbeat(self, req: HeartbeatRequest, partition_counts: dict[str, int]) -> ConsumerMember:
        """Apply one heartbeat; returns the member (epoch and assignment to answer with).
        Raises GroupError for fenced or unknown members."""
        if req.assignor is not None and req.assignor not in ASSIGNORS:
            raise GroupError(UNSUPPORTED_ASSIGNOR, f"assignor {req.assignor!r} is not supported")
        if req.member_epoch in (LEAVE_EPOCH, STATIC_LEAVE_EPOCH):
            member = self.members.get(req.member_id)
            if member is None:
                raise GroupError(UNKNOWN_MEMBER_ID)
            self.remove(req.member_id, "left the group")
            member.member_epoch = req.member_epoch
            return member
        if req.member_epoch == 0:
            member = self._join(req)
        else:
            member = self._fenced_check(req)
        member.last_seen = time.monotonic()
        member.rebalance_timeout_s = req.rebalance_timeout_s or member.rebalance_timeout_s
        if req.owned is not None:
            member.owned = {t: set(p) for t, p in req.owned.items() if p}
        changed = False
        if req.subscribed is not None and set(req.subscribed) != member.subscribed:
            member.subscribed = set(req.subscribed)
            changed = True
        if req.assignor is not None and req.assignor != member.assignor:
            member.assignor = req.assignor
            changed = True
        if partition_counts != self._partition_counts:  # topics created or grown
            self._partition_counts = dict(partition_counts)
            changed = True
        if changed:
            self.group_epoch += 1
        if self.assignment_epoch < self.group_epoch:
            self._compute_target()
        self._reconcile(member)
        return member

    def _join(self, req: HeartbeatRequest) -> ConsumerMember:
        if req.subscribed is None and not req.regex:
            raise GroupError(INVALID_REQUEST, "a joining member must send its subscription")
        member_id = req.member_id or str(uuid.uuid4())  # v0: the broker names the member
        old = self.members.get(member_id)
        if old is not None and old.member_epoch != 0:
            # a re-join of a known member: it lost its state, so it starts over
            self.remove(member_id, "rejoined with epoch 0")
        if req.instance_id:
            for other in list(self.members.values()):
                if other.instance_id == req.instance_id and other.member_id != member_id:
                    self.remove(other.member_id, "replaced by a new static member")
        member = ConsumerMember(
            member_id,
            req.instance_id,
            req.rack_id,
            req.client_id,
            req.client_host,
            req.rebalance_timeout_s,
            subscribed=set(req.subscribed or ()),
            regex=req.regex,
            assignor=req.assignor,
        )
        self.members[member_id] = member
        self.group_epoch += 1
        log.info(
            "group %s: member %s joined (epoch %d)", self.group_id, member_id, self.group_epoch
        )
        return member

    def _fenced_check(self, req: HeartbeatRequest) -> ConsumerMember:
        member = self.members.get(req.member_id)
        if member is None:
            raise GroupError(UNKNOWN_MEMBER_ID)
        if req.member_epoch not in (member.member_epoch, member.previous_epoch):
            raise GroupError(
                FENCED_MEMBER_EPOCH,
                f"member epoch {req.member_epoch} is not {member.member_epoch}",
            )
        return member

    def _compute_target(self) -> None:
        subs = {m: self._topics_of(mem) for m, mem in self.members.items()}
        counts = {
            t: n for t, n in self._partition_counts.items() if any(t in s for s in subs.values())
        }
        assignor = next((m.assignor for m in self.members.values() if m.assignor), "uniform")
        if assignor == "range":
            self.target = range_assign(subs, counts)
        else:
            self.target = uniform_assign(subs, counts, self.target)
        self.assignment_epoch = self.group_epoch

    def _topics_of(self, member: ConsumerMember) -> set[str]:
        topics = {t for t in member.subscribed if t in self._partition_counts}
        if member.regex:
            import re

            try:
                pattern = re.compile(member.regex)
            except re.error:
                return topics
            topics |= {t for t in self._partition_counts if pattern.fullmatch(t)}
        return topics

    def _held_by_others(self, member_id: str) -> set[tuple[str, int]]:
        held: set[tuple[str, int]] = set()
        for m in self.members.values():
            if m.member_id == member_id:
                continue
            for source in (m.assigned, m.owned):
                for t, parts in source.items():
                    held.update((t, p) for p in parts)
        return held

    def _reconcile(self, member: ConsumerMember) -> None:
        """Move the member towards its target: first it must release what it may no longer
        hold (its epoch stays until it reports them gone), then it moves to the target epoch
        and receives every target partition no other member still holds (the rest follows
        at the same epoch as their owners let go)."""
        target = _flat(self.target.get(member.member_id, {}))
        current = _flat(member.assigned)
        keep = current & target
        if (current | _flat(member.owned)) - target:
            member.assigned = _nest(keep)
            if _flat(member.owned) - target:
                return  # revocation not confirmed yet
        held = self._held_by_others(member.member_id)
        member.assigned = _nest(keep | {tp for tp in target - keep if tp not in held})
        if member.member_epoch != self.assignment_epoch:
            member.previous_epoch = member.member_epoch
            member.member_epoch = self.assignment_epoch

    # -- removal / liveness ----------------------------------------------------------------
    def remove(self, member_id: str, why: str) -> None:
        if self.members.pop(member_id, None) is not None:
            self.group_epoch += 1
            self.target.pop(member_id, None)
            log.info("group %s: member %s %s", self.group_id, member_id, why)

    def expired(self, now: float) -> list[str]:
        return [
            m.member_id
            for m in self.members.values()
            if now - m.last_seen
            > (m.classic.session_timeout_s if m.classic is not None else self.session_timeout_s)
        ]

    def expire(self, now: float) -> None:
        for member_id in self.expired(now):
            self.remove(member_id, "session expired")

    def validate_commit(self, member_id: str, epoch: int) -> None:
        if epoch < 0 and not member_id:
            if self.members:
                raise GroupError(UNKNOWN_MEMBER_ID)
            return
        member = self.members.get(member_id)
        if member is None:
            raise GroupError(UNKNOWN_MEMBER_ID)
        # the previous epoch too: a commit may race the heartbeat answer that moved it on
        if epoch not in (member.member_epoch, member.previous_epoch):
            raise GroupError(STALE_MEMBER_EPOCH)

    def close(self) -> None:
        pass
