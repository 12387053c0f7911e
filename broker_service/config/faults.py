"""Fault plans for tests and chaos runs: latency and ambiguous errors around backend calls.

Test/chaos knobs, off unless set. ``metadata/latency.py`` wraps the metadata store and
``stream/objectstore/latency.py`` the object store with a plan read from the environment
where a broker builds its backends (``runtime/backends.py``); ``<KIND>`` is ``METADATA`` or
``OBJECTS``:

- ``BROKER_FAULT_<KIND>_LATENCY_MS``: delay of a chosen call, ``"lo-hi"`` (uniform) or ``"ms"``;
- ``BROKER_FAULT_<KIND>_OPS``: comma-separated operations (method names); default every one;
- ``BROKER_FAULT_<KIND>_P``: fraction of the calls of those operations delayed (default 1);
- ``BROKER_FAULT_<KIND>_WHEN``: sleep ``before`` (default), ``after`` or ``both`` around the
  real call;
- ``BROKER_FAULT_<KIND>_ERROR_P``: fraction of the calls that raise ``InjectedFault`` *after*
  the real call applied (an ambiguous outcome: done, but the caller hears an error);
  default 0;
- ``BROKER_FAULT_<KIND>_SEED``: seed of the decisions, for a repeatable run.

A plan is active when ``LATENCY_MS`` or ``ERROR_P`` is set. Tansu's test harness does the
same (every metadata call +50-150 ms) to shake out code that assumes a fast store.
"""

from __future__ import annotations

import os
import random
import threading
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Literal

When = Literal["before", "after", "both"]


class InjectedFault(ConnectionError):
    """Raised by a fault plan after the real call applied: the outcome is ambiguous to the
    caller, as when a response is lost (it looks like a transport error)."""


@dataclass(frozen=True, slots=True)
class FaultPlan:
    lo_ms: float = 0.0
    hi_ms: float = 0.0
    ops: frozenset[str] | None = None  # None: every operation
    p: float = 1.0
    when: When = "before"
    error_p: float = 0.0
    seed: int | None = None

    def __post_init__(self) -> None:
        if not 0 <= self.lo_ms <= self.hi_ms:
            raise ValueError(f"latency range {self.lo_ms}-{self.hi_ms} ms")
        if not (0 <= self.p <= 1 and 0 <= self.error_p <= 1):
            raise ValueError(f"fractions must be in [0, 1]: p={self.p} error_p={self.error_p}")
        if self.when not in ("before", "after", "both"):
            raise ValueError(f"when must be before, after or both, not {self.when!r}")

    def check_ops(self, known: Iterable[str]) -> None:
        """Refuse operation names the wrapped interface does not have (a typo would
        otherwise silently inject nothing)."""
        unknown = sorted((self.ops or frozenset()) - set(known))
        if unknown:
            raise ValueError(f"unknown operations in the fault plan: {', '.join(unknown)}")

    @classmethod
    def from_env(cls, kind: str, env: Mapping[str, str] | None = None) -> FaultPlan | None:
        """The plan ``BROKER_FAULT_<kind>_*`` describes, or None when none is set."""
        env = os.environ if env is None else env
        prefix = f"BROKER_FAULT_{kind.upper()}_"

        def get(name: str) -> str | None:
            value = env.get(prefix + name, "").strip()
            return value or None

        latency, error_p = get("LATENCY_MS"), get("ERROR_P")
        if latency is None and error_p is None:
            return None
        lo = hi = 0.0
        if latency is not None:
            lo_s, _, hi_s = latency.partition("-")
            lo = float(lo_s)
            hi = float(hi_s) if hi_s else lo
        ops = get("OPS")
        seed = get("SEED")
        when = get("WHEN") or "before"
        if when not in ("before", "after", "both"):
            raise ValueError(f"{prefix}WHEN must be before, after or both, not {when!r}")
        return cls(
            lo_ms=lo,
            hi_ms=hi,
            ops=frozenset(o.strip() for o in ops.split(",") if o.strip()) if ops else None,
            p=float(get("P") or 1),
            when=when,  # type: ignore[arg-type]  # checked above
            error_p=float(error_p or 0),
            seed=int(seed) if seed is not None else None,
        )


@dataclass(frozen=True, slots=True)
class Decision:
    """What happens around one call: sleep before, sleep after (seconds), then fail?"""

    before_s: float = 0.0
    after_s: float = 0.0
    fail: bool = False


NOTHING = Decision()


class FaultDice:
    """The plan's decisions, drawn from one seeded generator (thread-safe: store calls run on
    several threads; with a seed, the sequence of decisions is repeatable)."""

    def __init__(self, plan: FaultPlan) -> None:
        self.plan = plan
        self._rng = random.Random(plan.seed)
        self._lock = threading.Lock()

    def decide(self, op: str) -> Decision:
        plan = self.plan
        if plan.ops is not None and op not in plan.ops:
            return NOTHING
        with self._lock:
            delayed = plan.hi_ms > 0 and self._rng.random() < plan.p
            before = self._rng.uniform(plan.lo_ms, plan.hi_ms) if delayed else 0.0
            after = self._rng.uniform(plan.lo_ms, plan.hi_ms) if delayed else 0.0
            fail = plan.error_p > 0 and self._rng.random() < plan.error_p
        return Decision(
            before / 1000 if plan.when in ("before", "both") else 0.0,
            after / 1000 if plan.when in ("after", "both") else 0.0,
            fail,
        )
