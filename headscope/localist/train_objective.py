"""The locality penalty Ω and the pointer statistics of the AILA table; the attention maths they build on
(entropy, the block target, informative queries) and the layer schedules live in `headscope.attention`.

Notation: `attn[b, h, i, j]` is the softmax attention of query i on key j (causal, j ≤ i); `blocks[b, i]` is the
sentence block of token i (see `corpus`; the sentence rule is `attention.blocks`'s). Definitions (our reading of
papers.md §1.3; the papers' loss is not public):

- **Target set** T(i) = {j ≤ i : block(j) = block(i)} — the query's own sentence up to itself (its *pointer
  targets*; `attention.patterns.same_block`, the `block` target). Its complement {j ≤ i : block(j) ≠ block(i)} is
  *leakage*.
- **Informative queries**: those with at least one key outside their block (every query not in the window's first
  block). Queries of the first block can only attend inside it, so they carry no signal about locality.
- **Ω, variant `leakage`** (default): mean over (batch, head, informative query) of Σ_{j ∉ T(i)} a_ij ∈ [0, 1].
- **Ω, variant `group_lasso`**: mean over the same of Σ_{g ≠ block(i)} √|G_g| · ‖a_{i,G_g}‖₂, where G_g are the
  window's blocks (|G_g| its token count); only blocks before block(i) can be non-zero (causality).
- **Loss**: L = CE + Σ_l λ_l · Ω_l, with λ_l from the shared layer schedule (`attention.locality.LayerSchedule`:
  `uniform` λ_l = λ, `progressive` λ_l = λ · (l/(L−1))^β, so layer 0 is free and the last layer gets λ) — the
  same numbers the inference dial uses.
- **Entropy** (bits): `attention.patterns.row_entropy_bits`, averaged over (batch, head, every query).
- **Pointer fidelity**: mean over informative queries of Σ_{j∈T(i)} a_ij (= 1 − leakage); **hit rate**: fraction of
  informative queries whose argmax key lies in T(i).
"""

from __future__ import annotations

from collections.abc import Callable

import torch
from jaxtyping import Bool, Float, Int
from torch import Tensor

from headscope.attention.patterns import informative, same_block, target_hit, target_mass
from headscope.registry import Registry

Attn = Float[Tensor, "batch head pos pos"]
Blocks = Int[Tensor, "batch pos"]


def _masked_mean(values: Float[Tensor, "batch head pos"], mask: Bool[Tensor, "batch pos"]) -> Tensor:
    m = mask[:, None, :].to(values.dtype).expand_as(values)
    return (values * m).sum() / m.sum().clamp_min(1.0)


def leakage_per_query(attn: Attn, blocks: Blocks) -> Float[Tensor, "batch head pos"]:
    return target_mass(attn, (~same_block(blocks))[:, None])


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
    fn = PENALTIES[PENALTIES.check(kind, field="penalty")]
    return _masked_mean(fn(attn, blocks), informative(blocks))


def pointer_stats(attn: Attn, blocks: Blocks) -> tuple[Tensor, Tensor, Tensor]:
    """Sums and count over informative queries: (Σ target mass, Σ argmax hits, n) — add up across batches."""
    tgt = same_block(blocks)[:, None]
    mass, hits = target_mass(attn, tgt), target_hit(attn, tgt)
    m = informative(blocks)[:, None, :].expand_as(mass)
    return mass[m].sum(), hits[m].sum(), m.sum()
