#!/usr/bin/env python3
"""Zone awareness, measured (issue 19): cross-rack bytes, forwarded-write latency, S3 requests
and DynamoDB write units per GiB, before (classic clients) and after (zoned clients).

Three brokers in three racks on 127.0.0.1 (tests/zone_cluster.py), S3 + DynamoDB on a moto
server that serves one request at a time (tests/support/moto.py), object WAL (the AWS
configuration). Between the clients and each broker listener, and between the brokers,
counting TCP relays; between the brokers and moto, a counting HTTP proxy (bench/s3_requests.py's,
run as a child process) that also sizes every DynamoDB write by DynamoDB's rules (moto's own
ConsumedCapacity is a constant per call, not a size). A producer and a consumer in each rack;
each mode starts a fresh cluster:

- ``baseline``: classic clients (no zone hint): what every client does today;
- ``zoned``: producers with ``client.id=...;az=<rack>``; consumers by marker (rack a), by
  ``client.rack`` alone (KIP-392, rack b), by both (rack c);
- ``listener`` (optional): no hint in the clients; each rack bootstraps through a listener
  carrying its rack (the per-AZ bootstrap of the stacks).

Each mode: a steady phase (each producer ``--rate`` records/s for ``--latency-seconds``:
acknowledgement latency per record, split by whether the partition's leader is in the
producer's rack: ``direct``, else ``forwarded`` when zoned, ``cross-rack`` in the baseline),
then a bulk phase (each producer ``--mb`` MB as fast as it goes) while every consumer reads
everything from offset 0 in a group of its own. Bytes are per GiB of payload (record values):
produced, and consumed (three consumers: 3x). The JSON's ``cost_inputs`` are what
``python -m broker_service cost --measured FILE`` applies (``before``: baseline, ``after``:
zoned).

S3 requests are counted by object kind (``s3_by_kind``, the key's first part: ``wal``,
``zfw``, ...). On the object WAL, forwarded batches ride in the in-zone broker's WAL objects
(no ``zfw`` object: ``PUT:zfw`` stays 0); the proxy reads each WAL object's index as it is
PUT, counts those carrying forwarded sections (``PUT:wal+fwd``, a subset of ``PUT:wal``) and
the leaders' ranged GETs of those sections (``GET:wal-fwd``, not in ``GET:wal``):
``leader_gets_per_forward_object`` is those GETs per forward-carrying object (zfw objects
and WAL objects alike), ``gets_per_wal_object`` the other zones' replica reads per WAL
object, ``s3_put_per_gib_produced`` every S3 PUT per GiB produced.

    .venv/bin/python bench/zones.py                 # both modes, 40 MB per producer
    .venv/bin/python bench/zones.py --quick         # 8 MB per producer, short steady phase
"""

from __future__ import annotations

import argparse
import base64
import contextlib
import json
import math
import os
import select
import shutil
import signal
import struct
import subprocess
import sys
import tempfile
import threading
import time
import uuid
from pathlib import Path
from typing import Any

BENCH = Path(__file__).resolve().parent
REPO = BENCH.parent
sys.path[:0] = [str(REPO), str(BENCH)]

import s3_requests as s3r  # noqa: E402
from confluent_kafka import Consumer, Producer  # noqa: E402
from confluent_kafka.admin import AdminClient, NewTopic  # noqa: E402
from produce_consume import (  # noqa: E402
    HOST,
    RESULTS_DIR,
    BenchError,
    Deadline,
    add_run_options,
    percentile,
)

from tests.support.moto import MotoServer  # noqa: E402
from tests.zone_cluster import RACKS, ZoneCluster, start_zone_cluster  # noqa: E402

GIB = 1 << 30
TOPIC = "zones"
MODES = ("baseline", "zoned", "listener")
S3_WRITES = {"PutObject", "UploadPart", "CopyObject", "CompleteMultipartUpload",
             "CreateMultipartUpload"}  # fmt: skip
DDB_WRITES = {"PutItem", "UpdateItem", "DeleteItem", "TransactWriteItems", "BatchWriteItem"}
UNITS = "ddbunits:"  # pseudo-operation rows of the proxy's tally: write/read units x 1000
KINDS = "s3kind:"  # pseudo-operation rows: GET/PUT of objects by key prefix
COMMITS = "walcommits"  # pseudo-operation row: WAL commits (calls) and their ranges (units)


# == DynamoDB capacity units, by DynamoDB's sizing rules =====================================
def _value_size(v: dict[str, Any]) -> int:
    ((t, x),) = v.items()
    if t == "S":
        return len(x.encode())
    if t == "N":
        digits = x.lstrip("-").replace(".", "").strip("0")
        return (len(digits) + 1) // 2 + 1
    if t == "B":
        return len(base64.b64decode(x))
    if t in ("BOOL", "NULL"):
        return 1
    if t == "SS":
        return sum(len(s.encode()) for s in x)
    if t == "NS":
        return sum(_value_size({"N": n}) for n in x)
    if t == "BS":
        return sum(len(base64.b64decode(b)) for b in x)
    if t == "L":
        return 3 + sum(1 + _value_size(e) for e in x)
    if t == "M":
        return 3 + sum(len(k.encode()) + 1 + _value_size(e) for k, e in x.items())
    return 1


def item_size(item: dict[str, Any]) -> int:
    return sum(len(k.encode()) + _value_size(v) for k, v in item.items())


def _write_units(size: int) -> int:
    return max(1, math.ceil(size / 1024))


def _update_size(req: dict[str, Any]) -> int:
    """An update's item size is not in the request; the key plus the values it sets is a
    lower bound (leases and registries are small items: 1 unit either way)."""
    names = req.get("ExpressionAttributeNames", {})
    return (item_size(req.get("Key", {})) + sum(len(n.encode()) for n in names.values())
            + sum(_value_size(v) for v in req.get("ExpressionAttributeValues", {}).values()))


def capacity_units(op: str, body: bytes, response: bytes) -> tuple[float, float, int]:
    """(write units, read units, items) of one successful DynamoDB call."""
    try:
        req = json.loads(body or b"{}")
    except ValueError:
        return 0.0, 0.0, 0
    if op == "PutItem":
        return _write_units(item_size(req.get("Item", {}))), 0.0, 1
    if op == "UpdateItem":
        return _write_units(_update_size(req)), 0.0, 1
    if op == "DeleteItem":
        return 1.0, 0.0, 1
    if op == "TransactWriteItems":
        units = 0
        items = req.get("TransactItems", [])
        for it in items:
            if "Put" in it:
                units += _write_units(item_size(it["Put"].get("Item", {})))
            elif "Update" in it:
                units += _write_units(_update_size(it["Update"]))
            else:  # Delete (size unknown: 1 KB) and ConditionCheck are billed as writes
                units += 1
        return 2.0 * units, 0.0, len(items)
    if op == "BatchWriteItem":
        units, n = 0, 0
        for reqs in req.get("RequestItems", {}).values():
            for r in reqs:
                n += 1
                put = r.get("PutRequest")
                units += _write_units(item_size(put["Item"])) if put else 1
        return float(units), 0.0, n
    if op in ("GetItem", "Query", "Scan", "BatchGetItem", "TransactGetItems"):
        consistent = req.get("ConsistentRead", False) or op == "TransactGetItems"
        per_4k = max(1, math.ceil(len(response) / 4096))
        factor = (1.0 if consistent else 0.5) * (2 if op == "TransactGetItems" else 1)
        return 0.0, per_4k * factor, 0
    return 0.0, 0.0, 0


def committed_ranges(body: bytes) -> int:
    """Ranges a TransactWriteItems commits as an object's log entry (a WAL commit), else 0."""
    try:
        req = json.loads(body or b"{}")
    except ValueError:
        return 0
    n = 0
    for it in req.get("TransactItems", []):
        item = it.get("Put", {}).get("Item", {})
        if item.get("kind", {}).get("S") == "log-entry":
            n += int(item.get("range_count", {}).get("N", 0))
    return n


def forwarded_region(body: bytes) -> tuple[int, int] | None:
    """Where a WAL object's forwarded sections lie (they follow its own streams, side by
    side: stream/wal/object.py), or None if it carries none (or is not an object)."""
    from broker_service.stream.object_format import FORWARDED_STREAM_ID, parse_object

    try:
        entries = [e for e in parse_object(body) if e.stream_id == FORWARDED_STREAM_ID]
    except (ValueError, struct.error):
        return None
    if not entries:
        return None
    return min(e.position for e in entries), max(e.position + e.size for e in entries)


def _range(headers: list[tuple[str, str]]) -> tuple[int, int] | None:
    """A GET's ``Range: bytes=lo-hi`` as [lo, hi + 1), or None (whole object, suffix)."""
    value = next((v for k, v in headers if k.lower() == "range"), "")
    lo, _, hi = value.removeprefix("bytes=").partition("-")
    return (int(lo), int(hi) + 1) if lo.isdigit() and hi.isdigit() else None


class _UnitServer(s3r._ProxyServer):
    """The counting proxy, also sizing DynamoDB calls (pseudo-op rows ``ddbunits:<op>``:
    bytes up = write units x 1000, bytes down = read units x 1000, micros = items).

    S3 GETs and PUTs of objects are counted by kind, the key's first part (``s3kind:GET:wal``
    ...). With the object WAL, forwarded batches ride in WAL objects: a PUT of one that
    carries forwarded sections is also counted as ``PUT:wal+fwd`` (the proxy reads its index
    from the body), and a ranged GET lying within those sections (a leader reading its
    spans; the other zones' replicas read WAL objects whole) as ``GET:wal-fwd`` instead of
    ``GET:wal``."""

    regions: dict[str, tuple[int, int]] = {}  # WAL object path -> its forwarded sections

    def forward(self, method: str, target: str, headers: list[tuple[str, str]],
                body: bytes | None) -> tuple[int, str, list[tuple[str, str]], bytes]:
        status, reason, resp_headers, data = super().forward(method, target, headers, body)
        if self.service == "s3" and status < 400 and method in ("GET", "PUT"):
            # which writer's object: /<bucket>/<prefix>/<kind>/... (wal, zfw, sso, so)
            path = target.split("?")[0]
            parts = path.strip("/").split("/")
            if len(parts) >= 4 and parts[-1].endswith(".sso"):
                kind = parts[2]
                if kind == "wal" and method == "PUT" and body:
                    region = forwarded_region(body)
                    if region is not None:
                        self.regions[path] = region
                        self.tally.add(self.label, f"{KINDS}PUT:wal+fwd", False, 0, 0, 0)
                elif kind == "wal" and (region := self.regions.get(path)) is not None:
                    span = _range(headers)
                    if span is not None and region[0] <= span[0] and span[1] <= region[1]:
                        kind = "wal-fwd"
                self.tally.add(self.label, f"{KINDS}{method}:{kind}", False, 0, 0, 0)
        if self.service == "dynamodb" and status < 400:
            op = next((v for k, v in headers if k.lower() == "x-amz-target"), "?")
            op = op.rpartition(".")[2]
            wru, rru, items = capacity_units(op, body or b"", data)
            self.tally.add(self.label, f"{UNITS}{op}", False, int(wru * 1000), int(rru * 1000),
                           items / 1e6)
            if op == "TransactWriteItems" and (ranges := committed_ranges(body or b"")):
                # a WAL commit: its ranges (what the replicas' long polls carry), in the
                # write-units slot of a row of its own
                self.tally.add(self.label, COMMITS, False, ranges * 1000, 0, 0)
        return status, reason, resp_headers, data


def proxy_main(argv: list[str]) -> int:
    ap = argparse.ArgumentParser(prog="zones.py _proxy")
    ap.add_argument("--upstream", required=True)
    ap.add_argument("--listen", action="append", default=[])
    a = ap.parse_args(argv)
    host, _, port = a.upstream.rpartition(":")
    tally = s3r._Tally()
    servers = []
    for spec in a.listen:
        label, _, service = spec.partition("=")
        servers.append(_UnitServer(label, service, (host, int(port)), tally))
    for s in servers:
        threading.Thread(target=s.serve_forever, daemon=True).start()
    stop = threading.Event()
    signal.signal(signal.SIGTERM, lambda *_: stop.set())
    parent = os.getppid()
    print(json.dumps({s.label: s.server_address[1] for s in servers}), flush=True)
    while not stop.wait(1.0) and os.getppid() == parent:
        pass
    return 0


class UnitProxy(s3r.CountingProxy):
    def start(self, deadline: Deadline) -> None:
        argv = [sys.executable, str(Path(__file__).resolve()), "_proxy",
                "--upstream", f"{HOST}:{self.upstream_port}"]
        argv += [f"--listen={label}={svc}" for label, svc in self.listeners.items()]
        with open(self.log_path, "ab") as log:
            self.popen = subprocess.Popen(argv, stdout=subprocess.PIPE, stderr=log,
                                          start_new_session=True)
        assert self.popen.stdout is not None
        ready, _, _ = select.select([self.popen.stdout], [], [], min(20, deadline.remaining()))
        line = self.popen.stdout.readline() if ready else b""
        if not line:
            s3r._stop_popen(self.popen)
            raise BenchError("the counting proxy did not start")
        self.ports = {k: int(v) for k, v in json.loads(line).items()}


# == one mode ==================================================================================
def _client_id(role: str, rack: str, mode: str) -> str:
    return f"{role}-{rack};az={rack}" if mode == "zoned" else f"{role}-{rack}"


def _consumer_conf(rack: str, mode: str) -> dict[str, Any]:
    conf: dict[str, Any] = {"client.id": f"consumer-{rack}"}
    if mode == "zoned":
        conf = {
            "a": {"client.id": f"consumer-a;az={rack}"},
            "b": {"client.id": "consumer-b", "client.rack": rack},
            "c": {"client.id": f"consumer-c;az={rack}", "client.rack": rack},
        }[rack]
    return conf


def _diff(after: dict[str, dict[str, list[int]]], before: dict[str, dict[str, list[int]]]
          ) -> dict[str, list[int]]:
    out: dict[str, list[int]] = {}
    for label, ops in after.items():
        for op, row in ops.items():
            prev = before.get(label, {}).get(op, [0] * len(row))
            acc = out.setdefault(op, [0] * len(row))
            for i, (a, b) in enumerate(zip(row, prev, strict=True)):
                acc[i] += a - b
    return out


def _leaders(cluster: ZoneCluster, partitions: int) -> dict[int, int]:
    admin = AdminClient({"bootstrap.servers": cluster.admin})
    md = admin.list_topics(TOPIC, timeout=10)
    return {p: m.leader for p, m in md.topics[TOPIC].partitions.items() if p < partitions}


def _steady(cluster: ZoneCluster, mode: str, rate: int, seconds: float, value: bytes,
            leaders: dict[int, int], partitions: int) -> tuple[dict[str, list[float]], int]:
    """Each rack's producer at ``rate`` records/s: ack latency by route."""
    lat: dict[str, list[float]] = {"direct": [], "forwarded": [], "cross-rack": []}
    lock = threading.Lock()
    sent = [0]

    def run(rack: str) -> None:
        p = Producer({"bootstrap.servers": cluster.bootstrap(rack), "acks": "all",
                      "linger.ms": 5, "enable.idempotence": True,
                      "client.id": _client_id("steady", rack, mode)})

        def done(err: Any, msg: Any) -> None:
            if err is not None:
                return
            leader_rack = cluster.racks[leaders[msg.partition()] - 1]
            route = ("direct" if leader_rack == rack
                     else "forwarded" if mode != "baseline" else "cross-rack")
            with lock:
                lat[route].append(msg.latency() * 1000)

        # warm-up (not timed): every partition once, metadata and connections settled
        for part in range(partitions):
            p.produce(TOPIC, value=value, partition=part)
        if p.flush(60):
            raise BenchError(f"steady producer {rack}: warm-up records left unacknowledged")
        with lock:
            sent[0] += partitions
        start = time.monotonic()
        i = 0
        while (now := time.monotonic()) < start + seconds:
            due = start + i / rate
            if due > now:
                time.sleep(min(due - now, 0.01))
                p.poll(0)
                continue
            p.produce(TOPIC, value=value, partition=i % partitions, on_delivery=done)
            p.poll(0)
            i += 1
        if p.flush(60):
            raise BenchError(f"steady producer {rack}: records left unacknowledged")
        with lock:
            sent[0] += i

    threads = [threading.Thread(target=run, args=(r,)) for r in RACKS]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    return lat, sent[0]


def _bulk(cluster: ZoneCluster, mode: str, mb: float, value: bytes, partitions: int,
          expected_before: int, deadline: Deadline) -> tuple[int, dict[str, int]]:
    """Each producer sends ``mb`` MB; each rack's consumer reads the whole topic."""
    per_producer = int(mb * 1e6 / len(value))
    total = expected_before + per_producer * len(RACKS)
    consumed: dict[str, int] = {}
    errors: list[str] = []

    def produce(rack: str) -> None:
        p = Producer({"bootstrap.servers": cluster.bootstrap(rack), "acks": "all",
                      "linger.ms": 10, "batch.size": 1_000_000, "enable.idempotence": True,
                      "client.id": _client_id("bulk", rack, mode)})
        for i in range(per_producer):
            while True:
                try:
                    p.produce(TOPIC, value=value, partition=i % partitions)
                    break
                except BufferError:
                    p.poll(0.05)
            p.poll(0)
        if p.flush(120):
            errors.append(f"bulk producer {rack}: records left unacknowledged")

    def consume(rack: str) -> None:
        c = Consumer({"bootstrap.servers": cluster.bootstrap(rack), "group.id": f"bench-{rack}",
                      "auto.offset.reset": "earliest", "enable.auto.commit": True,
                      "isolation.level": "read_uncommitted", "fetch.queue.backoff.ms": 10,
                      **_consumer_conf(rack, mode)})
        c.subscribe([TOPIC])
        n = 0
        try:
            while n < total and deadline.remaining() > 0:
                if not all(b.alive() for b in cluster.brokers):
                    errors.append("a broker stopped (see its log)")
                    break
                for m in c.consume(1000, 0.5):
                    if m.error() is None:
                        n += 1
        finally:
            c.close()
            consumed[rack] = n

    threads = [threading.Thread(target=produce, args=(r,)) for r in RACKS if per_producer]
    threads += [threading.Thread(target=consume, args=(r,)) for r in RACKS]
    for t in threads:
        t.start()
    for t in threads:
        t.join(max(1.0, deadline.remaining()))
    if errors:
        raise BenchError("; ".join(sorted(set(errors))))
    return per_producer * len(RACKS), consumed


def _lat(values: list[float]) -> dict[str, float | int | None]:
    v = sorted(values)
    return {"n": len(v), "p50_ms": percentile(v, 0.5), "p99_ms": percentile(v, 0.99)}


class _NoProxy:
    def counts(self) -> dict[str, dict[str, list[int]]]:
        return {}

    def stop(self) -> None:
        pass


def _inter_broker_bytes(cluster: Any) -> dict[str, int]:
    """Bytes of the brokers' requests to each other and of the answers, and the requests
    (``<API> requests``), by API and connection channel, summed over the brokers' /metrics
    (tests/zone_cluster.py ``inter_broker``)."""
    names = {"32100": "ZoneForwardProduce", "32101": "ReplicaState"}
    try:
        counted = cluster.inter_broker()
    except OSError:
        return {}
    out: dict[str, int] = {}
    for (kind, api_key, channel), n in counted.items():
        name = names.get(api_key, f"api {api_key}") + (f" ({channel})" if channel else "")
        name += " requests" if kind == "requests" else ""
        out[name] = out.get(name, 0) + n
    return dict(sorted(out.items(), key=lambda kv: -kv[1]))


def run_mode(mode: str, args: argparse.Namespace, work: Path, moto: str,
             deadline: Deadline, embedded: bool = False) -> dict[str, Any]:
    """One mode on S3 + DynamoDB (moto, object WAL), or ``embedded`` (local directory,
    SQLite, file WAL: no moto in the way, for the latency of the design itself)."""
    import boto3

    from broker_service.metadata.dynamodb import DynamoDbMetadataStore
    from tests.moto_server import AWS_TEST_ENV, REGION

    proxy: UnitProxy | _NoProxy = _NoProxy()
    # The lease is not what is measured: a single-threaded moto on a loaded machine can hold a
    # renewal long enough to fence a broker (a 6 s lease did, under the bulk phase).
    env = {"BROKER_LOG_LEVEL": "WARNING", "BROKER_COMPACTION_INTERVAL_MS": "0",
           "BROKER_LEASE_MS": str(args.lease_ms)}
    if embedded:
        env["BROKER_WAL"] = "file"
    else:
        bucket, table = f"zones-{uuid.uuid4().hex[:8]}", f"zones-{uuid.uuid4().hex[:8]}"
        session = boto3.session.Session(aws_access_key_id="testing",
                                        aws_secret_access_key="testing", region_name=REGION)
        session.client("s3", endpoint_url=moto).create_bucket(Bucket=bucket)
        DynamoDbMetadataStore(table, client=session.client("dynamodb", endpoint_url=moto)
                              ).create_table()
        proxy = UnitProxy(int(moto.rpartition(":")[2]), {"s3": "s3", "ddb": "dynamodb"},
                          work / f"proxy-{mode}.log")
        proxy.start(deadline)
        env |= {"BROKER_STORAGE": f"s3://{bucket}/zones",
                "BROKER_METADATA": f"dynamodb://{table}", "BROKER_WAL": "object",
                "AWS_ENDPOINT_URL_S3": proxy.endpoint("s3"),
                "AWS_ENDPOINT_URL_DYNAMODB": proxy.endpoint("ddb"), **AWS_TEST_ENV}
    tag = f"{mode}-embedded" if embedded else mode
    cluster = start_zone_cluster(work / f"data-{tag}", listener_racks=mode == "listener", **env)
    try:
        admin = AdminClient({"bootstrap.servers": cluster.admin})
        for f in admin.create_topics([NewTopic(TOPIC, args.partitions, 1)]).values():
            f.result(30)
        spread = Deadline(30)
        while set((leaders := _leaders(cluster, args.partitions)).values()) != {1, 2, 3}:
            spread.check("waiting for the topic's leaders to spread over the racks")
            time.sleep(0.2)
        value = os.urandom(args.value_bytes)
        relays0, proxy0, t0 = cluster.relays.snapshot(), proxy.counts(), time.monotonic()
        load0 = os.getloadavg()
        lat, steady_records = _steady(cluster, mode, args.rate, args.latency_seconds, value,
                                      leaders, args.partitions)
        bulk_records, consumed = _bulk(cluster, mode, 0 if embedded else args.mb, value,
                                       args.partitions, steady_records, deadline)
        time.sleep(args.settle)  # the last commits, polls and offset commits
        relays1, proxy1, seconds = cluster.relays.snapshot(), proxy.counts(), time.monotonic() - t0
        load1 = os.getloadavg()
        by_api = _inter_broker_bytes(cluster)
    finally:
        cluster.stop()
        proxy.stop()
    records = steady_records + bulk_records
    produced = records * len(value)
    consumed_bytes = sum(consumed.values()) * len(value)
    pairs: dict[str, dict[str, int]] = {}
    cross_up = cross_down = in_up = in_down = b2b = 0
    for i, broker_rack in enumerate(cluster.racks):
        u1, d1 = relays1[f"b{i}:PLAINTEXT"]
        u0, d0 = relays0[f"b{i}:PLAINTEXT"]
        b2b += (u1 - u0) + (d1 - d0)
        for rack in sorted(set(cluster.racks)):
            name = f"b{i}:CLIENT_{rack.upper()}"
            up = relays1[name][0] - relays0[name][0]
            down = relays1[name][1] - relays0[name][1]
            pairs[f"client:{rack}->broker:{broker_rack}"] = {"up": up, "down": down}
            if rack == broker_rack:
                in_up, in_down = in_up + up, in_down + down
            else:
                cross_up, cross_down = cross_up + up, cross_down + down
    ops = _diff(proxy1, proxy0)
    s3 = {op.partition(":")[2]: row[0] for op, row in ops.items() if op.startswith("s3:")}
    ddb = {op.partition(":")[2]: row[0] for op, row in ops.items() if op.startswith("dynamodb:")}
    units = {op[len(UNITS):]: row for op, row in ops.items() if op.startswith(UNITS)}
    kinds = {op[len(KINDS):]: row[0] for op, row in ops.items() if op.startswith(KINDS)}
    wal_commits, commit_ranges = (ops[COMMITS][0], ops[COMMITS][2] // 1000) if COMMITS in ops \
        else (0, 0)
    wru = {op: row[2] / 1000 for op, row in units.items() if row[2]}
    rru = {op: row[3] / 1000 for op, row in units.items() if row[3]}
    commits = units.get("TransactWriteItems", [0, 0, 0, 0, 0])
    gib_in, gib_out = produced / GIB, consumed_bytes / GIB
    s3_puts = sum(n for op, n in s3.items() if op in S3_WRITES)
    forward_objects = kinds.get("PUT:zfw", 0) + kinds.get("PUT:wal+fwd", 0)
    leader_gets = kinds.get("GET:zfw", 0) + kinds.get("GET:wal-fwd", 0)
    s3_gets = s3.get("GetObject", 0)
    result = {
        "mode": mode,
        "backend": "embedded (file WAL, local objects, SQLite)" if embedded
        else "S3 + DynamoDB on moto (object WAL)",
        "seconds": round(seconds, 1),
        "load_avg_1m": [round(load0[0], 2), round(load1[0], 2)],
        "records": records,
        "consumed_records": consumed,
        "produced_bytes": produced,
        "consumed_bytes": consumed_bytes,
        "pairs": pairs,
        "bytes": {"in_zone_up": in_up, "in_zone_down": in_down, "cross_zone_up": cross_up,
                  "cross_zone_down": cross_down, "broker_to_broker": b2b},
        "cross_zone_produce_fraction": cross_up / produced if produced else None,
        "cross_zone_consume_fraction": cross_down / consumed_bytes if consumed_bytes else None,
        "cross_zone_per_gib": (cross_up + cross_down) / (produced + consumed_bytes),
        "broker_to_broker_per_gib": b2b / (produced + consumed_bytes),
        "broker_to_broker_per_gib_produced": b2b / produced,
        # what the brokers' requests to each other were (their /metrics), by API: bytes
        # sent + received over the whole run (the cluster's start included)
        "inter_broker_bytes_by_api": by_api,
        "latency": {route: _lat(v) for route, v in lat.items() if v},
        "s3_requests": s3,
        "s3_by_kind": kinds,
        # objects that carried forwarded batches: forward objects (file WAL layout, or a
        # broker before forwarded batches rode in the object WAL) and WAL objects with
        # forwarded sections; the leaders' GETs of their spans
        "forward_carrying_objects": forward_objects,
        "racks": len(set(cluster.racks)),
        "partitions": args.partitions,
        "wal_commits": wal_commits,
        "wal_commit_ranges": commit_ranges,
        "leader_gets_per_forward_object": (leader_gets / forward_objects
                                           if forward_objects else None),
        # the other zones' replica reads (the leaders' span reads are counted above)
        "gets_per_wal_object": (kinds.get("GET:wal", 0) / kinds["PUT:wal"]
                                if kinds.get("PUT:wal") else None),
        "s3_put_per_gib_produced": s3_puts / gib_in if s3 else None,
        "s3_get_per_gib_produced": s3_gets / gib_in if s3 else None,
        "ddb_calls": ddb,
        "ddb_wru": wru,
        "ddb_rru": rru,
        "ddb_wru_per_gib_produced": sum(wru.values()) / gib_in,
        "ddb_commit_wru_per_gib_produced": wru.get("TransactWriteItems", 0) / gib_in,
        "ddb_items_per_transact_write": commits[4] / commits[0] if commits[0] else None,
        "ddb_wru_per_transact_item": (commits[2] / 1000 / 2 / commits[4]) if commits[4] else None,
        "ddb_rru_per_gib_produced": sum(rru.values()) / gib_in,
        "gib_produced": gib_in,
        "gib_consumed": gib_out,
    }
    missing = {r: n for r, n in consumed.items() if n < records}
    if missing:
        result["error"] = f"consumers short of {records} records: {missing}"
    return result


def cost_inputs(m: dict[str, Any]) -> dict[str, float]:
    """What the cost model takes from one mode's figures (``cost --measured``)."""
    polls = sum(v for k, v in m.get("inter_broker_bytes_by_api", {}).items()
                if k.startswith("ReplicaState") and not k.endswith(" requests"))
    b2b = m["bytes"]["broker_to_broker"]
    out = {
        "ours.cross_az_produce_fraction": round(m["cross_zone_produce_fraction"], 6),
        "ours.cross_az_consume_fraction": round(m["cross_zone_consume_fraction"], 6),
        # the replicas' long polls apart: the model prices them per commit
        "ours.inter_broker_bytes_per_gib_written": round(
            max(b2b - polls, 0) / m["produced_bytes"], 5),
    }
    if polls and m.get("wal_commits"):  # per commit, partition its leader leads, other AZ
        led = m["partitions"] / m["racks"]
        out["ours.zone_replica_poll_bytes_per_partition"] = round(
            polls / (m["wal_commits"] * led * (m["racks"] - 1)), 1)
    if m.get("ddb_wru_per_transact_item"):
        out["ours.ddb_wru_per_transact_item"] = round(2 * m["ddb_wru_per_transact_item"], 3)
    if m.get("leader_gets_per_forward_object") is not None:
        out["ours.zone_leader_gets_per_forward_object"] = round(
            m["leader_gets_per_forward_object"], 3)
    if m["mode"] != "baseline" and m.get("gets_per_wal_object") is not None:
        out["ours.zone_replica_gets_per_wal_object"] = round(m["gets_per_wal_object"], 3)
    return out


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    ap = argparse.ArgumentParser(description=(__doc__ or "").split("\n\n")[0])
    ap.add_argument("--modes", default="baseline,zoned", help=f"subset of {','.join(MODES)}")
    ap.add_argument("--mb", type=float, default=40.0, help="MB each producer sends in bulk")
    ap.add_argument("--rate", type=int, default=20, help="steady records/s per producer")
    ap.add_argument("--embedded-latency", action=argparse.BooleanOptionalAction, default=True,
                    help="also time the zoned steady phase on embedded storage (no moto)")
    ap.add_argument("--embedded-only", action="store_true",
                    help="only the embedded latency run (no moto modes)")
    ap.add_argument("--latency-seconds", type=float, default=15.0)
    ap.add_argument("--value-bytes", type=int, default=1024)
    ap.add_argument("--partitions", type=int, default=12)
    ap.add_argument("--settle", type=float, default=2.0)
    ap.add_argument("--lease-ms", type=int, default=30_000,
                    help="broker lease (moto is slow: a short lease fences brokers)")
    ap.add_argument("--quick", action="store_true", help="8 MB per producer, 5 s steady")
    add_run_options(ap, "zones", 900)
    args = ap.parse_args(argv)
    if args.quick:
        args.mb, args.latency_seconds = min(args.mb, 8.0), min(args.latency_seconds, 5.0)
    modes = [m for m in args.modes.split(",") if m]
    if not modes or any(m not in MODES for m in modes):
        ap.error(f"--modes must be a subset of {','.join(MODES)}")
    args.mode_list = modes
    return args


def main(argv: list[str] | None = None) -> int:
    if argv and argv[0] == "_proxy":
        return proxy_main(argv[1:])
    args = parse_args(argv)
    modes = args.mode_list
    deadline = Deadline(args.timeout)
    work = Path(tempfile.mkdtemp(prefix="bench-zones-"))
    out = args.out or RESULTS_DIR / f"zones-{time.strftime('%Y%m%d-%H%M%S')}.json"
    report: dict[str, Any] = {
        "scenario": "zones",
        "settings": {k: v for k, v in vars(args).items() if k not in ("out",)},
        "machine": {"cpus": os.cpu_count(), "load_avg_at_start": os.getloadavg()},
        "modes": {},
    }
    try:
        for mode in [] if args.embedded_only else modes:
            print(f"[zones] {mode} ...", flush=True)
            # a moto of its own per mode (one request at a time, tests/support/moto.py): its
            # tables and objects grow, and it slows down
            moto = MotoServer(work, f"moto-{mode}").start()
            try:
                report["modes"][mode] = run_mode(mode, args, work, moto.endpoint, deadline)
            except BenchError as exc:
                report["modes"][mode] = {"mode": mode, "error": str(exc)}
            finally:
                moto.stop()
            print(json.dumps(_summary(report["modes"][mode])), flush=True)
        if args.embedded_latency and "zoned" in modes:
            print("[zones] zoned, embedded storage (latency) ...", flush=True)
            try:
                emb = run_mode("zoned", args, work, "", deadline, embedded=True)
            except BenchError as exc:
                emb = {"mode": "zoned", "error": str(exc)}
            report["modes"]["zoned-embedded"] = emb
            print(json.dumps(_summary(emb)), flush=True)
    finally:
        report["machine"]["load_avg_at_end"] = os.getloadavg()
        if not args.keep_data:
            shutil.rmtree(work, ignore_errors=True)
    modes_done = report["modes"]
    report["cost_inputs"] = {
        label: cost_inputs(modes_done[m])
        for label, m in (("before", "baseline"), ("after", "zoned"))
        if m in modes_done and "error" not in modes_done[m]
    }
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(report, indent=2, default=str))
    print(f"[zones] wrote {out}")
    return 1 if any("error" in m for m in modes_done.values()) else 0


def _summary(m: dict[str, Any]) -> dict[str, Any]:
    keys = ("mode", "backend", "error", "seconds", "load_avg_1m", "cross_zone_produce_fraction",
            "cross_zone_consume_fraction", "cross_zone_per_gib", "broker_to_broker_per_gib",
            "latency", "s3_put_per_gib_produced", "s3_get_per_gib_produced",
            "ddb_wru_per_gib_produced", "ddb_commit_wru_per_gib_produced",
            "ddb_items_per_transact_write", "ddb_wru_per_transact_item",
            "forward_carrying_objects", "leader_gets_per_forward_object",
            "gets_per_wal_object", "s3_by_kind", "inter_broker_bytes_by_api", "wal_commits",
            "wal_commit_ranges")
    return {k: m[k] for k in keys if k in m}


if __name__ == "__main__":
    with contextlib.suppress(KeyboardInterrupt):
        sys.exit(main(sys.argv[1:]))
