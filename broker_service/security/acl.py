"""Kafka ACLs, sans-I/O: codes, validation, filters and the authorization decision.

Semantics are Apache Kafka's (``AclAuthorizer`` / ``StandardAuthorizer``): super users may do
anything; a matching DENY wins over any ALLOW; READ, WRITE, DELETE and ALTER imply DESCRIBE,
ALTER_CONFIGS implies DESCRIBE_CONFIGS; a resource matches LITERAL ACLs of its name or of
``*`` and PREFIXED ACLs whose name starts it; a principal matches its own ACLs and ``User:*``;
with no matching ALLOW the answer is no (unless ``allow_everyone_if_no_acl_found`` and the
resource has no ACL at all).
"""

from __future__ import annotations

from collections.abc import Iterable

from broker_service.metadata.records import AclBinding
from broker_service.protocol.errors import InvalidRequest

# Resource types
UNKNOWN, ANY = 0, 1
TOPIC, GROUP, CLUSTER, TRANSACTIONAL_ID, DELEGATION_TOKEN, USER = 2, 3, 4, 5, 6, 7
# Pattern types
MATCH, LITERAL, PREFIXED = 2, 3, 4
# Operations
ALL, READ, WRITE, CREATE, DELETE, ALTER, DESCRIBE = 2, 3, 4, 5, 6, 7, 8
CLUSTER_ACTION, DESCRIBE_CONFIGS, ALTER_CONFIGS, IDEMPOTENT_WRITE = 9, 10, 11, 12
CREATE_TOKENS, DESCRIBE_TOKENS = 13, 14
# Permission types
DENY, ALLOW = 2, 3

CLUSTER_NAME = "kafka-cluster"
WILDCARD = "*"
WILDCARD_PRINCIPAL = "User:*"

_IMPLIED = {
    DESCRIBE: frozenset({DESCRIBE, READ, WRITE, DELETE, ALTER, ALL}),
    DESCRIBE_CONFIGS: frozenset({DESCRIBE_CONFIGS, ALTER_CONFIGS, ALL}),
}
# Operations that make sense on each resource type (Kafka's AclEntry.supportedOperations).
SUPPORTED_OPERATIONS = {
    TOPIC: {READ, WRITE, CREATE, DESCRIBE, DELETE, ALTER, DESCRIBE_CONFIGS, ALTER_CONFIGS},
    GROUP: {READ, DESCRIBE, DELETE},
    CLUSTER: {CREATE, CLUSTER_ACTION, DESCRIBE_CONFIGS, ALTER_CONFIGS, IDEMPOTENT_WRITE, ALTER,
              DESCRIBE},
    TRANSACTIONAL_ID: {DESCRIBE, WRITE},
    DELEGATION_TOKEN: {DESCRIBE},
    USER: {CREATE_TOKENS, DESCRIBE_TOKENS},
}  # fmt: skip


class InvalidAcl(ValueError, InvalidRequest):
    pass


def validate(acl: AclBinding) -> None:
    """Raise InvalidAcl for what CreateAcls refuses (Kafka answers INVALID_REQUEST)."""
    if acl.resource_type not in SUPPORTED_OPERATIONS:
        raise InvalidAcl(f"invalid resource type {acl.resource_type}")
    if acl.pattern_type not in (LITERAL, PREFIXED):
        raise InvalidAcl(f"invalid pattern type {acl.pattern_type}: must be LITERAL or PREFIXED")
    if acl.operation != ALL and acl.operation not in SUPPORTED_OPERATIONS[acl.resource_type]:
        raise InvalidAcl(f"operation {acl.operation} is not valid for this resource type")
    if acl.permission_type not in (ALLOW, DENY):
        raise InvalidAcl(f"invalid permission type {acl.permission_type}")
    if not acl.resource_name:
        raise InvalidAcl("resource name must not be empty")
    if acl.resource_type == CLUSTER and acl.resource_name != CLUSTER_NAME:
        raise InvalidAcl(f"the cluster resource is named {CLUSTER_NAME}")
    kind, sep, name = acl.principal.partition(":")
    if not sep or not kind or not name:
        raise InvalidAcl(f"principal {acl.principal!r} is not of the form Type:name")
    if not acl.host:
        raise InvalidAcl("host must not be empty (use *)")


def matches_filter(
    acl: AclBinding,
    resource_type: int,
    resource_name: str | None,
    pattern_type: int,
    principal: str | None,
    host: str | None,
    operation: int,
    permission_type: int,
) -> bool:
    """DescribeAcls / DeleteAcls filter semantics (ANY, MATCH, null = any)."""
    if resource_type != ANY and acl.resource_type != resource_type:
        return False
    if pattern_type == MATCH:
        if resource_name is not None and not (
            (acl.pattern_type == LITERAL and acl.resource_name in (resource_name, WILDCARD))
            or (acl.pattern_type == PREFIXED and resource_name.startswith(acl.resource_name))
        ):
            return False
    else:
        if pattern_type != ANY and acl.pattern_type != pattern_type:
            return False
        if resource_name is not None and acl.resource_name != resource_name:
            return False
    if principal is not None and acl.principal != principal:
        return False
    if host is not None and acl.host != host:
        return False
    if operation != ANY and acl.operation != operation:
        return False
    return permission_type == ANY or acl.permission_type == permission_type


class Authorizer:
    """Answers 'may principal do operation on resource'. ``acls`` are replaced as a whole
    when the store is re-read; decisions are cached until then."""

    def __init__(
        self, enabled: bool, super_users: Iterable[str], allow_if_no_acl: bool = False
    ) -> None:
        self.enabled = enabled
        self.super_users = frozenset(super_users)
        self.allow_if_no_acl = allow_if_no_acl
        self._by_type: dict[int, list[AclBinding]] = {}
        self._acls: frozenset[AclBinding] = frozenset()
        self._cache: dict[tuple[str, str, int, int, str], bool] = {}

    def set_acls(self, acls: Iterable[AclBinding]) -> None:
        new = frozenset(acls)
        if new == self._acls:
            return
        self._acls = new
        by_type: dict[int, list[AclBinding]] = {}
        for a in new:
            by_type.setdefault(a.resource_type, []).append(a)
        self._by_type = by_type
        self._cache = {}

    @property
    def acls(self) -> frozenset[AclBinding]:
        return self._acls

    def authorize(
        self, principal: str, host: str, operation: int, resource_type: int, name: str
    ) -> bool:
        if not self.enabled or principal in self.super_users:
            return True
        key = (principal, host, operation, resource_type, name)
        hit = self._cache.get(key)
        if hit is None:
            hit = self._decide(principal, host, operation, resource_type, name)
            if len(self._cache) > 100_000:
                self._cache.clear()
            self._cache[key] = hit
        return hit

    def _decide(
        self, principal: str, host: str, operation: int, resource_type: int, name: str
    ) -> bool:
        on_resource = [
            a
            for a in self._by_type.get(resource_type, ())
            if (a.pattern_type == LITERAL and a.resource_name in (name, WILDCARD))
            or (a.pattern_type == PREFIXED and name.startswith(a.resource_name))
        ]
        if not on_resource:
            return self.allow_if_no_acl
        mine = [
            a
            for a in on_resource
            if a.principal in (principal, WILDCARD_PRINCIPAL) and a.host in (host, WILDCARD)
        ]
        if any(a.permission_type == DENY and a.operation in (operation, ALL) for a in mine):
            return False
        allowed_by = _IMPLIED.get(operation, frozenset({operation, ALL}))
        return any(a.permission_type == ALLOW and a.operation in allowed_by for a in mine)

    def authorize_any(self, principal: str, host: str, operation: int, resource_type: int) -> bool:
        """Whether some resource of the type allows the operation (Kafka's
        ``authorizeByResourceType``, e.g. idempotent producers need WRITE on any topic)."""
        if not self.enabled or principal in self.super_users:
            return True
        mine = [
            a
            for a in self._by_type.get(resource_type, ())
            if a.principal in (principal, WILDCARD_PRINCIPAL) and a.host in (host, WILDCARD)
        ]
        if any(
            a.permission_type == DENY
            and a.operation in (operation, ALL)
            and a.pattern_type == LITERAL
            and a.resource_name == WILDCARD
            for a in mine
        ):
            return False
        return any(a.permission_type == ALLOW and a.operation in (operation, ALL) for a in mine)

    def authorized_operations(
        self, principal: str, host: str, resource_type: int, name: str
    ) -> int:
        """The bit field of Metadata / DescribeGroups ``*_authorized_operations``."""
        bits = 0
        for op in SUPPORTED_OPERATIONS.get(resource_type, ()):
            if self.authorize(principal, host, op, resource_type, name):
                bits |= 1 << op
        return bits
