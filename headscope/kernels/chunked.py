"""Chunked torch path (CPU, or CUDA without Triton): exact attention + LSE + entropy in O(N·chunk) memory.

Queries go in chunks of C rows; each chunk sees only the keys its causal window needs (under a window bias, only
those the widest band can keep), so the largest temporary is [batch, head, C, N] fp32 instead of
[batch, head, N, N]. GQA is handled by grouping query heads
over their shared KV head (a broadcasting matmul), so K and V are never repeated in memory.
"""

from __future__ import annotations

import torch
from torch import Tensor

from headscope.errors import InputError
from headscope.kernels.bias import NO_BIAS, KernelBias, band, penalty_shape
from headscope.kernels.reference import AttentionStats, check_qkv, stats_from_scores

CHUNK_BUDGET_BYTES = 128 << 20  # per fp32 score temporary on CUDA; a few of them live at once
# On CPU the softmax/entropy passes over the temporary are memory-bound: one that stays near the last-level cache
# is read back from it (bench/entropy_kernel.py times both: on a 2-core AMD EPYC, 32 MiB L3, 9 heads, 1.73x faster
# at 8k tokens and 2.65x at 2k than at 128 MiB; 8 MiB was slower again at 8k, its chunks too short).
CPU_CHUNK_BUDGET_BYTES = 16 << 20


def default_chunk(batch: int, heads: int, n: int, device: torch.device | str = "cpu") -> int:
    """Rows per chunk so one [batch, head, C, N] fp32 temporary stays near the device's budget."""
    budget = CHUNK_BUDGET_BYTES if torch.device(device).type == "cuda" else CPU_CHUNK_BUDGET_BYTES
    rows = budget // max(1, 4 * batch * heads * n)
    return int(max(16, min(n, rows)))


def attention_chunked(
    q: Tensor,
    k: Tensor,
    v: Tensor,
    *,
    scale: float | None = None,
    bias: KernelBias = NO_BIAS,
    chunk: int | None = None,
) -> AttentionStats:
    b, h, h_kv, n, d = check_qkv(q, k, v)
    if chunk is not None and not 1 <= chunk <= 1 << 20:
        raise InputError(f"chunk must be in [1, 2^20], got {chunk}")
    c = chunk or default_chunk(b, h, n, q.device)
    sm_scale = d**-0.5 if scale is None else scale
    g = h // h_kv
    coef = bias.coefs(h, q.device).view(1, h_kv, g, 1, 1)
    qg = q.reshape(b, h_kv, g, n, d)
    kf, vf = k.float(), v.float()  # [b, h_kv, n, d]: a group's g query heads are g·C rows against one KV head
    out = torch.empty(b, h_kv, g, n, d, dtype=q.dtype, device=q.device)
    lse = torch.empty(b, h_kv, g, n, dtype=torch.float32, device=q.device)
    ent = torch.empty_like(lse)
    pos = torch.arange(n, device=q.device)
    reach = int(bias.widths(h, q.device).max()) if bias.mode == "window" else n  # keys a band can keep
    for start in range(0, n, c):
        stop = min(n, start + c)  # rows start..stop-1 need keys lo..stop-1 (lo > 0 only under a window)
        lo = max(0, start - reach + 1)
        rows, keys = pos[start:stop], pos[lo:stop]
        r, nk = stop - start, stop - lo
        # [b, h_kv, g·r, d] @ [b, h_kv, d, nk]: one matmul per KV head, no copy of K per query head
        qc = qg[:, :, :, start:stop].float().reshape(b, h_kv, g * r, d)
        s = (qc @ kf[:, :, lo:stop].transpose(-1, -2)).mul_(sm_scale).view(b, h_kv, g, r, nk)
        shape = penalty_shape(bias, rows, keys)
        if shape is not None:
            s = s - coef * shape
        kept = band(bias, rows, keys, h)
        if kept is not None:
            valid = ((keys[None, :] <= rows[:, None]) & kept).view(h_kv, g * r, nk)  # heads are h_kv × g
        else:  # causal only: every key before the chunk's own rows is valid, the mask is the diagonal block
            valid = (keys[None, start - lo :] <= rows[:, None]).repeat(g, 1)
        o, lse_c, ent_c = stats_from_scores(s.view(b, h_kv, g * r, nk), valid, vf[:, :, lo:stop])
        out[:, :, :, start:stop] = o.view(b, h_kv, g, r, d).to(q.dtype)
        lse[..., start:stop], ent[..., start:stop] = lse_c.view(b, h_kv, g, r), ent_c.view(b, h_kv, g, r)
    return AttentionStats(out.view(b, h, n, d), lse.view(b, h, n), ent.view(b, h, n))
