"""A metadata store that is slow or ambiguous on purpose (tests and chaos runs only).

``with_faults(store, plan)`` wraps a sync ``MetadataStore``: each call of an operation the
plan names sleeps a random delay before and/or after the real call, and may raise
``InjectedFault`` after the real call applied (see ``broker_service/faults.py`` for the plan
and its ``BROKER_FAULT_METADATA_*`` settings). Sleeping blocks the calling thread, exactly as
a slow DynamoDB round trip does, so callers that run store calls on the event loop or queue
them behind each other show up at once.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Any, cast

from broker_service.config.faults import FaultDice, FaultPlan, InjectedFault
from broker_service.metadata.store import MetadataStore

# Every operation of the interface (close is never delayed).
OPERATIONS = frozenset(MetadataStore.__abstractmethods__) - {"close"}


class FaultyMetadataStore:
    """Forwards every attribute to the wrapped store; operations get the plan's faults."""

    def __init__(
        self,
        inner: MetadataStore,
        plan: FaultPlan,
        sleep: Callable[[float], None] = time.sleep,
    ) -> None:
        plan.check_ops(OPERATIONS | {n for n in dir(inner) if not n.startswith("_")})
        self.inner = inner
        self.plan = plan
        self.dice = FaultDice(plan)
        self._sleep = sleep

    def __getattr__(self, name: str) -> Any:
        attr = getattr(self.inner, name)
        chosen = name in OPERATIONS if self.plan.ops is None else name in self.plan.ops
        if not chosen or not callable(attr):
            return attr

        def call(*args: Any, **kwargs: Any) -> Any:
            d = self.dice.decide(name)
            if d.before_s:
                self._sleep(d.before_s)
            result = attr(*args, **kwargs)
            if d.after_s:
                self._sleep(d.after_s)
            if d.fail:
                raise InjectedFault(f"injected fault after {name} applied")
            return result

        return call


# isinstance(wrapped, MetadataStore) holds, as for any backend.
MetadataStore.register(FaultyMetadataStore)


def with_faults(store: MetadataStore, plan: FaultPlan | None) -> MetadataStore:
    """``store`` wrapped by ``plan`` (itself when there is no plan)."""
    if plan is None:
        return store
    return cast(MetadataStore, FaultyMetadataStore(store, plan))
