"""A tiny HTTP proxy in front of moto server that injects scripted faults, so retries,
timeouts and aborts are exercised over real HTTP and real sockets.

Faults match on the HTTP method and path, and on the operation: a JSON API's ``X-Amz-Target``
action (``TransactWriteItems``, ``GetItem``...) or, for S3, the method (``PUT``, ``GET``...).
Errors are answered in the API's own format (XML for S3, JSON for DynamoDB)."""

from __future__ import annotations

import http.client
import json
import random
import threading
import time
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from types import TracebackType
from urllib.parse import urlparse

_HOP_BY_HOP = {"connection", "expect", "keep-alive", "transfer-encoding", "content-length"}

# actions
SLOWDOWN = "slowdown"  # 503 SlowDown, request not forwarded
BAD_REQUEST = "bad-request"  # 400 InvalidRequest (not retryable), request not forwarded
LOSE_RESPONSE = "lose-response"  # forwarded (so it happens), but the client gets a 500
TRUNCATE = "truncate"  # forwarded; the client gets the headers and half the body, then EOF
HANG = "hang"  # wait `hang_seconds` before forwarding (a read timeout for the client)
RESPOND_LATE = "respond-late"  # forwarded at once (so it happens), answered `hang_seconds` late


@dataclass
class Fault:
    action: str
    method: str
    match: Callable[[str], bool]
    times: int
    op: str | None = None  # the operation (X-Amz-Target action, or the S3 method); None: any


class FaultProxy:
    def __init__(self, upstream: str, delay: float = 0.0, hang_seconds: float = 1.5) -> None:
        u = urlparse(upstream)
        self.upstream = (u.hostname or "127.0.0.1", u.port or 80)
        self.delay = delay  # every request waits this long (to observe concurrency)
        self.hang_seconds = hang_seconds
        self.faults: list[Fault] = []
        self.chaos_rate = 0.0  # besides scripted faults: this share of requests gets one of
        self.chaos_actions: tuple[str, ...] = ()  # these actions, drawn at random
        self.chaos_ops: frozenset[str] | None = None  # ... on these operations (None: all)
        self._random = random.Random(7)
        self.seen: list[tuple[str, str, int]] = []  # (method, path, status sent)
        self.seen_ops: list[tuple[str, int]] = []  # (operation, status sent)
        self.injected: Counter[str] = Counter()  # faults injected, by action
        self.started: list[str] = []  # methods of the requests received so far
        self.in_flight = 0
        self.max_in_flight = 0
        self._stalled_until: dict[str, float] = {}  # operation -> monotonic end of its stall
        self._lock = threading.Lock()
        self._stall_over = threading.Condition()  # held requests wait on it (unstall ends them)
        proxy = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def log_message(self, format: str, *args: object) -> None:
                pass

            def do_GET(self) -> None:
                proxy._handle(self)

            do_PUT = do_POST = do_DELETE = do_HEAD = do_GET

        self._server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self._server.daemon_threads = True
        self.endpoint = f"http://127.0.0.1:{self._server.server_address[1]}"
        self._thread = threading.Thread(target=self._server.serve_forever, daemon=True)

    def __enter__(self) -> FaultProxy:
        self._thread.start()
        return self

    def __exit__(
        self,
        et: type[BaseException] | None,
        ev: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self._server.shutdown()
        self._server.server_close()

    def add(
        self,
        action: str,
        method: str,
        match: Callable[[str], bool] = lambda path: True,
        times: int = 1,
        op: str | None = None,
    ) -> None:
        self.faults.append(Fault(action, method, match, times, op))

    def stall(self, op: str, seconds: float) -> None:
        """An outage of one operation: its requests arriving in the next ``seconds`` wait
        until then, and are forwarded when it ends (so they happen, late)."""
        with self._stall_over:
            self._stalled_until[op] = time.monotonic() + seconds

    def unstall(self) -> None:
        """End every stall now: the requests held are forwarded."""
        with self._stall_over:
            self._stalled_until.clear()
            self._stall_over.notify_all()

    def methods(self, method: str) -> list[tuple[str, int]]:
        return [(path, status) for m, path, status in self.seen if m == method]

    def chaos(
        self, rate: float, actions: tuple[str, ...], seed: int = 7, ops: tuple[str, ...] = ()
    ) -> None:
        """Fail a share ``rate`` of the requests (of operations ``ops``; all if empty) with
        a random one of ``actions``."""
        self.chaos_rate, self.chaos_actions = rate, actions
        self.chaos_ops = frozenset(ops) or None
        self._random = random.Random(seed)

    def ops(self, op: str) -> list[int]:
        """Statuses answered to the requests of one operation so far."""
        return [status for o, status in self.seen_ops if o == op]

    def _take_fault(self, method: str, path: str, op: str) -> str | None:
        with self._lock:
            for f in self.faults:
                if f.times and f.method == method and f.op in (None, op) and f.match(path):
                    f.times -= 1
                    self.injected[f.action] += 1
                    return f.action
            if (
                self.chaos_actions
                and (self.chaos_ops is None or op in self.chaos_ops)
                and self._random.random() < self.chaos_rate
            ):
                action = self._random.choice(self.chaos_actions)
                self.injected[action] += 1
                return action
        return None

    def _handle(self, h: BaseHTTPRequestHandler) -> None:
        with self._lock:
            self.started.append(h.command)
            self.in_flight += 1
            self.max_in_flight = max(self.max_in_flight, self.in_flight)
        try:
            self._serve(h)
        finally:
            with self._lock:
                self.in_flight -= 1

    def _serve(self, h: BaseHTTPRequestHandler) -> None:
        length = int(h.headers.get("Content-Length") or 0)
        body = h.rfile.read(length) if length else b""
        if self.delay:
            time.sleep(self.delay)
        op = _operation(h)
        with self._stall_over:
            while (left := self._stalled_until.get(op, 0.0) - time.monotonic()) > 0:
                self._stall_over.wait(left)
        action = self._take_fault(h.command, h.path, op)
        if action == SLOWDOWN:
            return self._error(h, 503, "SlowDown", "Please reduce your request rate.")
        if action == BAD_REQUEST:
            return self._error(h, 400, "InvalidRequest", "injected failure")
        if action == HANG:
            time.sleep(self.hang_seconds)
        status, headers, data = self._forward(h, body)
        if action == LOSE_RESPONSE:
            return self._error(h, 500, "InternalError", "injected: the response was lost")
        if action == RESPOND_LATE:
            time.sleep(self.hang_seconds)
        self._record(h, status)
        h.send_response(status)
        for name, value in headers:
            if name.lower() not in _HOP_BY_HOP | {"server", "date"}:
                h.send_header(name, value)
        if h.command == "HEAD":
            h.send_header("Content-Length", dict(headers).get("Content-Length", "0"))
            h.end_headers()
            return
        h.send_header("Content-Length", str(len(data)))
        h.end_headers()
        if action == TRUNCATE:
            h.wfile.write(data[: len(data) // 2])
            h.wfile.flush()
            h.close_connection = True
            return
        h.wfile.write(data)

    def _forward(
        self, h: BaseHTTPRequestHandler, body: bytes
    ) -> tuple[int, list[tuple[str, str]], bytes]:
        conn = http.client.HTTPConnection(*self.upstream, timeout=10)
        try:
            headers = {k: v for k, v in h.headers.items() if k.lower() not in _HOP_BY_HOP}
            if body or h.command in ("PUT", "POST"):
                headers["Content-Length"] = str(len(body))
            conn.request(h.command, h.path, body=body, headers=headers)
            resp = conn.getresponse()
            return resp.status, resp.getheaders(), resp.read()
        finally:
            conn.close()

    def _record(self, h: BaseHTTPRequestHandler, status: int) -> None:
        with self._lock:
            self.seen.append((h.command, h.path, status))
            self.seen_ops.append((_operation(h), status))

    def _error(self, h: BaseHTTPRequestHandler, status: int, code: str, message: str) -> None:
        self._record(h, status)
        if h.headers.get("X-Amz-Target"):  # a JSON API (DynamoDB): its error format
            content_type = "application/x-amz-json-1.0"
            kind = {500: "InternalServerError", 503: "ThrottlingException"}.get(status, code)
            data = json.dumps({"__type": f"com.amazonaws.dynamodb.v20120810#{kind}",
                               "message": message}).encode()  # fmt: skip
        else:
            content_type = "application/xml"
            data = (
                f'<?xml version="1.0" encoding="UTF-8"?>\n<Error><Code>{code}</Code>'
                f"<Message>{message}</Message><RequestId>proxy</RequestId></Error>"
            ).encode()
        h.send_response(status)
        h.send_header("Content-Type", content_type)
        h.send_header("Content-Length", "0" if h.command == "HEAD" else str(len(data)))
        h.end_headers()
        if h.command != "HEAD":
            h.wfile.write(data)


def _operation(h: BaseHTTPRequestHandler) -> str:
    """The request's operation: a JSON API's X-Amz-Target action, else the HTTP method."""
    target = h.headers.get("X-Amz-Target") or ""
    return target.rpartition(".")[2] if target else h.command
