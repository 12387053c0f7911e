"""Port 0 and the ready file: a broker told to listen on port 0 takes the ports the OS gave
it everywhere a port is used (listeners, what it registers and advertises), and reports them.

Whoever starts brokers (tests, benchmarks, a supervisor) then needs no free-port guess, which
races with every other process on the host: the broker binds first, then says where it is.
The ready file is JSON, written atomically once the broker serves, e.g.::

    {"pid": 4242, "node_id": 1, "port": 40123, "metrics_port": 40125,
     "listeners": {"PLAINTEXT": {"host": "127.0.0.1", "port": 40123,
                                 "advertised_host": "127.0.0.1", "advertised_port": 40123}}}

``port`` is the registered (advertised) port of the primary listener, the one other brokers
use; ``metrics_port`` is null when /metrics is off.
"""

from __future__ import annotations

import json
import os
import tempfile
from pathlib import Path
from typing import Any

from broker_service.config import BrokerConfig
from broker_service.config.listeners import Listener, parse_endpoints


def _endpoint(name: str, host: str, port: int) -> str:
    return f"{name}://[{host}]:{port}" if ":" in host else f"{name}://{host}:{port}"


def adopt_bound_ports(config: BrokerConfig, bound: list[int]) -> list[Listener]:
    """After binding: the listeners (config order) with the ports they really got.

    ``bound`` is the port of each configured listener. Where a listener asked for port 0,
    the config is updated in place (port, listeners, advertised port 0 -> the bound port), so
    everything that reads it later, the broker's registration included, sees real ports."""
    listeners = config.listener_list()
    if len(bound) != len(listeners):
        raise ValueError(f"{len(listeners)} listeners, {len(bound)} bound ports")
    if all(lst.port != 0 for lst in listeners):
        return listeners
    if not config.listeners:
        config.port = bound[0]
        if config.advertised_port == 0:
            config.advertised_port = None  # the default: the bound port
        return config.listener_list()
    by_name = {lst.name: port for lst, port in zip(listeners, bound, strict=True)}
    config.listeners = ",".join(
        _endpoint(lst.name, lst.host, port) for lst, port in zip(listeners, bound, strict=True)
    )
    if config.advertised_listeners:
        adv = []
        protocols = {lst.name: lst.protocol for lst in listeners}  # names mapped to protocols
        advertised = parse_endpoints(config.advertised_listeners, protocols)
        for i, (name, host, port) in enumerate(advertised):
            if port == 0:  # the bound port of the listener it describes (by name, else position)
                port = by_name.get(name, bound[min(i, len(bound) - 1)])
            adv.append(_endpoint(name, host, port))
        config.advertised_listeners = ",".join(adv)
    return config.listener_list()


def ready_info(config: BrokerConfig, listeners: list[Listener],
               metrics_port: int | None) -> dict[str, Any]:  # fmt: skip
    return {
        "pid": os.getpid(),
        "node_id": config.node_id,
        "port": config.advertised[1],
        "metrics_port": metrics_port,
        "listeners": {
            lst.name: {
                "host": lst.host,
                "port": lst.port,
                "advertised_host": lst.advertised_host,
                "advertised_port": lst.advertised_port,
            }
            for lst in listeners
        },
    }


def write_ready_file(path: Path, info: dict[str, Any]) -> None:
    """Write atomically (a temporary file renamed over ``path``): a reader polling for the
    file never sees half of it."""
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.")
    try:
        with os.fdopen(fd, "w") as f:
            json.dump(info, f)
            f.write("\n")
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
