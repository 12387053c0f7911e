from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.broker_process import BrokerProcess


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
