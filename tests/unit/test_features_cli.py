"""`headscope features ...` on a tiny model: train → list → index → top / page / recon / steer / attribute, the
JSON contracts of the issue, `models --json` listing SAEs, and exit 2 with one line for bad input."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from headscope.cli import main

pytestmark = pytest.mark.usefixtures("one_thread")
M = ["--model", "tiny-llama"]


@pytest.fixture(scope="module")
def trained(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """One tiny SAE trained through the CLI into the user's catalog (a temporary HEADSCOPE_CACHE)."""
    root = tmp_path_factory.mktemp("hs_cli")
    argv = ["features", "train", *M, "--hook", "resid_post", "--layer", "1", "--latents", "48", "--topk", "6",
            "--tokens", "8192", "--batch-size", "256", "--lr", "0.002", "--eval-tokens", "300", "--name", "cli-sae",
            "--json"]  # fmt: skip
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("HEADSCOPE_CACHE", str(root))
        assert main(argv) == 0
        assert (
            main(
                ["features", "index", *M, "--sae", "cli-sae", "--tokens", "1500", "--contexts", "4", "--json"]
            )
            == 0
        )
        yield "cli-sae"


def run_json(capsys: pytest.CaptureFixture[str], argv: list[str]) -> Any:
    capsys.readouterr()
    assert main(argv) == 0
    return json.loads(capsys.readouterr().out)


def fails(capsys: pytest.CaptureFixture[str], argv: list[str]) -> str:
    capsys.readouterr()
    try:
        code = main([*argv, "--json"])
    except SystemExit as e:  # a usage error leaves from argparse (one line, and the JSON object under --json)
        code = e.code
    assert code == 2
    captured = capsys.readouterr()
    lines = [ln for ln in captured.err.splitlines() if ln.startswith("headscope:")]
    assert len(lines) == 1 and "Traceback" not in captured.err
    assert json.loads(captured.out)["exit_code"] == 2
    return lines[0]


def test_list_and_models_show_the_card(trained: str, capsys: pytest.CaptureFixture[str]) -> None:
    out = run_json(capsys, ["features", "list", *M, "--json"])
    (row,) = [r for r in out["saes"] if r["name"] == trained]
    assert row["hook"] == "blocks.1.hook_resid_post" and row["layer"] == 1 and row["d_sae"] == 48
    assert row["tokens_seen"] == 8192 and row["has_dashboards"]
    for key in ("explained_variance", "l0", "dead_fraction", "ce_loss_score", "training_seconds"):
        assert key in row
    models = run_json(capsys, ["models", "--json"])
    assert any(s["name"] == trained and s["model"] == "tiny-llama" for s in models["saes"])


def test_top_json_contract(trained: str, capsys: pytest.CaptureFixture[str]) -> None:
    out = run_json(
        capsys,
        ["features", "top", *M, "--sae", trained, "--text", "Hello there, world", "--k", "5", "--json"],
    )
    assert set(out) == {"tokens", "token_ids", "top", "explained_variance", "fires_on"}
    assert len(out["tokens"]) == len(out["token_ids"]) == len(out["top"]) == 18
    assert all(isinstance(t, str) for t in out["tokens"]) and all(
        isinstance(i, int) for i in out["token_ids"]
    )
    for row in out["top"]:
        assert 1 <= len(row) <= 5
        assert [t["activation"] for t in row] == sorted((t["activation"] for t in row), reverse=True)
        assert all(set(t) == {"feature", "activation"} and t["activation"] > 0 for t in row)
    assert isinstance(out["explained_variance"], float)


def test_top_text_names_what_each_feature_fires_on(trained: str, capsys: pytest.CaptureFixture[str]) -> None:
    argv = ["features", "top", *M, "--sae", trained, "--text", "Hello there, world", "--k", "3"]
    out = run_json(capsys, [*argv, "--json"])
    capsys.readouterr()
    assert main(argv) == 0
    text = capsys.readouterr().out
    reads = {r["feature"]: r["tokens"] for r in out["fires_on"] if r["tokens"]}
    assert reads  # the catalog SAE is indexed, so listed features have dashboards
    for feature, tokens in reads.items():
        assert f"#{feature} fires on " + ", ".join(repr(t) for t in tokens[:5]) in text.splitlines()


def test_steer_json_contract(trained: str, capsys: pytest.CaptureFixture[str], tmp_path: Path) -> None:
    argv = ["features", "steer", *M, "--sae", trained, "--feature", "3", "--alpha", "0.8", "--prompt", "The cat",
            "--max-new-tokens", "4", "--out", str(tmp_path / "vec"), "--json"]  # fmt: skip
    out = run_json(capsys, argv)
    for side in ("unsteered", "steered"):
        assert set(out[side]) == {"text", "token_ids", "tokens", "probs"} and len(out[side]["token_ids"]) <= 4
    assert isinstance(out["effect"], float) and out["vector"]["method"] == "feature"
    assert out["effect_measure"] == "promoted_logprob_change"
    assert isinstance(out["check_activation_change"], float)
    assert [r["condition"] for r in out["evaluation"]["rows"]] == ["none", "steering"]
    assert {"perplexity_steered", "perplexity_ratio", "distinct_steered", "fluent"} <= set(out["cost"])
    sidecar = json.loads((tmp_path / "vec" / "vectors.json").read_text())
    assert sidecar["hook_sites"] == ["blocks.1.hook_resid_post"] and sidecar["alpha"] == 0.8
    assert sidecar["method"] == "feature" and sidecar["source"]["feature"] == 3
    # steering's own `apply` reads the file and steers the same way (same greedy continuation)
    applied = run_json(capsys, ["steer", "contrastive", "apply", "--vectors", str(tmp_path / "vec"),
                                "--prompt", "The cat", "--max-new-tokens", "4", "--device", "cpu", "--json"])  # fmt: skip
    assert applied["steered"]["token_ids"] == out["steered"]["token_ids"]
    default = run_json(capsys, [*argv[:8], *argv[10:-3], "--json"])
    assert default["alpha"] == 0.2 and "vectors" not in default
    clamp = run_json(capsys, [*argv[:-3], "--mode", "clamp", "--json"])
    assert clamp["mode"] == "clamp" and clamp["vector"] is None


def test_page_recon_attribute(trained: str, capsys: pytest.CaptureFixture[str]) -> None:
    page = run_json(capsys, ["features", "page", *M, "--sae", trained, "--feature", "0", "--json"])
    assert {"contexts", "histogram", "promoted", "suppressed", "frequency"} <= set(page)
    recon = run_json(
        capsys, ["features", "recon", *M, "--sae", trained, "--text", "A longer text to rebuild.", "--json"]
    )
    assert recon["tokens"] == len("A longer text to rebuild.") - 1 and recon["ce_loss_with_sae"] is not None
    out = run_json(capsys, ["features", "attribute", *M, "--sae", trained, "--prompt", "The dog ran to the",
                            "--target", "e", "--top", "5", "--check", "--json"])  # fmt: skip
    assert len(out["features"]) <= 5 and set(out["check"]) >= {"sign_agreement", "spearman"}


@pytest.mark.parametrize(
    ("argv", "needle"),
    [
        (
            [
                "features",
                "steer",
                *M,
                "--sae",
                "cli-sae",
                "--feature",
                "1",
                "--alpha",
                "nan",
                "--prompt",
                "x",
            ],
            "alpha",
        ),
        (
            [
                "features",
                "steer",
                *M,
                "--sae",
                "cli-sae",
                "--feature",
                "1",
                "--alpha",
                "1e9",
                "--prompt",
                "x",
            ],
            "alpha",
        ),
        (
            [
                "features",
                "steer",
                *M,
                "--sae",
                "cli-sae",
                "--feature",
                "4800",
                "--alpha",
                "1",
                "--prompt",
                "x",
            ],
            "feature 4800 does not exist",
        ),
        (
            [
                "features",
                "steer",
                *M,
                "--sae",
                "cli-sae",
                "--feature",
                "1",
                "--mode",
                "clamp",
                "--prompt",
                "x",
            ],
            "needs --alpha",
        ),
        (
            [
                "features",
                "steer",
                *M,
                "--sae",
                "cli-sae",
                "--feature",
                "1",
                "--alpha",
                "1",
                "--mode",
                "clamp",
                "--prompt",
                "x",
                "--out",
                "/tmp/never",
            ],
            "mode 'add' only",
        ),
        (["features", "page", *M, "--sae", "cli-sae", "--feature", "-1"], "--feature"),
        (["features", "top", *M, "--sae", "nope", "--text", "x"], "no SAE named 'nope'"),
        (["features", "top", *M, "--sae", "cli-sae", "--text", "x", "--k", "0"], "--k"),
        (["features", "top", *M, "--sae", "/no/such/folder", "--text", "x"], "not found"),
        (["features", "train", *M, "--hook", "resid_post", "--layer", "7", "--latents", "64"], "layer 7"),
        (["features", "train", *M, "--hook", "resid_post", "--layer", "0", "--latents", "3"], "latents"),
        (
            ["features", "train", *M, "--hook", "mlp_out", "--layer", "0", "--latents", "16", "--topk", "99"],
            "topk",
        ),
    ],
)
def test_bad_input_exits_2_with_one_line(trained: str, capsys: pytest.CaptureFixture[str], argv: list[str],
                                         needle: str) -> None:  # fmt: skip
    assert needle in fails(capsys, argv)


def test_sae_by_folder_path(trained: str, capsys: pytest.CaptureFixture[str], tmp_path: Path) -> None:
    from headscope.features import catalog

    folder = catalog.user_root() / "tiny-llama" / trained
    out = run_json(capsys, ["features", "top", *M, "--sae", str(folder), "--text", "Hi there", "--json"])
    assert len(out["tokens"]) == 8
    empty = tmp_path / "empty"
    empty.mkdir()
    assert "not an SAELens SAE folder" in fails(
        capsys, ["features", "top", *M, "--sae", str(empty), "--text", "x"]
    )


# -- features eval ------------------------------------------------------------------------------------------------
EVAL_KEYS = {"sae", "hook", "source", "sequences", "tokens", "predictions", "explained_variance", "l0",
             "dead_fraction", "dense_fraction", "ce_loss_clean", "ce_loss_with_sae", "ce_loss_ablated", "kl_div",
             "ablation_effect", "ce_loss_score", "ce_loss_score_note", "ce_increase", "position_0", "truncated",
             "dense_threshold", "min_ablation_nats"}  # fmt: skip


def test_eval_text_file_jsonl_and_heldout(
    trained: str, capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    from headscope.features import catalog, saes
    from headscope.features.evaluate import EvalConfig, evaluate_sae
    from headscope.models import ModelHandle

    texts = ["The river carries sediment to the sea.", "Deltas grow where the current slows down."]
    (tmp_path / "t.jsonl").write_text("\n".join(json.dumps({"text": t}) for t in texts) + "\n")
    out = run_json(
        capsys, ["features", "eval", *M, "--sae", trained, "--file", str(tmp_path / "t.jsonl"), "--json"]
    )
    assert set(out) == EVAL_KEYS and out["source"] == "t.jsonl" and out["sequences"] == 2
    assert out["position_0"].startswith("excluded") and out["tokens"] == sum(len(t) - 1 for t in texts)
    handle = ModelHandle.load("tiny-llama", device="cpu")
    direct = evaluate_sae(handle, saes.load(handle, catalog.find("tiny-llama", trained).folder), texts,
                          cfg=EvalConfig(), source="t.jsonl")  # fmt: skip
    assert out == direct.to_json()  # the CLI prints exactly the library's result
    (tmp_path / "t.txt").write_text("\n".join(texts))
    whole = run_json(
        capsys, ["features", "eval", *M, "--sae", trained, "--file", str(tmp_path / "t.txt"), "--json"]
    )
    assert whole["sequences"] == 1 and whole["source"] == "t.txt"
    held = run_json(capsys, ["features", "eval", *M, "--sae", trained, "--heldout", "chat", "--max-tokens", "600",
                             "--json"])  # fmt: skip
    assert held["source"] == "chat" and held["truncated"] and held["tokens"] <= 600
    capsys.readouterr()
    assert main(["features", "eval", *M, "--sae", trained, "--text", "A short text to judge."]) == 0
    assert "explained variance" in capsys.readouterr().out


@pytest.mark.parametrize(
    ("extra", "needle"),
    [(["--text", "   "], "empty"), (["--text", "x", "--ctx", "2"], "ctx"),
     (["--text", "x", "--dense-threshold", "0"], "dense_threshold"), (["--file", "/no/such.txt"], "not found"),
     (["--text", "x", "--max-tokens", "nan"], "invalid int")],
)  # fmt: skip
def test_eval_bad_input_exits_2_with_one_line(trained: str, capsys: pytest.CaptureFixture[str], extra: list[str],
                                              needle: str) -> None:  # fmt: skip
    assert needle in fails(capsys, ["features", "eval", *M, "--sae", trained, *extra])


def test_eval_bad_files(trained: str, capsys: pytest.CaptureFixture[str], tmp_path: Path) -> None:
    from headscope.cli import features as cli_features

    big = tmp_path / "big.txt"
    big.write_bytes(b"a" * (cli_features.EVAL_MAX_FILE_BYTES + 1))
    bad = tmp_path / "bad.jsonl"
    bad.write_text('{"text": "fine"}\n{"text": 3}\n')
    binary = tmp_path / "bin.txt"
    binary.write_bytes(b"\xff\xfe\x00bad")
    assert "larger than" in fails(capsys, ["features", "eval", *M, "--sae", trained, "--file", str(big)])
    assert "line 2" in fails(capsys, ["features", "eval", *M, "--sae", trained, "--file", str(bad)])
    assert "UTF-8" in fails(capsys, ["features", "eval", *M, "--sae", trained, "--file", str(binary)])


# -- to_argv: the exact inverse of the parser --------------------------------------------------------------------
def test_to_argv_round_trips_every_features_config() -> None:
    from headscope.cli import build_parser
    from headscope.cli.features import config_of, to_argv
    from headscope.features.evaluate import EvalConfig
    from headscope.features.index import IndexConfig
    from headscope.features.train import TrainConfig

    configs = [
        TrainConfig("attn_out", 3, 96, "batchtopk", k=7, tokens=5000, batch_size=64, lr=3.5e-4, l1=0.25, seed=9,
                    ctx=32, eval_tokens=0, corpus="excerpt", dtype="float32"),
        TrainConfig("resid_post", 0, 8, k=8),
        IndexConfig(tokens=999, contexts=3, before=1, after=0, bins=7, logits=2, ctx=16, batch_size=3,
                    corpus="excerpt"),
        IndexConfig(),
        EvalConfig(ctx=17, batch_size=2, max_tokens=777, dense_threshold=0.0625, min_ablation_nats=0.1),
        EvalConfig(),
    ]  # fmt: skip
    for config in configs:
        argv = to_argv(config, sae="x", text="-t")
        assert config_of(build_parser().parse_args(argv)) == config, argv
    with pytest.raises(TypeError):
        to_argv(object())
