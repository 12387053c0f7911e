"""The cost model: a steady workload priced on this system and on Apache Kafka, per month.

Pure functions over (Workload, Assumptions, PriceTable). Every number that is not a price
or part of the workload is a field of ``Assumptions`` with a description saying where it
comes from (a measurement in ``bench/``, a default of ``BrokerConfig``, or a stated guess), so
the printed table can show all of them and ``--set`` can change any of them.

Units: traffic in MB/s (10^6 bytes, as Kafka tools and bench/ report it); AWS bills "GB",
which is 2^30 bytes, so storage and transfer are counted in GiB; a month is 730 hours.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field

from broker_service.config import BrokerConfig
from broker_service.control.sizing import (
    COMPACTION_CPU_S_PER_GIB,
    COMPACTION_CPU_S_PER_WAL_OBJECT,
    BrokerCapacity,
)
from broker_service.ops.cost.prices import Price, PriceTable
from broker_service.stream.objectstore.base import SINGLE_PUT_MAX_DATA_BYTES

HOURS_PER_MONTH = 730.0
SECONDS_PER_MONTH = HOURS_PER_MONTH * 3600
MB = 1_000_000
GIB = 1 << 30
TIB = 1 << 40

Category = Literal["storage", "compute", "network", "other"]
CATEGORIES: tuple[Category, ...] = ("storage", "compute", "network", "other")

# the broker's own defaults (not the environment): the model prices the shipped config
_broker_defaults = BrokerConfig.model_construct(wal="object")


class Workload(BaseModel):
    model_config = ConfigDict(extra="forbid")

    write_mbps: float = Field(gt=0, description="produced payload, MB/s")
    read_mbps: float = Field(ge=0, description="consumed payload, MB/s (all groups together)")
    retention_h: float = Field(gt=0, description="time retention of every topic, hours")
    partitions: int = Field(default=96, ge=1, description="partitions of all topics together")


class OursAssumptions(BaseModel):
    model_config = ConfigDict(extra="forbid")

    min_brokers: int = Field(default=3, ge=1, description="autoscaler floor (one broker per AZ)")
    task_vcpu: float = Field(
        default=1, gt=0, description="Fargate task size, vCPU (stacks default: broker_cpu 1024)"
    )
    task_memory_gb: float = Field(
        default=4, gt=0, description="Fargate task size, GB (stacks default: 4096 MiB)"
    )
    target_write_mbps_per_broker: float | None = Field(
        default=None,
        gt=0,
        description="produce MB/s one broker is sized for; default: control/sizing.py for "
        "task_vcpu (the autoscaler's and the alarms' figure, from the benchmarks)",
    )
    target_read_mbps_per_broker: float | None = Field(
        default=None,
        gt=0,
        description="consume MB/s one broker is sized for; default: control/sizing.py for "
        "task_vcpu",
    )
    wal_flush_ms: float = Field(
        default=_broker_defaults.effective_wal_flush_ms,
        ge=0,
        description="object WAL group-commit linger (BrokerConfig default for wal=object)",
    )
    wal_flush_bytes: float = Field(
        default=_broker_defaults.effective_wal_flush_bytes,
        gt=0,
        description="pending bytes that cut the linger short (BrokerConfig default for "
        "wal=object; 4 MiB before 2026-12-03, when forwarded batches began to ride in WAL "
        "flushes and would have cut most cycles short; 8 MiB before 2026-12-04, which cut "
        "them short at the rates of AutoMQ's workload)",
    )
    wal_max_object_bytes: float = Field(
        default=min(2 * _broker_defaults.effective_wal_flush_bytes, SINGLE_PUT_MAX_DATA_BYTES),
        gt=0,
        description="largest WAL object: 2 x flush bytes, at most 15 MiB so that it stays "
        "one PUT with its index (ObjectWal.max_group_bytes; 16 MiB before 2026-12-04)",
    )
    wal_commit_ms: float = Field(
        default=50,
        ge=0,
        description="the fixed part of one WAL commit on AWS: an S3 PUT's latency before its "
        "bytes + the DynamoDB TransactWriteItems (a guess for AWS: on moto it is ~40 ms of "
        "CPU). Until 2026-12-04 an 80 ms lump for the whole commit, whatever the object size",
    )
    wal_put_mbps: float = Field(
        default=85,
        gt=0,
        description="one PUT's upload rate (one connection; ~85-90 MB/s is the figure usually "
        "quoted from AWS's S3 performance guidelines, not re-confirmed on a stored page): a "
        "commit of S bytes takes wal_commit_ms + S / this",
    )
    wal_flushes_in_flight: int = Field(
        default=_broker_defaults.wal_max_in_flight,
        ge=1,
        description="object WAL flushes under way at once (BrokerConfig.wal_max_in_flight); "
        "one beyond the first takes a full group (wal_flush_bytes) only",
    )
    ddb_items_per_commit_fixed: int = Field(
        default=3,
        ge=0,
        description="items in a WAL commit besides one range item per partition: broker "
        "ConditionCheck + object + part (docs/DYNAMODB.md)",
    )
    ddb_commit_layout: Literal["item_per_range", "packed"] = Field(
        default="packed",
        description="how a WAL commit lands in DynamoDB: the ranges packed into the object's "
        "log entry (the lean commit, issue 19 item 3: the code since main cc0fb88; "
        "docs/DYNAMODB.md), or one range item per partition (the layout before it)",
    )
    ddb_billing: Literal["on_demand", "provisioned"] = Field(
        default="on_demand",
        description="the metadata table's capacity mode: the stacks' tenant knob "
        "metadata_billing (stacks/storage.py). provisioned: write and read capacity auto-scaled "
        "to keep ddb_target_utilization of it in use, billed per capacity-unit hour",
    )
    ddb_target_utilization: float = Field(
        default=0.7,
        gt=0,
        le=1,
        description="provisioned: the share of capacity auto scaling keeps in use (the stacks' "
        "target, metadata_target_utilization_percent / 100); capacity = load / this",
    )
    ddb_fold_wru_per_range: float = Field(
        default=0.1,
        ge=0,
        description="packed: WRU of folding a committed range into its stream's chunks later "
        "(background; measured by bench/dynamodb_wru.py on 2026-12-03 over 256 commits, the "
        "steady state: (9.1 - 6) / 32 and (36.1 - 10) / 256 WRU per range with the "
        "delta-varint layout; 0.13 over 100 commits, where each stream's first claim weighs "
        "more; 0.21-0.25 with the 52-byte layout before it, docs/DYNAMODB.md)",
    )
    ddb_packed_range_bytes: float = Field(
        default=16,
        gt=0,
        description="bytes of one range in a packed log entry: seven varints of its "
        "differences from the range before it (metadata/dynamodb/ranges.py; 11-12 bytes in "
        "bench/dynamodb_wru.py, up to ~28 for random values, tests/unit/test_packed_ranges.py; "
        "52 in the fixed layout before it)",
    )
    ddb_wru_per_transact_item: float = Field(
        default=2,
        ge=0,
        description="WRU per item of TransactWriteItems (2 per KB; items are < 1 KB; the "
        "ConditionCheck is counted as a write, which is conservative)",
    )
    ddb_idle_queries_per_s_per_broker: float = Field(
        default=4.2,
        ge=0,
        description="strongly consistent Query calls/s of a broker, whatever its load: "
        "lease, membership and recovery checks, metadata refresh. Measured idle with "
        "bench/s3_requests.py --quick on 2026-11-25: 84 in 20 s at main e4fc8ac (65 before "
        "the transactions commit; bench/README.md: ~220 calls/min)",
    )
    ddb_idle_updates_per_s_per_broker: float = Field(
        default=0.45,
        ge=0,
        description="UpdateItem calls/s of a broker (lease renewal). Measured: 9 in 20 s",
    )
    ddb_rru_per_query: float = Field(
        default=1, ge=0, description="RRU per Query (responses measured at ~650 bytes, < 4 KB)"
    )
    offset_commit_items_per_s: float = Field(
        default=10,
        ge=0,
        description="consumer offsets committed per second, all groups (each a transactional "
        "put, plus one registry update per commit call, counted as one more item)",
    )
    producer_snapshot_interval_ms: float = Field(
        default=_broker_defaults.producer_snapshot_interval_ms,
        gt=0,
        description="every partition with idempotent producers saves its producer state "
        "(one PutItem, < 1 KB = 1 WRU) this often (BrokerConfig default); all partitions "
        "are assumed to have such producers (the Java client's default)",
    )
    read_cache_hit_fraction: float = Field(
        default=0.9,
        ge=0,
        le=1,
        description="share of consumed bytes served from the broker's log cache (tailing "
        "consumers); the rest is read from S3 (catch-up, restarts, moved partitions)",
    )
    s3_gets_per_gib_read: float = Field(
        default=1400,
        ge=0,
        description="ranged GETs per GiB read from S3. Measured cold: 1395-1468/GiB "
        "(bench/README.md, bench/s3_requests.py --quick)",
    )
    compaction_output_object_mib: float = Field(
        default=64,
        gt=0,
        description="stream objects compaction ends with (COMPACTION_TARGET_OBJECT_BYTES). A "
        "merge swaps at most compaction_ranges_per_swap ranges, so small ranges reach this "
        "size over several merges (levels), each writing its objects (one PUT each) and "
        "reading the last level's objects (one GET each)",
    )
    compaction_ranges_per_swap: float = Field(
        default=640,
        gt=1,
        description="ranges one merge replaces: MAX_SWAP_RANGES in control/compaction.py "
        "(80 before 2026-12-03, when each swap also marked every old object released)",
    )
    ddb_swap_wru_fixed: float = Field(
        default=10,
        ge=0,
        description="packed: WRU of one compaction swap besides its ranges (lease check, new "
        "object record, stream head, chunk rewrite, transactional). Measured by "
        "bench/dynamodb_wru.py on 2026-12-03: 12.0 / 19.9 / 48.0 WRU for swaps of 40 / 160 / "
        "640 ranges (before that day a swap also put a release mark per old object: 177 WRU "
        "for 80 ranges)",
    )
    ddb_swap_wru_per_range: float = Field(
        default=0.06,
        ge=0,
        description="packed: WRU per range a swap replaces (its bytes in the chunks deleted and "
        "written; same measurement)",
    )
    ddb_gc_wru_per_object: float = Field(
        default=2,
        ge=0,
        description="packed: WRU to retire one object once no range names it: its record and "
        "log entry deleted, plus its share of the run's release-marks item (compaction's "
        "garbage collection; measured 2.0 by bench/dynamodb_wru.py on 2026-12-04; 4.0 on "
        "2026-12-03, when each object had a mark item of its own, put and then deleted)",
    )
    compaction_cpu_s_per_gib: float = Field(
        default=COMPACTION_CPU_S_PER_GIB,
        ge=0,
        description="CPU seconds a compactor spends per GiB merged, besides its per-object "
        "work. bench/compaction.py on 2026-12-03 (--wal-flush-ms 50 and 400, 124 MB merged out "
        "of ~66 or 15 WAL objects, medians of three runs: 1.16 and 0.67 CPU-s): 3.9 CPU-s per "
        "GiB and 9.4 ms per WAL object (S3 and DynamoDB on moto over HTTP, where botocore also "
        "hashes every PUT body for its signature). Before that day a flat 13.2 CPU-s per GiB, "
        "measured with the bench's 1.8 MB objects only",
    )
    compaction_cpu_s_per_wal_object: float = Field(
        default=COMPACTION_CPU_S_PER_WAL_OBJECT,
        ge=0,
        description="CPU seconds a compactor spends per WAL object it merges and retires: "
        "its GET, its share of the swaps, garbage collection's reads and writes (botocore "
        "costs ~2-3 ms of CPU a request; same measurement)",
    )
    compaction_lambda_memory_mb: float = Field(
        default=1769,
        gt=0,
        description="compaction Lambda memory: what the stacks deploy (compaction_memory_mib; "
        "512 before 2026-12-03)",
    )
    compaction_read_buffer_mib: float = Field(
        default=1769 - 512,
        gt=0,
        description="bytes of WAL objects a compaction run holds (COMPACTION_READ_BUFFER_BYTES, "
        "the stacks: memory - 512 MiB). Merges are cut at read windows of this many bytes of "
        "WAL objects, so each is read once: a first merge holds buffer / WAL object ranges "
        "of a partition at most",
    )
    compaction_gets_per_wal_object: float = Field(
        default=1,
        ge=0,
        description="GETs compaction makes per WAL object: a run plans every merge first and "
        "fetches an object's planned ranges with one GET (control/compaction_reads.py; "
        "tests/integration/test_compaction.py counts them). Before: one GET per range "
        "(set it to the ranges per object to price that)",
    )
    compaction_listing_shards: float = Field(
        default=10,
        ge=1,
        description="a compaction run lists this share of compaction's own objects "
        "(LISTING_SHARDS in control/compaction.py; every run listed all of them before "
        "2026-12-03)",
    )
    compaction_grace_h: float = Field(
        default=1, ge=0, description="hours merged-away objects stay before deletion (readers)"
    )
    control_lambda_invocations_per_hour: float = Field(
        default=60 + 12 + 60,
        ge=0,
        description="autoscaler 1/min + balancer 1/5 min + recovery 1/min",
    )
    compaction_runs_per_hour: float = Field(
        default=12,
        ge=0,
        description="compaction's schedule: every 5 min one Lambda; a run works up to its "
        "15-minute timeout, later ticks find the compactor lease held and end at once, so one "
        "compactor works all the time (the compaction MB/s of the sizing line is all it "
        "merges; the tenant's compaction_shards run that many at once, one per lease)",
    )
    scheduled_lambda_seconds: float = Field(
        default=2, ge=0, description="duration of an autoscaler/balancer/recovery run (a guess)"
    )
    scheduled_lambda_memory_mb: float = Field(
        default=512,
        gt=0,
        description="memory of those Lambdas: what the stacks deploy (function_memory_mib)",
    )
    cross_az_produce_fraction: float = Field(
        default=2 / 3,
        ge=0,
        le=1,
        description="share of produced bytes sent to a broker in another AZ: 2/3 with 3 AZs "
        "for classic clients (a partition's leader is wherever it is; measured 0.675 with "
        "bench/zones.py), ~0 for zoned clients (measured 0.0002-0.0003)",
    )
    cross_az_consume_fraction: float = Field(
        default=2 / 3,
        ge=0,
        le=1,
        description="share of consumed bytes fetched from a broker in another AZ: 2/3 for "
        "classic clients, ~0 for zoned ones (bench/zones.py)",
    )
    zone_aware: bool = Field(
        default=False,
        description="clients use brokers of their own AZ (client.id az= marker, zonal "
        "bootstrap, client.rack): writes for a leader in another AZ go through a forward "
        "object, consumers in other AZs read committed objects (docs/ZONES.md). "
        "--zone-aware and --measured (after) set it",
    )
    zone_forward_in_wal: bool = Field(
        default=True,
        description="zone-forwarded batches ride in the in-zone broker's own WAL flush (the "
        "object WAL, stream/wal/object.py: one PUT per flush cycle, its objects 1 + 2/3 of "
        "the broker's write rate); False: a forward object of their own per cycle (the "
        "layout before 2026-12-03)",
    )
    zone_leader_gets_per_forward_object: float = Field(
        default=2.0,
        ge=0,
        description="ranged GETs leaders make per forward object: one per leader in another "
        "AZ with batches in it, at most azs - 1 (measured 1.58 with 12 partitions)",
    )
    zone_replica_gets_per_wal_object: float = Field(
        default=2.0,
        ge=0,
        description="GETs per WAL object by the brokers serving it to consumers of other AZs: "
        "one whole-object read per other AZ with consumers (measured 2.0)",
    )
    inter_broker_bytes_per_gib_written: float = Field(
        default=0.0,
        ge=0,
        description="bytes between brokers per byte written (every one crosses an AZ) "
        "besides the replicas' long polls: forward pointers (ZoneForwardProduce), coordinator "
        "requests; 0 for classic clients (bench/zones.py, from the brokers' /metrics)",
    )
    zone_replica_poll_bytes_per_partition: float = Field(
        default=170.0,
        ge=0,
        description="zone-aware: bytes between brokers per WAL commit, per partition its "
        "broker leads and per other AZ: the long polls (ReplicaState) that tell a broker "
        "serving another AZ's consumers what the leader committed. Default: one poll per "
        "commit carrying every partition's ask (~40 B), state (46 B) and new range (~82 B); "
        "bench/zones.py measured 40 B on 2026-12-03 at its low rate (polls batch commits "
        "there), after the fix that made replicas long-poll at all (before it every fetch "
        "queried: ~1,200 B)",
    )
    nlb_processed_gb_per_hour: float = Field(
        default=0.1,
        ge=0,
        description="bytes through the NLB: bootstrap Metadata only, clients then connect "
        "to brokers directly; 1 NLCU = 1 GB/hour",
    )
    cloudwatch_metrics_per_broker: int = Field(
        default=10,
        ge=0,
        description="custom metrics each broker publishes (EMF, per-broker dimension)",
    )
    cloudwatch_alarms: int = Field(default=4, ge=0, description="alarms driving the autoscaler")
    consumer_group_topics: int = Field(
        default=10,
        ge=0,
        description="(consumer group, topic) pairs: each is a ConsumerLag metric series, and "
        "each broker prints its EMF line every minute",
    )
    emf_document_bytes: float = Field(
        default=450,
        gt=0,
        description="one EMF document (broker, partition or group line; measured 350-520)",
    )
    broker_log_bytes_per_minute: float = Field(
        default=2000,
        ge=0,
        description="broker log lines per minute at INFO besides EMF (a guess: a few lines)",
    )
    control_path: Literal["endpoints", "nat_per_az"] = Field(
        default="endpoints",
        description="how tasks and functions reach AWS APIs other than S3/DynamoDB (image "
        "pulls, logs, secrets, metrics, ECS): interface endpoints or a NAT gateway per AZ "
        "(the tenant knob of the same name)",
    )
    azs: int = Field(default=3, ge=1, description="availability zones of the VPC")
    interface_endpoints: int = Field(
        default=6,
        ge=0,
        description="interface endpoints of control_path=endpoints: ECR api and dkr, Logs, "
        "Secrets Manager, CloudWatch, ECS (stacks/brokers.py)",
    )
    control_path_gb_per_broker_month: float = Field(
        default=5,
        ge=0,
        description="bytes through the endpoints or NAT per broker: image pulls (~0.2 GB "
        "per task start), logs and EMF metrics (a guess; S3/DynamoDB use gateway endpoints)",
    )


class KafkaAssumptions(BaseModel):
    model_config = ConfigDict(extra="forbid")

    instance_type: str = Field(default="r6i.xlarge", description="broker instance type")
    min_brokers: int = Field(default=3, ge=1, description="smallest cluster")
    brokers_multiple_of: int = Field(
        default=3, ge=1, description="brokers per AZ kept equal (3 AZs)"
    )
    target_utilization: float = Field(
        default=0.6,
        gt=0,
        le=1,
        description="share of the instance's baseline network and EBS bandwidth planned "
        "for (headroom for a broker failure, catch-up reads and reassignment traffic)",
    )
    replication_factor: int = Field(default=3, ge=1, description="replicas of every partition")
    disk_headroom_fraction: float = Field(
        default=0.3, ge=0, description="EBS provisioned above retained bytes x replicas"
    )
    gp3_included_mbps: float = Field(
        default=125, ge=0, description="gp3 throughput included per volume"
    )
    controller_instance_type: str = Field(default="m5.large", description="KRaft controller nodes")
    controllers: int = Field(default=3, ge=0, description="KRaft controller quorum size")
    cross_az_produce_fraction: float = Field(
        default=2 / 3, ge=0, le=1, description="produced bytes sent to a leader in another AZ"
    )
    cross_az_consume_fraction: float = Field(
        default=2 / 3,
        ge=0,
        le=1,
        description="consumed bytes fetched across AZs (0 with KIP-392 fetch-from-follower)",
    )


class Assumptions(BaseModel):
    model_config = ConfigDict(extra="forbid")

    ours: OursAssumptions = OursAssumptions()
    kafka: KafkaAssumptions = KafkaAssumptions()


def apply_overrides(assumptions: Assumptions, settings: list[str]) -> Assumptions:
    """``ours.target_write_mbps_per_broker=60``-style overrides, validated by the model."""
    data: dict[str, dict[str, Any]] = assumptions.model_dump()
    for setting in settings:
        key, sep, value = setting.partition("=")
        group, dot, name = key.strip().partition(".")
        if not sep or not dot or group not in data or name not in data[group]:
            raise ValueError(
                f"--set {setting!r}: expected ours.NAME=VALUE or kafka.NAME=VALUE with a NAME "
                "from the assumptions table"
            )
        data[group][name] = value.strip()
    return Assumptions.model_validate(data)


class LineItem(BaseModel):
    category: Category
    item: str
    quantity: float
    unit: str
    unit_price_usd: float
    price_per: float
    usd_month: float
    basis: str


class Estimate(BaseModel):
    system: str
    sizing: dict[str, float | int | str]
    lines: list[LineItem]

    @property
    def totals(self) -> dict[str, float]:
        out: dict[str, float] = {c: 0.0 for c in CATEGORIES}
        for line in self.lines:
            out[line.category] += line.usd_month
        out["total"] = sum(out[c] for c in CATEGORIES)
        return out


def _line(category: Category, item: str, quantity: float, price: Price, basis: str) -> LineItem:
    return LineItem(
        category=category,
        item=item,
        quantity=quantity,
        unit=price.unit,
        unit_price_usd=price.usd,
        price_per=price.per,
        usd_month=price.cost(quantity),
        basis=basis,
    )


def _dynamodb_unit_prices(a: OursAssumptions, prices: PriceTable) -> tuple[Price, Price]:
    """What one write and one read request unit costs in the table's capacity mode. Provisioned:
    a unit a second for an hour is one capacity-unit hour, and auto scaling keeps
    ``ddb_target_utilization`` of the capacity in use, so a unit costs hour price / 3600 /
    utilization (a steady load; bursts above the capacity are throttled until it scales)."""
    p = prices.prices
    if a.ddb_billing == "on_demand":
        return p.dynamodb_write_request_units, p.dynamodb_read_request_units

    def per_unit(hour: Price, unit: str) -> Price:
        usd = hour.usd / hour.per / 3600 / a.ddb_target_utilization * 1_000_000
        used = f"{a.ddb_target_utilization:.0%} used"
        return Price(
            usd=usd, per=1_000_000, unit=f"{unit} (provisioned, {used})",
            source=hour.source, confirmed_by=hour.confirmed_by, note=hour.note,
        )  # fmt: skip

    return (
        per_unit(p.dynamodb_write_capacity_unit_hour, "write request unit"),
        per_unit(p.dynamodb_read_capacity_unit_hour, "read request unit"),
    )


def _gib_per_month(mbps: float) -> float:
    return mbps * MB * SECONDS_PER_MONTH / GIB


def retained_gib(workload: Workload) -> float:
    return workload.write_mbps * MB * workload.retention_h * 3600 / GIB


# -- this system --------------------------------------------------------------------------


def broker_capacity(a: OursAssumptions) -> BrokerCapacity:
    """What one broker is sized for: control/sizing.py's figures for ``task_vcpu``, unless
    overridden."""
    measured = BrokerCapacity.for_vcpu(a.task_vcpu)
    return BrokerCapacity(a.target_write_mbps_per_broker or measured.produce_mbps,
                          a.target_read_mbps_per_broker or measured.consume_mbps)  # fmt: skip


def brokers_needed(write_mbps: float, read_mbps: float, a: OursAssumptions) -> int:
    """The autoscaler's sizing (control/sizing.py): enough brokers for writes and reads.

    A broker's load is write/P + read/C (writes cost far more CPU per byte than cache
    reads); brokers = max(floor, ceil(load))."""
    return broker_capacity(a).brokers_needed(write_mbps, read_mbps, a.min_brokers)


def control_path_lines(brokers: int, a: OursAssumptions, p: Any) -> list[LineItem]:
    """Interface endpoints (per endpoint per AZ, and per GB) or a NAT gateway per AZ."""
    gb = brokers * a.control_path_gb_per_broker_month
    if a.control_path == "endpoints":
        n = a.interface_endpoints * a.azs
        return [
            _line("network", "VPC interface endpoint hours", n * HOURS_PER_MONTH,
                  p.vpc_endpoint_hour, f"{a.interface_endpoints} endpoints x {a.azs} AZs x 730 h"),
            _line("network", "VPC interface endpoint data", gb, p.vpc_endpoint_gb,
                  f"{brokers} brokers x {a.control_path_gb_per_broker_month:g} GB"),
        ]  # fmt: skip
    return [
        _line("network", "NAT gateway hours", a.azs * HOURS_PER_MONTH, p.nat_gateway_hour,
              f"one per AZ: {a.azs} x 730 h"),
        _line("network", "NAT gateway data", gb, p.nat_gateway_gb,
              f"{brokers} brokers x {a.control_path_gb_per_broker_month:g} GB"),
    ]  # fmt: skip


@dataclass(frozen=True)
class CompactionLevels:
    puts_per_gib: float  # objects written by all merge levels
    gets_per_gib: float  # reads of earlier levels' objects (the WAL objects' are apart)
    items_per_gib: float  # metadata items the swaps write and delete, WAL side apart (items)
    wru_per_gib: float  # packed: the swaps' WRU and retiring merged objects, WAL side apart
    basis: str


def compaction_levels(
    range_bytes: float, a: OursAssumptions, wal_object: float | None = None
) -> CompactionLevels:
    """Merges from WAL ranges of ``range_bytes`` to objects of the target size. A merge swaps
    at most N = compaction_ranges_per_swap objects of one level into one of the next, so
    there are L = log_N(target / range) levels, level k writing GiB / (range x N^k) objects;
    every object but the final ones is read once more (one GET: it holds one range) by the
    next level. L is taken as a real number (the mean over partitions writing at different
    rates: with a whole number a level one rate needs and a slightly higher one does not
    would be a step in the cost). Per GiB: puts = (GiB / range) (1 - range / target) /
    (N - 1), at least GiB / target; gets = puts - GiB / target. Item layout: 3 metadata
    items written per new object (object, part, range) and deleted per object read again.
    Packed: a swap per new object (a fixed part and a part per range it replaces, the ranges
    being the WAL's and the re-merged objects'), and every merged object retired once."""
    target = a.compaction_output_object_mib * 1024 * 1024
    n = a.compaction_ranges_per_swap
    final = GIB / target
    # the first merge of WAL ranges stops at a read window: buffer / WAL object ranges
    n1 = n
    if wal_object:
        n1 = max(2.0, min(n, a.compaction_read_buffer_mib * 1024 * 1024 / wal_object))
    first = min(range_bytes * n1, target)
    puts = GIB / first
    if first < target:  # the later merges, of per-stream objects, n at a time
        puts += max(final, GIB / first * (1 - first / target) / (n - 1))
    gets = puts - final
    levels = 1 + max(0.0, math.log(target / first) / math.log(n))
    swap_wru = puts * a.ddb_swap_wru_fixed + (GIB / range_bytes + gets) * a.ddb_swap_wru_per_range
    return CompactionLevels(
        puts, gets, 3 * (puts + gets), swap_wru + puts * a.ddb_gc_wru_per_object,
        f"{levels:.1f} merge levels, the first writing {first / MB:.1f} MB objects",
    )


def wal_commit_s(object_bytes: float, a: OursAssumptions) -> float:
    """One WAL commit: the fixed part (PUT latency + DynamoDB) and the upload."""
    return a.wal_commit_ms / 1000 + object_bytes / (a.wal_put_mbps * MB)


def wal_object_bytes(broker_write_mbps: float, a: OursAssumptions) -> float:
    """Mean WAL object size at a steady per-broker rate of WAL bytes.

    With one flush in flight a cycle is linger + commit, and the commit's upload grows with
    the object: S = rate x (linger + fixed + S / put rate). Once that reaches
    ``wal_flush_bytes`` (or the rate outruns one upload), a second flush starts whenever a
    full group waits (stream/wal/base.py), so every object is ``wal_flush_bytes``. With a
    single slot (``wal_flushes_in_flight`` 1) what arrived during a commit, up to the
    largest object, forms the next one instead."""
    rate = broker_write_mbps * MB
    put = a.wal_put_mbps * MB
    fixed = (a.wal_flush_ms + a.wal_commit_ms) / 1000
    if rate < put:
        size = rate * fixed / (1 - rate / put)
        if size < a.wal_flush_bytes:
            return size
    if a.wal_flushes_in_flight > 1:
        return a.wal_flush_bytes
    size = max(a.wal_flush_bytes, rate * wal_commit_s(a.wal_flush_bytes, a))
    return min(size, a.wal_max_object_bytes)


def wal_capacity_mbps(a: OursAssumptions) -> float:
    """The WAL bytes a broker can commit per second: its flush slots, each committing full
    groups back to back."""
    return a.wal_flushes_in_flight * a.wal_flush_bytes / wal_commit_s(a.wal_flush_bytes, a) / MB


def _s3_storage_lines(gib: float, prices: PriceTable, basis: str) -> list[LineItem]:
    """S3 Standard's volume tiers: 50 TB, next 450 TB, the rest."""
    p = prices.prices
    tiers = [
        (p.s3_standard_gb_month_first_50tb, 50 * 1024.0, "first 50 TB"),
        (p.s3_standard_gb_month_next_450tb, 450 * 1024.0, "next 450 TB"),
        (p.s3_standard_gb_month_over_500tb, math.inf, "over 500 TB"),
    ]
    lines, left = [], gib
    for price, size, label in tiers:
        amount = min(left, size)
        if amount <= 0:
            break
        lines.append(_line("storage", f"S3 Standard storage ({label})", amount, price, basis))
        left -= amount
    return lines


def _cross_az_client_lines(
    written_gib: float,
    read_gib: float,
    a: OursAssumptions | KafkaAssumptions,
    prices: PriceTable,
    read_note: str = "",
) -> list[LineItem]:
    """Producers' and consumers' bytes that cross an AZ to reach their broker (both systems)."""
    p = prices.prices
    return [
        _line(
            "network",
            "cross-AZ: producers",
            written_gib * a.cross_az_produce_fraction,
            p.cross_az_gb,
            f"{a.cross_az_produce_fraction:.2f} of written bytes",
        ),
        _line(
            "network",
            "cross-AZ: consumers",
            read_gib * a.cross_az_consume_fraction,
            p.cross_az_gb,
            f"{a.cross_az_consume_fraction:.2f} of read bytes{read_note}",
        ),
    ]


def forwarded_share(a: OursAssumptions) -> float:
    """Share of a zone-aware broker's client writes whose leader is in another AZ (leaders
    spread over the AZs)."""
    return 1 - 1 / a.azs


def zone_aware_lines(
    w: Workload,
    a: OursAssumptions,
    prices: PriceTable,
    brokers: int,
    wal_commits: float,
    written_gib: float,
    partitions_led: float,
) -> list[LineItem]:
    """What zone-aware clients add (docs/ZONES.md): the leaders' GETs of the batches forwarded
    to them (in the in-zone broker's WAL objects, or with ``zone_forward_in_wal`` off in
    forward objects of their own, as many as the WAL's objects at that rate: the forwarder
    lingers as the WAL does), the whole-object GETs of brokers serving other AZs' consumers,
    and the pointers between brokers. The WAL objects' larger size when they carry forwarded
    batches is priced by ``price_ours``."""
    p = prices.prices
    lines = []
    if a.inter_broker_bytes_per_gib_written:
        lines.append(
            _line("network", "cross-AZ: broker to broker",
                  written_gib * a.inter_broker_bytes_per_gib_written, p.cross_az_gb,
                  f"{a.inter_broker_bytes_per_gib_written:.4f} of written bytes (pointers, "
                  "polls)")
        )  # fmt: skip
    if not a.zone_aware:
        return lines
    poll_bytes = (
        wal_commits * partitions_led * (a.azs - 1) * a.zone_replica_poll_bytes_per_partition
    )
    lines.append(
        _line("network", "cross-AZ: replica long polls", poll_bytes / GIB, p.cross_az_gb,
              f"{a.zone_replica_poll_bytes_per_partition:g} B per commit, partition led and "
              f"other AZ ({a.azs - 1})")
    )  # fmt: skip
    forwarded = forwarded_share(a)
    if a.zone_forward_in_wal:  # no object of their own: the WAL's flushes carry them
        return lines + [
            _line("other", "S3 GET: forwarded batches (leaders)",
                  wal_commits * a.zone_leader_gets_per_forward_object, p.s3_get_requests,
                  f"{a.zone_leader_gets_per_forward_object:g} per WAL object (its forwarded "
                  "sections)"),
            _line("other", "S3 GET: zone replica reads",
                  wal_commits * a.zone_replica_gets_per_wal_object, p.s3_get_requests,
                  f"{a.zone_replica_gets_per_wal_object:g} whole-object reads per WAL object"),
        ]  # fmt: skip
    broker_forward = w.write_mbps * forwarded / brokers
    forward_bytes = wal_object_bytes(broker_forward, a)
    forward_puts = brokers * broker_forward * MB / forward_bytes * SECONDS_PER_MONTH
    return lines + [
        _line("other", "S3 PUT: zone forward objects", forward_puts, p.s3_put_requests,
              f"{forwarded:.2f} of writes, {broker_forward:.1f} MB/s per broker in "
              f"{forward_bytes / MB:.2f} MB objects"),
        _line("other", "S3 GET: forwarded batches (leaders)",
              forward_puts * a.zone_leader_gets_per_forward_object, p.s3_get_requests,
              f"{a.zone_leader_gets_per_forward_object:g} per forward object"),
        _line("other", "S3 GET: zone replica reads",
              wal_commits * a.zone_replica_gets_per_wal_object, p.s3_get_requests,
              f"{a.zone_replica_gets_per_wal_object:g} whole-object reads per WAL object"),
    ]  # fmt: skip


def price_ours(workload: Workload, prices: PriceTable, assumptions: Assumptions) -> Estimate:
    a, p = assumptions.ours, prices.prices
    w = workload
    # zone-aware clients: a broker's flushes also carry the batches it forwards to leaders in
    # other AZs (the leaders append them to their own WAL as well)
    riding = forwarded_share(a) if a.zone_aware and a.zone_forward_in_wal else 0.0
    # enough brokers for the CPU (the autoscaler's sizing) and for the WAL's uploads
    brokers = max(brokers_needed(w.write_mbps, w.read_mbps, a),
                  math.ceil(w.write_mbps * (1 + riding) / wal_capacity_mbps(a)))  # fmt: skip
    broker_write = w.write_mbps / brokers
    wal_rate = broker_write * (1 + riding)
    object_bytes = wal_object_bytes(wal_rate, a)
    flushes_per_s = wal_rate * MB / object_bytes  # per broker
    own_bytes = object_bytes / (1 + riding)  # this broker's committed ranges in an object
    wal_objects_per_gib = GIB / own_bytes
    # every partition has data in every flush of its leader; leaders spread over the
    # brokers, so a flush commits partitions / brokers range items on average
    ranges_per_object = w.partitions / brokers
    written_gib = _gib_per_month(w.write_mbps)
    read_gib = _gib_per_month(w.read_mbps)
    s3_read_gib = read_gib * (1 - a.read_cache_hit_fraction)
    commits = brokers * flushes_per_s * SECONDS_PER_MONTH
    merges = compaction_levels(own_bytes / ranges_per_object, a, object_bytes)
    compaction_puts_per_gib = merges.puts_per_gib
    if a.ddb_commit_layout == "packed":
        # the object item carries every range (billed per started KB; ranges_per_object is
        # a mean over commits of varying sizes, so the mean KB, not the ceiling of the mean:
        # a ceiling would make costs fall where one more broker shrinks the mean across a KB)
        packed_kb = max(1.0, ranges_per_object * a.ddb_packed_range_bytes / 1024)
        commit_items: float = a.ddb_items_per_commit_fixed - 1 + packed_kb
        commit_basis = (
            f"{a.ddb_items_per_commit_fixed - 1} items + a {packed_kb:.1f} KB packed item"
        )
        # swaps write O(1) items each; every WAL object is retired once (garbage collection)
        compaction_wru_per_gib = (
            wal_objects_per_gib * a.ddb_gc_wru_per_object + merges.wru_per_gib
        )
    else:
        commit_items = a.ddb_items_per_commit_fixed + ranges_per_object
        commit_basis = f"{a.ddb_items_per_commit_fixed} + {ranges_per_object:.1f} range items"
        # compaction's metadata swap (transactional): delete each WAL object's range items,
        # its object + part items, write each stream object's object + part + range items
        compaction_wru_per_gib = a.ddb_wru_per_transact_item * (
            wal_objects_per_gib * (ranges_per_object + 2) + merges.items_per_gib
        )
    wru_price, rru_price = _dynamodb_unit_prices(a, prices)
    wru_per_commit = a.ddb_wru_per_transact_item * commit_items
    folded_ranges = commits * ranges_per_object if a.ddb_commit_layout == "packed" else 0.0
    # one vCPU (the compaction Lambda's 1,769 MB) busy for the CPU time of a GiB
    compaction_cpu_per_gib = (
        a.compaction_cpu_s_per_gib + a.compaction_cpu_s_per_wal_object * wal_objects_per_gib
    )
    compaction_mbps = GIB / MB / compaction_cpu_per_gib
    compaction_gb_s_per_gib = compaction_cpu_per_gib * a.compaction_lambda_memory_mb / 1024
    stored_gib = retained_gib(w) + w.write_mbps * MB * a.compaction_grace_h * 3600 / GIB
    task_hours = brokers * HOURS_PER_MONTH
    # what compaction leaves: stream objects of the target size (WAL objects live minutes)
    stored_objects = stored_gib * GIB / (a.compaction_output_object_mib * 1024 * 1024)
    scheduled = a.control_lambda_invocations_per_hour * HOURS_PER_MONTH
    # compactors that keep up: one merges compaction_mbps; the tenant's compaction_shards
    # (stacks/tenant.py) runs that many at once, each invoked every schedule tick. Their
    # duration is priced per byte merged whatever the number
    compactors_needed = max(1, math.ceil(w.write_mbps / compaction_mbps - 1e-9))
    compaction_invocations = a.compaction_runs_per_hour * HOURS_PER_MONTH * compactors_needed
    metrics = (
        brokers * a.cloudwatch_metrics_per_broker + 2 * w.partitions + a.consumer_group_topics
    )
    emf_docs = brokers * (1 + a.consumer_group_topics) + w.partitions  # per minute
    log_gib = (
        (emf_docs * a.emf_document_bytes + brokers * a.broker_log_bytes_per_minute)
        * 60 * HOURS_PER_MONTH / GIB
    )
    zone_lines = zone_aware_lines(
        w, a, prices, brokers, commits, written_gib, ranges_per_object
    )

    lines: list[LineItem] = [
        _line(
            "compute",
            "Fargate vCPU",
            task_hours * a.task_vcpu,
            p.fargate_vcpu_hour,
            f"{brokers} tasks x {a.task_vcpu:g} vCPU x 730 h",
        ),
        _line(
            "compute",
            "Fargate memory",
            task_hours * a.task_memory_gb,
            p.fargate_gb_hour,
            f"{brokers} tasks x {a.task_memory_gb:g} GB x 730 h",
        ),
        _line(
            "compute",
            "Lambda invocations",
            scheduled + compaction_invocations,
            p.lambda_requests,
            f"{scheduled:,.0f} control-plane + {compaction_invocations:,.0f} compaction",
        ),
        _line(
            "compute",
            "Lambda duration (control plane)",
            scheduled * a.scheduled_lambda_seconds * a.scheduled_lambda_memory_mb / 1024,
            p.lambda_gb_second,
            f"{scheduled:,.0f} runs x {a.scheduled_lambda_seconds:g} s x "
            f"{a.scheduled_lambda_memory_mb:g} MB",
        ),
        _line(
            "compute",
            "Lambda duration (compaction)",
            written_gib * compaction_gb_s_per_gib,
            p.lambda_gb_second,
            f"{written_gib:,.0f} GiB written x {compaction_gb_s_per_gib:.1f} GB-s/GiB",
        ),
        *_s3_storage_lines(
            stored_gib,
            prices,
            f"{w.write_mbps:g} MB/s x ({w.retention_h:g} h retention + "
            f"{a.compaction_grace_h:g} h compaction grace)",
        ),
        _line(
            "other",
            "S3 PUT: WAL objects",
            commits,
            p.s3_put_requests,
            f"{brokers} brokers x {flushes_per_s:.2f} flushes/s "
            f"({object_bytes / MB:.2f} MB objects, {wal_objects_per_gib:.0f}/GiB)",
        ),
        _line(
            "other",
            "S3 PUT: compaction output",
            written_gib * compaction_puts_per_gib,
            p.s3_put_requests,
            f"{compaction_puts_per_gib:.0f}/GiB written ({merges.basis})",
        ),
        _line(
            "other",
            "S3 LIST: compaction's garbage collection",
            (math.ceil(stored_objects / a.compaction_listing_shards / 1000) + 4)
            * a.compaction_runs_per_hour * HOURS_PER_MONTH,
            p.s3_put_requests,
            f"a run lists 1/{a.compaction_listing_shards:g} of {stored_objects:,.0f} objects "
            f"of ~{a.compaction_output_object_mib:g} MiB (1,000 keys a request), and the "
            "bucket's first level and WAL prefixes (minutes of objects)",
        ),
        _line(
            "other",
            "S3 GET: compaction input",
            written_gib
            * (wal_objects_per_gib * a.compaction_gets_per_wal_object + merges.gets_per_gib),
            p.s3_get_requests,
            f"{a.compaction_gets_per_wal_object:g} per WAL object ({wal_objects_per_gib:.0f}/GiB)"
            f" + one per merged object of a later level ({merges.gets_per_gib:.0f}/GiB)",
        ),
        _line(
            "other",
            "S3 GET: reads that miss the cache",
            s3_read_gib * a.s3_gets_per_gib_read,
            p.s3_get_requests,
            f"{(1 - a.read_cache_hit_fraction):.0%} of {read_gib:,.0f} GiB read x "
            f"{a.s3_gets_per_gib_read:g}/GiB",
        ),
        _line(
            "other",
            "DynamoDB WRU: WAL commits",
            commits * wru_per_commit,
            wru_price,
            f"{commits:,.0f} commits x {wru_per_commit:.1f} WRU ({commit_basis})",
        ),
        _line(
            "other",
            "DynamoDB WRU: range folds",
            folded_ranges * a.ddb_fold_wru_per_range,
            wru_price,
            f"{folded_ranges:,.0f} ranges x {a.ddb_fold_wru_per_range:g} WRU (packed commits)",
        ),
        _line(
            "other",
            "DynamoDB WRU: compaction swaps",
            written_gib * compaction_wru_per_gib,
            wru_price,
            f"{compaction_wru_per_gib:.0f} WRU/GiB (swaps and retiring objects)",
        ),
        _line(
            "other",
            "DynamoDB WRU: leases",
            brokers * a.ddb_idle_updates_per_s_per_broker * SECONDS_PER_MONTH,
            wru_price,
            f"{brokers} x {a.ddb_idle_updates_per_s_per_broker:g} UpdateItem/s",
        ),
        _line(
            "other",
            "DynamoDB WRU: offset commits",
            a.offset_commit_items_per_s * SECONDS_PER_MONTH * a.ddb_wru_per_transact_item * 2,
            wru_price,
            f"{a.offset_commit_items_per_s:g} offsets/s, transactional",
        ),
        _line(
            "other",
            "DynamoDB WRU: producer snapshots",
            w.partitions * 1000 / a.producer_snapshot_interval_ms * SECONDS_PER_MONTH,
            wru_price,
            f"{w.partitions} partitions x 1 PutItem / {a.producer_snapshot_interval_ms:g} ms",
        ),
        _line(
            "other",
            "DynamoDB RRU: broker checks",
            brokers * a.ddb_idle_queries_per_s_per_broker * a.ddb_rru_per_query * SECONDS_PER_MONTH,
            rru_price,
            f"{brokers} x {a.ddb_idle_queries_per_s_per_broker:g} Query/s",
        ),
        _line(
            "other",
            "CloudWatch metrics",
            metrics,
            p.cloudwatch_metric_month,
            f"{brokers} brokers x {a.cloudwatch_metrics_per_broker} + {w.partitions} "
            f"partitions x 2 (bytes in, out) + {a.consumer_group_topics} group lag series",
        ),
        _line(
            "other",
            "CloudWatch Logs ingestion",
            log_gib,
            p.cloudwatch_logs_ingest_gb,
            f"{emf_docs:.0f} EMF documents/min x {a.emf_document_bytes:g} B + {brokers} "
            f"brokers x {a.broker_log_bytes_per_minute:g} B/min of logs",
        ),
        _line(
            "other",
            "CloudWatch alarms",
            a.cloudwatch_alarms,
            p.cloudwatch_alarm_month,
            "autoscaler alarms",
        ),
        *zone_lines,
        *_cross_az_client_lines(written_gib, read_gib, a, prices, "; S3 traffic is free in-region"),
        *control_path_lines(brokers, a, p),
        _line("network", "NLB hours", HOURS_PER_MONTH, p.nlb_hour, "one NLB (bootstrap)"),
        _line(
            "network",
            "NLB NLCU",
            a.nlb_processed_gb_per_hour * HOURS_PER_MONTH,
            p.nlb_nlcu_hour,
            f"{a.nlb_processed_gb_per_hour:g} GB/h processed",
        ),
    ]
    sizing: dict[str, float | int | str] = {
        "brokers": brokers,
        "write MB/s per broker": round(broker_write, 2),
        "read MB/s per broker": round(w.read_mbps / brokers, 2),
        "WAL object MB": round(object_bytes / MB, 3),
        "WAL flushes/s per broker": round(flushes_per_s, 2),
        "S3 PUT per GiB written (WAL)": round(wal_objects_per_gib, 1),
        "range items per WAL commit": round(ranges_per_object, 2),
        "stored GiB": round(stored_gib, 1),
        "written GiB/month": round(written_gib, 1),
        "compaction MB/s per compactor": round(compaction_mbps, 1),
        "compactors to keep up (compaction_shards)": compactors_needed,
    }
    return Estimate(system="ours", sizing=sizing, lines=lines)


# -- Apache Kafka on EC2 + EBS ------------------------------------------------------------


def kafka_brokers_needed(workload: Workload, a: KafkaAssumptions, prices: PriceTable) -> int:
    """Brokers for the network and EBS bandwidth at the target utilization.

    Per cluster: in = producers + replication ((RF-1) x write); out = consumers +
    replication; EBS writes = RF x write. Each broker contributes its instance's baseline
    (network counted per direction, which favours Kafka) x target utilization."""
    inst = prices.instance(a.instance_type)
    w, r, rf = workload.write_mbps, workload.read_mbps, a.replication_factor
    net = inst.network_baseline_mbps * a.target_utilization
    ebs = inst.ebs_baseline_mbps * a.target_utilization
    need = max(rf * w / net, (r + (rf - 1) * w) / net, rf * w / ebs)
    brokers = max(a.min_brokers, math.ceil(need - 1e-9))
    return math.ceil(brokers / a.brokers_multiple_of) * a.brokers_multiple_of


def price_kafka(workload: Workload, prices: PriceTable, assumptions: Assumptions) -> Estimate:
    a, p = assumptions.kafka, prices.prices
    w = workload
    inst = prices.instance(a.instance_type)
    brokers = kafka_brokers_needed(w, a, prices)
    ctrl = prices.instance(a.controller_instance_type)
    written_gib = _gib_per_month(w.write_mbps)
    read_gib = _gib_per_month(w.read_mbps)
    disk_gib = retained_gib(w) * a.replication_factor * (1 + a.disk_headroom_fraction)
    broker_disk_mbps = a.replication_factor * w.write_mbps / brokers
    extra_mbps = max(0.0, broker_disk_mbps - a.gp3_included_mbps) * brokers
    lines = [
        _line(
            "compute",
            f"EC2 {a.instance_type} brokers",
            brokers * HOURS_PER_MONTH,
            _instance_price(inst.usd_per_hour, inst.source, a.instance_type),
            f"{brokers} x 730 h",
        ),
        _line(
            "compute",
            f"EC2 {a.controller_instance_type} controllers",
            a.controllers * HOURS_PER_MONTH,
            _instance_price(ctrl.usd_per_hour, ctrl.source, a.controller_instance_type),
            f"{a.controllers} x 730 h (KRaft)",
        ),
        _line(
            "storage",
            "EBS gp3 capacity",
            disk_gib,
            p.ebs_gp3_gb_month,
            f"{retained_gib(w):,.0f} GiB retained x {a.replication_factor} replicas x "
            f"{1 + a.disk_headroom_fraction:g} headroom",
        ),
        _line(
            "storage",
            "EBS gp3 throughput above included",
            extra_mbps,
            p.ebs_gp3_mbps_month,
            f"{broker_disk_mbps:.0f} MB/s written per broker vs {a.gp3_included_mbps:g} included",
        ),
        _line(
            "network",
            "cross-AZ: replication",
            written_gib * (a.replication_factor - 1),
            p.cross_az_gb,
            f"{a.replication_factor - 1} followers in other AZs",
        ),
        *_cross_az_client_lines(written_gib, read_gib, a, prices),
    ]
    sizing: dict[str, float | int | str] = {
        "brokers": brokers,
        "instance": a.instance_type,
        "network MB/s in per broker": round(a.replication_factor * w.write_mbps / brokers, 1),
        "network MB/s out per broker": round(
            (w.read_mbps + (a.replication_factor - 1) * w.write_mbps) / brokers, 1
        ),
        "baseline network MB/s": round(inst.network_baseline_mbps, 1),
        "EBS MB/s per broker": round(broker_disk_mbps, 1),
        "EBS GiB provisioned": round(disk_gib, 1),
    }
    return Estimate(system="kafka", sizing=sizing, lines=lines)


def _instance_price(usd_per_hour: float, source: str, name: str) -> Price:
    return Price(usd=usd_per_hour, per=1, unit=f"{name} instance-hour", source=source)


# -- a load that varies over the day ------------------------------------------------------


def diurnal_profile(min_write_mbps: float, max_write_mbps: float, hours: int = 24) -> list[float]:
    """Hourly produce rates of a day: a cosine from the minimum (hour 0) to the maximum
    (hour 12) and back; the mean is (min + max) / 2."""
    span = max_write_mbps - min_write_mbps
    return [
        min_write_mbps + span * (1 - math.cos(2 * math.pi * h / hours)) / 2 for h in range(hours)
    ]


def _average(estimates: list[Estimate], system: str) -> Estimate:
    """Mean of per-hour monthly estimates, line by line (same items in the same order)."""
    n = len(estimates)
    merged: dict[str, LineItem] = {}
    # the hour with the most lines (e.g. every S3 tier) fixes the order
    for e in sorted(estimates, key=lambda e: -len(e.lines)):
        for line in e.lines:
            have = merged.get(line.item)
            if have is None:
                merged[line.item] = line.model_copy(
                    update={
                        "quantity": line.quantity / n,
                        "usd_month": line.usd_month / n,
                        "basis": "mean over the day's hours",
                    }
                )
            else:
                have.quantity += line.quantity / n
                have.usd_month += line.usd_month / n
    return Estimate(system=system, sizing={}, lines=list(merged.values()))


def price_profile(
    hourly_write_mbps: list[float],
    read_ratio: float,
    retention_h: float,
    partitions: int,
    prices: PriceTable,
    assumptions: Assumptions,
) -> tuple[Estimate, Estimate]:
    """One month of days shaped like ``hourly_write_mbps``.

    This system follows the load: each hour is priced with the brokers the autoscaler sizes
    for that hour. Kafka cannot move data fast enough to follow a daily curve, so its brokers
    (and their per-broker EBS throughput) are sized for the peak hour, while its storage and
    network follow the bytes like ours. Retention spans whole days, so stored bytes are the
    daily mean x retention for both."""
    loads = [
        Workload(
            write_mbps=w, read_mbps=w * read_ratio, retention_h=retention_h, partitions=partitions
        )
        for w in hourly_write_mbps
    ]
    ours_hours = [price_ours(w, prices, assumptions) for w in loads]
    ours = _average(ours_hours, "ours")
    peak = max(loads, key=lambda w: w.write_mbps)
    kafka_peak = price_kafka(peak, prices, assumptions)
    kafka_mean = _average([price_kafka(w, prices, assumptions) for w in loads], "kafka")
    peak_items = {
        line.item: line
        for line in kafka_peak.lines
        if line.category == "compute" or "throughput" in line.item
    }
    kafka_lines = [
        peak_items[line.item].model_copy(
            update={"basis": "sized for the peak hour: " + peak_items[line.item].basis}
        )
        if line.item in peak_items
        else line
        for line in kafka_mean.lines
    ]
    brokers = [int(e.sizing["brokers"]) for e in ours_hours]
    ours.sizing = {
        "write MB/s min/mean/max": f"{min(hourly_write_mbps):g}/"
        f"{sum(hourly_write_mbps) / len(hourly_write_mbps):.0f}/{max(hourly_write_mbps):g}",
        "brokers min/mean/max": f"{min(brokers)}/{sum(brokers) / len(brokers):.1f}/{max(brokers)}",
    }
    kafka = Estimate(
        system="kafka",
        sizing={
            "brokers": kafka_peak.sizing["brokers"],
            "instance": assumptions.kafka.instance_type,
        },
        lines=kafka_lines,
    )
    return ours, kafka
