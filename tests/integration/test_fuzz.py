"""Property-based fuzzing of the protocol layer, pure and live.

(a) Random bytes and mutated valid frames go to the pure parsers, which may only return or
    raise ProtocolError / InvalidRecordBatch. Request decoding runs in a forked sandbox
    process, so a crash or a hang (kio 0.6's native reader aborted on huge array lengths,
    which is why the broker decodes with its own bounds-checked reader) fails the test with
    its input instead of taking pytest down.
(b) The same kinds of frames go to a live broker over fresh connections; afterwards the
    process must be alive and serve a healthy connection and a confluent-kafka round trip.

The whole file is bounded to well under a minute.
"""

from __future__ import annotations

import faulthandler
import multiprocessing
import os
import socket
import struct
import time
import uuid
from collections.abc import Iterator
from multiprocessing.connection import Connection
from typing import Any

import pytest
from hypothesis import HealthCheck, Phase, example, given, settings
from hypothesis import strategies as st

from broker_service.api import APIS
from broker_service.protocol import codec, frames
from broker_service.protocol.primitives import ProtocolError
from broker_service.protocol.produce import parse_produce
from broker_service.protocol.record_batch import InvalidRecordBatch, validate_batches
from broker_service.protocol.zone import (
    PRIVATE_KEYS,
    parse_forward_request,
    parse_forward_response,
    parse_replica_request,
    parse_replica_response,
)
from tests import kafka_wire as w
from tests.support.broker import BrokerProcess

# one xdist worker runs this module, in order (XDIST_GROUPS in tests/conftest.py)
pytestmark = pytest.mark.timeout(120)

ALLOWED = (ProtocolError, InvalidRecordBatch)
FUZZ_TOPIC = "fuzz"
SUPPORTED = [(a.key, v) for a in APIS.values() for v in range(a.min_version, a.max_version + 1)]
# decoded by hand, not over kio's schemas: Produce, ApiVersions, and the private inter-broker
# requests of zone awareness (protocol/zone.py; fuzzed by the test after the kio one)
KIO_DECODED = [(k, v) for k, v in SUPPORTED if k not in (0, 18, *PRIVATE_KEYS)]

PURE = settings(
    max_examples=300,
    deadline=2000,  # ms: a pure parser taking seconds on a tiny input is a hang
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
    database=None,
)


# -- seeds: valid request payloads (frames without the size prefix) ----------------------------


def seed_payloads(topic_id: uuid.UUID) -> list[bytes]:
    batch = w.build_batch([b"fuzz-value", None], keys=[b"k", None])
    reqs: list[Any] = []
    reqs += [w.metadata_request(v, [FUZZ_TOPIC]) for v in (0, 1, 4, 9, 12)]
    reqs += [w.metadata_request(v) for v in (1, 12)]
    reqs += [w.produce_request(v, {FUZZ_TOPIC: {0: batch}}, acks=a)
             for v, a in ((3, -1), (7, 1), (9, -1), (11, 0), (11, 1))]
    reqs += [w.fetch_request(v, topic_id if v >= 13 else FUZZ_TOPIC, 0, 0, max_wait_ms=50)
             for v in (4, 7, 11, 12, 13, 16)]
    reqs += [w.list_offsets_request(v, FUZZ_TOPIC, 0, ts) for v, ts in ((1, -1), (7, -2))]
    reqs += [w.create_topics_request(v, ["fuzz-created"], configs={"retention.ms": "1000"})
             for v in (2, 7)]
    reqs += [w.api_versions_request(v) for v in (0, 3)]
    return [w.request_payload(r, 1000 + i) for i, r in enumerate(reqs)]


SEEDS = seed_payloads(uuid.UUID(int=0x1234))
INTERESTING = [b"\x00", b"\xff", b"\x7f", b"\x80", b"\x01", b"\xff\xff", b"\x7f\xff",
               b"\x80\x00", b"\xff\xff\xff\xff", b"\x7f\xff\xff\xff", b"\x80\x00\x00\x00",
               b"\xff\xff\xff\xff\x0f", b"\xff\xff\xff\xff\xff\xff\xff\xff\xff\x01"]


@st.composite
def mutated(draw: st.DrawFn, seeds: list[bytes] = SEEDS) -> bytes:
    """A valid payload with 1-4 AFL-style mutations (flip, overwrite with boundary values,
    insert, delete, truncate)."""
    data = bytearray(draw(st.sampled_from(seeds)))
    for _ in range(draw(st.integers(1, 4))):
        if not data:
            break
        pos = draw(st.integers(0, len(data) - 1))
        op = draw(st.sampled_from(["flip", "byte", "interesting", "insert", "delete",
                                   "truncate"]))
        if op == "flip":
            data[pos] ^= 1 << draw(st.integers(0, 7))
        elif op == "byte":
            data[pos] = draw(st.integers(0, 255))
        elif op == "interesting":
            blob = draw(st.sampled_from(INTERESTING))
            data[pos : pos + len(blob)] = blob
        elif op == "insert":
            data[pos:pos] = draw(st.binary(min_size=1, max_size=16))
        elif op == "delete":
            del data[pos : pos + draw(st.integers(1, 16))]
        else:
            del data[pos:]
    return bytes(data)


@st.composite
def header_plus_random_body(draw: st.DrawFn) -> bytes:
    """A well-formed header of a supported (api, version) followed by random bytes."""
    key, version = draw(st.sampled_from(SUPPORTED))
    head = w.request_header(key, version, 7, draw(st.sampled_from([None, "fz"])),
                            frames.is_flexible(key, version))
    return head + draw(st.binary(max_size=64))


payloads = st.one_of(
    mutated(),
    header_plus_random_body(),
    st.binary(max_size=128),
)


# -- (a) pure parsers ----------------------------------------------------------------------


def _pure_pipeline(payload: bytes) -> None:
    """What the broker does with a frame, minus kio: header, then the hand-written parsers."""
    header = frames.parse_request_header(payload)
    if header.api_key == 0:
        req = parse_produce(memoryview(bytearray(payload)), header.body_offset,
                            header.api_version)
        for t in req.topics:
            for p in t.partitions:
                if p.records is not None and len(p.records):
                    validate_batches(p.records)


@PURE
@given(payloads)
def test_pure_parsers_only_raise_protocol_errors(payload: bytes) -> None:
    try:
        _pure_pipeline(payload)
    except ALLOWED:
        pass


@PURE
@given(st.binary(max_size=256), st.integers(3, 11), st.integers(0, 16))
def test_parse_produce_random_bytes(data: bytes, version: int, offset: int) -> None:
    try:
        parse_produce(data, min(offset, len(data)), version)
    except ProtocolError:
        pass


def _batches() -> list[bytes]:
    return [
        w.build_batch([b"a"]),
        w.build_batch([b"x" * 40, None, b"y"], keys=[None, b"k", b"k2"]),
        w.build_batch([b"one"]) + w.build_batch([b"two", b"three"]),
    ]


@PURE
@given(st.one_of(mutated(_batches()), st.binary(max_size=256)))
def test_validate_batches_only_raises_invalid_record_batch(data: bytes) -> None:
    try:
        out = validate_batches(memoryview(data))
    except InvalidRecordBatch:
        return
    # accepted: then every batch has a correct CRC and they tile the payload exactly
    pos = 0
    for start, h in out:
        assert start == pos and w.batch_crc_ok(data[start : start + h.size])
        pos += h.size
    assert pos == len(data)


# request decoding, sandboxed ------------------------------------------------------------------


def _decode_worker(conn: Connection) -> None:
    faulthandler.disable()  # inherited from pytest: would dump a traceback on abort
    devnull = os.open(os.devnull, os.O_WRONLY)
    os.dup2(devnull, 2)  # a Rust abort prints a long backtrace
    while True:
        try:
            key, version, payload, offset = conn.recv()
        except EOFError:
            return
        try:
            codec.decode_request(key, version, payload, offset)
            conn.send("ok")
        except ProtocolError:
            conn.send("ProtocolError")
        except BaseException as exc:  # noqa: B036 - report anything else to the test
            conn.send(f"{type(exc).__module__}.{type(exc).__name__}: {exc}"[:300])


class DecodeSandbox:
    """codec.decode_request in a forked child: survives aborts and hangs."""

    def __init__(self) -> None:
        self._ctx = multiprocessing.get_context("fork")
        self._proc: Any = None
        self._conn: Connection | None = None

    def _start(self) -> None:
        parent, child = self._ctx.Pipe()
        self._proc = self._ctx.Process(target=_decode_worker, args=(child,), daemon=True)
        self._proc.start()
        child.close()
        self._conn = parent

    def decode(self, key: int, version: int, payload: bytes, offset: int,
               timeout: float = 5.0) -> str:
        if self._proc is None or not self._proc.is_alive():
            self._start()
        assert self._conn is not None
        self._conn.send((key, version, payload, offset))
        if self._conn.poll(timeout):
            try:
                return str(self._conn.recv())
            except EOFError:
                pass
        self._proc.join(0.5)
        if self._proc.is_alive():
            self._proc.kill()
            self._proc.join()
            self._proc = None
            return f"hang: no answer within {timeout}s"
        code = self._proc.exitcode
        self._proc = None
        return f"decoder process died (exit code {code})"

    def close(self) -> None:
        if self._conn is not None:
            self._conn.close()
        if self._proc is not None:
            self._proc.join(2)
            if self._proc.is_alive():
                self._proc.kill()


@pytest.fixture(scope="module")
def sandbox() -> Iterator[DecodeSandbox]:
    s = DecodeSandbox()
    yield s
    s.close()


@st.composite
def kio_input(draw: st.DrawFn) -> tuple[int, int, bytes, int]:
    key, version = draw(st.sampled_from(KIO_DECODED))
    head = w.request_header(key, version, 1, "fz", frames.is_flexible(key, version))
    good = [s for s in SEEDS if struct.unpack_from(">hh", s) == (key, version)]
    use_seed: bool = draw(st.booleans())
    if good and use_seed:
        payload = draw(mutated(good))
        seed_head = w.request_header(key, version, 1, "kafka-wire-test",
                                     frames.is_flexible(key, version))
        return key, version, payload, min(len(seed_head), len(payload))
    body = draw(st.one_of(
        st.binary(max_size=64),
        st.lists(st.sampled_from(INTERESTING), max_size=6).map(b"".join),
    ))
    return key, version, head + body, len(head)


def _explicit(key: int, version: int, body: bytes) -> tuple[int, int, bytes, int]:
    head = w.request_header(key, version, 1, "fz", frames.is_flexible(key, version))
    return key, version, head + body, len(head)


@settings(PURE, max_examples=400)
@given(kio_input())
# boundary values the random search finds only sometimes: array lengths near 2**32
@example(_explicit(3, 9, b"\x80\x80\x80\x80\x0c"))
@example(_explicit(3, 12, b"\xff\xff\xff\xff\x0f"))
@example(_explicit(3, 1, b"\x7f\xff\xff\xff"))
def test_decode_request_only_raises_protocol_error(
    sandbox: DecodeSandbox, case: tuple[int, int, bytes, int]
) -> None:
    key, version, payload, offset = case
    outcome = sandbox.decode(key, version, payload, offset)
    assert outcome in ("ok", "ProtocolError"), (
        f"decode_request({key}, {version}, {payload[offset:].hex()!r}): {outcome}"
    )


ZONE_PARSERS = (parse_forward_request, parse_forward_response, parse_replica_request,
                parse_replica_response)  # fmt: skip


@settings(PURE, max_examples=400)
@given(st.sampled_from(ZONE_PARSERS),
       st.one_of(st.binary(max_size=96),
                 st.lists(st.sampled_from(INTERESTING), max_size=8).map(b"".join)))  # fmt: skip
def test_private_zone_codecs_only_raise_protocol_error(parser: Any, body: bytes) -> None:
    """The hand-written codecs of ZoneForwardProduce and ReplicaState, on bytes a broker (or
    anything reaching the broker port) could send: parsed or refused, never another error."""
    try:
        parser(body)
    except ProtocolError:
        pass


# -- (b) a live broker -----------------------------------------------------------------------


class LiveTarget:
    """The broker under fuzz; restarted (and the culprit recorded) if it dies."""

    def __init__(self, broker: BrokerProcess) -> None:
        self.broker = broker
        self.deaths: list[str] = []
        self.recent: list[bytes] = []

    def throw(self, frames_: list[bytes], timeout: float = 0.15) -> None:
        b = self.broker
        self.recent = (self.recent + frames_)[-20:]  # a dying broker may take a while
        try:
            s = socket.create_connection(("127.0.0.1", b.port), timeout=2.0)
        except OSError:
            self._check(force=True)
            return
        eof = False
        with s:
            try:
                s.sendall(b"".join(frames_))
                s.settimeout(timeout)
                deadline = time.monotonic() + timeout
                while time.monotonic() < deadline:
                    if not s.recv(65536):
                        eof = True
                        break
            except (TimeoutError, ConnectionError):
                eof = True
        self._check(force=eof)

    def _check(self, force: bool) -> None:
        proc = self.broker.proc
        assert proc is not None
        if force:
            try:
                proc.wait(0.03)  # a dying broker closes its sockets a moment before exiting
            except Exception:
                pass
        if proc.poll() is not None:
            self.deaths.append(
                f"exit code {proc.returncode} after one of "
                + ", ".join(f.hex() for f in self.recent)
                + f"\n{self.broker.log()[-1500:]}"
            )
            self.broker.proc = None
            self.broker.start()


@pytest.fixture(scope="module")
def live(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LiveTarget]:
    b = BrokerProcess(tmp_path_factory.mktemp("fuzz") / "data").start()
    with w.WireClient(b.port) as c:
        resp = c.call(w.create_topics_request(7, [FUZZ_TOPIC], partitions=2))
        assert int(resp.topics[0].error_code) == 0
        topic_id = uuid.UUID(str(resp.topics[0].topic_id))
    global SEEDS_LIVE
    SEEDS_LIVE = seed_payloads(topic_id)
    yield LiveTarget(b)
    b.stop()


SEEDS_LIVE: list[bytes] = SEEDS


def _frame(payload: bytes) -> bytes:
    return struct.pack(">i", len(payload)) + payload


@st.composite
def live_frames(draw: st.DrawFn) -> list[bytes]:
    """1-2 frames for one connection: mostly correctly framed bad payloads, sometimes raw
    bytes with no framing at all."""
    kind = draw(st.sampled_from(["mutated", "mutated", "header+random", "random", "raw"]))
    if kind == "raw":
        return [draw(st.binary(min_size=1, max_size=64))]
    strategy: st.SearchStrategy[bytes] = {
        "mutated": mutated(SEEDS_LIVE),
        "header+random": header_plus_random_body(),
        "random": st.binary(min_size=8, max_size=128),
    }[kind]
    return [_frame(p) for p in draw(st.lists(strategy, min_size=1, max_size=2))]


LIVE = settings(
    max_examples=200,
    deadline=None,
    phases=[Phase.explicit, Phase.generate],  # no shrinking against a process: just report
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large,
                           HealthCheck.function_scoped_fixture],
    database=None,
)


@LIVE
@given(st.data())
def test_live_broker_survives_fuzzed_frames(live: LiveTarget, data: st.DataObject) -> None:
    live.throw(data.draw(live_frames()))
    assert not live.deaths, "the broker died:\n" + "\n".join(live.deaths)


def test_live_broker_healthy_after_fuzzing(live: LiveTarget) -> None:
    b = live.broker
    assert b.alive(), b.log()
    w.assert_wire_healthy(b.port)
    with w.WireClient(b.port) as c:
        md = c.call(w.metadata_request(12, [FUZZ_TOPIC]))
        assert int(md.topics[0].error_code) == 0 and len(md.topics[0].partitions) == 2
        p = c.call(w.produce_request(9, {FUZZ_TOPIC: {1: w.build_batch([b"after"])}}))
        assert int(p.responses[0].partition_responses[0].error_code) == 0
    w.confluent_round_trip(b.bootstrap, f"after-fuzz-{uuid.uuid4().hex[:8]}")
