"""Error bars and chance for steering results: seeded percentile bootstraps and a permutation p-value.

- `bootstrap`: a statistic of a sample, resampled with replacement `resamples` times (numpy's PCG64 seeded by
  `(seed, what)`, so each measure has its own stream and adding a measure never moves another's interval); the
  interval is the 2.5 and 97.5 percentiles of the resampled statistics (numpy's linear interpolation).
- `bootstrap_margin`: the held-out margin effect resampled over prompts and texts at once (two-way: prompts, the
  positive texts and the negative texts are each drawn with replacement).
- `permutation_p` (papers.md §10.5): p = (1 + #{random ≥ selected}) / (R + 1) — ties count against the selection,
  and the smallest p that R draws can give is 1/(R + 1) (R = 20: 0.048).
"""

from __future__ import annotations

import zlib
from collections.abc import Callable, Sequence
from dataclasses import dataclass

import numpy as np

from headscope import checks
from headscope.codec import JsonCodec, jfield

LEVEL = 0.95
DEFAULT_RESAMPLES = 1000
MAX_RESAMPLES = 100_000
ALPHA = 0.05  # "better than random" needs p below this


@dataclass(frozen=True)
class Interval(JsonCodec):
    """A point estimate (the statistic on the whole sample) and its 95 % bootstrap interval; n: the sample size
    the interval is over (prompts, texts or items)."""

    value: float = jfield(digits=4)
    low: float = jfield(digits=4)
    high: float = jfield(digits=4)
    n: int = 0

    @staticmethod
    def exact(value: float, n: int = 0) -> Interval:
        """A value with no spread (the reference condition's change from itself)."""
        return Interval(value, value, value, n)


def _rng(seed: int, what: str) -> np.random.Generator:
    return np.random.default_rng([checks.integer(seed, "seed", 0, 2**53), zlib.crc32(what.encode())])


def _interval(point: float, stats: np.ndarray, n: int) -> Interval:
    lo, hi = np.quantile(stats, [(1 - LEVEL) / 2, (1 + LEVEL) / 2])
    return Interval(float(point), float(lo), float(hi), n)


def bootstrap(
    values: Sequence[float] | np.ndarray,
    *,
    seed: int,
    what: str,
    resamples: int = DEFAULT_RESAMPLES,
    stat: Callable[[np.ndarray], np.ndarray] | None = None,
) -> Interval:
    """The mean of `values` (or `stat` over the last axis of a [resamples, n] array) with its 95 % interval."""
    x = np.asarray(values, dtype=float)
    if x.ndim != 1 or x.size == 0:
        raise ValueError("bootstrap needs a non-empty 1-d sample")
    fn = stat or (lambda a: a.mean(axis=-1))
    idx = _rng(seed, what).integers(0, x.size, size=(resamples, x.size))
    return _interval(float(fn(x[None])[0]), fn(x[idx]), x.size)


def margin(delta: np.ndarray, positive: np.ndarray) -> float:
    """mean over prompts of [mean over positive texts − mean over negative texts] of `delta` [prompts, texts]."""
    return float((delta[:, positive].mean(1) - delta[:, ~positive].mean(1)).mean())


def bootstrap_margin(
    delta: np.ndarray, positive: np.ndarray, *, seed: int, what: str, resamples: int = DEFAULT_RESAMPLES
) -> Interval:
    """`margin(delta)` with a 95 % interval over prompts and texts (each axis resampled with replacement)."""
    d, pos = np.asarray(delta, dtype=float), np.asarray(positive, dtype=bool)
    pos_cols, neg_cols = np.flatnonzero(pos), np.flatnonzero(~pos)
    if d.ndim != 2 or d.shape[1] != pos.size or not pos_cols.size or not neg_cols.size:
        raise ValueError("a margin needs [prompts, texts] values and both positive and negative texts")
    rng = _rng(seed, what)
    rows = rng.integers(0, d.shape[0], size=(resamples, d.shape[0]))
    p_cols = pos_cols[rng.integers(0, pos_cols.size, size=(resamples, pos_cols.size))]
    n_cols = neg_cols[rng.integers(0, neg_cols.size, size=(resamples, neg_cols.size))]
    sub = d[rows]  # [resamples, prompts, texts]
    pos_mean = np.take_along_axis(
        sub, np.broadcast_to(p_cols[:, None], (resamples, d.shape[0], pos_cols.size)), 2
    )
    neg_mean = np.take_along_axis(
        sub, np.broadcast_to(n_cols[:, None], (resamples, d.shape[0], neg_cols.size)), 2
    )
    stats = (pos_mean.mean(2) - neg_mean.mean(2)).mean(1)
    return _interval(margin(d, pos), stats, d.shape[0])


def permutation_p(selected: float, random: Sequence[float]) -> float:
    """(1 + #{r ≥ selected}) / (R + 1): the chance that R random selections do at least as well."""
    r = np.asarray(random, dtype=float)
    return float((1 + int((r >= selected).sum())) / (r.size + 1))


def percentile(selected: float, random: Sequence[float]) -> float:
    """Where the selection falls among the random draws, 0–100 (ties count half)."""
    r = np.asarray(random, dtype=float)
    if r.size == 0:
        raise ValueError("no random draws")
    return float(100.0 * ((r < selected).sum() + 0.5 * (r == selected).sum()) / r.size)
