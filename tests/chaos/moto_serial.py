"""A moto server that handles ONE request at a time, for the chaos lane.

moto's own threaded server is not safe under concurrency: a TransactWriteItems that fails
restores a snapshot of the whole table taken before the call, wiping what other clients
wrote meanwhile (issue 22.8), so a multi-broker cluster on it sees phantom losses and
spurious fencing. Served one request at a time, what the brokers see is theirs.

This is the smallest launcher the chaos lane needs until tests/support/moto.py (branch
test-harness, same idea) lands; then this file should go and the lane use that one.

    python -m tests.chaos.moto_serial --ready-file /tmp/moto.ready
"""

from __future__ import annotations

import argparse
import io
import os
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parents[2]


class Serialised:
    """WSGI middleware: the request body is read first (a slow uploader holds up no one),
    then moto answers it under one lock."""

    def __init__(self, app: Any) -> None:
        self.app = app
        self.lock = threading.Lock()

    def __call__(self, environ: dict[str, Any], start_response: Any) -> list[bytes]:
        from werkzeug.wsgi import get_input_stream

        body = get_input_stream(environ).read()
        environ["wsgi.input"] = io.BytesIO(body)
        environ["wsgi.input_terminated"] = True
        environ["CONTENT_LENGTH"] = str(len(body))
        with self.lock:
            result = self.app(environ, start_response)
            try:
                return list(result)
            finally:
                getattr(result, "close", lambda: None)()


def serve(ready_file: Path) -> None:
    from moto.moto_server.werkzeug_app import (
        DomainDispatcherApplication,
        MotoRequestHandler,
        create_backend_app,
    )
    from werkzeug.serving import make_server

    app = Serialised(DomainDispatcherApplication(create_backend_app))
    server = make_server("127.0.0.1", 0, app, threaded=True, request_handler=MotoRequestHandler)
    os.environ["MOTO_PORT"] = str(server.port)
    tmp = ready_file.with_name(ready_file.name + ".tmp")
    tmp.write_text(str(server.port))
    os.replace(tmp, ready_file)  # the port, once listening: no free-port race
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(0))
    server.serve_forever()


def start(workdir: Path, timeout: float = 60.0) -> tuple[subprocess.Popen[bytes], str]:
    """Start the server as a child process; (process, endpoint) once it listens."""
    workdir.mkdir(parents=True, exist_ok=True)
    ready = workdir / "moto.ready"
    ready.unlink(missing_ok=True)
    with open(workdir / "moto.log", "ab") as log:
        proc = subprocess.Popen(
            [sys.executable, "-m", "tests.chaos.moto_serial", "--ready-file", str(ready)],
            stdout=log, stderr=subprocess.STDOUT, cwd=REPO, start_new_session=True,
            env={**os.environ, "PYTHONPATH": str(REPO)},
        )  # fmt: skip
    deadline = time.monotonic() + timeout
    while not ready.exists():
        if proc.poll() is not None or time.monotonic() > deadline:
            stop(proc)
            raise RuntimeError(f"moto server did not start: {(workdir / 'moto.log').read_text()}")
        time.sleep(0.02)
    return proc, f"http://127.0.0.1:{int(ready.read_text())}"


def stop(proc: subprocess.Popen[bytes]) -> None:
    if proc.poll() is None:
        proc.send_signal(signal.SIGTERM)
        try:
            proc.wait(10)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()


if __name__ == "__main__":
    ap = argparse.ArgumentParser(description="moto server, one request at a time")
    ap.add_argument("--ready-file", type=Path, required=True)
    serve(ap.parse_args().ready_file)
