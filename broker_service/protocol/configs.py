"""Topic names and topic configs: what Kafka accepts, and the defaults it reports."""

from __future__ import annotations

import re

MAX_TOPIC_NAME = 249
_LEGAL = re.compile(r"[a-zA-Z0-9._-]+")

# name -> (default, documentation)
TOPIC_CONFIG_DEFAULTS: dict[str, str] = {
    "cleanup.policy": "delete",
    "compression.type": "producer",
    "delete.retention.ms": "86400000",
    "max.message.bytes": "1048588",
    "message.timestamp.type": "CreateTime",
    "min.insync.replicas": "1",
    "retention.bytes": "-1",
    "retention.ms": "604800000",
    "segment.bytes": "1073741824",
    "segment.ms": "604800000",
}


class InvalidTopic(ValueError):
    pass


class InvalidConfig(ValueError):
    pass


def validate_topic_name(name: str | None) -> str:
    if not name:
        raise InvalidTopic("topic name is empty")
    if name in (".", ".."):
        raise InvalidTopic(f"topic name cannot be {name!r}")
    if len(name) > MAX_TOPIC_NAME:
        raise InvalidTopic(f"topic name is longer than {MAX_TOPIC_NAME} characters")
    if not _LEGAL.fullmatch(name):
        raise InvalidTopic(
            f"topic name {name!r} has characters other than ASCII letters, digits, '.', '_', '-'"
        )
    return name


def validate_configs(configs: dict[str, str | None]) -> dict[str, str]:
    out: dict[str, str] = {}
    for k, v in configs.items():
        if k not in TOPIC_CONFIG_DEFAULTS:
            raise InvalidConfig(f"unknown topic config {k!r}")
        if v is None:
            raise InvalidConfig(f"config {k!r} has no value")
        if k in ("max.message.bytes", "retention.ms", "retention.bytes", "segment.bytes"):
            try:
                int(v)
            except ValueError:
                raise InvalidConfig(f"config {k!r} must be an integer, got {v!r}") from None
        if k == "cleanup.policy" and not set(v.split(",")) <= {"delete", "compact"}:
            raise InvalidConfig(f"cleanup.policy must be delete and/or compact, got {v!r}")
        out[k] = v
    return out


def effective(configs: dict[str, str], name: str) -> str:
    return configs.get(name, TOPIC_CONFIG_DEFAULTS[name])
