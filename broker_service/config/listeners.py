"""Listener specs: ``NAME://host:port`` lists, as Kafka's ``listeners`` setting.

A listener's name is its security protocol (PLAINTEXT, SSL, SASL_PLAINTEXT, SASL_SSL), or any
name mapped to one by ``listener.security.protocol.map`` (``ZONE_A:SASL_SSL``), as in Kafka:
so one broker can offer several listeners of one protocol, e.g. one per availability zone.
A listener may carry a rack (``listener racks``, ``ZONE_A:us-east-1a``): a client that
connects through it is in that zone (see api/zones.py)."""

from __future__ import annotations

from dataclasses import dataclass

PLAINTEXT, SSL, SASL_PLAINTEXT, SASL_SSL = "PLAINTEXT", "SSL", "SASL_PLAINTEXT", "SASL_SSL"
PROTOCOLS = (PLAINTEXT, SSL, SASL_PLAINTEXT, SASL_SSL)
WILDCARD_HOSTS = ("0.0.0.0", "::", "")


class ListenerConfigError(ValueError):
    pass


@dataclass(frozen=True, slots=True)
class Listener:
    name: str  # the listener's name: its security protocol unless mapped
    host: str
    port: int
    advertised_host: str
    advertised_port: int
    protocol: str = ""  # the security protocol ("": the name)
    rack: str | None = None  # clients connecting through this listener are in this zone

    def __post_init__(self) -> None:
        if not self.protocol:
            object.__setattr__(self, "protocol", self.name)

    @property
    def tls(self) -> bool:
        return self.protocol in (SSL, SASL_SSL)

    @property
    def sasl(self) -> bool:
        return self.protocol in (SASL_PLAINTEXT, SASL_SSL)


def parse_map(spec: str | None, what: str) -> dict[str, str]:
    """``NAME:VALUE,NAME:VALUE`` (Kafka's map settings) -> {NAME: VALUE}; names upper-cased."""
    out: dict[str, str] = {}
    for item in (s.strip() for s in (spec or "").split(",")):
        if not item:
            continue
        name, sep, value = item.partition(":")
        if not sep or not name.strip() or not value.strip():
            raise ListenerConfigError(f"{what} entry {item!r} is not NAME:VALUE")
        out[name.strip().upper()] = value.strip()
    return out


def parse_endpoints(
    spec: str, protocols: dict[str, str] | None = None
) -> list[tuple[str, str, int]]:
    """``PLAINTEXT://127.0.0.1:9092,SASL_SSL://[::]:9094`` -> [(name, host, port), ...].
    A name is a security protocol, or a name ``protocols`` maps to one."""
    out: list[tuple[str, str, int]] = []
    for item in (s.strip() for s in spec.split(",")):
        if not item:
            continue
        name, sep, rest = item.partition("://")
        host, colon, port = rest.rpartition(":")
        if not sep or not colon or not port.isdigit():
            raise ListenerConfigError(f"listener {item!r} is not NAME://host:port")
        name = name.strip().upper()
        if name not in PROTOCOLS and name not in (protocols or {}):
            raise ListenerConfigError(
                f"listener name {name!r} is not one of {PROTOCOLS} and has no entry in the "
                "listener security protocol map"
            )
        out.append((name, host.strip("[]"), int(port)))
    names = [n for n, _, _ in out]
    if len(set(names)) != len(names):
        raise ListenerConfigError(f"each listener name may appear once: {spec!r}")
    return out


def build_listeners(
    listeners: str | None,
    advertised: str | None,
    host: str,
    port: int,
    advertised_host: str | None,
    advertised_port: int | None,
    protocol_map: str | None = None,
    racks: str | None = None,
) -> list[Listener]:
    """The listeners to open. Advertised endpoints match by name, else by position; a
    listener without one advertises its own address, or ``advertised_host`` with its port
    when it binds a wildcard address (``advertised_host``/``_port`` for the default single
    PLAINTEXT listener). ``protocol_map`` (``NAME:PROTOCOL,...``) gives other names their
    protocol; ``racks`` (``NAME:rack,...``) the zone of the clients each listener serves."""
    protocols = parse_map(protocol_map, "listener security protocol map")
    bad = {n: p for n, p in protocols.items() if p.upper() not in PROTOCOLS}
    if bad:
        raise ListenerConfigError(f"unknown security protocols in the map: {bad}")
    rack_of = parse_map(racks, "listener racks")
    if not listeners:
        if rack_of.keys() - {PLAINTEXT}:
            raise ListenerConfigError(f"listener racks name unknown listeners: {sorted(rack_of)}")
        return [Listener(PLAINTEXT, host, port, advertised_host or host, advertised_port or port,
                         rack=rack_of.get(PLAINTEXT))]  # fmt: skip
    bound = parse_endpoints(listeners, protocols)
    if not bound:
        raise ListenerConfigError("BROKER_LISTENERS names no listener")
    unknown = rack_of.keys() - {n for n, _, _ in bound}
    if unknown:
        raise ListenerConfigError(f"listener racks name unknown listeners: {sorted(unknown)}")
    adv = parse_endpoints(advertised, protocols) if advertised else []
    by_name = {n: (h, p) for n, h, p in adv}
    out = []
    for i, (name, h, p) in enumerate(bound):
        if name in by_name:
            ah, ap = by_name[name]
        elif adv and i < len(adv) and adv[i][0] not in {n for n, _, _ in bound}:
            ah, ap = adv[i][1], adv[i][2]
        elif h in WILDCARD_HOSTS and advertised_host:
            ah, ap = advertised_host, p  # e.g. BROKER_ADVERTISED_HOST=ecs: the task's address
        else:
            ah, ap = h, p
        protocol = protocols.get(name, name).upper()
        out.append(Listener(name, h, p, ah, ap, protocol, rack_of.get(name)))
    return out
