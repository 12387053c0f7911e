"""``cost --measured FILE``: the model fed with what bench/zones.py measured, before and after
zone-aware clients, next to Apache Kafka (issue 19).

The bench's JSON carries ``cost_inputs``: assumption overrides measured with classic clients
(``before``: the cross-AZ shares of produced and consumed bytes) and with zoned clients
(``after``: the same shares, the bytes between brokers, the GETs per forward object and per
WAL object, the WRU per transactional item). Rates per GiB that depend on the bench's small
load (objects per GiB, commits per GiB) are left to the model, which derives them from the
flush cycle at each workload's rate. Three columns: ``before`` (classic clients, a range item
per partition in every WAL commit: the system before issue 19), ``zoned clients`` (item 1-2
alone) and ``after`` (zoned clients and the lean metadata commit, item 3: the code now).
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from broker_service.ops.cost.model import (
    CATEGORIES,
    GIB,
    MB,
    Assumptions,
    Estimate,
    Workload,
    apply_overrides,
    price_kafka,
    price_ours,
)
from broker_service.ops.cost.prices import PriceTable
from broker_service.ops.cost.report import table

# AutoMQ's published comparison: 1 GiB/s in and out, 256 partitions, 72 h retention
AUTOMQ_WORKLOAD = Workload(
    write_mbps=GIB / MB, read_mbps=GIB / MB, retention_h=72, partitions=256
)
AUTOMQ_USD_MONTH = 12_899


def load_inputs(path: Path) -> dict[str, dict[str, Any]]:
    doc = json.loads(path.read_text())
    inputs = doc.get("cost_inputs") or {}
    if "before" not in inputs or "after" not in inputs:
        raise ValueError(f"{path}: no cost_inputs before/after (run bench/zones.py with the "
                         "baseline and zoned modes)")
    return {"before": inputs["before"], "after": inputs["after"]}


def scenarios(
    base: Assumptions, inputs: dict[str, dict[str, Any]]
) -> dict[str, Assumptions]:
    """The assumption sets compared: before, zoned clients alone, after (zoned + lean)."""

    def with_(extra: dict[str, Any]) -> Assumptions:
        return apply_overrides(base, [f"{k}={v}" for k, v in extra.items()])

    per_range = {"ours.ddb_commit_layout": "item_per_range"}
    after = {**inputs["after"], "ours.zone_aware": "true"}
    return {
        "before": with_({**inputs["before"], **per_range, "ours.zone_aware": "false"}),
        "zoned clients": with_({**after, **per_range}),
        "after": with_({**after, "ours.ddb_commit_layout": "packed"}),
    }


def compare(
    workloads: list[Workload], prices: PriceTable, sets: dict[str, Assumptions]
) -> list[dict[str, Any]]:
    rows = []
    for w in workloads:
        kafka = price_kafka(w, prices, sets["before"])
        row: dict[str, Any] = {"workload": w.model_dump(), "kafka": kafka.totals}
        for name, a in sets.items():
            row[name] = price_ours(w, prices, a).totals
        rows.append(row)
    return rows


def format_compare(rows: list[dict[str, Any]], names: list[str]) -> str:
    headers = ["write / read MB/s", "partitions", "Kafka"]
    for n in names:
        headers += [f"ours {n}", "Kafka / ours"]
    body = []
    for r in rows:
        w = r["workload"]
        line = [f"{w['write_mbps']:g} / {w['read_mbps']:g}", str(w["partitions"]),
                f"{r['kafka']['total']:,.0f}"]  # fmt: skip
        for n in names:
            line += [f"{r[n]['total']:,.0f}", f"{r['kafka']['total'] / r[n]['total']:.1f}x"]
        body.append(line)
    return table(headers, body, right=tuple(range(len(headers))))


def format_categories(ours: dict[str, Estimate], kafka: Estimate) -> str:
    """One workload's totals by category, each assumption set next to Kafka."""
    names = list(ours)
    headers = ["USD/month", "Kafka", *[f"ours {n}" for n in names]]
    body = []
    for key in (*CATEGORIES, "total"):
        body.append([key, f"{kafka.totals[key]:,.0f}",
                     *[f"{ours[n].totals[key]:,.0f}" for n in names]])  # fmt: skip
    return table(headers, body, right=tuple(range(1, len(headers))))


def report(
    path: Path, workloads: list[Workload], prices: PriceTable, base: Assumptions
) -> str:
    sets = scenarios(base, load_inputs(path))
    names = list(sets)
    rows = compare([*workloads, AUTOMQ_WORKLOAD], prices, sets)
    out = [
        f"Before / after zone-aware clients, fed with {path.name} (bench/zones.py); "
        f"region {prices.region}; USD per month (730 h)",
        "",
        format_compare(rows, names),
        "",
        f"last row: AutoMQ's published workload (1 GiB/s in and out, 256 partitions, 72 h): "
        f"AutoMQ ${AUTOMQ_USD_MONTH:,}/month",
    ]
    after = sets["after"]
    if after.ours.ddb_billing == "on_demand":
        # the stacks' other capacity mode for the metadata table (tenant knob metadata_billing)
        prov = after.model_copy(
            update={"ours": after.ours.model_copy(update={"ddb_billing": "provisioned"})}
        )
        small, automq = (price_ours(w, prices, prov).totals["total"]
                         for w in (workloads[0], AUTOMQ_WORKLOAD))  # fmt: skip
        verdict = "met" if automq <= AUTOMQ_USD_MONTH else "not met"
        out.append(
            f"after, with the metadata table's capacity provisioned (--set "
            f"ours.ddb_billing=provisioned): {small:,.0f} at {workloads[0].write_mbps:g} MB/s, "
            f"{automq:,.0f} at AutoMQ's workload ({verdict})"
        )
    for w in (workloads[0], AUTOMQ_WORKLOAD):
        ours = {n: price_ours(w, prices, a) for n, a in sets.items()}
        out += ["", f"== {w.write_mbps:g} MB/s write, {w.read_mbps:g} MB/s read, "
                    f"{w.partitions} partitions: by category ==",
                format_categories(ours, price_kafka(w, prices, sets["before"]))]  # fmt: skip
    out += ["", "== measured inputs =="]
    for label, values in load_inputs(path).items():
        out += [f"{label}: " + ", ".join(f"{k}={v}" for k, v in values.items())]
    return "\n".join(out)
