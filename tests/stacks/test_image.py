"""The broker image builds from the Dockerfile and its CMD serves Kafka, without a Docker
daemon: podman (``--isolation chroot``) builds it on a Debian base made by mmdebstrap from
Debian's packages (the Dockerfile's BASE_IMAGE arg), pinned to linux/amd64 like the task
definition. ``podman run`` cannot set rlimits on this machine, so the CMD runs by chroot into
``podman mount`` of a created container (the image's own filesystem, venv and user)."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
from pathlib import Path
from typing import Any

import pytest

from tests.broker_process import REPO, free_port

BASE = "localhost/broker-test-base:bookworm"
IMAGE = "localhost/broker-service:test"
CA = "/etc/ssl/certs/ca-certificates.crt"


def _podman() -> str:
    """Missing tools fail the test (an unproven image is not a pass): `make test` installs
    them (the `podman` target: Debian's podman and mmdebstrap)."""
    exe = shutil.which("podman")
    if exe is None or shutil.which("mmdebstrap") is None:
        pytest.fail("podman and mmdebstrap are not installed: run `make podman`")
    return exe


def _run(*cmd: str, timeout: float = 1200) -> str:
    proc = subprocess.run(cmd, capture_output=True, text=True, timeout=timeout)
    assert proc.returncode == 0, (cmd, proc.stdout[-3000:], proc.stderr[-3000:])
    return proc.stdout


@pytest.mark.slow
def test_dockerfile_builds_for_amd64_and_its_cmd_serves_kafka(tmp_path: Path) -> None:
    from confluent_kafka.admin import AdminClient

    podman = _podman()
    if subprocess.run([podman, "image", "exists", BASE]).returncode != 0:
        tar = tmp_path / "base.tar"
        packages = "python3,python3-venv,ca-certificates,passwd"
        _run("mmdebstrap", "--variant=minbase", f"--include={packages}", "bookworm", str(tar))
        _run(podman, "import", str(tar), BASE)
    _run(podman, "build", "--isolation", "chroot", "--platform", "linux/amd64",
         "--build-arg", f"BASE_IMAGE={BASE}", "--build-arg", f"PIP_CERT={CA}",
         "-v", f"{CA}:{CA}:ro", "-t", IMAGE, "-f", "Dockerfile", str(REPO))  # fmt: skip
    info = json.loads(_run(podman, "image", "inspect", IMAGE))[0]
    assert info["Architecture"] == "amd64" and info["Os"] == "linux"
    cmd = info["Config"]["Cmd"]
    assert cmd == ["python", "-m", "broker_service", "serve"]
    env = dict(e.split("=", 1) for e in info["Config"]["Env"])
    container = _run(podman, "create", IMAGE).strip()
    try:
        root = _run(podman, "mount", container).strip()
        port = free_port()
        run_env = {**env, "BROKER_HOST": "127.0.0.1", "BROKER_PORT": str(port),
                   "BROKER_DATA_DIR": "/tmp/broker", "HOME": "/app"}  # fmt: skip
        proc = subprocess.Popen(
            ["chroot", "--userspec=10001:10001", root, *cmd], env=run_env,
            stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
        )  # fmt: skip
        try:
            admin = AdminClient({"bootstrap.servers": f"127.0.0.1:{port}"})
            brokers: dict[int, Any] = {}
            for _ in range(60):  # bounded: up to 60 metadata round trips of 1 s
                assert proc.poll() is None, proc.stdout.read().decode()[-3000:]  # type: ignore[union-attr]
                try:
                    brokers = admin.list_topics(timeout=1).brokers
                except Exception:
                    brokers = {}
                if brokers:
                    break
            assert list(brokers) == [1]
        finally:
            proc.terminate()
            proc.wait(30)
    finally:
        subprocess.run([podman, "umount", container], capture_output=True)
        subprocess.run([podman, "rm", "-f", container], capture_output=True)
    assert os.path.exists(REPO / "Dockerfile")
