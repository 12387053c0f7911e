#!/usr/bin/env python3
"""The benchmark suite: one command runs every scenario, bounded in time, and reports.

Each scenario is one of the scripts next to this file, run as a child process with the
suite's settings and ``--out`` pointing into this run's directory, so a hang or a crash in
one scenario cannot take the others down: the suite stops a scenario that outlives its
budget (SIGTERM, then SIGKILL, by PID; the scripts stop their own brokers on SIGTERM).
Then it reads every scenario's JSON and prints one table, ratios against Tansu first, and
writes ``bench/results/suite-<time>/``: ``suite.json`` (the numbers below), ``suite.md`` (the
same tables in Markdown, for docs/PERFORMANCE.md) and one PNG plot per scenario.

    make bench                                     # = .venv/bin/python bench/suite.py
    make bench-quick                               # = ... --quick (a smoke run, ~3 min)
    .venv/bin/python bench/suite.py --only wal,failover
    .venv/bin/python bench/suite.py --dry-run      # the plan: commands and budgets
    .venv/bin/python bench/suite.py --report DIR   # tables and plots again from DIR's JSON

See bench/README.md and docs/PERFORMANCE.md.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import shutil
import signal
import subprocess
import sys
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

BENCH = Path(__file__).resolve().parent
REPO = BENCH.parent
RESULTS_DIR = BENCH / "results"
DOCS_IMG = REPO / "docs" / "img"


@dataclass(frozen=True)
class Scenario:
    name: str
    script: str
    what: str
    full: list[str]
    quick: list[str]
    budget_s: float  # the suite stops the scenario after this long (full run)
    quick_budget_s: float
    needs: str | None = None  # a module path that must exist (a part that lands later)

    def missing(self) -> str | None:
        """Why this scenario cannot run in this tree (None: it can)."""
        script = BENCH / self.script
        if self.needs is not None and not (REPO / self.needs).exists():
            return f"{self.needs} is not in this tree"
        if not script.exists():
            return f"bench/{self.script} is not in this tree"
        if "add_run_options" not in script.read_text():
            return f"bench/{self.script} does not take the suite's --out/--timeout options"
        return None

    def available(self) -> bool:
        return self.missing() is None


# The full profile keeps the whole suite under ~10 minutes on 2 vCPUs; each script's own
# defaults (bench/README.md) run longer and with more repetitions.
SCENARIOS: list[Scenario] = [
    Scenario("embedded", "produce_consume.py",
             "produce/consume MB/s and ack latency, ours (embedded) vs Tansu (memory)",
             ["--records", "100000", "--rounds", "3", "--partitions", "1,4",
              "--latency-seconds", "3", "--settle", "1"],
             ["--records", "20000", "--rounds", "1", "--partitions", "1",
              "--latency-seconds", "1", "--settle", "0.5"], 240, 60),
    Scenario("s3", "s3_requests.py",
             "ours (object WAL on S3+DynamoDB, moto) vs Tansu (s3://, moto): MB/s, latency, "
             "S3 requests per GiB",
             ["--brokers", "ours,tansu", "--records", "50000", "--rounds", "3",
              "--latency-seconds", "3", "--quiet", "2", "--idle", "0"],
             ["--brokers", "ours,tansu", "--records", "10000", "--rounds", "1",
              "--latency-seconds", "1", "--quiet", "1", "--idle", "0", "--no-cold"], 240, 75),
    Scenario("wal", "object_wal.py", "latency vs. BROKER_WAL_FLUSH_MS, object WAL",
             ["--flush-ms", "0,10,50,100,250", "--backends", "local,s3", "--rounds", "1",
              "--latency-seconds", "3", "--records", "20000"],
             ["--flush-ms", "0,50", "--backends", "local", "--rounds", "1",
              "--latency-seconds", "1", "--records", "5000"], 200, 40),
    Scenario("slowmd", "slow_metadata.py",
             "metadata calls +50-150 ms: produce ack latency, another client's ApiVersions RTT",
             ["--seconds", "6"], ["--seconds", "2", "--wals", "object"], 120, 40),
    Scenario("stages", "produce_stages.py",
             "issue 21: the Java-style produce load (idempotent, acks=all, 1 MiB batches) on "
             "1/4/32 partitions, ours (fsync) vs Tansu (memory): MB/s, CPU-s/GiB, ack latency, "
             "our per-stage table",
             ["--brokers", "ours,tansu", "--partitions", "1,4,32", "--rounds", "3",
              "--records", "100000", "--warmup-records", "100000", "--latency-seconds", "3"],
             ["--brokers", "ours,tansu", "--quick", "--records", "20000",
              "--warmup-records", "0", "--latency-seconds", "1"], 420, 60),
    Scenario("wal-s3", "object_wal.py",
             "issue 21.4: object WAL on S3 (moto + 30 ms per PUT) at 20 MB/s: ack latency",
             ["--backends", "s3", "--flush-ms", "50", "--put-latency-ms", "30", "--rate",
              "20000", "--latency-linger-ms", "5", "--rounds", "3", "--latency-seconds", "5",
              "--records", "20000"],
             ["--backends", "s3", "--flush-ms", "50", "--put-latency-ms", "30", "--rate",
              "5000", "--latency-linger-ms", "5", "--rounds", "1", "--latency-seconds", "1",
              "--records", "5000"], 240, 60),
    Scenario("reassign", "reassignment.py", "reassignment time vs. partition size",
             ["--parts", "reassign", "--wals", "file", "--sizes-mb", "10,100,1000",
              "--moves", "3", "--upload-wait", "30"],
             ["--parts", "reassign", "--wals", "file", "--sizes-mb", "5,20", "--moves", "1",
              "--upload-wait", "10"], 200, 45),
    Scenario("failover", "reassignment.py", "SIGKILL a broker: time to serve, records lost",
             ["--parts", "failover", "--failover-wals", "file", "--leases", "3000",
              "--failover-rounds", "3"],
             ["--parts", "failover", "--failover-wals", "file", "--leases", "3000",
              "--failover-rounds", "1", "--failover-records", "5000"], 150, 50),
    Scenario("scaleout", "scale_out.py",
             "add a broker under load: time until it leads its share, bytes copied",
             ["--partitions", "8", "--fill-mb", "100", "--rounds", "2"],
             ["--partitions", "4", "--fill-mb", "10", "--rounds", "1"], 150, 45),
    Scenario("zones", "zones.py",
             "zone-aware clients, 3 brokers in 3 racks on S3+DynamoDB (moto): cross-rack "
             "bytes, forwarded vs direct ack latency, S3 requests and DynamoDB WRU per GiB",
             ["--mb", "40", "--latency-seconds", "15"],
             ["--quick"], 420, 150),
    Scenario("compaction", "compaction.py",
             "objects and cold-read S3 requests per GiB, before and after compaction",
             ["--seconds", "8"], ["--seconds", "3"], 150, 60,
             needs="broker_service/control/compaction.py"),
]
NAMES = [s.name for s in SCENARIOS]


# -- running ------------------------------------------------------------------------------
@dataclass
class Outcome:
    name: str
    command: list[str]
    budget_s: float
    seconds: float = 0.0
    exit_code: int | None = None
    timed_out: bool = False
    skipped: str | None = None
    json_path: str | None = None


def command(s: Scenario, quick: bool, out: Path) -> list[str]:
    return [sys.executable, str(BENCH / s.script), *(s.quick if quick else s.full),
            "--out", str(out)]


def run_scenario(s: Scenario, quick: bool, run_dir: Path, end: float) -> Outcome:
    out = run_dir / f"{s.name}.json"
    budget = min(s.quick_budget_s if quick else s.budget_s, max(0.0, end - time.monotonic()))
    o = Outcome(s.name, command(s, quick, out), budget)
    o.skipped = s.missing()
    if o.skipped is not None:
        return o
    if budget < 10:
        o.skipped = "the suite's --timeout was used up"
        return o
    # the scripts get their own (shorter) overall timeout; the budget stops them if that fails
    argv = [*o.command, "--timeout", f"{max(10.0, budget - 20):.0f}"]
    print(f"\n=== {s.name}: {s.what} (budget {budget:.0f}s)\n$ "
          f"{' '.join(Path(a).name if a == sys.executable else a for a in argv)}", flush=True)
    started = time.monotonic()
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    child = subprocess.Popen(argv, cwd=REPO, env=env)
    try:
        o.exit_code = child.wait(timeout=budget)
    except subprocess.TimeoutExpired:
        o.timed_out = True
        child.send_signal(signal.SIGTERM)  # the script stops its brokers and writes its JSON
        try:
            o.exit_code = child.wait(timeout=60)
        except subprocess.TimeoutExpired:
            child.kill()
            o.exit_code = child.wait(timeout=10)
    finally:
        if child.poll() is None:  # Ctrl-C or an error in the suite itself
            child.send_signal(signal.SIGTERM)
            with contextlib.suppress(subprocess.TimeoutExpired):
                child.wait(timeout=60)
            if child.poll() is None:
                child.kill()
    o.seconds = time.monotonic() - started
    if out.exists():
        o.json_path = str(out)
    return o


# -- the report: the numbers each scenario's JSON holds ----------------------------------------
Report = dict[str, Any]


def load(path: str | None) -> dict[str, Any] | None:
    if path is None or not Path(path).exists():
        return None
    with contextlib.suppress(ValueError, OSError):
        doc = json.loads(Path(path).read_text())
        return doc if isinstance(doc, dict) else None
    return None


def ratio_rows(embedded: dict[str, Any] | None, s3: dict[str, Any] | None) -> list[dict[str, Any]]:
    """ours/tansu per metric, measured side by side in one run (medians over its rounds)."""
    rows: list[dict[str, Any]] = []
    if embedded:
        rounds = embedded["settings"]["rounds"]
        for r in embedded["summary"]:
            rows.append({"setup": "embedded", "metric": f"{r['direction']} MB/s, "
                         f"{r['partitions']} partition(s)", "better": "higher",
                         "ours": r["mb_per_s"].get("ours"), "tansu": r["mb_per_s"].get("tansu"),
                         "ratio": r["ratio_ours_over_tansu"], "rounds": rounds})
        rate = embedded["settings"]["latency_rate"]
        for r in embedded.get("latency_summary", []):  # all scenarios' rounds: 1 partition
            rows.append({"setup": "embedded", "metric": f"ack latency {r['percentile']} ms "
                         f"@{rate}/s", "better": "lower", "ours": r["ms"].get("ours"),
                         "tansu": r["ms"].get("tansu"), "ratio": r["ratio_ours_over_tansu"],
                         "rounds": min(r["rounds_ok"].values(), default=0)})
    if s3:
        rounds = s3["settings"]["rounds"]
        for r in s3["summary"]:
            metric = r["metric"]
            if not metric.startswith(("produce", "consume", "ack latency")):
                continue  # request counts: their own table (s3_request_rows)
            rows.append({"setup": "S3 (moto)", "metric": metric,
                         "better": "higher" if "MB/s" in metric else "lower",
                         "ours": r["values"].get("ours"), "tansu": r["values"].get("tansu"),
                         "ratio": r["ratio_ours_over_tansu"], "rounds": rounds})
    return rows


def wal_rows(doc: dict[str, Any] | None) -> list[dict[str, Any]]:
    if not doc:
        return []
    return [{k: r[k] for k in ("backend", "flush_ms", "rounds_ok", "p50_ms", "p99_ms",
                               "p999_ms", "latency_puts_per_s", "mb_per_s")}
            for r in doc["summary"]]


def stages_rows(doc: dict[str, Any] | None) -> list[dict[str, Any]]:
    """produce_stages.py: per partition count and metric, ours, Tansu and the ratio."""
    if not doc:
        return []
    return [{"partitions": r["partitions"], "metric": r["metric"], "better": r["better"],
             "ours": r["values"].get("ours"), "tansu": r["values"].get("tansu"),
             "ratio": r["ratio_ours_over_tansu"], "loadavg": r["loadavg"]}
            for r in doc["summary"]]


def reassign_rows(doc: dict[str, Any] | None) -> list[dict[str, Any]]:
    if not doc:
        return []
    return [{k: r[k] for k in ("wal", "partition", "mb", "ok", "moves", "reassign_median_s",
                               "reassign_max_s", "write_median_s", "write_max_s")}
            for r in doc["summary"]["reassign"]]


def failover_rows(doc: dict[str, Any] | None) -> list[dict[str, Any]]:
    if not doc:
        return []
    return [{k: r[k] for k in ("wal", "lease_ms", "ok", "rounds", "fenced_median_s",
                               "led_median_s", "served_median_s", "served_max_s",
                               "acked_total", "lost", "duplicates")}
            for r in doc["summary"]["failover"]]


def s3_request_rows(doc: dict[str, Any] | None) -> list[dict[str, Any]]:
    if not doc:
        return []
    return [{"metric": r["metric"], "ours": r["values"].get("ours"),
             "tansu": r["values"].get("tansu"), "ratio": r["ratio_ours_over_tansu"]}
            for r in doc["summary"] if "/GiB" in r["metric"] or "/min" in r["metric"]]


def compaction_rows(doc: dict[str, Any] | None) -> list[dict[str, Any]]:
    """Before and after compaction: the bucket's objects and a cold read's requests."""
    if not doc:
        return []
    before, after = doc.get("cold_read_before", {}), doc.get("cold_read_after", {})
    mb = 1e6
    return [
        {"metric": "objects in the bucket", "before": doc.get("objects_before"),
         "after": doc.get("objects_after")},
        {"metric": "MB in the bucket", "before": (doc.get("bytes_before") or 0) / mb,
         "after": (doc.get("bytes_after") or 0) / mb},
        {"metric": "GET/GiB read (cold)", "before": before.get("GET_per_GiB"),
         "after": after.get("GET_per_GiB")},
        {"metric": "PUT/GiB read (cold)", "before": before.get("PUT_per_GiB"),
         "after": after.get("PUT_per_GiB")},
        {"metric": "cold read seconds", "before": before.get("seconds"),
         "after": after.get("seconds")},
    ]


def zones_rows(doc: dict[str, Any] | None) -> list[dict[str, Any]]:
    """bench/zones.py: one row per mode (baseline = classic clients, zoned)."""
    if not doc:
        return []
    rows = []
    for name, m in doc.get("modes", {}).items():
        lat = m.get("latency", {})
        rows.append({
            "mode": name, "error": m.get("error"),
            "cross_per_gib": m.get("cross_zone_per_gib"),
            "cross_produce": m.get("cross_zone_produce_fraction"),
            "cross_consume": m.get("cross_zone_consume_fraction"),
            "b2b_per_gib": m.get("broker_to_broker_per_gib"),
            "direct_p50": lat.get("direct", {}).get("p50_ms"),
            "direct_p99": lat.get("direct", {}).get("p99_ms"),
            "other_p50": (lat.get("forwarded") or lat.get("cross-rack") or {}).get("p50_ms"),
            "other_p99": (lat.get("forwarded") or lat.get("cross-rack") or {}).get("p99_ms"),
            "put_per_gib": m.get("s3_put_per_gib_produced"),
            "get_per_gib": m.get("s3_get_per_gib_produced"),
            "wru_per_gib": m.get("ddb_wru_per_gib_produced"),
        })  # fmt: skip
    return rows


def build_report(outcomes: list[Outcome], quick: bool) -> Report:
    docs = {o.name: load(o.json_path) for o in outcomes}
    scale = docs.get("scaleout")
    return {
        "quick": quick,
        "host": {"cpus": os.cpu_count(), "loadavg_at_report": os.getloadavg()},
        "scenarios": [asdict(o) for o in outcomes],
        "ratios": ratio_rows(docs.get("embedded"), docs.get("s3")),
        "wal": wal_rows(docs.get("wal")),
        "stages": stages_rows(docs.get("stages")),
        "wal_s3": wal_rows(docs.get("wal-s3")),
        "reassign": reassign_rows(docs.get("reassign")),
        "failover": failover_rows(docs.get("failover")),
        "scaleout": {**scale["summary"], "rate": scale["settings"]["rate"],
                     "balance_interval_s": scale["settings"].get("balance_interval_s")}
        if scale else None,
        "s3_requests": s3_request_rows(docs.get("s3")),
        "compaction": compaction_rows(docs.get("compaction")),
        "zones": zones_rows(docs.get("zones")),
        "slowmd": (docs.get("slowmd") or {}).get("runs", []),
        "compaction_note": None if docs.get("compaction") else
        "after compaction: not measured ("
        + (next((o.skipped or "it failed" for o in outcomes if o.name == "compaction"),
                "not run") + ")"),
    }


# -- tables ---------------------------------------------------------------------------------
def num(value: Any, spec: str = ".1f", scale: float = 1.0) -> str:
    if value is None:
        return "n/a"
    if isinstance(value, str):
        return value
    return format(value * scale if scale != 1.0 else value, spec)


@dataclass
class Table:
    title: str
    header: list[str]
    rows: list[list[str]] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)

    def text(self) -> str:
        widths = [max(len(h), *(len(r[i]) for r in self.rows)) if self.rows else len(h)
                  for i, h in enumerate(self.header)]
        lines = [f"\n{self.title}", "  ".join(h.rjust(w) for h, w in zip(self.header, widths,
                                                                          strict=True)),
                 "  ".join("-" * w for w in widths)]
        lines += ["  ".join(c.rjust(w) for c, w in zip(r, widths, strict=True))
                  for r in self.rows]
        return "\n".join(lines + [f"  {n}" for n in self.notes])

    def markdown(self) -> str:
        lines = [f"**{self.title}**", "", "| " + " | ".join(self.header) + " |",
                 "|" + "|".join("---:" if i else "---" for i in range(len(self.header))) + "|"]
        lines += ["| " + " | ".join(r) + " |" for r in self.rows]
        return "\n".join(lines + ([""] + [f"{n}" for n in self.notes] if self.notes else []))


def tables(report: Report) -> list[Table]:
    out: list[Table] = []
    if report["ratios"]:
        t = Table("ours vs Tansu, same load, same run (median of rounds)",
                  ["setup", "metric", "ours/tansu", "better", "ours", "tansu", "rounds"])
        for r in report["ratios"]:
            spec = ".2f" if "GiB" in r["metric"] else ".1f"
            t.rows.append([r["setup"], r["metric"],
                           num(r["ratio"], ".2f") + "x" if r["ratio"] is not None else "n/a",
                           r["better"], num(r["ours"], spec), num(r["tansu"], spec),
                           str(r["rounds"])])
        out.append(t)
    if report.get("stages"):
        t = Table("issue 21: idempotent acks=all, 1 MiB batches, ours (fsync) vs Tansu (memory)",
                  ["partitions", "metric", "ours/tansu", "better", "ours", "tansu", "load"])
        t.rows = [[str(r["partitions"]), r["metric"],
                   num(r["ratio"], ".2f") + "x" if r["ratio"] is not None else "n/a",
                   r["better"], num(r["ours"]), num(r["tansu"]), num(r["loadavg"])]
                  for r in report["stages"]]
        out.append(t)
    if report.get("wal_s3"):
        t = Table("object WAL on S3 (moto + 30 ms per PUT): ack latency at the offered load",
                  ["flush ms", "p50 ms", "p99 ms", "p999 ms", "WAL PUT/s", "bulk MB/s"])
        t.rows = [[num(r["flush_ms"], "g"), num(r["p50_ms"]), num(r["p99_ms"]),
                   num(r["p999_ms"]), num(r["latency_puts_per_s"], ".0f"), num(r["mb_per_s"])]
                  for r in report["wal_s3"]]
        out.append(t)
    if report["wal"]:
        t = Table("object WAL: ack latency vs. BROKER_WAL_FLUSH_MS (linger.ms=0, 2000 msg/s)",
                  ["backend", "flush ms", "p50 ms", "p99 ms", "p999 ms", "WAL PUT/s",
                   "bulk MB/s"])
        t.rows = [[r["backend"], num(r["flush_ms"], "g"), num(r["p50_ms"]), num(r["p99_ms"]),
                   num(r["p999_ms"]), num(r["latency_puts_per_s"], ".0f"), num(r["mb_per_s"])]
                  for r in report["wal"]]
        out.append(t)
    if report["reassign"]:
        t = Table("reassignment vs. partition size (2 brokers; no data is copied)",
                  ["WAL", "size", "moves ok", "reassign() med ms", "max ms",
                   "write acked by new leader med ms", "max ms"])
        t.rows = [[r["wal"], f"{num(r['mb'], '.0f')} MB", f"{r['ok']}/{r['moves']}",
                   num(r["reassign_median_s"], ".0f", 1000), num(r["reassign_max_s"], ".0f", 1000),
                   num(r["write_median_s"], ".0f", 1000), num(r["write_max_s"], ".0f", 1000)]
                  for r in report["reassign"]]
        out.append(t)
    if report["failover"]:
        t = Table("failover: SIGKILL the broker leading all 6 partitions (3 brokers)",
                  ["WAL", "lease ms", "rounds ok", "fenced s", "led s", "served med s",
                   "served max s", "acked", "lost", "dups"])
        t.rows = [[r["wal"], str(r["lease_ms"] or "6000"), f"{r['ok']}/{r['rounds']}",
                   num(r["fenced_median_s"], ".2f"), num(r["led_median_s"], ".2f"),
                   num(r["served_median_s"], ".2f"), num(r["served_max_s"], ".2f"),
                   str(r["acked_total"]), str(r["lost"]), str(r["duplicates"])]
                  for r in report["failover"]]
        t.notes = ["served = seconds from SIGKILL until every partition has a live leader "
                   "and an acks=all write to each was acknowledged; lost must be 0"]
        out.append(t)
    s = report["scaleout"]
    if s:
        how = (f"embedded balancer (BROKER_AUTO_BALANCE=true, BROKER_BALANCE_INTERVAL_S="
               f"{s['balance_interval_s']:g})" if s["mode"] == "balancer" else
               "script: reassign() of half the partitions (no balancer in this tree)")
        t = Table(f"scale-out: 1 -> 2 brokers under {s['rate']} msg/s, moved by the {how}",
                  ["partitions", "moved to new broker", "rounds ok", "moved med s",
                   "moved max s", "bytes copied", "acked", "lost"])
        t.rows = [[str(s["partitions"]), str(s["share"]), f"{s['ok']}/{s['rounds']}",
                   num(s["moved_median_s"], ".2f"), num(s["moved_max_s"], ".2f"),
                   str(s["bytes_copied"]), str(s["acked"]), str(s["lost"])]]
        t.notes = ["moved = seconds from the new broker being ready until both brokers' "
                   "metadata show it leading its share; bytes copied = object-store bytes "
                   "written again for offsets already in objects (must be 0)"]
        out.append(t)
    if report["s3_requests"]:
        t = Table("S3 requests per GiB (moto behind a counting proxy), before compaction",
                  ["metric", "ours", "tansu", "ours/tansu"])
        t.rows = [[r["metric"], num(r["ours"], ".2f"), num(r["tansu"], ".2f"),
                   num(r["ratio"], ".2f") + "x" if r["ratio"] is not None else "n/a"]
                  for r in report["s3_requests"]]
        t.notes = [report["compaction_note"]] if report.get("compaction_note") else []
        out.append(t)
    if report.get("compaction"):
        t = Table("compaction: the object WAL's objects and a cold read, before and after",
                  ["metric", "before", "after", "after/before"])
        t.rows = [[r["metric"], num(r["before"]), num(r["after"]),
                   num(r["after"] / r["before"], ".2f") + "x" if r["before"] and
                   r["after"] is not None else "n/a"] for r in report["compaction"]]
        out.append(t)
    if report.get("zones"):
        t = Table("zone-aware clients: 3 brokers in 3 racks, a producer and a consumer per rack",
                  ["mode", "cross-rack B/GiB", "produce", "consume", "broker-broker B/GiB",
                   "direct p50/p99 ms", "forwarded (or cross) p50/p99 ms", "S3 PUT/GiB",
                   "S3 GET/GiB", "DDB WRU/GiB"])
        t.rows = [[r["mode"], num(r["cross_per_gib"], ".4f"), num(r["cross_produce"], ".4f"),
                   num(r["cross_consume"], ".4f"), num(r["b2b_per_gib"], ".4f"),
                   f"{num(r['direct_p50'])}/{num(r['direct_p99'])}",
                   f"{num(r['other_p50'])}/{num(r['other_p99'])}", num(r["put_per_gib"], ".0f"),
                   num(r["get_per_gib"], ".0f"), num(r["wru_per_gib"], ".0f")]
                  for r in report["zones"]]
        t.notes = ["bytes per GiB of payload produced + consumed; per GiB figures of S3 and "
                   "DynamoDB are at the bench's small rate (objects and commits are small)"]
        out.append(t)
    if report.get("slowmd"):
        t = Table("metadata calls slowed: produce acks and another client's ApiVersions",
                  ["WAL", "metadata +ms", "ack p50", "ack p99", "ApiVersions p50",
                   "ApiVersions p99", "ApiVersions max"])
        t.rows = [[r["wal"], r["metadata_latency_ms"], num(r["ack"]["p50_ms"]),
                   num(r["ack"]["p99_ms"]), num(r["api_versions_rtt"]["p50_ms"]),
                   num(r["api_versions_rtt"]["p99_ms"]), num(r["api_versions_rtt"]["max_ms"])]
                  for r in report["slowmd"]]
        t.notes = ["ms; the ApiVersions probe runs on its own connection every 20 ms"]
        out.append(t)
    return out


def scenario_table(report: Report) -> Table:
    t = Table("scenarios", ["scenario", "exit", "seconds", "budget s", "note"])
    for o in report["scenarios"]:
        note = o["skipped"] or ("TIMED OUT (stopped)" if o["timed_out"] else
                                "" if o["exit_code"] == 0 else
                                "not run here (--report)" if o["exit_code"] is None else
                                "failed: see its output above")
        t.rows.append([o["name"], num(o["exit_code"], "d"), num(o["seconds"], ".0f"),
                       num(o["budget_s"], ".0f"), note])
    return t


# -- main -----------------------------------------------------------------------------------
def parse_args(argv: list[str] | None) -> argparse.Namespace:
    ap = argparse.ArgumentParser(description=(__doc__ or "").split("\n\n")[0])
    ap.add_argument("--quick", action="store_true", help="small loads, 1 round (~3 min)")
    ap.add_argument("--only", default=None, help=f"comma-separated subset of {','.join(NAMES)}")
    ap.add_argument("--skip", default="", help="comma-separated scenarios to leave out")
    ap.add_argument("--timeout", type=float, default=None,
                    help="seconds for the whole suite (full: 1200; --quick: 420)")
    ap.add_argument("--dry-run", action="store_true",
                    help="print the scenarios, their commands and budgets; run nothing")
    ap.add_argument("--report", type=Path, default=None, metavar="DIR",
                    help="run nothing: rebuild the tables and plots from DIR/<scenario>.json")
    ap.add_argument("--results-dir", type=Path, default=RESULTS_DIR,
                    help="where this run's directory goes (bench/results)")
    ap.add_argument("--publish", action="store_true",
                    help="also copy the plots to docs/img/ (for docs/PERFORMANCE.md)")
    a = ap.parse_args(argv)
    chosen = NAMES if a.only is None else [x for x in a.only.split(",") if x]
    skip = {x for x in a.skip.split(",") if x}
    unknown = [x for x in [*chosen, *skip] if x not in NAMES]
    if unknown:
        ap.error(f"unknown scenario(s) {unknown}; choose from {','.join(NAMES)}")
    a.chosen = [x for x in chosen if x not in skip]
    if a.timeout is None:
        a.timeout = 420.0 if a.quick else 1200.0
    return a


def on_signal(signum: int, _frame: object) -> None:
    raise KeyboardInterrupt(f"signal {signal.Signals(signum).name}")


def write_outputs(report: Report, run_dir: Path, publish: bool,
                  plot: Callable[[Report, Path], list[Path]]) -> None:
    text = [t.text() for t in tables(report)] + [scenario_table(report).text()]
    print("\n".join(text))
    md = "\n\n".join(t.markdown() for t in tables(report))
    (run_dir / "suite.md").write_text(md + "\n")
    (run_dir / "suite.json").write_text(json.dumps(report, indent=2, default=str) + "\n")
    pngs = plot(report, run_dir)
    if publish:
        DOCS_IMG.mkdir(parents=True, exist_ok=True)
        for p in pngs:
            shutil.copy(p, DOCS_IMG / f"bench-{p.name}")
    print(f"\nresults: {run_dir}/ (suite.json, suite.md, {len(pngs)} plot(s))"
          + (f"; plots copied to {DOCS_IMG}" if publish else ""))


def reported(run_dir: Path, names: list[str]) -> list[Outcome]:
    """The scenarios of an earlier run, as its suite.json recorded them (if it did)."""
    previous = load(str(run_dir / "suite.json"))
    ran = {o["name"]: o for o in previous["scenarios"]} if previous else {}
    return [Outcome(**ran[n]) if n in ran else
            Outcome(n, [], 0, json_path=str(run_dir / f"{n}.json")) for n in names]


def main(argv: list[str] | None = None) -> int:
    a = parse_args(argv)
    by_name = {s.name: s for s in SCENARIOS}
    if a.dry_run:
        for name in a.chosen:
            s = by_name[name]
            state = "ready" if s.available() else f"skipped: {s.missing()}"
            budget = s.quick_budget_s if a.quick else s.budget_s
            out = a.results_dir / "suite-DRYRUN" / f"{name}.json"
            argv = [str(Path(x).relative_to(REPO)) if x.startswith(str(REPO)) else x
                    for x in command(s, a.quick, out)[1:]]
            print(f"{name:9} budget {budget:4.0f}s  {state}\n    {' '.join(argv)}")
        return 0
    from plots import plot_all  # matplotlib: only when there is something to plot

    if a.report is not None:
        write_outputs(build_report(reported(a.report, a.chosen), a.quick), a.report, a.publish,
                      plot_all)
        return 0
    signal.signal(signal.SIGTERM, on_signal)
    run_dir = a.results_dir / f"suite-{time.strftime('%Y%m%d-%H%M%S')}{'-quick' * a.quick}"
    run_dir.mkdir(parents=True, exist_ok=True)
    end = time.monotonic() + a.timeout
    print(f"suite: {', '.join(a.chosen)}; {'quick' if a.quick else 'full'} profile; at most "
          f"{a.timeout:.0f}s; host load average {os.getloadavg()[0]:.1f} on {os.cpu_count()} "
          f"CPUs (other processes slow every number down)", flush=True)
    outcomes: list[Outcome] = []
    try:
        for name in a.chosen:
            outcomes.append(run_scenario(by_name[name], a.quick, run_dir, end))
    except KeyboardInterrupt:
        print("suite interrupted; reporting what finished", file=sys.stderr)
    write_outputs(build_report(outcomes, a.quick), run_dir, a.publish, plot_all)
    failed = [o.name for o in outcomes if o.skipped is None and o.exit_code != 0]
    if failed:
        print(f"scenarios that failed or timed out: {', '.join(failed)}")
    return 1 if failed or len(outcomes) < len(a.chosen) else 0


if __name__ == "__main__":
    sys.exit(main())
