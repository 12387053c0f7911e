"""One broker process per vCPU of a task (issue 21.3): ``serve --processes N``.

A broker is one Python process whose event loop, and so whose produce path, runs on one
vCPU; a Fargate task has two or more. Rather than threads (the GIL serialises them) or
sharing one listener between processes (Kafka clients go to a partition's leader, which is
one process), the task runs N brokers side by side, each a whole broker with its own node id
(``BROKER_NODE_ID=auto``: N allocated ids; a fixed id: id, id+1, ...), its own ports (every
listener port + i x the span of the listener ports, the metrics port + i), its own WAL and
caches, sharing the task's storage and metadata (as brokers on one data directory already
do). Clients see N brokers at the task's address; partitions spread over them like over any
brokers, and the stacks put every port behind the NLB.

The supervisor (the process ``serve`` was started as) forks the N brokers before any thread
or event loop exists, writes one ready file listing them, forwards SIGTERM/SIGINT to all of
them (each drains to brokers of other tasks: ``Leadership.drain`` skips its siblings, which
share its task ARN), and exits when they have. If one broker exits on its own, the others
are stopped too and the supervisor exits with its code: the task is the unit ECS replaces.
"""

from __future__ import annotations

import contextlib
import json
import logging
import os
import re
import signal
import socket
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from broker_service.cluster.ecs_identity import METADATA_URI_ENV
from broker_service.config import BrokerConfig
from broker_service.runtime import ready

log = logging.getLogger(__name__)

READY_TIMEOUT_S = 120.0
_PORT = re.compile(r"(?<=:)(\d+)(?=\s*(,|$))")


def process_count(setting: int | str) -> int:
    """``BROKER_PROCESSES``: a number, or ``auto`` (the vCPUs this process may run on)."""
    if isinstance(setting, str) and setting.strip().lower() == "auto":
        try:
            return max(1, len(os.sched_getaffinity(0)))
        except AttributeError:  # not on Linux
            return max(1, os.cpu_count() or 1)
    n = int(setting)
    if n < 1:
        raise ValueError(f"processes must be >= 1 or auto, not {setting!r}")
    return n


def port_span(config: BrokerConfig) -> int:
    """How far apart two processes' listener ports are: the span of one process's ports
    (one listener: 1, so 9092, 9093, ...)."""
    ports = [lst.port for lst in config.listener_list() if lst.port]
    return max(ports) - min(ports) + 1 if ports else 1


def _shift_ports(spec: str | None, by: int) -> str | None:
    """Every non-zero port of a ``NAME://host:port,...`` list, plus ``by``."""
    if not spec or not by:
        return spec
    return _PORT.sub(lambda m: str(int(m.group(1)) + by) if int(m.group(1)) else "0", spec)


def child_config(base: BrokerConfig, index: int, task_id: str) -> BrokerConfig:
    """The settings of the task's broker number ``index`` (0-based); ``task_id`` names the
    task where ECS does not (siblings recognise each other by it)."""
    by = index * port_span(base)
    update: dict[str, Any] = {
        "port": base.port + by if base.port else 0,
        "listeners": _shift_ports(base.listeners, by),
        "advertised_listeners": _shift_ports(base.advertised_listeners, by),
        "advertised_port": base.advertised_port + by if base.advertised_port else
        base.advertised_port,
        "ready_file": None if base.ready_file is None else child_ready_file(base, index),
        "processes": 1,
    }
    if isinstance(base.metrics_port, int) and base.metrics_port:
        update["metrics_port"] = base.metrics_port + index
    if not base.node_id_auto:
        update["node_id"] = base.node_id + index
    if base.task_arn is None and not os.environ.get(METADATA_URI_ENV):
        update["task_arn"] = task_id
    return base.model_copy(update=update)


def child_ready_file(base: BrokerConfig, index: int) -> Path:
    assert base.ready_file is not None
    return base.ready_file.with_name(f".{base.ready_file.name}.{index}")


def supervise(base: BrokerConfig, n: int, run: Callable[[BrokerConfig, int], int]) -> int:
    """Fork ``n`` brokers (``run(config, index)`` in each child; its return value is the
    child's exit code) and wait for them; the exit code is the first failure's, else 0."""
    task_id = f"local-task/{socket.gethostname()}/{os.getpid()}"
    configs = [child_config(base, i, task_id) for i in range(n)]
    for c in configs:
        if c.ready_file is not None:
            c.ready_file.unlink(missing_ok=True)
    children: dict[int, int] = {}  # pid -> index
    for i, config in enumerate(configs):
        pid = os.fork()
        if pid == 0:  # the child: a broker, until it returns
            code = 1
            try:
                signal.signal(signal.SIGTERM, signal.SIG_DFL)
                signal.signal(signal.SIGINT, signal.SIG_DFL)
                code = run(config, i)
            except BaseException:
                log.exception("broker process %d failed", i)
            finally:
                logging.shutdown()
                os._exit(code)
        children[pid] = i
    log.info("task of %d broker processes: pids %s", n, sorted(children))
    return _wait(base, configs, children)


def _wait(base: BrokerConfig, configs: list[BrokerConfig], children: dict[int, int]) -> int:
    stopping = False

    def stop(signum: int, _frame: object) -> None:
        nonlocal stopping
        stopping = True
        for pid in list(children):
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGTERM)  # each drains, then exits

    signal.signal(signal.SIGTERM, stop)
    signal.signal(signal.SIGINT, stop)
    announced = base.ready_file is None
    deadline = time.monotonic() + READY_TIMEOUT_S
    code = 0
    while children:
        if not announced and time.monotonic() < deadline:
            announced = _merge_ready_files(base.ready_file, configs)  # type: ignore[arg-type]
            pid, status = os.waitpid(-1, 0 if announced else os.WNOHANG)
            if pid == 0:
                time.sleep(0.05)  # polling the brokers' start: the supervisor has no loop
                continue
        else:
            try:
                pid, status = os.waitpid(-1, 0)
            except ChildProcessError:
                break
        index = children.pop(pid, None)
        if index is None:
            continue
        exit_code = os.waitstatus_to_exitcode(status)
        if exit_code != 0 and code == 0:
            code = exit_code if exit_code > 0 else 1
        if not stopping:  # one broker ended on its own: the task ends
            log.error("broker process %d (pid %d) exited with %d; stopping the task",
                      index, pid, exit_code)  # fmt: skip
            stop(signal.SIGTERM, None)
    return code


def _merge_ready_files(path: Path, configs: list[BrokerConfig]) -> bool:
    """Once every broker serves: one ready file for whoever started the task, its first
    broker's ports at the top (what a one-process ready file says) and all of them listed.
    Returns whether it was written."""
    files = [c.ready_file for c in configs]
    if not all(f is not None and f.exists() for f in files):
        return False
    infos = [json.loads(f.read_text()) for f in files if f is not None]
    ready.write_ready_file(path, {**infos[0], "supervisor_pid": os.getpid(), "processes": infos})
    return True
