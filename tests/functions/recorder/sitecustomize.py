"""Loaded by Python at start-up when this directory is on PYTHONPATH: with RECORD_AWS_CALLS
set, every botocore session of the process appends each AWS call it makes to that file, as
``service:Operation:<transaction item kinds>`` (tests/functions/test_iam_recorded_calls.py)."""

import os

_OUT = os.environ.get("RECORD_AWS_CALLS")
if _OUT:
    import botocore.session as _session

    _init = _session.Session.__init__

    def _recording_init(self, *args, **kwargs):  # type: ignore[no-untyped-def]
        _init(self, *args, **kwargs)

        def record(model, params, **_):  # type: ignore[no-untyped-def]
            kinds = ""
            if model.name in ("TransactWriteItems", "TransactGetItems"):
                kinds = ",".join(sorted({next(iter(i)) for i in params.get("TransactItems", [])}))
            with open(_OUT, "a") as f:
                f.write(f"{model.service_model.service_name}:{model.name}:{kinds}\n")

        self.register("before-parameter-build", record)

    _session.Session.__init__ = _recording_init
