#!/usr/bin/env python3
"""Partition reassignment and failover times of brokers sharing one data directory.

Two parts, each on fresh brokers that this script starts on free 127.0.0.1 ports, all with
the same ``--data-dir`` (one cluster: SQLite metadata, a local-directory object store and the
WALs on one disk), and stops by PID at the end, also after errors or Ctrl-C:

- **reassign**: per WAL (``BROKER_WAL=file`` and ``object``), 2 brokers; one partition per
  ``--sizes-mb`` (10 MB, 100 MB, 1 GB) of 1 KiB records; then each is moved to the other broker and
  back ``--moves`` times with ``reassign()``. Reported: how long ``reassign()`` takes, and
  how long until a producer's next acks=all write to the moved partition is acknowledged
  (necessarily by the new leader).
- **failover**: 3 brokers, one topic of 6 partitions led by broker 1 (which created it);
  SIGKILL broker 1 while a producer is writing; time until a survivor's metadata shows live
  leaders for all 6 partitions and an acks=all write to each one is acknowledged; then every
  acknowledged record must be read back. Broker default lease (6000 ms) and 3000 ms.

    .venv/bin/python bench/reassignment.py            # 10 MB, 100 MB, 1 GB; 5 moves; 3 failovers
    .venv/bin/python bench/reassignment.py --quick    # 10 MB, 100 MB; 2 moves; 1 failover

See bench/README.md.
"""

from __future__ import annotations

import argparse
import contextlib
import datetime as dt
import logging
import os
import random
import re
import signal
import sqlite3
import sys
import time
import uuid
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from confluent_kafka import Consumer, Producer, TopicPartition
from confluent_kafka.admin import AdminClient, NewTopic
from produce_consume import (
    MB,
    PRODUCER_CONF,
    REPO,
    VALUE_BYTES,
    Aborted,
    BenchError,
    BrokerProcess,
    Deadline,
    add_run_options,
    bench_environment,
    bench_run,
    fmt,
    median,
    ours_argv,
    print_columns,
    results_path,
    save_json,
)

from broker_service.control.kafka_client import KafkaClient
from broker_service.control.reassignment import reassign

WALS = ("file", "object")
PARTS = ("reassign", "failover")
GOAL_S = 1.0  # the target for a move, as the client sees it
FAILOVER_PARTITIONS = 6
DEFAULT_LEASE_MS = 6000  # BrokerConfig.lease_ms
PROBE_TIMEOUT_S = 30.0
# The producer that fills partitions and writes probes: produce_consume.py's (acks=all,
# linger.ms=5, batch.size=1000000), without idempotence as in the cluster tests.
FILL_CONF: dict[str, Any] = {**PRODUCER_CONF, "enable.idempotence": False}


class ClientLog(logging.Handler):
    """librdkafka's log lines (connection refused after the kill, ...), kept for the JSON
    instead of cluttering the tables."""

    def __init__(self) -> None:
        super().__init__()
        self.lines: list[str] = []

    def emit(self, record: logging.LogRecord) -> None:
        stamp = time.strftime("%H:%M:%S", time.localtime(record.created))
        self.lines.append(f"{stamp}.{int(record.msecs):03d} {record.getMessage()}")


CLIENT_LOG = ClientLog()
LIBRDKAFKA_LOGGER = logging.getLogger("bench.librdkafka")
LIBRDKAFKA_LOGGER.addHandler(CLIENT_LOG)
LIBRDKAFKA_LOGGER.propagate = False
LIBRDKAFKA_LOGGER.setLevel(logging.DEBUG)  # only when a client sets "debug" (diagnosis)
FILL_CONF["logger"] = LIBRDKAFKA_LOGGER
FAILOVER_PRODUCER_CONF: dict[str, Any] = {**FILL_CONF, "message.timeout.ms": 120_000}


# -- settings -----------------------------------------------------------------------------
@dataclass(frozen=True)
class Settings:
    parts: list[str]
    wals: list[str]
    sizes_mb: list[float]  # one partition per size, moved in turn
    moves: int
    ask: str
    fill_budget: float
    upload_wait: float
    failover_wals: list[str]
    leases: list[int | None]  # None: BROKER_LEASE_MS not set (the broker default)
    failover_rounds: int
    failover_records: int
    pre_kill_seconds: float
    kill_jitter: bool
    failover_timeout: float
    timeout: float
    keep_data: bool
    out: Path | None = None


def size_label(mb: float) -> str:
    return f"{mb:g}MB"


# -- a cluster of broker processes on one data dir ----------------------------------------
def broker_env(node_id: int, wal: str, lease_ms: int | None,
               extra: dict[str, str] | None = None) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("BROKER_")}
    # each broker its own /metrics port (auto: the OS's choice), as brokers sharing a host
    # cannot all have the default
    env.update(PYTHONPATH=str(REPO), BROKER_NODE_ID=str(node_id), BROKER_WAL=wal,
               BROKER_METRICS_PORT="auto", **(extra or {}))
    if lease_ms is not None:
        env["BROKER_LEASE_MS"] = str(lease_ms)
    return env


class Cluster:
    """``n`` broker processes (node ids 1..n) sharing ``data_dir``."""

    def __init__(self, workdir: Path, tag: str, n: int, wal: str, lease_ms: int | None,
                 extra_env: dict[str, str] | None = None) -> None:
        self.dir = workdir / tag
        self.dir.mkdir(parents=True)
        self.data_dir = self.dir / "data"
        self.brokers: list[BrokerProcess] = []
        for node_id in range(1, n + 1):
            ready = self.dir / f"broker-{node_id}.ready"
            self.brokers.append(BrokerProcess(f"broker-{node_id}",
                                              ours_argv(self.data_dir, ready), 0,
                                              self.dir / f"broker-{node_id}.log",
                                              broker_env(node_id, wal, lease_ms, extra_env),
                                              ready))  # fmt: skip
        self.exits: dict[str, Any] = {}

    def start(self, deadline: Deadline, count: int | None = None) -> None:
        """Starts the first ``count`` brokers (all by default) that are not running yet,
        broker 1 first: it creates the metadata store."""
        for b in self.brokers[:count]:
            if b.popen is None:
                b.start(deadline.sooner(60))

    def start_alone_with_topic(self, topic: str, partitions: int, deadline: Deadline) -> None:
        """Broker 1 alone creates ``topic`` (so it leads every partition: a new topic is
        spread over the live brokers), then the others start and see broker 1 lead."""
        self.start(deadline, count=1)
        create_topic(self.broker(1).bootstrap, topic, partitions, deadline)
        self.start(deadline)
        wait_leaders(self.brokers, topic,
                     lambda m: len(m) == partitions and set(m.values()) == {1},
                     deadline.sooner(20), "waiting for every broker to see broker 1 lead")

    def broker(self, node_id: int) -> BrokerProcess:
        return self.brokers[node_id - 1]

    def bootstrap(self, node_ids: list[int] | None = None) -> str:
        ids = node_ids or [i + 1 for i in range(len(self.brokers))]
        return ",".join(self.broker(i).bootstrap for i in ids)

    def kill(self, node_id: int) -> None:
        b = self.broker(node_id)
        assert b.popen is not None
        os.kill(b.pid, signal.SIGKILL)  # our own child, by its PID
        b.popen.wait(timeout=10)
        self.exits[b.name] = {"exit_code": b.popen.returncode, "killed_by_bench": True}

    def check_alive(self, doing: str) -> None:
        for b in self.brokers:
            if b.name not in self.exits:
                b.assert_alive(doing)

    def stop(self) -> None:
        for b in self.brokers:
            if b.name in self.exits:
                continue
            try:
                b.stop()
            finally:
                self.exits[b.name] = b.exit_info

    def logs(self) -> dict[str, str]:
        out = {}
        for b in self.brokers:
            with contextlib.suppress(OSError):
                out[b.name] = b.log_path.read_text(errors="replace")
        return out

    def log_excerpt(self, pattern: str = r"WARNING|ERROR|Traceback|now led", n: int = 20) -> str:
        rx = re.compile(pattern)
        lines = []
        for name, text in self.logs().items():
            hits = [ln for ln in text.splitlines() if rx.search(ln)]
            lines += [f"[{name}] {ln}" for ln in hits[-n:]]
        return "\n".join(lines) or "(nothing matching in the broker logs)"

    def metadata_db(self) -> sqlite3.Connection:
        uri = f"file:{self.data_dir / 'metadata.sqlite'}?mode=ro"
        return sqlite3.connect(uri, uri=True, timeout=5)


def create_topic(bootstrap: str, topic: str, partitions: int, deadline: Deadline) -> None:
    conf: dict[str, Any] = {"bootstrap.servers": bootstrap, "logger": LIBRDKAFKA_LOGGER}
    admin = AdminClient(conf)
    futures = admin.create_topics([NewTopic(topic, num_partitions=partitions,
                                            replication_factor=1)],
                                  operation_timeout=10, request_timeout=15)
    futures[topic].result(timeout=max(1.0, deadline.remaining()))


def leaders_at(broker: BrokerProcess, topic: str) -> tuple[dict[int, int], set[int]] | None:
    """Partition leaders and live brokers as ``broker`` itself answers (no other broker)."""
    try:
        with KafkaClient(broker.bootstrap, client_id="bench-metadata", timeout=2) as kc:
            md = kc.metadata([topic])
    except Exception:
        return None
    return md.leaders.get(topic, {}), set(md.brokers)


def wait_leaders(brokers: list[BrokerProcess], topic: str, expect: Callable[[dict[int, int]],
                 bool], deadline: Deadline, doing: str) -> None:
    while True:
        views = [leaders_at(b, topic) for b in brokers]
        if all(v is not None and expect(v[0]) for v in views):
            return
        deadline.check(f"{doing}; leaders seen: {[v and v[0] for v in views]}")
        time.sleep(0.05)


def stream_state(cluster: Cluster, topic: str, partition: int) -> tuple[int, int]:
    """(end offset committed to objects, number of committed ranges), from the metadata store."""
    with contextlib.closing(cluster.metadata_db()) as db:
        row = db.execute("SELECT stream_id FROM partitions WHERE topic=? AND partition=?",
                         (topic, partition)).fetchone()
        if row is None:
            return 0, 0
        end, n = db.execute("SELECT COALESCE(MAX(end_offset), 0), COUNT(*) FROM stream_ranges "
                            "WHERE stream_id=?", (row[0],)).fetchone()
    return int(end), int(n)


def log_end_offset(bootstrap: str, topic: str, partition: int) -> int:
    with KafkaClient(bootstrap, client_id="bench-offsets", timeout=5) as kc:
        return kc.log_end_offsets([(topic, partition)])[(topic, partition)]


# -- filling a partition ------------------------------------------------------------------
@dataclass
class Fill:
    partition: int
    target_mb: float
    records: int = 0
    seconds: float = 0.0
    capped: bool = False  # stopped at --fill-budget before reaching the target

    @property
    def mb(self) -> float:
        return self.records * VALUE_BYTES / MB

    @property
    def mb_per_s(self) -> float:
        return self.mb / self.seconds if self.seconds else 0.0


def fill(bootstrap: str, topic: str, partition: int, target_mb: float, budget_s: float,
         deadline: Deadline, label: str) -> Fill:
    result = Fill(partition, target_mb)
    errors: list[str] = []

    def on_delivery(err: Any, _msg: Any) -> None:
        if err is not None:
            errors.append(str(err))

    producer = Producer({**FILL_CONF, "bootstrap.servers": bootstrap, "client.id": "bench-fill",
                         "on_delivery": on_delivery, "delivery.report.only.error": True})
    producer.list_topics(topic, timeout=10)
    value = os.urandom(VALUE_BYTES)
    n = int(target_mb * MB) // VALUE_BYTES
    start = time.perf_counter()
    last_report = start
    i = 0
    while i < n:
        try:
            producer.produce(topic, value, partition=partition)
            i += 1
        except BufferError:  # local queue full: let deliveries drain
            producer.poll(0.005)
        if i % 1024 == 0:
            producer.poll(0)
            now = time.perf_counter()
            deadline.check(f"filling partition {label} ({i}/{n} records)")
            if now - start > budget_s:
                result.capped = True
                break
            if now - last_report >= 10:
                last_report = now
                rate = i * VALUE_BYTES / MB / (now - start)
                print(f"    {label}: {i * VALUE_BYTES / MB:.0f}/{target_mb:.0f} MB queued, "
                      f"{rate:.1f} MB/s, ~{(n - i) * VALUE_BYTES / MB / rate:.0f}s left",
                      flush=True)
    left = producer.flush(max(1.0, deadline.remaining()))
    result.seconds = time.perf_counter() - start
    result.records = i
    if left:
        raise BenchError(f"filling {label}: flush timed out with {left} records undelivered")
    if errors:
        raise BenchError(f"filling {label}: {len(errors)} delivery errors, e.g. {errors[0]}")
    return result


# -- probes: one acks=all write, timed to its acknowledgement ------------------------------
class Prober:
    """A long-lived producer (it knows the old leader when a move starts, as a real client
    would) that writes one record and waits for its acknowledgement."""

    def __init__(self, bootstrap: str) -> None:
        self.producer = Producer({**FILL_CONF, "bootstrap.servers": bootstrap,
                                  "client.id": "bench-probe",
                                  "message.timeout.ms": int(PROBE_TIMEOUT_S * 1000)})
        self.value = os.urandom(VALUE_BYTES)
        self.last_offset: dict[int, int] = {}
        self.offset_gaps = 0
        self.acked = 0

    def write(self, topic: str, partition: int) -> float:
        """Produces one record; returns the perf_counter time of its acknowledgement.
        With no move under way this is one acks=all round trip: linger.ms, the WAL flush
        (the object WAL lingers 50 ms by default) and the network."""
        box: list[tuple[float, Any, int]] = []

        def on_delivery(err: Any, msg: Any) -> None:
            box.append((time.perf_counter(), err, msg.offset()))

        self.producer.produce(topic, self.value, partition=partition, on_delivery=on_delivery)
        end = time.monotonic() + PROBE_TIMEOUT_S + 5
        while not box:
            self.producer.poll(0.05)
            if time.monotonic() > end:
                raise BenchError(f"probe to partition {partition} not acknowledged in time")
        t, err, offset = box[0]
        if err is not None:
            raise BenchError(f"probe to partition {partition} failed: {err}")
        prev = self.last_offset.get(partition)
        if prev is not None and offset != prev + 1:  # only probes write after the fill
            self.offset_gaps += 1
        self.last_offset[partition] = offset
        self.acked += 1
        return t


# -- part 1: reassignment -----------------------------------------------------------------
@dataclass
class Move:
    wal: str
    label: str  # the partition's fill size, e.g. "100MB"
    partition: int
    round: int
    source: int
    target: int
    asked: int  # the broker the request went to
    baseline_s: float | None = None  # a write just before the move: its produce -> ack
    reassign_s: float | None = None  # ReassignmentResult.seconds
    write_s: float | None = None  # move start -> the next write acknowledged by the new leader
    after_return_s: float | None = None  # reassign() returned -> that acknowledgement
    target_led_s: float | None = None  # move start -> the target logs "now led here"
    leader_epoch: int | None = None  # the partition's epoch after this move
    started_wall: float = 0.0
    error: str | None = None


@dataclass
class ReassignRun:
    wal: str
    fills: dict[str, Fill] = field(default_factory=dict)
    upload_wait_s: float | None = None
    uploaded: dict[str, bool] = field(default_factory=dict)
    ranges: dict[str, int] = field(default_factory=dict)  # committed ranges per partition
    moves: list[Move] = field(default_factory=list)
    checks: dict[str, Any] = field(default_factory=dict)
    error: str | None = None
    log_excerpt: str | None = None


def wait_uploaded(cluster: Cluster, topic: str, ends: dict[str, tuple[int, int]],
                  wait_s: float, run: ReassignRun) -> None:
    """Waits (up to ``wait_s``) until the metadata store has every filled offset committed."""
    start = time.monotonic()
    while True:
        state = {label: stream_state(cluster, topic, p) for label, (p, _) in ends.items()}
        done = {label: state[label][0] >= end for label, (_, end) in ends.items()}
        if all(done.values()) or time.monotonic() - start >= wait_s:
            run.upload_wait_s = time.monotonic() - start
            run.uploaded = done
            run.ranges = {label: s[1] for label, s in state.items()}
            return
        time.sleep(0.1)


def run_reassign(wal: str, settings: Settings, workdir: Path, deadline: Deadline,
                 exits: dict[str, Any]) -> ReassignRun:
    run = ReassignRun(wal)
    cluster = Cluster(workdir, f"reassign-{wal}", 2, wal, None)
    topic = f"reassign-{wal}-{uuid.uuid4().hex[:6]}"
    parts = {size_label(mb): p for p, mb in enumerate(settings.sizes_mb)}
    try:
        cluster.start_alone_with_topic(topic, len(parts), deadline)
        print(f"[reassign {wal}] brokers {[b.pid for b in cluster.brokers]} on "
              f"{cluster.bootstrap()}", flush=True)
        for label, target_mb in zip(parts, settings.sizes_mb, strict=True):
            f = fill(cluster.broker(1).bootstrap, topic, parts[label], target_mb,
                     settings.fill_budget, deadline, label)
            run.fills[label] = f
            print(f"  fill {label}: {f.mb:.0f} MB in {f.seconds:.2f}s = {f.mb_per_s:.1f} MB/s"
                  + (f" (CAPPED at --fill-budget {settings.fill_budget:.0f}s, target "
                     f"{target_mb:.0f} MB)" if f.capped else ""), flush=True)
        ends = {label: (p, run.fills[label].records) for label, p in parts.items()}
        wait_uploaded(cluster, topic, ends, settings.upload_wait, run)
        print(f"  uploads: {run.uploaded} after {run.upload_wait_s:.1f}s; committed ranges "
              f"{run.ranges}", flush=True)
        cluster.check_alive("filling")
        prober = Prober(cluster.bootstrap())
        for p in parts.values():
            prober.write(topic, p)  # the prober learns the leaders
        leader = {label: 1 for label in parts}
        for round_no in range(1, settings.moves + 1):
            for direction in ("there", "back"):
                for label, p in parts.items():  # sizes interleaved: drift hits all
                    deadline.check("moving partitions")
                    source = leader[label]
                    target = 2 if source == 1 else 1
                    asked = target if settings.ask == "target" else source
                    m = Move(wal, label, p, round_no, source, target, asked)
                    run.moves.append(m)
                    move_once(cluster, prober, topic, m)
                    if m.error is None:
                        leader[label] = target
                    else:  # re-read who leads before the next move
                        v = leaders_at(cluster.broker(source), topic)
                        if v is not None and p in v[0]:
                            leader[label] = v[0][p]
                    print(f"  {label} {source}->{target} (asked {asked}, {direction}): "
                          + (f"FAILED {m.error}" if m.error else
                             f"reassign {fmt(m.reassign_s, '.0f', 1000)} ms, write ok "
                             f"{fmt(m.write_s, '.0f', 1000)} ms after the move began"),
                          flush=True)
        cluster.check_alive("moving partitions")
        attach_takeover_times(cluster, topic, run.moves)
        run.checks = final_checks(cluster, topic, parts, run, prober)
        prober.producer.flush(10)
    except Aborted:
        raise
    except Exception as exc:  # a failed part is a result, not a crash
        run.error = f"{type(exc).__name__}: {exc}"
    finally:
        with contextlib.suppress(Exception):
            if run.error or any(m.error for m in run.moves):
                run.log_excerpt = cluster.log_excerpt()
        cluster.stop()
        exits[f"reassign-{wal}"] = cluster.exits
    return run


def move_once(cluster: Cluster, prober: Prober, topic: str, m: Move) -> None:
    try:
        before = time.perf_counter()
        m.baseline_s = prober.write(topic, m.partition) - before
        m.started_wall = time.time()
        t0 = time.perf_counter()
        res = reassign(cluster.broker(m.asked).bootstrap, topic, m.partition, m.target)
        t1 = time.perf_counter()
        if not res.ok:
            m.error = f"reassign error {res.error_code}: {res.error_message}"
            return
        m.reassign_s = res.seconds
        t2 = prober.write(topic, m.partition)  # the old leader refuses it: only the new acks
        m.write_s, m.after_return_s = t2 - t0, t2 - t1
        wait_leaders(cluster.brokers, topic, lambda leaders: leaders.get(m.partition) == m.target,
                     Deadline(10), f"waiting for every broker to see {m.label} on {m.target}")
    except (BenchError, OSError, RuntimeError) as exc:
        m.error = f"{type(exc).__name__}: {exc}"


def attach_takeover_times(cluster: Cluster, topic: str, moves: list[Move]) -> None:
    """When each target logged that it leads the partition (its epoch tells the moves apart:
    every successful move adds one)."""
    led: dict[tuple[int, int], float] = {}
    rx = re.compile(rf"{re.escape(topic)}-(\d+): now led here \(epoch (\d+)\)")
    for text in cluster.logs().values():
        for t, line in log_times(text, rx.pattern, 0.0):
            m = rx.search(line)
            assert m is not None
            led[(int(m.group(1)), int(m.group(2)))] = t
    epochs: dict[int, int] = {}
    for mv in moves:
        if mv.error is None:
            epochs[mv.partition] = epochs.get(mv.partition, 0) + 1
            mv.leader_epoch = epochs[mv.partition]
            led_at = led.get((mv.partition, mv.leader_epoch))
            if led_at is not None:
                mv.target_led_s = led_at - mv.started_wall


def final_checks(cluster: Cluster, topic: str, parts: dict[str, int], run: ReassignRun,
                 prober: Prober) -> dict[str, Any]:
    """Offsets are dense after all the moves, and the largest partition's first records are
    read back from objects."""
    checks: dict[str, Any] = {"probe_offset_gaps": prober.offset_gaps}
    for label, p in parts.items():
        end = log_end_offset(cluster.bootstrap(), topic, p)
        probes = 1 + sum((m.baseline_s is not None) + (m.write_s is not None)
                         for m in run.moves if m.label == label)
        checks[f"{label}_log_end"] = end
        checks[f"{label}_expected_log_end"] = run.fills[label].records + probes
    c = Consumer({"bootstrap.servers": cluster.bootstrap(), "group.id": f"check-{topic}",
                  "enable.auto.commit": False, "fetch.queue.backoff.ms": 10,
                  "logger": LIBRDKAFKA_LOGGER})
    try:
        largest = max(parts, key=lambda label: run.fills[label].records)
        c.assign([TopicPartition(topic, parts[largest], 0)])
        got = 0
        until = time.monotonic() + 30
        while got < 1000 and time.monotonic() < until:
            for msg in c.consume(1000 - got, 0.5):
                if msg.error() is None and msg.offset() == got:
                    got += 1
        checks["largest_first_1000_read_back"] = got == 1000
    finally:
        c.close()
    bad = [k for k in parts if checks[f"{k}_log_end"] != checks[f"{k}_expected_log_end"]]
    if bad or prober.offset_gaps or not checks["largest_first_1000_read_back"]:
        raise BenchError(f"data check failed: {checks}")
    return checks


# -- part 2: failover ---------------------------------------------------------------------
@dataclass
class Failover:
    wal: str
    lease_ms: int | None
    round: int
    kill_jitter_s: float = 0.0  # random wait before the kill (renewal phase)
    lease_left_s: float | None = None  # broker 1's lease expiry - kill time
    fenced_s: float | None = None  # kill -> a survivor logs the fencing
    led_s: float | None = None  # kill -> the last partition logged "now led here"
    metadata_s: float | None = None  # kill -> broker 2's metadata: live leaders for all
    served_s: float | None = None  # kill -> metadata ok and a write to every partition acked
    served_by_partition: dict[int, float] = field(default_factory=dict)
    new_leaders: dict[int, int] = field(default_factory=dict)
    acked_before_kill: int = 0
    acked_total: int = 0
    consumed: int = 0
    lost_before_kill: int | None = None
    lost_total: int | None = None
    duplicates: int | None = None
    offset_mismatches: int | None = None
    wal_batches_recovered: int = 0
    error: str | None = None
    log_excerpt: str | None = None


LOG_TIME = re.compile(r"^(\d{4}-\d\d-\d\d \d\d:\d\d:\d\d,\d{3}) ")


def log_times(text: str, pattern: str, after: float) -> list[tuple[float, str]]:
    """(seconds after ``after`` (wall clock), line) of every log line matching ``pattern``."""
    out = []
    rx = re.compile(pattern)
    for line in text.splitlines():
        m = LOG_TIME.match(line)
        if m and rx.search(line):
            t = dt.datetime.strptime(m.group(1), "%Y-%m-%d %H:%M:%S,%f").timestamp()
            if t >= after - 0.001:
                out.append((t - after, line))
    return out


def run_failover(wal: str, lease_ms: int | None, round_no: int, settings: Settings,
                 workdir: Path, deadline: Deadline, exits: dict[str, Any]) -> Failover:
    r = Failover(wal, lease_ms, round_no)
    tag = f"failover-{wal}-{lease_ms or 'default'}-r{round_no}"
    cluster = Cluster(workdir, tag, 3, wal, lease_ms)
    topic = f"failover-{uuid.uuid4().hex[:6]}"
    n_parts = FAILOVER_PARTITIONS
    producer: Producer | None = None
    try:
        cluster.start_alone_with_topic(topic, n_parts, deadline)
        acked: dict[int, tuple[int, int]] = {}  # key -> (partition, offset)
        ack_time: dict[int, float] = {}
        failed: list[str] = []

        def on_delivery(err: Any, msg: Any) -> None:
            key = int(msg.key())
            if err is None:
                acked[key] = (msg.partition(), msg.offset())
                ack_time[key] = time.monotonic()
            else:
                failed.append(f"{key}: {err}")

        producer = Producer({**FAILOVER_PRODUCER_CONF, "bootstrap.servers": cluster.bootstrap(),
                             "client.id": "bench-failover", "on_delivery": on_delivery})
        value = os.urandom(VALUE_BYTES)
        key = 0

        def produce(partition: int) -> int:
            nonlocal key
            key += 1
            while True:
                try:
                    producer.produce(topic, value, key=str(key).encode(), partition=partition)
                    return key
                except BufferError:
                    producer.poll(0.005)

        for _ in range(settings.failover_records):
            produce(key % n_parts)
            if key % 1024 == 0:
                producer.poll(0)
        if producer.flush(max(1.0, deadline.sooner(60).remaining())):
            raise BenchError("the records before the kill were not all acknowledged")
        # keep writing until the kill: the last acknowledged records are in broker 1's WAL.
        # A random extra wait of up to one lease renewal interval puts the kill at a random
        # point of broker 1's renewal cycle (else the script's fixed timeline picks one).
        if settings.kill_jitter:
            r.kill_jitter_s = random.uniform(0, (lease_ms or DEFAULT_LEASE_MS) / 3000)
        end = time.monotonic() + settings.pre_kill_seconds + r.kill_jitter_s
        while time.monotonic() < end:
            produce(key % n_parts)
            producer.poll(0.001)
        with contextlib.closing(cluster.metadata_db()) as db:
            (expiry_ms,) = db.execute("SELECT lease_expiry_ms FROM brokers WHERE broker_id=1"
                                      ).fetchone()
        producer.poll(0)
        r.acked_before_kill = len(acked)
        killed_wall = time.time()
        cluster.kill(1)
        killed = time.monotonic()
        r.lease_left_s = expiry_ms / 1000 - killed_wall
        measure_failover(cluster, producer, topic, produce, ack_time, killed, settings, r)
        if producer.flush(max(1.0, deadline.sooner(60).remaining())):
            raise BenchError("records still unacknowledged 60 s after the failover")
        if failed:
            raise BenchError(f"{len(failed)} delivery errors, e.g. {failed[0]}")
        r.acked_total = len(acked)
        before = set(list(acked)[: r.acked_before_kill])
        loss = check_no_loss(cluster.bootstrap([2, 3]), topic, n_parts, acked, before,
                             deadline)
        r.consumed, r.lost_before_kill, r.lost_total = loss.consumed, loss.lost_before, loss.lost
        r.duplicates, r.offset_mismatches = loss.duplicates, loss.offset_mismatches
        logs = cluster.logs()
        fence = sorted(t for text in logs.values()
                       for t, _ in log_times(text, r"lease expired; fenced", killed_wall))
        led = [t for text in logs.values()
               for t, _ in log_times(text, rf"{topic}-\d+: now led here", killed_wall)]
        r.fenced_s = fence[0] if fence else None
        r.led_s = max(led) if led else None
        r.wal_batches_recovered = sum(
            int(m.group(1)) for text in logs.values()
            for _, line in log_times(text, rf"{topic}-\d+: now led here", killed_wall)
            for m in [re.search(r"(\d+) batches recovered", line)] if m)
    except Aborted:
        raise
    except Exception as exc:
        r.error = f"{type(exc).__name__}: {exc}"
    finally:
        if producer is not None:
            producer.purge()
        with contextlib.suppress(Exception):
            if r.error or r.lost_total:
                r.log_excerpt = cluster.log_excerpt()
        cluster.stop()
        exits[tag] = cluster.exits
    return r


def measure_failover(cluster: Cluster, producer: Producer, topic: str,
                     produce: Callable[[int], int], ack_time: dict[int, float], killed: float,
                     settings: Settings, r: Failover) -> None:
    """After the kill: one probe in flight per partition until one is acknowledged (every
    probe is written after the kill, so only a new leader can acknowledge it), and broker 2's
    metadata polled until it shows live leaders for all partitions."""
    n_parts = FAILOVER_PARTITIONS
    survivor = cluster.broker(2)
    in_flight: dict[int, int] = {}  # partition -> probe key
    next_metadata = 0.0
    end = killed + settings.failover_timeout
    while True:
        now = time.monotonic()
        for p in range(n_parts):
            k = in_flight.get(p)
            if p in r.served_by_partition:
                continue
            if k is not None and k in ack_time:
                r.served_by_partition[p] = ack_time[k] - killed
                continue
            if k is None:
                in_flight[p] = produce(p)
        producer.poll(0.005)
        if r.metadata_s is None and now >= next_metadata:
            view = leaders_at(survivor, topic)
            if view is not None:
                leaders, live = view
                if len(leaders) == n_parts and all(
                        lead != 1 and lead in live for lead in leaders.values()):
                    r.metadata_s = time.monotonic() - killed
                    r.new_leaders = leaders
            next_metadata = now + 0.05
        if r.metadata_s is not None and len(r.served_by_partition) == n_parts:
            r.served_s = max(r.metadata_s, *r.served_by_partition.values())
            return
        if now > end:
            raise BenchError(f"not served {settings.failover_timeout:.0f}s after the kill: "
                             f"metadata ok after {r.metadata_s}, partitions acknowledged: "
                             f"{sorted(r.served_by_partition)}")
        cluster.check_alive("failing over")


@dataclass
class LossCheck:
    consumed: int  # records read back, duplicates included
    lost_before: int  # of the records in ``before``: not read back
    lost: int  # acknowledged but not read back
    duplicates: int  # read twice
    offset_mismatches: int  # read back at another offset than acknowledged


def check_no_loss(bootstrap: str, topic: str, partitions: int,
                  acked: dict[int, tuple[int, int]], before: set[int],
                  deadline: Deadline) -> LossCheck:
    """Reads every partition to its end; every acknowledged record (keyed by its integer key)
    must be there, at the offset it was acknowledged with."""
    c = Consumer({"bootstrap.servers": bootstrap,
                  "group.id": f"check-{topic}", "enable.auto.commit": False,
                  "fetch.queue.backoff.ms": 10, "logger": LIBRDKAFKA_LOGGER})
    got: dict[int, tuple[int, int]] = {}
    dups = 0
    try:
        tps = [TopicPartition(topic, p, 0) for p in range(partitions)]
        ends = [c.get_watermark_offsets(tp, timeout=10)[1] for tp in tps]
        c.assign(tps)
        pos = [0] * partitions
        stop = deadline.sooner(60)
        while any(p < e for p, e in zip(pos, ends, strict=True)):
            stop.check(f"reading back (at {pos} of {ends})")
            for msg in c.consume(10_000, 0.5):
                if msg.error() is not None:
                    raise BenchError(f"consume error: {msg.error()}")
                key, part, offset = msg.key(), msg.partition(), msg.offset()
                assert part is not None and offset is not None
                pos[part] = offset + 1
                if key is None:  # not a checked record (e.g. a keyless fill)
                    continue
                k = int(key)
                dups += k in got
                got[k] = (part, offset)
    finally:
        c.close()
    return LossCheck(consumed=len(got) + dups, lost_before=len(before - got.keys()),
                     lost=len(acked.keys() - got.keys()), duplicates=dups,
                     offset_mismatches=sum(1 for k, v in acked.items()
                                           if k in got and got[k] != v))


# -- summary ------------------------------------------------------------------------------
def reassign_rows(runs: list[ReassignRun]) -> list[dict[str, Any]]:
    rows = []
    for run in runs:
        for label in run.fills:
            moves = [m for m in run.moves if m.label == label]
            ok = [m for m in moves if m.error is None and m.write_s is not None]
            f = run.fills.get(label)
            rows.append({
                "wal": run.wal, "partition": label, "mb": f.mb if f else None,
                "ranges": run.ranges.get(label), "moves": len(moves), "ok": len(ok),
                "baseline_write_median_s": median([m.baseline_s for m in ok if m.baseline_s]),
                "reassign_median_s": median([m.reassign_s for m in ok if m.reassign_s]),
                "reassign_max_s": max((m.reassign_s or 0 for m in ok), default=None),
                "write_median_s": median([m.write_s for m in ok if m.write_s]),
                "write_max_s": max((m.write_s or 0 for m in ok), default=None),
                "after_return_median_s": median([m.after_return_s for m in ok
                                                 if m.after_return_s]),
                "target_led_median_s": median([m.target_led_s for m in ok
                                               if m.target_led_s is not None]),
                "target_led_max_s": max((m.target_led_s for m in ok
                                         if m.target_led_s is not None), default=None),
            })
    return rows


def failover_rows(results: list[Failover]) -> list[dict[str, Any]]:
    rows = []
    keys = list(dict.fromkeys((r.wal, r.lease_ms) for r in results))
    for wal, lease in keys:
        rs = [r for r in results if r.wal == wal and r.lease_ms == lease]
        ok = [r for r in rs if r.error is None and r.served_s is not None]

        def med(attr: str, ok: list[Failover] = ok) -> float | None:
            return median([getattr(r, attr) for r in ok if getattr(r, attr) is not None])

        rows.append({
            "wal": wal, "lease_ms": lease, "rounds": len(rs), "ok": len(ok),
            "lease_left_median_s": med("lease_left_s"), "fenced_median_s": med("fenced_s"),
            "led_median_s": med("led_s"), "metadata_median_s": med("metadata_s"),
            "served_median_s": med("served_s"),
            "served_max_s": max((r.served_s or 0 for r in ok), default=None),
            "acked_before_kill": sum(r.acked_before_kill for r in rs),
            "acked_total": sum(r.acked_total for r in rs),
            "lost": sum(r.lost_total or 0 for r in rs),
            "lost_before_kill": sum(r.lost_before_kill or 0 for r in rs),
            "duplicates": sum(r.duplicates or 0 for r in rs),
            "offset_mismatches": sum(r.offset_mismatches or 0 for r in rs),
        })
    return rows


def print_table(title: str, cols: list[tuple[str, int]], cells: list[list[str]]) -> None:
    print(f"\n{title}")
    print_columns(cols, cells)


def print_reassign(rows: list[dict[str, Any]], runs: list[ReassignRun],
                   settings: Settings) -> None:
    cols = [("WAL", 6), ("part", 4), ("MB", 6), ("ranges", 6), ("ok", 5),
            ("no-move write ms", 16), ("reassign med ms", 15), ("reassign max ms", 15),
            ("write ok med ms", 15), ("write ok max ms", 15), ("target led med ms", 17),
            ("target led max ms", 17)]
    cells = [[r["wal"], r["partition"], fmt(r["mb"], ".0f"), fmt(r["ranges"], ".0f"),
              f"{r['ok']}/{r['moves']}", fmt(r["baseline_write_median_s"], ".0f", 1000),
              fmt(r["reassign_median_s"], ".0f", 1000), fmt(r["reassign_max_s"], ".0f", 1000),
              fmt(r["write_median_s"], ".0f", 1000), fmt(r["write_max_s"], ".0f", 1000),
              fmt(r["target_led_median_s"], ".0f", 1000),
              fmt(r["target_led_max_s"], ".0f", 1000)] for r in rows]
    print_table(f"Reassignment, 2 brokers on one data dir: {settings.moves} x (there and back) "
                f"per partition, request sent to the {settings.ask} broker; 'write ok' = move "
                f"start -> the next acks=all write acknowledged by the new leader "
                f"(goal <= {GOAL_S * 1000:.0f} ms); 'target led' = move start -> the target "
                f"logs that it leads (log timestamps, ms); 'no-move write' = median acks=all "
                f"write just before each move", cols, cells)
    for run in runs:
        fills = ", ".join(f"{k} {f.mb:.0f} MB at {f.mb_per_s:.1f} MB/s"
                          + (" (capped)" if f.capped else "") for k, f in run.fills.items())
        print(f"  {run.wal}: fill {fills}; uploaded before moving: {run.uploaded}"
              + (f"; ERROR {run.error}" if run.error else ""))


def print_failover(rows: list[dict[str, Any]], settings: Settings) -> None:
    cols = [("WAL", 6), ("lease ms", 8), ("ok", 5), ("lease left", 10), ("fenced", 7),
            ("led", 6), ("metadata", 8), ("served med", 10), ("served max", 10),
            ("acked pre-kill", 14), ("acked all", 9), ("lost", 4), ("dups", 4)]
    cells = [[r["wal"], str(r["lease_ms"] or "6000*"), f"{r['ok']}/{r['rounds']}",
              fmt(r["lease_left_median_s"], ".1f"), fmt(r["fenced_median_s"], ".1f"),
              fmt(r["led_median_s"], ".1f"), fmt(r["metadata_median_s"], ".1f"),
              fmt(r["served_median_s"], ".1f"), fmt(r["served_max_s"], ".1f"),
              str(r["acked_before_kill"]), str(r["acked_total"]), str(r["lost"]),
              str(r["duplicates"])] for r in rows]
    print_table(f"Failover, 3 brokers, {FAILOVER_PARTITIONS} partitions led by broker 1, SIGKILL "
                f"it; seconds after the kill (median of {settings.failover_rounds}); "
                f"* = BROKER_LEASE_MS not set", cols, cells)
    print("  lease left = broker 1's lease still valid at the kill; fenced = a survivor fences "
          "it (log); led = last partition taken over (log);\n  metadata = broker 2 reports "
          "live leaders for all; served = that and an acks=all write to every partition "
          "acknowledged; lost = acknowledged but not read back")


# -- main ---------------------------------------------------------------------------------
def parse_args(argv: list[str] | None) -> Settings:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--quick", action="store_true",
                    help="sizes 10,100 MB, 2 moves, 1 failover round per setting")
    ap.add_argument("--parts", default=",".join(PARTS), help="reassign,failover (both)")
    ap.add_argument("--wals", default=",".join(WALS), help="reassign part: file,object")
    ap.add_argument("--sizes-mb", default=None,
                    help="MB filled into each partition, one partition per size "
                    "(10,100,1000; --quick: 10,100)")
    ap.add_argument("--moves", type=int, default=None,
                    help="moves there and back per partition (5; --quick: 2)")
    ap.add_argument("--ask", choices=("target", "leader"), default="target",
                    help="which broker gets the reassignment request (target: it forwards "
                    "to the leader, as a control plane that knows no leaders would)")
    ap.add_argument("--fill-budget", type=float, default=120,
                    help="seconds per partition fill; a partition stops there if not full (120)")
    ap.add_argument("--upload-wait", type=float, default=30,
                    help="seconds to wait for the fill to be in objects before moving; "
                    "0 = move at once (30)")
    ap.add_argument("--failover-wals", default="file,object", help="failover part: file,object")
    ap.add_argument("--leases", default="default,3000",
                    help="BROKER_LEASE_MS values; 'default' = not set (default,3000)")
    ap.add_argument("--failover-rounds", type=int, default=None, help="per setting (3)")
    ap.add_argument("--failover-records", type=int, default=20_000,
                    help="records acknowledged before the kill (20000 x 1 KiB)")
    ap.add_argument("--pre-kill-seconds", type=float, default=1.0,
                    help="seconds of unflushed writes just before the kill (1)")
    ap.add_argument("--no-kill-jitter", action="store_true",
                    help="kill right after --pre-kill-seconds (by default a random 0..lease/3 "
                    "s more, so the kill lands anywhere in broker 1's lease renewal cycle)")
    ap.add_argument("--failover-timeout", type=float, default=60,
                    help="seconds after the kill before a round fails (60)")
    add_run_options(ap, "reassignment", 1200)
    a = ap.parse_args(argv)

    def listed(value: str, allowed: tuple[str, ...], name: str) -> list[str]:
        items = [x for x in value.split(",") if x]
        if any(x not in allowed for x in items):
            ap.error(f"{name} must be a subset of {','.join(allowed)}")
        return items

    leases = [None if x == "default" else int(x) for x in a.leases.split(",") if x]
    return Settings(
        parts=listed(a.parts, PARTS, "--parts"), wals=listed(a.wals, WALS, "--wals"),
        sizes_mb=[float(x) for x in (a.sizes_mb or ("10,100" if a.quick else "10,100,1000"))
                  .split(",") if x],
        moves=a.moves or (2 if a.quick else 5), ask=a.ask, fill_budget=a.fill_budget,
        upload_wait=a.upload_wait,
        failover_wals=listed(a.failover_wals, WALS, "--failover-wals"), leases=leases,
        failover_rounds=a.failover_rounds or (1 if a.quick else 3),
        failover_records=a.failover_records, pre_kill_seconds=a.pre_kill_seconds,
        kill_jitter=not a.no_kill_jitter,
        failover_timeout=a.failover_timeout, timeout=a.timeout, keep_data=a.keep_data,
        out=a.out,
    )


def without_logger(conf: dict[str, Any]) -> dict[str, Any]:
    return {k: v for k, v in conf.items() if k != "logger"}


def main(argv: list[str] | None = None) -> int:
    settings = parse_args(argv)
    env = bench_environment()
    print(f"cpus={env['cpus']} librdkafka={env['librdkafka']} commit={env['git_commit'][:12]}",
          flush=True)
    started = time.monotonic()
    runs: list[ReassignRun] = []
    failovers: list[Failover] = []
    exits: dict[str, Any] = {}
    with bench_run("bench-reassignment-", settings.timeout, settings.keep_data) as bench:
        if "reassign" in settings.parts:
            for wal in settings.wals:
                runs.append(run_reassign(wal, settings, bench.workdir, bench.deadline, exits))
                if runs[-1].error:
                    print(f"[reassign {wal}] FAILED: {runs[-1].error}\n{runs[-1].log_excerpt}",
                          flush=True)
        if "failover" in settings.parts:
            for round_no in range(1, settings.failover_rounds + 1):  # interleaved
                for wal in settings.failover_wals:
                    for lease in settings.leases:
                        if bench.deadline.remaining() <= 0:
                            raise Aborted(f"overall timeout of {settings.timeout:.0f}s reached")
                        r = run_failover(wal, lease, round_no, settings, bench.workdir,
                                         bench.deadline, exits)
                        failovers.append(r)
                        print(f"[failover {wal} lease={lease or 'default'} round {round_no}] "
                              + (f"FAILED: {r.error}\n{r.log_excerpt}" if r.error else
                                 f"lease left {fmt(r.lease_left_s, '.1f')}s, fenced "
                                 f"{fmt(r.fenced_s, '.1f')}s, led {fmt(r.led_s, '.1f')}s, "
                                 f"metadata {fmt(r.metadata_s, '.2f')}s, served "
                                 f"{fmt(r.served_s, '.2f')}s; acked {r.acked_before_kill} "
                                 f"before / {r.acked_total} in all, lost {r.lost_total}, "
                                 f"dups {r.duplicates}, WAL batches recovered "
                                 f"{r.wal_batches_recovered}"), flush=True)
    error = bench.error
    r_rows = reassign_rows(runs)
    f_rows = failover_rows(failovers)
    if runs:
        print_reassign(r_rows, runs, settings)
    if failovers:
        print_failover(f_rows, settings)
    elapsed = time.monotonic() - started
    out = results_path(settings.out, "reassignment")
    save_json(out, {
        "settings": {**asdict(settings), "value_bytes": VALUE_BYTES, "mb": MB,
                     "producer": without_logger(FILL_CONF),
                     "failover_producer": without_logger(FAILOVER_PRODUCER_CONF),
                     "failover_partitions": FAILOVER_PARTITIONS},
        "environment": env,
        "summary": {"reassign": r_rows, "failover": f_rows},
        "reassign": [{**asdict(run), "fills": {k: {**asdict(f), "mb": f.mb,
                                                   "mb_per_s": f.mb_per_s}
                                               for k, f in run.fills.items()}}
                     for run in runs],
        "failover": [asdict(r) for r in failovers],
        "broker_exits": exits,
        "client_log": CLIENT_LOG.lines[-500:],
        "elapsed_s": elapsed,
        "error": error,
    }, default=str)
    print(f"\nresults: {out} ({elapsed:.0f}s in all)")
    failed = (error is not None or any(r.error for r in runs)
              or any(m.error for r in runs for m in r.moves) or any(f.error for f in failovers)
              or any(f.lost_total for f in failovers))
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
