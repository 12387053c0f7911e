"""Errors of the metadata store (every backend raises these, never its own)."""

from __future__ import annotations


class MetadataError(Exception):
    pass


class TopicAlreadyExists(MetadataError):
    pass


class UnknownTopic(MetadataError):
    pass


class ObjectAlreadyCommitted(MetadataError):
    """The object key is committed already (a retried commit whose first answer was lost)."""


class CommitDeadlinePassed(MetadataError):
    """A commit given a deadline was refused because the deadline passed before it was
    written (the producers waiting for it were answered REQUEST_TIMED_OUT)."""


class BrokerFenced(MetadataError):
    """Refused because the broker's epoch is stale or its state is FENCED (a fenced broker
    must stop serving; it may re-register to get a new epoch)."""


class UnknownBroker(MetadataError):
    """No broker with that id ever registered."""


class ConcurrentUpdate(MetadataError):
    """A compare-and-set lost: the record no longer has the expected epoch / leader (someone
    else fenced the broker or moved the partition first). Re-read and decide again."""
