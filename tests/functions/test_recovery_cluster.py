"""Recovery end to end: three real brokers on S3 + DynamoDB (moto server), one SIGKILLed,
the recovery handler invoked with a real ECS "task STOPPED" event for its task. The broker is
fenced at once (leases here are 60 s: waiting for one would fail the test), its partitions
are served by the others, and nothing acknowledged is lost (with a file WAL the new leaders
first commit what the dead broker's WAL held, from the shared disk, as with EFS)."""

from __future__ import annotations

import time
import uuid
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from confluent_kafka import Consumer, Producer, TopicPartition
from confluent_kafka.admin import AdminClient, NewTopic

from tests.support.broker import BrokerProcess
from tests.support.moto import AWS_TEST_ENV
from tests.support.wait import wait_until

from .conftest import ControlEnv, event

TASK = "arn:aws:ecs:us-east-1:123456789012:task/kafka-demo/broker{}"


def _leaders(bootstrap: str, topic: str) -> dict[int, int]:
    md = AdminClient({"bootstrap.servers": bootstrap}).list_topics(topic, timeout=10)
    return {p: m.leader for p, m in md.topics[topic].partitions.items()}


@pytest.mark.slow
@pytest.mark.parametrize("wal", ["file", "object"])
def test_sigkilled_broker_recovered_by_the_ecs_event_without_loss(
    tmp_path: Path, wal: str, control_env: ControlEnv,
    invoke: Callable[[str, dict[str, Any]], Any],
) -> None:  # fmt: skip
    bucket = f"rec-{uuid.uuid4().hex[:8]}"
    control_env.client("s3").create_bucket(Bucket=bucket)
    env = {"BROKER_STORAGE": f"s3://{bucket}/c", "BROKER_METADATA": f"dynamodb://{control_env.table}",
           "AWS_ENDPOINT_URL": control_env.endpoint, **AWS_TEST_ENV, "BROKER_LEASE_MS": "60000",
           "BROKER_WAL": wal, "BROKER_UPLOAD_INTERVAL_MS": "600000"}  # fmt: skip
    brokers = [BrokerProcess(tmp_path / "shared", BROKER_NODE_ID=str(i),
                             BROKER_TASK_ARN=TASK.format(i), **env)
               for i in (1, 2, 3)]  # fmt: skip
    dead, survivor = brokers[0], brokers[1]
    try:
        dead.start()  # alone while the topic is created: it leads all 6 partitions
        admin = AdminClient({"bootstrap.servers": dead.bootstrap})
        for f in admin.create_topics([NewTopic("rec", 6, 1)]).values():
            f.result(15)
        for b in brokers[1:]:
            b.start()
        assert set(_leaders(dead.bootstrap, "rec").values()) == {1}
        acked: dict[int, tuple[int, int]] = {}

        def on_delivery(err: object, msg: Any) -> None:
            if err is None:
                acked[int(msg.key())] = (msg.partition(), msg.offset())

        bootstrap = ",".join(b.bootstrap for b in brokers)
        p = Producer({"bootstrap.servers": bootstrap, "acks": "all", "linger.ms": 5,
                      "enable.idempotence": False, "message.timeout.ms": 60000})  # fmt: skip
        for i in range(2000):
            p.produce("rec", key=str(i).encode(), value=f"v{i}".encode(), partition=i % 6,
                      on_delivery=on_delivery)  # fmt: skip
        assert p.flush(30) == 0 and len(acked) == 2000

        dead.kill()
        killed = time.monotonic()
        out = invoke("recovery", event("ecs_task_stopped.json", taskArn=TASK.format(1)))
        assert out["broker"] == 1 and out["fenced"] == [1] and len(out["moved"]) == 6, out
        wait_until(lambda: not set(_leaders(survivor.bootstrap, "rec").values()) - {2, 3},
                   30, "the survivors never took the partitions")
        moved = time.monotonic() - killed
        for i in range(2000, 3000):  # clients follow the new leaders
            p.produce("rec", key=str(i).encode(), value=f"v{i}".encode(), partition=i % 6,
                      on_delivery=on_delivery)  # fmt: skip
        assert p.flush(60) == 0
        served = time.monotonic() - killed
        print(f"\n[{wal} WAL] partitions moved {moved:.1f} s, served again {served:.1f} s "
              "after SIGKILL (lease 60 s)")
        assert moved < 10 and served < 45, "fenced by the event, not by the lease (60 s)"
        assert len(acked) == 3000

        c = Consumer({"bootstrap.servers": survivor.bootstrap, "group.id": "rec-check",
                      "enable.auto.commit": False})  # fmt: skip
        c.assign([TopicPartition("rec", part, 0) for part in range(6)])
        got: dict[int, tuple[int, int]] = {}
        deadline = time.monotonic() + 60
        while len(got) < 3000 and time.monotonic() < deadline:
            for m in c.consume(1000, 0.5):
                assert m.error() is None, m.error()
                got[int(m.key())] = (m.partition(), m.offset())
        c.close()
        assert got == acked, "every acknowledged record, at its acknowledged offset"
    finally:
        for b in brokers:
            b.stop()
