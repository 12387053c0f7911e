#!/usr/bin/env python3
"""Scale-out under load: add a broker, time until it serves its share, count the bytes copied.

Each round starts a fresh cluster on one data dir (SQLite metadata, local-directory object
store), as ``reassignment.py`` does: broker 1 alone creates a topic of ``--partitions``
partitions (so it leads all of them) and gets ``--fill-mb`` of data, which is in objects before
the new broker comes. A steady keyed load (``--rate`` records/s of 1 KiB, round-robin over the
partitions, acks=all) runs from then on. Broker 2 starts; then either

- ``--mode balancer``: every broker runs with ``BROKER_AUTO_BALANCE=true`` and the embedded
  balancer (``broker_service/control/balancer.py``) moves partitions by itself, or
- ``--mode reassign``: the script calls ``control.reassignment.reassign()`` for every second
  partition (the share a balancer would move), one after the other, as a control plane would.

Reported per round, in seconds after broker 2 was ready (listening and answering Metadata):
**moved**, when both brokers' metadata show broker 2 leading its share (partitions / 2), and
**bytes copied**: the bytes of the object-store ranges committed after broker 2 started that
hold offsets that were already in objects before it started (data written again). It must be 0:
a move hands over leadership and the data stays where it is. The object bytes written during
the move window and the payload acknowledged in it are in the JSON for comparison. Last, every
acknowledged record is read back (**lost** must be 0).

    .venv/bin/python bench/scale_out.py                    # 8 partitions, 2 rounds
    .venv/bin/python bench/scale_out.py --quick            # 4 partitions, 1 round
    .venv/bin/python bench/scale_out.py --mode reassign    # without the balancer
"""

from __future__ import annotations

import argparse
import contextlib
import importlib.util
import json
import os
import statistics
import sys
import threading
import time
import uuid
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from confluent_kafka import Producer
from produce_consume import (
    VALUE_BYTES,
    Aborted,
    BenchError,
    Deadline,
    add_run_options,
    bench_environment,
    bench_run,
    fmt,
    results_path,
)
from reassignment import (
    FILL_CONF,
    Cluster,
    LossCheck,
    check_no_loss,
    create_topic,
    fill,
    wait_leaders,
)

from broker_service.control.reassignment import reassign

MODES = ("balancer", "reassign")


def balancer_available() -> bool:
    """The embedded balancer is on main once broker_service/control/balancer.py exists."""
    return importlib.util.find_spec("broker_service.control.balancer") is not None


# -- settings -----------------------------------------------------------------------------
@dataclass(frozen=True)
class Settings:
    mode: str
    partitions: int
    fill_mb: float
    rate: int
    wal: str
    rounds: int
    move_timeout: float
    balance_interval_s: float
    after_seconds: float
    broker_env: dict[str, str]
    timeout: float
    keep_data: bool
    out: Path | None


# -- the object store, seen through the metadata store -------------------------------------
@dataclass(frozen=True)
class StoreState:
    ends: dict[int, int]  # stream id -> end offset committed to objects
    ranges: set[tuple[int, int]]  # (stream id, start offset) of every committed range


def store_state(cluster: Cluster) -> StoreState:
    with contextlib.closing(cluster.metadata_db()) as db:
        rows = db.execute("SELECT stream_id, start_offset, end_offset FROM stream_ranges")
        ranges: set[tuple[int, int]] = set()
        ends: dict[int, int] = {}
        for stream, start, end in rows:
            ranges.add((int(stream), int(start)))
            ends[int(stream)] = max(ends.get(int(stream), 0), int(end))
    return StoreState(ends, ranges)


def bytes_copied(cluster: Cluster, before: StoreState) -> int:
    """Bytes of ranges committed since ``before`` that start below what was already in objects
    then: data written to the object store a second time."""
    with contextlib.closing(cluster.metadata_db()) as db:
        rows = db.execute("SELECT stream_id, start_offset, size FROM stream_ranges").fetchall()
    return sum(int(size) for stream, start, size in rows
               if (stream, start) not in before.ranges and start < before.ends.get(stream, 0))


def object_bytes_between(cluster: Cluster, start_ms: int, end_ms: int) -> int:
    with contextlib.closing(cluster.metadata_db()) as db:
        (total,) = db.execute("SELECT COALESCE(SUM(size), 0) FROM objects WHERE committed_ms "
                              "BETWEEN ? AND ?", (start_ms, end_ms)).fetchone()
    return int(total)


def committed_all(cluster: Cluster, topic: str, acked_ends: dict[int, int]) -> bool:
    with contextlib.closing(cluster.metadata_db()) as db:
        for p, end in acked_ends.items():
            row = db.execute("SELECT COALESCE(MAX(r.end_offset), 0) FROM partitions t JOIN "
                             "stream_ranges r ON r.stream_id = t.stream_id WHERE t.topic=? "
                             "AND t.partition=?", (topic, p)).fetchone()
            if row is None or int(row[0]) < end:
                return False
    return True


# -- a steady keyed load in a thread -------------------------------------------------------
class SteadyKeyedLoad(threading.Thread):
    """``rate`` records/s, round-robin over the partitions, each with a unique integer key;
    remembers the (partition, offset) of every acknowledgement for the loss check."""

    def __init__(self, bootstrap: str, topic: str, partitions: int, rate: int) -> None:
        super().__init__(daemon=True)
        self.topic, self.partitions, self.rate = topic, partitions, rate
        self.producer = Producer({**FILL_CONF, "bootstrap.servers": bootstrap,
                                  "client.id": "bench-scale-out",
                                  "message.timeout.ms": 120_000})
        self.acked: dict[int, tuple[int, int]] = {}
        self.ack_ms: dict[int, int] = {}
        self.failed: list[str] = []
        self.stop_event = threading.Event()
        self.sent = 0

    def _on_delivery(self, err: Any, msg: Any) -> None:
        key = int(msg.key())
        if err is None:
            self.acked[key] = (msg.partition(), msg.offset())
            self.ack_ms[key] = int(time.time() * 1000)
        else:
            self.failed.append(f"{key}: {err}")

    def run(self) -> None:
        value = os.urandom(VALUE_BYTES)
        start = time.perf_counter()
        while not self.stop_event.is_set():
            due = int((time.perf_counter() - start) * self.rate) + 1
            while self.sent < due:
                try:
                    self.producer.produce(self.topic, value, key=str(self.sent).encode(),
                                          partition=self.sent % self.partitions,
                                          on_delivery=self._on_delivery)
                except BufferError:
                    break
                self.sent += 1
            self.producer.poll(0.001)

    def finish(self, timeout: float) -> None:
        self.stop_event.set()
        self.join(timeout=10)
        if self.producer.flush(timeout):
            raise BenchError("the load's records were not all acknowledged after the move")
        if self.failed:
            raise BenchError(f"{len(self.failed)} delivery errors, e.g. {self.failed[0]}")

    def acked_ends(self) -> dict[int, int]:
        ends: dict[int, int] = {}
        for p, offset in self.acked.values():
            ends[p] = max(ends.get(p, 0), offset + 1)
        return ends


# -- one round -------------------------------------------------------------------------------
@dataclass
class Round:
    mode: str
    round: int
    partitions: int
    share: int  # partitions broker 2 should lead
    fill_mb: float = 0.0
    ready_s: float | None = None  # broker 2 started -> ready
    moved_s: float | None = None  # broker 2 ready -> both brokers see it lead its share
    moved_partitions: list[int] = field(default_factory=list)
    bytes_copied: int | None = None
    object_bytes_written: int | None = None  # all objects committed during the move window
    payload_acked_bytes: int | None = None  # payload acknowledged during the move window
    acked: int = 0
    loss: LossCheck | None = None
    error: str | None = None
    log_excerpt: str | None = None


def wait_share(cluster: Cluster, topic: str, share: int, deadline: Deadline) -> dict[int, int]:
    """Waits until broker 1's and broker 2's metadata both show broker 2 leading ``share``
    partitions; returns the leaders."""
    seen: dict[int, int] = {}

    def enough(leaders: dict[int, int]) -> bool:
        seen.update(leaders)
        return sum(1 for lead in leaders.values() if lead == 2) >= share

    wait_leaders(cluster.brokers, topic, enough, deadline,
                 f"waiting for broker 2 to lead {share} partitions")
    return seen


def run_round(round_no: int, settings: Settings, workdir: Path, deadline: Deadline,
              exits: dict[str, Any]) -> Round:
    n = settings.partitions
    r = Round(settings.mode, round_no, n, n // 2)
    # compaction rewrites ranges on its own timer: it is measured apart (bench/compaction.py)
    # and would blur "bytes copied" by the move
    extra = {"BROKER_COMPACTION_INTERVAL_MS": "0", **settings.broker_env}
    if settings.mode == "balancer":
        extra.setdefault("BROKER_AUTO_BALANCE", "true")
        extra.setdefault("BROKER_BALANCE_INTERVAL_S", f"{settings.balance_interval_s:g}")
    tag = f"scale-out-{settings.mode}-r{round_no}"
    cluster = Cluster(workdir, tag, 2, settings.wal, None, extra)
    topic = f"scale-{uuid.uuid4().hex[:6]}"
    load: SteadyKeyedLoad | None = None
    try:
        cluster.start(deadline, count=1)
        create_topic(cluster.broker(1).bootstrap, topic, n, deadline)
        wait_leaders(cluster.brokers[:1], topic, lambda m: len(m) == n, deadline.sooner(20),
                     "waiting for broker 1 to lead every partition")
        per_partition = settings.fill_mb / n
        fills = [fill(cluster.broker(1).bootstrap, topic, p, per_partition, 120, deadline,
                      f"p{p}") for p in range(n)]
        r.fill_mb = sum(f.mb for f in fills)
        upload_deadline = deadline.sooner(30)
        while not committed_all(cluster, topic, {p: f.records for p, f in enumerate(fills)}):
            upload_deadline.check("waiting for the fill to be in objects")
            time.sleep(0.1)
        load = SteadyKeyedLoad(cluster.broker(1).bootstrap, topic, n, settings.rate)
        load.start()
        time.sleep(1.0)  # the load is steady before the new broker comes
        before = store_state(cluster)
        start_ms = int(time.time() * 1000)
        t_start = time.monotonic()
        cluster.broker(2).start(deadline.sooner(60))
        t_ready = time.monotonic()
        r.ready_s = t_ready - t_start
        if settings.mode == "reassign":
            for p in range(1, n, 2):  # every second partition: half of them
                res = reassign(cluster.broker(2).bootstrap, topic, p, 2)
                if not res.ok:
                    raise BenchError(f"reassign p{p}: error {res.error_code} "
                                     f"{res.error_message}")
        leaders = wait_share(cluster, topic, r.share, deadline.sooner(settings.move_timeout))
        r.moved_s = time.monotonic() - t_ready
        r.moved_partitions = sorted(p for p, lead in leaders.items() if lead == 2)
        time.sleep(settings.after_seconds)  # the load goes on against the new leaders
        load.finish(max(1.0, deadline.sooner(60).remaining()))
        end_ms = int(time.time() * 1000)
        upload_deadline = deadline.sooner(30)
        while not committed_all(cluster, topic, load.acked_ends()):
            upload_deadline.check("waiting for the load to be in objects")
            time.sleep(0.1)
        cluster.check_alive("after the move")
        r.bytes_copied = bytes_copied(cluster, before)
        r.object_bytes_written = object_bytes_between(cluster, start_ms, end_ms)
        r.payload_acked_bytes = VALUE_BYTES * sum(1 for t in load.ack_ms.values()
                                                  if start_ms <= t <= end_ms)
        r.acked = len(load.acked)
        r.loss = check_no_loss(cluster.bootstrap(), topic, n, load.acked, set(), deadline)
    except Aborted:
        raise
    except Exception as exc:  # a failed round is a result, not a crash
        r.error = f"{type(exc).__name__}: {exc}"
    finally:
        if load is not None:
            load.stop_event.set()
            load.producer.purge()
        with contextlib.suppress(Exception):
            if r.error or (r.loss and r.loss.lost) or r.bytes_copied:
                r.log_excerpt = cluster.log_excerpt()
        cluster.stop()
        exits[tag] = cluster.exits
    return r


def describe(r: Round) -> str:
    head = f"[scale-out {r.mode} round {r.round}]"
    if r.error:
        return f"{head} FAILED: {r.error}\n{r.log_excerpt or ''}"
    loss = r.loss
    return (f"{head} broker 2 ready {fmt(r.ready_s, '.2f')}s, leads {len(r.moved_partitions)}/"
            f"{r.partitions} partitions {fmt(r.moved_s, '.2f')}s later; bytes copied "
            f"{r.bytes_copied}; objects written in the window {r.object_bytes_written} B for "
            f"{r.payload_acked_bytes} B acknowledged; acked {r.acked}, lost "
            f"{loss.lost if loss else 'n/a'}, dups {loss.duplicates if loss else 'n/a'}")


def summary(rounds: list[Round], settings: Settings) -> dict[str, Any]:
    ok = [r for r in rounds if r.error is None and r.moved_s is not None]
    moved = [r.moved_s for r in ok if r.moved_s is not None]
    return {
        "mode": settings.mode, "partitions": settings.partitions, "rounds": len(rounds),
        "ok": len(ok), "share": settings.partitions // 2,
        "moved_median_s": statistics.median(moved) if moved else None,
        "moved_max_s": max(moved, default=None),
        "ready_median_s": statistics.median([r.ready_s for r in ok if r.ready_s is not None])
        if ok else None,
        "bytes_copied": sum(r.bytes_copied or 0 for r in ok),
        "object_bytes_written": sum(r.object_bytes_written or 0 for r in ok),
        "payload_acked_bytes": sum(r.payload_acked_bytes or 0 for r in ok),
        "acked": sum(r.acked for r in ok),
        "lost": sum(r.loss.lost for r in ok if r.loss),
        "duplicates": sum(r.loss.duplicates for r in ok if r.loss),
    }


def print_summary(s: dict[str, Any], settings: Settings) -> None:
    how = (f"the embedded balancer (BROKER_AUTO_BALANCE=true, BROKER_BALANCE_INTERVAL_S="
           f"{settings.balance_interval_s:g})" if s["mode"] == "balancer" else
           "reassign() of every second partition (no balancer: the script moves the share)")
    print(f"\nScale-out: 1 -> 2 brokers under {settings.rate} msg/s x {VALUE_BYTES} B on "
          f"{settings.partitions} partitions ({settings.fill_mb:g} MB already in objects), "
          f"WAL={settings.wal}; moves by {how}")
    print(f"  rounds ok {s['ok']}/{s['rounds']}; broker 2 leads {s['share']} partitions "
          f"{fmt(s['moved_median_s'], '.2f')} s (median; max {fmt(s['moved_max_s'], '.2f')} s) "
          f"after it was ready; bytes copied {s['bytes_copied']} (must be 0); lost "
          f"{s['lost']} of {s['acked']} acknowledged (must be 0); duplicates {s['duplicates']}")


# -- main ---------------------------------------------------------------------------------
def parse_args(argv: list[str] | None) -> Settings:
    ap = argparse.ArgumentParser(description=(__doc__ or "").split("\n\n")[0])
    ap.add_argument("--quick", action="store_true", help="4 partitions, 20 MB, 1 round")
    ap.add_argument("--mode", choices=(*MODES, "auto"), default="auto",
                    help="balancer, reassign, or auto: balancer if control/balancer.py exists")
    ap.add_argument("--partitions", type=int, default=None, help="(8; --quick: 4)")
    ap.add_argument("--fill-mb", type=float, default=None,
                    help="MB in objects before broker 2 starts (100; --quick: 20)")
    ap.add_argument("--rate", type=int, default=2000, help="records/s during the move (2000)")
    ap.add_argument("--wal", choices=("file", "object"), default="file")
    ap.add_argument("--rounds", type=int, default=None, help="(2; --quick: 1)")
    ap.add_argument("--move-timeout", type=float, default=90,
                    help="seconds for broker 2 to lead its share (90)")
    ap.add_argument("--balance-interval", type=float, default=5.0,
                    help="balancer mode: BROKER_BALANCE_INTERVAL_S (5; the broker's default "
                    "is 60, so a new broker waits up to that long for its first move)")
    ap.add_argument("--after", type=float, default=2.0,
                    help="seconds of load after the move, before the checks (2)")
    ap.add_argument("--broker-env", action="append", default=[], metavar="BROKER_X=V",
                    help="extra environment for every broker, e.g. BROKER_BALANCE_INTERVAL_S=2")
    add_run_options(ap, "scale_out", 600)
    a = ap.parse_args(argv)
    mode = a.mode if a.mode != "auto" else ("balancer" if balancer_available() else "reassign")
    return Settings(
        mode=mode, partitions=a.partitions or (4 if a.quick else 8),
        fill_mb=a.fill_mb if a.fill_mb is not None else (20 if a.quick else 100),
        rate=a.rate, wal=a.wal, rounds=a.rounds or (1 if a.quick else 2),
        move_timeout=a.move_timeout, balance_interval_s=a.balance_interval,
        after_seconds=a.after,
        broker_env=dict(kv.split("=", 1) for kv in a.broker_env), timeout=a.timeout,
        keep_data=a.keep_data, out=a.out)


def main(argv: list[str] | None = None) -> int:
    settings = parse_args(argv)
    env = bench_environment()
    env["balancer_available"] = balancer_available()
    print(f"scale-out mode={settings.mode} (balancer on this tree: {env['balancer_available']}) "
          f"commit={env['git_commit'][:12]}", flush=True)
    rounds: list[Round] = []
    exits: dict[str, Any] = {}
    with bench_run("bench-scale-out-", settings.timeout, settings.keep_data) as run:
        for round_no in range(1, settings.rounds + 1):
            run.deadline.check("starting a round")
            rounds.append(run_round(round_no, settings, run.workdir, run.deadline, exits))
            print(describe(rounds[-1]), flush=True)
    error = run.error
    s = summary(rounds, settings)
    print_summary(s, settings)
    out = results_path(settings.out, "scale_out")
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps({"settings": {**asdict(settings), "out": str(out)},
                               "environment": env, "summary": s,
                               "rounds": [asdict(r) for r in rounds], "broker_exits": exits,
                               "error": error}, indent=2, default=str) + "\n")
    print(f"\nresults: {out}")
    failed = (error is not None or any(r.error for r in rounds) or s["bytes_copied"] != 0
              or s["lost"] != 0)
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
