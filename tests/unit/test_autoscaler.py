"""Autoscaler decisions, table-driven: bounds, target, cooldowns, hysteresis, step size."""

from __future__ import annotations

import pytest

from broker_service.control.autoscaler import AutoscalerPolicy, ScalingInput, decide, load_units
from broker_service.control.metrics_source import ClusterLoad, Load
from broker_service.control.sizing import MB, BrokerCapacity

# One broker: 10 MB/s produce or 40 MB/s consume; the table's loads are produce MB/s.
CAPACITY = BrokerCapacity(produce_mbps=10, consume_mbps=40)
POLICY = AutoscalerPolicy(capacity=CAPACITY, min_brokers=2, max_brokers=6,
                          scale_out_cooldown_s=120, scale_in_cooldown_s=600,
                          scale_in_headroom=0.2, max_scale_in_step=1)  # fmt: skip
NOW = 100_000.0


@pytest.mark.parametrize(
    ("current", "load_mb", "since_last", "action", "desired"),
    [
        # within target: hold
        (3, 25, None, "hold", 3),
        (3, 30, None, "hold", 3),  # exactly 3 x target
        # scale out to ceil(load / target), at once (several brokers in one step)
        (3, 31, None, "scale_out", 4),
        (2, 55, None, "scale_out", 6),
        (2, 500, None, "scale_out", 6),  # capped at max
        (3, 31, 60, "hold", 3),  # scale-out cooldown (120 s) not over
        (3, 31, 121, "scale_out", 4),
        # scale in only with 20 % headroom: 2 brokers x 10 MB/s x 0.8 = 16 MB/s
        (3, 17, None, "hold", 3),  # 2 would be enough, not with headroom (hysteresis)
        (3, 16, None, "scale_in", 2),
        (5, 1, None, "scale_in", 4),  # one broker at a time
        (2, 0, None, "hold", 2),  # never below min
        (3, 16, 300, "hold", 3),  # scale-in cooldown (600 s) not over
        (3, 16, 601, "scale_in", 2),
        # bounds win over everything, even cooldowns and missing metrics
        (1, None, 10, "scale_out", 2),
        (8, None, 10, "scale_in", 6),
        (3, None, None, "hold", 3),  # no metrics: do nothing
    ],
)
def test_decisions(current: int, load_mb: float | None, since_last: float | None, action: str,
                   desired: int) -> None:  # fmt: skip
    inp = ScalingInput(current, None if load_mb is None else CAPACITY.units(load_mb, 0), NOW,
                       None if since_last is None else NOW - since_last)  # fmt: skip
    d = decide(inp, POLICY)
    assert (d.action, d.desired) == (action, desired), d.reason
    assert d.current == current and d.reason


def test_hysteresis_does_not_flap_around_a_boundary() -> None:
    """Load wobbling around 2 brokers' worth: out to 3 once, never back in while it wobbles."""
    current, last, actions = 2, None, []
    for step, load in enumerate([19, 21, 19, 21, 18, 21, 19] * 3):
        now = NOW + step * 1000  # cooldowns are never what stops it
        d = decide(ScalingInput(current, CAPACITY.units(load, 0), now, last), POLICY)
        if d.action != "hold":
            actions.append(d.action)
            current, last = d.desired, now
    assert actions == ["scale_out"]
    assert current == 3


def test_load_counts_produce_and_consume_by_the_sizing_model() -> None:
    """Bytes out cost a quarter of bytes in here (40 vs 10 MB/s per broker): 25 MB/s in and
    40 MB/s out is 2.5 + 1 = 3.5 brokers' worth, so 4 brokers (in + out against one target
    would have said ceil(65 / 10) = 7)."""
    load = ClusterLoad(60, {1: Load(15 * MB, 20 * MB), 2: Load(10 * MB, 20 * MB)})
    units = load_units(load, CAPACITY)
    assert units == pytest.approx(3.5)
    d = decide(ScalingInput(2, units, NOW), POLICY)
    assert (d.action, d.desired) == ("scale_out", 4), d.reason
    assert load_units(None, CAPACITY) is None
