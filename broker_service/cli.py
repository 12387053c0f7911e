"""Command line: ``python -m broker_service serve ...``."""

from __future__ import annotations

import argparse
import asyncio
import logging
import os
import sys
import threading
import time
from collections.abc import Callable, Coroutine
from pathlib import Path
from typing import Any

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
            "processes": args.processes,
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
    from broker_service.runtime.processes import process_count, supervise

    n = process_count(config.processes)
    if n > 1:  # one broker per vCPU, forked before any thread or event loop exists
        return supervise(config, n, _run_child)
    return _run(config)


def _run_child(config: BrokerConfig, index: int) -> int:
    """One broker of a ``--processes`` task: its log lines say which."""
    fmt = f"%(asctime)s %(levelname)s [process {index}] %(name)s: %(message)s"
    for handler in logging.getLogger().handlers:
        handler.setFormatter(logging.Formatter(fmt))
    return _run(config)


def _run(config: BrokerConfig) -> int:
    """Run one broker until it is stopped: its exit code."""
    from broker_service.cluster import ecs_identity
    from broker_service.runtime.backends import build_broker, metadata_store_for

    if config.node_id_auto:
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
        run_to_end(serve(broker), loop_factory)
    except OSError as exc:
        logging.getLogger("broker_service").error("cannot start: %s", exc)
        return 1
    return 3 if broker.fenced else 0  # fenced or WAL failure: let the supervisor know


def run_to_end(
    main: Coroutine[Any, Any, None],
    loop_factory: Callable[[], asyncio.AbstractEventLoop] | None = None,
) -> None:
    """``asyncio.run`` without its wait for the default executor's threads: a blocking store
    call still running when the broker has stopped (a stalled store) must not hold the
    process (see ``exit_now``)."""
    loop = (loop_factory or asyncio.new_event_loop)()
    try:
        loop.run_until_complete(main)
        left = [t for t in asyncio.all_tasks(loop) if not t.done()]
        for t in left:
            t.cancel()
        if left:
            loop.run_until_complete(asyncio.gather(*left, return_exceptions=True))
        loop.run_until_complete(loop.shutdown_asyncgens())
    finally:
        loop.close()  # the default executor is shut down without waiting


def exit_now(code: int) -> int:
    """Exit with ``code``, abandoning threads still running: the interpreter would otherwise
    join them (store calls hung on a stalled store: minutes). The broker has stopped by now;
    what it acknowledged is durable, the rest is as after a crash."""
    threads = [t for t in threading.enumerate()
               if t is not threading.main_thread() and not t.daemon]  # fmt: skip
    deadline = time.monotonic() + 2.0  # idle pool threads end at once: only calls remain
    for t in threads:
        t.join(max(deadline - time.monotonic(), 0.0))
    busy = [t.name for t in threads if t.is_alive()]
    if not busy:
        return code
    logging.getLogger("broker_service").warning(
        "exiting with %d calls still running (threads %s)", len(busy), ", ".join(busy[:8])
    )
    logging.shutdown()
    sys.stdout.flush()
    sys.stderr.flush()
    os._exit(code)


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
    s.add_argument(
        "--processes",
        help="broker processes in this task, one per vCPU: a number or auto (default 1; "
        "each is a broker of its own, ports and node id offset; see runtime/processes.py)",
    )
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
        return exit_now(_serve(args))
    if args.command == "groups":
        return groups_cli.run(args)
    if args.command == "cluster":
        return local_cluster.run(args)
    if args.command == "cost":
        return cost_cli.run(args)
    return 2
