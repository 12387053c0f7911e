"""Waiting for a condition: the one way tests wait (never a fixed sleep).

A test that sleeps "long enough" is slow when the machine is idle and flaky when it is busy;
polling the condition the test actually needs is neither. The timeout only bounds a failure.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import TypeVar

T = TypeVar("T")


def wait_until(
    condition: Callable[[], T],
    timeout: float,
    what: str | Callable[[], str],
    interval: float = 0.05,
) -> T:
    """Call ``condition`` until it returns something truthy, and return that.

    Fails with an AssertionError naming ``what`` (a string, or a callable describing the
    state at the time of the failure) when ``timeout`` seconds pass first. The condition is
    always tried once more at the deadline, so a slow condition is not cut short.
    """
    deadline = time.monotonic() + timeout
    while True:
        result = condition()
        if result:
            return result
        if time.monotonic() >= deadline:
            described = what() if callable(what) else what
            raise AssertionError(f"not within {timeout:g} s: {described}")
        time.sleep(interval)


def timed_wait_until(
    condition: Callable[[], object],
    timeout: float,
    what: str | Callable[[], str],
    interval: float = 0.05,
) -> float:
    """``wait_until``, returning how many seconds the condition took to hold."""
    t0 = time.monotonic()
    wait_until(condition, timeout, what, interval)
    return time.monotonic() - t0


def wait_for_value(
    get: Callable[[], T],
    accept: Callable[[T], bool],
    timeout: float,
    what: str,
    interval: float = 0.05,
) -> T:
    """Call ``get`` until ``accept`` takes its value; return that value. A failure names
    ``what`` and the last value seen."""
    last: list[T] = []

    def attempt() -> bool:
        last[:] = [get()]
        return accept(last[0])

    wait_until(attempt, timeout, lambda: f"{what}; last seen: {last[0] if last else None!r}",
               interval)  # fmt: skip
    return last[0]


async def wait_until_async(
    condition: Callable[[], object],
    timeout: float,
    what: str | Callable[[], str],
    interval: float = 0.01,
) -> None:
    """``wait_until`` inside an event loop: yields to it between tries."""
    import asyncio

    deadline = time.monotonic() + timeout
    while not condition():
        if time.monotonic() >= deadline:
            described = what() if callable(what) else what
            raise AssertionError(f"not within {timeout:g} s: {described}")
        await asyncio.sleep(interval)
