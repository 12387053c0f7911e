#!/usr/bin/env python3
"""Kill loop: a 3-broker cluster under an idempotent producer and a group consumer, a random
broker SIGKILLed and restarted every cycle, then every partition read back and verified.

The harness is tests/chaos/harness.py (the `chaos` test lane runs it with 20 cycles); this
script runs it for as long as asked and prints the figures: acked, lost, duplicated, out of
order, offset conflicts, unavailability per kill (p50/max) next to the lease, and how loaded
the machine was.

    .venv/bin/python bench/chaos.py --backend embedded,cloud --cycles 100     # = make chaos
    .venv/bin/python bench/chaos.py --backend cloud --cycles 20 --seed 7
    .venv/bin/python bench/chaos.py --faults 0.05,0.2 --phase-s 20   # degraded S3/DynamoDB

``--faults``: no kills; the cloud cluster reaches S3 and DynamoDB through a fault proxy that
fails that share of ALL requests (503 not applied, 500 after applying, 2 s before forwarding,
answered 2 s late) for ``--phase-s`` seconds between two clean phases: acked/s and ack
latency p50/p99 before, during and after, then the same verification.

Exit code 1 if any count that must be 0 is not.
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

from tests.chaos.harness import ChaosConfig, run, run_fault_phases  # noqa: E402


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=(__doc__ or "").split("\n\n")[0])
    ap.add_argument("--backend", default="embedded,cloud",
                    help="embedded, cloud, or both as embedded,cloud (the default)")
    ap.add_argument("--cycles", type=int, default=100)
    ap.add_argument("--lease-ms", type=int, default=4000)
    ap.add_argument("--rate", type=int, default=800, help="records/s over all partitions")
    ap.add_argument("--partitions", type=int, default=4)
    ap.add_argument("--seed", type=int, default=1)
    ap.add_argument("--victims", choices=("leaders", "any"), default="leaders")
    ap.add_argument("--message-timeout-ms", type=int, default=120_000)
    ap.add_argument("--request-timeout-ms", type=int, default=30_000)
    ap.add_argument("--faults", help="fault rates (e.g. 0.05,0.2): fault phases, no kills")
    ap.add_argument("--phase-s", type=float, default=20.0, help="--faults: seconds per phase")
    ap.add_argument("--out", type=Path, help="write the results as JSON here")
    ap.add_argument("--keep-data", action="store_true", help="keep the brokers' data and logs")
    args = ap.parse_args(argv)
    if args.faults:
        return faults(args)
    results = []
    backends = [b.strip() for b in args.backend.split(",") if b.strip()]
    if unknown := [b for b in backends if b not in ("embedded", "cloud")]:
        ap.error(f"unknown backend {', '.join(unknown)}: embedded, cloud or embedded,cloud")
    for backend in backends:
        work = Path(tempfile.mkdtemp(prefix=f"chaos-{backend}-"))
        cfg = ChaosConfig(
            backend=backend, workdir=work, cycles=args.cycles, lease_ms=args.lease_ms,
            rate=args.rate, partitions=args.partitions, seed=args.seed, victims=args.victims,
            message_timeout_ms=args.message_timeout_ms,
            request_timeout_ms=args.request_timeout_ms,
        )  # fmt: skip
        result = run(cfg)
        results.append(result)
        print(result.summary(), flush=True)
        if result.violations():
            print(f"  VIOLATIONS {result.violations()}; examples {result.examples}")
        for e in result.unexpected_exits:
            print(f"  broker {e['broker']} exited by itself: code {e['exit_code']}")
        keep = args.keep_data or bool(result.violations()) or bool(result.unexpected_exits)
        print(f"  data and logs in {work}" if keep else "")
        if not keep:  # a run that lost data or whose broker stopped itself keeps its logs
            import shutil

            shutil.rmtree(work, ignore_errors=True)
    if args.out:
        args.out.parent.mkdir(parents=True, exist_ok=True)
        args.out.write_text("[" + ",\n".join(r.to_json() for r in results) + "]\n")
    print(time.strftime("%Y-%m-%d %H:%M:%S"), "done")
    return 1 if any(r.violations() for r in results) else 0


def faults(args: argparse.Namespace) -> int:
    bad = False
    for rate in [float(r) for r in args.faults.split(",")]:
        work = Path(tempfile.mkdtemp(prefix="chaos-faults-"))
        cfg = ChaosConfig(
            backend="cloud", workdir=work, cycles=0, lease_ms=args.lease_ms, rate=args.rate,
            partitions=args.partitions, seed=args.seed,
            message_timeout_ms=args.message_timeout_ms,
            request_timeout_ms=args.request_timeout_ms,
        )  # fmt: skip
        result, phases = run_fault_phases(cfg, rate, args.phase_s)
        print(f"faults on {rate:.0%} of S3 + DynamoDB requests ({args.rate} records/s offered):")
        for ph in phases:
            print(f"  {ph.name:7s} {ph.seconds:5.1f}s  sent {ph.sent:7d}  acked/s "
                  f"{ph.acked_per_s:8.1f}  p50 {ph.p50_ms:8.1f} ms  p99 {ph.p99_ms:8.1f} ms"
                  f"  injected {ph.injected}")  # fmt: skip
        print("  " + result.summary())
        if result.violations():
            bad = True
            print(f"  VIOLATIONS {result.violations()}; examples {result.examples}")
            print(f"  data and logs in {work}")
    return 1 if bad else 0


def _stop_on_sigterm() -> None:
    """SIGTERM (a job killed, a CI timeout) stops the run the way Ctrl-C does, so the
    harness's ``finally`` stops the brokers and the moto server it started: they were left
    running, orphaned, still writing to each other."""
    import signal

    def stop(signum: int, frame: object) -> None:
        raise KeyboardInterrupt(f"signal {signum}")

    signal.signal(signal.SIGTERM, stop)


if __name__ == "__main__":
    _stop_on_sigterm()
    sys.exit(main())
