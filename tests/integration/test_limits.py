"""Limits no single client can push past (issue 22.3, 22.4, 22.7): memory per connection
follows what the client really sent, a size prefix allocates nothing by itself, frames before
SASL authentication are capped at Kafka's 512 KB, max.connections(.per.ip) refuse the excess,
and bad connections cannot flood the log."""

from __future__ import annotations

import resource
import socket
import struct
import time
from collections.abc import Iterator
from pathlib import Path

import psutil
import pytest

from tests import kafka_wire as w
from tests.support.broker import BrokerProcess

MB = 1 << 20


def _rss(b: BrokerProcess) -> int:
    assert b.proc is not None
    return int(psutil.Process(b.proc.pid).memory_info().rss)


def _wait(cond, timeout: float, what: str):  # type: ignore[no-untyped-def]
    deadline = time.monotonic() + timeout
    while not (value := cond()):
        assert time.monotonic() < deadline, f"timed out waiting for {what}"
        time.sleep(0.05)
    return value


@pytest.fixture
def broker(tmp_path: Path) -> Iterator[BrokerProcess]:
    b = BrokerProcess(tmp_path / "data").start()
    yield b
    b.stop()


def _connections(b: BrokerProcess) -> int:
    assert b.proc is not None
    return sum(1 for c in psutil.Process(b.proc.pid).net_connections() if c.status == "ESTABLISHED")


def test_idle_connections_cost_little_memory(broker: BrokerProcess) -> None:
    """3,000 idle connections that each sent one ApiVersions: the broker's RSS grows by a few
    KB per connection (it once allocated 256 KiB each, 1.35 GB for 5,000)."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    resource.setrlimit(resource.RLIMIT_NOFILE, (max(soft, min(hard, 8192)), hard))
    w.assert_wire_healthy(broker.port)
    before = _rss(broker)
    socks = []
    try:
        for i in range(3000):
            s = socket.create_connection(("127.0.0.1", broker.port), timeout=10)
            s.sendall(w.frame_of(w.api_versions_request(0), i))
            socks.append(s)
        for s in socks:  # every one answered: the broker really holds them all
            head = s.recv(4)
            assert len(head) == 4
        _wait(lambda: _connections(broker) >= 3000, 30, "3,000 connections")
        grown = _rss(broker) - before
        print(f"\nRSS grew {grown / MB:.1f} MB for 3,000 idle connections")
        assert grown < 60 * MB, f"{grown / MB:.0f} MB for 3,000 idle connections"
    finally:
        for s in socks:
            s.close()
    w.assert_wire_healthy(broker.port)


def test_a_size_prefix_alone_allocates_nothing(broker: BrokerProcess) -> None:
    """20 clients announce 100 MiB frames and send 10 bytes: memory follows the bytes that
    arrived, and a healthy client is served meanwhile."""
    w.assert_wire_healthy(broker.port)
    before = _rss(broker)
    socks = []
    try:
        for _ in range(20):
            s = socket.create_connection(("127.0.0.1", broker.port), timeout=10)
            s.sendall(struct.pack(">i", 100 * MB) + b"\0" * 10)
            socks.append(s)
        w.assert_wire_healthy(broker.port)
        w.confluent_round_trip(broker.bootstrap, "healthy", n=20)
        grown = _rss(broker) - before
        print(f"\nRSS grew {grown / MB:.1f} MB with 20 pending 100 MiB claims")
        assert grown < 30 * MB, f"{grown / MB:.0f} MB for 20 frames that never came"
    finally:
        for s in socks:
            s.close()


def test_frames_before_sasl_authentication_are_capped_at_512_kb(tmp_path: Path) -> None:
    b = BrokerProcess(tmp_path / "data", BROKER_LISTENERS=f"SASL_PLAINTEXT://127.0.0.1:{0}")
    b.env["BROKER_LISTENERS"] = f"SASL_PLAINTEXT://127.0.0.1:{b.port}"
    b.start()
    try:
        with w.WireClient(b.port) as c:  # ApiVersions is allowed before authenticating
            av = c.call(w.api_versions_request(3))
            assert int(av.error_code) == 0
        with w.WireClient(b.port) as c:
            c.send(struct.pack(">i", 600 * 1024) + b"\0" * 100)
            assert c.closed_by_peer(10), "a 600 KB frame before authentication is refused"
    finally:
        b.stop()


def test_max_connections_per_ip_refuses_the_excess(tmp_path: Path) -> None:
    b = BrokerProcess(tmp_path / "data", BROKER_MAX_CONNECTIONS_PER_IP="5").start()
    try:
        held = [w.WireClient(b.port) for _ in range(5)]
        for c in held:  # all five admitted and served
            assert int(c.call(w.api_versions_request(0)).error_code) == 0
        extra = w.WireClient(b.port)
        assert extra.closed_by_peer(10), "the sixth connection from this address is closed"
        extra.close()
        held.pop().close()
        _wait(lambda: _connections(b) <= 4, 10, "the closed connection to go")
        with w.WireClient(b.port) as again:  # a freed slot is usable again
            assert int(again.call(w.api_versions_request(0)).error_code) == 0
        for c in held:
            c.close()
    finally:
        b.stop()


def test_bad_connections_cannot_flood_the_log(broker: BrokerProcess) -> None:
    for _ in range(300):
        with socket.create_connection(("127.0.0.1", broker.port), timeout=10) as s:
            s.sendall(struct.pack(">i", -5))
            s.recv(1)
    w.assert_wire_healthy(broker.port)
    log = broker.log_path.read_text(errors="replace")
    lines = [ln for ln in log.splitlines() if "closing the connection" in ln]
    assert len(lines) <= 40, f"{len(lines)} warning lines for 300 bad connections"
