"""The recovery check a broker runs for the others (cluster/membership.py), over a real SQLite
metadata store: it fences brokers whose lease ran out, never the broker running it, and
nobody while its own renewals say the store itself was stalled. The cluster-wide case (a
store stall of two leases under three broker processes) is tests/cloud/test_store_stall.py."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from broker_service.cluster.membership import Membership
from broker_service.config.faults import FaultPlan
from broker_service.control.recovery import recover
from broker_service.metadata.latency import with_faults
from broker_service.metadata.ports import MetadataPorts
from broker_service.metadata.records import BrokerRecord
from broker_service.metadata.sqlite import SqliteMetadataStore
from tests.support.wait import wait_until

LEASE_MS = 3000  # the checking broker's lease: grace lease/5, a stale read lease/3


@pytest.fixture
def ports(tmp_path: Path) -> Iterator[MetadataPorts]:
    ports = MetadataPorts(SqliteMetadataStore(tmp_path / "meta.db"))
    yield ports
    ports.close()


def _expired_pair(ports: MetadataPorts) -> tuple[BrokerRecord, BrokerRecord]:
    """Brokers 1 and 2 registered with a 1 ms lease: both run out at once."""
    store = ports.store
    me = store.register_broker(1, "127.0.0.1", 9092, None, 1)
    other = store.register_broker(2, "127.0.0.1", 9093, None, 1)
    grace = LEASE_MS // 5
    wait_until(lambda: time.time() * 1000 > max(me.lease_expiry_ms, other.lease_expiry_ms)
               + grace + 1, 10, "both leases past their grace")  # fmt: skip
    return me, other


def _states(ports: MetadataPorts) -> dict[int, str]:
    return {b.broker_id: b.state for b in ports.store.brokers()}


def test_the_check_fences_expired_brokers_but_never_the_one_running_it(
    ports: MetadataPorts,
) -> None:
    me, _ = _expired_pair(ports)
    membership = Membership(ports, me, LEASE_MS, lambda: None, lambda: None)
    asyncio.run(membership.check_others())
    # before: the broker's own id went in as forget_after_ms, so it fenced itself too
    assert _states(ports) == {1: "ACTIVE", 2: "FENCED"}


def test_after_a_late_renewal_of_its_own_a_broker_fences_nobody_for_a_lease(
    ports: MetadataPorts,
) -> None:
    me, _ = _expired_pair(ports)
    membership = Membership(ports, me, LEASE_MS, lambda: None, lambda: None)
    membership.valid_until = time.monotonic() - 1  # our lease lapsed before this renewal
    asyncio.run(membership.renew())
    assert membership.lease_valid()
    asyncio.run(membership.check_others())
    assert _states(ports) == {1: "ACTIVE", 2: "ACTIVE"}, "fenced a peer after a store stall"


def test_a_recovery_read_slower_than_its_bound_judges_no_lease(ports: MetadataPorts) -> None:
    """A read of the brokers that waited on a stalled store fences nobody; the same read on
    time fences the expired broker."""
    me, _ = _expired_pair(ports)
    slow = with_faults(ports.store, FaultPlan(lo_ms=50, hi_ms=50, ops=frozenset({"brokers"})))
    now = int(time.time() * 1000)
    stalled = recover(slow, now, LEASE_MS // 5, spare=me.broker_id, stale_read_ms=10)
    assert stalled.fenced == [] and _states(ports) == {1: "ACTIVE", 2: "ACTIVE"}
    on_time = recover(slow, now, LEASE_MS // 5, spare=me.broker_id, stale_read_ms=5_000)
    assert on_time.fenced == [2] and _states(ports) == {1: "ACTIVE", 2: "FENCED"}


class _Clocks:
    """The wall clock (``time.time``: leases in the store) and the monotonic one (the
    broker's own lease timer), each movable on its own."""

    def __init__(self, monkeypatch: pytest.MonkeyPatch) -> None:
        self.wall_s = 0.0
        self.mono_s = 0.0
        real_time, real_mono = time.time, time.monotonic
        monkeypatch.setattr(time, "time", lambda: real_time() + self.wall_s)
        monkeypatch.setattr(time, "monotonic", lambda: real_mono() + self.mono_s)


def test_a_paused_host_fences_nobody_when_its_monotonic_clock_stood_still(
    ports: MetadataPorts, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The whole host stopped for 22 s (a paused microVM): its monotonic clock did not move,
    the wall clock was stepped forward on resume. Every lease in the store (wall clock) ran
    out, but the broker's own lease timer (monotonic) said it was still valid: the first
    broker to run its recovery check fenced its live peers (the balancer test's brokers 1
    and 2, fenced by broker 3 right after 22 s in which none of the three logged a line). The
    wall clock says this broker's own lease ran out too: it was paused with them, and its
    lease is no more its own than theirs."""
    clocks = _Clocks(monkeypatch)
    store = ports.store
    me = store.register_broker(1, "127.0.0.1", 9092, None, LEASE_MS)
    store.register_broker(2, "127.0.0.1", 9093, None, LEASE_MS)
    membership = Membership(ports, me, LEASE_MS, lambda: None, lambda: None)
    asyncio.run(membership.renew())
    assert membership.may_acknowledge()

    clocks.wall_s += 22  # the pause: only the wall clock moved
    assert not membership.may_acknowledge(), "acknowledging on a lease the store says ran out"
    asyncio.run(membership.check_others())
    assert _states(ports) == {1: "ACTIVE", 2: "ACTIVE"}, "fenced a peer paused with it"

    asyncio.run(membership.renew())  # this broker's renewal lands first: the others get a lease
    assert membership.may_acknowledge()
    asyncio.run(membership.check_others())
    assert _states(ports) == {1: "ACTIVE", 2: "ACTIVE"}, "fenced a peer before it could renew"
    assert [b.broker_id for b in membership.listed_brokers()] == [1, 2]

    # broker 2 really is gone: renewing on time from now on (both clocks move, a renewal
    # interval a step), broker 1 fences it a lease later
    steps = 0
    while _states(ports)[2] == "ACTIVE" and steps < 10:
        clocks.wall_s += LEASE_MS / 3000
        clocks.mono_s += LEASE_MS / 3000
        asyncio.run(membership.renew())
        asyncio.run(membership.check_others())
        steps += 1
    assert _states(ports) == {1: "ACTIVE", 2: "FENCED"}
    assert steps * LEASE_MS / 3000 >= LEASE_MS / 1000, f"fenced after {steps} renewals"
