#!/usr/bin/env python3
"""S3 requests per GB written and read: our broker on S3 + DynamoDB against Tansu on S3.

One moto server (S3 + DynamoDB) serves every broker. A small counting HTTP proxy (a child
process of this script, one listening port per broker and service) sits between the brokers
and moto and counts every request by operation, so each broker's S3 requests (and our
DynamoDB calls) are attributed exactly. Brokers:

- ``ours``: object WAL (BROKER_WAL=object), S3 + DynamoDB;
- ``ours-file``: file WAL on the local temp dir, uploaded to S3 in the background;
- ``tansu``: Tansu 0.6 with ``--storage-engine s3://BUCKET/``.

Rounds are interleaved (ours 1, tansu 1, ours-file 1, ours 2, ...). Each round starts a fresh
broker on fresh state (ours: a new DynamoDB table, S3 prefix and data dir; Tansu: a new
bucket), since moto's TransactWriteItems slows down as a table grows. In each round: 500
records of warm-up; a steady 2000 msg/s x 1 KiB for 5 s (acks=all, linger.ms=5: ack latency);
N x 1 KiB as fast as possible (acks=all, linger.ms=5, batch.size=1000000: produce MB/s); a wait
until the broker stops writing to S3; a fresh consumer from offset 0 (warm read); a broker
restart and another fresh consumer (cold read); a few idle seconds. Requests are counted per
phase and divided by the payload GiB written or read. Medians over rounds; see
bench/README.md.

    .venv/bin/python bench/s3_requests.py            # full run: 100k x 1 KiB, 3 rounds
    .venv/bin/python bench/s3_requests.py --quick    # smoke run: 20k records, 1 round
"""

from __future__ import annotations

import argparse
import contextlib
import hashlib
import http.client
import ipaddress
import json
import os
import select
import shutil
import signal
import subprocess
import sys
import threading
import time
import urllib.error
import urllib.parse
import urllib.request
import uuid
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import boto3
import psutil
from confluent_kafka import Consumer, TopicPartition
from produce_consume import (
    CONSUMER_CONF,
    HOST,
    MB,
    PRODUCER_CONF,
    REPO,
    VALUE_BYTES,
    Aborted,
    BenchError,
    BrokerProcess,
    Deadline,
    add_run_options,
    bench_environment,
    bench_run,
    brokers_and_tansu,
    command_output,
    create_topic,
    fmt,
    free_port,
    median,
    ours_argv,
    percentile,
    print_columns,
    print_unclean_exits,
    produce_all,
    read_records,
    results_path,
    save_json,
    steady_produce,
)

from tests.support.moto import MotoServer as SharedMotoServer

BROKERS = ("ours", "tansu", "ours-file")
REGION = "us-east-1"
OURS_BUCKET = "bench-s3-ours"
TANSU_BUCKET = "bench-s3-tansu"
GIB = 1 << 30
AUTOMQ_PUT_PER_GB = 31.25  # AutoMQ's cited figure: 1 GiB / 32 MiB WAL objects
WARMUP_RECORDS = 500
COUNTS_PATH = "/__bench_proxy_counts__"  # cannot be a bucket name (underscores)

# S3 operations by request class (AWS bills PUT/COPY/POST/LIST at one rate, GET/HEAD at another)
S3_PUT = {"PutObject", "UploadPart", "CopyObject", "UploadPartCopy", "CreateMultipartUpload",
          "CompleteMultipartUpload"}
S3_GET = {"GetObject"}
S3_LIST = {"ListObjectsV2", "ListObjects", "ListObjectVersions", "ListParts",
           "ListMultipartUploads", "ListBuckets"}
DDB_WRITE = {"PutItem", "UpdateItem", "DeleteItem", "BatchWriteItem", "TransactWriteItems"}
DDB_READ = {"GetItem", "BatchGetItem", "Query", "Scan", "TransactGetItems"}
CATEGORIES = ("PUT", "GET", "LIST", "other", "ddb_write", "ddb_read", "ddb_other")
# a broker still writing to S3 is not settled (DynamoDB is left out: our broker renews its
# lease and polls membership there while idle)
WRITE_CATEGORIES = ("PUT", "other")


# == the counting proxy (runs as a child process: `s3_requests.py _proxy ...`) ============
def _is_ip_or_local(hostname: str) -> bool:
    if hostname in ("localhost", ""):
        return True
    with contextlib.suppress(ValueError):
        ipaddress.ip_address(hostname.strip("[]"))
        return True
    return False


def s3_operation(method: str, target: str, host: str, headers: Any) -> str:
    """The S3 API operation of one request (path-style or virtual-hosted addressing)."""
    url = urllib.parse.urlsplit(target)
    query = urllib.parse.parse_qs(url.query, keep_blank_values=True)
    hostname = host.rsplit(":", 1)[0] if host.count(":") == 1 else host
    path = urllib.parse.unquote(url.path).lstrip("/")
    if not _is_ip_or_local(hostname) and "." in hostname:
        bucket, key = hostname.split(".", 1)[0], path
    else:
        bucket, _, key = path.partition("/")
    if method == "GET":
        if not bucket:
            return "ListBuckets"
        if key:
            return "ListParts" if "uploadId" in query else "GetObject"
        if "uploads" in query:
            return "ListMultipartUploads"
        if "versions" in query:
            return "ListObjectVersions"
        if query.get("list-type") == ["2"]:
            return "ListObjectsV2"
        sub = sorted(q for q in query if q not in ("prefix", "delimiter", "marker", "max-keys",
                                                   "encoding-type"))
        return f"GetBucket:{','.join(sub)}" if sub else "ListObjects"
    if method == "PUT":
        if not key:
            return "CreateBucket" if not query else "PutBucketConfig"
        if "partNumber" in query:
            return "UploadPartCopy" if "x-amz-copy-source" in headers else "UploadPart"
        return "CopyObject" if "x-amz-copy-source" in headers else "PutObject"
    if method == "POST":
        if "uploads" in query:
            return "CreateMultipartUpload"
        if "uploadId" in query:
            return "CompleteMultipartUpload"
        if "delete" in query:
            return "DeleteObjects"
        return "PostObject"
    if method == "HEAD":
        return "HeadObject" if key else "HeadBucket"
    if method == "DELETE":
        if not key:
            return "DeleteBucket"
        return "AbortMultipartUpload" if "uploadId" in query else "DeleteObject"
    return method


def category(service: str, op: str) -> str:
    if service == "dynamodb":
        return "ddb_write" if op in DDB_WRITE else "ddb_read" if op in DDB_READ else "ddb_other"
    if op in S3_PUT:
        return "PUT"
    if op in S3_GET:
        return "GET"
    if op in S3_LIST:
        return "LIST"
    return "other"


HOP_HEADERS = {"connection", "keep-alive", "proxy-connection", "transfer-encoding", "te",
               "trailer", "upgrade", "content-length"}


class _Tally:
    """label -> "service:op" -> [requests, error responses, bytes up, bytes down,
    microseconds waiting for moto]."""

    def __init__(self) -> None:
        self.lock = threading.Lock()
        self.data: dict[str, dict[str, list[int]]] = {}

    def add(self, label: str, op: str, error: bool, up: int, down: int, seconds: float) -> None:
        with self.lock:
            row = self.data.setdefault(label, {}).setdefault(op, [0, 0, 0, 0, 0])
            row[0] += 1
            row[1] += int(error)
            row[2] += up
            row[3] += down
            row[4] += int(seconds * 1e6)

    def snapshot(self) -> dict[str, dict[str, list[int]]]:
        with self.lock:
            return {label: {op: list(v) for op, v in ops.items()}
                    for label, ops in self.data.items()}


class _ProxyServer(ThreadingHTTPServer):
    daemon_threads = True
    request_queue_size = 256

    def __init__(self, label: str, service: str, upstream: tuple[str, int],
                 tally: _Tally) -> None:
        super().__init__((HOST, 0), _ProxyHandler)
        self.label = label
        self.service = service
        self.upstream = upstream
        self.tally = tally
        self.local = threading.local()  # one upstream connection per client connection

    def forward(self, method: str, target: str, headers: list[tuple[str, str]],
                body: bytes | None) -> tuple[int, str, list[tuple[str, str]], bytes]:
        for attempt in (1, 2):
            conn: http.client.HTTPConnection | None = getattr(self.local, "conn", None)
            fresh = conn is None
            if conn is None:
                conn = http.client.HTTPConnection(*self.upstream, timeout=120)
                self.local.conn = conn
            try:
                conn.putrequest(method, target, skip_host=True, skip_accept_encoding=True)
                for k, v in headers:
                    conn.putheader(k, v)
                if body is not None:
                    conn.putheader("Content-Length", str(len(body)))
                conn.endheaders(body)
                resp = conn.getresponse()
                data = resp.read()
                if resp.will_close:
                    conn.close()
                    self.local.conn = None
                return resp.status, resp.reason, resp.getheaders(), data
            except (http.client.RemoteDisconnected, ConnectionResetError, BrokenPipeError):
                conn.close()
                self.local.conn = None
                if fresh or attempt == 2:  # only a stale keep-alive connection is retried
                    raise
        raise AssertionError("unreachable")


class _ProxyHandler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    server: _ProxyServer

    def log_message(self, format: str, *args: Any) -> None:  # quiet
        pass

    def _read_body(self) -> bytes | None:
        if "chunked" in self.headers.get("Transfer-Encoding", "").lower():
            parts: list[bytes] = []
            while True:
                size = int(self.rfile.readline().split(b";", 1)[0].strip(), 16)
                if size == 0:
                    while self.rfile.readline() not in (b"\r\n", b"\n", b""):
                        pass  # trailers (none are expected over plain HTTP)
                    return b"".join(parts)
                parts.append(self.rfile.read(size))
                self.rfile.readline()
        length = self.headers.get("Content-Length")
        return self.rfile.read(int(length)) if length is not None else None

    def _serve(self) -> None:
        if self.path == COUNTS_PATH:
            out = json.dumps(self.server.tally.snapshot()).encode()
            self.send_response(200)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(out)))
            self.end_headers()
            self.wfile.write(out)
            return
        srv = self.server
        body = self._read_body()
        headers = [(k, v) for k, v in self.headers.items() if k.lower() not in HOP_HEADERS]
        if srv.service == "dynamodb":
            op = self.headers.get("X-Amz-Target", "?").rpartition(".")[2]
        else:
            op = s3_operation(self.command, self.path, self.headers.get("Host", ""),
                              self.headers)
        t0 = time.perf_counter()
        try:
            status, reason, resp_headers, data = srv.forward(self.command, self.path, headers,
                                                             body)
        except OSError as exc:
            srv.tally.add(srv.label, f"{srv.service}:{op}", True, len(body or b""), 0,
                          time.perf_counter() - t0)
            self.send_error(502, f"upstream: {exc}")
            return
        srv.tally.add(srv.label, f"{srv.service}:{op}", status >= 400, len(body or b""),
                      len(data), time.perf_counter() - t0)
        self.send_response_only(status, reason)
        for k, v in resp_headers:
            if k.lower() not in HOP_HEADERS:
                self.send_header(k, v)
        if self.command == "HEAD":
            length = next((v for k, v in resp_headers if k.lower() == "content-length"), None)
            if length is not None:
                self.send_header("Content-Length", length)
        else:
            self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        if self.command != "HEAD":
            self.wfile.write(data)

    do_GET = do_PUT = do_POST = do_HEAD = do_DELETE = do_PATCH = do_OPTIONS = _serve


def proxy_main(argv: list[str]) -> int:
    """Child process: listens on one port per ``label=service``; prints {label: port}."""
    ap = argparse.ArgumentParser(prog="s3_requests.py _proxy")
    ap.add_argument("--upstream", required=True, help="host:port of the moto server")
    ap.add_argument("--listen", action="append", default=[], help="label=s3|dynamodb")
    a = ap.parse_args(argv)
    host, _, port = a.upstream.rpartition(":")
    tally = _Tally()
    servers = []
    for spec in a.listen:
        label, _, service = spec.partition("=")
        servers.append(_ProxyServer(label, service, (host, int(port)), tally))
    for s in servers:
        threading.Thread(target=s.serve_forever, daemon=True).start()
    stop = threading.Event()
    signal.signal(signal.SIGTERM, lambda *_: stop.set())
    signal.signal(signal.SIGINT, lambda *_: stop.set())
    parent = os.getppid()
    print(json.dumps({s.label: s.server_address[1] for s in servers}), flush=True)
    while not stop.wait(1.0) and os.getppid() == parent:
        pass  # also ends if the benchmark dies without stopping us
    return 0


# == processes: moto server and proxy ======================================================
def _log_tail(path: Path, lines: int = 15) -> str:
    with contextlib.suppress(OSError):
        return "\n".join(path.read_text(errors="replace").splitlines()[-lines:])
    return "(no log)"


def _stop_popen(popen: subprocess.Popen[bytes] | None) -> int | None:
    if popen is None:
        return None
    if popen.poll() is None:
        os.kill(popen.pid, signal.SIGTERM)
        try:
            popen.wait(10)
        except subprocess.TimeoutExpired:
            os.kill(popen.pid, signal.SIGKILL)
            popen.wait(10)
    return popen.returncode


def _cpu(popen: subprocess.Popen[bytes] | None) -> float:
    if popen is None:
        return 0.0
    with contextlib.suppress(psutil.Error):
        t = psutil.Process(popen.pid).cpu_times()
        return float(t.user + t.system)
    return 0.0


class MotoServer:
    """The tests' moto server (tests/support/moto.py): one request at a time (moto's threaded
    server loses DynamoDB writes under concurrency), on a port of its own choosing; stopped
    by its PID."""

    def __init__(self, log_path: Path) -> None:
        self._server = SharedMotoServer(log_path.parent, log_path.stem)

    @property
    def port(self) -> int:
        return self._server.port

    @property
    def endpoint(self) -> str:
        return self._server.endpoint

    @property
    def popen(self) -> subprocess.Popen[bytes] | None:
        return self._server.proc

    def start(self, deadline: Deadline) -> None:
        try:
            self._server.start(timeout=max(1.0, min(60.0, deadline.remaining())))
        except (RuntimeError, AssertionError) as exc:
            raise BenchError(f"moto server did not start: {exc}") from exc

    def cpu_seconds(self) -> float:
        return _cpu(self.popen)

    def stop(self) -> None:
        self._server.stop()


Snapshot = dict[str, dict[str, list[int]]]


class CountingProxy:
    """The proxy child process; ``counts()`` asks it for its tally over HTTP."""

    def __init__(self, upstream_port: int, listeners: dict[str, str], log_path: Path) -> None:
        self.upstream_port = upstream_port
        self.listeners = listeners
        self.log_path = log_path
        self.ports: dict[str, int] = {}
        self.popen: subprocess.Popen[bytes] | None = None

    def start(self, deadline: Deadline) -> None:
        argv = [sys.executable, str(Path(__file__).resolve()), "_proxy",
                "--upstream", f"{HOST}:{self.upstream_port}"]
        argv += [f"--listen={label}={svc}" for label, svc in self.listeners.items()]
        with open(self.log_path, "ab") as log:
            self.popen = subprocess.Popen(argv, stdout=subprocess.PIPE, stderr=log,
                                          start_new_session=True)
        assert self.popen.stdout is not None
        ready, _, _ = select.select([self.popen.stdout], [], [], min(20, deadline.remaining()))
        line = self.popen.stdout.readline() if ready else b""
        if not line:
            _stop_popen(self.popen)
            raise BenchError(f"proxy did not start; log tail:\n{_log_tail(self.log_path)}")
        self.ports = {k: int(v) for k, v in json.loads(line).items()}

    def endpoint(self, label: str) -> str:
        return f"http://{HOST}:{self.ports[label]}"

    def counts(self) -> Snapshot:
        if self.popen is None or self.popen.poll() is not None:
            raise BenchError(f"the counting proxy is not running; log tail:\n"
                             f"{_log_tail(self.log_path)}")
        port = next(iter(self.ports.values()))
        with urllib.request.urlopen(f"http://{HOST}:{port}{COUNTS_PATH}", timeout=10) as r:
            data: Snapshot = json.loads(r.read())
        return data

    def cpu_seconds(self) -> float:
        return _cpu(self.popen)

    def stop(self) -> None:
        _stop_popen(self.popen)


# == request windows =======================================================================
@dataclass
class Window:
    """The requests one broker made between two snapshots."""

    seconds: float
    by_category: dict[str, int]
    by_op: dict[str, int]
    moto_ms_by_op: dict[str, float]  # mean time moto took per request (proxy -> moto -> proxy)
    errors: int
    bytes_up: int
    bytes_down: int

    @property
    def objects(self) -> int:
        """S3 objects created (a multipart upload is one object of several PUT requests)."""
        return sum(self.by_op.get(f"s3:{op}", 0)
                   for op in ("PutObject", "CompleteMultipartUpload", "CopyObject"))

    def per_gib(self, cat: str, payload_bytes: int) -> float:
        n = self.objects if cat == "objects" else self.by_category.get(cat, 0)
        return n / (payload_bytes / GIB)


def window(before: Snapshot, after: Snapshot, labels: list[str], seconds: float) -> Window:
    cats = dict.fromkeys(CATEGORIES, 0)
    ops: dict[str, int] = {}
    micros: dict[str, int] = {}
    errors = up = down = 0
    for label in labels:
        old = before.get(label, {})
        for op, row in after.get(label, {}).items():
            prev = old.get(op, [0, 0, 0, 0, 0])
            n, e, u, d, us = (a - b for a, b in zip(row, prev, strict=True))
            if n == 0:
                continue
            service, _, name = op.partition(":")
            cats[category(service, name)] += n
            ops[op] = ops.get(op, 0) + n
            micros[op] = micros.get(op, 0) + us
            errors, up, down = errors + e, up + u, down + d
    mean_ms = {op: round(micros[op] / ops[op] / 1000, 2) for op in sorted(ops)}
    return Window(seconds, cats, dict(sorted(ops.items())), mean_ms, errors, up, down)


# == brokers ===============================================================================
Configure = Callable[[int], tuple[list[str], dict[str, str]]]


@dataclass
class Target:
    """One broker under test. Every round runs a fresh instance (``configure`` makes its
    table, prefix or bucket and data dir for that round); its proxy labels are its own."""

    name: str
    port: int
    log_path: Path
    labels: list[str]
    configure: Configure = field(repr=False)
    argv: list[str] = field(default_factory=list)
    env: dict[str, str] | None = None
    process: BrokerProcess | None = None
    starts: int = 0
    ready_file: Path | None = None  # ours: started on port 0, the port read from this file

    def fresh(self, round_no: int, deadline: Deadline) -> BrokerProcess:
        self.stop()
        self.argv, self.env = self.configure(round_no)
        return self.start(deadline)

    def start(self, deadline: Deadline) -> BrokerProcess:
        port = self.port
        if self.ready_file is not None and self.process is not None:
            port = self.process.port  # a restart keeps the address clients know
        self.process = BrokerProcess(self.name, self.argv, port, self.log_path, self.env,
                                     self.ready_file)
        self.starts += 1
        self.process.start(deadline)
        return self.process

    def stop(self) -> dict[str, Any]:
        if self.process is None:
            return {}
        self.process.stop()
        return self.process.exit_info

    @property
    def broker(self) -> BrokerProcess:
        assert self.process is not None
        return self.process


def aws_env() -> dict[str, str]:
    """Dummy credentials; nothing from the user's AWS configuration."""
    return {"AWS_ACCESS_KEY_ID": "testing", "AWS_SECRET_ACCESS_KEY": "testing",
            "AWS_DEFAULT_REGION": REGION, "AWS_REGION": REGION,
            "AWS_CONFIG_FILE": os.devnull, "AWS_SHARED_CREDENTIALS_FILE": os.devnull,
            "AWS_EC2_METADATA_DISABLED": "true"}


def base_env() -> dict[str, str]:
    drop = {"AWS_PROFILE", "AWS_SESSION_TOKEN", "AWS_ENDPOINT_URL", "AWS_ENDPOINT_URL_S3",
            "AWS_ENDPOINT_URL_DYNAMODB", "AWS_ENDPOINT"}
    return {k: v for k, v in os.environ.items() if k not in drop and not k.startswith("BROKER_")}


class MotoAdmin:
    """Makes buckets and metadata tables directly on moto (not through the proxy)."""

    def __init__(self, moto: MotoServer) -> None:
        session = boto3.session.Session(aws_access_key_id="testing",
                                        aws_secret_access_key="testing", region_name=REGION)
        self.s3 = session.client("s3", endpoint_url=moto.endpoint)
        self.ddb = session.client("dynamodb", endpoint_url=moto.endpoint)

    def bucket(self, name: str) -> str:
        self.s3.create_bucket(Bucket=name)
        return name

    def table(self, name: str) -> str:
        from broker_service.metadata.dynamodb import DynamoDbMetadataStore

        DynamoDbMetadataStore(name, client=self.ddb).create_table()
        return name


def make_target(name: str, workdir: Path, proxy: CountingProxy, moto: MotoServer,
                admin: MotoAdmin, settings: Settings, code: Path) -> Target:
    if name == "tansu":  # a third-party broker: it cannot report a port it chose itself
        port = free_port()
        url = f"tcp://{HOST}:{port}"
        env = {**base_env(), **aws_env(), "AWS_ENDPOINT": proxy.endpoint("tansu-s3"),
               "AWS_ALLOW_HTTP": "true", "AWS_ACCESS_KEY_ID": "x", "AWS_SECRET_ACCESS_KEY": "x"}

        def tansu(round_no: int) -> tuple[list[str], dict[str, str]]:
            bucket = admin.bucket(f"{TANSU_BUCKET}-r{round_no}")
            return [str(settings.tansu_bin), "broker", "--storage-engine", f"s3://{bucket}/",
                    "--listener-url", url, "--advertised-listener-url", url], env

        return Target(name, port, workdir / "tansu.log", ["tansu-s3"], tansu)

    def ours(round_no: int) -> tuple[list[str], dict[str, str]]:
        table = admin.table(f"bench-s3-{name}-r{round_no}")
        env = {**base_env(), **aws_env(), "PYTHONPATH": str(code),
               "BROKER_STORAGE": f"s3://{OURS_BUCKET}/{name}-r{round_no}",
               "BROKER_METADATA": f"dynamodb://{table}",
               "BROKER_WAL": "object" if name == "ours" else "file",
               "AWS_ENDPOINT_URL": moto.endpoint,  # anything not S3/DynamoDB: not counted
               "AWS_ENDPOINT_URL_S3": proxy.endpoint(f"{name}-s3"),
               "AWS_ENDPOINT_URL_DYNAMODB": proxy.endpoint(f"{name}-ddb"),
               **settings.ours_env}
        argv = ours_argv(workdir / f"{name}-r{round_no}", workdir / f"{name}.ready")
        return argv, env

    return Target(name, 0, workdir / f"{name}.log", [f"{name}-s3", f"{name}-ddb"], ours,
                  ready_file=workdir / f"{name}.ready")


def proxy_listeners(brokers: list[str]) -> dict[str, str]:
    out: dict[str, str] = {}
    for b in brokers:
        out[f"{b}-s3"] = "s3"
        if b != "tansu":
            out[f"{b}-ddb"] = "dynamodb"
    return out


# == the load ==============================================================================
@dataclass
class Latency:
    sent: int
    seconds: float  # first produce() to the last acknowledgement
    send_rate: float
    callback_ms: list[float] = field(repr=False)  # produce() -> delivery callback (Python)
    rdkafka_ms: list[float] = field(repr=False)  # librdkafka's msg.latency()
    p50_ms: float | None = None
    p99_ms: float | None = None
    p999_ms: float | None = None
    max_ms: float | None = None
    rdkafka_p50_ms: float | None = None
    rdkafka_p99_ms: float | None = None

    def fill(self) -> None:
        cb, rd = sorted(self.callback_ms), sorted(self.rdkafka_ms)
        self.p50_ms, self.p99_ms = percentile(cb, 0.5), percentile(cb, 0.99)
        self.p999_ms, self.max_ms = percentile(cb, 0.999), (cb[-1] if cb else None)
        self.rdkafka_p50_ms, self.rdkafka_p99_ms = percentile(rd, 0.5), percentile(rd, 0.99)


def steady_load(bootstrap: str, topic: str, rate: int, seconds: float, linger_ms: float,
                deadline: Deadline) -> Latency:
    """``rate`` records/s for ``seconds`` on a fixed schedule, one produce() per record."""
    load = steady_produce(bootstrap, topic, rate, seconds,
                          {**PRODUCER_CONF, "linger.ms": linger_ms}, deadline)
    lat = Latency(load.sent, load.seconds, load.sent / load.sent_seconds, load.callback_ms,
                  load.rdkafka_ms)
    lat.fill()
    return lat


def consume_from_zero(bootstrap: str, topic: str, partitions: int, records: int,
                      deadline: Deadline, on_done: Callable[[], object]) -> float:
    """A fresh consumer reads every record from offset 0; ``on_done`` runs as the last record
    arrives (before the consumer closes), so its idle fetches at the end are not counted."""
    consumer = Consumer({**CONSUMER_CONF, "bootstrap.servers": bootstrap,
                         "group.id": f"bench-{uuid.uuid4().hex[:8]}",
                         "client.id": "bench-consumer"})
    try:
        consumer.list_topics(topic, timeout=max(1.0, min(10.0, deadline.remaining())))
        start = time.perf_counter()
        consumer.assign([TopicPartition(topic, p, 0) for p in range(partitions)])
        read_records(consumer, partitions, records, deadline)
        elapsed = time.perf_counter() - start
        on_done()
    finally:
        consumer.close()
    return elapsed


# == rounds ================================================================================
@dataclass(frozen=True)
class Settings:
    records: int
    rounds: int
    partitions: int
    brokers: list[str]
    rate: int
    latency_seconds: float
    latency_linger_ms: float
    quiet: float
    settle_max: float
    cold: bool
    idle: float
    round_timeout: float
    timeout: float
    keep_data: bool
    tansu_bin: Path
    ours_env: dict[str, str]
    out: Path | None = None


@dataclass
class RoundResult:
    broker: str
    round: int
    topic: str = ""
    latency: Latency | None = None
    produce_s: float | None = None
    produce_mb_s: float | None = None
    write_settle_s: float | None = None
    consume_s: float | None = None
    consume_mb_s: float | None = None
    cold_consume_s: float | None = None
    cold_consume_mb_s: float | None = None
    notes: list[str] = field(default_factory=list)
    restart_s: float | None = None
    windows: dict[str, Window] = field(default_factory=dict)
    broker_cpu_s: dict[str, float] = field(default_factory=dict)
    moto_cpu_s: dict[str, float] = field(default_factory=dict)
    proxy_cpu_s: dict[str, float] = field(default_factory=dict)
    error: str | None = None


class Meter:
    """Cuts a broker's requests (and the broker's and moto's CPU time) into windows."""

    def __init__(self, proxy: CountingProxy, moto: MotoServer, target: Target,
                 result: RoundResult) -> None:
        self.proxy, self.moto, self.target, self.result = proxy, moto, target, result
        self._mark()

    def _mark(self) -> None:
        self.snap = self.proxy.counts()
        self.t = time.monotonic()
        self.moto_cpu = self.moto.cpu_seconds()
        self.proxy_cpu = self.proxy.cpu_seconds()
        self.cpu = self._broker_cpu()

    def _broker_cpu(self) -> float:
        b = self.target.process
        if b is None or not b.alive:
            return 0.0
        with contextlib.suppress(psutil.Error):
            return b.cpu_seconds()
        return 0.0

    def cut(self, name: str) -> Window:
        snap, t, moto_cpu, proxy_cpu, cpu = (self.snap, self.t, self.moto_cpu, self.proxy_cpu,
                                             self.cpu)
        self._mark()
        w = window(snap, self.snap, self.target.labels, self.t - t)
        self.result.windows[name] = w
        self.result.broker_cpu_s[name] = max(0.0, self.cpu - cpu)
        self.result.moto_cpu_s[name] = self.moto_cpu - moto_cpu
        self.result.proxy_cpu_s[name] = self.proxy_cpu - proxy_cpu
        return w

    def settle(self, settings: Settings, deadline: Deadline) -> float:
        """Waits until the broker has made no write request for ``quiet`` s (background
        uploads, compaction); returns the seconds waited."""
        start = time.monotonic()
        last = self._writes(self.proxy.counts())
        quiet_since = start
        while True:
            time.sleep(0.25)
            now = time.monotonic()
            cur = self._writes(self.proxy.counts())
            if cur != last:
                last, quiet_since = cur, now
            if now - quiet_since >= settings.quiet or now - start >= settings.settle_max:
                return now - start
            deadline.check("waiting for the broker's background writes to stop")

    def _writes(self, snap: Snapshot) -> int:
        w = window({}, snap, self.target.labels, 0)
        return sum(w.by_category[c] for c in WRITE_CATEGORIES)


def run_round(target: Target, round_no: int, settings: Settings, proxy: CountingProxy,
              moto: MotoServer, deadline: Deadline) -> RoundResult:
    topic = f"s3-bench-r{round_no}-{uuid.uuid4().hex[:8]}"
    result = RoundResult(target.name, round_no, topic)
    n = settings.records
    payload = n * VALUE_BYTES
    try:
        prev = target.stop()  # the previous round's instance
        if prev.get("exit_code") not in (None, 0, -15) or prev.get("killed"):
            result.notes.append(f"the previous round's instance ended badly: {prev}")
        broker = target.fresh(round_no, deadline.sooner(60))
        print(f"round {round_no}: started a fresh {target.name} broker, pid {broker.pid} on "
              f"{broker.bootstrap}", flush=True)
        meter = Meter(proxy, moto, target, result)
        lat_topic = f"{topic}-lat"
        create_topic(broker.bootstrap, lat_topic, 1, deadline)
        create_topic(broker.bootstrap, topic, settings.partitions, deadline)
        steady_load(broker.bootstrap, lat_topic, settings.rate, WARMUP_RECORDS / settings.rate,
                    settings.latency_linger_ms, deadline)  # warm-up: not measured
        meter.settle(settings, deadline)
        meter.cut("setup")

        result.latency = steady_load(broker.bootstrap, lat_topic, settings.rate,
                                     settings.latency_seconds, settings.latency_linger_ms,
                                     deadline)
        meter.settle(settings, deadline)
        meter.cut("latency")

        result.produce_s = produce_all(broker.bootstrap, topic, settings.partitions, n, deadline)
        result.produce_mb_s = payload / MB / result.produce_s
        result.write_settle_s = meter.settle(settings, deadline)
        meter.cut("write")

        result.consume_s = consume_from_zero(broker.bootstrap, topic, settings.partitions, n,
                                             deadline, lambda: meter.cut("read"))
        result.consume_mb_s = payload / MB / result.consume_s
        if settings.cold:
            meter.cut("read_close")
            t0 = time.monotonic()
            target.stop()
            target.start(deadline.sooner(60))
            result.restart_s = time.monotonic() - t0
            meter.cut("restart")
            result.cold_consume_s = consume_from_zero(
                broker.bootstrap, topic, settings.partitions, n, deadline,
                lambda: meter.cut("cold_read"))
            result.cold_consume_mb_s = payload / MB / result.cold_consume_s
        if settings.idle > 0:  # background requests of an idle broker
            meter.cut("idle_start")
            time.sleep(settings.idle)
            meter.cut("idle")
        target.broker.assert_alive("finishing the round")
    except Aborted:
        raise
    except Exception as exc:  # a failed round is a result, not a crash
        result.error = f"{type(exc).__name__}: {exc}"
        b = target.process
        if b is not None:
            with contextlib.suppress(subprocess.TimeoutExpired):
                if b.popen is not None:
                    b.popen.wait(timeout=2)
            state = "running" if b.alive else f"exited with {b.popen and b.popen.returncode}"
            result.error += f"\n(broker {state}; log tail:)\n{b.log_tail(25)}"
    return result


def describe(r: RoundResult, payload: int) -> str:
    head = f"[round {r.round} {r.broker:9}]"
    if r.error:
        return f"{head} FAILED: {r.error}"
    gib_w = r.windows["write"].per_gib
    gib_r = r.windows["read"].per_gib
    lat = r.latency
    lw = r.windows["latency"]
    parts = [head,
             f"lat p50 {fmt(lat.p50_ms if lat else None)} "
             f"p99 {fmt(lat.p99_ms if lat else None)} ms "
             f"({lw.by_category['PUT']} PUTs)",
             f"| produce {fmt(r.produce_mb_s)} MB/s (+{fmt(r.write_settle_s)}s settle) "
             f"PUT/GiB {gib_w('PUT', payload):.0f} objects/GiB {gib_w('objects', payload):.0f}",
             f"| consume {fmt(r.consume_mb_s)} MB/s GET/GiB {gib_r('GET', payload):.0f}"]
    if "cold_read" in r.windows:
        gib_c = r.windows["cold_read"].per_gib
        parts.append(f"| cold {fmt(r.cold_consume_mb_s)} MB/s GET/GiB "
                     f"{gib_c('GET', payload):.0f} LIST/GiB {gib_c('LIST', payload):.0f}")
    return " ".join(parts) + "".join(f"\n    note: {n}" for n in r.notes)


# == summary ===============================================================================
@dataclass
class Row:
    metric: str
    values: dict[str, float | None]
    automq: float | None = None
    spec: str = ".1f"

    @property
    def ratio(self) -> float | None:
        ours, tansu = self.values.get("ours"), self.values.get("tansu")
        if ours is None or tansu is None or tansu == 0:
            return None
        return ours / tansu


def summarize(results: list[RoundResult], settings: Settings) -> list[Row]:
    ok = {b: [r for r in results if r.broker == b and r.error is None]
          for b in settings.brokers}
    lat_payload = max(1, int(settings.rate * settings.latency_seconds)) * VALUE_BYTES
    payload = settings.records * VALUE_BYTES

    def med(fn: Callable[[RoundResult], float | None]) -> dict[str, float | None]:
        return {b: median([fn(r) for r in rs]) for b, rs in ok.items()}

    def per_gib(win: str, cats: tuple[str, ...], size: int) -> dict[str, float | None]:
        return med(lambda r: sum(r.windows[win].per_gib(c, size) for c in cats)
                   if win in r.windows else None)

    def op_per_gib(win: str, op: str, size: int) -> dict[str, float | None]:
        return med(lambda r: r.windows[win].by_op.get(op, 0) / (size / GIB)
                   if win in r.windows else None)

    def per_min(cats: tuple[str, ...]) -> dict[str, float | None]:
        return med(lambda r: sum(r.windows["idle"].by_category[c] for c in cats)
                   / r.windows["idle"].seconds * 60 if "idle" in r.windows else None)

    rows = [
        Row("produce MB/s", med(lambda r: r.produce_mb_s)),
        Row(f"ack latency p50 ms @{settings.rate}/s",
            med(lambda r: r.latency.p50_ms if r.latency else None)),
        Row(f"ack latency p99 ms @{settings.rate}/s",
            med(lambda r: r.latency.p99_ms if r.latency else None)),
        Row(f"ack latency p999 ms @{settings.rate}/s",
            med(lambda r: r.latency.p999_ms if r.latency else None)),
        Row("consume MB/s (warm)", med(lambda r: r.consume_mb_s)),
    ]
    if settings.cold:
        rows.append(Row("consume MB/s (cold, restarted)", med(lambda r: r.cold_consume_mb_s)))
    write_rows = [("PUT", ("PUT",)), ("GET", ("GET",)), ("LIST", ("LIST",)),
                  ("other", ("other",))]
    for win, name, size in (("write", "bulk", payload),
                            ("latency", f"@{settings.rate}/s", lat_payload)):
        for label, cats in [*write_rows[:1], ("objects", ("objects",)), *write_rows[1:]]:
            vals = per_gib(win, cats, size)
            if label in ("PUT", "objects") or any(vals.values()):
                rows.append(Row(f"{label}/GiB written ({name})", vals,
                                AUTOMQ_PUT_PER_GB if label == "PUT" else None, ".2f"))
        vals = op_per_gib(win, "dynamodb:TransactWriteItems", size)
        if any(vals.values()):
            rows.append(Row(f"DDB TransactWrite/GiB ({name})", vals, None, ".2f"))
    for win, name in (("read", "warm"), ("cold_read", "cold")):
        if win == "cold_read" and not settings.cold:
            continue
        for label, cats in write_rows:
            vals = per_gib(win, cats, payload)
            if label == "GET" or any(vals.values()):
                rows.append(Row(f"{label}/GiB read ({name})", vals, None, ".2f"))
    if settings.idle > 0:
        rows.append(Row("idle: S3 requests/min", per_min(("PUT", "GET", "LIST", "other"))))
        rows.append(Row("idle: DynamoDB calls/min",
                        per_min(("ddb_write", "ddb_read", "ddb_other"))))
    return rows


def print_table(rows: list[Row], settings: Settings) -> None:
    brokers = settings.brokers
    cols = [("metric", 34), ("ours/tansu", 10), *[(b, 10) for b in brokers],
            ("AutoMQ", 7)]
    print(f"\n{settings.records} x {VALUE_BYTES} B records, acks=all, linger.ms=5, "
          f"batch.size=1000000, {settings.partitions} partition(s); latency: {settings.rate} "
          f"msg/s for {settings.latency_seconds:g} s, linger.ms={settings.latency_linger_ms:g}, "
          f"produce() -> delivery callback. Median of {settings.rounds} round(s).")
    print("Requests per GiB of payload; 'bulk' = the N-record produce + the wait until the "
          "broker stops writing; 'warm' = read right after; 'cold' = read after a broker "
          "restart. ours = object WAL on S3+DynamoDB, ours-file = file WAL + S3 uploads, "
          "tansu = Tansu s3://. AutoMQ = the cited 31.25 PUT/GB. 'idle' = requests of an idle "
          f"broker over {settings.idle:g} s at the end of each round.")
    print_columns(cols, [[r.metric, "n/a" if r.ratio is None else f"{r.ratio:.2f}x",
                          *[fmt(r.values.get(b), r.spec) for b in brokers],
                          "" if r.automq is None else f"{r.automq:g}"] for r in rows],
                  left_first=True)


def tree_hash(root: Path = REPO) -> str:
    """sha256 over ROOT/broker_service/*.py as they are on disk (may be uncommitted)."""
    h = hashlib.sha256()
    for path in sorted((root / "broker_service").rglob("*.py")):
        h.update(str(path.relative_to(root)).encode() + b"\0" + path.read_bytes())
    return h.hexdigest()[:16]


def snapshot_code(workdir: Path) -> Path:
    """A copy of broker_service/ that every start of our brokers runs, so that edits to the
    working tree during the run cannot mix code versions between rounds."""
    dest = workdir / "src"
    shutil.copytree(REPO / "broker_service", dest / "broker_service",
                    ignore=shutil.ignore_patterns("__pycache__"))
    return dest


def environment(settings: Settings) -> dict[str, Any]:
    return bench_environment(
        {"broker_service_dirty": command_output(["git", "status", "--porcelain",
                                                 "broker_service"]),
         "broker_service_tree_sha256": tree_hash(),
         "tansu_version": command_output([str(settings.tansu_bin), "--version"])},
        dists=("moto", "boto3"))


def write_json(path: Path, settings: Settings, env: dict[str, Any], results: list[RoundResult],
               rows: list[Row], totals: dict[str, Any], exits: dict[str, Any],
               error: str | None) -> None:
    doc = {
        "settings": {**asdict(settings), "tansu_bin": str(settings.tansu_bin),
                     "out": str(settings.out) if settings.out else None,
                     "value_bytes": VALUE_BYTES, "producer": PRODUCER_CONF,
                     "consumer": CONSUMER_CONF, "mb": MB, "gib": GIB,
                     "automq_put_per_gb": AUTOMQ_PUT_PER_GB},
        "environment": env,
        "summary": [{**asdict(r), "ratio_ours_over_tansu": r.ratio} for r in rows],
        "rounds": [asdict(r) for r in results],
        "proxy_totals": totals,
        "exits": exits,
        "error": error,
    }
    save_json(path, doc)


# == main ==================================================================================
def parse_args(argv: list[str] | None) -> Settings:
    ap = argparse.ArgumentParser(description=(__doc__ or "").split("\n\n")[0])
    ap.add_argument("--records", type=int, default=None, help="records per round (100000)")
    ap.add_argument("--rounds", type=int, default=None, help="rounds per broker (3)")
    ap.add_argument("--quick", action="store_true", help="20000 records, 1 round")
    ap.add_argument("--partitions", type=int, default=1, help="partitions of the bulk topic")
    ap.add_argument("--brokers", default=",".join(BROKERS), help="ours,tansu,ours-file")
    ap.add_argument("--rate", type=int, default=2000, help="latency phase msg/s (2000)")
    ap.add_argument("--latency-seconds", type=float, default=5.0)
    ap.add_argument("--latency-linger-ms", type=float, default=5.0,
                    help="linger.ms of the latency producer (5, as in the bulk load)")
    ap.add_argument("--quiet", type=float, default=3.0,
                    help="a phase ends once the broker made no S3/DynamoDB write for this long")
    ap.add_argument("--settle-max", type=float, default=30.0, help="longest wait for quiet")
    ap.add_argument("--no-cold", action="store_true", help="skip the restart + cold read")
    ap.add_argument("--idle", type=float, default=6.0,
                    help="seconds of idling at the end of a round: requests/min when idle")
    ap.add_argument("--ours-env", action="append", default=[], metavar="BROKER_X=V",
                    help="extra environment for our brokers, e.g. BROKER_WAL_FLUSH_MS=10")
    ap.add_argument("--round-timeout", type=float, default=300, help="seconds per round")
    ap.add_argument("--tansu-bin", type=Path, default=None)
    add_run_options(ap, "s3_requests", 2400)
    a = ap.parse_args(argv)
    brokers, tansu_bin = brokers_and_tansu(ap, a.brokers, BROKERS, a.tansu_bin)
    ours_env = dict(kv.split("=", 1) for kv in a.ours_env)
    return Settings(
        records=a.records or (20_000 if a.quick else 100_000),
        rounds=a.rounds or (1 if a.quick else 3), partitions=a.partitions, brokers=brokers,
        rate=a.rate, latency_seconds=a.latency_seconds, latency_linger_ms=a.latency_linger_ms,
        quiet=a.quiet, settle_max=a.settle_max, cold=not a.no_cold, idle=a.idle,
        round_timeout=a.round_timeout, timeout=a.timeout, keep_data=a.keep_data,
        tansu_bin=tansu_bin, ours_env=ours_env, out=a.out)


def main(argv: list[str] | None = None) -> int:
    settings = parse_args(argv)
    env = environment(settings)
    print(f"cpus={env['cpus']} librdkafka={env['librdkafka']} {env['tansu_version']} "
          f"moto={env['moto']} commit={env['git_commit'][:12]}", flush=True)
    proxy: CountingProxy | None = None
    targets: list[Target] = []
    results: list[RoundResult] = []
    exits: dict[str, Any] = {}
    totals: dict[str, Any] = {}
    with bench_run("bench-s3-requests-", settings.timeout, settings.keep_data) as bench:
        workdir, deadline = bench.workdir, bench.deadline
        moto = MotoServer(workdir / "moto.log")
        try:
            code = snapshot_code(workdir)
            env["broker_service_tree_sha256"] = tree_hash(code)  # the code our brokers ran
            moto.start(deadline)
            admin = MotoAdmin(moto)
            admin.bucket(OURS_BUCKET)
            proxy = CountingProxy(moto.port, proxy_listeners(settings.brokers),
                                  workdir / "proxy.log")
            proxy.start(deadline)
            print(f"moto pid {moto.popen and moto.popen.pid} on {moto.endpoint}; proxy pid "
                  f"{proxy.popen and proxy.popen.pid} ports {proxy.ports}", flush=True)
            targets = [make_target(name, workdir, proxy, moto, admin, settings, code)
                       for name in settings.brokers]
            for round_no in range(1, settings.rounds + 1):
                for t in targets:
                    if deadline.remaining() <= 0:
                        raise Aborted(f"overall timeout of {settings.timeout:.0f}s reached")
                    r = run_round(t, round_no, settings, proxy, moto,
                                  deadline.sooner(settings.round_timeout))
                    results.append(r)
                    print(describe(r, settings.records * VALUE_BYTES), flush=True)
        finally:  # before bench_run removes the work dir
            for t in targets:
                exits[t.name] = {**t.stop(), "starts": t.starts}
            if proxy is not None:
                with contextlib.suppress(Exception):
                    totals = proxy.counts()
                proxy.stop()
            moto.stop()
    error = bench.error
    rows = summarize(results, settings)
    print_table(rows, settings)
    out = results_path(settings.out, "s3_requests")
    env["repo_broker_service_sha256_end"] = tree_hash()
    write_json(out, settings, env, results, rows, totals, exits, error)
    print(f"\nresults: {out}")
    if env["repo_broker_service_sha256_end"] != env.get("broker_service_tree_sha256"):
        print(f"note: broker_service/ in the repo changed during the run; our brokers ran "
              f"the copy taken at the start (tree {env['broker_service_tree_sha256']})")
    print_unclean_exits(exits, clean=(0, -15, None))
    failed = error is not None or any(r.error for r in results)
    return 1 if failed else 0


if __name__ == "__main__":
    if len(sys.argv) > 1 and sys.argv[1] == "_proxy":
        sys.exit(proxy_main(sys.argv[2:]))
    sys.exit(main())
