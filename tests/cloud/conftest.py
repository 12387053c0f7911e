"""Cloud-mode fixtures: a real moto server on 127.0.0.1 (S3, DynamoDB, ... over HTTP)."""

from __future__ import annotations

import functools
import os
import uuid
from typing import Any

import boto3
import pytest

REGION = "us-east-1"


@pytest.fixture
def aws_env(moto_endpoint: str, monkeypatch: pytest.MonkeyPatch) -> str:
    """This test's AWS settings point at moto server: dummy credentials, a region, and the
    standard AWS_ENDPOINT_URL_S3, which boto3 honours natively (restored after the test)."""
    for name in ("AWS_PROFILE", "AWS_SESSION_TOKEN", "AWS_ENDPOINT_URL"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", "testing")
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "testing")
    monkeypatch.setenv("AWS_DEFAULT_REGION", REGION)
    monkeypatch.setenv("AWS_REGION", REGION)
    monkeypatch.setenv("AWS_CONFIG_FILE", os.devnull)
    monkeypatch.setenv("AWS_SHARED_CREDENTIALS_FILE", os.devnull)
    monkeypatch.setenv("AWS_EC2_METADATA_DISABLED", "true")
    monkeypatch.setenv("AWS_ENDPOINT_URL_S3", moto_endpoint)
    return moto_endpoint


@functools.cache
def s3_client(endpoint: str) -> Any:
    """A plain boto3 client (for looking behind the store's back); one per endpoint."""
    return boto3.session.Session(
        aws_access_key_id="testing", aws_secret_access_key="testing", region_name=REGION
    ).client("s3", endpoint_url=endpoint)


@pytest.fixture
def s3_bucket(aws_env: str) -> str:
    """A fresh, empty bucket of this test's own (with ``aws_env`` set)."""
    name = f"test-{uuid.uuid4().hex[:16]}"
    s3_client(aws_env).create_bucket(Bucket=name)
    return name
