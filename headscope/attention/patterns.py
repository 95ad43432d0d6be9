"""Pure functions on attention patterns `a[..., i, j]` (query i, key j, causal): entropy, targets, per-row stats.

Conventions (shared by every metric in headscope — the probes, the λ sweep and the localist training objective):
- Entropy of a row in bits: H_i = −Σ_j a_ij log₂ a_ij, with 0·log 0 = 0. Query i (0-based) sees i+1 keys, so its
  causal maximum is log₂(i+1); the *normalised* entropy is H_i / log₂(i+1), and row 0 (one key, no choice) is 0.
- A *target* T(i) is a set of keys per query, given as a boolean [query, key] mask (registry `TARGETS`):
  `local` = {i−1, i} (the token itself and the one before), `previous` = {i−1}, `self` = {i}, `block` = every key
  j ≤ i in the query's own block (`same_block`; blocks: `blocks.py`). Row 0 has no previous key; there T(0) is {0}
  for `local`/`previous`/`self`.
- Pointer fidelity of a row = Σ_{j∈T(i)} a_ij (the attention mass on the targets, `target_mass`); its hit =
  1[argmax_j a_ij ∈ T(i)] (`target_hit`).
- Previous-token score of a row = a_{i,i−1}; attention distance of a row = Σ_j a_ij·(i−j) in tokens.
- *Informative* queries (for block targets): those with at least one causal key outside their block.
Row 0 carries no information for the last four (one key); summaries average them over queries 1..n−1.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass

import torch
from jaxtyping import Bool, Float, Int
from torch import Tensor

from headscope.errors import InputError
from headscope.registry import Registry

LN2 = math.log(2.0)
TargetFn = Callable[[int, Tensor | None], Tensor]  # (n, block ids or None) -> Bool[query key]
TARGETS: Registry[TargetFn] = Registry("pointer target")


def register_target(name: str) -> Callable[[TargetFn], TargetFn]:
    return TARGETS.register(name)


def row_entropy_bits(pattern: Float[Tensor, "*batch query key"]) -> Float[Tensor, "*batch query"]:
    """−Σ_j a log₂ a per row; `xlogy` makes 0·log 0 = 0 exactly (masked keys contribute nothing)."""
    return -torch.special.xlogy(pattern, pattern).sum(-1) / LN2


def normalised_entropy(entropy_bits: Float[Tensor, "*batch query"]) -> Float[Tensor, "*batch query"]:
    """H_i / log₂(i+1) along the last axis; row 0 is defined as 0 (its maximum is 0)."""
    n = entropy_bits.shape[-1]
    cap = torch.log2(torch.arange(1, n + 1, dtype=entropy_bits.dtype, device=entropy_bits.device))
    return torch.where(cap > 0, entropy_bits / cap.clamp(min=1e-12), torch.zeros_like(entropy_bits))


def _offsets(n: int, device: torch.device | None = None) -> Int[Tensor, "query key"]:
    i = torch.arange(n, device=device)
    return i[:, None] - i[None, :]


def same_block(blocks: Int[Tensor, "*batch pos"]) -> Bool[Tensor, "*batch query key"]:
    """The `block` target for every query at once: key j ≤ i in the query's block (batched over leading axes)."""
    causal = _offsets(blocks.shape[-1], blocks.device) >= 0
    return (blocks[..., :, None] == blocks[..., None, :]) & causal


def informative(blocks: Int[Tensor, "*batch pos"]) -> Bool[Tensor, "*batch pos"]:
    """Queries with at least one causal key outside their block (block ids are non-decreasing)."""
    return blocks != blocks[..., :1]


@register_target("local")
def _local(n: int, blocks: Int[Tensor, " pos"] | None = None) -> Bool[Tensor, "query key"]:
    d = _offsets(n)
    return (d == 0) | (d == 1)


@register_target("previous")
def _previous(n: int, blocks: Int[Tensor, " pos"] | None = None) -> Bool[Tensor, "query key"]:
    mask = _offsets(n) == 1
    mask[0, 0] = True  # row 0 has no previous key
    return mask


@register_target("self")
def _self(n: int, blocks: Int[Tensor, " pos"] | None = None) -> Bool[Tensor, "query key"]:
    return _offsets(n) == 0


@register_target("block")
def _block(n: int, blocks: Int[Tensor, " pos"] | None = None) -> Bool[Tensor, "query key"]:
    if blocks is None or blocks.shape[-1] != n:
        raise InputError("target 'block' needs block ids for every token")
    return same_block(blocks.cpu())


def target_mask(name: str, n: int, blocks: Int[Tensor, " pos"] | None = None) -> Bool[Tensor, "query key"]:
    return TARGETS[TARGETS.check(name, field="target")](n, blocks)


def target_mass(
    pattern: Float[Tensor, "*batch query key"], target: Bool[Tensor, "*#batch query key"]
) -> Float[Tensor, "*batch query"]:
    """Σ_{j∈T(i)} a_ij per row."""
    return (pattern * target.to(pattern.dtype)).sum(-1)


def target_hit(
    pattern: Float[Tensor, "*batch query key"], target: Bool[Tensor, "*#batch query key"]
) -> Float[Tensor, "*batch query"]:
    """1[argmax_j a_ij ∈ T(i)] per row, as the pattern's dtype."""
    full = target.expand(pattern.shape)
    return full.gather(-1, pattern.argmax(-1, keepdim=True)).squeeze(-1).to(pattern.dtype)


@dataclass(frozen=True)
class RowStats:
    """Per-row statistics of one layer's pattern, each [head, query] (float32, on CPU)."""

    entropy_bits: Float[Tensor, "head query"]
    target_mass: Float[Tensor, "head query"]
    target_hit: Float[Tensor, "head query"]
    prev_token: Float[Tensor, "head query"]
    distance: Float[Tensor, "head query"]


def row_stats(pattern: Float[Tensor, "head query key"], target: Bool[Tensor, "query key"]) -> RowStats:
    """Reduce a [head, q, k] causal pattern (q == k) to its per-row statistics without keeping the pattern."""
    h, q, k = pattern.shape
    if q != k:
        raise InputError(f"expected a square causal pattern, got {q} queries × {k} keys")
    p = pattern.float()
    tgt = target.to(p.device)
    dist = _offsets(q, p.device).clamp(min=0).float()
    prev = torch.zeros(h, q, device=p.device)
    prev[:, 1:] = torch.diagonal(p, offset=-1, dim1=-2, dim2=-1)
    stats = {
        "entropy_bits": row_entropy_bits(p),
        "target_mass": target_mass(p, tgt),
        "target_hit": target_hit(p, tgt),
        "prev_token": prev,
        "distance": (p * dist).sum(-1),
    }
    return RowStats(**{name: t.cpu() for name, t in stats.items()})
