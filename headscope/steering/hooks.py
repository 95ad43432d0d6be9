"""Steering hooks: LoFiT per-head scale / bias and contrastive per-head additions on `hook_z`, vector additions
on a residual-type hook (`hook_resid_post`, or an SAE's site).

Every builder returns `(hook_name, fn)` pairs for `handle.hooks(...)`. None of them edits the activation in place:
they return a new tensor, so autograd (LoFiT training) works and other hooks on the same point see a clean value.

Positions: "all" adds at every position; "last" adds from `start` (the prompt's last token) on, i.e. the last
token at each generation step, and generated tokens stay steered as they would in a KV-cached decode. That makes
one scoring pass over prompt + continuation identical to the generation loop.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any, Literal

import torch
from jaxtyping import Float
from torch import Tensor

from headscope.errors import InputError
from headscope.models import hooks
from headscope.models.handle import HookFn
from headscope.selection import HeadSet

Head = tuple[int, int]  # (layer, head)
Position = Literal["last", "all"]
POSITIONS: tuple[str, ...] = ("last", "all")


def check_heads(heads: Sequence[Head], n_layers: int, n_heads: int) -> None:
    """An ordered list of distinct heads that fit the model (the row order of a bias tensor)."""
    if not heads:
        raise InputError("no heads selected")
    HeadSet.of(heads, n_layers, n_heads)  # range checks, one line each
    if len(set(heads)) != len(heads):
        raise InputError("a head is selected twice")


def _position_mask(act: Tensor, position: Position, start: int) -> Tensor | float:
    """1 where the addition applies, broadcastable over the trailing dimensions of `act` [batch, pos, ...]."""
    if position == "all":
        return 1.0
    mask = torch.zeros(act.shape[1], *([1] * (act.dim() - 2)), dtype=act.dtype, device=act.device)
    mask[start:] = 1.0
    return mask


def _check_position(position: str) -> None:
    if position not in POSITIONS:
        raise InputError(f"position must be one of {', '.join(POSITIONS)}; got {position!r}")


def head_scale_hooks(
    scales: Float[Tensor, "layer head d_head"], mask: Float[Tensor, "layer head 1"] | None = None
) -> list[tuple[str, HookFn]]:
    """LoFiT step 1: z ← (1 + A) ⊙ z on every head (A·mask: heads outside a selection keep exactly z)."""

    def make(layer: int) -> HookFn:
        def hook(z: Float[Tensor, "batch pos head d_head"], hook: Any) -> Tensor:
            a = scales[layer] if mask is None else scales[layer] * mask[layer]
            return z * (1.0 + a)

        return hook

    layers = range(scales.shape[0]) if mask is None else [i for i in range(scales.shape[0]) if mask[i].any()]
    return [(hooks.z(layer), make(layer)) for layer in layers]


def head_add_hooks(
    heads: Sequence[Head],
    vectors: Float[Tensor, "k d_head"],
    n_heads: int,
    position: Position = "all",
    start: int = 0,
) -> list[tuple[str, HookFn]]:
    """z ← z + v_h on the listed heads only (row i of `vectors` on heads[i]); every other head gets exactly +0."""
    _check_position(position)
    if len(heads) != vectors.shape[0]:
        raise InputError(f"{len(heads)} heads but {vectors.shape[0]} vectors")
    by_layer: dict[int, list[int]] = {}
    for row, (layer, _) in enumerate(heads):
        by_layer.setdefault(layer, []).append(row)

    def make(rows: list[int]) -> HookFn:
        head_idx = torch.tensor([heads[r][1] for r in rows])
        row_idx = torch.tensor(rows)

        def hook(z: Float[Tensor, "batch pos head d_head"], hook: Any) -> Tensor:
            # index_add keeps the graph to `vectors` (LoFiT trains them); zeros elsewhere add nothing.
            delta = torch.zeros(n_heads, z.shape[-1], dtype=z.dtype, device=z.device)
            delta = delta.index_add(0, head_idx.to(z.device), vectors[row_idx.to(vectors.device)].to(z))
            return z + _position_mask(z, position, start) * delta

        return hook

    return [(hooks.z(layer), make(rows)) for layer, rows in sorted(by_layer.items())]


def head_bias_hooks(
    heads: Sequence[Head], biases: Float[Tensor, "k d_head"], n_heads: int
) -> list[tuple[str, HookFn]]:
    """LoFiT step 2: z ← z + v on the selected heads at every position (prompt and response alike)."""
    return head_add_hooks(heads, biases, n_heads, "all", 0)


def add_hook(
    name: str, vector: Float[Tensor, " d_model"], position: Position, start: int
) -> tuple[str, HookFn]:
    """act ← act + vector at a residual-type hook (the caller has already scaled the vector by α)."""
    _check_position(position)

    def hook(act: Float[Tensor, "batch pos d_model"], hook: Any) -> Tensor:
        return act + _position_mask(act, position, start) * vector.to(act)

    return name, hook


def resid_add_hook(
    layer: int, vector: Float[Tensor, " d_model"], alpha: float, position: Position, start: int
) -> tuple[str, HookFn]:
    """Add α·v at `blocks.{layer}.hook_resid_post`."""
    return add_hook(hooks.resid(layer, "post"), alpha * vector, position, start)
