"""Port 0: the config takes the ports the listeners really got (runtime/ready.py), so what
the broker registers and advertises is where it listens; the ready file is whole or absent."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from broker_service.config import BrokerConfig
from broker_service.runtime.ready import adopt_bound_ports, ready_info, write_ready_file


def test_default_listener_on_port_0_takes_the_bound_port() -> None:
    cfg = BrokerConfig(port=0, advertised_host="broker-1.internal")
    (lst,) = adopt_bound_ports(cfg, [41234])
    assert (lst.port, lst.advertised_host, lst.advertised_port) == (
        41234, "broker-1.internal", 41234)
    assert cfg.advertised == ("broker-1.internal", 41234)  # what the broker registers


def test_fixed_ports_are_left_alone() -> None:
    cfg = BrokerConfig(port=9092, advertised_port=19092)
    (lst,) = adopt_bound_ports(cfg, [9092])
    assert (lst.port, lst.advertised_port) == (9092, 19092)
    assert cfg.port == 9092


def test_named_listeners_on_port_0_and_their_advertised_endpoints() -> None:
    cfg = BrokerConfig(
        listeners="PLAINTEXT://127.0.0.1:0,SASL_SSL://[::1]:0,SSL://127.0.0.1:9093",
        advertised_listeners="SASL_SSL://public.example:0,PLAINTEXT://10.0.0.1:0",
    )
    got = adopt_bound_ports(cfg, [40001, 40002, 9093])
    assert [(x.name, x.host, x.port, x.advertised_host, x.advertised_port) for x in got] == [
        ("PLAINTEXT", "127.0.0.1", 40001, "10.0.0.1", 40001),
        ("SASL_SSL", "::1", 40002, "public.example", 40002),
        ("SSL", "127.0.0.1", 9093, "127.0.0.1", 9093),
    ]
    assert cfg.advertised == ("10.0.0.1", 40001)  # the PLAINTEXT listener is registered
    assert cfg.listener_list() == got


def test_a_bound_port_per_listener_is_required() -> None:
    with pytest.raises(ValueError):
        adopt_bound_ports(BrokerConfig(port=0), [1, 2])


def test_ready_file_is_written_whole(tmp_path: Path) -> None:
    cfg = BrokerConfig(port=0, node_id=4)
    listeners = adopt_bound_ports(cfg, [40123])
    path = tmp_path / "sub" / "broker.ready"
    write_ready_file(path, ready_info(cfg, listeners, 40124))
    info = json.loads(path.read_text())
    assert info["port"] == 40123 and info["metrics_port"] == 40124 and info["node_id"] == 4
    assert info["listeners"]["PLAINTEXT"]["advertised_port"] == 40123
    assert [p.name for p in path.parent.iterdir()] == ["broker.ready"]  # no temporary left


def test_metrics_port_accepts_auto(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("BROKER_METRICS_PORT", "auto")
    assert BrokerConfig().metrics_port == "auto"
    monkeypatch.setenv("BROKER_METRICS_PORT", "0")
    assert BrokerConfig().metrics_port == 0
    monkeypatch.setenv("BROKER_METRICS_PORT", "-1")
    with pytest.raises(ValueError):
        BrokerConfig()
