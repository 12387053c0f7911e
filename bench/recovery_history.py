"""recover() against a cluster with a history of fenced brokers (BROKER_NODE_ID=auto gives
every ECS task a new id): time and DynamoDB calls per recover() at 0 and N fenced rows.

    .venv/bin/python bench/recovery_history.py --fenced 0 200

Runs a moto server of its own (single-threaded) on 127.0.0.1; 3 live brokers, 20 topics of
6 partitions. Prints one line per history size.
"""

from __future__ import annotations

import argparse
import statistics
import sys
import tempfile
import time
import uuid
from collections import Counter
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

import boto3  # noqa: E402

from broker_service.control.recovery import recover  # noqa: E402
from broker_service.metadata.dynamodb import DynamoDbMetadataStore  # noqa: E402
from tests.support.moto import MotoServer  # noqa: E402


def measure(endpoint: str, fenced: int, rounds: int, forget_after_ms: int) -> dict[str, Any]:
    session = boto3.session.Session(aws_access_key_id="testing", aws_secret_access_key="testing",
                                    region_name="us-east-1")  # fmt: skip
    calls: Counter[str] = Counter()
    session.events.register("before-call.dynamodb", lambda model, **_: calls.update([model.name]))
    client = session.client("dynamodb", endpoint_url=endpoint)
    store = DynamoDbMetadataStore(f"rh-{uuid.uuid4().hex[:8]}", client=client)
    store.create_table()
    for bid in range(1, fenced + 1):  # past tasks: registered, then fenced, leading nothing
        b = store.register_broker(1000 + bid, "10.0.0.1", 9092, None, 1)
        store.set_broker_info(b.broker_id, b.epoch, {"node_id": "auto", "epoch": str(b.epoch)})
        store.fence_broker(b.broker_id, b.epoch)
    for bid in (1, 2, 3):
        store.register_broker(bid, "10.0.0.2", 9092, None, 600_000)
    for t in range(20):
        store.create_topic(f"t{t}", 6, {}, leader_ids=[1 + t % 3])
    times, counts = [], []
    for _ in range(rounds):
        calls.clear()
        t0 = time.perf_counter()
        recover(store, int(time.time() * 1000), forget_after_ms=forget_after_ms)
        times.append(time.perf_counter() - t0)
        counts.append(dict(calls))
    left = len(store.brokers())
    store.close()
    return {"fenced": fenced, "s": statistics.median(times), "calls": counts[-1],
            "first_calls": counts[0], "rows_left": left}  # fmt: skip


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--fenced", type=int, nargs="+", default=[0, 200])
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument(
        "--forget-after-ms",
        type=int,
        default=3_600_000,
        help="recovery's grace before forgetting a fenced broker (0: at once)",
    )
    args = ap.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        server = MotoServer(Path(tmp)).start()  # one request at a time
        endpoint = server.endpoint
        try:
            for n in args.fenced:
                r = measure(endpoint, n, args.rounds, args.forget_after_ms)
                print(f"fenced rows {r['fenced']:4d}: recover() {r['s'] * 1000:8.1f} ms (median), "
                      f"DynamoDB calls first {r['first_calls']}, then {r['calls']}; "
                      f"broker rows left {r['rows_left']}")  # fmt: skip
        finally:
            server.stop()


if __name__ == "__main__":
    main()
