"""Cloud-mode fixtures: a real moto server on 127.0.0.1 (S3, DynamoDB, ... over HTTP)."""

from __future__ import annotations

import functools
import os
import signal
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import boto3
import pytest

REGION = "us-east-1"


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _answers(url: str) -> bool:
    try:
        with urllib.request.urlopen(url, timeout=1):
            return True
    except urllib.error.HTTPError:
        return True  # an HTTP answer, whatever its status
    except OSError:
        return False


@pytest.fixture(scope="session")
def moto_endpoint(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """A moto server subprocess on 127.0.0.1, killed by its PID at the end of the session."""
    exe = Path(sys.executable).parent / "moto_server"
    if not exe.exists():
        pytest.skip("moto_server is not installed (pip install 'moto[server]')")
    log = tmp_path_factory.mktemp("moto") / "moto.log"
    for _ in range(3):  # the free port may be taken between probe and bind
        port = _free_port()
        with open(log, "ab") as out:
            proc = subprocess.Popen(
                [str(exe), "-H", "127.0.0.1", "-p", str(port)],
                stdout=out,
                stderr=subprocess.STDOUT,
                start_new_session=True,
            )
        endpoint = f"http://127.0.0.1:{port}"
        deadline = time.monotonic() + 20
        while proc.poll() is None and time.monotonic() < deadline:
            if _answers(endpoint + "/moto-api/"):
                break
            time.sleep(0.05)
        if proc.poll() is None and _answers(endpoint + "/moto-api/"):
            break
        _stop(proc)
    else:
        pytest.fail(f"moto server did not start: {log.read_text()[-2000:]}")
    try:
        yield endpoint
    finally:
        _stop(proc)


@pytest.fixture
def aws_env(moto_endpoint: str, monkeypatch: pytest.MonkeyPatch) -> str:
    """This test's AWS settings point at moto server: dummy credentials, a region, and the
    standard AWS_ENDPOINT_URL_S3, which boto3 honours natively (restored after the test)."""
    for name in ("AWS_PROFILE", "AWS_SESSION_TOKEN", "AWS_ENDPOINT_URL"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", "testing")
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "testing")
    monkeypatch.setenv("AWS_DEFAULT_REGION", REGION)
    monkeypatch.setenv("AWS_REGION", REGION)
    monkeypatch.setenv("AWS_CONFIG_FILE", os.devnull)
    monkeypatch.setenv("AWS_SHARED_CREDENTIALS_FILE", os.devnull)
    monkeypatch.setenv("AWS_EC2_METADATA_DISABLED", "true")
    monkeypatch.setenv("AWS_ENDPOINT_URL_S3", moto_endpoint)
    return moto_endpoint


def _stop(proc: subprocess.Popen[bytes]) -> None:
    if proc.poll() is None:
        os.kill(proc.pid, signal.SIGTERM)
        try:
            proc.wait(5)
        except subprocess.TimeoutExpired:
            os.kill(proc.pid, signal.SIGKILL)
            proc.wait()


@functools.cache
def s3_client(endpoint: str) -> Any:
    """A plain boto3 client (for looking behind the store's back); one per endpoint."""
    return boto3.session.Session(
        aws_access_key_id="testing", aws_secret_access_key="testing", region_name=REGION
    ).client("s3", endpoint_url=endpoint)


@pytest.fixture
def s3_bucket(aws_env: str) -> str:
    """A fresh, empty bucket of this test's own (with ``aws_env`` set)."""
    name = f"test-{uuid.uuid4().hex[:16]}"
    s3_client(aws_env).create_bucket(Bucket=name)
    return name
