"""LocalStack is stopped even when a test that uses it fails."""

from __future__ import annotations

import os
import subprocess
import sys
import urllib.request
from pathlib import Path

import pytest

from tests.support.broker import REPO

pytestmark = [pytest.mark.slow, pytest.mark.timeout(1200)]  # may install LocalStack


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
    with pytest.raises(ProcessLookupError):
        os.kill(int(pid), 0)
    with pytest.raises(OSError):
        urllib.request.urlopen(endpoint + "/_localstack/health", timeout=2)
