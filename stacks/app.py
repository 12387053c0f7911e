"""Build every requested tenant's stacks into a CDK app, with the cdk-nag AwsSolutions checks."""

from __future__ import annotations

import os
from dataclasses import dataclass
from typing import Any

import aws_cdk as cdk
from cdk_nag import AwsSolutionsChecks

from .brokers import BrokerStack
from .control_plane import ControlPlaneStack
from .local import LocalStack
from .storage import StorageStack
from .tenant import TenantSettings, load_tenants


@dataclass
class TenantStacks:
    tenant: TenantSettings
    storage: StorageStack
    brokers: BrokerStack
    control: ControlPlaneStack


def environment() -> cdk.Environment | None:
    """The account/region of the caller's AWS profile (`cdk deploy` sets these); None in an
    offline synth (an environment-agnostic template)."""
    account, region = os.environ.get("CDK_DEFAULT_ACCOUNT"), os.environ.get("CDK_DEFAULT_REGION")
    return cdk.Environment(account=account, region=region) if account and region else None


def add_tenant(app: cdk.App, tenant: TenantSettings, lambda_deps_dir: str | None) -> TenantStacks:
    env = environment()
    prefix = tenant.stack_prefix
    storage = StorageStack(app, f"{prefix}-Storage", tenant=tenant, env=env)
    brokers = BrokerStack(app, f"{prefix}-Brokers", tenant=tenant, storage=storage, env=env)
    control = ControlPlaneStack(
        app,
        f"{prefix}-Control",
        tenant=tenant,
        storage=storage,
        brokers=brokers,
        lambda_deps_dir=lambda_deps_dir,
        env=env,
    )
    for stack in (storage, brokers, control):
        cdk.Tags.of(stack).add("kafka:tenant", tenant.name)
    return TenantStacks(tenant, storage, brokers, control)


def build(app: cdk.App, context: dict[str, Any] | None = None) -> list[TenantStacks]:
    ctx = context if context is not None else _context(app)
    built = [add_tenant(app, t, ctx.get("lambda_deps_dir")) for t in load_tenants(ctx)]
    cdk.Validations.of(app).add_plugins(AwsSolutionsChecks(app, verbose=True))
    return built


def build_local(app: cdk.App, context: dict[str, Any] | None = None) -> list[LocalStack]:
    """The local flavour (LocalStack without Docker): one ``Kafka-<tenant>-Local`` stack per
    tenant, see stacks/local.py."""
    ctx = context if context is not None else _context(app)
    env = environment()
    built = []
    for tenant in load_tenants(ctx):
        stack = LocalStack(app, f"{tenant.stack_prefix}-Local", tenant=tenant, env=env)
        cdk.Tags.of(stack).add("kafka:tenant", tenant.name)
        built.append(stack)
    cdk.Validations.of(app).add_plugins(AwsSolutionsChecks(app, verbose=True))
    return built


FLAVOURS = ("aws", "local")


def build_flavour(app: cdk.App) -> None:
    """``-c flavour=aws`` (default: storage, Fargate brokers, control plane) or
    ``-c flavour=local`` (what LocalStack community runs: see docs/LOCALSTACK.md)."""
    flavour = app.node.try_get_context("flavour") or "aws"
    if flavour == "aws":
        build(app)
    elif flavour == "local":
        build_local(app)
    else:
        raise ValueError(f"unknown flavour {flavour!r}: one of {', '.join(FLAVOURS)}")


def _context(app: cdk.App) -> dict[str, Any]:
    keys = ["tenant", "tenants_file", "lambda_deps_dir", *TenantSettings.model_fields]
    return {k: v for k in keys if (v := app.node.try_get_context(k)) is not None}
