"""A member's session ends at its deadline for every request that looks, not at the next
0.25 s sweep (kafka/groups/coordinator.py ``expire_due``). Kafka times each member on its
own, so librdkafka's 0081-admin closes static members, waits their session timeout and
deletes the groups at once: DeleteGroups answered NON_EMPTY_GROUP here when it landed before
the sweep. Real coordinator and group over a real SQLite store; the sweep is never run, so
only the request paths can have expired the member."""

from __future__ import annotations

import asyncio
import time
from pathlib import Path

from broker_service.kafka.groups.classic import STABLE, ClassicGroup, ClassicMember
from broker_service.kafka.groups.coordinator import GroupCoordinator
from broker_service.metadata.ports import MetadataPorts
from broker_service.metadata.sqlite import SqliteMetadataStore


def _coordinator_with_a_silent_static_member(tmp_path: Path) -> GroupCoordinator:
    ports = MetadataPorts(SqliteMetadataStore(tmp_path / "m.sqlite"))
    coord = GroupCoordinator(ports, initial_rebalance_delay_ms=0,
                             consumer_session_timeout_ms=45_000)  # fmt: skip
    g = ClassicGroup("g", 0.0)
    member = ClassicMember("m-1", "static-1", "c", "/127.0.0.1", 6.0, 6.0, "consumer",
                           [("range", b"")])  # fmt: skip
    member.last_seen = time.monotonic() - 6.01  # its deadline passed 10 ms ago
    g.members[member.member_id] = member
    g.static_members["static-1"] = member.member_id
    g.state, g.generation, g.protocol_type, g.protocol_name = STABLE, 1, "consumer", "range"
    coord.groups["g"] = g
    return coord


def test_delete_groups_after_the_session_deadline_finds_the_group_empty(tmp_path: Path) -> None:
    coord = _coordinator_with_a_silent_static_member(tmp_path)
    asyncio.run(coord.delete("g"))  # raised GroupError(NON_EMPTY_GROUP) before
    assert not coord.exists("g")


def test_list_groups_after_the_session_deadline_shows_no_member(tmp_path: Path) -> None:
    coord = _coordinator_with_a_silent_static_member(tmp_path)
    [(gid, _ptype, _state, _gtype)] = coord.listing()
    assert gid == "g" and coord.groups["g"].is_empty  # "Stable" with its member before
