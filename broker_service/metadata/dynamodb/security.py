"""DynamoDB: SCRAM credentials, ACLs and client quotas."""

from __future__ import annotations

import json

from broker_service.metadata.dynamodb.base import DynamoBase, _item, _key
from broker_service.metadata.records import AclBinding, QuotaEntity, ScramCredential
from broker_service.metadata.store import SecurityStore


class DynamoSecurity(DynamoBase, SecurityStore):
    """SCRAM credentials (``SCRAM/<user>#<mechanism>``), ACLs (``ACLS/<binding as JSON>``),
    client quotas (``QUOTAS/<entity as JSON>``)."""

    def put_scram_credential(self, user: str, credential: ScramCredential) -> None:
        c = credential
        self._put(
            {
                **_key("SCRAM", f"{user}#{c.mechanism}"),
                **_item(
                    kind="scram",
                    user=user,
                    mechanism=c.mechanism,
                    salt=c.salt,
                    stored_key=c.stored_key,
                    server_key=c.server_key,
                    iterations=c.iterations,
                ),
            }
        )

    def delete_scram_credential(self, user: str, mechanism: str) -> bool:
        resp = self._retrying(
            self._c.delete_item,
            TableName=self.table,
            Key=_key("SCRAM", f"{user}#{mechanism}"),
            ReturnValues="ALL_OLD",
        )
        return bool(resp.get("Attributes"))

    def scram_credentials(self, user: str | None = None) -> list[tuple[str, ScramCredential]]:
        items = self._query("SCRAM", None if user is None else f"{user}#")
        out = [
            (
                str(a["user"]),
                ScramCredential(
                    str(a["mechanism"]),
                    a["salt"],
                    a["stored_key"],
                    a["server_key"],
                    int(a["iterations"]),
                ),
            )
            for a in items
            if user is None or a["user"] == user
        ]
        return sorted(out, key=lambda uc: (uc[0], uc[1].mechanism))

    @staticmethod
    def _acl_sk(a: AclBinding) -> str:
        return json.dumps(
            [a.resource_type, a.resource_name, a.pattern_type, a.principal, a.host,
             a.operation, a.permission_type]
        )  # fmt: skip

    def create_acls(self, acls: list[AclBinding]) -> None:
        self._batch_write(
            [
                {"PutRequest": {"Item": {**_key("ACLS", self._acl_sk(a)), **_item(kind="acl")}}}
                for a in dict.fromkeys(acls)
            ]
        )

    def delete_acls(self, acls: list[AclBinding]) -> None:
        self._batch_delete(_key("ACLS", self._acl_sk(a)) for a in acls)

    def acls(self) -> list[AclBinding]:
        out = [AclBinding(*json.loads(str(a["sk"]))) for a in self._query("ACLS")]
        return sorted(out, key=self._acl_sk)

    def alter_client_quota(
        self, entity: QuotaEntity, set_values: dict[str, float], remove: list[str]
    ) -> None:
        sk = json.dumps([list(e) for e in sorted(entity)])
        current = self._get("QUOTAS", sk)
        values = {k: float(v) for k, v in json.loads(current["values"]).items()} if current else {}
        for k in remove:
            values.pop(k, None)
        values.update({k: float(v) for k, v in set_values.items()})
        if values:
            self._put({**_key("QUOTAS", sk), **_item(kind="quota", values=json.dumps(values))})
        else:
            self._retrying(self._c.delete_item, TableName=self.table, Key=_key("QUOTAS", sk))

    def client_quotas(self) -> list[tuple[QuotaEntity, dict[str, float]]]:
        out = []
        for a in self._query("QUOTAS"):
            entity = tuple((t, n) for t, n in json.loads(str(a["sk"])))
            values = {k: float(v) for k, v in json.loads(a["values"]).items()}
            out.append((entity, values))
        return sorted(out, key=lambda ev: json.dumps(ev[0]))
