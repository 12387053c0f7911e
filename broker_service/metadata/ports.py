"""Async ports over the (blocking) metadata store, on thread pools of their own.

Every store call is blocking I/O (SQLite, DynamoDB over HTTP). Run on asyncio's default pool
they would queue with everything else sent there (the file WAL's write + fsync among them),
and a burst of slow metadata calls would delay a lease renewal until the broker fences
itself. So the ports own their threads:

- a bounded pool (``workers``, ``BROKER_METADATA_THREADS``) for ordinary calls, and
- a lease lane of one dedicated thread for ``renew_lease`` and the live-brokers read made
  with it, so renewal never waits behind other work (DESIGN.md §9.11).

``MetadataPorts(store)`` has one facade per domain (``ports.brokers``, ``ports.topics``,
``ports.streams``, ...); each attribute is the domain method, awaited:
``await ports.streams.commit_object(...)``. Types flow through: a ``_Call`` descriptor built
from ``BrokerRegistry.renew_lease`` has that method's parameters and returns an awaitable of
its result, so mypy checks every call as if it were the store's. ``ports.run(fn, *args)``
runs any other blocking function (e.g. ``control.recovery.recover``) on the ordinary pool.

Calls are independent: two calls started one after the other may complete in either order
(each waits for its own result; nothing here serialises them). Cancelling the awaiting task
does not stop a call already running on a thread.
"""

from __future__ import annotations

import asyncio
import contextvars
import functools
from collections.abc import Callable, Coroutine
from concurrent.futures import ThreadPoolExecutor
from typing import Any, Concatenate, Generic, ParamSpec, TypeVar, overload

from broker_service.metadata.store import (
    BrokerRegistry,
    CompactionStore,
    GroupStore,
    MetadataStore,
    ProducerStore,
    SecurityStore,
    StreamObjects,
    TopicCatalog,
    TxnStore,
)

P = ParamSpec("P")
R = TypeVar("R")
D = TypeVar("D")  # a domain interface

DEFAULT_WORKERS = 8


class Lane:
    """A pool of ``workers`` threads that blocking calls are run on from the event loop."""

    def __init__(self, workers: int, name: str) -> None:
        if workers < 1:
            raise ValueError(f"a lane needs at least one thread, not {workers}")
        self.workers = workers
        self._pool = ThreadPoolExecutor(max_workers=workers, thread_name_prefix=name)

    async def run(self, fn: Callable[P, R], /, *args: P.args, **kwargs: P.kwargs) -> R:
        # Copy the context like asyncio.to_thread does (contextvars reach the call).
        ctx = contextvars.copy_context()
        call = functools.partial(ctx.run, fn, *args, **kwargs)
        return await asyncio.get_running_loop().run_in_executor(self._pool, call)

    def close(self) -> None:
        """Stop taking calls; calls not started yet are cancelled, running ones finish."""
        self._pool.shutdown(wait=False, cancel_futures=True)


class _Port(Generic[D]):
    """One domain's facade: its store and the lanes its calls run on."""

    def __init__(self, store: D, main: Lane, lease: Lane) -> None:
        self._store = store
        self._lanes = {"main": main, "lease": lease}


class _Call(Generic[D, P, R]):
    """A port attribute standing for the domain method ``method``, run on lane ``lane``.

    The store's own method is looked up by name at call time, so a backend's implementation
    (or a decorator wrapping the store) is what runs; ``method`` gives the name and types.
    """

    def __init__(self, method: Callable[Concatenate[D, P], R], lane: str = "main") -> None:
        self._name = method.__name__
        self._lane = lane

    @overload
    def __get__(self, port: None, owner: type) -> _Call[D, P, R]: ...

    @overload
    def __get__(
        self, port: _Port[D], owner: type | None = None
    ) -> Callable[P, Coroutine[Any, Any, R]]: ...

    def __get__(
        self, port: _Port[D] | None, owner: type | None = None
    ) -> _Call[D, P, R] | Callable[P, Coroutine[Any, Any, R]]:
        if port is None:
            return self
        method: Callable[P, R] = getattr(port._store, self._name)
        lane = port._lanes[self._lane]

        async def call(*args: P.args, **kwargs: P.kwargs) -> R:
            return await lane.run(method, *args, **kwargs)

        return call


class BrokerPort(_Port[BrokerRegistry]):
    cluster_id = _Call(BrokerRegistry.cluster_id)
    register_broker = _Call(BrokerRegistry.register_broker)
    brokers = _Call(BrokerRegistry.brokers)
    renew_lease = _Call(BrokerRegistry.renew_lease, lane="lease")
    fence_broker = _Call(BrokerRegistry.fence_broker)
    set_broker_state = _Call(BrokerRegistry.set_broker_state)
    live_brokers = _Call(BrokerRegistry.live_brokers)
    # The read the lease loop makes right after renewing: on the lease lane too, so a broker
    # learns who is live as promptly as it renews (every registration: after a store stall
    # the membership keeps brokers whose lease looks expired, cluster/membership.py).
    lease_brokers = _Call(BrokerRegistry.brokers, lane="lease")
    allocate_broker_id = _Call(BrokerRegistry.allocate_broker_id)
    set_broker_info = _Call(BrokerRegistry.set_broker_info)
    broker_info = _Call(BrokerRegistry.broker_info)
    save_broker_endpoints = _Call(BrokerRegistry.save_broker_endpoints)
    broker_endpoints = _Call(BrokerRegistry.broker_endpoints)
    forget_broker = _Call(BrokerRegistry.forget_broker)


class TopicPort(_Port[TopicCatalog]):
    create_topic = _Call(TopicCatalog.create_topic)
    delete_topic = _Call(TopicCatalog.delete_topic)
    add_partitions = _Call(TopicCatalog.add_partitions)
    topics = _Call(TopicCatalog.topics)
    topic = _Call(TopicCatalog.topic)
    move_partition = _Call(TopicCatalog.move_partition)
    partitions_led_by = _Call(TopicCatalog.partitions_led_by)
    set_log_start_offset = _Call(TopicCatalog.set_log_start_offset)
    set_topic_configs = _Call(TopicCatalog.set_topic_configs)
    cluster_configs = _Call(TopicCatalog.cluster_configs)
    set_cluster_configs = _Call(TopicCatalog.set_cluster_configs)
    broker_configs = _Call(TopicCatalog.broker_configs)
    set_broker_configs = _Call(TopicCatalog.set_broker_configs)


class StreamPort(_Port[StreamObjects]):
    commit_object = _Call(StreamObjects.commit_object)
    stream_ranges = _Call(StreamObjects.stream_ranges)
    abort_object_commit = _Call(StreamObjects.abort_object_commit)


class ProducerPort(_Port[ProducerStore]):
    allocate_producer_ids = _Call(ProducerStore.allocate_producer_ids)
    producer_snapshot = _Call(ProducerStore.producer_snapshot)
    save_producer_snapshot = _Call(ProducerStore.save_producer_snapshot)


class GroupPort(_Port[GroupStore]):
    save_group = _Call(GroupStore.save_group)
    groups = _Call(GroupStore.groups)
    delete_group = _Call(GroupStore.delete_group)
    commit_offsets = _Call(GroupStore.commit_offsets)
    committed_offsets = _Call(GroupStore.committed_offsets)
    delete_offsets = _Call(GroupStore.delete_offsets)


class TxnPort(_Port[TxnStore]):
    transaction = _Call(TxnStore.transaction)
    transactions = _Call(TxnStore.transactions)
    save_transaction = _Call(TxnStore.save_transaction)


class CompactionPort(_Port[CompactionStore]):
    acquire_compactor_lease = _Call(CompactionStore.acquire_compactor_lease)
    release_compactor_lease = _Call(CompactionStore.release_compactor_lease)
    replace_stream_ranges = _Call(CompactionStore.replace_stream_ranges)
    committed_objects = _Call(CompactionStore.committed_objects)
    released_objects = _Call(CompactionStore.released_objects)
    mark_released = _Call(CompactionStore.mark_released)
    unmark_released = _Call(CompactionStore.unmark_released)
    forget_objects = _Call(CompactionStore.forget_objects)


class SecurityPort(_Port[SecurityStore]):
    put_scram_credential = _Call(SecurityStore.put_scram_credential)
    delete_scram_credential = _Call(SecurityStore.delete_scram_credential)
    scram_credentials = _Call(SecurityStore.scram_credentials)
    create_acls = _Call(SecurityStore.create_acls)
    delete_acls = _Call(SecurityStore.delete_acls)
    acls = _Call(SecurityStore.acls)
    alter_client_quota = _Call(SecurityStore.alter_client_quota)
    client_quotas = _Call(SecurityStore.client_quotas)


class MetadataPorts:
    """The async face of one ``MetadataStore``: a facade per domain, two lanes of threads."""

    def __init__(self, store: MetadataStore, workers: int = DEFAULT_WORKERS) -> None:
        self.store = store
        self.main = Lane(workers, "metadata")
        self.lease = Lane(1, "metadata-lease")
        lanes = (self.main, self.lease)
        self.brokers = BrokerPort(store, *lanes)
        self.topics = TopicPort(store, *lanes)
        self.streams = StreamPort(store, *lanes)
        self.producers = ProducerPort(store, *lanes)
        self.groups = GroupPort(store, *lanes)
        self.txns = TxnPort(store, *lanes)
        self.compaction = CompactionPort(store, *lanes)
        self.security = SecurityPort(store, *lanes)

    async def run(self, fn: Callable[P, R], /, *args: P.args, **kwargs: P.kwargs) -> R:
        """Any other blocking call that talks to the store, on the ordinary pool."""
        return await self.main.run(fn, *args, **kwargs)

    def close(self) -> None:
        """Shut both pools down (the store itself is closed by its owner)."""
        self.main.close()
        self.lease.close()
