"""LocalStack is stopped even when a test that uses it fails."""

from __future__ import annotations

import os
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import pytest

from tests.support.broker import REPO

pytestmark = [pytest.mark.slow, pytest.mark.timeout(1200)]  # may install LocalStack


def _running(pid: int) -> bool:
    """Whether the process runs. One that exited but is not yet reaped (a zombie: its parent,
    host.sh, is gone, so init reaps it when it gets to it) does not: ``kill(pid, 0)`` would
    still succeed on it."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except FileNotFoundError:
        return False
    return stat.rsplit(")", 1)[1].split()[0] not in ("Z", "X")


def test_localstack_is_stopped_after_a_failing_test(tmp_path: Path) -> None:
    pid_file = tmp_path / "pid"
    env = {**os.environ, "LOCALSTACK_PROBE_PID_FILE": str(pid_file)}
    proc = subprocess.run(
        [sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider",
         str(REPO / "tests/localstack/cleanup_probe.py")],
        cwd=REPO, env=env, capture_output=True, text=True, timeout=1100, check=False,
    )  # fmt: skip
    assert proc.returncode == 1, proc.stdout[-3000:]  # 1: tests ran and one failed
    assert "1 failed" in proc.stdout
    pid, endpoint = pid_file.read_text().split()
    # SIGKILL is delivered asynchronously: wait (bounded) for the process to be gone.
    deadline = time.monotonic() + 10
    while _running(int(pid)) and time.monotonic() < deadline:
        time.sleep(0.1)
    assert not _running(int(pid)), f"LocalStack (pid {pid}) still runs"
    with pytest.raises(OSError):
        urllib.request.urlopen(endpoint + "/_localstack/health", timeout=2)
