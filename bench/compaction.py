#!/usr/bin/env python3
"""Objects, bytes and S3 requests per GiB consumed, before and after compaction.

One moto server (S3 + DynamoDB) behind the counting proxy of ``s3_requests.py``. Our broker
runs with the object WAL (every flush is a small committed object shared by all partitions)
and takes a steady load of 1 KiB records on 4 partitions. Then:

1. the objects in the bucket are counted and sized;
2. the broker restarts (cold caches) and a fresh consumer reads everything from offset 0:
   the S3 requests of that read, per GiB of payload, are the "before" figures;
3. compaction runs (``control/compaction.py``, what the Lambda calls; grace period 0, so
   they also delete the replaced objects) until one finds nothing to merge; they go through
   their own proxy listeners, so their requests are counted apart;
4. objects are counted again, the broker restarts again, and the same cold read is measured.

    .venv/bin/python bench/compaction.py              # 4 partitions, 2000 msg/s for 8 s
    .venv/bin/python bench/compaction.py --seconds 3  # a quicker run

Results go to ``bench/results/compaction.json``.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import signal
import sys
import tempfile
import time
import uuid
from pathlib import Path
from typing import Any

from produce_consume import (
    PRODUCER_CONF,
    RESULTS_DIR,
    VALUE_BYTES,
    BrokerProcess,
    Deadline,
    add_run_options,
    create_topic,
    on_signal,
    ours_argv,
    save_json,
)
from s3_requests import (
    GIB,
    CountingProxy,
    MotoAdmin,
    MotoServer,
    aws_env,
    base_env,
    consume_from_zero,
    window,
)

REPO = Path(__file__).resolve().parents[1]


def produce_steady(bootstrap: str, topic: str, partitions: int, rate: int, seconds: float) -> int:
    from confluent_kafka import Producer

    producer = Producer({**PRODUCER_CONF, "bootstrap.servers": bootstrap})
    value = os.urandom(VALUE_BYTES)
    n = int(rate * seconds)
    errors: list[str] = []
    start = time.perf_counter()
    for i in range(n):
        while time.perf_counter() - start < i / rate:
            producer.poll(0.001)
        producer.produce(topic, value, partition=i % partitions,
                         on_delivery=lambda e, _m: errors.append(str(e)) if e else None)
    if producer.flush(60) or errors:
        raise RuntimeError(f"produce failed: {errors[:3]}")
    return n


def bucket_objects(admin: MotoAdmin, bucket: str, prefix: str) -> tuple[int, int]:
    count = size = 0
    for page in admin.s3.get_paginator("list_objects_v2").paginate(Bucket=bucket, Prefix=prefix):
        for o in page.get("Contents", []):
            count += 1
            size += o["Size"]
    return count, size


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--rate", type=int, default=2000)
    ap.add_argument("--seconds", type=float, default=8.0)
    ap.add_argument("--partitions", type=int, default=4)
    ap.add_argument("--wal-flush-ms", type=float, default=None,
                    help="the broker's BROKER_WAL_FLUSH_MS (object WAL linger): larger "
                    "flushes make fewer, larger WAL objects, as at high per-broker rates")
    add_run_options(ap, "compaction", 300)  # --timeout, --keep-data, --out (bench/suite.py)
    return ap.parse_args(argv)


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    signal.signal(signal.SIGTERM, on_signal)  # a stop by the suite still stops moto/broker
    deadline = Deadline(args.timeout)
    work = Path(tempfile.mkdtemp(prefix="bench-compaction-"))
    moto = MotoServer(work / "moto.log")
    moto.start(deadline)
    proxy = CountingProxy(
        moto.port,
        {"broker-s3": "s3", "broker-ddb": "dynamodb", "compactor-s3": "s3",
         "compactor-ddb": "dynamodb"},
        work / "proxy.log",
    )
    broker: BrokerProcess | None = None
    try:
        proxy.start(deadline)
        admin = MotoAdmin(moto)
        bucket = admin.bucket(f"bench-compaction-{uuid.uuid4().hex[:6]}")
        table = admin.table(f"bench-compaction-{uuid.uuid4().hex[:6]}")
        env = {
            **base_env(), **aws_env(), "PYTHONPATH": str(REPO),
            "BROKER_STORAGE": f"s3://{bucket}/cluster", "BROKER_METADATA": f"dynamodb://{table}",
            "BROKER_WAL": "object", "BROKER_COMPACTION_INTERVAL_MS": "0",
            "AWS_ENDPOINT_URL": moto.endpoint,
            "AWS_ENDPOINT_URL_S3": proxy.endpoint("broker-s3"),
            "AWS_ENDPOINT_URL_DYNAMODB": proxy.endpoint("broker-ddb"),
        }
        if args.wal_flush_ms is not None:
            env["BROKER_WAL_FLUSH_MS"] = str(args.wal_flush_ms)
        argv = ours_argv(work / "data", work / "broker.ready")
        port = 0  # the first start's, kept by restarts

        def start() -> BrokerProcess:
            nonlocal port
            b = BrokerProcess("ours", argv, port, work / "broker.log", env, work / "broker.ready")
            b.start(deadline)
            port = b.port
            return b

        broker = start()
        topic = "compaction-bench"
        create_topic(broker.bootstrap, topic, args.partitions, deadline)
        records = produce_steady(broker.bootstrap, topic, args.partitions, args.rate,
                                 args.seconds)
        payload = records * VALUE_BYTES
        time.sleep(1)

        def cold_read() -> dict[str, Any]:
            nonlocal broker
            assert broker is not None
            broker.stop()
            broker = start()
            before = proxy.counts()
            t0 = time.monotonic()
            consume_from_zero(broker.bootstrap, topic, args.partitions, records, deadline,
                              lambda: None)
            w = window(before, proxy.counts(), ["broker-s3"], time.monotonic() - t0)
            return {"seconds": round(w.seconds, 2), "requests": w.by_op,
                    "GET_per_GiB": round(w.per_gib("GET", payload), 1),
                    "PUT_per_GiB": round(w.per_gib("PUT", payload), 1)}

        objects_before = bucket_objects(admin, bucket, "cluster/")
        read_before = cold_read()

        from broker_service.config.compaction import CompactionConfig
        from broker_service.control.compaction import compact
        from broker_service.metadata.dynamodb import DynamoDbMetadataStore
        from broker_service.stream.objectstore.s3 import S3ObjectStore

        for k, v in aws_env().items():
            os.environ.setdefault(k, v)
        metadata = DynamoDbMetadataStore(table, endpoint_url=proxy.endpoint("compactor-ddb"))
        objects = S3ObjectStore(bucket, "cluster", endpoint_url=proxy.endpoint("compactor-s3"))
        runs = []
        result = None
        for _ in range(3):  # until a run finds nothing more to merge
            snap = proxy.counts()
            cpu = time.process_time()  # moto and the proxy are other processes: this is ours
            result = asyncio.run(compact(metadata, objects,
                                         CompactionConfig(replaced_grace_ms=0)))
            cpu = time.process_time() - cpu
            w = window(snap, proxy.counts(), ["compactor-s3", "compactor-ddb"], result.seconds)
            runs.append({"seconds": round(result.seconds, 2), "cpu_seconds": round(cpu, 3),
                         "cpu_s_per_gib_written": round(cpu / max(result.bytes_written, 1) * GIB,
                                                        2),
                         "swaps": result.swaps,
                         "ranges_merged": result.ranges_merged,
                         "bytes_read": result.bytes_read, "bytes_written": result.bytes_written,
                         "objects_deleted": result.objects_deleted, "requests": w.by_op,
                         "objects_after": bucket_objects(admin, bucket, "cluster/")[0]})
            if result.swaps == 0:
                break
        objects_after = bucket_objects(admin, bucket, "cluster/")
        read_after = cold_read()
        out = {
            "records": records, "payload_bytes": payload, "partitions": args.partitions,
            "objects_before": objects_before[0], "bytes_before": objects_before[1],
            "objects_after": objects_after[0], "bytes_after": objects_after[1],
            "cold_read_before": read_before, "cold_read_after": read_after,
            "compaction_runs": runs,
        }
        path = args.out or RESULTS_DIR / "compaction.json"
        save_json(path, out)
        print(json.dumps(out, indent=2))
        print(f"\nobjects {objects_before[0]} -> {objects_after[0]}, "
              f"bytes {objects_before[1]} -> {objects_after[1]}; cold read GET/GiB "
              f"{read_before['GET_per_GiB']} -> {read_after['GET_per_GiB']} "
              f"({payload / GIB:.3f} GiB consumed)")
        return 0
    finally:
        if broker is not None:
            broker.stop()
        proxy.stop()
        moto.stop()


if __name__ == "__main__":
    sys.exit(main())
