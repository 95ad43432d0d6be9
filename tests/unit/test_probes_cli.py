"""`headscope entropy` and `headscope locality sweep`: JSON shapes, ids, and one-line errors."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from headscope.cli import main
from headscope.models import ModelHandle

TEXT = "Short text for the CLI. It has two sentences."


def run_json(capsys: pytest.CaptureFixture[str], argv: list[str]) -> dict:
    assert main(argv) == 0
    return json.loads(capsys.readouterr().out)


def run_error(capsys: pytest.CaptureFixture[str], argv: list[str]) -> str:
    assert main(argv) == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith("headscope: error: ") and "\n" not in err
    return err


def test_entropy_json(capsys: pytest.CaptureFixture[str], tiny_llama: ModelHandle, tmp_path: Path) -> None:
    out = run_json(capsys, ["entropy", "--model", "tiny-llama", "--text", TEXT, "--json"])
    assert {"model", "token_ids", "n_tokens", "entropy_bits", "mean_entropy_bits", "backend"} <= set(out)
    assert out["token_ids"] == tiny_llama.tokenize(TEXT)[0].tolist()
    assert out["n_tokens"] == len(out["token_ids"]) and out["backend"] == "eager"
    ent = np.array(out["entropy_bits"])
    assert ent.shape == (2, 4) and (ent >= 0).all()
    assert out["mean_entropy_bits"] == pytest.approx(ent.mean(), abs=1e-5)
    path = tmp_path / "t.txt"
    path.write_text(TEXT, encoding="utf-8")
    again = run_json(capsys, ["entropy", "--model", "tiny-llama", "--file", str(path), "--json"])
    assert again["entropy_bits"] == out["entropy_bits"]


def test_entropy_text_output(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["entropy", "--model", "tiny-llama", "--text", TEXT]) == 0
    assert "mean entropy" in capsys.readouterr().out


def test_entropy_errors(capsys: pytest.CaptureFixture[str], tmp_path: Path) -> None:
    assert "text is empty" in run_error(capsys, ["entropy", "--model", "tiny-llama", "--text", "  "])
    assert "file not found" in run_error(
        capsys, ["entropy", "--model", "tiny-llama", "--file", str(tmp_path / "no")]
    )
    long = run_error(capsys, ["entropy", "--model", "tiny-llama", "--text", "z" * 600])
    assert "the limit is 512" in long
    assert "text is empty" in run_error(capsys, ["entropy", "--model", "no-such-model", "--text", " "])
    bad = tmp_path / "bad.txt"
    bad.write_bytes(b"\xff\xfe\x00bad")
    assert "not UTF-8" in run_error(capsys, ["entropy", "--model", "tiny-llama", "--file", str(bad)])


def test_sweep_json(capsys: pytest.CaptureFixture[str], tmp_path: Path) -> None:
    path = tmp_path / "eval.txt"
    path.write_text(TEXT * 3, encoding="utf-8")
    argv = ["locality", "sweep", "--model", "tiny-llama", "--file", str(path), "--lambdas", "0,0.5,1",
            "--mode", "distance", "--schedule", "progressive", "--beta", "3", "--json"]  # fmt: skip
    out = run_json(capsys, argv)
    assert [r["lambda"] for r in out["rows"]] == [0.0, 0.5, 1.0]
    keys = {"lambda", "mean_entropy_bits", "pointer_fidelity", "perplexity", "accuracy", "kl"}
    assert all(keys <= set(r) for r in out["rows"])
    assert out["rows"][0]["kl"] == 0.0 and out["dial"]["schedule"] == "progressive"


def test_sweep_default_text_is_cut(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["locality", "sweep", "--model", "tiny-llama", "--lambdas", "0,1", "--max-tokens", "32"]) == 0
    captured = capsys.readouterr()
    assert "cut from" in captured.err and "lambda" in captured.out


@pytest.mark.parametrize(
    ("extra", "message"),
    [
        (["--lambdas", "0,2"], "each lambda must be in [0, 1], got 2.0"),
        (["--lambdas", "0,nan"], "each lambda must be in [0, 1]"),
        (["--lambdas", "0,x"], "--lambdas must be comma-separated"),
        (["--lambdas", ",".join(["0.5"] * 22)], "1 to 21 values"),
        (["--beta", "0.5"], "beta must be in"),
        (["--schedule", "explicit", "--layer-weights", "1,1,1"], "layer_weights has 3 entries"),
        (["--heads", "0,9"], "a bare head index now reads '*.0'"),
        (["--heads", "*.9"], "head 9 in '*.9' is out of range"),
        (["--heads", "1.x"], "is not L.H"),
        (["--beta", "abc"], "beta must be a number"),
        (["--block-size", "2.5", "--mode", "block", "--blocks", "fixed"], "blocks.size must be an integer"),
        (["--mode", "block", "--blocks", "spans", "--spans", "0-4"], "--spans must look like"),
        (["--text", ""], "text is empty"),
    ],
)
def test_sweep_errors(capsys: pytest.CaptureFixture[str], extra: list[str], message: str) -> None:
    assert message in run_error(capsys, ["locality", "sweep", "--model", "tiny-llama", *extra])


@pytest.mark.parametrize(
    ("extra", "message"),
    [
        (["--lambda", "5"], "lambda must be in [0, 1], got '5'"),
        (["--lambda", "nan"], "lambda must be in [0, 1]"),
        (["--lambda", "x"], "lambda must be a number"),
        (["--lambda", "1", "--heads", "3"], "a bare head index now reads '*.3'"),
        (["--lambda", "1", "--heads", "9.4"], "layer 9 in '9.4' is out of range"),
        (["--lambda", "1", "--schedule", "explicit", "--layer-weights", "1"], "layer_weights has 1 entries"),
        (["--lambda", "1", "--strength", "0"], "strength must be in"),
    ],
)
def test_entropy_dial_errors(capsys: pytest.CaptureFixture[str], extra: list[str], message: str) -> None:
    assert message in run_error(capsys, ["entropy", "--model", "tiny-llama", "--text", TEXT, *extra])


def test_entropy_dial_refuses_bad_values_before_loading_a_model(capsys: pytest.CaptureFixture[str]) -> None:
    err = run_error(capsys, ["entropy", "--model", "no-such-model", "--text", TEXT, "--lambda", "5"])
    assert "lambda must be in" in err


def test_entropy_one_head_dialed(capsys: pytest.CaptureFixture[str]) -> None:
    """`--heads 1.2`: every head of layer 0 and the other heads of layer 1 keep their entropy exactly."""
    base = ["entropy", "--model", "tiny-llama", "--text", TEXT, "--backend", "eager", "--json"]
    plain = run_json(capsys, base)
    dialed = run_json(capsys, [*base, "--lambda", "1", "--mode", "distance", "--heads", "1.2"])
    assert dialed["dial"]["heads"] == "1.2" and dialed["dial"]["lambda"] == 1.0
    assert dialed["entropy_bits"][0] == plain["entropy_bits"][0]
    assert [dialed["entropy_bits"][1][h] for h in (0, 1, 3)] == [
        plain["entropy_bits"][1][h] for h in (0, 1, 3)
    ]
    assert dialed["entropy_bits"][1][2] < plain["entropy_bits"][1][2]


def test_entropy_help_states_both_limits(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit):
        main(["entropy", "--help"])
    text = " ".join(capsys.readouterr().out.split())
    assert "eager backend takes up to 2048 tokens" in text
    assert "fused backend takes up to the model's context length (8192 for smollm2-135m" in text
    for flag in ("--lambda", "--mode", "--schedule", "--beta", "--heads", "--backend"):
        assert flag in text


def test_sweep_heads_take_the_headset_grammar(capsys: pytest.CaptureFixture[str]) -> None:
    argv = ["locality", "sweep", "--model", "tiny-llama", "--text", TEXT * 2, "--lambdas", "0,1", "--json"]
    out = run_json(capsys, [*argv, "--heads", "*.3"])
    assert out["dial"]["heads"] == "*.3" and out["rows"][1]["kl"] > 0
