"""One tenant's settings: its name and sizing knobs, each with a default.

A tenant comes from the CDK context (`cdk deploy -c tenant=acme`, or `-c tenant=acme,globex`)
and, optionally, a TOML tenants file (`-c tenants_file=tenants.toml`) that lists tenants and
overrides knobs per tenant:

    [tenants.acme]
    min_brokers = 3
    max_brokers = 12

    [tenants.globex]
    broker_cpu = 4096
    broker_memory_mib = 16384
"""

from __future__ import annotations

import tomllib
from pathlib import Path
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, model_validator

from broker_service.control.sizing import DEFAULT_READ_FANOUT, BrokerCapacity

# Lower-case letters, digits and dashes: the name goes into stack names, table and cluster
# names, log groups and the metrics namespace, so it must be valid in all of them.
TENANT_NAME_PATTERN = r"^[a-z][a-z0-9-]{0,23}$"


class TenantSettings(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    name: str = Field(pattern=TENANT_NAME_PATTERN)

    # -- brokers (Fargate) ----------------------------------------------------------------
    # One vCPU, one broker process a task by default: at the measured figures
    # (control/sizing.py) three of them carry a small tenant (80 MB/s in, 160 MB/s out, at a
    # third of their CPU); a bigger tenant gets more tasks from the autoscaler, or bigger ones.
    broker_cpu: int = Field(1024, description="task vCPU units (1024 = 1 vCPU)")
    broker_processes: int | None = Field(
        None,
        ge=1,
        description="broker processes per task (default: one per vCPU, broker_cpu / 1024); "
        "each listens on broker_port + i and serves metrics on metrics_port + i",
    )
    broker_memory_mib: int = Field(4096, description="task memory (4 GB)")
    min_brokers: int = Field(3, ge=1, description="autoscaler lower bound (3: one per AZ)")
    max_brokers: int = Field(12, ge=1, description="autoscaler upper bound")
    target_mbps_per_broker: float | None = Field(
        None,
        gt=0,
        description="override the produce MB/s one broker is sized for (default: "
        "control/sizing.py's measured figure for broker_cpu; consume in the measured ratio)",
    )
    read_fanout: float = Field(
        DEFAULT_READ_FANOUT,
        ge=0,
        description="consumed bytes per produced byte the throughput alarms assume",
    )
    peak_produce_mbps: float | None = Field(
        None,
        gt=0,
        description="the produce MB/s the tenant must reach: refused if max_brokers cannot "
        "carry it (at read_fanout)",
    )
    broker_port: int = Field(9092, description="Kafka client port")
    metrics_port: int = Field(9464, description="Prometheus /metrics port (VPC only)")
    zonal_bootstrap: bool = Field(
        True,
        description="a listener per AZ on every broker (ports broker_port + 1, + 2, ...) and "
        "on the NLB: a client bootstrapping through its AZ's address is served by brokers "
        "of its AZ only (docs/ZONES.md)",
    )

    # -- network -------------------------------------------------------------------------
    vpc_id: str | None = Field(None, description="deploy into this VPC (default: a new one)")
    vpc_cidr: str = Field("10.80.0.0/16", description="CIDR of the new VPC")
    max_azs: int = Field(3, ge=2, description="AZs of the new VPC")
    client_cidrs: tuple[str, ...] = Field(
        (), description="extra CIDRs allowed to the client port (default: the VPC's CIDR)"
    )
    internet_facing_nlb: bool = Field(False, description="public NLB (default: internal)")
    control_path: Literal["endpoints", "nat_per_az"] = Field(
        "endpoints",
        description="how tasks and functions reach ECR, Logs, Secrets Manager, CloudWatch and "
        "ECS: interface endpoints in every AZ (no NAT, no internet egress) or a NAT gateway "
        "per AZ; either survives the loss of one AZ (S3 and DynamoDB: gateway endpoints)",
    )

    # -- storage ------------------------------------------------------------------------
    storage_prefix: str = Field("data", description="key prefix of the broker's objects")
    deletion_protection: bool = Field(True, description="DynamoDB deletion protection")
    retain_data: bool = Field(True, description="keep bucket and table on `cdk destroy`")
    adopt_data: bool = Field(
        False,
        description="use the bucket and table a destroyed deployment of this tenant retained "
        "(same names) instead of creating them: redeploy with the data kept",
    )
    express_wal_az_id: str | None = Field(
        None, description="create an S3 Express One Zone bucket for the WAL in this AZ id"
    )
    metadata_billing: Literal["on_demand", "provisioned"] = Field(
        "on_demand",
        description="the metadata table's capacity mode. on_demand: pay per request, nothing "
        "to plan (small or bursty tenants). provisioned: write and read capacity auto-scaled "
        "between the bounds below to keep metadata_target_utilization_percent in use, ~2.4x "
        "cheaper per request at a steady load (`cost --set ours.ddb_billing=provisioned`); a "
        "burst above the capacity is throttled (the brokers retry) until it scales up",
    )
    metadata_min_write_capacity: int = Field(
        25, ge=1, description="provisioned: lowest write capacity (WCU) auto scaling keeps"
    )
    metadata_max_write_capacity: int = Field(
        40_000, ge=1, description="provisioned: highest write capacity (WCU)"
    )
    metadata_min_read_capacity: int = Field(
        25, ge=1, description="provisioned: lowest read capacity (RCU) auto scaling keeps"
    )
    metadata_max_read_capacity: int = Field(
        10_000, ge=1, description="provisioned: highest read capacity (RCU)"
    )
    metadata_target_utilization_percent: int = Field(
        70, ge=20, le=90, description="provisioned: share of capacity auto scaling keeps in use"
    )

    # -- security -------------------------------------------------------------------------
    authorizer: Literal["acl", "none"] = Field(
        "acl",
        description="acl: Kafka ACLs (only User:admin may do anything until ACLs are "
        "created); none: every authenticated user may do everything",
    )
    tls_secret_arn: str | None = Field(
        None,
        description="Secrets Manager secret with JSON keys cert_pem and key_pem: the listener "
        "becomes SASL_SSL (default: SASL_PLAINTEXT, inside the VPC only)",
    )

    # -- control plane ------------------------------------------------------------------
    function_memory_mib: int = Field(512)
    compaction_timeout_s: int = Field(
        900,
        ge=60,
        le=900,
        description="the compaction function's timeout (Lambda's most): a run works until a "
        "minute before it, the 5-minute ticks in between find the compactor lease held, so "
        "one compactor works nearly all the time (120 s runs every 5 minutes, each stopping "
        "after 4 GiB, merged ~14 MB/s at most)",
    )
    compaction_memory_mib: int = Field(
        1769,
        ge=512,
        description="the compaction function's memory: one vCPU (Lambda's CPU grows with "
        "memory up to 1,769 MB, and compaction is single-threaded Python) and room for its "
        "read buffer",
    )
    compaction_shards: int = Field(
        1,
        ge=1,
        le=64,
        description="compactors working at once, each under its own lease and schedule "
        "target (COMPACTION_SHARDS): one merges ~180 MB/s of writes (control/sizing.py); "
        "`cost` prints the compactors a write rate needs",
    )
    function_timeout_s: int = Field(120)
    function_reserved_concurrency: int | None = Field(
        None, description="reserve Lambda concurrency for this tenant's functions"
    )
    consumer_lag_alarm: int = Field(100_000, description="alarm when a group lags this much")
    produce_latency_alarm_ms: float = Field(500.0)

    # -- logs ----------------------------------------------------------------------------
    log_retention_days: int = Field(30)

    @model_validator(mode="after")
    def _bounds(self) -> TenantSettings:
        if self.max_brokers < self.min_brokers:
            raise ValueError(f"max_brokers {self.max_brokers} < min_brokers {self.min_brokers}")
        for kind in ("write", "read"):
            low = getattr(self, f"metadata_min_{kind}_capacity")
            high = getattr(self, f"metadata_max_{kind}_capacity")
            if high < low:
                raise ValueError(
                    f"metadata_max_{kind}_capacity {high} < metadata_min_{kind}_capacity {low}"
                )
        peak = self.peak_produce_mbps
        if peak is not None:
            need = self.capacity.brokers_needed(peak, peak * self.read_fanout)
            if need > self.max_brokers:
                top = self.capacity.produce_capacity_mbps(self.max_brokers, self.read_fanout)
                raise ValueError(
                    f"peak_produce_mbps {peak:g} needs {need} brokers of {self.broker_cpu} CPU "
                    f"units (read fan-out {self.read_fanout:g}); max_brokers "
                    f"{self.max_brokers} carries {top:.0f} MB/s"
                )
        return self

    @property
    def capacity(self) -> BrokerCapacity:
        """What one broker of this tenant is sized for (control/sizing.py)."""
        if self.target_mbps_per_broker is not None:
            return BrokerCapacity.for_produce(self.target_mbps_per_broker)
        return BrokerCapacity.for_cpu_units(self.broker_cpu)

    @property
    def processes(self) -> int:
        """Broker processes in each task: one per vCPU unless set (runtime/processes.py)."""
        return self.broker_processes or max(1, self.broker_cpu // 1024)

    @property
    def metrics_ports(self) -> list[int]:
        return [self.metrics_port + i for i in range(self.processes)]

    @property
    def max_produce_mbps(self) -> float:
        """Produce MB/s max_brokers carry at read_fanout."""
        return self.capacity.produce_capacity_mbps(self.max_brokers, self.read_fanout)

    @property
    def resource_prefix(self) -> str:
        """Prefix of every physical name this tenant owns (table, cluster, functions...)."""
        return f"kafka-{self.name}"

    @property
    def listener_protocol(self) -> str:
        """The brokers' only listener: SASL over TLS when a certificate is given."""
        return "SASL_SSL" if self.tls_secret_arn else "SASL_PLAINTEXT"

    @property
    def metrics_namespace(self) -> str:
        return f"Kafka/{self.name}"

    @property
    def stack_prefix(self) -> str:
        return f"Kafka-{self.name}"


def load_tenants(context: dict[str, Any]) -> list[TenantSettings]:
    """The tenants to build: ``tenant`` (one name or a comma-separated list) and/or every
    tenant of ``tenants_file``; knobs from the file, then from ``-c <knob>=...`` when exactly
    one tenant is built."""
    file_tenants: dict[str, dict[str, Any]] = {}
    if context.get("tenants_file"):
        with Path(str(context["tenants_file"])).open("rb") as f:
            file_tenants = dict(tomllib.load(f).get("tenants", {}))
    names = [n.strip() for n in str(context.get("tenant") or "").split(",") if n.strip()]
    if not names:
        names = list(file_tenants) or ["default"]
    knobs = set(TenantSettings.model_fields) - {"name"}
    cli_knobs = {k: v for k, v in context.items() if k in knobs}
    if cli_knobs and len(names) > 1:
        raise ValueError("knobs on the command line apply to one tenant; use a tenants file")
    tenants = []
    for name in names:
        settings = {**file_tenants.get(name, {}), **cli_knobs}
        tenants.append(TenantSettings(name=name, **settings))
    return tenants
