"""Run only by test_cleanup.py (the name does not match test_*.py): a test that starts LocalStack
through the session fixture, writes its PID where LOCALSTACK_PROBE_PID_FILE says, and fails."""

from __future__ import annotations

import os
from pathlib import Path

from tests.localstack.conftest import LocalStackHost


def test_fails_with_localstack_running(localstack_host: LocalStackHost) -> None:
    pid = (localstack_host.state_dir / "localstack.pid").read_text()
    Path(os.environ["LOCALSTACK_PROBE_PID_FILE"]).write_text(f"{pid} {localstack_host.endpoint}")
    raise AssertionError("this failure is the point: LocalStack must still be stopped")
