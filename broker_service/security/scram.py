"""SCRAM (RFC 5802 / 7677) credentials and the server side of the exchange, sans-I/O.

Credentials are stored salted and iterated (salt, StoredKey, ServerKey, iterations), exactly
what Kafka keeps: the password itself is never stored. The exchange itself is ``scramp``'s
``ScramServer``; Kafka specifics (saslname decoding, the iteration bounds Kafka enforces)
are here.
"""

from __future__ import annotations

import hashlib
import hmac
import os

from scramp import ScramException, ScramMechanism

from broker_service.metadata.records import ScramCredential

SCRAM_SHA_256, SCRAM_SHA_512 = "SCRAM-SHA-256", "SCRAM-SHA-512"
HASHES = {SCRAM_SHA_256: "sha256", SCRAM_SHA_512: "sha512"}
# The mechanism numbers of DescribeUserScramCredentials / AlterUserScramCredentials.
MECHANISM_IDS = {SCRAM_SHA_256: 1, SCRAM_SHA_512: 2}
MECHANISM_NAMES = {v: k for k, v in MECHANISM_IDS.items()}
MIN_ITERATIONS, MAX_ITERATIONS = 4096, 16384  # Kafka's bounds
DEFAULT_ITERATIONS = 8192


class ScramError(Exception):
    """The exchange failed (bad message, unknown user, wrong proof)."""


def _hmac(name: str, key: bytes, msg: bytes) -> bytes:
    return hmac.new(key, msg, name).digest()


def credential_from_salted_password(
    mechanism: str, salt: bytes, salted_password: bytes, iterations: int
) -> ScramCredential:
    name = HASHES[mechanism]
    client_key = _hmac(name, salted_password, b"Client Key")
    stored_key = hashlib.new(name, client_key).digest()
    server_key = _hmac(name, salted_password, b"Server Key")
    return ScramCredential(mechanism, salt, stored_key, server_key, iterations)


def salted_password(mechanism: str, password: str, salt: bytes, iterations: int) -> bytes:
    return hashlib.pbkdf2_hmac(HASHES[mechanism], password.encode(), salt, iterations)


def credential_from_password(
    mechanism: str, password: str, iterations: int = DEFAULT_ITERATIONS, salt: bytes | None = None
) -> ScramCredential:
    salt = salt if salt is not None else os.urandom(24)
    return credential_from_salted_password(
        mechanism, salt, salted_password(mechanism, password, salt, iterations), iterations
    )


def verify_password(cred: ScramCredential, password: str) -> bool:
    """PLAIN against a stored SCRAM credential: derive and compare (constant time)."""
    derived = credential_from_salted_password(
        cred.mechanism,
        cred.salt,
        salted_password(cred.mechanism, password, cred.salt, cred.iterations),
        cred.iterations,
    )
    return hmac.compare_digest(derived.stored_key, cred.stored_key)


def decode_saslname(name: str) -> str:
    """RFC 5802 saslname: ``=2C`` is ``,`` and ``=3D`` is ``=``; any other ``=`` is invalid."""
    out = []
    i = 0
    while i < len(name):
        c = name[i]
        if c == "=":
            code = name[i + 1 : i + 3]
            if code == "2C":
                out.append(",")
            elif code == "3D":
                out.append("=")
            else:
                raise ScramError("invalid username encoding")
            i += 3
            continue
        out.append(c)
        i += 1
    return "".join(out)


def client_first_username(message: str) -> str:
    """The user named by a client-first message (``n,,n=user,r=nonce[,ext...]``)."""
    parts = message.split(",")
    if len(parts) < 4 or parts[0] not in ("n", "y") or not parts[2].startswith("n="):
        raise ScramError("malformed client-first message")
    user = decode_saslname(parts[2][2:])
    if not user:
        raise ScramError("empty username")
    return user


class ScramServerExchange:
    """One SCRAM exchange: ``first(client_first, credential)`` -> server-first;
    ``final(client_final)`` -> server-final. Any failure raises ``ScramError``."""

    def __init__(self, mechanism: str) -> None:
        self.mechanism = mechanism
        self.username = ""
        self._cred: ScramCredential | None = None
        self._server = ScramMechanism(mechanism).make_server(self._auth_info)

    def _auth_info(self, _saslname: str) -> tuple[bytes, bytes, bytes, int]:
        c = self._cred
        if c is None:  # first() never lets it get here without a credential
            raise ScramException("unknown user")
        return c.salt, c.stored_key, c.server_key, c.iterations

    def first(self, client_first: bytes, credential: ScramCredential | None) -> bytes:
        try:
            text = client_first.decode()
            self.username = client_first_username(text)
            if credential is None:
                raise ScramError("unknown user")
            if credential.mechanism != self.mechanism:
                raise ScramError("credential of another mechanism")
            self._cred = credential
            self._server.set_client_first(text)
            return str(self._server.get_server_first()).encode()
        except (UnicodeDecodeError, ScramException, ValueError, TypeError, IndexError) as exc:
            raise ScramError(str(exc)) from None

    def final(self, client_final: bytes) -> bytes:
        try:
            self._server.set_client_final(client_final.decode())
            return str(self._server.get_server_final()).encode()
        except (UnicodeDecodeError, ScramException, ValueError, TypeError, IndexError) as exc:
            raise ScramError(str(exc)) from None
