"""Moved to tests/support/moto.py; this name stays so tests written against it still run."""

from tests.support.moto import AWS_TEST_ENV, REGION

__all__ = ["AWS_TEST_ENV", "REGION"]
