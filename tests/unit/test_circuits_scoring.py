"""Node/edge scores against a hand-computed example; ROC-AUC against a brute-force pair count."""

from __future__ import annotations

import itertools

import numpy as np
import pytest
import torch

from headscope.circuits import scoring

# 4 examples × 3 heads; the first two are positives.
CODES = torch.tensor([[0, 1, 2], [0, 3, 2], [5, 1, 2], [6, 1, 4]])
POSITIVE = torch.tensor([True, True, False, False])


def test_node_scores_by_hand() -> None:
    # head 0: pos {0}, neg {5, 6} → 1; head 1: pos {1, 3}, neg {1} → 1; head 2: pos {2}, neg {2, 4} → 0
    assert scoring.node_scores(CODES, POSITIVE).tolist() == [1, 1, 0]


def test_pair_scores_by_hand() -> None:
    # (0,1): pos {(0,1), (0,3)}, neg {(5,1), (6,1)} → 2; (0,2): pos {(0,2)}, neg {(5,2), (6,4)} → 1;
    # (1,2): pos {(1,2), (3,2)}, neg {(1,2), (1,4)} → 1.  Symmetric; the diagonal is never scored.
    expected = [[0, 2, 1], [2, 0, 1], [1, 1, 0]]
    assert scoring.pair_scores(CODES, POSITIVE).tolist() == expected


def test_edge_scores_by_hand() -> None:
    # Ordered pairs sorted by score (stable): (0,1) (1,0) (0,2) (1,2) (2,0) (2,1) → heads 0 1 1 0 0 2 …;
    # keep the first 3²//2 = 4 entries: head 0 twice, head 1 twice, head 2 never.
    assert scoring.edge_scores(CODES, POSITIVE).tolist() == [2, 2, 0]


def _brute_auc(s: np.ndarray, t: np.ndarray) -> float:
    pos, neg = s[t], s[~t]
    wins = sum(1.0 if a > b else 0.5 if a == b else 0.0 for a, b in itertools.product(pos, neg))
    return wins / (len(pos) * len(neg))


def test_roc_auc_matches_brute_force_with_ties() -> None:
    rng = np.random.default_rng(0)
    for _ in range(20):
        s = rng.integers(0, 4, size=30).astype(float)
        t = rng.random(30) < 0.3
        if t.any() and (~t).any():
            assert scoring.roc_auc(s, t) == pytest.approx(_brute_auc(s, t))
    assert scoring.roc_auc(np.array([3, 2, 1, 0]), np.array([1, 0, 1, 0], bool)) == 0.75
    assert scoring.roc_auc(np.ones(3), np.ones(3, bool)) is None


def test_roc_curve_area_equals_auc() -> None:
    rng = np.random.default_rng(1)
    s, t = rng.normal(size=50), rng.random(50) < 0.4
    fpr, tpr = scoring.roc_curve(s, t)
    assert (fpr[0], tpr[0], fpr[-1], tpr[-1]) == (0.0, 0.0, 1.0, 1.0)
    assert np.trapezoid(tpr, fpr) == pytest.approx(scoring.roc_auc(s, t))


def test_precision_recall_at_k() -> None:
    s = np.array([0.9, 0.1, 0.8, 0.7, 0.0])
    t = np.array([1, 1, 0, 1, 0], bool)
    assert scoring.precision_recall_at(s, t, 3) == (pytest.approx(2 / 3), pytest.approx(2 / 3))
