"""Fitting a discrete-SAE variant (variants.py) on one run's head outputs, and scoring it again on resamples.

`fit_variant` scales the head outputs, trains the one shared SAE on the variant's training split, keeps every
example's codes (`Stored`) and scores them; `resampled_scores` rescores a resample of those examples with the SAE
fixed (what a bootstrap calls); `order` is the one tie rule of every ranking.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
import torch
from torch import Tensor

from headscope.circuits import scoring
from headscope.circuits.sae import TrainedSAE, train_sae
from headscope.circuits.variants import BASELINE_SCORES, VARIANTS, Resolved, SAEVariant
from headscope.circuits.variants_read import HeadScaling, head_scaling
from headscope.circuits.variants_score import SCORES, Stored, baseline_stored, sae_stored
from headscope.progress import StepCounter


@dataclass(frozen=True)
class VariantRun:
    """One variant fitted on one run's head outputs: what it stored, its scores, and its SAE (None: baseline)."""

    resolved: Resolved
    stored: Stored
    node: np.ndarray  # [head_total] float64
    trained: TrainedSAE | None
    n_train: int  # examples the SAE was trained on (0: baseline)
    scaling: HeadScaling = field(
        default_factory=HeadScaling
    )  # what the normalisation did to the head outputs before the SAE

    def codes(self) -> Tensor:
        assert self.stored.codes is not None, "a baseline has no codes"
        return torch.from_numpy(self.stored.codes)


def train_rows(n_examples: int, n_train: int, seed: int) -> Tensor:
    """The examples an SAE trains on: the first n_train of a seeded permutation of the pool (as the reference)."""
    return torch.randperm(n_examples, generator=torch.Generator().manual_seed(seed))[
        : min(n_train, n_examples)
    ]


@torch.no_grad()
def latent_acts(trained: TrainedSAE, x: Tensor) -> Tensor:
    """[example, head_total, latent]: the SAE's activations on every (example, head)."""
    return trained.sae.encode(x.reshape(-1, x.shape[-1])).reshape(*x.shape[:-1], -1)


def fit_variant(
    x: Tensor,
    r: Resolved,
    *,
    n_positive: int,
    paired: bool,
    seed: int,
    l1: float,
    n_heads: int,
    tick: StepCounter | None = None,
) -> VariantRun:
    """Scale `x` [example, head_total, d_model] (read as `r.read`), train the SAE on `r.n_train` examples of the
    pool (split and initialisation from `seed`), store every example's latent activations and score."""
    scaling = head_scaling(x, r.norm, n_heads)
    xs = scaling.apply(x)
    if r.score in BASELINE_SCORES:
        stored = baseline_stored(xs, n_positive, paired)
        return VariantRun(r, stored, resolved(SCORES[r.score](stored)), None, 0, scaling)
    rows = train_rows(xs.shape[0], r.n_train, seed)
    trained = train_sae(xs[rows].reshape(-1, xs.shape[-1]), r.sae, seed, l1=l1, tick=tick)
    stored = sae_stored(latent_acts(trained, xs), n_positive, paired, r.code, r.k)
    return VariantRun(r, stored, resolved(SCORES[r.score](stored)), trained, len(rows), scaling)


RESOLUTION = 1e-6  # continuous scores are kept to this fraction of the largest |score|


def node_scores(variant: SAEVariant | str, stored: Stored) -> np.ndarray:
    """A variant's node scores [head_total] from its stored per-example data, `resolved`."""
    v = VARIANTS[variant] if isinstance(variant, str) else variant
    return resolved(SCORES[v.score](stored))


def resolved(scores: np.ndarray) -> np.ndarray:
    """Scores rounded to RESOLUTION of the largest |score|: values that differ only by floating-point noise (the
    head outputs and the SAE differ by ~1e-7 relative between 1 and 2 threads) become equal, and equal scores
    are ordered by the stated tie rule (`order`), never by that noise. Integer scores (counts) are returned as
    they are."""
    s = np.asarray(scores, dtype=np.float64)
    top = float(np.abs(s).max()) if s.size else 0.0
    if top == 0.0 or np.array_equal(s, np.round(s)):
        return s
    return np.round(s / (top * RESOLUTION)) * (top * RESOLUTION)


def resampled_scores(
    variant: SAEVariant | str, stored: Stored, pos_rows: Tensor | np.ndarray, neg_rows: Tensor | np.ndarray
) -> np.ndarray:
    """A variant's node scores on a resample of the stored examples (positives `pos_rows`, negatives `neg_rows`;
    the same indices twice keep a paired task paired), the trained SAE fixed: what a bootstrap calls."""
    return node_scores(variant, stored.take(pos_rows, neg_rows))


def edge_scores(stored: Stored) -> np.ndarray:
    """The paper's edge method on the variant's argmax codes."""
    assert stored.codes is not None, "a baseline has no codes"
    codes, positive = torch.from_numpy(stored.codes), torch.from_numpy(stored.positive())
    return scoring.edge_scores(codes, positive).numpy().astype(float)


def order(scores: np.ndarray) -> np.ndarray:
    """Head indices best first: by score (descending), ties by head index (earlier layer, then head, first): the
    one tie rule for every variant. Scores are float64 from single-threaded numpy, so ties are exact, never
    rounding noise of a thread count."""
    s = np.asarray(scores, dtype=np.float64).ravel()
    return np.lexsort((np.arange(s.size), -s))


def ties_in_top(scores: np.ndarray, k: int = 20) -> int:
    """How many of the top k heads share their score with another head of the top k."""
    top = np.asarray(scores, dtype=np.float64).ravel()[order(scores)[:k]]
    _, counts = np.unique(top, return_counts=True)
    return int(counts[counts > 1].sum())
