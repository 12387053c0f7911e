"""The EMF timer's boundaries (broker_service/runtime/timers.py): wall-clock multiples of the
interval, so each broker puts exactly one datapoint in each CloudWatch minute."""

from __future__ import annotations

import pytest

from broker_service.runtime.timers import next_boundary_s


@pytest.mark.parametrize(
    ("now", "interval", "boundary"),
    [(125.3, 60.0, 180.0), (120.0, 60.0, 180.0), (179.999, 60.0, 180.0), (10.2, 0.5, 10.5)],
)
def test_next_boundary_is_the_next_multiple_of_the_interval(
    now: float, interval: float, boundary: float
) -> None:
    assert next_boundary_s(now, interval) == pytest.approx(boundary)


def test_boundaries_of_drifting_wakeups_fall_in_distinct_minutes() -> None:
    """A timer that sleeps 60 s plus the work it did drifts: over a day it skips minutes.
    Boundaries computed from each (late) wake-up still land once in every minute."""
    now, minutes = 1_000_000.0, []
    for _ in range(1440):
        b = next_boundary_s(now, 60.0)
        minutes.append(int(b // 60))
        now = b + 0.35  # woke up late and worked 0.35 s
    assert minutes == list(range(minutes[0], minutes[0] + 1440))


@pytest.mark.parametrize("loop", ["asyncio", "uvloop"])
def test_an_aligned_timer_runs_once_per_boundary_even_when_woken_early(loop: str) -> None:
    """uvloop rounds a timer's delay to whole milliseconds, so a wait for the next boundary
    can end up to 1 ms before it; the timer must then not run a second time for the same
    boundary (each run of the metrics timer is a CloudWatch datapoint: two consumer-lag
    datapoints in one period double the lag the alarm sums)."""
    import asyncio
    import time

    from broker_service.runtime.timers import Timers

    factory = None
    if loop == "uvloop":
        import uvloop  # a runtime dependency on Linux

        factory = uvloop.new_event_loop
    interval = 0.01
    runs: list[float] = []
    started: list[float] = []

    async def main() -> None:
        done = asyncio.Event()

        async def step() -> None:
            runs.append(time.time())
            if len(runs) >= 30:
                done.set()

        timers = Timers()
        timers.every("emf", interval, step, aligned=True)
        started.append(time.time())
        timers.start()
        await asyncio.wait_for(done.wait(), 30)
        await timers.stop()

    with asyncio.Runner(loop_factory=factory) as runner:
        runner.run(main())
    # 30 runs for 30 distinct boundaries take at least 29 intervals after the start (a run
    # may wake up to 1 ms early, and late on a busy host, which only lengthens the span);
    # runs repeating a boundary come faster
    span = runs[-1] - started[0]
    assert span >= (len(runs) - 1) * interval - 0.002, f"{len(runs)} runs in {span * 1000:.1f} ms"
