"""Every AWS call each component makes, checked against its synthesized role, both ways.

The real components run one tenant's life against one single-threaded moto server (several
processes share it): broker processes with the task definition's environment (its SASL
listener, ACL authorizer, ``BROKER_NODE_ID=auto``, ``BROKER_ADVERTISED_HOST=ecs`` answered
by a stand-in for the ECS task metadata endpoint), and each Lambda handler with real event
JSON and its function's environment. Every botocore session of every component is recorded
(``recorder/aws_call_recorder.py``: the brokers through a sitecustomize, the Lambdas in this
process), so the S3 object store's own session is seen as well as boto3's default one.

The scenario makes each component do what its role grants:

- brokers: produce, fetch, group commits, leadership moves both ways, compaction and its
  garbage collection on a broker's own timer (BatchGetItem, DeleteObject), DeleteTopics,
  graceful stop;
- compaction: merges WAL objects (swaps) and deletes the replaced ones and orphans, then
  merges newer batches with a merged range (its index chunk replaced);
- balancer: a RUNNING task's broker arrives; it reads the admin secret and moves partitions
  onto it over the brokers' SASL listener;
- autoscaler: scales in: drains the newest broker (UpdateItem, moves over SASL), lists the
  service's tasks, protects the staying ones, lowers the desired count, tags the service;
- recovery: STOPPED events fence a drained and a crashed broker and move the crashed one's
  partitions; the lease sweep fences an expired auto-id broker and forgets it.

The operations map to IAM actions; each role must grant every action its component called
(nothing AccessDenied on AWS) and nothing it never called (least privilege). The only
exceptions are listed below with their reason, and each must still be granted and unused.

ECS itself and Lambda invoke cannot run here: ECS is moto's (tasks started by ``RunTask`` on
a registered container instance), the ECS task metadata endpoint is a stand-in serving the
documented JSON over HTTP, and ``ecs:UpdateTaskProtection`` (not implemented by moto 5.2) is
answered in this process as ECS documents it; the call itself is still recorded.
"""

from __future__ import annotations

import http.server
import importlib
import json
import os
import signal
import subprocess
import sys
import threading
import time
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import boto3
import botocore.session
import pytest

from tests.broker_process import REPO, free_port
from tests.stacks.conftest import Synth, resources
from tests.support.moto import AWS_TEST_ENV, REGION, MotoServer

from .conftest import FakeHttp, LambdaContext, event, load_handler
from .recorder.aws_call_recorder import recording_init

RECORDER = Path(__file__).resolve().parent / "recorder"
# S3 operations -> the IAM actions that authorize them (S3's documented mapping).
S3_ACTIONS: dict[str, tuple[str, ...]] = {
    "PutObject": ("PutObject",), "CreateMultipartUpload": ("PutObject",),
    "UploadPart": ("PutObject",), "CompleteMultipartUpload": ("PutObject",),
    "CopyObject": ("GetObject", "PutObject"), "UploadPartCopy": ("GetObject", "PutObject"),
    "GetObject": ("GetObject",), "HeadObject": ("GetObject",),
    "DeleteObject": ("DeleteObject",), "DeleteObjects": ("DeleteObject",),
    "ListObjectsV2": ("ListBucket",), "ListObjects": ("ListBucket",),
    "HeadBucket": ("ListBucket",),
    "AbortMultipartUpload": ("AbortMultipartUpload",),
}  # fmt: skip
TRANSACT_ITEMS = {"Put": "PutItem", "Update": "UpdateItem", "Delete": "DeleteItem",
                  "ConditionCheck": "ConditionCheckItem", "Get": "GetItem"}  # fmt: skip

# Granted, used by AWS itself with the role, never called by the code.
LAMBDA_PLATFORM = {
    "logs:CreateLogStream": "the Lambda runtime writes the function's logs with its role",
    "logs:PutLogEvents": "the Lambda runtime writes the function's logs with its role",
    "sqs:SendMessage": "the Lambda service sends failed asynchronous invocations to the "
    "dead-letter queue with the function's role",
}
VPC_PLATFORM = dict.fromkeys(
    ("ec2:CreateNetworkInterface", "ec2:DescribeNetworkInterfaces", "ec2:DescribeSubnets",
     "ec2:DeleteNetworkInterface", "ec2:AssignPrivateIpAddresses",
     "ec2:UnassignPrivateIpAddresses"),
    "the Lambda service attaches the function to the VPC (its ENIs) with its role",
)  # fmt: skip
# Granted and called by the code, on a path this scenario cannot reach against moto.
ABORT = (
    "S3ObjectStore aborts a multipart upload (objects over 16 MiB) that fails midway; the "
    "scenario's objects are far smaller and moto does not fail parts. The abort itself is "
    "proven by tests/cloud/test_s3_object_store.py::test_failed_part_aborts_the_upload; "
    "without the grant a failed upload's parts would be billed until the bucket's lifecycle "
    "rule aborts them a day later."
)
EXCEPTIONS: dict[str, dict[str, str]] = {
    "broker": {"s3:AbortMultipartUpload": ABORT},
    "compaction": {**LAMBDA_PLATFORM, "s3:AbortMultipartUpload": ABORT},
    "recovery": dict(LAMBDA_PLATFORM),
    "autoscaler": {**LAMBDA_PLATFORM, **VPC_PLATFORM},
    "balancer": {**LAMBDA_PLATFORM, **VPC_PLATFORM},
}


def iam_actions(lines: list[str]) -> set[str]:
    """Recorded ``service:Operation:kinds`` lines -> the IAM actions that authorize them."""
    out: set[str] = set()
    for line in lines:
        service, op, kinds = line.split(":")
        if service == "s3":
            out |= {f"s3:{a}" for a in S3_ACTIONS[op]}
        elif service == "dynamodb" and op in ("TransactWriteItems", "TransactGetItems"):
            out |= {f"dynamodb:{TRANSACT_ITEMS[k]}" for k in kinds.split(",") if k}
        else:
            out.add(f"{service}:{op}")
    return out


def granted(tpl: dict[str, Any], role_prefix: str) -> set[str]:
    """Every action of the policies attached to the role whose logical id starts so."""
    actions: set[str] = set()
    for p in resources(tpl, "AWS::IAM::Policy").values():
        if any(r["Ref"].startswith(role_prefix) for r in p["Properties"]["Roles"]):
            for st in p["Properties"]["PolicyDocument"]["Statement"]:
                a = st["Action"]
                actions |= {a} if isinstance(a, str) else set(a)
    return actions


def compare(used: set[str], have: set[str], exceptions: dict[str, str]) -> list[str]:
    """What is wrong with a role: actions called but not granted, granted but never called
    (outside the exceptions), and exceptions that no longer hold (not granted, or called)."""
    problems = []
    if missing := used - have:
        problems.append(f"called but not granted: {sorted(missing)}")
    if unused := have - used - set(exceptions):
        problems.append(f"granted but never called: {sorted(unused)}")
    if stale := {a for a in exceptions if a not in have or a in used}:
        problems.append(f"exceptions that no longer hold (not granted, or called): {sorted(stale)}")
    return problems


def test_compare_reports_both_ways_and_stale_exceptions() -> None:
    """The check itself: the broker role's original defect (BatchGetItem called, not
    granted; DescribeTable granted, never called) is reported, and so is an exception for
    an action that is called after all."""
    used = iam_actions(["dynamodb:BatchGetItem:", "dynamodb:TransactWriteItems:ConditionCheck,Put",
                        "s3:HeadObject:", "ecs:ListTasks:"])  # fmt: skip
    assert used == {"dynamodb:BatchGetItem", "dynamodb:ConditionCheckItem", "dynamodb:PutItem",
                    "s3:GetObject", "ecs:ListTasks"}  # fmt: skip
    have = {"dynamodb:DescribeTable", "dynamodb:ConditionCheckItem", "dynamodb:PutItem",
            "s3:GetObject", "ecs:ListTasks", "logs:PutLogEvents"}  # fmt: skip
    assert compare(used, have, {"logs:PutLogEvents": "runtime"}) == [
        "called but not granted: ['dynamodb:BatchGetItem']",
        "granted but never called: ['dynamodb:DescribeTable']",
    ]
    assert compare(used, used, {"ecs:ListTasks": "?"}) == [
        "exceptions that no longer hold (not granted, or called): ['ecs:ListTasks']"
    ]
    assert compare(used, used, {}) == []


# -- the stand-ins: moto, the ECS task metadata endpoint ----------------------------------
@pytest.fixture(scope="module")
def moto(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    with MotoServer(tmp_path_factory.mktemp("moto-iam")) as server:  # one request at a time
        yield server.endpoint


class _TaskMetadataServer(http.server.ThreadingHTTPServer):
    tasks: dict[str, str]  # path id -> task ARN


class _TaskMetadata(http.server.BaseHTTPRequestHandler):
    """ECS task metadata endpoint v4: ``GET /v4/<id>/task``, the documented JSON (task ARN,
    zone, the container's awsvpc address)."""

    server: _TaskMetadataServer

    def do_GET(self) -> None:  # noqa: N802 - http.server's name
        parts = self.path.strip("/").split("/")
        arn = self.server.tasks.get(parts[1]) if len(parts) == 3 and parts[2] == "task" else None
        if arn is None:
            self.send_error(404)
            return
        body = json.dumps({
            "Cluster": arn.split("/")[1], "TaskARN": arn, "AvailabilityZone": "us-east-1a",
            "Containers": [{"Name": "broker", "Networks": [
                {"NetworkMode": "awsvpc", "IPv4Addresses": ["127.0.0.1"]}]}],
        }).encode()  # fmt: skip
        self.send_response(200)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, *args: Any) -> None:
        pass


@pytest.fixture
def task_metadata() -> Iterator[Callable[[str], str]]:
    """task ARN -> the ECS_CONTAINER_METADATA_URI_V4 of a container of that task."""
    server = _TaskMetadataServer(("127.0.0.1", 0), _TaskMetadata)
    server.tasks = {}
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()

    def uri(task_arn: str) -> str:
        key = uuid.uuid4().hex[:8]
        server.tasks[key] = task_arn
        return f"http://127.0.0.1:{server.server_address[1]}/v4/{key}"

    try:
        yield uri
    finally:
        server.shutdown()
        server.server_close()


# -- brokers -------------------------------------------------------------------------------
@dataclass
class Broker:
    proc: subprocess.Popen[bytes]
    port: int
    log: Path
    task_arn: str

    def tail(self) -> str:
        return self.log.read_text(errors="replace")[-3000:]


@dataclass
class Tenant:
    """One tenant's resources on moto, and the task definition's broker environment."""

    endpoint: str
    bucket: str
    table: str
    admin: dict[str, str]
    secret_arn: str
    cluster: str
    service: str
    tasks: list[str]
    broker_env: dict[str, str]
    record: Path
    tmp: Path
    brokers: list[Broker] = field(default_factory=list)

    def start_broker(self, task_arn: str, metadata_uri: str, **env: str) -> Broker:
        port = free_port()
        name = f"broker-{len(self.brokers)}"
        full = {
            **os.environ, **AWS_TEST_ENV, **self.broker_env, **env,
            # what ECS gives the container: the secret's fields, the metadata endpoint
            "BROKER_ADMIN_USER": self.admin["username"],
            "BROKER_ADMIN_PASSWORD": self.admin["password"],
            "ECS_CONTAINER_METADATA_URI_V4": metadata_uri,
            # 127.0.0.1 only here (the task binds 0.0.0.0:9092)
            "BROKER_HOST": "127.0.0.1", "BROKER_PORT": str(port),
            "BROKER_LISTENERS": f"SASL_PLAINTEXT://127.0.0.1:{port}",
            "BROKER_ADVERTISED_LISTENERS": f"SASL_PLAINTEXT://ecs:{port}",
            "BROKER_DATA_DIR": str(self.tmp / name), "BROKER_METRICS_PORT": "0",
            "AWS_ENDPOINT_URL": self.endpoint, "RECORD_AWS_CALLS": str(self.record),
            "PYTHONPATH": f"{RECORDER}{os.pathsep}{REPO}",
            # one broker per task (the stacks run one per vCPU): this test follows each
            # task's broker through balance, drain and recovery by its id; the AWS calls
            # do not depend on it (tasks of N brokers: tests/integration/test_processes.py)
            "BROKER_PROCESSES": "1",
        }  # fmt: skip
        log = self.tmp / f"{name}.log"
        with open(log, "wb") as out:
            proc = subprocess.Popen([sys.executable, "-m", "broker_service", "serve"], env=full,
                                    stdout=out, stderr=subprocess.STDOUT, cwd=self.tmp)  # fmt: skip
        broker = Broker(proc, port, log, task_arn)
        self.brokers.append(broker)
        return broker

    def client_config(self, broker: Broker) -> dict[str, Any]:
        return {"bootstrap.servers": f"127.0.0.1:{broker.port}",
                "security.protocol": "SASL_PLAINTEXT", "sasl.mechanism": "SCRAM-SHA-512",
                "sasl.username": self.admin["username"],
                "sasl.password": self.admin["password"]}  # fmt: skip

    def recorded(self) -> list[str]:
        return self.record.read_text().splitlines() if self.record.exists() else []


def _stop(broker: Broker, sig: int = signal.SIGTERM) -> None:
    if broker.proc.poll() is None:
        os.kill(broker.proc.pid, sig)
        try:
            broker.proc.wait(30)
        except subprocess.TimeoutExpired:
            os.kill(broker.proc.pid, signal.SIGKILL)
            broker.proc.wait()


def _wait_for(
    what: str, check: Callable[[], bool], brokers: list[Broker], timeout_s: float
) -> None:
    """Poll ``check`` (a condition, not a delay) until it holds; the brokers must stay up."""
    deadline = time.monotonic() + timeout_s
    while not check():
        for b in brokers:
            assert b.proc.poll() is None, f"{b.task_arn} exited:\n{b.tail()}"
        if time.monotonic() > deadline:
            raise AssertionError(f"{what}: not within {timeout_s} s\n" +
                                 "\n".join(b.tail() for b in brokers))  # fmt: skip
        time.sleep(0.3)


def _traffic(tenant: Tenant, broker: Broker, topic: str, partitions: int, rounds: int) -> None:
    """Create a topic, produce ``rounds`` separate batches (several WAL objects to compact),
    consume them all in a group and commit."""
    from confluent_kafka import Consumer, KafkaException
    from confluent_kafka.admin import AdminClient, NewTopic

    conf = tenant.client_config(broker)
    admin = AdminClient(conf)
    deadline = time.monotonic() + 60
    while True:
        try:
            admin.create_topics([NewTopic(topic, partitions, 1)])[topic].result(timeout=15)
            break
        except KafkaException:
            if time.monotonic() > deadline:
                raise
    _produce(tenant, broker, topic, rounds)
    c = Consumer({**conf, "group.id": f"g-{topic}", "auto.offset.reset": "earliest",
                  "enable.auto.commit": False})  # fmt: skip
    c.subscribe([topic])
    got, deadline = 0, time.monotonic() + 60
    while got < 200 * rounds and time.monotonic() < deadline:
        m = c.poll(1)
        if m is not None and not m.error():
            got += 1
    c.commit(asynchronous=False)
    c.close()
    assert got == 200 * rounds


def _produce(tenant: Tenant, broker: Broker, topic: str, rounds: int) -> None:
    """``rounds`` separate batches of 200 records (each its own WAL objects)."""
    from confluent_kafka import Producer

    p = Producer({**tenant.client_config(broker), "enable.idempotence": True, "linger.ms": 5})
    for r in range(rounds):
        for i in range(200):
            p.produce(topic, key=str(i % 7).encode(), value=b"v" * 200 + str(r).encode())
        assert p.flush(30) == 0


def _delete_topic(tenant: Tenant, broker: Broker, topic: str) -> None:
    from confluent_kafka.admin import AdminClient

    admin = AdminClient(tenant.client_config(broker))  # alive until the answer came
    admin.delete_topics([topic])[topic].result(timeout=30)


# -- the Lambdas, in this process ------------------------------------------------------------
class Lambdas:
    """Invokes handlers as their functions would run them: the function's environment, a
    fresh container per function (cold-start caches emptied), every botocore session made
    meanwhile recorded as this function's calls."""

    def __init__(self, monkeypatch: pytest.MonkeyPatch, envs: dict[str, dict[str, str]]):
        self.monkeypatch = monkeypatch
        self.envs = envs
        self.current: str | None = None
        self.calls: dict[str, list[str]] = {}

        def sink(line: str) -> None:
            if self.current is not None:  # the test's own setup calls are not a function's
                self.calls.setdefault(self.current, []).append(line)

        # moto 5.2 has no UpdateTaskProtection: answered as ECS documents it (every task
        # protected), after the recording hook has seen the call.
        def protect(params: dict[str, Any], **_: Any) -> tuple[FakeHttp, dict[str, Any]]:
            body = json.loads(params["body"])
            tasks = [{"taskArn": t, "protectionEnabled": body["protectionEnabled"]}
                     for t in body["tasks"]]  # fmt: skip
            return FakeHttp(headers={}), {"protectedTasks": tasks, "failures": [],
                                          "ResponseMetadata": {"HTTPStatusCode": 200}}  # fmt: skip

        monkeypatch.setattr(
            botocore.session.Session, "__init__",
            recording_init(sink, {"before-call.ecs.UpdateTaskProtection": protect}),
        )  # fmt: skip

    def run(self, name: str, evt: dict[str, Any], **env: str) -> Any:
        from broker_service.control.settings import cold_start_security

        cold_start_security.cache_clear()
        with self.monkeypatch.context() as m:
            m.setattr(boto3, "DEFAULT_SESSION", None)  # a new one, made recording
            for k, v in {**self.envs[name], **env}.items():
                m.setenv(k, v)
            module = (importlib.import_module("functions.compaction.handler")
                      if name == "compaction" else load_handler(name))  # fmt: skip
            self.current = name
            try:
                return module.handler(evt, LambdaContext())
            finally:
                self.current = None
                cold_start_security.cache_clear()


def _function_envs(control: dict[str, Any], tenant: Tenant) -> dict[str, dict[str, str]]:
    """Each function's environment from the template, CloudFormation references resolved to
    this tenant's table, bucket, cluster, service and secret."""
    refs = {"METADATA_TABLE": tenant.table, "STORAGE_URI": f"s3://{tenant.bucket}/data",
            "ECS_CLUSTER": tenant.cluster, "ECS_SERVICE": tenant.service,
            "ADMIN_SECRET_ARN": tenant.secret_arn}  # fmt: skip
    out = {}
    for r in resources(control, "AWS::Lambda::Function").values():
        name = r["Properties"]["FunctionName"].removeprefix("kafka-acme-")
        env = {}
        for k, v in r["Properties"]["Environment"]["Variables"].items():
            env[k] = v if isinstance(v, str) else refs[k]
        out[name] = env
    return out


def _tenant(synth: Synth, endpoint: str, tmp: Path) -> Tenant:
    from broker_service.metadata.dynamodb import DynamoDbMetadataStore
    from tests.stacks.test_broker_task_command import task_environment

    session = boto3.session.Session(
        aws_access_key_id="testing", aws_secret_access_key="testing", region_name=REGION
    )
    bucket, table = f"iam-{uuid.uuid4().hex[:10]}", f"iam-{uuid.uuid4().hex[:10]}"
    session.client("s3", endpoint_url=endpoint).create_bucket(Bucket=bucket)
    DynamoDbMetadataStore(table, client=session.client("dynamodb", endpoint_url=endpoint)
                          ).create_table()  # fmt: skip
    # The admin secret as the brokers stack generates it.
    brokers_tpl = synth.raw("Kafka-acme-Brokers")
    (secret,) = resources(brokers_tpl, "AWS::SecretsManager::Secret").values()
    gen = secret["Properties"]["GenerateSecretString"]
    admin = {**json.loads(gen["SecretStringTemplate"]),
             gen["GenerateStringKey"]: uuid.uuid4().hex}  # fmt: skip
    secret_arn = session.client("secretsmanager", endpoint_url=endpoint).create_secret(
        Name=f"kafka-acme-{uuid.uuid4().hex[:6]}/admin", SecretString=json.dumps(admin)
    )["ARN"]
    # ECS: the brokers' cluster and service, two tasks of it.
    ecs, ec2 = (session.client(s, endpoint_url=endpoint) for s in ("ecs", "ec2"))
    cluster, service = f"kafka-acme-{uuid.uuid4().hex[:6]}", "brokers"
    ecs.create_cluster(clusterName=cluster)
    ecs.register_task_definition(
        family="broker", containerDefinitions=[{"name": "broker", "image": "b", "memory": 512}]
    )
    ecs.create_service(cluster=cluster, serviceName=service, taskDefinition="broker",
                       desiredCount=2)  # fmt: skip
    inst = ec2.run_instances(ImageId="ami-12c6146b", MinCount=1, MaxCount=1)["Instances"][0]
    ecs.register_container_instance(
        cluster=cluster, instanceIdentityDocument=json.dumps({"instanceId": inst["InstanceId"]})
    )
    tasks = [t["taskArn"] for t in ecs.run_task(cluster=cluster, taskDefinition="broker",
                                                  count=2)["tasks"]]  # fmt: skip
    env = task_environment(synth, bucket, table)
    assert env["BROKER_LISTENERS"].startswith("SASL_PLAINTEXT://"), env  # what is spoken here
    assert env["BROKER_NODE_ID"] == "auto" and env["BROKER_ADVERTISED_HOST"] == "ecs"
    return Tenant(endpoint, bucket, table, admin, secret_arn, cluster, service, tasks, env,
                  tmp / "broker-calls.txt", tmp)  # fmt: skip


@pytest.mark.slow
def test_every_component_is_granted_exactly_what_it_calls(
    synth: Synth, moto: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
    task_metadata: Callable[[str], str],
) -> None:  # fmt: skip
    from broker_service.control.arrival import wait_for_task_broker
    from broker_service.metadata.dynamodb import DynamoDbMetadataStore
    from broker_service.metadata.records import DRAINING, FENCED

    for name in ("AWS_PROFILE", "AWS_SESSION_TOKEN"):
        monkeypatch.delenv(name, raising=False)
    for k, v in {**AWS_TEST_ENV, "AWS_ENDPOINT_URL": moto}.items():
        monkeypatch.setenv(k, v)
    t = _tenant(synth, moto, tmp_path)
    meta = DynamoDbMetadataStore(t.table, client=boto3.client("dynamodb", endpoint_url=moto))
    control = synth.raw("Kafka-acme-Control")
    lambdas = Lambdas(monkeypatch, _function_envs(control, t))
    task_a, task_b = t.tasks
    no_grace = {"COMPACTION_REPLACED_GRACE_MS": "0", "COMPACTION_ORPHAN_GRACE_MS": "0"}
    try:
        # 1. broker A (its compaction timer off: the Lambda compacts first) takes traffic
        a = t.start_broker(task_a, task_metadata(task_a), BROKER_COMPACTION_INTERVAL_MS="0",
                           **no_grace)  # fmt: skip
        a_id = wait_for_task_broker(meta, task_a, 60)
        assert a_id is not None, a.tail()
        _traffic(t, a, "iam-a", 4, 3)

        # 2. compaction: merges A's WAL objects, deletes the replaced ones
        out = lambdas.run("compaction", event("scheduled.json"), **no_grace)
        assert out["swaps"] >= 1 and out["objects_deleted"] >= 1, out
        # more small batches after the merged ones: the next run merges them with the merged
        # range, so the index chunk that held it is replaced (a Delete in the transaction)
        _produce(t, a, "iam-a", 2)
        out = lambdas.run("compaction", event("scheduled.json"), **no_grace)
        assert out["swaps"] >= 1, out

        # 3. broker B's task is RUNNING: the balancer waits for its broker, reads the admin
        # secret and moves partitions onto it over SASL (an idle cluster: counts balanced)
        b = t.start_broker(task_b, task_metadata(task_b), BROKER_COMPACTION_INTERVAL_MS="2000",
                           **no_grace)  # fmt: skip
        out = lambdas.run("balancer", event("ecs_task_running.json", taskArn=task_b))
        b_id = out["arrived"]
        assert b_id is not None and b_id != a_id, (out, b.tail())
        moves = out["moves"]
        assert moves and all(m["ok"] and m["target"] == b_id for m in moves), out

        # 4. traffic on both; compaction and its GC on B's own timer (BatchGetItem, deletes)
        _traffic(t, b, "iam-b", 2, 3)
        for op in ("dynamodb:BatchGetItem:", "s3:DeleteObject:"):

            def seen(op: str = op) -> bool:
                return op in t.recorded()

            _wait_for(f"broker GC {op}", seen, [a, b], 90)
        _traffic(t, b, "iam-gone", 1, 1)
        _delete_topic(t, b, "iam-gone")  # DeleteTopics: the topic's record goes

        # 5. no load, 2 brokers, a tenant whose minimum is 1: the autoscaler scales in. It
        # drains B (the newest) over SASL, protects A's task, lowers the desired count.
        out = lambdas.run("autoscaler", event("scheduled.json"), MIN_BROKERS="1")
        assert (out["action"], out["desired"], out["applied"]) == ("scale_in", 1, True), out
        assert out["drained"] == [b_id] and out["drained_tasks"] == [task_b], out
        assert out["protected_tasks"] == [task_a], out
        led = {p.leader_id for topic in meta.topics() for p in topic.partitions}
        assert led == {a_id}, led
        assert {x.broker_id: x.state for x in meta.brokers()}[b_id] == DRAINING

        # 6. ECS stops the drained task (SIGTERM); A crashes (SIGKILL); the replacement
        # task's broker registers (written here: recovery only reads the registration)
        _stop(b)
        _stop(a, signal.SIGKILL)
        replacement = meta.register_broker(801, "127.0.0.1", 1, None, 600_000)
        meta.set_broker_info(801, replacement.epoch, {"epoch": str(replacement.epoch)})

        # 7. recovery: the STOPPED events fence B (it leads nothing) and A (its partitions
        # move to the replacement) at once; the lease sweep fences an auto-id broker whose
        # lease ran out two hours ago and, as it leads nothing, forgets it
        out = lambdas.run("recovery", event("ecs_task_stopped.json", taskArn=task_b))
        assert out["broker"] == b_id and not out["moved"], out
        # the Lambda fences B, unless A's own recovery check did first: B stops renewing its
        # lease at SIGTERM, and on a loaded host it can run out before A is killed (seen once
        # in a full-suite run: fenced []). Either way B is fenced now; A's fence below is the
        # Lambda's own in every case (A dies by SIGKILL with nobody left to fence it).
        assert out["fenced"] in ([b_id], []), out
        assert {x.broker_id: x.state for x in meta.brokers()}[b_id] == FENCED
        out = lambdas.run("recovery", event("ecs_task_stopped.json", taskArn=task_a))
        assert out["broker"] == a_id and out["fenced"] == [a_id], out
        assert out["moved"] and {m[3] for m in out["moved"]} == {801}, out
        old = meta.register_broker(900, "10.0.0.9", 9092, None, -7_200_000)
        meta.set_broker_info(900, old.epoch, {"node_id": "auto", "epoch": str(old.epoch)})
        out = lambdas.run("recovery", event("scheduled.json"))
        assert out["fenced"] == [900], out
        states = {x.broker_id: x.state for x in meta.brokers()}
        assert 900 not in states and states[a_id] == states[b_id] == FENCED, states
    finally:
        for broker in t.brokers:
            _stop(broker, signal.SIGKILL)

    used = {name: iam_actions(lines) for name, lines in lambdas.calls.items()}
    used["broker"] = iam_actions(t.recorded())
    roles = {"broker": (synth.raw("Kafka-acme-Brokers"), "BrokerTaskRole")}
    roles |= {n: (control, f"{n.title()}Role")
              for n in ("compaction", "recovery", "autoscaler", "balancer")}  # fmt: skip
    problems = []
    for name, (tpl, role) in roles.items():
        have = granted(tpl, role)
        assert have, f"no policy found for {role}"
        problems += [f"{name}: {p}" for p in compare(used.get(name, set()), have,
                                                     EXCEPTIONS[name])]  # fmt: skip
    assert not problems, "\n".join(problems) + "\nused: " + json.dumps(
        {k: sorted(v) for k, v in used.items()}, indent=1
    )
