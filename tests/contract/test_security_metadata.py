"""MetadataStore contract for security state (SCRAM credentials, ACLs, client quotas,
listener endpoints), run against SQLite and DynamoDB (moto server)."""

from __future__ import annotations

from broker_service.metadata.records import AclBinding, ScramCredential
from broker_service.metadata.store import MetadataStore

from .conftest import Backend


def _cred(mechanism: str, salt: bytes = b"salt\x00\xff", iterations: int = 4096) -> ScramCredential:
    return ScramCredential(mechanism, salt, b"stored\x00" * 4, b"server\xff" * 4, iterations)


def test_scram_credentials_put_list_replace_delete(backend: Backend) -> None:
    a, b = backend.store(), backend.store()
    assert a.scram_credentials() == []
    a.put_scram_credential("alice", _cred("SCRAM-SHA-512"))
    a.put_scram_credential("alice", _cred("SCRAM-SHA-256"))
    a.put_scram_credential("al#ice", _cred("SCRAM-SHA-256"))  # a prefix of another user
    assert b.scram_credentials("alice") == [
        ("alice", _cred("SCRAM-SHA-256")),
        ("alice", _cred("SCRAM-SHA-512")),
    ]
    assert [u for u, _ in b.scram_credentials()] == ["al#ice", "alice", "alice"]
    a.put_scram_credential("alice", _cred("SCRAM-SHA-512", b"new", 8192))  # replaces
    assert b.scram_credentials("alice")[1] == ("alice", _cred("SCRAM-SHA-512", b"new", 8192))
    assert a.delete_scram_credential("alice", "SCRAM-SHA-256") is True
    assert a.delete_scram_credential("alice", "SCRAM-SHA-256") is False
    assert [c.mechanism for _, c in b.scram_credentials("alice")] == ["SCRAM-SHA-512"]
    assert b.scram_credentials("nobody") == []


def test_acls_create_is_idempotent_and_delete_is_exact(store: MetadataStore) -> None:
    read = AclBinding(2, "orders-", 4, "User:alice", "*", 3, 3)
    deny = AclBinding(2, "orders-secret", 3, "User:alice", "10.0.0.1", 3, 2)
    group = AclBinding(3, "g", 3, "User:*", "*", 2, 3)
    store.create_acls([read, deny])
    store.create_acls([read, group])  # read again: no duplicate
    assert sorted(store.acls(), key=repr) == sorted([read, deny, group], key=repr)
    store.delete_acls([deny, AclBinding(2, "absent", 3, "User:x", "*", 3, 3)])
    assert sorted(store.acls(), key=repr) == sorted([read, group], key=repr)


def test_acls_are_shared_between_store_instances(backend: Backend) -> None:
    a, b = backend.store(), backend.store()
    acl = AclBinding(4, "kafka-cluster", 3, "User:admin", "*", 7, 3)
    a.create_acls([acl])
    assert b.acls() == [acl]


def test_client_quotas_set_remove_and_default_entities(store: MetadataStore) -> None:
    user_client = (("client-id", "c1"), ("user", "alice"))
    default_user = (("user", None),)
    store.alter_client_quota(user_client, {"producer_byte_rate": 1024.0}, [])
    store.alter_client_quota(default_user, {"consumer_byte_rate": 2048.5}, [])
    store.alter_client_quota(user_client, {"consumer_byte_rate": 10.0}, [])
    got = dict(store.client_quotas())
    assert got == {
        user_client: {"producer_byte_rate": 1024.0, "consumer_byte_rate": 10.0},
        default_user: {"consumer_byte_rate": 2048.5},
    }
    store.alter_client_quota(user_client, {}, ["producer_byte_rate", "absent"])
    assert dict(store.client_quotas())[user_client] == {"consumer_byte_rate": 10.0}
    store.alter_client_quota(default_user, {}, ["consumer_byte_rate"])  # nothing left: gone
    assert [e for e, _ in store.client_quotas()] == [user_client]


def test_broker_endpoints_replace_per_broker(store: MetadataStore) -> None:
    store.save_broker_endpoints(1, {"PLAINTEXT": ("h1", 9092), "SASL_SSL": ("h1", 9094)})
    store.save_broker_endpoints(2, {"PLAINTEXT": ("h2", 9092)})
    store.save_broker_endpoints(1, {"SASL_SSL": ("h1b", 9096)})
    assert store.broker_endpoints() == {
        1: {"SASL_SSL": ("h1b", 9096)},
        2: {"PLAINTEXT": ("h2", 9092)},
    }
