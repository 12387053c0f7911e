"""This broker's view of Kafka configs: its static settings under Kafka's broker config names,
the cluster-wide dynamic defaults (from the metadata store, refreshed with the topics), and
each topic's effective values (definitions and validation: ``protocol/configs.py``)."""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any

from broker_service.config import BrokerConfig
from broker_service.config.listeners import Listener
from broker_service.metadata.errors import ConcurrentUpdate, UnknownTopic
from broker_service.metadata.ports import MetadataPorts
from broker_service.metadata.records import TopicRecord
from broker_service.protocol.compression import CODECS, LEVEL_CONFIGS
from broker_service.protocol.configs import (
    BROKER_CONFIGS,
    TOPIC_CONFIGS,
    is_loggable,
    resolve,
    validate_broker_dynamic,
    validate_configs,
)
from broker_service.protocol.record_checks import INT64_MAX, RecordRules

log = logging.getLogger(__name__)

OFFSETS_TOPIC = "__consumer_offsets"
# what every KRaft broker's server.properties sets: static whatever the value
_IDENTITY = frozenset({"broker.id", "node.id", "listeners", "advertised.listeners", "log.dirs"})


def static_broker_values(
    cfg: BrokerConfig, listeners: list[Listener] | None = None
) -> dict[str, str]:
    """Kafka broker config name -> this broker's value, where one of its settings is it
    (``listeners``: as bound, when a port was 0)."""
    listeners = listeners if listeners is not None else cfg.listener_list()
    values = {
        "broker.id": str(cfg.node_id),
        "node.id": str(cfg.node_id),
        "listeners": ",".join(f"{lst.name}://{lst.host}:{lst.port}" for lst in listeners),
        "advertised.listeners": ",".join(
            f"{lst.name}://{lst.advertised_host}:{lst.advertised_port}" for lst in listeners
        ),
        "inter.broker.listener.name": next(
            (lst.name for lst in listeners if lst.name == "PLAINTEXT"), listeners[0].name
        ),
        "auto.create.topics.enable": str(cfg.auto_create_topics).lower(),
        "num.partitions": str(cfg.default_partitions),
        "message.max.bytes": str(cfg.message_max_bytes),
        "socket.request.max.bytes": str(cfg.socket_request_max_bytes),
        "group.initial.rebalance.delay.ms": str(cfg.group_initial_rebalance_delay_ms),
        "group.min.session.timeout.ms": str(cfg.group_min_session_timeout_ms),
        "group.max.session.timeout.ms": str(cfg.group_max_session_timeout_ms),
        "group.consumer.session.timeout.ms": str(cfg.group_consumer_session_timeout_ms),
        "group.consumer.heartbeat.interval.ms": str(cfg.group_consumer_heartbeat_interval_ms),
        "transaction.max.timeout.ms": str(cfg.transaction_max_timeout_ms),
        "log.dirs": cfg.storage or str(cfg.data_dir / "objects"),
        "log.cleaner.enable": str(cfg.compaction_interval_ms > 0).lower(),
        "log.retention.check.interval.ms": str(cfg.compaction_interval_ms),
        "offsets.topic.num.partitions": str(cfg.offsets_topic_partitions),
        # durability is the shared storage's: every topic reports one replica
        "default.replication.factor": "1",
        "offsets.topic.replication.factor": "1",
        "transaction.state.log.replication.factor": "1",
        "sasl.enabled.mechanisms": ",".join(cfg.sasl_mechanism_list()),
    }
    if cfg.rack:
        values["broker.rack"] = cfg.rack
    if cfg.super_users:
        values["super.users"] = cfg.super_users
    # Kafka's static configs are the keys server.properties sets: a setting left at Kafka's
    # default is described as DEFAULT_CONFIG, not as a static one (clients read is_default)
    return {k: v for k, v in values.items()
            if k in _IDENTITY or k not in BROKER_CONFIGS or v != BROKER_CONFIGS[k].default}


@dataclass
class ConfigView:
    static: dict[str, str]
    dynamic: dict[str, str] = field(default_factory=dict)  # cluster-wide dynamic defaults
    own: dict[str, str] = field(default_factory=dict)  # this broker's own dynamic configs
    # bumped by every alter of ``dynamic`` made here: a store read that began before one is
    # older than what it would replace (refresh_cluster_configs)
    dynamic_version: int = 0
    _rules: dict[int, tuple[Mapping[str, str], dict[str, str], RecordRules]] = field(
        default_factory=dict, repr=False, compare=False
    )

    def topic_value(self, overrides: Mapping[str, str], name: str) -> Any:
        """The typed effective value of topic config ``name``."""
        return TOPIC_CONFIGS[name].parse(resolve(name, overrides, self.dynamic, self.static)[0])

    def produce_format(self, overrides: Mapping[str, str]) -> tuple[int | None, int | None, bool]:
        """What the produce path does to a topic's batches: (codec to re-encode them with or
        None to keep the producer's, its level or None, stamp LogAppendTime)."""
        name = self.topic_value(overrides, "compression.type")
        codec = None if name == "producer" else CODECS[name]
        level_config = LEVEL_CONFIGS.get(codec or 0)
        level = self.topic_value(overrides, level_config) if level_config else None
        log_append = self.topic_value(overrides, "message.timestamp.type") == "LogAppendTime"
        return codec, level, log_append

    def record_rules(self, overrides: Mapping[str, str]) -> RecordRules:
        """What each produced record must satisfy (Kafka's LogConfig: a timestamp window
        left at its default falls back to the deprecated message.timestamp.difference.max.ms).
        On the produce path for every partition: kept per topic's overrides object and the
        dynamic defaults' object (both are replaced, never changed in place)."""
        cached = self._rules.get(id(overrides))
        if cached is not None and cached[0] is overrides and cached[1] is self.dynamic:
            return cached[2]
        rules = self._read_record_rules(overrides)
        if len(self._rules) >= 4096:
            self._rules.clear()
        self._rules[id(overrides)] = (overrides, self.dynamic, rules)
        return rules

    def _read_record_rules(self, overrides: Mapping[str, str]) -> RecordRules:
        difference = self.topic_value(overrides, "message.timestamp.difference.max.ms")
        before = self.topic_value(overrides, "message.timestamp.before.max.ms")
        after = self.topic_value(overrides, "message.timestamp.after.max.ms")
        return RecordRules(
            compacted="compact" in self.topic_value(overrides, "cleanup.policy"),
            create_time=self.topic_value(overrides, "message.timestamp.type") == "CreateTime",
            before_max_ms=before if before != INT64_MAX else difference,
            after_max_ms=after if after != INT64_MAX else difference,
        )

    def topic_defaults(self) -> dict[str, str]:
        """What a topic without overrides gets, as strings (None-valued ones left out)."""
        out = {}
        for name in TOPIC_CONFIGS:
            value = resolve(name, {}, self.dynamic, self.static)[0]
            if value is not None:
                out[name] = value
        return out


Compute = Callable[[dict[str, str]], dict[str, str | None]]
_CAS_ATTEMPTS = 10


async def alter_topic_configs(
    ports: MetadataPorts,
    name: str,
    compute: Compute,
    validate_only: bool,
    applied: Callable[[TopicRecord], None],
) -> dict[str, str]:
    """Replace a topic's overrides with ``compute(current)`` after validating them (raises
    InvalidConfig, UnknownTopic); durable in the metadata store by compare-and-set (a
    concurrent change is re-read and ``compute`` applied again), then in effect here at once.
    Other brokers see it with their next metadata refresh (BROKER refresh loop, 0.5 s)."""
    for _ in range(_CAS_ATTEMPTS):
        rec = await ports.topics.topic(name)
        if rec is None:
            raise UnknownTopic(name)
        checked = validate_configs(compute(dict(rec.configs)))
        if validate_only:
            return checked
        try:
            rec = await ports.topics.set_topic_configs(name, dict(rec.configs), checked)
        except ConcurrentUpdate:
            continue
        applied(rec)  # in effect here at once
        log.info("topic %s: configs now %s", name, checked)
        return checked
    raise ConcurrentUpdate(f"configs of topic {name} kept changing")


async def refresh_cluster_configs(ports: MetadataPorts, view: ConfigView) -> None:
    """The cluster-wide dynamic broker configs as stored (every sync), unless an alter here
    replaced them while the read was on its way: the read is then older than the view."""
    seen = view.dynamic_version
    stored = await ports.topics.cluster_configs()
    if view.dynamic_version == seen:
        view.dynamic = stored


async def alter_broker_configs(
    ports: MetadataPorts,
    view: ConfigView,
    broker_id: int | None,
    compute: Compute,
    touched: Iterable[str],
    validate_only: bool,
) -> dict[str, str]:
    """The same for dynamic broker configs: the cluster-wide defaults (``broker_id`` None,
    ``--entity-default``) or this broker's own (only the broker itself alters them, as
    Kafka's AdminClient sends a broker's resource to that broker)."""
    own = broker_id is not None
    what = f"broker {broker_id}'s dynamic configs" if own else "cluster-wide dynamic configs"
    for _ in range(_CAS_ATTEMPTS):
        if broker_id is not None:
            current = await ports.topics.broker_configs(broker_id)
        else:
            current = await ports.topics.cluster_configs()
        new = compute(dict(current))
        validate_broker_dynamic({k: new.get(k) for k in touched}, own)
        checked = {k: v for k, v in new.items() if v is not None}
        if validate_only:
            return checked
        try:
            if broker_id is not None:
                await ports.topics.set_broker_configs(broker_id, current, checked)
            else:
                await ports.topics.set_cluster_configs(current, checked)
        except ConcurrentUpdate:
            continue
        if own:
            view.own = checked
        else:
            view.dynamic = checked
            view.dynamic_version += 1
        log.info("%s now %s", what, redacted(checked))
        return checked
    raise ConcurrentUpdate(f"{what} kept changing")


def redacted(configs: Mapping[str, str]) -> dict[str, str]:
    """Configs as they may be logged: passwords and custom configs (whose type nobody knows)
    hidden, as Kafka's loggableValue does."""
    return {k: v if is_loggable(k) else "[hidden]" for k, v in configs.items()}
