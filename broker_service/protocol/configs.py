"""Kafka's topic and broker configs: names, types, defaults, validators, and whether each one
means something here or is accepted and inert. Pure data and validation, no I/O.

Values are strings on the wire and in the metadata store, as in Kafka. Parsing and the error
messages follow Kafka's ``ConfigDef`` ("Invalid value X for configuration Y: ..."); the types
and sources are the numbers DescribeConfigs uses.

Resolution of a topic's effective value (``resolve``), highest precedence first: the topic's
override, the cluster-wide dynamic default of its broker synonym (``kafka-configs --alter
--entity-type brokers --entity-default``), this broker's static setting, Kafka's default.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass

from broker_service.protocol import errors as E

# DescribeConfigs config types (KIP-569); UNKNOWN: a custom config, whose type nobody knows
UNKNOWN = 0
BOOLEAN, STRING, INT, SHORT, LONG, DOUBLE, LIST, CLASS, PASSWORD = 1, 2, 3, 4, 5, 6, 7, 8, 9
_TYPE_NAMES = {BOOLEAN: "BOOLEAN", STRING: "STRING", INT: "INT", SHORT: "SHORT", LONG: "LONG",
               DOUBLE: "DOUBLE", LIST: "LIST", CLASS: "CLASS", PASSWORD: "PASSWORD"}  # fmt: skip

# DescribeConfigs config sources
TOPIC_CONFIG = 1
DYNAMIC_BROKER_CONFIG = 2
DYNAMIC_DEFAULT_BROKER_CONFIG = 3
STATIC_BROKER_CONFIG = 4
DEFAULT_CONFIG = 5
DYNAMIC_BROKER_LOGGER_CONFIG = 6

INT32_MAX = 2**31 - 1
INT64_MAX = 2**63 - 1
LONG_MAX = str(INT64_MAX)
MAX_TOPIC_NAME = 249
_LEGAL = re.compile(r"[a-zA-Z0-9._-]+")
_INTEGER = re.compile(r"[+-]?[0-9]+")

Check = Callable[[object], str | None]  # parsed value -> error message or None


class InvalidTopic(ValueError, E.InvalidTopicException):
    pass


class InvalidConfig(ValueError, E.InvalidConfig):
    """A config name or value Kafka refuses (INVALID_CONFIG for topics, INVALID_REQUEST for
    broker configs, as Kafka answers them)."""


# -- validators (Kafka's ConfigDef.Range / ValidString / ValidList) -----------------------------
def at_least(lo: int) -> Check:
    return lambda v: None if v >= lo else f"Value must be at least {lo}"  # type: ignore[operator]


def between(lo: int, hi: int) -> Check:
    def check(v: object) -> str | None:
        if v < lo:  # type: ignore[operator]
            return f"Value must be at least {lo}"
        if v > hi:  # type: ignore[operator]
            return f"Value must be no more than {hi}"
        return None

    return check


def one_of(*choices: str) -> Check:
    return lambda v: None if v in choices else f"String must be one of: {', '.join(choices)}"


def list_of(*choices: str) -> Check:
    def check(v: object) -> str | None:
        bad = [x for x in v if x not in choices]  # type: ignore[attr-defined]
        return f"String must be one of: {', '.join(choices)}" if bad else None

    return check


def gzip_level(v: object) -> str | None:
    return None if v == -1 or 1 <= v <= 9 else "Value must be -1 or between 1 and 9"  # type: ignore[operator]


@dataclass(frozen=True, slots=True)
class ConfigDef:
    name: str
    type: int
    default: str | None
    check: Check | None = None
    applied: bool = False  # False: accepted and reported, but nothing here acts on it
    doc: str = ""
    synonym: str | None = None  # the broker config giving a topic config its default
    dynamic: bool = False  # broker configs: alterable as a cluster-wide dynamic default

    def parse(self, value: str | None) -> object:
        """The typed value (Kafka's ConfigDef.parseType); raises InvalidConfig."""
        if value is None:
            if self.default is None:
                return None
            value = self.default
        v = value.strip()
        try:
            if self.type == BOOLEAN:
                if v.lower() not in ("true", "false"):
                    raise ValueError("Expected value to be either true or false")
                return v.lower() == "true"
            if self.type in (INT, SHORT, LONG):
                if not _INTEGER.fullmatch(v):  # Python's int() also takes "1_000"
                    raise ValueError
                n = int(v)
                bits = {INT: 31, SHORT: 15, LONG: 63}[self.type]
                if not -(2**bits) <= n < 2**bits:
                    raise ValueError
                return n
            if self.type == DOUBLE:
                return float(v)
            if self.type == LIST:
                return [x.strip() for x in v.split(",") if x.strip()] if v else []
        except ValueError as exc:
            msg = (
                str(exc)
                if self.type == BOOLEAN
                else f"Not a number of type {_TYPE_NAMES[self.type]}"
            )
            raise InvalidConfig(
                f"Invalid value {value} for configuration {self.name}: {msg}"
            ) from None
        return v

    def validate(self, value: str | None) -> str:
        """The value as stored (Kafka keeps the string given); raises InvalidConfig."""
        if value is None:
            raise InvalidConfig(f"Null value not supported for topic configs: {self.name}")
        parsed = self.parse(value)
        problem = self.check(parsed) if self.check is not None else None
        if problem is not None:
            raise InvalidConfig(f"Invalid value {value} for configuration {self.name}: {problem}")
        return value

    def documentation(self) -> str:
        return f"{self.doc} [{'applied here' if self.applied else 'accepted; inert here'}]"


def _t(
    name: str,
    type_: int,
    default: str | None,
    check: Check | None = None,
    *,
    applied: bool = False,
    doc: str = "",
    synonym: str | None = None,
) -> ConfigDef:
    return ConfigDef(name, type_, default, check, applied, doc, synonym)


_CODECS = ("uncompressed", "zstd", "lz4", "snappy", "gzip", "producer")

# Kafka 3.9's topic configs (LogConfig), with 4.0's additions; defaults are Kafka's.
TOPIC_CONFIGS: dict[str, ConfigDef] = {d.name: d for d in [
    _t("cleanup.policy", LIST, "delete", list_of("compact", "delete"), applied=True,
       synonym="log.cleanup.policy", doc="delete (retention) and/or compact (keep the latest "
       "record per key); the compactor applies it"),
    _t("compression.type", STRING, "producer", one_of(*_CODECS), applied=True,
       synonym="compression.type", doc="batches are stored with this codec; producer keeps "
       "the producer's"),
    _t("compression.gzip.level", INT, "-1", gzip_level, applied=True,
       synonym="compression.gzip.level", doc="gzip level used when the broker recompresses"),
    _t("compression.lz4.level", INT, "9", between(1, 17), applied=True,
       synonym="compression.lz4.level", doc="lz4 level used when the broker recompresses"),
    _t("compression.zstd.level", INT, "3", between(-131072, 22), applied=True,
       synonym="compression.zstd.level", doc="zstd level used when the broker recompresses"),
    _t("delete.retention.ms", LONG, "86400000", at_least(0), applied=True,
       synonym="log.cleaner.delete.retention.ms", doc="how long tombstones stay in a "
       "compacted topic"),
    _t("file.delete.delay.ms", LONG, "60000", at_least(0), synonym="log.segment.delete.delay.ms",
       doc="replaced objects are deleted after COMPACTION_REPLACED_GRACE_MS instead"),
    _t("flush.messages", LONG, LONG_MAX, at_least(1), synonym="log.flush.interval.messages",
       doc="every acknowledged batch is durable in shared storage"),
    _t("flush.ms", LONG, LONG_MAX, at_least(0), synonym="log.flush.interval.ms",
       doc="every acknowledged batch is durable in shared storage"),
    _t("follower.replication.throttled.replicas", LIST, "", doc="no follower replication here"),
    _t("index.interval.bytes", INT, "4096", at_least(0), synonym="log.index.interval.bytes",
       doc="objects carry their own index"),
    _t("leader.replication.throttled.replicas", LIST, "", doc="no follower replication here"),
    _t("local.retention.bytes", LONG, "-2", at_least(-2), synonym="log.local.retention.bytes",
       doc="no tiering: all data is in object storage"),
    _t("local.retention.ms", LONG, "-2", at_least(-2), synonym="log.local.retention.ms",
       doc="no tiering: all data is in object storage"),
    _t("max.compaction.lag.ms", LONG, LONG_MAX, at_least(1), applied=True,
       synonym="log.cleaner.max.compaction.lag.ms", doc="a record is compacted at most this "
       "long after it was written (the newest range included)"),
    _t("max.message.bytes", INT, "1048588", at_least(0), applied=True,
       synonym="message.max.bytes", doc="largest record batch accepted"),
    _t("message.downconversion.enable", BOOLEAN, "true",
       synonym="log.message.downconversion.enable", doc="Kafka 3.x only; old formats are "
       "refused here"),
    _t("message.format.version", STRING, "3.0-IV1", synonym="log.message.format.version",
       doc="Kafka 3.x only; batches are always v2"),
    _t("message.timestamp.after.max.ms", LONG, LONG_MAX, at_least(0), applied=True,
       synonym="log.message.timestamp.after.max.ms",
       doc="CreateTime records further ahead of the broker's clock are refused"),
    _t("message.timestamp.before.max.ms", LONG, LONG_MAX, at_least(0), applied=True,
       synonym="log.message.timestamp.before.max.ms",
       doc="CreateTime records further behind the broker's clock are refused"),
    _t("message.timestamp.difference.max.ms", LONG, LONG_MAX, at_least(0), applied=True,
       synonym="log.message.timestamp.difference.max.ms",
       doc="deprecated: bounds both sides where before/after.max.ms are left unset"),
    _t("message.timestamp.type", STRING, "CreateTime", one_of("CreateTime", "LogAppendTime"),
       applied=True, synonym="log.message.timestamp.type", doc="LogAppendTime: the broker "
       "stamps each batch with its clock"),
    _t("min.cleanable.dirty.ratio", DOUBLE, "0.5", between(0, 1), applied=True,
       synonym="log.cleaner.min.cleanable.ratio", doc="compact when this share of a "
       "partition's bytes was written since it was last compacted"),
    _t("min.compaction.lag.ms", LONG, "0", at_least(0), applied=True,
       synonym="log.cleaner.min.compaction.lag.ms", doc="records younger than this are not "
       "compacted"),
    _t("min.insync.replicas", INT, "1", at_least(1), synonym="min.insync.replicas",
       doc="durability is the shared storage's: there are no replicas"),
    _t("preallocate", BOOLEAN, "false", synonym="log.preallocate", doc="no segment files"),
    _t("remote.log.copy.disable", BOOLEAN, "false", doc="no tiering"),
    _t("remote.log.delete.on.disable", BOOLEAN, "false", doc="no tiering"),
    _t("remote.storage.enable", BOOLEAN, "false", doc="no tiered storage plugin"),
    _t("retention.bytes", LONG, "-1", None, applied=True, synonym="log.retention.bytes",
       doc="size retention per partition, applied by the compactor"),
    _t("retention.ms", LONG, "604800000", at_least(-1), applied=True, synonym="log.retention.ms",
       doc="time retention, applied by the compactor"),
    _t("segment.bytes", INT, "1073741824", at_least(14), synonym="log.segment.bytes",
       doc="objects are sized by COMPACTION_TARGET_OBJECT_BYTES"),
    _t("segment.index.bytes", INT, "10485760", at_least(4), synonym="log.index.size.max.bytes",
       doc="objects carry their own index"),
    _t("segment.jitter.ms", LONG, "0", at_least(0), synonym="log.roll.jitter.ms",
       doc="no segments"),
    _t("segment.ms", LONG, "604800000", at_least(1), synonym="log.roll.ms", doc="no segments"),
    _t("unclean.leader.election.enable", BOOLEAN, "false",
       synonym="unclean.leader.election.enable", doc="every leader has all the data"),
]}  # fmt: skip


def _b(
    name: str,
    type_: int,
    default: str | None,
    check: Check | None = None,
    *,
    dynamic: bool = False,
    applied: bool = False,
    doc: str = "",
) -> ConfigDef:
    return ConfigDef(name, type_, default, check, applied, doc, None, dynamic)


def _synonym_defs() -> list[ConfigDef]:
    """The broker configs that set topic defaults: dynamic at cluster level, as in Kafka."""
    out = []
    for t in TOPIC_CONFIGS.values():
        if t.synonym is not None and t.synonym != "log.retention.ms":
            out.append(
                ConfigDef(
                    t.synonym,
                    t.type,
                    t.default,
                    t.check,
                    t.applied,
                    f"default of topic config {t.name}: {t.doc}",
                    None,
                    True,
                )
            )
    # Kafka's log.retention.ms is unset by default (log.retention.hours=168 applies)
    rt = TOPIC_CONFIGS["retention.ms"]
    out.append(
        ConfigDef(
            "log.retention.ms",
            LONG,
            None,
            rt.check,
            True,
            "default of topic config retention.ms",
            None,
            True,
        )
    )
    return out


# Kafka's broker configs that clients and tools read (kafka-configs --describe --all). Values
# reported for this broker come from its own settings where one exists (see broker_values).
BROKER_CONFIGS: dict[str, ConfigDef] = {d.name: d for d in [
    *_synonym_defs(),
    _b("advertised.listeners", STRING, None, applied=True),
    _b("auto.create.topics.enable", BOOLEAN, "true", applied=True),
    _b("auto.leader.rebalance.enable", BOOLEAN, "true"),
    _b("background.threads", INT, "10", at_least(1), dynamic=True),
    _b("broker.id", INT, "-1", applied=True),
    _b("broker.rack", STRING, None, applied=True),
    _b("compression.gzip.level", INT, "-1"),
    _b("connections.max.idle.ms", LONG, "600000"),
    _b("controlled.shutdown.enable", BOOLEAN, "true", applied=True,
       doc="SIGTERM hands partitions over"),
    _b("default.replication.factor", INT, "1"),
    _b("delete.topic.enable", BOOLEAN, "true", applied=True),
    _b("group.consumer.heartbeat.interval.ms", INT, "5000", applied=True),
    _b("group.consumer.session.timeout.ms", INT, "45000", applied=True),
    _b("group.coordinator.rebalance.protocols", LIST, "classic,consumer", applied=True),
    _b("group.initial.rebalance.delay.ms", INT, "3000", applied=True),
    _b("group.max.session.timeout.ms", INT, "1800000", applied=True),
    _b("group.min.session.timeout.ms", INT, "6000", applied=True),
    _b("inter.broker.listener.name", STRING, None),
    _b("listener.security.protocol.map", STRING,
       "PLAINTEXT:PLAINTEXT,SSL:SSL,SASL_PLAINTEXT:SASL_PLAINTEXT,SASL_SSL:SASL_SSL"),
    _b("listeners", STRING, "PLAINTEXT://:9092", applied=True),
    _b("log.cleaner.enable", BOOLEAN, "true", applied=True),
    _b("log.cleaner.threads", INT, "1", at_least(0), dynamic=True),
    _b("log.dir", STRING, "/tmp/kafka-logs"),
    _b("log.dirs", STRING, None),
    _b("log.retention.check.interval.ms", LONG, "300000", applied=True),
    _b("log.retention.hours", INT, "168"),
    _b("log.retention.minutes", INT, None),
    _b("node.id", INT, "-1", applied=True),
    _b("num.io.threads", INT, "8", at_least(1), dynamic=True),
    _b("num.network.threads", INT, "3", at_least(1), dynamic=True),
    _b("num.partitions", INT, "1", at_least(1), applied=True),
    _b("num.recovery.threads.per.data.dir", INT, "2", dynamic=True),
    _b("num.replica.fetchers", INT, "1", dynamic=True),
    _b("offsets.retention.minutes", INT, "10080"),
    _b("offsets.topic.num.partitions", INT, "50", applied=True),
    _b("offsets.topic.replication.factor", SHORT, "3"),
    _b("process.roles", LIST, "broker"),
    _b("producer.id.expiration.ms", INT, "86400000", dynamic=True),
    _b("queued.max.requests", INT, "500"),
    _b("replica.lag.time.max.ms", LONG, "30000"),
    _b("sasl.enabled.mechanisms", LIST, "GSSAPI", applied=True),
    _b("socket.receive.buffer.bytes", INT, "102400"),
    _b("socket.request.max.bytes", INT, "104857600", applied=True),
    _b("socket.send.buffer.bytes", INT, "102400"),
    _b("super.users", STRING, None, applied=True),
    _b("transaction.max.timeout.ms", INT, "900000", applied=True),
    _b("transaction.state.log.num.partitions", INT, "50"),
    _b("transaction.state.log.replication.factor", SHORT, "3"),
    _b("transactional.id.expiration.ms", INT, "604800000"),
    # dynamic in Kafka (DynamicBrokerConfig.AllDynamicConfigs); inert here, but for the
    # security settings (SECURITY_AT_START), which a broker takes at start only
    _b("log.cleaner.backoff.ms", LONG, "15000", at_least(0), dynamic=True),
    _b("log.cleaner.dedupe.buffer.size", LONG, "134217728", dynamic=True),
    _b("log.cleaner.io.buffer.load.factor", DOUBLE, "0.9", dynamic=True),
    _b("log.cleaner.io.buffer.size", INT, "524288", at_least(0), dynamic=True),
    _b("log.cleaner.io.max.bytes.per.second", DOUBLE, "1.7976931348623157E308", dynamic=True),
    _b("max.connection.creation.rate", INT, str(INT32_MAX), at_least(0), dynamic=True),
    _b("max.connections", INT, str(INT32_MAX), at_least(0), dynamic=True),
    _b("max.connections.per.ip", INT, str(INT32_MAX), at_least(0), dynamic=True),
    _b("max.connections.per.ip.overrides", STRING, "", dynamic=True),
    _b("metric.reporters", LIST, "", dynamic=True),
    _b("principal.builder.class", CLASS, None),
    _b("sasl.jaas.config", PASSWORD, None),
    _b("sasl.kerberos.kinit.cmd", STRING, "/usr/bin/kinit", dynamic=True),
    _b("sasl.kerberos.min.time.before.relogin", LONG, "60000", dynamic=True),
    _b("sasl.kerberos.principal.to.local.rules", LIST, "DEFAULT"),
    _b("sasl.kerberos.service.name", STRING, None, dynamic=True),
    _b("sasl.kerberos.ticket.renew.jitter", DOUBLE, "0.05", dynamic=True),
    _b("sasl.kerberos.ticket.renew.window.factor", DOUBLE, "0.8", dynamic=True),
    _b("sasl.login.refresh.buffer.seconds", SHORT, "300", dynamic=True),
    _b("sasl.login.refresh.min.period.seconds", SHORT, "60", dynamic=True),
    _b("sasl.login.refresh.window.factor", DOUBLE, "0.8", dynamic=True),
    _b("sasl.login.refresh.window.jitter", DOUBLE, "0.05", dynamic=True),
    _b("sasl.mechanism.inter.broker.protocol", STRING, "GSSAPI", dynamic=True),
    _b("ssl.cipher.suites", LIST, ""),
    _b("ssl.client.auth", STRING, "none", one_of("required", "requested", "none")),
    _b("ssl.enabled.protocols", LIST, "TLSv1.2,TLSv1.3"),
    _b("ssl.endpoint.identification.algorithm", STRING, "https"),
    _b("ssl.key.password", PASSWORD, None),
    _b("ssl.keymanager.algorithm", STRING, "SunX509"),
    _b("ssl.keystore.certificate.chain", PASSWORD, None),
    _b("ssl.keystore.key", PASSWORD, None),
    _b("ssl.keystore.location", STRING, None),
    _b("ssl.keystore.password", PASSWORD, None),
    _b("ssl.keystore.type", STRING, "JKS"),
    _b("ssl.protocol", STRING, "TLSv1.3"),
    _b("ssl.provider", STRING, None),
    _b("ssl.secure.random.implementation", STRING, None),
    _b("ssl.truststore.certificates", PASSWORD, None),
    _b("ssl.truststore.location", STRING, None),
    _b("ssl.truststore.password", PASSWORD, None),
    _b("ssl.truststore.type", STRING, "JKS"),
    _b("ssl.trustmanager.algorithm", STRING, "PKIX"),
    _b("transaction.partition.verification.enable", BOOLEAN, "true", dynamic=True),
]}  # fmt: skip

# the broker configs that give topics their defaults (Kafka's TOPIC_CONFIG_SYNONYMS)
TOPIC_SYNONYMS = frozenset(
    [*(t.synonym for t in TOPIC_CONFIGS.values() if t.synonym is not None), "log.retention.ms"]
)

# Kafka's per-listener security configs (SslConfigs.RECONFIGURABLE_CONFIGS): dynamic only with
# a listener prefix (listener.name.<listener>.ssl.keystore.location)
LISTENER_ONLY_CONFIGS = frozenset({
    "ssl.keystore.type", "ssl.keystore.location", "ssl.keystore.password", "ssl.key.password",
    "ssl.truststore.type", "ssl.truststore.location", "ssl.truststore.password",
    "ssl.keystore.certificate.chain", "ssl.keystore.key", "ssl.truststore.certificates",
})  # fmt: skip
# Kafka's DynamicBrokerConfig.PerBrokerConfigs: the listener and security configs, which a
# broker takes only for itself (the cluster-level listener configs are the exceptions)
_CLUSTER_LEVEL_LISTENER_CONFIGS = frozenset(
    {"max.connections", "max.connection.creation.rate", "num.network.threads"}
)
PER_BROKER_CONFIGS = frozenset(
    n for n in BROKER_CONFIGS
    if n.startswith(("ssl.", "sasl.")) or n == "principal.builder.class"
)  # fmt: skip
# Dynamic in Kafka, read at start here: a change that says who may connect and would not be
# applied (a mechanism disabled, client certificates required) must be refused, not stored
SECURITY_AT_START = frozenset(
    n for n in PER_BROKER_CONFIGS if not BROKER_CONFIGS[n].dynamic
)  # fmt: skip
_LISTENER_PREFIX = re.compile(r"listener\.name\.[^.]*\.(.*)")


def broker_def(name: str) -> ConfigDef | None:
    """The definition of a dynamic broker config name, listener-prefixed or not (None: a
    custom config)."""
    return BROKER_CONFIGS.get(listener_base(name) or name)


def is_loggable(name: str) -> bool:
    """Whether a broker config's value may be shown (Kafka hides passwords, and custom
    configs since their type is unknown)."""
    d = broker_def(name)
    return d is not None and d.type != PASSWORD


def listener_base(name: str) -> str | None:
    """``ssl.keystore.location`` for ``listener.name.internal.ssl.keystore.location``."""
    m = _LISTENER_PREFIX.fullmatch(name)
    return m.group(1) if m else None




# -- topic names --------------------------------------------------------------------------------
def validate_topic_name(name: str | None) -> str:
    if not name:
        raise InvalidTopic("topic name is empty")
    if name in (".", ".."):
        raise InvalidTopic(f"topic name cannot be {name!r}")
    if len(name) > MAX_TOPIC_NAME:
        raise InvalidTopic(f"topic name is longer than {MAX_TOPIC_NAME} characters")
    if not _LEGAL.fullmatch(name):
        raise InvalidTopic(
            f"topic name {name!r} has characters other than ASCII letters, digits, '.', '_', '-'"
        )
    return name


# -- topic configs ------------------------------------------------------------------------------
def validate_configs(configs: Mapping[str, str | None]) -> dict[str, str]:
    """Topic overrides as CreateTopics / AlterConfigs give them; raises InvalidConfig (Kafka's
    LogConfig.validate: known names, typed and in range, and consistent together)."""
    out: dict[str, str] = {}
    for k, v in configs.items():
        d = TOPIC_CONFIGS.get(k)
        if d is None:
            raise InvalidConfig(f"Unknown topic config name: {k}")
        out[k] = d.validate(v)
    check_consistent(out)
    return out


def check_consistent(overrides: Mapping[str, str]) -> None:
    """Cross-config rules Kafka enforces on a topic's whole (override) set."""
    lo = parse_topic(overrides, "min.compaction.lag.ms")
    hi = parse_topic(overrides, "max.compaction.lag.ms")
    if lo > hi:  # type: ignore[operator]
        raise InvalidConfig(
            f"conflict topic config setting min.compaction.lag.ms ({lo}) > "
            f"max.compaction.lag.ms ({hi})"
        )
    if parse_topic(overrides, "remote.storage.enable"):
        raise InvalidConfig(
            "Tiered Storage functionality is disabled in the broker. Topic cannot be "
            "configured with remote log storage."
        )


def parse_topic(
    overrides: Mapping[str, str], name: str, defaults: Mapping[str, str] | None = None
) -> object:
    """The typed effective value of a topic config (see ``resolve``)."""
    return TOPIC_CONFIGS[name].parse(resolve(name, overrides, defaults)[0])


def resolve(
    name: str,
    overrides: Mapping[str, str],
    dynamic_defaults: Mapping[str, str] | None = None,
    static: Mapping[str, str] | None = None,
) -> tuple[str | None, int]:
    """(value, DescribeConfigs source) of topic config ``name``: the topic's override, else
    the cluster's dynamic default of its broker synonym, else this broker's static setting of
    that synonym, else Kafka's default."""
    if name in overrides:
        return overrides[name], TOPIC_CONFIG
    synonym = TOPIC_CONFIGS[name].synonym
    if synonym is not None:
        if dynamic_defaults and synonym in dynamic_defaults:
            return dynamic_defaults[synonym], DYNAMIC_DEFAULT_BROKER_CONFIG
        if static and synonym in static:
            return static[synonym], STATIC_BROKER_CONFIG
    return TOPIC_CONFIGS[name].default, DEFAULT_CONFIG


def topic_synonyms(
    name: str,
    overrides: Mapping[str, str],
    dynamic_defaults: Mapping[str, str],
    static: Mapping[str, str],
) -> list[tuple[str, str | None, int]]:
    """DescribeConfigs synonyms of a topic config, highest precedence first."""
    d = TOPIC_CONFIGS[name]
    out: list[tuple[str, str | None, int]] = []
    if name in overrides:
        out.append((name, overrides[name], TOPIC_CONFIG))
    if d.synonym is not None:
        if d.synonym in dynamic_defaults:
            out.append((d.synonym, dynamic_defaults[d.synonym], DYNAMIC_DEFAULT_BROKER_CONFIG))
        if d.synonym in static:
            out.append((d.synonym, static[d.synonym], STATIC_BROKER_CONFIG))
        out.append((d.synonym, d.default, DEFAULT_CONFIG))
    return out


# -- broker configs -----------------------------------------------------------------------------
def validate_broker_dynamic(
    configs: Mapping[str, str | None], per_broker: bool
) -> dict[str, str | None]:
    """Dynamic broker configs as AlterConfigs gives them (None: delete), checked as Kafka's
    DynamicBrokerConfig.validateConfigs does: names Kafka does not know are custom configs
    and accepted (plugins read them); a known static one is refused; the per-listener
    security configs need a listener prefix; listener and security configs are per broker.
    Raises InvalidConfig (Kafka answers INVALID_REQUEST for broker configs, KAFKA-13609)."""
    out: dict[str, str | None] = {}
    for k, v in configs.items():
        base = listener_base(k)
        d = broker_def(k)
        if k in LISTENER_ONLY_CONFIGS:
            raise InvalidConfig(
                "These security configs can be dynamically updated only per-listener using "
                f"the listener prefix: Set({k})"
            )
        if d is not None and not d.dynamic:
            why = (
                " (TLS and SASL settings are taken at start on this broker)"
                if d.name in SECURITY_AT_START
                else ""
            )
            raise InvalidConfig(f"Cannot update these configs dynamically: Set({k}){why}")
        if not per_broker and (
            k in PER_BROKER_CONFIGS
            or (base is not None and base not in _CLUSTER_LEVEL_LISTENER_CONFIGS)
        ):
            raise InvalidConfig(
                "Cannot update these configs at default cluster level, broker id must be "
                f"specified: Set({k})"
            )
        if per_broker and d is not None and d.name in TOPIC_SYNONYMS:
            # Brokers share every partition's data, so a topic default that depended on which
            # broker leads the partition today would change under the client at every move.
            raise InvalidConfig(
                f"Cannot update {k} for one broker: brokers here share every partition; "
                "set the cluster-wide default (--entity-default, empty broker name)"
            )
        out[k] = v if v is None or d is None else d.validate(v)
    return out


# -- alterations (IncrementalAlterConfigs operations; AlterConfigs replaces the whole set) ---------
SET, DELETE, APPEND, SUBTRACT = 0, 1, 2, 3


def apply_ops(
    current: Mapping[str, str],
    ops: Iterable[tuple[str, int, str | None]],
    defs: Mapping[str, ConfigDef],
) -> dict[str, str | None]:
    """The override set after IncrementalAlterConfigs ``ops`` (name, operation, value), as
    Kafka's ConfigAdminManager computes it; a None value means "delete". Raises InvalidConfig
    for duplicate names, unknown operations and list operations on non-list configs."""
    out: dict[str, str | None] = dict(current)
    seen: set[str] = set()
    for name, op, value in ops:
        if name in seen:
            raise InvalidConfig(f"Error due to duplicate config keys: {name}")
        seen.add(name)
        if op == SET:
            out[name] = value
        elif op == DELETE:
            out.pop(name, None)
        elif op in (APPEND, SUBTRACT):
            d = defs.get(name)
            if d is None:
                raise InvalidConfig(f"Unknown config name: {name}")
            if d.type != LIST:
                verb = "append" if op == APPEND else "subtract"
                raise InvalidConfig(f"Config value {verb} is not allowed for config key: {name}")
            old = out.get(name)
            items = [x.strip() for x in (old if old is not None else d.default or "").split(",")]
            items = [x for x in items if x]
            given = [x.strip() for x in (value or "").split(",") if x.strip()]
            if op == APPEND:
                items += [x for x in given if x not in items]
            else:
                items = [x for x in items if x not in given]
            out[name] = ",".join(items)
        else:
            raise InvalidConfig(f"Unknown config operation {op} for {name}")
    return out
