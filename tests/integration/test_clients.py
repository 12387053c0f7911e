"""Real clients over TCP against a real broker process: confluent-kafka, kafka-python,
aiokafka and kcat each produce and consume 100k records (keys, headers, timestamps) spread
over every compression codec, then every client reads what each other client wrote.

Every check compares whole records in offset order, and the record batch headers the broker
serves are read raw to see the codec, producer id and sequence numbers that really arrived.

All of it runs twice: on the embedded default (local directory + SQLite + file WAL) and on
S3 + DynamoDB served by a moto server over HTTP, with the object WAL.
"""

from __future__ import annotations

import math
import uuid
from collections.abc import Iterator

import boto3
import pytest

from broker_service.metadata.dynamodb import DynamoDbMetadataStore
from tests.support.broker import BrokerProcess
from tests.support.clients import (
    CLIENTS,
    CODEC_IDS,
    CODECS,
    CONSUME,
    PER_RECORD,
    PRODUCE,
    Record,
    api_versions,
    assert_batches,
    assert_records,
    create_topic,
    kafka_python_produce,
    librdkafka_codec,
    make_records,
    now_ms,
    stored_batches,
)
from tests.support.moto import AWS_TEST_ENV, REGION


# the matrix on S3 + DynamoDB (moto) is the heavy lane's; the embedded one runs in both
@pytest.fixture(scope="module",
                params=["embedded", pytest.param("s3-dynamodb", marks=pytest.mark.heavy)])
def broker(
    request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[BrokerProcess]:
    """This module's broker, once per backend."""
    data = tmp_path_factory.mktemp(f"clients-{request.param}") / "data"
    if request.param == "embedded":
        b = BrokerProcess(data)
    else:
        endpoint = request.getfixturevalue("moto_endpoint")
        bucket, table = f"clients-{uuid.uuid4().hex[:8]}", f"clients-{uuid.uuid4().hex[:8]}"
        session = boto3.session.Session(aws_access_key_id="testing",
                                        aws_secret_access_key="testing", region_name=REGION)
        session.client("s3", endpoint_url=endpoint).create_bucket(Bucket=bucket)
        DynamoDbMetadataStore(
            table, client=session.client("dynamodb", endpoint_url=endpoint)
        ).create_table()
        b = BrokerProcess(data, BROKER_STORAGE=f"s3://{bucket}/kafka",
                          BROKER_METADATA=f"dynamodb://{table}", BROKER_WAL="object",
                          AWS_ENDPOINT_URL=endpoint, **AWS_TEST_ENV)
    b.start()
    yield b
    b.stop()


RECORDS_PER_CLIENT = 100_000
PER_CODEC = math.ceil(RECORDS_PER_CLIENT / len(CODECS))  # 20k x 5 codecs per client
CROSS_RECORDS = 5_000
LIBRDKAFKA = ("confluent", "kcat")
# Producers that write a producer id and sequence numbers (idempotence on).
IDEMPOTENT = {"confluent": True, "kafka-python": True, "aiokafka": False, "kcat": False}


def expected_codec(bootstrap: str, client: str, codec: str) -> str:
    """What the client puts on the wire for `codec` (librdkafka may silently not compress)."""
    if client in LIBRDKAFKA:
        return librdkafka_codec(client, codec, api_versions(bootstrap))[0]
    return codec


def produce_and_consume(
    bootstrap: str, topic: str, producer: str, consumer: str, codec: str, n: int,
    *, kafka_python_defaults: bool = False,
) -> list[Record]:
    """Produce n records with `producer`, read them back with `consumer`, check them all."""
    create_topic(bootstrap, topic)
    want = make_records(producer, codec, n, per_record=PER_RECORD[producer])
    before = now_ms()
    if kafka_python_defaults:
        assert producer == "kafka-python"
        kafka_python_produce(bootstrap, topic, want, codec, tuned=False)
    else:
        PRODUCE[producer](bootstrap, topic, want, codec)
    after = now_ms()
    got = CONSUME[consumer](bootstrap, topic, n)
    assert_records(got, want, None if PER_RECORD[producer] else (before, after))
    assert_batches(bootstrap, topic, expected_codec(bootstrap, producer, codec), n,
                   idempotent=IDEMPOTENT[producer])
    return got


@pytest.mark.parametrize(
    ("client", "codec"),
    [pytest.param(client, codec, id=f"{client}-{codec}") for client in CLIENTS for codec in CODECS],
)
def test_client_roundtrip(broker: BrokerProcess, client: str, codec: str) -> None:
    """One client writes and reads back PER_CODEC records with one codec: over the five
    codecs every client produces and consumes RECORDS_PER_CLIENT records."""
    produce_and_consume(broker.bootstrap, f"clients-{client}-{codec}", client, client, codec,
                        PER_CODEC)


CROSS = [(p, c) for p in CLIENTS for c in CLIENTS if p != c]


@pytest.mark.parametrize(
    ("producer", "consumer", "codec"),
    [pytest.param(p, c, CODECS[i % len(CODECS)], id=f"{p}-to-{c}-{CODECS[i % len(CODECS)]}")
     for i, (p, c) in enumerate(CROSS)],
)
def test_cross_client(broker: BrokerProcess, producer: str, consumer: str, codec: str) -> None:
    """What one client wrote, another reads identically (every ordered pair of clients).
    kafka-python produces with its defaults here: idempotent, 16 KiB batches, no linger."""
    produce_and_consume(broker.bootstrap, f"cross-{producer}-to-{consumer}-{codec}", producer,
                        consumer, codec, CROSS_RECORDS,
                        kafka_python_defaults=producer == "kafka-python")


@pytest.mark.parametrize(
    ("client", "codec"),
    [pytest.param(client, codec, id=f"{client}-{codec}")
     for client in LIBRDKAFKA for codec in CODECS if codec != "none"],
)
def test_librdkafka_compresses(broker: BrokerProcess, client: str, codec: str) -> None:
    """librdkafka really compresses with the codec asked for: it reads the broker's
    ApiVersions and quietly sends uncompressed when they fail its feature checks."""
    topic = f"wire-{client}-{codec}"
    create_topic(broker.bootstrap, topic)
    records = make_records(client, codec, 2_000, per_record=PER_RECORD[client])
    PRODUCE[client](broker.bootstrap, topic, records, codec)
    batches = stored_batches(broker.bootstrap, topic)
    codecs = {b.codec for b in batches}
    _, why = librdkafka_codec(client, codec, api_versions(broker.bootstrap))
    assert why is None, why
    # librdkafka sends a batch uncompressed when compressing would not shrink it (a small
    # last batch, depending on how lingering split the records): most records compressed
    assert codecs <= {0, CODEC_IDS[codec]}, f"asked for {codec}, stored codec ids {codecs}"
    compressed = sum(b.count for b in batches if b.codec == CODEC_IDS[codec])
    assert compressed >= 0.9 * sum(b.count for b in batches), (
        f"asked for {codec}: {compressed} of {sum(b.count for b in batches)} records compressed"
    )


def test_read_back_after_restart(fresh_broker: BrokerProcess) -> None:
    """Every client's compressed batches survive a graceful restart (SIGTERM) and another
    client reads them back unchanged from what the new broker process recovered."""
    bootstrap = fresh_broker.bootstrap
    written: list[tuple[str, str, str, list[Record], tuple[int, int] | None]] = []
    for i, producer in enumerate(CLIENTS):
        codec = CODECS[1 + i % (len(CODECS) - 1)]  # gzip, snappy, lz4, zstd
        topic = f"restart-{producer}-{codec}"
        create_topic(bootstrap, topic)
        want = make_records(producer, codec, CROSS_RECORDS, per_record=PER_RECORD[producer])
        before = now_ms()
        PRODUCE[producer](bootstrap, topic, want, codec)
        window = None if PER_RECORD[producer] else (before, now_ms())
        written.append((producer, topic, codec, want, window))
    assert fresh_broker.stop() == 0, fresh_broker.log()
    fresh_broker.start()
    for i, (producer, topic, codec, want, window) in enumerate(written):
        consumer = CLIENTS[(i + 1) % len(CLIENTS)]
        got = CONSUME[consumer](bootstrap, topic, len(want))
        assert_records(got, want, window)
        assert_batches(bootstrap, topic, expected_codec(bootstrap, producer, codec), len(want),
                       idempotent=IDEMPOTENT[producer])
