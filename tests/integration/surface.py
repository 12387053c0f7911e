"""Shared by the Kafka-surface tests (admin APIs, configs, exact semantics): a real broker
process on each backend (embedded: local directory + SQLite + file WAL; AWS: S3 + DynamoDB on
a moto server over HTTP, object WAL), a way to open its metadata store from the test (to see
what is durable), and kio-encoded raw requests for calls no client library makes."""

from __future__ import annotations

import time
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import boto3
import pytest

from broker_service.metadata.dynamodb import DynamoDbMetadataStore
from broker_service.metadata.sqlite import SqliteMetadataStore
from broker_service.metadata.store import MetadataStore
from tests.broker_process import BrokerProcess
from tests.kafka_wire import WireClient, schema_module
from tests.moto_server import AWS_TEST_ENV, REGION

BACKENDS = ["embedded", "s3-dynamodb"]


@dataclass
class Surface:
    """A broker under test and how to look behind its back."""

    broker: BrokerProcess
    backend: str
    open_store: Callable[[], MetadataStore]

    @property
    def bootstrap(self) -> str:
        return self.broker.bootstrap

    @property
    def port(self) -> int:
        return self.broker.port

    def wire(self) -> WireClient:
        return WireClient(self.port, timeout=30.0)

    def call(self, request: Any) -> Any:
        with self.wire() as c:
            return c.call(request)


def start_surface(
    backend: str, data: Path, request: pytest.FixtureRequest, **env: str
) -> Surface:
    if backend == "embedded":
        b = BrokerProcess(data, **env)
        path = data / "metadata.sqlite"
        return Surface(b.start(), backend, lambda: SqliteMetadataStore(path))
    endpoint = request.getfixturevalue("moto_endpoint")
    bucket, table = f"surface-{uuid.uuid4().hex[:8]}", f"surface-{uuid.uuid4().hex[:8]}"
    session = boto3.session.Session(
        aws_access_key_id="testing", aws_secret_access_key="testing", region_name=REGION
    )
    session.client("s3", endpoint_url=endpoint).create_bucket(Bucket=bucket)

    def store() -> DynamoDbMetadataStore:
        client = session.client("dynamodb", endpoint_url=endpoint)
        return DynamoDbMetadataStore(table, client=client)

    store().create_table()
    b = BrokerProcess(
        data,
        BROKER_STORAGE=f"s3://{bucket}/kafka",
        BROKER_METADATA=f"dynamodb://{table}",
        BROKER_WAL="object",
        AWS_ENDPOINT_URL=endpoint,
        **AWS_TEST_ENV,
        **env,
    )
    return Surface(b.start(), backend, store)


def surface_fixture(**env: str) -> Any:
    """A module-scoped fixture: one broker per backend, with ``env`` settings."""

    @pytest.fixture(scope="module", params=BACKENDS)
    def fixture(
        request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory
    ) -> Iterator[Surface]:
        data = tmp_path_factory.mktemp(f"surface-{request.param}") / "data"
        s = start_surface(request.param, data, request, **env)
        yield s
        s.broker.stop()

    return fixture


def unique(prefix: str) -> str:
    return f"{prefix}-{uuid.uuid4().hex[:8]}"


def wait_for(what: str, check: Callable[[], Any], timeout: float = 30.0) -> Any:
    """Poll ``check`` until it returns something truthy (a condition, never a fixed sleep)."""
    deadline = time.monotonic() + timeout
    last: Any = None
    while time.monotonic() < deadline:
        last = check()
        if last:
            return last
        time.sleep(0.05)
    raise AssertionError(f"timed out waiting for {what}; last: {last!r}")


def kio(api_key: int, version: int, cls: str, **fields: Any) -> Any:
    """An instance of a kio request (or nested) class of one version."""
    return getattr(schema_module(api_key, version), cls)(**fields)
