"""Moved to tests/support/broker.py; this name stays so tests written against it still run."""

from tests.support.broker import REPO, BrokerProcess, free_port

__all__ = ["REPO", "BrokerProcess", "free_port"]
