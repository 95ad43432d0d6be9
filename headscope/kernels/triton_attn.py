# Triton's @jit signatures (constexpr parameters, launch grids, num_warps) are opaque to pyright.
# pyright: reportArgumentType=false, reportCallIssue=false
"""Triton forward kernel: causal attention + log-sum-exp + per-query entropy, never forming [N, N].

FlashAttention-style online softmax in base 2 (scores pre-multiplied by log2 e). Per query row it keeps the
running max m, l = Σ 2^(s−m) and w = Σ 2^(s−m)·(s−m). When the max moves from m to m′ (α = 2^(m−m′)):
    w′ = α·(w + (m − m′)·l) + Σ_new p·(s − m′),   l′ = α·l + Σ_new p
and at the end H = log2 l − w/l bits, LSE = (m + log2 l)·ln 2 nats. The centred form avoids the cancellation of
LSE − E[s]. Masked entries are zeroed before p·(s − m) (0·(−∞) is NaN). Statistics are fp32 whatever the input.
The locality bias (`bias.py`) is evaluated in the loop: distance and block subtract c_h·f(i, j) (block ids are
loaded per position, so sentence, clause and span blocks work as well as fixed windows); the window mode masks
keys outside the band i − j < w_h and skips key blocks wholly left of it.

Import this module only where Triton can run: CUDA, or CPU with TRITON_INTERPRET=1 set *before* the import
(`triton.jit` picks the interpreter at decoration time). The interpreter gets bf16 `tl.dot` wrong.
"""

from __future__ import annotations

import math
import os
from dataclasses import dataclass

import torch
import triton
import triton.language as tl
from torch import Tensor

from headscope import checks
from headscope.errors import InputError
from headscope.kernels.bias import NO_BIAS, KernelBias
from headscope.kernels.reference import AttentionStats, check_qkv

LOG2E = 1.4426950408889634
LN2 = math.log(2.0)


@triton.jit
def _block_step(
    q,
    k_base,
    v_base,
    start_n,
    offs_m,
    offs_n,
    offs_d,
    m_i,
    l_i,
    w_i,
    acc,
    coef,
    width,
    q_block,
    BID,
    skn,
    skd,
    svn,
    svd,
    N_CTX,
    qk_scale,
    HEAD_DIM: tl.constexpr,
    BLOCK_D: tl.constexpr,
    BIAS_MODE: tl.constexpr,
    MASK: tl.constexpr,
    PLAIN_LOADS: tl.constexpr,
    PRECISION: tl.constexpr,
):
    cols = start_n + offs_n
    k_ptrs = k_base + cols[None, :] * skn + offs_d[:, None] * skd
    v_ptrs = v_base + cols[:, None] * svn + offs_d[None, :] * svd
    if PLAIN_LOADS:  # left of the diagonal with an unpadded d_head: every address is in bounds
        k = tl.load(k_ptrs)
    else:
        k = tl.load(k_ptrs, mask=(cols[None, :] < N_CTX) & (offs_d[:, None] < HEAD_DIM), other=0.0)
    s = tl.dot(q, k, input_precision=PRECISION) * qk_scale
    if BIAS_MODE == 1:
        s -= coef * tl.abs(offs_m[:, None] - cols[None, :]).to(tl.float32)
    if BIAS_MODE == 2:
        k_block = tl.load(BID + cols, mask=cols < N_CTX, other=-1)
        s -= coef * (q_block[:, None] != k_block[None, :]).to(tl.float32)
    if MASK:  # the window mode always masks: its band edge can cross any block
        valid = (cols[None, :] <= offs_m[:, None]) & (cols[None, :] < N_CTX)
        if BIAS_MODE == 3:
            valid = valid & ((offs_m[:, None] - cols[None, :]) < width)
        s = tl.where(valid, s, float("-inf"))
    m_new = tl.maximum(m_i, tl.max(s, 1))
    alpha = tl.math.exp2(m_i - m_new)
    d = s - m_new[:, None]
    p = tl.math.exp2(d)
    if MASK:
        d = tl.where(valid, d, 0.0)
    w_i = alpha * (w_i + (m_i - m_new) * l_i) + tl.sum(p * d, 1)
    l_i = alpha * l_i + tl.sum(p, 1)
    if PLAIN_LOADS:
        v = tl.load(v_ptrs)
    else:
        v = tl.load(v_ptrs, mask=(cols[:, None] < N_CTX) & (offs_d[None, :] < HEAD_DIM), other=0.0)
    acc = acc * alpha[:, None] + tl.dot(p.to(v.dtype), v, input_precision=PRECISION)
    return m_new, l_i, w_i, acc


@triton.jit
def _attn_fwd(
    Q,
    K,
    V,
    Out,
    LSE,
    ENT,
    COEF,
    WIDTH,
    BID,
    sqb,
    sqh,
    sqn,
    sqd,
    skb,
    skh,
    skn,
    skd,
    svb,
    svh,
    svn,
    svd,
    sob,
    soh,
    son,
    sod,
    N_CTX,
    H,
    GROUP,
    qk_scale,
    HEAD_DIM: tl.constexpr,
    BLOCK_D: tl.constexpr,
    BLOCK_M: tl.constexpr,
    BLOCK_N: tl.constexpr,
    BIAS_MODE: tl.constexpr,
    WINDOWED: tl.constexpr,
    EXACT_D: tl.constexpr,
    PRECISION: tl.constexpr,
):
    pid_m = tl.program_id(0)
    pid_bh = tl.program_id(1)
    b = pid_bh // H
    h = pid_bh % H
    hk = h // GROUP
    offs_m = pid_m * BLOCK_M + tl.arange(0, BLOCK_M)
    offs_n = tl.arange(0, BLOCK_N)
    offs_d = tl.arange(0, BLOCK_D)
    row_ok = offs_m < N_CTX
    q_ptrs = Q + b * sqb + h * sqh + offs_m[:, None] * sqn + offs_d[None, :] * sqd
    q = tl.load(q_ptrs, mask=row_ok[:, None] & (offs_d[None, :] < HEAD_DIM), other=0.0)
    k_base = K + b * skb + hk * skh
    v_base = V + b * svb + hk * svh
    coef = 0.0
    if BIAS_MODE != 0:  # zero in the window mode
        coef = tl.load(COEF + h) * 1.4426950408889634
    q_block = offs_m * 0
    if BIAS_MODE == 2:
        q_block = tl.load(BID + offs_m, mask=row_ok, other=-2)
    # keys strictly left of this query block need no causal mask (BLOCK_M is a multiple of BLOCK_N); under a
    # window, blocks wholly left of the band are skipped and the rest are masked
    diag = pid_m * BLOCK_M
    lo = 0
    width = 0
    if BIAS_MODE == 3:
        width = tl.load(WIDTH + h)
        lo = (tl.maximum(diag - width + 1, 0) // BLOCK_N) * BLOCK_N
    # finite start: (m − m′)·l stays 0·finite on the first block instead of (−∞)·0 = NaN
    m_i = tl.full([BLOCK_M], -1.0e30, tl.float32)
    l_i = tl.zeros([BLOCK_M], tl.float32)
    w_i = tl.zeros([BLOCK_M], tl.float32)
    acc = tl.zeros([BLOCK_M, BLOCK_D], tl.float32)
    for start_n in range(lo, diag, BLOCK_N):
        m_i, l_i, w_i, acc = _block_step(
            q,
            k_base,
            v_base,
            start_n,
            offs_m,
            offs_n,
            offs_d,
            m_i,
            l_i,
            w_i,
            acc,
            coef,
            width,
            q_block,
            BID,
            skn,
            skd,
            svn,
            svd,
            N_CTX,
            qk_scale,
            HEAD_DIM,
            BLOCK_D,
            BIAS_MODE,
            WINDOWED,
            EXACT_D,
            PRECISION,
        )
    hi = tl.minimum(diag + BLOCK_M, N_CTX)
    for start_n in range(diag, hi, BLOCK_N):
        m_i, l_i, w_i, acc = _block_step(
            q,
            k_base,
            v_base,
            start_n,
            offs_m,
            offs_n,
            offs_d,
            m_i,
            l_i,
            w_i,
            acc,
            coef,
            width,
            q_block,
            BID,
            skn,
            skd,
            svn,
            svd,
            N_CTX,
            qk_scale,
            HEAD_DIM,
            BLOCK_D,
            BIAS_MODE,
            True,
            False,
            PRECISION,
        )
    l_safe = tl.where(row_ok, l_i, 1.0)
    log2l = tl.math.log2(l_safe)
    stat = pid_bh * N_CTX + offs_m
    tl.store(LSE + stat, (m_i + log2l) * 0.6931471805599453, mask=row_ok)
    tl.store(ENT + stat, (log2l - w_i / l_safe) * 0.6931471805599453, mask=row_ok)
    o = acc / l_safe[:, None]
    o_ptrs = Out + b * sob + h * soh + offs_m[:, None] * son + offs_d[None, :] * sod
    tl.store(o_ptrs, o.to(Out.dtype.element_ty), mask=row_ok[:, None] & (offs_d[None, :] < HEAD_DIM))


@dataclass(frozen=True)
class KernelConfig:
    block_m: int = 128
    block_n: int = 64
    num_warps: int = 4
    num_stages: int = 3

    def __post_init__(self) -> None:
        # Triton wants powers of 2 for tiles and warps; store the checked ints (a tuning script may pass text).
        for name, lo, hi in (("block_m", 16, 1024), ("block_n", 16, 1024), ("num_warps", 1, 32)):
            val = checks.integer(getattr(self, name), name, lo, hi)
            if val & (val - 1):
                raise InputError(f"{name} must be a power of 2 in [{lo}, {hi}], got {val}")
            object.__setattr__(self, name, val)
        object.__setattr__(self, "num_stages", checks.integer(self.num_stages, "num_stages", 1, 8))
        if self.block_m % self.block_n:
            raise InputError("block_m must be a multiple of block_n")


def interpreting() -> bool:
    return os.environ.get("TRITON_INTERPRET", "0") not in ("", "0")


def default_config(d_head: int) -> KernelConfig:
    if interpreting():  # numpy simulation: small tiles keep it fast and exercise several blocks
        return KernelConfig(16, 16, 1, 1)
    return KernelConfig(64, 64, 4, 3)  # fastest of 5 tried at 8k on an H200 for d_head 64 and 128 (bench)


def attention_triton(
    q: Tensor,
    k: Tensor,
    v: Tensor,
    *,
    scale: float | None = None,
    bias: KernelBias = NO_BIAS,
    config: KernelConfig | None = None,
) -> AttentionStats:
    """Causal attention + LSE + entropy (nats) with one Triton launch; fp16/bf16/fp32 in, fp32 statistics."""
    b, h, h_kv, n, d = check_qkv(q, k, v)
    cfg = config or default_config(d)
    sm_scale = d**-0.5 if scale is None else scale
    out = torch.empty_like(q)
    lse = torch.empty(b, h, n, dtype=torch.float32, device=q.device)
    ent = torch.empty_like(lse)
    coef, width, blocks = bias.coefs(h, q.device), bias.widths(h, q.device), bias.blocks(n, q.device)
    grid = (triton.cdiv(n, cfg.block_m), b * h)
    block_d = max(16, triton.next_power_of_2(d))
    _attn_fwd[grid](
        q, k, v, out, lse, ent, coef, width, blocks,
        *q.stride(), *k.stride(), *v.stride(), *out.stride(),
        n, h, h // h_kv, sm_scale * LOG2E,
        HEAD_DIM=d, BLOCK_D=block_d, BLOCK_M=cfg.block_m, BLOCK_N=cfg.block_n,
        BIAS_MODE=bias.mode_id, WINDOWED=bias.mode == "window", EXACT_D=d == block_d,
        PRECISION="ieee" if q.dtype == torch.float32 else "tf32",
        num_warps=cfg.num_warps, num_stages=cfg.num_stages,
    )  # fmt: skip
    return AttentionStats(out, lse, ent)
