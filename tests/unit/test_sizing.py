"""The one sizing model (control/sizing.py) and the three places that use it: the
autoscaler's settings, the stacks' alarm thresholds and max_brokers check, the cost model."""

from __future__ import annotations

import pytest

from broker_service.control import sizing
from broker_service.control.settings import ControlSettings
from broker_service.control.sizing import MB, BrokerCapacity, produce_alarm_thresholds
from broker_service.ops.cost.model import (
    Assumptions,
    OursAssumptions,
    broker_capacity,
    brokers_needed,
)


def test_per_vcpu_figures_scale_with_the_task() -> None:
    two = BrokerCapacity.for_vcpu(2)
    assert (two.produce_mbps, two.consume_mbps) == (40.0, 160.0)
    assert BrokerCapacity.for_cpu_units(4096) == BrokerCapacity.for_vcpu(4)
    assert BrokerCapacity.for_cpu_units(4096).produce_mbps == 2 * two.produce_mbps
    assert BrokerCapacity.for_produce(10) == BrokerCapacity(10, 40)


def test_brokers_needed_weighs_reads_less_than_writes() -> None:
    cap = BrokerCapacity.for_vcpu(2)
    assert cap.brokers_needed(40, 0) == 1
    assert cap.brokers_needed(40, 160) == 2  # one broker's worth of each
    assert cap.brokers_needed(100, 100, min_brokers=3) == 4  # 2.5 + 0.625
    assert cap.brokers_needed(0, 0, min_brokers=3) == 3


def test_produce_capacity_and_alarm_thresholds() -> None:
    cap = BrokerCapacity.for_vcpu(2)
    # fan-out 1: a produced MB costs 1/40 + 1/160 of a broker -> 32 MB/s per broker
    assert cap.produce_capacity_mbps(1) == pytest.approx(32.0)
    assert cap.produce_capacity_mbps(12) == pytest.approx(384.0)
    t = produce_alarm_thresholds(cap, 3)
    assert t.high_bytes_per_s == pytest.approx(0.8 * 96 * MB)
    assert t.low_bytes_per_s == pytest.approx(0.3 * 96 * MB)


def test_autoscaler_settings_and_cost_model_use_the_same_figures(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("METADATA_TABLE", "t")
    for k in ("PRODUCE_MBPS_PER_BROKER", "CONSUME_MBPS_PER_BROKER"):
        monkeypatch.delenv(k, raising=False)
    assert ControlSettings().autoscaler_policy().capacity == BrokerCapacity.for_vcpu()
    assert broker_capacity(OursAssumptions()) == BrokerCapacity.for_vcpu()
    assert broker_capacity(OursAssumptions(task_vcpu=4)) == BrokerCapacity.for_vcpu(4)
    a = Assumptions().ours
    assert brokers_needed(100, 100, a) == BrokerCapacity.for_vcpu().brokers_needed(100, 100, 3)
    monkeypatch.setenv("PRODUCE_MBPS_PER_BROKER", "10")
    assert ControlSettings().autoscaler_policy().capacity == BrokerCapacity(10, 40)
    assert sizing.PRODUCE_MBPS_PER_VCPU * sizing.DEFAULT_TASK_VCPU == 40
