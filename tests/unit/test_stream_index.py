"""The pure parts of the DynamoDB stream index (metadata/dynamodb/stream_index.py): how a
stream's ranges are merged from chunks and log tails, and the log-tail cache."""

from __future__ import annotations

from broker_service.metadata.dynamodb.stream_index import (
    EMPTY_DIGEST,
    Chunk,
    Head,
    LogEntry,
    LogTail,
    StreamState,
    digest,
    entry_sk,
    part_sk,
    seq_of,
)
from broker_service.metadata.records import StreamRange


def _r(start: int, end: int, key: str) -> StreamRange:
    return StreamRange(7, start, end, key, 0, 10, 1)


def _e(
    log: str, seq: int, ms: int, *ranges: StreamRange
) -> tuple[LogEntry, tuple[StreamRange, ...]]:
    return LogEntry(log, seq, ms, {7: ranges}, ranges[0].object_key if ranges else None), ranges


def test_log_ranges_replace_chunk_ranges_of_the_same_start_later_ones_win() -> None:
    chunk = Chunk("C#1", (_r(0, 10, "a"), _r(10, 20, "b")))
    state = StreamState(
        7,
        Head(version=3, cursors={"1#1": 2}, chunk_count=1, digest=digest(["C#1"]), exists=True),
        [chunk],
        [
            _e("1#1", 4, 1000, _r(20, 24, "d")),  # a lost answer: committed again...
            _e("1#1", 5, 900, _r(20, 30, "e")),  # ...under a new key (the clock stepped back)
            _e("1#1", 3, 1100, _r(10, 20, "c")),
        ],
        {"1#1": 5},
    )
    assert state.ranges() == [_r(0, 10, "a"), _r(10, 20, "c"), _r(20, 30, "e")]


def test_across_logs_the_later_commit_wins() -> None:
    state = StreamState(
        7,
        Head(),
        [],
        [_e("2#1", 1, 2000, _r(0, 14, "b")), _e("1#1", 9, 1000, _r(0, 10, "a"))],
        {},
    )
    assert state.ranges() == [_r(0, 14, "b")]


def test_keys_sort_by_sequence_and_parts_follow_their_entry() -> None:
    sks = sorted([entry_sk(10), part_sk(9, 1), entry_sk(9), entry_sk(100), part_sk(9, 2)])
    assert sks == [entry_sk(9), part_sk(9, 1), part_sk(9, 2), entry_sk(10), entry_sk(100)]
    assert [seq_of(k) for k in sks] == [9, 9, 9, 10, 100]
    assert entry_sk(9) + "#~" > part_sk(9, 9999) and entry_sk(9) + "#~" < entry_sk(10)
    assert digest([]) == EMPTY_DIGEST and digest(["b", "a"]) == digest(["a", "b"])


def test_a_log_tail_holds_what_it_read_and_forgets_the_oldest_half_when_full() -> None:
    tail = LogTail(floor=5)
    entries = [LogEntry("1#1", s, 0, {}, None) for s in range(6, 16)]
    tail.add(entries[:4], top=9)
    assert (tail.top, [e.seq for e in tail.after(7)]) == (9, [8, 9])
    tail.add(entries, top=15)  # overlapping reads add nothing twice
    assert [e.seq for e in tail.after(5)] == list(range(6, 16))
    tail.MAX_ENTRIES = 8
    tail.add([LogEntry("1#1", 16, 0, {}, None)], top=16)
    assert tail.floor == 10 and [e.seq for e in tail.after(tail.floor)] == list(range(11, 17))
    tail.reset(3)
    assert (tail.floor, tail.top, tail.after(0), tail.final) == (3, 3, [], False)
