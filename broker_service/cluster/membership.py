"""This broker's place in the cluster: its lease, its view of the live brokers, who
coordinates what, and the recovery check it runs for the others.

The lease is renewed every third of its length, on a thread of its own (renewal never queues
behind other metadata work). The broker trusts its own lease only until ``valid_until`` (its
last renewal plus 80% of the lease, leaving room for clock skew): past that, another broker may
already have fenced it and taken its partitions, so it must not acknowledge anything until a
renewal succeeds again (a stopped-then-resumed "zombie" finds its lease gone). A broker never
fences itself for being slow: the recovery check it runs leaves its own registration alone.

Nor does it fence others for what was the store's slowness. A renewal that takes more than
half a lease (or starts after this broker's own lease lapsed) says the store stalled for
everyone: the other brokers' renewals, just as slow, may have let their leases run out. It then
fences nobody while such a renewal hangs, nor for a lease after it (a broker that really died
during the stall is fenced a lease later). Below half a lease, a slow store is only slow: the
renewals of the others still land within their lease, and fencing goes on as usual.

A paused host is the same case: a stopped microVM resumes with its wall clock stepped forward
and its monotonic clock where it stopped. Every lease in the store (wall clock) ran out,
this broker's own with them, so the lease is valid only while both clocks say so, and a
renewal that starts after either says it lapsed is a late one (before, the first broker to
wake fenced the others it had been paused with).

The live view follows the same rule: while it fences nobody, a broker keeps listing the
brokers it listed whose registration is still ACTIVE, lease expired or not. Right after a stall
the held renewals land one after another; the first to land, reading the others' leases
before theirs landed, dropped them: its Metadata answers named them as leaders without listing
them (a client then has no leader for their partitions), and it placed new partitions and
coordinators over fewer brokers.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable

from broker_service.control.placement import owner
from broker_service.control.recovery import recover
from broker_service.metadata.errors import BrokerFenced
from broker_service.metadata.ports import MetadataPorts
from broker_service.metadata.records import ACTIVE, DRAINING, BrokerRecord

log = logging.getLogger(__name__)


def now_ms() -> int:
    return int(time.time() * 1000)


class Membership:
    def __init__(
        self,
        ports: MetadataPorts,
        me: BrokerRecord,
        lease_ms: int,
        on_fenced: Callable[[], None],
        on_cluster_change: Callable[[], None],
    ) -> None:
        self.ports = ports
        self.me = me
        self.lease_ms = lease_ms
        self.on_fenced = on_fenced
        self.on_cluster_change = on_cluster_change
        self.valid_until = time.monotonic() + lease_ms * 0.8 / 1000
        self.wall_valid_until_ms = now_ms() + lease_ms * 0.8  # the same by the wall clock
        self.live: list[BrokerRecord] = [me]
        self.draining: list[BrokerRecord] = []  # still serving what they lead, handing it over
        self.registered: list[BrokerRecord] = [me]  # every registration, fenced ones too
        self.fenced = False
        self._renewing_since: float | None = None  # monotonic start of a renewal under way
        self._fence_nobody_until = 0.0  # monotonic: after a late renewal of our own

    @property
    def node_id(self) -> int:
        return self.me.broker_id

    @property
    def epoch(self) -> int:
        return self.me.epoch

    # -- what others ask ---------------------------------------------------------------------
    def lease_valid(self) -> bool:
        """By both clocks: the store times leases by the wall clock, and a paused host (a
        stopped VM) finds its wall clock stepped forward on resume while its monotonic one
        stood still; by the monotonic clock alone its lease looked valid after every lease in
        the store had run out (module doc)."""
        return self._valid_at(time.monotonic(), now_ms())

    def may_acknowledge(self) -> bool:
        """Only while this broker's lease is surely its own."""
        return not self.fenced and self.lease_valid()

    def live_brokers(self) -> list[BrokerRecord]:
        live = self.live
        if all(b.broker_id != self.node_id for b in live):
            live = [*live, self.me]
        return sorted(live, key=lambda b: b.broker_id)

    def listed_brokers(self) -> list[BrokerRecord]:
        """The brokers clients are told of (Metadata, DescribeCluster): the live ones and the
        draining ones, which lead partitions until they have handed them over (Kafka lists a
        broker in controlled shutdown until it is fenced; left out, their partitions had no
        leader a client could resolve for the whole drain)."""
        live = self.live_brokers()
        ids = {b.broker_id for b in live}
        return sorted([*live, *(b for b in self.draining if b.broker_id not in ids)],
                      key=lambda b: b.broker_id)  # fmt: skip

    def coordinator_for(self, key: str) -> BrokerRecord:
        """The broker coordinating a group or transactional id: rendezvous hashing of the
        key over the live brokers, so every broker gives the same answer and a membership
        change moves only what it must (control/placement.py)."""
        live = {b.broker_id: b for b in self.live_brokers()}
        return live[owner(key, live)]

    def coordinates(self, key: str) -> bool:
        return self.coordinator_for(key).broker_id == self.node_id

    def controller_id(self) -> int:
        """No broker is special (every one runs the recovery check); clients still want a
        controller id, so report the lowest live one, the same on every broker."""
        return self.live_brokers()[0].broker_id

    async def refresh_live(self) -> bool:
        """Re-read the live brokers (our view lags by up to lease/3); True if it changed."""
        return self._set_view(await self.ports.brokers.brokers())

    async def is_live(self, broker_id: int) -> bool:
        """Whether a broker is live, asking the metadata store when our view lacks it."""
        if any(b.broker_id == broker_id for b in self.live_brokers()):
            return True
        await self.refresh_live()
        return any(b.broker_id == broker_id for b in self.live_brokers())

    def leaving(self, others: list[int]) -> None:
        """This broker is draining: it coordinates nothing from now on."""
        self.live = [b for b in self.live if b.broker_id in others]
        self.draining = []

    def _valid_at(self, mono: float, wall_ms: int) -> bool:
        return mono < self.valid_until and wall_ms < self.wall_valid_until_ms

    def _set_view(self, records: list[BrokerRecord]) -> bool:
        """Take the live and draining brokers from every registration: those whose lease runs;
        while the store is not on time (this broker fences nobody), also those listed before
        whose lease looks expired (module doc). True if the live ones changed."""
        now = now_ms()
        self.registered = sorted(records, key=lambda b: b.broker_id)
        kept = set() if self._store_on_time() else {b.broker_id for b in self.listed_brokers()}
        serving = [b for b in records if b.lease_expiry_ms > now or b.broker_id in kept]
        self.draining = sorted((b for b in serving if b.state == DRAINING),
                               key=lambda b: b.broker_id)  # fmt: skip
        return self._set_live(
            sorted((b for b in serving if b.state == ACTIVE), key=lambda b: b.broker_id)
        )

    def _set_live(self, live: list[BrokerRecord]) -> bool:
        changed = [b.broker_id for b in live] != [b.broker_id for b in self.live]
        self.live = live
        if changed:
            self.on_cluster_change()
        return changed

    # -- timers (runtime/timers.py runs these) -------------------------------------------------
    @property
    def renew_interval_s(self) -> float:
        return self.lease_ms / 3000

    @property
    def stalled_after_s(self) -> float:
        """A store call slower than this (half a lease) is a stall, not slowness."""
        return self.lease_ms / 2000

    @property
    def recover_interval_s(self) -> float:
        return self.lease_ms / 2000

    async def renew(self) -> None:
        """One renewal, on the lease's own thread."""
        if self.fenced:
            return
        started = self._renewing_since = time.monotonic()
        started_ms = now_ms()
        try:  # on the lease lane: one thread of its own, never behind other metadata calls
            await self.ports.brokers.renew_lease(self.node_id, self.epoch, self.lease_ms)
        except BrokerFenced:
            log.error("broker %d epoch %d was fenced; stopping", self.node_id, self.epoch)
            self.fenced = True
            self.on_fenced()
            return
        finally:
            self._renewing_since = None
        done = time.monotonic()
        took = max(done - started, (now_ms() - started_ms) / 1000)
        if not self._valid_at(started, started_ms) or took > self.stalled_after_s:
            self._fence_nobody_until = done + self.lease_ms / 1000
            log.warning("lease renewal was late (took %.1f s): the metadata store stalled for "
                        "every broker, so this one fences nobody for a lease",
                        took)  # fmt: skip
        self.valid_until = started + self.lease_ms * 0.8 / 1000
        self.wall_valid_until_ms = started_ms + self.lease_ms * 0.8
        self._set_view(await self.ports.brokers.lease_brokers())

    async def check_others(self) -> None:
        """The recovery check: fence brokers whose lease ran out (never this one: a broker
        that was merely slow to renew stops acknowledging until it renews) and move their
        partitions."""
        if self.fenced or not self._store_on_time():
            return
        result = await self.ports.run(
            recover, self.ports.store, now_ms(), self.lease_ms // 5, spare=self.node_id,
            stale_read_ms=int(self.stalled_after_s * 1000),
        )
        if result.acted:
            self.on_cluster_change()

    def _store_on_time(self) -> bool:
        """Whether this broker's own renewals say the store answers in time (else leases
        that look expired are the store's stall, not dead brokers)."""
        now = time.monotonic()
        renewing = self._renewing_since
        return (
            self.lease_valid()
            and now >= self._fence_nobody_until
            and (renewing is None or now - renewing <= self.stalled_after_s)
        )
