"""A metadata store whose writes stall for every broker at once (DynamoDB writes unanswered
for longer than a lease) must not make the brokers fence one another.

During the stall no lease renewal lands, so every lease in the store runs out, while reads
still answer: each broker's recovery check saw every other broker expired and fenced it (and
itself too: the check was called with the broker's id in the place of ``forget_after_ms``, so
it spared nobody); the fences landed when the stall ended, and every broker then stopped with
exit code 3. One store stall became a whole-cluster outage (the chaos lane saw it when its
moto server stalled for 12 s). A broker whose own renewal is late knows the store, not its
peers, is slow: it fences nobody while its renewal hangs, nor for a lease after a late one,
and a check whose read of the brokers took longer than a renewal interval fences nobody.

S3 and DynamoDB are a moto server of this test's own (one request at a time); the brokers
reach DynamoDB through tests/cloud/fault_proxy.py, which holds every UpdateItem (lease
renewals, fences) for two leases.
"""

from __future__ import annotations

import time
from pathlib import Path

import boto3
import pytest
from confluent_kafka import Producer
from confluent_kafka.admin import AdminClient, NewTopic

from broker_service.metadata.dynamodb import DynamoDbMetadataStore
from tests import kafka_wire as w
from tests.chaos.harness import AWS_TEST_ENV, REGION
from tests.cloud.fault_proxy import FaultProxy
from tests.cloud.test_commit_outcomes import _backends, _read_keys
from tests.support.broker import BrokerProcess, running
from tests.support.moto import MotoServer
from tests.support.wait import wait_until

LEASE_MS = 3000
PARTITIONS = 6


@pytest.mark.heavy  # a stall of two leases on purpose, under a cluster's recovery checks
def test_a_store_stall_longer_than_the_lease_fences_no_live_broker(tmp_path: Path) -> None:
    with MotoServer(tmp_path / "moto") as moto, FaultProxy(moto.endpoint) as proxy:
        bucket, table = _backends(moto.endpoint)
        store = DynamoDbMetadataStore(table, client=boto3.session.Session(
            aws_access_key_id="testing", aws_secret_access_key="testing",
            region_name=REGION).client("dynamodb", endpoint_url=moto.endpoint))  # fmt: skip
        env = dict(BROKER_STORAGE=f"s3://{bucket}/stall", BROKER_METADATA=f"dynamodb://{table}",
                   BROKER_WAL="object", BROKER_LEASE_MS=str(LEASE_MS),
                   AWS_ENDPOINT_URL=moto.endpoint, AWS_ENDPOINT_URL_DYNAMODB=proxy.endpoint,
                   **AWS_TEST_ENV)  # fmt: skip
        brokers = [BrokerProcess(tmp_path / f"b{i}", BROKER_NODE_ID=str(i), **env)
                   for i in (1, 2, 3)]  # fmt: skip
        with running(*brokers):
            _create_and_fill(brokers[0].bootstrap)
            epochs = {b.broker_id: b.epoch for b in store.brokers()}
            assert sorted(epochs) == [1, 2, 3]

            stall_s = 2 * LEASE_MS / 1000
            proxy.stall("UpdateItem", stall_s)
            ends_ms = int(time.time() * 1000 + stall_s * 1000)

            def renewed_after_the_stall() -> bool:
                stopped = [b for b in brokers if not b.alive()]
                assert not stopped, "\n".join(
                    f"broker {b.node_id} stopped:\n{b.log()}" for b in stopped
                )
                return all(r.lease_expiry_ms > ends_ms for r in store.brokers())

            wait_until(renewed_after_the_stall, 60, "every broker renewing after the stall")
            # the recovery checks of the next seconds run too, while the records go through
            _produce(brokers[0].bootstrap, range(300, 600))
            keys = _read_keys(brokers[1].bootstrap, "stall", PARTITIONS)
            after = {r.broker_id: (r.state, r.epoch) for r in store.brokers()}
            alive = [b.node_id for b in brokers if b.alive()]
        assert alive == [1, 2, 3], f"brokers stopped during the run: {alive}"
        assert after == {bid: ("ACTIVE", e) for bid, e in epochs.items()}, after
        assert sorted(keys) == list(range(600))


def _create_and_fill(bootstrap: str) -> None:
    """The topic, and records 0-299 in it."""
    admin = AdminClient({"bootstrap.servers": bootstrap})
    for f in admin.create_topics([NewTopic("stall", PARTITIONS, 1)]).values():
        f.result(30)
    _produce(bootstrap, range(0, 300))


def _produce(bootstrap: str, keys: range) -> None:
    p = Producer({"bootstrap.servers": bootstrap, "acks": "all", "enable.idempotence": True,
                  "message.timeout.ms": 60000, "log_level": 2})  # fmt: skip
    for i in keys:
        p.produce("stall", key=str(i).encode(), value=b"v", partition=i % PARTITIONS)
    assert p.flush(60) == 0


@pytest.mark.heavy  # stalls of two leases on purpose
def test_a_broker_whose_renewal_lands_last_after_a_stall_stays_listed(tmp_path: Path) -> None:
    """The store stalls for everyone, and one broker's held renewal lands 1 s after the
    others' (its requests go through a proxy of their own). The others, renewing first, read
    its lease expired: they dropped it from their live view until their next renewal, and
    their Metadata answers named it as leader of its partitions without listing it (a new
    librdkafka consumer asked for watermarks: "Local: Unknown partition", CI's failure of
    the test above). Kafka never names a leader its answer does not list, and, as with
    fencing, a store that stalled for everyone says nothing of who is alive: a broker keeps
    the others listed while it fences nobody."""
    with MotoServer(tmp_path / "moto") as moto, FaultProxy(moto.endpoint) as proxy, \
            FaultProxy(moto.endpoint) as late_proxy:  # fmt: skip
        bucket, table = _backends(moto.endpoint)
        env = dict(BROKER_STORAGE=f"s3://{bucket}/stall", BROKER_METADATA=f"dynamodb://{table}",
                   BROKER_WAL="object", BROKER_LEASE_MS=str(LEASE_MS),
                   AWS_ENDPOINT_URL=moto.endpoint, **AWS_TEST_ENV)  # fmt: skip
        brokers = [BrokerProcess(tmp_path / f"b{i}", BROKER_NODE_ID=str(i), **env,
                                 AWS_ENDPOINT_URL_DYNAMODB=(late_proxy if i == 3 else
                                                            proxy).endpoint)
                   for i in (1, 2, 3)]  # fmt: skip
        with running(*brokers):
            _create_and_fill(brokers[0].bootstrap)
            watched = brokers[1]
            assert 3 in _leaders(watched), "broker 3 leads none of the topic's partitions"

            stall_s = 2 * LEASE_MS / 1000
            late_proxy.stall("UpdateItem", stall_s + 1)
            proxy.stall("UpdateItem", stall_s)
            ends = time.monotonic() + stall_s + 1
            unlisted: list[str] = []
            while time.monotonic() < ends + LEASE_MS / 1000:
                listed, leaders = _metadata(watched)
                if listed != {1, 2, 3} or not leaders <= listed:
                    unlisted.append(f"{time.monotonic() - ends:+.1f} s: leaders {sorted(leaders)}, "
                                    f"brokers {sorted(listed)}")  # fmt: skip
                time.sleep(0.05)
            assert not unlisted, "Metadata left out live brokers:\n" + "\n".join(unlisted[:10])
            keys = _read_keys(watched.bootstrap, "stall", PARTITIONS)
            alive = [b.node_id for b in brokers if b.alive()]
        assert alive == [1, 2, 3], f"brokers stopped during the run: {alive}"
        assert sorted(keys) == list(range(300))


def _metadata(b: BrokerProcess) -> tuple[set[int], set[int]]:
    """(brokers listed, leaders named) in one Metadata answer of ``b`` for the topic."""
    with w.WireClient(b.port) as c:
        r = c.call(w.metadata_request(12, ["stall"]))
    leaders = {int(p.leader_id) for t in r.topics for p in t.partitions if p.leader_id >= 0}
    return {int(x.node_id) for x in r.brokers}, leaders


def _leaders(b: BrokerProcess) -> set[int]:
    return _metadata(b)[1]
