"""The one sizing model: how much load a broker carries, and so how many brokers a load needs.

Pure (no AWS, no I/O). Used by the autoscaler (``control/autoscaler.py``: desired brokers
from measured bytes in and out), by the CDK stacks (the throughput alarms' thresholds and the
``max_brokers`` sanity check, ``stacks/``) and by the cost model (``cost/model.py``: brokers
needed for a priced workload), so the three always agree.

A broker's load is counted in "brokers' worth": ``produce / P + consume / C``, where P and C
are the produce and consume MB/s (10^6 bytes) one broker is sized for. Writes cost far more
CPU per byte than reads served from the log cache, so the two are not simply added. P and C
scale with the task's vCPUs: the figures below are per vCPU.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

MB = 1_000_000

# -- measured figures (per vCPU of a broker task) ----------------------------------------------
# One broker process uses at most one vCPU (the GIL); a task runs one per vCPU (``serve
# --processes auto``). What a vCPU carries follows from the broker's CPU time per byte, measured
# on this project's 2-core Xeon (2.6 GHz) host, the broker process alone counted (not the
# clients, not moto):
# - produce: 3.45-3.53 CPU-s per GiB (bench/object_wal.py --backends s3 --flush-ms 50
#   --records 400000 --partitions 32, 2026-12-03: the object WAL on the S3 and DynamoDB APIs,
#   idempotent acks=all, 1 KiB records in 1 MB batches, 3 rounds of 414 MB at 96-101 MB/s,
#   the broker at a third of a core: moto, not the broker, was the limit);
# - consume: 3.9 CPU-s per GiB (bench/produce_stages.py, 2026-12-02, 32 partitions from the
#   log cache; 1.2 and 1.4 at 1 and 4 partitions). The 2026-12-03 re-run, whose consume phase
#   starts once the broker is idle (no uploads in it), measured 2.2: the higher figure stays,
#   for headroom.
# A broker is planned to use PLANNED_CPU_SHARE of its vCPU at the load it is sized for: the rest
# is headroom for a failed broker's partitions (a third more load with three brokers, half
# with two), catch-up reads from S3, TLS (not measured), small producer batches (more CPU per
# byte) and bursts. Fargate's vCPU is taken as this host's core; a task's network bandwidth is
# not measured (docs/PERFORMANCE.md).
# Before 2026-12-03 the figures were 20 and 80 MB/s per vCPU: the wall-clock throughput of a
# broker on a host it shared with moto and the client, not what the broker itself can do.
PRODUCE_CPU_S_PER_GIB = 3.5
CONSUME_CPU_S_PER_GIB = 3.9
PLANNED_CPU_SHARE = 1 / 3
_GIB = 1 << 30
PRODUCE_MBPS_PER_VCPU = round(PLANNED_CPU_SHARE * _GIB / PRODUCE_CPU_S_PER_GIB / MB, 1)  # 102.3
CONSUME_MBPS_PER_VCPU = round(PLANNED_CPU_SHARE * _GIB / CONSUME_CPU_S_PER_GIB / MB, 1)  # 91.8
DEFAULT_TASK_VCPU = 1.0  # the stacks' default task (1024 CPU units, stacks/tenant.py)

# What one compactor merges. Its CPU goes mostly to requests (botocore spends ~2-3 ms of CPU on
# each S3 or DynamoDB call), so it scales with the WAL objects merged as much as with bytes:
# bench/compaction.py --wal-flush-ms 50 and 400 on 2026-12-03, 124 MB merged either way,
# medians of three runs: 1.16 CPU-s with ~66 WAL objects, 0.67 with 15 (S3 and DynamoDB on
# moto over HTTP, where botocore also hashes every PUT body for its signature). A run also
# spends ~0.08 CPU-s finding there is nothing to merge. A tenant runs one compactor at a time
# (one lease): the stacks give a run the bytes it merges in its budget, the cost model says
# when the write rate needs more.
COMPACTION_CPU_S_PER_GIB = 3.9
COMPACTION_CPU_S_PER_WAL_OBJECT = 0.0094
# WAL objects per GiB written the stacks plan a compaction run's bytes for: a 1-vCPU broker at
# its sized rate with zone-aware clients, two thirds of each object a zone-forwarded copy.
# Kept at the cost model's figure with an 80 ms commit (~10 MB objects, 177/GiB): since
# 2026-12-04 the model counts each commit's upload and prices 12 MiB objects there (142/GiB),
# which a faster AWS upload than the model's guess would make smaller; planning for more
# objects than that leaves a run CPU to spare (213/GiB with the 8 MiB flushes before)
PLANNED_WAL_OBJECTS_PER_GIB = 177


def compaction_cpu_s_per_gib(wal_objects_per_gib: float) -> float:
    """CPU seconds one compactor spends per GiB it merges out of WAL objects this dense."""
    return COMPACTION_CPU_S_PER_GIB + COMPACTION_CPU_S_PER_WAL_OBJECT * wal_objects_per_gib


def compaction_mbps_per_vcpu(wal_objects_per_gib: float = PLANNED_WAL_OBJECTS_PER_GIB) -> float:
    return round(_GIB / compaction_cpu_s_per_gib(wal_objects_per_gib) / MB, 1)


COMPACTION_MBPS_PER_VCPU = compaction_mbps_per_vcpu()  # 193.0

# Consumed bytes per produced byte that a cluster is sized for when nothing better is known
# (one consumer group reading everything): the alarms watch produce bytes only.
DEFAULT_READ_FANOUT = 1.0

# The throughput alarms (what wakes the autoscaler early): above 80 % / below 30 % of what the
# minimum cluster is sized for.
HIGH_WATER = 0.8
LOW_WATER = 0.3


@dataclass(frozen=True, slots=True)
class BrokerCapacity:
    """What one broker is sized for, MB/s."""

    produce_mbps: float
    consume_mbps: float

    def __post_init__(self) -> None:
        if self.produce_mbps <= 0 or self.consume_mbps <= 0:
            raise ValueError(f"capacity must be positive: {self}")

    @classmethod
    def for_vcpu(cls, vcpu: float = DEFAULT_TASK_VCPU) -> BrokerCapacity:
        return cls(PRODUCE_MBPS_PER_VCPU * vcpu, CONSUME_MBPS_PER_VCPU * vcpu)

    @classmethod
    def for_cpu_units(cls, cpu_units: int) -> BrokerCapacity:
        """From an ECS task's CPU units (1024 per vCPU)."""
        return cls.for_vcpu(cpu_units / 1024)

    @classmethod
    def for_produce(cls, produce_mbps: float) -> BrokerCapacity:
        """A broker sized for ``produce_mbps`` of produce, consume in the measured ratio (an
        override of the measured figures: tests, a tenant's own benchmark)."""
        return cls(produce_mbps, produce_mbps * CONSUME_MBPS_PER_VCPU / PRODUCE_MBPS_PER_VCPU)

    def units(self, produce_mbps: float, consume_mbps: float) -> float:
        """A load in brokers' worth."""
        return produce_mbps / self.produce_mbps + consume_mbps / self.consume_mbps

    def units_of_bytes(self, in_bytes_per_s: float, out_bytes_per_s: float) -> float:
        return self.units(in_bytes_per_s / MB, out_bytes_per_s / MB)

    def brokers_needed(self, produce_mbps: float, consume_mbps: float, min_brokers: int = 1) -> int:
        return max(min_brokers, math.ceil(self.units(produce_mbps, consume_mbps) - 1e-9))

    def produce_capacity_mbps(
        self, brokers: int, read_fanout: float = DEFAULT_READ_FANOUT
    ) -> float:
        """Produce MB/s ``brokers`` brokers carry when each produced byte is read
        ``read_fanout`` times."""
        return brokers / (1 / self.produce_mbps + read_fanout / self.consume_mbps)


@dataclass(frozen=True, slots=True)
class ProduceAlarmThresholds:
    high_bytes_per_s: float
    low_bytes_per_s: float


def produce_alarm_thresholds(
    capacity: BrokerCapacity, min_brokers: int, read_fanout: float = DEFAULT_READ_FANOUT
) -> ProduceAlarmThresholds:
    """Cluster produce bytes/s above which (below which) the autoscaler is woken: a share of
    what the minimum cluster carries at the assumed read fan-out."""
    cap = capacity.produce_capacity_mbps(min_brokers, read_fanout) * MB
    return ProduceAlarmThresholds(HIGH_WATER * cap, LOW_WATER * cap)
