"""All broker settings in one place. Every knob has a default and an env var (BROKER_*)."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Literal

from pydantic import Field, SecretStr
from pydantic_settings import BaseSettings, SettingsConfigDict

from broker_service.config.compaction import CompactionConfig
from broker_service.config.listeners import Listener, build_listeners


def inter_broker_listener(listeners: list[Listener]) -> Listener:
    """The listener brokers reach each other on: the one named PLAINTEXT, else the first of
    protocol PLAINTEXT without a rack, else the first without a rack (zonal listeners serve
    clients of one zone), else the first."""
    for test in (
        lambda lst: lst.name == "PLAINTEXT",
        lambda lst: lst.protocol == "PLAINTEXT" and lst.rack is None,
        lambda lst: lst.rack is None,
    ):
        found = next((lst for lst in listeners if test(lst)), None)
        if found is not None:
            return found
    return listeners[0]


class BrokerConfig(BaseSettings):
    model_config = SettingsConfigDict(env_prefix="BROKER_", extra="ignore")

    host: str = Field("127.0.0.1", description="address to listen on")
    port: int = Field(9092, description="port to listen on (0: any free port, see ready_file)")
    advertised_host: str | None = Field(None, description="host clients are told (default: host)")
    advertised_port: int | None = Field(None, description="port clients are told (default: port)")
    node_id: int = Field(1, description="this broker's id")
    rack: str | None = Field(None, description="rack / availability zone")
    data_dir: Path = Field(Path("data"), description="embedded data: objects, SQLite, WAL")
    ready_file: Path | None = Field(
        None,
        description="once serving, write the bound ports here (JSON, atomically; "
        "runtime/ready.py): how whoever started a broker on port 0 learns its ports",
    )

    storage: str | None = Field(
        None, description="object store: s3://bucket/prefix or a directory (default data_dir)"
    )
    metadata: str | None = Field(
        None, description="metadata store: dynamodb://table or a SQLite file (default data_dir)"
    )
    wal: Literal["file", "object"] = Field(
        "file", description="file: fsync'd local file; object: one committed object per flush"
    )

    processes: Annotated[int, Field(ge=1)] | Literal["auto"] = Field(
        1,
        description="broker processes in this task, one per vCPU (auto: as many as the "
        "vCPUs); each is a broker of its own: node id (auto, or this id + i), ports (+ i x "
        "the listener ports' span; metrics + i), WAL, caches (runtime/processes.py)",
    )
    auto_create_topics: bool = Field(True, description="create unknown topics on Metadata")
    default_partitions: int = Field(1, ge=1, description="partitions of auto-created topics")
    socket_request_max_bytes: int = Field(100 * 1024 * 1024, description="largest request frame")
    max_connections: int = Field(
        50_000, ge=1, description="Kafka's max.connections: open client connections, in all"
    )
    max_connections_per_ip: int = Field(
        2**31 - 1,
        ge=1,
        description="Kafka's max.connections.per.ip (behind an NLB without "
        "client IP preservation every client has the NLB's address: keep it unlimited there)",
    )
    recompress_max_bytes: int = Field(
        64 << 20,
        ge=1 << 20,
        description="topics with a compression.type: the most a batch's "
        "records may decompress to when the broker re-encodes it (more: MESSAGE_TOO_LARGE)",
    )
    offsets_topic_partitions: int = Field(
        8,
        ge=1,
        le=1000,
        description="partitions of __consumer_offsets when it is created "
        "(Kafka: 50; fixed afterwards, as in Kafka)",
    )
    message_max_bytes: int = Field(1048588, description="largest record batch (topic default)")

    wal_flush_ms: float | None = Field(
        None,
        ge=0,
        description="group-commit linger (default: 0 for the file WAL, 50 for the "
        "object WAL, measured in bench/object_wal.py)",
    )
    wal_flush_bytes: int | None = Field(
        None,
        gt=0,
        description="flush at once when this much is pending (default: 12 MiB for the object "
        "WAL, whose flushes also carry zone-forwarded batches: a flush stays one per linger + "
        "commit cycle up to ~95 MB/s of WAL bytes per broker on AWS, past the ~78 MB/s of a "
        "1-vCPU broker at its sized rate with zone-aware clients (8 MiB until 2026-12-04 cut "
        "those cycles short: more, smaller objects); 4 MiB for the file WAL)",
    )
    wal_max_in_flight: int = Field(
        # 1 until 2026-12-04: a second flush then started whenever its linger ended, making
        # objects of rate x linger (~2.6x the PUTs at issue 19's workload); now it takes a
        # full group only (stream/wal/base.py), so objects are as large as with one
        2,
        ge=1,
        description="object WAL: flushes under way at once (their PUTs overlap, their "
        "commits stay in order); a flush beyond the first starts only with a full group "
        "(wal_flush_bytes pending), so more than one runs only at a rate one commit at a "
        "time cannot carry",
    )
    wal_segment_bytes: int = Field(
        16 << 20,
        description="WAL segment size (a segment is deleted once all of it is in objects: small "
        "segments give space back sooner, e.g. when the disk is nearly full)",
    )
    zone_forward_linger_ms: float | None = Field(
        None,
        ge=0,
        description="zone-forwarded produce with the file WAL: linger before writing a "
        "forward object (default: the WAL's group-commit linger; larger objects, fewer PUTs). "
        "The object WAL carries forwarded batches in its own flushes (its linger applies)",
    )
    zone_forward_max_bytes: int = Field(
        8 << 20,
        ge=1,
        description="zone-forwarded produce with the file WAL: largest forward object",
    )
    upload_interval_ms: int = Field(2000, description="max age of data before it goes to objects")
    upload_bytes: int = Field(32 << 20, description="upload as soon as this much is pending")
    object_block_bytes: int = Field(1 << 20, description="block size inside uploaded objects")
    log_cache_bytes: int = Field(256 << 20, description="memory for recent data (tail reads)")
    block_cache_bytes: int = Field(128 << 20, description="memory for blocks read from objects")
    group_initial_rebalance_delay_ms: int = Field(
        100, description="wait for more members before the first rebalance of a new group"
    )
    group_min_session_timeout_ms: int = Field(6000, description="smallest session.timeout.ms")
    group_max_session_timeout_ms: int = Field(1_800_000, description="largest session.timeout.ms")
    group_consumer_session_timeout_ms: int = Field(
        45_000, description="KIP-848 groups: session timeout (broker-side)"
    )
    group_consumer_heartbeat_interval_ms: int = Field(
        2000, description="KIP-848 groups: heartbeat interval given to members"
    )
    lease_ms: int = Field(
        6000,
        description="broker lease: renewed every third; a broker silent this long is "
        "fenced and its partitions move",
    )
    metadata_threads: int = Field(
        8,
        ge=1,
        description="threads for metadata store calls (lease renewal has one more of its own)",
    )
    producer_snapshot_interval_ms: int = Field(
        5000,
        description="how often a partition's producer state (idempotence, transactions) "
        "is snapshotted to the metadata store; a new leader replays the batches after it",
    )
    transaction_max_timeout_ms: int = Field(
        900_000, description="largest transaction.timeout.ms a producer may ask for"
    )
    transaction_scan_ms: int = Field(
        15_000,
        description="how often a broker looks for transactions it now coordinates "
        "that timed out or were left half-ended by a dead coordinator",
    )
    drain_timeout_ms: int = Field(
        20_000, description="on SIGTERM in a cluster: time to hand partitions to other brokers"
    )
    stop_timeout_ms: int = Field(
        25_000,
        gt=0,
        description="on SIGTERM: the whole stop (drain, WAL flush, upload) is cut short after "
        "this, the process exits (ECS SIGKILLs a task 30 s after SIGTERM); the drain gets at "
        "most 70% of it",
    )
    compaction: CompactionConfig = Field(
        default_factory=CompactionConfig, description="compaction's knobs (COMPACTION_*)"
    )
    compaction_interval_ms: int = Field(
        300_000,
        ge=0,
        description="run compaction/retention (control/compaction.py) this "
        "often; 0 disables it. Every broker tries; the compactor lease lets one run at a time "
        "(knobs: COMPACTION_* env vars)",
    )
    ranges_refresh_ms: int = Field(
        60_000,
        ge=0,
        description="re-read led partitions' ranges this often (compaction "
        "swaps objects behind the leader's back); 0: only when an object is gone",
    )
    log_level: str = Field("INFO", description="logging level")

    # -- metrics and the embedded control loops (docs/CONTROL.md) ---------------------------
    metrics_port: Annotated[int, Field(ge=0)] | Literal["auto"] = Field(
        9464,
        description="Prometheus /metrics port (0: off; auto: any free port, reported "
        "in the ready file)",
    )
    metrics_host: str | None = Field(None, description="/metrics listen address (default: host)")
    metrics_emf: bool = Field(False, description="print CloudWatch EMF lines on stdout")
    metrics_namespace: str | None = Field(
        None, description="EMF namespace (default Kafka/local); setting it turns EMF on"
    )
    metrics_interval_s: float = Field(60.0, gt=0, description="EMF line / consumer lag interval")
    node_id_auto: bool = Field(
        False,
        description="the node id came from the metadata store's counter (BROKER_NODE_ID=auto): "
        "never reused, so recovery may forget this broker once fenced (set by the CLI)",
    )
    task_arn: str | None = Field(
        None,
        description="this broker's ECS task ARN (default: from the ECS task metadata "
        "endpoint when running on ECS); recovery maps STOPPED tasks to brokers with it",
    )
    auto_balance: bool = Field(
        True,
        description="run the balancer on a timer (the controller only), so a restarted or "
        "new broker gets partitions back; on AWS the balancer Lambda does it (the stacks "
        "turn this off)",
    )
    balance_interval_s: float = Field(60.0, gt=0, description="balancer timer")
    balance_band: float = Field(0.10, gt=0, description="allowed deviation from the mean load")
    balance_min_bytes_per_s: float = Field(
        1 << 20, ge=0, description="cluster mean load below which the balancer does nothing"
    )
    balance_max_moves: int = Field(5, ge=1, description="partition moves per balancer run")
    autoscaler_interval_s: float = Field(
        0.0, ge=0, description="log the autoscaler's decision on a timer (0: off; no ECS here)"
    )
    autoscaler_target_mbps: float = Field(
        40.0,
        gt=0,
        description="produce MB/s one broker is sized for (control/sizing.py; "
        "consume in the measured ratio)",
    )
    # -- security (docs/SECURITY.md) -------------------------------------------------------
    listeners: str | None = Field(
        None,
        description="NAME://host:port,... with NAME one of PLAINTEXT, SSL, SASL_PLAINTEXT, "
        "SASL_SSL (default: one PLAINTEXT listener on host:port)",
    )
    advertised_listeners: str | None = Field(
        None, description="what clients are told per listener (same format; by name or position)"
    )
    listener_security_protocol_map: str | None = Field(
        None,
        description="NAME:PROTOCOL,... gives listeners other names (Kafka's "
        "listener.security.protocol.map), e.g. a listener per availability zone",
    )
    listener_racks: str | None = Field(
        None,
        description="NAME:rack,...: clients connecting through that listener are in that "
        "zone (zone-aware produce and fetch, docs/ZONES.md); e.g. ZONE_A:us-east-1a",
    )
    sasl_mechanisms: str = Field(
        "PLAIN,SCRAM-SHA-256,SCRAM-SHA-512", description="SASL mechanisms offered"
    )
    tls_cert_file: Path | None = Field(None, description="server certificate chain (PEM file)")
    tls_key_file: Path | None = Field(None, description="server private key (PEM file)")
    tls_cert_pem: str | None = Field(
        None, description="server certificate chain as PEM text (e.g. from Secrets Manager)"
    )
    tls_key_pem: str | None = Field(None, description="server private key as PEM text")
    tls_client_ca_file: Path | None = Field(
        None, description="CA bundle; when set, SSL listeners require client certificates"
    )
    admin_user: str | None = Field(None, description="bootstrap SCRAM user created if absent")
    admin_password: SecretStr | None = Field(None, description="its password (never logged)")
    super_users: str = Field(
        "", description="principals allowed everything, ';'-separated: User:admin;User:ops"
    )
    authorizer: Literal["none", "acl"] = Field(
        "none", description="none: allow all; acl: Kafka ACLs from the metadata store"
    )
    allow_everyone_if_no_acl_found: bool = Field(
        False, description="acl authorizer: allow a resource that has no ACL at all"
    )
    sasl_session_lifetime_ms: int = Field(
        0, ge=0, description="KIP-368: clients re-authenticate within this (0: never)"
    )
    security_refresh_ms: int = Field(
        1000, ge=50, description="how often ACLs and quotas are re-read from the metadata store"
    )
    quota_window_ms: int = Field(1000, ge=10, description="quota sample window")
    quota_window_samples: int = Field(11, ge=2, description="quota samples kept")

    def describe_storage(self) -> str:
        d = self.data_dir.resolve()
        objects = self.storage or f"{d / 'objects'}"
        metadata = self.metadata or f"{d / 'metadata.sqlite'}"
        wal = "object WAL" if self.wal == "object" else f"file WAL in {d / 'wal'}"
        return f"objects in {objects}, metadata in {metadata}, {wal}"

    @property
    def effective_wal_flush_ms(self) -> float:
        if self.wal_flush_ms is not None:
            return self.wal_flush_ms
        return 50.0 if self.wal == "object" else 0.0

    @property
    def effective_wal_flush_bytes(self) -> int:
        if self.wal_flush_bytes is not None:
            return self.wal_flush_bytes
        return 12 << 20 if self.wal == "object" else 4 << 20

    @property
    def effective_zone_forward_linger_ms(self) -> float:
        if self.zone_forward_linger_ms is not None:
            return self.zone_forward_linger_ms
        return self.effective_wal_flush_ms

    @property
    def emf_namespace(self) -> str | None:
        """The EMF namespace when EMF is on (BROKER_METRICS_EMF or a namespace set)."""
        if self.metrics_namespace:
            return self.metrics_namespace
        return "Kafka/local" if self.metrics_emf else None

    @property
    def advertised(self) -> tuple[str, int]:
        """The endpoint registered in the metadata store (what brokers use to reach each
        other): the inter-broker listener's (``inter_broker_listener``)."""
        primary = inter_broker_listener(self.listener_list())
        return (primary.advertised_host, primary.advertised_port)

    def listener_list(self) -> list[Listener]:
        return build_listeners(
            self.listeners,
            self.advertised_listeners,
            self.host,
            self.port,
            self.advertised_host,
            self.advertised_port,
            self.listener_security_protocol_map,
            self.listener_racks,
        )

    def super_user_set(self) -> frozenset[str]:
        # ';'-separated, as Kafka's super.users: certificate DNs contain commas
        return frozenset(s.strip() for s in self.super_users.split(";") if s.strip())

    def sasl_mechanism_list(self) -> list[str]:
        return [m.strip().upper() for m in self.sasl_mechanisms.split(",") if m.strip()]
