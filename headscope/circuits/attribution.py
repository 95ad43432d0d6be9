"""Gradient estimates of every head's patching effect (papers.md §9.1), per prompt pair.

- **Attribution patching** (EAP, node level): effect ≈ (z_clean − z_source) · ∂m/∂z at the clean run, summed over
  positions and d_head — one forward and one backward pass.
- **EAP-IG** (Hanna et al. 2024): the same product with the gradient averaged over m points on the straight line
  from the corrupted to the clean input embeddings (`blocks.0.hook_resid_pre`), e_k = e_corr + (k/m)(e_clean −
  e_corr), k = 1..m (m = 5, the paper's usual setting). The m points run as m stacked copies of the prompts.

m is the logit difference on the clean prompts' answers. Per-pair values are kept (row b's metric depends only on
row b), so a bootstrap over pairs needs no new forwards; the score is their mean. Unpaired tasks use mean-ablation
values as the corrupted activations and the negatives' mean embedding as the corrupted input.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import torch
from jaxtyping import Float
from torch import Tensor

from headscope.circuits.patching import (
    Prepared,
    logit_diff,
    patch_sources,
    run_copies,
    z_cache,
)
from headscope.models import ModelHandle, hooks
from headscope.models.handle import graph_node

IG_STEPS = 5
MAX_GRAD_ROWS = 48  # a backward pass keeps every layer's activations: bound the rows per pass


def _keepers(n_layers: int, saved: dict[int, Tensor]) -> list[tuple[str, Callable[[Tensor, Any], Tensor]]]:
    def keeper(layer: int) -> Callable[[Tensor, Any], Tensor]:
        def keep(z: Tensor, hook: Any) -> Tensor:
            saved[layer] = graph_node(z)
            return saved[layer]

        return keep

    return [(hooks.z(layer), keeper(layer)) for layer in range(n_layers)]


def _grads(
    handle: ModelHandle, prep: Prepared, n_copies: int, expand: Callable[[Tensor, Any], Tensor] | None
) -> list[Tensor]:
    """∂(Σ per-row metric)/∂z for every layer, rows copy-major, from one grad run of n stacked copies."""
    saved: dict[int, Tensor] = {}
    n_l = handle.facts.n_layers
    with torch.enable_grad():
        final = run_copies(handle, prep.clean, 0, n_copies, _keepers(n_l, saved), expand=expand, grad=True)
        total = logit_diff(final, prep.answers.repeat(n_copies)).sum()
        grads = torch.autograd.grad(total, [saved[layer] for layer in range(n_l)])
    return [g.detach() for g in grads]


def _products(delta: list[Tensor], grads: list[Tensor]) -> Float[Tensor, "batch layer head"]:
    """Σ_{pos, d_head} delta · grad per row and head, stacked over layers."""
    return torch.stack([(d * g).sum(dim=(1, 3)) for d, g in zip(delta, grads, strict=True)], dim=1).cpu()


def attribution_patching(handle: ModelHandle, prep: Prepared) -> Float[Tensor, "batch layer head"]:
    """Per-pair first-order estimate of each head's patching effect: −(z_source − z_clean) · ∂m/∂z_clean."""
    sources = patch_sources(handle, prep)
    clean = z_cache(handle, prep.clean)
    grads = _grads(handle, prep, 1, None)
    return _products([c - s[:, : c.shape[1]] for c, s in zip(clean, sources, strict=True)], grads)


def _embeddings(handle: ModelHandle, prep: Prepared) -> tuple[Tensor, Tensor]:
    name = hooks.resid(0, "pre")
    e_clean = handle.run_with_cache(prep.clean.ids, [name])[1][name]
    e_corr = handle.run_with_cache(prep.corrupt.ids, [name])[1][name]
    if not prep.paired:  # the negatives' mean embedding over examples and real positions, at every position
        m = prep.corrupt.mask.float()
        e_corr = (torch.einsum("bpd,bp->d", e_corr, m) / m.sum()).expand_as(e_clean)
    return e_clean, e_corr


def eap_ig(handle: ModelHandle, prep: Prepared, steps: int = IG_STEPS) -> Float[Tensor, "batch layer head"]:
    """Per-pair EAP-IG scores: (z_clean − z_corr) · (1/m) Σ_k ∂m/∂z at e_k."""
    e_clean, e_corr = _embeddings(handle, prep)
    clean = z_cache(handle, prep.clean)
    corrupt = patch_sources(handle, prep)
    b = prep.clean.ids.shape[0]
    alphas = torch.arange(1, steps + 1, dtype=e_clean.dtype, device=e_clean.device) / steps
    total = [torch.zeros_like(z) for z in clean]
    per = max(1, MAX_GRAD_ROWS // b)
    for start in range(0, steps, per):
        a = alphas[start : start + per]

        def interpolate(x: Tensor, hook: Any, a: Tensor = a) -> Tensor:
            path = e_corr[None] + a[:, None, None, None] * (e_clean - e_corr)[None]
            return path.reshape(-1, *x.shape[1:])

        for acc, g in zip(total, _grads(handle, prep, len(a), interpolate), strict=True):
            acc += g.view(len(a), b, *g.shape[1:]).sum(0)
    mean = [t / steps for t in total]
    return _products([c - s[:, : c.shape[1]] for c, s in zip(clean, corrupt, strict=True)], mean)
