"""Requests from this broker to the others (reassignment forwarding, transaction markers),
async: one connection per broker, pipelined, a future per correlation id (as aiokafka's
connection does). Connections open on first use, authenticate as the bootstrap admin when the
peer's registered listener needs it, and are dropped on any error (the next call reconnects).
"""

from __future__ import annotations

import asyncio
import logging
import ssl
from collections.abc import Callable
from typing import Any

from kio.index import load_request_schema

from broker_service.protocol.client import decode_response, request_frame, response_correlation_id
from broker_service.protocol.codec import shape
from broker_service.security.client import ClientSecurity

log = logging.getLogger(__name__)

MAX_RESPONSE = 256 << 20
# client id prefix of requests between brokers (a forwarded request is never forwarded again)
FORWARDED_BY = "broker-forward-"
SASL_HANDSHAKE, SASL_AUTHENTICATE = 17, 36


class RpcError(Exception):
    """No answer (unreachable, closed, timed out, refused authentication)."""


class _Connection:
    def __init__(self, host: str, port: int, client_id: str) -> None:
        self.host, self.port, self.client_id = host, port, client_id
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
        self._writer.write(request_frame(entity, cid, self.client_id))
        try:
            return await asyncio.wait_for(fut, timeout)
        except TimeoutError:
            self.close(RpcError(f"{self.host}:{self.port} did not answer in {timeout} s"))
            raise RpcError(f"{self.host}:{self.port} did not answer in {timeout} s") from None
        finally:
            self._waiting.pop(cid, None)

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
                if not fut.done():
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
    ) -> None:
        self._endpoint = endpoint
        self._security = security
        self.client_id = client_id
        self._conns: dict[tuple[str, int], _Connection] = {}
        self._opening: dict[tuple[str, int], asyncio.Lock] = {}

    async def call(self, broker_id: int, request: Any, timeout: float = 15.0) -> Any:
        """Send a kio request to a broker and return its decoded response."""
        address = self._endpoint(broker_id)
        if address is None:
            raise RpcError(f"broker {broker_id} is not live")
        conn = await self._connection(address, timeout)
        try:
            return await conn.call(request, timeout)
        except RpcError:
            self._conns.pop(address, None)
            raise

    async def _connection(self, address: tuple[str, int], timeout: float) -> _Connection:
        lock = self._opening.setdefault(address, asyncio.Lock())
        async with lock:
            conn = self._conns.get(address)
            if conn is not None and conn.alive:
                return conn
            conn = _Connection(address[0], address[1], self.client_id)
            try:
                await conn.open(self._security() or ClientSecurity(), timeout)
            except (OSError, TimeoutError, RpcError) as exc:
                conn.close()
                raise RpcError(f"cannot reach broker at {address[0]}:{address[1]}: {exc}") from None
            self._conns[address] = conn
            return conn

    def close(self) -> None:
        for conn in self._conns.values():
            conn.close()
        self._conns.clear()
