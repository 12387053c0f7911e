"""Pure security logic: listener specs, SCRAM credentials (RFC 7677 vector), SASL state,
ACL decisions as Kafka makes them, quota entity precedence and throttle arithmetic."""

from __future__ import annotations

import base64

import pytest

from broker_service.config.listeners import ListenerConfigError, build_listeners
from broker_service.metadata.ports import MetadataPorts
from broker_service.metadata.records import AclBinding
from broker_service.security import acl
from broker_service.security.quotas import QuotaManager, candidate_entities
from broker_service.security.sasl import (
    ILLEGAL_SASL_STATE,
    UNSUPPORTED_SASL_MECHANISM,
    SaslAuthenticator,
    SaslFailed,
    SecuritySession,
    parse_plain,
)
from broker_service.security.scram import (
    ScramError,
    client_first_username,
    credential_from_password,
    credential_from_salted_password,
    salted_password,
    verify_password,
)


# -- listeners --------------------------------------------------------------------------------
def test_default_listener_is_plaintext_on_host_and_port() -> None:
    [lst] = build_listeners(None, None, "0.0.0.0", 9092, "broker.example", None)
    assert (lst.name, lst.host, lst.port) == ("PLAINTEXT", "0.0.0.0", 9092)
    assert (lst.advertised_host, lst.advertised_port) == ("broker.example", 9092)


def test_advertised_listeners_match_by_name_then_position() -> None:
    got = build_listeners(
        "PLAINTEXT://0.0.0.0:9092,SASL_SSL://[::]:9094",
        "SASL_SSL://b1.example:19094,PLAINTEXT://b1.internal:9092",
        "x", 1, None, None,
    )  # fmt: skip
    assert [(g.name, g.host, g.advertised_host, g.advertised_port) for g in got] == [
        ("PLAINTEXT", "0.0.0.0", "b1.internal", 9092),
        ("SASL_SSL", "::", "b1.example", 19094),
    ]
    assert got[1].tls and got[1].sasl and not got[0].tls


def test_wildcard_listeners_advertise_the_advertised_host() -> None:
    got = build_listeners("PLAINTEXT://0.0.0.0:9092,SASL_SSL://10.0.0.5:9094", None,
                          "x", 1, "10.1.2.3", None)  # fmt: skip
    assert [(g.advertised_host, g.advertised_port) for g in got] == [
        ("10.1.2.3", 9092),
        ("10.0.0.5", 9094),
    ]


@pytest.mark.parametrize(
    "spec", ["PLAINTEXT:9092", "FOO://h:1", "SSL://h:x", "SSL://h:1,SSL://h:2", ""]
)
def test_bad_listener_specs_are_refused(spec: str) -> None:
    with pytest.raises(ListenerConfigError):
        build_listeners(spec or ",", None, "h", 1, None, None)


# -- SCRAM ------------------------------------------------------------------------------------
def test_scram_sha_256_credential_from_rfc7677_inputs_verifies_only_its_password() -> None:
    # RFC 7677 section 3: password "pencil", salt W22ZaJ0SNY7soEsUEjb6gQ==, 4096 iterations
    salt = base64.b64decode("W22ZaJ0SNY7soEsUEjb6gQ==")
    cred = credential_from_salted_password(
        "SCRAM-SHA-256", salt, salted_password("SCRAM-SHA-256", "pencil", salt, 4096), 4096
    )
    assert verify_password(cred, "pencil")
    assert not verify_password(cred, "pencil2")
    assert len(cred.stored_key) == 32 and len(cred.server_key) == 32


def test_stored_credential_never_contains_the_password() -> None:
    cred = credential_from_password("SCRAM-SHA-512", "hunter2-hunter2")
    blob = cred.salt + cred.stored_key + cred.server_key
    assert b"hunter2" not in blob
    assert len(cred.stored_key) == 64 and cred.iterations >= 4096


def test_client_first_username_decodes_saslname() -> None:
    assert client_first_username("n,,n=a=2Cb=3Dc,r=abc") == "a,b=c"
    for bad in ("", "x,,n=a,r=1", "n,,r=1,n=a", "n,,n=a=41,r=1"):
        with pytest.raises(ScramError):
            client_first_username(bad)


def test_full_scram_exchange_with_scramp_client() -> None:
    from scramp import ScramClient

    cred = credential_from_password("SCRAM-SHA-512", "pw")
    auth = SaslAuthenticator("SCRAM-SHA-512")
    client = ScramClient(["SCRAM-SHA-512"], "bob", "pw")
    first = client.get_client_first().encode()
    assert auth.user_for(first) == "bob"
    client.set_server_first(auth.step(first, [cred]).decode())
    final = auth.step(client.get_client_final().encode(), [])
    client.set_server_final(final.decode())  # raises if the server's proof is wrong
    assert auth.complete and auth.user == "bob"


def test_scram_wrong_password_and_unknown_user_fail_alike() -> None:
    from scramp import ScramClient

    cred = credential_from_password("SCRAM-SHA-256", "right")
    for creds, password in (([cred], "wrong"), ([], "right")):
        auth = SaslAuthenticator("SCRAM-SHA-256")
        client = ScramClient(["SCRAM-SHA-256"], "bob", password)
        with pytest.raises(SaslFailed, match="invalid credentials with SASL mechanism"):
            client.set_server_first(auth.step(client.get_client_first().encode(), creds).decode())
            auth.step(client.get_client_final().encode(), [])


def test_plain_parsing_and_authzid() -> None:
    assert parse_plain(b"\x00u\x00p") == ("", "u", "p")
    for bad in (b"u\x00p", b"\x00\x00p", b"\x00u\x00", b"\xff\x00u\x00p"):
        with pytest.raises(SaslFailed):
            parse_plain(bad)
    cred = credential_from_password("SCRAM-SHA-256", "p")
    with pytest.raises(SaslFailed, match="authorization id"):
        SaslAuthenticator("PLAIN").step(b"other\x00u\x00p", [cred])


def _session(name: str = "SASL_PLAINTEXT") -> SecuritySession:
    from broker_service.config.listeners import Listener

    return SecuritySession(Listener(name, "h", 1, "h", 1))


def test_session_gates_requests_until_authenticated() -> None:
    s = _session()
    assert s.gate(18) is None and s.gate(17) is None
    assert s.gate(3) is not None
    assert s.handshake("GSSAPI", ["PLAIN"], 1) == UNSUPPORTED_SASL_MECHANISM
    assert s.close_after_response
    s = _session()
    assert s.handshake("PLAIN", ["PLAIN"], 1) == 0
    auth = s.authenticator
    assert auth is not None
    auth.step(b"\x00u\x00p", [credential_from_password("SCRAM-SHA-256", "p")])
    s.finish(auth, 0)
    assert s.principal == "User:u" and s.gate(3) is None
    assert s.handshake("PLAIN", ["PLAIN"], 1) == ILLEGAL_SASL_STATE  # no re-auth offered
    assert _session("PLAINTEXT").handshake("PLAIN", ["PLAIN"], 1) == ILLEGAL_SASL_STATE


def test_reauthentication_keeps_the_principal() -> None:
    s = _session()
    cred = credential_from_password("SCRAM-SHA-256", "p")
    s.handshake("PLAIN", ["PLAIN"], 1)
    assert s.authenticator is not None
    s.authenticator.step(b"\x00u\x00p", [cred])
    s.finish(s.authenticator, 60_000)
    assert s.expires_at is not None
    assert s.handshake("PLAIN", ["PLAIN"], 1) == 0  # re-authentication
    assert s.authenticator is not None
    s.authenticator.step(b"\x00v\x00p", [cred])
    with pytest.raises(SaslFailed, match="change principals"):
        s.finish(s.authenticator, 60_000)


# -- ACLs -------------------------------------------------------------------------------------
def _acl(name: str, pattern: int, op: int, perm: int, who: str = "User:alice", host: str = "*"):
    return AclBinding(acl.TOPIC, name, pattern, who, host, op, perm)


def test_acl_decisions_follow_kafka() -> None:
    a = acl.Authorizer(True, ["User:admin"])
    a.set_acls(
        [
            _acl("orders-", acl.PREFIXED, acl.READ, acl.ALLOW),
            _acl("orders-secret", acl.LITERAL, acl.READ, acl.DENY),
            _acl("*", acl.LITERAL, acl.WRITE, acl.ALLOW, who="User:*"),
            _acl("pay", acl.LITERAL, acl.ALL, acl.ALLOW, host="10.0.0.1"),
        ]
    )
    ok = lambda op, name, who="User:alice", host="1.2.3.4": a.authorize(  # noqa: E731
        who, host, op, acl.TOPIC, name
    )
    assert ok(acl.READ, "orders-eu")  # prefixed allow
    assert ok(acl.DESCRIBE, "orders-eu")  # READ implies DESCRIBE
    assert not ok(acl.READ, "orders-secret")  # deny wins over the prefixed allow
    assert ok(acl.DESCRIBE, "orders-secret")  # denying READ does not deny DESCRIBE
    assert not ok(acl.READ, "other")  # no ACL: denied
    assert ok(acl.WRITE, "anything", who="User:bob")  # wildcard resource and principal
    assert not ok(acl.READ, "pay") and ok(acl.READ, "pay", host="10.0.0.1")  # host match
    assert ok(acl.DELETE, "whatever", who="User:admin")  # super user
    assert not acl.Authorizer(True, []).authorize("User:x", "h", acl.READ, acl.TOPIC, "t")
    assert acl.Authorizer(True, [], allow_if_no_acl=True).authorize(
        "User:x", "h", acl.READ, acl.TOPIC, "t"
    )
    assert acl.Authorizer(False, []).authorize("User:x", "h", acl.READ, acl.TOPIC, "t")


def test_acl_validation_and_filters() -> None:
    good = _acl("t", acl.LITERAL, acl.READ, acl.ALLOW)
    acl.validate(good)
    for bad in (
        _acl("t", acl.MATCH, acl.READ, acl.ALLOW),
        _acl("t", acl.LITERAL, acl.CLUSTER_ACTION, acl.ALLOW),
        _acl("t", acl.LITERAL, acl.READ, acl.ALLOW, who="alice"),
        AclBinding(acl.CLUSTER, "other", acl.LITERAL, "User:a", "*", acl.ALTER, acl.ALLOW),
    ):
        with pytest.raises(acl.InvalidAcl):
            acl.validate(bad)
    prefixed = _acl("ord", acl.PREFIXED, acl.READ, acl.ALLOW)
    args = (acl.TOPIC, "orders", acl.MATCH, None, None, acl.ANY, acl.ANY)
    assert acl.matches_filter(prefixed, *args)
    assert not acl.matches_filter(good, *args)
    assert not acl.matches_filter(prefixed, acl.TOPIC, "orders", acl.LITERAL, None, None, 1, 1)


# -- quotas -----------------------------------------------------------------------------------
def test_quota_entity_precedence_is_kafkas() -> None:
    order = candidate_entities("alice", "app")
    assert order[0] == (("client-id", "app"), ("user", "alice"))
    assert order[2] == (("user", "alice"),)
    assert order[-1] == (("client-id", None),)
    q = QuotaManager(1000, 11)
    q.set_quotas([((("client-id", None),), {"producer_byte_rate": 10.0}),
                  ((("user", "alice"),), {"producer_byte_rate": 1000.0})])  # fmt: skip
    assert q.record("producer_byte_rate", "alice", "app", 5000, 0.0) == 0  # alice's 1000/s
    assert q.record("producer_byte_rate", "bob", "app", 5000, 0.0) > 0  # default client 10/s


def test_throttle_is_kafkas_formula_and_bounded() -> None:
    q = QuotaManager(1000, 11)  # rate over >= 10 s
    q.set_quotas([((("client-id", "c"),), {"producer_byte_rate": 100.0})])
    assert q.record("producer_byte_rate", "u", "c", 1000, 0.0) == 0  # 100 B/s: at the bound
    # 3000 B over 10 s = 300 B/s: (300 - 100) / 100 * 10 s = 20 s, capped at 11 s
    assert q.record("producer_byte_rate", "u", "c", 2000, 0.5) == 11_000
    throttle, deliver = q.record_fetch("u", "c", 10, 0.5)
    assert (throttle, deliver) == (0, True)  # no consumer quota for c


def test_bootstrap_admin_follows_the_configured_password(tmp_path: object) -> None:
    """A redeploy over a retained table brings a new admin secret: the stored credential of
    the bootstrap user is replaced by one for the configured password (else the control
    functions, which read the secret, could not authenticate); an unchanged one is kept."""
    from pathlib import Path

    from broker_service.config import BrokerConfig
    from broker_service.metadata.sqlite import SqliteMetadataStore
    from broker_service.security.manager import SecurityManager

    md = SqliteMetadataStore(Path(str(tmp_path)) / "m.sqlite")
    try:
        def boot(password: str) -> dict[str, object]:
            cfg = BrokerConfig(admin_user="admin", admin_password=password)
            SecurityManager(cfg, MetadataPorts(md))._bootstrap(1)
            return {c.mechanism: c for _, c in md.scram_credentials("admin")}

        first = boot("old-secret")
        assert set(first) == {"SCRAM-SHA-256", "SCRAM-SHA-512"}
        assert boot("old-secret") == first  # same password: untouched (same salt)
        second = boot("new-secret")
        for c in second.values():
            assert verify_password(c, "new-secret")  # type: ignore[arg-type]
            assert not verify_password(c, "old-secret")  # type: ignore[arg-type]
    finally:
        md.close()
