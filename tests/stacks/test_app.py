"""The whole app: tenants are isolated, cdk-nag passes, every IAM wildcard is justified."""

from __future__ import annotations

import json
from typing import Any

import pytest

from stacks.tenant import TenantSettings, load_tenants
from tests.stacks.conftest import Synth, resources

# Every wildcard resource any policy may hold, and why AWS needs it (the cdk-nag
# acknowledgements carry the same reasons).
ALLOWED_WILDCARDS = {
    "*": {
        "ecr:GetAuthorizationToken",  # no resource-level permissions
        "cloudwatch:GetMetricData",  # no resource-level permissions
        "ecs:ListTasks",  # no resource-level permissions; conditioned on the cluster
        # Lambda's VPC attachment (balancer and autoscaler reach the brokers' private IPs):
        # the actions of AWSLambdaVPCAccessExecutionRole, which AWS documents on '*'.
        "ec2:CreateNetworkInterface",
        "ec2:DescribeNetworkInterfaces",
        "ec2:DescribeSubnets",
        "ec2:DeleteNetworkInterface",
        "ec2:AssignPrivateIpAddresses",
        "ec2:UnassignPrivateIpAddresses",
    },
}


def test_one_stack_set_per_tenant(synth: Synth) -> None:
    assert sorted(synth.stacks) == sorted(
        f"Kafka-{t}-{part}"
        for t in ("acme", "globex")
        for part in ("Storage", "Brokers", "Control")
    )


def test_tenants_share_no_named_resource(synth: Synth) -> None:
    """Physical names (table, cluster, service, functions, queue, log groups, alarms) carry
    the tenant; one tenant's templates never name another's."""
    for tenant, other in (("acme", "globex"), ("globex", "acme")):
        for part in ("Storage", "Brokers", "Control"):
            text = json.dumps(synth.raw(f"Kafka-{tenant}-{part}"))
            assert f"kafka-{other}" not in text and f"Kafka-{other}" not in text
            assert f"Kafka/{other}" not in text


def test_cdk_nag_aws_solutions_passes_with_reasons(synth: Synth) -> None:
    report = json.loads((synth.outdir / "validation-report.json").read_text())
    (plugin,) = report["pluginReports"]
    assert plugin["pluginName"] == "AwsSolutions"
    assert plugin["conclusion"] == "success"
    assert plugin["violations"] == []
    suppressed = plugin["suppressedViolations"]
    assert suppressed
    for s in suppressed:
        assert len(s["reason"]) > 40, s["acknowledgedId"]
    # Every acknowledged IAM5 names one exact resource, never the whole rule.
    for s in suppressed:
        if s["ruleName"].startswith("AwsSolutions-IAM5"):
            assert "[Resource::" in s["acknowledgedId"], s["acknowledgedId"]


def statements(doc: dict[str, Any]) -> list[dict[str, Any]]:
    out = []
    for kind in ("AWS::IAM::Policy", "AWS::IAM::Role"):
        for r in resources(doc, kind).values():
            props = r["Properties"]
            docs = [props["PolicyDocument"]] if "PolicyDocument" in props else []
            docs += [p["PolicyDocument"] for p in props.get("Policies", [])]
            for d in docs:
                out += d["Statement"]
    return out


def test_no_wildcard_resource_unless_aws_requires_it(synth: Synth) -> None:
    prefix_wildcards = 0
    for name in synth.stacks:
        for st in statements(synth.raw(name)):
            if st["Effect"] != "Allow":
                continue
            rs = st["Resource"] if isinstance(st["Resource"], list) else [st["Resource"]]
            actions = st["Action"] if isinstance(st["Action"], list) else [st["Action"]]
            for r in rs:
                if r == "*":
                    assert set(actions) <= ALLOWED_WILDCARDS["*"], (name, st)
                    if any(a.startswith("ec2:") for a in actions):
                        assert name.endswith("-Control") and st["Sid"] == "VpcNetworkInterfaces"
                elif json.dumps(r).endswith('*"]]}') or json.dumps(r).endswith('*"'):
                    # A key prefix (bucket/PREFIX/*), a cluster's tasks (task/CLUSTER/*) or
                    # log streams of one log group: never a whole service.
                    text = json.dumps(r)
                    assert any(k in text for k in ('/data/*"', ":task/kafka-", ":log-group:")), (
                        name,
                        st,
                    )
                    prefix_wildcards += 1
            assert not any(a.endswith(":*") or a == "*" for a in actions), (name, st)
    assert prefix_wildcards > 0


def test_tenant_settings_defaults_and_validation(tmp_path: Any) -> None:
    (t,) = load_tenants({"tenant": "acme"})
    assert (t.broker_cpu, t.broker_memory_mib, t.min_brokers) == (1024, 4096, 3)
    assert t.processes == 1
    assert t.metrics_namespace == "Kafka/acme"
    assert t.control_path == "endpoints" and t.authorizer == "acl" and not t.adopt_data
    # CLI context values arrive as strings.
    (t,) = load_tenants({"tenant": "acme", "min_brokers": "4", "max_brokers": "8"})
    assert (t.min_brokers, t.max_brokers) == (4, 8)
    assert [x.name for x in load_tenants({"tenant": "a,b"})] == ["a", "b"]
    with pytest.raises(ValueError):
        TenantSettings(name="Acme_Corp")
    with pytest.raises(ValueError):
        TenantSettings(name="acme", min_brokers=5, max_brokers=3)
    with pytest.raises(ValueError, match="tenants file"):
        load_tenants({"tenant": "a,b", "min_brokers": "4"})
    f = tmp_path / "tenants.toml"
    f.write_text("[tenants.one]\nmax_brokers = 6\n[tenants.two]\n")
    ts = load_tenants({"tenants_file": str(f)})
    assert [(x.name, x.max_brokers) for x in ts] == [("one", 6), ("two", 12)]


def test_max_brokers_sanity_uses_the_sizing_model() -> None:
    """peak_produce_mbps is checked against what max_brokers carry (control/sizing.py): 12
    brokers of 1 vCPU (the default task) carry 12 x 48.4 = 581 MB/s of produce read once;
    1000 MB/s is refused, with the figures, and bigger brokers or more of them fix it."""
    from broker_service.control.sizing import BrokerCapacity

    t = TenantSettings(name="acme", peak_produce_mbps=300)
    assert t.capacity == BrokerCapacity.for_vcpu(1)
    carried = BrokerCapacity.for_vcpu(1).produce_capacity_mbps(1)
    assert t.max_produce_mbps == pytest.approx(12 * carried)
    with pytest.raises(ValueError, match="needs 21 brokers.*max_brokers 12 carries 581 MB/s"):
        TenantSettings(name="acme", peak_produce_mbps=1000)
    assert TenantSettings(name="acme", peak_produce_mbps=1000, max_brokers=21).max_brokers == 21
    big = TenantSettings(name="acme", peak_produce_mbps=1000, broker_cpu=4096)
    assert big.capacity == BrokerCapacity.for_vcpu(4)
    with pytest.raises(ValueError, match="needs"):
        TenantSettings(name="acme", peak_produce_mbps=300, read_fanout=3)
