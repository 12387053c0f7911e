"""Every AWS call a process makes through botocore, whatever session makes it (boto3's
default session, or a session of its own such as the S3 object store's): botocore sessions
created after ``install`` register a ``before-parameter-build`` hook that reports each call
as ``service:Operation:<transaction item kinds>`` (the item kinds of a TransactWriteItems /
TransactGetItems, which IAM authorizes one by one as PutItem, UpdateItem, ...).

Used in the broker processes by ``sitecustomize.py`` (this directory on PYTHONPATH) and in
the test process by tests/functions/test_iam_recorded_calls.py."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import botocore.session

Sink = Callable[[str], None]


def call_line(model: Any, params: dict[str, Any]) -> str:
    kinds = ""
    if model.name in ("TransactWriteItems", "TransactGetItems"):
        kinds = ",".join(sorted({next(iter(i)) for i in params.get("TransactItems", [])}))
    return f"{model.service_model.service_name}:{model.name}:{kinds}"


def recording_init(
    sink: Sink, handlers: dict[str, Callable[..., Any]] | None = None
) -> Callable[..., None]:
    """A replacement for ``botocore.session.Session.__init__`` that adds the recording hook
    (and ``handlers``: event name -> handler) to every new session."""
    original = botocore.session.Session.__init__

    def init(self: botocore.session.Session, *args: Any, **kwargs: Any) -> None:
        original(self, *args, **kwargs)

        def record(model: Any, params: dict[str, Any], **_: Any) -> None:
            sink(call_line(model, params))

        self.register("before-parameter-build", record)
        for event, handler in (handlers or {}).items():
            self.register(event, handler)

    return init
