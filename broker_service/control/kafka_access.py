"""How a control function reaches the brokers' Kafka listener (balancer moves, autoscaler
drains): the listener's protocol and the admin credentials, told by the CDK stacks through
the environment and read from Secrets Manager once per cold start.

| env var | meaning |
|---|---|
| ``KAFKA_SECURITY_PROTOCOL`` | ``PLAINTEXT`` (default), ``SSL``, ``SASL_PLAINTEXT``, ``SASL_SSL`` |
| ``KAFKA_SASL_MECHANISM`` | ``SCRAM-SHA-512`` (default), ``SCRAM-SHA-256`` or ``PLAIN`` |
| ``ADMIN_SECRET_ARN`` | secret with JSON ``username`` and ``password`` (the brokers' admin) |
| ``KAFKA_TLS_SECRET_ARN`` | secret whose ``cert_pem`` is the brokers' certificate (TLS only) |
"""

from __future__ import annotations

import json
import logging
import ssl
from typing import Any, Literal

from pydantic import BaseModel, Field

from broker_service.security.client import ClientSecurity

log = logging.getLogger(__name__)

SecurityProtocol = Literal["PLAINTEXT", "SSL", "SASL_PLAINTEXT", "SASL_SSL"]
SaslMechanism = Literal["SCRAM-SHA-512", "SCRAM-SHA-256", "PLAIN"]


class KafkaAccess(BaseModel):
    """How a control function reaches the brokers: part of ``ControlSettings`` (env vars
    KAFKA_SECURITY_PROTOCOL, KAFKA_SASL_MECHANISM, ADMIN_SECRET_ARN, KAFKA_TLS_SECRET_ARN)."""

    kafka_security_protocol: SecurityProtocol = "PLAINTEXT"
    kafka_sasl_mechanism: SaslMechanism = "SCRAM-SHA-512"
    admin_secret_arn: str | None = Field(
        default=None, description="Secrets Manager secret: JSON username, password"
    )
    kafka_tls_secret_arn: str | None = Field(
        default=None, description="Secrets Manager secret with the brokers' cert_pem to trust"
    )

    @property
    def sasl(self) -> bool:
        return self.kafka_security_protocol.startswith("SASL_")

    @property
    def tls(self) -> bool:
        return self.kafka_security_protocol in ("SSL", "SASL_SSL")

    def client_security(self, secrets: Any | None = None) -> ClientSecurity | None:
        """The ClientSecurity for reassign(); None for PLAINTEXT (the default behaviour).
        ``secrets``: a boto3 secretsmanager client (default: a new one)."""
        if not self.sasl and not self.tls:
            return None
        if secrets is None:
            import boto3

            secrets = boto3.client("secretsmanager")
        username = password = None
        if self.sasl:
            if not self.admin_secret_arn:
                raise ValueError(f"{self.kafka_security_protocol} needs ADMIN_SECRET_ARN")
            admin = _secret_json(secrets, self.admin_secret_arn)
            username, password = admin["username"], admin["password"]
        context = self.ssl_context(secrets) if self.tls else None
        log.info("reaching the brokers over %s as %s (%s)", self.kafka_security_protocol,
                 username, self.kafka_sasl_mechanism if self.sasl else "no SASL")  # fmt: skip
        return ClientSecurity(
            self.kafka_security_protocol, username, password, self.kafka_sasl_mechanism, context
        )

    def ssl_context(self, secrets: Any) -> ssl.SSLContext:
        """Trust exactly the brokers' certificate when its secret is given (else the system
        CAs). Host names are not checked: brokers are reached at their task IPs, and the
        certificate names the service, not each task."""
        ctx = ssl.create_default_context()
        if self.kafka_tls_secret_arn:
            ctx = ssl.create_default_context(
                cadata=_secret_json(secrets, self.kafka_tls_secret_arn)["cert_pem"]
            )
            # The secret holds the server's own chain, not necessarily its root: let its
            # certificate be the trust anchor (Python 3.13+ sets this by default).
            ctx.verify_flags |= ssl.VERIFY_X509_PARTIAL_CHAIN
        ctx.check_hostname = False
        return ctx


def _secret_json(secrets: Any, arn: str) -> dict[str, str]:
    value: dict[str, str] = json.loads(secrets.get_secret_value(SecretId=arn)["SecretString"])
    return value
