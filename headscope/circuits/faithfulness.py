"""Faithfulness of a set of heads under mean ablation (papers.md §9.3, MIB): curves over circuit sizes for every
method, and `ablate` — "does this selection explain the behaviour?" — for any head set.

m(C) is the task metric (mean logit difference on the clean prompts) with every analysed head outside C ablated:
its z replaced by the negatives' mean z — per position when negatives align with positives, else the mean over
examples and positions. f(C) = (m(C) − m(∅)) / (m(N) − m(∅)), with m(N) the model untouched (nothing ablated) and
m(∅) with every analysed head ablated. Curves: for each method, C_k = its top k heads at k = 1, 2, 5, 10, 20, 50,
100 % of the analysed heads, `kept` = f(C_k), `removed` = f(N \\ C_k) (only the top k ablated); CPR = area under
`kept` over k/N (from (0, 0)), CMD = area under |1 − kept|, k80 = the smallest k with f ≥ 0.8. All masks run as
stacked copies of the prompts in a few batched forwards (patching.patched_metrics).
"""

from __future__ import annotations

import math
import time
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import torch
from torch import Tensor

from headscope.circuits.patching import Prepared, mean_sources, patched_metrics, z_cache
from headscope.circuits.result import FaithCurve, Faithfulness
from headscope.circuits.stability import curve_intervals, draws
from headscope.codec import JsonCodec
from headscope.models import ModelHandle
from headscope.progress import StepCounter
from headscope.selection import HeadSet

SIZE_FRACTIONS = (0.01, 0.02, 0.05, 0.1, 0.2, 0.5, 1.0)
RECOVERED = 0.8


def ablation_sources(handle: ModelHandle, prep: Prepared) -> list[Tensor]:
    """Mean-ablation values: the negatives' mean z per position when they align with the positives, else the
    position-free mean."""
    if not prep.paired:
        return mean_sources(handle, prep)
    return [z.mean(0, keepdim=True).expand_as(z) for z in z_cache(handle, prep.corrupt)]


def _normalise(m: float, full: float, empty: float) -> float:
    span = full - empty
    return (m - empty) / span if abs(span) > 1e-9 else math.nan


def sizes_for(n: int) -> list[int]:
    """0, the grid's k values (at least 1 each, deduplicated), n."""
    return sorted({0, n, *(max(1, math.ceil(f * n)) for f in SIZE_FRACTIONS)})


def _area(x: Sequence[float], y: Sequence[float]) -> float:
    return float(np.trapezoid(np.asarray(y, dtype=float), np.asarray(x, dtype=float)))


@dataclass(frozen=True)
class _Plan:
    """Unique ablation masks and, per (method, size), the row of `masks` for the kept and the removed circuit."""

    masks: list[np.ndarray]
    kept: dict[tuple[str, int], int]
    removed: dict[tuple[str, int], int]


def _plan(rankings: dict[str, np.ndarray], rows: list[int], sizes: list[int]) -> _Plan:
    shape = next(iter(rankings.values())).shape
    analysed = np.zeros(shape, dtype=bool)
    analysed[rows] = True
    index: dict[bytes, int] = {}
    masks: list[np.ndarray] = []

    def add(mask: np.ndarray) -> int:
        key = mask.tobytes()
        if key not in index:
            index[key] = len(masks)
            masks.append(mask)
        return index[key]

    kept, removed = {}, {}
    for method, ranking in rankings.items():
        order = np.argsort(-ranking[rows].ravel(), kind="stable") + rows[0] * shape[1]
        for k in sizes:
            top = np.zeros(shape, dtype=bool)
            top.ravel()[order[:k]] = True
            kept[method, k] = add(analysed & ~top)
            removed[method, k] = add(top)
    return _Plan(masks, kept, removed)


def faithfulness_curves(
    handle: ModelHandle,
    prep: Prepared,
    rankings: dict[str, np.ndarray],
    rows: list[int],
    progress: StepCounter | None = None,
    *,
    n_bootstrap: int = 0,
    seed: int = 0,
) -> Faithfulness:
    """Every method's curve; `rankings` map method → [layer, head] values its heads are ranked by. With
    `n_bootstrap`, CPR and CMD get 95 % intervals from the per-pair metrics (resampled pairs, no new forwards)."""
    t0 = time.perf_counter()
    n = len(rows) * handle.facts.n_heads
    sizes = sizes_for(n)
    plan = _plan(rankings, rows, sizes)
    masks = torch.as_tensor(np.stack(plan.masks))
    per_pair = patched_metrics(handle, prep, masks, ablation_sources(handle, prep), progress=progress).numpy()
    metrics = per_pair.mean(1)
    first = next(iter(rankings))
    full, empty = float(metrics[plan.kept[first, n]]), float(metrics[plan.removed[first, n]])
    x = [k / n for k in sizes]
    idx = [i for i, _ in draws(prep.clean.ids.shape[0], 1, True, n_bootstrap, seed)] if n_bootstrap else []
    curves = []
    for method in rankings:
        kept = [_normalise(float(metrics[plan.kept[method, k]]), full, empty) for k in sizes]
        removed = [_normalise(float(metrics[plan.removed[method, k]]), full, empty) for k in sizes]
        k80 = next((k for k, f in zip(sizes, kept, strict=True) if f >= RECOVERED), None)
        cpr_ci, cmd_ci = curve_intervals(
            per_pair[[plan.kept[method, k] for k in sizes]], per_pair[plan.kept[first, n]],
            per_pair[plan.removed[first, n]], lambda f, x=x: _areas(x, f), idx,
        )  # fmt: skip
        cpr, cmd = _areas(x, np.asarray(kept))
        curves.append(
            FaithCurve(method, tuple(sizes), tuple(kept), tuple(removed), cpr, cmd, k80, cpr_ci, cmd_ci)
        )
    return Faithfulness("mean", full, empty, n, tuple(curves), time.perf_counter() - t0)


def _areas(x: Sequence[float], kept: np.ndarray) -> tuple[float, float]:
    """(CPR, CMD): the area under f and under |1 − f| over the size fraction."""
    return _area(x, kept.tolist()), _area(x, np.abs(1 - kept).tolist())


@dataclass(frozen=True)
class Ablation(JsonCodec):
    """The task metric with a head selection mean-ablated, and with everything else ablated."""

    heads: str  # canonical HeadSet text
    n_heads: int
    clean_metric: float  # nothing ablated
    selection_ablated: float  # the selection's heads ablated
    others_ablated: float  # every head except the selection ablated
    all_ablated: float
    faithfulness: float  # f(selection) = (others_ablated − all_ablated) / (clean − all_ablated)
    removed_effect: float  # clean − selection_ablated: what the selection carries alone
    mode: str  # "per_position_mean" or "mean"


def ablate(handle: ModelHandle, prep: Prepared, heads: HeadSet) -> Ablation:
    """Four masks in one batched run: none, the selection, its complement, every head."""
    sel = heads.mask()
    masks = torch.as_tensor(np.stack([np.zeros_like(sel), sel, ~sel, np.ones_like(sel)]))
    clean, sel_m, others, empty = (
        float(v) for v in patched_metrics(handle, prep, masks, ablation_sources(handle, prep)).mean(1)
    )
    return Ablation(
        str(heads), len(heads), clean, sel_m, others, empty, _normalise(others, clean, empty), clean - sel_m,
        "per_position_mean" if prep.paired else "mean",
    )  # fmt: skip
