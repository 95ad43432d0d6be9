"""`headscope steer ...` on tiny models: the JSON equals the library's result for the same inputs, vector files
round-trip through `apply`, head selections use the HeadSet grammar, and bad input is one line — text inputs
checked before any model is loaded."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from headscope.cli import main
from headscope.cli.steering import (
    ContrastiveApply,
    ContrastiveRun,
    EvalOptions,
    LofitApply,
    LofitTrain,
    ModelOptions,
    parse,
    to_argv,
)
from headscope.models import ModelHandle
from headscope.steering.comparison import SideBySideConfig
from headscope.steering.contrastive import ContrastiveConfig, compare_vector, contrastive_vector
from headscope.steering.direction import SteerConfig
from headscope.steering.generate import GenConfig
from headscope.steering.heldout import HeldOut
from headscope.steering.tasks import load_contrast, load_task

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
    in_sample = HeldOut(tuple(POS), tuple(NEG), held_out=False)  # no held-out texts given: the defining ones
    ref = compare_vector(tiny_llama, sv, ["Hello"], SteerConfig(4.0), SideBySideConfig(GenConfig(3)),
                         texts=in_sample).to_json()  # fmt: skip
    assert out == {**ref, "vectors": str(tmp_path / "v")}
    assert out["evaluation"]["held_out"] is False and out["evaluation"]["conditions"] == ["none", "steering"]
    assert (
        set(out["steered"]) == {"text", "token_ids", "tokens", "probs"}
        and out["site"] == "blocks.1.hook_resid_post"
    )
    sidecar = json.loads((tmp_path / "v" / "vectors.json").read_text())
    assert sidecar["method"] == "contrastive" and sidecar["hook_sites"] == ["blocks.1.hook_resid_post"]
    assert sidecar["alpha"] == 4.0 and sidecar["position"] == "last"
    applied = _run(capsys, ["steer", "contrastive", "apply", "--vectors", str(tmp_path / "v"), "--prompt", "Hello",
                            "--max-new-tokens", "3", "--heldout-pos", pos, "--heldout-neg", neg])  # fmt: skip
    assert applied == {"model": "tiny-llama", **ref}  # the defining texts again: in-sample, by data hash
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


def test_contrastive_on_a_task_reads_held_out_texts_and_the_prompting_row(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], tiny_llama: ModelHandle
) -> None:
    """--task: the contrast set's own texts build the vector, its held-out sets measure it, its instruction is the
    prompting baseline (here edited); two prompts given on the command line."""
    cs = load_contrast("sentiment")
    argv = ["steer", "contrastive", "--model", "tiny-llama", "--task", "sentiment", "--layer", "1", "--prompt",
            "Hello", "--prompt", "The day", "--instruction", "Be glad.", "--max-new-tokens", "2", "--resamples",
            "200", "--seed", "3"]  # fmt: skip
    out = _run(capsys, argv)
    sv = contrastive_vector(tiny_llama, cs.positives, cs.negatives, ContrastiveConfig(1))
    texts = HeldOut(cs.heldout_positives, cs.heldout_negatives)
    sbs = SideBySideConfig(GenConfig(2), "Be glad.", 200, 3)
    ref = compare_vector(tiny_llama, sv, ["Hello", "The day"], SteerConfig(), sbs, texts=texts).to_json()
    assert out == ref
    ev = out["evaluation"]
    assert ev["held_out"] is True and ev["n_positive"] == 40 and ev["instruction"] == "Be glad."
    assert [r["condition"] for r in ev["rows"]] == ["none", "prompting", "steering", "steering + prompting"]
    assert out["effect"] == ev["rows"][2]["measures"]["margin_effect"]["value"]


def test_to_argv_is_the_exact_inverse_of_the_parser() -> None:
    configs = [
        ContrastiveRun(pos="p.txt", neg="n.txt", layer=3, alpha=-0.35, position="all", pooling="last"),
        ContrastiveRun(
            ModelOptions("tiny-llama", "cpu", json=True),
            EvalOptions("sentiment", ("a b", "--c"), instruction="", max_new_tokens=5, resamples=300, seed=7),
            heads="9.4, 12.*",
            out="o",
        ),
        ContrastiveRun(
            ModelOptions(device_map="auto", max_memory="cpu=1GiB", offload_dir="d"),
            EvalOptions(heldout_pos="hp", heldout_neg="hn", instruction="Be nice."),
        ),
        ContrastiveRun(pos_texts=("-so good", "a=b, c"), neg_texts=("bad",), layer=0),
        ContrastiveApply("v"),
        ContrastiveApply("v", ModelOptions("m"), EvalOptions(prompts=("x",)), alpha=0.1, position="last"),
        LofitTrain(task="antonyms"),
        LofitTrain(
            ModelOptions("tiny-llama", json=True),
            data="d.jsonl",
            heads="1.*",
            k=2,
            scale_steps=3,
            bias_steps=4,
            batch_size=5,
            seed=6,
            random_sets=0,
            eval_prompts=2,
            eval_tokens=3,
            resamples=150,
            instruction="Say it.",
            out="o",
        ),
        LofitApply("v"),
        LofitApply("v", ModelOptions("tiny-llama"), EvalOptions("ioi", ("p",), instruction="I.", seed=2)),
    ]
    for cfg in configs:
        assert parse(to_argv(cfg)) == cfg, to_argv(cfg)


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
                        "--k", "2", "--scale-steps", "2", "--bias-steps", "2", "--batch-size", "4", "--random-sets",
                        "3", "--eval-prompts", "1", "--eval-tokens", "2", "--instruction", "Say z.",
                        "--out", str(out_dir)])  # fmt: skip
    chosen = {(h["layer"], h["head"]) for h in res["selected_heads"]}
    assert len(chosen) == 2 and all(layer == 1 for layer, _ in chosen) and res["restricted_to"] == "1.*"
    assert res["trainable_parameters"] == 2 * 16 and res["step1_parameters"] == 4 * 16
    chance = res["chance"]
    assert (
        chance["random_sets"] == 3
        and len(chance["random_accuracies"]) == 3
        and 0.25 <= chance["p_value"] <= 1
    )
    assert res["verdict"] == chance["verdict"] and chance["verdict"].startswith("not distinguishable")
    assert res["evaluation"]["evaluation"]["instruction"] == "Say z."
    sidecar = json.loads((out_dir / "vectors.json").read_text())
    assert sidecar["heads"] == res["heads"] == ", ".join(f"{a}.{b}" for a, b in sorted(chosen))
    assert sidecar["restricted_to"] == "1.*"
    applied = _run(capsys, ["steer", "lofit", "apply", "--vectors", str(out_dir), "--prompt", "w1 is",
                            "--max-new-tokens", "2"])  # fmt: skip
    assert applied["model"] == "tiny-llama" and applied["heads"] == sidecar["heads"]
    assert {"unsteered", "steered", "cost", "tokens", "evaluation"} <= set(applied)
    assert len(applied["tokens"]) == len(applied["steered"]["token_ids"])
    argv = ["steer", "lofit", "apply", "--vectors", str(out_dir), "--model", "tiny-gpt2", "--prompt", "x"]
    assert main(argv) == 2
    assert "made for model tiny-llama" in _err(capsys)


def test_lofit_apply_on_a_task_scores_its_held_out_items(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    data = tmp_path / "d.jsonl"
    data.write_text("".join(json.dumps({"prompt": f"w{i} is", "target": " z"}) + "\n" for i in range(8)))
    _run(capsys, ["steer", "lofit", "train", "--model", "tiny-llama", "--data", str(data), "--k", "1",
                  "--scale-steps", "1", "--bias-steps", "1", "--random-sets", "0", "--eval-prompts", "1",
                  "--eval-tokens", "1", "--out", str(tmp_path / "o")])  # fmt: skip
    applied = _run(capsys, ["steer", "lofit", "apply", "--vectors", str(tmp_path / "o"), "--task", "antonyms",
                            "--max-new-tokens", "1", "--resamples", "100"])  # fmt: skip
    ev = applied["evaluation"]
    assert (
        ev["n_items"] == 200
        and len(ev["prompts"]) == 8
        and ev["instruction"] == load_task("antonyms").instruction
    )
    assert all(r["measures"]["accuracy"]["n"] == 200 for r in ev["rows"])


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
            ["steer", "contrastive", "--prompt", "Hi", "--pos-text", "a"],
            "give both --pos-text and --neg-text",
        ),
        (
            [
                "steer",
                "contrastive",
                "--prompt",
                "Hi",
                "--pos-text",
                "a",
                "--neg-text",
                "b",
                "--neg-text",
                " ",
            ],
            "include a blank",
        ),
        (
            [
                "steer",
                "contrastive",
                "--prompt",
                "Hi",
                "--pos",
                "{pos}",
                "--pos-text",
                "a",
                "--neg-text",
                "b",
            ],
            "as files (--pos/--neg) or inline",
        ),
        (["steer", "contrastive", "--prompt", "Hi"], "give --pos and --neg"),
        (["steer", "contrastive", "--pos", "{pos}", "--neg", "{neg}"], "give --prompt"),
        (["steer", "contrastive", "--task", "nope"], "unknown contrast set 'nope'"),
        (
            [
                "steer",
                "contrastive",
                "--prompt",
                "Hi",
                "--pos",
                "{pos}",
                "--neg",
                "{neg}",
                "--heldout-pos",
                "{pos}",
            ],
            "give both --heldout-pos and --heldout-neg",
        ),
        (["steer", "contrastive", "--task", "sentiment", "--resamples", "5"], "resamples"),
        (["steer", "contrastive", "--task", "sentiment", "--instruction", "x" * 501], "instruction is 501"),
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
        (["steer", "lofit", "train", "--task", "antonyms", "--random-sets", "-1"], "random_sets"),
        (["steer", "lofit", "train", "--task", "antonyms", "--eval-prompts", "0"], "eval_prompts"),
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
