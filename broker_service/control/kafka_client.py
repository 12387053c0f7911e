"""A tiny synchronous Kafka client for the operator tools, built only on broker_service.protocol.

One blocking socket per broker. On connect it asks ApiVersions v0 (which every broker answers)
and from then on sends each request in the highest version both sides speak among the ones
this client handles (``CLIENT_VERSIONS``). Requests are kio dataclasses (built from dicts with
``shape`` and written by kio); responses are read with the bounds-checked ``schema_reader``.

Only what the ``groups`` CLI needs is here: Metadata, FindCoordinator, ListGroups,
DescribeGroups, OffsetFetch and ListOffsets, with retries on retriable coordinator errors.
"""

from __future__ import annotations

import socket
import ssl
import struct
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from typing import Any, TypeVar

from kio.index import load_request_schema
from kio.schema.errors import ErrorCode

from broker_service.protocol.client import decode_response, request_frame, response_correlation_id
from broker_service.protocol.codec import shape
from broker_service.security.client import ClientSecurity

LIST_OFFSETS = 2
METADATA = 3
OFFSET_FETCH = 9
FIND_COORDINATOR = 10
DESCRIBE_GROUPS = 15
LIST_GROUPS = 16
API_VERSIONS = 18
CONSUMER_GROUP_DESCRIBE = 69

API_NAMES = {
    LIST_OFFSETS: "ListOffsets",
    METADATA: "Metadata",
    OFFSET_FETCH: "OffsetFetch",
    FIND_COORDINATOR: "FindCoordinator",
    DESCRIBE_GROUPS: "DescribeGroups",
    LIST_GROUPS: "ListGroups",
    API_VERSIONS: "ApiVersions",
    CONSUMER_GROUP_DESCRIBE: "ConsumerGroupDescribe",
}

# Versions this client knows how to fill in and read back (inclusive ranges). OffsetFetch
# starts at v2, the first where a null topic list means "every committed partition".
CLIENT_VERSIONS: dict[int, tuple[int, int]] = {
    API_VERSIONS: (0, 0),
    LIST_OFFSETS: (1, 7),
    METADATA: (1, 12),
    OFFSET_FETCH: (2, 9),
    FIND_COORDINATOR: (0, 4),
    DESCRIBE_GROUPS: (0, 5),
    LIST_GROUPS: (0, 5),
    CONSUMER_GROUP_DESCRIBE: (0, 1),
}

LATEST_TIMESTAMP = -1  # ListOffsets: the log end offset (high watermark)
MAX_RESPONSE = 256 * 1024 * 1024
DEFAULT_CLIENT_ID = "broker-service-groups"

_I32 = struct.Struct(">i")

T = TypeVar("T")
TopicPartition = tuple[str, int]


class KafkaClientError(Exception):
    """Anything that stops a request from getting an answer; the message is for humans."""


class BrokerUnreachable(KafkaClientError):
    """No connection could be made."""


class UnsupportedApi(KafkaClientError):
    """The broker does not speak any version of an API that this client handles."""


class KafkaApiError(KafkaClientError):
    """The broker answered with a non-zero error code."""

    def __init__(self, code: ErrorCode, context: str, message: str | None = None) -> None:
        self.code = code
        text = f"{context}: {error_name(code)}"
        if message:
            text += f" ({message})"
        super().__init__(text)

    @property
    def retriable(self) -> bool:
        return bool(getattr(self.code, "retriable", False)) or self.code in (
            ErrorCode.not_coordinator,
            ErrorCode.coordinator_not_available,
            ErrorCode.coordinator_load_in_progress,
        )


def error_name(code: ErrorCode | int) -> str:
    try:
        return ErrorCode(int(code)).name.upper()
    except ValueError:
        return f"error code {int(code)}"


GROUP_STATES = (
    "Unknown",
    "PreparingRebalance",
    "CompletingRebalance",
    "Stable",
    "Dead",
    "Empty",
    "Assigning",
    "Reconciling",
)
_STATE_NAMES = {s.lower(): s for s in GROUP_STATES}


def canonical_state(state: str) -> str:
    """Kafka's spelling of a group state (``stable`` -> ``Stable``), as its GroupState parses."""
    return _STATE_NAMES.get(state.lower(), state)


def parse_address(address: str) -> tuple[str, int]:
    """``host:port`` (``[v6]:port`` too) -> (host, port); ValueError when malformed."""
    host, sep, port = address.strip().rpartition(":")
    if not sep or not host or not port.isdigit() or not 0 < int(port) < 65536:
        raise ValueError(f"invalid broker address {address!r} (expected HOST:PORT)")
    if host.startswith("[") and host.endswith("]"):
        host = host[1:-1]
    return host, int(port)


_default_security: ClientSecurity | None = None


def set_default_security(security: ClientSecurity | None) -> None:
    """What every Connection of this process uses unless given its own: a broker sets this
    to reach the other brokers' registered (possibly SASL / TLS) listener."""
    global _default_security
    _default_security = security


class Connection:
    """A blocking connection to one broker that knows which API versions it speaks."""

    def __init__(
        self,
        host: str,
        port: int,
        *,
        client_id: str = DEFAULT_CLIENT_ID,
        timeout: float = 5.0,
        security: ClientSecurity | None = None,
    ) -> None:
        sec = security or _default_security or ClientSecurity()
        self.host = host
        self.port = port
        self.client_id = client_id
        self._correlation = 0
        self._sock: socket.socket | None = None
        try:
            self._sock = socket.create_connection((host, port), timeout=timeout)
        except OSError as exc:
            raise BrokerUnreachable(
                f"cannot connect to broker at {self.address}: {_reason(exc)}"
            ) from None
        self._sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        self.versions: dict[int, tuple[int, int]] = {}
        try:
            if sec.protocol in ("SSL", "SASL_SSL"):
                ctx = sec.ssl_context or ssl.create_default_context()
                self._sock = ctx.wrap_socket(self._sock, server_hostname=host)
            self.versions = self._negotiate()
            if sec.protocol in ("SASL_PLAINTEXT", "SASL_SSL"):
                self._authenticate(sec)
        except ssl.SSLError as exc:
            self.close()
            raise BrokerUnreachable(f"TLS with {self.address} failed: {exc}") from None
        except BaseException:
            self.close()
            raise

    def _authenticate(self, sec: ClientSecurity) -> None:
        """SaslHandshake v1 + SaslAuthenticate v1: SCRAM (the server's proof is checked) or
        PLAIN."""
        if not sec.username or sec.password is None:
            raise KafkaClientError(f"{self.address} needs SASL credentials")
        handshake: Any = load_request_schema(17, 1)
        hs = self.send(handshake(mechanism=sec.mechanism))
        if hs.error_code != ErrorCode.none:
            raise KafkaApiError(hs.error_code, f"SaslHandshake with {self.address}")
        auth: Any = load_request_schema(36, 1)

        def step(token: bytes) -> bytes:
            resp = self.send(auth(auth_bytes=token))
            if resp.error_code != ErrorCode.none:
                raise KafkaApiError(
                    resp.error_code, f"SaslAuthenticate with {self.address}", resp.error_message
                )
            return bytes(resp.auth_bytes)

        if sec.mechanism == "PLAIN":
            step(b"\x00" + sec.username.encode() + b"\x00" + sec.password.encode())
            return
        from scramp import ScramClient, ScramException

        client = ScramClient([sec.mechanism], sec.username, sec.password)
        try:
            client.set_server_first(step(client.get_client_first().encode()).decode())
            client.set_server_final(step(client.get_client_final().encode()).decode())
        except ScramException as exc:
            raise KafkaClientError(f"SCRAM with {self.address} failed: {exc}") from None

    @property
    def address(self) -> str:
        return f"[{self.host}]:{self.port}" if ":" in self.host else f"{self.host}:{self.port}"

    @property
    def closed(self) -> bool:
        return self._sock is None

    def close(self) -> None:
        if self._sock is not None:
            try:
                self._sock.close()
            finally:
                self._sock = None

    def _negotiate(self) -> dict[int, tuple[int, int]]:
        cls = load_request_schema(API_VERSIONS, 0)
        resp = self.send(cls())
        if resp.error_code != ErrorCode.none:
            raise KafkaApiError(resp.error_code, f"ApiVersions from {self.address}")
        return {int(k.api_key): (int(k.min_version), int(k.max_version)) for k in resp.api_keys}

    def version(self, api_key: int) -> int:
        """The highest version of ``api_key`` both this client and the broker speak."""
        name = API_NAMES.get(api_key, f"API {api_key}")
        mine = CLIENT_VERSIONS.get(api_key)
        if mine is None:
            raise UnsupportedApi(f"this client does not handle {name}")
        theirs = self.versions.get(api_key)
        if theirs is None:
            raise UnsupportedApi(f"broker at {self.address} does not support {name}")
        low, high = max(mine[0], theirs[0]), min(mine[1], theirs[1])
        if low > high:
            raise UnsupportedApi(
                f"broker at {self.address} speaks {name} v{theirs[0]}-{theirs[1]}; "
                f"this tool needs one of v{mine[0]}-{mine[1]}"
            )
        return high

    def request(self, api_key: int, body: dict[str, Any]) -> tuple[int, Any]:
        """Send ``body`` (Kafka field names) in the negotiated version; (version, response)."""
        version = self.version(api_key)
        entity = shape(load_request_schema(api_key, version), body)
        return version, self.send(entity)

    def send(self, entity: Any) -> Any:
        """Send one kio request dataclass and return the decoded kio response dataclass."""
        api_key = int(entity.__api_key__)
        version = int(entity.__version__)
        name = f"{API_NAMES.get(api_key, f'api {api_key}')} v{version}"
        if self._sock is None:
            raise KafkaClientError(f"connection to {self.address} is closed")
        self._correlation = (self._correlation + 1) & 0x7FFFFFFF
        correlation = self._correlation
        try:
            self._sock.sendall(request_frame(entity, correlation, self.client_id))
            (size,) = _I32.unpack(self._recv_exactly(4, name))
            if not 4 <= size <= MAX_RESPONSE:
                raise KafkaClientError(
                    f"{name}: {self.address} sent a frame size of {size} bytes "
                    "(not a Kafka broker?)"
                )
            frame = self._recv_exactly(size, name)
        except TimeoutError:
            self.close()
            raise KafkaClientError(
                f"timed out waiting for the {name} response from {self.address}"
            ) from None
        except OSError as exc:
            self.close()
            raise KafkaClientError(
                f"connection to {self.address} failed during {name}: {_reason(exc)}"
            ) from None
        except KafkaClientError:
            self.close()
            raise
        try:
            got = response_correlation_id(frame)
            if got != correlation:
                self.close()
                raise KafkaClientError(
                    f"{name}: broker at {self.address} answered correlation id {got}, "
                    f"expected {correlation}"
                )
            return decode_response(api_key, version, frame)
        except ValueError as exc:  # ProtocolError, or a value kio has no name for
            raise KafkaClientError(
                f"malformed {name} response from {self.address}: {exc}"
            ) from None

    def _recv_exactly(self, n: int, name: str) -> bytes:
        assert self._sock is not None
        buf = bytearray()
        while len(buf) < n:
            chunk = self._sock.recv(min(n - len(buf), 1 << 20))
            if not chunk:
                raise KafkaClientError(
                    f"broker at {self.address} closed the connection during {name}"
                )
            buf += chunk
        return bytes(buf)


def _reason(exc: OSError) -> str:
    if isinstance(exc, TimeoutError | socket.timeout):
        return "timed out"
    if isinstance(exc, socket.gaierror):
        return f"cannot resolve host ({exc.strerror or exc})"
    return exc.strerror or str(exc) or type(exc).__name__


# -- results -----------------------------------------------------------------------------


@dataclass(frozen=True)
class Broker:
    node_id: int
    host: str
    port: int


@dataclass
class ClusterMetadata:
    brokers: dict[int, Broker] = field(default_factory=dict)
    # topic -> partition -> leader node id (-1: no leader)
    leaders: dict[str, dict[int, int]] = field(default_factory=dict)
    topic_errors: dict[str, ErrorCode] = field(default_factory=dict)


@dataclass(frozen=True)
class GroupListing:
    group_id: str
    protocol_type: str
    state: str | None  # None: the broker's ListGroups version predates states
    group_type: str | None  # None: before ListGroups v5


@dataclass(frozen=True)
class GroupMember:
    member_id: str
    group_instance_id: str | None
    client_id: str
    client_host: str
    metadata: bytes  # classic: the protocol's member metadata (ConsumerProtocolSubscription)
    assignment: bytes  # classic: the protocol's assignment (ConsumerProtocolAssignment)
    # KIP-848 members (ConsumerGroupDescribe): the current assignment, already decoded
    partitions: tuple[TopicPartition, ...] | None = None


@dataclass(frozen=True)
class GroupDescription:
    group_id: str
    state: str
    protocol_type: str
    protocol: str
    members: tuple[GroupMember, ...]
    coordinator: Broker


# -- the client ---------------------------------------------------------------------------


class KafkaClient:
    """Connections to a cluster, opened on demand, starting from the bootstrap servers."""

    def __init__(
        self,
        bootstrap_servers: str,
        *,
        client_id: str = DEFAULT_CLIENT_ID,
        timeout: float = 5.0,
    ) -> None:
        self.servers = [parse_address(s) for s in bootstrap_servers.split(",") if s.strip()]
        if not self.servers:
            raise ValueError("no bootstrap server given")
        self.client_id = client_id
        self.timeout = timeout
        self._conns: dict[tuple[str, int], Connection] = {}
        self._brokers: dict[int, Broker] = {}
        self._bootstrap: Connection | None = None

    def __enter__(self) -> KafkaClient:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def close(self) -> None:
        for conn in self._conns.values():
            conn.close()
        self._conns.clear()
        self._bootstrap = None

    # -- connections

    def connection(self, host: str, port: int) -> Connection:
        conn = self._conns.get((host, port))
        if conn is None or conn.closed:
            conn = Connection(host, port, client_id=self.client_id, timeout=self.timeout)
            self._conns[(host, port)] = conn
        return conn

    def any_connection(self) -> Connection:
        """A live connection to some bootstrap server (the first that answers)."""
        if self._bootstrap is not None and not self._bootstrap.closed:
            return self._bootstrap
        errors = []
        for host, port in self.servers:
            try:
                self._bootstrap = self.connection(host, port)
                return self._bootstrap
            except KafkaClientError as exc:
                errors.append(str(exc))
        if len(errors) == 1:
            raise BrokerUnreachable(errors[0])
        raise BrokerUnreachable("no bootstrap server reachable: " + "; ".join(errors))

    def node(self, node_id: int) -> Connection:
        broker = self._brokers.get(node_id)
        if broker is None:
            self.metadata([])
            broker = self._brokers.get(node_id)
            if broker is None:
                raise KafkaClientError(f"broker {node_id} is not in the cluster metadata")
        return self.connection(broker.host, broker.port)

    # -- requests

    def metadata(self, topics: Iterable[str] | None) -> ClusterMetadata:
        """Brokers and partition leaders; ``topics=None`` means every topic. Never creates."""
        conn = self.any_connection()
        body = {
            "topics": None if topics is None else [{"name": t} for t in topics],
            "allow_auto_topic_creation": False,
        }
        _, resp = conn.request(METADATA, body)
        md = ClusterMetadata()
        for b in resp.brokers:
            md.brokers[int(b.node_id)] = Broker(int(b.node_id), b.host, int(b.port))
        self._brokers.update(md.brokers)
        for t in resp.topics:
            if t.name is None:
                continue
            if t.error_code != ErrorCode.none:
                md.topic_errors[t.name] = t.error_code
                continue
            md.leaders[t.name] = {
                int(p.partition_index): int(p.leader_id) if p.error_code == ErrorCode.none else -1
                for p in t.partitions
            }
        return md

    def retrying(self, fn: Callable[[], T]) -> T:
        """Call ``fn`` until it stops raising a retriable broker error or time runs out."""
        deadline = time.monotonic() + self.timeout
        delay = 0.05
        while True:
            try:
                return fn()
            except KafkaApiError as exc:
                if not exc.retriable or time.monotonic() + delay > deadline:
                    raise
            time.sleep(delay)
            delay = min(delay * 2, 1.0)

    def find_coordinator(self, group_id: str) -> Broker:
        def attempt() -> Broker:
            conn = self.any_connection()
            version, resp = conn.request(
                FIND_COORDINATOR,
                {"key": group_id, "key_type": 0, "coordinator_keys": [group_id]},
            )
            node = resp.coordinators[0] if version >= 4 else resp
            if version >= 4 and len(resp.coordinators) != 1:
                raise KafkaClientError(
                    f"FindCoordinator: expected 1 coordinator, got {len(resp.coordinators)}"
                )
            if node.error_code != ErrorCode.none:
                raise KafkaApiError(
                    node.error_code,
                    f"finding the coordinator of group '{group_id}'",
                    getattr(node, "error_message", None),
                )
            broker = Broker(int(node.node_id), node.host, int(node.port))
            self._brokers[broker.node_id] = broker
            return broker

        return self.retrying(attempt)

    def list_groups(self) -> list[GroupListing]:
        """Every group on every broker (each broker lists the groups it coordinates)."""
        brokers = self.metadata([]).brokers.values()
        seen: dict[str, GroupListing] = {}
        for broker in sorted(brokers, key=lambda b: b.node_id):
            conn = self.connection(broker.host, broker.port)

            def attempt(conn: Connection = conn) -> Any:
                version, resp = conn.request(LIST_GROUPS, {"states_filter": [], "types_filter": []})
                if resp.error_code != ErrorCode.none:
                    raise KafkaApiError(resp.error_code, f"ListGroups from {conn.address}")
                return version, resp

            version, resp = self.retrying(attempt)
            for g in resp.groups:
                seen[g.group_id] = GroupListing(
                    group_id=g.group_id,
                    protocol_type=g.protocol_type,
                    state=canonical_state(g.group_state) if version >= 4 else None,
                    group_type=g.group_type if version >= 5 else None,
                )
        return sorted(seen.values(), key=lambda g: g.group_id)

    def _with_coordinator(self, group_id: str, fn: Callable[[Broker, Connection], T]) -> T:
        def attempt() -> T:
            broker = self.find_coordinator(group_id)
            return fn(broker, self.connection(broker.host, broker.port))

        return self.retrying(attempt)

    def describe_group(self, group_id: str) -> GroupDescription:
        """Describe a group at its coordinator; an unknown group comes back in state ``Dead``.

        As Kafka's admin client: ConsumerGroupDescribe first (KIP-848 groups, where brokers
        speak it), DescribeGroups when that does not know the group (classic groups).
        """

        def describe(broker: Broker, conn: Connection) -> GroupDescription:
            described = self._consumer_group_describe(group_id, broker, conn)
            if described is not None:
                return described
            _, resp = conn.request(
                DESCRIBE_GROUPS, {"groups": [group_id], "include_authorized_operations": False}
            )
            matches = [g for g in resp.groups if g.group_id == group_id]
            if not matches:
                raise KafkaClientError(f"DescribeGroups: no answer for group '{group_id}'")
            g = matches[0]
            if g.error_code == ErrorCode.group_id_not_found:
                return GroupDescription(group_id, "Dead", "", "", (), broker)
            if g.error_code != ErrorCode.none:
                raise KafkaApiError(g.error_code, f"describing group '{group_id}'")
            members = tuple(
                GroupMember(
                    member_id=m.member_id,
                    group_instance_id=m.group_instance_id,
                    client_id=m.client_id,
                    client_host=m.client_host,
                    metadata=bytes(m.member_metadata or b""),
                    assignment=bytes(m.member_assignment or b""),
                )
                for m in g.members
            )
            return GroupDescription(
                group_id,
                canonical_state(g.group_state),
                g.protocol_type,
                g.protocol_data,
                members,
                broker,
            )

        return self._with_coordinator(group_id, describe)

    def _consumer_group_describe(
        self, group_id: str, broker: Broker, conn: Connection
    ) -> GroupDescription | None:
        """A KIP-848 group's description, or None: not one, or the broker lacks the API."""
        try:
            _, resp = conn.request(
                CONSUMER_GROUP_DESCRIBE,
                {"group_ids": [group_id], "include_authorized_operations": False},
            )
        except UnsupportedApi:
            return None
        matches = [g for g in resp.groups if g.group_id == group_id]
        if not matches:
            return None
        g = matches[0]
        if g.error_code in (ErrorCode.group_id_not_found, ErrorCode.unsupported_version):
            return None  # a classic group (or none at all): DescribeGroups tells
        if g.error_code != ErrorCode.none:
            raise KafkaApiError(g.error_code, f"describing group '{group_id}'", g.error_message)
        members = tuple(
            GroupMember(
                member_id=m.member_id,
                group_instance_id=m.instance_id,
                client_id=m.client_id,
                client_host=m.client_host,
                metadata=b"",
                assignment=b"",
                partitions=tuple(
                    (tp.topic_name, int(p))
                    for tp in (m.assignment.topic_partitions if m.assignment else ())
                    for p in tp.partitions
                ),
            )
            for m in g.members
        )
        return GroupDescription(
            group_id, canonical_state(g.group_state), "consumer", g.assignor_name, members, broker
        )

    def committed_offsets(self, group_id: str) -> dict[TopicPartition, int | None]:
        """The group's committed offsets, every partition (None: no committed offset)."""

        def fetch(broker: Broker, conn: Connection) -> dict[TopicPartition, int | None]:
            version, resp = conn.request(
                OFFSET_FETCH,
                {
                    "group_id": group_id,
                    "topics": None,
                    "require_stable": False,
                    "groups": [
                        {
                            "group_id": group_id,
                            "member_id": None,
                            "member_epoch": -1,
                            "topics": None,
                        }
                    ],
                },
            )
            if version >= 8:
                matches = [g for g in resp.groups if g.group_id == group_id]
                if not matches:
                    raise KafkaClientError(f"OffsetFetch: no answer for group '{group_id}'")
                error, topics = matches[0].error_code, matches[0].topics
            else:
                error, topics = resp.error_code, resp.topics
            if error != ErrorCode.none:
                raise KafkaApiError(error, f"fetching the offsets of group '{group_id}'")
            out: dict[TopicPartition, int | None] = {}
            for t in topics:
                for p in t.partitions:
                    if p.error_code != ErrorCode.none:
                        continue  # e.g. UNKNOWN_TOPIC_OR_PARTITION: not shown, as in Kafka
                    offset = int(p.committed_offset)
                    out[(t.name, int(p.partition_index))] = offset if offset >= 0 else None
            return out

        return self._with_coordinator(group_id, fetch)

    def log_end_offsets(self, partitions: Iterable[TopicPartition]) -> dict[TopicPartition, int]:
        """ListOffsets(latest) at each partition's leader; partitions without one are left out."""
        wanted = sorted(set(partitions))
        if not wanted:
            return {}
        md = self.metadata(sorted({t for t, _ in wanted}))
        by_leader: dict[int, dict[str, list[int]]] = {}
        for topic, partition in wanted:
            leader = md.leaders.get(topic, {}).get(partition, -1)
            if leader >= 0:
                by_leader.setdefault(leader, {}).setdefault(topic, []).append(partition)
        out: dict[TopicPartition, int] = {}
        for leader, topics in sorted(by_leader.items()):
            conn = self.node(leader)
            body = {
                "replica_id": -1,
                "isolation_level": 0,  # read_uncommitted, as kafka-consumer-groups asks
                "topics": [
                    {
                        "name": topic,
                        "partitions": [
                            {
                                "partition_index": p,
                                "current_leader_epoch": -1,
                                "timestamp": LATEST_TIMESTAMP,
                            }
                            for p in parts
                        ],
                    }
                    for topic, parts in topics.items()
                ],
            }
            _, resp = conn.request(LIST_OFFSETS, body)
            for t in resp.topics:
                for p in t.partitions:
                    if p.error_code == ErrorCode.none and int(p.offset) >= 0:
                        out[(t.name, int(p.partition_index))] = int(p.offset)
        return out
