"""The compaction Lambda (EventBridge schedule): a thin adapter around
``broker_service.control.compaction.compact``.

Environment (a pydantic-settings model): ``TENANT``, ``METADATA_TABLE``, ``STORAGE_URI``
(``s3://bucket/prefix``), ``METRICS_NAMESPACE``, ``POWERTOOLS_SERVICE_NAME``; compaction knobs
are ``COMPACTION_*`` (see ``CompactionConfig``). The run's time budget is the invocation's
remaining time minus a margin, and its lease lasts no longer than the invocation can, so a
run ends (and releases its lease) before the function's timeout, and a killed one blocks the
next scheduled runs only until its lease runs out; what it did not reach, the next run does.
"""

from __future__ import annotations

import asyncio
from typing import Any

from aws_lambda_powertools import Logger, Metrics
from aws_lambda_powertools.metrics import MetricUnit
from aws_lambda_powertools.utilities.parser import parse
from aws_lambda_powertools.utilities.parser.models import EventBridgeModel
from aws_lambda_powertools.utilities.typing import LambdaContext
from pydantic import BaseModel, Field

from broker_service.control.compaction import CompactionResult, compact
from broker_service.control.settings import ControlSettings


class CompactionDetail(BaseModel):
    """Optional overrides in the event's ``detail`` (a scheduled event's detail is ``{}``)."""

    max_bytes_per_run: int | None = Field(default=None, gt=0)
    time_budget_s: float | None = Field(default=None, gt=0)
    # the compactor shard of this run (the stacks' schedule targets of COMPACTION_SHARDS > 1)
    shard: int = Field(default=0, ge=0, le=63)


class CompactionEvent(EventBridgeModel):
    detail: CompactionDetail  # type: ignore[assignment]


# leave this much of the invocation (at most a quarter of it) for the last swap and the release
SAFETY_MARGIN_S = 60.0

logger = Logger()
metrics = Metrics()


def run(event: CompactionEvent, remaining_s: float, settings: ControlSettings) -> CompactionResult:
    config = settings.compaction
    margin = min(SAFETY_MARGIN_S, remaining_s / 4)
    budget = max(1.0, min(config.time_budget_s, remaining_s - margin))
    updates: dict[str, Any] = {
        "time_budget_s": event.detail.time_budget_s or budget,
        # a killed invocation's lease must not block the next scheduled runs for long
        "lease_ms": min(config.lease_ms, int(remaining_s * 1000) + 5_000),
    }
    if event.detail.max_bytes_per_run:
        updates["max_bytes_per_run"] = event.detail.max_bytes_per_run
    if event.detail.shard >= config.shards:
        raise ValueError(f"shard {event.detail.shard} but COMPACTION_SHARDS={config.shards}")
    updates["shard"] = event.detail.shard
    config = config.model_copy(update=updates)
    if not (settings.storage_uri or "").startswith("s3://"):
        raise ValueError(f"STORAGE_URI must be s3://bucket/prefix, got {settings.storage_uri!r}")
    metadata = settings.metadata_store()
    objects = settings.object_store()
    try:
        return asyncio.run(compact(metadata, objects, config, owner=f"lambda:{event.id}"))
    finally:
        metadata.close()
        objects.close()


@metrics.log_metrics
@logger.inject_lambda_context
def handler(event: dict[str, Any], context: LambdaContext) -> dict[str, Any]:
    settings = ControlSettings()  # type: ignore[call-arg]  # from the environment
    metrics.namespace = settings.metrics_namespace
    metrics.add_dimension("Tenant", settings.tenant)
    parsed = parse(event=event, model=CompactionEvent)
    result = run(parsed, context.get_remaining_time_in_millis() / 1000, settings)
    metrics.add_metric("CompactionSkipped", MetricUnit.Count, 1 if result.skipped else 0)
    metrics.add_metric("CompactionSwaps", MetricUnit.Count, result.swaps)
    metrics.add_metric("CompactionBytesRead", MetricUnit.Bytes, result.bytes_read)
    metrics.add_metric("CompactionBytesWritten", MetricUnit.Bytes, result.bytes_written)
    metrics.add_metric("CompactionConflicts", MetricUnit.Count, result.conflicts)
    metrics.add_metric("ObjectsDeleted", MetricUnit.Count, result.objects_deleted)
    metrics.add_metric("OrphansDeleted", MetricUnit.Count, result.orphans_deleted)
    metrics.add_metric("RangesDropped", MetricUnit.Count, result.ranges_dropped)
    out = {
        "tenant": settings.tenant,
        "lease_epoch": result.lease_epoch,
        "skipped": result.skipped,
        "swaps": result.swaps,
        "ranges_merged": result.ranges_merged,
        "bytes_read": result.bytes_read,
        "bytes_written": result.bytes_written,
        "records_removed": result.records_removed,
        "retention_moves": [list(m) for m in result.retention_moves],
        "ranges_dropped": result.ranges_dropped,
        "conflicts": result.conflicts,
        "objects_released": result.objects_released,
        "objects_deleted": result.objects_deleted,
        "orphans_deleted": result.orphans_deleted,
        "budget_exhausted": result.budget_exhausted,
        "seconds": round(result.seconds, 3),
    }
    logger.info("compaction run finished", extra=out)
    return out
