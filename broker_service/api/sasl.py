"""SaslHandshake and SaslAuthenticate (and bare tokens after a v0 handshake).

The connection's ``SecuritySession`` (``header.session``) holds the exchange; credentials are
read from the metadata store off the event loop. A failed authentication is answered with
Kafka's error and message, then the connection is closed, as Kafka does.
"""

from __future__ import annotations

import logging
from collections.abc import Awaitable
from typing import TYPE_CHECKING

from broker_service.api.base import Buffers, decode, respond
from broker_service.protocol.frames import RequestHeader
from broker_service.security.sasl import (
    ILLEGAL_SASL_STATE,
    SASL_AUTHENTICATION_FAILED,
    SaslAuthenticator,
    SaslFailed,
    SecuritySession,
)

if TYPE_CHECKING:
    from broker_service.api.services import BrokerServices

log = logging.getLogger(__name__)


def handshake(broker: BrokerServices, header: RequestHeader, frame: memoryview) -> Buffers:
    req = decode(header, frame)
    session: SecuritySession = header.session
    code = session.handshake(req.mechanism, broker.security.mechanisms, header.api_version)
    if code:
        log.info(
            "%s: SASL handshake for %r refused (error %d)",
            session.client_host,
            req.mechanism,
            code,
        )
    return respond(header, {"error_code": code, "mechanisms": broker.security.mechanisms})


async def step(broker: BrokerServices, session: SecuritySession, token: bytes) -> bytes:
    """One client token through the session's authenticator; raises SaslFailed."""
    auth = session.authenticator
    assert auth is not None
    user = auth.user_for(token)
    creds = await broker.security.credentials(user) if user else []
    out = auth.step(token, creds)
    if auth.complete:
        session.finish(auth, broker.config.sasl_session_lifetime_ms)
        log.info(
            "%s: authenticated %s with %s", session.client_host, session.principal, auth.mechanism
        )
    return out


def authenticate(
    broker: BrokerServices, header: RequestHeader, frame: memoryview
) -> Awaitable[Buffers]:
    return _authenticate(broker, header, bytes(decode(header, frame).auth_bytes))


async def _authenticate(broker: BrokerServices, header: RequestHeader, token: bytes) -> Buffers:
    session: SecuritySession = header.session
    auth: SaslAuthenticator | None = session.authenticator
    if not session.listener.sasl or auth is None or session.raw_tokens:
        return respond(
            header,
            {
                "error_code": ILLEGAL_SASL_STATE,
                "error_message": "SaslAuthenticate without a SaslHandshake first",
                "auth_bytes": b"",
                "session_lifetime": 0,
            },
        )
    try:
        out = await step(broker, session, token)
    except SaslFailed as exc:
        log.warning("%s: SASL authentication failed: %s", session.client_host, exc)
        session.close_after_response = True
        return respond(
            header,
            {
                "error_code": SASL_AUTHENTICATION_FAILED,
                "error_message": str(exc),
                "auth_bytes": b"",
                "session_lifetime": 0,
            },
        )
    return respond(
        header,
        {
            "error_code": 0,
            "error_message": None,
            "auth_bytes": out,
            "session_lifetime": session.lifetime_ms if session.authenticator is None else 0,
        },
    )


async def raw_token(broker: BrokerServices, session: SecuritySession, token: bytes) -> Buffers:
    """After SaslHandshake v0 the client sends bare tokens; a failure just closes."""
    try:
        return [await step(broker, session, token)]
    except SaslFailed as exc:
        log.warning("%s: SASL authentication failed: %s", session.client_host, exc)
        session.close_after_response = True
        return []
