"""Every timer of the broker, in one place: what runs in the background, how often, and the
one loop skeleton they share (wait, run the step, log a failure and carry on).

The components only expose steps (``StreamStore.upload_step``, ``Membership.renew``...);
``Broker._timers`` says which run when. The control functions run here too, so a laptop
cluster runs itself: only the controller (lowest live broker id, the same answer on every
broker) balances; the autoscaler only logs its decision (no ECS here).
"""

from __future__ import annotations

import asyncio
import logging
import math
import random
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field

log = logging.getLogger(__name__)

Step = Callable[[], Awaitable[object]]


@dataclass(eq=False)
class Timer:
    name: str
    interval_s: float
    step: Step
    jitter: float = 0.0  # brokers drift apart: +-jitter of the interval
    wake: asyncio.Event | None = None  # runs early when set
    active: Callable[[], bool] = field(default=lambda: True)
    first_s: float | None = None  # the first run after this long (default: one interval)
    aligned: bool = False  # run at wall-clock multiples of the interval (metrics periods)
    failures: int = 0


def next_boundary_s(now_s: float, interval_s: float) -> float:
    """The next wall-clock multiple of the interval. Aligned timers run there: with the 60 s
    metrics interval each broker then has exactly one datapoint per CloudWatch minute (a SUM
    over brokers' gauges in a period, as the consumer lag alarm takes, counts each broker
    once), where a free-running timer drifts and sometimes puts two or none in a minute."""
    return (math.floor(now_s / interval_s) + 1) * interval_s


class Timers:
    def __init__(self) -> None:
        self._timers: list[Timer] = []
        self._tasks: list[asyncio.Task[None]] = []
        self._stopping = asyncio.Event()

    def every(
        self,
        name: str,
        interval_s: float,
        step: Step,
        *,
        jitter: float = 0.0,
        wake: asyncio.Event | None = None,
        active: Callable[[], bool] | None = None,
        first_s: float | None = None,
        aligned: bool = False,
    ) -> None:
        if interval_s <= 0:
            return  # a knob set to 0 turns its timer off
        always = active or (lambda: True)
        timer = Timer(name, interval_s, step, jitter, wake, always, first_s, aligned)
        self._timers.append(timer)

    def start(self) -> None:
        loop = asyncio.get_running_loop()
        self._tasks = [loop.create_task(self._run(t), name=t.name) for t in self._timers]

    async def stop(self, grace_s: float = 10.0) -> None:
        """Let every step under way finish (an upload cancelled between its PUT and its
        commit would be done again by the final upload), start no new one, then stop."""
        self._stopping.set()
        if self._tasks:
            _, late = await asyncio.wait(self._tasks, timeout=grace_s)
            for t in late:
                log.warning("%s did not finish within %.0f s of stopping", t.get_name(), grace_s)
                t.cancel()
            await asyncio.gather(*late, return_exceptions=True)
        self._tasks = []

    @property
    def names(self) -> list[str]:
        return [t.name for t in self._timers]

    async def _run(self, t: Timer) -> None:
        first = True
        last_boundary = -math.inf  # aligned timers: the boundary of the last run
        while True:
            delay = t.interval_s * (random.uniform(1 - t.jitter, 1 + t.jitter) if t.jitter else 1)
            if first and t.first_s is not None:
                delay = t.first_s
            elif t.aligned:
                # A wait can end a little before its boundary (uvloop rounds delays to whole
                # ms): the next run is for the boundary after the last one run, never the same.
                now = time.time()
                boundary = next_boundary_s(max(now, last_boundary + t.interval_s / 2),
                                           t.interval_s)  # fmt: skip
                last_boundary = boundary
                delay = boundary - now
            first = False
            waits = [self._stopping.wait()] + ([t.wake.wait()] if t.wake is not None else [])
            waiting = [asyncio.ensure_future(w) for w in waits]
            await asyncio.wait(waiting, timeout=delay, return_when=asyncio.FIRST_COMPLETED)
            for w in waiting:
                w.cancel()
            if self._stopping.is_set():
                return
            if t.wake is not None:
                t.wake.clear()
            if not t.active():
                continue
            started = time.monotonic()
            try:
                await t.step()
            except Exception:
                t.failures += 1
                # the first failure with its trace, then one line per 100 (a broken
                # dependency must not flood the log)
                if t.failures == 1:
                    log.exception("%s failed; will retry", t.name)
                elif t.failures % 100 == 0:
                    log.warning("%s failed %d times in a row; still retrying", t.name, t.failures)
                continue
            if t.failures:
                log.info("%s works again after %d failures", t.name, t.failures)
                t.failures = 0
            took = time.monotonic() - started
            if took > max(5.0, 10 * t.interval_s):
                log.warning("%s took %.1f s", t.name, took)
