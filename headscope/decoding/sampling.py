"""Next-token distributions and the two verification rules (greedy-exact and rejection sampling).

The verification rules are pure functions of probability rows, so they are tested on explicit toy distributions.
"""

from __future__ import annotations

import torch
from jaxtyping import Float
from torch import Tensor

from headscope.decoding.config import DecodeConfig


def warp(logits: Float[Tensor, "n d_vocab"], cfg: DecodeConfig) -> Float[Tensor, "n d_vocab"]:
    """The distribution a strategy samples from: softmax at T=1 when greedy, else temperature/top-k/top-p."""
    logits = logits.float()
    if cfg.greedy:
        return torch.softmax(logits, dim=-1)
    logits = logits / cfg.temperature
    if cfg.top_k > 0 and cfg.top_k < logits.shape[-1]:
        kth = torch.topk(logits, cfg.top_k, dim=-1).values[..., -1:]
        logits = logits.masked_fill(logits < kth, float("-inf"))
    probs = torch.softmax(logits, dim=-1)
    if cfg.top_p < 1.0:
        sorted_p, order = torch.sort(probs, dim=-1, descending=True)
        # Keep the smallest prefix whose mass reaches top_p (the token that crosses it is kept).
        drop = (sorted_p.cumsum(-1) - sorted_p) >= cfg.top_p
        sorted_p = sorted_p.masked_fill(drop, 0.0)
        probs = torch.zeros_like(probs).scatter(-1, order, sorted_p)
        probs = probs / probs.sum(-1, keepdim=True)
    return probs


def pick(probs: Float[Tensor, " d_vocab"], cfg: DecodeConfig, gen: torch.Generator) -> int:
    if cfg.greedy:
        return int(probs.argmax())
    return int(torch.multinomial(probs.cpu(), 1, generator=gen))  # the seeded generator lives on the CPU


def verify_greedy(draft: list[int], p_rows: Float[Tensor, "k1 d_vocab"]) -> tuple[int, int]:
    """Longest draft prefix equal to the verifier's argmax, then the verifier's own next token."""
    best = p_rows.argmax(-1).tolist()
    n = 0
    while n < len(draft) and draft[n] == best[n]:
        n += 1
    return n, int(best[n])


def verify_sampled(
    draft: list[int],
    q_rows: list[Tensor | None] | None,
    p_rows: Float[Tensor, "k1 d_vocab"],
    gen: torch.Generator,
) -> tuple[int, int]:
    """Speculative sampling: accept draft i with prob min(1, p/q), else resample from norm(max(p − q, 0)).

    A q row of None means a deterministic draft (q = one-hot), as n-gram drafts are. The output is distributed
    exactly as sampling from p_rows one token at a time (Leviathan et al. / Chen et al.).
    """
    p_rows = p_rows.cpu()  # the seeded generator lives on the CPU (one generator, any device)
    for i, tok in enumerate(draft):
        p = p_rows[i]
        q = q_rows[i] if q_rows is not None else None
        q = q.cpu() if q is not None else None
        if q is None:
            q = torch.zeros_like(p).index_fill_(0, torch.tensor([tok]), 1.0)
        ratio = float(p[tok]) / max(float(q[tok]), 1e-30)
        if float(torch.rand((), generator=gen)) < min(1.0, ratio):
            continue
        residual = (p - q).clamp_min(0.0)
        if float(residual.sum()) <= 0.0:  # p == q up to rounding: any draw from p is exact
            residual = p
        return i, int(torch.multinomial(residual / residual.sum(), 1, generator=gen))
    return len(draft), int(torch.multinomial(p_rows[len(draft)], 1, generator=gen))


def verify(
    draft: list[int],
    q_rows: list[Tensor | None] | None,
    p_rows: Tensor,
    cfg: DecodeConfig,
    gen: torch.Generator,
) -> tuple[int, int]:
    if cfg.greedy:
        return verify_greedy(draft, p_rows)
    return verify_sampled(draft, q_rows, p_rows, gen)
