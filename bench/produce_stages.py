#!/usr/bin/env python3
"""The produce path under a Java-style load, ours against Tansu: throughput, ack latency at
the same offered load, broker CPU-seconds per GiB, and where our time goes (issue 21).

For each partition count (1, 4, 32) every broker is started once and first takes
``--warmup-records`` unmeasured (past our 256 MiB log cache: a steady state, not a fresh
process touching new memory); then rounds are interleaved (ours 1, tansu 1, ours 2, ...),
each on a fresh topic:

1. **produce**: N x 1 KiB as fast as the client goes, idempotent, acks=all, linger.ms=5,
   batch.size=1 MiB, 5 requests in flight (librdkafka, the Java client's defaults but
   batch.size) -> MB/s and broker CPU-s per GiB; for ours, the per-stage table of the produce
   path from /metrics (broker_service/metrics/stages.py) over the phase;
2. **consume**: the N records read back -> MB/s and CPU-s per GiB;
3. **latency**: a steady ``--rate`` records/s (the same offered load for every broker) over
   all the topic's partitions, same producer settings; per record produce() -> delivery
   callback.

Brokers (``--brokers``): ``ours`` (embedded: file WAL, fsync on every group commit),
``tansu`` (its log in memory, no fsync), ``before`` (the broker_service of ``--baseline REV``,
run like ours: before/after in the same run) and ``task`` (ours as one task of
``--processes`` broker processes, ``serve --processes N``: per-task beside per-process
throughput; ``--producers`` runs the bulk phase from several producer processes). Medians over
the rounds; the host's load average is recorded at every phase.

    .venv/bin/python bench/produce_stages.py                     # 1,4,32 partitions, 3 rounds
    .venv/bin/python bench/produce_stages.py --quick             # 1 partition, 1 round
    .venv/bin/python bench/produce_stages.py --brokers ours,tansu,before --baseline 404c5e6
    .venv/bin/python bench/produce_stages.py --brokers ours,task --partitions 8 --producers 2
    .venv/bin/python bench/produce_stages.py --brokers ours --partitions 4 --profile /tmp/p
"""

from __future__ import annotations

import argparse
import concurrent.futures
import functools
import json
import multiprocessing
import os
import resource
import shlex
import subprocess
import sys
import time
import urllib.request
import uuid
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from confluent_kafka import Producer
from produce_consume import (
    VALUE_BYTES,
    Aborted,
    BenchError,
    BrokerProcess,
    Deadline,
    add_run_options,
    bench_environment,
    bench_run,
    brokers_and_tansu,
    client_cpu,
    command_output,
    consume_all,
    create_topic,
    fmt,
    median,
    percentile,
    print_columns,
    print_unclean_exits,
    produce_all,
    py_spy,
    report_profile,
    results_path,
    save_json,
    tansu_broker,
)
from prometheus_client.parser import text_string_to_metric_families

REPO = Path(__file__).resolve().parents[1]
# ours: this tree, one process; task: this tree, --processes N; before: the code of
# --baseline (a git revision) run the same way as ours; tansu: the peer.
BROKERS = ("ours", "tansu", "before", "task")
GIB = 1 << 30
MB = 1_000_000
# The Java-style load: idempotent, acks=all, linger 5 ms, 1 MiB batches, 5 in flight.
PRODUCER_CONF: dict[str, Any] = {
    "acks": "all",
    "enable.idempotence": True,
    "linger.ms": 5,
    "batch.size": 1 << 20,
    "message.max.bytes": (1 << 20) + 4096,  # a 1 MiB batch fits one request
    "max.in.flight.requests.per.connection": 5,
    "compression.type": "none",
}
STAGE_METRIC = "kafka_broker_produce_stage_ms"
STAGE_ORDER = ("receive", "queue", "parse", "validate", "append", "wal_wait", "write", "sync",
               "complete", "durable_wait", "respond", "send_wait", "total")


# -- settings ------------------------------------------------------------------------------
@dataclass(frozen=True)
class Settings:
    records: int
    rounds: int
    partitions: list[int]
    brokers: list[str]
    rate: int
    latency_seconds: float
    processes: int
    round_timeout: float
    timeout: float
    keep_data: bool
    tansu_bin: Path
    profile_dir: Path | None
    py_spy_args: list[str]
    ours_env: dict[str, str]
    out: Path | None = None
    baseline: str | None = None  # git revision run as "before"
    warmup_records: int = 0  # per broker and scenario, before the rounds (not measured)
    producers: int = 1  # producer processes in the bulk phase


def parse_args(argv: list[str] | None) -> Settings:
    ap = argparse.ArgumentParser(description=(__doc__ or "").split("\n\n")[0])
    ap.add_argument("--records", type=int, default=None, help="records per round (200000)")
    ap.add_argument("--rounds", type=int, default=None, help="rounds per broker (3)")
    ap.add_argument("--quick", action="store_true", help="30000 records, 1 partition, 1 round")
    ap.add_argument("--partitions", default=None, help="comma-separated scenarios (1,4,32)")
    ap.add_argument("--brokers", default="ours,tansu",
                    help="some of " + ",".join(BROKERS) + " (default ours,tansu)")
    ap.add_argument("--rate", type=int, default=20_000,
                    help="latency phase: records/s offered to both brokers (20000 = 20 MB/s)")
    ap.add_argument("--latency-seconds", type=float, default=None,
                    help="latency phase seconds (5; --quick 2; 0: none)")
    ap.add_argument("--processes", type=int, default=2,
                    help="broker 'task': broker processes in the task (serve --processes N)")
    ap.add_argument("--round-timeout", type=float, default=300, help="seconds per round")
    ap.add_argument("--tansu-bin", type=Path, default=None, help="Tansu binary")
    ap.add_argument("--profile", type=Path, default=None, metavar="DIR",
                    help="py-spy our broker in an extra, unreported round; profiles to DIR")
    ap.add_argument("--py-spy-args", default="", help="extra py-spy options, e.g. '--native'")
    ap.add_argument("--ours-env", action="append", default=[], metavar="K=V",
                    help="environment for our broker, e.g. BROKER_WAL_FLUSH_MS=1")
    ap.add_argument("--baseline", default=None, metavar="REV",
                    help="git revision whose broker_service runs as broker 'before' (add it "
                    "to --brokers): before/after in one run")
    ap.add_argument("--warmup-records", type=int, default=None,
                    help="records each broker takes before a scenario's rounds, unmeasured "
                    "(300000: past our 256 MiB log cache, so rounds see a steady state)")
    ap.add_argument("--producers", type=int, default=1,
                    help="producer processes in the bulk phase (the client must not be "
                    "the bottleneck of a task of several broker processes)")
    add_run_options(ap, "produce_stages", 1500)
    a = ap.parse_args(argv)
    brokers, tansu_bin = brokers_and_tansu(ap, a.brokers, BROKERS, a.tansu_bin)
    if "before" in brokers and not a.baseline:
        ap.error("broker 'before' needs --baseline REV")
    if a.profile is not None:
        a.profile.mkdir(parents=True, exist_ok=True)
    partitions = a.partitions or ("1" if a.quick else "1,4,32")
    return Settings(
        records=a.records or (30_000 if a.quick else 200_000),
        rounds=a.rounds or (1 if a.quick else 3),
        partitions=[int(p) for p in partitions.split(",")],
        brokers=brokers, rate=a.rate,
        latency_seconds=(a.latency_seconds if a.latency_seconds is not None
                         else 2.0 if a.quick else 5.0),
        processes=a.processes, round_timeout=a.round_timeout, timeout=a.timeout,
        keep_data=a.keep_data, tansu_bin=tansu_bin, profile_dir=a.profile,
        py_spy_args=shlex.split(a.py_spy_args),
        ours_env=dict(kv.split("=", 1) for kv in a.ours_env), out=a.out,
        baseline=a.baseline, producers=max(1, a.producers),
        warmup_records=(a.warmup_records if a.warmup_records is not None
                        else 0 if a.quick else 300_000),
    )


# -- our broker: one task of N processes -------------------------------------------------------
@dataclass
class OursTask:
    """``serve --processes N`` (N = 1: a plain ``serve``): the supervisor's ready file lists
    every process; the bootstrap is the first one's port, CPU is the sum over the task."""

    broker: BrokerProcess
    label: str = "ours"
    metrics_ports: list[int] = field(default_factory=list)
    pids: list[int] = field(default_factory=list)
    data_dir: Path | None = None

    @property
    def name(self) -> str:
        return self.label

    @property
    def bootstrap(self) -> str:
        return self.broker.bootstrap

    def start(self, deadline: Deadline) -> None:
        self.broker.start(deadline)
        assert self.broker.ready_file is not None
        info = json.loads(self.broker.ready_file.read_text())
        procs = info.get("processes") or [info]
        self.metrics_ports = [p["metrics_port"] for p in procs if p.get("metrics_port")]
        self.pids = [p["pid"] for p in procs]

    def cpu_seconds(self) -> float:
        return task_cpu_seconds(self.broker)

    def scrape(self) -> dict[str, dict[str, float]]:
        """Sum over the task's processes of every stage's count, sum and buckets."""
        total: dict[str, dict[str, float]] = {}
        for port in self.metrics_ports:
            for stage, values in scrape_stages(port).items():
                acc = total.setdefault(stage, {})
                for k, v in values.items():
                    acc[k] = acc.get(k, 0.0) + v
        return total


def task_cpu_seconds(broker: BrokerProcess) -> float:
    """The broker's CPU plus its children's (the processes of ``serve --processes N``)."""
    assert broker.proc is not None
    cpu = broker.cpu_seconds()
    for child in broker.proc.children(recursive=True):
        try:
            t = child.cpu_times()
        except Exception:  # a child that just exited
            continue
        cpu += t.user + t.system
    return cpu


def ours_task(workdir: Path, tag: str, settings: Settings, label: str = "ours",
              code: Path = REPO, processes: int = 1) -> OursTask:  # fmt: skip
    """Our broker (``code``: the tree whose broker_service runs) as a task of ``processes``."""
    ready = workdir / f"{label}-{tag}.ready"
    env = {**os.environ, "PYTHONPATH": str(code), "BROKER_METRICS_PORT": "auto",
           "BROKER_AUTO_BALANCE": "false", **settings.ours_env}
    # -P: the module must come from ``code`` (PYTHONPATH), not from the working directory
    argv = [sys.executable, "-P", "-m", "broker_service", "serve", "--host", "127.0.0.1",
            "--port", "0", "--data-dir", str(workdir / f"{label}-{tag}"),
            "--ready-file", str(ready)]
    if processes > 1:
        argv += ["--processes", str(processes)]
    return OursTask(BrokerProcess(label, argv, 0, workdir / f"{label}-{tag}.log", env, ready),
                    label, data_dir=workdir / f"{label}-{tag}")


def baseline_tree(rev: str, workdir: Path) -> Path:
    """``rev``'s broker_service, extracted (git archive) into a directory of its own."""
    out = workdir / f"baseline-{rev.replace('/', '_')}"
    out.mkdir(parents=True, exist_ok=True)
    archive = subprocess.run(["git", "archive", rev, "broker_service"], cwd=REPO,
                             capture_output=True, check=True).stdout
    subprocess.run(["tar", "-x", "-C", str(out)], input=archive, check=True)
    return out


def scrape_stages(port: int) -> dict[str, dict[str, float]]:
    """stage -> {count, sum, le=<bound>: cumulative count} from one broker's /metrics."""
    with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=10) as resp:
        text = resp.read().decode()
    out: dict[str, dict[str, float]] = {}
    for family in text_string_to_metric_families(text):
        if family.name != STAGE_METRIC:
            continue
        for s in family.samples:
            d = out.setdefault(s.labels["stage"], {})
            if s.name.endswith("_count"):
                d["count"] = s.value
            elif s.name.endswith("_sum"):
                d["sum"] = s.value
            elif s.name.endswith("_bucket"):
                d[f"le={s.labels['le']}"] = s.value
    return out


@dataclass
class StageRow:
    stage: str
    count: float
    mean_ms: float | None  # per observation
    per_request_ms: float | None  # sum / produce requests answered
    p50_ms: float | None  # upper bound of the bucket holding the median
    p99_ms: float | None


def stage_rows(before: dict[str, dict[str, float]],
               after: dict[str, dict[str, float]]) -> list[StageRow]:
    requests = after.get("total", {}).get("count", 0) - before.get("total", {}).get("count", 0)
    rows = []
    for stage in STAGE_ORDER:
        a, b = after.get(stage, {}), before.get(stage, {})
        n = a.get("count", 0) - b.get("count", 0)
        total_ms = a.get("sum", 0) - b.get("sum", 0)
        bounds = sorted(((float(k[3:]), a[k] - b.get(k, 0)) for k in a if k.startswith("le=")),
                        key=lambda x: x[0])

        def pct(q: float, bounds: list[tuple[float, float]] = bounds, n: float = n) -> float | None:
            if not n:
                return None
            return next((bound for bound, c in bounds if c >= q * n), None)

        rows.append(StageRow(stage, n, total_ms / n if n else None,
                             total_ms / requests if requests else None, pct(0.5), pct(0.99)))
    return rows


# -- the loads ------------------------------------------------------------------------------
def produce_bulk(bootstrap: str, topic: str, partitions: int, records: int,
                 deadline: Deadline, offset: int = 0) -> float:
    """produce_consume.produce_all with a deeper local queue (1 MiB batches keep it full)."""
    return produce_all(bootstrap, topic, partitions, records, deadline, offset, "bench-stages",
                       {"queue.buffering.max.kbytes": 256 << 10})


def _producer_proc(args: tuple[str, str, int, int, int, float]) -> tuple[float, float]:
    bootstrap, topic, partitions, first, records, deadline_s = args
    start = time.time()
    produce_bulk(bootstrap, topic, partitions, records, Deadline(deadline_s), first)
    return start, time.time()


def produce_parallel(bootstrap: str, topic: str, partitions: int, records: int, producers: int,
                     deadline: Deadline) -> float:  # fmt: skip
    """``records`` over ``producers`` producer processes started together; the seconds from
    the first start to the last acknowledgement."""
    if producers == 1:
        return produce_bulk(bootstrap, topic, partitions, records, deadline)
    share = records // producers
    jobs = [(bootstrap, topic, partitions, i, share + (records % producers if i == 0 else 0),
             deadline.remaining()) for i in range(producers)]  # fmt: skip
    ctx = multiprocessing.get_context("fork")
    with concurrent.futures.ProcessPoolExecutor(producers, mp_context=ctx) as pool:
        spans = list(pool.map(_producer_proc, jobs))
    return max(end for _, end in spans) - min(start for start, _ in spans)


@dataclass
class Latency:
    rate: int
    sent: int
    achieved_per_s: float
    p50_ms: float | None
    p99_ms: float | None
    p999_ms: float | None


def steady(bootstrap: str, topic: str, partitions: int, rate: int, seconds: float,
           deadline: Deadline) -> Latency:
    """``rate`` records/s on a fixed schedule, round-robin over the partitions, with the bulk
    phase's producer settings; per record produce() -> delivery callback."""
    samples: list[float] = []
    errors: list[str] = []

    def on_delivery(t0: float, err: Any, _msg: Any) -> None:
        if err is not None:
            errors.append(str(err))
        else:
            samples.append((time.perf_counter() - t0) * 1000)

    producer = Producer({**PRODUCER_CONF, "bootstrap.servers": bootstrap,
                         "client.id": "bench-stages-latency"})
    producer.list_topics(topic, timeout=10)
    value = os.urandom(VALUE_BYTES)
    n = max(1, int(rate * seconds))
    sent = 0
    start = time.perf_counter()
    while sent < n:
        due = min(n, int((time.perf_counter() - start) * rate) + 1)
        while sent < due:
            now = time.perf_counter()
            try:
                producer.produce(topic, value, partition=sent % partitions,
                                 on_delivery=functools.partial(on_delivery, now))
            except BufferError:
                break
            sent += 1
        producer.poll(0.0005)
        deadline.check(f"steady load ({sent}/{n})")
    sent_s = time.perf_counter() - start
    left = producer.flush(max(0.1, deadline.remaining()))
    if left or errors:
        raise BenchError(f"steady: {left} unacknowledged, {len(errors)} errors {errors[:1]}")
    ordered = sorted(samples)
    return Latency(rate, n, n / sent_s, percentile(ordered, 0.5), percentile(ordered, 0.99),
                   percentile(ordered, 0.999))


# -- rounds ---------------------------------------------------------------------------------
@dataclass
class PhaseResult:
    seconds: float
    mb_per_s: float
    cpu_s: float
    cpu_s_per_gib: float
    loadavg: float  # the host's 1-minute load average at the end of the phase
    client_cpu_s: float = 0.0  # this process (the client, librdkafka's threads included)
    # produce: the broker's CPU after the last acknowledgement until it went idle (ours
    # uploads its file WAL to objects in the background), counted in cpu_s: the work a write
    # causes, so none of it lands in the consume phase that follows
    background_cpu_s: float = 0.0


@dataclass
class RoundResult:
    broker: str
    partitions: int
    round: int
    produce: PhaseResult | None = None
    consume: PhaseResult | None = None
    latency: Latency | None = None
    stages: list[StageRow] | None = None
    latency_stages: list[StageRow] | None = None
    one_mib: OneMib | None = None
    error: str | None = None


Broker = BrokerProcess | OursTask


@dataclass
class OneMib:
    """Issue 21's "broker time per produce request <= fsync time + 2 ms at 1 MiB", measured
    with one ~1 MiB request in flight (no queue behind an earlier group): the broker's own
    time per request by its stage timers, beside a 1 MiB write + fsync on its data disk in
    the same round."""

    requests: int
    broker_mean_ms: float | None
    broker_p50_ms: float | None  # upper bounds of the histogram's buckets
    broker_p99_ms: float | None
    fsync_mean_ms: float
    fsync_p50_ms: float


ONE_MIB_RECORDS = 950  # x 1 KiB: one v2 batch just under max.message.bytes (1 MiB + 12)


def one_mib_requests(b: OursTask, topic: str, deadline: Deadline, n: int = 30) -> OneMib:
    p = Producer({"bootstrap.servers": b.bootstrap, "linger.ms": 1000, "batch.size": 1_100_000,
                  "acks": "all", "enable.idempotence": True, "compression.type": "none",
                  "max.in.flight.requests.per.connection": 1})  # fmt: skip
    value = os.urandom(VALUE_BYTES)

    def one() -> None:
        for _ in range(ONE_MIB_RECORDS):
            p.produce(topic, value, partition=0)
        if p.flush(max(1.0, deadline.remaining())) != 0:
            raise RuntimeError("a 1 MiB request was not acknowledged")

    one()  # the connection and the producer id
    before = b.scrape()
    for _ in range(n):
        one()
    total = next(r for r in stage_rows(before, b.scrape()) if r.stage == "total")
    assert b.data_dir is not None
    probe = b.data_dir / "fsync-probe"
    fd = os.open(probe, os.O_WRONLY | os.O_CREAT | os.O_APPEND)
    chunk, took = os.urandom(1 << 20), []
    try:
        for _ in range(n):
            t0 = time.perf_counter()
            os.write(fd, chunk)
            os.fsync(fd)
            took.append((time.perf_counter() - t0) * 1000)
    finally:
        os.close(fd)
        probe.unlink()
    return OneMib(int(total.count), total.mean_ms, total.p50_ms, total.p99_ms,
                  sum(took) / len(took), sorted(took)[len(took) // 2])


def cpu_of(b: Broker) -> float:
    return b.cpu_seconds() if isinstance(b, OursTask) else b.cpu_seconds()


def children_cpu() -> float:
    r = resource.getrusage(resource.RUSAGE_CHILDREN)  # producer processes, once reaped
    return r.ru_utime + r.ru_stime


def phase(b: Broker, records: int, run: Any, until_idle: bool = False) -> PhaseResult:
    cpu0, me0 = cpu_of(b), client_cpu() + children_cpu()
    seconds = run()
    background = wait_idle(b) if until_idle else 0.0
    cpu, me = cpu_of(b) - cpu0, client_cpu() + children_cpu() - me0
    nbytes = records * VALUE_BYTES
    return PhaseResult(seconds, nbytes / MB / seconds, cpu, cpu / (nbytes / GIB),
                       os.getloadavg()[0], me, background)


IDLE_CPU_SHARE = 0.05  # a broker using less of a core than this over IDLE_WINDOW_S is idle
IDLE_WINDOW_S = 0.5
IDLE_MAX_S = 30.0


def wait_idle(b: Broker) -> float:
    """Wait until the broker's background work is done (it uses under IDLE_CPU_SHARE of a
    core for IDLE_WINDOW_S; at most IDLE_MAX_S); returns the CPU it used meanwhile."""
    start = last = cpu_of(b)
    until = time.monotonic() + IDLE_MAX_S
    while time.monotonic() < until:
        time.sleep(IDLE_WINDOW_S)
        now = cpu_of(b)
        if now - last < IDLE_CPU_SHARE * IDLE_WINDOW_S:
            break
        last = now
    return cpu_of(b) - start


def run_round(b: Broker, partitions: int, round_no: int, s: Settings,
              deadline: Deadline, profile: Path | None = None) -> RoundResult:
    r = RoundResult(b.name, partitions, round_no)
    topic = f"stages-p{partitions}-r{round_no}-{uuid.uuid4().hex[:8]}"
    try:
        create_topic(b.bootstrap, topic, partitions, deadline)
        before = b.scrape() if isinstance(b, OursTask) else None

        def produce() -> float:
            return produce_parallel(b.bootstrap, topic, partitions, s.records, s.producers,
                                    deadline)

        if profile is not None and isinstance(b, OursTask):
            raw = profile / f"ours-p{partitions}-produce.txt"
            with py_spy(b.broker.pid if s.processes == 1 else b.pids[-1], raw, s.py_spy_args):
                r.produce = phase(b, s.records, produce, until_idle=True)
            report_profile(raw)
        else:
            r.produce = phase(b, s.records, produce, until_idle=True)
        if before is not None and isinstance(b, OursTask):
            r.stages = stage_rows(before, b.scrape())
            if not any(x.count for x in r.stages):
                r.stages = None  # a baseline without stage metrics
        notes: list[str] = []
        r.consume = phase(b, s.records, lambda: consume_all(b.bootstrap, topic, partitions,
                                                             s.records, deadline, notes))
        if s.latency_seconds > 0 and profile is None:
            lt = f"{topic}-lat"
            create_topic(b.bootstrap, lt, partitions, deadline)
            steady(b.bootstrap, lt, partitions, s.rate, min(1.0, s.latency_seconds), deadline)
            before = b.scrape() if isinstance(b, OursTask) else None
            r.latency = steady(b.bootstrap, lt, partitions, s.rate, s.latency_seconds, deadline)
            if before is not None and isinstance(b, OursTask):
                r.latency_stages = stage_rows(before, b.scrape())
        if isinstance(b, OursTask) and partitions == 1 and profile is None:
            one = f"{topic}-1mib"
            create_topic(b.bootstrap, one, 1, deadline)
            r.one_mib = one_mib_requests(b, one, deadline)
    except Aborted:
        raise
    except Exception as exc:  # a failed round is a result
        r.error = f"{type(exc).__name__}: {exc}"
    return r


def describe(r: RoundResult) -> str:
    head = f"[p={r.partitions} round {r.round} {r.broker:5}]"
    if r.error:
        return f"{head} FAILED: {r.error}"
    assert r.produce and r.consume
    lat = (f"  lat p50/p99 {fmt(r.latency.p50_ms)}/{fmt(r.latency.p99_ms)} ms"
           if r.latency else "")
    return (f"{head} produce {r.produce.mb_per_s:6.1f} MB/s ({r.produce.cpu_s_per_gib:5.1f} "
            f"cpu-s/GiB, {r.produce.background_cpu_s:.2f} s of it after the last ack, "
            f"client {r.produce.client_cpu_s / r.produce.seconds:.0%} cpu)  "
            f"consume {r.consume.mb_per_s:6.1f} MB/s "
            f"({r.consume.cpu_s_per_gib:5.1f} cpu-s/GiB){lat}  load {r.produce.loadavg:.1f}")


def make_broker(name: str, workdir: Path, tag: str, s: Settings) -> Broker:
    if name == "tansu":
        return tansu_broker(workdir, tag, s.tansu_bin)
    if name == "before":
        assert s.baseline is not None
        return ours_task(workdir, tag, s, "before", baseline_tree(s.baseline, workdir))
    if name == "task":
        return ours_task(workdir, tag, s, "task", processes=s.processes)
    return ours_task(workdir, tag, s)


def run_scenario(partitions: int, s: Settings, workdir: Path, deadline: Deadline,
                 results: list[RoundResult], exits: dict[str, Any]) -> None:
    tag = f"p{partitions}"
    brokers = [make_broker(name, workdir, tag, s) for name in s.brokers]
    try:
        for b in brokers:
            b.start(deadline.sooner(90))
        if s.warmup_records:
            for b in brokers:  # past our log cache: the rounds see a steady state
                warm = f"warmup-{tag}-{uuid.uuid4().hex[:6]}"
                create_topic(b.bootstrap, warm, partitions, deadline)
                produce_parallel(b.bootstrap, warm, partitions, s.warmup_records, s.producers,
                                 deadline.sooner(s.round_timeout))
        for round_no in range(1, s.rounds + 1):
            for b in brokers:
                if deadline.remaining() <= 0:
                    raise Aborted("overall timeout reached")
                r = run_round(b, partitions, round_no, s, deadline.sooner(s.round_timeout))
                results.append(r)
                print(describe(r), flush=True)
        if s.profile_dir is not None:
            for b in brokers:
                if isinstance(b, OursTask) and b.name == "ours":
                    r = run_round(b, partitions, 0, s, deadline.sooner(s.round_timeout),
                                  s.profile_dir)
                    print(describe(r).replace("round 0", "profiled"), flush=True)
    finally:
        for b in brokers:
            proc = b.broker if isinstance(b, OursTask) else b
            proc.stop()
            exits[f"{proc.name}-{tag}"] = proc.exit_info


# -- summary --------------------------------------------------------------------------------
METRICS = (  # name, how to read it from a round, better
    ("produce MB/s", lambda r: r.produce.mb_per_s, "higher"),
    ("produce CPU-s/GiB", lambda r: r.produce.cpu_s_per_gib, "lower"),
    ("consume MB/s", lambda r: r.consume.mb_per_s, "higher"),
    ("consume CPU-s/GiB", lambda r: r.consume.cpu_s_per_gib, "lower"),
    ("ack latency p50 ms", lambda r: r.latency.p50_ms if r.latency else None, "lower"),
    ("ack latency p99 ms", lambda r: r.latency.p99_ms if r.latency else None, "lower"),
    ("ack latency p999 ms", lambda r: r.latency.p999_ms if r.latency else None, "lower"),
)


def summarize(results: list[RoundResult], s: Settings) -> list[dict[str, Any]]:
    rows = []
    for partitions in s.partitions:
        ok = {b: [r for r in results if r.broker == b and r.partitions == partitions
                  and r.error is None and r.round > 0] for b in s.brokers}
        for name, get, better in METRICS:
            values = {b: median([get(r) for r in rs]) for b, rs in ok.items()}
            tansu = values.get("tansu")
            ratios = {f"{b}/tansu": v / tansu for b, v in values.items()
                      if b != "tansu" and v and tansu}  # fmt: skip
            rows.append({"partitions": partitions, "metric": name, "better": better,
                         "values": values, "rounds_ok": {b: len(rs) for b, rs in ok.items()},
                         "ratios": ratios, "ratio_ours_over_tansu": ratios.get("ours/tansu"),
                         "loadavg": median([r.produce.loadavg for rs in ok.values()
                                            for r in rs if r.produce])})
    return rows


def summarize_stages(results: list[RoundResult], s: Settings, attr: str = "stages",
                     broker: str = "ours") -> list[dict[str, Any]]:  # fmt: skip
    """Per partition count, per stage: the median over ``broker``'s rounds of each round's
    figures (``attr``: the bulk phase's stages, or the latency phase's)."""
    out = []
    for partitions in s.partitions:
        rounds = [getattr(r, attr) for r in results if r.broker == broker
                  and r.partitions == partitions and getattr(r, attr) and r.error is None
                  and r.round > 0]
        for i, stage in enumerate(STAGE_ORDER):
            rows = [rs[i] for rs in rounds if i < len(rs) and rs[i].stage == stage]
            out.append({"broker": broker, "partitions": partitions, "stage": stage,
                        "count": median([x.count for x in rows]),
                        "mean_ms": median([x.mean_ms for x in rows]),
                        "per_request_ms": median([x.per_request_ms for x in rows]),
                        "p50_ms": median([x.p50_ms for x in rows]),
                        "p99_ms": median([x.p99_ms for x in rows])})
    return out


def print_stages(title: str, stages: list[dict[str, Any]]) -> None:
    if not any(r["count"] for r in stages):
        return
    print(f"\n{title} (ms; median over rounds; per req = stage time / produce requests; "
          f"p50/p99 = upper bounds of their buckets)")
    cols = [("broker", 6), ("part", 4), ("stage", 12), ("count", 8), ("mean", 7),
            ("per req", 7), ("p50", 6), ("p99", 6)]
    print_columns(cols, [[r["broker"], str(r["partitions"]), r["stage"], fmt(r["count"], ".0f"),
                          fmt(r["mean_ms"], ".2f"), fmt(r["per_request_ms"], ".2f"),
                          fmt(r["p50_ms"], "g"), fmt(r["p99_ms"], "g")]
                         for r in stages if r["count"]])


def print_summary(rows: list[dict[str, Any]], s: Settings) -> None:
    print(f"\n{s.records} x {VALUE_BYTES} B, acks=all, idempotent, linger.ms=5, batch.size=1 MiB,"
          f" 5 in flight, {s.producers} producer(s); latency at {s.rate} records/s offered to "
          f"every broker; task = {s.processes} broker processes; median of {s.rounds} round(s);"
          f" load = the host's 1-min load average")
    others = [b for b in s.brokers if b != "tansu"]
    cols = [("part", 4), ("metric", 20), ("better", 6),
            *((f"{b}/tansu", max(10, len(b) + 6)) for b in others if "tansu" in s.brokers),
            *((b, 8) for b in s.brokers), ("load", 5)]
    print_columns(cols, [[str(r["partitions"]), r["metric"], r["better"],
                          *(fmt(r["ratios"].get(f"{b}/tansu"), ".2f") + "x"
                            if r["ratios"].get(f"{b}/tansu") else "n/a"
                            for b in others if "tansu" in s.brokers),
                          *(fmt(r["values"].get(b)) for b in s.brokers),
                          fmt(r["loadavg"])] for r in rows], left_first=False)


def print_one_mib(results: list[RoundResult]) -> list[dict[str, Any]]:
    """Per broker of ours: medians over rounds of the one-request-in-flight phase."""
    out = []
    for broker in dict.fromkeys(r.broker for r in results if r.one_mib):
        got = [r.one_mib for r in results if r.broker == broker and r.one_mib and r.round > 0]
        row = {"broker": broker, "rounds": len(got),
               **{k: median([getattr(x, k) for x in got])
                  for k in ("broker_mean_ms", "broker_p50_ms", "broker_p99_ms",
                            "fsync_mean_ms", "fsync_p50_ms")}}  # fmt: skip
        out.append(row)
    if out:
        print(f"\none ~1 MiB produce request in flight ({ONE_MIB_RECORDS} x {VALUE_BYTES} B, 1 "
              "partition, idempotent, acks=all): the broker's time per request (stage timers) "
              "beside a 1 MiB write + fsync on its data disk; goal: broker <= fsync + 2 ms")
        print_columns([("broker", 6), ("mean", 7), ("p50", 6), ("p99", 6), ("fsync mean", 10),
                       ("fsync p50", 9), ("mean - fsync", 12)],
                      [[r["broker"], fmt(r["broker_mean_ms"], ".2f"), fmt(r["broker_p50_ms"], "g"),
                        fmt(r["broker_p99_ms"], "g"), fmt(r["fsync_mean_ms"], ".2f"),
                        fmt(r["fsync_p50_ms"], ".2f"),
                        fmt(r["broker_mean_ms"] - r["fsync_mean_ms"], ".2f")
                        if r["broker_mean_ms"] is not None and r["fsync_mean_ms"] is not None
                        else "n/a"] for r in out])  # fmt: skip
    return out


def main(argv: list[str] | None = None) -> int:
    s = parse_args(argv)
    env = bench_environment({"tansu_version": command_output([str(s.tansu_bin), "--version"])})
    print(f"cpus={env['cpus']} {env['tansu_version']} commit={env['git_commit'][:12]} "
          f"load average {os.getloadavg()[0]:.1f}", flush=True)
    results: list[RoundResult] = []
    exits: dict[str, Any] = {}
    load_start = os.getloadavg()
    with bench_run("bench-produce-stages-", s.timeout, s.keep_data) as run:
        for partitions in s.partitions:
            run_scenario(partitions, s, run.workdir, run.deadline, results, exits)
    rows = summarize(results, s)
    ours = [b for b in ("before", "ours", "task") if b in s.brokers]
    stages = [r for b in ours for r in summarize_stages(results, s, "stages", b)]
    latency_stages = [r for b in ours for r in summarize_stages(results, s, "latency_stages", b)]
    print_summary(rows, s)
    print_stages("where a produce request's time goes, bulk phase", stages)
    print_stages(f"the same at a steady {s.rate} records/s", latency_stages)
    one_mib = print_one_mib(results)
    out = results_path(s.out, "produce_stages")
    save_json(out, {
        "settings": {**asdict(s), "tansu_bin": str(s.tansu_bin), "producer": PRODUCER_CONF,
                     "value_bytes": VALUE_BYTES},
        "environment": env,
        "loadavg": {"start": load_start, "end": os.getloadavg()},
        "summary": rows, "stages": stages, "latency_stages": latency_stages,
        "one_mib": one_mib,
        "rounds": [asdict(r) for r in results],
        "broker_exits": exits, "error": run.error,
    }, default=str)
    print(f"\nresults: {out}")
    print_unclean_exits(exits)
    return 1 if run.error or any(r.error for r in results) else 0


if __name__ == "__main__":
    sys.exit(main())
