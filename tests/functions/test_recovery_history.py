"""What a recovery check costs on DynamoDB (moto) does not grow with the fenced brokers the
cluster has seen: the same calls at 0 and 60 fenced rows (it was one Query per fenced row,
plus one per live broker). bench/recovery_history.py measures the time as well."""

from __future__ import annotations

import time
from collections import Counter

from broker_service.control.recovery import recover
from broker_service.metadata.dynamodb import DynamoDbMetadataStore

from .conftest import ControlEnv


def _calls_of_one_check(env: ControlEnv, fenced: int) -> Counter[str]:
    session = env.session
    calls: Counter[str] = Counter()
    meta = DynamoDbMetadataStore(f"{env.table}-{fenced}", client=env.client("dynamodb"))
    meta.create_table()
    for i in range(fenced):
        b = meta.register_broker(1000 + i, "10.0.0.9", 9092, None, 1)
        meta.fence_broker(b.broker_id, b.epoch)
    for bid in (1, 2, 3):
        meta.register_broker(bid, "10.0.0.1", 9092, None, 600_000)
    for t in range(5):
        meta.create_topic(f"t{t}", 4, {}, leader_ids=[1 + t % 3])
    recover(meta, int(time.time() * 1000))  # anything left to do is done here
    counted = env.client("dynamodb")
    counted.meta.events.register(
        "before-call.dynamodb", lambda model, **_: calls.update([model.name])
    )
    recover(DynamoDbMetadataStore(meta.table, client=counted), int(time.time() * 1000))
    del session
    return calls


def test_recovery_check_costs_the_same_whatever_the_history(control_env: ControlEnv) -> None:
    without, with_history = (
        _calls_of_one_check(control_env, 0),
        _calls_of_one_check(control_env, 60),
    )
    assert without == Counter({"Query": 1}), without  # no fenced broker: the brokers only
    assert with_history == Counter({"Query": 2}), with_history  # + one read of the placement
