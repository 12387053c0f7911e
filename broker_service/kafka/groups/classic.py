"""The classic group protocol (JoinGroup/SyncGroup/Heartbeat/LeaveGroup) as a state machine.

States follow Apache Kafka's coordinator: Empty -> PreparingRebalance -> CompletingRebalance
-> Stable, back to PreparingRebalance whenever membership changes. Assignment is the
client's business: the leader's SyncGroup assignments are passed through untouched, so range,
roundrobin and cooperative-sticky (incremental rebalances) all work.
"""

from __future__ import annotations

import asyncio
import logging
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from broker_service.kafka.groups.errors import (
    FENCED_INSTANCE_ID,
    ILLEGAL_GENERATION,
    INCONSISTENT_GROUP_PROTOCOL,
    MEMBER_ID_REQUIRED,
    NONE,
    NOT_COORDINATOR,
    REBALANCE_IN_PROGRESS,
    UNKNOWN_MEMBER_ID,
    GroupError,
)

log = logging.getLogger(__name__)

EMPTY = "Empty"
PREPARING_REBALANCE = "PreparingRebalance"
COMPLETING_REBALANCE = "CompletingRebalance"
STABLE = "Stable"
DEAD = "Dead"


def _now() -> float:
    return time.monotonic()


@dataclass(eq=False)
class ClassicMember:
    member_id: str
    group_instance_id: str | None
    client_id: str
    client_host: str
    session_timeout_s: float
    rebalance_timeout_s: float
    protocol_type: str
    protocols: list[tuple[str, bytes]]
    assignment: bytes = b""
    last_seen: float = field(default_factory=_now)
    join_future: asyncio.Future[dict[str, Any]] | None = None
    sync_future: asyncio.Future[dict[str, Any]] | None = None

    def fail_parked(self, code: Any) -> None:
        """Answer this member's parked JoinGroup / SyncGroup with the error ``code`` (the
        handler builds the error response)."""
        for fut in (self.join_future, self.sync_future):
            if fut is not None and not fut.done():
                fut.set_exception(GroupError(code))
        self.join_future = self.sync_future = None

    def metadata_for(self, protocol: str) -> bytes:
        for name, meta in self.protocols:
            if name == protocol:
                return meta
        return b""


@dataclass(frozen=True, slots=True)
class JoinRequest:
    member_id: str
    group_instance_id: str | None
    client_id: str
    client_host: str
    session_timeout_s: float
    rebalance_timeout_s: float
    protocol_type: str
    protocols: list[tuple[str, bytes]]
    require_known_member_id: bool  # JoinGroup v4+ (KIP-394)


class ClassicGroup:
    group_type = "classic"

    def __init__(self, group_id: str, initial_delay_s: float) -> None:
        self.group_id = group_id
        self.state = EMPTY
        self.generation = 0
        self.protocol_type: str | None = None
        self.protocol_name: str | None = None
        self.leader_id: str | None = None
        self.members: dict[str, ClassicMember] = {}
        self.static_members: dict[str, str] = {}  # group.instance.id -> member id
        self.pending_members: dict[str, float] = {}  # KIP-394 ids handed out -> expiry
        self.initial_delay_s = initial_delay_s
        self._rebalance: asyncio.Task[None] | None = None
        self._joined = asyncio.Event()
        # called when Kafka would store the group (a generation's assignment, emptied)
        self.on_change: Callable[[ClassicGroup], None] | None = None

    def _changed(self) -> None:
        if self.on_change is not None:
            self.on_change(self)

    # -- queries ---------------------------------------------------------------------------
    @property
    def is_empty(self) -> bool:
        return not self.members

    def subscribed_topics(self) -> set[str] | None:
        """Topics the members subscribe to (consumer protocol), None when unknown."""
        from broker_service.kafka.groups.consumer_protocol import decode_subscription

        if self.protocol_type != "consumer" or self.protocol_name is None:
            return None
        topics: set[str] = set()
        for m in self.members.values():
            topics.update(decode_subscription(m.metadata_for(self.protocol_name)))
        return topics

    # -- JoinGroup ---------------------------------------------------------------------------
    async def join(self, req: JoinRequest) -> dict[str, Any]:
        if self.members and (
            req.protocol_type != self.protocol_type or not self._supports(req.protocols)
        ):
            raise GroupError(INCONSISTENT_GROUP_PROTOCOL)
        member_id = req.member_id
        if not member_id:
            if req.group_instance_id and req.group_instance_id in self.static_members:
                # a static member restarting: it takes its old place under a new member id
                return await self._rejoin_static(req)
            member_id = f"{req.client_id or 'member'}-{uuid.uuid4()}"
            if req.require_known_member_id and not req.group_instance_id:
                self.pending_members[member_id] = _now() + req.session_timeout_s
                return self._join_error(MEMBER_ID_REQUIRED, member_id)
        elif member_id not in self.pending_members:
            # Kafka's doCurrentMemberJoinGroup: a fenced instance first, then unknown ids
            static = self.static_members.get(req.group_instance_id or "")
            if req.group_instance_id and static not in (None, member_id):
                raise GroupError(FENCED_INSTANCE_ID)
            if member_id not in self.members or (req.group_instance_id and static is None):
                raise GroupError(UNKNOWN_MEMBER_ID)
        self.pending_members.pop(member_id, None)

        member = self.members.get(member_id)
        unchanged = member is not None and member.protocols == req.protocols
        if member is None:
            member = ClassicMember(
                member_id,
                req.group_instance_id,
                req.client_id,
                req.client_host,
                req.session_timeout_s,
                req.rebalance_timeout_s,
                req.protocol_type,
                list(req.protocols),
            )
            self.members[member_id] = member
            if req.group_instance_id:
                self.static_members[req.group_instance_id] = member_id
            if self.protocol_type is None or len(self.members) == 1:
                self.protocol_type = req.protocol_type
        else:
            member.protocols = list(req.protocols)
            member.session_timeout_s = req.session_timeout_s
            member.rebalance_timeout_s = req.rebalance_timeout_s
        member.last_seen = _now()

        # A follower re-joining with the same metadata while nothing changes gets the current
        # generation back at once instead of forcing everyone through a rebalance.
        if (
            unchanged
            and member_id != self.leader_id
            and self.state in (STABLE, COMPLETING_REBALANCE)
        ):
            return self._join_response(member, include_members=False)

        fut: asyncio.Future[dict[str, Any]] = asyncio.get_running_loop().create_future()
        if member.join_future is not None and not member.join_future.done():
            member.join_future.set_result(self._join_error(REBALANCE_IN_PROGRESS, member_id))
        member.join_future = fut
        self._prepare_rebalance(f"member {member_id} joined")
        self._joined.set()
        return await fut

    async def _rejoin_static(self, req: JoinRequest) -> dict[str, Any]:
        """Kafka's updateStaticMemberAndRebalance: the known static member gets a new member
        id (its old one is fenced from now on). A Stable group whose selected protocol stays
        is not rebalanced: the member is answered at once with the current generation (and
        the leader as it was) and syncs its old assignment; otherwise it rebalances."""
        assert req.group_instance_id is not None
        old_id = self.static_members[req.group_instance_id]
        new_id = f"{req.group_instance_id}-{uuid.uuid4()}"
        leader_before = self.leader_id
        self._replace_member(old_id, new_id)
        member = self.members[new_id]
        member.protocols = list(req.protocols)
        member.client_id, member.client_host = req.client_id, req.client_host
        member.session_timeout_s = req.session_timeout_s
        member.rebalance_timeout_s = req.rebalance_timeout_s
        member.last_seen = _now()
        if self.state == STABLE and self._select_protocol() == self.protocol_name:
            log.info("group %s: static member %s rejoined as %s without a rebalance",
                     self.group_id, old_id, new_id)  # fmt: skip
            self._changed()
            response = self._join_response(member, include_members=False)
            response["leader"] = leader_before or ""
            return response
        fut: asyncio.Future[dict[str, Any]] = asyncio.get_running_loop().create_future()
        member.join_future = fut
        self._prepare_rebalance(f"static member {req.group_instance_id} rejoined")
        self._joined.set()
        return await fut

    def _supports(self, protocols: list[tuple[str, bytes]]) -> bool:
        names = {n for n, _ in protocols}
        return all(names & {n for n, _ in m.protocols} for m in self.members.values())

    def _replace_member(self, old_id: str, new_id: str) -> None:
        old = self.members.pop(old_id, None)
        if old is None:
            return
        old.member_id = new_id
        self.members[new_id] = old
        if old.group_instance_id:  # the instance is this member id now; the old one is fenced
            self.static_members[old.group_instance_id] = new_id
        if self.leader_id == old_id:
            self.leader_id = new_id
        old.fail_parked(FENCED_INSTANCE_ID)

    def _join_error(self, code: Any, member_id: str = "") -> dict[str, Any]:
        return {
            "error_code": code,
            "generation_id": -1,
            "protocol_type": None,
            "protocol_name": None,
            "leader": "",
            "skip_assignment": False,
            "member_id": member_id,
            "members": [],
        }

    def _join_response(self, member: ClassicMember, include_members: bool) -> dict[str, Any]:
        members = []
        if include_members:
            members = [
                {
                    "member_id": m.member_id,
                    "group_instance_id": m.group_instance_id,
                    "metadata": m.metadata_for(self.protocol_name or ""),
                }
                for m in self.members.values()
            ]
        return {
            "error_code": NONE,
            "generation_id": self.generation,
            "protocol_type": self.protocol_type,
            "protocol_name": self.protocol_name,
            "leader": self.leader_id or "",
            "skip_assignment": False,
            "member_id": member.member_id,
            "members": members,
        }

    # -- rebalancing -------------------------------------------------------------------------
    def _prepare_rebalance(self, reason: str) -> None:
        if self.state == COMPLETING_REBALANCE:
            for m in self.members.values():  # the assignment being synced is stale now
                if m.sync_future is not None and not m.sync_future.done():
                    m.sync_future.set_exception(GroupError(REBALANCE_IN_PROGRESS))
                m.sync_future = None
        if self.state != PREPARING_REBALANCE:
            log.info("group %s: preparing rebalance (%s)", self.group_id, reason)
            initial = self.state == EMPTY
            self.state = PREPARING_REBALANCE
            self._rebalance = asyncio.get_running_loop().create_task(
                self._await_joins(self.initial_delay_s if initial else 0.0)
            )

    async def _await_joins(self, delay_s: float) -> None:
        if delay_s > 0:
            await asyncio.sleep(delay_s)
        deadline = _now() + max((m.rebalance_timeout_s for m in self.members.values()), default=0)
        while self.state == PREPARING_REBALANCE:
            if all(m.join_future is not None for m in self.members.values()):
                break
            remaining = deadline - _now()
            if remaining <= 0:
                break
            self._joined.clear()
            try:
                await asyncio.wait_for(self._joined.wait(), remaining)
            except TimeoutError:
                pass
        if self.state == PREPARING_REBALANCE:
            self._complete_join()

    def _complete_join(self) -> None:
        for m in list(self.members.values()):
            if m.join_future is None:  # did not re-join within the rebalance timeout
                log.info("group %s: member %s did not rejoin; removed", self.group_id, m.member_id)
                self._remove(m.member_id)
        self.generation += 1
        if not self.members:
            self.state = EMPTY
            self.protocol_name = None
            self.leader_id = None
            log.info("group %s: now empty (generation %d)", self.group_id, self.generation)
            self._changed()
            return
        self.protocol_name = self._select_protocol()
        if self.leader_id not in self.members:
            self.leader_id = next(iter(self.members))
        self.state = COMPLETING_REBALANCE
        log.info(
            "group %s: generation %d with %d members, protocol %s",
            self.group_id,
            self.generation,
            len(self.members),
            self.protocol_name,
        )
        now = _now()
        for m in self.members.values():
            m.last_seen = now
            fut, m.join_future = m.join_future, None
            if fut is not None and not fut.done():
                fut.set_result(
                    self._join_response(m, include_members=m.member_id == self.leader_id)
                )

    def _select_protocol(self) -> str:
        members = list(self.members.values())
        common = set.intersection(*({n for n, _ in m.protocols} for m in members))
        votes: dict[str, int] = {}
        for m in members:  # each member votes for its most preferred common protocol
            for name, _ in m.protocols:
                if name in common:
                    votes[name] = votes.get(name, 0) + 1
                    break
        return max(votes, key=lambda n: votes[n])

    # -- SyncGroup ---------------------------------------------------------------------------
    async def sync(
        self,
        member_id: str,
        generation: int,
        instance_id: str | None,
        assignments: dict[str, bytes],
    ) -> bytes:
        member = self._member(member_id, instance_id)
        if generation != self.generation:
            raise GroupError(ILLEGAL_GENERATION)
        if self.state == PREPARING_REBALANCE:
            raise GroupError(REBALANCE_IN_PROGRESS)
        if self.state == STABLE:
            return member.assignment
        fut: asyncio.Future[dict[str, Any]] = asyncio.get_running_loop().create_future()
        member.sync_future = fut
        if member_id == self.leader_id:
            for m in self.members.values():
                m.assignment = assignments.get(m.member_id, b"")
            self.state = STABLE
            log.info("group %s: generation %d is stable", self.group_id, self.generation)
            self._changed()
            for m in self.members.values():
                if m.sync_future is not None and not m.sync_future.done():
                    m.sync_future.set_result({"assignment": m.assignment})
                m.sync_future = None
        result = await fut
        return bytes(result["assignment"])

    # -- Heartbeat / LeaveGroup / liveness ----------------------------------------------------
    def heartbeat(self, member_id: str, generation: int, instance_id: str | None) -> None:
        member = self._member(member_id, instance_id)
        if generation != self.generation:
            raise GroupError(ILLEGAL_GENERATION)
        member.last_seen = _now()
        if self.state == PREPARING_REBALANCE:
            raise GroupError(REBALANCE_IN_PROGRESS)

    def leave(self, member_id: str, instance_id: str | None) -> None:
        if not member_id and instance_id:
            member_id = self.static_members.get(instance_id, "")
        member = self.members.get(member_id)
        if member is None:
            raise GroupError(UNKNOWN_MEMBER_ID)
        if instance_id and member.group_instance_id != instance_id:
            raise GroupError(FENCED_INSTANCE_ID)
        self._remove(member_id)
        self._membership_changed(f"member {member_id} left")

    def expire(self, now: float) -> None:
        """Remove members whose session timed out (called periodically)."""
        for pid, expiry in list(self.pending_members.items()):
            if expiry < now:
                del self.pending_members[pid]
        expired = [
            m.member_id
            for m in self.members.values()
            if m.join_future is None and now - m.last_seen > m.session_timeout_s
        ]
        for mid in expired:
            log.info("group %s: member %s session expired", self.group_id, mid)
            self._remove(mid)
        if expired:
            self._membership_changed("session timeout")

    def _membership_changed(self, reason: str) -> None:
        if self.state in (STABLE, COMPLETING_REBALANCE):
            self._prepare_rebalance(reason)
        elif self.state == PREPARING_REBALANCE:
            self._joined.set()  # maybe everyone left has now joined
        elif self.state == EMPTY and not self.members:
            pass

    def _remove(self, member_id: str) -> None:
        m = self.members.pop(member_id, None)
        if m is None:
            return
        if m.group_instance_id and self.static_members.get(m.group_instance_id) == member_id:
            del self.static_members[m.group_instance_id]
        m.fail_parked(UNKNOWN_MEMBER_ID)
        if self.leader_id == member_id:
            self.leader_id = None
        if not self.members and self.state in (STABLE, COMPLETING_REBALANCE):
            self.generation += 1
            self.state = EMPTY
            self.protocol_name = None
            self._changed()

    def _member(self, member_id: str, instance_id: str | None) -> ClassicMember:
        """Kafka's validateCurrentMember: an instance id must be mapped to this member id
        (FENCED_INSTANCE_ID when it is another's, UNKNOWN_MEMBER_ID when unknown)."""
        if instance_id:
            current = self.static_members.get(instance_id)
            if current is None:
                raise GroupError(UNKNOWN_MEMBER_ID)
            if current != member_id:
                raise GroupError(FENCED_INSTANCE_ID)
        member = self.members.get(member_id)
        if member is None:
            raise GroupError(UNKNOWN_MEMBER_ID)
        return member

    def validate_commit(self, member_id: str, generation: int, instance_id: str | None) -> None:
        """OffsetCommit rules: generation -1 with no member is a manual (simple) commit."""
        if generation < 0 and not member_id:
            if self.members:
                raise GroupError(UNKNOWN_MEMBER_ID)
            return
        member = self._member(member_id, instance_id)
        if generation != self.generation:
            raise GroupError(ILLEGAL_GENERATION)
        if self.state == COMPLETING_REBALANCE:
            raise GroupError(REBALANCE_IN_PROGRESS)
        member.last_seen = _now()

    def close(self) -> None:
        """The group leaves this broker (its coordinator moved, or the broker stops): as
        Kafka's onGroupUnloaded, every parked JoinGroup and SyncGroup is answered
        NOT_COORDINATOR, so its member finds the new coordinator now rather than after its
        request timeout (librdkafka: the rebalance timeout + 3 s, 5 minutes by default)."""
        if self._rebalance is not None:
            self._rebalance.cancel()
        for m in self.members.values():
            m.fail_parked(NOT_COORDINATOR)
