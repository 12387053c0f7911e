"""MetadataStore contract fixtures: every backend behind one ``backend`` fixture.

The DynamoDB store talks to a real moto server (tests/support/moto.py) over HTTP; no
in-process mocks. Each test gets a fresh table (or SQLite file) of its own.
"""

from __future__ import annotations

import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest

from broker_service.metadata.store import MetadataStore

REGION = "us-east-1"


@pytest.fixture(scope="session")
def dynamodb_endpoint(moto_endpoint: str) -> str:
    """The session's moto server (tests/conftest.py), serving DynamoDB."""
    return moto_endpoint


def dynamodb_client(endpoint: str) -> Any:
    import boto3

    return boto3.session.Session().client(
        "dynamodb",
        endpoint_url=endpoint,
        region_name=REGION,
        aws_access_key_id="testing",
        aws_secret_access_key="testing",
    )


@dataclass
class Backend:
    """How to open stores on one shared backing (file or table) and poke at it directly."""

    name: str
    open: Callable[[], MetadataStore]
    set_broker_state: Callable[[int, str], None]
    opened: list[MetadataStore] = field(default_factory=list)

    def store(self) -> MetadataStore:
        s = self.open()
        self.opened.append(s)
        return s


def _sqlite_backend(tmp_path: Path) -> Backend:
    import sqlite3

    from broker_service.metadata.sqlite import SqliteMetadataStore

    path = tmp_path / "metadata.sqlite"

    def set_state(broker_id: int, state: str) -> None:
        with sqlite3.connect(path) as db:
            db.execute("UPDATE brokers SET state=? WHERE broker_id=?", (state, broker_id))

    return Backend("sqlite", lambda: SqliteMetadataStore(path), set_state)


def _dynamodb_backend(endpoint: str) -> Backend:
    from broker_service.metadata.dynamodb import DynamoDbMetadataStore

    table = f"meta-{uuid.uuid4().hex[:12]}"
    DynamoDbMetadataStore(table, client=dynamodb_client(endpoint)).create_table()

    def set_state(broker_id: int, state: str) -> None:
        dynamodb_client(endpoint).update_item(
            TableName=table,
            Key={"pk": {"S": "BROKERS"}, "sk": {"S": str(broker_id)}},
            UpdateExpression="SET #s = :s",
            ExpressionAttributeNames={"#s": "state"},
            ExpressionAttributeValues={":s": {"S": state}},
        )

    return Backend(
        "dynamodb",
        lambda: DynamoDbMetadataStore(table, client=dynamodb_client(endpoint)),
        set_state,
    )


@pytest.fixture(params=["sqlite", "dynamodb"])
def backend(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Backend]:
    if request.param == "sqlite":
        b = _sqlite_backend(tmp_path)
    else:
        b = _dynamodb_backend(request.getfixturevalue("dynamodb_endpoint"))
    yield b
    for s in b.opened:
        s.close()


@pytest.fixture
def store(backend: Backend) -> MetadataStore:
    return backend.store()


# -- DynamoDB-only tests: a table of their own, and stores opened on it (closed at the end) --
@pytest.fixture
def table(dynamodb_endpoint: str) -> str:
    from broker_service.metadata.dynamodb import DynamoDbMetadataStore

    name = f"meta-{uuid.uuid4().hex[:12]}"
    DynamoDbMetadataStore(name, client=dynamodb_client(dynamodb_endpoint)).create_table()
    return name


@pytest.fixture
def open_store(dynamodb_endpoint: str, table: str) -> Iterator[Callable[[], Any]]:
    from broker_service.metadata.dynamodb import DynamoDbMetadataStore

    opened: list[DynamoDbMetadataStore] = []

    def open_() -> DynamoDbMetadataStore:
        s = DynamoDbMetadataStore(table, client=dynamodb_client(dynamodb_endpoint))
        opened.append(s)
        return s

    yield open_
    for s in opened:
        s.close()
