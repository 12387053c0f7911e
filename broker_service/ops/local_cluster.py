"""``python -m broker_service cluster --brokers N``: N broker processes on one machine
sharing one data directory (SQLite in WAL mode, one object directory, each broker's file WAL
side by side so a survivor can recover a dead broker's). Ctrl-C stops them all cleanly.

``--port 0``: every broker listens on a port of the OS's choosing and writes its ready file
(runtime/ready.py) to DATA_DIR/ready/broker-N.json; the bootstrap line is printed once all
of them serve."""

from __future__ import annotations

import argparse
import json
import os
import signal
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path


def run(args: argparse.Namespace) -> int:
    procs: list[subprocess.Popen[bytes]] = []
    stopping = False

    def stop(signum: int, frame: object) -> None:
        nonlocal stopping
        stopping = True

    signal.signal(signal.SIGINT, stop)
    signal.signal(signal.SIGTERM, stop)
    ready_dir = args.data_dir / "ready"
    for i in range(args.brokers):
        port = args.port + i if args.port else 0
        cmd = [
            sys.executable,
            "-m",
            "broker_service",
            "serve",
            "--host",
            args.host,
            "--port",
            str(port),
            "--data-dir",
            str(args.data_dir),
            "--node-id",
            str(i + 1),
        ]
        env = os.environ.copy()
        env["BROKER_METRICS_PORT"] = str(args.metrics_port + i if args.metrics_port else 0)
        if not args.port:
            (ready_dir / f"broker-{i + 1}.json").unlink(missing_ok=True)
            env["BROKER_READY_FILE"] = str(ready_dir / f"broker-{i + 1}.json")
        procs.append(subprocess.Popen(cmd, env=env))
        print(f"broker {i + 1}: {args.host}:{port} (pid {procs[-1].pid})", file=sys.stderr)
    try:
        ports = _ports(args, procs, ready_dir, lambda: stopping)
        print(
            f"bootstrap: {','.join(f'{args.host}:{p}' for p in ports)}"
            f"; data in {args.data_dir.resolve()}; Ctrl-C stops all",
            file=sys.stderr,
        )
        while not stopping and any(p.poll() is None for p in procs):
            time.sleep(0.2)
    finally:
        for p in procs:
            if p.poll() is None:
                p.send_signal(signal.SIGTERM)
        for p in procs:
            try:
                p.wait(20)
            except subprocess.TimeoutExpired:
                p.kill()
    return 0


def _ports(
    args: argparse.Namespace,
    procs: list[subprocess.Popen[bytes]],
    ready_dir: Path,
    stopping: Callable[[], bool],
) -> list[int]:
    """The brokers' ports: consecutive from --port, or (--port 0) from their ready files."""
    if args.port:
        return [args.port + i for i in range(args.brokers)]
    files = [ready_dir / f"broker-{i + 1}.json" for i in range(args.brokers)]
    while not all(f.exists() for f in files):
        if stopping() or any(p.poll() is not None for p in procs):
            return []
        time.sleep(0.05)
    return [int(json.loads(f.read_text())["port"]) for f in files]


def add_parser(sub: argparse._SubParsersAction) -> None:  # type: ignore[type-arg]
    c = sub.add_parser("cluster", help="run N brokers sharing one embedded data directory")
    c.add_argument("--brokers", type=int, default=3, help="how many brokers (default 3)")
    c.add_argument("--host", default="127.0.0.1", help="listen address (default 127.0.0.1)")
    c.add_argument(
        "--port", type=int, default=9092, help="first port (default 9092; 0: any free ports)"
    )
    c.add_argument("--data-dir", type=Path, default=Path("data"), help="shared data directory")
    c.add_argument(
        "--metrics-port",
        type=int,
        default=9464,
        help="first Prometheus /metrics port (default 9464; 0: off)",
    )
