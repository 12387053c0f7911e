"""DynamoDB: lean object commits (O(1) items each) and the per-stream index folded from them.

A commit is one ``TransactWriteItems``: a ``ConditionCheck`` on the broker item (epoch and
serving state), the object record ``OBJECT#<key>`` and one log entry in the broker epoch's
log holding every range of the object, packed (plus a part item per 7000 ranges beyond the
first). Before a broker epoch commits a stream for the first time it *claims* it: its log and
current position become a cursor in the stream's head, so readers know to look there.
Readers take the stream's chunks plus its ranges in the entries after each cursor. Now and
then (every ``fold_every`` ranges of a stream, in a background thread) the committer *folds*
them: one compare-and-set on the head that adds a chunk and advances the cursors. Item shapes
and the arguments for why this is safe: stream_index.py and docs/DYNAMODB.md.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Iterable, Sequence
from concurrent.futures import Future, ThreadPoolExecutor
from concurrent.futures import TimeoutError as FutureTimeout
from typing import Any

from botocore.exceptions import ClientError

from broker_service.metadata.dynamodb.base import (
    _SERVING,
    MAX_TX_ITEMS,
    DynamoBase,
    Item,
    _backoff,
    _cancel_reasons,
    _error_code,
    _item,
    _key,
    _load,
    _now_ms,
)
from broker_service.metadata.dynamodb.ranges import (
    MAX_RANGES_PER_OBJECT,
    pack_keys,
    pack_ranges,
    split_for_items,
    unpack_keys,
    unpack_ranges,
)
from broker_service.metadata.dynamodb.stream_index import (
    CHUNK_PREFIX,
    CURSOR,
    EMPTY_DIGEST,
    HEAD_SK,
    Chunk,
    Head,
    LogEntry,
    LogTail,
    StreamState,
    Writer,
    digest,
    entry_sk,
    log_name,
    log_pk,
    new_chunk_sk,
    part_sk,
    seq_of,
    stream_pk,
)
from broker_service.metadata.errors import (
    BrokerFenced,
    CommitDeadlinePassed,
    MetadataError,
    ObjectAlreadyCommitted,
)
from broker_service.metadata.records import ACTIVE, DRAINING, StreamRange
from broker_service.metadata.store import StreamObjects

log = logging.getLogger(__name__)

_CCF = "ConditionalCheckFailed"


class StreamConflict(Exception):
    """A stream write was cancelled; ``reasons`` per action, the head's at ``head_index``."""

    def __init__(self, reasons: list[str], head_index: int) -> None:
        super().__init__(f"stream write cancelled: {reasons}")
        self.reasons = reasons
        self.head_index = head_index

    @property
    def head_moved(self) -> bool:
        return self.reasons[self.head_index : self.head_index + 1] == [_CCF]


def _definite(exc: BaseException) -> bool:
    """Whether a failed request surely did not apply: DynamoDB refused it (4xx). A timeout, a
    lost connection or a 5xx may hide a write that happened."""
    if not isinstance(exc, ClientError):
        return False
    status = int(exc.response.get("ResponseMetadata", {}).get("HTTPStatusCode") or 0)
    return 400 <= status < 500 and _error_code(exc) != "TransactionInProgressException"


class DynamoStreams(DynamoBase, StreamObjects):
    """Items ``OBJECT#<key>``, ``LOG#<broker>#<epoch>/E#<seq>``, ``STREAM#<id>/HEAD`` and
    ``STREAM#<id>/C#...`` (see stream_index.py)."""

    _calls: ThreadPoolExecutor | None = None  # runs commits that have a deadline
    # A TransactWriteItems answers in tens of ms; one unanswered after this long has stalled
    # (settled and sent again, see _transact_by_deadline). A false alarm costs one PutItem.
    commit_stall_ms = 2000
    fold_every = 64  # fold a stream once this writer committed this many of its ranges
    fold_min_advance = 256  # or, with no new ranges, once its cursors can skip this many entries

    # -- commits ---------------------------------------------------------------------------
    def commit_object(
        self,
        broker_id: int,
        broker_epoch: int,
        object_key: str,
        object_size: int,
        ranges: list[StreamRange],
        deadline_ms: int | None = None,
    ) -> None:
        self._deadline.ms = deadline_ms
        try:
            self._commit_object(broker_id, broker_epoch, object_key, object_size, ranges)
        finally:
            self._deadline.ms = None

    def abort_object_commit(self, object_key: str) -> bool:
        # A retry of this put after a lost answer finds its own ABORTED item: still False.
        try:
            self._put(
                {**_key(f"OBJECT#{object_key}", "OBJECT"),
                 **_item(kind="object", object_key=object_key, state="ABORTED",
                         committed_ms=_now_ms())},
                "attribute_not_exists(pk)",
            )  # fmt: skip
            return False
        except ClientError as e:
            if _error_code(e) != "ConditionalCheckFailedException":
                raise
        item = self._get(f"OBJECT#{object_key}", "OBJECT")
        return item is not None and item.get("state") == "COMMITTED"

    def _commit_object(
        self,
        broker_id: int,
        broker_epoch: int,
        object_key: str,
        object_size: int,
        ranges: list[StreamRange],
    ) -> None:
        seen: set[tuple[int, int]] = set()
        for r in ranges:
            if (r.stream_id, r.start_offset) in seen:
                raise MetadataError(f"duplicate range {r.stream_id}@{r.start_offset}")
            seen.add((r.stream_id, r.start_offset))
        if len(ranges) > MAX_RANGES_PER_OBJECT:
            raise MetadataError(f"{len(ranges)} ranges in one object (max {MAX_RANGES_PER_OBJECT})")
        writer = self._writer(broker_id, broker_epoch)
        with writer.lock:
            if writer.unsealed is not None:  # the last commit's outcome first (raises if unknown)
                self._seal(writer, writer.unsealed)
            streams = sorted({r.stream_id for r in ranges} - writer.claimed)
            if streams:
                self._claim(writer, streams)
            for _ in range(self._attempts):
                seq = writer.seq + 1
                try:
                    self._commit_entry(
                        broker_id, broker_epoch, writer, seq, object_key, object_size, ranges
                    )
                except _SeqTaken:
                    writer.seq = self._last_seq(writer.log)  # another instance wrote there
                    continue
                except _Stalled:
                    continue  # that seq is sealed, the deadline still ahead: once more
                break
            else:
                raise MetadataError(f"log {writer.log}: no free sequence number")
            for sid in {r.stream_id for r in ranges}:
                n = writer.unfolded.get(sid, 0) + 1
                writer.unfolded[sid] = n
                if n >= self.fold_every:
                    writer.unfolded[sid] = 0
                    self._ix.folder.request(sid)

    def _commit_entry(
        self,
        broker_id: int,
        broker_epoch: int,
        writer: Writer,
        seq: int,
        object_key: str,
        object_size: int,
        ranges: Sequence[StreamRange],
    ) -> None:
        now = _now_ms()
        check = {
            "ConditionCheck": {
                "TableName": self.table,
                "Key": _key("BROKERS", str(broker_id)),
                "ConditionExpression": _SERVING,
                "ExpressionAttributeNames": {"#e": "epoch", "#s": "state"},
                "ExpressionAttributeValues": _item(
                    **{":e": broker_epoch, ":active": ACTIVE, ":draining": DRAINING}
                ),
            }
        }
        record = _item(
            kind="object",
            object_key=object_key,
            size=object_size,
            state="COMMITTED",
            broker_id=broker_id,
            broker_epoch=broker_epoch,
            committed_ms=now,
            range_count=len(ranges),
            log=writer.log,
            seq=seq,
        )
        items: list[Item] = [
            check,
            self._put_new({**_key(f"OBJECT#{object_key}", "OBJECT"), **record}),
            *self._entry_puts(writer.log, seq, object_key, now, ranges),
        ]
        assert len(items) <= MAX_TX_ITEMS
        try:
            self._transact_by_deadline(items)
        except ClientError as e:
            reasons = _cancel_reasons(e)
            if _error_code(e) == "TransactionCanceledException" and reasons:
                if reasons[0] == _CCF:
                    raise BrokerFenced(
                        f"broker {broker_id} epoch {broker_epoch} is fenced"
                    ) from None
                if reasons[1:2] == [_CCF]:
                    raise ObjectAlreadyCommitted(
                        f"object {object_key} is already committed"
                    ) from None
                if reasons[2:3] == [_CCF]:
                    raise _SeqTaken() from None
            if _definite(e):
                raise
            self._settle(writer, seq, object_key, e)
            return
        except Exception as e:  # a lost answer: the commit may or may not have happened
            self._settle(writer, seq, object_key, e)
            return
        writer.seq = seq

    def _transact_by_deadline(self, items: list[Item]) -> None:
        """The commit's ``TransactWriteItems``, waited for ``commit_stall_ms`` at most (and
        never past the commit's deadline). A call still unanswered by then may be on its way
        (a stalled connection, a slow DynamoDB): raise ``_Unanswered`` and let ``_settle``
        decide its seq, instead of holding the writer's lock, and with it every later commit
        of this broker, for as long as the call takes (issue 22.1: one 12 s stall failed
        every commit for 12 s, producers timed out, bumped their epochs and resent what had
        landed). A tombstone at the seq makes the late call fail its condition, so it can
        never land after its producers were answered; an answer that was only slow is found
        as landed."""
        deadline = getattr(self._deadline, "ms", None)
        if deadline is None:
            self._retrying(self._c.transact_write_items, TransactItems=items)
            return

        def call() -> None:
            self._deadline.ms = deadline  # per thread: checked before every HTTP attempt
            try:
                self._retrying(self._c.transact_write_items, TransactItems=items)
            finally:
                self._deadline.ms = None

        future = self._commit_calls().submit(call)
        wait_ms = min(deadline - _now_ms(), self.commit_stall_ms)
        try:
            future.result(timeout=max(wait_ms, 0) / 1000)
        except FutureTimeout:
            if future.cancel():  # never started: it never will
                raise CommitDeadlinePassed("commit deadline passed before it was sent") from None
            future.add_done_callback(_ignore_outcome)
            raise _Unanswered(f"no answer in {wait_ms} ms") from None

    def _commit_calls(self) -> ThreadPoolExecutor:
        with self._ix.lock:
            if self._calls is None:
                self._calls = ThreadPoolExecutor(max_workers=8, thread_name_prefix="ddb-commit")
            return self._calls

    def _settle(self, writer: Writer, seq: int, object_key: str, exc: BaseException) -> None:
        """Turn an unknown outcome into a known one: it landed (return) or it never will
        (re-raise ``exc``). If even that fails, the next commit under the epoch tries again
        first, so no later seq is written while this one might still land."""
        try:
            landed = self._seal(writer, seq)
        except Exception:
            writer.unsealed = seq
            log.warning("commit %s (log %s seq %d) has an unknown outcome", object_key,
                        writer.log, seq, exc_info=True)  # fmt: skip
            raise exc from None
        if landed != object_key:
            if isinstance(exc, _Unanswered):  # and now it never will be written
                deadline = getattr(self._deadline, "ms", None)
                if deadline is not None and _now_ms() < deadline:
                    log.info("commit %s (log %s seq %d): %s; sealed, committing again",
                             object_key, writer.log, seq, exc)  # fmt: skip
                    raise _Stalled() from None
                raise CommitDeadlinePassed(str(exc)) from None
            raise exc
        log.info("commit %s answered %r but had landed: committed", object_key, exc)

    def _seal(self, writer: Writer, seq: int) -> str | None:
        """Make sure ``seq`` of the writer's log is settled: a tombstone there unless an entry
        landed. Returns the landed entry's object key, or None."""
        try:
            self._c.put_item(
                TableName=self.table,
                Item={**_key(log_pk(writer.log), entry_sk(seq)), **_item(kind="log-tombstone")},
                ConditionExpression="attribute_not_exists(pk)",
            )
            landed = None
        except ClientError as e:
            if _error_code(e) != "ConditionalCheckFailedException":
                raise
            a = self._get(log_pk(writer.log), entry_sk(seq))
            landed = str(a["object_key"]) if a and a.get("kind") == "log-entry" else None
        writer.seq = max(writer.seq, seq)
        writer.unsealed = None
        return landed

    def _put_new(self, item: Item) -> Item:
        return {
            "Put": {
                "TableName": self.table,
                "Item": item,
                "ConditionExpression": "attribute_not_exists(pk)",
            }
        }

    def _entry_puts(
        self, log_: str, seq: int, object_key: str, now: int, ranges: Sequence[StreamRange]
    ) -> list[Item]:
        keys, parts = pack_ranges(ranges)
        entry = _item(
            kind="log-entry",
            object_key=object_key,
            committed_ms=now,
            keys=pack_keys(keys),
            ranges=parts[0] if parts else b"",
            range_count=len(ranges),
            part_count=len(parts),
        )
        out = [self._put_new({**_key(log_pk(log_), entry_sk(seq)), **entry})]
        for n, part in enumerate(parts[1:], start=1):
            out.append(
                {
                    "Put": {
                        "TableName": self.table,
                        "Item": {
                            **_key(log_pk(log_), part_sk(seq, n)),
                            **_item(kind="log-part", ranges=part),
                        },
                    }
                }
            )
        return out

    def _writer(self, broker_id: int, epoch: int) -> Writer:
        name = log_name(broker_id, epoch)
        with self._ix.lock:
            w = self._ix.writers.get(name)
        if w is None:
            w = Writer(name, self._last_seq(name))
            with self._ix.lock:
                w = self._ix.writers.setdefault(name, w)
        return w

    def _last_seq(self, log_: str) -> int:
        resp = self._c.query(
            TableName=self.table,
            KeyConditionExpression="#pk = :pk",
            ExpressionAttributeNames={"#pk": "pk"},
            ExpressionAttributeValues={":pk": {"S": log_pk(log_)}},
            ScanIndexForward=False,
            Limit=1,
            ConsistentRead=True,
        )
        items = resp.get("Items") or []
        return seq_of(items[0]["sk"]["S"]) if items else 0

    def _claim(self, writer: Writer, streams: list[int]) -> None:
        """Put the writer's cursor (its last seq: what comes after may hold these streams)
        into each stream's head, creating the head if need be: one UpdateItem each, and
        idempotent (a cursor already there stays). It bumps the version, so a concurrent
        fold, which rewrites the cursors, fails its compare-and-set and reads the claim."""
        names = {"#k": "kind", "#s": "stream_id", "#l": CURSOR + writer.log, "#v": "version"}

        def claim(sid: int) -> None:
            self._retrying(
                self._c.update_item,
                TableName=self.table,
                Key=_key(stream_pk(sid), HEAD_SK),
                UpdateExpression="SET #k = :k, #s = :s, #l = if_not_exists(#l, :seq) ADD #v :one",
                ExpressionAttributeNames=names,
                ExpressionAttributeValues=_item(
                    **{":k": "stream-head", ":s": sid, ":seq": writer.seq, ":one": 1}
                ),
            )

        if len(streams) <= 2:
            for sid in streams:
                claim(sid)
        else:
            with ThreadPoolExecutor(max_workers=min(8, len(streams))) as pool:
                for _ in pool.map(claim, streams):
                    pass
        writer.claimed.update(streams)

    # -- reads -----------------------------------------------------------------------------
    def stream_ranges(self, stream_id: int) -> list[StreamRange]:
        return self._stream_state(stream_id).ranges()

    def _stream_state(self, stream_id: int) -> StreamState:
        for attempt in range(8):
            head = Head.load(self._get(stream_pk(stream_id), HEAD_SK))
            chunks = self._read_chunks(stream_id, head)
            if chunks is not None:
                break
            _backoff(attempt)  # the head and its chunks changed between our two reads
        else:
            raise MetadataError(f"stream {stream_id}: its chunks keep changing under the reader")
        tail: list[tuple[LogEntry, tuple[StreamRange, ...]]] = []
        seen: dict[str, int] = {}
        for log_, cursor in sorted(head.cursors.items()):
            top, entries = self._log_after(log_, cursor)
            seen[log_] = max(top, cursor)
            for e in entries:
                mine = e.by_stream.get(stream_id)
                if mine:
                    tail.append((e, mine))
        return StreamState(stream_id, head, chunks, tail, seen)

    def _read_chunks(self, stream_id: int, head: Head) -> list[Chunk] | None:
        if head.chunk_count == 0 and head.digest == EMPTY_DIGEST:
            return []
        cached = self._ix.chunks.get(stream_id, head.digest)
        if cached is not None:
            return cached
        chunks = [
            Chunk(str(a["sk"]), tuple(unpack_ranges(unpack_keys(a["keys"]), a["ranges"])))
            for a in self._query(stream_pk(stream_id), CHUNK_PREFIX)
        ]
        if len(chunks) != head.chunk_count or digest(c.sk for c in chunks) != head.digest:
            return None
        self._ix.chunks.put(stream_id, head.digest, chunks)
        return chunks

    def _log_after(self, log_: str, cursor: int) -> tuple[int, list[LogEntry]]:
        """The highest seq of the log known now, and its entries after ``cursor``."""
        with self._ix.lock:
            tail = self._ix.log_tails.get(log_)
            if tail is None:
                tail = self._ix.log_tails[log_] = LogTail(cursor)
            self._ix.log_tails.move_to_end(log_)
            while len(self._ix.log_tails) > 64:
                self._ix.log_tails.popitem(last=False)
        with tail.lock:
            if cursor < tail.floor:
                tail.reset(cursor)
            if not tail.final:
                dead = bool(self._dead([log_]))  # known before the read: then it read the end
                entries, top = self._query_log(log_, tail.top)
                tail.add(entries, top)
                tail.final = dead
            return tail.top, tail.after(cursor)

    def _query_log(self, log_: str, after: int) -> tuple[list[LogEntry], int]:
        """Entries of the log after seq ``after``, complete ones only, and the highest seq
        they reach (a read that catches a transaction half-way is read again)."""
        for attempt in range(8):
            raw: list[dict[str, Any]] = []
            kw: dict[str, Any] = {
                "TableName": self.table,
                "KeyConditionExpression": "#pk = :pk AND #sk > :after",
                "ExpressionAttributeNames": {"#pk": "pk", "#sk": "sk"},
                "ExpressionAttributeValues": {
                    ":pk": {"S": log_pk(log_)},
                    ":after": {"S": entry_sk(after) + "#~"},  # past that entry's parts too
                },
                "ConsistentRead": True,
            }
            while True:
                resp = self._c.query(**kw)
                raw += [_load(i) for i in resp.get("Items", [])]
                if not resp.get("LastEvaluatedKey"):
                    break
                kw["ExclusiveStartKey"] = resp["LastEvaluatedKey"]
            entries, complete = self._entries(log_, raw)
            if complete:
                return entries, max([after, *(e.seq for e in entries)])
            _backoff(attempt)
        raise MetadataError(f"log {log_}: an entry stays incomplete")

    @staticmethod
    def _entries(log_: str, raw: list[dict[str, Any]]) -> tuple[list[LogEntry], bool]:
        by_seq: dict[int, list[dict[str, Any]]] = {}
        for a in raw:
            by_seq.setdefault(seq_of(str(a["sk"])), []).append(a)
        out: list[LogEntry] = []
        for seq in sorted(by_seq):
            items = sorted(by_seq[seq], key=lambda a: str(a["sk"]))
            first = items[0]
            if first.get("kind") == "log-tombstone":
                out.append(LogEntry(log_, seq, 0, {}, None))
                continue
            if first.get("kind") != "log-entry" or len(items) != max(1, int(first["part_count"])):
                return out, False  # its parts are not all visible yet
            ranges: list[StreamRange] = []
            keys = unpack_keys(first["keys"])
            for a in items:
                ranges += unpack_ranges(keys, a["ranges"])
            if len(ranges) != int(first["range_count"]):
                return out, False
            by_stream: dict[int, list[StreamRange]] = {}
            for r in ranges:
                by_stream.setdefault(r.stream_id, []).append(r)
            out.append(
                LogEntry(
                    log_,
                    seq,
                    int(first["committed_ms"]),
                    {sid: tuple(rs) for sid, rs in by_stream.items()},
                    str(first["object_key"]),
                )
            )
        return out, True

    # -- folds and stream rewrites --------------------------------------------------------
    def fold_stream(self, stream_id: int, release: str | None = None) -> bool:
        """Move the stream's log tail into a chunk and advance its cursors (dropping those of
        dead broker epochs, and ``release``); True if it wrote. Safe from any process: a
        compare-and-set on the head's version, re-read and redone when something changed."""
        for attempt in range(self._attempts):
            head = Head.load(self._get(stream_pk(stream_id), HEAD_SK))
            dead = self._dead(head.cursors)  # before reading the logs: an epoch's death is final
            state = self._stream_state(stream_id)
            if not state.head.exists:
                return False
            drop = {k for k in state.head.cursors if k in dead or k == release}
            advance = max((state.seen[k] - c for k, c in state.head.cursors.items()), default=0)
            if not state.tail and not drop and advance < self.fold_min_advance:
                return False
            try:
                self._write_stream(state, state.ranges(), [], drop)
                return True
            except StreamConflict as c:
                if not c.head_moved:
                    raise
                _backoff(attempt)
        return False

    def flush_index(self) -> None:
        """Fold now every stream this store has committed ranges of since its last fold
        (tests, benchmarks, shutdown); normally the background thread does it."""
        self._ix.folder.drain()
        with self._ix.lock:
            writers = list(self._ix.writers.values())
        for w in writers:
            with w.lock:
                pending = [sid for sid, n in w.unfolded.items() if n]
                for sid in pending:
                    w.unfolded[sid] = 0
            for sid in pending:
                self.fold_stream(sid)

    def _release_stream(self, stream_id: int) -> None:
        """After a graceful move away from this store's broker: fold the stream and drop our
        cursors from its head, so its next leader does not follow our log for it."""
        with self._ix.lock:
            writers = [w for w in self._ix.writers.values() if stream_id in w.claimed]
        for w in writers:
            with w.lock:  # no commit of ours in flight
                if w.unsealed is not None:
                    self._seal(w, w.unsealed)
                if self.fold_stream(stream_id, release=w.log) or not self._has_cursor(
                    stream_id, w.log
                ):
                    w.claimed.discard(stream_id)
                    w.unfolded.pop(stream_id, None)

    def _has_cursor(self, stream_id: int, log_: str) -> bool:
        return log_ in Head.load(self._get(stream_pk(stream_id), HEAD_SK)).cursors

    def _dead(self, logs: Iterable[str]) -> set[str]:
        """Which of ``logs`` belong to broker epochs that can never commit again: the broker
        has a later epoch (re-registered or fenced) or was forgotten. Epochs only grow, so a
        broker list a few seconds old may call a dead log live, never a live one dead; a broker
        missing from it is looked up again (it may have registered since)."""
        pairs = [(k, int(k.split("#")[0]), int(k.split("#")[1])) for k in logs]
        if not pairs:
            return set()
        epochs = self._broker_epochs(refresh=False)
        if any(b not in epochs for _, b, _ in pairs):
            epochs = self._broker_epochs(refresh=True)
        return {k for k, b, e in pairs if epochs.get(b, e + 1) > e}

    def _broker_epochs(self, refresh: bool) -> dict[int, int]:
        at, epochs = self._ix.broker_epochs
        if refresh or time.monotonic() - at >= 5:
            epochs = {int(a["broker_id"]): int(a["epoch"]) for a in self._query("BROKERS")}
            self._ix.broker_epochs = (time.monotonic(), epochs)
        return epochs

    def _write_stream(
        self,
        state: StreamState,
        want: list[StreamRange],
        extra: list[Item],
        drop: Iterable[str] = (),
        rechunk: frozenset[str] = frozenset(),
    ) -> None:
        """Make the stream's index ``want`` (sorted by start offset), in one transaction
        with ``extra`` actions: chunks that would change are replaced (and those named in
        ``rechunk``), the log tail becomes chunks, cursors advance to what ``state`` read
        (``drop``: removed). Conditional on the head's version: ``StreamConflict`` if anything
        changed since ``state`` was read; ``TooManyChunks`` if the chunks to replace do not
        fit one transaction (``merge_chunks`` makes fewer of them)."""
        by_start = {r.start_offset: r for r in want}
        kept = [
            c
            for c in state.chunks
            if c.sk not in rechunk and all(by_start.get(r.start_offset) == r for r in c.ranges)
        ]
        replaced = [c for c in state.chunks if c not in kept]
        if len(replaced) + len(extra) + 3 > MAX_TX_ITEMS:
            raise TooManyChunks(replaced)
        in_kept = {r.start_offset for c in kept for r in c.ranges}
        fresh = [r for r in want if r.start_offset not in in_kept]
        new_chunks = [
            Chunk(new_chunk_sk(part[0].start_offset), tuple(part))
            for part in split_for_items(fresh)
        ]
        chunks = kept + new_chunks
        chunk_digest = digest(c.sk for c in chunks)
        dropped = set(drop)
        cursors = {k: v for k, v in state.seen.items() if k not in dropped}
        sid = state.stream_id
        head = state.head
        head_action: Item
        if head.exists:
            names = {"#n": "chunk_count", "#d": "digest", "#v": "version"}
            values: dict[str, Any] = {
                ":n": len(chunks),
                ":d": chunk_digest,
                ":one": 1,
                ":v": head.version,
            }
            sets = ["#n = :n", "#d = :d"]
            for i, (k, v) in enumerate(sorted(cursors.items())):
                names[f"#c{i}"], values[f":c{i}"] = CURSOR + k, v
                sets.append(f"#c{i} = :c{i}")
            removes = []
            for i, k in enumerate(sorted(set(head.cursors) - set(cursors))):
                names[f"#r{i}"] = CURSOR + k
                removes.append(f"#r{i}")
            expr = "SET " + ", ".join(sets) + (" REMOVE " + ", ".join(removes) if removes else "")
            head_action = {
                "Update": {
                    "TableName": self.table,
                    "Key": _key(stream_pk(sid), HEAD_SK),
                    "UpdateExpression": expr + " ADD #v :one",
                    "ConditionExpression": "#v = :v",
                    "ExpressionAttributeNames": names,
                    "ExpressionAttributeValues": _item(**values),
                }
            }
        else:
            head_action = self._put_new(self._head_item(sid, 1, cursors, chunks, chunk_digest))
        items: list[Item] = [*extra, head_action]
        items += [
            {"Delete": {"TableName": self.table, "Key": _key(stream_pk(sid), c.sk)}}
            for c in replaced
        ]
        for c in new_chunks:
            keys, parts = pack_ranges(c.ranges)
            items.append(
                self._put_new(
                    {
                        **_key(stream_pk(sid), c.sk),
                        **_item(
                            kind="stream-chunk",
                            keys=pack_keys(keys),
                            ranges=parts[0],
                            range_count=len(c.ranges),
                        ),  # fmt: skip
                    }
                )
            )
        if len(items) > MAX_TX_ITEMS:
            raise MetadataError(f"stream {sid}: a rewrite of {len(items)} items (max 100)")
        try:
            self._retrying(self._c.transact_write_items, TransactItems=items)
        except ClientError as e:
            reasons = _cancel_reasons(e)
            if _error_code(e) == "TransactionCanceledException" and _CCF in reasons:
                raise StreamConflict(reasons, len(extra)) from None
            raise
        self._ix.chunks.put(sid, chunk_digest, chunks)

    def merge_chunks(self, stream_id: int, chunks: Sequence[Chunk]) -> None:
        """Rewrite ``chunks`` (consecutive, each small) as fewer: the same ranges, so readers
        see no change, in one transaction conditional on the head's version (a
        ``StreamConflict`` is for the caller to read again). Makes room for a swap whose old
        ranges lie in more chunks than one transaction can replace (a stream folded in many
        small steps: moves, restarts)."""
        state = self._stream_state(stream_id)
        self._write_stream(
            state, state.ranges(), [], rechunk=frozenset(c.sk for c in chunks[: MAX_TX_ITEMS - 8])
        )

    def _head_item(
        self, sid: int, version: int, cursors: dict[str, int], chunks: list[Chunk], d: str
    ) -> Item:
        return {
            **_key(stream_pk(sid), HEAD_SK),
            **_item(
                kind="stream-head",
                stream_id=sid,
                version=version,
                chunk_count=len(chunks),
                digest=d,
                **{CURSOR + k: v for k, v in cursors.items()},
            ),
        }

    def _delete_stream_ranges(self, stream_id: int) -> None:
        self._batch_delete(self._query_raw(stream_pk(stream_id), keys_only=True))
        self._ix.chunks.drop(stream_id)
        with self._ix.lock:
            for w in self._ix.writers.values():
                w.claimed.discard(stream_id)
                w.unfolded.pop(stream_id, None)

    def close(self) -> None:
        self._ix.folder.close()
        if self._calls is not None:
            self._calls.shutdown(wait=False, cancel_futures=True)
        super().close()


class TooManyChunks(Exception):
    """A stream rewrite would replace more chunks than one transaction holds."""

    def __init__(self, chunks: list[Chunk]) -> None:
        super().__init__(f"a stream rewrite would replace {len(chunks)} chunks")
        self.chunks = chunks


class _SeqTaken(Exception):
    """The log entry's key exists: another store instance wrote under the same broker epoch."""


class _Unanswered(Exception):
    """A commit's call did not answer in time: its outcome is unknown until settled."""


class _Stalled(Exception):
    """A commit's call did not answer in time and its seq is now sealed without it: it can
    be sent again under the next seq while the deadline allows."""


def _ignore_outcome(future: Future[None]) -> None:
    """A call abandoned at its deadline ends later, one way or another: its seq was settled."""
    if not future.cancelled():
        future.exception()
