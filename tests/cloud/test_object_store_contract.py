"""The ObjectStore contract: the same behaviours asserted for the local-directory store and
for the S3 store (over real HTTP against moto server)."""

from __future__ import annotations

import array
import asyncio
from collections.abc import Callable, Coroutine, Iterator
from pathlib import Path
from typing import Any, TypeVar

import pytest

from broker_service.stream.objectstore.base import Buffer, ObjectNotFound, ObjectStore
from broker_service.stream.objectstore.fs import FsObjectStore
from broker_service.stream.objectstore.s3 import S3ObjectStore

T = TypeVar("T")


def run(coro: Coroutine[Any, Any, T]) -> T:
    return asyncio.run(coro)


@pytest.fixture(params=["fs", "s3"])
def store(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[ObjectStore]:
    if request.param == "fs":
        yield FsObjectStore(tmp_path / "objects")
        return
    bucket = request.getfixturevalue("s3_bucket")
    s3 = S3ObjectStore(bucket=bucket, prefix="cluster")
    yield s3
    s3.close()


def test_put_get_round_trip_of_mixed_buffers(store: ObjectStore) -> None:
    ints = array.array("I", [1, 2, 3])  # a non-byte format: stored as its raw bytes
    parts: list[Buffer] = [
        b"head-",
        bytearray(b"middle-"),
        memoryview(b"xxtail")[2:],
        b"",
        memoryview(ints),
    ]
    run(store.put("objects/sso/a.sso", parts))
    assert run(store.get("objects/sso/a.sso")) == b"head-middle-tail" + ints.tobytes()


def test_empty_object(store: ObjectStore) -> None:
    run(store.put("empty", []))
    assert run(store.get("empty")) == b""
    assert run(store.get("empty", -10)) == b""
    assert run(store.list()) == ["empty"]


def test_ranged_and_suffix_reads(store: ObjectStore) -> None:
    data = bytes(range(256)) * 4
    run(store.put("k", [data[:100], data[100:]]))

    async def reads() -> list[bytes]:
        return list(
            await asyncio.gather(
                store.get("k", 10, 20),
                store.get("k", 0, 1),
                store.get("k", 1000),
                store.get("k", 1000, 5000),  # an end past the object: up to its end
                store.get("k", 1024),  # start at the end: nothing
                store.get("k", 7, 7),
                store.get("k", -18),  # suffix (how a stream-set object's footer is read)
                store.get("k", -5000),  # a suffix longer than the object: all of it
            )
        )

    assert run(reads()) == [
        data[10:20],
        data[:1],
        data[1000:],
        data[1000:],
        b"",
        b"",
        data[-18:],
        data,
    ]


def test_missing_key_is_object_not_found(store: ObjectStore) -> None:
    for args in [(), (5, 10), (-4,)]:
        with pytest.raises(ObjectNotFound):
            run(store.get("nope", *args))
    run(store.delete("nope"))  # deleting a missing key is fine


def test_delete(store: ObjectStore) -> None:
    run(store.put("a/1", [b"x"]))
    run(store.put("a/2", [b"y"]))
    run(store.delete("a/1"))
    with pytest.raises(ObjectNotFound):
        run(store.get("a/1"))
    assert run(store.list()) == ["a/2"]


def test_list_by_prefix_sorted(store: ObjectStore) -> None:
    keys = ["wal/broker-1/00002.wal", "wal/broker-1/00001.wal", "objects/sso/1-1-1-0.sso"]
    keys += ["wal/broker-10/00001.wal", "wal/broker-2/00001.wal"]

    async def fill() -> None:
        await asyncio.gather(*(store.put(k, [k.encode()]) for k in keys))

    run(fill())
    assert run(store.list()) == sorted(keys)
    assert run(store.list("wal/broker-1/")) == ["wal/broker-1/00001.wal", "wal/broker-1/00002.wal"]
    assert run(store.list("wal/broker-1")) == sorted(k for k in keys if "broker-1" in k)
    assert run(store.list("nothing/")) == []


def test_list_tops_names_each_first_level_prefix_once(store: ObjectStore) -> None:
    """What compaction lists the bucket by (a shard of its own objects a run, not every key)."""
    keys = ["wal/1-1-1-1.sso", "wal/1-1-2-1.sso", "so/12/a.sso", "so/3/b.sso", "sso/x.sso"]
    keys += ["loose"]

    async def fill() -> None:
        await asyncio.gather(*(store.put(k, [k.encode()]) for k in keys))

    assert run(store.list_tops()) == []
    run(fill())
    assert run(store.list_tops()) == ["loose", "so/", "sso/", "wal/"]


@pytest.mark.parametrize("key", ["/abs", "a/../b", ".."])
def test_bad_keys_are_refused(store: ObjectStore, key: str) -> None:
    ops: list[Callable[[], Coroutine[Any, Any, object]]] = [
        lambda: store.put(key, [b"x"]),
        lambda: store.get(key),
        lambda: store.delete(key),
    ]
    for op in ops:
        with pytest.raises(ValueError):
            run(op())
