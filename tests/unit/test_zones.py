"""Zone awareness, the pure parts: a client's zone, listener names and racks, the in-zone
broker choice, and the private inter-broker codecs (protocol/zone.py)."""

from __future__ import annotations

from types import SimpleNamespace

import pytest

from broker_service.api.api_versions import api_keys
from broker_service.api.zones import client_zone, zone_from_client_id, zone_server
from broker_service.config.broker import BrokerConfig, inter_broker_listener
from broker_service.config.listeners import ListenerConfigError, build_listeners
from broker_service.protocol.frames import RequestHeader
from broker_service.protocol.zone import (
    PRIVATE_KEYS,
    ForwardItem,
    ForwardRequest,
    ForwardResult,
    PartitionState,
    RangeInfo,
    ReplicaAsk,
    ReplicaStateRequest,
    encode_forward_request,
    encode_forward_response,
    encode_replica_request,
    encode_replica_response,
    parse_forward_request,
    parse_forward_response,
    parse_replica_request,
    parse_replica_response,
)


@pytest.mark.parametrize(
    ("client_id", "zone"),
    [
        ("myapp;az=us-east-1a", "us-east-1a"),
        ("az=euw1-az2", "euw1-az2"),
        ("producer-1,ws_az=us-east-1b", "us-east-1b"),  # WarpStream's spelling
        ("x automq_az=use1-az1", "use1-az1"),
        ("a;az=zone-a;az=zone-b", "zone-b"),  # the last one wins
        ("lazy=1", None),  # not a marker
        ("myapp", None),
        ("", None),
    ],
)
def test_zone_from_client_id(client_id: str, zone: str | None) -> None:
    assert zone_from_client_id(client_id) == zone


def _header(client_id: str | None, rack: str | None) -> RequestHeader:
    h = RequestHeader(3, 12, 1, client_id, 0, True)
    h.session = SimpleNamespace(listener=SimpleNamespace(rack=rack))
    return h


def test_client_zone_marker_then_listener_then_unknown() -> None:
    assert client_zone(_header("app;az=z1", "z2")) == "z1"
    assert client_zone(_header("app", "z2")) == "z2"
    assert client_zone(_header(None, None)) is None


def test_zone_server_is_the_leader_in_zone_else_stable_and_spread() -> None:
    def plog(p: int, leader: int) -> SimpleNamespace:
        return SimpleNamespace(topic="t", partition=p, leader_id=leader)

    assert zone_server([4, 5], plog(0, 5)) == 5  # the leader is in the zone
    assert zone_server([], plog(0, 1)) == 1  # no broker in the zone: the leader
    picks = [zone_server([4, 5, 6], plog(p, 1)) for p in range(60)]
    assert picks == [zone_server([6, 5, 4], plog(p, 1)) for p in range(60)]  # stable
    assert {4, 5, 6} == set(picks)  # partitions spread over the zone's brokers


def test_listener_names_map_to_protocols_and_racks() -> None:
    got = build_listeners(
        "PLAINTEXT://0.0.0.0:9092,ZONE_A://0.0.0.0:9101,ZONE_B://0.0.0.0:9102",
        None, "h", 1, "10.0.0.7", None,
        "ZONE_A:SASL_SSL,ZONE_B:SASL_SSL", "ZONE_A:us-east-1a,ZONE_B:us-east-1b",
    )  # fmt: skip
    assert [(g.name, g.protocol, g.rack, g.advertised_port) for g in got] == [
        ("PLAINTEXT", "PLAINTEXT", None, 9092),
        ("ZONE_A", "SASL_SSL", "us-east-1a", 9101),
        ("ZONE_B", "SASL_SSL", "us-east-1b", 9102),
    ]
    assert got[1].tls and got[1].sasl and not got[0].sasl
    assert inter_broker_listener(got).name == "PLAINTEXT"


@pytest.mark.parametrize(
    ("listeners", "protocols", "racks"),
    [
        ("ZONE_A://h:1", None, None),  # a name needs a protocol
        ("ZONE_A://h:1", "ZONE_A:NOPE", None),
        ("PLAINTEXT://h:1", None, "ZONE_X:a"),  # a rack for no listener
        ("PLAINTEXT://h:1", None, "PLAINTEXT"),
    ],
)
def test_bad_listener_maps_are_refused(
    listeners: str, protocols: str | None, racks: str | None
) -> None:
    with pytest.raises(ListenerConfigError):
        build_listeners(listeners, None, "h", 1, None, None, protocols, racks)


def test_zonal_listeners_are_not_the_inter_broker_listener() -> None:
    cfg = BrokerConfig(
        listeners="ZONE_A://127.0.0.1:9101,INTERNAL://127.0.0.1:9100",
        listener_security_protocol_map="ZONE_A:PLAINTEXT,INTERNAL:PLAINTEXT",
        listener_racks="ZONE_A:a",
    )
    assert cfg.advertised == ("127.0.0.1", 9100)


def test_private_apis_are_not_advertised() -> None:
    import broker_service.api  # noqa: F401  (registers the handlers)

    assert not PRIVATE_KEYS & {a["api_key"] for a in api_keys()}


def test_forward_codec_round_trips() -> None:
    req = ForwardRequest(1500, -1, "zfw/1-2-3-4.sso",
                         [ForwardItem("t", 0, 0, 120), ForwardItem("u", 3, 120, 77)])  # fmt: skip
    assert parse_forward_request(encode_forward_request(req)) == req
    res = [ForwardResult(), ForwardResult(6, -1, -1, -1, "not the leader")]
    assert parse_forward_response(encode_forward_response(res)) == res


def test_replica_state_codec_round_trips() -> None:
    req = ReplicaStateRequest(500, [ReplicaAsk("t", 2, 100, 2**62)])
    assert parse_replica_request(encode_replica_request(req)) == req
    states = [
        PartitionState(0, 4, 10, 250, 240, 200,
                       [RangeInfo(100, 200, "wal/k.sso", 0, 900, 17)], [(7, 120, 150)]),
        PartitionState(error_code=6, leader_epoch=5),
    ]  # fmt: skip
    assert parse_replica_response(encode_replica_response(states)) == states


def test_forward_request_with_a_lying_count_is_refused() -> None:
    from broker_service.protocol.primitives import ProtocolError

    body = bytearray(encode_forward_request(ForwardRequest(1, -1, "k", [])))
    body[-4:] = (10**6).to_bytes(4, "big")
    with pytest.raises(ProtocolError):
        parse_forward_request(bytes(body))
