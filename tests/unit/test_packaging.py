"""A non-editable install (what Hugging Face Spaces does with requirements.txt) carries every shipped asset.

Builds the wheel from this tree, installs it into a temporary target and, in a fresh interpreter that imports
headscope from there (not from the source tree), loads the circuit-report schema, a steering task, the text
excerpt and a shipped localist checkpoint."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
CHECK = r"""
import json, sys
import headscope
from pathlib import Path
assert Path(headscope.__file__).resolve().is_relative_to(Path(sys.argv[1]).resolve()), headscope.__file__
from headscope import assets
from headscope.circuits.report import schema
from headscope.data import excerpt_articles
from headscope.models import ModelHandle
from headscope.steering.tasks import load_task
handle = ModelHandle.load("localist-2l-lambda0", device="cpu")
card = assets.read_json("localist", "2l-lambda0", "card.json")
print(json.dumps({
    "assets": str(assets.root()),
    "schema_version": schema()["properties"]["schema_version"]["const"],
    "excerpt": len(excerpt_articles()),
    "antonyms": len(load_task("antonyms").train),
    "n_layers": handle.facts.n_layers,
    "card_layers": card["config"]["n_layers"] if "config" in card else None,
    "logits_finite": bool(handle.forward(handle.tokenize("The cat sat.")).isfinite().all()),
}))
"""


@pytest.mark.slow
def test_wheel_install_carries_assets(tmp_path: Path) -> None:
    wheels, target = tmp_path / "wheels", tmp_path / "site"
    build = subprocess.run(
        [sys.executable, "-m", "pip", "wheel", str(ROOT), "--no-deps", "--no-build-isolation", "-q",
         "-w", str(wheels)],
        capture_output=True, text=True, cwd=tmp_path,
    )  # fmt: skip
    shutil.rmtree(ROOT / "build", ignore_errors=True)  # setuptools' scratch folder in the source tree
    assert build.returncode == 0, build.stderr[-2000:]
    (wheel,) = wheels.glob("headscope-*.whl")
    inst = subprocess.run(
        [sys.executable, "-m", "pip", "install", "--no-deps", "-q", "--target", str(target), str(wheel)],
        capture_output=True, text=True,
    )  # fmt: skip
    assert inst.returncode == 0, inst.stderr[-2000:]
    code = f"import sys; sys.path.insert(0, {str(target)!r})\n" + CHECK
    run = subprocess.run(
        [sys.executable, "-c", code, str(target)], capture_output=True, text=True, cwd=tmp_path, timeout=600
    )
    assert run.returncode == 0, run.stderr[-3000:]
    got = json.loads(run.stdout.strip().splitlines()[-1])
    assert Path(got["assets"]).is_relative_to(target)
    assert (
        got["schema_version"]
        == json.loads((ROOT / "headscope/assets/schemas/circuit_report.schema.json").read_text())[
            "properties"
        ]["schema_version"]["const"]
    )
    assert got["excerpt"] > 10 and got["antonyms"] > 10
    assert got["n_layers"] == got["card_layers"] == 2 and got["logits_finite"]
