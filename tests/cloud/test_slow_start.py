"""A broker whose start outlasts its lease (a slow metadata store, many partitions to load)
keeps its lease while it starts: the other brokers must not fence it before it serves (in the
chaos lane, restarted brokers were fenced right after re-registering and exited with code 3).

S3 and DynamoDB are a moto server serving one request at a time; the restarted broker reaches
DynamoDB through fault_proxy.py, which delays every request."""

from __future__ import annotations

import time
from pathlib import Path

import boto3
import pytest
from confluent_kafka import Producer
from confluent_kafka.admin import AdminClient, NewTopic

from broker_service.metadata.dynamodb import DynamoDbMetadataStore
from tests.broker_process import BrokerProcess
from tests.chaos.harness import AWS_TEST_ENV, REGION
from tests.cloud.fault_proxy import FaultProxy
from tests.cloud.test_commit_outcomes import _backends, serial_moto  # noqa: F401 (fixture)


@pytest.mark.heavy  # about a minute: a start slowed past its lease on purpose
def test_a_slow_start_keeps_the_lease(tmp_path: Path, serial_moto: str) -> None:  # noqa: F811
    bucket, table = _backends(serial_moto)
    env = dict(BROKER_STORAGE=f"s3://{bucket}/slow", BROKER_METADATA=f"dynamodb://{table}",
               BROKER_WAL="object", BROKER_LEASE_MS="3000", AWS_ENDPOINT_URL=serial_moto,
               **AWS_TEST_ENV)  # fmt: skip
    first = BrokerProcess(tmp_path / "a", BROKER_NODE_ID="1", **env).start(timeout=60)
    second = BrokerProcess(tmp_path / "b", BROKER_NODE_ID="2", **env).start(timeout=60)
    try:
        admin = AdminClient({"bootstrap.servers": first.bootstrap})
        for f in admin.create_topics([NewTopic("slow", 12, 1)]).values():
            f.result(30)
        del admin
        p = Producer({"bootstrap.servers": first.bootstrap, "acks": "all", "log_level": 2})
        for i in range(120):
            p.produce("slow", key=str(i).encode(), value=b"v", partition=i % 12)
        assert p.flush(30) == 0
        del p
        second.kill()
        with FaultProxy(serial_moto, delay=0.4) as proxy:  # every metadata call +0.4 s
            second.env["AWS_ENDPOINT_URL_DYNAMODB"] = proxy.endpoint
            started = time.monotonic()
            second.start(timeout=90)  # before: exited with code 3 (fenced while loading)
            took = time.monotonic() - started
            # started: the store is quick again. What is tested is the start; with +0.4 s a
            # call on a one-request-at-a-time moto and a loaded host, a renewal itself took
            # 3.6 s of a 3 s lease once (the broker was fenced, rightly, after it served)
            proxy.delay = 0.0
            # two leases on: the others ran their recovery checks several times over
            store = DynamoDbMetadataStore(table, client=boto3.session.Session(
                aws_access_key_id="testing", aws_secret_access_key="testing",
                region_name=REGION).client("dynamodb", endpoint_url=serial_moto))  # fmt: skip
            watch = time.monotonic() + 6
            while time.monotonic() < watch and second.alive():
                time.sleep(0.2)
            state = next(b for b in store.brokers() if b.broker_id == 2).state
            assert second.alive(), f"broker 2 stopped:\n{second.log()}"
            assert state == "ACTIVE", state
        print(f"\nbroker 2 took {took:.1f}s to start with a 3 s lease, and kept it")
        assert took > 3, "the start outlasted the lease (else this proves nothing)"
    finally:
        first.stop()
        second.stop()
