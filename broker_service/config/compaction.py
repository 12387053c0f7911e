"""Compaction's knobs: part of the one settings model of a process (the broker's
``BrokerConfig.compaction``, the control functions' ``ControlSettings.compaction``), read
from ``COMPACTION_*`` env vars; the same for the Lambda and the embedded timer."""

from __future__ import annotations

from pydantic import Field
from pydantic_settings import BaseSettings, SettingsConfigDict


class CompactionConfig(BaseSettings):
    """Knobs of a compaction run (env ``COMPACTION_*``; the same for the Lambda and the
    embedded timer)."""

    model_config = SettingsConfigDict(env_prefix="COMPACTION_", extra="ignore")

    target_object_bytes: int = Field(
        default=64 << 20, description="size of the per-stream objects compaction writes"
    )
    block_bytes: int = Field(default=1 << 20, description="block size inside written objects")
    time_budget_s: float = Field(
        default=600.0, description="stop starting new work after this long (Lambda: 15 min max)"
    )
    max_bytes_per_run: int = Field(
        default=4 << 30, description="stop after reading this many bytes"
    )
    read_buffer_bytes: int = Field(
        default=128 << 20,
        description="bytes of shared objects a run holds so each is read with one GET "
        "(control/compaction_reads.py); 0 reads every range with a GET of its own",
    )
    shards: int = Field(
        default=1,
        ge=1,
        le=64,
        description="compactors working at once (one lease each): shard k merges the ranges "
        "of the WAL objects written in time buckets k, k + shards, ...; shard 0 also does "
        "retention, compacted topics, merges of merged objects and garbage collection",
    )
    shard: int = Field(default=0, ge=0, le=63, description="this run's shard (< shards)")
    shard_bucket_ms: int = Field(
        default=60_000, gt=0, description="time bucket of WAL objects handed to one shard"
    )
    shard_sweep_after_ms: int = Field(
        default=900_000,
        ge=0,
        description="shard 0 also merges the ranges of other shards' WAL objects older than "
        "this: what their shard left (a partition with one range in a bucket has nothing to "
        "merge it with there), so every WAL object is emptied in the end",
    )
    lease_ms: int = Field(
        default=900_000, description="compactor lease; must exceed time_budget_s plus one swap"
    )
    max_compacted_partition_bytes: int = Field(
        default=256 << 20,
        description="cleanup.policy=compact partitions are cleaned in memory; larger ones wait",
    )
    replaced_grace_ms: int = Field(
        default=600_000, description="keep replaced objects this long (readers may still hold them)"
    )
    orphan_grace_ms: int = Field(
        default=3_600_000, description="delete never-committed objects older than this"
    )
