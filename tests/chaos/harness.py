"""The kill loop: a 3-broker cluster, an idempotent producer and a group consumer, random
SIGKILLs, then a verifier that reads everything back.

Backends:
- ``embedded``: the brokers share one data directory (SQLite metadata, local objects) and
  each has its file WAL there (a takeover commits the dead broker's WAL from the shared disk);
- ``cloud``: S3 + DynamoDB on a moto server that handles one request at a time
  (tests/support/moto.py), the object WAL, and a data directory of each broker's own
  (nothing on it matters).

A cycle: let the cluster run ``up_s``, SIGKILL a broker (one leading partitions, unless
``victims="any"``), leave it dead ``down_s`` (drawn up to 1.5 leases, so some restarts beat
the lease and some come after the takeover), restart it: it boots during the next ``up_s``,
and the next kill waits until it serves (one broker down at a time). The producer writes numbered
records (key = the number) to every partition at a steady rate throughout, with
``enable.idempotence``; the group consumer reads along. At the end the verifier reads every
partition from offset 0 to its high watermark and counts what must all be 0:

- ``acked_missing``: acknowledged records not in the log;
- ``duplicates``: extra copies of a record;
- ``out_of_order``: records behind a later-numbered record of their partition (first copies);
- ``offset_conflicts``: acknowledged at an offset that holds another record, an offset read
  twice, or two acknowledged records at one offset;
- ``range_overlaps``: committed stream ranges of a partition that overlap (the metadata store,
  read directly: what would make the above appear);
- ``group_missed``: acknowledged records the group consumer never got.

Unavailability per kill: for each partition the victim led, the time from the kill to the
first acknowledgement of that partition after it; reported as p50 / max next to the lease.

Used by tests/chaos/test_chaos.py (the ``chaos`` lane) and bench/chaos.py (long runs).
"""

from __future__ import annotations

import bisect
import json
import os
import random
import statistics
import threading
import time
import uuid
from collections import Counter
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from tests.broker_process import BrokerProcess

TOPIC = "chaos"
REGION = "us-east-1"
AWS_TEST_ENV = {
    "AWS_ACCESS_KEY_ID": "testing",
    "AWS_SECRET_ACCESS_KEY": "testing",
    "AWS_DEFAULT_REGION": REGION,
    "AWS_REGION": REGION,
    "AWS_CONFIG_FILE": os.devnull,
    "AWS_SHARED_CREDENTIALS_FILE": os.devnull,
    "AWS_EC2_METADATA_DISABLED": "true",
}
MUST_BE_ZERO = (
    "acked_missing",
    "duplicates",
    "out_of_order",
    "offset_conflicts",
    "range_overlaps",
    "group_missed",
)


@dataclass
class ChaosConfig:
    backend: str  # "embedded" or "cloud"
    workdir: Path
    cycles: int = 20
    brokers: int = 3
    partitions: int = 4
    lease_ms: int = 4000
    rate: int = 800  # records per second, over all partitions
    value_bytes: int = 100
    seed: int = 1
    up_s: tuple[float, float] = (2.0, 5.0)
    down_s: tuple[float, float] | None = None  # default (0.2, 1.5 leases)
    victims: str = "leaders"  # "leaders": kill a broker leading partitions; "any"
    message_timeout_ms: int = 120_000
    request_timeout_ms: int = 30_000
    # producer linger; default 5 ms on the embedded backend, 100 ms on the cloud one: there a
    # produce is acknowledged after the object WAL's commit (a few hundred ms on moto), the
    # idempotent producer's 5-request window stays full, and librdkafka's broker thread
    # busy-polls (poll timeout 0) while it waits: 75% of a core, the harness's largest cost
    linger_ms: int | None = None
    drain_s: float = 150.0  # bound on the end phase (flush, consumer catching up)
    broker_env: dict[str, str] = field(default_factory=dict)  # extra settings for brokers
    log: Callable[[str], None] = print


@dataclass
class Kill:
    cycle: int
    broker: int
    at: float  # time.monotonic()
    down_s: float
    led: list[int]  # partitions the victim led when killed
    unavailable_s: dict[int, float] = field(default_factory=dict)


@dataclass
class ChaosResult:
    backend: str
    cycles: int
    lease_ms: int
    duration_s: float
    produced: int
    acked: int
    failed: int  # sends the producer gave up on (message.timeout.ms)
    failed_errors: dict[str, int]
    acked_missing: int
    duplicates: int
    out_of_order: int
    offset_conflicts: int
    range_overlaps: int
    group_missed: int
    group_redelivered: int
    unacked_in_log: int  # records whose send failed but which are in the log (allowed)
    log_records: int
    unavailability_p50_s: float
    unavailability_max_s: float
    unexpected_exits: list[dict[str, Any]]
    kills: list[dict[str, Any]]
    examples: dict[str, list[Any]]
    load: dict[str, Any]

    def violations(self) -> dict[str, int]:
        return {k: getattr(self, k) for k in MUST_BE_ZERO if getattr(self, k)}

    def summary(self) -> str:
        return (
            f"[{self.backend}] {self.cycles} kill cycles in {self.duration_s:.0f}s "
            f"(lease {self.lease_ms} ms): produced {self.produced}, acked {self.acked}, "
            f"send failures {self.failed}; acked missing {self.acked_missing}, duplicates "
            f"{self.duplicates}, out of order {self.out_of_order}, offset conflicts "
            f"{self.offset_conflicts}, range overlaps {self.range_overlaps}, group missed "
            f"{self.group_missed} (re-delivered {self.group_redelivered}); unavailability "
            f"per kill p50 {self.unavailability_p50_s:.1f}s max {self.unavailability_max_s:.1f}s;"
            f" unexpected broker exits {len(self.unexpected_exits)}; load {self.load}"
        )

    def to_json(self) -> str:
        return json.dumps(asdict(self), indent=2, default=str)


def load_figures() -> dict[str, Any]:
    """How busy the machine is (other engineers run tests on it): load averages, cores."""
    one, five, fifteen = os.getloadavg()
    return {"loadavg": [round(one, 2), round(five, 2), round(fifteen, 2)],
            "cpus": os.cpu_count()}  # fmt: skip


# -- the cluster ------------------------------------------------------------------------------
class Cluster:
    """N broker processes on one backend; the moto server too for ``cloud``. ``via``: given
    moto's endpoint, the one the brokers use for S3 and DynamoDB (a fault proxy in front)."""

    def __init__(self, cfg: ChaosConfig, via: Callable[[str], str] | None = None) -> None:
        self.cfg = cfg
        self.via = via
        self.moto: Any = None
        self.endpoint = ""
        self.table = ""
        self.brokers: list[BrokerProcess] = []

    def start(self) -> None:
        cfg = self.cfg
        env = {"BROKER_LEASE_MS": str(cfg.lease_ms), **cfg.broker_env}
        if cfg.backend == "embedded":
            shared = cfg.workdir / "shared"
            dirs = [shared] * cfg.brokers
            env.setdefault("BROKER_WAL", "file")
        elif cfg.backend == "cloud":
            env.update(self._start_cloud())
            # moto serves one request at a time and its DynamoDB queries scan the whole table:
            # three brokers group-committing every 50 ms saturate it, and every restart then
            # waits in its queue (3.7 s, 5.3 s, 7.2 s over three cycles, growing with the
            # table). Fewer, larger WAL objects keep moto below saturation; what is tested
            # (kills during writes and commits) is unchanged.
            env.setdefault("BROKER_WAL_FLUSH_MS", "200")
            dirs = [cfg.workdir / f"b{i + 1}" / "data" for i in range(cfg.brokers)]
        else:
            raise ValueError(f"unknown backend {cfg.backend}")
        self.brokers = [
            BrokerProcess(dirs[i], BROKER_NODE_ID=str(i + 1), **env) for i in range(cfg.brokers)
        ]
        for b in self.brokers:
            b.data_dir.mkdir(parents=True, exist_ok=True)
            b.start(timeout=60)

    def _start_cloud(self) -> dict[str, str]:
        import boto3

        from broker_service.metadata.dynamodb import DynamoDbMetadataStore
        from tests.support.moto import MotoServer

        # one request at a time: moto's threaded server loses writes under concurrency
        server = MotoServer(self.cfg.workdir / "moto").start()
        self.endpoint = server.endpoint
        self.moto = server.stop
        bucket, self.table = f"chaos-{uuid.uuid4().hex[:8]}", f"chaos-{uuid.uuid4().hex[:8]}"
        session = boto3.session.Session(
            aws_access_key_id="testing", aws_secret_access_key="testing", region_name=REGION
        )
        session.client("s3", endpoint_url=self.endpoint).create_bucket(Bucket=bucket)
        DynamoDbMetadataStore(
            self.table, client=session.client("dynamodb", endpoint_url=self.endpoint)
        ).create_table()
        endpoint = self.via(self.endpoint) if self.via else self.endpoint
        return {
            "BROKER_STORAGE": f"s3://{bucket}/chaos",
            "BROKER_METADATA": f"dynamodb://{self.table}",
            "BROKER_WAL": "object",
            "AWS_ENDPOINT_URL": endpoint,
            "AWS_ENDPOINT_URL_S3": endpoint,
            "AWS_ENDPOINT_URL_DYNAMODB": endpoint,
            **AWS_TEST_ENV,
        }

    @property
    def bootstrap(self) -> str:
        return ",".join(b.bootstrap for b in self.brokers)

    def metadata(self) -> Any:
        """A MetadataStore on the cluster's own backend (read directly by the verifier)."""
        if self.cfg.backend == "embedded":
            from broker_service.metadata.sqlite import SqliteMetadataStore

            return SqliteMetadataStore(self.cfg.workdir / "shared" / "metadata.sqlite")
        import boto3

        from broker_service.metadata.dynamodb import DynamoDbMetadataStore

        client = boto3.session.Session(
            aws_access_key_id="testing", aws_secret_access_key="testing", region_name=REGION
        ).client("dynamodb", endpoint_url=self.endpoint)
        return DynamoDbMetadataStore(self.table, client=client)

    def stop(self) -> dict[int, int | None]:
        codes = {}
        for i, b in enumerate(self.brokers):
            codes[i + 1] = b.stop(timeout=30)
        if self.moto is not None:
            self.moto()  # stops the moto server this cluster started
            self.moto = None
        return codes


# -- the clients ------------------------------------------------------------------------------
class ProducerThread(threading.Thread):
    """Numbered records at a steady rate, round-robin over the partitions."""

    def __init__(self, cfg: ChaosConfig, bootstrap: str) -> None:
        super().__init__(daemon=True, name="chaos-producer")
        self.cfg = cfg
        self.bootstrap = bootstrap
        self.stop_event = threading.Event()
        self.produced = 0
        self.acked: dict[int, tuple[int, int]] = {}  # key -> (partition, offset)
        self.ack_times: dict[int, list[float]] = {p: [] for p in range(cfg.partitions)}
        self.failed: dict[int, str] = {}
        self.sent_at: list[float] = []  # time.monotonic() of each record's produce()
        self.latency: dict[int, float] = {}  # key -> produce() to acknowledgement, seconds
        self.unflushed = 0
        self.error: BaseException | None = None

    def run(self) -> None:
        try:
            self._run()
        except BaseException as exc:  # reported by the harness
            self.error = exc

    def _run(self) -> None:
        from confluent_kafka import Producer

        cfg = self.cfg
        p = Producer({
            "bootstrap.servers": self.bootstrap, "acks": "all", "enable.idempotence": True,
            "linger.ms": cfg.linger_ms if cfg.linger_ms is not None
            else 100 if cfg.backend == "cloud" else 5,
            "message.timeout.ms": cfg.message_timeout_ms,
            "request.timeout.ms": cfg.request_timeout_ms, "max.in.flight": 5,
            "topic.metadata.refresh.interval.ms": 1000, "log_level": 2,
        })  # fmt: skip
        value = b"x" * cfg.value_bytes

        def on_delivery(err: Any, msg: Any) -> None:
            k = int(msg.key())
            if err is None:
                self.acked[k] = (msg.partition(), msg.offset())
                self.ack_times[msg.partition()].append(time.monotonic())
                self.latency[k] = msg.latency() or 0.0
            else:
                self.failed[k] = err.name()

        started = time.monotonic()
        i = 0
        while not self.stop_event.is_set():
            due = started + i / cfg.rate
            now = time.monotonic()
            if due > now:  # pacing the load, not waiting for a condition
                # records go in bursts of up to 10 ms and deliveries are served in between:
                # a poll per record woke this thread ~1,000 times a second (20% of a core)
                p.poll(0)
                time.sleep(max(min(due - now, 0.05), 0.01))
                continue
            try:
                p.produce(TOPIC, key=str(i).encode(), value=value,
                          partition=i % cfg.partitions, on_delivery=on_delivery)  # fmt: skip
            except BufferError:
                p.poll(0.1)  # the local queue is full: the cluster is slow right now
                continue
            self.sent_at.append(now)
            i += 1
            self.produced = i
            p.poll(0)
        self.unflushed = p.flush(cfg.message_timeout_ms / 1000 + 10)


class GroupConsumerThread(threading.Thread):
    def __init__(self, bootstrap: str, log_path: Path | None = None) -> None:
        super().__init__(daemon=True, name="chaos-consumer")
        self.bootstrap = bootstrap
        self.log_path = log_path
        self.stop_event = threading.Event()
        self.seen: Counter[int] = Counter()
        self.errors: list[str] = []
        # what the group consumer was doing, for a run where it missed records
        self.last_at: dict[int, tuple[float, int]] = {}  # partition: (monotonic, offset)
        self.assignment: list[int] = []
        self.rebalances: list[tuple[float, str, list[int]]] = []
        self.started_at = time.monotonic()
        self.drain: dict[str, Any] = {}  # the end phase: what it missed at its start and end

    def run(self) -> None:
        import logging

        from confluent_kafka import Consumer

        conf: dict[str, Any] = {
            "bootstrap.servers": self.bootstrap, "group.id": "chaos-group",
            "auto.offset.reset": "earliest", "session.timeout.ms": 10000,
            "enable.auto.commit": True, "auto.commit.interval.ms": 500, "log_level": 2,
            # librdkafka 2.16 was seen (1 of ~15 runs) to subscribe, ask for the topic's
            # metadata while its bootstrap connections were being replaced, and then wait in
            # join-state wait-metadata without asking again until the periodic refresh (5 min
            # by default): it never joined the group. The producer refreshes every second
            # already; a refresh every 5 s unsticks that client state, while wrong metadata
            # from a broker would still fail the run. The group trace below records it.
            "topic.metadata.refresh.interval.ms": 5000,
        }  # fmt: skip
        if self.log_path is not None:
            # librdkafka's group protocol trace: why a group consumer stops getting records
            logger = logging.getLogger(f"chaos-consumer-{id(self)}")
            logger.propagate = False
            logger.setLevel(logging.DEBUG)
            handler = logging.FileHandler(self.log_path)
            handler.setFormatter(logging.Formatter("%(asctime)s %(message)s"))
            logger.addHandler(handler)
            # fetch: what each partition's fetches got (a partition the group stopped getting)
            conf.update({"debug": "cgrp,metadata,topic,fetch", "log_level": 7, "logger": logger})
        c = Consumer(conf)

        def on_assign(_c: Any, parts: list[Any]) -> None:
            self.assignment = sorted(p.partition for p in parts)
            self.rebalances.append((time.monotonic(), "assign", self.assignment))

        def on_revoke(_c: Any, parts: list[Any]) -> None:
            self.rebalances.append((time.monotonic(), "revoke", sorted(p.partition for p in parts)))
            self.assignment = []

        self.started_at = time.monotonic()
        c.subscribe([TOPIC], on_assign=on_assign, on_revoke=on_revoke)
        try:
            while not self.stop_event.is_set():
                for m in c.consume(1000, 0.2):
                    if m.error() is None:
                        self.seen[int(m.key())] += 1
                        self.last_at[m.partition()] = (time.monotonic(), m.offset())
                    elif not m.error().retriable():
                        self.errors.append(str(m.error()))
        finally:
            c.close()


# -- the run ------------------------------------------------------------------------------------
def _leaders(bootstrap: str, partitions: int) -> dict[int, int]:
    from confluent_kafka.admin import AdminClient

    md = AdminClient({"bootstrap.servers": bootstrap}).list_topics(TOPIC, timeout=10)
    t = md.topics.get(TOPIC)
    if t is None or t.error is not None:
        return {}
    return {p: m.leader for p, m in t.partitions.items()}


def _create_topic(cluster: Cluster, partitions: int) -> None:
    from confluent_kafka.admin import AdminClient, NewTopic

    admin = AdminClient({"bootstrap.servers": cluster.brokers[0].bootstrap})
    for f in admin.create_topics([NewTopic(TOPIC, partitions, 1)]).values():
        f.result(30)
    want = {i + 1 for i in range(min(len(cluster.brokers), partitions))}
    deadline = time.monotonic() + 30
    while set(_leaders(cluster.bootstrap, partitions).values()) != want:
        if time.monotonic() > deadline:
            raise RuntimeError(f"leaders never spread: {_leaders(cluster.bootstrap, partitions)}")
        time.sleep(0.2)


def run(cfg: ChaosConfig) -> ChaosResult:
    rng = random.Random(cfg.seed)
    down = cfg.down_s or (0.2, 1.5 * cfg.lease_ms / 1000)
    cluster = Cluster(cfg)
    load_before = load_figures()
    started = time.monotonic()
    kills: list[Kill] = []
    unexpected: list[dict[str, Any]] = []
    producer: ProducerThread | None = None
    consumer: GroupConsumerThread | None = None
    try:
        cluster.start()
        _create_topic(cluster, cfg.partitions)
        producer = ProducerThread(cfg, cluster.bootstrap)
        consumer = GroupConsumerThread(cluster.bootstrap, cfg.workdir / "group-consumer.log")
        producer.start()
        consumer.start()
        booting: BrokerProcess | None = None  # restarted last cycle, booting meanwhile
        for cycle in range(cfg.cycles):
            time.sleep(rng.uniform(*cfg.up_s))  # the cluster runs: pacing, not a wait
            if booting is not None:  # one broker down at a time: the last one serves again
                booting.wait_ready(60)
                booting = None
            _restart_crashed(cluster, unexpected, cfg.log)
            leaders = _leaders(cluster.bootstrap, cfg.partitions)
            candidates = list(range(1, len(cluster.brokers) + 1))
            if cfg.victims == "leaders" and set(leaders.values()) & set(candidates):
                candidates = sorted(set(leaders.values()) & set(candidates))
            victim = rng.choice(candidates)
            b = cluster.brokers[victim - 1]
            kill = Kill(cycle, victim, time.monotonic(), rng.uniform(*down),
                        sorted(p for p, lead in leaders.items() if lead == victim))  # fmt: skip
            b.kill()
            kills.append(kill)
            time.sleep(kill.down_s)  # the broker stays dead this long
            b.launch()  # it boots while the cluster runs (as ECS restarts a task)
            booting = b
            cfg.log(
                f"[{cfg.backend}] cycle {cycle + 1}/{cfg.cycles}: killed broker {victim} "
                f"(led {kill.led}) for {kill.down_s:.1f}s; acked {len(producer.acked)}"
            )
        time.sleep(cfg.up_s[1])  # a last stretch of service after the last restart
        if booting is not None:
            booting.wait_ready(60)
        _restart_crashed(cluster, unexpected, cfg.log)
        producer.stop_event.set()
        # The end phase keeps the supervisor's job (ECS restarts a task whose broker exited):
        # a broker that stopped itself, e.g. fenced after the metadata store stalled past its
        # lease (moto, one request at a time, on a loaded CI host: 12 s without an answer),
        # is restarted while the clients drain, as it is during the cycles.
        flushed_by = time.monotonic() + cfg.message_timeout_ms / 1000 + 30
        while producer.is_alive() and time.monotonic() < flushed_by:
            producer.join(1.0)
            _restart_crashed(cluster, unexpected, cfg.log)
        if producer.error is not None:
            raise producer.error
        _wait_group(consumer, producer, cfg.drain_s,
                    lambda: _restart_crashed(cluster, unexpected, cfg.log))  # fmt: skip
        consumer.stop_event.set()
        consumer.join(30)
        _restart_crashed(cluster, unexpected, cfg.log)
        log_records = read_back(cluster.bootstrap, cfg.partitions, cfg.drain_s)
        overlaps, overlap_examples = range_overlaps(cluster, cfg.partitions)
        headers = batch_headers(cluster) if _has_duplicates(log_records) else {}
        _restart_crashed(cluster, unexpected, cfg.log)
    finally:
        if producer is not None:
            producer.stop_event.set()
        if consumer is not None:
            consumer.stop_event.set()
        exits = cluster.stop()
    assert producer is not None and consumer is not None
    for bid, code in exits.items():
        if code not in (0, None):
            unexpected.append({"broker": bid, "exit_code": code, "when": "final stop"})
    for k in kills:
        for part in k.led:
            times = producer.ack_times[part]
            i = bisect.bisect_right(times, k.at)
            if i < len(times):
                k.unavailable_s[part] = times[i] - k.at
    result = verify(cfg, producer, consumer, log_records, overlaps, overlap_examples, kills,
                    unexpected, time.monotonic() - started, load_before)  # fmt: skip
    if headers:  # who wrote each copy of a duplicated record: producer id, epoch, sequence
        result.examples["duplicate_batches"] = [
            (k, [_batch_of(headers, *first), _batch_of(headers, *dup)])
            for k, first, dup, _ in result.examples["duplicates"]
        ]
    return result


def _has_duplicates(log_records: dict[int, list[tuple[int, int]]]) -> bool:
    keys = [k for records in log_records.values() for _, k in records]
    return len(keys) != len(set(keys))


def batch_headers(cluster: Cluster) -> dict[int, list[tuple[int, int, int, int, int]]]:
    """Every committed batch of every partition, read from the object store itself:
    {partition: [(base offset, last offset, producer id, producer epoch, base sequence)]}."""
    import asyncio

    from broker_service.protocol.record_batch import iter_headers

    for name, value in AWS_TEST_ENV.items():
        os.environ.setdefault(name, value)
    store = cluster.metadata()
    if cluster.cfg.backend == "embedded":
        from broker_service.stream.objectstore.fs import FsObjectStore

        objects: Any = FsObjectStore(cluster.cfg.workdir / "shared" / "objects")
    else:
        from broker_service.stream.objectstore.s3 import S3ObjectStore

        bucket = cluster.brokers[0].env["BROKER_STORAGE"].removeprefix("s3://").split("/")[0]
        objects = S3ObjectStore(bucket, "chaos", endpoint_url=cluster.endpoint)
    out: dict[int, list[tuple[int, int, int, int, int]]] = {}
    try:
        topic = store.topic(TOPIC)
        for p in topic.partitions if topic is not None else ():
            rows = out.setdefault(p.partition, [])
            for r in store.stream_ranges(p.stream_id):
                data = asyncio.run(objects.get(r.object_key, r.position, r.position + r.size))
                rows += [(h.base_offset, h.last_offset, h.producer_id, h.producer_epoch,
                          h.base_sequence) for _, h in iter_headers(memoryview(data))]  # fmt: skip
    finally:
        store.close()
    return out


def _batch_of(
    headers: dict[int, list[tuple[int, int, int, int, int]]], part: int, off: int
) -> tuple[int, int, int, int, int] | None:
    return next((h for h in headers.get(part, []) if h[0] <= off <= h[1]), None)


def _restart_crashed(cluster: Cluster, unexpected: list[dict[str, Any]], log: Any) -> None:
    """A broker that exited by itself (not killed by us) is a finding: note it, restart it."""
    for i, b in enumerate(cluster.brokers):
        if b.proc is not None and b.proc.poll() is not None:
            code = b.proc.returncode
            tail = b.log()[-1500:]
            unexpected.append({"broker": i + 1, "exit_code": code, "log_tail": tail})
            log(f"broker {i + 1} exited by itself with code {code}; restarting it")
            b.proc = None
            b.start(timeout=60)


def _wait_group(
    consumer: GroupConsumerThread,
    producer: ProducerThread,
    bound_s: float,
    meanwhile: Callable[[], None] = lambda: None,
) -> None:
    """Until the group consumer has every acknowledged record, or got none for ``bound_s``
    (stuck), or ``3 * bound_s`` passed. A loaded host slows the catch-up (the chaos lane ran
    at a load of 9 on 2 cores in CI): progress, not a fixed time, tells slow from stuck."""
    started = last_progress = time.monotonic()
    seen = len(consumer.seen)

    def missing() -> int:
        return sum(1 for k in list(producer.acked) if k not in consumer.seen)

    consumer.drain = {"missing_at_start": missing()}
    while missing():
        now = time.monotonic()
        if len(consumer.seen) != seen:
            seen, last_progress = len(consumer.seen), now
        if now - last_progress > bound_s or now - started > 3 * bound_s:
            break
        time.sleep(0.5)
        meanwhile()
    consumer.drain.update(missing_at_end=missing(),
                          drain_s=round(time.monotonic() - started, 1),
                          last_progress_s=round(last_progress - started, 1))  # fmt: skip


def _group_state(
    consumer: GroupConsumerThread, acked: dict[int, tuple[int, int]]
) -> dict[str, Any]:
    """Where the group consumer stood: per partition, what it missed and when it last got one."""
    t0 = consumer.started_at
    missed: Counter[int] = Counter()
    first_missed: dict[int, int] = {}
    for k, (part, off) in acked.items():
        if k not in consumer.seen:
            missed[part] += 1
            first_missed[part] = min(off, first_missed.get(part, off))
    return {
        "missed_by_partition": dict(missed),
        "first_missed_offset": first_missed,
        "last_record": {p: (round(t - t0, 1), off) for p, (t, off) in consumer.last_at.items()},
        "assignment": consumer.assignment,
        "rebalances": [(round(t - t0, 1), what, ps) for t, what, ps in consumer.rebalances[-12:]],
        "errors": consumer.errors[-5:],
        "drain": consumer.drain,
    }


def read_back(bootstrap: str, partitions: int, bound_s: float) -> dict[int, list[tuple[int, int]]]:
    """Every partition from offset 0 to its high watermark: {partition: [(offset, key)]}."""
    from confluent_kafka import Consumer, TopicPartition

    c = Consumer({"bootstrap.servers": bootstrap, "group.id": f"verify-{uuid.uuid4().hex[:6]}",
                  "enable.auto.commit": False, "enable.partition.eof": True})  # fmt: skip
    out: dict[int, list[tuple[int, int]]] = {p: [] for p in range(partitions)}
    try:
        ends = {p: c.get_watermark_offsets(TopicPartition(TOPIC, p), timeout=30)[1]
                for p in range(partitions)}  # fmt: skip
        c.assign([TopicPartition(TOPIC, p, 0) for p in range(partitions)])
        done = {p for p, end in ends.items() if end == 0}
        deadline = time.monotonic() + bound_s
        while len(done) < partitions and time.monotonic() < deadline:
            for m in c.consume(2000, 0.5):
                if m.error() is not None:
                    if m.error().code() == -191:  # _PARTITION_EOF
                        if m.offset() >= ends[m.partition()]:
                            done.add(m.partition())
                        continue
                    raise RuntimeError(f"read back: {m.error()}")
                out[m.partition()].append((m.offset(), int(m.key())))
                if m.offset() + 1 >= ends[m.partition()]:
                    done.add(m.partition())
        if len(done) < partitions:
            raise RuntimeError(f"read back incomplete: {ends}, done {done}")
    finally:
        c.close()
    return out


def range_overlaps(cluster: Cluster, partitions: int) -> tuple[int, list[Any]]:
    """Committed ranges of one stream that overlap, read from the metadata store itself."""
    store = cluster.metadata()
    try:
        topic = store.topic(TOPIC)
        n, examples = 0, []
        for p in topic.partitions if topic is not None else ():
            ranges = store.stream_ranges(p.stream_id)
            for a, b in zip(ranges, ranges[1:], strict=False):
                if b.start_offset < a.end_offset:
                    n += 1
                    examples.append((p.partition, a.start_offset, a.end_offset, a.object_key,
                                     b.start_offset, b.end_offset, b.object_key))  # fmt: skip
        return n, examples[:10]
    finally:
        store.close()


def verify(
    cfg: ChaosConfig,
    producer: ProducerThread,
    consumer: GroupConsumerThread,
    log_records: dict[int, list[tuple[int, int]]],
    overlaps: int,
    overlap_examples: list[Any],
    kills: list[Kill],
    unexpected: list[dict[str, Any]],
    duration_s: float,
    load_before: dict[str, Any],
) -> ChaosResult:
    acked = producer.acked
    copies: Counter[int] = Counter()
    at: dict[tuple[int, int], list[int]] = {}
    out_of_order = 0
    examples: dict[str, list[Any]] = {"out_of_order": [], "duplicates": [], "conflicts": []}
    first_at: dict[int, tuple[int, int]] = {}
    for part, records in log_records.items():
        highest = -1
        for off, k in records:
            at.setdefault((part, off), []).append(k)
            copies[k] += 1
            if copies[k] > 1:
                if len(examples["duplicates"]) < 10:  # key, first copy, this copy, acked at
                    examples["duplicates"].append((k, first_at[k], (part, off), acked.get(k)))
                continue
            first_at[k] = (part, off)
            if k < highest:
                out_of_order += 1
                if len(examples["out_of_order"]) < 10:
                    examples["out_of_order"].append((part, off, k, highest))
            highest = max(highest, k)
    duplicates = sum(n - 1 for n in copies.values() if n > 1)
    missing = [k for k in acked if k not in copies]
    conflicts = sum(len(ks) - 1 for ks in at.values() if len(ks) > 1)
    acked_at: Counter[tuple[int, int]] = Counter(acked.values())
    conflicts += sum(n - 1 for n in acked_at.values() if n > 1)
    for k, (part, off) in acked.items():
        if k in copies and k not in at.get((part, off), []):
            conflicts += 1
            if len(examples["conflicts"]) < 10:
                examples["conflicts"].append((k, part, off, at.get((part, off))))
    examples["acked_missing"] = sorted(missing)[:10]
    examples["range_overlaps"] = overlap_examples
    group_missed = sum(1 for k in acked if k not in consumer.seen)
    if group_missed:
        examples["group_missed"] = [_group_state(consumer, acked)]
    unavailable = [s for k in kills for s in k.unavailable_s.values()]
    failed_errors = Counter(producer.failed.values())
    return ChaosResult(
        backend=cfg.backend,
        cycles=len(kills),
        lease_ms=cfg.lease_ms,
        duration_s=duration_s,
        produced=producer.produced,
        acked=len(acked),
        failed=len(producer.failed),
        failed_errors=dict(failed_errors),
        acked_missing=len(missing),
        duplicates=duplicates,
        out_of_order=out_of_order,
        offset_conflicts=conflicts,
        range_overlaps=overlaps,
        group_missed=group_missed,
        group_redelivered=sum(n - 1 for n in consumer.seen.values() if n > 1),
        unacked_in_log=sum(1 for k in copies if k not in acked),
        log_records=sum(copies.values()),
        unavailability_p50_s=statistics.median(unavailable) if unavailable else 0.0,
        unavailability_max_s=max(unavailable, default=0.0),
        unexpected_exits=unexpected,
        kills=[asdict(k) for k in kills],
        examples=examples,
        load={"before": load_before, "after": load_figures()},
    )


# -- degraded dependencies: faults on S3 and DynamoDB, no kills --------------------------------
@dataclass
class PhaseFigures:
    name: str
    seconds: float
    sent: int
    acked: int
    acked_per_s: float
    p50_ms: float
    p99_ms: float
    injected: dict[str, int]


def run_fault_phases(
    cfg: ChaosConfig,
    fault_rate: float,
    phase_s: float = 20.0,
    hang_s: float = 2.0,
    actions: tuple[str, ...] | None = None,
) -> tuple[ChaosResult, list[PhaseFigures]]:
    """The cluster (cloud backend) reaches S3 and DynamoDB through a fault-injecting proxy:
    ``phase_s`` seconds clean, ``phase_s`` with ``fault_rate`` of ALL requests failed at
    random (503 not applied, 500 after it applied, ``hang_s`` before forwarding, answered
    ``hang_s`` late), ``phase_s`` clean again. Acked/s and ack latency per phase (by when a
    record was sent), then the same verification as the kill loop."""
    from tests.cloud.fault_proxy import HANG, LOSE_RESPONSE, RESPOND_LATE, SLOWDOWN, FaultProxy

    assert cfg.backend == "cloud", "faults are injected on S3 and DynamoDB"
    actions = actions or (SLOWDOWN, LOSE_RESPONSE, HANG, RESPOND_LATE)
    proxies: list[FaultProxy] = []

    def via(endpoint: str) -> str:
        proxies.append(FaultProxy(endpoint, hang_seconds=hang_s).__enter__())
        return proxies[0].endpoint

    started = time.monotonic()
    load_before = load_figures()
    cluster = Cluster(cfg, via)
    producer: ProducerThread | None = None
    consumer: GroupConsumerThread | None = None
    try:
        cluster.start()
        proxy = proxies[0]
        _create_topic(cluster, cfg.partitions)
        producer = ProducerThread(cfg, cluster.bootstrap)
        consumer = GroupConsumerThread(cluster.bootstrap, cfg.workdir / "group-consumer.log")
        producer.start()
        consumer.start()
        marks = [time.monotonic()]
        time.sleep(phase_s)  # the phases are the measurement: pacing, not waiting
        before = dict(proxy.injected)
        proxy.chaos(fault_rate, actions, seed=cfg.seed)
        marks.append(time.monotonic())
        time.sleep(phase_s)
        proxy.chaos(0.0, ())
        during = {k: proxy.injected[k] - before.get(k, 0) for k in proxy.injected}
        marks.append(time.monotonic())
        time.sleep(phase_s)
        marks.append(time.monotonic())
        producer.stop_event.set()
        producer.join(cfg.message_timeout_ms / 1000 + 30)
        if producer.error is not None:
            raise producer.error
        _wait_group(consumer, producer, cfg.drain_s)
        consumer.stop_event.set()
        consumer.join(30)
        log_records = read_back(cluster.bootstrap, cfg.partitions, cfg.drain_s)
        overlaps, overlap_examples = range_overlaps(cluster, cfg.partitions)
    finally:
        if producer is not None:
            producer.stop_event.set()
        if consumer is not None:
            consumer.stop_event.set()
        exits = cluster.stop()
        for p in proxies:
            p.__exit__(None, None, None)
    assert producer is not None and consumer is not None
    unexpected = [{"broker": b, "exit_code": c} for b, c in exits.items() if c not in (0, None)]
    result = verify(cfg, producer, consumer, log_records, overlaps, overlap_examples, [],
                    unexpected, time.monotonic() - started, load_before)  # fmt: skip
    phases = []
    for name, (lo, hi), injected in zip(
        ("before", "during", "after"), zip(marks, marks[1:], strict=False),
        ({}, during, {}), strict=True,
    ):  # fmt: skip
        keys = [k for k, t in enumerate(producer.sent_at) if lo <= t < hi]
        lat = sorted(producer.latency[k] * 1000 for k in keys if k in producer.latency)
        acked_in = sum(1 for times in producer.ack_times.values() for t in times if lo <= t < hi)
        phases.append(PhaseFigures(
            name, hi - lo, len(keys), acked_in, acked_in / (hi - lo),
            lat[len(lat) // 2] if lat else 0.0, lat[int(len(lat) * 0.99)] if lat else 0.0,
            injected,
        ))  # fmt: skip
    return result, phases
