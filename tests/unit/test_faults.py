"""Fault plans and the latency/fault decorators of the metadata store and the object store
(broker_service/faults.py, metadata/latency.py, stream/objectstore/latency.py).

Real stores underneath (SQLite, a local directory); the sleep is recorded instead of slept
so the decisions can be checked exactly (the broker-level test sleeps for real:
tests/integration/test_slow_metadata.py).
"""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import cast

import pytest

from broker_service.config.faults import FaultPlan, InjectedFault
from broker_service.metadata import latency as metadata_faults
from broker_service.metadata.sqlite import SqliteMetadataStore
from broker_service.metadata.store import MetadataStore
from broker_service.stream.objectstore import latency as object_faults
from broker_service.stream.objectstore.fs import FsObjectStore


def test_plans_come_from_the_environment() -> None:
    assert FaultPlan.from_env("METADATA", {}) is None
    assert FaultPlan.from_env("METADATA", {"BROKER_FAULT_OBJECTS_LATENCY_MS": "5"}) is None
    plan = FaultPlan.from_env(
        "METADATA",
        {
            "BROKER_FAULT_METADATA_LATENCY_MS": "50-150",
            "BROKER_FAULT_METADATA_OPS": "commit_object, renew_lease",
            "BROKER_FAULT_METADATA_P": "0.05",
            "BROKER_FAULT_METADATA_WHEN": "both",
            "BROKER_FAULT_METADATA_SEED": "3",
        },
    )
    assert plan == FaultPlan(50, 150, frozenset({"commit_object", "renew_lease"}), 0.05, "both",
                             0.0, 3)  # fmt: skip
    only_errors = FaultPlan.from_env("OBJECTS", {"BROKER_FAULT_OBJECTS_ERROR_P": "0.5"})
    assert only_errors == FaultPlan(error_p=0.5)
    fixed = FaultPlan.from_env("OBJECTS", {"BROKER_FAULT_OBJECTS_LATENCY_MS": "20"})
    assert fixed is not None and (fixed.lo_ms, fixed.hi_ms) == (20, 20)
    bad_plans = [
        {"BROKER_FAULT_METADATA_LATENCY_MS": "150-50"},
        {"BROKER_FAULT_METADATA_ERROR_P": "2"},
        {"BROKER_FAULT_METADATA_ERROR_P": "0.1", "BROKER_FAULT_METADATA_WHEN": "never"},
    ]
    for bad in bad_plans:
        with pytest.raises(ValueError):
            FaultPlan.from_env("METADATA", bad)


def _slow(store: SqliteMetadataStore, plan: FaultPlan) -> tuple[MetadataStore, list[float]]:
    slept: list[float] = []
    wrapped = metadata_faults.FaultyMetadataStore(store, plan, sleep=slept.append)
    return cast(MetadataStore, wrapped), slept


def test_every_metadata_call_is_delayed_and_still_applied(tmp_path: Path) -> None:
    store = SqliteMetadataStore(tmp_path / "m.sqlite")
    slow, slept = _slow(store, FaultPlan(50, 150, seed=1))
    assert isinstance(slow, MetadataStore)
    me = slow.register_broker(1, "h", 1, None, 60_000)
    slow.create_topic("t", 2, {}, [1])
    assert [t.name for t in slow.topics()] == ["t"]
    slow.renew_lease(1, me.epoch, 60_000)
    assert len(slept) == 4 and all(0.05 <= s <= 0.15 for s in slept)
    slow.close()  # not an operation: never delayed
    assert len(slept) == 4


def test_chosen_operations_a_fraction_of_calls_and_a_seed(tmp_path: Path) -> None:
    store = SqliteMetadataStore(tmp_path / "m.sqlite")
    store.register_broker(1, "h", 1, None, 60_000)
    plan = FaultPlan(10, 20, frozenset({"brokers"}), p=0.3, when="both", seed=42)
    runs = []
    for _ in range(2):
        slow, slept = _slow(store, plan)
        for _ in range(200):
            slow.brokers()
            slow.topics()  # not chosen
        runs.append(slept)
    assert runs[0] == runs[1]  # same seed, same decisions
    delayed = len(runs[0]) // 2  # before and after each delayed call
    assert len(runs[0]) % 2 == 0 and 30 <= delayed <= 90  # ~0.3 of 200
    with pytest.raises(ValueError, match="unknown operations.*comit_object"):
        metadata_faults.with_faults(store, FaultPlan(1, 2, frozenset({"comit_object"})))
    assert metadata_faults.with_faults(store, None) is store


def test_an_injected_error_comes_after_the_call_applied(tmp_path: Path) -> None:
    store = SqliteMetadataStore(tmp_path / "m.sqlite")
    ambiguous, _ = _slow(store, FaultPlan(error_p=1.0, ops=frozenset({"create_topic"})))
    with pytest.raises(InjectedFault):
        ambiguous.create_topic("t", 1, {}, [1])
    assert store.topic("t") is not None  # it happened all the same
    assert ambiguous.topic("t") is not None  # other operations untouched


def test_object_store_calls_are_delayed_and_errors_come_after_the_put(tmp_path: Path) -> None:
    async def run() -> None:
        slept: list[float] = []

        async def sleep(s: float) -> None:
            slept.append(s)

        inner = FsObjectStore(tmp_path / "objects")
        slow = object_faults.FaultyObjectStore(inner, FaultPlan(5, 5, when="after"), sleep)
        await slow.put("a", [b"hello ", b"world"])
        assert await slow.get("a", 6) == b"world"
        assert await slow.list() == ["a"]
        assert slept == [0.005] * 3
        lossy = object_faults.with_faults(inner, FaultPlan(error_p=1.0, ops=frozenset({"put"})))
        with pytest.raises(InjectedFault):
            await lossy.put("b", [b"landed"])
        assert await inner.get("b") == b"landed"
        with pytest.raises(ValueError, match="unknown operations"):
            object_faults.with_faults(inner, FaultPlan(1, 1, frozenset({"head"})))

    asyncio.run(run())
