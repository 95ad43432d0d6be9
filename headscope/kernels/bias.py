"""The kernels' locality bias for one layer: what the fused paths (Triton, chunked, reference) add to the scores.

The locality model (modes, schedules, head selection, where blocks come from) lives in `headscope.attention`;
`LocalityDial.to_kernel_bias` turns it into one `KernelBias` per layer. The kernel side only knows these forms,
evaluated on the scaled, causal scores s_hij (query head h, query position i, key position j ≤ i):
  none:     s_hij
  distance: s_hij − c_h·|i − j|
  block:    s_hij − c_h·1[block(i) ≠ block(j)]    (block ids per position: sentences, clauses, spans, fixed windows)
  window:   s_hij if i − j < w_h, else masked     (a band of w_h keys ending at the query; w_h ≥ 1 keeps the diagonal)
c_h ≥ 0 and w_h ≥ 1 are tensors (one per query head, or one for all), so moving the dial never recompiles a
kernel; a head with c_h = 0 (or w_h ≥ the key count) is untouched. This module is the one definition of those
forms in torch: the chunked path, the reference and the inference dial's score hooks all evaluate them here.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from jaxtyping import Bool, Float, Int
from torch import Tensor

from headscope.errors import InputError

# name -> id used as a compile-time constant by the Triton kernel
KERNEL_MODES: dict[str, int] = {"none": 0, "distance": 1, "block": 2, "window": 3}
UNBOUNDED = 1 << 30  # a window width no sequence reaches: the head keeps every causal key


@dataclass(frozen=True, eq=False)
class KernelBias:
    """mode; coef c_h (distance, block); width w_h (window); block_ids, one per position (block)."""

    mode: str = "none"
    coef: Float[Tensor, "*head"] | None = None
    width: Int[Tensor, "*head"] | None = None
    block_ids: Int[Tensor, " pos"] | None = None

    def __post_init__(self) -> None:
        if self.mode not in KERNEL_MODES:
            raise InputError(f"kernel bias mode must be one of {', '.join(KERNEL_MODES)}, got {self.mode!r}")
        needs = {"distance": "coef", "block": "coef", "window": "width"}.get(self.mode)
        if needs is not None and getattr(self, needs) is None:
            raise InputError(f"kernel bias mode {self.mode!r} needs {needs}")
        if self.mode == "block" and self.block_ids is None:
            raise InputError("kernel bias mode 'block' needs block_ids (one per position)")
        for name in ("coef", "width"):
            _check_per_head(getattr(self, name), name)
        if self.block_ids is not None and (self.block_ids.dim() != 1 or self.block_ids.is_floating_point()):
            raise InputError(f"block_ids must be one integer per position, got {tuple(self.block_ids.shape)}")

    @property
    def mode_id(self) -> int:
        return KERNEL_MODES[self.mode]

    def coefs(self, n_heads: int, device: torch.device) -> Float[Tensor, " head"]:
        """c_h as fp32, one per query head (zeros outside the distance and block modes)."""
        if self.mode not in ("distance", "block") or self.coef is None:
            return torch.zeros(n_heads, dtype=torch.float32, device=device)
        return _per_head(self.coef, n_heads, "coef").to(device=device, dtype=torch.float32).contiguous()

    def widths(self, n_heads: int, device: torch.device) -> Int[Tensor, " head"]:
        """w_h as int32, one per query head (UNBOUNDED outside the window mode)."""
        if self.mode != "window" or self.width is None:
            return torch.full((n_heads,), UNBOUNDED, dtype=torch.int32, device=device)
        w = _per_head(self.width, n_heads, "width").clamp(max=UNBOUNDED)
        return w.to(device=device, dtype=torch.int32).contiguous()

    def blocks(self, n: int, device: torch.device) -> Int[Tensor, " pos"]:
        """Block ids as int32 for n positions (block mode; zeros otherwise)."""
        if self.mode != "block" or self.block_ids is None:
            return torch.zeros(max(n, 1), dtype=torch.int32, device=device)
        if self.block_ids.shape[0] < n:
            raise InputError(f"block_ids cover {self.block_ids.shape[0]} positions, the sequence has {n}")
        return self.block_ids[:n].to(device=device, dtype=torch.int32).contiguous()


def _check_per_head(t: Tensor | None, name: str) -> None:
    if t is None:
        return
    if not isinstance(t, Tensor) or t.dim() > 1:
        raise InputError(f"{name} must be a tensor: 0-d or one value per head")
    # checking values on a GPU tensor would synchronise every launch; CPU tensors (the dial's) are checked
    if t.device.type == "cpu" and t.numel():
        low = 1 if name == "width" else 0
        if not bool(torch.isfinite(t.double()).all()) or bool((t < low).any()):
            raise InputError(f"{name} must be finite and ≥ {low}")


def _per_head(t: Tensor, n_heads: int, name: str) -> Tensor:
    flat = t.detach().flatten()
    if flat.numel() not in (1, n_heads):
        raise InputError(f"{name} must hold 1 or {n_heads} values (one per head), got {flat.numel()}")
    return flat.expand(n_heads)


NO_BIAS = KernelBias()


def penalty_shape(bias: KernelBias, q_pos: Tensor, k_pos: Tensor) -> Float[Tensor, "q k"] | None:
    """f(i, j) ≥ 0 that c_h multiplies (distance: |i − j|; block: 1 outside the query's block); None otherwise."""
    if bias.mode == "distance":
        return (q_pos[:, None] - k_pos[None, :]).abs().float()
    if bias.mode == "block":
        ids = bias.blocks(int(max(q_pos.max(), k_pos.max())) + 1, q_pos.device)
        return (ids[q_pos][:, None] != ids[k_pos][None, :]).float()
    return None


def band(bias: KernelBias, q_pos: Tensor, k_pos: Tensor, n_heads: int) -> Bool[Tensor, "head q k"] | None:
    """The window mode's kept keys per head (i − j < w_h); None in the other modes."""
    if bias.mode != "window":
        return None
    offset = q_pos[:, None] - k_pos[None, :]
    return offset[None] < bias.widths(n_heads, q_pos.device)[:, None, None]


def active_heads(bias: KernelBias, n_heads: int, n_keys: int, device: torch.device) -> Int[Tensor, " sel"]:
    """The heads this bias changes at all (c_h > 0, or w_h < n_keys); the others are left bit for bit."""
    window = bias.mode == "window"
    on = bias.widths(n_heads, device) < n_keys if window else bias.coefs(n_heads, device) > 0
    return on.nonzero().flatten()


def bias_scores(
    scores: Float[Tensor, "*batch head q k"], bias: KernelBias, q_pos: Tensor, k_pos: Tensor
) -> Float[Tensor, "*batch head q k"]:
    """The biased scores, for the heads the bias touches (the others are returned unchanged, not recomputed).

    Window-masked entries become −∞ (the diagonal is always kept, so no row is empty). Out of place: the inference
    dial applies this inside hooks that may run under autograd."""
    n_heads = scores.shape[-3]
    heads = active_heads(bias, n_heads, len(k_pos), scores.device)
    if heads.numel() == 0:
        return scores
    sub = scores.index_select(-3, heads)
    kept = band(bias, q_pos, k_pos, n_heads)
    if kept is not None:
        sub = sub.masked_fill(~kept[heads], float("-inf"))
    else:
        shape = penalty_shape(bias, q_pos, k_pos)
        assert shape is not None  # distance and block modes have one
        c = bias.coefs(n_heads, scores.device)[heads].to(scores.dtype)
        sub = sub - c[:, None, None] * shape.to(scores.dtype)
    if heads.numel() == n_heads:
        return sub
    out = scores.clone()
    out.index_copy_(-3, heads, sub)
    return out
