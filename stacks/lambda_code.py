"""How the control-plane functions are packaged, without Docker.

- Code: one asset with the repo's ``broker_service/`` and ``functions/`` packages; a handler is
  ``functions.<name>.handler.handler``.
- Dependencies: one layer with what ``broker_service`` and the handlers import beyond the Lambda
  runtime (which has boto3): Powertools, pydantic, pydantic-settings, scramp (SCRAM client)
  and the compiled kio, crc32c and cramjam. The layer is built by ``pip install --platform
  manylinux_2_28_x86_64 --only-binary=:all:`` on the deploying machine (any OS: pip fetches
  Linux wheels), cached in ``.cdk-cache/`` so later synths are offline. If pip cannot run, CDK
  falls back to the same pip command in the SAM build image (needs Docker).
  ``-c lambda_deps_dir=DIR`` uses a prebuilt layer directory instead (a ``python/`` folder
  inside).
"""

from __future__ import annotations

import hashlib
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path
from typing import Any

import aws_cdk as cdk
import jsii
from aws_cdk import aws_lambda as lambda_

REPO_ROOT = Path(__file__).resolve().parent.parent
CACHE_DIR = REPO_ROOT / ".cdk-cache" / "lambda-deps"
RUNTIME = lambda_.Runtime.PYTHON_3_14
RUNTIME_VERSION = "3.14"
# Lambda's Amazon Linux 2023 has glibc 2.34: manylinux_2_28 wheels (kio) run there.
PLATFORMS = ("manylinux_2_28_x86_64", "manylinux2014_x86_64")

# Import-time needs of broker_service (config, metadata, storage, control) and the handlers.
LAYER_REQUIREMENTS = (
    "aws-lambda-powertools>=3.37",
    "pydantic>=2.7",
    "pydantic-settings>=2.3",
    "kio>=0.6.5",
    "crc32c>=2.4",
    "cramjam>=2.8",
    "scramp>=1.4",  # SCRAM client: balancer / autoscaler authenticate to the SASL listener
)

# Everything in the repo except the two packages the functions import.
CODE_EXCLUDES = [
    "*",
    ".*",  # "*" does not match dot files: .venv, .git, .cdk-cache...
    "!broker_service",
    "!broker_service/**",
    "!functions",
    "!functions/**",
    "**/__pycache__",
    "**/*.pyc",
]


def pip_command(target: str) -> list[str]:
    return [
        "-m",
        "pip",
        "install",
        "--quiet",
        "--disable-pip-version-check",
        "--no-compile",
        "--target",
        target,
        *(arg for p in PLATFORMS for arg in ("--platform", p)),
        "--implementation",
        "cp",
        "--python-version",
        RUNTIME_VERSION,
        "--only-binary=:all:",
        *LAYER_REQUIREMENTS,
    ]


def requirements_key() -> str:
    spec = "\n".join([*PLATFORMS, RUNTIME_VERSION, *LAYER_REQUIREMENTS])
    return hashlib.sha256(spec.encode()).hexdigest()[:16]


def build_layer_dir(cache_dir: Path = CACHE_DIR, timeout_s: float = 600) -> Path:
    """The layer's directory (``<dir>/python/...``), built with pip once per requirements set."""
    done = cache_dir / requirements_key()
    if (done / "python").is_dir():
        return done
    cache_dir.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(dir=cache_dir) as tmp:
        subprocess.run(
            [sys.executable, *pip_command(str(Path(tmp) / "python"))],
            check=True,
            timeout=timeout_s,
        )
        done.mkdir(exist_ok=True)
        Path(tmp, "python").rename(done / "python")
    return done


@jsii.implements(cdk.ILocalBundling)
class PipLayerBundler:
    """CDK local bundling: copy the cached pip-built layer into the asset's output dir."""

    def try_bundle(self, output_dir: str, *args: Any, **kwargs: Any) -> bool:
        try:
            layer = build_layer_dir()
        except (OSError, subprocess.SubprocessError) as exc:
            print(f"pip could not build the Lambda layer ({exc}); trying Docker", file=sys.stderr)
            return False
        shutil.copytree(layer, output_dir, dirs_exist_ok=True)
        return True


def code_asset() -> lambda_.Code:
    return lambda_.Code.from_asset(
        str(REPO_ROOT), exclude=CODE_EXCLUDES, ignore_mode=cdk.IgnoreMode.GLOB
    )


def dependencies_code(prebuilt_dir: str | None) -> lambda_.Code:
    if prebuilt_dir:
        return lambda_.Code.from_asset(prebuilt_dir)
    image = cdk.DockerImage.from_registry(f"public.ecr.aws/sam/build-python{RUNTIME_VERSION}")
    return lambda_.Code.from_asset(
        str(REPO_ROOT / "stacks"),  # the source does not matter: the bundler builds the layer
        asset_hash=requirements_key(),
        asset_hash_type=cdk.AssetHashType.CUSTOM,
        bundling=cdk.BundlingOptions(
            image=image,
            local=PipLayerBundler(),
            command=["bash", "-c", "python " + " ".join(pip_command("/asset-output/python"))],
        ),
    )
