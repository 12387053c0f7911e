"""Topic and broker configs as Kafka's tools and AdminClients use them (issue 17, items 1, 2
and 9): CreateTopics validates every value and accepts Kafka's whole topic config set;
DescribeConfigs reports values with their source (and Kafka's broker keys); AlterConfigs and
IncrementalAlterConfigs change topic configs and the cluster-wide broker defaults durably (in
the metadata store) and in effect at once.

Clients: confluent-kafka AdminClient, kafka-python's KafkaAdminClient, aiokafka's admin, and
raw kio requests for what no client sends (the empty broker name of ``--entity-default``).
Every test runs on the embedded backend and on S3 + DynamoDB (moto server over HTTP).
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Iterator
from typing import Any

import pytest
from confluent_kafka import Consumer, KafkaError, KafkaException, Producer, TopicPartition
from confluent_kafka.admin import (
    AdminClient,
    AlterConfigOpType,
    ConfigEntry,
    ConfigResource,
    ConfigSource,
    NewTopic,
)
from kafka.admin import ConfigResource as KpConfigResource
from kafka.admin import ConfigResourceType as KpType
from kafka.admin import KafkaAdminClient

from tests.integration.surface import Surface, kio, surface_fixture, unique, wait_for
from tests.unit.test_configs import KAFKA_TOPIC_CONFIGS

# compaction (retention) often, so a changed retention.ms is seen acting within seconds
surface = surface_fixture(BROKER_COMPACTION_INTERVAL_MS="1000", BROKER_UPLOAD_INTERVAL_MS="200")

BAD_VALUES = {
    "message.timestamp.type": "bogus",
    "compression.type": "nope",
    "retention.ms": "-5",
    "max.message.bytes": "-5",
    "segment.ms": "xyz",
}


@pytest.fixture
def admin(surface: Surface) -> AdminClient:
    return AdminClient({"bootstrap.servers": surface.bootstrap})


@pytest.fixture
def kp_admin(surface: Surface) -> Iterator[KafkaAdminClient]:
    a = KafkaAdminClient(bootstrap_servers=surface.bootstrap, request_timeout_ms=30000)
    yield a
    a.close()


def _create(admin: AdminClient, name: str, config: dict[str, str] | None = None) -> None:
    admin.create_topics([NewTopic(name, 1, 1, config=config or {})])[name].result(30)


def _describe(admin: AdminClient, name: str) -> dict[str, ConfigEntry]:
    res = ConfigResource(ConfigResource.Type.TOPIC, name)
    return dict(admin.describe_configs([res])[res].result(30))


def _cluster_configs(surface: Surface) -> dict[str, str]:
    store = surface.open_store()
    try:
        return store.cluster_configs()
    finally:
        store.close()


def _stored(surface: Surface, name: str) -> dict[str, str]:
    store = surface.open_store()
    try:
        rec = store.topic(name)
        assert rec is not None
        return dict(rec.configs)
    finally:
        store.close()


# -- item 2: CreateTopics validates values ---------------------------------------------------------
@pytest.mark.parametrize(("key", "value"), sorted(BAD_VALUES.items()))
def test_create_topics_refuses_bad_values_confluent(
    admin: AdminClient, key: str, value: str
) -> None:
    name = unique("bad")
    with pytest.raises(KafkaException) as exc:
        _create(admin, name, {key: value})
    err = exc.value.args[0]
    assert err.code() == KafkaError.INVALID_CONFIG
    assert f"Invalid value {value} for configuration {key}" in err.str()
    assert name not in admin.list_topics(timeout=10).topics


def test_create_topics_refuses_bad_values_kafka_python(
    kp_admin: KafkaAdminClient, admin: AdminClient
) -> None:
    for key, value in BAD_VALUES.items():
        name = unique("bad-kp")
        resp = kp_admin.create_topics(
            {name: {"num_partitions": 1, "configs": {key: value}}}, raise_errors=False
        )
        (topic,) = resp["topics"]
        assert (topic["name"], topic["error_code"]) == (name, 40), (key, topic)  # INVALID_CONFIG
        assert f"Invalid value {value} for configuration {key}" in topic["error_message"]
        assert name not in admin.list_topics(timeout=10).topics


# -- item 9: Kafka's whole topic config set is accepted ----------------------------------------
def test_every_kafka_topic_config_is_accepted_and_described(
    surface: Surface, admin: AdminClient, kp_admin: KafkaAdminClient
) -> None:
    configs = {k: v for k, v in KAFKA_TOPIC_CONFIGS.items() if k != "max.compaction.lag.ms"}
    a, b = unique("all-cfk"), unique("all-kp")
    _create(admin, a, configs)
    kp_admin.create_topics({b: {"num_partitions": 1, "configs": configs}})
    for name in (a, b):
        assert _stored(surface, name) == configs
        described = _describe(admin, name)
        for key, value in configs.items():
            assert (described[key].value, described[key].source) == (
                value, ConfigSource.DYNAMIC_TOPIC_CONFIG.value,
            ), key  # fmt: skip
    got = kp_admin.describe_configs(
        [KpConfigResource(KpType.TOPIC, b)], config_filter="modified"
    )["topic"][b]
    assert {k: v["value"] for k, v in got.items()} == configs


def test_broker_describe_configs_gives_kafkas_broker_keys(
    surface: Surface, admin: AdminClient, kp_admin: KafkaAdminClient
) -> None:
    res = ConfigResource(ConfigResource.Type.BROKER, "1")
    described = admin.describe_configs([res])[res].result(30)
    assert len(described) > 60
    assert described["advertised.listeners"].value == f"PLAINTEXT://127.0.0.1:{surface.port}"
    assert described["advertised.listeners"].is_read_only
    # a setting left at Kafka's default is DEFAULT_CONFIG, as for a key server.properties does
    # not set (it was STATIC_BROKER_CONFIG: confluent-kafka-python's own
    # test_incremental_alter_configs saw max.message.bytes as a non-default topic config)
    assert described["message.max.bytes"].value == "1048588"
    assert described["message.max.bytes"].source == ConfigSource.DEFAULT_CONFIG.value
    assert described["log.retention.check.interval.ms"].source == (
        ConfigSource.STATIC_BROKER_CONFIG.value  # set by this broker's settings (1000)
    )
    topic = unique("defaults")
    _create(admin, topic)
    mmb = _describe(admin, topic)["max.message.bytes"]
    assert (mmb.value, mmb.source, mmb.is_default) == (
        "1048588", ConfigSource.DEFAULT_CONFIG.value, True,
    )  # fmt: skip
    assert not described["log.retention.ms"].is_read_only  # dynamic, as in Kafka
    got = kp_admin.describe_configs([KpConfigResource(KpType.BROKER, 1)], config_filter="all")
    keys = got["broker"]["1"]
    assert keys["broker.id"]["value"] == "1"
    assert keys["log.dirs"]["config_source"] == "STATIC_BROKER_CONFIG"
    assert keys["log.cleanup.policy"]["value"] == "delete"


# -- item 1: changing configs after creation ----------------------------------------------------
def test_incremental_alter_topic_configs_confluent(surface: Surface, admin: AdminClient) -> None:
    name = unique("alter-cfk")
    _create(admin, name, {"retention.ms": "3600000", "cleanup.policy": "delete"})
    res = ConfigResource(
        ConfigResource.Type.TOPIC,
        name,
        incremental_configs=[
            ConfigEntry("retention.ms", None, incremental_operation=AlterConfigOpType.DELETE),
            ConfigEntry("segment.ms", "600000", incremental_operation=AlterConfigOpType.SET),
            ConfigEntry(
                "cleanup.policy", "compact", incremental_operation=AlterConfigOpType.APPEND
            ),
        ],
    )
    admin.incremental_alter_configs([res])[res].result(30)
    assert _stored(surface, name) == {"cleanup.policy": "delete,compact", "segment.ms": "600000"}
    d = _describe(admin, name)
    assert (d["retention.ms"].value, d["retention.ms"].source) == (
        "604800000", ConfigSource.DEFAULT_CONFIG.value,
    )  # fmt: skip
    assert (d["segment.ms"].value, d["segment.ms"].source) == (
        "600000", ConfigSource.DYNAMIC_TOPIC_CONFIG.value,
    )  # fmt: skip
    assert d["cleanup.policy"].value == "delete,compact"

    # the legacy AlterConfigs replaces the whole override set
    legacy = ConfigResource(ConfigResource.Type.TOPIC, name, set_config={"retention.ms": "5000"})
    admin.alter_configs([legacy])[legacy].result(30)
    assert _stored(surface, name) == {"retention.ms": "5000"}


@pytest.mark.parametrize(("key", "value"), sorted(BAD_VALUES.items()))
def test_alter_refuses_bad_values_and_unknown_names(
    surface: Surface, admin: AdminClient, key: str, value: str
) -> None:
    name = unique("alter-bad")
    _create(admin, name)
    for bad_key, bad_value, message in [
        (key, value, f"Invalid value {value} for configuration {key}"),
        ("no.such.config", "1", "Unknown topic config name: no.such.config"),
    ]:
        res = ConfigResource(
            ConfigResource.Type.TOPIC,
            name,
            incremental_configs=[
                ConfigEntry(bad_key, bad_value, incremental_operation=AlterConfigOpType.SET)
            ],
        )
        with pytest.raises(KafkaException) as exc:
            admin.incremental_alter_configs([res])[res].result(30)
        assert exc.value.args[0].code() == KafkaError.INVALID_CONFIG
        assert message in exc.value.args[0].str()
    assert _stored(surface, name) == {}


def test_alter_topic_configs_kafka_python_and_aiokafka(
    surface: Surface, kp_admin: KafkaAdminClient, admin: AdminClient
) -> None:
    name = unique("alter-kp")
    _create(admin, name)
    # kafka-python picks IncrementalAlterConfigs when advertised
    got = kp_admin.alter_configs(
        [KpConfigResource(KpType.TOPIC, name, configs={"retention.bytes": "1048576"})]
    )
    assert got == {"topic": {name: "OK"}}
    assert _stored(surface, name) == {"retention.bytes": "1048576"}
    got = kp_admin.alter_configs(
        [KpConfigResource(KpType.TOPIC, name, configs={"retention.ms": "-9"})]
    )
    assert "InvalidConfigurationError" in got["topic"][name]
    assert "Value must be at least -1" in got["topic"][name]

    async def aio() -> Any:
        from aiokafka.admin import AIOKafkaAdminClient
        from aiokafka.admin.config_resource import ConfigResource as AioResource
        from aiokafka.admin.config_resource import ConfigResourceType as AioType

        a = AIOKafkaAdminClient(bootstrap_servers=surface.bootstrap)
        await a.start()
        try:  # aiokafka sends the legacy AlterConfigs (replace the whole set)
            return await a.alter_configs(
                [AioResource(AioType.TOPIC, name, configs={"max.message.bytes": "500000"})]
            )
        finally:
            await a.close()

    (resp,) = asyncio.run(aio())
    assert [(r[0], r[1]) for r in resp.resources] == [(0, None)]
    assert _stored(surface, name) == {"max.message.bytes": "500000"}
    d = _describe(admin, name)
    assert d["max.message.bytes"].source == ConfigSource.DYNAMIC_TOPIC_CONFIG.value


def test_altered_configs_take_effect_at_once(surface: Surface, admin: AdminClient) -> None:
    name = unique("effect")
    _create(admin, name)
    p = Producer({"bootstrap.servers": surface.bootstrap, "linger.ms": 0, "retries": 0,
                  "batch.size": 2_000_000, "message.max.bytes": 3_000_000})  # fmt: skip
    errors: list[Any] = []

    def produce(value: bytes, timestamp: int = 0) -> None:
        p.produce(name, value, timestamp=timestamp,
                  on_delivery=lambda err, _m: errors.append(err))  # fmt: skip
        assert p.flush(30) == 0

    # retention: records an hour old stay under the default 7 days, go once retention.ms is 1 min
    old = int(time.time() * 1000) - 3_600_000
    for i in range(3):
        produce(f"old-{i}".encode(), timestamp=old)
    c = Consumer({"bootstrap.servers": surface.bootstrap, "group.id": unique("g")})
    try:
        tp = TopicPartition(name, 0)
        assert c.get_watermark_offsets(tp, timeout=10) == (0, 3)
        set_retention = ConfigResource(ConfigResource.Type.TOPIC, name, incremental_configs=[
            ConfigEntry("retention.ms", "60000", incremental_operation=AlterConfigOpType.SET)
        ])  # fmt: skip
        admin.incremental_alter_configs([set_retention])[set_retention].result(30)
        wait_for(
            "retention.ms to move the log start offset",
            lambda: c.get_watermark_offsets(tp, timeout=10)[0] == 3,
        )
    finally:
        c.close()

    produce(b"x" * 600_000)
    assert errors[-1] is None
    set_max = ConfigResource(ConfigResource.Type.TOPIC, name, incremental_configs=[
        ConfigEntry("max.message.bytes", "100000", incremental_operation=AlterConfigOpType.SET)
    ])  # fmt: skip
    admin.incremental_alter_configs([set_max])[set_max].result(30)
    produce(b"x" * 600_000)
    assert errors[-1].code() == KafkaError.MSG_SIZE_TOO_LARGE


def _raw_alter_broker(surface: Surface, name: str, ops: list[tuple[str, int, str | None]],
                      validate_only: bool = False, resource_type: int = 4) -> Any:  # fmt: skip
    req = kio(44, 1, "IncrementalAlterConfigsRequest", validate_only=validate_only, resources=(
        kio(44, 1, "AlterConfigsResource", resource_type=resource_type, resource_name=name,
            configs=tuple(
            kio(44, 1, "AlterableConfig", name=k, config_operation=op, value=v)
            for k, op, v in ops
        )),
    ))  # fmt: skip
    (r,) = surface.call(req).responses
    return r


def test_cluster_wide_broker_defaults(surface: Surface, admin: AdminClient) -> None:
    """``kafka-configs --alter --entity-type brokers --entity-default``: the empty broker name
    (raw kio: no Python client sends it); per-broker and read-only keys are refused."""
    name = unique("cluster-default")
    _create(admin, name)
    r = _raw_alter_broker(surface, "", [("log.retention.ms", 0, "7200000")])
    assert int(r.error_code) == 0, r
    try:
        assert _cluster_configs(surface) == {"log.retention.ms": "7200000"}
        d = _describe(admin, name)
        assert (d["retention.ms"].value, d["retention.ms"].source) == (
            "7200000", ConfigSource.DYNAMIC_DEFAULT_BROKER_CONFIG.value,
        )  # fmt: skip
        described = surface.call(kio(32, 4, "DescribeConfigsRequest", resources=(
            kio(32, 4, "DescribeConfigsResource", resource_type=4, resource_name="",
                configuration_keys=None),
        ), include_synonyms=True, include_documentation=False))  # fmt: skip
        (res,) = described.results
        assert [(c.name, c.value, int(c.config_source)) for c in res.configs] == [
            ("log.retention.ms", "7200000", 3)
        ]
        for ops, fragment in [
            ([("broker.id", 0, "7")], "Cannot update these configs dynamically"),
            ([("num.io.threads", 0, "0")], "num.io.threads: Value must be at least 1"),
            ([("log.retention.ms", 0, "-7")], "Value must be at least -1"),
        ]:
            bad = _raw_alter_broker(surface, "", ops)
            assert int(bad.error_code) == 42 and fragment in bad.error_message, bad
        per_broker = _raw_alter_broker(surface, "1", [("log.retention.ms", 0, "1000")])
        assert int(per_broker.error_code) == 42  # INVALID_REQUEST, with why (DESIGN: shared)
    finally:
        r = _raw_alter_broker(surface, "", [("log.retention.ms", 1, None)])
        assert int(r.error_code) == 0
    assert _cluster_configs(surface) == {}
    assert _describe(admin, name)["retention.ms"].source == ConfigSource.DEFAULT_CONFIG.value


def _broker_store_configs(surface: Surface, broker_id: int) -> dict[str, str]:
    store = surface.open_store()
    try:
        return store.broker_configs(broker_id)
    finally:
        store.close()


def test_per_broker_and_custom_dynamic_configs(surface: Surface, admin: AdminClient) -> None:
    """``kafka-configs --alter --entity-type brokers --entity-name 1``, as Kafka's
    DynamicBrokerConfig takes it: listener and security configs per broker (librdkafka's
    0081-admin sets sasl.kerberos.min.time.before.relogin on one broker), custom names Kafka
    does not know (accepted for plugins, described as sensitive), per-broker-only names
    refused at the cluster level, ssl keystore names refused without a listener prefix. The
    values live in the metadata store, survive a restart and are described with source
    DYNAMIC_BROKER_CONFIG (confluent-kafka's AdminClient, both alter calls; raw kio for the
    empty name)."""
    broker = ConfigResource(ConfigResource.Type.BROKER, "1", incremental_configs=[
        ConfigEntry("sasl.kerberos.min.time.before.relogin", "58000",
                    incremental_operation=AlterConfigOpType.SET),
        ConfigEntry("listener.name.plaintext.sasl.kerberos.service.name", "kafka",
                    incremental_operation=AlterConfigOpType.SET),
        ConfigEntry("my.plugin.setting", "s3cret",
                    incremental_operation=AlterConfigOpType.SET),
    ])  # fmt: skip
    admin.incremental_alter_configs([broker])[broker].result(30)
    try:
        assert _broker_store_configs(surface, 1) == {
            "sasl.kerberos.min.time.before.relogin": "58000",
            "listener.name.plaintext.sasl.kerberos.service.name": "kafka",
            "my.plugin.setting": "s3cret",
        }
        assert _cluster_configs(surface) == {}  # one broker's, not the cluster's

        def described(a: AdminClient) -> dict[str, ConfigEntry]:
            res = ConfigResource(ConfigResource.Type.BROKER, "1")
            return dict(a.describe_configs([res])[res].result(30))

        for a in (admin, None):
            if a is None:  # the same after a restart: read from the store at start
                surface.broker.stop()
                surface.broker.start()
                a = AdminClient({"bootstrap.servers": surface.bootstrap})
            got = described(a)
            relogin = got["sasl.kerberos.min.time.before.relogin"]
            assert (relogin.value, relogin.source, relogin.is_read_only) == (
                "58000", ConfigSource.DYNAMIC_BROKER_CONFIG.value, False,
            )  # fmt: skip
            custom = got["my.plugin.setting"]  # a type Kafka cannot tell: maybe a password
            assert (custom.value, custom.is_sensitive, custom.source) == (
                None, True, ConfigSource.DYNAMIC_BROKER_CONFIG.value,
            )  # fmt: skip
            assert got["num.io.threads"].source == ConfigSource.DEFAULT_CONFIG.value
        admin = a

        # the legacy AlterConfigs replaces the broker's whole set
        legacy = ConfigResource(ConfigResource.Type.BROKER, "1",
                                set_config={"num.io.threads": "9"})  # fmt: skip
        admin.alter_configs([legacy])[legacy].result(30)
        assert _broker_store_configs(surface, 1) == {"num.io.threads": "9"}
        io = described(admin)["num.io.threads"]
        assert (io.value, io.source) == ("9", ConfigSource.DYNAMIC_BROKER_CONFIG.value)

        # a per-broker value above the cluster-wide default of the same name
        r = _raw_alter_broker(surface, "", [("num.io.threads", 0, "4"), ("x.custom", 0, "1")])
        assert int(r.error_code) == 0, r
        try:
            got = described(admin)
            assert (got["num.io.threads"].value, got["x.custom"].source) == (
                "9", ConfigSource.DYNAMIC_DEFAULT_BROKER_CONFIG.value,
            )  # fmt: skip
        finally:
            r = _raw_alter_broker(surface, "", [("num.io.threads", 1, None),
                                                ("x.custom", 1, None)])  # fmt: skip
            assert int(r.error_code) == 0, r

        for name, ops, fragment in [
            ("", [("sasl.kerberos.min.time.before.relogin", 0, "1")],
             "Cannot update these configs at default cluster level, broker id must be specified"),
            ("1", [("ssl.keystore.location", 0, "/k.jks")],
             "These security configs can be dynamically updated only per-listener using the "
             "listener prefix"),
            ("1", [("broker.id", 0, "7")], "Cannot update these configs dynamically"),
            ("2", [("num.io.threads", 0, "2")], "Unexpected broker id"),
        ]:
            bad = _raw_alter_broker(surface, name, ops)
            assert int(bad.error_code) == 42 and fragment in bad.error_message, bad
    finally:
        r = _raw_alter_broker(surface, "1", [("num.io.threads", 1, None)])
        assert int(r.error_code) == 0, r
    assert _broker_store_configs(surface, 1) == {}


def test_altered_format_configs_take_effect(surface: Surface, kp_admin: KafkaAdminClient) -> None:
    """compression.type and message.timestamp.type changed on a live topic apply to the next
    batch (kafka-python alters, confluent-kafka produces, raw Fetch shows the batches)."""
    from tests.support.clients import stored_batches

    name = unique("format")
    admin = AdminClient({"bootstrap.servers": surface.bootstrap})
    _create(admin, name, {"retention.ms": "-1"})
    p = Producer({"bootstrap.servers": surface.bootstrap, "linger.ms": 0})
    stamps: list[tuple[int, int]] = []

    def produce() -> None:
        p.produce(name, b"x" * 100, timestamp=1_000_000,
                  on_delivery=lambda err, m: stamps.append(m.timestamp()))  # fmt: skip
        assert p.flush(30) == 0

    produce()
    got = kp_admin.alter_configs([KpConfigResource(KpType.TOPIC, name, configs={
        "compression.type": "zstd", "message.timestamp.type": "LogAppendTime"})])  # fmt: skip
    assert got == {"topic": {name: "OK"}}
    produce()
    codecs = [b.codec for b in stored_batches(surface.bootstrap, name)]
    assert codecs == [0, 4]  # the first as produced, the next re-encoded with zstd
    assert stamps[0] == (1, 1_000_000)  # CreateTime (librdkafka's type 1)
    assert stamps[1][0] == 2 and stamps[1][1] > 1_000_000  # LogAppendTime, the broker's clock


def _raw_logger_alter(surface: Surface, name: str, ops: list[tuple[str, int, str | None]],
                      validate_only: bool = False) -> Any:  # fmt: skip
    return _raw_alter_broker(surface, name, ops, validate_only, resource_type=8)  # BROKER_LOGGER


def test_broker_loggers_are_described_and_set_at_runtime(
    surface: Surface, kp_admin: KafkaAdminClient
) -> None:
    """``kafka-configs --entity-type broker-loggers --entity-name 1``: DescribeConfigs on the
    BROKER_LOGGER resource lists this broker's loggers and their levels (Log4j's names),
    IncrementalAlterConfigs sets and unsets them at runtime, refusing what Kafka's
    RuntimeLoggerManager refuses (kafka-python describes; raw kio alters: no Python client
    sends it)."""

    def levels() -> dict[str, str]:
        got = kp_admin.describe_configs([KpConfigResource(KpType.BROKER_LOGGER, "1")])
        return {name: c["value"] for name, c in got["broker_logger"]["1"].items()}

    before = levels()
    assert before["root"] == "INFO" and before["broker_service"] == "INFO"
    child = "broker_service.api.produce"
    assert before[child] == "INFO"
    r = _raw_logger_alter(surface, "1", [("broker_service", 0, "DEBUG")], validate_only=True)
    assert int(r.error_code) == 0 and levels()["broker_service"] == "INFO"
    r = _raw_logger_alter(surface, "1", [("broker_service", 0, "DEBUG")])
    assert int(r.error_code) == 0, r
    try:
        now = levels()
        assert (now["broker_service"], now[child], now["root"]) == ("DEBUG", "DEBUG", "INFO")
    finally:
        r = _raw_logger_alter(surface, "1", [("broker_service", 1, None)])
        assert int(r.error_code) == 0, r
    assert levels()["broker_service"] == "INFO"
    for name, ops, code, fragment in [
        ("1", [("broker_service", 0, "LOUD")], 40, "not a supported log level"),
        ("1", [("no.such.logger", 0, "DEBUG")], 40, "Logger no.such.logger does not exist!"),
        ("1", [("root", 1, None)], 42, "Removing the log level of the root logger"),
        ("1", [("root", 2, "DEBUG")], 42, "APPEND operation is not allowed"),
        ("7", [("root", 0, "DEBUG")], 42, "Unexpected broker id"),
        ("", [("root", 0, "DEBUG")], 42, "Broker id must not be empty"),
    ]:
        bad = _raw_logger_alter(surface, name, ops)
        assert (int(bad.error_code), fragment in (bad.error_message or "")) == (code, True), bad
    legacy = surface.call(kio(33, 2, "AlterConfigsRequest", validate_only=False, resources=(
        kio(33, 2, "AlterConfigsResource", resource_type=8, resource_name="1", configs=(
            kio(33, 2, "AlterableConfig", name="root", value="DEBUG"),)),
    )))  # fmt: skip
    assert int(legacy.responses[0].error_code) == 42  # Kafka: incremental only
    assert levels()["root"] == "INFO"
