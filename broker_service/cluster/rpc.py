"""Requests from this broker to the others (reassignment forwarding, transaction markers,
zone-forwarded produce, replica state), async: one connection per broker, pipelined, a future
per correlation id (as aiokafka's connection does). Connections open on first use,
authenticate as the bootstrap admin when the peer's registered listener needs it, and are
dropped on any error (the next call reconnects).

Kafka requests are kio entities; the private inter-broker requests (protocol/zone.py) are
raw bodies (``submit_raw``), sent in call order on the peer's one connection, so a peer
applies them in the order this broker sent them.
"""

from __future__ import annotations

import asyncio
import logging
import ssl
from collections.abc import Callable
from typing import Any

from kio.index import load_request_schema

from broker_service.protocol.client import (
    decode_response,
    raw_request_frame,
    request_frame,
    response_correlation_id,
)
from broker_service.protocol.codec import shape
from broker_service.protocol.zone import PRIVATE_KEYS
from broker_service.security.client import ClientSecurity

log = logging.getLogger(__name__)

MAX_RESPONSE = 256 << 20
CONNECT_TIMEOUT_S = 5.0  # private requests: connecting (and authenticating) takes at most this
# client id prefix of requests between brokers (a forwarded request is never forwarded again)
FORWARDED_BY = "broker-forward-"
SASL_HANDSHAKE, SASL_AUTHENTICATE = 17, 36


class RpcError(Exception):
    """No answer (unreachable, closed, timed out, refused authentication)."""


# (api_key, channel, bytes sent, bytes received) of one request or response: every
# inter-broker byte crosses an AZ on AWS, so the broker counts them (metrics/counters.py)
Traffic = Callable[[int, str, int, int], None]


def _uncounted(_api_key: int, _channel: str, _sent: int, _received: int) -> None:
    pass


class _Connection:
    def __init__(
        self,
        host: str,
        port: int,
        client_id: str,
        traffic: Traffic = _uncounted,
        channel: str = "",
    ) -> None:
        self.host, self.port, self.client_id = host, port, client_id
        self.traffic, self.channel = traffic, channel
        self._reader: asyncio.StreamReader | None = None
        self._writer: asyncio.StreamWriter | None = None
        self._waiting: dict[int, tuple[int, int, asyncio.Future[Any]]] = {}
        self._cid = 0
        self._pump: asyncio.Task[None] | None = None

    @property
    def alive(self) -> bool:
        return self._writer is not None and not self._writer.is_closing()

    async def open(self, security: ClientSecurity, timeout: float) -> None:
        tls: ssl.SSLContext | None = None
        if security.protocol in ("SSL", "SASL_SSL"):
            tls = security.ssl_context or ssl.create_default_context()
        self._reader, self._writer = await asyncio.wait_for(
            asyncio.open_connection(self.host, self.port, ssl=tls), timeout
        )
        self._pump = asyncio.get_running_loop().create_task(self._read_responses())
        if security.protocol in ("SASL_PLAINTEXT", "SASL_SSL"):
            await self._authenticate(security, timeout)

    async def _authenticate(self, sec: ClientSecurity, timeout: float) -> None:
        if not sec.username or sec.password is None:
            raise RpcError(f"{self.host}:{self.port} needs SASL credentials")
        hs = await self.call(
            shape(load_request_schema(SASL_HANDSHAKE, 1), {"mechanism": sec.mechanism}), timeout
        )
        if int(hs.error_code):
            raise RpcError(f"SaslHandshake with {self.host}:{self.port}: error {hs.error_code}")

        async def step(token: bytes) -> bytes:
            auth = shape(load_request_schema(SASL_AUTHENTICATE, 1), {"auth_bytes": token})
            resp = await self.call(auth, timeout)
            if int(resp.error_code):
                raise RpcError(
                    f"SaslAuthenticate with {self.host}:{self.port}: {resp.error_message}"
                )
            return bytes(resp.auth_bytes)

        if sec.mechanism == "PLAIN":
            await step(b"\x00" + sec.username.encode() + b"\x00" + sec.password.encode())
            return
        from scramp import ScramClient, ScramException

        client = ScramClient([sec.mechanism], sec.username, sec.password)
        try:
            client.set_server_first((await step(client.get_client_first().encode())).decode())
            client.set_server_final((await step(client.get_client_final().encode())).decode())
        except ScramException as exc:
            raise RpcError(f"SCRAM with {self.host}:{self.port} failed: {exc}") from None

    async def call(self, entity: Any, timeout: float) -> Any:
        if self._writer is None:
            raise RpcError("not connected")
        self._cid = (self._cid + 1) & 0x7FFFFFFF
        cid = self._cid
        fut: asyncio.Future[Any] = asyncio.get_running_loop().create_future()
        self._waiting[cid] = (int(entity.__api_key__), int(entity.__version__), fut)
        frame = request_frame(entity, cid, self.client_id)
        self.traffic(int(entity.__api_key__), self.channel, len(frame), 0)
        self._writer.write(frame)
        try:
            return await asyncio.wait_for(fut, timeout)
        except TimeoutError:
            self.close(RpcError(f"{self.host}:{self.port} did not answer in {timeout} s"))
            raise RpcError(f"{self.host}:{self.port} did not answer in {timeout} s") from None
        finally:
            self._waiting.pop(cid, None)

    def send_raw(self, api_key: int, version: int, body: bytes) -> asyncio.Future[bytes]:
        """Write a private request now; the future gets the response body (after the
        correlation id)."""
        if self._writer is None:
            raise RpcError("not connected")
        self._cid = (self._cid + 1) & 0x7FFFFFFF
        cid = self._cid
        fut: asyncio.Future[Any] = asyncio.get_running_loop().create_future()
        self._waiting[cid] = (api_key, version, fut)
        frame = raw_request_frame(api_key, version, cid, self.client_id, body)
        self.traffic(api_key, self.channel, len(frame), 0)
        self._writer.write(frame)
        fut.add_done_callback(lambda _f, c=cid: self._waiting.pop(c, None))  # type: ignore[misc]
        return fut

    async def _read_responses(self) -> None:
        assert self._reader is not None
        try:
            while True:
                size = int.from_bytes(await self._reader.readexactly(4), "big", signed=True)
                if not 4 <= size <= MAX_RESPONSE:
                    raise RpcError(f"{self.host}:{self.port} sent a frame of {size} bytes")
                frame = await self._reader.readexactly(size)
                waiting = self._waiting.get(response_correlation_id(frame))
                if waiting is None:
                    continue  # its caller gave up
                api_key, version, fut = waiting
                self.traffic(api_key, self.channel, 0, 4 + size)
                if fut.done():
                    continue
                if api_key in PRIVATE_KEYS:
                    fut.set_result(frame[4:])
                else:
                    fut.set_result(decode_response(api_key, version, frame))
        except (asyncio.IncompleteReadError, OSError, ValueError, RpcError) as exc:
            self.close(exc if isinstance(exc, RpcError) else RpcError(str(exc) or "closed"))

    def close(self, why: BaseException | None = None) -> None:
        for _, _, fut in self._waiting.values():
            if not fut.done():
                fut.set_exception(why or RpcError("connection closed"))
        self._waiting.clear()
        if self._writer is not None:
            self._writer.close()
            self._writer = None
        if self._pump is not None and self._pump is not asyncio.current_task():
            self._pump.cancel()


class BrokerRpc:
    def __init__(
        self,
        endpoint: Callable[[int], tuple[str, int] | None],
        security: Callable[[], ClientSecurity | None],
        client_id: str,
        traffic: Traffic = _uncounted,
    ) -> None:
        self._endpoint = endpoint
        self._security = security
        self.client_id = client_id
        self.traffic = traffic
        self._conns: dict[tuple[tuple[str, int], str], _Connection] = {}
        self._opening: dict[tuple[tuple[str, int], str], asyncio.Lock] = {}

    async def call(self, broker_id: int, request: Any, timeout: float = 15.0) -> Any:
        """Send a kio request to a broker and return its decoded response."""
        address = self._endpoint(broker_id)
        if address is None:
            raise RpcError(f"broker {broker_id} is not live")
        conn = await self._connection(address, timeout)
        try:
            return await conn.call(request, timeout)
        except RpcError:
            self._drop((address, ""), conn)
            raise

    async def submit_raw(
        self,
        broker_id: int,
        api_key: int,
        version: int,
        body: bytes,
        timeout: float,
        channel: str = "",
    ) -> asyncio.Future[bytes]:
        """Send a private request to a broker now (requests submitted one after the other
        reach it in that order) and return the future of its response body; an error, or no
        answer within ``timeout``, fails it with RpcError. ``channel`` names a connection of
        its own: answers leave a connection in request order, so a long poll gets one, and
        the requests behind it are not held up."""
        address = self._endpoint(broker_id)
        if address is None:
            raise RpcError(f"broker {broker_id} is not live")
        # a long answer timeout is no reason to wait as long for a connection
        conn = await self._connection(address, min(timeout, CONNECT_TIMEOUT_S), channel)
        key = (address, channel)
        try:
            fut = conn.send_raw(api_key, version, body)
        except RpcError:
            self._drop(key, conn)
            raise
        loop = asyncio.get_running_loop()

        def expire() -> None:
            if not fut.done():
                why = RpcError(f"{address[0]}:{address[1]} did not answer in {timeout} s")
                conn.close(why)  # as call() does: the connection is in an unknown state
                self._drop(key, conn)

        timer = loop.call_later(timeout, expire)
        fut.add_done_callback(lambda _f: timer.cancel())
        return fut

    async def call_raw(
        self,
        broker_id: int,
        api_key: int,
        version: int,
        body: bytes,
        timeout: float = 15.0,
        channel: str = "",
    ) -> bytes:
        return await (await self.submit_raw(broker_id, api_key, version, body, timeout, channel))

    def _drop(self, key: tuple[tuple[str, int], str], conn: _Connection) -> None:
        if self._conns.get(key) is conn:
            del self._conns[key]

    async def _connection(
        self, address: tuple[str, int], timeout: float, channel: str = ""
    ) -> _Connection:
        key = (address, channel)
        lock = self._opening.setdefault(key, asyncio.Lock())
        async with lock:
            conn = self._conns.get(key)
            if conn is not None and conn.alive:
                return conn
            conn = _Connection(address[0], address[1], self.client_id, self.traffic, channel)
            try:
                await conn.open(self._security() or ClientSecurity(), timeout)
            except (OSError, TimeoutError, RpcError) as exc:
                conn.close()
                raise RpcError(f"cannot reach broker at {address[0]}:{address[1]}: {exc}") from None
            self._conns[key] = conn
            return conn

    def close(self) -> None:
        for conn in self._conns.values():
            conn.close()
        self._conns.clear()
