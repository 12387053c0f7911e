"""Client quotas (produce / fetch byte rates per user and client id), sans-I/O.

As Apache Kafka's ``ClientQuotaManager``: the quota that applies is the most specific
configured entity, in this order: user+client-id, user+default client, user, default
user+client-id, default user+default client, default user, client-id, default client. All
connections that resolve to the same entity share one rate; a request that pushes the rate
over the bound gets ``throttle_time_ms = (rate - bound) / bound * window`` and its channel is
muted for that long.
"""

from __future__ import annotations

import math
from collections import deque
from dataclasses import dataclass, field

from broker_service.metadata.records import QuotaEntity
from broker_service.protocol.errors import InvalidRequest

PRODUCER_BYTE_RATE = "producer_byte_rate"
CONSUMER_BYTE_RATE = "consumer_byte_rate"
REQUEST_PERCENTAGE = "request_percentage"
CONTROLLER_MUTATION_RATE = "controller_mutation_rate"
QUOTA_KEYS = (PRODUCER_BYTE_RATE, CONSUMER_BYTE_RATE, REQUEST_PERCENTAGE, CONTROLLER_MUTATION_RATE)
USER, CLIENT_ID = "user", "client-id"
ENTITY_TYPES = (USER, CLIENT_ID)

DEFAULT = None  # an entity name of None is the default entity of its type


class InvalidQuota(ValueError, InvalidRequest):
    pass


def make_entity(parts: dict[str, str | None]) -> QuotaEntity:
    for t in parts:
        if t not in ENTITY_TYPES:
            raise InvalidQuota(f"unsupported quota entity type {t!r}")
    if not parts:
        raise InvalidQuota("a quota entity needs at least one component")
    return tuple(sorted(parts.items()))


def validate_value(key: str, value: float) -> None:
    if key not in QUOTA_KEYS:
        raise InvalidQuota(f"unknown quota key {key!r}")
    if value <= 0:
        raise InvalidQuota(f"quota {key} must be positive")


def candidate_entities(user: str, client_id: str) -> list[QuotaEntity]:
    """The entities that may apply to (user, client id), most specific first."""
    u: list[tuple[str, str | None]] = [(USER, user)]
    du: list[tuple[str, str | None]] = [(USER, DEFAULT)]
    c: list[tuple[str, str | None]] = [(CLIENT_ID, client_id)]
    dc: list[tuple[str, str | None]] = [(CLIENT_ID, DEFAULT)]
    order = [
        [*c, *u], [*dc, *u], u, [*c, *du], [*dc, *du], du, c, dc,
    ]  # fmt: skip
    return [tuple(sorted(e, key=lambda p: p[0])) for e in order]


@dataclass
class RateSensor:
    """Bytes per second over ``samples`` windows of ``window_s`` (Kafka's sampled Rate)."""

    window_s: float
    samples: int
    _windows: deque[list[float]] = field(default_factory=deque)  # [start, bytes]

    def record(self, nbytes: int, now: float) -> None:
        w = self._windows
        if not w or now - w[-1][0] >= self.window_s:
            w.append([now, 0.0])
        w[-1][1] += nbytes
        while w and now - w[0][0] >= self.window_s * self.samples:
            w.popleft()

    def span(self, now: float) -> float:
        """Seconds the rate is measured over (at least samples-1 full windows, as Kafka)."""
        if not self._windows:
            return self.window_s * (self.samples - 1)
        return max(now - self._windows[0][0], self.window_s * (self.samples - 1))

    def rate(self, now: float) -> float:
        return sum(b for _, b in self._windows) / self.span(now)


class QuotaManager:
    def __init__(self, window_ms: int, samples: int) -> None:
        self.window_s = window_ms / 1000
        self.samples = samples
        self.max_throttle_ms = window_ms * samples
        self._configured: dict[QuotaEntity, dict[str, float]] = {}
        self._sensors: dict[tuple[str, QuotaEntity], RateSensor] = {}
        self._resolved: dict[tuple[str, str, str], tuple[QuotaEntity, float] | None] = {}

    def set_quotas(self, quotas: list[tuple[QuotaEntity, dict[str, float]]]) -> None:
        new = {e: dict(v) for e, v in quotas}
        if new != self._configured:
            self._configured = new
            self._resolved = {}

    @property
    def active(self) -> bool:
        return bool(self._configured)

    def _resolve(self, key: str, user: str, client_id: str) -> tuple[QuotaEntity, float] | None:
        cache_key = (key, user, client_id)
        if cache_key in self._resolved:
            return self._resolved[cache_key]
        found = None
        for entity in candidate_entities(user, client_id):
            value = self._configured.get(entity, {}).get(key)
            if value is not None:
                # the sensor is shared by everyone matching the entity: defaults are
                # per actual user / client id (Kafka's sanitized default entities)
                concrete = tuple(
                    (t, n if n is not None else (user if t == USER else client_id))
                    for t, n in entity
                )
                found = (concrete, value)
                break
        self._resolved[cache_key] = found
        return found

    def record_fetch(self, user: str, client_id: str, nbytes: int, now: float) -> tuple[int, bool]:
        """(throttle ms, whether to deliver the data). A consumer within its quota gets its
        data and the throttle it earned by it; one already over its quota gets an empty
        response (its bytes are not counted, as Kafka's ``unrecordQuotaSensor``), so every
        consumer keeps making progress at about its quota."""
        found = self._resolve(CONSUMER_BYTE_RATE, user, client_id) if self._configured else None
        if found is None:
            return 0, True
        entity, bound = found
        sensor = self._sensor(CONSUMER_BYTE_RATE, entity)
        rate = sensor.rate(now)
        if rate > bound:
            return self._throttle_ms(rate, bound, sensor.span(now)), False
        return self.record(CONSUMER_BYTE_RATE, user, client_id, nbytes, now), True

    def _sensor(self, key: str, entity: QuotaEntity) -> RateSensor:
        sensor = self._sensors.get((key, entity))
        if sensor is None:
            sensor = self._sensors[(key, entity)] = RateSensor(self.window_s, self.samples)
        return sensor

    def record(self, key: str, user: str, client_id: str, nbytes: int, now: float) -> int:
        """Record ``nbytes`` against the quota of (user, client id); the throttle time in
        ms (0 when within the quota or when no quota applies)."""
        if not self._configured:
            return 0
        found = self._resolve(key, user, client_id)
        if found is None:
            return 0
        entity, bound = found
        sensor = self._sensor(key, entity)
        sensor.record(nbytes, now)
        rate = sensor.rate(now)
        if rate <= bound:
            return 0
        return self._throttle_ms(rate, bound, sensor.span(now))

    def _throttle_ms(self, rate: float, bound: float, span_s: float) -> int:
        """Kafka's ``(rate - bound) / bound * window``, rounded up (over is never 0 ms)."""
        return min(math.ceil((rate - bound) / bound * span_s * 1000), self.max_throttle_ms)
