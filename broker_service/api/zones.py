"""Which availability zone a client is in, and which broker of that zone serves it.

A client's zone comes from (DESIGN.md section 10):

1. a marker in its ``client.id``: ``az=<zone>`` (``myapp;az=us-east-1a``), also accepted with
   a prefix as other Kafka services spell it (``ws_az=``, ``automq_az=``, ``diskless_az=``);
2. else the listener it connected through, when that listener has a rack
   (``BROKER_LISTENER_RACKS``; on AWS one listener per AZ behind that AZ's bootstrap);
3. else it is unknown: classic routing, every partition at its leader.

A zoned client is told, for each partition, a live broker of its zone as the leader: the real
leader when it is in the zone, else a stable choice among the zone's brokers (rendezvous
hashing of the partition, control/placement.py), so each partition's zone traffic goes to one
broker. That broker forwards produce to the real leader through the object store
(kafka/zone_forward.py) and serves fetches from committed objects (kafka/replicas.py). Fetch
requests with a ``rack_id`` (KIP-392) get an in-zone broker as ``preferred_read_replica``.
"""

from __future__ import annotations

import re
from functools import lru_cache
from typing import TYPE_CHECKING

from broker_service.control.placement import owner
from broker_service.protocol.frames import RequestHeader

if TYPE_CHECKING:
    from broker_service.api.services import BrokerServices
    from broker_service.kafka.partition import PartitionLog

_MARKER = re.compile(r"(?:^|[^A-Za-z0-9])(?:[A-Za-z0-9]+_)?az=([A-Za-z0-9._-]+)")


@lru_cache(maxsize=4096)
def zone_from_client_id(client_id: str) -> str | None:
    """``az=<zone>`` in a client id (the last one wins, as a later setting would)."""
    found = _MARKER.findall(client_id)
    return found[-1] if found else None


def client_zone(header: RequestHeader) -> str | None:
    """The zone of the client that sent ``header``: its client.id marker, else its
    listener's rack, else None (unknown)."""
    if header.client_id:
        zone = zone_from_client_id(header.client_id)
        if zone is not None:
            return zone
    session = header.session
    listener = getattr(session, "listener", None)
    return getattr(listener, "rack", None)


def zone_broker_ids(broker: BrokerServices, zone: str | None) -> list[int]:
    """Live brokers whose rack is ``zone`` (empty for an unknown zone or a zone without
    brokers: classic routing then)."""
    if zone is None:
        return []
    return [b.broker_id for b in broker.live_brokers() if b.rack == zone]


def zone_server(zone_ids: list[int], plog: PartitionLog) -> int:
    """The broker a client of the zone of ``zone_ids`` uses for ``plog``: its leader when
    that is in the zone (or the zone has no broker), else a stable in-zone choice."""
    if not zone_ids or plog.leader_id in zone_ids:
        return plog.leader_id
    return owner(f"{plog.topic}\x00{plog.partition}", zone_ids)


def serves_zone(broker: BrokerServices, header: RequestHeader) -> bool:
    """Whether this broker stands in for partition leaders for this client: the client is
    in this broker's zone."""
    rack = broker.config.rack
    return rack is not None and client_zone(header) == rack
