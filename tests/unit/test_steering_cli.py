"""`headscope steer ...` on tiny models: the JSON equals the library's result for the same inputs, vector files
round-trip through `apply`, head selections use the HeadSet grammar, and bad input is one line — text inputs
checked before any model is loaded."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from headscope.cli import main
from headscope.models import ModelHandle
from headscope.steering.contrastive import ContrastiveConfig, compare, contrastive_vector
from headscope.steering.direction import SteerConfig
from headscope.steering.generate import GenConfig

pytestmark = pytest.mark.usefixtures("one_thread")
POS, NEG = ["good happy", "lovely day"], ["bad sad", "awful day"]


def _files(
    tmp_path: Path, pos: str = "good happy\nlovely day\n", neg: str = "bad sad\nawful day\n"
) -> tuple[str, str]:
    (tmp_path / "pos.txt").write_text(pos)
    (tmp_path / "neg.txt").write_text(neg)
    return str(tmp_path / "pos.txt"), str(tmp_path / "neg.txt")


def _err(capsys: pytest.CaptureFixture[str]) -> str:
    err = [ln for ln in capsys.readouterr().err.splitlines() if ln.startswith("headscope:")]
    assert len(err) == 1
    return err[0]


def _run(capsys: pytest.CaptureFixture[str], argv: list[str]) -> dict:
    assert main([*argv, "--json"]) == 0
    return json.loads(capsys.readouterr().out)


def test_contrastive_json_equals_the_library_and_apply_reproduces_it(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], tiny_llama: ModelHandle
) -> None:
    pos, neg = _files(tmp_path)
    out = _run(capsys, ["steer", "contrastive", "--model", "tiny-llama", "--pos", pos, "--neg", neg, "--layer", "1",
                        "--alpha", "4", "--prompt", "Hello", "--max-new-tokens", "3", "--out", str(tmp_path / "v")])  # fmt: skip
    sv = contrastive_vector(tiny_llama, POS, NEG, ContrastiveConfig(1))
    ref = compare(tiny_llama, sv, "Hello", POS, NEG, SteerConfig(4.0), GenConfig(3)).to_json()
    assert out == {**ref, "vectors": str(tmp_path / "v")}
    assert set(out["steered"]) == {"text", "token_ids"} and out["site"] == "blocks.1.hook_resid_post"
    sidecar = json.loads((tmp_path / "v" / "vectors.json").read_text())
    assert sidecar["method"] == "contrastive" and sidecar["hook_sites"] == ["blocks.1.hook_resid_post"]
    assert sidecar["alpha"] == 4.0 and sidecar["position"] == "last"
    applied = _run(capsys, ["steer", "contrastive", "apply", "--vectors", str(tmp_path / "v"), "--prompt", "Hello",
                            "--max-new-tokens", "3", "--pos", pos, "--neg", neg])  # fmt: skip
    assert applied == {"model": "tiny-llama", **ref}
    weaker = _run(capsys, ["steer", "contrastive", "apply", "--vectors", str(tmp_path / "v"), "--prompt", "Hello",
                           "--max-new-tokens", "3", "--alpha", "0"])  # fmt: skip
    assert weaker["alpha"] == 0.0 and weaker["steered"] == weaker["unsteered"] and weaker["effect"] is None
    argv = [
        "steer",
        "contrastive",
        "apply",
        "--vectors",
        str(tmp_path / "v"),
        "--model",
        "tiny-gpt2",
        "--prompt",
        "x",
    ]
    assert main(argv) == 2
    assert "made for model tiny-llama" in _err(capsys)


def test_contrastive_at_heads_records_the_selection(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    pos, neg = _files(tmp_path)
    out = _run(capsys, ["steer", "contrastive", "--model", "tiny-llama", "--pos", pos, "--neg", neg, "--heads",
                        "1.*, 0.2", "--prompt", "Hello", "--max-new-tokens", "2", "--out", str(tmp_path / "h")])  # fmt: skip
    assert out["site"] == "heads" and out["heads"] == "0.2, 1.*" and out["layer"] is None
    sidecar = json.loads((tmp_path / "h" / "vectors.json").read_text())
    assert sidecar["heads"] == "0.2, 1.*"
    assert sidecar["hook_sites"] == ["blocks.0.attn.hook_z", "blocks.1.attn.hook_z"]


def test_lofit_train_restricted_then_apply(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    data = tmp_path / "d.jsonl"
    data.write_text("".join(json.dumps({"prompt": f"w{i} is", "target": " z"}) + "\n" for i in range(8)))
    out_dir = tmp_path / "lofit"
    res = _run(capsys, ["steer", "lofit", "train", "--model", "tiny-llama", "--data", str(data), "--heads", "1.*",
                        "--k", "2", "--scale-steps", "2", "--bias-steps", "2", "--batch-size", "4",
                        "--out", str(out_dir)])  # fmt: skip
    chosen = {(h["layer"], h["head"]) for h in res["selected_heads"]}
    assert len(chosen) == 2 and all(layer == 1 for layer, _ in chosen) and res["restricted_to"] == "1.*"
    assert res["trainable_parameters"] == 2 * 16 and res["step1_parameters"] == 4 * 16
    sidecar = json.loads((out_dir / "vectors.json").read_text())
    assert sidecar["heads"] == res["heads"] == ", ".join(f"{a}.{b}" for a, b in sorted(chosen))
    assert sidecar["restricted_to"] == "1.*"
    applied = _run(capsys, ["steer", "lofit", "apply", "--vectors", str(out_dir), "--prompt", "w1 is",
                            "--max-new-tokens", "2"])  # fmt: skip
    assert applied["model"] == "tiny-llama" and applied["heads"] == sidecar["heads"]
    assert set(applied) == {"model", "heads", "unsteered", "steered", "cost", "tokens"}
    assert len(applied["tokens"]) == len(applied["steered"]["token_ids"])
    argv = ["steer", "lofit", "apply", "--vectors", str(out_dir), "--model", "tiny-gpt2", "--prompt", "x"]
    assert main(argv) == 2
    assert "made for model tiny-llama" in _err(capsys)


@pytest.mark.parametrize(
    ("pos", "neg", "extra", "message"),
    [
        ("", "bad\n", [], "no examples"),
        ("good\n", "bad\n", ["--layer", "7"], "layer 7 is out of range"),
        ("good\n", "bad\n", ["--alpha", "nan"], "alpha must be in"),
        ("good\n", "bad\n", ["--alpha", "1e6"], "alpha must be in"),
        ("good\n", "bad\n", ["--heads", "1.9"], "head 9 in '1.9' is out of range"),
        ("good\n", "bad\n", ["--heads", "3"], "'*.3'"),
    ],
)
def test_contrastive_bad_input_is_one_line(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], pos: str, neg: str, extra: list[str], message: str
) -> None:
    p, n = _files(tmp_path, pos, neg)
    argv = ["steer", "contrastive", "--model", "tiny-llama", "--pos", p, "--neg", n, "--prompt", "Hi", *extra]
    assert main(argv) == 2
    assert message in _err(capsys)


@pytest.mark.parametrize(
    ("argv", "message"),
    [
        (["steer", "contrastive", "--prompt", "", "--pos", "{pos}", "--neg", "{neg}"], "the prompt is empty"),
        (
            ["steer", "contrastive", "--prompt", "x" * 2001, "--pos", "{pos}", "--neg", "{neg}"],
            "limit is 2000",
        ),
        (["steer", "contrastive", "--prompt", "Hi", "--pos", "{pos}"], "give both --pos and --neg"),
        (
            ["steer", "contrastive", "--prompt", "Hi", "--pos", "{pos}", "--neg", "{neg}", "--heads", "9.x"],
            "not L.H",
        ),
        (["steer", "contrastive", "apply", "--vectors", "{tmp}", "--prompt", ""], "the prompt is empty"),
        (
            ["steer", "contrastive", "apply", "--vectors", "{tmp}", "--prompt", "Hi"],
            "not a vectors directory",
        ),
        (["steer", "lofit", "train", "--task", "antonyms", "--heads", "8"], "use --k 8"),
        (
            ["steer", "lofit", "train", "--task", "antonyms", "--heads", "1.2", "--k", "0"],
            "k (heads to tune)",
        ),
        (["steer", "lofit", "apply", "--vectors", "{tmp}", "--prompt", " "], "the prompt is empty"),
    ],
)
def test_text_inputs_are_checked_before_any_model_loads(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], argv: list[str], message: str
) -> None:
    """The model named does not exist: each error must come from the text check, before loading."""
    pos, neg = _files(tmp_path)
    filled = [a.format(pos=pos, neg=neg, tmp=tmp_path) for a in argv]
    assert main([*filled, "--model", "no-such-model", "--json"]) == 2
    out = capsys.readouterr()
    assert message in out.err and json.loads(out.out) == {
        "error": json.loads(out.out)["error"],
        "exit_code": 2,
    }
    assert "no-such-model" not in out.err


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


def test_unknown_task_and_too_many_heads(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["steer", "lofit", "train", "--model", "tiny-llama", "--task", "nope"]) == 2
    assert "unknown task 'nope'" in _err(capsys)
    argv = [
        "steer",
        "lofit",
        "train",
        "--model",
        "tiny-llama",
        "--task",
        "antonyms",
        "--heads",
        "0.1",
        "--k",
        "2",
    ]
    assert main(argv) == 2
    assert "at most 1, the selection's size" in _err(capsys)
