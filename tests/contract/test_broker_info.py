"""Broker info (task ARN, private IP, metrics URL) of the MetadataStore contract, on every
backend: what the recovery function maps an ECS task to, and where the balancer scrapes."""

from __future__ import annotations

import pytest

from broker_service.metadata.errors import BrokerFenced
from broker_service.metadata.store import MetadataStore

from .conftest import Backend


def test_info_is_set_per_broker_and_replaced(store: MetadataStore) -> None:
    a = store.register_broker(1, "10.0.0.1", 9092, None, 10_000)
    b = store.register_broker(2, "10.0.0.2", 9092, None, 10_000)
    assert store.broker_info() == {}
    store.set_broker_info(1, a.epoch, {"task_arn": "arn:aws:ecs:t/1", "metrics_url": "u1"})
    store.set_broker_info(2, b.epoch, {"task_arn": "arn:aws:ecs:t/2"})
    assert store.broker_info() == {
        1: {"task_arn": "arn:aws:ecs:t/1", "metrics_url": "u1"},
        2: {"task_arn": "arn:aws:ecs:t/2"},
    }
    store.set_broker_info(1, a.epoch, {"task_arn": "arn:aws:ecs:t/9"})  # replaced, not merged
    assert store.broker_info()[1] == {"task_arn": "arn:aws:ecs:t/9"}


def test_a_fenced_or_stale_epoch_cannot_set_info(store: MetadataStore, backend: Backend) -> None:
    a = store.register_broker(1, "h", 9092, None, 10_000)
    store.set_broker_info(1, a.epoch, {"task_arn": "old"})
    store.fence_broker(1, a.epoch)
    with pytest.raises(BrokerFenced):
        store.set_broker_info(1, a.epoch, {"task_arn": "zombie"})
    with pytest.raises(BrokerFenced):
        store.set_broker_info(2, 1, {"task_arn": "never registered"})
    again = store.register_broker(1, "h", 9092, None, 10_000)  # a new task takes the id
    with pytest.raises(BrokerFenced):
        store.set_broker_info(1, a.epoch, {"task_arn": "stale epoch"})
    store.set_broker_info(1, again.epoch, {"task_arn": "new"})
    assert backend.store().broker_info() == {1: {"task_arn": "new"}}  # seen by other clients
