"""DynamoDB: consumer groups (a registry item per group) and offset items."""

from __future__ import annotations

import logging
from typing import Any

from botocore.exceptions import ClientError

from broker_service.metadata.dynamodb.base import (
    MAX_TX_ITEMS,
    DynamoBase,
    Item,
    _chunks,
    _error_code,
    _item,
    _key,
    _now_ms,
)
from broker_service.metadata.errors import MetadataError
from broker_service.metadata.records import CommittedOffset, GroupRecord
from broker_service.metadata.store import GroupStore

log = logging.getLogger(__name__)


class DynamoGroups(DynamoBase, GroupStore):
    """Items ``GROUPS/<group>`` and ``GROUP#<group>/<topic>#<partition>``."""

    # Registry item (GROUPS, <group>): the saved GroupRecord (saved=true) and, for every
    # group with offsets, the string set of topics it has offsets for plus a version that
    # each offset commit bumps. Offset items (GROUP#<group>, "<topic>#<partition>").
    def save_group(self, group: GroupRecord) -> None:
        self._update(
            "GROUPS",
            group.group_id,
            "SET #k = :k, #g = :g, #saved = :t, #gt = :gt, #pt = :pt",
            ExpressionAttributeNames={
                "#k": "kind",
                "#g": "group_id",
                "#saved": "saved",
                "#gt": "group_type",
                "#pt": "protocol_type",
            },
            ExpressionAttributeValues=_item(
                **{
                    ":k": "group",
                    ":g": group.group_id,
                    ":t": True,
                    ":gt": group.group_type,
                    ":pt": group.protocol_type,
                }
            ),
        )

    def groups(self) -> list[GroupRecord]:
        out: list[GroupRecord] = []
        for a in self._query("GROUPS"):
            if a.get("saved"):
                out.append(GroupRecord(a["sk"], a["group_type"], a["protocol_type"]))
            elif a.get("topics"):  # a group known only by its committed offsets
                out.append(GroupRecord(a["sk"], "classic", ""))
        return sorted(out, key=lambda g: g.group_id)

    def _group_version(self, group_id: str) -> int | None:
        a = self._get("GROUPS", group_id)
        return None if a is None else int(a.get("version", 0))

    def _version_condition(self, version: int | None) -> dict[str, Any]:
        if not version:
            return {
                "ConditionExpression": "attribute_not_exists(#v)",
                "ExpressionAttributeNames": {"#v": "version"},
            }
        return {
            "ConditionExpression": "#v = :v",
            "ExpressionAttributeNames": {"#v": "version"},
            "ExpressionAttributeValues": {":v": {"N": str(version)}},
        }

    def delete_group(self, group_id: str) -> None:
        for _ in range(self._attempts):
            version = self._group_version(group_id)
            self._batch_delete(self._query_raw(f"GROUP#{group_id}", keys_only=True))
            if version is None:
                return
            try:  # only if no offset commit slipped in since we read the version
                self._retrying(
                    self._c.delete_item,
                    TableName=self.table,
                    Key=_key("GROUPS", group_id),
                    **self._version_condition(version),
                )
                return
            except ClientError as e:
                if _error_code(e) != "ConditionalCheckFailedException":
                    raise
        raise MetadataError(f"could not delete group {group_id}: offsets keep being committed")

    def commit_offsets(self, group_id: str, offsets: list[CommittedOffset]) -> None:
        latest = {(o.topic, o.partition): o for o in offsets}  # last one wins, like SQLite
        if not latest:
            return
        now = _now_ms()
        registry = {
            "Update": {
                "TableName": self.table,
                "Key": _key("GROUPS", group_id),
                "UpdateExpression": "SET #k = :k ADD #topics :topics, #v :one",
                "ExpressionAttributeNames": {"#k": "kind", "#topics": "topics", "#v": "version"},
                "ExpressionAttributeValues": _item(
                    **{":k": "group", ":topics": {t for t, _ in latest}, ":one": 1}
                ),
            }
        }
        puts: list[Item] = [
            {
                "Put": {
                    "TableName": self.table,
                    "Item": {
                        **_key(f"GROUP#{group_id}", f"{o.topic}#{o.partition}"),
                        **_item(
                            kind="offset",
                            topic=o.topic,
                            partition=o.partition,
                            offset=o.offset,
                            leader_epoch=o.leader_epoch,
                            metadata=o.metadata,
                            commit_ms=o.commit_ms or now,
                        ),
                    },
                }
            }
            for o in latest.values()
        ]
        # One transaction up to 99 partitions; beyond, transactions of 100 (each atomic, the
        # registry first so its topic set always covers every stored offset).
        batches = [[registry, *puts[: MAX_TX_ITEMS - 1]]]
        batches += [list(c) for c in _chunks(puts[MAX_TX_ITEMS - 1 :], MAX_TX_ITEMS)]
        for batch in batches:
            self._retrying(self._c.transact_write_items, TransactItems=batch)

    def committed_offsets(self, group_id: str) -> list[CommittedOffset]:
        out = [
            CommittedOffset(
                a["topic"],
                a["partition"],
                a["offset"],
                a["leader_epoch"],
                a.get("metadata"),
                a["commit_ms"],
            )
            for a in self._query(f"GROUP#{group_id}")
        ]
        return sorted(out, key=lambda o: (o.topic, o.partition))

    def _topic_offset_keys(self, group_id: str, topic: str) -> list[Item]:
        return [
            _key(f"GROUP#{group_id}", f"{topic}#{a['partition']}")
            for a in self._query(f"GROUP#{group_id}", f"{topic}#")
            if a["topic"] == topic
        ]

    def _forget_topic(self, group_id: str, topic: str, version: int | None) -> bool:
        """Drop ``topic`` from the group's topic set unless offsets were committed since."""
        if version is None:
            return True
        try:
            cond = self._version_condition(version)
            self._retrying(
                self._c.update_item,
                TableName=self.table,
                Key=_key("GROUPS", group_id),
                UpdateExpression="DELETE #topics :t",
                ConditionExpression=cond["ConditionExpression"],
                ExpressionAttributeNames={**cond["ExpressionAttributeNames"], "#topics": "topics"},
                ExpressionAttributeValues={
                    **cond.get("ExpressionAttributeValues", {}),
                    ":t": {"SS": [topic]},
                },
            )
            return True
        except ClientError as e:
            if _error_code(e) != "ConditionalCheckFailedException":
                raise
            return False

    def delete_offsets(self, group_id: str, partitions: list[tuple[str, int]]) -> None:
        if not partitions:
            return
        version = self._group_version(group_id)
        self._batch_delete(_key(f"GROUP#{group_id}", f"{t}#{p}") for t, p in partitions)
        for topic in sorted({t for t, _ in partitions}):
            if not self._topic_offset_keys(group_id, topic):
                self._forget_topic(group_id, topic, version)  # best effort: a superset is fine

    def _delete_topic_offsets(self, topic: str) -> None:
        groups = self._query(
            "GROUPS",
            FilterExpression="contains(#topics, :t)",
            ExpressionAttributeNames={"#topics": "topics"},
            ExpressionAttributeValues={":t": {"S": topic}},
        )
        for g in groups:
            group_id = str(g["sk"])
            for _ in range(self._attempts):
                version = self._group_version(group_id)
                self._batch_delete(self._topic_offset_keys(group_id, topic))
                if self._forget_topic(group_id, topic, version):
                    break
            else:
                log.warning("group %s keeps committing offsets of deleted %s", group_id, topic)
