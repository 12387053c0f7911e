"""``python -m broker_service cost``: this system's AWS bill next to Apache Kafka's."""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import Any

from pydantic import ValidationError

from broker_service.ops.cost.model import (
    Assumptions,
    Estimate,
    Workload,
    apply_overrides,
    diurnal_profile,
    price_kafka,
    price_ours,
    price_profile,
)
from broker_service.ops.cost.prices import PriceTable, load_prices
from broker_service.ops.cost.report import (
    estimate_json,
    format_assumptions,
    format_prices,
    format_profile_report,
    format_report,
    format_sweep,
    sweep_rows,
)

DEFAULT_SWEEP = (80, 160, 320, 640, 960, 1200)


def _price(w: Workload, prices: PriceTable, a: Assumptions) -> tuple[Workload, Estimate, Estimate]:
    return w, price_ours(w, prices, a), price_kafka(w, prices, a)


def run(args: argparse.Namespace) -> int:
    try:
        prices = load_prices(args.region, args.prices)
        assumptions = Assumptions()
        if args.zone_aware:
            assumptions.ours.cross_az_produce_fraction = 0.0
            assumptions.ours.cross_az_consume_fraction = 0.0
            assumptions.ours.zone_aware = True  # with the forward objects' and replicas' lines
        if args.kafka_instance:
            assumptions.kafka.instance_type = args.kafka_instance
        assumptions = apply_overrides(assumptions, args.set or [])

        def workload(write: float) -> Workload:
            read = (
                args.read_mbps
                if args.read_mbps is not None and not args.sweep
                else write * args.read_ratio
            )
            return Workload(
                write_mbps=write,
                read_mbps=read,
                retention_h=args.retention_h,
                partitions=args.partitions,
            )

        if args.profile:
            return _run_profile(args, prices, assumptions)
        if args.measured:
            from broker_service.ops.cost.measured import report

            points = [float(x) for x in args.sweep_points.split(",")]
            print(report(args.measured, [workload(x) for x in points], prices, assumptions))
            return 0
        if args.sweep:
            points = [float(x) for x in args.sweep_points.split(",")]
            results = [_price(workload(x), prices, assumptions) for x in points]
        else:
            results = [_price(workload(args.write_mbps), prices, assumptions)]
    except (ValueError, ValidationError, FileNotFoundError) as exc:
        print(f"cost: {exc}", file=sys.stderr)
        return 2

    if args.json:
        doc: dict[str, Any] = {
            "region": prices.region,
            "assumptions": assumptions.model_dump(),
            "prices": prices.model_dump(),
        }
        if args.sweep:
            doc["sweep"] = sweep_rows(results)
            doc["estimates"] = [estimate_json(*r) for r in results]
        else:
            doc.update(estimate_json(*results[0]))
        json.dump(doc, sys.stdout, indent=2)
        print()
        return 0
    if args.sweep:
        w0 = results[0][0]
        print(
            f"Sweep: read = {args.read_ratio:g} x write, retention {w0.retention_h:g} h, "
            f"{w0.partitions} partitions; region {prices.region}; USD per month (730 h), "
            "on-demand list prices"
        )
        print(format_sweep(sweep_rows(results)))
        print()
        print("== assumptions ==")
        print(format_assumptions(assumptions))
        print()
        print("== " + format_prices(prices))
    else:
        print(format_report(*results[0], prices, assumptions))
    return 0


def _run_profile(args: argparse.Namespace, prices: PriceTable, assumptions: Assumptions) -> int:
    low, sep, high = args.profile.partition(":")
    if not sep:
        raise ValueError(f"--profile {args.profile!r}: expected MIN:MAX write MB/s, e.g. 80:1200")
    hourly = diurnal_profile(float(low), float(high))
    ours, kafka = price_profile(
        hourly, args.read_ratio, args.retention_h, args.partitions, prices, assumptions
    )
    if args.json:
        doc = {
            "region": prices.region,
            "hourly_write_mbps": hourly,
            "read_ratio": args.read_ratio,
            "retention_h": args.retention_h,
            "assumptions": assumptions.model_dump(),
            "prices": prices.model_dump(),
            "ours": {
                "sizing": ours.sizing,
                "totals": ours.totals,
                "lines": [x.model_dump() for x in ours.lines],
            },
            "kafka": {
                "sizing": kafka.sizing,
                "totals": kafka.totals,
                "lines": [x.model_dump() for x in kafka.lines],
            },
        }
        json.dump(doc, sys.stdout, indent=2)
        print()
        return 0
    title = (
        f"Daily profile: write {float(low):g} -> {float(high):g} -> {float(low):g} MB/s "
        f"(cosine over 24 h, mean {sum(hourly) / len(hourly):.0f}), read = "
        f"{args.read_ratio:g} x write, retention {args.retention_h:g} h, "
        f"{args.partitions} partitions; region {prices.region}; USD per month (730 h)"
    )
    print(format_profile_report(ours, kafka, prices, assumptions, title))
    return 0


def add_parser(sub: argparse._SubParsersAction) -> None:  # type: ignore[type-arg]
    c = sub.add_parser(
        "cost",
        help="price this system on AWS next to Apache Kafka on EC2 + EBS",
        description="Monthly AWS cost of a steady workload on this system (Fargate brokers, "
        "S3, DynamoDB, Lambda, NLB) and on Apache Kafka (EC2 + EBS gp3, RF 3), split into "
        "storage / compute / network / other, with every assumption and price printed. "
        "See docs/COST.md.",
    )
    c.add_argument("--write-mbps", type=float, default=80, help="produce MB/s (default 80)")
    c.add_argument(
        "--read-mbps",
        type=float,
        help="consume MB/s (default: --read-ratio x write; --sweep and --profile use the ratio)",
    )
    c.add_argument(
        "--read-ratio",
        type=float,
        default=2.0,
        help="read = ratio x write when --read-mbps is not given (default 2)",
    )
    c.add_argument("--retention-h", type=float, default=72, help="retention hours (default 72)")
    c.add_argument("--partitions", type=int, default=96, help="partitions in all (default 96)")
    c.add_argument(
        "--region",
        default="us-east-1",
        help="price file shipped for this region (default us-east-1)",
    )
    c.add_argument(
        "--prices", type=Path, help="a price file of the same shape (overrides --region)"
    )
    c.add_argument(
        "--kafka-instance",
        help="Kafka broker instance type (r6i.xlarge, m5.2xlarge, or any in the price file)",
    )
    c.add_argument(
        "--zone-aware",
        action="store_true",
        help="assume clients produce to and fetch from brokers in their own AZ "
        "(no cross-AZ client traffic for this system)",
    )
    c.add_argument(
        "--set",
        action="append",
        metavar="GROUP.NAME=VALUE",
        help="override an assumption, e.g. ours.target_write_mbps_per_broker=60",
    )
    c.add_argument(
        "--sweep", action="store_true", help="price a range of write rates (read = ratio x write)"
    )
    c.add_argument(
        "--sweep-points",
        default=",".join(str(x) for x in DEFAULT_SWEEP),
        help="write MB/s points of --sweep (default %(default)s)",
    )
    c.add_argument(
        "--profile",
        metavar="MIN:MAX",
        help="a daily load from MIN to MAX write MB/s and back: this system "
        "autoscaled hour by hour, Kafka sized for the peak",
    )
    c.add_argument(
        "--measured",
        type=Path,
        metavar="FILE",
        help="a bench/zones.py result: the before/after table of zone-aware clients with "
        "its measured inputs, over the --sweep-points and AutoMQ's 1 GiB/s workload",
    )
    c.add_argument("--json", action="store_true", help="print JSON instead of tables")
