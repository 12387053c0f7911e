"""Helpers for the security tests: a throwaway CA (trustme), a broker with every listener,
and a raw wire client that can speak TLS and SASL PLAIN / SCRAM (scramp's client side)."""

from __future__ import annotations

import socket
import ssl
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import trustme
from kio.index import load_request_schema
from scramp import ScramClient

from tests import kafka_wire as w
from tests.support.broker import BrokerProcess

ADMIN, ADMIN_PASSWORD = "admin", "admin-secret"


@dataclass
class Tls:
    ca_file: Path
    cert_pem: str
    key_pem: str

    def client_context(self) -> ssl.SSLContext:
        return ssl.create_default_context(cafile=str(self.ca_file))


def make_tls(directory: Path) -> Tls:
    ca = trustme.CA()
    server = ca.issue_cert("127.0.0.1", "localhost")
    ca_file = directory / "ca.pem"
    ca.cert_pem.write_to_path(str(ca_file))
    cert_pem = "".join(b.bytes().decode() for b in server.cert_chain_pems)
    return Tls(ca_file, cert_pem, server.private_key_pem.bytes().decode())


@dataclass
class SecureBroker:
    broker: BrokerProcess
    ports: dict[str, int]
    tls: Tls

    def bootstrap(self, listener: str) -> str:
        return f"127.0.0.1:{self.ports[listener]}"


def start_secure_broker(data_dir: Path, tls: Tls, **env: str) -> SecureBroker:
    """A broker with all four listeners, each on a port of the OS's choosing."""
    names = ("PLAINTEXT", "SASL_SSL", "SASL_PLAINTEXT", "SSL")
    settings = {
        "BROKER_LISTENERS": ",".join(f"{name}://127.0.0.1:0" for name in names),
        "BROKER_TLS_CERT_PEM": tls.cert_pem,  # as injected from Secrets Manager
        "BROKER_TLS_KEY_PEM": tls.key_pem,
        "BROKER_ADMIN_USER": ADMIN,
        "BROKER_ADMIN_PASSWORD": ADMIN_PASSWORD,
        "BROKER_SUPER_USERS": f"User:{ADMIN}",
        "BROKER_AUTHORIZER": "acl",
        "BROKER_SECURITY_REFRESH_MS": "200",
        **env,
    }
    b = BrokerProcess(data_dir, **settings).start()
    return SecureBroker(b, b.ports, tls)


class SecureWire(w.WireClient):
    """WireClient over TCP or TLS, with SASL helpers."""

    def __init__(self, port: int, tls: ssl.SSLContext | None = None, timeout: float = 10.0):
        raw = socket.create_connection(("127.0.0.1", port), timeout=timeout)
        raw.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        self.sock = tls.wrap_socket(raw, server_hostname="127.0.0.1") if tls else raw
        self._cid = 0

    def handshake(self, mechanism: str, version: int = 1) -> Any:
        return self.call(load_request_schema(17, version)(mechanism=mechanism))

    def authenticate(self, token: bytes, version: int = 2) -> Any:
        return self.call(load_request_schema(36, version)(auth_bytes=token))

    def plain(self, user: str, password: str) -> Any:
        hs = self.handshake("PLAIN")
        assert int(hs.error_code) == 0, hs
        return self.authenticate(b"\x00" + user.encode() + b"\x00" + password.encode())

    def scram(self, mechanism: str, user: str, password: str) -> Any:
        """The whole SCRAM exchange; returns the last SaslAuthenticate response."""
        hs = self.handshake(mechanism)
        assert int(hs.error_code) == 0, hs
        client = ScramClient([mechanism], user, password)
        first = self.authenticate(client.get_client_first().encode())
        if int(first.error_code) != 0:
            return first
        client.set_server_first(bytes(first.auth_bytes).decode())
        final = self.authenticate(client.get_client_final().encode())
        if int(final.error_code) == 0:
            client.set_server_final(bytes(final.auth_bytes).decode())  # verifies the server
        return final

    def call_as(self, request: Any, client_id: str) -> Any:
        cid = self.next_cid()
        self.send(w.frame_of(request, cid, client_id=client_id))
        payload = self.recv_frame()
        assert payload is not None, "connection closed"
        got, response = w.decode_response(
            int(request.__api_key__), int(request.__version__), payload
        )
        assert got == cid
        return response


def kio_request(api_key: int, version: int, body: dict[str, Any]) -> Any:
    from broker_service.protocol.codec import shape

    return shape(load_request_schema(api_key, version), body)


def confluent_config(sb: SecureBroker, mechanism: str, user: str, password: str) -> dict[str, Any]:
    return {
        "bootstrap.servers": sb.bootstrap("SASL_SSL"),
        "security.protocol": "SASL_SSL",
        "sasl.mechanisms": mechanism,
        "sasl.username": user,
        "sasl.password": password,
        "ssl.ca.location": str(sb.tls.ca_file),
    }
