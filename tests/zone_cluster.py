"""A cluster of broker processes in simulated availability zones on 127.0.0.1, with every
client and inter-broker byte counted (tests/integration/test_zones.py, bench/zones.py).

Broker ``i`` is in rack ``racks[i]`` and listens on:

- ``PLAINTEXT``: between brokers (its registered endpoint), advertised through a relay, so
  broker-to-broker bytes are counted;
- ``CLIENT_<R>`` for each rack ``R``: the clients of rack ``R`` connect only there (their
  bootstrap is one, and metadata answers on a listener with every broker's endpoint of the
  same listener), each advertised through a relay: the bytes of a (client rack, broker rack)
  pair are those of relay ``b<i>:CLIENT_<R>``. With ``listener_racks`` these listeners also
  carry their rack (BROKER_LISTENER_RACKS), which makes their clients zoned by themselves;
- ``ADMIN``: not counted (topic creation and checks by the test itself).
"""

from __future__ import annotations

import contextlib
import urllib.request
import uuid
from dataclasses import dataclass, field
from pathlib import Path

from prometheus_client.parser import text_string_to_metric_families

from tests.netcount import Relays
from tests.support.broker import BrokerProcess

RACKS = ("a", "b", "c")


def client_listener(rack: str) -> str:
    return f"CLIENT_{rack.upper()}"


@dataclass
class ZoneCluster:
    brokers: list[BrokerProcess]
    racks: list[str]
    relays: Relays
    admin_ports: list[int]
    client_ports: dict[tuple[int, str], int] = field(default_factory=dict)  # (broker, rack)

    def bootstrap(self, rack: str) -> str:
        """Where a client of ``rack`` bootstraps: its own zone's broker(s)."""
        return ",".join(
            f"127.0.0.1:{self.client_ports[(i, rack)]}"
            for i, r in enumerate(self.racks)
            if r == rack
        )

    @property
    def admin(self) -> str:
        return ",".join(f"127.0.0.1:{p}" for p in self.admin_ports)

    def traffic(self) -> dict[str, int]:
        """Bytes so far: ``in_zone`` and ``cross_zone`` (client to broker, both directions),
        ``broker_to_broker``, and per pair ``client:<rack>->broker:<rack>``."""
        snap = self.relays.snapshot()
        out: dict[str, int] = {"in_zone": 0, "cross_zone": 0, "broker_to_broker": 0}
        for i, broker_rack in enumerate(self.racks):
            up, down = snap[f"b{i}:PLAINTEXT"]
            out["broker_to_broker"] += up + down
            for rack in sorted(set(self.racks)):
                up, down = snap[f"b{i}:{client_listener(rack)}"]
                key = f"client:{rack}->broker:{broker_rack}"
                out[key] = out.get(key, 0) + up + down
                out["in_zone" if rack == broker_rack else "cross_zone"] += up + down
        return out

    def inter_broker(self, broker: int | None = None) -> dict[tuple[str, str, str], int]:
        """What the brokers count of their requests to each other (their /metrics:
        ``kafka_broker_inter_broker_bytes`` and ``_requests``), as (``bytes`` or
        ``requests``, API key, connection channel) -> total, summed over every broker or
        only ``broker`` (an index)."""
        out: dict[tuple[str, str, str], int] = {}
        for b in self.brokers if broker is None else [self.brokers[broker]]:
            with urllib.request.urlopen(b.metrics_url, timeout=10) as r:
                text = r.read().decode()
            for family in text_string_to_metric_families(text):
                kind = family.name.removeprefix("kafka_broker_inter_broker_")
                if kind not in ("bytes", "requests"):
                    continue
                for sample in family.samples:
                    if sample.name.endswith("_total"):
                        key = (kind, sample.labels["api_key"], sample.labels["channel"])
                        out[key] = out.get(key, 0) + int(sample.value)
        return out

    def inter_broker_counted(self) -> dict[str, int]:
        """Bytes the brokers sent each other and got back, by API key (``inter_broker``)."""
        out: dict[str, int] = {}
        for (kind, api_key, _), n in self.inter_broker().items():
            if kind == "bytes":
                out[api_key] = out.get(api_key, 0) + n
        return out

    def inter_broker_requests(self, broker: int) -> dict[tuple[str, str], int]:
        """Requests broker ``broker`` (an index) sent to other brokers, by (API key,
        connection channel)."""
        return {(k, ch): n for (kind, k, ch), n in self.inter_broker(broker).items()
                if kind == "requests"}  # fmt: skip

    def stop(self) -> None:
        for b in self.brokers:
            with contextlib.suppress(Exception):
                b.stop()
        self.relays.close()


def start_zone_cluster(
    data_dir: Path,
    racks: tuple[str, ...] = RACKS,
    listener_racks: bool = False,
    **env: str,
) -> ZoneCluster:
    relays = Relays()
    zones = sorted(set(racks))
    brokers: list[BrokerProcess] = []
    admin_ports: list[int] = []
    client_ports: dict[tuple[int, str], int] = {}
    try:
        for i, rack in enumerate(racks):
            # every listener binds port 0; the relays (whose ports are advertised) learn the
            # ports the broker got from its ready file
            bound = ["PLAINTEXT://127.0.0.1:0", "ADMIN://127.0.0.1:0"]
            advertised = [
                f"PLAINTEXT://127.0.0.1:{relays.add(f'b{i}:PLAINTEXT', '127.0.0.1', 0)}",
                "ADMIN://127.0.0.1:0",
            ]
            for z in zones:
                name = client_listener(z)
                relay = relays.add(f"b{i}:{name}", "127.0.0.1", 0)
                client_ports[(i, z)] = relay
                bound.append(f"{name}://127.0.0.1:0")
                advertised.append(f"{name}://127.0.0.1:{relay}")
            names = ["ADMIN"] + [client_listener(z) for z in zones]
            broker_env = {
                # partitions stay where the topic's creation spread them: which route a
                # write takes (direct or forwarded) is part of what is measured
                "BROKER_AUTO_BALANCE": "false",
                "BROKER_NODE_ID": str(i + 1),
                "BROKER_RACK": rack,
                "BROKER_LISTENERS": ",".join(bound),
                "BROKER_ADVERTISED_LISTENERS": ",".join(advertised),
                "BROKER_LISTENER_SECURITY_PROTOCOL_MAP": ",".join(f"{n}:PLAINTEXT" for n in names),
                **env,
            }
            if listener_racks:
                broker_env["BROKER_LISTENER_RACKS"] = ",".join(
                    f"{client_listener(z)}:{z}" for z in zones
                )
            b = BrokerProcess(data_dir, **broker_env).start()
            brokers.append(b)
            for name, port in b.ports.items():
                if name != "ADMIN":
                    relays.retarget(f"b{i}:{name}", "127.0.0.1", port)
            admin_ports.append(b.ports["ADMIN"])
    except BaseException:
        for b in brokers:
            with contextlib.suppress(Exception):
                b.stop()
        relays.close()
        raise
    return ZoneCluster(brokers, list(racks), relays, admin_ports, client_ports)


def cloud_env(endpoint: str) -> dict[str, str]:
    """S3 + DynamoDB on moto server: a fresh bucket and table."""
    import boto3

    from broker_service.metadata.dynamodb import DynamoDbMetadataStore
    from tests.support.moto import AWS_TEST_ENV, REGION

    bucket, table = f"zones-{uuid.uuid4().hex[:8]}", f"zones-{uuid.uuid4().hex[:8]}"
    session = boto3.session.Session(
        aws_access_key_id="testing", aws_secret_access_key="testing", region_name=REGION
    )
    session.client("s3", endpoint_url=endpoint).create_bucket(Bucket=bucket)
    DynamoDbMetadataStore(
        table, client=session.client("dynamodb", endpoint_url=endpoint)
    ).create_table()
    return {
        "BROKER_STORAGE": f"s3://{bucket}/zones",
        "BROKER_METADATA": f"dynamodb://{table}",
        "AWS_ENDPOINT_URL": endpoint,
        **AWS_TEST_ENV,
    }
