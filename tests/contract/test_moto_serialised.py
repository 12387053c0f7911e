"""The tests' moto server (tests/support/moto.py) loses no DynamoDB write under concurrency.

moto's own threaded server does: a TransactWriteItems that fails its condition restores a
snapshot of the whole table taken before the call, wiping the writes other clients made
meanwhile (issue 22.8: 7 of 200 committed increments lost). Our metadata store relies on
exactly this pattern (conditional transactions from several brokers at once), so a test
against the threaded server can fail for the fake's sake. The session's server handles one
request at a time; this test is the proof: 4 threads commit 200 conditional increments
through TransactWriteItems while 2 others keep sending transactions that fail their
condition, and every committed increment is in the table at the end. (Against moto's
threaded server the same test loses writes on most runs.)
"""

from __future__ import annotations

import threading
import uuid
from typing import Any

import boto3
from botocore.exceptions import ClientError

from tests.support.moto import REGION

WRITERS = 4
PER_WRITER = 50
FAILERS = 2


def _client(endpoint: str) -> Any:
    return boto3.session.Session(
        aws_access_key_id="testing", aws_secret_access_key="testing", region_name=REGION
    ).client("dynamodb", endpoint_url=endpoint)


def _increment(table: str, counter: str, n: int) -> list[dict[str, Any]]:
    """counter: n -> n + 1 (only if it is n), and a record of that write."""
    return [
        {"Update": {"TableName": table, "Key": {"pk": {"S": counter}},
                    "UpdateExpression": "SET n = :new", "ConditionExpression": "n = :old",
                    "ExpressionAttributeValues": {":old": {"N": str(n)},
                                                  ":new": {"N": str(n + 1)}}}},
        {"Put": {"TableName": table, "Item": {"pk": {"S": f"{counter}-write-{n + 1}"}},
                 "ConditionExpression": "attribute_not_exists(pk)"}},
    ]  # fmt: skip


def test_concurrent_conditional_transactions_lose_no_committed_write(moto_endpoint: str) -> None:
    table = f"serial-{uuid.uuid4().hex[:10]}"
    ddb = _client(moto_endpoint)
    ddb.create_table(TableName=table, BillingMode="PAY_PER_REQUEST",
                     AttributeDefinitions=[{"AttributeName": "pk", "AttributeType": "S"}],
                     KeySchema=[{"AttributeName": "pk", "KeyType": "HASH"}])  # fmt: skip
    counters = [f"counter-{w}" for w in range(WRITERS)]
    for counter in counters:
        ddb.put_item(TableName=table, Item={"pk": {"S": counter}, "n": {"N": "0"}})
    errors: list[str] = []
    failed = [0] * FAILERS
    writing = threading.Event()
    writing.set()

    def writer(counter: str) -> None:
        c = _client(moto_endpoint)
        for n in range(PER_WRITER):  # nobody else writes this counter: each must succeed
            try:
                c.transact_write_items(TransactItems=_increment(table, counter, n))
            except ClientError as e:  # an earlier increment of ours was wiped
                errors.append(f"{counter} at {n}: {e.response['Error']['Code']}")
                return

    def failer(f: int) -> None:
        c = _client(moto_endpoint)
        while writing.is_set():  # a transaction that always fails its condition
            try:
                c.transact_write_items(TransactItems=_increment(table, "counter-0", -1))
            except ClientError as e:
                if e.response["Error"]["Code"] != "TransactionCanceledException":
                    errors.append(repr(e))
                    return
                failed[f] += 1
            else:
                errors.append("an impossible condition held")
                return

    failers = [threading.Thread(target=failer, args=(f,)) for f in range(FAILERS)]
    writers = [threading.Thread(target=writer, args=(c,)) for c in counters]
    for t in failers + writers:
        t.start()
    for t in writers:
        t.join(120)
    writing.clear()
    for t in failers:
        t.join(30)
    assert not errors, errors[:3]
    assert all(failed), f"the failing transactions ran alongside: {failed}"
    for counter in counters:
        item = ddb.get_item(TableName=table, Key={"pk": {"S": counter}}, ConsistentRead=True)
        assert int(item["Item"]["n"]["N"]) == PER_WRITER, f"{counter}: an increment was lost"
    writes = ddb.scan(TableName=table, Select="COUNT", ConsistentRead=True)
    assert writes["Count"] == WRITERS * (PER_WRITER + 1), "a committed Put was wiped"
