"""Races between a broker coming back and the recovery that moves its partitions away: one
partition must never have two leaders, or both assign the same offsets and commit them
(duplicates, out-of-order records, acknowledged records overwritten)."""

from __future__ import annotations

from pathlib import Path

import pytest
from confluent_kafka import Producer
from confluent_kafka.admin import AdminClient, NewTopic

from broker_service.metadata.errors import ConcurrentUpdate
from broker_service.metadata.sqlite import SqliteMetadataStore
from tests.broker_process import BrokerProcess


def _produce(bootstrap: str, topic: str, n: int) -> int:
    acked = []
    p = Producer({"bootstrap.servers": bootstrap, "acks": "all", "enable.idempotence": True})
    for i in range(n):
        p.produce(topic, key=str(i).encode(), value=b"v",
                  on_delivery=lambda err, msg: acked.append(msg.offset()) if err is None
                  else None)  # fmt: skip
    assert p.flush(30) == 0
    return len(acked)


def test_restarted_broker_wins_or_loses_its_partitions_before_serving(tmp_path: Path) -> None:
    """A recoverer saw broker 1 FENCED (its lease ran out while it was down) and decided to
    move its partition; broker 1 restarts and re-registers before that move is written. The
    move was decided on a stale view, so it must lose the compare-and-set: broker 1 claims
    what the store still names it leader of (a leader-epoch bump) before serving it. Without
    that, broker 1 serves the partition it loaded as its own while the recoverer's target
    takes it over too, and both commit ranges from the same end offset (issue 18)."""
    data = tmp_path / "data"
    broker = BrokerProcess(data, BROKER_NODE_ID="1").start()
    try:
        admin = AdminClient({"bootstrap.servers": broker.bootstrap})
        for f in admin.create_topics([NewTopic("race", 1, 1)]).values():
            f.result(10)
        assert _produce(broker.bootstrap, "race", 20) == 20
        broker.kill()
        store = SqliteMetadataStore(data / "metadata.sqlite")
        me = next(b for b in store.brokers() if b.broker_id == 1)
        store.fence_broker(1, me.epoch)  # the recoverer fences the dead broker ...
        topic = store.topic("race")
        assert topic is not None
        stale = topic.partitions[0]  # ... and reads what it led, to move it
        assert stale.leader_id == 1
        broker.start()  # broker 1 comes back before the move is written
        assert _produce(broker.bootstrap, "race", 20) == 20  # and serves the partition
        with pytest.raises(ConcurrentUpdate):
            store.move_partition("race", 0, 1, stale.leader_epoch, 2)
        topic = store.topic("race")
        assert topic is not None and topic.partitions[0].leader_id == 1
        store.close()
    finally:
        broker.stop()
