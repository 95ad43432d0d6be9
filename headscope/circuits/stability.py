"""Stability of each method's circuit under resampling, with no new forward passes.

A bootstrap replicate draws the prompt pairs with replacement and recomputes, from values stored by the run:
the ground truth (per-pair patching effects, thresholded as in the run), the gradient methods' scores (per-pair
attributions) and the SAE methods' scores (codes of the drawn pairs' positive and negative examples). The SAE
seed varies too: besides the run's SAE, `stability_seeds − 1` more are trained on the same head outputs (a new
training split and initialisation each), and replicate i uses SAE i mod n. For each method: the Jaccard index of
each replicate's top k with the run's top k (k = the circuit's size), and the replicate ROC-AUCs against their own
resampled truth — mean, std and a percentile interval. A method whose mean Jaccard is below 0.5 is flagged.
"""

from __future__ import annotations

import time
from dataclasses import dataclass

import numpy as np
import torch
from torch import Tensor

from headscope.circuits import scoring
from headscope.circuits.result import MethodStability, Stability
from headscope.circuits.variants_fit import edge_scores as variant_edge_scores
from headscope.circuits.variants_fit import node_scores as variant_node_scores
from headscope.circuits.variants_score import Stored
from headscope.progress import StepCounter

JACCARD_STABLE = 0.5
CONFIDENCE = 0.95


@dataclass(frozen=True)
class Samples:
    """What a run keeps for the bootstrap: per-pair values and SAE codes over all examples (pairs first as
    positives 0..B−1, then negatives B..2B−1)."""

    effects: Tensor  # [pair, layer, head]: ground-truth patching effect per pair
    gap: Tensor  # [pair]: clean − corrupted metric per pair
    gradient: dict[str, Tensor]  # method → [pair, layer, head]
    codes: tuple[
        Tensor, ...
    ]  # one [positives + negatives, head_total] code matrix per SAE seed (the run's first)
    n_negative: int
    paired: bool  # negative i belongs to pair i: resampled together
    seeds: tuple[int, ...]
    rows: list[int]  # analysed layers
    threshold_frac: float
    sae_variant: str = "reference"  # whose node score `sae_node` is (circuits/variants.py)
    sae_stored: tuple[Stored, ...] = ()  # per SAE seed: the variant's stored per-example data (codes' source)


def _jaccard(a: np.ndarray, b: np.ndarray) -> float:
    sa, sb = set(a.tolist()), set(b.tolist())
    return len(sa & sb) / len(sa | sb) if sa | sb else 1.0


def _sae_scores(codes: Tensor, idx: Tensor, neg: Tensor, n_pos: int) -> dict[str, np.ndarray]:
    rows = torch.cat([idx, neg + n_pos])
    positive = torch.arange(len(rows)) < len(idx)
    c = codes[rows]
    return {
        "sae_node": scoring.node_scores(c, positive).numpy(),
        "sae_edge": scoring.edge_scores(c, positive).numpy(),
    }


def _replicate(
    s: Samples, idx: Tensor, neg: Tensor, seed_i: int, methods: list[str]
) -> tuple[np.ndarray, dict[str, np.ndarray]]:
    """(truth over analysed heads, method → ranking values over analysed heads) for one resample."""
    effects = s.effects[idx].mean(0)[s.rows].numpy()
    truth = np.abs(effects) >= s.threshold_frac * abs(float(s.gap[idx].mean()))
    out: dict[str, np.ndarray] = {}
    if any(m.startswith("sae_") for m in methods) and s.sae_stored:
        sub = s.sae_stored[seed_i].take(idx, neg)
        out.update(sae_node=variant_node_scores(s.sae_variant, sub), sae_edge=variant_edge_scores(sub))
    elif any(m.startswith("sae_") for m in methods):
        out.update(_sae_scores(s.codes[seed_i], idx, neg, s.effects.shape[0]))
    for m, per_pair in s.gradient.items():
        out[m] = np.abs(per_pair[idx].mean(0)[s.rows].numpy())
    return truth, {m: np.asarray(out[m], dtype=float).ravel() for m in methods}


def _interval(values: list[float]) -> tuple[float, float]:
    lo, hi = np.quantile(values, [(1 - CONFIDENCE) / 2, (1 + CONFIDENCE) / 2])
    return float(lo), float(hi)


def stability(
    s: Samples,
    full: dict[str, np.ndarray],
    k: int,
    n_bootstrap: int,
    seed: int,
    progress: StepCounter | None = None,
) -> Stability:
    """`full`: method → the run's ranking values over the analysed heads (flattened)."""
    t0 = time.perf_counter()
    methods = list(full)
    gen = torch.Generator().manual_seed(seed)
    n = s.effects.shape[0]
    top = {m: scoring.top_k(full[m], k) for m in methods}
    jac: dict[str, list[float]] = {m: [] for m in methods}
    aucs: dict[str, list[float]] = {m: [] for m in methods}
    for i in range(n_bootstrap):
        idx = torch.randint(0, n, (n,), generator=gen)
        neg = idx if s.paired else torch.randint(0, s.n_negative, (s.n_negative,), generator=gen)
        truth, scores = _replicate(s, idx, neg, i % len(s.codes), methods)
        for m in methods:
            jac[m].append(_jaccard(scoring.top_k(scores[m], k), top[m]))
            auc = scoring.roc_auc(scores[m], truth)
            if auc is not None:
                aucs[m].append(auc)
        if progress is not None:
            progress(i + 1, n_bootstrap)
    return Stability(
        n_bootstrap, s.seeds, CONFIDENCE, JACCARD_STABLE,
        tuple(_method(m, k, jac[m], aucs[m]) for m in methods), time.perf_counter() - t0,
    )  # fmt: skip


def _method(m: str, k: int, jac: list[float], aucs: list[float]) -> MethodStability:
    jm = float(np.mean(jac))
    if not aucs:
        return MethodStability(m, k, jm, _interval(jac), None, None, None, jm >= JACCARD_STABLE)
    return MethodStability(
        m,
        k,
        jm,
        _interval(jac),
        float(np.mean(aucs)),
        float(np.std(aucs)),
        _interval(aucs),
        jm >= JACCARD_STABLE,
    )


def warnings(st: Stability) -> list[str]:
    return [
        f"{m.method}: its top {m.k} heads change under resampling (mean Jaccard {m.jaccard_mean:.2f} < "
        f"{st.jaccard_threshold}); treat its circuit as unstable"
        for m in st.methods
        if not m.stable
    ]
