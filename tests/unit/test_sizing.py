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

P, C = sizing.PRODUCE_MBPS_PER_VCPU, sizing.CONSUME_MBPS_PER_VCPU


def test_per_vcpu_figures_scale_with_the_task() -> None:
    two = BrokerCapacity.for_vcpu(2)
    assert (two.produce_mbps, two.consume_mbps) == (2 * P, 2 * C)
    assert BrokerCapacity.for_cpu_units(4096) == BrokerCapacity.for_vcpu(4)
    assert BrokerCapacity.for_cpu_units(4096).produce_mbps == 2 * two.produce_mbps
    assert BrokerCapacity.for_produce(10) == BrokerCapacity(10, 10 * C / P)


def test_brokers_needed_adds_produce_and_consume_load() -> None:
    cap = BrokerCapacity.for_vcpu(2)
    assert cap.brokers_needed(2 * P, 0) == 1
    assert cap.brokers_needed(2 * P, 2 * C) == 2  # one broker's worth of each
    # 2.5 brokers' worth of produce + 0.625 of consume
    assert cap.brokers_needed(5 * P, 1.25 * C, min_brokers=3) == 4
    assert cap.brokers_needed(0, 0, min_brokers=3) == 3


def test_produce_capacity_and_alarm_thresholds() -> None:
    cap = BrokerCapacity.for_vcpu(2)
    # fan-out 1: a produced MB costs 1/2P + 1/2C of a broker
    per_broker = 1 / (1 / (2 * P) + 1 / (2 * C))
    assert cap.produce_capacity_mbps(1) == pytest.approx(per_broker)
    assert cap.produce_capacity_mbps(12) == pytest.approx(12 * per_broker)
    t = produce_alarm_thresholds(cap, 3)
    assert t.high_bytes_per_s == pytest.approx(0.8 * 3 * per_broker * MB)
    assert t.low_bytes_per_s == pytest.approx(0.3 * 3 * per_broker * MB)


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
    assert ControlSettings().autoscaler_policy().capacity == BrokerCapacity(
        10, 10 * sizing.CONSUME_MBPS_PER_VCPU / sizing.PRODUCE_MBPS_PER_VCPU
    )
    # the figures follow from the measured CPU time per byte and the planned share of a vCPU
    assert sizing.PRODUCE_MBPS_PER_VCPU == pytest.approx(1 / 3 * (1 << 30) / 3.5 / 1e6, abs=0.1)
    assert sizing.CONSUME_MBPS_PER_VCPU == pytest.approx(1 / 3 * (1 << 30) / 3.9 / 1e6, abs=0.1)
