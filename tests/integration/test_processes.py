"""One broker process per vCPU (``serve --processes N``, runtime/processes.py), through the
real thing: the supervisor forks N brokers, each its own node id and port on one data
directory; a librdkafka client produces to and consumes from partitions led by both; SIGTERM
stops the task: every broker drains (to other tasks' brokers, never to a sibling) and
exits, and nothing acknowledged is lost."""

from __future__ import annotations

import os
from pathlib import Path

import psutil
import pytest
from confluent_kafka import Consumer, Producer, TopicPartition
from confluent_kafka.admin import AdminClient, NewTopic

from tests.support.broker import BrokerProcess, live_node_ids, start_all
from tests.support.wait import wait_until

pytestmark = pytest.mark.xdist_group("processes")  # several brokers: keep off other lanes


def _topic(bootstrap: str, name: str, partitions: int, leaders: set[int]) -> dict[int, int]:
    """Create the topic; returns partition -> leader once every partition has one of
    ``leaders``."""
    admin = AdminClient({"bootstrap.servers": bootstrap})
    admin.create_topics([NewTopic(name, partitions, 1)])[name].result(30)

    def led() -> dict[int, int] | None:
        md = admin.list_topics(name, timeout=10).topics[name]
        out = {p: m.leader for p, m in md.partitions.items()}
        return out if len(out) == partitions and set(out.values()) <= leaders else None

    wait_until(lambda: led() is not None, 30, "every partition led")
    result = led()
    assert result is not None
    return result


def _produce(bootstrap: str, topic: str, partitions: int, n: int, tag: str) -> list[str]:
    acked: list[str] = []

    def done(err: object, msg: object) -> None:
        assert err is None, err
        acked.append(msg.value().decode())  # type: ignore[attr-defined]

    p = Producer({"bootstrap.servers": bootstrap, "acks": "all", "enable.idempotence": True,
                  "linger.ms": 5, "on_delivery": done})
    for i in range(n):
        p.produce(topic, f"{tag}-{i}".encode(), partition=i % partitions)
        p.poll(0)
    assert p.flush(60) == 0
    return acked


def _consume(bootstrap: str, topic: str, partitions: int, n: int) -> list[str]:
    c = Consumer({"bootstrap.servers": bootstrap, "group.id": f"g-{topic}",
                  "enable.auto.commit": False, "auto.offset.reset": "earliest"})
    c.assign([TopicPartition(topic, p, 0) for p in range(partitions)])
    got: list[str] = []
    wait_until(lambda: got.extend(m.value().decode() for m in c.consume(1000, 0.5)
                                  if m.error() is None) or len(got) >= n, 60,
               lambda: f"{len(got)}/{n} records read back")  # fmt: skip
    c.close()
    return got


def test_a_task_of_two_broker_processes_serves_then_stops_on_sigterm(tmp_path: Path) -> None:
    task = BrokerProcess(tmp_path / "data", BROKER_PROCESSES="2", BROKER_NODE_ID="1")
    task.start()
    procs = task.info["processes"]
    try:
        assert [p["node_id"] for p in procs] == [1, 2]
        assert len({p["port"] for p in procs}) == 2 and task.port == procs[0]["port"]
        assert len({p["metrics_port"] for p in procs}) == 2
        pids = [p["pid"] for p in procs]
        assert task.info["supervisor_pid"] == task.proc.pid not in pids  # type: ignore[union-attr]
        wait_until(lambda: live_node_ids(task) == {1, 2}, 30, "both brokers of the task live")

        leaders = _topic(task.bootstrap, "spread", 4, {1, 2})
        assert set(leaders.values()) == {1, 2}, f"partitions on both processes: {leaders}"
        acked = _produce(task.bootstrap, "spread", 4, 2000, "a")
        assert sorted(_consume(task.bootstrap, "spread", 4, 2000)) == sorted(acked)
    finally:
        code = task.stop()
    assert code == 0, task.log()
    assert not any(psutil.pid_exists(pid) for pid in pids), "every broker process exited"
    assert task.log().count("stopped cleanly") == 2


def test_sigterm_drains_the_task_to_other_tasks_never_to_a_sibling(tmp_path: Path) -> None:
    data = tmp_path / "data"
    other = BrokerProcess(data, BROKER_NODE_ID="10")  # another task: one broker process
    task = BrokerProcess(data, BROKER_PROCESSES="2", BROKER_NODE_ID="1")
    start_all([other, task], formed=False)
    try:
        wait_until(lambda: live_node_ids(other) == {1, 2, 10}, 30, "three brokers live")
        leaders = _topic(other.bootstrap, "drained", 6, {1, 2, 10})
        assert {1, 2} & set(leaders.values()), f"the task leads some partitions: {leaders}"
        before = _produce(task.bootstrap, "drained", 6, 1200, "before")

        assert task.stop() == 0, task.log()
        log = task.log()
        assert log.count("draining: handing") == 2 and "to brokers [10]" in log, log
        wait_until(lambda: live_node_ids(other) == {10}, 30, "the task's brokers left")
        assert set(_topic_leaders(other.bootstrap, "drained").values()) == {10}

        after = _produce(other.bootstrap, "drained", 6, 600, "after")
        got = _consume(other.bootstrap, "drained", 6, len(before) + len(after))
        assert sorted(got) == sorted(before + after), "nothing acknowledged was lost"
    finally:
        task.stop()
        other.stop()


def _topic_leaders(bootstrap: str, name: str) -> dict[int, int]:
    md = AdminClient({"bootstrap.servers": bootstrap}).list_topics(name, timeout=10)
    return {p: m.leader for p, m in md.topics[name].partitions.items()}


def test_a_broker_process_that_dies_ends_the_task(tmp_path: Path) -> None:
    """The task is what ECS replaces: one of its brokers gone, the supervisor stops the
    other and exits non-zero."""
    task = BrokerProcess(tmp_path / "data", BROKER_PROCESSES="2", BROKER_NODE_ID="1").start()
    first, second = (p["pid"] for p in task.info["processes"])
    os.kill(second, 9)
    assert task.wait_exit(60) != 0
    assert not psutil.pid_exists(first), "the other broker was stopped too"
