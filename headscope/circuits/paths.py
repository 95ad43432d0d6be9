"""Path patching, head → head (papers.md §9.2), and the edge ground truth it gives.

The effect of sender s on receiver r through r's query/key/value input: on the clean run, r's input residual
becomes clean + Δ_s, where Δ_s = the change of s's output written into the residual stream (hook_result of the
corrupted run — or of the negatives' mean — minus the clean run's); only r's q, k and v see it; every other head
and MLP keeps its clean input; the forward then finishes and the effect is metric(clean) − metric(patched).

Batched like node patching: for the n pairs whose receiver sits in layer l, the clean residual at
`blocks.{l}.hook_resid_pre` becomes 2n copies — n clean ones (A) and n with Δ_{s_i} added (B). At `hook_z` of
layer l, copy A_i's head r_i takes copy B_i's z (z_r is computed from r's q, k, v, so this is r reading the
patched residual through all three inputs); at `hook_resid_post` the B copies are dropped. Oracle
(tests/unit/test_circuits_paths.py): two hand-placed hooks on separate runs.

Edge set (method-independent): every earlier → later pair among the top `edge_heads` ground-truth heads by
|effect|, plus as many random earlier → later pairs of analysed heads (seeded). Edge truth: |effect| ≥
threshold_frac · |clean − corrupted|.
"""

from __future__ import annotations

import random
import time
from collections.abc import Sequence
from typing import Any

import numpy as np
import torch
from jaxtyping import Float
from torch import Tensor

from headscope.circuits.patching import Prepared, logit_diff, metric, run_copies
from headscope.models import ModelHandle, hooks
from headscope.progress import StepCounter

Pair = tuple[tuple[int, int], tuple[int, int]]  # ((sender layer, head), (receiver layer, head))


def sender_deltas(handle: ModelHandle, prep: Prepared, layers: Sequence[int]) -> dict[int, Tensor]:
    """layer → [batch, pos, head, d_model]: each head's corrupted − clean output written to the residual stream."""
    names = [hooks.attn(layer, "result") for layer in sorted(set(layers))]
    _, clean = handle.run_with_cache(prep.clean.ids, names)
    _, corr = handle.run_with_cache(prep.corrupt.ids, names)
    out = {}
    for layer, name in zip(sorted(set(layers)), names, strict=True):
        c = corr[name]
        if not prep.paired:  # the negatives' mean output over examples and real positions
            m = prep.corrupt.mask.float()
            c = (torch.einsum("bphd,bp->hd", c, m) / m.sum()).expand_as(clean[name])
        out[layer] = c - clean[name]
    return out


def _receiver_hooks(layer: int, heads: list[int], n: int, b: int) -> list[tuple[str, Any]]:
    def take(z: Tensor, hook: Any) -> Tensor:
        view = z.view(2 * n, b, *z.shape[1:]).clone()
        for i, r in enumerate(heads):
            view[i, :, :, r] = view[n + i, :, :, r]
        return view.view_as(z)

    def drop(x: Tensor, hook: Any) -> Tensor:
        return x[: n * b]

    return [(hooks.z(layer), take), (hooks.resid(layer, "post"), drop)]


def path_patching(
    handle: ModelHandle, prep: Prepared, pairs: Sequence[Pair], progress: StepCounter | None = None
) -> Float[Tensor, "pair batch"]:
    """Per-pair (edge) and per-prompt effects metric(clean) − metric(patched), one batched run per receiver
    layer (chunked)."""
    b = prep.clean.ids.shape[0]
    clean = metric(handle, prep.clean, prep.answers).cpu()
    deltas = sender_deltas(handle, prep, [s[0] for s, _ in pairs])
    out = torch.zeros(len(pairs), b)
    by_layer: dict[int, list[int]] = {}
    for i, (_, (r_layer, _)) in enumerate(pairs):
        by_layer.setdefault(r_layer, []).append(i)
    per = max(1, 256 // (2 * b))
    groups = [
        (lay, idx[j : j + per]) for lay, idx in sorted(by_layer.items()) for j in range(0, len(idx), per)
    ]
    for g, (layer, idx) in enumerate(groups):
        add = torch.stack([deltas[pairs[i][0][0]][:, :, pairs[i][0][1]] for i in idx])  # [n, b, pos, d_model]

        def grow(x: Tensor, hook: Any, add: Tensor = add) -> Tensor:
            n = add.shape[0]
            return torch.cat([x.repeat(n, 1, 1), (x[None] + add).reshape(n * b, *x.shape[1:])])

        plan = _receiver_hooks(layer, [pairs[i][1][1] for i in idx], len(idx), b)
        final = run_copies(handle, prep.clean, layer, len(idx), plan, expand=grow)
        patched = logit_diff(final, prep.answers.repeat(len(idx))).view(len(idx), b).cpu()
        out[idx] = clean[None] - patched
        if progress is not None:
            progress(g + 1, len(groups))
    return out


def edge_set(effects: np.ndarray, rows: list[int], n_top: int, seed: int) -> tuple[list[Pair], list[str]]:
    """Earlier → later pairs among the top `n_top` heads by |effect| (analysed rows), plus as many random
    earlier → later pairs of analysed heads not already chosen. Returns the pairs and how each was drawn."""
    n_h = effects.shape[1]
    heads = [(layer, h) for layer in rows for h in range(n_h)]
    top = sorted(heads, key=lambda lh: -abs(float(effects[lh])))[:n_top]
    chosen = [(s, r) for s in top for r in top if s[0] < r[0]]
    taken = set(chosen)
    rest = [(s, r) for s in heads for r in heads if s[0] < r[0] and (s, r) not in taken]
    extra = random.Random(seed).sample(rest, min(len(chosen), len(rest)))
    return chosen + extra, ["top"] * len(chosen) + ["random"] * len(extra)


def timed_path_patching(
    handle: ModelHandle, prep: Prepared, pairs: Sequence[Pair], progress: StepCounter | None = None
) -> tuple[Float[Tensor, "pair batch"], float]:
    t0 = time.perf_counter()
    out = path_patching(handle, prep, pairs, progress)
    return out, time.perf_counter() - t0
