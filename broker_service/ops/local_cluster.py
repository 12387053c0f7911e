"""``python -m broker_service cluster --brokers N``: N broker processes on one machine
sharing one data directory (SQLite in WAL mode, one object directory, each broker's file WAL
side by side so a survivor can recover a dead broker's). Ctrl-C stops them all cleanly."""

from __future__ import annotations

import argparse
import os
import signal
import subprocess
import sys
import time
from pathlib import Path


def run(args: argparse.Namespace) -> int:
    procs: list[subprocess.Popen[bytes]] = []
    stopping = False

    def stop(signum: int, frame: object) -> None:
        nonlocal stopping
        stopping = True

    signal.signal(signal.SIGINT, stop)
    signal.signal(signal.SIGTERM, stop)
    for i in range(args.brokers):
        port = args.port + i
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
        procs.append(subprocess.Popen(cmd, env=env))
        print(f"broker {i + 1}: {args.host}:{port} (pid {procs[-1].pid})", file=sys.stderr)
    print(
        f"bootstrap: {','.join(f'{args.host}:{args.port + i}' for i in range(args.brokers))}"
        f"; data in {args.data_dir.resolve()}; Ctrl-C stops all",
        file=sys.stderr,
    )
    try:
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


def add_parser(sub: argparse._SubParsersAction) -> None:  # type: ignore[type-arg]
    c = sub.add_parser("cluster", help="run N brokers sharing one embedded data directory")
    c.add_argument("--brokers", type=int, default=3, help="how many brokers (default 3)")
    c.add_argument("--host", default="127.0.0.1", help="listen address (default 127.0.0.1)")
    c.add_argument("--port", type=int, default=9092, help="first port (default 9092)")
    c.add_argument("--data-dir", type=Path, default=Path("data"), help="shared data directory")
    c.add_argument(
        "--metrics-port",
        type=int,
        default=9464,
        help="first Prometheus /metrics port (default 9464; 0: off)",
    )
