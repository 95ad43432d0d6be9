"""Plain-torch reference: causal attention with the locality bias, materialising [N, N] (oracle only)."""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch
from jaxtyping import Bool, Float
from torch import Tensor

from headscope.errors import InputError
from headscope.kernels.bias import NO_BIAS, KernelBias, band, penalty_shape

LN2 = math.log(2.0)


@dataclass(frozen=True)
class AttentionStats:
    """Attention output (input dtype) and fp32 per-query statistics: log-sum-exp and entropy in nats."""

    out: Float[Tensor, "batch head pos d_head"]
    lse: Float[Tensor, "batch head pos"]
    entropy: Float[Tensor, "batch head pos"]

    @property
    def entropy_bits(self) -> Float[Tensor, "batch head pos"]:
        return self.entropy / LN2


def check_qkv(q: Tensor, k: Tensor, v: Tensor) -> tuple[int, int, int, int, int]:
    """Shapes [batch, head, pos, d_head] (k, v may have fewer heads: GQA). Returns B, H, H_kv, N, D."""
    if q.dim() != 4 or k.dim() != 4 or v.shape != k.shape:
        raise InputError(
            f"q, k, v must be [batch, head, pos, d_head], got {tuple(q.shape)}, {tuple(k.shape)}"
        )
    b, h, n, d = q.shape
    if k.shape[0] != b or k.shape[2] != n or k.shape[3] != d:
        raise InputError(f"k {tuple(k.shape)} does not match q {tuple(q.shape)}")
    if h % k.shape[1]:
        raise InputError(f"n_heads {h} is not a multiple of n_kv_heads {k.shape[1]}")
    return b, h, k.shape[1], n, d


def expand_kv(x: Float[Tensor, "batch kv pos d"], n_heads: int) -> Float[Tensor, "batch head pos d"]:
    return x.repeat_interleave(n_heads // x.shape[1], dim=1)


def stats_from_scores(
    s: Float[Tensor, "... q k"], valid: Tensor, v: Float[Tensor, "... k d"]
) -> tuple[Tensor, Tensor, Tensor]:
    """Exact softmax statistics of fp32 scores over the valid entries, in the kernel's centred form.

    `valid` covers the last `valid.shape[-1]` keys; the keys before them are all valid (a causal chunk's mask is
    its diagonal block: filling only that block saves two passes over the temporary, the same values).
    Works in place on `s` (the caller's fresh temporary): two [.., q, k] tensors live at once, not five.
    """
    invalid = ~valid
    tail = s[..., s.shape[-1] - valid.shape[-1] :]  # a view: the fills below write into `s`
    tail.masked_fill_(invalid, float("-inf"))
    m = s.amax(dim=-1, keepdim=True)
    s.sub_(m)
    p = torch.exp(s)  # masked entries become exactly 0
    denom = p.sum(-1)
    tail.masked_fill_(invalid, 0.0)  # zero masked (s − m) first: 0·(−∞) would be NaN
    w = s.mul_(p).sum(-1)
    out = (p @ v.float()) / denom[..., None]
    return out, m[..., 0] + torch.log(denom), torch.log(denom) - w / denom


def biased_scores(
    s: Float[Tensor, "batch head q k"], bias: KernelBias, pos: Tensor
) -> tuple[Float[Tensor, "batch head q k"], Bool[Tensor, "*head q k"]]:
    """Dense scores with the bias of every head applied (c_h·f, all heads), and the valid keys (causal ∩ band)."""
    h = s.shape[1]
    shape = penalty_shape(bias, pos, pos)
    if shape is not None:
        s = s - bias.coefs(h, s.device).to(s.dtype)[None, :, None, None] * shape.to(s.dtype)
    valid = pos[None, :] <= pos[:, None]
    kept = band(bias, pos, pos, h)
    return s, valid if kept is None else valid & kept


def attention_reference(
    q: Tensor, k: Tensor, v: Tensor, *, scale: float | None = None, bias: KernelBias = NO_BIAS
) -> AttentionStats:
    """Dense fp32 reference; materialises [batch, head, N, N]."""
    _, h, _, n, d = check_qkv(q, k, v)
    sm_scale = d**-0.5 if scale is None else scale
    pos = torch.arange(n, device=q.device)
    s = q.float() @ expand_kv(k, h).float().transpose(-1, -2) * sm_scale
    s, valid = biased_scores(s, bias, pos)
    out, lse, ent = stats_from_scores(s, valid, expand_kv(v, h))
    return AttentionStats(out.to(q.dtype), lse, ent)


def naive_entropy_nats(
    q: Tensor, k: Tensor, *, scale: float | None = None, bias: KernelBias = NO_BIAS
) -> Float[Tensor, "batch head pos"]:
    """Entropy straight from torch.softmax (−Σ p ln p) in fp64, independent of the centred form: the oracle's
    oracle."""
    _, h, _, n, d = check_qkv(q, k, k)
    sm_scale = d**-0.5 if scale is None else scale
    pos = torch.arange(n, device=q.device)
    s = q.double() @ expand_kv(k, h).double().transpose(-1, -2) * sm_scale
    s, valid = biased_scores(s, bias, pos)
    p = torch.softmax(s.masked_fill(~valid, float("-inf")), dim=-1)
    return -(p * torch.log(p.clamp_min(1e-300))).sum(-1).float()
