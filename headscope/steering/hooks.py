"""Steering hooks: LoFiT per-head scale / bias on `hook_z`, contrastive additions on `hook_resid_post`.

Every builder returns `(hook_name, fn)` pairs for `handle.hooks(...)`. None of them edits the activation in place:
they return a new tensor, so autograd (LoFiT training) works and other hooks on the same point see a clean value.
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

Head = tuple[int, int]  # (layer, head)
Position = Literal["last", "all"]
POSITIONS: tuple[str, ...] = ("last", "all")


def check_heads(heads: Sequence[Head], n_layers: int, n_heads: int) -> None:
    if not heads:
        raise InputError("no heads selected")
    for layer, head in heads:
        if not 0 <= layer < n_layers:
            raise InputError(f"layer {layer} is out of range: the model has layers 0..{n_layers - 1}")
        if not 0 <= head < n_heads:
            raise InputError(f"head {head} is out of range: the model has heads 0..{n_heads - 1}")
    if len(set(heads)) != len(heads):
        raise InputError("a head is selected twice")


def head_scale_hooks(scales: Float[Tensor, "layer head d_head"]) -> list[tuple[str, HookFn]]:
    """LoFiT step 1: z ← (1 + A) ⊙ z on every head of every layer."""

    def make(layer: int) -> HookFn:
        def hook(z: Float[Tensor, "batch pos head d_head"], hook: Any) -> Tensor:
            return z * (1.0 + scales[layer])

        return hook

    return [(hooks.z(layer), make(layer)) for layer in range(scales.shape[0])]


def head_bias_hooks(
    heads: Sequence[Head], biases: Float[Tensor, "k d_head"], n_heads: int
) -> list[tuple[str, HookFn]]:
    """LoFiT step 2: z ← z + v on the selected heads only; every other head gets exactly +0."""
    if len(heads) != biases.shape[0]:
        raise InputError(f"{len(heads)} heads but {biases.shape[0]} bias vectors")
    by_layer: dict[int, list[int]] = {}
    for row, (layer, _) in enumerate(heads):
        by_layer.setdefault(layer, []).append(row)

    def make(layer: int, rows: list[int]) -> HookFn:
        head_idx = torch.tensor([heads[r][1] for r in rows], device=biases.device)
        row_idx = torch.tensor(rows, device=biases.device)

        def hook(z: Float[Tensor, "batch pos head d_head"], hook: Any) -> Tensor:
            # index_add keeps the graph to `biases`; a dense delta of zeros elsewhere adds nothing.
            delta = torch.zeros(n_heads, z.shape[-1], dtype=z.dtype, device=z.device)
            delta = delta.index_add(0, head_idx.to(z.device), biases[row_idx.to(biases.device)].to(z))
            return z + delta

        return hook

    return [(hooks.z(layer), make(layer, rows)) for layer, rows in sorted(by_layer.items())]


def resid_add_hook(
    layer: int, vector: Float[Tensor, " d_model"], alpha: float, position: Position, start: int
) -> tuple[str, HookFn]:
    """Add α·v at `blocks.{layer}.hook_resid_post`.

    position "all": every position. position "last": every position from `start` (the prompt's last token) on,
    i.e. the last token at each generation step, and generated tokens stay steered as they would in a KV-cached
    decode; that makes one scoring pass over prompt + continuation identical to the generation loop.
    """
    if position not in POSITIONS:
        raise InputError(f"position must be one of {', '.join(POSITIONS)}; got {position!r}")

    def hook(act: Float[Tensor, "batch pos d_model"], hook: Any) -> Tensor:
        add = (alpha * vector).to(act)
        if position == "all":
            return act + add
        mask = torch.zeros(act.shape[1], 1, dtype=act.dtype, device=act.device)
        mask[start:] = 1.0
        return act + mask * add

    return hooks.resid(layer, "post"), hook
