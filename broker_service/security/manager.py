"""The broker's security state: listeners, TLS context, SASL mechanisms, the ACL authorizer,
client quotas and every broker's per-listener endpoints, kept in step with the metadata store.

ACLs and quotas are re-read every ``security_refresh_ms`` (changes made through this broker
apply at once); SCRAM credentials are read at each authentication.
"""

from __future__ import annotations

import asyncio
import logging
import ssl

from broker_service.config import BrokerConfig
from broker_service.config.broker import inter_broker_listener
from broker_service.config.listeners import Listener
from broker_service.metadata.ports import MetadataPorts
from broker_service.metadata.records import BrokerRecord, ScramCredential
from broker_service.security.acl import Authorizer
from broker_service.security.client import ClientSecurity
from broker_service.security.quotas import QuotaManager
from broker_service.security.sasl import MECHANISMS
from broker_service.security.scram import HASHES, credential_from_password, verify_password
from broker_service.security.tls import server_context

log = logging.getLogger(__name__)


class SecurityManager:
    def __init__(self, config: BrokerConfig, ports: MetadataPorts) -> None:
        self.config = config
        self.ports = ports
        self.metadata = ports.store  # the few calls made before serving, in a thread
        self.listeners: list[Listener] = config.listener_list()
        unknown = [m for m in config.sasl_mechanism_list() if m not in MECHANISMS]
        if unknown:
            raise ValueError(f"unsupported SASL mechanisms {unknown}; supported: {MECHANISMS}")
        self.mechanisms = config.sasl_mechanism_list()
        self.authorizer = Authorizer(
            config.authorizer == "acl",
            config.super_user_set(),
            config.allow_everyone_if_no_acl_found,
        )
        self.quotas = QuotaManager(config.quota_window_ms, config.quota_window_samples)
        self.endpoints: dict[int, dict[str, tuple[str, int]]] = {}

    def ssl_context(self) -> ssl.SSLContext | None:
        if not any(lst.tls for lst in self.listeners):
            return None
        c = self.config
        return server_context(
            c.tls_cert_file, c.tls_key_file, c.tls_cert_pem, c.tls_key_pem, c.tls_client_ca_file
        )

    def inter_broker_security(self) -> ClientSecurity | None:
        """How this broker reaches the others (reassignment forwarding, transaction markers):
        their registered endpoint is the first PLAINTEXT listener, else the first listener,
        with the bootstrap admin's credentials (SCRAM-SHA-512, whose server proof the client
        checks; TLS without certificate verification, as the certificate names the service,
        not each task's address)."""
        primary = inter_broker_listener(self.listeners)
        if primary.protocol == "PLAINTEXT":
            return None
        ctx = None
        if primary.tls:
            ctx = ssl.create_default_context()
            ctx.check_hostname = False
            ctx.verify_mode = ssl.CERT_NONE
        c = self.config
        if primary.sasl and not (c.admin_user and c.admin_password is not None):
            log.warning(
                "no PLAINTEXT listener and no BROKER_ADMIN_USER/_PASSWORD: requests between "
                "brokers (reassignment forwarding, transaction markers) cannot authenticate"
            )
        return ClientSecurity(
            primary.protocol,
            c.admin_user,
            c.admin_password.get_secret_value() if c.admin_password is not None else None,
            "SCRAM-SHA-512",
            ctx,
        )

    async def start(self, node_id: int) -> None:
        await asyncio.to_thread(self._bootstrap, node_id)
        await self.refresh()

    def _bootstrap(self, node_id: int) -> None:
        mine = {lst.name: (lst.advertised_host, lst.advertised_port) for lst in self.listeners}
        self.metadata.save_broker_endpoints(node_id, mine)
        self.endpoints[node_id] = mine
        user, password = self.config.admin_user, self.config.admin_password
        if user and password is not None:
            # The configured password (on AWS: the admin secret) is the bootstrap user's: a
            # stored credential that does not match it (a redeploy with a new secret over a
            # retained table, a rotated secret) is replaced, else the control functions,
            # which read the secret, could no longer authenticate.
            have = {c.mechanism: c for _, c in self.metadata.scram_credentials(user)}
            secret = password.get_secret_value()
            for mechanism in HASHES:
                stored = have.get(mechanism)
                if stored is None or not verify_password(stored, secret):
                    self.metadata.put_scram_credential(
                        user, credential_from_password(mechanism, secret)
                    )
                    log.info("%s %s credential of bootstrap user %s",
                             "created" if stored is None else "reset", mechanism, user)  # fmt: skip

    async def refresh(self) -> None:
        if self.authorizer.enabled:
            self.authorizer.set_acls(await self.ports.security.acls())
        self.quotas.set_quotas(await self.ports.security.client_quotas())

    async def refresh_endpoints(self) -> None:
        self.endpoints = await self.ports.brokers.broker_endpoints()

    async def credentials(self, user: str) -> list[ScramCredential]:
        return [c for _, c in await self.ports.security.scram_credentials(user)]

    def knows(self, b: BrokerRecord) -> bool:
        """Whether our copy of ``b``'s listeners is current: it must contain the endpoint
        the broker registered (a broker that restarted elsewhere registers a new one)."""
        return (b.host, b.port) in self.endpoints.get(b.broker_id, {}).values()

    def endpoint(self, b: BrokerRecord, listener: str | None) -> tuple[str, int]:
        """Where a client on ``listener`` reaches broker ``b``: that broker's endpoint of
        the same listener; its registered endpoint if it has none saved (or ours is stale)."""
        if listener is not None and self.knows(b):
            found = self.endpoints[b.broker_id].get(listener)
            if found is not None:
                return found
        return b.host, b.port
