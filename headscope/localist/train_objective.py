"""The locality penalty Ω, its layer schedules, and the attention metrics of the AILA table.

Notation: `attn[b, h, i, j]` is the softmax attention of query i on key j (causal, j ≤ i); `blocks[b, i]` is the
sentence block of token i (see `corpus`). Definitions (our reading of papers.md §1.3; the papers' loss is not public):

- **Target set** T(i) = {j ≤ i : block(j) = block(i)} — the query's own sentence up to itself (its *pointer
  targets*). Its complement {j ≤ i : block(j) ≠ block(i)} is *leakage*.
- **Informative queries**: those with at least one key outside their block (every query not in the window's first
  block). Queries of the first block can only attend inside it, so they carry no signal about locality.
- **Ω, variant `leakage`** (default): mean over (batch, head, informative query) of Σ_{j ∉ T(i)} a_ij ∈ [0, 1].
- **Ω, variant `group_lasso`**: mean over the same of Σ_{g ≠ block(i)} √|G_g| · ‖a_{i,G_g}‖₂, where G_g are the
  window's blocks (|G_g| its token count); only blocks before block(i) can be non-zero (causality).
- **Loss**: L = CE + Σ_l λ_l · Ω_l, with λ_l from a schedule: `uniform` (λ_l = λ) or `progressive`
  (λ_l = λ · (l/(L−1))^β, so layer 0 is free and the last layer gets λ).
- **Entropy** (bits): −Σ_j a_ij log₂ a_ij, averaged over (batch, head, every query), per layer and overall.
- **Pointer fidelity**: mean over informative queries of Σ_{j∈T(i)} a_ij (= 1 − leakage); **hit rate**: fraction of
  informative queries whose argmax key lies in T(i).
"""

from __future__ import annotations

from collections.abc import Callable

import torch
from jaxtyping import Bool, Float, Int
from torch import Tensor

from headscope.errors import InputError
from headscope.registry import Registry

Attn = Float[Tensor, "batch head pos pos"]
Blocks = Int[Tensor, "batch pos"]
SCHEDULES = ("uniform", "progressive")


def layer_lambdas(lam: float, n_layers: int, schedule: str = "uniform", beta: float = 1.0) -> list[float]:
    """Per-layer penalty weights: uniform λ, or progressive λ·(l/(L−1))^β (a one-layer model gets λ)."""
    if schedule not in SCHEDULES:
        raise InputError(f"schedule must be one of {', '.join(SCHEDULES)}, got {schedule!r}")
    if schedule == "uniform" or n_layers == 1:
        return [float(lam)] * n_layers
    return [float(lam) * (layer / (n_layers - 1)) ** beta for layer in range(n_layers)]


def target_mask(blocks: Blocks) -> Bool[Tensor, "batch pos pos"]:
    """T(i) as a [batch, query, key] mask: same block and causal."""
    n = blocks.shape[-1]
    causal = torch.ones(n, n, dtype=torch.bool, device=blocks.device).tril()
    return (blocks[:, :, None] == blocks[:, None, :]) & causal


def informative(blocks: Blocks) -> Bool[Tensor, "batch pos"]:
    """Queries with at least one causal key outside their block (blocks are non-decreasing in a window)."""
    return blocks != blocks[:, :1]


def _masked_mean(values: Float[Tensor, "batch head pos"], mask: Bool[Tensor, "batch pos"]) -> Tensor:
    m = mask[:, None, :].to(values.dtype).expand_as(values)
    return (values * m).sum() / m.sum().clamp_min(1.0)


def leakage_per_query(attn: Attn, blocks: Blocks) -> Float[Tensor, "batch head pos"]:
    return (attn * (~target_mask(blocks))[:, None].to(attn.dtype)).sum(-1)


def group_lasso_per_query(attn: Attn, blocks: Blocks) -> Float[Tensor, "batch head pos"]:
    n_blocks = int(blocks.max()) + 1
    onehot = torch.nn.functional.one_hot(blocks, n_blocks).to(attn.dtype)  # [b, k, g]
    norms = torch.einsum("bhqk,bkg->bhqg", attn.square(), onehot).clamp_min(1e-20).sqrt()
    weight = onehot.sum(1).sqrt()[:, None, None, :]  # √|G_g|
    other = 1.0 - onehot[:, None]  # [b, 1, q, g]: zero at the query's own block
    return (norms * weight * other).sum(-1)


PenaltyFn = Callable[[Attn, Blocks], Float[Tensor, "batch head pos"]]
PENALTIES: Registry[PenaltyFn] = Registry("penalty")


def register_penalty(name: str, fn: PenaltyFn) -> None:
    PENALTIES.add(name, fn)


register_penalty("leakage", leakage_per_query)
register_penalty("group_lasso", group_lasso_per_query)


def penalty(attn: Attn, blocks: Blocks, kind: str = "leakage") -> Float[Tensor, ""]:
    """Ω for one layer: the per-query penalty averaged over (batch, head, informative query)."""
    if kind not in PENALTIES:
        raise InputError(f"penalty must be one of {', '.join(PENALTIES)}, got {kind!r}")
    return _masked_mean(PENALTIES[kind](attn, blocks), informative(blocks))


def entropy_bits(attn: Attn) -> Float[Tensor, "batch head pos"]:
    """Row entropy in bits (0·log 0 = 0)."""
    return -torch.special.xlogy(attn, attn).sum(-1) / torch.log(torch.tensor(2.0, dtype=attn.dtype))


def pointer_stats(attn: Attn, blocks: Blocks) -> tuple[Tensor, Tensor, Tensor]:
    """Sums and count over informative queries: (Σ target mass, Σ argmax hits, n) — add up across batches."""
    tgt = target_mask(blocks)[:, None]
    mass = (attn * tgt.to(attn.dtype)).sum(-1)
    hits = tgt.expand_as(attn).gather(-1, attn.argmax(-1, keepdim=True)).squeeze(-1).to(attn.dtype)
    m = informative(blocks)[:, None, :].expand_as(mass)
    return mass[m].sum(), hits[m].sum(), m.sum()
