"""A real moto server (S3, DynamoDB, ... over HTTP) on 127.0.0.1 that serves ONE REQUEST AT
A TIME, for tests and benchmarks.

Why not ``moto_server`` (threaded): moto's backends are not safe under concurrent requests.
A TransactWriteItems that fails restores a snapshot of the whole table taken before the
call, wiping what other clients wrote meanwhile; with several brokers committing to one
table, 7 of 200 acknowledged conditional increments were lost that way (issue 22.8). Served
one at a time, none is (tests/contract/test_moto_serialised.py proves it). Real DynamoDB
and S3 have no such problem, so serialising only removes a fault of the fake.

Requests are handled one after the other on one thread, HTTP/1.0 (one request per
connection, closed after the answer), so a client keeping a connection open cannot block the
others. The server binds port 0 and writes the port it got to a ready file: no free-port race.

    python -m tests.support.moto --ready-file /tmp/moto.ready     # what MotoServer runs
"""

from __future__ import annotations

import argparse
import io
import os
import signal
import subprocess
import sys
import threading
from pathlib import Path
from types import TracebackType
from typing import Any

from tests.support.wait import wait_until

REPO = Path(__file__).resolve().parents[2]
HOST = "127.0.0.1"
REGION = "us-east-1"
# What a process needs to reach moto: dummy credentials, a region, no real AWS config.
AWS_TEST_ENV = {
    "AWS_ACCESS_KEY_ID": "testing",
    "AWS_SECRET_ACCESS_KEY": "testing",
    "AWS_DEFAULT_REGION": REGION,
    "AWS_REGION": REGION,
    "AWS_CONFIG_FILE": os.devnull,
    "AWS_SHARED_CREDENTIALS_FILE": os.devnull,
    "AWS_EC2_METADATA_DISABLED": "true",
}
# A client that connects and then sends nothing holds the single server thread this long.
REQUEST_READ_TIMEOUT_S = 30


class MotoServer:
    """The moto server subprocess: ``start()`` returns once it serves; ``stop()`` by PID."""

    def __init__(self, workdir: Path, name: str = "moto") -> None:
        workdir.mkdir(parents=True, exist_ok=True)
        self.log_path = workdir / f"{name}.log"
        self.ready_path = workdir / f"{name}.ready"
        self.proc: subprocess.Popen[bytes] | None = None
        self.port = 0
        self.endpoint = ""

    def start(self, timeout: float = 60.0) -> MotoServer:
        self.ready_path.unlink(missing_ok=True)
        with open(self.log_path, "ab") as log:
            self.proc = subprocess.Popen(
                [sys.executable, "-m", "tests.support.moto", "--ready-file", str(self.ready_path)],
                stdout=log, stderr=subprocess.STDOUT, cwd=REPO, start_new_session=True,
                env={**os.environ, "PYTHONPATH": str(REPO)},
            )  # fmt: skip
        proc = self.proc

        def ready() -> bool:
            if proc.poll() is not None:
                raise RuntimeError(f"moto server exited ({proc.returncode}): {self.log()}")
            return self.ready_path.exists()

        wait_until(ready, timeout, lambda: f"moto server ready file; log: {self.log()}", 0.02)
        self.port = int(self.ready_path.read_text())
        self.endpoint = f"http://{HOST}:{self.port}"
        return self

    def stop(self) -> None:
        proc, self.proc = self.proc, None
        if proc is None or proc.poll() is not None:
            return
        proc.send_signal(signal.SIGTERM)
        try:
            proc.wait(10)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()

    def log(self) -> str:
        try:
            return self.log_path.read_text(errors="replace")[-2000:]
        except FileNotFoundError:
            return ""

    def __enter__(self) -> MotoServer:
        return self.start()

    def __exit__(self, et: type[BaseException] | None, ev: BaseException | None,
                 tb: TracebackType | None) -> None:  # fmt: skip
        self.stop()


class Serialised:
    """WSGI middleware: moto's app runs one request at a time. The request body is read
    before taking the lock (a slow uploader does not hold up the others) and the answer is
    complete before it is released; connections (HTTP/1.1 keep-alive) stay on threads."""

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
                close = getattr(result, "close", None)
                if close is not None:
                    close()


def snapshot_each_table_once() -> None:
    """moto's TransactWriteItems snapshots a table (a deep copy of every item) for its
    rollback once per ITEM of the transaction naming it, so a 3-item WAL commit copied the
    whole table three times: 46% of the moto server's CPU in the cloud kill loop, growing
    with the table. The snapshots of one call are all taken before anything is written, so
    they are equal: copying each table once per call and handing out that one copy keeps
    the rollback exactly what it was (the server is serialised: no call overlaps)."""
    import copy

    import moto.dynamodb.models as models
    from moto.dynamodb.models.table import Table

    transact = models.DynamoDBBackend.transact_write_items
    if getattr(transact, "snapshots_once", False):
        return

    class OneSnapshotPerTable:
        def __init__(self) -> None:
            self.taken: dict[int, Any] = {}

        def deepcopy(self, obj: Any, memo: Any = None) -> Any:
            if not isinstance(obj, Table):
                return copy.deepcopy(obj, memo)
            if id(obj) not in self.taken:
                self.taken[id(obj)] = copy.deepcopy(obj, memo)
            return self.taken[id(obj)]

    def transact_write_items(self: Any, transact_items: Any) -> None:
        models.copy = OneSnapshotPerTable()  # type: ignore[assignment]
        try:
            transact(self, transact_items)
        finally:
            models.copy = copy  # type: ignore[assignment]

    transact_write_items.snapshots_once = True  # type: ignore[attr-defined]
    models.DynamoDBBackend.transact_write_items = transact_write_items  # type: ignore[method-assign]


def serve(ready_file: Path, host: str = HOST) -> None:
    """Run moto's WSGI app, one request at a time, on a port of the OS's choosing; write
    that port to ``ready_file`` (atomically) once listening."""
    from moto.moto_server.werkzeug_app import (
        DomainDispatcherApplication,
        MotoRequestHandler,
        create_backend_app,
    )
    from werkzeug.serving import make_server

    class Handler(MotoRequestHandler):
        timeout = REQUEST_READ_TIMEOUT_S  # socket timeout: a silent client is dropped

    snapshot_each_table_once()
    app = Serialised(DomainDispatcherApplication(create_backend_app))
    server = make_server(host, 0, app, threaded=True, request_handler=Handler)
    # the services moto builds URLs for (presigned URLs, redirects) read MOTO_PORT
    os.environ["MOTO_PORT"] = str(server.port)
    tmp = ready_file.with_name(ready_file.name + ".tmp")
    tmp.write_text(str(server.port))
    os.replace(tmp, ready_file)
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(0))
    try:
        server.serve_forever()
    finally:
        server.server_close()


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description="moto server, one request at a time")
    parser.add_argument("--ready-file", type=Path, required=True)
    parser.add_argument("--host", default=HOST)
    args = parser.parse_args(argv)
    serve(args.ready_file, args.host)


if __name__ == "__main__":
    main()
