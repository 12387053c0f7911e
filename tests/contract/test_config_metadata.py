"""Topic config overrides and cluster-wide dynamic broker configs: durable, compare-and-set,
on every backend (SQLite file, DynamoDB on moto server)."""

from __future__ import annotations

import pytest

from broker_service.metadata.errors import ConcurrentUpdate, UnknownTopic
from broker_service.metadata.store import MetadataStore

from .conftest import Backend


def test_topic_configs_compare_and_set(backend: Backend) -> None:
    a, b = backend.store(), backend.store()
    t = a.create_topic("cfg", 2, {"retention.ms": "1000"}, [1])
    updated = a.set_topic_configs("cfg", {"retention.ms": "1000"}, {"cleanup.policy": "compact"})
    assert updated.configs == {"cleanup.policy": "compact"}
    assert updated.topic_id == t.topic_id and updated.partitions == t.partitions
    assert b.topic("cfg") == updated  # durable, seen by another store instance
    with pytest.raises(ConcurrentUpdate):  # a stale expectation changes nothing
        b.set_topic_configs("cfg", {"retention.ms": "1000"}, {"retention.ms": "5"})
    assert a.topic("cfg").configs == {"cleanup.policy": "compact"}  # type: ignore[union-attr]
    assert b.set_topic_configs("cfg", {"cleanup.policy": "compact"}, {}).configs == {}
    with pytest.raises(UnknownTopic):
        a.set_topic_configs("missing", {}, {"retention.ms": "1"})


def test_topic_configs_of_a_recreated_topic_start_afresh(store: MetadataStore) -> None:
    store.create_topic("again", 1, {"retention.ms": "1"}, [1])
    store.set_topic_configs("again", {"retention.ms": "1"}, {"retention.ms": "2"})
    store.delete_topic("again")
    fresh = store.create_topic("again", 1, {}, [1])
    assert fresh.configs == {}
    assert store.set_topic_configs("again", {}, {"segment.ms": "9"}).configs == {"segment.ms": "9"}


def test_cluster_configs_compare_and_set(backend: Backend) -> None:
    a, b = backend.store(), backend.store()
    assert a.cluster_configs() == {}
    a.set_cluster_configs({}, {"log.retention.ms": "5000"})
    assert b.cluster_configs() == {"log.retention.ms": "5000"}
    with pytest.raises(ConcurrentUpdate):
        b.set_cluster_configs({}, {"message.max.bytes": "10"})
    b.set_cluster_configs({"log.retention.ms": "5000"}, {"message.max.bytes": "10"})
    assert a.cluster_configs() == {"message.max.bytes": "10"}


def test_broker_configs_are_each_brokers_own(backend: Backend) -> None:
    """Per-broker dynamic configs: one set per broker id, apart from the cluster-wide ones,
    compare-and-set as those are."""
    a, b = backend.store(), backend.store()
    assert a.broker_configs(1) == {}
    a.set_broker_configs(1, {}, {"num.io.threads": "9", "my.plugin": "x"})
    a.set_cluster_configs({}, {"num.io.threads": "4"})
    assert b.broker_configs(1) == {"num.io.threads": "9", "my.plugin": "x"}
    assert b.broker_configs(2) == {}
    assert b.cluster_configs() == {"num.io.threads": "4"}
    with pytest.raises(ConcurrentUpdate):
        b.set_broker_configs(1, {}, {"num.io.threads": "2"})
    b.set_broker_configs(1, {"num.io.threads": "9", "my.plugin": "x"}, {})
    assert a.broker_configs(1) == {}
