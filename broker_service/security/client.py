"""How this process reaches a secured listener as a client (other brokers, the control
functions, the operator tools): TLS and/or SASL (SCRAM or PLAIN)."""

from __future__ import annotations

import ssl
from dataclasses import dataclass


@dataclass(frozen=True)
class ClientSecurity:
    protocol: str = "PLAINTEXT"  # PLAINTEXT, SSL, SASL_PLAINTEXT or SASL_SSL
    username: str | None = None
    password: str | None = None
    mechanism: str = "SCRAM-SHA-512"
    ssl_context: ssl.SSLContext | None = None
