"""Metadata v12 naming topics by id (issue 17, item 7): the Java AdminClient's
``describeTopics(TopicCollection.ofTopicIds(...))`` sends the id with an empty name;
kafka-python's ``describe_topics([uuid])`` sends it with a null name. Both are answered for
that id; an unknown id gets UNKNOWN_TOPIC_ID and nothing is auto-created. Both backends."""

from __future__ import annotations

import uuid

from confluent_kafka.admin import AdminClient, NewTopic
from kafka.admin import KafkaAdminClient

from tests.integration.surface import Surface, kio, surface_fixture, unique

surface = surface_fixture()
UNKNOWN_TOPIC_ID = 100


def _create(surface: Surface, name: str) -> uuid.UUID:
    admin = AdminClient({"bootstrap.servers": surface.bootstrap})
    admin.create_topics([NewTopic(name, 2, 1)])[name].result(30)
    md = surface.call(kio(3, 12, "MetadataRequest", allow_auto_topic_creation=False,
                          include_topic_authorized_operations=False,
                          topics=(kio(3, 12, "MetadataRequestTopic", name=name, topic_id=None),)))
    return md.topics[0].topic_id  # type: ignore[no-any-return]


def test_metadata_by_topic_id_raw(surface: Surface) -> None:
    name = unique("by-id")
    topic_id = _create(surface, name)
    stranger = uuid.uuid4()
    for empty in ("", None):  # Java sends "", others null
        md = surface.call(kio(3, 12, "MetadataRequest", allow_auto_topic_creation=True,
                              include_topic_authorized_operations=False, topics=(
            kio(3, 12, "MetadataRequestTopic", name=empty, topic_id=topic_id),
            kio(3, 12, "MetadataRequestTopic", name=empty, topic_id=stranger),
        )))  # fmt: skip
        found, unknown = md.topics
        assert (int(found.error_code), found.name, found.topic_id) == (0, name, topic_id)
        assert [p.partition_index for p in found.partitions] == [0, 1]
        assert (int(unknown.error_code), unknown.topic_id) == (UNKNOWN_TOPIC_ID, stranger)
        assert unknown.name is None
    listed = surface.call(kio(3, 12, "MetadataRequest", topics=None,
                              allow_auto_topic_creation=False,
                              include_topic_authorized_operations=False))  # fmt: skip
    assert "" not in {t.name for t in listed.topics}  # nothing created from an empty name


def test_describe_topics_by_id_kafka_python(surface: Surface) -> None:
    name = unique("by-id-kp")
    topic_id = _create(surface, name)
    admin = KafkaAdminClient(bootstrap_servers=surface.bootstrap, request_timeout_ms=30000)
    try:
        (t,) = admin.describe_topics([topic_id])
        assert (t["error_code"], t["name"], str(t["topic_id"])) == (0, name, str(topic_id))
        assert len(t["partitions"]) == 2
        both = admin.describe_topics([topic_id, name])
        assert [x["name"] for x in both] == [name, name]
    finally:
        admin.close()
