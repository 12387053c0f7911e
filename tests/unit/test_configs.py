"""Kafka's topic and broker config definitions (protocol/configs.py): names, parsing, the
validators and their messages, resolution order and alteration operations. Pure."""

from __future__ import annotations

import pytest

from broker_service.protocol import configs as C

# Kafka 3.9's LogConfig names (TopicConfig constants) plus 4.0's: every one must be accepted.
KAFKA_TOPIC_CONFIGS = {
    "cleanup.policy": "compact,delete", "compression.type": "zstd",
    "compression.gzip.level": "5", "compression.lz4.level": "10", "compression.zstd.level": "7",
    "delete.retention.ms": "1000", "file.delete.delay.ms": "1000", "flush.messages": "10",
    "flush.ms": "1000", "follower.replication.throttled.replicas": "",
    "index.interval.bytes": "8192", "leader.replication.throttled.replicas": "",
    "local.retention.bytes": "-2", "local.retention.ms": "-2",
    "max.compaction.lag.ms": "3600000", "max.message.bytes": "2000000",
    "message.downconversion.enable": "false", "message.format.version": "3.0-IV1",
    "message.timestamp.after.max.ms": "1000", "message.timestamp.before.max.ms": "1000",
    "message.timestamp.difference.max.ms": "1000", "message.timestamp.type": "LogAppendTime",
    "min.cleanable.dirty.ratio": "0.1", "min.compaction.lag.ms": "10",
    "min.insync.replicas": "2", "preallocate": "true", "remote.log.copy.disable": "false",
    "remote.log.delete.on.disable": "false", "remote.storage.enable": "false",
    "retention.bytes": "-1", "retention.ms": "-1", "segment.bytes": "1048576",
    "segment.index.bytes": "1048576", "segment.jitter.ms": "100", "segment.ms": "3600000",
    "unclean.leader.election.enable": "true",
}  # fmt: skip


def test_every_kafka_topic_config_is_accepted() -> None:
    assert C.validate_configs(KAFKA_TOPIC_CONFIGS) == KAFKA_TOPIC_CONFIGS
    assert set(KAFKA_TOPIC_CONFIGS) == set(C.TOPIC_CONFIGS)
    for d in C.TOPIC_CONFIGS.values():  # every default is valid for its own definition
        if d.default is not None:
            d.validate(d.default)


@pytest.mark.parametrize(
    ("name", "value", "message"),
    [
        ("message.timestamp.type", "bogus", "Invalid value bogus for configuration "
         "message.timestamp.type: String must be one of: CreateTime, LogAppendTime"),
        ("compression.type", "nope", "Invalid value nope for configuration compression.type: "
         "String must be one of: uncompressed, zstd, lz4, snappy, gzip, producer"),
        ("retention.ms", "-5", "Invalid value -5 for configuration retention.ms: "
         "Value must be at least -1"),
        ("max.message.bytes", "-5", "Invalid value -5 for configuration max.message.bytes: "
         "Value must be at least 0"),
        ("segment.ms", "xyz", "Invalid value xyz for configuration segment.ms: "
         "Not a number of type LONG"),
        ("max.message.bytes", "3000000000", "Invalid value 3000000000 for configuration "
         "max.message.bytes: Not a number of type INT"),
        ("preallocate", "yes", "Invalid value yes for configuration preallocate: "
         "Expected value to be either true or false"),
        ("min.cleanable.dirty.ratio", "1.5", "Invalid value 1.5 for configuration "
         "min.cleanable.dirty.ratio: Value must be no more than 1"),
        ("cleanup.policy", "delete,shred", "Invalid value delete,shred for configuration "
         "cleanup.policy: String must be one of: compact, delete"),
        ("compression.gzip.level", "0", "Invalid value 0 for configuration "
         "compression.gzip.level: Value must be -1 or between 1 and 9"),
        ("no.such.config", "1", "Unknown topic config name: no.such.config"),
        ("retention.ms", None, "Null value not supported for topic configs: retention.ms"),
    ],
)  # fmt: skip
def test_bad_values_are_refused_with_kafkas_message(
    name: str, value: str | None, message: str
) -> None:
    with pytest.raises(C.InvalidConfig) as exc:
        C.validate_configs({name: value})
    assert str(exc.value) == message


def test_cross_config_rules() -> None:
    with pytest.raises(C.InvalidConfig, match="min.compaction.lag.ms"):
        C.validate_configs({"min.compaction.lag.ms": "10", "max.compaction.lag.ms": "5"})
    with pytest.raises(C.InvalidConfig, match="Tiered Storage"):
        C.validate_configs({"remote.storage.enable": "true"})


def test_values_keep_their_given_spelling_and_parse_like_kafka() -> None:
    assert C.validate_configs({"cleanup.policy": " compact , delete"}) == {
        "cleanup.policy": " compact , delete"
    }
    assert C.parse_topic({"cleanup.policy": " compact , delete"}, "cleanup.policy") == [
        "compact", "delete",
    ]  # fmt: skip
    assert C.parse_topic({}, "cleanup.policy") == ["delete"]
    assert C.parse_topic({"preallocate": "TRUE"}, "preallocate") is True


def test_resolution_order_and_synonyms() -> None:
    dynamic = {"log.retention.ms": "5000"}
    static = {"message.max.bytes": "2000"}
    assert C.resolve("retention.ms", {"retention.ms": "1"}, dynamic, static) == (
        "1", C.TOPIC_CONFIG,
    )  # fmt: skip
    assert C.resolve("retention.ms", {}, dynamic, static) == (
        "5000", C.DYNAMIC_DEFAULT_BROKER_CONFIG,
    )  # fmt: skip
    assert C.resolve("max.message.bytes", {}, dynamic, static) == (
        "2000", C.STATIC_BROKER_CONFIG,
    )  # fmt: skip
    assert C.resolve("segment.ms", {}, dynamic, static) == ("604800000", C.DEFAULT_CONFIG)
    assert C.topic_synonyms("retention.ms", {"retention.ms": "1"}, dynamic, static) == [
        ("retention.ms", "1", C.TOPIC_CONFIG),
        ("log.retention.ms", "5000", C.DYNAMIC_DEFAULT_BROKER_CONFIG),
        ("log.retention.ms", "604800000", C.DEFAULT_CONFIG),
    ]


def test_incremental_operations() -> None:
    current = {"cleanup.policy": "delete", "retention.ms": "1"}
    ops = [
        ("retention.ms", C.DELETE, None),
        ("segment.ms", C.SET, "100"),
        ("cleanup.policy", C.APPEND, "compact,delete"),
    ]
    assert C.apply_ops(current, ops, C.TOPIC_CONFIGS) == {
        "cleanup.policy": "delete,compact",
        "segment.ms": "100",
    }
    # SUBTRACT from the default when there is no override (Kafka's rule)
    assert C.apply_ops({}, [("cleanup.policy", C.SUBTRACT, "delete")], C.TOPIC_CONFIGS) == {
        "cleanup.policy": ""
    }
    with pytest.raises(C.InvalidConfig, match="append is not allowed for config key: retention"):
        C.apply_ops({}, [("retention.ms", C.APPEND, "1")], C.TOPIC_CONFIGS)
    with pytest.raises(C.InvalidConfig, match="duplicate config keys"):
        C.apply_ops({}, [("segment.ms", C.SET, "1"), ("segment.ms", C.DELETE, None)], {})


def test_broker_configs_include_kafkas_keys_and_dynamic_ones_as_kafka() -> None:
    names = set(C.BROKER_CONFIGS)
    assert {"advertised.listeners", "listeners", "broker.id", "log.dirs", "num.partitions",
            "log.retention.ms", "log.cleanup.policy", "message.max.bytes"} <= names  # fmt: skip
    assert len(names) > 60
    assert C.validate_broker_dynamic({"log.retention.ms": "1000"}, per_broker=False) == {
        "log.retention.ms": "1000"
    }
    with pytest.raises(C.InvalidConfig, match="Cannot update these configs dynamically"):
        C.validate_broker_dynamic({"broker.id": "7"}, per_broker=False)
    # custom names (for plugins) are taken as given, as Kafka's customPropsAllowed
    assert C.validate_broker_dynamic({"no.such": "7"}, per_broker=False) == {"no.such": "7"}
    assert C.validate_broker_dynamic({"num.io.threads": "9"}, per_broker=True) == {
        "num.io.threads": "9"
    }
    with pytest.raises(C.InvalidConfig, match="broker id must be specified"):
        C.validate_broker_dynamic({"sasl.kerberos.service.name": "k"}, per_broker=False)
    with pytest.raises(C.InvalidConfig, match="broker id must be specified"):
        C.validate_broker_dynamic({"listener.name.a.sasl.kerberos.service.name": "k"}, False)
    assert C.validate_broker_dynamic({"listener.name.a.max.connections": "5"}, False) == {
        "listener.name.a.max.connections": "5"
    }
    with pytest.raises(C.InvalidConfig, match="only per-listener using the listener prefix"):
        C.validate_broker_dynamic({"ssl.keystore.location": "/k"}, per_broker=True)
    # a security setting that would not be applied is refused, not stored
    with pytest.raises(C.InvalidConfig, match="taken at start"):
        C.validate_broker_dynamic({"listener.name.ssl.ssl.client.auth": "required"}, True)
    with pytest.raises(C.InvalidConfig, match="taken at start"):
        C.validate_broker_dynamic({"sasl.enabled.mechanisms": "PLAIN"}, per_broker=True)
    with pytest.raises(C.InvalidConfig, match="max.connections: Not a number of type INT"):
        C.validate_broker_dynamic({"listener.name.a.max.connections": "x"}, False)
    with pytest.raises(C.InvalidConfig, match="one broker"):
        C.validate_broker_dynamic({"log.retention.ms": "1000"}, per_broker=True)
    with pytest.raises(C.InvalidConfig, match="log.retention.ms: Value must be at least -1"):
        C.validate_broker_dynamic({"log.retention.ms": "-9"}, per_broker=False)
