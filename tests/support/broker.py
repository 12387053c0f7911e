"""Real broker processes for tests and benchmarks: start, stop (SIGTERM), kill (SIGKILL),
pause (SIGSTOP) and resume, alone or as a cluster on one shared data directory.

No free-port guess: a broker is started on port 0 (every listener, and /metrics on "auto")
with BROKER_READY_FILE set; it binds, registers the ports it got, and writes them to that
file once it serves (broker_service/runtime/ready.py). Starting means waiting for the file.
A restart keeps the ports of the first start: a restarted broker is at the same address,
as clients holding a bootstrap list expect. (Between a stop and the restart another process
could in principle take that port; the restart then fails with the bind error in the log.)
"""

from __future__ import annotations

import json
import os
import re
import signal
import socket
import subprocess
import sys
from collections.abc import Iterable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from tests.support.wait import wait_until

REPO = Path(__file__).resolve().parents[2]
HOST = "127.0.0.1"
START_TIMEOUT = 60.0  # seconds: Python start-up + boot, on a loaded 2-core machine


def free_port() -> int:
    """A port nothing listens on right now. Only for what cannot bind port 0 itself (a
    third-party server, or a test that needs a port where nothing listens); it races with
    every other process on the host, so never use it for our broker or moto."""
    with socket.socket() as s:
        s.bind((HOST, 0))
        return int(s.getsockname()[1])


_LISTENER = re.compile(r"(?P<name>[A-Z_]+)://(?P<host>\[[^\]]*\]|[^:,]*):(?P<port>\d+)")


class BrokerProcess:
    """One broker process (``python -m broker_service serve``).

    ``data_dir`` is its --data-dir (shared by a cluster's brokers); ``env`` are BROKER_*
    (and AWS_*) settings. Without ``port`` it listens on port 0; BROKER_LISTENERS may name
    port 0 too (``SASL_SSL://127.0.0.1:0,...``): ``ports`` then holds what each got.
    """

    def __init__(self, data_dir: Path, port: int | None = None, **env: str) -> None:
        self.data_dir = data_dir
        self.node_id = int(env.get("BROKER_NODE_ID", "1"))
        self.env = dict(env)
        self.env.setdefault("BROKER_METRICS_PORT", "auto")
        self.port = port or 0
        self.ports: dict[str, int] = {}  # listener name -> bound port (after start)
        self.metrics_port: int | None = None
        self.proc: subprocess.Popen[bytes] | None = None
        stem = f"{data_dir.name}-broker-{self.node_id}"
        self.log_path = data_dir.parent / f"{stem}.log"
        self.ready_path = data_dir.parent / f".{stem}.ready"
        self.info: dict[str, Any] = {}

    # -- addresses ---------------------------------------------------------------------
    @property
    def bootstrap(self) -> str:
        return f"{HOST}:{self.port}"

    @property
    def metrics_url(self) -> str:
        assert self.metrics_port, "this broker serves no /metrics"
        return f"http://{HOST}:{self.metrics_port}/metrics"

    def listener(self, name: str) -> str:
        """host:port of one listener (PLAINTEXT, SSL, SASL_PLAINTEXT, SASL_SSL)."""
        return f"{HOST}:{self.ports[name]}"

    # -- life cycle ----------------------------------------------------------------------
    def launch(self) -> None:
        """Start the process; ``wait_ready`` waits for it to serve (``start`` does both)."""
        assert not self.alive(), "already running"
        self.ready_path.unlink(missing_ok=True)
        env = {**os.environ, "PYTHONPATH": str(REPO), **self._start_env(),
               "BROKER_READY_FILE": str(self.ready_path)}  # fmt: skip
        cmd = [sys.executable, "-m", "broker_service", "serve", "--host", HOST,
               "--port", str(self.port), "--data-dir", str(self.data_dir)]  # fmt: skip
        with open(self.log_path, "ab") as log:
            self.proc = subprocess.Popen(cmd, stdout=log, stderr=subprocess.STDOUT, env=env,
                                         cwd=REPO)  # fmt: skip

    def wait_ready(self, timeout: float = START_TIMEOUT) -> BrokerProcess:
        proc = self.proc
        assert proc is not None

        def ready() -> bool:
            if proc.poll() is not None:
                raise RuntimeError(f"broker exited early ({proc.returncode}):\n{self.log()}")
            return self.ready_path.exists()

        wait_until(ready, timeout, lambda: f"broker ready file\n{self.log()}", interval=0.02)
        self.info = json.loads(self.ready_path.read_text())
        self.port = int(self.info["port"])
        self.ports = {n: int(lst["port"]) for n, lst in self.info["listeners"].items()}
        self.metrics_port = self.info["metrics_port"]
        return self

    def start(self, timeout: float = START_TIMEOUT) -> BrokerProcess:
        self.launch()
        return self.wait_ready(timeout)

    def stop(self, timeout: float = 30.0) -> int | None:
        """Graceful stop (SIGTERM, as ECS and Ctrl-C do); returns the exit code."""
        if self.proc is None:
            return None
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGCONT)  # a paused broker cannot handle SIGTERM
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(timeout)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        code = self.proc.returncode
        self.proc = None
        return code

    def kill(self) -> None:
        """SIGKILL: no flush, no upload, no goodbye."""
        if self.proc is not None and self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait()
        self.proc = None

    def pause(self) -> None:
        """SIGSTOP: frozen (a GC pause, a stalled VM); ``resume`` continues it."""
        assert self.proc is not None
        self.proc.send_signal(signal.SIGSTOP)

    def resume(self) -> None:
        assert self.proc is not None
        self.proc.send_signal(signal.SIGCONT)

    def wait_exit(self, timeout: float) -> int:
        """Wait for the process to end by itself (fenced: 3); returns its exit code."""
        assert self.proc is not None
        return self.proc.wait(timeout)

    def alive(self) -> bool:
        return self.proc is not None and self.proc.poll() is None

    def log(self, tail: int = 5000) -> str:
        try:
            return self.log_path.read_text(errors="replace")[-tail:]
        except FileNotFoundError:
            return ""

    # -- restarts keep the address ----------------------------------------------------------
    def _start_env(self) -> dict[str, str]:
        env = dict(self.env)
        if self.ports and env.get("BROKER_LISTENERS"):
            def bound(m: re.Match[str]) -> str:
                port = m["port"] if m["port"] != "0" else str(self.ports.get(m["name"], 0))
                return f"{m['name']}://{m['host']}:{port}"

            env["BROKER_LISTENERS"] = _LISTENER.sub(bound, env["BROKER_LISTENERS"])
        if self.metrics_port and env.get("BROKER_METRICS_PORT") == "auto":
            env["BROKER_METRICS_PORT"] = str(self.metrics_port)
        return env


def start_all(brokers: Iterable[BrokerProcess], timeout: float = START_TIMEOUT,
              formed: bool = True) -> list[BrokerProcess]:  # fmt: skip
    """Start brokers side by side (each boot is mostly Python start-up): launch all, then
    wait for each. With ``formed``, also until each one lists all of them as live (a broker
    learns of the others on its membership refresh, a third of a lease: started one after
    the other, later brokers saw the earlier ones at once). Kills them all if one fails."""
    brokers = list(brokers)
    try:
        for b in brokers:
            b.launch()
        for b in brokers:
            b.wait_ready(timeout)
        if formed and len(brokers) > 1:
            wait_formed(brokers, timeout)
    except BaseException:
        for b in brokers:
            b.kill()
        raise
    return brokers


def live_node_ids(b: BrokerProcess) -> set[int]:
    """The brokers ``b`` lists in Metadata (its PLAINTEXT listener)."""
    from tests import kafka_wire as w

    with w.WireClient(b.ports.get("PLAINTEXT", b.port)) as c:
        return {int(x.node_id) for x in c.call(w.metadata_request(12)).brokers}


def wait_formed(brokers: list[BrokerProcess], timeout: float = START_TIMEOUT) -> None:
    """Until every broker lists every one of ``brokers`` (those with a PLAINTEXT listener
    are asked; SASL-only brokers would need credentials)."""
    want = {b.node_id for b in brokers}
    for b in brokers:
        if "PLAINTEXT" in b.ports:
            wait_until(lambda b=b: want <= live_node_ids(b), timeout,
                       lambda b=b: f"broker {b.node_id} lists {live_node_ids(b)}, not {want}")


def stop_all(brokers: Iterable[BrokerProcess]) -> None:
    """Stop brokers one after the other (each drains to the ones still running)."""
    for b in brokers:
        b.stop()


def cluster(data_dir: Path, n: int, **env: str) -> list[BrokerProcess]:
    """n brokers (node ids 1..n) on one shared data directory, not started yet."""
    return [BrokerProcess(data_dir, BROKER_NODE_ID=str(i + 1), **env) for i in range(n)]


@contextmanager
def running(*brokers: BrokerProcess) -> Iterator[list[BrokerProcess]]:
    """Start brokers side by side; stop them all at the end, whatever happened."""
    try:
        yield start_all(brokers)
    finally:
        stop_all(brokers)
