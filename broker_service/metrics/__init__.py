"""Broker metrics: plain counters on the hot paths, read out as Prometheus ``/metrics`` and as
CloudWatch embedded metric format (EMF) lines on stdout. Names are the contract of the control
functions (docs/CONTROL.md): BytesIn, BytesOut, ProduceRequests, ... per BrokerId."""

from broker_service.metrics.counters import BrokerMetrics

__all__ = ["BrokerMetrics"]
