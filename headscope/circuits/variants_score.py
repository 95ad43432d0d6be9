"""Node scores of the discrete-SAE variants and of the two baselines without an SAE, each a pure function of
per-example data stored by the run (`Stored`): codes or latent activations with the trained SAE fixed, or head
outputs. So a bootstrap resamples examples (`Stored.take`) and rescores without retraining.

Code representations of one (example, head), as a distribution q over bins (the SAE's latents, plus one "no latent
active" bin where the reference's argmax would silently report latent 0):
- `argmax`: one-hot on the largest latent (papers.md §2.4);
- `topk`: uniform over the k largest active latents (a set of codes, not one);
- `soft`: the activations normalised to sum 1;
- `magnitude`: the activations themselves (no normalisation, no silent bin): a head that writes little has little
  code mass, so its code changes weigh little.

Scores (papers.md §2.5 for the reference; the rest measured in bench/circuits_sae_variants.py):
- `set_difference`: |bins seen on positives \\ bins seen on negatives| (on argmax codes: the paper's node score);
- `mutual_information`: I(code; label) in nats, with q as a soft assignment: H(Σ π_y p_y) − Σ π_y H(p_y), p_y the
  class's mean q and π_y its share of examples (on argmax codes: the plug-in MI of the contingency table);
- `divergence`: total variation ½ Σ |p₊ − p₋| between the classes' code histograms;
- `rarity`: each bin unique to positives counted by its positive examples, weighted by −log of how often that bin
  occurs over all (example, head) cells: a code one head alone emits, on positives only, weighs most;
- `separation`: the largest effect size (|gap| / pooled sd) of any one latent between the classes;
- `paired`: the mean total variation between each positive's q and its own corrupted partner's (unpaired tasks:
  over every positive × negative combination);
- baselines: `mean_gap` ‖mean₊ x − mean₋ x‖₂ per head; `probe` a per-head ridge classifier, cross-validated over
  folds of pairs, scored by its mean held-out margin y·ŷ (y = ±1).
All arithmetic in float64 numpy (single-threaded, so the score does not depend on torch's thread count).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, replace
from typing import Literal

import numpy as np
from torch import Tensor

from headscope.registry import Registry

Code = Literal["argmax", "topk", "soft", "magnitude"]
CODES: tuple[str, ...] = ("argmax", "topk", "soft", "magnitude")
PROBE_FOLDS = 4
PROBE_RIDGE = 1.0  # λ relative to the mean kernel diagonal: a unit-scale ridge on normalised head outputs


@dataclass(frozen=True)
class Stored:
    """Per-example data one run keeps (rows = examples, positives first), everything a score needs: for an SAE
    variant the argmax codes and the code distributions q of every example (the trained SAE fixed); for a baseline
    the Gram matrix of each head's outputs (as the SAE would see them)."""

    n_positive: int
    paired: bool  # row i and row n_positive + i are a prompt and its own corrupted partner
    codes: np.ndarray | None = (
        None  # [example, head_total] argmax of the latents (latent 0 when none is active)
    )
    q: np.ndarray | None = None  # [example, head_total, latent + 1] float64 (`distributions`)
    gram: np.ndarray | None = None  # [head_total, example, example] float64: x_i · x_j per head
    code: str = "argmax"  # how q was made (CODES)

    @property
    def n_examples(self) -> int:
        return int(self.codes.shape[0] if self.codes is not None else self.gram.shape[1])  # type: ignore[union-attr]

    def positive(self) -> np.ndarray:
        return np.arange(self.n_examples) < self.n_positive

    def take(self, pos_rows: Tensor | np.ndarray, neg_rows: Tensor | np.ndarray) -> Stored:
        """The stored rows of positives `pos_rows` (0..n_positive−1) and negatives `neg_rows` (0..), in that order;
        a resample of pairs passes the same indices twice and stays paired."""
        p, n = np.asarray(pos_rows, dtype=np.int64), np.asarray(neg_rows, dtype=np.int64)
        rows = np.concatenate([p, n + self.n_positive])
        paired = self.paired and np.array_equal(p, n)
        gram = None if self.gram is None else self.gram[:, rows][:, :, rows]
        pick = {k: getattr(self, k)[rows] for k in ("codes", "q") if getattr(self, k) is not None}
        return replace(self, n_positive=len(p), paired=paired, gram=gram, **pick)


def sae_stored(acts: Tensor, n_positive: int, paired: bool, code: str, k: int = 1) -> Stored:
    """What an SAE variant keeps of its latent activations [example, head_total, latent]."""
    f = acts.detach()
    q = distributions(f.double().numpy(), code, k)
    return Stored(n_positive, paired, codes=f.argmax(-1).numpy(), q=q, code=code)


def baseline_stored(x: Tensor, n_positive: int, paired: bool) -> Stored:
    """What a baseline keeps of the head outputs [example, head_total, d_model]: one Gram matrix per head."""
    xd = x.detach().double().numpy().transpose(1, 0, 2)
    return Stored(n_positive, paired, gram=np.einsum("hid,hjd->hij", xd, xd))


def distributions(f: np.ndarray, code: str, k: int = 1) -> np.ndarray:
    """q [example, head, latent + 1] from activations f [example, head, latent]: each code as a distribution;
    the last bin is "no latent active"."""
    q = np.zeros((*f.shape[:2], f.shape[2] + 1))
    if code == "magnitude":  # the activations themselves: mass, not probability
        q[..., :-1] = np.maximum(f, 0)
        return q
    silent = f.max(-1) <= 0
    if code == "soft":
        q[..., :-1] = np.maximum(f, 0) / np.where(silent, 1.0, f.sum(-1))[..., None]
    else:
        top = np.argsort(-f, axis=-1, kind="stable")[..., : 1 if code == "argmax" else k]
        np.put_along_axis(q, top, (np.take_along_axis(f, top, -1) > 0).astype(float), -1)
        q[..., :-1] /= np.maximum(q[..., :-1].sum(-1, keepdims=True), 1.0)
    q[..., -1] = silent
    return q


ScoreFn = Callable[[Stored], np.ndarray]
SCORES: Registry[ScoreFn] = Registry("SAE variant score")


@SCORES.register("set_difference")
def set_difference(s: Stored) -> np.ndarray:
    """On argmax codes, the reference exactly (latent 0 for a silent head, as the paper's argmax); on top-k or soft
    codes, over the bins each code puts mass on."""
    pos = s.positive()
    if s.code == "argmax":
        assert s.codes is not None
        n_bins = int(s.codes.max()) + 1
        return (_seen(s.codes[pos], n_bins) & ~_seen(s.codes[~pos], n_bins)).sum(1).astype(float)
    seen = _q(s) > 0
    return (seen[pos].any(0) & ~seen[~pos].any(0)).sum(1).astype(float)


def _seen(c: np.ndarray, n_bins: int) -> np.ndarray:
    seen = np.zeros((c.shape[1], n_bins), dtype=bool)
    seen[np.broadcast_to(np.arange(c.shape[1]), c.shape).ravel(), c.ravel()] = True
    return seen


def _q(s: Stored) -> np.ndarray:
    assert s.q is not None, "this score needs an SAE variant's code distributions"
    return s.q


def _entropy(p: np.ndarray) -> np.ndarray:
    return -(np.where(p > 0, p * np.log(np.where(p > 0, p, 1.0)), 0.0)).sum(-1)


def _class_means(s: Stored) -> tuple[np.ndarray, np.ndarray, float]:
    q, pos = _q(s), s.positive()
    return q[pos].mean(0), q[~pos].mean(0), float(pos.mean())


@SCORES.register("mutual_information")
def mutual_information(s: Stored) -> np.ndarray:
    p_pos, p_neg, pi = _class_means(s)
    mix = pi * p_pos + (1 - pi) * p_neg
    return _entropy(mix) - pi * _entropy(p_pos) - (1 - pi) * _entropy(p_neg)


@SCORES.register("divergence")
def divergence(s: Stored) -> np.ndarray:
    p_pos, p_neg, _ = _class_means(s)
    return 0.5 * np.abs(p_pos - p_neg).sum(-1)


@SCORES.register("rarity")
def rarity(s: Stored) -> np.ndarray:
    q, pos = _q(s), s.positive()
    weight = -np.log(np.maximum(q.sum((0, 1)) / (q.shape[0] * q.shape[1]), 1e-300))  # per bin, over all cells
    unique = (q[pos] > 0).any(0) & ~(q[~pos] > 0).any(0)  # [head, bin]
    return (q[pos].sum(0) * unique * weight).sum(-1)


@SCORES.register("separation")
def separation(s: Stored) -> np.ndarray:
    """The head's most separating code: max over latents of |mean₊ q_j − mean₋ q_j| / pooled sd_j (Cohen's d of
    latent j between the classes); the latent it names is readable as "the code that tells the classes apart".
    A latent silent on every example scores 0; the sd floor is 1e-6 of the largest sd (scale-free)."""
    q, pos = _q(s)[..., :-1], s.positive()
    gap = np.abs(q[pos].mean(0) - q[~pos].mean(0))
    sd = np.sqrt(pos.mean() * q[pos].var(0) + (1 - pos.mean()) * q[~pos].var(0))
    floor = 1e-6 * float(sd.max()) if sd.size and sd.max() > 0 else 1.0
    return (gap / np.maximum(sd, floor)).max(-1)


@SCORES.register("paired")
def paired(s: Stored) -> np.ndarray:
    q, n = _q(s), s.n_positive
    if s.paired:
        return 0.5 * np.abs(q[:n] - q[n:]).sum(-1).mean(0)
    return np.mean([0.5 * np.abs(q[:n] - q[j]).sum(-1).mean(0) for j in range(n, q.shape[0])], axis=0)


def _gram(s: Stored) -> np.ndarray:
    assert s.gram is not None, "this score needs a baseline's Gram matrices"
    return s.gram


@SCORES.register("mean_gap")
def mean_gap(s: Stored) -> np.ndarray:
    """‖mean₊ x − mean₋ x‖₂ from the Gram matrix: w = (1/n₊ on positives, −1/n₋ on negatives), ‖Xᵀw‖² = wᵀKw."""
    pos = s.positive()
    w = np.where(pos, 1 / pos.sum(), -1 / (~pos).sum())
    return np.sqrt(np.maximum(np.einsum("i,hij,j->h", w, _gram(s), w), 0.0))


def probe_folds(s: Stored) -> np.ndarray:
    """Fold of each example: pairs split into PROBE_FOLDS contiguous folds (a pair's two prompts held out
    together); unpaired negatives are dealt round-robin."""
    n_pos, n_neg = s.n_positive, s.n_examples - s.n_positive
    folds = min(PROBE_FOLDS, n_pos, n_neg)
    pos = np.arange(n_pos) * folds // n_pos
    neg = pos.copy() if s.paired else np.arange(n_neg) % folds
    return np.concatenate([pos, neg])


@SCORES.register("probe")
def probe(s: Stored) -> np.ndarray:
    """Ridge regression of y = ±1 on each head's outputs centred on the training fold (kernel form: the Gram
    matrix is all it needs), trained on the other folds; the mean held-out y·ŷ."""
    k_all, y, fold = _gram(s), np.where(s.positive(), 1.0, -1.0), probe_folds(s)
    margin = np.zeros(k_all.shape[:2])
    for f in np.unique(fold):
        tr, te = np.flatnonzero(fold != f), np.flatnonzero(fold == f)
        k_tt, k_et = k_all[:, tr][:, :, tr], k_all[:, te][:, :, tr]
        row_t = k_tt.mean(2, keepdims=True)  # centring on the training mean, in kernel form
        all_t = k_tt.mean((1, 2), keepdims=True)
        kc = k_tt - row_t - row_t.transpose(0, 2, 1) + all_t
        kec = k_et - k_et.mean(2, keepdims=True) - row_t.transpose(0, 2, 1) + all_t
        lam = PROBE_RIDGE * np.trace(kc, axis1=1, axis2=2) / len(tr) + 1e-12
        yt = y[tr] - y[tr].mean()
        alpha = np.linalg.solve(
            kc + lam[:, None, None] * np.eye(len(tr)), np.broadcast_to(yt, kc.shape[:2])[..., None]
        )
        margin[:, te] = (np.einsum("hjt,ht->hj", kec, alpha[..., 0]) + y[tr].mean()) * y[te]
    return margin.mean(1)


# What each score's number is, for axis and colour-bar labels (tests/unit check that every score has one).
SCORE_UNITS: dict[str, str] = {
    "set_difference": "codes (count)",
    "mutual_information": "nats",
    "divergence": "total variation",
    "rarity": "rarity-weighted count",
    "separation": "effect size (pooled sd)",
    "paired": "total variation",
    "mean_gap": "‖Δ mean‖₂",
    "probe": "held-out margin",
}
