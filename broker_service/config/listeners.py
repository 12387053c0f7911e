"""Listener specs: ``NAME://host:port`` lists, as Kafka's ``listeners`` setting."""

from __future__ import annotations

from dataclasses import dataclass

PLAINTEXT, SSL, SASL_PLAINTEXT, SASL_SSL = "PLAINTEXT", "SSL", "SASL_PLAINTEXT", "SASL_SSL"
PROTOCOLS = (PLAINTEXT, SSL, SASL_PLAINTEXT, SASL_SSL)
WILDCARD_HOSTS = ("0.0.0.0", "::", "")


class ListenerConfigError(ValueError):
    pass


@dataclass(frozen=True, slots=True)
class Listener:
    name: str  # the security protocol (one listener per protocol)
    host: str
    port: int
    advertised_host: str
    advertised_port: int

    @property
    def tls(self) -> bool:
        return self.name in (SSL, SASL_SSL)

    @property
    def sasl(self) -> bool:
        return self.name in (SASL_PLAINTEXT, SASL_SSL)


def parse_endpoints(spec: str) -> list[tuple[str, str, int]]:
    """``PLAINTEXT://127.0.0.1:9092,SASL_SSL://[::]:9094`` -> [(name, host, port), ...]."""
    out: list[tuple[str, str, int]] = []
    for item in (s.strip() for s in spec.split(",")):
        if not item:
            continue
        name, sep, rest = item.partition("://")
        host, colon, port = rest.rpartition(":")
        if not sep or not colon or not port.isdigit():
            raise ListenerConfigError(f"listener {item!r} is not NAME://host:port")
        name = name.strip().upper()
        if name not in PROTOCOLS:
            raise ListenerConfigError(f"listener name {name!r} is not one of {PROTOCOLS}")
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
) -> list[Listener]:
    """The listeners to open. Advertised endpoints match by name, else by position; a
    listener without one advertises its own address, or ``advertised_host`` with its port
    when it binds a wildcard address (``advertised_host``/``_port`` for the default single
    PLAINTEXT listener)."""
    if not listeners:
        return [Listener(PLAINTEXT, host, port, advertised_host or host, advertised_port or port)]
    bound = parse_endpoints(listeners)
    if not bound:
        raise ListenerConfigError("BROKER_LISTENERS names no listener")
    adv = parse_endpoints(advertised) if advertised else []
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
        out.append(Listener(name, h, p, ah, ap))
    return out
