"""``python -m broker_service groups``: list consumer groups and show their lag.

``groups list`` prints the consumer groups with their state (as ``kafka-consumer-groups.sh
--list --state`` does); ``groups describe GROUP...`` / ``--all-groups`` prints, per group,
the table of ``kafka-consumer-groups.sh --describe``: one row per partition with the committed
offset, the log end offset, the lag and the member that owns the partition.

How the rows are built follows Kafka's ConsumerGroupCommand: members with assignments first
(most partitions first), each one's partitions by topic and partition; then partitions with a
committed offset that no member owns, with ``-`` for the owner. Members come from
ConsumerGroupDescribe for KIP-848 groups (where the broker speaks it) and otherwise from
DescribeGroups, whose classic ConsumerProtocolAssignment bytes are decoded here; a member whose
assignment is absent or undecodable owns nothing. LOG-END-OFFSET is ListOffsets(latest) at each
partition's leader. Tables go to stdout, notes and errors to stderr; the exit status is 1 when
the broker is unreachable or a group could not be described (or does not exist).
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import TextIO

from broker_service.control.kafka_client import (
    BrokerUnreachable,
    GroupDescription,
    GroupListing,
    KafkaClient,
    KafkaClientError,
    TopicPartition,
)
from broker_service.protocol.primitives import ByteReader, ProtocolError

DEFAULT_BOOTSTRAP = "127.0.0.1:9092"
DEFAULT_TIMEOUT_MS = 5000
MISSING = "-"
CONSUMER_PROTOCOL = "consumer"
CONSUMER_GROUP_TYPES = ("classic", "consumer")
REBALANCING = ("PreparingRebalance", "CompletingRebalance", "Assigning", "Reconciling")


# -- the consumer protocol ---------------------------------------------------------------


def decode_consumer_assignment(data: bytes) -> list[TopicPartition]:
    """ConsumerProtocolAssignment (any version): int16 version, [topic, [int32]], user data.

    Every version so far has the same non-flexible layout (later versions only add meaning),
    so newer versions are read the same way, as Kafka's own deserializer does. Empty bytes
    (a member between rebalances) mean no partitions. ValueError when malformed.
    """
    if not data:
        return []
    r = ByteReader(data)
    try:
        version = r.i16()
        if version < 0:
            raise ValueError(f"bad consumer assignment version {version}")
        out: list[TopicPartition] = []
        for _ in range(max(r.array_len(False), 0)):
            topic = r.string(False)
            if topic is None:
                raise ValueError("null topic in a consumer assignment")
            for _ in range(max(r.array_len(False), 0)):
                out.append((topic, r.i32()))
        # user data (nullable bytes) follows; not needed here
    except ProtocolError as exc:
        raise ValueError(f"malformed consumer assignment: {exc}") from None
    return out


# -- the describe table --------------------------------------------------------------------


@dataclass(frozen=True)
class PartitionRow:
    group: str
    topic: str | None
    partition: int | None
    current_offset: int | None
    log_end_offset: int | None
    consumer_id: str
    host: str
    client_id: str

    @property
    def lag(self) -> int | None:
        if self.current_offset is None or self.log_end_offset is None:
            return None
        return self.log_end_offset - self.current_offset

    def cells(self) -> tuple[str, ...]:
        def show(v: object) -> str:
            return MISSING if v is None else str(v)

        return (
            self.group,
            show(self.topic),
            show(self.partition),
            show(self.current_offset),
            show(self.log_end_offset),
            show(self.lag),
            self.consumer_id,
            self.host,
            self.client_id,
        )


HEADER = (
    "GROUP",
    "TOPIC",
    "PARTITION",
    "CURRENT-OFFSET",
    "LOG-END-OFFSET",
    "LAG",
    "CONSUMER-ID",
    "HOST",
    "CLIENT-ID",
)


def owned_partitions(
    description: GroupDescription, warn: TextIO | None = None
) -> list[tuple[str, str, str, list[TopicPartition]]]:
    """(consumer id, host, client id, partitions) of each member that owns partitions."""
    if description.protocol_type not in (CONSUMER_PROTOCOL, ""):
        if warn is not None and description.members:
            print(
                f"Warning: group '{description.group_id}' uses protocol type "
                f"'{description.protocol_type}', not 'consumer'; partition owners are not shown.",
                file=warn,
            )
        return []
    owners = []
    for m in description.members:
        try:
            parts = (
                list(m.partitions)
                if m.partitions is not None
                else decode_consumer_assignment(m.assignment)
            )
        except ValueError as exc:
            if warn is not None:
                print(
                    f"Warning: member {m.member_id} of group '{description.group_id}': {exc}",
                    file=warn,
                )
            parts = []
        if parts:
            owners.append((m.member_id, m.client_host, m.client_id, parts))
    owners.sort(key=lambda o: len(set(o[3])), reverse=True)  # stable, as Kafka's sort
    return owners


def build_rows(
    description: GroupDescription,
    committed: dict[TopicPartition, int | None],
    log_end: dict[TopicPartition, int],
    warn: TextIO | None = None,
) -> list[PartitionRow]:
    group = description.group_id
    rows: list[PartitionRow] = []
    assigned: set[TopicPartition] = set()

    def row(tp: TopicPartition, consumer: str, host: str, client: str) -> PartitionRow:
        return PartitionRow(
            group, tp[0], tp[1], committed.get(tp), log_end.get(tp), consumer, host, client
        )

    for consumer_id, host, client_id, parts in owned_partitions(description, warn):
        unique = sorted(set(parts))
        assigned.update(unique)
        rows.extend(row(tp, consumer_id, host, client_id) for tp in unique)
    unowned = sorted(tp for tp in committed if tp not in assigned)
    rows.extend(row(tp, MISSING, MISSING, MISSING) for tp in unowned)
    return rows


def format_offsets_table(rows: Sequence[PartitionRow]) -> str:
    """The table exactly as kafka-consumer-groups.sh --describe prints it (leading blank line)."""
    cells = [r.cells() for r in rows]
    group_w = max([15, *(len(c[0]) for c in cells)])
    topic_w = max([15, *(len(c[1]) for c in cells)])
    consumer_w = max([15, *(len(c[6]) for c in cells)])
    host_w = max([15, *(len(c[7]) for c in cells)])
    widths = (group_w, topic_w, 10, 15, 15, 15, consumer_w, host_w)

    def line(values: Sequence[str]) -> str:
        padded = [f"{v:<{w}}" for v, w in zip(values[:-1], widths, strict=True)]
        return " ".join([*padded, values[-1]])

    return "\n" + "\n".join(line(c) for c in [HEADER, *cells]) + "\n"


# -- the list table ----------------------------------------------------------------------


def _title(value: str | None) -> str:
    if not value:
        return "Unknown"
    return value[0].upper() + value[1:]


def is_consumer_group(g: GroupListing) -> bool:
    """As Kafka's listConsumerGroups: classic groups of the consumer protocol, KIP-848 groups."""
    if g.group_type is not None and g.group_type.lower() not in (*CONSUMER_GROUP_TYPES, ""):
        return False
    return g.protocol_type in (CONSUMER_PROTOCOL, "")


def format_group_list(listings: Sequence[GroupListing], include_type: bool) -> str:
    """kafka-consumer-groups.sh --list --state [--type] layout (trailing blanks trimmed)."""
    group_w = max([15, *(len(g.group_id) for g in listings)]) + 10
    header = ["GROUP"]
    if include_type:
        header.append("TYPE")
    header.append("STATE")

    def line(values: Sequence[str]) -> str:
        first, rest = values[0], values[1:]
        return (f"{first:<{group_w}}" + "".join(f" {v:<20}" for v in rest)).rstrip()

    lines = [line(header)]
    for g in listings:
        values = [g.group_id]
        if include_type:
            values.append(_title(g.group_type))
        values.append(g.state or "Unknown")
        lines.append(line(values))
    return "\n".join(lines) + "\n"


# -- commands ------------------------------------------------------------------------------


def consumer_groups(client: KafkaClient) -> list[GroupListing]:
    """The cluster's consumer groups; states filled in by DescribeGroups for old brokers."""
    listings = [g for g in client.list_groups() if is_consumer_group(g)]
    out = []
    for g in listings:
        if g.state is None:  # ListGroups before v4 carries no state
            d = client.describe_group(g.group_id)
            g = GroupListing(g.group_id, g.protocol_type, d.state, g.group_type)
        out.append(g)
    return out


def cmd_list(client: KafkaClient, args: argparse.Namespace, out: TextIO, err: TextIO) -> int:
    listings = consumer_groups(client)
    if args.state:
        wanted = {s.strip().lower() for s in args.state.split(",") if s.strip()}
        listings = [g for g in listings if (g.state or "").lower() in wanted]
    out.write(format_group_list(listings, include_type=args.type))
    return 0


def describe_one(client: KafkaClient, group_id: str, out: TextIO, err: TextIO) -> bool:
    """Print one group's table (or why not); False when the group could not be described."""
    description = client.describe_group(group_id)
    if description.state == "Dead":
        print(f"\nError: Consumer group '{group_id}' does not exist.", file=err)
        return False
    committed = client.committed_offsets(group_id)
    owners = owned_partitions(description)
    partitions = set(committed) | {tp for o in owners for tp in o[3]}
    log_end = client.log_end_offsets(partitions)
    rows = build_rows(description, committed, log_end, warn=err)
    if description.state == "Empty":
        print(f"\nConsumer group '{group_id}' has no active members.", file=err)
    elif description.state in REBALANCING:
        print(f"\nWarning: Consumer group '{group_id}' is rebalancing.", file=err)
    if rows:
        out.write(format_offsets_table(rows))
    return True


def cmd_describe(client: KafkaClient, args: argparse.Namespace, out: TextIO, err: TextIO) -> int:
    if args.all_groups:
        groups = [g.group_id for g in consumer_groups(client)]
    else:
        groups = sorted(set(args.groups) | set(args.group or []))
    ok = True
    for group_id in groups:
        try:
            ok = describe_one(client, group_id, out, err) and ok
        except BrokerUnreachable:
            raise
        except KafkaClientError as exc:
            print(f"\nError: cannot describe group '{group_id}': {exc}", file=err)
            ok = False
        out.flush()
    return 0 if ok else 1


# -- argument parsing ----------------------------------------------------------------------


def _add_common(p: argparse.ArgumentParser) -> None:
    # SUPPRESS: given before or after the subcommand, the value given wins
    p.add_argument(
        "--bootstrap-server",
        metavar="HOST:PORT",
        default=argparse.SUPPRESS,
        help="broker to connect to; a comma-separated list tries each "
        f"(default {DEFAULT_BOOTSTRAP})",
    )
    p.add_argument(
        "--timeout",
        metavar="MS",
        type=int,
        default=argparse.SUPPRESS,
        help=f"per-request timeout in milliseconds (default {DEFAULT_TIMEOUT_MS})",
    )


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """Fill in the ``groups`` (sub)parser."""
    _add_common(parser)
    sub = parser.add_subparsers(dest="groups_command", metavar="{list,describe}", required=True)
    lp = sub.add_parser(
        "list",
        help="list consumer groups and their state",
        description="List the consumer groups of the cluster (as kafka-consumer-groups.sh "
        "--list --state).",
    )
    _add_common(lp)
    lp.add_argument("--type", action="store_true", help="add a TYPE column (Classic/Consumer)")
    lp.add_argument(
        "--state",
        metavar="STATES",
        help="only groups in these states, comma-separated (e.g. Stable,Empty)",
    )
    dp = sub.add_parser(
        "describe",
        help="committed offsets, log end offsets and lag per partition",
        description="Describe consumer groups as kafka-consumer-groups.sh --describe: one row "
        "per partition with CURRENT-OFFSET, LOG-END-OFFSET, LAG and the owning member.",
    )
    _add_common(dp)
    dp.add_argument("groups", nargs="*", metavar="GROUP", help="group ids to describe")
    dp.add_argument("--group", action="append", metavar="GROUP", help="a group id (repeatable)")
    dp.add_argument("--all-groups", action="store_true", help="describe every consumer group")


def run(args: argparse.Namespace, out: TextIO | None = None, err: TextIO | None = None) -> int:
    out = out or sys.stdout
    err = err or sys.stderr
    bootstrap = getattr(args, "bootstrap_server", DEFAULT_BOOTSTRAP)
    timeout_ms = getattr(args, "timeout", DEFAULT_TIMEOUT_MS)
    if args.groups_command == "describe":
        named = bool(args.groups or args.group)
        if named == bool(args.all_groups):
            print(
                "Error: give the groups to describe (GROUP... or --group) or --all-groups",
                file=err,
            )
            return 2
    if timeout_ms <= 0:
        print("Error: --timeout must be positive", file=err)
        return 2
    try:
        client = KafkaClient(bootstrap, timeout=timeout_ms / 1000)
    except ValueError as exc:
        print(f"Error: {exc}", file=err)
        return 2
    try:
        with client:
            if args.groups_command == "list":
                return cmd_list(client, args, out, err)
            return cmd_describe(client, args, out, err)
    except BrokerUnreachable as exc:
        print(f"Error: {exc}. Is a broker running there? (--bootstrap-server)", file=err)
        return 1
    except KafkaClientError as exc:
        print(f"Error: {exc}", file=err)
        return 1
    except KeyboardInterrupt:
        return 130


def main(argv: Iterable[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m broker_service groups",
        description="List consumer groups and show their lag.",
    )
    add_arguments(parser)
    args = parser.parse_args(None if argv is None else list(argv))
    return run(args)


if __name__ == "__main__":
    sys.exit(main())
