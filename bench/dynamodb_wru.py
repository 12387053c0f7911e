"""Write request units (WRU) of the DynamoDB metadata store's object commits.

    .venv/bin/python bench/dynamodb_wru.py                  # 1, 32 and 256 partitions
    .venv/bin/python bench/dynamodb_wru.py --partitions 32 --commits 300

A broker registers, creates a topic of P partitions and commits C WAL objects, each with one
range per partition (what an object-WAL flush of a busy broker writes), against a moto server
on 127.0.0.1. Every write request the store sends is metered by DynamoDB's published rules:
an item's size is the sum of its attribute names and values (strings and binaries by length,
numbers ~ digits/2 + 1, lists and maps 3 bytes + 1 per element); a standard write costs
ceil(size / 1 KB) WRU, an UpdateItem the larger of the item before and after, a DeleteItem the
deleted item, and in TransactWriteItems every action (ConditionCheck included) costs twice.
moto's own ConsumedCapacity is a placeholder (1.0 per PutItem / UpdateItem, nothing for
TransactWriteItems), so the meter reads the items back from moto and does the arithmetic.

Reported per partition count: the commit call itself (WRU and items written by the
commit_object call, median over the commits), the total over the run divided by the number of
commits (everything the store wrote, index maintenance included, amortised), and how many
requests a fresh store makes to read every partition back once the broker was fenced.

Then compaction's metadata writes on the same objects: every stream's ranges merged in runs
of ``MAX_SWAP_RANGES`` (control/compaction.py) into one new object each with
``replace_stream_ranges``, as a compaction run swaps them, and the WAL objects, now referenced
by no range, released and forgotten as its garbage collection does: WRU per merge (swap) and
per WAL object (garbage collection), the figures the cost model's swap line rests on.
"""

from __future__ import annotations

import argparse
import json
import math
import statistics
import sys
import threading
import time
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import asdict, dataclass, field
from decimal import Decimal
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

import boto3  # noqa: E402

from broker_service.control.compaction import MAX_SWAP_RANGES  # noqa: E402
from broker_service.metadata.dynamodb import DynamoDbMetadataStore  # noqa: E402
from broker_service.metadata.records import StreamRange  # noqa: E402
from tests.support.moto import MotoServer  # noqa: E402

REGION = "us-east-1"


# -- DynamoDB item sizes and write units ---------------------------------------------------
def _number_size(text: str) -> int:
    digits = str(Decimal(text).normalize()).lstrip("-").replace(".", "")
    digits = digits.split("E")[0].strip("0") or "0"
    return (len(digits) + 1) // 2 + 1


def value_size(v: dict[str, Any]) -> int:
    ((kind, x),) = v.items()
    if kind == "S":
        return len(x.encode())
    if kind == "N":
        return _number_size(x)
    if kind == "B":
        return len(x)
    if kind in ("BOOL", "NULL"):
        return 1
    if kind == "SS":
        return sum(len(s.encode()) for s in x)
    if kind == "NS":
        return sum(_number_size(n) for n in x)
    if kind == "BS":
        return sum(len(b) for b in x)
    if kind == "L":
        return 3 + sum(1 + value_size(e) for e in x)
    if kind == "M":
        return 3 + sum(1 + len(k.encode()) + value_size(e) for k, e in x.items())
    raise ValueError(kind)


def item_size(item: dict[str, Any] | None) -> int:
    if not item:
        return 0
    return sum(len(k.encode()) + value_size(v) for k, v in item.items())


def wru(size: int) -> int:
    return max(1, math.ceil(size / 1024))


@dataclass
class Meter:
    """Meters every write request of one boto3 client (wire-format params)."""

    client: Any
    reader: Any  # an unmetered client of the same endpoint, for before/after images
    wru: float = 0.0
    items: int = 0
    requests: int = 0
    by_op: dict[str, float] = field(default_factory=dict)
    _lock: threading.Lock = field(default_factory=threading.Lock)

    def __post_init__(self) -> None:
        self.client.meta.events.register("provide-client-params.dynamodb.*", self._before)
        self.client.meta.events.register("after-call.dynamodb.*", self._after)

    def _get(self, table: str, key: dict[str, Any]) -> dict[str, Any] | None:
        resp = self.reader.get_item(TableName=table, Key=key, ConsistentRead=True)
        item: dict[str, Any] | None = resp.get("Item")
        return item

    def _actions(self, op: str, params: dict[str, Any]) -> list[tuple[str, str, dict[str, Any]]]:
        """(kind, table, request) of each write action of a call."""
        if op in ("PutItem", "UpdateItem", "DeleteItem"):
            return [(op.removesuffix("Item"), params["TableName"], params)]
        if op == "TransactWriteItems":
            out = []
            for action in params["TransactItems"]:
                ((kind, req),) = action.items()
                out.append((kind, req["TableName"], req))
            return out
        if op == "BatchWriteItem":
            out = []
            for table, reqs in params["RequestItems"].items():
                for r in reqs:
                    if "PutRequest" in r:
                        out.append(("Put", table, r["PutRequest"]))
                    else:
                        out.append(("Delete", table, r["DeleteRequest"]))
            return out
        return []

    def _before(self, params: dict[str, Any], model: Any, context: dict[str, Any],
                **_: Any) -> None:  # fmt: skip
        actions = self._actions(model.name, params)
        if not actions:
            return
        before = [
            None if kind == "Put" else self._get(table, req["Key"]) for kind, table, req in actions
        ]
        context["wru_meter"] = (model.name, actions, before)

    def _after(self, http_response: Any, parsed: dict[str, Any], model: Any,
               context: dict[str, Any], **_: Any) -> None:  # fmt: skip
        pending = context.pop("wru_meter", None)
        if pending is None or http_response.status_code != 200:
            return  # a refused call is not metered (DynamoDB would charge a failed condition)
        op, actions, before = pending
        factor = 2 if op == "TransactWriteItems" else 1
        total = 0
        for (kind, table, req), old in zip(actions, before, strict=True):
            if kind == "Put":
                size = item_size(req["Item"])
            elif kind == "Update":
                size = max(item_size(old), item_size(self._get(table, req["Key"])))
            else:  # Delete, ConditionCheck: the item as it was
                size = item_size(old)
            total += factor * wru(size)
        with self._lock:
            self.wru += total
            self.items += sum(1 for kind, _, _ in actions if kind != "ConditionCheck")
            self.requests += 1
            self.by_op[op] = self.by_op.get(op, 0) + total

    @contextmanager
    def window(self) -> Iterator[dict[str, float]]:
        """WRU, items and requests metered inside the block."""
        out: dict[str, float] = {}
        w, i, r = self.wru, self.items, self.requests
        yield out
        out.update(wru=self.wru - w, items=self.items - i, requests=self.requests - r)


# -- the scenario ---------------------------------------------------------------------------
@dataclass
class Result:
    partitions: int
    commits: int
    commit_wru_median: float
    commit_items_median: float
    commit_requests_median: float
    total_wru_per_commit: float
    total_items_per_commit: float
    takeover_read_requests: int
    by_op: dict[str, float]
    swaps: int = 0
    swap_wru_per_merge: float = 0.0
    swap_items_per_merge: float = 0.0
    swap_wru_per_wal_object: float = 0.0
    gc_wru_per_wal_object: float = 0.0


def client(endpoint: str) -> Any:
    return boto3.session.Session().client(
        "dynamodb",
        endpoint_url=endpoint,
        region_name=REGION,
        aws_access_key_id="testing",
        aws_secret_access_key="testing",
    )


def run(endpoint: str, partitions: int, commits: int) -> Result:
    table = f"wru-{uuid.uuid4().hex[:8]}"
    DynamoDbMetadataStore(table, client=client(endpoint)).create_table()
    c = client(endpoint)
    meter = Meter(c, client(endpoint))
    store = DynamoDbMetadataStore(table, client=c)
    # folds run here, every FOLD_EVERY commits, instead of on the store's background thread:
    # the same writes, without concurrent requests (moto's threaded server is not safe with
    # them: it answers 500 now and then)
    fold_every = getattr(store, "fold_every", None)
    if fold_every is not None:
        store.fold_every = 10**9
    me = store.register_broker(1, "h", 9092, None, 600_000)
    sids = [p.stream_id for p in store.create_topic("t", partitions, {}, [1]).partitions]
    per_commit: list[dict[str, float]] = []
    before = meter.wru, meter.items
    # what a busy broker's flush holds: partitions well into their history (offsets in the
    # millions), each range's bytes right after the last one's in the object, a few records
    # of ~1 KB per partition, timestamps of this millisecond give or take a few
    ends = {sid: 10_000_000 + 7919 * j for j, sid in enumerate(sids)}
    now_ms = int(time.time() * 1000)
    for i in range(commits):
        key = f"wal/1-{me.epoch}-{time.time_ns()}-{i}.sso"  # as ObjectWal names them
        ranges = []
        position = 0
        for j, sid in enumerate(sids):
            n = 3 + (i + j) % 5  # a few records per partition per flush
            size = 1100 * n + 61 * (j % 7)
            ts = now_ms + 130 * i + (i * 7 + j * 3) % 11
            ranges.append(StreamRange(sid, ends[sid], ends[sid] + n, key, position, size, ts))
            ends[sid] += n
            position += size
        with meter.window() as w:
            store.commit_object(1, me.epoch, key, 4096 * partitions, ranges)
        per_commit.append(w)
        if fold_every is not None and (i + 1) % fold_every == 0:
            store.flush_index()
    flush = getattr(store, "flush_index", None)
    if flush is not None:  # background index maintenance still queued: count it too
        flush()
    total_wru, total_items = meter.wru - before[0], meter.items - before[1]
    swaps, swap, gc = compact(store, meter, sids, now_ms + 130 * commits)
    # a failover: broker 1 is fenced, then a fresh store (no caches) reads every partition
    reader_client = client(endpoint)
    DynamoDbMetadataStore(table, client=reader_client).fence_broker(1, me.epoch)
    calls = {"n": 0}

    def count(**_: Any) -> None:
        calls["n"] += 1

    reader_client.meta.events.register("before-call.dynamodb.*", count)
    reader = DynamoDbMetadataStore(table, client=reader_client)
    for sid in sids:
        got = reader.stream_ranges(sid)
        merged = -(-commits // MAX_SWAP_RANGES)
        assert len(got) == merged and got[-1].end_offset == ends[sid], (sid, len(got))
    store.close()
    reader.close()
    return Result(
        partitions,
        commits,
        statistics.median(w["wru"] for w in per_commit),
        statistics.median(w["items"] for w in per_commit),
        statistics.median(w["requests"] for w in per_commit),
        round(total_wru / commits, 2),
        round(total_items / commits, 2),
        calls["n"],
        meter.by_op,
        swaps,
        round(swap["wru"] / swaps, 2),
        round(swap["items"] / swaps, 2),
        round(swap["wru"] / commits, 2),
        round(gc["wru"] / commits, 2),
    )


def compact(
    store: DynamoDbMetadataStore, meter: Meter, sids: list[int], now_ms: int
) -> tuple[int, dict[str, float], dict[str, float]]:
    """Compaction's metadata writes over every stream: its swaps, then its garbage
    collection of the WAL objects no range names any more (control/compaction.py)."""
    lease = store.acquire_compactor_lease("bench", 600_000, now_ms)
    wal_keys: set[str] = set()
    swaps = 0
    with meter.window() as swap:
        for sid in sids:
            ranges = store.stream_ranges(sid)
            wal_keys.update(r.object_key for r in ranges)
            for i in range(0, len(ranges), MAX_SWAP_RANGES):
                run = ranges[i : i + MAX_SWAP_RANGES]
                key = f"so/{sid}-{run[0].start_offset}-{time.time_ns()}.so"
                size = sum(r.size for r in run)
                new = StreamRange(sid, run[0].start_offset, run[-1].end_offset, key, 0, size,
                                  max(r.max_timestamp for r in run))  # fmt: skip
                store.replace_stream_ranges(lease.epoch, sid, run, [new], key, size, now_ms)
                swaps += 1
    keys = sorted(wal_keys)
    with meter.window() as gc:
        released = store.released_objects()
        committed = store.committed_objects(keys)
        store.mark_released([k for k in keys if k in committed and k not in released], now_ms)
        store.forget_objects(keys)
    return swaps, swap, gc


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--partitions", type=int, nargs="*", default=[1, 32, 256])
    ap.add_argument("--commits", type=int, default=100)
    ap.add_argument("--out", type=Path, help="write the results as JSON here")
    args = ap.parse_args()
    server = MotoServer(Path("/tmp") / f"wru-moto-{uuid.uuid4().hex[:6]}").start()
    endpoint = server.endpoint
    try:
        results = []
        for p in args.partitions:
            started = time.monotonic()
            r = run(endpoint, p, args.commits)
            results.append(r)
            print(
                f"{p:>4} partitions: commit {r.commit_wru_median:>6.0f} WRU "
                f"({r.commit_items_median:.0f} items, {r.commit_requests_median:.0f} requests); "
                f"all writes {r.total_wru_per_commit:>7.1f} WRU/commit "
                f"({r.total_items_per_commit:.1f} items/commit); "
                f"takeover of {p} partitions: {r.takeover_read_requests} requests; "
                f"compaction: {r.swaps} swaps of <= {MAX_SWAP_RANGES} ranges, "
                f"{r.swap_wru_per_merge:.1f} WRU ({r.swap_items_per_merge:.1f} items) a swap, "
                f"{r.swap_wru_per_wal_object:.1f} WRU of swaps and "
                f"{r.gc_wru_per_wal_object:.1f} of garbage collection per WAL object "
                f"[{time.monotonic() - started:.0f} s]",
                flush=True,
            )
    finally:
        server.stop()
    if args.out:
        args.out.write_text(json.dumps([asdict(r) for r in results], indent=2))


if __name__ == "__main__":
    main()
