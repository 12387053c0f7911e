"""Load from scraped /metrics pages: the broker's own collector renders them (prometheus
client's exposition format) and the control plane's parser reads them back as rates."""

from __future__ import annotations

import json
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, HTTPServer

import pytest
from prometheus_client import generate_latest

from broker_service.cluster.task_identity import ecs_task_identity
from broker_service.control.metrics_source import ScrapedMetricsSource, parse_scrape
from broker_service.metrics import BrokerMetrics
from broker_service.metrics.prometheus import registry_for


def _page(m: BrokerMetrics) -> str:
    return generate_latest(registry_for(m)).decode()


def test_collector_output_parses_back() -> None:
    m = BrokerMetrics(3)
    m.produced("a", 0, 1000)
    m.produced("a", 1, 500)
    m.fetched("a", 0, 700)
    broker, parts = parse_scrape(_page(m))
    assert broker == (1500.0, 700.0)
    assert parts == {("a", 0): (1000.0, 700.0), ("a", 1): (500.0, 0.0)}


def test_rates_between_scrapes_sum_a_partition_over_brokers() -> None:
    b1, b2 = BrokerMetrics(1), BrokerMetrics(2)
    pages = {"u1": b1, "u2": b2}
    clock = [0.0]
    b1.produced("t", 0, 100)  # before the window: not counted

    def traffic_meanwhile(seconds: float) -> None:
        assert seconds == 2.0
        clock[0] += seconds
        b1.produced("t", 0, 4000)  # partition t-0 moved from broker 1 to 2 meanwhile:
        b2.produced("t", 0, 2000)  # its load is the sum over both
        b2.fetched("t", 0, 1000)

    src = ScrapedMetricsSource(lambda: {1: "u1", 2: "u2"}, fetch=lambda url: _page(pages[url]),
                               sleep=traffic_meanwhile, clock=lambda: clock[0])  # fmt: skip
    load = src.cluster_load(2.0)  # one-off: scrape, wait the window, scrape
    assert load is not None and load.window_s == 2.0
    assert load.partitions[("t", 0)].bytes_in_per_s == 3000.0
    assert load.partitions[("t", 0)].bytes_out_per_s == 500.0
    assert load.brokers[1].total == 2000.0 and load.brokers[2].total == 1500.0
    clock[0] += 1.0
    b2.produced("t", 0, 300)
    again = src.cluster_load(2.0)  # a timer: the rate since the previous call, no waiting
    assert again is not None and again.window_s == 1.0
    assert again.partitions[("t", 0)].bytes_in_per_s == 300.0


@pytest.fixture
def ecs_metadata_endpoint(monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    """A stand-in for the ECS task metadata endpoint (v4), which only exists inside a task:
    serves the documented shape of ``GET ${ECS_CONTAINER_METADATA_URI_V4}/task``."""
    task = {"Cluster": "arn:aws:ecs:us-east-1:123456789012:cluster/kafka-demo",
            "TaskARN": "arn:aws:ecs:us-east-1:123456789012:task/kafka-demo/abc123",
            "Family": "broker", "Revision": "3", "DesiredStatus": "RUNNING",
            "KnownStatus": "RUNNING", "LaunchType": "FARGATE",
            "Containers": [{"Name": "broker", "Networks": [{"NetworkMode": "awsvpc",
                                                            "IPv4Addresses": ["10.0.2.106"]}]}]}

    class Handler(BaseHTTPRequestHandler):
        def do_GET(self) -> None:  # noqa: N802 - http.server's name
            body = json.dumps(task).encode() if self.path == "/v4/abc/task" else b"{}"
            self.send_response(200 if self.path == "/v4/abc/task" else 404)
            self.send_header("Content-Type", "application/json")
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, *args: object) -> None:
            pass

    server = HTTPServer(("127.0.0.1", 0), Handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    monkeypatch.setenv("ECS_CONTAINER_METADATA_URI_V4",
                       f"http://127.0.0.1:{server.server_address[1]}/v4/abc")
    yield
    server.shutdown()
    server.server_close()


def test_task_identity_from_the_ecs_metadata_endpoint(ecs_metadata_endpoint: None) -> None:
    assert ecs_task_identity() == {
        "task_arn": "arn:aws:ecs:us-east-1:123456789012:task/kafka-demo/abc123",
        "private_ip": "10.0.2.106",
    }


def test_no_task_identity_outside_ecs(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("ECS_CONTAINER_METADATA_URI_V4", raising=False)
    assert ecs_task_identity() == {}
