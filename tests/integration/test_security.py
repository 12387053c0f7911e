"""Security end to end: real clients over SASL_SSL (SCRAM-SHA-512 and PLAIN, a test CA made
here), refused credentials and protocols with Kafka's error codes, per-listener advertised
endpoints, ACL enforcement (prefixed, deny over allow, restart) and the SCRAM/ACL admin APIs
through confluent-kafka's AdminClient."""

from __future__ import annotations

import asyncio
import datetime
import time
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from aiokafka import AIOKafkaConsumer, AIOKafkaProducer
from aiokafka.helpers import create_ssl_context
from confluent_kafka import Consumer, KafkaError, KafkaException, Producer
from confluent_kafka.admin import (
    AclBinding,
    AclBindingFilter,
    AclOperation,
    AclPermissionType,
    AdminClient,
    ResourcePatternType,
    ResourceType,
    ScramCredentialInfo,
    ScramMechanism,
    UserScramCredentialUpsertion,
)
from kafka import KafkaConsumer, KafkaProducer

from tests import kafka_wire as w
from tests.integration.security_support import (
    ADMIN,
    ADMIN_PASSWORD,
    SecureBroker,
    SecureWire,
    Tls,
    confluent_config,
    make_tls,
    start_secure_broker,
)
from tests.support.broker import BrokerProcess, start_all
from tests.support.wait import wait_for_value, wait_until

pytestmark = pytest.mark.timeout(180)

ALICE, ALICE_PASSWORD = "alice", "alice-pw"
ALICE_PW = ALICE_PASSWORD.encode()
TOPIC_AUTHORIZATION_FAILED = 29
SASL_AUTHENTICATION_FAILED = 58


@pytest.fixture(scope="module")
def tls(tmp_path_factory: pytest.TempPathFactory) -> Tls:
    return make_tls(tmp_path_factory.mktemp("ca"))


@pytest.fixture(scope="module")
def secure(tmp_path_factory: pytest.TempPathFactory, tls: Tls) -> Iterator[SecureBroker]:
    sb = start_secure_broker(tmp_path_factory.mktemp("secure") / "data", tls)
    try:
        admin = AdminClient(confluent_config(sb, "SCRAM-SHA-512", ADMIN, ADMIN_PASSWORD))
        upserts = [
            UserScramCredentialUpsertion(
                ALICE, ScramCredentialInfo(ScramMechanism.SCRAM_SHA_512, 4096), ALICE_PW
            ),
            UserScramCredentialUpsertion(
                ALICE, ScramCredentialInfo(ScramMechanism.SCRAM_SHA_256, 8192), ALICE_PW
            ),
        ]
        for fut in admin.alter_user_scram_credentials(upserts).values():
            fut.result(timeout=30)
        yield sb
    finally:
        sb.broker.stop()


def _admin(sb: SecureBroker) -> AdminClient:
    return AdminClient(confluent_config(sb, "SCRAM-SHA-512", ADMIN, ADMIN_PASSWORD))


def _create_topic(sb: SecureBroker, name: str) -> None:
    from confluent_kafka.admin import NewTopic

    admin = _admin(sb)  # referenced until the futures resolve
    for fut in admin.create_topics([NewTopic(name, 1)]).values():
        fut.result(timeout=30)


# -- real clients over SASL_SSL ----------------------------------------------------------------


def _confluent_round_trip(sb: SecureBroker, mechanism: str, topic: str) -> list[bytes]:
    conf = confluent_config(sb, mechanism, ADMIN, ADMIN_PASSWORD)
    p = Producer(conf)
    for i in range(5):
        p.produce(topic, f"v{i}".encode())
    assert p.flush(30) == 0
    c = Consumer({**conf, "group.id": f"g-{topic}", "auto.offset.reset": "earliest"})
    c.subscribe([topic])
    got: list[bytes] = []
    deadline = time.monotonic() + 30
    while len(got) < 5 and time.monotonic() < deadline:
        m = c.poll(0.5)
        if m is not None and m.error() is None:
            got.append(m.value())
    c.close()
    return got


def _kafka_python_round_trip(sb: SecureBroker, mechanism: str, topic: str) -> list[bytes]:
    common = dict(
        bootstrap_servers=sb.bootstrap("SASL_SSL"),
        security_protocol="SASL_SSL",
        sasl_mechanism=mechanism,
        sasl_plain_username=ADMIN,
        sasl_plain_password=ADMIN_PASSWORD,
        ssl_cafile=str(sb.tls.ca_file),
    )
    p = KafkaProducer(**common)
    for i in range(5):
        p.send(topic, f"v{i}".encode()).get(timeout=30)
    p.close()
    c = KafkaConsumer(topic, auto_offset_reset="earliest", consumer_timeout_ms=10000, **common)
    got = [m.value for m in c][:5]
    c.close()
    return got


def _aiokafka_round_trip(sb: SecureBroker, mechanism: str, topic: str) -> list[bytes]:
    async def run() -> list[bytes]:
        common = dict(
            bootstrap_servers=sb.bootstrap("SASL_SSL"),
            security_protocol="SASL_SSL",
            ssl_context=create_ssl_context(cafile=str(sb.tls.ca_file)),
            sasl_mechanism=mechanism,
            sasl_plain_username=ADMIN,
            sasl_plain_password=ADMIN_PASSWORD,
        )
        p = AIOKafkaProducer(**common)
        await p.start()
        try:
            for i in range(5):
                await p.send_and_wait(topic, f"v{i}".encode())
        finally:
            await p.stop()
        c = AIOKafkaConsumer(topic, auto_offset_reset="earliest", **common)
        await c.start()
        got: list[bytes] = []
        try:
            while len(got) < 5:
                m = await asyncio.wait_for(c.getone(), 20)
                got.append(m.value)
        finally:
            await c.stop()
        return got

    return asyncio.run(run())


ROUND_TRIPS = {
    "confluent": _confluent_round_trip,
    "kafka-python": _kafka_python_round_trip,
    "aiokafka": _aiokafka_round_trip,
}


@pytest.mark.parametrize("mechanism", ["SCRAM-SHA-512", "PLAIN"])
@pytest.mark.parametrize("client", list(ROUND_TRIPS))
def test_clients_produce_and_consume_over_sasl_ssl(
    secure: SecureBroker, client: str, mechanism: str
) -> None:
    topic = f"sec-{client}-{mechanism.lower()}-{uuid.uuid4().hex[:6]}"
    _create_topic(secure, topic)
    got = ROUND_TRIPS[client](secure, mechanism, topic)
    assert got == [f"v{i}".encode() for i in range(5)]


def test_scram_sha_256_user_created_through_admin_api(secure: SecureBroker) -> None:
    with SecureWire(secure.ports["SASL_SSL"], secure.tls.client_context()) as c:
        resp = c.scram("SCRAM-SHA-256", ALICE, ALICE_PASSWORD)
        assert int(resp.error_code) == 0, resp
    admin = _admin(secure)
    desc = admin.describe_user_scram_credentials([ALICE])
    info = desc[ALICE].result(timeout=30)
    assert sorted((i.mechanism.name, i.iterations) for i in info.scram_credential_infos) == [
        ("SCRAM_SHA_256", 8192),
        ("SCRAM_SHA_512", 4096),
    ]


# -- refusals ------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("mechanism", "user", "password", "message"),
    [
        ("PLAIN", ADMIN, "wrong", "Authentication failed: Invalid username or password"),
        ("PLAIN", "nobody", "pw", "Authentication failed: Invalid username or password"),
        ("SCRAM-SHA-512", ADMIN, "wrong", "invalid credentials with SASL mechanism SCRAM-SHA-512"),
        ("SCRAM-SHA-512", "nobody", "pw", "invalid credentials with SASL mechanism SCRAM-SHA-512"),
    ],
)
def test_wrong_password_and_unknown_user_are_refused(
    secure: SecureBroker, mechanism: str, user: str, password: str, message: str
) -> None:
    with SecureWire(secure.ports["SASL_SSL"], secure.tls.client_context()) as c:
        if mechanism == "PLAIN":
            resp = c.plain(user, password)
        else:
            resp = c.scram(mechanism, user, password)
        assert int(resp.error_code) == SASL_AUTHENTICATION_FAILED
        assert message in resp.error_message
        assert c.closed_by_peer(), "Kafka closes the connection after a failed authentication"


def test_confluent_client_reports_authentication_failure(secure: SecureBroker) -> None:
    errors: list[KafkaError] = []
    conf = confluent_config(secure, "SCRAM-SHA-512", ADMIN, "wrong")
    p = Producer({**conf, "error_cb": errors.append})
    deadline = time.monotonic() + 20
    while not errors and time.monotonic() < deadline:
        p.poll(0.2)
    assert errors and errors[0].code() == KafkaError._AUTHENTICATION, errors


def test_plain_tcp_to_sasl_listeners_is_refused(secure: SecureBroker) -> None:
    # Kafka requests before authentication: ApiVersions is answered, anything else closes.
    with SecureWire(secure.ports["SASL_PLAINTEXT"]) as c:
        assert int(c.call(w.api_versions_request(3)).error_code) == 0
        c.send(w.frame_of(w.metadata_request(12), c.next_cid()))
        assert c.closed_by_peer()
    # Plain TCP to the TLS listener: the TLS handshake fails, the connection is closed.
    with SecureWire(secure.ports["SASL_SSL"]) as c:
        c.send(w.frame_of(w.api_versions_request(0), 1))
        assert c.recv_frame() is None
    # An unknown mechanism: UNSUPPORTED_SASL_MECHANISM with the enabled list, then closed.
    with SecureWire(secure.ports["SASL_PLAINTEXT"]) as c:
        hs = c.handshake("GSSAPI")
        assert int(hs.error_code) == 33
        assert list(hs.mechanisms) == ["PLAIN", "SCRAM-SHA-256", "SCRAM-SHA-512"]
        assert c.closed_by_peer()
    # SASL on a listener without SASL: ILLEGAL_SASL_STATE, as Kafka answers.
    with SecureWire(secure.ports["PLAINTEXT"]) as c:
        assert int(c.handshake("PLAIN").error_code) == 34


def test_sasl_handshake_v0_with_bare_tokens(secure: SecureBroker) -> None:
    with SecureWire(secure.ports["SASL_PLAINTEXT"]) as c:
        assert int(c.handshake("PLAIN", version=0).error_code) == 0
        token = b"\x00" + ADMIN.encode() + b"\x00" + ADMIN_PASSWORD.encode()
        c.send(len(token).to_bytes(4, "big") + token)
        assert c.recv_frame() == b""  # PLAIN: an empty server token
        md = c.call(w.metadata_request(12))
        assert [int(b.port) for b in md.brokers] == [secure.ports["SASL_PLAINTEXT"]]


# -- listeners -----------------------------------------------------------------------------------


def test_metadata_advertises_the_listener_of_the_connection(secure: SecureBroker) -> None:
    for listener in ("PLAINTEXT", "SSL"):
        ctx = secure.tls.client_context() if listener == "SSL" else None
        with SecureWire(secure.ports[listener], ctx) as c:
            md = c.call(w.metadata_request(12))
            assert [int(b.port) for b in md.brokers] == [secure.ports[listener]]
    for listener in ("SASL_PLAINTEXT", "SASL_SSL"):
        ctx = secure.tls.client_context() if listener == "SASL_SSL" else None
        with SecureWire(secure.ports[listener], ctx) as c:
            assert int(c.plain(ADMIN, ADMIN_PASSWORD).error_code) == 0
            md = c.call(w.metadata_request(12))
            assert [int(b.port) for b in md.brokers] == [secure.ports[listener]]
    conf = confluent_config(secure, "PLAIN", ADMIN, ADMIN_PASSWORD)
    brokers = AdminClient(conf).list_topics(timeout=20).brokers
    assert [b.port for b in brokers.values()] == [secure.ports["SASL_SSL"]]


def test_nothing_leaks_to_unauthenticated_listeners(secure: SecureBroker) -> None:
    topic = f"private-{uuid.uuid4().hex[:6]}"
    _create_topic(secure, topic)
    for listener in ("PLAINTEXT", "SSL"):  # User:ANONYMOUS, no ACL grants it anything
        ctx = secure.tls.client_context() if listener == "SSL" else None
        with SecureWire(secure.ports[listener], ctx) as c:
            md = c.call(w.metadata_request(12))
            assert topic not in [t.name for t in md.topics]
            one = c.call(w.metadata_request(12, [topic]))
            assert int(one.topics[0].error_code) == TOPIC_AUTHORIZATION_FAILED
            fetched = c.call(w.fetch_request(11, topic, 0, 0, max_wait_ms=10))
            assert int(fetched.responses[0].partitions[0].error_code) == TOPIC_AUTHORIZATION_FAILED
            produced = c.call(w.produce_request(9, {topic: {0: w.build_batch([b"x"])}}))
            assert int(produced.responses[0].partition_responses[0].error_code) == 29


# -- ACLs ----------------------------------------------------------------------------------------


def _fetch_error(sb: SecureBroker, user: str, password: str, topic: str) -> int:
    with SecureWire(sb.ports["SASL_PLAINTEXT"]) as c:
        assert int(c.plain(user, password).error_code) == 0
        resp = c.call(w.fetch_request(11, topic, 0, 0, max_wait_ms=10))
        return int(resp.responses[0].partitions[0].error_code)


def _wait_for(check: Callable[[], object], timeout: float = 10.0) -> None:
    wait_until(check, timeout, "condition not reached")


def test_acls_prefixed_and_deny_over_allow(secure: SecureBroker) -> None:
    run = uuid.uuid4().hex[:6]
    open_topic, secret_topic = f"acl{run}-open", f"acl{run}-secret"
    _create_topic(secure, open_topic)
    _create_topic(secure, secret_topic)
    assert _fetch_error(secure, ALICE, ALICE_PASSWORD, open_topic) == TOPIC_AUTHORIZATION_FAILED

    admin = _admin(secure)
    allow_prefixed = AclBinding(
        ResourceType.TOPIC, f"acl{run}-", ResourcePatternType.PREFIXED,
        f"User:{ALICE}", "*", AclOperation.READ, AclPermissionType.ALLOW,
    )  # fmt: skip
    deny_secret = AclBinding(
        ResourceType.TOPIC, secret_topic, ResourcePatternType.LITERAL,
        f"User:{ALICE}", "*", AclOperation.READ, AclPermissionType.DENY,
    )  # fmt: skip
    for fut in admin.create_acls([allow_prefixed, deny_secret]).values():
        fut.result(timeout=30)
    assert _fetch_error(secure, ALICE, ALICE_PASSWORD, open_topic) == 0
    assert _fetch_error(secure, ALICE, ALICE_PASSWORD, secret_topic) == TOPIC_AUTHORIZATION_FAILED

    described = admin.describe_acls(
        AclBindingFilter(
            ResourceType.TOPIC,
            secret_topic,
            ResourcePatternType.MATCH,
            None,
            None,
            AclOperation.ANY,
            AclPermissionType.ANY,
        )  # fmt: skip
    ).result(timeout=30)
    assert set(described) == {allow_prefixed, deny_secret}

    # a consumer of alice's sees Kafka's error for the denied topic
    conf = {
        **confluent_config(secure, "SCRAM-SHA-256", ALICE, ALICE_PASSWORD),
        "group.id": f"alice-{run}",
    }
    # alice may not use the group either (no GROUP ACL): Kafka's error code, not a hang
    c = Consumer(conf)
    c.subscribe([secret_topic])
    seen: list[int] = []
    deadline = time.monotonic() + 20
    while not seen and time.monotonic() < deadline:
        m = c.poll(0.5)
        if m is not None and m.error() is not None:
            seen.append(m.error().code())
    c.close()
    assert seen and seen[0] in (
        KafkaError.TOPIC_AUTHORIZATION_FAILED,
        KafkaError.GROUP_AUTHORIZATION_FAILED,
    ), seen

    deleted = admin.delete_acls([AclBindingFilter(
        ResourceType.TOPIC, secret_topic, ResourcePatternType.LITERAL,
        None, None, AclOperation.ANY, AclPermissionType.ANY,
    )])  # fmt: skip
    for fut in deleted.values():
        assert fut.result(timeout=30) == [deny_secret]
    assert _fetch_error(secure, ALICE, ALICE_PASSWORD, secret_topic) == 0


def test_acls_survive_restart(tmp_path: Path, tls: Tls) -> None:
    sb = start_secure_broker(tmp_path / "data", tls)
    try:
        admin = _admin(sb)
        for fut in admin.alter_user_scram_credentials([
            UserScramCredentialUpsertion(
                ALICE, ScramCredentialInfo(ScramMechanism.SCRAM_SHA_512, 4096), ALICE_PW
            )
        ]).values():  # fmt: skip
            fut.result(timeout=30)
        _create_topic(sb, "kept")
        binding = AclBinding(
            ResourceType.TOPIC, "kept", ResourcePatternType.LITERAL,
            f"User:{ALICE}", "*", AclOperation.READ, AclPermissionType.ALLOW,
        )  # fmt: skip
        for fut in admin.create_acls([binding]).values():
            fut.result(timeout=30)
        assert _fetch_error(sb, ALICE, ALICE_PASSWORD, "kept") == 0
        sb.broker.stop()
        sb.broker.start()
        assert _fetch_error(sb, ALICE, ALICE_PASSWORD, "kept") == 0
        with SecureWire(sb.ports["SASL_PLAINTEXT"]) as c:  # and no one else's
            assert int(c.plain(ADMIN, ADMIN_PASSWORD).error_code) == 0
        admin = _admin(sb)
        listed = admin.describe_acls(
            AclBindingFilter(
                ResourceType.ANY,
                None,
                ResourcePatternType.ANY,
                None,
                None,
                AclOperation.ANY,
                AclPermissionType.ANY,
            )  # fmt: skip
        ).result(timeout=30)
        assert listed == [binding]
    finally:
        sb.broker.stop()


def test_acl_apis_answer_security_disabled_without_authorizer(fresh_broker: object) -> None:
    """The default broker (no authorizer) allows everything and says so to ACL requests,
    as Kafka does: SECURITY_DISABLED."""
    from kio.index import load_request_schema

    from tests.support.broker import BrokerProcess

    assert isinstance(fresh_broker, BrokerProcess)
    with w.WireClient(fresh_broker.port) as c:
        described = c.call(
            load_request_schema(29, 3)(
                resource_type_filter=1,
                resource_name_filter=None,
                pattern_type_filter=1,
                principal_filter=None,
                host_filter=None,
                operation=1,
                permission_type=1,
            )  # fmt: skip
        )
        assert int(described.error_code) == 54
    admin = AdminClient({"bootstrap.servers": fresh_broker.bootstrap})
    binding = AclBinding(
        ResourceType.TOPIC, "t", ResourcePatternType.LITERAL,
        "User:alice", "*", AclOperation.READ, AclPermissionType.ALLOW,
    )  # fmt: skip
    with pytest.raises(KafkaException) as err:
        admin.create_acls([binding])[binding].result(timeout=30)
    assert err.value.args[0].code() == KafkaError.SECURITY_DISABLED


def test_clients_reauthenticate_when_the_session_expires(tmp_path: Path, tls: Tls) -> None:
    """KIP-368: the broker gives a 2 s session lifetime; librdkafka re-authenticates on the
    same connection and keeps producing; a raw client that does not is disconnected."""
    sb = start_secure_broker(tmp_path / "data", tls, BROKER_SASL_SESSION_LIFETIME_MS="2000")
    try:
        _create_topic(sb, "reauth")
        p = Producer(confluent_config(sb, "SCRAM-SHA-512", ADMIN, ADMIN_PASSWORD))
        delivered: list[int] = []
        sent = 0

        def renewed_twice() -> bool:  # keeps producing until then
            nonlocal sent
            p.produce("reauth", str(sent).encode(), on_delivery=lambda e, m: delivered.append(
                -1 if e else int(m.value())))  # fmt: skip
            sent += 1
            p.poll(0.2)
            auths = sb.broker.log().count(f"authenticated User:{ADMIN} with SCRAM-SHA-512")
            return auths >= 3  # first authentication + at least two renewals

        wait_until(renewed_twice, 30, lambda: f"re-authentications; log {sb.broker.log()}")
        assert p.flush(30) == 0
        assert sorted(delivered) == list(range(sent))

        with SecureWire(sb.ports["SASL_PLAINTEXT"]) as c:
            authenticating = time.monotonic()  # the session starts after this
            resp = c.plain(ADMIN, ADMIN_PASSWORD)
            assert int(resp.error_code) == 0
            assert int(resp.session_lifetime.total_seconds() * 1000) == 2000

            def closed() -> bool:  # answered while the session lasts, then closed
                c.send(w.frame_of(w.metadata_request(12), c.next_cid()))
                return c.recv_frame() is None

            wait_until(closed, 20, "the expired session was never closed", interval=0.2)
            assert time.monotonic() - authenticating >= 2.0, "closed before the session expired"
    finally:
        sb.broker.stop()


def test_ssl_client_certificate_is_the_principal(tmp_path: Path) -> None:
    """With BROKER_TLS_CLIENT_CA_FILE the SSL listener requires a client certificate and the
    principal is its subject (RFC 2253 order, Kafka's default); no certificate, no entry."""
    import ssl

    import trustme
    from cryptography import x509

    ca = trustme.CA()
    server = ca.issue_cert("127.0.0.1")
    client = ca.issue_cert("alice@example.com", common_name="alice-client")
    subject = x509.load_pem_x509_certificate(client.cert_chain_pems[0].bytes()).subject
    principal = "User:" + subject.rfc4514_string()
    ca_file = tmp_path / "ca.pem"
    ca.cert_pem.write_to_path(str(ca_file))
    tls = Tls(
        ca_file,
        "".join(b.bytes().decode() for b in server.cert_chain_pems),
        server.private_key_pem.bytes().decode(),
    )
    sb = start_secure_broker(
        tmp_path / "data",
        tls,
        BROKER_TLS_CLIENT_CA_FILE=str(ca_file),
        BROKER_SUPER_USERS=principal,  # only the certificate's subject may do anything
    )
    try:
        with_cert = tls.client_context()
        client.configure_cert(with_cert)
        with SecureWire(sb.ports["SSL"], with_cert) as c:
            created = c.call(w.create_topics_request(7, ["by-cert"]))  # a super user may
            assert int(created.topics[0].error_code) == 0, created
            md = c.call(w.metadata_request(12, ["by-cert"]))
            assert int(md.topics[0].error_code) == 0, md.topics[0]
        other = trustme.CA().issue_cert("mallory", common_name="alice-client")
        for configure in (None, other.configure_cert):
            ctx = tls.client_context()
            if configure:
                configure(ctx)
            with pytest.raises((ssl.SSLError, ConnectionError, AssertionError)):
                with SecureWire(sb.ports["SSL"], ctx) as c:
                    c.call(w.metadata_request(12, ["by-cert"]))
    finally:
        sb.broker.stop()


def test_transactional_and_idempotent_producers_need_their_acls(secure: SecureBroker) -> None:
    """InitProducerId: a transactional id needs Write on it (TRANSACTIONAL_ID_AUTHORIZATION_
    FAILED), an idempotent producer IdempotentWrite on the cluster or Write on some topic
    (CLUSTER_AUTHORIZATION_FAILED), as Kafka answers."""
    from kio.index import load_request_schema

    def init(c: SecureWire, txn_id: str | None) -> int:
        req = load_request_schema(22, 4)(
            transactional_id=txn_id,
            transaction_timeout=datetime.timedelta(seconds=60),
            producer_id=-1,
            producer_epoch=-1,
        )
        return int(c.call(req).error_code)

    run = uuid.uuid4().hex[:6]
    bob = _scram_user(secure, f"bob{run}", "bob-pw")
    admin = _admin(secure)
    with SecureWire(secure.ports["SASL_PLAINTEXT"]) as c:
        assert int(c.plain(bob, "bob-pw").error_code) == 0
        assert init(c, f"txn-{run}") == 53
        assert init(c, None) == 31
    grants = [
        AclBinding(ResourceType.TRANSACTIONAL_ID, f"txn-{run}", ResourcePatternType.LITERAL,
                   f"User:{bob}", "*", AclOperation.WRITE, AclPermissionType.ALLOW),
        AclBinding(ResourceType.TOPIC, f"bobs-{run}", ResourcePatternType.PREFIXED,
                   f"User:{bob}", "*", AclOperation.WRITE, AclPermissionType.ALLOW),
    ]  # fmt: skip
    for fut in admin.create_acls(grants).values():
        fut.result(timeout=30)
    with SecureWire(secure.ports["SASL_PLAINTEXT"]) as c:
        assert int(c.plain(bob, "bob-pw").error_code) == 0
        assert init(c, f"txn-{run}") == 0
        assert init(c, None) == 0  # Write on some topic is enough for idempotence


def test_auto_creation_without_create_is_topic_authorization_failed(secure: SecureBroker) -> None:
    """Metadata for a missing topic the client may describe but not create, with auto
    creation on: TOPIC_AUTHORIZATION_FAILED, as Kafka's handleTopicMetadataRequest answers
    (it was UNKNOWN_TOPIC_OR_PARTITION, which a producer retries until it times out:
    aiokafka's own test_sasl_deny_autocreate_cluster); without auto creation the topic is
    simply unknown; with Create on it, it is created."""
    from tests.integration.surface import kio

    def metadata(c: SecureWire, topic: str, auto: bool) -> Any:
        req = kio(3, 9, "MetadataRequest", topics=(kio(3, 9, "MetadataRequestTopic", name=topic),),
                  allow_auto_topic_creation=auto, include_topic_authorized_operations=False,
                  include_cluster_authorized_operations=False)
        (t,) = c.call(req).topics
        return t

    run = uuid.uuid4().hex[:6]
    bob = _scram_user(secure, f"carol{run}", "carol-pw")
    topic = f"carols-{run}-new"
    admin = _admin(secure)
    grants = [AclBinding(ResourceType.TOPIC, f"carols-{run}", ResourcePatternType.PREFIXED,
                         f"User:{bob}", "*", op, AclPermissionType.ALLOW)
              for op in (AclOperation.DESCRIBE, AclOperation.WRITE)]  # fmt: skip
    for fut in admin.create_acls(grants).values():
        fut.result(timeout=30)
    with SecureWire(secure.ports["SASL_PLAINTEXT"]) as c:
        assert int(c.plain(bob, "carol-pw").error_code) == 0
        denied = metadata(c, topic, auto=True)
        assert (int(denied.error_code), denied.name) == (TOPIC_AUTHORIZATION_FAILED, topic)
        assert int(metadata(c, topic, auto=False).error_code) == 3  # UNKNOWN_TOPIC_OR_PARTITION
    assert topic not in admin.list_topics(timeout=30).topics
    create = AclBinding(ResourceType.TOPIC, f"carols-{run}", ResourcePatternType.PREFIXED,
                        f"User:{bob}", "*", AclOperation.CREATE, AclPermissionType.ALLOW)
    for fut in admin.create_acls([create]).values():
        fut.result(timeout=30)
    with SecureWire(secure.ports["SASL_PLAINTEXT"]) as c:
        assert int(c.plain(bob, "carol-pw").error_code) == 0
        assert int(metadata(c, topic, auto=True).error_code) in (0, 5)  # created
    assert topic in admin.list_topics(timeout=30).topics


def test_brokers_reach_each_other_through_a_sasl_only_listener(tmp_path: Path) -> None:
    """With SASL listeners only (the CDK deployment), a broker forwards a reassignment to
    the partition's leader over the leader's registered SASL listener, authenticating as the
    bootstrap admin with SCRAM-SHA-512."""
    brokers = start_all(
        BrokerProcess(
            tmp_path / "shared",
            BROKER_NODE_ID=str(i + 1),
            BROKER_LISTENERS="SASL_PLAINTEXT://127.0.0.1:0",
            BROKER_ADMIN_USER=ADMIN,
            BROKER_ADMIN_PASSWORD=ADMIN_PASSWORD,
            BROKER_SUPER_USERS=f"User:{ADMIN}",
            BROKER_AUTHORIZER="acl",
        )
        for i in range(2)
    )
    try:
        with SecureWire(brokers[0].port) as c:
            assert int(c.scram("SCRAM-SHA-512", ADMIN, ADMIN_PASSWORD).error_code) == 0
            wait_until(lambda: len(c.call(w.metadata_request(12)).brokers) == 2, 20,
                       "the two brokers never saw each other")  # fmt: skip
            assert (
                int(
                    c.call(w.create_topics_request(7, ["moved"], partitions=2)).topics[0].error_code
                )
                == 0
            )

            def placement() -> dict[int, int]:
                md = c.call(w.metadata_request(12, ["moved"]))
                return {int(p.partition_index): int(p.leader_id) for p in md.topics[0].partitions}

            leaders = wait_for_value(placement, lambda placed: set(placed.values()) == {1, 2},
                                     20, "partitions on both brokers")  # fmt: skip
            theirs = next(p for p, leader in leaders.items() if leader == 2)
            m = w.schema_module(45, 0)
            req = m.AlterPartitionReassignmentsRequest(
                timeout=datetime.timedelta(seconds=15),
                topics=(m.ReassignableTopic(name="moved", partitions=(
                    m.ReassignablePartition(partition_index=theirs, replicas=(1,)),)),),
            )  # fmt: skip
            resp = c.call(req)
            part = resp.responses[0].partitions[0]
            assert int(part.error_code) == 0, part  # forwarded to broker 2 over SASL
            md = c.call(w.metadata_request(12, ["moved"]))
            assert int(md.topics[0].partitions[theirs].leader_id) == 1
        # broker 2 authenticated broker 1's forwarded request (no client talked to it)
        assert f"authenticated User:{ADMIN} with SCRAM-SHA-512" in brokers[1].log()
    finally:
        for b in brokers:
            b.stop()


def test_describe_cluster_needs_no_acl_and_checks_the_endpoint_type(secure: SecureBroker) -> None:
    """Kafka's brokers answer DescribeCluster to any authenticated principal; only the
    cluster's authorized operations need Describe on the cluster (0 without it). We refused
    the whole request with CLUSTER_AUTHORIZATION_FAILED. An endpoint type other than brokers
    (1) is MISMATCHED_ENDPOINT_TYPE (controllers, 2) or UNSUPPORTED_ENDPOINT_TYPE."""
    carol = _scram_user(secure, f"carol{uuid.uuid4().hex[:6]}", "carol-pw")
    m = w.schema_module(60, 1)
    with SecureWire(secure.ports["SASL_PLAINTEXT"]) as c:
        assert int(c.plain(carol, "carol-pw").error_code) == 0
        r = c.call(m.DescribeClusterRequest(include_cluster_authorized_operations=True))
        assert int(r.error_code) == 0, r
        assert [int(b.broker_id) for b in r.brokers] == [secure.broker.node_id]
        assert int(r.cluster_authorized_operations) == 0  # no Describe on the cluster
        asked = m.DescribeClusterRequest(include_cluster_authorized_operations=False,
                                         endpoint_type=2)  # fmt: skip
        assert int(c.call(asked).error_code) == 114  # MISMATCHED_ENDPOINT_TYPE
        asked = m.DescribeClusterRequest(include_cluster_authorized_operations=False,
                                         endpoint_type=7)  # fmt: skip
        assert int(c.call(asked).error_code) == 115  # UNSUPPORTED_ENDPOINT_TYPE


def _scram_user(secure: SecureBroker, user: str, password: str) -> str:
    """A SCRAM-SHA-256 user with no ACL; its name."""
    upsert = UserScramCredentialUpsertion(
        user, ScramCredentialInfo(ScramMechanism.SCRAM_SHA_256, 4096), password.encode()
    )
    admin = _admin(secure)  # kept alive until its futures resolve
    for fut in admin.alter_user_scram_credentials([upsert]).values():
        fut.result(timeout=30)
    return user
