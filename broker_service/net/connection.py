"""One client connection: framing, in-order responses, backpressure.

Requests are dispatched as they arrive (so pipelined produce requests share one WAL group
commit) but responses leave in request order, as Kafka requires.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections import deque
from collections.abc import Awaitable
from typing import TYPE_CHECKING, Any

from broker_service.api import APIS, access, sasl
from broker_service.api.api_versions import UNSUPPORTED_VERSION, api_keys
from broker_service.api.base import Buffers, Result
from broker_service.protocol.codec import encode_response
from broker_service.protocol.fetch import build_fetch_response
from broker_service.protocol.frames import (
    API_VERSIONS_KEY,
    parse_request_header,
    peek_ids,
    response_header,
    size_prefix,
)
from broker_service.protocol.primitives import ProtocolError
from broker_service.security.listeners import Listener
from broker_service.security.quotas import PRODUCER_BYTE_RATE
from broker_service.security.sasl import SecuritySession
from broker_service.security.tls import principal_from_peercert

if TYPE_CHECKING:
    from broker_service.runtime.broker import Broker

log = logging.getLogger(__name__)

# Requests a connection may have in flight before we stop reading from it. Produce requests
# wait for a WAL group commit, so a lingering WAL needs room for many pipelined requests.
MAX_IN_FLIGHT = 1024
MAX_IN_FLIGHT_BYTES = 64 << 20
STAGING_BYTES = 256 * 1024  # frames larger than this get a buffer of their own
RAW_TOKEN = -1  # queue key of a bare SASL token answer (no response header)
PRODUCE, FETCH = 0, 1


class KafkaConnection(asyncio.BufferedProtocol):
    def __init__(
        self, broker: Broker, connections: set[KafkaConnection], listener: Listener | None = None
    ) -> None:
        self.broker = broker
        self.listener = listener or broker.security.listeners[0]
        self.session = SecuritySession(self.listener)
        self._muted = False  # quota throttling: reads stop for throttle_time_ms
        self._mute_handle: asyncio.TimerHandle | None = None
        self.max_frame = broker.config.socket_request_max_bytes
        self._connections = connections
        self._staging = bytearray(STAGING_BYTES)
        self._start = 0  # unparsed bytes are staging[_start:_end]
        self._end = 0
        self._big: bytearray | None = None
        self._big_filled = 0
        self._transport: asyncio.Transport | None = None
        # (correlation id, api key, version, answer, request bytes, arrival perf_counter)
        self._queue: deque[tuple[int, int, int, asyncio.Future[Any] | list[Any], int, float]] = (
            deque()
        )
        self._queued_bytes = 0  # request bytes held by requests not yet answered
        self._write_paused = False
        self._read_paused = False
        self.peer = "?"
        self.peer_host = ""

    # -- asyncio.BufferedProtocol ---------------------------------------------------------------
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
        self._connections.add(self)

    def connection_lost(self, exc: Exception | None) -> None:
        self._connections.discard(self)
        for _cid, _key, _v, item, _n, _t in self._queue:
            if isinstance(item, asyncio.Future):
                item.cancel()
        self._queue.clear()
        self._transport = None
        if self._mute_handle is not None:
            self._mute_handle.cancel()

    def pause_writing(self) -> None:
        self._write_paused = True
        self._update_reading()

    def resume_writing(self) -> None:
        self._write_paused = False
        self._update_reading()

    # -- reading (BufferedProtocol: the kernel writes straight into our buffers) ----------
    def get_buffer(self, sizehint: int) -> memoryview:
        if self._big is not None:  # a large frame is read directly into its own buffer
            return memoryview(self._big)[self._big_filled :]
        if self._end == STAGING_BYTES:  # move the unparsed tail to the front
            n = self._end - self._start
            self._staging[:n] = self._staging[self._start : self._end]
            self._start, self._end = 0, n
        return memoryview(self._staging)[self._end :]

    def buffer_updated(self, nbytes: int) -> None:
        if self._big is not None:
            self._big_filled += nbytes
            if self._big_filled == len(self._big):
                frame, self._big = self._big, None
                self._dispatch(memoryview(frame))
            return
        self._end += nbytes
        staging = self._staging
        while self._end - self._start >= 4:
            pos = self._start
            size = int.from_bytes(staging[pos : pos + 4], "big", signed=True)
            # bare SASL tokens (after SaslHandshake v0) may be shorter than a request header
            if size < (0 if self.session.raw_tokens else 8) or size > self.max_frame:
                log.warning(
                    "%s: frame size %d outside [8, %d]; closing", self.peer, size, self.max_frame
                )
                self.close()
                return
            have = self._end - pos - 4
            if have >= size:
                self._start = pos + 4 + size
                # our own copy: handlers keep (and edit) frames after the staging is reused
                if not self._dispatch(memoryview(staging[pos + 4 : pos + 4 + size])):
                    return
                continue
            if size + 4 > STAGING_BYTES:
                self._big = bytearray(size)
                self._big[:have] = staging[pos + 4 : self._end]
                self._big_filled = have
                self._start = self._end = 0
            break
        if self._start == self._end:
            self._start = self._end = 0

    def eof_received(self) -> bool:
        return False

    # -- dispatch -----------------------------------------------------------------------
    def _dispatch(self, frame: memoryview) -> bool:
        session = self.session
        if session.raw_tokens:  # after SaslHandshake v0: a bare SASL token, no header
            fut = asyncio.ensure_future(sasl.raw_token(self.broker, session, bytes(frame)))
            fut.add_done_callback(self._on_done)
            self._enqueue(0, RAW_TOKEN, 0, fut, len(frame))
            return True
        try:
            api_key, version, correlation_id = peek_ids(frame)
            refusal = session.gate(api_key)
            if refusal is not None:
                log.warning("%s: %s; closing the connection", self.peer, refusal)
                self.close()
                return False
            api = APIS.get(api_key)
            if api is None:
                raise ProtocolError(f"unknown API key {api_key}")
            if not api.min_version <= version <= api.max_version:
                if api_key == API_VERSIONS_KEY:
                    body = encode_response(
                        18, 0, {"error_code": UNSUPPORTED_VERSION, "api_keys": api_keys()}
                    )
                    self._enqueue(correlation_id, 18, 0, [body], len(frame))
                    return True
                raise ProtocolError(f"{api.name} v{version} is not supported")
            header = parse_request_header(frame)
            header.client_host = self.peer_host
            header.session = session
            quotas = self.broker.security.quotas
            if api_key == PRODUCE and quotas.active:
                header.throttle_ms = quotas.record(
                    PRODUCER_BYTE_RATE, self._user(), header.client_id or "", len(frame),
                    time.monotonic(),
                )  # fmt: skip
                if header.throttle_ms:
                    self._mute(header.throttle_ms)
            result: Result = access.refuse_whole_request(self.broker, header)
            if result is None:
                result = api.handler(self.broker, header, frame)
                if api_key == FETCH and quotas.active and result is not None:
                    result = self._throttle_fetch(header, result)
        except ProtocolError as exc:
            log.warning("%s: bad request (%s); closing the connection", self.peer, exc)
            self.close()
            return False
        except Exception:
            log.exception("%s: handler failed; closing the connection", self.peer)
            self.close()
            return False
        if result is None:
            return True
        if isinstance(result, list):
            self._enqueue(correlation_id, api_key, version, result, len(frame))
        else:
            fut = asyncio.ensure_future(result)
            fut.add_done_callback(self._on_done)
            self._enqueue(correlation_id, api_key, version, fut, len(frame))
        return True

    def _enqueue(self, cid: int, key: int, version: int, item: Any, nbytes: int) -> None:
        self._queue.append((cid, key, version, item, nbytes, time.perf_counter()))
        self._queued_bytes += nbytes
        self._drain()
        self._update_reading()

    def _on_done(self, fut: asyncio.Future[Any]) -> None:
        if fut.cancelled():
            return
        exc = fut.exception()
        if exc is not None:
            log.error("%s: handler failed; closing the connection", self.peer, exc_info=exc)
            self.close()
            return
        self._drain()
        self._update_reading()

    def _drain(self) -> None:
        q = self._queue
        t = self._transport
        while q and t is not None:
            cid, key, version, item, nbytes, started = q[0]
            if isinstance(item, asyncio.Future):
                if not item.done():
                    return
                bufs = item.result()
            else:
                bufs = item
            q.popleft()
            self._queued_bytes -= nbytes
            if key == RAW_TOKEN:
                if bufs:
                    t.writelines([size_prefix(sum(len(b) for b in bufs)), *bufs])
            else:
                self.broker.metrics.answered(key, started)
                head = response_header(cid, key, version)
                size = len(head) + sum(len(b) for b in bufs)
                t.writelines([size_prefix(size), head, *bufs])
        if not q and t is not None and self.session.close_after_response:
            self.close()  # e.g. failed authentication: Kafka answers, then closes

    def _update_reading(self) -> None:
        t = self._transport
        if t is None:
            return
        want_pause = (
            self._write_paused
            or self._muted
            or len(self._queue) >= MAX_IN_FLIGHT
            or self._queued_bytes >= MAX_IN_FLIGHT_BYTES
        )
        if want_pause and not self._read_paused:
            t.pause_reading()
            self._read_paused = True
        elif not want_pause and self._read_paused:
            t.resume_reading()
            self._read_paused = False

    def queued(self, api_key: int) -> int:
        """Requests of this API waiting for their answer (produce / fetch queue depth)."""
        return sum(1 for entry in self._queue if entry[1] == api_key)

    # -- quotas -------------------------------------------------------------------------
    def _user(self) -> str:
        return self.session.principal.partition(":")[2]

    def _mute(self, ms: int) -> None:
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

    async def _throttle_fetch(self, header: Any, result: Buffers | Awaitable[Buffers]) -> Buffers:
        bufs = result if isinstance(result, list) else await result
        nbytes = sum(len(b) for b in bufs)
        throttle, deliver = self.broker.security.quotas.record_fetch(
            self._user(), header.client_id or "", nbytes, time.monotonic()
        )
        if not throttle:
            return bufs
        # Over the quota: the channel is muted for the throttle time, as Kafka does; a client
        # already over it gets an empty response (it fetches the same offsets again later).
        self._mute(throttle)
        if deliver:
            return _with_fetch_throttle(bufs, throttle)
        return build_fetch_response(header.api_version, [], throttle_ms=throttle)

    def close(self) -> None:
        if self._transport is not None:
            self._transport.close()


def _with_fetch_throttle(bufs: Buffers, throttle_ms: int) -> Buffers:
    """A Fetch response body with its throttle_time_ms (its first field, v1+) set."""
    first = bytearray(bufs[0])
    first[0:4] = throttle_ms.to_bytes(4, "big", signed=True)
    return [bytes(first), *bufs[1:]]
