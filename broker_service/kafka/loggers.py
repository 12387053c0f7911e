"""This broker's log levels as Kafka's BROKER_LOGGER config resource shows and changes them
(``kafka-configs --entity-type broker-loggers``; Kafka's RuntimeLoggerManager): each logger
and its effective level under Log4j's names, set or unset at runtime, never stored (a restart
brings back the levels the broker started with, as in Kafka)."""

from __future__ import annotations

import logging
from collections.abc import Iterable

from broker_service.protocol.configs import DELETE, SET, InvalidConfig

ROOT = "root"  # Log4j's name for the root logger
TRACE = 5  # below DEBUG: Python has no TRACE
_TO_PYTHON = {
    "TRACE": TRACE, "DEBUG": logging.DEBUG, "INFO": logging.INFO,
    "WARN": logging.WARNING, "ERROR": logging.ERROR, "FATAL": logging.CRITICAL,
}  # fmt: skip
VALID_LEVELS = ", ".join(sorted(_TO_PYTHON))
logging.addLevelName(TRACE, "TRACE")


class InvalidLoggerRequest(ValueError):
    """What Kafka refuses with INVALID_REQUEST (INVALID_CONFIG is ``InvalidConfig``)."""


def _level_name(level: int) -> str:
    for name, value in sorted(_TO_PYTHON.items(), key=lambda kv: -kv[1]):
        if level >= value:
            return name
    return "TRACE"


def _logger(name: str) -> logging.Logger:
    return logging.getLogger() if name == ROOT else logging.getLogger(name)


def _exists(name: str) -> bool:
    """A logger of this process, or the parent of some (``broker_service``)."""
    return name == ROOT or name in logging.root.manager.loggerDict


def current_levels() -> dict[str, str]:
    """Every logger this process has, with its effective level (Kafka's Log4jController.loggers)."""
    names = list(logging.root.manager.loggerDict)
    out = {ROOT: _level_name(logging.getLogger().getEffectiveLevel())}
    for name in sorted(names):
        out[name] = _level_name(logging.getLogger(name).getEffectiveLevel())
    return out


def apply_levels(ops: Iterable[tuple[str, int, str | None]], validate_only: bool) -> None:
    """IncrementalAlterConfigs on BROKER_LOGGER: all operations checked first, then applied."""
    ops = list(ops)
    for name, op, value in ops:
        if op == SET:
            if not _exists(name):
                raise InvalidConfig(f"Logger {name} does not exist!")
            if value not in _TO_PYTHON:
                raise InvalidConfig(
                    f"Cannot set the log level of {name} to {value} as it is not a supported "
                    f"log level. Valid log levels are {VALID_LEVELS}"
                )
        elif op == DELETE:
            if not _exists(name):
                raise InvalidConfig(f"Logger {name} does not exist!")
            if name == ROOT:
                raise InvalidLoggerRequest(
                    f"Removing the log level of the {ROOT} logger is not allowed"
                )
        elif op in (2, 3):
            verb = "APPEND" if op == 2 else "SUBTRACT"
            raise InvalidLoggerRequest(
                f"{verb} operation is not allowed for the BROKER_LOGGER resource"
            )
        else:
            raise InvalidLoggerRequest(
                f"Unknown operation type {op} is not allowed for the BROKER_LOGGER resource"
            )
    if validate_only:
        return
    log = logging.getLogger(__name__)
    for name, op, value in ops:
        if op == SET:
            assert value is not None
            _logger(name).setLevel(_TO_PYTHON[value])
            log.warning("Updated the log level of %s to %s", name, value)
        else:
            _logger(name).setLevel(logging.NOTSET)  # inherit again
            log.warning("Unset the log level of %s", name)
