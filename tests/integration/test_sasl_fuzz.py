"""Fuzzing the SASL exchange on a live broker: random, truncated and mutated tokens in every
step (SaslAuthenticate v0-v2, bare v0 tokens), PLAIN and SCRAM. The broker must answer with
an error or close that connection, never crash, and keep authenticating honest clients.

Pure part first: the sans-I/O authenticator only ever raises SaslFailed.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from scramp import ScramClient

from broker_service.security.sasl import SaslAuthenticator, SaslFailed
from broker_service.security.scram import credential_from_password
from tests import kafka_wire as w
from tests.integration.security_support import ADMIN, ADMIN_PASSWORD, SecureWire
from tests.support.broker import BrokerProcess

# one xdist worker runs this module, in order (XDIST_GROUPS in tests/conftest.py)
pytestmark = pytest.mark.timeout(120)

CREDS = [
    credential_from_password("SCRAM-SHA-256", ADMIN_PASSWORD, 4096),
    credential_from_password("SCRAM-SHA-512", ADMIN_PASSWORD, 4096),
]
MECHANISMS = ["PLAIN", "SCRAM-SHA-256", "SCRAM-SHA-512"]


def _valid_tokens(mechanism: str) -> list[bytes]:
    if mechanism == "PLAIN":
        return [b"\x00" + ADMIN.encode() + b"\x00" + ADMIN_PASSWORD.encode()]
    client = ScramClient([mechanism], ADMIN, ADMIN_PASSWORD)
    first = client.get_client_first().encode()
    return [first, b"c=biws,r=" + first.split(b"r=")[1] + b"xyz,p=AAAA"]


@st.composite
def tokens(draw: st.DrawFn, mechanism: str) -> bytes:
    seeds = _valid_tokens(mechanism)
    seed = draw(st.sampled_from(seeds))
    kind = draw(st.sampled_from(["random", "truncated", "mutated", "junk-suffix"]))
    if kind == "random":
        return draw(st.binary(max_size=300))
    if kind == "truncated":
        return seed[: draw(st.integers(0, len(seed)))]
    if kind == "mutated":
        data = bytearray(seed)
        for _ in range(draw(st.integers(1, 4))):
            if data:
                data[draw(st.integers(0, len(data) - 1))] = draw(st.integers(0, 255))
        return bytes(data)
    return seed + draw(st.binary(min_size=1, max_size=50))


@settings(max_examples=300, deadline=2000, database=None)
@given(st.data())
def test_authenticator_only_raises_sasl_failed(data: st.DataObject) -> None:
    mechanism = data.draw(st.sampled_from(MECHANISMS))
    auth = SaslAuthenticator(mechanism)
    for _ in range(data.draw(st.integers(1, 3))):
        token = data.draw(tokens(mechanism))
        try:
            auth.user_for(token)
            auth.step(token, CREDS)
        except SaslFailed:
            return


@pytest.fixture(scope="module")
def sasl_broker(tmp_path_factory: pytest.TempPathFactory) -> Iterator[BrokerProcess]:
    d: Path = tmp_path_factory.mktemp("sasl-fuzz") / "data"
    b = BrokerProcess(
        d,
        BROKER_LISTENERS="PLAINTEXT://127.0.0.1:0,SASL_PLAINTEXT://127.0.0.1:0",
        BROKER_ADMIN_USER=ADMIN,
        BROKER_ADMIN_PASSWORD=ADMIN_PASSWORD,
    ).start()
    b.sasl_port = b.ports["SASL_PLAINTEXT"]  # type: ignore[attr-defined]
    yield b
    b.stop()


def _throw(port: int, mechanism: str, version: int, token_list: list[bytes]) -> None:
    try:
        with SecureWire(port, timeout=2.0) as c:
            hs = c.handshake(mechanism, version=0 if version < 0 else 1)
            assert int(hs.error_code) == 0
            for token in token_list:
                if version < 0:  # bare tokens after a v0 handshake
                    c.send(len(token).to_bytes(4, "big") + token)
                    if c.recv_frame() is None:
                        return
                else:
                    resp = c.authenticate(token, version=version)
                    if int(resp.error_code) == 58:  # failed: Kafka answers, then closes
                        assert c.closed_by_peer(timeout=2.0)
                        return
                    # 34 ILLEGAL_SASL_STATE: a token after the exchange completed
                    assert int(resp.error_code) in (0, 34), resp
    except (TimeoutError, AssertionError, OSError) as exc:
        if isinstance(exc, AssertionError) and "connection closed" not in str(exc):
            raise


@settings(
    max_examples=120,
    deadline=5000,
    database=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)
@given(st.data())
def test_live_broker_survives_random_sasl_tokens(
    sasl_broker: BrokerProcess, data: st.DataObject
) -> None:
    mechanism = data.draw(st.sampled_from(MECHANISMS))
    version = data.draw(st.sampled_from([-1, 0, 1, 2]))
    token_list = data.draw(st.lists(tokens(mechanism), min_size=1, max_size=3))
    _throw(sasl_broker.sasl_port, mechanism, version, token_list)  # type: ignore[attr-defined]
    assert sasl_broker.alive()


def test_broker_still_authenticates_after_the_fuzzing(sasl_broker: BrokerProcess) -> None:
    assert sasl_broker.alive()
    with SecureWire(sasl_broker.sasl_port) as c:  # type: ignore[attr-defined]
        assert int(c.scram("SCRAM-SHA-512", ADMIN, ADMIN_PASSWORD).error_code) == 0
        md = c.call(w.metadata_request(12))
        assert [int(b.port) for b in md.brokers] == [sasl_broker.sasl_port]  # type: ignore[attr-defined]
    w.assert_wire_healthy(sasl_broker.port)
    assert "Traceback" not in sasl_broker.log()
