"""The one timer skeleton (broker_service/runtime/timers.py)."""

from __future__ import annotations

import asyncio

from broker_service.runtime.timers import Timers


def test_stop_lets_a_step_under_way_finish_and_starts_no_new_one() -> None:
    async def run() -> list[str]:
        events: list[str] = []
        entered = asyncio.Event()

        async def step() -> None:
            events.append("start")
            entered.set()
            await asyncio.sleep(0.05)  # a commit under way (simulated work)
            events.append("end")

        timers = Timers()
        timers.every("upload", 0.001, step)
        timers.start()
        await entered.wait()
        await timers.stop()
        return events

    events = asyncio.run(run())
    assert events[-1] == "end" and events.count("start") == events.count("end")


def test_a_failing_step_keeps_running_and_a_woken_timer_runs_early() -> None:
    async def run() -> tuple[int, int]:
        calls = {"bad": 0, "woken": 0}
        wake = asyncio.Event()

        async def bad() -> None:
            calls["bad"] += 1
            raise RuntimeError("dependency down")

        async def woken() -> None:
            calls["woken"] += 1

        timers = Timers()
        timers.every("bad", 0.001, bad)
        timers.every("refresh", 3600, woken, wake=wake)
        timers.start()
        while calls["bad"] < 5:
            await asyncio.sleep(0.001)
        wake.set()
        while calls["woken"] < 1:
            await asyncio.sleep(0.001)
        await timers.stop()
        return calls["bad"], calls["woken"]

    bad, woken = asyncio.run(run())
    assert bad >= 5 and woken == 1


def test_first_run_and_disabled_timers() -> None:
    async def run() -> list[str]:
        ran: list[str] = []

        async def step() -> None:
            ran.append("lease")

        async def never() -> None:
            ran.append("off")

        timers = Timers()
        timers.every("lease", 3600, step, first_s=0)
        timers.every("compaction", 0, never)  # 0: turned off
        timers.start()
        while not ran:
            await asyncio.sleep(0.001)
        await timers.stop()
        return ran

    assert asyncio.run(run()) == ["lease"]
