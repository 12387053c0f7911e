"""A broker started on port 0 (every test broker is) listens, registers and advertises the
ports the OS gave it, on every listener, and serves /metrics on the reported port."""

from __future__ import annotations

import urllib.request
from pathlib import Path

from tests import kafka_wire as w
from tests.support.broker import BrokerProcess, cluster, running
from tests.support.wait import wait_for_value


def _advertised(port: int) -> dict[int, tuple[str, int]]:
    with w.WireClient(port) as c:
        md = c.call(w.metadata_request(12))
    return {int(b.node_id): (str(b.host), int(b.port)) for b in md.brokers}


def test_every_listener_advertises_its_bound_port(tmp_path: Path) -> None:
    b = BrokerProcess(tmp_path / "data",
                      BROKER_LISTENERS="PLAINTEXT://127.0.0.1:0,SASL_PLAINTEXT://127.0.0.1:0")
    with running(b):
        plain, sasl = b.ports["PLAINTEXT"], b.ports["SASL_PLAINTEXT"]
        assert 0 not in (plain, sasl) and plain != sasl and b.port == plain
        assert _advertised(plain) == {1: ("127.0.0.1", plain)}
        # (Metadata before authentication is refused on SASL: the ready file says what the
        # broker registered for that listener)
        assert b.info["listeners"]["SASL_PLAINTEXT"]["advertised_port"] == sasl
        with urllib.request.urlopen(b.metrics_url, timeout=10) as resp:
            assert b"kafka_broker_bytes_in" in resp.read()


def test_brokers_on_port_0_find_each_other_at_their_real_ports(tmp_path: Path) -> None:
    brokers = cluster(tmp_path / "shared", 2)
    with running(*brokers):
        want = {b.node_id: ("127.0.0.1", b.port) for b in brokers}
        for b in brokers:
            wait_for_value(lambda b=b: _advertised(b.port), lambda got: got == want, 20,
                           f"broker {b.node_id} sees both at their bound ports")
