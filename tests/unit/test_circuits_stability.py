"""Stability: the bootstrap recomputed by hand (same draws, brute-force AUC, set Jaccard) on synthetic stored
values; a perfectly consistent method is stable, a random one is flagged."""

from __future__ import annotations

import itertools

import numpy as np
import pytest
import torch

from headscope.circuits import scoring
from headscope.circuits.stability import Samples, stability, warnings

N_PAIRS, N_L, N_H = 12, 3, 4


def _samples(seed: int = 0) -> Samples:
    g = torch.Generator().manual_seed(seed)
    base = torch.zeros(N_L, N_H)
    base[1, 2], base[2, 0], base[0, 3] = 3.0, -2.0, 1.5
    effects = base + 0.8 * torch.randn(N_PAIRS, N_L, N_H, generator=g)
    gradient = {
        "consistent": effects * 0.9,  # tracks the truth pair by pair
        "noise": torch.randn(N_PAIRS, N_L, N_H, generator=g),
    }
    codes = torch.randint(0, 5, (2 * N_PAIRS, N_L * N_H), generator=g)
    gap = torch.full((N_PAIRS,), 4.0) + 0.1 * torch.randn(N_PAIRS, generator=g)
    return Samples(effects, gap, gradient, (codes,), N_PAIRS, True, (0,), [0, 1, 2], 0.3)


def _auc(s: np.ndarray, t: np.ndarray) -> float | None:
    if t.all() or not t.any():
        return None
    wins = sum(1.0 if a > b else 0.5 if a == b else 0.0 for a, b in itertools.product(s[t], s[~t]))
    return wins / (int(t.sum()) * int((~t).sum()))


def test_bootstrap_matches_a_hand_recomputation() -> None:
    s = _samples()
    full = {m: np.abs(v.mean(0)).numpy().ravel() for m, v in s.gradient.items()}
    full["sae_node"] = scoring.node_scores(s.codes[0], torch.arange(2 * N_PAIRS) < N_PAIRS).numpy()
    k, n_boot = 3, 25
    st = stability(s, full, k, n_boot, seed=7)
    gen = torch.Generator().manual_seed(7)
    jac: dict[str, list[float]] = {m: [] for m in full}
    aucs: dict[str, list[float]] = {m: [] for m in full}
    for _ in range(n_boot):
        idx = torch.randint(0, N_PAIRS, (N_PAIRS,), generator=gen)
        eff = s.effects[idx].mean(0).numpy().ravel()
        truth = np.abs(eff) >= 0.3 * abs(float(s.gap[idx].mean()))
        rows = torch.cat([idx, idx + N_PAIRS])
        scores = {m: np.abs(v[idx].mean(0).numpy().ravel()) for m, v in s.gradient.items()}
        scores["sae_node"] = scoring.node_scores(
            s.codes[0][rows], torch.arange(2 * N_PAIRS) < N_PAIRS
        ).numpy()
        for m, v in scores.items():
            a, b = set(np.argsort(-v, kind="stable")[:k]), set(np.argsort(-full[m], kind="stable")[:k])
            jac[m].append(len(a & b) / len(a | b))
            auc = _auc(v.astype(float), truth)
            if auc is not None:
                aucs[m].append(auc)
    got = {m.method: m for m in st.methods}
    for m in full:
        assert got[m].jaccard_mean == pytest.approx(np.mean(jac[m]))
        assert got[m].roc_auc_mean == pytest.approx(np.mean(aucs[m]))
        assert got[m].roc_auc_std == pytest.approx(np.std(aucs[m]))
        lo, hi = np.quantile(aucs[m], [0.025, 0.975])
        assert got[m].roc_auc_ci == pytest.approx((lo, hi))
    consistent, noise = got["consistent"].roc_auc_mean, got["noise"].roc_auc_mean
    assert consistent is not None and noise is not None
    assert got["consistent"].stable and consistent > noise
    assert not got["noise"].stable
    assert any(w.startswith("noise:") for w in warnings(st)) and not any(
        w.startswith("consistent:") for w in warnings(st)
    )


def test_same_seed_same_result() -> None:
    s = _samples()
    full = {m: np.abs(v.mean(0)).numpy().ravel() for m, v in s.gradient.items()}
    assert stability(s, full, 3, 10, seed=1).methods == stability(s, full, 3, 10, seed=1).methods
