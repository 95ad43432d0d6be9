"""`circuits run` saves its SAE beside the report (SAELens format) and the report names it (`sae`: variant, seed,
config, path). Oracle: the SAE loaded back through headscope.features, applied to the task's head outputs read
again, gives the report's sae_node scores; the variant is recorded and `--sae-variant` is checked before any model
loads."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch
from safetensors.torch import load_file

from headscope.circuits import patching
from headscope.circuits.report import read_report
from headscope.circuits.tasks import custom_task
from headscope.circuits.variants import DEFAULT_VARIANT, VARIANTS
from headscope.circuits.variants_fit import latent_acts, node_scores
from headscope.circuits.variants_read import read_heads
from headscope.circuits.variants_score import sae_stored
from headscope.cli import main
from headscope.features import discrete, saes
from headscope.models import ModelHandle

SPEC = {
    "name": "letters",
    "positive": [
        {"prompt": "abcabcab", "answer": "c", "wrong": "a"},
        {"prompt": "xyzxyzxy", "answer": "z", "wrong": "x"},
        {"prompt": "pqrpqrpq", "answer": "r", "wrong": "p"},
    ],
    "negative": [{"prompt": "abcdefgh"}, {"prompt": "xyzuvwst"}, {"prompt": "pqrstuvw"}],
}


@pytest.fixture(autouse=True)
def _threads(one_thread: None) -> None:
    return None


def _run(tmp_path: Path, variant: str, *extra: str) -> dict:
    task = tmp_path / "task.json"
    task.write_text(json.dumps(SPEC))
    argv = ["circuits", "run", "--task", "custom", "--task-file", str(task), "--model", "tiny-gpt2", "--epochs",
            "15", "--n-examples", "3", "--no-faithfulness", "--sae-variant", variant, "--out",
            str(tmp_path / "r.json"), "--json", *extra]  # fmt: skip
    assert main(argv) == 0
    return read_report(tmp_path / "r.json")


@pytest.mark.parametrize("variant", ["reference", "head_norm", "soft_mi", "centered"])
def test_saved_sae_reproduces_the_reports_scores(
    tmp_path: Path, variant: str, tiny_gpt2: ModelHandle
) -> None:
    report = _run(tmp_path, variant, "--seed", "2")
    sae = report["sae"]
    folder = Path(sae["path"])
    assert folder == tmp_path / "r.sae" and report["sae_file"] == str(folder)
    assert (sae["variant"], sae["seed"]) == (variant, 2) and report["config"]["sae_variant"] == variant
    assert sae["config"]["read"] == "mean" and sae["config"]["sae"]["epochs"] == 15
    generic = saes.load_folder(folder)  # through the features package, as any SAELens SAE
    assert isinstance(generic, discrete.DiscreteCircuitSAE)
    meta = json.loads((folder / "cfg.json").read_text())["metadata"]
    assert meta["variant"] == variant and meta["layers"] == [0, 1] and meta["model_name"] == "tiny-gpt2"
    module = discrete.load(folder)
    prep = patching.prepare(tiny_gpt2, custom_task(SPEC, tiny_gpt2.tokenizer))
    x = read_heads(tiny_gpt2, prep, ("mean",), [0, 1])["mean"]
    if meta["head_scaling"] is not None:
        parts = load_file(str(folder / meta["head_scaling"]))
        x = (x - parts.get("shift", torch.zeros(1))[None]) / parts.get("scale", torch.ones(x.shape[1]))[
            None, :, None
        ]
    trained = type("T", (), {"sae": module})()
    v = VARIANTS[variant]
    stored = sae_stored(latent_acts(trained, x), 3, prep.paired, v.code, v.k)  # type: ignore[arg-type]
    want = node_scores(v, stored)
    np.testing.assert_allclose(np.asarray(report["methods"]["sae_node"]["scores"]).ravel(), want, rtol=1e-5)


def test_no_report_file_no_sae_file(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    task = tmp_path / "task.json"
    task.write_text(json.dumps(SPEC))
    argv = ["circuits", "run", "--task", "custom", "--task-file", str(task), "--model", "tiny-gpt2", "--epochs", "5",
            "--n-examples", "3", "--no-faithfulness", "--out", "-", "--print-report", "--json"]  # fmt: skip
    assert main(argv) == 0
    report = json.loads(capsys.readouterr().out)
    assert report["sae"]["path"] is None and report["sae"]["variant"] == DEFAULT_VARIANT
    assert not list(tmp_path.glob("*.sae"))


def test_unknown_or_baseline_variant_is_one_line(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    for name, expected in (("bogus", "sae_variant must be one of"), ("mean_gap", "baseline without an SAE")):
        argv = ["circuits", "run", "--model", "no-such-model", "--sae-variant", name, "--out", "-"]
        assert main(argv) == 2
        err = capsys.readouterr().err.strip()
        assert expected in err and "\n" not in err  # refused before the (missing) model is looked up
