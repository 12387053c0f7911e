"""``python -m broker_service groups``: list and describe (lag per partition) against a broker.

A 3-partition topic gets 10/20/30 records; a confluent-kafka group member reads some of them
and commits offsets 4 and 20 on partitions 0 and 1 and nothing on partition 2. The CLI runs
as a subprocess, as an operator would run it, and its table must say, per partition:

    partition  CURRENT-OFFSET  LOG-END-OFFSET  LAG   owner
    0          4               10              6     the member
    1          20              20              0     the member
    2          -               30              -     the member

Once the member leaves, the group is Empty and only the committed partitions remain, owned
by ``-``. Both the classic protocol and KIP-848 (``group.protocol=consumer``) are covered.
"""

from __future__ import annotations

import os
import socket
import struct
import subprocess
import sys
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass

import pytest
from confluent_kafka import Consumer, Producer, TopicPartition
from confluent_kafka.admin import AdminClient, NewTopic

from broker_service.ops.groups_cli import (
    PartitionRow,
    decode_consumer_assignment,
    format_offsets_table,
)
from tests.support.broker import REPO, BrokerProcess
from tests.support.wait import wait_for_value

HEADER = [
    "GROUP",
    "TOPIC",
    "PARTITION",
    "CURRENT-OFFSET",
    "LOG-END-OFFSET",
    "LAG",
    "CONSUMER-ID",
    "HOST",
    "CLIENT-ID",
]
RECORDS = {0: 10, 1: 20, 2: 30}  # partition -> records produced
COMMITS = {0: 4, 1: 20}  # partition -> committed offset (partition 2: none)
CLIENT_ID = "lag-cli-test"


@dataclass(frozen=True)
class Cli:
    returncode: int
    stdout: str
    stderr: str


def run_cli(*args: str, timeout: float = 60.0) -> Cli:
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    proc = subprocess.run(
        [sys.executable, "-m", "broker_service", "groups", *args],
        capture_output=True,
        text=True,
        timeout=timeout,
        env=env,
        cwd=REPO,
    )
    return Cli(proc.returncode, proc.stdout, proc.stderr)


def table(stdout: str) -> list[dict[str, str]]:
    """Rows of the describe table(s) as dicts keyed by the header (values hold no blanks)."""
    rows: list[dict[str, str]] = []
    header: list[str] | None = None
    for line in stdout.splitlines():
        cells = line.split()
        if not cells:
            continue
        if cells == HEADER:
            header = cells
            continue
        assert header is not None, f"row before the header: {line!r}\n{stdout}"
        assert len(cells) == len(header), f"bad row {line!r}\n{stdout}"
        rows.append(dict(zip(header, cells, strict=True)))
    return rows


def by_partition(rows: list[dict[str, str]], topic: str) -> dict[int, dict[str, str]]:
    out = {int(r["PARTITION"]): r for r in rows if r["TOPIC"] == topic}
    assert len(out) == len([r for r in rows if r["TOPIC"] == topic]), rows  # no duplicates
    return out


def unique(prefix: str) -> str:
    return f"{prefix}-{uuid.uuid4().hex[:8]}"


def create_and_fill(bootstrap: str, topic: str) -> None:
    admin = AdminClient({"bootstrap.servers": bootstrap})
    for f in admin.create_topics([NewTopic(topic, len(RECORDS), 1)]).values():
        f.result(15)
    p = Producer({"bootstrap.servers": bootstrap, "linger.ms": 5})
    for partition, n in RECORDS.items():
        for i in range(n):
            p.produce(topic, value=f"{partition}-{i}".encode(), partition=partition)
    assert p.flush(30) == 0


@pytest.fixture
def member_factory() -> Iterator[list[Consumer]]:
    made: list[Consumer] = []
    yield made
    for c in made:
        try:
            c.close()
        except RuntimeError:
            pass  # already closed


def join_and_commit(
    bootstrap: str, topic: str, group: str, protocol: str, made: list[Consumer]
) -> Consumer:
    """A member that owns all partitions, has read past the commits and committed them."""
    conf = {
        "bootstrap.servers": bootstrap,
        "group.id": group,
        "client.id": CLIENT_ID,
        "enable.auto.commit": False,
        "auto.offset.reset": "earliest",
        "fetch.wait.max.ms": 100,
    }
    if protocol == "consumer":
        conf["group.protocol"] = "consumer"
    else:
        conf["session.timeout.ms"] = 30000
    c = Consumer(conf)
    made.append(c)
    c.subscribe([topic])
    seen: dict[int, int] = {}  # partition -> highest offset read
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        msg = c.poll(0.2)
        if msg is not None and msg.error() is None:
            part, offset = msg.partition(), msg.offset()
            assert part is not None and offset is not None
            seen[part] = max(seen.get(part, -1), offset)
        owned = {tp.partition for tp in c.assignment()}
        if owned == set(RECORDS) and all(seen.get(p, -1) >= o - 1 for p, o in COMMITS.items()):
            break
    else:
        pytest.fail(f"member did not get all partitions and read them: {c.assignment()} {seen}")
    c.commit(offsets=[TopicPartition(topic, p, o) for p, o in COMMITS.items()], asynchronous=False)
    return c


def wait_describe(group: str, bootstrap: str, until: str, timeout: float = 30.0) -> Cli:
    """Run ``groups describe`` until its stderr mentions ``until`` ('' = stable: no note)."""
    def done(res: Cli) -> bool:
        return res.returncode == 0 and (until in res.stderr if until else not res.stderr.strip())

    return wait_for_value(lambda: run_cli("describe", group, "--bootstrap-server", bootstrap),
                          done, timeout, f"describe {group}: {until or 'stable'}",
                          interval=0.5)  # fmt: skip


@pytest.mark.parametrize("protocol", ["classic", "consumer"])
def test_list_and_describe_show_lag_per_partition(
    fresh_broker: BrokerProcess, member_factory: list[Consumer], protocol: str
) -> None:
    bootstrap = fresh_broker.bootstrap
    topic, group = unique("lag"), unique(f"lag-group-{protocol}")
    create_and_fill(bootstrap, topic)
    member = join_and_commit(bootstrap, topic, group, protocol, member_factory)
    member_id = member.memberid()
    assert member_id

    # -- list: the group is there, Stable
    res = run_cli("list", "--bootstrap-server", bootstrap)
    assert res.returncode == 0, res
    lines = res.stdout.splitlines()
    assert lines[0].split() == ["GROUP", "STATE"], res.stdout
    states = dict(line.split() for line in lines[1:])
    assert states.get(group) == "Stable", res.stdout
    res = run_cli("list", "--type", "--state", "stable", "--bootstrap-server", bootstrap)
    assert res.returncode == 0, res
    listed = {line.split()[0]: line.split()[1:] for line in res.stdout.splitlines()[1:]}
    want_type = "Classic" if protocol == "classic" else "Consumer"
    assert listed.get(group) == [want_type, "Stable"], res.stdout

    # -- describe while the member owns every partition
    res = wait_describe(group, bootstrap, until="")
    assert res.returncode == 0, res
    assert res.stdout.startswith("\n"), res.stdout  # kafka-consumer-groups prints a blank first
    rows = table(res.stdout)
    assert {r["GROUP"] for r in rows} == {group}
    parts = by_partition(rows, topic)
    assert sorted(parts) == [0, 1, 2], res.stdout
    expect = {0: ("4", "10", "6"), 1: ("20", "20", "0"), 2: ("-", "30", "-")}
    for p, (current, end, lag) in expect.items():
        r = parts[p]
        assert (r["CURRENT-OFFSET"], r["LOG-END-OFFSET"], r["LAG"]) == (current, end, lag), r
        assert r["CONSUMER-ID"] == member_id, r
        assert r["CLIENT-ID"] == CLIENT_ID, r
        assert r["HOST"] not in ("", "-"), r
    assert [int(r["PARTITION"]) for r in rows] == [0, 1, 2]  # ordered by topic, partition

    # -- the same through --all-groups and --group
    for args in (["--all-groups"], ["--group", group]):
        res2 = run_cli("describe", *args, "--bootstrap-server", bootstrap)
        assert res2.returncode == 0, res2
        assert by_partition(table(res2.stdout), topic) == parts

    # -- the member leaves: Empty, only the committed partitions, no owner
    member.close()
    res = wait_describe(group, bootstrap, until="has no active members")
    assert res.returncode == 0, res
    assert f"Consumer group '{group}' has no active members." in res.stderr, res
    parts = by_partition(table(res.stdout), topic)
    assert sorted(parts) == sorted(COMMITS), res.stdout
    for partition, committed in COMMITS.items():
        r = parts[partition]
        log_end = RECORDS[partition]
        assert r["CURRENT-OFFSET"] == str(committed), r
        assert r["LOG-END-OFFSET"] == str(log_end), r
        assert r["LAG"] == str(log_end - committed), r
        assert (r["CONSUMER-ID"], r["HOST"], r["CLIENT-ID"]) == ("-", "-", "-"), r

    # -- more records move the log end and the lag, not the committed offset
    producer = Producer({"bootstrap.servers": bootstrap})
    for i in range(5):
        producer.produce(topic, value=b"more-%d" % i, partition=1)
    assert producer.flush(15) == 0
    res = run_cli("describe", group, "--bootstrap-server", bootstrap)
    r = by_partition(table(res.stdout), topic)[1]
    assert (r["CURRENT-OFFSET"], r["LOG-END-OFFSET"], r["LAG"]) == ("20", "25", "5"), r


def test_describe_unknown_group(fresh_broker: BrokerProcess) -> None:
    res = run_cli("describe", "no-such-group", "--bootstrap-server", fresh_broker.bootstrap)
    assert res.returncode == 1, res
    assert "Consumer group 'no-such-group' does not exist." in res.stderr, res
    assert table(res.stdout) == []
    assert "Traceback" not in res.stderr


def test_unreachable_bootstrap_is_a_clear_error() -> None:
    with socket.socket() as bound:  # bound, never listening: refused, and no one else's
        bound.bind(("127.0.0.1", 0))
        _unreachable(bound.getsockname()[1])


def _unreachable(port: int) -> None:
    for args in (["list"], ["describe", "g"], ["describe", "--all-groups"]):
        res = run_cli(*args, "--bootstrap-server", f"127.0.0.1:{port}", timeout=30)
        assert res.returncode == 1, res
        assert res.stdout == "", res
        assert f"cannot connect to broker at 127.0.0.1:{port}" in res.stderr, res
        assert "Traceback" not in res.stderr, res
    res = run_cli("list", "--bootstrap-server", "no-port-here")
    assert res.returncode == 2, res
    assert "HOST:PORT" in res.stderr and "Traceback" not in res.stderr, res


# -- pure parts: the assignment decoder and the table layout ------------------------------


def _assignment(version: int, parts: dict[str, list[int]], user_data: bytes | None) -> bytes:
    out = struct.pack(">hi", version, len(parts))
    for topic, ps in parts.items():
        out += struct.pack(">h", len(topic)) + topic.encode() + struct.pack(">i", len(ps))
        out += b"".join(struct.pack(">i", p) for p in ps)
    if user_data is None:
        return out + struct.pack(">i", -1)
    return out + struct.pack(">i", len(user_data)) + user_data


def test_decode_consumer_assignment() -> None:
    for version in (0, 1, 3, 7):  # later versions keep the layout
        data = _assignment(version, {"a": [2, 0], "bb": [5]}, b"sticky")
        assert decode_consumer_assignment(data) == [("a", 2), ("a", 0), ("bb", 5)]
    assert decode_consumer_assignment(_assignment(0, {}, None)) == []
    assert decode_consumer_assignment(b"") == []  # a member between rebalances
    for bad in (b"\x00", b"\xff\xff", _assignment(0, {"a": [1]}, None)[:12]):
        with pytest.raises(ValueError):
            decode_consumer_assignment(bad)


def test_table_layout_matches_kafka_consumer_groups() -> None:
    rows = [
        PartitionRow("g", "t", 0, 4, 10, "consumer-1-abc", "/10.0.0.1", "c1"),
        PartitionRow("g", "a-much-longer-topic-name", 1, None, 3, "-", "-", "-"),
    ]
    # Kafka: "%-15s %-15s %-10s %-15s %-15s %-15s %-15s %-15s %s", widths grow to fit
    fmt = "{:<15} {:<24} {:<10} {:<15} {:<15} {:<15} {:<15} {:<15} {}"
    assert (
        format_offsets_table(rows)
        == "\n"
        + "\n".join(
            [
                fmt.format(*HEADER),
                fmt.format("g", "t", "0", "4", "10", "6", "consumer-1-abc", "/10.0.0.1", "c1"),
                fmt.format("g", "a-much-longer-topic-name", "1", "-", "3", "-", "-", "-", "-"),
            ]
        )
        + "\n"
    )
