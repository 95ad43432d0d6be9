from __future__ import annotations

import json
import subprocess
import sys

import pytest

from headscope.cli import main


def _run(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "headscope.cli", *args], capture_output=True, text=True, timeout=300
    )


def test_models_json_lists_the_default(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["models", "--json"]) == 0
    payload = json.loads(capsys.readouterr().out)
    names = {m["name"]: m for m in payload["models"]}
    assert payload["default"] == "smollm2-135m"
    assert names["smollm2-135m"]["installed"] and names["smollm2-135m"]["default"]
    assert {"tiny-llama", "tiny-gpt2", "gemma3-270m"} <= set(names)


def test_info_json_for_a_tiny_model(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["info", "tiny-gpt2", "--json"]) == 0
    info = json.loads(capsys.readouterr().out)
    assert info["facts"]["n_layers"] == 2 and info["identity"]["name"] == "tiny-gpt2"
    assert info["load_seconds"] >= 0


@pytest.mark.parametrize("bad", ["definitely-not-a-model", "org/not-cached-anywhere"])
def test_bad_ids_exit_nonzero_with_one_line(bad: str) -> None:
    proc = _run("info", bad, "--json")
    assert proc.returncode != 0
    lines = [ln for ln in proc.stderr.splitlines() if ln.strip() and "warn" not in ln.lower()]
    assert len(lines) == 1 and lines[0].startswith("headscope: error:"), proc.stderr
    assert json.loads(proc.stdout) == {"error": lines[0].removeprefix("headscope: error: "), "exit_code": 2}
