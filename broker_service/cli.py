"""Command line: ``python -m broker_service serve ...``."""

from __future__ import annotations

import argparse
import asyncio
import logging
import os
import sys
from pathlib import Path

from broker_service.config import BrokerConfig


def _serve(args: argparse.Namespace) -> int:
    overrides = {
        k: v
        for k, v in {
            "host": args.host,
            "port": args.port,
            "data_dir": args.data_dir,
            "node_id": args.node_id,
            "advertised_host": args.advertised_host,
            "advertised_port": args.advertised_port,
            "default_partitions": args.default_partitions,
            "log_level": args.log_level,
            "storage": args.storage,
            "metadata": args.metadata,
            "wal": args.wal,
            "ready_file": args.ready_file,
        }.items()
        if v is not None
    }
    if args.no_auto_create_topics:
        overrides["auto_create_topics"] = False
    from broker_service.cluster import ecs_identity

    # Logging first: what the ECS lookup below logs (the advertised host) must not be lost.
    logging.basicConfig(
        level=(args.log_level or os.environ.get("BROKER_LOG_LEVEL") or "INFO").upper(),
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
        stream=sys.stderr,
    )
    try:  # BROKER_ADVERTISED_HOST=ecs: this Fargate task's IP and AZ
        ecs_identity.resolve_ecs_environment(os.environ)
    except (ecs_identity.EcsIdentityError, OSError, ValueError) as exc:
        print(f"cannot learn this ECS task's address: {exc}", file=sys.stderr)
        return 1
    auto_node_id = args.node_id is None and ecs_identity.wants_auto_node_id(os.environ)
    if auto_node_id:
        overrides["node_id"] = 0  # placeholder: allocated from the metadata store below
        overrides["node_id_auto"] = True
    config = BrokerConfig(**overrides)
    logging.getLogger().setLevel(config.log_level.upper())
    from broker_service.runtime.backends import build_broker, metadata_store_for

    if auto_node_id:
        store = metadata_store_for(config)
        try:
            config = config.model_copy(update={"node_id": ecs_identity.allocate_node_id(store)})
        finally:
            store.close()
    from broker_service.runtime.server import serve

    loop_factory = None
    try:
        import uvloop

        loop_factory = uvloop.new_event_loop  # faster where available; asyncio's works too
    except ImportError:
        pass
    try:
        broker = build_broker(config)
        with asyncio.Runner(loop_factory=loop_factory) as runner:
            runner.run(serve(broker))
    except OSError as exc:
        logging.getLogger("broker_service").error("cannot start: %s", exc)
        return 1
    return 3 if broker.fenced else 0  # fenced or WAL failure: let the supervisor know


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m broker_service",
        description="A Kafka-compatible broker whose data lives in object storage.",
    )
    sub = parser.add_subparsers(dest="command", required=True)
    s = sub.add_parser(
        "serve",
        help="run a broker (embedded default: local dir + SQLite)",
        description="Run one broker. Every option also reads from the "
        "environment as BROKER_<NAME> (e.g. BROKER_PORT=9093).",
    )
    s.add_argument("--host", help="listen address (default 127.0.0.1)")
    s.add_argument("--port", type=int, help="listen port (default 9092; 0: any free port)")
    s.add_argument(
        "--ready-file",
        type=Path,
        help="once serving, write the bound ports to this file (JSON; see runtime/ready.py)",
    )
    s.add_argument("--data-dir", type=Path, help="data directory (default ./data)")
    s.add_argument("--node-id", type=int, help="broker id (default 1)")
    s.add_argument("--advertised-host", help="host given to clients (default: --host)")
    s.add_argument("--advertised-port", type=int, help="port given to clients (default: --port)")
    s.add_argument("--default-partitions", type=int, help="partitions of auto-created topics")
    s.add_argument(
        "--no-auto-create-topics",
        action="store_true",
        help="do not create unknown topics on Metadata requests",
    )
    s.add_argument("--log-level", help="DEBUG, INFO, WARNING, ...")
    s.add_argument(
        "--storage",
        help="object store: s3://bucket/prefix, or a directory (default DATA_DIR/objects)",
    )
    s.add_argument(
        "--metadata",
        help="metadata store: dynamodb://table, or a SQLite file "
        "(default DATA_DIR/metadata.sqlite)",
    )
    s.add_argument(
        "--wal",
        choices=["file", "object"],
        help="file (default): fsync'd local file; object: a committed object per "
        "flush (no local state)",
    )
    from broker_service.ops import groups_cli, local_cluster
    from broker_service.ops.cost import cli as cost_cli

    g = sub.add_parser(
        "groups",
        help="list consumer groups, describe their lag (as kafka-consumer-groups.sh)",
        description="List consumer groups and show committed offsets and lag per partition.",
    )
    groups_cli.add_arguments(g)
    local_cluster.add_parser(sub)
    cost_cli.add_parser(sub)
    args = parser.parse_args(argv)
    if args.command == "serve":
        return _serve(args)
    if args.command == "groups":
        return groups_cli.run(args)
    if args.command == "cluster":
        return local_cluster.run(args)
    if args.command == "cost":
        return cost_cli.run(args)
    return 2
