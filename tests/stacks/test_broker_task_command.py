"""The broker task as Fargate would run it, minus Fargate: the Dockerfile's CMD with the
synthesized task definition's environment, against S3/DynamoDB on a moto server and a stand-in
for the ECS task metadata endpoint v4 (ECS itself cannot run here; the stand-in serves the
documented JSON over real HTTP). The image itself cannot be built (no Docker daemon).

Two tasks start with BROKER_NODE_ID=auto and BROKER_ADVERTISED_HOST=ecs, each with the task
definition's BROKER_PROCESSES (one broker process per vCPU); a real Kafka client bootstraps
and sees every broker of both tasks with distinct ids at the addresses the metadata gave.
"""

from __future__ import annotations

import http.server
import json
import os
import subprocess
import sys
import threading
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from broker_service.cluster.ecs_identity import resolve_ecs_environment
from tests.stacks.conftest import Synth, only
from tests.support.broker import REPO
from tests.support.moto import AWS_TEST_ENV
from tests.support.wait import wait_for_value, wait_until

# Not wired here: the security listeners (issue 10) are tested by their own suite; this test
# speaks PLAINTEXT to the broker.
SECURITY_ENV = ("BROKER_LISTENERS", "BROKER_ADVERTISED_LISTENERS", "BROKER_SUPER_USERS")
# The zonal listeners' protocols and racks: their AZ names are CloudFormation references that
# only a deployment resolves, and no test here binds the zonal ports (tests/stacks/
# test_broker_stack.py checks them in the template)
ZONAL_ENV = ("BROKER_LISTENER_SECURITY_PROTOCOL_MAP", "BROKER_LISTENER_RACKS")


def dockerfile_cmd() -> list[str]:
    lines = (REPO / "Dockerfile").read_text().splitlines()
    (cmd,) = [line for line in lines if line.startswith("CMD ")]
    parsed: list[str] = json.loads(cmd.removeprefix("CMD "))
    return parsed


def dockerfile_env() -> dict[str, str]:
    """The ENV of the Dockerfile (PATH, which names the image's venv, is left out)."""
    text = (REPO / "Dockerfile").read_text().replace("\\\n", " ")
    env: dict[str, str] = {}
    for line in text.splitlines():
        if line.startswith("ENV "):
            for pair in line.removeprefix("ENV ").split():
                k, v = pair.split("=", 1)
                if k != "PATH":
                    env[k] = v
    return env


class TaskMetadata(http.server.BaseHTTPRequestHandler):
    doc: dict[str, Any] = {}

    def do_GET(self) -> None:  # noqa: N802 - http.server's name
        if self.path != "/v4/fake/task":
            self.send_error(404)
            return
        body = json.dumps(self.doc).encode()
        self.send_response(200)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, *args: Any) -> None:
        pass


@pytest.fixture
def task_metadata() -> Iterator[str]:
    TaskMetadata.doc = {
        "Cluster": "kafka-acme",
        "AvailabilityZone": "us-east-1b",
        "Containers": [
            {
                "Name": "broker",
                "Networks": [{"NetworkMode": "awsvpc", "IPv4Addresses": ["127.0.0.1"]}],
            }
        ],
    }
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), TaskMetadata)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}/v4/fake"
    finally:
        server.shutdown()
        server.server_close()


def test_resolve_replaces_only_the_ecs_placeholders(
    task_metadata: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("ECS_CONTAINER_METADATA_URI_V4", task_metadata)
    env = {
        "BROKER_ADVERTISED_HOST": "ecs",
        "BROKER_ADVERTISED_LISTENERS": "SASL_SSL://ecs:9092",
    }
    resolve_ecs_environment(env)
    assert env == {
        "BROKER_ADVERTISED_HOST": "127.0.0.1",
        "BROKER_ADVERTISED_LISTENERS": "SASL_SSL://127.0.0.1:9092",
        "BROKER_RACK": "us-east-1b",
    }
    fixed = {"BROKER_ADVERTISED_HOST": "broker-1.internal"}
    resolve_ecs_environment(fixed)
    assert fixed == {"BROKER_ADVERTISED_HOST": "broker-1.internal"}


def test_placeholder_without_metadata_endpoint_fails_clearly(tmp_path: Path) -> None:
    env = {k: v for k, v in os.environ.items() if k != "ECS_CONTAINER_METADATA_URI_V4"}
    env.update(PYTHONPATH=str(REPO), BROKER_ADVERTISED_HOST="ecs", BROKER_DATA_DIR=str(tmp_path))
    proc = subprocess.run(
        [
            sys.executable,
            "-m",
            "broker_service",
            "serve",
            "--host",
            "127.0.0.1",
            "--port",
            "0",  # it stops before binding anything
        ],
        env=env,
        capture_output=True,
        timeout=30,
        cwd=tmp_path,
    )
    assert proc.returncode == 1
    assert b"ECS_CONTAINER_METADATA_URI_V4" in proc.stderr


def task_environment(synth: Synth, bucket: str, table: str) -> dict[str, str]:
    """The broker container's environment from the synthesized template, with the
    CloudFormation references resolved to this test's bucket and table."""
    task = only(synth.raw("Kafka-acme-Brokers"), "AWS::ECS::TaskDefinition")
    (container,) = task["ContainerDefinitions"]
    env: dict[str, str] = {}
    for e in container["Environment"]:
        value = e["Value"]
        if e["Name"] in ZONAL_ENV:
            continue
        if isinstance(value, dict):  # Fn::Join of "s3://", <bucket import>, "/data"
            parts = value["Fn::Join"][1]
            value = parts[0] + (bucket if parts[0] == "s3://" else table) + "".join(parts[2:])
        env[e["Name"]] = value
    return env


def test_dockerfile_command_runs_two_tasks_with_the_task_definition_env(
    synth: Synth, moto_endpoint: str, task_metadata: str, tmp_path: Path
) -> None:
    import boto3
    from confluent_kafka.admin import AdminClient

    from broker_service.metadata.dynamodb import DynamoDbMetadataStore

    bucket, table = f"acme-{uuid.uuid4().hex[:12]}", f"acme-{uuid.uuid4().hex[:12]}"
    session = boto3.session.Session(
        aws_access_key_id="testing", aws_secret_access_key="testing", region_name="us-east-1"
    )
    session.client("s3", endpoint_url=moto_endpoint).create_bucket(Bucket=bucket)
    store = DynamoDbMetadataStore(
        table, client=session.client("dynamodb", endpoint_url=moto_endpoint)
    )
    store.create_table()

    task_env = task_environment(synth, bucket, table)
    assert task_env["BROKER_NODE_ID"] == "auto" and task_env["BROKER_ADVERTISED_HOST"] == "ecs"
    processes = int(task_env["BROKER_PROCESSES"])
    assert processes == 2, "acme's task has 2 vCPU: a broker process on each"
    for k in SECURITY_ENV:
        task_env.pop(k, None)
    cmd = dockerfile_cmd()
    assert cmd == ["python", "-m", "broker_service", "serve"]
    procs: list[subprocess.Popen[bytes]] = []
    ready = [tmp_path / f"task{i}.ready" for i in range(2)]
    try:
        for i in range(2):
            env = {
                **os.environ,
                **AWS_TEST_ENV,
                **dockerfile_env(),
                **task_env,
                "AWS_ENDPOINT_URL": moto_endpoint,
                "ECS_CONTAINER_METADATA_URI_V4": task_metadata,
                "PYTHONPATH": str(REPO),
                "BROKER_HOST": "127.0.0.1",  # tests bind 127.0.0.1 only (the task binds 0.0.0.0)
                "BROKER_PORT": "0",  # the OS's choice, reported in the ready file
                "BROKER_READY_FILE": str(ready[i]),
                "BROKER_DATA_DIR": str(tmp_path / f"task{i}"),
            }
            log = open(tmp_path / f"task{i}.log", "wb")  # noqa: SIM115 - closed with the process
            procs.append(
                subprocess.Popen(
                    [sys.executable, *cmd[1:]],
                    env=env,
                    stdout=log,
                    stderr=subprocess.STDOUT,
                    cwd=tmp_path,
                )
            )
        def logs() -> str:
            return "\n".join((tmp_path / f"task{i}.log").read_text() for i in range(2))

        def started() -> bool:
            assert all(p.poll() is None for p in procs), logs()
            return all(f.exists() for f in ready)

        wait_until(started, 60, logs)
        ports = [p["port"] for f in ready for p in json.loads(f.read_text())["processes"]]
        assert len(set(ports)) == 2 * processes
        admin = AdminClient({"bootstrap.servers": f"127.0.0.1:{ports[0]}"})
        brokers: dict[int, Any] = wait_for_value(lambda: admin.list_topics(timeout=5).brokers,
                                                 lambda found: len(found) == len(ports), 30,
                                                 "every broker of both tasks")  # fmt: skip
        assert sorted((b.host, b.port) for b in brokers.values()) == sorted(
            ("127.0.0.1", p) for p in ports
        )
        ids = sorted(brokers)
        assert len(set(ids)) == len(ports) and ids[0] >= 1
        for i in range(2):  # logged once logging is configured (it used to be lost)
            assert "ECS task: advertised host 127.0.0.1" in (tmp_path / f"task{i}.log").read_text()
        registered = {b.broker_id: b for b in store.brokers()}
        assert set(registered) == set(ids)
        assert {b.rack for b in registered.values()} == {"us-east-1b"}
    finally:
        for p in procs:
            if p.poll() is None:
                p.terminate()
                try:
                    p.wait(15)
                except subprocess.TimeoutExpired:
                    p.kill()
                    p.wait()
        store.close()
