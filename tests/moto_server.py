"""A real moto server (S3, DynamoDB, ... over HTTP) on 127.0.0.1 for the tests."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
import urllib.error
import urllib.request
from pathlib import Path

from tests.broker_process import free_port

REGION = "us-east-1"
# What a broker process needs to reach moto: dummy credentials, a region, no real AWS config.
AWS_TEST_ENV = {
    "AWS_ACCESS_KEY_ID": "testing",
    "AWS_SECRET_ACCESS_KEY": "testing",
    "AWS_DEFAULT_REGION": REGION,
    "AWS_REGION": REGION,
    "AWS_CONFIG_FILE": os.devnull,
    "AWS_SHARED_CREDENTIALS_FILE": os.devnull,
    "AWS_EC2_METADATA_DISABLED": "true",
}


def _answers(url: str) -> bool:
    try:
        with urllib.request.urlopen(url, timeout=1):
            return True
    except urllib.error.HTTPError:
        return True  # an HTTP answer, whatever its status
    except OSError:
        return False


def stop(proc: subprocess.Popen[bytes]) -> None:
    if proc.poll() is None:
        os.kill(proc.pid, signal.SIGTERM)
        try:
            proc.wait(5)
        except subprocess.TimeoutExpired:
            os.kill(proc.pid, signal.SIGKILL)
            proc.wait()


# moto's own ``moto_server`` always serves requests on threads; under concurrent clients its
# DynamoDB backend can lose writes. This serves one request at a time (HTTP/1.0, one
# connection each): for tests whose several processes share one server and must agree.
SINGLE_THREADED = (
    "import sys; from werkzeug.serving import run_simple; "
    "from moto.server import DomainDispatcherApplication, create_backend_app; "
    "run_simple(sys.argv[1], int(sys.argv[2]), "
    "DomainDispatcherApplication(create_backend_app), threaded=False)"
)


def start(log: Path, threaded: bool = True) -> tuple[subprocess.Popen[bytes], str]:
    """Start moto server (installed by `make test` with the [test] extra); its endpoint.
    ``threaded=False``: one request at a time (see SINGLE_THREADED)."""
    exe = Path(sys.executable).parent / "moto_server"
    if not exe.exists():
        raise RuntimeError("moto_server is missing: run `make test` (installs moto[server])")
    for _ in range(3):  # the free port may be taken between probe and bind
        port = free_port()
        cmd = (
            [str(exe), "-H", "127.0.0.1", "-p", str(port)]
            if threaded
            else [sys.executable, "-c", SINGLE_THREADED, "127.0.0.1", str(port)]
        )
        with open(log, "ab") as out:
            proc = subprocess.Popen(
                cmd,
                stdout=out, stderr=subprocess.STDOUT, start_new_session=True,
            )
        endpoint = f"http://127.0.0.1:{port}"
        deadline = time.monotonic() + 20
        while proc.poll() is None and time.monotonic() < deadline:
            if _answers(endpoint + "/moto-api/"):
                return proc, endpoint
            time.sleep(0.05)
        stop(proc)
    raise RuntimeError(f"moto server did not start: {log.read_text()[-2000:]}")
