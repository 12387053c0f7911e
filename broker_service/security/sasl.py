"""SASL server side, sans-I/O: the per-connection session state and the PLAIN / SCRAM steps.

A step that needs a stored credential first says which user (``user_for``); the caller reads
the credentials from the metadata store (I/O) and hands them to ``step``. Error messages are
Kafka's, so clients show what they would show against Apache Kafka.
"""

from __future__ import annotations

import time
from dataclasses import dataclass

from broker_service.config.listeners import Listener
from broker_service.metadata.records import ScramCredential
from broker_service.security.scram import HASHES, ScramError, ScramServerExchange, verify_password

PLAIN = "PLAIN"
MECHANISMS = (PLAIN, *HASHES)
ANONYMOUS = "User:ANONYMOUS"

# Kafka error codes of the SASL exchange
UNSUPPORTED_SASL_MECHANISM = 33
ILLEGAL_SASL_STATE = 34
SASL_AUTHENTICATION_FAILED = 58

SASL_HANDSHAKE, SASL_AUTHENTICATE, API_VERSIONS = 17, 36, 18
PRE_AUTH_APIS = frozenset({SASL_HANDSHAKE, SASL_AUTHENTICATE, API_VERSIONS})


class SaslFailed(Exception):
    """Authentication failed; the message is what the client is told."""


def parse_plain(token: bytes) -> tuple[str, str, str]:
    """RFC 4616: ``[authzid] NUL authcid NUL passwd`` -> (authzid, user, password)."""
    parts = token.split(b"\x00")
    if len(parts) != 3:
        raise SaslFailed("Invalid SASL/PLAIN response: expected 3 tokens")
    try:
        authzid, user, password = (p.decode() for p in parts)
    except UnicodeDecodeError:
        raise SaslFailed("Invalid SASL/PLAIN response: not UTF-8") from None
    if not user:
        raise SaslFailed("Authentication failed: username not specified")
    if not password:
        raise SaslFailed("Authentication failed: password not specified")
    return authzid, user, password


class SaslAuthenticator:
    """One authentication (or re-authentication) with one mechanism."""

    def __init__(self, mechanism: str) -> None:
        self.mechanism = mechanism
        self.user: str | None = None  # set once authenticated
        self._scram = ScramServerExchange(mechanism) if mechanism in HASHES else None
        self._scram_step = 0

    @property
    def complete(self) -> bool:
        return self.user is not None

    def user_for(self, token: bytes) -> str | None:
        """The user whose credentials the next ``step`` needs (None: needs none)."""
        try:
            if self._scram is None:
                return parse_plain(token)[1]
            if self._scram_step == 0:
                from broker_service.security.scram import client_first_username

                return client_first_username(token.decode())
        except (SaslFailed, ScramError, UnicodeDecodeError):
            return None  # step() reports the malformed token
        return None

    def _failed(self) -> SaslFailed:
        return SaslFailed(
            "Authentication failed during authentication due to invalid credentials with "
            f"SASL mechanism {self.mechanism}"
        )

    def step(self, token: bytes, credentials: list[ScramCredential]) -> bytes:
        """Consume a client token, return the server's token; raise SaslFailed."""
        if self._scram is None:
            authzid, user, password = parse_plain(token)
            if authzid and authzid != user:
                raise SaslFailed(
                    "Authentication failed: Client requested an authorization id that is "
                    "different from username"
                )
            # PLAIN checks the password against the stored SCRAM credential (derive and
            # compare), so no plaintext password is ever stored.
            if not any(verify_password(c, password) for c in credentials):
                raise SaslFailed("Authentication failed: Invalid username or password")
            self.user = user
            return b""
        try:
            if self._scram_step == 0:
                self._scram_step = 1
                cred = next((c for c in credentials if c.mechanism == self.mechanism), None)
                return self._scram.first(token, cred)
            if self._scram_step == 1:
                self._scram_step = 2
                out = self._scram.final(token)
                self.user = self._scram.username
                return out
        except ScramError:
            raise self._failed() from None
        raise SaslFailed("Unexpected SASL token after authentication completed")


@dataclass
class SecuritySession:
    """What a connection knows about its client: listener, principal, SASL progress."""

    listener: Listener
    client_host: str = ""
    principal: str = ANONYMOUS
    authenticated: bool = False
    authenticator: SaslAuthenticator | None = None
    raw_tokens: bool = False  # SaslHandshake v0: the next frames are bare SASL tokens
    close_after_response: bool = False
    expires_at: float | None = None  # monotonic; KIP-368 session lifetime
    mechanism: str | None = None
    lifetime_ms: int = 0

    def __post_init__(self) -> None:
        self.authenticated = not self.listener.sasl

    def now(self) -> float:
        return time.monotonic()

    def expired(self) -> bool:
        return self.expires_at is not None and self.now() >= self.expires_at

    def gate(self, api_key: int) -> str | None:
        """Why a request may not be processed now (the connection is closed), else None."""
        if api_key in PRE_AUTH_APIS:
            return None
        if not self.authenticated:
            return f"unexpected request (API key {api_key}) during SASL authentication"
        if self.authenticator is not None:
            return None  # re-authenticating: the old session still holds
        if self.expired():
            return "SASL session expired and the client did not re-authenticate"
        return None

    def handshake(self, mechanism: str, enabled: list[str], version: int) -> int:
        """SaslHandshake: the error code to answer with."""
        if not self.listener.sasl:
            return ILLEGAL_SASL_STATE
        if self.authenticator is not None:  # a second handshake in the middle of one
            self.close_after_response = True
            return ILLEGAL_SASL_STATE
        if self.authenticated and self.lifetime_ms <= 0:  # re-authentication not offered
            return ILLEGAL_SASL_STATE
        if mechanism not in enabled or mechanism not in MECHANISMS:
            self.close_after_response = True
            return UNSUPPORTED_SASL_MECHANISM
        if self.authenticated and mechanism != self.mechanism:
            self.close_after_response = True  # re-authentication must keep the mechanism
            return UNSUPPORTED_SASL_MECHANISM
        self.authenticator = SaslAuthenticator(mechanism)
        self.raw_tokens = version == 0
        return 0

    def finish(self, auth: SaslAuthenticator, lifetime_ms: int) -> None:
        """A successful (re-)authentication: the session's principal and lifetime."""
        assert auth.user is not None
        principal = f"User:{auth.user}"
        if self.authenticated and self.mechanism is not None and principal != self.principal:
            raise SaslFailed("Cannot change principals during re-authentication")
        self.principal = principal
        self.mechanism = auth.mechanism
        self.authenticated = True
        self.authenticator = None
        self.raw_tokens = False
        self.lifetime_ms = lifetime_ms
        self.expires_at = self.now() + lifetime_ms / 1000 if lifetime_ms > 0 else None
