"""Settings: one model per process (the broker's is ``BrokerConfig``), and listener specs."""

from broker_service.config.broker import BrokerConfig

__all__ = ["BrokerConfig"]
