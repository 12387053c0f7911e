"""The benchmark suite (bench/suite.py) must keep working: every scenario script accepts the
arguments the suite gives it, and one real, cheap scenario runs end to end through the suite
(real brokers started by the script, stopped by PID) into tables, JSON and PNG plots."""

from __future__ import annotations

import importlib
import importlib.util
import json
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from types import ModuleType

import pytest

REPO = Path(__file__).resolve().parents[2]
BENCH = REPO / "bench"


def _load_suite() -> ModuleType:
    """bench/suite.py (standard library only at import time) for the scenario names."""
    spec = importlib.util.spec_from_file_location("bench_suite", BENCH / "suite.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module  # dataclasses resolve their module by name
    spec.loader.exec_module(module)
    return module


SCENARIOS = {s.name: s for s in _load_suite().SCENARIOS}


@pytest.fixture(scope="module")
def bench_path() -> Iterator[None]:
    sys.path.insert(0, str(BENCH))  # the scripts import each other as top-level modules
    try:
        yield
    finally:
        sys.path.remove(str(BENCH))


def _needs_tansu(module: ModuleType, args: list[str]) -> bool:
    """Whether these arguments run Tansu (--brokers, else the script's default brokers)."""
    if "--brokers" in args:
        return "tansu" in args[args.index("--brokers") + 1].split(",")
    return "tansu" in getattr(module, "BROKERS", ())


@pytest.mark.usefixtures("bench_path")
@pytest.mark.parametrize("quick", [False, True], ids=["full", "quick"])
@pytest.mark.parametrize("name", list(SCENARIOS))
def test_every_scenario_script_accepts_the_suites_arguments(
    name: str, quick: bool, request: pytest.FixtureRequest
) -> None:
    scenario = SCENARIOS[name]
    if not scenario.available():
        pytest.skip(f"{name}: {scenario.missing()}")
    module = importlib.import_module(scenario.script.removesuffix(".py"))
    args = [*(scenario.quick if quick else scenario.full), "--out", "/tmp/x.json",
            "--timeout", "60"]
    if _needs_tansu(module, args):
        request.getfixturevalue("tansu_binary")  # skips, naming the extra, when missing
    parsed = module.parse_args(args)  # argparse exits (SystemExit) on a bad argument
    settings = parsed[0] if isinstance(parsed, tuple) else parsed
    assert str(settings.out) == "/tmp/x.json", scenario.name


def test_dry_run_lists_every_scenario_and_runs_nothing(tmp_path: Path) -> None:
    done = subprocess.run([sys.executable, str(BENCH / "suite.py"), "--dry-run", "--quick",
                           "--results-dir", str(tmp_path)], capture_output=True, text=True,
                          timeout=60, cwd=REPO)
    assert done.returncode == 0, done.stderr
    for name in ("embedded", "s3", "wal", "reassign", "failover", "scaleout"):
        assert name in done.stdout
    assert list(tmp_path.iterdir()) == []


@pytest.mark.heavy  # about 12 s: two brokers, fills, four moves
@pytest.mark.usefixtures("matplotlib_installed")
def test_quick_reassign_scenario_runs_through_the_suite(tmp_path: Path) -> None:
    done = subprocess.run([sys.executable, str(BENCH / "suite.py"), "--quick", "--only",
                           "reassign", "--results-dir", str(tmp_path)],
                          capture_output=True, text=True, timeout=120, cwd=REPO)
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    (run_dir,) = tmp_path.iterdir()
    report = json.loads((run_dir / "suite.json").read_text())
    (outcome,) = report["scenarios"]
    assert outcome["exit_code"] == 0 and not outcome["timed_out"]
    sizes = sorted(r["mb"] for r in report["reassign"])
    assert [round(mb) for mb in sizes] == [5, 20]
    assert all(r["ok"] == r["moves"] > 0 for r in report["reassign"])
    assert all(0 < r["reassign_median_s"] < 15 for r in report["reassign"])
    assert (run_dir / "reassign_vs_size.png").stat().st_size > 1000
    assert "reassignment vs. partition size" in (run_dir / "suite.md").read_text()


@pytest.mark.heavy  # about 30 s: ours and Tansu, one quick round each
@pytest.mark.usefixtures("matplotlib_installed")
def test_quick_embedded_scenario_against_tansu_runs_through_the_suite(
    tmp_path: Path, tansu_binary: Path
) -> None:
    done = subprocess.run([sys.executable, str(BENCH / "suite.py"), "--quick", "--only",
                           "embedded", "--results-dir", str(tmp_path)],
                          capture_output=True, text=True, timeout=240, cwd=REPO)
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    (run_dir,) = tmp_path.iterdir()
    report = json.loads((run_dir / "suite.json").read_text())
    (outcome,) = report["scenarios"]
    assert outcome["exit_code"] == 0 and not outcome["timed_out"]
    rows = [r for r in report["ratios"] if r["setup"] == "embedded"]
    assert rows and all(r["ours"] is not None and r["tansu"] is not None for r in rows), rows
    assert (run_dir / "throughput_vs_tansu.png").stat().st_size > 1000
