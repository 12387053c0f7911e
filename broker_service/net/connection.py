"""One client connection: bytes in through the framer, requests through the pipeline one at a
time in arrival order, responses out in request order.

Ordering (Kafka's guarantee, DESIGN.md invariant 6): a request starts only when the one before
it has finished taking effect. A handler that returns ``Later`` has finished its effects
(offsets assigned, state changed) and only its answer waits (durability, a long poll), so the
next request starts at once: pipelined produce requests share one WAL group commit, and
responses still leave in order. A handler whose effects are under way (an awaitable) holds the
next request back until they are done.

A closed connection drops the requests it has not started and the answers nobody will read;
effects already under way finish (a batch handed to the WAL completes whatever the client does).
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections import deque
from collections.abc import Awaitable
from dataclasses import dataclass
from typing import Any

from broker_service.api.base import Buffers, Later, Outcome, Result
from broker_service.config.listeners import Listener
from broker_service.metrics.counters import PRODUCE_KEY
from broker_service.net.framer import FrameError, Framer
from broker_service.net.limits import ConnectionRegistry, ThrottledLog
from broker_service.net.pipeline import RAW_TOKEN, Close, route
from broker_service.protocol.frames import response_header, size_prefix
from broker_service.security.sasl import SecuritySession
from broker_service.security.tls import principal_from_peercert

log = logging.getLogger(__name__)
bad_clients = ThrottledLog(log)  # malformed frames, refused connections: never a flood

# Requests a connection may hold (not started + unanswered) before we stop reading from it.
# Produce requests wait for a WAL group commit, so a lingering WAL needs room for many.
MAX_IN_FLIGHT = 1024
MAX_IN_FLIGHT_BYTES = 64 << 20
SASL_MAX_RECEIVE = 512 * 1024  # Kafka's sasl.server.max.receive.size: frames before auth


@dataclass(slots=True, eq=False)
class _Answer:
    """One request's place in the response order."""

    correlation_id: int
    api_key: int
    api_version: int
    nbytes: int  # request bytes held until answered
    started: float
    received: float  # when its whole frame had arrived (perf_counter)
    ready_at: float = 0.0  # when its answer was ready to send
    ready: bool = False
    buffers: Buffers | None = None  # None once ready: nothing to send (acks=0)
    waiting: asyncio.Future[Any] | None = None


class KafkaConnection(asyncio.BufferedProtocol):
    def __init__(self, broker: Any, connections: ConnectionRegistry, listener: Listener) -> None:
        self.broker = broker
        self.listener = listener
        self.session = SecuritySession(listener)
        self._connections = connections
        self._max_request = broker.config.socket_request_max_bytes
        self._framer = Framer(self._frame_limit())
        # received, not started: (frame, its first bytes' arrival, its last bytes' arrival)
        self._inbox: deque[tuple[memoryview, float, float]] = deque()
        self._frame_began = 0.0  # when the first bytes of the frame under way arrived
        self._answers: deque[_Answer] = deque()  # started, not yet written
        self._held_bytes = 0
        self._busy = False  # a request's effects are under way
        self._transport: asyncio.Transport | None = None
        self._muted = False  # quota throttling: reads stop for throttle_time_ms
        self._mute_handle: asyncio.TimerHandle | None = None
        self._write_paused = False
        self._read_paused = False
        self.peer = "?"
        self.peer_host = ""

    # -- asyncio.BufferedProtocol ------------------------------------------------------------
    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self._transport = transport  # type: ignore[assignment]  # uvloop's is not a subclass
        peer = transport.get_extra_info("peername")
        self.peer = f"{peer[0]}:{peer[1]}" if peer else "?"
        self.peer_host = f"/{peer[0]}" if peer else ""
        self.session = SecuritySession(self.listener, client_host=peer[0] if peer else "")
        if self.listener.tls and not self.listener.sasl:  # SSL: the client certificate's DN
            ssl_object = transport.get_extra_info("ssl_object")
            subject = principal_from_peercert(ssl_object.getpeercert()) if ssl_object else None
            if subject:
                self.session.principal = subject
            log.debug("%s: TLS client certificate principal %s", self.peer, subject)
        self._framer.max_frame = self._frame_limit()
        refusal = self._connections.admit(self, peer[0] if peer else "?")
        if refusal is not None:
            bad_clients.warning("%s: %s; closing the connection", self.peer, refusal)
            transport.close()

    def connection_lost(self, exc: Exception | None) -> None:
        self._connections.release(self)
        self._transport = None
        self._inbox.clear()
        for answer in self._answers:  # only observers: effects never depend on them
            if answer.waiting is not None and not self._busy_with(answer):
                answer.waiting.cancel()
        self._answers.clear()
        if self._mute_handle is not None:
            self._mute_handle.cancel()

    def pause_writing(self) -> None:
        self._write_paused = True
        self._update_reading()

    def resume_writing(self) -> None:
        self._write_paused = False
        self._update_reading()

    def get_buffer(self, sizehint: int) -> memoryview:
        return self._framer.get_buffer(sizehint)

    def buffer_updated(self, nbytes: int) -> None:
        framer = self._framer
        framer.min_frame = 0 if self.session.raw_tokens else 8  # bare SASL tokens are short
        now = time.perf_counter()
        if not framer.partial:
            self._frame_began = now  # these bytes begin a frame
        try:
            framer.buffer_updated(nbytes)
        except FrameError as exc:
            bad_clients.warning("%s: %s; closing the connection", self.peer, exc)
            self.close()
            return
        while (frame := framer.next_frame()) is not None:
            self._inbox.append((frame, self._frame_began, now))
            self._held_bytes += len(frame)
            self._frame_began = now  # the next frame's first bytes came with these
        self._pump()
        self._update_reading()

    def eof_received(self) -> bool:
        return False

    # -- the ordered executor ----------------------------------------------------------------
    def _pump(self) -> None:
        """Start received requests, one at a time, while none has effects under way."""
        while self._inbox and not self._busy and self._transport is not None:
            frame, began, received = self._inbox.popleft()
            started = time.perf_counter()
            try:
                routed = route(self.broker, self, frame)
            except Close as exc:
                bad_clients.warning("%s: %s; closing the connection", self.peer, exc)
                self.close()
                return
            except Exception:
                log.exception("%s: handler failed; closing the connection", self.peer)
                self.close()
                return
            answer = _Answer(
                routed.correlation_id,
                routed.api_key,
                routed.api_version,
                len(frame),
                started,
                received,
            )
            if routed.api_key == PRODUCE_KEY:
                stages = self.broker.metrics.stages
                stages.receive.observe((received - began) * 1000)
                stages.queue.observe((started - received) * 1000)
            self._answers.append(answer)
            result = routed.result
            if isinstance(result, Awaitable):
                self._busy = True
                task = asyncio.ensure_future(result)
                answer.waiting = task
                task.add_done_callback(lambda t, a=answer: self._effects_done(a, t))  # type: ignore[misc]
            else:
                self._settle(answer, result)
        self._framer.max_frame = self._frame_limit()

    def _effects_done(self, answer: _Answer, task: asyncio.Future[Any]) -> None:
        self._busy = False
        if task.cancelled() or self._transport is None:
            return
        exc = task.exception()
        if exc is not None:
            log.error("%s: handler failed; closing the connection", self.peer, exc_info=exc)
            self.close()
            return
        self._settle(answer, task.result())
        self._pump()
        self._update_reading()

    def _settle(self, answer: _Answer, outcome: Outcome) -> None:
        if isinstance(outcome, Later):
            fut = asyncio.ensure_future(outcome.response)
            answer.waiting = fut
            fut.add_done_callback(lambda f, a=answer: self._answered(a, f))  # type: ignore[misc]
            return
        answer.ready, answer.buffers, answer.waiting = True, outcome, None
        answer.ready_at = time.perf_counter()
        self._flush()

    def _answered(self, answer: _Answer, fut: asyncio.Future[Any]) -> None:
        if fut.cancelled() or self._transport is None:
            return
        exc = fut.exception()
        if exc is not None:
            log.error("%s: handler failed; closing the connection", self.peer, exc_info=exc)
            self.close()
            return
        answer.ready, answer.buffers, answer.waiting = True, fut.result(), None
        answer.ready_at = time.perf_counter()
        self._flush()
        self._update_reading()

    def _busy_with(self, answer: _Answer) -> bool:
        """Whether ``answer``'s own effects are the ones under way (never cancelled)."""
        return self._busy and bool(self._answers) and self._answers[-1] is answer

    def _flush(self) -> None:
        answers = self._answers
        t = self._transport
        while answers and answers[0].ready and t is not None:
            a = answers.popleft()
            self._held_bytes -= a.nbytes
            bufs = a.buffers
            if bufs is None:
                continue
            if a.api_key == RAW_TOKEN:
                if bufs:
                    t.writelines([size_prefix(sum(len(b) for b in bufs)), *bufs])
                continue
            head = response_header(a.correlation_id, a.api_key, a.api_version)
            size = len(head) + sum(len(b) for b in bufs)
            t.writelines([size_prefix(size), head, *bufs])
            self.broker.metrics.answered(a.api_key, a.started, a.received, a.ready_at)
        if not answers and not self._inbox and t is not None and self.session.close_after_response:
            self.close()  # e.g. failed authentication: Kafka answers, then closes

    def _frame_limit(self) -> int:
        if self.session.authenticated:
            return self._max_request
        return min(self._max_request, SASL_MAX_RECEIVE)

    def _update_reading(self) -> None:
        t = self._transport
        if t is None:
            return
        held = len(self._inbox) + len(self._answers)
        want_pause = (
            self._write_paused
            or self._muted
            or held >= MAX_IN_FLIGHT
            or self._held_bytes >= MAX_IN_FLIGHT_BYTES
        )
        if want_pause and not self._read_paused:
            t.pause_reading()
            self._read_paused = True
        elif not want_pause and self._read_paused:
            t.resume_reading()
            self._read_paused = False

    def queued(self, api_key: int) -> int:
        """Requests of this API waiting for their answer (produce / fetch queue depth)."""
        return sum(1 for a in self._answers if a.api_key == api_key)

    # -- quotas ----------------------------------------------------------------------------
    def mute(self, ms: int) -> None:
        """Kafka's channel muting: read nothing more from this client for ``ms``."""
        if self._mute_handle is not None:
            self._mute_handle.cancel()
        self._muted = True
        self._update_reading()
        self._mute_handle = asyncio.get_running_loop().call_later(ms / 1000, self._unmute)

    def _unmute(self) -> None:
        self._muted = False
        self._mute_handle = None
        self._update_reading()

    def close(self) -> None:
        if self._transport is not None:
            self._transport.close()


Result_ = Result  # re-exported for type checkers of callers
