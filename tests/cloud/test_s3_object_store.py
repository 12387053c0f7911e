"""S3ObjectStore over real HTTP: moto server, and a fault-injecting proxy in front of it for
retries, timeouts, lost responses, truncated bodies and failed multipart uploads."""

from __future__ import annotations

import asyncio
import io
import random
import time
from collections.abc import Coroutine, Iterator
from typing import Any, TypeVar

import pytest
from botocore.exceptions import ClientError

from broker_service.stream.object_format import (
    FOOTER_SIZE,
    StreamSetObjectBuilder,
    parse_footer,
    parse_index,
)
from broker_service.stream.objectstore.base import ObjectExists, ObjectNotFound
from broker_service.stream.objectstore.s3 import (
    TOKEN_METADATA,
    BufferListReader,
    MiB,
    S3ObjectStore,
    slice_buffers,
)
from tests.support.wait import wait_until_async

from .conftest import s3_client
from .fault_proxy import BAD_REQUEST, HANG, LOSE_RESPONSE, SLOWDOWN, TRUNCATE, FaultProxy

T = TypeVar("T")


def run(coro: Coroutine[Any, Any, T]) -> T:
    return asyncio.run(coro)


class Calls:
    """Counts the S3 operations a store's client makes (botocore's event hooks)."""

    def __init__(self, store: S3ObjectStore, *ops: str) -> None:
        self.n = dict.fromkeys(ops, 0)
        for op in ops:
            store.client.meta.events.register(f"before-call.s3.{op}", self._hook(op))

    def _hook(self, op: str) -> Any:
        def hook(**kwargs: Any) -> None:
            self.n[op] += 1

        return hook


@pytest.fixture
def stores() -> Iterator[list[S3ObjectStore]]:
    """Stores made by a test, closed at its end."""
    made: list[S3ObjectStore] = []
    yield made
    for s in made:
        s.close()


def make(stores: list[S3ObjectStore], bucket: str, **kwargs: Any) -> S3ObjectStore:
    s = S3ObjectStore(bucket=bucket, **kwargs)
    stores.append(s)
    return s


def blob(n: int, seed: int = 1) -> bytes:
    return random.Random(seed).randbytes(n)


# -- endpoint, prefix ----------------------------------------------------------------------
@pytest.mark.parametrize("variable", ["AWS_ENDPOINT_URL_S3", "AWS_ENDPOINT_URL"])
def test_endpoint_comes_from_the_standard_variables(
    variable: str,
    s3_bucket: str,
    moto_endpoint: str,
    monkeypatch: pytest.MonkeyPatch,
    stores: list[Any],
) -> None:
    """No endpoint_url given: botocore's own resolution, as for LocalStack or moto server.
    AWS_ENDPOINT_URL_S3 wins over a generic AWS_ENDPOINT_URL pointing nowhere."""
    monkeypatch.delenv("AWS_ENDPOINT_URL_S3")
    if variable == "AWS_ENDPOINT_URL_S3":
        monkeypatch.setenv("AWS_ENDPOINT_URL", "http://127.0.0.1:9")
    monkeypatch.setenv(variable, moto_endpoint)
    s = make(stores, s3_bucket)
    run(s.put("k", [b"v"]))
    assert s3_client(moto_endpoint).get_object(Bucket=s3_bucket, Key="k")["Body"].read() == b"v"
    assert run(s.get("k")) == b"v"


def test_keys_live_under_the_prefix(s3_bucket: str, moto_endpoint: str, stores: list[Any]) -> None:
    a = make(stores, s3_bucket, prefix="cluster-a")  # a folder: "cluster-a/" + key
    b = make(stores, s3_bucket, prefix="cluster-b/")
    run(a.put("objects/x", [b"1"]))
    run(b.put("objects/y", [b"2"]))
    raw = s3_client(moto_endpoint).list_objects_v2(Bucket=s3_bucket)
    assert sorted(o["Key"] for o in raw["Contents"]) == [
        "cluster-a/objects/x",
        "cluster-b/objects/y",
    ]
    assert run(a.list()) == ["objects/x"]
    assert run(b.list("objects/")) == ["objects/y"]
    with pytest.raises(ObjectNotFound):
        run(a.get("objects/y"))


def test_reading_past_the_end_is_empty(s3_bucket: str, stores: list[Any]) -> None:
    s = make(stores, s3_bucket)
    run(s.put("k", [b"0123456789"]))
    assert run(s.get("k", 11)) == b""  # S3 answers 416 InvalidRange
    assert run(s.get("k", 50, 60)) == b""
    with pytest.raises(ValueError):
        run(s.get("k", -3, 5))


# -- multipart -----------------------------------------------------------------------------
def test_multipart_round_trip_from_many_buffers(
    s3_bucket: str, moto_endpoint: str, stores: list[Any]
) -> None:
    s = make(stores, s3_bucket, multipart_threshold=5 * MiB, part_size=5 * MiB)
    calls = Calls(s, "PutObject", "UploadPart", "CompleteMultipartUpload")
    data = blob(12 * MiB + 12345)
    # uneven buffers of every kind, so part boundaries fall inside them
    cuts = [0, 7, 3 * MiB + 1, 5 * MiB - 3, 5 * MiB + 100, 11 * MiB, len(data)]
    parts: list[Any] = []
    for i, (lo, hi) in enumerate(zip(cuts, cuts[1:], strict=False)):
        chunk = data[lo:hi]
        parts.append([chunk, bytearray(chunk), memoryview(chunk)][i % 3])
    run(s.put("big", parts))
    assert calls.n == {"PutObject": 0, "UploadPart": 3, "CompleteMultipartUpload": 1}
    head = s3_client(moto_endpoint).head_object(Bucket=s3_bucket, Key="big")
    assert head["ETag"].endswith('-3"') and head["ContentLength"] == len(data)
    assert run(s.get("big")) == data
    assert run(s.get("big", 5 * MiB - 10, 5 * MiB + 10)) == data[5 * MiB - 10 : 5 * MiB + 10]
    assert run(s.get("big", -100)) == data[-100:]
    # at the threshold itself: one plain PUT
    run(s.put("at-threshold", [data[: 5 * MiB]]))
    assert calls.n["PutObject"] == 1


def test_put_refuses_an_existing_key(s3_bucket: str, moto_endpoint: str, stores: list[Any]) -> None:
    s = make(stores, s3_bucket, multipart_threshold=5 * MiB, part_size=5 * MiB)
    run(s.put("k", [b"first"]))
    with pytest.raises(ObjectExists) as e:
        run(s.put("k", [b"second"]))
    assert e.value.key == "k"
    with pytest.raises(ObjectExists):  # the multipart path refuses it too, and cleans up
        run(s.put("k", [blob(6 * MiB)]))
    assert run(s.get("k")) == b"first"
    uploads = s3_client(moto_endpoint).list_multipart_uploads(Bucket=s3_bucket)
    assert uploads.get("Uploads", []) == []


def test_failed_part_aborts_the_upload(
    s3_bucket: str, moto_endpoint: str, stores: list[Any]
) -> None:
    with FaultProxy(moto_endpoint) as proxy:
        proxy.add(BAD_REQUEST, "PUT", lambda path: "partNumber=2" in path)
        s = make(
            stores,
            s3_bucket,
            endpoint_url=proxy.endpoint,
            multipart_threshold=5 * MiB,
            part_size=5 * MiB,
        )
        with pytest.raises(ClientError, match="InvalidRequest"):
            run(s.put("big", [blob(11 * MiB)]))
        assert [p.split("?")[0] for p, _ in proxy.methods("DELETE")] == [f"/{s3_bucket}/big"]
    raw = s3_client(moto_endpoint)
    assert raw.list_multipart_uploads(Bucket=s3_bucket).get("Uploads", []) == []
    assert raw.list_objects_v2(Bucket=s3_bucket).get("KeyCount") == 0


@pytest.mark.parametrize("during", ["POST", "PUT"])  # CreateMultipartUpload, UploadPart
def test_cancelled_multipart_put_aborts_the_upload(
    during: str, s3_bucket: str, moto_endpoint: str, stores: list[Any]
) -> None:
    with FaultProxy(moto_endpoint) as proxy:
        s = make(
            stores,
            s3_bucket,
            endpoint_url=proxy.endpoint,
            multipart_threshold=5 * MiB,
            part_size=5 * MiB,
        )

        async def main() -> None:
            proxy.delay = 0.3  # requests are on the wire when the put is cancelled
            task = asyncio.create_task(s.put("big", [blob(11 * MiB)]))
            await wait_until_async(lambda: during in proxy.started, 30, f"a {during} request")
            task.cancel()
            with pytest.raises(asyncio.CancelledError):
                await task

        run(main())
        # the abort came after the requests already sent had ended, and nothing after it
        methods = [m for m, _, _ in proxy.seen]
        assert methods[0] == "POST" and methods[-1] == "DELETE" and methods.count("DELETE") == 1
        assert "POST" not in methods[1:]  # never completed
        assert len(proxy.started) == len(methods)
    raw = s3_client(moto_endpoint)
    assert raw.list_multipart_uploads(Bucket=s3_bucket).get("Uploads", []) == []
    assert raw.list_objects_v2(Bucket=s3_bucket).get("KeyCount") == 0


# -- list ----------------------------------------------------------------------------------
def test_list_paginates(s3_bucket: str, stores: list[Any]) -> None:
    s = make(stores, s3_bucket, prefix="p", list_page_size=3)
    calls = Calls(s, "ListObjectsV2")
    keys = [f"wal/{i:03d}" for i in range(10)]

    async def fill() -> None:
        await asyncio.gather(*(s.put(k, [b"x"]) for k in [*keys, "other/1"]))

    run(fill())
    assert run(s.list("wal/")) == keys
    assert calls.n["ListObjectsV2"] == 4  # 3 + 3 + 3 + 1


def test_list_tops_asks_s3_for_the_first_level_only(s3_bucket: str, stores: list[Any]) -> None:
    s = make(stores, s3_bucket, prefix="p", list_page_size=3)
    calls = Calls(s, "ListObjectsV2")
    keys = [f"so/{i}/{j}.sso" for i in range(5) for j in range(20)] + ["wal/1.sso"]

    async def fill() -> None:
        await asyncio.gather(*(s.put(k, [b"x"]) for k in keys))

    run(fill())
    assert run(s.list_tops()) == ["so/", "wal/"]
    assert calls.n["ListObjectsV2"] == 1  # a delimited listing: two prefixes, no keys


# -- retries, timeouts ---------------------------------------------------------------------
def test_slowdown_is_retried_with_backoff(
    s3_bucket: str, moto_endpoint: str, stores: list[Any]
) -> None:
    with FaultProxy(moto_endpoint) as proxy:
        proxy.add(SLOWDOWN, "PUT", times=2)
        s = make(stores, s3_bucket, endpoint_url=proxy.endpoint)
        run(s.put("k", [b"hello"]))
        assert [status for _, status in proxy.methods("PUT")] == [503, 503, 200]
        assert run(s.get("k")) == b"hello"


def test_retries_give_up_after_max_attempts(
    s3_bucket: str, moto_endpoint: str, stores: list[Any]
) -> None:
    with FaultProxy(moto_endpoint) as proxy:
        proxy.add(SLOWDOWN, "GET", times=5)
        s = make(stores, s3_bucket, endpoint_url=proxy.endpoint, max_attempts=2)
        run(s.put("k", [b"hello"]))
        with pytest.raises(ClientError, match="SlowDown"):
            run(s.get("k"))
        assert len(proxy.methods("GET")) == 2


def test_read_timeout_is_retried(s3_bucket: str, moto_endpoint: str, stores: list[Any]) -> None:
    with FaultProxy(moto_endpoint, hang_seconds=1.5) as proxy:
        proxy.add(HANG, "GET")
        s = make(stores, s3_bucket, endpoint_url=proxy.endpoint, read_timeout=0.3)
        run(s.put("k", [b"hello"]))
        t0 = time.monotonic()
        assert run(s.get("k", 1, 3)) == b"el"
        assert time.monotonic() - t0 < 1.4  # it did not wait for the hung request


def test_truncated_body_is_retried(s3_bucket: str, moto_endpoint: str, stores: list[Any]) -> None:
    data = blob(100_000)
    with FaultProxy(moto_endpoint) as proxy:
        proxy.add(TRUNCATE, "GET")
        s = make(stores, s3_bucket, endpoint_url=proxy.endpoint)
        run(s.put("k", [data]))
        assert run(s.get("k", 10)) == data[10:]
        assert len(proxy.methods("GET")) == 2


def test_a_lost_put_response_is_not_a_conflict(
    s3_bucket: str, moto_endpoint: str, stores: list[Any]
) -> None:
    with FaultProxy(moto_endpoint) as proxy:
        proxy.add(LOSE_RESPONSE, "PUT")  # the PUT lands, the client sees a 500 and retries
        s = make(stores, s3_bucket, endpoint_url=proxy.endpoint)
        run(s.put("k", [b"mine"]))  # the retry meets its own object (412): success
        assert [status for _, status in proxy.methods("PUT")] == [500, 412]
        assert run(s.get("k")) == b"mine"
        with pytest.raises(ObjectExists):  # another put of the same key is still refused
            run(s.put("k", [b"theirs"]))
    head = s3_client(moto_endpoint).head_object(Bucket=s3_bucket, Key="k")
    assert TOKEN_METADATA in head["Metadata"]


# -- concurrency ---------------------------------------------------------------------------
def test_concurrency_is_bounded_and_the_loop_never_blocks(
    s3_bucket: str, moto_endpoint: str, stores: list[Any]
) -> None:
    with FaultProxy(moto_endpoint) as proxy:
        s = make(stores, s3_bucket, endpoint_url=proxy.endpoint, max_concurrency=2)
        run(s.put("k", [b"0123456789"]))
        proxy.delay = 0.1

        async def main() -> tuple[list[bytes], int]:
            ticks = 0
            done = False

            async def ticker() -> None:
                nonlocal ticks
                while not done:
                    await asyncio.sleep(0.01)
                    ticks += 1

            t = asyncio.create_task(ticker())
            got = await asyncio.gather(*(s.get("k", i, i + 1) for i in range(8)))
            done = True
            await t
            return got, ticks

        t0 = time.monotonic()
        got, ticks = run(main())
        elapsed = time.monotonic() - t0
    assert got == [str(i).encode() for i in range(8)]
    assert proxy.max_in_flight == 2
    assert elapsed >= 0.4  # 8 requests of 0.1 s, two at a time
    # the loop kept ticking while requests were out: a loop blocked by each 0.1 s request
    # would tick about once a request (8). Not a rate (half of elapsed / 10 ms failed once on
    # a loaded host: 52 ticks in 1.28 s), a count that a blocked loop cannot reach
    assert ticks >= 3 * 8, ticks


def test_a_store_outlives_its_event_loop(s3_bucket: str, stores: list[Any]) -> None:
    """Used from one asyncio.run after another (a warm Lambda), with requests queueing."""
    s = make(stores, s3_bucket, max_concurrency=1)
    run(s.put("k", [b"abc"]))

    async def reads() -> list[bytes]:
        return list(await asyncio.gather(*(s.get("k", i, i + 1) for i in range(3))))

    assert run(reads()) == run(reads()) == [b"a", b"b", b"c"]


# -- the stream-set object format on S3 ----------------------------------------------------
def test_stream_set_object_blocks_read_back_by_range(s3_bucket: str, stores: list[Any]) -> None:
    """Build a multi-stream object (big enough for a multipart upload), then read it the way
    the fetch path does: footer by suffix read, index by range, each block by range."""
    s = make(stores, s3_bucket, multipart_threshold=5 * MiB, part_size=5 * MiB)
    rnd = random.Random(7)
    streams: dict[int, list[tuple[int, int, int, bytes]]] = {}
    for sid in (3, 11, 42):
        batches, offset = [], 1000 * sid
        for _ in range(60):
            n = rnd.randint(1, 40)
            batches.append(
                (
                    offset,
                    offset + n,
                    rnd.randint(0, 10**12),
                    rnd.randbytes(rnd.randint(10_000, 150_000)),
                )
            )
            offset += n
        streams[sid] = batches
    builder = StreamSetObjectBuilder(block_bytes=1 * MiB)
    for sid, batches in streams.items():
        builder.add_stream(sid, batches)
    parts = builder.build()
    assert builder.size > 5 * MiB  # so it goes up as a multipart upload
    run(s.put("objects/sso/1-1-0-0.sso", parts))

    async def read_back() -> dict[int, list[bytes]]:
        key = "objects/sso/1-1-0-0.sso"
        pos, size = parse_footer(await s.get(key, -FOOTER_SIZE))
        entries = parse_index(await s.get(key, pos, pos + size))
        assert entries == builder.entries
        blocks = await asyncio.gather(
            *(s.get(key, e.position, e.position + e.size) for e in entries)
        )
        out: dict[int, list[bytes]] = {}
        for e, block in zip(entries, blocks, strict=True):
            out.setdefault(e.stream_id, []).append(block)
        return out

    got = run(read_back())
    for sid, batches in streams.items():
        assert b"".join(got[sid]) == b"".join(b for *_, b in batches)
        assert len(got[sid]) > 1  # each stream spans several 1 MiB blocks
    for span in builder.spans:  # the byte span the metadata store records, in one read
        whole = run(s.get("objects/sso/1-1-0-0.sso", span.position, span.position + span.size))
        assert whole == b"".join(b for *_, b in streams[span.stream_id])


# -- the pieces ----------------------------------------------------------------------------
def test_buffer_list_reader_reads_seeks_and_slices() -> None:
    data = bytes(range(200))
    views = [memoryview(data)[lo:hi] for lo, hi in [(0, 3), (3, 4), (4, 150), (150, 200)]]
    r = BufferListReader(views)
    assert r.read(2) == data[:2] and r.read(5) == data[2:7]
    assert r.tell() == 7
    buf = bytearray(100)
    assert r.readinto(buf) == 100 and bytes(buf) == data[7:107]
    assert r.read() == data[107:] and r.read(10) == b""
    assert r.seek(0, io.SEEK_END) == 200 and r.seek(-5, io.SEEK_CUR) == 195
    assert r.read() == data[195:]
    r.seek(0)
    assert r.read(-1) == data
    for lo, hi in [(0, 200), (2, 5), (3, 4), (149, 151), (0, 0), (199, 200)]:
        assert b"".join(slice_buffers(views, lo, hi)) == data[lo:hi]


def test_bad_settings_are_refused() -> None:
    with pytest.raises(ValueError):
        S3ObjectStore(bucket="b", part_size=1 * MiB)  # below S3's 5 MiB part minimum
    with pytest.raises(ValueError):
        S3ObjectStore(bucket="b", list_page_size=5000)
