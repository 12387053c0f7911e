"""PNG plots of a suite run (bench/suite.py): small figures, one per scenario, drawn from the
suite's report (the same numbers as its tables)."""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import matplotlib

matplotlib.use("Agg")  # files only, no display
import matplotlib.pyplot as plt  # noqa: E402

FIGSIZE = (6.4, 3.6)
DPI = 90
COLORS = {"ours": "#1f77b4", "tansu": "#ff7f0e"}


def _save(fig: Any, path: Path) -> Path:
    fig.tight_layout()
    fig.savefig(path, dpi=DPI)
    plt.close(fig)
    return path


def _bars(ax: Any, labels: list[str], series: dict[str, list[float]],
          legend: str = "best") -> None:
    width = 0.8 / max(1, len(series))
    for i, (name, values) in enumerate(series.items()):
        xs = [x + (i - (len(series) - 1) / 2) * width for x in range(len(labels))]
        ax.bar(xs, values, width, label=name, color=COLORS.get(name))
    ax.set_xticks(range(len(labels)), labels, fontsize=8)
    ax.legend(fontsize=8, loc=legend)


def short_metric(metric: str) -> str:
    """'ack latency p99 ms @2000/s' -> 'p99'; 'produce MB/s, 4 partition(s)' -> 'produce 4p'."""
    text = re.sub(r"ack latency | ms @\d+/s| MB/s|,| restarted", "", metric)
    return text.replace(" partition(s)", "p").replace(" (", "\n(").strip()


def plot_vs_tansu(report: dict[str, Any], out: Path, unit: str, name: str,
                  ylabel: str) -> Path | None:
    rows = [r for r in report["ratios"] if unit in r["metric"]
            and r["ours"] is not None and r["tansu"] is not None]
    if not rows:
        return None
    fig, ax = plt.subplots(figsize=FIGSIZE)
    labels = [f"{r['setup']}\n{short_metric(r['metric'])}" for r in rows]
    _bars(ax, labels, {"ours": [r["ours"] for r in rows], "tansu": [r["tansu"] for r in rows]})
    ax.set_ylabel(ylabel)
    if unit == " ms ":
        ax.set_yscale("log")
    ax.set_title(f"ours vs Tansu: {ylabel} (same load, same run)", fontsize=10)
    return _save(fig, out / name)


def plot_wal(report: dict[str, Any], out: Path) -> Path | None:
    rows = report["wal"]
    if not rows:
        return None
    fig, ax = plt.subplots(figsize=FIGSIZE)
    for backend in dict.fromkeys(r["backend"] for r in rows):
        rs = sorted((r for r in rows if r["backend"] == backend and r["p50_ms"] is not None),
                    key=lambda r: r["flush_ms"])
        for pct, style in (("p50", "-o"), ("p99", "--s"), ("p999", ":^")):
            ax.plot([r["flush_ms"] for r in rs], [r[f"{pct}_ms"] for r in rs], style,
                    label=f"{backend} {pct}")
    ax.set_xlabel("BROKER_WAL_FLUSH_MS")
    ax.set_ylabel("produce -> ack, ms")
    ax.set_yscale("log")
    ax.set_title("object WAL: ack latency vs. flush interval", fontsize=10)
    ax.legend(fontsize=7, ncol=2)
    return _save(fig, out / "wal_flush_latency.png")


def plot_reassign(report: dict[str, Any], out: Path) -> Path | None:
    rows = [r for r in report["reassign"] if r["mb"]]
    if not rows:
        return None
    fig, ax = plt.subplots(figsize=FIGSIZE)
    for wal in dict.fromkeys(r["wal"] for r in rows):
        rs = sorted((r for r in rows if r["wal"] == wal), key=lambda r: r["mb"])
        mbs = [r["mb"] for r in rs]
        ax.plot(mbs, [(r["reassign_median_s"] or 0) * 1000 for r in rs], "-o",
                label=f"{wal} WAL: reassign() returns")
        ax.plot(mbs, [(r["write_median_s"] or 0) * 1000 for r in rs], "--s",
                label=f"{wal} WAL: write acked by new leader")
    ax.set_xscale("log")
    ax.set_xlabel("partition size, MB")
    ax.set_ylabel("ms after the move began (median)")
    ax.set_ylim(bottom=0)
    ax.set_title("reassignment time vs. partition size", fontsize=10)
    ax.legend(fontsize=7)
    return _save(fig, out / "reassign_vs_size.png")


def plot_failover(report: dict[str, Any], out: Path) -> Path | None:
    rows = report["failover"]
    if not rows:
        return None
    fig, ax = plt.subplots(figsize=FIGSIZE)
    steps = [("fenced", "fenced_median_s"), ("last partition led", "led_median_s"),
             ("all served", "served_median_s")]
    labels = [f"{r['wal']} WAL, lease {r['lease_ms'] or 6000} ms" for r in rows]
    series = {step: [r[key] or 0 for r in rows] for step, key in steps}
    _bars(ax, labels, series, legend="upper left")
    ax.set_ylim(top=max(max(v) for v in series.values()) * 1.4)
    ax.set_ylabel("seconds after SIGKILL (median)")
    lost = sum(r["lost"] for r in rows)
    ax.set_title(f"failover: SIGKILL the leader of 6 partitions; records lost: {lost}",
                 fontsize=10)
    return _save(fig, out / "failover.png")


def plot_s3_requests(report: dict[str, Any], out: Path) -> Path | None:
    rows = [r for r in report["s3_requests"] if r["metric"].startswith(("PUT/", "GET/", "LIST/"))
            and (r["ours"] or r["tansu"])]
    if not rows:
        return None
    fig, ax = plt.subplots(figsize=(7.2, 3.8))
    labels = [r["metric"].replace("/GiB ", "\n").replace(" (", "\n(") for r in rows]
    _bars(ax, labels, {"ours": [r["ours"] or 0 for r in rows],
                       "tansu": [r["tansu"] or 0 for r in rows]})
    ax.set_yscale("symlog", linthresh=1)
    ax.set_ylabel("requests per GiB of payload")
    ax.tick_params(axis="x", labelsize=7)
    ax.set_ylim(top=max(max(r["ours"] or 0, r["tansu"] or 0) for r in rows) * 5)
    ax.set_title("S3 requests per GiB of payload written / read (0 = none)", fontsize=10)
    return _save(fig, out / "s3_requests.png")


def plot_compaction(report: dict[str, Any], out: Path) -> Path | None:
    rows = [r for r in report.get("compaction") or [] if r["metric"] in
            ("objects in the bucket", "GET/GiB read (cold)")
            and r["before"] is not None and r["after"] is not None]
    if not rows:
        return None
    fig, ax = plt.subplots(figsize=FIGSIZE)
    _bars(ax, [r["metric"] for r in rows], {"before": [r["before"] for r in rows],
                                            "after": [r["after"] for r in rows]})
    ax.set_yscale("log")
    ax.set_title("compaction: objects and cold-read GETs per GiB", fontsize=10)
    return _save(fig, out / "compaction.png")


def plot_all(report: dict[str, Any], out: Path) -> list[Path]:
    made = [plot_vs_tansu(report, out, "MB/s", "throughput_vs_tansu.png", "MB/s"),
            plot_vs_tansu(report, out, " ms ", "latency_vs_tansu.png", "produce -> ack, ms"),
            plot_wal(report, out), plot_reassign(report, out), plot_failover(report, out),
            plot_s3_requests(report, out), plot_compaction(report, out)]
    return [p for p in made if p is not None]
