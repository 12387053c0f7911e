"""The balancer's and autoscaler's way into SASL-only brokers (control/kafka_access.py): the
environment the CDK stacks set, the admin secret read from Secrets Manager (moto server over
HTTP) and reassign() moving a partition on real broker processes whose only listener is
SASL_PLAINTEXT (the deployed brokers' listener). A real Lambda needs Docker; the functions'
code path (settings -> secret -> ClientSecurity -> reassign) is what runs here."""

from __future__ import annotations

import json
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import boto3
import pytest

from broker_service.control import settings as control_settings
from broker_service.control.balancer import safe_reassign
from broker_service.control.kafka_client import (
    BrokerUnreachable,
    ClientSecurity,
    Connection,
    KafkaClientError,
)
from broker_service.control.reassignment import reassign
from broker_service.control.settings import ControlSettings, cold_start_security
from tests import kafka_wire as w
from tests.integration.security_support import (
    ADMIN,
    ADMIN_PASSWORD,
    SecureWire,
    make_tls,
    start_secure_broker,
)
from tests.support.broker import BrokerProcess, running
from tests.support.moto import AWS_TEST_ENV
from tests.support.wait import wait_for_value, wait_until

TOPIC = "moved"


@pytest.fixture
def secrets(moto_endpoint: str, monkeypatch: pytest.MonkeyPatch) -> Iterator[Any]:
    """A Secrets Manager client on moto server, with the env a Lambda would have; the
    cold-start cache emptied before and after (each test is a fresh container)."""
    for name in ("AWS_PROFILE", "AWS_SESSION_TOKEN"):
        monkeypatch.delenv(name, raising=False)
    for k, v in AWS_TEST_ENV.items():
        monkeypatch.setenv(k, v)
    monkeypatch.setenv("AWS_ENDPOINT_URL", moto_endpoint)
    cold_start_security.cache_clear()
    yield boto3.client("secretsmanager")
    cold_start_security.cache_clear()


def admin_secret(secrets: Any, password: str = ADMIN_PASSWORD) -> str:
    """The secret as the brokers stack creates it (kafka-<tenant>/admin: username, password)."""
    name = f"kafka-t{uuid.uuid4().hex[:8]}/admin"
    value = json.dumps({"username": ADMIN, "password": password})
    arn: str = secrets.create_secret(Name=name, SecretString=value)["ARN"]
    return arn


def lambda_env(monkeypatch: pytest.MonkeyPatch, protocol: str, **more: str) -> None:
    monkeypatch.setenv("METADATA_TABLE", "kafka-t-metadata")  # what every control Lambda has
    monkeypatch.setenv("KAFKA_SECURITY_PROTOCOL", protocol)
    monkeypatch.setenv("KAFKA_SASL_MECHANISM", "SCRAM-SHA-512")
    for k, v in more.items():
        monkeypatch.setenv(k, v)


def test_settings_build_the_client_security_from_the_admin_secret(
    secrets: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    arn = admin_secret(secrets)
    lambda_env(monkeypatch, "SASL_PLAINTEXT", ADMIN_SECRET_ARN=arn)
    sec = cold_start_security()
    assert sec == ClientSecurity("SASL_PLAINTEXT", ADMIN, ADMIN_PASSWORD, "SCRAM-SHA-512", None)
    # Once per cold start: the secret is not read again for the next event.
    secrets.delete_secret(SecretId=arn, ForceDeleteWithoutRecovery=True)
    assert cold_start_security() is sec
    # The default (nothing set): plaintext, as before, and no secret read.
    monkeypatch.delenv("KAFKA_SECURITY_PROTOCOL")
    assert ControlSettings().client_security(secrets) is None


def test_settings_refuse_sasl_without_a_secret_and_bad_protocols(
    secrets: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    lambda_env(monkeypatch, "SASL_PLAINTEXT")
    with pytest.raises(ValueError, match="ADMIN_SECRET_ARN"):
        ControlSettings().client_security(secrets)
    lambda_env(monkeypatch, "SASL_SCRAM")
    with pytest.raises(ValueError, match="KAFKA_SECURITY_PROTOCOL|kafka_security_protocol"):
        ControlSettings()
    # A secret that is not there: Secrets Manager's own error, naming the ARN.
    lambda_env(monkeypatch, "SASL_PLAINTEXT", ADMIN_SECRET_ARN="arn:aws:secretsmanager:"
               "us-east-1:123456789012:secret:kafka-gone/admin-AbCdEf")  # fmt: skip
    with pytest.raises(secrets.exceptions.ResourceNotFoundException):
        ControlSettings().client_security(secrets)


@pytest.fixture(scope="module")
def sasl_only_cluster(tmp_path_factory: pytest.TempPathFactory) -> Iterator[list[BrokerProcess]]:
    """Two brokers (ids 1, 2) on a shared directory, each with one SASL_PLAINTEXT listener,
    the ACL authorizer and the bootstrap admin as super user: the CDK deployment's shape."""
    shared = tmp_path_factory.mktemp("sasl-only") / "shared"
    brokers = [
        BrokerProcess(
            shared,
            BROKER_NODE_ID=str(node_id),
            BROKER_LISTENERS="SASL_PLAINTEXT://127.0.0.1:0",
            BROKER_ADMIN_USER=ADMIN,
            BROKER_ADMIN_PASSWORD=ADMIN_PASSWORD,
            BROKER_SUPER_USERS=f"User:{ADMIN}",
            BROKER_AUTHORIZER="acl",
        )
        for node_id in (1, 2)
    ]
    with running(*brokers):
        yield brokers


def leaders(port: int, topic: str) -> dict[int, int]:
    with SecureWire(port) as c:
        assert int(c.scram("SCRAM-SHA-512", ADMIN, ADMIN_PASSWORD).error_code) == 0
        md = c.call(w.metadata_request(12, [topic]))
        return {int(p.partition_index): int(p.leader_id) for p in md.topics[0].partitions}


def topic_on_both(brokers: list[BrokerProcess]) -> dict[int, int]:
    """Create TOPIC (2 partitions) once both brokers see each other; its leaders."""
    with SecureWire(brokers[0].port) as c:
        assert int(c.scram("SCRAM-SHA-512", ADMIN, ADMIN_PASSWORD).error_code) == 0
        wait_until(lambda: len(c.call(w.metadata_request(12)).brokers) == 2, 20,
                   "the two brokers never saw each other")  # fmt: skip
        created = c.call(w.create_topics_request(7, [TOPIC], partitions=2))
        assert int(created.topics[0].error_code) in (0, 36)  # 36: exists (a rerun)
    return wait_for_value(lambda: leaders(brokers[0].port, TOPIC),
                          lambda placed: set(placed.values()) == {1, 2}, 20,
                          "partitions on both brokers")  # fmt: skip


def test_reassign_with_the_functions_security_moves_a_partition_on_sasl_only_brokers(
    sasl_only_cluster: list[BrokerProcess], secrets: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    brokers = sasl_only_cluster
    placement = topic_on_both(brokers)
    on_two = next(p for p, leader in placement.items() if leader == 2)
    address = {b_id: f"127.0.0.1:{b.port}" for b_id, b in zip((1, 2), brokers, strict=True)}

    # Without credentials (the old behaviour): a clear error, and nothing moves.
    with pytest.raises(KafkaClientError) as refused:
        reassign(address[2], TOPIC, on_two, 1, timeout_s=5)
    message = str(refused.value)
    assert "closed the connection" in message and "ClientSecurity" in message
    assert "ADMIN_SECRET_ARN" in message
    assert leaders(brokers[0].port, TOPIC)[on_two] == 2
    # The balancer turns it into a failed move (the run goes on), with that reason.
    failed = safe_reassign(reassign, address[2], TOPIC, on_two, 1)
    assert not failed.ok and "ClientSecurity" in (failed.error_message or "")

    # With what the balancer / autoscaler build from their environment and the secret.
    lambda_env(monkeypatch, "SASL_PLAINTEXT", ADMIN_SECRET_ARN=admin_secret(secrets))
    moved = control_settings.secured_reassign()(address[2], TOPIC, on_two, 1)
    assert moved.ok, moved
    assert leaders(brokers[1].port, TOPIC)[on_two] == 1  # the old leader handed over
    wait_until(lambda: leaders(brokers[0].port, TOPIC)[on_two] == 1, 10,  # the new one took
               "broker 1 never served the moved partition")  # it over  # fmt: skip
    assert f"authenticated User:{ADMIN} with SCRAM-SHA-512" in brokers[1].log()

    # A wrong password is refused by the broker, named as an authentication failure.
    wrong = ClientSecurity("SASL_PLAINTEXT", ADMIN, "not-the-password", "SCRAM-SHA-512")
    with pytest.raises(KafkaClientError, match="SaslAuthenticate.*SASL_AUTHENTICATION_FAILED"):
        reassign(address[1], TOPIC, on_two, 2, timeout_s=5, security=wrong)


def test_sasl_ssl_trusts_exactly_the_certificate_of_the_tls_secret(
    tmp_path: Path, secrets: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A globex-like tenant: SASL_SSL with the certificate from its TLS secret (cert_pem, as
    the brokers read it). Another certificate in the secret: the TLS handshake fails."""
    tls = make_tls(tmp_path)
    sb = start_secure_broker(tmp_path / "data", tls)
    try:
        port = sb.ports["SASL_SSL"]
        tls_arn = secrets.create_secret(
            Name=f"tls-{uuid.uuid4().hex[:8]}",
            SecretString=json.dumps({"cert_pem": tls.cert_pem, "key_pem": tls.key_pem}),
        )["ARN"]
        lambda_env(monkeypatch, "SASL_SSL", ADMIN_SECRET_ARN=admin_secret(secrets),
                   KAFKA_TLS_SECRET_ARN=tls_arn)  # fmt: skip
        sec = ControlSettings().client_security(secrets)
        assert sec is not None and sec.ssl_context is not None
        conn = Connection("127.0.0.1", port, security=sec)  # TLS + SCRAM-SHA-512
        try:
            assert conn.versions  # authenticated: ApiVersions known, the session is open
            md = conn.send(w.metadata_request(12))
            assert [int(b.port) for b in md.brokers] == [port]
        finally:
            conn.close()
        (tmp_path / "other").mkdir()
        other = make_tls(tmp_path / "other")  # a certificate of another CA
        secrets.put_secret_value(
            SecretId=tls_arn,
            SecretString=json.dumps({"cert_pem": other.cert_pem, "key_pem": other.key_pem}),
        )
        untrusted = ControlSettings().client_security(secrets)
        with pytest.raises(BrokerUnreachable, match="TLS .* failed.*CERTIFICATE_VERIFY_FAILED"):
            Connection("127.0.0.1", port, security=untrusted)
    finally:
        sb.broker.stop()
