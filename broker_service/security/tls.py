"""TLS for SSL / SASL_SSL listeners with Python's ``ssl`` module.

The certificate and key come from files or from PEM text in the environment (as ECS injects
a Secrets Manager secret); PEM text is written to a private temporary file only long enough
for ``load_cert_chain`` to read it. With a client CA, SSL listeners require and verify client
certificates and the principal is the certificate's subject, as Kafka's default
``User:CN=...,OU=...`` (RFC 2253 order).
"""

from __future__ import annotations

import os
import ssl
import tempfile
from pathlib import Path
from typing import Any


class TlsConfigError(ValueError):
    pass


def server_context(
    cert_file: Path | None,
    key_file: Path | None,
    cert_pem: str | None,
    key_pem: str | None,
    client_ca_file: Path | None,
) -> ssl.SSLContext:
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    ctx.minimum_version = ssl.TLSVersion.TLSv1_2
    if cert_pem:
        _load_pem(ctx, cert_pem, key_pem)
    elif cert_file:
        ctx.load_cert_chain(str(cert_file), str(key_file) if key_file else None)
    else:
        raise TlsConfigError(
            "an SSL or SASL_SSL listener needs BROKER_TLS_CERT_FILE/_KEY_FILE or "
            "BROKER_TLS_CERT_PEM/_KEY_PEM"
        )
    if client_ca_file:
        ctx.load_verify_locations(cafile=str(client_ca_file))
        ctx.verify_mode = ssl.CERT_REQUIRED
    return ctx


def _load_pem(ctx: ssl.SSLContext, cert_pem: str, key_pem: str | None) -> None:
    fd, path = tempfile.mkstemp(prefix="broker-tls-", suffix=".pem")  # mode 0600
    try:
        with os.fdopen(fd, "w") as f:
            f.write(cert_pem.strip() + "\n")
            if key_pem:
                f.write(key_pem.strip() + "\n")
        ctx.load_cert_chain(path)
    finally:
        os.unlink(path)


def _rdn_value(value: str) -> str:
    out = value
    for ch in ("\\", ",", "+", '"', "<", ">", ";", "="):
        out = out.replace(ch, "\\" + ch)
    return out


_SHORT = {
    "commonName": "CN",
    "organizationalUnitName": "OU",
    "organizationName": "O",
    "localityName": "L",
    "stateOrProvinceName": "ST",
    "countryName": "C",
    "streetAddress": "STREET",
    "domainComponent": "DC",
    "userId": "UID",
}


def principal_from_peercert(cert: dict[str, Any] | None) -> str | None:
    """``User:CN=alice,OU=eng,O=acme`` from ``SSLObject.getpeercert()``; None without one."""
    if not cert or not cert.get("subject"):
        return None
    rdns = []
    for rdn in reversed(cert["subject"]):  # RFC 2253: most specific first
        rdns.append("+".join(f"{_SHORT.get(k, k)}={_rdn_value(str(v))}" for k, v in rdn))
    return "User:" + ",".join(rdns)
