"""Loaded by Python at start-up when this directory is on PYTHONPATH: with RECORD_AWS_CALLS
set, every botocore session of the process appends each AWS call it makes to that file, one
``service:Operation:<transaction item kinds>`` line each (aws_call_recorder.py;
tests/functions/test_iam_recorded_calls.py)."""

import os

_OUT = os.environ.get("RECORD_AWS_CALLS")
if _OUT:
    import botocore.session
    from aws_call_recorder import recording_init

    def _append(line: str) -> None:
        with open(_OUT, "a") as f:  # one short write per line: several processes append
            f.write(line + "\n")

    botocore.session.Session.__init__ = recording_init(_append)  # type: ignore[method-assign]
