"""Faithfulness curves and `ablate` against plain hooked forwards (no stacked copies).

Oracles: at k = all heads nothing is ablated, so m(C) is the clean metric of a plain forward; at k = 0 every head
is ablated, which we redo by hand with hooks that write the negatives' per-position mean z; `ablate` of a
selection equals the same hand-made ablation of just those heads.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import pytest
import torch

from headscope.circuits import patching
from headscope.circuits.faithfulness import ablate, faithfulness_curves, sizes_for
from headscope.circuits.tasks import custom_task
from headscope.models import ModelHandle, hooks
from headscope.selection import HeadSet

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


def _hand_ablated(handle: ModelHandle, prep: patching.Prepared, heads: set[tuple[int, int]]) -> float:
    means = [z.mean(0) for z in patching.z_cache(handle, prep.corrupt)]  # per position, over negatives

    def hook(layer: int) -> Any:
        def f(z: torch.Tensor, hook: Any) -> torch.Tensor:
            z = z.clone()
            for lay, head in heads:
                if lay == layer:
                    z[:, :, head] = means[layer][None, :, head]
            return z

        return f

    fwd = [(hooks.z(layer), hook(layer)) for layer in {lay for lay, _ in heads}]
    logits = handle.forward(prep.clean.ids, fwd_hooks=fwd)
    return float(patching.logit_diff(patching.final_logits(logits, prep.clean), prep.answers).mean())


def test_curve_ends_are_the_clean_and_the_fully_ablated_model(tiny: ModelHandle) -> None:
    prep = patching.prepare(tiny, custom_task(SPEC, tiny.tokenizer))
    n_l, n_h = tiny.facts.n_layers, tiny.facts.n_heads
    rng = np.random.default_rng(0)
    rankings = {"a": rng.normal(size=(n_l, n_h)), "b": rng.normal(size=(n_l, n_h))}
    f = faithfulness_curves(tiny, prep, rankings, list(range(n_l)))
    clean = _hand_ablated(tiny, prep, set())
    every = {(lay, h) for lay in range(n_l) for h in range(n_h)}
    assert f.full_metric == pytest.approx(clean, abs=1e-5)
    assert f.empty_metric == pytest.approx(_hand_ablated(tiny, prep, every), abs=1e-5)
    for c in f.curves:
        assert c.sizes == tuple(sizes_for(n_l * n_h)) and c.sizes[0] == 0 and c.sizes[-1] == n_l * n_h
        assert c.kept[0] == pytest.approx(0.0, abs=1e-6) and c.kept[-1] == pytest.approx(1.0, abs=1e-6)
        assert c.removed[0] == pytest.approx(1.0, abs=1e-6) and c.removed[-1] == pytest.approx(0.0, abs=1e-6)
    # one middle point of method "a", recomputed by hand: its top 2 heads kept, everything else ablated
    order = np.argsort(-rankings["a"].ravel(), kind="stable")
    top2 = {(int(i) // n_h, int(i) % n_h) for i in order[:2]}
    m = _hand_ablated(tiny, prep, every - top2)
    curve = f.curve("a")
    assert curve is not None
    i = curve.sizes.index(2)
    assert curve.kept[i] == pytest.approx((m - f.empty_metric) / (f.full_metric - f.empty_metric), abs=1e-4)
    x = np.array(curve.sizes) / (n_l * n_h)
    assert curve.cpr == pytest.approx(float(np.trapezoid(curve.kept, x)))


def test_ablate_a_selection(tiny_llama: ModelHandle) -> None:
    prep = patching.prepare(tiny_llama, custom_task(SPEC, tiny_llama.tokenizer))
    sel = tiny_llama.head_set("0.1, 1.*")
    res = ablate(tiny_llama, prep, sel)
    heads = set(sel.heads)
    every = set(HeadSet.parse("*.*", 2, tiny_llama.facts.n_heads).heads)
    assert res.clean_metric == pytest.approx(_hand_ablated(tiny_llama, prep, set()), abs=1e-5)
    assert res.selection_ablated == pytest.approx(_hand_ablated(tiny_llama, prep, heads), abs=1e-5)
    assert res.others_ablated == pytest.approx(_hand_ablated(tiny_llama, prep, every - heads), abs=1e-5)
    assert res.all_ablated == pytest.approx(_hand_ablated(tiny_llama, prep, every), abs=1e-5)
    expected = (res.others_ablated - res.all_ablated) / (res.clean_metric - res.all_ablated)
    assert res.faithfulness == pytest.approx(expected)
    assert res.heads == "0.1, 1.*" and res.n_heads == 1 + tiny_llama.facts.n_heads


def test_sizes_grid() -> None:
    assert sizes_for(270) == [0, 3, 6, 14, 27, 54, 135, 270]
    assert sizes_for(8) == [0, 1, 2, 4, 8]
