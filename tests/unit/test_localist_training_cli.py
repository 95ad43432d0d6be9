"""`headscope localist train|sweep`: JSON output and one-line errors (a tiny corpus stands in for Wikipedia)."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path

import pytest
import torch

from headscope.cli import main
from headscope.data import excerpt_articles
from headscope.localist import train_sweep, training
from headscope.localist.corpus import pack_windows, train_tokenizer


@pytest.fixture(autouse=True)
def restore_threads() -> Iterator[None]:
    """The CLI sets its own thread count; put back what the session had."""
    before = torch.get_num_threads()
    yield
    torch.set_num_threads(before)


@pytest.fixture
def tiny_corpus(monkeypatch: pytest.MonkeyPatch) -> training.Corpus:
    arts = excerpt_articles()
    tok = train_tokenizer((a.text for a in arts[:30]), vocab_size=300)
    corpus = training.Corpus(tok, pack_windows(tok, arts[:30], 32), pack_windows(tok, arts[30:], 32, 8))
    monkeypatch.setattr(training, "build_corpus", lambda *a: corpus)
    monkeypatch.setattr(train_sweep, "build_corpus", lambda *a: corpus)
    return corpus


def test_train_prints_json_and_writes_a_checkpoint(
    tiny_corpus: training.Corpus, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    out = tmp_path / "run"
    assert main(["localist", "train", "--lambda", "0.5", "--steps", "3", "--out", str(out), "--json"]) == 0
    payload = json.loads(capsys.readouterr().out)
    assert payload["config"]["lam"] == 0.5 and payload["steps_done"] == 3
    assert {"perplexity", "accuracy", "mean_entropy_bits", "pointer_fidelity"} <= set(payload["metrics"])
    assert (out / "model.safetensors").is_file() and (out / "optimizer.safetensors").is_file()


def test_sweep_prints_the_table_rows(
    tiny_corpus: training.Corpus, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    table = tmp_path / "table.json"
    argv = ["localist", "sweep", "--lambdas", "0,1", "--no-progressive", "--steps", "2", "--work",
            str(tmp_path / "w"), "--out", str(table), "--json"]  # fmt: skip
    assert main(argv) == 0
    rows = json.loads(capsys.readouterr().out)["rows"]
    assert [r["lambda"] for r in rows] == [0.0, 1.0] and json.loads(table.read_text())["rows"] == rows


@pytest.mark.parametrize(
    ("argv", "match"),
    [
        (["localist", "train", "--lambda", "2", "--out", "x"], "lam must be in"),
        (["localist", "train", "--lambda", "0.5", "--beta", "0.5", "--out", "x"], "beta must be in"),
        (["localist", "sweep", "--lambdas", "0,abc", "--out", "t.json"], "comma-separated"),
        (["localist", "sweep", "--lambdas", "0,1", "--ship", "--out", "t.json"], "--ship needs"),
    ],
)
def test_bad_input_is_one_line_and_non_zero(
    argv: list[str], match: str, capsys: pytest.CaptureFixture[str]
) -> None:
    assert main(argv) == 2
    err = capsys.readouterr().err.strip()
    assert match in err and len(err.splitlines()) == 1
