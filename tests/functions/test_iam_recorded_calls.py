"""Every AWS call each component makes, checked against its synthesized role, both ways.

The real components run a full scenario against one single-threaded moto server (several
processes share it): broker processes with the task definition's environment (a sitecustomize
records their botocore calls), then each Lambda handler with real event JSON and its
function's environment (a botocore hook on the default session). The operations map to IAM
actions; each role must grant every action its component called (nothing AccessDenied on
AWS) and nothing it never called (least privilege), except what the platform itself uses with
the role (PLATFORM) and what the scenario cannot reach here (UNREACHED, each with its reason).
"""

from __future__ import annotations

import importlib
import json
import os
import signal
import subprocess
import sys
import time
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import boto3
import pytest

from tests import moto_server
from tests.broker_process import REPO, free_port
from tests.moto_server import AWS_TEST_ENV, REGION
from tests.stacks.conftest import Synth, resources, synth  # noqa: F401 - the fixture

from .conftest import AwsCalls, LambdaContext, event, load_handler

RECORDER = Path(__file__).resolve().parent / "recorder"
S3_ACTIONS = {
    "PutObject": "PutObject", "CreateMultipartUpload": "PutObject", "UploadPart": "PutObject",
    "CompleteMultipartUpload": "PutObject", "CopyObject": "PutObject",
    "GetObject": "GetObject", "HeadObject": "GetObject",
    "DeleteObject": "DeleteObject", "DeleteObjects": "DeleteObject",
    "ListObjectsV2": "ListBucket", "ListObjects": "ListBucket", "HeadBucket": "ListBucket",
    "AbortMultipartUpload": "AbortMultipartUpload",
}  # fmt: skip
TRANSACT_ITEMS = {"Put": "PutItem", "Update": "UpdateItem", "Delete": "DeleteItem",
                  "ConditionCheck": "ConditionCheckItem", "Get": "GetItem"}  # fmt: skip
# Granted for the Lambda service itself, not called by the code: logs (the runtime writes
# them), the VPC attachment's ENIs, the dead-letter queue (failed async invocations).
PLATFORM = {"logs:CreateLogStream", "logs:PutLogEvents", "sqs:SendMessage",
            "ec2:CreateNetworkInterface", "ec2:DescribeNetworkInterfaces", "ec2:DescribeSubnets",
            "ec2:DeleteNetworkInterface", "ec2:AssignPrivateIpAddresses",
            "ec2:UnassignPrivateIpAddresses"}  # fmt: skip
# Granted, called only on paths this scenario cannot reach, with the reason.
UNREACHED: dict[str, dict[str, str]] = {
    "broker": {
        "s3:AbortMultipartUpload": "a streamed multipart upload that fails midway",
    },
    "compaction": {
        "s3:AbortMultipartUpload": "a streamed multipart upload that fails midway",
    },
}


def iam_actions(calls: list[tuple[str, str]]) -> set[str]:
    """(service:Operation, transaction item kinds) -> IAM actions."""
    out: set[str] = set()
    for name, kinds in calls:
        service, op = name.split(":")
        if service == "s3":
            out.add(f"s3:{S3_ACTIONS[op]}")
        elif service == "dynamodb" and op in ("TransactWriteItems", "TransactGetItems"):
            out |= {f"dynamodb:{TRANSACT_ITEMS[k]}" for k in kinds.split(",") if k}
        elif service == "monitoring":
            out.add(f"cloudwatch:{op}")
        else:
            out.add(f"{service}:{op}")
    return out


def granted(tpl: dict[str, Any], role_prefix: str) -> set[str]:
    actions: set[str] = set()
    for p in resources(tpl, "AWS::IAM::Policy").values():
        if p["Properties"]["Roles"][0]["Ref"].startswith(role_prefix):
            for st in p["Properties"]["PolicyDocument"]["Statement"]:
                a = st["Action"]
                actions |= {a} if isinstance(a, str) else set(a)
    return actions


@pytest.fixture(scope="module")
def moto() -> Iterator[str]:
    log = Path(f"/tmp/moto-iam-{uuid.uuid4().hex[:6]}.log")
    proc, endpoint = moto_server.start(log, threaded=False)
    try:
        yield endpoint
    finally:
        moto_server.stop(proc)
        log.unlink(missing_ok=True)


def _broker_env(synth: Synth, bucket: str, table: str) -> dict[str, str]:
    from tests.stacks.test_broker_task_command import task_environment

    env = task_environment(synth, bucket, table)
    for k in ("BROKER_LISTENERS", "BROKER_ADVERTISED_LISTENERS", "BROKER_ADVERTISED_HOST"):
        env.pop(k)  # PLAINTEXT here: the security listeners have their own suite
    env["BROKER_AUTHORIZER"] = "none"
    return env


def _run_broker(env: dict[str, str], record: Path, tmp: Path, name: str) -> tuple[Any, int]:
    port = free_port()
    full = {**os.environ, **AWS_TEST_ENV, **env, "BROKER_HOST": "127.0.0.1",
            "BROKER_PORT": str(port), "BROKER_DATA_DIR": str(tmp / name),
            "BROKER_METRICS_PORT": "0", "RECORD_AWS_CALLS": str(record),
            "PYTHONPATH": f"{RECORDER}{os.pathsep}{REPO}"}  # fmt: skip
    log = open(tmp / f"{name}.log", "wb")  # noqa: SIM115 - closed with the process
    proc = subprocess.Popen([sys.executable, "-m", "broker_service", "serve"], env=full,
                            stdout=log, stderr=subprocess.STDOUT, cwd=tmp)  # fmt: skip
    return proc, port


def _stop(proc: Any) -> None:
    if proc.poll() is None:
        os.kill(proc.pid, signal.SIGTERM)
        try:
            proc.wait(30)
        except subprocess.TimeoutExpired:
            os.kill(proc.pid, signal.SIGKILL)
            proc.wait()


def _traffic(port: int, topic: str, rounds: int) -> None:
    from confluent_kafka import Consumer, Producer

    from tests.integration.clients import create_topic

    bootstrap = f"127.0.0.1:{port}"
    deadline = time.monotonic() + 30
    while True:
        try:
            create_topic(bootstrap, topic, 2)
            break
        except Exception:
            if time.monotonic() > deadline:
                raise
            time.sleep(0.3)
    p = Producer({"bootstrap.servers": bootstrap, "enable.idempotence": True, "linger.ms": 5})
    for r in range(rounds):  # separate flushes: several WAL objects to compact
        for i in range(200):
            p.produce(topic, key=str(i % 7).encode(), value=b"v" * 200 + str(r).encode())
        assert p.flush(20) == 0
    c = Consumer({"bootstrap.servers": bootstrap, "group.id": f"g-{topic}",
                  "auto.offset.reset": "earliest", "enable.auto.commit": False})  # fmt: skip
    c.subscribe([topic])
    got, deadline = 0, time.monotonic() + 30
    while got < 200 * rounds and time.monotonic() < deadline:
        m = c.poll(1)
        if m is not None and not m.error():
            got += 1
    c.commit(asynchronous=False)
    c.close()
    assert got == 200 * rounds


def _wait_recorded(record: Path, op: str, proc: Any, log: Path, timeout_s: float) -> None:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        assert proc.poll() is None, log.read_text()[-3000:]
        if record.exists() and op in record.read_text():
            return
        time.sleep(0.5)
    raise AssertionError(f"{op} never called: {log.read_text()[-3000:]}")


@pytest.mark.slow
@pytest.mark.xfail(
    strict=True,
    reason="unfinished: the in-process hook sees only boto3's default session (S3ObjectStore "
    "makes its own, so the compaction Lambda's S3 calls go unrecorded); the scenario does not "
    "yet drive the autoscaler's scale-in nor a balancer move (secret read). The broker's role "
    "already matches its recorded calls exactly (BatchGetItem used, DescribeTable not).",
)
def test_every_component_is_granted_exactly_what_it_calls(
    synth: Synth, moto: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from broker_service.metadata.dynamodb import DynamoDbMetadataStore

    session = boto3.session.Session(aws_access_key_id="testing",
                                    aws_secret_access_key="testing", region_name=REGION)  # fmt: skip
    bucket, table = f"iam-{uuid.uuid4().hex[:10]}", f"iam-{uuid.uuid4().hex[:10]}"
    session.client("s3", endpoint_url=moto).create_bucket(Bucket=bucket)
    DynamoDbMetadataStore(
        table, client=session.client("dynamodb", endpoint_url=moto)
    ).create_table()
    env = {**_broker_env(synth, bucket, table), "AWS_ENDPOINT_URL": moto,
           "COMPACTION_REPLACED_GRACE_MS": "0", "COMPACTION_ORPHAN_GRACE_MS": "0"}  # fmt: skip
    record = tmp_path / "broker-calls.txt"

    # 1. a broker (its compaction timer off) takes traffic; graceful stop
    b1, port = _run_broker({**env, "BROKER_COMPACTION_INTERVAL_MS": "0"}, record, tmp_path, "b1")
    try:
        _traffic(port, "iam-a", 3)
    finally:
        _stop(b1)

    # 2. the Lambdas, with their functions' environment (tokens resolved to this test's names)
    calls = AwsCalls([])
    monkeypatch.setattr(boto3, "DEFAULT_SESSION", boto3.session.Session())

    def rec(model: Any, params: dict[str, Any], **_: Any) -> None:
        kinds = ",".join(sorted({next(iter(i)) for i in params.get("TransactItems", [])}))
        calls.calls.append((f"{model.service_model.service_name}:{model.name}", {"k": kinds}))

    boto3.DEFAULT_SESSION.events.register("before-parameter-build", rec)
    from .conftest import FakeHttp

    def protect(params: dict[str, Any], **_: Any) -> tuple[FakeHttp, dict[str, Any]]:
        return FakeHttp(headers={}), {"protectedTasks": [], "failures": [],
                                      "ResponseMetadata": {"HTTPStatusCode": 200}}  # fmt: skip

    boto3.DEFAULT_SESSION.events.register("before-call.ecs.UpdateTaskProtection", protect)
    for k, v in {**AWS_TEST_ENV, "AWS_ENDPOINT_URL": moto}.items():
        monkeypatch.setenv(k, v)
    used: dict[str, set[str]] = {}

    def run(name: str, evt: dict[str, Any], fn_env: dict[str, str]) -> Any:
        start = len(calls.calls)
        with monkeypatch.context() as m:
            for k, v in fn_env.items():
                m.setenv(k, v)
            module = (importlib.import_module("functions.compaction.handler")
                      if name == "compaction" else load_handler(name))  # fmt: skip
            out = module.handler(evt, LambdaContext())
        made = [(n, p["k"]) for n, p in calls.calls[start:]]
        used.setdefault(name, set()).update(iam_actions(made))
        return out

    control = synth.raw("Kafka-acme-Control")
    fn_env = _function_envs(control, bucket, table, session, moto)
    out = run("compaction", event("scheduled.json"),
              {**fn_env["compaction"], "COMPACTION_REPLACED_GRACE_MS": "0",
               "COMPACTION_ORPHAN_GRACE_MS": "0"})  # fmt: skip
    assert out["swaps"] >= 1 and out["objects_deleted"] >= 1, out

    # 3. a second broker with compaction on its timer: its GC runs on the broker too
    b2, port = _run_broker({**env, "BROKER_COMPACTION_INTERVAL_MS": "2000"}, record, tmp_path,
                           "b2")  # fmt: skip
    try:
        _traffic(port, "iam-b", 3)
        _wait_recorded(record, "dynamodb:BatchGetItem", b2, tmp_path / "b2.log", 90)
        _wait_recorded(record, "s3:DeleteObject", b2, tmp_path / "b2.log", 90)
    finally:
        _stop(b2)

    meta = DynamoDbMetadataStore(table, client=session.client("dynamodb", endpoint_url=moto))
    ecs_env = _ecs(session, moto, meta)
    # recovery: a lease sweep (fences a dead broker leading a partition, moves it, forgets an
    # old auto-id one) and a STOPPED event
    dead = meta.register_broker(900, "10.0.0.9", 9092, None, -7_200_000)
    meta.set_broker_info(900, dead.epoch, {"node_id": "auto", "epoch": str(dead.epoch)})
    meta.create_topic("orphan", 1, {}, leader_id=901)
    gone = meta.register_broker(901, "10.0.0.9", 9092, None, 1)
    time.sleep(0.01)
    out = run("recovery", event("scheduled.json"), fn_env["recovery"])
    assert 901 in out["fenced"] and out["moved"], out
    stopped = event("ecs_task_stopped.json", taskArn=ecs_env["tasks"][0])
    run("recovery", stopped, fn_env["recovery"])
    del gone
    # autoscaler: scale out (load), then scale in (no load, after the cooldown tag is old)
    run("autoscaler", event("alarm_state_change.json"), {**fn_env["autoscaler"], **ecs_env["env"]})
    # balancer: a RUNNING task whose broker is there
    run("balancer", event("ecs_task_running.json", taskArn=ecs_env["tasks"][1]),
        {**fn_env["balancer"], "ARRIVAL_TIMEOUT_S": "5"})  # fmt: skip

    broker_calls = [tuple(line.split(":")[0:2]) for line in record.read_text().splitlines()]
    broker_kinds = [(f"{s}:{o}", line.split(":")[2])
                    for (s, o), line in zip(broker_calls, record.read_text().splitlines())]  # fmt: skip
    used["broker"] = iam_actions(broker_kinds)

    roles = {"broker": (synth.raw("Kafka-acme-Brokers"), "BrokerTaskRole")}
    roles |= {n: (control, f"{n.title()}Role") for n in ("compaction", "recovery", "autoscaler",
                                                          "balancer")}  # fmt: skip
    problems = []
    for name, (tpl, role) in roles.items():
        have = granted(tpl, role)
        missing = used.get(name, set()) - have
        unused = have - used.get(name, set()) - PLATFORM - set(UNREACHED.get(name, {}))
        if missing or unused:
            problems.append(f"{name}: missing {sorted(missing)}, never used {sorted(unused)}")
    assert not problems, (
        "\n".join(problems) + f"\nused: { {k: sorted(v) for k, v in used.items()} }"
    )


def _function_envs(control: dict[str, Any], bucket: str, table: str, session: Any,
                   endpoint: str) -> dict[str, dict[str, str]]:  # fmt: skip
    secret = session.client("secretsmanager", endpoint_url=endpoint).create_secret(
        Name=f"admin-{uuid.uuid4().hex[:6]}",
        SecretString=json.dumps({"username": "admin", "password": "pw"}),
    )["ARN"]
    out = {}
    for r in resources(control, "AWS::Lambda::Function").values():
        name = r["Properties"]["FunctionName"].removeprefix("kafka-acme-")
        env = {}
        for k, v in r["Properties"]["Environment"]["Variables"].items():
            if isinstance(v, str):
                env[k] = v
        env |= {"METADATA_TABLE": table, "STORAGE_URI": f"s3://{bucket}/data"}
        if "KAFKA_SECURITY_PROTOCOL" in env:
            env["ADMIN_SECRET_ARN"] = secret
        out[name] = env
    return out


def _ecs(session: Any, endpoint: str, meta: Any) -> dict[str, Any]:
    ecs, ec2 = (session.client(s, endpoint_url=endpoint) for s in ("ecs", "ec2"))
    cluster = f"kafka-{uuid.uuid4().hex[:6]}"
    ecs.create_cluster(clusterName=cluster)
    ecs.register_task_definition(
        family="broker", containerDefinitions=[{"name": "broker", "image": "b", "memory": 512}]
    )
    ecs.create_service(cluster=cluster, serviceName="brokers", taskDefinition="broker",
                       desiredCount=1)  # fmt: skip
    inst = ec2.run_instances(ImageId="ami-12c6146b", MinCount=1, MaxCount=1)["Instances"][0]
    ecs.register_container_instance(
        cluster=cluster, instanceIdentityDocument=json.dumps({"instanceId": inst["InstanceId"]})
    )
    tasks = [t["taskArn"] for t in ecs.run_task(cluster=cluster, taskDefinition="broker",
                                                  count=2)["tasks"]]  # fmt: skip
    for bid, arn in zip((801, 802), tasks, strict=True):
        b = meta.register_broker(bid, "127.0.0.1", 1, None, 600_000)
        meta.set_broker_info(bid, b.epoch, {"task_arn": arn, "epoch": str(b.epoch)})
    return {"tasks": tasks, "env": {"ECS_CLUSTER": cluster, "ECS_SERVICE": "brokers"}}
