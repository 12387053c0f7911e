"""The async metadata ports (broker_service/metadata/ports.py): own bounded pool, a lease lane
that nothing else queues on, typed calls, and no ordering promised across calls.

The store is a real SQLite store; ``GatedStore`` only makes chosen calls wait on a gate so a
test can hold the pool busy at will (a slow store, deterministically).
"""

from __future__ import annotations

import asyncio
import textwrap
import threading
from collections.abc import Iterator
from pathlib import Path

import pytest

from broker_service.metadata.errors import BrokerFenced
from broker_service.metadata.ports import MetadataPorts
from broker_service.metadata.records import TopicRecord
from broker_service.metadata.sqlite import SqliteMetadataStore


class GatedStore(SqliteMetadataStore):
    """``topic()`` waits for the gate; counts how many calls are inside at once."""

    def __init__(self, path: Path) -> None:
        super().__init__(path)
        self.gate = threading.Event()
        self.inside = 0
        self.most_inside = 0
        self.threads: set[str] = set()
        self._count = threading.Condition()

    def topic(self, name: str) -> TopicRecord | None:
        with self._count:
            self.inside += 1
            self.most_inside = max(self.most_inside, self.inside)
            self.threads.add(threading.current_thread().name)
            self._count.notify_all()
        try:
            self.gate.wait(timeout=40)
            return super().topic(name)
        finally:
            with self._count:
                self.inside -= 1

    def wait_inside(self, n: int) -> None:
        with self._count:
            assert self._count.wait_for(lambda: self.inside >= n, timeout=30), self.inside


@pytest.fixture
def store(tmp_path: Path) -> Iterator[GatedStore]:
    s = GatedStore(tmp_path / "meta.sqlite")
    yield s
    s.gate.set()
    s.close()


def test_calls_reach_the_store_on_the_ports_own_threads(store: GatedStore) -> None:
    async def run() -> None:
        ports = MetadataPorts(store, workers=2)
        me = await ports.brokers.register_broker(1, "h", 9092, None, 60_000)
        t = await ports.topics.create_topic("t", 2, {}, [1])
        assert [p.partition for p in t.partitions] == [0, 1]
        store.gate.set()
        assert await ports.topics.topic("t") == t
        assert store.threads and all(n.startswith("metadata_") for n in store.threads)
        renewed = await ports.brokers.renew_lease(1, me.epoch, 60_000)
        assert renewed.epoch == me.epoch
        with pytest.raises(BrokerFenced):  # errors come back as the store raised them
            await ports.brokers.renew_lease(1, me.epoch + 1, 60_000)
        assert await ports.run(store.cluster_id) == await ports.brokers.cluster_id()
        ports.close()

    asyncio.run(run())


def test_a_blocked_pool_does_not_delay_lease_renewal(store: GatedStore) -> None:
    async def run() -> None:
        ports = MetadataPorts(store, workers=3)
        me = await ports.brokers.register_broker(1, "h", 9092, None, 60_000)
        stuck = [asyncio.ensure_future(ports.topics.topic("t")) for _ in range(5)]
        await asyncio.to_thread(store.wait_inside, 3)  # every ordinary thread is held
        # (wait_for only turns a regression into a failure instead of a hang)
        renewed = await asyncio.wait_for(ports.brokers.renew_lease(1, me.epoch, 60_000), 30)
        assert renewed.lease_expiry_ms >= me.lease_expiry_ms
        live = await asyncio.wait_for(ports.brokers.lease_brokers(), 30)
        assert [b.broker_id for b in live] == [1]
        assert not any(f.done() for f in stuck)  # they were still waiting all along
        store.gate.set()
        assert await asyncio.gather(*stuck) == [None] * 5
        ports.close()

    asyncio.run(run())


def test_the_pool_is_bounded(store: GatedStore) -> None:
    async def run() -> None:
        ports = MetadataPorts(store, workers=4)
        calls = [asyncio.ensure_future(ports.topics.topic("t")) for _ in range(12)]
        await asyncio.to_thread(store.wait_inside, 4)
        assert sum(f.done() for f in calls) == 0
        store.gate.set()
        await asyncio.gather(*calls)
        # 12 calls submitted while all were held: an unbounded pool would have run them on 12
        # threads at once; this one ran them 4 at a time on its 4 threads
        assert store.most_inside == 4
        assert len(store.threads) == 4
        ports.close()

    asyncio.run(run())


def test_no_ordering_is_promised_across_calls(store: GatedStore) -> None:
    """A call started later may finish first: the ports do not serialise calls (callers
    that need an order await one call before starting the next)."""

    async def run() -> None:
        ports = MetadataPorts(store, workers=2)
        await ports.brokers.register_broker(1, "h", 9092, None, 60_000)
        first = asyncio.ensure_future(ports.topics.topic("t"))  # held at the gate
        await asyncio.to_thread(store.wait_inside, 1)
        second = await ports.brokers.brokers()  # started after, done before
        assert [b.broker_id for b in second] == [1] and not first.done()
        store.gate.set()
        assert await first is None
        ports.close()

    asyncio.run(run())


def test_close_shuts_both_lanes_down(store: GatedStore) -> None:
    async def run() -> None:
        ports = MetadataPorts(store, workers=2)
        await ports.brokers.register_broker(1, "h", 9092, None, 60_000)
        ports.close()
        with pytest.raises(RuntimeError, match="shutdown"):
            await ports.topics.topics()
        with pytest.raises(RuntimeError, match="shutdown"):
            await ports.brokers.renew_lease(1, 1, 1000)

    asyncio.run(run())


def test_mypy_checks_arguments_and_results_through_the_ports(tmp_path: Path) -> None:
    mypy_api = pytest.importorskip("mypy.api", reason="mypy is a dev extra")
    snippet = tmp_path / "use_ports.py"
    snippet.write_text(
        textwrap.dedent(
            """
            from broker_service.metadata.ports import MetadataPorts

            async def use(p: MetadataPorts) -> None:
                rec = await p.brokers.renew_lease(1, 2, 3)
                reveal_type(rec)
                await p.brokers.renew_lease("one", 2, 3)
                await p.streams.commit_object(1, 2, "k", 3)
                n: int = await p.topics.topic("t")
            """
        )
    )
    out, _err, status = mypy_api.run(
        ["--no-incremental", "--ignore-missing-imports", "--no-error-summary", str(snippet)]
    )
    assert status == 1, out
    assert 'Revealed type is "broker_service.metadata.records.BrokerRecord"' in out
    assert 'Argument 1 has incompatible type "str"; expected "int"' in out
    assert "Too few arguments" in out
    assert '"TopicRecord | None", variable has type "int"' in out
