"""`headscope circuits run|compare` on a tiny model: JSON out, a valid report on disk, clear errors."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from headscope.circuits.report import read_report
from headscope.cli import main

SPEC = {
    "name": "letters",
    "positive": [
        {"prompt": "abcabcab", "answer": "c", "wrong": "a"},
        {"prompt": "xyzxyzxy", "answer": "z", "wrong": "x"},
    ],
    "negative": [{"prompt": "abcdefgh"}, {"prompt": "xyzuvwst"}],
}


def _run(tmp_path: Path, name: str, *extra: str) -> list[str]:
    task = tmp_path / "task.json"
    task.write_text(json.dumps(SPEC))
    return ["circuits", "run", "--task", "custom", "--task-file", str(task), "--model", "tiny-llama",
            "--epochs", "10", "--n-examples", "4", "--out", str(tmp_path / name), *extra]  # fmt: skip


def test_run_and_compare(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert main([*_run(tmp_path, "a.json"), "--json"]) == 0
    out = json.loads(capsys.readouterr().out)
    assert out["report"].endswith("a.json") and set(out["roc_auc"]) >= {"sae_node", "activation_patching"}
    assert read_report(tmp_path / "a.json")["task"]["title"] == "letters"
    assert main([*_run(tmp_path, "b.json", "--seed", "1", "--circuit-k", "2")]) == 0
    assert "circuit (top_k)" in capsys.readouterr().out
    assert main(["circuits", "compare", str(tmp_path / "a.json"), str(tmp_path / "b.json"), "--json"]) == 0
    diff = json.loads(capsys.readouterr().out)
    assert diff["model"] == "tiny-llama" and "heads_added" in diff


def test_errors_are_one_line(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["circuits", "run", "--task", "custom", "--model", "tiny-llama"]) == 2
    assert "needs --task-file" in capsys.readouterr().err
    bad = tmp_path / "bad.json"
    bad.write_text("{oops")
    assert main(["circuits", "compare", str(bad), str(bad)]) == 2
    err = capsys.readouterr().err
    assert "not valid JSON" in err and err.count("\n") == 1
