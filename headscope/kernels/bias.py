"""Locality bias modes for attention scores (the dial's additive bias), registered by name.

The bias is added to the scaled scores before the softmax: b_ij = −λ·s·f(i, j), with λ a tensor (the dial: 0-d
or one value per head, so moving it never recompiles a kernel) and s = `strength`, a fixed base scale.
  distance: f = |i − j|                         (nearer keys are preferred)
  block:    f = 1 if ⌊i/B⌋ ≠ ⌊j/B⌋ else 0        (penalty outside the query's block of B positions)
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from jaxtyping import Float
from torch import Tensor

from headscope.errors import InputError

# name -> id used as a compile-time constant by the Triton kernel
BIAS_MODES: dict[str, int] = {"none": 0, "distance": 1, "block": 2}


@dataclass(frozen=True)
class LocalityBias:
    mode: str = "none"
    strength: float = 1.0
    block_size: int = 64

    def __post_init__(self) -> None:
        if self.mode not in BIAS_MODES:
            raise InputError(f"mode must be one of {sorted(BIAS_MODES)}, got {self.mode!r}")
        if not 0.0 <= self.strength <= 1e4:
            raise InputError(f"strength must be in [0, 1e4], got {self.strength}")
        if not 1 <= self.block_size <= 1 << 20:
            raise InputError(f"block_size must be in [1, 2^20], got {self.block_size}")

    @property
    def mode_id(self) -> int:
        return BIAS_MODES[self.mode]


NO_BIAS = LocalityBias()


def per_head_coef(lam: Tensor | None, bias: LocalityBias, n_heads: int, device: torch.device) -> Tensor:
    """λ·s as an fp32 vector with one entry per query head (a 0-d λ is broadcast)."""
    if lam is None or bias.mode == "none":
        return torch.zeros(n_heads, dtype=torch.float32, device=device)
    if not isinstance(lam, Tensor):
        raise InputError("lam must be a tensor (0-d or one value per head), not a Python number")
    lam = lam.detach().flatten()
    if lam.numel() not in (1, n_heads):
        raise InputError(f"lam must hold 1 or {n_heads} values (one per head), got {lam.numel()}")
    # checking values on a GPU tensor would synchronise every launch; CPU tensors (the dial's) are checked
    if lam.device.type == "cpu" and (not bool(torch.isfinite(lam).all()) or bool((lam < 0).any())):
        raise InputError("lam must be finite and ≥ 0")
    return (lam.to(device=device, dtype=torch.float32) * bias.strength).expand(n_heads).contiguous()


def bias_shape(q_pos: Tensor, k_pos: Tensor, bias: LocalityBias) -> Float[Tensor, "q k"]:
    """f(i, j) ≥ 0 for the given query and key positions (the coefficient multiplies it)."""
    if bias.mode == "distance":
        return (q_pos[:, None] - k_pos[None, :]).abs().float()
    if bias.mode == "block":
        return (q_pos[:, None] // bias.block_size != k_pos[None, :] // bias.block_size).float()
    return torch.zeros(len(q_pos), len(k_pos), device=q_pos.device)
