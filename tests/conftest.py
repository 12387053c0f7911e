from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from tests import moto_server
from tests.broker_process import BrokerProcess


@pytest.fixture(scope="session")
def moto_endpoint(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """One moto server subprocess for the session, stopped by its PID at the end."""
    proc, endpoint = moto_server.start(tmp_path_factory.mktemp("moto") / "moto.log")
    try:
        yield endpoint
    finally:
        moto_server.stop(proc)


@pytest.fixture(scope="session")
def broker(tmp_path_factory: pytest.TempPathFactory) -> Iterator[BrokerProcess]:
    """One real broker process shared by the read-only / independent-topic tests."""
    b = BrokerProcess(tmp_path_factory.mktemp("shared-broker") / "data").start()
    yield b
    b.stop()


@pytest.fixture
def fresh_broker(tmp_path: Path) -> Iterator[BrokerProcess]:
    """A broker of its own (restart, kill and bad-input tests)."""
    b = BrokerProcess(tmp_path / "data").start()
    yield b
    b.stop()
