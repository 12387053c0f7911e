"""Control-function fixtures: handlers loaded from functions/<name>/handler.py and invoked
with real event JSON (Lambda itself needs Docker; the handler is all that runs in it), with
every AWS API they call served by the session's moto server over HTTP."""

from __future__ import annotations

import importlib.util
import json
import uuid
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from types import ModuleType
from typing import Any

import boto3
import pytest

from tests.stacks.conftest import synth  # noqa: F401 - the synthesized templates, for the IAM check
from tests.support.moto import AWS_TEST_ENV, REGION

REPO = Path(__file__).resolve().parents[2]
EVENTS = Path(__file__).resolve().parent / "events"


def load_handler(name: str) -> ModuleType:
    """functions/<name>/handler.py as a module of its own (every function has a handler.py)."""
    path = REPO / "functions" / name / "handler.py"
    spec = importlib.util.spec_from_file_location(f"function_{name}_handler", path)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def event(name: str, **detail: Any) -> dict[str, Any]:
    """A sample event from tests/functions/events/, with detail fields overridden."""
    e = json.loads((EVENTS / name).read_text())
    e["detail"].update(detail)
    return e


@dataclass
class LambdaContext:
    function_name: str = "control-test"
    function_version: str = "$LATEST"
    memory_limit_in_mb: int = 256
    invoked_function_arn: str = "arn:aws:lambda:us-east-1:123456789012:function:control-test"
    aws_request_id: str = "5b441b59-a550-11c8-6564-f1c833cf438c"
    log_group_name: str = "/aws/lambda/control-test"
    log_stream_name: str = "2026/11/25/[$LATEST]abc"

    def get_remaining_time_in_millis(self) -> int:
        return 60_000


@dataclass
class ControlEnv:
    endpoint: str
    table: str
    namespace: str
    session: Any

    def client(self, service: str) -> Any:
        return self.session.client(service, endpoint_url=self.endpoint)


@pytest.fixture
def control_env(moto_endpoint: str, monkeypatch: pytest.MonkeyPatch) -> ControlEnv:
    """The environment the CDK stacks give a control function, pointed at moto server: a
    fresh metadata table, a metrics namespace of this test's own."""
    from broker_service.metadata.dynamodb import DynamoDbMetadataStore

    for name in ("AWS_PROFILE", "AWS_SESSION_TOKEN"):
        monkeypatch.delenv(name, raising=False)
    for k, v in AWS_TEST_ENV.items():
        monkeypatch.setenv(k, v)
    monkeypatch.setenv("AWS_ENDPOINT_URL", moto_endpoint)
    table = f"ctl-{uuid.uuid4().hex[:10]}"
    namespace = f"Kafka/test-{uuid.uuid4().hex[:6]}"
    session = boto3.session.Session(aws_access_key_id="testing",
                                    aws_secret_access_key="testing", region_name=REGION)
    DynamoDbMetadataStore(table, client=session.client("dynamodb", endpoint_url=moto_endpoint)
                          ).create_table()  # fmt: skip
    env = {"TENANT": "test", "METADATA_TABLE": table, "STORAGE_URI": "s3://unused/prefix",
           "METRICS_NAMESPACE": namespace, "POWERTOOLS_SERVICE_NAME": "control-test",
           "POWERTOOLS_METRICS_NAMESPACE": namespace}  # fmt: skip
    for k, v in env.items():
        monkeypatch.setenv(k, v)
    return ControlEnv(moto_endpoint, table, namespace, session)


@pytest.fixture
def invoke() -> Callable[[str, dict[str, Any]], Any]:
    def call(name: str, evt: dict[str, Any]) -> Any:
        return load_handler(name).handler(evt, LambdaContext())

    return call


@dataclass
class FakeHttp:
    status_code: int = 200
    headers: dict[str, str] | None = None


@dataclass
class AwsCalls:
    """Every AWS API call made through boto3's default session (what the handlers use), as
    ``service:Operation`` with its parameters, in order."""

    calls: list[tuple[str, dict[str, Any]]]

    def names(self) -> list[str]:
        return [name for name, _ in self.calls]


@pytest.fixture
def aws_calls(control_env: ControlEnv, monkeypatch: pytest.MonkeyPatch) -> AwsCalls:
    """Records the handlers' AWS calls with a botocore ``before-call`` hook on a fresh default
    session, and answers ECS UpdateTaskProtection, which moto (5.2) does not implement: the
    only call not served by moto, answered as ECS documents it (every task protected)."""
    session = boto3.session.Session()
    monkeypatch.setattr(boto3, "DEFAULT_SESSION", session)
    recorded = AwsCalls([])

    def record(model: Any, params: dict[str, Any], **_: Any) -> None:
        recorded.calls.append((f"{model.service_model.service_name}:{model.name}", params))

    def protect(params: dict[str, Any], **_: Any) -> tuple[FakeHttp, dict[str, Any]]:
        body = json.loads(params["body"])  # the serialized request (ECS speaks JSON)
        tasks = [{"taskArn": t, "protectionEnabled": body["protectionEnabled"]}
                 for t in body["tasks"]]  # fmt: skip
        return FakeHttp(headers={}), {"protectedTasks": tasks, "failures": [],
                                      "ResponseMetadata": {"HTTPStatusCode": 200}}  # fmt: skip

    session.events.register("before-parameter-build", record)  # the API parameters
    session.events.register("before-call.ecs.UpdateTaskProtection", protect)
    return recorded
