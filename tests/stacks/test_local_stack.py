"""The local flavour (``-c flavour=local``, stacks/local.py): only what LocalStack community runs
on the host, the same data bucket as in AWS, and alarms LocalStack can evaluate."""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from tests.stacks.conftest import Synth, only, resources


@dataclass
class LocalSynth:
    outdir: Path
    template: dict[str, Any]


@pytest.fixture(scope="module")
def local(tmp_path_factory: pytest.TempPathFactory) -> LocalSynth:
    import aws_cdk as cdk

    from stacks.app import build_flavour

    outdir = tmp_path_factory.mktemp("cdk-local") / "cdk.out"
    context = {"flavour": "local", "tenant": "acme", "min_brokers": 1,
               "target_mbps_per_broker": 0.5}  # fmt: skip
    app = cdk.App(outdir=str(outdir), context=context)
    build_flavour(app)
    app.synth()
    names = sorted(p.name for p in outdir.glob("*.template.json"))
    assert names == ["Kafka-acme-Local.template.json"]
    return LocalSynth(outdir, json.loads((outdir / names[0]).read_text()))


def test_only_what_localstack_community_runs(local: LocalSynth) -> None:
    types = {r["Type"] for r in local.template["Resources"].values()}
    assert types == {
        "AWS::S3::Bucket",
        "AWS::S3::BucketPolicy",
        "AWS::SQS::Queue",
        "AWS::SQS::QueuePolicy",
        "AWS::Events::Rule",
        "AWS::CloudWatch::Alarm",
    }


def test_the_data_bucket_is_the_aws_one(local: LocalSynth, synth: Synth) -> None:
    aws = only(synth.raw("Kafka-acme-Storage"), "AWS::S3::Bucket")
    assert only(local.template, "AWS::S3::Bucket") == aws


def test_alarms_are_simple_metric_alarms_on_the_cluster_series(local: LocalSynth) -> None:
    alarms = {
        a["Properties"]["AlarmName"]: a["Properties"]
        for a in resources(local.template, "AWS::CloudWatch::Alarm").values()
    }
    assert set(alarms) == {
        "kafka-acme-throughput-high",
        "kafka-acme-throughput-low",
        "kafka-acme-produce-latency-high",
    }
    for props in alarms.values():
        # LocalStack evaluates alarms with MetricName + Statistic only (no Metrics Insights).
        assert "Metrics" not in props
        assert props["Namespace"] == "Kafka/acme"
        assert "Dimensions" not in props
        assert (props["Period"], props["EvaluationPeriods"]) == (10, 1)
    # control/sizing.py: a broker sized for 0.5 MB/s produce (consume in the measured ratio,
    # 0.5 x 91.8 / 102.3) carries 1 / (1/0.5 + 1/0.449) MB/s produced and read once; x 1 broker
    # x 10 s: 80 % and 30 % of it.
    carried = 1 / (1 / 0.5 + 1 / (0.5 * 91.8 / 102.3)) * 1e6 * 10
    assert alarms["kafka-acme-throughput-high"]["Threshold"] == pytest.approx(0.8 * carried)
    assert alarms["kafka-acme-throughput-low"]["Threshold"] == pytest.approx(0.3 * carried)
    assert alarms["kafka-acme-throughput-high"]["MetricName"] == "BytesIn"


def test_throughput_alarm_changes_go_to_the_control_events_queue(local: LocalSynth) -> None:
    (rule,) = [r["Properties"] for r in resources(local.template, "AWS::Events::Rule").values()]
    pattern = rule["EventPattern"]
    assert pattern["source"] == ["aws.cloudwatch"]
    assert pattern["detail-type"] == ["CloudWatch Alarm State Change"]
    assert len(pattern["resources"]) == 2
    (target,) = rule["Targets"]
    queues = resources(local.template, "AWS::SQS::Queue")
    names = {k: v["Properties"]["QueueName"] for k, v in queues.items()}
    assert names[target["Arn"]["Fn::GetAtt"][0]] == "kafka-acme-control-events"
    assert names[target["DeadLetterConfig"]["Arn"]["Fn::GetAtt"][0]] == "kafka-acme-control-dlq"


def test_cdk_nag_passes_on_the_local_flavour(local: LocalSynth) -> None:
    report = json.loads((local.outdir / "validation-report.json").read_text())
    (plugin,) = report["pluginReports"]
    assert plugin["conclusion"] == "success", plugin["violations"]


def test_an_unknown_flavour_is_refused() -> None:
    import aws_cdk as cdk

    from stacks.app import build_flavour

    with pytest.raises(ValueError, match="unknown flavour 'docker'"):
        build_flavour(cdk.App(context={"flavour": "docker"}))
