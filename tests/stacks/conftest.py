"""One synthesized CDK app for all template tests: two tenants from a tenants file.

``acme`` has the defaults; ``globex`` has an S3 Express WAL bucket, a TLS secret, bigger
brokers, a NAT gateway per AZ instead of interface endpoints and no ACL authorizer. The
Lambda dependency layer comes from a stub directory (``lambda_deps_dir``) so the synth needs
no pip and no network; tests/stacks/test_lambda_layer.py builds the real one.
Synthesis runs the cdk-nag AwsSolutions checks: a violation fails ``app.synth()``.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

TENANTS_TOML = """
[tenants.acme]
broker_cpu = 2048  # two broker processes a task: the multi-process wiring is tested on acme
broker_memory_mib = 8192

[tenants.globex]
broker_cpu = 4096
broker_memory_mib = 16384
min_brokers = 4
max_brokers = 20
express_wal_az_id = "use1-az4"
metadata_billing = "provisioned"
compaction_shards = 7
metadata_max_write_capacity = 8000
tls_secret_arn = "arn:aws:secretsmanager:us-east-1:123456789012:secret:globex-tls-AbCdEf"
control_path = "nat_per_az"
authorizer = "none"
"""


@dataclass
class Synth:
    outdir: Path
    stacks: dict[str, Any]  # stack name -> aws_cdk.Stack
    tenants: dict[str, Any]  # tenant name -> TenantStacks

    def template(self, stack_name: str) -> Any:
        from aws_cdk.assertions import Template

        return Template.from_stack(self.stacks[stack_name])

    def raw(self, stack_name: str) -> dict[str, Any]:
        doc: dict[str, Any] = json.loads((self.outdir / f"{stack_name}.template.json").read_text())
        return doc


def stub_layer_dir(root: Path) -> Path:
    d = root / "layer"
    (d / "python").mkdir(parents=True)
    (d / "python" / "stub_dependency.py").write_text("# stands in for the pip-built layer\n")
    return d


def synthesize(root: Path, tenants_toml: str) -> Synth:
    import aws_cdk as cdk

    from stacks.app import build

    tenants_file = root / "tenants.toml"
    tenants_file.write_text(tenants_toml)
    outdir = root / "cdk.out"
    context = {"tenants_file": str(tenants_file), "lambda_deps_dir": str(stub_layer_dir(root))}
    app = cdk.App(outdir=str(outdir), context=context)
    built = build(app)
    app.synth()
    stacks = {}
    for t in built:
        for s in (t.storage, t.brokers, t.control):
            stacks[s.stack_name] = s
    return Synth(outdir, stacks, {t.tenant.name: t for t in built})


@pytest.fixture(scope="session")
def synth(tmp_path_factory: pytest.TempPathFactory) -> Synth:
    return synthesize(tmp_path_factory.mktemp("cdk"), TENANTS_TOML)


def resources(template: dict[str, Any], rtype: str) -> dict[str, dict[str, Any]]:
    return {k: v for k, v in template["Resources"].items() if v["Type"] == rtype}


def only(template: dict[str, Any], rtype: str) -> dict[str, Any]:
    found = list(resources(template, rtype).values())
    assert len(found) == 1, f"expected one {rtype}, found {len(found)}"
    return found[0]["Properties"]
