"""Security administration APIs: CreateAcls / DescribeAcls / DeleteAcls,
DescribeUserScramCredentials / AlterUserScramCredentials, DescribeClientQuotas /
AlterClientQuotas. Everything is stored in the metadata store; this broker applies changes at
once, the others within ``security_refresh_ms``."""

from __future__ import annotations

from collections.abc import Awaitable
from typing import TYPE_CHECKING, Any

from kio.schema.errors import ErrorCode

from broker_service.api.access import CLUSTER_AUTHORIZATION_FAILED, allowed_cluster
from broker_service.api.base import Buffers, decode, respond
from broker_service.metadata.records import AclBinding
from broker_service.protocol.frames import RequestHeader
from broker_service.security import acl, quotas, scram

if TYPE_CHECKING:
    from broker_service.api.services import BrokerServices

SECURITY_DISABLED_MESSAGE = "No Authorizer is configured on the broker"


# -- ACLs ----------------------------------------------------------------------------------
def create_acls(
    broker: BrokerServices, header: RequestHeader, frame: memoryview
) -> Awaitable[Buffers]:
    return _create_acls(broker, header, decode(header, frame))


async def _create_acls(broker: BrokerServices, header: RequestHeader, req: Any) -> Buffers:
    results: list[dict[str, Any]] = []
    valid: list[AclBinding] = []
    enabled = broker.security.authorizer.enabled
    may_alter = allowed_cluster(broker, header, acl.ALTER)
    for c in req.creations:
        binding = AclBinding(
            int(c.resource_type),
            c.resource_name,
            int(c.resource_pattern_type),
            c.principal,
            c.host,
            int(c.operation),
            int(c.permission_type),
        )
        if not enabled:
            results.append(_error(ErrorCode.security_disabled, SECURITY_DISABLED_MESSAGE))
        elif not may_alter:
            results.append(_error(CLUSTER_AUTHORIZATION_FAILED, "Cluster authorization failed."))
        else:
            try:
                acl.validate(binding)
            except acl.InvalidAcl as exc:
                results.append(_error(exc.code, str(exc)))
                continue
            valid.append(binding)
            results.append(_error(ErrorCode.none, None))
    if valid:
        await broker.ports.security.create_acls(valid)
        await broker.security.refresh()
    return respond(header, {"throttle_time": 0, "results": results})


def _error(code: ErrorCode, message: str | None) -> dict[str, Any]:
    return {"error_code": code, "error_message": message}


def _filter_args(f: Any) -> tuple[int, str | None, int, str | None, str | None, int, int]:
    return (
        int(f.resource_type_filter),
        f.resource_name_filter,
        int(f.pattern_type_filter),
        f.principal_filter,
        f.host_filter,
        int(f.operation),
        int(f.permission_type),
    )


def describe_acls(
    broker: BrokerServices, header: RequestHeader, frame: memoryview
) -> Awaitable[Buffers]:
    return _describe_acls(broker, header, decode(header, frame))


async def _describe_acls(broker: BrokerServices, header: RequestHeader, req: Any) -> Buffers:
    if not broker.security.authorizer.enabled:
        return respond(
            header,
            {
                "throttle_time": 0,
                "error_code": ErrorCode.security_disabled,
                "error_message": SECURITY_DISABLED_MESSAGE,
                "resources": [],
            },
        )
    args = _filter_args(req)
    stored = await broker.ports.security.acls()
    by_resource: dict[tuple[int, str, int], list[dict[str, Any]]] = {}
    for a in stored:
        if acl.matches_filter(a, *args):
            by_resource.setdefault((a.resource_type, a.resource_name, a.pattern_type), []).append(
                {
                    "principal": a.principal,
                    "host": a.host,
                    "operation": a.operation,
                    "permission_type": a.permission_type,
                }
            )
    resources = [
        {"resource_type": t, "resource_name": n, "pattern_type": p, "acls": acls}
        for (t, n, p), acls in sorted(by_resource.items())
    ]
    return respond(
        header,
        {"throttle_time": 0, "error_code": 0, "error_message": None, "resources": resources},
    )


def delete_acls(
    broker: BrokerServices, header: RequestHeader, frame: memoryview
) -> Awaitable[Buffers]:
    return _delete_acls(broker, header, decode(header, frame))


async def _delete_acls(broker: BrokerServices, header: RequestHeader, req: Any) -> Buffers:
    enabled = broker.security.authorizer.enabled
    may_alter = allowed_cluster(broker, header, acl.ALTER)
    stored = await broker.ports.security.acls() if enabled and may_alter else []
    doomed: list[AclBinding] = []
    results = []
    for f in req.filters:
        if not enabled:
            results.append(
                {
                    **_error(ErrorCode.security_disabled, SECURITY_DISABLED_MESSAGE),
                    "matching_acls": [],
                }
            )
            continue
        if not may_alter:
            results.append(
                {
                    **_error(CLUSTER_AUTHORIZATION_FAILED, "Cluster authorization failed."),
                    "matching_acls": [],
                }
            )
            continue
        matched = [a for a in stored if acl.matches_filter(a, *_filter_args(f))]
        doomed.extend(matched)
        results.append(
            {
                "error_code": 0,
                "error_message": None,
                "matching_acls": [
                    {
                        "error_code": 0,
                        "error_message": None,
                        "resource_type": a.resource_type,
                        "resource_name": a.resource_name,
                        "pattern_type": a.pattern_type,
                        "principal": a.principal,
                        "host": a.host,
                        "operation": a.operation,
                        "permission_type": a.permission_type,
                    }
                    for a in matched
                ],
            }
        )
    if doomed:
        await broker.ports.security.delete_acls(list(dict.fromkeys(doomed)))
        await broker.security.refresh()
    return respond(header, {"throttle_time": 0, "filter_results": results})


# -- SCRAM users ---------------------------------------------------------------------------
def describe_scram(
    broker: BrokerServices, header: RequestHeader, frame: memoryview
) -> Awaitable[Buffers]:
    return _describe_scram(broker, header, decode(header, frame))


async def _describe_scram(broker: BrokerServices, header: RequestHeader, req: Any) -> Buffers:
    stored = await broker.ports.security.scram_credentials()
    by_user: dict[str, list[dict[str, int]]] = {}
    for user, c in stored:
        by_user.setdefault(user, []).append(
            {"mechanism": scram.MECHANISM_IDS[c.mechanism], "iterations": c.iterations}
        )
    names = [u.name for u in req.users] if req.users else None
    results = []
    if names is None:
        results = [
            {"user": u, "error_code": 0, "error_message": None, "credential_infos": infos}
            for u, infos in sorted(by_user.items())
        ]
    else:
        for name in dict.fromkeys(names):
            if names.count(name) > 1:
                results.append(
                    {
                        "user": name,
                        "error_code": ErrorCode.duplicate_resource,
                        "error_message": "Cannot describe SCRAM credentials for the same user "
                        "twice in a single request",
                        "credential_infos": [],
                    }
                )
            elif name not in by_user:
                results.append(
                    {
                        "user": name,
                        "error_code": ErrorCode.resource_not_found,
                        "error_message": "Attempt to describe a user credential that does not "
                        "exist",
                        "credential_infos": [],
                    }
                )
            else:
                results.append(
                    {
                        "user": name,
                        "error_code": 0,
                        "error_message": None,
                        "credential_infos": by_user[name],
                    }
                )
    return respond(
        header, {"throttle_time": 0, "error_code": 0, "error_message": None, "results": results}
    )


def alter_scram(
    broker: BrokerServices, header: RequestHeader, frame: memoryview
) -> Awaitable[Buffers]:
    return _alter_scram(broker, header, decode(header, frame))


async def _alter_scram(broker: BrokerServices, header: RequestHeader, req: Any) -> Buffers:
    may_alter = allowed_cluster(broker, header, acl.ALTER)
    users = [d.name for d in req.deletions] + [u.name for u in req.upsertions]
    errors: dict[str, tuple[ErrorCode, str]] = {}

    def fail(user: str, code: ErrorCode, message: str) -> None:
        errors.setdefault(user, (code, message))

    for user in users:
        if not may_alter:
            fail(user, CLUSTER_AUTHORIZATION_FAILED, "Cluster authorization failed.")
        elif not user:
            fail(user, ErrorCode.unacceptable_credential, "Username must not be empty")
    seen: set[tuple[str, int]] = set()
    for item in [*req.deletions, *req.upsertions]:
        key = (item.name, int(item.mechanism))
        if key in seen:
            fail(
                item.name,
                ErrorCode.duplicate_resource,
                "A user credential cannot be altered twice in the same request",
            )
        seen.add(key)
        if int(item.mechanism) not in scram.MECHANISM_NAMES:
            fail(item.name, ErrorCode.unsupported_sasl_mechanism, "Unknown SCRAM mechanism")
    for u in req.upsertions:
        if u.iterations < scram.MIN_ITERATIONS:
            fail(u.name, ErrorCode.unacceptable_credential, "Too few iterations")
        elif u.iterations > scram.MAX_ITERATIONS:
            fail(u.name, ErrorCode.unacceptable_credential, "Too many iterations")
        elif not u.salt or not u.salted_password:
            fail(u.name, ErrorCode.unacceptable_credential, "Salt and salted password required")
    for d in req.deletions:
        if d.name in errors:
            continue
        mechanism = scram.MECHANISM_NAMES[int(d.mechanism)]
        if not await broker.ports.security.delete_scram_credential(d.name, mechanism):
            fail(
                d.name,
                ErrorCode.resource_not_found,
                "Attempt to delete a user credential that does not exist",
            )
    for u in req.upsertions:
        if u.name in errors:
            continue
        cred = scram.credential_from_salted_password(
            scram.MECHANISM_NAMES[int(u.mechanism)],
            bytes(u.salt),
            bytes(u.salted_password),
            int(u.iterations),
        )
        await broker.ports.security.put_scram_credential(u.name, cred)
    results = [
        {
            "user": user,
            "error_code": errors[user][0] if user in errors else 0,
            "error_message": errors[user][1] if user in errors else None,
        }
        for user in dict.fromkeys(users)
    ]
    return respond(header, {"throttle_time": 0, "results": results})


# -- client quotas -------------------------------------------------------------------------
EXACT, DEFAULT, SPECIFIED = 0, 1, 2


def describe_quotas(
    broker: BrokerServices, header: RequestHeader, frame: memoryview
) -> Awaitable[Buffers]:
    return _describe_quotas(broker, header, decode(header, frame))


def _component_matches(entity: dict[str, str | None], c: Any) -> bool:
    if c.entity_type not in entity:
        return False
    name = entity[c.entity_type]
    if c.match_type == EXACT:
        return name == c.match
    if c.match_type == DEFAULT:
        return name is None
    return name is not None


async def _describe_quotas(broker: BrokerServices, header: RequestHeader, req: Any) -> Buffers:
    for c in req.components:
        if c.entity_type not in quotas.ENTITY_TYPES or c.match_type not in (
            EXACT,
            DEFAULT,
            SPECIFIED,
        ):
            return respond(
                header,
                {
                    "throttle_time": 0,
                    "error_code": ErrorCode.invalid_request,
                    "error_message": f"invalid component {c.entity_type!r}/{c.match_type}",
                    "entries": None,
                },
            )
    entries = []
    for entity, values in await broker.ports.security.client_quotas():
        as_dict = dict(entity)
        if not all(_component_matches(as_dict, c) for c in req.components):
            continue
        if req.strict and set(as_dict) != {c.entity_type for c in req.components}:
            continue
        entries.append(
            {
                "entity": [{"entity_type": t, "entity_name": n} for t, n in entity],
                "values": [{"key": k, "value": v} for k, v in sorted(values.items())],
            }
        )
    return respond(
        header, {"throttle_time": 0, "error_code": 0, "error_message": None, "entries": entries}
    )


def alter_quotas(
    broker: BrokerServices, header: RequestHeader, frame: memoryview
) -> Awaitable[Buffers]:
    return _alter_quotas(broker, header, decode(header, frame))


async def _alter_quotas(broker: BrokerServices, header: RequestHeader, req: Any) -> Buffers:
    may_alter = allowed_cluster(broker, header, acl.ALTER_CONFIGS)
    results = []
    changed = False
    for e in req.entries:
        entity_out = [
            {"entity_type": x.entity_type, "entity_name": x.entity_name} for x in e.entity
        ]
        code, message = ErrorCode.none, None
        try:
            if not may_alter:
                raise PermissionError
            parts = {x.entity_type: x.entity_name for x in e.entity}
            if len(parts) != len(e.entity):
                raise quotas.InvalidQuota("an entity type appears twice")
            entity = quotas.make_entity(parts)
            set_values = {}
            remove = []
            for op in e.ops:
                if op.key not in quotas.QUOTA_KEYS:
                    raise quotas.InvalidQuota(f"unknown quota key {op.key!r}")
                if op.remove:
                    remove.append(op.key)
                else:
                    quotas.validate_value(op.key, float(op.value))
                    set_values[op.key] = float(op.value)
            if not req.validate_only:
                await broker.ports.security.alter_client_quota(entity, set_values, remove)
                changed = True
        except PermissionError:
            code, message = CLUSTER_AUTHORIZATION_FAILED, "Cluster authorization failed."
        except quotas.InvalidQuota as exc:
            code, message = exc.code, str(exc)
        results.append({"error_code": code, "error_message": message, "entity": entity_out})
    if changed:
        await broker.security.refresh()
    return respond(header, {"throttle_time": 0, "entries": results})
