#!/usr/bin/env python3
"""Latency vs. WAL flush interval for the object WAL (BROKER_WAL=object).

For every flush interval (BROKER_WAL_FLUSH_MS), backend and round, this script starts a fresh
broker of ours with the object WAL on a fresh data dir (rounds interleaved: round 1 of every
configuration, then round 2, ...), sends 500 records of warm-up, and runs:

1. latency: a steady load (2000 msg/s of 1 KiB for 5 s, linger.ms=0, acks=all), one record
   at a time; latency is produce() -> acknowledgement (librdkafka's per-message latency);
2. throughput: 50,000 x 1 KiB as fast as possible (linger.ms=5, batch.size=1000000,
   acks=all) -> MB/s;

and counts the WAL objects (one PUT + one metadata commit each) that each phase wrote.

Backends: ``local`` (local-directory object store + SQLite, only BROKER_WAL=object set) and
``s3`` (S3 + DynamoDB on a moto server that the script starts, a fresh one per broker: moto's
TransactWriteItems gets slower as its table grows).
moto's latencies are not S3's; see bench/README.md.

    .venv/bin/python bench/object_wal.py            # full run: 5 flush values x 2 backends
    .venv/bin/python bench/object_wal.py --quick    # smoke run: flush 0,250; 1 round
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import subprocess
import sys
import uuid
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import boto3
from produce_consume import (
    MB,
    PRODUCER_CONF,
    REPO,
    VALUE_BYTES,
    Aborted,
    BrokerProcess,
    Deadline,
    add_run_options,
    bench_environment,
    bench_run,
    client_cpu,
    create_topic,
    fmt,
    host_busy_cpu,
    median,
    ours_argv,
    percentile,
    print_columns,
    print_unclean_exits,
    produce_all,
    results_path,
    save_json,
    steady_produce,
)
from produce_stages import STAGE_ORDER, StageRow, scrape_stages, stage_rows
from s3_requests import CountingProxy, MotoAdmin, MotoServer, aws_env

BACKENDS = ("local", "s3")
FLUSH_MS = (0, 10, 50, 100, 250)
QUICK_FLUSH_MS = (0, 250)
REGION = "us-east-1"
BUCKET = "bench-object-wal"
LATENCY_CONF: dict[str, Any] = {"acks": "all", "linger.ms": 0, "compression.type": "none"}
WARMUP_RECORDS = 500


# -- settings -----------------------------------------------------------------------------
@dataclass(frozen=True)
class Settings:
    flush_ms: list[float]
    backends: list[str]
    flush_bytes: int | None
    rounds: int
    rate: int
    latency_seconds: float
    latency_linger_ms: float
    records: int
    partitions: int
    round_timeout: float
    timeout: float
    keep_data: bool
    out: Path | None = None
    put_latency_ms: float = 0.0  # s3: added to every S3 PUT (a delaying proxy before moto)
    broker_env: dict[str, str] = field(default_factory=dict)  # more BROKER_* settings


def s3_client(endpoint: str) -> Any:
    return boto3.session.Session(
        aws_access_key_id="testing", aws_secret_access_key="testing", region_name=REGION
    ).client("s3", endpoint_url=endpoint)


# -- the WAL objects ----------------------------------------------------------------------
class ObjectCounter:
    """Lists the WAL objects (key -> size) of one broker: files or an S3 prefix."""

    def __init__(self, wal_dir: Path | None = None, endpoint: str | None = None,
                 prefix: str | None = None) -> None:
        self.wal_dir = wal_dir
        self.endpoint = endpoint
        self.prefix = prefix

    def snapshot(self) -> dict[str, int]:
        if self.wal_dir is not None:
            if not self.wal_dir.exists():
                return {}
            return {p.name: p.stat().st_size for p in self.wal_dir.iterdir()
                    if p.is_file() and not p.name.endswith(".tmp")}
        assert self.endpoint is not None and self.prefix is not None
        out: dict[str, int] = {}
        pages = s3_client(self.endpoint).get_paginator("list_objects_v2")
        for page in pages.paginate(Bucket=BUCKET, Prefix=self.prefix):
            out.update((o["Key"], int(o["Size"])) for o in page.get("Contents", ()))
        return out


@dataclass
class Objects:
    count: int
    bytes: int
    per_s: float

    @property
    def avg_kb(self) -> float | None:
        return self.bytes / self.count / 1024 if self.count else None


def objects_between(before: dict[str, int], after: dict[str, int], seconds: float) -> Objects:
    new = {k: v for k, v in after.items() if k not in before}
    return Objects(count=len(new), bytes=sum(new.values()),
                   per_s=len(new) / seconds if seconds > 0 else 0.0)


# -- the loads ----------------------------------------------------------------------------
@dataclass
class LatencyPhase:
    sent: int
    seconds: float  # first produce() to the last acknowledgement
    send_rate: float  # achieved produce() rate
    latencies_ms: list[float] = field(repr=False)  # librdkafka: produce() -> ack, per record
    callback_ms: list[float] = field(repr=False)  # Python: produce() -> delivery callback
    p50_ms: float | None = None
    p99_ms: float | None = None
    p999_ms: float | None = None
    max_ms: float | None = None
    callback_p50_ms: float | None = None
    callback_p99_ms: float | None = None
    objects: Objects | None = None
    broker_cpu_s: float = 0.0
    moto_cpu_s: float = 0.0
    other_cpu_s: float = 0.0  # the rest of the host (not broker, moto or this script): noise
    stages: list[StageRow] | None = None  # where the produce requests' time went (/metrics)


def steady_load(bootstrap: str, topic: str, rate: int, seconds: float, linger_ms: float,
                deadline: Deadline) -> LatencyPhase:
    """Produces ``rate`` records/s for ``seconds``, one produce() per record, on a schedule."""
    load = steady_produce(bootstrap, topic, rate, seconds,
                          {**LATENCY_CONF, "linger.ms": linger_ms}, deadline)
    phase = LatencyPhase(sent=load.sent, seconds=load.seconds,
                         send_rate=load.sent / load.sent_seconds,
                         latencies_ms=load.rdkafka_ms, callback_ms=load.callback_ms)
    fill_percentiles(phase)
    return phase


def fill_percentiles(phase: LatencyPhase) -> None:
    rd, cb = sorted(phase.latencies_ms), sorted(phase.callback_ms)
    phase.p50_ms, phase.p99_ms = percentile(rd, 0.50), percentile(rd, 0.99)
    phase.p999_ms, phase.max_ms = percentile(rd, 0.999), (rd[-1] if rd else None)
    phase.callback_p50_ms, phase.callback_p99_ms = percentile(cb, 0.50), percentile(cb, 0.99)


@dataclass
class ThroughputPhase:
    records: int
    seconds: float
    mb_per_s: float
    objects: Objects | None = None
    broker_cpu_s: float = 0.0
    moto_cpu_s: float = 0.0
    other_cpu_s: float = 0.0


# -- one broker per (backend, flush_ms) ---------------------------------------------------
@dataclass
class RoundResult:
    backend: str
    flush_ms: float
    round: int
    latency: LatencyPhase | None = None
    throughput: ThroughputPhase | None = None
    error: str | None = None


@dataclass
class Config:
    backend: str
    flush_ms: float
    broker: BrokerProcess
    counter: ObjectCounter
    moto: MotoServer | None
    proxy: CountingProxy | None = None


def make_config(backend: str, flush_ms: float, tag: str, settings: Settings, workdir: Path,
                deadline: Deadline) -> Config:
    data_dir = workdir / tag
    env = {**os.environ, "PYTHONPATH": str(REPO), "BROKER_WAL": "object",
           "BROKER_WAL_FLUSH_MS": f"{flush_ms:g}", "BROKER_LOG_LEVEL": "WARNING",
           "BROKER_METRICS_PORT": "auto"}
    if settings.flush_bytes is not None:
        env["BROKER_WAL_FLUSH_BYTES"] = str(settings.flush_bytes)
    env.update(settings.broker_env)
    moto = None
    proxy: CountingProxy | None = None
    if backend == "s3":
        moto = MotoServer(workdir / f"moto-{tag}.log")
        table = f"bench-wal-{uuid.uuid4().hex[:8]}"
        try:
            moto.start(deadline)
            admin = MotoAdmin(moto)
            admin.bucket(BUCKET)
            admin.table(table)
        except BaseException:
            moto.stop()
            raise
        for name in ("AWS_PROFILE", "AWS_SESSION_TOKEN"):
            env.pop(name, None)
        env.update(aws_env(), AWS_ENDPOINT_URL=moto.endpoint)
        if settings.put_latency_ms:  # S3's PUT latency, which moto on this host lacks
            proxy = CountingProxy(moto.port, {"s3": "s3"}, workdir / f"proxy-{tag}.log",
                                  settings.put_latency_ms)
            try:
                proxy.start(deadline)
            except BaseException:
                moto.stop()
                raise
            env["AWS_ENDPOINT_URL_S3"] = proxy.endpoint("s3")
        env["BROKER_STORAGE"] = f"s3://{BUCKET}/{tag}"
        env["BROKER_METADATA"] = f"dynamodb://{table}"
        counter = ObjectCounter(endpoint=moto.endpoint, prefix=f"{tag}/wal/")
    else:
        counter = ObjectCounter(wal_dir=data_dir / "objects" / "wal")
    ready = workdir / f"broker-{tag}.ready"
    broker = BrokerProcess(f"ours-{tag}", ours_argv(data_dir, ready), 0,
                           workdir / f"broker-{tag}.log", env, ready)
    return Config(backend, flush_ms, broker, counter, moto, proxy)


def run_config_round(backend: str, flush_ms: float, round_no: int, settings: Settings,
                     workdir: Path, deadline: Deadline, exits: dict[str, Any]) -> RoundResult:
    """One round on a fresh broker (and, for s3, a fresh moto server: moto's
    TransactWriteItems slows down as its table grows, so state must not carry over)."""
    tag = f"{backend}-f{flush_ms:g}-r{round_no}"
    cfg: Config | None = None
    try:
        cfg = make_config(backend, flush_ms, tag, settings, workdir, deadline.sooner(60))
        cfg.broker.start(deadline.sooner(60))
        lat_topic, tput_topic = f"lat-{uuid.uuid4().hex[:8]}", f"tput-{uuid.uuid4().hex[:8]}"
        setup = deadline.sooner(60)
        create_topic(cfg.broker.bootstrap, lat_topic, 1, setup)
        create_topic(cfg.broker.bootstrap, tput_topic, settings.partitions, setup)
        # warm-up: connections, code paths, the first objects; not measured
        steady_load(cfg.broker.bootstrap, lat_topic, settings.rate,
                    WARMUP_RECORDS / settings.rate, settings.latency_linger_ms, setup)
        return run_round(cfg, round_no, lat_topic, tput_topic, settings,
                         deadline.sooner(settings.round_timeout))
    except Aborted:
        raise
    except Exception as exc:  # a broker that cannot start is a result, not a crash
        return RoundResult(backend, flush_ms, round_no,
                           error=f"{type(exc).__name__}: {exc}{broker_log(cfg)}")
    finally:
        if cfg is not None:
            cfg.broker.stop()
            exits[tag] = cfg.broker.exit_info
            if cfg.proxy is not None:
                cfg.proxy.stop()
            if cfg.moto is not None:
                cfg.moto.stop()


def broker_log(cfg: Config | None) -> str:
    """The broker's log tail (it logs warnings and errors only), once it had a moment to die."""
    if cfg is None or cfg.broker.popen is None:
        return ""
    with contextlib.suppress(subprocess.TimeoutExpired):
        cfg.broker.popen.wait(timeout=2)
    state = "running" if cfg.broker.alive else f"exited with {cfg.broker.popen.returncode}"
    tail = cfg.broker.log_tail()
    return f"\n(broker {state}; log tail:)\n{tail}" if tail.strip() else f" (broker {state})"


def run_round(cfg: Config, round_no: int, lat_topic: str, tput_topic: str, settings: Settings,
              deadline: Deadline) -> RoundResult:
    result = RoundResult(cfg.backend, cfg.flush_ms, round_no)
    moto_cpu = cfg.moto.cpu_seconds if cfg.moto else (lambda: 0.0)

    def cpu() -> tuple[float, float, float, float]:
        return cfg.broker.cpu_seconds(), moto_cpu(), client_cpu(), host_busy_cpu()

    def others(c0: tuple[float, float, float, float],
               c1: tuple[float, float, float, float]) -> float:
        broker, moto, me, host = (b - a for a, b in zip(c0, c1, strict=True))
        return max(0.0, host - broker - moto - me)

    try:
        port = metrics_port(cfg.broker)
        stages0 = scrape_stages(port) if port else None
        before, c0 = cfg.counter.snapshot(), cpu()
        lat = steady_load(cfg.broker.bootstrap, lat_topic, settings.rate,
                          settings.latency_seconds, settings.latency_linger_ms, deadline)
        after, c1 = cfg.counter.snapshot(), cpu()
        if stages0 is not None and port:
            lat.stages = stage_rows(stages0, scrape_stages(port))
        lat.objects = objects_between(before, after, lat.seconds)
        lat.broker_cpu_s, lat.moto_cpu_s = c1[0] - c0[0], c1[1] - c0[1]
        lat.other_cpu_s = others(c0, c1)
        result.latency = lat

        seconds = produce_all(cfg.broker.bootstrap, tput_topic, settings.partitions,
                              settings.records, deadline)
        done, c2 = cfg.counter.snapshot(), cpu()
        result.throughput = ThroughputPhase(
            records=settings.records, seconds=seconds,
            mb_per_s=settings.records * VALUE_BYTES / MB / seconds,
            objects=objects_between(after, done, seconds),
            broker_cpu_s=c2[0] - c1[0], moto_cpu_s=c2[1] - c1[1], other_cpu_s=others(c1, c2))
        cfg.broker.assert_alive("finishing the round")
    except Aborted:
        raise
    except Exception as exc:  # a failed round is a result, not a crash
        result.error = f"{type(exc).__name__}: {exc}{broker_log(cfg)}"
    return result


def metrics_port(broker: BrokerProcess) -> int | None:
    """Our broker's /metrics port, from its ready file."""
    if broker.ready_file is None or not broker.ready_file.exists():
        return None
    port = json.loads(broker.ready_file.read_text()).get("metrics_port")
    return int(port) if port else None


def describe(r: RoundResult) -> str:
    head = f"[{r.backend:5} flush_ms={r.flush_ms:<4g} round {r.round}]"
    if r.error:
        return f"{head} FAILED: {r.error}"
    parts = [head]
    lat, tp = r.latency, r.throughput
    if lat is not None and lat.objects is not None:
        parts.append(f"latency p50 {fmt(lat.p50_ms)} p99 {fmt(lat.p99_ms)} p999 "
                     f"{fmt(lat.p999_ms)} ms at {lat.send_rate:.0f} msg/s, "
                     f"{lat.objects.count} objects ({lat.objects.per_s:.0f}/s, "
                     f"{fmt(lat.objects.avg_kb)} KB)")
    if tp is not None and tp.objects is not None:
        parts.append(f"| throughput {tp.mb_per_s:.1f} MB/s ({tp.seconds:.2f}s), "
                     f"{tp.objects.count} objects ({tp.objects.per_s:.0f}/s, "
                     f"{fmt(tp.objects.avg_kb)} KB)")
    if lat is not None and tp is not None:  # CPU seconds of the latency + throughput phases
        parts.append(f"| cpu s broker {lat.broker_cpu_s:.1f}+{tp.broker_cpu_s:.1f} moto "
                     f"{lat.moto_cpu_s:.1f}+{tp.moto_cpu_s:.1f} others "
                     f"{lat.other_cpu_s:.1f}+{tp.other_cpu_s:.1f}")
    return " ".join(parts)


# -- summary ------------------------------------------------------------------------------
@dataclass
class Row:
    backend: str
    flush_ms: float
    rounds_ok: int
    p50_ms: float | None  # percentiles of all rounds' latency samples pooled
    p99_ms: float | None
    p999_ms: float | None
    max_ms: float | None
    callback_p50_ms: float | None
    callback_p99_ms: float | None
    latency_samples: int
    latency_puts_per_s: float | None  # medians over rounds from here on
    latency_avg_object_kb: float | None
    mb_per_s: float | None
    objects: float | None
    puts_per_s: float | None
    avg_object_kb: float | None
    # throughput phase: the broker process's CPU time per GiB produced, and what one vCPU
    # carries at 100 % of it (control/sizing.py plans a share of that)
    broker_cpu_s_per_gib: float | None = None
    mbps_per_vcpu_at_full_cpu: float | None = None
    stage_ms: dict[str, float | None] = field(default_factory=dict)  # mean per request


def summarize(results: list[RoundResult], settings: Settings) -> list[Row]:
    rows = []
    for backend in settings.backends:
        for flush_ms in settings.flush_ms:
            ok = [r for r in results if r.backend == backend and r.flush_ms == flush_ms
                  and r.error is None and r.latency and r.throughput]
            lats = [r.latency for r in ok if r.latency is not None]
            tps = [r.throughput for r in ok if r.throughput is not None]
            pooled = LatencyPhase(0, 0, 0, [x for p in lats for x in p.latencies_ms],
                                  [x for p in lats for x in p.callback_ms])
            fill_percentiles(pooled)
            lat_objs = [p.objects for p in lats if p.objects is not None]
            tp_objs = [p.objects for p in tps if p.objects is not None]
            gib = settings.records * VALUE_BYTES / (1 << 30)
            cpu_per_gib = median([p.broker_cpu_s / gib for p in tps if p.broker_cpu_s > 0])
            rows.append(Row(
                backend=backend, flush_ms=flush_ms, rounds_ok=len(ok),
                p50_ms=pooled.p50_ms, p99_ms=pooled.p99_ms, p999_ms=pooled.p999_ms,
                max_ms=pooled.max_ms, callback_p50_ms=pooled.callback_p50_ms,
                callback_p99_ms=pooled.callback_p99_ms,
                latency_samples=len(pooled.latencies_ms),
                latency_puts_per_s=median([o.per_s for o in lat_objs]),
                latency_avg_object_kb=median([o.avg_kb for o in lat_objs]),
                mb_per_s=median([p.mb_per_s for p in tps]),
                objects=median([o.count for o in tp_objs]),
                puts_per_s=median([o.per_s for o in tp_objs]),
                avg_object_kb=median([o.avg_kb for o in tp_objs]),
                broker_cpu_s_per_gib=cpu_per_gib,
                mbps_per_vcpu_at_full_cpu=(
                    (1 << 30) / cpu_per_gib / MB if cpu_per_gib else None
                ),
                stage_ms={st: median([row.mean_ms for p in lats if p.stages
                                      for row in p.stages if row.stage == st])
                          for st in STAGE_ORDER},
            ))
    return rows


def print_table(rows: list[Row], settings: Settings) -> None:
    cols = [("backend", 7), ("flush_ms", 8), ("p50 ms", 7), ("p99 ms", 7), ("p999 ms", 7),
            ("lat PUT/s", 9), ("lat obj KB", 10), ("MB/s", 6), ("objects", 7),
            ("PUT/s", 6), ("obj KB", 7), ("CPU-s/GiB", 9), ("MB/s/vCPU", 9)]
    flush_bytes = settings.flush_bytes if settings.flush_bytes is not None else "default"
    print(f"\nobject WAL, BROKER_WAL_FLUSH_BYTES={flush_bytes}; {settings.rounds} round(s) "
          "per row" + (f"; s3: +{settings.put_latency_ms:g} ms on every S3 PUT (proxy)"
                       if settings.put_latency_ms else "") + ".")
    print(f"latency: {settings.rate} msg/s x {VALUE_BYTES} B for {settings.latency_seconds:g} s, "
          f"linger.ms={settings.latency_linger_ms:g}, acks=all, 1 partition. p50/p99/p999: "
          "produce() -> ack, all rounds' records pooled. lat PUT/s, lat obj KB: WAL objects "
          "per second and their mean size in this phase (median of rounds).")
    print(f"throughput: {settings.records} x {VALUE_BYTES} B, linger.ms=5, batch.size=1000000, "
          f"acks=all, {settings.partitions} partition(s). MB/s, objects (written per run), "
          "PUT/s, obj KB (mean object size), CPU-s/GiB (the broker process's CPU time per GiB "
          "produced), MB/s/vCPU (what one vCPU carries at 100 % of that: control/sizing.py "
          "plans a third of it): medians of rounds.")
    print_columns(cols, [
        [r.backend, f"{r.flush_ms:g}", fmt(r.p50_ms), fmt(r.p99_ms), fmt(r.p999_ms),
         fmt(r.latency_puts_per_s, ".0f"), fmt(r.latency_avg_object_kb), fmt(r.mb_per_s),
         fmt(r.objects, ".0f"), fmt(r.puts_per_s, ".0f"), fmt(r.avg_object_kb, ".0f"),
         fmt(r.broker_cpu_s_per_gib, ".2f"), fmt(r.mbps_per_vcpu_at_full_cpu, ".0f")]
        for r in rows])
    if any(any(v is not None for v in r.stage_ms.values()) for r in rows):
        names = ("wal_wait", "write", "sync", "complete", "durable_wait", "total")
        print("\nlatency phase, where a produce request's time went (broker /metrics, mean "
              "ms, median of rounds): wal_wait = queued until its group's flush began "
              "(linger, the flush before), write = build + PUT, sync = metadata commit")
        print_columns([("backend", 7), ("flush_ms", 8), *((n, 12) for n in names)], [
            [r.backend, f"{r.flush_ms:g}", *(fmt(r.stage_ms.get(n)) for n in names)]
            for r in rows])
    short = [f"{r.backend} {r.flush_ms:g}: {r.rounds_ok}" for r in rows
             if r.rounds_ok < settings.rounds]
    if short:
        print("rounds that succeeded (others failed, see above): " + "; ".join(short))


def environment() -> dict[str, Any]:
    return bench_environment(dists=("moto", "boto3"))


def round_json(r: RoundResult, samples: bool) -> dict[str, Any]:
    doc = asdict(r)
    for phase in ("latency", "throughput"):
        obj = getattr(r, phase)
        if obj is not None and obj.objects is not None:
            doc[phase]["objects"]["avg_kb"] = obj.objects.avg_kb
    if doc["latency"] is not None and not samples:
        doc["latency"].pop("latencies_ms")
        doc["latency"].pop("callback_ms")
    return doc


def write_json(path: Path, settings: Settings, env: dict[str, Any], results: list[RoundResult],
               rows: list[Row], exits: dict[str, Any], error: str | None,
               samples: bool) -> None:
    doc = {
        "settings": {**asdict(settings), "value_bytes": VALUE_BYTES, "mb": MB,
                     "out": str(settings.out) if settings.out else None,
                     "latency_producer": LATENCY_CONF, "throughput_producer": PRODUCER_CONF,
                     "warmup_records": WARMUP_RECORDS},
        "environment": env,
        "summary": [asdict(r) for r in rows],
        "rounds": [round_json(r, samples) for r in results],
        "broker_exits": exits,
        "error": error,
    }
    save_json(path, doc)


# -- main ---------------------------------------------------------------------------------
def parse_args(argv: list[str] | None) -> tuple[Settings, bool]:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--flush-ms", default=None,
                    help=f"comma-separated BROKER_WAL_FLUSH_MS values "
                    f"({','.join(map(str, FLUSH_MS))}; --quick: "
                    f"{','.join(map(str, QUICK_FLUSH_MS))})")
    ap.add_argument("--backends", default=",".join(BACKENDS), help="local,s3 (both)")
    ap.add_argument("--flush-bytes", type=int, default=None,
                    help="BROKER_WAL_FLUSH_BYTES (default: the broker's, 12 MiB)")
    ap.add_argument("--rounds", type=int, default=None, help="rounds per broker (3)")
    ap.add_argument("--quick", action="store_true",
                    help=f"1 round, flush_ms {','.join(map(str, QUICK_FLUSH_MS))}")
    ap.add_argument("--rate", type=int, default=2000, help="latency phase: records/s (2000)")
    ap.add_argument("--latency-seconds", type=float, default=5.0,
                    help="latency phase: seconds of steady load (5)")
    ap.add_argument("--latency-linger-ms", type=float, default=0.0,
                    help="latency phase: the producer's linger.ms (0)")
    ap.add_argument("--records", type=int, default=50_000,
                    help="throughput phase: records per round (50000)")
    ap.add_argument("--partitions", type=int, default=1,
                    help="throughput phase: partitions of its topic (1)")
    ap.add_argument("--round-timeout", type=float, default=180, help="seconds per round")
    ap.add_argument("--put-latency-ms", type=float, default=0.0,
                    help="s3: add this to every S3 PUT (a delaying proxy in front of moto; "
                    "S3 Standard PUTs take ~30 ms, which moto here does not)")
    ap.add_argument("--broker-env", action="append", default=[], metavar="K=V",
                    help="more settings for our broker, e.g. BROKER_WAL_MAX_IN_FLIGHT=1")
    ap.add_argument("--samples", action="store_true",
                    help="also write every latency sample to the JSON")
    add_run_options(ap, "object_wal", 1800)
    a = ap.parse_args(argv)
    backends = [b for b in a.backends.split(",") if b]
    if not backends or any(b not in BACKENDS for b in backends):
        ap.error(f"--backends must be a subset of {','.join(BACKENDS)}")
    if a.flush_ms is not None:
        flush_ms = [float(f) for f in a.flush_ms.split(",") if f]
    else:
        flush_ms = [float(f) for f in (QUICK_FLUSH_MS if a.quick else FLUSH_MS)]
    if any(f < 0 for f in flush_ms):
        ap.error("--flush-ms values must be >= 0")
    settings = Settings(
        flush_ms=flush_ms, backends=backends, flush_bytes=a.flush_bytes,
        rounds=a.rounds or (1 if a.quick else 3), rate=a.rate,
        latency_seconds=a.latency_seconds, latency_linger_ms=a.latency_linger_ms,
        records=a.records, partitions=a.partitions,
        round_timeout=a.round_timeout, timeout=a.timeout, keep_data=a.keep_data, out=a.out,
        put_latency_ms=a.put_latency_ms,
        broker_env=dict(kv.split("=", 1) for kv in a.broker_env),
    )
    return settings, a.samples


def main(argv: list[str] | None = None) -> int:
    settings, samples = parse_args(argv)
    env = environment()
    print(f"cpus={env['cpus']} librdkafka={env['librdkafka']} moto={env['moto']} "
          f"commit={env['git_commit'][:12]}", flush=True)
    results: list[RoundResult] = []
    exits: dict[str, Any] = {}
    with bench_run("bench-object-wal-", settings.timeout, settings.keep_data) as run:
        for round_no in range(1, settings.rounds + 1):  # interleaved: host drift hits all
            for backend in settings.backends:
                for flush_ms in settings.flush_ms:
                    if run.deadline.remaining() <= 0:
                        raise Aborted(f"overall timeout of {settings.timeout:.0f}s reached")
                    r = run_config_round(backend, flush_ms, round_no, settings, run.workdir,
                                         run.deadline, exits)
                    results.append(r)
                    print(describe(r), flush=True)
    error = run.error
    rows = summarize(results, settings)
    print_table(rows, settings)
    out = results_path(settings.out, "object_wal")
    write_json(out, settings, env, results, rows, exits, error, samples)
    print(f"\nresults: {out}")
    print_unclean_exits(exits)
    failed = error is not None or any(r.error for r in results)
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
