"""An object store that is slow or ambiguous on purpose (tests and chaos runs only).

``with_faults(store, plan)`` wraps an async ``ObjectStore``: each call of an operation the
plan names (``put``, ``get``, ``delete``, ``list``) awaits a random delay before and/or after
the real call, and may raise ``InjectedFault`` after the real call applied (a PUT that
landed but whose answer was lost). The plan and its ``BROKER_FAULT_OBJECTS_*`` settings are
in ``broker_service/faults.py``.
"""

from __future__ import annotations

import asyncio
import builtins
from collections.abc import Awaitable, Callable, Sequence
from typing import Any, TypeVar

from broker_service.config.faults import FaultDice, FaultPlan, InjectedFault
from broker_service.stream.objectstore.base import Buffer, ObjectStore

T = TypeVar("T")
OPERATIONS = frozenset({"put", "get", "delete", "list"})


class FaultyObjectStore(ObjectStore):
    def __init__(
        self,
        inner: ObjectStore,
        plan: FaultPlan,
        sleep: Callable[[float], Awaitable[None]] = asyncio.sleep,
    ) -> None:
        plan.check_ops(OPERATIONS)
        self.inner = inner
        self.plan = plan
        self.dice = FaultDice(plan)
        self._sleep = sleep

    async def _around(self, op: str, call: Callable[[], Awaitable[T]]) -> T:
        d = self.dice.decide(op)
        if d.before_s:
            await self._sleep(d.before_s)
        result = await call()
        if d.after_s:
            await self._sleep(d.after_s)
        if d.fail:
            raise InjectedFault(f"injected fault after {op} applied")
        return result

    async def put(self, key: str, parts: Sequence[Buffer]) -> None:
        await self._around("put", lambda: self.inner.put(key, parts))

    async def get(self, key: str, start: int = 0, end: int | None = None) -> bytes:
        return await self._around("get", lambda: self.inner.get(key, start, end))

    async def delete(self, key: str) -> None:
        await self._around("delete", lambda: self.inner.delete(key))

    async def list(self, prefix: str = "") -> list[str]:
        return await self._around("list", lambda: self.inner.list(prefix))

    async def list_tops(self) -> builtins.list[str]:
        return await self._around("list", self.inner.list_tops)

    def close(self) -> None:
        self.inner.close()

    def __getattr__(self, name: str) -> Any:  # root, bucket... of the inner store
        return getattr(self.inner, name)


def with_faults(store: ObjectStore, plan: FaultPlan | None) -> ObjectStore:
    """``store`` wrapped by ``plan`` (itself when there is no plan)."""
    return store if plan is None else FaultyObjectStore(store, plan)
