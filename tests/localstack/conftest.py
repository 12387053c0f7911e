"""LocalStack on the host for the tests, through the same script users run (localstack/host.sh):
installed into localstack/.venv if missing (bounded in time), started on a free port with its
own state directory, stopped by its PID at the end of the session, even after a failure.

The tenant's local stacks are deployed once with cdklocal (the npm package pinned in
package.json), with thresholds low enough that a few KB of produce crosses the throughput alarm.
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import time
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import boto3
import pytest

from tests.support.broker import REPO, free_port

HOST_SCRIPT = REPO / "localstack" / "host.sh"
INSTALL_TIMEOUT_S = 900  # a cold install took 3 min 45 s here (pip, ~250 packages)
START_TIMEOUT_S = 90
CDK_TIMEOUT_S = 300
REGION = "us-east-1"
ACCOUNT = "000000000000"  # LocalStack's default account
TENANT = "lstest"
# Thresholds (stacks/local.py, control/sizing.py): one broker sized for 0.0001 MB/s of produce
# carries 0.0000473 MB/s read once; 80 % of it over the 10 s period is 378 bytes.
TENANT_KNOBS = {"min_brokers": "1", "target_mbps_per_broker": "0.0001", "retain_data": "false"}


@dataclass
class LocalStackHost:
    endpoint: str
    state_dir: Path
    timings: dict[str, float]

    @property
    def aws_env(self) -> dict[str, str]:
        """What clients, brokers and cdklocal need to reach this LocalStack (and nothing else)."""
        return {
            "AWS_ENDPOINT_URL": self.endpoint,
            "AWS_ENDPOINT_URL_S3": self.endpoint,
            "AWS_ACCESS_KEY_ID": "test",
            "AWS_SECRET_ACCESS_KEY": "test",
            "AWS_DEFAULT_REGION": REGION,
            "AWS_REGION": REGION,
            "AWS_CONFIG_FILE": os.devnull,
            "AWS_SHARED_CREDENTIALS_FILE": os.devnull,
            "AWS_EC2_METADATA_DISABLED": "true",
            "CDK_DEFAULT_ACCOUNT": ACCOUNT,
            "CDK_DEFAULT_REGION": REGION,
        }

    def client(self, service: str, endpoint_url: str | None = None) -> Any:
        """A boto3 client with the dummy credentials, to this LocalStack (or ``endpoint_url``)."""
        return boto3.session.Session(
            aws_access_key_id="test", aws_secret_access_key="test", region_name=REGION
        ).client(service, endpoint_url=endpoint_url or self.endpoint)  # type: ignore[call-overload]


def _without_aws(environ: Mapping[str, str]) -> dict[str, str]:
    """The environment without the caller's AWS settings (profile, keys, endpoints): nothing
    here may reach a real account."""
    return {k: v for k, v in environ.items() if not k.startswith("AWS_")}


def _host_env(port: int, state_dir: Path) -> dict[str, str]:
    env = _without_aws(os.environ)
    env.update(LOCALSTACK_PORT=str(port), LOCALSTACK_STATE_DIR=str(state_dir))
    env.update(LOCALSTACK_INSTALL_TIMEOUT=str(INSTALL_TIMEOUT_S))
    env.update(LOCALSTACK_START_TIMEOUT=str(START_TIMEOUT_S))
    return env


def _run(args: list[str], env: dict[str, str], timeout: float) -> str:
    proc = subprocess.run(
        args, cwd=REPO, env=env, capture_output=True, text=True, timeout=timeout, check=False
    )
    out = proc.stdout + proc.stderr
    assert proc.returncode == 0, f"{' '.join(args)} failed ({proc.returncode}):\n{out[-4000:]}"
    return out


def _stop(env: dict[str, str], pid_file: Path) -> None:
    pid = int(pid_file.read_text()) if pid_file.exists() else None
    try:
        subprocess.run([str(HOST_SCRIPT), "stop"], env=env, timeout=60, check=False)
    finally:
        # Belt and braces: the process group host.sh started (its id is LocalStack's PID).
        if pid is not None:
            try:
                os.killpg(pid, signal.SIGKILL)
            except (ProcessLookupError, PermissionError):
                pass


@pytest.fixture(scope="session")
def localstack_host(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LocalStackHost]:
    state_dir = tmp_path_factory.mktemp("localstack")
    port = free_port()
    env = _host_env(port, state_dir)
    timings: dict[str, float] = {}
    t0 = time.monotonic()
    _run([str(HOST_SCRIPT), "install"], env, INSTALL_TIMEOUT_S + 30)
    timings["install_s"] = time.monotonic() - t0
    try:
        t0 = time.monotonic()
        _run([str(HOST_SCRIPT), "start"], env, START_TIMEOUT_S + 30)
        timings["start_s"] = time.monotonic() - t0
        yield LocalStackHost(f"http://127.0.0.1:{port}", state_dir, timings)
    finally:
        _stop(env, state_dir / "localstack.pid")
        print(f"\nLocalStack timings: {json.dumps({k: round(v, 1) for k, v in timings.items()})}")


def cdklocal() -> list[str]:
    """The pinned cdklocal (package.json), installed with `npm ci` when missing."""
    exe = REPO / "node_modules" / ".bin" / "cdklocal"
    if not exe.exists():
        npm = shutil.which("npm")
        assert npm, "node/npm is needed for cdklocal (apt-get install nodejs npm)"
        subprocess.run(
            [npm, "ci", "--no-audit", "--no-fund"], cwd=REPO, check=True, timeout=CDK_TIMEOUT_S
        )
    return [str(exe)]


@dataclass
class DeployedTenant:
    name: str
    outputs: dict[str, str]
    deploy_log: str


@pytest.fixture(scope="session")
def deployed_tenant(
    localstack_host: LocalStackHost, tmp_path_factory: pytest.TempPathFactory
) -> DeployedTenant:
    """`cdklocal bootstrap` and `cdklocal deploy -c flavour=local` of one tenant."""
    env = {**_without_aws(os.environ), **localstack_host.aws_env}
    out = tmp_path_factory.mktemp("cdk")
    context = ["-c", "flavour=local", "-c", f"tenant={TENANT}"]
    for knob, value in TENANT_KNOBS.items():
        context += ["-c", f"{knob}={value}"]
    common = ["--no-notices", "-o", str(out / "cdk.out"), *context]
    t0 = time.monotonic()
    _run([*cdklocal(), "bootstrap", *common, f"aws://{ACCOUNT}/{REGION}"], env, CDK_TIMEOUT_S)
    localstack_host.timings["cdklocal_bootstrap_s"] = time.monotonic() - t0
    outputs_file = out / "outputs.json"
    t0 = time.monotonic()
    log = _run(
        [
            *cdklocal(),
            "deploy",
            "--all",
            "--require-approval",
            "never",
            "--outputs-file",
            str(outputs_file),
            *common,
        ],
        env,
        CDK_TIMEOUT_S,
    )
    localstack_host.timings["cdklocal_deploy_s"] = time.monotonic() - t0
    outputs = json.loads(outputs_file.read_text())[f"Kafka-{TENANT}-Local"]
    return DeployedTenant(TENANT, outputs, log)


@pytest.fixture(autouse=True)
def _no_caller_aws_settings(monkeypatch: pytest.MonkeyPatch) -> None:
    """Broker processes inherit os.environ: drop the caller's AWS settings (a profile would
    point at a real account, or at a file the tests replace with /dev/null)."""
    for name in list(os.environ):
        if name.startswith("AWS_"):
            monkeypatch.delenv(name)
