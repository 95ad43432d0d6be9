"""bench/gpu_run.sh --dry-run: the one-call GPU run builds every command, parses each with the CLI's parser and
writes its plan, on a machine without a GPU (no model runs)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]


def test_gpu_run_dry_run_writes_its_plan(tmp_path: Path) -> None:
    env = {**os.environ, "OUT": str(tmp_path), "PYTHON": sys.executable, "PYTHONPATH": str(ROOT)}
    done = subprocess.run(
        ["bash", str(ROOT / "bench" / "gpu_run.sh"), "--dry-run"], cwd=ROOT, env=env, capture_output=True,
        text=True, timeout=240,
    )  # fmt: skip
    assert done.returncode == 0, done.stdout[-2000:] + done.stderr[-2000:]
    plan = json.loads((tmp_path / "bench" / "results" / "capabilities_gpu_plan.json").read_text())
    names = {c["name"] for c in plan["checks"]}
    assert {
        "entropy_fused",
        "locality_sweep",
        "decode_greedy_strategies",
        "sae_training",
        "circuit_run",
    } <= names
    assert all(c["parses"] for c in plan["checks"])
    summary = json.loads((tmp_path / "bench" / "results" / "gpu_run_plan.json").read_text())
    assert summary["dry_run"] and set(summary["exit_codes"]) == {"install", "checks", "kernel_help"}


def test_wheel_list_pins_what_the_shared_environment_runs() -> None:
    """Every pinned wheel is the version this project's environment has (so the GPU run tests the same code)."""
    from importlib import metadata

    lines = (ROOT / "bench" / "gpu_wheels.txt").read_text().splitlines()
    pins = [
        ln.removeprefix("# binary: ") for ln in lines if ln and (not ln.startswith("#") or "binary:" in ln)
    ]
    for pin in pins:
        name, version = pin.split("==")
        assert metadata.version(name) == version, name


def test_stand_in_packages_fail_loudly_on_use(tmp_path: Path) -> None:
    """A package gpu_run.sh writes from bench/gpu_shims/stand_in.py imports (names and submodules alike) and raises
    ImportError naming itself the moment anything from it is constructed."""
    (tmp_path / "stand_in.py").write_text((ROOT / "bench" / "gpu_shims" / "stand_in.py").read_text())
    (tmp_path / "notapkg").mkdir()
    (tmp_path / "notapkg" / "__init__.py").write_text(
        "from stand_in import fill; fill(__name__, globals())\n"
    )
    code = (
        "import notapkg.sub.deep\nfrom notapkg import Dataset\nfrom notapkg.sub import thing\n"
        "for make in (Dataset, thing):\n    try:\n        make(1)\n    except ImportError as e:\n        print(e)\n"
    )
    env = {**os.environ, "PYTHONPATH": str(tmp_path)}
    out = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True, check=True)
    assert (
        out.stdout.splitlines()
        == ["notapkg is not installed on this machine (bench/gpu_shims stands in for its imports)"] * 2
    )
