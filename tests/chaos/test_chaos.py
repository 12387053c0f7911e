"""The chaos lane: a 3-broker cluster on each backend, a random broker SIGKILLed and
restarted every cycle under an idempotent acks=all producer and a group consumer; then every
partition is read back (tests/chaos/harness.py says what is counted).

Bounded: ``CHAOS_CYCLES`` cycles per backend (default 20, the lane's minimum), a few
minutes each. Long runs: ``make chaos`` (bench/chaos.py, 100 cycles, ``CYCLES=N``). The
cloud backend runs on a moto server that handles one request at a time (moto's threaded
server loses DynamoDB writes under concurrency: issue 22.8).
"""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from tests.chaos.harness import TOPIC, ChaosConfig, run

CYCLES = int(os.environ.get("CHAOS_CYCLES", "20"))


@pytest.mark.chaos
@pytest.mark.slow
@pytest.mark.timeout(600 + 60 * CYCLES)
@pytest.mark.parametrize("backend", ["embedded", "cloud"])
def test_random_sigkills_lose_and_duplicate_nothing(tmp_path: Path, backend: str) -> None:
    result = run(ChaosConfig(backend=backend, workdir=tmp_path, cycles=CYCLES))
    print("\n" + result.summary())
    for e in result.unexpected_exits:
        print(f"broker {e['broker']} exited by itself (code {e['exit_code']})")
    assert result.cycles == CYCLES
    assert result.acked > 0
    trace = tmp_path / "group-consumer.log"
    group = result.examples.get("group_missed")
    if result.group_missed and trace.exists():  # librdkafka's trace, for the record
        lines = trace.read_text(errors="replace").splitlines(keepends=True)
        closed = next((i for i, ln in enumerate(lines) if "Closing consumer" in ln), len(lines))
        lines = lines[:closed]  # what it did while it should have been consuming
        # the group's state changes, then the last fetch lines of each partition it missed
        marks = ("CGRPJOINSTATE", "HEARTBEAT", "REBALANCE", "ASSIGN", "FETCHERR")
        print("".join([ln for ln in lines if any(m in ln for m in marks)
                       and "_PARTITION_EOF" not in ln][-40:]))  # fmt: skip
        for part in (group[0]["missed_by_partition"] if group else {}):
            tag = f"{TOPIC} [{part}]"
            skip = (" CONSUME ", " DUMP", " CGRPOP ", " OP ")  # per message or per close step
            print("".join([ln for ln in lines
                           if tag in ln and not any(k in ln for k in skip)][-25:]))  # fmt: skip
    # where the group consumer stood leads the message: pytest cuts a long repr
    assert not result.violations(), f"{result.violations()}; group consumer: {group}; " + str(
        result.examples
    )
    # every kill of a leader was followed by service again on each of its partitions
    unserved = [(k["cycle"], p) for k in result.kills for p in k["led"]
                if p not in k["unavailable_s"]]  # fmt: skip
    assert not unserved, unserved
