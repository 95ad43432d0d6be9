"""`headscope steer ...` on tiny models: JSON shapes, vector files, and one-line errors for bad input."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from headscope.cli import main

pytestmark = pytest.mark.usefixtures("one_thread")


def _files(tmp_path: Path, pos: str = "good happy\nlovely day\n", neg: str = "bad sad\n") -> tuple[str, str]:
    (tmp_path / "pos.txt").write_text(pos)
    (tmp_path / "neg.txt").write_text(neg)
    return str(tmp_path / "pos.txt"), str(tmp_path / "neg.txt")


def _err(capsys: pytest.CaptureFixture[str]) -> str:
    err = [ln for ln in capsys.readouterr().err.splitlines() if ln.startswith("headscope:")]
    assert len(err) == 1
    return err[0]


def test_contrastive_json_is_exactly_the_issue_shape(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    pos, neg = _files(tmp_path)
    argv = ["steer", "contrastive", "--model", "tiny-llama", "--pos", pos, "--neg", neg, "--layer", "1",
            "--alpha", "4", "--prompt", "Hello", "--max-new-tokens", "3", "--out", str(tmp_path / "v"), "--json"]  # fmt: skip
    assert main(argv) == 0
    out = json.loads(capsys.readouterr().out)
    assert set(out) == {"layer", "alpha", "unsteered", "steered", "effect"}
    assert out["layer"] == 1 and out["alpha"] == 4.0
    for side in ("unsteered", "steered"):
        assert set(out[side]) == {"text", "token_ids"} and len(out[side]["token_ids"]) <= 3
    assert isinstance(out["effect"], float)
    sidecar = json.loads((tmp_path / "v" / "vectors.json").read_text())
    assert sidecar["method"] == "contrastive" and sidecar["hook_sites"] == ["blocks.1.hook_resid_post"]


def test_lofit_train_then_apply(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    data = tmp_path / "d.jsonl"
    data.write_text("".join(json.dumps({"prompt": f"w{i} is", "target": " z"}) + "\n" for i in range(8)))
    out_dir = tmp_path / "lofit"
    argv = ["steer", "lofit", "train", "--model", "tiny-llama", "--data", str(data), "--heads", "2",
            "--scale-steps", "2", "--bias-steps", "2", "--batch-size", "4", "--out", str(out_dir), "--json"]  # fmt: skip
    assert main(argv) == 0
    res = json.loads(capsys.readouterr().out)
    assert len(res["selected_heads"]) == 2 and len(res["random_heads"]) == 2
    assert res["trainable_parameters"] == 2 * 16
    assert {"heldout_before", "heldout_after", "heldout_random_heads"} <= set(res)
    assert main(["steer", "lofit", "apply", "--vectors", str(out_dir), "--prompt", "w1 is",
                 "--max-new-tokens", "2", "--json"]) == 0  # fmt: skip
    applied = json.loads(capsys.readouterr().out)
    assert applied["model"] == "tiny-llama" and len(applied["heads"]) == 2
    assert set(applied["steered"]) == {"text", "token_ids"}
    # The same vectors onto another model: refused in one line.
    argv = ["steer", "lofit", "apply", "--vectors", str(out_dir), "--model", "tiny-gpt2", "--prompt", "x"]
    assert main(argv) == 2
    assert "made for model tiny-llama" in _err(capsys)


@pytest.mark.parametrize(
    ("pos", "neg", "extra", "message"),
    [
        ("", "bad\n", [], "no examples"),
        ("good\n", "bad\n", ["--layer", "7"], "layer 7 is out of range"),
        ("good\n", "bad\n", ["--alpha", "nan"], "alpha must be a finite number"),
        ("good\n", "bad\n", ["--alpha", "1e6"], "alpha must be in"),
    ],
)
def test_contrastive_bad_input_is_one_line(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], pos: str, neg: str, extra: list[str], message: str
) -> None:
    p, n = _files(tmp_path, pos, neg)
    args = {"--layer": "0", "--alpha": "1"}
    for i in range(0, len(extra), 2):
        args[extra[i]] = extra[i + 1]
    argv = ["steer", "contrastive", "--model", "tiny-llama", "--pos", p, "--neg", n, "--prompt", "Hi"]
    assert main([*argv, *(x for kv in args.items() for x in kv)]) == 2
    assert message in _err(capsys)


@pytest.mark.parametrize(
    ("content", "message"),
    [
        ('{"prompt": "a"}\n{"prompt": "b", "target": " c"}\n', "line 1: expected an object"),
        ("not json\n", "line 1: not valid JSON"),
        ('{"prompt": "a", "target": " b"}\n', "at least 2 pairs"),
        ('{"prompt": "", "target": " b"}\n{"prompt": "b", "target": " c"}\n', "prompt must be a non-empty"),
    ],
)
def test_malformed_data_file_is_one_line(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], content: str, message: str
) -> None:
    data = tmp_path / "bad.jsonl"
    data.write_text(content)
    assert main(["steer", "lofit", "train", "--model", "tiny-llama", "--data", str(data)]) == 2
    assert message in _err(capsys)


def test_unknown_task_and_bad_heads(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["steer", "lofit", "train", "--model", "tiny-llama", "--task", "nope"]) == 2
    assert "unknown task 'nope'" in _err(capsys)
    assert (
        main(["steer", "lofit", "train", "--model", "tiny-llama", "--task", "antonyms", "--heads", "0"]) == 2
    )
    assert "k (heads) must be a positive integer" in _err(capsys)
