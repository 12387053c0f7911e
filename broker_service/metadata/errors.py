"""Errors of the metadata store (every backend raises these, never its own).

Those that always mean one Kafka error inherit its class too (protocol/errors.py), so code
that answers clients may use ``exc.code``; the others (a lost compare-and-set, a fenced
broker) mean different things to different requests and are mapped where they are caught.
"""

from __future__ import annotations

from broker_service.protocol import errors as kafka


class MetadataError(Exception):
    pass


class TopicAlreadyExists(MetadataError, kafka.TopicAlreadyExists):
    pass


class UnknownTopic(MetadataError, kafka.UnknownTopicOrPartition):
    pass


class ObjectAlreadyCommitted(MetadataError):
    """The object key is committed already (a retried commit whose first answer was lost)."""


class CommitDeadlinePassed(MetadataError, kafka.RequestTimedOut):
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
