"""allocate_broker_id: unique node ids for brokers started with BROKER_NODE_ID=auto."""

from __future__ import annotations

from concurrent.futures import ThreadPoolExecutor

from broker_service.cluster.ecs_identity import allocate_node_id
from broker_service.metadata.store import MetadataStore
from tests.contract.conftest import Backend


def test_broker_ids_start_at_one_and_increase(store: MetadataStore) -> None:
    first = store.allocate_broker_id()
    assert first >= 1
    assert [store.allocate_broker_id() for _ in range(3)] == [first + 1, first + 2, first + 3]


def test_broker_ids_are_unique_across_concurrent_store_instances(backend: Backend) -> None:
    stores = [backend.store(), backend.store()]
    with ThreadPoolExecutor(4) as pool:
        ids = list(pool.map(lambda i: stores[i % 2].allocate_broker_id(), range(40)))
    assert len(set(ids)) == 40 and min(ids) >= 1


def test_allocated_node_id_skips_ids_of_registered_brokers(store: MetadataStore) -> None:
    # A cluster that mixes static ids with `auto` must not hand out a live broker's id.
    store.register_broker(1, "10.0.0.1", 9092, None, 6000)
    store.register_broker(2, "10.0.0.2", 9092, None, 6000)
    node_id = allocate_node_id(store)
    assert node_id not in (1, 2)
    assert allocate_node_id(store) > node_id
