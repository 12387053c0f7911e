"""A broker asked to stop (SIGTERM, as ECS does) while its metadata store stalls exits within
its stop budget, and loses nothing acknowledged.

ECS gives a task 30 s between SIGTERM and SIGKILL. A broker whose store calls hang (DynamoDB
throttled or unreachable, moto's queue on a loaded host) hung in its shutdown: the drain
waited on its first read of the brokers, and once stopped the process still waited for
every store call in flight (the interpreter joins the calls' threads at exit). The chaos
lane saw a broker log "stopped cleanly" and still be there 18 s later, SIGKILLed by its
stop timeout. Stopping is bounded (BROKER_STOP_TIMEOUT_MS) and ends the process; what was
acknowledged is durable already, so a stop cut short is no worse than a crash.

S3 and DynamoDB are a moto server of this test's own; the broker reaches DynamoDB through
tests/cloud/fault_proxy.py, which holds every request once the stall begins.
"""

from __future__ import annotations

from pathlib import Path

import boto3
import pytest
from confluent_kafka import Producer
from confluent_kafka.admin import AdminClient, NewTopic

from broker_service.metadata.dynamodb import DynamoDbMetadataStore
from tests.chaos.harness import AWS_TEST_ENV, REGION
from tests.cloud.fault_proxy import FaultProxy
from tests.cloud.test_commit_outcomes import _backends, _read_keys
from tests.support.broker import BrokerProcess, running
from tests.support.moto import MotoServer
from tests.support.wait import wait_until

PARTITIONS = 3
STOP_TIMEOUT_MS = 5000
DYNAMODB_OPS = (
    "GetItem", "PutItem", "UpdateItem", "DeleteItem", "Query", "Scan",
    "BatchGetItem", "BatchWriteItem", "TransactWriteItems", "TransactGetItems",
)  # fmt: skip


@pytest.mark.slow
def test_a_broker_stopped_while_its_store_stalls_exits_and_loses_nothing(tmp_path: Path) -> None:
    with MotoServer(tmp_path / "moto") as moto, FaultProxy(moto.endpoint) as proxy:
        bucket, table = _backends(moto.endpoint)
        env = dict(BROKER_STORAGE=f"s3://{bucket}/stop", BROKER_METADATA=f"dynamodb://{table}",
                   BROKER_WAL="object", AWS_ENDPOINT_URL=moto.endpoint,
                   BROKER_STOP_TIMEOUT_MS=str(STOP_TIMEOUT_MS), **AWS_TEST_ENV)  # fmt: skip
        broker = BrokerProcess(tmp_path / "b1", BROKER_NODE_ID="1",
                               AWS_ENDPOINT_URL_DYNAMODB=proxy.endpoint, **env)  # fmt: skip
        broker.start()
        try:
            admin = AdminClient({"bootstrap.servers": broker.bootstrap})
            for f in admin.create_topics([NewTopic("stop", PARTITIONS, 1)]).values():
                f.result(30)
            del admin
            p = Producer({"bootstrap.servers": broker.bootstrap, "acks": "all",
                          "enable.idempotence": True, "log_level": 2})  # fmt: skip
            for i in range(200):
                p.produce("stop", key=str(i).encode(), value=b"v", partition=i % PARTITIONS)
            assert p.flush(60) == 0
            del p

            for op in DYNAMODB_OPS:  # longer than the test: only unstall() ends it
                proxy.stall(op, 600)
            seen = len(proxy.started)
            # a store call of the broker's own is held (its lease renewal comes every second)
            wait_until(lambda: len(proxy.started) > seen and proxy.in_flight > 0, 30,
                       "a DynamoDB call held by the stall")  # fmt: skip
            assert broker.proc is not None
            broker.proc.terminate()  # SIGTERM
            # the bound: its stop budget, then exit; far below the stall (the hang before)
            wait_until(lambda: not broker.alive(), 60,
                       lambda: f"the broker still runs, its store stalled:\n{broker.log()}")
            assert broker.proc.returncode == 0, broker.log()
            assert "did not finish within BROKER_STOP_TIMEOUT_MS" in broker.log(), broker.log()
            assert proxy.in_flight > 0  # it exited with store calls still held
        finally:
            proxy.unstall()
            broker.stop()

        # nothing acknowledged was lost: a new broker (the store answering) serves it all
        restarted = BrokerProcess(tmp_path / "b1", BROKER_NODE_ID="1",
                                  AWS_ENDPOINT_URL_DYNAMODB=moto.endpoint, **env)  # fmt: skip
        with running(restarted):
            keys = _read_keys(restarted.bootstrap, "stop", PARTITIONS)
        assert sorted(keys) == list(range(200))
        store = DynamoDbMetadataStore(table, client=boto3.session.Session(
            aws_access_key_id="testing", aws_secret_access_key="testing",
            region_name=REGION).client("dynamodb", endpoint_url=moto.endpoint))  # fmt: skip
        assert [b.broker_id for b in store.brokers()] == [1]
