"""The README's "Kafka APIs" table is what a running broker advertises (issue 17, item 11):
every key, name and version range, compared with real ApiVersions answers (v0 and v3, the
non-flexible and the flexible encoding), so the documentation cannot drift."""

from __future__ import annotations

import re
from pathlib import Path

from kio.index import load_request_schema

from tests.broker_process import REPO, BrokerProcess
from tests.kafka_wire import WireClient, api_versions_request

ROW = re.compile(r"^\| (\d+) \| (\w+) \| (\d+)-(\d+) \|")


def readme_table() -> dict[int, tuple[str, int, int]]:
    text = Path(REPO / "README.md").read_text()
    section = text.split("## Kafka APIs", 1)[1].split("\n## ", 1)[0]
    rows = [ROW.match(line) for line in section.splitlines()]
    table = {int(m[1]): (m[2], int(m[3]), int(m[4])) for m in rows if m}
    assert len(table) == len([r for r in rows if r]), "a key is listed twice"
    return table


def _snake(name: str) -> str:
    return re.sub(r"(?<!^)(?=[A-Z])", "_", name).lower()


def test_readme_table_is_what_api_versions_advertises(broker: BrokerProcess) -> None:
    table = readme_table()
    assert len(table) >= 50
    with WireClient(broker.port) as c:
        for version in (0, 3):
            resp = c.call(api_versions_request(version))
            assert int(resp.error_code) == 0
            advertised = {int(k.api_key): (int(k.min_version), int(k.max_version))
                          for k in resp.api_keys}  # fmt: skip
            assert advertised == {k: (lo, hi) for k, (_, lo, hi) in table.items()}
    for key, (name, _lo, hi) in table.items():  # Kafka's names: the schema of that key
        schema = load_request_schema(key, hi)
        assert schema.__module__.split(".")[2] == _snake(name), (
            key, name, schema.__module__)
