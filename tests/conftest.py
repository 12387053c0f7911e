from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.support.broker import BrokerProcess
from tests.support.moto import MotoServer

# Tests that must share one xdist worker (make test: --dist loadgroup), by path prefix:
# * in order on one broker: fuzzing, then "the broker is still healthy" (the last test);
# * one slow, read-only session fixture (the synthesized CDK app, `synth`): built once;
# * LocalStack: two on one host break each other (CloudWatch: "unable to open database
#   file"), and test_cleanup starts one of its own before the session's.
# (xdist_group marks would say the same, but pytest 9.2 ignores the node-id suffix they
# rely on, so the scheduler below groups by path.)
XDIST_GROUPS = {
    "tests/integration/test_bad_input.py": "bad-input",
    "tests/integration/test_fuzz.py": "fuzz",
    "tests/integration/test_sasl_fuzz.py": "sasl-fuzz",
    "tests/stacks/": "cdk-synth",
    "tests/localstack/": "localstack",
}


def pytest_xdist_make_scheduler(config: pytest.Config, log: Any) -> Any:
    if config.getvalue("dist") != "loadgroup":
        return None
    from xdist.scheduler import LoadGroupScheduling

    class PathGroupScheduling(LoadGroupScheduling):  # type: ignore[misc]
        def _split_scope(self, nodeid: str) -> str:
            path = nodeid.split("::", 1)[0]
            for prefix, group in XDIST_GROUPS.items():
                if path.startswith(prefix):
                    return group
            return str(super()._split_scope(nodeid))  # xdist_group marks, where they work

    return PathGroupScheduling(config, log)


# The longest tests first (xdist hands work out in collection order): a long test that
# started last would hold the lane open alone. A scheduling hint only; the order of the
# tests within a module is kept.
LONGEST_FIRST = (
    "tests/chaos/test_chaos.py::test_random_sigkills_lose_and_duplicate_nothing[cloud]",
    "tests/chaos/test_chaos.py::test_random_sigkills_lose_and_duplicate_nothing[embedded]",
    "tests/contract/test_dynamodb_stream_index.py::test_a_compaction_swap_writes_the_same_items_whatever_the_streams_length[300]",
    "tests/cloud/test_slow_start.py",
    "tests/cloud/test_commit_outcomes.py::test_stalled_metadata_commits_never_land_after_the_producer_gave_up",
    "tests/integration/test_limits.py::test_idle_connections_cost_little_memory",
)  # fmt: skip


def _start_rank(item: pytest.Item) -> int:
    for rank, prefix in enumerate(LONGEST_FIRST):
        if item.nodeid.startswith(prefix):
            return rank
    return len(LONGEST_FIRST)


@pytest.hookimpl(tryfirst=True)  # before -m deselects
def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    for item in items:
        if item.get_closest_marker("slow") and not item.get_closest_marker("heavy"):
            item.add_marker(pytest.mark.heavy)  # slow: the heavy lane's old name
    items.sort(key=_start_rank)  # stable: every other test keeps its place


@pytest.fixture(scope="session")
def moto_endpoint(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """One moto server subprocess per test process (each xdist worker has its own), serving
    one request at a time (tests/support/moto.py says why); stopped by its PID."""
    with MotoServer(tmp_path_factory.mktemp("moto")) as server:
        yield server.endpoint


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
