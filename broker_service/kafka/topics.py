"""The topics this broker knows, kept in step with the metadata store.

Topics and partition leaders change through any broker (and the control functions); each
broker re-reads the store when asked (a client reached us for a partition we think is
elsewhere, a new broker joined) and on a short timer, and reconciles: new topics are loaded,
deleted ones forgotten, leadership changes handed to ``Leadership``.
"""

from __future__ import annotations

import asyncio
import logging
import time
import uuid
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any

from broker_service.kafka.configs import ConfigView
from broker_service.kafka.log_store import StreamStore
from broker_service.kafka.partition import PartitionLog
from broker_service.metadata.errors import ConcurrentUpdate, UnknownTopic
from broker_service.metadata.ports import MetadataPorts
from broker_service.metadata.records import PartitionRecord, TopicRecord
from broker_service.protocol.configs import validate_configs, validate_topic_name

log = logging.getLogger(__name__)


@dataclass(eq=False)
class TopicState:
    record: TopicRecord
    logs: list[PartitionLog] = field(default_factory=list)

    @property
    def name(self) -> str:
        return self.record.name

    @property
    def topic_id(self) -> uuid.UUID:
        return self.record.topic_id

    def config(self, view: ConfigView, name: str) -> Any:
        """The typed effective value of one of this topic's configs."""
        return view.topic_value(self.record.configs, name)


LeaderChanged = Callable[[PartitionLog, PartitionRecord], Awaitable[None]]


class Topics:
    def __init__(
        self,
        ports: MetadataPorts,
        store: StreamStore,
        node_id: int,
        *,
        live_ids: Callable[[], Awaitable[list[int]]],
        on_leader_changed: LeaderChanged,
        on_forget: Callable[[str], None],
        before_sync: Callable[[], Awaitable[None]],
        leaders_seen: Callable[[list[TopicRecord]], Awaitable[None]],
    ) -> None:
        self.ports = ports
        self.metadata = ports.store  # the few calls made before serving, in a thread
        self.store = store
        self.node_id = node_id
        self._live_ids = live_ids
        self._on_leader_changed = on_leader_changed
        self._on_forget = on_forget
        self._before_sync = before_sync
        self._leaders_seen = leaders_seen
        self.by_name: dict[str, TopicState] = {}
        self.by_id: dict[uuid.UUID, TopicState] = {}
        self.refresh_wanted = asyncio.Event()
        self._sync_lock = asyncio.Lock()
        self._last_sync_started = 0.0

    # -- lookups -------------------------------------------------------------------------
    def partition(self, topic: str, index: int) -> PartitionLog | None:
        state = self.by_name.get(topic)
        if state is None or not 0 <= index < len(state.logs):
            return None
        return state.logs[index]

    def led_here(self) -> list[PartitionLog]:
        return [p for s in self.by_name.values() for p in s.logs if p.leader_id == self.node_id]

    # -- loading ---------------------------------------------------------------------------
    async def load_all(self) -> None:
        """At start: every topic, with the ranges of the partitions led here (claimed first)."""
        for rec in await self.ports.topics.topics():
            await self._load(await self._claim(rec))

    async def _claim(self, rec: TopicRecord) -> TopicRecord:
        """A (re)starting broker takes the partitions the store still names it leader of
        with a compare-and-set of its own (leader epoch + 1) before serving them. While it
        was down a recoverer may have seen its old registration fenced and decided to move
        them: that move, decided on a stale view, now loses its compare-and-set; or it landed
        first and the claim loses. Either way one broker leads (two would both assign offsets
        from the same committed end)."""
        mine = [p for p in rec.partitions if p.leader_id == self.node_id]
        if not mine:
            return rec
        lanes = asyncio.Semaphore(8)

        async def claim(p: PartitionRecord) -> None:
            async with lanes:
                try:
                    await self.ports.topics.move_partition(
                        rec.name, p.partition, self.node_id, p.leader_epoch, self.node_id
                    )
                except (ConcurrentUpdate, UnknownTopic):
                    pass  # moved or deleted meanwhile (or our claim applied, unanswered)

        await asyncio.gather(*(claim(p) for p in mine))
        fresh = await self.ports.topics.topic(rec.name)
        return fresh if fresh is not None else rec

    async def _load(self, rec: TopicRecord) -> TopicState:
        """Load a topic; the partitions led here with their ranges and producer state read
        first. The topic is published (to requests) only then: published before, a produce
        arriving during those reads was appended, then wiped by them."""
        logs = [await self._partition_log(p) for p in rec.partitions]
        state = TopicState(rec, logs)
        self.by_name[rec.name] = state
        self.by_id[rec.topic_id] = state
        return state

    async def _partition_log(self, p: PartitionRecord) -> PartitionLog:
        """A partition's log as this broker first learns it: led here, with its committed
        ranges and producer state read (it may hold data: created or added elsewhere, written
        there, moved here before this broker's sync); led elsewhere, empty."""
        if p.leader_id != self.node_id:
            return self.store.add_partition(p, ranges=[])
        ranges = await self.ports.streams.stream_ranges(p.stream_id)
        plog = self.store.add_partition(p, ranges=ranges)
        await self.store.load_producer_state(plog)
        return plog

    def _add_new(self, rec: TopicRecord) -> TopicState:
        """A topic created here a moment ago: no data anywhere yet."""
        state = TopicState(rec, [self.store.add_partition(p, ranges=[]) for p in rec.partitions])
        self.by_name[rec.name] = state
        self.by_id[rec.topic_id] = state
        return state

    def _forget(self, name: str) -> None:
        state = self.by_name.pop(name, None)
        if state is None:
            return
        self.by_id.pop(state.topic_id, None)
        for plog in state.logs:
            self.store.remove_partition(plog.stream_id)
        self._on_forget(name)

    # -- following the metadata store ----------------------------------------------------------
    def request_refresh(self) -> None:
        """A client reached us for a partition we think is elsewhere: re-read soon."""
        self.refresh_wanted.set()

    async def learn_unknown(self) -> None:
        """A client names a topic this broker has not loaded yet (created through another
        broker less than a refresh ago): wait for a re-read of the metadata store that began
        after the request arrived, rather than answer UNKNOWN_TOPIC_OR_PARTITION. Requests
        arriving together share one re-read, so bogus names cannot storm the store."""
        asked = time.monotonic()
        async with self._sync_lock:
            if self._last_sync_started >= asked:
                return
            await self._sync()

    async def sync(self) -> None:
        async with self._sync_lock:  # one reconciliation at a time: they edit shared state
            await self._sync()

    async def _sync(self) -> None:
        self._last_sync_started = time.monotonic()
        await self._before_sync()
        records = {t.name: t for t in await self.ports.topics.topics()}
        await self._leaders_seen(list(records.values()))
        await self._apply(records)

    async def _apply(self, records: dict[str, TopicRecord]) -> None:
        """Reconcile with ``records``. Topics created, grown or deleted here take the sync's
        lock (create, add_partitions, delete), so none changes between the read and the
        end of this: a stale read can neither forget a create nor undo a delete."""
        for name in [n for n in self.by_name if n not in records]:
            self._forget(name)
        for name, rec in records.items():
            state = self.by_name.get(name)
            if state is None or state.topic_id != rec.topic_id:
                if state is not None:
                    self._forget(name)
                await self._load(rec)
                continue
            for p in rec.partitions[len(state.logs) :]:
                # published (appended) only once loaded, as a whole topic is
                state.logs.append(await self._partition_log(p))
            state.record = rec
            for p, plog in zip(rec.partitions, state.logs, strict=False):
                if p.leader_id != plog.leader_id or p.leader_epoch != plog.leader_epoch:
                    await self._on_leader_changed(plog, p)
                elif p.log_start_offset > plog.log_start_offset:
                    # retention (the compactor) or DeleteRecords on another broker moved it
                    plog.log_start_offset = min(p.log_start_offset, plog.high_watermark)

    # -- topic lifecycle (raise InvalidTopic / InvalidConfig / TopicAlreadyExists) ---------
    async def create(
        self, name: str, partitions: int, configs: dict[str, str | None]
    ) -> TopicState:
        validate_topic_name(name)
        checked = validate_configs(configs)
        leaders = await self._placement()
        async with self._sync_lock:  # see add_partitions
            rec = await self.ports.topics.create_topic(name, partitions, checked, leaders)
            state = self._add_new(rec)
        log.info(
            "created topic %s with %d partitions, led by brokers %s",
            name,
            partitions,
            sorted({p.leader_id for p in rec.partitions}),
        )
        return state

    async def _placement(self) -> list[int]:
        """Who leads new partitions, round-robin, written with them (Kafka's controller
        places a new partition too: leader epoch 0 and its final leader from the first
        moment): the live brokers, starting here, so a topic's load spreads over the
        cluster. Created led here and handed out afterwards, they would look led here to
        anyone reading in between, then move (a group coordinated on a moving
        __consumer_offsets partition is unloaded, and its members rejoin elsewhere)."""
        live = await self._live_ids()
        if self.node_id not in live:
            return [self.node_id]
        start = live.index(self.node_id)
        return live[start:] + live[:start]

    async def delete(self, name: str) -> TopicRecord:
        async with self._sync_lock:  # see add_partitions
            rec = await self.ports.topics.delete_topic(name)
            self._forget(name)
        log.info("deleted topic %s", name)
        return rec

    async def add_partitions(self, name: str, total: int) -> TopicState:
        """Under the sync's lock, as create and delete: without it a sync that read the store
        after the write, before this coroutine went on, loaded the new partitions too (two
        logs for one partition: the store served one, requests used the other)."""
        leaders = await self._placement()
        async with self._sync_lock:
            rec = await self.ports.topics.add_partitions(name, total, leaders)
            state = self.by_name[name]
            for p in rec.partitions[len(state.logs) :]:
                state.logs.append(self.store.add_partition(p, ranges=[]))
            state.record = rec
        log.info("topic %s now has %d partitions", name, total)
        return state
