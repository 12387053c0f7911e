"""A slow metadata store stalls nobody who does not need it (issue 15 item 3).

Our broker runs with and without ``BROKER_FAULT_METADATA_LATENCY_MS`` (every metadata call
+50-150 ms, as Tansu's latency decorator does), on the file WAL (the metadata store is off
the produce path: only uploads and leases use it) and on the object WAL (every group commit
is a metadata commit). Under a steady acks=all idempotent produce load it measures:

- the producer's ack latency (p50/p99/max),
- an unrelated client's ApiVersions round trip on its own connection, every 20 ms
  (p50/p99/max): the event loop's responsiveness while metadata calls are slow.

    .venv/bin/python bench/slow_metadata.py                 # ~1 min
    .venv/bin/python bench/slow_metadata.py --seconds 10 --latency-ms 50-150
"""

from __future__ import annotations

import argparse
import json
import os
import socket
import struct
import sys
import tempfile
import threading
import time
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))
from produce_consume import (  # noqa: E402
    HOST,
    RESULTS_DIR,
    Deadline,
    add_run_options,
    create_topic,
    ours_broker,
    percentile,
    steady_produce,
)

WALS = ("file", "object")


def _api_versions_rtts(port: int, stop: threading.Event, out: list[float]) -> None:
    """ApiVersions v0 round trips every 20 ms on one connection, until ``stop``."""
    client_id = b"bench-probe"
    with socket.create_connection((HOST, port), timeout=30) as s:
        cid = 0
        while not stop.is_set():
            cid += 1
            body = struct.pack(">hhih", 18, 0, cid, len(client_id)) + client_id
            t0 = time.perf_counter()
            s.sendall(struct.pack(">i", len(body)) + body)
            size = struct.unpack(">i", _recv(s, 4))[0]
            _recv(s, size)
            out.append((time.perf_counter() - t0) * 1000)
            stop.wait(0.02)


def _recv(s: socket.socket, n: int) -> bytes:
    buf = bytearray()
    while len(buf) < n:
        chunk = s.recv(n - len(buf))
        if not chunk:
            raise ConnectionError("the broker closed the probe's connection")
        buf += chunk
    return bytes(buf)


def _summary(values: list[float]) -> dict[str, float | None]:
    v = sorted(values)
    return {"n": len(v), "p50_ms": percentile(v, 0.5), "p99_ms": percentile(v, 0.99),
            "max_ms": v[-1] if v else None}  # fmt: skip


def run_one(workdir: Path, wal: str, latency: str | None, rate: int, seconds: float,
            deadline: Deadline) -> dict[str, Any]:  # fmt: skip
    tag = f"{wal}-{'slow' if latency else 'fast'}"
    broker = ours_broker(workdir, tag)
    assert broker.env is not None
    broker.env.update({"BROKER_WAL": wal, "BROKER_FAULT_METADATA_SEED": "7"})
    if latency:
        broker.env["BROKER_FAULT_METADATA_LATENCY_MS"] = latency
    broker.start(deadline)
    try:
        create_topic(broker.bootstrap, "slow-md", 1, deadline)
        conf = {"acks": "all", "enable.idempotence": True, "linger.ms": 5}
        steady_produce(broker.bootstrap, "slow-md", rate, 1.0, conf, deadline)  # warm-up
        rtts: list[float] = []
        stop = threading.Event()
        probe = threading.Thread(target=_api_versions_rtts, args=(broker.port, stop, rtts))
        probe.start()
        try:
            load = steady_produce(broker.bootstrap, "slow-md", rate, seconds, conf, deadline)
        finally:
            stop.set()
            probe.join(30)
        broker.assert_alive("measuring")
        return {"wal": wal, "metadata_latency_ms": latency or "0", "records": load.sent,
                "ack": _summary(load.callback_ms), "api_versions_rtt": _summary(rtts)}  # fmt: skip
    finally:
        broker.stop()


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--latency-ms", default="50-150", help="the injected range (50-150)")
    ap.add_argument("--rate", type=int, default=500, help="records/s (1 KiB each)")
    ap.add_argument("--seconds", type=float, default=8.0, help="load per run")
    ap.add_argument("--wals", default=",".join(WALS), help="file,object")
    add_run_options(ap, "slow_metadata", 300)
    return ap.parse_args(argv)


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    deadline = Deadline(args.timeout)
    out = args.out or RESULTS_DIR / f"slow_metadata-{time.strftime('%Y%m%d-%H%M%S')}.json"
    rows = []
    with tempfile.TemporaryDirectory(prefix="bench-slowmd-") as tmp:
        workdir = Path(tmp)
        for wal in args.wals.split(","):
            for latency in (None, args.latency_ms):
                rows.append(run_one(workdir, wal, latency, args.rate, args.seconds, deadline))
                r = rows[-1]
                print(f"{wal:6} metadata +{r['metadata_latency_ms']:>6} ms: "
                      f"ack p50/p99/max {_fmt(r['ack'])} ms; ApiVersions RTT "
                      f"p50/p99/max {_fmt(r['api_versions_rtt'])} ms", flush=True)  # fmt: skip
        if args.keep_data:
            os.system(f"cp -r {tmp} {out.with_suffix('.data')}")  # noqa: S605 - bench only
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps({"load_avg": os.getloadavg(), "runs": rows}, indent=1))
    print(f"wrote {out}")
    return 0


def _fmt(s: dict[str, float | None]) -> str:
    return "/".join("-" if s[k] is None else f"{s[k]:.1f}" for k in ("p50_ms", "p99_ms", "max_ms"))


if __name__ == "__main__":
    sys.exit(main())
