"""Head scores from discrete codes (papers.md §2.5) and the metrics that compare scores with a ground truth (§2.6).

Scores are kept as raw counts: the reference code's softmax over heads preserves ranks, so ROC-AUC, rankings and
Spearman are unchanged, and counts are easier to read.
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np
import torch
from jaxtyping import Bool, Int
from scipy.stats import rankdata, spearmanr
from torch import Tensor


def node_scores(
    codes: Int[Tensor, "batch head_total"], positive: Bool[Tensor, " batch"]
) -> Int[Tensor, " head_total"]:
    """score_h = |codes of h on positives \\ codes of h on negatives|."""
    n_codes = int(codes.max()) + 1 if codes.numel() else 1
    seen_pos = _code_sets(codes[positive], n_codes)
    seen_neg = _code_sets(codes[~positive], n_codes)
    return (seen_pos & ~seen_neg).sum(1)


def _code_sets(codes: Tensor, n_codes: int) -> Bool[Tensor, "head_total code"]:
    seen = torch.zeros(codes.shape[1], n_codes, dtype=torch.bool)
    if codes.shape[0]:
        heads = torch.arange(codes.shape[1]).expand_as(codes)
        seen[heads.reshape(-1), codes.reshape(-1).cpu()] = True
    return seen


def _pair_keys(codes: Tensor, n_codes: int) -> Tensor:
    """One int64 key per (example, h1, h2, c1, c2) with h1 ≠ h2, deduplicated."""
    n, h = codes.shape
    c = codes.cpu().long()
    h1 = torch.arange(h).view(1, h, 1)
    h2 = torch.arange(h).view(1, 1, h)
    keys = ((h1 * h + h2) * n_codes + c.view(n, h, 1)) * n_codes + c.view(n, 1, h)
    keys = keys[(h1 != h2).expand(n, h, h)]
    return torch.unique(keys)


def pair_scores(
    codes: Int[Tensor, "batch head_total"], positive: Bool[Tensor, " batch"]
) -> Int[Tensor, "head_total head_total"]:
    """pair(h1, h2) = #{(c1, c2) seen together on some positive and on no negative}."""
    h = codes.shape[1]
    n_codes = int(codes.max()) + 1 if codes.numel() else 1
    pos, neg = _pair_keys(codes[positive], n_codes), _pair_keys(codes[~positive], n_codes)
    only = pos[~torch.isin(pos, neg)]
    pairs = torch.div(only, n_codes * n_codes, rounding_mode="floor")
    return torch.bincount(pairs, minlength=h * h).view(h, h)


def edge_scores(
    codes: Int[Tensor, "batch head_total"], positive: Bool[Tensor, " batch"]
) -> Int[Tensor, " head_total"]:
    """Sort ordered pairs by pair score (stable: ties keep index order), flatten into heads (two per pair), keep
    the first n_heads²/2 entries, and count each head's appearances there."""
    h = codes.shape[1]
    ps = pair_scores(codes, positive).flatten()
    off_diag = ~torch.eye(h, dtype=torch.bool).flatten()
    order = torch.nonzero(off_diag).flatten()
    order = order[torch.sort(ps[order], descending=True, stable=True).indices]
    heads = torch.stack([order // h, order % h], dim=1).flatten()[: (h * h) // 2]
    return torch.bincount(heads, minlength=h)


# ---- metrics -----------------------------------------------------------------------------------------------------
def roc_auc(scores: np.ndarray, truth: np.ndarray) -> float | None:
    """P(score of a random positive > a random negative), ties counting ½ (= trapezoidal ROC area). None when
    the truth has no positives or no negatives."""
    s, t = np.asarray(scores, dtype=float).ravel(), np.asarray(truth, dtype=bool).ravel()
    n_pos, n_neg = int(t.sum()), int((~t).sum())
    if n_pos == 0 or n_neg == 0:
        return None
    ranks = rankdata(s)  # average ranks for ties
    return float((ranks[t].sum() - n_pos * (n_pos + 1) / 2) / (n_pos * n_neg))


def roc_curve(scores: np.ndarray, truth: np.ndarray) -> tuple[list[float], list[float]]:
    """(FPR, TPR) points over all thresholds, from (0, 0) to (1, 1)."""
    s, t = np.asarray(scores, dtype=float).ravel(), np.asarray(truth, dtype=bool).ravel()
    n_pos, n_neg = max(int(t.sum()), 1), max(int((~t).sum()), 1)
    fpr, tpr = [0.0], [0.0]
    for thr in np.unique(s)[::-1]:
        sel = s >= thr
        fpr.append(float((sel & ~t).sum() / n_neg))
        tpr.append(float((sel & t).sum() / n_pos))
    return fpr, tpr


def top_k(scores: np.ndarray, k: int) -> np.ndarray:
    """Indices of the k best heads (ties broken by head index: earlier layers first)."""
    return np.argsort(-np.asarray(scores, dtype=float).ravel(), kind="stable")[:k]


def precision_recall_at(scores: np.ndarray, truth: np.ndarray, k: int) -> tuple[float, float]:
    t = np.asarray(truth, dtype=bool).ravel()
    hits = int(t[top_k(scores, k)].sum())
    return (hits / k if k else 1.0), (hits / int(t.sum()) if t.any() else 1.0)


def spearman(a: np.ndarray, b: np.ndarray) -> float | None:
    a, b = np.asarray(a, dtype=float).ravel(), np.asarray(b, dtype=float).ravel()
    if np.ptp(a) == 0 or np.ptp(b) == 0:
        return None
    rho = float(spearmanr(a, b).statistic)  # pyright: ignore[reportAttributeAccessIssue]
    return None if math.isnan(rho) else rho


def metrics_json(scores: np.ndarray, truth: np.ndarray, effects: np.ndarray, k: int) -> dict[str, Any]:
    """ROC-AUC, ROC points and precision/recall at k against a binary truth; Spearman against |patching effect|.
    `scores` are what heads are ranked by (magnitudes for signed estimates)."""
    s = np.asarray(scores, dtype=float).ravel()
    p, r = precision_recall_at(s, truth, k)
    fpr, tpr = roc_curve(s, truth)
    return {
        "roc_auc": roc_auc(s, truth),
        "precision": p,
        "recall": r,
        "spearman": spearman(s, np.abs(effects)),
        "roc": {"fpr": fpr, "tpr": tpr},
    }


def threshold_truth(effects: np.ndarray, gap: float, frac: float, rows: list[int]) -> np.ndarray:
    """The ground-truth mask: heads of the analysed `rows` whose |patching effect| ≥ frac · |clean − corrupted|."""
    truth = np.zeros(np.shape(effects), dtype=bool)
    truth[rows] = np.abs(np.asarray(effects)[rows]) >= frac * abs(gap)
    return truth
