"""`npx cdk synth` with the CLI pinned in package.json, and the pip-built Lambda layer.

Both are slow (npm ci, pip download): marked slow and bounded in time.
"""

from __future__ import annotations

import json
import shutil
import subprocess
from pathlib import Path

import pytest

from stacks import lambda_code
from tests.stacks.conftest import stub_layer_dir
from tests.support.broker import REPO


@pytest.mark.slow
def test_npx_cdk_synth_with_the_pinned_cli(tmp_path: Path) -> None:
    npm, npx = shutil.which("npm"), shutil.which("npx")
    assert npm and npx, "node/npm is needed for the CDK CLI (apt-get install nodejs npm)"
    if not (REPO / "node_modules" / "aws-cdk").is_dir():
        subprocess.run([npm, "ci", "--no-audit", "--no-fund"], cwd=REPO, check=True, timeout=300)
    pinned = json.loads((REPO / "package.json").read_text())["devDependencies"]["aws-cdk"]
    version = subprocess.run(
        [npx, "--no-install", "cdk", "--version"],
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=120,
        check=True,
    ).stdout
    assert version.startswith(pinned)
    out = tmp_path / "cdk.out"
    proc = subprocess.run(
        [
            npx,
            "--no-install",
            "cdk",
            "synth",
            "--quiet",
            "--no-notices",
            "-c",
            "tenant=acme",
            "-c",
            f"lambda_deps_dir={stub_layer_dir(tmp_path)}",
            "-o",
            str(out),
        ],
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=240,
    )
    assert proc.returncode == 0, proc.stdout + proc.stderr
    names = sorted(p.name for p in out.glob("*.template.json"))
    assert names == [
        "Kafka-acme-Brokers.template.json",
        "Kafka-acme-Control.template.json",
        "Kafka-acme-Storage.template.json",
    ]


@pytest.mark.slow
def test_pip_builds_the_lambda_layer_for_linux(tmp_path: Path) -> None:
    layer = lambda_code.build_layer_dir(cache_dir=tmp_path, timeout_s=400) / "python"
    for package in (
        "aws_lambda_powertools",
        "pydantic",
        "pydantic_settings",
        "kio",
        "crc32c",
        "cramjam",
        "scramp",  # the SCRAM client of the balancer / autoscaler
    ):
        assert (layer / package).is_dir() or list(layer.glob(f"{package}*")), package
    tag = f"cpython-{lambda_code.RUNTIME_VERSION.replace('.', '')}-x86_64-linux-gnu.so"
    assert list((layer / "kio").glob(f"*{tag}")), "kio's native module for Lambda's Python"
    assert list(layer.glob(f"pydantic_core/*{tag}"))
    # Cached: a second call reuses the directory without pip.
    assert lambda_code.build_layer_dir(cache_dir=tmp_path, timeout_s=1) == layer.parent
