"""Text tables and JSON for cost estimates: every line, every assumption, every price."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from pydantic import BaseModel

from broker_service.ops.cost.model import CATEGORIES, Assumptions, Estimate, Workload
from broker_service.ops.cost.prices import PriceTable


def table(headers: Sequence[str], rows: Sequence[Sequence[Any]], right: Sequence[int] = ()) -> str:
    """A plain text table; columns in ``right`` are right-aligned (numbers)."""
    cells = [[str(h) for h in headers]] + [[str(c) for c in row] for row in rows]
    widths = [max(len(r[i]) for r in cells) for i in range(len(headers))]

    def fmt(row: list[str]) -> str:
        return "  ".join(
            c.rjust(widths[i]) if i in right else c.ljust(widths[i]) for i, c in enumerate(row)
        ).rstrip()

    out = [fmt(cells[0]), "  ".join("-" * w for w in widths)]
    out += [fmt(r) for r in cells[1:]]
    return "\n".join(out)


def usd(x: float) -> str:
    return f"{x:,.2f}"


def _qty(x: float) -> str:
    return f"{x:,.0f}" if abs(x) >= 100 else f"{x:,.3g}"


def _unit_price(usd_value: float, per: float, unit: str) -> str:
    per_text = "" if per == 1 else f"{per:,.0f} "
    return f"${usd_value:g} / {per_text}{unit}"


def format_lines(estimate: Estimate) -> str:
    rows = [
        (
            line.category,
            line.item,
            _qty(line.quantity),
            _unit_price(line.unit_price_usd, line.price_per, line.unit),
            usd(line.usd_month),
            line.basis,
        )
        for line in estimate.lines
    ]
    return table(
        ("category", "item", "quantity", "unit price", "USD/month", "basis"), rows, right=(2, 4)
    )


def format_totals(ours: Estimate, kafka: Estimate) -> str:
    to, tk = ours.totals, kafka.totals
    rows = []
    for key in (*CATEGORIES, "total"):
        ratio = f"{tk[key] / to[key]:.1f}x" if to[key] > 0 else "-"
        rows.append((key, usd(to[key]), usd(tk[key]), ratio))
    return table(("USD/month", "ours", "kafka", "kafka/ours"), rows, right=(1, 2, 3))


def format_sizing(estimate: Estimate) -> str:
    return ", ".join(f"{k} {v}" for k, v in estimate.sizing.items())


def _assumption_rows(model: BaseModel, prefix: str) -> list[tuple[str, str, str]]:
    rows = []
    for name, field in type(model).model_fields.items():
        value = getattr(model, name)
        text = f"{value:.4g}" if isinstance(value, float) else str(value)
        rows.append((f"{prefix}.{name}", text, field.description or ""))
    return rows


def format_assumptions(assumptions: Assumptions, workload: Workload | None = None) -> str:
    rows = []
    if workload is not None:
        rows += _assumption_rows(workload, "workload")
    rows += _assumption_rows(assumptions.ours, "ours")
    rows += _assumption_rows(assumptions.kafka, "kafka")
    return table(("assumption", "value", "why / where from"), rows)


def format_prices(prices: PriceTable) -> str:
    rows: list[tuple[str, str, str, str]] = []
    for name in type(prices.prices).model_fields:
        p = getattr(prices.prices, name)
        rows.append(
            (
                name,
                _unit_price(p.usd, p.per, p.unit),
                p.source,
                p.confirmed_by or "(AWS public price list; not re-confirmed)",
            )
        )
    for name, inst in sorted(prices.instances.items()):
        rows.append(
            (
                f"ec2 {name}",
                f"${inst.usd_per_hour:g} / instance-hour",
                inst.source,
                f"{inst.vcpu} vCPU, {inst.memory_gib:g} GiB, network baseline "
                f"{inst.network_baseline_gbps:g} Gbps, EBS baseline "
                f"{inst.ebs_baseline_mbps:g} MB/s",
            )
        )
    head = f"prices: {prices.region}, {prices.currency}, as of {prices.as_of}. {prices.note}"
    return head + "\n" + table(("price", "value", "source", "confirmed by / notes"), rows)


def format_report(
    workload: Workload,
    ours: Estimate,
    kafka: Estimate,
    prices: PriceTable,
    assumptions: Assumptions,
) -> str:
    w = workload
    parts = [
        f"Workload: write {w.write_mbps:g} MB/s, read {w.read_mbps:g} MB/s, retention "
        f"{w.retention_h:g} h, {w.partitions} partitions; region {prices.region}; "
        "USD per month (730 h), on-demand list prices",
        "",
        "== this system (stateless brokers on Fargate, S3, DynamoDB, Lambda, NLB) ==",
        "sizing: " + format_sizing(ours),
        format_lines(ours),
        "",
        f"== Apache Kafka on EC2 + EBS (RF {assumptions.kafka.replication_factor}) ==",
        "sizing: " + format_sizing(kafka),
        format_lines(kafka),
        "",
        "== totals ==",
        format_totals(ours, kafka),
        "",
        "== assumptions ==",
        format_assumptions(assumptions, workload),
        "",
        "== " + format_prices(prices),
        "",
        "Not priced (same for both or small): internet egress, NAT, ECR, EC2 root volumes, "
        "DynamoDB storage (< 1 GB of metadata), CloudWatch logs, monitoring of Kafka, "
        "engineering time.",
    ]
    return "\n".join(parts)


def format_profile_report(
    ours: Estimate, kafka: Estimate, prices: PriceTable, assumptions: Assumptions, title: str
) -> str:
    return "\n".join(
        [
            title,
            "",
            "== this system: every hour sized by the autoscaler ==",
            "sizing: " + format_sizing(ours),
            format_lines(ours),
            "",
            "== Apache Kafka: brokers sized for the peak hour ==",
            "sizing: " + format_sizing(kafka),
            format_lines(kafka),
            "",
            "== totals ==",
            format_totals(ours, kafka),
            "",
            "== assumptions ==",
            format_assumptions(assumptions),
            "",
            "== " + format_prices(prices),
        ]
    )


def sweep_rows(results: Sequence[tuple[Workload, Estimate, Estimate]]) -> list[dict[str, Any]]:
    rows = []
    for w, ours, kafka in results:
        to, tk = ours.totals, kafka.totals
        row: dict[str, Any] = {
            "write_mbps": w.write_mbps,
            "read_mbps": w.read_mbps,
            "ours_brokers": ours.sizing["brokers"],
            "kafka_brokers": kafka.sizing["brokers"],
        }
        for key in (*CATEGORIES, "total"):
            row[f"ours_{key}"] = round(to[key], 2)
            row[f"kafka_{key}"] = round(tk[key], 2)
        rows.append(row)
    return rows


def format_sweep(rows: Sequence[dict[str, Any]]) -> str:
    headers = ["write MB/s", "read MB/s", "brokers ours/kafka"]
    for key in (*CATEGORIES, "total"):
        headers.append(f"{key} ours / kafka")
    headers.append("kafka/ours")
    body = []
    for r in rows:
        line = [
            f"{r['write_mbps']:g}",
            f"{r['read_mbps']:g}",
            f"{r['ours_brokers']} / {r['kafka_brokers']}",
        ]
        for key in (*CATEGORIES, "total"):
            line.append(f"{r[f'ours_{key}']:,.0f} / {r[f'kafka_{key}']:,.0f}")
        line.append(f"{r['kafka_total'] / r['ours_total']:.1f}x")
        body.append(line)
    return table(headers, body, right=tuple(range(len(headers))))


def estimate_json(workload: Workload, ours: Estimate, kafka: Estimate) -> dict[str, Any]:
    def one(e: Estimate) -> dict[str, Any]:
        return {
            "sizing": e.sizing,
            "totals": e.totals,
            "lines": [line.model_dump() for line in e.lines],
        }

    return {"workload": workload.model_dump(), "ours": one(ours), "kafka": one(kafka)}
