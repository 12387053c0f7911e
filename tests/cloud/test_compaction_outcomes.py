"""A compaction swap whose outcome is unknown (DESIGN invariant 9): the swap's
TransactWriteItems applies and its answer is lost (500; botocore's retry then fails its own
compare-and-set). Compaction must learn that the swap landed before it deletes anything: the
new object is what the stream's ranges now name.

S3 and DynamoDB are moto server (serving one request at a time) behind fault_proxy.py, which
loses the answer of the swap; the compaction function is the one the Lambda and the brokers'
timers call."""

from __future__ import annotations

import asyncio
import itertools
import time
import uuid
from collections.abc import Iterator
from pathlib import Path

import boto3
import pytest

from broker_service.control.compaction import CompactionConfig, compact
from broker_service.metadata.dynamodb import DynamoDbMetadataStore
from broker_service.protocol.record_batch import iter_headers
from broker_service.stream.object_writer import ObjectWriter
from broker_service.stream.objectstore.s3 import S3ObjectStore
from tests import kafka_wire as w
from tests.chaos.harness import REGION
from tests.cloud.fault_proxy import LOSE_RESPONSE, FaultProxy
from tests.support.moto import MotoServer


@pytest.fixture(scope="module")
def serial_moto(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    with MotoServer(tmp_path_factory.mktemp("moto-serial")) as server:
        yield server.endpoint


def _client(service: str, endpoint: str):  # type: ignore[no-untyped-def]
    return boto3.session.Session(
        aws_access_key_id="testing", aws_secret_access_key="testing", region_name=REGION
    ).client(service, endpoint_url=endpoint)


def test_a_swap_whose_answer_was_lost_keeps_its_object(
    serial_moto: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    for name, value in {"AWS_ACCESS_KEY_ID": "testing", "AWS_SECRET_ACCESS_KEY": "testing",
                        "AWS_DEFAULT_REGION": REGION}.items():  # fmt: skip
        monkeypatch.setenv(name, value)
    bucket, table = f"cmp-{uuid.uuid4().hex[:8]}", f"cmp-{uuid.uuid4().hex[:8]}"
    _client("s3", serial_moto).create_bucket(Bucket=bucket)
    DynamoDbMetadataStore(table, client=_client("dynamodb", serial_moto)).create_table()
    objects = S3ObjectStore(bucket, "c", endpoint_url=serial_moto)
    direct = DynamoDbMetadataStore(table, client=_client("dynamodb", serial_moto))
    me = direct.register_broker(1, "h", 1, None, 600_000)
    sid = direct.create_topic("t", 1, {}, [1]).partitions[0].stream_id

    now_ms = int(time.time() * 1000)

    async def write_small_objects() -> None:
        writer = ObjectWriter(objects)
        for i in range(4):  # four small objects of 10 records each: a merge candidate
            batch = bytearray(w.build_batch([b"v%d" % n for n in range(10)], base_offset=i * 10,
                                            base_timestamp=now_ms))  # (retention keeps it)
            await writer.write(
                f"sso/1-1-{i}-{i}.sso", [(sid, [(i * 10, i * 10 + 10, now_ms, batch)])],
                lambda o: asyncio.to_thread(direct.commit_object, 1, me.epoch, o.key, o.size,
                                            o.ranges),
            )  # fmt: skip

    asyncio.run(write_small_objects())
    assert len(direct.stream_ranges(sid)) == 4
    with FaultProxy(serial_moto) as proxy:
        flaky = DynamoDbMetadataStore(table, client=_client("dynamodb", proxy.endpoint))
        calls = itertools.count()  # the first transaction takes the lease, the second swaps
        proxy.add(LOSE_RESPONSE, "POST", op="TransactWriteItems",
                  match=lambda path: next(calls) == 1)  # fmt: skip
        result = asyncio.run(compact(flaky, objects, CompactionConfig(), owner="test"))
        assert proxy.injected[LOSE_RESPONSE] == 1
    ranges = direct.stream_ranges(sid)
    assert [(r.start_offset, r.end_offset) for r in ranges] == [(0, 40)], ranges
    async def read_all() -> list[int]:
        data = await objects.get(ranges[0].object_key, ranges[0].position,
                                 ranges[0].position + ranges[0].size)  # fmt: skip
        return [h.base_offset for _, h in iter_headers(memoryview(data))]

    assert asyncio.run(read_all()) == [0, 10, 20, 30], "the swapped-in object is readable"
    assert result.swaps == 1 and result.conflicts == 0, result
