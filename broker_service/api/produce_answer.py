"""The answer to one produce request, completed by its partitions' durability callbacks.

Each partition the request appended to reports, synchronously from the WAL's completion
(``PartitionLog.when_durable``), whether its batches became durable; the last report builds
the response and resolves the future the connection waits on. Compared with a coroutine
awaiting one future per partition, the answer leaves two event-loop turns sooner: under load
each turn is a pass over every other connection's I/O (issue 21).

Everything here only observes: the partition owns the completion of the append, and a
cancelled future (the client went away) changes nothing but the answer.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Callable
from typing import TYPE_CHECKING

from kio.schema.errors import ErrorCode

from broker_service.api.base import Buffers
from broker_service.kafka.partition import DurableCallback, NotDurable
from broker_service.protocol.produce import ProducePartitionResult, build_produce_response
from broker_service.protocol.zone import ForwardResult
from broker_service.stream.wal import WalTimeout

if TYPE_CHECKING:
    from broker_service.api.services import BrokerServices

log = logging.getLogger(__name__)

TopicResults = list[tuple[str, list[ProducePartitionResult]]]


class ProduceAnswer:
    def __init__(
        self, broker: BrokerServices, version: int, topics: TopicResults, throttle_ms: int
    ) -> None:
        self.broker = broker
        self.version = version
        self.topics = topics  # filled in by the handler as it appends
        self.throttle_ms = throttle_ms
        self.future: asyncio.Future[Buffers] = asyncio.get_running_loop().create_future()
        self._left = 1  # reports still to come, plus the handler's own until ``arm``
        self._appended = 0.0
        self._remote: set[int] = set()  # results the leader in another zone answered
        self.build: Callable[[], Buffers] = self._produce_response  # what the answer is

    def observer(self, res: ProducePartitionResult, remote: bool = False) -> DurableCallback:
        """The callback of one partition's append (``forget`` it if the append is refused);
        ``remote``: appended by the leader in another zone, whose answer stands as it is."""
        self._left += 1
        if remote:
            self._remote.add(id(res))

        def durable(exc: BaseException | None) -> None:
            if exc is not None:
                _refuse(res, exc)
            self._report()

        return durable

    @property
    def waiting(self) -> bool:
        """Whether some partition's report is still to come."""
        return self._left > 1

    def forget(self) -> None:
        """An observer that will never be called (its append was refused)."""
        self._left -= 1

    def arm(self) -> None:
        """Every partition is appended (their effects are done): answer once all reported."""
        self._appended = time.perf_counter()
        self._report()

    def _produce_response(self) -> Buffers:
        return [build_produce_response(self.version, self.topics, self.throttle_ms)]

    def _report(self) -> None:
        self._left -= 1
        if self._left:
            return
        stages = self.broker.metrics.stages
        t0 = time.perf_counter()
        if self._appended:
            stages.durable_wait.observe((t0 - self._appended) * 1000)
        if not self.broker.may_acknowledge() and not _in_shared_log(self.broker):
            # a file WAL's batch is durable on this broker's disk only: with the lease in
            # doubt another broker may have taken the partition over without it
            for _, results in self.topics:
                for res in results:
                    if res.error_code == 0 and id(res) not in self._remote:
                        res.error_code = ErrorCode.not_leader_or_follower
                        res.base_offset = -1
        response = self.build()
        stages.respond.observe((time.perf_counter() - t0) * 1000)
        if not self.future.done():  # cancelled: the client went away
            self.future.set_result(response)


def _refuse(res: ProducePartitionResult, exc: BaseException) -> None:
    """A partition's batches did not become durable: its error for the client's retry."""
    res.base_offset = -1
    cause = exc.cause if isinstance(exc, NotDurable) else exc
    if isinstance(cause, WalTimeout):
        res.error_code = ErrorCode.request_timed_out
    elif cause is None:  # leadership moved before it was durable
        res.error_code = ErrorCode.not_leader_or_follower
    else:
        log.warning("partition %d: batch not durable: %s", res.index, exc)
        res.error_code = ErrorCode.kafka_storage_error
        res.error_message = str(exc)


def _in_shared_log(broker: BrokerServices) -> bool:
    """Whether durable means committed in the shared log (the object WAL): the commit was
    conditional on this broker's epoch, so no takeover came first, and any leader reads it.
    Answering such a batch with an error would make its producer send it again, under a new
    epoch after a timeout: a duplicate."""
    return broker.store is not None and not broker.store.wal.needs_upload


def ignore_durability(exc: BaseException | None) -> None:
    """acks=0: nobody waits; the partition completes the append all the same."""


def forwarded(
    res: ProducePartitionResult, done: DurableCallback
) -> Callable[[asyncio.Future[ForwardResult]], None]:
    """The completion of a batch forwarded to its leader in another zone: the leader's answer
    becomes this partition's result."""

    def complete(fut: asyncio.Future[ForwardResult]) -> None:
        if fut.cancelled():
            done(NotDurable("the forwarded batch's answer was cancelled"))
            return
        exc = fut.exception()
        if exc is not None:
            done(exc)
            return
        out = fut.result()
        res.error_code, res.error_message = out.error_code, out.error_message
        res.base_offset, res.log_start_offset = out.base_offset, out.log_start_offset
        res.log_append_time = out.log_append_time
        done(None)

    return complete
