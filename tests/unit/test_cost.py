"""The cost model (`python -m broker_service cost`): the CLI as a user runs it, numbers checked
against hand calculations from the price file, and the model's shape (monotonic, linear in
prices, every assumption printed)."""

from __future__ import annotations

import json
import math
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from broker_service.ops.cost import Assumptions, Workload, load_prices, price_kafka, price_ours
from broker_service.ops.cost.model import (
    CATEGORIES,
    KafkaAssumptions,
    OursAssumptions,
    compaction_levels,
    diurnal_profile,
    wal_capacity_mbps,
    wal_object_bytes,
)

REPO = Path(__file__).resolve().parents[2]
PRICE_FILE = REPO / "broker_service" / "ops" / "cost" / "prices_us_east_1.json"
HOURS = 730
SECONDS = HOURS * 3600
GIB = 2**30


def run_cost(*args: str, check: bool = True) -> subprocess.CompletedProcess[str]:
    proc = subprocess.run(
        [sys.executable, "-m", "broker_service", "cost", *args],
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=60,
    )
    if check:
        assert proc.returncode == 0, proc.stderr
    return proc


def cost_json(*args: str) -> dict[str, Any]:
    return json.loads(run_cost(*args, "--json").stdout)


def price(key: str) -> float:
    """A price straight from the data file (USD per unit), not through the code."""
    entry = json.loads(PRICE_FILE.read_text())["prices"][key]
    return entry["usd"] / entry["per"]


def line(estimate: dict[str, Any], item: str) -> dict[str, Any]:
    matches = [x for x in estimate["lines"] if x["item"] == item]
    assert len(matches) == 1, [x["item"] for x in estimate["lines"]]
    return matches[0]


def test_cli_prints_the_table_every_assumption_and_every_price() -> None:
    out = run_cost(
        "--write-mbps", "80", "--read-mbps", "160", "--retention-h", "72", "--region", "us-east-1"
    ).stdout
    for heading in (
        "== this system",
        "== Apache Kafka",
        "== totals ==",
        "== assumptions ==",
        "== prices: us-east-1",
    ):
        assert heading in out
    for name in OursAssumptions.model_fields:
        assert f"ours.{name} " in out, name
    for name in KafkaAssumptions.model_fields:
        assert f"kafka.{name} " in out, name
    prices = json.loads(PRICE_FILE.read_text())
    for key, entry in prices["prices"].items():
        assert key in out, key
        assert entry["source"] in out, key
    totals = out.split("== totals ==")[1].split("==")[0]
    for row in ("storage", "compute", "network", "other", "total"):
        assert f"\n{row} " in totals


def test_single_workload_matches_hand_calculation() -> None:
    doc = cost_json("--write-mbps", "80", "--read-mbps", "160", "--retention-h", "72")
    ours, kafka = doc["ours"], doc["kafka"]
    written_gib = 80e6 * SECONDS / GIB

    # ours: brokers = max(3, ceil(80/102.3 + 160/91.8)) = 3 tasks of 1 vCPU / 4 GB all month
    assert ours["sizing"]["brokers"] == 3
    assert line(ours, "Fargate vCPU")["usd_month"] == pytest.approx(
        3 * 1 * HOURS * price("fargate_vcpu_hour")
    )
    assert line(ours, "Fargate memory")["usd_month"] == pytest.approx(
        3 * 4 * HOURS * price("fargate_gb_hour")
    )
    # 72 h retention + 1 h compaction grace of 80 MB/s, under 50 TB: first tier only
    stored_gib = 80e6 * 73 * 3600 / GIB
    assert line(ours, "S3 Standard storage (first 50 TB)")["usd_month"] == pytest.approx(
        stored_gib * price("s3_standard_gb_month_first_50tb")
    )
    # 26.67 MB/s per broker: one WAL object per cycle of 50 ms linger + a 50 ms + S / 85 MB/s
    # commit, S = 26.67 MB/s x cycle = 3.89 MB < 12 MiB; so cycles of (1 - 26.67/85) / 0.1 s
    r = 80e6 / 3
    commits = 3 * (1 - r / 85e6) / 0.1 * SECONDS
    assert line(ours, "S3 PUT: WAL objects")["quantity"] == pytest.approx(commits)
    assert line(ours, "S3 PUT: WAL objects")["usd_month"] == pytest.approx(
        commits * price("s3_put_requests")
    )
    # each commit (the lean commit): the broker check, the object record and the log entry
    # packing 96/3 ranges of 16 bytes (under 1 KB): 3 items of 1 KB, 2 WRU each
    # (transactional); each range folded into its stream's chunks later for 0.1 WRU
    assert line(ours, "DynamoDB WRU: WAL commits")["usd_month"] == pytest.approx(
        commits * 2 * 3 * price("dynamodb_write_request_units")
    )
    assert line(ours, "DynamoDB WRU: range folds")["usd_month"] == pytest.approx(
        commits * 32 * 0.1 * price("dynamodb_write_request_units")
    )
    # clients: 2/3 of produced and consumed bytes cross AZs, at $0.01 each way
    assert line(ours, "cross-AZ: producers")["usd_month"] == pytest.approx(
        written_gib * 2 / 3 * price("cross_az_gb")
    )
    assert line(ours, "cross-AZ: consumers")["usd_month"] == pytest.approx(
        2 * written_gib * 2 / 3 * price("cross_az_gb")
    )

    # Kafka: out per cluster = 160 + 2 x 80 MB/s; r6i.xlarge baseline 1.5625 Gbps = 195.3 MB/s
    # at 60 % -> ceil(320 / 117.2) = 3 brokers
    assert kafka["sizing"]["brokers"] == 3
    assert line(kafka, "EC2 r6i.xlarge brokers")["usd_month"] == pytest.approx(3 * HOURS * 0.252)
    retained_gib = 80e6 * 72 * 3600 / GIB
    assert line(kafka, "EBS gp3 capacity")["usd_month"] == pytest.approx(
        retained_gib * 3 * 1.3 * price("ebs_gp3_gb_month")
    )
    assert line(kafka, "cross-AZ: replication")["usd_month"] == pytest.approx(
        written_gib * 2 * price("cross_az_gb")
    )

    for estimate in (ours, kafka):
        for category in CATEGORIES:
            assert estimate["totals"][category] == pytest.approx(
                sum(x["usd_month"] for x in estimate["lines"] if x["category"] == category)
            )
        assert estimate["totals"]["total"] == pytest.approx(
            sum(estimate["totals"][c] for c in CATEGORIES)
        )


def test_wal_object_size_follows_the_flush_rules() -> None:
    # 50 ms linger, 12 MiB flush bytes, 15 MiB cap, a commit of 50 ms + the upload at 85 MB/s,
    # 2 flushes in flight (the second takes full groups only)
    a = OursAssumptions()
    f = 12 * 2**20
    # time-driven: S = rate x (0.05 + 0.05 + S / 85e6)
    assert wal_object_bytes(10, a) == pytest.approx(10e6 * 0.1 / (1 - 10 / 85))
    assert wal_object_bytes(40, a) == pytest.approx(40e6 * 0.1 / (1 - 40 / 85))
    assert wal_object_bytes(78, a) == pytest.approx(f)  # a sized broker: full groups
    assert wal_object_bytes(200, a) == pytest.approx(f)  # faster than one upload
    # two slots, each committing 12 MiB in 0.05 s + 12 MiB / 85 MB/s
    assert wal_capacity_mbps(a) == pytest.approx(2 * f / (0.05 + f / 85e6) / 1e6)
    one = a.model_copy(update={"wal_flushes_in_flight": 1})
    # what arrives during a commit of 12 MiB forms the next object
    assert wal_object_bytes(78, one) == pytest.approx(78e6 * (0.05 + f / 85e6))
    assert wal_capacity_mbps(one) == pytest.approx(f / (0.05 + f / 85e6) / 1e6)


def test_costs_never_fall_as_throughput_rises() -> None:
    prices, assumptions = load_prices(), Assumptions()
    previous: dict[str, dict[str, float]] | None = None
    for write in range(10, 1510, 10):
        w = Workload(write_mbps=write, read_mbps=2 * write, retention_h=72)
        now = {
            "ours": price_ours(w, prices, assumptions).totals,
            "kafka": price_kafka(w, prices, assumptions).totals,
        }
        if previous is not None:
            for system in now:
                for key, value in now[system].items():
                    # a WAL object's upload grows with it, so at a higher rate a broker's
                    # flush cycles are a little longer and fewer: the request lines may
                    # dip a few percent, never the whole bill
                    slack = 0.05 * previous[system][key] if key == "other" else 1e-6
                    assert value >= previous[system][key] - slack, (system, key, write)
        previous = now


def test_sweep_cli_covers_80_to_1200_and_is_monotonic() -> None:
    doc = cost_json("--sweep")
    rows = doc["sweep"]
    assert [r["write_mbps"] for r in rows] == [80, 160, 320, 640, 960, 1200]
    assert all(r["read_mbps"] == 2 * r["write_mbps"] for r in rows)
    for key in ("ours_total", "kafka_total", "ours_brokers", "kafka_brokers"):
        values = [r[key] for r in rows]
        assert values == sorted(values), key
    text = run_cost("--sweep").stdout
    assert "== assumptions ==" in text and "== prices: us-east-1" in text


def test_prices_come_only_from_the_price_file(tmp_path: Path) -> None:
    doubled = json.loads(PRICE_FILE.read_text())
    for entry in doubled["prices"].values():
        entry["usd"] *= 2
    for inst in doubled["instances"].values():
        inst["usd_per_hour"] *= 2
    path = tmp_path / "prices_doubled.json"
    path.write_text(json.dumps(doubled))
    base = cost_json("--write-mbps", "300")
    twice = cost_json("--write-mbps", "300", "--prices", str(path))
    for system in ("ours", "kafka"):
        assert twice[system]["totals"]["total"] == pytest.approx(
            2 * base[system]["totals"]["total"]
        )

    missing = run_cost("--region", "eu-west-9", check=False)
    assert missing.returncode == 2 and "no price file for region 'eu-west-9'" in missing.stderr


def test_assumptions_can_be_overridden_and_are_validated() -> None:
    doc = cost_json("--write-mbps", "80", "--set", "ours.target_write_mbps_per_broker=20")
    # consume keeps control/sizing.py's figure for the task: 91.8 MB/s
    assert doc["ours"]["sizing"]["brokers"] == math.ceil(80 / 20 + 160 / 91.8)
    assert doc["assumptions"]["ours"]["target_write_mbps_per_broker"] == 20

    zone = cost_json("--write-mbps", "80", "--zone-aware")
    assert line(zone["ours"], "cross-AZ: producers")["usd_month"] == 0
    assert line(zone["ours"], "cross-AZ: consumers")["usd_month"] == 0

    for bad in ("ours.no_such_thing=1", "ours.read_cache_hit_fraction=2", "nonsense"):
        proc = run_cost("--set", bad, check=False)
        assert proc.returncode == 2, bad
        assert proc.stderr.startswith("cost: "), proc.stderr


def test_daily_profile_autoscales_ours_and_sizes_kafka_for_the_peak() -> None:
    hourly = diurnal_profile(80, 1200)
    assert min(hourly) == 80 and max(hourly) == pytest.approx(1200)
    assert sum(hourly) / 24 == pytest.approx(640)
    doc = cost_json("--profile", "80:1200")
    prices, assumptions = load_prices(), Assumptions()
    peak = Workload(write_mbps=1200, read_mbps=2400, retention_h=72)
    low = Workload(write_mbps=80, read_mbps=160, retention_h=72)
    assert doc["kafka"]["totals"]["compute"] == pytest.approx(
        price_kafka(peak, prices, assumptions).totals["compute"]
    )
    ours_compute = doc["ours"]["totals"]["compute"]
    assert price_ours(low, prices, assumptions).totals["compute"] < ours_compute
    assert ours_compute < price_ours(peak, prices, assumptions).totals["compute"]
    # bytes are the daily mean: 640 MB/s x 2/3 crossing AZs
    assert line(doc["ours"], "cross-AZ: producers")["usd_month"] == pytest.approx(
        640e6 * SECONDS / GIB * 2 / 3 * price("cross_az_gb")
    )


# -- issue 19: what the model missed, zone-aware lines, measured inputs --------------------
def _lines(est: Any) -> dict[str, Any]:
    return {line.item: line for line in est.lines}


def test_compaction_reads_each_wal_object_once_and_merges_in_levels() -> None:
    prices = load_prices("us-east-1")
    w = Workload(write_mbps=80, read_mbps=160, retention_h=72, partitions=96)
    a = OursAssumptions()
    object_bytes = wal_object_bytes(80 / 3, a)
    written_gib = 80e6 * SECONDS / GIB
    lines = _lines(price_ours(w, prices, Assumptions()))
    # 640-range merges of ~108 KB ranges would reach 64 MiB in one merge, nothing merged
    # again, with a read buffer holding 640 WAL objects
    unbounded = compaction_levels(object_bytes / 32, a)
    assert unbounded.puts_per_gib == pytest.approx(1024 / 64)
    assert unbounded.gets_per_gib == pytest.approx(0)
    # the compaction Lambda's 1,257 MiB hold ~340 of those 3.9 MB WAL objects: first merges
    # of ~41 MB (each WAL object read once), merged again (one GET each) up to 64 MiB
    levels = compaction_levels(object_bytes / 32, a, object_bytes)
    window = a.compaction_read_buffer_mib * 1024 * 1024 / object_bytes
    first = object_bytes / 32 * window
    assert 35e6 < first < 45e6
    assert levels.puts_per_gib == pytest.approx(GIB / first + 1024 / 64)
    assert levels.gets_per_gib == pytest.approx(GIB / first)
    # 80-range merges (the limit while swaps marked each old object): 8.7 MB objects, merged
    # again up to 64 MiB
    eighty = compaction_levels(object_bytes / 32, OursAssumptions(compaction_ranges_per_swap=80),
                               object_bytes)
    assert 1 < eighty.puts_per_gib * 64 / 1024 < 10
    assert eighty.gets_per_gib == pytest.approx(eighty.puts_per_gib - 1024 / 64)
    # the swaps' WRU: each WAL object retired once, a swap per new object and a little per
    # range it replaces; nothing per (range, old object) pair any more
    swaps = lines["DynamoDB WRU: compaction swaps"]
    ranges_per_gib = GIB / (object_bytes / 32)
    want = (
        GIB / object_bytes * a.ddb_gc_wru_per_object
        + levels.puts_per_gib * (a.ddb_swap_wru_fixed + a.ddb_gc_wru_per_object)
        + (ranges_per_gib + levels.gets_per_gib) * a.ddb_swap_wru_per_range
    )
    assert swaps.quantity == pytest.approx(written_gib * want)
    # ~5.6 WRU per WAL object in all (2 to retire it); ~70 when a swap marked every old object
    assert want * object_bytes / GIB < 8
    gets = lines["S3 GET: compaction input"]
    assert gets.quantity == pytest.approx(written_gib * (GIB / object_bytes + levels.gets_per_gib))
    puts = lines["S3 PUT: compaction output"]
    assert puts.quantity == pytest.approx(written_gib * levels.puts_per_gib)
    # before (one GET per range of a WAL object): the issue's ~$776/month at 80 MB/s (~$671
    # since the model counts each commit's upload time: fewer, larger WAL objects)
    per_range = Assumptions(ours=OursAssumptions(compaction_gets_per_wal_object=32))
    before = _lines(price_ours(w, prices, per_range))["S3 GET: compaction input"]
    assert 600 < before.usd_month - gets.usd_month < 850
    # fewer ranges per merge mean more levels: more objects written and read again
    narrow = compaction_levels(object_bytes / 32, OursAssumptions(compaction_ranges_per_swap=30),
                               object_bytes)
    assert narrow.puts_per_gib > levels.puts_per_gib


def test_zone_aware_adds_forwarded_bytes_to_wal_objects_and_replica_reads() -> None:
    prices = load_prices("us-east-1")
    w = Workload(write_mbps=80, read_mbps=160, retention_h=72, partitions=96)
    classic = _lines(price_ours(w, prices, Assumptions()))
    zoned_a = Assumptions(ours=OursAssumptions(
        zone_aware=True, cross_az_produce_fraction=0.0, cross_az_consume_fraction=0.0,
        inter_broker_bytes_per_gib_written=0.002))  # fmt: skip
    zoned = _lines(price_ours(w, prices, zoned_a))
    assert "S3 PUT: zone forward objects" not in classic
    # the forwarded batches (2/3 of a broker's 26.7 MB/s) ride in its WAL flushes: no object
    # of their own, WAL objects of (1 + 2/3) x 26.7 MB/s = 44.4 MB/s x the cycle, whose
    # upload is longer than without them (9.32 MB objects, 4.77 a second, against 3.89 MB
    # and 6.86 a second)
    assert "S3 PUT: zone forward objects" not in zoned
    wal_puts = zoned["S3 PUT: WAL objects"].quantity
    zoned_rate = 80e6 / 3 * 5 / 3
    assert wal_puts == pytest.approx(3 * (1 - zoned_rate / 85e6) / 0.1 * SECONDS)
    assert wal_puts < classic["S3 PUT: WAL objects"].quantity
    assert "9.32 MB objects" in zoned["S3 PUT: WAL objects"].basis
    assert zoned["S3 GET: zone replica reads"].quantity == pytest.approx(2 * wal_puts)
    assert zoned["S3 GET: forwarded batches (leaders)"].quantity == pytest.approx(2 * wal_puts)
    assert zoned["cross-AZ: producers"].usd_month == 0
    assert zoned["cross-AZ: broker to broker"].quantity == pytest.approx(
        80e6 * SECONDS / GIB * 0.002
    )
    # the layout before: a forward object of their own per cycle, leaders' GETs of those
    before = _lines(price_ours(w, prices, Assumptions(
        ours=zoned_a.ours.model_copy(update={"zone_forward_in_wal": False}))))  # fmt: skip
    forward = before["S3 PUT: zone forward objects"].quantity
    forward_rate = 80e6 / 3 * 2 / 3  # its own flush cycle, at its own rate
    assert forward == pytest.approx(3 * (1 - forward_rate / 85e6) / 0.1 * SECONDS)
    assert before["S3 GET: forwarded batches (leaders)"].quantity == pytest.approx(2 * forward)


def test_packed_commits_write_o1_items_per_commit() -> None:
    prices = load_prices("us-east-1")
    w = Workload(write_mbps=80, read_mbps=160, retention_h=72, partitions=96)
    per_range_a = Assumptions(ours=OursAssumptions(ddb_commit_layout="item_per_range"))
    per_range_lines = _lines(price_ours(w, prices, per_range_a))
    per_range = per_range_lines["DynamoDB WRU: WAL commits"]
    packed_lines = _lines(price_ours(w, prices, Assumptions()))  # the lean commit: the default
    packed = packed_lines["DynamoDB WRU: WAL commits"]
    assert packed.quantity == pytest.approx(per_range.quantity * 3 / (3 + 32))
    # the ranges are folded into their streams' chunks later: ~0.1 WRU each, only when packed
    commits = per_range.quantity / (2 * (3 + 32))
    assert packed_lines["DynamoDB WRU: range folds"].quantity == pytest.approx(commits * 32 * 0.1)
    assert per_range_lines["DynamoDB WRU: range folds"].quantity == 0


def test_provisioned_metadata_capacity_prices_each_unit_per_capacity_hour() -> None:
    """ddb_billing=provisioned (the tenant knob metadata_billing): the same request units,
    each priced as a capacity-unit hour / 3600 at the target utilization."""
    prices = load_prices("us-east-1")
    w = Workload(write_mbps=1073.74, read_mbps=1073.74, retention_h=72, partitions=256)
    on_demand = _lines(price_ours(w, prices, Assumptions()))
    provisioned = _lines(price_ours(
        w, prices, Assumptions(ours=OursAssumptions(ddb_billing="provisioned"))
    ))  # fmt: skip
    wcu_hour = prices.prices.dynamodb_write_capacity_unit_hour.usd
    rcu_hour = prices.prices.dynamodb_read_capacity_unit_hour.usd
    for item, hour in [("DynamoDB WRU: WAL commits", wcu_hour),
                       ("DynamoDB WRU: compaction swaps", wcu_hour),
                       ("DynamoDB RRU: broker checks", rcu_hour)]:  # fmt: skip
        a, b = on_demand[item], provisioned[item]
        assert b.quantity == pytest.approx(a.quantity)
        assert b.usd_month == pytest.approx(b.quantity * hour / 3600 / 0.7)
        assert b.usd_month < a.usd_month
    # nothing else changes
    put = "S3 PUT: WAL objects"
    assert provisioned[put].usd_month == on_demand[put].usd_month


def test_measured_before_after_table(tmp_path: Path) -> None:
    measured = tmp_path / "zones.json"
    measured.write_text(json.dumps({"cost_inputs": {
        "before": {"ours.cross_az_produce_fraction": 0.675,
                   "ours.cross_az_consume_fraction": 0.674},
        "after": {"ours.cross_az_produce_fraction": 0.0003,
                  "ours.cross_az_consume_fraction": 0.0001,
                  "ours.inter_broker_bytes_per_gib_written": 0.002},
    }}))  # fmt: skip
    out = run_cost("--measured", str(measured), "--sweep-points", "80").stdout
    assert "ours before" in out and "ours zoned clients" in out and "ours after" in out
    assert "1073.74 / 1073.74" in out  # AutoMQ's workload
    row = next(line for line in out.splitlines() if line.strip().startswith("80 / 160"))
    cells = row.split()  # 80 / 160 | 96 | Kafka | before | ratio | zoned | ratio | after | ratio
    kafka, before, zoned, after = (float(cells[i].replace(",", "")) for i in (4, 5, 7, 9))
    assert after < zoned < before < kafka
    # and "after" with the metadata table's capacity provisioned, the stacks' other mode
    line = next(x for x in out.splitlines() if x.startswith("after, with the metadata table's"))
    provisioned = float(line.split(": ")[1].split(" at ")[0].replace(",", ""))
    assert provisioned < after


def test_garbage_collection_lists_a_shard_of_the_stored_objects_each_run() -> None:
    """Each compaction run lists a tenth of compaction's own objects (control/compaction.py,
    LISTING_SHARDS) and the first level and WAL prefixes: a LIST, priced like a PUT, per
    1,000 keys, stored objects being mostly compaction's 64 MiB objects."""
    prices = load_prices("us-east-1")
    w = Workload(write_mbps=80, read_mbps=160, retention_h=72, partitions=96)
    est = price_ours(w, prices, Assumptions())
    lines = _lines(est)
    listed = lines["S3 LIST: compaction's garbage collection"]
    stored_gib = sum(
        line.quantity for line in est.lines if line.item.startswith("S3 Standard storage")
    )
    objects = stored_gib * GIB / (64 << 20)
    assert listed.quantity == pytest.approx((math.ceil(objects / 10 / 1000) + 4) * 12 * 730)
    assert listed.usd_month == pytest.approx(listed.quantity * 0.005 / 1000)
